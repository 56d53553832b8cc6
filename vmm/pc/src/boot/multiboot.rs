//! Multiboot v1 boot: the kernel (vmm-core's ELF loader), its modules and
//! the Multiboot information structure the boot vCPU gets in EBX.
//!
//! Owns: where modules go (page-aligned, above the kernel) and the
//! information structure in [`INFO_AREA`] (memory sizes and the memory map
//! from the e820 table, the command line, the module list with each
//! module's string, the boot loader's name). Must not touch: the entry state
//! (vmm-core's `initial_state`) or the ELF parsing (vmm-core's loader).

use std::ops::Range;
use std::path::Path;

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_platform::config::Module;
use vmm_platform::layout::{E820Type, MemoryLayout, MIB};

use super::{read, BootError};
use crate::memory::LowRam;

/// Where the information structure, the memory map, the module list and
/// all strings go: low RAM below the EBDA, away from the kernel (1 MiB and
/// up) and from what the guest tests use below 0x1_1000.
pub const INFO_AREA: Range<u64> = 0x9_0000..0x9_FC00;

/// The name in `boot_loader_name`.
pub const BOOT_LOADER_NAME: &str = "Tern VMM";

/// `flags` bits of the information structure.
pub const INFO_MEMORY: u32 = 1 << 0;
pub const INFO_CMDLINE: u32 = 1 << 2;
pub const INFO_MODULES: u32 = 1 << 3;
pub const INFO_MEMORY_MAP: u32 = 1 << 6;
pub const INFO_BOOT_LOADER_NAME: u32 = 1 << 9;

/// Size of the information structure (through the VBE fields).
const INFO_SIZE: usize = 88;
/// One module entry: start, end, string, reserved.
const MODULE_ENTRY: usize = 16;
/// One memory-map entry: size (20), base, length, type.
const MMAP_ENTRY: usize = 24;
const PAGE: u64 = 0x1000;

/// A loaded Multiboot kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MultibootImage {
    /// The kernel's entry point.
    pub entry: u64,
    /// The information structure's address (EBX of the boot vCPU).
    pub info: u64,
}

/// Loads the kernel at `path` and its `modules`, writes the information
/// structure with `cmdline`.
pub fn load(
    ram: &GuestMemoryMmap,
    layout: &MemoryLayout,
    path: &Path,
    cmdline: &str,
    modules: &[Module],
) -> Result<MultibootImage, BootError> {
    let image = read(path)?;
    let bad = |problem: String| BootError::BadKernel {
        path: path.to_owned(),
        problem,
    };
    let loaded = vmm_core::loader::load(&image, &LowRam(ram)).map_err(|e| bad(e.to_string()))?;
    if loaded.start < INFO_AREA.end && loaded.end > INFO_AREA.start {
        return Err(bad(format!(
            "it loads at {:#x}..{:#x}, over the Multiboot information at {:#x}..{:#x}; link it at 1 MiB or above",
            loaded.start, loaded.end, INFO_AREA.start, INFO_AREA.end
        )));
    }
    let mut files = Vec::new();
    for module in modules {
        files.push((read(&module.path)?, module.cmdline.as_str()));
    }
    let info = write_info(ram, layout, loaded.end, cmdline, &files)?;
    Ok(MultibootImage {
        entry: loaded.entry,
        info,
    })
}

/// Builds the information area's bytes from its start.
struct InfoArea {
    bytes: Vec<u8>,
}

impl InfoArea {
    /// Appends `data` (aligned to `align`) and returns its guest address.
    fn put(&mut self, data: &[u8], align: usize) -> u32 {
        let at = self.bytes.len().next_multiple_of(align);
        self.bytes.resize(at, 0);
        self.bytes.extend_from_slice(data);
        (INFO_AREA.start + at as u64) as u32
    }

    fn put_str(&mut self, text: &str) -> u32 {
        let mut bytes = text.as_bytes().to_vec();
        bytes.push(0);
        self.put(&bytes, 1)
    }
}

fn set_u32(bytes: &mut [u8], at: usize, value: u32) {
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

/// Places the modules page-aligned above `kernel_end` and writes the
/// information structure; returns its address.
pub fn write_info(
    ram: &GuestMemoryMmap,
    layout: &MemoryLayout,
    kernel_end: u64,
    cmdline: &str,
    modules: &[(Vec<u8>, &str)],
) -> Result<u64, BootError> {
    let e820 = layout.e820();
    let low_end = layout.low_ram().end;
    let mut area = InfoArea {
        bytes: vec![0; INFO_SIZE],
    };
    let mut header = [0u8; INFO_SIZE];
    let mut flags = INFO_MEMORY | INFO_CMDLINE | INFO_MEMORY_MAP | INFO_BOOT_LOADER_NAME;

    // Memory below 640 KiB from 0, and from 1 MiB to the first hole.
    let ram_at = |addr: u64| {
        e820.iter()
            .find(|e| e.kind == E820Type::Ram && (e.addr..e.end()).contains(&addr))
            .map_or(0, |e| (e.end() - addr) / 1024)
    };
    set_u32(&mut header, 4, ram_at(0).min(640) as u32);
    set_u32(&mut header, 8, ram_at(MIB).min(u32::MAX as u64) as u32);

    let cmdline_at = area.put_str(cmdline);
    set_u32(&mut header, 16, cmdline_at);

    let mut next = kernel_end.next_multiple_of(PAGE);
    let mut entries = Vec::new();
    for (bytes, string) in modules {
        let start = next;
        let end = start + bytes.len() as u64;
        if end > low_end {
            return Err(BootError::TooSmall {
                what: "the Multiboot modules",
                needed: end,
            });
        }
        ram.write_slice(bytes, GuestAddress(start))
            .map_err(|_| BootError::TooSmall {
                what: "the Multiboot modules",
                needed: end,
            })?;
        let string_at = area.put_str(string);
        let mut entry = [0u8; MODULE_ENTRY];
        set_u32(&mut entry, 0, start as u32);
        set_u32(&mut entry, 4, end as u32);
        set_u32(&mut entry, 8, string_at);
        entries.extend_from_slice(&entry);
        next = end.next_multiple_of(PAGE);
    }
    if !modules.is_empty() {
        flags |= INFO_MODULES;
        let list_at = area.put(&entries, 4);
        set_u32(&mut header, 20, modules.len() as u32);
        set_u32(&mut header, 24, list_at);
    }

    let mut map = Vec::new();
    for e in &e820 {
        let mut entry = [0u8; MMAP_ENTRY];
        set_u32(&mut entry, 0, (MMAP_ENTRY - 4) as u32);
        entry[4..12].copy_from_slice(&e.addr.to_le_bytes());
        entry[12..20].copy_from_slice(&e.size.to_le_bytes());
        set_u32(&mut entry, 20, e.kind as u32);
        map.extend_from_slice(&entry);
    }
    let map_at = area.put(&map, 4);
    set_u32(&mut header, 44, map.len() as u32);
    set_u32(&mut header, 48, map_at);

    let name_at = area.put_str(BOOT_LOADER_NAME);
    set_u32(&mut header, 64, name_at);
    set_u32(&mut header, 0, flags);
    area.bytes[..INFO_SIZE].copy_from_slice(&header);

    let room = (INFO_AREA.end - INFO_AREA.start) as usize;
    if area.bytes.len() > room {
        return Err(BootError::MultibootInfo {
            needed: area.bytes.len(),
            room,
        });
    }
    ram.write_slice(&area.bytes, GuestAddress(INFO_AREA.start))
        .map_err(|_| BootError::TooSmall {
            what: "the Multiboot information",
            needed: INFO_AREA.end,
        })?;
    Ok(INFO_AREA.start)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmm_platform::layout::GIB;

    fn u32_at(ram: &GuestMemoryMmap, gpa: u64) -> u32 {
        ram.read_obj(GuestAddress(gpa)).unwrap()
    }

    fn string_at(ram: &GuestMemoryMmap, gpa: u64) -> String {
        let mut bytes = Vec::new();
        for at in gpa.. {
            let b: u8 = ram.read_obj(GuestAddress(at)).unwrap();
            if b == 0 {
                break;
            }
            bytes.push(b);
        }
        String::from_utf8(bytes).unwrap()
    }

    fn ram(layout: &MemoryLayout) -> GuestMemoryMmap {
        let ranges: Vec<_> = layout
            .ram()
            .iter()
            .map(|r| (GuestAddress(r.start), (r.end - r.start) as usize))
            .collect();
        GuestMemoryMmap::from_ranges(&ranges).unwrap()
    }

    #[test]
    fn the_information_structure_describes_memory_modules_and_strings() {
        let layout = MemoryLayout::new(64 * MIB).unwrap();
        let ram = ram(&layout);
        let modules = [
            (b"first module".to_vec(), "mod0 a=1"),
            (vec![7u8; 5000], ""),
        ];
        let info = write_info(&ram, &layout, 0x12_3456, "kernel args", &modules).unwrap();
        assert_eq!(info, INFO_AREA.start);
        let flags = u32_at(&ram, info);
        assert_eq!(
            flags,
            INFO_MEMORY | INFO_CMDLINE | INFO_MODULES | INFO_MEMORY_MAP | INFO_BOOT_LOADER_NAME
        );
        assert_eq!(u32_at(&ram, info + 4), 639); // 0..0x9fc00
        assert_eq!(u32_at(&ram, info + 8), (63 * MIB / 1024) as u32);
        assert_eq!(
            string_at(&ram, u32_at(&ram, info + 16) as u64),
            "kernel args"
        );
        assert_eq!(string_at(&ram, u32_at(&ram, info + 64) as u64), "Tern VMM");

        assert_eq!(u32_at(&ram, info + 20), 2);
        let list = u32_at(&ram, info + 24) as u64;
        let (start0, end0) = (u32_at(&ram, list), u32_at(&ram, list + 4));
        assert_eq!((start0, end0), (0x12_4000, 0x12_4000 + 12));
        assert_eq!(string_at(&ram, u32_at(&ram, list + 8) as u64), "mod0 a=1");
        let mut back = [0u8; 12];
        ram.read_slice(&mut back, GuestAddress(start0 as u64))
            .unwrap();
        assert_eq!(&back, b"first module");
        let (start1, end1) = (u32_at(&ram, list + 16), u32_at(&ram, list + 20));
        assert_eq!((start1, end1), (0x12_5000, 0x12_5000 + 5000));
        assert_eq!(string_at(&ram, u32_at(&ram, list + 24) as u64), "");
        let b: u8 = ram.read_obj(GuestAddress(end1 as u64 - 1)).unwrap();
        assert_eq!(b, 7);

        // The memory map is the e820 table, entry by entry.
        let (len, map) = (u32_at(&ram, info + 44), u32_at(&ram, info + 48) as u64);
        let e820 = layout.e820();
        assert_eq!(len as usize, e820.len() * MMAP_ENTRY);
        for (i, e) in e820.iter().enumerate() {
            let at = map + (i * MMAP_ENTRY) as u64;
            assert_eq!(u32_at(&ram, at), 20);
            let base: u64 = ram.read_obj(GuestAddress(at + 4)).unwrap();
            let size: u64 = ram.read_obj(GuestAddress(at + 12)).unwrap();
            assert_eq!(
                (base, size, u32_at(&ram, at + 20)),
                (e.addr, e.size, e.kind as u32)
            );
        }
    }

    #[test]
    fn memory_above_4g_is_in_the_map_and_mem_upper_stops_at_the_hole() {
        let layout = MemoryLayout::new(4 * GIB).unwrap();
        let ram = ram(&layout);
        let info = write_info(&ram, &layout, 0x20_0000, "", &[]).unwrap();
        assert_eq!(u32_at(&ram, info) & INFO_MODULES, 0);
        assert_eq!(u32_at(&ram, info + 8) as u64, (3 * GIB - MIB) / 1024);
        let (len, map) = (u32_at(&ram, info + 44), u32_at(&ram, info + 48) as u64);
        let last = map + len as u64 - MMAP_ENTRY as u64;
        let base: u64 = ram.read_obj(GuestAddress(last + 4)).unwrap();
        let size: u64 = ram.read_obj(GuestAddress(last + 12)).unwrap();
        assert_eq!((base, size, u32_at(&ram, last + 20)), (4 * GIB, GIB, 1));
    }

    #[test]
    fn modules_beyond_low_ram_and_oversized_strings_are_refused() {
        let layout = MemoryLayout::new(16 * MIB).unwrap();
        let ram = ram(&layout);
        let big = vec![0u8; (15 * MIB) as usize];
        let e = write_info(&ram, &layout, 2 * MIB, "", &[(big, "")]).unwrap_err();
        assert!(matches!(e, BootError::TooSmall { .. }), "{e}");
        let long = "x".repeat(70_000);
        let e = write_info(&ram, &layout, 2 * MIB, &long, &[]).unwrap_err();
        assert!(e.to_string().contains("shorten"), "{e}");
    }
}
