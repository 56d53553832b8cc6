//! vmm-platform: what a Tern VM looks like, as data.
//!
//! Pure functions and plain data, no I/O besides reading the configuration
//! file: the machine (`vmm-pc`) turns them into a running VM.
//!
//! | module | owns |
//! |---|---|
//! | [`acpi`] | the ACPI tables (RSDP, XSDT, FADT, FACS, DSDT, MADT, MCFG) as one image |
//! | [`config`] | the VM configuration file (TOML): keys, defaults, checks, errors naming file and key |
//! | [`cpuid`] | the guest CPUID table: host leaves filtered, hypervisor leaves, topology |
//! | [`layout`] | the guest-physical memory map and the e820 table |
//! | [`msr`] | the MSR models (Intel, AMD) with per-vCPU state |
//!
//! Must not touch: devices, vCPUs, guest memory (the machine's).

pub mod acpi;
pub mod config;
pub mod cpuid;
pub mod layout;
pub mod msr;
