//! Test component: the client of "echo". Makes `--calls N` IPC calls and checks
//! each answer, delegates a semaphore inside a message, touches lazily mapped
//! memory (resolved by the roottask's pager), destroys a thread and then the
//! handler serving its call (the thread's UTCB address must be free again), then
//! asks the server to revoke its portal and checks that calls fail afterwards.
#![no_std]
#![no_main]

use hyper_abi::syscall::EcParams;
use hyper_abi::{obj_rights, sel, syscall, Crd, EcKind, SmOp, Status};
use native::{println, FREE_SEL};

native::entry!(main);

const ECHO: u64 = native::RECV_BASE;
const SM: u64 = FREE_SEL;

/// Objects of the served-thread check (`destroy_served_thread`).
const DOOMED: u64 = FREE_SEL + 8;
const DOOMED_SC: u64 = FREE_SEL + 9;
const HOLDER: u64 = FREE_SEL + 10;
const HOLDER_PT: u64 = FREE_SEL + 11;
const SERVING: u64 = FREE_SEL + 12;
const HOLD: u64 = FREE_SEL + 13;
const REUSED: u64 = FREE_SEL + 14;
const DOOMED_UTCB: u64 = 0x0000_7fff_fffa_0000;
const HOLDER_UTCB: u64 = 0x0000_7fff_fff9_0000;
static mut DOOMED_STACK: [u8; 8192] = [0; 8192];
static mut HOLDER_STACK: [u8; 8192] = [0; 8192];

fn stack_top(stack: *const [u8; 8192]) -> u64 {
    // as if called: 16-byte aligned minus the return address
    (stack as u64 + 8192 - 8) & !0xf | 8
}

/// The doomed thread: calls the holder's portal, never to return.
extern "C" fn doomed() -> ! {
    let _ = syscall::call(HOLDER_PT);
    loop {
        let _ = syscall::sm_ctrl(HOLD, SmOp::Down, 0);
    }
}

/// The holder: says it serves the call, then blocks until it is destroyed.
extern "C" fn hold(_badge: u64) -> ! {
    let _ = syscall::sm_ctrl(SERVING, SmOp::Up, 0);
    loop {
        let _ = syscall::sm_ctrl(HOLD, SmOp::Down, 0);
    }
}

/// A thread destroyed while a handler serves its call stays (a zombie: the
/// handler runs on its time) until the handler is done. Here the handler is
/// destroyed instead of replying: that must free the thread too, so its UTCB
/// address can hold a new thread (the posix-server reuses thread slots so).
fn destroy_served_thread(cpu: u16) -> Result<(), &'static str> {
    let ec = |kind, utcb, sp, ip| EcParams {
        pd: sel::PD_SELF,
        cpu,
        kind,
        flags: 0,
        evt_base: native::EVT_BASE as u32,
        utcb,
        sp,
        ip,
    };
    syscall::create_sm(SERVING, 0, None).map_err(|_| "create semaphore")?;
    syscall::create_sm(HOLD, 0, None).map_err(|_| "create semaphore")?;
    let holder_sp = stack_top(core::ptr::addr_of!(HOLDER_STACK));
    syscall::create_ec(HOLDER, &ec(EcKind::Local, HOLDER_UTCB, holder_sp, 0))
        .map_err(|_| "create the handler EC")?;
    syscall::create_pt(HOLDER_PT, HOLDER, hold as *const () as usize as u64, 0)
        .map_err(|_| "create the portal")?;
    let doomed_sp = stack_top(core::ptr::addr_of!(DOOMED_STACK));
    let doomed_ip = doomed as *const () as usize as u64;
    let doomed_ec = ec(EcKind::Global, DOOMED_UTCB, doomed_sp, doomed_ip);
    syscall::create_ec(DOOMED, &doomed_ec).map_err(|_| "create the thread")?;
    syscall::create_sc(DOOMED_SC, DOOMED, 1, 10_000).map_err(|_| "create its SC")?;
    syscall::sm_ctrl(SERVING, SmOp::Down, 1_000_000)
        .map_err(|_| "the handler did not start serving the thread's call")?;
    for s in [DOOMED, DOOMED_SC, HOLDER] {
        syscall::revoke(Crd::obj(s, obj_rights::ALL), true).map_err(|_| "revoke")?;
    }
    // a new thread at the same UTCB address (a local EC: it needs no SC)
    syscall::create_ec(REUSED, &ec(EcKind::Local, DOOMED_UTCB, doomed_sp, 0))
        .map_err(|_| "the destroyed thread's UTCB address is still taken")?;
    for s in [REUSED, HOLDER_PT, SERVING, HOLD] {
        syscall::revoke(Crd::obj(s, obj_rights::ALL), true).map_err(|_| "revoke")?;
    }
    Ok(())
}

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

    match destroy_served_thread(info.cpu as u16) {
        Ok(()) => println!(
            "ping: a thread destroyed in a call, then its handler: the thread's UTCB address is free again"
        ),
        Err(what) => {
            println!("ping: FAIL: thread destroyed in a call: {what}");
            return 1;
        }
    }

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
