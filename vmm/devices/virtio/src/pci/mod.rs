//! PCI: functions, their configuration space and MSI-X, and the root
//! complex that the machine puts on its buses.
//!
//! Owns: the [`PciFunction`] contract, configuration space ([`ConfigSpace`]),
//! MSI-X ([`Msix`]), and [`PciRoot`] (host bridge, bus 0, CF8/CFC, ECAM,
//! BAR windows). Must not touch: what a function does behind its BARs.

pub mod config;
pub mod msix;
mod root;

pub use config::{Bar, BarKind, ConfigSpace, DecodedBar, PciIds};
pub use msix::Msix;
pub use root::{
    ConfigAddressPort, ConfigDataPort, Ecam, HostBridge, PciBarWindow, PciRoot, PciWindows,
    SharedFunction, Window, CONFIG_ADDRESS_PORT, CONFIG_DATA_PORT, ECAM_SIZE,
};

/// One PCI function on bus 0, as the root sees it. Offsets of config
/// accesses are bytes into its 4 KiB ECAM page; BAR offsets are bytes into
/// the BAR. Called with the function's lock held, from vCPU threads.
pub trait PciFunction: Send {
    fn config(&self) -> &ConfigSpace;
    fn config_mut(&mut self) -> &mut ConfigSpace;

    fn config_read(&mut self, offset: usize, data: &mut [u8]) {
        self.config().read(offset, data);
    }

    /// Functions with live capabilities (MSI-X) override this to react.
    fn config_write(&mut self, offset: usize, data: &[u8]) {
        self.config_mut().write(offset, data);
    }

    fn bar_read(&mut self, bar: usize, offset: u64, data: &mut [u8]);
    fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8]);

    /// A platform reset ([`PciRoot::reset`]): the configuration space is
    /// already back at its power-on content; the function forgets the rest
    /// of its state (a disk keeps its contents).
    fn pci_reset(&mut self) {}
}

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum PciError {
    #[error("BAR index {index} does not exist (0..=5; a 64-bit BAR takes two)")]
    BarIndex { index: usize },
    #[error("BAR {index} is already declared; pick another index")]
    BarTaken { index: usize },
    #[error("BAR {index} size {size:#x} must be a power of two (memory 16 B.., I/O 4..=256 B)")]
    BarSize { index: usize, size: u64 },
    #[error("capability {id:#x} of {len} bytes does not fit in config space")]
    CapabilitySpace { id: u8, len: usize },
    #[error(
        "MSI-X with {vectors} vectors: need 1..=2048 vectors, BAR 0..=5, 8-byte aligned offsets"
    )]
    Msix { vectors: u16 },
    #[error("bus 0 is full (31 devices besides the host bridge)")]
    BusFull,
    #[error(
        "BAR {index} ({size:#x} bytes) does not fit in the {window} window; make the window larger"
    )]
    WindowFull {
        index: usize,
        size: u64,
        window: &'static str,
    },
    #[error("window {base:#x}+{len:#x} is empty or wraps around")]
    BadWindow { base: u64, len: u64 },
}
