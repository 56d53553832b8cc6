//! Finds the ACPI RSDP and reads the MADT: the local APIC of every enabled CPU,
//! the I/O APICs and the interrupt source overrides. Reads firmware tables only;
//! owns nothing. Only the MADT is needed by the kernel, so it is parsed here
//! directly rather than through a general ACPI library.

use crate::arch::phys;

pub const MAX_CPUS: usize = 64;
pub const MAX_IOAPICS: usize = 8;

#[derive(Clone, Copy, Default)]
pub struct Override {
    pub irq: u8,
    pub gsi: u32,
    pub level: bool,
    pub active_low: bool,
}

pub struct Madt {
    pub apic_ids: [u32; MAX_CPUS],
    pub cpu_count: usize,
    pub ioapics: [(u64, u32); MAX_IOAPICS],
    pub ioapic_count: usize,
    pub overrides: [Option<Override>; 16],
}

fn checksum_ok(pa: u64, len: usize) -> bool {
    phys::slice(pa, len)
        .iter()
        .fold(0u8, |a, b| a.wrapping_add(*b))
        == 0
}

fn find_rsdp_in(start: u64, len: u64) -> Option<u64> {
    (start..start + len)
        .step_by(16)
        .find(|&p| phys::slice(p, 8) == b"RSD PTR " && checksum_ok(p, 20))
}

pub fn find_rsdp(from_bootloader: Option<u64>) -> Option<u64> {
    if let Some(p) = from_bootloader {
        return Some(p);
    }
    let ebda = (phys::read::<u16>(0x40e) as u64) << 4;
    if (0x8_0000..0xa_0000).contains(&ebda) {
        if let Some(p) = find_rsdp_in(ebda, 1024) {
            return Some(p);
        }
    }
    find_rsdp_in(0xe_0000, 0x2_0000)
}

/// Walks the RSDT/XSDT for the table with `sig`.
fn find_table(rsdp: u64, sig: &[u8; 4]) -> Option<u64> {
    let revision: u8 = phys::read(rsdp + 15);
    let (root, entry_size) = if revision >= 2 && phys::read::<u64>(rsdp + 24) != 0 {
        (phys::read::<u64>(rsdp + 24), 8)
    } else {
        (phys::read::<u32>(rsdp + 16) as u64, 4)
    };
    let len = phys::read::<u32>(root + 4) as u64;
    let mut p = root + 36;
    while p + entry_size <= root + len {
        let t = if entry_size == 8 {
            phys::read::<u64>(p)
        } else {
            phys::read::<u32>(p) as u64
        };
        if phys::slice(t, 4) == sig {
            return Some(t);
        }
        p += entry_size;
    }
    None
}

pub fn read_madt(rsdp: u64) -> Option<Madt> {
    let madt = find_table(rsdp, b"APIC")?;
    let len = phys::read::<u32>(madt + 4) as u64;
    let mut m = Madt {
        apic_ids: [0; MAX_CPUS],
        cpu_count: 0,
        ioapics: [(0, 0); MAX_IOAPICS],
        ioapic_count: 0,
        overrides: [None; 16],
    };
    let mut p = madt + 44;
    while p + 2 <= madt + len {
        let kind: u8 = phys::read(p);
        let elen = phys::read::<u8>(p + 1) as u64;
        if elen < 2 {
            break;
        }
        match kind {
            0 => {
                let flags: u32 = phys::read(p + 4);
                if flags & 1 != 0 && m.cpu_count < MAX_CPUS {
                    m.apic_ids[m.cpu_count] = phys::read::<u8>(p + 3) as u32;
                    m.cpu_count += 1;
                }
            }
            9 => {
                let flags: u32 = phys::read(p + 8);
                if flags & 1 != 0 && m.cpu_count < MAX_CPUS {
                    m.apic_ids[m.cpu_count] = phys::read::<u32>(p + 4);
                    m.cpu_count += 1;
                }
            }
            1 if m.ioapic_count < MAX_IOAPICS => {
                m.ioapics[m.ioapic_count] =
                    (phys::read::<u32>(p + 4) as u64, phys::read::<u32>(p + 8));
                m.ioapic_count += 1;
            }
            2 => {
                let irq: u8 = phys::read(p + 3);
                let flags: u16 = phys::read(p + 8);
                if irq < 16 {
                    m.overrides[irq as usize] = Some(Override {
                        irq,
                        gsi: phys::read(p + 4),
                        active_low: flags & 3 == 3,
                        level: (flags >> 2) & 3 == 3,
                    });
                }
            }
            _ => {}
        }
        p += elen;
    }
    Some(m)
}
