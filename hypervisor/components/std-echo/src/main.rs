//! Two Rust std programs talking through a Tern portal with the `tern` crate.
//!
//! `std-echo server`: offers service "echo", which answers `[a, b]` with
//! `[a + b, a * b]`, then waits for good. `std-echo client [CALLS]`: looks the
//! service up and checks CALLS answers, then exits. `std-echo bench [N]`:
//! measures (RDTSC; deterministic under QEMU's `-icount`) a reflected system
//! call (`getppid`, served by the posix-server) beside a portal round trip.
//! `std-echo lines`: echoes the lines typed on its standard input (the
//! console, when the configuration makes it the terminal) until `quit`.

fn echo(request: &[u64], reply: &mut [u64; tern::REPLY_WORDS]) -> usize {
    let a = request.first().copied().unwrap_or(0);
    let b = request.get(1).copied().unwrap_or(0);
    reply[0] = a.wrapping_add(b);
    reply[1] = a.wrapping_mul(b);
    2
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("lines") {
        let mut count = 0;
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if line.trim() == "quit" {
                break;
            }
            if line.trim().is_empty() {
                continue;
            }
            count += 1;
            println!("std-echo lines: got \"{}\"", line.trim_end());
        }
        println!("std-echo lines: {count} lines read, done");
        return;
    }
    if !tern::on_tern() {
        println!("std-echo: not running on Tern: nothing to do");
        return;
    }
    match args.get(1).map(String::as_str) {
        Some("server") => {
            match tern::serve("echo", echo) {
                Ok(()) => println!("std-echo server: serving \"echo\""),
                Err(e) => {
                    println!("std-echo server: cannot serve: {e}");
                    std::process::exit(1);
                }
            }
            loop {
                std::thread::park();
            }
        }
        Some("client") => {
            let calls: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1000);
            let portal = loop {
                match tern::Portal::lookup("echo") {
                    Ok(p) => break p,
                    // the server may not have registered yet
                    Err(tern::Error::Refused) => {
                        std::thread::sleep(std::time::Duration::from_millis(10))
                    }
                    Err(e) => {
                        println!("std-echo client: lookup failed: {e}");
                        std::process::exit(1);
                    }
                }
            };
            let mut good = 0;
            for i in 0..calls {
                if portal.call(&[i, i + 1]).ok() == Some(vec![2 * i + 1, i * (i + 1)]) {
                    good += 1;
                }
            }
            println!("std-echo client: {good} of {calls} portal calls answered correctly");
            std::process::exit(if good == calls { 0 } else { 1 });
        }
        Some("bench") => {
            let n: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10_000);
            let portal = loop {
                match tern::Portal::lookup("echo") {
                    Ok(p) => break p,
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
                }
            };
            let tsc = || {
                // SAFETY: RDTSC only reads the time-stamp counter.
                unsafe { std::arch::x86_64::_rdtsc() }
            };
            // warm up both paths, then time them side by side
            for _ in 0..100 {
                let _ = portal.call(&[1, 2]);
                let _ = std::process::id();
            }
            let t0 = tsc();
            for _ in 0..n {
                // getppid: answered by the posix-server without touching memory
                // SAFETY: a system call without arguments or side effects.
                unsafe {
                    std::arch::asm!("syscall", inlateout("rax") 110u64 => _,
                        lateout("rcx") _, lateout("r11") _, options(nostack));
                }
            }
            let t1 = tsc();
            for i in 0..n {
                let _ = portal.call(&[i, 1]);
            }
            let t2 = tsc();
            println!(
                "std-echo bench: reflected system call {} cycles, portal round trip {} cycles (each the mean of {n})",
                (t1 - t0) / n,
                (t2 - t1) / n
            );
        }
        _ => {
            println!("usage: std-echo server | client [CALLS] | bench [N] | lines");
            std::process::exit(2);
        }
    }
}
