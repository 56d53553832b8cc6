//! The guest-test device in the exit loop: registers per vCPU, commands,
//! their interrupts beside the controllers, and `unmapped-mmio = "stop"`.

use std::sync::Arc;

use vcpu_api::{CompletedWrite, Direction, EventInfo, ExitReason, VcpuState, WriteTarget};
use vmm_bus::HostClock;
use vmm_core::devices::{TD_ARG0, TD_ARG1, TD_CMD, TD_ID, TD_ID_VALUE, TD_VCPU};
use vmm_irqchip::TimerQueue;
use vmm_platform::config::UnmappedMmio;

use super::*;
use crate::testdev::TestDevice;

fn with_test_device(cpus: u32) -> Fixture {
    let mut f = fixture(cpus, MULTIBOOT, None);
    let clock = Arc::new(HostClock::new());
    let timers = TimerQueue::new(clock.clone()).unwrap();
    f.machine.test = Some(TestDevice::new(
        RAM as u64,
        f.machine.life.clone(),
        clock,
        timers,
    ));
    f
}

fn port_in(f: &Fixture, c: &mut Ctx, port: u16) -> u64 {
    let mut s = stopped_at(io(port, 4, Direction::In), 2);
    assert_eq!(vcpu::handle(&f.machine, c, &mut s, true), Next::Resume);
    s.rax.value()
}

fn port_out(f: &Fixture, c: &mut Ctx, s: &mut VcpuState, port: u16, value: u32) -> Next {
    *s = VcpuState {
        flags: s.flags.clone(),
        ..stopped_at(io(port, 4, Direction::Out), 2)
    };
    s.rax.load(value as u64);
    vcpu::handle(&f.machine, c, s, true)
}

fn command(f: &Fixture, c: &mut Ctx, s: &mut VcpuState, cmd: u32, arg0: u32, arg1: u32) -> Next {
    port_out(f, c, s, TD_ARG0, arg0);
    port_out(f, c, s, TD_ARG1, arg1);
    port_out(f, c, s, TD_CMD, cmd)
}

#[test]
fn registers_answer_per_vcpu_and_are_absent_without_the_device() {
    let f = with_test_device(2);
    let (mut c0, mut c1) = (ctx(&f, 0), ctx(&f, 1));
    assert_eq!(port_in(&f, &mut c0, TD_ID), TD_ID_VALUE as u64);
    assert_eq!(port_in(&f, &mut c0, TD_VCPU), 0);
    assert_eq!(port_in(&f, &mut c1, TD_VCPU), 1);
    let plain = fixture(1, MULTIBOOT, None);
    assert_eq!(port_in(&plain, &mut ctx(&plain, 0), TD_ID), 0xffff_ffff);
}

#[test]
fn irq_now_waits_for_if_and_goes_in_without_the_controllers() {
    let f = with_test_device(1);
    let mut c = ctx(&f, 0);
    let mut s = stopped_at(ExitReason::Recall, 0);
    s.flags.load(0x2); // IF = 0
    command(&f, &mut c, &mut s, 1, 0x41, 0);
    assert!(!s.inj_info.charged(), "never injected while IF = 0");
    assert_eq!(s.ctrl.value(), Controls(Controls::INTERRUPT_WINDOW));

    let mut s = stopped_at(ExitReason::InterruptWindow, 0);
    s.ctrl.load(Controls(Controls::INTERRUPT_WINDOW));
    vcpu::handle(&f.machine, &mut c, &mut s, true);
    assert_eq!(s.inj_info.value(), EventInfo::external_interrupt(0x41));
    assert!(
        f.irq.acked.lock().unwrap().is_empty(),
        "not the controllers'"
    );
    let mut s = stopped_at(ExitReason::Recall, 0);
    vcpu::handle(&f.machine, &mut c, &mut s, true);
    assert!(!s.inj_info.charged(), "delivered once");
}

#[test]
fn irq_on_hlt_ends_the_next_hlt() {
    let f = with_test_device(1);
    let mut c = ctx(&f, 0);
    let mut s = stopped_at(ExitReason::Recall, 0);
    command(&f, &mut c, &mut s, 2, 0x40, 0);
    assert!(!s.inj_info.charged(), "only at the HLT");
    let mut s = stopped_at(ExitReason::Hlt, 1);
    s.intr_state.load(vcpu_api::interruptibility::STI);
    assert_eq!(vcpu::handle(&f.machine, &mut c, &mut s, true), Next::Resume);
    assert_eq!(s.ip.value(), 0x1001);
    assert_eq!(s.inj_info.value(), EventInfo::external_interrupt(0x40));
    assert_eq!(s.intr_state.value(), 0, "the HLT ended the STI shadow");
}

#[test]
fn recall_irq_raises_the_vector_later_and_rings_the_doorbell() {
    let f = with_test_device(1);
    let mut c = ctx(&f, 0);
    let mut s = stopped_at(ExitReason::Recall, 0);
    command(&f, &mut c, &mut s, 3, 0x42, 5);
    assert!(!s.inj_info.charged(), "not yet");
    let test = f.machine.test.clone().unwrap();
    f.machine.doorbell(0).wait(|| false);
    assert_eq!(test.pending(0), Some(0x42));
    let mut s = stopped_at(ExitReason::Recall, 0);
    vcpu::handle(&f.machine, &mut c, &mut s, true);
    assert_eq!(s.inj_info.value(), EventInfo::external_interrupt(0x42));
    assert_eq!(test.pending(0), None);
}

#[test]
fn tsc_advance_and_invalid_state_change_this_vcpu() {
    let f = with_test_device(1);
    let mut c = ctx(&f, 0);
    let mut s = stopped_at(ExitReason::Recall, 0);
    port_out(&f, &mut c, &mut s, TD_ARG0, 0);
    port_out(&f, &mut c, &mut s, TD_ARG1, 1 << 18);
    let mut s = stopped_at(io(TD_CMD, 4, Direction::Out), 2);
    s.tsc_offset.load(5);
    s.rax.load(4);
    vcpu::handle(&f.machine, &mut c, &mut s, true);
    assert_eq!(s.tsc_offset.value(), 5 + (1 << 50));
    assert!(s.tsc_offset.charged());
    assert_eq!(
        f.irq.tsc_offsets.lock().unwrap().as_slice(),
        [(0, 1 << 50)],
        "the TSC-deadline timer sees the advance"
    );

    command(&f, &mut c, &mut s, 5, 0, 0);
    assert_eq!(s.cr0.value() & 0x8000_0001, 0x8000_0000, "PG without PE");
    let mut s = stopped_at(ExitReason::InvalidState, 0);
    assert_eq!(vcpu::handle(&f.machine, &mut c, &mut s, true), Next::Stop);
    let end = f.machine.life.end().unwrap();
    assert!(matches!(
        end,
        End::InvalidState {
            requested: true,
            ..
        }
    ));
    assert!(end.to_string().contains("INVALID_STATE"), "{end}");
}

#[test]
fn bad_commands_and_vectors_stop_the_vm() {
    for (cmd, arg0, arg1, what) in [
        (1, 0x1f, 0, "vector"),
        (3, 0x42, 0, "delay"),
        (99, 0, 0, "unknown"),
    ] {
        let f = with_test_device(1);
        let mut c = ctx(&f, 0);
        let mut s = stopped_at(ExitReason::Recall, 0);
        assert_eq!(command(&f, &mut c, &mut s, cmd, arg0, arg1), Next::Stop);
        let end = f.machine.life.end().unwrap();
        assert!(matches!(end, End::TestProtocol { .. }), "{end}");
        assert!(end.to_string().contains(what), "{end}");
    }
}

#[test]
fn unmapped_mmio_stop_ends_the_vm_with_the_address_and_access() {
    let mut f = fixture(1, MULTIBOOT, None);
    f.machine.unmapped_mmio = UnmappedMmio::Stop;
    let mut c = ctx(&f, 0);
    let mut s = stopped_at(
        ExitReason::Completed(CompletedWrite {
            target: WriteTarget::Memory { gpa: 0xe000_0000 },
            size: 4,
            data: 1,
        }),
        0,
    );
    assert_eq!(vcpu::handle(&f.machine, &mut c, &mut s, true), Next::Stop);
    let end = f.machine.life.end().unwrap();
    assert_eq!(
        end,
        End::UnmappedAccess {
            vcpu: 0,
            gpa: 0xe000_0000,
            access: vcpu_api::Access::Write,
            rip: 0x1000
        }
    );
    assert!(end.to_string().contains("Write at GPA=0xe0000000"), "{end}");
}

#[test]
fn an_instruction_in_an_sti_shadow_ends_it_and_the_interrupt_follows_at_once() {
    let f = fixture(1, MULTIBOOT, None);
    let mut c = ctx(&f, 0);
    f.irq.pending.lock().unwrap().push_back(0x51);
    let mut s = stopped_at(
        ExitReason::Msr(vcpu_api::MsrAccess {
            index: 0x80b,
            write: true,
        }),
        2,
    );
    s.intr_state.load(vcpu_api::interruptibility::STI); // STI; WRMSR
    vcpu::handle(&f.machine, &mut c, &mut s, true);
    assert_eq!(s.ip.value(), 0x1002);
    assert_eq!(s.intr_state.value(), 0, "the WRMSR completed: no shadow");
    assert_eq!(s.inj_info.value(), EventInfo::external_interrupt(0x51));
}

#[test]
fn vcpus_start_with_every_offered_user_xsave_component_in_xcr0() {
    let mut f = fixture(1, MULTIBOOT, None);
    assert_eq!(f.machine.start_xcr0(), 1, "no XSAVE offered: x87 only");
    let mut table = host_cpuid();
    table[1].ecx |= 1 << 26 | 1 << 28; // XSAVE, AVX
    table.push(CpuidEntry {
        function: 0xd,
        index: 2,
        eax: 256,
        ebx: 576,
        ecx: 0,
        edx: 0,
    });
    f.machine.cpuid = GuestCpuid::new(&table, &CpuidPolicy::new(1)).unwrap();
    assert_eq!(f.machine.start_xcr0(), 7, "x87, SSE, AVX");
    let mut c = ctx(&f, 0);
    let mut s = stopped_at(ExitReason::Startup, 0);
    vcpu::handle(&f.machine, &mut c, &mut s, true);
    assert_eq!(s.xcr0.value(), 7);
    let r = f.machine.cpuid(0, 0xd, 0, 1 << 18, s.xcr0.value());
    assert_eq!(r[1], 832, "CPUID 0xD EBX for that XCR0");
}
