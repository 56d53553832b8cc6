//! The Tern VMM as a native component. `--smoke` runs the built-in vCPU check.
#![no_std]
#![no_main]

extern crate alloc;

mod smoke;
mod sys;

use native::println;

native::entry!(main);

fn main() -> i32 {
    let info = native::StartInfo::get();
    if info.args().split_whitespace().any(|a| a == "--smoke") {
        return match smoke::run() {
            Ok(()) => 0,
            Err(e) => {
                println!("vmm-native: smoke: FAIL: {e}");
                1
            }
        };
    }
    println!("vmm-native: nothing to do (use --smoke)");
    0
}
