//! The test device of README.md section 3: I/O registers at 0xE00 and the MMIO page
//! at guest-physical 0xD000_0000. Only guests marked "device" use it.
//!
//! Owns: ports 0xE00..0xE27 and the MMIO page. Must not touch: anything else.

use crate::{cpu, fail};

pub use guest_protocol::{
    CMD_INVALID_STATE, CMD_IRQ_NOW, CMD_IRQ_ON_HLT, CMD_RECALL_IRQ, CMD_TSC_ADVANCE, MMIO_BASE,
    MM_ID, MM_ID_VALUE, MM_INVERT, MM_SCRATCH, MM_WRITES, TD_ARG0, TD_ARG1, TD_CMD, TD_COUNTER,
    TD_ID, TD_ID_VALUE, TD_MEM, TD_NOP, TD_SCRATCH, TD_SUM, TD_VCPU, UNMAPPED,
};

/// Fails the test unless the test device answers.
pub fn require() {
    let id = cpu::inl(TD_ID);
    if id != TD_ID_VALUE {
        fail!(
            "test device absent (TD_ID read {:#x}, expected {:#x})",
            id,
            TD_ID_VALUE
        );
    }
}

/// Runs command `cmd` with its two arguments.
pub fn command(cmd: u32, arg0: u32, arg1: u32) {
    cpu::outl(TD_ARG0, arg0);
    cpu::outl(TD_ARG1, arg1);
    cpu::outl(TD_CMD, cmd);
}
