//! The Linux personality's pure logic: what a static x86_64 Linux program
//! (musl, Rust std) sees, computed without touching memory, capabilities or
//! hardware.
//!
//! The posix-server reflects a program's system calls and page faults to
//! itself and uses this crate to decide the answers:
//!
//! * [`errno`] — Linux error numbers;
//! * [`nr`] — system call numbers and their names;
//! * [`memmap`] — the process's virtual memory bookkeeping (mmap, munmap,
//!   mprotect, mremap, brk, lazy backing with 4 KiB / 2 MiB blocks, fault
//!   classification);
//! * [`vfs`] — the per-process virtual file system and file descriptors;
//! * [`futex`] — futex wait queues;
//! * [`stack`] — the initial process stack (argv, envp, auxv).
//!
//! Must not touch: user memory (the caller copies buffers in and out),
//! kernel objects, time, or threads. Everything here runs and is tested on the
//! host.

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod errno;
pub mod futex;
pub mod memmap;
pub mod nr;
pub mod stack;
pub mod vfs;

pub use errno::Errno;
