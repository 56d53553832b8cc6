//! Random test-case generator: every covered instruction form (an iced
//! `Code`) becomes a template; a case picks a template, random operands
//! (registers, a memory operand aimed into the scratch buffer with random
//! base/index/scale/displacement and 64- or 32-bit addressing, immediates),
//! optional LOCK and segment prefixes, and random register/flag values.

use crate::native::NativeState;
use iced_x86::{
    Code, Decoder, DecoderOptions, Encoder, EncodingKind, Instruction, MemoryOperand,
    Mnemonic as Mn, OpCodeOperandKind as K, OpKind, Register,
};

/// Small deterministic PRNG (xorshift64*), so a seed reproduces a campaign.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed` (0 is remapped).
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15 | 1)
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    /// True with probability `num/den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }
    /// A value biased towards edge cases (0, all ones, sign bits, small).
    pub fn value(&mut self) -> u64 {
        match self.below(8) {
            0 => 0,
            1 => u64::MAX,
            2 => 1u64 << self.below(64),
            3 => (1u64 << self.below(64)).wrapping_sub(1),
            4 => self.below(256),
            5 => (self.next_u64() as i8) as i64 as u64,
            _ => self.next_u64(),
        }
    }
}

/// Scratch buffer geometry: memory operands land in the middle part, so
/// displacements, bit offsets, stack and string movement stay inside.
pub const SCRATCH_LEN: u64 = 0x10000;
const TARGET_LO: u64 = 0x5000;
const TARGET_HI: u64 = 0xb000;

/// One generated case.
#[derive(Clone, Debug)]
pub struct Case {
    /// Encoded instruction.
    pub bytes: Vec<u8>,
    /// Registers and flags before.
    pub state: NativeState,
}

/// An instruction form the generator can produce.
#[derive(Clone, Copy, Debug)]
pub struct Template {
    /// iced code.
    pub code: Code,
    /// Hand-encoded string instruction (opcode, element size) instead of a code.
    pub string: Option<(u8, u8)>,
}

const COVERED: &[Mn] = &[
    Mn::Mov,
    Mn::Movzx,
    Mn::Movsx,
    Mn::Movsxd,
    Mn::Movbe,
    Mn::Movnti,
    Mn::Add,
    Mn::Adc,
    Mn::Sub,
    Mn::Sbb,
    Mn::And,
    Mn::Or,
    Mn::Xor,
    Mn::Cmp,
    Mn::Test,
    Mn::Inc,
    Mn::Dec,
    Mn::Neg,
    Mn::Not,
    Mn::Shl,
    Mn::Sal,
    Mn::Shr,
    Mn::Sar,
    Mn::Rol,
    Mn::Ror,
    Mn::Rcl,
    Mn::Rcr,
    Mn::Shld,
    Mn::Shrd,
    Mn::Bt,
    Mn::Bts,
    Mn::Btr,
    Mn::Btc,
    Mn::Xchg,
    Mn::Cmpxchg,
    Mn::Cmpxchg8b,
    Mn::Cmpxchg16b,
    Mn::Xadd,
    Mn::Push,
    Mn::Pop,
    Mn::Lea,
    Mn::Seto,
    Mn::Setno,
    Mn::Setb,
    Mn::Setae,
    Mn::Sete,
    Mn::Setne,
    Mn::Setbe,
    Mn::Seta,
    Mn::Sets,
    Mn::Setns,
    Mn::Setp,
    Mn::Setnp,
    Mn::Setl,
    Mn::Setge,
    Mn::Setle,
    Mn::Setg,
    Mn::Cmovo,
    Mn::Cmovno,
    Mn::Cmovb,
    Mn::Cmovae,
    Mn::Cmove,
    Mn::Cmovne,
    Mn::Cmovbe,
    Mn::Cmova,
    Mn::Cmovs,
    Mn::Cmovns,
    Mn::Cmovp,
    Mn::Cmovnp,
    Mn::Cmovl,
    Mn::Cmovge,
    Mn::Cmovle,
    Mn::Cmovg,
    Mn::Movd,
    Mn::Movq,
    Mn::Movdqa,
    Mn::Movdqu,
    Mn::Movaps,
    Mn::Movups,
    Mn::Movapd,
    Mn::Movupd,
    Mn::Movntdq,
    Mn::Movntps,
    Mn::Movntpd,
    Mn::Lddqu,
    Mn::Movntdqa,
    Mn::Vmovd,
    Mn::Vmovq,
    Mn::Vmovdqa,
    Mn::Vmovdqu,
    Mn::Vmovaps,
    Mn::Vmovups,
    Mn::Vmovapd,
    Mn::Vmovupd,
    Mn::Vmovntdq,
    Mn::Vmovntps,
    Mn::Vmovntpd,
    Mn::Vlddqu,
    Mn::Vmovntdqa,
];

fn supported_kind(k: K) -> bool {
    matches!(
        k,
        K::r8_or_mem
            | K::r16_or_mem
            | K::r32_or_mem
            | K::r64_or_mem
            | K::xmm_or_mem
            | K::ymm_or_mem
            | K::mem
            | K::mem_offs
            | K::r8_reg
            | K::r8_opcode
            | K::r16_reg
            | K::r16_opcode
            | K::r32_reg
            | K::r32_opcode
            | K::r64_reg
            | K::r64_opcode
            | K::xmm_reg
            | K::ymm_reg
            | K::xmm_rm
            | K::ymm_rm
            | K::r16_rm
            | K::r32_rm
            | K::r64_rm
            | K::al
            | K::ax
            | K::eax
            | K::rax
            | K::cl
            | K::imm8
            | K::imm8_const_1
            | K::imm8sex16
            | K::imm8sex32
            | K::imm8sex64
            | K::imm16
            | K::imm32
            | K::imm32sex64
            | K::imm64
    )
}

/// All templates usable on this host.
pub fn templates() -> Vec<Template> {
    let avx = std::arch::is_x86_feature_detected!("avx");
    let movbe = std::arch::is_x86_feature_detected!("movbe");
    let sse41 = std::arch::is_x86_feature_detected!("sse4.1");
    let cx16 = std::arch::is_x86_feature_detected!("cmpxchg16b");
    let mut out = Vec::new();
    for code in Code::values() {
        let oc = code.op_code();
        if !oc.is_instruction() || !oc.mode64() || !COVERED.contains(&code.mnemonic()) {
            continue;
        }
        match oc.encoding() {
            EncodingKind::Legacy => {}
            EncodingKind::VEX if avx => {}
            _ => continue,
        }
        if !oc.op_kinds().iter().all(|k| supported_kind(*k)) {
            continue;
        }
        let mn = code.mnemonic();
        if (mn == Mn::Movbe && !movbe)
            || (mn == Mn::Movntdqa && !sse41)
            || (mn == Mn::Cmpxchg16b && !cx16)
            || matches!(
                code,
                Code::Cmpxchg486_rm8_r8 | Code::Cmpxchg486_rm16_r16 | Code::Cmpxchg486_rm32_r32
            )
        {
            continue;
        }
        out.push(Template { code, string: None });
    }
    // String instructions, hand-encoded: (opcode, element size).
    for op in [0xa4u8, 0xa6, 0xaa, 0xac, 0xae] {
        for size in [1u8, 2, 4, 8] {
            out.push(Template {
                code: Code::INVALID,
                string: Some((op + (size > 1) as u8, size)),
            });
        }
    }
    out
}

/// Randomly chosen operand.
enum Opnd {
    Reg(Register),
    Mem(MemoryOperand),
    Imm32(i32),
    Imm64(u64),
}

fn gpr(width: usize, idx: usize) -> Register {
    let base = match width {
        1 => Register::AL,
        2 => Register::AX,
        4 => Register::EAX,
        _ => Register::RAX,
    };
    // iced orders byte registers AL..BL, AH..BH, SPL..DIL, R8L..R15L.
    let r = if width == 1 && idx >= 4 {
        base as usize + idx + 4
    } else {
        base as usize + idx
    };
    Register::values().nth(r).unwrap()
}

struct Builder<'a> {
    rng: &'a mut Rng,
    scratch: u64,
    state: NativeState,
    /// Registers whose values are pinned by addressing.
    pinned: [bool; 16],
}

impl Builder<'_> {
    fn reg(&mut self, width: usize) -> Register {
        if width == 1 && self.rng.chance(1, 4) {
            return [Register::AH, Register::CH, Register::DH, Register::BH]
                [self.rng.below(4) as usize];
        }
        let i = self.rng.below(16) as usize;
        // Avoid RSP as a data register: the stack must stay in scratch.
        let i = if i == 4 { 0 } else { i };
        gpr(width, i)
    }

    fn target(&mut self, align: u64) -> u64 {
        let t = self.scratch + TARGET_LO + self.rng.below(TARGET_HI - TARGET_LO);
        if align > 1 || self.rng.chance(1, 2) {
            t & !(align.max(1) - 1)
        } else {
            t
        }
    }

    /// A memory operand hitting scratch, pinning the address registers.
    fn mem(&mut self, align: u64) -> MemoryOperand {
        let t = self.target(align);
        let seg = match self.rng.below(8) {
            0 => Register::ES,
            1 => Register::CS,
            2 => Register::SS,
            3 => Register::DS,
            _ => Register::None,
        };
        if self.rng.chance(1, 8) {
            return MemoryOperand::new(Register::RIP, Register::None, 1, t as i64, 8, false, seg);
        }
        let addr32 = self.rng.chance(1, 3);
        let width = if addr32 { 4 } else { 8 };
        let pick = |s: &mut Self, allow_rsp: bool| loop {
            let i = s.rng.below(16) as usize;
            if (i != 4 || allow_rsp) && !s.pinned[i] {
                return i;
            }
        };
        let base = pick(self, true);
        self.pinned[base] = true;
        let with_index = self.rng.chance(1, 2);
        let index = if with_index {
            Some(pick(self, false))
        } else {
            None
        };
        let scale = 1u32 << self.rng.below(4);
        let disp: i64 = match self.rng.below(3) {
            0 => 0,
            1 => (self.rng.below(256) as i64) - 128,
            _ => (self.rng.below(0x2000) as i64) - 0x1000,
        };
        let mut rest = t as i64 - disp;
        if let Some(ix) = index {
            self.pinned[ix] = true;
            let iv = self.rng.below(64);
            rest -= (iv * scale as u64) as i64;
            let upper = if addr32 { self.rng.next_u64() << 32 } else { 0 };
            self.state.gpr[ix] = iv | upper;
        }
        let upper = if addr32 && base != 4 {
            self.rng.next_u64() << 32
        } else {
            0
        };
        self.state.gpr[base] = (rest as u64 & if addr32 { 0xffff_ffff } else { u64::MAX }) | upper;
        let displ_size = if disp == 0 && self.rng.chance(1, 2) {
            0
        } else if (-128..128).contains(&disp) {
            1
        } else {
            4
        };
        MemoryOperand::new(
            gpr(width, base),
            index.map(|i| gpr(width, i)).unwrap_or(Register::None),
            if index.is_some() { scale } else { 1 },
            disp,
            displ_size,
            false,
            seg,
        )
    }
}

/// Alignment a memory operand of this form needs.
fn alignment(code: Code) -> u64 {
    let name = format!("{code:?}").to_lowercase();
    let aligned = name.contains("movdqa")
        || name.contains("movap")
        || (name.contains("movnt") && !name.contains("movnti"));
    if code == Code::Cmpxchg16b_m128 {
        16
    } else if aligned && name.contains("ymm") {
        32
    } else if aligned {
        16
    } else {
        1
    }
}

/// Generates one case from `t`.
pub fn generate(rng: &mut Rng, t: &Template, scratch: u64, ip: u64) -> Option<Case> {
    let mut state = NativeState::default();
    for r in state.gpr.iter_mut() {
        *r = rng.value();
    }
    for y in state.ymm.iter_mut() {
        for q in y.iter_mut() {
            *q = rng.next_u64();
        }
    }
    let status = 0x8d5;
    state.rflags = 2 | (rng.next_u64() & status) | if rng.chance(1, 4) { 0x400 } else { 0 };
    let mut b = Builder {
        rng,
        scratch,
        state,
        pinned: [false; 16],
    };
    // RSP points into scratch, 16-byte aligned.
    b.state.gpr[4] = scratch + 0x8000 - 16 * b.rng.below(64);

    if let Some((op, size)) = t.string {
        return Some(string_case(&mut b, op, size));
    }
    let code = t.code;
    let oc = code.op_code();
    let kinds = oc.op_kinds();
    let mut ops: Vec<Opnd> = Vec::new();
    let mut use_mem = b.rng.chance(7, 8);
    for &k in kinds {
        let o = match k {
            K::r8_or_mem
            | K::r16_or_mem
            | K::r32_or_mem
            | K::r64_or_mem
            | K::xmm_or_mem
            | K::ymm_or_mem
                if !use_mem =>
            {
                match k {
                    K::xmm_or_mem => Opnd::Reg(xmm(b.rng)),
                    K::ymm_or_mem => Opnd::Reg(ymm(b.rng)),
                    K::r8_or_mem => Opnd::Reg(b.reg(1)),
                    K::r16_or_mem => Opnd::Reg(b.reg(2)),
                    K::r32_or_mem => Opnd::Reg(b.reg(4)),
                    _ => Opnd::Reg(b.reg(8)),
                }
            }
            K::r8_or_mem
            | K::r16_or_mem
            | K::r32_or_mem
            | K::r64_or_mem
            | K::xmm_or_mem
            | K::ymm_or_mem
            | K::mem => {
                use_mem = false;
                Opnd::Mem(b.mem(alignment(code)))
            }
            K::mem_offs => {
                let t = b.target(1);
                if b.rng.chance(1, 2) {
                    Opnd::Mem(MemoryOperand::new(
                        Register::None,
                        Register::None,
                        1,
                        t as i64,
                        8,
                        false,
                        Register::None,
                    ))
                } else {
                    Opnd::Mem(MemoryOperand::new(
                        Register::None,
                        Register::None,
                        1,
                        t as i64,
                        4,
                        false,
                        Register::None,
                    ))
                }
            }
            K::r8_reg | K::r8_opcode => Opnd::Reg(b.reg(1)),
            K::r16_reg | K::r16_opcode | K::r16_rm => Opnd::Reg(b.reg(2)),
            K::r32_reg | K::r32_opcode | K::r32_rm => Opnd::Reg(b.reg(4)),
            K::r64_reg | K::r64_opcode | K::r64_rm => Opnd::Reg(b.reg(8)),
            K::xmm_reg | K::xmm_rm => Opnd::Reg(xmm(b.rng)),
            K::ymm_reg | K::ymm_rm => Opnd::Reg(ymm(b.rng)),
            K::al => Opnd::Reg(Register::AL),
            K::ax => Opnd::Reg(Register::AX),
            K::eax => Opnd::Reg(Register::EAX),
            K::rax => Opnd::Reg(Register::RAX),
            K::cl => Opnd::Reg(Register::CL),
            K::imm8_const_1 => Opnd::Imm32(1),
            K::imm8 => Opnd::Imm32(b.rng.below(256) as u8 as i32),
            K::imm8sex16 | K::imm8sex32 | K::imm8sex64 => {
                Opnd::Imm32(b.rng.next_u64() as i8 as i32)
            }
            K::imm16 => Opnd::Imm32(b.rng.next_u64() as u16 as i32),
            K::imm32 | K::imm32sex64 => Opnd::Imm32(b.rng.value() as i32),
            K::imm64 => Opnd::Imm64(b.rng.value()),
            _ => return None,
        };
        ops.push(o);
    }
    let mut ins = build(code, &ops)?;
    let mn = code.mnemonic();
    let has_mem = ops.iter().any(|o| matches!(o, Opnd::Mem(_)));
    if has_mem
        && oc.can_use_lock_prefix()
        && kinds.first().is_some_and(|k| !matches!(k, K::mem_offs))
        && b.rng.chance(1, 3)
    {
        ins.set_has_lock_prefix(true);
    }
    // Keep bit-string offsets inside scratch; keep SHLD/SHRD counts defined.
    let state = &mut b.state;
    if !fix_operands(&ins, mn, state, b.rng) {
        return None;
    }
    let mut enc = Encoder::new(64);
    enc.encode(&ins, ip).ok()?;
    let bytes = enc.take_buffer();
    Some(Case {
        bytes,
        state: b.state,
    })
}

/// Adjusts values an operand needs to be safe and defined; false if the
/// combination cannot be made so (the case is dropped).
fn fix_operands(ins: &Instruction, mn: Mn, state: &mut NativeState, rng: &mut Rng) -> bool {
    let size = if ins.op0_kind() == OpKind::Memory {
        ins.memory_size().size()
    } else {
        ins.op0_register().size()
    };
    if matches!(mn, Mn::Bt | Mn::Bts | Mn::Btr | Mn::Btc)
        && ins.op0_kind() == OpKind::Memory
        && ins.op1_kind() == OpKind::Register
    {
        let r = ins.op1_register();
        let idx = r.full_register() as usize - Register::RAX as usize;
        let pinned_by_addr = ins.memory_base().full_register() == r.full_register()
            || ins.memory_index().full_register() == r.full_register();
        if pinned_by_addr || r.size() == 1 {
            return false;
        }
        let off = (rng.below(0x4000) as i64 - 0x2000) as u64;
        let keep = !halifax_emu::alu::mask(size);
        state.gpr[idx] = (state.gpr[idx] & keep) | (off & halifax_emu::alu::mask(size));
    }
    if matches!(mn, Mn::Shld | Mn::Shrd) && size == 2 {
        if ins.op2_kind() == OpKind::Register {
            state.gpr[1] = (state.gpr[1] & !0xff) | rng.below(17);
        } else if ins.immediate(2) & 31 > 16 {
            return false;
        }
    }
    true
}

fn xmm(rng: &mut Rng) -> Register {
    Register::values()
        .nth(Register::XMM0 as usize + rng.below(16) as usize)
        .unwrap()
}

fn ymm(rng: &mut Rng) -> Register {
    Register::values()
        .nth(Register::YMM0 as usize + rng.below(16) as usize)
        .unwrap()
}

fn build(code: Code, ops: &[Opnd]) -> Option<Instruction> {
    use Opnd::*;
    let r = match ops {
        [] => Ok(Instruction::with(code)),
        [Reg(a)] => Instruction::with1(code, *a),
        [Mem(a)] => Instruction::with1(code, *a),
        [Reg(a), Reg(b)] => Instruction::with2(code, *a, *b),
        [Reg(a), Mem(b)] => Instruction::with2(code, *a, *b),
        [Mem(a), Reg(b)] => Instruction::with2(code, *a, *b),
        [Reg(a), Imm32(b)] => Instruction::with2(code, *a, *b),
        [Mem(a), Imm32(b)] => Instruction::with2(code, *a, *b),
        [Reg(a), Imm64(b)] => Instruction::with2(code, *a, *b),
        [Reg(a), Reg(b), Imm32(c)] => Instruction::with3(code, *a, *b, *c),
        [Mem(a), Reg(b), Imm32(c)] => Instruction::with3(code, *a, *b, *c),
        [Reg(a), Reg(b), Reg(c)] => Instruction::with3(code, *a, *b, *c),
        [Mem(a), Reg(b), Reg(c)] => Instruction::with3(code, *a, *b, *c),
        _ => return None,
    };
    r.ok()
}

fn string_case(b: &mut Builder<'_>, op: u8, size: u8) -> Case {
    let mut bytes = Vec::new();
    let addr32 = b.rng.chance(1, 3);
    if b.rng.chance(1, 4) {
        bytes.push([0x26, 0x2e, 0x36, 0x3e][b.rng.below(4) as usize]);
    }
    if size == 2 {
        bytes.push(0x66);
    }
    if addr32 {
        bytes.push(0x67);
    }
    let rep = b.rng.below(3);
    if rep == 1 {
        bytes.push(0xf3);
    } else if rep == 2 {
        bytes.push(0xf2);
    }
    if size == 8 {
        bytes.push(0x48);
    }
    bytes.push(op);
    let upper = |rng: &mut Rng| if addr32 { rng.next_u64() << 32 } else { 0 };
    let rsi = b.scratch + 0x6000 + b.rng.below(0x4000);
    let rdi = b.scratch + 0x6000 + b.rng.below(0x4000);
    b.state.gpr[6] = (rsi & 0xffff_ffff)
        | if addr32 {
            upper(b.rng)
        } else {
            rsi & !0xffff_ffff
        };
    b.state.gpr[7] = (rdi & 0xffff_ffff)
        | if addr32 {
            upper(b.rng)
        } else {
            rdi & !0xffff_ffff
        };
    if rep != 0 {
        b.state.gpr[1] = b.rng.below(24) | upper(b.rng);
    }
    // Make CMPS/SCAS hit equal elements sometimes.
    if b.rng.chance(1, 2) {
        b.state.gpr[0] &= 0xff;
    }
    Case {
        bytes,
        state: b.state,
    }
}

/// Flags the SDM leaves undefined for this instruction with these inputs.
pub fn undefined_flags(bytes: &[u8], state: &NativeState) -> u64 {
    const CF: u64 = 1;
    const AF: u64 = 0x10;
    const OF: u64 = 0x800;
    const PF: u64 = 4;
    const SF: u64 = 0x80;
    let mut d = Decoder::with_ip(64, bytes, 0, DecoderOptions::NONE);
    let ins = d.decode();
    let size = if ins.op0_kind() == OpKind::Memory {
        ins.memory_size().size()
    } else {
        ins.op0_register().size()
    };
    let count = |ins: &Instruction, op: u32| -> u64 {
        let raw = match ins.op_kind(op) {
            OpKind::Register => state.gpr[1] & 0xff,
            _ => ins.immediate(op),
        };
        raw & if size == 8 { 0x3f } else { 0x1f }
    };
    match ins.mnemonic() {
        Mn::And | Mn::Or | Mn::Xor | Mn::Test => AF,
        Mn::Shl | Mn::Sal | Mn::Shr | Mn::Sar => {
            let c = count(&ins, 1);
            let mut u = 0;
            if c != 0 {
                u |= AF;
                if c != 1 {
                    u |= OF;
                }
                if c >= (size * 8) as u64 && ins.mnemonic() != Mn::Sar {
                    u |= CF;
                }
            }
            u
        }
        Mn::Rol | Mn::Ror | Mn::Rcl | Mn::Rcr if count(&ins, 1) > 1 => OF,
        Mn::Shld | Mn::Shrd => {
            let c = count(&ins, 2);
            let mut u = 0;
            if c != 0 {
                u |= AF;
                if c != 1 {
                    u |= OF;
                }
                if c > (size * 8) as u64 {
                    u |= 0x8d5;
                }
            }
            u
        }
        Mn::Bt | Mn::Bts | Mn::Btr | Mn::Btc => OF | SF | AF | PF,
        _ => 0,
    }
}
