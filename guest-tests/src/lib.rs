//! Runtime of the bare-metal test guests (README.md has the guest <-> VMM protocol).
//!
//! A guest binary is `#![no_std] #![no_main]`, calls [`guest!`] with its test function
//! and fails through [`fail!`]/[`check!`]; returning from the test prints PASS.
//! The boot path (boot.rs) brings every vCPU to long mode and calls `guest_entry`.
#![no_std]

pub mod boot;
pub mod console;
pub mod cpu;
pub mod device;
pub mod pci;
pub mod trap;
pub mod virtq;

use core::sync::atomic::{AtomicBool, Ordering};

/// Prints one line `NAME: ...` on COM1.
#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => { $crate::console::line(format_args!($($arg)*)) };
}

/// Ends the test with `guest-test NAME: FAIL: ...`.
#[macro_export]
macro_rules! fail {
    ($($arg:tt)*) => { $crate::console::fail(format_args!($($arg)*)) };
}

/// Fails the test with the message unless `cond` holds.
#[macro_export]
macro_rules! check {
    ($cond:expr, $($arg:tt)*) => {
        if !$cond {
            $crate::fail!($($arg)*);
        }
    };
}

/// Defines the guest's entry: `guest!(main)` runs `fn main()` on vCPU 0 and parks the
/// other vCPUs; `guest!(main, secondary)` also runs `fn secondary(vcpu: u32)` on every
/// vCPU n >= 1. PASS is printed when `main` returns.
#[macro_export]
macro_rules! guest {
    ($main:path) => {
        $crate::guest!($main, $crate::park_secondary);
    };
    ($main:path, $secondary:path) => {
        #[no_mangle]
        extern "C" fn guest_main(vcpu: u32) -> ! {
            $crate::run(env!("CARGO_BIN_NAME"), vcpu, $main, $secondary)
        }

        #[panic_handler]
        fn panic(info: &core::panic::PanicInfo) -> ! {
            $crate::fail!("panic: {}", info.message())
        }
    };
}

extern "C" {
    /// Defined by [`guest!`] in the binary.
    fn guest_main(vcpu: u32) -> !;
}

static IDT_READY: AtomicBool = AtomicBool::new(false);

/// Called by boot.rs on every vCPU, in long mode, on its own stack.
#[no_mangle]
extern "C" fn guest_entry(vcpu: u32) -> ! {
    if vcpu == 0 {
        trap::init();
        IDT_READY.store(true, Ordering::Release);
    } else {
        while !IDT_READY.load(Ordering::Acquire) {
            cpu::pause();
        }
        trap::load();
    }
    // SAFETY: `guest_main` is the binary's entry defined by `guest!`.
    unsafe { guest_main(vcpu) }
}

/// Runs the test: `main` on vCPU 0 (then PASS), `secondary` on the others.
pub fn run(name: &'static str, vcpu: u32, main: fn(), secondary: fn(u32)) -> ! {
    if vcpu == 0 {
        console::set_name(name);
        main();
        console::pass()
    }
    secondary(vcpu);
    cpu::halt_forever()
}

/// The default for vCPUs n >= 1: stop for good.
pub fn park_secondary(_vcpu: u32) {
    cpu::halt_forever()
}
