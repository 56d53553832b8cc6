//! vmm-hosted (placeholder, under construction).
fn main() {}
