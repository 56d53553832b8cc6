//! vmm-native: the Tern VMM as a native component. It runs the guests named in
//! its arguments one after the other with `vmm-core` on vcpu-api's `tern`
//! backend, and reports how each ended.
//!
//! Arguments: `GUEST[:VCPUS] ...` (boot module names; vCPU count default 1),
//! `--memory MIB` (guest RAM, default 16), `--max-exits N` (default 1,000,000),
//! `--smoke` (the built-in vCPU check of `smoke.rs` instead), `--shootdown` (the
//! revocation check of `shootdown.rs` instead, two CPUs), `--raw-bench` (first
//! measure the kernel's share of an exit round trip), `--echo-check` (at
//! the end, call the `echo` service of `ipc-pong`: proof that the other components
//! kept running through the guests).
//!
//! | module | owns |
//! |---|---|
//! | `sys` | selectors, memory, VMs, vCPUs, boot modules, threads (`unsafe` is here and in `platform`) |
//! | `platform` | guest RAM and the host hooks `vmm-core` asks for |
//! | `smoke` | the built-in check |
//! | `shootdown` | revocation reaches a guest and a thread on another CPU before it returns |
//! | `fpu` | XCR0, XMM0 and CPUID's XSAVE leaf as the calling thread sees them (for `smoke`) |
#![no_std]
#![no_main]

extern crate alloc;

mod fpu;
mod platform;
mod shootdown;
mod smoke;
mod sys;

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use native::println;
use vcpu_api::Vcpu;
use vmm_core::{Outcome, VmConfig};

native::entry!(main);

/// Runs of `--smoke`'s hostile-VMM check.
const FUZZ_ROUNDS: u32 = 1000;

struct Args {
    guests: Vec<(String, usize)>,
    memory_mib: u64,
    max_exits: u64,
    smoke: bool,
    shootdown: bool,
    raw_bench: bool,
    echo_check: bool,
}

fn parse(args: &str) -> Result<Args, String> {
    let mut a = Args {
        guests: Vec::new(),
        memory_mib: 16,
        max_exits: 1_000_000,
        smoke: false,
        shootdown: false,
        raw_bench: false,
        echo_check: false,
    };
    let mut it = args.split_whitespace();
    while let Some(w) = it.next() {
        let mut number = |flag: &str| -> Result<u64, String> {
            it.next()
                .and_then(|v| v.parse().ok())
                .ok_or(format!("{flag} needs a number"))
        };
        match w {
            "--smoke" => a.smoke = true,
            "--shootdown" => a.shootdown = true,
            "--echo-check" => a.echo_check = true,
            "--raw-bench" => a.raw_bench = true,
            "--memory" => a.memory_mib = number("--memory")?,
            "--max-exits" => a.max_exits = number("--max-exits")?,
            flag if flag.starts_with('-') => return Err(format!("unknown option {flag}")),
            guest => {
                let (name, n) = match guest.split_once(':') {
                    Some((name, n)) => (
                        name,
                        n.parse()
                            .map_err(|_| format!("bad vCPU count in {guest}"))?,
                    ),
                    None => (guest, 1),
                };
                if !(1..=vmm_core::MAX_VCPUS).contains(&n) {
                    return Err(format!("{name}: 1 to {} vCPUs", vmm_core::MAX_VCPUS));
                }
                a.guests.push((String::from(name), n));
            }
        }
    }
    if !(4..=1024).contains(&a.memory_mib) || !a.memory_mib.is_power_of_two() {
        return Err(String::from(
            "--memory must be a power of two from 4 to 1024 MiB",
        ));
    }
    Ok(a)
}

fn main() -> i32 {
    let info = native::StartInfo::get();
    let args = match parse(info.args()) {
        Ok(a) => a,
        Err(e) => {
            println!("vmm: bad arguments: {e}");
            return 2;
        }
    };
    if args.smoke {
        let fpu = smoke::run().and_then(|()| smoke::guest_fpu());
        match &fpu {
            Ok(Some(r)) => println!(
                "vmm-native: smoke: FPU: {} guest XSETBVs ({}) against charged XCR0 1, 3 and {:#x}: the VMM's XCR0 stayed {:#x}, guests ran with the charged one; MXCSR garbage {} by the guest's CPU; FPU state of two threads intact",
                r.runs,
                if r.intercepted { "intercepted" } else { "not intercepted: they reach the CPU" },
                r.host,
                r.host,
                if r.mxcsr_taken { "taken" } else { "refused" }
            ),
            Ok(None) => println!("vmm-native: smoke: FPU: the CPU has no XSAVE, nothing to check"),
            Err(_) => {}
        }
        return match fpu.and_then(|_| smoke::fuzz(FUZZ_ROUNDS)) {
            Ok((k, spared)) => {
                println!(
                    "vmm-native: smoke: {FUZZ_ROUNDS} runs with random state{}: {} hardware, {} invalid-state, {} recall exits; kernel fine",
                    if spared { " (CR/EFER spared)" } else { "" },
                    k[0], k[3], k[2]
                );
                0
            }
            Err(e) => {
                println!("vmm-native: smoke: FAIL: {e}");
                1
            }
        };
    }
    if args.shootdown {
        return match shootdown::run() {
            Ok((guest, host)) => {
                println!(
                    "vmm-native: shootdown: guest: nested page fault after each of {} revokes, {guest} writes after a revoke returned",
                    shootdown::ROUNDS
                );
                println!(
                    "vmm-native: shootdown: host: fault after each of {} revokes, {host} writes after a revoke returned",
                    shootdown::ROUNDS
                );
                0
            }
            Err(e) => {
                println!("vmm-native: shootdown: FAIL: {e}");
                1
            }
        };
    }
    if args.raw_bench {
        match smoke::raw_bench(args.memory_mib << 20, 100_000) {
            Ok(c) => println!("vmm-native: raw-bench: {c} cycles per exit round trip (kernel and a minimal VMM loop)"),
            Err(e) => println!("vmm-native: raw-bench: FAIL: {e}"),
        }
    }
    let host: &'static platform::Host = match platform::Host::new(info.cpu, info.tsc_per_us) {
        Ok(h) => Box::leak(Box::new(h)),
        Err(e) => {
            println!("vmm: cannot start the timer thread: {}", e.name());
            return 2;
        }
    };
    let mut failed = 0;
    for (name, vcpus) in &args.guests {
        match run_guest(host, name, *vcpus, &args, info.cpu, info.cpu_count) {
            Ok(outcome) => {
                println!("vmm: guest {name}: {outcome}");
                if !outcome.passed() {
                    failed += 1;
                }
            }
            Err(e) => {
                println!("vmm: guest {name}: cannot run: {e}");
                failed += 1;
            }
        }
    }
    println!(
        "vmm: {} guests run, {failed} did not pass",
        args.guests.len()
    );
    if args.echo_check {
        return echo_check();
    }
    0
}

/// Calls `echo` (ipc-pong): word 1 comes back incremented.
fn echo_check() -> i32 {
    let pt = sys::alloc_sel();
    let Ok(pt) = native::parent::lookup("echo", native::RECV_BASE + (pt & 0x3ff)) else {
        println!("vmm: FAIL: no echo service");
        return 1;
    };
    let u = native::utcb();
    u.words[0] = 0;
    u.words[1] = 41;
    u.untyped = 2;
    u.typed = 0;
    match hyper_abi::syscall::call(pt) {
        Ok(()) if u.words[0] == 42 => {
            println!("vmm: the echo component still answers (41 -> 42)");
            0
        }
        other => {
            println!("vmm: FAIL: echo answered {:?} / {}", other, u.words[0]);
            1
        }
    }
}

/// Runs one guest to its end. vCPU 0 runs on this thread, the others on threads
/// of their own (on further CPUs when there are any).
///
/// The VM's bookkeeping is leaked (a few KiB per guest): vCPU threads borrow it
/// for `'static`. The guest RAM is the same for every guest, zeroed in between.
fn run_guest(
    host: &'static platform::Host,
    name: &str,
    vcpus: usize,
    args: &Args,
    cpu: u32,
    cpus: u32,
) -> Result<Outcome, String> {
    let image =
        sys::boot_module(name).map_err(|e| format!("no boot module {name} ({})", e.name()))?;
    let vm = sys::Vm::create(args.memory_mib << 20)
        .map_err(|e| format!("cannot create the VM ({})", e.name()))?;
    vm.zero_ram();
    let ram: &'static platform::SharedRam = Box::leak(Box::new(platform::SharedRam::new(vm.ram())));
    let core: &'static vmm_core::Vm<'static> = Box::leak(Box::new(vmm_core::Vm::new(
        ram,
        host,
        VmConfig {
            vcpus,
            max_exits: args.max_exits,
        },
    )));
    let boot = core.load(image).map_err(|e| format!("cannot load: {e}"))?;
    let done = sys::Semaphore::new().map_err(|e| format!("no semaphore ({})", e.name()))?;
    let done: &'static sys::Semaphore = Box::leak(Box::new(done));
    for index in 1..vcpus {
        let vcpu_cpu = (cpu + index as u32) % cpus.max(1);
        let handle = vm
            .vcpu(vcpu_cpu)
            .map_err(|e| format!("cannot create vCPU {index} ({})", e.name()))?;
        sys::spawn(
            vcpu_cpu,
            Box::new(move || {
                let mut backend = handle.backend();
                backend.adopt();
                let mut vcpu = Vcpu::new(backend);
                let counters = core.run_vcpu(index, &mut vcpu, boot);
                if !core.outcome().is_some_and(|o| o.passed()) {
                    sys::print_line(&format!("vmm: vCPU {index}: exits: {counters}"));
                }
                done.up();
            }),
        )
        .map_err(|e| format!("cannot start the thread of vCPU {index} ({})", e.name()))?;
    }
    let handle = vm
        .vcpu(cpu)
        .map_err(|e| format!("cannot create vCPU 0 ({})", e.name()))?;
    let backend = handle.backend();
    let mut vcpu = Vcpu::new(backend);
    let counters = core.run_vcpu(0, &mut vcpu, boot);
    for _ in 1..vcpus {
        done.down();
    }
    let outcome = core.outcome().unwrap_or(Outcome::AllHalted);
    if !outcome.passed() {
        println!("vmm: guest {name}: exits of vCPU 0: {counters}");
    }
    vm.destroy();
    Ok(outcome)
}
