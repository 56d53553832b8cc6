//! vcpu-api: the VMM-facing vCPU API of Tern, built around
//! [`Vcpu::with_state`].
//!
//! A VMM sees one model whatever runs the vCPU: the vCPU is stopped while a
//! closure inspects and changes its [`VcpuState`]; only the fields the
//! closure *charged* go back when it returns `true`; the reason of every
//! exit is inside the state as a vendor-neutral [`ExitReason`] plus the raw
//! VMX/SVM/KVM code. Other threads get the handler's attention with a
//! [`Requester`].
//!
//! | module | owns |
//! |---|---|
//! | [`charged`] | the charge-tracking field wrapper |
//! | [`state`] | `VcpuState`, its field formats, field names and sets |
//! | [`exit`] | the neutral exit vocabulary |
//! | [`vmx`], [`svm`] | decoding raw hardware exits into it |
//! | `vcpu` | `Vcpu`, the `Backend` trait, `Requester`, errors |
//! | `kvm` (feature `kvm`) | the Linux KVM backend |
//! | `tern` (feature `tern`) | the Tern microhypervisor backend |
//!
//! `no_std` with `alloc`; the `kvm` feature needs std and Linux.

#![cfg_attr(not(any(test, feature = "kvm")), no_std)]

extern crate alloc;

pub mod charged;
pub mod exit;
pub mod state;
pub mod svm;
mod vcpu;
pub mod vmx;

#[cfg(feature = "kvm")]
pub mod kvm;

#[cfg(feature = "tern")]
pub mod tern;

#[cfg(test)]
mod tests;

pub use charged::Charged;
pub use exit::{
    Access, CompletedWrite, CrAccess, CrOp, Direction, ExceptionExit, Exit, ExitReason, IoAccess,
    MsrAccess, PageFault, RawExit, WriteTarget,
};
pub use state::{
    activity, interruptibility, Controls, CrashSummary, EventInfo, EventKind, Field, FieldSet,
    Segment, TableRegister, VcpuState, XsaveArea, XSAVE_AREA_SIZE,
};
pub use vcpu::{Backend, BackendError, Recall, Requester, Vcpu, VcpuError};
