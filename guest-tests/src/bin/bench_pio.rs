//! Benchmark (not a test): 100,000 OUTs to `TD_NOP`, each an exit the VMM handles and
//! resumes; RDTSC before and after gives the cycles per round trip. Needs no test
//! device: on bare QEMU the port is unassigned and the OUTs do not exit anywhere.
#![no_std]
#![no_main]

use guest_tests::device::TD_NOP;
use guest_tests::{cpu, guest, println};

guest!(main);

const EXITS: u64 = 100_000;

fn main() {
    let start = cpu::rdtsc();
    for i in 0..EXITS {
        cpu::outl(TD_NOP, i as u32);
    }
    let cycles = cpu::rdtsc().wrapping_sub(start);
    let hundredths = cycles * 100 / EXITS;
    println!(
        "{EXITS} exits, {cycles} cycles, {}.{:02} cycles per round trip",
        hundredths / 100,
        hundredths % 100
    );
}
