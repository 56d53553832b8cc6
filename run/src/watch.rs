//! Watching a boot: reads the serial log as the emulator writes it, matches the scenario's
//! expected lines in order and its failure patterns, and decides when the run is over.
//! It ends the emulator process it watches, nothing else.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(50);

/// How a watched boot ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Passed,
    FailPattern {
        pattern: String,
        line: String,
    },
    Timeout {
        waiting_for: String,
    },
    Exited {
        status: ExitStatus,
        waiting_for: String,
    },
}

/// What one serial line did to the expectations.
#[derive(Debug, PartialEq, Eq)]
pub enum LineEvent {
    Nothing,
    Matched(usize),
    Failed(String),
}

/// Expected substrings, matched in order, one line each; failure patterns match any line.
pub struct Expectations<'a> {
    expect: &'a [String],
    fail: &'a [String],
    next: usize,
}

impl<'a> Expectations<'a> {
    pub fn new(expect: &'a [String], fail: &'a [String]) -> Self {
        Expectations {
            expect,
            fail,
            next: 0,
        }
    }

    pub fn feed(&mut self, line: &str) -> LineEvent {
        if let Some(pattern) = self.fail.iter().find(|p| line.contains(p.as_str())) {
            return LineEvent::Failed(pattern.clone());
        }
        match self.expect.get(self.next) {
            Some(wanted) if line.contains(wanted.as_str()) => {
                self.next += 1;
                LineEvent::Matched(self.next - 1)
            }
            _ => LineEvent::Nothing,
        }
    }

    pub fn done(&self) -> bool {
        self.next == self.expect.len()
    }

    /// The expectation not yet seen.
    pub fn waiting_for(&self) -> String {
        self.expect.get(self.next).cloned().unwrap_or_default()
    }
}

/// Reads complete lines from a file another process appends to.
pub struct SerialReader<'a> {
    path: &'a Path,
    file: Option<File>,
    partial: Vec<u8>,
}

impl<'a> SerialReader<'a> {
    pub fn new(path: &'a Path) -> Self {
        SerialReader {
            path,
            file: None,
            partial: Vec::new(),
        }
    }

    /// Lines completed since the last call (the file may not exist yet).
    pub fn lines(&mut self) -> io::Result<Vec<String>> {
        if self.file.is_none() {
            match File::open(self.path) {
                Ok(f) => self.file = Some(f),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(e),
            }
        }
        if let Some(file) = &mut self.file {
            file.read_to_end(&mut self.partial)?;
        }
        let mut lines = Vec::new();
        while let Some(end) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            lines.push(clean(&line));
        }
        Ok(lines)
    }

    /// Everything read so far and the unterminated last line: for when the writer is gone.
    pub fn finish(&mut self) -> io::Result<Vec<String>> {
        let mut lines = self.lines()?;
        if !self.partial.is_empty() {
            lines.push(clean(&std::mem::take(&mut self.partial)));
        }
        Ok(lines)
    }
}

/// A serial line as text: ANSI escape sequences (GRUB's menu drawing), carriage returns and
/// other control characters removed, invalid UTF-8 replaced.
pub fn clean(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            if chars.peek() == Some(&'[') {
                chars.next();
                // Parameters and intermediates, up to the final byte '@'..='~'.
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            } else {
                chars.next();
            }
        } else if c == '\t' || !c.is_control() {
            out.push(c);
        }
    }
    out
}

/// Watches `child` writing `serial` until every expectation has matched, a failure pattern
/// appears, the child exits or `timeout` passes; the child is ended in every case. Matched
/// lines are reported through `on_match` with the time since the start.
pub fn watch(
    child: &mut Child,
    serial: &Path,
    expectations: &mut Expectations,
    timeout: Duration,
    on_match: impl FnMut(Duration, &str),
) -> io::Result<Verdict> {
    let verdict = watch_until_over(child, serial, expectations, timeout, on_match);
    if verdict.is_err() {
        let _ = end(child);
    }
    verdict
}

fn watch_until_over(
    child: &mut Child,
    serial: &Path,
    expectations: &mut Expectations,
    timeout: Duration,
    mut on_match: impl FnMut(Duration, &str),
) -> io::Result<Verdict> {
    let start = Instant::now();
    let mut reader = SerialReader::new(serial);
    loop {
        let exited = child.try_wait()?;
        let lines = match exited {
            Some(_) => reader.finish()?,
            None => reader.lines()?,
        };
        for line in lines {
            match expectations.feed(&line) {
                LineEvent::Nothing => {}
                LineEvent::Matched(_) => on_match(start.elapsed(), &line),
                LineEvent::Failed(pattern) => {
                    end(child)?;
                    return Ok(Verdict::FailPattern { pattern, line });
                }
            }
            if expectations.done() {
                end(child)?;
                return Ok(Verdict::Passed);
            }
        }
        if let Some(status) = exited {
            return Ok(Verdict::Exited {
                status,
                waiting_for: expectations.waiting_for(),
            });
        }
        if start.elapsed() >= timeout {
            end(child)?;
            return Ok(Verdict::Timeout {
                waiting_for: expectations.waiting_for(),
            });
        }
        std::thread::sleep(POLL);
    }
}

fn end(child: &mut Child) -> io::Result<()> {
    if child.try_wait()?.is_none() {
        child.kill()?;
    }
    child.wait().map(drop)
}

/// The last `n` lines of a serial log, cleaned for the terminal.
pub fn tail(path: &Path, n: usize) -> io::Result<Vec<String>> {
    let bytes = std::fs::read(path)?;
    let lines: Vec<String> = bytes.split(|b| *b == b'\n').map(clean).collect();
    let lines = match lines.last() {
        Some(last) if last.is_empty() => &lines[..lines.len() - 1],
        _ => &lines[..],
    };
    Ok(lines[lines.len().saturating_sub(n)..].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::process::Command;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn expectations_match_in_order_one_line_each() {
        let expect = strings(&["CPU 0 online", "roottask: started"]);
        let fail = strings(&["PANIC"]);
        let mut e = Expectations::new(&expect, &fail);
        assert_eq!(e.feed("roottask: started"), LineEvent::Nothing);
        assert_eq!(
            e.feed("kernel: CPU 0 online, roottask: started"),
            LineEvent::Matched(0)
        );
        assert!(!e.done());
        assert_eq!(e.waiting_for(), "roottask: started");
        assert_eq!(e.feed("[roottask: started]"), LineEvent::Matched(1));
        assert!(e.done());
    }

    #[test]
    fn failure_pattern_wins_on_any_line() {
        let expect = strings(&["ok"]);
        let fail = strings(&["PANIC", "KERNEL FAULT"]);
        let mut e = Expectations::new(&expect, &fail);
        assert_eq!(
            e.feed("ok KERNEL FAULT at 0x10"),
            LineEvent::Failed("KERNEL FAULT".into())
        );
    }

    #[test]
    fn clean_strips_escapes_and_carriage_returns() {
        assert_eq!(clean(b"\x1b[2J\x1b[01;01HTK: start\r\n"), "TK: start");
        assert_eq!(clean(b"a\tb\xffc"), "a\tb\u{fffd}c");
    }

    #[test]
    fn reader_returns_complete_lines_then_the_rest() {
        let path = std::env::temp_dir().join(format!("run-reader-test-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let mut reader = SerialReader::new(&path);
        assert!(reader.lines().unwrap().is_empty());
        let mut file = File::create(&path).unwrap();
        file.write_all(b"one\r\ntw").unwrap();
        assert_eq!(reader.lines().unwrap(), ["one"]);
        file.write_all(b"o\nthr").unwrap();
        assert_eq!(reader.lines().unwrap(), ["two"]);
        assert_eq!(reader.finish().unwrap(), ["thr"]);
        std::fs::write(&path, b"1\n2\n3\n").unwrap();
        assert_eq!(tail(&path, 2).unwrap(), ["2", "3"]);
        std::fs::remove_file(&path).unwrap();
    }

    fn shell(script: &str, serial: &Path) -> Child {
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("sh")
            .arg(serial)
            .spawn()
            .unwrap()
    }

    fn serial_path(tag: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("run-watch-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        path
    }

    #[test]
    fn watch_passes_and_ends_the_process() {
        let serial = serial_path("pass");
        let mut child = shell("printf 'boot\\nready\\n' > \"$1\"; sleep 30", &serial);
        let (expect, fail) = (strings(&["boot", "ready"]), strings(&["PANIC"]));
        let mut seen = Vec::new();
        let started = Instant::now();
        let verdict = watch(
            &mut child,
            &serial,
            &mut Expectations::new(&expect, &fail),
            Duration::from_secs(20),
            |_, line| seen.push(line.to_owned()),
        )
        .unwrap();
        assert_eq!(verdict, Verdict::Passed);
        assert_eq!(seen, ["boot", "ready"]);
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(
            child.try_wait().unwrap().is_some(),
            "the process must have been ended"
        );
        std::fs::remove_file(&serial).unwrap();
    }

    #[test]
    fn watch_reports_fail_pattern_timeout_and_exit() {
        let (expect, fail) = (strings(&["boot", "ready"]), strings(&["PANIC"]));
        let run = |tag: &str, script: &str, timeout: u64| {
            let serial = serial_path(tag);
            let mut child = shell(script, &serial);
            let mut e = Expectations::new(&expect, &fail);
            let v = watch(
                &mut child,
                &serial,
                &mut e,
                Duration::from_secs(timeout),
                |_, _| {},
            );
            let _ = std::fs::remove_file(&serial);
            v.unwrap()
        };
        assert_eq!(
            run(
                "fail",
                "printf 'boot\\nPANIC: bad\\nready\\n' > \"$1\"; sleep 30",
                20
            ),
            Verdict::FailPattern {
                pattern: "PANIC".into(),
                line: "PANIC: bad".into()
            }
        );
        assert_eq!(
            run("timeout", "printf 'boot\\n' > \"$1\"; sleep 30", 1),
            Verdict::Timeout {
                waiting_for: "ready".into()
            }
        );
        match run("exit", "printf 'boot\\nrea' > \"$1\"; exit 3", 20) {
            Verdict::Exited {
                status,
                waiting_for,
            } => {
                assert_eq!(status.code(), Some(3));
                assert_eq!(waiting_for, "ready");
            }
            other => panic!("expected an exit verdict, got {other:?}"),
        }
        // An unterminated last line still counts once the writer has exited.
        assert_eq!(
            run("partial", "printf 'boot\\nready' > \"$1\"; exit 0", 20),
            Verdict::Passed
        );
    }
}
