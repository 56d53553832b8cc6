//! Thin wrappers around the privileged instructions the guests use: port I/O,
//! TSC, CPUID, MSRs, control registers, interrupt flag, HLT.
//!
//! Owns: every `asm!` that is a single instruction with no control-flow effect.
//! Must not touch: descriptor tables and mode switches (boot.rs, trap.rs, `modes`).

use core::arch::asm;

pub fn outb(port: u16, v: u8) {
    // SAFETY: port I/O has no effect on this program's memory; the guest owns all ports.
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") v, options(nomem, nostack, preserves_flags))
    };
}

pub fn outw(port: u16, v: u16) {
    // SAFETY: as in `outb`.
    unsafe {
        asm!("out dx, ax", in("dx") port, in("ax") v, options(nomem, nostack, preserves_flags))
    };
}

pub fn outl(port: u16, v: u32) {
    // SAFETY: as in `outb`.
    unsafe {
        asm!("out dx, eax", in("dx") port, in("eax") v, options(nomem, nostack, preserves_flags))
    };
}

pub fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: as in `outb`.
    unsafe {
        asm!("in al, dx", in("dx") port, out("al") v, options(nomem, nostack, preserves_flags))
    };
    v
}

pub fn inw(port: u16) -> u16 {
    let v: u16;
    // SAFETY: as in `outb`.
    unsafe {
        asm!("in ax, dx", in("dx") port, out("ax") v, options(nomem, nostack, preserves_flags))
    };
    v
}

pub fn inl(port: u16) -> u32 {
    let v: u32;
    // SAFETY: as in `outb`.
    unsafe {
        asm!("in eax, dx", in("dx") port, out("eax") v, options(nomem, nostack, preserves_flags))
    };
    v
}

pub fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: RDTSC only reads the time-stamp counter.
    unsafe {
        asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// RDTSCP: the TSC and IA32_TSC_AUX. Only when CPUID.80000001H:EDX[27] is set.
pub fn rdtscp() -> (u64, u32) {
    let (lo, hi, aux): (u32, u32, u32);
    // SAFETY: RDTSCP only reads the TSC and TSC_AUX (the caller checked CPUID).
    unsafe {
        asm!("rdtscp", out("eax") lo, out("edx") hi, out("ecx") aux, options(nomem, nostack, preserves_flags))
    };
    ((u64::from(hi) << 32) | u64::from(lo), aux)
}

/// CPUID leaf `leaf`, subleaf `sub`: (EAX, EBX, ECX, EDX).
pub fn cpuid(leaf: u32, sub: u32) -> [u32; 4] {
    // SAFETY: CPUID exists on every x86-64 CPU and only reads identification data.
    #[allow(unused_unsafe)]
    let r = unsafe { core::arch::x86_64::__cpuid_count(leaf, sub) };
    [r.eax, r.ebx, r.ecx, r.edx]
}

pub fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: reading an MSR has no memory effect; an invalid MSR raises #GP, which the
    // guest's IDT handles (a test arms a catcher first, else it is reported as FAIL).
    unsafe {
        asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Writes an MSR.
///
/// # Safety
/// The MSR must not change state the program relies on (EFER, segment bases, ...).
pub unsafe fn wrmsr(msr: u32, v: u64) {
    // SAFETY: the caller promises the MSR is harmless to this program.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") v as u32, in("edx") (v >> 32) as u32, options(nomem, nostack, preserves_flags))
    };
}

pub fn cr0() -> u64 {
    let v: u64;
    // SAFETY: reading CR0 has no side effect.
    unsafe { asm!("mov {}, cr0", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Writes CR0.
///
/// # Safety
/// Must keep PE, PG and the cache settings the program relies on; may change WP.
pub unsafe fn set_cr0(v: u64) {
    // SAFETY: the caller keeps the mode bits.
    unsafe { asm!("mov cr0, {}", in(reg) v, options(nostack, preserves_flags)) };
}

pub fn cr2() -> u64 {
    let v: u64;
    // SAFETY: reading CR2 has no side effect.
    unsafe { asm!("mov {}, cr2", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

pub fn cr4() -> u64 {
    let v: u64;
    // SAFETY: reading CR4 has no side effect.
    unsafe { asm!("mov {}, cr4", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Drops the TLB entry of `addr` after its page-table entry changed.
pub fn invlpg(addr: u64) {
    // SAFETY: INVLPG only drops a cached translation.
    unsafe { asm!("invlpg [{}]", in(reg) addr, options(nostack, preserves_flags)) };
}

/// Reloads CR3 (drops every non-global translation).
pub fn flush_tlb() {
    // SAFETY: writes back the same page-table root.
    unsafe {
        asm!("mov {t}, cr3", "mov cr3, {t}", t = out(reg) _, options(nostack, preserves_flags))
    };
}

pub fn rflags() -> u64 {
    let v: u64;
    // SAFETY: PUSHFQ/POP only use the stack slot they free again.
    unsafe { asm!("pushfq", "pop {}", out(reg) v, options(nomem, preserves_flags)) };
    v
}

pub fn cli() {
    // SAFETY: masking interrupts cannot break memory safety.
    unsafe { asm!("cli", options(nomem, nostack)) };
}

pub fn sti() {
    // SAFETY: interrupt handlers (trap.rs) save and restore all state they touch.
    unsafe { asm!("sti", options(nomem, nostack)) };
}

/// `STI; HLT`: waits for an interrupt with no window between the two.
pub fn sti_hlt() {
    // SAFETY: as in `sti`; HLT only waits.
    unsafe { asm!("sti", "hlt", options(nomem, nostack)) };
}

/// Stops this vCPU for good.
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: CLI; HLT only stops the vCPU.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) };
    }
}

pub fn pause() {
    core::hint::spin_loop();
}
