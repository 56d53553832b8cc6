//! A BIOS-bootable GRUB ISO (`grub-mkrescue`) that loads the kernel with `multiboot2` and
//! each module with `module2` (or a Linux kernel with `linux` and its `initrd`), console on
//! the first serial port. Used for Bochs, which has no direct kernel loading.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{multiboot, words, BootFiles, BootModule, INITRD_NAME};
use crate::error::Error;
use crate::image::elf32::ElfError;
use crate::scenario::KERNEL_NAME;

/// Folder in the ISO holding the kernel and the modules (kept apart from GRUB's `/boot`).
const IMAGE_DIR: &str = "tern";

/// grub.cfg booting the kernel and modules from `/tern/`, or, with `linux`, the Linux kernel
/// and its initrd. Each word is single-quoted so GRUB expands nothing; the scenario parser
/// has refused quotes and backslashes.
pub fn grub_cfg(cmdline: &str, modules: &[BootModule], linux: bool) -> String {
    let quoted = |first: &str, rest: &str| {
        std::iter::once(first)
            .chain(words(rest))
            .map(|w| format!("'{w}'"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut cfg = String::from(
        "serial --unit=0 --speed=115200\n\
         terminal_input serial console\n\
         terminal_output serial console\n\
         set timeout=0\n\
         menuentry 'tern' {\n",
    );
    if linux {
        let words: Vec<String> = words(cmdline).map(|w| format!(" '{w}'")).collect();
        cfg += &format!("  linux /{IMAGE_DIR}/{KERNEL_NAME}{}\n", words.concat());
        cfg += &format!("  initrd /{IMAGE_DIR}/{INITRD_NAME}\n");
    } else {
        cfg += &format!(
            "  multiboot2 /{IMAGE_DIR}/{KERNEL_NAME} {}\n",
            quoted(KERNEL_NAME, cmdline)
        );
    }
    for m in modules {
        cfg += &format!(
            "  module2 /{IMAGE_DIR}/{} {}\n",
            m.name,
            quoted(&m.name, &m.args)
        );
    }
    cfg += "  boot\n}\n";
    cfg
}

/// Builds `<work>/tern.iso` from `files` and returns its path.
pub fn build_iso(files: &BootFiles, work: &Path) -> Result<PathBuf, Error> {
    let kernel = files.read_kernel()?;
    let linux = files.initrd.is_some();
    if !linux && !multiboot::has_v2(&kernel) {
        return Err(Error::Kernel {
            path: files.kernel.clone(),
            problem: ElfError::NoMultiboot2,
        });
    }
    let root = work.join("iso");
    files.stage(&root.join(IMAGE_DIR), &kernel)?;
    let grub_dir = root.join("boot").join("grub");
    std::fs::create_dir_all(&grub_dir).map_err(|source| Error::Io {
        what: "create",
        path: grub_dir.clone(),
        source,
    })?;
    let cfg_path = grub_dir.join("grub.cfg");
    std::fs::write(&cfg_path, grub_cfg(&files.cmdline, &files.modules, linux)).map_err(
        |source| Error::Io {
            what: "write",
            path: cfg_path.clone(),
            source,
        },
    )?;

    let iso = work.join("tern.iso");
    let output = Command::new("grub-mkrescue")
        .arg("-o")
        .arg(&iso)
        .arg(&root)
        .output()
        .map_err(|source| Error::ToolMissing {
            tool: "grub-mkrescue".into(),
            source,
        })?;
    if !output.status.success() || !iso.is_file() {
        return Err(Error::CommandFailed {
            command: format!("grub-mkrescue -o {} {}", iso.display(), root.display()),
            status: output.status,
            output: String::from_utf8_lossy(&output.stderr)
                .trim_end()
                .to_owned(),
        });
    }
    Ok(iso)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_boots_kernel_and_named_modules_on_serial() {
        let modules = [
            BootModule {
                name: "roottask".into(),
                path: "/x/roottask".into(),
                args: "verbose  n=2".into(),
            },
            BootModule {
                name: "config".into(),
                path: "/y/smoke.boot".into(),
                args: String::new(),
            },
        ];
        assert_eq!(
            grub_cfg("serial", &modules, false),
            "serial --unit=0 --speed=115200\n\
             terminal_input serial console\n\
             terminal_output serial console\n\
             set timeout=0\n\
             menuentry 'tern' {\n\
             \x20 multiboot2 /tern/kernel 'kernel' 'serial'\n\
             \x20 module2 /tern/roottask 'roottask' 'verbose' 'n=2'\n\
             \x20 module2 /tern/config 'config'\n\
             \x20 boot\n\
             }\n"
        );
    }

    #[test]
    fn linux_config_passes_the_bare_command_line_and_the_initrd() {
        let cfg = grub_cfg("console=ttyS0  panic=-1", &[], true);
        assert!(
            cfg.contains(
                "  linux /tern/kernel 'console=ttyS0' 'panic=-1'\n  initrd /tern/initrd\n  boot\n"
            ),
            "{cfg}"
        );
        assert!(!cfg.contains("multiboot2"), "{cfg}");
    }
}
