//! CPUID: the VMM answers every leaf the guest asks (README.md, guest `cpuid`), and the
//! XSAVE leaf agrees with itself for the XCR0 the guest sets (what Linux checks).
#![no_std]
#![no_main]

use core::arch::asm;

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

    if one[2] & (1 << 26) != 0 && max >= 0xd {
        xsave_leaf();
    }
}

/// Sets XCR0 (CR4.OSXSAVE must be on).
fn set_xcr0(value: u64) {
    // SAFETY: XSETBV of components the CPU enumerates; x87 always included.
    unsafe {
        asm!("xsetbv", in("ecx") 0, in("eax") value as u32, in("edx") (value >> 32) as u32,
             options(nostack))
    };
}

/// With OSXSAVE, leaf 0xD subleaf 0 EBX is the standard-format size of the components
/// enabled in XCR0: the end of the highest one (subleaf i: size EAX at offset EBX);
/// with XSAVEC, subleaf 1 EBX is the compacted size. Linux compares them with the
/// components' sizes (its "XSAVE consistency problem" warning).
fn xsave_leaf() {
    // SAFETY: sets CR4.OSXSAVE (bit 18), which XSETBV and XGETBV need.
    unsafe {
        asm!("mov {t}, cr4", "bts {t}, 18", "mov cr4, {t}", t = out(reg) _, options(nostack))
    };
    check!(
        cpuid(1, 0)[2] & (1 << 27) != 0,
        "leaf 1: OSXSAVE clear with CR4.OSXSAVE set"
    );
    let [eax, _, ecx, edx] = cpuid(0xd, 0);
    let supported = eax as u64 | (edx as u64) << 32;
    check!(
        supported & 3 == 3,
        "leaf 0xd: XCR0 bits {supported:#x} lack x87/SSE"
    );
    // The user components (x87, SSE, AVX, AVX-512): what Linux enables.
    let user = supported & 0xe7;
    set_xcr0(user);
    let (mut end, mut compacted) = (576u32, 576u32);
    for i in 2..8 {
        if user & 1 << i != 0 {
            let [size, offset, align, _] = cpuid(0xd, i);
            end = end.max(offset + size);
            if align & 2 != 0 {
                compacted = compacted.next_multiple_of(64);
            }
            compacted += size;
        }
    }
    let [_, enabled_size, ..] = cpuid(0xd, 0);
    check!(
        enabled_size == end,
        "leaf 0xd: EBX {enabled_size} with XCR0 {user:#x}, the components end at {end}"
    );
    check!(ecx >= end, "leaf 0xd: ECX {ecx} < {end}");
    // XSAVEC (or XSAVES): subleaf 1 EBX is the compacted size, which Linux then uses.
    let [features, compacted_size, ..] = cpuid(0xd, 1);
    let xsavec = features & 0b1010 != 0;
    if xsavec {
        check!(
            compacted_size == compacted,
            "leaf 0xd.1: EBX {compacted_size} with XCR0 {user:#x}, compacted components end at {compacted}"
        );
    }
    // Not checked: smaller XCR0 values. QEMU's TCG does not intercept XSETBV of a
    // nested SVM guest, so under a KVM nested there the guest's XSETBV never reaches
    // KVM, which answers for the XCR0 the VMM started the vCPU with.
    println!(
        "leaf 0xd: XCR0 {user:#x} takes {end} bytes{}",
        if xsavec {
            " (compacted: as subleaf 1 says)"
        } else {
            ""
        }
    );
}
