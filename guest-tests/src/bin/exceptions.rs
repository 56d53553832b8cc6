//! Exceptions handled inside the guest: #DE, #UD, #BP, #GP and #PF (with the error
//! code and CR2 the architecture defines), each caught by the guest's IDT and resumed.
#![no_std]
#![no_main]

use core::arch::asm;
use guest_tests::{boot, check, cpu, guest, println, trap};

guest!(main);

const DE: u8 = 0;
const BP: u8 = 3;
const UD: u8 = 6;
const GP: u8 = 13;
const PF: u8 = 14;

/// The 2 MiB region remapped with 4 KiB pages for the page-fault checks.
const REGION: u64 = 0x20_0000;
/// A page of REGION left not present.
const ABSENT: u64 = 0x30_0000;
/// A page of REGION mapped read-only.
const READ_ONLY: u64 = 0x30_1000;

/// Runs one instruction that must trap, with the catcher armed for `$vector`, and
/// returns (address of the instruction, address after it, what the catcher saw).
macro_rules! provoke {
    ($vector:expr, $insn:literal $(, $($operand:tt)+)?) => {{
        let (at, after): (u64, u64);
        trap::arm($vector);
        // SAFETY: the instruction traps before it changes memory; the catcher resumes
        // at label 2, whose address is stored in trap::RESUME first. All registers are
        // as the instruction left them (the trap path restores them).
        unsafe {
            asm!(
                "lea {at}, [rip + 3f]",
                "lea {after}, [rip + 2f]",
                "mov [{resume}], {after}",
                "3:",
                $insn,
                "2:",
                at = out(reg) at,
                after = out(reg) after,
                resume = in(reg) trap::RESUME.as_ptr(),
                $($($operand)+)?
            )
        };
        (at, after, trap::take_caught())
    }};
}

/// Checks that the catcher saw `vector` with `error` at `rip`.
fn expect(
    what: &str,
    caught: Option<trap::Caught>,
    vector: u8,
    error: u64,
    rip: u64,
) -> trap::Caught {
    let Some(c) = caught else {
        guest_tests::fail!("{what}: no exception (expected vector {vector})");
    };
    check!(
        c.vector == vector && c.error == error && c.rip == rip,
        "{what}: got vector {} error {:#x} at RIP {:#x}, expected vector {vector} error {error:#x} at RIP {rip:#x}",
        c.vector,
        c.error,
        c.rip
    );
    c
}

#[repr(C, align(4096))]
struct PageTable([u64; 512]);

static mut REGION_PT: PageTable = PageTable([0; 512]);

/// Maps REGION with 4 KiB pages: ABSENT not present, READ_ONLY read-only, the rest
/// read/write identity; and turns on CR0.WP so ring 0 honours read-only pages.
fn map_region() {
    // SAFETY: this vCPU is the only one running (the others are parked) and REGION is
    // not used by the program; the page table is a static no reference points into.
    unsafe {
        let pt = &mut *core::ptr::addr_of_mut!(REGION_PT);
        for (i, e) in pt.0.iter_mut().enumerate() {
            let page = REGION + i as u64 * 4096;
            *e = match page {
                ABSENT => 0,
                READ_ONLY => page | 0x1,
                _ => page | 0x3,
            };
        }
        *boot::pd_entry(REGION) = pt.0.as_ptr() as u64 | 0x3;
        cpu::flush_tlb();
        cpu::set_cr0(cpu::cr0() | 1 << 16);
    }
}

fn main() {
    let (at, _, c) =
        provoke!(DE, "div rcx", in("rcx") 0u64, inout("rax") 1u64 => _, inout("rdx") 0u64 => _);
    expect("DIV by 0", c, DE, 0, at);
    let (at, _, c) = provoke!(UD, "ud2");
    expect("UD2", c, UD, 0, at);
    let (_, after, c) = provoke!(BP, "int3");
    expect("INT3", c, BP, 0, after);
    let (at, _, c) =
        provoke!(GP, "mov rax, [rcx]", in("rcx") 0x8000_0000_0000_0000u64, out("rax") _);
    expect("load from a non-canonical address", c, GP, 0, at);
    println!("#DE, #UD, #BP, #GP caught and resumed");

    map_region();
    let ro_value = READ_ONLY as *const u64;
    // SAFETY: READ_ONLY is mapped readable (identity, RAM below 4 MiB).
    let before = unsafe { ro_value.read_volatile() };

    let target = ABSENT + 0x123;
    let (at, _, c) = provoke!(PF, "mov byte ptr [rcx], 1", in("rcx") target);
    let c = expect("write to a not-present page", c, PF, 0x2, at);
    check!(
        c.cr2 == target,
        "write to a not-present page: CR2 {:#x}, expected {target:#x}",
        c.cr2
    );

    let (at, _, c) = provoke!(PF, "mov al, [rcx]", in("rcx") target, out("al") _);
    let c = expect("read from a not-present page", c, PF, 0x0, at);
    check!(
        c.cr2 == target,
        "read from a not-present page: CR2 {:#x}, expected {target:#x}",
        c.cr2
    );

    let target = READ_ONLY + 8;
    let (at, _, c) =
        provoke!(PF, "mov qword ptr [rcx], rdx", in("rcx") target, in("rdx") 0x1234u64);
    let c = expect("write to a read-only page (CR0.WP)", c, PF, 0x3, at);
    check!(
        c.cr2 == target,
        "write to a read-only page: CR2 {:#x}, expected {target:#x}",
        c.cr2
    );
    // SAFETY: as above.
    let after = unsafe { ro_value.read_volatile() };
    check!(
        after == before,
        "the faulting write to the read-only page changed it"
    );
    println!("#PF: error codes 0x2, 0x0, 0x3 and CR2 as expected");
}
