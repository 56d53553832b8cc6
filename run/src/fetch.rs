//! `fetch = "debian-kernel"`: Debian's stock 64-bit kernel, the package behind
//! `linux-image-amd64`, downloaded with apt and unpacked into a cache folder that later runs
//! re-use. Owns the cache (`$XDG_CACHE_HOME/tern` or `~/.cache/tern`, never in the
//! repository) and the apt/dpkg calls; it does not build or boot anything.
//!
//! A cached kernel lives in `debian-kernel/<package>_<version>/` with `boot/vmlinuz-*` and
//! `lib/modules/<release>/` (the deb has no `modules.dep`, so `depmod -b` writes it). The
//! folder appears by a rename once complete, so an interrupted fetch leaves no half tree.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use thiserror::Error;

/// The meta package whose dependency names the current kernel.
const META_PACKAGE: &str = "linux-image-amd64";
/// Bound on each apt or dpkg call (a 70 MB download included).
const TOOL_TIMEOUT: Duration = Duration::from_secs(600);

/// A Debian kernel on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebianKernel {
    /// `6.1.0-56-amd64`: the folder name under `lib/modules`.
    pub release: String,
    /// `boot/vmlinuz-<release>`.
    pub vmlinuz: PathBuf,
    /// `lib/modules/<release>`, with `modules.dep`.
    pub modules: PathBuf,
}

#[derive(Debug, Error)]
pub enum FetchError {
    #[error(
        "`{tool}` is not available ({source}): fetching Debian's kernel needs Debian's apt, dpkg-deb and depmod (package kmod); on Debian run scripts/setup.sh"
    )]
    ToolMissing {
        tool: String,
        source: std::io::Error,
    },
    #[error(
        "apt knows no `{META_PACKAGE}` package with a kernel dependency ({detail}); run `apt-get update` (scripts/setup.sh does) and check that Debian's main archive is in the apt sources"
    )]
    NoPackage { detail: String },
    #[error(
        "`{command}` failed: {output}\nno network to Debian's archive? run scripts/setup.sh once while the archive is reachable; the kernel is cached afterwards"
    )]
    Download { command: String, output: String },
    #[error("`{command}` failed: {output}")]
    Tool { command: String, output: String },
    #[error("`{command}` did not finish within {} s", TOOL_TIMEOUT.as_secs())]
    Timeout { command: String },
    #[error("could not {what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the unpacked package {} has no boot/vmlinuz-{release} and lib/modules/{release}", dir.display())]
    Layout { dir: PathBuf, release: String },
}

/// The kernel package `linux-image-amd64` currently depends on: (package, version).
pub fn parse_meta_depends(apt_cache_show: &str) -> Option<(String, String)> {
    let depends = apt_cache_show
        .lines()
        .find_map(|l| l.strip_prefix("Depends:"))?;
    depends.split(',').find_map(|dep| {
        let dep = dep.trim();
        let (name, version) = match dep.split_once('(') {
            Some((name, rest)) => (
                name.trim(),
                rest.trim_end_matches(')').trim().strip_prefix('=')?.trim(),
            ),
            None => return None,
        };
        let release = name.strip_prefix("linux-image-")?;
        let plausible = release.ends_with("-amd64")
            && release.starts_with(|c: char| c.is_ascii_digit())
            && !version.is_empty();
        plausible.then(|| (name.to_owned(), version.to_owned()))
    })
}

/// The cache folder for everything the run tool downloads: `$XDG_CACHE_HOME/tern`,
/// `$HOME/.cache/tern`, or (with neither set) `tern-cache` in cargo's `target_dir`.
pub fn cache_root(target_dir: &Path) -> PathBuf {
    let from = |var: &str| std::env::var_os(var).filter(|v| !v.is_empty());
    match (from("XDG_CACHE_HOME"), from("HOME")) {
        (Some(cache), _) => PathBuf::from(cache).join("tern"),
        (None, Some(home)) => PathBuf::from(home).join(".cache").join("tern"),
        (None, None) => target_dir.join("tern-cache"),
    }
}

/// Finds the current kernel package, downloads and unpacks it unless the cache has it, and
/// returns it. Without apt's package lists (offline, no `apt-get update`) the newest cached
/// kernel is used if there is one.
pub fn debian_kernel(cache_root: &Path) -> Result<DebianKernel, FetchError> {
    let dir = cache_root.join("debian-kernel");
    let (package, version) = match current_package() {
        Ok(found) => found,
        Err(e) => match newest_cached(&dir) {
            Some(cached) => {
                println!(
                    "run: using the cached kernel {} ({e})",
                    cached.vmlinuz.display()
                );
                return Ok(cached);
            }
            None => return Err(e),
        },
    };
    let release = package.trim_start_matches("linux-image-").to_owned();
    let unpacked = dir.join(format!("{package}_{version}"));
    if let Ok(kernel) = layout(&unpacked, &release) {
        return Ok(kernel);
    }
    std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
    let lock_path = dir.join(".lock");
    let lock = std::fs::File::create(&lock_path).map_err(io("create", &lock_path))?;
    lock.lock().map_err(io("lock", &lock_path))?;
    // Another run may have fetched it while this one waited for the lock.
    if let Ok(kernel) = layout(&unpacked, &release) {
        return Ok(kernel);
    }
    println!(
        "run: fetching Debian's kernel {package} {version} into {}",
        dir.display()
    );
    let partial = dir.join(format!(".partial-{}", std::process::id()));
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(io("remove", &partial))?;
    }
    std::fs::create_dir_all(&partial).map_err(io("create", &partial))?;
    let result = download_and_unpack(&partial, &package, &version, &release)
        .and_then(|()| std::fs::rename(&partial, &unpacked).map_err(io("rename", &partial)));
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&partial);
    }
    result?;
    layout(&unpacked, &release)
}

fn current_package() -> Result<(String, String), FetchError> {
    let mut command = Command::new("apt-cache");
    command.args(["show", "--no-all-versions", META_PACKAGE]);
    let output = run(&mut command).map_err(|e| match e {
        FetchError::Tool { output, .. } => FetchError::NoPackage { detail: output },
        other => other,
    })?;
    parse_meta_depends(&output).ok_or_else(|| FetchError::NoPackage {
        detail: "apt-cache show printed no linux-image-*-amd64 dependency".into(),
    })
}

fn download_and_unpack(
    partial: &Path,
    package: &str,
    version: &str,
    release: &str,
) -> Result<(), FetchError> {
    let mut download = Command::new("apt-get");
    download
        .current_dir(partial)
        .args(["download", "-q", &format!("{package}={version}")]);
    run(&mut download).map_err(|e| match e {
        FetchError::Tool { command, output } => FetchError::Download { command, output },
        other => other,
    })?;
    let deb = std::fs::read_dir(partial)
        .map_err(io("list", partial))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .ok_or_else(|| FetchError::Download {
            command: format!("apt-get download {package}={version}"),
            output: "no .deb file appeared".into(),
        })?;
    let mut unpack = Command::new("dpkg-deb");
    unpack.arg("-x").arg(&deb).arg(partial);
    run(&mut unpack)?;
    std::fs::remove_file(&deb).map_err(io("remove", &deb))?;
    let mut depmod = Command::new(depmod_path());
    depmod.arg("-b").arg(partial).arg(release);
    run(&mut depmod)?;
    Ok(())
}

/// `depmod` lives in /usr/sbin, which a non-root PATH may lack.
fn depmod_path() -> PathBuf {
    ["/usr/sbin/depmod", "/sbin/depmod"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| "depmod".into())
}

/// The kernel in an unpacked package folder, if it is complete.
fn layout(dir: &Path, release: &str) -> Result<DebianKernel, FetchError> {
    let vmlinuz = dir.join("boot").join(format!("vmlinuz-{release}"));
    let modules = dir.join("lib").join("modules").join(release);
    match vmlinuz.is_file() && modules.join("modules.dep").is_file() {
        true => Ok(DebianKernel {
            release: release.to_owned(),
            vmlinuz,
            modules,
        }),
        false => Err(FetchError::Layout {
            dir: dir.to_owned(),
            release: release.to_owned(),
        }),
    }
}

/// The cached kernel with the highest version, by the folder names' natural order.
fn newest_cached(dir: &Path) -> Option<DebianKernel> {
    let mut found: Vec<(Vec<u64>, DebianKernel)> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let (package, version) = name.split_once('_')?;
            let release = package.strip_prefix("linux-image-")?;
            let kernel = layout(&e.path(), release).ok()?;
            let key = version
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|n| n.parse().ok())
                .collect();
            Some((key, kernel))
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found.pop().map(|(_, kernel)| kernel)
}

/// Runs a tool to completion within [`TOOL_TIMEOUT`]; its stdout on success.
fn run(command: &mut Command) -> Result<String, FetchError> {
    let described = format!(
        "{} {}",
        command.get_program().to_string_lossy(),
        command
            .get_args()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| FetchError::ToolMissing {
            tool: command.get_program().to_string_lossy().into_owned(),
            source,
        })?;
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        let waited = child.try_wait().map_err(|source| FetchError::Io {
            what: "wait for",
            path: described.clone().into(),
            source,
        })?;
        if let Some(status) = waited {
            break status;
        }
        if started.elapsed() > TOOL_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(FetchError::Timeout { command: described });
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    match status.success() {
        true => Ok(stdout),
        false => Err(FetchError::Tool {
            command: described,
            output: format!("{status}: {}", stderr.trim()),
        }),
    }
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> FetchError {
    let path = path.to_owned();
    move |source| FetchError::Io { what, path, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_package_dependency_gives_package_and_version() {
        let show = "Package: linux-image-amd64\nSource: linux-signed-amd64 (6.1.192+2)\n\
                    Version: 6.1.192-2\nDepends: linux-image-6.1.0-56-amd64 (= 6.1.192-2)\n\
                    Description-en: Linux for 64-bit PCs (meta-package)\n";
        assert_eq!(
            parse_meta_depends(show),
            Some(("linux-image-6.1.0-56-amd64".into(), "6.1.192-2".into()))
        );
    }

    #[test]
    fn other_dependencies_are_skipped_and_absence_is_none() {
        let show = "Depends: initramfs-tools (>= 0.1), linux-image-6.1.0-9-amd64 (= 6.1.27-1)\n";
        assert_eq!(
            parse_meta_depends(show),
            Some(("linux-image-6.1.0-9-amd64".into(), "6.1.27-1".into()))
        );
        assert_eq!(parse_meta_depends("Package: x\nVersion: 1\n"), None);
        assert_eq!(
            parse_meta_depends("Depends: linux-image-6.1.0-9-amd64\n"),
            None
        );
    }

    #[test]
    fn newest_complete_cached_kernel_wins() {
        let dir = std::env::temp_dir().join(format!("run-fetch-test-{}", std::process::id()));
        let make = |package: &str, version: &str, complete: bool| {
            let release = package.trim_start_matches("linux-image-");
            let root = dir.join(format!("{package}_{version}"));
            let modules = root.join("lib/modules").join(release);
            std::fs::create_dir_all(&modules).unwrap();
            std::fs::create_dir_all(root.join("boot")).unwrap();
            std::fs::write(root.join(format!("boot/vmlinuz-{release}")), b"bz").unwrap();
            if complete {
                std::fs::write(modules.join("modules.dep"), b"").unwrap();
            }
        };
        make("linux-image-6.1.0-9-amd64", "6.1.27-1", true);
        make("linux-image-6.1.0-10-amd64", "6.1.38-1", true);
        make("linux-image-6.1.0-11-amd64", "6.1.40-1", false);
        let newest = newest_cached(&dir).unwrap();
        assert_eq!(newest.release, "6.1.0-10-amd64");
        assert!(newest.vmlinuz.ends_with("boot/vmlinuz-6.1.0-10-amd64"));
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(newest_cached(&dir), None);
    }
}
