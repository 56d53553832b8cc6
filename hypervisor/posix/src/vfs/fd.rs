//! File descriptors: the numbers a program uses for its open files.
//!
//! Owns: which descriptor refers to which open file description (by index)
//! and its close-on-exec flag; allocation of the lowest free number.
//! Must not touch: the open file descriptions themselves (offsets, status
//! flags) — the file system keeps those, shared by duplicated descriptors.

use alloc::collections::BTreeMap;

use crate::Errno;

/// Descriptors per process (Linux's default `RLIMIT_NOFILE`).
pub const MAX_FDS: i32 = 1024;

/// One descriptor: the open file description it refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdEntry {
    /// Index of the open file description.
    pub file: usize,
    pub cloexec: bool,
}

/// The descriptor table of one process.
#[derive(Debug, Clone, Default)]
pub struct FdTable {
    slots: BTreeMap<i32, FdEntry>,
}

impl FdTable {
    pub fn new() -> FdTable {
        FdTable::default()
    }

    /// The entry of `fd`; EBADF if it is not open.
    pub fn get(&self, fd: i32) -> Result<FdEntry, Errno> {
        self.slots.get(&fd).copied().ok_or(Errno::EBADF)
    }

    pub fn get_mut(&mut self, fd: i32) -> Result<&mut FdEntry, Errno> {
        self.slots.get_mut(&fd).ok_or(Errno::EBADF)
    }

    /// The lowest free descriptor at or above `min`; EMFILE if none is left,
    /// EINVAL if `min` is out of range (as `F_DUPFD`).
    pub fn lowest_free(&self, min: i32) -> Result<i32, Errno> {
        if !(0..MAX_FDS).contains(&min) {
            return Err(Errno::EINVAL);
        }
        let mut candidate = min;
        for &fd in self.slots.range(min..).map(|(fd, _)| fd) {
            if fd != candidate {
                break;
            }
            candidate += 1;
        }
        if candidate >= MAX_FDS {
            return Err(Errno::EMFILE);
        }
        Ok(candidate)
    }

    /// Sets `fd` (which must be in range: EBADF) and returns what it
    /// referred to before, which the caller must close.
    pub fn set(&mut self, fd: i32, entry: FdEntry) -> Result<Option<FdEntry>, Errno> {
        if !(0..MAX_FDS).contains(&fd) {
            return Err(Errno::EBADF);
        }
        Ok(self.slots.insert(fd, entry))
    }

    /// Removes `fd`; EBADF if it is not open.
    pub fn remove(&mut self, fd: i32) -> Result<FdEntry, Errno> {
        self.slots.remove(&fd).ok_or(Errno::EBADF)
    }

    /// Open descriptors in order.
    pub fn fds(&self) -> impl Iterator<Item = (i32, FdEntry)> + '_ {
        self.slots.iter().map(|(&fd, &e)| (fd, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(file: usize) -> FdEntry {
        FdEntry {
            file,
            cloexec: false,
        }
    }

    #[test]
    fn lowest_free_fills_holes() {
        let mut t = FdTable::new();
        assert_eq!(t.lowest_free(0), Ok(0));
        for fd in [0, 1, 2, 4] {
            t.set(fd, e(fd as usize)).unwrap();
        }
        assert_eq!(t.lowest_free(0), Ok(3));
        assert_eq!(t.lowest_free(4), Ok(5));
        assert_eq!(t.lowest_free(10), Ok(10));
        assert_eq!(t.lowest_free(-1), Err(Errno::EINVAL));
        assert_eq!(t.lowest_free(MAX_FDS), Err(Errno::EINVAL));
        t.remove(1).unwrap();
        assert_eq!(t.lowest_free(0), Ok(1));
        assert_eq!(t.remove(1), Err(Errno::EBADF));
    }

    #[test]
    fn table_full_is_emfile() {
        let mut t = FdTable::new();
        for fd in 0..MAX_FDS {
            t.set(fd, e(0)).unwrap();
        }
        assert_eq!(t.lowest_free(0), Err(Errno::EMFILE));
        assert_eq!(t.set(MAX_FDS, e(0)), Err(Errno::EBADF));
        assert_eq!(t.set(5, e(7)), Ok(Some(e(0))));
        assert_eq!(t.get(5), Ok(e(7)));
    }
}
