//! ACPI fixed hardware: the PM1a event and control registers, the PM timer
//! (one block of ports), and the reset register at 0xcf9.
//!
//! Owns: PM1 status/enable (power button, timer carry, wake status), PM1
//! control (SCI_EN, sleep type/enable), the PM timer, the SCI level, and the
//! power events they cause (S5 -> [`PowerEvent::Off`], reset register ->
//! [`PowerEvent::Reset`]). Must not touch: the ACPI tables (the machine puts
//! the constants below into the FADT and DSDT) or what an event does.
//!
//! The machine is in ACPI mode from the start (hardware-reduced firmware
//! style: no SMI_CMD, so SCI_EN always reads 1). Only S5 is a sleep state:
//! other SLP_TYP values with SLP_EN are ignored, so the DSDT must offer
//! `\_S5` only. Not modelled: GPE blocks, the sleep button, RTC wake, and
//! the SCI of the PM timer's carry (TMR_STS is reported, TMR_EN raises no
//! SCI: that would need a timer; Linux never enables it).

use std::sync::Arc;

use vmm_bus::{BusDevice, Clock, Line};

use crate::{ns_to_ticks, read_bytewise, write_bytewise, PowerEvent, PowerEvents};

/// The PM block: PM1a event (status, enable), PM1a control, PM timer, at
/// consecutive ports; [`PM_BLOCK_LEN`] ports on the bus from [`PM_BLOCK`].
pub const PM_BLOCK: u16 = 0x600;
pub const PM_BLOCK_LEN: u64 = 12;
/// FADT PM1a_EVT_BLK and PM1_EVT_LEN.
pub const PM1A_EVT: u16 = PM_BLOCK;
pub const PM1A_EVT_LEN: u8 = 4;
/// FADT PM1a_CNT_BLK and PM1_CNT_LEN.
pub const PM1A_CNT: u16 = PM_BLOCK + 4;
pub const PM1A_CNT_LEN: u8 = 2;
/// FADT PM_TMR_BLK and PM_TMR_LEN.
pub const PM_TMR: u16 = PM_BLOCK + 8;
pub const PM_TMR_LEN: u8 = 4;
/// The PM timer's rate.
pub const PM_TMR_HZ: u64 = 3_579_545;
/// The PM timer counts 32 bits: set the FADT flag TMR_VAL_EXT (bit 8).
pub const PM_TMR_32BIT: bool = true;
/// The conventional SCI interrupt (FADT SCI_INT), level-triggered.
pub const SCI_IRQ: u32 = 9;
/// SLP_TYP for S5: the DSDT's `\_S5` package must hold this value.
pub const SLP_TYP_S5: u8 = 5;
/// The reset register (FADT RESET_REG, system I/O, 8 bits) and the value
/// the FADT tells the OS to write (RESET_VALUE).
pub const RESET_PORT: u16 = 0xcf9;
pub const RESET_VALUE: u8 = 0x06;

// PM1 status / enable bits.
const TMR_STS: u16 = 1 << 0;
const PWRBTN: u16 = 1 << 8;
const WAK_STS: u16 = 1 << 15;
/// Status bits the hardware can set.
const STS_MASK: u16 = TMR_STS | PWRBTN | WAK_STS;
/// Enable bits kept: TMR_EN, GBL_EN, PWRBTN_EN, SLPBTN_EN, RTC_EN.
const EN_MASK: u16 = 0x0721;
/// Events whose status and enable assert the SCI.
const SCI_EVENTS: u16 = PWRBTN;

// PM1 control bits.
const SCI_EN: u16 = 1 << 0;
const BM_RLD: u16 = 1 << 1;
const SLP_TYP_SHIFT: u16 = 10;
const SLP_TYP_MASK: u16 = 7 << SLP_TYP_SHIFT;
const SLP_EN: u16 = 1 << 13;

// Offsets in the block.
const EVT_STS: u64 = 0;
const EVT_EN: u64 = 2;
const CNT: u64 = 4;
const TMR: u64 = 8;

/// The reset register's "reset CPU" bit (0x06 soft, 0x0e hard reset).
const RESET_CPU: u8 = 0x04;

/// The PM1a event/control registers and PM timer: the bus device for
/// [`PM_BLOCK`]..+[`PM_BLOCK_LEN`].
pub struct AcpiPm {
    sci: Line,
    clock: Arc<dyn Clock>,
    events: PowerEvents,
    status: u16,
    enable: u16,
    control: u16,
    /// The timer's carries (bit 31 toggles) when TMR_STS was last cleared.
    carries_seen: u64,
    sci_asserted: bool,
}

impl AcpiPm {
    /// The PM block, raising `sci` (level) and reporting S5 to `events`.
    pub fn new(sci: Line, clock: Arc<dyn Clock>, events: PowerEvents) -> AcpiPm {
        AcpiPm {
            sci,
            clock,
            events,
            status: 0,
            enable: 0,
            control: SCI_EN,
            carries_seen: 0,
            sci_asserted: false,
        }
    }

    /// A platform reset: status and enables cleared (the SCI deasserted),
    /// SCI_EN set; the PM timer keeps counting.
    pub fn reset(&mut self) {
        self.status = 0;
        self.enable = 0;
        self.control = SCI_EN;
        self.carries_seen = Self::carries(self.timer_ticks());
        self.update_sci();
    }

    /// The power button was pressed: PWRBTN_STS, and the SCI if the guest
    /// enabled the button (Linux's ACPI button driver does). A guest that
    /// did not will not react; the machine may then force the VM off.
    pub fn press_power_button(&mut self) {
        self.status |= PWRBTN;
        self.update_sci();
    }

    fn timer_ticks(&self) -> u64 {
        ns_to_ticks(self.clock.now_ns(), PM_TMR_HZ)
    }

    fn carries(ticks: u64) -> u64 {
        ticks >> 31
    }

    fn status(&self, ticks: u64) -> u16 {
        let carry = if Self::carries(ticks) != self.carries_seen {
            TMR_STS
        } else {
            0
        };
        self.status | carry
    }

    fn update_sci(&mut self) {
        let level = self.status & self.enable & SCI_EVENTS != 0;
        if level != self.sci_asserted {
            self.sci_asserted = level;
            self.sci.set_level(level);
        }
    }

    fn read_byte(&self, offset: u64, ticks: u64) -> u8 {
        let (word, shift) = match offset {
            0..=1 => (self.status(ticks) as u32, offset - EVT_STS),
            2..=3 => (self.enable as u32, offset - EVT_EN),
            4..=5 => (self.control as u32, offset - CNT),
            8..=11 => (ticks as u32, offset - TMR),
            _ => return 0,
        };
        (word >> (8 * shift)) as u8
    }

    fn write_byte(&mut self, offset: u64, value: u8, ticks: u64) {
        let (shift, value16) = (8 * (offset % 2), value as u16);
        let mask = 0xffu16 << shift;
        let bits = value16 << shift;
        match offset {
            0..=1 => {
                // Write one to clear.
                if bits & TMR_STS != 0 {
                    self.carries_seen = Self::carries(ticks);
                }
                self.status &= !(bits & STS_MASK);
            }
            2..=3 => self.enable = (self.enable & !mask) | (bits & EN_MASK),
            4..=5 => {
                let kept = BM_RLD | SLP_TYP_MASK;
                self.control = (self.control & !mask) | (bits & kept) | SCI_EN;
                if bits & SLP_EN != 0 {
                    let sleep_type = ((self.control & SLP_TYP_MASK) >> SLP_TYP_SHIFT) as u8;
                    if sleep_type == SLP_TYP_S5 {
                        (self.events)(PowerEvent::Off);
                    }
                }
            }
            _ => {} // reserved and the read-only timer
        }
    }
}

impl BusDevice for AcpiPm {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let ticks = self.timer_ticks();
        read_bytewise(offset, data, |o| self.read_byte(o, ticks));
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let ticks = self.timer_ticks();
        write_bytewise(offset, data, |o, v| self.write_byte(o, v, ticks));
        self.update_sci();
    }
}

/// The reset control register at [`RESET_PORT`] (one port): a write with
/// the "reset CPU" bit (RESET_VALUE 0x06, or 0x0e) resets the platform.
pub struct ResetRegister {
    events: PowerEvents,
    value: u8,
}

impl ResetRegister {
    pub fn new(events: PowerEvents) -> ResetRegister {
        ResetRegister { events, value: 0 }
    }

    /// A platform reset clears the register.
    pub fn reset(&mut self) {
        self.value = 0;
    }
}

impl BusDevice for ResetRegister {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        read_bytewise(offset, data, |o| if o == 0 { self.value } else { 0xff });
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        write_bytewise(offset, data, |o, v| {
            if o == 0 {
                self.value = v & !RESET_CPU;
                if v & RESET_CPU != 0 {
                    (self.events)(PowerEvent::Reset);
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{inb, outb, power_events, FakeClock, RecordingLine, SeenEvents};

    fn pm() -> (AcpiPm, Arc<FakeClock>, Arc<RecordingLine>, SeenEvents) {
        let clock = FakeClock::new();
        let sci = RecordingLine::new();
        let (events, seen) = power_events();
        (
            AcpiPm::new(sci.clone(), clock.clone(), events),
            clock,
            sci,
            seen,
        )
    }

    fn inw(dev: &mut dyn BusDevice, offset: u64) -> u16 {
        let mut b = [0u8; 2];
        dev.read(offset, &mut b);
        u16::from_le_bytes(b)
    }

    fn outw(dev: &mut dyn BusDevice, offset: u64, value: u16) {
        dev.write(offset, &value.to_le_bytes());
    }

    fn inl(dev: &mut dyn BusDevice, offset: u64) -> u32 {
        let mut b = [0u8; 4];
        dev.read(offset, &mut b);
        u32::from_le_bytes(b)
    }

    #[test]
    fn layout_fits_the_fadt() {
        assert_eq!(PM1A_EVT + PM1A_EVT_LEN as u16, PM1A_CNT);
        assert!(PM1A_CNT + PM1A_CNT_LEN as u16 <= PM_TMR);
        assert_eq!((PM_TMR + PM_TMR_LEN as u16 - PM_BLOCK) as u64, PM_BLOCK_LEN);
        assert!((0x600..0x700).contains(&PM_BLOCK) && PM_BLOCK as u64 + PM_BLOCK_LEN <= 0x700);
    }

    #[test]
    fn reset_values_and_masks() {
        let (mut pm, _, sci, _) = pm();
        assert_eq!(inw(&mut pm, EVT_STS), 0);
        assert_eq!(inw(&mut pm, EVT_EN), 0);
        assert_eq!(inw(&mut pm, CNT), SCI_EN, "ACPI mode from the start");
        outw(&mut pm, EVT_EN, 0xffff);
        assert_eq!(inw(&mut pm, EVT_EN), 0x0721);
        outw(&mut pm, CNT, 0);
        assert_eq!(inw(&mut pm, CNT), SCI_EN, "SCI_EN cannot be cleared");
        outw(&mut pm, CNT, 0x1c06); // SLP_TYP 7, GBL_RLS, BM_RLD
        assert_eq!(inw(&mut pm, CNT), 0x1c03, "GBL_RLS is write-only");
        assert_eq!(inw(&mut pm, 6), 0, "reserved");
        assert!(sci.history().is_empty());
    }

    #[test]
    fn pm_timer_rate_and_width() {
        let (mut pm, clock, _, _) = pm();
        clock.set(1_000_000_000);
        assert_eq!(inl(&mut pm, TMR), 3_579_545);
        clock.set(2_000_000_000);
        assert_eq!(inl(&mut pm, TMR), 2 * 3_579_545);
        // 32 bits: wraps after 2^32 ticks (about 20 minutes), not 2^24.
        clock.set(ticks_ns(1 << 24));
        assert_eq!(inl(&mut pm, TMR), 1 << 24);
        clock.set(ticks_ns((1 << 32) + 5));
        assert_eq!(inl(&mut pm, TMR), 5);
        // Byte reads of the timer see the same counter.
        clock.set(ticks_ns(0x1234_5678));
        assert_eq!(inb(&mut pm, TMR + 2), 0x34);
        outw(&mut pm, TMR, 0);
        assert_eq!(inl(&mut pm, TMR), 0x1234_5678, "read-only");
    }

    fn ticks_ns(ticks: u64) -> u64 {
        crate::ticks_to_ns(ticks, PM_TMR_HZ)
    }

    #[test]
    fn timer_carry_status() {
        let (mut pm, clock, sci, _) = pm();
        outw(&mut pm, EVT_EN, TMR_STS);
        clock.set(ticks_ns((1 << 31) - 1));
        assert_eq!(inw(&mut pm, EVT_STS) & TMR_STS, 0);
        clock.set(ticks_ns(1 << 31));
        assert_eq!(inw(&mut pm, EVT_STS) & TMR_STS, TMR_STS, "bit 31 toggled");
        outw(&mut pm, EVT_STS, TMR_STS);
        assert_eq!(inw(&mut pm, EVT_STS) & TMR_STS, 0, "cleared by writing 1");
        clock.set(ticks_ns(1 << 32));
        assert_eq!(inw(&mut pm, EVT_STS) & TMR_STS, TMR_STS);
        assert!(!sci.level(), "the timer carry raises no SCI here");
    }

    #[test]
    fn power_button_sci_is_a_level_while_status_and_enable() {
        let (mut pm, _, sci, seen) = pm();
        pm.press_power_button();
        assert!(!sci.level(), "not enabled yet");
        assert_eq!(inw(&mut pm, EVT_STS), PWRBTN);
        outw(&mut pm, EVT_EN, PWRBTN);
        assert!(sci.level(), "enabling with status pending");
        outw(&mut pm, EVT_STS, 0);
        assert!(sci.level(), "writing 0 clears nothing");
        outw(&mut pm, EVT_STS, PWRBTN);
        assert!(!sci.level());
        pm.press_power_button();
        assert!(sci.level());
        outw(&mut pm, EVT_EN, 0);
        assert!(!sci.level(), "disabling drops the line");
        assert_eq!(sci.history(), vec![true, false, true, false]);
        assert!(seen.lock().unwrap().is_empty());
    }

    /// ACPICA's S5 entry: clear status, SLP_TYP, then SLP_TYP | SLP_EN.
    #[test]
    fn s5_powers_off() {
        let (mut pm, _, _, seen) = pm();
        outw(&mut pm, EVT_STS, 0xffff);
        let typ = (SLP_TYP_S5 as u16) << SLP_TYP_SHIFT;
        let cnt = inw(&mut pm, CNT);
        outw(&mut pm, CNT, cnt | typ);
        assert!(
            seen.lock().unwrap().is_empty(),
            "SLP_TYP alone does nothing"
        );
        outw(&mut pm, CNT, cnt | typ | SLP_EN);
        assert_eq!(*seen.lock().unwrap(), vec![PowerEvent::Off]);
        assert_eq!(inw(&mut pm, CNT) & SLP_EN, 0, "SLP_EN reads 0");
        // Other sleep types are not offered and do nothing.
        outw(&mut pm, CNT, 1 << SLP_TYP_SHIFT | SLP_EN);
        assert_eq!(seen.lock().unwrap().len(), 1);
        // The high byte alone (an 8-bit write) works too.
        outb(&mut pm, CNT + 1, ((typ | SLP_EN) >> 8) as u8);
        assert_eq!(seen.lock().unwrap().len(), 2);
    }

    #[test]
    fn reset_register() {
        let (events, seen) = power_events();
        let mut reset = ResetRegister::new(events);
        outb(&mut reset, 0, 0x02);
        assert!(seen.lock().unwrap().is_empty());
        assert_eq!(inb(&mut reset, 0), 0x02);
        outb(&mut reset, 0, RESET_VALUE);
        outb(&mut reset, 0, 0x0e);
        assert_eq!(
            *seen.lock().unwrap(),
            vec![PowerEvent::Reset, PowerEvent::Reset]
        );
    }

    #[test]
    fn a_platform_reset_clears_status_and_enables() {
        let (mut pm, _, sci, _) = pm();
        outw(&mut pm, 2, PWRBTN); // PWRBTN_EN
        pm.press_power_button();
        assert!(sci.level());
        pm.reset();
        assert!(!sci.level(), "SCI deasserted");
        assert_eq!(inw(&mut pm, 0) & PWRBTN, 0, "status cleared");
        assert_eq!(inw(&mut pm, 2), 0, "enables cleared");
        assert_eq!(inw(&mut pm, 4) & SCI_EN, SCI_EN);
    }
}
