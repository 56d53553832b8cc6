//! The devices of a configuration, created and wired: each on its bus
//! (port I/O, MMIO), its interrupt line into the interrupt controllers, the
//! machine's clock and timer thread, and power events to the VM's end.
//!
//! Owns: which device sits where and which line it drives. Must not touch:
//! device internals (their crates'), the exit loop.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

use vmm_bus::{Bus, BusError, Clock, HostClock, Line, NoInterrupt, Timers};
use vmm_irqchip::TimerQueue;
use vmm_legacy::{PowerEvent, PowerEvents, Uart};
use vmm_platform::config::{ConsoleDevice, ConsoleOutput, VmConfig};
use vmm_platform::layout::MemoryLayout;

use crate::end::End;
use crate::irq::{InterruptController, NoInterrupts};
use crate::machine::Lifecycle;
use crate::memory::GuestRam;

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

/// Everything the machine's devices need to stay alive, besides the buses.
pub struct KeepAlive {
    _timers: Arc<TimerQueue>,
}

/// The wired devices.
pub struct Devices {
    pub pio: Bus,
    pub mmio: Bus,
    pub irq: Arc<dyn InterruptController>,
    /// Where the ACPI RSDP is, if the machine has ACPI tables.
    pub rsdp: Option<u64>,
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

/// The power events of the legacy devices end the VM.
fn power_events(life: &Arc<Lifecycle>) -> PowerEvents {
    let life = life.clone();
    Arc::new(move |event| {
        life.stop(match event {
            PowerEvent::Off => End::PowerOff,
            PowerEvent::Reset => End::Reset,
            PowerEvent::DebugExit(value) => End::DebugExit(value),
        })
    })
}

/// Creates and wires the devices `config` asks for.
pub fn build(
    config: &VmConfig,
    layout: &MemoryLayout,
    _ram: &GuestRam,
    life: &Arc<Lifecycle>,
) -> Result<Devices, DeviceError> {
    let clock: Arc<dyn Clock> = Arc::new(HostClock::new());
    let timer_queue = TimerQueue::new(clock.clone()).map_err(|e| DeviceError::Setup {
        what: "timer thread",
        detail: e.to_string(),
    })?;
    let timers: Arc<dyn Timers> = timer_queue.clone();
    let _power = power_events(life);
    let mut pio = Bus::new();
    let mmio = Bus::new();
    let line = |_gsi: u32| -> Line { Arc::new(NoInterrupt) };

    let pit = vmm_legacy::Pit::new(line(0), clock.clone(), timers.clone());
    let port61 = pit.port61();
    insert(
        &mut pio,
        "PIT",
        vmm_legacy::PIT_PORT as u64,
        vmm_legacy::PIT_PORT_LEN,
        Arc::new(Mutex::new(pit)),
    )?;
    insert(
        &mut pio,
        "port 0x61",
        vmm_legacy::PORT61 as u64,
        1,
        Arc::new(Mutex::new(port61)),
    )?;
    let mut rtc = vmm_legacy::Rtc::new(clock.clone(), unix_time());
    let (below, above) = layout.ram_below_above_4g();
    rtc.set_memory(below, above);
    insert(
        &mut pio,
        "RTC",
        vmm_legacy::RTC_PORT as u64,
        vmm_legacy::RTC_PORT_LEN,
        Arc::new(Mutex::new(rtc)),
    )?;

    for console in &config.consoles {
        if console.device != ConsoleDevice::Com1 {
            continue;
        }
        let uart = Arc::new(Mutex::new(Uart::new(
            line(vmm_legacy::COM1_IRQ),
            console_output(&console.output)?,
        )));
        if console.stdin {
            forward_stdin(uart.clone());
        }
        insert(
            &mut pio,
            "COM1",
            vmm_legacy::COM1 as u64,
            vmm_legacy::UART_PORT_LEN,
            uart,
        )?;
    }

    Ok(Devices {
        pio,
        mmio,
        irq: Arc::new(NoInterrupts),
        rsdp: None,
        keep_alive: KeepAlive {
            _timers: timer_queue,
        },
    })
}

fn unix_time() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A thread that hands the VMM's standard input to the UART.
fn forward_stdin(uart: Arc<Mutex<Uart>>) {
    let _ = std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let mut buf = [0u8; 256];
            let mut stdin = std::io::stdin();
            while let Ok(n) = stdin.read(&mut buf) {
                if n == 0 {
                    break;
                }
                uart.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .input(&buf[..n]);
            }
        });
}
