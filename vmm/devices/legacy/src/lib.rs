//! vmm-legacy: the legacy PC devices of the Tern VMM.
//!
//! Owns: the device models behind fixed ISA ports: the 8254 PIT (+ port
//! 0x61), 16550A UARTs, the RTC/CMOS, the ACPI PM block (PM1 event/control,
//! PM timer, power button, S5) with the 0xcf9 reset register, the i8042
//! keyboard controller and QEMU's isa-debug-exit. Must not touch: interrupt
//! controllers, vCPUs, guest memory, threads or host I/O other than the
//! `Write` a UART is given; the machine (`vmm-pc`) wires these models to its
//! buses, interrupt lines, clock and timer thread.
//!
//! Every device is a [`vmm_bus::BusDevice`] addressed by offset from its
//! range base. A wider port access covers the byte registers at consecutive
//! offsets, as the ISA bus splits it for 8-bit devices (the PM block's
//! 16/32-bit registers are little-endian byte sequences, so this is exact
//! there too); debug-exit takes the written value whole.

mod acpi_pm;
mod debug_exit;
mod i8042;
mod pit;
mod rtc;
mod uart;

#[cfg(test)]
mod testing;

use std::sync::Arc;

pub use acpi_pm::{
    AcpiPm, ResetRegister, PM1A_CNT, PM1A_CNT_LEN, PM1A_EVT, PM1A_EVT_LEN, PM_BLOCK, PM_BLOCK_LEN,
    PM_TMR, PM_TMR_32BIT, PM_TMR_HZ, PM_TMR_LEN, RESET_PORT, RESET_VALUE, SCI_IRQ, SLP_TYP_S5,
};
pub use debug_exit::{DebugExit, DEBUG_EXIT_LEN, DEBUG_EXIT_PORT};
pub use i8042::{I8042Port, I8042, I8042_COMMAND_PORT, I8042_DATA_PORT, KEYBOARD_IRQ};
pub use pit::{Pit, Port61, PIT_HZ, PIT_IRQ, PIT_PORT, PIT_PORT_LEN, PORT61};
pub use rtc::{Rtc, CENTURY_REGISTER, RTC_IRQ, RTC_PORT, RTC_PORT_LEN};
pub use uart::{
    Uart, COM1, COM1_IRQ, COM2, COM2_IRQ, COM3, COM3_IRQ, COM4, COM4_IRQ, UART_PORT_LEN,
};

/// What the guest asked of the machine's power, delivered through
/// [`PowerEvents`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerEvent {
    /// ACPI S5 (soft off): the VM ends normally.
    Off,
    /// A platform reset (i8042 pulse, reset register): the machine restarts
    /// or ends, as it chooses.
    Reset,
    /// isa-debug-exit was written with this value; QEMU's convention is to
    /// exit with status `(value << 1) | 1`.
    DebugExit(u32),
}

/// The machine's handler of [`PowerEvent`]s. It is called on the vCPU thread
/// that made the access, while the device's lock is held: it must only
/// record the event (and kick vCPUs), never access the device again.
pub type PowerEvents = Arc<dyn Fn(PowerEvent) + Send + Sync>;

/// Runs a byte-wide register read for every byte of a wider access.
fn read_bytewise(offset: u64, data: &mut [u8], mut read: impl FnMut(u64) -> u8) {
    for (i, byte) in data.iter_mut().enumerate() {
        *byte = read(offset + i as u64);
    }
}

/// Runs a byte-wide register write for every byte of a wider access.
fn write_bytewise(offset: u64, data: &[u8], mut write: impl FnMut(u64, u8)) {
    for (i, &byte) in data.iter().enumerate() {
        write(offset + i as u64, byte);
    }
}

/// Nanoseconds to ticks of a `hz` clock (floor), without overflow for any
/// `u64` input.
fn ns_to_ticks(ns: u64, hz: u64) -> u64 {
    (ns as u128 * hz as u128 / 1_000_000_000) as u64
}

/// The first nanosecond at which a `hz` clock has made `ticks` ticks.
fn ticks_to_ns(ticks: u64, hz: u64) -> u64 {
    let ns = (ticks as u128 * 1_000_000_000).div_ceil(hz as u128);
    ns.min(u64::MAX as u128) as u64
}

/// Up to four BCD digits to their value (a digit above 9 counts as its
/// value, as counting hardware would treat it), modulo 10000.
fn from_bcd(raw: u16) -> u16 {
    let mut value = 0;
    for shift in [12, 8, 4, 0] {
        value = value * 10 + ((raw >> shift) & 0xf);
    }
    value % 10_000
}

/// A value below 10000 as four BCD digits (higher values wrap).
fn to_bcd(value: u16) -> u16 {
    let mut v = value % 10_000;
    let mut bcd = 0;
    for shift in [0, 4, 8, 12] {
        bcd |= (v % 10) << shift;
        v /= 10;
    }
    bcd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bcd_conversions() {
        for (value, bcd) in [
            (0, 0x0000),
            (9, 0x0009),
            (59, 0x0059),
            (1999, 0x1999),
            (9999, 0x9999),
        ] {
            assert_eq!(to_bcd(value), bcd);
            assert_eq!(from_bcd(bcd), value);
        }
        assert_eq!(to_bcd(10_000), 0);
        assert_eq!(from_bcd(0x00fa), 160, "digit 0xf counts as 15");
    }

    #[test]
    fn tick_conversions_round_trip() {
        for ticks in [0, 1, 2, 1193, 65536, 1 << 40] {
            let ns = ticks_to_ns(ticks, PIT_HZ);
            assert_eq!(ns_to_ticks(ns, PIT_HZ), ticks, "ticks {ticks}");
            assert_eq!(
                ns_to_ticks(ns.saturating_sub(1), PIT_HZ),
                ticks.saturating_sub(1)
            );
        }
        assert_eq!(ns_to_ticks(1_000_000_000, PM_TMR_HZ), PM_TMR_HZ);
        assert_eq!(ns_to_ticks(u64::MAX, 1_000_000_000), u64::MAX);
    }
}
