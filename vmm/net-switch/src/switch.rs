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
//! A request comes from the service portal or from one port's portal
//! ([`Caller`]); `handle` answers it and says what the caller must do with
//! kernel objects ([`Handled`]): hand out or take back a port's
//! capabilities, signal the semaphores of ports that got frames.
//!
//! Owns: ports, queues, the MAC table, the counters. Must not touch: how
//! requests arrive and capabilities (the portals, see the `net-switch`
//! binary) or locking (the caller serializes `handle`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::protocol::{self, Request, FRAME_WORDS, MIN_FRAME, RECEIVE_HEADER};

/// Addresses remembered at most (a guest sending from random source
/// addresses cannot fill more than this).
pub const MAX_MACS: usize = 256;
/// Most ports a switch may have ([`Handled::wake`] has a bit per port).
pub const MAX_PORTS: usize = 64;

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
    attached: bool,
    queue: Queue,
}

/// Where a request came from: the switch's service portal (attach only) or
/// the portal of port `n` (the kernel tells the handler which, by badge).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caller {
    Service,
    Port(usize),
}

/// What [`SwitchCore::handle`] did beyond writing its reply.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Handled {
    /// Words of the reply.
    pub len: usize,
    /// A port changed hands: its capabilities go with the reply, or are
    /// taken back.
    pub change: Option<PortChange>,
    /// Ports (bit P: port P) whose empty queue got a frame: their
    /// semaphores are to be signalled.
    pub wake: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortChange {
    /// Delegate the port's semaphore to receive-window `offset` and its
    /// portals for `cpus` after it (see [`crate::protocol`]).
    Attached { port: usize, offset: u64, cpus: u64 },
    /// Revoke what was delegated for the port.
    Detached { port: usize },
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
    /// The CPUs with a portal (bit C: CPU C): what an attach may ask for.
    cpus: u64,
}

impl SwitchCore {
    /// A switch for `ports` ports (at most [`MAX_PORTS`]) whose queues hold
    /// `depth` frames each (at least 1), with portals on `cpus` (bit C: CPU
    /// C). Everything it will use is allocated and written here.
    pub fn new(ports: usize, depth: usize, cpus: u64) -> Self {
        let ports = ports.min(MAX_PORTS);
        let depth = depth.max(1);
        SwitchCore {
            ports: (0..ports)
                .map(|_| Port {
                    attached: false,
                    queue: Queue::new(depth),
                })
                .collect(),
            macs: [None; MAX_MACS],
            stats: Arc::default(),
            cpus,
        }
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Answers one request from `caller` (words as they came through the
    /// portal) into `reply`, which holds at least [`protocol::MAX_MESSAGE`]
    /// words. Never allocates.
    pub fn handle(&mut self, caller: Caller, request: &[u64], reply: &mut [u64]) -> Handled {
        let mut done = Handled::default();
        let answer = match (Request::parse(request), caller) {
            (None, _) => Err(protocol::BAD_REQUEST),
            (Some(Request::Attach { offset, cpus }), Caller::Service) => {
                self.attach(cpus).map(|port| {
                    done.change = Some(PortChange::Attached { port, offset, cpus });
                    reply[1] = port as u64;
                    2
                })
            }
            (Some(_), Caller::Service) => Err(protocol::NO_SUCH_PORT),
            (Some(request), Caller::Port(port)) => match self.ports.get(port) {
                Some(p) if p.attached => self.port_request(port, request, reply, &mut done),
                _ => Err(protocol::NO_SUCH_PORT),
            },
        };
        done.len = match answer {
            Ok(len) => {
                reply[0] = protocol::OK;
                len
            }
            Err(status) => {
                Stats::count(&self.stats.refused);
                reply[0] = status;
                1
            }
        };
        done
    }

    /// A request of attached port `port`; returns the reply's length.
    fn port_request(
        &mut self,
        port: usize,
        request: Request,
        reply: &mut [u64],
        done: &mut Handled,
    ) -> Result<usize, u64> {
        Ok(match request {
            Request::Attach { .. } => return Err(protocol::BAD_REQUEST),
            Request::Send { len, words } => {
                done.wake = self.forward(port, len, words);
                1
            }
            Request::Receive => {
                let queue = &mut self.ports[port].queue;
                let Some(slot) = queue.pop() else {
                    reply[1..RECEIVE_HEADER].fill(0);
                    return Ok(RECEIVE_HEADER);
                };
                let n = slot.len.div_ceil(8);
                reply[1] = slot.len as u64;
                reply[RECEIVE_HEADER..RECEIVE_HEADER + n].copy_from_slice(&slot.words[..n]);
                reply[2] = queue.len as u64;
                Stats::count(&self.stats.delivered);
                RECEIVE_HEADER + n
            }
            Request::Detach => {
                self.detach(port);
                done.change = Some(PortChange::Detached { port });
                1
            }
        })
    }

    fn attach(&mut self, cpus: u64) -> Result<usize, u64> {
        if cpus & !self.cpus != 0 {
            return Err(protocol::BAD_REQUEST);
        }
        let index = self
            .ports
            .iter()
            .position(|p| !p.attached)
            .ok_or(protocol::NO_FREE_PORT)?;
        let port = &mut self.ports[index];
        port.attached = true;
        port.queue.head = 0;
        port.queue.len = 0;
        self.stats.ports.fetch_add(1, Ordering::Relaxed);
        Ok(index)
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

    /// Learns the source and queues the frame where it goes; returns the
    /// ports whose queue was empty before (bit P: port P). A dropped frame
    /// is the sender's loss, as on a wire.
    fn forward(&mut self, from: usize, len: usize, words: &[u64]) -> u64 {
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
        let mut woken = 0;
        match known {
            Some(to) if to == from => {}
            Some(to) => woken |= self.enqueue(to, len, words),
            None => {
                for to in 0..self.ports.len() {
                    if to != from && self.ports[to].attached {
                        woken |= self.enqueue(to, len, words);
                    }
                }
            }
        }
        woken
    }

    fn learn(&mut self, mac: [u8; 6], port: usize) {
        if let Some(entry) = self.macs.iter_mut().flatten().find(|e| e.mac == mac) {
            entry.port = port;
        } else if let Some(free) = self.macs.iter_mut().find(|e| e.is_none()) {
            *free = Some(MacEntry { mac, port });
        }
    }

    /// Queues a frame for port `to`; returns its bit if the queue was
    /// empty before (its receiver may be waiting).
    fn enqueue(&mut self, to: usize, len: usize, words: &[u64]) -> u64 {
        let queue = &mut self.ports[to].queue;
        let was_empty = queue.len == 0;
        if queue.push(len, words) {
            Stats::count(&self.stats.queued);
            if was_empty {
                return 1 << to;
            }
        } else {
            Stats::count(&self.stats.dropped_full);
        }
        0
    }
}

fn is_multicast(mac: &[u8; 6]) -> bool {
    mac[0] & 1 != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{attach_request, parse_receive_reply, parse_status, send_request};
    use crate::protocol::{Received, DETACH, MAX_MESSAGE, NO_FREE_PORT, NO_SUCH_PORT, RECEIVE};

    /// A switch with portals on CPUs 0 and 1.
    fn switch(ports: usize, depth: usize) -> SwitchCore {
        SwitchCore::new(ports, depth, 0b11)
    }

    fn call(sw: &mut SwitchCore, caller: Caller, request: &[u64]) -> (Vec<u64>, Handled) {
        let mut reply = [0u64; MAX_MESSAGE];
        let done = sw.handle(caller, request, &mut reply);
        (reply[..done.len].to_vec(), done)
    }

    fn attach(sw: &mut SwitchCore) -> usize {
        let (reply, done) = call(sw, Caller::Service, &attach_request(7, 0b10));
        let port = parse_status(&reply).unwrap().unwrap() as usize;
        assert_eq!(
            done.change,
            Some(PortChange::Attached {
                port,
                offset: 7,
                cpus: 0b10
            })
        );
        port
    }

    fn frame(dst: u8, src: u8, len: usize) -> Vec<u8> {
        let mut f: Vec<u8> = (0..len).map(|i| i as u8 ^ src).collect();
        f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, dst]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, src]);
        f
    }

    /// Sends `f` from `port`; returns the ports to wake.
    fn send(sw: &mut SwitchCore, port: usize, f: &[u8]) -> u64 {
        let (reply, done) = call(sw, Caller::Port(port), &send_request(f));
        assert_eq!(parse_status(&reply), Ok(None));
        assert_eq!(done.change, None);
        done.wake
    }

    /// Every frame queued for `port`, oldest first (checking that each
    /// reply's `queued` counts down to 0).
    fn drain(sw: &mut SwitchCore, port: usize) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        let mut left = Vec::new();
        while let Received::Frame { frame, queued } =
            parse_receive_reply(&call(sw, Caller::Port(port), &[RECEIVE]).0).unwrap()
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
        let mut sw = switch(4, 8);
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
    fn a_port_is_woken_when_its_empty_queue_gets_a_frame() {
        let mut sw = switch(3, 2);
        let (a, b, c) = (attach(&mut sw), attach(&mut sw), attach(&mut sw));
        let mut bcast = frame(0, 1, 60);
        bcast[0..6].fill(0xff);
        assert_eq!(send(&mut sw, a, &bcast), 1 << b | 1 << c, "flooded: both");
        // their queues hold a frame: no second wake-up, nor for a dropped one
        assert_eq!(send(&mut sw, a, &bcast), 0);
        assert_eq!(send(&mut sw, a, &bcast), 0);
        assert_eq!(sw.stats().snapshot().dropped_full, 2);
        assert_eq!(drain(&mut sw, b).len(), 2);
        assert_eq!(send(&mut sw, a, &bcast), 1 << b, "b is empty again, c full");
        assert_eq!(send(&mut sw, a, &frame(1, 1, 60)), 0, "to itself: nowhere");
        assert_eq!(send(&mut sw, c, &frame(1, 3, 60)), 1 << a, "a was learned");
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let mut sw = switch(2, 3);
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
        let mut sw = switch(2, 1);
        let a = attach(&mut sw);
        let b = attach(&mut sw);
        let (reply, done) = call(&mut sw, Caller::Service, &attach_request(0, 1));
        assert_eq!(
            (parse_status(&reply), done.change),
            (Err(NO_FREE_PORT), None)
        );
        // b learns its MAC, then goes away: its MAC is forgotten, its portal
        // refused (until the binary has revoked it)
        send(&mut sw, b, &frame(1, 2, 60));
        let (reply, done) = call(&mut sw, Caller::Port(b), &[DETACH]);
        assert_eq!(parse_status(&reply), Ok(None));
        assert_eq!(done.change, Some(PortChange::Detached { port: b }));
        assert_eq!(sw.stats().snapshot().ports, 1);
        for stale in [&[RECEIVE][..], &send_request(&frame(1, 2, 60)), &[DETACH]] {
            let (reply, done) = call(&mut sw, Caller::Port(b), stale);
            assert_eq!(
                (reply, done.change),
                (vec![NO_SUCH_PORT], None),
                "{stale:?}"
            );
        }
        let c = attach(&mut sw);
        assert_eq!(c, b, "the port is reused");
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
        let mut sw = switch(3, 4);
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
        let mut sw = switch(2, 1);
        let a = attach(&mut sw);
        let refused = [
            (Caller::Port(a), &[][..], protocol::BAD_REQUEST),
            // port requests need a port's portal
            (Caller::Service, &[RECEIVE], NO_SUCH_PORT),
            (
                Caller::Service,
                &send_request(&frame(1, 2, 60)),
                NO_SUCH_PORT,
            ),
            (Caller::Service, &[DETACH], NO_SUCH_PORT),
            // a port that is not attached, or does not exist
            (Caller::Port(a + 1), &[RECEIVE], NO_SUCH_PORT),
            (Caller::Port(usize::MAX), &[RECEIVE], NO_SUCH_PORT),
            // attaching goes through the service portal, for CPUs it serves
            (
                Caller::Port(a),
                &attach_request(0, 1),
                protocol::BAD_REQUEST,
            ),
            (
                Caller::Service,
                &attach_request(0, 0b100),
                protocol::BAD_REQUEST,
            ),
        ];
        for (caller, request, status) in refused {
            let (reply, done) = call(&mut sw, caller, request);
            assert_eq!(reply, vec![status], "{caller:?} {request:?}");
            assert_eq!((done.change, done.wake), (None, 0));
        }
        let s = sw.stats().snapshot();
        assert_eq!((s.refused, s.ports), (refused.len() as u64, 1));
    }
}
