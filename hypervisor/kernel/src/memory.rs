//! Physical memory at boot: builds the frame allocator from the boot memory map,
//! carves out the kernel heap (all kernel objects and page tables live there) and
//! hands everything else to the roottask. Owns the global allocator.

use crate::arch::phys;
use crate::multiboot::BootInfo;
use frame_alloc::{bitmap_words_needed, FrameAllocator, PhysRange};
use linked_list_allocator::LockedHeap;

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

/// Bytes of kernel heap.
pub fn heap_stats() -> (usize, usize) {
    let h = HEAP.lock();
    (h.used(), h.size())
}

extern "C" {
    static __kernel_phys_start: u8;
    static __kernel_phys_end: u8;
}

/// What boot memory setup leaves for the roottask.
pub struct RootMemory {
    pub blocks: alloc::vec::Vec<(u64, u8)>,
    pub ram_end: u64,
}

fn sym(s: &u8) -> u64 {
    s as *const u8 as u64
}

/// Sets up the heap and returns the remaining free RAM as aligned blocks.
pub fn init(bi: &BootInfo) -> RootMemory {
    // SAFETY: only the addresses of linker symbols are taken.
    let (kstart, kend) = unsafe { (sym(&__kernel_phys_start), sym(&__kernel_phys_end)) };
    let ram_end = bi
        .ram()
        .iter()
        .map(|r| r.end)
        .max()
        .unwrap_or(0)
        .min(phys::DIRECT_MAP_LIMIT);
    const EMPTY: PhysRange = PhysRange { start: 0, end: 0 };
    let mut usable = [EMPTY; crate::multiboot::MAX_REGIONS];
    for (u, r) in usable.iter_mut().zip(bi.ram()) {
        *u = PhysRange {
            start: r.start,
            end: r.end,
        };
    }
    // unused slots stay empty ranges, which the allocator ignores
    let mut reserved = [EMPTY; 4 + 2 * crate::multiboot::MAX_MODULES];
    reserved[0] = PhysRange {
        start: 0,
        end: 0x10_0000,
    }; // BIOS area, AP trampoline
    reserved[1] = PhysRange {
        start: kstart,
        end: kend,
    };
    reserved[2] = PhysRange {
        start: bi.info_range.start,
        end: bi.info_range.end,
    };
    for (i, m) in bi.modules().iter().enumerate() {
        reserved[4 + 2 * i] = PhysRange {
            start: m.start,
            end: m.end,
        };
        reserved[5 + 2 * i] = PhysRange {
            start: m.cmdline.0,
            end: m.cmdline.0 + m.cmdline.1 as u64 + 1,
        };
    }

    // the bitmap itself: RAM below 4 GiB clear of everything reserved (candidates:
    // the start of each RAM range and the end of each reserved range)
    let words = bitmap_words_needed(ram_end);
    let bytes = (words as u64 * 8 + 0xfff) & !0xfff;
    let fits = |s: u64| {
        s + bytes <= 4 << 30
            && usable.iter().any(|r| s >= r.start && s + bytes <= r.end)
            && reserved.iter().all(|x| s + bytes <= x.start || s >= x.end)
    };
    let bitmap_at = usable
        .iter()
        .map(|r| r.start)
        .chain(reserved.iter().map(|x| x.end))
        .map(|s| (s + 0xfff) & !0xfff)
        .filter(|&s| s > 0)
        .find(|&s| fits(s))
        .expect("no room for the frame bitmap");
    reserved[3] = PhysRange {
        start: bitmap_at,
        end: bitmap_at + bytes,
    };
    phys::zero(bitmap_at, bytes as usize);
    // SAFETY: the range was just reserved for the bitmap, lies in the direct map and is
    // 8-byte aligned; nothing else refers to it, and it is never freed.
    let bitmap =
        unsafe { core::slice::from_raw_parts_mut(phys::to_virt(bitmap_at) as *mut u64, words) };
    let mut frames = FrameAllocator::new(bitmap, &usable, &reserved);

    // kernel heap: 1/8 of RAM, between 16 MiB and 512 MiB, below 4 GiB if possible
    let total = frames.free_frames() * 4096;
    let want = (total / 8).clamp(16 << 20, 512 << 20);
    let mut order = 63 - want.leading_zeros() as u8 - 12;
    let heap = loop {
        if let Some(p) = frames
            .alloc_below(order, 4 << 30)
            .or_else(|| frames.alloc(order))
        {
            break (p, 4096u64 << order);
        }
        assert!(order > 10, "not enough memory for the kernel heap");
        order -= 1;
    };
    // SAFETY: the heap range was just taken from the allocator, lies in the direct
    // map and is given to the allocator exactly once.
    unsafe {
        HEAP.lock()
            .init(phys::to_virt(heap.0) as *mut u8, heap.1 as usize)
    };

    let blocks = frames.take_all().collect();
    RootMemory { blocks, ram_end }
}
