//! CPUID: the VMM answers every leaf the guest asks (README.md, guest `cpuid`).
#![no_std]
#![no_main]

use guest_tests::{check, cpu::cpuid, guest, println};

guest!(main);

fn main() {
    let [max, b, c, d] = cpuid(0, 0);
    check!(max >= 1, "leaf 0: max basic leaf {max} < 1");
    let mut vendor = [0u8; 12];
    for (i, r) in [b, d, c].iter().enumerate() {
        vendor[4 * i..4 * i + 4].copy_from_slice(&r.to_le_bytes());
    }
    let vendor = core::str::from_utf8(&vendor).unwrap_or("");
    check!(
        vendor.len() == 12 && vendor.bytes().all(|c| c.is_ascii_graphic() || c == b' '),
        "leaf 0: vendor {:?} is not 12 printable bytes",
        vendor
    );
    println!("vendor {vendor}, max basic leaf {max:#x}");

    let one = cpuid(1, 0);
    check!(
        one != [max, b, c, d],
        "leaf 1 returned the same registers as leaf 0"
    );
    // FPU (0), TSC (4), MSR (5), PAE (6), CX8 (8), APIC (9) are what the guests rely on.
    let need = (1 << 0) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 8);
    check!(
        one[3] & need == need,
        "leaf 1 EDX {:#x} lacks FPU/TSC/MSR/PAE/CX8 ({need:#x})",
        one[3]
    );
    println!(
        "leaf 1: eax {:#x} ebx {:#x} ecx {:#x} edx {:#x}",
        one[0], one[1], one[2], one[3]
    );

    let [ext_max, ..] = cpuid(0x8000_0000, 0);
    check!(
        ext_max >= 0x8000_0001,
        "leaf 0x80000000: max extended leaf {ext_max:#x}"
    );
    let ext = cpuid(0x8000_0001, 0);
    // We run in long mode, so the CPU the VMM describes must have it.
    check!(
        ext[3] & (1 << 29) != 0,
        "leaf 0x80000001 EDX {:#x}: LM bit clear in long mode",
        ext[3]
    );
    println!("leaf 0x80000001: ecx {:#x} edx {:#x}", ext[2], ext[3]);
}
