//! vmm-virtio: PCI (host bridge, CF8/CFC, ECAM, BAR windows, MSI-X) and
//! virtio-pci modern devices (blk, net, console) for the Tern VMM.
//!
//! Owns: everything a guest sees of PCI and virtio. Must not touch: vCPUs,
//! interrupt controllers or host I/O beyond the traits and files it is
//! given (`vmm_bus::MsiSink`/`InterruptLine`, the disk image `File`, the
//! console's `Write`, a network backend). See README.md for the machine's
//! side of the API.
//!
//! Threads: every device is a `PciFunction` behind a `Mutex`; vCPU threads
//! call it through the bus devices of [`pci::PciRoot`], and a queue
//! notification is processed on the vCPU thread that wrote it. Devices with
//! outside input (net, console) also get a poller thread
//! ([`VirtioPci::spawn_poller`]).

pub mod blk;
pub mod console;
pub mod device;
pub mod inbox;
mod log_once;
pub mod net;
pub mod pci;
pub mod transport;

pub use blk::{Block, BlockError, BlockMode};
pub use console::{Console, ConsoleInput};
pub use device::{Queues, VirtioDevice};
pub use inbox::{Inbox, Wakeup};
pub use net::{FrameSink, Net, NetBackend, Switch, SwitchPort};
pub use transport::VirtioPci;

#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
mod testutil;
