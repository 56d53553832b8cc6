//! Interrupt window: with IF = 0 the guest makes vector 0x41 pending (`IRQ_NOW`) and
//! keeps running (with exits) without receiving it; then `STI; NOP`: the interrupt
//! must arrive exactly after the NOP (STI's one-instruction shadow).
#![no_std]
#![no_main]

use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};
use guest_tests::device::{self, CMD_IRQ_NOW, TD_ID};
use guest_tests::{check, cpu, guest, println, trap};

guest!(main);

const VECTOR: u8 = 0x41;
static HITS: AtomicU64 = AtomicU64::new(0);
static INTERRUPTED_RIP: AtomicU64 = AtomicU64::new(0);

fn on_interrupt(frame: &mut trap::TrapFrame) {
    HITS.fetch_add(1, Ordering::Relaxed);
    INTERRUPTED_RIP.store(frame.rip, Ordering::Relaxed);
}

fn main() {
    device::require();
    check!(cpu::rflags() & 0x200 == 0, "IF is set at start");
    trap::set_handler(VECTOR, Some(on_interrupt));
    device::command(CMD_IRQ_NOW, u32::from(VECTOR), 0);
    for i in 0..1000u32 {
        if i.is_multiple_of(10) {
            cpu::inl(TD_ID); // an exit: a chance for a wrong injection
        }
        check!(
            HITS.load(Ordering::Relaxed) == 0,
            "vector {VECTOR:#x} arrived with IF = 0 (iteration {i})"
        );
    }
    let expected: u64;
    // SAFETY: STI; NOP takes the pending interrupt (the handler preserves all
    // registers); CLI masks interrupts again.
    unsafe {
        asm!("lea {e}, [rip + 2f]", "sti", "nop", "2:", "nop", "nop", "cli", e = out(reg) expected, options(nostack))
    };
    let hits = HITS.load(Ordering::Relaxed);
    check!(
        hits == 1,
        "the handler of vector {VECTOR:#x} ran {hits} times after STI, expected once"
    );
    let rip = INTERRUPTED_RIP.load(Ordering::Relaxed);
    check!(
        rip == expected,
        "the interrupt came at RIP {rip:#x}, expected {expected:#x} (after STI and one instruction)"
    );
    println!("vector {VECTOR:#x} held while IF = 0, delivered after STI + 1 instruction");
}
