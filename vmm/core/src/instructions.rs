//! Instructions a VMM carries out for the guest from what the hardware
//! decoded: control-register accesses and XSETBV.
//!
//! Owns: the architectural rules of these instructions on a [`VcpuState`]
//! (which registers, which XCR0 values are valid). Must not touch: where the
//! supported XCR0 bits come from (the caller's CPUID model) or what happens
//! after the exit (the caller's exit loop). Shared by vmm-core's loop and the
//! PC machine (`vmm-pc`).

use vcpu_api::{Charged, CrAccess, CrOp, EventInfo, VcpuState};

const VECTOR_GP: u8 = 13;
const CR0_TS: u64 = 1 << 3;

/// The control register `cr` of the state, if a VMM handles it.
fn control_register(s: &mut VcpuState, cr: u8) -> Option<&mut Charged<u64>> {
    match cr {
        0 => Some(&mut s.cr0),
        2 => Some(&mut s.cr2),
        3 => Some(&mut s.cr3),
        4 => Some(&mut s.cr4),
        _ => None,
    }
}

/// Carries out an intercepted control-register access the hardware decoded
/// (MOV to/from CR0/2/3/4, CLTS, LMSW) and completes the instruction;
/// `false` (nothing charged) when it cannot: no register number, another CR,
/// no instruction length.
pub fn cr_access(s: &mut VcpuState, access: CrAccess) -> bool {
    if s.ip_len.value() == 0 || control_register(s, access.cr).is_none() {
        return false;
    }
    match access.op {
        CrOp::Write { gpr: Some(gpr) } => match (s.gpr(gpr), control_register(s, access.cr)) {
            (Some(value), Some(cr)) => cr.charge(value),
            _ => return false,
        },
        CrOp::Read { gpr: Some(gpr) } => {
            let value = control_register(s, access.cr).map_or(0, |cr| cr.value());
            if !s.set_gpr(gpr, value) {
                return false;
            }
        }
        CrOp::Clts if access.cr == 0 => s.cr0.update(|v| *v &= !CR0_TS),
        // LMSW loads CR0 bits 3:0 but can set PE, never clear it.
        CrOp::Lmsw { source: Some(msw) } if access.cr == 0 => s
            .cr0
            .update(|v| *v = (*v & !0xf) | (*v & 1) | (msw as u64 & 0xf)),
        _ => return false,
    }
    s.skip_instruction();
    true
}

/// Carries out XSETBV: a valid value for XCR0 (ECX = 0, x87 set, only bits
/// in `supported`, AVX only with SSE) is charged and the instruction
/// completed; anything else injects #GP(0).
pub fn xsetbv(s: &mut VcpuState, supported: u64) {
    let value = s.rdx.value() << 32 | (s.rax.value() & 0xffff_ffff);
    let (x87, sse, avx) = (1, 2, 4);
    let valid = s.rcx.value() as u32 == 0
        && value & x87 != 0
        && value & !supported == 0
        && (value & avx == 0 || value & sse != 0);
    if valid {
        s.xcr0.charge(value);
        s.skip_instruction();
    } else {
        s.inject(EventInfo::exception(VECTOR_GP, true), 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xsetbv_with(rcx: u64, value: u64, supported: u64) -> VcpuState {
        let mut s = VcpuState::default();
        s.ip.load(0x1000);
        s.ip_len.load(3);
        s.rcx.load(rcx);
        s.rax.load(value & 0xffff_ffff);
        s.rdx.load(value >> 32);
        s.xcr0.load(1);
        xsetbv(&mut s, supported);
        s
    }

    #[test]
    fn xsetbv_takes_valid_values_and_faults_on_the_rest() {
        let all = 0x7; // x87, SSE, AVX
        let ok = xsetbv_with(0, 0x7, all);
        assert_eq!((ok.xcr0.value(), ok.ip.value()), (0x7, 0x1003));
        assert!(!ok.inj_info.charged());
        for (rcx, value, why) in [
            (1, 0x7, "XCR1 is not writable"),
            (0, 0x6, "x87 must stay set"),
            (0, 0x5, "AVX needs SSE"),
            (0, 0x1_0000_0003, "a bit the CPU does not offer"),
        ] {
            let s = xsetbv_with(rcx, value, all);
            assert_eq!(s.inj_info.value(), EventInfo::exception(13, true), "{why}");
            assert_eq!((s.xcr0.value(), s.ip.value()), (1, 0x1000), "{why}");
        }
    }

    #[test]
    fn lmsw_cannot_clear_protection_and_clts_clears_ts() {
        let mut s = VcpuState::default();
        s.ip_len.load(3);
        s.cr0.load(0x8000_0009); // PG, TS, PE
        let lmsw = |msw| CrAccess {
            cr: 0,
            op: CrOp::Lmsw { source: Some(msw) },
        };
        assert!(cr_access(&mut s, lmsw(0x0)));
        assert_eq!(s.cr0.value(), 0x8000_0001);
        assert!(cr_access(&mut s, lmsw(0x8)));
        assert!(cr_access(
            &mut s,
            CrAccess {
                cr: 0,
                op: CrOp::Clts
            }
        ));
        assert_eq!(s.cr0.value(), 0x8000_0001);
        assert_eq!(s.ip.value(), 9);
        s.ip_len.load(0);
        assert!(!cr_access(&mut s, lmsw(0x0)), "no length: not carried out");
    }
}
