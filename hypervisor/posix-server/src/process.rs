//! The state of the Linux process the server runs: its memory map, file system,
//! futex queues and threads, behind one lock that every handler takes.
//!
//! Owns: keeping the memory map and the real backing in step (asking the
//! roottask for memory when the map says a block must be backed, giving it back
//! when the map releases it), and safe copies of program memory.

use crate::roottask::{self, Caller, MapError};
use crate::usermem;
use alloc::collections::BTreeSet;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use hyper_abi::{mem_rights, Crd, CrdKind};
use posix::futex::FutexTable;
use posix::memmap::{Block, MemoryMap, Released};
use posix::vfs::Vfs;
use posix::Errno;

/// Where a new thread runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    pub cpu: u32,
    pub priority: u8,
}

/// One program thread (a slot of the thread table).
pub struct Thread {
    pub tid: i32,
    pub cpu: u32,
    /// `set_tid_address`/`CLONE_CHILD_CLEARTID`: zeroed and woken at exit.
    pub clear_child_tid: u64,
    pub alive: bool,
    pub sigmask: u64,
    /// Where this thread's next `clone` puts the new thread
    /// (`SYSCALL_NEXT_THREAD`); round robin, normal priority when `None`.
    pub next_thread: Option<Placement>,
    /// `prctl(PR_SET_NAME)`: up to 15 bytes, NUL-padded.
    pub name: [u8; 16],
}

pub struct Process {
    pub name: String,
    pub mem: MemoryMap,
    pub vfs: Vfs,
    pub futex: FutexTable<usize>,
    pub threads: Vec<Option<Thread>>,
    pub next_tid: i32,
    pub cpus: Vec<u32>,
    pub next_cpu: usize,
    pub priority: u8,
    /// System calls already reported as unsupported.
    logged: BTreeSet<u64>,
    pub sigactions: Vec<[u8; 32]>,
}

/// The process behind its lock.
struct Shared(Option<Process>);

// SAFETY: the only non-Send parts of a Process are the VFS backends, boxed as
// trait objects without a Send bound; the server's backends (`ConsoleLog`,
// `ModuleSource` over `&'static [u8]`) hold no thread-bound state, and all
// access goes through the mutex.
unsafe impl Send for Shared {}

static PROCESS: native::sync::Mutex<Shared> = native::sync::Mutex::new(Shared(None));
/// The UTCB through which log output of the current lock holder is printed.
static CONSOLE_UTCB: AtomicU64 = AtomicU64::new(native::UTCB);
static CONSOLE_CPU: AtomicU64 = AtomicU64::new(0);

/// Installs the process; `lock_sel` is a free selector for the lock's semaphore.
pub fn install(p: Process, lock_sel: u64) {
    PROCESS.init(lock_sel);
    PROCESS.lock().0 = Some(p);
}

/// Runs `f` with the process locked on behalf of `c`.
pub fn with<T>(c: Caller, f: impl FnOnce(&mut Process) -> T) -> T {
    let mut guard = PROCESS.lock();
    CONSOLE_UTCB.store(c.utcb, Ordering::Relaxed);
    CONSOLE_CPU.store(c.cpu as u64, Ordering::Relaxed);
    f(guard.0.as_mut().expect("process installed"))
}

/// Where log output goes now (the lock holder's UTCB).
pub fn console_utcb() -> u64 {
    CONSOLE_UTCB.load(Ordering::Relaxed)
}

/// The lock holder, for requests made from inside the file system.
pub fn lock_holder() -> Caller {
    Caller {
        utcb: CONSOLE_UTCB.load(Ordering::Relaxed),
        cpu: CONSOLE_CPU.load(Ordering::Relaxed) as u32,
    }
}

impl Process {
    pub fn new(name: String, mem: MemoryMap, vfs: Vfs, cpus: Vec<u32>, priority: u8) -> Self {
        Process {
            name,
            mem,
            vfs,
            futex: FutexTable::new(),
            threads: Vec::new(),
            next_tid: 1,
            cpus,
            next_cpu: 0,
            priority,
            logged: BTreeSet::new(),
            sigactions: vec![[0; 32]; 65],
        }
    }

    /// Attaches memory to a block the memory map asked for.
    pub fn back(&mut self, c: Caller, b: Block) -> Result<(), Errno> {
        let rights = mem_rights::R | mem_rights::W | if b.exec { mem_rights::X } else { 0 };
        match roottask::map(c, b.va, b.order, rights) {
            Ok(()) => self.mem.mark_backed(b.va, b.order),
            Err(MapError::Quota | MapError::PoolEmpty) => Err(Errno::ENOMEM),
            Err(MapError::Refused) => Err(Errno::EFAULT),
        }
    }

    /// Gives up the backing of ranges the memory map released.
    pub fn release(&mut self, c: Caller, released: Vec<Released>) {
        for r in released {
            roottask::unmap(c, r.va, r.pages);
        }
    }

    /// Makes `[addr, addr + len)` accessible (for writing if `write`) and backed.
    pub fn touch(&mut self, c: Caller, addr: u64, len: u64, write: bool) -> Result<(), Errno> {
        let (lo, hi) = hyper_abi::posix::PROGRAM_MAPPED;
        if addr < hi && addr.saturating_add(len) > lo {
            return program_mapped(addr, len, write);
        }
        for b in self.mem.ensure(addr, len, write)? {
            self.back(c, b)?;
        }
        Ok(())
    }

    pub fn copy_in(&mut self, c: Caller, addr: u64, len: usize) -> Result<Vec<u8>, Errno> {
        self.touch(c, addr, len as u64, false)?;
        let mut buf = vec![0; len];
        usermem::read(addr, &mut buf);
        Ok(buf)
    }

    pub fn copy_out(&mut self, c: Caller, addr: u64, data: &[u8]) -> Result<(), Errno> {
        self.touch(c, addr, data.len() as u64, true)?;
        usermem::write(addr, data);
        Ok(())
    }

    pub fn read_u32(&mut self, c: Caller, addr: u64) -> Result<u32, Errno> {
        let b = self.copy_in(c, addr, 4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn read_array<const N: usize>(&mut self, c: Caller, addr: u64) -> Result<[u8; N], Errno> {
        let b = self.copy_in(c, addr, N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(&b);
        Ok(a)
    }

    /// A NUL-terminated string of at most `max` bytes (a path: UTF-8 or ENOENT).
    pub fn read_path(&mut self, c: Caller, addr: u64) -> Result<String, Errno> {
        const MAX: u64 = 4096;
        let mut out = Vec::new();
        let mut at = addr;
        while (out.len() as u64) < MAX {
            let in_page = (4096 - (at & 0xfff)).min(MAX - out.len() as u64);
            let chunk = self.copy_in(c, at, in_page as usize)?;
            if let Some(n) = chunk.iter().position(|&b| b == 0) {
                out.extend_from_slice(&chunk[..n]);
                return String::from_utf8(out).map_err(|_| Errno::ENOENT);
            }
            out.extend_from_slice(&chunk);
            at += in_page;
        }
        Err(Errno::ENAMETOOLONG)
    }

    /// Reports an unsupported system call, once per number.
    pub fn unsupported(&mut self, c: Caller, nr: u64, what: &str) {
        if self.logged.insert(nr) {
            c.print(format_args!(
                "posix-server: {}: {} ({}) is not supported: answered {}",
                self.name,
                posix::nr::name(nr),
                nr,
                what
            ));
        }
    }

    /// Where the next thread that the thread in `slot` creates runs: as it
    /// asked, else round robin over the allowed CPUs at the component's
    /// priority.
    pub fn place_new_thread(&mut self, slot: usize) -> Placement {
        let asked = self.threads[slot]
            .as_mut()
            .and_then(|t| t.next_thread.take());
        asked.unwrap_or_else(|| Placement {
            cpu: self.pick_cpu(),
            priority: self.priority,
        })
    }

    /// `SYSCALL_NEXT_THREAD`: where the next thread of `slot` runs (`cpu`
    /// `u64::MAX`: round robin; `background` 1: one priority below the
    /// component's). Both `u64::MAX` withdraw the request.
    pub fn set_next_thread(
        &mut self,
        slot: usize,
        cpu: u64,
        background: u64,
    ) -> Result<u64, Errno> {
        let placement = match (cpu, background) {
            (u64::MAX, u64::MAX) => None,
            (cpu, background @ (0 | 1)) => {
                let cpu = match cpu {
                    u64::MAX => self.pick_cpu(),
                    c => match u32::try_from(c) {
                        Ok(c) if self.cpus.contains(&c) => c,
                        _ => return Err(Errno::EINVAL),
                    },
                };
                let priority = if background == 1 {
                    self.priority.saturating_sub(1).max(1)
                } else {
                    self.priority
                };
                Some(Placement { cpu, priority })
            }
            _ => return Err(Errno::EINVAL),
        };
        let t = self.threads[slot].as_mut().ok_or(Errno::ESRCH)?;
        t.next_thread = placement;
        Ok(0)
    }

    /// The CPU the next new thread runs on (round robin over the allowed ones).
    fn pick_cpu(&mut self) -> u32 {
        let cpu = self.cpus[self.next_cpu % self.cpus.len()];
        self.next_cpu += 1;
        cpu
    }

    pub fn live_threads(&self) -> usize {
        self.threads.iter().flatten().filter(|t| t.alive).count()
    }
}

/// Checks that the program itself mapped `[addr, addr + len)` (inside
/// `PROGRAM_MAPPED`, where the memory map has no say), writable if `write`:
/// e.g. a VMM reading a file into guest RAM. EFAULT otherwise.
fn program_mapped(addr: u64, len: u64, write: bool) -> Result<(), Errno> {
    let (lo, hi) = hyper_abi::posix::PROGRAM_MAPPED;
    let end = addr.checked_add(len).ok_or(Errno::EFAULT)?;
    if addr < lo || end > hi {
        return Err(Errno::EFAULT);
    }
    let need = mem_rights::R | if write { mem_rights::W } else { 0 };
    let mut page = addr >> 12;
    while page << 12 < end {
        let m = hyper_abi::syscall::lookup(Crd::mem(page, 0, 0)).map_err(|_| Errno::EFAULT)?;
        if m.kind() != CrdKind::Memory || m.rights() & need != need {
            return Err(Errno::EFAULT);
        }
        // the rest of the mapping that holds the page
        page = (m.base() + (1 << m.order())).max(page + 1);
    }
    Ok(())
}
