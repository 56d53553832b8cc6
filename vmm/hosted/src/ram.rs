//! Guest RAM as an anonymous host mapping.
//!
//! Owns: the mmap backing guest-physical `[0, size)` and the only `unsafe`
//! of the hosted VMM that touches it. Must not touch: KVM (the caller maps
//! it into the VM).

use std::io;
use std::ptr;

use vmm_core::memory::{check_range, GuestMemory, OutOfRange};

/// Anonymous, zeroed, page-aligned host memory that backs guest RAM.
pub struct HostRam {
    base: *mut u8,
    size: u64,
}

// SAFETY: the mapping is plain memory owned by this value; every access goes
// through `read`/`write`, which copy bytes without creating references into
// the mapping, so concurrent use from several vCPU threads (and by the guest
// itself) cannot violate Rust's aliasing rules.
unsafe impl Send for HostRam {}
// SAFETY: see `Send`.
unsafe impl Sync for HostRam {}

impl HostRam {
    /// Maps `size` bytes (a multiple of 4 KiB).
    pub fn new(size: u64) -> io::Result<Self> {
        // SAFETY: an anonymous private mapping at a kernel-chosen address has
        // no preconditions; the result is checked below.
        let base = unsafe {
            libc::mmap(
                ptr::null_mut(),
                size as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(HostRam {
            base: base.cast(),
            size,
        })
    }

    /// The host address of guest-physical 0 (for the KVM memory slot).
    pub fn host_address(&self) -> *mut u8 {
        self.base
    }
}

impl Drop for HostRam {
    fn drop(&mut self) {
        // SAFETY: `base`/`size` describe the mapping made in `new`; nothing
        // uses it after drop (the KVM VM that maps it is dropped first).
        unsafe { libc::munmap(self.base.cast(), self.size as usize) };
    }
}

impl GuestMemory for HostRam {
    fn size(&self) -> u64 {
        self.size
    }

    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), OutOfRange> {
        check_range(self.size, gpa, buf.len())?;
        // SAFETY: the range lies inside the mapping (checked above) and
        // `buf` is a distinct Rust buffer.
        unsafe {
            ptr::copy_nonoverlapping(self.base.add(gpa as usize), buf.as_mut_ptr(), buf.len())
        };
        Ok(())
    }

    fn write(&self, gpa: u64, data: &[u8]) -> Result<(), OutOfRange> {
        check_range(self.size, gpa, data.len())?;
        // SAFETY: as in `read`.
        unsafe { ptr::copy_nonoverlapping(data.as_ptr(), self.base.add(gpa as usize), data.len()) };
        Ok(())
    }
}
