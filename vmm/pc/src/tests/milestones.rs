//! Boot milestones in the exit loop: the guest's write to the milestone
//! port reports once with the exits so far; the boot vCPU's start is
//! `guest-entry`; without `milestones` the port is an ordinary empty port.

use std::time::Instant;

use vcpu_api::{Direction, ExitReason};

use super::*;
use crate::milestone::{self, Milestones, Start};

fn with_milestones(cpus: u32) -> (Fixture, Captured) {
    let mut f = fixture(cpus, MULTIBOOT, None);
    let out = Captured::default();
    let start = Start {
        at: Instant::now(),
        tsc: crate::devices::host_tsc(),
    };
    f.machine.milestones = Some(Milestones::since(start, Box::new(out.clone())));
    (f, out)
}

fn mark(f: &Fixture, c: &mut Ctx, value: u8) -> Next {
    let mut s = stopped_at(io(milestone::PORT, 1, Direction::Out), 2);
    s.rax.load(0xffff_ff00 | value as u64);
    vcpu::handle(&f.machine, c, &mut s, true)
}

/// The report's exit lines for `mark`, without the prefix.
fn exits_of(text: &str, mark: &str) -> Vec<String> {
    let prefix = format!("tern-vmm: milestone {mark}: exits ");
    text.lines()
        .filter_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
        .collect()
}

#[test]
fn a_guest_mark_reports_once_with_every_vcpus_exits_so_far() {
    let (f, out) = with_milestones(2);
    let (mut c0, mut c1) = (ctx(&f, 0), ctx(&f, 1));
    let mut s = stopped_at(ExitReason::Cpuid, 2);
    s.rax.load(0);
    assert_eq!(
        vcpu::handle(&f.machine, &mut c1, &mut s, true),
        Next::Resume
    );
    assert_eq!(mark(&f, &mut c0, 1), Next::Resume);
    assert_eq!(mark(&f, &mut c0, 1), Next::Resume);
    assert_eq!(mark(&f, &mut c1, 2), Next::Resume);

    let text = out.text();
    let heads: Vec<&str> = text.lines().filter(|l| l.contains(" ms, ")).collect();
    assert_eq!(heads.len(), 2, "one report per milestone: {text}");
    assert!(heads[0].starts_with("tern-vmm: milestone guest-1: "));
    assert!(heads[0].contains(" TSC ticks since the VMM started; vCPUs idle "));
    assert!(heads[1].starts_with("tern-vmm: milestone guest-2: "));
    // the marking OUT itself is counted before its report
    assert_eq!(
        exits_of(&text, "guest-1"),
        ["cpuid: 1", "io: 1", "total: 2"]
    );
    assert_eq!(
        exits_of(&text, "guest-2"),
        ["cpuid: 1", "io: 3", "total: 4"]
    );
    assert_eq!(f.machine.exit_counters().get("io"), 3);
    assert_eq!(f.machine.vcpu_exit_counters(1).total(), 2);
    assert_eq!(f.machine.life.end(), None, "a mark does not end the VM");
}

#[test]
fn the_boot_vcpus_start_is_guest_entry_and_an_aps_is_not() {
    let (f, out) = with_milestones(2);
    let mut c1 = ctx(&f, 1);
    let mut s = stopped_at(ExitReason::Startup, 0);
    vcpu::handle(&f.machine, &mut c1, &mut s, true);
    assert_eq!(out.text(), "", "an AP's start is no milestone");
    let mut c0 = ctx(&f, 0);
    let mut s = stopped_at(ExitReason::Startup, 0);
    vcpu::handle(&f.machine, &mut c0, &mut s, true);
    let text = out.text();
    assert!(
        text.starts_with("tern-vmm: milestone guest-entry: "),
        "{text}"
    );
    assert_eq!(exits_of(&text, "guest-entry"), ["startup: 2", "total: 2"]);
}

#[test]
fn the_report_counts_the_time_vcpus_were_idle() {
    let (f, out) = with_milestones(1);
    let mut c = ctx(&f, 0);
    f.machine.idle(0, false, || {
        std::thread::sleep(std::time::Duration::from_millis(30))
    });
    assert_eq!(mark(&f, &mut c, 9), Next::Resume);
    let text = out.text();
    let idle_ms: f64 = text
        .split("; vCPUs idle ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("no idle time in {text}"));
    assert!(
        (30.0..10_000.0).contains(&idle_ms),
        "{idle_ms} ms idle: {text}"
    );
}

#[test]
fn without_milestones_the_port_is_empty() {
    let f = fixture(1, MULTIBOOT, None);
    let mut c = ctx(&f, 0);
    assert_eq!(mark(&f, &mut c, 1), Next::Resume);
    let mut s = stopped_at(io(milestone::PORT, 1, Direction::In), 2);
    assert_eq!(vcpu::handle(&f.machine, &mut c, &mut s, true), Next::Resume);
    assert_eq!(s.rax.value() & 0xff, 0xff, "no device: reads all ones");
}
