//! ELF64 → ELF32 conversion of the kernel for QEMU's `-kernel`, which loads Multiboot v1
//! kernels only when they are ELF32.
//!
//! The kernel's loadable segments sit below 4 GiB physically and its entry point is a
//! physical address, so an ELF32 file whose `PT_LOAD` headers carry each segment's physical
//! address (as both `p_vaddr` and `p_paddr`) loads the same bytes at the same places.
//! Sections, symbols and non-load headers are dropped. This module only transforms bytes.

use std::borrow::Cow;
use std::fmt;

use object::elf::{self, FileHeader32, FileHeader64, ProgramHeader32};
use object::read::elf::{FileHeader, ProgramHeader};
use object::{LittleEndian as LE, U16, U32};

use super::multiboot;

/// Segments keep their offset within a page, as a loader that maps pages would want.
const PAGE: u64 = 4096;
const FOUR_GIB: u64 = 1 << 32;
/// Index of the class byte (32/64-bit) in the ELF identification.
const EI_CLASS: usize = 4;

/// Why a kernel image cannot be booted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElfError {
    Parse(String),
    Machine(u16),
    NoLoadSegments,
    EntryAbove4GiB(u64),
    SegmentAbove4GiB { paddr: u64, memsz: u64 },
    EntryOutsideSegments(u64),
    NoMultiboot1,
    Multiboot1AoutKludge,
    NoMultiboot2,
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ElfError::Parse(e) => write!(f, "not a readable ELF file ({e})"),
            ElfError::Machine(m) => write!(f, "ELF machine {m} is neither x86-64 (62) nor i386 (3)"),
            ElfError::NoLoadSegments => f.write_str("has no PT_LOAD segment"),
            ElfError::EntryAbove4GiB(e) => write!(
                f,
                "entry point {e:#x} is above 4 GiB; Multiboot enters at a 32-bit physical address"
            ),
            ElfError::SegmentAbove4GiB { paddr, memsz } => write!(
                f,
                "PT_LOAD at physical {paddr:#x} (+{memsz:#x}) ends above 4 GiB; link it with a physical load address (AT()) below 4 GiB"
            ),
            ElfError::EntryOutsideSegments(e) => write!(
                f,
                "entry point {e:#x} is not inside any PT_LOAD's physical range; Multiboot jumps to it with paging off"
            ),
            ElfError::NoMultiboot1 => f.write_str(
                "no Multiboot v1 header in the first 8 KiB of the ELF32 image QEMU gets; put it at the start of the first PT_LOAD segment",
            ),
            ElfError::Multiboot1AoutKludge => f.write_str(
                "the Multiboot v1 header sets flag 16 (a.out kludge); clear it: QEMU then loads the ELF program headers",
            ),
            ElfError::NoMultiboot2 => f.write_str(
                "no Multiboot v2 header in the first 32 KiB (8-byte aligned); GRUB's multiboot2 needs one",
            ),
        }
    }
}

impl std::error::Error for ElfError {}

fn parse_error(e: object::read::Error) -> ElfError {
    ElfError::Parse(e.to_string())
}

/// Returns an ELF32 image QEMU's Multiboot loader accepts: an ELF64 x86-64 kernel converted,
/// an ELF32 i386 kernel unchanged. Either way the result carries a usable Multiboot v1 header.
pub fn to_multiboot_elf32(image: &[u8]) -> Result<Cow<'_, [u8]>, ElfError> {
    let class = *image
        .get(EI_CLASS)
        .ok_or(ElfError::Parse("file too short".into()))?;
    let out = if class == elf::ELFCLASS32 {
        let header = FileHeader32::<LE>::parse(image).map_err(parse_error)?;
        let machine = header.e_machine(LE);
        if machine != elf::EM_386 {
            return Err(ElfError::Machine(machine));
        }
        Cow::Borrowed(image)
    } else {
        Cow::Owned(convert(image)?)
    };
    match multiboot::find_v1(&out) {
        None => Err(ElfError::NoMultiboot1),
        Some(flags) if flags & multiboot::V1_AOUT_KLUDGE != 0 => {
            Err(ElfError::Multiboot1AoutKludge)
        }
        Some(_) => Ok(out),
    }
}

struct Segment<'a> {
    paddr: u32,
    memsz: u32,
    flags: u32,
    data: &'a [u8],
}

fn convert(image: &[u8]) -> Result<Vec<u8>, ElfError> {
    let header = FileHeader64::<LE>::parse(image).map_err(parse_error)?;
    let machine = header.e_machine(LE);
    if machine != elf::EM_X86_64 {
        return Err(ElfError::Machine(machine));
    }
    let entry = header.e_entry(LE);
    if entry >= FOUR_GIB {
        return Err(ElfError::EntryAbove4GiB(entry));
    }
    let mut segments = Vec::new();
    for ph in header.program_headers(LE, image).map_err(parse_error)? {
        if ph.p_type(LE) != elf::PT_LOAD || ph.p_memsz(LE) == 0 {
            continue;
        }
        let (paddr, memsz) = (ph.p_paddr(LE), ph.p_memsz(LE));
        if paddr.checked_add(memsz).is_none_or(|end| end > FOUR_GIB) || ph.p_filesz(LE) > memsz {
            return Err(ElfError::SegmentAbove4GiB { paddr, memsz });
        }
        segments.push(Segment {
            paddr: paddr as u32,
            memsz: memsz as u32,
            flags: ph.p_flags(LE),
            data: ph
                .data(LE, image)
                .map_err(|()| ElfError::Parse("a PT_LOAD segment lies outside the file".into()))?,
        });
    }
    if segments.is_empty() {
        return Err(ElfError::NoLoadSegments);
    }
    if !segments
        .iter()
        .any(|s| (s.paddr as u64..s.paddr as u64 + s.memsz as u64).contains(&entry))
    {
        return Err(ElfError::EntryOutsideSegments(entry));
    }
    Ok(write_elf32(entry as u32, &segments))
}

fn write_elf32(entry: u32, segments: &[Segment]) -> Vec<u8> {
    let header_size = size_of::<FileHeader32<LE>>();
    let ph_size = size_of::<ProgramHeader32<LE>>();
    let mut offsets = Vec::with_capacity(segments.len());
    let mut end = (header_size + ph_size * segments.len()) as u64;
    for s in segments {
        let misalign = (s.paddr as u64 % PAGE + PAGE - end % PAGE) % PAGE;
        offsets.push(end + misalign);
        end += misalign + s.data.len() as u64;
    }

    let u16 = |v: usize| U16::new(LE, v as u16);
    let file_header = FileHeader32::<LE> {
        e_ident: elf::Ident {
            magic: elf::ELFMAG,
            class: elf::ELFCLASS32,
            data: elf::ELFDATA2LSB,
            version: elf::EV_CURRENT,
            os_abi: elf::ELFOSABI_SYSV,
            abi_version: 0,
            padding: [0; 7],
        },
        e_type: U16::new(LE, elf::ET_EXEC),
        e_machine: U16::new(LE, elf::EM_386),
        e_version: U32::new(LE, elf::EV_CURRENT.into()),
        e_entry: U32::new(LE, entry),
        e_phoff: U32::new(LE, header_size as u32),
        e_shoff: U32::new(LE, 0),
        e_flags: U32::new(LE, 0),
        e_ehsize: u16(header_size),
        e_phentsize: u16(ph_size),
        e_phnum: u16(segments.len()),
        e_shentsize: u16(size_of::<elf::SectionHeader32<LE>>()),
        e_shnum: u16(0),
        e_shstrndx: u16(0),
    };
    let mut out = object::bytes_of(&file_header).to_vec();
    for (s, offset) in segments.iter().zip(&offsets) {
        let u32 = |v: u32| U32::new(LE, v);
        let ph = ProgramHeader32::<LE> {
            p_type: u32(elf::PT_LOAD),
            p_offset: u32(*offset as u32),
            p_vaddr: u32(s.paddr),
            p_paddr: u32(s.paddr),
            p_filesz: u32(s.data.len() as u32),
            p_memsz: u32(s.memsz),
            p_flags: u32(s.flags),
            p_align: u32(PAGE as u32),
        };
        out.extend_from_slice(object::bytes_of(&ph));
    }
    for (s, offset) in segments.iter().zip(&offsets) {
        out.resize(*offset as usize, 0);
        out.extend_from_slice(s.data);
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use object::elf::ProgramHeader64;
    use object::read::elf::ElfFile32;
    use object::{Object, U64};

    pub struct TestSegment {
        pub vaddr: u64,
        pub paddr: u64,
        pub data: Vec<u8>,
        pub memsz: u64,
    }

    /// A minimal x86-64 ELF64 executable with the given load segments and one PT_NOTE.
    pub fn elf64(entry: u64, segments: &[TestSegment]) -> Vec<u8> {
        let phnum = segments.len() + 1;
        let mut data_offset = 0x1000u64;
        let mut headers = Vec::new();
        let mut body = Vec::new();
        for s in segments {
            let u32 = |v: u32| U32::new(LE, v);
            let u64 = |v: u64| U64::new(LE, v);
            headers.push(ProgramHeader64::<LE> {
                p_type: u32(elf::PT_LOAD),
                p_flags: u32(elf::PF_R | elf::PF_X),
                p_offset: u64(data_offset),
                p_vaddr: u64(s.vaddr),
                p_paddr: u64(s.paddr),
                p_filesz: u64(s.data.len() as u64),
                p_memsz: u64(s.memsz),
                p_align: u64(0x1000),
            });
            body.push((data_offset, s.data.clone()));
            data_offset = (data_offset + s.data.len() as u64).next_multiple_of(0x1000);
        }
        headers.push(ProgramHeader64::<LE> {
            p_type: U32::new(LE, elf::PT_NOTE),
            p_flags: U32::new(LE, 0),
            p_offset: U64::new(LE, 0),
            p_vaddr: U64::new(LE, 0),
            p_paddr: U64::new(LE, 0),
            p_filesz: U64::new(LE, 0),
            p_memsz: U64::new(LE, 0),
            p_align: U64::new(LE, 4),
        });
        let header = FileHeader64::<LE> {
            e_ident: elf::Ident {
                magic: elf::ELFMAG,
                class: elf::ELFCLASS64,
                data: elf::ELFDATA2LSB,
                version: elf::EV_CURRENT,
                os_abi: 0,
                abi_version: 0,
                padding: [0; 7],
            },
            e_type: U16::new(LE, elf::ET_EXEC),
            e_machine: U16::new(LE, elf::EM_X86_64),
            e_version: U32::new(LE, 1),
            e_entry: U64::new(LE, entry),
            e_phoff: U64::new(LE, 64),
            e_shoff: U64::new(LE, 0),
            e_flags: U32::new(LE, 0),
            e_ehsize: U16::new(LE, 64),
            e_phentsize: U16::new(LE, 56),
            e_phnum: U16::new(LE, phnum as u16),
            e_shentsize: U16::new(LE, 64),
            e_shnum: U16::new(LE, 0),
            e_shstrndx: U16::new(LE, 0),
        };
        let mut out = object::bytes_of(&header).to_vec();
        for h in &headers {
            out.extend_from_slice(object::bytes_of(h));
        }
        for (offset, data) in body {
            out.resize(offset as usize, 0);
            out.extend_from_slice(&data);
        }
        out
    }

    /// Boot code that starts with both Multiboot headers, like a real kernel's `.boot`.
    pub fn boot_code() -> Vec<u8> {
        let mut code = multiboot::tests::v1_header(0);
        code.extend_from_slice(&[0; 4]);
        code.extend(multiboot::tests::v2_header());
        code.extend_from_slice(&[0xf4; 16]); // hlt
        code
    }

    fn higher_half_kernel() -> Vec<u8> {
        elf64(
            0x20_0020,
            &[
                TestSegment {
                    vaddr: 0x20_0000,
                    paddr: 0x20_0000,
                    data: boot_code(),
                    memsz: 0x2000,
                },
                TestSegment {
                    vaddr: 0xffff_ffff_8020_3000,
                    paddr: 0x20_3000,
                    data: vec![0xaa; 0x1800],
                    memsz: 0x5000,
                },
            ],
        )
    }

    #[test]
    fn converts_load_segments_to_physical_elf32() {
        let input = higher_half_kernel();
        let out = to_multiboot_elf32(&input).unwrap();
        let file = ElfFile32::<LE>::parse(&*out).unwrap();
        let header = file.elf_header();
        assert_eq!(header.e_machine(LE), elf::EM_386);
        assert_eq!(file.entry(), 0x20_0020);
        let loads: Vec<_> = file
            .elf_program_headers()
            .iter()
            .map(|ph| {
                assert_eq!(ph.p_type(LE), elf::PT_LOAD);
                assert_eq!(ph.p_offset(LE) % 4096, ph.p_paddr(LE) % 4096);
                let bytes = ph.data(LE, &*out).unwrap().to_vec();
                (ph.p_vaddr(LE), ph.p_paddr(LE), ph.p_memsz(LE), bytes)
            })
            .collect();
        assert_eq!(
            loads,
            [
                (0x20_0000, 0x20_0000, 0x2000, boot_code()),
                (0x20_3000, 0x20_3000, 0x5000, vec![0xaa; 0x1800]),
            ]
        );
        assert_eq!(multiboot::find_v1(&out), Some(0));
    }

    #[test]
    fn elf32_input_passes_through_unchanged() {
        let converted = to_multiboot_elf32(&higher_half_kernel())
            .unwrap()
            .into_owned();
        let again = to_multiboot_elf32(&converted).unwrap();
        assert!(matches!(again, Cow::Borrowed(_)));
        assert_eq!(*again, *converted);
    }

    #[test]
    fn entry_above_4gib_is_refused() {
        let seg = TestSegment {
            vaddr: 0x20_0000,
            paddr: 0x20_0000,
            data: boot_code(),
            memsz: 0x1000,
        };
        let e = to_multiboot_elf32(&elf64(0xffff_ffff_8020_0000, &[seg])).unwrap_err();
        assert_eq!(e, ElfError::EntryAbove4GiB(0xffff_ffff_8020_0000));
    }

    #[test]
    fn segment_above_4gib_is_refused() {
        let seg = TestSegment {
            vaddr: 0xffff_0000,
            paddr: 0xffff_0000,
            data: boot_code(),
            memsz: 0x1_0000_0000,
        };
        let e = to_multiboot_elf32(&elf64(0xffff_0000, &[seg])).unwrap_err();
        assert!(
            matches!(
                e,
                ElfError::SegmentAbove4GiB {
                    paddr: 0xffff_0000,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn entry_outside_segments_is_refused() {
        let seg = TestSegment {
            vaddr: 0x20_0000,
            paddr: 0x20_0000,
            data: boot_code(),
            memsz: 0x1000,
        };
        let e = to_multiboot_elf32(&elf64(0x10_0000, &[seg])).unwrap_err();
        assert_eq!(e, ElfError::EntryOutsideSegments(0x10_0000));
    }

    #[test]
    fn kernel_without_multiboot1_header_is_refused() {
        let seg = TestSegment {
            vaddr: 0x20_0000,
            paddr: 0x20_0000,
            data: vec![0xf4; 64],
            memsz: 0x1000,
        };
        let e = to_multiboot_elf32(&elf64(0x20_0000, &[seg])).unwrap_err();
        assert_eq!(e, ElfError::NoMultiboot1);
    }

    #[test]
    fn aout_kludge_is_refused() {
        let seg = TestSegment {
            vaddr: 0x20_0000,
            paddr: 0x20_0000,
            data: multiboot::tests::v1_header(multiboot::V1_AOUT_KLUDGE),
            memsz: 0x1000,
        };
        let e = to_multiboot_elf32(&elf64(0x20_0000, &[seg])).unwrap_err();
        assert_eq!(e, ElfError::Multiboot1AoutKludge);
    }

    #[test]
    fn garbage_and_wrong_machines_are_refused() {
        assert!(matches!(
            to_multiboot_elf32(b"#!/bin/sh\n"),
            Err(ElfError::Parse(_))
        ));
        assert!(matches!(to_multiboot_elf32(&[]), Err(ElfError::Parse(_))));
        let mut arm = higher_half_kernel();
        arm[18] = 183; // EM_AARCH64
        assert_eq!(
            to_multiboot_elf32(&arm).unwrap_err(),
            ElfError::Machine(183)
        );
        let truncated = &higher_half_kernel()[..0x1100];
        assert!(matches!(
            to_multiboot_elf32(truncated),
            Err(ElfError::Parse(_))
        ));
    }
}
