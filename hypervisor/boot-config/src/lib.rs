//! The boot configuration: which components the roottask starts, and with
//! which resources.
//!
//! Owns: reading the `config` boot module into a checked [`BootConfig`].
//! Two layers: [`document`] reads the TOML subset into a generic tree (and
//! knows nothing about components); [`parse`] checks that tree against the
//! schema below and the cross-component rules. Must not touch: boot modules
//! or kernel objects — starting components is the roottask's job.
//!
//! # Format
//!
//! A subset of TOML. One `key = value` per line; `#` starts a comment;
//! `[[component]]` starts a new component. Values are:
//!
//! * strings in double quotes, with the escapes `\"` `\\` `\n` `\t`;
//! * integers, decimal (`4096`) or hexadecimal (`0x1000`), `_` allowed
//!   between digits (`1_048_576`); no negative numbers;
//! * booleans `true` and `false`;
//! * arrays `[ ... ]` of strings or integers; they may span lines and may
//!   end with a trailing comma.
//!
//! Top-level keys (before the first `[[component]]`):
//!
//! | key       | type    | default | meaning                            |
//! |-----------|---------|---------|------------------------------------|
//! | `verbose` | boolean | `false` | the roottask logs what it does     |
//! | `terminal` | string | none   | component that reads the console's input |
//!
//! Keys of each `[[component]]`:
//!
//! | key        | type                 | default | meaning |
//! |------------|----------------------|---------|---------|
//! | `name`     | string, required     |         | unique; `[a-z0-9_-]`, 1 to 32 characters |
//! | `binary`   | string               | `name`  | boot module holding the program |
//! | `memory`   | integer or string, required | | memory quota in bytes, or with a `K`/`M`/`G` suffix (`"4M"`); a positive multiple of 4 KiB |
//! | `cpu`      | integer              | `0`     | CPU its threads run on |
//! | `priority` | integer              | `10`    | scheduling priority, 1 to 255 |
//! | `args`     | array of strings     | `[]`    | program arguments |
//! | `provides` | array of strings     | `[]`    | services it may register with the roottask |
//! | `uses`     | array of strings     | `[]`    | services it may ask for |
//! | `ioports`  | array of strings or integers | `[]` | I/O ports it is granted: `"0x40-0x43"` (inclusive), `"0x61"` or `0x61`; at most `0xffff` |
//! | `irqs`     | array of integers    | `[]`    | interrupt lines (GSIs, below 256) whose semaphores it gets |
//! | `kind`     | string               | `"native"` | `"native"`: a Tern program; `"linux"`: a static x86_64 Linux program (e.g. Rust std built for `x86_64-unknown-linux-musl`) run by the `posix-server` boot module, which serves its system calls |
//! | `cpus`     | array of integers    | `[cpu]` | CPUs its threads may run on (new threads are spread over them) |
//! | `env`      | array of strings     | `[]`    | environment of a `linux` program, each `"NAME=value"` |
//! | `vfs`      | array of strings     | `[]`    | the file system of a `linux` program: lines `"PATH = KIND [ARGS]"` (see docs/components.md) |
//! | `stdin`, `stdout`, `stderr` | string | `/dev/null`, `/dev/log`, `/dev/log` | what file descriptors 0, 1 and 2 of a `linux` program open |
//! | `after`    | string               | none    | start only after the named component has ended (exited or crashed) |
//!
//! Top-level `terminal = "NAME"` connects the console's input to that component.
//!
//! Service names follow the rules for component names. Checked across
//! components: names are unique; every service a component `uses` is
//! provided by some component; no service has two providers. Within a
//! component, `provides`, `uses` and `irqs` list nothing twice and
//! `ioports` ranges do not overlap. Not checked: the same ports or IRQs
//! granted to two components (shared hardware is the system builder's
//! decision), and whether `cpu` exists on the machine.
//!
//! Unknown keys, duplicate keys and wrong types are errors. Every error
//! names the line, the key and what to write instead.
//!
//! ```toml
//! verbose = true
//!
//! [[component]]
//! name = "pong"
//! binary = "ipc-pong"
//! memory = "4M"
//! args = ["--calls", "10000"]
//! provides = ["echo"]
//! ioports = ["0x40-0x43", "0x61"]
//! irqs = [0]
//! ```

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod document;

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use document::{Entry, Item, Spanned, Table, Value};

/// The whole boot configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BootConfig {
    pub verbose: bool,
    /// The component that gets the console's input.
    pub terminal: Option<String>,
    pub components: Vec<Component>,
}

/// One component the roottask starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Component {
    pub name: String,
    pub binary: String,
    /// Memory quota in bytes; a positive multiple of 4096.
    pub memory: u64,
    pub cpu: u32,
    pub priority: u8,
    pub args: Vec<String>,
    pub provides: Vec<String>,
    pub uses: Vec<String>,
    pub ioports: Vec<PortRange>,
    pub irqs: Vec<u8>,
    pub kind: Kind,
    /// CPUs its threads may run on (never empty; the first is `cpu`'s default).
    pub cpus: Vec<u32>,
    pub env: Vec<String>,
    pub vfs: Vec<String>,
    pub stdio: [String; 3],
    /// Start only once this component has ended.
    pub after: Option<String>,
}

/// What kind of program a component runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A native Tern program (its boot module is started directly).
    Native,
    /// A static Linux program, run by the `posix-server` boot module.
    Linux,
}

/// An inclusive range of I/O ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

/// A configuration error: where, which key, and what to do about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// 1-based line (for invalid UTF-8: the line the bad byte is on).
    pub line: usize,
    /// 1-based column, for syntax errors.
    pub column: Option<usize>,
    /// The key the error is about, if any.
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}", self.line)?;
        if let Some(column) = self.column {
            write!(f, ", column {column}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": key \"{key}\"")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Memory granularity: quotas are multiples of this.
pub const PAGE_SIZE: u64 = 4096;
/// Longest component or service name.
pub const MAX_NAME_LEN: usize = 32;
const DEFAULT_PRIORITY: u8 = 10;
const TOP_KEYS: &str = "verbose, terminal, [[component]]";
const COMPONENT_KEYS: &str = "name, binary, memory, cpu, priority, args, provides, uses, \
     ioports, irqs, kind, cpus, env, vfs, stdin, stdout, stderr, after";

/// Parses a configuration held as bytes, reporting invalid UTF-8 with its
/// byte offset.
pub fn parse_bytes(bytes: &[u8]) -> Result<BootConfig, ConfigError> {
    match core::str::from_utf8(bytes) {
        Ok(text) => parse(text),
        Err(e) => {
            let offset = e.valid_up_to();
            let line = 1 + bytes
                .get(..offset)
                .map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count());
            Err(ConfigError {
                line,
                column: None,
                key: None,
                message: format!(
                    "invalid UTF-8 at byte offset {offset}; save the file as UTF-8 text"
                ),
            })
        }
    }
}

/// Parses and checks a configuration.
pub fn parse(text: &str) -> Result<BootConfig, ConfigError> {
    let root = document::read(text).map_err(|e| ConfigError {
        line: e.pos.line,
        column: Some(e.pos.column),
        key: None,
        message: e.message,
    })?;
    let mut config = BootConfig::default();
    let mut lines = Vec::new();
    let mut terminal_line = 0;
    for (key, entry) in root.entries_in_order() {
        match key {
            "verbose" => config.verbose = as_bool(key, entry)?,
            "terminal" => {
                let name = checked_name(key, entry, as_str(key, entry)?, "component")?;
                config.terminal = Some(name);
                terminal_line = entry.pos.line;
            }
            "component" => {
                let Item::Array(tables) = &entry.item else {
                    return Err(error(
                        entry.pos.line,
                        key,
                        format!(
                            "is {}; components are written as [[component]] sections",
                            entry.item.kind()
                        ),
                    ));
                };
                for table in tables {
                    let (component, component_lines) = component(table)?;
                    config.components.push(component);
                    lines.push(component_lines);
                }
            }
            _ => {
                return Err(error(
                    entry.pos.line,
                    key,
                    format!("unknown top-level key (known keys: {TOP_KEYS})"),
                ))
            }
        }
    }
    check_across(&config.components, &lines)?;
    if let Some(t) = &config.terminal {
        if !config.components.iter().any(|c| &c.name == t) {
            return Err(error(
                terminal_line,
                "terminal",
                format!("names component \"{t}\", which the configuration does not have"),
            ));
        }
    }
    Ok(config)
}

/// Lines of a component's keys, for errors found across components.
#[derive(Default)]
struct Lines {
    header: usize,
    name: usize,
    provides: usize,
    uses: usize,
    after: usize,
}

fn error(line: usize, key: &str, message: String) -> ConfigError {
    ConfigError {
        line,
        column: None,
        key: Some(key.to_string()),
        message,
    }
}

fn component(table: &Table) -> Result<(Component, Lines), ConfigError> {
    let mut lines = Lines {
        header: table.pos.line,
        ..Lines::default()
    };
    let mut name = None;
    let mut binary = None;
    let mut memory = None;
    let mut cpu_line = None;
    let mut c = Component {
        name: String::new(),
        binary: String::new(),
        memory: 0,
        cpu: 0,
        priority: DEFAULT_PRIORITY,
        args: Vec::new(),
        provides: Vec::new(),
        uses: Vec::new(),
        ioports: Vec::new(),
        irqs: Vec::new(),
        kind: Kind::Native,
        cpus: Vec::new(),
        env: Vec::new(),
        vfs: Vec::new(),
        stdio: [
            "/dev/null".to_string(),
            "/dev/log".to_string(),
            "/dev/log".to_string(),
        ],
        after: None,
    };
    for (key, entry) in table.entries_in_order() {
        let line = entry.pos.line;
        match key {
            "name" => {
                lines.name = line;
                name = Some(checked_name(key, entry, as_str(key, entry)?, "component")?);
            }
            "binary" => {
                let b = as_str(key, entry)?;
                if b.is_empty() || b.chars().any(char::is_control) {
                    return Err(error(
                        line,
                        key,
                        "must name a boot module: not empty, no control characters".to_string(),
                    ));
                }
                binary = Some(b.to_string());
            }
            "memory" => memory = Some(memory_size(key, entry)?),
            "cpu" => {
                cpu_line = Some(line);
                let v = as_int(key, entry)?;
                c.cpu = u32::try_from(v).map_err(|_| {
                    error(
                        line,
                        key,
                        format!("{v} is not a CPU number (at most {})", u32::MAX),
                    )
                })?;
            }
            "priority" => {
                let v = as_int(key, entry)?;
                c.priority = u8::try_from(v)
                    .ok()
                    .filter(|&p| p >= 1)
                    .ok_or_else(|| error(line, key, format!("{v} is not in 1..=255")))?;
            }
            "args" => {
                c.args = string_array(key, entry)?
                    .into_iter()
                    .map(|(s, _)| s.to_string())
                    .collect();
            }
            "provides" | "uses" => {
                let mut names: Vec<String> = Vec::new();
                let mut seen = BTreeSet::new();
                for (s, _) in string_array(key, entry)? {
                    let s = checked_name(key, entry, s, "service")?;
                    if !seen.insert(s.clone()) {
                        return Err(error(line, key, format!("lists service \"{s}\" twice")));
                    }
                    names.push(s);
                }
                if key == "provides" {
                    lines.provides = line;
                    c.provides = names;
                } else {
                    lines.uses = line;
                    c.uses = names;
                }
            }
            "ioports" => c.ioports = ioports(key, entry)?,
            "irqs" => c.irqs = irqs(key, entry)?,
            "kind" => {
                c.kind = match as_str(key, entry)? {
                    "native" => Kind::Native,
                    "linux" => Kind::Linux,
                    other => {
                        return Err(error(
                            line,
                            key,
                            format!("\"{other}\" is not a kind; write \"native\" or \"linux\""),
                        ))
                    }
                }
            }
            "cpus" => {
                let mut cpus = Vec::new();
                for v in int_array(key, entry)? {
                    let cpu = u32::try_from(v).ok().filter(|&c| c < 64).ok_or_else(|| {
                        error(line, key, format!("{v} is not a CPU number below 64"))
                    })?;
                    if cpus.contains(&cpu) {
                        return Err(error(line, key, format!("lists CPU {cpu} twice")));
                    }
                    cpus.push(cpu);
                }
                if cpus.is_empty() {
                    return Err(error(
                        line,
                        key,
                        "lists no CPU; leave it out to use `cpu`".to_string(),
                    ));
                }
                c.cpus = cpus;
            }
            "env" => {
                for (s, _) in string_array(key, entry)? {
                    match s.split_once('=') {
                        Some((n, _)) if !n.is_empty() && !n.contains('\0') && !s.contains('\0') => {
                            c.env.push(s.to_string())
                        }
                        _ => return Err(error(line, key, format!("\"{s}\" is not NAME=value"))),
                    }
                }
            }
            "vfs" => {
                c.vfs = string_array(key, entry)?
                    .into_iter()
                    .map(|(s, _)| s.to_string())
                    .collect();
            }
            "stdin" | "stdout" | "stderr" => {
                let path = as_str(key, entry)?;
                if !path.starts_with('/') {
                    return Err(error(
                        line,
                        key,
                        format!("\"{path}\" is not an absolute path"),
                    ));
                }
                let i = ["stdin", "stdout", "stderr"]
                    .iter()
                    .position(|k| *k == key)
                    .unwrap_or(0);
                c.stdio[i] = path.to_string();
            }
            "after" => {
                c.after = Some(checked_name(key, entry, as_str(key, entry)?, "component")?);
                lines.after = line;
            }
            _ => {
                let hint = match &entry.item {
                    Item::Value(_) if key == "verbose" => {
                        " (top-level keys go before the first [[component]])".to_string()
                    }
                    Item::Value(_) => String::new(),
                    other => format!(" (it is {}; no sub-sections are defined yet)", other.kind()),
                };
                return Err(error(
                    line,
                    key,
                    format!("unknown component key{hint} (known keys: {COMPONENT_KEYS})"),
                ));
            }
        }
    }
    let missing = |key: &str, example: &str| {
        error(
            lines.header,
            key,
            format!("component is missing required key \"{key}\" (add e.g. {key} = {example})"),
        )
    };
    c.name = name.ok_or_else(|| missing("name", "\"pong\""))?;
    c.memory = memory.ok_or_else(|| missing("memory", "\"4M\""))?;
    c.binary = binary.unwrap_or_else(|| c.name.clone());
    if c.cpus.is_empty() {
        c.cpus.push(c.cpu);
    } else if let Some(line) = cpu_line.filter(|_| !c.cpus.contains(&c.cpu)) {
        return Err(error(
            line,
            "cpu",
            format!(
                "CPU {} is not among `cpus`; add it there or leave `cpu` out",
                c.cpu
            ),
        ));
    } else if cpu_line.is_none() {
        c.cpu = c.cpus[0];
    }
    let linux_only = [(!c.env.is_empty(), "env"), (!c.vfs.is_empty(), "vfs")];
    if c.kind == Kind::Native {
        if let Some((_, key)) = linux_only.iter().find(|(set, _)| *set) {
            return Err(error(
                lines.header,
                key,
                "applies to kind = \"linux\" components only".to_string(),
            ));
        }
    }
    Ok((c, lines))
}

fn check_across(components: &[Component], lines: &[Lines]) -> Result<(), ConfigError> {
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    let mut providers: BTreeMap<&str, &str> = BTreeMap::new();
    for (c, l) in components.iter().zip(lines) {
        if let Some(first) = names.insert(&c.name, l.name) {
            return Err(error(
                l.name,
                "name",
                format!(
                    "component name \"{}\" is already used by the component on line {first}; \
                     names must be unique",
                    c.name
                ),
            ));
        }
        for service in &c.provides {
            if let Some(other) = providers.insert(service, &c.name) {
                return Err(error(
                    l.provides,
                    "provides",
                    format!(
                        "service \"{service}\" is provided by both {other} and {}; \
                         only one component may provide a service",
                        c.name
                    ),
                ));
            }
        }
    }
    for (c, l) in components.iter().zip(lines) {
        if let Some(after) = &c.after {
            if !names.contains_key(after.as_str()) || after == &c.name {
                return Err(error(
                    l.after,
                    "after",
                    format!(
                        "names \"{after}\", which is not another component of this configuration"
                    ),
                ));
            }
        }
        if let Some(service) = c.uses.iter().find(|s| !providers.contains_key(s.as_str())) {
            return Err(error(
                l.uses,
                "uses",
                format!(
                    "component {} uses service \"{service}\" but no component provides it",
                    c.name
                ),
            ));
        }
    }
    Ok(())
}

// ---- typed accessors ---------------------------------------------------

fn value<'d>(key: &str, entry: &'d Entry) -> Result<&'d Spanned, ConfigError> {
    match &entry.item {
        Item::Value(v) => Ok(v),
        other => Err(error(
            entry.pos.line,
            key,
            format!("expected a value, found {}", other.kind()),
        )),
    }
}

fn wrong_type(key: &str, entry: &Entry, expected: &str, found: &Value) -> ConfigError {
    error(
        entry.pos.line,
        key,
        format!("expected {expected}, found {}", found.kind()),
    )
}

fn as_bool(key: &str, entry: &Entry) -> Result<bool, ConfigError> {
    match &value(key, entry)?.value {
        Value::Bool(b) => Ok(*b),
        other => Err(wrong_type(key, entry, "true or false", other)),
    }
}

fn as_int(key: &str, entry: &Entry) -> Result<u64, ConfigError> {
    match &value(key, entry)?.value {
        Value::Integer(i) => Ok(*i),
        other => Err(wrong_type(key, entry, "an integer", other)),
    }
}

fn as_str<'d>(key: &str, entry: &'d Entry) -> Result<&'d str, ConfigError> {
    match &value(key, entry)?.value {
        Value::String(s) => Ok(s),
        other => Err(wrong_type(key, entry, "a string in double quotes", other)),
    }
}

fn as_array<'d>(key: &str, entry: &'d Entry) -> Result<&'d [Spanned], ConfigError> {
    match &value(key, entry)?.value {
        Value::Array(items) => Ok(items),
        other => Err(wrong_type(key, entry, "an array [ ... ]", other)),
    }
}

/// Strings of an array, each with its line.
fn string_array<'d>(key: &str, entry: &'d Entry) -> Result<Vec<(&'d str, usize)>, ConfigError> {
    as_array(key, entry)?
        .iter()
        .map(|item| match &item.value {
            Value::String(s) => Ok((s.as_str(), item.pos.line)),
            other => Err(error(
                item.pos.line,
                key,
                format!("array elements must be strings, found {}", other.kind()),
            )),
        })
        .collect()
}

/// A component or service name: `[a-z0-9_-]`, 1..=32 characters.
fn checked_name(key: &str, entry: &Entry, name: &str, what: &str) -> Result<String, ConfigError> {
    let valid = (1..=MAX_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if valid {
        Ok(name.to_string())
    } else {
        Err(error(
            entry.pos.line,
            key,
            format!(
                "{name:?} is not a valid {what} name (use 1 to {MAX_NAME_LEN} characters \
                 from a-z, 0-9, _ and -)"
            ),
        ))
    }
}

fn memory_size(key: &str, entry: &Entry) -> Result<u64, ConfigError> {
    let line = entry.pos.line;
    let bytes = match &value(key, entry)?.value {
        Value::Integer(i) => *i,
        Value::String(s) => parse_size(s).ok_or_else(|| {
            error(
                line,
                key,
                format!("{s:?} is not a size (use bytes or a K/M/G suffix, e.g. \"4M\")"),
            )
        })?,
        other => {
            return Err(wrong_type(
                key,
                entry,
                "a size: bytes as an integer, or a string like \"4M\"",
                other,
            ))
        }
    };
    if bytes == 0 || bytes % PAGE_SIZE != 0 {
        return Err(error(
            line,
            key,
            format!("{bytes} bytes is not a positive multiple of the 4 KiB page size"),
        ));
    }
    Ok(bytes)
}

/// `"4096"`, `"0x1000"`, `"64K"`, `"4M"`, `"1G"` (binary units).
fn parse_size(s: &str) -> Option<u64> {
    let (digits, unit) = match s.char_indices().last()? {
        (i, 'K' | 'k') => (s.get(..i)?, 1u64 << 10),
        (i, 'M' | 'm') => (s.get(..i)?, 1 << 20),
        (i, 'G' | 'g') => (s.get(..i)?, 1 << 30),
        _ => (s, 1),
    };
    document::parse_integer(digits).ok()?.checked_mul(unit)
}

fn ioports(key: &str, entry: &Entry) -> Result<Vec<PortRange>, ConfigError> {
    let mut ranges: Vec<(PortRange, usize)> = Vec::new();
    for item in as_array(key, entry)? {
        let line = item.pos.line;
        let bad = |text: &str| {
            error(
                line,
                key,
                format!(
                    "{text} is not a port range (write \"0x40-0x43\" for an inclusive range \
                     or \"0x61\" for one port; ports are at most 0xffff)"
                ),
            )
        };
        let port = |s: &str| {
            document::parse_integer(s.trim())
                .ok()
                .and_then(|p| u16::try_from(p).ok())
                .ok_or_else(|| bad(&format!("{s:?}")))
        };
        let range = match &item.value {
            Value::Integer(p) => {
                let p = u16::try_from(*p).map_err(|_| bad(&format!("{p:#x}")))?;
                PortRange { first: p, last: p }
            }
            Value::String(s) => match s.split_once('-') {
                Some((a, b)) => PortRange {
                    first: port(a).map_err(|_| bad(&format!("{s:?}")))?,
                    last: port(b).map_err(|_| bad(&format!("{s:?}")))?,
                },
                None => {
                    let p = port(s)?;
                    PortRange { first: p, last: p }
                }
            },
            other => return Err(bad(other.kind())),
        };
        if range.first > range.last {
            return Err(error(
                line,
                key,
                format!(
                    "range {:#x}-{:#x} is backwards (write the lower port first)",
                    range.first, range.last
                ),
            ));
        }
        ranges.push((range, line));
    }
    // Overlaps show up between neighbours once sorted.
    let mut sorted = ranges.clone();
    sorted.sort_by_key(|(r, _)| (r.first, r.last));
    let overlap = sorted.windows(2).find_map(|pair| match *pair {
        [a, b] if b.0.first <= a.0.last => Some((a, b)),
        _ => None,
    });
    if let Some(((a, a_line), (b, b_line))) = overlap {
        return Err(error(
            a_line.max(b_line),
            key,
            format!(
                "{:#x}-{:#x} overlaps {:#x}-{:#x}; list each port once",
                a.first, a.last, b.first, b.last
            ),
        ));
    }
    Ok(ranges.into_iter().map(|(r, _)| r).collect())
}

fn irqs(key: &str, entry: &Entry) -> Result<Vec<u8>, ConfigError> {
    let mut out: Vec<u8> = Vec::new();
    for item in as_array(key, entry)? {
        let line = item.pos.line;
        let irq = match &item.value {
            Value::Integer(i) => u8::try_from(*i)
                .map_err(|_| error(line, key, format!("{i} is not an interrupt line below 256")))?,
            other => {
                return Err(error(
                    line,
                    key,
                    format!(
                        "expected interrupt numbers (integers), found {}",
                        other.kind()
                    ),
                ))
            }
        };
        if out.contains(&irq) {
            return Err(error(line, key, format!("lists interrupt {irq} twice")));
        }
        out.push(irq);
    }
    Ok(out)
}

fn int_array(key: &str, entry: &Entry) -> Result<Vec<u64>, ConfigError> {
    as_array(key, entry)?
        .iter()
        .map(|item| match &item.value {
            Value::Integer(i) => Ok(*i),
            other => Err(error(
                item.pos.line,
                key,
                format!("expected integers, found {}", other.kind()),
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests;
