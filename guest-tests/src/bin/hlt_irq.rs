//! HLT woken by an injected interrupt: the guest asks for vector 0x40 on its next
//! HLT (`IRQ_ON_HLT`), runs `STI; HLT`, and the handler must run once, interrupting
//! the instruction right after HLT.
#![no_std]
#![no_main]

use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};
use guest_tests::device::{self, CMD_IRQ_ON_HLT};
use guest_tests::{check, guest, println, trap};

guest!(main);

const VECTOR: u8 = 0x40;
static HITS: AtomicU64 = AtomicU64::new(0);
static INTERRUPTED_RIP: AtomicU64 = AtomicU64::new(0);

fn on_interrupt(frame: &mut trap::TrapFrame) {
    HITS.fetch_add(1, Ordering::Relaxed);
    INTERRUPTED_RIP.store(frame.rip, Ordering::Relaxed);
}

fn main() {
    device::require();
    trap::set_handler(VECTOR, Some(on_interrupt));
    device::command(CMD_IRQ_ON_HLT, u32::from(VECTOR), 0);
    check!(
        HITS.load(Ordering::Relaxed) == 0,
        "vector {VECTOR:#x} arrived before HLT (IF = 0)"
    );
    let after_hlt: u64;
    // SAFETY: STI; HLT waits for the interrupt, whose handler (trap.rs) preserves all
    // registers; CLI right after masks interrupts again.
    unsafe {
        asm!("lea {a}, [rip + 2f]", "sti", "hlt", "2:", "cli", a = out(reg) after_hlt, options(nostack))
    };
    let hits = HITS.load(Ordering::Relaxed);
    check!(
        hits == 1,
        "the handler of vector {VECTOR:#x} ran {hits} times, expected once"
    );
    let rip = INTERRUPTED_RIP.load(Ordering::Relaxed);
    check!(
        rip == after_hlt,
        "the interrupt came at RIP {rip:#x}, expected {after_hlt:#x} (after HLT)"
    );
    println!("HLT woken by vector {VECTOR:#x}");
}
