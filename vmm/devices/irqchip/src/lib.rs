//! vmm-irqchip: the interrupt controllers of the Tern VMM's PC.
//!
//! Owns: the 8259A PIC pair, the IOAPIC, one local APIC per vCPU (xAPIC and
//! x2APIC, timer in one-shot, periodic and TSC-deadline modes), the APIC
//! bus between them (MSIs, IPIs including INIT/SIPI) and the machine's
//! timer thread ([`TimerQueue`]). Must not touch: vCPUs, guest memory or
//! the exit loop; the machine asks this crate what to inject and tells it
//! what was injected.
//!
//! The chip models ([`PicPair`], [`IoApic`], [`Lapic`]) are plain state
//! machines without locks or threads.

mod interrupts;
mod ioapic;
mod lapic;
mod message;
mod pic;
mod timer_queue;

#[cfg(test)]
mod tests;

pub use interrupts::{
    BusRange, GuestTsc, Interrupts, IrqChipError, Startup, ELCR_PORT, IOAPIC_BASE, IOAPIC_SIZE,
    IOAPIC_VERSION, MAX_VCPUS, PIC_MASTER_PORT, PIC_SLAVE_PORT,
};
pub use ioapic::{IoApic, IOAPIC_ID, IOAPIC_PINS};
pub use lapic::{
    ApicMode, Effects, GeneralProtection, Lapic, LAPIC_BASE, LAPIC_TIMER_HZ, MIN_PERIOD_NS,
    MSR_APIC_BASE, MSR_TSC_DEADLINE, MSR_X2APIC_FIRST, MSR_X2APIC_LAST,
};
pub use message::{decode_msi, Addressing, DeliveryMode, Destination, Message};
pub use pic::PicPair;
pub use timer_queue::{TimerQueue, TimerQueueError};
