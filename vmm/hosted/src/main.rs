//! tern-vmm: the Tern VMM, hosted on Linux KVM or, the same binary, as a
//! `kind = "linux"` component on Tern (it picks the host at start).
//!
//! `tern-vmm VM.toml` runs the PC machine (`vmm-pc`) the configuration
//! file describes (`docs/vm-config.md`); the `guest-tests/` guests run on it
//! with `test-device = true`. Exit status: 0 when the guest powered off,
//! `(V << 1) | 1` after a write of V to isa-debug-exit (a guest test's PASS,
//! 0x10, gives 33), 1 for any other end of the VM, 2 when it could not start
//! (usage, bad configuration or image, no KVM).
//!
//! Owns: the command line, the choice of host and the report. Must not
//! touch: exit handling (vmm-pc) or KVM details (vmm-host, vcpu-api's `kvm`
//! backend).

use std::path::Path;
use std::process::ExitCode;

const USAGE: &str = "usage: tern-vmm VM.toml (the VM configuration file, see docs/vm-config.md)";

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

fn main() -> ExitCode {
    // the zero of the boot milestones (`milestones = true`)
    vmm_pc::milestone::note_vmm_start();
    let argv: Vec<String> = std::env::args().skip(1).collect();
    match argv.as_slice() {
        [config] if !config.starts_with('-') => run(Path::new(config)),
        _ => {
            eprintln!("tern-vmm: {USAGE}");
            ExitCode::from(2)
        }
    }
}

fn run(file: &Path) -> ExitCode {
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
            eprintln!("tern-vmm: {}: {e}", config.file.display());
            ExitCode::from(2)
        }
    }
}

#[cfg(target_os = "linux")]
fn start(config: &vmm_platform::config::VmConfig) -> Result<vmm_pc::Report, vmm_pc::MachineError> {
    if tern::on_tern() {
        let host = std::sync::Arc::new(vmm_host::tern::TernHost::new()?);
        return vmm_pc::run(host, config);
    }
    let host = std::sync::Arc::new(vmm_host::kvm::KvmHost::new()?);
    vmm_pc::run(host, config)
}

#[cfg(not(target_os = "linux"))]
fn start(_config: &vmm_platform::config::VmConfig) -> Result<vmm_pc::Report, vmm_pc::MachineError> {
    Err(vmm_pc::MachineError::Unsupported(
        "the hosted VMM needs Linux KVM".into(),
    ))
}
