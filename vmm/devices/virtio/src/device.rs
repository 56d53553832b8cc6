//! The contract between the virtio-pci transport and a device type (blk,
//! net, console), and the queue access a device gets while it runs.
//!
//! Owns: [`VirtioDevice`], [`Queues`] (popping chains, returning used
//! buffers, raising queue interrupts) and the interrupt state behind it
//! (MSI-X vectors, ISR, INTx). Must not touch: PCI registers (the
//! transport's) or what a request means (the device's).

use std::sync::Arc;

use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT};
use vm_memory::GuestMemoryMmap;
use vmm_bus::Line;

use crate::inbox::Wakeup;
use crate::log_once::LogOnce;
use crate::pci::Msix;

/// "No MSI-X vector" in the vector registers.
pub const NO_VECTOR: u16 = 0xffff;
pub const ISR_QUEUE: u8 = 1;
pub const ISR_CONFIG: u8 = 2;

/// Most chains one notification or poll consumes, so a guest refilling a
/// queue from another vCPU cannot keep the device busy forever.
const CHAIN_BUDGET: u32 = 4096;

/// A virtio device type behind the PCI transport. Methods run with the
/// function's lock held, on a vCPU thread (notifications) or the device's
/// poller thread (external input); they must not block.
pub trait VirtioDevice: Send {
    /// Virtio device ID (1 net, 2 block, 3 console); PCI device ID is
    /// 0x1040 plus this.
    fn device_type(&self) -> u16;
    /// PCI class, subclass and programming interface.
    fn pci_class(&self) -> (u8, u8, u8);
    /// The largest size of each queue (powers of two).
    fn queue_max_sizes(&self) -> &[u16];
    /// Device-specific feature bits (the transport adds VERSION_1,
    /// RING_EVENT_IDX and RING_INDIRECT_DESC).
    fn features(&self) -> u64;
    /// Bytes of device-specific configuration.
    fn config_len(&self) -> usize;
    fn read_config(&self, offset: usize, data: &mut [u8]);
    fn write_config(&mut self, _offset: usize, _data: &[u8]) {}
    /// The driver set DRIVER_OK having accepted `features`.
    fn activate(&mut self, _features: u64) {}
    /// The driver notified `queue` (also called for every ready queue at
    /// activation, for buffers the driver queued before DRIVER_OK).
    fn process_queue(&mut self, queue: u16, queues: &mut Queues);
    /// External input arrived (see [`wakeup`](Self::wakeup)).
    fn poll(&mut self, _queues: &mut Queues) {}
    /// Signalled when external input arrives; `None` if there is none.
    fn wakeup(&self) -> Option<Arc<Wakeup>> {
        None
    }
    /// Device reset: forget in-flight state (a disk keeps its contents).
    fn reset(&mut self);
}

/// Copies `data.len()` bytes of `bytes` at `offset` (zeros past the end).
pub fn read_config_bytes(bytes: &[u8], offset: usize, data: &mut [u8]) {
    for (i, b) in data.iter_mut().enumerate() {
        *b = offset
            .checked_add(i)
            .and_then(|at| bytes.get(at))
            .copied()
            .unwrap_or(0);
    }
}

/// One queue's transport-side state.
pub(crate) struct Virtqueue {
    pub(crate) queue: Queue,
    pub(crate) vector: u16,
    /// Set when the guest broke the queue (bad rings, impossible index);
    /// the queue is dead until reset.
    pub(crate) broken: bool,
    used_since_signal: bool,
}

impl Virtqueue {
    pub(crate) fn new(max_size: u16) -> Self {
        Virtqueue {
            // The device declares its sizes; a bad one is a programming error
            // caught by the device's own tests.
            queue: Queue::new(max_size).unwrap_or_default(),
            vector: NO_VECTOR,
            broken: false,
            used_since_signal: false,
        }
    }

    pub(crate) fn reset(&mut self) {
        self.queue.reset();
        self.vector = NO_VECTOR;
        self.broken = false;
        self.used_since_signal = false;
    }

    pub(crate) fn usable(&self) -> bool {
        self.queue.ready() && !self.broken
    }
}

/// Where a function's interrupts go: MSI-X when enabled, else ISR + INTx.
pub(crate) struct Interrupts {
    pub(crate) msix: Msix,
    pub(crate) isr: u8,
    pub(crate) intx: Option<Line>,
    pub(crate) intx_disabled: bool,
    pub(crate) intx_level: bool,
    pub(crate) config_vector: u16,
}

impl Interrupts {
    pub(crate) fn queue(&mut self, vector: u16) {
        if self.msix.enabled() {
            self.msix.notify(vector);
        } else {
            self.isr |= ISR_QUEUE;
            self.update_intx();
        }
    }

    pub(crate) fn config(&mut self) {
        self.isr |= ISR_CONFIG;
        if self.msix.enabled() {
            self.msix.notify(self.config_vector);
        } else {
            self.update_intx();
        }
    }

    /// Reads and clears the ISR (deasserting INTx).
    pub(crate) fn take_isr(&mut self) -> u8 {
        let isr = std::mem::take(&mut self.isr);
        self.update_intx();
        isr
    }

    pub(crate) fn update_intx(&mut self) {
        let level = self.isr != 0 && !self.intx_disabled && !self.msix.enabled();
        if level != self.intx_level {
            self.intx_level = level;
            if let Some(line) = &self.intx {
                line.set_level(level);
            }
        }
    }
}

/// A device's access to its queues while it handles a notification or
/// input. Returned chains borrow guest memory for `'a`.
pub struct Queues<'a> {
    pub(crate) mem: &'a GuestMemoryMmap,
    pub(crate) queues: &'a mut [Virtqueue],
    pub(crate) irq: &'a mut Interrupts,
    pub(crate) warned: &'a mut LogOnce,
    pub(crate) budget: u32,
}

impl<'a> Queues<'a> {
    pub(crate) fn new(
        mem: &'a GuestMemoryMmap,
        queues: &'a mut [Virtqueue],
        irq: &'a mut Interrupts,
        warned: &'a mut LogOnce,
    ) -> Self {
        Queues {
            mem,
            queues,
            irq,
            warned,
            budget: CHAIN_BUDGET,
        }
    }

    pub fn memory(&self) -> &'a GuestMemoryMmap {
        self.mem
    }

    /// The next available chain of `queue`, or `None` (empty, not ready,
    /// broken, or over budget). When the queue is empty, notifications are
    /// re-enabled so the driver kicks again when it adds buffers.
    pub fn pop(&mut self, queue: u16) -> Option<DescriptorChain<&'a GuestMemoryMmap>> {
        let mem = self.mem;
        let q = self.queues.get_mut(queue as usize)?;
        if !q.usable() {
            return None;
        }
        if self.budget == 0 {
            self.warned.warn(
                "budget",
                format_args!("virtio: queue {queue} keeps refilling; deferring the rest"),
            );
            return None;
        }
        // Twice at most: once before and once after re-enabling
        // notifications (a buffer added in between must not be missed).
        for _ in 0..2 {
            match q.queue.iter(mem) {
                Ok(mut iter) => {
                    if let Some(chain) = iter.next() {
                        self.budget -= 1;
                        return Some(chain);
                    }
                }
                Err(e) => {
                    q.broken = true;
                    self.warned.warn(
                        "avail",
                        format_args!("virtio: queue {queue} unusable ({e}); stopped until reset"),
                    );
                    return None;
                }
            }
            match q.queue.enable_notification(mem) {
                Ok(true) => continue,
                Ok(false) => return None,
                Err(e) => {
                    q.broken = true;
                    self.warned.warn(
                        "avail",
                        format_args!("virtio: queue {queue} unusable ({e}); stopped until reset"),
                    );
                    return None;
                }
            }
        }
        None
    }

    /// Returns chain `head` to the driver with `len` bytes written.
    pub fn add_used(&mut self, queue: u16, head: u16, len: u32) {
        let mem = self.mem;
        let Some(q) = self.queues.get_mut(queue as usize) else {
            return;
        };
        match q.queue.add_used(mem, head, len) {
            Ok(()) => q.used_since_signal = true,
            Err(e) => self.warned.warn(
                "used",
                format_args!("virtio: queue {queue}: cannot return chain {head} ({e}); dropped"),
            ),
        }
    }

    /// Interrupts the driver if buffers were returned since the last
    /// signal and the driver wants to hear about it.
    pub fn signal(&mut self, queue: u16) {
        let mem = self.mem;
        let Some(q) = self.queues.get_mut(queue as usize) else {
            return;
        };
        if !std::mem::take(&mut q.used_since_signal) {
            return;
        }
        if q.queue.needs_notification(mem).unwrap_or(true) {
            self.irq.queue(q.vector);
        }
    }

    /// Tells the driver the device configuration changed.
    pub fn config_changed(&mut self) {
        self.irq.config();
    }

    /// Whether `queue` can be used now (ready and not broken).
    pub fn usable(&self, queue: u16) -> bool {
        self.queues.get(queue as usize).is_some_and(|q| q.usable())
    }

    /// Logs a guest-caused problem once per `kind` for this device.
    pub fn warn(&mut self, kind: &'static str, message: std::fmt::Arguments) {
        self.warned.warn(kind, message);
    }
}
