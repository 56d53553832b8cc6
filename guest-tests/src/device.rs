//! The test device of README.md section 3: I/O registers at 0xE00 and the MMIO page
//! at guest-physical 0xD000_0000. Only guests marked "device" use it.
//!
//! Owns: ports 0xE00..0xE27 and the MMIO page. Must not touch: anything else.

use crate::{cpu, fail};

pub const TD_ID: u16 = 0xE00;
pub const TD_VCPU: u16 = 0xE04;
pub const TD_MEM: u16 = 0xE08;
pub const TD_SCRATCH: u16 = 0xE0C;
pub const TD_COUNTER: u16 = 0xE10;
pub const TD_SUM: u16 = 0xE14;
pub const TD_NOP: u16 = 0xE18;
pub const TD_CMD: u16 = 0xE1C;
pub const TD_ARG0: u16 = 0xE20;
pub const TD_ARG1: u16 = 0xE24;

/// `TD_ID` of a present device ("TDEV").
pub const TD_ID_VALUE: u32 = 0x5645_4454;

pub const CMD_IRQ_NOW: u32 = 1;
pub const CMD_IRQ_ON_HLT: u32 = 2;
pub const CMD_RECALL_IRQ: u32 = 3;
pub const CMD_TSC_ADVANCE: u32 = 4;
pub const CMD_INVALID_STATE: u32 = 5;

/// Guest-physical address of the MMIO page.
pub const MMIO_BASE: u64 = 0xD000_0000;
pub const MM_ID: u64 = 0x000;
pub const MM_SCRATCH: u64 = 0x008;
pub const MM_INVERT: u64 = 0x010;
pub const MM_WRITES: u64 = 0x018;
/// `MM_ID` of a present device ("MMIO").
pub const MM_ID_VALUE: u32 = 0x4F49_4D4D;

/// Guest-physical address the VMM leaves unmapped.
pub const UNMAPPED: u64 = 0xE000_0000;

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
