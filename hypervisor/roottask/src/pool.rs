//! The roottask's physical memory: the RAM blocks of the HIP, handed out as
//! naturally aligned blocks of `2^order` frames and taken back when a component
//! gives memory up or ends. The free-frame bitmap lives in the first frames of a
//! RAM block big enough for it (seen through the physical window).

use frame_alloc::{bitmap_words_needed, FrameAllocator, PhysRange};
use hyper_abi::{sel, HipMem};

pub struct Pool {
    frames: FrameAllocator<'static>,
}

impl Pool {
    /// None if no RAM block can hold the bitmap.
    pub fn new(mem: &[HipMem]) -> Option<Self> {
        let end = mem.iter().map(|m| m.base + m.size).max()?;
        let words = bitmap_words_needed(end);
        let bytes = (words as u64 * 8).next_multiple_of(4096);
        let home = mem.iter().find(|m| m.base % 8 == 0 && m.size >= bytes)?;
        // SAFETY: `home` is RAM the kernel gave to the roottask alone, mapped at
        // PHYS_WINDOW + its address; the first `bytes` of it are reserved below,
        // so nothing else ever uses them; this runs once.
        let bitmap = unsafe {
            core::slice::from_raw_parts_mut((sel::PHYS_WINDOW + home.base) as *mut u64, words)
        };
        let mut usable = [PhysRange::new(0, 0); hyper_abi::HIP_MEM_MAX];
        for (u, m) in usable.iter_mut().zip(mem) {
            *u = PhysRange::new(m.base, m.base + m.size);
        }
        let reserved = [PhysRange::new(home.base, home.base + bytes)];
        Some(Pool {
            frames: FrameAllocator::new(bitmap, &usable[..mem.len()], &reserved),
        })
    }

    /// A zeroed block of `2^order` frames that `fill` may write first; its
    /// physical address.
    pub fn alloc(&mut self, order: u8, fill: impl FnOnce(&mut [u8])) -> Option<u64> {
        let pa = self.frames.alloc(order)?;
        // SAFETY: the block was free until now, so nobody else uses these bytes;
        // it is RAM of the roottask, mapped at PHYS_WINDOW + its address.
        let bytes = unsafe {
            core::slice::from_raw_parts_mut((sel::PHYS_WINDOW + pa) as *mut u8, 4096 << order)
        };
        bytes.fill(0);
        fill(bytes);
        Some(pa)
    }

    /// Returns a block (or an aligned part of one) taken with [`Pool::alloc`].
    pub fn free(&mut self, pa: u64, order: u8) {
        // a refusal would mean our own bookkeeping is wrong: keep the frames
        let _ = self.frames.free(pa, order);
    }

    pub fn free_pages(&self) -> u64 {
        self.frames.free_frames()
    }
}
