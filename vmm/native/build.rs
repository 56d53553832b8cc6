//! Links the program as a static, non-PIE executable at a fixed address.
fn main() {
    println!("cargo:rustc-link-arg-bins=--no-pie");
    println!("cargo:rustc-link-arg-bins=--image-base=0x400000");
}
