//! vmm-bus: the contracts between the machine (`vmm-pc`) and the device
//! models (`vmm-irqchip`, `vmm-legacy`, `vmm-virtio`).
//!
//! Owns: the [`Bus`] that routes port-I/O and MMIO accesses to
//! [`BusDevice`]s, and the small traits devices use to reach the rest of the
//! machine: [`InterruptLine`] (a wire into the interrupt controllers),
//! [`MsiSink`] (message-signalled interrupts), [`Clock`] and [`Timers`].
//! Must not touch: any concrete device, vCPU or guest memory; the machine
//! wires implementations together.
//!
//! Threads: devices are shared between vCPU handler threads and device
//! threads, so everything here is `Send + Sync` and devices sit behind a
//! `Mutex` on the bus. A device must never block on guest input while it
//! holds its lock.

mod bus;
mod time;

pub use bus::{lock, Bus, BusDevice, BusError, SharedDevice};
pub use time::{Clock, HostClock, TimerId, Timers};

use std::sync::Arc;

/// A wire from a device into the interrupt controllers (an ISA IRQ or an
/// IOAPIC input, numbered by GSI by whoever created it).
pub trait InterruptLine: Send + Sync {
    /// Drives the line: `true` = asserted. Level-triggered devices hold it
    /// asserted while they need service.
    fn set_level(&self, asserted: bool);

    /// An edge: asserted, then deasserted.
    fn pulse(&self) {
        self.set_level(true);
        self.set_level(false);
    }
}

/// A message-signalled interrupt as a PCI device writes it (x86 format:
/// `address` 0xFEEx_xxxx with the destination APIC ID, `data` with vector
/// and delivery mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsiMessage {
    pub address: u64,
    pub data: u32,
}

/// Where devices send MSIs (the machine's APIC bus).
pub trait MsiSink: Send + Sync {
    fn send(&self, msg: MsiMessage);
}

/// An interrupt line that goes nowhere (for devices whose interrupt the
/// configuration leaves unconnected, and for tests).
pub struct NoInterrupt;

impl InterruptLine for NoInterrupt {
    fn set_level(&self, _asserted: bool) {}
}

/// Shared handle types the machine passes to devices.
pub type Line = Arc<dyn InterruptLine>;
pub type Msi = Arc<dyn MsiSink>;
