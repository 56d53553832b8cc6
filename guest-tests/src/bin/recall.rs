//! Recall: the guest asks for vector 0x42 from another VMM thread after 50 ms
//! (`RECALL_IRQ`) and spins on a memory flag with IF = 1, making no exits; only a
//! recall of the running vCPU lets the VMM inject the vector whose handler sets the flag.
//! Then the same again [`REPEATS`] times with a 1 ms delay: every recall must arrive
//! soon. (The VMM's timer thread shares the CPU with this vCPU's handler at the same
//! priority, so this also checks that time in the guest counts as the handler's:
//! otherwise the timer thread only gets the CPU by chance.)
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU64, Ordering};
use guest_tests::device::{self, CMD_RECALL_IRQ};
use guest_tests::{check, cpu, fail, guest, println, trap};

guest!(main);

const VECTOR: u8 = 0x42;
const DELAY_MS: u32 = 50;
/// Further rounds, each with a 1 ms delay.
const REPEATS: u64 = 20;
/// Give up after this many spins (seconds natively, minutes under emulation). The
/// bound is a plain count: RDTSC may exit on some VMMs, and the loop must make none.
const GIVE_UP: u64 = 1 << 32;
static INTERRUPTS: AtomicU64 = AtomicU64::new(0);

fn on_interrupt(_frame: &mut trap::TrapFrame) {
    INTERRUPTS.fetch_add(1, Ordering::Release);
}

/// Asks for the vector after `delay_ms` and spins until it came; the spins.
fn recalled(round: u64, delay_ms: u32) -> u64 {
    device::command(CMD_RECALL_IRQ, u32::from(VECTOR), delay_ms);
    cpu::sti();
    let mut spins: u64 = 0;
    // A memory load and a counter: nothing here exits to the VMM.
    while INTERRUPTS.load(Ordering::Acquire) == round {
        spins += 1;
        if spins == GIVE_UP {
            cpu::cli();
            fail!("round {round}: no vector {VECTOR:#x} after {GIVE_UP} spins: was the vCPU recalled?");
        }
    }
    cpu::cli();
    spins
}

fn main() {
    device::require();
    trap::set_handler(VECTOR, Some(on_interrupt));
    let spins = recalled(0, DELAY_MS);
    check!(spins > 0, "the flag was set before the guest spun");
    println!("recalled and interrupted after {spins} spins");
    for round in 1..=REPEATS {
        recalled(round, 1);
    }
    let n = INTERRUPTS.load(Ordering::Acquire);
    check!(
        n == REPEATS + 1,
        "{n} interrupts for {} requests",
        REPEATS + 1
    );
    println!("{REPEATS} more recalls after 1 ms each, every one delivered");
}
