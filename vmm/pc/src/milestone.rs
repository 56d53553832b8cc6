//! Boot milestones, for benchmarks (`milestones = true` in the VM
//! configuration): how far the VMM process had come when a point of the
//! boot was reached, as wall time and as TSC ticks since the VMM started,
//! with the exits counted until then.
//!
//! The guest marks milestone N by writing the byte N to port [`PORT`]
//! (0xE80, 3712; a busybox init: `printf '\001' | dd of=/dev/port bs=1
//! seek=3712 count=1`). The machine marks its own: [`Mark::RamBacked`] once
//! guest RAM is backed, [`Mark::GuestEntry`] just before the boot vCPU's
//! first instruction. Each milestone prints once, the first time it is
//! reached, as lines on the VMM's standard error:
//!
//! ```text
//! tern-vmm: milestone guest-1: 5123.456 ms, 5123456789 TSC ticks since the VMM started; vCPUs idle 3000.000 ms
//! tern-vmm: milestone guest-1: exits io: 1234
//! tern-vmm: milestone guest-1: exits total: 2000
//! ```
//!
//! The start is taken by [`note_vmm_start`] at the top of the VMM's `main`
//! (or, if it never ran, when the first [`Milestones`] is made). Under QEMU
//! `-icount shift=0` the TSC counts retired instructions, so the ticks are
//! a deterministic measure of the work done; QEMU skips the time in which
//! every CPU idles, which is why the time the vCPUs spent idle (halted or
//! waiting for a SIPI, summed over vCPUs; measured only with milestones
//! on) is in the report too.
//!
//! Owns: the VMM's start, which milestones were reached, the vCPUs' idle
//! time and the report.
//! Must not touch: the exit counters (the machine keeps them) or the guest.

use std::collections::BTreeSet;
use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use vmm_core::ExitCounters;

use crate::devices::host_tsc;

/// The port a guest writes a milestone's number to (one byte). Not 0x80:
/// Linux's `io_delay` writes there.
pub const PORT: u16 = 0xe80;

/// A point of the boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mark {
    /// Guest RAM is backed (and zeroed) by the host.
    RamBacked,
    /// The machine is built and the boot vCPU is about to run the guest's
    /// first instruction.
    GuestEntry,
    /// The guest wrote this byte to [`PORT`].
    Guest(u8),
}

impl fmt::Display for Mark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mark::RamBacked => f.write_str("ram-backed"),
            Mark::GuestEntry => f.write_str("guest-entry"),
            Mark::Guest(n) => write!(f, "guest-{n}"),
        }
    }
}

/// When the VMM started: wall clock and TSC.
#[derive(Clone, Copy, Debug)]
pub struct Start {
    pub at: Instant,
    pub tsc: u64,
}

impl Start {
    pub fn now() -> Self {
        Start {
            at: Instant::now(),
            tsc: host_tsc(),
        }
    }
}

static VMM_START: OnceLock<Start> = OnceLock::new();

/// Notes that the VMM starts now (call it first thing in `main`); later
/// calls keep the first start. Returns it.
pub fn note_vmm_start() -> Start {
    *VMM_START.get_or_init(Start::now)
}

/// The milestones of one VM and where their report goes.
pub struct Milestones {
    start: Start,
    reached: Mutex<BTreeSet<Mark>>,
    idle_ns: AtomicU64,
    out: Mutex<Box<dyn Write + Send>>,
}

impl Milestones {
    /// Milestones counted from the VMM's start, reported on standard error.
    pub fn new() -> Self {
        Self::since(note_vmm_start(), Box::new(std::io::stderr()))
    }

    /// Milestones counted from `start`, reported to `out`.
    pub fn since(start: Start, out: Box<dyn Write + Send>) -> Self {
        Milestones {
            start,
            reached: Mutex::new(BTreeSet::new()),
            idle_ns: AtomicU64::new(0),
            out: Mutex::new(out),
        }
    }

    /// A vCPU was idle for `time`.
    pub fn count_idle(&self, time: Duration) {
        let ns = u64::try_from(time.as_nanos()).unwrap_or(u64::MAX);
        self.idle_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// `mark` is reached now: the first time, reports it with the exits
    /// `exits` counts (asked only then) and returns true; later, false.
    pub fn reach(&self, mark: Mark, exits: impl FnOnce() -> ExitCounters) -> bool {
        let (elapsed, ticks) = (self.start.at.elapsed(), host_tsc());
        let idle = Duration::from_nanos(self.idle_ns.load(Ordering::Relaxed));
        let first = self
            .reached
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(mark);
        if first {
            let since = Since {
                elapsed,
                ticks: ticks.wrapping_sub(self.start.tsc),
                idle,
            };
            let text = report(mark, &since, &exits());
            let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
            // a report that cannot be written is lost; the VM goes on
            let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
        }
        first
    }
}

impl Default for Milestones {
    fn default() -> Self {
        Self::new()
    }
}

/// How far the VMM had come at a milestone.
#[derive(Clone, Copy, Debug)]
pub struct Since {
    /// Wall time since the VMM started.
    pub elapsed: Duration,
    /// TSC ticks since the VMM started.
    pub ticks: u64,
    /// Time the vCPUs spent idle until then, summed over vCPUs.
    pub idle: Duration,
}

/// `time` in milliseconds with three decimals.
fn ms(time: Duration) -> String {
    format!("{}.{:03}", time.as_millis(), time.subsec_micros() % 1000)
}

/// The lines that report `mark`: the time and ticks since the start and
/// the idle time, then the exit counters (as `print-exits` prints them at
/// the VM's end).
pub fn report(mark: Mark, since: &Since, exits: &ExitCounters) -> String {
    let mut text = format!(
        "tern-vmm: milestone {mark}: {} ms, {} TSC ticks since the VMM started; vCPUs idle {} ms\n",
        ms(since.elapsed),
        since.ticks,
        ms(since.idle),
    );
    for line in exits.to_string().lines() {
        text += &format!("tern-vmm: milestone {mark}: {line}\n");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::Captured;
    use vcpu_api::ExitReason;

    #[test]
    fn a_report_names_the_mark_the_time_the_ticks_and_every_counter() {
        let mut exits = ExitCounters::default();
        exits.count(&ExitReason::Cpuid);
        exits.count(&ExitReason::Cpuid);
        exits.count(&ExitReason::Hlt);
        let since = Since {
            elapsed: Duration::from_micros(5_123_456),
            ticks: 42,
            idle: Duration::from_micros(3_000_007),
        };
        let text = report(Mark::Guest(1), &since, &exits);
        assert_eq!(
            text,
            "tern-vmm: milestone guest-1: 5123.456 ms, 42 TSC ticks since the VMM started; vCPUs idle 3000.007 ms\n\
             tern-vmm: milestone guest-1: exits cpuid: 2\n\
             tern-vmm: milestone guest-1: exits hlt: 1\n\
             tern-vmm: milestone guest-1: exits total: 3\n"
        );
        let since = Since {
            elapsed: Duration::from_millis(7),
            ticks: 0,
            idle: Duration::ZERO,
        };
        let text = report(Mark::RamBacked, &since, &ExitCounters::default());
        assert_eq!(
            text,
            "tern-vmm: milestone ram-backed: 7.000 ms, 0 TSC ticks since the VMM started; vCPUs idle 0.000 ms\n\
             tern-vmm: milestone ram-backed: exits total: 0\n"
        );
    }

    #[test]
    fn each_milestone_reports_once_with_the_time_since_the_start() {
        let out = Captured::default();
        let start = Start {
            at: Instant::now() - Duration::from_millis(250),
            tsc: host_tsc() - 1_000_000,
        };
        let milestones = Milestones::since(start, Box::new(out.clone()));
        milestones.count_idle(Duration::from_millis(40));
        milestones.count_idle(Duration::from_millis(2));
        let mut asked = 0;
        assert!(milestones.reach(Mark::Guest(3), || {
            asked += 1;
            ExitCounters::default()
        }));
        assert!(!milestones.reach(Mark::Guest(3), || {
            asked += 1;
            ExitCounters::default()
        }));
        assert!(milestones.reach(Mark::Guest(4), ExitCounters::default));
        assert!(milestones.reach(Mark::GuestEntry, ExitCounters::default));
        assert_eq!(asked, 1, "counters are asked only for the first report");

        let text = out.text();
        let firsts: Vec<&str> = text.lines().filter(|l| l.contains(" ms, ")).collect();
        assert_eq!(firsts.len(), 3, "{text}");
        assert!(firsts[0].starts_with("tern-vmm: milestone guest-3: "));
        assert!(firsts[1].starts_with("tern-vmm: milestone guest-4: "));
        assert!(firsts[2].starts_with("tern-vmm: milestone guest-entry: "));
        let words: Vec<&str> = firsts[0].split_whitespace().collect();
        let ms: f64 = words[3].parse().unwrap();
        let ticks: u64 = words[5].parse().unwrap();
        assert!(ms >= 250.0, "{ms} ms since a start 250 ms ago");
        assert!(
            ticks >= 1_000_000,
            "{ticks} ticks since a start 1e6 ticks ago"
        );
        assert!(
            firsts[0].ends_with("; vCPUs idle 42.000 ms"),
            "{}",
            firsts[0]
        );
    }

    #[test]
    fn the_vmm_start_is_noted_once() {
        let first = note_vmm_start();
        std::thread::sleep(Duration::from_millis(2));
        let again = note_vmm_start();
        assert_eq!(first.at, again.at);
        assert_eq!(first.tsc, again.tsc);
    }
}
