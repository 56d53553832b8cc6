//! The scenario's `[initramfs]` as a file: an uncompressed cpio archive in the "newc" format
//! the Linux kernel unpacks into its first root file system. Holds Debian's static busybox
//! (with a link for each applet), the chosen kernel modules of the fetched Debian kernel with
//! their dependencies, the scenario's files, and `/init`. Builds the archive only; finding
//! the input files is the caller's job.
//!
//! Uncompressed because a TCG guest unpacks it faster than it inflates gzip, and the kernel
//! accepts it as it is.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::Error;
use crate::fetch::DebianKernel;

/// Where Debian's `busybox-static` installs it.
pub const BUSYBOX: &str = "/bin/busybox";

/// One entry of the archive, by its path without the leading `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Dir,
    /// A regular file's contents and whether it is executable.
    File {
        data: Vec<u8>,
        executable: bool,
    },
    Symlink(String),
    /// A character device (major, minor).
    CharDevice(u32, u32),
}

/// The archive's contents; parents of every path are added as directories.
#[derive(Debug, Default)]
pub struct Tree {
    entries: BTreeMap<String, Entry>,
}

impl Tree {
    /// Adds `entry` at `path` (`/` separated, leading `/` optional), replacing what was there.
    pub fn add(&mut self, path: &str, entry: Entry) {
        let path = path.trim_start_matches('/');
        let mut parent = String::new();
        for part in path.split('/').take(path.split('/').count() - 1) {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(part);
            self.entries.entry(parent.clone()).or_insert(Entry::Dir);
        }
        self.entries.insert(path.to_owned(), entry);
    }

    pub fn contains(&self, path: &str) -> bool {
        self.entries.contains_key(path.trim_start_matches('/'))
    }

    /// The archive in cpio "newc" format. Paths sort parents first; inode numbers count up;
    /// owners are root and times zero, so equal trees give equal archives.
    pub fn to_cpio(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (ino, (path, entry)) in self.entries.iter().enumerate() {
            let (mode, data, rdev): (u32, &[u8], (u32, u32)) = match entry {
                Entry::Dir => (0o040_755, &[], (0, 0)),
                Entry::File { data, executable } => (
                    if *executable { 0o100_755 } else { 0o100_644 },
                    data,
                    (0, 0),
                ),
                Entry::Symlink(target) => (0o120_777, target.as_bytes(), (0, 0)),
                Entry::CharDevice(major, minor) => (0o020_600, &[], (*major, *minor)),
            };
            let nlink = if matches!(entry, Entry::Dir) { 2 } else { 1 };
            write_record(&mut out, ino as u32 + 1, mode, nlink, rdev, path, data);
        }
        write_record(&mut out, 0, 0, 1, (0, 0), "TRAILER!!!", &[]);
        out
    }
}

fn write_record(
    out: &mut Vec<u8>,
    ino: u32,
    mode: u32,
    nlink: u32,
    rdev: (u32, u32),
    name: &str,
    data: &[u8],
) {
    let fields = [
        ino,
        mode,
        0, // uid
        0, // gid
        nlink,
        0, // mtime
        data.len() as u32,
        0, // dev major
        0, // dev minor
        rdev.0,
        rdev.1,
        name.len() as u32 + 1,
        0, // check
    ];
    out.extend_from_slice(b"070701");
    for field in fields {
        out.extend_from_slice(format!("{field:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

/// One `modules.dep` line: a module's path (relative to the module folder) and the paths of
/// everything it needs, already transitive as depmod writes them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DepLine {
    path: String,
    needs: Vec<String>,
    line: String,
}

/// `kvm-amd`, `kvm_amd` and `kernel/arch/x86/kvm/kvm-amd.ko` all name module `kvm_amd`.
fn module_key(name_or_path: &str) -> String {
    let file = name_or_path.rsplit('/').next().unwrap_or(name_or_path);
    let stem = [".ko.xz", ".ko.zst", ".ko.gz", ".ko"]
        .iter()
        .find_map(|ext| file.strip_suffix(ext))
        .unwrap_or(file);
    stem.replace('-', "_")
}

fn parse_modules_dep(text: &str) -> BTreeMap<String, DepLine> {
    text.lines()
        .filter_map(|line| {
            let (path, needs) = line.split_once(':')?;
            Some((
                module_key(path),
                DepLine {
                    path: path.trim().to_owned(),
                    needs: needs.split_whitespace().map(str::to_owned).collect(),
                    line: line.to_owned(),
                },
            ))
        })
        .collect()
}

/// The `modules.dep` paths of `wanted` and of everything they need, and the `modules.dep`
/// text for just those modules (busybox's modprobe reads it).
fn select_modules(
    modules_dep: &str,
    wanted: &[String],
    release: &str,
) -> Result<(BTreeSet<String>, String), Error> {
    let all = parse_modules_dep(modules_dep);
    let mut paths = BTreeSet::new();
    let mut dep_text = String::new();
    let mut pending: Vec<String> = wanted.iter().map(|w| module_key(w)).collect();
    while let Some(key) = pending.pop() {
        let line = all.get(&key).ok_or_else(|| Error::Initramfs {
            problem: format!(
                "kernel module `{key}` is not in Debian's kernel {release} (or not a module there: see its modules.builtin)"
            ),
        })?;
        if paths.insert(line.path.clone()) {
            dep_text += &line.line;
            dep_text.push('\n');
            pending.extend(line.needs.iter().map(|p| module_key(p)));
        }
    }
    Ok((paths, dep_text))
}

/// Files the caller found for the initramfs.
pub struct Inputs<'a> {
    pub init: &'a Path,
    /// (path inside, file on the host).
    pub files: Vec<(String, PathBuf)>,
    /// The kernel whose modules `kernel_modules` names; needed only when that is non-empty.
    pub kernel: Option<&'a DebianKernel>,
    pub kernel_modules: &'a [String],
}

/// Builds the archive at `out`.
pub fn build(inputs: &Inputs, out: &Path) -> Result<(), Error> {
    let mut tree = Tree::default();
    for dir in ["proc", "sys", "dev", "tmp", "root", "etc", "mnt"] {
        tree.add(dir, Entry::Dir);
    }
    tree.add("dev/console", Entry::CharDevice(5, 1));
    tree.add(
        BUSYBOX,
        Entry::File {
            data: busybox()?,
            executable: true,
        },
    );
    for applet in busybox_applets()? {
        if !tree.contains(&applet) {
            tree.add(&applet, Entry::Symlink(BUSYBOX.into()));
        }
    }
    if !inputs.kernel_modules.is_empty() {
        let kernel = inputs.kernel.ok_or_else(|| Error::Initramfs {
            problem: "`kernel_modules` come from Debian's kernel; use `kernel = { fetch = \"debian-kernel\" }`".into(),
        })?;
        let dep_path = kernel.modules.join("modules.dep");
        let (paths, dep_text) = select_modules(
            &read_text(&dep_path)?,
            inputs.kernel_modules,
            &kernel.release,
        )?;
        let inside = format!("lib/modules/{}", kernel.release);
        for path in paths {
            let data = read(&kernel.modules.join(&path))?;
            tree.add(
                &format!("{inside}/{path}"),
                Entry::File {
                    data,
                    executable: false,
                },
            );
        }
        tree.add(
            &format!("{inside}/modules.dep"),
            Entry::File {
                data: dep_text.into_bytes(),
                executable: false,
            },
        );
    }
    for (to, from) in &inputs.files {
        tree.add(
            to,
            Entry::File {
                data: read(from)?,
                executable: true,
            },
        );
    }
    tree.add(
        "init",
        Entry::File {
            data: read(inputs.init)?,
            executable: true,
        },
    );
    let mut file = std::fs::File::create(out).map_err(|source| Error::Io {
        what: "create",
        path: out.to_owned(),
        source,
    })?;
    file.write_all(&tree.to_cpio()).map_err(|source| Error::Io {
        what: "write",
        path: out.to_owned(),
        source,
    })
}

/// Debian's static busybox; a dynamically linked one would not start without its libraries.
fn busybox() -> Result<Vec<u8>, Error> {
    let missing = || Error::Initramfs {
        problem: format!(
            "{BUSYBOX} is missing: install Debian's `busybox-static` (scripts/setup.sh does)"
        ),
    };
    let data = std::fs::read(BUSYBOX).map_err(|_| missing())?;
    if is_dynamic_elf(&data) {
        return Err(Error::Initramfs {
            problem: format!(
                "{BUSYBOX} is dynamically linked: install Debian's `busybox-static` instead of `busybox` (scripts/setup.sh does)"
            ),
        });
    }
    Ok(data)
}

fn is_dynamic_elf(data: &[u8]) -> bool {
    use object::elf::PT_INTERP;
    use object::read::elf::{ElfFile64, ProgramHeader};
    let Ok(elf) = ElfFile64::<object::Endianness>::parse(data) else {
        return false;
    };
    let endian = elf.endian();
    elf.elf_program_headers()
        .iter()
        .any(|ph| ph.p_type(endian) == PT_INTERP)
}

/// Every applet's path (`bin/ls`, `sbin/modprobe`, ...), from `busybox --list-full`.
fn busybox_applets() -> Result<Vec<String>, Error> {
    let output = Command::new(BUSYBOX)
        .arg("--list-full")
        .output()
        .map_err(|source| Error::ToolMissing {
            tool: BUSYBOX.into(),
            source,
        })?;
    if !output.status.success() {
        return Err(Error::CommandFailed {
            command: format!("{BUSYBOX} --list-full"),
            status: output.status,
            output: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.contains(".."))
        .map(str::to_owned)
        .collect())
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::Io {
        what: "read",
        path: path.to_owned(),
        source,
    })
}

fn read_text(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|source| Error::Io {
        what: "read",
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses a newc archive back: (name, mode, rdev major, rdev minor, data).
    fn unpack(archive: &[u8]) -> Vec<(String, u32, u32, u32, Vec<u8>)> {
        let mut at = 0;
        let mut out = Vec::new();
        loop {
            assert_eq!(&archive[at..at + 6], b"070701", "magic at {at}");
            let field = |i: usize| {
                let text = std::str::from_utf8(&archive[at + 6 + 8 * i..at + 14 + 8 * i]).unwrap();
                u32::from_str_radix(text, 16).unwrap()
            };
            let (mode, size, major, minor, namesize) =
                (field(1), field(6), field(9), field(10), field(11));
            let name_at = at + 110;
            let name =
                String::from_utf8(archive[name_at..name_at + namesize as usize - 1].to_vec())
                    .unwrap();
            assert_eq!(archive[name_at + namesize as usize - 1], 0);
            let data_at = (name_at + namesize as usize).next_multiple_of(4);
            let data = archive[data_at..data_at + size as usize].to_vec();
            at = (data_at + size as usize).next_multiple_of(4);
            if name == "TRAILER!!!" {
                assert_eq!(at, archive.len());
                return out;
            }
            out.push((name, mode, major, minor, data));
        }
    }

    #[test]
    fn archive_lists_parents_first_with_modes_and_padding() {
        let mut tree = Tree::default();
        tree.add(
            "/bin/tern-vmm",
            Entry::File {
                data: b"vmm!!".to_vec(),
                executable: true,
            },
        );
        tree.add("bin/sh", Entry::Symlink("/bin/busybox".into()));
        tree.add("dev/console", Entry::CharDevice(5, 1));
        tree.add(
            "lib/modules/r/modules.dep",
            Entry::File {
                data: b"a.ko:\n".to_vec(),
                executable: false,
            },
        );
        let entries = unpack(&tree.to_cpio());
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "bin",
                "bin/sh",
                "bin/tern-vmm",
                "dev",
                "dev/console",
                "lib",
                "lib/modules",
                "lib/modules/r",
                "lib/modules/r/modules.dep"
            ]
        );
        assert_eq!(entries[0].1, 0o040_755);
        assert_eq!(
            (entries[1].1, &entries[1].4[..]),
            (0o120_777, &b"/bin/busybox"[..])
        );
        assert_eq!(
            (entries[2].1, &entries[2].4[..]),
            (0o100_755, &b"vmm!!"[..])
        );
        assert_eq!(
            (entries[4].1, entries[4].2, entries[4].3),
            (0o020_600, 5, 1)
        );
        assert_eq!(entries[8].1, 0o100_644);
    }

    const MODULES_DEP: &str = "\
kernel/virt/lib/irqbypass.ko:
kernel/arch/x86/kvm/kvm.ko: kernel/virt/lib/irqbypass.ko
kernel/arch/x86/kvm/kvm-intel.ko: kernel/arch/x86/kvm/kvm.ko kernel/virt/lib/irqbypass.ko
kernel/drivers/crypto/ccp/ccp.ko:
kernel/arch/x86/kvm/kvm-amd.ko: kernel/drivers/crypto/ccp/ccp.ko kernel/arch/x86/kvm/kvm.ko kernel/virt/lib/irqbypass.ko
kernel/sound/snd.ko:
";

    #[test]
    fn modules_come_with_their_dependencies_and_a_matching_modules_dep() {
        let (paths, dep) = select_modules(MODULES_DEP, &["kvm_amd".into()], "r").unwrap();
        assert_eq!(
            paths.iter().map(String::as_str).collect::<Vec<_>>(),
            [
                "kernel/arch/x86/kvm/kvm-amd.ko",
                "kernel/arch/x86/kvm/kvm.ko",
                "kernel/drivers/crypto/ccp/ccp.ko",
                "kernel/virt/lib/irqbypass.ko"
            ]
        );
        assert_eq!(dep.lines().count(), 4);
        assert!(dep.contains("kvm-amd.ko: kernel/drivers/crypto/ccp/ccp.ko"));
        assert!(!dep.contains("snd"));
        let (paths, _) =
            select_modules(MODULES_DEP, &["kvm-amd".into(), "kvm-intel".into()], "r").unwrap();
        assert_eq!(paths.len(), 5);
    }

    #[test]
    fn unknown_module_is_named() {
        let e = select_modules(MODULES_DEP, &["kvm-arm".into()], "6.1.0-56-amd64")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`kvm_arm` is not in Debian's kernel 6.1.0-56-amd64"),
            "{e}"
        );
    }

    #[test]
    fn static_and_dynamic_elf_are_told_apart() {
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        // Test binaries are linked against glibc: they have an interpreter.
        assert!(is_dynamic_elf(&me));
        assert!(!is_dynamic_elf(b"#!/bin/sh\n"));
    }
}
