//! Crashes on purpose, the way the argument says: `null` (reads address 0),
//! `abort` (`std::process::abort`), `stack` (unbounded recursion). The system
//! must report the crash with the component's name and reason, take its memory
//! back and keep everything else running.

use std::hint::black_box;

/// Recurses until the stack runs out (the limit is never reached).
fn recurse(depth: u64) -> u64 {
    let frame = black_box([depth; 512]);
    if black_box(depth) == u64::MAX {
        return 0;
    }
    recurse(depth + 1).wrapping_add(frame[(depth % 512) as usize])
}

fn main() {
    let how = std::env::args().nth(1).unwrap_or_default();
    // take some memory first, so that reclaiming it is visible
    let v: Vec<u8> = black_box(vec![1; 8 << 20]);
    println!(
        "std-crash: holding {} MiB, now crashing by {how}",
        v.len() >> 20
    );
    match how.as_str() {
        "null" => {
            let p: *const u64 = black_box(std::ptr::null());
            // SAFETY: none; this is the crash the test wants.
            let x = unsafe { std::ptr::read_volatile(p) };
            println!("std-crash: read {x} from address 0?!");
        }
        "abort" => std::process::abort(),
        "stack" => {
            println!("std-crash: {}", recurse(0));
        }
        _ => println!("usage: std-crash null|abort|stack"),
    }
    std::process::exit(1);
}
