//! RDMSR/WRMSR: writable MSRs read back what was written, EFER shows long mode,
//! TSC_AUX reaches RDTSCP, and an MSR nobody implements raises #GP(0) in the guest.
#![no_std]
#![no_main]

use core::arch::asm;
use guest_tests::{check, cpu, guest, println, trap};

guest!(main);

const IA32_SYSENTER_CS: u32 = 0x174;
const IA32_SYSENTER_ESP: u32 = 0x175;
const IA32_SYSENTER_EIP: u32 = 0x176;
const IA32_EFER: u32 = 0xC000_0080;
const IA32_TSC_AUX: u32 = 0xC000_0103;
/// In the range the SDM reserves for software (never implemented by hardware) and
/// unused by the hypervisor interfaces of KVM and Hyper-V (0x4000_0000..=0x4000_01FF):
/// RDMSR and WRMSR must raise #GP(0). QEMU 7.2 TCG returns 0 and ignores the write
/// instead (a QEMU limitation), so this check fails on bare QEMU 7.2.
const UNIMPLEMENTED_MSR: u32 = 0x4000_0F00;
const GP: u8 = 13;

fn main() {
    // 32-bit values: AMD keeps only the low half of SYSENTER_ESP/EIP.
    for (msr, value) in [
        (IA32_SYSENTER_CS, 0x10),
        (IA32_SYSENTER_ESP, 0x1234_5678),
        (IA32_SYSENTER_EIP, 0x0765_4320),
    ] {
        // SAFETY: the SYSENTER MSRs only matter for SYSENTER, which no guest executes.
        unsafe { cpu::wrmsr(msr, value) };
        let back = cpu::rdmsr(msr);
        check!(
            back == value,
            "MSR {msr:#x}: wrote {value:#x}, read back {back:#x}"
        );
    }
    println!("SYSENTER_CS/ESP/EIP read back");

    let efer = cpu::rdmsr(IA32_EFER);
    check!(
        efer & 0x500 == 0x500,
        "EFER {efer:#x}: LME (bit 8) or LMA (bit 10) clear in long mode"
    );

    if cpu::cpuid(0x8000_0001, 0)[3] & (1 << 27) != 0 {
        // SAFETY: TSC_AUX only matters to RDTSCP/RDPID.
        unsafe { cpu::wrmsr(IA32_TSC_AUX, 0x2a) };
        let back = cpu::rdmsr(IA32_TSC_AUX);
        check!(back == 0x2a, "TSC_AUX: wrote 0x2a, read back {back:#x}");
        let (_, aux) = cpu::rdtscp();
        check!(
            aux == 0x2a,
            "RDTSCP returned TSC_AUX {aux:#x}, expected 0x2a"
        );
        println!("TSC_AUX read back and seen by RDTSCP");
    } else {
        println!("CPUID says no RDTSCP: TSC_AUX not checked");
    }

    trap::arm(GP);
    // SAFETY: RDMSR of an unimplemented MSR raises #GP; the armed catcher resumes at
    // label 2 (its address is stored in trap::RESUME first). No memory is changed.
    unsafe {
        asm!(
            "lea {t}, [rip + 2f]",
            "mov [{resume}], {t}",
            "rdmsr",
            "2:",
            t = out(reg) _,
            resume = in(reg) trap::RESUME.as_ptr(),
            in("ecx") UNIMPLEMENTED_MSR,
            out("eax") _,
            out("edx") _,
        )
    };
    let caught = trap::take_caught();
    check!(
        matches!(
            caught,
            Some(trap::Caught {
                vector: GP,
                error: 0,
                ..
            })
        ),
        "RDMSR {UNIMPLEMENTED_MSR:#x}: expected #GP(0), got {caught:?}"
    );

    trap::arm(GP);
    // SAFETY: as above, for WRMSR.
    unsafe {
        asm!(
            "lea {t}, [rip + 2f]",
            "mov [{resume}], {t}",
            "wrmsr",
            "2:",
            t = out(reg) _,
            resume = in(reg) trap::RESUME.as_ptr(),
            in("ecx") UNIMPLEMENTED_MSR,
            in("eax") 1,
            in("edx") 0,
        )
    };
    let caught = trap::take_caught();
    check!(
        matches!(
            caught,
            Some(trap::Caught {
                vector: GP,
                error: 0,
                ..
            })
        ),
        "WRMSR {UNIMPLEMENTED_MSR:#x}: expected #GP(0), got {caught:?}"
    );
    println!("RDMSR/WRMSR of {UNIMPLEMENTED_MSR:#x} raised #GP(0)");
}
