//! The Tern microhypervisor kernel.
#![no_std]
#![no_main]

mod arch;
mod console;

#[no_mangle]
extern "C" fn kernel_main(magic: u32, info: u32) -> ! {
    console::init();
    kprintln!("Tern microhypervisor: boot magic {magic:#x} info {info:#x}");
    loop {
        core::hint::spin_loop();
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    kprintln!("KERNEL PANIC: {info}");
    loop {
        core::hint::spin_loop();
    }
}
