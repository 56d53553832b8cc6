//! 4-level page tables: the kernel half shared by every address space, and the
//! user half of each protection domain's memory space. Page-table pages come
//! from the kernel heap.

use super::cpu::{cpuid, flush_tlb};
use super::phys;
use alloc::alloc::{alloc_zeroed, dealloc, Layout};

pub const PAGE_SIZE: u64 = 4096;
pub const USER_END: u64 = 0x0000_8000_0000_0000;

pub const P: u64 = 1;
pub const W: u64 = 1 << 1;
pub const U: u64 = 1 << 2;
pub const PS: u64 = 1 << 7;
pub const NX: u64 = 1 << 63;
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

fn table_layout() -> Layout {
    Layout::from_size_align(4096, 4096).unwrap()
}

/// A zeroed page-table page from the heap; returns its physical address.
fn new_table() -> Option<u64> {
    // SAFETY: the layout has a non-zero size.
    let p = unsafe { alloc_zeroed(table_layout()) };
    (!p.is_null()).then(|| phys::to_phys(p as u64))
}

fn free_table(pa: u64) {
    // SAFETY: `pa` came from `new_table` (heap memory in the direct map) and is no
    // longer referenced by any page table.
    unsafe { dealloc(phys::to_virt(pa) as *mut u8, table_layout()) }
}

fn entry(table: u64, index: u64) -> u64 {
    phys::read::<u64>(table + index * 8)
}

fn set_entry(table: u64, index: u64, value: u64) {
    phys::write::<u64>(table + index * 8, value)
}

static mut KERNEL_PML4: u64 = 0;

fn kernel_pml4() -> u64 {
    // SAFETY: written once by `init_kernel` on the BSP before any other CPU starts.
    unsafe { KERNEL_PML4 }
}

pub fn has_1g_pages() -> bool {
    cpuid(0x8000_0001, 0)[3] & (1 << 26) != 0
}

/// Builds the kernel's own root table from the boot one (dropping the identity map)
/// and extends the direct map to `ram_end`.
pub fn init_kernel(boot_pml4: u64, ram_end: u64) -> u64 {
    let root = new_table().expect("no memory for the kernel page table");
    for i in 256..512 {
        set_entry(root, i, entry(boot_pml4, i));
    }
    let pdpt = entry(root, 256) & ADDR_MASK;
    let end = ram_end.min(phys::DIRECT_MAP_LIMIT);
    let mut gib = 4;
    while gib << 30 < end {
        if entry(pdpt, gib) & P == 0 {
            if has_1g_pages() {
                set_entry(pdpt, gib, (gib << 30) | P | W | PS);
            } else {
                let pd = new_table().expect("no memory for the direct map");
                for j in 0..512 {
                    set_entry(pd, j, ((gib << 30) + (j << 21)) | P | W | PS);
                }
                set_entry(pdpt, gib, pd | P | W);
            }
        }
        gib += 1;
    }
    // the kernel half must be complete before any address space copies it
    for i in 256..512 {
        if entry(root, i) & P == 0 {
            let t = new_table().expect("no memory for the kernel page table");
            set_entry(root, i, t | P | W);
        }
    }
    // SAFETY: single writer during BSP boot.
    unsafe { KERNEL_PML4 = root };
    phys::set_mapped_end(end.max(4 << 30));
    super::cpu::write_cr3(root);
    flush_tlb();
    root
}

pub fn kernel_root() -> u64 {
    kernel_pml4()
}

/// The page-table format of an address space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// x86-64 paging: a PD's user half (sharing the kernel half), or an AMD nested
    /// page table (guest-physical, no kernel half; NPT uses the same format).
    Host,
    /// Intel extended page tables (guest-physical), at most 2 MiB pages when
    /// `large` (the CPU supports them), 4 KiB otherwise.
    Ept { large: bool },
}

/// EPT entry bits: read, write, execute; write-back memory type for leaves.
const EPT_RWX: u64 = 7;
const EPT_WB: u64 = 6 << 3;

/// The user half of an address space, or a guest-physical space. Dropping it frees
/// all its page-table pages (not the memory they map: that belongs to the mapping
/// database).
pub struct AddressSpace {
    root: u64,
    format: Format,
}

#[derive(Debug)]
pub struct OutOfMemory;

impl AddressSpace {
    pub fn new() -> Result<Self, OutOfMemory> {
        let root = new_table().ok_or(OutOfMemory)?;
        let k = kernel_pml4();
        for i in 256..512 {
            set_entry(root, i, entry(k, i));
        }
        Ok(AddressSpace {
            root,
            format: Format::Host,
        })
    }

    /// An empty guest-physical space (nested paging) of the given format.
    pub fn new_guest(format: Format) -> Result<Self, OutOfMemory> {
        let root = new_table().ok_or(OutOfMemory)?;
        Ok(AddressSpace { root, format })
    }

    fn present(&self, e: u64) -> bool {
        match self.format {
            Format::Host => e & P != 0,
            Format::Ept { .. } => e & EPT_RWX != 0,
        }
    }

    /// A non-leaf entry pointing at `table`.
    fn table_entry(&self, table: u64) -> u64 {
        match self.format {
            Format::Host => table | P | W | U,
            Format::Ept { .. } => table | EPT_RWX,
        }
    }

    /// A leaf entry for `pa` with host-format `flags` (W, NX).
    fn leaf_entry(&self, pa: u64, flags: u64, large: bool) -> u64 {
        let ps = if large { PS } else { 0 };
        match self.format {
            Format::Host => pa | flags | P | U | ps,
            Format::Ept { .. } => {
                let w = if flags & W != 0 { 2 } else { 0 };
                let x = if flags & NX == 0 { 4 } else { 0 };
                pa | 1 | w | x | EPT_WB | ps
            }
        }
    }

    /// The largest leaf level this format may use.
    fn max_level(&self) -> u32 {
        match self.format {
            Format::Host if has_1g_pages() => 2,
            Format::Host | Format::Ept { large: true } => 1,
            Format::Ept { large: false } => 0,
        }
    }

    pub fn root(&self) -> u64 {
        self.root
    }

    /// Maps [va, va + 2^order pages) to [pa, ...) with `flags` (P|U added), using
    /// 2 MiB or 1 GiB pages where alignment allows and no table is in the way.
    /// Existing mappings are replaced. No page-table page is freed here: another
    /// CPU may still cache an entry that points to it (they go with the space).
    pub fn map(&mut self, va: u64, pa: u64, order: u8, flags: u64) -> Result<(), OutOfMemory> {
        let size = PAGE_SIZE << order;
        let mut off = 0;
        while off < size {
            let (v, p) = (va + off, pa + off);
            let left = size - off;
            let max = self.max_level().min(self.leaf_level_free(v));
            let level = if (v | p) & ((1 << 30) - 1) == 0 && left >= 1 << 30 && max >= 2 {
                2
            } else if (v | p) & ((1 << 21) - 1) == 0 && left >= 1 << 21 && max >= 1 {
                1
            } else {
                0
            };
            self.map_one(v, p, level, flags)?;
            off += PAGE_SIZE << (9 * level);
        }
        Ok(())
    }

    /// The highest level (2: 1 GiB) at which a leaf for `va` would replace no table.
    fn leaf_level_free(&self, va: u64) -> u32 {
        let mut table = self.root;
        for depth in (1..4u32).rev() {
            let e = entry(table, (va >> (12 + 9 * depth)) & 511);
            if !self.present(e) || e & PS != 0 {
                return depth.min(2);
            }
            if depth == 1 {
                break;
            }
            table = e & ADDR_MASK;
        }
        0
    }

    /// Installs one leaf at `level` (0: 4 KiB, 1: 2 MiB, 2: 1 GiB); no table may be
    /// in its place (see `leaf_level_free`).
    fn map_one(&mut self, va: u64, pa: u64, level: u32, flags: u64) -> Result<(), OutOfMemory> {
        let mut table = self.root;
        for depth in (level + 1..4).rev() {
            let idx = (va >> (12 + 9 * depth)) & 511;
            let e = entry(table, idx);
            table = if !self.present(e) || e & PS != 0 {
                // empty, or a larger page is in the way: a new table replaces it (the
                // mapping database never maps overlapping ranges, so it is stale)
                let t = new_table().ok_or(OutOfMemory)?;
                set_entry(table, idx, self.table_entry(t));
                t
            } else {
                e & ADDR_MASK
            };
        }
        let idx = (va >> (12 + 9 * level)) & 511;
        let old = entry(table, idx);
        debug_assert!(level == 0 || !self.present(old) || old & PS != 0);
        set_entry(table, idx, self.leaf_entry(pa, flags, level > 0));
        Ok(())
    }

    /// Removes every mapping inside [va, va + 2^order pages). CPUs may still hold
    /// the old translations: the caller shoots them down (`shootdown`).
    pub fn unmap(&mut self, va: u64, order: u8) {
        let end = va.saturating_add(PAGE_SIZE << order).min(USER_END);
        let mut v = va;
        while v < end {
            v = self.unmap_at(v, end);
        }
    }

    /// Clears the leaf containing `va` (if it lies within [va, end)); returns the next address to look at.
    fn unmap_at(&mut self, va: u64, end: u64) -> u64 {
        let mut table = self.root;
        for depth in (0..4u32).rev() {
            let idx = (va >> (12 + 9 * depth)) & 511;
            let span = PAGE_SIZE << (9 * depth);
            let next = (va & !(span - 1)) + span;
            let e = entry(table, idx);
            if !self.present(e) {
                return next;
            }
            if depth == 0 || e & PS != 0 {
                if va & (span - 1) == 0 && next <= end {
                    set_entry(table, idx, 0);
                }
                return next;
            }
            table = e & ADDR_MASK;
        }
        end
    }
}

impl AddressSpace {
    fn free_subtree(&self, table: u64, level: u32) {
        if level > 0 {
            for i in 0..512 {
                let e = entry(table, i);
                if self.present(e) && e & PS == 0 {
                    self.free_subtree(e & ADDR_MASK, level - 1);
                }
            }
        }
        free_table(table);
    }
}

impl Drop for AddressSpace {
    fn drop(&mut self) {
        // the user half (a guest space never maps the upper half: guest-physical
        // addresses end at the mapping database's limit, 2^47)
        for i in 0..256 {
            let e = entry(self.root, i);
            if self.present(e) && e & PS == 0 {
                self.free_subtree(e & ADDR_MASK, 2);
            }
        }
        free_table(self.root);
    }
}
