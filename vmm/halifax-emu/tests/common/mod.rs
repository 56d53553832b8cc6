//! Shared test fixtures: sparse guest memory with MMIO and port logs, and a
//! page-table builder for every paging mode.
#![allow(dead_code)]

use halifax_emu::{Memory, MemoryError};
use std::collections::HashMap;

/// Sparse guest-physical memory: RAM pages plus an MMIO window that logs.
#[derive(Default)]
pub struct TestMem {
    pub pages: HashMap<u64, Box<[u8; 4096]>>,
    /// [start, end) of the MMIO window; reads return `mmio_value`.
    pub mmio: Option<(u64, u64)>,
    pub mmio_value: u64,
    pub mmio_log: Vec<(bool, u64, Vec<u8>)>,
    pub io_log: Vec<(bool, u16, Vec<u8>)>,
    pub io_value: u32,
}

impl TestMem {
    pub fn page(&mut self, gpa: u64) -> &mut [u8; 4096] {
        self.pages
            .entry(gpa & !0xfff)
            .or_insert_with(|| Box::new([0; 4096]))
    }
    pub fn write_bytes(&mut self, gpa: u64, data: &[u8]) {
        for (i, b) in data.iter().enumerate() {
            let a = gpa + i as u64;
            self.page(a)[(a & 0xfff) as usize] = *b;
        }
    }
    pub fn read_bytes(&mut self, gpa: u64, len: usize) -> Vec<u8> {
        (0..len as u64)
            .map(|i| self.page(gpa + i)[((gpa + i) & 0xfff) as usize])
            .collect()
    }
    pub fn write_u64(&mut self, gpa: u64, v: u64) {
        self.write_bytes(gpa, &v.to_le_bytes());
    }
    pub fn read_u64(&mut self, gpa: u64) -> u64 {
        u64::from_le_bytes(self.read_bytes(gpa, 8).try_into().unwrap())
    }
    pub fn read_u32(&mut self, gpa: u64) -> u32 {
        u32::from_le_bytes(self.read_bytes(gpa, 4).try_into().unwrap())
    }
    fn is_mmio(&self, gpa: u64) -> bool {
        self.mmio.is_some_and(|(s, e)| gpa >= s && gpa < e)
    }
}

impl Memory for TestMem {
    fn read(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        if self.is_mmio(gpa) {
            let v = self.mmio_value.to_le_bytes();
            for (i, b) in buf.iter_mut().enumerate() {
                *b = v[i % 8];
            }
            self.mmio_log.push((false, gpa, buf.to_vec()));
            return Ok(());
        }
        if !self.pages.contains_key(&(gpa & !0xfff)) {
            return Err(MemoryError::Unmapped { gpa });
        }
        buf.copy_from_slice(&self.read_bytes(gpa, buf.len()));
        Ok(())
    }
    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), MemoryError> {
        if self.is_mmio(gpa) {
            self.mmio_log.push((true, gpa, data.to_vec()));
            return Ok(());
        }
        if !self.pages.contains_key(&(gpa & !0xfff)) {
            return Err(MemoryError::Unmapped { gpa });
        }
        self.write_bytes(gpa, data);
        Ok(())
    }
    fn compare_and_write(
        &mut self,
        gpa: u64,
        expected: &[u8],
        new: &[u8],
    ) -> Result<bool, MemoryError> {
        if self.is_mmio(gpa) {
            self.mmio_log.push((true, gpa, new.to_vec()));
            return Ok(true);
        }
        let mut cur = vec![0; expected.len()];
        self.read(gpa, &mut cur)?;
        if cur != expected {
            return Ok(false);
        }
        self.write(gpa, new)?;
        Ok(true)
    }
    fn io_read(&mut self, port: u16, buf: &mut [u8]) -> Result<(), MemoryError> {
        let v = self.io_value.to_le_bytes();
        buf.copy_from_slice(&v[..buf.len()]);
        self.io_log.push((false, port, buf.to_vec()));
        Ok(())
    }
    fn io_write(&mut self, port: u16, data: &[u8]) -> Result<(), MemoryError> {
        self.io_log.push((true, port, data.to_vec()));
        Ok(())
    }
}

/// Paging mode under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PagingMode {
    Bits32,
    Pae,
    Level4,
    Level5,
}

impl PagingMode {
    pub fn levels(self) -> u32 {
        match self {
            PagingMode::Bits32 => 2,
            PagingMode::Pae => 3,
            PagingMode::Level4 => 4,
            PagingMode::Level5 => 5,
        }
    }
    pub fn wide(self) -> bool {
        self != PagingMode::Bits32
    }
    /// Index shift of `level` (1 = page table).
    pub fn shift(self, level: u32) -> u32 {
        match self {
            PagingMode::Bits32 => 12 + 10 * (level - 1),
            _ => 12 + 9 * (level - 1),
        }
    }
    fn index(self, va: u64, level: u32) -> u64 {
        let mask = match (self, level) {
            (PagingMode::Bits32, _) => 0x3ff,
            (PagingMode::Pae, 3) => 3,
            _ => 0x1ff,
        };
        (va >> self.shift(level)) & mask
    }
}

/// Builds paging structures in a [`TestMem`], allocating tables upward
/// from 0x10_0000.
pub struct PageTables {
    pub mode: PagingMode,
    pub root: u64,
    next: u64,
}

impl PageTables {
    pub fn new(mode: PagingMode, mem: &mut TestMem) -> PageTables {
        let root = 0x10_0000;
        mem.page(root);
        PageTables {
            mode,
            root,
            next: root + 0x1000,
        }
    }

    /// The address of the entry for `va` at `level`, creating intermediate
    /// tables (with `nonleaf(level)` flags) as needed.
    pub fn entry_addr(
        &mut self,
        mem: &mut TestMem,
        va: u64,
        level: u32,
        nonleaf: &dyn Fn(u32) -> u64,
    ) -> u64 {
        let mut table = self.root;
        let esz = if self.mode.wide() { 8 } else { 4 };
        for l in (level..=self.mode.levels()).rev() {
            let addr = table + self.mode.index(va, l) * esz;
            if l == level {
                return addr;
            }
            let e = if esz == 8 {
                mem.read_u64(addr)
            } else {
                mem.read_u32(addr) as u64
            };
            table = if e & 1 == 0 {
                let t = self.next;
                self.next += 0x1000;
                mem.page(t);
                let flags = if self.mode == PagingMode::Pae && l == 3 {
                    1
                } else {
                    nonleaf(l)
                };
                self.write_entry(mem, addr, t | flags);
                t
            } else {
                e & 0x000f_ffff_ffff_f000
            };
        }
        unreachable!()
    }

    pub fn write_entry(&self, mem: &mut TestMem, addr: u64, value: u64) {
        if self.mode.wide() {
            mem.write_u64(addr, value);
        } else {
            mem.write_bytes(addr, &(value as u32).to_le_bytes());
        }
    }

    pub fn read_entry(&self, mem: &mut TestMem, addr: u64) -> u64 {
        if self.mode.wide() {
            mem.read_u64(addr)
        } else {
            mem.read_u32(addr) as u64
        }
    }

    /// Maps 4 KiB page `va` → `pa` with `flags(level)` at every level.
    pub fn map(&mut self, mem: &mut TestMem, va: u64, pa: u64, flags: &dyn Fn(u32) -> u64) -> u64 {
        let leaf = self.entry_addr(mem, va, 1, flags);
        self.write_entry(mem, leaf, pa | flags(1));
        leaf
    }
}
