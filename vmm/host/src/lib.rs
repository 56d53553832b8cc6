//! vmm-host: the one seam between the VMM and whatever runs its vCPUs.
//!
//! A [`Host`] gives the machine (`vmm-pc`) guest RAM, the CPUID leaves it can
//! virtualize, handler threads for the vCPUs and the vCPU backends
//! themselves. Two implementations, each behind a feature, so the same
//! `tern-vmm` binary runs on both (it picks at start-up):
//!
//! | module | feature | host |
//! |---|---|---|
//! | `kvm` | `kvm` | Linux KVM (`/dev/kvm`), guest RAM is an anonymous mapping |
//! | `tern` | `tern` | the Tern microhypervisor, the VMM being a `kind = "linux"` component |
//!
//! Owns: the [`Host`] contract and its implementations. Must not touch:
//! machine policy (which CPUID bits a guest sees, the memory map, devices).

use std::thread::JoinHandle;

#[cfg(feature = "kvm")]
pub mod kvm;
#[cfg(feature = "tern")]
pub mod tern;

/// One CPUID leaf/subleaf and its answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuidEntry {
    pub function: u32,
    pub index: u32,
    pub eax: u32,
    pub ebx: u32,
    pub ecx: u32,
    pub edx: u32,
}

/// Guest RAM the host backed: guest-physical `[gpa, gpa + size)` is visible
/// to the VMM at `host_address`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RamRegion {
    pub gpa: u64,
    pub size: u64,
    pub host_address: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("{host}: {what} failed: {detail}")]
    Failed {
        host: &'static str,
        what: &'static str,
        detail: String,
    },
    #[error("{host}: not enough memory for {what} ({bytes} bytes); give the VM less memory or the host more")]
    OutOfMemory {
        host: &'static str,
        what: &'static str,
        bytes: u64,
    },
    #[error("{host}: {what} is not supported here: {detail}")]
    Unsupported {
        host: &'static str,
        what: &'static str,
        detail: String,
    },
}

/// What runs the VM. Created once per VM; shared by all vCPU threads.
pub trait Host: Send + Sync + 'static {
    /// The vCPU backend of this host.
    type Backend: vcpu_api::Backend + 'static;

    /// "kvm" or "tern", for messages.
    fn name(&self) -> &'static str;

    /// The host's CPUID leaves that this host can give a guest (before the
    /// machine's own filtering).
    fn cpuid(&self) -> Result<Vec<CpuidEntry>, HostError>;

    /// Host CPUs available for vCPU threads.
    fn cpu_count(&self) -> usize;

    /// Backs guest-physical `[gpa, gpa + size)` (both 2 MiB aligned) with
    /// zeroed RAM. The memory stays mapped until the host is dropped.
    fn add_ram(&self, gpa: u64, size: u64) -> Result<RamRegion, HostError>;

    /// Starts the handler thread of vCPU `id` (on Tern: on host CPU
    /// `id % cpu_count()`); `body` creates the vCPU with
    /// [`create_vcpu`](Self::create_vcpu) and runs it.
    fn spawn_vcpu_thread(
        &self,
        id: u32,
        body: Box<dyn FnOnce() + Send>,
    ) -> Result<JoinHandle<()>, HostError>;

    /// Creates vCPU `id` (APIC ID `id`), called on its handler thread.
    /// `cpuid` is the table the guest sees (KVM answers CPUID from it; on
    /// Tern CPUID exits to the VMM, which answers from the same table).
    fn create_vcpu(&self, id: u32, cpuid: &[CpuidEntry]) -> Result<Self::Backend, HostError>;
}
