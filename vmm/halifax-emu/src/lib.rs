//! halifax-emu: the x86_64 instruction emulator of the Tern VMM.
//!
//! A VMM calls [`Emulator::step`] when a guest instruction traps on MMIO (a
//! nested page fault) or on string port I/O. The emulator fetches (or takes)
//! the instruction bytes, decodes them with iced-x86, translates every
//! guest-virtual address itself (segmentation, then the page walk of
//! whatever paging mode the guest is in), performs the accesses through the
//! VMM's [`Memory`], and updates the guest's [`Cpu`] state. It is `no_std`,
//! allocation-free and contains no `unsafe`.
//!
//! # Structure
//!
//! | module | owns |
//! |---|---|
//! | [`cpu`] | the [`Cpu`] trait, [`CpuState`], segments, mode and CPL derivation, architectural bit names |
//! | [`memory`] | the [`Memory`] trait: physical reads/writes (RAM or MMIO), compare-and-write, port I/O |
//! | [`paging`] | linear → physical translation for all paging modes, permissions, A/D bits, #PF error codes |
//! | [`error`] | [`EmuError`] and [`Exception`] (vector, error code, CR2) |
//! | `exec` | fetch/decode, segmentation and operand helpers, the per-step TLB, dispatch |
//! | `exec::alu` | pure flag arithmetic (add/sub/logic/shift/rotate, condition codes) |
//! | `exec::ops` | integer instructions (MOV…PUSH/POP) and the mnemonic dispatch |
//! | `exec::string` | MOVS/STOS/LODS/CMPS/SCAS/INS/OUTS with REP, interruptible |
//! | `exec::sse` | SSE/AVX moves |
//!
//! # Adding an instruction
//!
//! 1. Add its mnemonic to the `match` in `exec/ops.rs::dispatch` (or a
//!    `Code` to the table in `exec/sse.rs` for a vector move).
//! 2. Write a handler in the group's file: `resolve_op(0, size, writes)`
//!    for the destination, `read_loc`/`read_op` for the sources, compute
//!    (flags via `exec::alu`), then `write_rmw`/`write_loc` to memory
//!    *before* any register write, and set `self.flags`. Call
//!    `check_lock(lockable)` first.
//! 3. Add its mnemonic to `COVERED` in `difftest/src/gen.rs` (the
//!    generator then produces every encoding iced knows for it) and, if
//!    the SDM leaves flags undefined, to `undefined_flags`; run
//!    `cargo test -p halifax-emu --test differential`. Forms the host cannot run in user
//!    mode (port I/O, faults, other CPU modes) get a test in
//!    `tests/emulate.rs`.
//!
//! # Guarantees
//!
//! * A fault leaves the guest state as before the instruction (REP
//!   instructions keep completed iterations, as hardware does).
//! * Bad input yields an error, never a panic; decoding errors are #UD.
//! * A REP instruction does at most [`Emulator::max_rep_iterations`]
//!   elements per call and then returns [`StepOutcome::Interrupted`].

#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cpu;
pub mod error;
mod exec;
pub mod memory;
pub mod paging;

pub use cpu::{Cpu, CpuState, Mode, SegReg, Segment};
pub use error::{EmuError, Exception};
pub use exec::alu;
pub use memory::{Memory, MemoryError};

/// How `step` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOutcome {
    /// The instruction completed; RIP points to the next one.
    Completed,
    /// A REP instruction did its per-step share of iterations; RIP still
    /// points to it. Deliver pending events and call `step` again (or
    /// resume the guest, which re-executes it).
    Interrupted,
}

/// The emulator's configuration. It holds no guest state, so one value can
/// serve every vCPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Emulator {
    /// The guest's MAXPHYADDR (CPUID 0x80000008 EAX[7:0]); paging-entry
    /// bits above it are reserved.
    pub phys_bits: u8,
    /// Maximum REP iterations per `step`.
    pub max_rep_iterations: u32,
}

impl Default for Emulator {
    fn default() -> Self {
        Emulator {
            phys_bits: 48,
            max_rep_iterations: 4096,
        }
    }
}

impl Emulator {
    /// Emulates the instruction at the guest's CS:RIP.
    ///
    /// `bytes` are the instruction bytes if the VMM already has them (from
    /// the exit information); otherwise they are fetched through `mem`
    /// after translating CS:RIP, across a page boundary if need be.
    pub fn step<C: Cpu + ?Sized, M: Memory + ?Sized>(
        &self,
        cpu: &mut C,
        mem: &mut M,
        bytes: Option<&[u8]>,
    ) -> Result<StepOutcome, EmuError> {
        self.run(cpu, mem, bytes)
    }
}
