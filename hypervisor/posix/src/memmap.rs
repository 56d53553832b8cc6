//! The virtual memory bookkeeping of one process.
//!
//! Owns: the regions of the program's address space (`[start, end)`, page
//! granular, each with a protection and a [`RegionKind`]), where `mmap` puts
//! new mappings, the `brk` area, and which parts are *backed* by physical
//! memory. Must not touch: memory itself, page tables or capabilities — the
//! caller attaches and releases physical memory as this map tells it to.
//!
//! # Backing
//!
//! Physical memory is attached lazily, when the program first touches a page
//! ([`MemoryMap::fault`]) or when the caller must touch a user buffer for a
//! system call ([`MemoryMap::ensure`]). A block is either a 4 KiB page
//! (order 0) or a 2 MiB block (order 9); the 2 MiB block is chosen when the
//! aligned 2 MiB range lies entirely in accessible regions and nothing in it
//! is backed yet. The caller attaches the block and reports it with
//! [`MemoryMap::mark_backed`]. Every operation that takes access away
//! (`unmap`, `protect` to `PROT_NONE`, `map` with `fixed` over old mappings,
//! `discard`, shrinking `brk` or `remap`) forgets the backing of that range
//! and returns it as [`Released`] ranges, which the caller must release (a
//! 2 MiB block may be released in parts). A `remap` that moves a mapping
//! returns the backing that moves with it ([`Moved`]).
//!
//! # Protection is partly bookkeeping
//!
//! The caller maps backed memory read-write (and executable when
//! [`Block::exec`] says so). So `PROT_NONE` and unmapped ranges are enforced
//! (their backing is released and a touch faults), but read-only protection
//! is only enforced for the first touch of a page that is not backed yet: a
//! write to a backed read-only page succeeds.
//!
//! # Placement
//!
//! Mappings without `fixed` go to the hint when the hint's range is free,
//! else top-down into the highest free gap of the window `[lo, hi)` given to
//! [`MemoryMap::new`] (as Linux does). Mappings of 2 MiB or more are 2 MiB
//! aligned when such a gap exists, so that they can be backed by 2 MiB
//! blocks. Fixed mappings may lie anywhere in `[MIN_ADDR, USER_END)` except
//! in ranges the caller reserved for itself ([`MemoryMap::reserve`]).
//!
//! The main stack is a fixed-size [`RegionKind::Stack`] region set up by the
//! loader ([`MemoryMap::map_region`]); it does not grow on demand. A
//! [`RegionKind::Guard`] region below it makes an overflow a
//! [`Violation::GuardPage`].

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;

use crate::Errno;

/// Size of a page (order 0 block).
pub const PAGE_SIZE: u64 = 4096;
/// Order of a 2 MiB block.
pub const HUGE_ORDER: u32 = 9;
/// Size of a 2 MiB block.
pub const HUGE_SIZE: u64 = PAGE_SIZE << HUGE_ORDER;
/// Lowest address a program may map (Linux's default `mmap_min_addr`);
/// faults below it are null pointer dereferences.
pub const MIN_ADDR: u64 = 0x1_0000;
/// End of the program's half of the address space (47-bit user space).
pub const USER_END: u64 = 0x8000_0000_0000;

/// Page protection, with Linux's `PROT_*` bits.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Prot(u32);

impl Prot {
    pub const NONE: Prot = Prot(0);
    pub const READ: Prot = Prot(1);
    pub const WRITE: Prot = Prot(2);
    pub const EXEC: Prot = Prot(4);
    pub const READ_WRITE: Prot = Prot(3);

    /// Protection from a system call's `prot` argument; unknown bits
    /// (including `PROT_GROWSDOWN`/`PROT_GROWSUP`) are EINVAL.
    pub fn from_linux(bits: u64) -> Result<Prot, Errno> {
        if bits & !7 != 0 {
            return Err(Errno::EINVAL);
        }
        Ok(Prot(bits as u32))
    }

    pub fn bits(self) -> u32 {
        self.0
    }

    pub fn contains(self, other: Prot) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any access is allowed (x86 cannot deny reads of a present page).
    pub fn accessible(self) -> bool {
        self.0 != 0
    }
}

impl core::ops::BitOr for Prot {
    type Output = Prot;
    fn bitor(self, rhs: Prot) -> Prot {
        Prot(self.0 | rhs.0)
    }
}

impl fmt::Debug for Prot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let flag = |p: Prot, c: char| if self.contains(p) { c } else { '-' };
        write!(
            f,
            "{}{}{}",
            flag(Prot::READ, 'r'),
            flag(Prot::WRITE, 'w'),
            flag(Prot::EXEC, 'x')
        )
    }
}

/// What a region holds; it decides how faults in it are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionKind {
    /// `mmap` of anonymous memory.
    Anonymous,
    /// A loaded program segment.
    Program,
    /// The main thread's stack.
    Stack,
    /// A guard area (usually `PROT_NONE` below a stack).
    Guard,
    /// The `brk` heap.
    Brk,
    /// Used by the caller itself (e.g. the posix-server's own memory): the
    /// program may neither map over, unmap, protect nor fault it in.
    Reserved,
}

/// One region of the address space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub start: u64,
    pub end: u64,
    pub prot: Prot,
    pub kind: RegionKind,
}

/// The access that faulted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    Execute,
}

/// A block of physical memory the caller must attach at `va`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    pub va: u64,
    /// 0 for 4 KiB, [`HUGE_ORDER`] for 2 MiB.
    pub order: u32,
    /// Map it executable: some region in the block has `PROT_EXEC`.
    pub exec: bool,
}

impl Block {
    pub fn size(&self) -> u64 {
        PAGE_SIZE << self.order
    }
}

/// A backed range the caller must release: `pages` 4 KiB pages from `va`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Released {
    pub va: u64,
    pub pages: u64,
}

/// Why a fault is the program's error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    /// Unmapped address below [`MIN_ADDR`].
    NullPage,
    /// Nothing is mapped there (or it is reserved to the caller).
    Unmapped,
    /// A guard area: a `Guard` region, or a `PROT_NONE` region directly
    /// below an accessible one (how thread stacks are guarded).
    GuardPage,
    /// A `PROT_NONE` region that is not a guard.
    NoAccess,
    /// A write to a region without `PROT_WRITE`.
    WriteToReadOnly,
    /// An instruction fetch from a region without `PROT_EXEC`.
    NotExecutable,
}

impl Violation {
    /// The reason as a person reads it in a crash report.
    pub fn reason(self) -> &'static str {
        match self {
            Violation::NullPage => "null pointer dereference",
            Violation::Unmapped => "access to unmapped memory",
            Violation::GuardPage => "stack overflow (guard page)",
            Violation::NoAccess => "access to PROT_NONE memory",
            Violation::WriteToReadOnly => "write to read-only memory",
            Violation::NotExecutable => "execution of non-executable memory",
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

/// What to do about a page fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultAction {
    /// Attach this block, call [`MemoryMap::mark_backed`], resume the thread.
    Back(Block),
    /// The page is backed already (another thread was first): resume.
    Resume,
    /// The program is at fault.
    Violation(Violation),
}

/// The result of a successful `map`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapped {
    pub addr: u64,
    /// Backing of old mappings that `fixed` replaced.
    pub released: Vec<Released>,
}

/// The result of `brk`: the break to return, and backing to release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Brk {
    pub brk: u64,
    pub released: Vec<Released>,
}

/// Backing that `remap` moved: `pages` pages from `from` now belong at `to`.
/// The caller maps the same physical memory at `to` and unmaps it at `from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moved {
    pub from: u64,
    pub to: u64,
    pub pages: u64,
}

/// The result of a successful `remap`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remapped {
    /// Where the mapping is now.
    pub addr: u64,
    /// Backing moved along with a moved mapping.
    pub moved: Vec<Moved>,
    /// Backing of a shrunk tail, to release.
    pub released: Vec<Released>,
}

/// The address space bookkeeping of one process.
#[derive(Debug, Clone)]
pub struct MemoryMap {
    /// Regions by start address; they do not overlap.
    regions: BTreeMap<u64, Region>,
    /// Backed ranges: start -> pages; they do not overlap.
    backed: BTreeMap<u64, u64>,
    window: (u64, u64),
    brk_base: u64,
    brk: u64,
}

fn page_down(a: u64) -> u64 {
    a & !(PAGE_SIZE - 1)
}

fn page_up(a: u64) -> Option<u64> {
    Some(a.checked_add(PAGE_SIZE - 1)? & !(PAGE_SIZE - 1))
}

impl MemoryMap {
    /// An empty map whose `mmap` window is `[lo, hi)`: page aligned and
    /// inside `[MIN_ADDR, USER_END)`, else EINVAL.
    pub fn new(lo: u64, hi: u64) -> Result<MemoryMap, Errno> {
        if !lo.is_multiple_of(PAGE_SIZE)
            || !hi.is_multiple_of(PAGE_SIZE)
            || lo >= hi
            || lo < MIN_ADDR
            || hi > USER_END
        {
            return Err(Errno::EINVAL);
        }
        Ok(MemoryMap {
            regions: BTreeMap::new(),
            backed: BTreeMap::new(),
            window: (lo, hi),
            brk_base: 0,
            brk: 0,
        })
    }

    /// Regions in address order.
    pub fn regions(&self) -> impl Iterator<Item = &Region> {
        self.regions.values()
    }

    /// The region holding `addr`.
    pub fn region_at(&self, addr: u64) -> Option<&Region> {
        self.regions
            .range(..=addr)
            .next_back()
            .map(|(_, r)| r)
            .filter(|r| addr < r.end)
    }

    /// Number of backed 4 KiB pages.
    pub fn backed_pages(&self) -> u64 {
        self.backed.values().sum()
    }

    /// Backed ranges in address order (`Released` shape: start and pages).
    pub fn backed(&self) -> impl Iterator<Item = Released> + '_ {
        self.backed
            .iter()
            .map(|(&va, &pages)| Released { va, pages })
    }

    /// Whether the page holding `addr` is backed.
    pub fn is_backed(&self, addr: u64) -> bool {
        self.backed
            .range(..=addr)
            .next_back()
            .is_some_and(|(&va, &pages)| addr < va + pages * PAGE_SIZE)
    }

    /// Marks `[start, start+len)` as the caller's own (see
    /// [`RegionKind::Reserved`]). EINVAL if unaligned or outside user space,
    /// EEXIST if it overlaps a region.
    pub fn reserve(&mut self, start: u64, len: u64) -> Result<(), Errno> {
        let end = self.checked_range(start, len)?;
        if self.overlaps(start, end) {
            return Err(Errno::EEXIST);
        }
        self.insert(Region {
            start,
            end,
            prot: Prot::NONE,
            kind: RegionKind::Reserved,
        });
        Ok(())
    }

    /// Sets up a region at a fixed place, for the program loader: program
    /// segments, the stack and its guard. Replaces what was there (not
    /// reserved ranges: ENOMEM) and returns its backing to release.
    pub fn map_region(
        &mut self,
        start: u64,
        len: u64,
        prot: Prot,
        kind: RegionKind,
    ) -> Result<Vec<Released>, Errno> {
        let len = page_up(len).ok_or(Errno::ENOMEM)?;
        let end = self.checked_range(start, len)?;
        if self.overlaps_reserved(start, end) {
            return Err(Errno::ENOMEM);
        }
        let released = self.remove_range(start, end);
        self.insert(Region {
            start,
            end,
            prot,
            kind,
        });
        Ok(released)
    }

    /// `mmap` of anonymous memory: `len` is rounded up to pages. With
    /// `fixed`, `hint` must be page aligned and the mapping replaces what was
    /// there; without, `hint` is only a wish (see the module docs).
    ///
    /// Errors as Linux: EINVAL for `len == 0` or an unaligned fixed address,
    /// ENOMEM when no gap fits, the length overflows or a fixed range leaves
    /// user space (or touches a reserved range), EPERM for a fixed address
    /// below [`MIN_ADDR`].
    pub fn map(&mut self, hint: u64, len: u64, prot: Prot, fixed: bool) -> Result<Mapped, Errno> {
        if len == 0 {
            return Err(Errno::EINVAL);
        }
        let len = page_up(len).ok_or(Errno::ENOMEM)?;
        if fixed {
            if !hint.is_multiple_of(PAGE_SIZE) {
                return Err(Errno::EINVAL);
            }
            if hint < MIN_ADDR {
                return Err(Errno::EPERM);
            }
            let end = hint
                .checked_add(len)
                .filter(|&e| e <= USER_END)
                .ok_or(Errno::ENOMEM)?;
            if self.overlaps_reserved(hint, end) {
                return Err(Errno::ENOMEM);
            }
            let released = self.remove_range(hint, end);
            self.insert(Region {
                start: hint,
                end,
                prot,
                kind: RegionKind::Anonymous,
            });
            return Ok(Mapped {
                addr: hint,
                released,
            });
        }
        let addr = self.place(hint, len).ok_or(Errno::ENOMEM)?;
        self.insert(Region {
            start: addr,
            end: addr + len,
            prot,
            kind: RegionKind::Anonymous,
        });
        Ok(Mapped {
            addr,
            released: Vec::new(),
        })
    }

    /// `munmap`: removes every mapping in the range (holes are fine).
    /// EINVAL for an unaligned address, `len == 0`, a range leaving user
    /// space, or one touching a reserved range.
    pub fn unmap(&mut self, addr: u64, len: u64) -> Result<Vec<Released>, Errno> {
        if len == 0 || !addr.is_multiple_of(PAGE_SIZE) {
            return Err(Errno::EINVAL);
        }
        let len = page_up(len).ok_or(Errno::EINVAL)?;
        let end = addr
            .checked_add(len)
            .filter(|&e| e <= USER_END)
            .ok_or(Errno::EINVAL)?;
        if self.overlaps_reserved(addr, end) {
            return Err(Errno::EINVAL);
        }
        Ok(self.remove_range(addr, end))
    }

    /// `mprotect`: the whole range must be mapped (ENOMEM otherwise, also for
    /// reserved ranges); EINVAL for an unaligned address. Protecting to
    /// `PROT_NONE` releases the backing.
    pub fn protect(&mut self, addr: u64, len: u64, prot: Prot) -> Result<Vec<Released>, Errno> {
        if !addr.is_multiple_of(PAGE_SIZE) {
            return Err(Errno::EINVAL);
        }
        if len == 0 {
            return Ok(Vec::new());
        }
        let len = page_up(len).ok_or(Errno::ENOMEM)?;
        let end = addr.checked_add(len).ok_or(Errno::ENOMEM)?;
        if !self.covered(addr, end, |r| r.kind != RegionKind::Reserved) {
            return Err(Errno::ENOMEM);
        }
        self.split_at(addr);
        self.split_at(end);
        let starts: Vec<u64> = self.regions.range(addr..end).map(|(&s, _)| s).collect();
        for s in starts {
            if let Some(r) = self.regions.get_mut(&s) {
                r.prot = prot;
            }
        }
        self.coalesce(addr, end);
        if prot.accessible() {
            Ok(Vec::new())
        } else {
            Ok(self.release(addr, end))
        }
    }

    /// `mremap(old, old_len, new_len, flags)` without `MREMAP_FIXED`:
    /// shrinks in place (releasing the tail), grows in place when the pages
    /// after the mapping are free, else moves it if `may_move` (keeping its
    /// offset within 2 MiB, so that 2 MiB blocks stay aligned) and reports
    /// the backing that moves.
    ///
    /// Errors as Linux: EINVAL for an unaligned `old`, `old_len == 0` or
    /// `new_len == 0`; EFAULT if the old range is not inside one mapped
    /// region (or is reserved); ENOMEM if it cannot grow in place and may
    /// not move, or no gap fits.
    pub fn remap(
        &mut self,
        old: u64,
        old_len: u64,
        new_len: u64,
        may_move: bool,
    ) -> Result<Remapped, Errno> {
        if !old.is_multiple_of(PAGE_SIZE) || old_len == 0 || new_len == 0 {
            return Err(Errno::EINVAL);
        }
        let old_len = page_up(old_len).ok_or(Errno::EINVAL)?;
        let new_len = page_up(new_len).ok_or(Errno::ENOMEM)?;
        let old_end = old.checked_add(old_len).ok_or(Errno::EFAULT)?;
        let region = *self.region_at(old).ok_or(Errno::EFAULT)?;
        if region.end < old_end || region.kind == RegionKind::Reserved {
            return Err(Errno::EFAULT);
        }
        let unchanged = |addr| Remapped {
            addr,
            moved: Vec::new(),
            released: Vec::new(),
        };
        if new_len <= old_len {
            let released = self.remove_range(old + new_len, old_end);
            return Ok(Remapped {
                released,
                ..unchanged(old)
            });
        }
        let grown_end = old.checked_add(new_len).filter(|&e| e <= USER_END);
        if let Some(grown_end) = grown_end {
            if !self.overlaps(old_end, grown_end) {
                self.insert(Region {
                    start: old_end,
                    end: grown_end,
                    ..region
                });
                return Ok(unchanged(old));
            }
        }
        if !may_move {
            return Err(Errno::ENOMEM);
        }
        let offset = old & (HUGE_SIZE - 1);
        let to = new_len
            .checked_add(offset)
            .and_then(|padded| self.top_down(padded, HUGE_SIZE))
            .map(|a| a + offset)
            .or_else(|| self.top_down(new_len, PAGE_SIZE))
            .ok_or(Errno::ENOMEM)?;
        // Take the backing along, then drop the old regions.
        let moved: Vec<Moved> = self
            .release(old, old_end)
            .into_iter()
            .map(|r| Moved {
                from: r.va,
                to: r.va - old + to,
                pages: r.pages,
            })
            .collect();
        self.remove_range(old, old_end);
        for m in &moved {
            self.backed.insert(m.to, m.pages);
        }
        self.insert(Region {
            start: to,
            end: to + new_len,
            ..region
        });
        Ok(Remapped {
            moved,
            ..unchanged(to)
        })
    }

    /// `madvise(MADV_DONTNEED)`: forgets the backing of the range (the next
    /// touch sees zeroes) and keeps the mappings. EINVAL if unaligned.
    pub fn discard(&mut self, addr: u64, len: u64) -> Result<Vec<Released>, Errno> {
        if !addr.is_multiple_of(PAGE_SIZE) {
            return Err(Errno::EINVAL);
        }
        let len = page_up(len).ok_or(Errno::EINVAL)?;
        let end = addr.checked_add(len).ok_or(Errno::EINVAL)?;
        Ok(self.release(addr, end))
    }

    /// Places the `brk` area right after the program: its start is
    /// `program_end` rounded up to a page.
    pub fn set_brk_base(&mut self, program_end: u64) -> Result<(), Errno> {
        let base = page_up(program_end).ok_or(Errno::EINVAL)?;
        self.brk_base = base;
        self.brk = base;
        Ok(())
    }

    /// `brk(new_end)`: moves the break if the area can grow there (not into
    /// another mapping) or shrink (not below its start), and returns the
    /// break in effect: the new one, or the old one on failure — Linux's
    /// convention, which also makes `brk(0)` a query.
    pub fn brk(&mut self, new_end: u64) -> Brk {
        let unchanged = Brk {
            brk: self.brk,
            released: Vec::new(),
        };
        if self.brk_base == 0 || new_end < self.brk_base || new_end > USER_END {
            return unchanged;
        }
        let (Some(old_top), Some(new_top)) = (page_up(self.brk), page_up(new_end)) else {
            return unchanged;
        };
        let mut released = Vec::new();
        if new_top > old_top {
            if self.overlaps(old_top, new_top) {
                return unchanged;
            }
            self.insert(Region {
                start: old_top,
                end: new_top,
                prot: Prot::READ_WRITE,
                kind: RegionKind::Brk,
            });
        } else if new_top < old_top {
            released = self.remove_range(new_top, old_top);
        }
        self.brk = new_end;
        Brk {
            brk: new_end,
            released,
        }
    }

    /// Classifies a page fault at `addr`.
    pub fn fault(&self, addr: u64, access: Access) -> FaultAction {
        if self.is_backed(addr) {
            return FaultAction::Resume;
        }
        let Some(region) = self.region_at(addr) else {
            let v = if addr < MIN_ADDR {
                Violation::NullPage
            } else {
                Violation::Unmapped
            };
            return FaultAction::Violation(v);
        };
        if let Some(v) = self.violation(region, access) {
            return FaultAction::Violation(v);
        }
        FaultAction::Back(self.block_for(page_down(addr)))
    }

    /// Records that the caller attached a block at `va` of `order` (0 or 9,
    /// aligned). EINVAL for a bad order or alignment, EEXIST if part of it
    /// is backed already.
    pub fn mark_backed(&mut self, va: u64, order: u32) -> Result<(), Errno> {
        if order != 0 && order != HUGE_ORDER {
            return Err(Errno::EINVAL);
        }
        let size = PAGE_SIZE << order;
        if !va.is_multiple_of(size) || va.checked_add(size).is_none_or(|e| e > USER_END) {
            return Err(Errno::EINVAL);
        }
        if self.backed_overlaps(va, va + size) {
            return Err(Errno::EEXIST);
        }
        self.backed.insert(va, size / PAGE_SIZE);
        Ok(())
    }

    /// The blocks the caller must attach before it touches the user buffer
    /// `[addr, addr+len)` (for writing if `write`), in address order. EFAULT
    /// if any part is unmapped, reserved, `PROT_NONE`, or read-only while
    /// `write`.
    pub fn ensure(&self, addr: u64, len: u64, write: bool) -> Result<Vec<Block>, Errno> {
        let mut blocks = Vec::new();
        if len == 0 {
            return Ok(blocks);
        }
        let end = addr
            .checked_add(len)
            .and_then(page_up)
            .ok_or(Errno::EFAULT)?;
        let access = if write { Access::Write } else { Access::Read };
        let mut page = page_down(addr);
        while page < end {
            let region = self.region_at(page).ok_or(Errno::EFAULT)?;
            if self.violation(region, access).is_some() {
                return Err(Errno::EFAULT);
            }
            // Walk the region: skip backed ranges, choose blocks for the rest.
            let stop = region.end.min(end);
            while page < stop {
                if let Some((&va, &pages)) = self.backed.range(..=page).next_back() {
                    let backed_end = va + pages * PAGE_SIZE;
                    if page < backed_end {
                        page = backed_end;
                        continue;
                    }
                }
                let block = self.block_for(page);
                page = block.va + block.size();
                blocks.push(block);
            }
        }
        Ok(blocks)
    }

    /// Forgets all backing and returns it (the process ends).
    pub fn release_all(&mut self) -> Vec<Released> {
        let all = self.backed().collect();
        self.backed.clear();
        all
    }

    // ---- internals ----

    fn checked_range(&self, start: u64, len: u64) -> Result<u64, Errno> {
        if !start.is_multiple_of(PAGE_SIZE)
            || !len.is_multiple_of(PAGE_SIZE)
            || len == 0
            || start < MIN_ADDR
        {
            return Err(Errno::EINVAL);
        }
        start
            .checked_add(len)
            .filter(|&e| e <= USER_END)
            .ok_or(Errno::EINVAL)
    }

    fn violation(&self, region: &Region, access: Access) -> Option<Violation> {
        if region.kind == RegionKind::Reserved {
            return Some(Violation::Unmapped);
        }
        if !region.prot.accessible() {
            let below_accessible = self
                .regions
                .get(&region.end)
                .is_some_and(|above| above.prot.accessible() && above.kind != RegionKind::Reserved);
            return Some(if region.kind == RegionKind::Guard || below_accessible {
                Violation::GuardPage
            } else {
                Violation::NoAccess
            });
        }
        match access {
            Access::Write if !region.prot.contains(Prot::WRITE) => Some(Violation::WriteToReadOnly),
            Access::Execute if !region.prot.contains(Prot::EXEC) => Some(Violation::NotExecutable),
            _ => None,
        }
    }

    /// The block to back for the unbacked, accessible `page`.
    fn block_for(&self, page: u64) -> Block {
        let huge = page & !(HUGE_SIZE - 1);
        let huge_end = huge + HUGE_SIZE;
        if huge_end <= USER_END
            && !self.backed_overlaps(huge, huge_end)
            && self.covered(huge, huge_end, |r| {
                r.prot.accessible() && r.kind != RegionKind::Reserved
            })
        {
            return Block {
                va: huge,
                order: HUGE_ORDER,
                exec: self.any_exec(huge, huge_end),
            };
        }
        Block {
            va: page,
            order: 0,
            exec: self.any_exec(page, page + PAGE_SIZE),
        }
    }

    fn any_exec(&self, start: u64, end: u64) -> bool {
        self.overlapping(start, end)
            .any(|r| r.prot.contains(Prot::EXEC))
    }

    /// Regions overlapping `[start, end)`, in order.
    fn overlapping(&self, start: u64, end: u64) -> impl Iterator<Item = &Region> {
        let first = self
            .regions
            .range(..=start)
            .next_back()
            .filter(|(_, r)| r.end > start)
            .map(|(&s, _)| s)
            .unwrap_or(start);
        self.regions.range(first..end).map(|(_, r)| r)
    }

    fn overlaps(&self, start: u64, end: u64) -> bool {
        self.overlapping(start, end).next().is_some()
    }

    fn overlaps_reserved(&self, start: u64, end: u64) -> bool {
        self.overlapping(start, end)
            .any(|r| r.kind == RegionKind::Reserved)
    }

    /// Whether `[start, end)` is covered by regions without gaps, all
    /// satisfying `ok`.
    fn covered(&self, start: u64, end: u64, ok: impl Fn(&Region) -> bool) -> bool {
        let mut at = start;
        for r in self.overlapping(start, end) {
            if r.start > at || !ok(r) {
                return false;
            }
            at = r.end;
            if at >= end {
                return true;
            }
        }
        at >= end
    }

    fn backed_overlaps(&self, start: u64, end: u64) -> bool {
        if let Some((&va, &pages)) = self.backed.range(..start).next_back() {
            if va + pages * PAGE_SIZE > start {
                return true;
            }
        }
        self.backed.range(start..end).next().is_some()
    }

    /// A free, page-aligned place for `len` bytes.
    fn place(&self, hint: u64, len: u64) -> Option<u64> {
        if hint != 0 {
            let start = page_up(hint)?;
            if let Some(end) = start.checked_add(len) {
                if start >= MIN_ADDR && end <= USER_END && !self.overlaps(start, end) {
                    return Some(start);
                }
            }
        }
        if len >= HUGE_SIZE {
            if let Some(a) = self.top_down(len, HUGE_SIZE) {
                return Some(a);
            }
        }
        self.top_down(len, PAGE_SIZE)
    }

    /// The highest `align`-aligned gap of `len` bytes in the window.
    fn top_down(&self, len: u64, align: u64) -> Option<u64> {
        let (lo, hi) = self.window;
        let mut gap_end = hi;
        let fits = |gap_start: u64, gap_end: u64| -> Option<u64> {
            let a = gap_end.checked_sub(len)? & !(align - 1);
            (a >= gap_start).then_some(a)
        };
        for r in self.regions.range(..hi).rev().map(|(_, r)| r) {
            if r.end <= lo {
                break;
            }
            if r.end < gap_end {
                if let Some(a) = fits(r.end.max(lo), gap_end) {
                    return Some(a);
                }
            }
            gap_end = gap_end.min(r.start);
            if gap_end <= lo {
                return None;
            }
        }
        fits(lo, gap_end)
    }

    /// Splits the region holding `addr` (strictly inside) in two.
    fn split_at(&mut self, addr: u64) {
        let Some((&start, r)) = self.regions.range_mut(..addr).next_back() else {
            return;
        };
        if r.end > addr {
            let upper = Region { start: addr, ..*r };
            r.end = addr;
            debug_assert!(start < addr);
            self.regions.insert(addr, upper);
        }
    }

    /// Removes all regions in `[start, end)` (splitting those that straddle)
    /// and releases the range's backing.
    fn remove_range(&mut self, start: u64, end: u64) -> Vec<Released> {
        self.split_at(start);
        self.split_at(end);
        let starts: Vec<u64> = self.regions.range(start..end).map(|(&s, _)| s).collect();
        for s in starts {
            self.regions.remove(&s);
        }
        self.release(start, end)
    }

    /// Inserts a region into a free range and merges it with equal neighbours.
    fn insert(&mut self, region: Region) {
        debug_assert!(!self.overlaps(region.start, region.end));
        self.regions.insert(region.start, region);
        self.coalesce(region.start, region.end);
    }

    /// Merges equal adjacent regions in and around `[start, end)`.
    fn coalesce(&mut self, start: u64, end: u64) {
        let mut at = self
            .regions
            .range(..start)
            .next_back()
            .map_or(start, |(&s, _)| s);
        while let Some((&s, &cur)) = self.regions.range(at..).next() {
            if s >= end {
                return;
            }
            match self.regions.get(&cur.end).copied() {
                Some(next) if next.prot == cur.prot && next.kind == cur.kind => {
                    self.regions.remove(&next.start);
                    if let Some(c) = self.regions.get_mut(&s) {
                        c.end = next.end;
                    }
                    at = s;
                }
                _ => at = cur.end,
            }
        }
    }

    /// Forgets the backing inside `[start, end)`, splitting blocks that
    /// straddle the bounds, and returns the forgotten ranges.
    fn release(&mut self, start: u64, end: u64) -> Vec<Released> {
        let mut out = Vec::new();
        let mut first = start;
        if let Some((&va, &pages)) = self.backed.range(..start).next_back() {
            if va + pages * PAGE_SIZE > start {
                first = va;
            }
        }
        let hit: Vec<(u64, u64)> = self
            .backed
            .range(first..end)
            .map(|(&v, &p)| (v, p))
            .collect();
        for (va, pages) in hit {
            let b_end = va + pages * PAGE_SIZE;
            self.backed.remove(&va);
            if va < start {
                self.backed.insert(va, (start - va) / PAGE_SIZE);
            }
            if b_end > end {
                self.backed.insert(end, (b_end - end) / PAGE_SIZE);
            }
            let r_start = va.max(start);
            let r_end = b_end.min(end);
            out.push(Released {
                va: r_start,
                pages: (r_end - r_start) / PAGE_SIZE,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    const LO: u64 = 0x10_0000_0000;
    const HI: u64 = 0x20_0000_0000;
    const MB2: u64 = HUGE_SIZE;

    fn map() -> MemoryMap {
        MemoryMap::new(LO, HI).unwrap()
    }

    fn rw() -> Prot {
        Prot::READ_WRITE
    }

    fn back(m: &mut MemoryMap, addr: u64, access: Access) -> Block {
        match m.fault(addr, access) {
            FaultAction::Back(b) => {
                m.mark_backed(b.va, b.order).unwrap();
                b
            }
            other => panic!("fault at {addr:#x}: {other:?}"),
        }
    }

    #[test]
    fn window_must_be_sane() {
        assert_eq!(MemoryMap::new(LO + 1, HI).unwrap_err(), Errno::EINVAL);
        assert_eq!(MemoryMap::new(HI, LO).unwrap_err(), Errno::EINVAL);
        assert_eq!(MemoryMap::new(0, HI).unwrap_err(), Errno::EINVAL);
        assert_eq!(
            MemoryMap::new(LO, USER_END + PAGE_SIZE).unwrap_err(),
            Errno::EINVAL
        );
    }

    #[test]
    fn mmap_goes_top_down_and_rounds_to_pages() {
        let mut m = map();
        let a = m.map(0, 100, rw(), false).unwrap();
        assert_eq!(a.addr, HI - PAGE_SIZE);
        assert!(a.released.is_empty());
        let b = m.map(0, 3 * PAGE_SIZE, Prot::READ, false).unwrap();
        assert_eq!(b.addr, HI - 4 * PAGE_SIZE);
        // Different protections stay separate regions.
        assert_eq!(m.regions().count(), 2);
        // Equal neighbours merge.
        let c = m.map(0, PAGE_SIZE, Prot::READ, false).unwrap();
        assert_eq!(c.addr, HI - 5 * PAGE_SIZE);
        assert_eq!(m.regions().count(), 2);
        assert_eq!(
            m.region_at(c.addr).copied(),
            Some(Region {
                start: c.addr,
                end: HI - PAGE_SIZE,
                prot: Prot::READ,
                kind: RegionKind::Anonymous
            })
        );
    }

    #[test]
    fn large_mappings_are_2mib_aligned() {
        let mut m = map();
        m.map(0, PAGE_SIZE, rw(), false).unwrap();
        let big = m.map(0, 3 * MB2, rw(), false).unwrap().addr;
        assert_eq!(big % MB2, 0);
        assert!(big + 3 * MB2 <= HI - PAGE_SIZE);
    }

    #[test]
    fn mmap_errors_as_linux() {
        let mut m = map();
        assert_eq!(m.map(0, 0, rw(), false), Err(Errno::EINVAL));
        assert_eq!(m.map(LO + 1, PAGE_SIZE, rw(), true), Err(Errno::EINVAL));
        assert_eq!(m.map(0x1000, PAGE_SIZE, rw(), true), Err(Errno::EPERM));
        assert_eq!(
            m.map(USER_END - PAGE_SIZE, 2 * PAGE_SIZE, rw(), true),
            Err(Errno::ENOMEM)
        );
        assert_eq!(m.map(0, u64::MAX, rw(), false), Err(Errno::ENOMEM));
        assert_eq!(
            m.map(0, HI - LO + PAGE_SIZE, rw(), false),
            Err(Errno::ENOMEM)
        );
        // The whole window fits exactly once.
        assert_eq!(m.map(0, HI - LO, rw(), false).unwrap().addr, LO);
        assert_eq!(m.map(0, PAGE_SIZE, rw(), false), Err(Errno::ENOMEM));
    }

    #[test]
    fn hint_is_used_when_free() {
        let mut m = map();
        let want = 0x5000_0000;
        assert_eq!(m.map(want, PAGE_SIZE, rw(), false).unwrap().addr, want);
        // Taken now: the hint is ignored, the window is used.
        assert_eq!(
            m.map(want, PAGE_SIZE, rw(), false).unwrap().addr,
            HI - PAGE_SIZE
        );
    }

    #[test]
    fn first_fit_from_the_top_reuses_holes() {
        let mut m = map();
        let a = m.map(0, 4 * PAGE_SIZE, rw(), false).unwrap().addr;
        m.unmap(a + PAGE_SIZE, 2 * PAGE_SIZE).unwrap();
        assert_eq!(m.regions().count(), 2);
        assert_eq!(
            m.map(0, 2 * PAGE_SIZE, Prot::READ, false).unwrap().addr,
            a + PAGE_SIZE
        );
        // A hole too small is skipped.
        m.unmap(a + PAGE_SIZE, PAGE_SIZE).unwrap();
        assert_eq!(
            m.map(0, 2 * PAGE_SIZE, rw(), false).unwrap().addr,
            a - 2 * PAGE_SIZE
        );
    }

    #[test]
    fn fault_chooses_2mib_when_the_block_is_accessible_and_unbacked() {
        let mut m = map();
        let a = m.map(0, 4 * MB2, rw(), false).unwrap().addr;
        let b = back(&mut m, a + MB2 + 0x1234, Access::Write);
        assert_eq!(
            b,
            Block {
                va: a + MB2,
                order: HUGE_ORDER,
                exec: false
            }
        );
        assert_eq!(
            m.fault(a + MB2 + 0x10_0000, Access::Read),
            FaultAction::Resume
        );
        assert_eq!(m.backed_pages(), 512);
        // A page backed inside a 2 MiB block forces 4 KiB for the rest of it.
        m.mark_backed(a + 5 * PAGE_SIZE, 0).unwrap();
        let b = back(&mut m, a, Access::Read);
        assert_eq!(
            b,
            Block {
                va: a,
                order: 0,
                exec: false
            }
        );
    }

    #[test]
    fn fault_chooses_4kib_when_the_block_is_partly_unmapped_or_guarded() {
        let mut m = map();
        let a = m.map(0, 2 * MB2, rw(), false).unwrap().addr;
        m.protect(a + MB2 + 8 * PAGE_SIZE, PAGE_SIZE, Prot::NONE)
            .unwrap();
        let b = back(&mut m, a + MB2, Access::Read);
        assert_eq!(b.order, 0);
        m.unmap(a + 100 * PAGE_SIZE, PAGE_SIZE).unwrap();
        assert_eq!(back(&mut m, a, Access::Read).order, 0);
        // A 2 MiB block spanning two adjacent regions of different
        // protection is still one block; exec if any part is executable.
        let c = m.map(0, MB2, rw(), false).unwrap().addr;
        assert_eq!(c % MB2, 0);
        m.protect(c, PAGE_SIZE, Prot::READ | Prot::EXEC).unwrap();
        let b = back(&mut m, c + MB2 - 1, Access::Write);
        assert_eq!(
            b,
            Block {
                va: c,
                order: HUGE_ORDER,
                exec: true
            }
        );
    }

    #[test]
    fn violations_are_named() {
        let mut m = map();
        assert_eq!(
            m.fault(0, Access::Read),
            FaultAction::Violation(Violation::NullPage)
        );
        assert_eq!(
            m.fault(0x18, Access::Write),
            FaultAction::Violation(Violation::NullPage)
        );
        assert_eq!(
            m.fault(LO, Access::Read),
            FaultAction::Violation(Violation::Unmapped)
        );
        // Main stack with a guard region below.
        let stack_top = 0x7000_0000;
        m.map_region(
            stack_top - 16 * PAGE_SIZE,
            16 * PAGE_SIZE,
            rw(),
            RegionKind::Stack,
        )
        .unwrap();
        m.map_region(
            stack_top - 17 * PAGE_SIZE,
            PAGE_SIZE,
            Prot::NONE,
            RegionKind::Guard,
        )
        .unwrap();
        assert_eq!(
            m.fault(stack_top - 16 * PAGE_SIZE - 8, Access::Write),
            FaultAction::Violation(Violation::GuardPage)
        );
        assert_eq!(Violation::GuardPage.reason(), "stack overflow (guard page)");
        // A thread stack as musl makes it: PROT_NONE, then the upper part RW.
        let t = m.map(0, 9 * PAGE_SIZE, Prot::NONE, false).unwrap().addr;
        m.protect(t + PAGE_SIZE, 8 * PAGE_SIZE, rw()).unwrap();
        assert_eq!(
            m.fault(t + 100, Access::Write),
            FaultAction::Violation(Violation::GuardPage)
        );
        // A PROT_NONE region with nothing above is not a guard.
        let n = m
            .map(0x6000_0000, PAGE_SIZE, Prot::NONE, true)
            .unwrap()
            .addr;
        assert_eq!(
            m.fault(n, Access::Read),
            FaultAction::Violation(Violation::NoAccess)
        );
        // Read-only and non-executable memory.
        let r = m.map(0, PAGE_SIZE, Prot::READ, false).unwrap().addr;
        assert_eq!(
            m.fault(r, Access::Write),
            FaultAction::Violation(Violation::WriteToReadOnly)
        );
        assert_eq!(
            m.fault(r, Access::Execute),
            FaultAction::Violation(Violation::NotExecutable)
        );
        assert!(matches!(m.fault(r, Access::Read), FaultAction::Back(_)));
        // Reserved memory looks unmapped to the program.
        m.reserve(0x8000_0000, PAGE_SIZE).unwrap();
        assert_eq!(
            m.fault(0x8000_0000, Access::Read),
            FaultAction::Violation(Violation::Unmapped)
        );
    }

    #[test]
    fn unmap_returns_backing_and_splits_blocks() {
        let mut m = map();
        let a = m.map(0, MB2, rw(), false).unwrap().addr;
        back(&mut m, a, Access::Write);
        assert_eq!(m.backed_pages(), 512);
        let released = m.unmap(a + 4 * PAGE_SIZE, 2 * PAGE_SIZE).unwrap();
        assert_eq!(
            released,
            vec![Released {
                va: a + 4 * PAGE_SIZE,
                pages: 2
            }]
        );
        assert_eq!(m.backed_pages(), 510);
        assert_eq!(
            m.backed().collect::<Vec<_>>(),
            vec![
                Released { va: a, pages: 4 },
                Released {
                    va: a + 6 * PAGE_SIZE,
                    pages: 506
                }
            ]
        );
        assert_eq!(
            m.fault(a + 4 * PAGE_SIZE, Access::Read),
            FaultAction::Violation(Violation::Unmapped)
        );
        assert_eq!(
            m.fault(a + 3 * PAGE_SIZE, Access::Read),
            FaultAction::Resume
        );
        // Unmapping across a hole and backed pieces releases each piece.
        let released = m.unmap(a, MB2).unwrap();
        assert_eq!(
            released,
            vec![
                Released { va: a, pages: 4 },
                Released {
                    va: a + 6 * PAGE_SIZE,
                    pages: 506
                }
            ]
        );
        assert_eq!(m.backed_pages(), 0);
        assert_eq!(m.regions().count(), 0);
    }

    #[test]
    fn unmap_errors() {
        let mut m = map();
        assert_eq!(m.unmap(LO + 1, PAGE_SIZE), Err(Errno::EINVAL));
        assert_eq!(m.unmap(LO, 0), Err(Errno::EINVAL));
        assert_eq!(
            m.unmap(USER_END - PAGE_SIZE, 2 * PAGE_SIZE),
            Err(Errno::EINVAL)
        );
        // Unmapping nothing is fine.
        assert_eq!(m.unmap(LO, PAGE_SIZE), Ok(vec![]));
        m.reserve(LO, PAGE_SIZE).unwrap();
        assert_eq!(m.unmap(LO, 2 * PAGE_SIZE), Err(Errno::EINVAL));
        assert_eq!(m.map(LO, PAGE_SIZE, rw(), true), Err(Errno::ENOMEM));
        assert_eq!(m.protect(LO, PAGE_SIZE, rw()), Err(Errno::ENOMEM));
        assert_eq!(m.reserve(LO, PAGE_SIZE), Err(Errno::EEXIST));
        // The window never places mappings on reserved ranges.
        let mut m = MemoryMap::new(LO, LO + 2 * PAGE_SIZE).unwrap();
        m.reserve(LO + PAGE_SIZE, PAGE_SIZE).unwrap();
        assert_eq!(m.map(0, PAGE_SIZE, rw(), false).unwrap().addr, LO);
        assert_eq!(m.map(0, PAGE_SIZE, rw(), false), Err(Errno::ENOMEM));
    }

    #[test]
    fn protect_none_releases_and_protect_requires_mapping() {
        let mut m = map();
        let a = m.map(0, 8 * PAGE_SIZE, rw(), false).unwrap().addr;
        for i in 0..8 {
            back(&mut m, a + i * PAGE_SIZE, Access::Write);
        }
        // Read-only keeps the backing (bookkeeping only).
        assert_eq!(m.protect(a, 2 * PAGE_SIZE, Prot::READ), Ok(vec![]));
        assert_eq!(m.backed_pages(), 8);
        assert_eq!(m.regions().count(), 2);
        let released = m
            .protect(a + 2 * PAGE_SIZE, 3 * PAGE_SIZE, Prot::NONE)
            .unwrap();
        assert_eq!(
            released,
            vec![
                Released {
                    va: a + 2 * PAGE_SIZE,
                    pages: 1
                },
                Released {
                    va: a + 3 * PAGE_SIZE,
                    pages: 1
                },
                Released {
                    va: a + 4 * PAGE_SIZE,
                    pages: 1
                },
            ]
        );
        assert_eq!(m.backed_pages(), 5);
        assert_eq!(m.regions().count(), 3);
        // Back to read-write: the regions merge again.
        m.protect(a, 8 * PAGE_SIZE, rw()).unwrap();
        assert_eq!(m.regions().count(), 1);
        assert_eq!(m.protect(a + 1, PAGE_SIZE, rw()), Err(Errno::EINVAL));
        assert_eq!(m.protect(a, 9 * PAGE_SIZE, rw()), Err(Errno::ENOMEM));
        assert_eq!(m.protect(a, 0, rw()), Ok(vec![]));
        assert_eq!(Prot::from_linux(8), Err(Errno::EINVAL));
        assert_eq!(Prot::from_linux(0x0100_0000), Err(Errno::EINVAL));
    }

    #[test]
    fn fixed_map_replaces_and_releases() {
        let mut m = map();
        let a = m.map(0, 4 * PAGE_SIZE, rw(), false).unwrap().addr;
        back(&mut m, a + PAGE_SIZE, Access::Write);
        back(&mut m, a + 3 * PAGE_SIZE, Access::Write);
        let r = m
            .map(a + PAGE_SIZE, 2 * PAGE_SIZE, Prot::READ, true)
            .unwrap();
        assert_eq!(r.addr, a + PAGE_SIZE);
        assert_eq!(
            r.released,
            vec![Released {
                va: a + PAGE_SIZE,
                pages: 1
            }]
        );
        assert_eq!(m.regions().count(), 3);
        assert!(!m.is_backed(a + PAGE_SIZE));
        assert!(m.is_backed(a + 3 * PAGE_SIZE));
    }

    #[test]
    fn ensure_lists_blocks_and_checks_access() {
        let mut m = map();
        let a = m.map(0, 2 * MB2, rw(), false).unwrap().addr;
        // Nothing backed: two 2 MiB blocks for a buffer across them.
        let blocks = m.ensure(a + MB2 - 10, 20, true).unwrap();
        assert_eq!(
            blocks,
            vec![
                Block {
                    va: a,
                    order: HUGE_ORDER,
                    exec: false
                },
                Block {
                    va: a + MB2,
                    order: HUGE_ORDER,
                    exec: false
                },
            ]
        );
        m.mark_backed(a, HUGE_ORDER).unwrap();
        assert_eq!(
            m.ensure(a + MB2 - 10, 20, false).unwrap(),
            vec![Block {
                va: a + MB2,
                order: 9,
                exec: false
            }]
        );
        assert_eq!(m.ensure(a, 10, false).unwrap(), vec![]);
        assert_eq!(m.ensure(a, 0, false).unwrap(), vec![]);
        // Past the end, or into read-only memory for writing: EFAULT.
        assert_eq!(m.ensure(a + 2 * MB2 - 4, 8, false), Err(Errno::EFAULT));
        let r = m.map(0, 2 * PAGE_SIZE, Prot::READ, false).unwrap().addr;
        assert_eq!(m.ensure(r, 8, true), Err(Errno::EFAULT));
        assert_eq!(m.ensure(r, 2 * PAGE_SIZE, false).unwrap().len(), 2);
        assert_eq!(m.ensure(u64::MAX - 4, 8, false), Err(Errno::EFAULT));
        assert_eq!(m.ensure(0, 8, false), Err(Errno::EFAULT));
        // Partly backed 2 MiB ranges give 4 KiB pages for the rest.
        let b = m.map(0, MB2, rw(), false).unwrap().addr;
        m.mark_backed(b + PAGE_SIZE, 0).unwrap();
        let blocks = m.ensure(b, 3 * PAGE_SIZE, false).unwrap();
        assert_eq!(
            blocks,
            vec![
                Block {
                    va: b,
                    order: 0,
                    exec: false
                },
                Block {
                    va: b + 2 * PAGE_SIZE,
                    order: 0,
                    exec: false
                }
            ]
        );
    }

    #[test]
    fn mark_backed_rejects_bad_blocks() {
        let mut m = map();
        assert_eq!(
            m.mark_backed(LO + PAGE_SIZE, HUGE_ORDER),
            Err(Errno::EINVAL)
        );
        assert_eq!(m.mark_backed(LO, 3), Err(Errno::EINVAL));
        m.mark_backed(LO, HUGE_ORDER).unwrap();
        assert_eq!(m.mark_backed(LO + PAGE_SIZE, 0), Err(Errno::EEXIST));
        assert_eq!(m.mark_backed(LO, HUGE_ORDER), Err(Errno::EEXIST));
        m.mark_backed(LO + MB2, 0).unwrap();
        assert_eq!(m.release_all().len(), 2);
        assert_eq!(m.backed_pages(), 0);
    }

    #[test]
    fn discard_forgets_backing_but_keeps_mapping() {
        let mut m = map();
        let a = m.map(0, 4 * PAGE_SIZE, rw(), false).unwrap().addr;
        back(&mut m, a, Access::Write);
        back(&mut m, a + 2 * PAGE_SIZE, Access::Write);
        assert_eq!(
            m.discard(a, 4 * PAGE_SIZE).unwrap(),
            vec![
                Released { va: a, pages: 1 },
                Released {
                    va: a + 2 * PAGE_SIZE,
                    pages: 1
                }
            ]
        );
        assert!(matches!(m.fault(a, Access::Write), FaultAction::Back(_)));
        assert_eq!(m.discard(a + 1, PAGE_SIZE), Err(Errno::EINVAL));
    }

    #[test]
    fn brk_grows_shrinks_and_stops_at_mappings() {
        let mut m = map();
        assert_eq!(m.brk(0).brk, 0, "no brk area before set_brk_base");
        let end = 0x40_1234;
        m.set_brk_base(end).unwrap();
        let base = 0x40_2000;
        assert_eq!(m.brk(0).brk, base);
        assert_eq!(m.brk(base + 10).brk, base + 10);
        assert_eq!(
            m.region_at(base).map(|r| (r.end, r.kind)),
            Some((base + PAGE_SIZE, RegionKind::Brk))
        );
        let top = base + 5 * PAGE_SIZE + 1;
        assert_eq!(m.brk(top).brk, top);
        back(&mut m, base + 5 * PAGE_SIZE, Access::Write);
        // Shrinking releases what lies above the new break.
        let shrunk = m.brk(base + PAGE_SIZE);
        assert_eq!(shrunk.brk, base + PAGE_SIZE);
        assert_eq!(
            shrunk.released,
            vec![Released {
                va: base + 5 * PAGE_SIZE,
                pages: 1
            }]
        );
        assert_eq!(
            m.fault(base + 2 * PAGE_SIZE, Access::Read),
            FaultAction::Violation(Violation::Unmapped)
        );
        // Below the base or into another mapping: unchanged.
        assert_eq!(m.brk(base - 1).brk, base + PAGE_SIZE);
        m.map(base + 4 * PAGE_SIZE, PAGE_SIZE, rw(), true).unwrap();
        assert_eq!(m.brk(base + 8 * PAGE_SIZE).brk, base + PAGE_SIZE);
        assert_eq!(m.brk(base + 4 * PAGE_SIZE).brk, base + 4 * PAGE_SIZE);
    }

    #[test]
    fn program_regions_and_stack_setup() {
        let mut m = map();
        m.map_region(
            0x40_0000,
            0x1800,
            Prot::READ | Prot::EXEC,
            RegionKind::Program,
        )
        .unwrap();
        m.map_region(0x40_2000, 0x1000, rw(), RegionKind::Program)
            .unwrap();
        assert_eq!(m.region_at(0x40_1fff).map(|r| r.end), Some(0x40_2000));
        assert_eq!(
            m.map_region(0x40_0001, 1, rw(), RegionKind::Program),
            Err(Errno::EINVAL)
        );
        let b = back(&mut m, 0x40_0000, Access::Execute);
        assert_eq!(
            b,
            Block {
                va: 0x40_0000,
                order: 0,
                exec: true
            }
        );
    }

    #[test]
    fn remap_shrinks_grows_and_moves() {
        let mut m = map();
        let a = m.map(0, 4 * PAGE_SIZE, rw(), false).unwrap().addr;
        back(&mut m, a + 3 * PAGE_SIZE, Access::Write);
        // Shrink in place: the tail's backing is released.
        let r = m.remap(a, 4 * PAGE_SIZE, 2 * PAGE_SIZE, false).unwrap();
        assert_eq!(r.addr, a);
        assert_eq!(
            r.released,
            vec![Released {
                va: a + 3 * PAGE_SIZE,
                pages: 1
            }]
        );
        // Grow in place into the freed pages.
        let r = m.remap(a, 2 * PAGE_SIZE, 4 * PAGE_SIZE, false).unwrap();
        assert_eq!((r.addr, r.moved.len()), (a, 0));
        assert_eq!(m.region_at(a).map(|r| r.end), Some(a + 4 * PAGE_SIZE));
        // Blocked above: ENOMEM unless it may move.
        let below = m.map(0, PAGE_SIZE, rw(), false).unwrap().addr;
        assert_eq!(below, a - PAGE_SIZE);
        back(&mut m, below, Access::Write);
        assert_eq!(
            m.remap(below, PAGE_SIZE, 2 * PAGE_SIZE, false),
            Err(Errno::ENOMEM)
        );
        let r = m.remap(below, PAGE_SIZE, 3 * PAGE_SIZE, true).unwrap();
        assert_ne!(r.addr, below);
        assert_eq!(r.addr % MB2, below % MB2, "the offset within 2 MiB is kept");
        assert_eq!(
            r.moved,
            vec![Moved {
                from: below,
                to: r.addr,
                pages: 1
            }]
        );
        assert!(m.is_backed(r.addr));
        assert!(!m.is_backed(below));
        assert_eq!(
            m.fault(below, Access::Read),
            FaultAction::Violation(Violation::Unmapped)
        );
        assert_eq!(
            m.region_at(r.addr + 2 * PAGE_SIZE).map(|x| x.prot),
            Some(rw())
        );
        // Errors.
        assert_eq!(
            m.remap(a + 1, PAGE_SIZE, PAGE_SIZE, true),
            Err(Errno::EINVAL)
        );
        assert_eq!(m.remap(a, 0, PAGE_SIZE, true), Err(Errno::EINVAL));
        assert_eq!(m.remap(a, PAGE_SIZE, 0, true), Err(Errno::EINVAL));
        assert_eq!(
            m.remap(a, 5 * PAGE_SIZE, 6 * PAGE_SIZE, true),
            Err(Errno::EFAULT)
        );
        assert_eq!(
            m.remap(LO, PAGE_SIZE, 2 * PAGE_SIZE, true),
            Err(Errno::EFAULT)
        );
    }

    #[test]
    fn remap_probe_of_the_main_stack_ends() {
        // musl's pthread_getattr_np probes the main stack downwards with
        // mremap(p, 4K, 8K, 0) while it fails with ENOMEM; it must end.
        let mut m = map();
        let top = 0x7000_0000;
        m.map_region(top - 8 * PAGE_SIZE, 8 * PAGE_SIZE, rw(), RegionKind::Stack)
            .unwrap();
        m.map_region(
            top - 9 * PAGE_SIZE,
            PAGE_SIZE,
            Prot::NONE,
            RegionKind::Guard,
        )
        .unwrap();
        let mut l = PAGE_SIZE;
        while m.remap(top - l - PAGE_SIZE, PAGE_SIZE, 2 * PAGE_SIZE, false) == Err(Errno::ENOMEM) {
            l += PAGE_SIZE;
        }
        assert_eq!(l, 9 * PAGE_SIZE);
    }

    /// Random operations against a page-by-page model of the same address
    /// space: regions, protections and backing must always agree.
    #[test]
    fn random_operations_match_a_page_model() {
        const PAGES: usize = 4 * 512;
        let base = 0x4000_0000u64;
        let page_va = |i: usize| base + i as u64 * PAGE_SIZE;
        let mut m = MemoryMap::new(base, base + PAGES as u64 * PAGE_SIZE).unwrap();
        // Per page: protection if mapped, and whether it is backed.
        let mut prot: Vec<Option<Prot>> = vec![None; PAGES];
        let mut backed = vec![false; PAGES];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let prots = [Prot::NONE, Prot::READ, rw(), Prot::READ | Prot::EXEC];
        let released_pages = |rel: &[Released]| -> Vec<usize> {
            let mut pages = Vec::new();
            for r in rel {
                for k in 0..r.pages {
                    pages.push(((r.va - base) / PAGE_SIZE + k) as usize);
                }
            }
            pages.sort();
            pages
        };
        for step in 0..3000 {
            let first = rand(PAGES);
            let max_len = if rand(4) == 0 { 700 } else { 40 };
            let len = 1 + rand(max_len);
            let end = (first + len).min(PAGES);
            let p = prots[rand(prots.len())];
            let expect_released =
                |backed: &[bool]| (first..end).filter(|&i| backed[i]).collect::<Vec<_>>();
            match rand(6) {
                0 => {
                    let got = m
                        .map(page_va(first), (end - first) as u64 * PAGE_SIZE, p, true)
                        .unwrap();
                    assert_eq!(
                        released_pages(&got.released),
                        expect_released(&backed),
                        "step {step}"
                    );
                    for i in first..end {
                        prot[i] = Some(p);
                        backed[i] = false;
                    }
                }
                1 => {
                    if let Ok(got) = m.map(0, len as u64 * PAGE_SIZE, p, false) {
                        let at = ((got.addr - base) / PAGE_SIZE) as usize;
                        assert!(at + len <= PAGES);
                        assert!(
                            prot[at..at + len].iter().all(Option::is_none),
                            "step {step}: placed on a mapping"
                        );
                        prot[at..at + len].fill(Some(p));
                    } else {
                        // ENOMEM only if no gap of that size exists.
                        let fits = prot.windows(len).any(|w| w.iter().all(Option::is_none));
                        assert!(!fits, "step {step}: a gap of {len} pages was free");
                    }
                }
                2 => {
                    let got = m
                        .unmap(page_va(first), (end - first) as u64 * PAGE_SIZE)
                        .unwrap();
                    assert_eq!(
                        released_pages(&got),
                        expect_released(&backed),
                        "step {step}"
                    );
                    for i in first..end {
                        prot[i] = None;
                        backed[i] = false;
                    }
                }
                3 => {
                    let got = m.protect(page_va(first), (end - first) as u64 * PAGE_SIZE, p);
                    if prot[first..end].iter().any(Option::is_none) {
                        assert_eq!(got, Err(Errno::ENOMEM), "step {step}");
                    } else {
                        let want = if p.accessible() {
                            vec![]
                        } else {
                            expect_released(&backed)
                        };
                        assert_eq!(released_pages(&got.unwrap()), want, "step {step}");
                        for i in first..end {
                            prot[i] = Some(p);
                            if !p.accessible() {
                                backed[i] = false;
                            }
                        }
                    }
                }
                _ => {
                    let write = rand(2) == 0;
                    let access = if write { Access::Write } else { Access::Read };
                    match (m.fault(page_va(first), access), prot[first]) {
                        (FaultAction::Resume, _) => assert!(backed[first], "step {step}"),
                        (FaultAction::Violation(Violation::Unmapped), None) => {}
                        (
                            FaultAction::Violation(Violation::GuardPage | Violation::NoAccess),
                            Some(Prot::NONE),
                        ) => {}
                        (FaultAction::Violation(Violation::WriteToReadOnly), Some(q)) => {
                            assert!(
                                write && !q.contains(Prot::WRITE) && q.accessible(),
                                "step {step}"
                            )
                        }
                        (FaultAction::Back(b), Some(q)) => {
                            assert!(!backed[first] && q.accessible(), "step {step}");
                            assert!(!write || q.contains(Prot::WRITE), "step {step}");
                            let start = ((b.va - base) / PAGE_SIZE) as usize;
                            let huge = first / 512 * 512;
                            let huge_ok = (huge..huge + 512)
                                .all(|i| prot[i].is_some_and(Prot::accessible) && !backed[i]);
                            if b.order == HUGE_ORDER {
                                assert!(huge_ok && start == huge, "step {step}");
                            } else {
                                assert!(!huge_ok && start == first, "step {step}");
                            }
                            m.mark_backed(b.va, b.order).unwrap();
                            let n = 1usize << b.order;
                            backed[start..start + n].fill(true);
                        }
                        (action, model) => {
                            panic!("step {step}: {action:?} for page in state {model:?}")
                        }
                    }
                }
            }
            if step % 50 == 0 || step == 2999 {
                for i in 0..PAGES {
                    let r = m.region_at(page_va(i)).map(|r| r.prot);
                    assert_eq!(r, prot[i], "step {step}, page {i}");
                    assert_eq!(m.is_backed(page_va(i)), backed[i], "step {step}, page {i}");
                }
                let regions: Vec<Region> = m.regions().copied().collect();
                for pair in regions.windows(2) {
                    assert!(pair[0].end <= pair[1].start, "overlap at step {step}");
                    let equal = pair[0].prot == pair[1].prot && pair[0].kind == pair[1].kind;
                    assert!(
                        !(pair[0].end == pair[1].start && equal),
                        "not merged at step {step}"
                    );
                }
                assert_eq!(
                    m.backed_pages(),
                    backed.iter().filter(|&&b| b).count() as u64
                );
            }
        }
    }
}
