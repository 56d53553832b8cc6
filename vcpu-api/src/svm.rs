//! Decoding of AMD SVM exits into the neutral [`Exit`].
//!
//! Owns: the EXITCODE values (APM Vol. 2, Appendix C) and the EXITINFO1/2
//! layouts a VMM needs (IOIO, NPF, MSR, CR access with decode assists,
//! exceptions). Must not touch: the VMCB itself; a backend passes the fields
//! in [`SvmExit`].

use crate::exit::{
    Access, CrAccess, CrOp, Direction, ExceptionExit, Exit, ExitReason, IoAccess, MsrAccess,
    PageFault, RawExit,
};

/// EXITCODE values.
pub mod code {
    /// 0x00-0x0f: read of CR0-CR15.
    pub const CR0_READ: u64 = 0x00;
    /// 0x10-0x1f: write of CR0-CR15.
    pub const CR0_WRITE: u64 = 0x10;
    /// 0x20-0x3f: DR0-DR15 read, then write.
    pub const DR0_READ: u64 = 0x20;
    pub const DR15_WRITE: u64 = 0x3f;
    /// 0x40-0x5f: exception vector 0-31.
    pub const EXCP_BASE: u64 = 0x40;
    pub const INTR: u64 = 0x60;
    pub const NMI: u64 = 0x61;
    pub const INIT: u64 = 0x63;
    pub const VINTR: u64 = 0x64;
    pub const CR0_SEL_WRITE: u64 = 0x65;
    pub const RDTSC: u64 = 0x6e;
    pub const RDPMC: u64 = 0x6f;
    pub const CPUID: u64 = 0x72;
    pub const INVD: u64 = 0x76;
    pub const PAUSE: u64 = 0x77;
    pub const HLT: u64 = 0x78;
    pub const INVLPG: u64 = 0x79;
    pub const IOIO: u64 = 0x7b;
    pub const MSR: u64 = 0x7c;
    pub const TASK_SWITCH: u64 = 0x7d;
    pub const SHUTDOWN: u64 = 0x7f;
    pub const VMMCALL: u64 = 0x81;
    pub const RDTSCP: u64 = 0x87;
    pub const WBINVD: u64 = 0x89;
    pub const MONITOR: u64 = 0x8a;
    pub const MWAIT: u64 = 0x8b;
    pub const MWAIT_CONDITIONAL: u64 = 0x8c;
    pub const XSETBV: u64 = 0x8d;
    pub const NPF: u64 = 0x400;
    /// VMRUN refused the guest state.
    pub const INVALID: u64 = u64::MAX;
}

/// The VMCB fields a decode needs, read by the backend after #VMEXIT.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SvmExit {
    pub code: u64,
    pub info1: u64,
    pub info2: u64,
    /// Guest RCX (the MSR index of RDMSR/WRMSR).
    pub rcx: u64,
}

/// Decodes an SVM exit.
pub fn decode(exit: &SvmExit) -> Exit {
    Exit {
        reason: decode_reason(exit),
        raw: RawExit::Svm(exit.code),
    }
}

fn decode_reason(exit: &SvmExit) -> ExitReason {
    use code::*;
    let c = exit.code;
    match c {
        0x00..=0x0f => ExitReason::CrAccess(CrAccess {
            cr: c as u8,
            op: CrOp::Read {
                gpr: decoded_gpr(exit.info1),
            },
        }),
        0x10..=0x1f => ExitReason::CrAccess(decode_cr_write((c - CR0_WRITE) as u8, exit.info1)),
        CR0_SEL_WRITE => ExitReason::CrAccess(decode_cr_write(0, exit.info1)),
        DR0_READ..=DR15_WRITE => ExitReason::DrAccess,
        0x40..=0x5f => {
            let vector = (c - EXCP_BASE) as u8;
            if vector == 2 {
                ExitReason::Nmi
            } else {
                ExitReason::Exception(ExceptionExit {
                    vector,
                    error_code: pushes_error_code(vector).then_some(exit.info1 as u32),
                })
            }
        }
        INTR => ExitReason::ExternalInterrupt,
        NMI => ExitReason::Nmi,
        INIT => ExitReason::Init,
        VINTR => ExitReason::InterruptWindow,
        RDTSC => ExitReason::Rdtsc,
        RDPMC => ExitReason::Rdpmc,
        CPUID => ExitReason::Cpuid,
        INVD => ExitReason::Invd,
        PAUSE => ExitReason::Pause,
        HLT => ExitReason::Hlt,
        INVLPG => ExitReason::Invlpg,
        IOIO => ExitReason::Io(decode_io(exit.info1)),
        MSR => ExitReason::Msr(MsrAccess {
            index: exit.rcx as u32,
            write: exit.info1 & 1 != 0,
        }),
        TASK_SWITCH => ExitReason::TaskSwitch,
        SHUTDOWN => ExitReason::Shutdown,
        VMMCALL => ExitReason::Hypercall,
        RDTSCP => ExitReason::Rdtscp,
        WBINVD => ExitReason::Wbinvd,
        MONITOR => ExitReason::Monitor,
        MWAIT | MWAIT_CONDITIONAL => ExitReason::Mwait,
        XSETBV => ExitReason::Xsetbv,
        NPF => ExitReason::NestedPageFault(decode_npf(exit.info1, exit.info2)),
        INVALID => ExitReason::InvalidState,
        _ => ExitReason::Other,
    }
}

/// Decode assists: EXITINFO1 bit 63 says bits 3:0 hold the GPR of a MOV CR.
fn decoded_gpr(info1: u64) -> Option<u8> {
    (info1 >> 63 != 0).then_some((info1 & 0xf) as u8)
}

/// A CR write: MOV CR when decode assists name a GPR, otherwise (for CR0)
/// LMSW/CLTS, which SVM does not tell apart.
fn decode_cr_write(cr: u8, info1: u64) -> CrAccess {
    CrAccess {
        cr,
        op: CrOp::Write {
            gpr: decoded_gpr(info1),
        },
    }
}

/// IOIO EXITINFO1: IN 0, string 2, REP 3, size one-hot in 6:4, port 31:16.
pub fn decode_io(info1: u64) -> IoAccess {
    let size = match (info1 >> 4) & 7 {
        0b001 => 1,
        0b010 => 2,
        _ => 4,
    };
    IoAccess {
        port: (info1 >> 16) as u16,
        size,
        direction: if info1 & 1 != 0 {
            Direction::In
        } else {
            Direction::Out
        },
        string: info1 & (1 << 2) != 0,
        rep: info1 & (1 << 3) != 0,
    }
}

/// NPF: EXITINFO1 is a page-fault error code (P 0, W 1, fetch 4),
/// EXITINFO2 the guest-physical address.
pub fn decode_npf(info1: u64, info2: u64) -> PageFault {
    let access = if info1 & (1 << 1) != 0 {
        Access::Write
    } else if info1 & (1 << 4) != 0 {
        Access::Execute
    } else {
        Access::Read
    };
    PageFault {
        gpa: info2,
        access,
        present: info1 & 1 != 0,
    }
}

/// Exceptions that push an error code (#DF, #TS, #NP, #SS, #GP, #PF, #AC,
/// #CP).
pub const fn pushes_error_code(vector: u8) -> bool {
    matches!(vector, 8 | 10..=14 | 17 | 21)
}
