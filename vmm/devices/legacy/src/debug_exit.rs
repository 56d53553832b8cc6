//! QEMU's isa-debug-exit: a write ends the VM with a status of the guest's
//! choosing (for test guests).
//!
//! Owns: turning a write into [`PowerEvent::DebugExit`]. Must not touch:
//! what the machine does with it (QEMU's convention is to exit with
//! `(value << 1) | 1`, so a guest can never fake a clean exit 0).

use crate::{read_bytewise, PowerEvent, PowerEvents};
use vmm_bus::BusDevice;

/// The port and its width (a 4-byte register).
pub const DEBUG_EXIT_PORT: u16 = 0xf4;
pub const DEBUG_EXIT_LEN: u64 = 4;

/// The bus device for [`DEBUG_EXIT_PORT`]..+[`DEBUG_EXIT_LEN`].
pub struct DebugExit {
    events: PowerEvents,
}

impl DebugExit {
    pub fn new(events: PowerEvents) -> DebugExit {
        DebugExit { events }
    }
}

impl BusDevice for DebugExit {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        read_bytewise(offset, data, |_| 0xff); // nothing to read
    }

    /// The written bytes, little-endian at their offset in the register, are
    /// the value (`outb 0xf4, 3` and `outl 0xf4, 3` both give 3).
    fn write(&mut self, offset: u64, data: &[u8]) {
        let mut value = 0u32;
        for (i, &byte) in data.iter().enumerate() {
            let position = offset + i as u64;
            if position < DEBUG_EXIT_LEN {
                value |= (byte as u32) << (8 * position);
            }
        }
        (self.events)(PowerEvent::DebugExit(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{inb, power_events};

    #[test]
    fn writes_of_any_width_exit_with_their_value() {
        let (events, seen) = power_events();
        let mut dev = DebugExit::new(events);
        dev.write(0, &[0x10]);
        dev.write(0, &0x1234u16.to_le_bytes());
        dev.write(0, &0xdead_beefu32.to_le_bytes());
        dev.write(1, &[0x01]);
        assert_eq!(
            *seen.lock().unwrap(),
            vec![
                PowerEvent::DebugExit(0x10),
                PowerEvent::DebugExit(0x1234),
                PowerEvent::DebugExit(0xdead_beef),
                PowerEvent::DebugExit(0x100),
            ]
        );
        assert_eq!(inb(&mut dev, 0), 0xff);
    }
}
