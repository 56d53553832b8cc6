//! The Multiboot v1 information structure the boot loader (the VMM) passes in EBX:
//! memory sizes that agree with the memory map, a memory map whose usable RAM holds
//! this image, the command line, the modules with their strings and contents, the boot
//! loader's name. The command line says how many modules to expect (`modules=N`);
//! module i's string must end with the word `module-i` (loaders such as QEMU put the
//! file name first) and its contents start with the bytes `tern module i\n`.
#![no_std]
#![no_main]

use core::ops::Range;

use guest_tests::{boot, check, fail, guest, println};

guest!(main);

const MEMORY: u32 = 1 << 0;
const CMDLINE: u32 = 1 << 2;
const MODULES: u32 = 1 << 3;
const MEMORY_MAP: u32 = 1 << 6;
const BOOT_LOADER_NAME: u32 = 1 << 9;
const MIB: u64 = 1 << 20;

fn u32_at(addr: u64) -> u32 {
    check!(addr < 1 << 32, "address {addr:#x} outside the identity map");
    // SAFETY: the first 4 GiB are identity-mapped; a stray address faults into the
    // guest's exception handler, which fails the test.
    unsafe { (addr as *const u32).read_unaligned() }
}

fn u64_at(addr: u64) -> u64 {
    u32_at(addr) as u64 | (u32_at(addr + 4) as u64) << 32
}

fn byte_at(addr: u64) -> u8 {
    check!(addr < 1 << 32, "address {addr:#x} outside the identity map");
    // SAFETY: as in `u32_at`.
    unsafe { (addr as *const u8).read_volatile() }
}

/// The NUL-terminated string at `addr` (at most 256 bytes, printable ASCII).
fn string_at(addr: u64, buf: &mut [u8; 256]) -> &str {
    let mut len = 0;
    loop {
        let b = byte_at(addr + len as u64);
        if b == 0 {
            break;
        }
        check!(
            len < buf.len(),
            "string at {addr:#x} is longer than 256 bytes"
        );
        check!(
            (0x20..0x7f).contains(&b),
            "string at {addr:#x} has byte {b:#x}"
        );
        buf[len] = b;
        len += 1;
    }
    core::str::from_utf8(&buf[..len]).unwrap_or("")
}

fn overlaps(a: &Range<u64>, b: &Range<u64>) -> bool {
    a.start < b.end && b.start < a.end
}

/// Whether `range` lies inside one usable (type 1) entry of the memory map.
fn usable(map: Range<u64>, range: &Range<u64>) -> bool {
    let mut at = map.start;
    while at < map.end {
        let (base, len, kind) = (u64_at(at + 4), u64_at(at + 12), u32_at(at + 20));
        if kind == 1 && base <= range.start && range.end <= base + len {
            return true;
        }
        at += u32_at(at) as u64 + 4;
    }
    false
}

fn main() {
    let info = boot::multiboot_info() as u64;
    check!(info != 0, "EBX held no Multiboot information");
    let flags = u32_at(info);
    let want = MEMORY | MEMORY_MAP | BOOT_LOADER_NAME | CMDLINE;
    check!(
        flags & want == want,
        "flags {flags:#x} lack some of {want:#x} (memory, command line, memory map, name)"
    );
    let mut buf = [0u8; 256];

    // The memory map: entries of `size` + 4 bytes, no two overlapping.
    let map = u32_at(info + 48) as u64..(u32_at(info + 48) as u64 + u32_at(info + 44) as u64);
    check!(!map.is_empty(), "the memory map is empty");
    let (mut entries, mut at) = (0, map.start);
    while at < map.end {
        let size = u32_at(at);
        check!(size >= 20, "memory-map entry at {at:#x} has size {size}");
        let (base, len) = (u64_at(at + 4), u64_at(at + 12));
        let mut other = map.start;
        while other < at {
            let (b, l) = (u64_at(other + 4), u64_at(other + 12));
            check!(
                !overlaps(&(base..base + len), &(b..b + l)),
                "memory-map entries {base:#x}+{len:#x} and {b:#x}+{l:#x} overlap"
            );
            other += u32_at(other) as u64 + 4;
        }
        entries += 1;
        at += size as u64 + 4;
    }
    check!(
        usable(map.clone(), &boot::image_range()),
        "this image is not in usable RAM"
    );

    // mem_lower from 0, mem_upper from 1 MiB up to the first hole: as the map says.
    let (lower, upper) = (u32_at(info + 4) as u64, u32_at(info + 8) as u64);
    check!((1..=640).contains(&lower), "mem_lower {lower} KiB");
    check!(
        usable(map.clone(), &(0..lower * 1024)),
        "mem_lower {lower} KiB is not usable RAM"
    );
    check!(
        upper >= 3 * 1024,
        "mem_upper {upper} KiB (RAM is at least 4 MiB)"
    );
    check!(
        usable(map.clone(), &(MIB..MIB + upper * 1024)),
        "mem_upper {upper} KiB is not usable RAM from 1 MiB"
    );
    check!(
        !usable(map.clone(), &(MIB..MIB + upper * 1024 + 4096)),
        "mem_upper {upper} KiB stops before the RAM does"
    );

    let cmdline = string_at(u32_at(info + 16) as u64, &mut buf);
    println!("command line '{cmdline}'");
    let want_modules = cmdline
        .split(' ')
        .find_map(|word| word.strip_prefix("modules="))
        .map_or(0, |n| n.parse::<u32>().unwrap_or(u32::MAX));

    let count = if flags & MODULES != 0 {
        u32_at(info + 20)
    } else {
        0
    };
    check!(
        count == want_modules,
        "{count} modules, the command line says {want_modules}"
    );
    check!(count < 10, "{count} modules: this guest checks at most 9");
    let list = u32_at(info + 24) as u64;
    let info_range = info..info + 88;
    for i in 0..count as u64 {
        let entry = list + 16 * i;
        let module = u32_at(entry) as u64..u32_at(entry + 4) as u64;
        check!(
            module.start % 4096 == 0,
            "module {i} starts at {:#x}, not page-aligned",
            module.start
        );
        check!(module.end > module.start, "module {i} is empty");
        check!(
            usable(map.clone(), &module),
            "module {i} at {module:#x?} is not in usable RAM"
        );
        check!(
            !overlaps(&module, &boot::image_range()),
            "module {i} overlaps this image"
        );
        check!(
            !overlaps(&module, &info_range),
            "module {i} overlaps the information structure"
        );
        for j in 0..i {
            let other = u32_at(list + 16 * j) as u64..u32_at(list + 16 * j + 4) as u64;
            check!(!overlaps(&module, &other), "modules {j} and {i} overlap");
        }
        let digit = b'0' + i as u8;
        let string = string_at(u32_at(entry + 8) as u64, &mut buf);
        let last_word = string.rsplit(' ').next().unwrap_or("");
        check!(
            last_word.strip_prefix("module-").map(str::as_bytes) == Some(&[digit][..]),
            "module {i} has the string '{string}'"
        );
        for (k, &b) in b"tern module ".iter().chain(&[digit, b'\n']).enumerate() {
            let got = byte_at(module.start + k as u64);
            if got != b {
                fail!("module {i} byte {k} is {got:#x}, expected {b:#x}");
            }
        }
        println!(
            "module {i} '{string}' at {:#x}..{:#x}",
            module.start, module.end
        );
    }

    let name = string_at(u32_at(info + 64) as u64, &mut buf);
    check!(!name.is_empty(), "the boot loader's name is empty");
    println!(
        "boot loader '{name}': mem_lower {lower} KiB, mem_upper {upper} KiB, {entries} memory-map entries, {count} modules"
    );
}
