//! The exit loop of one vCPU, on its handler thread, through
//! [`Vcpu::with_state`].
//!
//! Owns: what each exit means for the machine (port I/O and MMIO to the
//! buses, APIC and other MSRs, CPUID, HLT, interrupt and NMI injection with
//! interrupt windows, INIT/SIPI, the end of the VM). Must not touch: device
//! state (the buses' devices own it), the exit counters (the machine's) or
//! how the vCPU runs (the host's backend).
//!
//! An exit flows: the backend stops the vCPU -> `handle` reads the reason
//! and charges what changes (registers of an IN, `ip` past the instruction,
//! an event to inject) -> before resuming, [`inject_pending`] injects the
//! highest deliverable interrupt or asks for an interrupt window -> the
//! backend writes the charged fields back and runs the vCPU to its next exit.
//! A vCPU that halts waits on its [`Doorbell`](crate::doorbell::Doorbell)
//! until an interrupt controller, a timer or the VM's end rings it.

use std::sync::atomic::Ordering;

use guest_protocol::{
    CMD_INVALID_STATE, CMD_IRQ_NOW, CMD_IRQ_ON_HLT, CMD_RECALL_IRQ, CMD_TSC_ADVANCE,
};
use vcpu_api::{
    interruptibility, Backend, CompletedWrite, Direction, EventInfo, ExitReason, IoAccess, RawExit,
    Vcpu, VcpuState, WriteTarget,
};
use vmm_core::devices::PortEffect;

use crate::boot;
use crate::emulate::MachineMemory;
use crate::end::End;
use crate::irq::{is_apic_msr, Startup};
use crate::machine::Machine;
use vmm_core::{instructions, StateCpu};
use vmm_platform::msr::{MsrEffect, MsrError, MsrModel};

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
    /// The guest reset the machine: stopped until every vCPU gathers.
    Restart,
    Stop,
}

/// Per-vCPU handler state.
pub(crate) struct Ctx {
    pub index: u32,
    /// Running (false: waiting for a SIPI).
    running: bool,
    pending_sipi: Option<u8>,
    pending_nmi: bool,
    msrs: MsrModel,
    /// The test device's `TD_ARG0`/`TD_ARG1` as this vCPU wrote them.
    test_args: [u32; 2],
    /// The test device's `IRQ_ON_HLT` vector, injected at the next HLT.
    irq_on_hlt: Option<u8>,
    /// The guest asked for an invalid state (`INVALID_STATE`).
    invalid_state_requested: bool,
    /// Restarted: the next look charges the power-on state, as at the
    /// first (synthetic) start-up exit.
    power_on: bool,
    /// The vCPU has run (kept across restarts).
    has_run: bool,
    /// The guest TSC minus the host's, as the machine moved it since the
    /// vCPU started (the backend's `tsc_offset` may count from elsewhere).
    tsc_offset: u64,
}

impl Ctx {
    pub fn new(index: u32, running: bool, msrs: MsrModel) -> Self {
        Ctx {
            index,
            running,
            pending_sipi: None,
            pending_nmi: false,
            msrs,
            test_args: [0; 2],
            irq_on_hlt: None,
            invalid_state_requested: false,
            power_on: false,
            has_run: false,
            tsc_offset: 0,
        }
    }

    /// After a restart: as new (the machine keeps the exit counters); a
    /// vCPU that starts at once gets its power-on state at the next look,
    /// the others wait for a SIPI.
    fn restart(&mut self, running: bool, msrs: MsrModel) {
        *self = Ctx {
            power_on: running,
            has_run: self.has_run,
            ..Ctx::new(self.index, running, msrs)
        };
    }
}

/// Runs vCPU `index` until the VM ends (its exits are counted in `m`).
pub fn run<B: Backend>(m: &Machine, index: u32, vcpu: &mut Vcpu<B>) {
    let requester = vcpu.requester();
    let bell = m.doorbell(index);
    bell.connect(Box::new(move || requester.request()));
    let msrs = MsrModel::new(m.msr_platform);
    let mut ctx = Ctx::new(index, m.entry.starts_at_once(index), msrs);
    let mut fresh = true;
    while !m.stopped() {
        if m.life.restart_requested() {
            if !m.gather_for_restart() {
                break;
            }
            let msrs = MsrModel::new(m.msr_platform);
            ctx.restart(m.entry.starts_at_once(index), msrs);
            fresh = false; // the exit the restart cut short is dropped
            continue;
        }
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
            m.stop(if ctx.invalid_state_requested {
                End::InvalidState {
                    vcpu: index,
                    raw: RawExit::Synthetic,
                    requested: true,
                }
            } else {
                End::Host {
                    vcpu: index,
                    error: error.to_string(),
                }
            });
            break;
        }
        fresh = next == Next::Resume;
        ctx.has_run |= fresh;
        match next {
            Next::Resume => {}
            Next::Halt { dead } => m.idle(index, dead, || bell.wait(|| m.stopped())),
            Next::Park => ctx.running = false,
            Next::Restart => {}
            Next::Stop => break,
        }
    }
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
    if let Some(next) = machine_stops(m) {
        return next;
    }
    let reason = match std::mem::take(&mut ctx.power_on) {
        true => ExitReason::Startup,
        false => s.exit.reason,
    };
    if fresh {
        if let Err(end) = m.count_exit(ctx.index, &reason) {
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
        start_extras(m, ctx, s);
        return Next::Resume;
    }
    if reason != ExitReason::Startup && m.irq.take_startup(ctx.index) == Some(Startup::Init) {
        return Next::Park;
    }
    let next = match reason {
        ExitReason::Startup => {
            m.entry.start_state(s, ctx.index);
            start_extras(m, ctx, s);
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
        ExitReason::Completed(write) => completed_write(m, ctx, s, write),
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
        ExitReason::CrAccess(access) if instructions::cr_access(s, access) => Next::Resume,
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
            let [code, gate] = crate::emulate::crash_walks(m, s);
            eprintln!(
                "tern-vmm: vCPU {} triple-faulted; its page walks in guest RAM: code {code}; double-fault gate {gate}",
                ctx.index
            );
            m.stop(End::TripleFault {
                vcpu: ctx.index,
                state: s.crash_summary(),
            });
            Next::Stop
        }
        ExitReason::InvalidState => {
            m.stop(End::InvalidState {
                vcpu: ctx.index,
                raw: s.exit.raw,
                requested: ctx.invalid_state_requested,
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
    if let Some(next) = machine_stops(m) {
        return next;
    }
    if next == Next::Resume {
        inject_pending(m, ctx, s);
    }
    next
}

/// What every start (power-on, restart, SIPI) charges beside the
/// architectural start state: XCR0, the TSC (the host's: offset 0). A vCPU that has run keeps its
/// FPU registers (the Tern backend cannot write them after the first
/// entry; guests initialise them, Linux does).
fn start_extras(m: &Machine, ctx: &mut Ctx, s: &mut VcpuState) {
    s.xcr0.charge(m.start_xcr0());
    s.tsc.charge(m.guest_tsc_now());
    ctx.tsc_offset = 0;
    m.irq.set_tsc_offset(ctx.index, 0);
    if ctx.has_run {
        s.fpu.discharge();
    }
}

/// This vCPU's TSC moved by `delta` ticks (a WRMSR to IA32_TSC, the test
/// device's `TSC_ADVANCE`): the TSC-deadline timer must see it too.
fn move_tsc(m: &Machine, ctx: &mut Ctx, delta: u64) {
    ctx.tsc_offset = ctx.tsc_offset.wrapping_add(delta);
    m.irq.set_tsc_offset(ctx.index, ctx.tsc_offset);
}

/// The VM ended, or the machine restarts: the vCPU must not run on.
fn machine_stops(m: &Machine) -> Option<Next> {
    if m.stopped() {
        Some(Next::Stop)
    } else if m.life.restart_requested() {
        Some(Next::Restart)
    } else {
        None
    }
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
            m.port_read(ctx.index, io.port, &mut bytes[..size]);
            s.rax.charge(u64::from_le_bytes(bytes));
            s.skip_instruction();
            Next::Resume
        }
        Direction::Out => {
            let bytes = s.rax.value().to_le_bytes();
            let effect = m.port_write(io.port, &bytes[..size]);
            s.skip_instruction();
            test_effect(m, ctx, s, effect)
        }
    }
}

/// A write the host already carried out (KVM): deliver it, skip nothing.
fn completed_write(m: &Machine, ctx: &mut Ctx, s: &mut VcpuState, write: CompletedWrite) -> Next {
    let bytes = write.data.to_le_bytes();
    let data = &bytes[..(write.size as usize).clamp(1, 8)];
    match write.target {
        WriteTarget::Port { port } => {
            let effect = m.port_write(port, data);
            test_effect(m, ctx, s, effect)
        }
        WriteTarget::Memory { gpa } => {
            m.mmio_write(ctx.index, s.ip.value(), gpa, data);
            Next::Resume
        }
    }
}

fn emulate(m: &Machine, ctx: &mut Ctx, s: &mut VcpuState) -> Next {
    let rip = s.ip.value();
    let mut memory = MachineMemory {
        machine: m,
        vcpu: ctx.index,
        rip,
        effects: Vec::new(),
    };
    let result = m.emulator.step(&mut StateCpu(s), &mut memory, None);
    for effect in memory.effects {
        if test_effect(m, ctx, s, effect) == Next::Stop {
            return Next::Stop;
        }
    }
    match result {
        Ok(_) => {
            s.end_interrupt_shadow();
            Next::Resume
        }
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
        let offset_before = s.tsc_offset.value();
        match ctx.msrs.write(s, index, value) {
            Ok(MsrEffect::TscOffset(offset)) => {
                move_tsc(m, ctx, offset.wrapping_sub(offset_before));
                Ok(())
            }
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
    let on_hlt = ctx.irq_on_hlt.take();
    let wakes = on_hlt.is_some()
        || ctx.pending_nmi
        || m.irq.take_nmi(ctx.index) && {
            ctx.pending_nmi = true;
            true
        }
        || interrupts_on && next_interrupt(m, ctx.index).is_some();
    if !wakes {
        return Next::Halt {
            dead: !interrupts_on,
        };
    }
    // The event ends the HLT: continue after it, outside any shadow.
    s.skip_instruction();
    s.actv_state.charge(vcpu_api::activity::ACTIVE);
    if let Some(vector) = on_hlt {
        s.inject(EventInfo::external_interrupt(vector), 0);
    }
    inject_pending(m, ctx, s);
    Next::Resume
}

/// Where the next interrupt comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Interrupt {
    /// The interrupt controllers' highest deliverable vector.
    Controllers(u8),
    /// A vector the test device raised for this vCPU.
    TestDevice(u8),
}

/// The next interrupt for `vcpu`: the test device's first (its guests run
/// without a local APIC), then the controllers'.
fn next_interrupt(m: &Machine, vcpu: u32) -> Option<Interrupt> {
    let test = m.test.as_ref().and_then(|t| t.pending(vcpu));
    test.map(Interrupt::TestDevice)
        .or_else(|| m.irq.next_interrupt(vcpu).map(Interrupt::Controllers))
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
    match next_interrupt(m, vcpu) {
        Some(interrupt) if can_take => {
            let vector = match interrupt {
                Interrupt::Controllers(vector) => {
                    m.irq.ack(vcpu, vector);
                    vector
                }
                Interrupt::TestDevice(vector) => {
                    if let Some(test) = &m.test {
                        test.ack(vcpu, vector);
                    }
                    vector
                }
            };
            s.inject(EventInfo::external_interrupt(vector), 0);
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

/// Acts on what a port write meant beyond the device registers: the test
/// device's arguments and commands (the instruction is already skipped).
fn test_effect(m: &Machine, ctx: &mut Ctx, s: &mut VcpuState, effect: PortEffect) -> Next {
    match effect {
        PortEffect::Arg { index, value } => ctx.test_args[index & 1] = value,
        PortEffect::Command(cmd) => return test_command(m, ctx, s, cmd),
        // Console lines and the exit port are the machine's own devices.
        PortEffect::None | PortEffect::Line(_) | PortEffect::Exit(_) => {}
    }
    Next::Resume
}

/// Runs a test-device command (`guest-tests/README.md` section 3) for this
/// vCPU; a bad command or argument stops the VM.
fn test_command(m: &Machine, ctx: &mut Ctx, s: &mut VcpuState, cmd: u32) -> Next {
    const CR0_PE: u64 = 1;
    const CR0_PG: u64 = 1 << 31;
    let Some(test) = &m.test else {
        return Next::Resume;
    };
    let (vcpu, [arg0, arg1]) = (ctx.index, ctx.test_args);
    let protocol = |what| {
        m.stop(End::TestProtocol {
            vcpu,
            what,
            value: cmd,
        });
        Next::Stop
    };
    let vector = u8::try_from(arg0).ok().filter(|v| *v >= 32);
    match (cmd, vector) {
        (CMD_IRQ_NOW..=CMD_RECALL_IRQ, None) => {
            return protocol("interrupt vector in TD_ARG0 outside 32..255")
        }
        (CMD_IRQ_NOW, Some(vector)) => test.raise(vcpu, vector),
        (CMD_IRQ_ON_HLT, Some(vector)) => ctx.irq_on_hlt = Some(vector),
        (CMD_RECALL_IRQ, Some(vector)) => {
            if !(1..=1000).contains(&arg1) {
                return protocol("RECALL_IRQ delay in TD_ARG1 outside 1..1000 ms");
            }
            test.raise_after(vcpu, vector, arg1);
        }
        (CMD_TSC_ADVANCE, _) => {
            let advance = (arg1 as u64) << 32 | arg0 as u64;
            s.tsc_offset.update(|o| *o = o.wrapping_add(advance));
            move_tsc(m, ctx, advance);
        }
        (CMD_INVALID_STATE, _) => {
            // Paging without protected mode: no host enters that.
            ctx.invalid_state_requested = true;
            s.cr0.update(|cr0| *cr0 = (*cr0 & !CR0_PE) | CR0_PG);
        }
        _ => return protocol("unknown TD_CMD command"),
    }
    Next::Resume
}

fn xsetbv(m: &Machine, ctx: &mut Ctx, s: &mut VcpuState) {
    let leaf = m.cpuid(ctx.index, 0xd, 0, s.cr4.value(), s.xcr0.value());
    instructions::xsetbv(s, (leaf[3] as u64) << 32 | leaf[0] as u64);
}

/// Exits of all vCPUs together, against the configured limit.
pub(crate) fn over_limit(exits: &std::sync::atomic::AtomicU64, limit: Option<u64>) -> Option<End> {
    let exits = exits.fetch_add(1, Ordering::Relaxed) + 1;
    match limit {
        Some(limit) if exits > limit => Some(End::ExitFlood { exits, limit }),
        _ => None,
    }
}
