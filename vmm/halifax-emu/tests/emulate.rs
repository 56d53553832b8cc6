//! Instruction-level tests of behaviour the native differential harness
//! cannot reach: MMIO dispatch, port I/O, faults, 16/32-bit modes,
//! segmentation, fetch across pages, REP interruption and error reporting.

mod common;

use common::{PageTables, PagingMode, TestMem};
use halifax_emu::cpu::{ctrl, rflags};
use halifax_emu::error::{pf, vector};
use halifax_emu::{CpuState, EmuError, Emulator, Exception, SegReg, Segment, StepOutcome};

const CODE: u64 = 0x40_0000;
const DATA: u64 = 0x50_0000;
const MMIO: u64 = 0xfee0_0000;

/// 64-bit guest with 4-level paging: CODE and DATA identity-mapped, MMIO
/// page mapped to the device window.
fn long_mode() -> (CpuState, TestMem, PageTables) {
    let mut mem = TestMem::default();
    let mut pt = PageTables::new(PagingMode::Level4, &mut mem);
    for page in [CODE, CODE + 0x1000, DATA, DATA + 0x1000] {
        pt.map(&mut mem, page, page, &|_| 0x3);
        mem.page(page);
    }
    pt.map(&mut mem, MMIO, MMIO, &|_| 0x3);
    mem.mmio = Some((MMIO, MMIO + 0x1000));
    let mut cpu = CpuState::long_mode(pt.root);
    cpu.rip = CODE;
    (cpu, mem, pt)
}

fn step(cpu: &mut CpuState, mem: &mut TestMem, bytes: &[u8]) -> Result<StepOutcome, EmuError> {
    Emulator::default().step(cpu, mem, Some(bytes))
}

fn exception(r: Result<StepOutcome, EmuError>) -> Exception {
    match r {
        Err(EmuError::Exception(e)) => e,
        other => panic!("expected an exception, got {other:?}"),
    }
}

#[test]
fn mmio_store_and_load_go_to_the_device_at_the_physical_address() {
    let (mut cpu, mut mem, _) = long_mode();
    cpu.gpr[0] = MMIO + 0x300;
    cpu.gpr[1] = 0xdead_beef_1234_5678;
    // mov [rax], ecx
    assert_eq!(
        step(&mut cpu, &mut mem, &[0x89, 0x08]),
        Ok(StepOutcome::Completed)
    );
    assert_eq!(
        mem.mmio_log,
        vec![(true, MMIO + 0x300, 0x1234_5678u32.to_le_bytes().to_vec())]
    );
    assert_eq!(cpu.rip, CODE + 2);
    // mov r9d, [rax] (REX.R): 44 8b 08
    mem.mmio_value = 0xaabb_ccdd;
    cpu.gpr[9] = u64::MAX;
    step(&mut cpu, &mut mem, &[0x44, 0x8b, 0x08]).unwrap();
    assert_eq!(cpu.gpr[9], 0xaabb_ccdd, "32-bit load zero-extends r9");
    // vmovdqu ymm0, [rax]: one 32-byte read
    step(&mut cpu, &mut mem, &[0xc5, 0xfe, 0x6f, 0x00]).unwrap();
    assert_eq!(mem.mmio_log.last().unwrap().2.len(), 32);
    assert_eq!(cpu.xmm[0] as u32, 0xaabb_ccdd);
}

#[test]
fn instruction_fetch_crosses_a_page_boundary() {
    let (mut cpu, mut mem, mut pt) = long_mode();
    // mov [rax], ecx split: 0x89 on the first page, 0x08 on the next, which
    // is backed by a different physical frame.
    let second = CODE + 0x1000;
    pt.map(&mut mem, second, DATA + 0x1000, &|_| 0x3);
    mem.write_bytes(second - 1, &[0x89]);
    mem.write_bytes(DATA + 0x1000, &[0x08]);
    cpu.rip = second - 1;
    cpu.gpr[0] = DATA;
    cpu.gpr[1] = 0x77;
    assert_eq!(
        Emulator::default().step(&mut cpu, &mut mem, None),
        Ok(StepOutcome::Completed)
    );
    assert_eq!(mem.read_u32(DATA), 0x77);
    assert_eq!(cpu.rip, second + 1);
    // Unmap the second page: #PF on the fetch, CR2 = start of that page.
    let leaf = pt.entry_addr(&mut mem, second, 1, &|_| 0x3);
    pt.write_entry(&mut mem, leaf, 0);
    cpu.rip = second - 1;
    let e = exception(Emulator::default().step(&mut cpu, &mut mem, None));
    assert_eq!(e, Exception::page_fault(pf::FETCH, second));
    assert_eq!(cpu.rip, second - 1, "state untouched on fault");
}

#[test]
fn user_write_to_supervisor_page_reports_pf_with_cr2() {
    let (mut cpu, mut mem, _) = long_mode();
    cpu.segs[SegReg::Ss as usize].attributes |= 3 << 5; // CPL 3
    cpu.segs[SegReg::Cs as usize].attributes |= 3 << 5;
    cpu.gpr[0] = DATA + 0x10;
    let e = exception(step(&mut cpu, &mut mem, &[0x89, 0x08]));
    assert_eq!(
        e,
        Exception::page_fault(pf::PRESENT | pf::WRITE | pf::USER, DATA + 0x10)
    );
    assert_eq!(cpu.rip, CODE);
}

#[test]
fn non_canonical_addresses_fault_gp_or_ss() {
    let (mut cpu, mut mem, _) = long_mode();
    cpu.gpr[0] = 0x8000_0000_0000_0000;
    assert_eq!(
        exception(step(&mut cpu, &mut mem, &[0x8b, 0x08])),
        Exception::gp0()
    );
    cpu.gpr[5] = 0x0000_8000_0000_0000;
    // mov ecx, [rbp+0]: SS-relative
    assert_eq!(
        exception(step(&mut cpu, &mut mem, &[0x8b, 0x4d, 0x00])),
        Exception::ss0()
    );
}

#[test]
fn lock_cmpxchg_success_and_failure() {
    let (mut cpu, mut mem, _) = long_mode();
    mem.write_u64(DATA, 5);
    cpu.gpr[7] = DATA;
    cpu.gpr[0] = 5;
    cpu.gpr[1] = 9;
    // lock cmpxchg [rdi], ecx
    step(&mut cpu, &mut mem, &[0xf0, 0x0f, 0xb1, 0x0f]).unwrap();
    assert_eq!(mem.read_u32(DATA), 9);
    assert_ne!(cpu.rflags & rflags::ZF, 0);
    cpu.rip = CODE;
    step(&mut cpu, &mut mem, &[0xf0, 0x0f, 0xb1, 0x0f]).unwrap();
    assert_eq!(cpu.rflags & rflags::ZF, 0);
    assert_eq!(cpu.gpr[0], 9, "accumulator loaded on failure");
}

#[test]
fn misuse_raises_the_architectural_exception() {
    let (mut cpu, mut mem, _) = long_mode();
    // lock add eax, ecx (register destination)
    assert_eq!(
        exception(step(&mut cpu, &mut mem, &[0xf0, 0x01, 0xc8])).vector,
        vector::UD
    );
    // movdqa xmm0, [rax] misaligned
    cpu.gpr[0] = DATA + 8;
    assert_eq!(
        exception(step(&mut cpu, &mut mem, &[0x66, 0x0f, 0x6f, 0x00])),
        Exception::gp0()
    );
    // cmpxchg16b [rax] misaligned
    assert_eq!(
        exception(step(&mut cpu, &mut mem, &[0x48, 0x0f, 0xc7, 0x08])),
        Exception::gp0()
    );
    // SSE with CR0.TS: #NM
    cpu.cr0 |= ctrl::CR0_TS;
    cpu.gpr[0] = DATA;
    assert_eq!(
        exception(step(&mut cpu, &mut mem, &[0x66, 0x0f, 0x6f, 0x00])).vector,
        vector::NM
    );
    // Undecodable bytes: #UD; a valid but unemulated instruction: Unsupported.
    assert_eq!(
        exception(step(&mut cpu, &mut mem, &[0x0f, 0x04])).vector,
        vector::UD
    );
    assert!(matches!(
        step(&mut cpu, &mut mem, &[0x0f, 0xa2]),
        Err(EmuError::Unsupported { .. })
    ));
    // Truncated bytes with fetching impossible beyond: fetched from memory.
    assert_eq!(cpu.rip, CODE);
}

#[test]
fn rep_movsb_is_interrupted_and_resumed() {
    let (mut cpu, mut mem, _) = long_mode();
    let src: Vec<u8> = (0..100u8).collect();
    mem.write_bytes(DATA, &src);
    cpu.gpr[6] = DATA;
    cpu.gpr[7] = DATA + 0x800;
    cpu.gpr[1] = 100;
    let emu = Emulator {
        max_rep_iterations: 30,
        ..Emulator::default()
    };
    let mut rounds = 0;
    loop {
        rounds += 1;
        match emu.step(&mut cpu, &mut mem, Some(&[0xf3, 0xa4])).unwrap() {
            StepOutcome::Interrupted => {
                assert_eq!(cpu.rip, CODE);
                assert_eq!(cpu.gpr[1], 100 - 30 * rounds);
            }
            StepOutcome::Completed => break,
        }
    }
    assert_eq!(rounds, 4);
    assert_eq!(cpu.gpr[1], 0);
    assert_eq!(cpu.gpr[6], DATA + 100);
    assert_eq!(mem.read_bytes(DATA + 0x800, 100), src);
    assert_eq!(cpu.rip, CODE + 2);
}

#[test]
fn rep_string_faults_keep_completed_iterations() {
    let (mut cpu, mut mem, _) = long_mode();
    // rep stosd running off the end of DATA+0x1000 into an unmapped page.
    cpu.gpr[7] = DATA + 0x2000 - 8;
    cpu.gpr[1] = 4;
    cpu.gpr[0] = 0x1111_2222;
    let e = exception(step(&mut cpu, &mut mem, &[0xf3, 0xab]));
    assert_eq!(e, Exception::page_fault(pf::WRITE, DATA + 0x2000));
    assert_eq!(cpu.gpr[1], 2, "two stores done");
    assert_eq!(cpu.gpr[7], DATA + 0x2000);
    assert_eq!(cpu.rip, CODE);
}

#[test]
fn string_port_io_in_and_out() {
    let (mut cpu, mut mem, _) = long_mode();
    mem.write_bytes(DATA, b"hello");
    cpu.gpr[6] = DATA;
    cpu.gpr[2] = 0x3f8;
    cpu.gpr[1] = 5;
    // rep outsb
    step(&mut cpu, &mut mem, &[0xf3, 0x6e]).unwrap();
    let out: Vec<u8> = mem
        .io_log
        .iter()
        .map(|(w, p, d)| {
            assert!(*w && *p == 0x3f8);
            d[0]
        })
        .collect();
    assert_eq!(out, b"hello");
    // rep insw, DF=1 (descending)
    mem.io_value = 0xbeef;
    cpu.rip = CODE;
    cpu.rflags |= rflags::DF;
    cpu.gpr[7] = DATA + 0x100;
    cpu.gpr[1] = 3;
    step(&mut cpu, &mut mem, &[0x66, 0xf3, 0x6d]).unwrap();
    assert_eq!(cpu.gpr[7], DATA + 0x100 - 6);
    for i in 0..3 {
        assert_eq!(mem.read_bytes(DATA + 0x100 - 2 * i, 2), vec![0xef, 0xbe]);
    }
}

fn real_mode() -> (CpuState, TestMem) {
    let mut mem = TestMem::default();
    for p in 0..0x30 {
        mem.page(p * 0x1000);
    }
    let mut cpu = CpuState::real_mode();
    cpu.segs[SegReg::Ds as usize] = Segment::real_mode(0x1000);
    cpu.segs[SegReg::Cs as usize] = Segment::real_mode(0x0800);
    cpu.rip = 0x100;
    (cpu, mem)
}

#[test]
fn real_mode_16bit_addressing_wraps_and_checks_limits() {
    let (mut cpu, mut mem) = real_mode();
    cpu.gpr[0] = 0x1234;
    cpu.gpr[3] = 0x100; // bx
    cpu.gpr[6] = 0x20; // si
                       // mov [bx+si+4], ax
    step(&mut cpu, &mut mem, &[0x89, 0x40, 0x04]).unwrap();
    assert_eq!(mem.read_bytes(0x10124, 2), vec![0x34, 0x12]);
    assert_eq!(cpu.rip, 0x103);
    // Offset arithmetic wraps at 64 KiB: bx=0xfffe, disp 4 → offset 2.
    cpu.gpr[3] = 0xfffe;
    cpu.gpr[6] = 0;
    step(&mut cpu, &mut mem, &[0x89, 0x40, 0x04]).unwrap();
    assert_eq!(mem.read_bytes(0x10002, 2), vec![0x34, 0x12]);
    // A word at offset 0xffff crosses the limit: #GP(0).
    cpu.gpr[3] = 0xffff;
    assert_eq!(
        exception(step(&mut cpu, &mut mem, &[0x89, 0x07])),
        Exception::gp0()
    );
    // 0x67: 32-bit addressing in real mode, beyond the limit.
    cpu.gpr[3] = 0x10000;
    assert_eq!(
        exception(step(&mut cpu, &mut mem, &[0x67, 0x89, 0x03])),
        Exception::gp0()
    );
    // 0x66: 32-bit operand in 16-bit code.
    cpu.gpr[3] = 0x10;
    cpu.gpr[0] = 0xcafe_f00d;
    step(&mut cpu, &mut mem, &[0x66, 0x89, 0x07]).unwrap();
    assert_eq!(mem.read_u32(0x10010), 0xcafe_f00d);
    // rep movsw with 16-bit SI/DI/CX: upper halves untouched.
    cpu.gpr[6] = 0xdead_0000_0000_0010;
    cpu.gpr[7] = 0x0000_0000_0000_0040;
    cpu.gpr[1] = 0xffff_0000_0000_0002;
    cpu.segs[SegReg::Es as usize] = Segment::real_mode(0x1000);
    step(&mut cpu, &mut mem, &[0xf3, 0xa5]).unwrap();
    assert_eq!(cpu.gpr[1], 0xffff_0000_0000_0000);
    assert_eq!(cpu.gpr[6], 0xdead_0000_0000_0014);
    assert_eq!(mem.read_u32(0x10040), 0xcafe_f00d);
}

fn protected_mode() -> (CpuState, TestMem) {
    let mut mem = TestMem::default();
    for p in 0..0x20 {
        mem.page(0x1000_0000 + p * 0x1000);
    }
    let mut cpu = CpuState::protected_mode();
    cpu.segs[SegReg::Ds as usize].base = 0x1000_0000;
    (cpu, mem)
}

#[test]
fn protected_mode_32bit_segments() {
    let (mut cpu, mut mem) = protected_mode();
    cpu.gpr[0] = 0x100;
    cpu.gpr[1] = 2;
    cpu.gpr[2] = 0x5566_7788;
    // mov [eax+ecx*4+8], edx → DS.base + 0x110
    step(&mut cpu, &mut mem, &[0x89, 0x54, 0x88, 0x08]).unwrap();
    assert_eq!(mem.read_u32(0x1000_0110), 0x5566_7788);
    // 0x66: mov [eax], dx
    step(&mut cpu, &mut mem, &[0x66, 0x89, 0x10]).unwrap();
    assert_eq!(mem.read_bytes(0x1000_0100, 2), vec![0x88, 0x77]);
    // Read-only data segment: write faults.
    cpu.segs[SegReg::Ds as usize].attributes =
        (cpu.segs[SegReg::Ds as usize].attributes & !0xf) | 0x1;
    assert_eq!(
        exception(step(&mut cpu, &mut mem, &[0x89, 0x10])),
        Exception::gp0()
    );
    // Expand-down writable segment, limit 0xfff: offsets ≤ limit fault.
    cpu.segs[SegReg::Ds as usize].attributes =
        (cpu.segs[SegReg::Ds as usize].attributes & !0xf) | 0x7;
    cpu.segs[SegReg::Ds as usize].limit = 0xfff;
    cpu.gpr[0] = 0x800;
    assert_eq!(
        exception(step(&mut cpu, &mut mem, &[0x89, 0x10])),
        Exception::gp0()
    );
    cpu.gpr[0] = 0x2000;
    step(&mut cpu, &mut mem, &[0x89, 0x10]).unwrap();
    assert_eq!(mem.read_u32(0x1000_2000), 0x5566_7788);
    // Stack limit: push dword [eax] with ESP below SS.limit → #SS(0).
    cpu.segs[SegReg::Ss as usize].limit = 0xff;
    cpu.segs[SegReg::Ss as usize].base = 0x1000_0000;
    cpu.gpr[4] = 0x1000;
    assert_eq!(
        exception(step(&mut cpu, &mut mem, &[0xff, 0x30])),
        Exception::ss0()
    );
}

#[test]
fn fs_and_gs_bases_apply_in_64_bit_mode_others_do_not() {
    let (mut cpu, mut mem, _) = long_mode();
    mem.write_u64(DATA + 0x10, 0x1122_3344_5566_7788);
    cpu.segs[SegReg::Fs as usize].base = DATA;
    cpu.segs[SegReg::Es as usize].base = 0xdead_0000; // ignored in 64-bit mode
    cpu.gpr[3] = 0x10;
    // mov eax, fs:[rbx]
    step(&mut cpu, &mut mem, &[0x64, 0x8b, 0x03]).unwrap();
    assert_eq!(cpu.gpr[0], 0x5566_7788);
    // mov rax, es:[rbx + DATA]
    cpu.gpr[3] = DATA + 0x10;
    step(&mut cpu, &mut mem, &[0x26, 0x48, 0x8b, 0x03]).unwrap();
    assert_eq!(cpu.gpr[0], 0x1122_3344_5566_7788);
}

#[test]
fn protected_mode_with_32bit_paging_translates_and_faults() {
    let mut mem = TestMem::default();
    let mut pt = PageTables::new(PagingMode::Bits32, &mut mem);
    pt.map(&mut mem, 0xc000_0000, 0x0070_0000, &|_| 0x3);
    mem.page(0x0070_0000);
    let mut cpu = CpuState::protected_mode();
    cpu.cr0 |= ctrl::CR0_PG | ctrl::CR0_WP;
    cpu.cr3 = pt.root;
    cpu.gpr[0] = 0xc000_0040;
    cpu.gpr[1] = 0x0bad_cafe;
    step(&mut cpu, &mut mem, &[0x89, 0x08]).unwrap();
    assert_eq!(mem.read_u32(0x0070_0040), 0x0bad_cafe);
    // Unmapped linear address: #PF with W set and CR2.
    cpu.gpr[0] = 0xc000_1000;
    assert_eq!(
        exception(step(&mut cpu, &mut mem, &[0x89, 0x08])),
        Exception::page_fault(pf::WRITE, 0xc000_1000)
    );
    // cmpxchg8b [eax] in 32-bit code: EDX:EAX vs m64.
    cpu.gpr[0] = 0xc000_0080;
    mem.write_u64(0x0070_0080, 0x0000_0002_0000_0001);
    cpu.gpr = [0; 16];
    cpu.gpr[5] = 0xc000_0080; // ebp → SS-relative, flat
    cpu.gpr[0] = 1;
    cpu.gpr[2] = 2;
    cpu.gpr[3] = 0x33;
    cpu.gpr[1] = 0x44;
    // cmpxchg8b [ebp+0]
    step(&mut cpu, &mut mem, &[0x0f, 0xc7, 0x4d, 0x00]).unwrap();
    assert_eq!(mem.read_u64(0x0070_0080), 0x0000_0044_0000_0033);
    assert_ne!(cpu.rflags & rflags::ZF, 0);
}

#[test]
fn virtual_8086_mode_is_user_mode_with_real_mode_segments() {
    let mut mem = TestMem::default();
    let mut pt = PageTables::new(PagingMode::Bits32, &mut mem);
    // Supervisor-only page at linear 0x20000, user page at 0x21000.
    pt.map(&mut mem, 0x20000, 0x20000, &|l| {
        if l == 1 {
            0x3
        } else {
            0x7
        }
    });
    pt.map(&mut mem, 0x21000, 0x21000, &|_| 0x7);
    mem.page(0x20000);
    mem.page(0x21000);
    let mut cpu = CpuState::protected_mode();
    cpu.cr0 |= ctrl::CR0_PG;
    cpu.cr3 = pt.root;
    cpu.rflags |= rflags::VM;
    cpu.segs = [Segment::real_mode(0x2000); 6];
    cpu.rip = 0;
    cpu.gpr[3] = 0x1010;
    cpu.gpr[0] = 0xabcd;
    // mov [bx], ax → linear 0x21010 (user page): fine.
    step(&mut cpu, &mut mem, &[0x89, 0x07]).unwrap();
    assert_eq!(mem.read_bytes(0x21010, 2), vec![0xcd, 0xab]);
    // mov [bx], ax → linear 0x20010 (supervisor page): user-mode #PF.
    cpu.gpr[3] = 0x10;
    assert_eq!(
        exception(step(&mut cpu, &mut mem, &[0x89, 0x07])),
        Exception::page_fault(pf::PRESENT | pf::WRITE | pf::USER, 0x20010)
    );
}

#[test]
fn device_errors_leave_the_guest_untouched() {
    let (mut cpu, mut mem, mut pt) = long_mode();
    // A mapped guest page with nothing behind it physically.
    pt.map(&mut mem, DATA + 0x3000, 0xdead_0000, &|_| 0x3);
    cpu.gpr[0] = DATA + 0x3000;
    cpu.gpr[1] = 0x5a5a;
    let before = cpu.clone();
    assert_eq!(
        step(&mut cpu, &mut mem, &[0x8b, 0x08]),
        Err(EmuError::Memory(halifax_emu::MemoryError::Unmapped {
            gpa: 0xdead_0000
        }))
    );
    assert_eq!(cpu, before);
}
