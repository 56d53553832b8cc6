//! The switch itself: ports with bounded frame queues and a MAC table,
//! answering protocol requests ([`SwitchCore::handle`]).
//!
//! It follows the learning rules of the VMM's in-process switch
//! (`vmm_virtio::net::Switch`): a frame's unicast source address is learned
//! for its port (up to a table limit), a frame to a known unicast address
//! goes to that port only (and nowhere if that is the sender's), anything
//! else goes to every other port. It cannot reuse that switch's code: a Tern
//! portal handler may not allocate or lock a std mutex, so everything here
//! is allocated up front ([`SwitchCore::new`]) and [`SwitchCore::handle`]
//! only copies words. A frame for a port whose queue is full is dropped and
//! counted, as a NIC without receive buffers drops it.
//!
//! Owns: ports, queues, the MAC table, the counters. Must not touch: how
//! requests arrive (the portal, see the `net-switch` binary) or locking
//! (the caller serializes `handle`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::protocol::{self, Request, FRAME_WORDS, MIN_FRAME, RECEIVE_HEADER};

/// Addresses remembered at most (a guest sending from random source
/// addresses cannot fill more than this).
pub const MAX_MACS: usize = 256;
/// Most ports a switch may have (port ids keep the index in 16 bits).
pub const MAX_PORTS: usize = 1 << 16;

/// What the switch has done, readable from any thread while it runs.
#[derive(Debug, Default)]
pub struct Stats {
    /// Ports attached now.
    pub ports: AtomicU64,
    /// Frames sent into the switch.
    pub received: AtomicU64,
    /// Frame copies queued for a port.
    pub queued: AtomicU64,
    /// Frame copies handed to a port's receiver.
    pub delivered: AtomicU64,
    /// Frame copies dropped because the port's queue was full.
    pub dropped_full: AtomicU64,
    /// Malformed requests, and requests naming a port that is not attached.
    pub refused: AtomicU64,
}

/// A copy of [`Stats`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub ports: u64,
    pub received: u64,
    pub queued: u64,
    pub delivered: u64,
    pub dropped_full: u64,
    pub refused: u64,
}

impl Stats {
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            ports: get(&self.ports),
            received: get(&self.received),
            queued: get(&self.queued),
            delivered: get(&self.delivered),
            dropped_full: get(&self.dropped_full),
            refused: get(&self.refused),
        }
    }

    fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Written into every slot when the switch is made: non-zero, so that the
/// stores cannot be optimised away and every page is backed before a portal
/// handler (which may not fault memory in) touches it.
const FILL: u64 = 0x5a5a_5a5a_5a5a_5a5a;

struct Slot {
    len: usize,
    words: [u64; FRAME_WORDS],
}

/// A ring of frame slots.
struct Queue {
    slots: Vec<Slot>,
    head: usize,
    len: usize,
}

impl Queue {
    fn new(depth: usize) -> Self {
        Queue {
            slots: (0..depth)
                .map(|_| Slot {
                    len: 0,
                    words: [FILL; FRAME_WORDS],
                })
                .collect(),
            head: 0,
            len: 0,
        }
    }

    fn push(&mut self, len: usize, words: &[u64]) -> bool {
        if self.len == self.slots.len() {
            return false;
        }
        let i = (self.head + self.len) % self.slots.len();
        let slot = &mut self.slots[i];
        slot.len = len;
        slot.words[..words.len()].copy_from_slice(words);
        self.len += 1;
        true
    }

    fn pop(&mut self) -> Option<&Slot> {
        if self.len == 0 {
            return None;
        }
        let i = self.head;
        self.head = (self.head + 1) % self.slots.len();
        self.len -= 1;
        Some(&self.slots[i])
    }
}

struct Port {
    /// Bumped at every attach: an id from before a detach stays invalid.
    generation: u64,
    attached: bool,
    queue: Queue,
}

#[derive(Clone, Copy)]
struct MacEntry {
    mac: [u8; 6],
    port: usize,
}

/// A learning switch of fixed size; see the module documentation.
pub struct SwitchCore {
    ports: Vec<Port>,
    macs: [Option<MacEntry>; MAX_MACS],
    stats: Arc<Stats>,
}

impl SwitchCore {
    /// A switch for `ports` ports (at most [`MAX_PORTS`]) whose queues hold
    /// `depth` frames each (at least 1). Everything it will use is allocated
    /// and written here.
    pub fn new(ports: usize, depth: usize) -> Self {
        let ports = ports.min(MAX_PORTS);
        let depth = depth.max(1);
        SwitchCore {
            ports: (0..ports)
                .map(|_| Port {
                    generation: 0,
                    attached: false,
                    queue: Queue::new(depth),
                })
                .collect(),
            macs: [None; MAX_MACS],
            stats: Arc::default(),
        }
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Answers one request (words as they came through the portal) into
    /// `reply`, which holds at least [`protocol::MAX_MESSAGE`] words;
    /// returns the reply's length. Never allocates.
    pub fn handle(&mut self, request: &[u64], reply: &mut [u64]) -> usize {
        let answer = match Request::parse(request) {
            None => Err(protocol::BAD_REQUEST),
            Some(Request::Attach) => self.attach().map(|port| {
                reply[1] = port;
                2
            }),
            Some(Request::Send { port, len, words }) => self
                .port_index(port)
                .map(|from| self.forward(from, len, words)),
            Some(Request::Receive { port }) => self.port_index(port).map(|index| {
                let queue = &mut self.ports[index].queue;
                let Some(slot) = queue.pop() else {
                    reply[1..RECEIVE_HEADER].fill(0);
                    return RECEIVE_HEADER;
                };
                let n = slot.len.div_ceil(8);
                reply[1] = slot.len as u64;
                reply[RECEIVE_HEADER..RECEIVE_HEADER + n].copy_from_slice(&slot.words[..n]);
                reply[2] = queue.len as u64;
                Stats::count(&self.stats.delivered);
                RECEIVE_HEADER + n
            }),
            Some(Request::Detach { port }) => self.port_index(port).map(|index| {
                self.detach(index);
                1
            }),
        };
        match answer {
            Ok(len) => {
                reply[0] = protocol::OK;
                len
            }
            Err(status) => {
                Stats::count(&self.stats.refused);
                reply[0] = status;
                1
            }
        }
    }

    fn attach(&mut self) -> Result<u64, u64> {
        let index = self
            .ports
            .iter()
            .position(|p| !p.attached)
            .ok_or(protocol::NO_FREE_PORT)?;
        let port = &mut self.ports[index];
        port.attached = true;
        port.generation += 1;
        port.queue.head = 0;
        port.queue.len = 0;
        self.stats.ports.fetch_add(1, Ordering::Relaxed);
        Ok(port.generation << 16 | index as u64)
    }

    fn detach(&mut self, index: usize) {
        self.ports[index].attached = false;
        self.ports[index].queue.len = 0;
        for entry in &mut self.macs {
            if entry.is_some_and(|e| e.port == index) {
                *entry = None;
            }
        }
        self.stats.ports.fetch_sub(1, Ordering::Relaxed);
    }

    /// The index of attached port `id`.
    fn port_index(&self, id: u64) -> Result<usize, u64> {
        let index = (id & 0xffff) as usize;
        match self.ports.get(index) {
            Some(p) if p.attached && p.generation == id >> 16 => Ok(index),
            _ => Err(protocol::NO_SUCH_PORT),
        }
    }

    /// Learns the source and queues the frame where it goes; the reply is
    /// just OK (a dropped frame is the sender's loss, as on a wire).
    fn forward(&mut self, from: usize, len: usize, words: &[u64]) -> usize {
        debug_assert!(len >= MIN_FRAME);
        Stats::count(&self.stats.received);
        let src = protocol::mac_at(words, 6);
        if !is_multicast(&src) {
            self.learn(src, from);
        }
        let dst = protocol::mac_at(words, 0);
        let known = if is_multicast(&dst) {
            None
        } else {
            self.macs
                .iter()
                .flatten()
                .find(|e| e.mac == dst)
                .map(|e| e.port)
        };
        match known {
            Some(to) if to == from => {}
            Some(to) => self.enqueue(to, len, words),
            None => {
                for to in 0..self.ports.len() {
                    if to != from && self.ports[to].attached {
                        self.enqueue(to, len, words);
                    }
                }
            }
        }
        1
    }

    fn learn(&mut self, mac: [u8; 6], port: usize) {
        if let Some(entry) = self.macs.iter_mut().flatten().find(|e| e.mac == mac) {
            entry.port = port;
        } else if let Some(free) = self.macs.iter_mut().find(|e| e.is_none()) {
            *free = Some(MacEntry { mac, port });
        }
    }

    fn enqueue(&mut self, to: usize, len: usize, words: &[u64]) {
        if self.ports[to].queue.push(len, words) {
            Stats::count(&self.stats.queued);
        } else {
            Stats::count(&self.stats.dropped_full);
        }
    }
}

fn is_multicast(mac: &[u8; 6]) -> bool {
    mac[0] & 1 != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{parse_receive_reply, parse_status, send_request, Received};
    use crate::protocol::{ATTACH, DETACH, MAX_MESSAGE, NO_FREE_PORT, NO_SUCH_PORT, RECEIVE};

    fn call(sw: &mut SwitchCore, request: &[u64]) -> Vec<u64> {
        let mut reply = [0u64; MAX_MESSAGE];
        let n = sw.handle(request, &mut reply);
        reply[..n].to_vec()
    }

    fn attach(sw: &mut SwitchCore) -> u64 {
        parse_status(&call(sw, &[ATTACH])).unwrap().unwrap()
    }

    fn frame(dst: u8, src: u8, len: usize) -> Vec<u8> {
        let mut f: Vec<u8> = (0..len).map(|i| i as u8 ^ src).collect();
        f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, dst]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, src]);
        f
    }

    fn send(sw: &mut SwitchCore, port: u64, f: &[u8]) {
        assert_eq!(parse_status(&call(sw, &send_request(port, f))), Ok(None));
    }

    /// Every frame queued for `port`, oldest first (checking that each
    /// reply's `queued` counts down to 0).
    fn drain(sw: &mut SwitchCore, port: u64) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        let mut left = Vec::new();
        while let Received::Frame { frame, queued } =
            parse_receive_reply(&call(sw, &[RECEIVE, port])).unwrap()
        {
            frames.push(frame);
            left.push(queued);
        }
        let expected: Vec<u64> = (0..frames.len() as u64).rev().collect();
        assert_eq!(left, expected);
        frames
    }

    #[test]
    fn floods_unknown_then_learns() {
        let mut sw = SwitchCore::new(4, 8);
        let (a, b, c) = (attach(&mut sw), attach(&mut sw), attach(&mut sw));
        let f = frame(2, 1, 60);
        send(&mut sw, a, &f);
        assert_eq!(
            drain(&mut sw, a),
            Vec::<Vec<u8>>::new(),
            "never back to the sender"
        );
        assert_eq!(drain(&mut sw, b), vec![f.clone()], "unknown: flooded");
        assert_eq!(drain(&mut sw, c), vec![f.clone()], "unknown: flooded");
        let g = frame(1, 2, 1514);
        send(&mut sw, b, &g);
        assert_eq!(drain(&mut sw, a), vec![g], "a was learned");
        assert!(drain(&mut sw, c).is_empty());
        send(&mut sw, a, &f);
        assert_eq!(drain(&mut sw, b), vec![f.clone()], "b was learned");
        assert!(drain(&mut sw, c).is_empty());
        let mut bcast = frame(0, 1, 42);
        bcast[0..6].fill(0xff);
        send(&mut sw, a, &bcast);
        assert_eq!(drain(&mut sw, b), vec![bcast.clone()]);
        assert_eq!(drain(&mut sw, c), vec![bcast]);
        send(&mut sw, a, &frame(1, 1, 60));
        assert!(drain(&mut sw, a).is_empty(), "to itself: nowhere");
        let s = sw.stats().snapshot();
        assert_eq!((s.ports, s.received, s.queued, s.delivered), (3, 5, 6, 6));
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let mut sw = SwitchCore::new(2, 3);
        let (a, b) = (attach(&mut sw), attach(&mut sw));
        let frames: Vec<_> = (0..5u8).map(|i| frame(2, 1, 60 + i as usize)).collect();
        for f in &frames {
            send(&mut sw, a, f);
        }
        assert_eq!(
            drain(&mut sw, b),
            frames[..3].to_vec(),
            "the oldest three kept, in order"
        );
        assert_eq!(sw.stats().snapshot().dropped_full, 2);
        // the ring wraps around
        for f in &frames[3..] {
            send(&mut sw, a, f);
        }
        assert_eq!(drain(&mut sw, b), frames[3..].to_vec());
    }

    #[test]
    fn ports_run_out_and_come_back() {
        let mut sw = SwitchCore::new(2, 1);
        let a = attach(&mut sw);
        let b = attach(&mut sw);
        assert_eq!(parse_status(&call(&mut sw, &[ATTACH])), Err(NO_FREE_PORT));
        // b learns its MAC, then goes away: its MAC and its id are forgotten
        send(&mut sw, b, &frame(1, 2, 60));
        assert_eq!(parse_status(&call(&mut sw, &[DETACH, b])), Ok(None));
        assert_eq!(sw.stats().snapshot().ports, 1);
        for stale in [
            &[RECEIVE, b][..],
            &send_request(b, &frame(1, 2, 60)),
            &[DETACH, b],
        ] {
            assert_eq!(call(&mut sw, stale), vec![NO_SUCH_PORT], "{stale:?}");
        }
        let c = attach(&mut sw);
        assert_ne!(c, b, "a new id for the reused port");
        send(&mut sw, a, &frame(2, 1, 60));
        assert_eq!(
            drain(&mut sw, c).len(),
            1,
            "b's MAC is unknown again: flooded"
        );
        drain(&mut sw, a);
    }

    #[test]
    fn the_mac_table_is_bounded() {
        let mut sw = SwitchCore::new(3, 4);
        let (a, b, c) = (attach(&mut sw), attach(&mut sw), attach(&mut sw));
        // a fills the table from random source addresses
        for i in 0..MAX_MACS + 10 {
            let mut f = frame(0, 0, 60);
            f[0..6].fill(0xff);
            f[6..12].copy_from_slice(&[2, 1, 0, 0, (i >> 8) as u8, i as u8]);
            send(&mut sw, a, &f);
        }
        drain(&mut sw, b);
        drain(&mut sw, c);
        // b's address cannot be learned any more: frames to it are flooded
        send(&mut sw, b, &frame(9, 7, 60));
        send(&mut sw, a, &frame(7, 9, 60));
        assert_eq!(drain(&mut sw, a).len(), 1);
        assert_eq!(drain(&mut sw, b).len(), 1);
        assert_eq!(drain(&mut sw, c).len(), 2, "flooded twice");
        // an address a learned early is still known
        let mut to_a = frame(0, 7, 60);
        to_a[0..6].copy_from_slice(&[2, 1, 0, 0, 0, 3]);
        send(&mut sw, b, &to_a);
        assert_eq!(drain(&mut sw, a), vec![to_a]);
        assert!(drain(&mut sw, c).is_empty());
    }

    #[test]
    fn bad_requests_are_refused_and_counted() {
        let mut sw = SwitchCore::new(1, 1);
        let a = attach(&mut sw);
        assert_eq!(call(&mut sw, &[]), vec![protocol::BAD_REQUEST]);
        assert_eq!(call(&mut sw, &[RECEIVE, a | 5]), vec![NO_SUCH_PORT]);
        assert_eq!(call(&mut sw, &[RECEIVE, u64::MAX]), vec![NO_SUCH_PORT]);
        assert_eq!(sw.stats().snapshot().refused, 3);
    }
}
