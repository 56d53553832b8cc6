//! The Tern hypercall ABI, shared by the kernel and user level.
//!
//! A hypercall is the `syscall` instruction with the hypercall number in `rax`
//! and up to five arguments in `rdi, rsi, rdx, r10, r8`. The kernel returns a
//! [`Status`] in `rax` and results in `rdi`/`rsi`; every other register except
//! `rcx`/`r11` (clobbered by `syscall`) is preserved. Message words travel in the
//! calling thread's UTCB ([`Utcb`]). See `docs/hypercall-abi.md`.
#![no_std]

pub mod sel;
pub mod syscall;
pub mod vcpu;

/// Hypercall numbers.
#[repr(u64)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hypercall {
    /// `call(pt_sel)`: send the UTCB message through a portal, wait for the reply.
    Call = 0,
    /// `reply()`: answer the current call with the UTCB message (portal handlers only).
    Reply = 1,
    /// `create_pd(dst_sel, kmem_quota)`.
    CreatePd = 2,
    /// `create_ec(dst_sel, pd_sel, cpu | flags << 32, utcb, sp_or_ip)`; see [`EcKind`].
    CreateEc = 3,
    /// `create_sc(dst_sel, ec_sel, priority, quantum_us)`.
    CreateSc = 4,
    /// `create_pt(dst_sel, ec_sel, entry_ip, badge)`.
    CreatePt = 5,
    /// `create_sm(dst_sel, initial_count, chain_sel_or_NONE)`.
    CreateSm = 6,
    /// `revoke(crd, include_self)`.
    Revoke = 7,
    /// `lookup(crd) -> crd`.
    Lookup = 8,
    /// `ec_ctrl(ec_sel, op)`.
    EcCtrl = 9,
    /// `sc_ctrl(sc_sel) -> consumed_us`.
    ScCtrl = 10,
    /// `sm_ctrl(sm_sel, op, timeout_us)`; see [`SmOp`].
    SmCtrl = 11,
    /// `assign_gsi(sm_sel, cpu)`: route the interrupt behind a GSI semaphore to a CPU and unmask it.
    AssignGsi = 12,
    /// `delegate(dst_pd_sel, src_crd, dst_base)`: give resources of the caller to another PD.
    Delegate = 13,
    /// `console_write(len)`: print `len` bytes from the UTCB data area on the kernel console.
    ConsoleWrite = 14,
    /// `vcpu_run(vcpu_sel, charged_mask)`: run a vCPU until its next exit (see [`vcpu`]).
    VcpuRun = 15,
    /// `console_read(max) -> count`: roottask only: moves up to `max` bytes the
    /// console received into the UTCB data area (as `console_write` takes them) and
    /// enables the console's receive interrupt (ISA IRQ 4) for the next ones.
    ConsoleRead = 16,
}

impl Hypercall {
    pub const COUNT: u64 = 17;
    pub fn from_raw(n: u64) -> Option<Self> {
        use Hypercall::*;
        Some(match n {
            0 => Call,
            1 => Reply,
            2 => CreatePd,
            3 => CreateEc,
            4 => CreateSc,
            5 => CreatePt,
            6 => CreateSm,
            7 => Revoke,
            8 => Lookup,
            9 => EcCtrl,
            10 => ScCtrl,
            11 => SmCtrl,
            12 => AssignGsi,
            13 => Delegate,
            14 => ConsoleWrite,
            15 => VcpuRun,
            16 => ConsoleRead,
            _ => return None,
        })
    }
}

/// What a hypercall returns in `rax`.
#[repr(u64)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Success = 0,
    /// A semaphore down timed out.
    Timeout = 1,
    /// The call was aborted: the portal or its handler went away, or the handler aborted.
    Aborted = 2,
    /// The hypercall number does not exist.
    BadHypercall = 3,
    /// A selector names no capability of the needed type, or the capability lacks the right.
    BadCapability = 4,
    /// An argument is out of range or malformed.
    BadParameter = 5,
    /// The CPU does not exist, or caller and portal handler are on different CPUs.
    BadCpu = 6,
    /// The protection domain's kernel-memory quota (or the kernel heap) is exhausted.
    OutOfMemory = 7,
    /// The destination selector or range is already occupied.
    Occupied = 8,
    /// The CPU lacks a feature the operation needs (hardware virtualization: SVM with
    /// NPT, or VMX with EPT and unrestricted guest).
    NoFeature = 9,
}

impl Status {
    pub const ALL: [Status; 10] = [
        Status::Success,
        Status::Timeout,
        Status::Aborted,
        Status::BadHypercall,
        Status::BadCapability,
        Status::BadParameter,
        Status::BadCpu,
        Status::OutOfMemory,
        Status::Occupied,
        Status::NoFeature,
    ];
    pub fn from_raw(v: u64) -> Option<Self> {
        Self::ALL.get(v as usize).copied()
    }
    pub fn name(self) -> &'static str {
        match self {
            Status::Success => "success",
            Status::Timeout => "timeout",
            Status::Aborted => "aborted",
            Status::BadHypercall => "bad-hypercall",
            Status::BadCapability => "bad-capability",
            Status::BadParameter => "bad-parameter",
            Status::BadCpu => "bad-cpu",
            Status::OutOfMemory => "out-of-memory",
            Status::Occupied => "occupied",
            Status::NoFeature => "no-feature",
        }
    }
}

/// Kinds of execution context for `create_ec` (bits 32.. of the third argument).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EcKind {
    /// A thread with its own scheduling context (bound later with `create_sc`);
    /// the last argument is its initial instruction pointer, the stack pointer is
    /// taken from the first message word of the caller's UTCB.
    Global = 0,
    /// A portal handler: runs only when called, on the caller's time; the last
    /// argument is its stack pointer (reset on every call).
    Local = 1,
    /// A virtual CPU of a VM (the PD argument must be a VM). The UTCB argument is where
    /// the kernel maps its state page ([`vcpu::VcpuState`]) in the *creating* PD; the
    /// stack and instruction pointer arguments are ignored. Run it with `vcpu_run`.
    Vcpu = 2,
}

/// `create_pd` flag (third argument): the new PD is a virtual machine whose memory
/// space is guest-physical (nested paging), for vCPUs.
pub const PD_VM: u64 = 1;

/// Semaphore operations for `sm_ctrl`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmOp {
    Up = 0,
    /// Wait until the count is positive, then decrement it. For a semaphore that
    /// others are chained to, `rdi` returns which source fired: the selector the
    /// source was created at (in its creator's capability space).
    Down = 1,
    /// Like `Down` but takes the whole count (returned in `rdi`).
    DownZero = 2,
}

/// `ec_ctrl` operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EcOp {
    /// Force the EC into the kernel (its recall exception is delivered on next entry).
    Recall = 0,
    /// Stop the calling EC for good (thread exit).
    Exit = 1,
    /// Set the whole user state of a global EC that has no scheduling context yet
    /// (so it has never run) from the caller's UTCB words, laid out like an exception
    /// message ([`exc`]: RIP, RSP, RFLAGS, the GPRs, FS base). This is how a new
    /// thread starts as a copy of another (e.g. Linux `clone`).
    SetState = 2,
}

/// Resource kinds of a capability range descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrdKind {
    Null = 0,
    Memory = 1,
    Io = 2,
    Object = 3,
}

/// Memory rights.
pub mod mem_rights {
    pub const R: u8 = 1;
    pub const W: u8 = 2;
    pub const X: u8 = 4;
    pub const RWX: u8 = 7;
}

/// Object capability rights (meaning per object type: PT call; SM up/down; PD/EC/SC control).
pub mod obj_rights {
    pub const USE: u8 = 1;
    pub const CTRL: u8 = 2;
    pub const ALL: u8 = 0x1f;
}

/// A capability range descriptor: `kind` (2 bits), `rights` (5 bits), `order` (6 bits:
/// 2^order units) and `base` (51 bits: page number, port, or selector).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crd(pub u64);

impl Crd {
    pub const NULL: Crd = Crd(0);
    pub fn new(kind: CrdKind, base: u64, order: u8, rights: u8) -> Crd {
        Crd((kind as u64)
            | ((rights as u64 & 0x1f) << 2)
            | ((order as u64 & 0x3f) << 7)
            | (base << 13))
    }
    pub fn mem(page: u64, order: u8, rights: u8) -> Crd {
        Crd::new(CrdKind::Memory, page, order, rights)
    }
    pub fn io(port: u64, order: u8) -> Crd {
        Crd::new(CrdKind::Io, port, order, 1)
    }
    pub fn obj(sel: u64, rights: u8) -> Crd {
        Crd::new(CrdKind::Object, sel, 0, rights)
    }
    pub fn kind(self) -> CrdKind {
        match self.0 & 3 {
            1 => CrdKind::Memory,
            2 => CrdKind::Io,
            3 => CrdKind::Object,
            _ => CrdKind::Null,
        }
    }
    pub fn rights(self) -> u8 {
        ((self.0 >> 2) & 0x1f) as u8
    }
    pub fn order(self) -> u8 {
        ((self.0 >> 7) & 0x3f) as u8
    }
    pub fn base(self) -> u64 {
        self.0 >> 13
    }
}

/// Number of 64-bit message words in a UTCB.
pub const UTCB_WORDS: usize = 500;

/// The user thread control block: one page per EC, shared between the thread and
/// the kernel. A message is `untyped` words followed by `typed` items of two words
/// each (a [`Crd`] to delegate and the destination offset in the receiver's window).
#[repr(C)]
pub struct Utcb {
    /// Untyped message words.
    pub untyped: u32,
    /// Typed items (delegations) after the untyped words.
    pub typed: u32,
    /// Where object capabilities delegated to this EC land (selector window).
    pub recv_obj: Crd,
    /// Where memory delegated to this EC lands (page window).
    pub recv_mem: Crd,
    pub words: [u64; UTCB_WORDS],
}

/// Exception messages: the words a handler portal receives for a fault (or a
/// reflected system call): the vector and fault details, then the EC's whole user
/// register state, so that a handler can emulate what the EC asked for.
pub mod exc {
    /// Word indices in the exception message.
    pub const VECTOR: usize = 0;
    pub const ERROR: usize = 1;
    pub const ADDR: usize = 2;
    pub const RIP: usize = 3;
    pub const RSP: usize = 4;
    pub const RFLAGS: usize = 5;
    pub const RAX: usize = 6;
    pub const RBX: usize = 7;
    pub const RCX: usize = 8;
    pub const RDX: usize = 9;
    pub const RSI: usize = 10;
    pub const RDI: usize = 11;
    pub const RBP: usize = 12;
    /// `R8 + n` is register r(8+n), up to r15.
    pub const R8: usize = 13;
    pub const FS_BASE: usize = 21;
    pub const WORDS: usize = 22;
    /// Reply word 0: what the kernel does with the faulting EC.
    /// Resume it (a reply of at least 3 words also sets RIP from word 1 and RSP from word 2).
    pub const RESUME: u64 = 0;
    /// Kill it, with a kernel log line.
    pub const KILL: u64 = 1;
    /// End it silently (a thread that exited).
    pub const END: u64 = 2;
    /// Resume it with the whole state of a full-length reply ([`WORDS`] words, same
    /// layout as the message; RFLAGS keeps only the arithmetic flags, DF and TF;
    /// non-canonical RIP, RSP or FS base end the EC).
    pub const SET_STATE: u64 = 3;
    /// Vector of the recall exception.
    pub const RECALL: u64 = 32;
    /// Vector of a reflected system call: a `syscall` of an EC created with
    /// [`crate::ec_flags::REFLECT_SYSCALLS`] whose `rax` lacks [`crate::NATIVE_TAG`].
    pub const SYSCALL: u64 = 33;
    /// Number of exception portals per event base.
    pub const PORTALS: u64 = 34;
}

/// A hypercall number carrying this tag in its upper half is always a hypercall,
/// even for an EC whose system calls are reflected to user level. (Linux answers
/// such a number with ENOSYS, which is how a program tells where it runs.)
pub const NATIVE_TAG: u64 = 0x5445_524e << 32;

/// System calls a Linux program makes to the posix-server that runs it. Linux
/// has no such numbers and answers ENOSYS, which is how a program tells where it runs.
pub mod posix {
    /// Returns the calling thread's UTCB address, for native IPC.
    pub const SYSCALL_UTCB: u64 = 0x5445_0000;
    /// Capability selectors `[PROGRAM_SELS.0, PROGRAM_SELS.1)` are the program's
    /// to use; capabilities it receives land in the window from `RECV_BASE`
    /// (2^`RECV_ORDER` selectors).
    pub const PROGRAM_SELS: (u64, u64) = (256, 1024);
    pub const RECV_BASE: u64 = 1024;
    pub const RECV_ORDER: u8 = 10;
    /// Places the calling thread's next `clone`: `rdi` = the CPU of the new
    /// thread and its handler (one of the component's `cpus`; `u64::MAX`:
    /// round robin, as without this call), `rsi` = 1 for a background thread
    /// (one priority below the component's: any other thread of it that
    /// becomes ready on that CPU preempts it), 0 for a normal one. Answers 0,
    /// or -EINVAL for a CPU the component may not use. Used once by that
    /// `clone`; `rdi` = `rsi` = `u64::MAX` withdraws the request.
    pub const SYSCALL_NEXT_THREAD: u64 = 0x5445_0001;
    /// Addresses `[PROGRAM_MAPPED.0, PROGRAM_MAPPED.1)` are the program's to fill
    /// through the roottask (`OP_MAP`) or the kernel (vCPU state pages, UTCBs):
    /// the posix-server never places a mapping there, and a fault there is a
    /// crash. A VMM keeps guest RAM and vCPU state pages here (7 TiB, between
    /// the boot modules and the main thread's stack).
    pub const PROGRAM_MAPPED: (u64, u64) = (0x6800_0000_0000, 0x6f00_0000_0000);
}

/// Flags of `create_ec` (bits 24..32 of the packed argument).
pub mod ec_flags {
    /// `syscall` without [`crate::NATIVE_TAG`] becomes exception [`crate::exc::SYSCALL`]:
    /// the EC runs a foreign binary (a Linux program) whose system calls user level serves.
    pub const REFLECT_SYSCALLS: u8 = 1;
}

/// One RAM block the roottask owns (seen at `sel::PHYS_WINDOW + base`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct HipMem {
    pub base: u64,
    pub size: u64,
}

/// A boot module (its memory is part of the roottask's physical window).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct HipModule {
    pub base: u64,
    pub size: u64,
    /// NUL-padded command line: module name first (cut to
    /// [`HIP_MODULE_CMDLINE`] - 1 bytes).
    pub cmdline: [u8; HIP_MODULE_CMDLINE],
}

pub const HIP_MAGIC: u64 = u64::from_le_bytes(*b"TERNHIP1");
pub const HIP_MEM_MAX: usize = 64;
/// Boot modules the kernel passes on (more are ignored, and the kernel says so).
pub const HIP_MODULES_MAX: usize = 40;
/// Bytes of a module's command line in the HIP, the terminating NUL included.
pub const HIP_MODULE_CMDLINE: usize = 56;

/// The Hypervisor Information Page, mapped read-only into the roottask at `sel::HIP_ADDR`.
#[repr(C)]
pub struct Hip {
    pub magic: u64,
    pub cpu_count: u32,
    pub mem_count: u32,
    pub module_count: u32,
    pub _pad: u32,
    pub tsc_per_us: u64,
    /// Kernel memory the roottask may hand out as PD quotas.
    pub kmem_quota: u64,
    pub mem: [HipMem; HIP_MEM_MAX],
    pub modules: [HipModule; HIP_MODULES_MAX],
}

const _: () = assert!(core::mem::size_of::<Hip>() <= 4096);
