//! The Linux KVM host: guest RAM is anonymous host memory registered as KVM
//! memory slots, vCPUs are KVM vCPUs (`vcpu_api::kvm`) on ordinary threads.
//!
//! Owns: the KVM VM, the RAM mappings (unmapped when the host is dropped,
//! after the VM) and the host side of CPUID. Must not touch: machine policy.
//!
//! No in-kernel irqchip: every interrupt controller is the VMM's, as on
//! Tern. So the MSRs of the local APIC (APIC base 0x1B, TSC deadline
//! 0x6E0, x2APIC 0x800-0x8FF), and every MSR KVM does not know, exit to the
//! VMM (`KvmVm::exit_on_msrs`) instead of being answered or refused by KVM.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::thread::JoinHandle;

use vcpu_api::kvm::{self as backend, KvmVcpu, KvmVm};

use crate::{CpuidEntry, Host, HostError, RamRegion};

const HOST: &str = "kvm";

/// MSRs the VMM's own models answer (inclusive ranges).
pub const VMM_MSRS: [(u32, u32); 3] = [(0x1b, 0x1b), (0x6e0, 0x6e0), (0x800, 0x8ff)];

/// KVM's flag for leaves whose answer depends on ECX.
const SIGNIFICANT_INDEX: u32 = 1;

/// Leaves with subleaves, whether or not this KVM lists them that way.
const INDEXED_LEAVES: [u32; 12] = [
    0x4,
    0x7,
    0xb,
    0xd,
    0xf,
    0x10,
    0x12,
    0x14,
    0x17,
    0x18,
    0x1f,
    0x8000_001d,
];

/// One anonymous mapping backing guest RAM.
struct Mapping {
    address: usize,
    size: usize,
}

/// Linux KVM as the VMM's host.
pub struct KvmHost {
    vm: KvmVm,
    ram: Mutex<Vec<Mapping>>,
    /// Leaves KVM reported with a significant index.
    indexed: BTreeSet<u32>,
}

fn failed(what: &'static str, detail: impl ToString) -> HostError {
    HostError::Failed {
        host: HOST,
        what,
        detail: detail.to_string(),
    }
}

impl KvmHost {
    /// Opens /dev/kvm, creates the VM and routes the VMM's MSRs to it.
    pub fn new() -> Result<Self, HostError> {
        let vm = KvmVm::new().map_err(|e| HostError::Unsupported {
            host: HOST,
            what: "a KVM virtual machine",
            detail: e.to_string(),
        })?;
        vm.exit_on_msrs(&VMM_MSRS)
            .map_err(|e| HostError::Unsupported {
                host: HOST,
                what: "MSR exits to user space",
                detail: e.to_string(),
            })?;
        let indexed = vm
            .supported_cpuid()
            .map_err(|e| failed("KVM_GET_SUPPORTED_CPUID", e))?
            .iter()
            .filter(|e| e.flags & SIGNIFICANT_INDEX != 0)
            .map(|e| e.leaf)
            .collect();
        Ok(KvmHost {
            vm,
            ram: Mutex::new(Vec::new()),
            indexed,
        })
    }

    fn flags_of(&self, leaf: u32) -> u32 {
        if self.indexed.contains(&leaf) || INDEXED_LEAVES.contains(&leaf) {
            SIGNIFICANT_INDEX
        } else {
            0
        }
    }
}

impl Drop for KvmHost {
    fn drop(&mut self) {
        // The VM (a field) is closed after this; KVM holds no reference to
        // the memory once the last vCPU is gone, and vCPUs live only on
        // handler threads the machine has joined before dropping the host.
        let ram = self.ram.get_mut().unwrap_or_else(|e| e.into_inner());
        for m in ram.drain(..) {
            // SAFETY: `address`/`size` describe a mapping made by `add_ram`
            // that nothing uses any more (see above).
            unsafe { libc::munmap(m.address as *mut libc::c_void, m.size) };
        }
    }
}

impl Host for KvmHost {
    type Backend = KvmVcpu;

    fn name(&self) -> &'static str {
        HOST
    }

    fn cpuid(&self) -> Result<Vec<CpuidEntry>, HostError> {
        let table = self
            .vm
            .supported_cpuid()
            .map_err(|e| failed("KVM_GET_SUPPORTED_CPUID", e))?;
        Ok(table
            .iter()
            .map(|e| CpuidEntry {
                function: e.leaf,
                index: e.index,
                eax: e.regs[0],
                ebx: e.regs[1],
                ecx: e.regs[2],
                edx: e.regs[3],
            })
            .collect())
    }

    fn cpu_count(&self) -> usize {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }

    fn add_ram(&self, gpa: u64, size: u64) -> Result<RamRegion, HostError> {
        const ALIGN: u64 = 2 << 20;
        if !gpa.is_multiple_of(ALIGN) || !size.is_multiple_of(ALIGN) || size == 0 {
            return Err(failed(
                "adding guest RAM",
                format!("{gpa:#x}+{size:#x} is not 2 MiB aligned"),
            ));
        }
        let len = usize::try_from(size).map_err(|_| HostError::OutOfMemory {
            host: HOST,
            what: "guest RAM",
            bytes: size,
        })?;
        // SAFETY: an anonymous private mapping at a kernel-chosen address has
        // no preconditions; the result is checked below.
        let address = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if address == libc::MAP_FAILED {
            return Err(HostError::OutOfMemory {
                host: HOST,
                what: "guest RAM",
                bytes: size,
            });
        }
        let mut ram = self.ram.lock().unwrap_or_else(|e| e.into_inner());
        let slot = ram.len() as u32;
        ram.push(Mapping {
            address: address as usize,
            size: len,
        });
        // SAFETY: `address` is a fresh page-aligned read/write mapping of
        // `size` bytes that stays mapped until `self` is dropped, after the
        // VM's last vCPU (see `Drop`).
        unsafe { self.vm.map_memory(slot, gpa, address.cast(), size) }
            .map_err(|e| failed("KVM_SET_USER_MEMORY_REGION", e))?;
        Ok(RamRegion {
            gpa,
            size,
            host_address: address as usize,
        })
    }

    fn spawn_vcpu_thread(
        &self,
        id: u32,
        body: Box<dyn FnOnce() + Send>,
    ) -> Result<JoinHandle<()>, HostError> {
        std::thread::Builder::new()
            .name(format!("vcpu{id}"))
            .spawn(body)
            .map_err(|e| failed("starting a vCPU thread", e))
    }

    fn create_vcpu(&self, id: u32, cpuid: &[CpuidEntry]) -> Result<KvmVcpu, HostError> {
        let id = u8::try_from(id).map_err(|_| HostError::Unsupported {
            host: HOST,
            what: "vCPU ids above 255",
            detail: format!("vCPU {id}"),
        })?;
        let table: Vec<backend::CpuidEntry> = cpuid
            .iter()
            .map(|e| backend::CpuidEntry {
                leaf: e.function,
                index: e.index,
                flags: self.flags_of(e.function),
                regs: [e.eax, e.ebx, e.ecx, e.edx],
            })
            .collect();
        self.vm
            .create_vcpu(id, &table)
            .map_err(|e| failed("creating a vCPU", e))
    }
}
