//! CPU instructions the server needs beyond the kernel's: random numbers.

use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

fn has(leaf: u32, reg: usize, bit: u32) -> bool {
    let r = core::arch::x86_64::__cpuid_count(leaf, 0);
    let v = [r.eax, r.ebx, r.ecx, r.edx][reg];
    v & (1 << bit) != 0
}

fn rdseed() -> Option<u64> {
    for _ in 0..64 {
        let (v, ok): (u64, u8);
        // SAFETY: the caller checked CPUID for RDSEED; it only writes registers.
        unsafe {
            asm!("rdseed {v}", "setc {ok}", v = out(reg) v, ok = out(reg_byte) ok, options(nomem, nostack))
        };
        if ok != 0 {
            return Some(v);
        }
    }
    None
}

fn rdrand() -> Option<u64> {
    for _ in 0..64 {
        let (v, ok): (u64, u8);
        // SAFETY: the caller checked CPUID for RDRAND; it only writes registers.
        unsafe {
            asm!("rdrand {v}", "setc {ok}", v = out(reg) v, ok = out(reg_byte) ok, options(nomem, nostack))
        };
        if ok != 0 {
            return Some(v);
        }
    }
    None
}

static FALLBACK: AtomicU64 = AtomicU64::new(0);

/// 64 random bits: RDSEED, else RDRAND, else (a CPU with neither) a
/// TSC-seeded generator, which is not cryptographically strong.
pub fn random_u64() -> u64 {
    let max_leaf = core::arch::x86_64::__cpuid(0).eax;
    if max_leaf >= 7 && has(7, 1, 18) {
        if let Some(v) = rdseed() {
            return v;
        }
    }
    if has(1, 2, 30) {
        if let Some(v) = rdrand() {
            return v;
        }
    }
    let mut x = FALLBACK.load(Ordering::Relaxed) ^ native::rdtsc();
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    FALLBACK.store(x, Ordering::Relaxed);
    x.wrapping_mul(0x2545_f491_4f6c_dd1d)
}
