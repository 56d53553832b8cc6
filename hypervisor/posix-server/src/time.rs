//! Clocks of the Linux program: monotonic time from the TSC, wall-clock time
//! from the RTC reading the roottask took at boot plus the TSC since then.

use native::StartInfo;

fn tsc_per_us() -> u64 {
    StartInfo::get().tsc_per_us.max(1)
}

fn ticks_to_ns(ticks: u64) -> u64 {
    (ticks as u128 * 1000 / tsc_per_us() as u128) as u64
}

/// Nanoseconds since boot.
pub fn monotonic_ns() -> u64 {
    ticks_to_ns(native::rdtsc())
}

/// Nanoseconds since 1970.
pub fn realtime_ns() -> u64 {
    let info = StartInfo::get();
    let since = ticks_to_ns(native::rdtsc().saturating_sub(info.boot_tsc));
    info.boot_epoch_s
        .saturating_mul(1_000_000_000)
        .saturating_add(since)
}

pub const CLOCK_REALTIME: u64 = 0;
pub const CLOCK_MONOTONIC: u64 = 1;
pub const CLOCK_PROCESS_CPUTIME_ID: u64 = 2;
pub const CLOCK_THREAD_CPUTIME_ID: u64 = 3;
pub const CLOCK_MONOTONIC_RAW: u64 = 4;
pub const CLOCK_REALTIME_COARSE: u64 = 5;
pub const CLOCK_MONOTONIC_COARSE: u64 = 6;
pub const CLOCK_BOOTTIME: u64 = 7;

/// The time of `clock` in nanoseconds, or None for a clock we do not have.
pub fn now_ns(clock: u64) -> Option<u64> {
    match clock {
        CLOCK_REALTIME | CLOCK_REALTIME_COARSE => Some(realtime_ns()),
        CLOCK_MONOTONIC
        | CLOCK_MONOTONIC_RAW
        | CLOCK_MONOTONIC_COARSE
        | CLOCK_BOOTTIME
        | CLOCK_PROCESS_CPUTIME_ID
        | CLOCK_THREAD_CPUTIME_ID => Some(monotonic_ns()),
        _ => None,
    }
}

/// A `struct timespec` as bytes.
pub fn timespec(ns: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&(ns / 1_000_000_000).to_le_bytes());
    b[8..].copy_from_slice(&(ns % 1_000_000_000).to_le_bytes());
    b
}

/// Nanoseconds of a `struct timespec`, or None if malformed.
pub fn from_timespec(b: &[u8; 16]) -> Option<u64> {
    let sec = i64::from_le_bytes(b[..8].try_into().ok()?);
    let nsec = i64::from_le_bytes(b[8..].try_into().ok()?);
    if sec < 0 || !(0..1_000_000_000).contains(&nsec) {
        return None;
    }
    Some(
        (sec as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(nsec as u64),
    )
}
