//! The real-time clock (CMOS RTC, ports 0x70/0x71): read once at start so that
//! components can tell wall-clock time from their TSC.

use core::arch::asm;

fn cmos(reg: u8) -> u8 {
    let v: u8;
    // SAFETY: ports 0x70/0x71 are the CMOS index/data pair, which the kernel
    // leaves to the roottask; selecting a register and reading it has no other effect
    // (bit 7 of the index keeps NMIs enabled as they were: we leave it clear).
    unsafe {
        asm!("out 0x70, al", in("al") reg, options(nomem, nostack));
        asm!("in al, 0x71", out("al") v, options(nomem, nostack));
    }
    v
}

fn updating() -> bool {
    cmos(0x0a) & 0x80 != 0
}

/// Seconds since 1970-01-01 00:00 UTC (the RTC is taken to run in UTC), or
/// None if the clock reads as nonsense.
pub fn read_epoch_seconds() -> Option<u64> {
    let read = || {
        let mut spins = 0;
        while updating() && spins < 1_000_000 {
            spins += 1;
            core::hint::spin_loop();
        }
        [0x00, 0x02, 0x04, 0x07, 0x08, 0x09, 0x32].map(cmos)
    };
    // read until two reads agree (an update may happen in between)
    let mut a = read();
    for _ in 0..5 {
        let b = read();
        if a == b {
            break;
        }
        a = b;
    }
    let status_b = cmos(0x0b);
    let bcd = status_b & 0x04 == 0;
    let conv = |v: u8| -> u64 {
        if bcd {
            ((v >> 4) * 10 + (v & 0xf)) as u64
        } else {
            v as u64
        }
    };
    let [s, m, h, d, mo, y, c] = a;
    let pm = status_b & 0x02 == 0 && h & 0x80 != 0;
    let mut hour = conv(h & 0x7f);
    if pm {
        hour = (hour % 12) + 12;
    }
    let century = match conv(c) {
        19..=21 => conv(c),
        _ => 20,
    };
    let (sec, min, day, month, year) =
        (conv(s), conv(m), conv(d), conv(mo), century * 100 + conv(y));
    if sec > 59 || min > 59 || hour > 23 || !(1..=31).contains(&day) || !(1..=12).contains(&month) {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86400 + hour * 3600 + min * 60 + sec)
}

/// Days from 1970-01-01 to the given date of the proleptic Gregorian calendar.
fn days_from_civil(y: u64, m: u64, d: u64) -> u64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146097 + doe).saturating_sub(719468)
}
