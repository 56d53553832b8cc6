//! Guest RAM above 4 GiB: maps guest-physical `HIGH_RAM` (4 GiB) through a 2 MiB
//! window of the boot identity map, writes `HIGH_RAM_MAGIC ^ offset` into every 4 KiB
//! page there and reads it all back; the guest's own image (low RAM) must be intact
//! afterwards, so the high range is RAM of its own and not an alias of low RAM.
#![no_std]
#![no_main]

use guest_protocol::{HIGH_RAM, HIGH_RAM_MAGIC, HIGH_RAM_SIZE};
use guest_tests::{boot, check, cpu, guest, println};

guest!(main);

/// Virtual window (below 4 GiB, no RAM of ours) through which the high range is seen.
const WINDOW: u64 = 0x4000_0000;

/// A value in the guest's image at 1 MiB, checked after the writes.
static CANARY: u64 = 0x1234_5678_9abc_def0;

fn main() {
    let pde = boot::pd_entry(WINDOW);
    // SAFETY: `pde` is the identity map's entry for WINDOW, a range this guest does not
    // otherwise use; it now maps the 2 MiB page at HIGH_RAM (present, writable, 2 MiB).
    unsafe { pde.write_volatile(HIGH_RAM | 0x83) };
    cpu::invlpg(WINDOW);
    println!("writing {} pages at {HIGH_RAM:#x}", HIGH_RAM_SIZE / 4096);
    for offset in (0..HIGH_RAM_SIZE).step_by(4096) {
        // SAFETY: WINDOW + offset lies in the 2 MiB page mapped above.
        unsafe { ((WINDOW + offset) as *mut u64).write_volatile(HIGH_RAM_MAGIC ^ offset) };
    }
    for offset in (0..HIGH_RAM_SIZE).step_by(4096) {
        // SAFETY: as above.
        let got = unsafe { ((WINDOW + offset) as *const u64).read_volatile() };
        check!(
            got == HIGH_RAM_MAGIC ^ offset,
            "guest-physical {:#x} read {got:#x} after writing {:#x}",
            HIGH_RAM + offset,
            HIGH_RAM_MAGIC ^ offset
        );
    }
    // SAFETY: reading a static of the image.
    let canary = unsafe { core::ptr::read_volatile(&CANARY) };
    check!(
        canary == 0x1234_5678_9abc_def0,
        "low RAM changed ({canary:#x}): the high range aliases it"
    );
    println!("{} pages above 4 GiB read back", HIGH_RAM_SIZE / 4096);
}
