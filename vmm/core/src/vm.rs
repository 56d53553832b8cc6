//! The VM and its per-vCPU exit loop.
//!
//! Owns: the VM-wide state every vCPU handler shares (devices, the end of
//! the VM, the exit budget, recall handles), the initial Multiboot state and
//! the handling of every exit through `with_state`. Must not touch: how
//! vCPUs run (the backend) or how threads, memory and the console are
//! provided (the [`Platform`] and [`GuestMemory`] of the host).
//!
//! A host loads the guest with [`Vm::load`], creates one backend vCPU per
//! handler thread and calls [`Vm::run_vcpu`] on each; every call returns
//! when the VM has ended, and [`Vm::outcome`] says how.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering};
use guest_protocol::{
    CMD_INVALID_STATE, CMD_IRQ_NOW, CMD_IRQ_ON_HLT, CMD_RECALL_IRQ, CMD_TSC_ADVANCE,
};

use halifax_emu::{EmuError, Emulator};
use spin::Mutex;
use vcpu_api::{
    interruptibility, Backend, CompletedWrite, Controls, Direction, EventInfo, ExitReason,
    IoAccess, Segment, TableRegister, Vcpu, VcpuState, WriteTarget,
};

use crate::cpuid::{self, CpuidResult};
use crate::devices::{Devices, PortEffect, MMIO_BASE, MMIO_SIZE};
use crate::emulate::{Bus, StateCpu};
use crate::instructions;
use crate::loader::{self, BootImage, LoadError};
use crate::memory::GuestMemory;
use crate::msr::{self, MsrFile};
use crate::outcome::{ExitCounters, Outcome};

/// What the VMM needs from its host.
pub trait Platform: Sync {
    /// Prints one line of guest console output.
    fn console_line(&self, line: &str);
    /// Executes CPUID on the host.
    fn host_cpuid(&self, leaf: u32, subleaf: u32) -> CpuidResult;
    /// Runs `job` on a thread other than the caller's after about
    /// `delay_ms` milliseconds.
    fn after(&self, delay_ms: u32, job: Box<dyn FnOnce() + Send>);
    /// Called repeatedly while a halted vCPU waits for a request or the VM's
    /// end: give the CPU away for a short while.
    fn idle(&self);
}

/// Limits and sizes of a VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmConfig {
    /// Number of vCPUs that will call `run_vcpu` (at most [`MAX_VCPUS`]).
    pub vcpus: usize,
    /// Exits of all vCPUs together after which the VM is stopped.
    pub max_exits: u64,
}

/// vCPUs of the guest-test start protocol.
pub const MAX_VCPUS: usize = 4;

impl Default for VmConfig {
    fn default() -> Self {
        VmConfig {
            vcpus: 1,
            max_exits: 1_000_000,
        }
    }
}

/// EAX of the boot vCPU (Multiboot v1) and of the others ("UPCV").
pub const BOOT_MAGIC: u64 = guest_protocol::BOOT_MAGIC as u64;
pub const SECONDARY_MAGIC: u64 = guest_protocol::SECONDARY_MAGIC as u64;

const RFLAGS_IF: u64 = 1 << 9;
const CR0_PE: u64 = 1;
const CR0_ET: u64 = 1 << 4;
const CR0_PG: u64 = 1 << 31;
const VECTOR_GP: u8 = 13;
const VECTOR_UD: u8 = 6;
const VECTOR_PF: u8 = 14;

type Wake = Arc<dyn Fn() + Send + Sync>;

/// One VM: guest RAM, devices and the shared end state.
pub struct Vm<'a> {
    ram: &'a dyn GuestMemory,
    platform: &'a dyn Platform,
    config: VmConfig,
    devices: Mutex<Devices>,
    emulator: Emulator,
    outcome: Mutex<Option<Outcome>>,
    stopped: AtomicBool,
    exits: AtomicU64,
    dead_halted: AtomicUsize,
    wakers: Mutex<Vec<Wake>>,
}

/// What the exit loop does after a handler ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Next {
    Resume,
    /// Stay stopped at a HLT until a request or the VM's end;
    /// `dead`: interrupts are off, only the VM's end can follow.
    Wait {
        dead: bool,
    },
    Stop,
}

/// Per-vCPU handler state.
struct Ctx {
    index: usize,
    entry: u64,
    args: [u32; 2],
    pending_irq: Option<u8>,
    irq_on_hlt: Option<u8>,
    /// Set by the RECALL_IRQ timer: 0x100 | vector.
    recall_irq: Arc<AtomicU16>,
    wake: Wake,
    msrs: MsrFile,
    counters: ExitCounters,
    invalid_state_requested: bool,
}

impl<'a> Vm<'a> {
    pub fn new(ram: &'a dyn GuestMemory, platform: &'a dyn Platform, config: VmConfig) -> Self {
        Vm {
            ram,
            platform,
            config: VmConfig {
                vcpus: config.vcpus.clamp(1, MAX_VCPUS),
                ..config
            },
            devices: Mutex::new(Devices::new(ram.size())),
            emulator: Emulator::default(),
            outcome: Mutex::new(None),
            stopped: AtomicBool::new(false),
            exits: AtomicU64::new(0),
            dead_halted: AtomicUsize::new(0),
            wakers: Mutex::new(Vec::new()),
        }
    }

    /// Loads a Multiboot v1 ELF guest into RAM.
    pub fn load(&self, image: &[u8]) -> Result<BootImage, LoadError> {
        loader::load(image, self.ram)
    }

    /// How the VM ended (`None` while it runs).
    pub fn outcome(&self) -> Option<Outcome> {
        *self.outcome.lock()
    }

    pub fn stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// Ends the VM with `outcome` (the first call wins) and recalls every
    /// vCPU so its handler sees the end.
    pub fn stop(&self, outcome: Outcome) {
        {
            let mut slot = self.outcome.lock();
            if slot.is_none() {
                *slot = Some(outcome);
            }
        }
        if let Some(line) = self.devices.lock().flush_line() {
            self.platform.console_line(&line);
        }
        self.stopped.store(true, Ordering::Release);
        let wakers: Vec<Wake> = self.wakers.lock().clone();
        for wake in wakers {
            wake();
        }
    }

    /// Runs vCPU `index` of a guest loaded at `boot` until the VM ends;
    /// returns this vCPU's exit counters. Call it on the vCPU's handler
    /// thread, once per vCPU.
    pub fn run_vcpu<B: Backend>(
        &self,
        index: usize,
        vcpu: &mut Vcpu<B>,
        boot: BootImage,
    ) -> ExitCounters {
        let requester = vcpu.requester();
        let wake: Wake = Arc::new(move || requester.request());
        self.wakers.lock().push(wake.clone());
        let mut ctx = Ctx {
            index,
            entry: boot.entry,
            args: [0; 2],
            pending_irq: None,
            irq_on_hlt: None,
            recall_irq: Arc::new(AtomicU16::new(0)),
            wake,
            msrs: MsrFile::default(),
            counters: ExitCounters::default(),
            invalid_state_requested: false,
        };
        let mut fresh = true;
        let mut requested = false;
        while !self.stopped() {
            requested |= vcpu.take_request();
            let mut next = Next::Stop;
            let result = vcpu.with_state(|s| {
                next = self.handle(&mut ctx, s, fresh, requested);
                next == Next::Resume
            });
            requested = false;
            if let Err(error) = result {
                self.stop(if ctx.invalid_state_requested {
                    Outcome::InvalidState {
                        vcpu: index,
                        requested: true,
                        raw: vcpu_api::RawExit::Synthetic,
                    }
                } else {
                    Outcome::Backend { vcpu: index, error }
                });
                if ctx.invalid_state_requested {
                    self.platform.console_line(&alloc::format!(
                        "vmm: the host refused the invalid state: {error}"
                    ));
                }
                break;
            }
            match next {
                Next::Resume => fresh = true,
                Next::Stop => break,
                Next::Wait { dead } => {
                    fresh = false;
                    requested = self.wait(vcpu, dead);
                }
            }
        }
        ctx.counters
    }

    /// Waits while the vCPU is halted; returns whether a request came.
    fn wait<B: Backend>(&self, vcpu: &Vcpu<B>, dead: bool) -> bool {
        if dead && self.dead_halted.fetch_add(1, Ordering::AcqRel) + 1 >= self.config.vcpus {
            self.stop(Outcome::AllHalted);
        }
        let mut requested = false;
        while !self.stopped() {
            if vcpu.take_request() {
                requested = true;
                if !dead {
                    break;
                }
            }
            self.platform.idle();
        }
        if dead {
            self.dead_halted.fetch_sub(1, Ordering::AcqRel);
        }
        requested
    }

    fn handle(&self, ctx: &mut Ctx, s: &mut VcpuState, fresh: bool, requested: bool) -> Next {
        if self.stopped() {
            return Next::Stop;
        }
        let reason = s.exit.reason;
        if fresh {
            ctx.counters.count(&reason);
            let exits = self.exits.fetch_add(1, Ordering::Relaxed) + 1;
            if exits > self.config.max_exits {
                self.stop(Outcome::ExitFlood {
                    exits,
                    limit: self.config.max_exits,
                });
                return Next::Stop;
            }
            // An event whose delivery the exit interrupted goes in again.
            let vectoring = s.inj_info.value();
            if reason != ExitReason::Startup && vectoring.valid() {
                let error = s.inj_error.value();
                s.inject(vectoring, error);
            }
        }
        if requested || reason == ExitReason::Recall {
            let irq = ctx.recall_irq.swap(0, Ordering::AcqRel);
            if irq & 0x100 != 0 {
                ctx.pending_irq = Some(irq as u8);
            }
        }
        let next = match reason {
            ExitReason::Startup => {
                initial_state(s, ctx.entry, ctx.index);
                s.xcr0
                    .charge(cpuid::start_xcr0(|l, sub| self.platform.host_cpuid(l, sub)));
                Next::Resume
            }
            ExitReason::Recall | ExitReason::ExternalInterrupt => Next::Resume,
            // A spin loop's PAUSE (the exit is opt-in): go on after it, or a loop
            // whose exit resumes at the same PAUSE would never make progress.
            ExitReason::Pause => {
                s.skip_instruction();
                Next::Resume
            }
            ExitReason::Nmi | ExitReason::Init | ExitReason::Sipi { .. } => Next::Resume,
            ExitReason::Io(io) => self.port_io(ctx, s, io),
            ExitReason::NestedPageFault(pf) => {
                if (MMIO_BASE..MMIO_BASE + MMIO_SIZE).contains(&pf.gpa) {
                    self.emulate(ctx, s)
                } else {
                    self.stop(Outcome::UnmappedAccess {
                        vcpu: ctx.index,
                        gpa: pf.gpa,
                        access: pf.access,
                        rip: s.ip.value(),
                    });
                    Next::Stop
                }
            }
            ExitReason::Completed(write) => self.completed_write(ctx, s, write),
            ExitReason::Msr(m) => {
                if m.write {
                    let value = s.rdx.value() << 32 | (s.rax.value() & 0xffff_ffff);
                    if msr::write(m.index, value, s, &mut ctx.msrs) {
                        s.skip_instruction();
                    } else {
                        s.inject(EventInfo::exception(VECTOR_GP, true), 0);
                    }
                } else if let Some(value) = msr::read(m.index, ctx.index, s, &ctx.msrs) {
                    s.rax.charge(value & 0xffff_ffff);
                    s.rdx.charge(value >> 32);
                    s.skip_instruction();
                } else {
                    s.inject(EventInfo::exception(VECTOR_GP, true), 0);
                }
                Next::Resume
            }
            ExitReason::Cpuid => {
                let (leaf, subleaf) = (s.rax.value() as u32, s.rcx.value() as u32);
                let host = |leaf, sub| self.platform.host_cpuid(leaf, sub);
                let mut r = cpuid::answer(leaf, subleaf, ctx.index, s.cr4.value(), host);
                if leaf == 0xd && r.eax != 0 {
                    if let Some(size) = cpuid::xsave_area_size(subleaf, s.xcr0.value(), host) {
                        r.ebx = size;
                    }
                }
                s.rax.charge(r.eax as u64);
                s.rbx.charge(r.ebx as u64);
                s.rcx.charge(r.ecx as u64);
                s.rdx.charge(r.edx as u64);
                s.skip_instruction();
                Next::Resume
            }
            ExitReason::Xsetbv => {
                self.xsetbv(s);
                Next::Resume
            }
            ExitReason::Hlt => return self.hlt(ctx, s),
            ExitReason::InterruptWindow | ExitReason::NmiWindow => {
                s.ctrl.charge(Controls(0));
                Next::Resume
            }
            ExitReason::Wbinvd | ExitReason::Invd => {
                s.skip_instruction();
                Next::Resume
            }
            ExitReason::Hypercall | ExitReason::Monitor | ExitReason::Mwait => {
                s.inject(EventInfo::exception(VECTOR_UD, false), 0);
                Next::Resume
            }
            ExitReason::Exception(e) => {
                // Not intercepted on purpose; hand it back to the guest.
                s.inject(
                    EventInfo::exception(e.vector, e.error_code.is_some()),
                    e.error_code.unwrap_or(0),
                );
                Next::Resume
            }
            ExitReason::Shutdown => {
                self.stop(Outcome::TripleFault {
                    vcpu: ctx.index,
                    state: s.crash_summary(),
                });
                Next::Stop
            }
            ExitReason::InvalidState => {
                self.stop(Outcome::InvalidState {
                    vcpu: ctx.index,
                    requested: ctx.invalid_state_requested,
                    raw: s.exit.raw,
                });
                Next::Stop
            }
            ExitReason::CrAccess(access) if instructions::cr_access(s, access) => Next::Resume,
            ExitReason::Invlpg => {
                // Guest page tables are the hardware's (EPT/NPT): nothing to flush here.
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
            ExitReason::CrAccess(_)
            | ExitReason::DrAccess
            | ExitReason::Rdpmc
            | ExitReason::TaskSwitch
            | ExitReason::Other => {
                self.stop(Outcome::UnhandledExit {
                    vcpu: ctx.index,
                    reason,
                    raw: s.exit.raw,
                    rip: s.ip.value(),
                });
                Next::Stop
            }
        };
        if next == Next::Resume {
            deliver_pending_irq(ctx, s);
        }
        next
    }

    fn port_io(&self, ctx: &mut Ctx, s: &mut VcpuState, io: IoAccess) -> Next {
        // String forms, and any I/O whose length the backend did not report,
        // go through the emulator.
        if io.string || s.ip_len.value() == 0 {
            return self.emulate(ctx, s);
        }
        match io.direction {
            Direction::In => {
                let value = self.devices.lock().port_read(io.port, io.size, ctx.index) as u64;
                let rax = s.rax.value();
                let merged = match io.size {
                    1 => (rax & !0xff) | value,
                    2 => (rax & !0xffff) | value,
                    _ => value, // a 32-bit destination zero-extends
                };
                s.rax.charge(merged);
                s.skip_instruction();
                Next::Resume
            }
            Direction::Out => {
                let effect = self
                    .devices
                    .lock()
                    .port_write(io.port, io.size, s.rax.value() as u32);
                s.skip_instruction();
                self.apply(ctx, s, effect)
            }
        }
    }

    /// A write the host already executed: deliver it, skip nothing.
    fn completed_write(&self, ctx: &mut Ctx, s: &mut VcpuState, write: CompletedWrite) -> Next {
        let size = write.size.min(8) as usize;
        match write.target {
            WriteTarget::Port { port } => {
                let effect = self
                    .devices
                    .lock()
                    .port_write(port, size as u8, write.data as u32);
                self.apply(ctx, s, effect)
            }
            WriteTarget::Memory { gpa } if (MMIO_BASE..MMIO_BASE + MMIO_SIZE).contains(&gpa) => {
                self.devices
                    .lock()
                    .mmio_write(gpa - MMIO_BASE, &write.data.to_le_bytes()[..size]);
                Next::Resume
            }
            WriteTarget::Memory { gpa } => {
                self.stop(Outcome::UnmappedAccess {
                    vcpu: ctx.index,
                    gpa,
                    access: vcpu_api::Access::Write,
                    rip: s.ip.value(),
                });
                Next::Stop
            }
        }
    }

    fn emulate(&self, ctx: &mut Ctx, s: &mut VcpuState) -> Next {
        let mut bus = Bus {
            ram: self.ram,
            devices: &self.devices,
            vcpu: ctx.index,
            effects: Vec::new(),
        };
        let rip = s.ip.value();
        match self.emulator.step(&mut StateCpu(s), &mut bus, None) {
            Ok(_) => s.end_interrupt_shadow(),
            Err(EmuError::Exception(e)) => {
                if let Some(cr2) = e.cr2 {
                    s.cr2.charge(cr2);
                }
                let info = if e.vector == VECTOR_PF || e.error_code.is_some() {
                    EventInfo::exception(e.vector, e.error_code.is_some())
                } else {
                    EventInfo::exception(e.vector, false)
                };
                s.inject(info, e.error_code.unwrap_or(0));
            }
            Err(error) => {
                self.stop(Outcome::EmulationFailed {
                    vcpu: ctx.index,
                    rip,
                    error,
                });
                return Next::Stop;
            }
        }
        for effect in bus.effects {
            if self.apply(ctx, s, effect) == Next::Stop {
                return Next::Stop;
            }
        }
        Next::Resume
    }

    /// Acts on a port write's effect; the instruction is already skipped.
    fn apply(&self, ctx: &mut Ctx, s: &mut VcpuState, effect: PortEffect) -> Next {
        match effect {
            PortEffect::None => {}
            PortEffect::Line(line) => self.platform.console_line(&line),
            PortEffect::Exit(value) => {
                self.stop(Outcome::GuestExit { value });
                return Next::Stop;
            }
            PortEffect::Arg { index, value } => ctx.args[index & 1] = value,
            PortEffect::Command(cmd) => return self.command(ctx, s, cmd),
        }
        Next::Resume
    }

    /// Runs a test-device command (`guest-tests/README.md` section 3).
    fn command(&self, ctx: &mut Ctx, s: &mut VcpuState, cmd: u32) -> Next {
        let [arg0, arg1] = ctx.args;
        let vector = || u8::try_from(arg0).ok().filter(|v| *v >= 32);
        let protocol = |what| {
            self.stop(Outcome::ProtocolError {
                vcpu: ctx.index,
                what,
                value: cmd,
            });
            Next::Stop
        };
        match cmd {
            CMD_IRQ_NOW..=CMD_RECALL_IRQ if vector().is_none() => {
                return protocol("interrupt vector in TD_ARG0 outside 32..255");
            }
            CMD_IRQ_NOW => ctx.pending_irq = vector(),
            CMD_IRQ_ON_HLT => ctx.irq_on_hlt = vector(),
            CMD_RECALL_IRQ => {
                if !(1..=1000).contains(&arg1) {
                    return protocol("RECALL_IRQ delay in TD_ARG1 outside 1..1000 ms");
                }
                let flag = ctx.recall_irq.clone();
                let wake = ctx.wake.clone();
                let irq = 0x100 | arg0 as u16;
                self.platform.after(
                    arg1,
                    Box::new(move || {
                        flag.store(irq, Ordering::Release);
                        wake();
                    }),
                );
            }
            CMD_TSC_ADVANCE => {
                let advance = (arg1 as u64) << 32 | arg0 as u64;
                s.tsc_offset
                    .update(|offset| *offset = offset.wrapping_add(advance));
            }
            CMD_INVALID_STATE => {
                ctx.invalid_state_requested = true;
                s.cr0.update(|cr0| *cr0 = (*cr0 & !CR0_PE) | CR0_PG);
            }
            _ => return protocol("unknown TD_CMD command"),
        }
        Next::Resume
    }

    fn hlt(&self, ctx: &mut Ctx, s: &mut VcpuState) -> Next {
        let interrupts_on = s.flags.value() & RFLAGS_IF != 0;
        let irq = match ctx.irq_on_hlt.take() {
            Some(v) => Some(v),
            None if interrupts_on => ctx.pending_irq.take(),
            None => None,
        };
        match irq {
            Some(vector) => {
                // The interrupt ends the HLT: continue after it, outside any
                // STI shadow (the HLT itself ended that).
                s.skip_instruction();
                s.actv_state.charge(vcpu_api::activity::ACTIVE);
                s.inject(EventInfo::external_interrupt(vector), 0);
                Next::Resume
            }
            None => Next::Wait {
                dead: !interrupts_on,
            },
        }
    }

    fn xsetbv(&self, s: &mut VcpuState) {
        let leaf = self.platform.host_cpuid(0xd, 0);
        instructions::xsetbv(s, (leaf.edx as u64) << 32 | leaf.eax as u64);
    }
}

/// Injects the pending external interrupt if the guest can take it now,
/// otherwise asks for an interrupt-window exit.
fn deliver_pending_irq(ctx: &mut Ctx, s: &mut VcpuState) {
    let Some(vector) = ctx.pending_irq else {
        return;
    };
    let shadow = interruptibility::STI | interruptibility::MOV_SS;
    let busy = s.inj_info.charged() && s.inj_info.value().valid();
    let can_take = s.flags.value() & RFLAGS_IF != 0 && s.intr_state.value() & shadow == 0;
    if can_take && !busy {
        s.inject(EventInfo::external_interrupt(vector), 0);
        ctx.pending_irq = None;
        if s.ctrl.value().contains(Controls::INTERRUPT_WINDOW) {
            s.ctrl.charge(Controls(0));
        }
    } else if !s.ctrl.value().contains(Controls::INTERRUPT_WINDOW) {
        s.ctrl.charge(Controls(Controls::INTERRUPT_WINDOW));
    }
}

/// The Multiboot v1 entry state (`guest-tests/README.md` section 1): 32-bit
/// protected mode, paging off, flat segments, IF = 0.
pub fn initial_state(s: &mut VcpuState, entry: u64, index: usize) {
    let code = Segment {
        selector: 0x08,
        attributes: Segment::attributes(0xb, true, 0, true, false, true, true),
        limit: 0xffff_ffff,
        base: 0,
    };
    let data = Segment {
        selector: 0x10,
        attributes: Segment::attributes(0x3, true, 0, true, false, true, true),
        limit: 0xffff_ffff,
        base: 0,
    };
    for reg in [&mut s.ds, &mut s.es, &mut s.fs, &mut s.gs, &mut s.ss] {
        reg.charge(data);
    }
    s.cs.charge(code);
    // A busy 32-bit TSS and no LDT, as VM entry requires.
    s.tr.charge(Segment {
        selector: 0,
        attributes: Segment::attributes(0xb, false, 0, true, false, false, false),
        limit: 0x67,
        base: 0,
    });
    s.ldtr.charge(Segment {
        selector: 0,
        attributes: Segment::attributes(0x2, false, 0, false, false, false, false),
        limit: 0,
        base: 0,
    });
    s.gdtr.charge(TableRegister { limit: 0, base: 0 });
    s.idtr.charge(TableRegister { limit: 0, base: 0 });
    s.cr0.charge(CR0_PE | CR0_ET);
    s.cr2.charge(0);
    s.cr3.charge(0);
    s.cr4.charge(0);
    s.efer.charge(0);
    s.dr7.charge(0x400);
    s.xcr0.charge(1);
    s.flags.charge(2);
    s.ip.charge(entry);
    let magic = if index == 0 {
        BOOT_MAGIC
    } else {
        SECONDARY_MAGIC
    };
    for gpr in 0..16 {
        s.set_gpr(gpr, 0);
    }
    s.rax.charge(magic);
    s.rsi.charge(index as u64);
    s.inj_info.charge(EventInfo::NONE);
    s.intr_state.charge(0);
    s.actv_state.charge(vcpu_api::activity::ACTIVE);
    s.fpu.update(|f| {
        let bytes = f.bytes_mut();
        bytes.fill(0);
        bytes[0..2].copy_from_slice(&0x037fu16.to_le_bytes()); // FCW
        bytes[24..28].copy_from_slice(&0x1f80u32.to_le_bytes()); // MXCSR
    });
}
