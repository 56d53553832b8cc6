//! vmm-pc: the Tern VMM's PC machine.
//!
//! Given a [`Host`](vmm_host::Host) (Linux KVM or Tern) and a checked
//! configuration (`vmm_platform::config::VmConfig`), [`run`] backs guest
//! RAM, loads the guest, wires the devices, starts one handler thread per
//! vCPU and returns how the VM ended with the exit counters. Host-agnostic:
//! it only uses the `Host` trait and `vcpu_api::Vcpu::with_state`.
//!
//! | module | owns |
//! |---|---|
//! | [`memory`] | guest RAM as vm-memory over the host's regions (the crate's only `unsafe`) |
//! | [`boot`] | bzImage + initrd + command line (linux-loader), Multiboot v1, AP start state |
//! | [`devices`] | creating and wiring the configured devices |
//! | [`irq`] | what the exit loop asks the interrupt controllers |
//! | [`machine`] | shared machine state, bus dispatch, exit counters, the VM's end, vCPU threads |
//! | [`milestone`] | boot milestones for benchmarks (`milestones = true`, port 0xE80) |
//! | `vcpu` | the exit loop |
//! | `emulate` | halifax-emu over the machine (MMIO, string I/O) |
//! | [`doorbell`] | waking halted vCPUs |
//! | [`testdev`] | the guest-test device (`test-device = true`) |
//! | [`restart`] | the restart after a guest reset: vCPU rendezvous, reset-loop limit |
//! | [`end`] | how a VM ended, exit status |
//!
pub mod boot;
pub mod devices;
pub mod doorbell;
mod emulate;
pub mod end;
pub mod irq;
pub mod machine;
pub mod memory;
pub mod milestone;
pub mod restart;
pub mod testdev;
mod vcpu;

pub use end::End;
pub use machine::{run, MachineError, Report};

#[cfg(test)]
mod tests;
