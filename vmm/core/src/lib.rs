//! vmm-core (placeholder, under construction).
#![no_std]
