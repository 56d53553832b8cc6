//! Reads the boot information of Multiboot v1 (QEMU `-kernel`) and Multiboot v2
//! (GRUB): memory map, modules with their command lines, the kernel command line
//! and, with v2, the ACPI RSDP. Owns nothing after boot.

use crate::arch::phys;

pub const MB1_MAGIC: u32 = 0x2BAD_B002;
pub const MB2_MAGIC: u32 = 0x36D7_6289;
pub const MAX_REGIONS: usize = 64;
/// The modules the roottask can see (the HIP's table); the rest are ignored.
pub const MAX_MODULES: usize = hyper_abi::HIP_MODULES_MAX;

#[derive(Clone, Copy, Default, Debug)]
pub struct Region {
    pub start: u64,
    pub end: u64,
}

#[derive(Clone, Copy, Default)]
pub struct Module {
    pub start: u64,
    pub end: u64,
    /// Physical address and length of the command line.
    pub cmdline: (u64, usize),
}

impl Module {
    pub fn cmdline(&self) -> &'static str {
        core::str::from_utf8(phys::slice(self.cmdline.0, self.cmdline.1)).unwrap_or("")
    }
    /// The module name: the basename of the first word of its command line.
    pub fn name(&self) -> &'static str {
        let first = self.cmdline().split_whitespace().next().unwrap_or("");
        first.rsplit('/').next().unwrap_or(first)
    }
}

pub struct BootInfo {
    pub version: u8,
    pub ram: [Region; MAX_REGIONS],
    pub ram_count: usize,
    pub modules: [Module; MAX_MODULES],
    pub module_count: usize,
    /// Modules the loader gave beyond [`MAX_MODULES`] (ignored).
    pub modules_ignored: usize,
    pub cmdline: (u64, usize),
    pub rsdp: Option<u64>,
    /// The boot information structure itself (to keep it out of the allocator).
    pub info_range: Region,
}

impl BootInfo {
    pub fn ram(&self) -> &[Region] {
        &self.ram[..self.ram_count]
    }
    pub fn modules(&self) -> &[Module] {
        &self.modules[..self.module_count]
    }
    pub fn cmdline(&self) -> &'static str {
        core::str::from_utf8(phys::slice(self.cmdline.0, self.cmdline.1)).unwrap_or("")
    }
    fn add_ram(&mut self, start: u64, end: u64) {
        if self.ram_count < MAX_REGIONS && end > start {
            self.ram[self.ram_count] = Region { start, end };
            self.ram_count += 1;
        }
    }
    fn add_module(&mut self, m: Module) {
        if self.module_count < MAX_MODULES {
            self.modules[self.module_count] = m;
            self.module_count += 1;
        } else {
            self.modules_ignored += 1;
        }
    }
}

fn cstr_len(pa: u64) -> usize {
    (0..4096)
        .find(|&i| phys::read::<u8>(pa + i as u64) == 0)
        .unwrap_or(0)
}

pub fn parse(magic: u32, info: u64) -> Result<BootInfo, &'static str> {
    let mut bi = BootInfo {
        version: 0,
        ram: [Region::default(); MAX_REGIONS],
        ram_count: 0,
        modules: [Module::default(); MAX_MODULES],
        module_count: 0,
        modules_ignored: 0,
        cmdline: (0, 0),
        rsdp: None,
        info_range: Region {
            start: info,
            end: info + 4096,
        },
    };
    match magic {
        MB1_MAGIC => parse_v1(&mut bi, info),
        MB2_MAGIC => parse_v2(&mut bi, info),
        _ => return Err("not booted by a Multiboot loader (bad magic)"),
    }
    if bi.ram_count == 0 {
        return Err("the boot loader gave no memory map");
    }
    Ok(bi)
}

fn parse_v1(bi: &mut BootInfo, info: u64) {
    bi.version = 1;
    let flags: u32 = phys::read(info);
    if flags & (1 << 2) != 0 {
        let p = phys::read::<u32>(info + 16) as u64;
        bi.cmdline = (p, cstr_len(p));
    }
    if flags & (1 << 3) != 0 {
        let count: u32 = phys::read(info + 20);
        let addr = phys::read::<u32>(info + 24) as u64;
        for i in 0..count as u64 {
            if bi.module_count == MAX_MODULES {
                bi.modules_ignored = (count as u64 - i) as usize;
                break;
            }
            let m = addr + i * 16;
            let cmd = phys::read::<u32>(m + 8) as u64;
            bi.add_module(Module {
                start: phys::read::<u32>(m) as u64,
                end: phys::read::<u32>(m + 4) as u64,
                cmdline: (cmd, if cmd == 0 { 0 } else { cstr_len(cmd) }),
            });
        }
    }
    if flags & (1 << 6) != 0 {
        let len = phys::read::<u32>(info + 44) as u64;
        let addr = phys::read::<u32>(info + 48) as u64;
        let mut p = addr;
        while p < addr + len {
            let size = phys::read::<u32>(p) as u64;
            let base: u64 = phys::read(p + 4);
            let length: u64 = phys::read(p + 12);
            let kind: u32 = phys::read(p + 20);
            if kind == 1 {
                bi.add_ram(base, base.saturating_add(length));
            }
            p += size + 4;
        }
    } else if flags & 1 != 0 {
        let upper = phys::read::<u32>(info + 8) as u64;
        bi.add_ram(0x10_0000, 0x10_0000 + upper * 1024);
    }
}

fn parse_v2(bi: &mut BootInfo, info: u64) {
    bi.version = 2;
    let total = phys::read::<u32>(info) as u64;
    bi.info_range = Region {
        start: info,
        end: info + total,
    };
    let mut p = info + 8;
    while p + 8 <= info + total {
        let kind: u32 = phys::read(p);
        let size = phys::read::<u32>(p + 4) as u64;
        match kind {
            0 => break,
            1 => bi.cmdline = (p + 8, cstr_len(p + 8)),
            3 => {
                let cmd = p + 16;
                bi.add_module(Module {
                    start: phys::read::<u32>(p + 8) as u64,
                    end: phys::read::<u32>(p + 12) as u64,
                    cmdline: (cmd, cstr_len(cmd)),
                });
            }
            6 => {
                let entry_size = phys::read::<u32>(p + 8) as u64;
                let mut e = p + 16;
                while entry_size > 0 && e + 24 <= p + size {
                    let base: u64 = phys::read(e);
                    let length: u64 = phys::read(e + 8);
                    if phys::read::<u32>(e + 16) == 1 {
                        bi.add_ram(base, base.saturating_add(length));
                    }
                    e += entry_size;
                }
            }
            14 | 15 if bi.rsdp.is_none() || kind == 15 => bi.rsdp = Some(p + 8),
            _ => {}
        }
        p += (size + 7) & !7;
    }
}
