//! The CPUID table of each vCPU.
//!
//! Interim: the host's leaves under vmm-core's policy (leaves capped at 0xD
//! and 0x8000_0008; VMX/SVM, MONITOR, x2APIC and TSC-deadline hidden; the
//! hypervisor bit; APIC ID = vCPU index) until vmm-platform's CPUID model
//! replaces it.

use vmm_core::cpuid::{self, CpuidResult};
use vmm_host::CpuidEntry;

/// vCPU `id`'s table from the host's leaves.
pub fn table(host: &[CpuidEntry], id: u32) -> Vec<CpuidEntry> {
    let lookup = |leaf: u32, subleaf: u32| {
        host.iter()
            .find(|e| e.function == leaf && e.index == subleaf)
            .or_else(|| host.iter().find(|e| e.function == leaf))
            .map_or(CpuidResult::default(), |e| CpuidResult {
                eax: e.eax,
                ebx: e.ebx,
                ecx: e.ecx,
                edx: e.edx,
            })
    };
    host.iter()
        .filter(|e| {
            e.function <= cpuid::MAX_BASIC_LEAF
                || (0x8000_0000..=cpuid::MAX_EXTENDED_LEAF).contains(&e.function)
        })
        .map(|e| {
            let r = cpuid::answer(e.function, e.index, id as usize, 0, lookup);
            CpuidEntry {
                eax: r.eax,
                ebx: r.ebx,
                ecx: r.ecx,
                edx: r.edx,
                ..*e
            }
        })
        .collect()
}
