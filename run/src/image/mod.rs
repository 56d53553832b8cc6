//! Boot images: the files a scenario boots (kernel, command line, named modules), built and
//! found on disk, then laid out for an emulator: a boot directory for QEMU (ELF32 kernel
//! plus modules under their names), a GRUB ISO for Bochs (see [`grub`]).
//!
//! The module naming convention every loader path keeps: a module's command line is
//! `<name> [args]`, and the kernel's is `kernel [cmdline]`.

pub mod elf32;
pub mod grub;
pub mod initramfs;
pub mod multiboot;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::cargo::{Build, Workspace};
use crate::error::Error;
use crate::fetch::{self, DebianKernel};
use crate::scenario::{BootKind, Scenario, Source, KERNEL_NAME};

/// The built `[initramfs]` in the work folder.
const INITRAMFS_FILE: &str = "initramfs.cpio";
/// A Linux kernel's initrd in the boot directory.
pub const INITRD_NAME: &str = "initrd";

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
    /// Multiboot: the kernel as built, ELF64 (or ELF32) with Multiboot v1 and v2 headers.
    /// Linux: a bzImage.
    pub kernel: PathBuf,
    pub cmdline: String,
    pub modules: Vec<BootModule>,
    /// With [`BootKind::Linux`], the initrd; `None` for Multiboot.
    pub initrd: Option<PathBuf>,
}

impl BootFiles {
    /// Builds the scenario's packages, fetches what it fetches, builds its initramfs into
    /// `work` and finds every file it boots.
    pub fn prepare(
        scenario: &Scenario,
        workspace: &Workspace,
        work: &Path,
    ) -> Result<BootFiles, Error> {
        let mut packages: BTreeMap<String, Build> = BTreeMap::new();
        let initramfs_sources = scenario.initramfs.iter().flat_map(|i| &i.files);
        let sources = std::iter::once(&scenario.kernel.source)
            .chain(scenario.modules.iter().map(|m| &m.source))
            .chain(initramfs_sources.map(|f| &f.source));
        let mut wants_debian_kernel = scenario
            .initramfs
            .as_ref()
            .is_some_and(|i| !i.kernel_modules.is_empty());
        for source in sources {
            match source {
                Source::Package {
                    package,
                    target,
                    features,
                    ..
                } => {
                    let build = packages.entry(target.clone()).or_default();
                    if !build.packages.contains(package) {
                        build.packages.push(package.clone());
                    }
                    for feature in features {
                        let feature = format!("{package}/{feature}");
                        if !build.features.contains(&feature) {
                            build.features.push(feature);
                        }
                    }
                }
                Source::Fetch(_) => wants_debian_kernel = true,
                Source::File(_) | Source::Initramfs => {}
            }
        }
        let debian_kernel: Option<DebianKernel> = match wants_debian_kernel {
            true => Some(fetch::debian_kernel(&fetch::cache_root(
                &workspace.target_dir,
            ))?),
            false => None,
        };
        for (target, build) in &packages {
            println!("run: building for {target}: {}", build.packages.join(" "));
        }
        workspace.build(&packages)?;

        let initramfs_path = work.join(INITRAMFS_FILE);
        let locate = |source: &Source| -> Result<PathBuf, Error> {
            let (path, hint) = match source {
                Source::Package {
                    package,
                    binary,
                    target,
                    ..
                } => (
                    workspace.binary_path(target, binary),
                    format!(
                        "the build did not make it: does package `{package}` have a binary `{binary}`? (set `binary`)"
                    ),
                ),
                Source::File(file) => (workspace.path(file), "check the `file` path".to_owned()),
                Source::Fetch(_) => (
                    debian_kernel
                        .as_ref()
                        .map(|k| k.vmlinuz.clone())
                        .unwrap_or_default(),
                    "the fetched package has no kernel".to_owned(),
                ),
                Source::Initramfs => (initramfs_path.clone(), "[initramfs] was not built".into()),
            };
            match path.is_file() {
                true => Ok(path),
                false => Err(Error::MissingArtifact { path, hint }),
            }
        };
        if let Some(spec) = &scenario.initramfs {
            let mut files = Vec::new();
            for file in &spec.files {
                files.push((file.to.clone(), locate(&file.source)?));
            }
            let init = workspace.path(&spec.init);
            let inputs = initramfs::Inputs {
                init: &init,
                files,
                kernel: debian_kernel.as_ref(),
                kernel_modules: &spec.kernel_modules,
            };
            std::fs::create_dir_all(work).map_err(|source| Error::Io {
                what: "create",
                path: work.to_owned(),
                source,
            })?;
            initramfs::build(&inputs, &initramfs_path)?;
        }
        let mut modules = Vec::new();
        for module in &scenario.modules {
            modules.push(BootModule {
                name: module.name.clone(),
                path: locate(&module.source)?,
                args: module.args.clone(),
            });
        }
        Ok(BootFiles {
            kernel: locate(&scenario.kernel.source)?,
            cmdline: scenario.kernel.cmdline.clone(),
            modules,
            initrd: match scenario.boot {
                BootKind::Linux => Some(initramfs_path),
                BootKind::Multiboot => None,
            },
        })
    }

    pub fn read_kernel(&self) -> Result<Vec<u8>, Error> {
        std::fs::read(&self.kernel).map_err(|source| Error::Io {
            what: "read the kernel",
            path: self.kernel.clone(),
            source,
        })
    }

    /// Fills `dir` (emptied first) with `kernel`, one file per module under its name and the
    /// initrd, if any, as [`INITRD_NAME`].
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
        let modules = self.modules.iter().map(|m| (m.name.as_str(), &m.path));
        for (name, path) in modules.chain(self.initrd.iter().map(|p| (INITRD_NAME, p))) {
            let to = dir.join(name);
            // A hard link costs nothing for large guest images; copy across file systems.
            if std::fs::hard_link(path, &to).is_err() {
                std::fs::copy(path, &to).map_err(io("copy a module to", &to))?;
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
            initrd: None,
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
