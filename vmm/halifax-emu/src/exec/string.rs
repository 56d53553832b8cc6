//! String instructions: MOVS, STOS, LODS, CMPS, SCAS, INS, OUTS with
//! REP/REPE/REPNE at every address size.
//!
//! A REP instruction runs at most `Emulator::max_rep_iterations` elements
//! per step; it then returns [`StepOutcome::Interrupted`] with RCX/RSI/RDI
//! updated and RIP unchanged, so the VMM can deliver interrupts and call
//! `step` again. A fault mid-way likewise keeps the completed iterations.

use super::alu;
use super::Ctx;
use crate::cpu::{rflags, Cpu, SegReg};
use crate::error::EmuError;
use crate::memory::Memory;
use crate::StepOutcome;
use iced_x86::{Mnemonic as Mn, OpKind};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Movs,
    Stos,
    Lods,
    Cmps,
    Scas,
    Ins,
    Outs,
}

const RAX: usize = 0;
const RCX: usize = 1;
const RDX: usize = 2;
const RSI: usize = 6;
const RDI: usize = 7;

impl<C: Cpu + ?Sized, M: Memory + ?Sized> Ctx<'_, C, M> {
    /// Runs a string instruction; `None` if the instruction is not one.
    pub(super) fn try_string(&mut self) -> Result<Option<StepOutcome>, EmuError> {
        let (kind, size) = match self.instr.mnemonic() {
            Mn::Movsb => (Kind::Movs, 1),
            Mn::Movsw => (Kind::Movs, 2),
            Mn::Movsd if is_string_op(self.instr.op0_kind()) => (Kind::Movs, 4),
            Mn::Movsq => (Kind::Movs, 8),
            Mn::Stosb => (Kind::Stos, 1),
            Mn::Stosw => (Kind::Stos, 2),
            Mn::Stosd => (Kind::Stos, 4),
            Mn::Stosq => (Kind::Stos, 8),
            Mn::Lodsb => (Kind::Lods, 1),
            Mn::Lodsw => (Kind::Lods, 2),
            Mn::Lodsd => (Kind::Lods, 4),
            Mn::Lodsq => (Kind::Lods, 8),
            Mn::Cmpsb => (Kind::Cmps, 1),
            Mn::Cmpsw => (Kind::Cmps, 2),
            Mn::Cmpsd if is_string_op(self.instr.op0_kind()) => (Kind::Cmps, 4),
            Mn::Cmpsq => (Kind::Cmps, 8),
            Mn::Scasb => (Kind::Scas, 1),
            Mn::Scasw => (Kind::Scas, 2),
            Mn::Scasd => (Kind::Scas, 4),
            Mn::Scasq => (Kind::Scas, 8),
            Mn::Insb => (Kind::Ins, 1),
            Mn::Insw => (Kind::Ins, 2),
            Mn::Insd => (Kind::Ins, 4),
            Mn::Outsb => (Kind::Outs, 1),
            Mn::Outsw => (Kind::Outs, 2),
            Mn::Outsd => (Kind::Outs, 4),
            _ => return Ok(None),
        };
        self.check_lock(false)?;
        self.string(kind, size).map(Some)
    }

    fn string(&mut self, kind: Kind, size: usize) -> Result<StepOutcome, EmuError> {
        let amask = self.addr_mask();
        let repe = self.instr.has_rep_prefix();
        let repne = self.instr.has_repne_prefix();
        let rep = repe || repne;
        let step = if self.flags & rflags::DF != 0 {
            (size as u64).wrapping_neg()
        } else {
            size as u64
        };
        let src_seg = self.mem_seg();
        let mut rcx = self.cpu.gpr(RCX);
        let mut rsi = self.cpu.gpr(RSI);
        let mut rdi = self.cpu.gpr(RDI);
        let uses_si = matches!(kind, Kind::Movs | Kind::Lods | Kind::Cmps | Kind::Outs);
        let uses_di = matches!(
            kind,
            Kind::Movs | Kind::Stos | Kind::Cmps | Kind::Scas | Kind::Ins
        );
        let limit = self.emu.max_rep_iterations.max(1);
        let mut done = 0u32;

        let down = self.flags & rflags::DF != 0;
        let result = loop {
            if rep && rcx & amask == 0 {
                break Ok(StepOutcome::Completed);
            }
            // Fast path: a run of elements whose operands stay within one
            // page each, translated once.
            let budget = (rcx & amask).min(u64::from(limit - done));
            if rep && budget >= 2 {
                let chunk = self.string_chunk(
                    kind,
                    size,
                    src_seg,
                    rsi & amask,
                    rdi & amask,
                    budget,
                    down,
                    amask,
                );
                let (n, stop, err) = match chunk {
                    Ok((n, stop)) => (n, stop, None),
                    Err((n, e)) => (n, false, Some(e)),
                };
                if n > 0 || err.is_some() {
                    let delta = step.wrapping_mul(n);
                    if uses_si {
                        rsi = merge(rsi, rsi.wrapping_add(delta), amask);
                    }
                    if uses_di {
                        rdi = merge(rdi, rdi.wrapping_add(delta), amask);
                    }
                    rcx = merge(rcx, rcx.wrapping_sub(n), amask);
                    done += n as u32;
                    if let Some(e) = err {
                        break Err(e);
                    }
                    if stop || rcx & amask == 0 {
                        break Ok(StepOutcome::Completed);
                    }
                    if done >= limit {
                        break Ok(StepOutcome::Interrupted);
                    }
                    continue;
                }
            }
            if let Err(e) = self.string_element(kind, size, src_seg, rsi & amask, rdi & amask) {
                break Err(e);
            }
            if uses_si {
                rsi = merge(rsi, rsi.wrapping_add(step), amask);
            }
            if uses_di {
                rdi = merge(rdi, rdi.wrapping_add(step), amask);
            }
            if !rep {
                break Ok(StepOutcome::Completed);
            }
            rcx = merge(rcx, rcx.wrapping_sub(1), amask);
            if matches!(kind, Kind::Cmps | Kind::Scas) {
                let zf = self.flags & rflags::ZF != 0;
                if (repe && !zf) || (repne && zf) {
                    break Ok(StepOutcome::Completed);
                }
            }
            if rcx & amask == 0 {
                break Ok(StepOutcome::Completed);
            }
            done += 1;
            if done >= limit {
                break Ok(StepOutcome::Interrupted);
            }
        };
        if rep {
            self.write_gpr(RCX, false, 8, rcx);
        }
        if uses_si {
            self.write_gpr(RSI, false, 8, rsi);
        }
        if uses_di {
            self.write_gpr(RDI, false, 8, rdi);
        }
        if result.is_err() {
            // Completed iterations (and their flags) stay, as on hardware.
            self.cpu.set_rflags(self.flags);
        }
        result
    }

    /// How many `size`-byte elements starting at offset `off` (linear `la`)
    /// fit before a page boundary or an address-size wrap, moving up or down.
    fn run_length(la: u64, off: u64, size: u64, down: bool, amask: u64) -> u64 {
        let in_page = la & 0xfff;
        if in_page + size > 0x1000 {
            return 0;
        }
        if down {
            (in_page / size + 1).min(off / size + 1)
        } else {
            ((0x1000 - in_page) / size).min((amask - off) / size + 1)
        }
    }

    /// Validates and translates the run of `n` elements of one operand.
    fn run_location(
        &mut self,
        seg: SegReg,
        off: u64,
        size: u64,
        n: u64,
        down: bool,
        write: bool,
    ) -> Result<u64, EmuError> {
        let lo = if down { off - (n - 1) * size } else { off };
        let la = self.linear(seg, lo, (n * size) as usize, write)?;
        let loc = self.translate_range(la, (n * size) as usize, write)?;
        Ok(if down {
            loc.gpa + (n - 1) * size
        } else {
            loc.gpa
        })
    }

    /// Runs up to `budget` elements whose operands stay within one page
    /// each. Returns (elements done, REPE/REPNE condition ended the loop);
    /// `(0, false)` when the fast path does not apply.
    #[allow(clippy::too_many_arguments)]
    fn string_chunk(
        &mut self,
        kind: Kind,
        size: usize,
        src_seg: SegReg,
        si: u64,
        di: u64,
        budget: u64,
        down: bool,
        amask: u64,
    ) -> Result<(u64, bool), (u64, EmuError)> {
        let ac_checks = self.paging.cpl == 3
            && self.paging.cr0 & crate::cpu::ctrl::CR0_AM != 0
            && self.flags & rflags::AC != 0;
        if ac_checks || kind == Kind::Ins || kind == Kind::Outs {
            return Ok((0, false));
        }
        let sz = size as u64;
        let uses_si = matches!(kind, Kind::Movs | Kind::Lods | Kind::Cmps);
        let uses_di = matches!(kind, Kind::Movs | Kind::Stos | Kind::Cmps | Kind::Scas);
        let mut n = budget;
        // Linear addresses of the first elements (cheap: segmentation only;
        // faults here are left to the single-element path).
        if uses_si {
            let Ok(la) = self.linear(src_seg, si, size, false) else {
                return Ok((0, false));
            };
            n = n.min(Self::run_length(la, si, sz, down, amask));
        }
        if uses_di {
            let Ok(la) = self.linear(
                SegReg::Es,
                di,
                size,
                kind != Kind::Cmps && kind != Kind::Scas,
            ) else {
                return Ok((0, false));
            };
            n = n.min(Self::run_length(la, di, sz, down, amask));
        }
        if n < 2 {
            return Ok((0, false));
        }
        let src = if uses_si {
            self.run_location(src_seg, si, sz, n, down, false)
                .map_err(|e| (0, e))?
        } else {
            0
        };
        let dst_write = matches!(kind, Kind::Movs | Kind::Stos);
        let dst = if uses_di {
            self.run_location(SegReg::Es, di, sz, n, down, dst_write)
                .map_err(|e| (0, e))?
        } else {
            0
        };
        let step = if down { sz.wrapping_neg() } else { sz };
        let m = alu::mask(size);
        let rax = self.cpu.gpr(RAX) & m;
        let mut buf = [0u8; 8];
        let mut last = 0u64;
        let repe = self.instr.has_rep_prefix();
        for i in 0..n {
            let s = src.wrapping_add(step.wrapping_mul(i));
            let d = dst.wrapping_add(step.wrapping_mul(i));
            let r: Result<bool, EmuError> = (|| {
                match kind {
                    Kind::Movs => {
                        self.mem.read(s, &mut buf[..size])?;
                        self.mem.write(d, &buf[..size])?;
                    }
                    Kind::Stos => self.mem.write(d, &rax.to_le_bytes()[..size])?,
                    Kind::Lods => {
                        self.mem.read(s, &mut buf[..size])?;
                        last = u64::from_le_bytes(buf);
                    }
                    Kind::Cmps | Kind::Scas => {
                        let a = if kind == Kind::Cmps {
                            self.mem.read(s, &mut buf[..size])?;
                            u64::from_le_bytes(buf)
                        } else {
                            rax
                        };
                        let mut b2 = [0u8; 8];
                        self.mem.read(d, &mut b2[..size])?;
                        self.flags = alu::sub(a, u64::from_le_bytes(b2), false, size, self.flags).1;
                        let zf = self.flags & rflags::ZF != 0;
                        return Ok(zf != repe);
                    }
                    Kind::Ins | Kind::Outs => {}
                }
                Ok(false)
            })();
            match r {
                Ok(stop) => {
                    if kind == Kind::Lods {
                        self.write_gpr(RAX, false, size, last);
                    }
                    if stop {
                        return Ok((i + 1, true));
                    }
                }
                Err(e) => return Err((i, e)),
            }
        }
        Ok((n, false))
    }

    fn string_element(
        &mut self,
        kind: Kind,
        size: usize,
        src_seg: SegReg,
        si: u64,
        di: u64,
    ) -> Result<(), EmuError> {
        let m = alu::mask(size);
        match kind {
            Kind::Movs => {
                let v = self.read_virt(src_seg, si, size)?;
                self.write_virt(SegReg::Es, di, size, v)
            }
            Kind::Stos => {
                let v = self.cpu.gpr(RAX) & m;
                self.write_virt(SegReg::Es, di, size, v)
            }
            Kind::Lods => {
                let v = self.read_virt(src_seg, si, size)?;
                self.write_gpr(RAX, false, size, v);
                Ok(())
            }
            Kind::Cmps => {
                let a = self.read_virt(src_seg, si, size)?;
                let b = self.read_virt(SegReg::Es, di, size)?;
                self.flags = alu::sub(a, b, false, size, self.flags).1;
                Ok(())
            }
            Kind::Scas => {
                let b = self.read_virt(SegReg::Es, di, size)?;
                let a = self.cpu.gpr(RAX) & m;
                self.flags = alu::sub(a, b, false, size, self.flags).1;
                Ok(())
            }
            Kind::Ins => {
                let port = self.cpu.gpr(RDX) as u16;
                let loc = self.resolve(SegReg::Es, di, size, true)?;
                let mut b = [0u8; 4];
                self.mem.io_read(port, &mut b[..size])?;
                self.phys_write(&loc, &b)
            }
            Kind::Outs => {
                let port = self.cpu.gpr(RDX) as u16;
                let v = self.read_virt(src_seg, si, size)?;
                self.mem.io_write(port, &v.to_le_bytes()[..size])?;
                Ok(())
            }
        }
    }
}

/// Replaces the address-size part of a register: 16-bit updates keep the
/// upper bits, 32-bit updates zero-extend (as 32-bit register writes do).
fn merge(old: u64, new: u64, amask: u64) -> u64 {
    if amask == 0xffff {
        (old & !0xffff) | (new & 0xffff)
    } else {
        new & amask
    }
}

fn is_string_op(kind: OpKind) -> bool {
    matches!(
        kind,
        OpKind::MemorySegSI
            | OpKind::MemorySegESI
            | OpKind::MemorySegRSI
            | OpKind::MemoryESDI
            | OpKind::MemoryESEDI
            | OpKind::MemoryESRDI
    )
}
