//! guest-tests (placeholder, under construction).
#![no_std]
