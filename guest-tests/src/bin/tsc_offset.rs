//! TSC under an offset: RDTSC is monotonic; after `TSC_ADVANCE` by 2^50 it has jumped
//! forward by at least that (and by less than 2^50 + 2^40) and keeps increasing.
#![no_std]
#![no_main]

use guest_tests::device::{self, CMD_TSC_ADVANCE};
use guest_tests::{check, cpu, guest, println};

guest!(main);

const ADVANCE: u64 = 1 << 50;

/// Reads the TSC `n` times; fails if it ever goes back; returns (first, last).
fn monotonic(n: u32, what: &str) -> (u64, u64) {
    let first = cpu::rdtsc();
    let mut last = first;
    for i in 0..n {
        let t = cpu::rdtsc();
        check!(
            t >= last,
            "{what}: RDTSC went back from {last:#x} to {t:#x} at read {i}"
        );
        last = t;
    }
    check!(
        last > first,
        "{what}: RDTSC stood still at {first:#x} over {n} reads"
    );
    (first, last)
}

fn main() {
    device::require();
    let (_, before) = monotonic(1000, "before the advance");
    device::command(CMD_TSC_ADVANCE, ADVANCE as u32, (ADVANCE >> 32) as u32);
    let (after, last) = monotonic(10_000, "after the advance");
    let jump = after.wrapping_sub(before);
    check!(
        (ADVANCE..ADVANCE + (1 << 40)).contains(&jump),
        "RDTSC jumped by {jump:#x} across TSC_ADVANCE {ADVANCE:#x} ({before:#x} -> {after:#x})"
    );
    if cpu::cpuid(0x8000_0001, 0)[3] & (1 << 27) != 0 {
        let (t, _) = cpu::rdtscp();
        check!(
            t >= last,
            "RDTSCP {t:#x} is behind RDTSC {last:#x}: the offset does not apply to it"
        );
    }
    println!("TSC jumped by {jump:#x} and stays monotonic");
}
