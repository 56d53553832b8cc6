//! Runtime for native (no_std) user-level programs: the `_start` entry, console
//! output through the kernel, a heap, thread helpers, and the parent protocol
//! (how a component talks to the roottask that started it).
//!
//! Program layout every component sees (filled by the roottask):
//! - [`START_INFO`]: a read-only page with a [`StartInfo`].
//! - selector [`PARENT`]: the roottask's portal for this component.
//! - selectors [`EVT_BASE`]..: exception portals (to the roottask).
//! - selectors [`IRQ_BASE`]..: the interrupt semaphores the configuration grants.
//! - selectors from [`FREE_SEL`]: free for the program.
//! - for every CPU `c`, a block at [`cpu_portals`]`(c)`: exception portals and a
//!   parent portal served on that CPU (threads on other CPUs than the component's
//!   first use these: a portal is always called on its handler's CPU).
#![no_std]

extern crate alloc;

pub mod parent;
pub mod sync;

use core::fmt::{self, Write};
use hyper_abi::{syscall, Utcb};

pub const START_INFO: u64 = 0x0000_7fff_fffd_0000;
pub const UTCB: u64 = 0x0000_7fff_fffe_0000;
pub const STACK_TOP: u64 = 0x0000_7fff_fff0_0000;
pub const PARENT: u64 = 4;
pub const EVT_BASE: u64 = 8;
pub const IRQ_BASE: u64 = 64;
pub const FREE_SEL: u64 = 128;
/// The terminal component's semaphore: the roottask ups it when console input arrived.
pub const TERMINAL_SM: u64 = 63;
/// Per-CPU portal blocks (see [`cpu_portals`]).
pub const CPU_PORTALS: u64 = 0x1000;
/// Offset of the parent portal inside a CPU's block.
pub const CPU_PARENT: u64 = 40;
/// Selectors from here up are free for the program as well.
pub const FREE_SEL_HIGH: u64 = 0x2000;

/// First selector of CPU `cpu`'s portal block: exception portals at
/// `+ vector` (an event base), the parent portal at `+ CPU_PARENT`.
pub const fn cpu_portals(cpu: u32) -> u64 {
    CPU_PORTALS + cpu as u64 * 64
}
/// Window where delegated capabilities arrive (selectors 1024..2048).
pub const RECV_BASE: u64 = 1024;
pub const RECV_ORDER: u8 = 10;
/// Addresses in this range are backed lazily by the roottask's pager.
pub const LAZY_BASE: u64 = 0x0000_1000_0000_0000;
pub const LAZY_SIZE: u64 = 1 << 30;

/// What the roottask tells a component at start.
#[repr(C)]
pub struct StartInfo {
    pub name: [u8; 32],
    pub args: [u8; 256],
    pub cpu: u32,
    pub irq_count: u32,
    pub cpu_count: u32,
    pub _pad: u32,
    pub tsc_per_us: u64,
    /// Wall-clock time (seconds since 1970, from the RTC) when the TSC read `boot_tsc`.
    pub boot_epoch_s: u64,
    pub boot_tsc: u64,
}

impl StartInfo {
    pub fn get() -> &'static StartInfo {
        // SAFETY: the roottask maps a StartInfo page at START_INFO before the
        // component starts and never changes it.
        unsafe { &*(START_INFO as *const StartInfo) }
    }
    pub fn name(&self) -> &str {
        cstr(&self.name)
    }
    pub fn args(&self) -> &str {
        cstr(&self.args)
    }
    /// The value of `--key value` in the arguments.
    pub fn arg(&self, key: &str) -> Option<&str> {
        let mut it = self.args().split_whitespace();
        while let Some(w) = it.next() {
            if w.strip_prefix("--") == Some(key) {
                return it.next();
            }
        }
        None
    }
}

pub fn cstr(b: &[u8]) -> &str {
    let n = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    core::str::from_utf8(&b[..n]).unwrap_or("?")
}

static UTCB_ADDR: spin::Once<u64> = spin::Once::new();

/// The UTCB of the calling thread (programs here are single-threaded except for
/// portal handlers, which get their own via [`set_utcb`] semantics of their EC).
pub fn utcb() -> &'static mut Utcb {
    let a = *UTCB_ADDR.get().unwrap_or(&UTCB);
    // SAFETY: the kernel maps the EC's UTCB at this address for the thread's
    // lifetime; one thread uses one UTCB.
    unsafe { &mut *(a as *mut Utcb) }
}

/// Selects the UTCB address of the main thread (the roottask's differs).
pub fn set_utcb(addr: u64) {
    UTCB_ADDR.call_once(|| addr);
}

/// The UTCB of a handler EC whose UTCB lives at `addr`.
pub fn utcb_at(addr: u64) -> &'static mut Utcb {
    // SAFETY: as for `utcb`: the address is the calling EC's own UTCB.
    unsafe { &mut *(addr as *mut Utcb) }
}

pub struct Console;

static CONSOLE: spin::Mutex<()> = spin::Mutex::new(());

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_through(utcb(), s.as_bytes());
        Ok(())
    }
}

/// Prints `bytes` on the kernel console through the calling EC's UTCB `u`.
fn write_through(u: &mut Utcb, bytes: &[u8]) {
    for chunk in bytes.chunks(256) {
        for (word, part) in u.words.iter_mut().zip(chunk.chunks(8)) {
            let mut b = [0u8; 8];
            b[..part.len()].copy_from_slice(part);
            *word = u64::from_le_bytes(b);
        }
        let _ = syscall::console_write(chunk.len());
    }
}

pub fn print(args: fmt::Arguments) {
    let _g = CONSOLE.lock();
    let mut line = alloc::string::String::new();
    let _ = line.write_fmt(args);
    let _ = Console.write_str(&line);
}

/// Prints through the UTCB at `utcb_addr` (for portal handlers, which have their own).
pub fn print_at(utcb_addr: u64, args: fmt::Arguments) {
    let mut line = alloc::string::String::new();
    let _ = line.write_fmt(args);
    write_through(utcb_at(utcb_addr), line.as_bytes());
}

#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => { $crate::print(format_args!("{}\n", format_args!($($arg)*))) };
}

/// Ends the program: tells the parent and stops the thread.
pub fn exit(code: i32) -> ! {
    parent::exit(code);
    loop {
        let _ = syscall::ec_ctrl(0, hyper_abi::EcOp::Exit);
    }
}

pub mod heap {
    //! A fixed 1 MiB heap in the program's .bss. A program makes it its global
    //! allocator with [`crate::global_heap!`] (the [`crate::entry!`] macro does).
    use core::alloc::{GlobalAlloc, Layout};
    use linked_list_allocator::LockedHeap;

    static HEAP: LockedHeap = LockedHeap::empty();
    static mut AREA: [u8; 1 << 20] = [0; 1 << 20];

    pub fn init() {
        // SAFETY: called once at start, before any allocation; AREA is used only here.
        unsafe {
            HEAP.lock()
                .init(core::ptr::addr_of_mut!(AREA) as *mut u8, 1 << 20)
        };
    }

    /// The allocator handle a program installs as its `#[global_allocator]`.
    pub struct Heap;

    // SAFETY: forwards to the locked linked-list heap, which is a correct allocator.
    unsafe impl GlobalAlloc for Heap {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: the caller upholds GlobalAlloc's contract, which we pass on.
            unsafe { HEAP.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: as above.
            unsafe { HEAP.dealloc(ptr, layout) }
        }
    }
}

/// Makes the 1 MiB .bss heap the program's global allocator (call `heap::init` first thing).
#[macro_export]
macro_rules! global_heap {
    () => {
        #[global_allocator]
        static GLOBAL_HEAP: $crate::heap::Heap = $crate::heap::Heap;
    };
}

/// Defines `_start` for a program whose main is `fn main() -> i32`.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        $crate::global_heap!();
        #[no_mangle]
        pub extern "C" fn _start() -> ! {
            $crate::heap::init();
            let code: i32 = $main();
            $crate::exit(code)
        }
        #[panic_handler]
        fn panic(info: &core::panic::PanicInfo) -> ! {
            $crate::println!("{}: panic: {}", $crate::StartInfo::get().name(), info);
            $crate::exit(101)
        }
    };
}

/// A simple reproducible random number generator (xorshift64*).
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effects.
    unsafe { core::arch::x86_64::_rdtsc() }
}
