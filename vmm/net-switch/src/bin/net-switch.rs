//! `net-switch NAME [--ports N] [--queue FRAMES]`: the switch component.
//! Offers service `NAME-cpuC` on every CPU C of its `cpus` (a portal serves
//! callers on its own CPU only) and prints its counters when they change
//! (at most every 2 s). Runs until the machine stops.
//!
//! Every port has a semaphore and, on every CPU, a portal whose badge is
//! the port's number + 1 (the service portals have badge 0), all made at
//! start-up. An attach hands the port's semaphore and portals to the client
//! with the reply; a detach revokes them. A frame queued for a port whose
//! queue was empty ups its semaphore, which the port's receiver waits on.
//!
//! The portal handlers run the [`SwitchCore`] under a spin lock: they may
//! not block, allocate or print (`tern::Handler`), and only they take the
//! lock, so a holder is always a running handler on another CPU. Handing
//! out and revoking capabilities happen under the lock (so a port's old
//! holder loses them before a new one gets them); semaphores are signalled
//! after it. The main thread reads the counters, which are atomics, never
//! the lock.

use std::sync::OnceLock;
use std::time::Duration;

use net_switch::client::{service_name, valid_name};
use net_switch::switch::MAX_PORTS;
use net_switch::{protocol, Caller, PortChange, StatsSnapshot, SwitchCore};
use tern::{Grants, Semaphore, REPLY_WORDS};

/// What the handlers share.
struct Switch {
    core: spin::Mutex<SwitchCore>,
    ports: Vec<PortCaps>,
}

/// The kernel objects of one port.
struct PortCaps {
    /// Signalled when frames wait.
    signal: Semaphore,
    /// The port's portal on each CPU (ascending), whose badge names it.
    portals: Vec<(u32, u64)>,
}

impl PortCaps {
    /// Delegates the semaphore to window `offset` of the caller and the
    /// portals for `cpus` after it (the switch serves every CPU of `cpus`:
    /// `SwitchCore` checked).
    fn hand_out(&self, offset: u64, cpus: u64, grants: &mut Grants) {
        use tern::obj_rights::USE;
        grants.grant(self.signal.sel(), USE, offset);
        let chosen = self.portals.iter().filter(|(c, _)| cpus & 1 << c != 0);
        for (k, (_, portal)) in chosen.enumerate() {
            grants.grant(*portal, USE, offset + 1 + k as u64);
        }
    }

    /// Takes the port's capabilities back from whoever holds them.
    fn take_back(&self) {
        for &(_, portal) in &self.portals {
            let _ = tern::revoke_grants(portal);
        }
        let _ = tern::revoke_grants(self.signal.sel());
    }
}

static SWITCH: OnceLock<Switch> = OnceLock::new();

fn handle(
    badge: u64,
    request: &[u64],
    reply: &mut [u64; REPLY_WORDS],
    grants: &mut Grants,
) -> usize {
    let Some(switch) = SWITCH.get() else {
        reply[0] = protocol::BAD_REQUEST;
        return 1;
    };
    let caller = match badge {
        0 => Caller::Service,
        port => Caller::Port(port as usize - 1),
    };
    let done = {
        let mut core = switch.core.lock();
        let done = core.handle(caller, request, reply);
        match done.change {
            Some(PortChange::Attached { port, offset, cpus }) => {
                // nobody may still hold them (a detach took them back)
                switch.ports[port].take_back();
                switch.ports[port].hand_out(offset, cpus, grants);
            }
            Some(PortChange::Detached { port }) => {
                switch.ports[port].take_back();
                // a receiver still waiting wakes up; its next call fails
                let _ = switch.ports[port].signal.up();
            }
            None => {}
        }
        done
    };
    for (port, caps) in switch.ports.iter().enumerate() {
        if done.wake & 1 << port != 0 {
            let _ = caps.signal.up();
        }
    }
    done.len
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
            "--ports" => parsed.ports = number("--ports", MAX_PORTS)?,
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

/// The semaphore and the per-CPU portals of port `port` (badge `port + 1`).
fn port_caps(port: usize, services: &[(u32, tern::Service)]) -> Result<PortCaps, tern::Error> {
    Ok(PortCaps {
        signal: Semaphore::create()?,
        portals: services
            .iter()
            .map(|(cpu, service)| Ok((*cpu, service.portal(port as u64 + 1)?)))
            .collect::<Result<_, tern::Error>>()?,
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args = parse_args(&args).unwrap_or_else(|e| fail(&format!("{e}\n{USAGE}")));
    if !tern::on_tern() {
        fail("runs on Tern only (VMMs hosted on Linux use their in-process switch or a tap)");
    }
    let cpus = tern::cpus().unwrap_or_else(|e| fail(&format!("cannot list its CPUs: {e}")));
    // a service (handler and badge-0 portal) on each CPU, made there
    let mut services = Vec::new();
    for &cpu in &cpus {
        let made = tern::spawn_on_cpu(
            cpu,
            std::thread::Builder::new().name(format!("serve-cpu{cpu}")),
            move || tern::Service::new(handle),
        )
        .map_err(|e| e.to_string())
        .and_then(|t| t.join().map_err(|_| "panicked".to_string()))
        .and_then(|r| r.map_err(|e| e.to_string()));
        match made {
            Ok(service) => services.push((cpu, service)),
            Err(e) => fail(&format!("cannot make its handler on CPU {cpu}: {e}")),
        }
    }
    let ports = (0..args.ports)
        .map(|port| port_caps(port, &services))
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_else(|e| {
            fail(&format!(
                "cannot make the kernel objects of {} ports on {} CPUs ({e}); start it with fewer (--ports N)",
                args.ports,
                cpus.len()
            ))
        });
    let cpu_mask = cpus.iter().fold(0u64, |m, &c| m | 1 << c);
    let core = SwitchCore::new(args.ports, args.queue, cpu_mask);
    let stats = core.stats();
    let switch = Switch {
        core: spin::Mutex::new(core),
        ports,
    };
    if SWITCH.set(switch).is_err() {
        fail("started twice");
    }
    // only now can clients find it
    let mut names = Vec::new();
    for (cpu, service) in &services {
        let name = service_name(&args.name, *cpu);
        if let Err(e) = service.register(&name) {
            fail(&format!("cannot offer {name}: {e}"));
        }
        names.push(name);
    }
    let services = names;
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
