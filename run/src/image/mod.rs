//! Boot images: the files a scenario boots (kernel, command line, named modules), built and
//! found on disk, then laid out for an emulator: a boot directory for QEMU (ELF32 kernel
//! plus modules under their names), a GRUB ISO for Bochs (see [`grub`]).
//!
//! The module naming convention every loader path keeps: a module's command line is
//! `<name> [args]`, and the kernel's is `kernel [cmdline]`.

pub mod elf32;
pub mod grub;
pub mod multiboot;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::cargo::Workspace;
use crate::error::Error;
use crate::scenario::{Scenario, Source, KERNEL_NAME};

/// A module ready to boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootModule {
    pub name: String,
    pub path: PathBuf,
    pub args: String,
}

/// Everything a scenario boots, as files on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootFiles {
    /// The kernel as built: ELF64 (or ELF32), with Multiboot v1 and v2 headers.
    pub kernel: PathBuf,
    pub cmdline: String,
    pub modules: Vec<BootModule>,
}

impl BootFiles {
    /// Builds the scenario's packages and finds every file it boots.
    pub fn prepare(scenario: &Scenario, workspace: &Workspace) -> Result<BootFiles, Error> {
        let mut packages: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let sources = std::iter::once((KERNEL_NAME, &scenario.kernel.source)).chain(
            scenario
                .modules
                .iter()
                .map(|m| (m.name.as_str(), &m.source)),
        );
        for (name, source) in sources {
            match source {
                Source::Package {
                    package, target, ..
                } => {
                    let list = packages.entry(target.clone()).or_default();
                    if !list.contains(package) {
                        list.push(package.clone());
                    }
                }
                Source::Fetch(what) => {
                    return Err(Error::FetchUnsupported {
                        name: name.to_owned(),
                        what: what.clone(),
                    })
                }
                Source::File(_) => {}
            }
        }
        for (target, names) in &packages {
            println!("run: building for {target}: {}", names.join(" "));
        }
        workspace.build(&packages)?;

        let locate = |name: &str, source: &Source| -> Result<PathBuf, Error> {
            let (path, hint) = match source {
                Source::Package {
                    package,
                    binary,
                    target,
                } => (
                    workspace.binary_path(target, binary),
                    format!(
                        "the build did not make it: does package `{package}` have a binary `{binary}`? (set `binary`)"
                    ),
                ),
                Source::File(file) => (workspace.path(file), "check the `file` path".to_owned()),
                Source::Fetch(what) => {
                    return Err(Error::FetchUnsupported {
                        name: name.to_owned(),
                        what: what.clone(),
                    })
                }
            };
            match path.is_file() {
                true => Ok(path),
                false => Err(Error::MissingArtifact { path, hint }),
            }
        };
        let mut modules = Vec::new();
        for module in &scenario.modules {
            modules.push(BootModule {
                name: module.name.clone(),
                path: locate(&module.name, &module.source)?,
                args: module.args.clone(),
            });
        }
        Ok(BootFiles {
            kernel: locate(KERNEL_NAME, &scenario.kernel.source)?,
            cmdline: scenario.kernel.cmdline.clone(),
            modules,
        })
    }

    pub fn read_kernel(&self) -> Result<Vec<u8>, Error> {
        std::fs::read(&self.kernel).map_err(|source| Error::Io {
            what: "read the kernel",
            path: self.kernel.clone(),
            source,
        })
    }

    /// Fills `dir` (emptied first) with `kernel` and one file per module under its name.
    pub fn stage(&self, dir: &Path, kernel: &[u8]) -> Result<(), Error> {
        let io = |what, path: &Path| {
            let path = path.to_owned();
            move |source| Error::Io { what, path, source }
        };
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(io("empty", dir))?;
        }
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
        let kernel_path = dir.join(KERNEL_NAME);
        std::fs::write(&kernel_path, kernel).map_err(io("write", &kernel_path))?;
        for module in &self.modules {
            let to = dir.join(&module.name);
            // A hard link costs nothing for large guest images; copy across file systems.
            if std::fs::hard_link(&module.path, &to).is_err() {
                std::fs::copy(&module.path, &to).map_err(io("copy a module to", &to))?;
            }
        }
        Ok(())
    }
}

/// A command line's words joined by single spaces: what every boot loader path passes.
pub fn words(line: &str) -> impl Iterator<Item = &str> {
    line.split_whitespace()
}

/// `name args...` as one string.
pub fn module_cmdline(name: &str, args: &str) -> String {
    std::iter::once(name)
        .chain(words(args))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_command_line_is_name_then_normalised_args() {
        assert_eq!(module_cmdline("roottask", ""), "roottask");
        assert_eq!(
            module_cmdline("roottask", "  verbose   n=3 "),
            "roottask verbose n=3"
        );
    }

    #[test]
    fn stage_puts_kernel_and_modules_under_their_names() {
        let dir = std::env::temp_dir().join(format!("run-stage-test-{}", std::process::id()));
        let source = dir.join("src");
        std::fs::create_dir_all(&source).unwrap();
        std::fs::write(source.join("roottask.bin"), b"roottask image").unwrap();
        let files = BootFiles {
            kernel: source.join("unused"),
            cmdline: String::new(),
            modules: vec![BootModule {
                name: "roottask".into(),
                path: source.join("roottask.bin"),
                args: String::new(),
            }],
        };
        let boot = dir.join("boot");
        std::fs::create_dir_all(&boot).unwrap();
        std::fs::write(boot.join("stale"), b"old").unwrap();
        files.stage(&boot, b"ELF").unwrap();
        let mut names: Vec<_> = std::fs::read_dir(&boot)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["kernel", "roottask"]);
        assert_eq!(std::fs::read(boot.join("kernel")).unwrap(), b"ELF");
        assert_eq!(
            std::fs::read(boot.join("roottask")).unwrap(),
            b"roottask image"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
