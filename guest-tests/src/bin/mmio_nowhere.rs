//! Hostile: loads and stores where the PC machine has nothing: the platform MMIO
//! range, the hole at 0xE000_0000, unassigned space of both PCI BAR windows, where an
//! HPET would be, the empty high BIOS area, far above RAM and near the top of the
//! physical address space. Every width, plain moves and REP string moves. With the
//! VMM's default (`unmapped-mmio = "ignore"`) every load reads all ones, stores vanish
//! and RAM stays intact; the guest checks that and reports PASS. (With `"stop"` the
//! VMM ends the VM at the first access, naming it.)
#![no_std]
#![no_main]

use core::arch::asm;

use guest_tests::{check, cpu, guest, pci, println};

guest!(main);

/// Virtual window (2 MiB, unused below 4 GiB) for addresses above 4 GiB.
const WINDOW: u64 = 0x4000_0000;
const ROUNDS: u32 = 200;

static CANARY: [u64; 8] = [0x5a5a_5a5a_1234_5678; 8];

/// A virtual address for guest-physical `phys`.
fn reach(phys: u64) -> u64 {
    if phys < 1 << 32 {
        phys
    } else {
        pci::map(WINDOW, phys)
    }
}

fn hammer(name: &str, phys: u64) {
    let at = reach(phys);
    for round in 0..ROUNDS {
        // SAFETY: `at` maps `phys`, where no RAM is: the VMM answers every access.
        let (b, w, d, q) = unsafe {
            (at as *mut u8).write_volatile(round as u8);
            (at as *mut u16).write_volatile(round as u16);
            (at as *mut u32).write_volatile(round);
            (at as *mut u64).write_volatile(round as u64 | 1 << 40);
            (
                (at as *const u8).read_volatile(),
                (at as *const u16).read_volatile(),
                (at as *const u32).read_volatile(),
                (at as *const u64).read_volatile(),
            )
        };
        check!(
            (b, w, d, q) == (0xff, 0xffff, 0xffff_ffff, u64::MAX),
            "{name} ({phys:#x}) read {b:#x}/{w:#x}/{d:#x}/{q:#x}, expected all ones"
        );
    }
    let mut copy = [0u64; 8];
    // SAFETY: REP MOVSQ of 8 qwords from `at` (no RAM) into `copy`, then REP STOSQ of
    // 8 qwords to `at`; RDI/RSI/RCX are clobbered as declared.
    unsafe {
        asm!("rep movsq", inout("rsi") at => _, inout("rdi") copy.as_mut_ptr() => _,
             inout("rcx") 8u64 => _, options(nostack));
        asm!("rep stosq", inout("rdi") at => _, inout("rcx") 8u64 => _,
             in("rax") 0x1234_5678u64, options(nostack));
    }
    check!(
        copy == [u64::MAX; 8],
        "{name} ({phys:#x}): REP MOVSQ copied {:#x} ...",
        copy[0]
    );
    println!(
        "{name} ({phys:#x}): {} accesses, reads all ones",
        ROUNDS * 8 + 16
    );
}

fn main() {
    let phys_bits = (cpu::cpuid(0x8000_0008, 0)[0] & 0xff).max(36);
    let places: [(&str, u64); 10] = [
        ("platform MMIO beside the test-device page", 0xd000_1000),
        ("the hole at 0xE000_0000", 0xe000_0000),
        ("the 32-bit PCI window, no BAR", 0xc800_0000),
        ("between ECAM and the IOAPIC", 0xf800_0000),
        ("where an HPET would be", 0xfed0_0000),
        ("the empty high BIOS area", 0xffff_f000),
        ("the 64-bit PCI window, no BAR", 0x4_8000_0000),
        ("64 GiB, far above RAM", 0x10_0000_0000),
        ("half the physical address space", 1u64 << (phys_bits - 1)),
        (
            "the last page of the physical address space",
            (1u64 << phys_bits) - 0x1000,
        ),
    ];
    for (name, phys) in places {
        hammer(name, phys);
    }
    // SAFETY: reading a static of the image.
    let canary = unsafe { core::ptr::read_volatile(&CANARY) };
    check!(
        canary == [0x5a5a_5a5a_1234_5678; 8],
        "RAM changed under stores to nowhere: {:#x}",
        canary[0]
    );
    println!("{} places, RAM intact", places.len());
}
