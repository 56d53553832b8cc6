//! `net-switch NAME [--ports N] [--queue FRAMES]`: the switch component.
//! Offers service `NAME-cpuC` on every CPU C of its `cpus` (a portal serves
//! callers on its own CPU only) and prints its counters when they change
//! (at most every 2 s). Runs until the machine stops.
//!
//! The portal handlers run the [`SwitchCore`] under a spin lock: they may
//! not block, allocate or print (`tern::Handler`), and only they take the
//! lock, so a holder is always a running handler on another CPU. The main
//! thread reads the counters, which are atomics, never the lock.

use std::sync::OnceLock;
use std::time::Duration;

use net_switch::client::{service_name, valid_name};
use net_switch::{protocol, StatsSnapshot, SwitchCore};

static SWITCH: OnceLock<spin::Mutex<SwitchCore>> = OnceLock::new();

fn handle(request: &[u64], reply: &mut [u64; tern::REPLY_WORDS]) -> usize {
    match SWITCH.get() {
        Some(switch) => switch.lock().handle(request, reply),
        None => {
            reply[0] = protocol::BAD_REQUEST;
            1
        }
    }
}

const USAGE: &str = "usage: net-switch NAME [--ports N] [--queue FRAMES]";

struct Args {
    name: String,
    ports: usize,
    queue: usize,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut parsed = Args {
        name: String::new(),
        ports: 8,
        queue: 64,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut number = |what: &str, max: usize| -> Result<usize, String> {
            it.next()
                .and_then(|v| v.parse().ok())
                .filter(|n| (1..=max).contains(n))
                .ok_or(format!("{what} takes a number from 1 to {max}"))
        };
        match arg.as_str() {
            "--ports" => parsed.ports = number("--ports", 1024)?,
            "--queue" => parsed.queue = number("--queue", 4096)?,
            name if parsed.name.is_empty() && !name.starts_with('-') => parsed.name = name.into(),
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    if !valid_name(&parsed.name) {
        return Err(format!(
            "switch name {:?}: use a-z, 0-9, '-' and '_', at most {} characters",
            parsed.name,
            net_switch::client::MAX_NAME
        ));
    }
    Ok(parsed)
}

fn fail(message: &str) -> ! {
    println!("net-switch: {message}");
    std::process::exit(2);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args = parse_args(&args).unwrap_or_else(|e| fail(&format!("{e}\n{USAGE}")));
    if !tern::on_tern() {
        fail("runs on Tern only (VMMs hosted on Linux use their in-process switch or a tap)");
    }
    let cpus = tern::cpus().unwrap_or_else(|e| fail(&format!("cannot list its CPUs: {e}")));
    let core = SwitchCore::new(args.ports, args.queue);
    let stats = core.stats();
    if SWITCH.set(spin::Mutex::new(core)).is_err() {
        fail("started twice");
    }
    let mut services = Vec::new();
    for &cpu in &cpus {
        let service = service_name(&args.name, cpu);
        let name = service.clone();
        let served = tern::spawn_on_cpu(
            cpu,
            std::thread::Builder::new().name(format!("serve-cpu{cpu}")),
            move || tern::serve(&name, handle),
        )
        .map_err(|e| e.to_string())
        .and_then(|t| t.join().map_err(|_| "panicked".to_string()))
        .and_then(|r| r.map_err(|e| e.to_string()));
        if let Err(e) = served {
            fail(&format!("cannot serve {service} on CPU {cpu}: {e}"));
        }
        services.push(service);
    }
    println!(
        "net-switch: switch {} serves {} ({} ports, {} frames queued per port)",
        args.name,
        services.join(", "),
        args.ports,
        args.queue
    );
    let mut shown = StatsSnapshot::default();
    loop {
        std::thread::sleep(Duration::from_secs(2));
        let now = stats.snapshot();
        if now != shown {
            println!(
                "net-switch {}: {} ports attached, {} frames in, {} queued, {} delivered, {} dropped (queue full), {} requests refused",
                args.name, now.ports, now.received, now.queued, now.delivered, now.dropped_full, now.refused
            );
            shown = now;
        }
    }
}
