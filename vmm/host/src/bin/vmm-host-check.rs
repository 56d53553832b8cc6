//! vmm-host-check: runs `guest-tests` guests with vmm-core's exit loop through
//! the [`Host`] trait alone, on the host it finds: Tern when it runs there as a
//! `kind = "linux"` component (feature `tern`), else Linux KVM (feature `kvm`).
//! Proof that a std VMM gets guest RAM (below and above 4 GiB), vCPU threads
//! on their CPUs and working vCPUs from either host.
//!
//! `vmm-host-check [--memory MIB] [--high-memory MIB] [--max-exits N] GUEST[:VCPUS]...`
//!
//! Each guest (an ELF file, e.g. `/rom/smp`) gets a VM of its own with RAM at
//! `[0, --memory)` and `[HIGH_RAM, HIGH_RAM + --high-memory)` (4 GiB,
//! `guest-tests/protocol`; default 16 and 2 MiB);
//! after the `high-memory` guest the VMM reads its pattern back from its side.
//! Exit status: 0 when every guest passed, 1 when some did not, 2 when the
//! check could not start (usage, no host).
//!
//! Owns: the command line, the split guest RAM and the host hooks vmm-core
//! asks for. Must not touch: exit handling (vmm-core) or host details (the
//! `Host` implementations).

use std::io::Write;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use guest_protocol::{HIGH_RAM, HIGH_RAM_MAGIC, HIGH_RAM_SIZE};
use vcpu_api::Vcpu;
use vmm_core::{cpuid, CpuidResult, ExitCounters, Outcome, Platform, Vm, VmConfig};
use vmm_host::{CpuidEntry, Host, HostError, RamRegion};

#[derive(Debug, thiserror::Error)]
enum CheckError {
    #[error(
        "usage: vmm-host-check [--memory MIB] [--high-memory MIB] [--max-exits N] GUEST[:VCPUS]..."
    )]
    Usage,
    #[error("{0}")]
    Bad(String),
    #[error("no host: {0}")]
    NoHost(String),
    #[error("{0}")]
    Host(#[from] HostError),
    #[error("cannot read the guest {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot load the guest {path}: {source}")]
    Load {
        path: String,
        source: vmm_core::LoadError,
    },
}

struct Args {
    memory_mib: u64,
    high_mib: u64,
    max_exits: u64,
    guests: Vec<(String, usize)>,
}

fn parse_args(argv: &[String]) -> Result<Args, CheckError> {
    let mut args = Args {
        memory_mib: 16,
        high_mib: HIGH_RAM_SIZE >> 20,
        max_exits: 1_000_000,
        guests: Vec::new(),
    };
    let mut it = argv.iter();
    while let Some(arg) = it.next() {
        let mut number = |flag: &str| -> Result<u64, CheckError> {
            let v = it.next().ok_or(CheckError::Usage)?;
            v.parse()
                .map_err(|_| CheckError::Bad(format!("{flag} needs a number, got `{v}`")))
        };
        match arg.as_str() {
            "--memory" => args.memory_mib = number("--memory")?,
            "--high-memory" => args.high_mib = number("--high-memory")?,
            "--max-exits" => args.max_exits = number("--max-exits")?,
            flag if flag.starts_with('-') => return Err(CheckError::Usage),
            guest => {
                let (path, vcpus) = match guest.rsplit_once(':') {
                    Some((path, n)) => (
                        path,
                        n.parse()
                            .map_err(|_| CheckError::Bad(format!("bad vCPU count in `{guest}`")))?,
                    ),
                    None => (guest, 1),
                };
                if !(1..=vmm_core::MAX_VCPUS).contains(&vcpus) {
                    return Err(CheckError::Bad(format!(
                        "{path}: 1 to {} vCPUs",
                        vmm_core::MAX_VCPUS
                    )));
                }
                args.guests.push((path.to_string(), vcpus));
            }
        }
    }
    if args.guests.is_empty() {
        return Err(CheckError::Usage);
    }
    // below the test device's MMIO page, 2 MiB granules
    if !(4..=3072).contains(&args.memory_mib) || !args.memory_mib.is_multiple_of(2) {
        return Err(CheckError::Bad(format!(
            "--memory must be an even number of MiB from 4 to 3072, got {}",
            args.memory_mib
        )));
    }
    let high_min = HIGH_RAM_SIZE >> 20;
    if args.high_mib < high_min || !args.high_mib.is_multiple_of(2) || args.high_mib > 1 << 20 {
        return Err(CheckError::Bad(format!(
            "--high-memory must be an even number of MiB from {high_min} to 1 TiB, got {}",
            args.high_mib
        )));
    }
    Ok(args)
}

/// Guest RAM in pieces, each seen by the VMM at its host address.
struct SplitRam {
    regions: Vec<RamRegion>,
}

impl SplitRam {
    /// The host address of `[gpa, gpa + len)` if one region holds all of it.
    fn locate(&self, gpa: u64, len: usize) -> Result<*mut u8, vmm_core::OutOfRange> {
        let out = vmm_core::OutOfRange {
            gpa,
            len: len as u64,
        };
        let end = gpa.checked_add(len as u64).ok_or(out)?;
        let r = self
            .regions
            .iter()
            .find(|r| r.gpa <= gpa && end <= r.gpa + r.size)
            .ok_or(out)?;
        Ok((r.host_address + (gpa - r.gpa) as usize) as *mut u8)
    }
}

impl SplitRam {
    /// Reads `len` bytes of `file` straight into guest RAM at `gpa` (one
    /// `read` system call into VMM memory that maps guest RAM, as image
    /// loaders do).
    fn read_file_into(
        &self,
        gpa: u64,
        file: &mut std::fs::File,
        len: usize,
    ) -> std::io::Result<()> {
        use std::io::Read;
        let dst = self
            .locate(gpa, len)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        // SAFETY: `locate` found the range inside one mapped region; the
        // slice lives only for this call and nothing else uses that guest RAM
        // before the guest runs.
        let slice = unsafe { std::slice::from_raw_parts_mut(dst, len) };
        file.read_exact(slice)
    }
}

impl vmm_core::GuestMemory for SplitRam {
    fn size(&self) -> u64 {
        self.regions
            .iter()
            .map(|r| r.gpa + r.size)
            .max()
            .unwrap_or(0)
    }

    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), vmm_core::OutOfRange> {
        let src = self.locate(gpa, buf.len())?;
        // SAFETY: `locate` found the range inside one region the host mapped
        // for as long as it lives (the VM is run and checked before the host
        // is dropped); bytes are copied, no reference into guest memory is
        // kept, so concurrent guest writes only change the data.
        unsafe { std::ptr::copy_nonoverlapping(src, buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    fn write(&self, gpa: u64, data: &[u8]) -> Result<(), vmm_core::OutOfRange> {
        let dst = self.locate(gpa, data.len())?;
        // SAFETY: as in `read`.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), dst, data.len()) };
        Ok(())
    }
}

/// The host hooks of vmm-core: console, host CPUID, timers, idling.
struct Hooks {
    cpuid: Vec<CpuidEntry>,
}

impl Hooks {
    fn lookup(&self, leaf: u32, subleaf: u32) -> CpuidResult {
        let exact = self
            .cpuid
            .iter()
            .find(|e| e.function == leaf && e.index == subleaf);
        let entry = exact.or_else(|| self.cpuid.iter().find(|e| e.function == leaf));
        entry.map_or(CpuidResult::default(), |e| CpuidResult {
            eax: e.eax,
            ebx: e.ebx,
            ecx: e.ecx,
            edx: e.edx,
        })
    }

    /// The table vCPU `id` sees (KVM answers CPUID from it; on Tern vmm-core
    /// answers the exits with the same policy).
    fn table_for(&self, id: u32) -> Vec<CpuidEntry> {
        self.cpuid
            .iter()
            .filter(|e| {
                e.function <= cpuid::MAX_BASIC_LEAF
                    || (0x8000_0000..=cpuid::MAX_EXTENDED_LEAF).contains(&e.function)
            })
            .map(|e| {
                let r = cpuid::answer(e.function, e.index, id as usize, 0, |l, s| {
                    self.lookup(l, s)
                });
                CpuidEntry {
                    eax: r.eax,
                    ebx: r.ebx,
                    ecx: r.ecx,
                    edx: r.edx,
                    ..*e
                }
            })
            .collect()
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

impl Platform for Hooks {
    fn console_line(&self, line: &str) {
        say(line);
    }
    fn host_cpuid(&self, leaf: u32, subleaf: u32) -> CpuidResult {
        self.lookup(leaf, subleaf)
    }
    fn after(&self, delay_ms: u32, job: Box<dyn FnOnce() + Send>) {
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(delay_ms as u64));
            job();
        });
    }
    fn idle(&self) {
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// The host CPU of the calling thread, where threads stay on their CPU (Tern).
fn host_cpu() -> Option<u32> {
    #[cfg(feature = "tern")]
    if tern::on_tern() {
        return Some(tern::current_cpu());
    }
    None
}

/// How one guest went.
struct Report {
    outcome: Outcome,
    counters: ExitCounters,
    millis: u128,
    /// Time to back guest RAM.
    ram_millis: u128,
    /// Pages above 4 GiB holding the `high-memory` pattern, seen by the VMM.
    high_pages: u64,
}

/// Runs the guest at `path` with `vcpus` vCPUs in a new VM of `host`.
fn run_guest<H: Host>(
    host: H,
    path: &str,
    vcpus: usize,
    args: &Args,
) -> Result<Report, CheckError> {
    let image = std::fs::read(path).map_err(|source| CheckError::Read {
        path: path.into(),
        source,
    })?;
    let backing = Instant::now();
    let low = host.add_ram(0, args.memory_mib << 20)?;
    let high = host.add_ram(HIGH_RAM, args.high_mib << 20)?;
    let ram_millis = backing.elapsed().as_millis();
    let host = Arc::new(host);
    // vCPU threads are 'static: the VM's pieces live for the program (a few
    // KiB per guest); none is used after the host below is dropped
    let ram: &'static SplitRam = Box::leak(Box::new(SplitRam {
        regions: vec![low, high],
    }));
    let hooks: &'static Hooks = Box::leak(Box::new(Hooks {
        cpuid: host.cpuid()?,
    }));
    let config = VmConfig {
        vcpus,
        max_exits: args.max_exits,
    };
    let vm: &'static Vm<'static> = Box::leak(Box::new(Vm::new(ram, hooks, config)));
    // the image once more, read by the kernel straight into guest RAM above
    // 4 GiB (the guest overwrites it later, if it uses that RAM at all)
    let direct = std::fs::File::open(path).and_then(|mut f| {
        let len = image.len().min(HIGH_RAM_SIZE as usize);
        ram.read_file_into(HIGH_RAM, &mut f, len)?;
        let mut back = vec![0; len];
        vmm_core::GuestMemory::read(ram, HIGH_RAM, &mut back)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(back == image[..len])
    });
    match direct {
        Ok(true) => {}
        Ok(false) => {
            return Err(CheckError::Bad(format!(
                "{path}: reading it into guest RAM gave other bytes"
            )))
        }
        Err(source) => {
            return Err(CheckError::Read {
                path: format!("{path} (into guest RAM)"),
                source,
            })
        }
    }
    let boot = vm.load(&image).map_err(|source| CheckError::Load {
        path: path.into(),
        source,
    })?;
    let start = Instant::now();
    let total = Arc::new(Mutex::new(ExitCounters::default()));
    let mut threads = Vec::new();
    for id in 0..vcpus as u32 {
        let (h, total) = (host.clone(), total.clone());
        let body = Box::new(move || {
            if vcpus > 1 {
                if let Some(cpu) = host_cpu() {
                    say(&format!("vmm-host-check: vCPU {id} runs on host CPU {cpu}"));
                }
            }
            let counters = match h.create_vcpu(id, &hooks.table_for(id)) {
                Ok(backend) => vm.run_vcpu(id as usize, &mut Vcpu::new(backend), boot),
                Err(e) => {
                    say(&format!("vmm-host-check: vCPU {id}: {e}"));
                    vm.stop(Outcome::Backend {
                        vcpu: id as usize,
                        error: vcpu_api::VcpuError::Backend(vcpu_api::BackendError::Dead),
                    });
                    ExitCounters::default()
                }
            };
            total
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .merge(&counters);
        });
        match host.spawn_vcpu_thread(id, body) {
            Ok(t) => threads.push(t),
            Err(e) => {
                vm.stop(Outcome::Backend {
                    vcpu: id as usize,
                    error: vcpu_api::VcpuError::Backend(vcpu_api::BackendError::Dead),
                });
                for t in threads {
                    let _ = t.join();
                }
                return Err(e.into());
            }
        }
    }
    for t in threads {
        if t.join().is_err() {
            say("vmm-host-check: a vCPU thread panicked");
        }
    }
    let millis = start.elapsed().as_millis();
    let outcome = vm.outcome().unwrap_or(Outcome::AllHalted);
    let high_pages = (0..HIGH_RAM_SIZE)
        .step_by(4096)
        .filter(|&offset| {
            let mut word = [0u8; 8];
            vmm_core::GuestMemory::read(ram, HIGH_RAM + offset, &mut word).is_ok()
                && u64::from_le_bytes(word) == HIGH_RAM_MAGIC ^ offset
        })
        .count() as u64;
    let counters = std::mem::take(&mut *total.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(Report {
        outcome,
        counters,
        millis,
        ram_millis,
        high_pages,
    })
}

/// Runs every guest on hosts made by `new_host`; whether all passed.
fn run_all<H: Host>(
    args: &Args,
    new_host: impl Fn() -> Result<H, HostError>,
) -> Result<bool, CheckError> {
    let first = new_host()?;
    say(&format!(
        "vmm-host-check: host {}, {} CPUs for vCPU threads, guest RAM {} MiB at 0 and {} MiB at {HIGH_RAM:#x}",
        first.name(),
        first.cpu_count(),
        args.memory_mib,
        args.high_mib
    ));
    let mut host = Some(first);
    let mut failed = 0;
    for (path, vcpus) in &args.guests {
        let name = path.rsplit('/').next().unwrap_or(path);
        let h = match host.take() {
            Some(h) => h,
            None => new_host()?,
        };
        match run_guest(h, path, *vcpus, args) {
            Ok(r) => {
                let mut passed = r.outcome.passed();
                say(&format!(
                    "vmm-host-check: guest {name} ({vcpus} vCPUs): {} in {} ms, {} exits (RAM backed in {} ms)",
                    r.outcome,
                    r.millis,
                    r.counters.total(),
                    r.ram_millis
                ));
                if name == "high-memory" {
                    let pages = HIGH_RAM_SIZE / 4096;
                    say(&format!(
                        "vmm-host-check: the VMM reads the guest's pattern in {} of {pages} pages at {HIGH_RAM:#x}",
                        r.high_pages
                    ));
                    passed &= r.high_pages == pages;
                }
                if !passed {
                    failed += 1;
                }
            }
            Err(e) => {
                say(&format!("vmm-host-check: guest {name}: cannot run: {e}"));
                failed += 1;
            }
        }
    }
    say(&format!(
        "vmm-host-check: {} guests run, {failed} did not pass",
        args.guests.len()
    ));
    Ok(failed == 0)
}

fn run(args: &Args) -> Result<bool, CheckError> {
    #[cfg(feature = "tern")]
    if tern::on_tern() {
        return run_all(args, vmm_host::tern::TernHost::new);
    }
    #[cfg(feature = "kvm")]
    {
        return run_all(args, vmm_host::kvm::KvmHost::new);
    }
    #[allow(unreachable_code)]
    Err(CheckError::NoHost(
        "not on Tern, and built without KVM (build with the features `tern` and `kvm`)".into(),
    ))
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let result = parse_args(&argv).and_then(|args| run(&args));
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            say(&format!("vmm-host-check: {e}"));
            ExitCode::from(2)
        }
    }
}
