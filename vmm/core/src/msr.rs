//! The MSRs the VMM implements for its guests.
//!
//! Owns: which MSR indices exist and where their values live (a `VcpuState`
//! field or the per-vCPU [`MsrFile`]). Must not touch: exit handling; the
//! caller injects #GP when [`read`]/[`write`] return `None`/`false`.

use vcpu_api::VcpuState;

pub const IA32_APIC_BASE: u32 = 0x1b;
pub const IA32_MTRRCAP: u32 = 0xfe;
pub const IA32_SYSENTER_CS: u32 = 0x174;
pub const IA32_SYSENTER_ESP: u32 = 0x175;
pub const IA32_SYSENTER_EIP: u32 = 0x176;
pub const IA32_MISC_ENABLE: u32 = 0x1a0;
pub const IA32_PAT: u32 = 0x277;
pub const IA32_MTRR_DEF_TYPE: u32 = 0x2ff;
pub const IA32_EFER: u32 = 0xc000_0080;
pub const IA32_STAR: u32 = 0xc000_0081;
pub const IA32_LSTAR: u32 = 0xc000_0082;
pub const IA32_CSTAR: u32 = 0xc000_0083;
pub const IA32_FMASK: u32 = 0xc000_0084;
pub const IA32_FS_BASE: u32 = 0xc000_0100;
pub const IA32_GS_BASE: u32 = 0xc000_0101;
pub const IA32_KERNEL_GS_BASE: u32 = 0xc000_0102;
pub const IA32_TSC_AUX: u32 = 0xc000_0103;

const EFER_LMA: u64 = 1 << 10;
/// SCE, LME, LMA, NXE.
const EFER_WRITABLE: u64 = 1 | 1 << 8 | EFER_LMA | 1 << 11;
const APIC_DEFAULT: u64 = 0xfee0_0000 | 1 << 11;
const APIC_BSP: u64 = 1 << 8;

/// Per-vCPU MSRs that have no `VcpuState` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsrFile {
    pub pat: u64,
    pub mtrr_def_type: u64,
}

impl Default for MsrFile {
    fn default() -> Self {
        MsrFile {
            pat: 0x0007_0406_0007_0406,
            mtrr_def_type: 0,
        }
    }
}

fn canonical(v: u64) -> bool {
    ((v as i64) << 16 >> 16) as u64 == v
}

/// RDMSR `index` on vCPU `vcpu`; `None` = not implemented (#GP).
pub fn read(index: u32, vcpu: usize, state: &VcpuState, file: &MsrFile) -> Option<u64> {
    Some(match index {
        IA32_APIC_BASE => APIC_DEFAULT | if vcpu == 0 { APIC_BSP } else { 0 },
        IA32_MTRRCAP => 0,
        IA32_SYSENTER_CS => state.sysenter_cs.value(),
        IA32_SYSENTER_ESP => state.sysenter_sp.value(),
        IA32_SYSENTER_EIP => state.sysenter_ip.value(),
        IA32_MISC_ENABLE => 1, // fast strings
        IA32_PAT => file.pat,
        IA32_MTRR_DEF_TYPE => file.mtrr_def_type,
        IA32_EFER => state.efer.value(),
        IA32_STAR => state.star.value(),
        IA32_LSTAR => state.lstar.value(),
        IA32_CSTAR => state.cstar.value(),
        IA32_FMASK => state.fmask.value(),
        IA32_FS_BASE => state.fs.value().base,
        IA32_GS_BASE => state.gs.value().base,
        IA32_KERNEL_GS_BASE => state.kernel_gs_base.value(),
        IA32_TSC_AUX => state.tsc_aux.value(),
        _ => return None,
    })
}

/// WRMSR `value` to `index`; `false` = not implemented or a value the CPU
/// would refuse (#GP). Changes are charged into `state`.
pub fn write(index: u32, value: u64, state: &mut VcpuState, file: &mut MsrFile) -> bool {
    let address_ok = canonical(value);
    match index {
        IA32_APIC_BASE | IA32_MISC_ENABLE => {} // fixed; writes ignored
        IA32_SYSENTER_CS => state.sysenter_cs.charge(value & 0xffff),
        IA32_SYSENTER_ESP if address_ok => state.sysenter_sp.charge(value),
        IA32_SYSENTER_EIP if address_ok => state.sysenter_ip.charge(value),
        IA32_PAT => file.pat = value,
        IA32_MTRR_DEF_TYPE => file.mtrr_def_type = value,
        IA32_EFER if value & !EFER_WRITABLE == 0 => {
            // LMA is the CPU's to set; keep the current value.
            let lma = state.efer.value() & EFER_LMA;
            state.efer.charge((value & !EFER_LMA) | lma);
        }
        IA32_STAR => state.star.charge(value),
        IA32_LSTAR if address_ok => state.lstar.charge(value),
        IA32_CSTAR if address_ok => state.cstar.charge(value),
        IA32_FMASK => state.fmask.charge(value & 0xffff_ffff),
        IA32_FS_BASE if address_ok => state.fs.update(|s| s.base = value),
        IA32_GS_BASE if address_ok => state.gs.update(|s| s.base = value),
        IA32_KERNEL_GS_BASE if address_ok => state.kernel_gs_base.charge(value),
        IA32_TSC_AUX if value >> 32 == 0 => state.tsc_aux.charge(value),
        _ => return false,
    }
    true
}
