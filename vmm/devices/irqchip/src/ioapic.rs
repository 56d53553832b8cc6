//! The I/O APIC (82093AA register model, 24 pins): IOREGSEL at offset 0x00,
//! IOWIN at 0x10 and, from version 0x20, the EOI register at 0x40.
//!
//! Owns: the ID, the redirection table, the input levels and remote IRR.
//! Must not touch: delivery (it returns the [`Message`]s to send; the
//! caller puts them on the APIC bus) or locking.

use crate::message::{DeliveryMode, Destination, Message};

/// Input pins.
pub const IOAPIC_PINS: usize = 24;
/// The ID register's value after reset (the MADT's I/O APIC entry must say
/// the same).
pub const IOAPIC_ID: u8 = 0;

const REG_ID: u8 = 0x00;
const REG_VERSION: u8 = 0x01;
const REG_ARBITRATION: u8 = 0x02;
const REG_REDIRECTION: u8 = 0x10;

const MASKED: u64 = 1 << 16;
const LEVEL: u64 = 1 << 15;
const REMOTE_IRR: u64 = 1 << 14;
const POLARITY_LOW: u64 = 1 << 13;
const LOGICAL: u64 = 1 << 11;
/// Bits the guest may write: vector, delivery mode, destination mode,
/// polarity, trigger, mask, destination (delivery status and remote IRR
/// are read-only).
const WRITABLE: u64 = 0xff00_0000_0001_afff;

/// The register state of one I/O APIC.
#[derive(Clone, Debug)]
pub struct IoApic {
    version: u8,
    id: u8,
    select: u8,
    entries: [u64; IOAPIC_PINS],
    /// Input levels (bit per pin), asserted = 1 whatever the polarity: the
    /// devices drive their lines logically and the guest programs the
    /// polarity the firmware tables describe.
    levels: u32,
}

impl IoApic {
    /// An I/O APIC with all pins masked. `version` 0x11 is the 82093AA;
    /// 0x20 adds the EOI register (directed EOI).
    pub fn new(version: u8) -> Self {
        IoApic {
            version,
            id: IOAPIC_ID,
            select: 0,
            entries: [MASKED; IOAPIC_PINS],
            levels: 0,
        }
    }

    fn message(&self, pin: usize) -> Message {
        let e = self.entries[pin];
        let dest = (e >> 56) as u32;
        Message {
            vector: e as u8,
            mode: DeliveryMode::from_bits((e >> 8) as u32),
            level_triggered: e & LEVEL != 0,
            destination: if e & LOGICAL != 0 {
                Destination::Logical(dest)
            } else {
                Destination::Physical(dest)
            },
            wide: false,
            source: None,
        }
    }

    /// Level pins wait for an EOI only for interrupts that get one.
    fn uses_remote_irr(&self, pin: usize) -> bool {
        let e = self.entries[pin];
        e & LEVEL != 0
            && matches!(
                DeliveryMode::from_bits((e >> 8) as u32),
                DeliveryMode::Fixed | DeliveryMode::LowestPriority
            )
    }

    /// What a level pin sends now, if anything (asserted, unmasked, no EOI
    /// outstanding). Sets remote IRR.
    fn service_level(&mut self, pin: usize) -> Option<Message> {
        let e = self.entries[pin];
        if self.levels & (1 << pin) == 0 || e & MASKED != 0 || e & REMOTE_IRR != 0 {
            return None;
        }
        if self.uses_remote_irr(pin) {
            self.entries[pin] |= REMOTE_IRR;
        }
        Some(self.message(pin))
    }

    /// Drives input `pin`; returns the message to deliver (a rising edge of
    /// an unmasked edge pin, or an asserted unmasked level pin without
    /// remote IRR). Pins beyond 23 are ignored.
    pub fn set_level(&mut self, pin: usize, high: bool) -> Option<Message> {
        if pin >= IOAPIC_PINS {
            return None;
        }
        let bit = 1 << pin;
        let was_high = self.levels & bit != 0;
        if high {
            self.levels |= bit;
        } else {
            self.levels &= !bit;
        }
        let e = self.entries[pin];
        if e & LEVEL != 0 {
            return if high { self.service_level(pin) } else { None };
        }
        (high && !was_high && e & MASKED == 0).then(|| self.message(pin))
    }

    /// The delivery of `pin`'s level message reached no LAPIC: nothing will
    /// send an EOI, so it does not wait for one.
    pub fn not_delivered(&mut self, pin: usize) {
        if pin < IOAPIC_PINS {
            self.entries[pin] &= !REMOTE_IRR;
        }
    }

    /// An EOI for `vector` (a LAPIC's broadcast or the EOI register):
    /// clears remote IRR of the level pins with that vector and returns
    /// what the still-asserted ones send again, with their pins.
    pub fn eoi(&mut self, vector: u8) -> Vec<(usize, Message)> {
        let mut again = Vec::new();
        for pin in 0..IOAPIC_PINS {
            let e = self.entries[pin];
            if e as u8 == vector && e & REMOTE_IRR != 0 {
                self.entries[pin] &= !REMOTE_IRR;
                if let Some(msg) = self.service_level(pin) {
                    again.push((pin, msg));
                }
            }
        }
        again
    }

    fn read_register(&self, index: u8) -> u32 {
        match index {
            REG_ID => u32::from(self.id) << 24,
            REG_VERSION => ((IOAPIC_PINS as u32 - 1) << 16) | u32::from(self.version),
            REG_ARBITRATION => u32::from(self.id) << 24,
            _ => {
                let Some((pin, high)) = redirection_index(index) else {
                    return 0;
                };
                (self.entries[pin] >> if high { 32 } else { 0 }) as u32
            }
        }
    }

    /// A write of the register IOREGSEL selects; returns what an unmasked
    /// asserted level pin sends.
    fn write_register(&mut self, index: u8, value: u32) -> Option<(usize, Message)> {
        if index == REG_ID {
            self.id = (value >> 24) as u8 & 0x0f;
            return None;
        }
        let (pin, high) = redirection_index(index)?;
        let old = self.entries[pin];
        let (shift, part) = if high {
            (32, 0xffff_ffff_0000_0000)
        } else {
            (0, 0x0000_0000_ffff_ffff)
        };
        let written = (u64::from(value) << shift) & part & WRITABLE;
        let mut e = (old & !(part & WRITABLE)) | written;
        // An edge pin has no EOI to wait for (Linux's EOI for version 0x11
        // switches the pin to edge and back).
        if e & LEVEL == 0 {
            e &= !REMOTE_IRR;
        }
        self.entries[pin] = e;
        if e & LEVEL != 0 {
            self.service_level(pin).map(|msg| (pin, msg))
        } else {
            None
        }
    }

    /// An MMIO read at `offset` into the 4 KiB window.
    pub fn mmio_read(&self, offset: u64, data: &mut [u8]) {
        let value: u32 = match offset {
            0x00 => u32::from(self.select),
            0x10 => self.read_register(self.select),
            _ => 0,
        };
        let bytes = value.to_le_bytes();
        for (i, b) in data.iter_mut().enumerate() {
            *b = bytes.get(i).copied().unwrap_or(0);
        }
    }

    /// An MMIO write; returns the messages to deliver (with their pins).
    pub fn mmio_write(&mut self, offset: u64, data: &[u8]) -> Vec<(usize, Message)> {
        let mut bytes = [0u8; 4];
        let n = data.len().min(4);
        bytes[..n].copy_from_slice(&data[..n]);
        let value = u32::from_le_bytes(bytes);
        match offset {
            0x00 => {
                self.select = value as u8;
                Vec::new()
            }
            0x10 if n == 4 => self
                .write_register(self.select, value)
                .into_iter()
                .collect(),
            0x40 if self.version >= 0x20 => self.eoi(value as u8),
            _ => Vec::new(),
        }
    }

    /// Redirection entry `pin` (tests and diagnostics).
    pub fn entry(&self, pin: usize) -> Option<u64> {
        self.entries.get(pin).copied()
    }

    /// The pin's polarity bit (1 = active low), kept for the guest only.
    pub fn active_low(&self, pin: usize) -> bool {
        self.entries.get(pin).is_some_and(|e| e & POLARITY_LOW != 0)
    }
}

fn redirection_index(index: u8) -> Option<(usize, bool)> {
    let i = index.checked_sub(REG_REDIRECTION)? as usize;
    (i < 2 * IOAPIC_PINS).then_some((i / 2, i % 2 == 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(io: &IoApic, index: u8) -> u32 {
        let mut io = io.clone();
        io.mmio_write(0, &[index]);
        let mut d = [0u8; 4];
        io.mmio_read(0x10, &mut d);
        u32::from_le_bytes(d)
    }

    fn write(io: &mut IoApic, index: u8, value: u32) -> Vec<(usize, Message)> {
        io.mmio_write(0, &u32::from(index).to_le_bytes());
        io.mmio_write(0x10, &value.to_le_bytes())
    }

    fn program(io: &mut IoApic, pin: usize, low: u32, dest: u8) -> Vec<(usize, Message)> {
        write(io, 0x11 + 2 * pin as u8, u32::from(dest) << 24);
        write(io, 0x10 + 2 * pin as u8, low)
    }

    #[test]
    fn reset_values_and_read_only_registers() {
        let mut io = IoApic::new(0x20);
        assert_eq!(read(&io, 0x00), 0);
        assert_eq!(read(&io, 0x01), 0x0017_0020);
        assert_eq!(read(&io, 0x02), 0);
        for pin in 0..24u8 {
            assert_eq!(read(&io, 0x10 + 2 * pin), 0x0001_0000, "pin {pin} masked");
            assert_eq!(read(&io, 0x11 + 2 * pin), 0);
        }
        assert_eq!(read(&io, 0x40), 0, "beyond the table");
        write(&mut io, 0x00, 0xff00_0000);
        assert_eq!(read(&io, 0x00), 0x0f00_0000, "4-bit ID");
        assert_eq!(read(&io, 0x02), 0x0f00_0000);
        write(&mut io, 0x01, 0);
        assert_eq!(read(&io, 0x01), 0x0017_0020);
        // Delivery status (12) and remote IRR (14) are read-only.
        write(&mut io, 0x12, 0xffff_ffff);
        assert_eq!(read(&io, 0x12), 0x0001_afff);
        write(&mut io, 0x13, 0xffff_ffff);
        assert_eq!(read(&io, 0x13), 0xff00_0000);
        let mut sel = [0u8; 4];
        io.mmio_write(0, &[0x13]);
        io.mmio_read(0, &mut sel);
        assert_eq!(sel, [0x13, 0, 0, 0]);
    }

    fn io_reset() -> IoApic {
        IoApic::new(0x20)
    }

    #[test]
    fn edge_pins_send_on_rising_edges_only_when_unmasked() {
        let mut io = io_reset();
        assert!(program(&mut io, 2, 0x30, 0).is_empty());
        let m = io.set_level(2, true).expect("rising edge");
        assert_eq!(
            m,
            Message {
                vector: 0x30,
                mode: DeliveryMode::Fixed,
                level_triggered: false,
                destination: Destination::Physical(0),
                wide: false,
                source: None
            }
        );
        assert_eq!(io.set_level(2, true), None, "no edge");
        assert_eq!(io.set_level(2, false), None);
        write(&mut io, 0x14, 0x0001_0030); // mask
        assert_eq!(io.set_level(2, true), None, "masked edge is lost");
        io.set_level(2, false);
        write(&mut io, 0x14, 0x0000_0030);
        assert!(io.set_level(2, true).is_some());
        assert_eq!(io.set_level(24, true), None);
    }

    #[test]
    fn level_pins_wait_for_eoi_with_remote_irr() {
        let mut io = io_reset();
        // SCI: pin 9, level, active high, vector 0x49, logical dest 1.
        program(&mut io, 9, 0x0000_8849, 1);
        let m = io.set_level(9, true).expect("asserted");
        assert!(m.level_triggered);
        assert_eq!(m.destination, Destination::Logical(1));
        assert_eq!(read(&io, 0x22) & 0x4000, 0x4000, "remote IRR");
        assert_eq!(io.set_level(9, true), None, "waits for the EOI");
        assert!(io.eoi(0x48).is_empty(), "other vector");
        let again = io.eoi(0x49);
        assert_eq!(again.len(), 1, "still asserted: sent again");
        assert_eq!(again[0].0, 9);
        io.set_level(9, false);
        assert!(io.eoi(0x49).is_empty());
        assert_eq!(read(&io, 0x22) & 0x4000, 0);
        // The EOI register (version 0x20) does the same.
        assert!(io.set_level(9, true).is_some());
        assert_eq!(io.mmio_write(0x40, &[0x49, 0, 0, 0]).len(), 1);
        io.set_level(9, false);
        assert!(io.mmio_write(0x40, &[0x49, 0, 0, 0]).is_empty());
        assert_eq!(read(&io, 0x22) & 0x4000, 0);
    }

    #[test]
    fn version_0x11_has_no_eoi_register_but_edge_switch_clears_remote_irr() {
        let mut io = IoApic::new(0x11);
        program(&mut io, 5, 0x0000_8055, 0);
        assert!(io.set_level(5, true).is_some());
        io.mmio_write(0x40, &[0x55, 0, 0, 0]);
        assert_eq!(read(&io, 0x1a) & 0x4000, 0x4000);
        write(&mut io, 0x1a, 0x0001_0055); // masked, edge
        assert_eq!(read(&io, 0x1a) & 0x4000, 0);
        let again = write(&mut io, 0x1a, 0x0000_8055); // level, unmasked
        assert_eq!(again.len(), 1, "asserted level pin sends when unmasked");
    }

    #[test]
    fn unmasking_an_asserted_level_pin_sends_it() {
        let mut io = io_reset();
        program(&mut io, 16, 0x0001_a061, 0); // masked, level, active low
        assert!(io.active_low(16));
        assert_eq!(io.set_level(16, true), None);
        let sent = write(&mut io, 0x30, 0x0000_a061);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].1.vector, 0x61);
        io.not_delivered(16);
        assert_eq!(read(&io, 0x30) & 0x4000, 0);
    }

    #[test]
    fn level_nmi_and_extint_pins_do_not_wait_for_eoi() {
        let mut io = io_reset();
        program(&mut io, 0, 0x0000_8700, 0); // ExtINT, level
        let m = io.set_level(0, true).unwrap();
        assert_eq!(m.mode, DeliveryMode::ExtInt);
        assert_eq!(read(&io, 0x10) & 0x4000, 0);
    }

    #[test]
    fn delivery_modes_and_destinations_decode() {
        let mut io = io_reset();
        for (low, mode) in [
            (0x000u32, DeliveryMode::Fixed),
            (0x100, DeliveryMode::LowestPriority),
            (0x400, DeliveryMode::Nmi),
            (0x500, DeliveryMode::Init),
            (0x700, DeliveryMode::ExtInt),
        ] {
            program(&mut io, 3, low | 0x800 | 0x40, 0x0c);
            io.set_level(3, false);
            let m = io.set_level(3, true).unwrap();
            assert_eq!((m.mode, m.destination), (mode, Destination::Logical(0x0c)));
        }
    }

    #[test]
    fn short_and_odd_accesses_are_harmless() {
        let mut io = io_reset();
        io.mmio_write(0, &[0x10]);
        io.mmio_write(0x10, &[0x30]); // 1-byte IOWIN write: ignored
        assert_eq!(read(&io, 0x10), 0x0001_0000);
        io.mmio_write(0x20, &[1, 2, 3, 4]);
        io.mmio_write(0xffc, &[1, 2, 3, 4, 5, 6, 7, 8]);
        let mut d = [0xaau8; 8];
        io.mmio_read(0x10, &mut d);
        assert_eq!(d, [0, 0, 1, 0, 0, 0, 0, 0]);
    }
}
