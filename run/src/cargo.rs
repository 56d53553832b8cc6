//! The workspace as cargo sees it: where it lives, where builds land, and building the
//! packages a scenario names (`cargo build --release --target T -p A -p B --features
//! A/f`, one call per target). Knows nothing about boot images.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;

use crate::error::Error;

/// What one cargo call builds for a target: packages and their features (`pkg/feature`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Build {
    pub packages: Vec<String>,
    pub features: Vec<String>,
}

pub struct Workspace {
    pub root: PathBuf,
    pub target_dir: PathBuf,
    cargo: OsString,
}

#[derive(Deserialize)]
struct Metadata {
    workspace_root: PathBuf,
    target_directory: PathBuf,
}

impl Workspace {
    /// Asks cargo about the workspace this tool belongs to (honours `CARGO_TARGET_DIR`).
    pub fn discover() -> Result<Workspace, Error> {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        // `cargo run` sets CARGO_MANIFEST_DIR at run time; the build-time value covers a
        // binary started directly.
        let run_dir = std::env::var_os("CARGO_MANIFEST_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
        let manifest = run_dir.join("..").join("Cargo.toml");
        let output = Command::new(&cargo)
            .args([
                "metadata",
                "--format-version",
                "1",
                "--no-deps",
                "--manifest-path",
            ])
            .arg(&manifest)
            .stderr(Stdio::inherit())
            .output()
            .map_err(|source| Error::ToolMissing {
                tool: cargo.to_string_lossy().into_owned(),
                source,
            })?;
        if !output.status.success() {
            return Err(Error::Metadata(format!(
                "failed for {} ({})",
                manifest.display(),
                output.status
            )));
        }
        let metadata: Metadata =
            serde_json::from_slice(&output.stdout).map_err(|e| Error::Metadata(e.to_string()))?;
        Ok(Workspace {
            root: metadata.workspace_root,
            target_dir: metadata.target_directory,
            cargo,
        })
    }

    /// Builds `packages` (target triple → packages and features) in release mode, one
    /// cargo call per target; cargo's progress goes to the terminal.
    pub fn build(&self, packages: &BTreeMap<String, Build>) -> Result<(), Error> {
        for (target, names) in packages {
            let mut command = Command::new(&self.cargo);
            command
                .current_dir(&self.root)
                .args(build_args(target, names));
            let status = command.status().map_err(|source| Error::ToolMissing {
                tool: self.cargo.to_string_lossy().into_owned(),
                source,
            })?;
            if !status.success() {
                return Err(Error::CommandFailed {
                    command: format!("cargo {}", build_args(target, names).join(" ")),
                    status,
                    output: String::new(),
                });
            }
        }
        Ok(())
    }

    /// Where cargo puts `binary` built for `target` in release mode.
    pub fn binary_path(&self, target: &str, binary: &str) -> PathBuf {
        self.target_dir.join(target).join("release").join(binary)
    }

    /// A path relative to the workspace root made absolute.
    pub fn path(&self, relative: &Path) -> PathBuf {
        self.root.join(relative)
    }
}

fn build_args(target: &str, build: &Build) -> Vec<String> {
    let mut args: Vec<String> = ["build", "--release", "--target", target]
        .map(str::to_owned)
        .into();
    for package in &build.packages {
        args.push("-p".into());
        args.push(package.clone());
    }
    if !build.features.is_empty() {
        args.push("--features".into());
        args.push(build.features.join(","));
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_build_command_names_every_package_of_a_target() {
        let build = Build {
            packages: vec!["kernel".into(), "roottask".into()],
            features: vec![],
        };
        assert_eq!(
            build_args("x86_64-unknown-none", &build).join(" "),
            "build --release --target x86_64-unknown-none -p kernel -p roottask"
        );
        let build = Build {
            packages: vec!["vmm-host".into()],
            features: vec!["vmm-host/tern".into(), "vmm-host/check".into()],
        };
        assert_eq!(
            build_args("x86_64-unknown-linux-musl", &build).join(" "),
            "build --release --target x86_64-unknown-linux-musl -p vmm-host --features vmm-host/tern,vmm-host/check"
        );
    }

    #[test]
    fn discovers_this_workspace() {
        let ws = Workspace::discover().unwrap();
        assert!(
            ws.root.join("run/Cargo.toml").is_file(),
            "{}",
            ws.root.display()
        );
        assert_eq!(
            ws.binary_path("x86_64-unknown-none", "kernel"),
            ws.target_dir.join("x86_64-unknown-none/release/kernel")
        );
    }
}
