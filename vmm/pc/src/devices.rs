//! The devices of a configuration, created and wired: each on its bus
//! (port I/O, MMIO), its interrupt line into the interrupt controllers, the
//! machine's clock and timer thread, and power events to the VM's end.
//!
//! Owns: which device sits where and which line it drives. Must not touch:
//! device internals (their crates'), the exit loop.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

use std::thread::JoinHandle;

use vm_memory::{Bytes, GuestAddress};
use vmm_bus::{Bus, BusError, Clock, HostClock, Line, Msi, Timers};
use vmm_irqchip::{Interrupts, TimerQueue};
use vmm_legacy::{PowerEvent, PowerEvents, Uart, PIT_PORT, RTC_PORT};
use vmm_platform::acpi::{self, AcpiConfig, PmBlock};
use vmm_platform::config::{ConsoleDevice, ConsoleOutput, DiskMode, NetBackend, VmConfig};
use vmm_platform::layout::{MemoryLayout, ACPI_TABLES, ECAM, PCI_MMIO32};
use vmm_virtio::pci::{
    PciRoot, PciWindows, Window, CONFIG_ADDRESS_PORT, CONFIG_DATA_PORT, ECAM_SIZE,
};
use vmm_virtio::{Block, BlockMode, Console, Net, NetBackend as NetBackendTrait, Switch};
use vmm_virtio::{VirtioDevice, VirtioPci, Wakeup};

use crate::end::End;
use crate::irq::{InterruptController, Startup};
use crate::machine::Lifecycle;
use crate::memory::GuestRam;
use crate::testdev::{self, TestDevice};

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("device {what}: {source}")]
    Bus {
        what: &'static str,
        source: BusError,
    },
    #[error("{what}: {detail}")]
    Setup { what: &'static str, detail: String },
}

/// Everything the machine's devices need to stay alive, besides the buses;
/// dropping it stops the device threads (pollers first, then the timers).
pub struct KeepAlive {
    pollers: Vec<(Arc<Wakeup>, JoinHandle<()>)>,
    _timers: Arc<TimerQueue>,
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        for (wakeup, thread) in self.pollers.drain(..) {
            wakeup.close();
            let _ = thread.join();
        }
    }
}

/// Puts one device back to its power-on state (a restart after a guest
/// reset).
pub type DeviceReset = Box<dyn Fn() + Send + Sync>;

/// The reset of a device the buses share.
fn reset_of<D: Send + 'static>(device: &Arc<Mutex<D>>, reset: fn(&mut D)) -> DeviceReset {
    let device = device.clone();
    Box::new(move || reset(&mut device.lock().unwrap_or_else(|e| e.into_inner())))
}

/// The wired devices.
pub struct Devices {
    pub pio: Bus,
    pub mmio: Bus,
    pub irq: Arc<dyn InterruptController>,
    /// Where the ACPI RSDP is, if the machine has ACPI tables.
    pub rsdp: Option<u64>,
    /// The guest-test device (`test-device = true`).
    pub test: Option<Arc<TestDevice>>,
    /// Every device's reset, the interrupt controllers' last (devices drop
    /// their interrupt lines before the controllers forget the levels).
    pub resets: Vec<DeviceReset>,
    /// The ACPI tables as written to RAM (base, bytes), for a restart.
    pub acpi_tables: Option<(u64, Vec<u8>)>,
    pub keep_alive: KeepAlive,
}

fn insert(
    bus: &mut Bus,
    what: &'static str,
    base: u64,
    len: u64,
    device: Arc<Mutex<dyn vmm_bus::BusDevice>>,
) -> Result<(), DeviceError> {
    bus.insert(base, len, device)
        .map_err(|source| DeviceError::Bus { what, source })
}

/// Where a console's output goes.
fn console_output(output: &ConsoleOutput) -> Result<Box<dyn Write + Send>, DeviceError> {
    Ok(match output {
        ConsoleOutput::Stdout => Box::new(Unbuffered(std::io::stdout())),
        ConsoleOutput::Stderr => Box::new(std::io::stderr()),
        ConsoleOutput::Discard => Box::new(std::io::sink()),
        ConsoleOutput::File(path) => {
            Box::new(std::fs::File::create(path).map_err(|e| DeviceError::Setup {
                what: "console output file",
                detail: format!("{}: {e}", path.display()),
            })?)
        }
    })
}

/// Flushes every write: a prompt without a newline shows at once.
struct Unbuffered<W: Write>(W);

impl<W: Write> Write for Unbuffered<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.0.write(buf)?;
        self.0.flush()?;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// The power events of the legacy devices: a reset restarts the machine
/// (or ends the VM, as the configuration says); the others end the VM.
fn power_events(life: &Arc<Lifecycle>) -> PowerEvents {
    let life = life.clone();
    Arc::new(move |event| match event {
        PowerEvent::Off => life.stop(End::PowerOff),
        PowerEvent::Reset => life.reset(),
        PowerEvent::DebugExit(value) => life.stop(End::DebugExit(value)),
    })
}

/// The TSC guests count from for the LAPIC's TSC-deadline mode: the host's
/// (vCPUs start with it; the exit loop tells the interrupt controllers when
/// a vCPU's offset from it changes), at `hz`.
pub struct HostTsc {
    pub hz: u64,
}

impl vmm_irqchip::GuestTsc for HostTsc {
    fn now(&self) -> u64 {
        host_tsc()
    }
    fn hz(&self) -> u64 {
        self.hz
    }
}

/// The host's TSC.
pub fn host_tsc() -> u64 {
    // SAFETY: RDTSC has no side effects.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// The TSC's rate, measured against the host clock over about 20 ms.
pub fn measure_tsc_hz() -> u64 {
    let start = std::time::Instant::now();
    let tsc0 = host_tsc();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let ns = start.elapsed().as_nanos() as u64;
    let ticks = host_tsc().wrapping_sub(tsc0);
    (ticks as u128 * 1_000_000_000 / ns.max(1) as u128) as u64
}

/// The ACPI PM block as the firmware tables describe it.
pub fn pm_block() -> PmBlock {
    PmBlock {
        pm1a_evt: vmm_legacy::PM1A_EVT,
        pm1a_cnt: vmm_legacy::PM1A_CNT,
        pm_tmr: vmm_legacy::PM_TMR,
        pm_tmr_32bit: vmm_legacy::PM_TMR_32BIT,
        slp_typ_s5: vmm_legacy::SLP_TYP_S5,
        reset_port: vmm_legacy::RESET_PORT,
        reset_value: vmm_legacy::RESET_VALUE,
    }
}

/// Creates and wires the devices `config` asks for.
pub fn build(
    config: &VmConfig,
    layout: &MemoryLayout,
    ram: &GuestRam,
    life: &Arc<Lifecycle>,
    tsc_hz: u64,
) -> Result<Devices, DeviceError> {
    let setup = |what: &'static str| {
        move |e: &dyn std::fmt::Display| DeviceError::Setup {
            what,
            detail: e.to_string(),
        }
    };
    let clock: Arc<dyn Clock> = Arc::new(HostClock::new());
    let timer_queue = TimerQueue::new(clock.clone()).map_err(|e| setup("timer thread")(&e))?;
    let timers: Arc<dyn Timers> = timer_queue.clone();
    let power = power_events(life);
    let mut pio = Bus::new();
    let mut mmio = Bus::new();

    let bells = life.clone();
    let interrupts = Interrupts::new(
        config.cpus,
        clock.clone(),
        timers.clone(),
        Arc::new(HostTsc { hz: tsc_hz }),
        Arc::new(move |vcpu| bells.doorbell(vcpu).ring()),
    )
    .map_err(|e| setup("interrupt controllers")(&e))?;
    for r in interrupts.port_devices() {
        insert(&mut pio, "PIC", r.base, r.len, r.device)?;
    }
    for r in interrupts.mmio_devices() {
        insert(&mut mmio, "IOAPIC", r.base, r.len, r.device)?;
    }
    let line = |gsi: u32| -> Result<Line, DeviceError> {
        interrupts
            .gsi_line(gsi)
            .map_err(|e| setup("interrupt line")(&e))
    };

    let mut resets: Vec<DeviceReset> = Vec::new();
    let pit = vmm_legacy::Pit::new(line(vmm_legacy::PIT_IRQ)?, clock.clone(), timers.clone());
    let port61 = pit.port61();
    let pit = Arc::new(Mutex::new(pit));
    resets.push(reset_of(&pit, vmm_legacy::Pit::reset));
    insert(
        &mut pio,
        "PIT",
        PIT_PORT as u64,
        vmm_legacy::PIT_PORT_LEN,
        pit,
    )?;
    insert(
        &mut pio,
        "port 0x61",
        vmm_legacy::PORT61 as u64,
        1,
        shared(port61),
    )?;
    let mut rtc = vmm_legacy::Rtc::new(
        line(vmm_legacy::RTC_IRQ)?,
        clock.clone(),
        timers.clone(),
        unix_time(),
    );
    let (below, above) = layout.ram_below_above_4g();
    rtc.set_memory(below, above);
    let rtc = Arc::new(Mutex::new(rtc));
    resets.push(reset_of(&rtc, vmm_legacy::Rtc::reset));
    insert(
        &mut pio,
        "RTC",
        RTC_PORT as u64,
        vmm_legacy::RTC_PORT_LEN,
        rtc,
    )?;
    let pm = vmm_legacy::AcpiPm::new(line(vmm_legacy::SCI_IRQ)?, clock.clone(), power.clone());
    let pm = Arc::new(Mutex::new(pm));
    resets.push(reset_of(&pm, vmm_legacy::AcpiPm::reset));
    insert(
        &mut pio,
        "ACPI PM block",
        vmm_legacy::PM_BLOCK as u64,
        vmm_legacy::PM_BLOCK_LEN,
        pm,
    )?;
    let reset = Arc::new(Mutex::new(vmm_legacy::ResetRegister::new(power.clone())));
    resets.push(reset_of(&reset, vmm_legacy::ResetRegister::reset));
    insert(
        &mut pio,
        "reset register",
        vmm_legacy::RESET_PORT as u64,
        1,
        reset,
    )?;
    let i8042 = vmm_legacy::I8042::new(line(vmm_legacy::KEYBOARD_IRQ)?, power.clone());
    let (data, command) = (i8042.data_port(), i8042.command_port());
    resets.push(Box::new(move || i8042.reset()));
    insert(
        &mut pio,
        "i8042",
        vmm_legacy::I8042_DATA_PORT as u64,
        1,
        shared(data),
    )?;
    insert(
        &mut pio,
        "i8042",
        vmm_legacy::I8042_COMMAND_PORT as u64,
        1,
        shared(command),
    )?;
    let debug_exit = vmm_legacy::DebugExit::new(power.clone());
    insert(
        &mut pio,
        "isa-debug-exit",
        vmm_legacy::DEBUG_EXIT_PORT as u64,
        vmm_legacy::DEBUG_EXIT_LEN,
        shared(debug_exit),
    )?;

    let mut com1 = false;
    for console in &config.consoles {
        if console.device != ConsoleDevice::Com1 {
            continue;
        }
        let uart = Arc::new(Mutex::new(Uart::new(
            line(vmm_legacy::COM1_IRQ)?,
            console_output(&console.output)?,
        )));
        resets.push(reset_of(&uart, Uart::reset));
        if console.stdin {
            let uart = uart.clone();
            forward_stdin(move |bytes| uart.lock().unwrap_or_else(|e| e.into_inner()).input(bytes));
        }
        insert(
            &mut pio,
            "COM1",
            vmm_legacy::COM1 as u64,
            vmm_legacy::UART_PORT_LEN,
            uart,
        )?;
        com1 = true;
    }

    let (root, pollers) = wire_pci(config, layout, ram, &interrupts, &mut pio, &mut mmio)?;
    resets.push(Box::new(move || root.reset()));

    let test = config
        .test_device
        .then(|| TestDevice::new(config.memory, life.clone(), clock.clone(), timers.clone()));
    if let Some(test) = &test {
        let device = test.clone();
        resets.push(Box::new(move || device.reset()));
        let page = testdev::MMIO;
        insert(
            &mut mmio,
            "guest-test device",
            page.start,
            page.end - page.start,
            test.mmio_page(),
        )?;
    }

    let tables = acpi::build(
        &AcpiConfig {
            layout,
            cpus: config.cpus,
            x2apic: X2APIC,
            pm: pm_block(),
            com1,
        },
        ACPI_TABLES,
    )
    .map_err(|e| setup("ACPI tables")(&e))?;
    ram.write_slice(&tables.bytes, GuestAddress(tables.base))
        .map_err(|e| setup("ACPI tables")(&e))?;
    let chips = interrupts.clone();
    resets.push(Box::new(move || chips.reset()));

    Ok(Devices {
        pio,
        mmio,
        irq: Arc::new(IrqChip(interrupts)),
        rsdp: Some(tables.rsdp),
        test,
        resets,
        acpi_tables: Some((tables.base, tables.bytes)),
        keep_alive: KeepAlive {
            pollers,
            _timers: timer_queue,
        },
    })
}

type Pollers = Vec<(Arc<Wakeup>, JoinHandle<()>)>;

/// What a virtio function needs from the machine.
struct PciContext<'a> {
    ram: &'a GuestRam,
    msi: Msi,
    interrupts: &'a Arc<Interrupts>,
    pollers: Pollers,
}

fn pci_error(e: &dyn std::fmt::Display) -> DeviceError {
    DeviceError::Setup {
        what: "PCI",
        detail: e.to_string(),
    }
}

/// Adds `device` as the next function on bus 0 (MSI-X, and INTx on the
/// slot's GSI); starts its poller thread if it has outside input.
fn add_virtio<D: VirtioDevice + 'static>(
    root: &mut PciRoot,
    cx: &mut PciContext,
    device: D,
) -> Result<(), DeviceError> {
    let slot = root.next_device();
    let gsi = acpi::pci_intx_gsi(slot, 0);
    let line = cx.interrupts.gsi_line(gsi).map_err(|e| pci_error(&e))?;
    let function = VirtioPci::new(device, cx.ram.clone(), cx.msi.clone())
        .map_err(|e| pci_error(&e))?
        .with_intx(line, gsi as u8);
    let function = Arc::new(Mutex::new(function));
    root.add(function.clone()).map_err(|e| pci_error(&e))?;
    let wakeup = function.lock().unwrap_or_else(|e| e.into_inner()).wakeup();
    if let (Some(wakeup), Some(thread)) = (wakeup, VirtioPci::spawn_poller(&function)) {
        cx.pollers.push((wakeup, thread));
    }
    Ok(())
}

/// The PCI root on bus 0 with the configured virtio devices (disks, NICs,
/// a virtio console), their BAR windows, CF8/CFC and ECAM.
fn wire_pci(
    config: &VmConfig,
    layout: &MemoryLayout,
    ram: &GuestRam,
    interrupts: &Arc<Interrupts>,
    pio: &mut Bus,
    mmio: &mut Bus,
) -> Result<(Arc<PciRoot>, Pollers), DeviceError> {
    let window = |r: std::ops::Range<u64>| Window {
        base: r.start,
        len: r.end - r.start,
    };
    let windows = PciWindows {
        mmio32: window(PCI_MMIO32),
        mmio64: Some(window(layout.pci_mmio64())),
        io: None,
    };
    let mut root = PciRoot::new(windows).map_err(|e| pci_error(&e))?;
    let mut cx = PciContext {
        ram,
        msi: interrupts.clone(),
        interrupts,
        pollers: Vec::new(),
    };
    for (i, disk) in config.disks.iter().enumerate() {
        let bad = |e: &dyn std::fmt::Display| DeviceError::Setup {
            what: "disk image",
            detail: format!("disk[{i}] {}: {e}", disk.path.display()),
        };
        let file = std::fs::File::open(&disk.path).map_err(|e| bad(&e))?;
        let mode = match disk.mode {
            DiskMode::ReadOnly => BlockMode::ReadOnly,
            DiskMode::CopyOnWrite => BlockMode::CopyOnWrite,
        };
        add_virtio(
            &mut root,
            &mut cx,
            Block::new(file, mode).map_err(|e| bad(&e))?,
        )?;
    }
    let mut switches: Vec<(&str, Arc<Switch>)> = Vec::new();
    for (i, net) in config.nets.iter().enumerate() {
        let backend: Box<dyn NetBackendTrait> = match &net.backend {
            NetBackend::Switch(name) => match net_switch::tern_port(name) {
                // on Tern: a port of the switch component `name`
                Some(port) => port.map_err(|e| DeviceError::Setup {
                    what: "network",
                    detail: format!("net[{i}]: {e}"),
                })?,
                // hosted: the ports of this VM on one in-process switch
                None => {
                    let switch = match switches.iter().find(|(n, _)| n == name) {
                        Some((_, s)) => s.clone(),
                        None => {
                            let s = Switch::new();
                            switches.push((name, s.clone()));
                            s
                        }
                    };
                    Box::new(switch.port())
                }
            },
            NetBackend::Tap(name) => tap(name).map_err(|detail| DeviceError::Setup {
                what: "network",
                detail: format!("net[{i}] tap {name}: {detail}"),
            })?,
        };
        add_virtio(&mut root, &mut cx, Net::new(net.mac, backend))?;
    }
    for console in &config.consoles {
        if console.device != ConsoleDevice::Virtio {
            continue;
        }
        let device = Console::new(console_output(&console.output)?);
        let input = device.input_handle();
        add_virtio(&mut root, &mut cx, device)?;
        if console.stdin {
            forward_stdin(move |bytes| {
                input.input(bytes);
            });
        }
    }

    let root = Arc::new(root);
    let bus = |what, source| DeviceError::Bus { what, source };
    pio.insert(CONFIG_ADDRESS_PORT, 1, root.config_address())
        .map_err(|e| bus("PCI CONFIG_ADDRESS", e))?;
    pio.insert(CONFIG_DATA_PORT, 4, root.config_data())
        .map_err(|e| bus("PCI CONFIG_DATA", e))?;
    mmio.insert(ECAM.start, ECAM_SIZE, root.ecam())
        .map_err(|e| bus("PCI ECAM", e))?;
    for w in [Some(windows.mmio32), windows.mmio64].into_iter().flatten() {
        mmio.insert(w.base, w.len, root.bar_window(w, false))
            .map_err(|e| bus("PCI BAR window", e))?;
    }
    Ok((root, cx.pollers))
}

#[cfg(target_os = "linux")]
fn tap(name: &str) -> Result<Box<dyn NetBackendTrait>, String> {
    vmm_virtio::net::tap::Tap::open(name)
        .map(|t| Box::new(t) as Box<dyn NetBackendTrait>)
        .map_err(|e| e.to_string())
}

#[cfg(not(target_os = "linux"))]
fn tap(_name: &str) -> Result<Box<dyn NetBackendTrait>, String> {
    Err("tap devices exist on Linux only".into())
}

/// The guest sees x2APIC (its LAPICs implement it; MSR accesses are
/// cheaper exits than xAPIC MMIO).
pub const X2APIC: bool = true;

fn shared<D: vmm_bus::BusDevice + 'static>(device: D) -> Arc<Mutex<dyn vmm_bus::BusDevice>> {
    Arc::new(Mutex::new(device))
}

/// vmm-irqchip's controllers as the exit loop sees them.
struct IrqChip(Arc<Interrupts>);

impl InterruptController for IrqChip {
    fn next_interrupt(&self, vcpu: u32) -> Option<u8> {
        self.0.next_interrupt(vcpu)
    }
    fn ack(&self, vcpu: u32, vector: u8) {
        self.0.ack(vcpu, vector)
    }
    fn take_nmi(&self, vcpu: u32) -> bool {
        self.0.take_nmi(vcpu)
    }
    fn take_startup(&self, vcpu: u32) -> Option<Startup> {
        self.0.take_startup(vcpu).map(|s| match s {
            vmm_irqchip::Startup::Init => Startup::Init,
            vmm_irqchip::Startup::Sipi(vector) => Startup::Sipi(vector),
        })
    }
    fn rdmsr(&self, vcpu: u32, msr: u32) -> Option<u64> {
        self.0.rdmsr(vcpu, msr)
    }
    fn wrmsr(&self, vcpu: u32, msr: u32, value: u64) -> bool {
        self.0.wrmsr(vcpu, msr, value)
    }
    fn lapic_read(&self, vcpu: u32, offset: u64, data: &mut [u8]) {
        self.0.lapic_mmio_read(vcpu, offset, data)
    }
    fn lapic_write(&self, vcpu: u32, offset: u64, data: &[u8]) {
        self.0.lapic_mmio_write(vcpu, offset, data)
    }
    fn set_tsc_offset(&self, vcpu: u32, offset: u64) {
        self.0.set_tsc_offset(vcpu, offset)
    }
}

fn unix_time() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A thread that hands the VMM's standard input to `input`.
fn forward_stdin(input: impl Fn(&[u8]) + Send + 'static) {
    let _ = std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let mut buf = [0u8; 256];
            let mut stdin = std::io::stdin();
            while let Ok(n) = stdin.read(&mut buf) {
                if n == 0 {
                    break;
                }
                input(&buf[..n]);
            }
        });
}
