//! The Tern host: the VMM runs as a `kind = "linux"` component (a std program
//! whose system calls the posix-server serves) and makes its hypercalls itself
//! through the `tern` crate.
//!
//! - **The VM** is a PD of its own (`create_vm`), made in [`TernHost::new`].
//! - **Guest RAM** comes from the roottask (`OP_MAP`, charged to the
//!   component's `memory` quota) in the largest naturally aligned blocks that
//!   fit (1 GiB, falling back to 2 MiB pieces when the roottask has no block
//!   that large), mapped in the VMM at [`RAM_BASE`] + guest-physical address
//!   and delegated into the VM at the guest-physical address. Both sides use
//!   large pages.
//! - **vCPUs** are ECs of kind vCPU whose state pages the kernel maps at
//!   [`STATE_BASE`] + 4 KiB × n. Both ranges lie in
//!   `hyper_abi::posix::PROGRAM_MAPPED`, which the posix-server never hands out.
//! - **Threads**: vCPU `id`'s handler thread starts on the component's CPU
//!   `cpus[id % cpus.len()]` ([`tern::spawn_placed`]); the kernel runs a vCPU
//!   only from a thread on its CPU, and Tern threads never move. It runs in
//!   the background (one priority below the VMM's other threads): a guest
//!   that computes must not keep the VMM's timer and I/O threads on the same
//!   CPU waiting for the end of its 10 ms time slice.
//!
//! Owns: those resources and their release when the host is dropped. Must not
//! touch: exit handling (vcpu-api's `tern` backend, the machine) or CPUID
//! policy beyond removing what the kernel does not virtualize ([`filter_cpuid`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::thread::JoinHandle;

use hyper_abi::syscall::{self, EcParams};
use hyper_abi::{mem_rights, obj_rights, posix, Crd, EcKind, Status};
use vcpu_api::tern::TernVcpu;

use crate::{CpuidEntry, Host, HostError, RamRegion};

const HOST: &str = "tern";

/// Guest-physical address `gpa` is at `RAM_BASE + gpa` in the VMM.
pub const RAM_BASE: u64 = posix::PROGRAM_MAPPED.0;
/// Guest-physical addresses below this can be RAM (4 TiB).
pub const RAM_SPAN: u64 = 0x400_0000_0000;
/// vCPU state pages, one 4 KiB page per vCPU from here.
pub const STATE_BASE: u64 = RAM_BASE + RAM_SPAN;
/// vCPUs a program can create (state pages in the rest of `PROGRAM_MAPPED`).
const MAX_VCPUS: u64 = 1 << 20;
/// Kernel memory for the VM's nested page tables (taken from the component's).
const VM_KMEM: u64 = 64 * 1024;
/// Largest block asked of the roottask (2^18 pages = 1 GiB).
const MAX_ORDER: u8 = 18;
/// Smallest (2^9 pages = 2 MiB): guest RAM is 2 MiB aligned.
const MIN_ORDER: u8 = 9;

/// The Tern microhypervisor, seen from a VMM running as a Linux component.
pub struct TernHost {
    vm: u64,
    cpus: Vec<u32>,
    /// Blocks mapped so far (VMM address, pages), given back on drop.
    mapped: Mutex<Vec<(u64, u64)>>,
    /// vCPU selectors, revoked on drop (which frees their state pages).
    vcpus: Mutex<Vec<u64>>,
}

/// The next free state page (program-wide: a page of a vCPU destroyed while
/// its guest ran elsewhere may come free only later).
static NEXT_STATE: AtomicU64 = AtomicU64::new(0);

fn failed(what: &'static str, e: impl std::fmt::Display) -> HostError {
    HostError::Failed {
        host: HOST,
        what,
        detail: e.to_string(),
    }
}

impl TernHost {
    /// Creates the VM. Fails with [`HostError::Unsupported`] when the program
    /// does not run on Tern or the CPU has no usable SVM/VMX.
    pub fn new() -> Result<TernHost, HostError> {
        if !tern::on_tern() {
            return Err(HostError::Unsupported {
                host: HOST,
                what: "the Tern host",
                detail: "not running on Tern (start the VMM as a kind = \"linux\" component)"
                    .into(),
            });
        }
        let cpus = tern::cpus().map_err(|e| failed("asking for the component's CPUs", e))?;
        let vm = tern::alloc_sel().map_err(|e| failed("a selector for the VM", e))?;
        syscall::create_vm(vm, VM_KMEM).map_err(|e| match e {
            Status::NoFeature => HostError::Unsupported {
                host: HOST,
                what: "virtual machines",
                detail: "the kernel found neither AMD SVM with nested paging nor Intel VMX with EPT and unrestricted guest".into(),
            },
            Status::OutOfMemory => HostError::OutOfMemory {
                host: HOST,
                what: "the VM's kernel objects",
                bytes: VM_KMEM,
            },
            e => failed("creating the VM", e.name()),
        })?;
        Ok(TernHost {
            vm,
            cpus,
            mapped: Mutex::new(Vec::new()),
            vcpus: Mutex::new(Vec::new()),
        })
    }

    /// The host CPU of vCPU `id`'s handler thread.
    pub fn cpu_of(&self, id: u32) -> u32 {
        self.cpus[id as usize % self.cpus.len()]
    }

    /// Maps one block at guest-physical `gpa` (2^`order` pages) and delegates
    /// it into the VM; splits it when the roottask has no block that large.
    fn back(&self, gpa: u64, order: u8) -> Result<(), HostError> {
        let va = RAM_BASE + gpa;
        match tern::map_memory(va, order) {
            Ok(()) => {}
            Err(tern::Error::PoolEmpty) if order > MIN_ORDER => {
                let half = 4096u64 << (order - 1);
                self.back(gpa, order - 1)?;
                return self.back(gpa + half, order - 1);
            }
            Err(tern::Error::Quota | tern::Error::PoolEmpty) => {
                return Err(HostError::OutOfMemory {
                    host: HOST,
                    what: "guest RAM (the component's `memory` quota or the machine)",
                    bytes: 4096 << order,
                })
            }
            Err(e) => return Err(failed("mapping guest RAM", e)),
        }
        self.mapped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((va, 1 << order));
        let crd = Crd::mem(va >> 12, order, mem_rights::RWX);
        syscall::delegate(self.vm, crd, gpa >> 12).map_err(|e| match e {
            Status::OutOfMemory => HostError::OutOfMemory {
                host: HOST,
                what: "the VM's nested page tables",
                bytes: 4096 << order,
            },
            e => failed("delegating guest RAM into the VM", e.name()),
        })
    }
}

impl Drop for TernHost {
    fn drop(&mut self) {
        // the vCPUs (and their state pages), then the VM with its
        // guest-physical space
        for vcpu in self
            .vcpus
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            let _ = syscall::revoke(Crd::obj(vcpu, obj_rights::ALL), true);
        }
        let _ = syscall::revoke(Crd::obj(self.vm, obj_rights::ALL), true);
        for (va, pages) in self
            .mapped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            let _ = tern::unmap_memory(va, pages);
        }
    }
}

/// Naturally aligned blocks (guest-physical address, order) covering
/// `[gpa, gpa + size)`, each at most 1 GiB; both 2 MiB aligned.
pub fn ram_blocks(gpa: u64, size: u64) -> Vec<(u64, u8)> {
    let mut out = Vec::new();
    let (mut at, end) = (gpa, gpa + size);
    while at < end {
        let mut order = ((at >> 12).trailing_zeros() as u8).min(MAX_ORDER);
        while 4096u64 << order > end - at {
            order -= 1;
        }
        out.push((at, order));
        at += 4096 << order;
    }
    out
}

/// Identifies the calling std thread cheaply (`on_handler_thread` runs before
/// every `vcpu_run`): the address of a thread-local, distinct for every live
/// thread.
fn thread_id() -> u64 {
    thread_local! {
        static MARK: u8 = const { 0 };
    }
    MARK.with(|m| m as *const u8 as u64)
}

impl Host for TernHost {
    type Backend = TernVcpu;

    fn name(&self) -> &'static str {
        HOST
    }

    fn cpuid(&self) -> Result<Vec<CpuidEntry>, HostError> {
        Ok(filter_cpuid(host_cpuid_leaves(), xcr0()))
    }

    fn cpu_count(&self) -> usize {
        self.cpus.len()
    }

    fn add_ram(&self, gpa: u64, size: u64) -> Result<RamRegion, HostError> {
        const ALIGN: u64 = 2 << 20;
        let fits = gpa.checked_add(size).is_some_and(|end| end <= RAM_SPAN);
        if !gpa.is_multiple_of(ALIGN) || !size.is_multiple_of(ALIGN) || size == 0 || !fits {
            return Err(failed(
                "adding guest RAM",
                format!(
                    "[{gpa:#x}, +{size:#x}) must be 2 MiB aligned, non-empty and below {RAM_SPAN:#x}"
                ),
            ));
        }
        for (at, order) in ram_blocks(gpa, size) {
            self.back(at, order)?;
        }
        Ok(RamRegion {
            gpa,
            size,
            host_address: (RAM_BASE + gpa) as usize,
        })
    }

    fn spawn_vcpu_thread(
        &self,
        id: u32,
        body: Box<dyn FnOnce() + Send>,
    ) -> Result<JoinHandle<()>, HostError> {
        let cpu = self.cpu_of(id);
        let builder = std::thread::Builder::new().name(format!("vcpu{id}"));
        let place = tern::Placement {
            cpu: Some(cpu),
            background: true,
        };
        tern::spawn_placed(place, builder, body).map_err(|e| failed("starting a vCPU thread", e))
    }

    fn create_vcpu(&self, _id: u32, _cpuid: &[CpuidEntry]) -> Result<TernVcpu, HostError> {
        let n = NEXT_STATE.fetch_add(1, Ordering::Relaxed);
        if n >= MAX_VCPUS {
            return Err(HostError::OutOfMemory {
                host: HOST,
                what: "vCPU state pages",
                bytes: 4096,
            });
        }
        let state = STATE_BASE + n * 4096;
        let sel = tern::alloc_sel().map_err(|e| failed("a selector for the vCPU", e))?;
        let params = EcParams {
            pd: self.vm,
            cpu: tern::current_cpu() as u16,
            kind: EcKind::Vcpu,
            flags: 0,
            evt_base: 0,
            utcb: state,
            sp: 0,
            ip: 0,
        };
        syscall::create_ec(sel, &params).map_err(|e| match e {
            Status::OutOfMemory => HostError::OutOfMemory {
                host: HOST,
                what: "the vCPU's kernel objects",
                bytes: 3 * 4096,
            },
            Status::NoFeature => HostError::Unsupported {
                host: HOST,
                what: "vCPUs",
                detail: "no hardware virtualization".into(),
            },
            e => failed("creating the vCPU", e.name()),
        })?;
        self.vcpus
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(sel);
        // SAFETY: the kernel just mapped this vCPU's state page at `state` (in
        // PROGRAM_MAPPED, which nothing else uses); it stays mapped until the
        // VM is revoked in `drop`, and the backend does not outlive the host
        // (the machine joins the vCPU threads before dropping it).
        Ok(unsafe { TernVcpu::new(sel, state, thread_id) })
    }
}

/// Every CPUID leaf and subleaf this CPU answers, as executed here.
pub fn host_cpuid_leaves() -> Vec<CpuidEntry> {
    let ask = |function: u32, index: u32| {
        let r = std::arch::x86_64::__cpuid_count(function, index);
        CpuidEntry {
            function,
            index,
            eax: r.eax,
            ebx: r.ebx,
            ecx: r.ecx,
            edx: r.edx,
        }
    };
    let mut out = Vec::new();
    for base in [0u32, 0x8000_0000] {
        let max = ask(base, 0).eax;
        if max < base || max > base + 0xff {
            continue;
        }
        for function in base..=max {
            out.extend(subleaves(function, ask));
        }
    }
    out
}

/// The subleaves of `function` (subleaf 0 for plain leaves).
fn subleaves(function: u32, ask: impl Fn(u32, u32) -> CpuidEntry) -> Vec<CpuidEntry> {
    const MAX: u32 = 64;
    let first = ask(function, 0);
    match function {
        // caches: until the type field is 0 ("no more caches")
        4 | 0x8000_001d => (0..MAX)
            .map(|i| ask(function, i))
            .take_while(|e| e.eax & 0x1f != 0)
            .collect(),
        // topology levels: up to and including the first invalid level, which
        // ends a guest's enumeration
        0xb | 0x1f | 0x8000_0026 => {
            let mut v = Vec::new();
            for i in 0..MAX {
                let e = ask(function, i);
                v.push(e);
                if (e.ecx >> 8) & 0xff == 0 {
                    break;
                }
            }
            v
        }
        // subleaf 0's EAX is the last subleaf
        7 | 0x14 | 0x17 | 0x1d | 0x20 | 0x24 => {
            (0..=first.eax.min(MAX)).map(|i| ask(function, i)).collect()
        }
        // XSAVE components: 0, 1 and every component the CPU has
        0xd => (0..MAX)
            .map(|i| ask(function, i))
            .filter(|e| e.index < 2 || e.eax != 0)
            .collect(),
        0xf | 0x10 => (0..4).map(|i| ask(function, i)).collect(),
        _ => vec![first],
    }
}

/// The extended control register 0 (XSAVE components the kernel enabled).
fn xcr0() -> u64 {
    let osxsave = std::arch::x86_64::__cpuid(1).ecx & (1 << 27) != 0;
    if !osxsave {
        return 0;
    }
    // SAFETY: XGETBV(0) is allowed at user level when CR4.OSXSAVE is set
    // (CPUID.1:ECX.OSXSAVE, checked above).
    unsafe { std::arch::x86_64::_xgetbv(0) }
}

/// Removes from the host's leaves what the Tern kernel does not give a guest:
///
/// | what | why |
/// |---|---|
/// | VMX (1:ECX.5), SVM and SKINIT (8000_0001:ECX.2, .12), leaf 8000_000A | no nested virtualization |
/// | MONITOR/MWAIT (1:ECX.3), WAITPKG (7:ECX.5) | always intercepted, nothing emulates them |
/// | SGX (7:EBX.2, 7:ECX.30, leaf 12h), SEV (leaf 8000_001F) | not set up for guests |
/// | PKU/OSPKE (7:ECX.3, .4), CET (7:ECX.7, 7:EDX.20), XSAVES (Dh.1:EAX.3) | the kernel switches neither PKRU nor supervisor XSAVE state |
/// | XSAVE components beyond the kernel's XCR0 (Dh) | the kernel refuses a guest XCR0 it does not run with itself |
/// | the PMU (leaf 0Ah, 8000_0001:ECX.22/.23/.28, leaf 8000_0022) | performance counters are not virtualized |
pub fn filter_cpuid(mut leaves: Vec<CpuidEntry>, xcr0: u64) -> Vec<CpuidEntry> {
    leaves.retain(|e| match e.function {
        0xd => e.index < 2 || xcr0 & (1u64 << e.index.min(63)) != 0,
        _ => true,
    });
    for e in &mut leaves {
        match (e.function, e.index) {
            (1, _) => e.ecx &= !(1 << 5 | 1 << 3),
            (7, 0) => {
                e.ebx &= !(1 << 2);
                e.ecx &= !(1 << 3 | 1 << 4 | 1 << 5 | 1 << 7 | 1 << 30);
                e.edx &= !(1 << 20);
            }
            (0xa | 0x12 | 0x8000_000a | 0x8000_001f | 0x8000_0022, _) => {
                (e.eax, e.ebx, e.ecx, e.edx) = (0, 0, 0, 0)
            }
            (0xd, 0) => {
                e.eax &= xcr0 as u32;
                e.edx &= (xcr0 >> 32) as u32;
            }
            (0xd, 1) => {
                e.eax &= !(1 << 3);
                (e.ecx, e.edx) = (0, 0);
            }
            (0x8000_0001, _) => e.ecx &= !(1 << 2 | 1 << 12 | 1 << 22 | 1 << 23 | 1 << 28),
            _ => {}
        }
    }
    leaves
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(function: u32, index: u32, regs: [u32; 4]) -> CpuidEntry {
        CpuidEntry {
            function,
            index,
            eax: regs[0],
            ebx: regs[1],
            ecx: regs[2],
            edx: regs[3],
        }
    }

    #[test]
    fn ram_blocks_use_gib_blocks_where_aligned() {
        // 3 GiB below the hole, then 2 GiB + 2 MiB from 4 GiB
        assert_eq!(
            ram_blocks(0, 3 << 30),
            vec![(0, 18), (1 << 30, 18), (2 << 30, 18)]
        );
        assert_eq!(
            ram_blocks(4 << 30, (2 << 30) + (2 << 20)),
            vec![(4 << 30, 18), (5 << 30, 18), ((6 << 30), 9)]
        );
        // an unaligned start climbs in 2 MiB, 4 MiB, ... steps to the next GiB
        let b = ram_blocks(2 << 20, (1 << 30) - (2 << 20));
        assert_eq!(b.first(), Some(&(2 << 20, 9)));
        assert_eq!(b.last(), Some(&(512 << 20, 17)));
        let covered: u64 = b.iter().map(|&(_, o)| 4096u64 << o).sum();
        assert_eq!(covered, (1 << 30) - (2 << 20));
        for (at, order) in b {
            assert_eq!(at % (4096 << order), 0, "block at {at:#x} not aligned");
        }
    }

    #[test]
    fn filter_removes_what_the_kernel_does_not_virtualize() {
        let ones = [u32::MAX; 4];
        let leaves = vec![
            entry(1, 0, ones),
            entry(7, 0, ones),
            entry(0xa, 0, ones),
            entry(0xd, 0, ones),
            entry(0xd, 1, ones),
            entry(0xd, 2, ones),  // AVX: in XCR0
            entry(0xd, 9, ones),  // PKRU: not in XCR0
            entry(0xd, 11, ones), // CET: not in XCR0
            entry(0x8000_0001, 0, ones),
            entry(0x8000_000a, 0, ones),
        ];
        let xcr0 = 0b111;
        let out = filter_cpuid(leaves, xcr0);
        let get = |f, i| {
            *out.iter()
                .find(|e| e.function == f && e.index == i)
                .unwrap()
        };
        assert_eq!(get(1, 0).ecx & (1 << 5), 0, "VMX");
        assert_eq!(get(1, 0).ecx & (1 << 3), 0, "MONITOR");
        assert_ne!(get(1, 0).ecx & (1 << 0), 0, "SSE3 stays");
        assert_eq!(get(0x8000_0001, 0).ecx & (1 << 2), 0, "SVM");
        assert_ne!(get(0x8000_0001, 0).ecx & 1, 0, "LAHF stays");
        assert_eq!(get(0x8000_000a, 0), entry(0x8000_000a, 0, [0; 4]));
        assert_eq!(get(0xa, 0), entry(0xa, 0, [0; 4]));
        assert_eq!(get(7, 0).ebx & (1 << 2), 0, "SGX");
        assert_eq!(get(7, 0).ecx & (1 << 3), 0, "PKU");
        assert_eq!(get(0xd, 0).eax, 0b111);
        assert_eq!(get(0xd, 0).edx, 0);
        assert_eq!(get(0xd, 1).eax & (1 << 3), 0, "XSAVES");
        assert!(out.iter().any(|e| (e.function, e.index) == (0xd, 2)));
        assert!(!out.iter().any(|e| (e.function, e.index) == (0xd, 9)));
        assert!(!out.iter().any(|e| (e.function, e.index) == (0xd, 11)));
    }

    #[test]
    fn host_leaves_end_topology_and_cache_lists() {
        let leaves = host_cpuid_leaves();
        assert!(leaves.iter().any(|e| e.function == 0));
        assert!(leaves.iter().any(|e| e.function == 0x8000_0000));
        if let Some(last) = leaves.iter().rfind(|e| e.function == 0xb) {
            assert_eq!(
                (last.ecx >> 8) & 0xff,
                0,
                "leaf 0xb ends with an invalid level"
            );
        }
        for e in leaves.iter().filter(|e| e.function == 4) {
            assert_ne!(e.eax & 0x1f, 0, "leaf 4 lists only real caches");
        }
    }

    #[test]
    fn not_on_tern_is_a_clear_error() {
        match TernHost::new() {
            Err(e @ HostError::Unsupported { .. }) => {
                assert!(e.to_string().contains("not running on Tern"), "{e}")
            }
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("a host test cannot run on Tern"),
        }
    }
}
