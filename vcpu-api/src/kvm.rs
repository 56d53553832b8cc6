//! The Linux KVM backend (feature `kvm`, std).
//!
//! Owns: a KVM VM ([`KvmVm`]: guest memory slots, the CPUID table) and its
//! vCPUs ([`KvmVcpu`], a [`Backend`]): the mapping of [`VcpuState`] to and
//! from `kvm_regs`, `kvm_sregs`, `kvm_vcpu_events`, MSRs, XCRs, debug
//! registers and XSAVE; recall through `immediate_exit` plus a signal to the
//! handler thread. Must not touch: guest memory contents or exit policy.
//!
//! # Hardware semantics on top of KVM
//!
//! A VMM sees the same exits as on VMX/SVM: the exiting instruction has not
//! run. KVM instead finishes port I/O, MMIO and HLT itself. So on those
//! exits the backend completes KVM's pending work at once (`KVM_RUN` with
//! `immediate_exit`, feeding INs with the current RAX so nothing changes),
//! reads the registers before and after, and hands out the state *before*
//! the instruction with `ip_len` = the length KVM skipped. On the next run
//! the registers the VMM sees are written back whether charged or not. MMIO
//! becomes [`ExitReason::NestedPageFault`] (the VMM emulates it, as on the
//! hardware backends); string I/O is recognised by RSI/RDI moving.
//! Cost: one extra `KVM_RUN` that does not enter the guest per I/O or MMIO
//! exit. The GPRs travel through the kvm_run page (`KVM_CAP_SYNC_REGS`)
//! where KVM offers it, so a port I/O round trip needs no other ioctl.
//!
//! # What each exit transfers
//!
//! * every exit: GPRs, `ip`, `ip_len`, `flags`, `exit`, `qual`
//!   (`[0]` = KVM's hardware entry failure reason, `[1]` = MMIO address);
//!   `intr_state` from `ready_for_interrupt_injection`; `tpr` from CR8;
//! * every exit except non-string port I/O and MSR exits: also segments, descriptor
//!   tables, control registers, EFER, events, `dr7`, SYSENTER/SYSCALL MSRs,
//!   `kernel_gs_base`, `tsc`, `tsc_aux`, `xss`, `xcr0` and `fpu`.
//!
//! Writes always start from KVM's current values, so an uncharged field is
//! never clobbered with a stale copy. `inj_info` is empty on every exit (KVM
//! re-injects interrupted events itself) except as said below. Not supported (charging them is
//! an error): `pdpte`, `tpr_threshold`, `Controls::NMI_WINDOW`; `ip_len`
//! and `qual` are information only and never written.
//!
//! CPUID is handled inside KVM (`KVM_SET_CPUID2` with the table given to
//! [`KvmVm::create_vcpu`]), so CPUID exits do not reach the VMM. MSRs are
//! KVM's too (unknown ones raise #GP) unless [`KvmVm::exit_on_msrs`] routes
//! some to the VMM: then those, and every MSR KVM does not know, arrive as
//! [`ExitReason::Msr`] with the state *before* the RDMSR/WRMSR (`ip_len` 2);
//! the VMM answers in RAX/RDX and skips it, or injects #GP, as on hardware.
//!
//! An event KVM still holds for injection (it entered no guest code since
//! it was charged, e.g. a recall came first) is reported in `inj_info` on
//! the exits that load the full state, like the hardware's IDT-vectoring
//! information: a VMM that injects again only after `inj_info` is free
//! never overwrites it.
//!
//! # Threads
//!
//! A [`KvmVcpu`] is created on its handler thread and cannot leave it (it is
//! `!Send`); only that thread may run it. [`KvmRecaller`] works from any
//! thread: it marks a recall and sends `SIGRTMIN` to the handler thread,
//! whose signal handler sets `immediate_exit`, so `KVM_RUN` returns (or
//! does not enter the guest) and the run reports [`ExitReason::Recall`].

use std::cell::Cell;
use std::collections::VecDeque;
use std::marker::PhantomData;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::thread::{self, ThreadId};

use kvm_bindings::{
    kvm_dtable, kvm_msr_entry, kvm_segment, kvm_userspace_memory_region, CpuId, Msrs,
    KVM_MAX_CPUID_ENTRIES, KVM_VCPUEVENT_VALID_SHADOW, KVM_X86_SHADOW_INT_MOV_SS,
    KVM_X86_SHADOW_INT_STI,
};
use kvm_ioctls::{
    Cap, Kvm, MsrExitReason, MsrFilterDefaultAction, MsrFilterRange, MsrFilterRangeFlags, SyncReg,
    VcpuExit, VcpuFd, VmFd,
};
use vmm_sys_util::errno;

use crate::exit::{
    Access, CompletedWrite, Direction, Exit, ExitReason, IoAccess, MsrAccess, PageFault, RawExit,
    WriteTarget,
};
use crate::state::{
    interruptibility, Controls, EventInfo, EventKind, Field, Segment, TableRegister, VcpuState,
};
use crate::vcpu::{Backend, BackendError, Recall};

/// Why KVM could not be set up. Each message says what to check.
#[derive(Debug, thiserror::Error)]
pub enum KvmError {
    #[error(
        "cannot open /dev/kvm ({0}); is KVM available? Load kvm_amd/kvm_intel, check the \
         permissions of /dev/kvm, or run inside a VM with nested virtualization"
    )]
    Open(errno::Error),
    #[error("/dev/kvm speaks KVM API version {0}; this VMM needs version 12")]
    ApiVersion(i32),
    #[error("this KVM lacks {0}, which the VMM needs (a newer kernel has it)")]
    MissingCapability(&'static str),
    #[error("{op} failed: {source}")]
    Ioctl {
        op: &'static str,
        source: errno::Error,
    },
}

fn ioctl(op: &'static str) -> impl FnOnce(errno::Error) -> KvmError {
    move |source| KvmError::Ioctl { op, source }
}

fn host(op: &'static str) -> impl FnOnce(errno::Error) -> BackendError {
    move |e| BackendError::Host {
        op,
        code: e.errno() as i64,
    }
}

/// One CPUID leaf as KVM reports and takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuidEntry {
    pub leaf: u32,
    pub index: u32,
    pub flags: u32,
    /// EAX, EBX, ECX, EDX.
    pub regs: [u32; 4],
}

/// A KVM virtual machine: memory slots and vCPU creation. Shared by all
/// vCPU handler threads.
pub struct KvmVm {
    kvm: Kvm,
    vm: VmFd,
}

static SIGNAL_HANDLER: Once = Once::new();

thread_local! {
    /// The `immediate_exit` byte of the kvm_run page of the vCPU this thread
    /// handles (null when none); set by the recall signal handler.
    static IMMEDIATE_EXIT: Cell<*mut u8> = const { Cell::new(ptr::null_mut()) };
}

extern "C" fn on_recall_signal(
    _num: libc::c_int,
    _info: *mut libc::siginfo_t,
    _ctx: *mut libc::c_void,
) {
    // `try_with`: never panic in a signal handler, even during thread exit.
    let _ = IMMEDIATE_EXIT.try_with(|p| store_immediate_exit(p.get(), 1));
}

fn store_immediate_exit(byte: *mut u8, value: u8) {
    if !byte.is_null() {
        // SAFETY: `byte` points into the kvm_run mapping of the vCPU this
        // thread owns; the pointer is cleared before the mapping goes away
        // (`KvmVcpu::drop`). Only this thread (and its signal handler) writes
        // the byte, always through this atomic.
        unsafe { AtomicU8::from_ptr(byte) }.store(value, Ordering::SeqCst);
    }
}

impl KvmVm {
    /// Opens /dev/kvm and creates a VM.
    pub fn new() -> Result<Self, KvmError> {
        let kvm = Kvm::new().map_err(KvmError::Open)?;
        let version = kvm.get_api_version();
        if version != 12 {
            return Err(KvmError::ApiVersion(version));
        }
        for (cap, name) in [
            (Cap::ImmediateExit, "KVM_CAP_IMMEDIATE_EXIT"),
            (Cap::VcpuEvents, "KVM_CAP_VCPU_EVENTS"),
            (Cap::Xsave, "KVM_CAP_XSAVE"),
            (Cap::Xcrs, "KVM_CAP_XCRS"),
        ] {
            if !kvm.check_extension(cap) {
                return Err(KvmError::MissingCapability(name));
            }
        }
        let vm = kvm.create_vm().map_err(ioctl("KVM_CREATE_VM"))?;
        // Intel needs a TSS area for real mode without unrestricted guest;
        // this address lies above any guest RAM we map.
        vm.set_tss_address(0xfffb_d000)
            .map_err(ioctl("KVM_SET_TSS_ADDR"))?;
        let mut result = Ok(());
        SIGNAL_HANDLER.call_once(|| {
            result = vmm_sys_util::signal::register_signal_handler(
                vmm_sys_util::signal::SIGRTMIN(),
                on_recall_signal,
            )
            .map_err(ioctl("sigaction(SIGRTMIN)"));
        });
        result?;
        Ok(KvmVm { kvm, vm })
    }

    /// Makes `size` bytes of host memory at `host` guest-physical memory at
    /// `gpa` in slot `slot`.
    ///
    /// # Safety
    /// `host..host + size` must be a page-aligned, readable and writable
    /// mapping that stays mapped as long as this VM exists; the guest and
    /// KVM access it behind Rust's back.
    pub unsafe fn map_memory(
        &self,
        slot: u32,
        gpa: u64,
        host: *mut u8,
        size: u64,
    ) -> Result<(), KvmError> {
        let region = kvm_userspace_memory_region {
            slot,
            guest_phys_addr: gpa,
            memory_size: size,
            userspace_addr: host as u64,
            flags: 0,
        };
        // SAFETY: the caller guarantees the mapping (see above).
        unsafe { self.vm.set_user_memory_region(region) }
            .map_err(ioctl("KVM_SET_USER_MEMORY_REGION"))
    }

    /// Routes guest RDMSR/WRMSR of the MSRs in `ranges` (inclusive index
    /// ranges, at most 16), and of every MSR KVM does not know, to the VMM
    /// as [`ExitReason::Msr`] exits instead of answering them in KVM. Call
    /// it before creating vCPUs.
    pub fn exit_on_msrs(&self, ranges: &[(u32, u32)]) -> Result<(), KvmError> {
        for (cap, name) in [
            (Cap::X86UserSpaceMsr, "KVM_CAP_X86_USER_SPACE_MSR"),
            (Cap::X86MsrFilter, "KVM_CAP_X86_MSR_FILTER"),
        ] {
            if !self.kvm.check_extension(cap) {
                return Err(KvmError::MissingCapability(name));
            }
        }
        let mut cap = kvm_bindings::kvm_enable_cap {
            cap: kvm_bindings::KVM_CAP_X86_USER_SPACE_MSR,
            ..Default::default()
        };
        // KVM ignores filters on the x2APIC range (0x800-0x8FF); without an
        // in-kernel LAPIC it refuses those accesses as invalid: INVAL exits
        // bring them to the VMM instead of a #GP in the guest.
        cap.args[0] =
            (MsrExitReason::Unknown | MsrExitReason::Filter | MsrExitReason::Inval).bits() as u64;
        self.vm
            .enable_cap(&cap)
            .map_err(ioctl("KVM_ENABLE_CAP(X86_USER_SPACE_MSR)"))?;
        // A range's bitmap has a 0 bit for each MSR KVM must not handle.
        let bitmaps: Vec<Vec<u8>> = ranges
            .iter()
            .map(|&(first, last)| vec![0; (last.saturating_sub(first) as usize + 1).div_ceil(8)])
            .collect();
        let filter: Vec<MsrFilterRange> = ranges
            .iter()
            .zip(&bitmaps)
            .map(|(&(first, last), bitmap)| MsrFilterRange {
                flags: MsrFilterRangeFlags::READ | MsrFilterRangeFlags::WRITE,
                base: first,
                msr_count: last.saturating_sub(first) + 1,
                bitmap,
            })
            .collect();
        self.vm
            .set_msr_filter(MsrFilterDefaultAction::ALLOW, &filter)
            .map_err(ioctl("KVM_X86_SET_MSR_FILTER"))
    }

    /// The CPUID leaves KVM can offer a guest.
    pub fn supported_cpuid(&self) -> Result<Vec<CpuidEntry>, KvmError> {
        let table = self
            .kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(ioctl("KVM_GET_SUPPORTED_CPUID"))?;
        Ok(table
            .as_slice()
            .iter()
            .map(|e| CpuidEntry {
                leaf: e.function,
                index: e.index,
                flags: e.flags,
                regs: [e.eax, e.ebx, e.ecx, e.edx],
            })
            .collect())
    }

    /// Creates vCPU `id` with CPUID table `cpuid`. Call it on the thread
    /// that will handle the vCPU: the vCPU stays on it.
    pub fn create_vcpu(&self, id: u8, cpuid: &[CpuidEntry]) -> Result<KvmVcpu, KvmError> {
        let mut fd = self
            .vm
            .create_vcpu(id as u64)
            .map_err(ioctl("KVM_CREATE_VCPU"))?;
        let entries: Vec<_> = cpuid
            .iter()
            .map(|e| kvm_bindings::kvm_cpuid_entry2 {
                function: e.leaf,
                index: e.index,
                flags: e.flags,
                eax: e.regs[0],
                ebx: e.regs[1],
                ecx: e.regs[2],
                edx: e.regs[3],
                ..Default::default()
            })
            .collect();
        let table = CpuId::from_entries(&entries)
            .map_err(|_| KvmError::MissingCapability("room for this many CPUID entries"))?;
        fd.set_cpuid2(&table).map_err(ioctl("KVM_SET_CPUID2"))?;
        let sync_regs = self.kvm.check_extension(Cap::SyncRegs);
        if sync_regs {
            fd.set_sync_valid_reg(SyncReg::Register);
        }
        let immediate_exit = ptr::addr_of_mut!(fd.get_kvm_run().immediate_exit);
        IMMEDIATE_EXIT.with(|p| p.set(immediate_exit));
        // SAFETY: pthread_self has no preconditions.
        let thread = unsafe { libc::pthread_self() };
        Ok(KvmVcpu {
            fd,
            handler: thread::current().id(),
            immediate_exit,
            recall: Arc::new(RecallShared {
                pending: AtomicBool::new(false),
                thread: Mutex::new(Some(ThreadHandle(thread))),
            }),
            rewound: false,
            sync_regs,
            tsc_offset: 0,
            completed: VecDeque::new(),
            _not_send: PhantomData,
        })
    }
}

struct RecallShared {
    pending: AtomicBool,
    /// The handler thread while its vCPU exists.
    thread: Mutex<Option<ThreadHandle>>,
}

/// A `pthread_t` (a pointer on musl, an integer on glibc).
#[derive(Clone, Copy)]
struct ThreadHandle(libc::pthread_t);

// SAFETY: a pthread_t is an opaque thread identifier that any thread of the
// process may pass to pthread_kill; it is never dereferenced here.
unsafe impl Send for ThreadHandle {}
// SAFETY: see `Send`.
unsafe impl Sync for ThreadHandle {}

/// Recalls a [`KvmVcpu`] from any thread.
#[derive(Clone)]
pub struct KvmRecaller(Arc<RecallShared>);

impl Recall for KvmRecaller {
    fn recall(&self) {
        self.0.pending.store(true, Ordering::SeqCst);
        let thread = self.0.thread.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ThreadHandle(thread)) = *thread {
            // SAFETY: the thread is alive: `KvmVcpu::drop` (on that thread)
            // clears it under this lock before the thread can end, and the
            // signal has a handler installed by `KvmVm::new`.
            unsafe { libc::pthread_kill(thread, vmm_sys_util::signal::SIGRTMIN()) };
        }
    }
}

/// A KVM vCPU driven through `Vcpu::with_state`.
pub struct KvmVcpu {
    fd: VcpuFd,
    handler: ThreadId,
    immediate_exit: *mut u8,
    recall: Arc<RecallShared>,
    /// KVM's registers are past an instruction the VMM sees as not yet
    /// executed: write the registers back on the next run.
    rewound: bool,
    /// KVM copies the GPRs to and from the kvm_run page
    /// (`KVM_CAP_SYNC_REGS`), saving the GET/SET_REGS ioctls.
    sync_regs: bool,
    /// The `tsc_offset` the VMM last saw; a charge moves the TSC by the
    /// difference.
    tsc_offset: u64,
    /// Writes KVM performed that the VMM has not seen yet.
    completed: VecDeque<CompletedWrite>,
    _not_send: PhantomData<*const ()>,
}

impl Drop for KvmVcpu {
    fn drop(&mut self) {
        *self.recall.thread.lock().unwrap_or_else(|e| e.into_inner()) = None;
        IMMEDIATE_EXIT.with(|p| p.set(ptr::null_mut()));
    }
}

const MSR_TSC: u32 = 0x10;
const MSR_XSS: u32 = 0xda0;

/// MSRs in `VcpuState`, in the order they are read (always-present first:
/// KVM_GET_MSRS stops at the first one it does not know).
const STATE_MSRS: [(u32, Field); 11] = [
    (0x174, Field::SysenterCs),
    (0x175, Field::SysenterSp),
    (0x176, Field::SysenterIp),
    (0xc000_0081, Field::Star),
    (0xc000_0082, Field::Lstar),
    (0xc000_0083, Field::Cstar),
    (0xc000_0084, Field::Fmask),
    (0xc000_0102, Field::KernelGsBase),
    (MSR_TSC, Field::Tsc),
    (0xc000_0103, Field::TscAux),
    (MSR_XSS, Field::Xss),
];

fn msr_field(state: &mut VcpuState, field: Field) -> &mut crate::Charged<u64> {
    match field {
        Field::SysenterCs => &mut state.sysenter_cs,
        Field::SysenterSp => &mut state.sysenter_sp,
        Field::SysenterIp => &mut state.sysenter_ip,
        Field::Star => &mut state.star,
        Field::Lstar => &mut state.lstar,
        Field::Cstar => &mut state.cstar,
        Field::Fmask => &mut state.fmask,
        Field::KernelGsBase => &mut state.kernel_gs_base,
        Field::Tsc => &mut state.tsc,
        Field::TscAux => &mut state.tsc_aux,
        _ => &mut state.xss,
    }
}

fn to_kvm_segment(s: Segment) -> kvm_segment {
    let a = s.attributes;
    let bit = |n: u16| ((a >> n) & 1) as u8;
    kvm_segment {
        base: s.base,
        limit: s.limit,
        selector: s.selector,
        type_: (a & 0xf) as u8,
        s: bit(4),
        dpl: ((a >> 5) & 3) as u8,
        present: bit(7),
        avl: bit(8),
        l: bit(9),
        db: bit(10),
        g: bit(11),
        unusable: 1 - bit(7),
        padding: 0,
    }
}

fn from_kvm_segment(k: &kvm_segment) -> Segment {
    let present = k.present != 0 && k.unusable == 0;
    Segment {
        selector: k.selector,
        attributes: Segment::attributes(
            k.type_,
            k.s != 0,
            k.dpl,
            present,
            k.l != 0,
            k.db != 0,
            k.g != 0,
        ) | (k.avl as u16 & 1) << 8,
        limit: k.limit,
        base: k.base,
    }
}

fn to_dtable(t: TableRegister) -> kvm_dtable {
    kvm_dtable {
        base: t.base,
        limit: t.limit as u16,
        padding: [0; 3],
    }
}

/// A KVM exit, copied out of the kvm_run page.
enum KvmExit {
    /// Port I/O of `count` elements; for an OUT, the first one's bytes.
    Io {
        access: IoAccess,
        count: u32,
        data: [u8; 8],
    },
    MmioRead {
        gpa: u64,
    },
    MmioWrite {
        gpa: u64,
        len: u8,
        data: [u8; 8],
    },
    /// KVM already skipped the (one-byte) HLT.
    Hlt,
    /// A user-space MSR exit (see [`KvmVm::exit_on_msrs`]).
    Msr(MsrAccess),
    Plain(ExitReason, u32),
    Recall,
}

/// The event KVM holds for injection at the next entry, if any.
fn pending_event(events: &kvm_bindings::kvm_vcpu_events) -> EventInfo {
    if events.exception.injected != 0 {
        EventInfo::exception(events.exception.nr, events.exception.has_error_code != 0)
    } else if events.nmi.injected != 0 {
        EventInfo::nmi()
    } else if events.interrupt.injected != 0 && events.interrupt.soft == 0 {
        EventInfo::external_interrupt(events.interrupt.nr)
    } else {
        EventInfo::NONE
    }
}

fn first_bytes(data: &[u8]) -> [u8; 8] {
    let mut bytes = [0; 8];
    let n = data.len().min(8);
    bytes[..n].copy_from_slice(&data[..n]);
    bytes
}

impl KvmVcpu {
    /// A handle other threads use to recall this vCPU.
    pub fn recaller(&self) -> KvmRecaller {
        KvmRecaller(self.recall.clone())
    }

    fn set_immediate_exit(&self, value: u8) {
        store_immediate_exit(self.immediate_exit, value);
    }

    fn write_state(&mut self, s: &mut VcpuState) -> Result<(), BackendError> {
        let charged = s.charged();
        for field in [Field::Pdpte, Field::TprThreshold] {
            if charged.contains(field) {
                return Err(BackendError::Unsupported { field });
            }
        }
        if s.ctrl.value().contains(Controls::NMI_WINDOW) {
            return Err(BackendError::Unsupported { field: Field::Ctrl });
        }
        let gprs = [
            Field::Rax,
            Field::Rcx,
            Field::Rdx,
            Field::Rbx,
            Field::Rsp,
            Field::Rbp,
            Field::Rsi,
            Field::Rdi,
            Field::R8,
            Field::R9,
            Field::R10,
            Field::R11,
            Field::R12,
            Field::R13,
            Field::R14,
            Field::R15,
            Field::Ip,
            Field::Flags,
        ];
        if self.rewound || gprs.iter().any(|f| charged.contains(*f)) {
            let regs = kvm_bindings::kvm_regs {
                rax: s.rax.value(),
                rbx: s.rbx.value(),
                rcx: s.rcx.value(),
                rdx: s.rdx.value(),
                rsi: s.rsi.value(),
                rdi: s.rdi.value(),
                rsp: s.rsp.value(),
                rbp: s.rbp.value(),
                r8: s.r8.value(),
                r9: s.r9.value(),
                r10: s.r10.value(),
                r11: s.r11.value(),
                r12: s.r12.value(),
                r13: s.r13.value(),
                r14: s.r14.value(),
                r15: s.r15.value(),
                rip: s.ip.value(),
                rflags: s.flags.value(),
            };
            self.put_regs(&regs)?;
            self.rewound = false;
        }

        let sreg_fields = [
            Field::Es,
            Field::Cs,
            Field::Ss,
            Field::Ds,
            Field::Fs,
            Field::Gs,
            Field::Ldtr,
            Field::Tr,
            Field::Gdtr,
            Field::Idtr,
            Field::Cr0,
            Field::Cr2,
            Field::Cr3,
            Field::Cr4,
            Field::Efer,
            Field::Tpr,
        ];
        if sreg_fields.iter().any(|f| charged.contains(*f)) {
            let mut sregs = self.fd.get_sregs().map_err(host("KVM_GET_SREGS"))?;
            let segs = [
                (&s.es, &mut sregs.es),
                (&s.cs, &mut sregs.cs),
                (&s.ss, &mut sregs.ss),
                (&s.ds, &mut sregs.ds),
                (&s.fs, &mut sregs.fs),
                (&s.gs, &mut sregs.gs),
                (&s.ldtr, &mut sregs.ldt),
                (&s.tr, &mut sregs.tr),
            ];
            for (ours, theirs) in segs {
                if ours.charged() {
                    *theirs = to_kvm_segment(ours.value());
                }
            }
            if s.gdtr.charged() {
                sregs.gdt = to_dtable(s.gdtr.value());
            }
            if s.idtr.charged() {
                sregs.idt = to_dtable(s.idtr.value());
            }
            for (ours, theirs) in [
                (&s.cr0, &mut sregs.cr0),
                (&s.cr2, &mut sregs.cr2),
                (&s.cr3, &mut sregs.cr3),
                (&s.cr4, &mut sregs.cr4),
                (&s.efer, &mut sregs.efer),
            ] {
                if ours.charged() {
                    *theirs = ours.value();
                }
            }
            if s.tpr.charged() {
                sregs.cr8 = s.tpr.value() as u64;
            }
            self.fd.set_sregs(&sregs).map_err(host("KVM_SET_SREGS"))?;
        }

        if s.inj_info.charged() || s.inj_error.charged() || s.intr_state.charged() {
            let mut events = self
                .fd
                .get_vcpu_events()
                .map_err(host("KVM_GET_VCPU_EVENTS"))?;
            events.flags = 0;
            let info = s.inj_info.value();
            if s.inj_info.charged() && info.valid() {
                match info.kind() {
                    EventKind::ExternalInterrupt => {
                        events.interrupt.injected = 1;
                        events.interrupt.nr = info.vector();
                        events.interrupt.soft = 0;
                    }
                    EventKind::Nmi => events.nmi.injected = 1,
                    EventKind::SoftwareInterrupt => {
                        events.interrupt.injected = 1;
                        events.interrupt.nr = info.vector();
                        events.interrupt.soft = 1;
                    }
                    EventKind::Exception | EventKind::Other(_) => {
                        events.exception.injected = 1;
                        events.exception.nr = info.vector();
                        events.exception.has_error_code = info.has_error_code() as u8;
                        events.exception.error_code = s.inj_error.value();
                    }
                }
            }
            if s.intr_state.charged() {
                let i = s.intr_state.value();
                let mut shadow = 0;
                if i & interruptibility::STI != 0 {
                    shadow |= KVM_X86_SHADOW_INT_STI;
                }
                if i & interruptibility::MOV_SS != 0 {
                    shadow |= KVM_X86_SHADOW_INT_MOV_SS;
                }
                events.interrupt.shadow = shadow as u8;
                events.nmi.masked = (i & interruptibility::NMI != 0) as u8;
                events.flags |= KVM_VCPUEVENT_VALID_SHADOW;
            }
            self.fd
                .set_vcpu_events(&events)
                .map_err(host("KVM_SET_VCPU_EVENTS"))?;
        }

        if s.tsc_offset.charged() {
            let delta = s.tsc_offset.value().wrapping_sub(self.tsc_offset);
            let tsc = self.read_msrs(&[MSR_TSC])?[0].data;
            self.write_msrs(&[(MSR_TSC, tsc.wrapping_add(delta), Field::TscOffset)])?;
            self.tsc_offset = s.tsc_offset.value();
        }
        let msrs: Vec<(u32, u64, Field)> = STATE_MSRS
            .iter()
            .filter(|(_, f)| charged.contains(*f))
            .map(|&(index, f)| (index, msr_field(s, f).value(), f))
            .collect();
        if !msrs.is_empty() {
            self.write_msrs(&msrs)?;
        }

        if s.xcr0.charged() {
            let mut xcrs = self.fd.get_xcrs().map_err(host("KVM_GET_XCRS"))?;
            let n = (xcrs.nr_xcrs as usize).min(xcrs.xcrs.len());
            match xcrs.xcrs[..n].iter_mut().find(|x| x.xcr == 0) {
                Some(x) => x.value = s.xcr0.value(),
                None => return Err(BackendError::Unsupported { field: Field::Xcr0 }),
            }
            self.fd.set_xcrs(&xcrs).map_err(host("KVM_SET_XCRS"))?;
        }
        if s.dr7.charged() {
            let mut dregs = self
                .fd
                .get_debug_regs()
                .map_err(host("KVM_GET_DEBUGREGS"))?;
            dregs.dr7 = s.dr7.value();
            self.fd
                .set_debug_regs(&dregs)
                .map_err(host("KVM_SET_DEBUGREGS"))?;
        }
        if s.fpu.charged() {
            let mut xsave = self.fd.get_xsave().map_err(host("KVM_GET_XSAVE"))?;
            for (word, bytes) in xsave
                .region
                .iter_mut()
                .zip(s.fpu.get().bytes().chunks_exact(4))
            {
                *word = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
            }
            // SAFETY: `xsave` is a complete 4 KiB kvm_xsave obtained from
            // KVM_GET_XSAVE for this vCPU; the guest's CPUID offers no
            // state component beyond 4 KiB (no AMX), so KVM reads no more.
            unsafe { self.fd.set_xsave(&xsave) }.map_err(host("KVM_SET_XSAVE"))?;
        }
        Ok(())
    }

    fn read_msrs(&self, indices: &[u32]) -> Result<Vec<kvm_msr_entry>, BackendError> {
        let entries: Vec<_> = indices
            .iter()
            .map(|&index| kvm_msr_entry {
                index,
                ..Default::default()
            })
            .collect();
        let mut msrs = Msrs::from_entries(&entries).map_err(|_| BackendError::Host {
            op: "KVM_GET_MSRS (too many)",
            code: 0,
        })?;
        let n = self.fd.get_msrs(&mut msrs).map_err(host("KVM_GET_MSRS"))?;
        Ok(msrs.as_slice()[..n].to_vec())
    }

    fn write_msrs(&self, values: &[(u32, u64, Field)]) -> Result<(), BackendError> {
        let entries: Vec<_> = values
            .iter()
            .map(|&(index, data, _)| kvm_msr_entry {
                index,
                data,
                ..Default::default()
            })
            .collect();
        let msrs = Msrs::from_entries(&entries).map_err(|_| BackendError::Host {
            op: "KVM_SET_MSRS (too many)",
            code: 0,
        })?;
        let n = self.fd.set_msrs(&msrs).map_err(host("KVM_SET_MSRS"))?;
        match values.get(n) {
            Some(&(_, _, field)) => Err(BackendError::Unsupported { field }),
            None => Ok(()),
        }
    }

    /// KVM's GPRs: from the kvm_run page when KVM syncs them there.
    fn current_regs(&self) -> Result<kvm_bindings::kvm_regs, BackendError> {
        if self.sync_regs {
            Ok(self.fd.sync_regs().regs)
        } else {
            self.fd.get_regs().map_err(host("KVM_GET_REGS"))
        }
    }

    /// Sets KVM's GPRs: through the kvm_run page (taken at the next
    /// `KVM_RUN`) when KVM syncs them there.
    fn put_regs(&mut self, regs: &kvm_bindings::kvm_regs) -> Result<(), BackendError> {
        if self.sync_regs {
            self.fd.sync_regs_mut().regs = *regs;
            self.fd.set_sync_dirty_reg(SyncReg::Register);
            Ok(())
        } else {
            self.fd.set_regs(regs).map_err(host("KVM_SET_REGS"))
        }
    }

    fn load_regs(&self, s: &mut VcpuState) -> Result<kvm_bindings::kvm_regs, BackendError> {
        let r = self.current_regs()?;
        for (field, value) in [
            (&mut s.rax, r.rax),
            (&mut s.rbx, r.rbx),
            (&mut s.rcx, r.rcx),
            (&mut s.rdx, r.rdx),
            (&mut s.rsi, r.rsi),
            (&mut s.rdi, r.rdi),
            (&mut s.rsp, r.rsp),
            (&mut s.rbp, r.rbp),
            (&mut s.r8, r.r8),
            (&mut s.r9, r.r9),
            (&mut s.r10, r.r10),
            (&mut s.r11, r.r11),
            (&mut s.r12, r.r12),
            (&mut s.r13, r.r13),
            (&mut s.r14, r.r14),
            (&mut s.r15, r.r15),
            (&mut s.ip, r.rip),
            (&mut s.flags, r.rflags),
        ] {
            field.load(value);
        }
        Ok(r)
    }

    /// Everything but the GPRs (see the module docs).
    fn load_rest(&mut self, s: &mut VcpuState) -> Result<(), BackendError> {
        let sregs = self.fd.get_sregs().map_err(host("KVM_GET_SREGS"))?;
        for (ours, theirs) in [
            (&mut s.es, &sregs.es),
            (&mut s.cs, &sregs.cs),
            (&mut s.ss, &sregs.ss),
            (&mut s.ds, &sregs.ds),
            (&mut s.fs, &sregs.fs),
            (&mut s.gs, &sregs.gs),
            (&mut s.ldtr, &sregs.ldt),
            (&mut s.tr, &sregs.tr),
        ] {
            ours.load(from_kvm_segment(theirs));
        }
        for (ours, theirs) in [(&mut s.gdtr, &sregs.gdt), (&mut s.idtr, &sregs.idt)] {
            ours.load(TableRegister {
                limit: theirs.limit as u32,
                base: theirs.base,
            });
        }
        s.cr0.load(sregs.cr0);
        s.cr2.load(sregs.cr2);
        s.cr3.load(sregs.cr3);
        s.cr4.load(sregs.cr4);
        s.efer.load(sregs.efer);
        s.tpr.load(sregs.cr8 as u32);

        let events = self
            .fd
            .get_vcpu_events()
            .map_err(host("KVM_GET_VCPU_EVENTS"))?;
        let mut intr = 0;
        if events.interrupt.shadow as u32 & KVM_X86_SHADOW_INT_STI != 0 {
            intr |= interruptibility::STI;
        }
        if events.interrupt.shadow as u32 & KVM_X86_SHADOW_INT_MOV_SS != 0 {
            intr |= interruptibility::MOV_SS;
        }
        if events.nmi.masked != 0 {
            intr |= interruptibility::NMI;
        }
        s.intr_state.load(intr);
        s.inj_info.load(pending_event(&events));
        s.inj_error.load(events.exception.error_code);

        let indices: Vec<u32> = STATE_MSRS.iter().map(|(i, _)| *i).collect();
        for entry in self.read_msrs(&indices)? {
            if let Some(&(_, field)) = STATE_MSRS.iter().find(|(i, _)| *i == entry.index) {
                msr_field(s, field).load(entry.data);
            }
        }
        let dregs = self
            .fd
            .get_debug_regs()
            .map_err(host("KVM_GET_DEBUGREGS"))?;
        s.dr7.load(dregs.dr7);
        let xcrs = self.fd.get_xcrs().map_err(host("KVM_GET_XCRS"))?;
        let n = (xcrs.nr_xcrs as usize).min(xcrs.xcrs.len());
        if let Some(x) = xcrs.xcrs[..n].iter().find(|x| x.xcr == 0) {
            s.xcr0.load(x.value);
        }
        let xsave = self.fd.get_xsave().map_err(host("KVM_GET_XSAVE"))?;
        let bytes = s.fpu.load_mut().bytes_mut();
        for (chunk, word) in bytes.chunks_exact_mut(4).zip(xsave.region.iter()) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        Ok(())
    }

    /// Lets KVM finish the instruction it is in the middle of without
    /// running guest code. Reads it asks for get zeros; further writes it
    /// reports are queued as completed writes when `keep_writes` (the
    /// instruction is a store KVM executes itself), dropped otherwise (they
    /// come from an instruction the VMM will emulate again).
    fn complete_pending(&mut self, keep_writes: bool) -> Result<(), BackendError> {
        loop {
            self.set_immediate_exit(1);
            let result = self.fd.run();
            let write = match result {
                Err(e) if e.errno() == libc::EINTR => break,
                Err(e) => {
                    self.set_immediate_exit(0);
                    return Err(BackendError::Host {
                        op: "KVM_RUN (completing I/O)",
                        code: e.errno() as i64,
                    });
                }
                Ok(VcpuExit::IoIn(_, data)) | Ok(VcpuExit::MmioRead(_, data)) => {
                    data.fill(0);
                    None
                }
                Ok(VcpuExit::IoOut(port, data)) => Some(CompletedWrite {
                    target: WriteTarget::Port { port },
                    size: data.len().min(8) as u8,
                    data: u64::from_le_bytes(first_bytes(data)),
                }),
                Ok(VcpuExit::MmioWrite(gpa, data)) => Some(CompletedWrite {
                    target: WriteTarget::Memory { gpa },
                    size: data.len().min(8) as u8,
                    data: u64::from_le_bytes(first_bytes(data)),
                }),
                Ok(_) => break,
            };
            if let (true, Some(write)) = (keep_writes, write) {
                self.completed.push_back(write);
            }
        }
        self.set_immediate_exit(0);
        Ok(())
    }

    /// Fills in the answer of the current user-space MSR exit: no error, an
    /// RDMSR gets the guest's own RDX:EAX. The registers are written back
    /// before the guest runs again, so only RIP moves in between.
    fn complete_msr(&mut self, regs: &kvm_bindings::kvm_regs, write: bool) {
        let run = self.fd.get_kvm_run();
        // SAFETY: only called right after a KVM_EXIT_X86_RDMSR/WRMSR, so
        // `msr` is the valid member of the kvm_run union.
        let msr = unsafe { &mut run.__bindgen_anon_1.msr };
        msr.error = 0;
        if !write {
            msr.data = (regs.rdx << 32) | (regs.rax & 0xffff_ffff);
        }
    }

    /// The data area of the current `KVM_EXIT_IO`.
    fn io_data(&mut self) -> &mut [u8] {
        let run = self.fd.get_kvm_run();
        // SAFETY: only called right after a KVM_EXIT_IO, so `io` is the
        // valid member of the kvm_run union.
        let io = unsafe { run.__bindgen_anon_1.io };
        let len = io.size as usize * io.count as usize;
        let base = ptr::from_mut(run).cast::<u8>();
        // SAFETY: KVM puts the `len` data bytes at `data_offset` inside the
        // kvm_run mapping, which lives as long as `self.fd`; the slice
        // borrows `self` mutably, so nothing else touches the mapping.
        unsafe { std::slice::from_raw_parts_mut(base.add(io.data_offset as usize), len) }
    }

    fn recall_exit(s: &mut VcpuState) {
        s.exit = Exit {
            reason: ExitReason::Recall,
            raw: RawExit::Synthetic,
        };
        s.ip_len.load(0);
    }
}

impl Backend for KvmVcpu {
    type Recaller = KvmRecaller;

    fn run(&mut self, s: &mut VcpuState) -> Result<(), BackendError> {
        if !self.on_handler_thread() {
            return Err(BackendError::Dead);
        }
        self.write_state(s)?;
        let window = s.ctrl.value().contains(Controls::INTERRUPT_WINDOW);
        self.fd.get_kvm_run().request_interrupt_window = window as u8;
        s.inj_info.load(EventInfo::NONE);
        s.qual.load([0; 2]);

        s.ip_len.load(0);
        if let Some(write) = self.completed.pop_front() {
            s.exit = Exit {
                reason: ExitReason::Completed(write),
                raw: RawExit::Synthetic,
            };
            return Ok(());
        }
        self.set_immediate_exit(0);
        if self.recall.pending.swap(false, Ordering::SeqCst) {
            self.load_regs(s)?;
            self.load_rest(s)?;
            Self::recall_exit(s);
            return Ok(());
        }
        let mut exit = match self.fd.run() {
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => KvmExit::Recall,
            Err(e) => {
                return Err(BackendError::Host {
                    op: "KVM_RUN",
                    code: e.errno() as i64,
                })
            }
            Ok(VcpuExit::IoIn(port, data)) => KvmExit::Io {
                access: IoAccess {
                    port,
                    size: 0,
                    direction: Direction::In,
                    string: false,
                    rep: false,
                },
                count: 0,
                data: first_bytes(data),
            },
            Ok(VcpuExit::IoOut(port, data)) => KvmExit::Io {
                access: IoAccess {
                    port,
                    size: 0,
                    direction: Direction::Out,
                    string: false,
                    rep: false,
                },
                count: 0,
                data: first_bytes(data),
            },
            Ok(VcpuExit::MmioRead(gpa, _)) => KvmExit::MmioRead { gpa },
            Ok(VcpuExit::MmioWrite(gpa, data)) => KvmExit::MmioWrite {
                gpa,
                len: data.len().min(8) as u8,
                data: first_bytes(data),
            },
            Ok(VcpuExit::Hlt) => KvmExit::Hlt,
            Ok(VcpuExit::X86Rdmsr(msr)) => KvmExit::Msr(MsrAccess {
                index: msr.index,
                write: false,
            }),
            Ok(VcpuExit::X86Wrmsr(msr)) => KvmExit::Msr(MsrAccess {
                index: msr.index,
                write: true,
            }),
            Ok(VcpuExit::IrqWindowOpen) => KvmExit::Plain(
                ExitReason::InterruptWindow,
                kvm_bindings::KVM_EXIT_IRQ_WINDOW_OPEN,
            ),
            Ok(VcpuExit::Shutdown) => {
                KvmExit::Plain(ExitReason::Shutdown, kvm_bindings::KVM_EXIT_SHUTDOWN)
            }
            Ok(VcpuExit::SystemEvent(..)) => {
                KvmExit::Plain(ExitReason::Shutdown, kvm_bindings::KVM_EXIT_SYSTEM_EVENT)
            }
            Ok(VcpuExit::FailEntry(reason, _)) => {
                s.qual.load([reason, 0]);
                KvmExit::Plain(ExitReason::InvalidState, kvm_bindings::KVM_EXIT_FAIL_ENTRY)
            }
            Ok(VcpuExit::Intr) => KvmExit::Recall,
            Ok(VcpuExit::Hypercall(_)) => {
                KvmExit::Plain(ExitReason::Hypercall, kvm_bindings::KVM_EXIT_HYPERCALL)
            }
            Ok(VcpuExit::InternalError) => {
                KvmExit::Plain(ExitReason::Other, kvm_bindings::KVM_EXIT_INTERNAL_ERROR)
            }
            Ok(VcpuExit::Unsupported(code)) => KvmExit::Plain(ExitReason::Other, code),
            Ok(_) => KvmExit::Plain(ExitReason::Other, kvm_bindings::KVM_EXIT_UNKNOWN),
        };
        if let KvmExit::Io { access, count, .. } = &mut exit {
            // SAFETY: after KVM_EXIT_IO the `io` member of the kvm_run union
            // is the valid one.
            let io = unsafe { self.fd.get_kvm_run().__bindgen_anon_1.io };
            access.size = io.size;
            *count = io.count;
        }

        let before = self.load_regs(s)?;
        let run = self.fd.get_kvm_run();
        let (if_flag, ready) = (run.if_flag != 0, run.ready_for_interrupt_injection != 0);
        s.tpr.load(run.cr8 as u32);
        let shadow = if if_flag && !ready {
            interruptibility::STI
        } else {
            0
        };
        let raw = RawExit::Kvm;
        match exit {
            KvmExit::Io {
                mut access,
                count,
                data,
            } => {
                s.exit = Exit {
                    reason: ExitReason::Io(access),
                    raw: raw(kvm_bindings::KVM_EXIT_IO),
                };
                if access.direction == Direction::In && count == 1 {
                    // Feed the IN with the current RAX: completing it then
                    // changes nothing but RIP.
                    let bytes = before.rax.to_le_bytes();
                    let area = self.io_data();
                    let n = area.len().min(8);
                    area[..n].copy_from_slice(&bytes[..n]);
                }
                self.complete_pending(false)?;
                let after = self.current_regs()?;
                let moved =
                    after.rip != before.rip || after.rsi != before.rsi || after.rdi != before.rdi;
                if access.direction == Direction::Out && !moved {
                    // KVM executed this OUT (an OUTS element) before exiting.
                    s.exit.reason = ExitReason::Completed(CompletedWrite {
                        target: WriteTarget::Port { port: access.port },
                        size: access.size,
                        data: u64::from_le_bytes(data),
                    });
                    s.intr_state.load(shadow);
                } else {
                    access.string = match access.direction {
                        Direction::Out => after.rsi != before.rsi,
                        Direction::In => after.rdi != before.rdi,
                    } || count > 1;
                    access.rep = access.string && after.rcx != before.rcx;
                    s.exit.reason = ExitReason::Io(access);
                    self.rewound = true;
                    if access.string {
                        self.load_rest(s)?;
                    } else {
                        if after.rip > before.rip {
                            s.ip_len.load(after.rip - before.rip);
                        }
                        s.intr_state.load(shadow);
                    }
                }
            }
            KvmExit::MmioRead { gpa } => {
                self.complete_pending(false)?;
                let fault = PageFault {
                    gpa,
                    access: Access::Read,
                    present: false,
                };
                s.exit = Exit {
                    reason: ExitReason::NestedPageFault(fault),
                    raw: raw(kvm_bindings::KVM_EXIT_MMIO),
                };
                s.qual.load([0, gpa]);
                self.rewound = true;
                self.load_rest(s)?;
            }
            KvmExit::MmioWrite { gpa, len, data } => {
                // KVM already moved past the store; later fragments of it
                // (a store wider than 8 bytes) arrive while completing.
                self.complete_pending(true)?;
                s.exit = Exit {
                    reason: ExitReason::Completed(CompletedWrite {
                        target: WriteTarget::Memory { gpa },
                        size: len,
                        data: u64::from_le_bytes(data),
                    }),
                    raw: raw(kvm_bindings::KVM_EXIT_MMIO),
                };
                s.qual.load([0, gpa]);
                s.intr_state.load(shadow);
            }
            KvmExit::Msr(access) => {
                s.exit = Exit {
                    reason: ExitReason::Msr(access),
                    raw: raw(if access.write {
                        kvm_bindings::KVM_EXIT_X86_WRMSR
                    } else {
                        kvm_bindings::KVM_EXIT_X86_RDMSR
                    }),
                };
                // Let KVM finish the instruction as a no-op (an RDMSR
                // reads back RDX:EAX), then show the state before it.
                self.complete_msr(&before, access.write);
                self.complete_pending(false)?;
                let after = self.current_regs()?;
                s.ip_len.load(after.rip.wrapping_sub(before.rip));
                s.intr_state.load(shadow);
                self.rewound = true;
            }
            KvmExit::Hlt => {
                s.exit = Exit {
                    reason: ExitReason::Hlt,
                    raw: raw(kvm_bindings::KVM_EXIT_HLT),
                };
                s.ip.load(before.rip.wrapping_sub(1));
                s.ip_len.load(1);
                self.rewound = true;
                self.load_rest(s)?;
            }
            KvmExit::Plain(reason, code) => {
                s.exit = Exit {
                    reason,
                    raw: raw(code),
                };
                self.load_rest(s)?;
            }
            KvmExit::Recall => {
                self.recall.pending.store(false, Ordering::SeqCst);
                Self::recall_exit(s);
                self.load_rest(s)?;
            }
        }
        s.tsc_offset.load(self.tsc_offset);
        Ok(())
    }

    fn recaller(&self) -> KvmRecaller {
        KvmRecaller(self.recall.clone())
    }

    fn on_handler_thread(&self) -> bool {
        thread::current().id() == self.handler
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_survive_the_round_trip_through_kvm_segment() {
        let code64 = Segment {
            selector: 0x08,
            attributes: Segment::attributes(0xb, true, 0, true, true, false, true),
            limit: 0xffff_ffff,
            base: 0,
        };
        let k = to_kvm_segment(code64);
        assert_eq!(
            (k.type_, k.s, k.present, k.l, k.db, k.g, k.unusable),
            (0xb, 1, 1, 1, 0, 1, 0)
        );
        assert_eq!(from_kvm_segment(&k), code64);

        let user_data = Segment {
            selector: 0x23,
            attributes: Segment::attributes(0x3, true, 3, true, false, true, true) | 1 << 8,
            limit: 0xfffff,
            base: 0x1000,
        };
        let k = to_kvm_segment(user_data);
        assert_eq!((k.dpl, k.avl), (3, 1));
        assert_eq!(from_kvm_segment(&k), user_data);
    }

    #[test]
    fn absent_segments_are_unusable_for_kvm_and_unusable_ones_absent_for_us() {
        let ldt = Segment {
            selector: 0,
            attributes: Segment::attributes(0x2, false, 0, false, false, false, false),
            limit: 0,
            base: 0,
        };
        assert_eq!(to_kvm_segment(ldt).unusable, 1);
        let mut k = to_kvm_segment(Segment {
            attributes: Segment::attributes(0x3, true, 0, true, false, true, true),
            ..ldt
        });
        k.unusable = 1;
        assert_eq!(from_kvm_segment(&k).attributes & Segment::PRESENT, 0);
    }

    #[test]
    fn every_state_msr_maps_to_its_own_field() {
        let mut s = VcpuState::default();
        for (i, &(_, field)) in STATE_MSRS.iter().enumerate() {
            msr_field(&mut s, field).charge(i as u64 + 1);
        }
        let charged: Vec<Field> = s.charged().iter().collect();
        assert_eq!(charged.len(), STATE_MSRS.len());
        assert_eq!(s.kernel_gs_base.value(), 8);
        assert_eq!(s.xss.value(), 11);
    }

    #[test]
    fn an_event_kvm_still_holds_is_reported_as_vectoring_information() {
        let mut events = kvm_bindings::kvm_vcpu_events::default();
        assert_eq!(pending_event(&events), EventInfo::NONE);
        events.interrupt.injected = 1;
        events.interrupt.nr = 0xec;
        assert_eq!(pending_event(&events), EventInfo::external_interrupt(0xec));
        events.interrupt.soft = 1;
        assert_eq!(pending_event(&events), EventInfo::NONE);
        events.nmi.injected = 1;
        assert_eq!(pending_event(&events), EventInfo::nmi());
        events.exception.injected = 1;
        events.exception.nr = 14;
        events.exception.has_error_code = 1;
        assert_eq!(pending_event(&events), EventInfo::exception(14, true));
    }

    #[test]
    fn first_bytes_pads_and_truncates() {
        assert_eq!(first_bytes(&[1, 2]), [1, 2, 0, 0, 0, 0, 0, 0]);
        assert_eq!(first_bytes(&[9; 12]), [9; 8]);
    }

    #[test]
    fn setup_errors_say_what_to_check() {
        let e = KvmError::Open(errno::Error::new(libc::ENOENT)).to_string();
        assert!(e.contains("/dev/kvm") && e.contains("nested"), "{e}");
        assert!(KvmError::ApiVersion(11).to_string().contains("12"));
    }
}
