//! Hostile: an endless loop of `OUT TD_NOP` and CPUID, nothing but exits. The VMM
//! must stop it at its exit limit and report it; the guest never ends by itself.
#![no_std]
#![no_main]

use guest_tests::device::TD_NOP;
use guest_tests::{cpu, guest, println};

guest!(main);

fn main() {
    println!("flooding");
    let mut i: u32 = 0;
    loop {
        cpu::outl(TD_NOP, i);
        cpu::cpuid(i & 1, 0);
        i = i.wrapping_add(1);
    }
}
