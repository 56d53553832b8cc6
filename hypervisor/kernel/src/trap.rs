//! Kernel entry glue: takes the big kernel lock, saves the interrupted user
//! state, handles the hypercall, exception or interrupt, and leaves through the
//! scheduler. Also owns the platform's interrupt routing (I/O APICs).

use crate::arch::entry::{self, Frame, SYSCALL_VECTOR};
use crate::arch::{apic, cpu, phys, smp};
use crate::hypercall::Outcome;
use crate::object::{Kernel, PdId};
use crate::sched::Next;
use alloc::alloc::{alloc_zeroed, dealloc, Layout};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

/// The big kernel lock: all kernel state, one CPU in the kernel at a time.
pub static KERNEL: spin::Mutex<Option<Kernel>> = spin::Mutex::new(None);

/// Takes the big kernel lock. While another CPU holds it, this one answers its
/// shootdown requests: that CPU may be waiting for them (see `shootdown`).
pub fn lock_kernel() -> spin::MutexGuard<'static, Option<Kernel>> {
    loop {
        if let Some(guard) = KERNEL.try_lock() {
            return guard;
        }
        while KERNEL.is_locked() {
            crate::shootdown::acknowledge();
            core::hint::spin_loop();
        }
    }
}

static ONLINE_MASK: AtomicU64 = AtomicU64::new(0);

pub fn set_online(cpu: usize) {
    ONLINE_MASK.fetch_or(1 << cpu, Ordering::AcqRel);
}

pub fn cpu_online(cpu: usize) -> bool {
    cpu < 64 && ONLINE_MASK.load(Ordering::Acquire) & (1 << cpu) != 0
}

/// Interrupt routing of the platform, fixed after boot.
pub struct Platform {
    pub ioapics: Vec<apic::IoApic>,
    pub overrides: [Option<crate::acpi::Override>; 16],
}

pub static PLATFORM: spin::Once<Platform> = spin::Once::new();

/// The GSI and polarity/trigger of user interrupt line `n` (ISA IRQs below 16).
pub fn line_to_gsi(n: u32) -> Option<(u32, bool, bool)> {
    let p = PLATFORM.get()?;
    if n < 16 {
        if n == 2 {
            return None; // the cascade; GSI 2 is usually the PIT's override target
        }
        return Some(match p.overrides[n as usize] {
            Some(o) => (o.gsi, o.level, o.active_low),
            None => (n, false, false),
        });
    }
    let claimed = p
        .overrides
        .iter()
        .flatten()
        .any(|o| o.gsi == n && o.irq as u32 != n);
    (!claimed).then_some((n, true, true))
}

fn gsi_mode(gsi: u32) -> (bool, bool) {
    let p = PLATFORM.get();
    if let Some(o) = p.and_then(|p| p.overrides.iter().flatten().find(|o| o.gsi == gsi)) {
        return (o.level, o.active_low);
    }
    if gsi < 16 {
        (false, false)
    } else {
        (true, true)
    }
}

fn ioapic_for(gsi: u32) -> Option<apic::IoApic> {
    PLATFORM
        .get()?
        .ioapics
        .iter()
        .find(|io| gsi >= io.gsi_base && gsi < io.gsi_base + io.count)
        .copied()
}

pub fn route_gsi(gsi: u32, apic_id: u32) {
    if let Some(io) = ioapic_for(gsi) {
        let (level, low) = gsi_mode(gsi);
        io.route(
            gsi,
            apic::VECTOR_GSI_BASE + gsi as u8,
            apic_id,
            level,
            low,
            false,
        );
    }
}

pub fn unmask_gsi(gsi: u32) {
    if let Some(io) = ioapic_for(gsi) {
        if gsi_mode(gsi).0 {
            io.set_mask(gsi, false);
        }
    }
}

fn page_layout() -> Layout {
    Layout::from_size_align(4096, 4096).expect("valid layout")
}

/// A zeroed 4 KiB page of kernel memory; its physical address.
pub fn alloc_page() -> Option<u64> {
    // SAFETY: the layout has non-zero size.
    let p = unsafe { alloc_zeroed(page_layout()) };
    (!p.is_null()).then(|| phys::to_phys(p as u64))
}

pub fn free_page(pa: u64) {
    // SAFETY: `pa` came from `alloc_page` and is no longer mapped anywhere.
    unsafe { dealloc(phys::to_virt(pa) as *mut u8, page_layout()) }
}

pub fn pd_name(_k: &Kernel, pd: PdId) -> u32 {
    pd.index
}

/// Enters the scheduler on this CPU for the first time.
pub fn start_scheduling() -> ! {
    let cpu = smp::cpu_id();
    let next = {
        let mut guard = lock_kernel();
        crate::sched::dispatch(guard.as_mut().expect("kernel state"), cpu)
    };
    leave(next)
}

/// Leaves the kernel: into user mode, or into the idle loop.
fn leave(next: Next) -> ! {
    match next {
        Next::User(regs) => entry::return_to_user(&regs),
        Next::Idle => entry::run_on_fresh_stack(smp::kstack_top() - 512, idle),
    }
}

extern "C" fn idle() -> ! {
    loop {
        cpu::enable_and_halt();
    }
}

/// Saves the user state of the EC that was running on this CPU.
fn save_user(k: &mut Kernel, cpu: usize, frame: &Frame) -> Option<crate::object::EcId> {
    let ec = k.sched.cpus[cpu].running?;
    let e = k.ecs.get_mut(ec)?;
    e.regs = *frame;
    crate::sched::account(k, cpu);
    Some(ec)
}

#[no_mangle]
extern "C" fn syscall_handler(frame: &mut Frame) -> ! {
    let cpu = smp::cpu_id();
    let mut guest = None;
    let next = {
        let mut guard = lock_kernel();
        let k = guard.as_mut().expect("kernel state");
        if let Some(ec) = save_user(k, cpu, frame) {
            debug_assert_eq!(frame.vector, SYSCALL_VECTOR);
            let native = frame.rax >> 32 == hyper_abi::NATIVE_TAG >> 32;
            let reflect = !native && k.ecs.get(ec).is_some_and(|e| e.reflect_syscalls);
            let mut regs = *frame;
            regs.rax &= if native { 0xffff_ffff } else { u64::MAX };
            if reflect {
                let e = k.ecs.get_mut(ec).expect("running EC exists");
                e.regs.vector = hyper_abi::exc::SYSCALL;
                e.regs.error = 0;
                e.fault_addr = 0;
                crate::ipc::exception(k, ec);
            } else {
                match crate::hypercall::handle(k, ec, &regs) {
                    Outcome::Done(s, a, b) => {
                        if let Some(e) = k.ecs.get_mut(ec) {
                            e.regs.rax = s as u64;
                            e.regs.rdi = a;
                            e.regs.rsi = b;
                        }
                    }
                    Outcome::Blocked => {}
                    Outcome::Guest(entry) => guest = Some((ec, entry)),
                }
            }
        }
        if guest.is_some() {
            None
        } else {
            Some(crate::sched::dispatch(k, cpu))
        }
    };
    let next = match (next, guest) {
        (Some(next), _) => next,
        (None, Some((caller, mut entry))) => {
            // the guest runs without the kernel lock
            let exit = crate::vcpu::enter(&mut entry);
            let mut guard = lock_kernel();
            let k = guard.as_mut().expect("kernel state");
            let answered = crate::vcpu::finish(k, cpu, caller, entry, exit);
            if answered {
                // the caller goes on with the exit: no scheduling decision is due
                crate::sched::resume(k, cpu, caller)
            } else {
                // the guest ran on the caller's time
                crate::sched::account(k, cpu);
                crate::sched::dispatch(k, cpu)
            }
        }
        (None, None) => Next::Idle,
    };
    leave(next)
}

#[no_mangle]
extern "C" fn trap_entry(frame: &mut Frame) -> ! {
    let from_user = frame.cs & 3 == 3;
    let vector = frame.vector;
    if !from_user && vector < 32 {
        kernel_fault(frame);
    }
    if vector == apic::VECTOR_SPURIOUS as u64 {
        if from_user {
            entry::return_to_user(frame);
        }
        leave(Next::Idle);
    }
    let cpu = smp::cpu_id();
    let next = {
        let mut guard = lock_kernel();
        let k = guard.as_mut().expect("kernel state");
        let ec = if from_user {
            save_user(k, cpu, frame)
        } else {
            None
        };
        if vector < 32 {
            if let Some(ec) = ec {
                if let Some(e) = k.ecs.get_mut(ec) {
                    e.fault_addr = if vector == 14 { cpu::read_cr2() } else { 0 };
                }
                crate::ipc::exception(k, ec);
            }
        } else if vector >= apic::VECTOR_GSI_BASE as u64 && vector < apic::VECTOR_TIMER as u64 {
            let gsi = (vector - apic::VECTOR_GSI_BASE as u64) as u32;
            if gsi_mode(gsi).0 {
                if let Some(io) = ioapic_for(gsi) {
                    io.set_mask(gsi, true);
                }
            }
            apic::eoi();
            if let Some(sm) = k.gsi_sms.get(gsi as usize).copied().flatten() {
                crate::ipc::sm_up(k, sm);
            }
        } else {
            apic::eoi();
        }
        crate::sched::dispatch(k, cpu)
    };
    leave(next)
}

fn kernel_fault(frame: &Frame) -> ! {
    crate::kprintln!(
        "KERNEL FAULT: vector {} error {:#x} at {:#x} cr2 {:#x} rsp {:#x} on CPU {}",
        frame.vector,
        frame.error,
        frame.rip,
        cpu::read_cr2(),
        frame.rsp,
        smp::cpu_id()
    );
    cpu::halt_forever()
}
