//! The devices of the guest-test protocol (`guest-tests/README.md`): COM1
//! output, the 16550 scratch register, the exit port 0xf4 and the test
//! device (I/O ports 0xE00.., MMIO page 0xD000_0000).
//!
//! Owns: the per-VM device registers and the console line buffer. Must not
//! touch: vCPU state; anything that needs a vCPU (commands, arguments, the
//! VM's end) is handed back to the exit loop as a [`PortEffect`].

use alloc::string::String;
use alloc::vec::Vec;

pub use guest_protocol::{
    COM1 as COM1_THR, COM1_SCRATCH, EXIT_PORT, MMIO_BASE, MMIO_SIZE, MM_ID_VALUE, TD_ARG0, TD_ARG1,
    TD_CMD, TD_COUNTER, TD_ID, TD_ID_VALUE, TD_MEM, TD_NOP, TD_SCRATCH, TD_SUM, TD_VCPU,
};

/// Longest console line kept; a guest that never sends `\n` gets its output
/// cut into lines of this length.
pub const MAX_LINE: usize = 512;

/// What a port write means beyond the device registers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortEffect {
    None,
    /// A complete console line (without `\n`).
    Line(String),
    /// The guest wrote this value to the exit port.
    Exit(u32),
    /// `TD_ARG0`/`TD_ARG1` (index 0/1) of the writing vCPU.
    Arg {
        index: usize,
        value: u32,
    },
    /// `TD_CMD` with this command value.
    Command(u32),
}

/// The per-VM device registers.
#[derive(Debug, Default)]
pub struct Devices {
    line: Vec<u8>,
    com1_scratch: u8,
    td_scratch: u32,
    td_counter: u32,
    td_sum: u32,
    mm_scratch: u64,
    mm_writes: u32,
    ram_mib: u32,
}

fn low_bytes(value: u32, size: u8) -> u32 {
    match size {
        1 => value & 0xff,
        2 => value & 0xffff,
        _ => value,
    }
}

impl Devices {
    pub fn new(ram_bytes: u64) -> Self {
        Devices {
            ram_mib: (ram_bytes >> 20) as u32,
            ..Devices::default()
        }
    }

    /// An IN of `size` bytes from `port` by vCPU `vcpu`; unassigned ports
    /// read as all ones, like an empty ISA bus.
    pub fn port_read(&mut self, port: u16, size: u8, vcpu: usize) -> u32 {
        let value = match port {
            COM1_SCRATCH => self.com1_scratch as u32,
            TD_ID => TD_ID_VALUE,
            TD_VCPU => vcpu as u32,
            TD_MEM => self.ram_mib,
            TD_SCRATCH => self.td_scratch,
            TD_COUNTER => {
                let v = self.td_counter;
                self.td_counter = v.wrapping_add(1);
                v
            }
            TD_SUM => self.td_sum,
            TD_NOP | TD_CMD | TD_ARG0 | TD_ARG1 => 0,
            _ => u32::MAX,
        };
        low_bytes(value, size)
    }

    /// An OUT of the low `size` bytes of `value` to `port`.
    pub fn port_write(&mut self, port: u16, size: u8, value: u32) -> PortEffect {
        let value = low_bytes(value, size);
        match port {
            COM1_THR => return self.serial_byte(value as u8),
            COM1_SCRATCH => self.com1_scratch = value as u8,
            EXIT_PORT => return PortEffect::Exit(value),
            TD_SCRATCH => self.td_scratch = value,
            TD_SUM => self.td_sum = self.td_sum.wrapping_add(value),
            TD_ARG0 => return PortEffect::Arg { index: 0, value },
            TD_ARG1 => return PortEffect::Arg { index: 1, value },
            TD_CMD => return PortEffect::Command(value),
            _ => {}
        }
        PortEffect::None
    }

    fn serial_byte(&mut self, byte: u8) -> PortEffect {
        if byte != b'\n' {
            self.line.push(byte);
            if self.line.len() < MAX_LINE {
                return PortEffect::None;
            }
        }
        PortEffect::Line(self.take_line())
    }

    fn take_line(&mut self) -> String {
        let line = self.line.iter().map(|&b| b as char).collect();
        self.line.clear();
        line
    }

    /// Output the guest sent without a final `\n`, if any.
    pub fn flush_line(&mut self) -> Option<String> {
        (!self.line.is_empty()).then(|| self.take_line())
    }

    /// A load of `buf.len()` bytes at `offset` into the MMIO page.
    pub fn mmio_read(&mut self, offset: u64, buf: &mut [u8]) {
        let reg = |offset: u64, regs: &Self| -> u8 {
            let (base, value) = match offset {
                0x000..=0x003 => (0x000, MM_ID_VALUE as u64),
                0x008..=0x00f => (0x008, regs.mm_scratch),
                0x010..=0x013 => (0x010, !regs.mm_scratch & 0xffff_ffff),
                0x018..=0x01b => (0x018, regs.mm_writes as u64),
                _ => return 0,
            };
            (value >> ((offset - base) * 8)) as u8
        };
        for (i, byte) in buf.iter_mut().enumerate() {
            *byte = reg(offset + i as u64, self);
        }
    }

    /// A store of `data` at `offset` into the MMIO page. Only `MM_SCRATCH`
    /// is writable; each store counts once in `MM_WRITES`.
    pub fn mmio_write(&mut self, offset: u64, data: &[u8]) {
        let mut hit = false;
        for (i, &byte) in data.iter().enumerate() {
            let at = offset + i as u64;
            if (0x008..0x010).contains(&at) {
                let shift = (at - 0x008) * 8;
                self.mm_scratch = (self.mm_scratch & !(0xff << shift)) | (byte as u64) << shift;
                hit = true;
            }
        }
        if hit {
            self.mm_writes = self.mm_writes.wrapping_add(1);
        }
    }
}
