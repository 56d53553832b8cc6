//! The 256-byte configuration space of one PCI function (type-0 header).
//!
//! Owns: the header registers, BAR encoding and sizing, the command and
//! status registers, the capability list and which bits the guest may
//! write. Must not touch: what a capability means (MSI-X, virtio) or where
//! BARs go (the root assigns them).

use super::PciError;

/// Bytes of conventional configuration space; ECAM offsets above it read 0.
pub const CONFIG_SPACE_SIZE: usize = 256;

pub const COMMAND: usize = 0x04;
pub const STATUS: usize = 0x06;
pub const BAR0: usize = 0x10;
pub const CAPABILITIES_POINTER: usize = 0x34;
pub const INTERRUPT_LINE: usize = 0x3c;
pub const INTERRUPT_PIN: usize = 0x3d;

pub const COMMAND_IO: u16 = 1 << 0;
pub const COMMAND_MEMORY: u16 = 1 << 1;
pub const COMMAND_BUS_MASTER: u16 = 1 << 2;
pub const COMMAND_INTX_DISABLE: u16 = 1 << 10;
/// Command bits a guest may change: I/O, memory, bus master, parity error
/// response, SERR#, INTx disable.
const COMMAND_WRITABLE: u16 = COMMAND_IO | COMMAND_MEMORY | COMMAND_BUS_MASTER | 1 << 6 | 1 << 8;
const COMMAND_WRITABLE_ALL: u16 = COMMAND_WRITABLE | COMMAND_INTX_DISABLE;

const STATUS_INTERRUPT: u16 = 1 << 3;
const STATUS_CAPABILITIES: u16 = 1 << 4;

/// First byte of the capability area (after the type-0 header).
const FIRST_CAPABILITY: usize = 0x40;

/// Identity of a function as the header shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciIds {
    pub vendor: u16,
    pub device: u16,
    pub revision: u8,
    /// Class code, subclass and programming interface.
    pub class: (u8, u8, u8),
    pub subsystem_vendor: u16,
    pub subsystem: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarKind {
    Io,
    Memory32,
    /// Takes two BAR slots (the index given and the next).
    Memory64,
}

/// One base address register as the function declares it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bar {
    pub kind: BarKind,
    /// Power of two, at least 16 bytes for memory and 4 for I/O (at most 256).
    pub size: u64,
    pub prefetchable: bool,
}

/// A BAR the function currently decodes, for routing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodedBar {
    pub index: usize,
    pub kind: BarKind,
    pub base: u64,
    pub size: u64,
}

/// Configuration space registers with per-byte write masks.
#[derive(Clone)]
pub struct ConfigSpace {
    regs: [u8; CONFIG_SPACE_SIZE],
    writable: [u8; CONFIG_SPACE_SIZE],
    bars: [Option<Bar>; 6],
    last_capability: usize,
    next_capability: usize,
}

impl ConfigSpace {
    /// A type-0 header with no BARs, no capabilities and no interrupt pin.
    pub fn new(ids: PciIds) -> Self {
        let mut cs = ConfigSpace {
            regs: [0; CONFIG_SPACE_SIZE],
            writable: [0; CONFIG_SPACE_SIZE],
            bars: [None; 6],
            last_capability: 0,
            next_capability: FIRST_CAPABILITY,
        };
        cs.set16(0x00, ids.vendor);
        cs.set16(0x02, ids.device);
        cs.regs[0x08] = ids.revision;
        cs.regs[0x09] = ids.class.2;
        cs.regs[0x0a] = ids.class.1;
        cs.regs[0x0b] = ids.class.0;
        cs.set16(0x2c, ids.subsystem_vendor);
        cs.set16(0x2e, ids.subsystem);
        cs.set_writable16(COMMAND, COMMAND_WRITABLE);
        cs.writable[0x0c] = 0xff; // cache line size
        cs.writable[0x0d] = 0xff; // latency timer
        cs.writable[INTERRUPT_LINE] = 0xff;
        cs
    }

    /// Declares BAR `index` (its address is 0 until the root assigns it).
    pub fn add_bar(&mut self, index: usize, bar: Bar) -> Result<(), PciError> {
        let slots = if bar.kind == BarKind::Memory64 { 2 } else { 1 };
        if index + slots > 6 {
            return Err(PciError::BarIndex { index });
        }
        if (index..index + slots).any(|i| self.bar_slot_taken(i)) {
            return Err(PciError::BarTaken { index });
        }
        let (min, max) = match bar.kind {
            BarKind::Io => (4, 256),
            BarKind::Memory32 => (16, 1 << 31),
            BarKind::Memory64 => (16, 1 << 62),
        };
        if !bar.size.is_power_of_two() || bar.size < min || bar.size > max {
            return Err(PciError::BarSize {
                index,
                size: bar.size,
            });
        }
        let flags: u32 = match bar.kind {
            BarKind::Io => 0x1,
            BarKind::Memory32 => 0,
            BarKind::Memory64 => 0x4,
        } | if bar.prefetchable && bar.kind != BarKind::Io {
            0x8
        } else {
            0
        };
        let address_mask = !(bar.size - 1);
        let off = BAR0 + 4 * index;
        self.set32(off, flags);
        self.set_writable32(off, address_mask as u32 & !flag_bits(bar.kind));
        if bar.kind == BarKind::Memory64 {
            self.set_writable32(off + 4, (address_mask >> 32) as u32);
        }
        self.bars[index] = Some(bar);
        Ok(())
    }

    fn bar_slot_taken(&self, slot: usize) -> bool {
        self.bars[slot].is_some()
            || (slot > 0 && matches!(self.bars[slot - 1], Some(b) if b.kind == BarKind::Memory64))
    }

    /// The BAR declared at `index`, if any.
    pub fn bar(&self, index: usize) -> Option<Bar> {
        self.bars.get(index).copied().flatten()
    }

    /// The address BAR `index` currently holds (flags stripped).
    pub fn bar_address(&self, index: usize) -> Option<u64> {
        let bar = self.bar(index)?;
        let off = BAR0 + 4 * index;
        let low = self.get32(off) as u64;
        let low = low & !(flag_bits(bar.kind) as u64);
        Some(match bar.kind {
            BarKind::Memory64 => (self.get32(off + 4) as u64) << 32 | low,
            _ => low,
        })
    }

    /// Places BAR `index` at `address` (aligned to its size; the root's job).
    pub fn set_bar_address(&mut self, index: usize, address: u64) {
        let Some(bar) = self.bar(index) else { return };
        let off = BAR0 + 4 * index;
        let low_bits = flag_bits(bar.kind);
        let flags = self.get32(off) & low_bits;
        let address = address & !(bar.size - 1);
        self.set32(off, address as u32 & !low_bits | flags);
        if bar.kind == BarKind::Memory64 {
            self.set32(off + 4, (address >> 32) as u32);
        }
    }

    /// BARs that the command register lets the function decode now, at
    /// their current addresses (a BAR being sized or at 0 is left out).
    pub fn decoded_bars(&self) -> Vec<DecodedBar> {
        let command = self.command();
        (0..6)
            .filter_map(|index| {
                let bar = self.bar(index)?;
                let enabled = match bar.kind {
                    BarKind::Io => command & COMMAND_IO != 0,
                    _ => command & COMMAND_MEMORY != 0,
                };
                let base = self.bar_address(index)?;
                let limit = match bar.kind {
                    BarKind::Io => 1 << 16,
                    BarKind::Memory32 => 1 << 32,
                    BarKind::Memory64 => u64::MAX,
                };
                (enabled && base != 0 && base.checked_add(bar.size).is_some_and(|e| e <= limit))
                    .then_some(DecodedBar {
                        index,
                        kind: bar.kind,
                        base,
                        size: bar.size,
                    })
            })
            .collect()
    }

    /// Adds a capability: `body` follows the ID and next-pointer bytes;
    /// `writable` (same length or shorter) says which of its bits the guest
    /// may change. Returns the capability's offset.
    pub fn add_capability(
        &mut self,
        id: u8,
        body: &[u8],
        writable: &[u8],
    ) -> Result<usize, PciError> {
        let offset = self.next_capability;
        let len = 2 + body.len();
        if writable.len() > body.len() || offset + len > CONFIG_SPACE_SIZE {
            return Err(PciError::CapabilitySpace { id, len });
        }
        self.regs[offset] = id;
        self.regs[offset + 1] = 0;
        self.regs[offset + 2..offset + len].copy_from_slice(body);
        self.writable[offset + 2..offset + 2 + writable.len()].copy_from_slice(writable);
        if self.last_capability == 0 {
            self.regs[CAPABILITIES_POINTER] = offset as u8;
        } else {
            self.regs[self.last_capability + 1] = offset as u8;
        }
        self.last_capability = offset;
        self.next_capability = (offset + len).next_multiple_of(4);
        let status = self.get16(STATUS) | STATUS_CAPABILITIES;
        self.set16(STATUS, status);
        Ok(offset)
    }

    /// Declares the interrupt pin (1 = INTA#) and the line register's reset
    /// value (the GSI, for guests without ACPI routing); enables the
    /// command register's INTx-disable bit.
    pub fn set_interrupt(&mut self, pin: u8, line: u8) {
        self.regs[INTERRUPT_PIN] = pin;
        self.regs[INTERRUPT_LINE] = line;
        self.set_writable16(COMMAND, COMMAND_WRITABLE_ALL);
    }

    /// Mirrors the function's INTx state into the status register.
    pub fn set_interrupt_status(&mut self, asserted: bool) {
        let status = self.get16(STATUS) & !STATUS_INTERRUPT;
        let bit = if asserted { STATUS_INTERRUPT } else { 0 };
        self.set16(STATUS, status | bit);
    }

    pub fn command(&self) -> u16 {
        self.get16(COMMAND)
    }

    /// Sets decode/bus-master bits as firmware would (the root's job).
    pub fn set_command(&mut self, command: u16) {
        self.set16(COMMAND, command);
    }

    pub fn intx_disabled(&self) -> bool {
        self.command() & COMMAND_INTX_DISABLE != 0
    }

    /// Reads config bytes at `offset`; bytes past the 256-byte space read 0
    /// (no PCIe extended capabilities).
    pub fn read(&self, offset: usize, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = self.regs.get(offset + i).copied().unwrap_or(0);
        }
    }

    /// Writes config bytes; only writable bits change.
    pub fn write(&mut self, offset: usize, data: &[u8]) {
        for (i, &v) in data.iter().enumerate() {
            let at = offset + i;
            if at < CONFIG_SPACE_SIZE {
                let mask = self.writable[at];
                self.regs[at] = self.regs[at] & !mask | v & mask;
            }
        }
    }

    /// Raw register access for capability owners (ignores write masks).
    pub fn get8(&self, offset: usize) -> u8 {
        self.regs[offset]
    }
    pub fn get16(&self, offset: usize) -> u16 {
        u16::from_le_bytes([self.regs[offset], self.regs[offset + 1]])
    }
    pub fn get32(&self, offset: usize) -> u32 {
        let mut b = [0; 4];
        b.copy_from_slice(&self.regs[offset..offset + 4]);
        u32::from_le_bytes(b)
    }
    pub fn set16(&mut self, offset: usize, value: u16) {
        self.regs[offset..offset + 2].copy_from_slice(&value.to_le_bytes());
    }
    pub fn set32(&mut self, offset: usize, value: u32) {
        self.regs[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
    }
    fn set_writable16(&mut self, offset: usize, mask: u16) {
        self.writable[offset..offset + 2].copy_from_slice(&mask.to_le_bytes());
    }
    fn set_writable32(&mut self, offset: usize, mask: u32) {
        self.writable[offset..offset + 4].copy_from_slice(&mask.to_le_bytes());
    }
}

/// The low BAR bits that hold flags rather than address bits.
fn flag_bits(kind: BarKind) -> u32 {
    match kind {
        BarKind::Io => 0x3,
        _ => 0xf,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> PciIds {
        PciIds {
            vendor: 0x1234,
            device: 0x5678,
            revision: 2,
            class: (0x02, 0x00, 0x00),
            subsystem_vendor: 0x1af4,
            subsystem: 0x1100,
        }
    }

    fn read32(cs: &ConfigSpace, off: usize) -> u32 {
        let mut b = [0; 4];
        cs.read(off, &mut b);
        u32::from_le_bytes(b)
    }

    #[test]
    fn header_identifies_the_function() {
        let cs = ConfigSpace::new(ids());
        assert_eq!(read32(&cs, 0), 0x5678_1234);
        assert_eq!(read32(&cs, 8), 0x0200_0002);
        assert_eq!(read32(&cs, 0x2c), 0x1100_1af4);
        assert_eq!(read32(&cs, 0x34), 0, "no capabilities");
        assert_eq!(cs.get8(0x0e), 0, "type-0, single function");
        let mut ext = [0xffu8; 4];
        cs.read(0x100, &mut ext);
        assert_eq!(ext, [0; 4], "no extended capabilities");
    }

    #[test]
    fn bar_sizing_table() {
        // (kind, size, prefetchable, low dword after all-ones, high dword)
        let table = [
            (BarKind::Memory32, 0x1000, false, 0xffff_f000u32, None),
            (BarKind::Memory32, 0x10, true, 0xffff_fff8, None),
            (
                BarKind::Memory64,
                0x8000,
                true,
                0xffff_800c,
                Some(0xffff_ffffu32),
            ),
            (
                BarKind::Memory64,
                0x2_0000_0000,
                false,
                0x0000_0004,
                Some(0xffff_fffe),
            ),
            (BarKind::Io, 0x20, false, 0xffff_ffe1, None),
            (BarKind::Io, 4, false, 0xffff_fffd, None),
        ];
        for (kind, size, prefetchable, low, high) in table {
            let mut cs = ConfigSpace::new(ids());
            cs.add_bar(
                2,
                Bar {
                    kind,
                    size,
                    prefetchable,
                },
            )
            .unwrap();
            cs.write(BAR0 + 8, &[0xff; 4]);
            cs.write(BAR0 + 12, &[0xff; 4]);
            assert_eq!(read32(&cs, BAR0 + 8), low, "{kind:?} {size:#x}");
            match high {
                Some(h) => assert_eq!(read32(&cs, BAR0 + 12), h, "{kind:?} {size:#x}"),
                None => assert_eq!(read32(&cs, BAR0 + 12), 0, "no BAR 3"),
            }
            // Linux restores the address after sizing.
            cs.set_bar_address(2, 0);
            cs.write(BAR0 + 8, &(0x4000_0000u32 | 0xf).to_le_bytes());
            cs.write(BAR0 + 12, &0u32.to_le_bytes());
            let expect = 0x4000_000f & !(size - 1) & !(flag_bits(kind) as u64);
            assert_eq!(cs.bar_address(2), Some(expect));
        }
    }

    #[test]
    fn bar_declarations_are_checked() {
        let mut cs = ConfigSpace::new(ids());
        let mem = |size| Bar {
            kind: BarKind::Memory64,
            size,
            prefetchable: false,
        };
        assert_eq!(
            cs.add_bar(5, mem(0x1000)),
            Err(PciError::BarIndex { index: 5 })
        );
        assert_eq!(
            cs.add_bar(0, mem(0x1001)),
            Err(PciError::BarSize {
                index: 0,
                size: 0x1001
            })
        );
        assert_eq!(
            cs.add_bar(0, mem(8)),
            Err(PciError::BarSize { index: 0, size: 8 })
        );
        cs.add_bar(0, mem(0x1000)).unwrap();
        assert_eq!(
            cs.add_bar(1, mem(0x1000)),
            Err(PciError::BarTaken { index: 1 })
        );
        let io = Bar {
            kind: BarKind::Io,
            size: 512,
            prefetchable: false,
        };
        assert!(cs.add_bar(2, io).is_err(), "I/O BARs are at most 256 bytes");
    }

    #[test]
    fn command_status_and_interrupt_registers() {
        let mut cs = ConfigSpace::new(ids());
        cs.write(COMMAND, &0xffffu16.to_le_bytes());
        assert_eq!(cs.command(), 0x0147, "INTx disable needs an interrupt pin");
        cs.set_interrupt(1, 17);
        cs.write(COMMAND, &0xffffu16.to_le_bytes());
        assert_eq!(cs.command(), 0x0547);
        assert!(cs.intx_disabled());
        cs.write(INTERRUPT_PIN, &[4]);
        assert_eq!(cs.get8(INTERRUPT_PIN), 1, "pin is read-only");
        assert_eq!(cs.get8(INTERRUPT_LINE), 17);
        cs.write(INTERRUPT_LINE, &[10]);
        assert_eq!(cs.get8(INTERRUPT_LINE), 10);
        cs.write(STATUS, &0xffffu16.to_le_bytes());
        assert_eq!(cs.get16(STATUS), 0, "status has no writable bits");
        cs.set_interrupt_status(true);
        assert_eq!(cs.get16(STATUS), 0x8);
        cs.write(0, &[0; 4]);
        assert_eq!(read32(&cs, 0), 0x5678_1234, "IDs are read-only");
    }

    #[test]
    fn capability_list_links_in_order() {
        let mut cs = ConfigSpace::new(ids());
        let a = cs.add_capability(0x09, &[1, 2, 3], &[0xff]).unwrap();
        let b = cs.add_capability(0x11, &[0; 10], &[]).unwrap();
        assert_eq!((a, b), (0x40, 0x48));
        assert_eq!(cs.get8(CAPABILITIES_POINTER), 0x40);
        assert_eq!(cs.get8(0x41), 0x48);
        assert_eq!(cs.get8(0x49), 0);
        assert_eq!(cs.get16(STATUS) & STATUS_CAPABILITIES, STATUS_CAPABILITIES);
        cs.write(0x42, &[0xaa, 0xbb]);
        assert_eq!((cs.get8(0x42), cs.get8(0x43)), (0xaa, 2));
        cs.write(0x41, &[0]);
        assert_eq!(cs.get8(0x41), 0x48, "next pointers are read-only");
        assert!(cs.add_capability(0x09, &[0; 250], &[]).is_err());
    }
}
