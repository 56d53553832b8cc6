//! How a VM ended and what the VMM's exit status says about it.
//!
//! Owns: the [`End`] of a VM, its message and exit status. Must not touch:
//! the exit loop (which decides when a VM ends).

use std::fmt;

use vcpu_api::{Access, CrashSummary, ExitReason, RawExit};

/// Why the VM stopped. The first end wins; later ones are ignored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    /// ACPI S5 (`poweroff`).
    PowerOff,
    /// The guest reset the machine (reset register, keyboard controller,
    /// `reboot`) and the configuration says `on-reset = "exit"`.
    Reset,
    /// The guest reset the machine `resets` times within `seconds`: a reset
    /// loop, not restarted again.
    ResetLoop { resets: usize, seconds: u64 },
    /// The machine could not be started again after a reset (the kernel
    /// could not be reloaded).
    RestartFailed(String),
    /// isa-debug-exit at port 0xf4 was written with this value.
    DebugExit(u32),
    /// A vCPU triple-faulted; `state` is its registers
    /// ([`vcpu_api::VcpuState::crash_summary`]).
    TripleFault { vcpu: u32, state: CrashSummary },
    /// The host refused to enter the guest with its state; `requested`: the
    /// guest asked for it (the test device's `INVALID_STATE`).
    InvalidState {
        vcpu: u32,
        raw: RawExit,
        requested: bool,
    },
    /// A load or store where no RAM and no device is, with
    /// `unmapped-mmio = "stop"`.
    UnmappedAccess {
        vcpu: u32,
        gpa: u64,
        access: Access,
        rip: u64,
    },
    /// A guest broke the test device's protocol (unknown command, bad argument).
    TestProtocol {
        vcpu: u32,
        what: &'static str,
        value: u32,
    },
    /// More exits than the configured limit.
    ExitFlood { exits: u64, limit: u64 },
    /// The instruction behind an MMIO or string I/O exit could not be emulated.
    EmulationFailed { vcpu: u32, rip: u64, error: String },
    /// An exit the machine has no handler for.
    UnhandledExit {
        vcpu: u32,
        reason: ExitReason,
        raw: RawExit,
        rip: u64,
    },
    /// Every vCPU halted with interrupts off and nothing left to wake them.
    AllHalted,
    /// The vCPU backend or host failed.
    Host { vcpu: u32, error: String },
}

impl End {
    /// The VMM's exit status: 0 after a power-off, `(value << 1) | 1` after
    /// a debug exit (as QEMU), 1 for every other end.
    pub fn exit_status(&self) -> u8 {
        match self {
            End::PowerOff => 0,
            End::DebugExit(value) => ((value << 1) | 1) as u8,
            _ => 1,
        }
    }
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            End::PowerOff => f.write_str("the guest powered off (ACPI S5)"),
            End::Reset => f.write_str(
                "the guest reset the machine; VM stopped (on-reset = \"exit\")",
            ),
            End::ResetLoop { resets, seconds } => write!(
                f,
                "the guest reset the machine {resets} times within {seconds} s, a reset loop; VM stopped (set on-reset = \"exit\" to stop at the first reset and see why)"
            ),
            End::RestartFailed(error) => write!(
                f,
                "the guest reset the machine and it could not start again: {error}; VM stopped"
            ),
            End::DebugExit(v) => write!(f, "the guest wrote {v:#x} to isa-debug-exit (port 0xf4)"),
            End::TripleFault { vcpu, state } => write!(
                f,
                "vCPU {vcpu} triple-faulted (shutdown); VM stopped. Its state: {state}"
            ),
            End::InvalidState {
                vcpu,
                raw,
                requested,
            } => write!(
                f,
                "VM entry of vCPU {vcpu} failed: invalid guest state ({}; raw exit {raw:?}); VM stopped",
                if *requested {
                    "the guest asked for it with INVALID_STATE"
                } else {
                    "not requested by the guest"
                }
            ),
            End::UnmappedAccess {
                vcpu,
                gpa,
                access,
                rip,
            } => write!(
                f,
                "vCPU {vcpu} accessed unmapped guest-physical memory: {access:?} at GPA={gpa:#x} (RIP={rip:#x}); VM stopped"
            ),
            End::TestProtocol { vcpu, what, value } => write!(
                f,
                "vCPU {vcpu} broke the guest-test protocol: {what} ({value:#x}); VM stopped"
            ),
            End::ExitFlood { exits, limit } => write!(
                f,
                "the guest flooded the VMM with exits ({exits} exits, limit {limit}); VM stopped"
            ),
            End::EmulationFailed { vcpu, rip, error } => write!(
                f,
                "vCPU {vcpu}: cannot emulate the instruction at RIP={rip:#x}: {error}; VM stopped"
            ),
            End::UnhandledExit {
                vcpu,
                reason,
                raw,
                rip,
            } => write!(
                f,
                "vCPU {vcpu}: no handler for exit {reason:?} (raw {raw:?}) at RIP={rip:#x}; VM stopped"
            ),
            End::AllHalted => f.write_str(
                "every vCPU halted with interrupts disabled; nothing can wake the VM; VM stopped",
            ),
            End::Host { vcpu, error } => write!(f, "vCPU {vcpu}: {error}; VM stopped"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_power_off_is_success_and_debug_exit_follows_qemu() {
        assert_eq!(End::PowerOff.exit_status(), 0);
        assert_eq!(End::DebugExit(0x10).exit_status(), 0x21);
        assert_eq!(End::DebugExit(0).exit_status(), 1);
        assert_eq!(End::Reset.exit_status(), 1);
        assert_eq!(End::AllHalted.exit_status(), 1);
        let msg = End::TripleFault {
            vcpu: 1,
            state: CrashSummary {
                rip: 0x10,
                ..CrashSummary::default()
            },
        }
        .to_string();
        assert!(msg.contains("vCPU 1") && msg.contains("RIP=0x10"), "{msg}");
    }
}
