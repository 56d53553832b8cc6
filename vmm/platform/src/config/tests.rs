use super::*;
use crate::layout::GIB;

/// A directory with the configuration file and the files it names.
struct Dir {
    dir: tempfile::TempDir,
}

impl Dir {
    fn new() -> Dir {
        Dir {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn file(&self, name: &str, size: u64) -> &Self {
        let path = self.dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::File::create(path).unwrap().set_len(size).unwrap();
        self
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("vm.toml")
    }

    fn load(&self, text: &str) -> Result<VmConfig, ConfigError> {
        std::fs::write(self.config_path(), text).unwrap();
        VmConfig::load(&self.config_path())
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// A Linux guest with a 1 MiB kernel; `extra` is appended.
fn linux(extra: &str) -> String {
    format!("memory = \"512M\"\n[boot]\nkernel = \"bzImage\"\n{extra}")
}

fn with_kernel() -> Dir {
    let d = Dir::new();
    d.file("bzImage", MIB);
    d
}

/// The error for `text` (with a kernel present) and its key.
fn error(text: &str) -> (String, String) {
    let e = with_kernel().load(text).unwrap_err();
    (e.key().to_owned(), e.to_string())
}

#[test]
fn a_full_linux_configuration() {
    let d = Dir::new();
    d.file("images/bzImage", 8 * MIB)
        .file("images/initrd.gz", 2 * MIB)
        .file("disk.img", 4096)
        .file("scratch.img", 4096);
    let text = r#"
memory = "5G"
cpus = 2
test-device = true
max-exits = 50_000_000
unmapped-mmio = "stop"
on-reset = "exit"
print-exits = false
milestones = true

[boot]
kernel = "images/bzImage"
initrd = "images/initrd.gz"
cmdline = "console=ttyS0"

[[disk]]
path = "disk.img"
mode = "copy-on-write"

[[disk]]
path = "scratch.img"

[[net]]
mac = "52:54:00:ab:cd:ef"
backend = "switch:lan"

[[net]]
backend = "tap:tap0"

[[console]]
device = "com1"
stdin = true

[[console]]
device = "virtio"
output = "file:logs/hvc0.log"
"#;
    let c = d.load(text).unwrap();
    let default_mac = default_mac(&d.config_path(), 1);
    assert_eq!(
        c,
        VmConfig {
            file: d.config_path(),
            memory: 5 * GIB,
            cpus: 2,
            boot: Boot::Linux {
                kernel: d.path("images/bzImage"),
                initrd: Some(d.path("images/initrd.gz")),
                cmdline: "console=ttyS0".into(),
            },
            disks: vec![
                Disk {
                    path: d.path("disk.img"),
                    mode: DiskMode::CopyOnWrite
                },
                Disk {
                    path: d.path("scratch.img"),
                    mode: DiskMode::ReadOnly
                },
            ],
            nets: vec![
                Net {
                    mac: [0x52, 0x54, 0, 0xab, 0xcd, 0xef],
                    backend: NetBackend::Switch("lan".into())
                },
                Net {
                    mac: default_mac,
                    backend: NetBackend::Tap("tap0".into())
                },
            ],
            consoles: vec![
                Console {
                    device: ConsoleDevice::Com1,
                    output: ConsoleOutput::Stdout,
                    stdin: true
                },
                Console {
                    device: ConsoleDevice::Virtio,
                    output: ConsoleOutput::File(d.path("logs/hvc0.log")),
                    stdin: false
                },
            ],
            test_device: true,
            max_exits: Some(50_000_000),
            unmapped_mmio: UnmappedMmio::Stop,
            on_reset: OnReset::Exit,
            print_exits: false,
            milestones: true,
        }
    );
    assert_eq!(c.layout().memory(), 5 * GIB);
}

#[test]
fn defaults_one_cpu_com1_on_stdio_no_limit_counters_printed() {
    let c = with_kernel().load(&linux("")).unwrap();
    assert_eq!(c.cpus, 1);
    assert_eq!(
        c.consoles,
        vec![Console {
            device: ConsoleDevice::Com1,
            output: ConsoleOutput::Stdout,
            stdin: true
        }]
    );
    assert_eq!(c.max_exits, None);
    assert_eq!(c.unmapped_mmio, UnmappedMmio::Ignore);
    assert_eq!(c.on_reset, OnReset::Restart);
    assert!(c.print_exits);
    assert!(!c.milestones);
    assert!(!c.test_device);
    assert!(c.disks.is_empty() && c.nets.is_empty());
    assert!(matches!(c.boot, Boot::Linux { initrd: None, ref cmdline, .. } if cmdline.is_empty()));
}

#[test]
fn a_multiboot_configuration_with_modules() {
    let d = Dir::new();
    d.file("k.elf", 64 * 1024).file("m1", 100).file("m2", 200);
    let c = d
        .load(
            r#"
memory = 16
[boot]
multiboot = "k.elf"
cmdline = "verbose"
modules = [{ path = "m1", cmdline = "one" }, { path = "m2" }]
"#,
        )
        .unwrap();
    assert_eq!(c.memory, 16 * MIB);
    assert_eq!(
        c.boot,
        Boot::Multiboot {
            kernel: d.path("k.elf"),
            cmdline: "verbose".into(),
            modules: vec![
                Module {
                    path: d.path("m1"),
                    cmdline: "one".into()
                },
                Module {
                    path: d.path("m2"),
                    cmdline: String::new()
                },
            ],
        }
    );
}

#[test]
fn sizes_with_units_and_plain_mib() {
    assert_eq!(parse_size("512M"), Ok(512 * MIB));
    assert_eq!(parse_size("5G"), Ok(5 * GIB));
    assert_eq!(parse_size("5GiB"), Ok(5 * GIB));
    assert_eq!(parse_size("2048k"), Ok(2 * MIB));
    assert_eq!(parse_size("1T"), Ok(1 << 40));
    for bad in ["5", "1.5G", "5X", "G", "0M", "99999999999999T", "-5M"] {
        assert!(parse_size(bad).is_err(), "{bad}");
    }
    let c = with_kernel()
        .load("memory = 768\n[boot]\nkernel = \"bzImage\"\n")
        .unwrap();
    assert_eq!(c.memory, 768 * MIB);
}

#[test]
fn bad_sizes_name_the_memory_key() {
    for (memory, says) in [
        ("\"1.5G\"", "1536M"),
        ("\"512\"", "has no unit"),
        ("\"5X\"", "not a size"),
        ("-5", "not a usable size"),
        ("true", "a size like"),
    ] {
        let (key, text) = error(&format!(
            "memory = {memory}\n[boot]\nkernel = \"bzImage\"\n"
        ));
        assert_eq!(key, "memory", "{memory}");
        assert!(text.contains(says), "{memory}: {text}");
        assert!(text.contains("vm.toml:1:"), "{text}");
    }
}

#[test]
fn memory_below_the_minimum_above_the_maximum_or_unaligned() {
    for (memory, says) in [
        ("\"8M\"", "at least 16 MiB"),
        ("\"1T\"", "at most 256 GiB"),
        ("\"513M\"", "multiple of 2 MiB"),
    ] {
        let d = Dir::new();
        d.file("k", 4096);
        let e = d
            .load(&format!("memory = {memory}\n[boot]\nmultiboot = \"k\"\n"))
            .unwrap_err();
        assert_eq!(e.key(), "memory");
        assert!(e.to_string().contains(says), "{e}");
    }
}

#[test]
fn memory_too_small_for_kernel_and_initrd() {
    let d = Dir::new();
    d.file("bzImage", 8 * MIB).file("initrd", 20 * MIB);
    let text = |memory: &str| {
        format!("memory = \"{memory}\"\n[boot]\nkernel = \"bzImage\"\ninitrd = \"initrd\"\n")
    };
    // 32 + 8*4 + 20*4 = 144 MiB needed.
    let e = d.load(&text("128M")).unwrap_err();
    assert_eq!(e.key(), "memory");
    assert!(e.to_string().contains("about 144 MiB"), "{e}");
    assert!(d.load(&text("144M")).is_ok());
}

#[test]
fn multiboot_files_must_fit_above_1mib() {
    let d = Dir::new();
    d.file("k", 10 * MIB).file("m", 6 * MIB);
    let e = d
        .load("memory = \"16M\"\n[boot]\nmultiboot = \"k\"\n[[boot.modules]]\npath = \"m\"\n")
        .unwrap_err();
    assert_eq!(e.key(), "memory");
}

#[test]
fn unknown_keys_are_named_with_their_path() {
    let (key, text) = error(&linux("frobnicate = 1\n"));
    assert_eq!(key, "boot.frobnicate");
    assert!(text.contains("unknown field `frobnicate`"), "{text}");
    assert!(text.contains("vm.toml:4:1"), "{text}");

    let (key, _) = error(&format!("cpu = 2\n{}", linux("")));
    assert_eq!(key, "cpu");

    let d = with_kernel();
    d.file("a.img", 1);
    let e = d
        .load(&linux("[[disk]]\npath = \"a.img\"\nsize = \"1G\"\n"))
        .unwrap_err();
    assert_eq!(e.key(), "disk[0].size");
}

#[test]
fn missing_keys_are_named() {
    let (key, text) = error("[boot]\nkernel = \"bzImage\"\n");
    assert_eq!(key, "memory");
    assert!(text.contains("missing field `memory`"), "{text}");
    let (key, _) = error("memory = \"1G\"\n");
    assert_eq!(key, "boot");
    let (key, _) = error(&linux("[[disk]]\nmode = \"read-only\"\n"));
    assert_eq!(key, "disk[0].path");
}

#[test]
fn wrong_values_name_their_key() {
    let d = with_kernel();
    d.file("a.img", 1);
    let e = d
        .load(&linux("[[disk]]\npath = \"a.img\"\nmode = \"rw\"\n"))
        .unwrap_err();
    assert_eq!(e.key(), "disk[0].mode");
    assert!(e.to_string().contains("copy-on-write"), "{e}");

    let (key, _) = error(&format!("cpus = \"two\"\n{}", linux("")));
    assert_eq!(key, "cpus");
    let (key, message) = error(&format!("unmapped-mmio = \"panic\"\n{}", linux("")));
    assert_eq!(key, "unmapped-mmio");
    assert!(
        message.contains("ignore") && message.contains("stop"),
        "{message}"
    );
    let (key, message) = error(&format!("on-reset = \"reboot\"\n{}", linux("")));
    assert_eq!(key, "on-reset");
    assert!(
        message.contains("restart") && message.contains("exit"),
        "{message}"
    );
}

#[test]
fn toml_syntax_errors_give_line_and_column() {
    let e = with_kernel()
        .load("memory = \"1G\"\n[boot\nkernel = 1\n")
        .unwrap_err();
    assert!(matches!(e, ConfigError::Syntax { line: 2, .. }), "{e}");
}

#[test]
fn missing_files_name_the_key_and_the_resolved_path() {
    let d = Dir::new();
    let e = d.load(&linux("")).unwrap_err();
    assert_eq!(e.key(), "boot.kernel");
    let text = e.to_string();
    assert!(
        text.contains(&d.path("bzImage").display().to_string()),
        "{text}"
    );
    assert!(
        text.contains("relative to the configuration file"),
        "{text}"
    );

    let (key, _) = error(&linux("initrd = \"nope\"\n"));
    assert_eq!(key, "boot.initrd");
    let (key, _) = error(&linux("[[disk]]\npath = \"nope.img\"\n"));
    assert_eq!(key, "disk[0].path");
    let (key, _) = error(&linux("[[disk]]\npath = \".\"\n"));
    assert_eq!(key, "disk[0].path");
    let d = with_kernel();
    d.file("empty.img", 0);
    let e = d
        .load(&linux("[[disk]]\npath = \"empty.img\"\n"))
        .unwrap_err();
    assert_eq!(e.key(), "disk[0].path");
    assert!(e.to_string().contains("is empty"), "{e}");

    let e = VmConfig::load(&d.path("absent.toml")).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }), "{e}");
}

#[test]
fn cpu_counts_out_of_range() {
    for cpus in [0, MAX_CPUS + 1, 1000] {
        let (key, text) = error(&format!("cpus = {cpus}\n{}", linux("")));
        assert_eq!(key, "cpus");
        assert!(text.contains("1 to 64"), "{text}");
    }
    assert!(with_kernel()
        .load(&format!("cpus = {MAX_CPUS}\n{}", linux("")))
        .is_ok());
}

#[test]
fn boot_needs_exactly_one_kind_of_kernel() {
    let d = with_kernel();
    d.file("mb", 10);
    let e = d.load(&linux("multiboot = \"mb\"\n")).unwrap_err();
    assert_eq!(e.key(), "boot");
    let e = d.load("memory = \"1G\"\n[boot]\n").unwrap_err();
    assert_eq!(e.key(), "boot");
    let e = d
        .load(&linux("modules = [{ path = \"mb\" }]\n"))
        .unwrap_err();
    assert_eq!(e.key(), "boot.modules");
    let e = d
        .load("memory = \"1G\"\n[boot]\nmultiboot = \"mb\"\ninitrd = \"mb\"\n")
        .unwrap_err();
    assert_eq!(e.key(), "boot.initrd");
}

#[test]
fn network_backends_and_macs() {
    for (net, key) in [
        ("backend = \"bridge:br0\"", "net[0].backend"),
        ("backend = \"switch:\"", "net[0].backend"),
        ("backend = \"tap:a-name-longer-than-15\"", "net[0].backend"),
        ("backend = \"switch:a b\"", "net[0].backend"),
        (
            "backend = \"switch:x\"\nmac = \"52:54:00:12:34\"",
            "net[0].mac",
        ),
        (
            "backend = \"switch:x\"\nmac = \"52:54:00:12:34:5g\"",
            "net[0].mac",
        ),
        (
            "backend = \"switch:x\"\nmac = \"52:54:00:12:34:56:78\"",
            "net[0].mac",
        ),
        (
            "backend = \"switch:x\"\nmac = \"01:00:5e:00:00:01\"",
            "net[0].mac",
        ),
        ("mac = \"52:54:00:12:34:56\"", "net[0].backend"),
    ] {
        let (k, text) = error(&linux(&format!("[[net]]\n{net}\n")));
        assert_eq!(k, key, "{net}: {text}");
    }
}

#[test]
fn default_macs_are_unicast_local_and_differ_per_file_and_port() {
    let a = default_mac(Path::new("/vms/a.toml"), 0);
    assert_eq!(a[0] & 1, 0);
    assert_eq!(a[0] & 2, 2);
    assert_ne!(a, default_mac(Path::new("/vms/b.toml"), 0));
    assert_ne!(a, default_mac(Path::new("/vms/a.toml"), 1));
    assert_eq!(a, default_mac(Path::new("/vms/a.toml"), 0));
}

#[test]
fn console_rules() {
    let cases = [
        (
            "[[console]]\ndevice = \"com1\"\n[[console]]\ndevice = \"com1\"\n",
            "console[1].device",
        ),
        (
            "[[console]]\ndevice = \"com1\"\nstdin = true\n[[console]]\ndevice = \"virtio\"\nstdin = true\n",
            "console[1].stdin",
        ),
        (
            "[[console]]\ndevice = \"com1\"\noutput = \"tty\"\n",
            "console[0].output",
        ),
        (
            "[[console]]\ndevice = \"com1\"\noutput = \"file:\"\n",
            "console[0].output",
        ),
        ("[[console]]\ndevice = \"com2\"\n", "console[0].device"),
        ("[[console]]\noutput = \"stdout\"\n", "console[0].device"),
    ];
    for (consoles, key) in cases {
        let (k, text) = error(&linux(consoles));
        assert_eq!(k, key, "{consoles}: {text}");
    }
    let c = with_kernel()
        .load(&linux(
            "[[console]]\ndevice = \"virtio\"\noutput = \"none\"\n",
        ))
        .unwrap();
    assert_eq!(c.consoles[0].output, ConsoleOutput::Discard);
    assert!(!c.consoles[0].stdin);
}

#[test]
fn zero_max_exits_and_too_many_pci_devices() {
    let (key, _) = error(&format!("max-exits = 0\n{}", linux("")));
    assert_eq!(key, "max-exits");

    let d = with_kernel();
    d.file("a.img", 1);
    let disks = "[[disk]]\npath = \"a.img\"\n".repeat(MAX_PCI_DEVICES + 1);
    let e = d.load(&linux(&disks)).unwrap_err();
    assert_eq!(e.key(), "disk");
    let disks = "[[disk]]\npath = \"a.img\"\n".repeat(MAX_PCI_DEVICES);
    assert!(d.load(&linux(&disks)).is_ok());
}

#[test]
fn the_example_files_are_valid() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&examples).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        // Create the files the example names (small stand-ins) beside a copy.
        let d = Dir::new();
        let raw = deserialize(&text, &path).unwrap_or_else(|e| panic!("{e}"));
        let boot = raw.boot;
        let names = boot
            .kernel
            .into_iter()
            .chain(boot.initrd)
            .chain(boot.multiboot)
            .chain(boot.modules.into_iter().flatten().map(|m| m.path))
            .chain(raw.disk.into_iter().map(|d| d.path));
        for name in names {
            d.file(&name, 4096);
        }
        d.load(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        seen += 1;
    }
    assert!(seen >= 3, "examples/*.toml: found {seen}");
}
