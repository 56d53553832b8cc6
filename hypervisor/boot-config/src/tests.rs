use super::*;
use std::string::ToString;
use std::vec;

const EXAMPLE: &str = r#"# kernel-smoke boot configuration
verbose = true

[[component]]
name = "pong"              # unique; [a-z0-9_-], 1..=32 chars
binary = "ipc-pong"        # boot module name (defaults to name)
memory = "4M"              # memory quota
cpu = 0
priority = 10
args = ["--calls", "10000"]
provides = ["echo"]
uses = []
ioports = ["0x40-0x43", "0x61"]
irqs = [0]

[[component]]
name = "ping"
memory = 0x10_0000
cpu = 1
priority = 200
args = [
    "--target", # comments inside arrays
    "pong",
]
uses = ["echo"]
"#;

fn err(text: &str) -> ConfigError {
    parse(text).expect_err("config should be rejected")
}

/// Wraps component lines into a minimal valid config.
fn with_component(lines: &str) -> String {
    std::format!("[[component]]\nname = \"a\"\nmemory = \"4K\"\n{lines}\n")
}

#[test]
fn parses_the_example() {
    let config = parse(EXAMPLE).unwrap();
    assert!(config.verbose);
    assert_eq!(config.components.len(), 2);
    let pong = &config.components[0];
    assert_eq!(
        *pong,
        Component {
            name: "pong".into(),
            binary: "ipc-pong".into(),
            memory: 4 << 20,
            cpu: 0,
            priority: 10,
            args: vec!["--calls".into(), "10000".into()],
            provides: vec!["echo".into()],
            uses: vec![],
            ioports: vec![
                PortRange {
                    first: 0x40,
                    last: 0x43
                },
                PortRange {
                    first: 0x61,
                    last: 0x61
                }
            ],
            irqs: vec![0],
            kind: Kind::Native,
            cpus: vec![0],
            env: vec![],
            vfs: vec![],
            stdio: ["/dev/null".into(), "/dev/log".into(), "/dev/log".into()],
            after: None,
        }
    );
    let ping = &config.components[1];
    assert_eq!(ping.binary, "ping", "binary defaults to the name");
    assert_eq!(ping.memory, 0x10_0000);
    assert_eq!((ping.cpu, ping.priority), (1, 200));
    assert_eq!(ping.args, ["--target", "pong"]);
    assert_eq!(ping.uses, ["echo"]);
}

#[test]
fn defaults_and_empty_input() {
    assert_eq!(parse("").unwrap(), BootConfig::default());
    assert_eq!(
        parse("# only a comment\n\n  \n").unwrap(),
        BootConfig::default()
    );
    let c = parse(&with_component("")).unwrap();
    let a = &c.components[0];
    assert!(!c.verbose);
    assert_eq!((a.cpu, a.priority, a.memory), (0, 10, 4096));
    assert!(a.args.is_empty() && a.provides.is_empty() && a.ioports.is_empty());
}

#[test]
fn crlf_line_endings() {
    let text = EXAMPLE.replace('\n', "\r\n");
    assert_eq!(parse(&text).unwrap(), parse(EXAMPLE).unwrap());
    assert!(err("verbose = true\rname = 1")
        .message
        .contains("carriage return"));
}

#[test]
fn string_escapes_and_unicode() {
    let c = parse(&with_component(
        r#"args = ["a\"b", "c\\d", "e\nf", "g\th", "ünï ✓"]"#,
    ))
    .unwrap();
    assert_eq!(
        c.components[0].args,
        ["a\"b", "c\\d", "e\nf", "g\th", "ünï ✓"]
    );
    let e = err(&with_component(r#"args = ["\x41"]"#));
    assert!(e.message.contains("unsupported escape \\x"), "{e}");
    assert_eq!((e.line, e.column), (4, Some(11)));
    let e = err(&with_component("args = [\"a\u{1}\"]"));
    assert!(e.message.contains("control character"), "{e}");
}

#[test]
fn integers() {
    for (text, value) in [
        ("4096", 4096),
        ("1_048_576", 1 << 20),
        ("0x1000", 4096),
        ("0xFFFF_F000", 0xffff_f000),
        ("+8192", 8192),
        ("18446744073709547520", u64::MAX - 4095),
    ] {
        let c = parse(&std::format!(
            "[[component]]\nname = \"a\"\nmemory = {text}\n"
        ))
        .unwrap();
        assert_eq!(c.components[0].memory, value, "{text}");
    }
    for text in [
        "1__0",
        "_1",
        "1_",
        "0x",
        "0x_1",
        "12z",
        "1.5",
        "0o7",
        "18446744073709551616",
    ] {
        let e = err(&std::format!("verbose = {text}\n"));
        assert_eq!((e.line, e.column), (1, Some(11)), "{text}: {e}");
    }
    assert!(err("verbose = 18446744073709551616")
        .message
        .contains("too large"));
    assert!(err("verbose = -1").message.contains("negative"));
}

#[test]
fn memory_sizes() {
    let mem = |v: &str| parse(&std::format!("[[component]]\nname = \"a\"\nmemory = {v}\n"));
    assert_eq!(mem("\"64K\"").unwrap().components[0].memory, 64 << 10);
    assert_eq!(mem("\"2G\"").unwrap().components[0].memory, 2 << 30);
    assert_eq!(mem("\"8192\"").unwrap().components[0].memory, 8192);
    assert_eq!(mem("\"0x2000\"").unwrap().components[0].memory, 8192);
    assert_eq!(mem("\"1_0M\"").unwrap().components[0].memory, 10 << 20);
    let e = mem("\"4Q\"").unwrap_err();
    assert_eq!(
        e.to_string(),
        "line 3: key \"memory\": \"4Q\" is not a size (use bytes or a K/M/G suffix, e.g. \"4M\")"
    );
    for bad in [
        "\"\"",
        "\"M\"",
        "\"4 M\"",
        "\"-4M\"",
        "\"99999999999999999999G\"",
        "\"17179869184G\"",
    ] {
        assert!(
            mem(bad).unwrap_err().message.contains("is not a size"),
            "{bad}"
        );
    }
    for bad in ["0", "4095", "\"0K\"", "\"1K\"", "4097"] {
        assert!(
            mem(bad)
                .unwrap_err()
                .message
                .contains("multiple of the 4 KiB"),
            "{bad}"
        );
    }
    let e = mem("4M").unwrap_err();
    assert!(e.message.contains("write it in quotes"), "{e}");
    assert!(mem("true").unwrap_err().message.contains("expected a size"));
}

#[test]
fn names_are_checked() {
    let name = |n: &str| parse(&std::format!("[[component]]\nname = {n}\nmemory = 4096\n"));
    assert!(name("\"a-b_9\"").is_ok());
    assert!(name("\"abcdefghijklmnopqrstuvwxyz012345\"").is_ok());
    for bad in [
        "\"\"",
        "\"Pong\"",
        "\"a b\"",
        "\"abcdefghijklmnopqrstuvwxyz0123456\"",
        "\"ä\"",
    ] {
        let e = name(bad).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("name"));
        assert!(
            e.message.contains("not a valid component name"),
            "{bad}: {e}"
        );
    }
    assert!(name("7").unwrap_err().message.contains("expected a string"));
    let e = err(&with_component("binary = \"\""));
    assert_eq!(e.key.as_deref(), Some("binary"));
}

#[test]
fn missing_required_keys() {
    let e = err("[[component]]\nname = \"a\"\n");
    assert_eq!(e.line, 1);
    assert_eq!(e.key.as_deref(), Some("memory"));
    assert!(e.message.contains("missing required key \"memory\""), "{e}");
    let e = err("verbose = false\n\n[[component]]\nmemory = \"4M\"\n");
    assert_eq!((e.line, e.key.as_deref()), (3, Some("name")));
}

#[test]
fn unknown_and_duplicate_keys() {
    let e = err("verbos = true\n");
    assert_eq!(e.key.as_deref(), Some("verbos"));
    assert!(
        e.message
            .contains("known keys: verbose, terminal, [[component]]"),
        "{e}"
    );
    let e = err(&with_component("memroy = 5"));
    assert_eq!((e.line, e.key.as_deref()), (4, Some("memroy")));
    assert!(
        e.message.contains("known keys: name, binary, memory"),
        "{e}"
    );
    let e = err(&with_component("cpu = 1\ncpu = 2"));
    assert_eq!(e.line, 5);
    assert!(
        e.message
            .contains("duplicate key \"cpu\" (first set on line 4)"),
        "{e}"
    );
    let e = err(&with_component("verbose = true"));
    assert!(e.message.contains("before the first [[component]]"), "{e}");
    let e = err("verbose = true\nverbose = false\n");
    assert!(e.message.contains("duplicate key"), "{e}");
    // Future sub-sections are rejected for now, with a clear message.
    let e = err(&with_component("[[component.file]]\npath = \"x\""));
    assert_eq!(e.key.as_deref(), Some("file"));
    assert!(e.message.contains("no sub-sections"), "{e}");
    // [component] instead of [[component]].
    let e = err("[component]\nname = \"a\"\n");
    assert!(e.message.contains("[[component]]"), "{e}");
    let e = err("component = 5\n");
    assert!(e.message.contains("[[component]]"), "{e}");
}

#[test]
fn wrong_types() {
    let cases = [
        ("verbose = 1", "expected true or false, found an integer"),
        (
            "verbose = \"yes\"",
            "expected true or false, found a string",
        ),
    ];
    for (text, msg) in cases {
        assert!(err(text).message.contains(msg), "{text}");
    }
    let cases = [
        ("cpu = \"0\"", "expected an integer, found a string"),
        ("cpu = 4294967296", "not a CPU number"),
        ("priority = 0", "not in 1..=255"),
        ("priority = 256", "not in 1..=255"),
        ("args = \"x\"", "expected an array"),
        (
            "args = [1]",
            "array elements must be strings, found an integer",
        ),
        ("provides = [true]", "must be strings, found a boolean"),
        ("uses = [\"Echo\"]", "not a valid service name"),
        ("provides = [\"e\", \"e\"]", "lists service \"e\" twice"),
        ("irqs = [256]", "not an interrupt line below 256"),
        ("irqs = [\"1\"]", "expected interrupt numbers"),
        ("irqs = [3, 3]", "lists interrupt 3 twice"),
        ("irqs = 3", "expected an array"),
    ];
    for (line, msg) in cases {
        let e = err(&with_component(line));
        assert_eq!(e.line, 4, "{line}");
        assert!(e.message.contains(msg), "{line}: {e}");
    }
}

#[test]
fn io_ports() {
    let ports = |v: &str| parse(&with_component(&std::format!("ioports = {v}")));
    let r = |first, last| PortRange { first, last };
    assert_eq!(
        ports("[\"0x3f8-0x3ff\", 0x80, \"96\", \"0xffff\", \" 0x70 - 0x71 \"]")
            .unwrap()
            .components[0]
            .ioports,
        [
            r(0x3f8, 0x3ff),
            r(0x80, 0x80),
            r(96, 96),
            r(0xffff, 0xffff),
            r(0x70, 0x71)
        ]
    );
    for bad in [
        "[\"0x10000\"]",
        "[0x10000]",
        "[\"0x40-\"]",
        "[\"-0x40\"]",
        "[\"0x40-0x43-0x45\"]",
        "[\"x\"]",
        "[true]",
    ] {
        let e = ports(bad).unwrap_err();
        assert!(e.message.contains("is not a port range"), "{bad}: {e}");
    }
    assert!(ports("[\"0x43-0x40\"]")
        .unwrap_err()
        .message
        .contains("backwards"));
    let e = ports("[\n  \"0x40-0x43\",\n  \"0x10\",\n  \"0x42\",\n]").unwrap_err();
    assert_eq!(e.line, 7, "reported at the later entry");
    assert!(e.message.contains("0x40-0x43 overlaps 0x42-0x42"), "{e}");
}

#[test]
fn services_across_components() {
    let e = err(
        "[[component]]\nname = \"ping\"\nmemory = 4096\nuses = [\"echo\"]\n\
         [[component]]\nname = \"pong\"\nmemory = 4096\n",
    );
    assert_eq!(
        e.to_string(),
        "line 4: key \"uses\": component ping uses service \"echo\" but no component provides it"
    );
    let e = err(
        "[[component]]\nname = \"a\"\nmemory = 4096\nprovides = [\"echo\"]\n\
         [[component]]\nname = \"b\"\nmemory = 4096\nprovides = [\"x\", \"echo\"]\n",
    );
    assert_eq!(e.line, 8);
    assert!(
        e.message.contains("\"echo\" is provided by both a and b"),
        "{e}"
    );
    let e = err(
        "[[component]]\nname = \"a\"\nmemory = 4096\n[[component]]\nname = \"a\"\nmemory = 4096\n",
    );
    assert_eq!(e.line, 5);
    assert!(
        e.message
            .contains("already used by the component on line 2"),
        "{e}"
    );
    // A component may use its own service; order of components does not matter.
    assert!(parse(
        "[[component]]\nname = \"b\"\nmemory = 4096\nuses = [\"s\"]\n\
         [[component]]\nname = \"a\"\nmemory = 4096\nprovides = [\"s\"]\nuses = [\"s\"]\n"
    )
    .is_ok());
}

#[test]
fn syntax_errors_have_positions() {
    let cases: [(&str, (usize, usize), &str); 20] = [
        ("verbose = \"abc\n", (1, 11), "unterminated string"),
        ("verbose = \"abc", (1, 11), "unterminated string"),
        ("x = [1, 2\n\n", (1, 5), "unterminated array"),
        ("x = [1 2]", (1, 8), "separate elements with \",\""),
        ("x = [[1]]", (1, 6), "nested arrays"),
        ("x = {a = 1}", (1, 5), "inline tables"),
        ("x = 'lit'", (1, 5), "literal"),
        ("x = \n", (1, 5), "missing value"),
        ("x = # c", (1, 5), "missing value"),
        ("x", (1, 2), "expected \"=\""),
        ("x 1", (1, 3), "expected \"=\""),
        ("a.b = 1", (1, 2), "dotted keys"),
        ("\"a\" = 1", (1, 1), "quoted keys"),
        ("x = yes", (1, 5), "\"yes\" is not a value"),
        ("x = true false", (1, 10), "after the value"),
        ("[[component]", (1, 13), "]]"),
        ("[component", (1, 11), "\"]\""),
        ("[]", (1, 2), "expected a key"),
        ("\n\n  = 3", (3, 3), "expected a key"),
        ("x = 1\n[[x]]", (2, 1), "conflicts with \"x\""),
    ];
    for (text, (line, column), msg) in cases {
        let e = err(text);
        assert_eq!((e.line, e.column), (line, Some(column)), "{text:?}: {e}");
        assert!(e.message.contains(msg), "{text:?}: {e}");
    }
    // Columns count characters, not bytes.
    let e = err("x = [\"ä\", ?]");
    assert_eq!(e.column, Some(11));
}

#[test]
fn invalid_utf8_is_reported_with_offset() {
    let mut bytes = b"verbose = true\n# caf".to_vec();
    bytes.extend_from_slice(&[0xc3, 0x28]);
    let e = parse_bytes(&bytes).unwrap_err();
    assert_eq!(e.line, 2);
    assert!(e.message.contains("byte offset 20"), "{e}");
    assert!(parse_bytes(EXAMPLE.as_bytes()).unwrap().verbose);
}

#[test]
fn document_tree_supports_future_sections() {
    let doc = document::read(
        "top = 1\n[[component]]\nname = \"a\"\n[[component.file]]\npath = \"/x\"\n\
         [[component.file]]\npath = \"/y\"\n[[component]]\nname = \"b\"\n[net]\nmtu = 1500\n\
         [net.ip]\naddr = \"10.0.0.1\"\n",
    )
    .unwrap();
    let Some(Entry {
        item: Item::Array(components),
        ..
    }) = doc.get("component")
    else {
        panic!("components");
    };
    assert_eq!(components.len(), 2);
    let Some(Entry {
        item: Item::Array(files),
        ..
    }) = components[0].get("file")
    else {
        panic!("files");
    };
    assert_eq!(files.len(), 2);
    assert_eq!(files[1].pos.line, 6);
    let Some(Entry {
        item: Item::Table(net),
        ..
    }) = doc.get("net")
    else {
        panic!("net");
    };
    assert!(net.get("mtu").is_some() && net.get("ip").is_some());
    // Tables defined twice, or implicitly then explicitly.
    assert!(document::read("[a]\n[a]\n")
        .unwrap_err()
        .message
        .contains("defined twice"));
    assert!(document::read("[a.b]\n[a]\nx = 1\n").is_ok());
    assert!(document::read("[a]\nb = 1\n[a.b]\n").is_err());
    assert!(document::read("[[a]]\n[a]\n").is_err());
}

/// Hostile inputs: random bytes and mutations of the example must never
/// panic, and large inputs must not take quadratic time.
#[test]
fn hostile_inputs_never_panic() {
    let mut state = 0x853c_49e6_748f_ea9bu64;
    let mut rng = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let alphabet = b"[]=\"\\#,\n\r\t -_.0x19aKMz{}'+";
    for _ in 0..20_000 {
        let mut bytes = EXAMPLE.as_bytes().to_vec();
        for _ in 0..1 + rng() % 6 {
            let at = rng() as usize % bytes.len();
            match rng() % 3 {
                0 => bytes[at] = alphabet[rng() as usize % alphabet.len()],
                1 => {
                    bytes.remove(at);
                }
                _ => bytes.insert(at, rng() as u8),
            }
        }
        if let Err(e) = parse_bytes(&bytes) {
            assert!(e.line >= 1 && !e.message.is_empty());
        }
    }
}

#[test]
fn large_inputs_stay_linear() {
    // 50k array elements and 5k components parse quickly.
    let mut text = String::from("[[component]]\nname = \"a\"\nmemory = 4096\nargs = [\n");
    for i in 0..50_000 {
        text.push_str(&std::format!("  \"{i}\",\n"));
    }
    text.push_str("]\nioports = [");
    for port in 0..0x8000 {
        text.push_str(&std::format!("{:#x}, ", port * 2));
    }
    text.push_str("]\n");
    for i in 0..5000 {
        text.push_str(&std::format!(
            "[[component]]\nname = \"c{i}\"\nmemory = 4096\n"
        ));
    }
    let config = parse(&text).unwrap();
    assert_eq!(config.components.len(), 5001);
    assert_eq!(config.components[0].args.len(), 50_000);
    assert_eq!(config.components[0].ioports.len(), 0x8000);
    // Deep bracket nesting is an error, not a stack overflow.
    let deep = std::format!("x = {}", "[".repeat(100_000));
    assert!(err(&deep).message.contains("nested arrays"));
}

const LINUX: &str = r#"
terminal = "app"

[[component]]
name = "app"
kind = "linux"
binary = "std-selftest"
memory = "600M"
cpus = [1, 0]
env = ["RUST_BACKTRACE=0", "HOME=/"]
vfs = ["/dev/log = log", "/tmp = ram 16M"]
stdin = "/dev/terminal"

[[component]]
name = "later"
memory = "1M"
after = "app"
"#;

#[test]
fn parses_linux_components() {
    let config = parse(LINUX).unwrap();
    assert_eq!(config.terminal.as_deref(), Some("app"));
    let app = &config.components[0];
    assert_eq!(app.kind, Kind::Linux);
    assert_eq!(app.cpus, [1, 0]);
    assert_eq!(app.cpu, 1, "the first of `cpus` when `cpu` is not given");
    assert_eq!(app.env, ["RUST_BACKTRACE=0", "HOME=/"]);
    assert_eq!(app.vfs, ["/dev/log = log", "/tmp = ram 16M"]);
    assert_eq!(app.stdio[0], "/dev/terminal");
    assert_eq!(app.stdio[1], "/dev/log");
    assert_eq!(config.components[1].after.as_deref(), Some("app"));
    assert_eq!(config.components[1].kind, Kind::Native);
}

#[test]
fn linux_keys_are_checked() {
    let bad = |from: &str, to: &str| parse(&LINUX.replace(from, to)).unwrap_err().to_string();
    assert!(bad("\"linux\"", "\"windows\"").contains("write \"native\" or \"linux\""));
    assert!(bad("\"HOME=/\"", "\"HOME\"").contains("\"HOME\" is not NAME=value"));
    assert!(bad("cpus = [1, 0]", "cpus = [1, 1]").contains("lists CPU 1 twice"));
    assert!(bad("cpus = [1, 0]", "cpus = []").contains("lists no CPU"));
    assert!(bad("cpus = [1, 0]", "cpus = [1]\ncpu = 0").contains("CPU 0 is not among `cpus`"));
    assert!(bad("after = \"app\"", "after = \"nobody\"").contains("not another component"));
    assert!(bad("terminal = \"app\"", "terminal = \"tty\"").contains("does not have"));
    assert!(bad("\"/dev/terminal\"", "\"dev/terminal\"").contains("not an absolute path"));
    let native_env = bad("kind = \"linux\"\n", "");
    assert!(
        native_env.contains("applies to kind = \"linux\""),
        "{native_env}"
    );
}
