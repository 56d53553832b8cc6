//! Everything that touches x86_64 hardware directly. Code outside `arch` is safe Rust.
pub mod boot;
pub mod port;
