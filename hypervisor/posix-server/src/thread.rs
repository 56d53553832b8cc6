//! Program threads and their handlers.
//!
//! Every program thread is a Tern EC created with `REFLECT_SYSCALLS`; its event
//! base is a block of portals bound to its own handler EC (a local EC on the same
//! CPU, in this protection domain). So each thread's system calls, page faults and
//! exceptions arrive at its own handler, which may block (futex wait, sleep) on the
//! thread's behalf without holding up any other thread.
//!
//! Owns: creating threads (the main thread and `clone`), the handler entry point,
//! the decision what an event means (system call, fault to back, crash), and
//! reaping exited threads' kernel objects.

use crate::layout::{self, SLOT_SEL, SLOT_SELS};
use crate::process::{self, Placement, Process, Thread};
use crate::roottask::{self, Caller};
use crate::syscall;
use alloc::boxed::Box;
use alloc::format;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use hyper_abi::syscall::{self as hc, EcParams};
use hyper_abi::{ec_flags, exc, obj_rights, sel, Crd, EcKind, EcOp, Status};
use posix::memmap::{Access, FaultAction};
use posix::Errno;

/// A thread's user state as the kernel reports and takes it (exception layout).
pub type Regs = [u64; exc::WORDS];

/// Selectors of a thread slot.
pub struct Sels(u64);

impl Sels {
    pub fn of(slot: usize) -> Sels {
        Sels(SLOT_SEL + slot as u64 * SLOT_SELS)
    }
    /// The event base: portal `+ vector` for every exception vector.
    pub fn portals(&self) -> u64 {
        self.0
    }
    pub fn ec(&self) -> u64 {
        self.0 + 64
    }
    pub fn sc(&self) -> u64 {
        self.0 + 65
    }
    pub fn handler(&self) -> u64 {
        self.0 + 66
    }
    /// Ups wake a futex wait.
    pub fn futex_sm(&self) -> u64 {
        self.0 + 67
    }
    /// Never upped: sleeps are timed downs on it.
    pub fn sleep_sm(&self) -> u64 {
        self.0 + 68
    }
    fn all(&self) -> impl Iterator<Item = u64> {
        let b = self.0;
        (b..b + exc::PORTALS).chain(b + 64..b + 69)
    }
}

/// The CPU of each slot's thread (read by its handler without the lock).
static SLOT_CPU: [AtomicU32; layout::MAX_THREADS] =
    [const { AtomicU32::new(0) }; layout::MAX_THREADS];

/// Whether each slot's handler is serving an event. The objects of an exited
/// thread are freed only once its handler is done: destroying a handler in the
/// middle of its reply would leave the thread's EC (and its UTCB address) to
/// the kernel as a zombie, and the slot could not be used again.
static HANDLER_BUSY: [AtomicBool; layout::MAX_THREADS] =
    [const { AtomicBool::new(false) }; layout::MAX_THREADS];

/// Handler stacks, one per slot, kept for reuse. Only `spawn` touches them, under
/// the process lock, so this spin lock is never contended (a contended spin lock
/// can spin for ever here: see `heap`).
static STACKS: spin::Mutex<Vec<Option<Box<[u8]>>>> = spin::Mutex::new(Vec::new());

fn handler_stack_top(slot: usize) -> u64 {
    let mut stacks = STACKS.lock();
    if stacks.len() <= slot {
        stacks.resize_with(slot + 1, || None);
    }
    let s = stacks[slot].get_or_insert_with(|| alloc::vec![0u8; layout::HANDLER_STACK].into());
    // touch every page now, so the handler never faults on its own stack
    for i in (0..s.len()).step_by(4096) {
        s[i] = 0;
    }
    (s.as_ptr() as u64 + s.len() as u64 - 64) & !0xf
}

fn status(s: Status) -> Errno {
    match s {
        Status::OutOfMemory => Errno::ENOMEM,
        _ => Errno::EAGAIN,
    }
}

/// Frees the kernel objects of exited threads whose handlers are done.
pub fn reap(p: &mut Process) {
    for (slot, t) in p.threads.iter_mut().enumerate() {
        if t.as_ref().is_some_and(|t| !t.alive) && !HANDLER_BUSY[slot].load(Ordering::Acquire) {
            for s in Sels::of(slot).all() {
                let _ = hc::revoke(Crd::obj(s, obj_rights::ALL), true);
            }
            *t = None;
        }
    }
}

/// Starts a program thread with user state `regs` where `place` says (its
/// handler on the same CPU); its slot and tid. `c` is the caller, whose UTCB
/// carries the state to the kernel.
pub fn spawn(
    p: &mut Process,
    c: Caller,
    regs: &Regs,
    place: Placement,
) -> Result<(usize, i32), Errno> {
    let cpu = place.cpu;
    reap(p);
    let slot = match p.threads.iter().position(|t| t.is_none()) {
        Some(s) => s,
        None if p.threads.len() < layout::MAX_THREADS => {
            p.threads.push(None);
            p.threads.len() - 1
        }
        None => return Err(Errno::EAGAIN),
    };
    let s = Sels::of(slot);
    SLOT_CPU[slot].store(cpu, Ordering::Relaxed);
    let made = (|| {
        hc::create_sm(s.futex_sm(), 0, None)?;
        hc::create_sm(s.sleep_sm(), 0, None)?;
        let handler = EcParams {
            pd: sel::PD_SELF,
            cpu: cpu as u16,
            kind: EcKind::Local,
            flags: 0,
            evt_base: native::cpu_portals(cpu) as u32,
            utcb: layout::handler_utcb(slot),
            sp: handler_stack_top(slot),
            ip: 0,
        };
        hc::create_ec(s.handler(), &handler)?;
        for v in 0..exc::PORTALS {
            hc::create_pt(
                s.portals() + v,
                s.handler(),
                on_event as *const () as usize as u64,
                slot as u64,
            )?;
        }
        let thread = EcParams {
            pd: sel::PD_SELF,
            cpu: cpu as u16,
            kind: EcKind::Global,
            flags: ec_flags::REFLECT_SYSCALLS,
            evt_base: s.portals() as u32,
            utcb: layout::thread_utcb(slot),
            sp: 0,
            ip: 0,
        };
        hc::create_ec(s.ec(), &thread)?;
        let u = native::utcb_at(c.utcb);
        u.words[..exc::WORDS].copy_from_slice(regs);
        hc::ec_ctrl(s.ec(), EcOp::SetState)?;
        Ok::<(), Status>(())
    })();
    if let Err(e) = made {
        for x in s.all() {
            let _ = hc::revoke(Crd::obj(x, obj_rights::ALL), true);
        }
        return Err(status(e));
    }
    let tid = p.next_tid;
    p.next_tid += 1;
    p.threads[slot] = Some(Thread {
        tid,
        cpu,
        clear_child_tid: 0,
        alive: true,
        sigmask: 0,
        next_thread: None,
        name: [0; 16],
    });
    if let Err(e) = hc::create_sc(s.sc(), s.ec(), place.priority, 10_000) {
        p.threads[slot].as_mut().expect("just set").alive = false;
        reap(p);
        return Err(status(e));
    }
    Ok((slot, tid))
}

/// What becomes of the thread after its event.
pub enum After {
    /// Resume with these registers.
    Resume,
    /// The thread is gone.
    End,
}

/// Entry of every thread's handler: one event (system call, page fault or
/// other exception) of the thread in slot `badge`.
extern "C" fn on_event(badge: u64) -> ! {
    let slot = badge as usize % layout::MAX_THREADS;
    HANDLER_BUSY[slot].store(true, Ordering::Release);
    let at = layout::handler_utcb(slot);
    let u = native::utcb_at(at);
    let mut regs: Regs = [0; exc::WORDS];
    regs.copy_from_slice(&u.words[..exc::WORDS]);
    let cpu = SLOT_CPU
        .get(slot)
        .map(|c| c.load(Ordering::Relaxed))
        .unwrap_or(0);
    let c = Caller { utcb: at, cpu };
    let after = match regs[exc::VECTOR] {
        exc::SYSCALL => syscall::dispatch(c, slot, &mut regs),
        14 => page_fault(c, slot, &regs),
        v => {
            crash(c, slot, &regs, exception_name(v));
            After::End
        }
    };
    let u = native::utcb_at(at);
    u.typed = 0;
    match after {
        After::Resume => {
            u.words[..exc::WORDS].copy_from_slice(&regs);
            u.words[0] = exc::SET_STATE;
            u.untyped = exc::WORDS as u32;
        }
        After::End => {
            u.words[0] = exc::END;
            u.untyped = 1;
        }
    }
    // from here on only the reply, a few instructions: a reaper may free the
    // slot now. One that comes in exactly this window destroys the handler
    // before its reply; the kernel then frees the thread with it (the thread
    // only ends here, so nothing is lost), and the slot can be used again
    HANDLER_BUSY[slot].store(false, Ordering::Release);
    hc::reply()
}

fn exception_name(v: u64) -> &'static str {
    match v {
        0 => "divide error",
        1 => "debug trap",
        3 => "breakpoint (int3)",
        4 => "overflow",
        5 => "bound range exceeded",
        6 => "invalid opcode",
        7 => "FPU not available",
        13 => "general protection fault",
        16 => "x87 floating-point error",
        17 => "alignment check",
        19 => "SIMD floating-point error",
        _ => "exception",
    }
}

fn page_fault(c: Caller, slot: usize, regs: &Regs) -> After {
    let addr = regs[exc::ADDR];
    let error = regs[exc::ERROR];
    let access = if error & 0x10 != 0 {
        Access::Execute
    } else if error & 2 != 0 {
        Access::Write
    } else {
        Access::Read
    };
    let outcome = process::with(c, |p| match p.mem.fault(addr, access) {
        FaultAction::Resume => Ok(()),
        FaultAction::Back(b) => p.back(c, b).map_err(|e| {
            if e == Errno::ENOMEM {
                "out of memory: the memory quota is used up (or the roottask has none left)"
            } else {
                "the roottask refused to back memory"
            }
        }),
        FaultAction::Violation(v) => Err(v.reason()),
    });
    match outcome {
        Ok(()) => After::Resume,
        Err(why) => {
            crash(c, slot, regs, why);
            After::End
        }
    }
}

/// Reports the program as crashed; the roottask ends the component.
pub fn crash(c: Caller, slot: usize, regs: &Regs, why: &str) {
    let tid = process::with(c, |p| {
        p.vfs.flush_logs();
        p.threads[slot].as_ref().map(|t| t.tid).unwrap_or(0)
    });
    let text = format!(
        "{why} at rip {:#x}, address {:#x} (thread {tid})",
        regs[exc::RIP],
        regs[exc::ADDR]
    );
    roottask::crash(c, &text);
}

/// The main thread's start state.
pub fn initial_regs(entry: u64, sp: u64) -> Regs {
    let mut r: Regs = [0; exc::WORDS];
    r[exc::RIP] = entry;
    r[exc::RSP] = sp;
    r[exc::RFLAGS] = 0x202;
    r
}
