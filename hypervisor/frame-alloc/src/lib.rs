//! Physical frame allocator for the microhypervisor.
//!
//! Owns: the bookkeeping of which 4 KiB physical frames are free, in a bitmap
//! the caller provides (one bit per frame, bit set = free). It needs no heap,
//! so the kernel can use it before it has one.
//!
//! Must not touch: physical memory itself. The allocator only hands out and
//! takes back addresses; zeroing or mapping frames is the caller's business.
//!
//! Allocation is first-fit over naturally aligned blocks of `2^order` frames,
//! with a search hint (the lowest bitmap word that may hold a free frame), so
//! repeated small allocations do not rescan the used low part of memory.
//!
//! Limitation: one bit per frame cannot tell "allocated" apart from "never
//! usable" (reserved or absent). [`FrameAllocator::free`] therefore rejects
//! only blocks that are (partly) free already; freeing a reserved frame that
//! was never allocated is a caller bug the allocator cannot detect.

#![no_std]
#![forbid(unsafe_code)]

#[cfg(test)]
extern crate std;

use core::fmt;

/// Size of one physical frame in bytes.
pub const FRAME_SIZE: u64 = 4096;

const FRAME_SHIFT: u32 = 12;
const WORD_BITS: u64 = 64;
/// Frames with a number at or above this have no representable address.
const MAX_FRAMES: u64 = 1 << (64 - FRAME_SHIFT);

/// A physical address range `[start, end)`; `end` is exclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhysRange {
    pub start: u64,
    pub end: u64,
}

impl PhysRange {
    /// Shorthand constructor.
    pub const fn new(start: u64, end: u64) -> Self {
        Self { start, end }
    }
}

/// Number of `u64` bitmap words needed to track every frame below
/// `max_phys_end` (one bit per frame).
pub fn bitmap_words_needed(max_phys_end: u64) -> usize {
    let frames = max_phys_end.div_ceil(FRAME_SIZE);
    let words = frames.div_ceil(WORD_BITS);
    usize::try_from(words).unwrap_or(usize::MAX)
}

/// Why [`FrameAllocator::free`] refused a block. The allocator is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeError {
    /// `phys` is not aligned to the block size `FRAME_SIZE << order`.
    Misaligned { phys: u64, order: u8 },
    /// The block does not lie inside the memory the bitmap tracks.
    OutOfRange { phys: u64, order: u8 },
    /// At least one frame of the block is already free (double free).
    NotAllocated { phys: u64, order: u8 },
}

impl fmt::Display for FreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FreeError::Misaligned { phys, order } => write!(
                f,
                "free of {phys:#x} order {order}: address is not aligned to the block size \
                 (pass the address alloc returned, with the same order)"
            ),
            FreeError::OutOfRange { phys, order } => write!(
                f,
                "free of {phys:#x} order {order}: block lies outside the memory this allocator \
                 tracks (it was not allocated here)"
            ),
            FreeError::NotAllocated { phys, order } => write!(
                f,
                "free of {phys:#x} order {order}: block is (partly) free already (double free?)"
            ),
        }
    }
}

/// Bitmap frame allocator over caller-provided storage.
pub struct FrameAllocator<'a> {
    /// Bit `i % 64` of word `i / 64` set = frame `i` free.
    bitmap: &'a mut [u64],
    /// Number of frames the bitmap tracks (clamped to addressable frames).
    frames: u64,
    /// Number of set bits in `bitmap`.
    free: u64,
    /// Every word below this index is zero (fully used).
    hint: usize,
    /// Usable bytes (after page rounding) that lay beyond the bitmap.
    clipped: u64,
}

impl<'a> FrameAllocator<'a> {
    /// Builds the allocator. Frames lying fully inside some `usable` range
    /// and not touching any `reserved` range are free; all others are used.
    ///
    /// Ranges may be unsorted, overlapping, unaligned, empty or inverted
    /// (`end <= start`: ignored), or reach beyond what the bitmap tracks:
    /// such parts are clipped and their size is reported by
    /// [`clipped_bytes`](Self::clipped_bytes).
    pub fn new(bitmap: &'a mut [u64], usable: &[PhysRange], reserved: &[PhysRange]) -> Self {
        bitmap.fill(0);
        let words = u64::try_from(bitmap.len()).unwrap_or(u64::MAX);
        let frames = words.saturating_mul(WORD_BITS).min(MAX_FRAMES);
        let mut this = Self {
            bitmap,
            frames,
            free: 0,
            hint: 0,
            clipped: 0,
        };
        for r in usable {
            // Only whole frames inside the range are usable.
            let first = r.start.div_ceil(FRAME_SIZE);
            let end = r.end / FRAME_SIZE;
            if end <= first {
                continue;
            }
            let kept_end = end.min(this.frames);
            let beyond = end.saturating_sub(first.max(this.frames));
            this.clipped = this
                .clipped
                .saturating_add(beyond.saturating_mul(FRAME_SIZE));
            if first < kept_end {
                this.set_range(first, kept_end, true);
            }
        }
        for r in reserved {
            if r.end <= r.start {
                continue;
            }
            // Any frame a reserved range touches is used.
            let first = r.start / FRAME_SIZE;
            let end = r.end.div_ceil(FRAME_SIZE).min(this.frames);
            if first < end {
                this.set_range(first, end, false);
            }
        }
        this.free = this.bitmap.iter().map(|w| u64::from(w.count_ones())).sum();
        this
    }

    /// Usable bytes (whole frames) that were ignored because they lie beyond
    /// the memory the bitmap tracks. Summed per usable range, so overlapping
    /// usable ranges beyond the bitmap are counted once each.
    pub fn clipped_bytes(&self) -> u64 {
        self.clipped
    }

    /// End (exclusive) of the physical memory the bitmap can track.
    pub fn tracked_end(&self) -> u64 {
        self.frames.saturating_mul(FRAME_SIZE)
    }

    /// Number of free frames.
    pub fn free_frames(&self) -> u64 {
        self.free
    }

    /// Whether the frame containing `phys` is free.
    pub fn is_free(&self, phys: u64) -> bool {
        self.bit(phys / FRAME_SIZE)
    }

    /// Allocates `2^order` contiguous frames aligned to `2^order` frames and
    /// returns the physical address of the first, or `None` if no such block
    /// is free.
    pub fn alloc(&mut self, order: u8) -> Option<u64> {
        self.alloc_below(order, u64::MAX)
    }

    /// Like [`alloc`](Self::alloc), but the whole block lies below `limit`
    /// (e.g. an AP trampoline below 1 MiB).
    pub fn alloc_below(&mut self, order: u8, limit: u64) -> Option<u64> {
        let count = block_frames(order)?;
        let limit_frames = (limit / FRAME_SIZE).min(self.frames);
        if count > limit_frames || count > self.free {
            return None;
        }
        self.advance_hint();
        let frame = self.find(order, count, limit_frames)?;
        self.set_range(frame, frame + count, false);
        self.free -= count;
        Some(frame * FRAME_SIZE)
    }

    /// Returns a block obtained from [`alloc`](Self::alloc) with the same
    /// `order`. On error nothing changes.
    pub fn free(&mut self, phys: u64, order: u8) -> Result<(), FreeError> {
        let err_misaligned = FreeError::Misaligned { phys, order };
        let err_range = FreeError::OutOfRange { phys, order };
        let count = block_frames(order).ok_or(err_range)?;
        let size = count.checked_mul(FRAME_SIZE).ok_or(err_range)?;
        if !phys.is_multiple_of(size) {
            return Err(err_misaligned);
        }
        let frame = phys / FRAME_SIZE;
        let end = frame.checked_add(count).ok_or(err_range)?;
        if end > self.frames {
            return Err(err_range);
        }
        if !self.all_equal(frame, end, false) {
            return Err(FreeError::NotAllocated { phys, order });
        }
        self.set_range(frame, end, true);
        self.free += count;
        let word = usize::try_from(frame / WORD_BITS).unwrap_or(usize::MAX);
        self.hint = self.hint.min(word);
        Ok(())
    }

    /// Removes all remaining free memory, yielding it as maximal naturally
    /// aligned blocks `(phys, order)` in ascending address order.
    ///
    /// Each block is taken out of the allocator as the iterator yields it;
    /// if the iterator is dropped early, the blocks not yet yielded stay
    /// free. A contiguous free run of `n` frames yields at most
    /// `2 * log2(n) + 1` blocks.
    pub fn take_all(&mut self) -> TakeAll<'_, 'a> {
        TakeAll {
            alloc: self,
            cursor: 0,
        }
    }

    // ---- internals -------------------------------------------------------

    fn bit(&self, frame: u64) -> bool {
        let Ok(word) = usize::try_from(frame / WORD_BITS) else {
            return false;
        };
        match self.bitmap.get(word) {
            Some(w) if frame < self.frames => w & (1 << (frame % WORD_BITS)) != 0,
            _ => false,
        }
    }

    fn word(&self, index: u64) -> u64 {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.bitmap.get(i))
            .copied()
            .unwrap_or(0)
    }

    /// Sets frames `[first, end)` (all below `self.frames`) to free or used.
    fn set_range(&mut self, first: u64, end: u64, free: bool) {
        let mut frame = first;
        while frame < end {
            let bit = frame % WORD_BITS;
            let n = (WORD_BITS - bit).min(end - frame);
            let mask = ones(n) << bit;
            let Some(w) = usize::try_from(frame / WORD_BITS)
                .ok()
                .and_then(|i| self.bitmap.get_mut(i))
            else {
                return;
            };
            if free {
                *w |= mask;
            } else {
                *w &= !mask;
            }
            frame += n;
        }
    }

    /// Whether every frame in `[first, end)` (below `self.frames`) is free
    /// (`free == true`) or every one is used (`free == false`).
    fn all_equal(&self, first: u64, end: u64, free: bool) -> bool {
        let mut frame = first;
        while frame < end {
            let bit = frame % WORD_BITS;
            let n = (WORD_BITS - bit).min(end - frame);
            let mask = ones(n) << bit;
            let w = self.word(frame / WORD_BITS);
            let ok = if free {
                w & mask == mask
            } else {
                w & mask == 0
            };
            if !ok {
                return false;
            }
            frame += n;
        }
        true
    }

    fn advance_hint(&mut self) {
        while self.bitmap.get(self.hint) == Some(&0) {
            self.hint += 1;
        }
    }

    /// First free aligned block of `count = 2^order` frames ending at or
    /// below `limit` frames.
    fn find(&self, order: u8, count: u64, limit: u64) -> Option<u64> {
        let hint = u64::try_from(self.hint).ok()?;
        if count < WORD_BITS {
            // Blocks lie within one word: test all aligned slots of a word
            // at once by folding runs of set bits.
            let slots = slot_mask(order);
            let mut index = hint;
            while index * WORD_BITS < limit {
                let w = self.word(index);
                if w != 0 {
                    let mut runs = w;
                    let mut span = 1u64;
                    while span < count {
                        runs &= runs >> span;
                        span *= 2;
                    }
                    runs &= slots;
                    if runs != 0 {
                        // The lowest slot is the first fit; if it crosses
                        // the limit, every later one does too.
                        let frame = index * WORD_BITS + u64::from(runs.trailing_zeros());
                        return (frame + count <= limit).then_some(frame);
                    }
                }
                index += 1;
            }
            None
        } else {
            // Blocks span whole words: look for aligned groups of full words.
            let words = count / WORD_BITS;
            let mut index = hint - hint % words;
            while let Some(end_frame) = index
                .checked_add(words)
                .and_then(|e| e.checked_mul(WORD_BITS))
            {
                if end_frame > limit {
                    return None;
                }
                match (index..index + words).find(|&i| self.word(i) != u64::MAX) {
                    None => return Some(index * WORD_BITS),
                    // Skip to the next aligned group after the hole.
                    Some(hole) => index = (hole / words + 1) * words,
                }
            }
            None
        }
    }
}

/// Frames in a block of `order`, if such a block could exist at all.
fn block_frames(order: u8) -> Option<u64> {
    let count = 1u64.checked_shl(u32::from(order))?;
    (count <= MAX_FRAMES).then_some(count)
}

/// `n` low bits set, `n <= 64`.
fn ones(n: u64) -> u64 {
    if n >= WORD_BITS {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}

/// Bits at the positions where an aligned block of `2^order < 64` frames
/// starts within a word.
fn slot_mask(order: u8) -> u64 {
    match order {
        0 => u64::MAX,
        1 => 0x5555_5555_5555_5555,
        2 => 0x1111_1111_1111_1111,
        3 => 0x0101_0101_0101_0101,
        4 => 0x0001_0001_0001_0001,
        _ => 0x0000_0001_0000_0001,
    }
}

/// Iterator returned by [`FrameAllocator::take_all`]; yields `(phys, order)`.
pub struct TakeAll<'b, 'a> {
    alloc: &'b mut FrameAllocator<'a>,
    /// Every frame below this has been taken or was used.
    cursor: u64,
}

impl Iterator for TakeAll<'_, '_> {
    type Item = (u64, u8);

    fn next(&mut self) -> Option<(u64, u8)> {
        let a = &mut *self.alloc;
        // Find the next free frame at or after the cursor.
        let mut index = self.cursor / WORD_BITS;
        let start = loop {
            if index * WORD_BITS >= a.frames {
                self.cursor = a.frames;
                return None;
            }
            let mut w = a.word(index);
            if index == self.cursor / WORD_BITS {
                w &= !ones(self.cursor % WORD_BITS);
            }
            if w != 0 {
                break index * WORD_BITS + u64::from(w.trailing_zeros());
            }
            index += 1;
        };
        // Grow the block while it stays aligned and its buddy half is free.
        let mut order: u8 = 0;
        loop {
            let size = 1u64 << order;
            let doubled = size * 2;
            if start % doubled != 0 || doubled > MAX_FRAMES {
                break;
            }
            let Some(end) = start.checked_add(doubled) else {
                break;
            };
            if end > a.frames || !a.all_equal(start + size, end, true) {
                break;
            }
            order += 1;
        }
        let count = 1u64 << order;
        a.set_range(start, start + count, false);
        a.free -= count;
        self.cursor = start + count;
        Some((start * FRAME_SIZE, order))
    }
}

#[cfg(test)]
mod tests;
