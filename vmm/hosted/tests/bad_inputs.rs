//! `tern-vmm` on bad configurations and bad images: it must not start the VM,
//! exit with status 2 and say which file and key are wrong and what to do.
//! The configuration errors come before any host is opened; the image errors
//! come from the loaders, after KVM is open, so those cases need /dev/kvm.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Dir {
        Dir(tempfile::tempdir().unwrap())
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }

    fn file(&self, name: &str, bytes: &[u8]) -> &Self {
        std::fs::write(self.path(name), bytes).unwrap();
        self
    }

    /// A file of `len` bytes that takes no space (its contents do not matter).
    fn sparse(&self, name: &str, len: u64) -> &Self {
        std::fs::File::create(self.path(name))
            .unwrap()
            .set_len(len)
            .unwrap();
        self
    }

    /// Runs `tern-vmm` on `vm.toml` with `text`; returns the status and stderr.
    fn run(&self, text: &str) -> (i32, String) {
        self.file("vm.toml", text.as_bytes());
        run(&[self.path("vm.toml").to_str().unwrap()])
    }
}

fn run(args: &[&str]) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tern-vmm"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("tern-vmm {args:?} still runs after 60 s: it started a VM it should refuse");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (status.code().unwrap_or(-1), stderr)
}

/// Asserts exit status 2 and that stderr has every one of `words`.
fn refused(result: (i32, String), words: &[&str]) {
    let (status, stderr) = result;
    assert_eq!(status, 2, "exit status; stderr: {stderr}");
    for word in words {
        assert!(stderr.contains(word), "stderr lacks `{word}`: {stderr}");
    }
}

fn kvm_usable() -> bool {
    let ok = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    if !ok {
        eprintln!("skipped: the image checks need /dev/kvm (tern-vmm opens KVM before loading)");
    }
    ok
}

/// A bzImage shape (boot protocol `version`, `xloadflags`): four setup
/// sectors and the boot sector, then `kernel` bytes, with `syssize` telling
/// the kernel's length and `init_size` how much it decompresses into.
fn bzimage(version: u16, xloadflags: u16, kernel: usize, init_size: u32) -> Vec<u8> {
    let mut image = vec![0u8; 5 * 512 + kernel];
    image[0x1f1] = 4; // setup_sects
    image[0x1f4..0x1f8].copy_from_slice(&(kernel as u32 / 16).to_le_bytes()); // syssize
    image[0x1fe..0x200].copy_from_slice(&0xaa55u16.to_le_bytes());
    image[0x202..0x206].copy_from_slice(b"HdrS");
    image[0x206..0x208].copy_from_slice(&version.to_le_bytes());
    image[0x211] = 1; // loadflags: LOADED_HIGH
    image[0x214..0x218].copy_from_slice(&0x10_0000u32.to_le_bytes()); // code32_start
    image[0x22c..0x230].copy_from_slice(&0x7fff_ffffu32.to_le_bytes()); // initrd_addr_max
    image[0x236..0x238].copy_from_slice(&xloadflags.to_le_bytes());
    image[0x238..0x23c].copy_from_slice(&2048u32.to_le_bytes()); // cmdline_size
    image[0x260..0x264].copy_from_slice(&init_size.to_le_bytes());
    image
}

fn linux(memory: &str, extra_boot: &str) -> String {
    format!("memory = \"{memory}\"\n[boot]\nkernel = \"vmlinuz\"\n{extra_boot}")
}

#[test]
fn usage_and_an_unreadable_configuration() {
    refused(run(&[]), &["usage: tern-vmm VM.toml"]);
    refused(run(&["a.toml", "b.toml"]), &["usage"]);
    refused(
        run(&["/nonexistent/vm.toml"]),
        &["/nonexistent/vm.toml", "cannot read the VM configuration"],
    );
}

#[test]
fn an_unknown_key_is_named_with_file_line_and_column() {
    let d = Dir::new();
    d.file("vmlinuz", b"k");
    refused(
        d.run("memory = \"64M\"\nfrobnicate = 1\n[boot]\nkernel = \"vmlinuz\"\n"),
        &[
            "vm.toml:",
            "frobnicate",
            "unknown field",
            "docs/vm-config.md",
        ],
    );
    refused(
        d.run(&linux(
            "64M",
            "[[disk]]\npath = \"vmlinuz\"\nmode = \"rw\"\n",
        )),
        &["vm.toml:", "disk[0].mode", "copy-on-write"],
    );
}

#[test]
fn a_missing_kernel_names_its_key_and_path() {
    let d = Dir::new();
    refused(
        d.run(&linux("64M", "")),
        &["vm.toml", "boot.kernel", "vmlinuz", "No such file"],
    );
    d.sparse("vmlinuz", 4 << 20);
    refused(
        d.run(&linux("64M", "initrd = \"initrd.img\"\n")),
        &["vm.toml", "boot.initrd", "initrd.img"],
    );
}

#[test]
fn memory_too_small_names_the_memory_key() {
    let d = Dir::new();
    d.sparse("vmlinuz", 8 << 20).sparse("initrd.img", 8 << 20);
    refused(d.run(&linux("8M", "")), &["vm.toml", "memory", "too small"]);
    refused(
        d.run(&linux("64M", "initrd = \"initrd.img\"\n")),
        &[
            "vm.toml",
            "memory",
            "too small for this kernel",
            "raise memory",
        ],
    );
}

#[test]
fn a_file_that_is_not_a_bzimage_is_refused_by_the_loader() {
    if !kvm_usable() {
        return;
    }
    let d = Dir::new();
    let noise: Vec<u8> = (0..100_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    d.file("vmlinuz", &noise);
    refused(
        d.run(&linux("64M", "")),
        &["vmlinuz", "not a bootable kernel", "bzImage"],
    );
}

#[test]
fn a_truncated_bzimage_is_refused_by_the_loader() {
    if !kvm_usable() {
        return;
    }
    let d = Dir::new();
    let image = bzimage(0x20f, 1, 0x10000, 0x40_0000);
    d.file("vmlinuz", &image[..image.len() - 0x4000]);
    refused(
        d.run(&linux("64M", "")),
        &["vmlinuz", "truncated", "copy the kernel again"],
    );
}

#[test]
fn a_kernel_without_a_64_bit_entry_is_refused() {
    if !kvm_usable() {
        return;
    }
    let d = Dir::new();
    d.file("vmlinuz", &bzimage(0x20a, 0, 0x1000, 0x40_0000));
    refused(d.run(&linux("64M", "")), &["vmlinuz", "64-bit", "2.12"]);
}

#[test]
fn an_initrd_without_room_above_the_kernel_is_refused() {
    if !kvm_usable() {
        return;
    }
    // The kernel decompresses into 60 MiB from 1 MiB: a 4 MiB initrd has no
    // room below the end of a 64 MiB VM's RAM.
    let d = Dir::new();
    d.file("vmlinuz", &bzimage(0x20f, 1, 0x1000, 60 << 20));
    d.sparse("initrd.img", 4 << 20);
    refused(
        d.run(&linux("64M", "initrd = \"initrd.img\"\n")),
        &["initrd", "too small", "give the VM more memory"],
    );
}

#[test]
fn a_multiboot_kernel_that_is_not_elf_is_refused() {
    if !kvm_usable() {
        return;
    }
    let d = Dir::new();
    d.file("kernel.elf", b"#!/bin/sh\necho not a kernel\n");
    refused(
        d.run("memory = \"16M\"\n[boot]\nmultiboot = \"kernel.elf\"\n"),
        &["kernel.elf", "not a bootable kernel", "not an ELF"],
    );
}

/// The image errors name the configuration file too.
#[test]
fn loader_errors_name_the_configuration_file() {
    if !kvm_usable() {
        return;
    }
    let d = Dir::new();
    d.file(
        "vmlinuz",
        b"MZ not a kernel at all, but long enough to have a header..",
    );
    let (_, stderr) = d.run(&linux("64M", ""));
    let config = d.path("vm.toml");
    assert!(
        stderr.contains(&format!("{}:", Path::new(&config).display())),
        "{stderr}"
    );
}
