//! Output on COM1 (THR writes only) and the verdict on the exit port 0xf4, in the
//! exact form README.md section 2 specifies.
//!
//! Owns: ports 0x3f8 (writes) and 0xf4, and the guest's name.
//! Must not touch: any other port or the UART's other registers.

use crate::cpu;
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
pub use guest_protocol::{COM1, EXIT_FAIL, EXIT_PASS, EXIT_PORT};

static NAME_PTR: AtomicPtr<u8> = AtomicPtr::new(core::ptr::null_mut());
static NAME_LEN: AtomicUsize = AtomicUsize::new(0);
static LOCK: AtomicBool = AtomicBool::new(false);

/// Records the guest's name (the binary name) for every line it prints.
pub fn set_name(name: &'static str) {
    NAME_LEN.store(name.len(), Ordering::Relaxed);
    NAME_PTR.store(name.as_ptr().cast_mut(), Ordering::Release);
}

/// The guest's name, "guest" before [`set_name`].
pub fn name() -> &'static str {
    let p = NAME_PTR.load(Ordering::Acquire);
    if p.is_null() {
        return "guest";
    }
    // SAFETY: `p` and the length come from a `&'static str` stored by `set_name`.
    unsafe {
        core::str::from_utf8_unchecked(core::slice::from_raw_parts(
            p,
            NAME_LEN.load(Ordering::Relaxed),
        ))
    }
}

struct Com1;

impl Write for Com1 {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            cpu::outb(COM1, b);
        }
        Ok(())
    }
}

/// Prints one line `NAME: text` (vCPUs take turns line by line).
pub fn line(args: fmt::Arguments) {
    while LOCK.swap(true, Ordering::Acquire) {
        cpu::pause();
    }
    let _ = writeln!(Com1, "{}: {}", name(), args);
    LOCK.store(false, Ordering::Release);
}

/// Prints `guest-test NAME: PASS` and writes PASS to the exit port.
pub fn pass() -> ! {
    let _ = writeln!(Com1, "guest-test {}: PASS", name());
    cpu::outb(EXIT_PORT, EXIT_PASS);
    cpu::halt_forever()
}

/// Prints `guest-test NAME: FAIL: reason` and writes FAIL to the exit port. Takes no
/// lock: it may run inside an exception handler that interrupted a printer.
pub fn fail(reason: fmt::Arguments) -> ! {
    let _ = writeln!(Com1, "guest-test {}: FAIL: {}", name(), reason);
    cpu::outb(EXIT_PORT, EXIT_FAIL);
    cpu::halt_forever()
}
