//! The guest-physical memory map of a Tern VM and the e820 table that
//! describes it to the guest.
//!
//! Owns: where RAM, the PCI windows, ECAM, the interrupt controllers and the
//! ACPI tables live, for a given memory size. Must not touch: backing the RAM
//! or placing devices (the machine, `vmm-pc`, does both from these numbers).
//!
//! | guest-physical range | what | e820 |
//! |---|---|---|
//! | `0 .. 0x9_FC00` | RAM (real-mode IVT and BIOS data area included) | usable |
//! | `0x9_FC00 .. 0xA_0000` | EBDA | reserved |
//! | `0xA_0000 .. 0xE_0000` | VGA window, option ROMs (RAM backs it, unused) | reserved |
//! | `0xE_0000 .. 0x10_0000` | ACPI tables, RSDP first (the BIOS area an OS scans) | ACPI |
//! | `0x10_0000 .. min(size, 3 GiB)` | RAM | usable |
//! | `0xC000_0000 .. 0xD000_0000` | PCI 32-bit BAR window | (hole) |
//! | `0xD000_0000 .. 0xE000_0000` | platform MMIO outside PCI (guest-test device page at `0xD000_0000`) | (hole) |
//! | `0xE000_0000 .. 0xF000_0000` | nothing: guest-tests expect `0xE000_0000` unmapped | (hole) |
//! | `0xF000_0000 .. 0xF010_0000` | PCI ECAM, segment 0, bus 0 | reserved |
//! | `0xFEC0_0000 .. 0xFEC0_1000` | IOAPIC | reserved |
//! | `0xFEE0_0000 .. 0xFEE0_1000` | local APICs | reserved |
//! | `0xFFFC_0000 .. 4 GiB` | high BIOS area (empty) | reserved |
//! | `4 GiB .. 4 GiB + size - 3 GiB` | RAM above the hole (memory over 3 GiB) | usable |
//! | top of RAM (1 GiB aligned), 16 GiB | PCI 64-bit BAR window | (hole) |

use std::ops::Range;

pub const KIB: u64 = 1 << 10;
pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;

/// Extended BIOS data area (reserved, empty).
pub const EBDA: Range<u64> = 0x9_FC00..0xA_0000;
/// VGA window and option ROM area (reserved, empty).
pub const LEGACY_ROM: Range<u64> = 0xA_0000..0xE_0000;
/// Where the ACPI tables go; the RSDP is at its start, inside the
/// 0xE0000-0xFFFFF area an OS scans for it.
pub const ACPI_TABLES: Range<u64> = 0xE_0000..0x10_0000;
/// RAM below the PCI hole ends here at the latest.
pub const LOW_RAM_MAX: u64 = 3 * GIB;
/// PCI 32-bit BAR window (non-prefetchable and prefetchable BARs alike).
pub const PCI_MMIO32: Range<u64> = 0xC000_0000..0xD000_0000;
/// MMIO of VMM devices that are not on PCI (the guest-test device's page).
pub const PLATFORM_MMIO: Range<u64> = 0xD000_0000..0xE000_0000;
/// PCI Express enhanced configuration space (ECAM) of segment 0, bus 0 only.
pub const ECAM: Range<u64> = 0xF000_0000..0xF010_0000;
pub const IOAPIC: Range<u64> = 0xFEC0_0000..0xFEC0_1000;
pub const LAPIC: Range<u64> = 0xFEE0_0000..0xFEE0_1000;
/// Where a PC's firmware would be mapped below 4 GiB (reserved, empty).
pub const HIGH_BIOS: Range<u64> = 0xFFFC_0000..0x1_0000_0000;
/// RAM beyond `LOW_RAM_MAX` continues here.
pub const HIGH_RAM_BASE: u64 = 4 * GIB;
/// Size and alignment of the PCI 64-bit BAR window above RAM.
pub const PCI_MMIO64_SIZE: u64 = 16 * GIB;
pub const PCI_MMIO64_ALIGN: u64 = GIB;

/// Guest memory sizes: at least, at most, and a multiple of.
pub const MIN_MEMORY: u64 = 16 * MIB;
pub const MAX_MEMORY: u64 = 256 * GIB;
pub const MEMORY_ALIGN: u64 = 2 * MIB;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("{memory} bytes of memory is too small: a VM needs at least {} MiB", MIN_MEMORY / MIB)]
    TooSmall { memory: u64 },
    #[error("{memory} bytes of memory is too large: a VM gets at most {} GiB", MAX_MEMORY / GIB)]
    TooLarge { memory: u64 },
    #[error("{memory} bytes of memory is not a multiple of 2 MiB: round it to whole 2 MiB")]
    Unaligned { memory: u64 },
}

/// The e820 types the map uses (values as in the BIOS interface).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum E820Type {
    Ram = 1,
    Reserved = 2,
    Acpi = 3,
}

/// One e820 entry: `[addr, addr + size)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct E820Entry {
    pub addr: u64,
    pub size: u64,
    pub kind: E820Type,
}

impl E820Entry {
    pub fn end(&self) -> u64 {
        self.addr + self.size
    }
}

/// What a region of the map is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionKind {
    /// In the e820 table with this type.
    E820(E820Type),
    /// An MMIO window or device range the e820 table leaves as a hole.
    Hole,
}

/// A named range of the map (for messages and the e820 table).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Region {
    pub name: &'static str,
    pub range: Range<u64>,
    pub kind: RegionKind,
}

/// The memory map of a VM with a given amount of RAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryLayout {
    memory: u64,
}

impl MemoryLayout {
    /// The map for `memory` bytes of guest RAM.
    pub fn new(memory: u64) -> Result<Self, LayoutError> {
        if memory < MIN_MEMORY {
            return Err(LayoutError::TooSmall { memory });
        }
        if memory > MAX_MEMORY {
            return Err(LayoutError::TooLarge { memory });
        }
        if !memory.is_multiple_of(MEMORY_ALIGN) {
            return Err(LayoutError::Unaligned { memory });
        }
        Ok(MemoryLayout { memory })
    }

    /// Bytes of guest RAM.
    pub fn memory(&self) -> u64 {
        self.memory
    }

    /// RAM below the PCI hole: `[0, min(memory, 3 GiB))`.
    pub fn low_ram(&self) -> Range<u64> {
        0..self.memory.min(LOW_RAM_MAX)
    }

    /// RAM above 4 GiB, if the VM has more than 3 GiB.
    pub fn high_ram(&self) -> Option<Range<u64>> {
        let above = self.memory.saturating_sub(LOW_RAM_MAX);
        (above > 0).then(|| HIGH_RAM_BASE..HIGH_RAM_BASE + above)
    }

    /// The guest-physical ranges the host backs with RAM (2 MiB aligned),
    /// lowest first. The legacy and ACPI areas below 1 MiB are RAM too.
    pub fn ram(&self) -> Vec<Range<u64>> {
        core::iter::once(self.low_ram())
            .chain(self.high_ram())
            .collect()
    }

    /// The end of the highest RAM range.
    pub fn top_of_ram(&self) -> u64 {
        self.high_ram().map_or(self.low_ram().end, |r| r.end)
    }

    /// The PCI 64-bit BAR window: above RAM and 4 GiB, 1 GiB aligned.
    pub fn pci_mmio64(&self) -> Range<u64> {
        let start = self.top_of_ram().max(HIGH_RAM_BASE);
        let start = start.div_ceil(PCI_MMIO64_ALIGN) * PCI_MMIO64_ALIGN;
        start..start + PCI_MMIO64_SIZE
    }

    /// Every region of the map, lowest first.
    pub fn regions(&self) -> Vec<Region> {
        use E820Type::*;
        use RegionKind::*;
        let r = |name, range, kind| Region { name, range, kind };
        let mut regions = vec![
            r("low RAM", 0..EBDA.start, E820(Ram)),
            r("EBDA", EBDA, E820(Reserved)),
            r("VGA and option ROMs", LEGACY_ROM, E820(Reserved)),
            r("ACPI tables", ACPI_TABLES, E820(Acpi)),
            r("RAM", ACPI_TABLES.end..self.low_ram().end, E820(Ram)),
            r("PCI 32-bit window", PCI_MMIO32, Hole),
            r("platform MMIO", PLATFORM_MMIO, Hole),
            r("PCI ECAM", ECAM, E820(Reserved)),
            r("IOAPIC", IOAPIC, E820(Reserved)),
            r("local APIC", LAPIC, E820(Reserved)),
            r("high BIOS area", HIGH_BIOS, E820(Reserved)),
        ];
        if let Some(high) = self.high_ram() {
            regions.push(r("RAM above 4 GiB", high, E820(Ram)));
        }
        regions.push(r("PCI 64-bit window", self.pci_mmio64(), Hole));
        regions
    }

    /// The e820 table: the regions that have an e820 type, neighbours of one
    /// type merged, lowest first.
    pub fn e820(&self) -> Vec<E820Entry> {
        let mut table: Vec<E820Entry> = Vec::new();
        for region in self.regions() {
            let RegionKind::E820(kind) = region.kind else {
                continue;
            };
            match table.last_mut() {
                Some(last) if last.kind == kind && last.end() == region.range.start => {
                    last.size += region.range.end - region.range.start;
                }
                _ => table.push(E820Entry {
                    addr: region.range.start,
                    size: region.range.end - region.range.start,
                    kind,
                }),
            }
        }
        table
    }

    /// RAM below and above 4 GiB in bytes (what CMOS reports).
    pub fn ram_below_above_4g(&self) -> (u64, u64) {
        let low = self.low_ram().end;
        (low, self.memory - low)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use E820Type::*;

    fn e(addr: u64, end: u64, kind: E820Type) -> E820Entry {
        E820Entry {
            addr,
            size: end - addr,
            kind,
        }
    }

    /// The entries that do not depend on the memory size, below 4 GiB.
    fn fixed_high() -> Vec<E820Entry> {
        vec![
            e(0xF000_0000, 0xF010_0000, Reserved),
            e(0xFEC0_0000, 0xFEC0_1000, Reserved),
            e(0xFEE0_0000, 0xFEE0_1000, Reserved),
            e(0xFFFC_0000, 0x1_0000_0000, Reserved),
        ]
    }

    fn expected(low_end: u64, high_end: Option<u64>) -> Vec<E820Entry> {
        let mut v = vec![
            e(0, 0x9_FC00, Ram),
            e(0x9_FC00, 0xE_0000, Reserved),
            e(0xE_0000, 0x10_0000, Acpi),
            e(0x10_0000, low_end, Ram),
        ];
        v.extend(fixed_high());
        if let Some(end) = high_end {
            v.push(e(0x1_0000_0000, end, Ram));
        }
        v
    }

    #[test]
    fn e820_tables_for_sizes_below_at_and_above_the_hole() {
        let cases = [
            (16 * MIB, 16 * MIB, None),
            (512 * MIB, 512 * MIB, None),
            (3 * GIB, 3 * GIB, None),
            (5 * GIB, 3 * GIB, Some(6 * GIB)),
            (3 * GIB + 2 * MIB, 3 * GIB, Some(4 * GIB + 2 * MIB)),
        ];
        for (memory, low_end, high_end) in cases {
            let layout = MemoryLayout::new(memory).unwrap();
            assert_eq!(layout.e820(), expected(low_end, high_end), "{memory:#x}");
        }
    }

    #[test]
    fn ram_ranges_sum_to_the_memory_size_and_are_2mib_aligned() {
        for memory in [16 * MIB, 3 * GIB - 2 * MIB, 3 * GIB, 5 * GIB, MAX_MEMORY] {
            let layout = MemoryLayout::new(memory).unwrap();
            let ram = layout.ram();
            assert_eq!(ram.iter().map(|r| r.end - r.start).sum::<u64>(), memory);
            for r in &ram {
                assert_eq!(r.start % MEMORY_ALIGN, 0);
                assert_eq!(r.end % MEMORY_ALIGN, 0);
            }
            let (below, above) = layout.ram_below_above_4g();
            assert_eq!(below + above, memory);
            // Usable RAM is all RAM but the 0x9FC00..1 MiB legacy area.
            let usable: u64 = layout
                .e820()
                .iter()
                .filter(|e| e.kind == Ram)
                .map(|e| e.size)
                .sum();
            assert_eq!(usable, memory - (0x10_0000 - 0x9_FC00));
        }
    }

    #[test]
    fn regions_are_sorted_and_disjoint_and_holes_hold_no_ram() {
        for memory in [16 * MIB, 3 * GIB, 5 * GIB, MAX_MEMORY] {
            let layout = MemoryLayout::new(memory).unwrap();
            let regions = layout.regions();
            for pair in regions.windows(2) {
                assert!(
                    pair[0].range.end <= pair[1].range.start,
                    "{} overlaps {}",
                    pair[0].name,
                    pair[1].name
                );
            }
            for hole in regions.iter().filter(|r| r.kind == RegionKind::Hole) {
                for ram in layout.ram() {
                    assert!(hole.range.end <= ram.start || ram.end <= hole.range.start);
                }
            }
        }
    }

    #[test]
    fn the_64bit_window_starts_above_ram_and_4gib_aligned_to_1gib() {
        let at = |memory| MemoryLayout::new(memory).unwrap().pci_mmio64().start;
        assert_eq!(at(512 * MIB), 4 * GIB);
        assert_eq!(at(3 * GIB), 4 * GIB);
        assert_eq!(at(5 * GIB), 6 * GIB);
        assert_eq!(at(5 * GIB + 2 * MIB), 7 * GIB);
        let w = MemoryLayout::new(5 * GIB).unwrap().pci_mmio64();
        assert_eq!(w.end - w.start, PCI_MMIO64_SIZE);
    }

    #[test]
    fn the_guest_test_addresses_stay_free_of_ram_and_pci() {
        // guest-tests: device page at 0xD000_0000, nothing at 0xE000_0000.
        assert!(PLATFORM_MMIO.contains(&0xD000_0000));
        let layout = MemoryLayout::new(3 * GIB).unwrap();
        assert!(layout
            .regions()
            .iter()
            .all(|r| !r.range.contains(&0xE000_0000)));
    }

    #[test]
    fn bad_sizes_are_refused() {
        assert_eq!(
            MemoryLayout::new(8 * MIB),
            Err(LayoutError::TooSmall { memory: 8 * MIB })
        );
        assert_eq!(
            MemoryLayout::new(MAX_MEMORY + 2 * MIB),
            Err(LayoutError::TooLarge {
                memory: MAX_MEMORY + 2 * MIB
            })
        );
        assert_eq!(
            MemoryLayout::new(17 * MIB),
            Err(LayoutError::Unaligned { memory: 17 * MIB })
        );
        assert!(MemoryLayout::new(17 * MIB)
            .unwrap_err()
            .to_string()
            .contains("2 MiB"));
    }
}
