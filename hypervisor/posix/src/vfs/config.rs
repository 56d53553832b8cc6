//! The file system configuration: one line per node or setting.
//!
//! Owns: reading the text into checked [`Line`]s and naming what is wrong
//! with a line ([`VfsConfigError`]). Must not touch: the tree — checks that
//! need the tree (duplicates, a file used as a directory) are made while the
//! tree is built, and report through the same error type.
//!
//! # Format
//!
//! ```text
//! # comment
//! /dev/log      = log
//! /dev/null     = null
//! /dev/zero     = zero
//! /dev/console  = terminal
//! /boot/linux   = rom bzImage        # the boot module named bzImage
//! /rom          = rom *              # every boot module, by name
//! /etc/motd     = inline Hello,\nworld\n
//! /tmp          = ram 16M            # writable, at most 16 MiB
//! /data         = dir
//! stdin  = /dev/console
//! stdout = /dev/log
//! stderr = /dev/log
//! cwd    = /tmp
//! ```
//!
//! A line is `PATH = KIND [ARGS]` (PATH absolute) or `SETTING = PATH` for the
//! settings `stdin`, `stdout`, `stderr` and `cwd`. Blank lines and lines
//! starting with `#` are ignored, as is a ` #` comment after the value
//! (except in `inline` text, which runs to the end of the line; it knows the
//! escapes `\n`, `\t`, `\\` and `\#`). Parent directories are created
//! implicitly. `ram` sizes are bytes with an optional `K`, `M` or `G` suffix
//! ([`DEFAULT_RAM_SIZE`] when omitted). Nothing may be configured inside a
//! `ram` directory.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use super::path::{Path, NAME_MAX};

/// Size limit of a `ram` directory without a size: 1 MiB.
pub const DEFAULT_RAM_SIZE: u64 = 1 << 20;

/// What a configuration line makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    Log,
    Null,
    Zero,
    Terminal,
    /// One boot module, by name.
    Rom(String),
    /// Every boot module, as files of this directory.
    AllRoms,
    Inline(Vec<u8>),
    Ram(u64),
}

/// A standard stream or the working directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    Stdin,
    Stdout,
    Stderr,
    Cwd,
}

impl Setting {
    pub fn name(self) -> &'static str {
        match self {
            Setting::Stdin => "stdin",
            Setting::Stdout => "stdout",
            Setting::Stderr => "stderr",
            Setting::Cwd => "cwd",
        }
    }
}

/// One meaningful line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// `PATH = KIND`: `path` holds the components (no `.` or `..`).
    Node {
        line: usize,
        path: Vec<String>,
        kind: Kind,
    },
    /// `SETTING = PATH`.
    Setting {
        line: usize,
        setting: Setting,
        path: String,
    },
}

/// What is wrong with a configuration line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    MissingEquals,
    EmptyValue,
    UnknownSetting(String),
    NotAbsolute(String),
    BadComponent(String),
    UnknownKind(String),
    MissingArgument(&'static str),
    UnexpectedArgument(&'static str),
    BadSize(String),
    NoSuchRom(String),
    NoTerminal,
    Duplicate(String),
    ParentNotDirectory(String),
    InsideRam(String),
    NoSuchPath(String),
    NotADirectory(String),
    IsADirectory(String),
    CannotOpen(String, crate::Errno),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::MissingEquals => {
                write!(f, "expected `PATH = KIND [ARGS]` or `SETTING = PATH`")
            }
            Problem::EmptyValue => write!(f, "nothing after `=`: give a kind or a path"),
            Problem::UnknownSetting(s) => {
                write!(f, "unknown setting `{s}`: expected stdin, stdout, stderr, cwd or an absolute path")
            }
            Problem::NotAbsolute(p) => write!(f, "path `{p}` must start with `/`"),
            Problem::BadComponent(p) => {
                write!(
                    f,
                    "path `{p}` has a `.`, `..` or over-long component: write it plainly"
                )
            }
            Problem::UnknownKind(k) => write!(
                f,
                "unknown kind `{k}`: expected dir, log, null, zero, terminal, rom, inline or ram"
            ),
            Problem::MissingArgument(k) => write!(f, "kind `{k}` needs an argument"),
            Problem::UnexpectedArgument(k) => write!(f, "kind `{k}` takes no argument"),
            Problem::BadSize(s) => {
                write!(
                    f,
                    "size `{s}` is not a number of bytes with an optional K, M or G suffix"
                )
            }
            Problem::NoSuchRom(n) => write!(f, "there is no boot module named `{n}`"),
            Problem::NoTerminal => {
                write!(f, "a terminal node needs a terminal, and none is connected")
            }
            Problem::Duplicate(p) => write!(f, "`{p}` is configured twice"),
            Problem::ParentNotDirectory(p) => {
                write!(f, "`{p}` lies below a node that is not a directory")
            }
            Problem::InsideRam(p) => {
                write!(
                    f,
                    "`{p}` lies inside a ram directory, whose content the program makes"
                )
            }
            Problem::NoSuchPath(p) => write!(f, "`{p}` is not configured"),
            Problem::NotADirectory(p) => write!(f, "`{p}` is not a directory"),
            Problem::IsADirectory(p) => write!(f, "`{p}` is a directory, not a file"),
            Problem::CannotOpen(p, e) => write!(f, "`{p}` cannot be opened so: {e}"),
        }
    }
}

/// A configuration error: the line (1-based; 0 for a default) and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VfsConfigError {
    pub line: usize,
    pub text: String,
    pub problem: Problem,
}

impl fmt::Display for VfsConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(
                f,
                "file system configuration, default `{}`: {}",
                self.text, self.problem
            )
        } else {
            write!(
                f,
                "file system configuration line {} `{}`: {}",
                self.line, self.text, self.problem
            )
        }
    }
}

/// Reads the configuration text into lines, checking each on its own.
pub fn parse(text: &str) -> Result<Vec<Line>, VfsConfigError> {
    let mut lines = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let err = |problem| VfsConfigError {
            line,
            text: trimmed.to_string(),
            problem,
        };
        let (key, value) = trimmed
            .split_once('=')
            .ok_or_else(|| err(Problem::MissingEquals))?;
        let key = key.trim();
        let value = value.trim_start();
        if !key.starts_with('/') {
            let setting = match key {
                "stdin" => Setting::Stdin,
                "stdout" => Setting::Stdout,
                "stderr" => Setting::Stderr,
                "cwd" => Setting::Cwd,
                _ if key.contains('/') || key.is_empty() => {
                    return Err(err(Problem::NotAbsolute(key.to_string())))
                }
                _ => return Err(err(Problem::UnknownSetting(key.to_string()))),
            };
            let path = strip_comment(value);
            if path.is_empty() {
                return Err(err(Problem::EmptyValue));
            }
            if !path.starts_with('/') {
                return Err(err(Problem::NotAbsolute(path.to_string())));
            }
            lines.push(Line::Setting {
                line,
                setting,
                path: path.to_string(),
            });
            continue;
        }
        let path = components(key).ok_or_else(|| err(Problem::BadComponent(key.to_string())))?;
        let (kind_word, rest) = match value.split_once(char::is_whitespace) {
            Some((k, r)) => (k, r.trim_start()),
            None => (value, ""),
        };
        if kind_word.is_empty() || kind_word.starts_with('#') {
            return Err(err(Problem::EmptyValue));
        }
        let kind = if kind_word == "inline" {
            Kind::Inline(unescape(rest))
        } else {
            let arg = strip_comment(rest);
            let no_arg = |kind: Kind, name: &'static str| {
                if arg.is_empty() {
                    Ok(kind)
                } else {
                    Err(err(Problem::UnexpectedArgument(name)))
                }
            };
            match kind_word {
                "dir" => no_arg(Kind::Dir, "dir")?,
                "log" => no_arg(Kind::Log, "log")?,
                "null" => no_arg(Kind::Null, "null")?,
                "zero" => no_arg(Kind::Zero, "zero")?,
                "terminal" => no_arg(Kind::Terminal, "terminal")?,
                "rom" if arg.is_empty() => return Err(err(Problem::MissingArgument("rom"))),
                "rom" if arg.contains(char::is_whitespace) => {
                    return Err(err(Problem::UnexpectedArgument("rom")))
                }
                "rom" if arg == "*" => Kind::AllRoms,
                "rom" => Kind::Rom(arg.to_string()),
                "ram" if arg.is_empty() => Kind::Ram(DEFAULT_RAM_SIZE),
                "ram" => Kind::Ram(
                    parse_size(arg).ok_or_else(|| err(Problem::BadSize(arg.to_string())))?,
                ),
                other => return Err(err(Problem::UnknownKind(other.to_string()))),
            }
        };
        lines.push(Line::Node { line, path, kind });
    }
    Ok(lines)
}

/// The components of an absolute configuration path, or `None` if one is
/// `.`, `..` or too long.
fn components(path: &str) -> Option<Vec<String>> {
    let p = Path::parse(path).ok()?;
    if p.components
        .iter()
        .any(|c| *c == "." || *c == ".." || c.len() > NAME_MAX)
    {
        return None;
    }
    Some(p.components.iter().map(|c| c.to_string()).collect())
}

fn strip_comment(value: &str) -> &str {
    let v = match value.find(" #").or_else(|| value.find("\t#")) {
        Some(i) => &value[..i],
        None => value,
    };
    v.trim()
}

fn unescape(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut chars = text.trim_end().chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut b = [0; 4];
            out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            continue;
        }
        match chars.next() {
            Some('n') => out.push(b'\n'),
            Some('t') => out.push(b'\t'),
            Some('\\') => out.push(b'\\'),
            Some('#') => out.push(b'#'),
            Some(other) => {
                out.push(b'\\');
                let mut b = [0; 4];
                out.extend_from_slice(other.encode_utf8(&mut b).as_bytes());
            }
            None => out.push(b'\\'),
        }
    }
    out
}

/// Bytes with an optional K/M/G suffix (binary units); `None` if malformed
/// or zero or overflowing.
pub fn parse_size(text: &str) -> Option<u64> {
    let (digits, shift) = match text.as_bytes().last()? {
        b'K' | b'k' => (&text[..text.len() - 1], 10),
        b'M' | b'm' => (&text[..text.len() - 1], 20),
        b'G' | b'g' => (&text[..text.len() - 1], 30),
        _ => (text, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    let bytes = n.checked_mul(1u64 << shift)?;
    (bytes > 0).then_some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn node(text: &str) -> Kind {
        match parse(text).unwrap().pop().unwrap() {
            Line::Node { kind, .. } => kind,
            other => panic!("not a node: {other:?}"),
        }
    }

    fn problem(text: &str) -> (usize, Problem) {
        let e = parse(text).unwrap_err();
        (e.line, e.problem)
    }

    #[test]
    fn kinds_and_arguments() {
        assert_eq!(node("/dev/log = log"), Kind::Log);
        assert_eq!(node("/a=dir"), Kind::Dir);
        assert_eq!(
            node("/x = rom linux # the kernel"),
            Kind::Rom("linux".into())
        );
        assert_eq!(node("/rom = rom *"), Kind::AllRoms);
        assert_eq!(node("/tmp = ram"), Kind::Ram(DEFAULT_RAM_SIZE));
        assert_eq!(node("/tmp = ram 16M"), Kind::Ram(16 << 20));
        assert_eq!(node("/tmp = ram 4096"), Kind::Ram(4096));
        assert_eq!(
            node(r"/motd = inline Hi #1,\n\tbye\\ \# "),
            Kind::Inline(b"Hi #1,\n\tbye\\ #".to_vec())
        );
        assert_eq!(node("/empty = inline"), Kind::Inline(vec![]));
    }

    #[test]
    fn settings_paths_and_comments() {
        let lines =
            parse("# a comment\n\n  stdin = /dev/console # typed\n/a//b/ = null\n").unwrap();
        assert_eq!(
            lines,
            vec![
                Line::Setting {
                    line: 3,
                    setting: Setting::Stdin,
                    path: "/dev/console".into()
                },
                Line::Node {
                    line: 4,
                    path: vec!["a".into(), "b".into()],
                    kind: Kind::Null
                },
            ]
        );
    }

    #[test]
    fn errors_name_line_and_problem() {
        assert_eq!(problem("/a = log\n/b log"), (2, Problem::MissingEquals));
        assert_eq!(
            problem("/a = socket"),
            (1, Problem::UnknownKind("socket".into()))
        );
        assert_eq!(problem("/a = rom"), (1, Problem::MissingArgument("rom")));
        assert_eq!(
            problem("/a = rom a b"),
            (1, Problem::UnexpectedArgument("rom"))
        );
        assert_eq!(
            problem("/a = null x"),
            (1, Problem::UnexpectedArgument("null"))
        );
        assert_eq!(problem("/a = ram 12X"), (1, Problem::BadSize("12X".into())));
        assert_eq!(problem("/a = ram 0"), (1, Problem::BadSize("0".into())));
        assert_eq!(problem("/a ="), (1, Problem::EmptyValue));
        assert_eq!(
            problem("a/b = log"),
            (1, Problem::NotAbsolute("a/b".into()))
        );
        assert_eq!(
            problem("/a/../b = log"),
            (1, Problem::BadComponent("/a/../b".into()))
        );
        assert_eq!(
            problem("stdout = dev/log"),
            (1, Problem::NotAbsolute("dev/log".into()))
        );
        assert_eq!(
            problem("stdpit = /dev/log"),
            (1, Problem::UnknownSetting("stdpit".into()))
        );
        let e = parse("\n/a = socket").unwrap_err();
        let text = alloc::format!("{e}");
        assert!(
            text.contains("line 2")
                && text.contains("/a = socket")
                && text.contains("expected dir"),
            "{text}"
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1K"), Some(1024));
        assert_eq!(parse_size("2g"), Some(2 << 30));
        assert_eq!(parse_size("K"), None);
        assert_eq!(parse_size("-1"), None);
        assert_eq!(parse_size("99999999999999999999"), None);
        assert_eq!(parse_size("17179869184G"), None);
    }
}
