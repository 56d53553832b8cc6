//! The std-runtime scenario's test program is an ordinary Linux program: the
//! same static musl binary that runs as a Tern component must print, on Linux,
//! exactly the `selftest:` lines the scenario expects from the component, and end
//! with the exit code the roottask reports.

use std::path::Path;
use std::process::Command;

#[test]
fn std_selftest_prints_the_scenario_lines_on_linux() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let scenario: toml::Table = toml::from_str(
        &std::fs::read_to_string(root.join("run/scenarios/std-runtime.toml"))
            .expect("std-runtime.toml is readable"),
    )
    .expect("std-runtime.toml is valid TOML");
    let expected: Vec<&str> = scenario["expect"]
        .as_array()
        .expect("expect is an array")
        .iter()
        .filter_map(|v| v.as_str())
        .filter(|l| l.starts_with("selftest:"))
        .collect();
    assert!(
        expected.len() >= 6,
        "the scenario checks the selftest's lines"
    );

    let tmp = std::env::temp_dir().join(format!("tern-selftest-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("temporary directory");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(&root)
        .args([
            "run",
            "--quiet",
            "--release",
            "--target",
            "x86_64-unknown-linux-musl",
        ])
        .args(["-p", "std-selftest", "--"])
        .args([
            "--data",
            "run/scenarios/data/test-data.txt",
            "--exit",
            "7",
            "--tmp",
        ])
        .arg(&tmp)
        .output()
        .expect("cargo runs (scripts/setup.sh installs the musl target)");
    let _ = std::fs::remove_dir_all(&tmp);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        expected,
        "the Linux run printed other lines than the component must print\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        out.status.code(),
        Some(7),
        "the exit code the roottask reports"
    );
}
