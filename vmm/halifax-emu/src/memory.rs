//! The guest's physical address space and I/O ports as the emulator sees
//! them: the [`Memory`] trait.
//!
//! The emulator only ever hands this trait *physical* addresses (it does the
//! page walk itself). Whether an address is RAM or a device register is the
//! implementor's business: it dispatches MMIO to its device models.

use core::fmt;

/// Why a physical or port access failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryError {
    /// Nothing (neither RAM nor a device) backs this guest-physical address.
    /// A VMM usually treats this as a bus error or ignores the write.
    Unmapped {
        /// The guest-physical address.
        gpa: u64,
    },
    /// The access cannot complete now (e.g. the device model wants to run
    /// asynchronously). Nothing of the current instruction was committed
    /// unless it is a REP instruction, whose registers reflect the iterations
    /// done; re-run `step` later.
    Retry,
}

impl fmt::Display for MemoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemoryError::Unmapped { gpa } => {
                write!(
                    f,
                    "guest-physical address {gpa:#x} is not backed by RAM or a device"
                )
            }
            MemoryError::Retry => write!(f, "the access must be retried later"),
        }
    }
}

/// Guest-physical memory, MMIO and port I/O.
///
/// Accesses never cross a 4 KiB page boundary: the emulator splits them.
pub trait Memory {
    /// Reads `buf.len()` bytes at guest-physical `gpa` (RAM or MMIO).
    fn read(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), MemoryError>;

    /// Writes `data` at guest-physical `gpa` (RAM or MMIO).
    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), MemoryError>;

    /// Atomically writes `new` at `gpa` if the bytes there equal `expected`;
    /// returns whether it wrote. Used for LOCKed instructions, XCHG and page
    /// table A/D updates. For MMIO, where no other agent races, an
    /// implementation may simply write and return `true`.
    fn compare_and_write(
        &mut self,
        gpa: u64,
        expected: &[u8],
        new: &[u8],
    ) -> Result<bool, MemoryError>;

    /// Reads `buf.len()` (1, 2 or 4) bytes from I/O port `port` (INS).
    fn io_read(&mut self, port: u16, buf: &mut [u8]) -> Result<(), MemoryError>;

    /// Writes `data` (1, 2 or 4 bytes) to I/O port `port` (OUTS).
    fn io_write(&mut self, port: u16, data: &[u8]) -> Result<(), MemoryError>;
}
