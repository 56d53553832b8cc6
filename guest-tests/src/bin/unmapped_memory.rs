//! Hostile: writes a dword to guest-physical 0xE000_0000, which the VMM leaves
//! unmapped. The VMM must report the nested page fault (address, write) and stop the VM.
#![no_std]
#![no_main]

use guest_tests::device::UNMAPPED;
use guest_tests::{fail, guest, println};

guest!(main);

fn main() {
    println!("writing {UNMAPPED:#x}");
    // SAFETY: the address is identity mapped by the boot page tables and is no RAM the
    // program uses; the write is meant to exit to the VMM.
    unsafe { (UNMAPPED as *mut u32).write_volatile(0x1234_5678) };
    fail!("write to unmapped memory came back");
}
