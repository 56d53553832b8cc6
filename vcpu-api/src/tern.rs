//! The Tern microhypervisor backend (feature `tern`, `no_std`).
//!
//! Owns: the mapping of [`VcpuState`] to and from the kernel's vCPU state page
//! ([`hyper_abi::vcpu::VcpuState`]) and the charged mask of the blocking
//! `vcpu_run` hypercall; recall through `ec_ctrl(vcpu, Recall)`. Must not touch:
//! creating VMs and vCPUs (the VMM owns its capabilities and memory) or exit policy.
//!
//! # Field mapping
//!
//! At every exit the kernel writes the field groups that may have changed (the page's
//! `valid` mask: the groups a guest changes by itself and those charged before; the
//! first exit writes all) and this backend reads just those, so the state stays
//! complete with: GPRs, `ip`, `ip_len` (the CPU's instruction length; on SVM I/O exits
//! the distance to EXITINFO2's next RIP; without next-RIP saving the length of the
//! fixed-length instructions, 0 for others), `flags`, segments, descriptor tables,
//! `cr0`, `cr2`, `cr3`, `cr4`, `dr7`, `efer`, SYSENTER/SYSCALL MSRs,
//! `kernel_gs_base`, `xcr0`, `tsc_offset`, `tsc_aux`, `inj_info`/`inj_error` (an event still
//! pending), `intr_state`, `actv_state`, `ctrl`, `qual` (`[0]` = VMX qualification /
//! SVM EXITINFO1, `[1]` = SVM EXITINFO2 or the VMX guest-physical address).
//!
//! Charged fields go back by page group (a charged `rax` sends all GPRs from the
//! state, which hold the values of the last exit unless changed). `tsc` is written
//! as a TSC offset against the current host TSC. Not supported (charging them is
//! an error): `pdpte`, `tpr`, `tpr_threshold`, `xss`, and `fpu` except
//! for the reset image before the first run (the guest FPU stays in the kernel,
//! switched with XSAVE). `ip_len` and `qual` are information only.
//!
//! # Threads
//!
//! The backend is told at creation how the runtime identifies threads
//! ([`TernVcpu::new`]'s `thread_id`); the creating thread is the handler. The
//! kernel itself refuses `vcpu_run` on any CPU but the vCPU's.

use crate::exit::{Exit, ExitReason, RawExit};
use crate::state::{Controls, EventInfo, Field, FieldSet, Segment, TableRegister, VcpuState};
use crate::vcpu::{Backend, BackendError, Recall};
use crate::{svm, vmx};
use hyper_abi::vcpu::{self as abi, exit_kind, field, vendor};
use hyper_abi::{syscall, EcOp};

/// A vCPU the kernel created, with its state page mapped at `page`.
pub struct TernVcpu {
    sel: u64,
    page: *mut abi::VcpuState,
    thread_id: fn() -> u64,
    handler: u64,
    entered: bool,
}

// SAFETY: the state page is only touched by the handler thread (checked through
// `on_handler_thread` before every run by `Vcpu`); moving the handle to the
// handler thread before its first use is fine.
unsafe impl Send for TernVcpu {}

impl TernVcpu {
    /// Wraps the vCPU at selector `sel` whose state page the kernel mapped at
    /// `page`. `thread_id` tells threads of the runtime apart; the calling thread
    /// becomes the handler.
    ///
    /// # Safety
    /// `page` must be the address the kernel mapped this vCPU's state page at
    /// (the `utcb` argument of its `create_ec`), mapped as long as this value lives.
    pub unsafe fn new(sel: u64, page: u64, thread_id: fn() -> u64) -> Self {
        TernVcpu {
            sel,
            page: page as *mut abi::VcpuState,
            thread_id,
            handler: thread_id(),
            entered: false,
        }
    }

    /// Makes the calling thread the handler (after handing the vCPU to it).
    pub fn adopt(&mut self) {
        self.handler = (self.thread_id)();
    }

    pub fn selector(&self) -> u64 {
        self.sel
    }

    fn page_ref(&self) -> &abi::VcpuState {
        // SAFETY: as for `page`.
        unsafe { &*self.page }
    }

    fn page(&mut self) -> &mut abi::VcpuState {
        // SAFETY: see `new`: the page is mapped for our lifetime and only the
        // handler thread uses it, between runs (the kernel writes it only while
        // this thread is inside `vcpu_run`).
        unsafe { &mut *self.page }
    }
}

/// Recalls a Tern vCPU from any thread.
#[derive(Clone, Copy, Debug)]
pub struct TernRecaller {
    sel: u64,
}

impl Recall for TernRecaller {
    fn recall(&self) {
        // a failure means the vCPU is gone; its handler finds out at its next run
        let _ = syscall::ec_ctrl(self.sel, EcOp::Recall);
    }
}

fn seg_out(s: &Segment) -> abi::Segment {
    abi::Segment {
        selector: s.selector,
        ar: s.attributes,
        limit: s.limit,
        base: s.base,
    }
}

fn seg_in(s: &abi::Segment) -> Segment {
    Segment {
        selector: s.selector,
        attributes: s.ar,
        limit: s.limit,
        base: s.base,
    }
}

fn table_out(t: &TableRegister) -> abi::DescTable {
    abi::DescTable {
        limit: t.limit,
        _pad: 0,
        base: t.base,
    }
}

fn table_in(t: &abi::DescTable) -> TableRegister {
    TableRegister {
        limit: t.limit,
        base: t.base,
    }
}

fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effects.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Whether `fpu` is the reset image (FNINIT, default MXCSR, nothing else).
fn is_reset_fpu(bytes: &[u8]) -> bool {
    bytes.iter().enumerate().all(|(i, &b)| match i {
        0 => b == 0x7f,
        1 => b == 0x03,
        24 => b == 0x80,
        25 => b == 0x1f,
        _ => b == 0,
    })
}

/// The state page groups a charged field travels in, or why it cannot.
fn group(f: Field) -> Result<u64, BackendError> {
    use Field::*;
    Ok(match f {
        Rax | Rcx | Rdx | Rbx | Rsp | Rbp | Rsi | Rdi | R8 | R9 | R10 | R11 | R12 | R13 | R14
        | R15 => field::GPR,
        Ip | Flags => field::RIP,
        IpLen | Qual => 0,
        Es | Cs | Ss | Ds => field::SEG,
        Fs | Gs => field::FS_GS,
        Ldtr | Tr => field::TR_LDTR,
        Gdtr | Idtr => field::DESC,
        Cr0 | Cr2 | Cr3 | Cr4 => field::CR,
        Dr7 => field::DR7,
        SysenterCs | SysenterSp | SysenterIp => field::SYSENTER,
        Star | Lstar | Cstar | Fmask | KernelGsBase => field::SYSCALL,
        Ctrl => field::CONTROLS,
        InjInfo | InjError => field::INJECT,
        IntrState | ActvState => field::INTR_STATE,
        Tsc | TscOffset => field::TSC_OFFSET,
        Efer => field::EFER,
        Xcr0 => field::XCR0,
        Fpu => 0, // checked by the caller
        TscAux => field::TSC_AUX,
        Pdpte | Tpr | TprThreshold | Xss => return Err(BackendError::Unsupported { field: f }),
    })
}

impl TernVcpu {
    /// Writes the charged fields into the state page; returns the charged mask.
    fn write_charged(&mut self, s: &VcpuState, charged: FieldSet) -> Result<u64, BackendError> {
        let mut mask = 0;
        let mut bits = charged.0;
        while bits != 0 {
            let f = Field::ALL[bits.trailing_zeros() as usize];
            bits &= bits - 1;
            if f == Field::Fpu && (self.entered || !is_reset_fpu(s.fpu.get().bytes())) {
                return Err(BackendError::Unsupported { field: f });
            }
            mask |= group(f)?;
        }
        let p = self.page();
        if mask & field::GPR != 0 {
            p.gpr = [
                s.rax.value(),
                s.rcx.value(),
                s.rdx.value(),
                s.rbx.value(),
                s.rsp.value(),
                s.rbp.value(),
                s.rsi.value(),
                s.rdi.value(),
                s.r8.value(),
                s.r9.value(),
                s.r10.value(),
                s.r11.value(),
                s.r12.value(),
                s.r13.value(),
                s.r14.value(),
                s.r15.value(),
            ];
        }
        if mask & field::RIP != 0 {
            p.rip = s.ip.value();
            p.rflags = s.flags.value();
        }
        if mask & field::SEG != 0 {
            p.es = seg_out(s.es.get());
            p.cs = seg_out(s.cs.get());
            p.ss = seg_out(s.ss.get());
            p.ds = seg_out(s.ds.get());
        }
        if mask & field::FS_GS != 0 {
            p.fs = seg_out(s.fs.get());
            p.gs = seg_out(s.gs.get());
        }
        if mask & field::TR_LDTR != 0 {
            p.tr = seg_out(s.tr.get());
            p.ldtr = seg_out(s.ldtr.get());
        }
        if mask & field::DESC != 0 {
            p.gdtr = table_out(s.gdtr.get());
            p.idtr = table_out(s.idtr.get());
        }
        if mask & field::CR != 0 {
            p.cr0 = s.cr0.value();
            p.cr2 = s.cr2.value();
            p.cr3 = s.cr3.value();
            p.cr4 = s.cr4.value();
        }
        if mask & field::DR7 != 0 {
            p.dr7 = s.dr7.value();
        }
        if mask & field::EFER != 0 {
            p.efer = s.efer.value();
        }
        if mask & field::SYSENTER != 0 {
            p.sysenter_cs = s.sysenter_cs.value();
            p.sysenter_esp = s.sysenter_sp.value();
            p.sysenter_eip = s.sysenter_ip.value();
        }
        if mask & field::SYSCALL != 0 {
            p.star = s.star.value();
            p.lstar = s.lstar.value();
            p.cstar = s.cstar.value();
            p.fmask = s.fmask.value();
            p.kernel_gs_base = s.kernel_gs_base.value();
        }
        if mask & field::CONTROLS != 0 {
            let c = s.ctrl.value().0 as u64;
            let mut bits = 0;
            if c & Controls::INTERRUPT_WINDOW as u64 != 0 {
                bits |= abi::control::INTR_WINDOW;
            }
            if c & Controls::NMI_WINDOW as u64 != 0 {
                bits |= abi::control::NMI_WINDOW;
            }
            p.controls = bits;
        }
        if mask & field::INJECT != 0 {
            p.inject = s.inj_info.value().0;
            p.inject_error = s.inj_error.value();
        }
        if mask & field::INTR_STATE != 0 {
            p.interruptibility = s.intr_state.value();
            p.activity = s.actv_state.value();
        }
        if mask & field::TSC_OFFSET != 0 {
            p.tsc_offset = if charged.contains(Field::Tsc) {
                s.tsc.value().wrapping_sub(rdtsc())
            } else {
                s.tsc_offset.value()
            };
        }
        if mask & field::XCR0 != 0 {
            p.xcr0 = s.xcr0.value();
        }
        if mask & field::TSC_AUX != 0 {
            p.tsc_aux = s.tsc_aux.value();
        }
        Ok(mask)
    }

    /// Loads the groups the kernel wrote at the exit (`valid`) from the state page
    /// into `s`; the other fields of `s` are still current.
    fn read_exit(&mut self, s: &mut VcpuState) {
        let p = self.page_ref();
        let valid = p.valid;
        if valid & field::GPR != 0 {
            let g = p.gpr;
            for (reg, v) in [
                &mut s.rax, &mut s.rcx, &mut s.rdx, &mut s.rbx, &mut s.rsp, &mut s.rbp, &mut s.rsi,
                &mut s.rdi, &mut s.r8, &mut s.r9, &mut s.r10, &mut s.r11, &mut s.r12, &mut s.r13,
                &mut s.r14, &mut s.r15,
            ]
            .into_iter()
            .zip(g)
            {
                reg.load(v);
            }
        }
        if valid & field::RIP != 0 {
            s.ip.load(p.rip);
            s.flags.load(p.rflags);
        }
        if valid & field::SEG != 0 {
            s.es.load(seg_in(&p.es));
            s.cs.load(seg_in(&p.cs));
            s.ss.load(seg_in(&p.ss));
            s.ds.load(seg_in(&p.ds));
        }
        if valid & field::FS_GS != 0 {
            s.fs.load(seg_in(&p.fs));
            s.gs.load(seg_in(&p.gs));
        }
        if valid & field::TR_LDTR != 0 {
            s.tr.load(seg_in(&p.tr));
            s.ldtr.load(seg_in(&p.ldtr));
        }
        if valid & field::DESC != 0 {
            s.gdtr.load(table_in(&p.gdtr));
            s.idtr.load(table_in(&p.idtr));
        }
        if valid & field::CR != 0 {
            s.cr0.load(p.cr0);
            s.cr2.load(p.cr2);
            s.cr3.load(p.cr3);
            s.cr4.load(p.cr4);
        }
        if valid & field::DR7 != 0 {
            s.dr7.load(p.dr7);
        }
        if valid & field::EFER != 0 {
            s.efer.load(p.efer);
        }
        if valid & field::SYSENTER != 0 {
            s.sysenter_cs.load(p.sysenter_cs);
            s.sysenter_sp.load(p.sysenter_esp);
            s.sysenter_ip.load(p.sysenter_eip);
        }
        if valid & field::SYSCALL != 0 {
            s.star.load(p.star);
            s.lstar.load(p.lstar);
            s.cstar.load(p.cstar);
            s.fmask.load(p.fmask);
            s.kernel_gs_base.load(p.kernel_gs_base);
        }
        if valid & field::XCR0 != 0 {
            s.xcr0.load(p.xcr0);
        }
        if valid & field::TSC_AUX != 0 {
            s.tsc_aux.load(p.tsc_aux);
        }
        if valid & field::TSC_OFFSET != 0 {
            s.tsc_offset.load(p.tsc_offset);
        }
        s.tsc.load(rdtsc().wrapping_add(s.tsc_offset.value()));
        if valid & field::INJECT != 0 {
            s.inj_info.load(EventInfo(p.inject));
            s.inj_error.load(p.inject_error);
        }
        if valid & field::INTR_STATE != 0 {
            s.intr_state.load(p.interruptibility);
            s.actv_state.load(p.activity);
        }
        if valid & field::CONTROLS != 0 {
            let mut ctrl = 0;
            if p.controls & abi::control::INTR_WINDOW != 0 {
                ctrl |= Controls::INTERRUPT_WINDOW;
            }
            if p.controls & abi::control::NMI_WINDOW != 0 {
                ctrl |= Controls::NMI_WINDOW;
            }
            s.ctrl.load(Controls(ctrl));
        }
        let e = p.exit;
        let svm_io = e.vendor == vendor::SVM && e.raw == svm::code::IOIO;
        let ip_len = if e.instr_len != 0 {
            e.instr_len
        } else if svm_io && e.info2 > p.rip && e.info2 - p.rip <= 15 {
            e.info2 - p.rip
        } else if e.vendor == vendor::SVM && e.kind == exit_kind::HARDWARE {
            svm_fixed_length(e.raw)
        } else {
            0
        };
        s.ip_len.load(ip_len);
        let second = if e.vendor == vendor::SVM {
            e.info2
        } else {
            e.gpa
        };
        s.qual.load([e.qual, second]);
        s.exit = decode(&e, p.gpr[1]);
    }
}

/// Length of the instructions with one encoding that SVM exits on, for CPUs
/// without next-RIP saving (QEMU's TCG): 0 where it varies (the VMM decodes).
fn svm_fixed_length(code: u64) -> u64 {
    use svm::code::*;
    match code {
        HLT => 1,
        CPUID | MSR | RDTSC | RDPMC | INVD | WBINVD | PAUSE => 2,
        VMMCALL | XSETBV | RDTSCP | MONITOR | MWAIT | MWAIT_CONDITIONAL => 3,
        _ => 0,
    }
}

/// The neutral exit for what the kernel reported (`rcx`: the guest's RCX).
pub fn decode(e: &abi::ExitInfo, rcx: u64) -> Exit {
    let synthetic = |reason| Exit {
        reason,
        raw: RawExit::Synthetic,
    };
    match e.kind {
        exit_kind::STARTUP => synthetic(ExitReason::Startup),
        exit_kind::RECALL => synthetic(ExitReason::Recall),
        exit_kind::INVALID_STATE
            if e.raw == 0 || (e.vendor == vendor::VMX && e.raw == exit_kind::VMX_ENTRY_ERROR) =>
        {
            synthetic(ExitReason::InvalidState)
        }
        _ if e.vendor == vendor::SVM => svm::decode(&svm::SvmExit {
            code: e.raw,
            info1: e.qual,
            info2: e.info2,
            rcx,
        }),
        _ => vmx::decode(&vmx::VmxExit {
            reason: e.raw as u32,
            qualification: e.qual,
            guest_physical: e.gpa,
            interruption_info: e.intr_info as u32,
            interruption_error: (e.intr_info >> 32) as u32,
            rcx,
        }),
    }
}

impl Backend for TernVcpu {
    type Recaller = TernRecaller;

    fn run(&mut self, state: &mut VcpuState) -> Result<(), BackendError> {
        let mask = self.write_charged(state, state.charged())?;
        let host = |code: hyper_abi::Status| BackendError::Host {
            op: "vcpu_run",
            code: code as i64,
        };
        syscall::vcpu_run(self.sel, mask).map_err(host)?;
        if self.page().exit.kind == exit_kind::STARTUP {
            // the kernel's own startup exit loaded nothing: run again with the charges
            self.write_charged(state, state.charged())?;
            syscall::vcpu_run(self.sel, mask).map_err(host)?;
        }
        self.entered = true;
        self.read_exit(state);
        Ok(())
    }

    fn recaller(&self) -> TernRecaller {
        TernRecaller { sel: self.sel }
    }

    fn on_handler_thread(&self) -> bool {
        (self.thread_id)() == self.handler
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::{Access, Direction};
    use alloc::boxed::Box;

    fn vcpu(page: &mut abi::VcpuState) -> TernVcpu {
        // SAFETY: the page outlives the vCPU handle in every test.
        unsafe { TernVcpu::new(7, page as *mut _ as u64, || 1) }
    }

    #[test]
    fn svm_io_exit_decodes_with_length_from_next_rip() {
        let mut page = Box::<abi::VcpuState>::default();
        page.valid = field::ALL;
        page.rip = 0x1000;
        page.gpr[0] = 0x41;
        // OUT 0x80, 8-bit: port in 31:16, size bit 4; EXITINFO2 = next RIP
        page.exit = abi::ExitInfo {
            vendor: vendor::SVM,
            raw: svm::code::IOIO,
            qual: 0x80 << 16 | 1 << 4,
            info2: 0x1002,
            ..Default::default()
        };
        let mut v = vcpu(&mut page);
        let mut s = VcpuState::default();
        v.read_exit(&mut s);
        match s.exit.reason {
            ExitReason::Io(io) => {
                assert_eq!((io.port, io.size, io.direction), (0x80, 1, Direction::Out))
            }
            other => panic!("decoded {other:?}"),
        }
        assert_eq!(s.ip_len.value(), 2);
        assert_eq!(s.rax.value(), 0x41);
        assert!(s.charged().is_empty());
    }

    #[test]
    fn only_the_groups_the_kernel_wrote_are_read() {
        let mut page = Box::<abi::VcpuState>::default();
        page.valid = field::GPR | field::RIP;
        page.gpr[0] = 7;
        page.rip = 0x2000;
        page.cr0 = 0xdead; // not written at this exit: stale
        page.exit = abi::ExitInfo {
            vendor: vendor::SVM,
            raw: svm::code::HLT,
            ..Default::default()
        };
        let mut s = VcpuState::default();
        s.cr0.load(0x11);
        vcpu(&mut page).read_exit(&mut s);
        assert_eq!((s.rax.value(), s.ip.value()), (7, 0x2000));
        assert_eq!(s.cr0.value(), 0x11, "the state's own value stays");
        assert_eq!(s.exit.reason, ExitReason::Hlt);
    }

    #[test]
    fn vmx_ept_violation_carries_the_guest_physical_address() {
        let mut page = Box::<abi::VcpuState>::default();
        page.exit = abi::ExitInfo {
            vendor: vendor::VMX,
            raw: vmx::reason::EPT_VIOLATION as u64,
            qual: 1 << 1, // write
            gpa: 0xe000_0000,
            ..Default::default()
        };
        let mut s = VcpuState::default();
        vcpu(&mut page).read_exit(&mut s);
        match s.exit.reason {
            ExitReason::NestedPageFault(f) => {
                assert_eq!((f.gpa, f.access), (0xe000_0000, Access::Write))
            }
            other => panic!("decoded {other:?}"),
        }
        assert_eq!(s.qual.value(), [2, 0xe000_0000]);
    }

    #[test]
    fn synthetic_exits_and_kernel_refusals() {
        let e = |kind, raw| abi::ExitInfo {
            kind,
            vendor: vendor::VMX,
            raw,
            ..Default::default()
        };
        assert_eq!(
            decode(&e(exit_kind::RECALL, 0), 0).reason,
            ExitReason::Recall
        );
        assert_eq!(
            decode(&e(exit_kind::INVALID_STATE, 0), 0).reason,
            ExitReason::InvalidState
        );
        let failed = vmx::reason::ENTRY_FAILURE as u64 | vmx::reason::INVALID_GUEST_STATE as u64;
        assert_eq!(
            decode(&e(exit_kind::INVALID_STATE, failed), 0).reason,
            ExitReason::InvalidState
        );
    }

    #[test]
    fn charged_fields_become_page_groups() {
        let mut page = Box::<abi::VcpuState>::default();
        let mut v = vcpu(&mut page);
        let mut s = VcpuState::default();
        s.rdx.charge(5);
        s.ip.charge(0x2000);
        s.cs.charge(Segment {
            selector: 8,
            attributes: 0xc9b,
            limit: u32::MAX,
            base: 0,
        });
        s.ctrl.charge(Controls(Controls::INTERRUPT_WINDOW));
        let mask = v.write_charged(&s, s.charged()).expect("supported fields");
        assert_eq!(mask, field::GPR | field::RIP | field::SEG | field::CONTROLS);
        let p = v.page();
        assert_eq!((p.gpr[2], p.rip, p.cs.ar), (5, 0x2000, 0xc9b));
        assert_eq!(p.controls, abi::control::INTR_WINDOW);
    }

    #[test]
    fn unsupported_fields_are_refused() {
        let mut page = Box::<abi::VcpuState>::default();
        let mut v = vcpu(&mut page);
        let mut s = VcpuState::default();
        s.pdpte.charge([1, 2, 3, 4]);
        assert_eq!(
            v.write_charged(&s, s.charged()),
            Err(BackendError::Unsupported {
                field: Field::Pdpte
            })
        );
        let mut s = VcpuState::default();
        s.fpu.update(|f| f.bytes_mut()[100] = 1);
        assert!(v.write_charged(&s, s.charged()).is_err());
    }
}
