//! CPUID answers for the guest.
//!
//! Owns: which host CPUID leaves the guest sees and what is masked. Must not
//! touch: the host CPUID instruction (the platform executes it, so the core
//! stays free of `unsafe` and testable).
//!
//! Policy: the host's leaves, capped at basic leaf 0xD and extended leaf
//! 0x8000_0008; virtualization (VMX, SVM), SMX, MONITOR/MWAIT, x2APIC and the
//! TSC deadline timer are hidden (the VMM emulates none of them); the
//! hypervisor bit is set; OSXSAVE follows the guest's CR4; the XSAVE area
//! sizes of leaf 0xD follow the guest's XCR0; the initial APIC ID is the
//! vCPU number. Leaves above the caps (and the hypervisor range
//! 0x4000_0000..) read as zeros.

/// CPUID result registers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuidResult {
    pub eax: u32,
    pub ebx: u32,
    pub ecx: u32,
    pub edx: u32,
}

pub const MAX_BASIC_LEAF: u32 = 0xd;
pub const MAX_EXTENDED_LEAF: u32 = 0x8000_0008;

mod bit {
    pub const ECX1_MONITOR: u32 = 1 << 3;
    pub const ECX1_VMX: u32 = 1 << 5;
    pub const ECX1_SMX: u32 = 1 << 6;
    pub const ECX1_X2APIC: u32 = 1 << 21;
    pub const ECX1_TSC_DEADLINE: u32 = 1 << 24;
    pub const ECX1_OSXSAVE: u32 = 1 << 27;
    pub const ECX1_HYPERVISOR: u32 = 1 << 31;
    pub const ECX81_SVM: u32 = 1 << 2;
    pub const CR4_OSXSAVE: u64 = 1 << 18;
}

/// The guest's answer for `leaf`/`subleaf` on vCPU `vcpu` with guest CR4
/// `cr4`; `host` executes CPUID on the host.
pub fn answer(
    leaf: u32,
    subleaf: u32,
    vcpu: usize,
    cr4: u64,
    host: impl Fn(u32, u32) -> CpuidResult,
) -> CpuidResult {
    let zero = CpuidResult::default();
    if leaf < 0x8000_0000 {
        let max = host(0, 0).eax.min(MAX_BASIC_LEAF);
        if leaf > max {
            return zero;
        }
    } else {
        let max = host(0x8000_0000, 0).eax.min(MAX_EXTENDED_LEAF);
        if leaf > max {
            return zero;
        }
    }
    let mut r = host(leaf, subleaf);
    match leaf {
        0 => r.eax = r.eax.min(MAX_BASIC_LEAF),
        1 => {
            r.ecx &= !(bit::ECX1_MONITOR
                | bit::ECX1_VMX
                | bit::ECX1_SMX
                | bit::ECX1_X2APIC
                | bit::ECX1_TSC_DEADLINE
                | bit::ECX1_OSXSAVE);
            r.ecx |= bit::ECX1_HYPERVISOR;
            if cr4 & bit::CR4_OSXSAVE != 0 {
                r.ecx |= bit::ECX1_OSXSAVE;
            }
            r.ebx = (r.ebx & 0x00ff_ffff) | (vcpu as u32) << 24;
        }
        5 => r = zero, // MONITOR/MWAIT hidden
        0x8000_0000 => r.eax = r.eax.min(MAX_EXTENDED_LEAF),
        0x8000_0001 => r.ecx &= !bit::ECX81_SVM,
        _ => {}
    }
    r
}

/// The XCR0 a vCPU starts with: the user state components (x87, SSE, AVX,
/// AVX-512) the host offers, or x87 alone without XSAVE. Guests enable
/// these; starting with them keeps the VMM's view of XCR0 (for leaf 0xD's
/// sizes) right where the guest's XSETBV does not exit: QEMU's TCG does
/// not intercept XSETBV of a nested SVM guest.
pub fn start_xcr0(host: impl Fn(u32, u32) -> CpuidResult) -> u64 {
    const XSAVE: u32 = 1 << 26;
    const USER_STATES: u64 = 0xe7;
    if host(0, 0).eax < 0xd || host(1, 0).ecx & XSAVE == 0 {
        return 1;
    }
    let d = host(0xd, 0);
    let offered = (d.eax as u64 | (d.edx as u64) << 32) & USER_STATES;
    if offered & 3 == 3 {
        offered
    } else {
        1
    }
}

/// Leaf 0xD's EBX for `subleaf` 0 (standard format) or 1 (compacted) with
/// the guest's XCR0 `xcr0`, from the components' sizes, offsets and
/// alignments (`host` subleaves 2..): the host's own answer describes the
/// VMM's XCR0, not the guest's. `None` for other subleaves. IA32_XSS is not
/// modelled (always 0), so the compacted size covers XCR0 alone.
pub fn xsave_area_size(
    subleaf: u32,
    xcr0: u64,
    host: impl Fn(u32, u32) -> CpuidResult,
) -> Option<u32> {
    const LEGACY_AND_HEADER: u32 = 512 + 64;
    let compacted = match subleaf {
        0 => false,
        1 => true,
        _ => return None,
    };
    let mut end = LEGACY_AND_HEADER;
    for i in (2..63).filter(|i| xcr0 & 1 << i != 0) {
        let c = host(0xd, i);
        end = if compacted {
            let start = if c.ecx & 2 != 0 {
                end.next_multiple_of(64)
            } else {
                end
            };
            start + c.eax
        } else {
            end.max(c.ebx + c.eax)
        };
    }
    Some(end)
}
