//! Benchmark fixture: a 64-bit guest with 4-level paging, RAM, one MMIO
//! page, and the three measured cases (MMIO `mov`, `lock cmpxchg`,
//! `rep movsb` of 4 KiB). Kept as a library so that a comparison harness
//! outside the repository can run another emulator on exactly the same
//! guest.

use halifax_emu::{CpuState, Memory, MemoryError};

/// Guest-physical = guest-virtual address of the code page.
pub const CODE: u64 = 0x10_0000;
/// Start of four identity-mapped RAM pages.
pub const DATA: u64 = 0x20_0000;
/// The MMIO page (mapped identity, dispatched to a dummy device register).
pub const MMIO: u64 = 0xfee0_0000;
const TABLES: u64 = 0x30_0000;
const RAM_LEN: usize = 0x40_0000;

/// `mov [rax], ecx`
pub const MOV_MMIO: &[u8] = &[0x89, 0x08];
/// `lock cmpxchg [rdi], ecx`
pub const LOCK_CMPXCHG: &[u8] = &[0xf0, 0x0f, 0xb1, 0x0f];
/// `rep movsb`
pub const REP_MOVSB: &[u8] = &[0xf3, 0xa4];
/// Bytes moved by the `rep movsb` case.
pub const MOVSB_LEN: u64 = 4096;

/// RAM plus one MMIO register.
pub struct BenchMem {
    ram: Vec<u8>,
    /// Last value written to the device.
    pub mmio_reg: u64,
    /// Number of device accesses.
    pub mmio_accesses: u64,
}

impl BenchMem {
    fn ram_range(&mut self, gpa: u64, len: usize) -> Option<&mut [u8]> {
        let start = usize::try_from(gpa).ok()?;
        self.ram.get_mut(start..start.checked_add(len)?)
    }
}

impl Memory for BenchMem {
    #[inline]
    fn read(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        if gpa & !0xfff == MMIO {
            self.mmio_accesses += 1;
            let v = self.mmio_reg.to_le_bytes();
            let n = buf.len().min(8);
            buf[..n].copy_from_slice(&v[..n]);
            return Ok(());
        }
        let src = self
            .ram_range(gpa, buf.len())
            .ok_or(MemoryError::Unmapped { gpa })?;
        buf.copy_from_slice(src);
        Ok(())
    }
    #[inline]
    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), MemoryError> {
        if gpa & !0xfff == MMIO {
            self.mmio_accesses += 1;
            let mut v = [0u8; 8];
            let n = data.len().min(8);
            v[..n].copy_from_slice(&data[..n]);
            self.mmio_reg = u64::from_le_bytes(v);
            return Ok(());
        }
        let dst = self
            .ram_range(gpa, data.len())
            .ok_or(MemoryError::Unmapped { gpa })?;
        dst.copy_from_slice(data);
        Ok(())
    }
    #[inline]
    fn compare_and_write(
        &mut self,
        gpa: u64,
        expected: &[u8],
        new: &[u8],
    ) -> Result<bool, MemoryError> {
        if gpa & !0xfff == MMIO {
            self.write(gpa, new)?;
            return Ok(true);
        }
        let dst = self
            .ram_range(gpa, new.len())
            .ok_or(MemoryError::Unmapped { gpa })?;
        if dst != expected {
            return Ok(false);
        }
        dst.copy_from_slice(new);
        Ok(true)
    }
    fn io_read(&mut self, _port: u16, buf: &mut [u8]) -> Result<(), MemoryError> {
        buf.fill(0xff);
        Ok(())
    }
    fn io_write(&mut self, _port: u16, _data: &[u8]) -> Result<(), MemoryError> {
        Ok(())
    }
}

/// The guest: CPU in 64-bit mode at CODE, memory with page tables.
pub fn guest() -> (CpuState, BenchMem) {
    let mut mem = BenchMem {
        ram: vec![0; RAM_LEN],
        mmio_reg: 0,
        mmio_accesses: 0,
    };
    let mut next = TABLES + 0x1000;
    let mut map = |mem: &mut BenchMem, va: u64| {
        let mut table = TABLES;
        for level in (2..=4).rev() {
            let slot = table + ((va >> (12 + 9 * (level - 1))) & 0x1ff) * 8;
            let mut e = [0u8; 8];
            mem.read(slot, &mut e).unwrap();
            let e = u64::from_le_bytes(e);
            table = if e & 1 == 0 {
                let t = next;
                next += 0x1000;
                mem.write(slot, &(t | 0x23).to_le_bytes()).unwrap();
                t
            } else {
                e & !0xfff
            };
        }
        let slot = table + ((va >> 12) & 0x1ff) * 8;
        // Present, writable, accessed, dirty: steady state for a running guest.
        mem.write(slot, &(va | 0x63).to_le_bytes()).unwrap();
    };
    map(&mut mem, CODE);
    for i in 0..4 {
        map(&mut mem, DATA + i * 0x1000);
    }
    map(&mut mem, MMIO);
    let mut cpu = CpuState::long_mode(TABLES);
    cpu.rip = CODE;
    (cpu, mem)
}

/// Sets the registers of the MMIO `mov` case.
pub fn setup_mov(cpu: &mut CpuState) {
    cpu.rip = CODE;
    cpu.gpr[0] = MMIO + 0x10;
    cpu.gpr[1] = 0x1234_5678;
}

/// Sets the registers of the `lock cmpxchg` case (it succeeds).
pub fn setup_cmpxchg(cpu: &mut CpuState, mem: &mut BenchMem) {
    let mut cur = [0u8; 4];
    mem.read(DATA, &mut cur).unwrap();
    cpu.rip = CODE;
    cpu.gpr[0] = u32::from_le_bytes(cur) as u64;
    cpu.gpr[1] = cpu.gpr[0].wrapping_add(1) & 0xffff_ffff;
    cpu.gpr[7] = DATA;
}

/// Sets the registers of the `rep movsb` case: 4 KiB from DATA to DATA+0x2000.
pub fn setup_movsb(cpu: &mut CpuState) {
    cpu.rip = CODE;
    cpu.gpr[1] = MOVSB_LEN;
    cpu.gpr[6] = DATA;
    cpu.gpr[7] = DATA + 0x2000;
}
