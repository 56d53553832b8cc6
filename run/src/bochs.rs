//! Booting in Bochs (Intel VMX with EPT, VPID and unrestricted guest via the Skylake-X CPU
//! model): writes `bochsrc` and `cont.rc` into the work folder and starts `bochs-bin` there
//! on the GRUB ISO built by [`crate::image::grub`].
//!
//! Debian's Bochs 2.7 has SMP support and its BIOS brings up every CPU (`count=N`). It has no
//! headless display, so the VNC display is used without waiting for a client; a busy port
//! makes it try the next one, so several Bochs can run side by side. Its ALSA sound output
//! crashes on hosts without a sound card, hence the dummy sound driver.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::image::{grub, BootFiles};

const BOCHS: &str = "bochs-bin";
/// Emulated instructions per emulated second: about what Bochs manages on a current host, so
/// guest time runs roughly with wall-clock time.
const IPS: u64 = 100_000_000;

/// Where the guest's first serial port goes.
#[derive(Clone, Copy)]
pub enum Serial<'a> {
    /// A file name in the work folder.
    File(&'a str),
    /// A TCP port on 127.0.0.1 Bochs listens on (see [`console`]); Bochs waits for the
    /// connection before it starts the machine.
    Socket(u16),
}

/// The most host memory (MiB) Bochs 2.7 allocates for the guest's RAM; a larger guest
/// memory is backed by that much and swapped (`memory: guest=..., host=...`).
const MAX_HOST_MEGS: u32 = 2048;

/// The Bochs configuration; paths are relative to the work folder Bochs runs in.
pub fn bochsrc(cpus: u32, memory: u32, iso: &str, serial: Serial) -> String {
    let host = memory.min(MAX_HOST_MEGS);
    let com1 = match serial {
        Serial::File(name) => format!("mode=file, dev={name}"),
        Serial::Socket(port) => format!("mode=socket-server, dev=127.0.0.1:{port}"),
    };
    format!(
        "memory: guest={memory}, host={host}\n\
         romimage: file=/usr/share/bochs/BIOS-bochs-latest\n\
         vgaromimage: file=/usr/share/bochs/VGABIOS-lgpl-latest\n\
         cpu: model=corei7_skylake_x, count={cpus}, ips={IPS}, reset_on_triple_fault=0, ignore_bad_msrs=1\n\
         pci: enabled=1, chipset=i440fx\n\
         ata0: enabled=1, ioaddr1=0x1f0, ioaddr2=0x3f0, irq=14\n\
         ata0-master: type=cdrom, path={iso}, status=inserted\n\
         boot: cdrom\n\
         com1: enabled=1, {com1}\n\
         display_library: rfb, options=\"timeout=0\"\n\
         sound: driver=dummy\n\
         clock: sync=none, time0=946684800\n\
         log: bochs.log\n\
         panic: action=fatal\n\
         error: action=report\n\
         info: action=report\n\
         debug: action=ignore\n\
         port_e9_hack: enabled=1\n"
    )
}

/// Builds the ISO, writes the configuration and starts Bochs in `work`; its own output goes
/// to `<work>/bochs.out`, its log to `<work>/bochs.log`.
pub fn start(
    files: &BootFiles,
    work: &Path,
    cpus: u32,
    memory: u32,
    serial: Serial,
) -> Result<Child, Error> {
    let iso = grub::build_iso(files, work)?;
    let iso_name = iso
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("tern.iso");
    let write = |name: &str, text: String| {
        let path = work.join(name);
        std::fs::write(&path, text).map_err(|source| Error::Io {
            what: "write",
            path,
            source,
        })
    };
    write("bochsrc", bochsrc(cpus, memory, iso_name, serial))?;
    // The debugger is compiled in: `c` (continue) starts the machine; when the simulation
    // stops (SIGINT from Ctrl-C, a magic breakpoint), `q` ends Bochs instead of waiting at a
    // debugger prompt nobody sees.
    write("cont.rc", "c\nq\n".into())?;

    let mut command = Command::new(BOCHS);
    command
        .current_dir(work)
        .args(["-q", "-f", "bochsrc", "-rc", "cont.rc"]);
    // Bochs's own chatter goes to a file in either mode; its debugger gets no input, so
    // stopping the simulation (Ctrl-C) ends Bochs.
    let out_path = work.join("bochs.out");
    let out = File::create(&out_path).map_err(|source| Error::Io {
        what: "create",
        path: out_path.clone(),
        source,
    })?;
    let err = out.try_clone().map_err(|source| Error::Io {
        what: "reopen",
        path: out_path,
        source,
    })?;
    command.stdin(Stdio::null()).stdout(out).stderr(err);
    command.spawn().map_err(|source| Error::ToolMissing {
        tool: BOCHS.into(),
        source,
    })
}

/// A free local TCP port for [`Serial::Socket`].
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Connects the terminal to the guest's serial port served by `child` on `port`: guest output
/// to stdout, typed lines to the guest (the terminal stays in line mode, so Ctrl-C ends Bochs
/// and the run tool together). Returns when Bochs exits.
pub fn console(child: &mut Child, port: u16) -> io::Result<std::process::ExitStatus> {
    let started = Instant::now();
    let stream = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(stream) => break stream,
            Err(e) => {
                if let Some(status) = child.try_wait()? {
                    return Ok(status);
                }
                if started.elapsed() > Duration::from_secs(30) {
                    return Err(e);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    let mut from_guest = stream.try_clone()?;
    let mut to_guest = stream;
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = from_guest.read(&mut buf) {
            let mut out = io::stdout().lock();
            if out.write_all(&buf[..n]).and_then(|()| out.flush()).is_err() {
                break;
            }
        }
    });
    std::thread::spawn(move || {
        let _ = io::copy(&mut io::stdin().lock(), &mut to_guest);
    });
    child.wait()
}

/// Bochs's own account of a run that ended: the error and panic lines of its log (the last
/// `n` of them), or the log's last `n` lines if it has none.
pub fn log_summary(log: &str, n: usize) -> Vec<String> {
    let is_problem = |line: &&str| {
        let level = line.trim_start_matches(|c: char| c.is_ascii_digit());
        level.starts_with("e[") || level.starts_with("p[")
    };
    let problems: Vec<&str> = log.lines().filter(is_problem).collect();
    let lines = match problems.is_empty() {
        true => log.lines().collect(),
        false => problems,
    };
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| l.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_summary_prefers_errors_and_panics() {
        let log = "00001i[CPU0  ] boot\n00002e[CPU0  ] interrupt(): bad vector\n\
                   00003p[CPU0  ] >>PANIC<< exception(): 3rd (13) exception with no resolution\n\
                   00004i[SIM   ] quit_sim called with exit code 1\n";
        assert_eq!(
            log_summary(log, 1),
            ["00003p[CPU0  ] >>PANIC<< exception(): 3rd (13) exception with no resolution"]
        );
        assert_eq!(log_summary(log, 10).len(), 2);
        assert_eq!(
            log_summary("00001i[ACPI  ] soft power off\n00002i[SIM   ] quit\n", 1),
            ["00002i[SIM   ] quit"]
        );
    }

    #[test]
    fn config_sets_cpus_memory_iso_and_serial_file() {
        let rc = bochsrc(4, 512, "tern.iso", Serial::File("bochs-4cpu.serial.log"));
        let lines: Vec<&str> = rc.lines().collect();
        assert!(lines.contains(&"memory: guest=512, host=512"));
        assert!(lines.contains(&"cpu: model=corei7_skylake_x, count=4, ips=100000000, reset_on_triple_fault=0, ignore_bad_msrs=1"));
        assert!(lines.contains(&"ata0-master: type=cdrom, path=tern.iso, status=inserted"));
        assert!(lines.contains(&"com1: enabled=1, mode=file, dev=bochs-4cpu.serial.log"));
        assert!(lines.contains(&"sound: driver=dummy"));
        assert!(lines.contains(&"panic: action=fatal"));
    }

    #[test]
    fn memory_beyond_what_bochs_allocates_is_swapped() {
        let rc = bochsrc(2, 4608, "tern.iso", Serial::File("s.log"));
        assert!(
            rc.lines().any(|l| l == "memory: guest=4608, host=2048"),
            "{rc}"
        );
    }

    #[test]
    fn interactive_config_serves_serial_on_a_local_socket() {
        let rc = bochsrc(1, 256, "tern.iso", Serial::Socket(4567));
        let com1 = "com1: enabled=1, mode=socket-server, dev=127.0.0.1:4567";
        assert!(rc.lines().any(|l| l == com1), "{rc}");
    }
}
