//! Scenario files: `run/scenarios/NAME.toml`, parsed and checked.
//!
//! Owns the file format (documented in `run/scenarios/README.md`) and turns a file into a
//! [`Scenario`] whose fields are already validated: later stages never see a raw file.
//! It does not build, boot or watch anything.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::Error;

/// Target triple native components and the kernel are built for unless a scenario says otherwise.
pub const DEFAULT_TARGET: &str = "x86_64-unknown-none";
/// Targets the run tool knows how to build for.
const KNOWN_TARGETS: [&str; 2] = [DEFAULT_TARGET, "x86_64-unknown-linux-musl"];
/// Words the command line takes for itself, so no scenario may be called that.
const RESERVED_NAMES: [&str; 3] = ["list", "suite", "help"];
/// The kernel sits beside the modules in the boot directory under this name.
pub const KERNEL_NAME: &str = "kernel";

/// An emulator a scenario can boot in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Emulator {
    Qemu,
    Bochs,
}

impl fmt::Display for Emulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Emulator::Qemu => "qemu",
            Emulator::Bochs => "bochs",
        })
    }
}

/// QEMU's accelerator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Tcg,
    Kvm,
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Accel::Tcg => "tcg",
            Accel::Kvm => "kvm",
        })
    }
}

/// Where a boot image part comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A binary of a workspace package, built by cargo for `target`.
    Package {
        package: String,
        binary: String,
        target: String,
    },
    /// A file in the repository, relative to the workspace root.
    File(PathBuf),
    /// A downloaded artifact (guest kernels, ...): named here, not supported yet.
    Fetch(String),
}

/// The kernel of a boot image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    pub source: Source,
    /// Kernel command line, without the leading image name the boot loaders add.
    pub cmdline: String,
}

/// One boot module; the kernel sees `<name> <args>` as its command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    pub source: Source,
    pub name: String,
    pub args: String,
}

/// One variant `run suite` boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Check {
    pub emulator: Emulator,
    pub cpus: u32,
    /// `None`: detect (QEMU only).
    pub accel: Option<Accel>,
}

/// A validated scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scenario {
    pub name: String,
    pub path: PathBuf,
    pub description: String,
    /// Seconds, for QEMU.
    pub timeout: u64,
    /// Seconds, for Bochs.
    pub bochs_timeout: u64,
    pub cpus: u32,
    /// MiB of guest memory.
    pub memory: u32,
    pub kernel: Kernel,
    pub modules: Vec<Module>,
    pub expect: Vec<String>,
    pub fail: Vec<String>,
    pub qemu_args: Vec<String>,
    pub emulators: Vec<Emulator>,
    pub checks: Vec<Check>,
}

// ---- the file as written ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    description: String,
    #[serde(default = "default_timeout")]
    timeout: u64,
    bochs_timeout: Option<u64>,
    #[serde(default = "default_cpus")]
    cpus: u32,
    #[serde(default = "default_memory")]
    memory: u32,
    kernel: PartFile,
    #[serde(default, rename = "module")]
    modules: Vec<PartFile>,
    expect: Vec<String>,
    #[serde(default)]
    fail: Vec<String>,
    #[serde(default)]
    qemu_args: Vec<String>,
    #[serde(default = "default_emulators")]
    emulators: Vec<Emulator>,
    #[serde(default, rename = "check")]
    checks: Vec<CheckFile>,
}

/// `kernel = {...}` and each `[[module]]`: one of `package`, `file`, `fetch`, plus details.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PartFile {
    package: Option<String>,
    file: Option<PathBuf>,
    fetch: Option<String>,
    binary: Option<String>,
    target: Option<String>,
    name: Option<String>,
    args: Option<String>,
    cmdline: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckFile {
    emulator: Option<Emulator>,
    cpus: Option<u32>,
    accel: Option<Accel>,
}

fn default_timeout() -> u64 {
    60
}
fn default_cpus() -> u32 {
    1
}
fn default_memory() -> u32 {
    256
}
fn default_emulators() -> Vec<Emulator> {
    vec![Emulator::Qemu]
}

impl Scenario {
    /// Reads and validates `path`; the scenario is named after the file stem.
    pub fn load(path: &Path) -> Result<Scenario, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            what: "read the scenario file",
            path: path.to_owned(),
            source,
        })?;
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .ok_or_else(|| invalid(path, "the file name is not valid UTF-8"))?;
        Scenario::parse(name, path, &text)
    }

    /// Parses scenario text; `path` only names the file in errors.
    pub fn parse(name: &str, path: &Path, text: &str) -> Result<Scenario, Error> {
        let bad = |problem: String| invalid(path, &problem);
        if !is_plain_word(name) || RESERVED_NAMES.contains(&name) {
            return Err(bad(format!(
                "`{name}` cannot be a scenario name: use letters, digits, `-` and `_`, and none of {RESERVED_NAMES:?}"
            )));
        }
        let file: File =
            toml::from_str(text).map_err(|e| bad(explain_toml_error(&e.to_string())))?;

        if file.timeout == 0 {
            return Err(bad("key `timeout`: must be at least 1 second".into()));
        }
        if file.bochs_timeout == Some(0) {
            return Err(bad("key `bochs_timeout`: must be at least 1 second".into()));
        }
        if file.cpus == 0 {
            return Err(bad("key `cpus`: must be at least 1".into()));
        }
        if file.memory < 16 {
            return Err(bad("key `memory`: give MiB, at least 16".into()));
        }
        if file.expect.is_empty() || file.expect.iter().any(|e| e.trim().is_empty()) {
            return Err(bad(
                "key `expect`: list at least one non-empty line to wait for".into(),
            ));
        }
        if file.fail.iter().any(|e| e.trim().is_empty()) {
            return Err(bad(
                "key `fail`: an empty pattern would match every line".into()
            ));
        }
        if file.emulators.is_empty() {
            return Err(bad(
                "key `emulators`: name at least one of \"qemu\", \"bochs\"".into(),
            ));
        }

        let kernel = kernel(&file.kernel).map_err(|p| bad(format!("key `kernel`: {p}")))?;
        let mut modules = Vec::new();
        let mut names = HashSet::new();
        for (index, part) in file.modules.iter().enumerate() {
            let module =
                module(part).map_err(|p| bad(format!("[[module]] number {}: {p}", index + 1)))?;
            if !names.insert(module.name.clone()) {
                return Err(bad(format!(
                    "[[module]] number {}: the name `{}` is used twice; set `name` to tell them apart",
                    index + 1,
                    module.name
                )));
            }
            modules.push(module);
        }

        let mut checks = Vec::new();
        for (index, check) in file.checks.iter().enumerate() {
            let emulator = check.emulator.unwrap_or(file.emulators[0]);
            let problem = if !file.emulators.contains(&emulator) {
                Some(format!("emulator `{emulator}` is not in `emulators`"))
            } else if check.cpus == Some(0) {
                Some("`cpus` must be at least 1".to_owned())
            } else if check.accel.is_some() && emulator != Emulator::Qemu {
                Some("`accel` applies to qemu only".to_owned())
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err(bad(format!("[[check]] number {}: {problem}", index + 1)));
            }
            checks.push(Check {
                emulator,
                cpus: check.cpus.unwrap_or(file.cpus),
                accel: check.accel,
            });
        }
        if checks.is_empty() {
            checks.push(Check {
                emulator: file.emulators[0],
                cpus: file.cpus,
                accel: None,
            });
        }

        Ok(Scenario {
            name: name.to_owned(),
            path: path.to_owned(),
            description: file.description,
            timeout: file.timeout,
            bochs_timeout: file.bochs_timeout.unwrap_or(file.timeout * 10),
            cpus: file.cpus,
            memory: file.memory,
            kernel,
            modules,
            expect: file.expect,
            fail: file.fail,
            qemu_args: file.qemu_args,
            emulators: file.emulators,
            checks,
        })
    }

    /// The expected lines for a boot with `cpus` CPUs: `{cpus}` stands for that count.
    pub fn expected_lines(&self, cpus: u32) -> Vec<String> {
        self.expect
            .iter()
            .map(|line| line.replace("{cpus}", &cpus.to_string()))
            .collect()
    }

    /// The timeout in seconds for `emulator`.
    pub fn timeout_for(&self, emulator: Emulator) -> u64 {
        match emulator {
            Emulator::Qemu => self.timeout,
            Emulator::Bochs => self.bochs_timeout,
        }
    }
}

/// Loads every `*.toml` in `dir`, sorted by file name; one result per file, so one malformed
/// scenario does not hide the others.
pub fn load_all(dir: &Path) -> Result<Vec<Result<Scenario, Error>>, Error> {
    let entries = std::fs::read_dir(dir).map_err(|source| Error::Io {
        what: "list the scenario folder",
        path: dir.to_owned(),
        source,
    })?;
    let mut paths = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|source| Error::Io {
                what: "list the scenario folder",
                path: dir.to_owned(),
                source,
            })?
            .path();
        if path.extension().is_some_and(|e| e == "toml") {
            paths.push(path);
        }
    }
    paths.sort();
    Ok(paths.iter().map(|p| Scenario::load(p)).collect())
}

/// Loads the scenario `name` from `dir`.
pub fn load_named(dir: &Path, name: &str) -> Result<Scenario, Error> {
    let path = dir.join(format!("{name}.toml"));
    if !is_plain_word(name) || !path.is_file() {
        return Err(Error::UnknownScenario {
            name: name.to_owned(),
            dir: dir.to_owned(),
        });
    }
    Scenario::load(&path)
}

/// Keys of the scenario itself, which TOML puts into a `[[module]]` or `[[check]]` table when
/// they are written after one.
const TOP_LEVEL_KEYS: [&str; 12] = [
    "description",
    "timeout",
    "bochs_timeout",
    "cpus",
    "memory",
    "kernel",
    "expect",
    "fail",
    "qemu_args",
    "emulators",
    "module",
    "check",
];

fn explain_toml_error(message: &str) -> String {
    let message = message.trim_end();
    let misplaced = TOP_LEVEL_KEYS
        .iter()
        .any(|key| message.contains(&format!("unknown field `{key}`")));
    match misplaced {
        true => {
            format!("{message}\n(scenario keys go above the first [[module]] or [[check]] table)")
        }
        false => message.to_owned(),
    }
}

fn invalid(path: &Path, problem: &str) -> Error {
    Error::Scenario {
        path: path.to_owned(),
        problem: problem.to_owned(),
    }
}

fn kernel(part: &PartFile) -> Result<Kernel, String> {
    if part.name.is_some() || part.args.is_some() {
        return Err("the kernel takes `cmdline`, not `name` or `args`".into());
    }
    let cmdline = part.cmdline.clone().unwrap_or_default();
    check_words("cmdline", &cmdline)?;
    Ok(Kernel {
        source: source(part)?,
        cmdline,
    })
}

fn module(part: &PartFile) -> Result<Module, String> {
    if part.cmdline.is_some() {
        return Err("a module takes `args`, not `cmdline`".into());
    }
    let source = source(part)?;
    let name = match (&part.name, &source) {
        (Some(name), _) => name.clone(),
        (None, Source::Package { binary, .. }) => binary.clone(),
        (None, Source::File(path)) => path
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_owned)
            .ok_or("cannot derive a module name from `file`; set `name`")?,
        (None, Source::Fetch(what)) => what.clone(),
    };
    if !is_plain_word(&name) || name == KERNEL_NAME {
        return Err(format!(
            "module name `{name}`: use letters, digits, `.`, `-` and `_` only (and not `{KERNEL_NAME}`)"
        ));
    }
    let args = part.args.clone().unwrap_or_default();
    check_words("args", &args)?;
    Ok(Module { source, name, args })
}

fn source(part: &PartFile) -> Result<Source, String> {
    let given = [
        part.package.is_some(),
        part.file.is_some(),
        part.fetch.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err("give exactly one of `package`, `file` or `fetch`".into());
    }
    if part.package.is_none() && (part.binary.is_some() || part.target.is_some()) {
        return Err("`binary` and `target` go with `package` only".into());
    }
    if let Some(package) = &part.package {
        let target = part
            .target
            .clone()
            .unwrap_or_else(|| DEFAULT_TARGET.to_owned());
        if !KNOWN_TARGETS.contains(&target.as_str()) {
            return Err(format!(
                "`target = \"{target}\"`: use one of {KNOWN_TARGETS:?}"
            ));
        }
        return Ok(Source::Package {
            package: package.clone(),
            binary: part.binary.clone().unwrap_or_else(|| package.clone()),
            target,
        });
    }
    if let Some(file) = &part.file {
        if file.is_absolute() || file.as_os_str().is_empty() {
            return Err(format!(
                "`file = {file:?}`: give a path relative to the workspace root"
            ));
        }
        return Ok(Source::File(file.clone()));
    }
    Ok(Source::Fetch(part.fetch.clone().unwrap_or_default()))
}

/// Module names and scenario names: safe in file names, QEMU's `-initrd` list and grub.cfg.
fn is_plain_word(word: &str) -> bool {
    !word.is_empty()
        && !word.starts_with('.')
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Command lines are whitespace-separated words; the boot loaders' quoting rules make a few
/// characters unsafe, so they are refused rather than escaped differently per loader.
fn check_words(key: &str, words: &str) -> Result<(), String> {
    match words
        .chars()
        .find(|c| matches!(c, '\'' | '"' | '\\' | '\n' | '\r') || c.is_control())
    {
        Some(c) => Err(format!(
            "`{key}` contains {c:?}; quotes, backslashes and control characters are not allowed"
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
description = "Kernel boots; IPC"
timeout = 120
cpus = 2
memory = 512
kernel = { package = "kernel", cmdline = "serial verbose" }
expect = ["CPU 0 online", "roottask: started"]
fail = ["PANIC"]
qemu_args = ["-device", "intel-iommu"]
emulators = ["qemu", "bochs"]
[[module]]
package = "roottask"
args = "verbose"
[[module]]
file = "run/scenarios/kernel-smoke.boot"
name = "config"
[[module]]
package = "linux-app"
binary = "app"
target = "x86_64-unknown-linux-musl"
[[check]]
cpus = 1
[[check]]
cpus = 4
[[check]]
emulator = "bochs"
"#;

    fn parse(text: &str) -> Result<Scenario, Error> {
        Scenario::parse("smoke", Path::new("run/scenarios/smoke.toml"), text)
    }

    fn problem(text: &str) -> String {
        parse(text)
            .expect_err("the scenario must be refused")
            .to_string()
    }

    const MINIMAL: &str = "description = \"d\"\nkernel = { file = \"k.elf\" }\nexpect = [\"hi\"]\n";

    #[test]
    fn full_scenario_parses_with_defaults_filled_in() {
        let s = parse(FULL).unwrap();
        assert_eq!(s.name, "smoke");
        assert_eq!(
            (s.timeout, s.bochs_timeout, s.cpus, s.memory),
            (120, 1200, 2, 512)
        );
        assert_eq!(
            s.kernel,
            Kernel {
                source: Source::Package {
                    package: "kernel".into(),
                    binary: "kernel".into(),
                    target: DEFAULT_TARGET.into()
                },
                cmdline: "serial verbose".into()
            }
        );
        let names: Vec<_> = s.modules.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["roottask", "config", "app"]);
        assert_eq!(s.modules[0].args, "verbose");
        assert_eq!(
            s.modules[1].source,
            Source::File("run/scenarios/kernel-smoke.boot".into())
        );
        assert_eq!(
            s.modules[2].source,
            Source::Package {
                package: "linux-app".into(),
                binary: "app".into(),
                target: "x86_64-unknown-linux-musl".into()
            }
        );
        assert_eq!(s.emulators, [Emulator::Qemu, Emulator::Bochs]);
        assert_eq!(
            s.checks,
            [
                Check {
                    emulator: Emulator::Qemu,
                    cpus: 1,
                    accel: None
                },
                Check {
                    emulator: Emulator::Qemu,
                    cpus: 4,
                    accel: None
                },
                Check {
                    emulator: Emulator::Bochs,
                    cpus: 2,
                    accel: None
                },
            ]
        );
    }

    #[test]
    fn minimal_scenario_gets_one_default_check() {
        let s = parse(MINIMAL).unwrap();
        assert_eq!(
            (s.timeout, s.bochs_timeout, s.cpus, s.memory),
            (60, 600, 1, 256)
        );
        assert_eq!(s.emulators, [Emulator::Qemu]);
        assert_eq!(
            s.checks,
            [Check {
                emulator: Emulator::Qemu,
                cpus: 1,
                accel: None
            }]
        );
        assert_eq!(s.kernel.source, Source::File("k.elf".into()));
        assert!(s.modules.is_empty() && s.fail.is_empty());
    }

    #[test]
    fn unknown_key_names_file_and_key() {
        let e = problem(&format!("{MINIMAL}timout = 3\n"));
        assert!(e.starts_with("run/scenarios/smoke.toml: "), "{e}");
        assert!(e.contains("unknown field `timout`"), "{e}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let e = problem(&MINIMAL.replace("expect = [\"hi\"]", "expect = \"hi\""));
        assert!(e.contains("expect"), "{e}");
        assert!(e.contains("line 3"), "{e}");
    }

    #[test]
    fn top_level_key_after_a_table_is_explained() {
        let e = problem("description = \"d\"\nkernel = { file = \"k\" }\n[[module]]\nfile = \"m\"\nexpect = [\"x\"]\n");
        assert!(
            e.contains("unknown field `expect`, expected one of `package`"),
            "{e}"
        );
        assert!(e.contains("go above the first [[module]]"), "{e}");
    }

    #[test]
    fn missing_required_key_is_named() {
        let e = problem("kernel = { file = \"k\" }\nexpect = [\"x\"]\n");
        assert!(e.contains("missing field `description`"), "{e}");
    }

    #[test]
    fn module_needs_exactly_one_source() {
        let e = problem(&format!(
            "{MINIMAL}[[module]]\npackage = \"a\"\nfile = \"b\"\n"
        ));
        assert!(
            e.contains("[[module]] number 1: give exactly one of"),
            "{e}"
        );
        let e = problem(&format!("{MINIMAL}[[module]]\nargs = \"x\"\n"));
        assert!(e.contains("give exactly one of"), "{e}");
    }

    #[test]
    fn duplicate_and_reserved_module_names_are_refused() {
        let e = problem(&format!(
            "{MINIMAL}[[module]]\npackage = \"a\"\n[[module]]\nfile = \"x/a\"\n"
        ));
        assert!(
            e.contains("[[module]] number 2: the name `a` is used twice"),
            "{e}"
        );
        let e = problem(&format!("{MINIMAL}[[module]]\npackage = \"kernel\"\n"));
        assert!(e.contains("module name `kernel`"), "{e}");
        let e = problem(&format!(
            "{MINIMAL}[[module]]\npackage = \"a\"\nname = \"a b\"\n"
        ));
        assert!(e.contains("module name `a b`"), "{e}");
    }

    #[test]
    fn unsafe_command_line_characters_are_refused() {
        let e = problem(&MINIMAL.replace("k.elf\"", "k.elf\", cmdline = \"a'b\""));
        assert!(e.contains("key `kernel`: `cmdline` contains '\\''"), "{e}");
        let e = problem(&format!(
            "{MINIMAL}[[module]]\npackage = \"a\"\nargs = \"x\\\\y\"\n"
        ));
        assert!(e.contains("`args` contains '\\\\'"), "{e}");
    }

    #[test]
    fn unknown_target_and_absolute_file_are_refused() {
        let e = problem(&MINIMAL.replace(
            "file = \"k.elf\"",
            "package = \"k\", target = \"x86_64-pc-windows-msvc\"",
        ));
        assert!(e.contains("`target = \"x86_64-pc-windows-msvc\"`"), "{e}");
        let e = problem(&MINIMAL.replace("k.elf", "/abs/k.elf"));
        assert!(e.contains("relative to the workspace root"), "{e}");
    }

    #[test]
    fn check_must_use_a_listed_emulator() {
        let e = problem(&format!("{MINIMAL}[[check]]\nemulator = \"bochs\"\n"));
        assert!(
            e.contains("[[check]] number 1: emulator `bochs` is not in `emulators`"),
            "{e}"
        );
        let e = problem(&format!("{MINIMAL}[[check]]\nemulator = \"vmware\"\n"));
        assert!(e.contains("unknown variant `vmware`"), "{e}");
    }

    #[test]
    fn empty_expectations_and_zero_values_are_refused() {
        assert!(problem(&MINIMAL.replace("[\"hi\"]", "[]")).contains("key `expect`"));
        assert!(problem(&format!("{MINIMAL}cpus = 0\n")).contains("key `cpus`"));
        assert!(problem(&format!("{MINIMAL}timeout = 0\n")).contains("key `timeout`"));
        assert!(problem(&format!("{MINIMAL}fail = [\"\"]\n")).contains("key `fail`"));
    }

    #[test]
    fn reserved_scenario_names_are_refused() {
        let e = Scenario::parse("list", Path::new("list.toml"), MINIMAL).unwrap_err();
        assert!(
            e.to_string().contains("`list` cannot be a scenario name"),
            "{e}"
        );
    }

    #[test]
    fn cpu_count_is_substituted_in_expected_lines() {
        let s =
            parse(&MINIMAL.replace("[\"hi\"]", "[\"smp: {cpus} CPUs online\", \"hi\"]")).unwrap();
        assert_eq!(s.expected_lines(4), ["smp: 4 CPUs online", "hi"]);
    }

    #[test]
    fn fetch_parses_and_names_the_module() {
        let s = parse(&format!("{MINIMAL}[[module]]\nfetch = \"debian-kernel\"\n")).unwrap();
        assert_eq!(s.modules[0].source, Source::Fetch("debian-kernel".into()));
        assert_eq!(s.modules[0].name, "debian-kernel");
    }

    #[test]
    fn every_scenario_in_the_repository_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        for scenario in load_all(&dir).unwrap() {
            if let Err(e) = scenario {
                panic!("{e}");
            }
        }
    }
}
