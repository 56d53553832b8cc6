//! virtio-net: one RX/TX queue pair, a MAC address and link status, frames
//! exchanged with a [`NetBackend`].
//!
//! Owns: the virtio-net header handling and moving frames between the
//! queues and the backend. Must not touch: where frames go (the backend:
//! [`Switch`] ports, a Linux tap device, later a Tern network).

mod switch;
#[cfg(target_os = "linux")]
pub mod tap;

pub use switch::{Switch, SwitchPort};

use std::io::Read;
use std::io::Write;
use std::sync::Arc;

use virtio_bindings::virtio_net::{VIRTIO_NET_F_MAC, VIRTIO_NET_F_STATUS, VIRTIO_NET_S_LINK_UP};

use crate::device::{read_config_bytes, Queues, VirtioDevice};
use crate::inbox::{Inbox, Wakeup};

/// Virtio device type of a network card.
pub const DEVICE_TYPE: u16 = 1;
pub const QUEUE_SIZE: u16 = 256;
const RX: u16 = 0;
const TX: u16 = 1;
/// `virtio_net_hdr_v1` (VERSION_1 always includes `num_buffers`).
pub const HEADER_LEN: usize = 12;
/// Largest frame accepted from the guest or a backend (no TSO offered).
pub const MAX_FRAME: usize = 65535;
/// Frames held while the guest has no receive buffers.
const RX_BACKLOG: usize = 256;

/// Where a [`Net`] device's frames go and come from. Backends deliver
/// received frames to the [`FrameSink`] they get in `attach`, from any
/// thread, without blocking; the device's poller moves them to the guest.
pub trait NetBackend: Send {
    /// One Ethernet frame (no virtio header) from the guest. Must not block
    /// for long; a backend that cannot take it drops it.
    fn send(&mut self, frame: &[u8]);
    /// Called once when the device is created.
    fn attach(&mut self, sink: FrameSink);
}

/// The receive side of a [`Net`] device, handed to its backend.
#[derive(Clone)]
pub struct FrameSink(Arc<Inbox<Vec<u8>>>);

impl FrameSink {
    /// Queues a frame for the guest; false if the backlog is full (the
    /// frame is dropped, as by a NIC without buffers).
    pub fn deliver(&self, frame: Vec<u8>) -> bool {
        frame.len() <= MAX_FRAME && self.0.push_all([frame]) == 1
    }
}

/// A virtio network card.
pub struct Net {
    mac: [u8; 6],
    backend: Box<dyn NetBackend>,
    rx: Arc<Inbox<Vec<u8>>>,
    config: [u8; 12],
    frame: Vec<u8>,
}

impl Net {
    pub fn new(mac: [u8; 6], mut backend: Box<dyn NetBackend>) -> Self {
        let rx = Inbox::new(RX_BACKLOG);
        backend.attach(FrameSink(rx.clone()));
        let mut config = [0u8; 12];
        config[..6].copy_from_slice(&mac);
        config[6..8].copy_from_slice(&(VIRTIO_NET_S_LINK_UP as u16).to_le_bytes());
        Net {
            mac,
            backend,
            rx,
            config,
            frame: Vec::with_capacity(2048),
        }
    }

    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    fn transmit(&mut self, q: &mut Queues) {
        while let Some(chain) = q.pop(TX) {
            let head = chain.head_index();
            match chain.reader(q.memory()) {
                Ok(mut reader) => {
                    let len = reader.available_bytes();
                    if !(HEADER_LEN..=HEADER_LEN + MAX_FRAME).contains(&len) {
                        q.warn(
                            "net-tx-size",
                            format_args!("virtio-net: transmit chain of {len} bytes; dropped"),
                        );
                    } else {
                        self.frame.resize(len, 0);
                        if reader.read_exact(&mut self.frame).is_ok() {
                            self.backend.send(&self.frame[HEADER_LEN..]);
                        }
                    }
                }
                Err(_) => q.warn(
                    "net-chain",
                    format_args!("virtio-net: transmit buffer outside guest memory; dropped"),
                ),
            }
            q.add_used(TX, head, 0);
        }
        q.signal(TX);
    }

    fn receive(&mut self, q: &mut Queues) {
        while let Some(frame) = self.rx.pop() {
            let Some(chain) = q.pop(RX) else {
                self.rx.unpop(frame);
                break;
            };
            let head = chain.head_index();
            let mut written = 0;
            match chain.writer(q.memory()) {
                Ok(mut writer) if writer.available_bytes() >= HEADER_LEN + frame.len() => {
                    let mut header = [0u8; HEADER_LEN];
                    header[10..12].copy_from_slice(&1u16.to_le_bytes()); // num_buffers
                    if writer.write_all(&header).is_ok() && writer.write_all(&frame).is_ok() {
                        written = HEADER_LEN + frame.len();
                    }
                }
                Ok(_) => q.warn(
                    "net-rx-small",
                    format_args!("virtio-net: receive buffer too small for a frame; frame dropped"),
                ),
                Err(_) => q.warn(
                    "net-chain",
                    format_args!("virtio-net: receive buffer outside guest memory; dropped"),
                ),
            }
            q.add_used(RX, head, written as u32);
        }
        q.signal(RX);
    }
}

impl VirtioDevice for Net {
    fn device_type(&self) -> u16 {
        DEVICE_TYPE
    }

    fn pci_class(&self) -> (u8, u8, u8) {
        (0x02, 0x00, 0x00) // Ethernet
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE, QUEUE_SIZE]
    }

    fn features(&self) -> u64 {
        1 << VIRTIO_NET_F_MAC | 1 << VIRTIO_NET_F_STATUS
    }

    fn config_len(&self) -> usize {
        self.config.len()
    }

    fn read_config(&self, offset: usize, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data);
    }

    fn process_queue(&mut self, queue: u16, q: &mut Queues) {
        match queue {
            TX => self.transmit(q),
            _ => self.receive(q),
        }
    }

    fn poll(&mut self, q: &mut Queues) {
        self.receive(q);
    }

    fn wakeup(&self) -> Option<Arc<Wakeup>> {
        Some(self.rx.wakeup().clone())
    }

    /// Frames waiting for the old driver are dropped.
    fn reset(&mut self) {
        self.rx.clear();
    }
}

#[cfg(test)]
mod tests;
