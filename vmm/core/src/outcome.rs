//! How a VM ended, and the per-reason exit counters.
//!
//! Owns: the report a VMM prints at the end. Must not touch: the exit loop.

use alloc::collections::BTreeMap;
use core::fmt;

use halifax_emu::EmuError;
use vcpu_api::{Access, CrashSummary, ExitReason, RawExit, VcpuError};

/// The exit-port value of a passing guest.
pub const PASS_VALUE: u32 = 0x10;

/// Why the VM stopped. Every hostile or broken guest ends in one of these;
/// only [`Outcome::GuestExit`] with [`PASS_VALUE`] is a pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The guest wrote `value` to port 0xf4.
    GuestExit { value: u32 },
    /// A vCPU triple-faulted (shutdown); `state`: its registers at the fault.
    TripleFault { vcpu: usize, state: CrashSummary },
    /// The VM made more exits than the limit allows.
    ExitFlood { exits: u64, limit: u64 },
    /// A vCPU touched guest-physical memory that is neither RAM nor a device.
    UnmappedAccess {
        vcpu: usize,
        gpa: u64,
        access: Access,
        rip: u64,
    },
    /// The hardware (or host) refused to enter the guest with its state.
    /// `requested`: the guest asked for this through `INVALID_STATE`.
    InvalidState {
        vcpu: usize,
        requested: bool,
        raw: RawExit,
    },
    /// The instruction at `rip` could not be emulated.
    EmulationFailed {
        vcpu: usize,
        rip: u64,
        error: EmuError,
    },
    /// The guest broke the guest<->VMM protocol (bad command or argument).
    ProtocolError {
        vcpu: usize,
        what: &'static str,
        value: u32,
    },
    /// An exit this VMM has no handler for.
    UnhandledExit {
        vcpu: usize,
        reason: ExitReason,
        raw: RawExit,
        rip: u64,
    },
    /// Every vCPU halted with interrupts off: nothing can wake the VM.
    AllHalted,
    /// The vCPU backend failed.
    Backend { vcpu: usize, error: VcpuError },
}

impl Outcome {
    /// Whether the guest reported PASS.
    pub fn passed(&self) -> bool {
        *self == Outcome::GuestExit { value: PASS_VALUE }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Outcome::GuestExit { value } if value == PASS_VALUE => {
                write!(f, "guest reported PASS ({value:#x} on port 0xf4)")
            }
            Outcome::GuestExit { value } => {
                write!(f, "guest reported failure ({value:#x} on port 0xf4)")
            }
            Outcome::TripleFault { vcpu, state } => write!(
                f,
                "vCPU {vcpu} triple-faulted (shutdown); VM stopped; its state: {state}"
            ),
            Outcome::ExitFlood { exits, limit } => write!(
                f,
                "the guest flooded the VMM with exits ({exits} exits, limit {limit}); VM stopped"
            ),
            Outcome::UnmappedAccess { vcpu, gpa, access, rip } => write!(
                f,
                "vCPU {vcpu} accessed unmapped guest-physical memory: {access:?} at GPA={gpa:#x} (RIP={rip:#x}); VM stopped"
            ),
            Outcome::InvalidState { vcpu, requested, raw } => write!(
                f,
                "VM entry of vCPU {vcpu} failed: invalid guest state ({}; raw exit {raw:?}); VM stopped",
                if requested { "the guest asked for it with INVALID_STATE" } else { "not requested by the guest" }
            ),
            Outcome::EmulationFailed { vcpu, rip, error } => write!(
                f,
                "vCPU {vcpu}: cannot emulate the instruction at RIP={rip:#x}: {error}; VM stopped"
            ),
            Outcome::ProtocolError { vcpu, what, value } => write!(
                f,
                "vCPU {vcpu} broke the guest-test protocol: {what} ({value:#x}); VM stopped"
            ),
            Outcome::UnhandledExit { vcpu, reason, raw, rip } => write!(
                f,
                "vCPU {vcpu}: no handler for exit {reason:?} (raw {raw:?}) at RIP={rip:#x}; VM stopped"
            ),
            Outcome::AllHalted => f.write_str(
                "every vCPU halted with interrupts disabled; nothing can wake the VM; VM stopped",
            ),
            Outcome::Backend { vcpu, error } => write!(f, "vCPU {vcpu}: {error}; VM stopped"),
        }
    }
}

/// Exits counted by kind (the [`ExitReason`] variant name).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExitCounters(BTreeMap<&'static str, u64>);

/// The counter name of an exit reason.
pub fn exit_name(reason: &ExitReason) -> &'static str {
    match reason {
        ExitReason::Startup => "startup",
        ExitReason::Recall => "recall",
        ExitReason::Io(io) if io.string => "io-string",
        ExitReason::Io(_) => "io",
        ExitReason::NestedPageFault(_) => "nested-page-fault",
        ExitReason::Completed(_) => "completed-write",
        ExitReason::Msr(m) if m.write => "wrmsr",
        ExitReason::Msr(_) => "rdmsr",
        ExitReason::Cpuid => "cpuid",
        ExitReason::Hlt => "hlt",
        ExitReason::Pause => "pause",
        ExitReason::InterruptWindow => "interrupt-window",
        ExitReason::NmiWindow => "nmi-window",
        ExitReason::CrAccess(_) => "cr-access",
        ExitReason::DrAccess => "dr-access",
        ExitReason::Invlpg => "invlpg",
        ExitReason::Xsetbv => "xsetbv",
        ExitReason::Hypercall => "hypercall",
        ExitReason::Rdtsc => "rdtsc",
        ExitReason::Rdtscp => "rdtscp",
        ExitReason::Rdpmc => "rdpmc",
        ExitReason::Wbinvd => "wbinvd",
        ExitReason::Invd => "invd",
        ExitReason::Monitor => "monitor",
        ExitReason::Mwait => "mwait",
        ExitReason::TaskSwitch => "task-switch",
        ExitReason::Exception(_) => "exception",
        ExitReason::Nmi => "nmi",
        ExitReason::ExternalInterrupt => "external-interrupt",
        ExitReason::Init => "init",
        ExitReason::Sipi { .. } => "sipi",
        ExitReason::Shutdown => "shutdown",
        ExitReason::InvalidState => "invalid-state",
        ExitReason::Other => "other",
    }
}

impl ExitCounters {
    pub fn count(&mut self, reason: &ExitReason) {
        *self.0.entry(exit_name(reason)).or_insert(0) += 1;
    }

    /// Adds another vCPU's counters.
    pub fn merge(&mut self, other: &ExitCounters) {
        for (name, n) in &other.0 {
            *self.0.entry(name).or_insert(0) += n;
        }
    }

    pub fn get(&self, name: &str) -> u64 {
        self.0.get(name).copied().unwrap_or(0)
    }

    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }
}

impl fmt::Display for ExitCounters {
    /// One `name count` pair per line, then the total.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, n) in &self.0 {
            writeln!(f, "exits {name}: {n}")?;
        }
        write!(f, "exits total: {}", self.total())
    }
}
