//! Access to physical memory through the kernel's direct map.
//!
//! All physical memory (and the first 4 GiB including MMIO) is mapped at
//! `DIRECT_MAP_BASE`. This module is the only place that turns physical addresses
//! into pointers; everything above it works with `PhysAddr` values and the safe
//! accessors here.

pub const DIRECT_MAP_BASE: u64 = 0xffff_8000_0000_0000;
/// Physical memory beyond this is not mapped (we map at most 512 GiB).
pub const DIRECT_MAP_LIMIT: u64 = 512 << 30;
pub const KERNEL_VMA: u64 = 0xffff_ffff_8000_0000;

/// Highest physical address covered by the direct map so far (raised by paging init).
static MAPPED_END: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(4 << 30);

pub fn set_mapped_end(end: u64) {
    MAPPED_END.store(
        end.min(DIRECT_MAP_LIMIT),
        core::sync::atomic::Ordering::Release,
    );
}

fn check(pa: u64, len: u64) {
    let end = pa.checked_add(len).expect("physical range overflows");
    assert!(
        end <= MAPPED_END.load(core::sync::atomic::Ordering::Acquire),
        "physical range {pa:#x}+{len:#x} not in the direct map"
    );
}

pub fn to_virt(pa: u64) -> u64 {
    DIRECT_MAP_BASE + pa
}

/// Converts a kernel-image or direct-map virtual address back to physical.
pub fn to_phys(va: u64) -> u64 {
    if va >= KERNEL_VMA {
        va - KERNEL_VMA
    } else {
        assert!((DIRECT_MAP_BASE..DIRECT_MAP_BASE + DIRECT_MAP_LIMIT).contains(&va));
        va - DIRECT_MAP_BASE
    }
}

pub fn read<T: Copy>(pa: u64) -> T {
    check(pa, core::mem::size_of::<T>() as u64);
    // SAFETY: the range is inside the direct map (checked); T is Copy and any bit
    // pattern is accepted by the callers' plain-data types; unaligned read is used.
    unsafe { core::ptr::read_unaligned(to_virt(pa) as *const T) }
}

pub fn write<T: Copy>(pa: u64, value: T) {
    check(pa, core::mem::size_of::<T>() as u64);
    // SAFETY: inside the direct map (checked); callers only write memory they own
    // (page tables, frames they allocated, device registers).
    unsafe { core::ptr::write_unaligned(to_virt(pa) as *mut T, value) }
}

pub fn read_volatile_u32(pa: u64) -> u32 {
    check(pa, 4);
    // SAFETY: MMIO register inside the direct map (checked), naturally aligned by callers.
    unsafe { core::ptr::read_volatile(to_virt(pa) as *const u32) }
}

pub fn write_volatile_u32(pa: u64, value: u32) {
    check(pa, 4);
    // SAFETY: as above.
    unsafe { core::ptr::write_volatile(to_virt(pa) as *mut u32, value) }
}

/// A read-only view of physical memory (boot modules, firmware tables).
pub fn slice(pa: u64, len: usize) -> &'static [u8] {
    check(pa, len as u64);
    // SAFETY: inside the direct map (checked). The memory is never freed (the direct
    // map is permanent); callers use this for memory nobody writes concurrently.
    unsafe { core::slice::from_raw_parts(to_virt(pa) as *const u8, len) }
}

/// A writable view of a frame the caller owns exclusively.
pub fn slice_mut(pa: u64, len: usize) -> &'static mut [u8] {
    check(pa, len as u64);
    // SAFETY: inside the direct map (checked); callers pass frames they allocated
    // and hold no other reference to.
    unsafe { core::slice::from_raw_parts_mut(to_virt(pa) as *mut u8, len) }
}

/// A typed view of a frame the caller owns, shared at most with user memory whose
/// owner may change it at any time (a vCPU state page): `T` is plain data that
/// any bit pattern is a value of, and values the kernel must police are copied
/// out before they are checked.
pub fn view_mut<T: Copy>(pa: u64) -> &'static mut T {
    check(pa, core::mem::size_of::<T>() as u64);
    assert!(
        pa.is_multiple_of(core::mem::align_of::<T>() as u64),
        "misaligned view"
    );
    // SAFETY: inside the direct map (checked) and aligned (checked); the direct map
    // is permanent; see above for who else may write the memory.
    unsafe { &mut *(to_virt(pa) as *mut T) }
}

pub fn zero(pa: u64, len: usize) {
    slice_mut(pa, len).fill(0);
}

pub fn copy(dst_pa: u64, src: &[u8]) {
    slice_mut(dst_pa, src.len()).copy_from_slice(src);
}
