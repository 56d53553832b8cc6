//! Loading a Multiboot v1 ELF guest into guest RAM.
//!
//! Owns: finding and checking the Multiboot v1 header (magic, checksum, in
//! the first 8 KiB), parsing the ELF32 or ELF64 program headers and copying
//! each `PT_LOAD` segment to its physical address (`p_paddr`), zeroing the
//! rest up to `p_memsz`. Must not touch: vCPU state (see `boot`), anything
//! outside the guest RAM given to it. Every offset and size from the file is
//! checked; a bad image gets a [`LoadError`], never a panic.

use core::fmt;

use crate::memory::{GuestMemory, OutOfRange};

const MULTIBOOT_MAGIC: u32 = 0x1BAD_B002;
const HEADER_SEARCH: usize = 8192;
const PT_LOAD: u32 = 1;

/// Where the loaded guest starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootImage {
    /// Entry point (`e_entry`), a guest-physical address (paging is off).
    pub entry: u64,
    /// Lowest and highest guest-physical byte loaded (end exclusive).
    pub start: u64,
    pub end: u64,
}

/// Why an image cannot be loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadError {
    NotElf,
    /// Not a little-endian x86 (EM_386 / EM_X86_64) executable.
    WrongMachine {
        class: u8,
        machine: u16,
    },
    NoMultibootHeader,
    BadMultibootChecksum,
    /// A header or segment lies outside the file.
    Truncated {
        what: &'static str,
    },
    NoLoadableSegment,
    /// A segment does not fit into guest RAM.
    OutsideRam(OutOfRange),
    /// `p_filesz > p_memsz`.
    BadSegment {
        index: usize,
    },
    /// The entry point is not inside a loaded segment.
    EntryOutside {
        entry: u64,
    },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::NotElf => {
                f.write_str("not an ELF file (bad magic); give a Multiboot v1 ELF guest")
            }
            LoadError::WrongMachine { class, machine } => write!(
                f,
                "not an x86 little-endian executable (ELF class {class}, machine {machine})"
            ),
            LoadError::NoMultibootHeader => {
                f.write_str("no Multiboot v1 header (magic 0x1BADB002) in the first 8 KiB")
            }
            LoadError::BadMultibootChecksum => {
                f.write_str("the Multiboot v1 header's checksum is wrong")
            }
            LoadError::Truncated { what } => {
                write!(f, "the file is truncated: {what} lies outside it")
            }
            LoadError::NoLoadableSegment => f.write_str("the ELF has no PT_LOAD segment"),
            LoadError::OutsideRam(r) => {
                write!(f, "a segment does not fit: {r}; give the VM more memory")
            }
            LoadError::BadSegment { index } => {
                write!(f, "program header {index} has p_filesz > p_memsz")
            }
            LoadError::EntryOutside { entry } => {
                write!(
                    f,
                    "the entry point {entry:#x} is not inside a loaded segment"
                )
            }
        }
    }
}

struct Segment {
    paddr: u64,
    offset: u64,
    filesz: u64,
    memsz: u64,
}

fn read<const N: usize>(image: &[u8], at: u64, what: &'static str) -> Result<[u8; N], LoadError> {
    let start = usize::try_from(at).map_err(|_| LoadError::Truncated { what })?;
    start
        .checked_add(N)
        .and_then(|end| image.get(start..end))
        .and_then(|b| b.try_into().ok())
        .ok_or(LoadError::Truncated { what })
}

fn u16_at(image: &[u8], at: u64, what: &'static str) -> Result<u16, LoadError> {
    read::<2>(image, at, what).map(u16::from_le_bytes)
}

fn u32_at(image: &[u8], at: u64, what: &'static str) -> Result<u32, LoadError> {
    read::<4>(image, at, what).map(u32::from_le_bytes)
}

fn u64_at(image: &[u8], at: u64, what: &'static str) -> Result<u64, LoadError> {
    read::<8>(image, at, what).map(u64::from_le_bytes)
}

/// Checks the Multiboot v1 header: magic at a 4-byte aligned offset in the
/// first 8 KiB, followed by flags and checksum with magic+flags+checksum = 0.
fn check_multiboot(image: &[u8]) -> Result<(), LoadError> {
    let limit = image.len().min(HEADER_SEARCH);
    let mut at = 0;
    while at + 12 <= limit {
        let word =
            |o: usize| u32::from_le_bytes([image[o], image[o + 1], image[o + 2], image[o + 3]]);
        if word(at) == MULTIBOOT_MAGIC {
            let sum = word(at)
                .wrapping_add(word(at + 4))
                .wrapping_add(word(at + 8));
            return if sum == 0 {
                Ok(())
            } else {
                Err(LoadError::BadMultibootChecksum)
            };
        }
        at += 4;
    }
    Err(LoadError::NoMultibootHeader)
}

/// Loads `image` into `memory` and returns its entry point.
pub fn load(image: &[u8], memory: &dyn GuestMemory) -> Result<BootImage, LoadError> {
    if image.get(..4) != Some(b"\x7fELF".as_slice()) {
        return Err(LoadError::NotElf);
    }
    let class = image.get(4).copied().ok_or(LoadError::NotElf)?;
    let data = image.get(5).copied().ok_or(LoadError::NotElf)?;
    let machine = u16_at(image, 18, "the ELF header")?;
    let elf64 = match (class, data, machine) {
        (1, 1, 3) => false,
        (2, 1, 62) => true,
        _ => return Err(LoadError::WrongMachine { class, machine }),
    };
    check_multiboot(image)?;

    let (entry, phoff, phentsize, phnum) = if elf64 {
        (
            u64_at(image, 24, "the ELF header")?,
            u64_at(image, 32, "the ELF header")?,
            u16_at(image, 54, "the ELF header")?,
            u16_at(image, 56, "the ELF header")?,
        )
    } else {
        (
            u32_at(image, 24, "the ELF header")? as u64,
            u32_at(image, 28, "the ELF header")? as u64,
            u16_at(image, 42, "the ELF header")?,
            u16_at(image, 44, "the ELF header")?,
        )
    };

    let mut loaded: Option<(u64, u64)> = None;
    let mut entry_inside = false;
    for index in 0..phnum as u64 {
        let ph = phoff
            .checked_add(index * phentsize as u64)
            .ok_or(LoadError::Truncated {
                what: "a program header",
            })?;
        let what = "a program header";
        if u32_at(image, ph, what)? != PT_LOAD {
            continue;
        }
        let seg = if elf64 {
            Segment {
                offset: u64_at(image, ph + 8, what)?,
                paddr: u64_at(image, ph + 24, what)?,
                filesz: u64_at(image, ph + 32, what)?,
                memsz: u64_at(image, ph + 40, what)?,
            }
        } else {
            Segment {
                offset: u32_at(image, ph + 4, what)? as u64,
                paddr: u32_at(image, ph + 12, what)? as u64,
                filesz: u32_at(image, ph + 16, what)? as u64,
                memsz: u32_at(image, ph + 20, what)? as u64,
            }
        };
        if seg.memsz == 0 {
            continue;
        }
        if seg.filesz > seg.memsz {
            return Err(LoadError::BadSegment {
                index: index as usize,
            });
        }
        let bytes = seg
            .offset
            .checked_add(seg.filesz)
            .and_then(|end| {
                image.get(usize::try_from(seg.offset).ok()?..usize::try_from(end).ok()?)
            })
            .ok_or(LoadError::Truncated {
                what: "a segment's bytes",
            })?;
        let end = seg
            .paddr
            .checked_add(seg.memsz)
            .ok_or(LoadError::OutsideRam(OutOfRange {
                gpa: seg.paddr,
                len: seg.memsz,
            }))?;
        if end > memory.size() {
            return Err(LoadError::OutsideRam(OutOfRange {
                gpa: seg.paddr,
                len: seg.memsz,
            }));
        }
        memory
            .write(seg.paddr, bytes)
            .map_err(LoadError::OutsideRam)?;
        memory
            .zero(seg.paddr + seg.filesz, seg.memsz - seg.filesz)
            .map_err(LoadError::OutsideRam)?;
        entry_inside |= (seg.paddr..end).contains(&entry);
        loaded = Some(match loaded {
            None => (seg.paddr, end),
            Some((s, e)) => (s.min(seg.paddr), e.max(end)),
        });
    }
    let (start, end) = loaded.ok_or(LoadError::NoLoadableSegment)?;
    if !entry_inside {
        return Err(LoadError::EntryOutside { entry });
    }
    Ok(BootImage { entry, start, end })
}

impl core::error::Error for LoadError {}
