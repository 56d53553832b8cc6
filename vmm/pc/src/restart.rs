//! Starting the machine again after the guest reset it (`on-reset =
//! "restart"`).
//!
//! Owns: the restart request, the rendezvous of the vCPU handlers (each
//! stops outside the guest; the last to arrive runs the machine's power-on
//! work while the others wait, then all go on together) and the reset-loop
//! limit. Must not touch: what the power-on work does (the machine resets
//! its devices and reloads guest RAM) or vCPU state (each handler charges
//! its vCPU's power-on state afterwards).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// A guest that resets the machine this many times within
/// [`RESET_LOOP_WINDOW_NS`] is in a reset loop: the last reset ends the VM.
pub const RESET_LOOP_RESETS: usize = 10;
pub const RESET_LOOP_WINDOW_NS: u64 = 60_000_000_000;

/// The resets of the recent past, against the reset-loop limit.
#[derive(Debug)]
pub struct ResetLimit {
    resets: usize,
    window_ns: u64,
    recent: VecDeque<u64>,
}

impl ResetLimit {
    /// At most `resets - 1` restarts within any `window_ns`.
    pub fn new(resets: usize, window_ns: u64) -> Self {
        ResetLimit {
            resets: resets.max(1),
            window_ns,
            recent: VecDeque::new(),
        }
    }

    /// A reset at `now_ns` (monotonic): whether the machine may restart
    /// (`false`: this is the `resets`-th reset within the window).
    pub fn restart_allowed(&mut self, now_ns: u64) -> bool {
        while self
            .recent
            .front()
            .is_some_and(|&t| now_ns.saturating_sub(t) >= self.window_ns)
        {
            self.recent.pop_front();
        }
        self.recent.push_back(now_ns);
        self.recent.len() < self.resets
    }
}

#[derive(Default)]
struct Gathering {
    /// Handlers waiting at the rendezvous.
    arrived: u32,
    /// Restarts completed (a waiting handler leaves when this moves).
    restarts: u64,
}

/// The restart request and the rendezvous of the vCPU handlers.
#[derive(Default)]
pub struct Restart {
    requested: AtomicBool,
    gathering: Mutex<Gathering>,
    done: Condvar,
}

impl Restart {
    /// Asks every handler to come to the rendezvous; `false` if a restart
    /// is already asked for.
    pub fn request(&self) -> bool {
        !self.requested.swap(true, Ordering::AcqRel)
    }

    /// Whether handlers should stop and gather.
    pub fn requested(&self) -> bool {
        self.requested.load(Ordering::Acquire)
    }

    /// Restarts completed so far.
    pub fn restarts(&self) -> u64 {
        self.lock().restarts
    }

    fn lock(&self) -> MutexGuard<'_, Gathering> {
        self.gathering.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A handler arrives at the rendezvous of `vcpus` handlers. The last
    /// one runs `power_on` with the restart's number (from 1; the others
    /// still wait), ends the request and lets everyone go. Returns `false` if `stopped()` said the VM ended
    /// before everyone was there.
    pub fn gather(
        &self,
        vcpus: u32,
        stopped: impl Fn() -> bool,
        power_on: impl FnOnce(u64),
    ) -> bool {
        let mut g = self.lock();
        let generation = g.restarts;
        g.arrived += 1;
        if g.arrived >= vcpus {
            power_on(generation + 1);
            g.arrived = 0;
            g.restarts += 1;
            self.requested.store(false, Ordering::Release);
            self.done.notify_all();
            return true;
        }
        while g.restarts == generation {
            if stopped() {
                g.arrived -= 1;
                return false;
            }
            g = self
                .done
                .wait_timeout(g, Duration::from_millis(50))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;
    use std::sync::Arc;

    #[test]
    fn the_tenth_reset_within_a_minute_is_a_loop() {
        let mut limit = ResetLimit::new(RESET_LOOP_RESETS, RESET_LOOP_WINDOW_NS);
        let second = 1_000_000_000;
        for i in 0..9 {
            assert!(limit.restart_allowed(i * second), "reset {}", i + 1);
        }
        assert!(!limit.restart_allowed(9 * second), "ten within 60 s");
        // Resets spread out are never a loop.
        let mut limit = ResetLimit::new(RESET_LOOP_RESETS, RESET_LOOP_WINDOW_NS);
        for i in 0..100 {
            assert!(limit.restart_allowed(i * 7 * second), "reset {}", i + 1);
        }
    }

    #[test]
    fn the_last_handler_runs_the_power_on_while_the_others_wait() {
        let restart = Arc::new(Restart::default());
        assert!(restart.request());
        assert!(!restart.request(), "one restart at a time");
        let powered = Arc::new(AtomicU32::new(0));
        let handlers: Vec<_> = (0..3)
            .map(|_| {
                let (r, p) = (restart.clone(), powered.clone());
                std::thread::spawn(move || {
                    let went_on = r.gather(
                        3,
                        || false,
                        |number| {
                            assert_eq!(number, 1);
                            p.fetch_add(1, Ordering::SeqCst);
                        },
                    );
                    // Nobody goes on before the power-on work is done.
                    (went_on, p.load(Ordering::SeqCst))
                })
            })
            .collect();
        for h in handlers {
            assert_eq!(h.join().unwrap(), (true, 1));
        }
        assert_eq!(powered.load(Ordering::SeqCst), 1);
        assert!(!restart.requested());
        assert_eq!(restart.restarts(), 1);
        assert!(restart.request(), "the next reset can come");
    }

    #[test]
    fn a_vm_that_ends_while_handlers_gather_lets_them_go() {
        let restart = Restart::default();
        restart.request();
        let ran = AtomicBool::new(false);
        let went_on = restart.gather(2, || true, |_| ran.store(true, Ordering::SeqCst));
        assert!(!went_on);
        assert!(!ran.load(Ordering::SeqCst));
        assert_eq!(restart.restarts(), 0);
    }
}
