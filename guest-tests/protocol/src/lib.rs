//! The guest <-> VMM protocol of the guest tests (`guest-tests/README.md`), in one
//! place for both sides: the guests (`guest-tests`) and the VMM (`vmm-core`).
//!
//! Owns: numbers only (ports, register offsets, values, commands, magics). Must not
//! touch: behaviour; each side implements its half.
#![no_std]

/// EAX of the boot vCPU at entry (Multiboot v1).
pub const BOOT_MAGIC: u32 = 0x2BAD_B002;
/// EAX of a secondary vCPU at entry ("UPCV"); ESI holds its number.
pub const SECONDARY_MAGIC: u32 = 0x5643_5055;

/// COM1's transmit register (output only) and its scratch register.
pub const COM1: u16 = 0x3f8;
pub const COM1_SCRATCH: u16 = 0x3ff;
/// The QEMU-compatible exit port and the values the guests write to it.
pub const EXIT_PORT: u16 = 0xf4;
pub const EXIT_PASS: u8 = 0x10;
pub const EXIT_FAIL: u8 = 0x11;

/// Test-device I/O registers.
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

/// `TD_CMD` commands.
pub const CMD_IRQ_NOW: u32 = 1;
pub const CMD_IRQ_ON_HLT: u32 = 2;
pub const CMD_RECALL_IRQ: u32 = 3;
pub const CMD_TSC_ADVANCE: u32 = 4;
pub const CMD_INVALID_STATE: u32 = 5;

/// The MMIO page: guest-physical address, size and register offsets.
pub const MMIO_BASE: u64 = 0xD000_0000;
pub const MMIO_SIZE: u64 = 0x1000;
pub const MM_ID: u64 = 0x000;
pub const MM_SCRATCH: u64 = 0x008;
pub const MM_INVERT: u64 = 0x010;
pub const MM_WRITES: u64 = 0x018;
/// `MM_ID` of a present device ("MMIO").
pub const MM_ID_VALUE: u32 = 0x4F49_4D4D;

/// Guest-physical address the VMM leaves unmapped.
pub const UNMAPPED: u64 = 0xE000_0000;

/// Guest RAM above 4 GiB (the `high-memory` guest): `[HIGH_RAM, HIGH_RAM +
/// HIGH_RAM_SIZE)`. The guest writes `HIGH_RAM_MAGIC ^ offset` into the first
/// qword of every 4 KiB page there (offset from `HIGH_RAM`), which the VMM can
/// check from its side after the PASS.
pub const HIGH_RAM: u64 = 0x1_0000_0000;
pub const HIGH_RAM_SIZE: u64 = 0x20_0000;
pub const HIGH_RAM_MAGIC: u64 = 0x4849_4748_5241_4d21;
