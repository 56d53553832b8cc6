//! Test component: the client of "echo". Makes `--calls N` IPC calls and checks
//! each answer, delegates a semaphore inside a message, touches lazily mapped
//! memory (resolved by the roottask's pager), then asks the server to revoke its
//! portal and checks that calls fail afterwards.
#![no_std]
#![no_main]

use hyper_abi::{obj_rights, syscall, Crd, SmOp, Status};
use native::{println, FREE_SEL};

native::entry!(main);

const ECHO: u64 = native::RECV_BASE;
const SM: u64 = FREE_SEL;

fn echo(x: u64) -> Result<u64, Status> {
    let u = native::utcb();
    u.words[0] = 0;
    u.words[1] = x;
    u.untyped = 2;
    u.typed = 0;
    syscall::call(ECHO)?;
    Ok(u.words[0])
}

fn main() -> i32 {
    let info = native::StartInfo::get();
    let calls: u64 = info
        .arg("calls")
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    // the server may not have registered yet
    let mut found = false;
    for _ in 0..200 {
        if native::parent::lookup("echo", ECHO).is_ok() {
            found = true;
            break;
        }
        let _ = syscall::create_sm(SM, 0, None);
        let _ = syscall::sm_ctrl(SM, SmOp::Down, 10_000);
    }
    if !found {
        println!("ping: FAIL: service \"echo\" not found");
        return 1;
    }
    let t0 = native::rdtsc();
    for i in 0..calls {
        match echo(i) {
            Ok(v) if v == i + 1 => {}
            other => {
                println!("ping: FAIL: call {i} returned {other:?}");
                return 1;
            }
        }
    }
    let cycles = (native::rdtsc() - t0) / calls.max(1);
    println!(
        "ping: {calls} IPC calls done, all answers correct ({cycles} TSC ticks per round trip)"
    );

    // a capability inside a message: the server ups our semaphore
    let _ = syscall::create_sm(SM, 0, None);
    let u = native::utcb();
    u.words[0] = 1;
    u.untyped = 1;
    u.words[1] = Crd::obj(SM, obj_rights::USE).0;
    u.words[2] = 0;
    u.typed = 1;
    let sent = syscall::call(ECHO);
    u.typed = 0;
    match (
        sent,
        u.words[0],
        syscall::sm_ctrl(SM, SmOp::Down, 1_000_000),
    ) {
        (Ok(()), 1, Ok(_)) => {
            println!("ping: semaphore delegated inside a message was signalled by the server")
        }
        other => {
            println!("ping: FAIL: delegation in a message: {other:?}");
            return 1;
        }
    }

    // lazily backed memory: the first touch faults, the roottask's pager maps a page
    let p = (native::LAZY_BASE + 0x1238) as *mut u64;
    // SAFETY: the lazy range belongs to us; the pager backs it on the first touch.
    let v = unsafe {
        p.write_volatile(0xfeed_f00d);
        p.read_volatile()
    };
    if v != 0xfeed_f00d {
        println!("ping: FAIL: lazy memory read back {v:#x}");
        return 1;
    }
    println!(
        "ping: page fault at {:#x} resolved by the user-level pager",
        p as u64
    );

    // ask the server to revoke its portal, then expect calls to fail
    let u = native::utcb();
    u.words[0] = 2;
    u.untyped = 1;
    u.typed = 0;
    let _ = syscall::call(ECHO);
    let wait = FREE_SEL + 1;
    let _ = syscall::create_sm(wait, 0, None);
    for _ in 0..500 {
        match echo(1) {
            Err(s) => {
                println!(
                    "ping: call on the revoked portal failed with {} as expected",
                    s.name()
                );
                return 0;
            }
            Ok(_) => {
                let _ = syscall::sm_ctrl(wait, SmOp::Down, 2_000);
            }
        }
    }
    println!("ping: FAIL: portal still answers after revocation");
    1
}
