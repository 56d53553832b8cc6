//! Port I/O without the test device: IN/OUT and string I/O with REP (both
//! directions of DF) on COM1's scratch register 0x3ff, and REP OUTSB of a line to COM1.
#![no_std]
#![no_main]

use core::arch::asm;
use guest_tests::{check, console::COM1, cpu, guest, println};

guest!(main);

const SCRATCH: u16 = 0x3ff;

/// REP OUTSB of `bytes` to `port`; returns (RCX, RSI) after the instruction.
fn rep_outsb(port: u16, bytes: &[u8]) -> (u64, u64) {
    let (rcx, rsi): (u64, u64);
    // SAFETY: OUTSB only reads `bytes` (RSI, DF = 0 as the ABI guarantees) and writes a port.
    unsafe {
        asm!(
            "rep outsb",
            in("dx") port,
            inout("rcx") bytes.len() as u64 => rcx,
            inout("rsi") bytes.as_ptr() => rsi,
            options(readonly, nostack, preserves_flags)
        )
    };
    (rcx, rsi)
}

/// REP INSB from `port` into `buf`, forwards (DF = 0) or backwards from the last byte
/// (DF = 1); returns (RCX, RDI) after the instruction.
fn rep_insb(port: u16, buf: &mut [u8], backwards: bool) -> (u64, u64) {
    let (rcx, rdi): (u64, u64);
    let start = if backwards { buf.len() - 1 } else { 0 };
    // SAFETY: INSB writes exactly buf.len() bytes inside `buf` (from its start upwards,
    // or from its last byte downwards with DF = 1); DF is cleared again before the end
    // of the block, as the ABI requires.
    unsafe {
        if backwards {
            asm!(
                "std",
                "rep insb",
                "cld",
                in("dx") port,
                inout("rcx") buf.len() as u64 => rcx,
                inout("rdi") buf.as_mut_ptr().add(start) => rdi,
                options(nostack)
            );
        } else {
            asm!(
                "rep insb",
                in("dx") port,
                inout("rcx") buf.len() as u64 => rcx,
                inout("rdi") buf.as_mut_ptr() => rdi,
                options(nostack, preserves_flags)
            );
        }
    }
    (rcx, rdi)
}

fn main() {
    for v in [0x5a_u8, 0xa5, 0x00, 0xff] {
        cpu::outb(SCRATCH, v);
        let back = cpu::inb(SCRATCH);
        check!(
            back == v,
            "OUT {v:#x} to port {SCRATCH:#x}, IN read {back:#x}"
        );
    }
    println!("IN/OUT of the scratch register");

    let pattern = *b"0123456789abcdefghij";
    let (rcx, rsi) = rep_outsb(SCRATCH, &pattern);
    check!(rcx == 0, "REP OUTSB left RCX = {rcx}");
    let end = pattern.as_ptr() as u64 + pattern.len() as u64;
    check!(
        rsi == end,
        "REP OUTSB left RSI = {rsi:#x}, expected {end:#x}"
    );
    let last = cpu::inb(SCRATCH);
    check!(
        last == b'j',
        "after REP OUTSB the scratch register holds {last:#x}, expected the last byte 0x6a"
    );

    for backwards in [false, true] {
        cpu::outb(SCRATCH, 0xc3);
        let mut buf = [0u8; 37];
        let (rcx, rdi) = rep_insb(SCRATCH, &mut buf, backwards);
        check!(
            rcx == 0,
            "REP INSB (DF = {}) left RCX = {rcx}",
            backwards as u8
        );
        let base = buf.as_ptr() as u64;
        let expected = if backwards {
            base - 1
        } else {
            base + buf.len() as u64
        };
        check!(
            rdi == expected,
            "REP INSB (DF = {}) left RDI = {rdi:#x}, expected {expected:#x}",
            backwards as u8
        );
        check!(
            buf.iter().all(|&b| b == 0xc3),
            "REP INSB (DF = {}) stored {buf:x?}",
            backwards as u8
        );
    }
    println!("REP OUTSB/INSB on the scratch register, DF = 0 and 1");

    let line = b"pio: this line came through REP OUTSB\n";
    let (rcx, _) = rep_outsb(COM1, line);
    check!(rcx == 0, "REP OUTSB to COM1 left RCX = {rcx}");
}
