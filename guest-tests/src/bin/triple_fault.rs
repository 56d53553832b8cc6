//! Hostile: loads an IDT with limit 0 and executes INT3 (#BP -> #GP -> #DF -> triple
//! fault). The VMM must see the shutdown, report it and stop the VM.
#![no_std]
#![no_main]

use guest_tests::{fail, guest, println};

guest!(main);

fn main() {
    println!("loading a null IDT");
    let null_idtr = [0u16; 5];
    // SAFETY: deliberately destroys the guest: with no IDT every exception escalates
    // to a triple fault. Nothing after it runs unless the VMM ignores the shutdown.
    unsafe { core::arch::asm!("lidt [{}]", "int3", in(reg) null_idtr.as_ptr(), options(nostack)) };
    fail!("still running after a triple fault");
}
