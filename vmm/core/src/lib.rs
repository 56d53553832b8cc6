//! vmm-core: the backend-agnostic seed of the Tern VMM.
//!
//! It loads a Multiboot v1 ELF guest into guest RAM, starts its vCPUs in
//! 32-bit protected mode and handles their exits through
//! [`vcpu_api::Vcpu::with_state`]: COM1 output, the exit port 0xf4, the test
//! device of the guest-test protocol (`guest-tests/README.md`), CPUID,
//! MSRs, HLT with injected interrupts, interrupt windows, MMIO and string
//! I/O through `halifax-emu`, and limits against hostile guests (exit
//! flood, triple fault, unmapped memory, invalid state), each ending the VM
//! with a clear [`Outcome`]. `no_std` + `alloc`; the host provides RAM
//! ([`GuestMemory`]), threads, time and the console ([`Platform`]).
//!
//! | module | owns |
//! |---|---|
//! | [`loader`] | Multiboot v1 header check, ELF32/ELF64 `PT_LOAD` loading |
//! | [`memory`] | the guest RAM trait |
//! | [`devices`] | COM1, exit port, test device registers |
//! | [`cpuid`], [`msr`] | CPUID and MSR answers |
//! | `emulate` | halifax-emu glue for MMIO and string I/O |
//! | [`instructions`] | control-register accesses and XSETBV on a vCPU state |
//! | `vm` | the VM, the initial state and the exit loop |
//! | [`outcome`] | how a VM ended; exit counters |

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod cpuid;
pub mod devices;
mod emulate;
pub mod instructions;
pub mod loader;
pub mod memory;
pub mod msr;
pub mod outcome;
mod vm;

#[cfg(test)]
mod tests;

pub use cpuid::CpuidResult;
pub use emulate::StateCpu;
pub use loader::{BootImage, LoadError};
pub use memory::{GuestMemory, OutOfRange};
pub use outcome::{ExitCounters, Outcome, PASS_VALUE};
pub use vm::{initial_state, Platform, Vm, VmConfig, BOOT_MAGIC, MAX_VCPUS, SECONDARY_MAGIC};
