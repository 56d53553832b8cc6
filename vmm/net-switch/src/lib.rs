//! A learning Ethernet switch between VMMs on Tern, and the VMM's end of it.
//!
//! - [`switch`]: the switch (ports with bounded queues, MAC learning),
//!   allocation-free once made, so a portal handler can run it.
//! - [`protocol`]: its requests and replies as message words.
//! - [`client`]: a port over a [`client::PortLink`] (on Tern: the port's
//!   own portals and semaphore, handed out by the switch) and the receive
//!   loop that waits for the switch's signal.
//! - [`backend`]: that port as a virtio-net backend
//!   ([`vmm_virtio::NetBackend`]) for `backend = "switch:NAME"` on Tern.
//!
//! The binaries: `net-switch NAME` (the switch component) and
//! `net-switch-peer` (a test program that exchanges frames through it).
//! See README.md.

pub mod backend;
pub mod client;
pub mod protocol;
pub mod switch;

pub use backend::{tern_port, SwitchBackend};
pub use client::{PortLink, SwitchClient, SwitchError, TernPort};
pub use switch::{Caller, Handled, PortChange, Stats, StatsSnapshot, SwitchCore};
