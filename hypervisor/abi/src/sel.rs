//! Selectors the kernel fills in for every new protection domain, and the layout of
//! the roottask's initial capability space.

/// Selector 0 never names a capability.
pub const NULL: u64 = 0;
/// The PD's own protection domain.
pub const PD_SELF: u64 = 1;
/// Roottask only: its first EC and SC.
pub const ROOT_EC: u64 = 2;
pub const ROOT_SC: u64 = 3;
/// Roottask only: semaphore of GSI n at `GSI_BASE + n`.
pub const GSI_BASE: u64 = 64;
pub const GSI_COUNT: u64 = 192;
/// The first selector free for the roottask's own use.
pub const ROOT_FREE: u64 = GSI_BASE + GSI_COUNT;
/// Selectors are below this.
pub const LIMIT: u64 = 1 << 32;

/// Where the kernel maps the Hypervisor Information Page in the roottask.
pub const HIP_ADDR: u64 = 0x0000_7fff_ffff_0000;
/// Where the roottask sees physical memory: virtual = `PHYS_WINDOW` + physical.
pub const PHYS_WINDOW: u64 = 0x0000_4000_0000_0000;
