//! What travels on the APIC bus: an interrupt message with its delivery
//! mode and destination, as IOAPIC redirection entries, MSIs and ICR writes
//! encode it.
//!
//! Owns: the encodings (decoding only) and the destination-matching rules
//! of a receiving LAPIC. Must not touch: delivery itself (`Interrupts`).

use vmm_bus::MsiMessage;

/// The delivery-mode field (3 bits) of redirection entries, MSI data, ICR
/// and LVT entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryMode {
    Fixed,
    LowestPriority,
    Smi,
    Nmi,
    Init,
    Startup,
    ExtInt,
    Reserved,
}

impl DeliveryMode {
    pub fn from_bits(bits: u32) -> Self {
        match bits & 7 {
            0 => DeliveryMode::Fixed,
            1 => DeliveryMode::LowestPriority,
            2 => DeliveryMode::Smi,
            4 => DeliveryMode::Nmi,
            5 => DeliveryMode::Init,
            6 => DeliveryMode::Startup,
            7 => DeliveryMode::ExtInt,
            _ => DeliveryMode::Reserved,
        }
    }
}

/// Who receives a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    /// An APIC ID (all ones = broadcast).
    Physical(u32),
    /// A message destination address matched against LDR (and DFR).
    Logical(u32),
    /// ICR shorthands; they need the sender.
    SelfOnly,
    All,
    AllButSelf,
}

/// One interrupt message on the APIC bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message {
    pub vector: u8,
    pub mode: DeliveryMode,
    pub level_triggered: bool,
    pub destination: Destination,
    /// 32-bit x2APIC destination (an x2APIC ICR) rather than 8 bits.
    pub wide: bool,
    /// The sending vCPU (IPIs), for the shorthands.
    pub source: Option<u32>,
}

/// Decodes an MSI as the x86 format defines it: address 0xFEEx_xxxx with
/// the destination ID in bits 19:12, redirection hint in bit 3 (lowest
/// priority among the destinations) and destination mode in bit 2; data
/// with vector, delivery mode and trigger mode. `None` for an address
/// outside the interrupt window (a misprogrammed device).
pub fn decode_msi(msg: MsiMessage) -> Option<Message> {
    if msg.address >> 20 != 0xfee {
        return None;
    }
    let dest = ((msg.address >> 12) & 0xff) as u32;
    let logical = msg.address & (1 << 2) != 0;
    let redirection_hint = msg.address & (1 << 3) != 0;
    let mut mode = DeliveryMode::from_bits(msg.data >> 8);
    if redirection_hint && mode == DeliveryMode::Fixed {
        mode = DeliveryMode::LowestPriority;
    }
    Some(Message {
        vector: msg.data as u8,
        mode,
        level_triggered: msg.data & (1 << 15) != 0,
        destination: if logical {
            Destination::Logical(dest)
        } else {
            Destination::Physical(dest)
        },
        wide: false,
        source: None,
    })
}

/// The addressing state of a receiving LAPIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Addressing {
    /// xAPIC: the 8-bit ID; x2APIC: the 32-bit x2APIC ID.
    pub id: u32,
    /// xAPIC: LDR (logical ID in bits 31:24); x2APIC: the derived LDR.
    pub ldr: u32,
    /// xAPIC DFR model: flat (true) or cluster.
    pub flat: bool,
    pub x2apic: bool,
}

impl Addressing {
    /// Whether a LAPIC with this addressing is named by `dest` (the
    /// shorthands are the caller's). 8-bit destinations reach x2APIC-mode
    /// LAPICs physically (0xFF broadcasts); 8-bit logical ones only reach
    /// xAPIC-mode LAPICs (x2APIC logical mode needs interrupt remapping,
    /// which the machine does not have).
    pub fn matches(&self, dest: Destination, wide: bool) -> bool {
        let broadcast = if wide { u32::MAX } else { 0xff };
        match dest {
            Destination::Physical(id) => id == broadcast || id == self.id,
            Destination::Logical(mda) if mda == broadcast => true,
            Destination::Logical(mda) if self.x2apic => {
                wide && mda >> 16 == self.ldr >> 16 && mda & self.ldr & 0xffff != 0
            }
            Destination::Logical(mda) => {
                if mda > 0xff {
                    return false;
                }
                let logical_id = self.ldr >> 24;
                if self.flat {
                    mda & logical_id != 0
                } else {
                    let cluster = mda >> 4;
                    (cluster == 0xf || cluster == logical_id >> 4) && mda & logical_id & 0xf != 0
                }
            }
            Destination::SelfOnly | Destination::All | Destination::AllButSelf => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xapic(id: u32, logical: u32, flat: bool) -> Addressing {
        Addressing {
            id,
            ldr: logical << 24,
            flat,
            x2apic: false,
        }
    }

    fn x2apic(id: u32) -> Addressing {
        Addressing {
            id,
            ldr: ((id >> 4) << 16) | (1 << (id & 0xf)),
            flat: false,
            x2apic: true,
        }
    }

    #[test]
    fn msi_decoding_table() {
        use DeliveryMode::*;
        use Destination::*;
        // (address, data) -> (vector, mode, level, destination)
        let table = [
            (
                0xfee0_1000,
                0x0000_4031,
                Some((0x31, Fixed, false, Physical(1))),
            ),
            (
                0xfee0_0000,
                0x0000_0041,
                Some((0x41, Fixed, false, Physical(0))),
            ),
            (
                0xfeef_f000,
                0x0000_0022,
                Some((0x22, Fixed, false, Physical(0xff))),
            ),
            (
                0xfee0_300c,
                0x0000_0051,
                Some((0x51, LowestPriority, false, Logical(3))),
            ),
            (
                0xfee0_2004,
                0x0000_0151,
                Some((0x51, LowestPriority, false, Logical(2))),
            ),
            (
                0xfee0_1000,
                0x0000_0400,
                Some((0x00, Nmi, false, Physical(1))),
            ),
            (
                0xfee0_1000,
                0x0000_8061,
                Some((0x61, Fixed, true, Physical(1))),
            ),
            (
                0xfee0_1000,
                0x0000_0500,
                Some((0x00, Init, false, Physical(1))),
            ),
            (
                0xfee0_1000,
                0x0000_0700,
                Some((0x00, ExtInt, false, Physical(1))),
            ),
            (0xfed0_0000, 0x0000_0031, None),
            (0x1_fee0_0000, 0x0000_0031, None),
        ];
        for (address, data, want) in table {
            let got = decode_msi(MsiMessage { address, data })
                .map(|m| (m.vector, m.mode, m.level_triggered, m.destination));
            assert_eq!(got, want, "address {address:#x} data {data:#x}");
        }
    }

    #[test]
    fn physical_destinations() {
        let a = xapic(3, 0, true);
        assert!(a.matches(Destination::Physical(3), false));
        assert!(!a.matches(Destination::Physical(4), false));
        assert!(a.matches(Destination::Physical(0xff), false));
        assert!(a.matches(Destination::Physical(u32::MAX), true));
        assert!(!a.matches(Destination::Physical(0x103), true));
        let b = x2apic(3);
        assert!(b.matches(Destination::Physical(3), true));
        assert!(
            b.matches(Destination::Physical(3), false),
            "8-bit IOAPIC/MSI"
        );
        assert!(
            b.matches(Destination::Physical(0xff), false),
            "8-bit broadcast"
        );
        assert!(!b.matches(Destination::Physical(0xff), true));
        assert!(b.matches(Destination::Physical(u32::MAX), true));
    }

    #[test]
    fn logical_flat_and_cluster_destinations() {
        let flat = xapic(0, 0b0000_0100, true);
        assert!(flat.matches(Destination::Logical(0b0000_0110), false));
        assert!(!flat.matches(Destination::Logical(0b0000_0011), false));
        assert!(flat.matches(Destination::Logical(0xff), false));
        let cluster = xapic(0, 0x32, false); // cluster 3, member bit 1
        assert!(cluster.matches(Destination::Logical(0x36), false));
        assert!(!cluster.matches(Destination::Logical(0x31), false));
        assert!(!cluster.matches(Destination::Logical(0x26), false));
        assert!(
            cluster.matches(Destination::Logical(0xf2), false),
            "all clusters"
        );
        let x2 = x2apic(0x13); // cluster 1, bit 3
        assert_eq!(x2.ldr, 0x0001_0008);
        assert!(x2.matches(Destination::Logical(0x0001_0008), true));
        assert!(x2.matches(Destination::Logical(0x0001_000c), true));
        assert!(!x2.matches(Destination::Logical(0x0000_0008), true));
        assert!(!x2.matches(Destination::Logical(0x08), false));
        assert!(x2.matches(Destination::Logical(u32::MAX), true));
    }
}
