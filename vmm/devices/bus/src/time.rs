//! Time for device models: a monotonic [`Clock`] and one-shot [`Timers`].
//!
//! Owns: the contracts only, plus [`HostClock`]. Must not touch: how timers
//! are run (the machine provides a timer thread, `vmm-irqchip`'s
//! `TimerQueue`).

use std::time::Instant;

/// Monotonic nanoseconds since an arbitrary start (the VM's start).
pub trait Clock: Send + Sync {
    fn now_ns(&self) -> u64;
}

/// [`Clock`] over `std::time::Instant`.
pub struct HostClock {
    start: Instant,
}

impl HostClock {
    pub fn new() -> Self {
        HostClock {
            start: Instant::now(),
        }
    }
}

impl Default for HostClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for HostClock {
    fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }
}

/// Names a scheduled callback so it can be cancelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimerId(pub u64);

/// One-shot callbacks at a [`Clock`] time, run on a timer thread. Periodic
/// devices schedule their next expiry from the callback. A callback must
/// not block; it usually raises an interrupt.
pub trait Timers: Send + Sync {
    /// Runs `callback` once the clock reaches `deadline_ns` (at once if it
    /// already has).
    fn schedule(&self, deadline_ns: u64, callback: Box<dyn FnOnce() + Send>) -> TimerId;
    /// Drops a callback that has not run yet; no effect otherwise.
    fn cancel(&self, id: TimerId);
}
