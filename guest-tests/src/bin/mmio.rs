//! MMIO on the test device page at 0xD000_0000: MOV loads and stores of widths 1, 2,
//! 4, 8, MOVZX loads and a store of an immediate; `MM_INVERT` and `MM_WRITES` prove
//! the device (not RAM) served them.
#![no_std]
#![no_main]

use core::arch::asm;
use guest_tests::device::{self, MMIO_BASE, MM_ID, MM_ID_VALUE, MM_INVERT, MM_SCRATCH, MM_WRITES};
use guest_tests::{check, guest, println};

guest!(main);

/// Volatile access to a register of the MMIO page.
fn reg<T>(offset: u64) -> *mut T {
    (MMIO_BASE + offset) as *mut T
}

fn read<T: Copy>(offset: u64) -> T {
    // SAFETY: the MMIO page is identity mapped (boot map) and served by the VMM.
    unsafe { reg::<T>(offset).read_volatile() }
}

fn write<T>(offset: u64, v: T) {
    // SAFETY: as in `read`.
    unsafe { reg::<T>(offset).write_volatile(v) }
}

fn main() {
    device::require();
    let id: u32 = read(MM_ID);
    check!(
        id == MM_ID_VALUE,
        "MM_ID read {id:#x}, expected {MM_ID_VALUE:#x}"
    );

    let writes0: u32 = read(MM_WRITES);
    write::<u64>(MM_SCRATCH, 0x1122_3344_5566_7788);
    let q: u64 = read(MM_SCRATCH);
    check!(
        q == 0x1122_3344_5566_7788,
        "qword store/load of MM_SCRATCH read {q:#x}"
    );
    let lo: u32 = read(MM_SCRATCH);
    let hi: u32 = read(MM_SCRATCH + 4);
    check!(
        lo == 0x5566_7788 && hi == 0x1122_3344,
        "dword loads read {lo:#x} and {hi:#x}"
    );
    let w: u16 = read(MM_SCRATCH + 2);
    check!(w == 0x5566, "word load at +2 read {w:#x}");
    let b: u8 = read(MM_SCRATCH + 7);
    check!(b == 0x11, "byte load at +7 read {b:#x}");

    write::<u8>(MM_SCRATCH + 1, 0xaa);
    write::<u16>(MM_SCRATCH + 4, 0xbbcc);
    let q: u64 = read(MM_SCRATCH);
    check!(
        q == 0x1122_bbcc_5566_aa88,
        "after a byte and a word store MM_SCRATCH is {q:#x}"
    );
    let inv: u32 = read(MM_INVERT);
    check!(
        inv == !0x5566_aa88,
        "MM_INVERT read {inv:#x}, expected {:#x}",
        !0x5566_aa88u32
    );

    let (zx8, zx16): (u32, u32);
    // SAFETY: two MOVZX loads and one MOV store of an immediate inside the MMIO page.
    unsafe {
        asm!(
            "movzx {a:e}, byte ptr [{p} + 1]",
            "movzx {b:e}, word ptr [{p} + 4]",
            "mov dword ptr [{p}], 0x0badf00d",
            p = in(reg) MMIO_BASE + MM_SCRATCH,
            a = out(reg) zx8,
            b = out(reg) zx16,
            options(nostack, preserves_flags)
        )
    };
    check!(
        zx8 == 0xaa && zx16 == 0xbbcc,
        "MOVZX loads read {zx8:#x} and {zx16:#x}"
    );
    let lo: u32 = read(MM_SCRATCH);
    check!(lo == 0x0bad_f00d, "MOV of an immediate stored {lo:#x}");

    let writes: u32 = read(MM_WRITES);
    check!(
        writes.wrapping_sub(writes0) == 4,
        "MM_WRITES counted {} stores, the guest made 4",
        writes.wrapping_sub(writes0)
    );
    println!("MMIO loads/stores of widths 1, 2, 4, 8, MOVZX, immediate store");
}
