//! The Tern microhypervisor kernel.
//!
//! Boot order: console, boot information, memory (heap), kernel page table, this
//! CPU's tables, local APIC and timer calibration, ACPI (CPUs, I/O APICs), the other
//! CPUs, then the roottask. After boot the kernel only reacts to hypercalls,
//! interrupts and exceptions (`trap`), each of which ends by returning to user mode.
#![no_std]
#![no_main]

extern crate alloc;

mod acpi;
mod arch;
mod console;
mod memory;
mod multiboot;

use arch::{apic, cpu, entry, paging, phys, smp};
use core::sync::atomic::{AtomicUsize, Ordering};

static CPUS_ONLINE: AtomicUsize = AtomicUsize::new(0);

extern "C" {
    static boot_pml4: u8;
}

#[no_mangle]
extern "C" fn kernel_main(magic: u32, info: u32) -> ! {
    console::init();
    kprintln!("Tern microhypervisor");
    let bi = match multiboot::parse(magic, info as u64) {
        Ok(bi) => bi,
        Err(e) => panic!("{e}"),
    };
    kprintln!(
        "boot: Multiboot v{}, {} RAM ranges, {} modules, cmdline \"{}\"",
        bi.version,
        bi.ram().len(),
        bi.modules().len(),
        bi.cmdline()
    );
    let root_mem = memory::init(&bi);
    let boot_root = core::ptr::addr_of!(boot_pml4) as u64;
    paging::init_kernel(boot_root, root_mem.ram_end);
    let (used, size) = memory::heap_stats();
    kprintln!(
        "memory: RAM up to {:#x}, kernel heap {} KiB ({} KiB used), {} MiB for the roottask",
        root_mem.ram_end,
        size / 1024,
        used / 1024,
        root_mem.blocks.iter().map(|b| 4096u64 << b.1).sum::<u64>() >> 20
    );

    cpu::init_idt(entry::stub_base());
    apic::init_local();
    smp::init_cpu(0, apic::id());
    apic::calibrate();
    kprintln!(
        "apic: {} mode, TSC {} MHz",
        if apic::x2apic() { "x2APIC" } else { "xAPIC" },
        apic::tsc_per_us()
    );

    let madt = acpi::find_rsdp(bi.rsdp).and_then(acpi::read_madt);
    let bsp_apic = apic::id();
    cpu_online(0);
    if let Some(madt) = &madt {
        let mut next = 1u32;
        for &id in &madt.apic_ids[..madt.cpu_count] {
            if id == bsp_apic {
                continue;
            }
            if smp::start_ap(next, id, ap_main) {
                while CPUS_ONLINE.load(Ordering::Acquire) <= next as usize {
                    core::hint::spin_loop();
                }
                next += 1;
            } else {
                kprintln!("smp: CPU with APIC id {id} did not start");
            }
        }
    } else {
        kprintln!("acpi: no MADT found, running on the boot CPU only");
    }
    kprintln!("smp: {} CPUs online", CPUS_ONLINE.load(Ordering::Acquire));
    cpu::halt_forever()
}

fn cpu_online(cpu: u32) {
    kprintln!("CPU {cpu} online (APIC id {})", apic::id());
    CPUS_ONLINE.fetch_add(1, Ordering::AcqRel);
}

extern "C" fn ap_main(cpu: u32) -> ! {
    cpu::write_cr3(paging::kernel_root());
    apic::init_local();
    smp::init_cpu(cpu, apic::id());
    cpu_online(cpu);
    cpu::halt_forever()
}

#[no_mangle]
extern "C" fn trap_entry(frame: &mut entry::Frame) -> ! {
    kprintln!(
        "KERNEL FAULT: vector {} error {:#x} at {:#x} cr2 {:#x} on CPU {}",
        frame.vector,
        frame.error,
        frame.rip,
        cpu::read_cr2(),
        smp::cpu_id()
    );
    cpu::halt_forever()
}

#[no_mangle]
extern "C" fn syscall_handler(frame: &mut entry::Frame) -> ! {
    let _ = phys::to_virt(0);
    entry::return_to_user(frame)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    kprintln!("KERNEL PANIC: {info}");
    cpu::halt_forever()
}
