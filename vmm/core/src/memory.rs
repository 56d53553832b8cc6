//! Guest-physical RAM as the VMM core sees it.
//!
//! Owns: the [`GuestMemory`] trait a host implements over whatever backs the
//! guest's RAM (an mmap on Linux, delegated frames on Tern). Must not touch:
//! devices; MMIO never reaches this trait.

use core::fmt;

/// Guest RAM `[0, size())`. Implementations are shared by all vCPU handler
/// threads, so they take `&self`.
pub trait GuestMemory: Sync {
    /// RAM size in bytes.
    fn size(&self) -> u64;

    /// Copies `buf.len()` bytes from guest-physical `gpa`.
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), OutOfRange>;

    /// Copies `data` to guest-physical `gpa`.
    fn write(&self, gpa: u64, data: &[u8]) -> Result<(), OutOfRange>;

    /// Fills `len` bytes at `gpa` with zeros.
    fn zero(&self, gpa: u64, len: u64) -> Result<(), OutOfRange> {
        const CHUNK: [u8; 512] = [0; 512];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(CHUNK.len() as u64);
            self.write(gpa + done, &CHUNK[..n as usize])?;
            done += n;
        }
        Ok(())
    }
}

/// An access outside guest RAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfRange {
    pub gpa: u64,
    pub len: u64,
}

impl fmt::Display for OutOfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "guest-physical range {:#x}+{:#x} is outside guest RAM",
            self.gpa, self.len
        )
    }
}

/// Checks that `[gpa, gpa + len)` lies inside `[0, size)`; for implementors.
pub fn check_range(size: u64, gpa: u64, len: usize) -> Result<(), OutOfRange> {
    let len = len as u64;
    match gpa.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(OutOfRange { gpa, len }),
    }
}

impl core::error::Error for OutOfRange {}
