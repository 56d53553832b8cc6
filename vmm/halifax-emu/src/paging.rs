//! Guest-virtual (linear) to guest-physical translation: the page walker.
//!
//! Owns every paging mode (none, 32-bit, PAE, 4-level, 5-level), the
//! permission rules (U/S, R/W, NX, CR0.WP, SMEP, SMAP with RFLAGS.AC),
//! reserved-bit checks and accessed/dirty updates. It knows nothing about
//! segmentation or instructions; it only reads and compare-and-writes
//! paging-structure entries through [`Memory`].
//!
//! Accessed and dirty bits are set (with an atomic compare-and-write) only
//! when the whole translation succeeds. PAE PDPTEs are read from memory at
//! CR3 on every walk rather than from the CPU's PDPTE registers.

use crate::cpu::{ctrl, rflags, Cpu};
use crate::error::{pf, EmuError, Exception};
use crate::memory::{Memory, MemoryError};

/// The kind of access being translated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Data read.
    Read,
    /// Data write.
    Write,
    /// Instruction fetch.
    Execute,
}

/// The register state that controls translation, captured once per instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PagingRegs {
    /// CR0 (PG, WP).
    pub cr0: u64,
    /// CR3 (root table).
    pub cr3: u64,
    /// CR4 (PSE, PAE, LA57, SMEP, SMAP).
    pub cr4: u64,
    /// EFER (LMA, NXE).
    pub efer: u64,
    /// RFLAGS (AC).
    pub rflags: u64,
    /// Current privilege level; 3 makes accesses user-mode accesses.
    pub cpl: u8,
    /// The guest's MAXPHYADDR (bits above it in entries are reserved).
    pub phys_bits: u8,
}

const P: u64 = 1 << 0;
const RW: u64 = 1 << 1;
const US: u64 = 1 << 2;
const A: u64 = 1 << 5;
const D: u64 = 1 << 6;
const PS: u64 = 1 << 7;
const XD: u64 = 1 << 63;

/// How many times a walk restarts when an A/D update loses a race.
const MAX_AD_RETRIES: usize = 8;

/// One paging-structure entry visited during a walk.
#[derive(Clone, Copy, Default)]
struct Visited {
    gpa: u64,
    value: u64,
    /// False for PAE PDPTEs, which have no accessed bit.
    has_accessed_bit: bool,
}

/// Result of a successful walk before A/D updates.
#[derive(Default)]
struct Walk {
    gpa: u64,
    visited: [Visited; 5],
    count: usize,
    wide: bool,
    /// Some A bit (or the leaf's D bit for a write) is still clear.
    needs_update: bool,
}

impl PagingRegs {
    /// The translation registers of `cpu` as they are now, for a guest whose
    /// MAXPHYADDR is `phys_bits`.
    pub fn of_cpu<C: Cpu + ?Sized>(cpu: &mut C, phys_bits: u8) -> Self {
        PagingRegs {
            cr0: cpu.cr0(),
            cr3: cpu.cr3(),
            cr4: cpu.cr4(),
            efer: cpu.efer(),
            rflags: cpu.rflags(),
            cpl: cpu.cpl(),
            phys_bits,
        }
    }

    fn paging(&self) -> bool {
        self.cr0 & ctrl::CR0_PG != 0
    }
}

/// Translates linear address `la` for `access`, updating accessed/dirty bits.
///
/// Returns the guest-physical address or a #PF with error code and CR2.
pub fn translate<M: Memory + ?Sized>(
    mem: &mut M,
    regs: &PagingRegs,
    la: u64,
    access: Access,
) -> Result<u64, EmuError> {
    if !regs.paging() {
        return Ok(la);
    }
    let mut walk = Walk::default();
    for _ in 0..MAX_AD_RETRIES {
        walk_into(mem, regs, la, access, &mut walk)?;
        if !walk.needs_update || update_accessed_dirty(mem, &walk, access)? {
            return Ok(walk.gpa);
        }
    }
    Err(EmuError::Memory(MemoryError::Retry))
}

/// A read-only walk for crash reports: every paging-structure entry read,
/// root first, and how the walk ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalkTrace {
    /// The linear address walked.
    pub la: u64,
    /// `(guest-physical address, value)` of each entry read, including the
    /// one the walk stopped at.
    pub entries: [(u64, u64); 5],
    /// How many of `entries` were read.
    pub count: usize,
    /// The guest-physical address, or the fault the CPU would raise.
    pub result: Result<u64, EmuError>,
}

/// Walks the tables for `la` like [`translate`] but changes nothing (no
/// accessed or dirty bits): what a VMM prints when a guest dies, to tell a
/// broken page table from a broken mapping of it.
pub fn trace<M: Memory + ?Sized>(
    mem: &mut M,
    regs: &PagingRegs,
    la: u64,
    access: Access,
) -> WalkTrace {
    let mut walk = Walk::default();
    let result = if regs.paging() {
        walk_into(mem, regs, la, access, &mut walk).map(|()| walk.gpa)
    } else {
        Ok(la)
    };
    let mut entries = [(0, 0); 5];
    for (slot, v) in entries.iter_mut().zip(&walk.visited[..walk.count]) {
        *slot = (v.gpa, v.value);
    }
    WalkTrace {
        la,
        entries,
        count: walk.count,
        result,
    }
}

impl core::fmt::Display for WalkTrace {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:#x}:", self.la)?;
        for (gpa, value) in &self.entries[..self.count] {
            write!(f, " [{gpa:#x}]={value:#x}")?;
        }
        match &self.result {
            Ok(gpa) => write!(f, " -> {gpa:#x}"),
            Err(EmuError::Exception(e)) => write!(
                f,
                " -> exception {} (error code {:#x})",
                e.vector,
                e.error_code.unwrap_or_default()
            ),
            Err(e) => write!(f, " -> {e}"),
        }
    }
}

fn fault(regs: &PagingRegs, la: u64, access: Access, bits: u32) -> EmuError {
    let mut code = bits;
    if access == Access::Write {
        code |= pf::WRITE;
    }
    if regs.cpl == 3 {
        code |= pf::USER;
    }
    let nx_on = regs.cr4 & ctrl::CR4_PAE != 0 && regs.efer & ctrl::EFER_NXE != 0;
    if access == Access::Execute && (nx_on || regs.cr4 & ctrl::CR4_SMEP != 0) {
        code |= pf::FETCH;
    }
    EmuError::Exception(Exception::page_fault(code, la))
}

fn read_entry<M: Memory + ?Sized>(mem: &mut M, gpa: u64, wide: bool) -> Result<u64, EmuError> {
    if wide {
        let mut b = [0u8; 8];
        mem.read(gpa, &mut b)?;
        Ok(u64::from_le_bytes(b))
    } else {
        let mut b = [0u8; 4];
        mem.read(gpa, &mut b)?;
        Ok(u32::from_le_bytes(b) as u64)
    }
}

fn bits(lo: u32, hi_exclusive: u32) -> u64 {
    if hi_exclusive <= lo {
        return 0;
    }
    let width = hi_exclusive - lo;
    (if width >= 64 {
        u64::MAX
    } else {
        (1u64 << width) - 1
    }) << lo
}

/// Walks the tables for `la`, recording the visited entries in `out`.
fn walk_into<M: Memory + ?Sized>(
    mem: &mut M,
    regs: &PagingRegs,
    la: u64,
    access: Access,
    out: &mut Walk,
) -> Result<(), EmuError> {
    let pae = regs.cr4 & ctrl::CR4_PAE != 0;
    let long = regs.efer & ctrl::EFER_LMA != 0;
    let nxe = regs.efer & ctrl::EFER_NXE != 0;
    let phys = u32::from(regs.phys_bits.clamp(32, 52));
    // Bits [MAXPHYADDR, 52) of 64-bit entries are reserved, and XD without NXE.
    let high_rsvd = bits(phys, 52) | if nxe { 0 } else { XD };
    let addr_mask = bits(12, phys);

    let (levels, wide): (u32, bool) = match (pae, long) {
        (false, _) => (2, false),
        (true, false) => (3, true),
        (true, true) if regs.cr4 & ctrl::CR4_LA57 != 0 => (5, true),
        (true, true) => (4, true),
    };
    let la = if long { la } else { la & 0xffff_ffff };

    let mut table = if !pae {
        regs.cr3 & 0xffff_f000
    } else if !long {
        regs.cr3 & 0xffff_ffe0
    } else {
        regs.cr3 & addr_mask
    };
    let visited = &mut out.visited;
    let mut count = 0;
    let (mut writable, mut user, mut no_exec) = (true, true, false);

    let mut level = levels;
    let (frame, offset_bits) = loop {
        let (shift, index_mask, entry_size) = if !pae {
            (12 + 10 * (level - 1), 0x3ff, 4)
        } else if !long && level == 3 {
            (30, 0x3, 8)
        } else {
            (12 + 9 * (level - 1), 0x1ff, 8)
        };
        let gpa = table + ((la >> shift) & index_mask) * entry_size;
        let entry = read_entry(mem, gpa, wide)?;
        let pae_pdpte = pae && !long && level == 3;
        visited[count] = Visited {
            gpa,
            value: entry,
            has_accessed_bit: !pae_pdpte,
        };
        count += 1;
        out.count = count;
        if entry & P == 0 {
            return Err(fault(regs, la, access, 0));
        }
        let large = !pae_pdpte
            && entry & PS != 0
            && match (pae, level) {
                (false, 2) => regs.cr4 & ctrl::CR4_PSE != 0,
                (true, 2) | (true, 3) => true,
                _ => false,
            };
        let rsvd = if !wide {
            if large {
                // 4 MiB page: bits 13..20 are physical bits 32..39, bit 21 reserved.
                let phys40 = phys.min(40);
                (1 << 21) | bits(13 + (phys40 - 32), 21)
            } else {
                0
            }
        } else if pae_pdpte {
            high_rsvd | XD | 0x1e6
        } else if long && level >= 4 {
            high_rsvd | PS
        } else if large {
            high_rsvd | bits(13, shift)
        } else {
            high_rsvd
        };
        if entry & rsvd != 0 {
            return Err(fault(regs, la, access, pf::PRESENT | pf::RSVD));
        }
        if !pae_pdpte {
            writable &= entry & RW != 0;
            user &= entry & US != 0;
            no_exec |= nxe && entry & XD != 0;
        }
        if level == 1 || large {
            let frame = if !wide && large {
                (entry & 0xffc0_0000) | ((entry & 0x001f_e000) << 19)
            } else {
                entry & addr_mask & !bits(12, shift)
            };
            break (frame, shift);
        }
        table = if wide {
            entry & addr_mask
        } else {
            entry & 0xffff_f000
        };
        level -= 1;
    };

    check_permissions(regs, la, access, writable, user, no_exec)?;
    let leaf = visited[count - 1].value;
    let needs_update = visited[..count]
        .iter()
        .any(|v| v.has_accessed_bit && v.value & A == 0)
        || (access == Access::Write && leaf & D == 0);
    out.gpa = frame | (la & bits(0, offset_bits));
    out.wide = wide;
    out.needs_update = needs_update;
    Ok(())
}

fn check_permissions(
    regs: &PagingRegs,
    la: u64,
    access: Access,
    writable: bool,
    user_page: bool,
    no_exec: bool,
) -> Result<(), EmuError> {
    let denied = if regs.cpl == 3 {
        !user_page
            || (access == Access::Write && !writable)
            || (access == Access::Execute && no_exec)
    } else {
        let smap_blocks =
            user_page && regs.cr4 & ctrl::CR4_SMAP != 0 && regs.rflags & rflags::AC == 0;
        match access {
            Access::Read => smap_blocks,
            Access::Write => smap_blocks || (!writable && regs.cr0 & ctrl::CR0_WP != 0),
            Access::Execute => no_exec || (user_page && regs.cr4 & ctrl::CR4_SMEP != 0),
        }
    };
    if denied {
        Err(fault(regs, la, access, pf::PRESENT))
    } else {
        Ok(())
    }
}

/// Sets A in every visited entry and D in the leaf for writes. Returns false
/// if an entry changed under us (the walk must be redone).
fn update_accessed_dirty<M: Memory + ?Sized>(
    mem: &mut M,
    walk: &Walk,
    access: Access,
) -> Result<bool, EmuError> {
    for (i, v) in walk.visited[..walk.count].iter().enumerate() {
        let leaf = i + 1 == walk.count;
        if !v.has_accessed_bit {
            continue;
        }
        let mut new = v.value | A;
        if leaf && access == Access::Write {
            new |= D;
        }
        if new == v.value {
            continue;
        }
        let ok = if walk.wide {
            mem.compare_and_write(v.gpa, &v.value.to_le_bytes(), &new.to_le_bytes())?
        } else {
            mem.compare_and_write(
                v.gpa,
                &(v.value as u32).to_le_bytes(),
                &(new as u32).to_le_bytes(),
            )?
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}
