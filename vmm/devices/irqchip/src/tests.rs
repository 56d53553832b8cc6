//! Tests of [`Interrupts`] through its public API, as the machine uses it:
//! fake clock, timers and TSC for the timer modes; a real `TimerQueue` and
//! threads for concurrent use.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use vmm_bus::{Bus, Clock, HostClock, MsiMessage, MsiSink, TimerId, Timers};

use crate::{GuestTsc, Interrupts, IrqChipError, Startup, TimerQueue};

// ---- test doubles ----

#[derive(Default)]
struct FakeClock(AtomicU64);

impl FakeClock {
    fn set(&self, ns: u64) {
        self.0.fetch_max(ns, Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now_ns(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

type Callback = Box<dyn FnOnce() + Send>;
/// The next id and the callbacks by (deadline, id).
type Queue = (u64, BTreeMap<(u64, u64), Callback>);

/// Timers that run only when the test advances the fake clock.
struct FakeTimers {
    clock: Arc<FakeClock>,
    queue: Mutex<Queue>,
}

impl FakeTimers {
    /// Moves the clock to `t`, running every callback due on the way at its
    /// deadline.
    fn advance_to(&self, t: u64) {
        loop {
            let next = {
                let mut q = self.queue.lock().unwrap();
                match q.1.first_key_value() {
                    Some((&(deadline, id), _)) if deadline <= t => {
                        q.1.remove(&(deadline, id)).map(|cb| (deadline, cb))
                    }
                    _ => None,
                }
            };
            let Some((deadline, callback)) = next else {
                break;
            };
            self.clock.set(deadline);
            callback();
        }
        self.clock.set(t);
    }

    fn deadlines(&self) -> Vec<u64> {
        self.queue.lock().unwrap().1.keys().map(|k| k.0).collect()
    }
}

impl Timers for FakeTimers {
    fn schedule(&self, deadline_ns: u64, callback: Box<dyn FnOnce() + Send>) -> TimerId {
        let mut q = self.queue.lock().unwrap();
        let id = q.0;
        q.0 += 1;
        q.1.insert((deadline_ns, id), callback);
        TimerId(id)
    }

    fn cancel(&self, id: TimerId) {
        self.queue.lock().unwrap().1.retain(|k, _| k.1 != id.0);
    }
}

/// A 3 GHz TSC that started with the clock.
struct FakeTsc(Arc<FakeClock>);

impl GuestTsc for FakeTsc {
    fn now(&self) -> u64 {
        self.0.now_ns() * 3
    }
    fn hz(&self) -> u64 {
        3_000_000_000
    }
}

struct Machine {
    irq: Arc<Interrupts>,
    timers: Arc<FakeTimers>,
    notified: Arc<Mutex<Vec<u32>>>,
    ports: Bus,
    mmio: Bus,
}

impl Machine {
    fn new(vcpus: u32) -> Machine {
        let clock = Arc::new(FakeClock::default());
        let timers = Arc::new(FakeTimers {
            clock: clock.clone(),
            queue: Mutex::new((0, BTreeMap::new())),
        });
        let notified = Arc::new(Mutex::new(Vec::new()));
        let n = notified.clone();
        let irq = Interrupts::new(
            vcpus,
            clock.clone(),
            timers.clone(),
            Arc::new(FakeTsc(clock)),
            Arc::new(move |vcpu| n.lock().unwrap().push(vcpu)),
        )
        .unwrap();
        let mut ports = Bus::new();
        for r in irq.port_devices() {
            ports.insert(r.base, r.len, r.device).unwrap();
        }
        let mut mmio = Bus::new();
        for r in irq.mmio_devices() {
            mmio.insert(r.base, r.len, r.device).unwrap();
        }
        Machine {
            irq,
            timers,
            notified,
            ports,
            mmio,
        }
    }

    fn take_notified(&self) -> Vec<u32> {
        std::mem::take(&mut self.notified.lock().unwrap())
    }

    fn outb(&self, port: u64, value: u8) {
        assert!(self.ports.write(port, &[value]));
    }

    fn inb(&self, port: u64) -> u8 {
        let mut b = [0];
        assert!(self.ports.read(port, &mut b));
        b[0]
    }

    /// Linux's PIC programming: vectors 0x30/0x38, everything masked but
    /// `unmasked` (a 16-bit IRQ mask).
    fn init_pic(&self, unmasked: u16) {
        for (base, vector, icw3) in [(0x20, 0x30, 4), (0xa0, 0x38, 2)] {
            self.outb(base, 0x11);
            self.outb(base + 1, vector);
            self.outb(base + 1, icw3);
            self.outb(base + 1, 0x01);
        }
        let mask = !unmasked;
        self.outb(0x21, mask as u8 & !0x04);
        self.outb(0xa1, (mask >> 8) as u8);
    }

    fn ioapic_write(&self, index: u32, value: u32) {
        assert!(self.mmio.write(0xfec0_0000, &index.to_le_bytes()));
        assert!(self.mmio.write(0xfec0_0010, &value.to_le_bytes()));
    }

    fn ioapic_read(&self, index: u32) -> u32 {
        assert!(self.mmio.write(0xfec0_0000, &index.to_le_bytes()));
        let mut d = [0u8; 4];
        assert!(self.mmio.read(0xfec0_0010, &mut d));
        u32::from_le_bytes(d)
    }

    fn route(&self, pin: u32, low: u32, dest: u8) {
        self.ioapic_write(0x11 + 2 * pin, u32::from(dest) << 24);
        self.ioapic_write(0x10 + 2 * pin, low);
    }

    fn lapic_write(&self, vcpu: u32, offset: u64, value: u32) {
        self.irq
            .lapic_mmio_write(vcpu, offset, &value.to_le_bytes());
    }

    fn lapic_read(&self, vcpu: u32, offset: u64) -> u32 {
        let mut d = [0u8; 4];
        self.irq.lapic_mmio_read(vcpu, offset, &mut d);
        u32::from_le_bytes(d)
    }

    /// Software-enables the LAPIC with Linux's spurious vector and masks
    /// LINT0 (the IOAPIC takes over from the PIC).
    fn enable_lapic(&self, vcpu: u32) {
        self.lapic_write(vcpu, 0xf0, 0x1ff);
        self.lapic_write(vcpu, 0x350, 0x1_0700);
    }

    /// What the machine does: inject what is offered and acknowledge it.
    fn take(&self, vcpu: u32) -> Option<u8> {
        let v = self.irq.next_interrupt(vcpu)?;
        self.irq.ack(vcpu, v);
        Some(v)
    }

    fn eoi(&self, vcpu: u32) {
        let x2apic = self.irq.rdmsr(vcpu, 0x1b).unwrap() & (1 << 10) != 0;
        if x2apic {
            assert!(self.irq.wrmsr(vcpu, 0x80b, 0));
        } else {
            self.lapic_write(vcpu, 0xb0, 0);
        }
    }

    /// Takes the next interrupt and ends it (EOI).
    fn handle(&self, vcpu: u32) -> Option<u8> {
        let v = self.take(vcpu)?;
        self.eoi(vcpu);
        Some(v)
    }

    fn send_ipi(&self, from: u32, dest: u8, low: u32) {
        self.lapic_write(from, 0x310, u32::from(dest) << 24);
        self.lapic_write(from, 0x300, low);
    }
}

fn irr_bit(m: &Machine, vcpu: u32, vector: u8) -> bool {
    let word = m.lapic_read(vcpu, 0x200 + u64::from(vector >> 5) * 0x10);
    word & (1 << (vector & 31)) != 0
}

fn tmr_bit(m: &Machine, vcpu: u32, vector: u8) -> bool {
    let word = m.lapic_read(vcpu, 0x180 + u64::from(vector >> 5) * 0x10);
    word & (1 << (vector & 31)) != 0
}

// ---- construction and wiring ----

#[test]
fn bad_vcpu_counts_and_gsis_are_refused() {
    let m = Machine::new(1);
    let clock: Arc<dyn Clock> = Arc::new(FakeClock::default());
    for n in [0, 256] {
        let r = Interrupts::new(
            n,
            clock.clone(),
            m.timers.clone(),
            Arc::new(FakeTsc(Arc::new(FakeClock::default()))),
            Arc::new(|_| {}),
        );
        assert_eq!(r.err(), Some(IrqChipError::VcpuCount(n)));
    }
    assert_eq!(m.irq.gsi_line(2).err(), Some(IrqChipError::Cascade));
    assert_eq!(m.irq.gsi_line(24).err(), Some(IrqChipError::NoSuchGsi(24)));
    assert!(m.irq.gsi_line(23).is_ok());
    // Out-of-range vCPUs are harmless.
    assert_eq!(m.irq.next_interrupt(7), None);
    assert_eq!(m.irq.rdmsr(7, 0x1b), None);
    assert!(!m.irq.wrmsr(7, 0x1b, 0));
    m.irq.ack(7, 0x30);
    assert_eq!(m.lapic_read(7, 0x20), u32::MAX);
}

#[test]
fn bus_ranges_cover_the_pc_addresses() {
    let m = Machine::new(1);
    assert_eq!(m.inb(0x21), 0);
    m.outb(0x21, 0x5a);
    assert_eq!(m.inb(0x21), 0x5a);
    m.outb(0xa1, 0xa5);
    assert_eq!(m.inb(0xa1), 0xa5);
    m.outb(0x4d1, 0xff);
    assert_eq!(m.inb(0x4d1), 0xde);
    let mut two = [0u8; 2];
    assert!(m.ports.read(0x4d0, &mut two));
    assert_eq!(two, [0, 0xde]);
    assert!(!m.ports.read(0x22, &mut [0]));
    assert_eq!(m.ioapic_read(1), 0x0017_0020);
    assert!(!m.mmio.read(0xfec0_1000, &mut [0; 4]));
}

// ---- the PIC ----

#[test]
fn pic_reaches_the_bsp_through_lint0_virtual_wire() {
    let m = Machine::new(2);
    m.init_pic(1 << 4 | 1 << 12);
    let com1 = m.irq.gsi_line(4).unwrap();
    com1.set_level(true);
    assert_eq!(m.take_notified(), [0], "only the BSP takes the PIC");
    assert_eq!(m.irq.next_interrupt(1), None);
    assert_eq!(m.take(0), Some(0x34));
    com1.set_level(false);
    m.outb(0x20, 0x0b);
    assert_eq!(m.inb(0x20), 0x10, "IRQ 4 in service");
    assert_eq!(m.irq.next_interrupt(0), None);
    m.outb(0x20, 0x20);
    assert_eq!(m.inb(0x20), 0);
    // A slave IRQ through the cascade.
    m.irq.gsi_line(12).unwrap().pulse();
    assert_eq!(m.take(0), Some(0x3c));
    m.outb(0xa0, 0x20);
    m.outb(0x20, 0x20);
    // The LAPIC's own interrupts still work next to the PIC.
    m.lapic_write(0, 0xf0, 0x1ff);
    m.irq.send(MsiMessage {
        address: 0xfee0_0000,
        data: 0x51,
    });
    m.irq.gsi_line(4).unwrap().pulse();
    assert_eq!(m.take(0), Some(0x34), "ExtINT first");
    assert_eq!(m.take(0), Some(0x51));
}

#[test]
fn pic_reaches_a_bsp_with_its_lapic_disabled_and_not_when_lint0_is_masked() {
    let m = Machine::new(2);
    m.init_pic(1 << 1);
    assert!(m.irq.wrmsr(0, 0x1b, 0xfee0_0100));
    m.irq.gsi_line(1).unwrap().pulse();
    assert_eq!(m.take_notified(), [0]);
    assert_eq!(m.take(0), Some(0x31));
    m.outb(0x20, 0x20);
    assert!(m.irq.wrmsr(0, 0x1b, 0xfee0_0900));
    m.enable_lapic(0);
    m.irq.gsi_line(1).unwrap().pulse();
    assert_eq!(m.irq.next_interrupt(0), None, "LINT0 masked");
    m.take_notified();
    m.lapic_write(0, 0x350, 0x700);
    assert_eq!(m.take_notified(), [0], "unmasking LINT0 lets the PIC in");
    assert_eq!(m.take(0), Some(0x31));
}

#[test]
fn pic_through_ioapic_pin0_in_extint_mode() {
    let m = Machine::new(2);
    m.init_pic(1 << 3);
    for v in 0..2 {
        m.enable_lapic(v);
    }
    m.route(0, 0x0000_0700, 1); // ExtINT to vCPU 1
    m.irq.gsi_line(3).unwrap().pulse();
    assert!(m.take_notified().contains(&1));
    assert_eq!(m.irq.next_interrupt(0), None);
    assert_eq!(m.take(1), Some(0x33));
    m.outb(0x20, 0x0b);
    assert_eq!(m.inb(0x20), 0x08);
    assert_eq!(m.irq.next_interrupt(1), None, "the ExtINT was consumed");
}

#[test]
fn spurious_pic_interrupt_is_irq7() {
    let m = Machine::new(1);
    m.init_pic(1 << 5);
    m.outb(0x4d0, 0x20); // IRQ 5 level
    let line = m.irq.gsi_line(5).unwrap();
    line.set_level(true);
    let v = m.irq.next_interrupt(0).unwrap();
    assert_eq!(v, 0x35);
    line.set_level(false); // falls before the acknowledge
    m.irq.ack(0, v);
    m.outb(0x20, 0x0b);
    assert_eq!(m.inb(0x20), 0, "spurious: nothing in service");
}

// ---- IOAPIC ----

#[test]
fn pit_reaches_the_bsp_through_ioapic_pin_2() {
    let m = Machine::new(2);
    m.init_pic(0); // Linux masks the PIC once the IOAPIC runs
    m.enable_lapic(0);
    m.enable_lapic(1);
    m.route(2, 0x0000_0030, 0);
    let pit = m.irq.gsi_line(0).unwrap();
    pit.pulse();
    assert_eq!(m.take_notified(), [0]);
    assert_eq!(m.take(0), Some(0x30));
    assert_eq!(m.irq.next_interrupt(1), None);
    m.eoi(0);
    pit.pulse();
    assert_eq!(m.take(0), Some(0x30));
    m.eoi(0);
    assert_eq!(m.ioapic_read(0x10) & 0x1_0000, 0x1_0000, "pin 0 untouched");
}

#[test]
fn level_sci_waits_for_eoi_and_is_sent_again_while_asserted() {
    let m = Machine::new(1);
    m.enable_lapic(0);
    m.route(9, 0x0000_8049, 0); // level, active high
    let sci = m.irq.gsi_line(9).unwrap();
    sci.set_level(true);
    assert_eq!(m.take(0), Some(0x49));
    assert!(tmr_bit(&m, 0, 0x49), "level: TMR set");
    assert_eq!(m.ioapic_read(0x22) & 0x4000, 0x4000, "remote IRR");
    sci.set_level(true);
    assert!(!irr_bit(&m, 0, 0x49), "nothing new before the EOI");
    m.take_notified();
    m.eoi(0);
    assert!(irr_bit(&m, 0, 0x49), "still asserted: delivered again");
    assert_eq!(m.take_notified(), [0]);
    assert_eq!(m.take(0), Some(0x49));
    sci.set_level(false);
    m.eoi(0);
    assert_eq!(m.ioapic_read(0x22) & 0x4000, 0);
    assert_eq!(m.irq.next_interrupt(0), None);
}

#[test]
fn pci_intx_on_gsi_16_is_level_and_ioapic_only() {
    let m = Machine::new(1);
    m.init_pic(0xffff);
    m.enable_lapic(0);
    m.route(16, 0x0000_a061, 0); // level, active low
    let intx = m.irq.gsi_line(16).unwrap();
    intx.set_level(true);
    assert_eq!(m.take(0), Some(0x61));
    intx.set_level(false);
    m.eoi(0);
    assert_eq!(m.ioapic_read(0x30) & 0x4000, 0);
    assert_eq!(m.inb(0x20), 0, "the PIC saw nothing");
}

#[test]
fn directed_eoi_leaves_the_ioapic_to_its_eoi_register() {
    let m = Machine::new(1);
    m.enable_lapic(0);
    m.lapic_write(0, 0xf0, 0x11ff); // suppress EOI broadcast
    m.route(9, 0x0000_8049, 0);
    let sci = m.irq.gsi_line(9).unwrap();
    sci.set_level(true);
    assert_eq!(m.take(0), Some(0x49));
    sci.set_level(false);
    m.eoi(0);
    assert_eq!(m.ioapic_read(0x22) & 0x4000, 0x4000, "no broadcast");
    assert!(m.mmio.write(0xfec0_0040, &[0x49, 0, 0, 0]));
    assert_eq!(m.ioapic_read(0x22) & 0x4000, 0);
}

#[test]
fn unreachable_level_destination_does_not_wedge_the_pin() {
    let m = Machine::new(1);
    m.route(9, 0x0000_8049, 5); // no such APIC ID
    m.irq.gsi_line(9).unwrap().set_level(true);
    assert_eq!(m.ioapic_read(0x22) & 0x4000, 0);
}

// ---- IPIs ----

#[test]
fn fixed_ipis_physical_logical_and_shorthands() {
    let m = Machine::new(3);
    for v in 0..3 {
        m.enable_lapic(v);
        m.lapic_write(v, 0xd0, 1 << (24 + v)); // flat logical IDs 1, 2, 4
    }
    m.take_notified();
    m.send_ipi(0, 1, 0x0000_4040);
    assert_eq!(m.take_notified(), [1]);
    assert_eq!(m.handle(1), Some(0x40));
    m.send_ipi(0, 0b110, 0x0000_4841); // logical: vCPUs 1 and 2
    assert_eq!(m.handle(1), Some(0x41));
    assert_eq!(m.handle(2), Some(0x41));
    assert_eq!(m.irq.next_interrupt(0), None);
    m.send_ipi(0, 0, 0x000c_4042); // all but self
    assert_eq!(
        (0..3).map(|v| m.handle(v)).collect::<Vec<_>>(),
        [None, Some(0x42), Some(0x42)]
    );
    m.send_ipi(2, 0, 0x0008_4043); // all including self
    assert_eq!(
        (0..3).map(|v| m.handle(v)).collect::<Vec<_>>(),
        [Some(0x43), Some(0x43), Some(0x43)]
    );
    m.send_ipi(1, 0, 0x0004_4044); // self
    assert_eq!(
        (0..3).map(|v| m.handle(v)).collect::<Vec<_>>(),
        [None, Some(0x44), None]
    );
    m.send_ipi(0, 0xff, 0x0000_4045); // physical broadcast
    assert!((0..3).all(|v| irr_bit(&m, v, 0x45)));
}

#[test]
fn cluster_logical_ipis() {
    let m = Machine::new(3);
    for v in 0..3 {
        m.enable_lapic(v);
        m.lapic_write(v, 0xe0, 0x0fff_ffff); // cluster model
    }
    m.lapic_write(0, 0xd0, 0x1100_0000);
    m.lapic_write(1, 0xd0, 0x1200_0000);
    m.lapic_write(2, 0xd0, 0x2100_0000);
    m.send_ipi(0, 0x13, 0x0000_4850); // cluster 1, members 1 and 2
    assert_eq!(
        (0..3).map(|v| irr_bit(&m, v, 0x50)).collect::<Vec<_>>(),
        [true, true, false]
    );
}

#[test]
fn lowest_priority_goes_to_the_lowest_task_priority() {
    let m = Machine::new(3);
    for v in 0..3 {
        m.enable_lapic(v);
        m.lapic_write(v, 0xd0, 1 << (24 + v));
    }
    m.lapic_write(0, 0x80, 0x40);
    m.lapic_write(1, 0x80, 0x20);
    m.lapic_write(2, 0x80, 0x30);
    m.send_ipi(0, 0x07, 0x0000_4960);
    assert_eq!(
        (0..3).map(|v| irr_bit(&m, v, 0x60)).collect::<Vec<_>>(),
        [false, true, false]
    );
}

#[test]
fn nmi_ipi_and_illegal_vectors() {
    let m = Machine::new(2);
    m.enable_lapic(0);
    m.enable_lapic(1);
    m.send_ipi(0, 1, 0x0000_4400);
    assert!(m.irq.take_nmi(1));
    assert!(!m.irq.take_nmi(1));
    assert!(!m.irq.take_nmi(0));
    m.send_ipi(0, 1, 0x0000_4005); // fixed vector 5: not sent
    assert_eq!(m.irq.next_interrupt(1), None);
    m.lapic_write(0, 0x280, 0);
    assert_eq!(m.lapic_read(0, 0x280), 1 << 5, "send illegal vector");
}

#[test]
fn init_and_sipi_start_an_application_processor() {
    let m = Machine::new(2);
    m.enable_lapic(0);
    assert_eq!(m.irq.take_startup(1), None);
    // Linux's wakeup_secondary_cpu_via_init: INIT assert, de-assert, two
    // SIPIs.
    m.send_ipi(0, 1, 0x0000_c500);
    m.send_ipi(0, 1, 0x0000_8500);
    m.send_ipi(0, 1, 0x0000_4608);
    m.send_ipi(0, 1, 0x0000_4608);
    assert!(m.take_notified().contains(&1));
    assert_eq!(m.irq.take_startup(1), Some(Startup::Init));
    assert_eq!(m.irq.take_startup(1), Some(Startup::Sipi(8)));
    assert_eq!(m.irq.take_startup(1), None, "the second SIPI is ignored");
    assert_eq!(m.irq.take_startup(0), None);
    // A SIPI alone does not restart a running processor.
    m.send_ipi(0, 1, 0x0000_4609);
    assert_eq!(m.irq.take_startup(1), None);
    // INIT resets the AP's LAPIC (and stops its timer).
    m.enable_lapic(1);
    m.lapic_write(1, 0x320, 0x30);
    m.lapic_write(1, 0x380, 1000);
    assert_eq!(m.timers.deadlines().len(), 1);
    m.send_ipi(0, 1, 0x0000_c500);
    assert_eq!(m.lapic_read(1, 0xf0), 0xff);
    assert!(m.timers.deadlines().is_empty());
    assert_eq!(m.irq.take_startup(1), Some(Startup::Init));
}

// ---- x2APIC ----

#[test]
fn x2apic_mode_ipis_self_ipi_and_msr_rules() {
    let m = Machine::new(2);
    assert_eq!(m.irq.rdmsr(0, 0x802), None, "xAPIC mode: #GP");
    for v in 0..2 {
        assert!(m.irq.wrmsr(v, 0x1b, 0xfee0_0c00));
        assert!(m.irq.wrmsr(v, 0x80f, 0x1ff));
        assert_eq!(m.irq.rdmsr(v, 0x802), Some(u64::from(v)));
    }
    assert_eq!(m.irq.rdmsr(0, 0x1b), Some(0xfee0_0d00));
    assert_eq!(m.lapic_read(0, 0x20), u32::MAX, "no xAPIC page");
    assert!(m.irq.wrmsr(0, 0x830, (1 << 32) | 0x4050));
    assert_eq!(m.take(1), Some(0x50));
    assert!(!m.irq.wrmsr(1, 0x80b, 1), "EOI with a value: #GP");
    assert!(m.irq.wrmsr(1, 0x80b, 0));
    assert!(m.irq.wrmsr(0, 0x830, (0xffff_ffff << 32) | 0x4051));
    assert_eq!((m.handle(0), m.handle(1)), (Some(0x51), Some(0x51)));
    assert!(m.irq.wrmsr(1, 0x83f, 0x52));
    assert_eq!(m.handle(1), Some(0x52));
    // Logical x2APIC: cluster 0, bit 1 is vCPU 1.
    assert_eq!(m.irq.rdmsr(1, 0x80d), Some(0x2));
    assert!(m.irq.wrmsr(0, 0x830, (0x2 << 32) | 0x4853));
    assert_eq!(m.handle(1), Some(0x53));
    // 8-bit MSI destinations reach x2APIC LAPICs physically.
    m.irq.send(MsiMessage {
        address: 0xfee0_1000,
        data: 0x54,
    });
    assert_eq!(m.handle(1), Some(0x54));
    assert!(!m.irq.wrmsr(0, 0x1b, 0xfee0_0800), "x2APIC -> xAPIC: #GP");
    assert!(m.irq.wrmsr(0, 0x1b, 0xfee0_0000));
    assert!(m.irq.wrmsr(0, 0x1b, 0xfee0_0800));
    assert_eq!(m.lapic_read(0, 0x20), 0, "back in xAPIC mode, reset");
}

#[test]
fn cr8_is_the_tpr_class() {
    let m = Machine::new(1);
    m.enable_lapic(0);
    m.irq.set_cr8(0, 5);
    assert_eq!(m.lapic_read(0, 0x80), 0x50);
    assert_eq!(m.irq.cr8(0), 5);
    m.irq.send(MsiMessage {
        address: 0xfee0_0000,
        data: 0x45,
    });
    assert_eq!(m.irq.next_interrupt(0), None);
    m.take_notified();
    m.irq.set_cr8(0, 0);
    assert_eq!(m.take_notified(), [0], "lowering the TPR notifies");
    assert_eq!(m.take(0), Some(0x45));
}

// ---- MSI ----

#[test]
fn msis_reach_their_destinations() {
    let m = Machine::new(2);
    m.enable_lapic(0);
    m.enable_lapic(1);
    m.lapic_write(1, 0xd0, 0x0200_0000);
    let send = |address, data| m.irq.send(MsiMessage { address, data });
    send(0xfee0_1000, 0x0000_0041);
    assert_eq!(m.take_notified(), [1]);
    assert_eq!(m.handle(1), Some(0x41));
    send(0xfee0_2004, 0x0000_0042); // logical 2 = vCPU 1
    assert_eq!(m.handle(1), Some(0x42));
    send(0xfee0_1000, 0x0000_8043); // level
    assert!(tmr_bit(&m, 1, 0x43));
    send(0xfeef_f000, 0x0000_0044); // broadcast
    assert!(irr_bit(&m, 0, 0x44) && irr_bit(&m, 1, 0x44));
    send(0xfee0_0000, 0x0000_0400); // NMI
    assert!(m.irq.take_nmi(0));
    send(0xfee0_f000, 0x0000_0045); // nobody
    send(0xfed0_0000, 0x0000_0046); // not an interrupt address
    assert!(!irr_bit(&m, 0, 0x45) && !irr_bit(&m, 0, 0x46));
    // A software-disabled LAPIC drops fixed interrupts.
    m.lapic_write(0, 0xf0, 0xff);
    send(0xfee0_0000, 0x0000_0047);
    assert!(!irr_bit(&m, 0, 0x47));
}

// ---- LAPIC timer ----

#[test]
fn one_shot_timer_fires_through_timers_and_notifies() {
    let m = Machine::new(2);
    m.enable_lapic(1);
    m.timers.advance_to(1_000);
    m.lapic_write(1, 0x3e0, 0x3); // divide by 16
    m.lapic_write(1, 0x320, 0xef);
    m.lapic_write(1, 0x380, 10_000);
    assert_eq!(m.timers.deadlines(), [1_000 + 160_000]);
    m.timers.advance_to(81_000);
    assert_eq!(m.lapic_read(1, 0x390), 5_000, "live count");
    m.take_notified();
    m.timers.advance_to(200_000);
    assert_eq!(m.take_notified(), [1]);
    assert_eq!(m.lapic_read(1, 0x390), 0);
    assert_eq!(m.take(1), Some(0xef));
    assert!(m.timers.deadlines().is_empty());
    // Re-arming replaces the pending callback; the old one is cancelled.
    m.lapic_write(1, 0x380, 100);
    m.lapic_write(1, 0x380, 200);
    assert_eq!(m.timers.deadlines(), [200_000 + 3_200]);
    m.lapic_write(1, 0x380, 0);
    assert!(m.timers.deadlines().is_empty());
}

#[test]
fn periodic_timer_keeps_firing() {
    let m = Machine::new(1);
    m.enable_lapic(0);
    m.lapic_write(0, 0x3e0, 0xb); // divide by 1
    m.lapic_write(0, 0x320, 0x2_00ec);
    m.lapic_write(0, 0x380, 1_000_000); // 1 ms
    let mut ticks = 0;
    for ms in 1..=5 {
        m.timers.advance_to(ms * 1_000_000);
        if m.take(0) == Some(0xec) {
            ticks += 1;
            m.eoi(0);
        }
    }
    assert_eq!(ticks, 5);
    assert_eq!(m.timers.deadlines(), [6_000_000]);
    m.lapic_write(0, 0x320, 0x1_00ec); // masked, one-shot: stops it
    assert!(m.timers.deadlines().is_empty());
}

#[test]
fn tsc_deadline_timer_converts_guest_tsc_to_clock_time() {
    let m = Machine::new(1);
    m.enable_lapic(0);
    m.timers.advance_to(10_000);
    m.lapic_write(0, 0x320, 0x4_00ed);
    // The fake TSC runs at 3 GHz: 30_000 now; 3_000 ticks = 1 µs.
    assert!(m.irq.wrmsr(0, 0x6e0, 33_000));
    assert_eq!(m.irq.rdmsr(0, 0x6e0), Some(33_000));
    assert_eq!(m.timers.deadlines(), [11_000]);
    m.timers.advance_to(10_999);
    assert_eq!(m.irq.next_interrupt(0), None);
    m.timers.advance_to(11_000);
    assert_eq!(m.take(0), Some(0xed));
    assert_eq!(m.irq.rdmsr(0, 0x6e0), Some(0));
    // Disarm before it fires.
    assert!(m.irq.wrmsr(0, 0x6e0, 60_000));
    assert!(m.irq.wrmsr(0, 0x6e0, 0));
    assert!(m.timers.deadlines().is_empty());
}

#[test]
fn a_platform_reset_returns_every_chip_to_power_on() {
    let m = Machine::new(2);
    m.init_pic(1 << 4);
    m.enable_lapic(0);
    m.enable_lapic(1);
    m.route(9, 0x0000_8049, 1);
    m.irq.gsi_line(9).unwrap().set_level(true);
    assert!(irr_bit(&m, 1, 0x49));
    m.lapic_write(0, 0x320, 0x2_0030); // periodic timer
    m.lapic_write(0, 0x380, 1000);
    assert!(m.irq.wrmsr(1, 0x1b, 0xfee0_0c00), "vCPU 1 to x2APIC");
    m.send_ipi(0, 1, 0x0000_c500); // INIT pending for vCPU 1
    assert_eq!(m.timers.deadlines().len(), 1);
    m.irq.gsi_line(9).unwrap().set_level(false); // the devices reset first

    m.irq.reset();
    assert!(m.timers.deadlines().is_empty(), "LAPIC timer stopped");
    assert_eq!(m.irq.take_startup(1), None, "no INIT left pending");
    assert_eq!(m.irq.rdmsr(0, 0x1b), Some(0xfee0_0900), "BSP, xAPIC");
    assert_eq!(m.irq.rdmsr(1, 0x1b), Some(0xfee0_0800), "AP, xAPIC");
    assert_eq!(m.lapic_read(0, 0xf0), 0xff, "software-disabled");
    assert!(!irr_bit(&m, 1, 0x49));
    assert_eq!(m.ioapic_read(0x10 + 2 * 9), 0x1_0000, "pin masked again");
    assert_eq!(m.inb(0x21), 0, "PIC mask as after power-on");
    assert_eq!(m.irq.next_interrupt(0), None);
    // The PIC works as before once programmed again.
    m.init_pic(1 << 4);
    m.irq.gsi_line(4).unwrap().pulse();
    assert_eq!(m.take(0), Some(0x34));
}

#[test]
fn tsc_deadline_follows_the_vcpus_tsc_offset() {
    let m = Machine::new(2);
    m.enable_lapic(0);
    m.enable_lapic(1);
    m.timers.advance_to(10_000); // the fake TSC reads 30_000 (3 GHz)
    m.lapic_write(0, 0x320, 0x4_00ed);
    m.lapic_write(1, 0x320, 0x4_00ee);
    // vCPU 1's TSC runs 3_000 ticks (1 µs) ahead: its deadline comes sooner.
    m.irq.set_tsc_offset(1, 3_000);
    assert!(m.irq.wrmsr(0, 0x6e0, 36_000));
    assert!(m.irq.wrmsr(1, 0x6e0, 36_000));
    assert_eq!(m.timers.deadlines(), [11_000, 12_000]);
    // vCPU 0's TSC moves forward by 1_500 (a WRMSR to IA32_TSC): the armed
    // deadline is 500 ns closer.
    m.irq.set_tsc_offset(0, 1_500);
    assert_eq!(m.timers.deadlines(), [11_000, 11_500]);
    m.timers.advance_to(11_000);
    assert_eq!(m.take(1), Some(0xee));
    assert_eq!(m.irq.next_interrupt(0), None);
    // Moved past the deadline: it fires at once.
    m.irq.set_tsc_offset(0, 100_000);
    assert_eq!(m.timers.deadlines(), [11_000]);
    m.timers.advance_to(11_000);
    assert_eq!(m.take(0), Some(0xed));
    assert_eq!(m.irq.rdmsr(0, 0x6e0), Some(0), "disarmed once fired");
    // Moving the TSC back makes a deadline later; no deadline, no timer.
    m.irq.set_tsc_offset(0, 0);
    assert!(m.timers.deadlines().is_empty());
    assert!(m.irq.wrmsr(0, 0x6e0, 36_000)); // TSC 33_000 + 0
    m.irq.set_tsc_offset(0, 0u64.wrapping_sub(3_000));
    assert_eq!(m.timers.deadlines(), [13_000]);
    // A platform reset forgets the offsets.
    m.irq.reset();
    m.enable_lapic(1);
    m.lapic_write(1, 0x320, 0x4_00ee);
    assert!(m.irq.wrmsr(1, 0x6e0, 36_000));
    assert_eq!(
        m.timers.deadlines(),
        [12_000],
        "offset 0 again: 3_000 ticks, 1 µs"
    );
}

#[test]
fn a_stale_timer_callback_does_nothing() {
    // Timers whose cancel comes too late: the callback still runs.
    struct LateCancel(FakeTimers);
    impl Timers for LateCancel {
        fn schedule(&self, d: u64, cb: Box<dyn FnOnce() + Send>) -> TimerId {
            self.0.schedule(d, cb)
        }
        fn cancel(&self, _id: TimerId) {}
    }
    let clock = Arc::new(FakeClock::default());
    let timers = Arc::new(LateCancel(FakeTimers {
        clock: clock.clone(),
        queue: Mutex::new((0, BTreeMap::new())),
    }));
    let irq = Interrupts::new(
        1,
        clock.clone(),
        timers.clone(),
        Arc::new(FakeTsc(clock)),
        Arc::new(|_| {}),
    )
    .unwrap();
    let write = |off: u64, v: u32| irq.lapic_mmio_write(0, off, &v.to_le_bytes());
    write(0xf0, 0x1ff);
    write(0x3e0, 0xb);
    write(0x320, 0x30);
    write(0x380, 100);
    write(0x380, 0); // stopped; the callback at 100 stays queued
    timers.0.advance_to(1_000);
    assert_eq!(irq.next_interrupt(0), None);
}

// ---- threads ----

/// What a machine's vCPU thread waits on: `notify` sets the flag.
#[derive(Default)]
struct Kick {
    pending: Mutex<bool>,
    cond: Condvar,
}

#[test]
fn concurrent_devices_timers_and_vcpus() {
    const ROUNDS: u32 = 300;
    let clock = Arc::new(HostClock::new());
    let timers = TimerQueue::new(clock.clone()).unwrap();
    let kicks: Arc<Vec<Kick>> = Arc::new((0..2).map(|_| Kick::default()).collect());
    let k = kicks.clone();
    struct Tsc(Arc<HostClock>);
    impl GuestTsc for Tsc {
        fn now(&self) -> u64 {
            self.0.now_ns()
        }
        fn hz(&self) -> u64 {
            1_000_000_000
        }
    }
    let irq = Interrupts::new(
        2,
        clock.clone(),
        timers,
        Arc::new(Tsc(clock)),
        Arc::new(move |v| {
            let kick = &k[v as usize];
            *kick.pending.lock().unwrap() = true;
            kick.cond.notify_one();
        }),
    )
    .unwrap();
    let enable = |v: u32| {
        irq.lapic_mmio_write(v, 0xf0, &0x1ffu32.to_le_bytes());
        irq.lapic_mmio_write(v, 0x350, &0x1_0700u32.to_le_bytes());
    };
    enable(0);
    enable(1);
    // IOAPIC pin 5 (edge) to vCPU 0, vector 0x35.
    let io = irq.mmio_devices().remove(0).device;
    io.lock().unwrap().write(0, &[0x1a]);
    io.lock().unwrap().write(0x10, &0x35u32.to_le_bytes());
    // vCPU 0's periodic timer at the minimum period.
    irq.lapic_mmio_write(0, 0x3e0, &0xbu32.to_le_bytes());
    irq.lapic_mmio_write(0, 0x320, &0x2_0040u32.to_le_bytes());
    irq.lapic_mmio_write(0, 0x380, &1u32.to_le_bytes());

    // Counts of handled interrupts by vector, per vCPU.
    let counts: Arc<Vec<Mutex<BTreeMap<u8, u32>>>> =
        Arc::new((0..2).map(|_| Mutex::new(BTreeMap::new())).collect());
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let vcpu_thread = |vcpu: u32| {
        let (irq, kicks, counts, done) = (irq.clone(), kicks.clone(), counts.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                while let Some(v) = irq.next_interrupt(vcpu) {
                    irq.ack(vcpu, v);
                    *counts[vcpu as usize].lock().unwrap().entry(v).or_default() += 1;
                    if vcpu == 0 && v == 0x35 {
                        // Answer the device with an IPI to vCPU 1.
                        irq.lapic_mmio_write(0, 0x310, &(1u32 << 24).to_le_bytes());
                        irq.lapic_mmio_write(0, 0x300, &0x4036u32.to_le_bytes());
                    }
                    irq.lapic_mmio_write(vcpu, 0xb0, &0u32.to_le_bytes());
                }
                let kick = &kicks[vcpu as usize];
                let mut pending = kick.pending.lock().unwrap();
                if !*pending {
                    pending = kick
                        .cond
                        .wait_timeout(pending, Duration::from_millis(20))
                        .unwrap()
                        .0;
                }
                *pending = false;
            }
        })
    };
    let threads = [vcpu_thread(0), vcpu_thread(1)];
    let count = |vcpu: usize, v: u8| counts[vcpu].lock().unwrap().get(&v).copied().unwrap_or(0);
    let wait_for = |what: &dyn Fn() -> bool| {
        let start = std::time::Instant::now();
        while !what() {
            assert!(start.elapsed() < Duration::from_secs(20), "interrupt lost");
            std::thread::yield_now();
        }
    };
    // Two device threads: an IOAPIC edge pin to vCPU 0 (answered with an
    // IPI to vCPU 1) and MSIs to vCPU 1, each waiting for its interrupt to
    // be handled so none merges with the next.
    let line = irq.gsi_line(5).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            for round in 1..=ROUNDS {
                line.pulse();
                wait_for(&|| count(0, 0x35) >= round && count(1, 0x36) >= round);
            }
        });
        s.spawn(|| {
            for round in 1..=ROUNDS {
                irq.send(MsiMessage {
                    address: 0xfee0_1000,
                    data: 0x41,
                });
                wait_for(&|| count(1, 0x41) >= round);
            }
        });
    });
    // The periodic timer ran meanwhile.
    wait_for(&|| count(0, 0x40) > 2);
    done.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(count(0, 0x35), ROUNDS);
    assert_eq!(count(1, 0x36), ROUNDS);
    assert_eq!(count(1, 0x41), ROUNDS);
}
