//! [`Interrupts`]: the PC's interrupt system as one shared object: the PIC
//! pair, the IOAPIC and one LAPIC per vCPU, joined by the APIC bus, with
//! the LAPIC timers on the machine's [`Timers`].
//!
//! Owns: the wiring (ISA IRQs to PIC and IOAPIC, PIC INTR to LINT0 and
//! IOAPIC pin 0, IOAPIC and MSIs and IPIs to LAPICs, EOIs back to the
//! IOAPIC), locking, the LAPIC timer callbacks and the `notify` calls. Must
//! not touch: vCPUs (the machine injects what [`Interrupts::next_interrupt`]
//! offers).
//!
//! Locks: one per chip (the PIC pair, the IOAPIC, each vCPU's LAPIC), always
//! taken in that order and at most one LAPIC at a time; `notify` and IPI
//! delivery run after the sender's LAPIC lock is released, so `notify` may
//! call back into this object.

use std::sync::{Arc, Mutex, MutexGuard, Weak};

use vmm_bus::{
    BusDevice, Clock, InterruptLine, Line, MsiMessage, MsiSink, SharedDevice, TimerId, Timers,
};

use crate::ioapic::IoApic;
use crate::lapic::{
    Effects, Lapic, MSR_APIC_BASE, MSR_TSC_DEADLINE, MSR_X2APIC_FIRST, MSR_X2APIC_LAST,
};
use crate::message::{decode_msi, DeliveryMode, Destination, Message};
use crate::pic::PicPair;

/// The time-stamp counter the guests' TSCs count from, for TSC-deadline
/// timers: vCPU n's TSC is `now()` plus its offset
/// ([`Interrupts::set_tsc_offset`], 0 until set).
pub trait GuestTsc: Send + Sync {
    /// The TSC of a guest with offset 0 now.
    fn now(&self) -> u64;
    /// Its rate in Hz.
    fn hz(&self) -> u64;
}

/// What a vCPU must do before it next runs (INIT first, then SIPI).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Startup {
    /// Reset to the INIT state and wait for a SIPI.
    Init,
    /// Start in real mode at `vector << 12` (CS = `vector << 8`, IP = 0).
    Sipi(u8),
}

/// Ports and MMIO of the chips, where the machine inserts them.
pub const PIC_MASTER_PORT: u64 = 0x20;
pub const PIC_SLAVE_PORT: u64 = 0xa0;
pub const ELCR_PORT: u64 = 0x4d0;
pub const IOAPIC_BASE: u64 = 0xfec0_0000;
pub const IOAPIC_SIZE: u64 = 0x1000;
/// The IOAPIC version this machine has (0x20: with the EOI register).
pub const IOAPIC_VERSION: u8 = 0x20;
/// At most this many vCPUs (8-bit xAPIC IDs; 0xFF is the broadcast).
pub const MAX_VCPUS: u32 = 255;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IrqChipError {
    #[error("{0} vCPUs: the interrupt controllers support 1 to {MAX_VCPUS}")]
    VcpuCount(u32),
    #[error("IRQ 2 is the PIC cascade and has no device; the PIT is IRQ 0 (IOAPIC pin 2)")]
    Cascade,
    #[error("GSI {0} does not exist: ISA IRQs are 0-15, IOAPIC pins 16-23")]
    NoSuchGsi(u32),
}

/// One device range for the machine's buses.
pub struct BusRange {
    pub base: u64,
    pub len: u64,
    pub device: SharedDevice,
}

/// Where the vector [`Interrupts::next_interrupt`] last offered comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Offer {
    Pic(u8),
    Lapic(u8),
}

struct Vcpu {
    lapic: Lapic,
    /// The vCPU's TSC minus [`GuestTsc::now`].
    tsc_offset: u64,
    timer: Option<TimerId>,
    /// Bumped whenever the timer is re-armed; a callback of an older arming
    /// does nothing.
    timer_generation: u64,
    offered: Option<Offer>,
}

struct Pic {
    chips: PicPair,
    /// The INTR output as last propagated.
    intr: bool,
}

/// vCPUs to notify once the locks are released.
#[derive(Default)]
struct Wake(Vec<u32>);

impl Wake {
    fn add(&mut self, vcpu: u32) {
        if !self.0.contains(&vcpu) {
            self.0.push(vcpu);
        }
    }
}

/// The PC's interrupt controllers. See the crate README for how the machine
/// uses them.
pub struct Interrupts {
    me: Weak<Interrupts>,
    pic: Mutex<Pic>,
    ioapic: Mutex<IoApic>,
    vcpus: Vec<Mutex<Vcpu>>,
    clock: Arc<dyn Clock>,
    timers: Arc<dyn Timers>,
    guest_tsc: Arc<dyn GuestTsc>,
    notify: Arc<dyn Fn(u32) + Send + Sync>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Interrupts {
    /// The controllers of a PC with `vcpus` processors: LAPIC IDs are the
    /// vCPU indices, vCPU 0 is the BSP (the others wait for INIT/SIPI).
    /// `notify(vcpu)` runs whenever that vCPU gets something new (an
    /// interrupt, NMI, INIT or SIPI); `timers` must run callbacks on
    /// another thread (never inside `schedule`).
    pub fn new(
        vcpus: u32,
        clock: Arc<dyn Clock>,
        timers: Arc<dyn Timers>,
        guest_tsc: Arc<dyn GuestTsc>,
        notify: Arc<dyn Fn(u32) + Send + Sync>,
    ) -> Result<Arc<Self>, IrqChipError> {
        if vcpus == 0 || vcpus > MAX_VCPUS {
            return Err(IrqChipError::VcpuCount(vcpus));
        }
        Ok(Arc::new_cyclic(|me| Interrupts {
            me: me.clone(),
            pic: Mutex::new(Pic {
                chips: PicPair::new(),
                intr: false,
            }),
            ioapic: Mutex::new(IoApic::new(IOAPIC_VERSION)),
            vcpus: (0..vcpus)
                .map(|id| {
                    Mutex::new(Vcpu {
                        lapic: Lapic::new(id, id == 0),
                        tsc_offset: 0,
                        timer: None,
                        timer_generation: 0,
                        offered: None,
                    })
                })
                .collect(),
            clock,
            timers,
            guest_tsc,
            notify,
        }))
    }

    /// A platform reset: the PIC pair, the IOAPIC and every LAPIC at their
    /// power-on state (vCPU 0 the BSP, the others waiting for INIT/SIPI),
    /// LAPIC timers stopped, nothing pending. Input lines count as
    /// deasserted: reset the devices first (their reset drops their lines).
    pub fn reset(&self) {
        *lock(&self.pic) = Pic {
            chips: PicPair::new(),
            intr: false,
        };
        *lock(&self.ioapic) = IoApic::new(IOAPIC_VERSION);
        for (id, v) in self.vcpus.iter().enumerate() {
            let mut v = lock(v);
            if let Some(timer) = v.timer.take() {
                self.timers.cancel(timer);
            }
            v.timer_generation += 1;
            v.lapic = Lapic::new(id as u32, id == 0);
            v.tsc_offset = 0;
            v.offered = None;
        }
    }

    pub fn vcpu_count(&self) -> u32 {
        self.vcpus.len() as u32
    }

    fn vcpu(&self, vcpu: u32) -> Option<MutexGuard<'_, Vcpu>> {
        self.vcpus.get(vcpu as usize).map(lock)
    }

    fn run_wake(&self, wake: Wake) {
        for vcpu in wake.0 {
            (self.notify)(vcpu);
        }
    }

    // ---- interrupt lines ----

    /// The wire for `gsi`: ISA IRQ n (0-15, not 2) drives PIC input n and
    /// IOAPIC pin n, except IRQ 0 which drives IOAPIC pin 2 (the MADT's
    /// interrupt source override); GSIs 16-23 drive IOAPIC pins only (PCI
    /// INTx).
    pub fn gsi_line(&self, gsi: u32) -> Result<Line, IrqChipError> {
        match gsi {
            2 => Err(IrqChipError::Cascade),
            0..=23 => Ok(Arc::new(GsiLine {
                irq: self.me.clone(),
                gsi,
            })),
            _ => Err(IrqChipError::NoSuchGsi(gsi)),
        }
    }

    /// Drives `gsi` as [`Interrupts::gsi_line`] wires it.
    pub fn set_gsi(&self, gsi: u32, asserted: bool) {
        if gsi == 2 || gsi > 23 {
            return;
        }
        let mut wake = Wake::default();
        if gsi < 16 {
            let mut pic = lock(&self.pic);
            pic.chips.set_irq(gsi as u8, asserted);
            self.pic_output_changed(&mut pic, &mut wake);
        }
        let pin = if gsi == 0 { 2 } else { gsi as usize };
        {
            let mut io = lock(&self.ioapic);
            if let Some(msg) = io.set_level(pin, asserted) {
                self.deliver_from_ioapic(&mut io, pin, msg, &mut wake);
            }
        }
        self.run_wake(wake);
    }

    /// Propagates a change of the PIC's INTR: IOAPIC pin 0 (virtual wire
    /// through the IOAPIC) and the vCPUs that take the PIC through LINT0.
    fn pic_output_changed(&self, pic: &mut Pic, wake: &mut Wake) {
        let intr = pic.chips.intr();
        if intr == pic.intr {
            return;
        }
        pic.intr = intr;
        {
            let mut io = lock(&self.ioapic);
            if let Some(msg) = io.set_level(0, intr) {
                self.deliver_from_ioapic(&mut io, 0, msg, wake);
            }
        }
        if intr {
            for (i, v) in self.vcpus.iter().enumerate() {
                if lock(v).lapic.accepts_pic() {
                    wake.add(i as u32);
                }
            }
        }
    }

    fn with_pic<R>(&self, f: impl FnOnce(&mut PicPair) -> R) -> R {
        let mut wake = Wake::default();
        let result = {
            let mut pic = lock(&self.pic);
            let result = f(&mut pic.chips);
            self.pic_output_changed(&mut pic, &mut wake);
            result
        };
        self.run_wake(wake);
        result
    }

    // ---- the APIC bus ----

    /// Delivers `msg` to the LAPICs it names; returns how many took it.
    fn deliver(&self, msg: &Message, wake: &mut Wake) -> usize {
        if msg.destination == Destination::SelfOnly && msg.mode != DeliveryMode::Fixed {
            return 0; // the self shorthand carries fixed interrupts only
        }
        if matches!(msg.mode, DeliveryMode::Smi | DeliveryMode::Reserved) {
            return 0;
        }
        let mut targets: Vec<u32> = (0..self.vcpu_count())
            .filter(|&v| {
                let Some(addressing) = lock(&self.vcpus[v as usize]).lapic.addressing() else {
                    return false;
                };
                let is_self = msg.source == Some(v);
                match msg.destination {
                    Destination::SelfOnly => is_self,
                    Destination::All => true,
                    Destination::AllButSelf => !is_self,
                    dest => addressing.matches(dest, msg.wide),
                }
            })
            .collect();
        if msg.mode == DeliveryMode::LowestPriority && targets.len() > 1 {
            // Arbitration: the lowest processor priority wins (ties: the
            // lowest APIC ID).
            let chosen = targets
                .iter()
                .copied()
                .min_by_key(|&v| lock(&self.vcpus[v as usize]).lapic.ppr() >> 4);
            targets = chosen.into_iter().collect();
        }
        let mut accepted = 0;
        for &target in &targets {
            let mut v = lock(&self.vcpus[target as usize]);
            let new = match msg.mode {
                DeliveryMode::Fixed | DeliveryMode::LowestPriority => {
                    v.lapic.accept_fixed(msg.vector, msg.level_triggered)
                }
                DeliveryMode::Nmi => {
                    v.lapic.receive_nmi();
                    true
                }
                DeliveryMode::Init => {
                    v.lapic.receive_init();
                    v.offered = None;
                    true
                }
                DeliveryMode::Startup => v.lapic.receive_sipi(msg.vector),
                DeliveryMode::ExtInt => {
                    v.lapic.receive_extint();
                    true
                }
                DeliveryMode::Smi | DeliveryMode::Reserved => false,
            };
            self.sync_timer(target, &mut v);
            accepted += 1;
            if new {
                wake.add(target);
            }
        }
        accepted
    }

    fn deliver_from_ioapic(&self, io: &mut IoApic, pin: usize, msg: Message, wake: &mut Wake) {
        if self.deliver(&msg, wake) == 0 {
            io.not_delivered(pin);
        }
    }

    fn broadcast_eoi(&self, vector: u8, wake: &mut Wake) {
        let mut io = lock(&self.ioapic);
        for (pin, msg) in io.eoi(vector) {
            self.deliver_from_ioapic(&mut io, pin, msg, wake);
        }
    }

    /// Carries out what a register access of `vcpu`'s LAPIC asked for
    /// (its lock released).
    fn apply(&self, vcpu: u32, effects: Effects, wake: &mut Wake) {
        if let Some(mut ipi) = effects.ipi {
            ipi.source = Some(vcpu);
            self.deliver(&ipi, wake);
        }
        if let Some(vector) = effects.eoi_broadcast {
            self.broadcast_eoi(vector, wake);
        }
    }

    // ---- LAPIC timers ----

    /// Re-arms `vcpu`'s timer callback if its LAPIC's expiry changed.
    fn sync_timer(&self, vcpu: u32, v: &mut Vcpu) {
        let Some(fire_at) = v.lapic.take_timer_change() else {
            return;
        };
        if let Some(id) = v.timer.take() {
            self.timers.cancel(id);
        }
        v.timer_generation += 1;
        if let Some(deadline) = fire_at {
            let generation = v.timer_generation;
            let me = self.me.clone();
            v.timer = Some(self.timers.schedule(
                deadline,
                Box::new(move || {
                    if let Some(irq) = me.upgrade() {
                        irq.timer_expired(vcpu, generation);
                    }
                }),
            ));
        }
    }

    fn timer_expired(&self, vcpu: u32, generation: u64) {
        let raised = {
            let Some(mut v) = self.vcpu(vcpu) else {
                return;
            };
            if v.timer_generation != generation {
                return; // re-armed or stopped since
            }
            v.timer = None;
            let raised = v.lapic.timer_expired(self.clock.now_ns());
            self.sync_timer(vcpu, &mut v);
            raised
        };
        if raised {
            (self.notify)(vcpu);
        }
    }

    // ---- per-vCPU accesses (on the vCPU's handler thread) ----

    /// Runs `f` on `vcpu`'s LAPIC, then re-arms its timer, carries out the
    /// effects and notifies whoever got something new (`vcpu` itself if an
    /// interrupt is deliverable after the access).
    fn lapic_access<R>(
        &self,
        vcpu: u32,
        f: impl FnOnce(&mut Lapic, u64) -> (R, Effects),
    ) -> Option<R> {
        let mut wake = Wake::default();
        let (result, effects, takes_pic) = {
            let mut v = self.vcpu(vcpu)?;
            let (result, effects) = f(&mut v.lapic, self.clock.now_ns());
            self.sync_timer(vcpu, &mut v);
            if v.lapic.deliverable().is_some() {
                wake.add(vcpu);
            }
            (result, effects, v.lapic.accepts_pic())
        };
        // The access may have opened the way for the PIC (LINT0 to ExtINT,
        // LAPIC disabled).
        if takes_pic && lock(&self.pic).intr {
            wake.add(vcpu);
        }
        self.apply(vcpu, effects, &mut wake);
        self.run_wake(wake);
        Some(result)
    }

    /// A read of `vcpu`'s xAPIC page (`offset` into the page at
    /// [`crate::LAPIC_BASE`]); all ones outside xAPIC mode.
    pub fn lapic_mmio_read(&self, vcpu: u32, offset: u64, data: &mut [u8]) {
        match self.vcpu(vcpu) {
            Some(v) => v.lapic.mmio_read(offset, data, self.clock.now_ns()),
            None => data.fill(0xff),
        }
    }

    /// A write to `vcpu`'s xAPIC page.
    pub fn lapic_mmio_write(&self, vcpu: u32, offset: u64, data: &[u8]) {
        self.lapic_access(vcpu, |l, now| ((), l.mmio_write(offset, data, now)));
    }

    /// Whether [`Interrupts::rdmsr`]/[`Interrupts::wrmsr`] answer `msr`
    /// (APIC base, TSC deadline, the x2APIC range).
    pub fn handles_msr(msr: u32) -> bool {
        matches!(
            msr,
            MSR_APIC_BASE | MSR_TSC_DEADLINE | MSR_X2APIC_FIRST..=MSR_X2APIC_LAST
        )
    }

    /// RDMSR of an APIC MSR; `None` means #GP.
    pub fn rdmsr(&self, vcpu: u32, msr: u32) -> Option<u64> {
        self.vcpu(vcpu)?.lapic.rdmsr(msr, self.clock.now_ns())
    }

    /// WRMSR of an APIC MSR; `false` means #GP.
    pub fn wrmsr(&self, vcpu: u32, msr: u32, value: u64) -> bool {
        let tsc = match self.vcpu(vcpu) {
            Some(v) if msr == MSR_TSC_DEADLINE => self.tsc_of(&v),
            _ => (0, 0),
        };
        self.lapic_access(vcpu, |l, now| match l.wrmsr(msr, value, now, tsc) {
            Ok(effects) => (true, effects),
            Err(_) => (false, Effects::default()),
        })
        .unwrap_or(false)
    }

    /// The guest TSC of `v` now and its rate.
    fn tsc_of(&self, v: &Vcpu) -> (u64, u64) {
        (
            self.guest_tsc.now().wrapping_add(v.tsc_offset),
            self.guest_tsc.hz(),
        )
    }

    /// `vcpu`'s TSC is now [`GuestTsc::now`] + `offset` (the guest wrote
    /// its TSC, or the machine moved it): an armed TSC deadline is compared
    /// against the new TSC (one now passed fires at once).
    pub fn set_tsc_offset(&self, vcpu: u32, offset: u64) {
        let Some(mut v) = self.vcpu(vcpu) else {
            return;
        };
        v.tsc_offset = offset;
        let tsc = self.tsc_of(&v);
        v.lapic.tsc_changed(self.clock.now_ns(), tsc);
        self.sync_timer(vcpu, &mut v);
    }

    /// CR8 (TPR bits 7:4) for 64-bit guests.
    pub fn cr8(&self, vcpu: u32) -> u64 {
        self.vcpu(vcpu).map_or(0, |v| u64::from(v.lapic.tpr() >> 4))
    }

    pub fn set_cr8(&self, vcpu: u32, value: u64) {
        self.lapic_access(vcpu, |l, _| {
            l.set_tpr(((value & 0xf) << 4) as u8);
            ((), Effects::default())
        });
    }

    /// The vector to inject into `vcpu` next, if any: the PIC's (through
    /// LINT0 in ExtINT mode, an ExtINT message, or directly into a BSP
    /// whose LAPIC is hardware-disabled) before the LAPIC's highest IRR
    /// vector above the processor priority. Call [`Interrupts::ack`] once
    /// it is injected.
    pub fn next_interrupt(&self, vcpu: u32) -> Option<u8> {
        let (takes_pic, lapic_vector) = {
            let v = self.vcpu(vcpu)?;
            (v.lapic.accepts_pic(), v.lapic.deliverable())
        };
        let pic_vector = if takes_pic {
            lock(&self.pic).chips.peek_vector()
        } else {
            None
        };
        let mut v = self.vcpu(vcpu)?;
        if takes_pic && pic_vector.is_none() {
            v.lapic.clear_extint();
        }
        v.offered = match (pic_vector, lapic_vector) {
            (Some(p), _) => Some(Offer::Pic(p)),
            (None, Some(l)) => Some(Offer::Lapic(l)),
            (None, None) => None,
        };
        match v.offered? {
            Offer::Pic(vector) | Offer::Lapic(vector) => Some(vector),
        }
    }

    /// `vcpu` took `vector` (the one [`Interrupts::next_interrupt`]
    /// offered): the PIC's acknowledge cycle or the LAPIC's IRR-to-ISR.
    pub fn ack(&self, vcpu: u32, vector: u8) {
        let from_pic = {
            let Some(mut v) = self.vcpu(vcpu) else {
                return;
            };
            let from_pic = v.offered.take() == Some(Offer::Pic(vector));
            if from_pic {
                v.lapic.clear_extint();
            } else {
                v.lapic.acknowledge(vector);
            }
            from_pic
        };
        if from_pic {
            self.with_pic(|pic| pic.acknowledge());
        }
    }

    /// Whether an NMI is pending for `vcpu` (and takes it).
    pub fn take_nmi(&self, vcpu: u32) -> bool {
        self.vcpu(vcpu).is_some_and(|mut v| v.lapic.take_nmi())
    }

    /// The next INIT or SIPI for `vcpu`. After `Init` the machine resets
    /// the vCPU and waits; after `Sipi(v)` it starts it at `v << 12`.
    pub fn take_startup(&self, vcpu: u32) -> Option<Startup> {
        let startup = self.vcpu(vcpu)?.lapic.take_startup()?;
        Some(match startup {
            None => Startup::Init,
            Some(vector) => Startup::Sipi(vector),
        })
    }

    // ---- bus devices ----

    /// The port-I/O devices: PIC master (0x20-0x21), slave (0xa0-0xa1),
    /// ELCR (0x4d0-0x4d1).
    pub fn port_devices(&self) -> Vec<BusRange> {
        let me = || self.me.clone();
        vec![
            BusRange {
                base: PIC_MASTER_PORT,
                len: 2,
                device: Arc::new(Mutex::new(PicPorts { irq: me(), chip: 0 })),
            },
            BusRange {
                base: PIC_SLAVE_PORT,
                len: 2,
                device: Arc::new(Mutex::new(PicPorts { irq: me(), chip: 1 })),
            },
            BusRange {
                base: ELCR_PORT,
                len: 2,
                device: Arc::new(Mutex::new(ElcrPorts { irq: me() })),
            },
        ]
    }

    /// The MMIO devices: the IOAPIC (4 KiB at 0xFEC0_0000). The LAPIC page
    /// is per vCPU: [`Interrupts::lapic_mmio_read`]/`_write`.
    pub fn mmio_devices(&self) -> Vec<BusRange> {
        vec![BusRange {
            base: IOAPIC_BASE,
            len: IOAPIC_SIZE,
            device: Arc::new(Mutex::new(IoApicMmio {
                irq: self.me.clone(),
            })),
        }]
    }

    fn ioapic_write(&self, offset: u64, data: &[u8]) {
        let mut wake = Wake::default();
        {
            let mut io = lock(&self.ioapic);
            for (pin, msg) in io.mmio_write(offset, data) {
                self.deliver_from_ioapic(&mut io, pin, msg, &mut wake);
            }
        }
        self.run_wake(wake);
    }
}

impl MsiSink for Interrupts {
    /// An MSI on the APIC bus; writes outside 0xFEEx_xxxx are dropped.
    fn send(&self, msg: MsiMessage) {
        let Some(message) = decode_msi(msg) else {
            return;
        };
        let mut wake = Wake::default();
        self.deliver(&message, &mut wake);
        self.run_wake(wake);
    }
}

struct GsiLine {
    irq: Weak<Interrupts>,
    gsi: u32,
}

impl InterruptLine for GsiLine {
    fn set_level(&self, asserted: bool) {
        if let Some(irq) = self.irq.upgrade() {
            irq.set_gsi(self.gsi, asserted);
        }
    }
}

struct PicPorts {
    irq: Weak<Interrupts>,
    chip: usize,
}

impl BusDevice for PicPorts {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let Some(irq) = self.irq.upgrade() else {
            data.fill(0xff);
            return;
        };
        irq.with_pic(|pic| {
            for (i, b) in data.iter_mut().enumerate() {
                *b = pic.read_port(self.chip, ((offset + i as u64) & 1) as u8);
            }
        });
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let Some(irq) = self.irq.upgrade() {
            irq.with_pic(|pic| {
                for (i, &b) in data.iter().enumerate() {
                    pic.write_port(self.chip, ((offset + i as u64) & 1) as u8, b);
                }
            });
        }
    }
}

struct ElcrPorts {
    irq: Weak<Interrupts>,
}

impl BusDevice for ElcrPorts {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let Some(irq) = self.irq.upgrade() else {
            data.fill(0xff);
            return;
        };
        irq.with_pic(|pic| {
            for (i, b) in data.iter_mut().enumerate() {
                *b = pic.read_elcr(((offset + i as u64) & 1) as usize);
            }
        });
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let Some(irq) = self.irq.upgrade() {
            irq.with_pic(|pic| {
                for (i, &b) in data.iter().enumerate() {
                    pic.write_elcr(((offset + i as u64) & 1) as usize, b);
                }
            });
        }
    }
}

struct IoApicMmio {
    irq: Weak<Interrupts>,
}

impl BusDevice for IoApicMmio {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        match self.irq.upgrade() {
            Some(irq) => lock(&irq.ioapic).mmio_read(offset, data),
            None => data.fill(0xff),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let Some(irq) = self.irq.upgrade() {
            irq.ioapic_write(offset, data);
        }
    }
}
