//! The CPUID table a guest sees, made from the host's.
//!
//! Owns: which host leaves and feature bits a guest gets, the hypervisor
//! leaves, the topology of N vCPUs (one package, one thread per core, APIC
//! ID = vCPU index) and the XSAVE leaf that goes with the kept XCR0 bits.
//! Must not touch: executing CPUID (the host gives its table, `Host::cpuid`)
//! or answering CPUID exits (the machine calls [`GuestCpuid::lookup`]).
//!
//! Policy: feature bits are **allow-listed** per register, so a bit a newer
//! CPU adds stays hidden until someone decides the VMM can virtualize it.
//! Hidden for good: VMX/SVM, SMX, MONITOR/MWAIT, debug store and performance
//! monitoring, thermal and power management, TSX, SGX, MPX, PT, PKU,
//! WAITPKG, CET, LA57, RDPID, TSC_ADJUST, AMX and other leaves with MSRs the
//! models lack. The machine decides (in [`CpuidPolicy`]): x2APIC,
//! TSC-deadline, PCID/INVPCID, the speculation-control MSRs and which XSAVE
//! components the host switches. Kept as the host has them: vendor,
//! family/model/stepping, brand string, cache leaves (2, 4, 0x8000_0005/6,
//! 0x8000_001D), address sizes, and the instruction-set extensions.

use vmm_host::CpuidEntry;

/// The answer registers of one CPUID query.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuidResult {
    pub eax: u32,
    pub ebx: u32,
    pub ecx: u32,
    pub edx: u32,
}

/// Whose CPU model the guest sees (decides the MSR model too).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vendor {
    /// GenuineIntel and the Intel-compatible others (Centaur, Zhaoxin).
    Intel,
    /// AuthenticAMD and HygonGenuine.
    Amd,
}

/// XCR0 components.
pub const XCR0_X87: u64 = 1 << 0;
pub const XCR0_SSE: u64 = 1 << 1;
pub const XCR0_AVX: u64 = 1 << 2;
/// Opmask, ZMM_Hi256 and Hi16_ZMM: AVX-512 needs all three.
pub const XCR0_AVX512: u64 = 0b111 << 5;

/// The hypervisor leaves' signature ("TernTernTern").
pub const HYPERVISOR_SIGNATURE: [u8; 12] = *b"TernTernTern";
pub const HYPERVISOR_BASE: u32 = 0x4000_0000;
/// VMware-style timing leaf: EAX = TSC kHz, EBX = local APIC timer kHz.
pub const HYPERVISOR_TIMING: u32 = 0x4000_0010;

/// What the machine decides about the guest CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuidPolicy {
    pub cpus: u32,
    /// The local APICs implement x2APIC mode.
    pub x2apic: bool,
    /// The local APIC timer implements TSC-deadline mode.
    pub tsc_deadline: bool,
    /// The guest TSC and APIC timer frequencies, if known (leaf 0x4000_0010).
    pub tsc_khz: Option<u32>,
    pub apic_timer_khz: Option<u32>,
    /// PCID and INVPCID work in the guest (the host lets it set CR4.PCIDE
    /// and execute INVPCID).
    pub pcid: bool,
    /// SPEC_CTRL/PRED_CMD/FLUSH_CMD/ARCH_CAPABILITIES reach the hardware
    /// (e.g. KVM handles them); otherwise they are hidden.
    pub speculation_controls: bool,
    /// XCR0 components the host saves and restores for the guest
    /// (intersected with the host's).
    pub xsave_components: u64,
}

impl CpuidPolicy {
    /// The conservative policy for `cpus` vCPUs: no x2APIC, TSC-deadline,
    /// PCID or speculation controls; x87, SSE and AVX state.
    pub fn new(cpus: u32) -> Self {
        CpuidPolicy {
            cpus,
            x2apic: false,
            tsc_deadline: false,
            tsc_khz: None,
            apic_timer_khz: None,
            pcid: false,
            speculation_controls: false,
            xsave_components: XCR0_X87 | XCR0_SSE | XCR0_AVX,
        }
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CpuidError {
    #[error(
        "the host's CPUID table has no leaf {0:#x}; the host backend must report its CPUID leaves"
    )]
    MissingLeaf(u32),
    #[error("a guest CPUID table for {0} vCPUs: give the VM 1 to {max} vCPUs", max = crate::config::MAX_CPUS)]
    BadCpuCount(u32),
}

/// Leaves whose answer depends on the subleaf (ECX).
pub fn is_indexed(leaf: u32) -> bool {
    matches!(
        leaf,
        4 | 7
            | 0xb
            | 0xd
            | 0xf
            | 0x10
            | 0x12
            | 0x14
            | 0x17
            | 0x18
            | 0x1d
            | 0x1e
            | 0x1f
            | 0x20
            | 0x23
            | 0x24
            | 0x8000_001d
            | 0x8000_0020
            | 0x8000_0026
    )
}

/// The guest's CPUID table: vCPU 0's entries, sorted by leaf and subleaf;
/// the other vCPUs differ in their APIC IDs only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestCpuid {
    vendor: Vendor,
    entries: Vec<CpuidEntry>,
}

// Allow-lists, per leaf and register.
mod allow {
    const fn bits(list: &[u32]) -> u32 {
        let mut mask = 0;
        let mut i = 0;
        while i < list.len() {
            mask |= 1 << list[i];
            i += 1;
        }
        mask
    }
    /// FPU VME DE PSE TSC MSR PAE MCE CX8 APIC SEP MTRR PGE MCA CMOV PAT
    /// PSE36 CLFSH MMX FXSR SSE SSE2 SS (HTT is the topology's).
    pub const L1_EDX: u32 = bits(&[
        0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 16, 17, 19, 23, 24, 25, 26, 27,
    ]);
    pub const L1_EDX_HTT: u32 = 1 << 28;
    /// SSE3 PCLMULQDQ SSSE3 CX16 SSE4.1 SSE4.2 MOVBE POPCNT AES XSAVE RDRAND.
    pub const L1_ECX: u32 = bits(&[0, 1, 9, 13, 19, 20, 22, 23, 25, 26, 30]);
    /// FMA AVX F16C: need AVX state.
    pub const L1_ECX_AVX: u32 = bits(&[12, 28, 29]);
    pub const L1_ECX_PCID: u32 = 1 << 17;
    pub const L1_ECX_X2APIC: u32 = 1 << 21;
    pub const L1_ECX_TSC_DEADLINE: u32 = 1 << 24;
    pub const L1_ECX_XSAVE: u32 = 1 << 26;
    pub const L1_ECX_OSXSAVE: u32 = 1 << 27;
    pub const L1_ECX_HYPERVISOR: u32 = 1 << 31;
    /// Leaf 6: ARAT (the APIC timer runs in every C-state).
    pub const L6_EAX_ARAT: u32 = 1 << 2;
    /// FSGSBASE BMI1 FDP_EXCPTN_ONLY SMEP BMI2 ERMS FPCSDS RDSEED ADX SMAP
    /// CLFLUSHOPT CLWB SHA.
    pub const L7_EBX: u32 = bits(&[0, 3, 6, 7, 8, 9, 13, 18, 19, 20, 23, 24, 29]);
    pub const L7_EBX_AVX: u32 = 1 << 5; // AVX2
    /// AVX512F DQ IFMA PF ER CD BW VL.
    pub const L7_EBX_AVX512: u32 = bits(&[16, 17, 21, 26, 27, 28, 30, 31]);
    pub const L7_EBX_INVPCID: u32 = 1 << 10;
    /// PREFETCHWT1 UMIP GFNI CLDEMOTE MOVDIRI MOVDIR64B.
    pub const L7_ECX: u32 = bits(&[0, 2, 8, 25, 27, 28]);
    /// VAES VPCLMULQDQ.
    pub const L7_ECX_AVX: u32 = bits(&[9, 10]);
    /// AVX512_VBMI VBMI2 VNNI BITALG VPOPCNTDQ.
    pub const L7_ECX_AVX512: u32 = bits(&[1, 6, 11, 12, 14]);
    /// FSRM MD_CLEAR SERIALIZE.
    pub const L7_EDX: u32 = bits(&[4, 10, 14]);
    /// AVX512_4VNNIW 4FMAPS VP2INTERSECT FP16.
    pub const L7_EDX_AVX512: u32 = bits(&[2, 3, 8, 23]);
    /// IBRS/IBPB STIBP L1D_FLUSH ARCH_CAPABILITIES SSBD.
    pub const L7_EDX_SPECULATION: u32 = bits(&[26, 27, 28, 29, 31]);
    /// Subleaf 1 EAX: FZLRM FSRS FSRC; AVX_VNNI; AVX512_BF16.
    pub const L7_1_EAX: u32 = bits(&[10, 11, 12]);
    pub const L7_1_EAX_AVX: u32 = 1 << 4;
    pub const L7_1_EAX_AVX512: u32 = 1 << 5;
    /// XSAVEOPT XSAVEC XGETBV1 (no XSAVES: IA32_XSS is not modelled).
    pub const LD_1_EAX: u32 = bits(&[0, 1, 2]);
    /// LAHF CMP_LEGACY CR8_LEGACY ABM SSE4A MISALIGNSSE PREFETCHW TBM.
    pub const L81_ECX: u32 = bits(&[0, 1, 4, 5, 6, 7, 8, 21]);
    /// XOP FMA4: need AVX state.
    pub const L81_ECX_AVX: u32 = bits(&[11, 16]);
    pub const L81_ECX_TOPOEXT: u32 = 1 << 22;
    /// SYSCALL NX MMXEXT FFXSR PAGE1GB RDTSCP LM 3DNOWEXT 3DNOW, and the
    /// bits AMD mirrors from leaf 1 EDX.
    pub const L81_EDX: u32 = bits(&[11, 20, 22, 25, 26, 27, 29, 30, 31])
        | (L1_EDX & bits(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13, 14, 15, 16, 17, 23, 24]));
    /// Invariant TSC.
    pub const L87_EDX: u32 = 1 << 8;
    /// CLZERO XSAVEERPTR WBNOINVD, and SSB_NO BTC_NO (facts about the
    /// hardware, no MSR).
    pub const L88_EBX: u32 = bits(&[0, 2, 9, 26, 29]);
    /// IBPB IBRS STIBP SSBD VIRT_SSBD.
    pub const L88_EBX_SPECULATION: u32 = bits(&[12, 14, 15, 24, 25]);
    /// NoNestedDataBp, LFENCE always serializing, NullSelectClearsBase.
    pub const L8_21_EAX: u32 = bits(&[0, 2, 6]);
}

impl GuestCpuid {
    /// The guest table for `policy` from the host's table `host`.
    pub fn new(host: &[CpuidEntry], policy: &CpuidPolicy) -> Result<Self, CpuidError> {
        if policy.cpus == 0 || policy.cpus > crate::config::MAX_CPUS {
            return Err(CpuidError::BadCpuCount(policy.cpus));
        }
        let host = HostTable(host);
        let leaf0 = host.get(0, 0).ok_or(CpuidError::MissingLeaf(0))?;
        let leaf1 = host.get(1, 0).ok_or(CpuidError::MissingLeaf(1))?;
        let vendor = match (leaf0.ebx, leaf0.edx, leaf0.ecx) {
            (0x6874_7541, 0x6974_6e65, 0x444d_4163) // "AuthenticAMD"
            | (0x6f67_7948, 0x6e65_476e, 0x656e_6975) => Vendor::Amd, // "HygonGenuine"
            _ => Vendor::Intel,
        };
        let mut b = Builder {
            host,
            policy,
            vendor,
            out: Vec::new(),
            topology: Topology::new(policy.cpus),
            xsave: Xsave::from_host(&host, leaf1, policy),
        };
        b.basic(leaf0, leaf1);
        b.hypervisor();
        b.extended();
        let mut entries = b.out;
        entries.sort_by_key(|e| (e.function, e.index));
        Ok(GuestCpuid { vendor, entries })
    }

    pub fn vendor(&self) -> Vendor {
        self.vendor
    }

    /// vCPU 0's table.
    pub fn entries(&self) -> &[CpuidEntry] {
        &self.entries
    }

    /// The entry for `leaf`/`subleaf` as in the table (vCPU 0), if any.
    pub fn get(&self, leaf: u32, subleaf: u32) -> Option<&CpuidEntry> {
        let subleaf = if is_indexed(leaf) { subleaf } else { 0 };
        self.entries
            .iter()
            .find(|e| e.function == leaf && e.index == subleaf)
    }

    /// Whether the table sets bit `bit` of register `reg` ("eax".."edx") of
    /// `leaf`/`subleaf`.
    pub fn has(&self, leaf: u32, subleaf: u32, reg: Reg, bit: u32) -> bool {
        self.get(leaf, subleaf)
            .is_some_and(|e| reg.of(e) & (1 << bit) != 0)
    }

    /// The table for vCPU `vcpu` (what `Host::create_vcpu` gets; KVM updates
    /// OSXSAVE and the XSAVE sizes itself).
    pub fn for_vcpu(&self, vcpu: u32) -> Vec<CpuidEntry> {
        let mut entries = self.entries.clone();
        for e in &mut entries {
            set_apic_id(e, vcpu);
        }
        entries
    }

    /// The answer to CPUID `leaf`/`subleaf` on vCPU `vcpu` whose CR4 and
    /// XCR0 are `cr4` and `xcr0` (for hosts where CPUID exits to the VMM).
    /// Leaves the table lacks answer zeros.
    pub fn lookup(&self, vcpu: u32, leaf: u32, subleaf: u32, cr4: u64, xcr0: u64) -> CpuidResult {
        let Some(entry) = self.get(leaf, subleaf) else {
            return CpuidResult::default();
        };
        let mut e = *entry;
        set_apic_id(&mut e, vcpu);
        const CR4_OSXSAVE: u64 = 1 << 18;
        match (leaf, e.index) {
            (1, _) if e.ecx & allow::L1_ECX_XSAVE != 0 && cr4 & CR4_OSXSAVE != 0 => {
                e.ecx |= allow::L1_ECX_OSXSAVE;
            }
            (0xd, 0 | 1) => {
                let sizes = Xsave::from_table(&self.entries);
                let enabled = xcr0 & sizes.components;
                e.ebx = if e.index == 0 {
                    sizes.standard_size(enabled)
                } else {
                    sizes.compacted_size(enabled)
                };
            }
            _ => {}
        }
        CpuidResult {
            eax: e.eax,
            ebx: e.ebx,
            ecx: e.ecx,
            edx: e.edx,
        }
    }
}

/// A register of a CPUID answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reg {
    Eax,
    Ebx,
    Ecx,
    Edx,
}

impl Reg {
    fn of(self, e: &CpuidEntry) -> u32 {
        match self {
            Reg::Eax => e.eax,
            Reg::Ebx => e.ebx,
            Reg::Ecx => e.ecx,
            Reg::Edx => e.edx,
        }
    }
}

/// Puts vCPU `vcpu`'s APIC ID where a leaf reports it.
fn set_apic_id(e: &mut CpuidEntry, vcpu: u32) {
    match e.function {
        1 => e.ebx = (e.ebx & 0x00ff_ffff) | vcpu << 24,
        0xb | 0x1f => e.edx = vcpu,
        0x8000_001e => {
            e.eax = vcpu;
            e.ebx = (e.ebx & !0xff) | (vcpu & 0xff);
        }
        _ => {}
    }
}

#[derive(Clone, Copy)]
struct HostTable<'a>(&'a [CpuidEntry]);

impl HostTable<'_> {
    fn get(&self, leaf: u32, subleaf: u32) -> Option<CpuidEntry> {
        let subleaf = if is_indexed(leaf) { subleaf } else { 0 };
        self.0
            .iter()
            .find(|e| e.function == leaf && e.index == subleaf)
            .copied()
    }

    fn max(&self, base: u32) -> u32 {
        self.get(base, 0).map_or(0, |e| e.eax)
    }
}

/// One package of `cpus` cores, one thread each; APIC ID = core number.
#[derive(Clone, Copy)]
struct Topology {
    cpus: u32,
    /// APIC ID bits of the core level: IDs 0..cpus fit in them.
    core_bits: u32,
}

impl Topology {
    fn new(cpus: u32) -> Self {
        let core_bits = if cpus <= 1 {
            0
        } else {
            32 - (cpus - 1).leading_zeros()
        };
        Topology { cpus, core_bits }
    }

    /// Addressable IDs in the package.
    fn ids(&self) -> u32 {
        1 << self.core_bits
    }

    /// Leaf 0xB/0x1F subleaves (x2APIC ID filled per vCPU).
    fn x2apic_levels(&self, leaf: u32) -> [CpuidEntry; 3] {
        let level = |index, shift, count, kind: u32| CpuidEntry {
            function: leaf,
            index,
            eax: shift,
            ebx: count,
            ecx: index | kind << 8,
            edx: 0,
        };
        [
            level(0, 0, 1, 1),                      // SMT: one thread per core
            level(1, self.core_bits, self.cpus, 2), // core: all vCPUs
            level(2, 0, 0, 0),                      // end
        ]
    }
}

/// The XSAVE components the guest gets and their layout (leaf 0xD).
#[derive(Clone, Copy, Debug)]
struct Xsave {
    components: u64,
    /// (size, offset, aligned) of components 2..64, from leaf 0xD.
    layout: [(u32, u32, bool); 64],
}

/// x87 and SSE state, the XSAVE header.
const XSAVE_LEGACY_AND_HEADER: u32 = 512 + 64;

impl Xsave {
    fn from_host(host: &HostTable, leaf1: CpuidEntry, policy: &CpuidPolicy) -> Xsave {
        let mut x = Xsave {
            components: 0,
            layout: [(0, 0, false); 64],
        };
        let Some(d0) = host.get(0xd, 0) else {
            return x;
        };
        if leaf1.ecx & allow::L1_ECX_XSAVE == 0 {
            return x;
        }
        let host_xcr0 = u64::from(d0.eax) | u64::from(d0.edx) << 32;
        let mut kept =
            host_xcr0 & policy.xsave_components & (XCR0_X87 | XCR0_SSE | XCR0_AVX | XCR0_AVX512);
        if kept & (XCR0_X87 | XCR0_SSE) != XCR0_X87 | XCR0_SSE {
            return x;
        }
        if kept & XCR0_AVX == 0 || kept & XCR0_AVX512 != XCR0_AVX512 {
            kept &= !XCR0_AVX512;
        }
        for i in 2..64 {
            if kept & 1 << i != 0 {
                match host.get(0xd, i) {
                    Some(s) if s.eax != 0 => x.layout[i as usize] = (s.eax, s.ebx, s.ecx & 2 != 0),
                    // A component without a layout cannot be given.
                    _ => kept &= !(1 << i),
                }
            }
        }
        if kept & XCR0_AVX == 0 {
            kept &= !XCR0_AVX512;
        }
        x.components = kept;
        x
    }

    fn from_table(entries: &[CpuidEntry]) -> Xsave {
        let mut x = Xsave {
            components: 0,
            layout: [(0, 0, false); 64],
        };
        for e in entries.iter().filter(|e| e.function == 0xd) {
            match e.index {
                0 => x.components = u64::from(e.eax) | u64::from(e.edx) << 32,
                1 => {}
                i => x.layout[i as usize % 64] = (e.eax, e.ebx, e.ecx & 2 != 0),
            }
        }
        x
    }

    /// XSAVE area size (standard format) for the components in `xcr0`.
    fn standard_size(&self, xcr0: u64) -> u32 {
        (2..64)
            .filter(|i| xcr0 & self.components & 1 << i != 0)
            .map(|i| self.layout[i].0 + self.layout[i].1)
            .fold(XSAVE_LEGACY_AND_HEADER, u32::max)
    }

    /// XSAVEC area size (compacted format) for the components in `xcr0`.
    fn compacted_size(&self, xcr0: u64) -> u32 {
        (2..64)
            .filter(|i| xcr0 & self.components & 1 << i != 0)
            .fold(XSAVE_LEGACY_AND_HEADER, |end, i| {
                let (size, _, aligned) = self.layout[i];
                let start = if aligned {
                    end.next_multiple_of(64)
                } else {
                    end
                };
                start + size
            })
    }

    fn avx(&self) -> bool {
        self.components & XCR0_AVX != 0
    }

    fn avx512(&self) -> bool {
        self.components & XCR0_AVX512 == XCR0_AVX512
    }
}

struct Builder<'a> {
    host: HostTable<'a>,
    policy: &'a CpuidPolicy,
    vendor: Vendor,
    out: Vec<CpuidEntry>,
    topology: Topology,
    xsave: Xsave,
}

impl Builder<'_> {
    fn push(&mut self, function: u32, index: u32, regs: [u32; 4]) {
        let [eax, ebx, ecx, edx] = regs;
        self.out.push(CpuidEntry {
            function,
            index,
            eax,
            ebx,
            ecx,
            edx,
        });
    }

    /// `mask` plus `extra` where `cond` holds.
    fn with(mask: u32, cond: bool, extra: u32) -> u32 {
        if cond {
            mask | extra
        } else {
            mask
        }
    }

    fn basic(&mut self, leaf0: CpuidEntry, leaf1: CpuidEntry) {
        let host_max = leaf0.eax;
        let intel = self.vendor == Vendor::Intel;
        // Intel guests always get the x2APIC topology leaf (synthesized).
        let mut max = host_max.min(0x1f);
        if intel {
            max = max.max(0xb);
        }
        self.push(0, 0, [max, leaf0.ebx, leaf0.ecx, leaf0.edx]);

        let (avx, avx512) = (self.xsave.avx(), self.xsave.avx512());
        let xsave = self.xsave.components != 0;
        let p = *self.policy;
        let t = self.topology;

        // Leaf 1: signature kept; logical count and APIC ID per topology.
        let mut ecx_mask = allow::L1_ECX;
        ecx_mask = Self::with(ecx_mask, avx, allow::L1_ECX_AVX);
        ecx_mask = Self::with(ecx_mask, p.pcid, allow::L1_ECX_PCID);
        if !xsave {
            ecx_mask &= !allow::L1_ECX_XSAVE;
        }
        let mut ecx = leaf1.ecx & ecx_mask | allow::L1_ECX_HYPERVISOR;
        ecx = Self::with(ecx, p.x2apic, allow::L1_ECX_X2APIC);
        ecx = Self::with(ecx, p.tsc_deadline, allow::L1_ECX_TSC_DEADLINE);
        let edx = Self::with(leaf1.edx & allow::L1_EDX, t.cpus > 1, allow::L1_EDX_HTT);
        // Brand index and CLFLUSH line size kept; logical IDs; APIC ID 0.
        let ebx = (leaf1.ebx & 0xffff) | (t.ids() & 0xff) << 16;
        self.push(1, 0, [leaf1.eax, ebx, ecx, edx]);

        if intel && max >= 2 {
            if let Some(l2) = self.host.get(2, 0) {
                self.push(2, 0, [l2.eax, l2.ebx, l2.ecx, l2.edx]);
            }
        }
        if intel && max >= 4 {
            self.deterministic_caches(4);
        }
        if max >= 6 {
            self.push(6, 0, [allow::L6_EAX_ARAT, 0, 0, 0]);
        }
        if max >= 7 {
            self.structured_features(avx, avx512);
        }
        if intel || host_max >= 0xb {
            for e in t.x2apic_levels(0xb) {
                self.out.push(e);
            }
        }
        if max >= 0xd && xsave {
            self.xsave_leaf();
        }
        if intel {
            for leaf in [0x15, 0x16] {
                if let Some(e) = self.host.get(leaf, 0).filter(|_| max >= leaf) {
                    self.push(leaf, 0, [e.eax, e.ebx, e.ecx, e.edx]);
                }
            }
            if max >= 0x1f {
                for e in t.x2apic_levels(0x1f) {
                    self.out.push(e);
                }
            }
        }
    }

    /// Leaf 4 (Intel) or 0x8000_001D (AMD): the host's caches, shared per
    /// the guest topology (L1/L2 per core, L3 by all).
    fn deterministic_caches(&mut self, leaf: u32) {
        for index in 0..32 {
            let Some(e) = self.host.get(leaf, index) else {
                break;
            };
            if e.eax & 0x1f == 0 {
                break; // no more caches
            }
            let level = (e.eax >> 5) & 7;
            let sharing = if level >= 3 {
                self.topology.ids() - 1
            } else {
                0
            };
            let mut eax = (e.eax & 0x3fff) | (sharing & 0xfff) << 14;
            if leaf == 4 {
                eax |= ((self.topology.ids() - 1) & 0x3f) << 26;
            }
            self.push(leaf, index, [eax, e.ebx, e.ecx, e.edx]);
        }
    }

    fn structured_features(&mut self, avx: bool, avx512: bool) {
        let Some(s0) = self.host.get(7, 0) else {
            return;
        };
        let p = *self.policy;
        let mut ebx = allow::L7_EBX;
        ebx = Self::with(ebx, avx, allow::L7_EBX_AVX);
        ebx = Self::with(ebx, avx512, allow::L7_EBX_AVX512);
        ebx = Self::with(ebx, p.pcid, allow::L7_EBX_INVPCID);
        let ecx = Self::with(
            Self::with(allow::L7_ECX, avx, allow::L7_ECX_AVX),
            avx512,
            allow::L7_ECX_AVX512,
        );
        let mut edx = Self::with(allow::L7_EDX, avx512, allow::L7_EDX_AVX512);
        edx = Self::with(edx, p.speculation_controls, allow::L7_EDX_SPECULATION);
        let subleaves = s0.eax.min(1);
        self.push(7, 0, [subleaves, s0.ebx & ebx, s0.ecx & ecx, s0.edx & edx]);
        if subleaves >= 1 {
            let s1 = self.host.get(7, 1).unwrap_or_default();
            let mut eax = Self::with(allow::L7_1_EAX, avx, allow::L7_1_EAX_AVX);
            eax = Self::with(eax, avx512, allow::L7_1_EAX_AVX512);
            self.push(7, 1, [s1.eax & eax, 0, 0, 0]);
        }
    }

    fn xsave_leaf(&mut self) {
        let x = self.xsave;
        let size = x.standard_size(x.components);
        self.push(
            0xd,
            0,
            [x.components as u32, size, size, (x.components >> 32) as u32],
        );
        let d1 = self.host.get(0xd, 1).unwrap_or_default();
        self.push(
            0xd,
            1,
            [
                d1.eax & allow::LD_1_EAX,
                x.compacted_size(x.components),
                0,
                0,
            ],
        );
        for i in 2..64u32 {
            if x.components & 1 << i != 0 {
                let (size, offset, aligned) = x.layout[i as usize];
                self.push(0xd, i, [size, offset, u32::from(aligned) << 1, 0]);
            }
        }
    }

    fn hypervisor(&mut self) {
        let sig = HYPERVISOR_SIGNATURE;
        let word = |i: usize| u32::from_le_bytes([sig[i], sig[i + 1], sig[i + 2], sig[i + 3]]);
        let p = *self.policy;
        let max = if p.tsc_khz.is_some() || p.apic_timer_khz.is_some() {
            HYPERVISOR_TIMING
        } else {
            HYPERVISOR_BASE
        };
        self.push(HYPERVISOR_BASE, 0, [max, word(0), word(4), word(8)]);
        if max == HYPERVISOR_TIMING {
            let khz = [p.tsc_khz.unwrap_or(0), p.apic_timer_khz.unwrap_or(0), 0, 0];
            self.push(HYPERVISOR_TIMING, 0, khz);
        }
    }

    fn extended(&mut self) {
        let amd = self.vendor == Vendor::Amd;
        let host_max = self.host.max(0x8000_0000);
        if host_max < 0x8000_0001 {
            return;
        }
        let cap = if amd { 0x8000_0021 } else { 0x8000_0008 };
        let max = host_max.min(cap);
        let base = self.host.get(0x8000_0000, 0).unwrap_or_default();
        self.push(0x8000_0000, 0, [max, base.ebx, base.ecx, base.edx]);

        let avx = self.xsave.avx();
        let p = *self.policy;
        let t = self.topology;
        // AMD's cache topology and core leaves come with TOPOEXT.
        let topoext = amd
            && max >= 0x8000_001e
            && self
                .host
                .get(0x8000_0001, 0)
                .is_some_and(|e| e.ecx & allow::L81_ECX_TOPOEXT != 0);
        let regs = |e: CpuidEntry| [e.eax, e.ebx, e.ecx, e.edx];
        for leaf in 0x8000_0001..=max {
            let Some(e) = self.host.get(leaf, 0) else {
                continue;
            };
            match leaf {
                0x8000_0001 => {
                    let mut ecx = Self::with(allow::L81_ECX, avx, allow::L81_ECX_AVX);
                    ecx = Self::with(ecx, topoext, allow::L81_ECX_TOPOEXT);
                    // CMP_LEGACY: the logical count of leaf 1 counts cores.
                    self.push(leaf, 0, [e.eax, e.ebx, e.ecx & ecx, e.edx & allow::L81_EDX]);
                }
                0x8000_0002..=0x8000_0006 => self.push(leaf, 0, regs(e)),
                0x8000_0007 => self.push(leaf, 0, [0, 0, 0, e.edx & allow::L87_EDX]),
                0x8000_0008 => {
                    let ebx = Self::with(
                        allow::L88_EBX,
                        p.speculation_controls,
                        allow::L88_EBX_SPECULATION,
                    );
                    // AMD: NC = cores - 1, ApicIdCoreIdSize.
                    let ecx = if amd {
                        (t.cpus - 1) | t.core_bits << 12
                    } else {
                        0
                    };
                    self.push(leaf, 0, [e.eax, e.ebx & ebx, ecx, 0]);
                }
                0x8000_001d if topoext => self.deterministic_caches(leaf),
                0x8000_001e if topoext => {
                    // Extended APIC ID, core ID (per vCPU), one thread per
                    // core, one node.
                    self.push(leaf, 0, [0, 0, 0, 0]);
                }
                0x8000_0021 => self.push(leaf, 0, [e.eax & allow::L8_21_EAX, 0, 0, 0]),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod tests;
