//! `--shootdown`: a revocation reaches the other CPUs before it returns (needs
//! two CPUs). Two checks of [`ROUNDS`] rounds each. A writer on the other CPU
//! increments a counter in a page through a second mapping of it, one instruction
//! per increment; this thread revokes that mapping, reads the counter through its
//! own, and watches it: after the revoke returned, the counter must not move again
//! (an instruction either completed before the writer's CPU acknowledged, or it
//! faults), and the writer must fault within [`DEADLINE_US`].
//!
//! - **guest**: a real-mode guest loops on `inc dword es:[0]` with ES based at
//!   guest-physical 0x30_0000, where the VMM lent its page; after the revoke the
//!   vCPU must exit with a nested page fault at 0x30_0000.
//! - **host**: a VMM thread loops on `lock xadd` at an address of the pager's
//!   lazy range where the VMM mapped its page a second time (a delegation to
//!   itself); after the revoke the thread faults, the pager maps a fresh zeroed
//!   page, and the thread sees the small value.
//!
//! Before the kernel waited for the other CPU's acknowledgement, the writer went on
//! through its cached translation until the IPI arrived.

use crate::sys::{self, Vm};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use hyper_abi::vcpu::{field, vendor, VcpuState};
use native::println;

/// Rounds of each check.
pub const ROUNDS: u32 = 30;
/// How long a round may take to show what it waits for (writes, the fault).
const DEADLINE_US: u64 = 2_000_000;
/// Writes the writer must have done through a mapping before it is revoked.
const WARM_UP: u64 = 200;

/// Guest-physical page of the lent page; the guest code.
const LENT_GPA: u64 = 0x30_0000;
const CODE_GPA: usize = 0x1000;
/// `inc dword es:[0]; jmp 0x1000` (real mode).
const CODE: [u8; 8] = [0x26, 0x66, 0xff, 0x06, 0x00, 0x00, 0xeb, 0xf8];
/// The VMM page lent to the guest (outside the guest RAM's mapping).
const LENT_VA: u64 = 0x0000_3c00_0000_0000;
/// The VMM page the host writer writes through its second mapping at `ALIAS_VA`
/// (inside the pager's lazy range).
const HOST_VA: u64 = 0x0000_3c00_0001_0000;
const ALIAS_VA: u64 = native::LAZY_BASE + 0x3000_0000;
/// The counter's start value in the host check (a fresh page reads below it).
const BIG: u64 = 1 << 40;

/// Runs both checks; the largest number of writes seen after a revoke returned,
/// per check (0 unless a check failed).
pub fn run() -> Result<(u64, u64), &'static str> {
    let info = native::StartInfo::get();
    if info.cpu_count < 2 {
        return Err("needs two CPUs");
    }
    let other = (info.cpu + 1) % info.cpu_count;
    let guest = guest(other, info.tsc_per_us)?;
    let host = host(other, info.tsc_per_us)?;
    Ok((guest, host))
}

/// Spins until `done` holds; false after `DEADLINE_US`.
fn wait(tsc_per_us: u64, mut done: impl FnMut() -> bool) -> bool {
    let start = native::rdtsc();
    while !done() {
        if native::rdtsc().wrapping_sub(start) > DEADLINE_US * tsc_per_us {
            return false;
        }
        core::hint::spin_loop();
    }
    true
}

/// The counter at `va` (a page of this program).
fn counter(va: u64) -> u64 {
    // SAFETY: `va` is a page this program mapped for its lifetime; aligned.
    unsafe { core::ptr::read_volatile(va as *const u64) }
}

fn is_npf(s: &VcpuState) -> bool {
    match s.exit.vendor {
        vendor::SVM => s.exit.raw == 0x400,
        _ => s.exit.raw & 0xffff == 48,
    }
}

fn guest(cpu: u32, tsc_per_us: u64) -> Result<u64, &'static str> {
    static FAULTS: AtomicU64 = AtomicU64::new(0);
    static RESUME: AtomicU64 = AtomicU64::new(0);
    static FAILED: AtomicBool = AtomicBool::new(false);
    let vm = Vm::create(2 << 20).map_err(|_| "cannot create the VM")?;
    vm.ram()[CODE_GPA..CODE_GPA + CODE.len()].copy_from_slice(&CODE);
    sys::map_memory(LENT_VA, 0).map_err(|_| "no page to lend")?;
    vm.lend_page(LENT_VA, LENT_GPA >> 12)
        .map_err(|_| "cannot lend the page")?;
    let vcpu = vm.vcpu(cpu).map_err(|_| "cannot create the vCPU")?;
    // the handler: runs the guest; after each nested page fault at the lent page it
    // waits for the next round (the guest retries the increment when it resumes)
    sys::spawn(
        cpu,
        alloc::boxed::Box::new(move || {
            let mut charged = 0;
            for round in 0..=ROUNDS as u64 {
                if vcpu.run(charged).is_err() {
                    FAILED.store(true, Ordering::Release);
                    return;
                }
                let s = vcpu.state();
                if round == 0 {
                    // STARTUP
                    s.cs.selector = 0;
                    s.cs.base = 0;
                    s.rip = CODE_GPA as u64;
                    s.es.base = LENT_GPA;
                    // IF set: Bochs 2.7 does not exit a VMX guest with IF clear on
                    // an external interrupt (despite external-interrupt exiting)
                    s.rflags = 0x202;
                    charged = field::SEG | field::RIP;
                    continue;
                }
                charged = 0;
                if !is_npf(s) || s.exit.gpa != LENT_GPA {
                    sys::print_line(&alloc::format!(
                        "vmm-native: shootdown: unexpected exit {:x?}",
                        s.exit
                    ));
                    FAILED.store(true, Ordering::Release);
                    return;
                }
                FAULTS.store(round, Ordering::Release);
                while RESUME.load(Ordering::Acquire) < round {
                    core::hint::spin_loop();
                }
            }
        }),
    )
    .map_err(|_| "cannot start the vCPU thread")?;
    let failed = || FAILED.load(Ordering::Acquire);
    let mut worst = 0;
    for round in 1..=ROUNDS as u64 {
        if round > 1 {
            vm.lend_page(LENT_VA, LENT_GPA >> 12)
                .map_err(|_| "cannot lend the page again")?;
            RESUME.store(round - 1, Ordering::Release);
        }
        let before = counter(LENT_VA);
        if !wait(tsc_per_us, || {
            counter(LENT_VA).wrapping_sub(before) >= WARM_UP || failed()
        }) || failed()
        {
            return Err("the guest does not run");
        }
        vm.take_page(LENT_VA)
            .map_err(|_| "cannot revoke the page")?;
        let at_revoke = counter(LENT_VA);
        if !wait(tsc_per_us, || {
            FAULTS.load(Ordering::Acquire) == round || failed()
        }) || failed()
        {
            return Err("no nested page fault at the revoked page in time");
        }
        let late = counter(LENT_VA).wrapping_sub(at_revoke);
        worst = worst.max(late);
        if late != 0 {
            println!("vmm-native: shootdown: round {round}: the guest wrote the revoked page {late} times after the revoke returned");
            return Err("the guest used the revoked page after the revoke returned");
        }
    }
    RESUME.store(ROUNDS as u64, Ordering::Release);
    vm.destroy();
    Ok(worst)
}

fn host(cpu: u32, tsc_per_us: u64) -> Result<u64, &'static str> {
    /// Set by this thread: the writer may write through the alias.
    static GO: AtomicBool = AtomicBool::new(false);
    /// Set by the writer: it stopped writing (after GO went false).
    static PARKED: AtomicBool = AtomicBool::new(true);
    /// Set by the writer: an increment landed on a fresh page.
    static FRESH: AtomicBool = AtomicBool::new(false);
    static STOP: AtomicBool = AtomicBool::new(false);
    sys::map_memory(HOST_VA, 0).map_err(|_| "no page for the host check")?;
    sys::spawn(
        cpu,
        alloc::boxed::Box::new(move || {
            while !STOP.load(Ordering::Acquire) {
                if !GO.load(Ordering::Acquire) {
                    PARKED.store(true, Ordering::Release);
                    continue;
                }
                PARKED.store(false, Ordering::Release);
                // SAFETY: the alias is mapped while GO is set; after its revocation
                // the pager maps a fresh page there. One `lock xadd`.
                let alias = unsafe { AtomicU64::from_ptr(ALIAS_VA as *mut u64) };
                if alias.fetch_add(1, Ordering::Relaxed) < BIG {
                    FRESH.store(true, Ordering::Release);
                    GO.store(false, Ordering::Release);
                }
            }
        }),
    )
    .map_err(|_| "cannot start the writer thread")?;
    let stop = |e| {
        STOP.store(true, Ordering::Release);
        e
    };
    let mut worst = 0;
    for round in 1..=ROUNDS {
        // the writer is parked: the alias is free (or the pager's fresh page)
        if round > 1 {
            sys::unmap_memory(ALIAS_VA, 1).map_err(|_| stop("the pager's page stays"))?;
        }
        // SAFETY: HOST_VA is this program's page.
        unsafe { core::ptr::write_volatile(HOST_VA as *mut u64, BIG) };
        hyper_abi::syscall::delegate(
            hyper_abi::sel::PD_SELF,
            hyper_abi::Crd::mem(
                HOST_VA >> 12,
                0,
                hyper_abi::mem_rights::R | hyper_abi::mem_rights::W,
            ),
            ALIAS_VA >> 12,
        )
        .map_err(|_| stop("cannot map the page twice"))?;
        FRESH.store(false, Ordering::Release);
        GO.store(true, Ordering::Release);
        if !wait(tsc_per_us, || counter(HOST_VA) - BIG >= WARM_UP) {
            return Err(stop("the writer does not run"));
        }
        hyper_abi::syscall::revoke(
            hyper_abi::Crd::mem(HOST_VA >> 12, 0, hyper_abi::mem_rights::RWX),
            false,
        )
        .map_err(|_| stop("cannot revoke the alias"))?;
        let at_revoke = counter(HOST_VA);
        if !wait(tsc_per_us, || FRESH.load(Ordering::Acquire)) {
            return Err(stop(
                "the writer did not fault at the revoked alias in time",
            ));
        }
        let late = counter(HOST_VA) - at_revoke;
        worst = worst.max(late);
        if late != 0 {
            println!("vmm-native: shootdown: round {round}: the thread wrote the revoked alias {late} times after the revoke returned");
            return Err(stop(
                "a thread used the revoked mapping after the revoke returned",
            ));
        }
        if !wait(tsc_per_us, || PARKED.load(Ordering::Acquire)) {
            return Err(stop("the writer does not stop"));
        }
    }
    STOP.store(true, Ordering::Release);
    Ok(worst)
}
