//! Everything that touches x86_64 hardware directly. Code outside `arch` is safe Rust.
pub mod apic;
pub mod boot;
pub mod cpu;
pub mod entry;
pub mod paging;
pub mod phys;
pub mod port;
pub mod smp;
pub mod svm;
pub mod vmx;
