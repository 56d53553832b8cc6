//! Cross-CPU shootdown: a revocation or destruction returns only when no other CPU
//! can still use what it removed: TLB entries and paging-structure caches of a PD's
//! page table, guest translations of a VM, a PD's I/O permission bitmap in a CPU's
//! TSS, or (VMX) a vCPU's VMCS, active on the CPU that ran it. The CPU that removes
//! them (holding the big kernel lock) asks the CPUs that may hold them with an IPI
//! and waits until each has acknowledged.
//!
//! A CPU acknowledges while it waits for the big kernel lock (`trap::lock_kernel`),
//! and every way out of user mode, a guest or the idle loop leads there: the IPI
//! makes a CPU in user mode or idle enter the kernel, and one in a guest exit.
//! Acknowledging means: the CPU loads the kernel's own page table (it walks no PD's
//! tables any more and has dropped their TLB entries), denies every port in its TSS
//! or VMCLEARs a VMCS if it was asked to, and then runs only kernel code until it
//! has the lock. Holding it, it sees the new page tables and TLB generations and
//! flushes before it returns to a PD (`sched::switch_to` reloads CR3 and the I/O
//! bitmap) or enters a guest (`vcpu::prepare`).
//!
//! The requester waits with interrupts off and the lock held, so requests never
//! overlap and no target ever waits for the requester. The wait is bounded: a CPU
//! that does not answer within [`TIMEOUT_US`] (it hung with interrupts off) is
//! reported, and the caller leaks what it meant to free.
//!
//! Owns the request and acknowledgement counters and the per-CPU asks; touches no
//! kernel object (the callers choose the CPUs and update the scheduler).

use crate::acpi::MAX_CPUS;
use crate::arch::{apic, cpu, paging, smp};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// How long a requester waits for all acknowledgements (emulators included: an
/// IPI and a guest exit take microseconds even there).
pub const TIMEOUT_US: u64 = 1_000_000;

/// Per CPU: the last request generation asked of it (written by requesters under
/// the lock) and the last one it acknowledged (written by the CPU itself).
static REQUESTED: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static ACKED: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Per CPU: the physical address of a VMCS to VMCLEAR with the acknowledgement (0: none).
static VMCLEAR: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Per CPU: deny every port in the TSS with the acknowledgement.
static DENY_PORTS: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

/// What one request asks: the CPUs, those of them that must drop the I/O bitmap
/// in their TSS, and a VMCS to take off one of them.
#[derive(Default)]
pub struct Request {
    cpus: u64,
    ports: u64,
    vmclear: Option<(usize, u64)>,
}

impl Request {
    /// Adds the CPUs of `mask` (bit n: CPU n).
    pub fn add(&mut self, mask: u64) {
        self.cpus |= mask;
    }

    /// Adds the CPUs of `mask`, which must also deny every port until they load
    /// an I/O bitmap again.
    pub fn deny_ports(&mut self, mask: u64) {
        self.cpus |= mask;
        self.ports |= mask;
    }

    /// Adds what `other` asks (at most one of them may ask for a VMCLEAR).
    pub fn merge(&mut self, other: Request) {
        debug_assert!(self.vmclear.is_none() || other.vmclear.is_none());
        self.cpus |= other.cpus;
        self.ports |= other.ports;
        self.vmclear = self.vmclear.or(other.vmclear);
    }

    /// Asks `cpu` to VMCLEAR the VMCS at `vmcs` (one per request).
    pub fn vmclear(&mut self, cpu: usize, vmcs: u64) {
        debug_assert!(self.vmclear.is_none(), "one VMCLEAR per request");
        self.cpus |= 1 << cpu;
        self.vmclear = Some((cpu, vmcs));
    }

    pub fn is_empty(&self) -> bool {
        self.cpus == 0
    }

    /// The CPUs asked.
    pub fn cpus(&self) -> u64 {
        self.cpus
    }

    /// Asks the CPUs and waits until each acknowledged (this CPU acknowledges at
    /// once, offline CPUs hold nothing). Called with the big kernel lock held.
    /// Returns false if one did not answer in time (it was reported).
    pub fn send(&self, apic_ids: &[u32]) -> bool {
        let me = smp::cpu_id();
        if let Some((cpu, vmcs)) = self.vmclear {
            VMCLEAR[cpu].store(vmcs, Ordering::Relaxed);
        }
        for cpu in cpus_of(self.ports) {
            DENY_PORTS[cpu].store(true, Ordering::Relaxed);
        }
        let mut waiting = 0u64;
        for cpu in cpus_of(self.cpus) {
            if cpu == me || !crate::trap::cpu_online(cpu) || cpu >= apic_ids.len() {
                continue;
            }
            let gen = REQUESTED[cpu].load(Ordering::Relaxed) + 1;
            REQUESTED[cpu].store(gen, Ordering::Release);
            apic::send_fixed(apic_ids[cpu], apic::VECTOR_RESCHEDULE);
            waiting |= 1 << cpu;
        }
        if self.cpus & (1 << me) != 0 {
            perform(me);
        }
        let start = cpu::rdtsc();
        let limit = TIMEOUT_US * apic::tsc_per_us().max(1);
        while waiting != 0 {
            for cpu in cpus_of(waiting) {
                if ACKED[cpu].load(Ordering::Acquire) == REQUESTED[cpu].load(Ordering::Relaxed) {
                    waiting &= !(1 << cpu);
                }
            }
            if waiting != 0 && cpu::rdtsc().wrapping_sub(start) > limit {
                crate::kprintln!(
                    "kernel: CPUs {waiting:#x} did not acknowledge a TLB/VMCS shootdown within {} ms; what it was to free is leaked",
                    TIMEOUT_US / 1000
                );
                return false;
            }
            core::hint::spin_loop();
        }
        true
    }
}

/// Answers a pending request to this CPU, if any (see the module documentation).
/// Called while waiting for the big kernel lock.
pub fn acknowledge() {
    let me = smp::cpu_id();
    let asked = REQUESTED[me].load(Ordering::Acquire);
    if ACKED[me].load(Ordering::Relaxed) != asked {
        perform(me);
        ACKED[me].store(asked, Ordering::Release);
    }
}

/// What a CPU does for a request: the kernel's page table, and what it was asked.
fn perform(me: usize) {
    cpu::load_cr3(paging::kernel_root());
    if DENY_PORTS[me].swap(false, Ordering::Relaxed) {
        smp::deny_all_ports();
    }
    let vmcs = VMCLEAR[me].swap(0, Ordering::Relaxed);
    if vmcs != 0 {
        crate::vcpu::vmclear_here(vmcs);
    }
}

fn cpus_of(mask: u64) -> impl Iterator<Item = usize> {
    (0..64).filter(move |c| mask & (1 << c) != 0)
}
