//! Why a vCPU stopped: the vendor-neutral [`ExitReason`] plus the raw code.
//!
//! Owns: the neutral exit vocabulary and the details a VMM needs to handle
//! each exit. Must not touch: decoding (see [`vmx`](crate::vmx),
//! [`svm`](crate::svm) and the backends) or handling.

/// The exit that stopped the vCPU: neutral reason and the raw code it came
/// from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Exit {
    pub reason: ExitReason,
    pub raw: RawExit,
}

/// The hardware's (or host's) own exit code.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RawExit {
    /// Made up by the API or backend (startup, recall).
    #[default]
    Synthetic,
    /// VMX basic exit reason (bit 31 set for a VM-entry failure).
    Vmx(u32),
    /// SVM EXITCODE.
    Svm(u64),
    /// Linux `KVM_EXIT_*` code (the KVM backend does not see the hardware's).
    Kvm(u32),
}

/// Direction of a port or memory access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Guest reads (IN, load).
    In,
    /// Guest writes (OUT, store).
    Out,
}

/// A port I/O instruction. For a non-string OUT the value is in the low
/// `size` bytes of `rax`; for IN the VMM charges `rax` with the value
/// merged into its low `size` bytes. String forms use `rsi`/`rdi`/`rcx`
/// and need instruction emulation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoAccess {
    pub port: u16,
    /// 1, 2 or 4 bytes.
    pub size: u8,
    pub direction: Direction,
    /// INS/OUTS.
    pub string: bool,
    /// REP prefix.
    pub rep: bool,
}

/// What kind of access hit an unmapped or protected guest-physical page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    Execute,
}

/// A nested (EPT/NPT) page fault: the guest touched guest-physical memory
/// that is not mapped (or not with this permission). MMIO arrives this way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageFault {
    pub gpa: u64,
    pub access: Access,
    /// A mapping exists but forbids the access (false: nothing mapped).
    pub present: bool,
}

/// Where a [`CompletedWrite`] went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteTarget {
    /// Guest-physical memory that is not RAM (MMIO or unmapped).
    Memory {
        gpa: u64,
    },
    Port {
        port: u16,
    },
}

/// A guest store or OUT the host already executed on the guest's behalf:
/// KVM emulates MMIO stores and OUTS itself and only reports the data.
/// The instruction is complete and `ip` is past it; the VMM delivers the
/// low `size` bytes of `data` to its device and resumes without skipping
/// anything. Hardware backends never report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompletedWrite {
    pub target: WriteTarget,
    /// 1, 2, 4 or 8 bytes.
    pub size: u8,
    pub data: u64,
}

/// A guest RDMSR/WRMSR. The index is `rcx`; a WRMSR's value is
/// `edx:eax`, an RDMSR's answer goes there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsrAccess {
    pub index: u32,
    pub write: bool,
}

/// A control-register access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CrAccess {
    pub cr: u8,
    pub op: CrOp,
}

/// The instruction behind a [`CrAccess`]. `gpr` is the x86 register number
/// (0 = RAX ... 15 = R15), `None` where the hardware did not decode it
/// (SVM without decode assists).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrOp {
    /// MOV to CRn.
    Write {
        gpr: Option<u8>,
    },
    /// MOV from CRn.
    Read {
        gpr: Option<u8>,
    },
    Clts,
    /// LMSW with its 16-bit source, `None` when not decoded.
    Lmsw {
        source: Option<u16>,
    },
}

/// An exception or NMI the guest raised that the VMM intercepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExceptionExit {
    pub vector: u8,
    pub error_code: Option<u32>,
}

/// Why the vCPU stopped, the same for VMX, SVM and KVM.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExitReason {
    /// Synthetic, before the first run: set the initial state and resume.
    #[default]
    Startup,
    /// Synthetic: another thread asked for the handler (recall).
    Recall,
    Io(IoAccess),
    NestedPageFault(PageFault),
    /// A write the host already performed (KVM only), see [`CompletedWrite`].
    Completed(CompletedWrite),
    Msr(MsrAccess),
    Cpuid,
    Hlt,
    Pause,
    /// The guest can take an external interrupt now (requested through
    /// [`Controls::INTERRUPT_WINDOW`](crate::Controls::INTERRUPT_WINDOW)).
    InterruptWindow,
    NmiWindow,
    CrAccess(CrAccess),
    /// MOV to/from a debug register.
    DrAccess,
    Invlpg,
    Xsetbv,
    /// VMCALL / VMMCALL.
    Hypercall,
    Rdtsc,
    Rdtscp,
    Rdpmc,
    Wbinvd,
    Invd,
    Monitor,
    Mwait,
    TaskSwitch,
    /// An intercepted exception.
    Exception(ExceptionExit),
    Nmi,
    /// A host interrupt arrived while the guest ran.
    ExternalInterrupt,
    /// INIT signal (SMP start-up).
    Init,
    /// Startup IPI with its vector (start address = vector << 12).
    Sipi {
        vector: u8,
    },
    /// The guest triple-faulted (VMX triple fault, SVM SHUTDOWN).
    Shutdown,
    /// The hardware refused to enter the guest with this state.
    InvalidState,
    /// Any other exit; see [`Exit::raw`].
    Other,
}
