//! Input that reaches a device from outside the guest (network frames,
//! console bytes): a bounded queue plus a [`Wakeup`] that a poller thread
//! waits on.
//!
//! Owns: buffering and the wake-up handshake. Must not touch: the device
//! (producers never take a device lock, so a switch forwarding between two
//! VMs cannot deadlock with their vCPU threads).

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// A level-style "something arrived" flag with a blocking wait.
#[derive(Default)]
pub struct Wakeup {
    state: Mutex<WakeState>,
    cond: Condvar,
}

#[derive(Default)]
struct WakeState {
    pending: bool,
    closed: bool,
}

impl Wakeup {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn state(&self) -> MutexGuard<'_, WakeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn signal(&self) {
        self.state().pending = true;
        self.cond.notify_all();
    }

    /// Ends the poller: [`wait`](Self::wait) returns false from now on.
    pub fn close(&self) {
        self.state().closed = true;
        self.cond.notify_all();
    }

    /// Blocks until signalled (true, flag consumed) or closed (false).
    pub fn wait(&self) -> bool {
        let mut s = self.state();
        while !s.pending && !s.closed {
            s = self.cond.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        s.pending = false;
        !s.closed
    }
}

/// A bounded FIFO of `T` from producers on other threads; items beyond the
/// capacity are dropped (as a NIC drops frames when its ring is full).
pub struct Inbox<T> {
    items: Mutex<VecDeque<T>>,
    capacity: usize,
    wakeup: Arc<Wakeup>,
}

impl<T> Inbox<T> {
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Inbox {
            items: Mutex::new(VecDeque::new()),
            capacity,
            wakeup: Wakeup::new(),
        })
    }

    fn items(&self) -> MutexGuard<'_, VecDeque<T>> {
        self.items.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `items`, keeping what fits; returns how many were kept.
    pub fn push_all(&self, items: impl IntoIterator<Item = T>) -> usize {
        let kept = {
            let mut q = self.items();
            let before = q.len();
            let room = self.capacity.saturating_sub(before);
            q.extend(items.into_iter().take(room));
            q.len() - before
        };
        if kept > 0 {
            self.wakeup.signal();
        }
        kept
    }

    pub fn pop(&self) -> Option<T> {
        self.items().pop_front()
    }

    /// Puts an item back at the front (the guest had no buffer for it).
    pub fn unpop(&self, item: T) {
        self.items().push_front(item);
    }

    pub fn len(&self) -> usize {
        self.items().len()
    }

    pub fn is_empty(&self) -> bool {
        self.items().is_empty()
    }

    pub fn clear(&self) {
        self.items().clear();
    }

    pub fn wakeup(&self) -> &Arc<Wakeup> {
        &self.wakeup
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_fifo_drops_overflow_and_wakes() {
        let inbox = Inbox::new(3);
        assert_eq!(inbox.push_all([1, 2]), 2);
        assert_eq!(inbox.push_all([3, 4, 5]), 1);
        assert!(inbox.wakeup().wait());
        assert_eq!(inbox.pop(), Some(1));
        inbox.unpop(9);
        assert_eq!(inbox.pop(), Some(9));
        assert_eq!(inbox.len(), 2);
        inbox.wakeup().close();
        assert!(!inbox.wakeup().wait());
    }

    #[test]
    fn wait_blocks_until_another_thread_signals() {
        let inbox = Inbox::<u8>::new(4);
        let w = inbox.wakeup().clone();
        let t = std::thread::spawn(move || w.wait());
        std::thread::sleep(std::time::Duration::from_millis(20));
        inbox.push_all([7]);
        assert!(t.join().unwrap());
    }
}
