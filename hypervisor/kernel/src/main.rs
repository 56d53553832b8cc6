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
mod boot_root;
mod console;
mod hypercall;
mod ipc;
mod memory;
mod multiboot;
mod object;
mod sched;
mod shootdown;
mod trap;
mod vcpu;

use arch::{apic, cpu, entry, paging, smp};
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

static CPUS_ONLINE: AtomicUsize = AtomicUsize::new(0);
/// Set once the kernel state exists; APs wait for it before they schedule.
static KERNEL_READY: AtomicBool = AtomicBool::new(false);
static APIC_IDS: spin::Mutex<[u32; acpi::MAX_CPUS]> = spin::Mutex::new([0; acpi::MAX_CPUS]);

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
    if bi.modules_ignored > 0 {
        kprintln!(
            "boot: WARNING: {} more modules ignored: Tern passes on at most {} (hyper_abi::HIP_MODULES_MAX)",
            bi.modules_ignored,
            multiboot::MAX_MODULES
        );
    }
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
    vcpu::detect();
    vcpu::init_cpu(0);
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
    let cpus = CPUS_ONLINE.load(Ordering::Acquire);
    kprintln!("smp: {cpus} CPUs online");

    // legacy PIC off: device interrupts come through the I/O APICs
    arch::port::outb(0x21, 0xff);
    arch::port::outb(0xa1, 0xff);
    let mut ioapics = alloc::vec::Vec::new();
    let mut overrides = [None; 16];
    if let Some(m) = &madt {
        for &(addr, base) in &m.ioapics[..m.ioapic_count] {
            ioapics.push(apic::IoApic::probe(addr, base));
        }
        overrides = m.overrides;
    }
    trap::PLATFORM.call_once(|| trap::Platform { ioapics, overrides });

    let mut k = object::Kernel::new(cpus);
    k.sched.apic_ids[..cpus].copy_from_slice(&APIC_IDS.lock()[..cpus]);
    let (_, heap) = memory::heap_stats();
    if let Err(e) = boot_root::create(&mut k, &bi, &root_mem, heap as u64 * 3 / 4) {
        panic!("cannot start the roottask: {e}");
    }
    drop(root_mem);
    *trap::KERNEL.lock() = Some(k);
    KERNEL_READY.store(true, Ordering::Release);
    kprintln!("kernel: roottask created, scheduling");
    trap::start_scheduling()
}

fn cpu_online(cpu: u32) {
    kprintln!("CPU {cpu} online (APIC id {})", apic::id());
    APIC_IDS.lock()[cpu as usize] = apic::id();
    trap::set_online(cpu as usize);
    CPUS_ONLINE.fetch_add(1, Ordering::AcqRel);
}

extern "C" fn ap_main(cpu: u32) -> ! {
    cpu::write_cr3(paging::kernel_root());
    apic::init_local();
    smp::init_cpu(cpu, apic::id());
    vcpu::init_cpu(cpu as usize);
    cpu_online(cpu);
    while !KERNEL_READY.load(Ordering::Acquire) {
        core::hint::spin_loop();
    }
    trap::start_scheduling()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    kprintln!("KERNEL PANIC: {info}");
    cpu::halt_forever()
}
