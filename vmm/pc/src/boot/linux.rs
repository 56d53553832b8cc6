//! Linux boot: a bzImage, its initrd and command line loaded with
//! `linux-loader`, the zero page (`boot_params`) with the e820 table and
//! the RSDP's address, identity-mapped page tables and a GDT, so the BSP
//! starts at the kernel's 64-bit entry point.
//!
//! Owns: where these boot structures live below 1 MiB and the 64-bit entry
//! state (boot protocol 2.12+, `Documentation/x86/boot.rst`). Must not
//! touch: the memory map (vmm-platform's), other vCPUs.

use std::fs::File;
use std::path::Path;

use linux_loader::loader::bootparam::{boot_e820_entry, boot_params};
use linux_loader::loader::{bzimage::BzImage, KernelLoader};
use vcpu_api::{EventInfo, Segment, TableRegister, VcpuState};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_platform::layout::{E820Entry, MemoryLayout};

use super::{BootError, Entry};

/// The GDT: null, null, 64-bit code (0x10), data (0x18), as Linux's boot GDT.
pub const GDT: u64 = 0x500;
/// The zero page.
pub const BOOT_PARAMS: u64 = 0x7000;
/// PML4, then one PDPT, then four page directories (2 MiB pages) mapping
/// the first 4 GiB one to one.
pub const PML4: u64 = 0x9000;
const PDPT: u64 = PML4 + 0x1000;
const PAGE_DIRECTORIES: u64 = PML4 + 0x2000;
/// The command line (at most `CMDLINE_MAX` bytes with its NUL).
pub const CMDLINE: u64 = 0x2_0000;
const CMDLINE_MAX: usize = 0x1_0000;
/// Where the kernel's protected-mode part goes (its `code32_start`).
pub const KERNEL: u64 = 0x10_0000;

pub const CODE_SELECTOR: u16 = 0x10;
pub const DATA_SELECTOR: u16 = 0x18;

const HDR_MAGIC: u32 = 0x5372_6448; // "HdrS"
const XLF_KERNEL_64: u16 = 1;
const LOADER_UNDEFINED: u8 = 0xff;
const CAN_USE_HEAP: u8 = 0x80;
const PROTOCOL_64BIT_ENTRY: u16 = 0x020c;
const ENTRY_64_OFFSET: u64 = 0x200;

/// What the loader put where (for the entry state and for messages).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinuxImage {
    pub entry: u64,
    pub kernel_end: u64,
    pub initrd: Option<(u64, u64)>,
}

fn read(path: &Path) -> Result<Vec<u8>, BootError> {
    std::fs::read(path).map_err(|source| BootError::Read {
        path: path.to_owned(),
        source,
    })
}

enum Length {
    Io(std::io::Error),
    Short { header: u64, file: u64 },
}

/// A bzImage is its setup (`setup_sects` + 1 sectors; 0 means 4) and then
/// `syssize` 16-byte paragraphs of kernel: a shorter file was cut off.
/// Files without a setup header (boot flag, "HdrS") are left to the loader.
fn check_length(file: &mut File) -> Result<(), Length> {
    use std::io::{Read, Seek, SeekFrom};
    let len = file.metadata().map_err(Length::Io)?.len();
    let mut header = [0u8; 0x206 - 0x1f1];
    if len < 0x1f1 + header.len() as u64 {
        return Ok(());
    }
    file.seek(SeekFrom::Start(0x1f1)).map_err(Length::Io)?;
    file.read_exact(&mut header).map_err(Length::Io)?;
    file.seek(SeekFrom::Start(0)).map_err(Length::Io)?;
    let at = |offset: usize| offset - 0x1f1;
    if header[at(0x1fe)..at(0x200)] != [0x55, 0xaa] || header[at(0x202)..] != *b"HdrS" {
        return Ok(());
    }
    let setup_sects = match header[0] {
        0 => 4,
        n => n as u64,
    };
    let mut syssize = [0u8; 4];
    syssize.copy_from_slice(&header[at(0x1f4)..at(0x1f8)]);
    let needed = (setup_sects + 1) * 512 + u32::from_le_bytes(syssize) as u64 * 16;
    if len < needed {
        return Err(Length::Short {
            header: needed,
            file: len,
        });
    }
    Ok(())
}

/// Loads kernel, initrd and command line into `ram` and writes the boot
/// structures. `rsdp` is the ACPI RSDP's guest-physical address, if any.
pub fn load(
    ram: &GuestMemoryMmap,
    layout: &MemoryLayout,
    kernel: &Path,
    initrd: Option<&Path>,
    cmdline: &str,
    rsdp: Option<u64>,
) -> Result<LinuxImage, BootError> {
    let bad = |problem: String| BootError::BadKernel {
        path: kernel.to_owned(),
        problem,
    };
    let mut file = File::open(kernel).map_err(|source| BootError::Read {
        path: kernel.to_owned(),
        source,
    })?;
    check_length(&mut file).map_err(|e| match e {
        Length::Io(source) => BootError::Read {
            path: kernel.to_owned(),
            source,
        },
        Length::Short { header, file } => bad(format!(
            "the file is truncated: its setup header promises {header} bytes, the file has {file}; copy the kernel again"
        )),
    })?;
    let loaded = BzImage::load(ram, None, &mut file, Some(GuestAddress(KERNEL))).map_err(|e| {
        bad(format!(
            "{e}; give an x86 bzImage (a Debian vmlinuz), not a vmlinux or a truncated file"
        ))
    })?;
    let mut hdr = loaded
        .setup_header
        .ok_or_else(|| bad("it has no setup header".into()))?;
    if hdr.header != HDR_MAGIC
        || hdr.version < PROTOCOL_64BIT_ENTRY
        || hdr.xloadflags & XLF_KERNEL_64 == 0
    {
        let version = hdr.version;
        return Err(bad(format!(
            "boot protocol {version:#x} without a 64-bit entry point; this VMM boots 64-bit kernels (protocol 2.12 or later)"
        )));
    }
    let kernel_load = loaded.kernel_load.0;
    // The kernel decompresses in place and needs `init_size` bytes from its
    // load address.
    let kernel_end = kernel_load + (hdr.init_size as u64).max(loaded.kernel_end - kernel_load);
    let low_end = layout.low_ram().end;
    if kernel_end > low_end {
        return Err(BootError::TooSmall {
            what: "the decompressed kernel",
            needed: kernel_end,
        });
    }

    let cmdline_bytes = cmdline.as_bytes();
    let cmdline_max = (hdr.cmdline_size as usize).clamp(255, CMDLINE_MAX - 1);
    if cmdline_bytes.len() > cmdline_max || cmdline_bytes.contains(&0) {
        return Err(BootError::Cmdline {
            len: cmdline_bytes.len(),
            max: cmdline_max,
        });
    }
    let mut with_nul = cmdline_bytes.to_vec();
    with_nul.push(0);
    write(ram, CMDLINE, &with_nul)?;

    let initrd = match initrd {
        Some(path) => {
            let data = read(path)?;
            let size = data.len() as u64;
            let limit = (hdr.initrd_addr_max as u64 + 1).min(low_end);
            let start = limit.saturating_sub(size) & !0xfff;
            if size == 0 || start < kernel_end {
                return Err(BootError::TooSmall {
                    what: "the initrd above the kernel",
                    needed: kernel_end + size,
                });
            }
            write(ram, start, &data)?;
            Some((start, size))
        }
        None => None,
    };

    hdr.type_of_loader = LOADER_UNDEFINED;
    hdr.loadflags |= CAN_USE_HEAP;
    hdr.heap_end_ptr = 0xfe00;
    hdr.cmd_line_ptr = CMDLINE as u32;
    hdr.cmdline_size = cmdline_bytes.len() as u32 + 1;
    if let Some((start, size)) = initrd {
        hdr.ramdisk_image = start as u32;
        hdr.ramdisk_size = size as u32;
    }
    let params = zero_page(hdr, &layout.e820(), rsdp);
    ram.write_obj(params, GuestAddress(BOOT_PARAMS))
        .map_err(|_| BootError::TooSmall {
            what: "the zero page",
            needed: BOOT_PARAMS + 0x1000,
        })?;
    write_page_tables(ram)?;
    write_gdt(ram)?;
    Ok(LinuxImage {
        entry: kernel_load + ENTRY_64_OFFSET,
        kernel_end,
        initrd,
    })
}

fn write(ram: &GuestMemoryMmap, gpa: u64, data: &[u8]) -> Result<(), BootError> {
    ram.write_slice(data, GuestAddress(gpa))
        .map_err(|_| BootError::TooSmall {
            what: "the boot structures",
            needed: gpa + data.len() as u64,
        })
}

/// The zero page: the kernel's setup header plus what the loader fills in.
pub fn zero_page(
    hdr: linux_loader::loader::bootparam::setup_header,
    e820: &[E820Entry],
    rsdp: Option<u64>,
) -> boot_params {
    let mut params = boot_params {
        hdr,
        ..Default::default()
    };
    let n = e820.len().min(params.e820_table.len());
    for (slot, e) in params.e820_table.iter_mut().zip(&e820[..n]) {
        *slot = boot_e820_entry {
            addr: e.addr,
            size: e.size,
            r#type: e.kind as u32,
        };
    }
    params.e820_entries = n as u8;
    params.acpi_rsdp_addr = rsdp.unwrap_or(0);
    params
}

/// Page-table entry bits.
const PRESENT: u64 = 1;
const WRITABLE: u64 = 2;
const HUGE: u64 = 1 << 7;

/// Identity-maps the first 4 GiB with 2 MiB pages.
fn write_page_tables(ram: &GuestMemoryMmap) -> Result<(), BootError> {
    let mut page = [0u8; 0x1000];
    page[..8].copy_from_slice(&(PDPT | PRESENT | WRITABLE).to_le_bytes());
    write(ram, PML4, &page)?;
    for (i, entry) in page.chunks_exact_mut(8).enumerate() {
        let value = if i < 4 {
            (PAGE_DIRECTORIES + i as u64 * 0x1000) | PRESENT | WRITABLE
        } else {
            0
        };
        entry.copy_from_slice(&value.to_le_bytes());
    }
    write(ram, PDPT, &page)?;
    for dir in 0..4u64 {
        for (i, entry) in page.chunks_exact_mut(8).enumerate() {
            let address = ((dir << 30) | ((i as u64) << 21)) | PRESENT | WRITABLE | HUGE;
            entry.copy_from_slice(&address.to_le_bytes());
        }
        write(ram, PAGE_DIRECTORIES + dir * 0x1000, &page)?;
    }
    Ok(())
}

const GDT_ENTRIES: [u64; 4] = [0, 0, 0x00af_9b00_0000_ffff, 0x00cf_9300_0000_ffff];

fn write_gdt(ram: &GuestMemoryMmap) -> Result<(), BootError> {
    let bytes: Vec<u8> = GDT_ENTRIES.iter().flat_map(|e| e.to_le_bytes()).collect();
    write(ram, GDT, &bytes)
}

/// The BSP's state at the 64-bit entry: long mode with the identity map,
/// flat segments from the GDT, interrupts off, RSI = the zero page.
pub fn entry_state(s: &mut VcpuState, image: &LinuxImage) {
    const CR0_PE: u64 = 1;
    const CR0_ET: u64 = 1 << 4;
    const CR0_PG: u64 = 1 << 31;
    const CR4_PAE: u64 = 1 << 5;
    const EFER_LME: u64 = 1 << 8;
    const EFER_LMA: u64 = 1 << 10;
    let code = Segment {
        selector: CODE_SELECTOR,
        attributes: Segment::attributes(0xb, true, 0, true, true, false, true),
        limit: 0xffff_ffff,
        base: 0,
    };
    let data = Segment {
        selector: DATA_SELECTOR,
        attributes: Segment::attributes(0x3, true, 0, true, false, true, true),
        limit: 0xffff_ffff,
        base: 0,
    };
    s.cs.charge(code);
    for seg in [&mut s.ds, &mut s.es, &mut s.fs, &mut s.gs, &mut s.ss] {
        seg.charge(data);
    }
    s.tr.charge(Segment {
        selector: 0,
        attributes: Segment::attributes(0xb, false, 0, true, false, false, false),
        limit: 0x67,
        base: 0,
    });
    s.ldtr.charge(Segment {
        selector: 0,
        attributes: Segment::attributes(0x2, false, 0, false, false, false, false),
        limit: 0,
        base: 0,
    });
    s.gdtr.charge(TableRegister {
        limit: (GDT_ENTRIES.len() * 8 - 1) as u32,
        base: GDT,
    });
    s.idtr.charge(TableRegister { limit: 0, base: 0 });
    s.cr0.charge(CR0_PE | CR0_ET | CR0_PG);
    s.cr2.charge(0);
    s.cr3.charge(PML4);
    s.cr4.charge(CR4_PAE);
    s.efer.charge(EFER_LME | EFER_LMA);
    s.dr7.charge(0x400);
    s.xcr0.charge(1);
    s.flags.charge(2);
    for gpr in 0..16 {
        s.set_gpr(gpr, 0);
    }
    s.rsi.charge(BOOT_PARAMS);
    s.ip.charge(image.entry);
    s.inj_info.charge(EventInfo::NONE);
    s.intr_state.charge(0);
    s.actv_state.charge(vcpu_api::activity::ACTIVE);
    super::reset_fpu(s);
}

impl From<&LinuxImage> for Entry {
    fn from(image: &LinuxImage) -> Self {
        Entry::Linux(*image)
    }
}
