//! 16550A UART: eight byte-wide registers at the COM port base.
//!
//! Owns: the register file, the 16-byte receive FIFO (+ a backlog of host
//! input waiting for room in it), the interrupt identification and the
//! interrupt output. Must not touch: where output goes (the `Write` it is
//! given) and where input comes from (the machine calls [`Uart::input`]).
//!
//! Transmission is instantaneous: a byte written to THR goes straight to the
//! output (flushed per byte, so prompts without a newline appear), THR and
//! the transmitter are always empty. Reception has no character timing: a
//! byte is in the FIFO as soon as there is room, and the receive interrupt
//! is raised at once (identified as "character timeout" below the trigger
//! level, as a 16550A does after four idle character times).
//!
//! On a PC, OUT2 gates the interrupt output to the PIC; loopback (MCR bit 4)
//! forces OUT2 inactive, so no interrupt leaves the chip while looping.

use std::collections::VecDeque;
use std::io::Write;

use vmm_bus::{BusDevice, Line};

use crate::{read_bytewise, write_bytewise};

/// Port bases and ISA IRQs of the four standard COM ports.
pub const COM1: u16 = 0x3f8;
pub const COM1_IRQ: u32 = 4;
pub const COM2: u16 = 0x2f8;
pub const COM2_IRQ: u32 = 3;
pub const COM3: u16 = 0x3e8;
pub const COM3_IRQ: u32 = 4;
pub const COM4: u16 = 0x2e8;
pub const COM4_IRQ: u32 = 3;
/// Ports a UART occupies.
pub const UART_PORT_LEN: u64 = 8;

// Register offsets.
const RBR_THR_DLL: u64 = 0;
const IER_DLM: u64 = 1;
const IIR_FCR: u64 = 2;
const LCR: u64 = 3;
const MCR: u64 = 4;
const LSR: u64 = 5;
const MSR: u64 = 6;
const SCR: u64 = 7;

// IER bits.
const IER_RDA: u8 = 0x01;
const IER_THRE: u8 = 0x02;
const IER_RLS: u8 = 0x04;
const IER_MSR: u8 = 0x08;
const IER_MASK: u8 = 0x0f;

// IIR values.
const IIR_NONE: u8 = 0x01;
const IIR_MSR: u8 = 0x00;
const IIR_THRE: u8 = 0x02;
const IIR_RDA: u8 = 0x04;
const IIR_RLS: u8 = 0x06;
const IIR_TIMEOUT: u8 = 0x0c;
const IIR_FIFO_ENABLED: u8 = 0xc0;

// FCR bits.
const FCR_ENABLE: u8 = 0x01;
const FCR_CLEAR_RX: u8 = 0x02;
const FCR_DMA_MODE: u8 = 0x08;
const FCR_TRIGGER: u8 = 0xc0;

const LCR_DLAB: u8 = 0x80;

// MCR bits.
const MCR_DTR: u8 = 0x01;
const MCR_RTS: u8 = 0x02;
const MCR_OUT1: u8 = 0x04;
const MCR_OUT2: u8 = 0x08;
const MCR_LOOP: u8 = 0x10;
const MCR_MASK: u8 = 0x1f;

// LSR bits.
const LSR_DR: u8 = 0x01;
const LSR_OE: u8 = 0x02;
const LSR_ERRORS: u8 = 0x1e; // OE, PE, FE, BI
const LSR_THRE: u8 = 0x20;
const LSR_TEMT: u8 = 0x40;

// MSR bits.
const MSR_DCTS: u8 = 0x01;
const MSR_DDSR: u8 = 0x02;
const MSR_TERI: u8 = 0x04;
const MSR_DDCD: u8 = 0x08;
const MSR_CTS: u8 = 0x10;
const MSR_DSR: u8 = 0x20;
const MSR_RI: u8 = 0x40;
const MSR_DCD: u8 = 0x80;

const FIFO_LEN: usize = 16;
/// Host input held beyond the FIFO; more than this is dropped (and counted).
const BACKLOG_LIMIT: usize = 1 << 20;
/// Divisor a PC BIOS leaves behind (9600 baud); the value has no effect.
const RESET_DIVISOR: u16 = 12;

/// A 16550A UART.
pub struct Uart {
    irq: Line,
    out: Box<dyn Write + Send>,
    ier: u8,
    lcr: u8,
    mcr: u8,
    fcr: u8,
    scr: u8,
    divisor: u16,
    /// LSR error bits (OE, PE, FE, BI) until LSR is read.
    lsr_errors: u8,
    /// MSR delta bits until MSR is read.
    msr_deltas: u8,
    /// A THRE interrupt is pending (cleared by reading IIR while it is the
    /// one reported, by writing THR, or by clearing IER.ETBEI).
    thre_pending: bool,
    rx_fifo: VecDeque<u8>,
    backlog: VecDeque<u8>,
    dropped_input: u64,
    irq_asserted: bool,
}

impl Uart {
    /// A UART in its reset state whose transmitter writes to `out` and whose
    /// interrupt output drives `irq` (an edge-triggered ISA IRQ on a PC).
    pub fn new(irq: Line, out: Box<dyn Write + Send>) -> Uart {
        Uart {
            irq,
            out,
            ier: 0,
            lcr: 0,
            mcr: 0,
            fcr: 0,
            scr: 0,
            divisor: RESET_DIVISOR,
            lsr_errors: 0,
            msr_deltas: 0,
            thre_pending: false,
            rx_fifo: VecDeque::with_capacity(FIFO_LEN),
            backlog: VecDeque::new(),
            dropped_input: 0,
            irq_asserted: false,
        }
    }

    /// Host input (from the machine's input thread): queued behind what the
    /// guest has not read yet, moved into the receive FIFO as room appears.
    pub fn input(&mut self, bytes: &[u8]) {
        let room = BACKLOG_LIMIT.saturating_sub(self.backlog.len());
        let taken = bytes.len().min(room);
        self.backlog.extend(&bytes[..taken]);
        self.dropped_input += (bytes.len() - taken) as u64;
        self.refill();
        self.update_irq();
    }

    /// A platform reset: every register at its power-on value, the
    /// interrupt deasserted. Host input the guest has not read yet (in the
    /// FIFO or the backlog) stays queued for the next driver.
    pub fn reset(&mut self) {
        while let Some(byte) = self.rx_fifo.pop_back() {
            self.backlog.push_front(byte);
        }
        self.ier = 0;
        self.lcr = 0;
        self.mcr = 0;
        self.fcr = 0;
        self.scr = 0;
        self.divisor = RESET_DIVISOR;
        self.lsr_errors = 0;
        self.msr_deltas = 0;
        self.thre_pending = false;
        self.refill();
        self.update_irq();
    }

    /// Host input bytes dropped because the backlog was full.
    pub fn dropped_input(&self) -> u64 {
        self.dropped_input
    }

    fn loopback(&self) -> bool {
        self.mcr & MCR_LOOP != 0
    }

    fn fifo_enabled(&self) -> bool {
        self.fcr & FCR_ENABLE != 0
    }

    fn fifo_capacity(&self) -> usize {
        if self.fifo_enabled() {
            FIFO_LEN
        } else {
            1
        }
    }

    fn trigger_level(&self) -> usize {
        [1, 4, 8, 14][(self.fcr >> 6) as usize]
    }

    /// Moves host input into the FIFO while it has room; the serial input is
    /// disconnected in loopback, so input waits.
    fn refill(&mut self) {
        if self.loopback() {
            return;
        }
        while self.rx_fifo.len() < self.fifo_capacity() {
            match self.backlog.pop_front() {
                Some(b) => self.rx_fifo.push_back(b),
                None => break,
            }
        }
    }

    /// CTS, DSR, RI, DCD as the chip sees them: the MCR outputs looped back,
    /// or a peer that is always there and ready.
    fn modem_lines(&self) -> u8 {
        if self.loopback() {
            let m = self.mcr;
            (if m & MCR_RTS != 0 { MSR_CTS } else { 0 })
                | (if m & MCR_DTR != 0 { MSR_DSR } else { 0 })
                | (if m & MCR_OUT1 != 0 { MSR_RI } else { 0 })
                | (if m & MCR_OUT2 != 0 { MSR_DCD } else { 0 })
        } else {
            MSR_CTS | MSR_DSR | MSR_DCD
        }
    }

    fn lsr(&self) -> u8 {
        let dr = if self.rx_fifo.is_empty() { 0 } else { LSR_DR };
        dr | self.lsr_errors | LSR_THRE | LSR_TEMT
    }

    /// The highest-priority pending interrupt, as its IIR identification.
    fn pending_interrupt(&self) -> u8 {
        if self.ier & IER_RLS != 0 && self.lsr_errors & LSR_ERRORS != 0 {
            IIR_RLS
        } else if self.ier & IER_RDA != 0 && !self.rx_fifo.is_empty() {
            if self.fifo_enabled() && self.rx_fifo.len() < self.trigger_level() {
                IIR_TIMEOUT
            } else {
                IIR_RDA
            }
        } else if self.ier & IER_THRE != 0 && self.thre_pending {
            IIR_THRE
        } else if self.ier & IER_MSR != 0 && self.msr_deltas != 0 {
            IIR_MSR
        } else {
            IIR_NONE
        }
    }

    fn update_irq(&mut self) {
        let out2 = self.mcr & MCR_OUT2 != 0 && !self.loopback();
        let level = out2 && self.pending_interrupt() != IIR_NONE;
        if level != self.irq_asserted {
            self.irq_asserted = level;
            self.irq.set_level(level);
        }
    }

    fn transmit(&mut self, byte: u8) {
        if self.loopback() {
            if self.rx_fifo.len() < self.fifo_capacity() {
                self.rx_fifo.push_back(byte);
            } else {
                self.lsr_errors |= LSR_OE;
            }
        } else {
            // A console that can no longer be written loses output; the
            // guest must not notice, so the error goes no further.
            let _ = self.out.write_all(&[byte]).and_then(|_| self.out.flush());
        }
        // The byte left THR at once: THR is empty again.
        self.thre_pending = true;
    }

    fn read_register(&mut self, offset: u64) -> u8 {
        let dlab = self.lcr & LCR_DLAB != 0;
        match offset {
            RBR_THR_DLL if dlab => self.divisor as u8,
            RBR_THR_DLL => {
                let byte = self.rx_fifo.pop_front().unwrap_or(0);
                self.refill();
                byte
            }
            IER_DLM if dlab => (self.divisor >> 8) as u8,
            IER_DLM => self.ier,
            IIR_FCR => {
                let id = self.pending_interrupt();
                if id == IIR_THRE {
                    self.thre_pending = false;
                }
                let fifo = if self.fifo_enabled() {
                    IIR_FIFO_ENABLED
                } else {
                    0
                };
                id | fifo
            }
            LCR => self.lcr,
            MCR => self.mcr,
            LSR => {
                let lsr = self.lsr();
                self.lsr_errors = 0;
                lsr
            }
            MSR => {
                let msr = self.modem_lines() | self.msr_deltas;
                self.msr_deltas = 0;
                msr
            }
            SCR => self.scr,
            _ => 0xff,
        }
    }

    fn write_register(&mut self, offset: u64, value: u8) {
        let dlab = self.lcr & LCR_DLAB != 0;
        match offset {
            RBR_THR_DLL if dlab => self.divisor = (self.divisor & 0xff00) | value as u16,
            RBR_THR_DLL => self.transmit(value),
            IER_DLM if dlab => self.divisor = (self.divisor & 0x00ff) | (value as u16) << 8,
            IER_DLM => {
                let old = self.ier;
                self.ier = value & IER_MASK;
                if (old ^ self.ier) & IER_THRE != 0 {
                    // Enabling the THRE interrupt with THR empty (always, here)
                    // raises it at once; disabling it drops it.
                    self.thre_pending = self.ier & IER_THRE != 0;
                }
            }
            IIR_FCR => self.write_fcr(value),
            LCR => self.lcr = value,
            MCR => {
                let old_lines = self.modem_lines();
                self.mcr = value & MCR_MASK;
                let new_lines = self.modem_lines();
                let changed = old_lines ^ new_lines;
                if changed & MSR_CTS != 0 {
                    self.msr_deltas |= MSR_DCTS;
                }
                if changed & MSR_DSR != 0 {
                    self.msr_deltas |= MSR_DDSR;
                }
                if changed & MSR_DCD != 0 {
                    self.msr_deltas |= MSR_DDCD;
                }
                if old_lines & MSR_RI != 0 && new_lines & MSR_RI == 0 {
                    self.msr_deltas |= MSR_TERI;
                }
                self.refill();
            }
            LSR | MSR => {} // read-only (factory test registers on a real chip)
            SCR => self.scr = value,
            _ => {}
        }
    }

    fn write_fcr(&mut self, value: u8) {
        let was_enabled = self.fifo_enabled();
        let enable = value & FCR_ENABLE != 0;
        if enable != was_enabled {
            // Switching between FIFO and character mode empties the FIFOs.
            self.rx_fifo.clear();
        }
        if enable {
            self.fcr = value & (FCR_ENABLE | FCR_DMA_MODE | FCR_TRIGGER);
            if value & FCR_CLEAR_RX != 0 {
                self.rx_fifo.clear();
            }
        } else {
            self.fcr = 0;
        }
        self.refill();
    }
}

impl BusDevice for Uart {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        read_bytewise(offset, data, |o| self.read_register(o));
        self.update_irq();
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        write_bytewise(offset, data, |o, v| self.write_register(o, v));
        self.update_irq();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{inb, outb, RecordingLine};
    use std::sync::{Arc, Mutex};

    /// A `Write` whose bytes the test can look at.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn uart() -> (Uart, Arc<RecordingLine>, Sink) {
        let line = RecordingLine::new();
        let sink = Sink::default();
        (Uart::new(line.clone(), Box::new(sink.clone())), line, sink)
    }

    /// The interrupt setup Linux's 8250 driver ends with: FIFO on (trigger
    /// 8), 8N1, DTR|RTS|OUT2, receive and line-status interrupts.
    fn linux_startup(u: &mut Uart) {
        outb(u, IIR_FCR, 0x87);
        outb(u, LCR, 0x03);
        outb(u, MCR, 0x0b);
        outb(u, IER_DLM, IER_RDA | IER_RLS);
    }

    #[test]
    fn reset_values() {
        let (mut u, line, _) = uart();
        let expected = [
            (IER_DLM, 0x00),
            (IIR_FCR, 0x01),
            (LCR, 0x00),
            (MCR, 0x00),
            (LSR, 0x60),
            (MSR, 0xb0),
            (SCR, 0x00),
        ];
        for (offset, value) in expected {
            assert_eq!(inb(&mut u, offset), value, "register {offset}");
        }
        assert!(line.history().is_empty());
        outb(&mut u, LCR, LCR_DLAB);
        assert_eq!(inb(&mut u, 0), 12);
        assert_eq!(inb(&mut u, 1), 0);
        assert_eq!(inb(&mut u, 8), 0xff, "beyond the eight registers");
    }

    #[test]
    fn register_masks_and_divisor_latch() {
        let (mut u, _, sink) = uart();
        outb(&mut u, IER_DLM, 0xff);
        assert_eq!(inb(&mut u, IER_DLM), 0x0f, "IER bits 4-7 read 0");
        outb(&mut u, IER_DLM, 0);
        outb(&mut u, MCR, 0xff);
        assert_eq!(inb(&mut u, MCR), 0x1f, "MCR bits 5-7 read 0");
        outb(&mut u, MCR, 0);
        outb(&mut u, SCR, 0x5a);
        assert_eq!(inb(&mut u, SCR), 0x5a);
        // DLAB switches offsets 0/1 to the divisor; writes there transmit nothing.
        outb(&mut u, LCR, 0x83);
        outb(&mut u, 0, 0x01);
        outb(&mut u, 1, 0x00);
        assert_eq!((inb(&mut u, 0), inb(&mut u, 1)), (1, 0));
        outb(&mut u, LCR, 0x03);
        assert_eq!(inb(&mut u, LCR), 0x03);
        assert_eq!(inb(&mut u, IER_DLM), 0, "IER kept apart from DLM");
        assert!(sink.0.lock().unwrap().is_empty());
        // A 16-bit access is two byte accesses at consecutive ports.
        u.write(LCR, &[0x83, 0x00]);
        assert_eq!(inb(&mut u, LCR), 0x83);
        let mut w = [0u8; 2];
        u.read(0, &mut w);
        assert_eq!(w, [1, 0]);
    }

    #[test]
    fn transmits_to_the_output() {
        let (mut u, _, sink) = uart();
        for b in b"login: " {
            outb(&mut u, 0, *b);
        }
        assert_eq!(&*sink.0.lock().unwrap(), b"login: ");
        assert_eq!(inb(&mut u, LSR) & 0x60, 0x60, "THRE and TEMT stay set");
    }

    /// Linux's `autoconfig`: the IER probe, the loopback probe
    /// (MSR & 0xf0 must be 0x90), then FIFO detection through IIR bits 6-7.
    #[test]
    fn linux_probe_finds_a_16550a() {
        let (mut u, line, sink) = uart();
        outb(&mut u, IER_DLM, 0);
        assert_eq!(inb(&mut u, IER_DLM) & 0x0f, 0);
        outb(&mut u, IER_DLM, 0x0f);
        assert_eq!(inb(&mut u, IER_DLM) & 0x0f, 0x0f);
        outb(&mut u, IER_DLM, 0);

        outb(&mut u, MCR, MCR_LOOP | 0x0a);
        assert_eq!(inb(&mut u, MSR) & 0xf0, 0x90);
        outb(&mut u, MCR, 0);

        outb(&mut u, LCR, 0xbf);
        outb(&mut u, IIR_FCR, 0); // EFR on a 16650; FCR here
        outb(&mut u, LCR, 0);
        outb(&mut u, IIR_FCR, FCR_ENABLE);
        assert_eq!(inb(&mut u, IIR_FCR) >> 6, 3, "16550A FIFO bits");
        // 16750 check: IIR bit 5 does not follow FCR bit 5.
        outb(&mut u, LCR, LCR_DLAB);
        outb(&mut u, IIR_FCR, FCR_ENABLE | 0x20);
        let with_64 = inb(&mut u, IIR_FCR) >> 5;
        outb(&mut u, IIR_FCR, FCR_ENABLE);
        outb(&mut u, LCR, 0);
        assert_eq!(with_64, inb(&mut u, IIR_FCR) >> 5);
        // IER bit 6 (XScale UUE) does not stick.
        outb(&mut u, IER_DLM, 0x40);
        assert_eq!(inb(&mut u, IER_DLM), 0);

        // Loopback data: what is sent comes back, nothing reaches the host.
        outb(&mut u, MCR, MCR_LOOP);
        outb(&mut u, 0, 0x55);
        assert_eq!(inb(&mut u, LSR) & LSR_DR, LSR_DR);
        assert_eq!(inb(&mut u, 0), 0x55);
        assert_eq!(inb(&mut u, LSR) & LSR_DR, 0);
        outb(&mut u, MCR, 0);
        assert!(sink.0.lock().unwrap().is_empty());
        assert!(line.history().is_empty(), "no interrupt without OUT2");
    }

    #[test]
    fn loopback_modem_lines_and_deltas() {
        let (mut u, _, _) = uart();
        outb(&mut u, MCR, MCR_LOOP);
        // Entering loopback drops CTS, DSR, DCD: deltas for all three.
        assert_eq!(inb(&mut u, MSR), MSR_DCTS | MSR_DDSR | MSR_DDCD);
        assert_eq!(inb(&mut u, MSR), 0, "deltas clear on read");
        for (mcr_bit, msr_bit) in [
            (MCR_RTS, MSR_CTS),
            (MCR_DTR, MSR_DSR),
            (MCR_OUT1, MSR_RI),
            (MCR_OUT2, MSR_DCD),
        ] {
            outb(&mut u, MCR, MCR_LOOP | mcr_bit);
            assert_eq!(inb(&mut u, MSR) & 0xf0, msr_bit);
        }
        // RI's delta is for its trailing edge only.
        outb(&mut u, MCR, MCR_LOOP | MCR_OUT1);
        inb(&mut u, MSR);
        outb(&mut u, MCR, MCR_LOOP);
        assert_eq!(inb(&mut u, MSR), MSR_TERI);
    }

    /// Linux's THRE test in `serial8250_do_startup`: enabling ETBEI with THR
    /// empty raises THRE at once, reading IIR clears it, enabling again
    /// raises it again.
    #[test]
    fn thre_interrupt_as_linux_tests_it() {
        let (mut u, line, _) = uart();
        outb(&mut u, MCR, MCR_OUT2);
        outb(&mut u, IER_DLM, IER_THRE);
        assert!(line.level());
        assert_eq!(inb(&mut u, IIR_FCR), IIR_THRE);
        assert!(!line.level(), "reading IIR cleared THRE");
        assert_eq!(inb(&mut u, IIR_FCR), IIR_NONE);
        outb(&mut u, IER_DLM, 0);
        outb(&mut u, IER_DLM, IER_THRE);
        assert_eq!(inb(&mut u, IIR_FCR), IIR_THRE);
        // Writing THR empties it again at once: THRE comes back.
        outb(&mut u, 0, b'x');
        assert!(line.level());
        // Clearing ETBEI drops it.
        outb(&mut u, IER_DLM, 0);
        assert!(!line.level());
        assert_eq!(line.rising_edges(), 3);
    }

    #[test]
    fn out2_gates_the_interrupt() {
        let (mut u, line, _) = uart();
        outb(&mut u, IER_DLM, IER_THRE);
        assert!(!line.level());
        assert_eq!(
            inb(&mut u, IIR_FCR) & 0x0f,
            IIR_THRE,
            "pending inside the chip"
        );
        outb(&mut u, IER_DLM, 0);
        outb(&mut u, IER_DLM, IER_THRE);
        outb(&mut u, MCR, MCR_OUT2);
        assert!(line.level());
        outb(&mut u, MCR, MCR_OUT2 | MCR_LOOP);
        assert!(!line.level(), "loopback forces OUT2 off");
        outb(&mut u, MCR, 0);
        assert!(!line.level());
    }

    #[test]
    fn receive_interrupt_and_fifo() {
        let (mut u, line, _) = uart();
        linux_startup(&mut u);
        assert!(!line.level());
        u.input(b"ab");
        assert!(line.level());
        assert_eq!(
            inb(&mut u, IIR_FCR),
            0xc0 | IIR_TIMEOUT,
            "below the trigger level"
        );
        u.input(b"cdefgh");
        assert_eq!(
            inb(&mut u, IIR_FCR),
            0xc0 | IIR_RDA,
            "at the trigger level (8)"
        );
        assert_eq!(inb(&mut u, LSR), 0x61);
        let mut got = Vec::new();
        while inb(&mut u, LSR) & LSR_DR != 0 {
            got.push(inb(&mut u, 0));
        }
        assert_eq!(got, b"abcdefgh");
        assert!(!line.level());
        assert_eq!(inb(&mut u, IIR_FCR), 0xc1);
        assert_eq!(line.rising_edges(), 1);
    }

    #[test]
    fn pasted_input_waits_beyond_the_fifo() {
        let (mut u, line, _) = uart();
        linux_startup(&mut u);
        let text: Vec<u8> = (0..100u8).collect();
        u.input(&text);
        assert_eq!(
            u.rx_fifo.len(),
            FIFO_LEN,
            "the guest sees 16 bytes at a time"
        );
        let mut got = Vec::new();
        while inb(&mut u, LSR) & LSR_DR != 0 {
            got.push(inb(&mut u, 0));
        }
        assert_eq!(got, text, "nothing lost, nothing reordered");
        assert_eq!(inb(&mut u, LSR) & LSR_OE, 0, "no overrun");
        assert!(!line.level());
        assert_eq!(u.dropped_input(), 0);
    }

    #[test]
    fn without_fifo_one_byte_at_a_time() {
        let (mut u, _, _) = uart();
        u.input(b"xyz");
        assert_eq!(u.rx_fifo.len(), 1);
        assert_eq!(inb(&mut u, IIR_FCR) & 0xc0, 0);
        assert_eq!(inb(&mut u, 0), b'x');
        assert_eq!(inb(&mut u, 0), b'y');
        assert_eq!(inb(&mut u, 0), b'z');
        assert_eq!(inb(&mut u, LSR) & LSR_DR, 0);
    }

    #[test]
    fn loopback_overrun_is_a_line_status_interrupt() {
        let (mut u, line, _) = uart();
        outb(&mut u, IIR_FCR, FCR_ENABLE);
        outb(&mut u, IER_DLM, IER_RLS | IER_RDA);
        outb(&mut u, MCR, MCR_LOOP | MCR_OUT2);
        for i in 0..17 {
            outb(&mut u, 0, i);
        }
        assert_eq!(inb(&mut u, IIR_FCR), 0xc0 | IIR_RLS, "RLS outranks RDA");
        assert_eq!(inb(&mut u, LSR) & (LSR_OE | LSR_DR), LSR_OE | LSR_DR);
        assert_eq!(inb(&mut u, LSR) & LSR_OE, 0, "reading LSR clears OE");
        assert_eq!(inb(&mut u, IIR_FCR), 0xc0 | IIR_RDA);
        assert!(!line.level(), "loopback: nothing reaches the PIC");
        // Host input waits out the loopback, then arrives behind it.
        u.input(b"h");
        let looped: Vec<u8> = (0..16).map(|_| inb(&mut u, 0)).collect();
        assert_eq!(looped, (0..16).collect::<Vec<u8>>());
        assert_eq!(inb(&mut u, LSR) & LSR_DR, 0);
        outb(&mut u, MCR, MCR_OUT2);
        assert_eq!(inb(&mut u, 0), b'h');
    }

    #[test]
    fn interrupt_priorities() {
        let (mut u, _, _) = uart();
        outb(&mut u, MCR, MCR_OUT2);
        outb(&mut u, IER_DLM, IER_MSR);
        outb(&mut u, MCR, MCR_OUT2 | MCR_LOOP); // modem lines change
        outb(&mut u, MCR, MCR_OUT2);
        outb(&mut u, IER_DLM, IER_MSR | IER_THRE);
        u.input(b"q");
        outb(&mut u, IER_DLM, 0x0f);
        assert_eq!(inb(&mut u, IIR_FCR), IIR_RDA);
        inb(&mut u, 0);
        assert_eq!(inb(&mut u, IIR_FCR), IIR_THRE);
        assert_eq!(inb(&mut u, IIR_FCR), IIR_MSR, "THRE cleared by the read");
        inb(&mut u, MSR);
        assert_eq!(inb(&mut u, IIR_FCR), IIR_NONE);
    }

    #[test]
    fn fcr_clears_and_mode_switches_empty_the_fifo() {
        let (mut u, _, _) = uart();
        outb(&mut u, IIR_FCR, FCR_ENABLE);
        outb(&mut u, MCR, MCR_LOOP);
        outb(&mut u, 0, 1);
        outb(&mut u, 0, 2);
        outb(&mut u, IIR_FCR, FCR_ENABLE | FCR_CLEAR_RX);
        assert_eq!(inb(&mut u, LSR) & LSR_DR, 0);
        outb(&mut u, 0, 3);
        outb(&mut u, IIR_FCR, 0);
        assert_eq!(inb(&mut u, LSR) & LSR_DR, 0);
        assert_eq!(inb(&mut u, IIR_FCR), IIR_NONE, "FIFO bits gone");
    }

    #[test]
    fn a_platform_reset_restores_registers_and_keeps_unread_input() {
        let (mut u, line, _) = uart();
        linux_startup(&mut u);
        outb(&mut u, SCR, 0x5a);
        u.input(b"abc");
        assert!(line.level(), "receive interrupt");
        assert_eq!(inb(&mut u, RBR_THR_DLL), b'a');
        u.reset();
        assert!(!line.level(), "deasserted by the reset");
        for (offset, value) in [(IER_DLM, 0), (LCR, 0), (MCR, 0), (SCR, 0)] {
            assert_eq!(inb(&mut u, offset), value, "register {offset}");
        }
        assert_eq!(inb(&mut u, RBR_THR_DLL), b'b', "unread input kept in order");
        assert_eq!(inb(&mut u, RBR_THR_DLL), b'c');
    }
}
