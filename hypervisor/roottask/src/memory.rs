//! The memory of one component: every block of RAM the roottask gave it (charged
//! to its quota) or lent it (boot modules, read-only, not charged), at which
//! address of the component's PD. Owns the accounting that makes memory come back:
//! a component may give parts back ([`Memory::take_back`]) and everything it owned
//! returns to the pool when it ends ([`Memory::reclaim`]).
//!
//! Must not touch: other components' memory, or the PD itself (ending the PD is
//! the caller's job, before `reclaim`).

use crate::pool::Pool;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;
use hyper_abi::{mem_rights, sel, syscall, Crd, Status};

/// Component addresses must lie below this (the user half).
const USER_END: u64 = 0x0000_8000_0000_0000;
/// Largest block one request may ask for (2^18 pages = 1 GiB).
const MAX_ORDER: u8 = 18;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The address is not aligned to the block, or lies outside the user half.
    BadRange,
    /// Something is mapped there already.
    Overlap,
    /// The component's quota is used up.
    Quota,
    /// The roottask has no free block of that size.
    PoolEmpty,
    /// The range holds memory the component does not own (a boot module).
    NotOwned,
    Kernel(Status),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BadRange => write!(f, "misaligned or out-of-range address"),
            Error::Overlap => write!(f, "address already in use"),
            Error::Quota => write!(f, "memory quota exhausted"),
            Error::PoolEmpty => write!(f, "the roottask is out of memory"),
            Error::NotOwned => write!(f, "not memory of the component"),
            Error::Kernel(s) => write!(f, "hypercall failed: {}", s.name()),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Block {
    pa: u64,
    order: u8,
    rights: u8,
    owned: bool,
}

impl Block {
    fn bytes(&self) -> u64 {
        4096 << self.order
    }
}

pub struct Memory {
    pd: u64,
    quota_pages: u64,
    used_pages: u64,
    /// By component address.
    blocks: BTreeMap<u64, Block>,
}

/// The largest naturally aligned blocks covering `[va, va + len)` with physical
/// addresses from `pa` on (both advance together).
fn aligned_pieces(mut va: u64, mut pa: u64, len: u64) -> Vec<(u64, u64, u8)> {
    let end = va + len;
    let mut out = Vec::new();
    while va < end {
        let mut order = ((va | pa) >> 12).trailing_zeros().min(MAX_ORDER as u32) as u8;
        while (4096u64 << order) > end - va {
            order -= 1;
        }
        out.push((va, pa, order));
        va += 4096 << order;
        pa += 4096 << order;
    }
    out
}

impl Memory {
    pub fn new(pd: u64, quota_pages: u64) -> Self {
        Memory {
            pd,
            quota_pages,
            used_pages: 0,
            blocks: BTreeMap::new(),
        }
    }

    pub fn quota_pages(&self) -> u64 {
        self.quota_pages
    }

    pub fn used_pages(&self) -> u64 {
        self.used_pages
    }

    fn check_free(&self, va: u64, len: u64) -> Result<(), Error> {
        let end = va.checked_add(len).ok_or(Error::BadRange)?;
        if !va.is_multiple_of(4096) || len == 0 || end > USER_END {
            return Err(Error::BadRange);
        }
        match self.blocks.range(..end).next_back() {
            Some((&start, b)) if start + b.bytes() > va => Err(Error::Overlap),
            _ => Ok(()),
        }
    }

    fn map(&self, pa: u64, order: u8, rights: u8, va: u64) -> Result<(), Error> {
        let crd = Crd::mem((sel::PHYS_WINDOW + pa) >> 12, order, rights);
        syscall::delegate(self.pd, crd, va >> 12)
            .map(|_| ())
            .map_err(Error::Kernel)
    }

    /// Backs `[va, va + 4096 << order)` with a zeroed block (first written by
    /// `fill`) charged to the quota.
    pub fn give(
        &mut self,
        pool: &mut Pool,
        va: u64,
        order: u8,
        rights: u8,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<(), Error> {
        if order > MAX_ORDER || !va.is_multiple_of(4096 << order) {
            return Err(Error::BadRange);
        }
        let pages = 1u64 << order;
        self.check_free(va, pages * 4096)?;
        if self.used_pages + pages > self.quota_pages {
            return Err(Error::Quota);
        }
        let pa = pool.alloc(order, fill).ok_or(Error::PoolEmpty)?;
        let rights = rights & mem_rights::RWX;
        if let Err(e) = self.map(pa, order, rights, va) {
            pool.free(pa, order);
            return Err(e);
        }
        self.blocks.insert(
            va,
            Block {
                pa,
                order,
                rights,
                owned: true,
            },
        );
        self.used_pages += pages;
        Ok(())
    }

    /// Maps the (page-rounded) physical range `[pa, pa + len)` read-only at
    /// `va` without charging the quota: boot modules, which stay the roottask's.
    pub fn lend(&mut self, pa: u64, len: u64, va: u64) -> Result<(), Error> {
        let first = pa & !0xfff;
        let size = (pa + len).next_multiple_of(4096) - first;
        self.check_free(va, size)?;
        for (v, p, order) in aligned_pieces(va, first, size) {
            self.map(p, order, mem_rights::R, v)?;
            self.blocks.insert(
                v,
                Block {
                    pa: p,
                    order,
                    rights: mem_rights::R,
                    owned: false,
                },
            );
        }
        Ok(())
    }

    /// Takes back the owned memory backing `[va, va + pages * 4096)` (parts of
    /// blocks that stay are mapped again, with their contents).
    pub fn take_back(&mut self, pool: &mut Pool, va: u64, pages: u64) -> Result<(), Error> {
        let end = pages
            .checked_mul(4096)
            .and_then(|l| va.checked_add(l))
            .filter(|&e| e <= USER_END && va.is_multiple_of(4096))
            .ok_or(Error::BadRange)?;
        let hit: Vec<(u64, Block)> = {
            let first = match self.blocks.range(..=va).next_back() {
                Some((&s, b)) if s + b.bytes() > va => s,
                _ => va,
            };
            self.blocks
                .range(first..end)
                .map(|(&s, &b)| (s, b))
                .collect()
        };
        if hit.iter().any(|(_, b)| !b.owned) {
            return Err(Error::NotOwned);
        }
        for (start, b) in hit {
            let crd = Crd::mem((sel::PHYS_WINDOW + b.pa) >> 12, b.order, mem_rights::RWX);
            syscall::revoke(crd, false).map_err(Error::Kernel)?;
            self.blocks.remove(&start);
            let (cut_from, cut_to) = (va.max(start), end.min(start + b.bytes()));
            // the parts outside the cut stay the component's: map them again
            let keep = [(start, cut_from), (cut_to, start + b.bytes())];
            for (from, to) in keep {
                for (v, p, order) in aligned_pieces(from, b.pa + (from - start), to - from) {
                    self.map(p, order, b.rights, v)?;
                    self.blocks.insert(
                        v,
                        Block {
                            pa: p,
                            order,
                            rights: b.rights,
                            owned: true,
                        },
                    );
                }
            }
            for (_, p, order) in
                aligned_pieces(cut_from, b.pa + (cut_from - start), cut_to - cut_from)
            {
                pool.free(p, order);
            }
            self.used_pages -= (cut_to - cut_from) / 4096;
        }
        Ok(())
    }

    /// Returns every owned block to the pool (the PD must be gone already);
    /// the number of pages returned.
    pub fn reclaim(&mut self, pool: &mut Pool) -> u64 {
        let mut pages = 0;
        for b in core::mem::take(&mut self.blocks).into_values() {
            if b.owned {
                pool.free(b.pa, b.order);
                pages += 1 << b.order;
            }
        }
        self.used_pages = 0;
        pages
    }
}
