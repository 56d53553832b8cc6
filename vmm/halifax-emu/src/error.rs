//! What `step` returns when an instruction does not complete.

use crate::memory::MemoryError;
use core::fmt;
use iced_x86::Code;

/// Exception vectors the emulator raises.
pub mod vector {
    /// Divide error.
    pub const DE: u8 = 0;
    /// Invalid opcode.
    pub const UD: u8 = 6;
    /// Device not available.
    pub const NM: u8 = 7;
    /// Stack-segment fault.
    pub const SS: u8 = 12;
    /// General protection.
    pub const GP: u8 = 13;
    /// Page fault.
    pub const PF: u8 = 14;
    /// Alignment check.
    pub const AC: u8 = 17;
}

/// Page-fault error code bits.
pub mod pf {
    /// The fault was a protection violation (0: page not present).
    pub const PRESENT: u32 = 1 << 0;
    /// The access was a write.
    pub const WRITE: u32 = 1 << 1;
    /// The access was a user-mode access.
    pub const USER: u32 = 1 << 2;
    /// A reserved bit was set in a paging-structure entry.
    pub const RSVD: u32 = 1 << 3;
    /// The access was an instruction fetch (reported only with NX or SMEP on).
    pub const FETCH: u32 = 1 << 4;
}

/// A guest exception for the VMM to inject; guest state is unchanged
/// (except for REP iterations already completed, as on hardware).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exception {
    /// Exception vector (see [`vector`]).
    pub vector: u8,
    /// Error code to push, if the vector has one.
    pub error_code: Option<u32>,
    /// The faulting linear address to load into CR2 (page faults only).
    pub cr2: Option<u64>,
}

impl Exception {
    /// #GP(0).
    pub const fn gp0() -> Exception {
        Exception {
            vector: vector::GP,
            error_code: Some(0),
            cr2: None,
        }
    }
    /// #SS(0).
    pub const fn ss0() -> Exception {
        Exception {
            vector: vector::SS,
            error_code: Some(0),
            cr2: None,
        }
    }
    /// #UD.
    pub const fn ud() -> Exception {
        Exception {
            vector: vector::UD,
            error_code: None,
            cr2: None,
        }
    }
    /// #NM.
    pub const fn nm() -> Exception {
        Exception {
            vector: vector::NM,
            error_code: None,
            cr2: None,
        }
    }
    /// #AC(0).
    pub const fn ac() -> Exception {
        Exception {
            vector: vector::AC,
            error_code: Some(0),
            cr2: None,
        }
    }
    /// #PF with `error_code` at linear address `cr2`.
    pub const fn page_fault(error_code: u32, cr2: u64) -> Exception {
        Exception {
            vector: vector::PF,
            error_code: Some(error_code),
            cr2: Some(cr2),
        }
    }
}

/// Why `step` did not complete an instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmuError {
    /// The instruction raises this exception: inject it into the guest.
    Exception(Exception),
    /// The emulator does not implement this instruction (or this form of
    /// it). The VMM normally injects #UD.
    Unsupported {
        /// iced-x86's name of the instruction form.
        code: Code,
    },
    /// A physical access failed; see [`MemoryError`] for what to do.
    Memory(MemoryError),
}

impl From<Exception> for EmuError {
    fn from(e: Exception) -> Self {
        EmuError::Exception(e)
    }
}

impl From<MemoryError> for EmuError {
    fn from(e: MemoryError) -> Self {
        EmuError::Memory(e)
    }
}

impl fmt::Display for EmuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EmuError::Exception(e) => {
                write!(f, "guest exception vector {}", e.vector)?;
                if let Some(code) = e.error_code {
                    write!(f, " error code {code:#x}")?;
                }
                if let Some(cr2) = e.cr2 {
                    write!(f, " cr2 {cr2:#x}")?;
                }
                write!(f, ": inject it into the guest")
            }
            EmuError::Unsupported { code } => {
                write!(f, "instruction {code:?} is not emulated: inject #UD")
            }
            EmuError::Memory(m) => write!(f, "memory access failed: {m}"),
        }
    }
}
