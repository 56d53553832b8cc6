//! The VM configuration file (TOML), checked into a [`VmConfig`].
//!
//! Owns: the file's keys, their defaults and every check that can be made
//! before the VM exists (sizes, counts, that the named files exist, that the
//! memory can hold the kernel). Must not touch: opening disks or network
//! backends, loading the kernel (the machine does; it may still find a file
//! bad). The reference is `docs/vm-config.md`.
//!
//! Every error names the file, the key as a dotted path (`disk[1].mode`) and
//! what to do. Paths in the file are relative to the file's directory.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use crate::layout::{LayoutError, MemoryLayout, MIB};

/// At most this many vCPUs (APIC IDs stay below 255, one xAPIC byte).
pub const MAX_CPUS: u32 = 64;
/// PCI bus 0 has 32 slots; the host bridge takes one.
pub const MAX_PCI_DEVICES: usize = 31;

/// A checked VM configuration. Paths are absolute or relative to the
/// current directory (resolved against the file's directory).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmConfig {
    /// The file this came from (for messages).
    pub file: PathBuf,
    /// Guest RAM in bytes (a valid [`MemoryLayout`] size).
    pub memory: u64,
    pub cpus: u32,
    pub boot: Boot,
    pub disks: Vec<Disk>,
    pub nets: Vec<Net>,
    /// At least one; at most one per device; at most one reads stdin.
    pub consoles: Vec<Console>,
    /// The guest-test device of `vmm-core` (ports 0xE00.., MMIO page
    /// 0xD000_0000), so `guest-tests/` guests run.
    pub test_device: bool,
    /// Stop the VM after this many exits (all vCPUs together); `None`: no limit.
    pub max_exits: Option<u64>,
    /// What an access to guest-physical memory where nothing is does.
    pub unmapped_mmio: UnmappedMmio,
    /// What a guest's reset of the machine does.
    pub on_reset: OnReset,
    /// Print the exit counters when the VM ends.
    pub print_exits: bool,
    /// The boot-milestone port (vmm-pc's `milestone`): a guest's write
    /// prints the time since the VMM started and the exits so far.
    pub milestones: bool,
}

/// What the machine does with a load or store where no RAM and no device is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnmappedMmio {
    /// As a PC: loads read all ones, stores are dropped (logged once per page).
    #[default]
    Ignore,
    /// The VM stops with the address and the access (the guest-test protocol's rule).
    Stop,
}

/// What the machine does when the guest resets it (reset register, keyboard
/// controller; `reboot`). A triple fault always stops the VM.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnReset {
    /// As a PC: the machine starts again (vCPUs, devices and the loaded
    /// images at their power-on state; disks keep what was written).
    #[default]
    Restart,
    /// The VM ends (exit status 1), as QEMU's `-no-reboot`.
    Exit,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Boot {
    /// A Linux bzImage with an optional initrd.
    Linux {
        kernel: PathBuf,
        initrd: Option<PathBuf>,
        cmdline: String,
    },
    /// A Multiboot v1 kernel with modules.
    Multiboot {
        kernel: PathBuf,
        cmdline: String,
        modules: Vec<Module>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    pub path: PathBuf,
    pub cmdline: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disk {
    pub path: PathBuf,
    pub mode: DiskMode,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DiskMode {
    /// The guest cannot write.
    ReadOnly,
    /// Guest writes go to an overlay in memory; the image is never written.
    CopyOnWrite,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Net {
    pub mac: [u8; 6],
    pub backend: NetBackend,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetBackend {
    /// A port on the user-level switch of this name (VMs on one switch see
    /// each other).
    Switch(String),
    /// A Linux tap interface (hosted only).
    Tap(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Console {
    pub device: ConsoleDevice,
    pub output: ConsoleOutput,
    /// This console gets the VMM's standard input.
    pub stdin: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConsoleDevice {
    /// A 16550 UART at 0x3f8, IRQ 4.
    Com1,
    /// A virtio-console PCI device.
    Virtio,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsoleOutput {
    Stdout,
    Stderr,
    File(PathBuf),
    Discard,
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read the VM configuration: {source}; check the path", file.display())]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: {}{message}; see docs/vm-config.md", file.display(), key_prefix(key))]
    Syntax {
        file: PathBuf,
        line: usize,
        column: usize,
        key: String,
        message: String,
    },
    #[error("{}: {key}: {problem}", file.display())]
    Invalid {
        file: PathBuf,
        key: String,
        problem: String,
    },
}

fn key_prefix(key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!("{key}: ")
    }
}

impl ConfigError {
    /// The dotted key the error is about ("" for the whole file).
    pub fn key(&self) -> &str {
        match self {
            ConfigError::Read { .. } => "",
            ConfigError::Syntax { key, .. } | ConfigError::Invalid { key, .. } => key,
        }
    }
}

// The file as written. Serde refuses unknown keys and wrong types; the
// checks that need more than one key are in `check`.

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawConfig {
    memory: Size,
    #[serde(default = "one")]
    cpus: u32,
    boot: RawBoot,
    #[serde(default)]
    disk: Vec<RawDisk>,
    #[serde(default)]
    net: Vec<RawNet>,
    #[serde(default)]
    console: Vec<RawConsole>,
    #[serde(default)]
    test_device: bool,
    max_exits: Option<u64>,
    #[serde(default)]
    unmapped_mmio: UnmappedMmio,
    #[serde(default)]
    on_reset: OnReset,
    #[serde(default = "yes")]
    print_exits: bool,
    #[serde(default)]
    milestones: bool,
}

fn one() -> u32 {
    1
}
fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawBoot {
    kernel: Option<String>,
    initrd: Option<String>,
    cmdline: Option<String>,
    multiboot: Option<String>,
    modules: Option<Vec<RawModule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModule {
    path: String,
    #[serde(default)]
    cmdline: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDisk {
    path: String,
    #[serde(default = "read_only")]
    mode: DiskMode,
}

fn read_only() -> DiskMode {
    DiskMode::ReadOnly
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNet {
    mac: Option<String>,
    backend: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConsole {
    device: ConsoleDevice,
    #[serde(default = "stdout")]
    output: String,
    #[serde(default)]
    stdin: bool,
}

fn stdout() -> String {
    "stdout".into()
}

/// A size in bytes: a TOML integer counts MiB, a string has a binary unit
/// ("512M", "5G", "5GiB").
struct Size(u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size like \"512M\" or \"5G\", or a whole number of MiB")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Size, E> {
                u64::try_from(v)
                    .ok()
                    .filter(|&v| v > 0)
                    .and_then(|v| v.checked_mul(MIB))
                    .map(Size)
                    .ok_or_else(|| E::custom(format!("{v} MiB is not a usable size")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Size, E> {
                parse_size(v).map(Size).map_err(E::custom)
            }
        }
        d.deserialize_any(SizeVisitor)
    }
}

/// "512M", "5G", "64KiB", "1T" (binary units) to bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        "" => {
            return Err(format!(
                "\"{text}\" has no unit: write K, M, G or T (binary), e.g. \"512M\", or a number of MiB without quotes"
            ))
        }
        _ => {
            return Err(format!(
                "\"{text}\" is not a size: write a whole number and K, M, G or T, e.g. \"512M\", \"1536M\" or \"5G\""
            ))
        }
    };
    let number: u64 = number.parse().map_err(|_| {
        format!("\"{text}\" is not a size: write a whole number and K, M, G or T, e.g. \"1536M\"")
    })?;
    number
        .checked_mul(1 << shift)
        .filter(|&bytes| bytes > 0)
        .ok_or_else(|| format!("\"{text}\" is not a usable size"))
}

impl VmConfig {
    /// Reads and checks the configuration file at `file`.
    pub fn load(file: &Path) -> Result<VmConfig, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
            file: file.to_owned(),
            source,
        })?;
        Self::parse(&text, file)
    }

    /// Checks `text` as the contents of `file` (which names it in errors and
    /// anchors its relative paths; the files it names must exist).
    pub fn parse(text: &str, file: &Path) -> Result<VmConfig, ConfigError> {
        let raw = deserialize(text, file)?;
        Checker { file }.check(raw)
    }

    /// The memory map of this VM.
    pub fn layout(&self) -> MemoryLayout {
        MemoryLayout::new(self.memory).expect("checked when the configuration was read")
    }
}

fn deserialize(text: &str, file: &Path) -> Result<RawConfig, ConfigError> {
    let syntax = |error: toml::de::Error, key: String| {
        let (line, column) = error
            .span()
            .map(|span| line_column(text, span.start))
            .unwrap_or((1, 1));
        ConfigError::Syntax {
            file: file.to_owned(),
            line,
            column,
            key,
            message: error.message().trim().to_owned(),
        }
    };
    let deserializer = toml::Deserializer::parse(text).map_err(|e| syntax(e, String::new()))?;
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let mut key = e.path().to_string();
        if key == "." {
            key.clear();
        }
        let error = e.into_inner();
        // A missing key is reported at its table; name the key itself.
        if let Some(field) = missing_field(error.message()) {
            key = if key.is_empty() {
                field.to_owned()
            } else {
                format!("{key}.{field}")
            };
        }
        syntax(error, key)
    })
}

fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.split('`').next()
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

struct Checker<'a> {
    file: &'a Path,
}

impl Checker<'_> {
    fn invalid(&self, key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_owned(),
            key: key.into(),
            problem: problem.into(),
        }
    }

    fn check(&self, raw: RawConfig) -> Result<VmConfig, ConfigError> {
        let memory = raw.memory.0;
        MemoryLayout::new(memory).map_err(|e| {
            let what = match e {
                LayoutError::TooSmall { .. } => "raise it",
                LayoutError::TooLarge { .. } => "lower it",
                LayoutError::Unaligned { .. } => "e.g. \"512M\" or \"5G\"",
            };
            self.invalid("memory", format!("{e} ({what})"))
        })?;
        if raw.cpus == 0 || raw.cpus > MAX_CPUS {
            return Err(self.invalid(
                "cpus",
                format!(
                    "{} vCPUs: a VM has 1 to {MAX_CPUS} vCPUs; pick a number in that range",
                    raw.cpus
                ),
            ));
        }
        if raw.max_exits == Some(0) {
            return Err(self.invalid(
                "max-exits",
                "0 would stop the VM at its first exit; leave the key out for no limit",
            ));
        }
        let boot = self.boot(raw.boot, memory)?;
        let disks = raw
            .disk
            .into_iter()
            .enumerate()
            .map(|(i, d)| {
                Ok(Disk {
                    path: self.existing_file(&format!("disk[{i}].path"), &d.path)?.0,
                    mode: d.mode,
                })
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        let nets = raw
            .net
            .into_iter()
            .enumerate()
            .map(|(i, n)| self.net(i, n))
            .collect::<Result<Vec<_>, _>>()?;
        let consoles = self.consoles(raw.console)?;
        let virtio_consoles = consoles
            .iter()
            .filter(|c| c.device == ConsoleDevice::Virtio)
            .count();
        let pci_devices = disks.len() + nets.len() + virtio_consoles;
        if pci_devices > MAX_PCI_DEVICES {
            return Err(self.invalid(
                "disk",
                format!(
                    "{pci_devices} PCI devices (disks, network ports, virtio consoles): bus 0 holds at most {MAX_PCI_DEVICES}; remove some"
                ),
            ));
        }
        Ok(VmConfig {
            file: self.file.to_owned(),
            memory,
            cpus: raw.cpus,
            boot,
            disks,
            nets,
            consoles,
            test_device: raw.test_device,
            max_exits: raw.max_exits,
            unmapped_mmio: raw.unmapped_mmio,
            on_reset: raw.on_reset,
            print_exits: raw.print_exits,
            milestones: raw.milestones,
        })
    }

    /// `path` resolved against the configuration's directory, checked to be
    /// an existing file; with its size.
    fn existing_file(&self, key: &str, path: &str) -> Result<(PathBuf, u64), ConfigError> {
        if path.is_empty() {
            return Err(self.invalid(key, "is empty: name a file"));
        }
        let resolved = self.resolve(path);
        match std::fs::metadata(&resolved) {
            Ok(m) if m.is_file() && m.len() == 0 => Err(self.invalid(
                key,
                format!("{} is empty; name the right file", resolved.display()),
            )),
            Ok(m) if m.is_file() => Ok((resolved, m.len())),
            Ok(_) => Err(self.invalid(
                key,
                format!("{} is not a file; name a file", resolved.display()),
            )),
            Err(e) => Err(self.invalid(
                key,
                format!(
                    "{}: {e}; paths are relative to the configuration file's directory",
                    resolved.display()
                ),
            )),
        }
    }

    fn resolve(&self, path: &str) -> PathBuf {
        let dir = self.file.parent().unwrap_or(Path::new(""));
        dir.join(path)
    }

    fn boot(&self, raw: RawBoot, memory: u64) -> Result<Boot, ConfigError> {
        let low_ram = memory.min(crate::layout::LOW_RAM_MAX);
        match (raw.kernel, raw.multiboot) {
            (Some(_), Some(_)) => Err(self.invalid(
                "boot",
                "has both `kernel` (Linux) and `multiboot`: keep one of them",
            )),
            (None, None) => Err(self.invalid(
                "boot",
                "names no kernel: add `kernel = \"bzImage\"` (Linux) or `multiboot = \"kernel.elf\"`",
            )),
            (Some(kernel), None) => {
                if raw.modules.is_some() {
                    return Err(self.invalid(
                        "boot.modules",
                        "modules are for Multiboot kernels; give Linux an `initrd` instead",
                    ));
                }
                let (kernel, kernel_size) = self.existing_file("boot.kernel", &kernel)?;
                let (initrd, initrd_size) = match raw.initrd {
                    Some(initrd) => {
                        let (path, size) = self.existing_file("boot.initrd", &initrd)?;
                        (Some(path), size)
                    }
                    None => (None, 0),
                };
                let needed = linux_memory_estimate(kernel_size, initrd_size);
                if needed > low_ram {
                    return Err(self.invalid(
                        "memory",
                        format!(
                            "{} MiB is too small for this kernel ({} KiB) and initrd ({} KiB): Linux needs about {} MiB to unpack them and run; raise memory",
                            memory / MIB,
                            kernel_size >> 10,
                            initrd_size >> 10,
                            needed.div_ceil(MIB)
                        ),
                    ));
                }
                Ok(Boot::Linux {
                    kernel,
                    initrd,
                    cmdline: raw.cmdline.unwrap_or_default(),
                })
            }
            (None, Some(kernel)) => {
                if raw.initrd.is_some() {
                    return Err(self.invalid(
                        "boot.initrd",
                        "an initrd is for Linux kernels; give a Multiboot kernel `modules` instead",
                    ));
                }
                let (kernel, mut total) = self.existing_file("boot.multiboot", &kernel)?;
                let mut modules = Vec::new();
                for (i, m) in raw.modules.unwrap_or_default().into_iter().enumerate() {
                    let (path, size) =
                        self.existing_file(&format!("boot.modules[{i}].path"), &m.path)?;
                    total += size;
                    modules.push(Module {
                        path,
                        cmdline: m.cmdline,
                    });
                }
                // Everything is loaded above 1 MiB, below the PCI hole.
                if total + MIB > low_ram {
                    return Err(self.invalid(
                        "memory",
                        format!(
                            "{} MiB cannot hold the kernel and modules ({} KiB) above 1 MiB; raise memory",
                            memory / MIB,
                            total >> 10
                        ),
                    ));
                }
                Ok(Boot::Multiboot {
                    kernel,
                    cmdline: raw.cmdline.unwrap_or_default(),
                    modules,
                })
            }
        }
    }

    fn net(&self, index: usize, raw: RawNet) -> Result<Net, ConfigError> {
        let key = |k: &str| format!("net[{index}].{k}");
        let mac = match raw.mac {
            Some(text) => parse_mac(&text).map_err(|p| self.invalid(key("mac"), p))?,
            None => default_mac(self.file, index),
        };
        let backend = match raw.backend.split_once(':') {
            Some(("switch", name)) if valid_name(name, 32) => NetBackend::Switch(name.into()),
            Some(("tap", name)) if valid_name(name, 15) => NetBackend::Tap(name.into()),
            Some(("switch", _)) | Some(("tap", _)) => {
                return Err(self.invalid(
                    key("backend"),
                    format!(
                        "\"{}\": the name after the colon must be 1 to 32 (tap: 15) letters, digits, '-', '_' or '.'",
                        raw.backend
                    ),
                ))
            }
            _ => {
                return Err(self.invalid(
                    key("backend"),
                    format!(
                        "\"{}\" is not a backend: write \"switch:NAME\" (VMs on one switch see each other) or \"tap:IFNAME\" (Linux host only)",
                        raw.backend
                    ),
                ))
            }
        };
        Ok(Net { mac, backend })
    }

    fn consoles(&self, raw: Vec<RawConsole>) -> Result<Vec<Console>, ConfigError> {
        if raw.is_empty() {
            return Ok(vec![Console {
                device: ConsoleDevice::Com1,
                output: ConsoleOutput::Stdout,
                stdin: true,
            }]);
        }
        let mut consoles: Vec<Console> = Vec::new();
        for (i, c) in raw.into_iter().enumerate() {
            if consoles.iter().any(|other| other.device == c.device) {
                return Err(self.invalid(
                    format!("console[{i}].device"),
                    format!(
                        "a second {:?} console: a VM has at most one of each device; remove one",
                        c.device
                    ),
                ));
            }
            if c.stdin && consoles.iter().any(|other| other.stdin) {
                return Err(self.invalid(
                    format!("console[{i}].stdin"),
                    "only one console can read standard input; set `stdin = true` on one",
                ));
            }
            let output = match c.output.as_str() {
                "stdout" => ConsoleOutput::Stdout,
                "stderr" => ConsoleOutput::Stderr,
                "none" => ConsoleOutput::Discard,
                other => match other.strip_prefix("file:") {
                    Some(path) if !path.is_empty() => ConsoleOutput::File(self.resolve(path)),
                    _ => {
                        return Err(self.invalid(
                            format!("console[{i}].output"),
                            format!(
                                "\"{other}\" is not an output: write \"stdout\", \"stderr\", \"none\" or \"file:PATH\""
                            ),
                        ))
                    }
                },
            };
            consoles.push(Console {
                device: c.device,
                output,
                stdin: c.stdin,
            });
        }
        Ok(consoles)
    }
}

/// A lower bound of the RAM a Linux guest needs: the kernel decompressed
/// (bzImages compress about 4:1), the initrd and its unpacked files (about
/// 3:1 for gzip/xz cpio archives, counted with the archive), and 32 MiB to
/// run.
pub fn linux_memory_estimate(kernel_size: u64, initrd_size: u64) -> u64 {
    kernel_size * 4 + initrd_size * 4 + 32 * MIB
}

fn valid_name(name: &str, max: usize) -> bool {
    (1..=max).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn parse_mac(text: &str) -> Result<[u8; 6], String> {
    let bad = || {
        format!("\"{text}\" is not a MAC address: write six hex bytes like \"52:54:00:12:34:56\"")
    };
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        let part = parts.next().ok_or_else(bad)?;
        if part.len() != 2 {
            return Err(bad());
        }
        *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
    }
    if parts.next().is_some() {
        return Err(bad());
    }
    if mac[0] & 1 != 0 {
        return Err(format!(
            "\"{text}\" is a multicast address (lowest bit of the first byte set): a port needs a unicast one, e.g. \"52:54:00:12:34:56\""
        ));
    }
    Ok(mac)
}

/// A locally administered MAC from the configuration file's path and the
/// port's index (FNV-1a), so two VMs with different files differ.
fn default_mac(file: &Path, index: usize) -> [u8; 6] {
    let absolute = std::path::absolute(file).unwrap_or_else(|_| file.to_owned());
    let mut hash: u32 = 0x811c_9dc5;
    let bytes = absolute.to_string_lossy();
    for b in bytes.bytes().chain((index as u32).to_le_bytes()) {
        hash = (hash ^ b as u32).wrapping_mul(0x0100_0193);
    }
    let [a, b, c, _] = hash.to_be_bytes();
    [0x52, 0x54, 0x00, a, b, c]
}

#[cfg(test)]
mod tests;
