//! vmm-irqchip: the interrupt controllers of the Tern VMM's PC.
//!
//! Owns: the 8259A PIC pair, the IOAPIC, one local APIC per vCPU (xAPIC and
//! x2APIC, timer in one-shot, periodic and TSC-deadline modes), the APIC
//! bus between them (MSIs, IPIs including INIT/SIPI) and the machine's
//! timer thread ([`TimerQueue`]). Must not touch: vCPUs, guest memory or
//! the exit loop; the machine asks this crate what to inject and tells it
//! what was injected.

mod pic;
mod timer_queue;

pub use pic::PicPair;
pub use timer_queue::{TimerQueue, TimerQueueError};
