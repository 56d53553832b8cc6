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

/// How the kernel is booted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BootKind {
    /// A Multiboot kernel (Tern) with `[[module]]`s.
    Multiboot,
    /// A Linux bzImage with the scenario's `[initramfs]` as its initrd.
    Linux,
}

/// Artifacts `fetch` can name.
pub const FETCHABLE: [&str; 1] = [DEBIAN_KERNEL];
/// Debian's stock 64-bit kernel (`linux-image-amd64`), see [`crate::fetch`].
pub const DEBIAN_KERNEL: &str = "debian-kernel";

/// Where a boot image part comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A binary of a workspace package, built by cargo for `target`.
    Package {
        package: String,
        binary: String,
        target: String,
        /// Cargo features of the package to build with.
        features: Vec<String>,
    },
    /// A file in the repository, relative to the workspace root.
    File(PathBuf),
    /// A downloaded artifact, one of [`FETCHABLE`].
    Fetch(String),
    /// The scenario's `[initramfs]`, built by the tool.
    Initramfs,
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

/// The scenario's `[initramfs]`: a Linux root file system in memory, built by the tool from
/// Debian's static busybox, kernel modules of the fetched Debian kernel, workspace binaries
/// and files, and an init script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Initramfs {
    /// Becomes `/init`; relative to the workspace root.
    pub init: PathBuf,
    /// Module names as `modprobe` takes them (`kvm-amd`); their dependencies come along.
    pub kernel_modules: Vec<String>,
    pub files: Vec<InitramfsFile>,
}

/// One file put into the initramfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitramfsFile {
    /// `Package` or `File`.
    pub source: Source,
    /// Absolute path inside the initramfs.
    pub to: String,
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
    pub boot: BootKind,
    pub kernel: Kernel,
    pub modules: Vec<Module>,
    pub initramfs: Option<Initramfs>,
    pub expect: Vec<String>,
    pub fail: Vec<String>,
    pub qemu_args: Vec<String>,
    /// Typed into the first serial port from the start (QEMU only).
    pub serial_input: Option<String>,
    pub emulators: Vec<Emulator>,
    pub checks: Vec<Check>,
    /// Whether a plain `run suite` boots it (benchmarks stay out).
    pub in_suite: bool,
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
    #[serde(default = "default_boot")]
    boot: BootKind,
    kernel: PartFile,
    #[serde(default, rename = "module")]
    modules: Vec<PartFile>,
    initramfs: Option<InitramfsTable>,
    expect: Vec<String>,
    #[serde(default)]
    fail: Vec<String>,
    #[serde(default)]
    qemu_args: Vec<String>,
    serial_input: Option<String>,
    #[serde(default = "default_emulators")]
    emulators: Vec<Emulator>,
    #[serde(default, rename = "check")]
    checks: Vec<CheckFile>,
    #[serde(default = "default_suite")]
    suite: bool,
}

/// `kernel = {...}` and each `[[module]]`: one of `package`, `file`, `fetch`, `initramfs`,
/// plus details.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PartFile {
    package: Option<String>,
    file: Option<PathBuf>,
    fetch: Option<String>,
    initramfs: Option<bool>,
    binary: Option<String>,
    target: Option<String>,
    features: Option<Vec<String>>,
    name: Option<String>,
    args: Option<String>,
    cmdline: Option<String>,
}

/// `[initramfs]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InitramfsTable {
    init: PathBuf,
    #[serde(default)]
    kernel_modules: Vec<String>,
    #[serde(default, rename = "file")]
    files: Vec<InitramfsFileTable>,
}

/// `[[initramfs.file]]`: one of `package`, `file`, `fetch`, plus `to`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InitramfsFileTable {
    package: Option<String>,
    file: Option<PathBuf>,
    fetch: Option<String>,
    binary: Option<String>,
    binaries: Option<Vec<String>>,
    target: Option<String>,
    features: Option<Vec<String>>,
    to: Option<String>,
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
fn default_suite() -> bool {
    true
}
fn default_boot() -> BootKind {
    BootKind::Multiboot
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

        let kernel =
            kernel(&file.kernel, file.boot).map_err(|p| bad(format!("key `kernel`: {p}")))?;
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

        let initramfs = match &file.initramfs {
            Some(table) => Some(initramfs(table).map_err(|p| bad(format!("[initramfs]: {p}")))?),
            None => None,
        };
        check_boot_kind(&file, &modules).map_err(bad)?;

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
            boot: file.boot,
            kernel,
            modules,
            initramfs,
            expect: file.expect,
            fail: file.fail,
            qemu_args: file.qemu_args,
            serial_input: file.serial_input,
            emulators: file.emulators,
            checks,
            in_suite: file.suite,
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
const TOP_LEVEL_KEYS: [&str; 16] = [
    "description",
    "timeout",
    "bochs_timeout",
    "cpus",
    "memory",
    "boot",
    "kernel",
    "initramfs",
    "expect",
    "fail",
    "qemu_args",
    "serial_input",
    "emulators",
    "module",
    "check",
    "suite",
];

fn explain_toml_error(message: &str) -> String {
    let message = message.trim_end();
    let misplaced = TOP_LEVEL_KEYS
        .iter()
        .any(|key| message.contains(&format!("unknown field `{key}`")));
    match misplaced {
        true => format!(
            "{message}\n(scenario keys go above the first [[module]], [initramfs] or [[check]] table)"
        ),
        false => message.to_owned(),
    }
}

fn invalid(path: &Path, problem: &str) -> Error {
    Error::Scenario {
        path: path.to_owned(),
        problem: problem.to_owned(),
    }
}

fn kernel(part: &PartFile, boot: BootKind) -> Result<Kernel, String> {
    if part.name.is_some() || part.args.is_some() {
        return Err("the kernel takes `cmdline`, not `name` or `args`".into());
    }
    let cmdline = part.cmdline.clone().unwrap_or_default();
    check_words("cmdline", &cmdline)?;
    let source = source(part)?;
    match (&source, boot) {
        (Source::Initramfs, _) => Err("an initramfs is not a kernel".into()),
        (Source::Fetch(what), BootKind::Multiboot) => Err(format!(
            "`fetch = \"{what}\"` is a Linux kernel: set `boot = \"linux\"`"
        )),
        _ => Ok(Kernel { source, cmdline }),
    }
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
        (None, Source::Initramfs) => "initramfs".to_owned(),
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
        part.initramfs.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err("give exactly one of `package`, `file`, `fetch` or `initramfs`".into());
    }
    if part.initramfs == Some(false) {
        return Err("`initramfs = false`: leave the key out, or give another source".into());
    }
    if part.initramfs.is_some() {
        return Ok(Source::Initramfs);
    }
    if let Some(what) = &part.fetch {
        if !FETCHABLE.contains(&what.as_str()) {
            return Err(format!(
                "`fetch = \"{what}\"`: the tool can fetch {FETCHABLE:?}"
            ));
        }
        return Ok(Source::Fetch(what.clone()));
    }
    local_source(
        part.package.as_deref(),
        part.file.as_deref(),
        part.binary.as_deref(),
        part.target.as_deref(),
        part.features.as_deref(),
    )
}

/// A `package` (with its `binary`, `target` and `features`) or a `file`; exactly one
/// is given.
fn local_source(
    package: Option<&str>,
    file: Option<&Path>,
    binary: Option<&str>,
    target: Option<&str>,
    features: Option<&[String]>,
) -> Result<Source, String> {
    if package.is_none() && (binary.is_some() || target.is_some() || features.is_some()) {
        return Err("`binary`, `target` and `features` go with `package` only".into());
    }
    let features = features.unwrap_or_default().to_vec();
    if let Some(bad) = features
        .iter()
        .find(|f| !is_plain_word(f) || f.contains('.'))
    {
        return Err(format!(
            "`features`: `{bad}` is not a feature name (letters, digits, `-` and `_`)"
        ));
    }
    if let Some(package) = package {
        let target = target.unwrap_or(DEFAULT_TARGET);
        if !KNOWN_TARGETS.contains(&target) {
            return Err(format!(
                "`target = \"{target}\"`: use one of {KNOWN_TARGETS:?}"
            ));
        }
        return Ok(Source::Package {
            package: package.to_owned(),
            binary: binary.unwrap_or(package).to_owned(),
            target: target.to_owned(),
            features,
        });
    }
    let file = file.ok_or("give `package` or `file`")?;
    relative_path("file", file)?;
    Ok(Source::File(file.to_owned()))
}

fn relative_path(key: &str, path: &Path) -> Result<(), String> {
    match path.is_absolute() || path.as_os_str().is_empty() {
        true => Err(format!(
            "`{key} = {path:?}`: give a path relative to the workspace root"
        )),
        false => Ok(()),
    }
}

fn initramfs(table: &InitramfsTable) -> Result<Initramfs, String> {
    relative_path("init", &table.init)?;
    let mut seen = HashSet::new();
    for name in &table.kernel_modules {
        if !is_plain_word(name) {
            return Err(format!(
                "`kernel_modules`: `{name}` is not a module name (as modprobe takes it, e.g. \"kvm-amd\")"
            ));
        }
        if !seen.insert(name.replace('_', "-")) {
            return Err(format!("`kernel_modules`: `{name}` is listed twice"));
        }
    }
    let mut files = Vec::new();
    let mut targets = HashSet::from(["/init".to_owned()]);
    for (index, f) in table.files.iter().enumerate() {
        let at = |p: String| format!("[[initramfs.file]] number {}: {p}", index + 1);
        if let Some(fetch) = &f.fetch {
            files.push(fetched_initramfs_file(f, fetch).map_err(at)?);
            if !targets.insert(files[files.len() - 1].to.clone()) {
                return Err(at("its `to` is already taken".into()));
            }
            continue;
        }
        if f.package.is_some() == f.file.is_some() {
            return Err(at("give exactly one of `package`, `file` or `fetch`".into()));
        }
        let binaries: Vec<Option<&str>> = match (&f.binary, &f.binaries) {
            (Some(_), Some(_)) => return Err(at("give `binary` or `binaries`, not both".into())),
            (_, Some(list)) if list.is_empty() => {
                return Err(at("`binaries` is empty: name at least one".into()))
            }
            (_, Some(list)) => list.iter().map(|b| Some(b.as_str())).collect(),
            (binary, None) => vec![binary.as_deref()],
        };
        if f.binaries.is_some() && f.package.is_none() {
            return Err(at("`binaries` goes with `package` only".into()));
        }
        let to = f.to.as_deref().unwrap_or("/bin/");
        if binaries.len() > 1 && !to.ends_with('/') {
            return Err(at(format!(
                "`to = \"{to}\"` names one file, but `binaries` are several: end it with `/`"
            )));
        }
        for binary in binaries {
            let source = local_source(
                f.package.as_deref(),
                f.file.as_deref(),
                binary,
                f.target.as_deref(),
                f.features.as_deref(),
            )
            .map_err(at)?;
            let name = match &source {
                Source::Package { binary, .. } => binary.clone(),
                Source::File(path) => path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default()
                    .to_owned(),
                Source::Fetch(_) | Source::Initramfs => {
                    return Err(at("give a `package` or a `file`".into()))
                }
            };
            let to = match to.ends_with('/') {
                true => format!("{to}{name}"),
                false => to.to_owned(),
            };
            initramfs_path(&to).map_err(at)?;
            if !targets.insert(to.clone()) {
                return Err(at(format!("`{to}` is already taken")));
            }
            files.push(InitramfsFile { source, to });
        }
    }
    Ok(Initramfs {
        init: table.init.clone(),
        kernel_modules: table.kernel_modules.clone(),
        files,
    })
}

/// `[[initramfs.file]]` with `fetch` (e.g. Debian's kernel for a VMM inside to boot): `to`
/// names the file.
fn fetched_initramfs_file(f: &InitramfsFileTable, fetch: &str) -> Result<InitramfsFile, String> {
    if f.package.is_some() || f.file.is_some() || f.binary.is_some() || f.binaries.is_some() {
        return Err("`fetch` goes alone (with `to`), without `package`, `file` or `binary`".into());
    }
    if !FETCHABLE.contains(&fetch) {
        return Err(format!("`fetch = \"{fetch}\"`: known are {FETCHABLE:?}"));
    }
    let to = match f.to.as_deref() {
        Some(to) if !to.ends_with('/') => to.to_owned(),
        _ => return Err("`fetch` needs `to` naming the file, like \"/guest/vmlinuz\"".into()),
    };
    initramfs_path(&to)?;
    Ok(InitramfsFile {
        source: Source::Fetch(fetch.to_owned()),
        to,
    })
}

/// An absolute path of plain words: `/bin/tern-vmm`, `/guests/cpuid`.
fn initramfs_path(to: &str) -> Result<(), String> {
    match to.strip_prefix('/') {
        Some(rest) if rest.split('/').all(is_plain_word) => Ok(()),
        _ => Err(format!(
            "`to = \"{to}\"`: give an absolute path of plain names, like \"/bin/tool\""
        )),
    }
}

/// The keys that go with `boot`: a Linux kernel takes the `[initramfs]` as its initrd and no
/// modules; a Multiboot kernel may load the `[initramfs]` as a module.
fn check_boot_kind(file: &File, modules: &[Module]) -> Result<(), String> {
    let uses_initramfs = modules.iter().any(|m| m.source == Source::Initramfs);
    match file.boot {
        BootKind::Linux => {
            if !modules.is_empty() {
                return Err(
                    "`boot = \"linux\"` takes no [[module]]: its initrd is [initramfs]".into(),
                );
            }
            if file.initramfs.is_none() {
                return Err("`boot = \"linux\"` needs an [initramfs] table (its initrd)".into());
            }
        }
        BootKind::Multiboot => {
            if file.initramfs.is_some() && !uses_initramfs {
                return Err(
                    "[initramfs] is not used: add `boot = \"linux\"`, or a [[module]] with `initramfs = true`"
                        .into(),
                );
            }
            if uses_initramfs && file.initramfs.is_none() {
                return Err(
                    "a [[module]] has `initramfs = true` but there is no [initramfs] table".into(),
                );
            }
        }
    }
    Ok(())
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
features = ["tern", "check"]
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
                    target: DEFAULT_TARGET.into(),
                    features: vec![]
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
                target: "x86_64-unknown-linux-musl".into(),
                features: vec!["tern".into(), "check".into()]
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

    const LINUX: &str = r#"
description = "Linux"
boot = "linux"
kernel = { fetch = "debian-kernel", cmdline = "console=ttyS0 panic=-1" }
expect = ["init started"]
[initramfs]
init = "run/scenarios/x.init"
kernel_modules = ["kvm-amd", "kvm_intel"]
[[initramfs.file]]
package = "vmm-hosted"
binary = "tern-vmm"
target = "x86_64-unknown-linux-musl"
[[initramfs.file]]
package = "guest-tests"
binaries = ["cpuid", "msr"]
to = "/guests/"
[[initramfs.file]]
file = "run/scenarios/data.txt"
to = "/etc/data"
"#;

    #[test]
    fn linux_boot_with_initramfs_parses() {
        let s = parse(LINUX).unwrap();
        assert_eq!(s.boot, BootKind::Linux);
        assert_eq!(s.kernel.source, Source::Fetch(DEBIAN_KERNEL.into()));
        let i = s.initramfs.unwrap();
        assert_eq!(i.init, PathBuf::from("run/scenarios/x.init"));
        assert_eq!(i.kernel_modules, ["kvm-amd", "kvm_intel"]);
        let package = |package: &str, binary: &str, target: &str| Source::Package {
            package: package.into(),
            binary: binary.into(),
            target: target.into(),
            features: vec![],
        };
        assert_eq!(
            i.files,
            [
                InitramfsFile {
                    source: package("vmm-hosted", "tern-vmm", "x86_64-unknown-linux-musl"),
                    to: "/bin/tern-vmm".into()
                },
                InitramfsFile {
                    source: package("guest-tests", "cpuid", DEFAULT_TARGET),
                    to: "/guests/cpuid".into()
                },
                InitramfsFile {
                    source: package("guest-tests", "msr", DEFAULT_TARGET),
                    to: "/guests/msr".into()
                },
                InitramfsFile {
                    source: Source::File("run/scenarios/data.txt".into()),
                    to: "/etc/data".into()
                },
            ]
        );
        assert!(s.modules.is_empty());
        assert!(s.in_suite);
    }

    #[test]
    fn boot_kind_and_its_keys_must_agree() {
        let e = problem(&LINUX.replace("boot = \"linux\"\n", ""));
        assert!(e.contains("set `boot = \"linux\"`"), "{e}");
        let e = problem(&format!("{LINUX}[[module]]\nfile = \"m\"\n"));
        assert!(e.contains("takes no [[module]]"), "{e}");
        let no_initramfs = &LINUX[..LINUX.find("[initramfs]").unwrap()];
        assert!(problem(no_initramfs).contains("needs an [initramfs] table"));
        let e = problem(&LINUX.replace("boot = \"linux\"", "boot = \"efi\""));
        assert!(e.contains("unknown variant `efi`"), "{e}");
    }

    #[test]
    fn multiboot_kernel_may_load_the_initramfs_as_a_module() {
        let text = format!(
            "{MINIMAL}[[module]]\nfetch = \"debian-kernel\"\n[[module]]\ninitramfs = true\n\
             [initramfs]\ninit = \"i\"\n"
        );
        let s = parse(&text).unwrap();
        assert_eq!(s.modules[1].source, Source::Initramfs);
        assert_eq!(s.modules[1].name, "initramfs");
        let unused = format!("{MINIMAL}[initramfs]\ninit = \"i\"\n");
        assert!(problem(&unused).contains("[initramfs] is not used"));
        let missing = format!("{MINIMAL}[[module]]\ninitramfs = true\n");
        assert!(problem(&missing).contains("there is no [initramfs] table"));
    }

    #[test]
    fn bad_initramfs_entries_are_explained() {
        let file = |body: &str| {
            let text = LINUX[..LINUX.find("[[initramfs.file]]").unwrap()].to_owned();
            problem(&format!("{text}[[initramfs.file]]\n{body}\n"))
        };
        assert!(file("to = \"/x\"")
            .contains("number 1: give exactly one of `package`, `file` or `fetch`"));
        assert!(file("file = \"a\"\nbinary = \"b\"").contains("go with `package` only"));
        assert!(file("file = \"a\"\nfeatures = [\"x\"]").contains("go with `package` only"));
        assert!(file("package = \"p\"\nfeatures = [\"a b\"]").contains("not a feature name"));
        assert!(file("package = \"p\"\nbinaries = []").contains("`binaries` is empty"));
        assert!(file("package = \"p\"\nbinary = \"a\"\nbinaries = [\"b\"]").contains("not both"));
        assert!(
            file("package = \"p\"\nbinaries = [\"a\", \"b\"]\nto = \"/x\"")
                .contains("end it with `/`")
        );
        assert!(file("package = \"p\"\nto = \"bin/p\"").contains("absolute path"));
        assert!(file("package = \"p\"\nto = \"/bin/../p\"").contains("absolute path"));
        assert!(file("package = \"p\"\nto = \"/init\"").contains("`/init` is already taken"));
        assert!(file("file = \"/abs\"").contains("relative to the workspace root"));
        assert!(file("package = \"p\"\nmode = 1").contains("unknown field `mode`"));
        let e = problem(&LINUX.replace("\"kvm_intel\"", "\"kvm-amd\""));
        assert!(e.contains("`kvm-amd` is listed twice"), "{e}");
        let e = problem(&LINUX.replace("\"kvm_intel\"", "\"a b\""));
        assert!(e.contains("`a b` is not a module name"), "{e}");
        let e = problem(&LINUX.replace("init = \"run/scenarios/x.init\"\n", ""));
        assert!(e.contains("missing field `init`"), "{e}");
    }

    #[test]
    fn the_fetched_kernel_can_go_into_the_initramfs_for_a_vmm_to_boot() {
        let text = format!(
            "{LINUX}[[initramfs.file]]\nfetch = \"debian-kernel\"\nto = \"/guest/vmlinuz\"\n"
        );
        let files = parse(&text).unwrap().initramfs.unwrap().files;
        assert_eq!(
            files.last().unwrap(),
            &InitramfsFile {
                source: Source::Fetch(DEBIAN_KERNEL.into()),
                to: "/guest/vmlinuz".into()
            }
        );
        let file = |body: &str| {
            let text = LINUX[..LINUX.find("[[initramfs.file]]").unwrap()].to_owned();
            problem(&format!("{text}[[initramfs.file]]\n{body}\n"))
        };
        assert!(file("fetch = \"debian-kernel\"").contains("needs `to` naming the file"));
        assert!(file("fetch = \"debian-kernel\"\nto = \"/g/\"").contains("needs `to`"));
        assert!(file("fetch = \"other\"\nto = \"/g/k\"").contains("known are"));
        assert!(file("fetch = \"debian-kernel\"\nfile = \"f\"\nto = \"/k\"").contains("goes alone"));
        let twice = format!(
            "{text}[[initramfs.file]]\nfetch = \"debian-kernel\"\nto = \"/guest/vmlinuz\"\n"
        );
        assert!(problem(&twice).contains("already taken"));
    }

    #[test]
    fn unknown_fetch_and_kernel_sources_are_refused() {
        let e = problem(&LINUX.replace("debian-kernel", "fedora-kernel"));
        assert!(e.contains("the tool can fetch [\"debian-kernel\"]"), "{e}");
        let e = problem(&LINUX.replace("fetch = \"debian-kernel\"", "initramfs = true"));
        assert!(e.contains("an initramfs is not a kernel"), "{e}");
    }

    #[test]
    fn scenarios_can_stay_out_of_the_suite() {
        assert!(parse(MINIMAL).unwrap().in_suite);
        assert!(
            !parse(&format!("{MINIMAL}suite = false\n"))
                .unwrap()
                .in_suite
        );
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
