//! tern-vmm: the Tern VMM hosted on Linux KVM.
//!
//! `tern-vmm VM.toml` runs the PC machine (`vmm-pc`) the configuration
//! file describes. Exit status: 0 when the guest powered off, `(V << 1) | 1`
//! after a write of V to isa-debug-exit, 1 for any other end of the VM, 2
//! when it could not start (bad configuration or image, no KVM).
//!
//! `tern-vmm [--cpus N] [--memory MIB] [--max-exits N] GUEST.elf` runs a
//! guest-test guest with the seed's exit loop (`vmm-core`). Exit status: 0
//! when the guest reported PASS on port 0xf4, 1 when the VM ended any other
//! way (failure, hostile guest), 2 when it could not start (usage,
//! unreadable or bad ELF, no KVM).
//!
//! Owns: the command line, the choice of host and the report. Must not
//! touch: exit handling (vmm-pc, vmm-core) or KVM details (vmm-host,
//! vcpu-api's `kvm` backend).

#[cfg(target_os = "linux")]
mod ram;

use std::process::ExitCode;

#[derive(Debug, thiserror::Error)]
enum UsageError {
    #[error("usage: tern-vmm [--cpus N] [--memory MIB] [--max-exits N] GUEST.elf")]
    Usage,
    #[error("{flag} needs a number, got `{value}`")]
    BadNumber { flag: String, value: String },
    #[error("--cpus must be 1..={max}, got {got}")]
    BadCpus { got: usize, max: usize },
    #[error(
        "--memory must be 4..=3072 MiB (guest RAM lies below the 0xD0000000 device page), got {0}"
    )]
    BadMemory(u64),
}

/// The parsed command line.
#[derive(Debug, PartialEq, Eq)]
struct Args {
    cpus: usize,
    memory_mib: u64,
    max_exits: u64,
    guest: String,
}

fn parse_args(args: &[String]) -> Result<Args, UsageError> {
    let mut parsed = Args {
        cpus: 1,
        memory_mib: 16,
        max_exits: 1_000_000,
        guest: String::new(),
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut number = |flag: &str| -> Result<u64, UsageError> {
            let value = it.next().ok_or(UsageError::Usage)?;
            value.parse().map_err(|_| UsageError::BadNumber {
                flag: flag.to_string(),
                value: value.clone(),
            })
        };
        match arg.as_str() {
            "--cpus" => parsed.cpus = number("--cpus")? as usize,
            "--memory" => parsed.memory_mib = number("--memory")?,
            "--max-exits" => parsed.max_exits = number("--max-exits")?,
            "-h" | "--help" => return Err(UsageError::Usage),
            flag if flag.starts_with('-') => return Err(UsageError::Usage),
            guest if parsed.guest.is_empty() => parsed.guest = guest.to_string(),
            _ => return Err(UsageError::Usage),
        }
    }
    if parsed.guest.is_empty() {
        return Err(UsageError::Usage);
    }
    if !(1..=vmm_core::MAX_VCPUS).contains(&parsed.cpus) {
        return Err(UsageError::BadCpus {
            got: parsed.cpus,
            max: vmm_core::MAX_VCPUS,
        });
    }
    if !(4..=3072).contains(&parsed.memory_mib) {
        return Err(UsageError::BadMemory(parsed.memory_mib));
    }
    Ok(parsed)
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if let [config] = argv.as_slice() {
        if config.ends_with(".toml") {
            return machine::run(std::path::Path::new(config));
        }
    }
    let args = match parse_args(&argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("tern-vmm: {e}");
            return ExitCode::from(2);
        }
    };
    run(&args)
}

mod machine {
    //! The PC machine from a configuration file.

    use std::path::Path;
    use std::process::ExitCode;

    /// Device models report guest-caused problems through `log`.
    struct StderrLogger;

    impl log::Log for StderrLogger {
        fn enabled(&self, metadata: &log::Metadata) -> bool {
            metadata.level() <= log::Level::Warn
        }
        fn log(&self, record: &log::Record) {
            if self.enabled(record.metadata()) {
                eprintln!("tern-vmm: {}", record.args());
            }
        }
        fn flush(&self) {}
    }

    pub fn run(file: &Path) -> ExitCode {
        static LOGGER: StderrLogger = StderrLogger;
        if log::set_logger(&LOGGER).is_ok() {
            log::set_max_level(log::LevelFilter::Warn);
        }
        let config = match vmm_platform::config::VmConfig::load(file) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("tern-vmm: {e}");
                return ExitCode::from(2);
            }
        };
        match start(&config) {
            Ok(report) => {
                eprintln!("tern-vmm: {}", report.end);
                if config.print_exits {
                    for line in report.counters.to_string().lines() {
                        eprintln!("tern-vmm: {line}");
                    }
                }
                ExitCode::from(report.end.exit_status())
            }
            Err(e) => {
                eprintln!("tern-vmm: {e}");
                ExitCode::from(2)
            }
        }
    }

    #[cfg(target_os = "linux")]
    fn start(
        config: &vmm_platform::config::VmConfig,
    ) -> Result<vmm_pc::Report, vmm_pc::MachineError> {
        let host = std::sync::Arc::new(vmm_host::kvm::KvmHost::new()?);
        vmm_pc::run(host, config)
    }

    #[cfg(not(target_os = "linux"))]
    fn start(
        _config: &vmm_platform::config::VmConfig,
    ) -> Result<vmm_pc::Report, vmm_pc::MachineError> {
        Err(vmm_pc::MachineError::Unsupported(
            "the hosted VMM needs Linux KVM".into(),
        ))
    }
}

#[cfg(not(target_os = "linux"))]
fn run(_args: &Args) -> ExitCode {
    eprintln!("tern-vmm: the hosted VMM needs Linux KVM");
    ExitCode::from(2)
}

#[cfg(target_os = "linux")]
fn run(args: &Args) -> ExitCode {
    match hosted::run(args) {
        Ok(outcome) if outcome.passed() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("tern-vmm: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(target_os = "linux")]
mod hosted {
    //! The VMM on KVM: RAM, vCPU threads, the platform hooks.

    use std::io::Write;
    use std::sync::Mutex;
    use std::thread;
    use std::time::Duration;

    use vcpu_api::kvm::{CpuidEntry, KvmError, KvmVm};
    use vcpu_api::{BackendError, Vcpu, VcpuError};
    use vmm_core::{cpuid, CpuidResult, ExitCounters, LoadError, Outcome, Platform, Vm, VmConfig};

    use super::Args;
    use crate::ram::HostRam;

    #[derive(Debug, thiserror::Error)]
    pub enum StartError {
        #[error("cannot read the guest {path}: {source}")]
        Read {
            path: String,
            source: std::io::Error,
        },
        #[error("cannot allocate {mib} MiB of guest RAM: {source}")]
        Ram { mib: u64, source: std::io::Error },
        #[error("{0}")]
        Kvm(#[from] KvmError),
        #[error("cannot load the guest {path}: {source}")]
        Load { path: String, source: LoadError },
    }

    struct Host {
        cpuid: Vec<CpuidEntry>,
        stdout: Mutex<std::io::Stdout>,
    }

    impl Host {
        fn lookup(&self, leaf: u32, subleaf: u32) -> CpuidResult {
            let entry = self
                .cpuid
                .iter()
                .find(|e| e.leaf == leaf && e.index == subleaf)
                .or_else(|| self.cpuid.iter().find(|e| e.leaf == leaf));
            entry.map_or(CpuidResult::default(), |e| CpuidResult {
                eax: e.regs[0],
                ebx: e.regs[1],
                ecx: e.regs[2],
                edx: e.regs[3],
            })
        }

        /// The CPUID table of vCPU `id`: KVM's offer under vmm-core's policy.
        fn table_for(&self, id: usize) -> Vec<CpuidEntry> {
            self.cpuid
                .iter()
                .filter(|e| {
                    e.leaf <= cpuid::MAX_BASIC_LEAF
                        || (0x8000_0000..=cpuid::MAX_EXTENDED_LEAF).contains(&e.leaf)
                })
                .map(|e| {
                    let r = cpuid::answer(e.leaf, e.index, id, 0, |l, s| self.lookup(l, s));
                    CpuidEntry {
                        regs: [r.eax, r.ebx, r.ecx, r.edx],
                        ..*e
                    }
                })
                .collect()
        }
    }

    impl Platform for Host {
        fn console_line(&self, line: &str) {
            let mut out = self.stdout.lock().unwrap_or_else(|e| e.into_inner());
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
        fn host_cpuid(&self, leaf: u32, subleaf: u32) -> CpuidResult {
            self.lookup(leaf, subleaf)
        }
        fn after(&self, delay_ms: u32, job: Box<dyn FnOnce() + Send>) {
            thread::spawn(move || {
                thread::sleep(Duration::from_millis(delay_ms as u64));
                job();
            });
        }
        fn idle(&self) {
            thread::sleep(Duration::from_micros(200));
        }
    }

    /// Runs the guest to its end and prints the report.
    pub fn run(args: &Args) -> Result<Outcome, StartError> {
        let image = std::fs::read(&args.guest).map_err(|source| StartError::Read {
            path: args.guest.clone(),
            source,
        })?;
        let size = args.memory_mib << 20;
        let ram = HostRam::new(size).map_err(|source| StartError::Ram {
            mib: args.memory_mib,
            source,
        })?;
        let kvm = KvmVm::new()?;
        // SAFETY: `ram` is a page-aligned read/write mapping of `size` bytes
        // and outlives `kvm` (declared earlier, dropped later).
        unsafe { kvm.map_memory(0, 0, ram.host_address(), size) }?;
        let host = Host {
            cpuid: kvm.supported_cpuid()?,
            stdout: Mutex::new(std::io::stdout()),
        };
        let config = VmConfig {
            vcpus: args.cpus,
            max_exits: args.max_exits,
        };
        let vm = Vm::new(&ram, &host, config);
        let boot = vm.load(&image).map_err(|source| StartError::Load {
            path: args.guest.clone(),
            source,
        })?;

        let mut total = ExitCounters::default();
        thread::scope(|scope| {
            let handles: Vec<_> = (0..args.cpus)
                .map(|id| {
                    let (vm, kvm, host) = (&vm, &kvm, &host);
                    scope.spawn(move || {
                        let table = host.table_for(id);
                        match kvm.create_vcpu(id as u8, &table) {
                            Ok(backend) => vm.run_vcpu(id, &mut Vcpu::new(backend), boot),
                            Err(e) => {
                                eprintln!("tern-vmm: vCPU {id}: {e}");
                                vm.stop(Outcome::Backend {
                                    vcpu: id,
                                    error: VcpuError::Backend(BackendError::Dead),
                                });
                                ExitCounters::default()
                            }
                        }
                    })
                })
                .collect();
            for handle in handles {
                match handle.join() {
                    Ok(counters) => total.merge(&counters),
                    Err(_) => eprintln!("tern-vmm: a vCPU thread panicked"),
                }
            }
        });

        let outcome = vm.outcome().unwrap_or(Outcome::AllHalted);
        let mut out = host.stdout.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(out, "tern-vmm: {outcome}");
        for line in total.to_string().lines() {
            let _ = writeln!(out, "tern-vmm: {line}");
        }
        let _ = out.flush();
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn defaults_and_flags() {
        assert_eq!(
            parse_args(&args(&["g.elf"])).unwrap(),
            Args {
                cpus: 1,
                memory_mib: 16,
                max_exits: 1_000_000,
                guest: "g.elf".into()
            }
        );
        let a = parse_args(&args(&[
            "--cpus",
            "2",
            "--memory",
            "64",
            "--max-exits",
            "10",
            "x",
        ]))
        .unwrap();
        assert_eq!(
            (a.cpus, a.memory_mib, a.max_exits, a.guest.as_str()),
            (2, 64, 10, "x")
        );
    }

    #[test]
    fn bad_command_lines_are_refused_with_a_reason() {
        assert!(matches!(parse_args(&args(&[])), Err(UsageError::Usage)));
        assert!(matches!(
            parse_args(&args(&["a", "b"])),
            Err(UsageError::Usage)
        ));
        assert!(matches!(
            parse_args(&args(&["--cpus"])),
            Err(UsageError::Usage)
        ));
        assert!(matches!(
            parse_args(&args(&["--frob", "x"])),
            Err(UsageError::Usage)
        ));
        assert!(matches!(
            parse_args(&args(&["--cpus", "two", "x"])),
            Err(UsageError::BadNumber { .. })
        ));
        assert!(matches!(
            parse_args(&args(&["--cpus", "9", "x"])),
            Err(UsageError::BadCpus { got: 9, .. })
        ));
        assert!(matches!(
            parse_args(&args(&["--memory", "1", "x"])),
            Err(UsageError::BadMemory(1))
        ));
        assert!(UsageError::BadMemory(1).to_string().contains("4..=3072"));
    }
}
