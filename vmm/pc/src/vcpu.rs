//! The exit loop of one vCPU, on its handler thread, through
//! [`Vcpu::with_state`].
//!
//! Owns: what each exit means for the machine (port I/O and MMIO to the
//! buses, APIC and other MSRs, CPUID, HLT, interrupt and NMI injection with
//! interrupt windows, INIT/SIPI, the end of the VM) and this vCPU's exit
//! counters. Must not touch: device state (the buses' devices own it) or how
//! the vCPU runs (the host's backend).
//!
//! An exit flows: the backend stops the vCPU -> `handle` reads the reason
//! and charges what changes (registers of an IN, `ip` past the instruction,
//! an event to inject) -> before resuming, [`inject_pending`] injects the
//! highest deliverable interrupt or asks for an interrupt window -> the
//! backend writes the charged fields back and runs the vCPU to its next exit.
//! A vCPU that halts waits on its [`Doorbell`](crate::doorbell::Doorbell)
//! until an interrupt controller, a timer or the VM's end rings it.

use std::sync::atomic::Ordering;

use vcpu_api::{
    interruptibility, Backend, Charged, CrAccess, CrOp, Direction, EventInfo, ExitReason, IoAccess,
    Vcpu, VcpuState, WriteTarget,
};
use vmm_core::ExitCounters;

use crate::boot;
use crate::emulate::{MachineMemory, StateCpu};
use crate::end::End;
use crate::irq::{is_apic_msr, Startup};
use crate::machine::Machine;
use vmm_platform::msr::{MsrError, MsrModel};

const RFLAGS_IF: u64 = 1 << 9;
const VECTOR_UD: u8 = 6;
const VECTOR_GP: u8 = 13;
const VECTOR_PF: u8 = 14;

/// What the loop does after a handler ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Next {
    Resume,
    /// Stay stopped at a HLT until the doorbell rings; `dead`: with
    /// interrupts off.
    Halt {
        dead: bool,
    },
    /// INIT: stopped until a SIPI.
    Park,
    Stop,
}

/// Per-vCPU handler state.
pub(crate) struct Ctx {
    pub index: u32,
    pub counters: ExitCounters,
    /// Running (false: waiting for a SIPI).
    running: bool,
    pending_sipi: Option<u8>,
    pending_nmi: bool,
    msrs: MsrModel,
}

impl Ctx {
    pub fn new(index: u32, running: bool, msrs: MsrModel) -> Self {
        Ctx {
            index,
            counters: ExitCounters::default(),
            running,
            pending_sipi: None,
            pending_nmi: false,
            msrs,
        }
    }
}

/// Runs vCPU `index` until the VM ends; returns its exit counters.
pub fn run<B: Backend>(m: &Machine, index: u32, vcpu: &mut Vcpu<B>) -> ExitCounters {
    let requester = vcpu.requester();
    let bell = m.doorbell(index);
    bell.connect(Box::new(move || requester.request()));
    let msrs = MsrModel::new(m.msr_platform);
    let mut ctx = Ctx::new(index, m.entry.starts_at_once(index), msrs);
    let mut fresh = true;
    while !m.stopped() {
        if !ctx.running {
            wait_for_sipi(m, &mut ctx);
            continue;
        }
        let _ = vcpu.take_request(); // the doorbell carries the news
        let mut next = Next::Stop;
        let result = vcpu.with_state(|s| {
            next = handle(m, &mut ctx, s, fresh);
            next == Next::Resume
        });
        if let Err(error) = result {
            m.stop(End::Host {
                vcpu: index,
                error: error.to_string(),
            });
            break;
        }
        fresh = next == Next::Resume;
        match next {
            Next::Resume => {}
            Next::Halt { dead } => m.idle(index, dead, || bell.wait(|| m.stopped())),
            Next::Park => ctx.running = false,
            Next::Stop => break,
        }
    }
    ctx.counters
}

/// An AP before its SIPI (or after an INIT): nothing runs until one comes.
fn wait_for_sipi(m: &Machine, ctx: &mut Ctx) {
    match m.irq.take_startup(ctx.index) {
        Some(Startup::Sipi(vector)) => {
            ctx.pending_sipi = Some(vector);
            ctx.running = true;
        }
        Some(Startup::Init) => {}
        None => {
            let bell = m.doorbell(ctx.index);
            m.idle(ctx.index, true, || bell.wait(|| m.stopped()));
        }
    }
}

/// Handles the exit in `s`; `fresh`: first look at this exit (counted and
/// checked against the limit once).
pub(crate) fn handle(m: &Machine, ctx: &mut Ctx, s: &mut VcpuState, fresh: bool) -> Next {
    if m.stopped() {
        return Next::Stop;
    }
    let reason = s.exit.reason;
    if fresh {
        ctx.counters.count(&reason);
        if let Err(end) = m.count_exit() {
            m.stop(end);
            return Next::Stop;
        }
        // An event whose delivery the exit interrupted goes in again.
        let vectoring = s.inj_info.value();
        if reason != ExitReason::Startup && vectoring.valid() {
            let error = s.inj_error.value();
            s.inject(vectoring, error);
        }
    }
    if let Some(vector) = ctx.pending_sipi.take() {
        boot::sipi_state(s, vector);
        s.tsc.charge(m.guest_tsc_now());
        return Next::Resume;
    }
    if reason != ExitReason::Startup && m.irq.take_startup(ctx.index) == Some(Startup::Init) {
        return Next::Park;
    }
    let next = match reason {
        ExitReason::Startup => {
            m.entry.start_state(s, ctx.index);
            s.tsc.charge(m.guest_tsc_now());
            Next::Resume
        }
        ExitReason::Recall
        | ExitReason::ExternalInterrupt
        | ExitReason::Pause
        | ExitReason::Nmi
        | ExitReason::InterruptWindow
        | ExitReason::NmiWindow => Next::Resume,
        ExitReason::Init => Next::Park,
        ExitReason::Sipi { .. } => Next::Resume,
        ExitReason::Io(io) => port_io(m, ctx, s, io),
        ExitReason::NestedPageFault(_) => emulate(m, ctx, s),
        ExitReason::Completed(write) => {
            let bytes = write.data.to_le_bytes();
            let data = &bytes[..(write.size as usize).clamp(1, 8)];
            match write.target {
                WriteTarget::Port { port } => m.port_write(port, data),
                WriteTarget::Memory { gpa } => m.mmio_write(ctx.index, gpa, data),
            }
            Next::Resume
        }
        ExitReason::Msr(access) => msr(m, ctx, s, access.index, access.write),
        ExitReason::Cpuid => {
            let (leaf, subleaf) = (s.rax.value() as u32, s.rcx.value() as u32);
            let r = m.cpuid(ctx.index, leaf, subleaf, s.cr4.value(), s.xcr0.value());
            s.rax.charge(r[0] as u64);
            s.rbx.charge(r[1] as u64);
            s.rcx.charge(r[2] as u64);
            s.rdx.charge(r[3] as u64);
            s.skip_instruction();
            Next::Resume
        }
        ExitReason::Xsetbv => {
            xsetbv(m, ctx, s);
            Next::Resume
        }
        ExitReason::Hlt => return hlt(m, ctx, s),
        ExitReason::Wbinvd | ExitReason::Invd | ExitReason::Invlpg => {
            s.skip_instruction();
            Next::Resume
        }
        ExitReason::Rdtsc | ExitReason::Rdtscp => {
            let tsc = s.tsc.value();
            s.rax.charge(tsc & 0xffff_ffff);
            s.rdx.charge(tsc >> 32);
            if reason == ExitReason::Rdtscp {
                s.rcx.charge(s.tsc_aux.value() & 0xffff_ffff);
            }
            s.skip_instruction();
            Next::Resume
        }
        ExitReason::CrAccess(access) if cr_access(s, access) => Next::Resume,
        ExitReason::Hypercall | ExitReason::Monitor | ExitReason::Mwait => {
            s.inject(EventInfo::exception(VECTOR_UD, false), 0);
            Next::Resume
        }
        ExitReason::Exception(e) => {
            s.inject(
                EventInfo::exception(e.vector, e.error_code.is_some()),
                e.error_code.unwrap_or(0),
            );
            Next::Resume
        }
        ExitReason::Shutdown => {
            m.stop(End::TripleFault {
                vcpu: ctx.index,
                rip: s.ip.value(),
            });
            Next::Stop
        }
        ExitReason::InvalidState => {
            m.stop(End::InvalidState {
                vcpu: ctx.index,
                raw: s.exit.raw,
            });
            Next::Stop
        }
        ExitReason::CrAccess(_)
        | ExitReason::DrAccess
        | ExitReason::Rdpmc
        | ExitReason::TaskSwitch
        | ExitReason::Other => {
            m.stop(End::UnhandledExit {
                vcpu: ctx.index,
                reason,
                raw: s.exit.raw,
                rip: s.ip.value(),
            });
            Next::Stop
        }
    };
    if m.stopped() {
        return Next::Stop;
    }
    if next == Next::Resume {
        inject_pending(m, ctx, s);
    }
    next
}

fn port_io(m: &Machine, ctx: &mut Ctx, s: &mut VcpuState, io: IoAccess) -> Next {
    // String forms, and any I/O whose length the backend did not report,
    // go through the emulator.
    if io.string || s.ip_len.value() == 0 {
        return emulate(m, ctx, s);
    }
    let size = (io.size as usize).clamp(1, 4);
    match io.direction {
        Direction::In => {
            let mut bytes = s.rax.value().to_le_bytes();
            if size == 4 {
                bytes[4..].fill(0); // a 32-bit destination zero-extends
            }
            m.port_read(io.port, &mut bytes[..size]);
            s.rax.charge(u64::from_le_bytes(bytes));
        }
        Direction::Out => {
            let bytes = s.rax.value().to_le_bytes();
            m.port_write(io.port, &bytes[..size]);
        }
    }
    s.skip_instruction();
    Next::Resume
}

fn emulate(m: &Machine, ctx: &mut Ctx, s: &mut VcpuState) -> Next {
    let rip = s.ip.value();
    let mut memory = MachineMemory {
        machine: m,
        vcpu: ctx.index,
    };
    match m.emulator.step(&mut StateCpu(s), &mut memory, None) {
        Ok(_) => Next::Resume,
        Err(halifax_emu::EmuError::Exception(e)) => {
            if let Some(cr2) = e.cr2 {
                s.cr2.charge(cr2);
            }
            let has_code = e.vector == VECTOR_PF || e.error_code.is_some();
            s.inject(
                EventInfo::exception(e.vector, has_code && e.error_code.is_some()),
                e.error_code.unwrap_or(0),
            );
            Next::Resume
        }
        Err(error) => {
            m.stop(End::EmulationFailed {
                vcpu: ctx.index,
                rip,
                error: error.to_string(),
            });
            Next::Stop
        }
    }
}

fn msr(m: &Machine, ctx: &mut Ctx, s: &mut VcpuState, index: u32, write: bool) -> Next {
    let vcpu = ctx.index;
    let result = if write {
        let value = s.rdx.value() << 32 | (s.rax.value() & 0xffff_ffff);
        match ctx.msrs.write(s, index, value) {
            Err(MsrError::NotMine(_)) if is_apic_msr(index) => {
                if m.irq.wrmsr(vcpu, index, value) {
                    Ok(())
                } else {
                    Err(MsrError::Refused { msr: index, value })
                }
            }
            other => other.map(|_effect| ()),
        }
    } else {
        let value = match ctx.msrs.read(s, index) {
            Err(MsrError::NotMine(_)) if is_apic_msr(index) => {
                m.irq.rdmsr(vcpu, index).ok_or(MsrError::Refused {
                    msr: index,
                    value: 0,
                })
            }
            other => other,
        };
        value.map(|value| {
            s.rax.charge(value & 0xffff_ffff);
            s.rdx.charge(value >> 32);
        })
    };
    match result {
        Ok(()) => s.skip_instruction(),
        Err(error) => {
            if let MsrError::Unknown(msr) = error {
                let what = if write { "WRMSR" } else { "RDMSR" };
                m.warn_once(
                    "msr",
                    msr as u64,
                    &format!("vCPU {vcpu}: {what} {msr:#x} is not modelled; the guest gets #GP (logged once)"),
                );
            }
            s.inject(EventInfo::exception(VECTOR_GP, true), 0);
        }
    }
    Next::Resume
}

fn hlt(m: &Machine, ctx: &mut Ctx, s: &mut VcpuState) -> Next {
    let interrupts_on = s.flags.value() & RFLAGS_IF != 0;
    let wakes = ctx.pending_nmi
        || m.irq.take_nmi(ctx.index) && {
            ctx.pending_nmi = true;
            true
        }
        || interrupts_on && m.irq.next_interrupt(ctx.index).is_some();
    if !wakes {
        return Next::Halt {
            dead: !interrupts_on,
        };
    }
    // The event ends the HLT: continue after it, outside any shadow.
    s.skip_instruction();
    s.intr_state
        .update(|i| *i &= !(interruptibility::STI | interruptibility::MOV_SS));
    s.actv_state.charge(vcpu_api::activity::ACTIVE);
    inject_pending(m, ctx, s);
    Next::Resume
}

/// Injects a pending NMI or the highest deliverable interrupt if the guest
/// can take it now; otherwise asks for an interrupt-window exit.
pub(crate) fn inject_pending(m: &Machine, ctx: &mut Ctx, s: &mut VcpuState) {
    let vcpu = ctx.index;
    if m.irq.take_nmi(vcpu) {
        ctx.pending_nmi = true;
    }
    let mut busy = s.inj_info.value().valid();
    if ctx.pending_nmi && !busy && s.intr_state.value() & interruptibility::NMI == 0 {
        s.inject(EventInfo::nmi(), 0);
        ctx.pending_nmi = false;
        busy = true;
    }
    let shadow = interruptibility::STI | interruptibility::MOV_SS;
    let can_take = !busy && s.flags.value() & RFLAGS_IF != 0 && s.intr_state.value() & shadow == 0;
    let window = s
        .ctrl
        .value()
        .contains(vcpu_api::Controls::INTERRUPT_WINDOW);
    match m.irq.next_interrupt(vcpu) {
        Some(vector) if can_take => {
            s.inject(EventInfo::external_interrupt(vector), 0);
            m.irq.ack(vcpu, vector);
            if window {
                s.ctrl.charge(vcpu_api::Controls(0));
            }
        }
        Some(_) if !window => s
            .ctrl
            .charge(vcpu_api::Controls(vcpu_api::Controls::INTERRUPT_WINDOW)),
        None if window => s.ctrl.charge(vcpu_api::Controls(0)),
        _ => {}
    }
}

fn xsetbv(m: &Machine, ctx: &mut Ctx, s: &mut VcpuState) {
    let value = s.rdx.value() << 32 | (s.rax.value() & 0xffff_ffff);
    let leaf = m.cpuid(ctx.index, 0xd, 0, s.cr4.value(), s.xcr0.value());
    let supported = (leaf[3] as u64) << 32 | leaf[0] as u64;
    let (x87, sse, avx) = (1, 2, 4);
    let valid = s.rcx.value() as u32 == 0
        && value & x87 != 0
        && value & !supported == 0
        && (value & avx == 0 || value & sse != 0);
    if valid {
        s.xcr0.charge(value);
        s.skip_instruction();
    } else {
        s.inject(EventInfo::exception(VECTOR_GP, true), 0);
    }
}

fn control_register(s: &mut VcpuState, cr: u8) -> Option<&mut Charged<u64>> {
    match cr {
        0 => Some(&mut s.cr0),
        2 => Some(&mut s.cr2),
        3 => Some(&mut s.cr3),
        4 => Some(&mut s.cr4),
        _ => None,
    }
}

/// Carries out a decoded control-register access (hosts that intercept
/// them); `false` when it cannot.
fn cr_access(s: &mut VcpuState, access: CrAccess) -> bool {
    const CR0_TS: u64 = 1 << 3;
    if s.ip_len.value() == 0 || control_register(s, access.cr).is_none() {
        return false;
    }
    match access.op {
        CrOp::Write { gpr: Some(gpr) } => match (s.gpr(gpr), control_register(s, access.cr)) {
            (Some(value), Some(cr)) => cr.charge(value),
            _ => return false,
        },
        CrOp::Read { gpr: Some(gpr) } => {
            let value = control_register(s, access.cr).map_or(0, |cr| cr.value());
            if !s.set_gpr(gpr, value) {
                return false;
            }
        }
        CrOp::Clts if access.cr == 0 => s.cr0.update(|v| *v &= !CR0_TS),
        CrOp::Lmsw { source: Some(msw) } if access.cr == 0 => s
            .cr0
            .update(|v| *v = (*v & !0xf) | (*v & 1) | (msw as u64 & 0xf)),
        _ => return false,
    }
    s.skip_instruction();
    true
}

/// Exits of all vCPUs together, against the configured limit.
pub(crate) fn over_limit(exits: &std::sync::atomic::AtomicU64, limit: Option<u64>) -> Option<End> {
    let exits = exits.fetch_add(1, Ordering::Relaxed) + 1;
    match limit {
        Some(limit) if exits > limit => Some(End::ExitFlood { exits, limit }),
        _ => None,
    }
}
