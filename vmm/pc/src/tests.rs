//! Host tests: the exit loop against a scripted backend and a scripted
//! interrupt controller, the Linux boot structures, the device wiring.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use halifax_emu::Emulator;
use vcpu_api::{
    Backend, BackendError, CompletedWrite, Controls, Direction, EventInfo, Exit, ExitReason,
    IoAccess, MsrAccess, RawExit, Recall, Vcpu, VcpuState, WriteTarget,
};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_bus::{Bus, BusDevice};
use vmm_host::CpuidEntry;
use vmm_platform::config::{OnReset, UnmappedMmio};
use vmm_platform::cpuid::{CpuidPolicy, GuestCpuid};
use vmm_platform::layout::MemoryLayout;
use vmm_platform::msr::{MsrModel, MsrPlatform};

use crate::boot::{self, linux, Entry};
use crate::end::End;
use crate::irq::{InterruptController, Startup};
use crate::machine::{Lifecycle, Machine, PowerOn};
use crate::vcpu::{self, Ctx, Next};

// ---------------------------------------------------------------- fakes

/// An interrupt controller the test drives: pending vectors, NMI, startup
/// signals; it records acks and APIC MSR/MMIO accesses.
#[derive(Default)]
struct ScriptedIrq {
    pending: Mutex<VecDeque<u8>>,
    nmi: Mutex<bool>,
    startup: Mutex<VecDeque<Startup>>,
    acked: Mutex<Vec<u8>>,
    msrs: Mutex<Vec<(u32, u64)>>,
    lapic: Mutex<Vec<(u64, Vec<u8>)>>,
    tsc_offsets: Mutex<Vec<(u32, u64)>>,
}

impl InterruptController for ScriptedIrq {
    fn next_interrupt(&self, _: u32) -> Option<u8> {
        self.pending.lock().unwrap().front().copied()
    }
    fn ack(&self, _: u32, vector: u8) {
        self.pending.lock().unwrap().pop_front();
        self.acked.lock().unwrap().push(vector);
    }
    fn take_nmi(&self, _: u32) -> bool {
        std::mem::take(&mut *self.nmi.lock().unwrap())
    }
    /// Start-up signals are for the APs (vCPU 0 running beside them must
    /// not take them).
    fn take_startup(&self, vcpu: u32) -> Option<Startup> {
        if vcpu == 0 {
            return None;
        }
        self.startup.lock().unwrap().pop_front()
    }
    fn rdmsr(&self, _: u32, msr: u32) -> Option<u64> {
        (msr == 0x802).then_some(0x1234_5678_9abc)
    }
    fn wrmsr(&self, _: u32, msr: u32, value: u64) -> bool {
        self.msrs.lock().unwrap().push((msr, value));
        msr == 0x80b
    }
    fn lapic_read(&self, _: u32, offset: u64, data: &mut [u8]) {
        data.fill(offset as u8);
    }
    fn lapic_write(&self, _: u32, offset: u64, data: &[u8]) {
        self.lapic.lock().unwrap().push((offset, data.to_vec()));
    }
    fn set_tsc_offset(&self, vcpu: u32, offset: u64) {
        self.tsc_offsets.lock().unwrap().push((vcpu, offset));
    }
}

/// A port/MMIO device that answers with its offset and records writes.
#[derive(Default)]
struct Recorder(Vec<(u64, Vec<u8>)>);

impl BusDevice for Recorder {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0x40 + offset as u8);
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        self.0.push((offset, data.to_vec()));
    }
}

fn entry(leaf: u32, eax: u32, ebx: u32, ecx: u32, edx: u32) -> CpuidEntry {
    CpuidEntry {
        function: leaf,
        index: 0,
        eax,
        ebx,
        ecx,
        edx,
    }
}

/// A small AMD host table ("AuthenticAMD", long mode, NX, SYSCALL).
fn host_cpuid() -> Vec<CpuidEntry> {
    vec![
        entry(0, 0xd, 0x6874_7541, 0x444d_4163, 0x6974_6e65),
        entry(1, 0x00a0_0f11, 0x0000_0800, 0x0200_0001, 0x178b_fbff),
        entry(0xd, 0x7, 0x340, 0x340, 0),
        entry(
            0x8000_0000,
            0x8000_0008,
            0x6874_7541,
            0x444d_4163,
            0x6974_6e65,
        ),
        entry(0x8000_0001, 0, 0, 0x1, 0x2c10_0800),
        entry(0x8000_0008, 0x3030, 0, 0x1, 0),
    ]
}

struct Fixture {
    machine: Machine,
    irq: Arc<ScriptedIrq>,
    device: Arc<Mutex<Recorder>>,
    /// How often a restart reloaded guest RAM.
    reloads: Arc<AtomicU32>,
}

/// Where the fixture's reload writes its mark in guest RAM.
const RELOAD_MARK: u64 = 0x7000;

const RAM: usize = 0x100_0000;
const DEVICE_PORT: u64 = 0x510;
const DEVICE_MMIO: u64 = 0xd000_0000;

fn fixture(cpus: u32, entry: Entry, max_exits: Option<u64>) -> Fixture {
    let ram = Arc::new(GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), RAM)]).unwrap());
    let irq = Arc::new(ScriptedIrq::default());
    let device = Arc::new(Mutex::new(Recorder::default()));
    let (mut pio, mut mmio) = (Bus::new(), Bus::new());
    pio.insert(DEVICE_PORT, 4, device.clone()).unwrap();
    mmio.insert(DEVICE_MMIO, 0x1000, device.clone()).unwrap();
    let cpuid = GuestCpuid::new(&host_cpuid(), &CpuidPolicy::new(cpus)).unwrap();
    let layout = MemoryLayout::new(RAM as u64).unwrap();
    let msr_platform = MsrPlatform::new(&cpuid, &layout, None, 0);
    let reloads = Arc::new(AtomicU32::new(0));
    let counted = reloads.clone();
    let recorder = device.clone();
    let machine = Machine {
        ram,
        pio,
        mmio,
        irq: irq.clone(),
        entry,
        emulator: Emulator::default(),
        life: Lifecycle::new(cpus, OnReset::Restart),
        cpuid,
        msr_platform,
        exits: AtomicU64::new(0),
        max_exits,
        exit_counters: (0..cpus).map(|_| Mutex::default()).collect(),
        milestones: None,
        idle_dead: AtomicU32::new(0),
        warned: Mutex::new(HashSet::new()),
        test: None,
        unmapped_mmio: UnmappedMmio::Ignore,
        power_on: PowerOn {
            device_resets: vec![Box::new(move || recorder.lock().unwrap().0.clear())],
            reload: Box::new(move |ram| {
                let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
                ram.write_obj(n, GuestAddress(RELOAD_MARK)).unwrap();
                Ok(entry)
            }),
        },
    };
    Fixture {
        machine,
        irq,
        device,
        reloads,
    }
}

const MULTIBOOT: Entry = Entry::Multiboot(boot::multiboot::MultibootImage {
    entry: 0x10_0000,
    info: 0x9_0000,
});

fn ctx(f: &Fixture, index: u32) -> Ctx {
    Ctx::new(index, true, MsrModel::new(f.machine.msr_platform))
}

/// A state stopped at `reason` in 64-bit mode with interrupts on.
fn stopped_at(reason: ExitReason, ip_len: u64) -> VcpuState {
    let mut s = VcpuState::default();
    boot::linux::entry_state(
        &mut s,
        &linux::LinuxImage {
            entry: 0x1000,
            kernel_end: 0,
            initrd: None,
        },
    );
    s.flags.charge(0x202);
    s.discharge();
    s.ip_len.load(ip_len);
    s.exit = Exit {
        reason,
        raw: RawExit::Synthetic,
    };
    s
}

fn io(port: u16, size: u8, direction: Direction) -> ExitReason {
    ExitReason::Io(IoAccess {
        port,
        size,
        direction,
        string: false,
        rep: false,
    })
}

// ---------------------------------------------------------------- exits

#[test]
fn port_input_merges_into_rax_and_unclaimed_ports_read_all_ones() {
    let f = fixture(1, MULTIBOOT, None);
    let mut c = ctx(&f, 0);
    let mut s = stopped_at(io(DEVICE_PORT as u16 + 1, 1, Direction::In), 1);
    s.rax.load(0xdead_beef_0000_0000);
    assert_eq!(vcpu::handle(&f.machine, &mut c, &mut s, true), Next::Resume);
    assert_eq!(s.rax.value(), 0xdead_beef_0000_0041);
    assert_eq!(s.ip.value(), 0x1001);

    let mut s = stopped_at(io(0x80, 4, Direction::In), 2);
    s.rax.load(0xffff_0000_0000_0000);
    vcpu::handle(&f.machine, &mut c, &mut s, true);
    assert_eq!(s.rax.value(), 0xffff_ffff, "a 32-bit IN zero-extends");

    let mut s = stopped_at(io(DEVICE_PORT as u16, 2, Direction::Out), 2);
    s.rax.load(0x1234_abcd);
    vcpu::handle(&f.machine, &mut c, &mut s, true);
    assert_eq!(f.device.lock().unwrap().0, [(0, vec![0xcd, 0xab])]);
}

#[test]
fn completed_writes_reach_the_lapic_page_and_the_mmio_bus() {
    let f = fixture(1, MULTIBOOT, None);
    let mut c = ctx(&f, 0);
    for (gpa, size) in [(0xfee0_00b0, 4), (DEVICE_MMIO + 8, 8), (0xe000_0000, 4)] {
        let mut s = stopped_at(
            ExitReason::Completed(CompletedWrite {
                target: WriteTarget::Memory { gpa },
                size,
                data: 0x0102_0304_0506_0708,
            }),
            0,
        );
        assert_eq!(vcpu::handle(&f.machine, &mut c, &mut s, true), Next::Resume);
        assert!(!s.ip.charged(), "the host already completed the store");
    }
    assert_eq!(
        *f.irq.lapic.lock().unwrap(),
        [(0xb0, vec![8, 7, 6, 5])],
        "EOI register of the xAPIC page"
    );
    assert_eq!(
        f.device.lock().unwrap().0,
        [(8, vec![8, 7, 6, 5, 4, 3, 2, 1])]
    );
    let mut data = [0u8; 4];
    f.machine.mmio_read(0, 0x1000, 0xe000_0010, &mut data);
    assert_eq!(data, [0xff; 4], "MMIO to nowhere reads ones");
    assert!(f
        .machine
        .warned
        .lock()
        .unwrap()
        .contains(&("mmio", 0xe000_0000)));
    assert!(!f.machine.stopped(), "MMIO to nowhere does not end the VM");
}

#[test]
fn mmio_loads_are_emulated_against_the_device() {
    let f = fixture(1, MULTIBOOT, None);
    let mut c = ctx(&f, 0);
    // mov eax, [rbx] at 0x1000; the identity map of the boot page tables.
    linux_boot_structures(&f.machine.ram);
    f.machine
        .ram
        .write_slice(&[0x8b, 0x03], GuestAddress(0x1000))
        .unwrap();
    let mut s = stopped_at(
        ExitReason::NestedPageFault(vcpu_api::PageFault {
            gpa: DEVICE_MMIO + 4,
            access: vcpu_api::Access::Read,
            present: false,
        }),
        0,
    );
    s.rbx.load(DEVICE_MMIO + 4);
    assert_eq!(vcpu::handle(&f.machine, &mut c, &mut s, true), Next::Resume);
    assert_eq!(s.rax.value(), 0x4444_4444);
    assert_eq!(s.ip.value(), 0x1002);
}

/// Page tables and GDT as the Linux loader writes them.
fn linux_boot_structures(ram: &GuestMemoryMmap) {
    let kernel = fake_bzimage(0x20f, 1);
    let dir = temp_dir("boot-structures");
    let path = dir.join("bzImage");
    std::fs::write(&path, kernel).unwrap();
    let layout = MemoryLayout::new(RAM as u64).unwrap();
    linux::load(ram, &layout, &path, None, "", None).unwrap();
}

#[test]
fn an_interrupt_is_injected_when_the_guest_can_take_it_else_a_window_is_requested() {
    let f = fixture(1, MULTIBOOT, None);
    let mut c = ctx(&f, 0);
    f.irq.pending.lock().unwrap().extend([0x30, 0x31]);

    let mut s = stopped_at(ExitReason::Recall, 0);
    s.flags.load(0x2); // IF = 0
    vcpu::handle(&f.machine, &mut c, &mut s, true);
    assert!(!s.inj_info.charged());
    assert_eq!(s.ctrl.value(), Controls(Controls::INTERRUPT_WINDOW));

    let mut s = stopped_at(ExitReason::InterruptWindow, 0);
    s.ctrl.load(Controls(Controls::INTERRUPT_WINDOW));
    s.intr_state.load(vcpu_api::interruptibility::STI);
    vcpu::handle(&f.machine, &mut c, &mut s, true);
    assert!(!s.inj_info.charged(), "not in an STI shadow");

    let mut s = stopped_at(ExitReason::InterruptWindow, 0);
    s.ctrl.load(Controls(Controls::INTERRUPT_WINDOW));
    vcpu::handle(&f.machine, &mut c, &mut s, true);
    assert_eq!(s.inj_info.value(), EventInfo::external_interrupt(0x30));
    assert_eq!(*f.irq.acked.lock().unwrap(), [0x30]);
    assert_eq!(s.ctrl.value(), Controls(0), "the window is closed again");

    // An event the exit interrupted goes in again; the next one waits.
    let mut s = stopped_at(ExitReason::Recall, 0);
    s.inj_info.load(EventInfo::external_interrupt(0x30));
    vcpu::handle(&f.machine, &mut c, &mut s, true);
    assert_eq!(s.inj_info.value(), EventInfo::external_interrupt(0x30));
    assert!(s.inj_info.charged());
    assert_eq!(*f.irq.acked.lock().unwrap(), [0x30]);
    assert_eq!(s.ctrl.value(), Controls(Controls::INTERRUPT_WINDOW));
}

#[test]
fn hlt_waits_for_news_and_an_interrupt_ends_it() {
    let f = fixture(2, MULTIBOOT, None);
    let mut c = ctx(&f, 0);
    let mut s = stopped_at(ExitReason::Hlt, 1);
    assert_eq!(
        vcpu::handle(&f.machine, &mut c, &mut s, true),
        Next::Halt { dead: false }
    );
    assert!(!s.ip.charged());
    f.irq.pending.lock().unwrap().push_back(0xec);
    assert_eq!(
        vcpu::handle(&f.machine, &mut c, &mut s, false),
        Next::Resume
    );
    assert_eq!(s.ip.value(), 0x1001, "continues after the HLT");
    assert_eq!(s.inj_info.value(), EventInfo::external_interrupt(0xec));

    let mut s = stopped_at(ExitReason::Hlt, 1);
    s.flags.load(0x2);
    f.irq.pending.lock().unwrap().push_back(0xec);
    assert_eq!(
        vcpu::handle(&f.machine, &mut c, &mut s, true),
        Next::Halt { dead: true },
        "interrupts off: only an NMI or INIT wakes it"
    );
    *f.irq.nmi.lock().unwrap() = true;
    assert_eq!(
        vcpu::handle(&f.machine, &mut c, &mut s, false),
        Next::Resume
    );
    assert_eq!(s.inj_info.value(), EventInfo::nmi());
}

#[test]
fn init_parks_a_vcpu_and_a_sipi_starts_it_in_real_mode() {
    let f = fixture(2, Entry::Linux(linux_image()), None);
    assert!(!f.machine.entry.starts_at_once(1));
    let mut c = ctx(&f, 1);
    f.irq.startup.lock().unwrap().push_back(Startup::Init);
    let mut s = stopped_at(ExitReason::Recall, 0);
    assert_eq!(vcpu::handle(&f.machine, &mut c, &mut s, true), Next::Park);

    let mut s = VcpuState::default();
    boot::sipi_state(&mut s, 0x9a);
    assert_eq!(s.cs.value().base, 0x9a000);
    assert_eq!(s.cs.value().selector, 0x9a00);
    assert_eq!((s.ip.value(), s.cr0.value(), s.efer.value()), (0, 0x10, 0));
}

fn linux_image() -> linux::LinuxImage {
    linux::LinuxImage {
        entry: 0x10_0200,
        kernel_end: 0x20_0000,
        initrd: None,
    }
}

#[test]
fn apic_msrs_go_to_the_controller_and_unknown_ones_raise_gp_once_logged() {
    let f = fixture(1, MULTIBOOT, None);
    let mut c = ctx(&f, 0);
    let rdmsr = |index| {
        ExitReason::Msr(MsrAccess {
            index,
            write: false,
        })
    };
    let mut s = stopped_at(rdmsr(0x802), 2);
    s.rcx.load(0x802);
    vcpu::handle(&f.machine, &mut c, &mut s, true);
    assert_eq!((s.rax.value(), s.rdx.value()), (0x5678_9abc, 0x1234));
    assert_eq!(s.ip.value(), 0x1002);

    let mut s = stopped_at(
        ExitReason::Msr(MsrAccess {
            index: 0x80b,
            write: true,
        }),
        2,
    );
    s.rax.load(0);
    vcpu::handle(&f.machine, &mut c, &mut s, true);
    assert_eq!(*f.irq.msrs.lock().unwrap(), [(0x80b, 0)]);
    assert_eq!(s.ip.value(), 0x1002);

    for _ in 0..2 {
        let mut s = stopped_at(rdmsr(0x1234_5678), 2);
        vcpu::handle(&f.machine, &mut c, &mut s, true);
        assert_eq!(s.inj_info.value(), EventInfo::exception(13, true));
        assert!(!s.ip.charged());
    }
    let warned = f.machine.warned.lock().unwrap();
    assert_eq!(warned.iter().filter(|(k, _)| *k == "msr").count(), 1);
}

#[test]
fn a_guest_write_to_its_tsc_moves_the_tsc_deadline_timer_too() {
    let f = fixture(1, MULTIBOOT, None);
    let mut c = ctx(&f, 0);
    let wrmsr_tsc = |value: u64| {
        let mut s = stopped_at(
            ExitReason::Msr(MsrAccess {
                index: 0x10,
                write: true,
            }),
            2,
        );
        s.rcx.load(0x10);
        s.tsc.load(1_000_000);
        s.tsc_offset.load(7); // the backend's offset counts from elsewhere
        s.rax.load(value & 0xffff_ffff);
        s.rdx.load(value >> 32);
        s
    };
    let mut s = wrmsr_tsc(1_000_500);
    vcpu::handle(&f.machine, &mut c, &mut s, true);
    assert_eq!(
        s.tsc_offset.value(),
        507,
        "the backend's offset moves by 500"
    );
    let mut s = wrmsr_tsc(999_000);
    vcpu::handle(&f.machine, &mut c, &mut s, true);
    assert_eq!(
        f.irq.tsc_offsets.lock().unwrap().as_slice(),
        [(0, 500), (0, 500u64.wrapping_sub(1_000))],
        "the interrupt controllers see the guest TSC minus the host's"
    );
}

#[test]
fn cpuid_exits_answer_from_the_platform_table() {
    let f = fixture(2, MULTIBOOT, None);
    let mut c = ctx(&f, 1);
    let mut s = stopped_at(ExitReason::Cpuid, 2);
    s.rax.load(1);
    vcpu::handle(&f.machine, &mut c, &mut s, true);
    assert_eq!(s.rbx.value() >> 24, 1, "APIC ID of vCPU 1");
    assert_ne!(s.rcx.value() & (1 << 31), 0, "hypervisor bit");
    assert_eq!(s.ip.value(), 0x1002);
}

#[test]
fn a_triple_fault_report_walks_the_code_and_double_fault_gate_in_guest_ram() {
    let f = fixture(1, MULTIBOOT, None);
    let mut s = stopped_at(ExitReason::Shutdown, 0);
    // 4-level tables at 0x20000: linear 0x1000 (RIP) maps to 0x5000; the IDT
    // at 0x40_0000 lies in a 2 MiB region whose directory entry is absent.
    let ram = &f.machine.ram;
    for (gpa, entry) in [
        (0x20000u64, 0x21003u64),
        (0x21000, 0x22003),
        (0x22000, 0x23003),
        (0x23008, 0x5003),
    ] {
        ram.write_obj(entry, GuestAddress(gpa)).unwrap();
    }
    s.cr3.load(0x20000);
    s.idtr.load(vcpu_api::TableRegister {
        limit: 0xfff,
        base: 0x40_0000,
    });
    let [code, gate] = crate::emulate::crash_walks(&f.machine, &mut s);
    assert_eq!(code.result, Ok(0x5000));
    assert_eq!(
        code.to_string(),
        "0x1000: [0x20000]=0x21003 [0x21000]=0x22003 [0x22000]=0x23003 [0x23008]=0x5003 -> 0x5000"
    );
    assert_eq!(
        gate.to_string(),
        "0x400080: [0x20000]=0x21003 [0x21000]=0x22003 [0x22010]=0x0 -> exception 14 (error code 0x0)"
    );
    // Reading changed nothing: no accessed bits were set.
    assert_eq!(ram.read_obj::<u64>(GuestAddress(0x20000)).unwrap(), 0x21003);
}

#[test]
fn triple_faults_floods_and_unknown_exits_end_the_vm_with_a_reason() {
    let f = fixture(1, MULTIBOOT, None);
    let mut c = ctx(&f, 0);
    let mut s = stopped_at(ExitReason::Shutdown, 0);
    s.cr3.load(0x9000);
    s.inj_info.load(EventInfo::exception(14, true));
    assert_eq!(vcpu::handle(&f.machine, &mut c, &mut s, true), Next::Stop);
    match f.machine.life.end() {
        Some(End::TripleFault { vcpu: 0, state }) => {
            assert_eq!(
                (state.rip, state.cr3, state.interrupted_event),
                (0x1000, 0x9000, 0x8000_0b0e)
            );
            let report = state.to_string();
            assert!(
                report.contains("RIP=0x1000")
                    && report.contains("CR3=0x9000")
                    && report.contains("interrupted event=0x80000b0e"),
                "the report shows the registers at the fault: {report}"
            );
        }
        other => panic!("expected a triple fault of vCPU 0, got {other:?}"),
    }

    let f = fixture(1, MULTIBOOT, Some(3));
    let mut c = ctx(&f, 0);
    for _ in 0..3 {
        let mut s = stopped_at(ExitReason::Recall, 0);
        assert_eq!(vcpu::handle(&f.machine, &mut c, &mut s, true), Next::Resume);
    }
    let mut s = stopped_at(ExitReason::Recall, 0);
    assert_eq!(vcpu::handle(&f.machine, &mut c, &mut s, true), Next::Stop);
    assert_eq!(
        f.machine.life.end(),
        Some(End::ExitFlood { exits: 4, limit: 3 })
    );
    assert_eq!(f.machine.exit_counters().get("recall"), 4);

    let f = fixture(1, MULTIBOOT, None);
    let mut c = ctx(&f, 0);
    let mut s = stopped_at(ExitReason::TaskSwitch, 0);
    assert_eq!(vcpu::handle(&f.machine, &mut c, &mut s, true), Next::Stop);
    assert!(f
        .machine
        .life
        .end()
        .unwrap()
        .to_string()
        .contains("TaskSwitch"));
}

// ---------------------------------------------------------------- the loop

type Step = Box<dyn FnMut(&mut VcpuState) + Send>;

/// A backend that plays a script of exits and records each resumed state.
struct Scripted {
    script: VecDeque<Step>,
    resumed: Arc<Mutex<Vec<VcpuState>>>,
}

#[derive(Clone)]
struct NoRecall;

impl Recall for NoRecall {
    fn recall(&self) {}
}

impl Backend for Scripted {
    type Recaller = NoRecall;

    fn run(&mut self, s: &mut VcpuState) -> Result<(), BackendError> {
        self.resumed.lock().unwrap().push(s.clone());
        let mut step = self.script.pop_front().ok_or(BackendError::Dead)?;
        s.ip_len.load(0);
        s.inj_info.load(EventInfo::NONE);
        step(s);
        Ok(())
    }
    fn recaller(&self) -> NoRecall {
        NoRecall
    }
    fn on_handler_thread(&self) -> bool {
        true
    }
}

fn exit_at(reason: ExitReason, ip_len: u64) -> Step {
    Box::new(move |s: &mut VcpuState| {
        s.exit = Exit {
            reason,
            raw: RawExit::Synthetic,
        };
        s.ip_len.load(ip_len);
    })
}

#[test]
fn the_loop_starts_the_bsp_at_the_kernel_and_ends_on_a_power_event() {
    let f = fixture(1, Entry::Linux(linux_image()), None);
    let life = f.machine.life.clone();
    let mut power_off: Step = Box::new(move |s: &mut VcpuState| {
        s.exit = Exit {
            reason: ExitReason::Recall,
            raw: RawExit::Synthetic,
        };
        life.stop(End::PowerOff); // as the ACPI PM block does on S5
    });
    let resumed = Arc::new(Mutex::new(Vec::new()));
    let backend = Scripted {
        script: VecDeque::from([
            exit_at(io(DEVICE_PORT as u16, 1, Direction::Out), 1),
            Box::new(move |s: &mut VcpuState| power_off(s)) as Step,
        ]),
        resumed: resumed.clone(),
    };
    vcpu::run(&f.machine, 0, &mut Vcpu::new(backend));
    let counters = f.machine.vcpu_exit_counters(0);
    assert_eq!(f.machine.life.end(), Some(End::PowerOff));
    assert_eq!(counters.get("startup"), 1);
    assert_eq!(counters.get("io"), 1);
    let resumed = resumed.lock().unwrap();
    let first = &resumed[0];
    assert_eq!(first.ip.value(), 0x10_0200);
    assert_eq!(first.rsi.value(), linux::BOOT_PARAMS);
    assert_eq!(first.cr3.value(), linux::PML4);
    assert_eq!(first.efer.value() & 0x500, 0x500, "long mode");
    assert_eq!(first.cs.value().selector, linux::CODE_SELECTOR);
    assert_ne!(first.tsc.value(), 0, "the TSC starts at the host's");
    assert_eq!(resumed.len(), 2);
}

#[test]
fn an_ap_waits_for_its_sipi_and_every_vcpu_idle_ends_the_vm() {
    let f = Arc::new(fixture(2, Entry::Linux(linux_image()), None));
    f.irq.startup.lock().unwrap().push_back(Startup::Sipi(0x9a));
    let resumed = Arc::new(Mutex::new(Vec::new()));
    let backend = Scripted {
        script: VecDeque::from([exit_at(ExitReason::Hlt, 1)]),
        resumed: resumed.clone(),
    };
    let g = f.clone();
    let ap = std::thread::spawn(move || vcpu::run(&g.machine, 1, &mut Vcpu::new(backend)));
    // vCPU 0 halts with interrupts off; the AP halts too: nothing is left.
    let bsp = Scripted {
        script: VecDeque::from([Box::new(|s: &mut VcpuState| {
            s.exit = Exit {
                reason: ExitReason::Hlt,
                raw: RawExit::Synthetic,
            };
            s.ip_len.load(1);
            s.flags.load(0x2);
        }) as Step]),
        resumed: Arc::new(Mutex::new(Vec::new())),
    };
    vcpu::run(&f.machine, 0, &mut Vcpu::new(bsp));
    ap.join().unwrap();
    let first = &resumed.lock().unwrap()[0];
    assert_eq!(first.cs.value().base, 0x9a000, "started at the SIPI vector");
    assert_eq!(f.machine.life.end(), Some(End::AllHalted));
}

// ---------------------------------------------------------------- restart

/// A step that exits with a recall after `act` (a device's power event).
fn recall_after(act: impl FnOnce() + Send + 'static) -> Step {
    let mut act = Some(act);
    Box::new(move |s: &mut VcpuState| {
        s.exit = Exit {
            reason: ExitReason::Recall,
            raw: RawExit::Synthetic,
        };
        if let Some(act) = act.take() {
            act();
        }
    })
}

#[test]
fn a_reset_restarts_every_vcpu_at_power_on_with_devices_and_ram_reloaded() {
    let f = Arc::new(fixture(2, Entry::Linux(linux_image()), None));
    f.irq.startup.lock().unwrap().push_back(Startup::Sipi(0x9a));
    let ap_resumed = Arc::new(Mutex::new(Vec::new()));
    let ap = Scripted {
        script: VecDeque::from([exit_at(ExitReason::Hlt, 1)]),
        resumed: ap_resumed.clone(),
    };
    let g = f.clone();
    let ap = std::thread::spawn(move || vcpu::run(&g.machine, 1, &mut Vcpu::new(ap)));
    while ap_resumed.lock().unwrap().is_empty() {
        std::thread::yield_now(); // the AP runs once after its SIPI, then halts
    }

    let (reset, off) = (f.machine.life.clone(), f.machine.life.clone());
    let resumed = Arc::new(Mutex::new(Vec::new()));
    let bsp = Scripted {
        script: VecDeque::from([
            exit_at(io(DEVICE_PORT as u16, 1, Direction::Out), 1),
            // The reset register's power event, on this vCPU's thread.
            recall_after(move || reset.reset()),
            recall_after(move || off.stop(End::PowerOff)),
        ]),
        resumed: resumed.clone(),
    };
    vcpu::run(&f.machine, 0, &mut Vcpu::new(bsp));
    ap.join().unwrap();
    let (counters, ap_counters) = (
        f.machine.vcpu_exit_counters(0),
        f.machine.vcpu_exit_counters(1),
    );

    assert_eq!(f.machine.life.end(), Some(End::PowerOff));
    assert_eq!(f.machine.life.restart.restarts(), 1);
    assert_eq!(f.reloads.load(Ordering::SeqCst), 1, "RAM reloaded once");
    let mark: u32 = f.machine.ram.read_obj(GuestAddress(RELOAD_MARK)).unwrap();
    assert_eq!(mark, 1);
    assert!(
        f.device.lock().unwrap().0.is_empty(),
        "the device was reset"
    );
    let resumed = resumed.lock().unwrap();
    assert_eq!(resumed.len(), 3, "start, after the I/O, after the restart");
    let again = &resumed[2];
    assert_eq!(again.ip.value(), 0x10_0200, "the BSP at the kernel's entry");
    assert_eq!(again.rsi.value(), linux::BOOT_PARAMS);
    assert_eq!(again.cr3.value(), linux::PML4);
    assert!(again.ip.charged() && again.cr0.charged() && again.efer.charged());
    assert!(
        resumed[0].fpu.charged(),
        "the FPU's reset image at the first start"
    );
    assert!(
        !again.fpu.charged(),
        "a vCPU that ran keeps its FPU (Tern cannot write it)"
    );
    assert_eq!(counters.get("startup"), 1, "the restart is no exit");
    assert_eq!(counters.get("io"), 1);
    // The AP ran after its SIPI and halted; after the restart it waits for
    // a SIPI again (none comes), so it never runs again.
    assert_eq!(ap_resumed.lock().unwrap().len(), 1);
    assert_eq!(ap_counters.get("hlt"), 1);
}

#[test]
fn on_reset_exit_ends_the_vm_and_a_reset_loop_ends_it_too() {
    let life = Lifecycle::new(1, OnReset::Exit);
    life.reset();
    assert_eq!(life.end(), Some(End::Reset));
    assert!(!life.restart_requested());
    assert_eq!(End::Reset.exit_status(), 1);

    let life = Lifecycle::new(1, OnReset::Restart);
    for restart in 1..crate::restart::RESET_LOOP_RESETS as u64 {
        life.reset();
        assert!(life.restart_requested(), "reset {restart}");
        life.reset(); // a second reset while the first is under way
        assert!(life.restart.gather(1, || false, |n| assert_eq!(n, restart)));
        assert_eq!(life.end(), None);
    }
    life.reset();
    let end = life.end().unwrap();
    assert!(
        matches!(
            end,
            End::ResetLoop {
                resets: 10,
                seconds: 60
            }
        ),
        "{end:?}"
    );
    let message = end.to_string();
    assert!(
        message.contains("reset loop") && message.contains("on-reset"),
        "{message}"
    );
}

// ---------------------------------------------------------------- boot

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("vmm-pc-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A bzImage shape: 4 setup sectors plus the boot sector, the setup header
/// at 0x1f1, then `payload` bytes of "kernel".
fn fake_bzimage(version: u16, xloadflags: u16) -> Vec<u8> {
    let mut image = vec![0u8; 5 * 512 + 0x3000];
    image[0x1f1] = 4; // setup_sects
    image[0x1fe..0x200].copy_from_slice(&0xaa55u16.to_le_bytes());
    image[0x202..0x206].copy_from_slice(b"HdrS");
    image[0x206..0x208].copy_from_slice(&version.to_le_bytes());
    image[0x211] = 1; // loadflags: LOADED_HIGH
    image[0x214..0x218].copy_from_slice(&0x10_0000u32.to_le_bytes()); // code32_start
    image[0x22c..0x230].copy_from_slice(&0x7fff_ffffu32.to_le_bytes()); // initrd_addr_max
    image[0x236..0x238].copy_from_slice(&xloadflags.to_le_bytes());
    image[0x238..0x23c].copy_from_slice(&2048u32.to_le_bytes()); // cmdline_size
    image[0x260..0x264].copy_from_slice(&0x40_0000u32.to_le_bytes()); // init_size
    for (i, b) in image[5 * 512..].iter_mut().enumerate() {
        *b = i as u8 ^ 0x5a;
    }
    image
}

#[test]
fn linux_boot_writes_kernel_initrd_cmdline_zero_page_and_identity_map() {
    let ram = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), RAM)]).unwrap();
    let layout = MemoryLayout::new(RAM as u64).unwrap();
    let dir = temp_dir("linux-boot");
    let (kernel, initrd) = (dir.join("bzImage"), dir.join("initrd"));
    let image = fake_bzimage(0x20f, 1);
    std::fs::write(&kernel, &image).unwrap();
    std::fs::write(&initrd, vec![0xcc; 5000]).unwrap();
    let loaded = linux::load(
        &ram,
        &layout,
        &kernel,
        Some(&initrd),
        "console=ttyS0 quiet",
        Some(0xe0000),
    )
    .unwrap();
    assert_eq!(loaded.entry, 0x10_0200);
    assert_eq!(loaded.kernel_end, 0x50_0000, "code32_start + init_size");
    let (start, size) = loaded.initrd.unwrap();
    assert_eq!(
        (start % 0x1000, size, start + size <= RAM as u64),
        (0, 5000, true)
    );
    assert!(start >= loaded.kernel_end);

    let mut kernel_bytes = vec![0u8; 0x3000];
    ram.read_slice(&mut kernel_bytes, GuestAddress(0x10_0000))
        .unwrap();
    assert_eq!(kernel_bytes, image[5 * 512..]);
    let mut cmdline = [0u8; 20];
    ram.read_slice(&mut cmdline, GuestAddress(linux::CMDLINE))
        .unwrap();
    assert_eq!(&cmdline, b"console=ttyS0 quiet\0");

    let params: linux_loader::loader::bootparam::boot_params =
        ram.read_obj(GuestAddress(linux::BOOT_PARAMS)).unwrap();
    let hdr = params.hdr;
    let (cmd_line_ptr, ramdisk_image, ramdisk_size, loader) = (
        hdr.cmd_line_ptr,
        hdr.ramdisk_image,
        hdr.ramdisk_size,
        hdr.type_of_loader,
    );
    assert_eq!(cmd_line_ptr as u64, linux::CMDLINE);
    assert_eq!((ramdisk_image as u64, ramdisk_size), (start, 5000));
    assert_eq!(loader, 0xff);
    let rsdp = params.acpi_rsdp_addr;
    assert_eq!(rsdp, 0xe0000);
    let e820 = layout.e820();
    assert_eq!(params.e820_entries as usize, e820.len());
    let table = params.e820_table;
    for (ours, theirs) in e820.iter().zip(table.iter()) {
        let (addr, size, kind) = (theirs.addr, theirs.size, theirs.r#type);
        assert_eq!((addr, size, kind), (ours.addr, ours.size, ours.kind as u32));
    }

    // 4 GiB identity map with 2 MiB pages: PML4[0] -> PDPT[0..4] -> PDs.
    let read = |gpa: u64| ram.read_obj::<u64>(GuestAddress(gpa)).unwrap();
    let pdpt = read(linux::PML4) & !0xfff;
    assert_eq!(read(linux::PML4) & 3, 3);
    assert_eq!(read(linux::PML4 + 8), 0);
    for gib in 0..4u64 {
        let pd = read(pdpt + gib * 8) & !0xfff;
        for i in [0u64, 1, 511] {
            assert_eq!(read(pd + i * 8), (gib << 30 | i << 21) | 0x83);
        }
    }
    assert_eq!(read(pdpt + 4 * 8), 0);
    assert_eq!(
        read(linux::GDT + 0x10),
        0x00af_9b00_0000_ffff,
        "64-bit code"
    );
}

#[test]
fn bad_kernels_and_small_memories_are_refused_with_reasons() {
    let ram = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), RAM)]).unwrap();
    let layout = MemoryLayout::new(RAM as u64).unwrap();
    let dir = temp_dir("bad-kernels");
    let path = dir.join("k");
    let load = |image: &[u8], cmdline: &str| {
        std::fs::write(&path, image).unwrap();
        linux::load(&ram, &layout, &path, None, cmdline, None)
            .unwrap_err()
            .to_string()
    };
    let e = load(&fake_bzimage(0x20f, 1)[..0x100], "");
    assert!(
        e.contains("not a bootable kernel") && e.contains("bzImage"),
        "{e}"
    );
    let mut promised = fake_bzimage(0x20f, 1);
    promised[0x1f4..0x1f8].copy_from_slice(&0x400u32.to_le_bytes()); // syssize: 16 KiB
    let e = load(&promised[..5 * 512 + 0x2000], "");
    assert!(
        e.contains("truncated") && e.contains("promises 18944 bytes, the file has 10752"),
        "{e}"
    );
    let e = load(&fake_bzimage(0x20a, 1), "");
    assert!(e.contains("64-bit"), "{e}");
    let e = load(&fake_bzimage(0x20f, 0), "");
    assert!(e.contains("64-bit"), "{e}");
    let e = load(&fake_bzimage(0x20f, 1), &"x".repeat(3000));
    assert!(e.contains("command line is 3000 bytes"), "{e}");
    let mut huge = fake_bzimage(0x20f, 1);
    huge[0x260..0x264].copy_from_slice(&0x200_0000u32.to_le_bytes());
    let e = load(&huge, "");
    assert!(e.contains("too small") && e.contains("more memory"), "{e}");
    let missing = linux::load(&ram, &layout, &dir.join("none"), None, "", None).unwrap_err();
    assert!(missing.to_string().contains("cannot read"), "{missing}");
}

// ---------------------------------------------------------------- wiring

#[test]
fn devices_of_a_configuration_are_wired_to_their_ports_and_pages() {
    let dir = temp_dir("wiring");
    std::fs::write(dir.join("vmlinuz"), b"k").unwrap();
    std::fs::write(dir.join("disk.img"), vec![7u8; 4096]).unwrap();
    let file = dir.join("vm.toml");
    let text = "memory = \"64M\"\ncpus = 2\n[boot]\nkernel = \"vmlinuz\"\n\
                [[disk]]\npath = \"disk.img\"\nmode = \"copy-on-write\"\n\
                [[console]]\ndevice = \"com1\"\noutput = \"none\"\n";
    let config = vmm_platform::config::VmConfig::parse(text, &file).unwrap();
    let layout = config.layout();
    let ram = Arc::new(GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 64 << 20)]).unwrap());
    let life = Lifecycle::new(2, OnReset::Restart);
    let devices = crate::devices::build(&config, &layout, &ram, &life, 1_000_000_000).unwrap();
    for port in [
        0x20, 0xa0, 0x40, 0x61, 0x70, 0x3f8, 0x600, 0xcf9, 0x60, 0x64, 0xf4, 0xcfc,
    ] {
        assert!(devices.pio.find(port).is_some(), "port {port:#x}");
    }
    for gpa in [
        0xfec0_0000,
        0xf000_0000,
        0xc000_0000,
        layout.pci_mmio64().start,
    ] {
        assert!(devices.mmio.find(gpa).is_some(), "MMIO {gpa:#x}");
    }
    // The disk is PCI device 1: virtio vendor 0x1af4, block device 0x1042.
    let config_space = |device: u32, offset: u32| {
        let address = 0x8000_0000 | device << 11 | offset;
        devices.pio.write(0xcf8, &address.to_le_bytes());
        let mut data = [0u8; 4];
        devices.pio.read(0xcfc, &mut data);
        u32::from_le_bytes(data)
    };
    assert_eq!(config_space(1, 0), 0x1042_1af4);
    assert_eq!(config_space(2, 0), 0xffff_ffff, "no second device");
    let mut data = [0u8; 4];
    devices.mmio.read(0xf000_8000, &mut data); // ECAM 00:01.0
    assert_eq!(u32::from_le_bytes(data), 0x1042_1af4);
    // ACPI tables with the RSDP where the kernel is told to look.
    let rsdp = devices.rsdp.unwrap();
    let mut signature = [0u8; 8];
    ram.read_slice(&mut signature, GuestAddress(rsdp)).unwrap();
    assert_eq!(&signature, b"RSD PTR ");
    // The RTC's IRQ 8 reaches the PIC's slave (vectors 0x30/0x38 as Linux
    // programs them): PF latches at 1024 Hz, enabling PIE raises it.
    for (base, vector, icw3) in [(0x20u64, 0x30u8, 4u8), (0xa0, 0x38, 2)] {
        for byte in [0x11, vector, icw3, 0x01] {
            let port = if byte == 0x11 { base } else { base + 1 };
            devices.pio.write(port, &[byte]);
        }
    }
    devices.pio.write(0x21, &[!0x04]);
    devices.pio.write(0xa1, &[!0x01]);
    std::thread::sleep(std::time::Duration::from_millis(2));
    devices.pio.write(0x70, &[0x0b]);
    devices.pio.write(0x71, &[0x42]); // PIE, 24-hour
    assert_eq!(devices.irq.next_interrupt(0), Some(0x38), "IRQ 8");
    // The reset register asks for a restart (the VM goes on).
    devices.pio.write(0xcf9, &[0x06]);
    assert!(life.restart_requested());
    assert_eq!(life.end(), None);
    // An S5 write ends the VM with a power-off.
    devices
        .pio
        .write(0x604, &((5u16 << 10) | (1 << 13)).to_le_bytes());
    assert_eq!(life.end(), Some(End::PowerOff));
}

/// A writer a test reads back (a milestone report).
#[derive(Clone, Default)]
pub(crate) struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    pub(crate) fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

mod milestones;
mod test_device;
