use super::*;
use crate::cpuid::fixtures::{amd_epyc, intel_skylake};
use crate::cpuid::CpuidPolicy;
use crate::layout::{GIB, MIB};

fn platform(host: Vec<vmm_host::CpuidEntry>, policy: CpuidPolicy, memory: u64) -> MsrPlatform {
    let cpuid = GuestCpuid::new(&host, &policy).unwrap();
    let layout = MemoryLayout::new(memory).unwrap();
    MsrPlatform::new(&cpuid, &layout, Some(3_400_000), 0x6b)
}

fn intel() -> MsrModel {
    MsrModel::new(platform(intel_skylake(), CpuidPolicy::new(2), 512 * MIB))
}

fn amd() -> MsrModel {
    MsrModel::new(platform(amd_epyc(), CpuidPolicy::new(2), 5 * GIB))
}

fn state() -> VcpuState {
    let mut s = VcpuState::default();
    s.tsc.load(1000);
    s.tsc_offset.load(50);
    s
}

const UNKNOWN: Result<u64, MsrError> = Err(MsrError::Unknown(0));

/// `(msr, expected read)`; `UNKNOWN` means `Unknown(msr)`.
fn check_reads(model: &MsrModel, table: &[(u32, Result<u64, MsrError>)]) {
    let s = state();
    for &(msr, expected) in table {
        let expected = match expected {
            Err(MsrError::Unknown(_)) => Err(MsrError::Unknown(msr)),
            other => other,
        };
        assert_eq!(model.read(&s, msr), expected, "read {msr:#x}");
    }
}

#[test]
fn intel_reset_values() {
    // Skylake: 39 physical address bits.
    let hole_mask = 0x7f_c000_0000 | 1 << 11;
    check_reads(
        &intel(),
        &[
            (TSC, Ok(1000)),
            (PAT, Ok(0x0007_0406_0007_0406)),
            (MTRR_CAP, Ok(0x508)),
            (MTRR_DEF_TYPE, Ok(0x806)),
            (0x200, Ok(0xc000_0000)),
            (0x201, Ok(hole_mask)),
            (0x202, Ok(0)),
            (0x20f, Ok(0)),
            (0x250, Ok(0)),
            (0x26f, Ok(0)),
            (MCG_CAP, Ok(0)),
            (MCG_STATUS, Ok(0)),
            (MISC_ENABLE, Ok(0x1801)),
            (FEATURE_CONTROL, Ok(1)),
            (PLATFORM_INFO, Ok(34 << 8)),
            (UCODE_REV, Ok(1 << 32)),
            (DEBUGCTL, Ok(0)),
            (EFER, Ok(0)),
            (TSC_AUX, Ok(0)),
            // Not advertised by the default CPUID policy.
            (SPEC_CTRL, UNKNOWN),
            (PRED_CMD, UNKNOWN),
            (ARCH_CAPABILITIES, UNKNOWN),
            // AMD's.
            (AMD_HWCR, UNKNOWN),
            (AMD_VM_CR, UNKNOWN),
            (AMD_PERF_CTL0, UNKNOWN),
            (AMD_TOP_MEM, UNKNOWN),
            // Machine-check banks do not exist (MCG_CAP has none).
            (0x400, UNKNOWN),
            (0x210, UNKNOWN),
            (0x3b, UNKNOWN),
            (0x1234_5678, UNKNOWN),
        ],
    );
}

#[test]
fn amd_reset_values() {
    // Zen 4 (48 physical address bits), 5 GiB: RAM to 3 GiB and 4..6 GiB.
    check_reads(
        &amd(),
        &[
            (0x201, Ok(0xffff_c000_0000 | 1 << 11)),
            (UCODE_REV, Ok(1)),
            (AMD_HWCR, Ok(0)),
            (AMD_SYSCFG, Ok(1 << 20 | 1 << 21)),
            (AMD_TOP_MEM, Ok(3 * GIB)),
            (AMD_TOP_MEM2, Ok(6 * GIB)),
            (AMD_NB_CFG, Ok(0)),
            (AMD_VM_CR, Ok(0x18)),
            (AMD_DE_CFG, Ok(2)),
            (AMD_LS_CFG, Ok(0)),
            (AMD_TSEG_BASE, Ok(0)),
            (AMD_TSEG_MASK, Ok(0)),
            (AMD_OSVW_ID_LENGTH, Ok(0)),
            (AMD_OSVW_STATUS, Ok(0)),
            (AMD_PERF_CTL0, Ok(0)),
            (AMD_PERF_CTR3, Ok(0)),
            (AMD_PERF_CTR3 + 1, UNKNOWN),
            (TSC_AUX, Ok(0)),
            // Intel's.
            (MISC_ENABLE, UNKNOWN),
            (FEATURE_CONTROL, UNKNOWN),
            (PLATFORM_INFO, UNKNOWN),
        ],
    );
    // Without RAM above 4 GiB: no TOP_MEM2.
    let small = MsrModel::new(platform(amd_epyc(), CpuidPolicy::new(1), 512 * MIB));
    check_reads(
        &small,
        &[
            (AMD_TOP_MEM, Ok(512 * MIB)),
            (AMD_TOP_MEM2, Ok(0)),
            (AMD_SYSCFG, Ok(1 << 20)),
        ],
    );
}

#[test]
fn apic_msrs_belong_to_the_interrupt_controller() {
    for mut model in [intel(), amd()] {
        let mut s = state();
        for msr in [APIC_BASE, TSC_DEADLINE, 0x800, 0x830, 0x8ff] {
            assert_eq!(model.read(&s, msr), Err(MsrError::NotMine(msr)));
            assert_eq!(model.write(&mut s, msr, 0), Err(MsrError::NotMine(msr)));
        }
        assert_eq!(model.read(&s, 0x900), Err(MsrError::Unknown(0x900)));
    }
}

#[test]
fn architectural_msrs_live_in_the_vcpu_state() {
    for mut model in [intel(), amd()] {
        let mut s = state();
        let writes = [
            (SYSENTER_CS, 0x10),
            (SYSENTER_ESP, 0xffff_8000_0000_1000),
            (SYSENTER_EIP, 0xffff_8000_0000_2000),
            (STAR, 0x0023_0010_0000_0000),
            (LSTAR, 0xffff_ffff_8100_0000),
            (CSTAR, 0xffff_ffff_8100_0100),
            (SFMASK, 0x4_7700),
            (FS_BASE, 0x7f00_0000_0000),
            (GS_BASE, 0xffff_8880_0000_0000),
            (KERNEL_GS_BASE, 0x1234_5000),
            (TSC_AUX, 7),
        ];
        for (msr, value) in writes {
            assert_eq!(
                model.write(&mut s, msr, value),
                Ok(MsrEffect::None),
                "{msr:#x}"
            );
            assert_eq!(model.read(&s, msr), Ok(value), "{msr:#x}");
        }
        assert_eq!(s.lstar.value(), 0xffff_ffff_8100_0000);
        assert_eq!(s.fs.value().base, 0x7f00_0000_0000);
        assert_eq!(s.tsc_aux.value(), 7);
        assert!(s.gs.charged() && s.star.charged());
        // Non-canonical addresses and too-wide values are refused.
        for (msr, value) in [
            (LSTAR, 0x8000_0000_0000_0000),
            (FS_BASE, 0x0000_8000_0000_0000),
            (SYSENTER_EIP, 0x1_0000_0000_0000),
            (SFMASK, 1 << 32),
            (TSC_AUX, 1 << 32),
        ] {
            assert_eq!(
                model.write(&mut s, msr, value),
                Err(MsrError::Refused { msr, value })
            );
        }
    }
}

#[test]
fn efer_takes_sce_lme_nxe_and_keeps_lma() {
    for mut model in [intel(), amd()] {
        let mut s = state();
        s.efer.load(EFER_LMA);
        let value = EFER_SCE | EFER_LME | EFER_NXE;
        assert_eq!(model.write(&mut s, EFER, value), Ok(MsrEffect::None));
        assert_eq!(s.efer.value(), value | EFER_LMA);
        // Clearing LMA by WRMSR does not clear it.
        s.cr0.load(CR0_PG);
        assert_eq!(model.write(&mut s, EFER, EFER_LME), Ok(MsrEffect::None));
        assert_eq!(s.efer.value(), EFER_LME | EFER_LMA);
        // Reserved bits: bit 1, SVME (12, SVM is hidden), FFXSR (14), 63.
        for bad in [1 << 1, 1 << 12, 1 << 14, 1 << 63] {
            assert_eq!(
                model.write(&mut s, EFER, EFER_LME | bad),
                Err(MsrError::Refused {
                    msr: EFER,
                    value: EFER_LME | bad
                })
            );
        }
        // LME cannot change while paging is on.
        assert!(model.write(&mut s, EFER, 0).is_err());
        s.cr0.load(0);
        assert_eq!(model.write(&mut s, EFER, 0), Ok(MsrEffect::None));
    }
}

#[test]
fn efer_bits_follow_cpuid() {
    let mut host = intel_skylake();
    host.iter_mut()
        .filter(|e| e.function == 0x8000_0001)
        .for_each(|e| e.edx &= !(1 << 20 | 1 << 11)); // no NX, no SYSCALL
    let mut model = MsrModel::new(platform(host, CpuidPolicy::new(1), 64 * MIB));
    let mut s = state();
    assert!(model.write(&mut s, EFER, EFER_NXE).is_err());
    assert!(model.write(&mut s, EFER, EFER_SCE).is_err());
    assert!(model.write(&mut s, EFER, EFER_LME).is_ok());
}

#[test]
fn writing_the_tsc_moves_the_offset() {
    let mut model = amd();
    let mut s = state(); // guest TSC 1000 with offset 50
    assert_eq!(
        model.write(&mut s, TSC, 5000),
        Ok(MsrEffect::TscOffset(4050))
    );
    assert_eq!(s.tsc_offset.value(), 4050);
    assert_eq!(model.read(&s, TSC), Ok(5000));
    // Backwards wraps like the hardware's 64-bit offset.
    let mut s = state();
    assert_eq!(
        model.write(&mut s, TSC, 0),
        Ok(MsrEffect::TscOffset(50u64.wrapping_sub(1000)))
    );
}

#[test]
fn pat_and_mtrrs_refuse_invalid_memory_types_and_reserved_bits() {
    let mut model = intel();
    let mut s = state();
    let pat = 0x0007_0106_0007_0406;
    assert_eq!(model.write(&mut s, PAT, pat), Ok(MsrEffect::None));
    assert_eq!(model.read(&s, PAT), Ok(pat));
    for bad in [
        0x0007_0406_0007_0402,
        0x0007_0406_0007_0403,
        0x0807_0406_0007_0406,
    ] {
        assert!(model.write(&mut s, PAT, bad).is_err(), "{bad:#x}");
    }
    assert_eq!(model.read(&s, PAT), Ok(pat));

    assert!(model.write(&mut s, MTRR_DEF_TYPE, 0xc06).is_ok());
    assert!(model.write(&mut s, MTRR_DEF_TYPE, 0x802).is_err(), "type 2");
    assert!(
        model.write(&mut s, MTRR_DEF_TYPE, 0x1806).is_err(),
        "bit 12"
    );
    // Variable range 1: 2 GiB..3 GiB write-combining.
    assert!(model.write(&mut s, 0x202, 0x8000_0001).is_ok());
    assert!(model.write(&mut s, 0x203, 0x7f_c000_0800).is_ok());
    assert_eq!(model.read(&s, 0x202), Ok(0x8000_0001));
    assert_eq!(model.read(&s, 0x203), Ok(0x7f_c000_0800));
    assert!(model.write(&mut s, 0x202, 0x8000_0003).is_err(), "type 3");
    assert!(
        model.write(&mut s, 0x202, 0x80_0000_0000).is_err(),
        "above 39 bits"
    );
    assert!(
        model.write(&mut s, 0x203, 0x7f_c000_0400).is_err(),
        "reserved bit 10"
    );
    // Fixed ranges: eight types per register.
    assert!(model.write(&mut s, 0x259, 0x0000_0000_0000_0000).is_ok());
    assert!(model.write(&mut s, 0x268, 0x0606_0606_0606_0606).is_ok());
    assert_eq!(model.read(&s, 0x268), Ok(0x0606_0606_0606_0606));
    assert!(model.write(&mut s, 0x26f, 0x0606_0606_0606_0607).is_err());
}

#[test]
fn read_only_and_write_once_registers() {
    let mut model = intel();
    let mut s = state();
    for (msr, value) in [
        (MTRR_CAP, 0),
        (MCG_CAP, 0),
        (FEATURE_CONTROL, 5),
        (PLATFORM_INFO, 0),
        (MCG_STATUS, 1),
        (DEBUGCTL, 1),
        (MISC_ENABLE, 0x1801 | 1 << 18),
    ] {
        assert_eq!(
            model.write(&mut s, msr, value),
            Err(MsrError::Refused { msr, value }),
            "{msr:#x}"
        );
    }
    assert!(model.write(&mut s, MCG_STATUS, 0).is_ok());
    assert!(model.write(&mut s, DEBUGCTL, 0).is_ok());
    // Fast strings may be turned off.
    assert!(model.write(&mut s, MISC_ENABLE, 0x1800).is_ok());
    assert_eq!(model.read(&s, MISC_ENABLE), Ok(0x1800));
    assert!(model.write(&mut s, UCODE_REV, 0).is_ok());
    // An unknown MSR stays unknown for writes too.
    assert_eq!(model.write(&mut s, 0x1a2, 0), Err(MsrError::Unknown(0x1a2)));

    let mut model = amd();
    for (msr, value) in [(AMD_VM_CR, 0), (AMD_TOP_MEM, 0), (AMD_TSEG_BASE, 0)] {
        assert_eq!(
            model.write(&mut s, msr, value),
            Err(MsrError::Refused { msr, value })
        );
    }
    for msr in [AMD_HWCR, AMD_SYSCFG, AMD_NB_CFG, AMD_LS_CFG, AMD_DE_CFG] {
        assert!(model.write(&mut s, msr, 0x40).is_ok());
        assert_eq!(model.read(&s, msr), Ok(0x40), "{msr:#x}");
    }
    assert!(model.write(&mut s, AMD_PERF_CTL0, 0x43_0076).is_ok());
    assert_eq!(model.read(&s, AMD_PERF_CTL0), Ok(0), "counters stay off");
    assert_eq!(
        model.write(&mut s, MISC_ENABLE, 0),
        Err(MsrError::Unknown(MISC_ENABLE))
    );
}

#[test]
fn speculation_controls_exist_when_cpuid_advertises_them() {
    let policy = CpuidPolicy {
        speculation_controls: true,
        ..CpuidPolicy::new(1)
    };
    let mut model = MsrModel::new(platform(intel_skylake(), policy, 64 * MIB));
    let mut s = state();
    assert_eq!(model.read(&s, SPEC_CTRL), Ok(0));
    assert!(
        model.write(&mut s, SPEC_CTRL, 0b111).is_ok(),
        "IBRS STIBP SSBD"
    );
    assert_eq!(model.read(&s, SPEC_CTRL), Ok(0b111));
    assert!(model.write(&mut s, SPEC_CTRL, 0b1000).is_err());
    assert!(model.write(&mut s, PRED_CMD, 1).is_ok());
    assert!(model.write(&mut s, PRED_CMD, 2).is_err());
    assert_eq!(
        model.read(&s, PRED_CMD),
        Err(MsrError::Refused {
            msr: PRED_CMD,
            value: 0
        }),
        "write-only"
    );
    assert!(model.write(&mut s, FLUSH_CMD, 1).is_ok());
    assert_eq!(model.read(&s, ARCH_CAPABILITIES), Ok(0x6b));
    assert!(matches!(
        model.write(&mut s, ARCH_CAPABILITIES, 0),
        Err(MsrError::Refused { .. })
    ));
}

#[test]
fn each_vcpu_has_its_own_registers() {
    let p = platform(amd_epyc(), CpuidPolicy::new(2), 64 * MIB);
    let (mut a, b) = (MsrModel::new(p), MsrModel::new(p));
    let mut s = state();
    a.write(&mut s, PAT, 0x0606_0606_0606_0606).unwrap();
    assert_eq!(b.read(&s, PAT), Ok(0x0007_0406_0007_0406));
}

#[test]
fn unknown_msrs_are_logged_once() {
    let log = UnknownMsrLog::default();
    assert!(log.first(0x1a2));
    assert!(!log.first(0x1a2));
    assert!(log.first(0x1a3));
}
