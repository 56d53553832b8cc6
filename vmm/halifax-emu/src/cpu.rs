//! Guest CPU state as the emulator sees it: the [`Cpu`] trait, a plain
//! [`CpuState`] that implements it, segment descriptors and the architectural
//! bit constants the emulator reads.
//!
//! This module owns no behaviour beyond deriving the execution mode and CPL
//! from the state; it must not touch memory.

/// RFLAGS bits the emulator reads or writes.
pub mod rflags {
    /// Carry flag.
    pub const CF: u64 = 1 << 0;
    /// Parity flag.
    pub const PF: u64 = 1 << 2;
    /// Auxiliary carry flag.
    pub const AF: u64 = 1 << 4;
    /// Zero flag.
    pub const ZF: u64 = 1 << 6;
    /// Sign flag.
    pub const SF: u64 = 1 << 7;
    /// Trap flag.
    pub const TF: u64 = 1 << 8;
    /// Interrupt enable flag.
    pub const IF: u64 = 1 << 9;
    /// Direction flag.
    pub const DF: u64 = 1 << 10;
    /// Overflow flag.
    pub const OF: u64 = 1 << 11;
    /// I/O privilege level (two bits).
    pub const IOPL: u64 = 3 << 12;
    /// Virtual-8086 mode.
    pub const VM: u64 = 1 << 17;
    /// Alignment check / SMAP override.
    pub const AC: u64 = 1 << 18;
    /// The six arithmetic status flags.
    pub const STATUS: u64 = CF | PF | AF | ZF | SF | OF;
}

/// Control-register and EFER bits the emulator reads.
pub mod ctrl {
    /// CR0: protection enable.
    pub const CR0_PE: u64 = 1 << 0;
    /// CR0: x87 emulation (SSE instructions raise #UD).
    pub const CR0_EM: u64 = 1 << 2;
    /// CR0: task switched (SSE instructions raise #NM).
    pub const CR0_TS: u64 = 1 << 3;
    /// CR0: supervisor write protect.
    pub const CR0_WP: u64 = 1 << 16;
    /// CR0: alignment mask.
    pub const CR0_AM: u64 = 1 << 18;
    /// CR0: paging.
    pub const CR0_PG: u64 = 1 << 31;
    /// CR4: page size extensions (4 MiB pages in 32-bit paging).
    pub const CR4_PSE: u64 = 1 << 4;
    /// CR4: physical address extension.
    pub const CR4_PAE: u64 = 1 << 5;
    /// CR4: FXSAVE/SSE enabled by the OS.
    pub const CR4_OSFXSR: u64 = 1 << 9;
    /// CR4: 5-level paging.
    pub const CR4_LA57: u64 = 1 << 12;
    /// CR4: XSAVE enabled (required for VEX instructions).
    pub const CR4_OSXSAVE: u64 = 1 << 18;
    /// CR4: supervisor-mode execution prevention.
    pub const CR4_SMEP: u64 = 1 << 20;
    /// CR4: supervisor-mode access prevention.
    pub const CR4_SMAP: u64 = 1 << 21;
    /// EFER: long mode enabled.
    pub const EFER_LME: u64 = 1 << 8;
    /// EFER: long mode active.
    pub const EFER_LMA: u64 = 1 << 10;
    /// EFER: no-execute enable.
    pub const EFER_NXE: u64 = 1 << 11;
}

/// A segment register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegReg {
    /// ES.
    Es = 0,
    /// CS.
    Cs = 1,
    /// SS.
    Ss = 2,
    /// DS.
    Ds = 3,
    /// FS.
    Fs = 4,
    /// GS.
    Gs = 5,
}

/// A segment register's hidden part, in the VMX access-rights layout:
/// bits 0-3 type, 4 S, 5-6 DPL, 7 P, 12 AVL, 13 L, 14 D/B, 15 G.
/// `limit` is already scaled by G (a byte limit), as VMX and SVM store it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Segment {
    /// Selector (informational; the emulator never loads descriptors).
    pub selector: u16,
    /// Base address.
    pub base: u64,
    /// Byte-granular limit.
    pub limit: u32,
    /// Access rights (VMX layout).
    pub attributes: u16,
}

impl Segment {
    /// A present, writable, accessed data segment (type 3), DPL 0, 32-bit, 4 GiB.
    pub const FLAT_DATA: Segment = Segment {
        selector: 0x10,
        base: 0,
        limit: 0xffff_ffff,
        attributes: 0xc093,
    };
    /// A present 64-bit code segment (L=1), DPL 0.
    pub const CODE64: Segment = Segment {
        selector: 0x08,
        base: 0,
        limit: 0xffff_ffff,
        attributes: 0xa09b,
    };
    /// A present 32-bit code segment (D=1), DPL 0.
    pub const CODE32: Segment = Segment {
        selector: 0x08,
        base: 0,
        limit: 0xffff_ffff,
        attributes: 0xc09b,
    };

    /// A real-mode segment for `selector` (base = selector * 16, 64 KiB limit).
    pub const fn real_mode(selector: u16) -> Segment {
        Segment {
            selector,
            base: (selector as u64) << 4,
            limit: 0xffff,
            attributes: 0x0093,
        }
    }

    /// Descriptor type field (bits 0-3).
    pub const fn kind(&self) -> u16 {
        self.attributes & 0xf
    }
    /// Descriptor privilege level.
    pub const fn dpl(&self) -> u8 {
        ((self.attributes >> 5) & 3) as u8
    }
    /// Present bit.
    pub const fn present(&self) -> bool {
        self.attributes & 0x80 != 0
    }
    /// Code/data (S=1) rather than system descriptor.
    pub const fn is_code_or_data(&self) -> bool {
        self.attributes & 0x10 != 0
    }
    /// Code segment (type bit 3).
    pub const fn is_code(&self) -> bool {
        self.attributes & 0x8 != 0
    }
    /// 64-bit code segment (L bit).
    pub const fn long(&self) -> bool {
        self.attributes & 0x2000 != 0
    }
    /// Default operand size / big bit (D/B).
    pub const fn big(&self) -> bool {
        self.attributes & 0x4000 != 0
    }
}

/// The CPU's execution mode, derived from CR0, EFER, RFLAGS and CS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Real-address mode (CR0.PE = 0).
    Real,
    /// Virtual-8086 mode (RFLAGS.VM = 1).
    Virtual8086,
    /// Protected mode or compatibility mode with 16-bit code.
    Protected16,
    /// Protected mode or compatibility mode with 32-bit code.
    Protected32,
    /// 64-bit mode (EFER.LMA = 1 and CS.L = 1).
    Long64,
}

impl Mode {
    /// Default code size in bits for the decoder.
    pub const fn bitness(self) -> u32 {
        match self {
            Mode::Real | Mode::Virtual8086 | Mode::Protected16 => 16,
            Mode::Protected32 => 32,
            Mode::Long64 => 64,
        }
    }
}

/// The guest CPU state the emulator reads and writes.
///
/// Getters take `&mut self` so that a VMM can fetch registers lazily from the
/// hypervisor on first use. General registers are indexed 0..16 in the
/// encoding order RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8..R15.
pub trait Cpu {
    /// General register `index` (0..16).
    fn gpr(&mut self, index: usize) -> u64;
    /// Sets general register `index` (0..16) to `value`.
    fn set_gpr(&mut self, index: usize, value: u64);
    /// Instruction pointer.
    fn rip(&mut self) -> u64;
    /// Sets the instruction pointer.
    fn set_rip(&mut self, value: u64);
    /// RFLAGS.
    fn rflags(&mut self) -> u64;
    /// Sets RFLAGS.
    fn set_rflags(&mut self, value: u64);
    /// A segment register's hidden part.
    fn segment(&mut self, seg: SegReg) -> Segment;
    /// CR0.
    fn cr0(&mut self) -> u64;
    /// CR3.
    fn cr3(&mut self) -> u64;
    /// CR4.
    fn cr4(&mut self) -> u64;
    /// IA32_EFER.
    fn efer(&mut self) -> u64;
    /// Low 128 bits of vector register `index` (0..16).
    fn xmm(&mut self, index: usize) -> u128;
    /// Sets the low 128 bits of vector register `index`.
    fn set_xmm(&mut self, index: usize, value: u128);
    /// Bits 128..256 of vector register `index` (YMM upper half).
    fn ymm_high(&mut self, index: usize) -> u128;
    /// Sets bits 128..256 of vector register `index`.
    fn set_ymm_high(&mut self, index: usize, value: u128);

    /// The execution mode, derived from CR0.PE, RFLAGS.VM, EFER.LMA and CS.
    fn mode(&mut self) -> Mode {
        if self.cr0() & ctrl::CR0_PE == 0 {
            return Mode::Real;
        }
        if self.rflags() & rflags::VM != 0 {
            return Mode::Virtual8086;
        }
        let cs = self.segment(SegReg::Cs);
        if self.efer() & ctrl::EFER_LMA != 0 && cs.long() {
            Mode::Long64
        } else if cs.big() {
            Mode::Protected32
        } else {
            Mode::Protected16
        }
    }

    /// Current privilege level: SS.DPL in protected mode (as VMX defines it),
    /// 0 in real mode, 3 in virtual-8086 mode.
    fn cpl(&mut self) -> u8 {
        match self.mode() {
            Mode::Real => 0,
            Mode::Virtual8086 => 3,
            _ => self.segment(SegReg::Ss).dpl(),
        }
    }
}

/// A plain CPU state that implements [`Cpu`]; handy for VMMs that copy the
/// whole state in and out, and for tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuState {
    /// General registers in encoding order.
    pub gpr: [u64; 16],
    /// Instruction pointer.
    pub rip: u64,
    /// RFLAGS.
    pub rflags: u64,
    /// ES, CS, SS, DS, FS, GS (indexed by [`SegReg`]).
    pub segs: [Segment; 6],
    /// CR0.
    pub cr0: u64,
    /// CR3.
    pub cr3: u64,
    /// CR4.
    pub cr4: u64,
    /// IA32_EFER.
    pub efer: u64,
    /// XMM registers (low halves of YMM).
    pub xmm: [u128; 16],
    /// YMM upper halves.
    pub ymm_high: [u128; 16],
}

impl CpuState {
    /// A 64-bit mode state with 4-level paging rooted at `cr3`, CPL 0, flat segments.
    pub fn long_mode(cr3: u64) -> CpuState {
        let mut s = CpuState::real_mode();
        s.segs = [Segment::FLAT_DATA; 6];
        s.segs[SegReg::Cs as usize] = Segment::CODE64;
        s.cr0 = ctrl::CR0_PE | ctrl::CR0_PG | ctrl::CR0_WP | (1 << 4);
        s.cr3 = cr3;
        s.cr4 = ctrl::CR4_PAE | ctrl::CR4_OSFXSR | ctrl::CR4_OSXSAVE;
        s.efer = ctrl::EFER_LME | ctrl::EFER_LMA | ctrl::EFER_NXE;
        s
    }

    /// A 32-bit protected-mode state without paging, CPL 0, flat segments.
    pub fn protected_mode() -> CpuState {
        let mut s = CpuState::real_mode();
        s.segs = [Segment::FLAT_DATA; 6];
        s.segs[SegReg::Cs as usize] = Segment::CODE32;
        s.cr0 = ctrl::CR0_PE | (1 << 4);
        s.cr4 = ctrl::CR4_OSFXSR;
        s
    }

    /// The reset-like real-mode state: all segments 0, RFLAGS = 2.
    pub fn real_mode() -> CpuState {
        CpuState {
            gpr: [0; 16],
            rip: 0,
            rflags: 2,
            segs: [Segment::real_mode(0); 6],
            cr0: 1 << 4,
            cr3: 0,
            cr4: 0,
            efer: 0,
            xmm: [0; 16],
            ymm_high: [0; 16],
        }
    }
}

impl Cpu for CpuState {
    fn gpr(&mut self, index: usize) -> u64 {
        self.gpr[index & 15]
    }
    fn set_gpr(&mut self, index: usize, value: u64) {
        self.gpr[index & 15] = value;
    }
    fn rip(&mut self) -> u64 {
        self.rip
    }
    fn set_rip(&mut self, value: u64) {
        self.rip = value;
    }
    fn rflags(&mut self) -> u64 {
        self.rflags
    }
    fn set_rflags(&mut self, value: u64) {
        self.rflags = value;
    }
    fn segment(&mut self, seg: SegReg) -> Segment {
        self.segs[seg as usize]
    }
    fn cr0(&mut self) -> u64 {
        self.cr0
    }
    fn cr3(&mut self) -> u64 {
        self.cr3
    }
    fn cr4(&mut self) -> u64 {
        self.cr4
    }
    fn efer(&mut self) -> u64 {
        self.efer
    }
    fn xmm(&mut self, index: usize) -> u128 {
        self.xmm[index & 15]
    }
    fn set_xmm(&mut self, index: usize, value: u128) {
        self.xmm[index & 15] = value;
    }
    fn ymm_high(&mut self, index: usize) -> u128 {
        self.ymm_high[index & 15]
    }
    fn set_ymm_high(&mut self, index: usize, value: u128) {
        self.ymm_high[index & 15] = value;
    }
}
