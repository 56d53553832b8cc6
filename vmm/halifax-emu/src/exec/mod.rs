//! Instruction fetch, decode and execution.
//!
//! [`Ctx`] holds everything one `step` needs: the CPU and memory handles, the
//! decoded [`Instruction`], the mode, the working RFLAGS and a tiny per-step
//! TLB. `execute` dispatches on the iced-x86 [`Mnemonic`] to a handler; the
//! handlers use the operand helpers in this file (`read_op`, `write_loc`,
//! `resolve_op`…) which hide whether an operand is a register, memory or an
//! immediate. Groups live in their own files: [`alu`] (pure arithmetic),
//! `ops` (integer instructions), `string` (MOVS…OUTS with REP) and `sse`
//! (vector moves).
//!
//! Commit order, which makes faults restartable: all memory reads, then the
//! memory write, then register writes, RFLAGS and RIP. A handler must not
//! write a register before its last memory access.

pub mod alu;
mod ops;
mod sse;
mod string;

use crate::cpu::{ctrl, rflags, Cpu, Mode, SegReg};
use crate::error::{EmuError, Exception};
use crate::memory::{Memory, MemoryError};
use crate::paging::{self, Access, PagingRegs};
use crate::{Emulator, StepOutcome};
use iced_x86::{Decoder, DecoderError, DecoderOptions, Instruction, OpKind, Register};

/// Longest legal x86 instruction.
const MAX_INSN_LEN: usize = 15;
/// Times a LOCKed instruction is re-executed when its compare-and-write loses a race.
const MAX_LOCK_RETRIES: usize = 64;
const TLB_ENTRIES: usize = 4;

/// Where an operand lives once resolved.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Loc {
    /// General register `index`; `high` selects AH/CH/DH/BH.
    Gpr { index: usize, high: bool },
    /// Guest memory, already translated.
    Mem(PhysLoc),
}

/// A translated memory operand: up to two physical pieces (page split).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PhysLoc {
    gpa: u64,
    gpa2: u64,
    first: usize,
    len: usize,
}

#[derive(Clone, Copy, Default)]
struct TlbEntry {
    page: u64,
    gpa_page: u64,
    /// 0 empty, 1 readable, 2 writable, 3 executable.
    rights: u8,
}

/// Per-step execution context.
pub(crate) struct Ctx<'a, C: Cpu + ?Sized, M: Memory + ?Sized> {
    pub cpu: &'a mut C,
    pub mem: &'a mut M,
    pub emu: &'a Emulator,
    pub instr: Instruction,
    pub mode: Mode,
    pub paging: PagingRegs,
    /// Working RFLAGS, committed at the end of the instruction.
    pub flags: u64,
    /// Address size in bytes (2, 4, 8).
    pub addr_size: usize,
    /// Added to RSP when it is the base of a memory operand (POP [rSP]).
    pub rsp_bias: u64,
    /// Set when a compare-and-write lost a race; the step is re-executed.
    pub lock_race: bool,
    /// 64 minus the linear-address width (48 or 57 bits).
    canonical_shift: u32,
    tlb: [TlbEntry; TLB_ENTRIES],
    tlb_next: usize,
}

impl Emulator {
    pub(crate) fn run<C: Cpu + ?Sized, M: Memory + ?Sized>(
        &self,
        cpu: &mut C,
        mem: &mut M,
        bytes: Option<&[u8]>,
    ) -> Result<StepOutcome, EmuError> {
        let mode = cpu.mode();
        let paging = PagingRegs::of_cpu(cpu, self.phys_bits);
        let flags = paging.rflags;
        let mut ctx = Ctx {
            cpu,
            mem,
            emu: self,
            instr: Instruction::default(),
            mode,
            paging,
            flags,
            addr_size: 0,
            rsp_bias: 0,
            lock_race: false,
            canonical_shift: if paging.cr4 & ctrl::CR4_LA57 != 0 {
                7
            } else {
                16
            },
            tlb: [TlbEntry::default(); TLB_ENTRIES],
            tlb_next: 0,
        };
        ctx.fetch_and_decode(bytes)?;
        for _ in 0..MAX_LOCK_RETRIES {
            ctx.lock_race = false;
            ctx.flags = flags;
            ctx.rsp_bias = 0;
            match ctx.execute() {
                Err(_) if ctx.lock_race => continue,
                other => return other,
            }
        }
        Err(EmuError::Memory(MemoryError::Retry))
    }
}

impl<C: Cpu + ?Sized, M: Memory + ?Sized> Ctx<'_, C, M> {
    // ---------------------------------------------------------------- decode

    fn fetch_and_decode(&mut self, given: Option<&[u8]>) -> Result<(), EmuError> {
        let rip = self.cpu.rip();
        let bitness = self.mode.bitness();
        if let Some(b) = given {
            // Common case: the exit supplied the whole instruction.
            let b = &b[..b.len().min(MAX_INSN_LEN)];
            let mut decoder = Decoder::with_ip(bitness, b, rip, DecoderOptions::NONE);
            decoder.decode_out(&mut self.instr);
            match decoder.last_error() {
                DecoderError::None => {
                    self.addr_size = self.address_size();
                    return Ok(());
                }
                DecoderError::NoMoreBytes if b.len() < MAX_INSN_LEN => {}
                _ => return Err(Exception::ud().into()),
            }
        }
        let mut buf = [0u8; MAX_INSN_LEN];
        let mut have = 0;
        if let Some(b) = given {
            have = b.len().min(MAX_INSN_LEN);
            buf[..have].copy_from_slice(&b[..have]);
        }
        loop {
            if have > 0 {
                let mut decoder =
                    Decoder::with_ip(bitness, &buf[..have], rip, DecoderOptions::NONE);
                decoder.decode_out(&mut self.instr);
                match decoder.last_error() {
                    DecoderError::None => break,
                    DecoderError::NoMoreBytes if have < MAX_INSN_LEN => {}
                    _ => return Err(Exception::ud().into()),
                }
            }
            // Fetch up to the next page boundary (or the instruction's maximum).
            have += self.fetch(rip, have, &mut buf)?;
        }
        self.addr_size = self.address_size();
        Ok(())
    }

    /// Fetches instruction bytes starting `have` bytes after `rip`, up to the
    /// end of that page; returns how many were added.
    fn fetch(
        &mut self,
        rip: u64,
        have: usize,
        buf: &mut [u8; MAX_INSN_LEN],
    ) -> Result<usize, EmuError> {
        let offset = self.ip_mask(rip.wrapping_add(have as u64));
        let cs = self.cpu.segment(SegReg::Cs);
        let la = if self.mode == Mode::Long64 {
            offset
        } else {
            // Execute-only is fine; the code segment limit still applies.
            if offset > u64::from(cs.limit) {
                return Err(Exception::gp0().into());
            }
            (cs.base.wrapping_add(offset)) & 0xffff_ffff
        };
        if self.mode == Mode::Long64 && !self.canonical(la) {
            return Err(Exception::gp0().into());
        }
        let room = 0x1000 - (la & 0xfff) as usize;
        let mut n = room.min(MAX_INSN_LEN - have);
        if self.mode != Mode::Long64 {
            n = n.min((u64::from(cs.limit) - offset + 1).min(MAX_INSN_LEN as u64) as usize);
        }
        let gpa = self.translate(la, Access::Execute)?;
        self.mem.read(gpa, &mut buf[have..have + n])?;
        Ok(n)
    }

    /// Address size in bytes from the mode and an 0x67 prefix.
    fn address_size(&self) -> usize {
        // Prefer what iced tells us from the operands themselves.
        for op in 0..self.instr.op_count() {
            match self.instr.op_kind(op) {
                OpKind::MemorySegSI | OpKind::MemorySegDI | OpKind::MemoryESDI => return 2,
                OpKind::MemorySegESI | OpKind::MemorySegEDI | OpKind::MemoryESEDI => return 4,
                OpKind::MemorySegRSI | OpKind::MemorySegRDI | OpKind::MemoryESRDI => return 8,
                OpKind::Memory => {
                    let base = self.instr.memory_base();
                    let reg = if base != Register::None {
                        base
                    } else {
                        self.instr.memory_index()
                    };
                    match reg {
                        Register::EIP => return 4,
                        Register::RIP => return 8,
                        Register::None => {}
                        r if r.is_gpr() => return r.size(),
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        // No base/index: decide from the prefix bytes (moffs, [disp32]).
        let default = match self.mode.bitness() {
            16 => 2,
            32 => 4,
            _ => 8,
        };
        match (self.has_addr_prefix(), default) {
            (false, d) => d,
            (true, 4) => 2,
            (true, _) => 4,
        }
    }

    fn has_addr_prefix(&self) -> bool {
        // iced does not expose the 0x67 prefix; recover it from the
        // displacement size it chose for base-less operands.
        matches!(
            (self.mode.bitness(), self.instr.memory_displ_size()),
            (64, 4) | (32, 2) | (16, 4)
        )
    }

    // -------------------------------------------------------------- dispatch

    fn execute(&mut self) -> Result<StepOutcome, EmuError> {
        let outcome = self.dispatch()?;
        if outcome == StepOutcome::Completed {
            let next = self.ip_mask(self.instr.next_ip());
            self.cpu.set_rip(next);
        }
        self.cpu.set_rflags(self.flags);
        Ok(outcome)
    }

    pub(crate) fn unsupported(&self) -> EmuError {
        EmuError::Unsupported {
            code: self.instr.code(),
        }
    }

    /// Masks an instruction pointer to the code size.
    fn ip_mask(&self, ip: u64) -> u64 {
        match self.mode.bitness() {
            16 => ip & 0xffff,
            32 => ip & 0xffff_ffff,
            _ => ip,
        }
    }

    // ------------------------------------------------------- address checks

    #[inline]
    pub(crate) fn canonical(&self, la: u64) -> bool {
        let shift = self.canonical_shift;
        (((la << shift) as i64) >> shift) as u64 == la
    }

    /// Segmentation: offset → linear address for an access of `len` bytes.
    #[inline]
    pub(crate) fn linear(
        &mut self,
        seg: SegReg,
        offset: u64,
        len: usize,
        write: bool,
    ) -> Result<u64, EmuError> {
        let fault = if seg == SegReg::Ss {
            Exception::ss0()
        } else {
            Exception::gp0()
        };
        if self.mode == Mode::Long64 {
            let base = match seg {
                SegReg::Fs | SegReg::Gs => self.cpu.segment(seg).base,
                _ => 0,
            };
            let la = base.wrapping_add(offset);
            if !self.canonical(la) || !self.canonical(la.wrapping_add(len as u64 - 1)) {
                return Err(fault.into());
            }
            return Ok(la);
        }
        let s = self.cpu.segment(seg);
        let protected = matches!(self.mode, Mode::Protected16 | Mode::Protected32);
        if protected {
            if !s.present() || !s.is_code_or_data() {
                return Err(fault.into());
            }
            let readable = !s.is_code() || s.kind() & 2 != 0;
            let writable = !s.is_code() && s.kind() & 2 != 0;
            if (write && !writable) || (!write && !readable) {
                return Err(fault.into());
            }
        }
        let last = offset + len as u64 - 1;
        let expand_down = protected && !s.is_code() && s.kind() & 4 != 0;
        let ok = if expand_down {
            let upper = if s.big() { 0xffff_ffff } else { 0xffff };
            offset > u64::from(s.limit) && last <= upper
        } else {
            last <= u64::from(s.limit)
        };
        if !ok {
            return Err(fault.into());
        }
        Ok(s.base.wrapping_add(offset) & 0xffff_ffff)
    }

    /// Paging with the per-step TLB.
    #[inline]
    pub(crate) fn translate(&mut self, la: u64, access: Access) -> Result<u64, EmuError> {
        let need = match access {
            Access::Read => 1,
            Access::Write => 2,
            Access::Execute => 3,
        };
        let page = la & !0xfff;
        for e in &self.tlb {
            if e.rights != 0 && e.page == page && (e.rights == need || (need == 1 && e.rights == 2))
            {
                return Ok(e.gpa_page | (la & 0xfff));
            }
        }
        let gpa = paging::translate(&mut *self.mem, &self.paging, la, access)?;
        self.tlb[self.tlb_next] = TlbEntry {
            page,
            gpa_page: gpa & !0xfff,
            rights: need,
        };
        self.tlb_next = (self.tlb_next + 1) % TLB_ENTRIES;
        Ok(gpa)
    }

    /// Segment + alignment + paging for a data access of `len` bytes.
    #[inline]
    pub(crate) fn resolve(
        &mut self,
        seg: SegReg,
        offset: u64,
        len: usize,
        write: bool,
    ) -> Result<PhysLoc, EmuError> {
        let la = self.linear(seg, offset, len, write)?;
        self.translate_range(la, len, write)
    }

    /// Alignment check + paging for `len` bytes at linear address `la`.
    #[inline]
    pub(crate) fn translate_range(
        &mut self,
        la: u64,
        len: usize,
        write: bool,
    ) -> Result<PhysLoc, EmuError> {
        if len > 1
            && len <= 8
            && la & (len as u64 - 1) != 0
            && self.paging.cpl == 3
            && self.paging.cr0 & ctrl::CR0_AM != 0
            && self.flags & rflags::AC != 0
        {
            return Err(Exception::ac().into());
        }
        let access = if write { Access::Write } else { Access::Read };
        let first = (0x1000 - (la & 0xfff) as usize).min(len);
        let gpa = self.translate(la, access)?;
        let gpa2 = if first < len {
            let la2 = la.wrapping_add(first as u64);
            let la2 = if self.mode == Mode::Long64 {
                la2
            } else {
                la2 & 0xffff_ffff
            };
            self.translate(la2, access)?
        } else {
            0
        };
        Ok(PhysLoc {
            gpa,
            gpa2,
            first,
            len,
        })
    }

    #[inline]
    pub(crate) fn phys_read(&mut self, loc: &PhysLoc, buf: &mut [u8]) -> Result<(), EmuError> {
        let (a, b) = buf[..loc.len].split_at_mut(loc.first);
        self.mem.read(loc.gpa, a)?;
        if !b.is_empty() {
            self.mem.read(loc.gpa2, b)?;
        }
        Ok(())
    }

    #[inline]
    pub(crate) fn phys_write(&mut self, loc: &PhysLoc, data: &[u8]) -> Result<(), EmuError> {
        let (a, b) = data[..loc.len].split_at(loc.first);
        self.mem.write(loc.gpa, a)?;
        if !b.is_empty() {
            self.mem.write(loc.gpa2, b)?;
        }
        Ok(())
    }

    /// Atomic compare-and-write for LOCKed read-modify-write. A page-split
    /// locked access is done as two compare-and-writes (not atomic as a whole).
    pub(crate) fn phys_cmpxchg(
        &mut self,
        loc: &PhysLoc,
        old: &[u8],
        new: &[u8],
    ) -> Result<(), EmuError> {
        let f = loc.first;
        let mut ok = self.mem.compare_and_write(loc.gpa, &old[..f], &new[..f])?;
        if ok && f < loc.len {
            ok = self
                .mem
                .compare_and_write(loc.gpa2, &old[f..loc.len], &new[f..loc.len])?;
        }
        if !ok {
            self.lock_race = true;
            return Err(EmuError::Memory(MemoryError::Retry));
        }
        Ok(())
    }

    /// Reads `len` (≤ 8) bytes of guest memory at `seg:offset`.
    pub(crate) fn read_virt(
        &mut self,
        seg: SegReg,
        offset: u64,
        len: usize,
    ) -> Result<u64, EmuError> {
        let loc = self.resolve(seg, offset, len, false)?;
        let mut b = [0u8; 8];
        self.phys_read(&loc, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Writes the low `len` (≤ 8) bytes of `value` at `seg:offset`.
    pub(crate) fn write_virt(
        &mut self,
        seg: SegReg,
        offset: u64,
        len: usize,
        value: u64,
    ) -> Result<(), EmuError> {
        let loc = self.resolve(seg, offset, len, true)?;
        self.phys_write(&loc, &value.to_le_bytes())
    }

    // ------------------------------------------------------------- operands

    pub(crate) fn addr_mask(&self) -> u64 {
        alu::mask(self.addr_size)
    }

    /// The memory operand's segment.
    pub(crate) fn mem_seg(&self) -> SegReg {
        seg_of(self.instr.memory_segment())
    }

    /// The memory operand's effective address (offset in its segment), plus
    /// `extra` bytes (bit-string offsets).
    #[inline]
    pub(crate) fn mem_offset(&mut self, extra: u64) -> u64 {
        let i = &self.instr;
        let base = i.memory_base();
        let index = i.memory_index();
        let scale = u64::from(i.memory_index_scale());
        let mut ea = i.memory_displacement64();
        if base != Register::None && base != Register::RIP && base != Register::EIP {
            let (idx, _) = gpr_index(base);
            let mut v = self.cpu.gpr(idx);
            if idx == 4 {
                v = v.wrapping_add(self.rsp_bias);
            }
            ea = ea.wrapping_add(v);
        }
        if index != Register::None {
            let (idx, _) = gpr_index(index);
            ea = ea.wrapping_add(self.cpu.gpr(idx).wrapping_mul(scale));
        }
        ea.wrapping_add(extra) & self.addr_mask()
    }

    /// Resolves operand `op` to a location (registers or memory). `write`
    /// requests write access for memory (read-modify-write counts as write).
    pub(crate) fn resolve_op(&mut self, op: u32, len: usize, write: bool) -> Result<Loc, EmuError> {
        match self.instr.op_kind(op) {
            OpKind::Register => {
                let reg = self.instr.op_register(op);
                if !reg.is_gpr() {
                    return Err(self.unsupported());
                }
                let (index, high) = gpr_index(reg);
                Ok(Loc::Gpr { index, high })
            }
            OpKind::Memory => {
                let seg = self.mem_seg();
                let off = self.mem_offset(0);
                Ok(Loc::Mem(self.resolve(seg, off, len, write)?))
            }
            _ => Err(self.unsupported()),
        }
    }

    /// Size in bytes of operand `op` (register width or memory size).
    pub(crate) fn op_size(&self, op: u32) -> usize {
        match self.instr.op_kind(op) {
            OpKind::Register => self.instr.op_register(op).size(),
            OpKind::Memory => self.instr.memory_size().size(),
            OpKind::Immediate8 | OpKind::Immediate8_2nd => 1,
            OpKind::Immediate16 | OpKind::Immediate8to16 => 2,
            OpKind::Immediate32 | OpKind::Immediate8to32 => 4,
            _ => 8,
        }
    }

    #[inline]
    pub(crate) fn read_gpr(&mut self, index: usize, high: bool, len: usize) -> u64 {
        let v = self.cpu.gpr(index);
        if high {
            (v >> 8) & 0xff
        } else {
            v & alu::mask(len)
        }
    }

    /// Writes a general register with x86 partial-register semantics:
    /// 8/16-bit writes merge, 32-bit writes zero-extend.
    #[inline]
    pub(crate) fn write_gpr(&mut self, index: usize, high: bool, len: usize, value: u64) {
        let old = self.cpu.gpr(index);
        let new = match (len, high) {
            (1, true) => (old & !0xff00) | ((value & 0xff) << 8),
            (1, false) => (old & !0xff) | (value & 0xff),
            (2, _) => (old & !0xffff) | (value & 0xffff),
            (4, _) => value & 0xffff_ffff,
            _ => value,
        };
        self.cpu.set_gpr(index, new);
    }

    pub(crate) fn read_loc(&mut self, loc: &Loc, len: usize) -> Result<u64, EmuError> {
        match *loc {
            Loc::Gpr { index, high } => Ok(self.read_gpr(index, high, len)),
            Loc::Mem(p) => {
                let mut b = [0u8; 8];
                self.phys_read(&p, &mut b)?;
                Ok(u64::from_le_bytes(b) & alu::mask(len))
            }
        }
    }

    pub(crate) fn write_loc(&mut self, loc: &Loc, len: usize, value: u64) -> Result<(), EmuError> {
        match *loc {
            Loc::Gpr { index, high } => {
                self.write_gpr(index, high, len, value);
                Ok(())
            }
            Loc::Mem(p) => self.phys_write(&p, &value.to_le_bytes()),
        }
    }

    /// Writes a read-modify-write result: atomically when LOCKed (or when
    /// `force_lock`, as XCHG), plainly otherwise.
    pub(crate) fn write_rmw(
        &mut self,
        loc: &Loc,
        len: usize,
        old: u64,
        new: u64,
        force_lock: bool,
    ) -> Result<(), EmuError> {
        match *loc {
            Loc::Mem(p) if force_lock || self.instr.has_lock_prefix() => {
                self.phys_cmpxchg(&p, &old.to_le_bytes(), &new.to_le_bytes())
            }
            _ => self.write_loc(loc, len, new),
        }
    }

    /// Reads operand `op` of `len` bytes (register, memory or immediate).
    pub(crate) fn read_op(&mut self, op: u32, len: usize) -> Result<u64, EmuError> {
        match self.instr.op_kind(op) {
            OpKind::Register => {
                let reg = self.instr.op_register(op);
                if !reg.is_gpr() {
                    return Err(self.unsupported());
                }
                let (index, high) = gpr_index(reg);
                Ok(self.read_gpr(index, high, len))
            }
            OpKind::Memory => {
                let loc = self.resolve_op(op, len, false)?;
                self.read_loc(&loc, len)
            }
            OpKind::Immediate8
            | OpKind::Immediate8_2nd
            | OpKind::Immediate16
            | OpKind::Immediate32
            | OpKind::Immediate64
            | OpKind::Immediate8to16
            | OpKind::Immediate8to32
            | OpKind::Immediate8to64
            | OpKind::Immediate32to64 => Ok(self.instr.immediate(op) & alu::mask(len)),
            _ => Err(self.unsupported()),
        }
    }

    /// Rejects a LOCK prefix on an instruction that does not allow one, or
    /// on a register destination (#UD, as hardware does).
    pub(crate) fn check_lock(&self, lockable: bool) -> Result<(), EmuError> {
        if self.instr.has_lock_prefix() && (!lockable || self.instr.op0_kind() != OpKind::Memory) {
            return Err(Exception::ud().into());
        }
        Ok(())
    }

    /// Stack address-size mask and the stack pointer width.
    pub(crate) fn stack_size(&mut self) -> usize {
        match self.mode {
            Mode::Long64 => 8,
            _ if self.cpu.segment(SegReg::Ss).big() => 4,
            _ => 2,
        }
    }
}

/// Maps an iced general register to (index, is-high-byte).
pub(crate) fn gpr_index(r: Register) -> (usize, bool) {
    match r {
        Register::AH => (0, true),
        Register::CH => (1, true),
        Register::DH => (2, true),
        Register::BH => (3, true),
        _ => (
            (r.full_register() as usize).wrapping_sub(Register::RAX as usize) & 15,
            false,
        ),
    }
}

/// Maps an iced segment register to ours.
pub(crate) fn seg_of(r: Register) -> SegReg {
    match r {
        Register::ES => SegReg::Es,
        Register::CS => SegReg::Cs,
        Register::SS => SegReg::Ss,
        Register::FS => SegReg::Fs,
        Register::GS => SegReg::Gs,
        _ => SegReg::Ds,
    }
}
