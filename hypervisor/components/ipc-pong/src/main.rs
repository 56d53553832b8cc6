//! Test component: serves the "echo" service through a portal. Message word 0 is
//! the operation: 0 echo (returns word 1 + 1), 1 signal (ups the semaphore that
//! arrived in the message), 2 stop (the main thread then revokes the portal).
#![no_std]
#![no_main]

use hyper_abi::syscall::{self, EcParams};
use hyper_abi::{obj_rights, sel, Crd, CrdKind, EcKind, SmOp};
use native::{println, FREE_SEL};

native::entry!(main);

const HANDLER_UTCB: u64 = 0x0000_7fff_fffc_0000;
const PORTAL: u64 = FREE_SEL;
const HANDLER: u64 = FREE_SEL + 1;
const STOP: u64 = FREE_SEL + 2;
const IDLE: u64 = FREE_SEL + 3;
/// Where a semaphore sent by the client arrives.
const RECEIVED_SM: u64 = FREE_SEL + 16;

static mut HANDLER_STACK: [u8; 16384] = [0; 16384];

extern "C" fn serve(_badge: u64) -> ! {
    let u = native::utcb_at(HANDLER_UTCB);
    let op = u.words[0];
    let mut answer = [0u64; 1];
    match op {
        0 => answer[0] = u.words[1].wrapping_add(1),
        1 => {
            let ok = u.typed == 1 && Crd(u.words[u.untyped as usize]).kind() == CrdKind::Object;
            answer[0] = if ok && syscall::sm_ctrl(RECEIVED_SM, SmOp::Up, 0).is_ok() {
                1
            } else {
                0
            };
        }
        2 => {
            let _ = syscall::sm_ctrl(STOP, SmOp::Up, 0);
        }
        _ => answer[0] = u64::MAX,
    }
    u.words[0] = answer[0];
    u.untyped = 1;
    u.typed = 0;
    syscall::reply()
}

fn main() -> i32 {
    let info = native::StartInfo::get();
    let stack_top = core::ptr::addr_of!(HANDLER_STACK) as u64 + 16384 - 8;
    let p = EcParams {
        pd: sel::PD_SELF,
        cpu: info.cpu as u16,
        kind: EcKind::Local,
        flags: 0,
        evt_base: native::EVT_BASE as u32,
        utcb: HANDLER_UTCB,
        sp: stack_top,
        ip: 0,
    };
    syscall::create_ec(HANDLER, &p).expect("handler EC");
    native::utcb_at(HANDLER_UTCB).recv_obj = Crd::new(CrdKind::Object, RECEIVED_SM, 0, 0);
    syscall::create_pt(PORTAL, HANDLER, serve as *const () as usize as u64, 0).expect("portal");
    syscall::create_sm(STOP, 0, None).expect("semaphore");
    native::parent::register("echo", PORTAL).expect("register echo");
    println!("pong: serving \"echo\"");
    let _ = syscall::sm_ctrl(STOP, SmOp::Down, 0);
    // revoking the portal's root capability destroys it and every copy
    syscall::revoke(Crd::obj(PORTAL, obj_rights::ALL), true).expect("revoke");
    println!("pong: portal revoked");
    // stay alive so the client sees the revocation, not our exit
    syscall::create_sm(IDLE, 0, None).expect("semaphore");
    let _ = syscall::sm_ctrl(IDLE, SmOp::Down, 0);
    0
}
