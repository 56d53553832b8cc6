//! User-side hypercall wrappers. The raw entry is the only `unsafe` part: the
//! kernel checks every argument, but a PD can revoke or overwrite its own memory,
//! which Rust cannot see; the typed wrappers that cannot do that are safe.

use crate::{Crd, EcOp, Hypercall, SmOp, Status};

/// Result of a raw hypercall: status and the two result registers.
#[derive(Clone, Copy, Debug)]
pub struct Ret {
    pub status: u64,
    pub out1: u64,
    pub out2: u64,
}

/// Issues hypercall `n` with up to six arguments.
///
/// # Safety
/// Revocation and delegation of memory can remove or replace memory the caller is
/// using; the caller must not do that to memory Rust still references.
#[inline(always)]
pub unsafe fn raw(n: u64, a: u64, b: u64, c: u64, d: u64, e: u64, f: u64) -> Ret {
    let (status, out1, out2): (u64, u64, u64);
    // SAFETY: `syscall` enters the kernel, which preserves all registers but
    // rax/rdi/rsi (results) and rcx/r11 (clobbered by the instruction).
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") n | crate::NATIVE_TAG => status,
            inlateout("rdi") a => out1,
            inlateout("rsi") b => out2,
            in("rdx") c,
            in("r10") d,
            in("r8") e,
            in("r9") f,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack)
        );
    }
    Ret { status, out1, out2 }
}

fn status(r: Ret) -> Result<Ret, Status> {
    match Status::from_raw(r.status) {
        Some(Status::Success) => Ok(r),
        Some(s) => Err(s),
        None => Err(Status::BadHypercall),
    }
}

fn hc(n: Hypercall, a: u64, b: u64, c: u64, d: u64, e: u64) -> Result<Ret, Status> {
    // SAFETY: used only for hypercalls that cannot remove the caller's memory.
    status(unsafe { raw(n as u64, a, b, c, d, e, 0) })
}

/// `reply`: answers the call the calling portal handler serves with its UTCB's
/// message; the handler starts afresh at its portal's entry on the next call, so
/// this does not return.
pub fn reply() -> ! {
    loop {
        // SAFETY: a reply sends the UTCB's message (its typed items delegate from
        // the caller's own resources to the one it answers) and removes nothing
        // from the caller. It only returns when there is no call to answer.
        unsafe { raw(Hypercall::Reply as u64, 0, 0, 0, 0, 0, 0) };
    }
}
pub fn call(pt: u64) -> Result<(), Status> {
    hc(Hypercall::Call, pt, 0, 0, 0, 0).map(|_| ())
}
pub fn create_pd(dst: u64, kmem_quota: u64) -> Result<(), Status> {
    hc(Hypercall::CreatePd, dst, kmem_quota, 0, 0, 0).map(|_| ())
}
/// Creates a virtual machine: a PD whose memory space is guest-physical.
pub fn create_vm(dst: u64, kmem_quota: u64) -> Result<(), Status> {
    hc(Hypercall::CreatePd, dst, kmem_quota, crate::PD_VM, 0, 0).map(|_| ())
}
/// Runs vCPU `vcpu` after loading the `charged` fields from its state page; returns at
/// its next exit (the state page then holds the state and the exit).
pub fn vcpu_run(vcpu: u64, charged: u64) -> Result<(), Status> {
    hc(Hypercall::VcpuRun, vcpu, charged, 0, 0, 0).map(|_| ())
}
/// Parameters of a new execution context.
#[derive(Clone, Copy, Debug)]
pub struct EcParams {
    pub pd: u64,
    pub cpu: u16,
    pub kind: crate::EcKind,
    /// [`crate::ec_flags`].
    pub flags: u8,
    /// First selector of the EC's exception portals (in its PD).
    pub evt_base: u32,
    /// User address of the EC's UTCB page (0: none).
    pub utcb: u64,
    pub sp: u64,
    /// Start address (global ECs; local ECs start at their portal's entry).
    pub ip: u64,
}

impl EcParams {
    /// The `rdx` word: CPU, kind and event base.
    pub fn packed(&self) -> u64 {
        self.cpu as u64
            | (self.kind as u64) << 16
            | (self.flags as u64) << 24
            | (self.evt_base as u64) << 32
    }
}

pub fn create_ec(dst: u64, p: &EcParams) -> Result<(), Status> {
    // SAFETY: creating an EC maps its UTCB page only where no memory is mapped.
    status(unsafe {
        raw(
            Hypercall::CreateEc as u64,
            dst,
            p.pd,
            p.packed(),
            p.utcb,
            p.sp,
            p.ip,
        )
    })
    .map(|_| ())
}
pub fn create_sc(dst: u64, ec: u64, priority: u8, quantum_us: u32) -> Result<(), Status> {
    hc(
        Hypercall::CreateSc,
        dst,
        ec,
        priority as u64,
        quantum_us as u64,
        0,
    )
    .map(|_| ())
}
pub fn create_pt(dst: u64, ec: u64, ip: u64, badge: u64) -> Result<(), Status> {
    hc(Hypercall::CreatePt, dst, ec, ip, badge, 0).map(|_| ())
}
pub fn create_sm(dst: u64, count: u64, chain: Option<u64>) -> Result<(), Status> {
    hc(
        Hypercall::CreateSm,
        dst,
        count,
        chain.unwrap_or(u64::MAX),
        0,
        0,
    )
    .map(|_| ())
}
pub fn lookup(crd: Crd) -> Result<Crd, Status> {
    hc(Hypercall::Lookup, crd.0, 0, 0, 0, 0).map(|r| Crd(r.out1))
}
pub fn ec_ctrl(ec: u64, op: EcOp) -> Result<(), Status> {
    hc(Hypercall::EcCtrl, ec, op as u64, 0, 0, 0).map(|_| ())
}
pub fn sc_ctrl(sc: u64) -> Result<u64, Status> {
    hc(Hypercall::ScCtrl, sc, 0, 0, 0, 0).map(|r| r.out1)
}
/// Semaphore operation; `timeout_us` 0 waits forever. Returns `rdi`: for a down on
/// a chain target the selector of the source that fired, for `DownZero` the count taken.
pub fn sm_ctrl(sm: u64, op: SmOp, timeout_us: u64) -> Result<u64, Status> {
    hc(Hypercall::SmCtrl, sm, op as u64, timeout_us, 0, 0).map(|r| r.out1)
}
pub fn assign_gsi(sm: u64, cpu: u32) -> Result<(), Status> {
    hc(Hypercall::AssignGsi, sm, cpu as u64, 0, 0, 0).map(|_| ())
}
/// Revokes object or I/O capabilities (never the caller's memory: see [`raw`]).
pub fn revoke(crd: Crd, include_self: bool) -> Result<(), Status> {
    if crd.kind() == crate::CrdKind::Memory && include_self {
        return Err(Status::BadParameter);
    }
    hc(Hypercall::Revoke, crd.0, include_self as u64, 0, 0, 0).map(|_| ())
}
/// Delegates resources to another PD. Delegating never removes them from the caller.
pub fn delegate(dst_pd: u64, crd: Crd, dst_base: u64) -> Result<(), Status> {
    hc(Hypercall::Delegate, dst_pd, crd.0, dst_base, 0, 0).map(|_| ())
}
/// Roottask only: received console bytes into the UTCB data area; their count.
pub fn console_read(max: usize) -> Result<usize, Status> {
    hc(Hypercall::ConsoleRead, max as u64, 0, 0, 0, 0).map(|r| r.out1 as usize)
}
pub fn console_write(len: usize) -> Result<(), Status> {
    hc(Hypercall::ConsoleWrite, len as u64, 0, 0, 0, 0).map(|_| ())
}
