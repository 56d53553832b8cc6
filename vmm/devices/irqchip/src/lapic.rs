//! One local APIC (Intel SDM vol. 3, chapter "Advanced Programmable
//! Interrupt Controller"): the xAPIC MMIO page, the x2APIC MSRs, the APIC
//! base MSR, priorities, EOI, the ICR, the LVTs and the timer (one-shot,
//! periodic, TSC-deadline), plus what the vCPU has pending (NMI, INIT,
//! SIPI, ExtINT).
//!
//! Owns: the register state of one LAPIC and its timer arithmetic. Must not
//! touch: other LAPICs, the IOAPIC, timers or locking. Operations return
//! [`Effects`] (an IPI to send, an EOI to broadcast) and the timer's next
//! expiry; `Interrupts` carries them out.

use crate::message::{Addressing, DeliveryMode, Destination, Message};

/// Guest-physical base of the xAPIC page after reset.
pub const LAPIC_BASE: u64 = 0xfee0_0000;
pub const MSR_APIC_BASE: u32 = 0x1b;
pub const MSR_TSC_DEADLINE: u32 = 0x6e0;
/// x2APIC register MSRs: 0x800 + (xAPIC offset >> 4).
pub const MSR_X2APIC_FIRST: u32 = 0x800;
pub const MSR_X2APIC_LAST: u32 = 0x8ff;
/// The timer's input clock (what CPUID leaf 0x15's crystal would report).
pub const LAPIC_TIMER_HZ: u64 = 1_000_000_000;
/// Periodic timers never run faster than this (a guest asking for shorter
/// periods gets this one), so a guest cannot flood the timer thread.
pub const MIN_PERIOD_NS: u64 = 100_000;

pub const APIC_BASE_BSP: u64 = 1 << 8;
pub const APIC_BASE_X2APIC: u64 = 1 << 10;
pub const APIC_BASE_ENABLE: u64 = 1 << 11;
/// Reserved: bits 0-7, 9 and above the 52-bit physical address width.
const APIC_BASE_RESERVED: u64 = 0xff | (1 << 9) | !((1 << 52) - 1);

/// Version 0x14 (integrated APIC), 6 LVT entries (max LVT index 5), EOI
/// broadcast suppression supported (directed EOI through the IOAPIC's EOI
/// register).
pub const VERSION: u32 = 0x14 | (5 << 16) | (1 << 24);

mod reg {
    pub const ID: u32 = 0x02;
    pub const VERSION: u32 = 0x03;
    pub const TPR: u32 = 0x08;
    pub const APR: u32 = 0x09;
    pub const PPR: u32 = 0x0a;
    pub const EOI: u32 = 0x0b;
    pub const LDR: u32 = 0x0d;
    pub const DFR: u32 = 0x0e;
    pub const SVR: u32 = 0x0f;
    pub const ISR: u32 = 0x10;
    pub const TMR: u32 = 0x18;
    pub const IRR: u32 = 0x20;
    pub const ESR: u32 = 0x28;
    pub const ICR: u32 = 0x30;
    pub const ICR_HIGH: u32 = 0x31;
    pub const LVT_TIMER: u32 = 0x32;
    pub const LVT_ERROR: u32 = 0x37;
    pub const TIMER_INITIAL: u32 = 0x38;
    pub const TIMER_CURRENT: u32 = 0x39;
    pub const TIMER_DIVIDE: u32 = 0x3e;
    pub const SELF_IPI: u32 = 0x3f;
}

const LVT_TIMER: usize = 0;
const LVT_LINT0: usize = 3;
const LVT_ERROR: usize = 5;
const LVT_MASKED: u32 = 1 << 16;
/// Writable bits per LVT entry (timer, thermal, performance, LINT0, LINT1,
/// error); delivery status and remote IRR are read-only.
const LVT_WRITABLE: [u32; 6] = [
    0x0007_00ff,
    0x0001_07ff,
    0x0001_07ff,
    0x0001_a7ff,
    0x0001_a7ff,
    0x0001_00ff,
];
/// LINT0 as a BIOS leaves the BSP's: ExtINT, unmasked (virtual wire).
const LINT0_VIRTUAL_WIRE: u32 = 0x700;

const SVR_ENABLE: u32 = 1 << 8;
const SVR_SUPPRESS_EOI_BROADCAST: u32 = 1 << 12;
const SVR_WRITABLE: u32 = 0x13ff;
const ICR_WRITABLE: u32 = 0x000c_cfff;

/// ESR bits.
pub const ESR_SEND_ILLEGAL_VECTOR: u32 = 1 << 5;
pub const ESR_RECEIVE_ILLEGAL_VECTOR: u32 = 1 << 6;

/// A #GP for the guest (an x2APIC MSR access the SDM forbids, an illegal
/// APIC base transition).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GeneralProtection;

/// What a register access asks the rest of the machine to do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[must_use]
pub struct Effects {
    /// An IPI for the APIC bus (`source` is the caller's to fill in).
    pub ipi: Option<Message>,
    /// An EOI of a level-triggered vector for the IOAPIC.
    pub eoi_broadcast: Option<u8>,
}

/// The LAPIC's state as the APIC base MSR selects it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApicMode {
    Disabled,
    XApic,
    X2Apic,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TimerMode {
    OneShot,
    Periodic,
    TscDeadline,
}

/// 256 vectors as eight 32-bit registers, as ISR/TMR/IRR read back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Vectors([u32; 8]);

impl Vectors {
    fn set(&mut self, v: u8, on: bool) {
        let (word, bit) = (usize::from(v >> 5), 1u32 << (v & 31));
        if on {
            self.0[word] |= bit;
        } else {
            self.0[word] &= !bit;
        }
    }

    fn test(&self, v: u8) -> bool {
        self.0[usize::from(v >> 5)] & (1 << (v & 31)) != 0
    }

    fn highest(&self) -> Option<u8> {
        (0..8)
            .rev()
            .find(|&w| self.0[w] != 0)
            .map(|w| (w as u32 * 32 + 31 - self.0[w].leading_zeros()) as u8)
    }
}

/// The timer's counting state. The count is never stored: it is derived
/// from the clock at read time.
#[derive(Clone, Copy, Debug, Default)]
struct Timer {
    initial: u32,
    divide_config: u32,
    /// Counting (re)started at `resumed_ns` with `done_ns` of the first
    /// period already behind it (a divide change keeps the count going).
    resumed_ns: u64,
    done_ns: u64,
    /// One period (one-shot: the whole count) in ns.
    period_ns: u64,
    running: bool,
    deadline_tsc: u64,
    /// When the timer callback should run next.
    fire_at: Option<u64>,
    /// `fire_at` changed since the caller last looked.
    changed: bool,
}

impl Timer {
    fn divisor(&self) -> u64 {
        let code = (self.divide_config & 3) | ((self.divide_config >> 1) & 4);
        if code == 7 {
            1
        } else {
            2 << code
        }
    }

    fn ticks_to_ns(&self, ticks: u64) -> u64 {
        let ns = u128::from(ticks) * u128::from(self.divisor()) * 1_000_000_000
            / u128::from(LAPIC_TIMER_HZ);
        ns.min(u128::from(u64::MAX)) as u64
    }

    fn stop(&mut self) {
        self.running = false;
        self.initial = 0;
        self.deadline_tsc = 0;
        self.set_fire_at(None);
    }

    fn set_fire_at(&mut self, at: Option<u64>) {
        if self.fire_at != at {
            self.fire_at = at;
            self.changed = true;
        }
    }

    /// Time since the start of counting (including periods already run).
    fn elapsed(&self, now: u64) -> u64 {
        now.saturating_sub(self.resumed_ns)
            .saturating_add(self.done_ns)
    }

    /// The end of the period `elapsed` is in.
    fn next_expiry(&self, elapsed: u64) -> u64 {
        let periods = elapsed / self.period_ns + 1;
        // periods * period > elapsed >= done_ns
        self.resumed_ns
            .saturating_add(periods.saturating_mul(self.period_ns) - self.done_ns)
    }

    /// (Re)starts counting `initial` down, at the count `from`, at `now`.
    fn start(&mut self, mode: TimerMode, from: u32, now: u64) {
        let mut period = self.ticks_to_ns(u64::from(self.initial)).max(1);
        if mode == TimerMode::Periodic {
            period = period.max(MIN_PERIOD_NS);
        }
        let done = u128::from(self.initial - from.min(self.initial)) * u128::from(period)
            / u128::from(self.initial.max(1));
        self.period_ns = period;
        self.resumed_ns = now;
        self.done_ns = done as u64;
        self.running = true;
        self.changed = true;
        self.fire_at = Some(now.saturating_add(period - self.done_ns));
    }

    fn current(&self, mode: TimerMode, now: u64) -> u32 {
        if !self.running || mode == TimerMode::TscDeadline {
            return 0;
        }
        let elapsed = self.elapsed(now);
        let into = match mode {
            TimerMode::Periodic => elapsed % self.period_ns,
            _ if elapsed >= self.period_ns => return 0,
            _ => elapsed,
        };
        let done = u128::from(into) * u128::from(self.initial) / u128::from(self.period_ns);
        self.initial - done as u32
    }
}

/// One vCPU's local APIC.
#[derive(Clone, Debug)]
pub struct Lapic {
    /// The initial (and x2APIC) APIC ID: the vCPU's index.
    initial_id: u32,
    base: u64,
    xapic_id: u32,
    tpr: u8,
    ldr: u32,
    dfr: u32,
    svr: u32,
    isr: Vectors,
    tmr: Vectors,
    irr: Vectors,
    esr: u32,
    esr_pending: u32,
    icr: u64,
    lvt: [u32; 6],
    timer: Timer,
    /// Pending for the vCPU.
    nmi: bool,
    init: bool,
    sipi: Option<u8>,
    wait_for_sipi: bool,
    extint: bool,
}

impl Lapic {
    /// A LAPIC at power-up: enabled at [`LAPIC_BASE`] in xAPIC mode,
    /// software-disabled, everything masked, except that the BSP's LINT0 is
    /// in ExtINT mode as a BIOS leaves it (the PIC reaches the BSP through
    /// the virtual wire). Application processors wait for a SIPI.
    pub fn new(apic_id: u32, bsp: bool) -> Self {
        let mut lapic = Lapic {
            initial_id: apic_id,
            base: LAPIC_BASE | APIC_BASE_ENABLE | if bsp { APIC_BASE_BSP } else { 0 },
            xapic_id: apic_id,
            tpr: 0,
            ldr: 0,
            dfr: 0,
            svr: 0,
            isr: Vectors::default(),
            tmr: Vectors::default(),
            irr: Vectors::default(),
            esr: 0,
            esr_pending: 0,
            icr: 0,
            lvt: [0; 6],
            timer: Timer::default(),
            nmi: false,
            init: false,
            sipi: None,
            wait_for_sipi: !bsp,
            extint: false,
        };
        lapic.reset_registers();
        if bsp {
            lapic.lvt[LVT_LINT0] = LINT0_VIRTUAL_WIRE;
        }
        lapic.timer.changed = false;
        lapic
    }

    /// The register state of power-up and INIT (SDM "Local APIC State
    /// After Power-Up or Reset"/"After It Receives an INIT"), ID and base
    /// excepted.
    fn reset_registers(&mut self) {
        self.tpr = 0;
        self.ldr = if self.mode() == ApicMode::X2Apic {
            x2apic_ldr(self.initial_id)
        } else {
            0
        };
        self.dfr = 0xffff_ffff;
        self.svr = 0xff;
        self.isr = Vectors::default();
        self.tmr = Vectors::default();
        self.irr = Vectors::default();
        self.esr = 0;
        self.esr_pending = 0;
        self.icr = 0;
        self.lvt = [LVT_MASKED; 6];
        self.timer.stop();
        self.timer.divide_config = 0;
        self.extint = false;
    }

    pub fn mode(&self) -> ApicMode {
        match (
            self.base & APIC_BASE_ENABLE != 0,
            self.base & APIC_BASE_X2APIC != 0,
        ) {
            (false, _) => ApicMode::Disabled,
            (true, false) => ApicMode::XApic,
            (true, true) => ApicMode::X2Apic,
        }
    }

    fn software_enabled(&self) -> bool {
        self.svr & SVR_ENABLE != 0
    }

    fn timer_mode(&self) -> TimerMode {
        match (self.lvt[LVT_TIMER] >> 17) & 3 {
            1 => TimerMode::Periodic,
            2 => TimerMode::TscDeadline,
            _ => TimerMode::OneShot,
        }
    }

    /// How the APIC bus addresses this LAPIC; `None` while it is
    /// hardware-disabled (it receives nothing).
    pub fn addressing(&self) -> Option<Addressing> {
        match self.mode() {
            ApicMode::Disabled => None,
            ApicMode::XApic => Some(Addressing {
                id: self.xapic_id & 0xff,
                ldr: self.ldr,
                flat: self.dfr >> 28 == 0xf,
                x2apic: false,
            }),
            ApicMode::X2Apic => Some(Addressing {
                id: self.initial_id,
                ldr: self.ldr,
                flat: false,
                x2apic: true,
            }),
        }
    }

    pub fn ppr(&self) -> u8 {
        let isrv = self.isr.highest().unwrap_or(0);
        if self.tpr >> 4 >= isrv >> 4 {
            self.tpr
        } else {
            isrv & 0xf0
        }
    }

    /// The highest pending vector the processor priority lets through.
    pub fn deliverable(&self) -> Option<u8> {
        if self.mode() == ApicMode::Disabled {
            return None;
        }
        let v = self.irr.highest()?;
        (v >> 4 > self.ppr() >> 4).then_some(v)
    }

    /// Whether the PIC's INTR reaches this processor: through the LAPIC's
    /// LINT0 in ExtINT mode, an ExtINT message (IOAPIC pin in ExtINT
    /// mode), or directly when the BSP's LAPIC is hardware-disabled.
    pub fn accepts_pic(&self) -> bool {
        let lint0 = self.lvt[LVT_LINT0];
        match self.mode() {
            ApicMode::Disabled => self.base & APIC_BASE_BSP != 0,
            _ => {
                self.extint
                    || (lint0 & LVT_MASKED == 0
                        && DeliveryMode::from_bits(lint0 >> 8) == DeliveryMode::ExtInt)
            }
        }
    }

    /// A fixed (or lowest-priority) interrupt from the APIC bus or a local
    /// source. Dropped while software-disabled; vectors 0-15 are illegal.
    /// Returns whether IRR changed.
    pub fn accept_fixed(&mut self, vector: u8, level_triggered: bool) -> bool {
        if self.mode() == ApicMode::Disabled || !self.software_enabled() {
            return false;
        }
        if vector < 16 {
            self.error(ESR_RECEIVE_ILLEGAL_VECTOR);
            return self.lvt[LVT_ERROR] & LVT_MASKED == 0;
        }
        self.irr.set(vector, true);
        self.tmr.set(vector, level_triggered);
        true
    }

    fn error(&mut self, bits: u32) {
        self.esr_pending |= bits;
        let lvt = self.lvt[LVT_ERROR];
        let vector = lvt as u8;
        if lvt & LVT_MASKED == 0 && vector >= 16 && self.software_enabled() {
            self.irr.set(vector, true);
            self.tmr.set(vector, false);
        }
    }

    /// The processor took `vector` (injected it): IRR to ISR.
    pub fn acknowledge(&mut self, vector: u8) {
        if self.irr.test(vector) {
            self.irr.set(vector, false);
            self.isr.set(vector, true);
        }
    }

    fn eoi(&mut self) -> Effects {
        let Some(v) = self.isr.highest() else {
            return Effects::default();
        };
        self.isr.set(v, false);
        let broadcast = self.tmr.test(v) && self.svr & SVR_SUPPRESS_EOI_BROADCAST == 0;
        Effects {
            eoi_broadcast: broadcast.then_some(v),
            ..Effects::default()
        }
    }

    pub fn receive_nmi(&mut self) {
        self.nmi = true;
    }

    pub fn take_nmi(&mut self) -> bool {
        std::mem::take(&mut self.nmi)
    }

    pub fn receive_extint(&mut self) {
        self.extint = true;
    }

    pub fn clear_extint(&mut self) {
        self.extint = false;
    }

    /// INIT: the registers reset (ID, base and x2APIC mode stay) and the
    /// processor waits for a SIPI.
    pub fn receive_init(&mut self) {
        self.reset_registers();
        self.init = true;
        self.sipi = None;
        self.wait_for_sipi = true;
        self.nmi = false;
    }

    /// SIPI: honoured once after an INIT. Returns whether it was.
    pub fn receive_sipi(&mut self, vector: u8) -> bool {
        if !self.wait_for_sipi {
            return false;
        }
        self.wait_for_sipi = false;
        self.sipi = Some(vector);
        true
    }

    /// The next INIT (`Ok(None)`) or SIPI (`Ok(Some(vector))`) for the
    /// vCPU, INIT first.
    pub fn take_startup(&mut self) -> Option<Option<u8>> {
        if std::mem::take(&mut self.init) {
            return Some(None);
        }
        self.sipi.take().map(Some)
    }

    pub fn has_startup(&self) -> bool {
        self.init || self.sipi.is_some()
    }

    // ---- register access ----

    /// Reads register `index` (xAPIC offset >> 4) in the current mode;
    /// `None` if it does not exist there (or is write-only).
    fn read_register(&self, index: u32, now: u64) -> Option<u64> {
        let x2 = self.mode() == ApicMode::X2Apic;
        let value = match index {
            reg::ID if x2 => self.initial_id,
            reg::ID => self.xapic_id << 24,
            reg::VERSION => VERSION,
            reg::TPR => u32::from(self.tpr),
            reg::APR if !x2 => 0,
            reg::PPR => u32::from(self.ppr()),
            reg::LDR => self.ldr,
            reg::DFR if !x2 => self.dfr,
            reg::SVR => self.svr,
            i @ reg::ISR..=0x17 => self.isr.0[(i - reg::ISR) as usize],
            i @ reg::TMR..=0x1f => self.tmr.0[(i - reg::TMR) as usize],
            i @ reg::IRR..=0x27 => self.irr.0[(i - reg::IRR) as usize],
            reg::ESR => self.esr,
            reg::ICR if x2 => return Some(self.icr),
            reg::ICR => self.icr as u32,
            reg::ICR_HIGH if !x2 => (self.icr >> 32) as u32,
            i @ reg::LVT_TIMER..=reg::LVT_ERROR => self.lvt[(i - reg::LVT_TIMER) as usize],
            reg::TIMER_INITIAL => self.timer.initial,
            reg::TIMER_CURRENT => self.timer.current(self.timer_mode(), now),
            reg::TIMER_DIVIDE => self.timer.divide_config,
            _ => return None,
        };
        Some(u64::from(value))
    }

    /// Writes register `index` in the current mode. In x2APIC mode the
    /// SDM's #GP cases are errors; in xAPIC mode bad writes are ignored.
    fn write_register(
        &mut self,
        index: u32,
        value: u64,
        now: u64,
    ) -> Result<Effects, GeneralProtection> {
        let x2 = self.mode() == ApicMode::X2Apic;
        if x2 && index != reg::ICR && value >> 32 != 0 {
            return Err(GeneralProtection);
        }
        let v = value as u32;
        match index {
            reg::ID if !x2 => self.xapic_id = v >> 24,
            reg::TPR => self.tpr = v as u8,
            reg::EOI if x2 && v != 0 => return Err(GeneralProtection),
            reg::EOI => return Ok(self.eoi()),
            reg::LDR if !x2 => self.ldr = v & 0xff00_0000,
            reg::DFR if !x2 => self.dfr = v | 0x0fff_ffff,
            reg::SVR => self.write_svr(v),
            reg::ESR if x2 && v != 0 => return Err(GeneralProtection),
            reg::ESR => self.esr = std::mem::take(&mut self.esr_pending),
            reg::ICR if x2 => {
                self.icr = value & (0xffff_ffff_0000_0000 | u64::from(ICR_WRITABLE));
                return Ok(self.send_ipi());
            }
            reg::ICR => {
                self.icr = (self.icr & 0xffff_ffff_0000_0000) | u64::from(v & ICR_WRITABLE);
                return Ok(self.send_ipi());
            }
            reg::ICR_HIGH if !x2 => {
                self.icr = (self.icr & 0xffff_ffff) | (u64::from(v & 0xff00_0000) << 32)
            }
            i @ reg::LVT_TIMER..=reg::LVT_ERROR => self.write_lvt((i - reg::LVT_TIMER) as usize, v),
            reg::TIMER_INITIAL => self.write_initial_count(v, now),
            reg::TIMER_DIVIDE => self.write_divide_config(v, now),
            reg::SELF_IPI if x2 && v > 0xff => return Err(GeneralProtection),
            reg::SELF_IPI if x2 => {
                self.accept_fixed(v as u8, false);
            }
            _ if x2 => return Err(GeneralProtection),
            _ => {}
        }
        Ok(Effects::default())
    }

    fn write_svr(&mut self, v: u32) {
        self.svr = v & SVR_WRITABLE;
        if !self.software_enabled() {
            for lvt in &mut self.lvt {
                *lvt |= LVT_MASKED;
            }
        }
    }

    fn write_lvt(&mut self, i: usize, v: u32) {
        let mut v = v & LVT_WRITABLE[i];
        if !self.software_enabled() {
            v |= LVT_MASKED;
        }
        let old_mode = self.timer_mode();
        self.lvt[i] = (self.lvt[i] & !LVT_WRITABLE[i]) | v;
        if i == LVT_TIMER && self.timer_mode() != old_mode {
            // Changing the mode stops the timer (as KVM does).
            self.timer.stop();
        }
    }

    fn write_initial_count(&mut self, v: u32, now: u64) {
        let mode = self.timer_mode();
        if mode == TimerMode::TscDeadline {
            return; // ignored in TSC-deadline mode
        }
        self.timer.initial = v;
        if v == 0 {
            self.timer.running = false;
            self.timer.set_fire_at(None);
        } else {
            self.timer.start(mode, v, now);
        }
    }

    fn write_divide_config(&mut self, v: u32, now: u64) {
        let mode = self.timer_mode();
        let remaining = self.timer.current(mode, now);
        self.timer.divide_config = v & 0xb;
        if self.timer.running && mode != TimerMode::TscDeadline {
            // The count goes on from where it is, at the new rate.
            self.timer.start(mode, remaining.max(1), now);
        }
    }

    fn send_ipi(&mut self) -> Effects {
        let low = self.icr as u32;
        let vector = low as u8;
        let mode = DeliveryMode::from_bits(low >> 8);
        let logical = low & (1 << 11) != 0;
        let assert = low & (1 << 14) != 0;
        let level_triggered = low & (1 << 15) != 0;
        if mode == DeliveryMode::Init && !assert && level_triggered {
            return Effects::default(); // INIT level de-assert: nothing to do
        }
        if matches!(mode, DeliveryMode::Fixed | DeliveryMode::LowestPriority) && vector < 16 {
            self.error(ESR_SEND_ILLEGAL_VECTOR);
            return Effects::default();
        }
        let x2 = self.mode() == ApicMode::X2Apic;
        let dest = if x2 {
            (self.icr >> 32) as u32
        } else {
            (self.icr >> 56) as u32
        };
        let destination = match (low >> 18) & 3 {
            1 => Destination::SelfOnly,
            2 => Destination::All,
            3 => Destination::AllButSelf,
            _ if logical => Destination::Logical(dest),
            _ => Destination::Physical(dest),
        };
        Effects {
            ipi: Some(Message {
                vector,
                mode,
                level_triggered,
                destination,
                wide: x2,
                source: None,
            }),
            eoi_broadcast: None,
        }
    }

    /// An access to the xAPIC page (`offset` into it). Reads all ones when
    /// the page is not there (x2APIC mode, hardware-disabled).
    pub fn mmio_read(&self, offset: u64, data: &mut [u8], now: u64) {
        if self.mode() != ApicMode::XApic {
            data.fill(0xff);
            return;
        }
        let within = (offset & 0xf) as usize;
        let value = if within < 4 {
            self.read_register(((offset >> 4) & 0xff) as u32, now)
                .unwrap_or(0) as u32
        } else {
            0
        };
        let bytes = value.to_le_bytes();
        for (i, b) in data.iter_mut().enumerate() {
            *b = bytes.get(within + i).copied().unwrap_or(0);
        }
    }

    /// A write to the xAPIC page: 32-bit writes at register offsets; others
    /// are ignored.
    pub fn mmio_write(&mut self, offset: u64, data: &[u8], now: u64) -> Effects {
        if self.mode() != ApicMode::XApic || offset & 0xf != 0 || data.len() < 4 {
            return Effects::default();
        }
        let value = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
        self.write_register(((offset >> 4) & 0xff) as u32, u64::from(value), now)
            .unwrap_or_default()
    }

    /// RDMSR of the APIC base, TSC deadline or an x2APIC register; `None`
    /// is a #GP.
    pub fn rdmsr(&self, msr: u32, now: u64) -> Option<u64> {
        match msr {
            MSR_APIC_BASE => Some(self.base),
            MSR_TSC_DEADLINE => Some(if self.timer_mode() == TimerMode::TscDeadline {
                self.timer.deadline_tsc
            } else {
                0
            }),
            MSR_X2APIC_FIRST..=MSR_X2APIC_LAST if self.mode() == ApicMode::X2Apic => {
                self.read_register(msr - MSR_X2APIC_FIRST, now)
            }
            _ => None,
        }
    }

    /// WRMSR of the APIC base, TSC deadline or an x2APIC register. `tsc`
    /// is the guest's TSC now and its rate (for the TSC deadline).
    pub fn wrmsr(
        &mut self,
        msr: u32,
        value: u64,
        now: u64,
        tsc: (u64, u64),
    ) -> Result<Effects, GeneralProtection> {
        match msr {
            MSR_APIC_BASE => self.write_apic_base(value).map(|()| Effects::default()),
            MSR_TSC_DEADLINE => {
                self.write_tsc_deadline(value, now, tsc);
                Ok(Effects::default())
            }
            MSR_X2APIC_FIRST..=MSR_X2APIC_LAST if self.mode() == ApicMode::X2Apic => {
                self.write_register(msr - MSR_X2APIC_FIRST, value, now)
            }
            _ => Err(GeneralProtection),
        }
    }

    /// The SDM's legal transitions: disabled <-> xAPIC -> x2APIC ->
    /// disabled; x2APIC without enable is invalid. Disabling resets the
    /// registers (and the xAPIC ID).
    fn write_apic_base(&mut self, value: u64) -> Result<(), GeneralProtection> {
        if value & APIC_BASE_RESERVED != 0 {
            return Err(GeneralProtection);
        }
        let new = match (value & APIC_BASE_ENABLE != 0, value & APIC_BASE_X2APIC != 0) {
            (false, true) => return Err(GeneralProtection),
            (false, false) => ApicMode::Disabled,
            (true, false) => ApicMode::XApic,
            (true, true) => ApicMode::X2Apic,
        };
        let old = self.mode();
        match (old, new) {
            (ApicMode::X2Apic, ApicMode::XApic) | (ApicMode::Disabled, ApicMode::X2Apic) => {
                return Err(GeneralProtection)
            }
            _ => {}
        }
        // The BSP flag belongs to the processor, not the guest.
        self.base = (value & !APIC_BASE_BSP) | (self.base & APIC_BASE_BSP);
        if new == ApicMode::Disabled && old != ApicMode::Disabled {
            self.xapic_id = self.initial_id;
            self.reset_registers();
        }
        if new == ApicMode::X2Apic && old != ApicMode::X2Apic {
            self.ldr = x2apic_ldr(self.initial_id);
        }
        Ok(())
    }

    fn write_tsc_deadline(&mut self, value: u64, now: u64, tsc: (u64, u64)) {
        if self.timer_mode() != TimerMode::TscDeadline {
            return; // ignored outside TSC-deadline mode
        }
        self.timer.deadline_tsc = value;
        if value == 0 {
            self.timer.set_fire_at(None);
            return;
        }
        self.arm_tsc_deadline(now, tsc);
    }

    /// The guest's TSC changed (a new offset): an armed TSC deadline is
    /// converted to clock time again against `tsc` (the TSC now, its rate).
    pub fn tsc_changed(&mut self, now: u64, tsc: (u64, u64)) {
        if self.timer_mode() == TimerMode::TscDeadline && self.timer.deadline_tsc != 0 {
            self.arm_tsc_deadline(now, tsc);
        }
    }

    /// Schedules the timer for when the TSC reaches the deadline (at once
    /// if it has).
    fn arm_tsc_deadline(&mut self, now: u64, (tsc_now, tsc_hz): (u64, u64)) {
        let value = self.timer.deadline_tsc;
        let ticks = value.saturating_sub(tsc_now);
        let ns = if tsc_hz == 0 {
            0
        } else {
            (u128::from(ticks) * 1_000_000_000 / u128::from(tsc_hz)).min(u128::from(u64::MAX))
                as u64
        };
        self.timer.set_fire_at(Some(now.saturating_add(ns)));
        self.timer.changed = true;
    }

    /// The timer's callback time if it changed since the last call
    /// (`Some(None)`: nothing to run any more).
    pub fn take_timer_change(&mut self) -> Option<Option<u64>> {
        std::mem::take(&mut self.timer.changed).then_some(self.timer.fire_at)
    }

    /// The timer callback ran: the count reached zero (or the TSC passed
    /// the deadline). Raises the timer interrupt unless masked; returns
    /// whether IRR changed.
    pub fn timer_expired(&mut self, now: u64) -> bool {
        let Some(due) = self.timer.fire_at else {
            return false;
        };
        if now < due {
            // Early (a clock that stepped back): run again at the deadline.
            self.timer.changed = true;
            return false;
        }
        match self.timer_mode() {
            TimerMode::OneShot => {
                self.timer.running = false;
                self.timer.fire_at = None;
            }
            TimerMode::Periodic => {
                let next = self.timer.next_expiry(self.timer.elapsed(now));
                self.timer.fire_at = Some(next);
                self.timer.changed = true;
            }
            TimerMode::TscDeadline => {
                self.timer.deadline_tsc = 0;
                self.timer.fire_at = None;
            }
        }
        let lvt = self.lvt[LVT_TIMER];
        lvt & LVT_MASKED == 0 && self.accept_fixed(lvt as u8, false)
    }

    pub fn tpr(&self) -> u8 {
        self.tpr
    }

    pub fn set_tpr(&mut self, tpr: u8) {
        self.tpr = tpr;
    }
}

/// The x2APIC logical ID: cluster (ID bits 31:4) in bits 31:16, one bit
/// for ID bits 3:0.
fn x2apic_ldr(id: u32) -> u32 {
    ((id >> 4) << 16) | (1 << (id & 0xf))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_000_000;

    fn enabled(id: u32) -> Lapic {
        let mut l = Lapic::new(id, id == 0);
        let _ = write(&mut l, 0xf0, 0x1ff);
        l
    }

    fn set_base(l: &mut Lapic, value: u64) -> Result<(), GeneralProtection> {
        l.wrmsr(MSR_APIC_BASE, value, NOW, (0, 1)).map(|_| ())
    }

    type IcrCase = (u32, u32, Option<(u8, DeliveryMode, bool, Destination)>);
    /// (TPR, in-service vector, pending vector, PPR, deliverable)
    type PriorityCase = (u8, Option<u8>, u8, u8, Option<u8>);

    fn read(l: &Lapic, offset: u64) -> u32 {
        let mut d = [0u8; 4];
        l.mmio_read(offset, &mut d, NOW);
        u32::from_le_bytes(d)
    }

    fn write(l: &mut Lapic, offset: u64, value: u32) -> Effects {
        l.mmio_write(offset, &value.to_le_bytes(), NOW)
    }

    fn x2(id: u32) -> Lapic {
        let mut l = enabled(id);
        set_base(&mut l, LAPIC_BASE | APIC_BASE_ENABLE | APIC_BASE_X2APIC).unwrap();
        l
    }

    #[test]
    fn xapic_reset_values() {
        let bsp = Lapic::new(0, true);
        let ap = Lapic::new(3, false);
        let table: &[(u64, u32, u32)] = &[
            // (offset, BSP, AP)
            (0x020, 0x0000_0000, 0x0300_0000),
            (0x030, 0x0105_0014, 0x0105_0014),
            (0x080, 0, 0),
            (0x0a0, 0, 0),
            (0x0d0, 0, 0),
            (0x0e0, 0xffff_ffff, 0xffff_ffff),
            (0x0f0, 0x0000_00ff, 0x0000_00ff),
            (0x100, 0, 0),
            (0x200, 0, 0),
            (0x280, 0, 0),
            (0x300, 0, 0),
            (0x310, 0, 0),
            (0x320, 0x0001_0000, 0x0001_0000),
            (0x330, 0x0001_0000, 0x0001_0000),
            (0x340, 0x0001_0000, 0x0001_0000),
            (0x350, 0x0000_0700, 0x0001_0000),
            (0x360, 0x0001_0000, 0x0001_0000),
            (0x370, 0x0001_0000, 0x0001_0000),
            (0x380, 0, 0),
            (0x390, 0, 0),
            (0x3e0, 0, 0),
        ];
        for &(offset, b, a) in table {
            assert_eq!(read(&bsp, offset), b, "BSP {offset:#x}");
            assert_eq!(read(&ap, offset), a, "AP {offset:#x}");
        }
        assert_eq!(bsp.rdmsr(MSR_APIC_BASE, NOW), Some(0xfee0_0900));
        assert_eq!(ap.rdmsr(MSR_APIC_BASE, NOW), Some(0xfee0_0800));
    }

    #[test]
    fn xapic_write_masks() {
        let mut l = enabled(1);
        let table: &[(u64, u32, u32)] = &[
            // (offset, written, read back)
            (0x020, 0xffff_ffff, 0xff00_0000),
            (0x030, 0xffff_ffff, VERSION),
            (0x080, 0xffff_ffff, 0x0000_00ff),
            (0x0d0, 0xffff_ffff, 0xff00_0000),
            (0x0e0, 0x0000_0000, 0x0fff_ffff),
            (0x0e0, 0xffff_ffff, 0xffff_ffff),
            (0x0f0, 0xffff_ffff, 0x0000_13ff),
            (0x300, 0xffff_ffff, 0x000c_cfff),
            (0x310, 0xffff_ffff, 0xff00_0000),
            (0x320, 0xffff_ffff, 0x0007_00ff),
            (0x330, 0xffff_ffff, 0x0001_07ff),
            (0x340, 0xffff_ffff, 0x0001_07ff),
            (0x350, 0xffff_ffff, 0x0001_a7ff),
            (0x360, 0xffff_ffff, 0x0001_a7ff),
            (0x370, 0xffff_ffff, 0x0001_00ff),
            (0x390, 0xffff_ffff, 0),
            (0x3e0, 0xffff_ffff, 0x0000_000b),
            (0x100, 0xffff_ffff, 0),
            (0x180, 0xffff_ffff, 0),
            (0x200, 0xffff_ffff, 0),
        ];
        for &(offset, value, back) in table {
            let _ = write(&mut l, offset, value);
            assert_eq!(read(&l, offset), back, "{offset:#x} <- {value:#x}");
        }
    }

    #[test]
    fn software_disable_masks_every_lvt_and_drops_fixed_interrupts() {
        let mut l = enabled(0);
        let _ = write(&mut l, 0x320, 0x30);
        let _ = write(&mut l, 0xf0, 0xff);
        assert_eq!(read(&l, 0x320), 0x0001_0030);
        let _ = write(&mut l, 0x370, 0x40);
        assert_eq!(read(&l, 0x370), 0x0001_0040, "mask sticks while disabled");
        assert!(!l.accept_fixed(0x50, false));
        assert_eq!(l.deliverable(), None);
        let _ = write(&mut l, 0xf0, 0x1ff);
        assert!(l.accept_fixed(0x50, false));
    }

    #[test]
    fn sub_word_and_unaligned_accesses() {
        let mut l = enabled(2);
        let mut b = [0u8; 1];
        l.mmio_read(0x023, &mut b, NOW);
        assert_eq!(b, [0x02], "byte 3 of the ID register");
        let mut q = [0xaau8; 8];
        l.mmio_read(0x030, &mut q, NOW);
        assert_eq!(q, [0x14, 0, 0x05, 0x01, 0, 0, 0, 0]);
        let _ = l.mmio_write(0x080, &[0x20], NOW);
        assert_eq!(read(&l, 0x080), 0, "1-byte writes are ignored");
        let _ = l.mmio_write(0x084, &[0x20, 0, 0, 0], NOW);
        assert_eq!(read(&l, 0x080), 0);
        assert_eq!(read(&l, 0x084), 0);
        assert_eq!(read(&l, 0xff0), 0, "reserved");
    }

    #[test]
    fn ppr_and_deliverable_follow_tpr_and_isr() {
        // (tpr, in-service vector, pending vector) -> (PPR, deliverable)
        let table: &[PriorityCase] = &[
            (0x00, None, 0x31, 0x00, Some(0x31)),
            (0x30, None, 0x31, 0x30, None),
            (0x30, None, 0x41, 0x30, Some(0x41)),
            (0x2f, None, 0x31, 0x2f, Some(0x31)),
            (0x00, Some(0x45), 0x41, 0x40, None),
            (0x00, Some(0x45), 0x51, 0x40, Some(0x51)),
            (0x50, Some(0x45), 0x51, 0x50, None),
            (0x3f, Some(0x45), 0x61, 0x40, Some(0x61)),
            (0x4a, Some(0x45), 0x61, 0x4a, Some(0x61)),
        ];
        for &(tpr, isr, irr, ppr, want) in table {
            let mut l = enabled(0);
            l.set_tpr(tpr);
            if let Some(v) = isr {
                l.accept_fixed(v, false);
                l.acknowledge(v);
            }
            l.accept_fixed(irr, false);
            assert_eq!(read(&l, 0x0a0) as u8, ppr, "PPR for {tpr:#x} {isr:?}");
            assert_eq!(l.deliverable(), want, "for {tpr:#x} {isr:?} {irr:#x}");
        }
    }

    #[test]
    fn irr_isr_tmr_and_eoi() {
        let mut l = enabled(0);
        l.accept_fixed(0x31, false);
        l.accept_fixed(0x93, true);
        assert_eq!(read(&l, 0x210), 1 << 17);
        assert_eq!(read(&l, 0x240), 1 << 19);
        assert_eq!(read(&l, 0x1c0), 1 << 19, "TMR for the level vector");
        assert_eq!(l.deliverable(), Some(0x93));
        l.acknowledge(0x93);
        assert_eq!(read(&l, 0x140), 1 << 19);
        assert_eq!(l.deliverable(), None, "0x31 is below the in-service class");
        let e = write(&mut l, 0x0b0, 0);
        assert_eq!(e.eoi_broadcast, Some(0x93));
        assert_eq!(l.deliverable(), Some(0x31));
        l.acknowledge(0x31);
        assert_eq!(write(&mut l, 0x0b0, 0).eoi_broadcast, None, "edge");
        assert_eq!(
            write(&mut l, 0x0b0, 0),
            Effects::default(),
            "nothing in service"
        );
        // Suppressed broadcast (directed EOI).
        let _ = write(&mut l, 0x0f0, 0x11ff);
        l.accept_fixed(0x93, true);
        l.acknowledge(0x93);
        assert_eq!(write(&mut l, 0x0b0, 0).eoi_broadcast, None);
    }

    #[test]
    fn illegal_vectors_set_esr_and_raise_the_error_lvt() {
        let mut l = enabled(0);
        let _ = write(&mut l, 0x370, 0xfe);
        l.accept_fixed(0x05, false);
        assert_eq!(read(&l, 0x280), 0, "ESR latches on write");
        let _ = write(&mut l, 0x280, 0);
        assert_eq!(read(&l, 0x280), ESR_RECEIVE_ILLEGAL_VECTOR);
        assert_eq!(l.deliverable(), Some(0xfe));
        let _ = write(&mut l, 0x300, 0x0000_4003); // fixed IPI, vector 3
        let _ = write(&mut l, 0x280, 0);
        assert_eq!(read(&l, 0x280), ESR_SEND_ILLEGAL_VECTOR);
        let _ = write(&mut l, 0x280, 0);
        assert_eq!(read(&l, 0x280), 0);
    }

    #[test]
    fn icr_encodes_ipis() {
        let mut l = enabled(0);
        use DeliveryMode::*;
        use Destination::*;
        // (ICR high, ICR low) -> (vector, mode, level, destination)
        let table: &[IcrCase] = &[
            (
                0x0100_0000,
                0x0000_4031,
                Some((0x31, Fixed, false, Physical(1))),
            ),
            (
                0x0300_0000,
                0x0000_4831,
                Some((0x31, Fixed, false, Logical(3))),
            ),
            (
                0x0000_0000,
                0x0004_4040,
                Some((0x40, Fixed, false, SelfOnly)),
            ),
            (0x0000_0000, 0x0008_4041, Some((0x41, Fixed, false, All))),
            (
                0x0000_0000,
                0x000c_4042,
                Some((0x42, Fixed, false, AllButSelf)),
            ),
            (
                0x0200_0000,
                0x0000_4400,
                Some((0x00, Nmi, false, Physical(2))),
            ),
            (
                0x0200_0000,
                0x0000_c500,
                Some((0x00, Init, true, Physical(2))),
            ),
            (0x0200_0000, 0x0000_8500, None), // INIT level de-assert
            (
                0x0200_0000,
                0x0000_4609,
                Some((0x09, Startup, false, Physical(2))),
            ),
            (
                0x0f00_0000,
                0x0000_4951,
                Some((0x51, LowestPriority, false, Logical(0x0f))),
            ),
            (0x0200_0000, 0x0000_4001, None), // illegal vector
        ];
        for &(high, low, want) in table {
            let _ = write(&mut l, 0x310, high);
            let e = write(&mut l, 0x300, low);
            let got = e
                .ipi
                .map(|m| (m.vector, m.mode, m.level_triggered, m.destination));
            assert_eq!(got, want, "ICR {high:#x}:{low:#x}");
            assert!(e.ipi.is_none_or(|m| !m.wide));
            assert_eq!(read(&l, 0x300) & (1 << 12), 0, "delivery status idle");
        }
    }

    #[test]
    fn apic_base_transitions() {
        use ApicMode::*;
        let en = APIC_BASE_ENABLE;
        let x2 = APIC_BASE_X2APIC;
        // (from, write, ok, mode after)
        let table: &[(ApicMode, u64, bool, ApicMode)] = &[
            (XApic, en, true, XApic),
            (XApic, en | x2, true, X2Apic),
            (XApic, 0, true, Disabled),
            (XApic, x2, false, XApic),
            (X2Apic, en, false, X2Apic),
            (X2Apic, 0, true, Disabled),
            (X2Apic, en | x2, true, X2Apic),
            (Disabled, en | x2, false, Disabled),
            (Disabled, en, true, XApic),
            (XApic, en | 0x10, false, XApic),
            (XApic, en | (1 << 9), false, XApic),
            (XApic, en | (1 << 55), false, XApic),
        ];
        for &(from, value, ok, after) in table {
            let mut l = Lapic::new(1, false);
            let base = |bits| LAPIC_BASE | bits;
            match from {
                Disabled => set_base(&mut l, base(0)).unwrap(),
                X2Apic => set_base(&mut l, base(en | x2)).unwrap(),
                XApic => {}
            };
            let r = set_base(&mut l, base(value));
            assert_eq!(r.is_ok(), ok, "{from:?} <- {value:#x}");
            assert_eq!(l.mode(), after, "{from:?} <- {value:#x}");
        }
        // The BSP flag is the processor's.
        let mut l = Lapic::new(0, true);
        set_base(&mut l, LAPIC_BASE | en).unwrap();
        assert_eq!(
            l.rdmsr(MSR_APIC_BASE, NOW),
            Some(LAPIC_BASE | en | APIC_BASE_BSP)
        );
    }

    #[test]
    fn hardware_disable_resets_registers_and_hides_the_page() {
        let mut l = enabled(1);
        let _ = write(&mut l, 0x020, 0x0700_0000);
        let _ = write(&mut l, 0x080, 0x20);
        l.accept_fixed(0x40, false);
        set_base(&mut l, LAPIC_BASE).unwrap();
        let mut d = [0u8; 4];
        l.mmio_read(0x080, &mut d, NOW);
        assert_eq!(d, [0xff; 4]);
        assert_eq!(l.deliverable(), None);
        assert!(l.addressing().is_none());
        set_base(&mut l, LAPIC_BASE | APIC_BASE_ENABLE).unwrap();
        assert_eq!(read(&l, 0x020), 0x0100_0000, "ID back to the initial one");
        assert_eq!(read(&l, 0x080), 0);
        assert_eq!(read(&l, 0x0f0), 0xff);
        assert_eq!(read(&l, 0x200 + 0x20), 0);
    }

    #[test]
    fn x2apic_msrs_read_table() {
        let mut l = x2(0x13);
        l.set_tpr(0x20);
        let table: &[(u32, Option<u64>)] = &[
            (0x802, Some(0x13)),
            (0x803, Some(u64::from(VERSION))),
            (0x808, Some(0x20)),
            (0x809, None), // APR does not exist in x2APIC mode
            (0x80a, Some(0x20)),
            (0x80b, None), // EOI is write-only
            (0x80c, None),
            (0x80d, Some(0x0001_0008)),
            (0x80e, None), // no DFR
            (0x80f, Some(0x1ff)),
            (0x810, Some(0)),
            (0x828, Some(0)),
            (0x82f, None), // no CMCI LVT
            (0x830, Some(0)),
            (0x831, None), // no ICR high half
            (0x832, Some(0x0001_0000)),
            (0x837, Some(0x0001_0000)),
            (0x838, Some(0)),
            (0x839, Some(0)),
            (0x83e, Some(0)),
            (0x83f, None), // SELF IPI is write-only
            (0x840, None),
            (0x8ff, None),
        ];
        for &(msr, want) in table {
            assert_eq!(l.rdmsr(msr, NOW), want, "rdmsr {msr:#x}");
        }
        let xapic = enabled(1);
        assert_eq!(
            xapic.rdmsr(0x802, NOW),
            None,
            "x2APIC MSRs need x2APIC mode"
        );
    }

    #[test]
    fn x2apic_msrs_write_table() {
        // (msr, value, accepted)
        let table: &[(u32, u64, bool)] = &[
            (0x802, 5, false),            // ID read-only
            (0x803, 0, false),            // version read-only
            (0x808, 0x20, true),          // TPR
            (0x808, 1 << 32, false),      // reserved high half
            (0x80a, 0, false),            // PPR read-only
            (0x80b, 0, true),             // EOI
            (0x80b, 1, false),            // EOI with a value
            (0x80d, 0, false),            // LDR read-only
            (0x80e, 0, false),            // no DFR
            (0x80f, 0x1ff, true),         // SVR
            (0x810, 0, false),            // ISR read-only
            (0x828, 0, true),             // ESR
            (0x828, 1, false),            // ESR with a value
            (0x830, 0x1_0000_4030, true), // ICR, 64-bit
            (0x831, 0, false),            // no ICR high half
            (0x832, 0x30, true),          // LVT timer
            (0x838, 100, true),           // initial count
            (0x839, 0, false),            // current count read-only
            (0x83e, 3, true),             // divide
            (0x83f, 0x40, true),          // SELF IPI
            (0x83f, 0x140, false),        // SELF IPI reserved bits
            (0x850, 0, false),
        ];
        for &(msr, value, ok) in table {
            let mut l = x2(0);
            let r = l.wrmsr(msr, value, NOW, (0, 1));
            assert_eq!(r.is_ok(), ok, "wrmsr {msr:#x} <- {value:#x}");
        }
    }

    #[test]
    fn x2apic_icr_self_ipi_and_ldr() {
        let mut l = x2(5);
        let e = l.wrmsr(0x830, (7u64 << 32) | 0x4031, NOW, (0, 1)).unwrap();
        let m = e.ipi.unwrap();
        assert_eq!(m.destination, Destination::Physical(7));
        assert!(m.wide);
        assert_eq!(l.rdmsr(0x830, NOW), Some((7u64 << 32) | 0x4031));
        let e = l
            .wrmsr(0x830, (0x0001_0002u64 << 32) | 0x4832, NOW, (0, 1))
            .unwrap();
        assert_eq!(
            e.ipi.unwrap().destination,
            Destination::Logical(0x0001_0002)
        );
        assert_eq!(l.rdmsr(0x80d, NOW), Some(0x20));
        let _ = l.wrmsr(0x83f, 0x45, NOW, (0, 1)).unwrap();
        assert_eq!(l.deliverable(), Some(0x45));
        let mut d = [0u8; 4];
        l.mmio_read(0x020, &mut d, NOW);
        assert_eq!(d, [0xff; 4], "no xAPIC page in x2APIC mode");
    }

    #[test]
    fn init_resets_and_waits_for_sipi() {
        let mut l = enabled(1);
        assert!(l.receive_sipi(0x10), "an AP starts waiting for SIPI");
        assert_eq!(l.take_startup(), Some(Some(0x10)));
        assert!(!l.receive_sipi(0x11), "only one SIPI after INIT");
        let _ = write(&mut l, 0x020, 0x0900_0000);
        l.accept_fixed(0x40, false);
        l.receive_init();
        assert_eq!(read(&l, 0x020), 0x0900_0000, "INIT keeps the ID");
        assert_eq!(read(&l, 0x0f0), 0xff, "and resets the rest");
        assert_eq!(l.deliverable(), None);
        assert!(l.receive_sipi(0x9a));
        assert_eq!(l.take_startup(), Some(None));
        assert_eq!(l.take_startup(), Some(Some(0x9a)));
        assert_eq!(l.take_startup(), None);
        let bsp = Lapic::new(0, true);
        assert!(!bsp.clone().receive_sipi(0x10), "the BSP is running");
    }

    #[test]
    fn divide_configuration_table() {
        for (config, divisor) in [
            (0x0, 2),
            (0x1, 4),
            (0x2, 8),
            (0x3, 16),
            (0x8, 32),
            (0x9, 64),
            (0xa, 128),
            (0xb, 1),
        ] {
            let mut l = enabled(0);
            let _ = write(&mut l, 0x3e0, config);
            let _ = l.write_register(reg::TIMER_INITIAL, 1000, 0);
            assert_eq!(
                l.take_timer_change(),
                Some(Some(1000 * divisor * 1_000_000_000 / LAPIC_TIMER_HZ)),
                "divide {config:#x}"
            );
        }
    }

    #[test]
    fn one_shot_counts_down_from_the_clock_and_fires_once() {
        let mut l = enabled(0);
        let _ = l.write_register(reg::LVT_TIMER, 0x31, 0);
        let _ = l.write_register(reg::TIMER_DIVIDE, 0x3, 0); // 16
        let _ = l.write_register(reg::TIMER_INITIAL, 1000, 100);
        assert_eq!(l.take_timer_change(), Some(Some(100 + 16_000)));
        assert_eq!(l.take_timer_change(), None);
        let count = |l: &Lapic, now| l.read_register(reg::TIMER_CURRENT, now).unwrap();
        assert_eq!(count(&l, 100), 1000);
        assert_eq!(count(&l, 100 + 16 * 250), 750);
        assert_eq!(count(&l, 100 + 16_000), 0);
        assert!(l.timer_expired(100 + 16_000));
        assert_eq!(l.deliverable(), Some(0x31));
        assert_eq!(l.take_timer_change(), None, "one-shot: nothing more");
        assert!(!l.timer_expired(200_000), "a stale callback does nothing");
        assert_eq!(count(&l, 200_000), 0);
        assert_eq!(l.read_register(reg::TIMER_INITIAL, 0), Some(1000));
        // Writing 0 stops a running timer.
        let _ = l.write_register(reg::TIMER_INITIAL, 50, 300_000);
        assert!(l.take_timer_change().unwrap().is_some());
        let _ = l.write_register(reg::TIMER_INITIAL, 0, 300_001);
        assert_eq!(l.take_timer_change(), Some(None));
    }

    #[test]
    fn masked_timer_counts_without_interrupts() {
        let mut l = enabled(0);
        let _ = l.write_register(reg::LVT_TIMER, 0x1_0031, 0);
        let _ = l.write_register(reg::TIMER_INITIAL, 10, 0);
        assert_eq!(l.read_register(reg::TIMER_CURRENT, 10).unwrap(), 5);
        assert!(!l.timer_expired(20));
        assert_eq!(l.deliverable(), None);
    }

    #[test]
    fn periodic_reloads_and_has_a_minimum_period() {
        let mut l = enabled(0);
        let _ = l.write_register(reg::LVT_TIMER, 0x2_0032, 0);
        let _ = l.write_register(reg::TIMER_DIVIDE, 0xb, 0); // 1
        let _ = l.write_register(reg::TIMER_INITIAL, 1_000_000, 0); // 1 ms
        assert_eq!(l.take_timer_change(), Some(Some(1_000_000)));
        let count = |l: &Lapic, now| l.read_register(reg::TIMER_CURRENT, now).unwrap();
        assert_eq!(count(&l, 2_250_000), 750_000, "reloaded twice");
        assert!(l.timer_expired(1_000_000));
        assert_eq!(l.take_timer_change(), Some(Some(2_000_000)));
        // Late by several periods: the next expiry is the next boundary.
        l.acknowledge(0x32);
        assert!(l.timer_expired(4_500_000));
        assert_eq!(l.take_timer_change(), Some(Some(5_000_000)));
        // A tiny period is stretched to the minimum.
        let _ = l.write_register(reg::TIMER_INITIAL, 1, 10_000_000);
        assert_eq!(
            l.take_timer_change(),
            Some(Some(10_000_000 + MIN_PERIOD_NS))
        );
    }

    #[test]
    fn divide_change_keeps_the_count_going() {
        let mut l = enabled(0);
        let _ = l.write_register(reg::TIMER_DIVIDE, 0xb, 0); // 1
        let _ = l.write_register(reg::TIMER_INITIAL, 1000, 0);
        let _ = l.take_timer_change();
        let _ = l.write_register(reg::TIMER_DIVIDE, 0x0, 400); // 2, 600 left
        assert_eq!(l.read_register(reg::TIMER_CURRENT, 400), Some(600));
        assert_eq!(l.read_register(reg::TIMER_CURRENT, 600), Some(500));
        assert_eq!(l.take_timer_change(), Some(Some(400 + 1200)));
    }

    #[test]
    fn tsc_deadline_mode() {
        let mut l = enabled(0);
        let tsc = (5_000, 2_000_000_000); // 2 GHz
        let _ = l.wrmsr(MSR_TSC_DEADLINE, 9_000, 0, tsc).unwrap();
        assert_eq!(
            l.rdmsr(MSR_TSC_DEADLINE, 0),
            Some(0),
            "ignored in one-shot mode"
        );
        assert_eq!(l.take_timer_change(), None);
        let _ = l.write_register(reg::LVT_TIMER, 0x4_0033, 0);
        let _ = l.write_register(reg::TIMER_INITIAL, 1000, 0);
        assert_eq!(
            l.read_register(reg::TIMER_INITIAL, 0),
            Some(0),
            "ignored in TSC-deadline mode"
        );
        assert_eq!(l.take_timer_change(), None);
        let _ = l.wrmsr(MSR_TSC_DEADLINE, 9_000, 100, tsc).unwrap();
        assert_eq!(l.rdmsr(MSR_TSC_DEADLINE, 0), Some(9_000));
        assert_eq!(l.take_timer_change(), Some(Some(100 + 2_000)));
        assert_eq!(l.read_register(reg::TIMER_CURRENT, 500), Some(0));
        assert!(l.timer_expired(2_100));
        assert_eq!(l.deliverable(), Some(0x33));
        assert_eq!(
            l.rdmsr(MSR_TSC_DEADLINE, 0),
            Some(0),
            "cleared when it fired"
        );
        // A deadline in the past fires at once; 0 disarms.
        let _ = l.wrmsr(MSR_TSC_DEADLINE, 1, 3_000, tsc).unwrap();
        assert_eq!(l.take_timer_change(), Some(Some(3_000)));
        let _ = l.wrmsr(MSR_TSC_DEADLINE, 0, 3_000, tsc).unwrap();
        assert_eq!(l.take_timer_change(), Some(None));
        // Leaving TSC-deadline mode disarms.
        let _ = l.wrmsr(MSR_TSC_DEADLINE, 90_000, 3_000, tsc).unwrap();
        let _ = l.take_timer_change();
        let _ = l.write_register(reg::LVT_TIMER, 0x0_0033, 0);
        assert_eq!(l.take_timer_change(), Some(None));
    }

    #[test]
    fn mode_change_stops_a_running_timer() {
        let mut l = enabled(0);
        let _ = l.write_register(reg::TIMER_INITIAL, 1000, 0);
        let _ = l.take_timer_change();
        let _ = l.write_register(reg::LVT_TIMER, 0x2_0030, 10);
        assert_eq!(l.take_timer_change(), Some(None));
        assert_eq!(l.read_register(reg::TIMER_INITIAL, 10), Some(0));
        // Re-writing the same mode does not.
        let _ = l.write_register(reg::TIMER_INITIAL, 1000, 20);
        let _ = l.take_timer_change();
        let _ = l.write_register(reg::LVT_TIMER, 0x2_0031, 30);
        assert_eq!(l.take_timer_change(), None);
    }

    #[test]
    fn pic_acceptance() {
        let bsp = Lapic::new(0, true);
        assert!(bsp.accepts_pic(), "virtual wire after reset");
        let mut ap = Lapic::new(1, false);
        assert!(!ap.accepts_pic());
        ap.receive_extint();
        assert!(ap.accepts_pic());
        let mut bsp = enabled(0);
        let _ = write(&mut bsp, 0x350, 0x1_0700);
        assert!(!bsp.accepts_pic(), "LINT0 masked");
        set_base(&mut bsp, LAPIC_BASE | APIC_BASE_BSP).unwrap();
        assert!(bsp.accepts_pic(), "disabled BSP: INTR goes straight in");
    }
}
