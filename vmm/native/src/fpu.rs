//! The calling thread's view of the FPU, for the check of the kernel's FPU and XCR0
//! switching (`smoke::xcr0`): the XSAVE components the CPU has, XCR0 as user mode
//! sees it, and XMM0 as a marker of a thread's FPU state. Nothing else here; the
//! program is built without SSE, so no compiled code uses these registers.

use core::arch::asm;
use core::arch::x86_64::__cpuid_count;

/// Whether the kernel turned XSAVE on (CPUID.1:ECX.OSXSAVE): XGETBV works in user mode.
pub fn os_xsave() -> bool {
    __cpuid_count(1, 0).ecx & (1 << 27) != 0
}

/// The XCR0 bits the CPU supports (CPUID leaf 0xD, subleaf 0).
pub fn supported_xcr0() -> u64 {
    let r = __cpuid_count(0xd, 0);
    r.eax as u64 | (r.edx as u64) << 32
}

/// XCR0 now (callers check [`os_xsave`] first).
pub fn xcr0() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: XGETBV reads XCR0; CR4.OSXSAVE is set (checked by the caller), so
    // it does not fault at CPL 3.
    unsafe { asm!("xgetbv", in("ecx") 0, out("eax") lo, out("edx") hi, options(nomem, nostack)) };
    (hi as u64) << 32 | lo as u64
}

/// Writes `value` into the low half of XMM0 (the upper half becomes zero).
pub fn set_xmm0(value: u64) {
    // SAFETY: SSE is architectural on x86_64 and enabled for user mode by the kernel;
    // the program is compiled without SSE, so XMM0 holds nothing of the compiler's.
    unsafe { asm!("movq xmm0, {}", in(reg) value, options(nomem, nostack)) };
}

/// The low half of XMM0.
pub fn xmm0() -> u64 {
    let value: u64;
    // SAFETY: as for `set_xmm0`; reading XMM0 changes nothing.
    unsafe { asm!("movq {}, xmm0", out(reg) value, options(nomem, nostack)) };
    value
}
