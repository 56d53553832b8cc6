//! Two vCPUs at once: vCPU 1 starts at the entry with its number (README.md section 1);
//! the two play 1000 rounds of ping-pong through shared memory, then each counts up
//! its own counter until both have seen the other's advance by 100,000.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU64, Ordering};
use guest_tests::{check, cpu, fail, guest, println};

guest!(main, secondary);

const ROUNDS: u64 = 1000;
const ADVANCE: u64 = 100_000;
/// Give up after this many TSC cycles (tens of seconds on any clock rate).
const GIVE_UP: u64 = 1 << 36;

static ONLINE: AtomicU64 = AtomicU64::new(0);
static TURN: AtomicU64 = AtomicU64::new(0);
static COUNTERS: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];
static DONE: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

/// Spins until `ready()`; fails the test with `what` after GIVE_UP cycles.
fn wait(what: &str, ready: impl Fn() -> bool) {
    let start = cpu::rdtsc();
    while !ready() {
        if cpu::rdtsc().wrapping_sub(start) > GIVE_UP {
            fail!("timed out waiting for {what}");
        }
        cpu::pause();
    }
}

/// Ping-pong (vCPU `me` moves on turns of its parity), then counting; the same on
/// both vCPUs.
fn play(me: usize) {
    for round in 0..ROUNDS {
        let mine = 2 * round + me as u64;
        wait("the other vCPU's ping-pong turn", || {
            TURN.load(Ordering::Acquire) == mine
        });
        TURN.store(mine + 1, Ordering::Release);
    }
    let other = &COUNTERS[1 - me];
    let seen = other.load(Ordering::Relaxed);
    let start = cpu::rdtsc();
    let mut satisfied = false;
    // Both keep counting until both have seen the other advance by ADVANCE.
    loop {
        COUNTERS[me].fetch_add(1, Ordering::Relaxed);
        if !satisfied && other.load(Ordering::Relaxed).wrapping_sub(seen) >= ADVANCE {
            satisfied = true;
            DONE[me].store(1, Ordering::Release);
        }
        if satisfied && DONE[1 - me].load(Ordering::Acquire) == 1 {
            return;
        }
        if cpu::rdtsc().wrapping_sub(start) > GIVE_UP {
            fail!(
                "vCPU {me}: the other vCPU's counter stopped at {}",
                other.load(Ordering::Relaxed)
            );
        }
    }
}

fn main() {
    wait(
        "vCPU 1 to come online (does the VMM start 2 vCPUs?)",
        || ONLINE.load(Ordering::Acquire) == 1,
    );
    println!("vCPU 1 online");
    play(0);
    let (c0, c1) = (
        COUNTERS[0].load(Ordering::Relaxed),
        COUNTERS[1].load(Ordering::Relaxed),
    );
    check!(
        c0 >= ADVANCE && c1 >= ADVANCE,
        "counters {c0} and {c1} below {ADVANCE}"
    );
    println!("{ROUNDS} ping-pong rounds; counters advanced concurrently ({c0}, {c1})");
}

fn secondary(vcpu: u32) {
    if vcpu != 1 {
        return; // parked by the runtime
    }
    ONLINE.store(1, Ordering::Release);
    play(1);
}
