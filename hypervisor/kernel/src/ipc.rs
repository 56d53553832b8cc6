//! Synchronous IPC through portals (call/reply with UTCB message transfer and
//! capability delegation inside messages), exception delivery to handler portals,
//! semaphores (including chains and timeouts), and aborting ECs.

use crate::arch::{cpu, paging, phys};
use crate::object::{EcId, EcKind, EcState, Id, KResult, Kernel, PdId, SmId};
use crate::sched::{enqueue, sc_of};
use hyper_abi::{exc, mem_rights, Crd, CrdKind, Status, UTCB_WORDS};

/// Bytes of UTCB header before the message words.
pub const HDR: u64 = 24;

/// Physical address of an EC's UTCB page.
pub fn utcb_pa(k: &Kernel, ec: EcId) -> Option<u64> {
    k.ecs.get(ec)?.utcb.map(|(_, pa)| pa)
}

fn word(pa: u64, i: usize) -> u64 {
    phys::read(pa + HDR + 8 * i as u64)
}

fn set_word(pa: u64, i: usize, v: u64) {
    phys::write(pa + HDR + 8 * i as u64, v)
}

fn set_header(pa: u64, untyped: u32, typed: u32) {
    phys::write(pa, untyped);
    phys::write(pa + 4, typed);
}

/// Untyped and typed counts of a UTCB, clamped to what fits.
fn header(pa: u64) -> (usize, usize) {
    let u = (phys::read::<u32>(pa) as usize).min(UTCB_WORDS);
    let t = (phys::read::<u32>(pa + 4) as usize).min((UTCB_WORDS - u) / 2);
    (u, t)
}

fn map_err(e: mapdb::Error) -> Status {
    match e {
        mapdb::Error::Overlap => Status::Occupied,
        mapdb::Error::NotMapped => Status::BadCapability,
        _ => Status::BadParameter,
    }
}

pub fn page_flags(rights: u8) -> u64 {
    let mut f = 0;
    if rights & mem_rights::W != 0 {
        f |= paging::W;
    }
    if rights & mem_rights::X == 0 {
        f |= paging::NX;
    }
    f
}

/// Delegates the resources `crd` names in `src` to `dst` at `dst_base`.
pub fn delegate(k: &mut Kernel, src: PdId, dst: PdId, crd: Crd, dst_base: u64) -> KResult<Crd> {
    match crd.kind() {
        CrdKind::Memory => {
            let m = k
                .mem
                .delegate(src, crd.base(), crd.order(), dst, dst_base, crd.rights())
                .map_err(map_err)?;
            // the memory database's limit (2^35 pages) is the user half: no kernel address here
            let pd = k.pds.get_mut(dst).ok_or(Status::BadCapability)?;
            if pd
                .space
                .map(m.base << 12, m.payload << 12, m.order, page_flags(m.rights))
                .is_err()
            {
                let removed = k.mem.revoke(dst, m.base, m.order, true);
                k.removed_memory(removed);
                return Err(Status::OutOfMemory);
            }
            Ok(Crd::mem(m.base, m.order, m.rights))
        }
        CrdKind::Io => {
            let m =
                k.io.delegate(src, crd.base(), crd.order(), dst, dst_base, 1)
                    .map_err(map_err)?;
            let pd = k.pds.get_mut(dst).ok_or(Status::BadCapability)?;
            for port in m.base..(m.base + (1u64 << m.order)).min(65536) {
                pd.io_bitmap[(port / 8) as usize] &= !(1 << (port % 8));
            }
            k.sched.reload_io_bitmaps();
            Ok(Crd::io(m.base, m.order))
        }
        CrdKind::Object => {
            if crd.order() != 0 || dst_base == 0 {
                return Err(Status::BadParameter);
            }
            let m = k
                .obj
                .delegate(src, crd.base(), 0, dst, dst_base, crd.rights())
                .map_err(map_err)?;
            Ok(Crd::obj(m.base, m.rights))
        }
        CrdKind::Null => Err(Status::BadParameter),
    }
}

/// Copies the message of `from` into the UTCB of `to`, performing its delegations
/// into the receiver's windows. Failed items arrive as null CRDs.
fn transfer(k: &mut Kernel, from: EcId, to: EcId) {
    let (Some(src), Some(dst)) = (utcb_pa(k, from), utcb_pa(k, to)) else {
        return;
    };
    let (untyped, typed) = header(src);
    for i in 0..untyped + 2 * typed {
        set_word(dst, i, word(src, i));
    }
    set_header(dst, untyped as u32, typed as u32);
    if typed == 0 {
        return;
    }
    let (Some(src_pd), Some(dst_pd)) = (k.ecs.get(from).map(|e| e.pd), k.ecs.get(to).map(|e| e.pd))
    else {
        return;
    };
    let recv_obj = Crd(phys::read(dst + 8));
    let recv_mem = Crd(phys::read(dst + 16));
    for i in 0..typed {
        let crd = Crd(word(src, untyped + 2 * i));
        let offset = word(src, untyped + 2 * i + 1);
        let window = if crd.kind() == CrdKind::Memory {
            recv_mem
        } else {
            recv_obj
        };
        let fits = window.kind() != CrdKind::Null
            && crd.order() <= window.order()
            && offset
                .checked_add(1u64 << crd.order())
                .is_some_and(|end| end <= 1u64 << window.order().min(62));
        let result = if fits {
            delegate(k, src_pd, dst_pd, crd, window.base() + offset).unwrap_or(Crd::NULL)
        } else {
            Crd::NULL
        };
        set_word(dst, untyped + 2 * i, result.0);
    }
}

/// `call`: sends the caller's message through portal `sel`. On success the caller
/// is now blocked (the reply sets its status).
pub fn call(k: &mut Kernel, caller: EcId, sel: u64) -> KResult<()> {
    let pd = k.ecs.get(caller).ok_or(Status::BadCapability)?.pd;
    let pt = k.cap_pt(pd, sel, hyper_abi::obj_rights::USE)?;
    enter_portal(k, caller, pt, false)
}

fn enter_portal(k: &mut Kernel, caller: EcId, pt: Id, exception: bool) -> KResult<()> {
    let handler = k.pts.get(pt).ok_or(Status::BadCapability)?.ec;
    let h = k.ecs.get(handler).ok_or(Status::Aborted)?;
    let c = k.ecs.get(caller).ok_or(Status::Aborted)?;
    if h.kind != EcKind::Local || h.state == EcState::Dead {
        return Err(Status::Aborted);
    }
    if h.cpu != c.cpu {
        return Err(Status::BadCpu);
    }
    if handler == caller || chain_contains(k, caller, handler) {
        return Err(Status::Aborted);
    }
    let busy = h.caller.is_some();
    let c = k.ecs.get_mut(caller).expect("checked");
    c.callee = Some(handler);
    c.state = EcState::Calling;
    if busy {
        k.ecs
            .get_mut(handler)
            .expect("checked")
            .waiters
            .push_back((caller, pt, exception));
    } else {
        start_call(k, caller, handler, pt, exception);
    }
    Ok(())
}

/// Whether `h` already serves a call somewhere up `ec`'s chain (a loop would deadlock).
fn chain_contains(k: &Kernel, mut ec: EcId, h: EcId) -> bool {
    for _ in 0..64 {
        match k.ecs.get(ec).and_then(|e| e.caller) {
            Some(c) if c == h => return true,
            Some(c) => ec = c,
            None => return false,
        }
    }
    true
}

fn start_call(k: &mut Kernel, caller: EcId, handler: EcId, pt: Id, exception: bool) {
    let (ip, badge) = match k.pts.get(pt) {
        Some(p) => (p.ip, p.badge),
        None => (0, 0),
    };
    let h = k.ecs.get_mut(handler).expect("handler exists");
    h.caller = Some(caller);
    h.state = EcState::Ready;
    h.serving_exception = exception;
    h.regs = crate::object::Ec::new_regs(ip, h.stack);
    h.regs.rdi = badge;
    if exception {
        let c = k.ecs.get(caller).expect("caller exists");
        if let Some(dst) = utcb_pa(k, handler) {
            for (i, w) in state_words(c).iter().enumerate() {
                set_word(dst, i, *w);
            }
            set_header(dst, exc::WORDS as u32, 0);
        }
    } else {
        transfer(k, caller, handler);
    }
}

/// An EC's exception message: fault details and its whole user state.
fn state_words(c: &crate::object::Ec) -> [u64; exc::WORDS] {
    let f = &c.regs;
    [
        f.vector,
        f.error,
        c.fault_addr,
        f.rip,
        f.rsp,
        f.rflags,
        f.rax,
        f.rbx,
        f.rcx,
        f.rdx,
        f.rsi,
        f.rdi,
        f.rbp,
        f.r8,
        f.r9,
        f.r10,
        f.r11,
        f.r12,
        f.r13,
        f.r14,
        f.r15,
        c.fs_base,
    ]
}

/// Flags user level may set: the arithmetic flags, TF and DF (IF stays on, IOPL 0).
const USER_FLAGS: u64 = 0xcd5 | 1 << 8 | 1 << 10;

/// Loads `ec`'s user state from message words at `src` (the [`exc`] layout).
/// False, with nothing changed, if an address in it is not a canonical user address.
pub fn load_state(k: &mut Kernel, ec: EcId, src: u64) -> bool {
    let w = |i: usize| word(src, i);
    let user = |a: u64| a < paging::USER_END;
    if !user(w(exc::RIP)) || !user(w(exc::RSP)) || !user(w(exc::FS_BASE)) {
        return false;
    }
    let Some(e) = k.ecs.get_mut(ec) else {
        return false;
    };
    let f = &mut e.regs;
    f.rip = w(exc::RIP);
    f.rsp = w(exc::RSP);
    f.rflags = (w(exc::RFLAGS) & USER_FLAGS) | 0x202;
    f.rax = w(exc::RAX);
    f.rbx = w(exc::RBX);
    f.rcx = w(exc::RCX);
    f.rdx = w(exc::RDX);
    f.rsi = w(exc::RSI);
    f.rdi = w(exc::RDI);
    f.rbp = w(exc::RBP);
    let high = [
        &mut f.r8, &mut f.r9, &mut f.r10, &mut f.r11, &mut f.r12, &mut f.r13, &mut f.r14,
        &mut f.r15,
    ];
    for (n, r) in high.into_iter().enumerate() {
        *r = w(exc::R8 + n);
    }
    e.fs_base = w(exc::FS_BASE);
    true
}

/// `reply`: answers the call the current (local) EC serves.
pub fn reply(k: &mut Kernel, handler: EcId) -> KResult<()> {
    let h = k.ecs.get(handler).ok_or(Status::BadCapability)?;
    let Some(caller) = h.caller else {
        return Err(Status::BadParameter);
    };
    let exception = h.serving_exception;
    let caller_alive = k
        .ecs
        .get(caller)
        .is_some_and(|c| c.state == EcState::Calling && c.callee == Some(handler));
    if caller_alive {
        if exception {
            finish_exception(k, handler, caller);
        } else {
            transfer(k, handler, caller);
            let c = k.ecs.get_mut(caller).expect("alive");
            c.regs.rax = Status::Success as u64;
            c.callee = None;
            c.state = EcState::Ready;
        }
    }
    let h = k.ecs.get_mut(handler).expect("handler");
    h.caller = None;
    h.state = EcState::Idle;
    h.serving_exception = false;
    if !caller_alive {
        k.finish_dead(caller);
    }
    serve_next(k, handler);
    Ok(())
}

/// An exception reply: word 0 says what happens to the faulting EC (`exc::RESUME`,
/// `KILL`, `END`, `SET_STATE`); for RESUME, words 1 and 2 (if sent) set RIP and
/// RSP; typed items map memory at absolute addresses of the faulting PD.
fn finish_exception(k: &mut Kernel, handler: EcId, faulter: EcId) {
    let (Some(src), Some(h_pd), Some(f_pd)) = (
        utcb_pa(k, handler),
        k.ecs.get(handler).map(|e| e.pd),
        k.ecs.get(faulter).map(|e| e.pd),
    ) else {
        return;
    };
    let (untyped, typed) = header(src);
    for i in 0..typed {
        let crd = Crd(word(src, untyped + 2 * i));
        let dst = word(src, untyped + 2 * i + 1);
        let _ = delegate(k, h_pd, f_pd, crd, dst);
    }
    let action = if untyped > 0 {
        word(src, 0)
    } else {
        exc::RESUME
    };
    let f = k.ecs.get_mut(faulter).expect("faulter");
    f.callee = None;
    f.state = EcState::Ready;
    match action {
        exc::RESUME if untyped >= 3 => {
            f.regs.rip = word(src, 1).min(paging::USER_END - 1);
            f.regs.rsp = word(src, 2);
        }
        exc::RESUME => {}
        exc::SET_STATE if untyped >= exc::WORDS && load_state(k, faulter, src) => {}
        exc::SET_STATE => k.kill_ec(faulter, "its handler set a malformed state"),
        exc::END => abort_ec(k, faulter),
        _ => k.kill_ec(faulter, "its exception handler asked for it"),
    }
}

/// Starts the next queued call on a handler that just became free.
fn serve_next(k: &mut Kernel, handler: EcId) {
    loop {
        let Some(h) = k.ecs.get_mut(handler) else {
            return;
        };
        let Some((w, pt, exception)) = h.waiters.pop_front() else {
            return;
        };
        if k.ecs
            .get(w)
            .is_some_and(|e| e.state == EcState::Calling && e.callee == Some(handler))
        {
            start_call(k, w, handler, pt, exception);
            if let Some(sc) = sc_of(k, w) {
                enqueue(k, sc);
            }
            return;
        }
    }
}

/// Delivers exception `vector` of `ec` to its handler portal, or kills the EC.
pub fn exception(k: &mut Kernel, ec: EcId) {
    let Some(e) = k.ecs.get(ec) else { return };
    let vector = e.regs.vector;
    let sel = e.evt_base.saturating_add(vector);
    let pd = e.pd;
    let pt = k.cap_pt(pd, sel, hyper_abi::obj_rights::USE);
    let result = pt.and_then(|pt| enter_portal(k, ec, pt, true));
    if let Err(s) = result {
        let e = k.ecs.get(ec).expect("exists");
        let why = alloc::format!(
            "exception {} (error {:#x}) at rip {:#x}, address {:#x}; no handler ({})",
            vector,
            e.regs.error,
            e.regs.rip,
            e.fault_addr,
            s.name()
        );
        k.kill_ec(ec, &why);
    }
}

/// Wakes a blocked or calling EC with `status` and result `value`.
pub fn wake(k: &mut Kernel, ec: EcId, status: Status, value: u64) {
    let Some(e) = k.ecs.get_mut(ec) else { return };
    if e.state == EcState::Dead {
        return;
    }
    if let EcState::Blocked(sm) = e.state {
        if let Some(d) = e.deadline.take() {
            let cpu = e.cpu;
            k.sched.remove_timeout(cpu, d, ec);
        }
        if let Some(s) = k.sms.get_mut(sm) {
            s.waiters.retain(|&w| w != ec);
        }
    }
    let e = k.ecs.get_mut(ec).expect("exists");
    e.state = EcState::Ready;
    e.callee = None;
    e.regs.rax = status as u64;
    e.regs.rdi = value;
    if let Some(sc) = sc_of(k, ec) {
        enqueue(k, sc);
    }
}

pub fn timeout(k: &mut Kernel, ec: EcId) {
    if let Some(e) = k.ecs.get_mut(ec) {
        if matches!(e.state, EcState::Blocked(_)) {
            e.deadline = None;
            wake(k, ec, Status::Timeout, 0);
        }
    }
}

/// Marks an EC dead and resolves everything that waited on or for it.
pub fn abort_ec(k: &mut Kernel, ec: EcId) {
    let Some(e) = k.ecs.get(ec) else { return };
    let (state, caller, callee, cpu) = (e.state, e.caller, e.callee, e.cpu);
    if let EcState::Blocked(sm) = state {
        if let Some(s) = k.sms.get_mut(sm) {
            s.waiters.retain(|&w| w != ec);
        }
        if let Some(d) = k.ecs.get_mut(ec).and_then(|e| e.deadline.take()) {
            k.sched.remove_timeout(cpu, d, ec);
        }
    }
    // a handler already serving this EC finishes on its time (and its reply is
    // dropped); one it merely queued on forgets it
    let served = callee.is_some_and(|h| k.ecs.get(h).is_some_and(|h| h.caller == Some(ec)));
    if let Some(h) = callee {
        if let Some(h) = k.ecs.get_mut(h) {
            h.waiters.retain(|&(w, _, _)| w != ec);
        }
    }
    let e = k.ecs.get_mut(ec).expect("exists");
    e.state = EcState::Dead;
    let waiters = core::mem::take(&mut e.waiters);
    if served {
        // a handler (maybe of another PD) is still working on its call: the EC
        // stays linked in its call chain, so the handler keeps running on the
        // chain's time; the chain unwinds when the handler replies
        // (`Kernel::finish_dead`)
    } else {
        e.caller = None;
        e.callee = None;
        match caller {
            // a dead caller waited for this handler to finish (and, destroyed
            // meanwhile, to be freed): the handler is gone, so it is done now;
            // without this the caller stayed a zombie for ever, its UTCB
            // address taken
            Some(c) if k.ecs.get(c).is_some_and(|c| c.state == EcState::Dead) => k.finish_dead(c),
            Some(c) => wake(k, c, Status::Aborted, 0),
            None => {}
        }
    }
    for (w, _, _) in waiters {
        wake(k, w, Status::Aborted, 0);
    }
    if k.sched.cpus[cpu].running == Some(ec) {
        k.sched.cpus[cpu].running = None;
    }
}

/// Semaphore up: wakes the first waiter or counts; a chained semaphore forwards
/// the up to its target, which records which source fired.
pub fn sm_up(k: &mut Kernel, sm: SmId) {
    let (target, badge) = match k.sms.get(sm) {
        Some(s) => match s.chain {
            Some(t) if k.sms.get(t).is_some() => (t, Some(s.chain_badge)),
            _ => (sm, None),
        },
        None => return,
    };
    let s = k.sms.get_mut(target).expect("checked");
    if let Some(w) = s.waiters.pop_front() {
        wake(k, w, Status::Success, badge.unwrap_or(0));
    } else {
        s.count = s.count.saturating_add(1);
        if let Some(b) = badge {
            if s.fired.len() < 4096 {
                s.fired.push_back(b);
            }
        }
    }
}

/// Semaphore down (`zero`: take the whole count). Returns `Ok(Some(value))` if it
/// completed, `Ok(None)` if the EC blocked.
pub fn sm_down(
    k: &mut Kernel,
    ec: EcId,
    sm: SmId,
    zero: bool,
    timeout_us: u64,
) -> KResult<Option<u64>> {
    let s = k.sms.get_mut(sm).ok_or(Status::BadCapability)?;
    if let Some(g) = s.gsi {
        crate::trap::unmask_gsi(g);
    }
    if s.count > 0 {
        let taken = if zero {
            core::mem::take(&mut s.count)
        } else {
            1
        };
        if !zero {
            s.count -= 1;
        }
        let value = s.fired.pop_front().unwrap_or(taken);
        return Ok(Some(value));
    }
    s.waiters.push_back(ec);
    let e = k.ecs.get_mut(ec).ok_or(Status::BadCapability)?;
    e.state = EcState::Blocked(sm);
    if timeout_us > 0 {
        let deadline =
            cpu::rdtsc().saturating_add(timeout_us.saturating_mul(crate::arch::apic::tsc_per_us()));
        e.deadline = Some(deadline);
        let cpu = e.cpu;
        k.sched.add_timeout(cpu, deadline, ec);
    }
    Ok(None)
}

/// Looks up what `crd` names in `pd` (the whole node containing its base).
pub fn lookup(k: &Kernel, pd: PdId, crd: Crd) -> Crd {
    match crd.kind() {
        CrdKind::Memory => k
            .mem
            .lookup(pd, crd.base())
            .map(|m| Crd::mem(m.base, m.order, m.rights)),
        CrdKind::Io => {
            k.io.lookup(pd, crd.base())
                .map(|m| Crd::io(m.base, m.order))
        }
        CrdKind::Object => k
            .obj
            .lookup(pd, crd.base())
            .map(|m| Crd::obj(m.base, m.rights)),
        CrdKind::Null => None,
    }
    .unwrap_or(Crd::NULL)
}
