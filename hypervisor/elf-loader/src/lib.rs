//! ELF64 parsing for loading programs.
//!
//! Owns: validating an x86_64 ELF64 executable (`ET_EXEC`) or static PIE
//! (`ET_DYN`) held in memory, and describing what a loader must map: the
//! loadable segments (`PT_LOAD`), the TLS template (`PT_TLS`), the entry
//! point and, for PIEs, the `R_X86_64_RELATIVE` relocations to apply.
//!
//! Must not touch: memory. The crate only reads the byte slice it is given;
//! allocating frames, copying, zeroing the BSS and applying relocations is
//! the loader's job. It needs no heap.
//!
//! Everything is validated once in [`Elf::parse`], so the accessors cannot
//! fail later. Rules beyond the ELF specification, chosen to keep loaders
//! simple:
//!
//! * `PT_LOAD` segments must be sorted by address and must not share a
//!   4 KiB page: each page belongs to exactly one segment and gets that
//!   segment's permissions. Linkers emit this layout by default (each
//!   segment starts on a new page); a linker script that packs two segments
//!   into one page is rejected with [`ElfError::SegmentsSharePage`].
//! * Segments must lie in the user half (`< 0x0000_8000_0000_0000`); for a
//!   PIE this applies to the addresses relative to a load base of 0.
//! * `PT_LOAD` segments with `p_memsz == 0` are ignored.
//! * A `PT_INTERP` segment (a dynamically linked program) is accepted by
//!   the parser so tools can inspect such files, and reported by
//!   [`Elf::interpreter`]; a loader without a dynamic linker must refuse it.

#![no_std]
#![forbid(unsafe_code)]

#[cfg(test)]
extern crate std;

use core::fmt;

/// Page size used for the page-granularity checks.
pub const PAGE_SIZE: u64 = 4096;
/// First address above the user half of the address space.
pub const USER_END: u64 = 0x0000_8000_0000_0000;

const EHDR_SIZE: usize = 64;
const PHDR_SIZE: usize = 56;
const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
const EV_CURRENT: u8 = 1;
const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;
const EM_X86_64: u16 = 62;
const PN_XNUM: u16 = 0xffff;
const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const PT_TLS: u32 = 7;
const PF_X: u32 = 1;
const PF_W: u32 = 2;
const PF_R: u32 = 4;

const DT_NULL: u64 = 0;
const DT_PLTRELSZ: u64 = 2;
const DT_RELA: u64 = 7;
const DT_RELASZ: u64 = 8;
const DT_RELAENT: u64 = 9;
const DT_REL: u64 = 17;
const DT_RELSZ: u64 = 18;
const DT_RELRSZ: u64 = 35;
const DYN_SIZE: usize = 16;
const RELA_SIZE: u64 = 24;
const R_X86_64_NONE: u32 = 0;
const R_X86_64_RELATIVE: u32 = 8;

/// What is wrong with an ELF file. Offsets, sizes and addresses are in
/// bytes; `index` is the program header's position in the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfError {
    TooShort {
        size: usize,
    },
    BadMagic,
    NotElf64 {
        class: u8,
    },
    NotLittleEndian {
        data: u8,
    },
    BadVersion {
        version: u8,
    },
    WrongMachine {
        machine: u16,
    },
    WrongType {
        e_type: u16,
    },
    BadPhEntSize {
        size: u16,
    },
    ExtendedPhNum,
    PhTableOutOfBounds {
        offset: u64,
        size: u64,
        file_size: usize,
    },
    NoLoadSegments,
    FileSizeExceedsMemSize {
        index: usize,
        file_size: u64,
        mem_size: u64,
    },
    FileRangeOutOfBounds {
        index: usize,
        offset: u64,
        size: u64,
        file_size: usize,
    },
    BadAlign {
        index: usize,
        align: u64,
    },
    MisalignedSegment {
        index: usize,
        vaddr: u64,
        offset: u64,
        align: u64,
    },
    NotUserAddress {
        index: usize,
        vaddr: u64,
        mem_size: u64,
    },
    Unsorted {
        index: usize,
        vaddr: u64,
        prev_vaddr: u64,
    },
    SegmentsSharePage {
        index: usize,
        prev_index: usize,
        page: u64,
    },
    MultipleTls {
        index: usize,
    },
    EntryNotExecutable {
        entry: u64,
    },
    /// The dynamic section or a relocation table is malformed.
    BadDynamic {
        what: &'static str,
    },
    /// A relocation other than `R_X86_64_RELATIVE` (or `NONE`).
    UnsupportedRelocation {
        index: u64,
        r_type: u32,
    },
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ElfError::*;
        match *self {
            TooShort { size } => write!(
                f,
                "file is {size:#x} bytes, smaller than the {EHDR_SIZE}-byte ELF64 header"
            ),
            BadMagic => f.write_str("not an ELF file (magic bytes are not 0x7f 'E' 'L' 'F')"),
            NotElf64 { class } => write!(
                f,
                "ELF class {class} is not ELF64 (2); build for a 64-bit target"
            ),
            NotLittleEndian { data } => write!(
                f,
                "ELF data encoding {data} is not little endian (1)"
            ),
            BadVersion { version } => write!(f, "ELF version {version} is not 1"),
            WrongMachine { machine } => write!(
                f,
                "machine {machine} is not x86_64 (62); build for x86_64"
            ),
            WrongType { e_type } => write!(
                f,
                "ELF type {e_type} is neither an executable (ET_EXEC, 2) nor a static PIE \
                 (ET_DYN, 3); link an executable, not an object file or core dump"
            ),
            BadPhEntSize { size } => write!(
                f,
                "program header entry size {size} is smaller than {PHDR_SIZE}"
            ),
            ExtendedPhNum => f.write_str(
                "program header count 0xffff (extended numbering) is not supported",
            ),
            PhTableOutOfBounds { offset, size, file_size } => write!(
                f,
                "program header table {offset:#x}+{size:#x} beyond end of file (size {file_size:#x})"
            ),
            NoLoadSegments => f.write_str("no PT_LOAD segment: nothing to load"),
            FileSizeExceedsMemSize { index, file_size, mem_size } => write!(
                f,
                "program header {index}: file size {file_size:#x} exceeds memory size {mem_size:#x}"
            ),
            FileRangeOutOfBounds { index, offset, size, file_size } => write!(
                f,
                "program header {index}: file range {offset:#x}+{size:#x} beyond end of file \
                 (size {file_size:#x})"
            ),
            BadAlign { index, align } => write!(
                f,
                "program header {index}: alignment {align:#x} is not a power of two"
            ),
            MisalignedSegment { index, vaddr, offset, align } => write!(
                f,
                "program header {index}: address {vaddr:#x} and file offset {offset:#x} differ \
                 modulo the alignment {align:#x}"
            ),
            NotUserAddress { index, vaddr, mem_size } => write!(
                f,
                "program header {index}: range {vaddr:#x}+{mem_size:#x} is not below the user \
                 limit {USER_END:#x}"
            ),
            Unsorted { index, vaddr, prev_vaddr } => write!(
                f,
                "program header {index}: PT_LOAD at {vaddr:#x} comes after one at \
                 {prev_vaddr:#x}; PT_LOAD segments must be sorted by address"
            ),
            SegmentsSharePage { index, prev_index, page } => write!(
                f,
                "program headers {prev_index} and {index}: PT_LOAD segments overlap or share \
                 the page at {page:#x}; start each segment on a new page"
            ),
            MultipleTls { index } => write!(
                f,
                "program header {index}: a second PT_TLS segment (at most one is allowed)"
            ),
            EntryNotExecutable { entry } => write!(
                f,
                "entry point {entry:#x} is not inside an executable PT_LOAD segment"
            ),
            BadDynamic { what } => write!(f, "dynamic section: {what}"),
            UnsupportedRelocation { index, r_type } => write!(
                f,
                "relocation {index}: type {r_type} is not R_X86_64_RELATIVE (8); link a static \
                 PIE without symbol references or a non-PIE executable"
            ),
        }
    }
}

/// Permissions of a segment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SegmentFlags {
    pub read: bool,
    pub write: bool,
    pub execute: bool,
}

impl SegmentFlags {
    fn from_bits(p_flags: u32) -> Self {
        Self {
            read: p_flags & PF_R != 0,
            write: p_flags & PF_W != 0,
            execute: p_flags & PF_X != 0,
        }
    }
}

/// One loadable segment: map `[vaddr, vaddr + mem_size)`, copy `data` to its
/// start and zero the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment<'a> {
    pub vaddr: u64,
    pub mem_size: u64,
    pub data: &'a [u8],
    pub flags: SegmentFlags,
}

/// The thread-local storage template: each thread's TLS block is `data`
/// followed by zeros up to `mem_size`, aligned to `align`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlsTemplate<'a> {
    pub vaddr: u64,
    pub data: &'a [u8],
    pub mem_size: u64,
    pub align: u64,
}

/// A relocation to apply when a PIE is loaded at `base`: write the 64-bit
/// value `base + addend` at address `base + offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Relocation {
    pub offset: u64,
    pub addend: i64,
}

/// One program header, decoded.
#[derive(Clone, Copy)]
struct Phdr {
    p_type: u32,
    flags: u32,
    offset: u64,
    vaddr: u64,
    file_size: u64,
    mem_size: u64,
    align: u64,
}

/// A validated ELF64 x86_64 executable.
#[derive(Clone, Copy)]
pub struct Elf<'a> {
    bytes: &'a [u8],
    e_type: u16,
    entry: u64,
    phoff: usize,
    phentsize: usize,
    phnum: usize,
    span: (u64, u64),
}

impl<'a> Elf<'a> {
    /// Parses and validates `bytes`; see the crate docs for the rules.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ElfError> {
        let file_size = bytes.len();
        if file_size < EHDR_SIZE {
            return Err(ElfError::TooShort { size: file_size });
        }
        let ident = |i: usize| bytes.get(i).copied().unwrap_or(0);
        if bytes.get(..4) != Some(b"\x7fELF".as_slice()) {
            return Err(ElfError::BadMagic);
        }
        if ident(4) != ELFCLASS64 {
            return Err(ElfError::NotElf64 { class: ident(4) });
        }
        if ident(5) != ELFDATA2LSB {
            return Err(ElfError::NotLittleEndian { data: ident(5) });
        }
        if ident(6) != EV_CURRENT {
            return Err(ElfError::BadVersion { version: ident(6) });
        }
        let e_type = read_u16(bytes, 0x10);
        let machine = read_u16(bytes, 0x12);
        if machine != EM_X86_64 {
            return Err(ElfError::WrongMachine { machine });
        }
        if e_type != ET_EXEC && e_type != ET_DYN {
            return Err(ElfError::WrongType { e_type });
        }
        let entry = read_u64(bytes, 0x18);
        let phoff = read_u64(bytes, 0x20);
        let phentsize = read_u16(bytes, 0x36);
        let phnum = read_u16(bytes, 0x38);
        if phnum == PN_XNUM {
            return Err(ElfError::ExtendedPhNum);
        }
        if usize::from(phentsize) < PHDR_SIZE && phnum != 0 {
            return Err(ElfError::BadPhEntSize { size: phentsize });
        }
        let table_size = u64::from(phentsize) * u64::from(phnum);
        let table = phoff
            .checked_add(table_size)
            .filter(|&end| end <= file_size as u64)
            .and_then(|_| usize::try_from(phoff).ok())
            .ok_or(ElfError::PhTableOutOfBounds {
                offset: phoff,
                size: table_size,
                file_size,
            })?;
        let mut elf = Elf {
            bytes,
            e_type,
            entry,
            phoff: table,
            phentsize: usize::from(phentsize),
            phnum: usize::from(phnum),
            span: (0, 0),
        };
        elf.validate_segments()?;
        Ok(elf)
    }

    /// The entry point (for a PIE relative to a load base of 0).
    pub fn entry(&self) -> u64 {
        self.entry
    }

    /// Whether this is a position-independent executable (`ET_DYN`): all
    /// addresses are relative to the load base.
    pub fn is_position_independent(&self) -> bool {
        self.e_type == ET_DYN
    }

    /// The `PT_LOAD` segments with a non-zero memory size, ascending.
    pub fn segments(&self) -> impl Iterator<Item = Segment<'a>> + '_ {
        self.phdrs()
            .filter(|(_, p)| p.p_type == PT_LOAD && p.mem_size != 0)
            .map(|(_, p)| Segment {
                vaddr: p.vaddr,
                mem_size: p.mem_size,
                data: self.file_range(p.offset, p.file_size).unwrap_or(&[]),
                flags: SegmentFlags::from_bits(p.flags),
            })
    }

    /// The TLS template, if the program has a `PT_TLS` segment.
    pub fn tls(&self) -> Option<TlsTemplate<'a>> {
        let (_, p) = self.phdrs().find(|(_, p)| p.p_type == PT_TLS)?;
        Some(TlsTemplate {
            vaddr: p.vaddr,
            data: self.file_range(p.offset, p.file_size).unwrap_or(&[]),
            mem_size: p.mem_size,
            align: p.align.max(1),
        })
    }

    /// `(lowest page-aligned segment address, highest page-aligned end)`.
    pub fn image_span(&self) -> (u64, u64) {
        self.span
    }

    /// The `PT_INTERP` path (without its NUL) if the program asks for a
    /// dynamic linker. A loader without one must refuse such a program.
    pub fn interpreter(&self) -> Option<&'a [u8]> {
        let (_, p) = self.phdrs().find(|(_, p)| p.p_type == PT_INTERP)?;
        let path = self.file_range(p.offset, p.file_size)?;
        Some(path.split(|&b| b == 0).next().unwrap_or(path))
    }

    /// The `R_X86_64_RELATIVE` relocations a PIE needs when loaded at a
    /// base other than 0 (empty if it has no `PT_DYNAMIC` segment).
    ///
    /// Fails if the dynamic section or the relocation table is malformed or
    /// holds any other kind of relocation (symbol references, PLT
    /// relocations, `DT_REL` or `DT_RELR` tables), which would need a
    /// dynamic linker.
    pub fn relocations(&self) -> Result<Relocations<'a>, ElfError> {
        let bad = |what| ElfError::BadDynamic { what };
        let empty = Relocations { table: &[] };
        let Some((_, dynamic)) = self.phdrs().find(|(_, p)| p.p_type == PT_DYNAMIC) else {
            return Ok(empty);
        };
        let dyn_bytes = self
            .file_range(dynamic.offset, dynamic.file_size)
            .ok_or(bad("PT_DYNAMIC file range is beyond end of file"))?;
        let (mut rela, mut rela_size, mut rela_ent) = (None, 0, RELA_SIZE);
        for entry in dyn_bytes.chunks_exact(DYN_SIZE) {
            let (tag, value) = (read_u64(entry, 0), read_u64(entry, 8));
            match tag {
                DT_NULL => break,
                DT_RELA => rela = Some(value),
                DT_RELASZ => rela_size = value,
                DT_RELAENT => rela_ent = value,
                DT_REL | DT_RELSZ if value != 0 => {
                    return Err(bad("DT_REL relocations are not supported (use RELA)"))
                }
                DT_PLTRELSZ if value != 0 => {
                    return Err(bad(
                        "PLT relocations need a dynamic linker (link statically)",
                    ))
                }
                DT_RELRSZ if value != 0 => {
                    return Err(bad("DT_RELR relocations are not supported (link without \
                         -z pack-relative-relocs)"))
                }
                _ => {}
            }
        }
        if rela_size == 0 {
            return Ok(empty);
        }
        if rela_ent != RELA_SIZE {
            return Err(bad("DT_RELAENT is not 24"));
        }
        if rela_size % RELA_SIZE != 0 {
            return Err(bad("DT_RELASZ is not a multiple of 24"));
        }
        let rela = rela.ok_or(bad("DT_RELASZ without DT_RELA"))?;
        let table = self.file_bytes_at(rela, rela_size).ok_or(bad(
            "relocation table is not inside the file data of one PT_LOAD",
        ))?;
        let relocs = Relocations { table };
        for (index, entry) in table.chunks_exact(RELA_SIZE as usize).enumerate() {
            let r_type = read_u64(entry, 8) as u32;
            if r_type != R_X86_64_RELATIVE && r_type != R_X86_64_NONE {
                return Err(ElfError::UnsupportedRelocation {
                    index: index as u64,
                    r_type,
                });
            }
            let offset = read_u64(entry, 0);
            let inside = self
                .segments()
                .any(|s| s.flags.write && contains(s.vaddr, s.mem_size, offset, 8));
            if r_type == R_X86_64_RELATIVE && !inside {
                return Err(bad(
                    "a relocation target is not inside a writable PT_LOAD segment",
                ));
            }
        }
        Ok(relocs)
    }

    // ---- internals -------------------------------------------------------

    fn phdr(&self, index: usize) -> Option<Phdr> {
        let start = self.phoff.checked_add(index.checked_mul(self.phentsize)?)?;
        let b = self.bytes.get(start..start.checked_add(PHDR_SIZE)?)?;
        Some(Phdr {
            p_type: read_u32(b, 0),
            flags: read_u32(b, 4),
            offset: read_u64(b, 8),
            vaddr: read_u64(b, 16),
            file_size: read_u64(b, 32),
            mem_size: read_u64(b, 40),
            align: read_u64(b, 48),
        })
    }

    fn phdrs(&self) -> impl Iterator<Item = (usize, Phdr)> + '_ {
        (0..self.phnum).filter_map(|i| Some((i, self.phdr(i)?)))
    }

    fn file_range(&self, offset: u64, size: u64) -> Option<&'a [u8]> {
        let start = usize::try_from(offset).ok()?;
        let end = start.checked_add(usize::try_from(size).ok()?)?;
        self.bytes.get(start..end)
    }

    /// The file bytes backing `[vaddr, vaddr + size)`, if one `PT_LOAD`
    /// segment's file data holds them all.
    fn file_bytes_at(&self, vaddr: u64, size: u64) -> Option<&'a [u8]> {
        let (_, p) = self
            .phdrs()
            .find(|(_, p)| p.p_type == PT_LOAD && contains(p.vaddr, p.file_size, vaddr, size))?;
        self.file_range(p.offset.checked_add(vaddr - p.vaddr)?, size)
    }

    fn validate_segments(&mut self) -> Result<(), ElfError> {
        let file_size = self.bytes.len();
        let mut prev: Option<(usize, u64, u64)> = None; // index, vaddr, end
        let mut span: Option<(u64, u64)> = None;
        let mut tls_seen = false;
        for index in 0..self.phnum {
            let p = self.phdr(index).ok_or(ElfError::PhTableOutOfBounds {
                offset: self.phoff as u64,
                size: (self.phnum * self.phentsize) as u64,
                file_size,
            })?;
            let checked = matches!(p.p_type, PT_LOAD | PT_TLS | PT_INTERP | PT_DYNAMIC);
            if !checked {
                continue;
            }
            if p.file_size > p.mem_size && p.p_type != PT_INTERP {
                return Err(ElfError::FileSizeExceedsMemSize {
                    index,
                    file_size: p.file_size,
                    mem_size: p.mem_size,
                });
            }
            if self.file_range(p.offset, p.file_size).is_none() {
                return Err(ElfError::FileRangeOutOfBounds {
                    index,
                    offset: p.offset,
                    size: p.file_size,
                    file_size,
                });
            }
            if p.align > 1 && !p.align.is_power_of_two() {
                return Err(ElfError::BadAlign {
                    index,
                    align: p.align,
                });
            }
            let end = p
                .vaddr
                .checked_add(p.mem_size)
                .filter(|&end| end <= USER_END);
            match p.p_type {
                PT_TLS => {
                    if tls_seen {
                        return Err(ElfError::MultipleTls { index });
                    }
                    tls_seen = true;
                    end.ok_or(ElfError::NotUserAddress {
                        index,
                        vaddr: p.vaddr,
                        mem_size: p.mem_size,
                    })?;
                }
                PT_LOAD if p.mem_size != 0 => {
                    let end = end.ok_or(ElfError::NotUserAddress {
                        index,
                        vaddr: p.vaddr,
                        mem_size: p.mem_size,
                    })?;
                    if p.align >= PAGE_SIZE && p.vaddr % p.align != p.offset % p.align {
                        return Err(ElfError::MisalignedSegment {
                            index,
                            vaddr: p.vaddr,
                            offset: p.offset,
                            align: p.align,
                        });
                    }
                    let first_page = align_down(p.vaddr);
                    let end_page = align_up(end);
                    if let Some((prev_index, prev_vaddr, prev_end)) = prev {
                        if p.vaddr < prev_vaddr {
                            return Err(ElfError::Unsorted {
                                index,
                                vaddr: p.vaddr,
                                prev_vaddr,
                            });
                        }
                        if first_page < align_up(prev_end) {
                            return Err(ElfError::SegmentsSharePage {
                                index,
                                prev_index,
                                page: first_page,
                            });
                        }
                    }
                    prev = Some((index, p.vaddr, end));
                    span = Some(match span {
                        None => (first_page, end_page),
                        Some((lo, _)) => (lo, end_page),
                    });
                }
                _ => {}
            }
        }
        self.span = span.ok_or(ElfError::NoLoadSegments)?;
        let entry = self.entry;
        if !self
            .segments()
            .any(|s| s.flags.execute && contains(s.vaddr, s.mem_size, entry, 1))
        {
            return Err(ElfError::EntryNotExecutable { entry });
        }
        Ok(())
    }
}

impl fmt::Debug for Elf<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Elf")
            .field("file_size", &self.bytes.len())
            .field("position_independent", &self.is_position_independent())
            .field("entry", &format_args!("{:#x}", self.entry))
            .field("program_headers", &self.phnum)
            .field("image_span", &format_args!("{:#x?}", self.span))
            .finish()
    }
}

/// Iterator over validated relocations; see [`Elf::relocations`].
#[derive(Clone, Debug)]
pub struct Relocations<'a> {
    table: &'a [u8],
}

impl Iterator for Relocations<'_> {
    type Item = Relocation;

    fn next(&mut self) -> Option<Relocation> {
        loop {
            let entry = self.table.get(..RELA_SIZE as usize)?;
            self.table = self.table.get(RELA_SIZE as usize..).unwrap_or(&[]);
            if read_u64(entry, 8) as u32 == R_X86_64_RELATIVE {
                return Some(Relocation {
                    offset: read_u64(entry, 0),
                    addend: read_u64(entry, 16) as i64,
                });
            }
        }
    }
}

/// Whether `[start, start + len)` contains `[addr, addr + size)`.
fn contains(start: u64, len: u64, addr: u64, size: u64) -> bool {
    match (start.checked_add(len), addr.checked_add(size)) {
        (Some(end), Some(addr_end)) => start <= addr && addr_end <= end,
        _ => false,
    }
}

fn align_down(addr: u64) -> u64 {
    addr & !(PAGE_SIZE - 1)
}

/// Rounds up; only called on addresses `<= USER_END`, so cannot overflow.
fn align_up(addr: u64) -> u64 {
    align_down(addr.saturating_add(PAGE_SIZE - 1))
}

fn read_bytes<const N: usize>(bytes: &[u8], offset: usize) -> [u8; N] {
    offset
        .checked_add(N)
        .and_then(|end| bytes.get(offset..end))
        .and_then(|b| b.try_into().ok())
        .unwrap_or([0; N])
}

fn read_u16(bytes: &[u8], offset: usize) -> u16 {
    u16::from_le_bytes(read_bytes(bytes, offset))
}

fn read_u32(bytes: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes(read_bytes(bytes, offset))
}

fn read_u64(bytes: &[u8], offset: usize) -> u64 {
    u64::from_le_bytes(read_bytes(bytes, offset))
}

#[cfg(test)]
mod tests;
