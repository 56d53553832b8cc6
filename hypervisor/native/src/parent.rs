//! The parent protocol: requests a component sends to the roottask's portal.
//! Word 0 is the operation; a service name travels as up to 4 words of bytes.

use crate::{utcb, PARENT, RECV_BASE, RECV_ORDER};
use hyper_abi::{syscall, Crd, CrdKind, Status};

pub const OP_REGISTER: u64 = 1;
pub const OP_LOOKUP: u64 = 2;
pub const OP_EXIT: u64 = 3;
/// `[op, va, order, rights]`: back `2^order` pages at `va` with zeroed memory of
/// the component's quota. Reply word 0: 0 done, 1 refused (bad range or already
/// mapped), 2 quota exhausted, 3 the roottask has no free block that large (a
/// smaller order may still work). Orders up to 18 (1 GiB); `va` aligned to the block.
pub const OP_MAP: u64 = 4;
/// `[op, va, pages]`: give the memory backing `[va, va + pages * 4096)` back.
pub const OP_UNMAP: u64 = 5;
/// `[op, name (4 words), va]`: map boot module `name` read-only at `va`. Reply:
/// `[0, size, offset of its first byte in the first page]`.
pub const OP_ROM: u64 = 6;
/// `[op, length, text...]`: the component crashed for the reason in the text;
/// the roottask reports it and ends the component.
pub const OP_CRASH: u64 = 7;
/// `[op]`: reply `[0, quota pages, used pages]`.
pub const OP_MEMINFO: u64 = 8;
/// `[op, max]` (the terminal component only): reply `[0, count, bytes...]` with
/// console input received so far (count 0: none; wait on `TERMINAL_SM`).
pub const OP_TERMINAL_READ: u64 = 9;

pub fn name_words(name: &str) -> [u64; 4] {
    let mut w = [0u64; 4];
    for (i, b) in name.bytes().take(32).enumerate() {
        w[i / 8] |= (b as u64) << (8 * (i % 8));
    }
    w
}

fn set_name(u: &mut hyper_abi::Utcb, name: &str) {
    let w = name_words(name);
    u.words[1..5].copy_from_slice(&w);
}

/// Offers the portal at `pt_sel` as service `name`.
pub fn register(name: &str, pt_sel: u64) -> Result<(), Status> {
    let u = utcb();
    u.words[0] = OP_REGISTER;
    set_name(u, name);
    u.words[5] = Crd::obj(pt_sel, hyper_abi::obj_rights::USE).0;
    u.words[6] = 0;
    u.untyped = 5;
    u.typed = 1;
    syscall::call(PARENT)?;
    u.typed = 0;
    match u.words[0] {
        0 => Ok(()),
        _ => Err(Status::BadParameter),
    }
}

/// Asks for service `name`; its portal arrives at selector `dst` (inside the receive window).
pub fn lookup(name: &str, dst: u64) -> Result<u64, Status> {
    let u = utcb();
    u.words[0] = OP_LOOKUP;
    set_name(u, name);
    u.untyped = 5;
    u.typed = 0;
    u.recv_obj = Crd::new(CrdKind::Object, RECV_BASE, RECV_ORDER, 0);
    u.words[5] = dst.wrapping_sub(RECV_BASE);
    u.untyped = 6;
    syscall::call(PARENT)?;
    if u.words[0] != 0 || u.typed == 0 {
        return Err(Status::BadCapability);
    }
    let got = Crd(u.words[u.untyped as usize]);
    if got.kind() != CrdKind::Object {
        return Err(Status::BadCapability);
    }
    Ok(got.base())
}

pub fn exit(code: i32) {
    let u = utcb();
    u.words[0] = OP_EXIT;
    u.words[1] = code as u64;
    u.untyped = 2;
    u.typed = 0;
    let _ = syscall::call(PARENT);
}
