//! The machine's one timer thread: [`TimerQueue`] runs [`Timers`] callbacks
//! at their [`Clock`] deadlines.
//!
//! A callback never starts sooner after the previous one ended than that one
//! took: a guest that programs timers faster than the host can run their
//! callbacks gets them late (periodic timers coalesce), but the timer thread
//! keeps at most about half of its CPU. On Tern it runs above the vCPU
//! threads of its CPU (`vmm-host`'s `tern`), which it would starve otherwise.
//!
//! Owns: the queue of pending callbacks, the thread that runs them and its
//! shutdown. Must not touch: what a callback does (device models decide);
//! callbacks run without the queue's lock held, so they may schedule or
//! cancel timers themselves.

use std::collections::{BTreeMap, HashMap};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{JoinHandle, ThreadId};
use std::time::Duration;

use vmm_bus::{Clock, TimerId, Timers};

#[derive(Debug, thiserror::Error)]
pub enum TimerQueueError {
    #[error("cannot start the timer thread: {0}; the host is out of threads or memory")]
    Spawn(#[source] std::io::Error),
}

type Callback = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct Queue {
    next_id: u64,
    /// By (deadline, id): the first entry is the next to run; ids keep
    /// callbacks with equal deadlines in scheduling order.
    pending: BTreeMap<(u64, u64), Callback>,
    deadline_of: HashMap<u64, u64>,
    stop: bool,
}

struct Shared {
    clock: Arc<dyn Clock>,
    queue: Mutex<Queue>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One-shot timers on a dedicated thread. Dropping the queue stops the
/// thread; callbacks that have not run by then are dropped unrun.
pub struct TimerQueue {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    thread_id: ThreadId,
}

impl TimerQueue {
    /// Starts the timer thread, which measures deadlines on `clock`. The
    /// thread sleeps in real time, so `clock` must advance with real time
    /// (the machine's `HostClock`).
    pub fn new(clock: Arc<dyn Clock>) -> Result<Arc<TimerQueue>, TimerQueueError> {
        let shared = Arc::new(Shared {
            clock,
            queue: Mutex::new(Queue::default()),
            changed: Condvar::new(),
        });
        let runner = shared.clone();
        let thread = std::thread::Builder::new()
            .name("timer-queue".into())
            .spawn(move || run(&runner))
            .map_err(TimerQueueError::Spawn)?;
        Ok(Arc::new(TimerQueue {
            shared,
            thread_id: thread.thread().id(),
            thread: Some(thread),
        }))
    }

    /// How many callbacks wait to run.
    pub fn pending(&self) -> usize {
        self.shared.lock().pending.len()
    }
}

fn run(shared: &Shared) {
    // no callback starts before this (the end of the last one plus its length)
    let mut rest_until = 0u64;
    let mut queue = shared.lock();
    loop {
        if queue.stop {
            return;
        }
        let Some((&(deadline, id), _)) = queue.pending.first_key_value() else {
            queue = shared
                .changed
                .wait(queue)
                .unwrap_or_else(|p| p.into_inner());
            continue;
        };
        let now = shared.clock.now_ns();
        let start = deadline.max(rest_until);
        if now < start {
            let wait = Duration::from_nanos(start - now);
            queue = shared
                .changed
                .wait_timeout(queue, wait)
                .unwrap_or_else(|p| p.into_inner())
                .0;
            continue;
        }
        let callback = queue.pending.remove(&(deadline, id));
        queue.deadline_of.remove(&id);
        drop(queue);
        if let Some(callback) = callback {
            // A panicking callback is a device bug; the other devices'
            // timers keep running.
            if catch_unwind(AssertUnwindSafe(callback)).is_err() {
                eprintln!(
                    "timer-queue: a timer callback panicked (device bug); timers keep running"
                );
            }
            let done = shared.clock.now_ns();
            rest_until = done.saturating_add(done.saturating_sub(now));
        }
        queue = shared.lock();
    }
}

impl Timers for TimerQueue {
    fn schedule(&self, deadline_ns: u64, callback: Box<dyn FnOnce() + Send>) -> TimerId {
        let mut queue = self.shared.lock();
        let id = queue.next_id;
        queue.next_id += 1;
        let first = queue
            .pending
            .first_key_value()
            .is_none_or(|(&(d, _), _)| deadline_ns < d);
        queue.pending.insert((deadline_ns, id), callback);
        queue.deadline_of.insert(id, deadline_ns);
        if first {
            self.shared.changed.notify_one();
        }
        TimerId(id)
    }

    fn cancel(&self, id: TimerId) {
        let mut queue = self.shared.lock();
        if let Some(deadline) = queue.deadline_of.remove(&id.0) {
            let callback = queue.pending.remove(&(deadline, id.0));
            drop(queue);
            drop(callback);
        }
    }
}

impl Drop for TimerQueue {
    fn drop(&mut self) {
        let unrun = {
            let mut queue = self.shared.lock();
            queue.stop = true;
            queue.deadline_of.clear();
            std::mem::take(&mut queue.pending)
        };
        self.shared.changed.notify_all();
        drop(unrun);
        // The last owner may be a callback running on the timer thread.
        if std::thread::current().id() != self.thread_id {
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use vmm_bus::HostClock;

    const MS: u64 = 1_000_000;

    fn queue() -> (Arc<HostClock>, Arc<TimerQueue>) {
        let clock = Arc::new(HostClock::new());
        let timers = TimerQueue::new(clock.clone()).unwrap();
        (clock, timers)
    }

    #[test]
    fn runs_callbacks_in_deadline_order_not_before_their_deadline() {
        let (clock, timers) = queue();
        let (tx, rx) = mpsc::channel();
        let start = clock.now_ns();
        for (name, delay) in [
            ("c", 30 * MS),
            ("a", 10 * MS),
            ("b", 20 * MS),
            ("a2", 10 * MS),
        ] {
            let tx = tx.clone();
            let clock = clock.clone();
            let deadline = start + delay;
            timers.schedule(
                deadline,
                Box::new(move || tx.send((name, deadline, clock.now_ns())).unwrap()),
            );
        }
        let mut order = Vec::new();
        for _ in 0..4 {
            let (name, deadline, ran_at) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
            assert!(
                ran_at >= deadline,
                "{name} ran {}ns early",
                deadline - ran_at
            );
            order.push(name);
        }
        assert_eq!(order, ["a", "a2", "b", "c"]);
        assert_eq!(timers.pending(), 0);
    }

    #[test]
    fn cancelled_callbacks_never_run_and_past_deadlines_run_at_once() {
        let (clock, timers) = queue();
        let (tx, rx) = mpsc::channel();
        let now = clock.now_ns();
        let t = tx.clone();
        let cancelled = timers.schedule(
            now + 20 * MS,
            Box::new(move || t.send("cancelled").unwrap()),
        );
        let t = tx.clone();
        timers.schedule(now + 40 * MS, Box::new(move || t.send("later").unwrap()));
        timers.cancel(cancelled);
        timers.cancel(cancelled); // no effect the second time
        let t = tx.clone();
        timers.schedule(0, Box::new(move || t.send("past").unwrap()));
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), "past");
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), "later");
        assert!(rx.recv_timeout(Duration::from_millis(50)).is_err());
    }

    #[test]
    fn overdue_callbacks_leave_the_cpu_idle_as_long_as_they_ran() {
        // Ten callbacks, all due at once, each busy for 3 ms: between two of
        // them the thread rests at least as long as the first one ran.
        let (clock, timers) = queue();
        let (tx, rx) = mpsc::channel();
        for _ in 0..10 {
            let (tx, clock) = (tx.clone(), clock.clone());
            timers.schedule(
                0,
                Box::new(move || {
                    let start = clock.now_ns();
                    while clock.now_ns() - start < 3 * MS {
                        std::hint::spin_loop();
                    }
                    tx.send((start, clock.now_ns())).unwrap();
                }),
            );
        }
        let runs: Vec<(u64, u64)> = (0..10)
            .map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap())
            .collect();
        for pair in runs.windows(2) {
            let ((start, end), (next, _)) = (pair[0], pair[1]);
            assert!(
                next - end >= end - start,
                "the next callback started {} ns after one that ran {} ns",
                next - end,
                end - start
            );
        }
    }

    #[test]
    fn callbacks_may_reschedule_themselves() {
        let (clock, timers) = queue();
        let (tx, rx) = mpsc::channel();
        fn tick(timers: Arc<TimerQueue>, clock: Arc<HostClock>, left: u32, tx: mpsc::Sender<u32>) {
            let deadline = clock.now_ns() + 2 * MS;
            let t2 = timers.clone();
            timers.schedule(
                deadline,
                Box::new(move || {
                    tx.send(left).unwrap();
                    if left > 1 {
                        tick(t2, clock, left - 1, tx);
                    }
                }),
            );
        }
        tick(timers.clone(), clock, 3, tx);
        let got: Vec<u32> = (0..3)
            .map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap())
            .collect();
        assert_eq!(got, [3, 2, 1]);
    }

    #[test]
    fn an_earlier_timer_wakes_a_sleeping_thread() {
        let (clock, timers) = queue();
        let (tx, rx) = mpsc::channel();
        let now = clock.now_ns();
        let t = tx.clone();
        timers.schedule(now + 10_000 * MS, Box::new(move || t.send("late").unwrap()));
        let t = tx.clone();
        timers.schedule(u64::MAX, Box::new(move || t.send("never").unwrap()));
        std::thread::sleep(Duration::from_millis(5)); // the thread sleeps towards +10 s
        timers.schedule(
            clock.now_ns() + MS,
            Box::new(move || tx.send("soon").unwrap()),
        );
        assert_eq!(rx.recv_timeout(Duration::from_secs(2)).unwrap(), "soon");
        assert_eq!(timers.pending(), 2);
    }

    #[test]
    fn a_panicking_callback_does_not_stop_the_queue_and_drop_stops_the_thread() {
        let (clock, timers) = queue();
        let (tx, rx) = mpsc::channel();
        timers.schedule(0, Box::new(|| panic!("device bug (expected by this test)")));
        let t = tx.clone();
        timers.schedule(clock.now_ns() + MS, Box::new(move || t.send(1).unwrap()));
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), 1);
        timers.schedule(
            clock.now_ns() + 10_000 * MS,
            Box::new(move || tx.send(2).unwrap()),
        );
        drop(timers); // joins the thread; the pending callback is dropped
        assert!(matches!(rx.recv(), Err(mpsc::RecvError)));
    }
}
