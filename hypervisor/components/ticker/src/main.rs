//! Test component: programs the PIT (I/O ports granted by the configuration) to
//! 100 Hz and waits for `--ticks N` timer interrupts, delivered as ups of the
//! interrupt semaphore the configuration grants (`irqs = [0]`).
#![no_std]
#![no_main]

use hyper_abi::{syscall, SmOp};
use native::println;

native::entry!(main);

fn outb(port: u16, v: u8) {
    // SAFETY: the configuration grants us the PIT's ports; port I/O has no memory effects.
    unsafe { core::arch::asm!("out dx, al", in("dx") port, in("al") v, options(nomem, nostack)) };
}

fn main() -> i32 {
    let info = native::StartInfo::get();
    let ticks: u32 = info.arg("ticks").and_then(|s| s.parse().ok()).unwrap_or(10);
    if info.irq_count == 0 {
        println!("ticker: FAIL: no interrupt granted");
        return 1;
    }
    let divisor: u16 = 11932; // 100 Hz
    outb(0x43, 0b0011_0100); // channel 0, lobyte/hibyte, rate generator
    outb(0x40, divisor as u8);
    outb(0x40, (divisor >> 8) as u8);
    let t0 = native::rdtsc();
    for i in 0..ticks {
        if let Err(e) = syscall::sm_ctrl(native::IRQ_BASE, SmOp::Down, 2_000_000) {
            println!("ticker: FAIL: tick {i}: {}", e.name());
            return 1;
        }
    }
    let ms = (native::rdtsc() - t0) / info.tsc_per_us.max(1) / 1000;
    outb(0x43, 0b0011_0000); // one-shot, stops the periodic interrupt
    println!("ticker: {ticks} timer interrupts received as semaphore ups ({ms} ms)");
    // chained semaphores: ups of A and B arrive at T, which says which source fired
    let (t, a, b) = (native::FREE_SEL, native::FREE_SEL + 1, native::FREE_SEL + 2);
    let chained = syscall::create_sm(t, 0, None)
        .and_then(|_| syscall::create_sm(a, 0, Some(t)))
        .and_then(|_| syscall::create_sm(b, 0, Some(t)))
        .and_then(|_| syscall::sm_ctrl(b, SmOp::Up, 0))
        .and_then(|_| syscall::sm_ctrl(a, SmOp::Up, 0))
        .and_then(|_| {
            Ok((
                syscall::sm_ctrl(t, SmOp::Down, 1_000)?,
                syscall::sm_ctrl(t, SmOp::Down, 1_000)?,
            ))
        });
    match chained {
        Ok((first, second)) if first == b && second == a => {
            println!(
                "ticker: chained semaphores reported their sources in order ({first}, {second})"
            )
        }
        other => {
            println!("ticker: FAIL: chained semaphores: {other:?}");
            return 1;
        }
    }
    0
}
