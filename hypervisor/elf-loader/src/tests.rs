use super::*;
use std::format;
use std::string::ToString;
use std::vec;
use std::vec::Vec;

const R: u32 = PF_R;
const RW: u32 = PF_R | PF_W;
const RX: u32 = PF_R | PF_X;

#[derive(Clone, Copy)]
struct Ph {
    p_type: u32,
    flags: u32,
    offset: u64,
    vaddr: u64,
    file_size: u64,
    mem_size: u64,
    align: u64,
}

fn load(flags: u32, offset: u64, vaddr: u64, file_size: u64, mem_size: u64) -> Ph {
    Ph {
        p_type: PT_LOAD,
        flags,
        offset,
        vaddr,
        file_size,
        mem_size,
        align: 0x1000,
    }
}

/// Builds ELF images for the tests: a header, the program header table at
/// offset 64, and a file body filled with a recognisable byte pattern.
#[derive(Clone)]
struct Builder {
    e_type: u16,
    entry: u64,
    phdrs: Vec<Ph>,
    size: usize,
    patches: Vec<(usize, Vec<u8>)>,
}

impl Builder {
    /// A typical static executable: text, then data + bss.
    fn exec() -> Self {
        Builder {
            e_type: ET_EXEC,
            entry: 0x40_0010,
            phdrs: vec![
                load(RX, 0x1000, 0x40_0000, 0x800, 0x800),
                load(RW, 0x2000, 0x40_1000, 0x100, 0x3000),
            ],
            size: 0x2100,
            patches: Vec::new(),
        }
    }

    fn patch(mut self, at: usize, bytes: &[u8]) -> Self {
        self.patches.push((at, bytes.to_vec()));
        self
    }

    fn build(&self) -> Vec<u8> {
        let mut b: Vec<u8> = (0..self.size).map(|i| (i * 7 + 3) as u8).collect();
        let mut put = |at: usize, v: &[u8]| {
            if b.len() < at + v.len() {
                b.resize(at + v.len(), 0);
            }
            b[at..at + v.len()].copy_from_slice(v);
        };
        put(0, b"\x7fELF");
        put(4, &[ELFCLASS64, ELFDATA2LSB, EV_CURRENT, 0]);
        put(8, &[0; 8]);
        put(0x10, &self.e_type.to_le_bytes());
        put(0x12, &EM_X86_64.to_le_bytes());
        put(0x14, &1u32.to_le_bytes());
        put(0x18, &self.entry.to_le_bytes());
        put(0x20, &64u64.to_le_bytes());
        put(0x28, &0u64.to_le_bytes());
        put(0x30, &0u32.to_le_bytes());
        put(0x34, &64u16.to_le_bytes());
        put(0x36, &(PHDR_SIZE as u16).to_le_bytes());
        put(0x38, &(self.phdrs.len() as u16).to_le_bytes());
        put(0x3a, &[0; 6]);
        for (i, p) in self.phdrs.iter().enumerate() {
            let at = 64 + i * PHDR_SIZE;
            put(at, &p.p_type.to_le_bytes());
            put(at + 4, &p.flags.to_le_bytes());
            put(at + 8, &p.offset.to_le_bytes());
            put(at + 16, &p.vaddr.to_le_bytes());
            put(at + 24, &p.vaddr.to_le_bytes());
            put(at + 32, &p.file_size.to_le_bytes());
            put(at + 40, &p.mem_size.to_le_bytes());
            put(at + 48, &p.align.to_le_bytes());
        }
        for (at, v) in &self.patches {
            put(*at, v);
        }
        b
    }

    fn parse_err(&self) -> ElfError {
        Elf::parse(&self.build()).expect_err("image should be rejected")
    }
}

#[test]
fn parses_a_static_executable() {
    let image = Builder::exec().build();
    let elf = Elf::parse(&image).unwrap();
    assert_eq!(elf.entry(), 0x40_0010);
    assert!(!elf.is_position_independent());
    let segs: Vec<_> = elf.segments().collect();
    assert_eq!(segs.len(), 2);
    assert_eq!(segs[0].vaddr, 0x40_0000);
    assert_eq!(segs[0].mem_size, 0x800);
    assert_eq!(segs[0].data, &image[0x1000..0x1800]);
    assert_eq!(
        segs[0].flags,
        SegmentFlags {
            read: true,
            write: false,
            execute: true
        }
    );
    assert_eq!(segs[1].data, &image[0x2000..0x2100]);
    assert_eq!(segs[1].mem_size, 0x3000);
    assert!(segs[1].flags.write && !segs[1].flags.execute);
    assert_eq!(elf.image_span(), (0x40_0000, 0x40_4000));
    assert_eq!(elf.tls(), None);
    assert_eq!(elf.interpreter(), None);
    assert_eq!(elf.relocations().unwrap().count(), 0);
}

#[test]
fn every_truncation_is_rejected_without_panic() {
    let image = Builder::exec().build();
    for len in 0..image.len() {
        let err = Elf::parse(&image[..len]).expect_err("truncated file accepted");
        match len {
            0..=63 => assert_eq!(err, ElfError::TooShort { size: len }),
            64..=175 => assert!(matches!(err, ElfError::PhTableOutOfBounds { .. })),
            _ => assert!(
                matches!(err, ElfError::FileRangeOutOfBounds { .. }),
                "{err}"
            ),
        }
    }
    assert!(Elf::parse(&image).is_ok());
}

#[test]
fn header_errors() {
    let b = Builder::exec();
    assert_eq!(b.clone().patch(1, b"X").parse_err(), ElfError::BadMagic);
    assert_eq!(
        b.clone().patch(4, &[1]).parse_err(),
        ElfError::NotElf64 { class: 1 }
    );
    assert_eq!(
        b.clone().patch(5, &[2]).parse_err(),
        ElfError::NotLittleEndian { data: 2 }
    );
    assert_eq!(
        b.clone().patch(6, &[0]).parse_err(),
        ElfError::BadVersion { version: 0 }
    );
    assert_eq!(
        b.clone().patch(0x12, &3u16.to_le_bytes()).parse_err(),
        ElfError::WrongMachine { machine: 3 }
    );
    for e_type in [0u16, 1, 4, 0xfe00] {
        assert_eq!(
            b.clone().patch(0x10, &e_type.to_le_bytes()).parse_err(),
            ElfError::WrongType { e_type }
        );
    }
    assert_eq!(
        b.clone().patch(0x36, &32u16.to_le_bytes()).parse_err(),
        ElfError::BadPhEntSize { size: 32 }
    );
    assert_eq!(
        b.clone().patch(0x38, &0xffffu16.to_le_bytes()).parse_err(),
        ElfError::ExtendedPhNum
    );
    assert_eq!(
        b.clone().patch(0x38, &0u16.to_le_bytes()).parse_err(),
        ElfError::NoLoadSegments
    );
    for phoff in [0x2100u64, 0x2100 - 56, u64::MAX, u64::MAX - 10, 1 << 63] {
        assert!(
            matches!(
                b.clone().patch(0x20, &phoff.to_le_bytes()).parse_err(),
                ElfError::PhTableOutOfBounds { .. }
            ),
            "phoff {phoff:#x}"
        );
    }
    // Large entries and many of them: table beyond the file.
    assert!(matches!(
        b.clone()
            .patch(0x36, &0xffffu16.to_le_bytes())
            .patch(0x38, &0xfffeu16.to_le_bytes())
            .parse_err(),
        ElfError::PhTableOutOfBounds { .. }
    ));
}

#[test]
fn larger_phentsize_is_accepted() {
    // Entries of 64 bytes: the builder's table is rewritten by hand.
    let mut b = Builder::exec();
    b.phdrs.clear();
    let mut image = b.build();
    image.resize(0x2100, 0);
    image[0x36..0x38].copy_from_slice(&64u16.to_le_bytes());
    image[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
    let p = load(RX, 0x1000, 0x40_0000, 0x800, 0x800);
    let mut entry = vec![0u8; 64];
    entry[0..4].copy_from_slice(&p.p_type.to_le_bytes());
    entry[4..8].copy_from_slice(&p.flags.to_le_bytes());
    entry[8..16].copy_from_slice(&p.offset.to_le_bytes());
    entry[16..24].copy_from_slice(&p.vaddr.to_le_bytes());
    entry[32..40].copy_from_slice(&p.file_size.to_le_bytes());
    entry[40..48].copy_from_slice(&p.mem_size.to_le_bytes());
    image[64..128].copy_from_slice(&entry);
    let elf = Elf::parse(&image).unwrap();
    assert_eq!(elf.segments().count(), 1);
}

fn with_second(p: Ph) -> Builder {
    let mut b = Builder::exec();
    b.phdrs[1] = p;
    b
}

#[test]
fn segment_errors() {
    assert_eq!(
        with_second(load(RW, 0x2000, 0x40_1000, 0x200, 0x100)).parse_err(),
        ElfError::FileSizeExceedsMemSize {
            index: 1,
            file_size: 0x200,
            mem_size: 0x100
        }
    );
    let err = with_second(load(RW, 0x2000, 0x40_1000, 0x200, 0x300)).parse_err();
    assert_eq!(
        err,
        ElfError::FileRangeOutOfBounds {
            index: 1,
            offset: 0x2000,
            size: 0x200,
            file_size: 0x2100
        }
    );
    assert_eq!(
        err.to_string(),
        "program header 1: file range 0x2000+0x200 beyond end of file (size 0x2100)"
    );
    for (offset, size) in [(u64::MAX, 1), (1, u64::MAX), (u64::MAX, u64::MAX)] {
        assert!(matches!(
            with_second(load(RW, offset, 0x40_1000, size, u64::MAX)).parse_err(),
            ElfError::FileRangeOutOfBounds { .. }
        ));
    }
    let mut p = load(RW, 0x2000, 0x40_1000, 0x100, 0x100);
    p.align = 0x3000;
    assert_eq!(
        with_second(p).parse_err(),
        ElfError::BadAlign {
            index: 1,
            align: 0x3000
        }
    );
    assert!(matches!(
        with_second(load(RW, 0x2010, 0x40_1000, 0x10, 0x10)).parse_err(),
        ElfError::MisalignedSegment { index: 1, .. }
    ));
    // Small alignments do not constrain the address/offset relation.
    let mut p = load(RW, 0x2010, 0x40_1000, 0x10, 0x10);
    p.align = 16;
    assert!(Elf::parse(&with_second(p).build()).is_ok());
    p.align = 0;
    assert!(Elf::parse(&with_second(p).build()).is_ok());
}

#[test]
fn address_limits() {
    // vaddr + memsz overflows.
    assert!(matches!(
        with_second(load(RW, 0x2000, u64::MAX - 0xfff, 0, 0x2000)).parse_err(),
        ElfError::NotUserAddress { index: 1, .. }
    ));
    // Kernel half.
    assert!(matches!(
        with_second(load(RW, 0x2000, 0xffff_8000_0000_0000, 0x100, 0x100)).parse_err(),
        ElfError::NotUserAddress { .. }
    ));
    // Crossing the user limit by one byte, and ending exactly at it.
    let top = USER_END - 0x1000;
    assert!(matches!(
        with_second(load(RW, 0x2000, top, 0x100, 0x1001)).parse_err(),
        ElfError::NotUserAddress { .. }
    ));
    let elf_image = with_second(load(RW, 0x2000, top, 0x100, 0x1000)).build();
    let elf = Elf::parse(&elf_image).unwrap();
    assert_eq!(elf.image_span(), (0x40_0000, USER_END));
}

#[test]
fn ordering_and_page_sharing() {
    // Second segment below the first.
    assert_eq!(
        with_second(load(RW, 0x2000, 0x3f_0000, 0x100, 0x100)).parse_err(),
        ElfError::Unsorted {
            index: 1,
            vaddr: 0x3f_0000,
            prev_vaddr: 0x40_0000
        }
    );
    // Overlapping.
    assert!(matches!(
        with_second(load(RW, 0x1400, 0x40_0400, 0x100, 0x100)).parse_err(),
        ElfError::SegmentsSharePage { .. }
    ));
    // Disjoint bytes but the same page (text ends at 0x400800).
    let err = with_second(load(RW, 0x1900, 0x40_0900, 0x100, 0x100)).parse_err();
    assert_eq!(
        err,
        ElfError::SegmentsSharePage {
            index: 1,
            prev_index: 0,
            page: 0x40_0000
        }
    );
    assert!(err.to_string().contains("share"));
    // Starting right on the next page is fine.
    assert!(Elf::parse(&with_second(load(RW, 0x2000, 0x40_1000, 0x100, 0x100)).build()).is_ok());
    // A non-load header between loads does not matter; an empty PT_LOAD is ignored.
    let mut b = Builder::exec();
    b.phdrs.insert(1, load(RW, 0, 0x10, 0, 0));
    b.phdrs.insert(
        1,
        Ph {
            p_type: 0x6474_e551, // PT_GNU_STACK
            flags: RW,
            offset: u64::MAX,
            vaddr: u64::MAX,
            file_size: 5,
            mem_size: 0,
            align: 7,
        },
    );
    let image = b.build();
    let elf = Elf::parse(&image).unwrap();
    assert_eq!(elf.segments().count(), 2);
}

#[test]
fn entry_must_be_in_executable_segment() {
    let mut b = Builder::exec();
    for (entry, ok) in [
        (0x40_0000, true),
        (0x40_07ff, true),
        (0x40_0800, false), // end of text (exclusive)
        (0x3f_ffff, false),
        (0x40_1000, false), // data segment, not executable
        (0, false),
        (u64::MAX, false),
    ] {
        b.entry = entry;
        let image = b.build();
        let r = Elf::parse(&image);
        if ok {
            assert!(r.is_ok(), "entry {entry:#x}");
        } else {
            assert_eq!(r.unwrap_err(), ElfError::EntryNotExecutable { entry });
        }
    }
}

#[test]
fn tls_template() {
    let mut b = Builder::exec();
    b.phdrs.push(Ph {
        p_type: PT_TLS,
        flags: R,
        offset: 0x2040,
        vaddr: 0x40_1040,
        file_size: 0x20,
        mem_size: 0x48,
        align: 8,
    });
    let image = b.build();
    let elf = Elf::parse(&image).unwrap();
    let tls = elf.tls().unwrap();
    assert_eq!(tls.vaddr, 0x40_1040);
    assert_eq!(tls.data, &image[0x2040..0x2060]);
    assert_eq!(tls.mem_size, 0x48);
    assert_eq!(tls.align, 8);
    // TLS is not a loadable segment.
    assert_eq!(elf.segments().count(), 2);

    let mut two = b.clone();
    two.phdrs.push(b.phdrs[2]);
    assert_eq!(two.parse_err(), ElfError::MultipleTls { index: 3 });
    let mut bad = b.clone();
    bad.phdrs[2].file_size = 0x100;
    assert!(matches!(
        bad.parse_err(),
        ElfError::FileSizeExceedsMemSize { index: 2, .. }
    ));
    bad.phdrs[2].file_size = 0x10;
    bad.phdrs[2].align = 12;
    assert!(matches!(
        bad.parse_err(),
        ElfError::BadAlign { index: 2, .. }
    ));
    bad.phdrs[2].align = 0;
    assert_eq!(Elf::parse(&bad.build()).unwrap().tls().unwrap().align, 1);
}

/// A static PIE at 0 with a dynamic section and RELA relocations.
fn pie(relocs: &[(u64, u64, i64)], dynamic: &[(u64, u64)]) -> Builder {
    let mut b = Builder {
        e_type: ET_DYN,
        entry: 0x1000,
        phdrs: vec![
            load(R, 0, 0, 0x800, 0x800),
            load(RX, 0x1000, 0x1000, 0x100, 0x100),
            load(RW, 0x2000, 0x2000, 0x400, 0x1000),
            Ph {
                p_type: PT_DYNAMIC,
                flags: RW,
                offset: 0x2000,
                vaddr: 0x2000,
                file_size: 0x100,
                mem_size: 0x100,
                align: 8,
            },
        ],
        size: 0x2400,
        patches: Vec::new(),
    };
    let mut dyn_bytes = Vec::new();
    for &(tag, value) in dynamic {
        dyn_bytes.extend_from_slice(&tag.to_le_bytes());
        dyn_bytes.extend_from_slice(&value.to_le_bytes());
    }
    dyn_bytes.resize(0x100, 0); // DT_NULL terminated
    b = b.patch(0x2000, &dyn_bytes);
    let mut table = Vec::new();
    for &(offset, info, addend) in relocs {
        table.extend_from_slice(&offset.to_le_bytes());
        table.extend_from_slice(&info.to_le_bytes());
        table.extend_from_slice(&addend.to_le_bytes());
    }
    b.patch(0x400, &table)
}

#[test]
fn pie_relocations() {
    let relocs = [(0x2100, 8, 0x1000), (0x2108, 0, 0), (0x2ff8, 8, -16)];
    let dynamic = [(DT_RELA, 0x400), (DT_RELASZ, 72), (DT_RELAENT, 24)];
    let image = pie(&relocs, &dynamic).build();
    let elf = Elf::parse(&image).unwrap();
    assert!(elf.is_position_independent());
    assert_eq!(elf.image_span(), (0, 0x3000));
    let got: Vec<_> = elf.relocations().unwrap().collect();
    assert_eq!(
        got,
        [
            Relocation {
                offset: 0x2100,
                addend: 0x1000
            },
            Relocation {
                offset: 0x2ff8,
                addend: -16
            },
        ]
    );
}

#[test]
fn bad_relocations() {
    let ok_dyn = [(DT_RELA, 0x400), (DT_RELASZ, 24), (DT_RELAENT, 24)];
    let err = |relocs: &[(u64, u64, i64)], dynamic: &[(u64, u64)]| {
        let image = pie(relocs, dynamic).build();
        Elf::parse(&image).unwrap().relocations().unwrap_err()
    };
    // Symbol relocation (R_X86_64_GLOB_DAT = 6 with a symbol index).
    assert_eq!(
        err(&[(0x2100, (1 << 32) | 6, 0)], &ok_dyn),
        ElfError::UnsupportedRelocation {
            index: 0,
            r_type: 6
        }
    );
    // Target in read-only text, or beyond the image, or straddling its end.
    for target in [0x1000u64, 0x3000, 0x2ffc, u64::MAX - 3] {
        assert!(matches!(
            err(&[(target, 8, 0)], &ok_dyn),
            ElfError::BadDynamic { .. }
        ));
    }
    // Table not inside file data, sizes wrong, unsupported tables.
    let cases: [&[(u64, u64)]; 7] = [
        &[(DT_RELA, 0x900), (DT_RELASZ, 24)],
        &[(DT_RELA, u64::MAX - 8), (DT_RELASZ, 48)],
        &[(DT_RELA, 0x400), (DT_RELASZ, 25)],
        &[(DT_RELA, 0x400), (DT_RELASZ, 24), (DT_RELAENT, 16)],
        &[(DT_RELASZ, 24)],
        &[(DT_RELRSZ, 16)],
        &[(DT_PLTRELSZ, 24)],
    ];
    for dynamic in cases {
        let e = err(&[(0x2100, 8, 0)], dynamic);
        assert!(matches!(e, ElfError::BadDynamic { .. }), "{dynamic:?}: {e}");
    }
    // Entries after DT_NULL are ignored.
    let image = pie(&[], &[(DT_NULL, 0), (DT_RELRSZ, 16)]).build();
    assert_eq!(
        Elf::parse(&image).unwrap().relocations().unwrap().count(),
        0
    );
}

#[test]
fn interpreter_is_reported() {
    let mut b = Builder::exec();
    b.phdrs.insert(
        0,
        Ph {
            p_type: PT_INTERP,
            flags: R,
            offset: 0x100,
            vaddr: 0x40_0100,
            file_size: 8,
            mem_size: 8,
            align: 1,
        },
    );
    let b = b.patch(0x100, b"/ld.so\0\0");
    let image = b.build();
    assert_eq!(
        Elf::parse(&image).unwrap().interpreter(),
        Some(&b"/ld.so"[..])
    );
}

#[test]
fn messages_name_the_problem() {
    let cases = [
        (ElfError::TooShort { size: 3 }, "smaller than the 64-byte"),
        (ElfError::WrongMachine { machine: 3 }, "not x86_64"),
        (
            ElfError::NotUserAddress {
                index: 2,
                vaddr: 0x10,
                mem_size: 0x20,
            },
            "program header 2: range 0x10+0x20",
        ),
        (
            ElfError::EntryNotExecutable { entry: 0x1234 },
            "entry point 0x1234",
        ),
    ];
    for (e, text) in cases {
        let msg = format!("{e}");
        assert!(msg.contains(text), "{msg}");
    }
}

/// Random corruption of valid images must never panic; whatever parses
/// must satisfy the documented invariants.
#[test]
fn random_corruption_never_panics() {
    let mut state = 0x243f_6a88_85a3_08d3u64;
    let mut rng = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let relocs = [(0x2100, 8, 0x1000), (0x2108, 8, 0)];
    let dynamic = [(DT_RELA, 0x400), (DT_RELASZ, 48), (DT_RELAENT, 24)];
    let bases = [Builder::exec().build(), pie(&relocs, &dynamic).build()];
    let mut accepted = 0;
    for i in 0..20_000 {
        let mut image = bases[i % 2].clone();
        for _ in 0..1 + rng() % 4 {
            // Mostly hit the headers, where the interesting fields are.
            let at = if rng() % 4 == 0 {
                rng() as usize % image.len()
            } else {
                rng() as usize % (64 + 4 * PHDR_SIZE)
            };
            image[at] = rng() as u8;
        }
        let Ok(elf) = Elf::parse(&image) else {
            continue;
        };
        accepted += 1;
        let (lo, hi) = elf.image_span();
        let mut prev_end = 0;
        for s in elf.segments() {
            assert!(s.data.len() as u64 <= s.mem_size);
            assert!(s.vaddr >= lo && s.vaddr + s.mem_size <= hi && hi <= USER_END);
            assert!(s.vaddr >= prev_end);
            prev_end = s.vaddr + s.mem_size;
        }
        let _ = elf.tls();
        let _ = elf.interpreter();
        if let Ok(relocs) = elf.relocations() {
            relocs.for_each(|r| assert!(r.offset < hi));
        }
    }
    assert!(accepted > 100, "corruption test barely exercised parsing");
}

/// The test binary itself: a real linker's output (a PIE on Linux hosts).
#[test]
fn parses_the_running_test_binary() {
    let path = std::env::current_exe().unwrap();
    let image = std::fs::read(&path).unwrap();
    let elf = Elf::parse(&image).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        elf.is_position_independent(),
        "Rust tests are PIEs by default"
    );
    let segs: Vec<_> = elf.segments().collect();
    assert!(segs.len() >= 2);
    let text = segs
        .iter()
        .find(|s| s.flags.execute)
        .expect("an executable segment");
    assert!(!text.flags.write, "text must not be writable");
    assert!(text.data.len() > 4096, "text holds this test's code");
    assert!(segs.iter().any(|s| s.flags.write && !s.flags.execute));
    let (lo, hi) = elf.image_span();
    assert_eq!(lo, 0, "a PIE is linked at 0");
    assert!(hi > lo && hi % PAGE_SIZE == 0 && hi < 1 << 32);
    assert!(contains(text.vaddr, text.mem_size, elf.entry(), 1));
    // The libtest harness uses thread-locals.
    let tls = elf.tls().expect("libstd has thread-locals");
    assert!(tls.align.is_power_of_two());
    // Dynamically linked against the C library, unless built static.
    if let Some(interp) = elf.interpreter() {
        assert!(interp.starts_with(b"/"));
        // Such programs carry symbol relocations a bare loader cannot do.
        assert!(elf.relocations().is_err());
    }
}

#[test]
fn debug_output_is_a_summary() {
    let image = Builder::exec().build();
    let text = format!("{:?}", Elf::parse(&image).unwrap());
    assert!(
        text.contains("entry: 0x400010") && text.len() < 300,
        "{text}"
    );
}
