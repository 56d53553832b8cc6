//! The charge-tracking wrapper every [`VcpuState`](crate::VcpuState) field lives in.
//!
//! Owns: one value plus one "charged" mark. A field is *charged* when the VMM
//! changed it since the last exit; only charged fields are written back to the
//! vCPU when it resumes. Must not touch: anything backend-specific.

/// A state field with a charge mark.
///
/// Reading never charges. [`charge`](Self::charge) (and
/// [`update`](Self::update)) store a value and mark the field so the backend
/// writes it back on the next resume; [`discharge`](Self::discharge) drops the
/// mark. Backends fill fields from an exit with [`load`](Self::load), which
/// leaves the mark alone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Charged<T> {
    value: T,
    charged: bool,
}

impl<T> Charged<T> {
    /// A discharged field holding `value`.
    pub const fn new(value: T) -> Self {
        Self {
            value,
            charged: false,
        }
    }

    /// The current value (as loaded from the last exit or as charged since).
    pub fn get(&self) -> &T {
        &self.value
    }

    /// Stores `value` and marks the field for write-back.
    pub fn charge(&mut self, value: T) {
        self.value = value;
        self.charged = true;
    }

    /// Changes the value in place and marks the field for write-back.
    pub fn update<R>(&mut self, change: impl FnOnce(&mut T) -> R) -> R {
        self.charged = true;
        change(&mut self.value)
    }

    /// Whether the field is marked for write-back.
    pub fn charged(&self) -> bool {
        self.charged
    }

    /// Drops the write-back mark; the value stays.
    pub fn discharge(&mut self) {
        self.charged = false;
    }

    /// Backend side: stores a value read from the vCPU without charging it.
    pub fn load(&mut self, value: T) {
        self.value = value;
    }

    /// Backend side: the value for in-place loading, without charging.
    pub fn load_mut(&mut self) -> &mut T {
        &mut self.value
    }
}

impl<T: Copy> Charged<T> {
    /// A copy of the current value.
    pub fn value(&self) -> T {
        self.value
    }
}
