//! MC146818 RTC and CMOS memory (ports 0x70 index, 0x71 data).
//!
//! Owns: the date and time (the machine's [`Clock`] plus an epoch given at
//! creation, moved by guest writes), its BCD/binary and 12/24-hour
//! encodings, status registers A-D with the update-in-progress window, the
//! century register, the 128 bytes of CMOS memory (memory sizes set by the
//! machine) and the three interrupts on IRQ 8: periodic (status A's rate
//! select), alarm (seconds, minutes, hours; 0xC0-0xFF match any value) and
//! update-ended, each enabled in status B (PIE, AIE, UIE), flagged in status
//! C (PF, AF, UF, and IRQF while an enabled flag is set; reading C clears
//! them and drops IRQ 8). Must not touch: host time (the machine picks the
//! epoch).
//!
//! Flags are computed from the [`Clock`] when status C is read, so a guest
//! that polls C sees them with interrupts off. A [`Timers`] callback runs
//! only for an enabled interrupt while IRQ 8 is not already asserted: late
//! events are coalesced, and the periodic interrupt comes at most as fast as
//! the guest reads C.
//!
//! Not modelled: daylight saving, the square-wave output, the divider chain
//! as a clock (a stopped divider stops only the periodic interrupt, not
//! time), the date alarm of later chips. The day of week is derived from
//! the date; writes to it are ignored. Changing DM or 24/12 re-encodes the
//! current time instead of leaving the registers as they were.

use std::sync::{Arc, Mutex, MutexGuard, Weak};

use vmm_bus::{BusDevice, Clock, Line, TimerId, Timers};

use crate::{from_bcd, read_bytewise, to_bcd, write_bytewise};

/// The RTC's index port and how many ports it occupies (index, data).
pub const RTC_PORT: u16 = 0x70;
pub const RTC_PORT_LEN: u64 = 2;
/// CMOS index of the century (for the FADT's CENTURY field).
pub const CENTURY_REGISTER: u8 = 0x32;
/// The RTC's ISA IRQ.
pub const RTC_IRQ: u32 = 8;

const SECONDS: u8 = 0x00;
const SECONDS_ALARM: u8 = 0x01;
const MINUTES: u8 = 0x02;
const MINUTES_ALARM: u8 = 0x03;
const HOURS: u8 = 0x04;
const HOURS_ALARM: u8 = 0x05;
const WEEKDAY: u8 = 0x06;
const DAY: u8 = 0x07;
const MONTH: u8 = 0x08;
const YEAR: u8 = 0x09;
const STATUS_A: u8 = 0x0a;
const STATUS_B: u8 = 0x0b;
const STATUS_C: u8 = 0x0c;
const STATUS_D: u8 = 0x0d;

const A_UIP: u8 = 0x80;
/// Divider bits 6-4 for the 32.768 kHz time base; others stop the divider.
const A_DIVIDER_MASK: u8 = 0x70;
const A_DIVIDER_RUNNING: u8 = 0x20;
const A_RATE_MASK: u8 = 0x0f;
const B_SET: u8 = 0x80;
const B_PIE: u8 = 0x40;
const B_AIE: u8 = 0x20;
const B_UIE: u8 = 0x10;
/// Status C: IRQF, and PF, AF, UF at the bit positions of their enables.
const C_IRQF: u8 = 0x80;
const C_EVENTS: u8 = 0x70;
const C_PF: u8 = B_PIE;
const C_AF: u8 = B_AIE;
const C_UF: u8 = B_UIE;
/// An alarm register with both top bits set matches any value.
const ALARM_ANY: u8 = 0xc0;
/// PIE, AIE, UIE and SQWE: what a reset clears in status B.
const B_RESET_CLEARS: u8 = 0x78;
const B_BINARY: u8 = 0x04;
const B_24H: u8 = 0x02;
const D_VALID: u8 = 0x80;
const HOUR_PM: u8 = 0x80;

/// Status A after power-on: 32.768 kHz time base, 1024 Hz rate.
const RESET_A: u8 = 0x26;
/// Status B after power-on: BCD, 24-hour.
const RESET_B: u8 = B_24H;
/// UIP is set this long before each update.
const UIP_NS: u64 = 244_000;
const NS_PER_SEC: i128 = 1_000_000_000;
/// The time base the periodic rates divide.
const TIME_BASE_HZ: i128 = 32_768;
const SECONDS_PER_DAY: i64 = 86_400;

/// A calendar time in the proleptic Gregorian calendar, UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct DateTime {
    year: i64,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
}

impl DateTime {
    fn from_unix(seconds: i64) -> DateTime {
        let days = seconds.div_euclid(86_400);
        let in_day = seconds.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        DateTime {
            year,
            month,
            day,
            hour: (in_day / 3600) as u8,
            minute: (in_day / 60 % 60) as u8,
            second: (in_day % 60) as u8,
        }
    }

    /// Seconds since 1970; out-of-range fields (written by a guest) are
    /// clamped into range first.
    fn to_unix(self) -> i64 {
        let month = self.month.clamp(1, 12);
        let day = self.day.clamp(1, 31);
        days_from_civil(self.year, month, day) * 86_400
            + self.hour.min(23) as i64 * 3600
            + self.minute.min(59) as i64 * 60
            + self.second.min(59) as i64
    }

    /// 1 = Sunday, as the RTC counts.
    fn weekday(self) -> u8 {
        let days = days_from_civil(self.year, self.month.clamp(1, 12), self.day.clamp(1, 31));
        // 1970-01-01 was a Thursday.
        ((days + 4).rem_euclid(7) + 1) as u8
    }
}

/// Days since 1970-01-01 to (year, month, day). Works in 400-year eras
/// (146097 days) counted from 0000-03-01, so leap days end each year.
fn civil_from_days(days: i64) -> (i64, u8, u8) {
    let shifted = days + 719_468; // days from 0000-03-01 to 1970-01-01
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u8;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u8;
    let year = year_of_era + era * 400 + (month <= 2) as i64;
    (year, month, day)
}

/// (year, month 1-12, day 1-31) to days since 1970-01-01.
fn days_from_civil(year: i64, month: u8, day: u8) -> i64 {
    let year = year - (month <= 2) as i64;
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month as i64 + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day as i64 - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The registers, the time and the interrupt flags.
struct Chip {
    clock: Arc<dyn Clock>,
    /// RTC time in ns since 1970 minus the clock's time.
    offset_ns: i128,
    /// The time as the guest is writing it while SET is on.
    held: Option<DateTime>,
    index: u8,
    cmos: [u8; 128],
    /// PF, AF and UF since status C was last read.
    flags: u8,
    /// Events up to this clock time are in `flags`.
    accounted_ns: u64,
    irq_asserted: bool,
}

impl Chip {
    fn new(clock: Arc<dyn Clock>, epoch_seconds: u64) -> Chip {
        let mut cmos = [0u8; 128];
        cmos[STATUS_A as usize] = RESET_A;
        cmos[STATUS_B as usize] = RESET_B;
        cmos[STATUS_D as usize] = D_VALID;
        Chip {
            accounted_ns: clock.now_ns(),
            clock,
            offset_ns: epoch_seconds as i128 * NS_PER_SEC,
            held: None,
            index: 0,
            cmos,
            flags: 0,
            irq_asserted: false,
        }
    }

    /// Fills the CMOS memory-size bytes the way PC firmware does, from the
    /// RAM below 4 GiB (including the first MiB) and above 4 GiB, in bytes:
    /// 0x15-0x16 base memory (640 KiB), 0x17-0x18 and 0x30-0x31 KiB above
    /// 1 MiB (at most 0xffff), 0x34-0x35 64-KiB units above 16 MiB (at most
    /// 0xffff), 0x5b-0x5d 64-KiB units above 4 GiB.
    fn set_memory(&mut self, below_4g: u64, above_4g: u64) {
        const MIB: u64 = 1 << 20;
        let extended_kib = (below_4g.saturating_sub(MIB) >> 10).min(0xffff);
        let above_16m = (below_4g.saturating_sub(16 * MIB) >> 16).min(0xffff);
        let high = (above_4g >> 16).min(0xff_ffff);
        let mut put = |index: usize, value: u64, bytes: usize| {
            for i in 0..bytes {
                self.cmos[index + i] = (value >> (8 * i)) as u8;
            }
        };
        put(0x15, 640, 2);
        put(0x17, extended_kib, 2);
        put(0x30, extended_kib, 2);
        put(0x34, above_16m, 2);
        put(0x5b, high, 3);
    }

    /// The chip's RESET pin: interrupt enables, square wave and flags off.
    fn reset(&mut self) {
        self.catch_up();
        self.cmos[STATUS_B as usize] &= !B_RESET_CLEARS;
        self.flags = 0;
    }

    fn rtc_ns(&self) -> i128 {
        self.rtc_ns_at(self.clock.now_ns())
    }

    fn rtc_ns_at(&self, clock_ns: u64) -> i128 {
        clock_ns as i128 + self.offset_ns
    }

    /// The periodic interrupt's period in time-base ticks (a power of two),
    /// if status A selects a rate and the divider runs.
    fn periodic_ticks(&self) -> Option<i128> {
        let a = self.cmos[STATUS_A as usize];
        let rate = a & A_RATE_MASK;
        if rate == 0 || a & A_DIVIDER_MASK != A_DIVIDER_RUNNING {
            return None;
        }
        // Rates 1 and 2 are 256 and 128 Hz (as 8 and 9); rate r >= 3 is
        // 65536 >> r Hz.
        let shift = if rate < 3 { rate + 6 } else { rate - 1 };
        Some(1 << shift)
    }

    /// Periodic events since 1970 up to RTC time `rtc_ns`.
    fn periods(rtc_ns: i128, ticks: i128) -> i128 {
        (rtc_ns * TIME_BASE_HZ)
            .div_euclid(NS_PER_SEC)
            .div_euclid(ticks)
    }

    /// Whether the update to unix second `second` sets AF: its time of
    /// day matches the alarm registers (as encoded now).
    fn alarm_matches(&self, second: i64) -> bool {
        let in_day = second.rem_euclid(SECONDS_PER_DAY);
        let (hour, minute, second) = (in_day / 3600, in_day / 60 % 60, in_day % 60);
        let matches = |register: u8, value: u8| {
            let alarm = self.cmos[register as usize];
            alarm & ALARM_ANY == ALARM_ANY || alarm == value
        };
        matches(SECONDS_ALARM, self.encode(second as u8))
            && matches(MINUTES_ALARM, self.encode(minute as u8))
            && matches(HOURS_ALARM, self.encode_hour(hour as u8))
    }

    /// The first second after unix second `second` (within a day) whose
    /// update sets AF.
    fn next_alarm(&self, second: i64) -> Option<i64> {
        (second + 1..=second + SECONDS_PER_DAY).find(|&s| self.alarm_matches(s))
    }

    /// Sets the flags of every event between the last accounting and now.
    fn catch_up(&mut self) {
        let now = self.clock.now_ns();
        if now <= self.accounted_ns {
            return;
        }
        let (from, to) = (self.rtc_ns_at(self.accounted_ns), self.rtc_ns_at(now));
        self.accounted_ns = now;
        if let Some(ticks) = self.periodic_ticks() {
            if Self::periods(to, ticks) > Self::periods(from, ticks) {
                self.flags |= C_PF;
            }
        }
        if self.held.is_some() {
            return; // no updates while SET
        }
        let (first, last) = (
            from.div_euclid(NS_PER_SEC) as i64,
            to.div_euclid(NS_PER_SEC) as i64,
        );
        if last > first {
            self.flags |= C_UF;
            let updates = (last - first).min(SECONDS_PER_DAY);
            if (last - updates + 1..=last).any(|s| self.alarm_matches(s)) {
                self.flags |= C_AF;
            }
        }
    }

    /// IRQF: an event flag whose interrupt is enabled.
    fn irq_flag(&self) -> bool {
        self.flags & self.status_b() & C_EVENTS != 0
    }

    /// Drives IRQ 8 from IRQF.
    fn drive(&mut self, irq8: &Line) {
        let level = self.irq_flag();
        if level != self.irq_asserted {
            self.irq_asserted = level;
            irq8.set_level(level);
        }
    }

    /// The clock time of the next event whose interrupt is enabled, unless
    /// IRQ 8 is asserted already (then nothing new can be signalled before
    /// the guest reads status C).
    fn next_interrupt_ns(&self) -> Option<u64> {
        if self.irq_flag() {
            return None;
        }
        let b = self.status_b();
        let now = self.rtc_ns();
        let mut next: Option<i128> = None;
        let mut consider = |at: i128| next = Some(next.map_or(at, |n| n.min(at)));
        if let Some(ticks) = self.periodic_ticks().filter(|_| b & B_PIE != 0) {
            let tick = (Self::periods(now, ticks) + 1) * ticks;
            consider((tick * NS_PER_SEC + TIME_BASE_HZ - 1).div_euclid(TIME_BASE_HZ));
        }
        if self.held.is_none() {
            let second = now.div_euclid(NS_PER_SEC) as i64;
            if b & B_UIE != 0 {
                consider((second as i128 + 1) * NS_PER_SEC);
            }
            if let Some(alarm) = self.next_alarm(second).filter(|_| b & B_AIE != 0) {
                consider(alarm as i128 * NS_PER_SEC);
            }
        }
        next.map(|at| (at - self.offset_ns).clamp(0, u64::MAX as i128) as u64)
    }

    fn now(&self) -> DateTime {
        self.held
            .unwrap_or_else(|| DateTime::from_unix(self.rtc_ns().div_euclid(NS_PER_SEC) as i64))
    }

    /// Makes `time` the current time, keeping the phase of the second.
    fn set_now(&mut self, time: DateTime) {
        let phase = self.rtc_ns().rem_euclid(NS_PER_SEC);
        self.offset_ns = time.to_unix() as i128 * NS_PER_SEC + phase - self.clock.now_ns() as i128;
    }

    fn status_b(&self) -> u8 {
        self.cmos[STATUS_B as usize]
    }

    fn update_in_progress(&self) -> bool {
        let into_second = self.rtc_ns().rem_euclid(NS_PER_SEC) as u64;
        self.held.is_none() && into_second >= NS_PER_SEC as u64 - UIP_NS
    }

    fn encode(&self, value: u8) -> u8 {
        if self.status_b() & B_BINARY != 0 {
            value
        } else {
            to_bcd(value as u16) as u8
        }
    }

    fn decode(&self, value: u8) -> u8 {
        if self.status_b() & B_BINARY != 0 {
            value
        } else {
            from_bcd(value as u16) as u8
        }
    }

    fn encode_hour(&self, hour: u8) -> u8 {
        if self.status_b() & B_24H != 0 {
            return self.encode(hour);
        }
        let pm = if hour >= 12 { HOUR_PM } else { 0 };
        let hour12 = match hour % 12 {
            0 => 12,
            h => h,
        };
        self.encode(hour12) | pm
    }

    fn decode_hour(&self, value: u8) -> u8 {
        if self.status_b() & B_24H != 0 {
            return self.decode(value);
        }
        let hour12 = self.decode(value & !HOUR_PM) % 12;
        hour12 + if value & HOUR_PM != 0 { 12 } else { 0 }
    }

    fn read_register(&mut self, index: u8) -> u8 {
        let now = || self.now();
        match index {
            SECONDS => self.encode(now().second),
            MINUTES => self.encode(now().minute),
            HOURS => self.encode_hour(now().hour),
            WEEKDAY => self.encode(now().weekday()),
            DAY => self.encode(now().day),
            MONTH => self.encode(now().month),
            YEAR => self.encode(now().year.rem_euclid(100) as u8),
            CENTURY_REGISTER => self.encode(now().year.div_euclid(100).clamp(0, 99) as u8),
            STATUS_A => {
                let uip = if self.update_in_progress() { A_UIP } else { 0 };
                self.cmos[STATUS_A as usize] & !A_UIP | uip
            }
            STATUS_C => {
                self.catch_up();
                let irqf = if self.irq_flag() { C_IRQF } else { 0 };
                std::mem::take(&mut self.flags) | irqf
            }
            _ => self.cmos[index as usize],
        }
    }

    fn write_register(&mut self, index: u8, value: u8) {
        self.catch_up(); // events so far count at the old settings
        let mut time = self.now();
        let year_low = time.year.rem_euclid(100);
        let century = time.year.div_euclid(100);
        match index {
            SECONDS => time.second = self.decode(value),
            MINUTES => time.minute = self.decode(value),
            HOURS => time.hour = self.decode_hour(value),
            DAY => time.day = self.decode(value),
            MONTH => time.month = self.decode(value),
            YEAR => time.year = century * 100 + self.decode(value) as i64 % 100,
            CENTURY_REGISTER => time.year = self.decode(value) as i64 * 100 + year_low,
            WEEKDAY => return,
            STATUS_A => {
                self.cmos[STATUS_A as usize] = value & !A_UIP;
                return;
            }
            STATUS_B => {
                self.write_status_b(value);
                return;
            }
            STATUS_C | STATUS_D => return, // read-only
            _ => {
                self.cmos[index as usize] = value;
                return;
            }
        }
        match &mut self.held {
            Some(held) => *held = time,
            None => self.set_now(time),
        }
    }

    fn write_status_b(&mut self, value: u8) {
        let set = value & B_SET != 0;
        match (self.held, set) {
            (None, true) => self.held = Some(self.now()),
            (Some(time), false) => {
                self.held = None;
                // Updates resume a full second after SET is released.
                self.offset_ns = time.to_unix() as i128 * NS_PER_SEC - self.clock.now_ns() as i128;
            }
            _ => {}
        }
        // Setting SET clears UIE.
        self.cmos[STATUS_B as usize] = if set { value & !B_UIE } else { value };
    }
}

struct State {
    chip: Chip,
    /// Bumped whenever the interrupt timer is re-planned; a callback of an
    /// older generation does nothing.
    generation: u64,
    timer: Option<TimerId>,
}

struct Shared {
    timers: Arc<dyn Timers>,
    irq8: Line,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// After a change: IRQ 8 follows IRQF, and the timer is planned for the
    /// next enabled event. Timers are never called with the state locked.
    fn settle(self: &Arc<Self>, mut state: MutexGuard<'_, State>) {
        state.chip.drive(&self.irq8);
        state.generation += 1;
        let generation = state.generation;
        let old = state.timer.take();
        let next = state.chip.next_interrupt_ns();
        drop(state);
        if let Some(id) = old {
            self.timers.cancel(id);
        }
        let Some(deadline) = next else {
            return;
        };
        let weak: Weak<Shared> = Arc::downgrade(self);
        let callback = Box::new(move || {
            if let Some(shared) = weak.upgrade() {
                shared.fire(generation);
            }
        });
        let id = self.timers.schedule(deadline, callback);
        let mut state = self.lock();
        if state.generation == generation {
            state.timer = Some(id);
        } else {
            drop(state);
            self.timers.cancel(id);
        }
    }

    /// The planned event is due: flag it (and whatever else happened).
    fn fire(self: &Arc<Self>, generation: u64) {
        let mut state = self.lock();
        if state.generation != generation {
            return;
        }
        state.timer = None;
        state.chip.catch_up();
        self.settle(state);
    }
}

/// The RTC and CMOS: the bus device for ports 0x70-0x71.
pub struct Rtc {
    shared: Arc<Shared>,
}

impl Rtc {
    /// An RTC showing `epoch_seconds` (since 1970, UTC) when `clock` reads
    /// 0, raising `irq8` (held asserted while IRQF is set) and waking
    /// through `timers`.
    pub fn new(
        irq8: Line,
        clock: Arc<dyn Clock>,
        timers: Arc<dyn Timers>,
        epoch_seconds: u64,
    ) -> Rtc {
        Rtc {
            shared: Arc::new(Shared {
                timers,
                irq8,
                state: Mutex::new(State {
                    chip: Chip::new(clock, epoch_seconds),
                    generation: 0,
                    timer: None,
                }),
            }),
        }
    }

    /// Fills the CMOS memory-size bytes the way PC firmware does, from the
    /// RAM below 4 GiB (including the first MiB) and above 4 GiB, in bytes:
    /// 0x15-0x16 base memory (640 KiB), 0x17-0x18 and 0x30-0x31 KiB above
    /// 1 MiB (at most 0xffff), 0x34-0x35 64-KiB units above 16 MiB (at most
    /// 0xffff), 0x5b-0x5d 64-KiB units above 4 GiB.
    pub fn set_memory(&mut self, below_4g: u64, above_4g: u64) {
        self.shared.lock().chip.set_memory(below_4g, above_4g);
    }

    /// A platform reset (the chip's RESET pin): the interrupt enables, the
    /// square-wave output and the flags off, IRQ 8 dropped; time, date,
    /// mode bits and CMOS memory stay (the RTC runs on its battery).
    pub fn reset(&mut self) {
        let mut state = self.shared.lock();
        state.chip.reset();
        self.shared.settle(state);
    }
}

impl BusDevice for Rtc {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let mut state = self.shared.lock();
        let mut changed = false;
        read_bytewise(offset, data, |o| match o {
            1 => {
                let index = state.chip.index;
                changed |= index == STATUS_C;
                state.chip.read_register(index)
            }
            _ => 0xff, // the index register is write-only
        });
        if changed {
            self.shared.settle(state); // IRQ 8 dropped, next event planned
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let mut state = self.shared.lock();
        let mut changed = false;
        write_bytewise(offset, data, |o, v| match o {
            // Bit 7 masks NMIs on a PC; the VMM has no NMI sources to mask.
            0 => state.chip.index = v & 0x7f,
            1 => {
                let index = state.chip.index;
                state.chip.write_register(index, v);
                changed = true;
            }
            _ => {}
        });
        if changed {
            self.shared.settle(state);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{inb, outb, FakeClock, FakeTimers, RecordingLine};

    fn rtc(epoch: u64) -> (Rtc, Arc<FakeClock>) {
        let (r, clock, _, _) = rig(epoch);
        (r, clock)
    }

    fn rig(epoch: u64) -> (Rtc, Arc<FakeClock>, Arc<FakeTimers>, Arc<RecordingLine>) {
        let clock = FakeClock::new();
        let timers = FakeTimers::new(clock.clone());
        let irq8 = RecordingLine::new();
        let r = Rtc::new(irq8.clone(), clock.clone(), timers.clone(), epoch);
        (r, clock, timers, irq8)
    }

    fn cmos(rtc: &mut Rtc, index: u8) -> u8 {
        outb(rtc, 0, index);
        inb(rtc, 1)
    }

    fn set_cmos(rtc: &mut Rtc, index: u8, value: u8) {
        outb(rtc, 0, index);
        outb(rtc, 1, value);
    }

    /// (second, minute, hour, weekday, day, month, year, century)
    fn time_registers(rtc: &mut Rtc) -> [u8; 8] {
        [
            SECONDS,
            MINUTES,
            HOURS,
            WEEKDAY,
            DAY,
            MONTH,
            YEAR,
            CENTURY_REGISTER,
        ]
        .map(|i| cmos(rtc, i))
    }

    #[test]
    fn status_registers_after_reset() {
        let (mut r, _) = rtc(0);
        assert_eq!(cmos(&mut r, STATUS_A), 0x26);
        assert_eq!(cmos(&mut r, STATUS_B), 0x02);
        assert_eq!(cmos(&mut r, STATUS_C), 0x00);
        assert_eq!(cmos(&mut r, STATUS_D), 0x80);
        set_cmos(&mut r, STATUS_D, 0);
        set_cmos(&mut r, STATUS_A, 0xff);
        assert_eq!(cmos(&mut r, STATUS_D), 0x80, "read-only");
        assert_eq!(cmos(&mut r, STATUS_A), 0x7f, "UIP is read-only");
        assert_eq!(inb(&mut r, 0), 0xff, "index port is write-only");
    }

    #[test]
    fn bcd_24h_for_fixed_epochs() {
        for (epoch, expected) in [
            (0, [0x00, 0x00, 0x00, 0x05, 0x01, 0x01, 0x70, 0x19]),
            // 2000-02-29 (a leap day of a century leap year), Tuesday.
            (
                951_782_400,
                [0x00, 0x00, 0x00, 0x03, 0x29, 0x02, 0x00, 0x20],
            ),
            // 2024-02-29 23:59:59, Thursday.
            (
                1_709_251_199,
                [0x59, 0x59, 0x23, 0x05, 0x29, 0x02, 0x24, 0x20],
            ),
            // 2038-01-19 03:14:08 (past 32-bit time_t), Tuesday.
            (
                2_147_483_648,
                [0x08, 0x14, 0x03, 0x03, 0x19, 0x01, 0x38, 0x20],
            ),
            // 2100-03-01 (2100 is not a leap year), Monday.
            (
                4_107_585_600,
                [0x00, 0x00, 0x12, 0x02, 0x01, 0x03, 0x00, 0x21],
            ),
        ] {
            let (mut r, _) = rtc(epoch);
            assert_eq!(time_registers(&mut r), expected, "epoch {epoch}");
        }
    }

    #[test]
    fn leap_day_rolls_over_with_the_clock() {
        let (mut r, clock) = rtc(1_709_251_199); // 2024-02-29 23:59:59
        clock.advance(1_000_000_000);
        assert_eq!(
            time_registers(&mut r),
            [0x00, 0x00, 0x00, 0x06, 0x01, 0x03, 0x24, 0x20],
            "Friday 2024-03-01 00:00:00"
        );
    }

    #[test]
    fn binary_and_12_hour_encodings() {
        let (mut r, clock) = rtc(1_709_251_199); // 23:59:59
        set_cmos(&mut r, STATUS_B, B_BINARY | B_24H);
        assert_eq!(time_registers(&mut r), [59, 59, 23, 5, 29, 2, 24, 20]);
        set_cmos(&mut r, STATUS_B, B_BINARY);
        assert_eq!(cmos(&mut r, HOURS), 11 | HOUR_PM, "11 PM");
        set_cmos(&mut r, STATUS_B, 0);
        assert_eq!(cmos(&mut r, HOURS), 0x91, "11 PM in BCD");
        clock.advance(1_000_000_000);
        assert_eq!(cmos(&mut r, HOURS), 0x12, "midnight is 12 AM");
        clock.advance(12 * 3600 * 1_000_000_000);
        assert_eq!(cmos(&mut r, HOURS), 0x92, "noon is 12 PM");
        clock.advance(3600 * 1_000_000_000);
        assert_eq!(cmos(&mut r, HOURS), 0x81, "1 PM");
    }

    #[test]
    fn update_in_progress_window() {
        let (mut r, clock) = rtc(0);
        clock.set(999_755_999);
        assert_eq!(cmos(&mut r, STATUS_A) & A_UIP, 0);
        clock.set(999_756_000);
        assert_eq!(cmos(&mut r, STATUS_A) & A_UIP, A_UIP);
        clock.set(1_000_000_000);
        assert_eq!(cmos(&mut r, STATUS_A) & A_UIP, 0);
        assert_eq!(cmos(&mut r, SECONDS), 0x01);
    }

    /// Linux's `mc146818_set_time`: SET on, write the fields, SET off.
    #[test]
    fn guest_sets_the_time() {
        let (mut r, clock) = rtc(0);
        clock.set(5_500_000_000);
        set_cmos(&mut r, STATUS_B, B_SET | B_24H | B_UIE);
        assert_eq!(cmos(&mut r, STATUS_B), B_SET | B_24H, "SET clears UIE");
        for (index, value) in [
            (YEAR, 0x24),
            (MONTH, 0x02),
            (DAY, 0x29),
            (HOURS, 0x12),
            (MINUTES, 0x34),
            (SECONDS, 0x56),
            (CENTURY_REGISTER, 0x20),
        ] {
            set_cmos(&mut r, index, value);
        }
        clock.advance(3_000_000_000);
        assert_eq!(cmos(&mut r, SECONDS), 0x56, "frozen while SET");
        assert_eq!(cmos(&mut r, STATUS_A) & A_UIP, 0, "no updates while SET");
        set_cmos(&mut r, STATUS_B, B_24H);
        assert_eq!(
            time_registers(&mut r),
            [0x56, 0x34, 0x12, 0x05, 0x29, 0x02, 0x24, 0x20]
        );
        clock.advance(999_999_999);
        assert_eq!(cmos(&mut r, SECONDS), 0x56);
        clock.advance(1);
        assert_eq!(
            cmos(&mut r, SECONDS),
            0x57,
            "a full second after SET is released"
        );
    }

    #[test]
    fn single_field_writes_keep_the_phase() {
        let (mut r, clock) = rtc(0);
        clock.set(300_000_000);
        set_cmos(&mut r, STATUS_B, B_24H | B_BINARY);
        set_cmos(&mut r, MINUTES, 42);
        set_cmos(&mut r, HOURS, 7);
        assert_eq!(time_registers(&mut r)[..3], [0, 42, 7]);
        clock.set(1_000_000_000);
        assert_eq!(cmos(&mut r, SECONDS), 1);
        // 12-hour writes: 7 PM.
        set_cmos(&mut r, STATUS_B, B_BINARY);
        set_cmos(&mut r, HOURS, 7 | HOUR_PM);
        set_cmos(&mut r, STATUS_B, B_BINARY | B_24H);
        assert_eq!(cmos(&mut r, HOURS), 19);
        // Garbage from the guest is clamped, never a panic.
        set_cmos(&mut r, MONTH, 0xff);
        set_cmos(&mut r, DAY, 0);
        assert_eq!((cmos(&mut r, MONTH), cmos(&mut r, DAY)), (12, 1));
    }

    #[test]
    fn nmi_bit_is_ignored_and_memory_is_kept() {
        let (mut r, _) = rtc(0);
        set_cmos(&mut r, 0x80 | 0x40, 0xab);
        assert_eq!(cmos(&mut r, 0x40), 0xab);
        assert_eq!(cmos(&mut r, 0x80 | STATUS_D), 0x80);
        let mut wide = [0u8; 2];
        r.read(0, &mut wide);
        assert_eq!(wide, [0xff, 0x80], "a 16-bit read is index then data");
    }

    #[test]
    fn memory_size_bytes() {
        let (mut r, _) = rtc(0);
        r.set_memory(3 << 30, 2 << 30); // 5 GiB: 3 below, 2 above 4 GiB
        let word = |r: &mut Rtc, i: u8| cmos(r, i) as u32 | (cmos(r, i + 1) as u32) << 8;
        assert_eq!(word(&mut r, 0x15), 640);
        assert_eq!(word(&mut r, 0x17), 0xffff);
        assert_eq!(word(&mut r, 0x30), 0xffff);
        assert_eq!(word(&mut r, 0x34), ((3 << 30) - (16 << 20)) >> 16);
        let high = word(&mut r, 0x5b) | (cmos(&mut r, 0x5d) as u32) << 16;
        assert_eq!(high, (2 << 30) >> 16);
        r.set_memory(8 << 20, 0); // 8 MiB
        assert_eq!(word(&mut r, 0x17), 7 * 1024);
        assert_eq!(word(&mut r, 0x34), 0);
        assert_eq!(cmos(&mut r, 0x5b), 0);
    }

    const SECOND: u64 = 1_000_000_000;

    #[test]
    fn periodic_interrupt_at_the_selected_rate_until_status_c_is_read() {
        let (mut r, clock, timers, irq8) = rig(0);
        clock.set(SECOND / 4); // 0.25 s into the first second
        assert!(timers.deadlines().is_empty(), "nothing enabled");
        assert_eq!(
            cmos(&mut r, STATUS_C),
            C_PF,
            "PF latched at 1024 Hz all along"
        );
        set_cmos(&mut r, STATUS_B, B_24H | B_PIE); // 1024 Hz (status A 0x26)
        let period = SECOND / 1024 + 1; // 976562.5 ns, rounded up
        assert_eq!(
            timers.deadlines(),
            [(257 * SECOND).div_ceil(1024)],
            "period 257"
        );
        timers.run_until(SECOND / 4 + 10 * period);
        assert_eq!(irq8.rising_edges(), 1, "held until status C is read");
        assert!(timers.deadlines().is_empty(), "no timer while IRQ 8 is up");
        assert_eq!(cmos(&mut r, STATUS_C), C_IRQF | C_PF);
        assert!(!irq8.level(), "reading C drops IRQ 8");
        assert_eq!(cmos(&mut r, STATUS_C), 0, "read clears");
        timers.run_until(SECOND / 4 + 11 * period);
        assert_eq!(irq8.rising_edges(), 2);
        // Rate select: 2 Hz (rate 15), 256 Hz (rate 1), and none (0).
        for (a, hz) in [(0x2f, 2), (0x21, 256), (0x23, 8192)] {
            cmos(&mut r, STATUS_C);
            set_cmos(&mut r, STATUS_A, a);
            let now = clock.now_ns();
            let next = timers.deadlines()[0];
            assert!(next > now && next - now <= SECOND / hz + 1, "rate {a:#x}");
            let phase = (next as u128 * hz as u128) % SECOND as u128;
            assert!(phase < hz as u128, "on a period boundary, rate {a:#x}");
        }
        for a in [0x20, 0x66] {
            set_cmos(&mut r, STATUS_A, a); // no rate; divider stopped
            cmos(&mut r, STATUS_C);
            assert!(timers.deadlines().is_empty(), "status A {a:#x}");
        }
    }

    #[test]
    fn update_ended_interrupt_each_second_but_not_while_set() {
        let (mut r, clock, timers, irq8) = rig(1_709_251_100); // 23:58:20
        set_cmos(&mut r, STATUS_A, 0x20); // no periodic rate: PF stays clear
        clock.set(SECOND / 2);
        set_cmos(&mut r, STATUS_B, B_24H | B_UIE);
        assert_eq!(timers.deadlines(), [SECOND]);
        timers.run_until(SECOND);
        assert!(irq8.level());
        assert_eq!(cmos(&mut r, SECONDS), 0x21, "the update has happened");
        assert_eq!(cmos(&mut r, STATUS_C), C_IRQF | C_UF);
        assert_eq!(timers.deadlines(), [2 * SECOND]);
        // SET stops updates (and clears UIE; set it again).
        set_cmos(&mut r, STATUS_B, B_SET | B_24H);
        set_cmos(&mut r, STATUS_B, B_SET | B_24H | B_UIE);
        assert!(timers.deadlines().is_empty());
        timers.run_until(5 * SECOND);
        assert_eq!(cmos(&mut r, STATUS_C), 0, "no update while SET");
        assert_eq!(irq8.rising_edges(), 1);
    }

    #[test]
    fn alarm_interrupt_at_the_matching_second_with_dont_care_values() {
        let (mut r, clock, timers, irq8) = rig(1_709_251_199); // 2024-02-29 23:59:59
        set_cmos(&mut r, STATUS_A, 0x20); // no periodic rate: PF stays clear
                                          // Linux's cmos_set_alarm: 00:00:05 in BCD, then AIE.
        set_cmos(&mut r, SECONDS_ALARM, 0x05);
        set_cmos(&mut r, MINUTES_ALARM, 0x00);
        set_cmos(&mut r, HOURS_ALARM, 0x00);
        set_cmos(&mut r, STATUS_B, B_24H | B_AIE);
        assert_eq!(timers.deadlines(), [6 * SECOND]);
        timers.run_until(6 * SECOND - 1);
        assert!(!irq8.level());
        timers.run_until(6 * SECOND);
        assert!(irq8.level());
        assert_eq!(cmos(&mut r, STATUS_C), C_IRQF | C_AF | C_UF);
        assert_eq!(
            timers.deadlines(),
            [(6 + 86_400) * SECOND],
            "the same time tomorrow"
        );
        // 0xC0..0xFF match any value: every second.
        set_cmos(&mut r, SECONDS_ALARM, 0xff);
        set_cmos(&mut r, MINUTES_ALARM, 0xc0);
        set_cmos(&mut r, HOURS_ALARM, 0xc0);
        assert_eq!(timers.deadlines(), [7 * SECOND]);
        // 12-hour BCD mode compares the encoded hour: 12 AM is 0x12.
        set_cmos(&mut r, STATUS_B, B_AIE);
        set_cmos(&mut r, HOURS_ALARM, 0x12);
        set_cmos(&mut r, MINUTES_ALARM, 0x01);
        set_cmos(&mut r, SECONDS_ALARM, 0x00);
        assert_eq!(timers.deadlines(), [61 * SECOND], "00:01:00");
        clock.set(61 * SECOND);
        assert_eq!(cmos(&mut r, STATUS_C) & C_AF, C_AF, "polled at 00:01:00");
    }

    #[test]
    fn flags_are_set_with_interrupts_off_and_enabling_raises_at_once() {
        let (mut r, clock, timers, irq8) = rig(0);
        clock.advance(SECOND + 1);
        assert_eq!(cmos(&mut r, STATUS_C), C_PF | C_UF, "polled: no IRQF");
        assert!(irq8.history().is_empty());
        assert!(timers.deadlines().is_empty());
        clock.advance(SECOND);
        set_cmos(&mut r, STATUS_B, B_24H | B_UIE);
        assert!(irq8.level(), "a pending flag raises IRQ 8 when enabled");
        assert_eq!(cmos(&mut r, STATUS_C), C_IRQF | C_PF | C_UF);
    }

    #[test]
    fn a_platform_reset_clears_the_interrupt_enables_and_keeps_the_time() {
        let (mut r, clock, timers, irq8) = rig(1_709_251_199); // 23:59:59
        set_cmos(&mut r, STATUS_B, 0x78 | B_24H | B_BINARY);
        set_cmos(&mut r, 0x40, 0xab);
        timers.run_until(SECOND);
        assert!(irq8.level());
        r.reset();
        assert!(!irq8.level(), "IRQ 8 dropped");
        assert!(timers.deadlines().is_empty());
        assert_eq!(cmos(&mut r, STATUS_B), B_24H | B_BINARY);
        assert_eq!(cmos(&mut r, STATUS_C), 0, "flags cleared");
        assert_eq!(cmos(&mut r, 0x40), 0xab, "CMOS memory kept");
        clock.set(SECOND);
        assert_eq!(time_registers(&mut r)[..3], [0, 0, 0], "the clock runs on");
    }
}
