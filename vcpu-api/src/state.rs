//! `VcpuState`: the guest register state a VMM sees inside `with_state`.
//!
//! Owns: the field list of the brief (Genode 23.11's `Vcpu_state`), the
//! vendor-neutral formats of its compound fields (segments, event injection,
//! controls) and the [`Field`]/[`FieldSet`] names for "which fields". Must not
//! touch: any backend's layout. Backends (KVM, Tern's state page) convert
//! field by field and document which fields an exit transfers.
//!
//! Formats, chosen once so VMX and SVM look alike:
//! * segment `attributes`: the 12-bit SVM form (type 3:0, S 4, DPL 6:5, P 7,
//!   AVL 8, L 9, D/B 10, G 11). A VMX backend maps P=0 to "unusable".
//! * `inj_info`: the layout VMX and SVM share (vector 7:0, type 10:8, error
//!   code valid 11, valid 31); see [`EventInfo`].
//! * `intr_state`, `actv_state`: the VMX encodings (see [`interruptibility`],
//!   [`activity`]).

use alloc::boxed::Box;
use core::fmt;

use crate::charged::Charged;
use crate::exit::Exit;

/// A segment register as the CPU caches it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    pub selector: u16,
    /// 12-bit SVM attribute form, see the module docs.
    pub attributes: u16,
    pub limit: u32,
    pub base: u64,
}

impl Segment {
    /// The attributes' present bit.
    pub const PRESENT: u16 = 1 << 7;

    /// Builds the 12-bit attribute word from its parts.
    pub const fn attributes(
        kind: u8,
        s: bool,
        dpl: u8,
        present: bool,
        long: bool,
        db: bool,
        g: bool,
    ) -> u16 {
        (kind as u16 & 0xf)
            | (s as u16) << 4
            | ((dpl as u16) & 3) << 5
            | (present as u16) << 7
            | (long as u16) << 9
            | (db as u16) << 10
            | (g as u16) << 11
    }
}

/// GDTR or IDTR.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableRegister {
    pub limit: u32,
    pub base: u64,
}

/// Event injection / IDT-vectoring information in the layout VMX and SVM
/// share: vector 7:0, type 10:8, error code valid 11, valid 31.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct EventInfo(pub u32);

/// The event type in bits 10:8 of [`EventInfo`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    ExternalInterrupt,
    Nmi,
    Exception,
    SoftwareInterrupt,
    /// A type code the neutral form does not name (VMX privileged/software
    /// exceptions, "other event").
    Other(u8),
}

impl EventInfo {
    /// Nothing to inject.
    pub const NONE: EventInfo = EventInfo(0);
    const VALID: u32 = 1 << 31;
    const ERROR_VALID: u32 = 1 << 11;

    /// An external interrupt with `vector`.
    pub const fn external_interrupt(vector: u8) -> Self {
        EventInfo(Self::VALID | vector as u32)
    }

    /// A non-maskable interrupt.
    pub const fn nmi() -> Self {
        EventInfo(Self::VALID | 2 << 8 | 2)
    }

    /// A hardware exception; `error_code` says whether one is pushed (its
    /// value goes into `inj_error`).
    pub const fn exception(vector: u8, error_code: bool) -> Self {
        let err = if error_code { Self::ERROR_VALID } else { 0 };
        EventInfo(Self::VALID | err | 3 << 8 | vector as u32)
    }

    pub const fn valid(self) -> bool {
        self.0 & Self::VALID != 0
    }

    pub const fn vector(self) -> u8 {
        self.0 as u8
    }

    pub const fn has_error_code(self) -> bool {
        self.0 & Self::ERROR_VALID != 0
    }

    pub const fn kind(self) -> EventKind {
        match (self.0 >> 8) & 7 {
            0 => EventKind::ExternalInterrupt,
            2 => EventKind::Nmi,
            3 => EventKind::Exception,
            4 => EventKind::SoftwareInterrupt,
            other => EventKind::Other(other as u8),
        }
    }
}

impl fmt::Debug for EventInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.valid() {
            return f.write_str("EventInfo(none)");
        }
        write!(f, "EventInfo({:?} vector {}", self.kind(), self.vector())?;
        if self.has_error_code() {
            f.write_str(" +error")?;
        }
        f.write_str(")")
    }
}

/// Exits the VMM asks for besides the ones every backend always delivers.
/// Vendor-neutral; backends translate to VMX/SVM intercept bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Controls(pub u32);

impl Controls {
    /// Exit as soon as the guest can take an external interrupt
    /// (RFLAGS.IF=1 and no interrupt shadow).
    pub const INTERRUPT_WINDOW: u32 = 1 << 0;
    /// Exit as soon as the guest can take an NMI.
    pub const NMI_WINDOW: u32 = 1 << 1;

    pub const fn contains(self, bits: u32) -> bool {
        self.0 & bits == bits
    }
}

/// `intr_state` bits (VMX guest interruptibility state).
pub mod interruptibility {
    /// Blocking by STI (interrupt shadow).
    pub const STI: u32 = 1 << 0;
    /// Blocking by MOV SS / POP SS.
    pub const MOV_SS: u32 = 1 << 1;
    /// Blocking by SMI.
    pub const SMI: u32 = 1 << 2;
    /// Blocking by NMI.
    pub const NMI: u32 = 1 << 3;
}

/// `actv_state` values (VMX guest activity state).
pub mod activity {
    pub const ACTIVE: u32 = 0;
    pub const HLT: u32 = 1;
    pub const SHUTDOWN: u32 = 2;
    pub const WAIT_FOR_SIPI: u32 = 3;
}

/// Size of the FPU/XSAVE area: the 512-byte FXSAVE legacy region, the
/// 64-byte XSAVE header and the extended components in their standard
/// (non-compacted) offsets.
pub const XSAVE_AREA_SIZE: usize = 4096;

/// The guest's FPU/SSE/AVX state in XSAVE standard format.
#[derive(Clone, PartialEq, Eq)]
pub struct XsaveArea(Box<[u8; XSAVE_AREA_SIZE]>);

impl XsaveArea {
    pub fn bytes(&self) -> &[u8; XSAVE_AREA_SIZE] {
        &self.0
    }

    pub fn bytes_mut(&mut self) -> &mut [u8; XSAVE_AREA_SIZE] {
        &mut self.0
    }
}

impl Default for XsaveArea {
    fn default() -> Self {
        XsaveArea(Box::new([0; XSAVE_AREA_SIZE]))
    }
}

impl fmt::Debug for XsaveArea {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("XsaveArea(..)")
    }
}

/// A set of [`Field`]s, one bit per field (bit = `Field as u8`).
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct FieldSet(pub u64);

impl FieldSet {
    pub const EMPTY: FieldSet = FieldSet(0);

    pub const fn contains(self, field: Field) -> bool {
        self.0 & (1 << field as u8) != 0
    }

    pub fn insert(&mut self, field: Field) {
        self.0 |= 1 << field as u8;
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The fields in declaration order.
    pub fn iter(self) -> impl Iterator<Item = Field> {
        Field::ALL.into_iter().filter(move |f| self.contains(*f))
    }
}

impl fmt::Debug for FieldSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

macro_rules! vcpu_state {
    ($( $(#[$doc:meta])* $name:ident / $variant:ident : $ty:ty, )*) => {
        /// The vCPU's state as seen inside `with_state`. Every field is
        /// [`Charged`]; the exit that stopped the vCPU is in [`exit`](Self::exit).
        #[derive(Clone, Debug, Default)]
        pub struct VcpuState {
            $( $(#[$doc])* pub $name: Charged<$ty>, )*
            /// Why the vCPU stopped (read-only for the VMM).
            pub exit: Exit,
        }

        /// Names one [`VcpuState`] field; used for charged masks and for
        /// backends documenting what they transfer.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum Field { $( $variant, )* }

        impl Field {
            /// Every field in declaration order.
            pub const ALL: [Field; [$(Field::$variant),*].len()] = [$(Field::$variant),*];

            /// The field's name in `VcpuState`.
            pub const fn name(self) -> &'static str {
                match self { $( Field::$variant => stringify!($name), )* }
            }
        }

        impl VcpuState {
            /// The fields charged since the last discharge.
            pub fn charged(&self) -> FieldSet {
                let mut set = FieldSet::EMPTY;
                $( if self.$name.charged() { set.insert(Field::$variant); } )*
                set
            }

            /// Drops every charge mark (values stay).
            pub fn discharge(&mut self) {
                $( self.$name.discharge(); )*
            }

            /// Charges every field in `fields` with its current value.
            pub fn charge_fields(&mut self, fields: FieldSet) {
                $( if fields.contains(Field::$variant) {
                    let _ = self.$name.update(|_| ());
                } )*
            }
        }
    };
}

vcpu_state! {
    rax / Rax: u64,
    rcx / Rcx: u64,
    rdx / Rdx: u64,
    rbx / Rbx: u64,
    rsp / Rsp: u64,
    rbp / Rbp: u64,
    rsi / Rsi: u64,
    rdi / Rdi: u64,
    r8 / R8: u64,
    r9 / R9: u64,
    r10 / R10: u64,
    r11 / R11: u64,
    r12 / R12: u64,
    r13 / R13: u64,
    r14 / R14: u64,
    r15 / R15: u64,
    /// Instruction pointer (RIP).
    ip / Ip: u64,
    /// Length of the instruction that exited, where the backend knows it
    /// (0 otherwise). `ip + ip_len` skips the instruction.
    ip_len / IpLen: u64,
    /// RFLAGS.
    flags / Flags: u64,
    es / Es: Segment,
    cs / Cs: Segment,
    ss / Ss: Segment,
    ds / Ds: Segment,
    fs / Fs: Segment,
    gs / Gs: Segment,
    ldtr / Ldtr: Segment,
    tr / Tr: Segment,
    gdtr / Gdtr: TableRegister,
    idtr / Idtr: TableRegister,
    cr0 / Cr0: u64,
    cr2 / Cr2: u64,
    cr3 / Cr3: u64,
    cr4 / Cr4: u64,
    dr7 / Dr7: u64,
    sysenter_cs / SysenterCs: u64,
    sysenter_sp / SysenterSp: u64,
    sysenter_ip / SysenterIp: u64,
    /// Exit qualification: `[0]` = VMX exit qualification / SVM EXITINFO1,
    /// `[1]` = VMX guest-physical address / SVM EXITINFO2.
    qual / Qual: [u64; 2],
    /// Extra exits the VMM asks for ([`Controls`]).
    ctrl / Ctrl: Controls,
    /// Event to inject on resume; on an exit, the event whose delivery the
    /// exit interrupted (IDT-vectoring / EXITINTINFO), if any.
    inj_info / InjInfo: EventInfo,
    /// Error code for `inj_info`.
    inj_error / InjError: u32,
    /// Interruptibility state ([`interruptibility`]).
    intr_state / IntrState: u32,
    /// Activity state ([`activity`]).
    actv_state / ActvState: u32,
    /// The guest's TSC (host TSC + `tsc_offset`) at the exit.
    tsc / Tsc: u64,
    tsc_offset / TscOffset: u64,
    tsc_aux / TscAux: u64,
    efer / Efer: u64,
    /// PAE page-directory-pointer-table entries 0-3.
    pdpte / Pdpte: [u64; 4],
    star / Star: u64,
    lstar / Lstar: u64,
    cstar / Cstar: u64,
    fmask / Fmask: u64,
    kernel_gs_base / KernelGsBase: u64,
    /// Task priority (CR8 / TPR bits 7:4 in the low nibble as CR8).
    tpr / Tpr: u32,
    tpr_threshold / TprThreshold: u32,
    xcr0 / Xcr0: u64,
    xss / Xss: u64,
    /// FPU/SSE/AVX state.
    fpu / Fpu: XsaveArea,
}

impl VcpuState {
    /// Completes the instruction that exited as if the vCPU had executed it:
    /// advances `ip` past it (charges `ip`) and ends an STI or MOV SS
    /// interrupt shadow that covered it (charges `intr_state`, only then).
    /// The shadow lasts one instruction, so after this an interrupt may be
    /// injected at once, as on hardware.
    pub fn skip_instruction(&mut self) {
        let next = self.ip.value().wrapping_add(self.ip_len.value());
        self.ip.charge(next);
        self.end_interrupt_shadow();
    }

    /// Ends an STI or MOV SS interrupt shadow (charges `intr_state`, only if
    /// there was one): for a VMM that completed the instruction under it by
    /// other means, e.g. an instruction emulator.
    pub fn end_interrupt_shadow(&mut self) {
        let shadow = interruptibility::STI | interruptibility::MOV_SS;
        if self.intr_state.value() & shadow != 0 {
            self.intr_state.update(|i| *i &= !shadow);
        }
    }

    /// The registers that explain a crash, on one line, for the VMM's
    /// report of a triple fault or a failed entry.
    pub fn crash_summary(&self) -> CrashSummary {
        let idt = self.idtr.value();
        CrashSummary {
            rip: self.ip.value(),
            rsp: self.rsp.value(),
            rflags: self.flags.value(),
            cs: self.cs.value().selector,
            cr0: self.cr0.value(),
            cr2: self.cr2.value(),
            cr3: self.cr3.value(),
            cr4: self.cr4.value(),
            efer: self.efer.value(),
            idt_base: idt.base,
            idt_limit: idt.limit,
            interrupted_event: self.inj_info.value().0,
        }
    }

    /// Queues `event` for injection on resume (charges `inj_info` and, when
    /// the event pushes one, `inj_error`).
    pub fn inject(&mut self, event: EventInfo, error_code: u32) {
        self.inj_info.charge(event);
        if event.has_error_code() {
            self.inj_error.charge(error_code);
        }
    }

    /// A general-purpose register by its x86 encoding number (0 = RAX ...
    /// 15 = R15).
    pub fn gpr(&self, index: u8) -> Option<u64> {
        Some(match index {
            0 => self.rax.value(),
            1 => self.rcx.value(),
            2 => self.rdx.value(),
            3 => self.rbx.value(),
            4 => self.rsp.value(),
            5 => self.rbp.value(),
            6 => self.rsi.value(),
            7 => self.rdi.value(),
            8 => self.r8.value(),
            9 => self.r9.value(),
            10 => self.r10.value(),
            11 => self.r11.value(),
            12 => self.r12.value(),
            13 => self.r13.value(),
            14 => self.r14.value(),
            15 => self.r15.value(),
            _ => return None,
        })
    }

    /// Charges a general-purpose register by its encoding number; `false`
    /// for a number above 15.
    pub fn set_gpr(&mut self, index: u8, value: u64) -> bool {
        let reg = match index {
            0 => &mut self.rax,
            1 => &mut self.rcx,
            2 => &mut self.rdx,
            3 => &mut self.rbx,
            4 => &mut self.rsp,
            5 => &mut self.rbp,
            6 => &mut self.rsi,
            7 => &mut self.rdi,
            8 => &mut self.r8,
            9 => &mut self.r9,
            10 => &mut self.r10,
            11 => &mut self.r11,
            12 => &mut self.r12,
            13 => &mut self.r13,
            14 => &mut self.r14,
            15 => &mut self.r15,
            _ => return false,
        };
        reg.charge(value);
        true
    }
}

/// [`VcpuState::crash_summary`]: RIP, RSP, RFLAGS, CS, the control
/// registers, EFER, the IDT and the event the exit interrupted (a copy, so a
/// VM's end report can keep it after the state is gone).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CrashSummary {
    pub rip: u64,
    pub rsp: u64,
    pub rflags: u64,
    pub cs: u16,
    pub cr0: u64,
    pub cr2: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
    pub idt_base: u64,
    pub idt_limit: u32,
    pub interrupted_event: u32,
}

impl fmt::Display for CrashSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RIP={:#x} RSP={:#x} RFLAGS={:#x} CS={:#x} CR0={:#x} CR2={:#x} CR3={:#x} CR4={:#x} EFER={:#x} IDT={:#x}+{:#x} interrupted event={:#x}",
            self.rip,
            self.rsp,
            self.rflags,
            self.cs,
            self.cr0,
            self.cr2,
            self.cr3,
            self.cr4,
            self.efer,
            self.idt_base,
            self.idt_limit,
            self.interrupted_event,
        )
    }
}
