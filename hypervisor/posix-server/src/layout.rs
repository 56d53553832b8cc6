//! Where things live in the address space of a Linux component.
//!
//! | range | what |
//! |---|---|
//! | `0x40_0000`.. (as linked) | a non-PIE program |
//! | [`PIE_BASE`].. | a static PIE program |
//! | `native::LAZY_BASE` (1 GiB) | the server's heap, paged in by the roottask |
//! | [`MMAP_LO`]..[`MMAP_HI`] | where `mmap` places mappings (top-down) |
//! | [`ROM_BASE`]..[`ROM_END`] | boot modules lent read-only by the roottask |
//! | `hyper_abi::posix::PROGRAM_MAPPED` | the program's own (guest RAM, vCPU state pages); never ours |
//! | [`STACK_TOP`] - [`STACK_SIZE`].. | the main thread's stack, a guard below it |
//! | [`SERVER_BASE`]..`USER_END` | the server: image, thread UTCBs, start info |

pub const PIE_BASE: u64 = 0x5555_5540_0000;
pub const MMAP_LO: u64 = 0x2000_0000_0000;
pub const MMAP_HI: u64 = 0x5000_0000_0000;
pub const ROM_BASE: u64 = 0x6000_0000_0000;
pub const ROM_END: u64 = 0x6800_0000_0000;
pub const STACK_TOP: u64 = 0x7000_0000_0000;
pub const STACK_SIZE: u64 = 8 << 20;
pub const GUARD_SIZE: u64 = 1 << 20;
pub const SERVER_BASE: u64 = 0x7e00_0000_0000;
/// Thread slot `n`: the program thread's UTCB at `UTCB_BASE + n * 0x2000`,
/// its handler's one page above.
pub const UTCB_BASE: u64 = 0x7f00_0000_0000;
/// Handler stacks.
pub const HANDLER_STACK: usize = 64 * 1024;
/// The semaphore the start thread sleeps on once the program runs.
pub const IDLE_SEL: u64 = native::FREE_SEL;
/// The semaphore waiters for the process lock sleep on.
pub const PROCESS_LOCK_SEL: u64 = native::FREE_SEL + 1;
/// The semaphore waiters for the heap sleep on.
pub const HEAP_LOCK_SEL: u64 = native::FREE_SEL + 2;
/// Capability selectors of thread slot `n` start at `SLOT_SEL + n * SLOT_SELS`.
pub const SLOT_SEL: u64 = native::FREE_SEL_HIGH;
pub const SLOT_SELS: u64 = 128;
pub const MAX_THREADS: usize = 256;

pub fn thread_utcb(slot: usize) -> u64 {
    UTCB_BASE + slot as u64 * 0x2000
}

pub fn handler_utcb(slot: usize) -> u64 {
    thread_utcb(slot) + 0x1000
}
