//! Booting in QEMU: the boot directory (ELF32 kernel + modules under their names), the
//! command line, and starting the process. QEMU runs inside the boot directory so the
//! `-initrd` entries are bare module names: each module's command line becomes
//! `<name> [args]` and the kernel's `kernel [cmdline]`, exactly as under GRUB.

use std::borrow::Cow;
use std::ffi::OsString;
use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};

use crate::error::Error;
use crate::image::{elf32, module_cmdline, words, BootFiles, BootModule, INITRD_NAME};
use crate::scenario::{Accel, KERNEL_NAME};

const QEMU: &str = "qemu-system-x86_64";

/// Where the guest's first serial port goes.
#[derive(Clone, Copy)]
pub enum Serial<'a> {
    /// Appended to a file the watcher reads.
    File(&'a Path),
    /// The terminal, multiplexed with QEMU's monitor (Ctrl-A C; Ctrl-A X quits).
    Terminal,
}

/// What `-kernel` loads besides the kernel.
#[derive(Clone, Copy)]
pub enum Payload<'a> {
    /// A Multiboot kernel's modules, through `-initrd "name args,..."`.
    Multiboot(&'a [BootModule]),
    /// A Linux kernel's initrd, staged as [`INITRD_NAME`].
    Linux,
}

pub struct QemuRun<'a> {
    pub accel: Accel,
    pub cpus: u32,
    pub memory: u32,
    pub cmdline: &'a str,
    pub payload: Payload<'a>,
    pub serial: Serial<'a>,
    /// The scenario's `qemu_args`, last so they can add devices or override machine options.
    pub extra: &'a [String],
    /// A file whose bytes are typed into the serial port (with a `Serial::File` log).
    pub input: Option<&'a Path>,
    /// Where QEMU logs CPU resets (`-d cpu_reset`): a triple fault of the
    /// booted kernel shows there as "Triple fault" (see [`triple_faulted`]).
    pub reset_log: Option<&'a Path>,
}

/// The file name of [`QemuRun::reset_log`] in a scenario's work directory.
pub const RESET_LOG: &str = "qemu-cpu-reset.log";

/// Whether QEMU's CPU reset log (`-d cpu_reset`) records a triple fault.
pub fn triple_faulted(reset_log: &str) -> bool {
    reset_log.lines().any(|l| l.trim() == "Triple fault")
}

/// QEMU's arguments, to run with the boot directory as the current directory.
pub fn args(run: &QemuRun) -> Vec<OsString> {
    let cpu = match run.accel {
        Accel::Tcg => "max",
        Accel::Kvm => "host",
    };
    let initrd = match run.payload {
        Payload::Multiboot(modules) => modules
            .iter()
            .map(|m| module_cmdline(&m.name, &m.args).replace(',', ",,"))
            .collect::<Vec<_>>()
            .join(","),
        Payload::Linux => INITRD_NAME.to_owned(),
    };
    let serial: OsString = match run.serial {
        // input from a file: QEMU's stdin, its stdout is the log (see `start`)
        Serial::File(_) if run.input.is_some() => "stdio".into(),
        Serial::File(path) => {
            let mut s = OsString::from("file:");
            s.push(path);
            s
        }
        Serial::Terminal => "mon:stdio".into(),
    };
    let mut args: Vec<OsString> = [
        "-machine",
        "q35",
        "-accel",
        &run.accel.to_string(),
        "-cpu",
        cpu,
        "-smp",
        &run.cpus.to_string(),
        "-m",
        &run.memory.to_string(),
        "-display",
        "none",
        "-monitor",
        "none",
        "-no-reboot",
        "-device",
        "isa-debug-exit,iobase=0xf4,iosize=4",
        "-kernel",
        KERNEL_NAME,
        "-append",
        &words(run.cmdline).collect::<Vec<_>>().join(" "),
    ]
    .iter()
    .map(OsString::from)
    .collect();
    if !initrd.is_empty() {
        args.extend(["-initrd".into(), initrd.into()]);
    }
    args.extend(["-serial".into(), serial]);
    if let Some(log) = run.reset_log {
        args.extend(["-d".into(), "cpu_reset".into(), "-D".into(), log.into()]);
    }
    args.extend(run.extra.iter().map(OsString::from));
    args
}

/// Lays out `<work>/qemu/` and starts QEMU; its stderr goes to `<work>/qemu.stderr`.
pub fn start(files: &BootFiles, work: &Path, run: &QemuRun) -> Result<Child, Error> {
    let kernel = files.read_kernel()?;
    let kernel = match run.payload {
        Payload::Multiboot(_) => {
            elf32::to_multiboot_elf32(&kernel).map_err(|problem| Error::Kernel {
                path: files.kernel.clone(),
                problem,
            })?
        }
        Payload::Linux => Cow::Borrowed(&kernel[..]),
    };
    let boot_dir = work.join("qemu");
    files.stage(&boot_dir, &kernel)?;
    let mut command = Command::new(QEMU);
    command.current_dir(&boot_dir).args(args(run));
    if let Serial::File(log) = run.serial {
        let stderr_path = work.join("qemu.stderr");
        let stderr = File::create(&stderr_path).map_err(|source| Error::Io {
            what: "create",
            path: stderr_path,
            source,
        })?;
        command.stderr(stderr);
        match run.input {
            Some(input) => {
                let open = |path: &Path, create: bool| {
                    let file = if create {
                        File::create(path)
                    } else {
                        File::open(path)
                    };
                    file.map_err(|source| Error::Io {
                        what: if create { "create" } else { "open" },
                        path: path.to_path_buf(),
                        source,
                    })
                };
                command.stdin(open(input, false)?).stdout(open(log, true)?);
            }
            None => {
                command.stdin(Stdio::null()).stdout(Stdio::null());
            }
        }
    }
    command.spawn().map_err(|source| Error::ToolMissing {
        tool: QEMU.into(),
        source,
    })
}

/// What QEMU's exit status means, including the guest's `isa-debug-exit` value.
pub fn describe_exit(status: ExitStatus) -> String {
    match status.code() {
        Some(0) => {
            "QEMU exited normally (guest power-off, or reset/triple fault under -no-reboot)".into()
        }
        Some(1) => {
            "QEMU exited with status 1 (a QEMU error, see qemu.stderr, or isa-debug-exit value 0)"
                .into()
        }
        Some(code) if code % 2 == 1 => {
            format!(
                "QEMU exited with status {code}: the guest wrote {:#x} to isa-debug-exit",
                code >> 1
            )
        }
        Some(code) => format!("QEMU exited with status {code}"),
        None => format!("QEMU was ended by a signal ({status})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn strings(args: Vec<OsString>) -> Vec<String> {
        args.into_iter().map(|a| a.into_string().unwrap()).collect()
    }

    #[test]
    fn tcg_command_line_names_modules_and_serial_file() {
        let modules = [
            BootModule {
                name: "roottask".into(),
                path: "/a/roottask".into(),
                args: "verbose x=1,2".into(),
            },
            BootModule {
                name: "config".into(),
                path: "/b/smoke.boot".into(),
                args: String::new(),
            },
        ];
        let extra = ["-device".to_owned(), "intel-iommu".to_owned()];
        let run = QemuRun {
            accel: Accel::Tcg,
            cpus: 4,
            memory: 512,
            cmdline: " serial  verbose",
            payload: Payload::Multiboot(&modules),
            serial: Serial::File(Path::new("/w/qemu-4cpu.serial.log")),
            extra: &extra,
            input: None,
            reset_log: Some(Path::new("/w/qemu-cpu-reset.log")),
        };
        assert_eq!(
            strings(args(&run)).join(" "),
            "-machine q35 -accel tcg -cpu max -smp 4 -m 512 -display none -monitor none -no-reboot \
             -device isa-debug-exit,iobase=0xf4,iosize=4 -kernel kernel -append serial verbose \
             -initrd roottask verbose x=1,,2,config -serial file:/w/qemu-4cpu.serial.log \
             -d cpu_reset -D /w/qemu-cpu-reset.log -device intel-iommu"
        );
    }

    #[test]
    fn a_triple_fault_is_found_in_the_reset_log_and_a_power_on_reset_is_not() {
        let power_on = "CPU Reset (CPU 0)\nRAX=0000000000000000 RBX=0000000000000000\n";
        assert!(!triple_faulted(power_on));
        assert!(triple_faulted(&format!("{power_on}Triple fault\n")));
    }

    #[test]
    fn kvm_uses_host_cpu_and_terminal_serial_is_multiplexed() {
        let run = QemuRun {
            accel: Accel::Kvm,
            cpus: 1,
            memory: 128,
            cmdline: "",
            payload: Payload::Multiboot(&[]),
            serial: Serial::Terminal,
            extra: &[],
            input: None,
            reset_log: None,
        };
        let args = strings(args(&run));
        let joined = args.join(" ");
        assert!(joined.contains("-accel kvm -cpu host"), "{joined}");
        assert!(joined.ends_with("-serial mon:stdio"), "{joined}");
        assert!(!args.contains(&"-initrd".to_owned()));
    }

    #[test]
    fn linux_boot_passes_the_initrd_and_the_bare_command_line() {
        let run = QemuRun {
            accel: Accel::Tcg,
            cpus: 1,
            memory: 1024,
            cmdline: "console=ttyS0  panic=-1",
            payload: Payload::Linux,
            serial: Serial::File(Path::new("s.log")),
            extra: &[],
            input: None,
            reset_log: None,
        };
        let joined = strings(args(&run)).join(" ");
        assert!(
            joined.contains("-kernel kernel -append console=ttyS0 panic=-1 -initrd initrd -serial"),
            "{joined}"
        );
    }

    #[test]
    fn exit_status_decodes_isa_debug_exit() {
        let exit = |code: i32| describe_exit(ExitStatus::from_raw(code << 8));
        assert!(
            exit(33).contains("wrote 0x10 to isa-debug-exit"),
            "{}",
            exit(33)
        );
        assert!(exit(1).contains("a QEMU error"));
        assert!(exit(0).contains("normally"));
        assert!(describe_exit(ExitStatus::from_raw(9)).contains("signal"));
    }
}
