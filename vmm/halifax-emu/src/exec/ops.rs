//! Integer instructions: MOV family, ALU, shifts, bit tests, exchanges,
//! SETcc/CMOVcc, PUSH/POP, and the top-level mnemonic dispatch.
//!
//! To add an instruction: add its mnemonic to `dispatch`, write a handler
//! that resolves the destination first (`resolve_op` with `write = true`),
//! reads sources, computes with `alu`, then writes memory (`write_rmw` /
//! `write_loc`) before any register, and sets `self.flags`.

use super::alu::{self, Shift};
use super::{Ctx, Loc};
use crate::cpu::{rflags, Cpu, SegReg};
use crate::error::{EmuError, Exception};
use crate::memory::Memory;
use crate::StepOutcome;
use iced_x86::{Mnemonic as Mn, OpKind};

impl<C: Cpu + ?Sized, M: Memory + ?Sized> Ctx<'_, C, M> {
    pub(super) fn dispatch(&mut self) -> Result<StepOutcome, EmuError> {
        let mn = self.instr.mnemonic();
        match mn {
            Mn::Mov | Mn::Movnti => self.mov()?,
            Mn::Movzx | Mn::Movsx | Mn::Movsxd => self.mov_extend(mn == Mn::Movzx)?,
            Mn::Movbe => self.movbe()?,
            Mn::Lea => self.lea()?,
            Mn::Add
            | Mn::Adc
            | Mn::Sub
            | Mn::Sbb
            | Mn::And
            | Mn::Or
            | Mn::Xor
            | Mn::Cmp
            | Mn::Test => self.alu2(mn)?,
            Mn::Inc | Mn::Dec | Mn::Neg | Mn::Not => self.alu1(mn)?,
            Mn::Shl | Mn::Sal => self.shift(Shift::Shl)?,
            Mn::Shr => self.shift(Shift::Shr)?,
            Mn::Sar => self.shift(Shift::Sar)?,
            Mn::Rol => self.shift(Shift::Rol)?,
            Mn::Ror => self.shift(Shift::Ror)?,
            Mn::Rcl => self.shift(Shift::Rcl)?,
            Mn::Rcr => self.shift(Shift::Rcr)?,
            Mn::Shld | Mn::Shrd => self.double_shift(mn == Mn::Shld)?,
            Mn::Bt | Mn::Bts | Mn::Btr | Mn::Btc => self.bit_test(mn)?,
            Mn::Xchg => self.xchg()?,
            Mn::Cmpxchg => self.cmpxchg()?,
            Mn::Cmpxchg8b | Mn::Cmpxchg16b => self.cmpxchg_wide(mn == Mn::Cmpxchg16b)?,
            Mn::Xadd => self.xadd()?,
            Mn::Push => self.push()?,
            Mn::Pop => self.pop()?,
            Mn::Nop => self.check_lock(false)?,
            Mn::Seto
            | Mn::Setno
            | Mn::Setb
            | Mn::Setae
            | Mn::Sete
            | Mn::Setne
            | Mn::Setbe
            | Mn::Seta
            | Mn::Sets
            | Mn::Setns
            | Mn::Setp
            | Mn::Setnp
            | Mn::Setl
            | Mn::Setge
            | Mn::Setle
            | Mn::Setg => self.setcc()?,
            Mn::Cmovo
            | Mn::Cmovno
            | Mn::Cmovb
            | Mn::Cmovae
            | Mn::Cmove
            | Mn::Cmovne
            | Mn::Cmovbe
            | Mn::Cmova
            | Mn::Cmovs
            | Mn::Cmovns
            | Mn::Cmovp
            | Mn::Cmovnp
            | Mn::Cmovl
            | Mn::Cmovge
            | Mn::Cmovle
            | Mn::Cmovg => self.cmovcc()?,
            _ => {
                if let Some(outcome) = self.try_string()? {
                    return Ok(outcome);
                }
                self.vector_move()?;
            }
        }
        Ok(StepOutcome::Completed)
    }

    fn mov(&mut self) -> Result<(), EmuError> {
        self.check_lock(false)?;
        let size = self.op_size(0);
        let dst = self.resolve_op(0, size, true)?;
        let v = self.read_op(1, size)?;
        self.write_loc(&dst, size, v)
    }

    fn mov_extend(&mut self, zero: bool) -> Result<(), EmuError> {
        self.check_lock(false)?;
        let dsize = self.op_size(0);
        let ssize = self.op_size(1);
        let v = self.read_op(1, ssize)?;
        let v = if zero { v } else { alu::sign_extend(v, ssize) };
        let dst = self.resolve_op(0, dsize, true)?;
        self.write_loc(&dst, dsize, v & alu::mask(dsize))
    }

    fn movbe(&mut self) -> Result<(), EmuError> {
        self.check_lock(false)?;
        let size = self.op_size(0).max(self.op_size(1)).min(self.op_size(0));
        let dst = self.resolve_op(0, size, true)?;
        let v = self.read_op(1, size)?;
        let swapped = v.swap_bytes() >> (64 - size * 8);
        self.write_loc(&dst, size, swapped)
    }

    fn lea(&mut self) -> Result<(), EmuError> {
        self.check_lock(false)?;
        if self.instr.op1_kind() != OpKind::Memory {
            return Err(Exception::ud().into());
        }
        let size = self.op_size(0);
        let ea = self.mem_offset(0);
        let dst = self.resolve_op(0, size, true)?;
        self.write_loc(&dst, size, ea & alu::mask(size))
    }

    fn alu2(&mut self, mn: Mn) -> Result<(), EmuError> {
        let writes = !matches!(mn, Mn::Cmp | Mn::Test);
        self.check_lock(writes)?;
        let size = self.op_size(0);
        let dst = self.resolve_op(0, size, writes)?;
        let a = self.read_loc(&dst, size)?;
        let b = self.read_op(1, size)? & alu::mask(size);
        let cf = self.flags & rflags::CF != 0;
        let f = self.flags;
        let (res, flags) = match mn {
            Mn::Add => alu::add(a, b, false, size, f),
            Mn::Adc => alu::add(a, b, cf, size, f),
            Mn::Sub | Mn::Cmp => alu::sub(a, b, false, size, f),
            Mn::Sbb => alu::sub(a, b, cf, size, f),
            Mn::And | Mn::Test => (a & b, alu::logic(a & b, size, f)),
            Mn::Or => (a | b, alu::logic(a | b, size, f)),
            _ => (a ^ b, alu::logic(a ^ b, size, f)),
        };
        if writes {
            self.write_rmw(&dst, size, a, res, false)?;
        }
        self.flags = flags;
        Ok(())
    }

    fn alu1(&mut self, mn: Mn) -> Result<(), EmuError> {
        self.check_lock(true)?;
        let size = self.op_size(0);
        let dst = self.resolve_op(0, size, true)?;
        let a = self.read_loc(&dst, size)?;
        let f = self.flags;
        let keep_cf = |nf: u64| (nf & !rflags::CF) | (f & rflags::CF);
        let (res, flags) = match mn {
            Mn::Inc => {
                let (r, nf) = alu::add(a, 1, false, size, f);
                (r, keep_cf(nf))
            }
            Mn::Dec => {
                let (r, nf) = alu::sub(a, 1, false, size, f);
                (r, keep_cf(nf))
            }
            Mn::Neg => alu::sub(0, a, false, size, f),
            _ => (!a & alu::mask(size), f),
        };
        self.write_rmw(&dst, size, a, res, false)?;
        self.flags = flags;
        Ok(())
    }

    fn shift(&mut self, kind: Shift) -> Result<(), EmuError> {
        self.check_lock(false)?;
        let size = self.op_size(0);
        let dst = self.resolve_op(0, size, true)?;
        let a = self.read_loc(&dst, size)?;
        let count = self.read_op(1, 1)?;
        match alu::shift(kind, a, count, size, self.flags) {
            Some((res, flags)) => {
                self.write_loc(&dst, size, res)?;
                self.flags = flags;
            }
            // A zero count still zero-extends a 32-bit register destination.
            None if size == 4 && matches!(dst, Loc::Gpr { .. }) => self.write_loc(&dst, size, a)?,
            None => {}
        }
        Ok(())
    }

    fn double_shift(&mut self, left: bool) -> Result<(), EmuError> {
        self.check_lock(false)?;
        let size = self.op_size(0);
        let dst = self.resolve_op(0, size, true)?;
        let a = self.read_loc(&dst, size)?;
        let b = self.read_op(1, size)?;
        let count = self.read_op(2, 1)?;
        match alu::double_shift(left, a, b, count, size, self.flags) {
            Some((res, flags)) => {
                self.write_loc(&dst, size, res)?;
                self.flags = flags;
            }
            // A zero count still zero-extends a 32-bit register destination.
            None if size == 4 && matches!(dst, Loc::Gpr { .. }) => self.write_loc(&dst, size, a)?,
            None => {}
        }
        Ok(())
    }

    fn bit_test(&mut self, mn: Mn) -> Result<(), EmuError> {
        let writes = mn != Mn::Bt;
        self.check_lock(writes)?;
        let size = self.op_size(0);
        let bits = (size * 8) as u64;
        let (dst, bit) = if self.instr.op1_kind() == OpKind::Register
            && self.instr.op0_kind() == OpKind::Memory
        {
            // Bit-string addressing: the signed offset selects the operand-sized
            // word relative to the memory operand.
            let raw = self.read_op(1, size)?;
            let offset = alu::sign_extend(raw, size) as i64;
            let disp = (offset >> bits.trailing_zeros()).wrapping_mul(size as i64) as u64;
            let seg = self.mem_seg();
            let off = self.mem_offset(disp);
            (
                Loc::Mem(self.resolve(seg, off, size, writes)?),
                (offset as u64) & (bits - 1),
            )
        } else {
            let bit = self.read_op(1, size)? & (bits - 1);
            (self.resolve_op(0, size, writes)?, bit)
        };
        let a = self.read_loc(&dst, size)?;
        let set = (a >> bit) & 1 != 0;
        let res = match mn {
            Mn::Bts => a | (1 << bit),
            Mn::Btr => a & !(1 << bit),
            Mn::Btc => a ^ (1 << bit),
            _ => a,
        };
        if writes {
            self.write_rmw(&dst, size, a, res, false)?;
        }
        self.flags = (self.flags & !rflags::CF) | if set { rflags::CF } else { 0 };
        Ok(())
    }

    fn xchg(&mut self) -> Result<(), EmuError> {
        self.check_lock(true)?;
        let size = self.op_size(0);
        let a_loc = self.resolve_op(0, size, true)?;
        let b_loc = self.resolve_op(1, size, true)?;
        let a = self.read_loc(&a_loc, size)?;
        let b = self.read_loc(&b_loc, size)?;
        // Memory (always locked) first, then the register.
        match (a_loc, b_loc) {
            (Loc::Mem(_), reg) => {
                self.write_rmw(&a_loc, size, a, b, true)?;
                self.write_loc(&reg, size, a)
            }
            (reg, Loc::Mem(_)) => {
                self.write_rmw(&b_loc, size, b, a, true)?;
                self.write_loc(&reg, size, b)
            }
            _ => {
                self.write_loc(&a_loc, size, b)?;
                self.write_loc(&b_loc, size, a)
            }
        }
    }

    fn cmpxchg(&mut self) -> Result<(), EmuError> {
        self.check_lock(true)?;
        let size = self.op_size(0);
        let dst = self.resolve_op(0, size, true)?;
        let old = self.read_loc(&dst, size)?;
        let src = self.read_op(1, size)?;
        let acc = self.read_gpr(0, false, size);
        let (_, flags) = alu::sub(acc, old, false, size, self.flags);
        if acc == old {
            self.write_rmw(&dst, size, old, src, false)?;
        } else {
            // The processor writes the old value back to a memory destination.
            if let Loc::Mem(_) = dst {
                self.write_rmw(&dst, size, old, old, false)?;
            }
            self.write_gpr(0, false, size, old);
        }
        self.flags = flags;
        Ok(())
    }

    fn cmpxchg_wide(&mut self, wide16: bool) -> Result<(), EmuError> {
        self.check_lock(true)?;
        if self.instr.op0_kind() != OpKind::Memory {
            return Err(Exception::ud().into());
        }
        let half = if wide16 { 8 } else { 4 };
        let len = half * 2;
        let seg = self.mem_seg();
        let off = self.mem_offset(0);
        let la = self.linear(seg, off, len, true)?;
        if wide16 && la & 15 != 0 {
            return Err(Exception::gp0().into());
        }
        let loc = self.translate_range(la, len, true)?;
        let mut old = [0u8; 16];
        self.phys_read(&loc, &mut old)?;
        let m = alu::mask(half);
        let (ax, dx) = (self.cpu.gpr(0) & m, self.cpu.gpr(2) & m);
        let mut expected = [0u8; 16];
        expected[..half].copy_from_slice(&ax.to_le_bytes()[..half]);
        expected[half..len].copy_from_slice(&dx.to_le_bytes()[..half]);
        let equal = expected[..len] == old[..len];
        let new = if equal {
            let (bx, cx) = (self.cpu.gpr(3) & m, self.cpu.gpr(1) & m);
            let mut n = [0u8; 16];
            n[..half].copy_from_slice(&bx.to_le_bytes()[..half]);
            n[half..len].copy_from_slice(&cx.to_le_bytes()[..half]);
            n
        } else {
            old
        };
        if self.instr.has_lock_prefix() {
            self.phys_cmpxchg(&loc, &old[..len], &new[..len])?;
        } else {
            self.phys_write(&loc, &new[..len])?;
        }
        if !equal {
            let mut lo = [0u8; 8];
            let mut hi = [0u8; 8];
            lo[..half].copy_from_slice(&old[..half]);
            hi[..half].copy_from_slice(&old[half..len]);
            self.write_gpr(0, false, half, u64::from_le_bytes(lo));
            self.write_gpr(2, false, half, u64::from_le_bytes(hi));
        }
        self.flags = (self.flags & !rflags::ZF) | if equal { rflags::ZF } else { 0 };
        Ok(())
    }

    fn xadd(&mut self) -> Result<(), EmuError> {
        self.check_lock(true)?;
        let size = self.op_size(0);
        let dst = self.resolve_op(0, size, true)?;
        let src_loc = self.resolve_op(1, size, false)?;
        let a = self.read_loc(&dst, size)?;
        let b = self.read_loc(&src_loc, size)?;
        let (sum, flags) = alu::add(a, b, false, size, self.flags);
        if let Loc::Mem(_) = dst {
            self.write_rmw(&dst, size, a, sum, false)?;
            self.write_loc(&src_loc, size, a)?;
        } else {
            self.write_loc(&src_loc, size, a)?;
            self.write_loc(&dst, size, sum)?;
        }
        self.flags = flags;
        Ok(())
    }

    fn setcc(&mut self) -> Result<(), EmuError> {
        self.check_lock(false)?;
        let v = alu::condition(self.instr.condition_code(), self.flags) as u64;
        let dst = self.resolve_op(0, 1, true)?;
        self.write_loc(&dst, 1, v)
    }

    fn cmovcc(&mut self) -> Result<(), EmuError> {
        self.check_lock(false)?;
        let size = self.op_size(0);
        let v = self.read_op(1, size)?;
        let dst = self.resolve_op(0, size, true)?;
        if alu::condition(self.instr.condition_code(), self.flags) {
            self.write_loc(&dst, size, v)
        } else if size == 4 {
            // A 32-bit CMOV zero-extends its destination even when false.
            let cur = self.read_loc(&dst, size)?;
            self.write_loc(&dst, size, cur)
        } else {
            Ok(())
        }
    }

    fn push(&mut self) -> Result<(), EmuError> {
        self.check_lock(false)?;
        let size = (-self.instr.stack_pointer_increment()) as usize;
        if !matches!(size, 2 | 4 | 8) || self.instr.op_count() != 1 {
            return Err(self.unsupported());
        }
        let v = match self.instr.op0_kind() {
            OpKind::Register if !self.instr.op0_register().is_gpr() => {
                return Err(self.unsupported())
            }
            _ => self.read_op(0, size)?,
        };
        let ssize = self.stack_size();
        let rsp = self.cpu.gpr(4);
        let new = rsp.wrapping_sub(size as u64) & alu::mask(ssize);
        self.write_virt(SegReg::Ss, new, size, v)?;
        self.write_gpr(4, false, ssize, new);
        Ok(())
    }

    fn pop(&mut self) -> Result<(), EmuError> {
        self.check_lock(false)?;
        let size = self.instr.stack_pointer_increment() as usize;
        if !matches!(size, 2 | 4 | 8) || self.instr.op_count() != 1 {
            return Err(self.unsupported());
        }
        let ssize = self.stack_size();
        let rsp = self.cpu.gpr(4);
        let v = self.read_virt(SegReg::Ss, rsp & alu::mask(ssize), size)?;
        let new_rsp = rsp.wrapping_add(size as u64) & alu::mask(ssize);
        // A memory destination based on rSP sees the incremented value.
        self.rsp_bias = size as u64;
        let dst = self.resolve_op(0, size, true)?;
        self.rsp_bias = 0;
        if let Loc::Mem(_) = dst {
            self.write_loc(&dst, size, v)?;
            self.write_gpr(4, false, ssize, new_rsp);
        } else {
            self.write_gpr(4, false, ssize, new_rsp);
            self.write_loc(&dst, size, v)?;
        }
        Ok(())
    }
}
