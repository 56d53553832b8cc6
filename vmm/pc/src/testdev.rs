//! The guest-test device of `guest-tests/README.md` (section 3) in the PC
//! machine, for configurations with `test-device = true`: vmm-core's
//! registers behind ports 0xE00..0xE28 and the MMIO page at 0xD000_0000.
//!
//! Owns: the device registers, and the interrupts its commands ask for: one
//! slot per vCPU, beside the PC's interrupt controllers (the test guests
//! never enable a local APIC and send no EOI, so their vectors cannot go
//! through the LAPIC). Must not touch: vCPU state; the exit loop runs the
//! commands (`TD_CMD`) that need it.

use std::ops::Range;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use vmm_bus::{BusDevice, Clock, Timers};
use vmm_core::devices::{Devices, PortEffect, MMIO_BASE, MMIO_SIZE, TD_ARG1, TD_ID};

use crate::machine::Lifecycle;

/// The device's I/O ports.
pub const PORTS: Range<u16> = TD_ID..TD_ARG1 + 4;
/// The device's MMIO page.
pub const MMIO: Range<u64> = MMIO_BASE..MMIO_BASE + MMIO_SIZE;

/// A slot holds `RAISED | vector`, or 0 when empty.
const RAISED: u16 = 0x100;

pub struct TestDevice {
    regs: Arc<Mutex<Devices>>,
    ram_bytes: u64,
    /// Per vCPU: the interrupt the device wants injected.
    pending: Vec<AtomicU16>,
    clock: Arc<dyn Clock>,
    timers: Arc<dyn Timers>,
    life: Arc<Lifecycle>,
}

impl TestDevice {
    /// The device of a VM with `ram_bytes` of RAM (`TD_MEM`).
    pub fn new(
        ram_bytes: u64,
        life: Arc<Lifecycle>,
        clock: Arc<dyn Clock>,
        timers: Arc<dyn Timers>,
    ) -> Arc<Self> {
        Arc::new(TestDevice {
            regs: Arc::new(Mutex::new(Devices::new(ram_bytes))),
            ram_bytes,
            pending: (0..life.vcpus()).map(|_| AtomicU16::new(0)).collect(),
            clock,
            timers,
            life,
        })
    }

    /// A platform reset: registers as at power-on, no interrupt pending
    /// (a `RECALL_IRQ` already scheduled still comes).
    pub fn reset(&self) {
        *self.regs() = Devices::new(self.ram_bytes);
        for slot in &self.pending {
            slot.store(0, Ordering::Release);
        }
    }

    fn regs(&self) -> std::sync::MutexGuard<'_, Devices> {
        self.regs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An IN of `data.len()` bytes from `port` (in [`PORTS`]) by `vcpu`.
    pub fn port_read(&self, vcpu: u32, port: u16, data: &mut [u8]) {
        let size = data.len().clamp(1, 4);
        let value = self.regs().port_read(port, size as u8, vcpu as usize);
        data.copy_from_slice(&value.to_le_bytes()[..data.len().min(4)]);
    }

    /// An OUT of `data` to `port` (in [`PORTS`]); what it means beyond the
    /// registers (an argument or a command) is for the writing vCPU.
    pub fn port_write(&self, port: u16, data: &[u8]) -> PortEffect {
        let mut bytes = [0; 4];
        let n = data.len().min(4);
        bytes[..n].copy_from_slice(&data[..n]);
        self.regs()
            .port_write(port, n.max(1) as u8, u32::from_le_bytes(bytes))
    }

    /// The MMIO page as a bus device (at [`MMIO`]).
    pub fn mmio_page(&self) -> Arc<Mutex<dyn BusDevice>> {
        Arc::new(Mutex::new(MmioPage(self.regs.clone())))
    }

    /// Makes `vector` pending for `vcpu` (replacing an earlier one).
    pub fn raise(&self, vcpu: u32, vector: u8) {
        if let Some(slot) = self.pending.get(vcpu as usize) {
            slot.store(RAISED | vector as u16, Ordering::Release);
        }
    }

    /// The vector pending for `vcpu`, if any.
    pub fn pending(&self, vcpu: u32) -> Option<u8> {
        let value = self.pending.get(vcpu as usize)?.load(Ordering::Acquire);
        (value & RAISED != 0).then_some(value as u8)
    }

    /// `vector` (from [`pending`](Self::pending)) was injected.
    pub fn ack(&self, vcpu: u32, vector: u8) {
        if let Some(slot) = self.pending.get(vcpu as usize) {
            let _ = slot.compare_exchange(
                RAISED | vector as u16,
                0,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
    }

    /// `RECALL_IRQ`: after `delay_ms`, on the timer thread, `vector` becomes
    /// pending for `vcpu` and its doorbell recalls it.
    pub fn raise_after(self: &Arc<Self>, vcpu: u32, vector: u8, delay_ms: u32) {
        let deadline = self.clock.now_ns() + delay_ms as u64 * 1_000_000;
        let device = self.clone();
        self.timers.schedule(
            deadline,
            Box::new(move || {
                device.raise(vcpu, vector);
                if vcpu < device.life.vcpus() {
                    device.life.doorbell(vcpu).ring();
                }
            }),
        );
    }
}

/// The MMIO page's registers (vCPU-independent).
struct MmioPage(Arc<Mutex<Devices>>);

impl BusDevice for MmioPage {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .mmio_read(offset, data)
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .mmio_write(offset, data)
    }
}
