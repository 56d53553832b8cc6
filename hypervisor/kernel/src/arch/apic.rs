//! Local APIC (x2APIC through MSRs when the CPU has it, xAPIC through MMIO
//! otherwise), its one-shot timer, IPIs, and the I/O APICs that route device
//! interrupts (GSIs) to vectors.

use super::cpu::{cpuid, rdmsr, rdtsc, wrmsr};
use super::phys;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

const MSR_APIC_BASE: u32 = 0x1b;
const XAPIC_BASE: u64 = 0xfee0_0000;

const REG_ID: u32 = 0x20;
const REG_EOI: u32 = 0xb0;
const REG_SVR: u32 = 0xf0;
const REG_ICR: u32 = 0x300;
const REG_ICR_HI: u32 = 0x310;
const REG_LVT_TIMER: u32 = 0x320;
const REG_TIMER_INIT: u32 = 0x380;
const REG_TIMER_CUR: u32 = 0x390;
const REG_TIMER_DIV: u32 = 0x3e0;

pub const VECTOR_TIMER: u8 = 0xf0;
pub const VECTOR_RESCHEDULE: u8 = 0xf1;
pub const VECTOR_SPURIOUS: u8 = 0xff;
/// GSI n is delivered on vector `VECTOR_GSI_BASE + n`.
pub const VECTOR_GSI_BASE: u8 = 0x30;
pub const MAX_GSI: u32 = 0xf0 - 0x30;

static X2APIC: AtomicBool = AtomicBool::new(false);
/// LAPIC timer ticks per microsecond, measured on the BSP.
static TICKS_PER_US: AtomicU64 = AtomicU64::new(0);
static TSC_PER_US: AtomicU64 = AtomicU64::new(0);

fn read(reg: u32) -> u32 {
    if X2APIC.load(Ordering::Relaxed) {
        rdmsr(0x800 + (reg >> 4)) as u32
    } else {
        phys::read_volatile_u32(XAPIC_BASE + reg as u64)
    }
}

fn write(reg: u32, value: u32) {
    if X2APIC.load(Ordering::Relaxed) {
        wrmsr(0x800 + (reg >> 4), value as u64)
    } else {
        phys::write_volatile_u32(XAPIC_BASE + reg as u64, value)
    }
}

pub fn x2apic() -> bool {
    X2APIC.load(Ordering::Relaxed)
}

/// Enables this CPU's local APIC (x2APIC if available).
pub fn init_local() {
    let has_x2 = cpuid(1, 0)[2] & (1 << 21) != 0;
    X2APIC.store(has_x2, Ordering::Relaxed);
    let mut base = rdmsr(MSR_APIC_BASE) | (1 << 11);
    if has_x2 {
        base |= 1 << 10;
    }
    wrmsr(MSR_APIC_BASE, base);
    write(REG_SVR, 0x100 | VECTOR_SPURIOUS as u32);
    write(REG_LVT_TIMER, 1 << 16); // masked
    write(REG_TIMER_DIV, 0b1011); // divide by 1
    eoi();
}

pub fn id() -> u32 {
    if x2apic() {
        read(REG_ID)
    } else {
        read(REG_ID) >> 24
    }
}

pub fn eoi() {
    write(REG_EOI, 0);
}

fn send_ipi(apic_id: u32, icr: u32) {
    if x2apic() {
        wrmsr(0x830, (apic_id as u64) << 32 | icr as u64);
    } else {
        write(REG_ICR_HI, apic_id << 24);
        write(REG_ICR, icr);
        while read(REG_ICR) & (1 << 12) != 0 {
            core::hint::spin_loop();
        }
    }
}

pub fn send_init(apic_id: u32) {
    send_ipi(apic_id, 0x4500);
}

pub fn send_sipi(apic_id: u32, page: u8) {
    send_ipi(apic_id, 0x4600 | page as u32);
}

pub fn send_fixed(apic_id: u32, vector: u8) {
    send_ipi(apic_id, 0x4000 | vector as u32);
}

/// Busy-waits using the TSC (valid after `calibrate`).
pub fn delay_us(us: u64) {
    let start = rdtsc();
    let per_us = TSC_PER_US.load(Ordering::Relaxed).max(1);
    while rdtsc().wrapping_sub(start) < us * per_us {
        core::hint::spin_loop();
    }
}

pub fn tsc_per_us() -> u64 {
    TSC_PER_US.load(Ordering::Relaxed)
}

/// Measures the LAPIC timer and TSC rates against PIT channel 2 (10 ms gate).
pub fn calibrate() {
    use super::port::{inb, outb};
    // gate channel 2 on, speaker off
    outb(0x61, (inb(0x61) & !0x02) | 0x01);
    outb(0x43, 0b1011_0000); // channel 2, lobyte/hibyte, mode 0
    let count: u16 = 11932; // 10 ms at 1.193182 MHz
    outb(0x42, count as u8);
    outb(0x42, (count >> 8) as u8);
    // restart the gate to load the count
    let g = inb(0x61);
    outb(0x61, g & !1);
    outb(0x61, g | 1);
    write(REG_TIMER_INIT, u32::MAX);
    let tsc0 = rdtsc();
    let mut spins = 0u64;
    while inb(0x61) & 0x20 == 0 && spins < 100_000_000 {
        spins += 1;
    }
    let elapsed = u32::MAX - read(REG_TIMER_CUR);
    let tsc = rdtsc() - tsc0;
    write(REG_TIMER_INIT, 0);
    TICKS_PER_US.store((elapsed as u64 / 10_000).max(1), Ordering::Relaxed);
    TSC_PER_US.store((tsc / 10_000).max(1), Ordering::Relaxed);
}

/// Arms the one-shot timer to fire after `us` microseconds (0 disarms).
pub fn arm_timer(us: u64) {
    if us == 0 {
        write(REG_TIMER_INIT, 0);
        return;
    }
    let ticks = us
        .saturating_mul(TICKS_PER_US.load(Ordering::Relaxed))
        .clamp(1, u32::MAX as u64);
    write(REG_LVT_TIMER, VECTOR_TIMER as u32);
    write(REG_TIMER_INIT, ticks as u32);
}

/// An I/O APIC found in the MADT.
#[derive(Clone, Copy, Default)]
pub struct IoApic {
    pub address: u64,
    pub gsi_base: u32,
    pub count: u32,
}

impl IoApic {
    fn reg_read(&self, reg: u32) -> u32 {
        phys::write_volatile_u32(self.address, reg);
        phys::read_volatile_u32(self.address + 0x10)
    }
    fn reg_write(&self, reg: u32, v: u32) {
        phys::write_volatile_u32(self.address, reg);
        phys::write_volatile_u32(self.address + 0x10, v);
    }
    pub fn probe(address: u64, gsi_base: u32) -> Self {
        let mut io = IoApic {
            address,
            gsi_base,
            count: 0,
        };
        io.count = ((io.reg_read(1) >> 16) & 0xff) + 1;
        for i in 0..io.count {
            io.reg_write(0x10 + 2 * i, 1 << 16); // masked
        }
        io
    }
    /// Routes `gsi` (which must be ours) to `vector` on the CPU with `apic_id`.
    pub fn route(
        &self,
        gsi: u32,
        vector: u8,
        apic_id: u32,
        level: bool,
        active_low: bool,
        masked: bool,
    ) {
        let pin = gsi - self.gsi_base;
        let mut lo = vector as u32;
        if level {
            lo |= 1 << 15;
        }
        if active_low {
            lo |= 1 << 13;
        }
        if masked {
            lo |= 1 << 16;
        }
        self.reg_write(0x10 + 2 * pin + 1, apic_id << 24);
        self.reg_write(0x10 + 2 * pin, lo);
    }
    pub fn set_mask(&self, gsi: u32, masked: bool) {
        let pin = gsi - self.gsi_base;
        let lo = self.reg_read(0x10 + 2 * pin);
        self.reg_write(
            0x10 + 2 * pin,
            if masked {
                lo | 1 << 16
            } else {
                lo & !(1 << 16)
            },
        );
    }
}
