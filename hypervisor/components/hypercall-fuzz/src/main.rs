//! Test component: makes `--count N` hypercalls with random numbers and arguments
//! (seeded by `--seed S`, reproducible) and reports how often each status came
//! back. Only operations that would end this component itself are steered away
//! from (exiting, revoking its own memory, waiting without a timeout).
#![no_std]
#![no_main]

use hyper_abi::{syscall, Crd, CrdKind, EcOp, Hypercall, SmOp, Status};
use native::{println, Rng};

native::entry!(main);

fn interesting(rng: &mut Rng) -> u64 {
    match rng.next_u64() % 8 {
        0 => rng.next_u64(),
        1 => rng.next_u64() % 4096,
        2 => u64::MAX - rng.next_u64() % 16,
        3 => 1 << (rng.next_u64() % 64),
        4 => native::FREE_SEL + rng.next_u64() % 64,
        5 => rng.next_u64() % 16,
        6 => {
            Crd::new(
                match rng.next_u64() % 4 {
                    0 => CrdKind::Null,
                    1 => CrdKind::Memory,
                    2 => CrdKind::Io,
                    _ => CrdKind::Object,
                },
                rng.next_u64() % 0x1_0000,
                (rng.next_u64() % 40) as u8,
                (rng.next_u64() % 32) as u8,
            )
            .0
        }
        _ => 0,
    }
}

fn main() -> i32 {
    let info = native::StartInfo::get();
    // the roottask's portals would act on our behalf (exit, faults, memory)
    let roottask_portal = |sel: u64| {
        sel == native::PARENT
            || (native::EVT_BASE..native::EVT_BASE + hyper_abi::exc::PORTALS).contains(&sel)
            || (native::CPU_PORTALS..native::FREE_SEL_HIGH).contains(&sel)
    };
    let seed: u64 = info.arg("seed").and_then(|s| s.parse().ok()).unwrap_or(1);
    let count: u64 = info
        .arg("count")
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    println!("fuzz: {count} random hypercalls, seed {seed}");
    let mut rng = Rng(seed.max(1).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let unknown = Status::ALL.len();
    let mut tally = [0u64; Status::ALL.len() + 1];
    for _ in 0..count {
        let n = if rng.next_u64().is_multiple_of(16) {
            rng.next_u64() % 64
        } else {
            rng.next_u64() % Hypercall::COUNT
        };
        let mut a = [0u64; 6];
        for x in a.iter_mut() {
            *x = interesting(&mut rng);
        }
        // steer away from the few calls that would end us
        if n == Hypercall::Revoke as u64 && Crd(a[0]).kind() == CrdKind::Memory {
            a[1] = 0;
        }
        if n == Hypercall::Revoke as u64
            && Crd(a[0]).kind() == CrdKind::Object
            && (Crd(a[0]).base() < native::FREE_SEL || roottask_portal(Crd(a[0]).base()))
        {
            a[1] = 0; // keep our parent and exception portals
        }
        if n == Hypercall::EcCtrl as u64 && a[1] == EcOp::Exit as u64 {
            a[1] = EcOp::Recall as u64;
        }
        if n == Hypercall::SmCtrl as u64 && a[1] != SmOp::Up as u64 {
            a[2] = 1 + a[2] % 50;
        }
        if n == Hypercall::ConsoleWrite as u64 {
            a[0] = 0;
        }
        if n == Hypercall::Call as u64 && roottask_portal(a[0]) {
            a[0] = 0;
        }
        if n == Hypercall::Delegate as u64 && Crd(a[1]).kind() == CrdKind::Memory {
            a[0] = 0; // moving our own pages around is not the kernel's problem
        }
        // SAFETY: the steering above keeps our own memory untouched.
        let r = unsafe { syscall::raw(n, a[0], a[1], a[2], a[3], a[4], a[5]) };
        let idx = Status::from_raw(r.status)
            .map(|s| s as usize)
            .unwrap_or(unknown);
        tally[idx] += 1;
    }
    let total: u64 = tally.iter().sum();
    println!("fuzz: {total} hypercalls made, kernel still running; status counts:");
    for s in Status::ALL {
        println!("fuzz:   {:<15} {}", s.name(), tally[s as usize]);
    }
    if tally[unknown] != 0 {
        println!("fuzz:   unknown status   {}", tally[unknown]);
    }
    0
}
