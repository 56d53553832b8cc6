//! The kernel console: a 16550 UART at COM1 (and the Bochs/QEMU debug port 0xe9 is
//! left alone). Owns the `kprintln!` macro; output from several CPUs is serialised
//! line by line by one spin lock.

use crate::arch::port::{inb, outb};
use core::fmt::{self, Write};
use spin::Mutex;

const COM1: u16 = 0x3f8;

pub struct Serial;

impl Serial {
    fn init() {
        outb(COM1 + 1, 0x00); // no interrupts
        outb(COM1 + 3, 0x80); // DLAB
        outb(COM1, 0x01); // 115200 baud
        outb(COM1 + 1, 0x00);
        outb(COM1 + 3, 0x03); // 8N1
        outb(COM1 + 2, 0xc7); // FIFO on, cleared
        outb(COM1 + 4, 0x03); // DTR, RTS
    }

    fn put(byte: u8) {
        for _ in 0..100_000 {
            if inb(COM1 + 5) & 0x20 != 0 {
                break;
            }
        }
        outb(COM1, byte);
    }

    pub fn write_bytes(bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                Self::put(b'\r');
            }
            Self::put(b);
        }
    }
}

impl Write for Serial {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        Self::write_bytes(s.as_bytes());
        Ok(())
    }
}

static LOCK: Mutex<()> = Mutex::new(());

pub fn init() {
    Serial::init();
}

pub fn print(args: fmt::Arguments) {
    let _guard = LOCK.lock();
    let _ = Serial.write_fmt(args);
}

/// Moves received bytes into `buf` (as many as are waiting, up to its size) and
/// turns on the receive interrupt (ISA IRQ 4), so that the next byte is signalled.
pub fn read_bytes(buf: &mut [u8]) -> usize {
    let _guard = LOCK.lock();
    outb(COM1 + 1, 0x01);
    let mut n = 0;
    while n < buf.len() && inb(COM1 + 5) & 0x01 != 0 {
        buf[n] = inb(COM1);
        n += 1;
    }
    n
}

/// Writes raw bytes (user output) under the console lock.
pub fn write_bytes(bytes: &[u8]) {
    let _guard = LOCK.lock();
    Serial::write_bytes(bytes);
}

#[macro_export]
macro_rules! kprintln {
    () => { $crate::console::print(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::console::print(format_args!("{}\n", format_args!($($arg)*))) };
}

#[macro_export]
macro_rules! kprint {
    ($($arg:tt)*) => { $crate::console::print(format_args!($($arg)*)) };
}
