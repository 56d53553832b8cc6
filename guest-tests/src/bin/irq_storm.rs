//! Hostile: interrupt storms against the PC machine's interrupt controllers. The PIT at
//! its fastest rate through the PIC; self-IPIs, broadcasts, NMIs, INIT/SIPI to nobody
//! and illegal vectors through the xAPIC's ICR and the x2APIC's SELF_IPI and ICR MSRs;
//! the LAPIC timer in periodic mode with count 1; and MSI-X messages of a virtio-blk
//! (if the VM has one) that are valid, broadcast, illegal, NMI, INIT, ExtINT or not
//! aimed at the APIC at all. The VMM must keep running and deliver what is deliverable:
//! the guest counts what arrives, checks the counts a PC gives (every self-IPI with
//! IF = 1, one for thousands with IF = 0, no illegal vector, no INIT), reports PASS.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use guest_tests::pci::{self, Virtio, VIRTIO_BLK, VIRTIO_VENDOR};
use guest_tests::{check, cpu, guest, println, trap, virtq};

guest!(main);

const LAPIC: u64 = 0xfee0_0000;
const PIC_BASE: u8 = 0x20;
const IPI: u8 = 0x50;
const X2APIC_IPI: u8 = 0x51;
const TIMER: u8 = 0x52;
const MSI: u8 = 0x53;
const ILLEGAL: u8 = 0x03;
const NMI: u8 = 2;
const SPURIOUS: u8 = 0xff;
/// Where the virtio BAR is mapped (virtual, 2 MiB, unused below 4 GiB).
const WINDOW: u64 = 0x4000_0000;
/// How long a timer storm may take to deliver its interrupts, in TSC cycles.
const STORM_CYCLES: u64 = 1 << 32;
const STORM_HITS: u32 = 500;

static COUNT: [AtomicU32; 256] = [const { AtomicU32::new(0) }; 256];
static X2APIC: AtomicBool = AtomicBool::new(false);

fn count(vector: u8) -> u32 {
    COUNT[vector as usize].load(Ordering::Relaxed)
}

fn lapic_write(offset: u64, value: u32) {
    // SAFETY: the xAPIC page is identity-mapped; the VMM emulates it.
    unsafe { ((LAPIC + offset) as *mut u32).write_volatile(value) }
}

fn lapic_read(offset: u64) -> u32 {
    // SAFETY: as in `lapic_write`.
    unsafe { ((LAPIC + offset) as *const u32).read_volatile() }
}

fn eoi() {
    if X2APIC.load(Ordering::Relaxed) {
        // SAFETY: x2APIC EOI; any value but 0 would #GP.
        unsafe { cpu::wrmsr(0x80b, 0) };
    } else {
        lapic_write(0xb0, 0);
    }
}

fn on_pic(frame: &mut trap::TrapFrame) {
    COUNT[frame.vector as usize & 0xff].fetch_add(1, Ordering::Relaxed);
    cpu::outb(0x20, 0x20);
}

fn on_lapic(frame: &mut trap::TrapFrame) {
    COUNT[frame.vector as usize & 0xff].fetch_add(1, Ordering::Relaxed);
    eoi();
}

fn on_other(frame: &mut trap::TrapFrame) {
    COUNT[frame.vector as usize & 0xff].fetch_add(1, Ordering::Relaxed);
}

/// Runs with IF = 1 until `vector` arrived `hits` more times or the time is up;
/// returns how many arrived and the cycles it took.
fn storm(vector: u8, hits: u32) -> (u32, u64) {
    let (start, before) = (cpu::rdtsc(), count(vector));
    cpu::sti();
    while count(vector) - before < hits && cpu::rdtsc() - start < STORM_CYCLES {
        cpu::pause();
    }
    cpu::cli();
    (count(vector) - before, cpu::rdtsc() - start)
}

fn pit_storm() {
    // The PIC pair: vectors 0x20.., cascade on IRQ 2, only IRQ 0 unmasked.
    for (port, words) in [
        (0x20u16, [0x11u8, PIC_BASE, 4, 1]),
        (0xa0, [0x11, PIC_BASE + 8, 2, 1]),
    ] {
        cpu::outb(port, words[0]);
        for w in &words[1..] {
            cpu::outb(port + 1, *w);
        }
    }
    cpu::outb(0xa1, 0xff);
    cpu::outb(0x21, 0xfe);
    // Channel 0, mode 2 (rate generator), divisor 2: about 600 kHz.
    cpu::outb(0x43, 0x34);
    cpu::outb(0x40, 2);
    cpu::outb(0x40, 0);
    let (hits, cycles) = storm(PIC_BASE, STORM_HITS);
    cpu::outb(0x21, 0xff);
    cpu::outb(0x43, 0x30); // mode 0, stopped until a count is written
    check!(
        hits > 0,
        "the PIT at divisor 2 gave no interrupt in {cycles} cycles"
    );
    println!("PIT at divisor 2: {hits} interrupts in {cycles} cycles");
}

/// An xAPIC ICR write: destination (high word) first.
fn icr(destination: u8, low: u32) {
    lapic_write(0x310, (destination as u32) << 24);
    lapic_write(0x300, low);
}

const SELF: u32 = 1 << 18;
const ALL: u32 = 2 << 18;
const OTHERS: u32 = 3 << 18;
const MODE_NMI: u32 = 4 << 8;
const MODE_INIT: u32 = 5 << 8;
const MODE_SIPI: u32 = 6 << 8;

fn xapic_storm() {
    lapic_write(0xf0, 0x100 | SPURIOUS as u32); // software-enable, spurious vector
    lapic_write(0x80, 0); // TPR
    let before = count(IPI);
    cpu::sti();
    for _ in 0..2000 {
        icr(0, SELF | IPI as u32);
    }
    cpu::cli();
    let with_if = count(IPI) - before;
    check!(
        with_if == 2000,
        "{with_if} of 2000 self-IPIs arrived with IF = 1"
    );

    for _ in 0..2000 {
        icr(0, SELF | IPI as u32);
    }
    let before = count(IPI);
    check!(before == 2000, "a self-IPI arrived with IF = 0");
    storm(IPI, 1);
    let coalesced = count(IPI) - before;
    check!(
        coalesced == 1,
        "2000 self-IPIs with IF = 0 gave {coalesced} interrupts, expected 1 (IRR)"
    );

    let before = count(IPI);
    cpu::sti();
    for _ in 0..500 {
        icr(0, ALL | IPI as u32); // all including self: only us
        icr(0xff, IPI as u32); // physical broadcast
        icr(0x7f, IPI as u32); // nobody
        icr(0, OTHERS | IPI as u32); // nobody
        icr(0, OTHERS | MODE_INIT);
        icr(0, OTHERS | MODE_SIPI | 0x10);
        icr(0x7f, MODE_INIT);
    }
    cpu::cli();
    let broadcast = count(IPI) - before;
    check!(
        broadcast == 1000,
        "{broadcast} of 1000 broadcast IPIs arrived"
    );
    for _ in 0..200 {
        icr(0, MODE_NMI); // to APIC 0: the self shorthand is for fixed IPIs only
    }
    check!(
        count(NMI) == 200,
        "{} of 200 NMIs to APIC 0 arrived",
        count(NMI)
    );
    lapic_write(0x280, 0);
    cpu::sti();
    for _ in 0..200 {
        icr(0, SELF | ILLEGAL as u32);
    }
    cpu::cli();
    lapic_write(0x280, 0);
    let esr = lapic_read(0x280);
    check!(
        count(ILLEGAL) == 0,
        "illegal vector {ILLEGAL} was delivered {} times",
        count(ILLEGAL)
    );
    println!(
        "xAPIC: 2000 self-IPIs, 2000 coalesced into 1, 1000 broadcasts, INIT/SIPI to nobody, 200 NMIs to APIC 0; illegal vector refused (ESR {esr:#x})"
    );

    // The LAPIC timer, periodic, count 1, divide by 1.
    lapic_write(0x3e0, 0xb);
    lapic_write(0x320, 1 << 17 | TIMER as u32);
    lapic_write(0x380, 1);
    let (hits, cycles) = storm(TIMER, STORM_HITS);
    lapic_write(0x380, 0);
    lapic_write(0x320, 1 << 16); // masked
    check!(
        hits > 0,
        "the periodic LAPIC timer gave nothing in {cycles} cycles"
    );
    println!("LAPIC timer at count 1: {hits} interrupts in {cycles} cycles");
}

fn x2apic_storm() {
    if cpu::cpuid(1, 0)[2] & (1 << 21) == 0 {
        println!("no x2APIC offered: skipped");
        return;
    }
    // SAFETY: IA32_APIC_BASE: enabled (bit 11) and x2APIC (bit 10), base unchanged.
    unsafe { cpu::wrmsr(0x1b, cpu::rdmsr(0x1b) | 1 << 11 | 1 << 10) };
    X2APIC.store(true, Ordering::Relaxed);
    let before = count(X2APIC_IPI);
    cpu::sti();
    for _ in 0..2000 {
        // SAFETY: x2APIC SELF_IPI.
        unsafe { cpu::wrmsr(0x83f, X2APIC_IPI as u64) };
    }
    let self_ipis = count(X2APIC_IPI) - before;
    for _ in 0..500 {
        // SAFETY: x2APIC ICR: all including self, then nobody (destination 0x7f).
        unsafe {
            cpu::wrmsr(0x830, (ALL | X2APIC_IPI as u32) as u64);
            cpu::wrmsr(0x830, 0x7f << 32 | X2APIC_IPI as u64);
        }
    }
    cpu::cli();
    let hits = count(X2APIC_IPI) - before;
    check!(
        hits == 2500,
        "{hits} of 2500 x2APIC IPIs arrived ({self_ipis} of 2000 SELF_IPIs)"
    );
    println!("x2APIC: 2000 SELF_IPI writes and 500 ICR broadcasts delivered, 500 to nobody");
}

fn msix_storm() {
    let Some(function) = pci::find(VIRTIO_VENDOR, VIRTIO_BLK) else {
        println!("no virtio-blk: MSI-X storm skipped");
        return;
    };
    let Some(dev) = Virtio::new(function, WINDOW) else {
        println!("virtio-blk without MSI-X: MSI-X storm skipped");
        return;
    };
    let apic = |destination: u64| 0xfee0_0000 | destination << 12;
    let entries: [(u64, u32, &str); 8] = [
        (apic(0), MSI as u32, "fixed to APIC 0"),
        (apic(0xff), MSI as u32, "broadcast"),
        (apic(0), ILLEGAL as u32, "illegal vector"),
        (apic(0), MODE_NMI, "NMI"),
        (0xdead_b000, MSI as u32, "not an APIC address"),
        (apic(0x7f), MODE_INIT, "INIT to nobody"),
        (apic(0x7f), MODE_SIPI | 0x10, "SIPI to nobody"),
        (apic(0), 7 << 8, "ExtINT"),
    ];
    let rounds = 100;
    let (msi, nmi) = (count(MSI), count(NMI));
    for (entry, &(address, data, what)) in entries.iter().enumerate() {
        let entry = entry as u16 % dev.msix_entries;
        dev.set_msix(entry, address, data, false);
        virtq::start(&dev, entry);
        cpu::sti();
        for round in 0..rounds {
            dev.set_msix(entry, address, data, round % 2 == 1); // masked every other time
            let (status, _) = virtq::read_sector0(&dev);
            check!(
                status == 0,
                "a read with MSI-X entry {entry} answered status {status}"
            );
        }
        dev.set_msix(entry, address, data, false);
        cpu::sti();
        cpu::pause();
        cpu::cli();
        println!("MSI-X entry {entry}, {what}: {rounds} messages");
    }
    let (msi, nmi) = (count(MSI) - msi, count(NMI) - nmi);
    check!(msi > 0, "no valid MSI-X message arrived");
    check!(nmi > 0, "no MSI-X NMI arrived");
    check!(
        count(ILLEGAL) == 0,
        "an MSI-X message delivered illegal vector {ILLEGAL}"
    );
    println!(
        "MSI-X: {} messages, {msi} fixed interrupts and {nmi} NMIs arrived",
        entries.len() * rounds
    );
}

fn main() {
    for vector in PIC_BASE..PIC_BASE + 16 {
        trap::set_handler(vector, Some(on_pic));
    }
    for vector in 0x30..=0xfe {
        trap::set_handler(vector, Some(on_lapic));
    }
    for vector in [NMI, ILLEGAL, SPURIOUS] {
        trap::set_handler(vector, Some(on_other));
    }
    pit_storm();
    xapic_storm();
    x2apic_storm();
    msix_storm();
    println!("survived every storm");
}
