//! A virtio-net backend on a switch port: the guest's frames are sent from
//! the thread that processes the transmit queue (a vCPU thread); a receive
//! thread takes the port's frames when the switch signals them
//! ([`receive_loop`]) and hands them to the device.
//!
//! Owns: the port and its receive thread. Must not touch: the device
//! (frames reach it only through its `FrameSink`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use vmm_virtio::{FrameSink, NetBackend};

use crate::client::{receive_loop, PortLink, SwitchClient, SwitchError, TernPort};

/// How long the VMM waits for the switch component to register its
/// portals before it gives up.
pub const CONNECT_PATIENCE: Duration = Duration::from_secs(20);

/// The backend of a VMM's `backend = "switch:NAME"` port when it runs on
/// Tern: a port of switch component NAME. `None` off Tern, where the VMM
/// keeps its in-process switch.
pub fn tern_port(switch: &str) -> Option<Result<Box<dyn NetBackend>, SwitchError>> {
    tern::on_tern()
        .then(|| SwitchBackend::connect_tern(switch).map(|b| Box::new(b) as Box<dyn NetBackend>))
}

/// A port of a switch as a [`NetBackend`].
pub struct SwitchBackend<L: PortLink + 'static> {
    client: Arc<SwitchClient<L>>,
    running: Arc<AtomicBool>,
    receiver: Option<JoinHandle<()>>,
    send_failed: bool,
}

impl SwitchBackend<TernPort> {
    /// A port of switch component `switch` on Tern.
    pub fn connect_tern(switch: &str) -> Result<Self, SwitchError> {
        Ok(Self::new(SwitchClient::attach_tern(
            switch,
            CONNECT_PATIENCE,
        )?))
    }
}

impl<L: PortLink + 'static> SwitchBackend<L> {
    pub fn new(client: SwitchClient<L>) -> Self {
        SwitchBackend {
            client: Arc::new(client),
            running: Arc::new(AtomicBool::new(true)),
            receiver: None,
            send_failed: false,
        }
    }
}

impl<L: PortLink + 'static> NetBackend for SwitchBackend<L> {
    fn send(&mut self, frame: &[u8]) {
        if let Err(e) = self.client.send(frame) {
            // once: a guest can send bad frames as fast as it likes
            if !self.send_failed {
                log::warn!("{e}; frame dropped (logged once)");
                self.send_failed = true;
            }
        }
    }

    /// Starts the receive thread; it ends when the backend is dropped or
    /// the switch fails the port.
    fn attach(&mut self, sink: FrameSink) {
        let client = self.client.clone();
        let running = self.running.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("net-{}", client.switch()))
            .spawn(move || {
                let delivered = receive_loop(&client, &running, |frame| {
                    // false: the guest's backlog is full; dropped like that
                    sink.deliver(frame);
                });
                if let Err(e) = delivered {
                    log::error!("{e}; the guest receives nothing more");
                }
            });
        match spawned {
            Ok(thread) => self.receiver = Some(thread),
            Err(e) => log::error!(
                "switch {:?}: no receive thread ({e}); the guest receives nothing",
                self.client.switch()
            ),
        }
    }
}

impl<L: PortLink + 'static> Drop for SwitchBackend<L> {
    /// Stops the receive thread; the port is detached with the last
    /// reference to the client.
    fn drop(&mut self) {
        self.running.store(false, Ordering::Release);
        self.client.wake();
        if let Some(thread) = self.receiver.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::tests::{frame, LocalSwitch};
    use crate::protocol::Received;
    use vmm_virtio::{Net, VirtioDevice};

    #[test]
    fn off_tern_there_is_no_tern_port() {
        if !tern::on_tern() {
            assert!(tern_port("lan").is_none());
        }
    }

    #[test]
    fn frames_reach_a_virtio_net_device_and_leave_it() {
        let sw = LocalSwitch::new(2, 16);
        let peer = sw.client().unwrap();
        let backend = SwitchBackend::new(sw.client().unwrap());
        // the device attaches the backend: its receive thread starts
        let net = Net::new([2, 0, 0, 0, 0, 1], Box::new(backend));
        let wakeup = net.wakeup().unwrap();
        peer.send(&frame(1, 2, 100)).unwrap();
        // the receive thread moved it into the device's backlog
        assert!(wakeup.wait(), "the device was woken for the frame");
        assert_eq!(peer.receive().unwrap(), Received::Nothing);
        assert_eq!(sw.core.lock().unwrap().stats().snapshot().delivered, 1);
        // dropping the device stops the (waiting) thread and detaches the port
        drop(net);
        assert_eq!(sw.core.lock().unwrap().stats().snapshot().ports, 1);
    }

    #[test]
    fn sent_frames_reach_the_peer_and_bad_ones_are_dropped() {
        let sw = LocalSwitch::new(2, 16);
        let peer = sw.client().unwrap();
        let mut backend = SwitchBackend::new(sw.client().unwrap());
        backend.send(&[0; 5]);
        backend.send(&frame(2, 1, 60));
        assert_eq!(
            peer.receive().unwrap(),
            Received::Frame {
                frame: frame(2, 1, 60),
                queued: 0
            }
        );
        assert_eq!(sw.core.lock().unwrap().stats().snapshot().received, 1);
    }
}
