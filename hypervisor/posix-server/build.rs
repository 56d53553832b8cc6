//! Links the server as a static, non-PIE executable high in the address space,
//! out of the way of the Linux program it runs (which usually sits at 4 MiB).
fn main() {
    println!("cargo:rustc-link-arg-bins=--no-pie");
    println!("cargo:rustc-link-arg-bins=--image-base=0x7e0000000000");
}
