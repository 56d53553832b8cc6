//! A mutex whose waiters block in the kernel instead of spinning.
//!
//! A spinning waiter can wait for ever: a holder on the same CPU with a lower
//! priority (or a portal handler running on a waiting component's time) never
//! gets the CPU back to release the lock. This mutex counts lockers in an atomic
//! (no hypercall when uncontended) and lets the others sleep on a semaphore,
//! which the unlocking thread ups (a "benaphore").

use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicU64, Ordering};
use hyper_abi::{syscall, SmOp};

pub struct Mutex<T> {
    /// Threads holding or waiting for the lock.
    lockers: AtomicU64,
    /// The semaphore waiters sleep on (0 until [`Mutex::init`]).
    sm: AtomicU64,
    inner: spin::Mutex<T>,
}

impl<T> Mutex<T> {
    pub const fn new(value: T) -> Self {
        Mutex {
            lockers: AtomicU64::new(0),
            sm: AtomicU64::new(0),
            inner: spin::Mutex::new(value),
        }
    }

    /// Creates the semaphore waiters sleep on at selector `sel`; before this,
    /// and if creating it fails, waiters spin.
    pub fn init(&self, sel: u64) {
        if syscall::create_sm(sel, 0, None).is_ok() {
            self.sm.store(sel, Ordering::Release);
        }
    }

    pub fn lock(&self) -> Guard<'_, T> {
        let sm = self.sm.load(Ordering::Acquire);
        if sm != 0 && self.lockers.fetch_add(1, Ordering::Acquire) > 0 {
            // the holder ups the semaphore once for us when it unlocks
            while syscall::sm_ctrl(sm, SmOp::Down, 0).is_err() {}
        }
        Guard {
            inner: Some(self.inner.lock()),
            lockers: &self.lockers,
            sm,
        }
    }
}

pub struct Guard<'a, T> {
    inner: Option<spin::MutexGuard<'a, T>>,
    lockers: &'a AtomicU64,
    /// The semaphore as it was when locking (0: spinning mode).
    sm: u64,
}

impl<T> Deref for Guard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.inner.as_ref().expect("held until drop")
    }
}

impl<T> DerefMut for Guard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.inner.as_mut().expect("held until drop")
    }
}

impl<T> Drop for Guard<'_, T> {
    fn drop(&mut self) {
        drop(self.inner.take());
        if self.sm != 0 && self.lockers.fetch_sub(1, Ordering::Release) > 1 {
            let _ = syscall::sm_ctrl(self.sm, SmOp::Up, 0);
        }
    }
}
