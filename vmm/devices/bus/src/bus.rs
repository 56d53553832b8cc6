//! Address-range routing of port I/O and MMIO accesses to devices.
//!
//! Owns: the range table and its overlap rule. Must not touch: what a device
//! does with an access, or what an access to no device means (the machine
//! decides: ports read all ones, MMIO may fault).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// A device model reached through a [`Bus`]. `offset` is relative to the
/// base of the range the device was inserted at; `data.len()` is the access
/// size (1, 2, 4 or 8; string and SSE accesses are split by the caller).
pub trait BusDevice: Send {
    fn read(&mut self, offset: u64, data: &mut [u8]);
    fn write(&mut self, offset: u64, data: &[u8]);
}

/// A device shared between the bus and whoever else needs it.
pub type SharedDevice = Arc<Mutex<dyn BusDevice>>;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BusError {
    #[error("range {base:#x}+{len:#x} is empty or wraps around; give a length of at least 1")]
    BadRange { base: u64, len: u64 },
    #[error(
        "range {base:#x}+{len:#x} overlaps the device already at {other:#x}; move one of them"
    )]
    Overlap { base: u64, len: u64, other: u64 },
}

struct Entry {
    len: u64,
    device: SharedDevice,
}

/// One address space (port I/O or MMIO) of the machine.
#[derive(Default)]
pub struct Bus {
    ranges: BTreeMap<u64, Entry>,
}

impl Bus {
    pub fn new() -> Self {
        Self::default()
    }

    /// Routes `[base, base + len)` to `device`.
    pub fn insert(&mut self, base: u64, len: u64, device: SharedDevice) -> Result<(), BusError> {
        let end = base
            .checked_add(len)
            .filter(|_| len > 0)
            .ok_or(BusError::BadRange { base, len })?;
        let below = self.ranges.range(..end).next_back();
        if let Some((&other, e)) = below {
            if other + e.len > base {
                return Err(BusError::Overlap { base, len, other });
            }
        }
        self.ranges.insert(base, Entry { len, device });
        Ok(())
    }

    /// The device covering `addr` and the offset into its range.
    pub fn find(&self, addr: u64) -> Option<(&SharedDevice, u64)> {
        let (&base, e) = self.ranges.range(..=addr).next_back()?;
        (addr - base < e.len).then_some((&e.device, addr - base))
    }

    /// Reads through the device at `addr`; `false` (and `data` untouched) if
    /// no device covers it.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.find(addr) {
            Some((dev, offset)) => {
                lock(dev).read(offset, data);
                true
            }
            None => false,
        }
    }

    /// Writes through the device at `addr`; `false` if no device covers it.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.find(addr) {
            Some((dev, offset)) => {
                lock(dev).write(offset, data);
                true
            }
            None => false,
        }
    }
}

/// Locks a device even if another thread panicked while holding it (device
/// state stays usable; a panic is already a bug report of its own).
pub fn lock(dev: &SharedDevice) -> std::sync::MutexGuard<'_, dyn BusDevice + 'static> {
    dev.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Reg(Vec<(u64, Vec<u8>)>);
    impl BusDevice for Reg {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            self.0.push((offset, data.to_vec()));
        }
    }

    fn reg() -> Arc<Mutex<Reg>> {
        Arc::new(Mutex::new(Reg(Vec::new())))
    }

    #[test]
    fn routes_by_range_with_relative_offsets() {
        let mut bus = Bus::new();
        let a = reg();
        bus.insert(0x3f8, 8, a.clone()).unwrap();
        bus.insert(0x400, 4, reg()).unwrap();
        let mut b = [0u8; 1];
        assert!(bus.read(0x3fd, &mut b));
        assert_eq!(b, [5]);
        assert!(bus.write(0x3f8, &[0x41]));
        assert_eq!(a.lock().unwrap().0, vec![(0, vec![0x41])]);
        assert!(!bus.read(0x3f7, &mut b));
        assert!(!bus.read(0x400 + 4, &mut b));
        assert!(bus.read(0x403, &mut b));
    }

    #[test]
    fn refuses_overlaps_and_empty_ranges() {
        let mut bus = Bus::new();
        bus.insert(0x100, 0x10, reg()).unwrap();
        for (base, len) in [(0xf8, 0x9), (0x10f, 1), (0x100, 0x10), (0x0, 0x1000)] {
            assert_eq!(
                bus.insert(base, len, reg()),
                Err(BusError::Overlap {
                    base,
                    len,
                    other: 0x100
                })
            );
        }
        assert_eq!(
            bus.insert(0x200, 0, reg()),
            Err(BusError::BadRange {
                base: 0x200,
                len: 0
            })
        );
        assert!(bus.insert(u64::MAX, 2, reg()).is_err());
        bus.insert(0xf0, 0x10, reg()).unwrap();
        bus.insert(0x110, 0x10, reg()).unwrap();
    }
}
