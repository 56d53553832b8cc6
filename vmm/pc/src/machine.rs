//! The running machine: what every vCPU handler shares (guest RAM, the
//! buses, the interrupt controllers, the CPUID tables, the end of the VM)
//! and its start from a configuration.
//!
//! Owns: the dispatch of port I/O and MMIO to the buses and the test
//! device (ports that no device covers read all ones; MMIO to nowhere is
//! logged once and reads ones, or stops the VM with `unmapped-mmio =
//! "stop"`), the exit counters and budget, the boot milestones' port, the
//! stop of the VM and the vCPU threads. Must not touch: device internals,
//! the exit loop's per-exit policy (`vcpu`).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use halifax_emu::Emulator;
use vcpu_api::{Access, ExitReason, Vcpu};
use vm_memory::{Bytes, GuestAddress};
use vmm_bus::Bus;
use vmm_core::devices::PortEffect;
use vmm_core::ExitCounters;
use vmm_host::{Host, HostError};
use vmm_platform::config::{OnReset, UnmappedMmio, VmConfig};
use vmm_platform::cpuid::{CpuidPolicy, GuestCpuid};
use vmm_platform::layout::LAPIC;
use vmm_platform::msr::MsrPlatform;

use crate::boot::{self, BootError, Entry};
use crate::devices::{self, DeviceError};
use crate::doorbell::Doorbell;
use crate::end::End;
use crate::irq::InterruptController;
use crate::memory::{self, GuestRam, MemoryError};
use crate::milestone::{self, Mark, Milestones};
use crate::restart::{ResetLimit, Restart, RESET_LOOP_RESETS, RESET_LOOP_WINDOW_NS};
use crate::testdev::{self, TestDevice};
use crate::vcpu;

#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    #[error("{0}")]
    Host(#[from] HostError),
    #[error("{0}")]
    Memory(#[from] MemoryError),
    #[error("{0}")]
    Boot(#[from] BootError),
    #[error("{0}")]
    Device(#[from] DeviceError),
    #[error("the guest's CPUID: {0}")]
    Cpuid(String),
    #[error("{0}")]
    Unsupported(String),
}

/// The end of the VM, its restarts after a guest reset, and the doorbells
/// that tell every vCPU about them; shared with device callbacks (power
/// events) created before the machine.
pub struct Lifecycle {
    doorbells: Vec<Doorbell>,
    end: Mutex<Option<End>>,
    stopped: AtomicBool,
    on_reset: OnReset,
    pub(crate) restart: Restart,
    resets: Mutex<ResetLimit>,
    started: std::time::Instant,
}

impl Lifecycle {
    pub fn new(vcpus: u32, on_reset: OnReset) -> Arc<Self> {
        Arc::new(Lifecycle {
            doorbells: (0..vcpus).map(|_| Doorbell::default()).collect(),
            end: Mutex::new(None),
            stopped: AtomicBool::new(false),
            on_reset,
            restart: Restart::default(),
            resets: Mutex::new(ResetLimit::new(RESET_LOOP_RESETS, RESET_LOOP_WINDOW_NS)),
            started: std::time::Instant::now(),
        })
    }

    /// The guest reset the machine: with `on-reset = "restart"` every vCPU
    /// handler is called to the restart rendezvous (the machine starts
    /// again), unless the resets come in a loop; with `"exit"` the VM ends.
    pub fn reset(&self) {
        if self.on_reset == OnReset::Exit {
            return self.stop(End::Reset);
        }
        if self.restart.requested() {
            return; // this restart is under way
        }
        let now = self.started.elapsed().as_nanos() as u64;
        let allowed = self
            .resets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .restart_allowed(now);
        if !allowed {
            return self.stop(End::ResetLoop {
                resets: RESET_LOOP_RESETS,
                seconds: RESET_LOOP_WINDOW_NS / 1_000_000_000,
            });
        }
        if self.restart.request() {
            for bell in &self.doorbells {
                bell.ring();
            }
        }
    }

    /// A restart is asked for: handlers stop running their vCPUs and gather.
    pub fn restart_requested(&self) -> bool {
        self.restart.requested()
    }

    pub fn doorbell(&self, vcpu: u32) -> &Doorbell {
        &self.doorbells[vcpu as usize]
    }

    pub fn vcpus(&self) -> u32 {
        self.doorbells.len() as u32
    }

    pub fn stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// Ends the VM (the first end wins) and wakes every vCPU handler.
    pub fn stop(&self, end: End) {
        {
            let mut slot = self.end.lock().unwrap_or_else(|e| e.into_inner());
            if slot.is_none() {
                *slot = Some(end);
            }
        }
        self.stopped.store(true, Ordering::Release);
        for bell in &self.doorbells {
            bell.ring();
        }
    }

    pub fn end(&self) -> Option<End> {
        self.end.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The state every vCPU handler shares.
pub struct Machine {
    pub ram: GuestRam,
    pub pio: Bus,
    pub mmio: Bus,
    pub irq: Arc<dyn InterruptController>,
    pub entry: Entry,
    pub emulator: Emulator,
    pub life: Arc<Lifecycle>,
    pub(crate) cpuid: GuestCpuid,
    pub msr_platform: MsrPlatform,
    pub(crate) exits: AtomicU64,
    pub(crate) max_exits: Option<u64>,
    /// Per vCPU: its exits by reason (locked by its handler on every exit,
    /// by others only for a milestone's report).
    pub(crate) exit_counters: Vec<Mutex<ExitCounters>>,
    /// The boot milestones (`milestones = true`).
    pub milestones: Option<Milestones>,
    /// vCPUs that wait with nothing but the VM's end or another vCPU to
    /// wake them (halted with interrupts off, or waiting for a SIPI).
    pub(crate) idle_dead: AtomicU32,
    pub(crate) warned: Mutex<HashSet<(&'static str, u64)>>,
    /// The guest-test device, if the configuration asks for it.
    pub test: Option<Arc<TestDevice>>,
    pub unmapped_mmio: UnmappedMmio,
    pub power_on: PowerOn,
}

/// What a restart puts back to its power-on state besides the vCPUs.
pub struct PowerOn {
    /// Each device's reset, interrupt controllers last
    /// ([`devices::Devices::resets`]).
    pub device_resets: Vec<devices::DeviceReset>,
    /// Writes the guest's images and the firmware tables to RAM again and
    /// says where the guest starts.
    pub reload: Reload,
}

/// Loads the guest into RAM again; the error says why it cannot.
pub type Reload = Box<dyn Fn(&GuestRam) -> Result<Entry, String> + Send + Sync>;

/// What [`run`] reports.
#[derive(Debug)]
pub struct Report {
    pub end: End,
    pub counters: ExitCounters,
}

impl Machine {
    pub fn doorbell(&self, vcpu: u32) -> &Doorbell {
        self.life.doorbell(vcpu)
    }

    pub fn vcpus(&self) -> u32 {
        self.life.vcpus()
    }

    pub fn stopped(&self) -> bool {
        self.life.stopped()
    }

    pub fn stop(&self, end: End) {
        self.life.stop(end)
    }

    /// Joins the restart rendezvous (a restart is requested); the last
    /// handler to arrive powers the machine on again. `false`: the VM
    /// ended instead.
    pub(crate) fn gather_for_restart(&self) -> bool {
        self.life
            .restart
            .gather(self.vcpus(), || self.stopped(), |n| self.power_on_again(n))
    }

    /// Restart `number`'s work while every handler waits: each device at
    /// its power-on state, the guest's images and tables in RAM again.
    /// Guest RAM is not cleared (as on a PC); disks keep their contents.
    fn power_on_again(&self, number: u64) {
        for reset in &self.power_on.device_resets {
            reset();
        }
        match (self.power_on.reload)(&self.ram) {
            Ok(entry) if entry == self.entry => {
                eprintln!("tern-vmm: the guest reset the machine; restarting it (restart {number})")
            }
            Ok(_) => self.stop(End::RestartFailed(
                "the kernel changed on disk since the VM started (another entry point)".into(),
            )),
            Err(error) => self.stop(End::RestartFailed(error)),
        }
    }

    /// Counts an exit of `vcpu` by its reason and against the limit. The
    /// boot vCPU's first (start-up) exit is the milestone `guest-entry`.
    pub(crate) fn count_exit(&self, vcpu: u32, reason: &ExitReason) -> Result<(), End> {
        if let Some(counters) = self.exit_counters.get(vcpu as usize) {
            counters
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .count(reason);
        }
        if let (Some(milestones), 0, ExitReason::Startup) = (&self.milestones, vcpu, reason) {
            milestones.reach(Mark::GuestEntry, || self.exit_counters());
        }
        match vcpu::over_limit(&self.exits, self.max_exits) {
            Some(end) => Err(end),
            None => Ok(()),
        }
    }

    /// The exits of every vCPU so far, by reason.
    pub fn exit_counters(&self) -> ExitCounters {
        let mut total = ExitCounters::default();
        for counters in &self.exit_counters {
            total.merge(&counters.lock().unwrap_or_else(|e| e.into_inner()));
        }
        total
    }

    /// The exits of `vcpu` so far, by reason.
    pub fn vcpu_exit_counters(&self, vcpu: u32) -> ExitCounters {
        self.exit_counters
            .get(vcpu as usize)
            .map(|c| c.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .unwrap_or_default()
    }

    /// Runs `wait` as an idle vCPU; `dead`: only the VM's end or another
    /// vCPU can wake it. When every vCPU is dead-idle the VM ends. With
    /// milestones the idle time is counted.
    pub(crate) fn idle(&self, _vcpu: u32, dead: bool, wait: impl FnOnce()) {
        if dead && self.idle_dead.fetch_add(1, Ordering::AcqRel) + 1 >= self.vcpus() {
            self.stop(End::AllHalted);
        }
        match &self.milestones {
            Some(milestones) => {
                let since = std::time::Instant::now();
                wait();
                milestones.count_idle(since.elapsed());
            }
            None => wait(),
        }
        if dead {
            self.idle_dead.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// The guest TSC now (guests start with the host's TSC).
    pub fn guest_tsc_now(&self) -> u64 {
        devices::host_tsc()
    }

    /// CPUID leaf/subleaf of vCPU `vcpu` (with its CR4 and XCR0): EAX,
    /// EBX, ECX, EDX.
    pub fn cpuid(&self, vcpu: u32, leaf: u32, subleaf: u32, cr4: u64, xcr0: u64) -> [u32; 4] {
        let r = self.cpuid.lookup(vcpu, leaf, subleaf, cr4, xcr0);
        [r.eax, r.ebx, r.ecx, r.edx]
    }

    /// The XCR0 a vCPU starts with (at its first entry and after a SIPI):
    /// every user state component the guest is offered (x87, SSE, AVX,
    /// AVX-512), or x87 alone without XSAVE. Linux enables exactly these
    /// at once; starting with them keeps the host's XCR0 right even where
    /// the guest's XSETBV never reaches the host: QEMU's TCG does not
    /// intercept XSETBV of a nested SVM guest, so a KVM nested there keeps
    /// its XCR0 and answers CPUID 0xD for it (Linux: "XSAVE consistency
    /// problem: size 832 != kernel_size 576", then #UD on AVX).
    pub fn start_xcr0(&self) -> u64 {
        const USER_STATES: u64 = 0xe7;
        let [eax, _, _, edx] = self.cpuid(0, 0xd, 0, 0, 1);
        let offered = (eax as u64 | (edx as u64) << 32) & USER_STATES;
        if offered & 3 == 3 {
            offered
        } else {
            1
        }
    }

    /// Logs `message` the first time `(kind, key)` comes up.
    pub fn warn_once(&self, kind: &'static str, key: u64, message: &str) {
        let mut warned = self.warned.lock().unwrap_or_else(|e| e.into_inner());
        if warned.len() < 4096 && warned.insert((kind, key)) {
            eprintln!("tern-vmm: {message}");
        }
    }

    /// An IN from `port` by `vcpu`; ports no device covers read all ones.
    pub fn port_read(&self, vcpu: u32, port: u16, data: &mut [u8]) {
        if let Some(test) = self.test_device(port) {
            test.port_read(vcpu, port, data);
        } else if !self.pio.read(port as u64, data) {
            data.fill(0xff);
        }
    }

    /// An OUT to `port`; a test-device argument or command comes back for
    /// the writing vCPU to carry out.
    pub fn port_write(&self, port: u16, data: &[u8]) -> PortEffect {
        if let (Some(milestones), milestone::PORT) = (&self.milestones, port) {
            let n = data.first().copied().unwrap_or(0);
            milestones.reach(Mark::Guest(n), || self.exit_counters());
            return PortEffect::None;
        }
        if let Some(test) = self.test_device(port) {
            return test.port_write(port, data);
        }
        self.pio.write(port as u64, data);
        PortEffect::None
    }

    fn test_device(&self, port: u16) -> Option<&TestDevice> {
        self.test
            .as_deref()
            .filter(|_| testdev::PORTS.contains(&port))
    }

    /// A load from guest-physical `gpa` that is not RAM, by `vcpu` at `rip`.
    pub fn mmio_read(&self, vcpu: u32, rip: u64, gpa: u64, data: &mut [u8]) {
        if LAPIC.contains(&gpa) {
            self.irq.lapic_read(vcpu, gpa - LAPIC.start, data);
        } else if !self.mmio.read(gpa, data) {
            data.fill(0xff);
            self.nowhere(vcpu, rip, gpa, Access::Read);
        }
    }

    /// A store to guest-physical `gpa` that is not RAM, by `vcpu` at `rip`.
    pub fn mmio_write(&self, vcpu: u32, rip: u64, gpa: u64, data: &[u8]) {
        if LAPIC.contains(&gpa) {
            self.irq.lapic_write(vcpu, gpa - LAPIC.start, data);
        } else if !self.mmio.write(gpa, data) {
            self.nowhere(vcpu, rip, gpa, Access::Write);
        }
    }

    /// An access that reached no device: logged once per page (loads read
    /// all ones, stores are dropped), or the end of the VM.
    fn nowhere(&self, vcpu: u32, rip: u64, gpa: u64, access: Access) {
        match self.unmapped_mmio {
            UnmappedMmio::Stop => self.stop(End::UnmappedAccess {
                vcpu,
                gpa,
                access,
                rip,
            }),
            UnmappedMmio::Ignore => {
                let what = match access {
                    Access::Write => "write reaches no device; ignored",
                    _ => "read reaches no device; it reads all ones",
                };
                self.warn_once(
                    "mmio",
                    gpa & !0xfff,
                    &format!("vCPU {vcpu}: MMIO {what} (GPA={gpa:#x}, RIP={rip:#x}; logged once per page)"),
                );
            }
        }
    }
}

/// Builds the machine `config` describes on `host`, runs it until it ends
/// and reports how. The host must outlive the call (it backs guest RAM).
pub fn run<H: Host>(host: Arc<H>, config: &VmConfig) -> Result<Report, MachineError> {
    let milestones = config.milestones.then(Milestones::new);
    let layout = config.layout();
    let mut regions = Vec::new();
    for range in layout.ram() {
        regions.push(host.add_ram(range.start, range.end - range.start)?);
    }
    // SAFETY: the host keeps its RAM mapped until it is dropped; `host`
    // lives until this function returns, and everything that holds the
    // memory (the machine, its devices, the vCPU threads) is gone by then:
    // the threads are joined and the machine and devices dropped below.
    let ram = unsafe { memory::from_host_regions(&regions)? };
    if let Some(milestones) = &milestones {
        milestones.reach(Mark::RamBacked, ExitCounters::default);
    }
    let cpus = config.cpus;
    let life = Lifecycle::new(cpus, config.on_reset);
    let tsc_hz = devices::measure_tsc_hz();
    let tsc_khz = u32::try_from(tsc_hz / 1000).ok();
    let policy = CpuidPolicy {
        x2apic: devices::X2APIC,
        tsc_deadline: true,
        tsc_khz,
        apic_timer_khz: Some((vmm_irqchip::LAPIC_TIMER_HZ / 1000) as u32),
        ..CpuidPolicy::new(cpus)
    };
    let cpuid =
        GuestCpuid::new(&host.cpuid()?, &policy).map_err(|e| MachineError::Cpuid(e.to_string()))?;
    let msr_platform = MsrPlatform::new(&cpuid, &layout, tsc_khz, 0);
    let devices = devices::build(config, &layout, &ram, &life, tsc_hz)?;
    let entry = boot::load(&ram, &layout, &config.boot, devices.rsdp)?;
    let (boot, tables, rsdp) = (
        config.boot.clone(),
        devices.acpi_tables.clone(),
        devices.rsdp,
    );
    let reload = move |ram: &GuestRam| {
        if let Some((base, bytes)) = &tables {
            ram.write_slice(bytes, GuestAddress(*base))
                .map_err(|e| format!("cannot write the ACPI tables again: {e}"))?;
        }
        boot::load(ram, &layout, &boot, rsdp).map_err(|e| e.to_string())
    };
    let machine = Arc::new(Machine {
        ram,
        pio: devices.pio,
        mmio: devices.mmio,
        irq: devices.irq,
        entry,
        emulator: Emulator::default(),
        life: life.clone(),
        cpuid,
        msr_platform,
        exits: AtomicU64::new(0),
        max_exits: config.max_exits,
        exit_counters: (0..cpus).map(|_| Mutex::default()).collect(),
        milestones,
        idle_dead: AtomicU32::new(0),
        warned: Mutex::new(HashSet::new()),
        test: devices.test,
        unmapped_mmio: config.unmapped_mmio,
        power_on: PowerOn {
            device_resets: devices.resets,
            reload: Box::new(reload),
        },
    });

    let mut threads = Vec::new();
    for id in 0..cpus {
        let (m, h) = (machine.clone(), host.clone());
        let table = machine.cpuid.for_vcpu(id);
        let body = move || match h.create_vcpu(id, &table) {
            Ok(backend) => vcpu::run(&m, id, &mut Vcpu::new(backend)),
            Err(e) => m.stop(End::Host {
                vcpu: id,
                error: e.to_string(),
            }),
        };
        match host.spawn_vcpu_thread(id, Box::new(body)) {
            Ok(thread) => threads.push(thread),
            Err(e) => machine.stop(End::Host {
                vcpu: id,
                error: e.to_string(),
            }),
        }
    }
    for thread in threads {
        if thread.join().is_err() {
            machine.stop(End::Host {
                vcpu: u32::MAX,
                error: "a vCPU thread panicked".into(),
            });
        }
    }
    let end = life.end().unwrap_or(End::AllHalted);
    let counters = machine.exit_counters();
    drop(machine);
    drop(devices.keep_alive);
    Ok(Report { end, counters })
}
