//! Decoding of Intel VMX exits into the neutral [`Exit`].
//!
//! Owns: the basic exit reason numbers (SDM Vol. 3C, Appendix C) and the
//! layouts of the exit qualifications a VMM needs (I/O, CR access, EPT
//! violation) and of the exit interruption information. Must not touch: the
//! VMCS itself; a backend reads the fields and passes them in [`VmxExit`].

use crate::exit::{
    Access, CrAccess, CrOp, Direction, ExceptionExit, Exit, ExitReason, IoAccess, MsrAccess,
    PageFault, RawExit,
};

/// Basic exit reasons (bits 15:0 of the exit reason field).
pub mod reason {
    pub const EXCEPTION_OR_NMI: u32 = 0;
    pub const EXTERNAL_INTERRUPT: u32 = 1;
    pub const TRIPLE_FAULT: u32 = 2;
    pub const INIT: u32 = 3;
    pub const SIPI: u32 = 4;
    pub const INTERRUPT_WINDOW: u32 = 7;
    pub const NMI_WINDOW: u32 = 8;
    pub const TASK_SWITCH: u32 = 9;
    pub const CPUID: u32 = 10;
    pub const HLT: u32 = 12;
    pub const INVD: u32 = 13;
    pub const INVLPG: u32 = 14;
    pub const RDPMC: u32 = 15;
    pub const RDTSC: u32 = 16;
    pub const VMCALL: u32 = 18;
    pub const CR_ACCESS: u32 = 28;
    pub const DR_ACCESS: u32 = 29;
    pub const IO: u32 = 30;
    pub const RDMSR: u32 = 31;
    pub const WRMSR: u32 = 32;
    pub const INVALID_GUEST_STATE: u32 = 33;
    pub const MSR_LOADING: u32 = 34;
    pub const MWAIT: u32 = 36;
    pub const MONITOR: u32 = 39;
    pub const PAUSE: u32 = 40;
    pub const MACHINE_CHECK_ON_ENTRY: u32 = 41;
    pub const EPT_VIOLATION: u32 = 48;
    pub const EPT_MISCONFIG: u32 = 49;
    pub const RDTSCP: u32 = 51;
    pub const WBINVD: u32 = 54;
    pub const XSETBV: u32 = 55;
    /// Bit 31 of the exit reason: the VM entry failed.
    pub const ENTRY_FAILURE: u32 = 1 << 31;
}

/// The VMCS fields a decode needs, read by the backend after the exit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmxExit {
    /// Exit reason field (basic reason 15:0, entry failure bit 31).
    pub reason: u32,
    /// Exit qualification.
    pub qualification: u64,
    /// Guest-physical address (EPT violations/misconfigurations).
    pub guest_physical: u64,
    /// VM-exit interruption information (exception/NMI exits).
    pub interruption_info: u32,
    /// VM-exit interruption error code.
    pub interruption_error: u32,
    /// Guest RCX (the MSR index of RDMSR/WRMSR).
    pub rcx: u64,
}

/// Decodes a VMX exit.
pub fn decode(exit: &VmxExit) -> Exit {
    Exit {
        reason: decode_reason(exit),
        raw: RawExit::Vmx(exit.reason),
    }
}

fn decode_reason(exit: &VmxExit) -> ExitReason {
    use reason::*;
    let basic = exit.reason & 0xffff;
    if exit.reason & ENTRY_FAILURE != 0 {
        return ExitReason::InvalidState;
    }
    let q = exit.qualification;
    match basic {
        EXCEPTION_OR_NMI => decode_exception(exit.interruption_info, exit.interruption_error),
        EXTERNAL_INTERRUPT => ExitReason::ExternalInterrupt,
        TRIPLE_FAULT => ExitReason::Shutdown,
        INIT => ExitReason::Init,
        SIPI => ExitReason::Sipi { vector: q as u8 },
        INTERRUPT_WINDOW => ExitReason::InterruptWindow,
        NMI_WINDOW => ExitReason::NmiWindow,
        TASK_SWITCH => ExitReason::TaskSwitch,
        CPUID => ExitReason::Cpuid,
        HLT => ExitReason::Hlt,
        INVD => ExitReason::Invd,
        INVLPG => ExitReason::Invlpg,
        RDPMC => ExitReason::Rdpmc,
        RDTSC => ExitReason::Rdtsc,
        VMCALL => ExitReason::Hypercall,
        CR_ACCESS => ExitReason::CrAccess(decode_cr(q)),
        DR_ACCESS => ExitReason::DrAccess,
        IO => ExitReason::Io(decode_io(q)),
        RDMSR | WRMSR => ExitReason::Msr(MsrAccess {
            index: exit.rcx as u32,
            write: basic == WRMSR,
        }),
        INVALID_GUEST_STATE | MSR_LOADING | MACHINE_CHECK_ON_ENTRY => ExitReason::InvalidState,
        MWAIT => ExitReason::Mwait,
        MONITOR => ExitReason::Monitor,
        PAUSE => ExitReason::Pause,
        EPT_VIOLATION => ExitReason::NestedPageFault(decode_ept_violation(q, exit.guest_physical)),
        // A misconfigured entry is the VMM's own EPT bug, but to the guest it
        // is an access to memory without a usable mapping.
        EPT_MISCONFIG => ExitReason::NestedPageFault(PageFault {
            gpa: exit.guest_physical,
            access: Access::Read,
            present: true,
        }),
        RDTSCP => ExitReason::Rdtscp,
        WBINVD => ExitReason::Wbinvd,
        XSETBV => ExitReason::Xsetbv,
        _ => ExitReason::Other,
    }
}

/// I/O instruction qualification: size-1 in 2:0, IN in 3, string 4, REP 5,
/// port 31:16.
pub fn decode_io(q: u64) -> IoAccess {
    IoAccess {
        port: (q >> 16) as u16,
        // 0 = 1 byte, 1 = 2 bytes, 3 = 4 bytes (other values are reserved)
        size: match q & 7 {
            0 => 1,
            1 => 2,
            _ => 4,
        },
        direction: if q & (1 << 3) != 0 {
            Direction::In
        } else {
            Direction::Out
        },
        string: q & (1 << 4) != 0,
        rep: q & (1 << 5) != 0,
    }
}

/// CR access qualification: CR number 3:0, access type 5:4, GPR 11:8, LMSW
/// source 31:16.
pub fn decode_cr(q: u64) -> CrAccess {
    let gpr = Some(((q >> 8) & 0xf) as u8);
    let op = match (q >> 4) & 3 {
        0 => CrOp::Write { gpr },
        1 => CrOp::Read { gpr },
        2 => CrOp::Clts,
        _ => CrOp::Lmsw {
            source: Some((q >> 16) as u16),
        },
    };
    CrAccess {
        cr: (q & 0xf) as u8,
        op,
    }
}

/// EPT violation qualification: read 0, write 1, fetch 2, the entry's
/// read/write/execute permissions 5:3 (any set = a mapping exists).
pub fn decode_ept_violation(q: u64, gpa: u64) -> PageFault {
    let access = if q & (1 << 1) != 0 {
        Access::Write
    } else if q & (1 << 2) != 0 {
        Access::Execute
    } else {
        Access::Read
    };
    PageFault {
        gpa,
        access,
        present: q & (7 << 3) != 0,
    }
}

/// Exception/NMI exit: interruption info vector 7:0, type 10:8 (2 = NMI),
/// error code valid 11.
fn decode_exception(info: u32, error: u32) -> ExitReason {
    if (info >> 8) & 7 == 2 {
        return ExitReason::Nmi;
    }
    ExitReason::Exception(ExceptionExit {
        vector: info as u8,
        error_code: (info & (1 << 11) != 0).then_some(error),
    })
}
