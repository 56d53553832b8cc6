//! The vCPU ABI: the state page a VMM shares with the kernel, and what `vcpu_run`
//! returns in it. See `docs/vcpu.md`.
//!
//! A VM is a protection domain created with [`crate::PD_VM`]; its memory space is
//! guest-physical (NPT or EPT), filled by `delegate`. A vCPU is an EC of kind
//! [`crate::EcKind::Vcpu`] in a VM; at creation the kernel maps one page holding a
//! [`VcpuState`] into the *creator's* PD at the address given as the UTCB argument.
//!
//! `vcpu_run(vcpu_sel, charged)` loads the groups of fields whose bits are set in
//! `charged` (see [`field`]) from the page, runs the guest until an exit the VMM must
//! see, and writes the groups that may have changed back (`valid` says which: the
//! groups a guest changes by itself, [`field::GUEST`], and those charged since the
//! last exit; the others keep what an earlier exit wrote) together with
//! [`ExitInfo`]. The first run returns [`exit_kind::STARTUP`] without entering the
//! guest and writes every group, and so does the first exit after it.

/// Bits of the charged mask (`vcpu_run`'s second argument) and of [`VcpuState::valid`].
pub mod field {
    /// `gpr`: the 16 general registers (including `rsp`).
    pub const GPR: u64 = 1 << 0;
    /// `rip` and `rflags`.
    pub const RIP: u64 = 1 << 1;
    /// `cr0`, `cr2`, `cr3`, `cr4`.
    pub const CR: u64 = 1 << 2;
    /// `efer`.
    pub const EFER: u64 = 1 << 3;
    /// `dr7`.
    pub const DR7: u64 = 1 << 4;
    /// `es`, `cs`, `ss`, `ds`.
    pub const SEG: u64 = 1 << 5;
    /// `fs`, `gs`.
    pub const FS_GS: u64 = 1 << 6;
    /// `tr`, `ldtr`.
    pub const TR_LDTR: u64 = 1 << 7;
    /// `gdtr`, `idtr`.
    pub const DESC: u64 = 1 << 8;
    /// `sysenter_cs`, `sysenter_esp`, `sysenter_eip`.
    pub const SYSENTER: u64 = 1 << 9;
    /// `star`, `lstar`, `cstar`, `fmask`, `kernel_gs_base`.
    pub const SYSCALL: u64 = 1 << 10;
    /// `pat`.
    pub const PAT: u64 = 1 << 11;
    /// `xcr0`.
    pub const XCR0: u64 = 1 << 12;
    /// `tsc_offset`.
    pub const TSC_OFFSET: u64 = 1 << 13;
    /// `inject`, `inject_error`, `inject_len`: an event to deliver at the next entry.
    pub const INJECT: u64 = 1 << 14;
    /// `interruptibility`, `activity`.
    pub const INTR_STATE: u64 = 1 << 15;
    /// `controls`.
    pub const CONTROLS: u64 = 1 << 16;
    /// `tsc_aux` (what RDTSCP returns in ECX; at most 32 bits).
    pub const TSC_AUX: u64 = 1 << 17;
    pub const ALL: u64 = (1 << 18) - 1;
    /// The groups a running guest can change without an exit to the VMM (the
    /// others change only when the VMM charges them: their instructions exit).
    /// The kernel writes these at every exit the guest ran before.
    pub const GUEST: u64 = ALL & !(SYSENTER | PAT | XCR0 | TSC_OFFSET | CONTROLS | TSC_AUX);
}

/// Bits of [`VcpuState::controls`]: exits the VMM asks for.
pub mod control {
    /// Exit as soon as the guest can take an external interrupt (RFLAGS.IF=1, no shadow).
    pub const INTR_WINDOW: u64 = 1 << 0;
    /// Exit as soon as the guest can take an NMI (on SVM: at the guest's next IRET).
    pub const NMI_WINDOW: u64 = 1 << 1;
    /// Exit on every write of CR0, CR3 or CR4 (by default only where the CPU needs it).
    pub const CR_EXITS: u64 = 1 << 2;
    /// Exit on INVLPG.
    pub const INVLPG_EXITS: u64 = 1 << 3;
    /// Exit on PAUSE (spin loops; the VMM then skips the instruction).
    pub const PAUSE_EXITS: u64 = 1 << 4;
    pub const ALL: u64 = (1 << 5) - 1;
}

/// [`ExitInfo::kind`]: who produced the exit.
pub mod exit_kind {
    /// A hardware exit: `vendor`, `raw` and the other fields are the CPU's.
    pub const HARDWARE: u32 = 0;
    /// The first run of a vCPU: the guest did not run; the state is the reset state.
    pub const STARTUP: u32 = 1;
    /// `ec_ctrl(vcpu, Recall)` stopped the vCPU (or was pending when the run began).
    pub const RECALL: u32 = 2;
    /// The guest cannot be entered with this state: the kernel refused a charged value
    /// (`qual` is the [`crate::vcpu::field`] bit of the culprit, `raw` 0) or the CPU's VM
    /// entry failed (`raw`: SVM `VMEXIT_INVALID` / VMX exit reason with bit 31, or the VMX
    /// instruction error in `qual` with `raw` = [`VMX_ENTRY_ERROR`]).
    pub const INVALID_STATE: u32 = 3;
    /// `raw` of an INVALID_STATE exit from a VMX instruction failure.
    pub const VMX_ENTRY_ERROR: u64 = u64::MAX;
}

/// [`ExitInfo::vendor`].
pub mod vendor {
    pub const SVM: u32 = 1;
    pub const VMX: u32 = 2;
}

/// Why the vCPU stopped: raw vendor data, for `vcpu-api` to decode.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitInfo {
    /// [`exit_kind`].
    pub kind: u32,
    /// [`vendor`].
    pub vendor: u32,
    /// SVM: EXITCODE. VMX: the exit reason (bit 31: VM-entry failure).
    pub raw: u64,
    /// SVM: EXITINFO1. VMX: the exit qualification.
    pub qual: u64,
    /// SVM: EXITINFO2 (for I/O: the next RIP; for NPF: the faulting guest-physical
    /// address). VMX: the VM-exit instruction information.
    pub info2: u64,
    /// Guest-physical address of a nested page fault / EPT violation (0 otherwise).
    pub gpa: u64,
    /// VMX: the guest-linear address (string I/O, EPT violations). SVM: 0.
    pub gla: u64,
    /// Length of the exiting instruction when the CPU tells it (VMX always for
    /// instruction exits; SVM through next-RIP saving), else 0.
    pub instr_len: u64,
    /// VMX: VM-exit interruption information (bits 0..31) and its error code
    /// (bits 32..63). SVM: 0.
    pub intr_info: u64,
    /// An event whose delivery the exit interrupted (VMX IDT-vectoring information in
    /// bits 0..31, error code in 32..63; SVM EXITINTINFO, same layout).
    pub vectoring: u64,
}

/// A segment register. `ar` uses the SVM attribute layout: type (bits 0–3), S (4),
/// DPL (5–6), P (7), AVL (8), L (9), D/B (10), G (11). P = 0 means unusable.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    pub selector: u16,
    pub ar: u16,
    pub limit: u32,
    pub base: u64,
}

/// GDTR or IDTR.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DescTable {
    pub limit: u32,
    pub _pad: u32,
    pub base: u64,
}

/// General register indices in [`VcpuState::gpr`] (x86 encoding order).
pub mod gpr {
    pub const RAX: usize = 0;
    pub const RCX: usize = 1;
    pub const RDX: usize = 2;
    pub const RBX: usize = 3;
    pub const RSP: usize = 4;
    pub const RBP: usize = 5;
    pub const RSI: usize = 6;
    pub const RDI: usize = 7;
    pub const R8: usize = 8;
    pub const R15: usize = 15;
}

/// The vCPU state page (the first bytes of the page the kernel maps for a vCPU).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuState {
    /// Written by the kernel at every return of `vcpu_run`.
    pub exit: ExitInfo,
    /// Which [`field`] groups the kernel wrote at the last exit; the others still
    /// hold what an earlier exit wrote (or what the VMM wrote and charged since).
    pub valid: u64,
    pub gpr: [u64; 16],
    pub rip: u64,
    pub rflags: u64,
    pub cr0: u64,
    pub cr2: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub dr7: u64,
    pub efer: u64,
    pub es: Segment,
    pub cs: Segment,
    pub ss: Segment,
    pub ds: Segment,
    pub fs: Segment,
    pub gs: Segment,
    pub tr: Segment,
    pub ldtr: Segment,
    pub gdtr: DescTable,
    pub idtr: DescTable,
    pub sysenter_cs: u64,
    pub sysenter_esp: u64,
    pub sysenter_eip: u64,
    pub star: u64,
    pub lstar: u64,
    pub cstar: u64,
    pub fmask: u64,
    pub kernel_gs_base: u64,
    pub pat: u64,
    pub xcr0: u64,
    pub tsc_offset: u64,
    /// Event to inject at the next entry (bit 31 valid): vector (0–7), type (8–10: 0
    /// external interrupt, 2 NMI, 3 exception, 4 software interrupt, 6 software
    /// exception), deliver `inject_error` (11). The kernel clears it once delivered.
    pub inject: u32,
    pub inject_error: u32,
    /// Instruction length for software interrupts/exceptions (types 4–6; VMX).
    pub inject_len: u32,
    /// Bit 0: blocking by STI, 1: by MOV SS, 3: NMI blocking (VMX layout).
    pub interruptibility: u32,
    /// 0 active, 1 halted (VMX activity states; SVM reports 0).
    pub activity: u32,
    pub _pad: u32,
    /// [`control`] bits.
    pub controls: u64,
    pub tsc_aux: u64,
}

const _: () = assert!(core::mem::size_of::<VcpuState>() <= 4096);
