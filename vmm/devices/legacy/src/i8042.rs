//! i8042 keyboard controller (ports 0x60 data, 0x64 status/command) with a
//! minimal PS/2 keyboard behind it.
//!
//! Owns: the controller's command byte, output buffer, self and interface
//! tests, output port (the reset line: pulsing it ends in
//! [`PowerEvent::Reset`]), IRQ1, and a keyboard that answers the commands
//! Linux's atkbd sends (reset, identify, LEDs, scancode set, typematic,
//! enable/disable) and sends what [`I8042::key`] injects. Must not touch:
//! the host keyboard (the machine translates host input into scancodes).
//!
//! There is no AUX (mouse) device: the AUX loopback (0xd3) answers as
//! keyboard data and the AUX interface test (0xa9) reports the clock line
//! stuck high, so Linux's `i8042_check_aux` gives up at once instead of
//! waiting for timeouts; bytes sent to the AUX device (0xd4) vanish.
//! Not modelled: A20 (the gate bit of the output port is only stored), the
//! keyboard's typematic repeat, scancode translation (the controller's
//! translate bit only changes the identify answer: `key` bytes are
//! delivered as given, so give set-1 codes while translation is on, as
//! Linux leaves it), controller RAM beyond the command byte (reads 0).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use vmm_bus::{BusDevice, Line};

use crate::{read_bytewise, write_bytewise, PowerEvent, PowerEvents};

/// The data port, the status/command port, and the keyboard's ISA IRQ.
pub const I8042_DATA_PORT: u16 = 0x60;
pub const I8042_COMMAND_PORT: u16 = 0x64;
pub const KEYBOARD_IRQ: u32 = 1;

// Status register bits.
const STS_OBF: u8 = 0x01;
const STS_SYS: u8 = 0x04;
const STS_COMMAND: u8 = 0x08;
const STS_UNLOCKED: u8 = 0x10;

// Command byte bits.
const CTR_KBD_INT: u8 = 0x01;
const CTR_SYS: u8 = 0x04;
const CTR_KBD_DISABLED: u8 = 0x10;
const CTR_AUX_DISABLED: u8 = 0x20;
const CTR_TRANSLATE: u8 = 0x40;
/// As a BIOS leaves it on a PC without a mouse: translation, AUX disabled,
/// POST passed, keyboard interrupt on.
const RESET_CTR: u8 = CTR_TRANSLATE | CTR_AUX_DISABLED | CTR_SYS | CTR_KBD_INT;

// Output port bits.
const OUT_RESET: u8 = 0x01; // active low
const OUT_A20: u8 = 0x02;
const OUT_KBD_OBF: u8 = 0x10;

// Controller answers.
const SELF_TEST_OK: u8 = 0x55;
const INTERFACE_OK: u8 = 0x00;
const INTERFACE_CLOCK_HIGH: u8 = 0x02;
const NO_PASSWORD: u8 = 0xf1;

// Keyboard answers.
const ACK: u8 = 0xfa;
const RESEND: u8 = 0xfe;
const BAT_OK: u8 = 0xaa;
const ECHO: u8 = 0xee;
const KEYBOARD_ID: u8 = 0xab;
const KEYBOARD_ID_MF2: u8 = 0x83;
const KEYBOARD_ID_MF2_TRANSLATED: u8 = 0x41;

/// Bytes a keyboard holds for the controller; more input is dropped, as a
/// keyboard's buffer overflows.
const KEYBOARD_QUEUE_LIMIT: usize = 256;

/// Controller commands that take a data byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Awaiting {
    Ram(u8),
    OutputPort,
    KeyboardOutput,
    AuxOutput,
    AuxDevice,
}

struct Keyboard {
    queue: VecDeque<u8>,
    scanning: bool,
    scancode_set: u8,
    leds: u8,
    /// A command waiting for its parameter byte.
    awaiting: Option<u8>,
    last_sent: u8,
}

impl Keyboard {
    fn new() -> Keyboard {
        Keyboard {
            queue: VecDeque::new(),
            scanning: true,
            scancode_set: 2,
            leds: 0,
            awaiting: None,
            last_sent: 0,
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.queue.len() < KEYBOARD_QUEUE_LIMIT {
                self.queue.push_back(b);
            }
        }
    }

    fn defaults(&mut self) {
        self.scancode_set = 2;
        self.leds = 0;
    }

    /// A byte from the host (the guest) to the keyboard.
    fn receive(&mut self, byte: u8, translated: bool) {
        if let Some(command) = self.awaiting.take() {
            match command {
                0xed => self.leds = byte & 7,
                0xf0 if byte == 0 => {
                    // Translated, the set number arrives as set 1 would say it.
                    let set = if translated {
                        [0x43, 0x41, 0x3f][(self.scancode_set - 1) as usize]
                    } else {
                        self.scancode_set
                    };
                    self.send(&[ACK, set]);
                    return;
                }
                0xf0 if (1..=3).contains(&byte) => self.scancode_set = byte,
                0xf0 => {
                    self.send(&[RESEND]);
                    return;
                }
                _ => {} // 0xf3: typematic rate, not modelled
            }
            self.send(&[ACK]);
            return;
        }
        match byte {
            0xed | 0xf0 | 0xf3 => {
                self.awaiting = Some(byte);
                self.send(&[ACK]);
            }
            0xee => self.send(&[ECHO]),
            0xf2 => {
                let id = if translated {
                    KEYBOARD_ID_MF2_TRANSLATED
                } else {
                    KEYBOARD_ID_MF2
                };
                self.send(&[ACK, KEYBOARD_ID, id]);
            }
            0xf4 => {
                self.scanning = true;
                self.send(&[ACK]);
            }
            0xf5 => {
                self.scanning = false;
                self.queue.clear();
                self.defaults();
                self.send(&[ACK]);
            }
            0xf6 => {
                self.defaults();
                self.send(&[ACK]);
            }
            0xf7..=0xfd => self.send(&[ACK]),
            0xfe => {
                let last = self.last_sent;
                self.send(&[last]);
            }
            0xff => {
                self.queue.clear();
                self.defaults();
                self.scanning = true;
                self.send(&[ACK, BAT_OK]);
            }
            _ => self.send(&[RESEND]),
        }
    }
}

struct Controller {
    irq1: Line,
    events: PowerEvents,
    command_byte: u8,
    /// The output buffer, and whether its byte came from the keyboard.
    output: Option<(u8, bool)>,
    pending: Option<Awaiting>,
    last_write_was_command: bool,
    output_port: u8,
    keyboard: Keyboard,
    irq_asserted: bool,
}

impl Controller {
    fn status(&self) -> u8 {
        let obf = if self.output.is_some() { STS_OBF } else { 0 };
        let sys = if self.command_byte & CTR_SYS != 0 {
            STS_SYS
        } else {
            0
        };
        let command = if self.last_write_was_command {
            STS_COMMAND
        } else {
            0
        };
        obf | sys | command | STS_UNLOCKED
    }

    /// A controller answer: it takes the output buffer; a keyboard byte
    /// still there goes back to the keyboard to be sent again.
    fn answer(&mut self, byte: u8) {
        if let Some((previous, true)) = self.output.replace((byte, false)) {
            self.keyboard.queue.push_front(previous);
        }
    }

    /// Moves the keyboard's next byte into a free output buffer.
    fn pump(&mut self) {
        if self.output.is_none() && self.command_byte & CTR_KBD_DISABLED == 0 {
            if let Some(byte) = self.keyboard.queue.pop_front() {
                self.keyboard.last_sent = byte;
                self.output = Some((byte, true));
            }
        }
    }

    fn update(&mut self) {
        self.pump();
        self.update_irq();
    }

    /// IRQ1 follows "output buffer full" while the keyboard interrupt is on.
    fn update_irq(&mut self) {
        let level = self.output.is_some() && self.command_byte & CTR_KBD_INT != 0;
        if level != self.irq_asserted {
            self.irq_asserted = level;
            self.irq1.set_level(level);
        }
    }

    fn read_data(&mut self) -> u8 {
        self.output.take().map_or(0, |(byte, _)| byte)
    }

    fn write_command(&mut self, command: u8) {
        self.last_write_was_command = true;
        self.pending = None;
        match command {
            0x20 => self.answer(self.command_byte),
            0x21..=0x3f => self.answer(0),
            0x60..=0x7f => self.pending = Some(Awaiting::Ram(command - 0x60)),
            0xa4 => self.answer(NO_PASSWORD),
            0xa7 => self.command_byte |= CTR_AUX_DISABLED,
            0xa8 => self.command_byte &= !CTR_AUX_DISABLED,
            0xa9 => self.answer(INTERFACE_CLOCK_HIGH),
            0xaa => {
                self.command_byte |= CTR_SYS;
                self.answer(SELF_TEST_OK);
            }
            0xab => self.answer(INTERFACE_OK),
            0xad => self.command_byte |= CTR_KBD_DISABLED,
            0xae => self.command_byte &= !CTR_KBD_DISABLED,
            0xd0 => {
                let obf = if self.output.is_some() {
                    OUT_KBD_OBF
                } else {
                    0
                };
                self.answer(self.output_port | obf);
            }
            0xd1 => self.pending = Some(Awaiting::OutputPort),
            0xd2 => self.pending = Some(Awaiting::KeyboardOutput),
            0xd3 => self.pending = Some(Awaiting::AuxOutput),
            0xd4 => self.pending = Some(Awaiting::AuxDevice),
            // Pulse output port bits low for 6 us: bit 0 is the reset line.
            0xf0..=0xff if command & OUT_RESET == 0 => (self.events)(PowerEvent::Reset),
            _ => {} // unknown or no-op commands
        }
    }

    fn write_data(&mut self, byte: u8) {
        self.last_write_was_command = false;
        match self.pending.take() {
            Some(Awaiting::Ram(0)) => self.command_byte = byte,
            Some(Awaiting::Ram(_)) => {}
            Some(Awaiting::OutputPort) => {
                self.output_port = byte & !OUT_KBD_OBF;
                if byte & OUT_RESET == 0 {
                    (self.events)(PowerEvent::Reset);
                }
            }
            Some(Awaiting::KeyboardOutput) => self.answer(byte),
            // No AUX device: the loop comes back as keyboard data.
            Some(Awaiting::AuxOutput) => self.answer(byte),
            Some(Awaiting::AuxDevice) => {}
            None => {
                let translated = self.command_byte & CTR_TRANSLATE != 0;
                self.keyboard.receive(byte, translated);
            }
        }
    }
}

/// The i8042 and its keyboard. Cheap to clone: all clones and ports share
/// one controller, so the machine's input thread can call [`I8042::key`].
#[derive(Clone)]
pub struct I8042 {
    inner: Arc<Mutex<Controller>>,
}

impl I8042 {
    /// A controller as a BIOS leaves it, raising `irq1` while its output
    /// buffer is full (and the guest enabled the keyboard interrupt), and
    /// reporting resets to `events`.
    pub fn new(irq1: Line, events: PowerEvents) -> I8042 {
        let controller = Controller {
            irq1,
            events,
            command_byte: RESET_CTR,
            output: None,
            pending: None,
            last_write_was_command: false,
            output_port: OUT_RESET | OUT_A20,
            keyboard: Keyboard::new(),
            irq_asserted: false,
        };
        I8042 {
            inner: Arc::new(Mutex::new(controller)),
        }
    }

    /// A platform reset: the controller and keyboard as [`I8042::new`]
    /// leaves them, IRQ1 deasserted, bytes not yet read dropped.
    pub fn reset(&self) {
        let mut c = lock(&self.inner);
        c.command_byte = RESET_CTR;
        c.output = None;
        c.pending = None;
        c.last_write_was_command = false;
        c.output_port = OUT_RESET | OUT_A20;
        c.keyboard = Keyboard::new();
        c.update_irq();
    }

    /// The bus device for port 0x60.
    pub fn data_port(&self) -> I8042Port {
        I8042Port {
            inner: self.inner.clone(),
            command: false,
        }
    }

    /// The bus device for port 0x64.
    pub fn command_port(&self) -> I8042Port {
        I8042Port {
            inner: self.inner.clone(),
            command: true,
        }
    }

    /// Scancode bytes from the keyboard (set 1 while the controller
    /// translates, as Linux leaves it); dropped while the guest has
    /// scanning disabled.
    pub fn key(&self, scancode: &[u8]) {
        let mut c = lock(&self.inner);
        if c.keyboard.scanning {
            c.keyboard.send(scancode);
        }
        c.update();
    }
}

fn lock(inner: &Mutex<Controller>) -> MutexGuard<'_, Controller> {
    inner.lock().unwrap_or_else(|p| p.into_inner())
}

/// One of the i8042's two ports on the bus.
pub struct I8042Port {
    inner: Arc<Mutex<Controller>>,
    command: bool,
}

impl BusDevice for I8042Port {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let mut c = lock(&self.inner);
        read_bytewise(offset, data, |o| match (o, self.command) {
            (0, false) => c.read_data(),
            (0, true) => c.status(),
            _ => 0xff,
        });
        // The line falls when the buffer empties, and rises again for the
        // next byte: an edge per byte, as Linux's handler reads one per IRQ.
        c.update_irq();
        c.update();
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let mut c = lock(&self.inner);
        write_bytewise(offset, data, |o, v| match (o, self.command) {
            (0, false) => c.write_data(v),
            (0, true) => c.write_command(v),
            _ => {}
        });
        c.update();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{inb, outb, power_events, RecordingLine, SeenEvents};

    struct Rig {
        kbc: I8042,
        data: I8042Port,
        cmd: I8042Port,
        irq1: Arc<RecordingLine>,
        events: SeenEvents,
    }

    fn rig() -> Rig {
        let irq1 = RecordingLine::new();
        let (events, seen) = power_events();
        let kbc = I8042::new(irq1.clone(), events);
        Rig {
            data: kbc.data_port(),
            cmd: kbc.command_port(),
            kbc,
            irq1,
            events: seen,
        }
    }

    impl Rig {
        fn status(&mut self) -> u8 {
            inb(&mut self.cmd, 0)
        }
        /// A controller command and its answer, if any (Linux's
        /// `i8042_command`).
        fn command(&mut self, command: u8, param: Option<u8>) -> Option<u8> {
            outb(&mut self.cmd, 0, command);
            if let Some(p) = param {
                outb(&mut self.data, 0, p);
            }
            (self.status() & STS_OBF != 0).then(|| inb(&mut self.data, 0))
        }
        /// Bytes waiting, read as Linux's interrupt handler would.
        fn drain(&mut self) -> Vec<u8> {
            let mut bytes = Vec::new();
            while self.status() & STS_OBF != 0 {
                bytes.push(inb(&mut self.data, 0));
            }
            bytes
        }
        fn send_to_keyboard(&mut self, bytes: &[u8]) -> Vec<u8> {
            for &b in bytes {
                outb(&mut self.data, 0, b);
            }
            self.drain()
        }
    }

    #[test]
    fn reset_state() {
        let mut r = rig();
        assert_eq!(r.status(), STS_SYS | STS_UNLOCKED);
        assert_eq!(r.command(0x20, None), Some(0x65));
        assert_eq!(
            r.status() & STS_COMMAND,
            STS_COMMAND,
            "last write was a command"
        );
        assert_eq!(r.command(0xd0, None), Some(0x03), "reset line high, A20 on");
        assert!(r.events.lock().unwrap().is_empty());
        assert_eq!(inb(&mut r.data, 0), 0, "empty output buffer");
    }

    /// Linux's i8042 probe: flush, self test, read/write the command byte,
    /// no MUX, no AUX, keyboard interface test, enable the keyboard.
    #[test]
    fn linux_probe() {
        let mut r = rig();
        assert!(r.drain().is_empty());
        assert_eq!(r.command(0xaa, None), Some(0x55));
        let ctr = r.command(0x20, None).unwrap();
        let init = (ctr | CTR_KBD_DISABLED) & !CTR_KBD_INT;
        assert_eq!(r.command(0x60, Some(init)), None);
        assert_eq!(r.command(0x20, None), Some(init));
        // MUX probe: AUX loop of 0xf0 must come back as AUX data; it does
        // not (status bit 5 clear), so Linux stops there.
        assert_eq!(r.command(0xd3, Some(0xf0)), Some(0xf0));
        assert_eq!(r.status() & 0x20, 0);
        // i8042_check_aux: the loop answers without the AUX bit, then the
        // AUX test says "clock stuck" (not 0x00/0xfa/0xff): no AUX port.
        outb(&mut r.cmd, 0, 0xd3);
        outb(&mut r.data, 0, 0x5a);
        assert_eq!(r.status() & (STS_OBF | 0x20), STS_OBF);
        // Linux leaves the 0x5a unread; the next answer replaces it.
        assert_eq!(r.command(0xa9, None), Some(INTERFACE_CLOCK_HIGH));
        assert!(r.drain().is_empty());
        assert_eq!(r.command(0xab, None), Some(0x00));
        let edges = r.irq1.rising_edges();
        let enabled = (init & !CTR_KBD_DISABLED) | CTR_KBD_INT;
        r.command(0x60, Some(enabled));
        assert_eq!(r.command(0x20, None), Some(enabled));
        assert_eq!(
            r.irq1.rising_edges(),
            edges + 1,
            "answers raise IRQ1 once enabled"
        );
    }

    /// Linux's atkbd: reset-disable, identify, LEDs, typematic, enable.
    #[test]
    fn keyboard_commands() {
        let mut r = rig();
        assert_eq!(r.send_to_keyboard(&[0xff]), vec![ACK, BAT_OK]);
        assert_eq!(r.send_to_keyboard(&[0xf5]), vec![ACK]);
        assert_eq!(
            r.send_to_keyboard(&[0xf2]),
            vec![ACK, 0xab, 0x41],
            "translated MF2"
        );
        assert_eq!(r.send_to_keyboard(&[0xed, 0x07]), vec![ACK, ACK]);
        assert_eq!(r.kbc.inner.lock().unwrap().keyboard.leds, 7);
        assert_eq!(r.send_to_keyboard(&[0xf3, 0x20]), vec![ACK, ACK]);
        assert_eq!(r.send_to_keyboard(&[0xf4]), vec![ACK]);
        assert_eq!(r.send_to_keyboard(&[0xee]), vec![ECHO]);
        assert_eq!(
            r.send_to_keyboard(&[0xf0, 0x00]),
            vec![ACK, ACK, 0x41],
            "set 2, translated"
        );
        assert_eq!(r.send_to_keyboard(&[0xf0, 0x01]), vec![ACK, ACK]);
        assert_eq!(r.send_to_keyboard(&[0xf0, 0x09]), vec![ACK, RESEND]);
        assert_eq!(r.send_to_keyboard(&[0x42]), vec![RESEND], "unknown command");
        // Without translation, the identify and set answers are raw.
        let ctr = r.command(0x20, None).unwrap();
        r.command(0x60, Some(ctr & !CTR_TRANSLATE));
        assert_eq!(r.send_to_keyboard(&[0xf2]), vec![ACK, 0xab, 0x83]);
        assert_eq!(r.send_to_keyboard(&[0xf0, 0x00]), vec![ACK, ACK, 0x01]);
    }

    #[test]
    fn keys_raise_irq1_one_byte_at_a_time() {
        let mut r = rig();
        r.kbc.key(&[0x1e, 0x9e]); // 'a' make and break, set 1
        assert!(r.irq1.level());
        assert_eq!(inb(&mut r.data, 0), 0x1e);
        assert!(r.irq1.level(), "the next byte is loaded at once");
        assert_eq!(inb(&mut r.data, 0), 0x9e);
        assert!(!r.irq1.level());
        assert_eq!(r.irq1.rising_edges(), 2, "an edge per byte");
        // Disabled keyboard interface: bytes wait in the keyboard.
        r.command(0xad, None);
        r.kbc.key(&[0x30]);
        assert_eq!(r.status() & STS_OBF, 0);
        outb(&mut r.cmd, 0, 0xae);
        assert_eq!(r.drain(), vec![0x30]);
        // Scanning disabled: keys are dropped.
        r.send_to_keyboard(&[0xf5]);
        r.kbc.key(&[0x30]);
        assert!(r.drain().is_empty());
        // Keyboard interrupt off: data, no IRQ.
        r.send_to_keyboard(&[0xf4]);
        let ctr = r.command(0x20, None).unwrap();
        r.command(0x60, Some(ctr & !CTR_KBD_INT));
        let edges = r.irq1.rising_edges();
        r.kbc.key(&[0x1e]);
        assert_eq!(r.irq1.rising_edges(), edges);
        assert_eq!(r.drain(), vec![0x1e]);
    }

    #[test]
    fn controller_answers_do_not_lose_key_bytes() {
        let mut r = rig();
        r.kbc.key(&[0x10]);
        assert_eq!(r.command(0x20, None), Some(0x65));
        assert_eq!(r.drain(), vec![0x10]);
    }

    #[test]
    fn pulse_and_output_port_resets() {
        let mut r = rig();
        outb(&mut r.cmd, 0, 0xff); // pulses nothing
        assert!(r.events.lock().unwrap().is_empty());
        outb(&mut r.cmd, 0, 0xfe);
        assert_eq!(*r.events.lock().unwrap(), vec![PowerEvent::Reset]);
        r.command(0xd1, Some(0x03));
        assert_eq!(r.events.lock().unwrap().len(), 1, "reset line kept high");
        r.command(0xd1, Some(0x02));
        assert_eq!(r.events.lock().unwrap().len(), 2);
    }

    #[test]
    fn misc_commands() {
        let mut r = rig();
        assert_eq!(r.command(0xa4, None), Some(NO_PASSWORD));
        r.command(0xa8, None);
        assert_eq!(r.command(0x20, None).unwrap() & CTR_AUX_DISABLED, 0);
        r.command(0xa7, None);
        assert_ne!(r.command(0x20, None).unwrap() & CTR_AUX_DISABLED, 0);
        assert_eq!(r.command(0xd2, Some(0x77)), Some(0x77));
        assert_eq!(r.command(0xd4, Some(0xf2)), None, "no AUX device answers");
        assert_eq!(r.command(0x21, None), Some(0));
        // Wide accesses touch only the port itself.
        let mut w = [0u8; 2];
        r.cmd.read(0, &mut w);
        assert_eq!(w[1], 0xff);
    }

    #[test]
    fn a_platform_reset_restores_the_power_on_controller() {
        let mut r = rig();
        r.command(0x60, Some(CTR_KBD_INT));
        r.kbc.key(&[0x1e]);
        assert!(r.irq1.level());
        r.kbc.reset();
        assert!(!r.irq1.level(), "IRQ1 deasserted");
        assert_eq!(r.status(), STS_SYS | STS_UNLOCKED, "nothing to read");
        assert_eq!(r.command(0x20, None), Some(RESET_CTR));
    }
}
