//! The differential campaign against the host CPU (harness in
//! `difftest/`). Default: 20,000 cases; set `HALIFAX_DIFF_CASES` (and
//! optionally `HALIFAX_DIFF_SEED`) for more, e.g.
//! `HALIFAX_DIFF_CASES=1000000 cargo test --release -p halifax-emu --test differential -- --nocapture`.
#![cfg(all(target_arch = "x86_64", target_os = "linux"))]

#[test]
fn emulator_matches_host_cpu() {
    let cases = std::env::var("HALIFAX_DIFF_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let seed = std::env::var("HALIFAX_DIFF_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x7e57_5eed);
    let report = halifax_difftest::run_campaign(seed, cases).expect("map native pages");
    println!(
        "halifax differential campaign: {} cases, seed {seed} ({seed:#x}), {} mismatches, {} instruction forms, {} mnemonics",
        report.cases,
        report.mismatches,
        report.templates,
        report.per_mnemonic.len()
    );
    for (m, n) in &report.per_mnemonic {
        println!("  {m:<12} {n}");
    }
    for f in &report.first_failures {
        println!("MISMATCH {f}");
    }
    assert_eq!(report.cases, cases);
    assert!(
        report.per_mnemonic.len() > 60,
        "generator covers too few mnemonics"
    );
    assert_eq!(report.mismatches, 0, "emulator differs from the CPU");
}
