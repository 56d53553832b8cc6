//! One doorbell per vCPU: how interrupt controllers, timers and the end of
//! the VM get a vCPU's handler thread to look again.
//!
//! Owns: the "something new" flag, the wait of a halted (or not yet
//! started) vCPU and the recall of a running one. Must not touch: what the
//! news is (the handler asks the interrupt controllers).

use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Duration;

type Recall = Box<dyn Fn() + Send + Sync>;

#[derive(Default)]
pub struct Doorbell {
    rung: Mutex<bool>,
    changed: Condvar,
    /// Recalls the running vCPU (its `Requester`), once it exists.
    recall: OnceLock<Recall>,
}

impl Doorbell {
    /// Installs the recall of the vCPU (once, from its handler thread).
    pub fn connect(&self, recall: Recall) {
        let _ = self.recall.set(recall);
        // News that came before the vCPU existed must still recall it.
        if *self.lock() {
            self.recall_now();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, bool> {
        self.rung.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn recall_now(&self) {
        if let Some(recall) = self.recall.get() {
            recall();
        }
    }

    /// Something new for this vCPU: wake its handler if it waits, recall
    /// the vCPU if it runs. Never blocks for long; callable from any thread.
    pub fn ring(&self) {
        *self.lock() = true;
        self.changed.notify_all();
        self.recall_now();
    }

    /// Waits until the bell rings (or `give_up()` says so, checked at least
    /// every 50 ms); clears the bell. Returns at once if it rang already.
    pub fn wait(&self, give_up: impl Fn() -> bool) {
        let mut rung = self.lock();
        while !*rung && !give_up() {
            rung = self
                .changed
                .wait_timeout(rung, Duration::from_millis(50))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        *rung = false;
    }

    /// Clears the bell without waiting.
    pub fn clear(&self) {
        *self.lock() = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    #[test]
    fn a_ring_before_the_wait_is_not_lost_and_recalls_once_connected() {
        let bell = Arc::new(Doorbell::default());
        bell.ring();
        let recalls = Arc::new(AtomicU32::new(0));
        let r = recalls.clone();
        bell.connect(Box::new(move || {
            r.fetch_add(1, Ordering::SeqCst);
        }));
        assert_eq!(recalls.load(Ordering::SeqCst), 1);
        bell.wait(|| false); // returns at once
        let other = bell.clone();
        let t = std::thread::spawn(move || other.ring());
        bell.wait(|| false);
        t.join().unwrap();
        assert_eq!(recalls.load(Ordering::SeqCst), 2);
        bell.wait(|| true); // gives up
    }
}
