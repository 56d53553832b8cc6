//! The roottask's physical memory: the RAM blocks of the HIP, handed out in
//! contiguous page runs (a bump allocator for now; memory of destroyed components
//! is not reused yet).

use hyper_abi::HipMem;

pub struct Pool {
    blocks: [(u64, u64); hyper_abi::HIP_MEM_MAX],
    count: usize,
    current: usize,
    next: u64,
}

impl Pool {
    pub fn new(mem: &[HipMem]) -> Self {
        let mut blocks = [(0, 0); hyper_abi::HIP_MEM_MAX];
        for (b, m) in blocks.iter_mut().zip(mem) {
            *b = (m.base, m.base + m.size);
        }
        Pool {
            blocks,
            count: mem.len(),
            current: 0,
            next: mem.first().map(|m| m.base).unwrap_or(0),
        }
    }

    /// `pages` contiguous pages; their physical address.
    pub fn alloc(&mut self, pages: u64) -> Option<u64> {
        while self.current < self.count {
            let (_, end) = self.blocks[self.current];
            if self.next + pages * 4096 <= end {
                let p = self.next;
                self.next += pages * 4096;
                return Some(p);
            }
            self.current += 1;
            self.next = self.blocks.get(self.current).map(|b| b.0).unwrap_or(0);
        }
        None
    }
}
