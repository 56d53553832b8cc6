use super::*;
use crate::layout::{GIB, MIB};

const PM: PmBlock = PmBlock {
    pm1a_evt: 0x600,
    pm1a_cnt: 0x604,
    pm_tmr: 0x608,
    pm_tmr_32bit: true,
    slp_typ_s5: 5,
    reset_port: 0xcf9,
    reset_value: 0x06,
};

fn build_for(memory: u64, cpus: u32, x2apic: bool) -> AcpiTables {
    let layout = MemoryLayout::new(memory).unwrap();
    let config = AcpiConfig {
        layout: &layout,
        cpus,
        x2apic,
        pm: PM,
        com1: true,
    };
    build(&config, layout::ACPI_TABLES).unwrap()
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}
fn sum(b: &[u8]) -> u8 {
    b.iter().fold(0u8, |a, x| a.wrapping_add(*x))
}

/// The table at guest-physical `addr`, checked: inside the image, its
/// signature, its length and a zero checksum.
fn table<'a>(t: &'a AcpiTables, addr: u64, signature: &[u8; 4]) -> &'a [u8] {
    assert!(addr >= t.base, "{addr:#x} below the image");
    let at = (addr - t.base) as usize;
    assert_eq!(&t.bytes[at..at + 4], signature, "at {addr:#x}");
    let length = u32_at(&t.bytes, at + 4) as usize;
    assert!(
        at + length <= t.bytes.len(),
        "{signature:?} runs past the image"
    );
    let bytes = &t.bytes[at..at + length];
    assert_eq!(sum(bytes), 0, "{signature:?} checksum");
    bytes
}

/// (signature, address) of the XSDT's entries.
fn xsdt_entries(t: &AcpiTables) -> Vec<([u8; 4], u64)> {
    let rsdp = &t.bytes[(t.rsdp - t.base) as usize..][..36];
    let xsdt = table(t, u64_at(rsdp, 24), b"XSDT");
    xsdt[36..]
        .chunks(8)
        .map(|c| {
            let addr = u64_at(c, 0);
            let at = (addr - t.base) as usize;
            (t.bytes[at..at + 4].try_into().unwrap(), addr)
        })
        .collect()
}

fn find(t: &AcpiTables, signature: &[u8; 4]) -> Vec<u8> {
    let (_, addr) = xsdt_entries(t)
        .into_iter()
        .find(|(s, _)| s == signature)
        .unwrap_or_else(|| panic!("no {signature:?} in the XSDT"));
    table(t, addr, signature).to_vec()
}

#[test]
fn the_rsdp_points_to_the_xsdt_which_lists_fadt_madt_mcfg() {
    let t = build_for(512 * MIB, 2, false);
    assert_eq!(t.base, 0xE_0000);
    assert_eq!(t.rsdp, 0xE_0000);
    assert!(t.bytes.len() as u64 <= layout::ACPI_TABLES.end - layout::ACPI_TABLES.start);
    let rsdp = &t.bytes[..36];
    assert_eq!(&rsdp[..8], b"RSD PTR ");
    assert_eq!(rsdp[15], 2, "revision 2 (ACPI 2.0+, has an XSDT)");
    assert_eq!(sum(&rsdp[..20]), 0, "ACPI 1.0 checksum");
    assert_eq!(sum(rsdp), 0, "extended checksum");
    assert_eq!(u32_at(rsdp, 20), 36);
    assert_eq!(&rsdp[9..15], b"TERN  ");
    let signatures: Vec<[u8; 4]> = xsdt_entries(&t).into_iter().map(|(s, _)| s).collect();
    assert_eq!(signatures, [*b"FACP", *b"APIC", *b"MCFG"]);
}

#[test]
fn the_fadt_points_to_dsdt_and_facs() {
    let t = build_for(512 * MIB, 1, false);
    let fadt = find(&t, b"FACP");
    assert_eq!(fadt.len(), 276, "FADT revision 6 length");
    assert_eq!(fadt[8], 6, "major revision");
    let dsdt = u32_at(&fadt, 40) as u64;
    assert_eq!(u64_at(&fadt, 140), dsdt, "X_DSDT equals DSDT");
    let dsdt = table(&t, dsdt, b"DSDT");
    assert_eq!(dsdt[8], 2, "DSDT revision 2: 64-bit integers");
    let facs = u32_at(&fadt, 36) as u64;
    assert_eq!(
        u64_at(&fadt, 132),
        0,
        "X_FIRMWARE_CTRL zero when FIRMWARE_CTRL is set"
    );
    assert_eq!(facs % 64, 0, "FACS 64-byte aligned");
    let at = (facs - t.base) as usize;
    assert_eq!(&t.bytes[at..at + 4], b"FACS");
    assert_eq!(u32_at(&t.bytes, at + 4), 64);
}

#[test]
fn the_fadt_has_the_pm_block_reset_register_and_legacy_flags() {
    let t = build_for(512 * MIB, 1, false);
    let f = find(&t, b"FACP");
    assert_eq!(u16_at(&f, 46), 9, "SCI_INT");
    assert_eq!(u32_at(&f, 48), 0, "no SMI_CMD");
    assert_eq!(u32_at(&f, 56), 0x600, "PM1a_EVT_BLK");
    assert_eq!(u32_at(&f, 64), 0x604, "PM1a_CNT_BLK");
    assert_eq!(u32_at(&f, 76), 0x608, "PM_TMR_BLK");
    assert_eq!(
        u32_at(&f, 60) | u32_at(&f, 68) | u32_at(&f, 80),
        0,
        "no PM1b, GPE0"
    );
    assert_eq!(
        &f[88..92],
        &[4, 2, 0, 4],
        "PM1_EVT/CNT, PM2_CNT, PM_TMR lengths"
    );
    assert_eq!(
        u16_at(&f, 109),
        0b111,
        "IAPC_BOOT_ARCH: legacy devices, 8042, no VGA"
    );
    let flags = u32_at(&f, 112);
    assert_ne!(flags & 1 << 10, 0, "RESET_REG_SUP");
    assert_ne!(flags & 1 << 8, 0, "TMR_VAL_EXT (32-bit PM timer)");
    assert_eq!(
        flags & 1 << 4,
        0,
        "PWR_BUTTON clear: the power button is a fixed feature"
    );
    assert_eq!(flags & 1 << 20, 0, "not HW_REDUCED_ACPI");
    // RESET_REG: system I/O, 8 bits at 0xcf9; RESET_VALUE 6.
    assert_eq!(&f[116..120], &[1, 8, 0, 1]);
    assert_eq!(u64_at(&f, 120), 0xcf9);
    assert_eq!(f[128], 6);
    // X_PM1a_EVT_BLK / X_PM1a_CNT_BLK / X_PM_TMR_BLK as I/O GAS.
    for (at, port, bits, access) in [
        (148, 0x600, 32, 2),
        (172, 0x604, 16, 2),
        (208, 0x608, 32, 3),
    ] {
        assert_eq!(f[at], 1, "I/O space at {at}");
        assert_eq!(f[at + 1], bits, "width at {at}");
        assert_eq!(f[at + 3], access, "access size at {at}");
        assert_eq!(u64_at(&f, at + 4), port);
    }
    assert_eq!(&f[268..276], b"TernVMM\0");

    // A 24-bit timer leaves TMR_VAL_EXT clear.
    let layout = MemoryLayout::new(512 * MIB).unwrap();
    let pm = PmBlock {
        pm_tmr_32bit: false,
        ..PM
    };
    let config = AcpiConfig {
        layout: &layout,
        cpus: 1,
        x2apic: false,
        pm,
        com1: true,
    };
    let t = build(&config, layout::ACPI_TABLES).unwrap();
    assert_eq!(u32_at(&find(&t, b"FACP"), 112) & 1 << 8, 0);
}

/// MADT entries as (type, bytes).
fn madt_entries(madt: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut entries = Vec::new();
    let mut at = 44;
    while at < madt.len() {
        let (kind, len) = (madt[at], madt[at + 1] as usize);
        assert!(len >= 2 && at + len <= madt.len(), "entry at {at} overruns");
        entries.push((kind, madt[at..at + len].to_vec()));
        at += len;
    }
    assert_eq!(at, madt.len(), "entries fill the table exactly");
    entries
}

fn check_common_madt(madt: &[u8], entries: &[(u8, Vec<u8>)]) {
    assert_eq!(u32_at(madt, 36), 0xFEE0_0000, "local APIC address");
    assert_eq!(madt[8], 5, "revision");
    assert_eq!(u32_at(madt, 40), 1, "PCAT_COMPAT");
    let of = |k: u8| entries.iter().filter(move |(t, _)| *t == k).map(|(_, e)| e);
    let ioapics: Vec<_> = of(1).collect();
    assert_eq!(ioapics.len(), 1);
    assert_eq!(ioapics[0][2], IOAPIC_ID);
    assert_eq!(u32_at(ioapics[0], 4), 0xFEC0_0000);
    assert_eq!(u32_at(ioapics[0], 8), 0, "GSI base");
    let isos: Vec<(u8, u8, u32, u16)> = of(2)
        .map(|e| (e[2], e[3], u32_at(e, 4), u16_at(e, 8)))
        .collect();
    assert_eq!(isos, [(0, 0, 2, 0), (0, 9, 9, 0b1101)]);
}

#[test]
fn the_madt_lists_one_local_apic_per_cpu_the_ioapic_overrides_and_nmi() {
    for cpus in [1, 2, 64] {
        let t = build_for(512 * MIB, cpus, false);
        let madt = find(&t, b"APIC");
        let entries = madt_entries(&madt);
        check_common_madt(&madt, &entries);
        let lapics: Vec<(u8, u8, u32)> = entries
            .iter()
            .filter(|(k, _)| *k == 0)
            .map(|(_, e)| (e[2], e[3], u32_at(e, 4)))
            .collect();
        let expected: Vec<_> = (0..cpus as u8).map(|i| (i, i, 1)).collect();
        assert_eq!(lapics, expected, "uid, APIC ID, enabled");
        let nmis: Vec<_> = entries.iter().filter(|(k, _)| *k == 4).collect();
        assert_eq!(nmis.len(), 1);
        assert_eq!(nmis[0].1, [4, 6, 0xff, 0b0101, 0, 1], "all CPUs, LINT1");
        assert!(entries.iter().all(|(k, _)| *k != 9 && *k != 10));
    }
}

#[test]
fn the_madt_in_x2apic_style() {
    let t = build_for(512 * MIB, 3, true);
    let madt = find(&t, b"APIC");
    let entries = madt_entries(&madt);
    check_common_madt(&madt, &entries);
    let x2apics: Vec<(u32, u32, u32)> = entries
        .iter()
        .filter(|(k, _)| *k == 9)
        .map(|(_, e)| {
            assert_eq!(e.len(), 16);
            (u32_at(e, 4), u32_at(e, 8), u32_at(e, 12))
        })
        .collect();
    assert_eq!(
        x2apics,
        [(0, 1, 0), (1, 1, 1), (2, 1, 2)],
        "ID, enabled, UID"
    );
    let nmis: Vec<_> = entries.iter().filter(|(k, _)| *k == 10).collect();
    assert_eq!(nmis.len(), 1);
    assert_eq!(
        nmis[0].1,
        [10, 12, 0b0101, 0, 0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0]
    );
    assert!(entries.iter().all(|(k, _)| *k != 0 && *k != 4));
}

#[test]
fn the_mcfg_describes_ecam_for_bus_0() {
    let t = build_for(512 * MIB, 1, false);
    let mcfg = find(&t, b"MCFG");
    assert_eq!(mcfg.len(), 36 + 8 + 16);
    assert_eq!(u64_at(&mcfg, 44), layout::ECAM.start);
    assert_eq!(u16_at(&mcfg, 52), 0, "segment");
    assert_eq!(&mcfg[54..56], &[0, 0], "buses 0..=0");
}

fn dsdt_of(t: &AcpiTables) -> Vec<u8> {
    let fadt = find(t, b"FACP");
    table(t, u32_at(&fadt, 40) as u64, b"DSDT").to_vec()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn the_dsdt_has_the_pci_root_devices_and_s5() {
    let t = build_for(5 * GIB, 2, false);
    let dsdt = dsdt_of(&t);
    for name in [
        b"_SB_", b"PCI0", b"_PRT", b"COM1", b"RTC_", b"KBD_", b"MBRD",
    ] {
        assert!(contains(&dsdt, name), "{}", String::from_utf8_lossy(name));
    }
    // Name(\_S5, Package(4) { 5, 5, 0, 0 })
    assert!(contains(
        &dsdt,
        &[0x08, b'\\', b'_', b'S', b'5', b'_', 0x12, 0x08, 0x04, 0x0a, 5, 0x0a, 5, 0, 0]
    ));
    // PNP0A08 as an EISA id: DWordPrefix + 0x080AD041.
    assert!(contains(&dsdt, &[0x0c, 0x41, 0xd0, 0x0a, 0x08]));
    // The QWord memory window starts at the layout's 64-bit window.
    let window = MemoryLayout::new(5 * GIB).unwrap().pci_mmio64();
    let at = dsdt
        .windows(3)
        .position(|w| w == [0x8a, 43, 0])
        .expect("a QWord address space descriptor");
    assert_eq!(u64_at(&dsdt, at + 14), window.start);
    assert_eq!(u64_at(&dsdt, at + 22), window.end - 1);
    // The DWord window is the 32-bit BAR window.
    let at = dsdt
        .windows(4)
        .position(|w| w == [0x87, 23, 0, 0])
        .expect("a DWord memory descriptor");
    assert_eq!(u32_at(&dsdt, at + 10) as u64, layout::PCI_MMIO32.start);
    assert_eq!(u32_at(&dsdt, at + 14) as u64, layout::PCI_MMIO32.end - 1);
}

#[test]
fn com1_is_listed_only_when_present() {
    let layout = MemoryLayout::new(64 * MIB).unwrap();
    let config = AcpiConfig {
        layout: &layout,
        cpus: 1,
        x2apic: false,
        pm: PM,
        com1: false,
    };
    let t = build(&config, layout::ACPI_TABLES).unwrap();
    assert!(!contains(&dsdt_of(&t), b"COM1"));
}

#[test]
fn pci_interrupts_rotate_over_gsi_16_to_23() {
    assert_eq!(pci_intx_gsi(1, 0), 17);
    assert_eq!(pci_intx_gsi(1, 3), 20);
    assert_eq!(pci_intx_gsi(7, 1), 16);
    for slot in 0..32 {
        for pin in 0..4 {
            assert!((16..24).contains(&pci_intx_gsi(slot, pin)));
        }
    }
}

#[test]
fn bad_requests_are_refused() {
    let layout = MemoryLayout::new(64 * MIB).unwrap();
    let config = |cpus| AcpiConfig {
        layout: &layout,
        cpus,
        x2apic: false,
        pm: PM,
        com1: true,
    };
    assert_eq!(
        build(&config(0), layout::ACPI_TABLES),
        Err(AcpiError::BadCpuCount(0))
    );
    assert_eq!(
        build(&config(65), layout::ACPI_TABLES),
        Err(AcpiError::BadCpuCount(65))
    );
    assert!(matches!(
        build(&config(2), 0xE_0000..0xE_0200),
        Err(AcpiError::TooLarge { room: 0x200, .. })
    ));
    assert!(matches!(
        build(&config(2), 0xE_0008..0x10_0000),
        Err(AcpiError::BadPlace(_))
    ));
}

/// Disassembles every table with ACPICA's `iasl` when it is installed
/// (Debian package acpica-tools) and checks it reports no error.
#[test]
fn iasl_disassembles_the_tables_without_complaint() {
    if std::process::Command::new("iasl")
        .arg("-v")
        .output()
        .is_err()
    {
        eprintln!("skipped: iasl not installed (apt-get install acpica-tools)");
        return;
    }
    let t = build_for(5 * GIB, 4, false);
    let dir = tempfile::tempdir().unwrap();
    let fadt = find(&t, b"FACP");
    let mut tables = vec![
        ("facp", fadt.clone()),
        ("apic", find(&t, b"APIC")),
        ("mcfg", find(&t, b"MCFG")),
        ("dsdt", dsdt_of(&t)),
    ];
    let facs_at = (u32_at(&fadt, 36) as u64 - t.base) as usize;
    tables.push(("facs", t.bytes[facs_at..facs_at + 64].to_vec()));
    let mut dsdt_source = String::new();
    for (name, bytes) in tables {
        let path = dir.path().join(format!("{name}.dat"));
        std::fs::write(&path, bytes).unwrap();
        let out = std::process::Command::new("iasl")
            .arg("-d")
            .arg(&path)
            .current_dir(dir.path())
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "iasl -d {name}: {log}");
        let dsl = std::fs::read_to_string(dir.path().join(format!("{name}.dsl")))
            .unwrap_or_else(|e| panic!("{name}.dsl: {e}: {log}"));
        for bad in ["Error", "Invalid", "Incorrect", "Unknown"] {
            assert!(!dsl.contains(bad), "{name}: {bad} in\n{dsl}");
        }
        if name == "dsdt" {
            dsdt_source = dsl;
        }
    }
    for expected in [
        "Device (PCI0)",
        "EisaId (\"PNP0A08\")",
        "EisaId (\"PNP0501\")",
        "Name (\\_S5, Package",
        "QWordMemory",
        "0xF0000000,         // Address Base",
    ] {
        assert!(
            dsdt_source.contains(expected),
            "{expected} not in\n{dsdt_source}"
        );
    }
}
