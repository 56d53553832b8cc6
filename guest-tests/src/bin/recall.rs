//! Recall: the guest asks for vector 0x42 from another VMM thread after 50 ms
//! (`RECALL_IRQ`) and spins on a memory flag with IF = 1, making no exits; only a
//! recall of the running vCPU lets the VMM inject the vector whose handler sets the flag.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU64, Ordering};
use guest_tests::device::{self, CMD_RECALL_IRQ};
use guest_tests::{check, cpu, fail, guest, println, trap};

guest!(main);

const VECTOR: u8 = 0x42;
const DELAY_MS: u32 = 50;
/// Give up after this many spins (seconds natively, minutes under emulation). The
/// bound is a plain count: RDTSC may exit on some VMMs, and the loop must make none.
const GIVE_UP: u64 = 1 << 32;
static FLAG: AtomicU64 = AtomicU64::new(0);

fn on_interrupt(_frame: &mut trap::TrapFrame) {
    FLAG.store(1, Ordering::Release);
}

fn main() {
    device::require();
    trap::set_handler(VECTOR, Some(on_interrupt));
    device::command(CMD_RECALL_IRQ, u32::from(VECTOR), DELAY_MS);
    cpu::sti();
    let mut spins: u64 = 0;
    // A memory load and a counter: nothing here exits to the VMM.
    while FLAG.load(Ordering::Acquire) == 0 {
        spins += 1;
        if spins == GIVE_UP {
            cpu::cli();
            fail!("no vector {VECTOR:#x} after {GIVE_UP} spins: was the vCPU recalled?");
        }
    }
    cpu::cli();
    check!(spins > 0, "the flag was set before the guest spun");
    println!("recalled and interrupted after {spins} spins");
}
