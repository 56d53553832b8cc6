use super::*;
use std::vec;
use std::vec::Vec;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

fn r(start: u64, end: u64) -> PhysRange {
    PhysRange::new(start, end)
}

/// Free frames as a plain list of booleans, for comparison.
fn free_set(a: &FrameAllocator<'_>) -> Vec<bool> {
    (0..a.tracked_end() / FRAME_SIZE)
        .map(|f| a.is_free(f * FRAME_SIZE))
        .collect()
}

/// Small deterministic PRNG (xorshift64*), so tests need no extra crates.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn words_needed() {
    assert_eq!(bitmap_words_needed(0), 0);
    assert_eq!(bitmap_words_needed(1), 1);
    assert_eq!(bitmap_words_needed(64 * FRAME_SIZE), 1);
    assert_eq!(bitmap_words_needed(64 * FRAME_SIZE + 1), 2);
    assert_eq!(bitmap_words_needed(4 * 1024 * MIB), 1 << 14);
    assert_eq!(bitmap_words_needed(u64::MAX), 1 << 46);
}

#[test]
fn only_whole_frames_inside_usable_are_free() {
    let mut bm = [0u64; 1];
    let a = FrameAllocator::new(&mut bm, &[r(0x1001, 0x5fff)], &[]);
    // Frames 2..=4 lie wholly inside; 1 and 5 only partly.
    assert_eq!(a.free_frames(), 3);
    assert!(!a.is_free(0x1000));
    assert!(a.is_free(0x2000));
    assert!(a.is_free(0x4000));
    assert!(!a.is_free(0x5000));
}

#[test]
fn frames_touching_reserved_are_used() {
    let mut bm = [0u64; 1];
    let a = FrameAllocator::new(&mut bm, &[r(0, 0x10000)], &[r(0x3fff, 0x4001)]);
    assert!(a.is_free(0x2000));
    assert!(!a.is_free(0x3000));
    assert!(!a.is_free(0x4000));
    assert!(a.is_free(0x5000));
    assert_eq!(a.free_frames(), 14);
}

#[test]
fn unsorted_overlapping_empty_and_inverted_ranges() {
    let mut bm = [0u64; 2];
    let usable = [
        r(0x20000, 0x30000),
        r(0x8000, 0x10000),
        r(0xc000, 0x24000),  // overlaps both
        r(0x50000, 0x50000), // empty
        r(0x70000, 0x60000), // inverted
        r(0x60000, 0x60fff), // less than a frame
    ];
    let reserved = [r(0x9000, 0x9000), r(0x2f000, 0x2e000)]; // empty, inverted
    let a = FrameAllocator::new(&mut bm, &usable, &reserved);
    let free = free_set(&a);
    for (f, is_free) in free.iter().enumerate() {
        let expect = (8..0x30).contains(&f);
        assert_eq!(*is_free, expect, "frame {f}");
    }
    assert_eq!(a.free_frames(), 0x28);
    assert_eq!(a.clipped_bytes(), 0);
}

#[test]
fn stale_bitmap_contents_are_ignored() {
    let mut bm = [u64::MAX; 2];
    let a = FrameAllocator::new(&mut bm, &[r(0, 4 * FRAME_SIZE)], &[]);
    assert_eq!(a.free_frames(), 4);
}

#[test]
fn ranges_beyond_bitmap_are_clipped_and_reported() {
    let mut bm = [0u64; 1]; // tracks 256 KiB
    let a = FrameAllocator::new(
        &mut bm,
        &[r(0, MIB), r(2 * MIB, 3 * MIB), r(u64::MAX - 5, u64::MAX)],
        &[r(200 * KIB, u64::MAX)],
    );
    assert_eq!(a.tracked_end(), 256 * KIB);
    assert_eq!(a.clipped_bytes(), 768 * KIB + MIB);
    assert_eq!(a.free_frames(), 50);
}

#[test]
fn empty_bitmap_is_harmless() {
    let mut bm: [u64; 0] = [];
    let mut a = FrameAllocator::new(&mut bm, &[r(0, MIB)], &[]);
    assert_eq!(a.free_frames(), 0);
    assert_eq!(a.clipped_bytes(), MIB);
    assert_eq!(a.alloc(0), None);
    assert_eq!(
        a.free(0, 0),
        Err(FreeError::OutOfRange { phys: 0, order: 0 })
    );
    assert_eq!(a.take_all().count(), 0);
}

#[test]
fn allocations_are_aligned_and_disjoint() {
    let mut bm = [0u64; 8];
    // Start at an odd frame so alignment matters.
    let mut a = FrameAllocator::new(&mut bm, &[r(FRAME_SIZE, 512 * FRAME_SIZE)], &[]);
    let mut taken: Vec<(u64, u64)> = Vec::new();
    for order in [0u8, 3, 1, 6, 2, 7, 0, 5] {
        let p = a.alloc(order).expect("memory left");
        let size = FRAME_SIZE << order;
        assert_eq!(p % size, 0, "order {order} at {p:#x}");
        assert!(p >= FRAME_SIZE && p + size <= 512 * FRAME_SIZE);
        for &(s, e) in &taken {
            assert!(p + size <= s || p >= e, "overlap");
        }
        taken.push((p, p + size));
    }
    let used: u64 = taken.iter().map(|(s, e)| (e - s) / FRAME_SIZE).sum();
    assert_eq!(a.free_frames(), 511 - used);
}

#[test]
fn first_fit_returns_lowest_block() {
    let mut bm = [0u64; 2];
    let mut a = FrameAllocator::new(&mut bm, &[r(0, 128 * FRAME_SIZE)], &[]);
    assert_eq!(a.alloc(0), Some(0));
    assert_eq!(a.alloc(0), Some(FRAME_SIZE));
    assert_eq!(a.alloc(1), Some(2 * FRAME_SIZE));
    assert_eq!(a.alloc(2), Some(4 * FRAME_SIZE));
    assert_eq!(a.alloc(0), Some(8 * FRAME_SIZE));
    assert_eq!(a.alloc(6), Some(64 * FRAME_SIZE));
    // Freeing a low frame moves the hint back.
    a.free(FRAME_SIZE, 0).unwrap();
    assert_eq!(a.alloc(0), Some(FRAME_SIZE));
}

#[test]
fn multi_word_blocks() {
    let mut bm = [0u64; 16]; // 1024 frames
    let mut a = FrameAllocator::new(&mut bm, &[r(0, 1024 * FRAME_SIZE)], &[r(0, 1)]);
    // Frame 0 reserved: the first 256-frame block is at 256.
    assert_eq!(a.alloc(8), Some(256 * FRAME_SIZE));
    assert_eq!(a.alloc(9), Some(512 * FRAME_SIZE));
    assert_eq!(a.alloc(9), None);
    assert_eq!(a.alloc(7), Some(128 * FRAME_SIZE));
    assert_eq!(a.alloc(10), None);
    assert_eq!(a.free_frames(), 127);
}

#[test]
fn huge_orders_fail_cleanly() {
    let mut bm = [0u64; 1];
    let mut a = FrameAllocator::new(&mut bm, &[r(0, u64::MAX)], &[]);
    for order in [7u8, 52, 53, 63, 64, 200, 255] {
        assert_eq!(a.alloc(order), None, "order {order}");
        assert_eq!(a.alloc_below(order, u64::MAX), None, "order {order}");
    }
    assert_eq!(a.alloc(6), Some(0));
}

#[test]
fn exhaustion_and_refill() {
    let mut bm = [0u64; 4];
    let mut a = FrameAllocator::new(&mut bm, &[r(0, 256 * FRAME_SIZE)], &[r(0x10000, 0x11000)]);
    let total = a.free_frames();
    assert_eq!(total, 255);
    let mut got = Vec::new();
    while let Some(p) = a.alloc(0) {
        got.push(p);
    }
    assert_eq!(got.len() as u64, total);
    assert!(!got.contains(&0x10000));
    assert_eq!(a.free_frames(), 0);
    assert_eq!(a.alloc(0), None);
    for p in got {
        a.free(p, 0).unwrap();
    }
    assert_eq!(a.free_frames(), total);
    // Reserved frame 16 breaks up the first 32-frame block.
    assert_eq!(a.alloc(5), Some(32 * FRAME_SIZE));
}

#[test]
fn reserved_holes_are_never_handed_out() {
    let mut bm = [0u64; 4];
    let holes = [r(0x3000, 0x4000), r(0x20800, 0x20900), r(0xff000, 0x100000)];
    let mut a = FrameAllocator::new(&mut bm, &[r(0, 0x100000)], &holes);
    while let Some(p) = a.alloc(0) {
        for h in &holes {
            assert!(p + FRAME_SIZE <= h.start || p >= h.end, "{p:#x} in hole");
        }
    }
}

#[test]
fn alloc_below_limit() {
    let mut bm = [0u64; 64]; // 16 MiB
    let mut a = FrameAllocator::new(&mut bm, &[r(0x80000, 16 * MIB)], &[]);
    // Whole block must end at or below the limit; limits need not be aligned.
    assert_eq!(a.alloc_below(0, 0x80000), None);
    assert_eq!(a.alloc_below(0, 0x80fff), None);
    assert_eq!(a.alloc_below(0, 0x81000), Some(0x80000));
    // Frame 0x80 is taken, so the first free 256 KiB block is the next one.
    assert_eq!(a.alloc_below(6, MIB), Some(0xc0000));
    assert_eq!(a.alloc_below(6, MIB), None);
    assert_eq!(a.alloc_below(0, MIB), Some(0x81000));
    assert_eq!(a.alloc_below(0, 0), None);
    // A limit beyond the bitmap is fine.
    assert!(a.alloc_below(0, u64::MAX).is_some());
}

#[test]
fn free_errors_leave_state_unchanged() {
    let mut bm = [0u64; 2];
    let mut a = FrameAllocator::new(&mut bm, &[r(0, 128 * FRAME_SIZE)], &[]);
    let p = a.alloc(2).unwrap();
    let before = free_set(&a);
    let cases = [
        (p + 1, 0, "misaligned in frame"),
        (p + FRAME_SIZE, 2, "misaligned for order"),
        (128 * FRAME_SIZE, 0, "beyond bitmap"),
        (!0xfffu64, 0, "top of address space"),
        (0, 64, "order too large"),
        (0, 255, "order way too large"),
        (p, 3, "block partly free"),
        (64 * FRAME_SIZE, 0, "never allocated"),
    ];
    for (phys, order, what) in cases {
        assert!(a.free(phys, order).is_err(), "{what}");
        assert_eq!(free_set(&a), before, "{what}");
    }
    assert_eq!(
        a.free(p + 1, 0),
        Err(FreeError::Misaligned {
            phys: p + 1,
            order: 0
        })
    );
    assert_eq!(
        a.free(64 * FRAME_SIZE, 0),
        Err(FreeError::NotAllocated {
            phys: 64 * FRAME_SIZE,
            order: 0
        })
    );
    assert!(matches!(a.free(0, 64), Err(FreeError::OutOfRange { .. })));
    a.free(p, 2).unwrap();
    assert_eq!(
        a.free(p, 2),
        Err(FreeError::NotAllocated { phys: p, order: 2 })
    );
    // Freeing part of a block is allowed frame by frame.
    let q = a.alloc(1).unwrap();
    a.free(q + FRAME_SIZE, 0).unwrap();
    a.free(q, 0).unwrap();
    assert_eq!(a.free_frames(), 128);
}

#[test]
fn error_messages_say_what_is_wrong() {
    let msg = std::format!(
        "{}",
        FreeError::NotAllocated {
            phys: 0x5000,
            order: 1
        }
    );
    assert!(
        msg.contains("0x5000") && msg.contains("double free"),
        "{msg}"
    );
    let msg = std::format!(
        "{}",
        FreeError::Misaligned {
            phys: 0x5001,
            order: 0
        }
    );
    assert!(msg.contains("not aligned"), "{msg}");
}

/// Checks that `blocks` is exactly the maximal aligned block decomposition
/// of the free set `free`.
fn check_decomposition(free: &[bool], blocks: &[(u64, u8)]) {
    let mut covered = vec![false; free.len()];
    let mut last_end = 0u64;
    for &(phys, order) in blocks {
        assert_eq!(phys % FRAME_SIZE, 0);
        let f = phys / FRAME_SIZE;
        let n = 1u64 << order;
        assert_eq!(f % n, 0, "block {phys:#x}/{order} not aligned");
        assert!(f >= last_end, "not ascending");
        last_end = f + n;
        for i in f..f + n {
            assert!(free[i as usize], "frame {i} was not free");
            assert!(!covered[i as usize]);
            covered[i as usize] = true;
        }
        // Maximal: the enclosing aligned block of twice the size is not free.
        let parent = f - f % (2 * n);
        let parent_free = parent + 2 * n <= free.len() as u64
            && (parent..parent + 2 * n).all(|i| free[i as usize]);
        assert!(!parent_free, "block {phys:#x}/{order} could be larger");
    }
    assert_eq!(covered, free, "take_all must cover exactly the free set");
}

#[test]
fn take_all_yields_maximal_blocks() {
    let mut bm = [0u64; 8]; // 512 frames
    let mut a = FrameAllocator::new(
        &mut bm,
        &[
            r(3 * FRAME_SIZE, 300 * FRAME_SIZE),
            r(320 * FRAME_SIZE, 512 * FRAME_SIZE),
        ],
        &[r(100 * FRAME_SIZE, 101 * FRAME_SIZE)],
    );
    let free = free_set(&a);
    let blocks: Vec<_> = a.take_all().collect();
    check_decomposition(&free, &blocks);
    assert_eq!(blocks[0], (3 * FRAME_SIZE, 0));
    assert_eq!(blocks[1], (4 * FRAME_SIZE, 2));
    assert!(blocks.contains(&(384 * FRAME_SIZE, 7)));
    assert_eq!(a.free_frames(), 0);
    assert_eq!(a.alloc(0), None);
}

#[test]
fn take_all_whole_memory_is_one_block() {
    let mut bm = [0u64; 16];
    let mut a = FrameAllocator::new(&mut bm, &[r(0, u64::MAX)], &[]);
    let blocks: Vec<_> = a.take_all().collect();
    assert_eq!(blocks, [(0, 10)]);
}

#[test]
fn take_all_dropped_early_leaves_rest_free() {
    let mut bm = [0u64; 2];
    let mut a = FrameAllocator::new(&mut bm, &[r(FRAME_SIZE, 128 * FRAME_SIZE)], &[]);
    let first: Vec<_> = a.take_all().take(2).collect();
    assert_eq!(first, [(FRAME_SIZE, 0), (2 * FRAME_SIZE, 1)]);
    assert_eq!(a.free_frames(), 124);
    let rest: Vec<_> = a.take_all().collect();
    assert_eq!(rest.first(), Some(&(4 * FRAME_SIZE, 2)));
    assert_eq!(a.free_frames(), 0);
}

/// Random allocations and frees compared against a trivial model: first-fit
/// means the allocator must return the lowest aligned free block.
#[test]
fn randomized_against_model() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for round in 0..40 {
        let words = 1 + rng.below(12) as usize;
        let mut bm = vec![0u64; words];
        let frames = words as u64 * 64;
        let mut usable = Vec::new();
        let mut reserved = Vec::new();
        for _ in 0..rng.below(6) {
            let s = rng.below(frames * FRAME_SIZE + 8 * FRAME_SIZE);
            usable.push(r(s, s + rng.below(frames * FRAME_SIZE / 2 + 1)));
        }
        for _ in 0..rng.below(4) {
            let s = rng.below(frames * FRAME_SIZE);
            reserved.push(r(s, s + rng.below(16 * FRAME_SIZE)));
        }
        let mut a = FrameAllocator::new(&mut bm, &usable, &reserved);
        let mut model: Vec<bool> = (0..frames)
            .map(|f| {
                let (s, e) = (f * FRAME_SIZE, (f + 1) * FRAME_SIZE);
                usable.iter().any(|u| u.start <= s && e <= u.end)
                    && !reserved
                        .iter()
                        .any(|x| x.start < x.end && x.start < e && s < x.end)
            })
            .collect();
        assert_eq!(free_set(&a), model, "round {round}: initial state");
        let mut live: Vec<(u64, u8)> = Vec::new();
        for step in 0..300 {
            if rng.below(3) != 0 || live.is_empty() {
                let order = rng.below(9) as u8;
                let limit = if rng.below(4) == 0 {
                    rng.below(frames * FRAME_SIZE + FRAME_SIZE)
                } else {
                    u64::MAX
                };
                let n = 1u64 << order;
                let expect = (0..frames).step_by(n as usize).find(|&f| {
                    (f + n) * FRAME_SIZE <= limit
                        && f + n <= frames
                        && (f..f + n).all(|i| model[i as usize])
                });
                let got = a.alloc_below(order, limit);
                assert_eq!(
                    got,
                    expect.map(|f| f * FRAME_SIZE),
                    "round {round} step {step}: alloc order {order} below {limit:#x}"
                );
                if let Some(f) = expect {
                    (f..f + n).for_each(|i| model[i as usize] = false);
                    live.push((f * FRAME_SIZE, order));
                }
            } else {
                let i = rng.below(live.len() as u64) as usize;
                let (p, order) = live.swap_remove(i);
                a.free(p, order).unwrap();
                assert_eq!(
                    a.free(p, order),
                    Err(FreeError::NotAllocated { phys: p, order })
                );
                let f = p / FRAME_SIZE;
                (f..f + (1 << order)).for_each(|i| model[i as usize] = true);
            }
            assert_eq!(a.free_frames(), model.iter().filter(|&&b| b).count() as u64);
        }
        assert_eq!(free_set(&a), model);
        let blocks: Vec<_> = a.take_all().collect();
        check_decomposition(&model, &blocks);
        assert_eq!(a.free_frames(), 0);
    }
}

#[test]
fn many_small_allocations_use_the_hint() {
    // 64 Mi frames would be slow without the hint (quadratic rescans); with
    // it this finishes quickly even in debug builds.
    let frames = 1u64 << 18;
    let mut bm = vec![0u64; (frames / 64) as usize];
    let mut a = FrameAllocator::new(&mut bm, &[r(0, frames * FRAME_SIZE)], &[]);
    for i in 0..frames {
        assert_eq!(a.alloc(0), Some(i * FRAME_SIZE));
    }
    assert_eq!(a.alloc(0), None);
}
