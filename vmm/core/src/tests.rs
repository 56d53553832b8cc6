//! Host tests of the exit loop against a scripted backend, and of the loader.

extern crate std;

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use vcpu_api::{
    Access, Backend, BackendError, CompletedWrite, Controls, CrAccess, CrOp, Direction, EventInfo,
    Exit, ExitReason, IoAccess, MsrAccess, PageFault, RawExit, Recall, Vcpu, VcpuError, VcpuState,
    WriteTarget,
};

use crate::*;

// ---------------------------------------------------------------- fakes

struct Ram(Mutex<Vec<u8>>);

impl Ram {
    fn new(size: usize) -> Self {
        Ram(Mutex::new(vec![0; size]))
    }
}

impl GuestMemory for Ram {
    fn size(&self) -> u64 {
        self.0.lock().unwrap().len() as u64
    }
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), OutOfRange> {
        memory::check_range(self.size(), gpa, buf.len())?;
        let ram = self.0.lock().unwrap();
        buf.copy_from_slice(&ram[gpa as usize..gpa as usize + buf.len()]);
        Ok(())
    }
    fn write(&self, gpa: u64, data: &[u8]) -> Result<(), OutOfRange> {
        memory::check_range(self.size(), gpa, data.len())?;
        let mut ram = self.0.lock().unwrap();
        ram[gpa as usize..gpa as usize + data.len()].copy_from_slice(data);
        Ok(())
    }
}

#[derive(Default)]
struct TestPlatform {
    lines: Mutex<Vec<String>>,
    jobs: AtomicUsize,
}

impl Platform for TestPlatform {
    fn console_line(&self, line: &str) {
        self.lines.lock().unwrap().push(line.to_string());
    }
    fn host_cpuid(&self, leaf: u32, _subleaf: u32) -> CpuidResult {
        match leaf {
            0 => CpuidResult {
                eax: 0x16,
                ebx: 0x756e_6547,
                ecx: 0x6c65_746e,
                edx: 0x4965_6e69,
            },
            1 => CpuidResult {
                eax: 0x906a0,
                ebx: 0x0510_0800,
                ecx: 0xfffa_3223,
                edx: 0x178b_fbff,
            },
            0xd => CpuidResult {
                eax: 0x7,
                ebx: 0,
                ecx: 0,
                edx: 0,
            },
            0x8000_0000 => CpuidResult {
                eax: 0x8000_0021,
                ..Default::default()
            },
            0x8000_0001 => CpuidResult {
                ecx: 0x0000_0125,
                edx: 0x2c10_0800,
                ..Default::default()
            },
            _ => CpuidResult {
                eax: leaf,
                ..Default::default()
            },
        }
    }
    /// Runs the job at once (the delay does not matter to the loop).
    fn after(&self, _delay_ms: u32, job: Box<dyn FnOnce() + Send>) {
        self.jobs.fetch_add(1, Ordering::SeqCst);
        job();
    }
    fn idle(&self) {
        std::thread::yield_now();
    }
}

type Step = Box<dyn FnMut(&mut VcpuState) + Send>;

/// A backend that plays a script of exits and records the state it was
/// resumed with.
struct Scripted {
    script: VecDeque<Step>,
    resumed: Arc<Mutex<Vec<VcpuState>>>,
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
        self.resumed.lock().unwrap().push(state.clone());
        // what the scripted guest did sticks, as on a real vCPU
        if self.recalls.swap(0, Ordering::SeqCst) > 0 {
            set_exit(state, ExitReason::Recall);
            return Ok(());
        }
        let mut step = self.script.pop_front().ok_or(BackendError::Dead)?;
        state.inj_info.load(EventInfo::NONE);
        step(state);
        Ok(())
    }
    fn recaller(&self) -> CountRecall {
        CountRecall(self.recalls.clone())
    }
    fn on_handler_thread(&self) -> bool {
        true
    }
}

fn set_exit(s: &mut VcpuState, reason: ExitReason) {
    s.exit = Exit {
        reason,
        raw: RawExit::Synthetic,
    };
}

fn step(f: impl FnMut(&mut VcpuState) + Send + 'static) -> Step {
    Box::new(f)
}

fn out(port: u16, size: u8, value: u64) -> Step {
    step(move |s| {
        s.rax.load(value);
        s.ip_len.load(if port < 0x100 { 2 } else { 1 });
        set_exit(
            s,
            ExitReason::Io(IoAccess {
                port,
                size,
                direction: Direction::Out,
                string: false,
                rep: false,
            }),
        );
    })
}

fn inp(port: u16, size: u8) -> Step {
    step(move |s| {
        s.ip_len.load(1);
        set_exit(
            s,
            ExitReason::Io(IoAccess {
                port,
                size,
                direction: Direction::In,
                string: false,
                rep: false,
            }),
        );
    })
}

fn exit(reason: ExitReason) -> Step {
    step(move |s| {
        s.ip_len.load(2);
        set_exit(s, reason);
    })
}

/// Sets registers as the guest would, with a harmless exit (a host interrupt).
fn setup(f: impl Fn(&mut VcpuState) + Send + 'static) -> Step {
    step(move |s| {
        f(s);
        s.ip_len.load(2);
        set_exit(s, ExitReason::ExternalInterrupt);
    })
}

#[test]
fn pause_exit_goes_on_after_the_pause() {
    let r = run(vec![exit(ExitReason::Pause), pass()]);
    assert_eq!(r.resumed[1].ip.value(), 0x10_0002);
    assert_eq!(r.outcome, Some(Outcome::GuestExit { value: 0x10 }));
}

fn pass() -> Step {
    out(0xf4, 1, 0x10)
}

struct Run {
    outcome: Option<Outcome>,
    lines: Vec<String>,
    resumed: Vec<VcpuState>,
    counters: ExitCounters,
    recalls: usize,
}

fn run_with(config: VmConfig, ram: &Ram, script: Vec<Step>) -> Run {
    let platform = TestPlatform::default();
    let vm = Vm::new(ram, &platform, config);
    let resumed = Arc::new(Mutex::new(Vec::new()));
    let recalls = Arc::new(AtomicUsize::new(0));
    let mut vcpu = Vcpu::new(Scripted {
        script: script.into(),
        resumed: resumed.clone(),
        recalls: recalls.clone(),
    });
    let boot = BootImage {
        entry: 0x10_0000,
        start: 0x10_0000,
        end: 0x10_1000,
    };
    let counters = vm.run_vcpu(0, &mut vcpu, boot);
    let resumed = resumed.lock().unwrap().clone();
    let lines = platform.lines.lock().unwrap().clone();
    Run {
        outcome: vm.outcome(),
        lines,
        resumed,
        counters,
        recalls: recalls.load(Ordering::SeqCst),
    }
}

fn run(script: Vec<Step>) -> Run {
    run_with(VmConfig::default(), &Ram::new(0x40_0000), script)
}

// ---------------------------------------------------------------- exit loop

#[test]
fn startup_charges_the_multiboot_entry_state() {
    let r = run(vec![pass()]);
    let s = &r.resumed[0];
    assert_eq!(s.ip.value(), 0x10_0000);
    assert_eq!(s.rax.value(), BOOT_MAGIC);
    assert_eq!(s.cr0.value(), 0x11);
    assert_eq!(s.flags.value(), 2);
    assert_eq!(s.cs.value().limit, 0xffff_ffff);
    assert_eq!(s.cs.value().attributes, 0xc9b);
    assert_eq!(s.ss.value().attributes, 0xc93);
    for f in [
        vcpu_api::Field::Ip,
        vcpu_api::Field::Cs,
        vcpu_api::Field::Cr0,
        vcpu_api::Field::Efer,
        vcpu_api::Field::Tr,
    ] {
        assert!(s.charged().contains(f), "{f:?} not charged at startup");
    }
    assert!(r.outcome.unwrap().passed());
}

#[test]
fn secondary_vcpus_get_their_magic_and_number() {
    let mut s = VcpuState::default();
    initial_state(&mut s, 0x10_0040, 2);
    assert_eq!(
        (s.rax.value(), s.rsi.value(), s.ip.value()),
        (SECONDARY_MAGIC, 2, 0x10_0040)
    );
}

#[test]
fn serial_bytes_become_lines_and_port_f4_ends_the_vm() {
    let mut script: Vec<Step> = b"hi\nthere\n"
        .iter()
        .map(|&b| out(0x3f8, 1, b as u64))
        .collect();
    script.push(pass());
    script.push(out(0x3f8, 1, b'X' as u64)); // never reached
    let r = run(script);
    assert_eq!(r.lines, ["hi", "there"]);
    assert_eq!(r.outcome, Some(Outcome::GuestExit { value: 0x10 }));
    assert_eq!(r.counters.get("io"), 10);
    assert_eq!(r.counters.get("startup"), 1);
    // each OUT was skipped: ip advanced by its length
    assert_eq!(r.resumed[1].ip.value(), 0x10_0001);
    assert_eq!(r.resumed[2].ip.value(), 0x10_0002);
}

#[test]
fn failing_exit_value_is_not_a_pass_and_flushes_partial_output() {
    let r = run(vec![out(0x3f8, 1, b'x' as u64), out(0xf4, 1, 0x11)]);
    assert_eq!(r.outcome, Some(Outcome::GuestExit { value: 0x11 }));
    assert!(!r.outcome.unwrap().passed());
    assert_eq!(r.lines, ["x"]);
}

#[test]
fn in_merges_the_device_value_into_rax() {
    let r = run(vec![
        setup(|s| s.rax.load(0xdead_beef_0000_0000)),
        inp(0xe00, 4),
        setup(|s| s.rax.load(0xffff_ffff_ffff_ffff)),
        inp(0x3ff, 1),
        pass(),
    ]);
    // step 0 is the startup's first run; the IN exits follow
    assert_eq!(
        r.resumed[2].rax.value(),
        0x5645_4454,
        "32-bit IN zero-extends"
    );
    assert!(r.resumed[2].rax.charged());
    assert_eq!(
        r.resumed[4].rax.value() & !0xff,
        0xffff_ffff_ffff_ff00,
        "8-bit IN keeps the rest"
    );
}

#[test]
fn test_device_scratch_counter_and_sum() {
    let r = run(vec![
        out(0xe0c, 2, 0x1_2345),
        inp(0xe0c, 4),
        inp(0xe10, 4),
        inp(0xe10, 4),
        out(0xe14, 4, 5),
        out(0xe14, 4, 7),
        inp(0xe14, 4),
        pass(),
    ]);
    let rax = |i: usize| r.resumed[i].rax.value();
    assert_eq!(rax(2), 0x2345, "scratch keeps the written width only");
    assert_eq!((rax(3), rax(4)), (0, 1));
    assert_eq!(rax(7), 12);
}

#[test]
fn unknown_msrs_get_gp_and_known_ones_are_answered() {
    let r = run(vec![
        step(|s| {
            s.rcx.load(0x4000_0f00);
            set_exit(
                s,
                ExitReason::Msr(MsrAccess {
                    index: 0x4000_0f00,
                    write: false,
                }),
            );
        }),
        step(|s| {
            s.rax.load(0x1234);
            s.rdx.load(0);
            s.ip_len.load(2);
            set_exit(
                s,
                ExitReason::Msr(MsrAccess {
                    index: 0x175,
                    write: true,
                }),
            );
        }),
        step(|s| {
            s.rax.load(0);
            set_exit(
                s,
                ExitReason::Msr(MsrAccess {
                    index: 0x175,
                    write: false,
                }),
            );
        }),
        pass(),
    ]);
    let gp = &r.resumed[1];
    assert_eq!(gp.inj_info.value(), EventInfo::exception(13, true));
    assert_eq!(gp.inj_error.value(), 0);
    assert!(!gp.ip.charged(), "a faulting RDMSR is not skipped");
    assert_eq!(r.resumed[2].sysenter_sp.value(), 0x1234);
    assert!(r.resumed[2].sysenter_sp.charged());
    assert_eq!(r.resumed[3].rax.value(), 0x1234);
    assert!(!r.resumed[3].inj_info.charged());
}

#[test]
fn efer_writes_keep_lma_and_reserved_bits_fault() {
    let mut s = VcpuState::default();
    let mut file = msr::MsrFile::default();
    s.efer.load(1 << 10 | 1 << 8);
    assert!(msr::write(
        msr::IA32_EFER,
        1 << 8 | 1 << 11,
        &mut s,
        &mut file
    ));
    assert_eq!(s.efer.value(), 1 << 8 | 1 << 10 | 1 << 11);
    assert!(
        !msr::write(msr::IA32_EFER, 1 << 12, &mut s, &mut file),
        "SVME is not the guest's"
    );
    assert!(
        !msr::write(msr::IA32_LSTAR, 0x8000_0000_0000_0000, &mut s, &mut file),
        "non-canonical"
    );
    assert_eq!(
        msr::read(msr::IA32_APIC_BASE, 0, &s, &file),
        Some(0xfee0_0900)
    );
    assert_eq!(
        msr::read(msr::IA32_APIC_BASE, 1, &s, &file),
        Some(0xfee0_0800)
    );
}

#[test]
fn cpuid_hides_virtualization_and_names_the_vcpu() {
    let platform = TestPlatform::default();
    let host = |l, s| platform.host_cpuid(l, s);
    let leaf1 = cpuid::answer(1, 0, 3, 0, host);
    assert_eq!(leaf1.ecx & (1 << 5), 0, "VMX hidden");
    assert_ne!(leaf1.ecx & (1 << 31), 0, "hypervisor bit");
    assert_eq!(leaf1.ecx & (1 << 27), 0, "OSXSAVE follows CR4");
    assert_eq!(leaf1.ebx >> 24, 3);
    assert_ne!(cpuid::answer(1, 0, 0, 1 << 18, host).ecx & (1 << 27), 0);
    assert_eq!(cpuid::answer(0, 0, 0, 0, host).eax, 0xd);
    assert_eq!(
        cpuid::answer(0xe, 0, 0, 0, host),
        CpuidResult::default(),
        "above the cap"
    );
    assert_eq!(
        cpuid::answer(0x8000_0001, 0, 0, 0, host).ecx & 4,
        0,
        "SVM hidden"
    );
    assert_eq!(cpuid::answer(0x8000_0000, 0, 0, 0, host).eax, 0x8000_0008);
    assert_eq!(
        cpuid::answer(0x4000_0000, 0, 0, 0, host),
        CpuidResult::default()
    );
}

#[test]
fn xsave_area_sizes_follow_the_guest_xcr0() {
    // AVX (256 at 576), opmask (64 at 1088, 64-byte aligned when compacted).
    let host = |leaf: u32, sub: u32| match (leaf, sub) {
        (0xd, 2) => CpuidResult {
            eax: 256,
            ebx: 576,
            ecx: 0,
            edx: 0,
        },
        (0xd, 5) => CpuidResult {
            eax: 64,
            ebx: 1088,
            ecx: 2,
            edx: 0,
        },
        _ => CpuidResult::default(),
    };
    assert_eq!(cpuid::xsave_area_size(0, 0x3, host), Some(576));
    assert_eq!(cpuid::xsave_area_size(0, 0x7, host), Some(832));
    assert_eq!(cpuid::xsave_area_size(0, 0x27, host), Some(1152));
    assert_eq!(cpuid::xsave_area_size(1, 0x27, host), Some(896));
    assert_eq!(cpuid::xsave_area_size(1, 0x23, host), Some(640));
    assert_eq!(cpuid::xsave_area_size(2, 0x7, host), None);
    assert_eq!(cpuid::start_xcr0(host), 1, "no XSAVE in leaf 1");
    let avx_host = |leaf: u32, sub: u32| match (leaf, sub) {
        (0, _) => CpuidResult {
            eax: 0xd,
            ..CpuidResult::default()
        },
        (1, _) => CpuidResult {
            ecx: 1 << 26,
            ..CpuidResult::default()
        },
        (0xd, 0) => CpuidResult {
            eax: 0x207,
            ..CpuidResult::default()
        }, // + PKRU
        _ => CpuidResult::default(),
    };
    assert_eq!(cpuid::start_xcr0(avx_host), 0x7, "user components only");
}

#[test]
fn cpuid_exit_is_answered_and_skipped() {
    let r = run(vec![
        step(|s| {
            s.rax.load(0);
            s.ip_len.load(2);
            set_exit(s, ExitReason::Cpuid);
        }),
        pass(),
    ]);
    let s = &r.resumed[1];
    assert_eq!((s.rax.value(), s.rbx.value()), (0xd, 0x756e_6547));
    assert_eq!(s.ip.value(), 0x10_0002);
}

fn command(cmd: u32, arg0: u32, arg1: u32) -> Vec<Step> {
    vec![
        out(0xe20, 4, arg0 as u64),
        out(0xe24, 4, arg1 as u64),
        out(0xe1c, 4, cmd as u64),
    ]
}

#[test]
fn irq_on_hlt_wakes_the_hlt_with_the_vector() {
    let mut script = command(2, 0x40, 0);
    script.push(step(|s| {
        s.flags.load(0x202);
        s.intr_state.load(1); // STI; HLT
        s.ip_len.load(1);
        set_exit(s, ExitReason::Hlt);
    }));
    script.push(pass());
    let r = run(script);
    let s = &r.resumed[4];
    assert_eq!(s.inj_info.value(), EventInfo::external_interrupt(0x40));
    assert_eq!(s.intr_state.value(), 0, "the HLT ended the STI shadow");
    assert!(s.ip.charged());
    assert_eq!(r.outcome, Some(Outcome::GuestExit { value: 0x10 }));
}

#[test]
fn irq_now_with_interrupts_off_waits_for_the_window() {
    let mut script = command(1, 0x41, 0);
    script.push(exit(ExitReason::Cpuid)); // still IF = 0: nothing injected
    script.push(step(|s| {
        s.flags.load(0x202);
        set_exit(s, ExitReason::InterruptWindow);
    }));
    script.push(pass());
    let r = run(script);
    let after_cmd = &r.resumed[3];
    assert_eq!(after_cmd.ctrl.value(), Controls(Controls::INTERRUPT_WINDOW));
    assert!(!after_cmd.inj_info.charged());
    assert!(
        !r.resumed[4].inj_info.charged(),
        "never injected while IF = 0"
    );
    let window = &r.resumed[5];
    assert_eq!(window.inj_info.value(), EventInfo::external_interrupt(0x41));
    assert_eq!(window.ctrl.value(), Controls(0));
    assert_eq!(r.counters.get("interrupt-window"), 1);
}

#[test]
fn irq_now_with_interrupts_on_is_injected_at_once() {
    let mut script = vec![setup(|s| s.flags.load(0x202))];
    script.extend(command(1, 0x50, 0));
    script.push(pass());
    let r = run(script);
    assert_eq!(
        r.resumed[4].inj_info.value(),
        EventInfo::external_interrupt(0x50)
    );
}

#[test]
fn an_exit_that_completes_an_instruction_ends_the_sti_shadow() {
    // STI; OUT (the command): the OUT is the instruction under the shadow,
    // so once it is completed the interrupt can come at once, as on hardware.
    let mut script = vec![setup(|s| {
        s.flags.load(0x202);
        s.intr_state.load(1);
    })];
    script.extend(command(1, 0x50, 0));
    script.push(pass());
    let r = run(script);
    let after_cmd = &r.resumed[4];
    assert_eq!(after_cmd.intr_state.value(), 0);
    assert_eq!(
        after_cmd.inj_info.value(),
        EventInfo::external_interrupt(0x50)
    );
}

#[test]
fn interrupt_shadow_defers_injection() {
    // The interrupt is pending (IF was 0); then the guest runs STI and a
    // host interrupt stops it inside the shadow, before the next
    // instruction: no injection there, only an interrupt window.
    let mut script = command(1, 0x50, 0);
    script.push(setup(|s| {
        s.flags.load(0x202);
        s.intr_state.load(1);
    }));
    script.push(step(|s| {
        s.intr_state.load(0);
        set_exit(s, ExitReason::InterruptWindow);
    }));
    script.push(pass());
    let r = run(script);
    let in_shadow = &r.resumed[4];
    assert!(!in_shadow.inj_info.charged());
    assert_eq!(in_shadow.intr_state.value(), 1);
    assert!(in_shadow.ctrl.value().contains(Controls::INTERRUPT_WINDOW));
    assert_eq!(
        r.resumed[5].inj_info.value(),
        EventInfo::external_interrupt(0x50)
    );
}

#[test]
fn recall_irq_goes_through_a_request_and_is_injected() {
    let mut script = vec![setup(|s| s.flags.load(0x202))];
    script.extend(command(3, 0x42, 50));
    // the platform ran the timer job at once: the next run is recalled
    script.push(pass());
    let r = run(script);
    assert_eq!(
        r.recalls, 1,
        "the recall was consumed by a run; the VM's end recalls once more"
    );
    assert_eq!(r.counters.get("recall"), 1);
    let after_recall = r
        .resumed
        .iter()
        .find(|s| s.exit.reason == ExitReason::Recall)
        .unwrap();
    assert_eq!(
        after_recall.inj_info.value(),
        EventInfo::external_interrupt(0x42)
    );
}

#[test]
fn tsc_advance_charges_the_offset() {
    let mut script = vec![setup(|s| s.tsc_offset.load(100))];
    script.extend(command(4, 0, 1 << 18)); // 2^50
    script.push(pass());
    let r = run(script);
    assert_eq!(r.resumed[4].tsc_offset.value(), 100 + (1 << 50));
    assert!(r.resumed[4].tsc_offset.charged());
}

#[test]
fn invalid_state_command_then_entry_failure_is_reported() {
    let mut script = vec![setup(|s| s.cr0.load(0x8000_0011))];
    script.extend(command(5, 0, 0));
    script.push(step(|s| {
        s.exit = Exit {
            reason: ExitReason::InvalidState,
            raw: RawExit::Vmx(0x8000_0021),
        };
    }));
    let r = run(script);
    assert_eq!(r.resumed[4].cr0.value(), 0x8000_0010, "PE cleared, PG kept");
    assert_eq!(
        r.outcome,
        Some(Outcome::InvalidState {
            vcpu: 0,
            requested: true,
            raw: RawExit::Vmx(0x8000_0021)
        })
    );
    assert!(r.outcome.unwrap().to_string().contains("INVALID_STATE"));
}

#[test]
fn host_refusing_the_invalid_state_is_reported_as_invalid_state() {
    let mut script = vec![setup(|s| s.cr0.load(0x8000_0011))];
    script.extend(command(5, 0, 0));
    // the script ends: the backend fails on the next run
    let r = run(script);
    assert!(matches!(
        r.outcome,
        Some(Outcome::InvalidState {
            requested: true,
            ..
        })
    ));
}

#[test]
fn unknown_command_and_bad_vector_are_protocol_errors() {
    let r = run(command(9, 0, 0));
    assert!(matches!(
        r.outcome,
        Some(Outcome::ProtocolError { value: 9, .. })
    ));
    let r = run(command(1, 3, 0));
    assert!(matches!(
        r.outcome,
        Some(Outcome::ProtocolError { value: 1, .. })
    ));
    let r = run(command(3, 0x42, 5000));
    assert!(matches!(
        r.outcome,
        Some(Outcome::ProtocolError { value: 3, .. })
    ));
}

#[test]
fn hostile_guests_end_with_clear_outcomes() {
    let r = run(vec![exit(ExitReason::Shutdown)]);
    match r.outcome {
        Some(Outcome::TripleFault { vcpu: 0, state }) => {
            let report = r.outcome.unwrap().to_string();
            assert!(report.contains("triple-faulted"), "{report}");
            assert!(
                report.contains(&alloc::format!("RIP={:#x}", state.rip)) && report.contains("CR3="),
                "the report shows the vCPU's registers: {report}"
            );
        }
        other => panic!("expected a triple fault of vCPU 0, got {other:?}"),
    }

    let r = run(vec![exit(ExitReason::NestedPageFault(PageFault {
        gpa: 0xe000_0000,
        access: Access::Write,
        present: false,
    }))]);
    let o = r.outcome.unwrap();
    assert!(matches!(
        o,
        Outcome::UnmappedAccess {
            gpa: 0xe000_0000,
            access: Access::Write,
            ..
        }
    ));
    assert!(o.to_string().contains("0xe0000000"), "{o}");

    let r = run(vec![exit(ExitReason::TaskSwitch)]);
    assert!(matches!(
        r.outcome,
        Some(Outcome::UnhandledExit {
            reason: ExitReason::TaskSwitch,
            ..
        })
    ));
}

#[test]
fn exit_flood_is_stopped_at_the_limit() {
    let config = VmConfig {
        vcpus: 1,
        max_exits: 50,
    };
    let script: Vec<Step> = (0..100).map(|_| out(0xe18, 4, 0)).collect();
    let r = run_with(config, &Ram::new(0x40_0000), script);
    assert_eq!(
        r.outcome,
        Some(Outcome::ExitFlood {
            exits: 51,
            limit: 50
        })
    );
    assert_eq!(r.resumed.len(), 50, "the 51st exit is not resumed");
}

#[test]
fn halting_with_interrupts_off_and_nothing_else_running_is_reported() {
    let r = run(vec![exit(ExitReason::Hlt)]);
    assert_eq!(r.outcome, Some(Outcome::AllHalted));
    assert_eq!(r.counters.get("hlt"), 1);
}

#[test]
fn backend_failure_ends_the_vm() {
    let r = run(vec![]);
    assert_eq!(
        r.outcome,
        Some(Outcome::Backend {
            vcpu: 0,
            error: VcpuError::Backend(BackendError::Dead)
        })
    );
}

#[test]
fn interrupted_event_delivery_is_injected_again() {
    let r = run(vec![
        step(|s| {
            s.inj_info.load(EventInfo::exception(14, true));
            s.inj_error.load(2);
            s.ip_len.load(0);
            set_exit(s, ExitReason::ExternalInterrupt);
        }),
        pass(),
    ]);
    assert_eq!(
        r.resumed[1].inj_info.value(),
        EventInfo::exception(14, true)
    );
    assert_eq!(r.resumed[1].inj_error.value(), 2);
}

/// 32-bit flat protected mode at `rip` with `code` there.
fn emulated(
    ram: &Ram,
    rip: u64,
    code: &'static [u8],
    regs: impl Fn(&mut VcpuState) + Send + 'static,
) -> Step {
    ram.write(rip, code).unwrap();
    step(move |s| {
        s.ip.load(rip);
        s.ip_len.load(0);
        regs(s);
    })
}

#[test]
fn mmio_loads_and_stores_are_emulated_against_the_test_device() {
    let ram = Ram::new(0x40_0000);
    let script = vec![
        // mov eax, [0xd0000000]
        emulated(&ram, 0x2000, &[0xa1, 0x00, 0x00, 0x00, 0xd0], |s| {
            set_exit(
                s,
                ExitReason::NestedPageFault(PageFault {
                    gpa: 0xd000_0000,
                    access: Access::Read,
                    present: false,
                }),
            )
        }),
        // mov [0xd0000008], ecx
        emulated(&ram, 0x2010, &[0x89, 0x0d, 0x08, 0x00, 0x00, 0xd0], |s| {
            s.rcx.load(0x0f0f_0f0f);
            set_exit(
                s,
                ExitReason::NestedPageFault(PageFault {
                    gpa: 0xd000_0008,
                    access: Access::Write,
                    present: false,
                }),
            )
        }),
        // mov edx, [0xd0000010] (MM_INVERT)
        emulated(&ram, 0x2020, &[0x8b, 0x15, 0x10, 0x00, 0x00, 0xd0], |s| {
            set_exit(
                s,
                ExitReason::NestedPageFault(PageFault {
                    gpa: 0xd000_0010,
                    access: Access::Read,
                    present: false,
                }),
            )
        }),
        pass(),
    ];
    let r = run_with(VmConfig::default(), &ram, script);
    assert_eq!(r.resumed[1].rax.value(), 0x4f49_4d4d);
    assert_eq!(r.resumed[1].ip.value(), 0x2005);
    assert_eq!(r.resumed[3].rdx.value(), 0xf0f0_f0f0);
    assert_eq!(r.resumed[3].ip.value(), 0x2026);
    assert_eq!(r.counters.get("nested-page-fault"), 3);
}

#[test]
fn rep_outsb_to_com1_is_emulated_into_a_line() {
    let ram = Ram::new(0x40_0000);
    ram.write(0x3000, b"ok\n").unwrap();
    let script = vec![
        emulated(&ram, 0x2000, &[0xf3, 0x6e], |s| {
            s.rsi.load(0x3000);
            s.rcx.load(3);
            s.rdx.load(0x3f8);
            set_exit(
                s,
                ExitReason::Io(IoAccess {
                    port: 0x3f8,
                    size: 1,
                    direction: Direction::Out,
                    string: true,
                    rep: true,
                }),
            )
        }),
        pass(),
    ];
    let r = run_with(VmConfig::default(), &ram, script);
    assert_eq!(r.lines, ["ok"]);
    let s = &r.resumed[1];
    assert_eq!(
        (s.rsi.value(), s.rcx.value(), s.ip.value()),
        (0x3003, 0, 0x2002)
    );
    assert_eq!(r.counters.get("io-string"), 1);
}

#[test]
fn rep_insd_from_the_counter_reads_one_value_per_element() {
    let ram = Ram::new(0x40_0000);
    let script = vec![
        emulated(&ram, 0x2000, &[0xf3, 0x6d], |s| {
            s.rdi.load(0x3000);
            s.rcx.load(4);
            s.rdx.load(0xe10);
            set_exit(
                s,
                ExitReason::Io(IoAccess {
                    port: 0xe10,
                    size: 4,
                    direction: Direction::In,
                    string: true,
                    rep: true,
                }),
            )
        }),
        pass(),
    ];
    let r = run_with(VmConfig::default(), &ram, script);
    let mut got = [0u8; 16];
    ram.read(0x3000, &mut got).unwrap();
    assert_eq!(got, [0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0]);
    assert_eq!(r.resumed[1].rdi.value(), 0x3010);
}

#[test]
fn an_emulated_fault_is_injected_into_the_guest() {
    let ram = Ram::new(0x40_0000);
    let script = vec![
        // mov eax, [0xd0000000] through a DS with a 64 KiB limit: #GP(0)
        emulated(&ram, 0x2000, &[0xa1, 0x00, 0x00, 0x00, 0xd0], |s| {
            s.ds.update(|ds| {
                ds.limit = 0xffff;
                ds.attributes &= !(1 << 11);
            });
            set_exit(
                s,
                ExitReason::NestedPageFault(PageFault {
                    gpa: 0xd000_0000,
                    access: Access::Read,
                    present: false,
                }),
            )
        }),
        pass(),
    ];
    let r = run_with(VmConfig::default(), &ram, script);
    let s = &r.resumed[1];
    assert_eq!(s.inj_info.value(), EventInfo::exception(13, true));
    assert_eq!(s.inj_error.value(), 0);
    assert!(!s.ip.charged());
}

#[test]
fn an_instruction_the_emulator_lacks_stops_the_vm_with_a_report() {
    let ram = Ram::new(0x40_0000);
    let script = vec![emulated(&ram, 0x2000, &[0x0f, 0xa2], |s| {
        set_exit(
            s,
            ExitReason::NestedPageFault(PageFault {
                gpa: 0xd000_0000,
                access: Access::Read,
                present: false,
            }),
        )
    })];
    let r = run_with(VmConfig::default(), &ram, script);
    let o = r.outcome.unwrap();
    assert!(
        matches!(o, Outcome::EmulationFailed { rip: 0x2000, .. }),
        "{o}"
    );
}

fn completed(target: WriteTarget, size: u8, data: u64) -> Step {
    step(move |s| {
        s.ip_len.load(0);
        set_exit(
            s,
            ExitReason::Completed(CompletedWrite { target, size, data }),
        );
    })
}

#[test]
fn completed_writes_reach_the_devices_without_skipping() {
    let r = run(vec![
        completed(WriteTarget::Port { port: 0x3f8 }, 1, b'k' as u64),
        completed(WriteTarget::Port { port: 0x3f8 }, 1, b'\n' as u64),
        completed(
            WriteTarget::Memory { gpa: 0xd000_0008 },
            8,
            0x1122_3344_5566_7788,
        ),
        completed(WriteTarget::Port { port: 0xf4 }, 1, 0x10),
    ]);
    assert_eq!(r.lines, ["k"]);
    assert!(
        r.resumed[1..4].iter().all(|s| !s.ip.charged()),
        "nothing skipped"
    );
    assert!(r.outcome.unwrap().passed());
    assert_eq!(r.counters.get("completed-write"), 4);
    assert_eq!(r.resumed.len(), 4, "the exit-port write ended the VM");
}

#[test]
fn completed_mmio_scratch_store_is_seen_by_an_emulated_load() {
    let ram = Ram::new(0x40_0000);
    let script = vec![
        completed(WriteTarget::Memory { gpa: 0xd000_0008 }, 4, 0x0f0f_0f0f),
        // mov edx, [0xd0000010] (MM_INVERT)
        emulated(&ram, 0x2020, &[0x8b, 0x15, 0x10, 0x00, 0x00, 0xd0], |s| {
            set_exit(
                s,
                ExitReason::NestedPageFault(PageFault {
                    gpa: 0xd000_0010,
                    access: Access::Read,
                    present: false,
                }),
            )
        }),
        pass(),
    ];
    let r = run_with(VmConfig::default(), &ram, script);
    assert_eq!(r.resumed[2].rdx.value(), 0xf0f0_f0f0);
}

#[test]
fn completed_write_to_unmapped_memory_is_reported() {
    let r = run(vec![completed(
        WriteTarget::Memory { gpa: 0xe000_0000 },
        4,
        1,
    )]);
    assert!(matches!(
        r.outcome,
        Some(Outcome::UnmappedAccess {
            gpa: 0xe000_0000,
            access: Access::Write,
            ..
        })
    ));
}

fn scripted_vcpu(script: Vec<Step>) -> Vcpu<Scripted> {
    Vcpu::new(Scripted {
        script: script.into(),
        resumed: Arc::new(Mutex::new(Vec::new())),
        recalls: Arc::new(AtomicUsize::new(0)),
    })
}

#[test]
fn a_parked_vcpu_ends_with_the_vm_another_vcpu_ends() {
    let ram = Ram::new(0x40_0000);
    let platform = TestPlatform::default();
    let vm = Vm::new(
        &ram,
        &platform,
        VmConfig {
            vcpus: 2,
            max_exits: 1000,
        },
    );
    let boot = BootImage {
        entry: 0x10_0000,
        start: 0x10_0000,
        end: 0x10_1000,
    };
    std::thread::scope(|scope| {
        let parked = scope.spawn(|| {
            // cli; hlt forever: waits until the VM ends
            vm.run_vcpu(1, &mut scripted_vcpu(vec![exit(ExitReason::Hlt)]), boot)
        });
        let boot_cpu = scope.spawn(|| {
            std::thread::sleep(std::time::Duration::from_millis(20));
            vm.run_vcpu(0, &mut scripted_vcpu(vec![pass()]), boot)
        });
        assert_eq!(parked.join().unwrap().get("hlt"), 1);
        assert_eq!(boot_cpu.join().unwrap().get("io"), 1);
    });
    assert!(vm.outcome().unwrap().passed());
}

#[test]
fn all_vcpus_halted_with_interrupts_off_end_the_vm() {
    let ram = Ram::new(0x40_0000);
    let platform = TestPlatform::default();
    let vm = Vm::new(
        &ram,
        &platform,
        VmConfig {
            vcpus: 2,
            max_exits: 1000,
        },
    );
    let boot = BootImage {
        entry: 0x10_0000,
        start: 0x10_0000,
        end: 0x10_1000,
    };
    std::thread::scope(|scope| {
        for id in 0..2 {
            let vm = &vm;
            scope.spawn(move || {
                vm.run_vcpu(id, &mut scripted_vcpu(vec![exit(ExitReason::Hlt)]), boot)
            });
        }
    });
    assert_eq!(vm.outcome(), Some(Outcome::AllHalted));
}

#[test]
fn decoded_cr_accesses_rdtsc_and_invlpg_are_carried_out() {
    let r = run(vec![
        step(|s| {
            s.rbx.load(0x8000_0031);
            s.ip_len.load(3);
            set_exit(
                s,
                ExitReason::CrAccess(CrAccess {
                    cr: 0,
                    op: CrOp::Write { gpr: Some(3) },
                }),
            );
        }),
        step(|s| {
            s.cr3.load(0x5000);
            s.ip_len.load(3);
            set_exit(
                s,
                ExitReason::CrAccess(CrAccess {
                    cr: 3,
                    op: CrOp::Read { gpr: Some(12) },
                }),
            );
        }),
        step(|s| {
            s.cr0.load(0x8000_003b);
            s.ip_len.load(3);
            set_exit(
                s,
                ExitReason::CrAccess(CrAccess {
                    cr: 0,
                    op: CrOp::Lmsw { source: Some(0) },
                }),
            );
        }),
        step(|s| {
            s.tsc.load(0x1_0000_0002);
            s.tsc_aux.load(7);
            s.ip_len.load(3);
            set_exit(s, ExitReason::Rdtscp);
        }),
        exit(ExitReason::Invlpg),
        pass(),
    ]);
    assert_eq!(r.resumed[1].cr0.value(), 0x8000_0031);
    assert_eq!(r.resumed[2].r12.value(), 0x5000);
    assert_eq!(
        r.resumed[3].cr0.value(),
        0x8000_0031,
        "LMSW keeps PE and loads TS/EM/MP"
    );
    let t = &r.resumed[4];
    assert_eq!((t.rax.value(), t.rdx.value(), t.rcx.value()), (2, 1, 7));
    assert!(
        r.resumed.iter().skip(1).all(|s| s.ip.charged()),
        "every one skipped"
    );
    assert!(r.outcome.unwrap().passed());
}

#[test]
fn undecoded_cr_access_is_reported_not_guessed() {
    let r = run(vec![exit(ExitReason::CrAccess(CrAccess {
        cr: 0,
        op: CrOp::Write { gpr: None },
    }))]);
    assert!(matches!(
        r.outcome,
        Some(Outcome::UnhandledExit {
            reason: ExitReason::CrAccess(_),
            ..
        })
    ));
    let r = run(vec![exit(ExitReason::CrAccess(CrAccess {
        cr: 8,
        op: CrOp::Write { gpr: Some(0) },
    }))]);
    assert!(matches!(r.outcome, Some(Outcome::UnhandledExit { .. })));
}

#[test]
fn exit_counters_merge_and_print() {
    let mut a = ExitCounters::default();
    a.count(&ExitReason::Hlt);
    a.count(&ExitReason::Cpuid);
    let mut b = ExitCounters::default();
    b.count(&ExitReason::Hlt);
    a.merge(&b);
    assert_eq!(a.get("hlt"), 2);
    assert_eq!(
        a.to_string(),
        "exits cpuid: 1\nexits hlt: 2\nexits total: 3"
    );
}

// ---------------------------------------------------------------- loader

/// A minimal ELF64 Multiboot guest: one PT_LOAD at 1 MiB.
fn elf64(code: &[u8], memsz: u64, entry: u64) -> Vec<u8> {
    let mut f = vec![0u8; 0x1000];
    f[..4].copy_from_slice(b"\x7fELF");
    f[4] = 2;
    f[5] = 1;
    f[6] = 1;
    f[16..18].copy_from_slice(&2u16.to_le_bytes());
    f[18..20].copy_from_slice(&62u16.to_le_bytes());
    f[24..32].copy_from_slice(&entry.to_le_bytes());
    f[32..40].copy_from_slice(&64u64.to_le_bytes());
    f[54..56].copy_from_slice(&56u16.to_le_bytes());
    f[56..58].copy_from_slice(&1u16.to_le_bytes());
    let ph = 64;
    f[ph..ph + 4].copy_from_slice(&1u32.to_le_bytes());
    f[ph + 8..ph + 16].copy_from_slice(&0x1000u64.to_le_bytes());
    f[ph + 16..ph + 24].copy_from_slice(&0x10_0000u64.to_le_bytes());
    f[ph + 24..ph + 32].copy_from_slice(&0x10_0000u64.to_le_bytes());
    f[ph + 32..ph + 40].copy_from_slice(&(code.len() as u64).to_le_bytes());
    f[ph + 40..ph + 48].copy_from_slice(&memsz.to_le_bytes());
    // Multiboot header at file offset 0x200
    let flags = 0u32;
    let check = 0u32.wrapping_sub(0x1bad_b002).wrapping_sub(flags);
    f[0x200..0x204].copy_from_slice(&0x1bad_b002u32.to_le_bytes());
    f[0x208..0x20c].copy_from_slice(&check.to_le_bytes());
    f.extend_from_slice(code);
    f
}

#[test]
fn loads_pt_load_at_its_physical_address_and_zeroes_bss() {
    let ram = Ram::new(0x40_0000);
    ram.write(0x10_0004, &[0xff; 8]).unwrap();
    let image = elf64(&[0x90, 0xf4, 0xeb], 0x10, 0x10_0000);
    let boot = loader::load(&image, &ram).unwrap();
    assert_eq!(
        boot,
        BootImage {
            entry: 0x10_0000,
            start: 0x10_0000,
            end: 0x10_0010
        }
    );
    let mut got = [0xaa; 8];
    ram.read(0x10_0000, &mut got).unwrap();
    assert_eq!(got, [0x90, 0xf4, 0xeb, 0, 0, 0, 0, 0]);
}

#[test]
fn loader_rejects_bad_images_with_clear_errors() {
    let ram = Ram::new(0x40_0000);
    assert_eq!(loader::load(b"MZ\x90\x00", &ram), Err(LoadError::NotElf));
    assert_eq!(loader::load(b"", &ram), Err(LoadError::NotElf));

    let mut no_header = elf64(&[0x90], 1, 0x10_0000);
    no_header[0x200] = 0;
    assert_eq!(
        loader::load(&no_header, &ram),
        Err(LoadError::NoMultibootHeader)
    );

    let mut bad_sum = elf64(&[0x90], 1, 0x10_0000);
    bad_sum[0x208] ^= 1;
    assert_eq!(
        loader::load(&bad_sum, &ram),
        Err(LoadError::BadMultibootChecksum)
    );

    let mut arm = elf64(&[0x90], 1, 0x10_0000);
    arm[18] = 183;
    assert!(matches!(
        loader::load(&arm, &ram),
        Err(LoadError::WrongMachine { machine: 183, .. })
    ));

    let truncated = elf64(&[0x90; 16], 16, 0x10_0000);
    assert_eq!(
        loader::load(&truncated[..truncated.len() - 4], &ram),
        Err(LoadError::Truncated {
            what: "a segment's bytes"
        })
    );

    let too_big = elf64(&[0x90], 0x40_0000, 0x10_0000);
    assert!(matches!(
        loader::load(&too_big, &ram),
        Err(LoadError::OutsideRam(_))
    ));

    let bad_entry = elf64(&[0x90], 1, 0x20_0000);
    assert_eq!(
        loader::load(&bad_entry, &ram),
        Err(LoadError::EntryOutside { entry: 0x20_0000 })
    );

    let mut bad_phoff = elf64(&[0x90], 1, 0x10_0000);
    bad_phoff[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        loader::load(&bad_phoff, &ram),
        Err(LoadError::Truncated { .. })
    ));

    for e in [
        LoadError::NotElf,
        LoadError::NoMultibootHeader,
        LoadError::NoLoadableSegment,
    ] {
        assert!(!e.to_string().is_empty());
    }
}

#[test]
fn loader_never_panics_on_mangled_headers() {
    let ram = Ram::new(0x40_0000);
    let good = elf64(&[0x90; 32], 64, 0x10_0000);
    for at in 0..0x80 {
        for value in [0x00, 0x7f, 0xff] {
            let mut image = good.clone();
            image[at] = value;
            let _ = loader::load(&image, &ram);
        }
    }
    for len in 0..good.len() {
        let _ = loader::load(&good[..len], &ram);
    }
}
