//! Port I/O against the test device: IN/OUT of widths 1, 2 and 4, REP INSD that
//! takes one value per element from `TD_COUNTER`, REP OUTSD/OUTSW that add every
//! element to `TD_SUM`.
#![no_std]
#![no_main]

use core::arch::asm;
use guest_tests::device::{self, TD_COUNTER, TD_MEM, TD_SCRATCH, TD_SUM, TD_VCPU};
use guest_tests::{check, cpu, guest, println};

guest!(main);

fn main() {
    device::require();
    let vcpu = cpu::inl(TD_VCPU);
    check!(vcpu == 0, "TD_VCPU read {vcpu} on the boot vCPU");
    let mem = cpu::inl(TD_MEM);
    check!(
        mem >= 4,
        "TD_MEM says {mem} MiB of RAM, the guests need at least 4"
    );
    println!("vCPU {vcpu}, {mem} MiB of RAM");

    cpu::outb(TD_SCRATCH, 0xab);
    check!(
        cpu::inl(TD_SCRATCH) == 0xab,
        "byte OUT 0xab then dword IN read {:#x}",
        cpu::inl(TD_SCRATCH)
    );
    cpu::outw(TD_SCRATCH, 0x1234);
    check!(
        cpu::inb(TD_SCRATCH) == 0x34,
        "word OUT 0x1234 then byte IN read {:#x}",
        cpu::inb(TD_SCRATCH)
    );
    check!(
        cpu::inw(TD_SCRATCH) == 0x1234,
        "word OUT 0x1234 then word IN read {:#x}",
        cpu::inw(TD_SCRATCH)
    );
    cpu::outl(TD_SCRATCH, 0xdead_beef);
    check!(
        cpu::inw(TD_SCRATCH) == 0xbeef,
        "dword OUT 0xdeadbeef then word IN read {:#x}",
        cpu::inw(TD_SCRATCH)
    );
    check!(
        cpu::inl(TD_SCRATCH) == 0xdead_beef,
        "dword OUT then dword IN read {:#x}",
        cpu::inl(TD_SCRATCH)
    );
    println!("IN/OUT widths 1, 2, 4 on TD_SCRATCH");

    let first = cpu::inl(TD_COUNTER);
    let mut values = [0u32; 16];
    // SAFETY: REP INSD writes exactly 16 dwords into `values` (DF = 0 by the ABI).
    unsafe {
        asm!("rep insd", in("dx") TD_COUNTER, inout("rcx") values.len() => _, inout("rdi") values.as_mut_ptr() => _,
             options(nostack, preserves_flags))
    };
    for (i, &v) in values.iter().enumerate() {
        let expected = first.wrapping_add(1 + i as u32);
        check!(
            v == expected,
            "REP INSD from TD_COUNTER: element {i} is {v}, expected {expected} ({values:?})"
        );
    }
    check!(
        cpu::inl(TD_COUNTER) == first.wrapping_add(17),
        "TD_COUNTER after REP INSD is not first + 17"
    );

    let before = cpu::inl(TD_SUM);
    let dwords: [u32; 10] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
    let words: [u16; 3] = [0x100, 0x200, 0x300];
    // SAFETY: REP OUTSD/OUTSW only read the two arrays (DF = 0 by the ABI).
    unsafe {
        asm!("rep outsd", in("dx") TD_SUM, inout("rcx") dwords.len() => _, inout("rsi") dwords.as_ptr() => _,
             options(readonly, nostack, preserves_flags));
        asm!("rep outsw", in("dx") TD_SUM, inout("rcx") words.len() => _, inout("rsi") words.as_ptr() => _,
             options(readonly, nostack, preserves_flags));
    }
    let after = cpu::inl(TD_SUM);
    let expected = before.wrapping_add(55 + 0x600);
    check!(
        after == expected,
        "TD_SUM {after:#x} after REP OUTSD/OUTSW, expected {expected:#x} (was {before:#x})"
    );
    println!("REP INSD from TD_COUNTER, REP OUTSD/OUTSW to TD_SUM");
}
