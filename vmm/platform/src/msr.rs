//! The model-specific registers a guest can read and write: one model for
//! Intel guests, one for AMD guests (64-bit Linux touches vendor MSRs).
//!
//! Owns: which MSRs exist for the guest, their reset values, what a write
//! may change (reserved bits give #GP) and where values live: the
//! architectural ones in `vcpu_api::VcpuState` (EFER, STAR..., FS/GS base,
//! SYSENTER, TSC, TSC_AUX), the rest in the per-vCPU [`MsrModel`]. Must not
//! touch: the APIC MSRs (APIC base 0x1B, TSC deadline 0x6E0, x2APIC
//! 0x800-0x8FF: the interrupt controller's, [`MsrError::NotMine`]) or
//! injecting the #GP (the machine does, for [`MsrError::Unknown`] and
//! [`MsrError::Refused`]; [`UnknownMsrLog`] says when to log).
//!
//! What exists follows the guest's CPUID ([`MsrPlatform::new`]): TSC_AUX
//! with RDTSCP, SPEC_CTRL/PRED_CMD/FLUSH_CMD/ARCH_CAPABILITIES with their
//! bits, EFER bits with SYSCALL/NX/LM.

use std::collections::HashSet;
use std::sync::Mutex;

use vcpu_api::VcpuState;

use crate::cpuid::{GuestCpuid, Reg, Vendor};
use crate::layout::{self, MemoryLayout};

/// MSR numbers.
pub mod index {
    pub const TSC: u32 = 0x10;
    pub const APIC_BASE: u32 = 0x1b;
    pub const FEATURE_CONTROL: u32 = 0x3a;
    pub const SPEC_CTRL: u32 = 0x48;
    pub const PRED_CMD: u32 = 0x49;
    pub const UCODE_REV: u32 = 0x8b;
    pub const PLATFORM_INFO: u32 = 0xce;
    pub const MTRR_CAP: u32 = 0xfe;
    pub const ARCH_CAPABILITIES: u32 = 0x10a;
    pub const FLUSH_CMD: u32 = 0x10b;
    pub const SYSENTER_CS: u32 = 0x174;
    pub const SYSENTER_ESP: u32 = 0x175;
    pub const SYSENTER_EIP: u32 = 0x176;
    pub const MCG_CAP: u32 = 0x179;
    pub const MCG_STATUS: u32 = 0x17a;
    pub const MISC_ENABLE: u32 = 0x1a0;
    pub const DEBUGCTL: u32 = 0x1d9;
    /// PHYSBASE0, PHYSMASK0, PHYSBASE1, ... (two per range).
    pub const MTRR_PHYS_BASE0: u32 = 0x200;
    pub const MTRR_FIX_64K_00000: u32 = 0x250;
    pub const MTRR_FIX_16K_80000: u32 = 0x258;
    pub const MTRR_FIX_16K_A0000: u32 = 0x259;
    /// 0x268..=0x26f: the eight 4K fixed ranges.
    pub const MTRR_FIX_4K_C0000: u32 = 0x268;
    pub const PAT: u32 = 0x277;
    pub const MTRR_DEF_TYPE: u32 = 0x2ff;
    pub const TSC_DEADLINE: u32 = 0x6e0;
    pub const X2APIC_FIRST: u32 = 0x800;
    pub const X2APIC_LAST: u32 = 0x8ff;
    pub const EFER: u32 = 0xc000_0080;
    pub const STAR: u32 = 0xc000_0081;
    pub const LSTAR: u32 = 0xc000_0082;
    pub const CSTAR: u32 = 0xc000_0083;
    pub const SFMASK: u32 = 0xc000_0084;
    pub const FS_BASE: u32 = 0xc000_0100;
    pub const GS_BASE: u32 = 0xc000_0101;
    pub const KERNEL_GS_BASE: u32 = 0xc000_0102;
    pub const TSC_AUX: u32 = 0xc000_0103;
    // AMD
    /// PERF_CTL0..3 at 0xC001_0000.., PERF_CTR0..3 at 0xC001_0004...
    pub const AMD_PERF_CTL0: u32 = 0xc001_0000;
    pub const AMD_PERF_CTR3: u32 = 0xc001_0007;
    pub const AMD_SYSCFG: u32 = 0xc001_0010;
    pub const AMD_HWCR: u32 = 0xc001_0015;
    pub const AMD_TOP_MEM: u32 = 0xc001_001a;
    pub const AMD_TOP_MEM2: u32 = 0xc001_001d;
    pub const AMD_NB_CFG: u32 = 0xc001_001f;
    pub const AMD_TSEG_BASE: u32 = 0xc001_0112;
    pub const AMD_TSEG_MASK: u32 = 0xc001_0113;
    pub const AMD_VM_CR: u32 = 0xc001_0114;
    pub const AMD_OSVW_ID_LENGTH: u32 = 0xc001_0140;
    pub const AMD_OSVW_STATUS: u32 = 0xc001_0141;
    pub const AMD_LS_CFG: u32 = 0xc001_1020;
    pub const AMD_DE_CFG: u32 = 0xc001_1029;
}

use index::*;

/// Why an access is not carried out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MsrError {
    /// An APIC MSR: the interrupt controller answers it.
    #[error("MSR {0:#x} belongs to the interrupt controller")]
    NotMine(u32),
    /// Not implemented for this guest: inject #GP(0), log it once.
    #[error("MSR {0:#x} is not implemented (guest gets #GP)")]
    Unknown(u32),
    /// Implemented, but the access is refused (reserved bits, read-only,
    /// write-only): inject #GP(0).
    #[error("MSR {msr:#x}: the CPU would refuse {value:#x} (guest gets #GP)")]
    Refused { msr: u32, value: u64 },
}

/// What a write changed besides the MSR itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsrEffect {
    None,
    /// The guest wrote its TSC: `state.tsc_offset` is charged with `offset`;
    /// TSC-deadline timers must use the new offset.
    TscOffset(u64),
}

/// What the MSR models of one VM depend on (shared by its vCPUs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsrPlatform {
    pub vendor: Vendor,
    pub syscall: bool,
    pub nx: bool,
    pub long_mode: bool,
    pub rdtscp: bool,
    pub spec_ctrl: bool,
    pub stibp: bool,
    pub ssbd: bool,
    pub pred_cmd: bool,
    pub flush_cmd: bool,
    /// IA32_ARCH_CAPABILITIES value, if CPUID advertises the MSR.
    pub arch_capabilities: Option<u64>,
    /// Guest physical address bits (CPUID 0x8000_0008).
    pub phys_bits: u32,
    /// RAM below 4 GiB ends here; RAM ends at `ram_top` (AMD TOP_MEM/2).
    pub ram_below_4g: u64,
    pub ram_top: u64,
    /// Guest TSC frequency (Intel PLATFORM_INFO's ratio), if known.
    pub tsc_khz: Option<u32>,
}

impl MsrPlatform {
    /// The platform of a VM whose guests see `cpuid`, with memory `layout`.
    /// `arch_capabilities` is the ARCH_CAPABILITIES value to report when
    /// CPUID advertises it (0 claims no immunity).
    pub fn new(
        cpuid: &GuestCpuid,
        layout: &MemoryLayout,
        tsc_khz: Option<u32>,
        arch_capabilities: u64,
    ) -> Self {
        let has = |leaf, reg, bit| cpuid.has(leaf, 0, reg, bit);
        let amd = cpuid.vendor() == Vendor::Amd;
        let intel_spec = has(7, Reg::Edx, 26);
        MsrPlatform {
            vendor: cpuid.vendor(),
            syscall: has(0x8000_0001, Reg::Edx, 11),
            nx: has(0x8000_0001, Reg::Edx, 20),
            long_mode: has(0x8000_0001, Reg::Edx, 29),
            rdtscp: has(0x8000_0001, Reg::Edx, 27),
            spec_ctrl: intel_spec || (amd && has(0x8000_0008, Reg::Ebx, 14)),
            stibp: has(7, Reg::Edx, 27) || (amd && has(0x8000_0008, Reg::Ebx, 15)),
            ssbd: has(7, Reg::Edx, 31) || (amd && has(0x8000_0008, Reg::Ebx, 24)),
            pred_cmd: intel_spec || (amd && has(0x8000_0008, Reg::Ebx, 12)),
            flush_cmd: has(7, Reg::Edx, 28),
            arch_capabilities: has(7, Reg::Edx, 29).then_some(arch_capabilities),
            phys_bits: cpuid
                .get(0x8000_0008, 0)
                .map_or(36, |e| (e.eax & 0xff).clamp(36, 52)),
            ram_below_4g: layout.low_ram().end,
            ram_top: layout.top_of_ram(),
            tsc_khz,
        }
    }
}

/// Remembers which unknown MSRs were logged (one per VM, all vCPUs).
#[derive(Debug, Default)]
pub struct UnknownMsrLog(Mutex<HashSet<u32>>);

impl UnknownMsrLog {
    /// True the first time `msr` is reported.
    pub fn first(&self, msr: u32) -> bool {
        self.0.lock().is_ok_and(|mut seen| seen.insert(msr))
    }
}

/// Memory types valid in PAT entries and MTRRs.
const UC: u64 = 0;
const WB: u64 = 6;
fn valid_mtrr_type(t: u64) -> bool {
    matches!(t, 0 | 1 | 4 | 5 | 6)
}
fn valid_pat_type(t: u64) -> bool {
    matches!(t, 0 | 1 | 4 | 5 | 6 | 7)
}

const VARIABLE_MTRRS: usize = 8;
const FIXED_MTRRS: usize = 11;
/// MTRRcap: 8 variable ranges, fixed ranges, write-combining.
const MTRR_CAP_VALUE: u64 = VARIABLE_MTRRS as u64 | 1 << 8 | 1 << 10;
const MTRR_DEF_ENABLE: u64 = 1 << 11;
const MTRR_DEF_FIXED_ENABLE: u64 = 1 << 10;
const MTRR_VALID: u64 = 1 << 11;
const PAT_RESET: u64 = 0x0007_0406_0007_0406;

const EFER_SCE: u64 = 1 << 0;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
const EFER_NXE: u64 = 1 << 11;
const CR0_PG: u64 = 1 << 31;

/// MISC_ENABLE: fast strings; branch trace and PEBS unavailable.
const MISC_ENABLE_VALUE: u64 = 1 | 1 << 11 | 1 << 12;
/// FEATURE_CONTROL: locked, VMX off inside and outside SMX.
const FEATURE_CONTROL_VALUE: u64 = 1;
/// UCODE_REV: a microcode revision of 1 (Intel: bits 63:32; AMD: 31:0).
const UCODE_REVISION: u64 = 1;
/// VM_CR: SVM disabled (SVMDIS) and locked.
const VM_CR_VALUE: u64 = 1 << 4 | 1 << 3;
/// DE_CFG: LFENCE is dispatch-serializing.
const DE_CFG_LFENCE_SERIALIZE: u64 = 1 << 1;
/// SYSCFG: variable-range MTRR DRAM enable, TOP_MEM2 enable.
const SYSCFG_MTRR_VAR_DRAM: u64 = 1 << 20;
const SYSCFG_TOM2: u64 = 1 << 21;

/// One vCPU's MSRs (besides those in `VcpuState`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MsrModel {
    platform: MsrPlatform,
    pat: u64,
    mtrr_def_type: u64,
    mtrr_variable: [(u64, u64); VARIABLE_MTRRS],
    mtrr_fixed: [u64; FIXED_MTRRS],
    misc_enable: u64,
    spec_ctrl: u64,
    mcg_status: u64,
    hwcr: u64,
    syscfg: u64,
    nb_cfg: u64,
    ls_cfg: u64,
    de_cfg: u64,
}

impl MsrModel {
    /// A vCPU's MSRs at reset: PAT at its reset value; MTRRs enabled with
    /// write-back default and the PCI hole below 4 GiB uncachable.
    pub fn new(platform: MsrPlatform) -> Self {
        let phys_mask = (1u64 << platform.phys_bits) - 1;
        let hole = layout::LOW_RAM_MAX;
        let hole_size = (1 << 32) - hole;
        let mut mtrr_variable = [(0, 0); VARIABLE_MTRRS];
        mtrr_variable[0] = (hole | UC, (!(hole_size - 1) & phys_mask) | MTRR_VALID);
        let syscfg = SYSCFG_MTRR_VAR_DRAM
            | if platform.ram_top > 1 << 32 {
                SYSCFG_TOM2
            } else {
                0
            };
        MsrModel {
            platform,
            pat: PAT_RESET,
            mtrr_def_type: MTRR_DEF_ENABLE | WB,
            mtrr_variable,
            mtrr_fixed: [0; FIXED_MTRRS],
            misc_enable: MISC_ENABLE_VALUE,
            spec_ctrl: 0,
            mcg_status: 0,
            hwcr: 0,
            syscfg,
            nb_cfg: 0,
            ls_cfg: 0,
            de_cfg: DE_CFG_LFENCE_SERIALIZE,
        }
    }

    fn intel(&self) -> bool {
        self.platform.vendor == Vendor::Intel
    }

    fn amd(&self) -> bool {
        self.platform.vendor == Vendor::Amd
    }

    /// RDMSR `msr` on this vCPU, whose state is `state`.
    pub fn read(&self, state: &VcpuState, msr: u32) -> Result<u64, MsrError> {
        let p = &self.platform;
        let unknown = Err(MsrError::Unknown(msr));
        Ok(match msr {
            APIC_BASE | TSC_DEADLINE | X2APIC_FIRST..=X2APIC_LAST => {
                return Err(MsrError::NotMine(msr))
            }
            TSC => state.tsc.value(),
            SYSENTER_CS => state.sysenter_cs.value(),
            SYSENTER_ESP => state.sysenter_sp.value(),
            SYSENTER_EIP => state.sysenter_ip.value(),
            EFER => state.efer.value(),
            STAR => state.star.value(),
            LSTAR => state.lstar.value(),
            CSTAR => state.cstar.value(),
            SFMASK => state.fmask.value(),
            FS_BASE => state.fs.value().base,
            GS_BASE => state.gs.value().base,
            KERNEL_GS_BASE => state.kernel_gs_base.value(),
            TSC_AUX if p.rdtscp => state.tsc_aux.value(),
            PAT => self.pat,
            MTRR_CAP => MTRR_CAP_VALUE,
            MTRR_DEF_TYPE => self.mtrr_def_type,
            MTRR_PHYS_BASE0..0x210 => {
                let (base, mask) = self.mtrr_variable[(msr - MTRR_PHYS_BASE0) as usize / 2];
                if is_mtrr_mask(msr) {
                    mask
                } else {
                    base
                }
            }
            m if fixed_mtrr(m).is_some() => self.mtrr_fixed[fixed_mtrr(m).unwrap_or(0)],
            MCG_CAP => 0, // no banks
            MCG_STATUS => self.mcg_status,
            DEBUGCTL => 0,
            UCODE_REV if self.intel() => UCODE_REVISION << 32,
            UCODE_REV => UCODE_REVISION,
            SPEC_CTRL if p.spec_ctrl => self.spec_ctrl,
            // Write-only.
            PRED_CMD if p.pred_cmd => return Err(MsrError::Refused { msr, value: 0 }),
            FLUSH_CMD if p.flush_cmd => return Err(MsrError::Refused { msr, value: 0 }),
            ARCH_CAPABILITIES => match p.arch_capabilities {
                Some(value) => value,
                None => return unknown,
            },
            // Intel
            MISC_ENABLE if self.intel() => self.misc_enable,
            FEATURE_CONTROL if self.intel() => FEATURE_CONTROL_VALUE,
            PLATFORM_INFO if self.intel() => match p.tsc_khz {
                // Maximum non-turbo ratio (of 100 MHz) in bits 15:8.
                Some(khz) => u64::from((khz / 100_000).clamp(1, 255)) << 8,
                None => return unknown,
            },
            // AMD
            AMD_HWCR if self.amd() => self.hwcr,
            AMD_SYSCFG if self.amd() => self.syscfg,
            AMD_NB_CFG if self.amd() => self.nb_cfg,
            AMD_LS_CFG if self.amd() => self.ls_cfg,
            AMD_DE_CFG if self.amd() => self.de_cfg,
            AMD_VM_CR if self.amd() => VM_CR_VALUE,
            AMD_TOP_MEM if self.amd() => p.ram_below_4g,
            AMD_TOP_MEM2 if self.amd() => {
                if p.ram_top > 1 << 32 {
                    p.ram_top
                } else {
                    0
                }
            }
            AMD_TSEG_BASE | AMD_TSEG_MASK | AMD_OSVW_ID_LENGTH | AMD_OSVW_STATUS if self.amd() => 0,
            AMD_PERF_CTL0..=AMD_PERF_CTR3 if self.amd() => 0,
            _ => return unknown,
        })
    }

    /// WRMSR `value` to `msr` on this vCPU; changes to architectural state
    /// are charged into `state`.
    pub fn write(
        &mut self,
        state: &mut VcpuState,
        msr: u32,
        value: u64,
    ) -> Result<MsrEffect, MsrError> {
        let refuse = Err(MsrError::Refused { msr, value });
        let p = self.platform;
        let canonical = ((value as i64) << 16 >> 16) as u64 == value;
        match msr {
            APIC_BASE | TSC_DEADLINE | X2APIC_FIRST..=X2APIC_LAST => {
                return Err(MsrError::NotMine(msr))
            }
            TSC => {
                let offset = state
                    .tsc_offset
                    .value()
                    .wrapping_add(value.wrapping_sub(state.tsc.value()));
                state.tsc_offset.charge(offset);
                state.tsc.charge(value);
                return Ok(MsrEffect::TscOffset(offset));
            }
            SYSENTER_CS => state.sysenter_cs.charge(value & 0xffff),
            SYSENTER_ESP | SYSENTER_EIP | LSTAR | CSTAR | FS_BASE | GS_BASE | KERNEL_GS_BASE
                if !canonical =>
            {
                return refuse
            }
            SYSENTER_ESP => state.sysenter_sp.charge(value),
            SYSENTER_EIP => state.sysenter_ip.charge(value),
            EFER => return self.write_efer(state, value),
            STAR => state.star.charge(value),
            LSTAR => state.lstar.charge(value),
            CSTAR => state.cstar.charge(value),
            SFMASK if value >> 32 == 0 => state.fmask.charge(value),
            FS_BASE => state.fs.update(|s| s.base = value),
            GS_BASE => state.gs.update(|s| s.base = value),
            KERNEL_GS_BASE => state.kernel_gs_base.charge(value),
            TSC_AUX if p.rdtscp && value >> 32 == 0 => state.tsc_aux.charge(value),
            PAT if (0..8).all(|i| valid_pat_type(value >> (i * 8) & 0xff)) => self.pat = value,
            MTRR_DEF_TYPE
                if value & !(0xff | MTRR_DEF_ENABLE | MTRR_DEF_FIXED_ENABLE) == 0
                    && valid_mtrr_type(value & 0xff) =>
            {
                self.mtrr_def_type = value
            }
            MTRR_PHYS_BASE0..0x210 => {
                let range = &mut self.mtrr_variable[(msr - MTRR_PHYS_BASE0) as usize / 2];
                let address = ((1u64 << p.phys_bits) - 1) & !0xfff;
                if !is_mtrr_mask(msr)
                    && value & !(address | 0xff) == 0
                    && valid_mtrr_type(value & 0xff)
                {
                    range.0 = value;
                } else if is_mtrr_mask(msr) && value & !(address | MTRR_VALID) == 0 {
                    range.1 = value;
                } else {
                    return refuse;
                }
            }
            m if fixed_mtrr(m).is_some() => {
                if !(0..8).all(|i| valid_mtrr_type(value >> (i * 8) & 0xff)) {
                    return refuse;
                }
                self.mtrr_fixed[fixed_mtrr(m).unwrap_or(0)] = value;
            }
            MCG_STATUS if value == 0 => self.mcg_status = 0,
            DEBUGCTL if value == 0 => {}
            // Writing starts a microcode load on Intel (the revision is
            // reloaded by CPUID); ignored.
            UCODE_REV => {}
            SPEC_CTRL if p.spec_ctrl => {
                let allowed = 1 | u64::from(p.stibp) << 1 | u64::from(p.ssbd) << 2;
                if value & !allowed != 0 {
                    return refuse;
                }
                self.spec_ctrl = value;
            }
            PRED_CMD if p.pred_cmd && value & !1 == 0 => {}
            FLUSH_CMD if p.flush_cmd && value & !1 == 0 => {}
            // Intel: only the fast-strings bit is the guest's to change.
            MISC_ENABLE if self.intel() => {
                if (value ^ self.misc_enable) & !1 != 0 {
                    return refuse;
                }
                self.misc_enable = value;
            }
            // AMD configuration registers: kept as written (Linux sets
            // chicken bits and errata workarounds there).
            AMD_HWCR if self.amd() => self.hwcr = value,
            AMD_SYSCFG if self.amd() => self.syscfg = value,
            AMD_NB_CFG if self.amd() => self.nb_cfg = value,
            AMD_LS_CFG if self.amd() => self.ls_cfg = value,
            AMD_DE_CFG if self.amd() => self.de_cfg = value,
            AMD_OSVW_ID_LENGTH | AMD_OSVW_STATUS if self.amd() => {}
            AMD_PERF_CTL0..=AMD_PERF_CTR3 if self.amd() => {}
            // Known but read-only, or a value the CPU refuses.
            _ => {
                return match self.read(state, msr) {
                    Ok(_) | Err(MsrError::Refused { .. }) => refuse,
                    Err(e) => Err(e),
                }
            }
        }
        Ok(MsrEffect::None)
    }

    fn write_efer(&mut self, state: &mut VcpuState, value: u64) -> Result<MsrEffect, MsrError> {
        let p = &self.platform;
        let allowed = EFER_LMA
            | if p.syscall { EFER_SCE } else { 0 }
            | if p.long_mode { EFER_LME } else { 0 }
            | if p.nx { EFER_NXE } else { 0 };
        let old = state.efer.value();
        let paging = state.cr0.value() & CR0_PG != 0;
        if value & !allowed != 0 || (paging && (value ^ old) & EFER_LME != 0) {
            return Err(MsrError::Refused { msr: EFER, value });
        }
        // LMA is the CPU's to set: keep the current value.
        state.efer.charge((value & !EFER_LMA) | (old & EFER_LMA));
        Ok(MsrEffect::None)
    }
}

/// Variable-range MTRRs come in pairs: PHYSBASE (even), PHYSMASK (odd).
fn is_mtrr_mask(msr: u32) -> bool {
    msr & 1 == 1
}

/// The index into the fixed-range MTRRs of MSR `msr`.
fn fixed_mtrr(msr: u32) -> Option<usize> {
    match msr {
        MTRR_FIX_64K_00000 => Some(0),
        MTRR_FIX_16K_80000 => Some(1),
        MTRR_FIX_16K_A0000 => Some(2),
        MTRR_FIX_4K_C0000..=0x26f => Some(3 + (msr - MTRR_FIX_4K_C0000) as usize),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
