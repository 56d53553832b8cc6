//! vmm-native (placeholder, under construction).
#![no_std]
