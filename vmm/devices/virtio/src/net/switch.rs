//! An in-process learning Ethernet switch: each [`SwitchPort`] is the
//! backend of one [`Net`](super::Net) device; frames go to the port that
//! last sent from the destination MAC, or to all other ports.
//!
//! Owns: the port table and the MAC table. Must not touch: devices (it only
//! hands frames to their [`FrameSink`]s, which never block).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{FrameSink, NetBackend};

/// MAC addresses remembered at most (a guest sending from random source
/// addresses cannot grow the table without bound).
const MAX_MACS: usize = 4096;

#[derive(Default)]
pub struct Switch {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    next_port: u64,
    ports: HashMap<u64, Option<FrameSink>>,
    macs: HashMap<[u8; 6], u64>,
}

impl Switch {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new port; pass it to `Net::new` as the backend.
    pub fn port(self: &Arc<Self>) -> SwitchPort {
        let mut s = self.state();
        let id = s.next_port;
        s.next_port += 1;
        s.ports.insert(id, None);
        SwitchPort {
            switch: self.clone(),
            id,
        }
    }

    fn forward(&self, from: u64, frame: &[u8]) {
        if frame.len() < 14 {
            return;
        }
        let mut s = self.state();
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&frame[6..12]);
        if mac[0] & 1 == 0 && (s.macs.len() < MAX_MACS || s.macs.contains_key(&mac)) {
            s.macs.insert(mac, from);
        }
        mac.copy_from_slice(&frame[0..6]);
        let unicast = mac[0] & 1 == 0;
        match s.macs.get(&mac).copied().filter(|_| unicast) {
            Some(to) if to == from => {}
            Some(to) => {
                if let Some(Some(sink)) = s.ports.get(&to) {
                    sink.deliver(frame.to_vec());
                }
            }
            None => {
                for (_, sink) in s.ports.iter().filter(|(&id, _)| id != from) {
                    if let Some(sink) = sink {
                        sink.deliver(frame.to_vec());
                    }
                }
            }
        }
    }
}

/// One port of a [`Switch`]; removed from the switch when dropped.
pub struct SwitchPort {
    switch: Arc<Switch>,
    id: u64,
}

impl NetBackend for SwitchPort {
    fn send(&mut self, frame: &[u8]) {
        self.switch.forward(self.id, frame);
    }

    fn attach(&mut self, sink: FrameSink) {
        self.switch.state().ports.insert(self.id, Some(sink));
    }
}

impl Drop for SwitchPort {
    fn drop(&mut self) {
        let mut s = self.switch.state();
        s.ports.remove(&self.id);
        let id = self.id;
        s.macs.retain(|_, port| *port != id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inbox::Inbox;

    fn attached(switch: &Arc<Switch>) -> (SwitchPort, Arc<Inbox<Vec<u8>>>) {
        let mut port = switch.port();
        let inbox = Inbox::new(16);
        port.attach(FrameSink(inbox.clone()));
        (port, inbox)
    }

    fn frame(dst: u8, src: u8) -> Vec<u8> {
        let mut f = vec![0u8; 60];
        f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, dst]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, src]);
        f
    }

    #[test]
    fn floods_unknown_then_learns() {
        let sw = Switch::new();
        let (mut a, ia) = attached(&sw);
        let (mut b, ib) = attached(&sw);
        let (_c, ic) = attached(&sw);
        a.send(&frame(2, 1));
        assert_eq!(
            (ia.len(), ib.len(), ic.len()),
            (0, 1, 1),
            "unknown: flooded"
        );
        b.send(&frame(1, 2));
        assert_eq!((ia.len(), ib.len(), ic.len()), (1, 1, 1), "a was learned");
        a.send(&frame(2, 1));
        assert_eq!((ia.len(), ib.len(), ic.len()), (1, 2, 1), "b was learned");
        let mut bcast = frame(0, 1);
        bcast[0..6].fill(0xff);
        a.send(&bcast);
        assert_eq!((ia.len(), ib.len(), ic.len()), (1, 3, 2));
        a.send(&[0; 10]);
        assert_eq!((ia.len(), ib.len(), ic.len()), (1, 3, 2), "runt dropped");
        a.send(&frame(1, 1));
        assert_eq!(ia.len(), 1, "never back to the sender");
    }

    #[test]
    fn dropped_ports_are_forgotten() {
        let sw = Switch::new();
        let (mut a, _) = attached(&sw);
        let (mut b, ib) = attached(&sw);
        b.send(&frame(1, 2));
        drop(b);
        a.send(&frame(2, 1));
        assert_eq!(ib.len(), 0);
        let (_c, ic) = attached(&sw);
        a.send(&frame(2, 1));
        assert_eq!(ic.len(), 1, "b's MAC is unknown again: flooded");
    }
}
