//! MC146818 RTC and CMOS memory (ports 0x70 index, 0x71 data).
//!
//! Owns: the date and time (the machine's [`Clock`] plus an epoch given at
//! creation, moved by guest writes), its BCD/binary and 12/24-hour
//! encodings, status registers A-D with the update-in-progress window, the
//! century register and the 128 bytes of CMOS memory (memory sizes set by
//! the machine). Must not touch: host time (the machine picks the epoch).
//!
//! Not modelled: periodic, alarm and update-ended interrupts (status C reads
//! 0 and IRQ8 is never raised; alarm registers are plain memory), daylight
//! saving, and the divider chain (a stopped divider does not stop time). The
//! day of week is derived from the date; writes to it are ignored. Changing
//! DM or 24/12 re-encodes the current time instead of leaving the registers
//! as they were.

use std::sync::Arc;

use vmm_bus::{BusDevice, Clock};

use crate::{from_bcd, read_bytewise, to_bcd, write_bytewise};

/// The RTC's index port and how many ports it occupies (index, data).
pub const RTC_PORT: u16 = 0x70;
pub const RTC_PORT_LEN: u64 = 2;
/// CMOS index of the century (for the FADT's CENTURY field).
pub const CENTURY_REGISTER: u8 = 0x32;

const SECONDS: u8 = 0x00;
const MINUTES: u8 = 0x02;
const HOURS: u8 = 0x04;
const WEEKDAY: u8 = 0x06;
const DAY: u8 = 0x07;
const MONTH: u8 = 0x08;
const YEAR: u8 = 0x09;
const STATUS_A: u8 = 0x0a;
const STATUS_B: u8 = 0x0b;
const STATUS_C: u8 = 0x0c;
const STATUS_D: u8 = 0x0d;

const A_UIP: u8 = 0x80;
const B_SET: u8 = 0x80;
const B_UIE: u8 = 0x10;
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

/// The RTC and CMOS: the bus device for ports 0x70-0x71.
pub struct Rtc {
    clock: Arc<dyn Clock>,
    /// RTC time in ns since 1970 minus the clock's time.
    offset_ns: i128,
    /// The time as the guest is writing it while SET is on.
    held: Option<DateTime>,
    index: u8,
    cmos: [u8; 128],
}

impl Rtc {
    /// An RTC showing `epoch_seconds` (since 1970, UTC) when `clock` reads 0.
    pub fn new(clock: Arc<dyn Clock>, epoch_seconds: u64) -> Rtc {
        let mut cmos = [0u8; 128];
        cmos[STATUS_A as usize] = RESET_A;
        cmos[STATUS_B as usize] = RESET_B;
        cmos[STATUS_D as usize] = D_VALID;
        Rtc {
            clock,
            offset_ns: epoch_seconds as i128 * NS_PER_SEC,
            held: None,
            index: 0,
            cmos,
        }
    }

    /// Fills the CMOS memory-size bytes the way PC firmware does, from the
    /// RAM below 4 GiB (including the first MiB) and above 4 GiB, in bytes:
    /// 0x15-0x16 base memory (640 KiB), 0x17-0x18 and 0x30-0x31 KiB above
    /// 1 MiB (at most 0xffff), 0x34-0x35 64-KiB units above 16 MiB (at most
    /// 0xffff), 0x5b-0x5d 64-KiB units above 4 GiB.
    pub fn set_memory(&mut self, below_4g: u64, above_4g: u64) {
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

    /// A platform reset (the chip's RESET pin): the interrupt enables and
    /// the square-wave output off; time, date, mode bits and CMOS memory
    /// stay (the RTC runs on its battery).
    pub fn reset(&mut self) {
        self.cmos[STATUS_B as usize] &= !B_RESET_CLEARS;
    }

    fn rtc_ns(&self) -> i128 {
        self.clock.now_ns() as i128 + self.offset_ns
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

    fn read_register(&self, index: u8) -> u8 {
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
            STATUS_C => 0,
            _ => self.cmos[index as usize],
        }
    }

    fn write_register(&mut self, index: u8, value: u8) {
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

impl BusDevice for Rtc {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        read_bytewise(offset, data, |o| match o {
            1 => self.read_register(self.index),
            _ => 0xff, // the index register is write-only
        });
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        write_bytewise(offset, data, |o, v| match o {
            // Bit 7 masks NMIs on a PC; the VMM has no NMI sources to mask.
            0 => self.index = v & 0x7f,
            1 => self.write_register(self.index, v),
            _ => {}
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{inb, outb, FakeClock};

    fn rtc(epoch: u64) -> (Rtc, Arc<FakeClock>) {
        let clock = FakeClock::new();
        (Rtc::new(clock.clone(), epoch), clock)
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

    #[test]
    fn a_platform_reset_clears_the_interrupt_enables_and_keeps_the_time() {
        let (mut r, clock) = rtc(1_709_251_199); // 23:59:59
        set_cmos(&mut r, STATUS_B, 0x78 | B_24H | B_BINARY);
        set_cmos(&mut r, 0x40, 0xab);
        r.reset();
        assert_eq!(cmos(&mut r, STATUS_B), B_24H | B_BINARY);
        assert_eq!(cmos(&mut r, 0x40), 0xab, "CMOS memory kept");
        clock.advance(1_000_000_000);
        assert_eq!(time_registers(&mut r)[..3], [0, 0, 0], "the clock runs on");
    }
}
