//! Port I/O instructions.

use core::arch::asm;

pub fn outb(port: u16, value: u8) {
    // SAFETY: port I/O has no memory effects; the kernel owns the ports it uses.
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags))
    }
}

pub fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: as above.
    unsafe {
        asm!("in al, dx", out("al") v, in("dx") port, options(nomem, nostack, preserves_flags))
    }
    v
}
