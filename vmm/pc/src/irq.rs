//! What the exit loop needs of the interrupt controllers, as a trait: the
//! machine implements it over `vmm-irqchip`'s controllers, tests over a
//! script.
//!
//! Owns: the per-vCPU questions the exit loop asks (what to inject, NMI,
//! INIT/SIPI) and the local APIC's register accesses. Must not touch: how
//! the controllers decide (vmm-irqchip's).

/// A start-up signal for a vCPU (from another vCPU's IPI).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Startup {
    /// INIT: the vCPU stops and waits for a SIPI.
    Init,
    /// Startup IPI: real mode at `vector << 12`.
    Sipi(u8),
}

/// The interrupt controllers as one vCPU's handler sees them. Every method
/// is called on that vCPU's handler thread.
pub trait InterruptController: Send + Sync {
    /// The highest-priority external interrupt deliverable now, if any.
    fn next_interrupt(&self, vcpu: u32) -> Option<u8>;
    /// `vector` (from [`next_interrupt`](Self::next_interrupt)) was injected.
    fn ack(&self, vcpu: u32, vector: u8);
    /// Takes a pending NMI.
    fn take_nmi(&self, vcpu: u32) -> bool;
    /// Takes a pending INIT or SIPI.
    fn take_startup(&self, vcpu: u32) -> Option<Startup>;
    /// An APIC MSR (0x1B, 0x6E0, 0x800..=0x8FF); `None` means #GP.
    fn rdmsr(&self, vcpu: u32, msr: u32) -> Option<u64>;
    /// `false` means #GP.
    fn wrmsr(&self, vcpu: u32, msr: u32, value: u64) -> bool;
    /// An access to the xAPIC page (`offset` into 0xFEE0_0000).
    fn lapic_read(&self, vcpu: u32, offset: u64, data: &mut [u8]);
    fn lapic_write(&self, vcpu: u32, offset: u64, data: &[u8]);
    /// The vCPU's TSC is now the host's plus `offset` (for the
    /// TSC-deadline timer).
    fn set_tsc_offset(&self, vcpu: u32, offset: u64);
}

/// Whether an MSR belongs to the local APIC.
pub fn is_apic_msr(msr: u32) -> bool {
    msr == 0x1b || msr == 0x6e0 || (0x800..=0x8ff).contains(&msr)
}

/// No interrupt controller: nothing is ever injected, APIC MSRs #GP.
pub struct NoInterrupts;

impl InterruptController for NoInterrupts {
    fn next_interrupt(&self, _: u32) -> Option<u8> {
        None
    }
    fn ack(&self, _: u32, _: u8) {}
    fn take_nmi(&self, _: u32) -> bool {
        false
    }
    fn take_startup(&self, _: u32) -> Option<Startup> {
        None
    }
    fn rdmsr(&self, _: u32, _: u32) -> Option<u64> {
        None
    }
    fn wrmsr(&self, _: u32, _: u32, _: u64) -> bool {
        false
    }
    fn lapic_read(&self, _: u32, _: u64, data: &mut [u8]) {
        data.fill(0xff);
    }
    fn lapic_write(&self, _: u32, _: u64, _: &[u8]) {}
    fn set_tsc_offset(&self, _: u32, _: u64) {}
}
