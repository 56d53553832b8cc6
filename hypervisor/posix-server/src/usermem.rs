//! Access to the Linux program's memory, which shares the server's address
//! space. The only place that dereferences program addresses.
//!
//! Callers first make the range accessible and backed
//! ([`crate::process::Process::touch`]) and hold the process lock while copying,
//! so no other thread can unmap it in between.

/// Copies `buf.len()` bytes from program address `addr`.
pub fn read(addr: u64, buf: &mut [u8]) {
    // SAFETY: the caller has checked `[addr, addr + len)` against the memory map
    // and backed it, and holds the process lock (so it stays mapped); program
    // memory is plain bytes that the program may change at any time, so we copy
    // it as bytes and never form references to it.
    unsafe { core::ptr::copy_nonoverlapping(addr as *const u8, buf.as_mut_ptr(), buf.len()) }
}

/// Copies `data` to program address `addr`.
pub fn write(addr: u64, data: &[u8]) {
    // SAFETY: as for `read`; the range is backed by writable memory.
    unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), addr as *mut u8, data.len()) }
}
