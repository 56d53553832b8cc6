use super::fixtures::{amd_epyc, intel_skylake, AMD_BRAND, INTEL_BRAND};
use super::*;

fn regs(t: &GuestCpuid, leaf: u32, subleaf: u32) -> [u32; 4] {
    let e = t
        .get(leaf, subleaf)
        .unwrap_or_else(|| panic!("no leaf {leaf:#x}.{subleaf}"));
    [e.eax, e.ebx, e.ecx, e.edx]
}

fn brand(t: &GuestCpuid) -> String {
    let mut bytes = Vec::new();
    for leaf in 0x8000_0002..=0x8000_0004 {
        for r in regs(t, leaf, 0) {
            bytes.extend(r.to_le_bytes());
        }
    }
    String::from_utf8_lossy(&bytes)
        .trim_end_matches('\0')
        .to_owned()
}

fn leaves(t: &GuestCpuid) -> Vec<(u32, u32)> {
    t.entries().iter().map(|e| (e.function, e.index)).collect()
}

#[test]
fn intel_skylake_two_vcpus_default_policy() {
    let t = GuestCpuid::new(&intel_skylake(), &CpuidPolicy::new(2)).unwrap();
    assert_eq!(t.vendor(), Vendor::Intel);
    assert_eq!(
        regs(&t, 0, 0),
        [0x16, 0x756e_6547, 0x6c65_746e, 0x4965_6e69]
    );
    // Signature kept; 2 logical IDs, APIC ID 0; VMX SMX MONITOR EST TM2
    // DTES64 DS-CPL SDBG xTPR PDCM PCID x2APIC TSC-deadline OSXSAVE gone,
    // hypervisor set; DS ACPI TM PBE gone, HTT set.
    assert_eq!(
        regs(&t, 1, 0),
        [0x0005_06e3, 0x0002_0800, 0xf6d8_3203, 0x1f8b_fbff]
    );
    assert_eq!(regs(&t, 2, 0), [0x7603_6301, 0x00f0_b5ff, 0, 0x00c3_0000]);
    // Caches: 2 addressable cores; L1/L2 per core, L3 shared by both.
    assert_eq!(regs(&t, 4, 0)[0], 0x0400_0121);
    assert_eq!(regs(&t, 4, 2)[0], 0x0400_0143);
    assert_eq!(regs(&t, 4, 3), [0x0400_4163, 0x03c0_003f, 0x1fff, 6]);
    assert!(t.get(4, 4).is_none());
    assert_eq!(regs(&t, 6, 0), [4, 0, 0, 0], "ARAT only");
    // Leaf 7: no TSC_ADJUST SGX HLE INVPCID RTM MPX PT, no SGX_LC, no
    // speculation controls; MD_CLEAR kept.
    assert_eq!(regs(&t, 7, 0), [0, 0x009c_23a9, 0, 0x400]);
    // One thread per core, two cores.
    assert_eq!(regs(&t, 0xb, 0), [0, 1, 0x100, 0]);
    assert_eq!(regs(&t, 0xb, 1), [1, 2, 0x201, 0]);
    assert_eq!(regs(&t, 0xb, 2), [0, 0, 2, 0]);
    // XSAVE: x87 SSE AVX (no MPX), 832 bytes; no XSAVES, no PT state.
    assert_eq!(regs(&t, 0xd, 0), [0x7, 832, 832, 0]);
    assert_eq!(regs(&t, 0xd, 1), [0x7, 832, 0, 0]);
    assert_eq!(regs(&t, 0xd, 2), [0x100, 0x240, 0, 0]);
    assert_eq!(regs(&t, 0x15, 0), [2, 0x11c, 0, 0]);
    assert_eq!(regs(&t, 0x16, 0), [0xd48, 0xfa0, 0x64, 0]);
    assert_eq!(regs(&t, 0x8000_0000, 0), [0x8000_0008, 0, 0, 0]);
    assert_eq!(regs(&t, 0x8000_0001, 0), [0, 0, 0x121, 0x2c10_0800]);
    assert_eq!(regs(&t, 0x8000_0007, 0), [0, 0, 0, 0x100]);
    assert_eq!(regs(&t, 0x8000_0008, 0), [0x3027, 0, 0, 0]);
    assert_eq!(brand(&t), INTEL_BRAND);
    // Performance monitoring, SGX, RDT, PT, MONITOR and 0xD components 3, 4
    // and 8 are gone.
    assert_eq!(
        leaves(&t),
        [
            (0, 0),
            (1, 0),
            (2, 0),
            (4, 0),
            (4, 1),
            (4, 2),
            (4, 3),
            (6, 0),
            (7, 0),
            (0xb, 0),
            (0xb, 1),
            (0xb, 2),
            (0xd, 0),
            (0xd, 1),
            (0xd, 2),
            (0x15, 0),
            (0x16, 0),
            (0x4000_0000, 0),
            (0x8000_0000, 0),
            (0x8000_0001, 0),
            (0x8000_0002, 0),
            (0x8000_0003, 0),
            (0x8000_0004, 0),
            (0x8000_0006, 0),
            (0x8000_0007, 0),
            (0x8000_0008, 0),
        ]
    );
}

#[test]
fn the_hypervisor_leaves() {
    let t = GuestCpuid::new(&intel_skylake(), &CpuidPolicy::new(1)).unwrap();
    let [max, b, c, d] = regs(&t, 0x4000_0000, 0);
    assert_eq!(
        max, 0x4000_0000,
        "no timing leaf when frequencies are unknown"
    );
    let signature: Vec<u8> = [b, c, d].iter().flat_map(|r| r.to_le_bytes()).collect();
    assert_eq!(signature, b"TernTernTern");
    assert!(t.get(0x4000_0010, 0).is_none());

    let policy = CpuidPolicy {
        tsc_khz: Some(2_100_000),
        apic_timer_khz: Some(1_000_000),
        ..CpuidPolicy::new(1)
    };
    let t = GuestCpuid::new(&amd_epyc(), &policy).unwrap();
    assert_eq!(regs(&t, 0x4000_0000, 0)[0], 0x4000_0010);
    assert_eq!(regs(&t, 0x4000_0010, 0), [2_100_000, 1_000_000, 0, 0]);
    // KVM's own leaves (KVMKVMKVM, 0x4000_0001) do not leak through.
    assert!(t.get(0x4000_0001, 0).is_none());
}

#[test]
fn amd_epyc_three_vcpus_with_x2apic_and_tsc_deadline() {
    let policy = CpuidPolicy {
        x2apic: true,
        tsc_deadline: true,
        ..CpuidPolicy::new(3)
    };
    let t = GuestCpuid::new(&amd_epyc(), &policy).unwrap();
    assert_eq!(t.vendor(), Vendor::Amd);
    assert_eq!(regs(&t, 0, 0)[0], 0x1c);
    // 4 addressable IDs; x2APIC and TSC-deadline on; PCID off.
    assert_eq!(
        regs(&t, 1, 0),
        [0x00a1_0f11, 0x0004_0800, 0xf7f8_3203, 0x178b_fbff]
    );
    assert!(
        t.get(2, 0).is_none() && t.get(4, 0).is_none(),
        "Intel cache leaves"
    );
    // AVX-512 is not in the default XSAVE components: its bits go.
    assert_eq!(regs(&t, 7, 0), [1, 0x219c_03a9, 0x704, 0x10], "FSRM kept");
    assert_eq!(regs(&t, 7, 1), [0, 0, 0, 0], "AVX512_BF16 goes too");
    assert_eq!(regs(&t, 0xb, 1), [2, 3, 0x201, 0]);
    assert_eq!(regs(&t, 0xd, 0), [0x7, 832, 832, 0]);
    assert!(t.get(0xd, 11).is_none(), "CET state");
    // Extended: SVM gone, TOPOEXT kept; NC = 2, ApicIdCoreIdSize = 2;
    // speculation-control bits gone.
    assert_eq!(regs(&t, 0x8000_0000, 0)[0], 0x8000_0021);
    assert_eq!(
        regs(&t, 0x8000_0001, 0),
        [0x00a1_0f11, 0x4000_0000, 0x0040_01f3, 0x2fd3_fbff]
    );
    assert_eq!(
        regs(&t, 0x8000_0005, 0),
        [0xff48_ff40, 0xff48_ff40, 0x2008_0140, 0x2008_0140]
    );
    assert_eq!(regs(&t, 0x8000_0008, 0), [0x0030_3030, 0x5, 0x2002, 0]);
    // Cache topology: L1/L2 per core, L3 by all (4 IDs).
    assert_eq!(regs(&t, 0x8000_001d, 0)[0], 0x121);
    assert_eq!(regs(&t, 0x8000_001d, 3), [0xc163, 0x03c0_003f, 0x7fff, 1]);
    assert_eq!(regs(&t, 0x8000_0021, 0), [0x4, 0, 0, 0]);
    assert!(t.get(0x8000_001a, 0).is_none());
    assert_eq!(brand(&t), AMD_BRAND);
    // Per vCPU: APIC IDs in leaves 1, 0xB and 0x8000_001E.
    let v2 = t.for_vcpu(2);
    let find = |leaf, index| {
        *v2.iter()
            .find(|e| e.function == leaf && e.index == index)
            .unwrap()
    };
    assert_eq!(find(1, 0).ebx >> 24, 2);
    assert_eq!(find(0xb, 0).edx, 2);
    assert_eq!(find(0xb, 1).edx, 2);
    let e = find(0x8000_001e, 0);
    assert_eq!([e.eax, e.ebx, e.ecx, e.edx], [2, 2, 0, 0]);
}

#[test]
fn avx512_state_when_the_host_switches_it() {
    let policy = CpuidPolicy {
        xsave_components: XCR0_X87 | XCR0_SSE | XCR0_AVX | XCR0_AVX512,
        ..CpuidPolicy::new(1)
    };
    let t = GuestCpuid::new(&amd_epyc(), &policy).unwrap();
    // The sizes agree with the host's own answer for XCR0 = 0xE7.
    assert_eq!(regs(&t, 0xd, 0), [0xe7, 0x980, 0x980, 0]);
    assert_eq!(
        regs(&t, 0xd, 1)[1],
        2432,
        "compacted: 576 + 256 + 64 + 512 + 1024"
    );
    assert_eq!(regs(&t, 7, 0)[1], 0xf1bf_03a9);
    assert_eq!(regs(&t, 7, 0)[2], 0x5f46);
    assert_eq!(regs(&t, 7, 1)[0], 0x20, "AVX512_BF16");

    // AVX-512 without AVX, or only part of its state, is not offered.
    let partial = CpuidPolicy {
        xsave_components: XCR0_X87 | XCR0_SSE | XCR0_AVX | 1 << 5,
        ..CpuidPolicy::new(1)
    };
    let t = GuestCpuid::new(&amd_epyc(), &partial).unwrap();
    assert_eq!(regs(&t, 0xd, 0)[0], 0x7);
    assert_eq!(regs(&t, 7, 0)[1] & 1 << 16, 0);
}

#[test]
fn no_avx_state_means_no_avx_instructions() {
    let policy = CpuidPolicy {
        xsave_components: XCR0_X87 | XCR0_SSE,
        ..CpuidPolicy::new(1)
    };
    let t = GuestCpuid::new(&intel_skylake(), &policy).unwrap();
    let ecx1 = regs(&t, 1, 0)[2];
    assert_eq!(ecx1 & (1 << 12 | 1 << 28 | 1 << 29), 0, "FMA AVX F16C");
    assert_ne!(ecx1 & 1 << 26, 0, "XSAVE stays");
    assert_eq!(regs(&t, 7, 0)[1] & 1 << 5, 0, "AVX2");
    assert_eq!(regs(&t, 0xd, 0), [0x3, 576, 576, 0]);

    // A host without XSAVE: no leaf 0xD, no XSAVE bit.
    let mut host = intel_skylake();
    host.iter_mut()
        .filter(|e| e.function == 1)
        .for_each(|e| e.ecx &= !(1 << 26));
    let t = GuestCpuid::new(&host, &CpuidPolicy::new(1)).unwrap();
    assert!(t.get(0xd, 0).is_none());
    assert_eq!(regs(&t, 1, 0)[2] & (1 << 26 | 1 << 28), 0);
}

#[test]
fn pcid_and_speculation_controls_follow_the_policy() {
    let policy = CpuidPolicy {
        pcid: true,
        speculation_controls: true,
        ..CpuidPolicy::new(1)
    };
    let t = GuestCpuid::new(&intel_skylake(), &policy).unwrap();
    assert_ne!(regs(&t, 1, 0)[2] & 1 << 17, 0, "PCID");
    assert_ne!(regs(&t, 7, 0)[1] & 1 << 10, 0, "INVPCID");
    assert_eq!(
        regs(&t, 7, 0)[3],
        0xbc00_0400,
        "IBRS STIBP L1D_FLUSH ARCH_CAP SSBD"
    );
    assert!(t.has(7, 0, Reg::Edx, 29));
    let t = GuestCpuid::new(&intel_skylake(), &CpuidPolicy::new(1)).unwrap();
    assert!(!t.has(7, 0, Reg::Edx, 29));
    assert!(!t.has(7, 0, Reg::Edx, 26));
}

#[test]
fn one_vcpu_has_no_htt_and_one_logical_id() {
    let t = GuestCpuid::new(&amd_epyc(), &CpuidPolicy::new(1)).unwrap();
    let [_, ebx, _, edx] = regs(&t, 1, 0);
    assert_eq!(edx & 1 << 28, 0);
    assert_eq!((ebx >> 16) & 0xff, 1);
    assert_eq!(regs(&t, 0xb, 1), [0, 1, 0x201, 0]);
    assert_eq!(regs(&t, 0x8000_0008, 0)[2], 0);
}

#[test]
fn no_virtualization_extensions_ever() {
    for host in [intel_skylake(), amd_epyc()] {
        for cpus in [1, 2, 64] {
            let t = GuestCpuid::new(&host, &CpuidPolicy::new(cpus)).unwrap();
            assert!(!t.has(1, 0, Reg::Ecx, 5), "VMX");
            assert!(!t.has(1, 0, Reg::Ecx, 6), "SMX");
            assert!(!t.has(1, 0, Reg::Ecx, 3), "MONITOR");
            assert!(t.has(1, 0, Reg::Ecx, 31), "hypervisor");
            assert!(!t.has(0x8000_0001, 0, Reg::Ecx, 2), "SVM");
            assert!(t.get(5, 0).is_none() && t.get(0xa, 0).is_none());
            assert!(t.get(0x8000_000a, 0).is_none());
            // Sorted, unique, and only indexed leaves have subleaves.
            let keys = leaves(&t);
            assert!(keys.windows(2).all(|w| w[0] < w[1]));
            assert!(keys.iter().all(|&(f, i)| i == 0 || is_indexed(f)));
        }
    }
}

#[test]
fn lookup_answers_per_vcpu_with_dynamic_osxsave_and_xsave_sizes() {
    let t = GuestCpuid::new(&intel_skylake(), &CpuidPolicy::new(4)).unwrap();
    let table = t.for_vcpu(3);
    for e in &table {
        let r = t.lookup(3, e.function, e.index, 0, 0x3);
        if e.function == 0xd && e.index <= 1 {
            assert_eq!(r.ebx, 576, "x87+SSE only");
            continue;
        }
        assert_eq!(
            [r.eax, r.ebx, r.ecx, r.edx],
            [e.eax, e.ebx, e.ecx, e.edx],
            "{:#x}.{}",
            e.function,
            e.index
        );
    }
    assert_eq!(t.lookup(3, 1, 0, 0, 0).ebx >> 24, 3);
    assert_eq!(t.lookup(3, 0xb, 1, 0, 0).edx, 3);
    // OSXSAVE follows CR4.OSXSAVE.
    assert_eq!(t.lookup(0, 1, 0, 0, 0).ecx & 1 << 27, 0);
    assert_ne!(t.lookup(0, 1, 0, 1 << 18, 0).ecx & 1 << 27, 0);
    // Leaf 0xD EBX follows XCR0.
    assert_eq!(t.lookup(0, 0xd, 0, 1 << 18, 0x7).ebx, 832);
    assert_eq!(t.lookup(0, 0xd, 1, 1 << 18, 0x7).ebx, 832);
    // Absent leaves read as zeros; non-indexed leaves ignore the subleaf.
    assert_eq!(t.lookup(0, 5, 0, 0, 0), CpuidResult::default());
    assert_eq!(t.lookup(0, 0x8000_0099, 0, 0, 0), CpuidResult::default());
    assert_eq!(t.lookup(0, 1, 7, 0, 0), t.lookup(0, 1, 0, 0, 0));
    assert_eq!(t.lookup(0, 0xb, 7, 0, 0), CpuidResult::default());
}

#[test]
fn bad_host_tables_and_cpu_counts_are_refused() {
    let no_leaf1: Vec<_> = intel_skylake()
        .into_iter()
        .filter(|e| e.function != 1)
        .collect();
    assert_eq!(
        GuestCpuid::new(&no_leaf1, &CpuidPolicy::new(1)),
        Err(CpuidError::MissingLeaf(1))
    );
    assert_eq!(
        GuestCpuid::new(&[], &CpuidPolicy::new(1)),
        Err(CpuidError::MissingLeaf(0))
    );
    for cpus in [0, 65] {
        assert_eq!(
            GuestCpuid::new(&intel_skylake(), &CpuidPolicy::new(cpus)),
            Err(CpuidError::BadCpuCount(cpus))
        );
    }
}
