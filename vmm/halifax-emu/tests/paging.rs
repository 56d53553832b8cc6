//! Table tests of the page walker: every paging mode, every level, every
//! permission bit, A/D updates and the #PF error codes.

mod common;

use common::{PageTables, PagingMode, TestMem};
use halifax_emu::cpu::{ctrl, rflags};
use halifax_emu::error::pf;
use halifax_emu::paging::{trace, translate, Access, PagingRegs};
use halifax_emu::{EmuError, Exception};

const MODES: [PagingMode; 4] = [
    PagingMode::Bits32,
    PagingMode::Pae,
    PagingMode::Level4,
    PagingMode::Level5,
];
const PA: u64 = 0x0076_5000;
const P: u64 = 1;
const RW: u64 = 2;
const US: u64 = 4;
const A: u64 = 0x20;
const D: u64 = 0x40;
const PS: u64 = 0x80;
const XD: u64 = 1 << 63;

fn va(mode: PagingMode) -> u64 {
    match mode {
        PagingMode::Bits32 | PagingMode::Pae => 0xc030_5123,
        PagingMode::Level4 => 0x0000_7f12_3456_7123,
        PagingMode::Level5 => 0x00ab_cdef_1234_5123,
    }
}

fn regs(mode: PagingMode, pt: &PageTables) -> PagingRegs {
    let (cr4, efer) = match mode {
        PagingMode::Bits32 => (ctrl::CR4_PSE, 0),
        PagingMode::Pae => (ctrl::CR4_PAE, ctrl::EFER_NXE),
        PagingMode::Level4 => (
            ctrl::CR4_PAE,
            ctrl::EFER_LME | ctrl::EFER_LMA | ctrl::EFER_NXE,
        ),
        PagingMode::Level5 => (
            ctrl::CR4_PAE | ctrl::CR4_LA57,
            ctrl::EFER_LME | ctrl::EFER_LMA | ctrl::EFER_NXE,
        ),
    };
    PagingRegs {
        cr0: ctrl::CR0_PE | ctrl::CR0_PG | ctrl::CR0_WP,
        cr3: pt.root,
        cr4,
        efer,
        rflags: 2,
        cpl: 0,
        phys_bits: 40,
    }
}

/// Maps the test page with `flags(level)`; returns tables, memory and the
/// addresses of the entries at each level (index = level).
fn setup(mode: PagingMode, flags: &dyn Fn(u32) -> u64) -> (TestMem, PageTables, Vec<u64>) {
    let mut mem = TestMem::default();
    let mut pt = PageTables::new(mode, &mut mem);
    pt.map(&mut mem, va(mode), PA, flags);
    mem.page(PA);
    let mut entries = vec![0];
    for level in 1..=mode.levels() {
        entries.push(pt.entry_addr(&mut mem, va(mode), level, flags));
    }
    (mem, pt, entries)
}

fn all(_: u32) -> u64 {
    P | RW | US
}

fn pf_code(r: Result<u64, EmuError>) -> Option<u32> {
    match r {
        Err(EmuError::Exception(Exception {
            vector: 14,
            error_code: Some(c),
            cr2: Some(_),
        })) => Some(c),
        _ => None,
    }
}

/// Levels whose entries carry permission bits (PAE PDPTEs do not).
fn permission_levels(mode: PagingMode) -> Vec<u32> {
    (1..=mode.levels())
        .filter(|l| !(mode == PagingMode::Pae && *l == 3))
        .collect()
}

#[test]
fn translates_and_sets_accessed_then_dirty() {
    for mode in MODES {
        let (mut mem, pt, entries) = setup(mode, &all);
        let r = regs(mode, &pt);
        let got = translate(&mut mem, &r, va(mode), Access::Read).unwrap();
        assert_eq!(got, PA | (va(mode) & 0xfff), "{mode:?}");
        for level in permission_levels(mode) {
            let e = pt.read_entry(&mut mem, entries[level as usize]);
            assert_eq!(e & A, A, "{mode:?} level {level} accessed");
            assert_eq!(e & D, 0, "{mode:?} level {level} not dirty after read");
        }
        translate(&mut mem, &r, va(mode), Access::Write).unwrap();
        let leaf = pt.read_entry(&mut mem, entries[1]);
        assert_eq!(leaf & (A | D), A | D, "{mode:?} leaf dirty after write");
        let upper = pt.read_entry(&mut mem, entries[2]);
        assert_eq!(upper & D, 0, "{mode:?} only the leaf gets D");
    }
}

#[test]
fn not_present_at_each_level_faults_with_code_and_cr2() {
    for mode in MODES {
        for level in 1..=mode.levels() {
            for (access, cpl, want) in [
                (Access::Read, 0, 0),
                (Access::Write, 0, pf::WRITE),
                (Access::Read, 3, pf::USER),
                (Access::Write, 3, pf::WRITE | pf::USER),
            ] {
                let (mut mem, pt, entries) = setup(mode, &all);
                let e = pt.read_entry(&mut mem, entries[level as usize]);
                pt.write_entry(&mut mem, entries[level as usize], e & !P);
                let mut r = regs(mode, &pt);
                r.cpl = cpl;
                let res = translate(&mut mem, &r, va(mode), access);
                assert_eq!(
                    res,
                    Err(EmuError::Exception(Exception::page_fault(want, va(mode)))),
                    "{mode:?} level {level} {access:?} cpl {cpl}"
                );
                // Nothing was marked accessed on a failed walk.
                let leaf = pt.read_entry(&mut mem, entries[1]);
                assert_eq!(leaf & A, 0, "{mode:?} level {level}");
            }
        }
    }
}

#[test]
fn read_only_at_each_level() {
    for mode in MODES {
        for level in permission_levels(mode) {
            let flags = move |l: u32| if l == level { P | US } else { P | RW | US };
            let (mut mem, pt, _) = setup(mode, &flags);
            let mut r = regs(mode, &pt);
            assert!(translate(&mut mem, &r, va(mode), Access::Read).is_ok());
            assert_eq!(
                pf_code(translate(&mut mem, &r, va(mode), Access::Write)),
                Some(pf::PRESENT | pf::WRITE),
                "{mode:?} {level} WP=1"
            );
            r.cr0 &= !ctrl::CR0_WP;
            assert!(
                translate(&mut mem, &r, va(mode), Access::Write).is_ok(),
                "{mode:?} {level} WP=0 supervisor write"
            );
            r.cpl = 3;
            assert_eq!(
                pf_code(translate(&mut mem, &r, va(mode), Access::Write)),
                Some(pf::PRESENT | pf::WRITE | pf::USER),
                "{mode:?} {level} user write ignores WP"
            );
        }
    }
}

#[test]
fn supervisor_only_at_each_level() {
    for mode in MODES {
        for level in permission_levels(mode) {
            let flags = move |l: u32| if l == level { P | RW } else { P | RW | US };
            let (mut mem, pt, _) = setup(mode, &flags);
            let mut r = regs(mode, &pt);
            assert!(translate(&mut mem, &r, va(mode), Access::Read).is_ok());
            r.cpl = 3;
            assert_eq!(
                pf_code(translate(&mut mem, &r, va(mode), Access::Read)),
                Some(pf::PRESENT | pf::USER),
                "{mode:?} {level}"
            );
            assert_eq!(
                pf_code(translate(&mut mem, &r, va(mode), Access::Execute)),
                Some(
                    pf::PRESENT
                        | pf::USER
                        | if mode == PagingMode::Bits32 {
                            0
                        } else {
                            pf::FETCH
                        }
                ),
                "{mode:?} {level} fetch (I/D only reported with NXE)"
            );
        }
    }
}

#[test]
fn no_execute_at_each_level() {
    for mode in [PagingMode::Pae, PagingMode::Level4, PagingMode::Level5] {
        for level in permission_levels(mode) {
            let flags = move |l: u32| {
                if l == level {
                    P | RW | US | XD
                } else {
                    P | RW | US
                }
            };
            let (mut mem, pt, _) = setup(mode, &flags);
            let mut r = regs(mode, &pt);
            assert!(translate(&mut mem, &r, va(mode), Access::Read).is_ok());
            assert_eq!(
                pf_code(translate(&mut mem, &r, va(mode), Access::Execute)),
                Some(pf::PRESENT | pf::FETCH),
                "{mode:?} {level}"
            );
            r.cpl = 3;
            assert_eq!(
                pf_code(translate(&mut mem, &r, va(mode), Access::Execute)),
                Some(pf::PRESENT | pf::FETCH | pf::USER)
            );
            // Without EFER.NXE the XD bit is reserved.
            r.efer &= !ctrl::EFER_NXE;
            r.cpl = 0;
            assert_eq!(
                pf_code(translate(&mut mem, &r, va(mode), Access::Read)),
                Some(pf::PRESENT | pf::RSVD),
                "{mode:?} {level}"
            );
        }
    }
}

#[test]
fn smep_and_smap() {
    for mode in MODES {
        let (mut mem, pt, _) = setup(mode, &all);
        let mut r = regs(mode, &pt);
        r.cr4 |= ctrl::CR4_SMEP;
        assert_eq!(
            pf_code(translate(&mut mem, &r, va(mode), Access::Execute)),
            Some(pf::PRESENT | pf::FETCH),
            "{mode:?} SMEP"
        );
        r.cpl = 3;
        assert!(
            translate(&mut mem, &r, va(mode), Access::Execute).is_ok(),
            "{mode:?} user fetch under SMEP"
        );
        r.cpl = 0;
        r.cr4 = (r.cr4 & !ctrl::CR4_SMEP) | ctrl::CR4_SMAP;
        assert_eq!(
            pf_code(translate(&mut mem, &r, va(mode), Access::Read)),
            Some(pf::PRESENT),
            "{mode:?} SMAP read"
        );
        assert_eq!(
            pf_code(translate(&mut mem, &r, va(mode), Access::Write)),
            Some(pf::PRESENT | pf::WRITE),
            "{mode:?} SMAP write"
        );
        r.rflags |= rflags::AC;
        assert!(
            translate(&mut mem, &r, va(mode), Access::Read).is_ok(),
            "{mode:?} SMAP with AC"
        );
        assert!(translate(&mut mem, &r, va(mode), Access::Write).is_ok());
        // A supervisor page is not affected by SMAP.
        let (mut mem, pt, _) = setup(mode, &|_| P | RW);
        let mut r2 = regs(mode, &pt);
        r2.cr4 |= ctrl::CR4_SMAP;
        assert!(translate(&mut mem, &r2, va(mode), Access::Read).is_ok());
    }
}

#[test]
fn reserved_bits_fault_with_rsvd() {
    for mode in [PagingMode::Pae, PagingMode::Level4, PagingMode::Level5] {
        for level in 1..=mode.levels() {
            let (mut mem, pt, entries) = setup(mode, &all);
            let addr = entries[level as usize];
            let e = pt.read_entry(&mut mem, addr);
            // phys_bits is 40: bit 45 is reserved in every entry.
            pt.write_entry(&mut mem, addr, e | (1 << 45));
            let r = regs(mode, &pt);
            assert_eq!(
                pf_code(translate(&mut mem, &r, va(mode), Access::Write)),
                Some(pf::PRESENT | pf::RSVD | pf::WRITE),
                "{mode:?} {level}"
            );
        }
    }
    // PS in a PML4E / PML5E is reserved.
    for mode in [PagingMode::Level4, PagingMode::Level5] {
        let (mut mem, pt, entries) = setup(mode, &all);
        let top = mode.levels() as usize;
        let e = pt.read_entry(&mut mem, entries[top]);
        pt.write_entry(&mut mem, entries[top], e | PS);
        let r = regs(mode, &pt);
        assert_eq!(
            pf_code(translate(&mut mem, &r, va(mode), Access::Read)),
            Some(pf::PRESENT | pf::RSVD),
            "{mode:?}"
        );
    }
    // 32-bit paging: bit 21 of a 4 MiB PDE is reserved.
    let mode = PagingMode::Bits32;
    let mut mem = TestMem::default();
    let mut pt = PageTables::new(mode, &mut mem);
    let pde = pt.entry_addr(&mut mem, va(mode), 2, &all);
    pt.write_entry(&mut mem, pde, 0x0040_0000 | (1 << 21) | PS | P | RW);
    let r = regs(mode, &pt);
    assert_eq!(
        pf_code(translate(&mut mem, &r, va(mode), Access::Read)),
        Some(pf::PRESENT | pf::RSVD)
    );
}

#[test]
fn large_pages() {
    // (mode, level of the large leaf, page size)
    for (mode, level, size) in [
        (PagingMode::Bits32, 2u32, 4u64 << 20),
        (PagingMode::Pae, 2, 2 << 20),
        (PagingMode::Level4, 2, 2 << 20),
        (PagingMode::Level4, 3, 1 << 30),
        (PagingMode::Level5, 3, 1 << 30),
    ] {
        let mut mem = TestMem::default();
        let mut pt = PageTables::new(mode, &mut mem);
        let v = va(mode);
        let entry = pt.entry_addr(&mut mem, v, level, &all);
        let frame = 0x1_4000_0000u64
            & !(size - 1)
            & if mode == PagingMode::Bits32 {
                0xffc0_0000
            } else {
                u64::MAX
            };
        pt.write_entry(&mut mem, entry, frame | PS | P | RW);
        let r = regs(mode, &pt);
        let got = translate(&mut mem, &r, v, Access::Write).unwrap();
        assert_eq!(got, frame | (v & (size - 1)), "{mode:?} level {level}");
        assert_eq!(
            pt.read_entry(&mut mem, entry) & (A | D),
            A | D,
            "{mode:?} large leaf dirty"
        );
    }
    // PSE-36: a 4 MiB page above 4 GiB.
    let mode = PagingMode::Bits32;
    let mut mem = TestMem::default();
    let mut pt = PageTables::new(mode, &mut mem);
    let pde = pt.entry_addr(&mut mem, va(mode), 2, &all);
    pt.write_entry(&mut mem, pde, 0x0080_0000 | (0x3 << 13) | PS | P);
    let r = regs(mode, &pt);
    assert_eq!(
        translate(&mut mem, &r, va(mode), Access::Read).unwrap(),
        0x3_0080_0000 | (va(mode) & 0x3f_ffff)
    );
}

#[test]
fn paging_disabled_is_identity() {
    let mut mem = TestMem::default();
    let r = PagingRegs {
        cr0: ctrl::CR0_PE,
        cr3: 0,
        cr4: 0,
        efer: 0,
        rflags: 2,
        cpl: 0,
        phys_bits: 40,
    };
    assert_eq!(
        translate(&mut mem, &r, 0x1234_5678, Access::Write).unwrap(),
        0x1234_5678
    );
}

#[test]
fn trace_lists_every_entry_read_and_changes_nothing() {
    for mode in MODES {
        // A complete walk: one entry per level, root first, and the address.
        let (mut mem, pt, entries) = setup(mode, &all);
        let r = regs(mode, &pt);
        let t = trace(&mut mem, &r, va(mode), Access::Write);
        assert_eq!(t.result, Ok(PA | (va(mode) & 0xfff)), "{mode:?}");
        assert_eq!(t.count, mode.levels() as usize, "{mode:?}");
        for (i, level) in (1..=mode.levels()).rev().enumerate() {
            let addr = entries[level as usize];
            assert_eq!(
                t.entries[i],
                (addr, pt.read_entry(&mut mem, addr)),
                "{mode:?}"
            );
        }
        for level in permission_levels(mode) {
            let e = pt.read_entry(&mut mem, entries[level as usize]);
            assert_eq!(e & (A | D), 0, "{mode:?} level {level} left untouched");
        }
        let shown = t.to_string();
        assert!(
            shown.ends_with(&format!(" -> {:#x}", PA | (va(mode) & 0xfff))),
            "{shown}"
        );

        // A walk that stops: the not-present entry is the last one listed.
        for level in 1..=mode.levels() {
            let (mut mem, pt, entries) = setup(mode, &all);
            let addr = entries[level as usize];
            let e = pt.read_entry(&mut mem, addr);
            pt.write_entry(&mut mem, addr, e & !P);
            let t = trace(&mut mem, &regs(mode, &pt), va(mode), Access::Read);
            assert_eq!(pf_code(t.result), Some(0), "{mode:?} level {level}");
            assert_eq!(
                t.count,
                (mode.levels() - level + 1) as usize,
                "{mode:?} level {level}"
            );
            assert_eq!(
                t.entries[t.count - 1],
                (addr, e & !P),
                "{mode:?} level {level}"
            );
            assert!(
                t.to_string().ends_with(" -> exception 14 (error code 0x0)"),
                "{t}"
            );
        }
    }
}

#[test]
fn registers_of_a_cpu_take_the_privilege_level_from_its_mode() {
    use halifax_emu::cpu::{CpuState, SegReg};
    const SS: usize = SegReg::Ss as usize;
    let dpl3 = |mut s: CpuState| {
        s.segs[SS].attributes |= 3 << 5;
        s
    };
    let mut user = dpl3(CpuState::long_mode(0x5000));
    user.rflags |= rflags::AC;
    // real mode is CPL 0 and virtual-8086 mode CPL 3, whatever SS's DPL says
    let mut real = dpl3(CpuState::real_mode());
    let mut v86 = CpuState::protected_mode();
    v86.rflags |= rflags::VM;
    for (state, cpl) in [(&mut user, 3), (&mut real, 0), (&mut v86, 3)] {
        let expected = PagingRegs {
            cr0: state.cr0,
            cr3: state.cr3,
            cr4: state.cr4,
            efer: state.efer,
            rflags: state.rflags,
            cpl,
            phys_bits: 39,
        };
        assert_eq!(PagingRegs::of_cpu(state, 39), expected);
    }
}
