//! Pure arithmetic: results and RFLAGS status bits of the ALU, shift and
//! rotate instructions at 1, 2, 4 or 8 bytes. No state, no memory.
//!
//! Every function takes operands already truncated to `size` bytes and
//! returns the truncated result plus the new status flags (the six bits of
//! [`rflags::STATUS`]); flags an instruction leaves unchanged are passed
//! through from `flags`. Where the SDM calls a flag undefined, the value
//! returned is deterministic but unspecified.

use crate::cpu::rflags::{self, AF, CF, OF, PF, SF, ZF};

/// All-ones mask of `size` bytes.
#[inline]
pub fn mask(size: usize) -> u64 {
    if size >= 8 {
        u64::MAX
    } else {
        (1u64 << (size * 8)) - 1
    }
}

#[inline]
fn sign_bit(size: usize) -> u64 {
    1u64 << (size * 8 - 1)
}

/// Sign-extends the low `size` bytes of `v` to 64 bits.
#[inline]
pub fn sign_extend(v: u64, size: usize) -> u64 {
    let shift = 64 - size * 8;
    (((v << shift) as i64) >> shift) as u64
}

/// SF, ZF and PF of `res`.
#[inline]
pub fn szp(res: u64, size: usize) -> u64 {
    let mut f = 0;
    if res & sign_bit(size) != 0 {
        f |= SF;
    }
    if res & mask(size) == 0 {
        f |= ZF;
    }
    if (res as u8).count_ones().is_multiple_of(2) {
        f |= PF;
    }
    f
}

#[inline]
fn with_status(flags: u64, status: u64) -> u64 {
    (flags & !rflags::STATUS) | status
}

/// `a + b + carry`: ADD, ADC, INC (with CF kept by the caller), XADD.
#[inline]
pub fn add(a: u64, b: u64, carry: bool, size: usize, flags: u64) -> (u64, u64) {
    let m = mask(size);
    let wide = a as u128 + b as u128 + carry as u128;
    let res = (wide as u64) & m;
    let mut f = szp(res, size);
    if wide > m as u128 {
        f |= CF;
    }
    if (a ^ res) & (b ^ res) & sign_bit(size) != 0 {
        f |= OF;
    }
    f |= (a ^ b ^ res) & AF;
    (res, with_status(flags, f))
}

/// `a - b - borrow`: SUB, SBB, CMP, NEG, DEC, CMPS, SCAS, CMPXCHG.
#[inline]
pub fn sub(a: u64, b: u64, borrow: bool, size: usize, flags: u64) -> (u64, u64) {
    let m = mask(size);
    let res = a.wrapping_sub(b).wrapping_sub(borrow as u64) & m;
    let mut f = szp(res, size);
    if (a as u128) < b as u128 + borrow as u128 {
        f |= CF;
    }
    if (a ^ b) & (a ^ res) & sign_bit(size) != 0 {
        f |= OF;
    }
    f |= (a ^ b ^ res) & AF;
    (res, with_status(flags, f))
}

/// Flags of a logical operation (AND, OR, XOR, TEST): CF = OF = 0, AF cleared.
#[inline]
pub fn logic(res: u64, size: usize, flags: u64) -> u64 {
    with_status(flags, szp(res, size))
}

/// A shift or rotate kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shift {
    /// SHL/SAL.
    Shl,
    /// SHR.
    Shr,
    /// SAR.
    Sar,
    /// ROL.
    Rol,
    /// ROR.
    Ror,
    /// RCL.
    Rcl,
    /// RCR.
    Rcr,
}

/// Shifts or rotates `a` by `count` (raw, before masking). Returns `None`
/// when the masked count is zero (nothing changes, not even flags).
pub fn shift(kind: Shift, a: u64, count: u64, size: usize, flags: u64) -> Option<(u64, u64)> {
    let bits = (size * 8) as u32;
    let count = (count & if size == 8 { 0x3f } else { 0x1f }) as u32;
    if count == 0 {
        return None;
    }
    let m = mask(size);
    let msb = |v: u64| (v >> (bits - 1)) & 1;
    let cf_in = flags & CF != 0;
    let (res, cf, of) = match kind {
        Shift::Shl => {
            let res = if count < 64 { (a << count) & m } else { 0 };
            let cf = if count <= bits {
                (a >> (bits - count)) & 1
            } else {
                0
            };
            (res, cf, msb(res) ^ cf)
        }
        Shift::Shr => {
            let res = if count < 64 { a >> count } else { 0 };
            let cf = if count - 1 < 64 {
                (a >> (count - 1)) & 1
            } else {
                0
            };
            (res, cf, msb(a))
        }
        Shift::Sar => {
            let s = sign_extend(a, size) as i64;
            let res = (s >> count.min(63)) as u64 & m;
            let cf = ((s >> (count - 1).min(63)) & 1) as u64;
            (res, cf, 0)
        }
        Shift::Rol => {
            let n = count % bits;
            let res = if n == 0 {
                a
            } else {
                ((a << n) | (a >> (bits - n))) & m
            };
            let cf = res & 1;
            (res, cf, msb(res) ^ cf)
        }
        Shift::Ror => {
            let n = count % bits;
            let res = if n == 0 {
                a
            } else {
                ((a >> n) | (a << (bits - n))) & m
            };
            (res, msb(res), msb(res) ^ ((res >> (bits - 2)) & 1))
        }
        Shift::Rcl | Shift::Rcr => {
            let n = match size {
                1 => count % 9,
                2 => count % 17,
                _ => count,
            };
            let width = bits + 1;
            let full: u128 = ((cf_in as u128) << bits) | a as u128;
            let wmask: u128 = (1u128 << width) - 1;
            let rot = if n == 0 {
                full
            } else if kind == Shift::Rcl {
                ((full << n) | (full >> (width - n))) & wmask
            } else {
                ((full >> n) | (full << (width - n))) & wmask
            };
            let res = rot as u64 & m;
            let cf = ((rot >> bits) & 1) as u64;
            let of = if kind == Shift::Rcl {
                msb(res) ^ cf
            } else {
                msb(a) ^ cf_in as u64
            };
            (res, cf, of)
        }
    };
    let mut status = flags & rflags::STATUS;
    status &= !(CF | OF);
    if cf != 0 {
        status |= CF;
    }
    if of != 0 {
        status |= OF;
    }
    if !matches!(kind, Shift::Rol | Shift::Ror | Shift::Rcl | Shift::Rcr) {
        status = (status & (CF | OF)) | szp(res, size);
    }
    Some((res, with_status(flags, status)))
}

/// SHLD (`left`) or SHRD of `dst` with bits from `src`. `None` when the
/// masked count is zero.
pub fn double_shift(
    left: bool,
    dst: u64,
    src: u64,
    count: u64,
    size: usize,
    flags: u64,
) -> Option<(u64, u64)> {
    let bits = (size * 8) as u32;
    let count = (count & if size == 8 { 0x3f } else { 0x1f }) as u32;
    if count == 0 {
        return None;
    }
    let m = mask(size);
    let (d, sr, b) = (dst as u128, src as u128, bits);
    let (res, cf) = if count > bits {
        // Only 16-bit operands get here; the SDM leaves result and flags
        // undefined. Compute a deterministic value from dst:src:dst.
        let t = (d << (2 * b)) | (sr << b) | d;
        if left {
            let s = t << count;
            (((s >> (2 * b)) as u64) & m, ((s >> (3 * b)) & 1) as u64)
        } else {
            let s = t >> count;
            ((s as u64) & m, ((t >> (count - 1)) & 1) as u64)
        }
    } else if left {
        let r = ((d << count) | (sr >> (b - count))) as u64 & m;
        (r, ((d >> (b - count)) & 1) as u64)
    } else {
        let r = ((d >> count) | (sr << (b - count))) as u64 & m;
        (r, ((d >> (count - 1)) & 1) as u64)
    };
    let msb = |v: u64| (v >> (bits - 1)) & 1;
    let mut status = szp(res, size);
    if cf != 0 {
        status |= CF;
    }
    if msb(res) ^ msb(dst) != 0 {
        status |= OF;
    }
    Some((res, with_status(flags, status)))
}

/// Evaluates an x86 condition code (the low nibble of Jcc/SETcc/CMOVcc).
pub fn condition(cc: iced_x86::ConditionCode, flags: u64) -> bool {
    use iced_x86::ConditionCode as C;
    let f = |bit: u64| flags & bit != 0;
    match cc {
        C::o => f(OF),
        C::no => !f(OF),
        C::b => f(CF),
        C::ae => !f(CF),
        C::e => f(ZF),
        C::ne => !f(ZF),
        C::be => f(CF) || f(ZF),
        C::a => !f(CF) && !f(ZF),
        C::s => f(SF),
        C::ns => !f(SF),
        C::p => f(PF),
        C::np => !f(PF),
        C::l => f(SF) != f(OF),
        C::ge => f(SF) == f(OF),
        C::le => f(ZF) || f(SF) != f(OF),
        C::g => !f(ZF) && f(SF) == f(OF),
        C::None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_sets_carry_overflow_and_aux() {
        let (r, f) = add(0x7f, 1, false, 1, 0);
        assert_eq!(r, 0x80);
        assert_eq!(f & rflags::STATUS, OF | SF | AF);
        let (r, f) = add(0xff, 1, false, 1, 0);
        assert_eq!(r, 0);
        assert_eq!(f & rflags::STATUS, CF | ZF | AF | PF);
    }

    #[test]
    fn sub_borrow_and_overflow() {
        let (r, f) = sub(0x8000_0000, 1, false, 4, 0);
        assert_eq!(r, 0x7fff_ffff);
        assert_eq!(f & (OF | CF | SF), OF);
        let (_, f) = sub(0, 1, false, 8, 0);
        assert_eq!(f & (CF | SF | OF), CF | SF);
    }

    #[test]
    fn rcl_through_carry_8bit_mod_9() {
        // 0x80 rcl 1 with CF=0: result 0, CF = 1.
        let (r, f) = shift(Shift::Rcl, 0x80, 1, 1, 0).unwrap();
        assert_eq!((r, f & CF), (0, CF));
        // count 9 on 8 bits rotates by 0: value unchanged.
        let (r, _) = shift(Shift::Rcl, 0x5a, 9, 1, CF).unwrap();
        assert_eq!(r, 0x5a);
    }

    #[test]
    fn masked_zero_count_changes_nothing() {
        assert!(shift(Shift::Shl, 1, 32, 4, 0).is_none());
        assert!(double_shift(true, 1, 2, 64, 8, 0).is_none());
    }
}
