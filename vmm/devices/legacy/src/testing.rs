//! Test doubles for the `vmm-bus` contracts: a clock the test moves, timers
//! the test runs, an interrupt line that records, power events that are
//! collected.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use vmm_bus::{BusDevice, Clock, InterruptLine, TimerId, Timers};

use crate::{PowerEvent, PowerEvents};

/// A clock that only moves when told to.
#[derive(Default)]
pub struct FakeClock(AtomicU64);

impl FakeClock {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
    pub fn set(&self, ns: u64) {
        self.0.store(ns, Ordering::SeqCst);
    }
    pub fn advance(&self, ns: u64) {
        self.0.fetch_add(ns, Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now_ns(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

type Callback = Box<dyn FnOnce() + Send>;

/// Timers that fire only from [`FakeTimers::run_until`], moving the clock to
/// each deadline as a timer thread would see it.
pub struct FakeTimers {
    clock: Arc<FakeClock>,
    next_id: AtomicU64,
    pending: Mutex<Vec<(u64, TimerId, Callback)>>,
}

impl FakeTimers {
    pub fn new(clock: Arc<FakeClock>) -> Arc<Self> {
        Arc::new(FakeTimers {
            clock,
            next_id: AtomicU64::new(1),
            pending: Mutex::new(Vec::new()),
        })
    }

    /// Deadlines of the callbacks not yet run, earliest first.
    pub fn deadlines(&self) -> Vec<u64> {
        let mut d: Vec<u64> = self.pending.lock().unwrap().iter().map(|p| p.0).collect();
        d.sort();
        d
    }

    /// Runs every callback due by `ns` in deadline order (including ones
    /// scheduled by callbacks), then leaves the clock at `ns`.
    pub fn run_until(&self, ns: u64) {
        loop {
            let next = {
                let mut pending = self.pending.lock().unwrap();
                let earliest = pending
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.0 <= ns)
                    .min_by_key(|(_, p)| p.0)
                    .map(|(i, _)| i);
                earliest.map(|i| pending.remove(i))
            };
            let Some((deadline, _, callback)) = next else {
                break;
            };
            if deadline > self.clock.now_ns() {
                self.clock.set(deadline);
            }
            callback();
        }
        if ns > self.clock.now_ns() {
            self.clock.set(ns);
        }
    }
}

impl Timers for FakeTimers {
    fn schedule(&self, deadline_ns: u64, callback: Callback) -> TimerId {
        let id = TimerId(self.next_id.fetch_add(1, Ordering::SeqCst));
        self.pending
            .lock()
            .unwrap()
            .push((deadline_ns, id, callback));
        id
    }

    fn cancel(&self, id: TimerId) {
        self.pending.lock().unwrap().retain(|p| p.1 != id);
    }
}

/// An interrupt line that records every level it is driven to.
#[derive(Default)]
pub struct RecordingLine(Mutex<Vec<bool>>);

impl RecordingLine {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
    /// The current level (deasserted if never driven).
    pub fn level(&self) -> bool {
        self.0.lock().unwrap().last().copied().unwrap_or(false)
    }
    /// How many times the line went from deasserted to asserted.
    pub fn rising_edges(&self) -> usize {
        let levels = self.0.lock().unwrap();
        let mut previous = false;
        let mut edges = 0;
        for &level in levels.iter() {
            if level && !previous {
                edges += 1;
            }
            previous = level;
        }
        edges
    }
    /// Every level driven so far.
    pub fn history(&self) -> Vec<bool> {
        self.0.lock().unwrap().clone()
    }
}

impl InterruptLine for RecordingLine {
    fn set_level(&self, asserted: bool) {
        self.0.lock().unwrap().push(asserted);
    }
}

/// The power events a test has seen.
pub type SeenEvents = Arc<Mutex<Vec<PowerEvent>>>;

/// Collects power events.
pub fn power_events() -> (PowerEvents, SeenEvents) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    (Arc::new(move |e| sink.lock().unwrap().push(e)), seen)
}

/// One-byte port accesses, as a guest's `inb`/`outb`.
pub fn inb(dev: &mut dyn BusDevice, offset: u64) -> u8 {
    let mut b = [0u8];
    dev.read(offset, &mut b);
    b[0]
}

pub fn outb(dev: &mut dyn BusDevice, offset: u64, value: u8) {
    dev.write(offset, &[value]);
}
