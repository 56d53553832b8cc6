//! The PC's two 8259A PICs: the master (ports 0x20/0x21) and the slave
//! (0xa0/0xa1) cascaded on master input 2, plus the edge/level control
//! registers (ELCR, ports 0x4d0/0x4d1).
//!
//! Owns: the register state of both chips (IRR, ISR, IMR, the ICW/OCW
//! programming, rotation, poll) and the interrupt-acknowledge cycle. Must
//! not touch: where the INTR output goes (LINT0 of the LAPICs and IOAPIC
//! pin 0 are the caller's business) or locking.

/// Where the ICW sequence stands after an ICW1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum InitStep {
    Done,
    Icw2,
    Icw3,
    Icw4,
}

/// One 8259A.
#[derive(Clone, Debug)]
struct Chip {
    irr: u8,
    isr: u8,
    imr: u8,
    /// The inputs as last driven (edge detection; level-mode IRR).
    lines: u8,
    elcr: u8,
    /// ELCR bits that exist on this chip (the rest are edge only).
    elcr_writable: u8,
    vector_base: u8,
    /// The input with the lowest priority (7 after ICW1; moved by rotation).
    lowest: u8,
    init: InitStep,
    needs_icw4: bool,
    single: bool,
    /// ICW1 LTIM: all inputs level-triggered.
    all_level: bool,
    auto_eoi: bool,
    rotate_on_auto_eoi: bool,
    special_fully_nested: bool,
    special_mask: bool,
    read_isr: bool,
    poll: bool,
}

impl Chip {
    fn new(elcr_writable: u8) -> Self {
        Chip {
            irr: 0,
            isr: 0,
            imr: 0,
            lines: 0,
            elcr: 0,
            elcr_writable,
            vector_base: 0,
            lowest: 7,
            init: InitStep::Done,
            needs_icw4: false,
            single: false,
            all_level: false,
            auto_eoi: false,
            rotate_on_auto_eoi: false,
            special_fully_nested: false,
            special_mask: false,
            read_isr: false,
            poll: false,
        }
    }

    fn is_level(&self, irq: u8) -> bool {
        self.all_level || self.elcr & (1 << irq) != 0
    }

    fn set_input(&mut self, irq: u8, high: bool) {
        let bit = 1 << irq;
        if self.is_level(irq) {
            if high {
                self.irr |= bit;
            } else {
                self.irr &= !bit;
            }
        } else if high && self.lines & bit == 0 {
            self.irr |= bit;
        }
        if high {
            self.lines |= bit;
        } else {
            self.lines &= !bit;
        }
    }

    /// Level-mode IRR bits follow their lines again (after ICW1 or an ELCR
    /// write).
    fn resync_level_inputs(&mut self) {
        for irq in 0..8 {
            if self.is_level(irq) {
                let bit = 1 << irq;
                self.irr = (self.irr & !bit) | (self.lines & bit);
            }
        }
    }

    /// The set bit of `bits` with the highest priority under the current
    /// rotation.
    fn highest(&self, bits: u8) -> Option<u8> {
        (1..=8)
            .map(|step| (self.lowest + step) & 7)
            .find(|irq| bits & (1 << irq) != 0)
    }

    /// 0 = highest priority.
    fn priority(&self, irq: u8) -> u8 {
        irq.wrapping_sub(self.lowest.wrapping_add(1)) & 7
    }

    /// The request this chip would raise INTR for, given its effective IRR.
    fn pending(&self, irr: u8, master: bool) -> Option<u8> {
        let request = self.highest(irr & !self.imr)?;
        let mut in_service = self.isr;
        if self.special_mask {
            in_service &= !self.imr;
        }
        if master && self.special_fully_nested {
            in_service &= !(1 << 2);
        }
        match self.highest(in_service) {
            Some(current) if self.priority(current) <= self.priority(request) => None,
            _ => Some(request),
        }
    }

    /// The INTA (or poll) side effects for `irq`.
    fn acknowledge(&mut self, irq: u8) {
        let bit = 1 << irq;
        if !self.is_level(irq) {
            self.irr &= !bit;
        }
        if self.auto_eoi {
            if self.rotate_on_auto_eoi {
                self.lowest = irq;
            }
        } else {
            self.isr |= bit;
        }
    }

    fn vector(&self, irq: u8) -> u8 {
        self.vector_base | irq
    }

    fn write_command(&mut self, value: u8) {
        if value & 0x10 != 0 {
            self.icw1(value);
        } else if value & 0x08 != 0 {
            self.ocw3(value);
        } else {
            self.ocw2(value);
        }
    }

    fn icw1(&mut self, value: u8) {
        // Edge sense reset: an edge input that is already high needs a new
        // rising edge; level inputs are re-read.
        self.irr = 0;
        self.isr = 0;
        self.imr = 0;
        self.lowest = 7;
        self.needs_icw4 = value & 0x01 != 0;
        self.single = value & 0x02 != 0;
        self.all_level = value & 0x08 != 0;
        self.auto_eoi = false;
        self.rotate_on_auto_eoi = false;
        self.special_fully_nested = false;
        self.special_mask = false;
        self.read_isr = false;
        self.poll = false;
        self.init = InitStep::Icw2;
        self.resync_level_inputs();
    }

    fn ocw2(&mut self, value: u8) {
        let level = value & 7;
        match value >> 5 {
            0b001 => {
                if let Some(irq) = self.highest(self.isr) {
                    self.isr &= !(1 << irq);
                }
            }
            0b011 => self.isr &= !(1 << level),
            0b101 => {
                if let Some(irq) = self.highest(self.isr) {
                    self.isr &= !(1 << irq);
                    self.lowest = irq;
                }
            }
            0b100 => self.rotate_on_auto_eoi = true,
            0b000 => self.rotate_on_auto_eoi = false,
            0b111 => {
                self.isr &= !(1 << level);
                self.lowest = level;
            }
            0b110 => self.lowest = level,
            _ => {} // 0b010: no operation
        }
    }

    fn ocw3(&mut self, value: u8) {
        if value & 0x04 != 0 {
            self.poll = true;
        }
        if value & 0x02 != 0 {
            self.read_isr = value & 0x01 != 0;
        }
        if value & 0x40 != 0 {
            self.special_mask = value & 0x20 != 0;
        }
    }

    fn write_data(&mut self, value: u8, master: bool) {
        match self.init {
            InitStep::Icw2 => {
                self.vector_base = value & 0xf8;
                self.init = match (self.single, self.needs_icw4) {
                    (false, _) => InitStep::Icw3,
                    (true, true) => InitStep::Icw4,
                    (true, false) => InitStep::Done,
                };
            }
            InitStep::Icw3 => {
                // The cascade wiring is fixed (slave on master input 2).
                self.init = if self.needs_icw4 {
                    InitStep::Icw4
                } else {
                    InitStep::Done
                };
            }
            InitStep::Icw4 => {
                self.auto_eoi = value & 0x02 != 0;
                self.special_fully_nested = master && value & 0x10 != 0;
                self.init = InitStep::Done;
            }
            InitStep::Done => self.imr = value,
        }
    }
}

const MASTER: usize = 0;
const SLAVE: usize = 1;
/// The master input the slave's INTR drives.
const CASCADE_IRQ: u8 = 2;

/// The master/slave pair as the PC wires it.
#[derive(Clone, Debug)]
pub struct PicPair {
    chips: [Chip; 2],
}

impl Default for PicPair {
    fn default() -> Self {
        Self::new()
    }
}

impl PicPair {
    /// Both chips in their power-up state (uninitialized: vector base 0,
    /// nothing masked, all inputs edge-triggered).
    pub fn new() -> Self {
        // ELCR: IRQ 0, 1, 2, 8 and 13 are always edge-triggered on a PC.
        PicPair {
            chips: [Chip::new(0xf8), Chip::new(0xde)],
        }
    }

    /// Drives ISA IRQ `irq` (0..16; 2 is the cascade and ignored).
    pub fn set_irq(&mut self, irq: u8, high: bool) {
        match irq {
            0..=7 if irq != CASCADE_IRQ => self.chips[MASTER].set_input(irq, high),
            8..=15 => self.chips[SLAVE].set_input(irq - 8, high),
            _ => {}
        }
    }

    fn slave_intr(&self) -> bool {
        let slave = &self.chips[SLAVE];
        slave.pending(slave.irr, false).is_some()
    }

    /// The master's IRR with the cascade input (the slave's INTR).
    fn master_irr(&self) -> u8 {
        let cascade = if self.slave_intr() {
            1 << CASCADE_IRQ
        } else {
            0
        };
        self.chips[MASTER].irr | cascade
    }

    /// The master's INTR output.
    pub fn intr(&self) -> bool {
        self.chips[MASTER]
            .pending(self.master_irr(), true)
            .is_some()
    }

    /// The vector an acknowledge would return now, if INTR is raised.
    pub fn peek_vector(&self) -> Option<u8> {
        let master = &self.chips[MASTER];
        let irq = master.pending(self.master_irr(), true)?;
        if irq != CASCADE_IRQ {
            return Some(master.vector(irq));
        }
        let slave = &self.chips[SLAVE];
        let slave_irq = slave.pending(slave.irr, false).unwrap_or(7);
        Some(slave.vector(slave_irq))
    }

    /// The interrupt-acknowledge cycle: the vector of the highest-priority
    /// request, which moves to in-service. Without a request it is the
    /// spurious IRQ 7 (master) or IRQ 15 (slave, with the cascade in
    /// service), as on the 8259A.
    pub fn acknowledge(&mut self) -> u8 {
        let master_irr = self.master_irr();
        let master = &self.chips[MASTER];
        match master.pending(master_irr, true) {
            None => master.vector(7),
            Some(CASCADE_IRQ) => {
                let slave_irq = self.chips[SLAVE].pending(self.chips[SLAVE].irr, false);
                self.chips[MASTER].acknowledge(CASCADE_IRQ);
                let slave = &mut self.chips[SLAVE];
                match slave_irq {
                    Some(irq) => {
                        slave.acknowledge(irq);
                        slave.vector(irq)
                    }
                    None => slave.vector(7),
                }
            }
            Some(irq) => {
                self.chips[MASTER].acknowledge(irq);
                self.chips[MASTER].vector(irq)
            }
        }
    }

    /// A read of the command (`port` 0) or data (1) port of `chip` (0 =
    /// master, 1 = slave).
    pub fn read_port(&mut self, chip: usize, port: u8) -> u8 {
        let master = chip == MASTER;
        let irr = if master {
            self.master_irr()
        } else {
            self.chips[SLAVE].irr
        };
        let c = &mut self.chips[chip & 1];
        if port & 1 == 1 {
            return c.imr;
        }
        if c.poll {
            c.poll = false;
            return match c.pending(irr, master) {
                Some(irq) => {
                    c.acknowledge(irq);
                    0x80 | irq
                }
                None => 0,
            };
        }
        if c.read_isr {
            c.isr
        } else {
            irr
        }
    }

    /// A write of the command (`port` 0) or data (1) port of `chip`.
    pub fn write_port(&mut self, chip: usize, port: u8, value: u8) {
        let c = &mut self.chips[chip & 1];
        if port & 1 == 0 {
            c.write_command(value);
        } else {
            c.write_data(value, chip == MASTER);
        }
    }

    /// ELCR `chip` (0 = 0x4d0, 1 = 0x4d1).
    pub fn read_elcr(&self, chip: usize) -> u8 {
        self.chips[chip & 1].elcr
    }

    pub fn write_elcr(&mut self, chip: usize, value: u8) {
        let c = &mut self.chips[chip & 1];
        c.elcr = value & c.elcr_writable;
        c.resync_level_inputs();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Linux's `init_8259A`: ICW1 edge + ICW4, vectors 0x30/0x38, cascade
    /// on 2, 8086 mode, then everything masked except what the test needs.
    fn linux_pic(auto_eoi: bool) -> PicPair {
        let mut pic = PicPair::new();
        let icw4 = if auto_eoi { 0x03 } else { 0x01 };
        for (chip, base, icw3) in [(0, 0x30, 0x04), (1, 0x38, 0x02)] {
            pic.write_port(chip, 0, 0x11);
            pic.write_port(chip, 1, base);
            pic.write_port(chip, 1, icw3);
            pic.write_port(chip, 1, icw4);
            pic.write_port(chip, 1, 0x00);
        }
        pic
    }

    #[test]
    fn power_up_and_icw_sequence() {
        let mut pic = PicPair::new();
        assert_eq!(pic.read_port(0, 1), 0);
        pic.write_port(0, 1, 0xff); // OCW1 before any init: IMR
        assert_eq!(pic.read_port(0, 1), 0xff);
        pic.write_port(0, 0, 0x11); // ICW1 clears IMR
        assert_eq!(pic.read_port(0, 1), 0);
        pic.write_port(0, 1, 0x20); // ICW2
        pic.write_port(0, 1, 0x04); // ICW3
        pic.write_port(0, 1, 0x01); // ICW4
        pic.write_port(0, 1, 0xfb); // OCW1
        assert_eq!(pic.read_port(0, 1), 0xfb);
        pic.write_port(0, 1, 0xfe);
        pic.set_irq(0, true);
        assert_eq!(pic.acknowledge(), 0x20);
        // ICW1 without IC4, single: ICW2 ends the sequence.
        pic.write_port(0, 0, 0x12);
        pic.write_port(0, 1, 0x48);
        pic.write_port(0, 1, 0x7f);
        assert_eq!(pic.read_port(0, 1), 0x7f);
    }

    #[test]
    fn edge_requests_are_latched_and_acknowledged_by_priority() {
        let mut pic = linux_pic(false);
        pic.set_irq(4, true);
        pic.set_irq(1, true);
        assert!(pic.intr());
        assert_eq!(pic.peek_vector(), Some(0x31));
        assert_eq!(pic.acknowledge(), 0x31);
        // IRQ 1 in service blocks IRQ 4 (lower priority).
        assert!(!pic.intr());
        assert_eq!(pic.read_port(0, 0), 0x10, "IRR read by default");
        pic.write_port(0, 0, 0x0b); // OCW3: read ISR
        assert_eq!(pic.read_port(0, 0), 0x02);
        pic.write_port(0, 0, 0x20); // non-specific EOI
        assert_eq!(pic.read_port(0, 0), 0x00);
        assert_eq!(pic.acknowledge(), 0x34);
        pic.write_port(0, 0, 0x64); // specific EOI level 4
        assert_eq!(pic.read_port(0, 0), 0);
        // The line stayed high: an edge input needs a new rising edge.
        assert!(!pic.intr());
        pic.set_irq(4, true);
        assert!(!pic.intr());
        pic.set_irq(4, false);
        pic.set_irq(4, true);
        assert_eq!(pic.acknowledge(), 0x34);
    }

    #[test]
    fn higher_priority_request_nests_over_lower_in_service() {
        let mut pic = linux_pic(false);
        pic.set_irq(5, true);
        assert_eq!(pic.acknowledge(), 0x35);
        pic.set_irq(3, true);
        assert_eq!(pic.acknowledge(), 0x33);
        pic.write_port(0, 0, 0x0b);
        assert_eq!(pic.read_port(0, 0), 0x28);
        pic.write_port(0, 0, 0x20); // non-specific EOI ends the highest (3)
        assert_eq!(pic.read_port(0, 0), 0x20);
    }

    #[test]
    fn masked_requests_stay_pending_until_unmasked() {
        let mut pic = linux_pic(false);
        pic.write_port(0, 1, 0x08);
        pic.set_irq(3, true);
        assert!(!pic.intr());
        assert_eq!(pic.read_port(0, 0), 0x08, "IRR shows the masked request");
        pic.write_port(0, 1, 0x00);
        assert_eq!(pic.acknowledge(), 0x33);
    }

    #[test]
    fn slave_requests_go_through_the_cascade() {
        let mut pic = linux_pic(false);
        pic.set_irq(12, true);
        assert!(pic.intr());
        assert_eq!(pic.read_port(0, 0), 0x04, "master IRR shows the cascade");
        assert_eq!(pic.peek_vector(), Some(0x3c));
        assert_eq!(pic.acknowledge(), 0x3c);
        pic.write_port(0, 0, 0x0b);
        pic.write_port(1, 0, 0x0b);
        assert_eq!(pic.read_port(0, 0), 0x04);
        assert_eq!(pic.read_port(1, 0), 0x10);
        // A masked slave input does not reach the master.
        pic.write_port(1, 1, 0x02);
        pic.set_irq(9, true);
        assert_eq!(pic.read_port(1, 1), 0x02);
        pic.write_port(1, 0, 0x20);
        pic.write_port(0, 0, 0x20);
        assert!(!pic.intr());
        pic.write_port(1, 1, 0x00);
        assert_eq!(pic.acknowledge(), 0x39);
    }

    #[test]
    fn spurious_interrupts_report_irq7() {
        let mut pic = linux_pic(false);
        assert_eq!(pic.peek_vector(), None);
        assert_eq!(pic.acknowledge(), 0x37);
        pic.write_port(0, 0, 0x0b);
        assert_eq!(pic.read_port(0, 0), 0, "a spurious IRQ 7 is not in service");
        // A level request that falls between INTR and INTA.
        pic.write_elcr(0, 0x08);
        pic.set_irq(3, true);
        assert_eq!(pic.peek_vector(), Some(0x33));
        pic.set_irq(3, false);
        assert_eq!(pic.acknowledge(), 0x37);
        assert_eq!(pic.read_port(0, 0), 0);
    }

    #[test]
    fn slave_spurious_when_cascade_acknowledged_without_slave_request() {
        let mut pic = linux_pic(false);
        // Special fully nested lets the master ack the cascade while its
        // ISR bit is set; with the slave's request in service already the
        // slave has nothing new: IRQ 15 spurious with the cascade in service.
        pic.write_port(0, 0, 0x11);
        pic.write_port(0, 1, 0x30);
        pic.write_port(0, 1, 0x04);
        pic.write_port(0, 1, 0x11); // ICW4: 8086, special fully nested
        pic.write_port(0, 1, 0x00);
        pic.set_irq(10, true);
        assert_eq!(pic.acknowledge(), 0x3a);
        pic.set_irq(11, true); // lower than 10 on the slave: not raised
        assert!(!pic.intr());
        pic.set_irq(9, true); // higher: nests through the cascade (SFNM)
        assert_eq!(pic.acknowledge(), 0x39);
        // Direct check of the slave-spurious path.
        let mut pic = linux_pic(false);
        pic.chips[MASTER].irr = 1 << CASCADE_IRQ; // a stray cascade edge
        assert_eq!(pic.acknowledge(), 0x3f);
        pic.write_port(0, 0, 0x0b);
        assert_eq!(
            pic.read_port(0, 0),
            0x04,
            "the master's IRQ 2 is in service"
        );
        pic.write_port(1, 0, 0x0b);
        assert_eq!(pic.read_port(1, 0), 0, "IRQ 15 is not");
    }

    #[test]
    fn level_mode_follows_the_line_and_reasserts_after_eoi() {
        let mut pic = linux_pic(false);
        pic.write_elcr(1, 0x02); // IRQ 9 level (the ACPI SCI)
        assert_eq!(pic.read_elcr(1), 0x02);
        pic.set_irq(9, true);
        assert_eq!(pic.acknowledge(), 0x39);
        pic.write_port(1, 0, 0x20);
        pic.write_port(0, 0, 0x20);
        assert!(pic.intr(), "still asserted: raised again");
        pic.set_irq(9, false);
        assert!(!pic.intr(), "level IRR follows the line");
        assert_eq!(pic.read_port(1, 0), 0);
    }

    #[test]
    fn elcr_bits_for_fixed_edge_irqs_are_read_only() {
        let mut pic = PicPair::new();
        pic.write_elcr(0, 0xff);
        pic.write_elcr(1, 0xff);
        assert_eq!(pic.read_elcr(0), 0xf8);
        assert_eq!(pic.read_elcr(1), 0xde);
    }

    #[test]
    fn ltim_makes_every_input_level_triggered() {
        let mut pic = PicPair::new();
        pic.write_port(0, 0, 0x19); // ICW1 with LTIM
        pic.write_port(0, 1, 0x20);
        pic.write_port(0, 1, 0x04);
        pic.write_port(0, 1, 0x01);
        pic.set_irq(0, true);
        pic.set_irq(0, false);
        assert!(!pic.intr());
    }

    #[test]
    fn auto_eoi_leaves_nothing_in_service() {
        let mut pic = linux_pic(true);
        pic.set_irq(0, true);
        assert_eq!(pic.acknowledge(), 0x30);
        pic.write_port(0, 0, 0x0b);
        assert_eq!(pic.read_port(0, 0), 0);
        pic.set_irq(1, true);
        assert_eq!(pic.acknowledge(), 0x31);
    }

    #[test]
    fn rotation_commands_move_the_lowest_priority() {
        let mut pic = linux_pic(false);
        pic.write_port(0, 0, 0xc4); // set priority: IRQ 4 lowest, 5 highest
        pic.set_irq(3, true);
        pic.set_irq(6, true);
        assert_eq!(pic.acknowledge(), 0x36);
        pic.write_port(0, 0, 0xa0); // rotate on non-specific EOI: 6 lowest
        assert_eq!(pic.acknowledge(), 0x33);
        pic.write_port(0, 0, 0xe3); // rotate on specific EOI level 3
        pic.set_irq(3, false);
        pic.set_irq(3, true);
        pic.set_irq(4, true);
        assert_eq!(pic.acknowledge(), 0x34, "3 is now the lowest");
        // Rotate in auto-EOI mode.
        let mut pic = linux_pic(true);
        pic.write_port(0, 0, 0x80);
        pic.set_irq(1, true);
        pic.set_irq(0, true);
        assert_eq!(pic.acknowledge(), 0x30);
        assert_eq!(pic.acknowledge(), 0x31);
        pic.set_irq(0, false);
        pic.set_irq(0, true);
        pic.set_irq(5, true);
        assert_eq!(
            pic.acknowledge(),
            0x35,
            "1 lowest after rotation: 2.. first"
        );
        pic.write_port(0, 0, 0x00); // clear rotate in auto-EOI
        assert_eq!(pic.acknowledge(), 0x30);
    }

    #[test]
    fn poll_command_acknowledges_on_read() {
        let mut pic = linux_pic(false);
        pic.write_port(0, 0, 0x0c); // OCW3 poll
        assert_eq!(pic.read_port(0, 0), 0x00, "no request");
        pic.set_irq(5, true);
        pic.write_port(0, 0, 0x0c);
        assert_eq!(pic.read_port(0, 0), 0x85);
        pic.write_port(0, 0, 0x0b);
        assert_eq!(pic.read_port(0, 0), 0x20, "polled request is in service");
        assert_eq!(pic.read_port(0, 0), 0x20, "poll was one-shot");
    }

    #[test]
    fn special_mask_mode_enables_lower_priorities() {
        let mut pic = linux_pic(false);
        pic.set_irq(1, true);
        assert_eq!(pic.acknowledge(), 0x31);
        pic.set_irq(6, true);
        assert!(!pic.intr());
        pic.write_port(0, 1, 0x02); // mask the level in service
        pic.write_port(0, 0, 0x68); // OCW3: set special mask mode
        assert_eq!(pic.acknowledge(), 0x36);
        pic.write_port(0, 0, 0x48); // reset special mask mode
        pic.write_port(0, 0, 0x66); // specific EOI 6
        pic.set_irq(7, true);
        assert!(!pic.intr(), "IRQ 1 in service blocks again");
    }
}
