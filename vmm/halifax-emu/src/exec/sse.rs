//! SSE and AVX register<->memory moves drivers use on MMIO: MOVD/MOVQ,
//! MOVDQA/MOVDQU, MOVAPS/MOVUPS/MOVAPD/MOVUPD, the non-temporal stores and
//! loads, LDDQU, and their VEX forms (128 and 256 bits).
//!
//! Legacy SSE writes leave YMM[255:128] alone; VEX writes to an XMM
//! register zero it. Aligned forms raise #GP(0) on a misaligned linear
//! address. MMX (`mm`) forms are not emulated.

use super::{gpr_index, Ctx};
use crate::cpu::{ctrl, Cpu, Mode};
use crate::error::{EmuError, Exception};
use crate::memory::Memory;
use iced_x86::{Code, EncodingKind, OpKind, Register};

/// What a vector move does with its operands.
#[derive(Clone, Copy)]
struct Form {
    /// Bytes moved.
    len: usize,
    /// Required alignment of a memory operand (1 = none).
    align: u64,
    /// Zero the rest of an XMM destination up to 128 bits (MOVD/MOVQ loads).
    zero_xmm: bool,
}

impl<C: Cpu + ?Sized, M: Memory + ?Sized> Ctx<'_, C, M> {
    pub(super) fn vector_move(&mut self) -> Result<(), EmuError> {
        use Code::*;
        let code = self.instr.code();
        let form = match code {
            Movd_xmm_rm32 | VEX_Vmovd_xmm_rm32 => Form {
                len: 4,
                align: 1,
                zero_xmm: true,
            },
            Movq_xmm_rm64 | VEX_Vmovq_xmm_rm64 | Movq_xmm_xmmm64 | VEX_Vmovq_xmm_xmmm64 => Form {
                len: 8,
                align: 1,
                zero_xmm: true,
            },
            Movd_rm32_xmm | VEX_Vmovd_rm32_xmm => Form {
                len: 4,
                align: 1,
                zero_xmm: false,
            },
            Movq_rm64_xmm | VEX_Vmovq_rm64_xmm => Form {
                len: 8,
                align: 1,
                zero_xmm: false,
            },
            // MOVQ xmm/m64, xmm zeroes the upper half of a register destination.
            Movq_xmmm64_xmm | VEX_Vmovq_xmmm64_xmm => Form {
                len: 8,
                align: 1,
                zero_xmm: true,
            },
            Movdqu_xmm_xmmm128
            | Movdqu_xmmm128_xmm
            | Movups_xmm_xmmm128
            | Movups_xmmm128_xmm
            | Movupd_xmm_xmmm128
            | Movupd_xmmm128_xmm
            | Lddqu_xmm_m128
            | VEX_Vmovdqu_xmm_xmmm128
            | VEX_Vmovdqu_xmmm128_xmm
            | VEX_Vmovups_xmm_xmmm128
            | VEX_Vmovups_xmmm128_xmm
            | VEX_Vmovupd_xmm_xmmm128
            | VEX_Vmovupd_xmmm128_xmm
            | VEX_Vlddqu_xmm_m128 => Form {
                len: 16,
                align: 1,
                zero_xmm: false,
            },
            Movdqa_xmm_xmmm128
            | Movdqa_xmmm128_xmm
            | Movaps_xmm_xmmm128
            | Movaps_xmmm128_xmm
            | Movapd_xmm_xmmm128
            | Movapd_xmmm128_xmm
            | Movntdq_m128_xmm
            | Movntps_m128_xmm
            | Movntpd_m128_xmm
            | Movntdqa_xmm_m128
            | VEX_Vmovdqa_xmm_xmmm128
            | VEX_Vmovdqa_xmmm128_xmm
            | VEX_Vmovaps_xmm_xmmm128
            | VEX_Vmovaps_xmmm128_xmm
            | VEX_Vmovapd_xmm_xmmm128
            | VEX_Vmovapd_xmmm128_xmm
            | VEX_Vmovntdq_m128_xmm
            | VEX_Vmovntps_m128_xmm
            | VEX_Vmovntpd_m128_xmm
            | VEX_Vmovntdqa_xmm_m128 => Form {
                len: 16,
                align: 16,
                zero_xmm: false,
            },
            VEX_Vmovdqu_ymm_ymmm256
            | VEX_Vmovdqu_ymmm256_ymm
            | VEX_Vmovups_ymm_ymmm256
            | VEX_Vmovups_ymmm256_ymm
            | VEX_Vmovupd_ymm_ymmm256
            | VEX_Vmovupd_ymmm256_ymm
            | VEX_Vlddqu_ymm_m256 => Form {
                len: 32,
                align: 1,
                zero_xmm: false,
            },
            VEX_Vmovdqa_ymm_ymmm256
            | VEX_Vmovdqa_ymmm256_ymm
            | VEX_Vmovaps_ymm_ymmm256
            | VEX_Vmovaps_ymmm256_ymm
            | VEX_Vmovapd_ymm_ymmm256
            | VEX_Vmovapd_ymmm256_ymm
            | VEX_Vmovntdq_m256_ymm
            | VEX_Vmovntps_m256_ymm
            | VEX_Vmovntpd_m256_ymm
            | VEX_Vmovntdqa_ymm_m256 => Form {
                len: 32,
                align: 32,
                zero_xmm: false,
            },
            _ => return Err(self.unsupported()),
        };
        let vex = self.instr.encoding() == EncodingKind::VEX;
        self.check_vector_enabled(vex)?;
        if self.instr.has_lock_prefix() {
            return Err(Exception::ud().into());
        }
        let value = self.read_vec_op(1, form)?;
        self.write_vec_op(0, form, vex, value)
    }

    fn check_vector_enabled(&mut self, vex: bool) -> Result<(), EmuError> {
        let cr0 = self.paging.cr0;
        let cr4 = self.paging.cr4;
        if vex {
            if cr4 & ctrl::CR4_OSXSAVE == 0 || matches!(self.mode, Mode::Real | Mode::Virtual8086) {
                return Err(Exception::ud().into());
            }
        } else if cr0 & ctrl::CR0_EM != 0 || cr4 & ctrl::CR4_OSFXSR == 0 {
            return Err(Exception::ud().into());
        }
        if cr0 & ctrl::CR0_TS != 0 {
            return Err(Exception::nm().into());
        }
        Ok(())
    }

    fn vec_mem(&mut self, form: Form, write: bool) -> Result<super::PhysLoc, EmuError> {
        let seg = self.mem_seg();
        let off = self.mem_offset(0);
        let la = self.linear(seg, off, form.len, write)?;
        if la & (form.align - 1) != 0 {
            return Err(Exception::gp0().into());
        }
        self.translate_range(la, form.len, write)
    }

    /// Reads up to 32 bytes from operand `op` (vector register, GPR or memory).
    fn read_vec_op(&mut self, op: u32, form: Form) -> Result<[u8; 32], EmuError> {
        let mut out = [0u8; 32];
        match self.instr.op_kind(op) {
            OpKind::Memory => {
                let loc = self.vec_mem(form, false)?;
                self.phys_read(&loc, &mut out)?;
            }
            OpKind::Register => {
                let r = self.instr.op_register(op);
                if r.is_gpr() {
                    let (i, _) = gpr_index(r);
                    out[..8].copy_from_slice(&self.cpu.gpr(i).to_le_bytes());
                } else {
                    let (i, ymm) = vec_index(r).ok_or_else(|| self.unsupported())?;
                    out[..16].copy_from_slice(&self.cpu.xmm(i).to_le_bytes());
                    if ymm {
                        out[16..].copy_from_slice(&self.cpu.ymm_high(i).to_le_bytes());
                    }
                }
            }
            _ => return Err(self.unsupported()),
        }
        out[form.len..].fill(0);
        Ok(out)
    }

    fn write_vec_op(
        &mut self,
        op: u32,
        form: Form,
        vex: bool,
        value: [u8; 32],
    ) -> Result<(), EmuError> {
        match self.instr.op_kind(op) {
            OpKind::Memory => {
                let loc = self.vec_mem(form, true)?;
                self.phys_write(&loc, &value[..form.len])
            }
            OpKind::Register => {
                let r = self.instr.op_register(op);
                if r.is_gpr() {
                    let (i, _) = gpr_index(r);
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&value[..8]);
                    self.write_gpr(i, false, form.len, u64::from_le_bytes(b));
                    return Ok(());
                }
                let (i, ymm) = vec_index(r).ok_or_else(|| self.unsupported())?;
                let mut lo = [0u8; 16];
                lo.copy_from_slice(&value[..16]);
                let mut lo = u128::from_le_bytes(lo);
                if !form.zero_xmm && form.len < 16 {
                    // Only the low `len` bytes are replaced.
                    let keep = u128::MAX << (form.len * 8);
                    lo |= self.cpu.xmm(i) & keep;
                }
                self.cpu.set_xmm(i, lo);
                if ymm {
                    let mut hi = [0u8; 16];
                    hi.copy_from_slice(&value[16..]);
                    self.cpu.set_ymm_high(i, u128::from_le_bytes(hi));
                } else if vex {
                    self.cpu.set_ymm_high(i, 0);
                }
                Ok(())
            }
            _ => Err(self.unsupported()),
        }
    }
}

/// Index and width of a vector register.
fn vec_index(r: Register) -> Option<(usize, bool)> {
    if r.is_xmm() {
        Some((r as usize - Register::XMM0 as usize, false))
    } else if r.is_ymm() {
        Some((r as usize - Register::YMM0 as usize, true))
    } else {
        None
    }
}
