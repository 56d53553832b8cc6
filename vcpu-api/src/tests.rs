//! Unit tests: charging, both vendors' exit decoding, `with_state`, requests.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, ThreadId};
use std::vec::Vec;

use crate::svm::{self, SvmExit};
use crate::vmx::{self, VmxExit};
use crate::*;

// ---------------------------------------------------------------- charging

#[test]
fn fresh_state_has_nothing_charged() {
    let s = VcpuState::default();
    assert!(s.charged().is_empty());
}

#[test]
fn charging_marks_exactly_the_changed_fields() {
    let mut s = VcpuState::default();
    s.rax.charge(5);
    s.cs.update(|cs| cs.selector = 8);
    s.r15.charge(1);
    s.fpu.update(|f| f.bytes_mut()[0] = 1);
    let fields: Vec<Field> = s.charged().iter().collect();
    assert_eq!(fields, [Field::Rax, Field::R15, Field::Cs, Field::Fpu]);
    assert_eq!(s.rax.value(), 5);
    assert_eq!(s.cs.value().selector, 8);
}

#[test]
fn reading_and_loading_do_not_charge() {
    let mut s = VcpuState::default();
    s.rbx.load(7);
    s.cr0.load_mut();
    let _ = s.rbx.value() + s.cr3.value();
    assert_eq!(s.rbx.value(), 7);
    assert!(s.charged().is_empty());
}

#[test]
fn discharge_keeps_values_and_drops_marks() {
    let mut s = VcpuState::default();
    s.ip.charge(0x1000);
    s.efer.charge(0x500);
    s.discharge();
    assert!(s.charged().is_empty());
    assert_eq!(s.ip.value(), 0x1000);
    assert_eq!(s.efer.value(), 0x500);
    s.efer.charge(0x501);
    assert_eq!(s.charged().iter().collect::<Vec<_>>(), [Field::Efer]);
}

#[test]
fn skip_instruction_ends_an_interrupt_shadow_and_keeps_other_blocking() {
    let mut s = VcpuState::default();
    s.ip.load(0x100);
    s.ip_len.load(1);
    s.intr_state
        .load(interruptibility::STI | interruptibility::NMI);
    s.skip_instruction();
    assert_eq!(s.ip.value(), 0x101);
    assert_eq!(s.intr_state.value(), interruptibility::NMI);
    assert_eq!(
        s.charged().iter().collect::<Vec<_>>(),
        [Field::Ip, Field::IntrState]
    );
    s.discharge();
    s.intr_state.load(interruptibility::MOV_SS);
    s.skip_instruction();
    assert_eq!(s.intr_state.value(), 0);
}

#[test]
fn skip_instruction_and_inject_charge_what_they_change() {
    let mut s = VcpuState::default();
    s.ip.load(0x100);
    s.ip_len.load(2);
    s.skip_instruction();
    s.inject(EventInfo::external_interrupt(0x30), 0);
    assert_eq!(s.ip.value(), 0x102);
    assert_eq!(
        s.charged().iter().collect::<Vec<_>>(),
        [Field::Ip, Field::InjInfo]
    );
    s.discharge();
    s.inject(EventInfo::exception(13, true), 0x18);
    assert_eq!(
        s.charged().iter().collect::<Vec<_>>(),
        [Field::InjInfo, Field::InjError]
    );
    assert_eq!(s.inj_error.value(), 0x18);
}

#[test]
fn gpr_numbers_follow_the_x86_encoding() {
    let mut s = VcpuState::default();
    for i in 0..16u8 {
        assert!(s.set_gpr(i, 100 + i as u64));
    }
    assert!(!s.set_gpr(16, 0));
    assert_eq!(s.rsp.value(), 104);
    assert_eq!(s.r9.value(), 109);
    assert_eq!(s.gpr(7), Some(107));
    assert_eq!(s.gpr(16), None);
    assert_eq!(s.charged().iter().count(), 16);
}

#[test]
fn charge_fields_and_field_set_round_trip() {
    let mut s = VcpuState::default();
    let mut set = FieldSet::EMPTY;
    set.insert(Field::Cr4);
    set.insert(Field::Tr);
    s.charge_fields(set);
    assert_eq!(s.charged(), set);
    assert_eq!(Field::ALL.len(), 58);
    assert_eq!(Field::KernelGsBase.name(), "kernel_gs_base");
    // bits are the declaration order, so the full set fits in 64 bits
    assert_eq!(Field::ALL.iter().last().map(|f| *f as u8), Some(57));
}

#[test]
fn event_info_layout_matches_vmx_and_svm() {
    assert_eq!(EventInfo::external_interrupt(0x20).0, 0x8000_0020);
    assert_eq!(EventInfo::exception(14, true).0, 0x8000_0b0e);
    assert_eq!(EventInfo::nmi().0, 0x8000_0202);
    assert_eq!(EventInfo::exception(6, false).kind(), EventKind::Exception);
    assert!(!EventInfo::NONE.valid());
}

// ---------------------------------------------------------------- VMX

fn vmx(reason: u32, q: u64) -> ExitReason {
    vmx::decode(&VmxExit {
        reason,
        qualification: q,
        guest_physical: 0xfee0_0030,
        interruption_info: 0,
        interruption_error: 0,
        rcx: 0xc000_0080,
    })
    .reason
}

#[test]
fn vmx_simple_reasons() {
    let table = [
        (1, ExitReason::ExternalInterrupt),
        (2, ExitReason::Shutdown),
        (3, ExitReason::Init),
        (7, ExitReason::InterruptWindow),
        (8, ExitReason::NmiWindow),
        (9, ExitReason::TaskSwitch),
        (10, ExitReason::Cpuid),
        (12, ExitReason::Hlt),
        (13, ExitReason::Invd),
        (14, ExitReason::Invlpg),
        (15, ExitReason::Rdpmc),
        (16, ExitReason::Rdtsc),
        (18, ExitReason::Hypercall),
        (29, ExitReason::DrAccess),
        (33, ExitReason::InvalidState),
        (34, ExitReason::InvalidState),
        (36, ExitReason::Mwait),
        (39, ExitReason::Monitor),
        (40, ExitReason::Pause),
        (41, ExitReason::InvalidState),
        (51, ExitReason::Rdtscp),
        (54, ExitReason::Wbinvd),
        (55, ExitReason::Xsetbv),
        (20, ExitReason::Other), // VMLAUNCH in the guest
        (0xffff, ExitReason::Other),
    ];
    for (reason, want) in table {
        assert_eq!(vmx(reason, 0), want, "VMX basic reason {reason}");
    }
}

#[test]
fn vmx_entry_failure_bit_means_invalid_state() {
    assert_eq!(vmx(0x8000_0021, 0), ExitReason::InvalidState);
    assert_eq!(vmx(0x8000_000c, 0), ExitReason::InvalidState);
    let e = vmx::decode(&VmxExit {
        reason: 0x8000_0021,
        ..Default::default()
    });
    assert_eq!(e.raw, RawExit::Vmx(0x8000_0021));
}

#[test]
fn vmx_sipi_vector_from_qualification() {
    assert_eq!(vmx(4, 0x9a), ExitReason::Sipi { vector: 0x9a });
}

#[test]
fn vmx_io_qualifications() {
    let io = |q| match vmx(30, q) {
        ExitReason::Io(io) => io,
        other => panic!("not I/O: {other:?}"),
    };
    // out dx, al to 0x3f8
    let a = io(0x03f8_0000);
    assert_eq!(
        (a.port, a.size, a.direction, a.string, a.rep),
        (0x3f8, 1, Direction::Out, false, false)
    );
    // in eax, 0x71 (immediate operand, bit 6)
    let b = io(0x0071_004b);
    assert_eq!(
        (b.port, b.size, b.direction, b.string, b.rep),
        (0x71, 4, Direction::In, false, false)
    );
    // rep outsw to 0xe9
    let c = io(0x00e9_0031);
    assert_eq!(
        (c.port, c.size, c.direction, c.string, c.rep),
        (0xe9, 2, Direction::Out, true, true)
    );
    // insb without rep from 0xffff
    let d = io(0xffff_0018);
    assert_eq!(
        (d.port, d.size, d.direction, d.string, d.rep),
        (0xffff, 1, Direction::In, true, false)
    );
}

#[test]
fn vmx_cr_access_qualifications() {
    let cr = |q| match vmx(28, q) {
        ExitReason::CrAccess(c) => c,
        other => panic!("not CR: {other:?}"),
    };
    // mov cr3, rbx
    assert_eq!(
        cr(0x0303),
        CrAccess {
            cr: 3,
            op: CrOp::Write { gpr: Some(3) }
        }
    );
    // mov r12, cr8
    assert_eq!(
        cr(0x0c18),
        CrAccess {
            cr: 8,
            op: CrOp::Read { gpr: Some(12) }
        }
    );
    assert_eq!(
        cr(0x20),
        CrAccess {
            cr: 0,
            op: CrOp::Clts
        }
    );
    // lmsw with source 0x0011
    assert_eq!(
        cr(0x0011_0030),
        CrAccess {
            cr: 0,
            op: CrOp::Lmsw { source: Some(0x11) }
        }
    );
}

#[test]
fn vmx_ept_violation_access_kinds() {
    let pf = |q| match vmx(48, q) {
        ExitReason::NestedPageFault(p) => p,
        other => panic!("not NPF: {other:?}"),
    };
    assert_eq!(
        pf(0x1),
        PageFault {
            gpa: 0xfee0_0030,
            access: Access::Read,
            present: false
        }
    );
    assert_eq!(
        pf(0x2),
        PageFault {
            gpa: 0xfee0_0030,
            access: Access::Write,
            present: false
        }
    );
    assert_eq!(
        pf(0x4 | 0x8),
        PageFault {
            gpa: 0xfee0_0030,
            access: Access::Execute,
            present: true
        }
    );
    // write to a read-only mapping
    assert!(pf(0x2 | 0x8).present);
    assert!(matches!(vmx(49, 0), ExitReason::NestedPageFault(_)));
}

#[test]
fn vmx_msr_index_and_direction() {
    assert_eq!(
        vmx(31, 0),
        ExitReason::Msr(MsrAccess {
            index: 0xc000_0080,
            write: false
        })
    );
    assert_eq!(
        vmx(32, 0),
        ExitReason::Msr(MsrAccess {
            index: 0xc000_0080,
            write: true
        })
    );
}

#[test]
fn vmx_exceptions_and_nmi() {
    let exc = |info, err| {
        vmx::decode(&VmxExit {
            reason: 0,
            interruption_info: info,
            interruption_error: err,
            ..Default::default()
        })
        .reason
    };
    assert_eq!(
        exc(0x8000_0b0e, 0x2),
        ExitReason::Exception(ExceptionExit {
            vector: 14,
            error_code: Some(2)
        })
    );
    assert_eq!(
        exc(0x8000_0306, 0x55),
        ExitReason::Exception(ExceptionExit {
            vector: 6,
            error_code: None
        })
    );
    assert_eq!(exc(0x8000_0202, 0), ExitReason::Nmi);
}

// ---------------------------------------------------------------- SVM

fn svm(code: u64, info1: u64, info2: u64) -> ExitReason {
    svm::decode(&SvmExit {
        code,
        info1,
        info2,
        rcx: 0x1b,
    })
    .reason
}

#[test]
fn svm_simple_codes() {
    let table = [
        (0x60, ExitReason::ExternalInterrupt),
        (0x61, ExitReason::Nmi),
        (0x63, ExitReason::Init),
        (0x64, ExitReason::InterruptWindow),
        (0x6e, ExitReason::Rdtsc),
        (0x6f, ExitReason::Rdpmc),
        (0x72, ExitReason::Cpuid),
        (0x76, ExitReason::Invd),
        (0x77, ExitReason::Pause),
        (0x78, ExitReason::Hlt),
        (0x79, ExitReason::Invlpg),
        (0x7d, ExitReason::TaskSwitch),
        (0x7f, ExitReason::Shutdown),
        (0x81, ExitReason::Hypercall),
        (0x87, ExitReason::Rdtscp),
        (0x89, ExitReason::Wbinvd),
        (0x8a, ExitReason::Monitor),
        (0x8b, ExitReason::Mwait),
        (0x8c, ExitReason::Mwait),
        (0x8d, ExitReason::Xsetbv),
        (0x21, ExitReason::DrAccess),
        (0x37, ExitReason::DrAccess),
        (u64::MAX, ExitReason::InvalidState),
        (0x80, ExitReason::Other), // VMRUN in the guest
        (0x401, ExitReason::Other),
    ];
    for (code, want) in table {
        assert_eq!(svm(code, 0, 0), want, "SVM exit code {code:#x}");
    }
    assert_eq!(
        svm::decode(&SvmExit {
            code: 0x78,
            ..Default::default()
        })
        .raw,
        RawExit::Svm(0x78)
    );
}

#[test]
fn svm_ioio_exitinfo1() {
    let io = |i1| match svm(0x7b, i1, 0) {
        ExitReason::Io(io) => io,
        other => panic!("not I/O: {other:?}"),
    };
    // out dx, al to 0x3f8: SZ8
    let a = io(0x03f8_0010);
    assert_eq!(
        (a.port, a.size, a.direction, a.string, a.rep),
        (0x3f8, 1, Direction::Out, false, false)
    );
    // in eax from 0xcfc: SZ32 | IN
    let b = io(0x0cfc_0041);
    assert_eq!(
        (b.port, b.size, b.direction, b.string, b.rep),
        (0xcfc, 4, Direction::In, false, false)
    );
    // rep insw from 0x1f0: SZ16 | REP | STR | IN, A32
    let c = io(0x01f0_012d);
    assert_eq!(
        (c.port, c.size, c.direction, c.string, c.rep),
        (0x1f0, 2, Direction::In, true, true)
    );
    // outsb without rep to 0xf4
    let d = io(0x00f4_0014);
    assert_eq!(
        (d.port, d.size, d.direction, d.string, d.rep),
        (0xf4, 1, Direction::Out, true, false)
    );
}

#[test]
fn svm_npf_exitinfo() {
    let pf = |i1| match svm(0x400, i1, 0xfed0_0000) {
        ExitReason::NestedPageFault(p) => p,
        other => panic!("not NPF: {other:?}"),
    };
    assert_eq!(
        pf(0x1_0000_0004),
        PageFault {
            gpa: 0xfed0_0000,
            access: Access::Read,
            present: false
        }
    );
    assert_eq!(
        pf(0x1_0000_0006),
        PageFault {
            gpa: 0xfed0_0000,
            access: Access::Write,
            present: false
        }
    );
    assert_eq!(
        pf(0x1_0000_0015),
        PageFault {
            gpa: 0xfed0_0000,
            access: Access::Execute,
            present: true
        }
    );
    assert_eq!(pf(0x2_0000_0007).access, Access::Write);
}

#[test]
fn svm_msr_direction_in_exitinfo1() {
    assert_eq!(
        svm(0x7c, 0, 0),
        ExitReason::Msr(MsrAccess {
            index: 0x1b,
            write: false
        })
    );
    assert_eq!(
        svm(0x7c, 1, 0),
        ExitReason::Msr(MsrAccess {
            index: 0x1b,
            write: true
        })
    );
}

#[test]
fn svm_cr_accesses_with_and_without_decode_assists() {
    let assisted = 1u64 << 63;
    assert_eq!(
        svm(0x03, assisted | 5, 0),
        ExitReason::CrAccess(CrAccess {
            cr: 3,
            op: CrOp::Read { gpr: Some(5) }
        })
    );
    assert_eq!(
        svm(0x14, assisted | 9, 0),
        ExitReason::CrAccess(CrAccess {
            cr: 4,
            op: CrOp::Write { gpr: Some(9) }
        })
    );
    assert_eq!(
        svm(0x10, 0, 0),
        ExitReason::CrAccess(CrAccess {
            cr: 0,
            op: CrOp::Write { gpr: None }
        })
    );
    assert_eq!(
        svm(0x65, assisted, 0),
        ExitReason::CrAccess(CrAccess {
            cr: 0,
            op: CrOp::Write { gpr: Some(0) }
        })
    );
    assert_eq!(
        svm(0x18, 0, 0),
        ExitReason::CrAccess(CrAccess {
            cr: 8,
            op: CrOp::Write { gpr: None }
        })
    );
}

#[test]
fn svm_exceptions_carry_error_codes_only_where_the_cpu_pushes_one() {
    assert_eq!(
        svm(0x4e, 0x7, 0x1000),
        ExitReason::Exception(ExceptionExit {
            vector: 14,
            error_code: Some(7)
        })
    );
    assert_eq!(
        svm(0x4d, 0x10, 0),
        ExitReason::Exception(ExceptionExit {
            vector: 13,
            error_code: Some(0x10)
        })
    );
    assert_eq!(
        svm(0x46, 0x99, 0),
        ExitReason::Exception(ExceptionExit {
            vector: 6,
            error_code: None
        })
    );
    assert_eq!(
        svm(0x41, 0, 0),
        ExitReason::Exception(ExceptionExit {
            vector: 1,
            error_code: None
        })
    );
    assert_eq!(svm(0x42, 0, 0), ExitReason::Nmi);
    assert_eq!(
        svm(0x5f, 0, 0),
        ExitReason::Exception(ExceptionExit {
            vector: 31,
            error_code: None
        })
    );
}

// ---------------------------------------------------------------- with_state

/// A backend that replays scripted exits and records what it was given.
struct Scripted {
    handler: ThreadId,
    exits: Vec<ExitReason>,
    written: Vec<FieldSet>,
    recalls: Arc<AtomicUsize>,
}

#[derive(Clone)]
struct CountRecall(Arc<AtomicUsize>);

impl Recall for CountRecall {
    fn recall(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl Backend for Scripted {
    type Recaller = CountRecall;

    fn run(&mut self, state: &mut VcpuState) -> Result<(), BackendError> {
        self.written.push(state.charged());
        let reason = if self.recalls.load(Ordering::SeqCst) > 0 {
            self.recalls.store(0, Ordering::SeqCst);
            ExitReason::Recall
        } else if self.exits.is_empty() {
            return Err(BackendError::Dead);
        } else {
            self.exits.remove(0)
        };
        state.exit = Exit {
            reason,
            raw: RawExit::Synthetic,
        };
        state.rax.load(state.rax.value() + 1);
        Ok(())
    }

    fn recaller(&self) -> CountRecall {
        CountRecall(self.recalls.clone())
    }

    fn on_handler_thread(&self) -> bool {
        thread::current().id() == self.handler
    }
}

fn scripted(exits: &[ExitReason]) -> Vcpu<Scripted> {
    Vcpu::new(Scripted {
        handler: thread::current().id(),
        exits: exits.to_vec(),
        written: Vec::new(),
        recalls: Arc::new(AtomicUsize::new(0)),
    })
}

#[test]
fn first_with_state_sees_startup_without_running() {
    let mut v = scripted(&[ExitReason::Hlt]);
    let mut seen = None;
    v.with_state(|s| {
        seen = Some(s.exit.reason);
        false
    })
    .unwrap();
    assert_eq!(seen, Some(ExitReason::Startup));
    assert!(
        v.backend().written.is_empty(),
        "false must not run the vCPU"
    );
}

#[test]
fn true_writes_only_charged_fields_then_discharges() {
    let mut v = scripted(&[ExitReason::Cpuid, ExitReason::Hlt]);
    v.with_state(|s| {
        s.ip.charge(0x10_0000);
        s.cr0.charge(1);
        true
    })
    .unwrap();
    let mut after = None;
    v.with_state(|s| {
        after = Some((s.exit.reason, s.charged(), s.rax.value()));
        s.rbx.charge(3);
        true
    })
    .unwrap();
    let written = &v.backend().written;
    assert_eq!(
        written[0].iter().collect::<Vec<_>>(),
        [Field::Ip, Field::Cr0]
    );
    assert_eq!(written[1].iter().collect::<Vec<_>>(), [Field::Rbx]);
    // the exit's state arrived and nothing was charged by the backend
    assert_eq!(after, Some((ExitReason::Cpuid, FieldSet::EMPTY, 1)));
}

#[test]
fn false_keeps_charges_for_the_next_resume() {
    let mut v = scripted(&[ExitReason::Hlt]);
    v.with_state(|s| {
        s.rdx.charge(9);
        false
    })
    .unwrap();
    v.with_state(|s| {
        assert_eq!(
            s.exit.reason,
            ExitReason::Startup,
            "still stopped at the same exit"
        );
        s.rsi.charge(1);
        true
    })
    .unwrap();
    assert_eq!(
        v.backend().written[0].iter().collect::<Vec<_>>(),
        [Field::Rdx, Field::Rsi]
    );
}

#[test]
fn with_state_from_another_thread_is_an_error_and_does_not_run() {
    let v = scripted(&[ExitReason::Hlt]);
    let mut v = thread::spawn(move || {
        let mut v = v;
        let mut called = false;
        let r = v.with_state(|_| {
            called = true;
            true
        });
        assert_eq!(r, Err(VcpuError::NotHandlerThread));
        assert!(!called);
        v
    })
    .join()
    .unwrap();
    assert!(v.backend().written.is_empty());
    assert!(
        v.with_state(|_| true).is_ok(),
        "the handler thread still works"
    );
}

#[test]
fn backend_error_keeps_the_charges() {
    let mut v = scripted(&[]);
    let r = v.with_state(|s| {
        s.r8.charge(1);
        true
    });
    assert_eq!(r, Err(VcpuError::Backend(BackendError::Dead)));
    v.with_state(|s| {
        assert!(s.r8.charged());
        false
    })
    .unwrap();
}

#[test]
fn requester_recalls_and_the_handler_takes_the_request() {
    let mut v = scripted(&[ExitReason::Hlt, ExitReason::Hlt]);
    assert!(!v.take_request());
    let req = v.requester();
    thread::spawn(move || req.clone().request()).join().unwrap();
    v.with_state(|_| true).unwrap();
    let mut reason = None;
    v.with_state(|s| {
        reason = Some(s.exit.reason);
        false
    })
    .unwrap();
    assert_eq!(reason, Some(ExitReason::Recall));
    assert!(v.take_request());
    assert!(!v.take_request(), "a request is taken once");
    v.with_state(|_| true).unwrap();
    v.with_state(|s| {
        assert_eq!(s.exit.reason, ExitReason::Hlt);
        false
    })
    .unwrap();
}

#[test]
fn display_messages_say_what_to_do() {
    let e = VcpuError::NotHandlerThread.to_string();
    assert!(e.contains("Requester"), "{e}");
    let b = VcpuError::from(BackendError::Unsupported {
        field: Field::Pdpte,
    })
    .to_string();
    assert!(b.contains("pdpte"), "{b}");
    let h = BackendError::Host {
        op: "KVM_RUN",
        code: 4,
    }
    .to_string();
    assert!(h.contains("KVM_RUN") && h.contains('4'), "{h}");
}

#[test]
fn every_raw_code_decodes_and_keeps_its_raw_value() {
    let infos = [0, 1, 0x3f8_0010, u64::MAX, 1 << 63 | 7];
    for code in (0..0x500u64).chain([u64::MAX, 0x8000_0000_0000_0000]) {
        for &info in &infos {
            let e = svm::decode(&SvmExit {
                code,
                info1: info,
                info2: info,
                rcx: info,
            });
            assert_eq!(e.raw, RawExit::Svm(code));
        }
    }
    for reason in (0..80u32).chain([0x8000_0000, 0x8000_0021, u32::MAX]) {
        for &q in &infos {
            let e = vmx::decode(&VmxExit {
                reason,
                qualification: q,
                guest_physical: q,
                interruption_info: q as u32,
                interruption_error: 0,
                rcx: q,
            });
            assert_eq!(e.raw, RawExit::Vmx(reason));
            if let ExitReason::Io(io) = e.reason {
                assert!(matches!(io.size, 1 | 2 | 4), "size {} from {q:#x}", io.size);
            }
        }
    }
}
