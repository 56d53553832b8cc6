//! Guest RAM as `vm_memory::GuestMemoryMmap` over the host's RAM regions.
//!
//! Owns: the only `unsafe` of the machine: wrapping mappings the [`Host`]
//! made (and keeps alive) as vm-memory regions. Must not touch: backing or
//! freeing RAM (the host's), or what lives where (vmm-platform's layout).
//!
//! [`Host`]: vmm_host::Host

use std::sync::Arc;

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestRegionMmap};
use vm_memory::{GuestMemoryRegion, MmapRegion};
use vmm_host::RamRegion;

/// Guest RAM, shared by every vCPU thread and device.
pub type GuestRam = Arc<GuestMemoryMmap>;

#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("guest RAM region {gpa:#x}+{size:#x} cannot be used: {detail}")]
    Region { gpa: u64, size: u64, detail: String },
}

/// Guest RAM over the host's regions (sorted, not overlapping).
///
/// # Safety
/// Each region's `host_address..+size` must be a readable and writable
/// mapping that stays mapped as long as the returned memory (and every
/// clone of it) exists: the host keeps its mappings until it is dropped,
/// so the caller keeps the host alive longer than the memory.
pub unsafe fn from_host_regions(regions: &[RamRegion]) -> Result<GuestRam, MemoryError> {
    let bad = |r: &RamRegion, detail: String| MemoryError::Region {
        gpa: r.gpa,
        size: r.size,
        detail,
    };
    let mut mapped = Vec::new();
    for r in regions {
        let size = usize::try_from(r.size).map_err(|_| bad(r, "too large".into()))?;
        // SAFETY: the caller guarantees the mapping and its lifetime; the
        // protection and flags are the ones hosts map RAM with.
        let region = unsafe {
            MmapRegion::build_raw(
                r.host_address as *mut u8,
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            )
        }
        .map_err(|e| bad(r, e.to_string()))?;
        mapped.push(
            GuestRegionMmap::new(region, GuestAddress(r.gpa))
                .ok_or_else(|| bad(r, "it wraps around".into()))?,
        );
    }
    GuestMemoryMmap::from_regions(mapped)
        .map(Arc::new)
        .map_err(|e| MemoryError::Region {
            gpa: regions.first().map_or(0, |r| r.gpa),
            size: 0,
            detail: e.to_string(),
        })
}

/// Whether `[gpa, gpa + len)` is RAM.
pub fn is_ram(ram: &GuestMemoryMmap, gpa: u64, len: u64) -> bool {
    len > 0
        && ram
            .find_region(GuestAddress(gpa))
            .is_some_and(|r| gpa - r.start_addr().0 + len <= r.len())
}

/// The vmm-core view of the RAM below the PCI hole (the Multiboot loader's).
pub struct LowRam<'a>(pub &'a GuestMemoryMmap);

impl vmm_core::GuestMemory for LowRam<'_> {
    fn size(&self) -> u64 {
        self.0.find_region(GuestAddress(0)).map_or(0, |r| r.len())
    }

    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), vmm_core::OutOfRange> {
        vmm_core::memory::check_range(self.size(), gpa, buf.len())?;
        self.0
            .read_slice(buf, GuestAddress(gpa))
            .map_err(|_| vmm_core::OutOfRange {
                gpa,
                len: buf.len() as u64,
            })
    }

    fn write(&self, gpa: u64, data: &[u8]) -> Result<(), vmm_core::OutOfRange> {
        vmm_core::memory::check_range(self.size(), gpa, data.len())?;
        self.0
            .write_slice(data, GuestAddress(gpa))
            .map_err(|_| vmm_core::OutOfRange {
                gpa,
                len: data.len() as u64,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ram_checks_follow_the_regions() {
        let ram = GuestMemoryMmap::<()>::from_ranges(&[
            (GuestAddress(0), 0x10_0000),
            (GuestAddress(0x1_0000_0000), 0x20_0000),
        ])
        .unwrap();
        assert!(is_ram(&ram, 0, 0x10_0000));
        assert!(!is_ram(&ram, 0xf_f000, 0x2000));
        assert!(is_ram(&ram, 0x1_0010_0000, 8));
        assert!(!is_ram(&ram, 0xc000_0000, 4));
        assert!(!is_ram(&ram, 0, 0));
        let low = LowRam(&ram);
        use vmm_core::GuestMemory;
        assert_eq!(low.size(), 0x10_0000);
        low.write(0x1000, b"tern").unwrap();
        let mut back = [0; 4];
        low.read(0x1000, &mut back).unwrap();
        assert_eq!(&back, b"tern");
        assert!(low.write(0xf_fffe, b"tern").is_err());
    }
}
