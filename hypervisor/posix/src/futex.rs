//! Futex wait queues.
//!
//! Owns: which threads wait on which user address (with the bitset of
//! `FUTEX_WAIT_BITSET`), in arrival order, and the choice of whom a wake or
//! requeue releases. Must not touch: user memory — the caller compares the
//! futex word with the expected value before [`FutexTable::wait`] (and
//! answers `EAGAIN` itself) — nor blocking, waking or timeouts of threads: the
//! caller blocks the threads this table lists and unblocks those it returns.
//!
//! The caller blocks a waiter on a per-thread counting semaphore and ups it
//! for each thread a wake returns. [`FutexTable::end_wait`] keeps that
//! semaphore at zero outside a wait: a wake that races a timeout leaves an up
//! behind, which the caller must absorb, or the thread's next wait would
//! return at once while it still sits in a queue (and every wait after that
//! would be `EINVAL`).
//!
//! All futexes are process-private: the key is the virtual address.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;

use crate::Errno;

/// The bitset that matches every waiter (`FUTEX_BITSET_MATCH_ANY`).
pub const BITSET_MATCH_ANY: u32 = u32::MAX;

/// Futex operation numbers (`op & FUTEX_CMD_MASK`).
pub const FUTEX_WAIT: u32 = 0;
pub const FUTEX_WAKE: u32 = 1;
pub const FUTEX_REQUEUE: u32 = 3;
pub const FUTEX_CMP_REQUEUE: u32 = 4;
pub const FUTEX_WAKE_OP: u32 = 5;
pub const FUTEX_WAIT_BITSET: u32 = 9;
pub const FUTEX_WAKE_BITSET: u32 = 10;
/// Flag bits of the operation word.
pub const FUTEX_PRIVATE_FLAG: u32 = 128;
pub const FUTEX_CLOCK_REALTIME: u32 = 256;
/// Mask that removes the flags from the operation word.
pub const FUTEX_CMD_MASK: u32 = !(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME);

/// The wait queues of one process; `T` names a thread.
#[derive(Debug)]
pub struct FutexTable<T> {
    queues: BTreeMap<u64, VecDeque<Waiter<T>>>,
    waiting_on: BTreeMap<T, u64>,
}

/// How a thread's block on its wait semaphore ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unblocked {
    /// The semaphore was upped.
    Up,
    /// The timeout passed first (or had passed before the thread blocked).
    TimedOut,
    /// The kernel ended the block otherwise.
    Interrupted,
}

/// What a wait returns and whether the caller must take the pending up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitEnd {
    /// The system call's result: woken (`Ok`), `ETIMEDOUT` or `EINTR`.
    pub result: Result<(), Errno>,
    /// A wake released the thread but the block ended another way: the
    /// wake's up is (or soon will be) on the semaphore; down it once, with
    /// no timeout, before the thread waits again.
    pub absorb_up: bool,
}

#[derive(Debug, Clone, Copy)]
struct Waiter<T> {
    thread: T,
    bitset: u32,
}

impl<T: Copy + Ord> Default for FutexTable<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Copy + Ord> FutexTable<T> {
    pub fn new() -> Self {
        FutexTable {
            queues: BTreeMap::new(),
            waiting_on: BTreeMap::new(),
        }
    }

    /// Queues `thread` on `addr` (after the caller found the expected value
    /// there). `addr` must be 4-byte aligned and `bitset` non-zero (EINVAL,
    /// as Linux); a thread already waiting is EINVAL too (a caller bug).
    pub fn wait(&mut self, addr: u64, thread: T, bitset: u32) -> Result<(), Errno> {
        if !addr.is_multiple_of(4) || bitset == 0 || self.waiting_on.contains_key(&thread) {
            return Err(Errno::EINVAL);
        }
        self.queues
            .entry(addr)
            .or_default()
            .push_back(Waiter { thread, bitset });
        self.waiting_on.insert(thread, addr);
        Ok(())
    }

    /// Releases up to `n` threads waiting on `addr` whose bitset shares a bit
    /// with `bitset`, oldest first. Returns them; the caller resumes them
    /// with return value 0.
    pub fn wake(&mut self, addr: u64, n: usize, bitset: u32) -> Vec<T> {
        let mut woken = Vec::new();
        if bitset == 0 {
            return woken;
        }
        if let Some(queue) = self.queues.get_mut(&addr) {
            queue.retain(|w| {
                if woken.len() < n && w.bitset & bitset != 0 {
                    woken.push(w.thread);
                    false
                } else {
                    true
                }
            });
            if queue.is_empty() {
                self.queues.remove(&addr);
            }
        }
        for t in &woken {
            self.waiting_on.remove(t);
        }
        woken
    }

    /// `FUTEX_REQUEUE`: wakes up to `n_wake` waiters of `addr`, then moves up
    /// to `n_requeue` of the remaining ones (oldest first) to the end of
    /// `addr2`'s queue. Returns the woken threads and how many moved.
    pub fn requeue(
        &mut self,
        addr: u64,
        addr2: u64,
        n_wake: usize,
        n_requeue: usize,
    ) -> (Vec<T>, usize) {
        let woken = self.wake(addr, n_wake, BITSET_MATCH_ANY);
        if addr == addr2 {
            return (woken, 0);
        }
        let mut moved = VecDeque::new();
        if let Some(queue) = self.queues.get_mut(&addr) {
            let k = n_requeue.min(queue.len());
            moved = queue.drain(..k).collect();
            if queue.is_empty() {
                self.queues.remove(&addr);
            }
        }
        let count = moved.len();
        if count > 0 {
            for w in &moved {
                self.waiting_on.insert(w.thread, addr2);
            }
            self.queues.entry(addr2).or_default().extend(moved);
        }
        (woken, count)
    }

    /// Removes `thread` from whatever queue holds it (its wait timed out or
    /// was interrupted). Returns whether it was waiting.
    pub fn cancel(&mut self, thread: T) -> bool {
        let Some(addr) = self.waiting_on.remove(&thread) else {
            return false;
        };
        if let Some(queue) = self.queues.get_mut(&addr) {
            queue.retain(|w| w.thread != thread);
            if queue.is_empty() {
                self.queues.remove(&addr);
            }
        }
        true
    }

    /// Ends `thread`'s wait after its block ended `how`: takes it out of
    /// its queue if no wake did, and says what the wait returns. A wake
    /// always wins, so a woken thread never reports a timeout it did not
    /// need.
    pub fn end_wait(&mut self, thread: T, how: Unblocked) -> WaitEnd {
        let still_queued = self.cancel(thread);
        match (how, still_queued) {
            // Every up comes from a wake that dequeued the thread; one that
            // did not (still queued) is spurious, which a futex may be.
            (Unblocked::Up, _) => WaitEnd {
                result: Ok(()),
                absorb_up: false,
            },
            (Unblocked::TimedOut, true) => WaitEnd {
                result: Err(Errno::ETIMEDOUT),
                absorb_up: false,
            },
            (Unblocked::Interrupted, true) => WaitEnd {
                result: Err(Errno::EINTR),
                absorb_up: false,
            },
            (Unblocked::TimedOut | Unblocked::Interrupted, false) => WaitEnd {
                result: Ok(()),
                absorb_up: true,
            },
        }
    }

    /// The address `thread` waits on, if any.
    pub fn waiting_on(&self, thread: T) -> Option<u64> {
        self.waiting_on.get(&thread).copied()
    }

    /// How many threads wait on `addr`.
    pub fn waiters(&self, addr: u64) -> usize {
        self.queues.get(&addr).map_or(0, VecDeque::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn wake_releases_oldest_first_up_to_n() {
        let mut f = FutexTable::new();
        for t in 1..=4u32 {
            f.wait(0x1000, t, BITSET_MATCH_ANY).unwrap();
        }
        assert_eq!(f.wake(0x1000, 2, BITSET_MATCH_ANY), vec![1, 2]);
        assert_eq!(f.waiters(0x1000), 2);
        assert_eq!(f.wake(0x1000, usize::MAX, BITSET_MATCH_ANY), vec![3, 4]);
        assert_eq!(f.waiters(0x1000), 0);
        assert!(f.wake(0x1000, 1, BITSET_MATCH_ANY).is_empty());
    }

    #[test]
    fn addresses_are_separate() {
        let mut f = FutexTable::new();
        f.wait(0x1000, 1u32, BITSET_MATCH_ANY).unwrap();
        f.wait(0x1004, 2, BITSET_MATCH_ANY).unwrap();
        assert_eq!(f.wake(0x1004, 5, BITSET_MATCH_ANY), vec![2]);
        assert_eq!(f.waiting_on(1), Some(0x1000));
        assert_eq!(f.waiting_on(2), None);
    }

    #[test]
    fn bitsets_select_waiters() {
        let mut f = FutexTable::new();
        f.wait(0x2000, 1u32, 0b01).unwrap();
        f.wait(0x2000, 2, 0b10).unwrap();
        f.wait(0x2000, 3, 0b11).unwrap();
        assert_eq!(f.wake(0x2000, 5, 0b10), vec![2, 3]);
        assert_eq!(f.wake(0x2000, 5, 0), Vec::<u32>::new());
        assert_eq!(f.wake(0x2000, 5, 0b01), vec![1]);
    }

    #[test]
    fn bad_arguments_are_einval() {
        let mut f = FutexTable::new();
        assert_eq!(f.wait(0x1001, 1u32, 1), Err(Errno::EINVAL));
        assert_eq!(f.wait(0x1000, 1, 0), Err(Errno::EINVAL));
        f.wait(0x1000, 1, 1).unwrap();
        assert_eq!(f.wait(0x2000, 1, 1), Err(Errno::EINVAL));
    }

    #[test]
    fn requeue_wakes_then_moves_in_order() {
        let mut f = FutexTable::new();
        f.wait(0x3000, 9u32, BITSET_MATCH_ANY).unwrap();
        for t in 1..=5u32 {
            f.wait(0x2000, t, BITSET_MATCH_ANY).unwrap();
        }
        let (woken, moved) = f.requeue(0x2000, 0x3000, 1, 3);
        assert_eq!(woken, vec![1]);
        assert_eq!(moved, 3);
        assert_eq!(f.waiters(0x2000), 1);
        assert_eq!(f.waiting_on(2), Some(0x3000));
        // The old waiter of 0x3000 stays first, the moved ones follow in order.
        assert_eq!(f.wake(0x3000, 10, BITSET_MATCH_ANY), vec![9, 2, 3, 4]);
        assert_eq!(f.wake(0x2000, 10, BITSET_MATCH_ANY), vec![5]);
    }

    /// The caller's side: one counting semaphore per thread, upped for
    /// each thread a wake returns.
    struct Sems(BTreeMap<u32, u32>);

    impl Sems {
        fn up(&mut self, woken: Vec<u32>) {
            for t in woken {
                *self.0.entry(t).or_default() += 1;
            }
        }
        /// A down that finds the count zero would block.
        fn try_down(&mut self, t: u32) -> bool {
            let c = self.0.entry(t).or_default();
            let ok = *c > 0;
            *c = c.saturating_sub(1);
            ok
        }
    }

    #[test]
    fn a_wake_racing_a_timeout_wins_and_its_up_is_absorbed() {
        let mut f = FutexTable::new();
        let mut sems = Sems(BTreeMap::new());
        f.wait(0x1000, 1u32, BITSET_MATCH_ANY).unwrap();
        // Thread 1's block times out; before it takes the table's lock
        // again, another CPU wakes it (dequeue now, up right after).
        let woken = f.wake(0x1000, 1, BITSET_MATCH_ANY);
        let end = f.end_wait(1, Unblocked::TimedOut);
        assert_eq!(
            end,
            WaitEnd {
                result: Ok(()),
                absorb_up: true
            }
        );
        sems.up(woken);
        assert!(sems.try_down(1), "the absorbed up is there to take");
        // The next wait blocks, and a wake still reaches the thread.
        f.wait(0x1000, 1, BITSET_MATCH_ANY).unwrap();
        assert!(!sems.try_down(1), "no stale up: the next wait blocks");
        sems.up(f.wake(0x1000, 1, BITSET_MATCH_ANY));
        assert!(sems.try_down(1));
        assert_eq!(f.end_wait(1, Unblocked::Up).result, Ok(()));
        // ...and may wait again: it is in no queue.
        f.wait(0x1000, 1, BITSET_MATCH_ANY).unwrap();
    }

    #[test]
    fn ends_of_a_wait_that_no_wake_released() {
        let mut f = FutexTable::new();
        for (how, result) in [
            (Unblocked::TimedOut, Err(Errno::ETIMEDOUT)),
            (Unblocked::Interrupted, Err(Errno::EINTR)),
            (Unblocked::Up, Ok(())),
        ] {
            f.wait(0x1000, 1u32, BITSET_MATCH_ANY).unwrap();
            let end = f.end_wait(1, how);
            assert_eq!(
                end,
                WaitEnd {
                    result,
                    absorb_up: false
                },
                "{how:?}"
            );
            assert_eq!(f.waiting_on(1), None, "{how:?} leaves it in no queue");
            assert_eq!(f.waiters(0x1000), 0);
        }
    }

    #[test]
    fn cancel_removes_a_timed_out_waiter() {
        let mut f = FutexTable::new();
        f.wait(0x1000, 1u32, BITSET_MATCH_ANY).unwrap();
        f.wait(0x1000, 2, BITSET_MATCH_ANY).unwrap();
        assert!(f.cancel(1));
        assert!(!f.cancel(1));
        assert_eq!(f.wake(0x1000, 10, BITSET_MATCH_ANY), vec![2]);
        // A cancelled thread may wait again.
        f.wait(0x1000, 1, BITSET_MATCH_ANY).unwrap();
        assert_eq!(f.wake(0x1000, 10, BITSET_MATCH_ANY), vec![1]);
    }
}
