//! `run`: builds what a scenario needs, boots it in QEMU or Bochs and checks the serial
//! console against the scenario's expectations. Scenarios are data: `run/scenarios/*.toml`,
//! format in `run/scenarios/README.md`.
//!
//! This file owns the command line and the order of the steps; each step lives in its module.

mod accel;
mod bochs;
mod cargo;
mod error;
mod fetch;
mod image;
mod qemu;
mod scenario;
mod watch;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitCode, ExitStatus};
use std::time::{Duration, Instant};

use cargo::Workspace;
use error::Error;
use image::BootFiles;
use scenario::{Accel, Emulator, Scenario};
use watch::{Expectations, Verdict};

const USAGE: &str = "\
usage: cargo run -p run -- <command>

  list                      list the scenarios
  NAME [options]            build, boot and check scenario NAME
  suite [NAME...]           run every [[check]] of every scenario (or of the named ones)
  fetch debian-kernel       download Debian's kernel into the cache now (scripts/setup.sh does)

options for NAME:
  --cpus N                  number of CPUs (default: the scenario's `cpus`)
  --emulator qemu|bochs     where to boot (default: the scenario's first emulator)
  --accel tcg|kvm           QEMU accelerator (default: KVM if the host has nested VMX/SVM)
  --timeout S               seconds to wait for the expected lines
  --interactive             serial console on this terminal, no checks (QEMU: Ctrl-A X quits)
";

/// Lines of serial output shown when a run fails.
const TAIL_LINES: usize = 40;

#[derive(Debug, Default, PartialEq, Eq)]
struct Options {
    cpus: Option<u32>,
    emulator: Option<Emulator>,
    accel: Option<Accel>,
    timeout: Option<u64>,
    interactive: bool,
}

#[derive(Debug, PartialEq, Eq)]
enum Cmd {
    Help,
    List,
    Suite(Vec<String>),
    Fetch(String),
    Run(String, Options),
}

/// One boot of a scenario.
#[derive(Debug, Clone, Copy)]
struct Variant {
    emulator: Emulator,
    cpus: u32,
    accel: Option<Accel>,
    timeout: u64,
}

fn main() -> ExitCode {
    match parse_args(std::env::args_os().skip(1)).and_then(execute) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("run: error: {e}");
            ExitCode::from(2)
        }
    }
}

fn parse_args(args: impl IntoIterator<Item = OsString>) -> Result<Cmd, Error> {
    use lexopt::Arg::{Long, Short, Value};
    use lexopt::ValueExt;
    let usage = |e: lexopt::Error| Error::Usage(format!("{e}\n{USAGE}"));
    let mut parser = lexopt::Parser::from_args(args);
    let mut words = Vec::new();
    let mut options = Options::default();
    let mut any_option = false;
    while let Some(arg) = parser.next().map_err(usage)? {
        if matches!(arg, Long(_)) {
            any_option = true;
        }
        match arg {
            Short('h') | Long("help") => return Ok(Cmd::Help),
            Long("cpus") => {
                let cpus: u32 = parser.value().and_then(|v| v.parse()).map_err(usage)?;
                if cpus == 0 {
                    return Err(Error::Usage("--cpus must be at least 1".into()));
                }
                options.cpus = Some(cpus);
            }
            Long("timeout") => {
                let seconds: u64 = parser.value().and_then(|v| v.parse()).map_err(usage)?;
                options.timeout = Some(seconds.max(1));
            }
            Long("emulator") => {
                options.emulator = Some(
                    match parser
                        .value()
                        .and_then(|v| v.string())
                        .map_err(usage)?
                        .as_str()
                    {
                        "qemu" => Emulator::Qemu,
                        "bochs" => Emulator::Bochs,
                        other => {
                            return Err(Error::Usage(format!(
                                "--emulator {other}: use qemu or bochs"
                            )))
                        }
                    },
                )
            }
            Long("accel") => {
                options.accel = Some(
                    match parser
                        .value()
                        .and_then(|v| v.string())
                        .map_err(usage)?
                        .as_str()
                    {
                        "tcg" => Accel::Tcg,
                        "kvm" => Accel::Kvm,
                        other => {
                            return Err(Error::Usage(format!("--accel {other}: use tcg or kvm")))
                        }
                    },
                )
            }
            Long("interactive") => options.interactive = true,
            Value(word) => words.push(word.string().map_err(usage)?),
            other => return Err(usage(other.unexpected())),
        }
    }
    let only_words = |cmd| match any_option {
        true => Err(Error::Usage(format!("`{cmd}` takes no options\n{USAGE}"))),
        false => Ok(()),
    };
    match words.first().map(String::as_str) {
        None => Err(Error::Usage(format!(
            "name a scenario, `list` or `suite`\n{USAGE}"
        ))),
        Some("help") => Ok(Cmd::Help),
        Some("list") if words.len() == 1 => only_words("list").map(|()| Cmd::List),
        Some("suite") => only_words("suite").map(|()| Cmd::Suite(words[1..].to_vec())),
        Some("fetch") => match &words[1..] {
            [what] if what == scenario::DEBIAN_KERNEL => {
                only_words("fetch").map(|()| Cmd::Fetch(what.clone()))
            }
            _ => Err(Error::Usage(format!(
                "`fetch` takes one of {:?}\n{USAGE}",
                scenario::FETCHABLE
            ))),
        },
        Some(name) if words.len() == 1 => Ok(Cmd::Run(name.to_owned(), options)),
        Some(_) => Err(Error::Usage(format!(
            "one scenario at a time (`suite NAME...` runs several)\n{USAGE}"
        ))),
    }
}

fn execute(cmd: Cmd) -> Result<bool, Error> {
    if cmd == Cmd::Help {
        print!("{USAGE}");
        return Ok(true);
    }
    let workspace = Workspace::discover()?;
    if let Cmd::Fetch(_) = cmd {
        let kernel = fetch::debian_kernel(&fetch::cache_root(&workspace.target_dir))?;
        println!("run: Debian kernel {}", kernel.vmlinuz.display());
        return Ok(true);
    }
    let scenario_dir = workspace.root.join("run").join("scenarios");
    match cmd {
        Cmd::Help | Cmd::Fetch(_) => Ok(true),
        Cmd::List => {
            let mut all_valid = true;
            for loaded in scenario::load_all(&scenario_dir)? {
                match loaded {
                    Ok(s) => {
                        let emulators: Vec<String> =
                            s.emulators.iter().map(|e| e.to_string()).collect();
                        println!(
                            "{:<24} {} [{}]{}",
                            s.name,
                            s.description,
                            emulators.join(", "),
                            if s.in_suite {
                                ""
                            } else {
                                " (not in the suite)"
                            }
                        );
                    }
                    Err(e) => {
                        all_valid = false;
                        eprintln!("run: error: {e}");
                    }
                }
            }
            Ok(all_valid)
        }
        Cmd::Run(name, options) => {
            let scenario = scenario::load_named(&scenario_dir, &name)?;
            let variant = choose_variant(&scenario, &options)?;
            let work = WorkDir::claim(&workspace, &scenario)?;
            let files = BootFiles::prepare(&scenario, &workspace, &work.path)?;
            if options.interactive {
                interactive(&scenario, &files, &work.path, variant)
            } else {
                boot(&scenario, &files, &work.path, variant)
            }
        }
        Cmd::Suite(names) => suite(&workspace, &scenario_dir, &names),
    }
}

fn choose_variant(scenario: &Scenario, options: &Options) -> Result<Variant, Error> {
    let emulator = options.emulator.unwrap_or(scenario.emulators[0]);
    if !scenario.emulators.contains(&emulator) {
        return Err(Error::Usage(format!(
            "scenario `{}` is not meant for {emulator}: add \"{emulator}\" to `emulators` in {}",
            scenario.name,
            scenario.path.display()
        )));
    }
    if options.accel.is_some() && emulator != Emulator::Qemu {
        return Err(Error::Usage("--accel applies to qemu only".into()));
    }
    Ok(Variant {
        emulator,
        cpus: options.cpus.unwrap_or(scenario.cpus),
        accel: options.accel,
        timeout: options.timeout.unwrap_or(scenario.timeout_for(emulator)),
    })
}

/// `build/run/NAME/`, held for one run at a time: a second run of the same scenario (from
/// another terminal or engineer) waits instead of overwriting the first one's files.
struct WorkDir {
    path: PathBuf,
    _lock: std::fs::File,
}

impl WorkDir {
    fn claim(workspace: &Workspace, scenario: &Scenario) -> Result<WorkDir, Error> {
        let path = workspace
            .root
            .join("build")
            .join("run")
            .join(&scenario.name);
        let io = |what, path: &Path| {
            let path = path.to_owned();
            move |source| Error::Io { what, path, source }
        };
        std::fs::create_dir_all(&path).map_err(io("create the work folder", &path))?;
        let lock_path = path.join(".lock");
        let lock = std::fs::File::create(&lock_path).map_err(io("create", &lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                println!("run: waiting for another run that uses {}", path.display());
                lock.lock().map_err(io("lock", &lock_path))?;
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io("lock", &lock_path)(e)),
        }
        Ok(WorkDir { path, _lock: lock })
    }
}

fn label(scenario: &Scenario, variant: Variant) -> String {
    let plural = if variant.cpus == 1 { "" } else { "s" };
    format!(
        "{} [{}, {} cpu{plural}]",
        scenario.name, variant.emulator, variant.cpus
    )
}

/// A started emulator.
struct Started {
    child: Child,
    /// Bochs without a serial file: the local port its serial console is served on.
    console_port: Option<u16>,
}

/// Starts the emulator for `variant`, its serial port going to `serial`, or to this
/// terminal if `None`.
fn start(
    scenario: &Scenario,
    files: &BootFiles,
    work: &Path,
    variant: Variant,
    serial: Option<&Path>,
) -> Result<Started, Error> {
    match variant.emulator {
        Emulator::Qemu => {
            let (accel, why) = accel::choose(variant.accel, &accel::HostFacts::probe());
            // scripted console input (only when the output goes to a file)
            let input = match (&scenario.serial_input, serial) {
                (Some(text), Some(_)) => {
                    let path = work.join("serial.input");
                    std::fs::write(&path, text).map_err(|source| Error::Io {
                        what: "write",
                        path: path.clone(),
                        source,
                    })?;
                    Some(path)
                }
                _ => None,
            };
            println!(
                "run: {}: qemu with {accel} ({why})",
                label(scenario, variant)
            );
            let reset_log = serial.is_some().then(|| work.join(qemu::RESET_LOG));
            let run = qemu::QemuRun {
                accel,
                cpus: variant.cpus,
                memory: scenario.memory,
                cmdline: &files.cmdline,
                payload: match files.initrd {
                    Some(_) => qemu::Payload::Linux,
                    None => qemu::Payload::Multiboot(&files.modules),
                },
                serial: serial.map_or(qemu::Serial::Terminal, qemu::Serial::File),
                extra: &scenario.qemu_args,
                input: input.as_deref(),
                reset_log: reset_log.as_deref(),
            };
            let child = qemu::start(files, work, &run)?;
            Ok(Started {
                child,
                console_port: None,
            })
        }
        Emulator::Bochs => {
            println!(
                "run: {}: building the GRUB ISO for bochs",
                label(scenario, variant)
            );
            let name = serial.and_then(|p| p.file_name()).and_then(|n| n.to_str());
            let serial = match name {
                Some(name) => bochs::Serial::File(name),
                None => bochs::Serial::Socket(bochs::free_port().map_err(|source| Error::Io {
                    what: "find a free local port for the serial console in",
                    path: work.to_owned(),
                    source,
                })?),
            };
            let child = bochs::start(files, work, variant.cpus, scenario.memory, serial)?;
            let console_port = match serial {
                bochs::Serial::Socket(port) => Some(port),
                bochs::Serial::File(_) => None,
            };
            Ok(Started {
                child,
                console_port,
            })
        }
    }
}

/// Boots once and checks the serial console; `Ok(false)` when the boot failed.
fn boot(
    scenario: &Scenario,
    files: &BootFiles,
    work: &Path,
    variant: Variant,
) -> Result<bool, Error> {
    let serial = work.join(format!(
        "{}-{}cpu.serial.log",
        variant.emulator, variant.cpus
    ));
    if serial.exists() {
        std::fs::remove_file(&serial).map_err(|source| Error::Io {
            what: "remove the old serial log",
            path: serial.clone(),
            source,
        })?;
    }
    let mut child = start(scenario, files, work, variant, Some(&serial))?.child;
    println!(
        "run: {}: waiting up to {} s for {} line(s)",
        label(scenario, variant),
        variant.timeout,
        scenario.expect.len()
    );
    let started = Instant::now();
    let expect = scenario.expected_lines(variant.cpus);
    let mut expectations = Expectations::new(&expect, &scenario.fail);
    let verdict = watch::watch(
        &mut child,
        &serial,
        &mut expectations,
        Duration::from_secs(variant.timeout),
        |t, line| println!("run:   [{:7.1} s] {line}", t.as_secs_f64()),
    )
    .map_err(|source| Error::Io {
        what: "watch the serial log",
        path: serial.clone(),
        source,
    })?;
    let elapsed = started.elapsed().as_secs_f64();
    let exited = matches!(verdict, Verdict::Exited { .. });
    let failure = match verdict {
        Verdict::Passed => {
            println!(
                "run: {}: passed in {elapsed:.1} s (serial log {})",
                label(scenario, variant),
                serial.display()
            );
            return Ok(true);
        }
        Verdict::FailPattern { pattern, line } => {
            format!("failure pattern \"{pattern}\" in: {line}")
        }
        Verdict::Timeout { waiting_for } => format!("timed out waiting for \"{waiting_for}\""),
        Verdict::Exited {
            status,
            waiting_for,
        } => {
            format!(
                "{} while waiting for \"{waiting_for}\"",
                describe_exit(variant.emulator, status)
            )
        }
    };
    println!(
        "run: {}: FAILED after {elapsed:.1} s: {failure}",
        label(scenario, variant)
    );
    match watch::tail(&serial, TAIL_LINES) {
        Ok(lines) => {
            println!(
                "run: last {} serial lines ({}):",
                lines.len(),
                serial.display()
            );
            for line in lines {
                println!("  | {line}");
            }
        }
        Err(e) => println!("run: no serial output ({}: {e})", serial.display()),
    }
    if exited {
        let (path, lines) = emulator_says(variant.emulator, work);
        if !lines.is_empty() {
            println!("run: {} says ({}):", variant.emulator, path.display());
            for line in lines {
                println!("  | {line}");
            }
        }
    }
    Ok(false)
}

/// The emulator's own output worth showing after it exited unexpectedly.
fn emulator_says(emulator: Emulator, work: &Path) -> (PathBuf, Vec<String>) {
    match emulator {
        Emulator::Qemu => {
            let resets = work.join(qemu::RESET_LOG);
            let log = std::fs::read_to_string(&resets).unwrap_or_default();
            if qemu::triple_faulted(&log) {
                let line = "a triple fault of the booted kernel (QEMU's CPU reset log records \
                            one; rerun with qemu_args \"-action\", \"shutdown=pause\" and a \
                            monitor to see the CPUs' state)";
                return (resets, vec![line.to_owned()]);
            }
            let path = work.join("qemu.stderr");
            let lines = watch::tail(&path, 10).unwrap_or_default();
            (path, lines)
        }
        Emulator::Bochs => {
            let path = work.join("bochs.log");
            let log = std::fs::read_to_string(&path).unwrap_or_default();
            (path, bochs::log_summary(&log, 10))
        }
    }
}

fn describe_exit(emulator: Emulator, status: ExitStatus) -> String {
    match emulator {
        Emulator::Qemu => qemu::describe_exit(status),
        Emulator::Bochs => format!(
            "Bochs exited ({status}; a guest power-off, or a Bochs panic such as a triple fault)"
        ),
    }
}

/// Boots with the serial console on this terminal until the emulator exits.
fn interactive(
    scenario: &Scenario,
    files: &BootFiles,
    work: &Path,
    variant: Variant,
) -> Result<bool, Error> {
    let Started {
        mut child,
        console_port,
    } = start(scenario, files, work, variant, None)?;
    let status = match console_port {
        Some(port) => bochs::console(&mut child, port),
        None => child.wait(),
    };
    let status = status.map_err(|source| Error::Io {
        what: "wait for the emulator",
        path: work.to_owned(),
        source,
    })?;
    println!("\nrun: {}", describe_exit(variant.emulator, status));
    Ok(true)
}

/// Runs every check of the named scenarios (all if none are named), then the summary line.
fn suite(workspace: &Workspace, dir: &Path, names: &[String]) -> Result<bool, Error> {
    let loaded: Vec<Result<Scenario, Error>> = match names {
        [] => scenario::load_all(dir)?
            .into_iter()
            .filter(|s| s.as_ref().map_or(true, |s| s.in_suite))
            .collect(),
        names => names.iter().map(|n| scenario::load_named(dir, n)).collect(),
    };
    let mut results: Vec<(String, bool)> = Vec::new();
    let mut scenarios = Vec::new();
    for scenario in loaded {
        match scenario {
            Ok(scenario) => scenarios.push(scenario),
            Err(e) => {
                println!("run: error: {e}");
                let name = match &e {
                    Error::Scenario { path, .. } => path.display().to_string(),
                    Error::UnknownScenario { name, .. } => name.clone(),
                    _ => "a scenario".into(),
                };
                results.push((format!("{name} (does not load)"), false));
            }
        }
    }
    for scenario in &scenarios {
        let variants: Vec<Variant> = scenario
            .checks
            .iter()
            .map(|c| Variant {
                emulator: c.emulator,
                cpus: c.cpus,
                accel: c.accel,
                timeout: scenario.timeout_for(c.emulator),
            })
            .collect();
        let prepared = WorkDir::claim(workspace, scenario).and_then(|work| {
            let files = BootFiles::prepare(scenario, workspace, &work.path)?;
            Ok((files, work))
        });
        let (files, work) = match prepared {
            Ok(ready) => ready,
            Err(e) => {
                println!("run: {}: cannot build the boot image: {e}", scenario.name);
                results.extend(variants.iter().map(|v| (label(scenario, *v), false)));
                continue;
            }
        };
        for variant in variants {
            let passed = boot(scenario, &files, &work.path, variant).unwrap_or_else(|e| {
                println!("run: {}: {e}", label(scenario, variant));
                false
            });
            results.push((label(scenario, variant), passed));
        }
    }
    println!("run: results:");
    for (label, passed) in &results {
        println!("  {}  {label}", if *passed { "passed" } else { "FAILED" });
    }
    let passed = results.iter().filter(|(_, p)| *p).count();
    println!("suite: {passed} passed, {} failed", results.len() - passed);
    Ok(passed == results.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cmd, Error> {
        parse_args(args.iter().map(OsString::from))
    }

    #[test]
    fn run_with_options() {
        assert_eq!(
            parse(&[
                "kernel-smoke",
                "--cpus",
                "4",
                "--accel=tcg",
                "--emulator",
                "bochs",
                "--timeout",
                "30"
            ])
            .unwrap(),
            Cmd::Run(
                "kernel-smoke".into(),
                Options {
                    cpus: Some(4),
                    emulator: Some(Emulator::Bochs),
                    accel: Some(Accel::Tcg),
                    timeout: Some(30),
                    interactive: false
                }
            )
        );
        assert_eq!(
            parse(&["--interactive", "x"]).unwrap(),
            Cmd::Run(
                "x".into(),
                Options {
                    interactive: true,
                    ..Options::default()
                }
            )
        );
    }

    #[test]
    fn list_suite_and_help() {
        assert_eq!(parse(&["list"]).unwrap(), Cmd::List);
        assert_eq!(parse(&["suite"]).unwrap(), Cmd::Suite(vec![]));
        assert_eq!(
            parse(&["suite", "a", "b"]).unwrap(),
            Cmd::Suite(vec!["a".into(), "b".into()])
        );
        assert_eq!(parse(&["--help"]).unwrap(), Cmd::Help);
        assert_eq!(
            parse(&["fetch", "debian-kernel"]).unwrap(),
            Cmd::Fetch("debian-kernel".into())
        );
        let problem = |args: &[&str]| parse(args).unwrap_err().to_string();
        assert!(problem(&["fetch"]).contains("`fetch` takes one of [\"debian-kernel\"]"));
        assert!(problem(&["fetch", "gentoo"]).contains("`fetch` takes one of"));
    }

    #[test]
    fn bad_command_lines_are_explained() {
        let problem = |args: &[&str]| parse(args).unwrap_err().to_string();
        assert!(problem(&[]).contains("name a scenario"));
        assert!(problem(&["x", "--cpus", "0"]).contains("at least 1"));
        assert!(problem(&["x", "--cpus", "many"]).contains("many"));
        assert!(problem(&["x", "--emulator", "vbox"]).contains("use qemu or bochs"));
        assert!(problem(&["x", "--accel", "hvf"]).contains("use tcg or kvm"));
        assert!(problem(&["x", "--frobnicate"]).contains("--frobnicate"));
        assert!(problem(&["a", "b"]).contains("one scenario at a time"));
        assert!(problem(&["suite", "--cpus", "2"]).contains("`suite` takes no options"));
    }

    #[test]
    fn variant_follows_scenario_and_options() {
        let text = "description = \"d\"\nkernel = { file = \"k\" }\nexpect = [\"x\"]\n\
                    timeout = 5\ncpus = 2\nemulators = [\"qemu\", \"bochs\"]\n";
        let s = Scenario::parse("s", Path::new("s.toml"), text).unwrap();
        let v = choose_variant(&s, &Options::default()).unwrap();
        assert_eq!(
            (v.emulator, v.cpus, v.timeout, v.accel),
            (Emulator::Qemu, 2, 5, None)
        );
        let bochs = Options {
            emulator: Some(Emulator::Bochs),
            cpus: Some(1),
            ..Options::default()
        };
        let v = choose_variant(&s, &bochs).unwrap();
        assert_eq!((v.emulator, v.cpus, v.timeout), (Emulator::Bochs, 1, 50));
        let bad = Options {
            emulator: Some(Emulator::Bochs),
            accel: Some(Accel::Kvm),
            ..Options::default()
        };
        assert!(choose_variant(&s, &bad)
            .unwrap_err()
            .to_string()
            .contains("qemu only"));
        let qemu_only = Scenario::parse(
            "q",
            Path::new("q.toml"),
            "description = \"d\"\nkernel = { file = \"k\" }\nexpect = [\"x\"]\n",
        )
        .unwrap();
        let e = choose_variant(
            &qemu_only,
            &Options {
                emulator: Some(Emulator::Bochs),
                ..Options::default()
            },
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("add \"bochs\" to `emulators`"),
            "{e}"
        );
    }
}
