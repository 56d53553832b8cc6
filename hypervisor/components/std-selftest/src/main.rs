//! An ordinary Rust std program that exercises what the posix-server serves:
//! threads with Mutex, Condvar and channels, a large allocation, reading a
//! file, monotonic time around a sleep, and a writable directory. It prints the
//! same lines on Linux and on Tern, so the two runs can be compared line by line.
//!
//! Usage: `std-selftest [--data FILE] [--tmp DIR] [--exit CODE]`
//! (defaults: `/rom/test-data`, `/tmp`, 0).

use sha2::{Digest, Sha256};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_string())
}

/// Four threads sum disjoint ranges of 1..=N; results travel over a channel,
/// a Mutex-protected counter with a Condvar tells the main thread when all are done.
fn threads() -> bool {
    const N: u64 = 4_000_000;
    const THREADS: u64 = 4;
    let done = Arc::new((Mutex::new(0u64), Condvar::new()));
    let (tx, rx) = mpsc::channel();
    let mut handles = Vec::new();
    for t in 0..THREADS {
        let tx = tx.clone();
        let done = done.clone();
        handles.push(std::thread::spawn(move || {
            let chunk = N / THREADS;
            let sum: u64 = (t * chunk + 1..=(t + 1) * chunk).sum();
            tx.send(sum).expect("main thread listens");
            let (count, cv) = &*done;
            *count.lock().expect("no poisoning") += 1;
            cv.notify_all();
        }));
    }
    drop(tx);
    let (count, cv) = &*done;
    let mut finished = count.lock().expect("no poisoning");
    while *finished < THREADS {
        finished = cv.wait(finished).expect("no poisoning");
    }
    drop(finished);
    let total: u64 = rx.iter().sum();
    for h in handles {
        h.join().expect("worker finished");
    }
    let expected = N * (N + 1) / 2;
    println!(
        "selftest: {THREADS} threads (Mutex, Condvar, mpsc) computed {total}, expected {expected}"
    );
    total == expected
}

/// A 512 MiB vector written and checksummed.
fn big_vec() -> bool {
    const WORDS: usize = 512 << 17; // 512 MiB of u64
    let mut v: Vec<u64> = vec![0; WORDS];
    for (i, w) in v.iter_mut().enumerate() {
        *w = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    let sum = v.iter().fold(0u64, |a, &w| a.wrapping_add(w ^ (w >> 7)));
    let expected = (0..WORDS as u64)
        .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .fold(0u64, |a, w| a.wrapping_add(w ^ (w >> 7)));
    println!("selftest: 512 MiB Vec written, checksum {sum:#018x}, expected {expected:#018x}");
    sum == expected
}

fn read_file(path: &str) -> bool {
    match std::fs::read(path) {
        Ok(bytes) => {
            let hash = Sha256::digest(&bytes);
            let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
            println!(
                "selftest: read {} bytes of test data, SHA-256 {hex}",
                bytes.len()
            );
            true
        }
        Err(e) => {
            println!("selftest: cannot read the test data: {e}");
            false
        }
    }
}

fn sleep() -> bool {
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_millis(100));
    let t1 = Instant::now();
    let elapsed = t1 - t0;
    let ok = t1 > t0 && elapsed >= Duration::from_millis(100) && elapsed < Duration::from_secs(5);
    println!(
        "selftest: Instant is monotonic around a 100 ms sleep: {}",
        if ok { "yes" } else { "NO" }
    );
    ok
}

fn ram_file(dir: &str) -> bool {
    let path = format!("{dir}/selftest.txt");
    let text: String = (0..1000).map(|i| format!("line {i}\n")).collect();
    let ok = std::fs::write(&path, &text).is_ok()
        && std::fs::read_to_string(&path).ok().as_deref() == Some(text.as_str())
        && std::fs::remove_file(&path).is_ok();
    println!(
        "selftest: a {} byte file written, read back and removed in the RAM directory: {}",
        text.len(),
        if ok { "yes" } else { "NO" }
    );
    ok
}

fn main() {
    println!("selftest: start");
    let results = [
        threads(),
        big_vec(),
        read_file(&arg("--data", "/rom/test-data")),
        sleep(),
        ram_file(&arg("--tmp", "/tmp")),
    ];
    let passed = results.iter().filter(|&&r| r).count();
    println!("selftest: {passed} of {} checks passed", results.len());
    let code: i32 = arg("--exit", "0").parse().unwrap_or(0);
    std::process::exit(if passed == results.len() { code } else { 1 });
}
