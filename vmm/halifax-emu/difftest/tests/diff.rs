//! The differential campaign. Default: a quick run; set
//! `HALIFAX_DIFF_CASES` (and optionally `HALIFAX_DIFF_SEED`) for more.

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
        "halifax differential campaign: {} cases, seed {:#x}, {} mismatches, {} mnemonics",
        report.cases,
        seed,
        report.mismatches,
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
