//! vcpu-api (placeholder, under construction).
#![no_std]
