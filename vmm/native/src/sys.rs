//! The Tern resources a VMM needs: selectors, guest RAM (memory from the roottask,
//! delegated into the VM's guest-physical space), VMs and vCPUs with their state
//! pages, boot modules, and threads. A thin layer over the hypercalls in
//! `hyper_abi` and the parent protocol; with `platform`'s guest RAM, the only place
//! with `unsafe` code.
//!
//! Threads: every thread runs on its own stack inside a 1 MiB slot of
//! [`STACK_REGION`] (the main thread below `native::STACK_TOP`), so the slot of the
//! stack pointer identifies the thread ([`thread_id`]) and finds its UTCB.

use alloc::boxed::Box;
use core::sync::atomic::{AtomicU64, Ordering};
use hyper_abi::vcpu::VcpuState;
use hyper_abi::{mem_rights, syscall, Crd, EcKind, EcOp, Status};

/// Where guest RAM is mapped in the VMM (aligned for any order up to 2^35 pages).
const RAM_VA: u64 = 0x0000_2000_0000_0000;
/// Where vCPU state pages are mapped in the VMM.
const STATE_VA: u64 = 0x0000_3000_0000_0000;
/// Kernel memory given to each VM (its PD object).
const VM_KMEM: u64 = 16 * 1024;
/// Where boot modules (guest images) are mapped.
const ROM_VA: u64 = 0x0000_3800_0000_0000;
/// Thread stacks (1 MiB slots) and UTCBs of the threads this program creates.
const STACK_REGION: u64 = 0x0000_4800_0000_0000;
const UTCB_REGION: u64 = 0x0000_4900_0000_0000;
const STACK_PAGES_ORDER: u8 = 4;
const MAX_THREADS: usize = 16;

/// The priority of every thread this program starts: the component's own (the boot
/// configuration's default). All threads of the VMM share locks that spin (the heap,
/// the timer queue, vmm-core's devices); with strict priorities, a thread spinning on
/// a lock that a lower-priority thread of the same CPU holds would never let that
/// thread run again. At equal priority, round robin bounds such a spin to a quantum.
pub const PRIORITY: u8 = 10;

static NEXT_SEL: AtomicU64 = AtomicU64::new(native::FREE_SEL_HIGH);
static NEXT_STATE: AtomicU64 = AtomicU64::new(0);

pub fn alloc_sel() -> u64 {
    NEXT_SEL.fetch_add(1, Ordering::Relaxed)
}

/// Asks the roottask to back `2^order` pages at `va` with zeroed memory.
pub fn map_memory(va: u64, order: u8) -> Result<(), Status> {
    let u = native::utcb();
    u.words[0] = native::parent::OP_MAP;
    u.words[1] = va;
    u.words[2] = order as u64;
    u.words[3] = mem_rights::RWX as u64;
    u.untyped = 4;
    u.typed = 0;
    syscall::call(native::PARENT)?;
    match u.words[0] {
        0 => Ok(()),
        2 => Err(Status::OutOfMemory),
        _ => Err(Status::BadParameter),
    }
}

/// Gives `pages` pages at `va` back to the roottask, which revokes them.
pub fn unmap_memory(va: u64, pages: u64) -> Result<(), Status> {
    let u = native::utcb();
    u.words[0] = native::parent::OP_UNMAP;
    u.words[1] = va;
    u.words[2] = pages;
    u.untyped = 3;
    u.typed = 0;
    syscall::call(native::PARENT)?;
    match u.words[0] {
        0 => Ok(()),
        _ => Err(Status::BadParameter),
    }
}

/// A virtual machine with RAM at guest-physical `[0, ram_size)`.
pub struct Vm {
    pub sel: u64,
    ram_size: u64,
}

impl Vm {
    /// Creates a VM with `ram_size` bytes of RAM (rounded up to a power of two pages).
    /// The RAM is allocated once and reused by later VMs.
    pub fn create(ram_size: u64) -> Result<Vm, Status> {
        static RAM_ORDER: AtomicU64 = AtomicU64::new(u64::MAX);
        let pages = ram_size.div_ceil(4096).next_power_of_two();
        let order = pages.trailing_zeros() as u8;
        match RAM_ORDER.load(Ordering::Relaxed) {
            u64::MAX => {
                map_memory(RAM_VA, order)?;
                RAM_ORDER.store(order as u64, Ordering::Relaxed);
            }
            o if o == order as u64 => {}
            _ => return Err(Status::BadParameter),
        }
        let sel = alloc_sel();
        syscall::create_vm(sel, VM_KMEM)?;
        syscall::delegate(sel, Crd::mem(RAM_VA >> 12, order, mem_rights::RWX), 0)?;
        Ok(Vm {
            sel,
            ram_size: pages * 4096,
        })
    }

    /// The guest RAM as the VMM sees it.
    pub fn ram(&self) -> &'static mut [u8] {
        // SAFETY: `create` had the roottask map `ram_size` bytes at RAM_VA for the
        // program's lifetime; the guest may change them at any time, which is only
        // plain data to the VMM (it never keeps references into guest memory).
        unsafe { core::slice::from_raw_parts_mut(RAM_VA as *mut u8, self.ram_size as usize) }
    }

    /// Destroys the VM (its vCPUs and its guest-physical space go with it; the
    /// RAM stays the VMM's for the next VM).
    pub fn destroy(self) {
        let _ = syscall::revoke(Crd::obj(self.sel, hyper_abi::obj_rights::ALL), true);
    }

    /// Lends the VMM's page at `va` to the guest at guest-physical page `gpn`.
    pub fn lend_page(&self, va: u64, gpn: u64) -> Result<(), Status> {
        syscall::delegate(self.sel, Crd::mem(va >> 12, 0, mem_rights::RWX), gpn)
    }

    /// Takes the VMM's page at `va` away from the guest (and from everyone else
    /// it was lent to); the VMM keeps it.
    pub fn take_page(&self, va: u64) -> Result<(), Status> {
        syscall::revoke(Crd::mem(va >> 12, 0, mem_rights::RWX), false)
    }

    /// Gives the RAM to this VM again (after `zero`ing it for a new guest).
    pub fn zero_ram(&self) {
        self.ram().fill(0);
    }

    /// A new vCPU of this VM bound to `cpu`.
    pub fn vcpu(&self, cpu: u32) -> Result<Vcpu, Status> {
        let sel = alloc_sel();
        let state = STATE_VA + 4096 * NEXT_STATE.fetch_add(1, Ordering::Relaxed);
        syscall::create_ec(
            sel,
            &syscall::EcParams {
                pd: self.sel,
                cpu: cpu as u16,
                kind: EcKind::Vcpu,
                flags: 0,
                evt_base: 0,
                utcb: state,
                sp: 0,
                ip: 0,
            },
        )?;
        Ok(Vcpu { sel, state })
    }
}

/// A vCPU and its state page.
pub struct Vcpu {
    pub sel: u64,
    state: u64,
}

impl Vcpu {
    pub fn run(&self, charged: u64) -> Result<(), Status> {
        syscall::vcpu_run(self.sel, charged)
    }

    /// The vcpu-api backend for this vCPU; the calling thread becomes its handler.
    pub fn backend(&self) -> vcpu_api::tern::TernVcpu {
        // SAFETY: the kernel mapped this vCPU's state page at `self.state` when it
        // created the vCPU; the mapping lives as long as the program.
        unsafe { vcpu_api::tern::TernVcpu::new(self.sel, self.state, thread_id) }
    }

    /// The state page as plain words (for the hostile-VMM check, which scribbles on it).
    pub fn state_words(&self) -> &'static mut [u64] {
        let words = core::mem::size_of::<VcpuState>() / 8;
        // SAFETY: as for `state`; VcpuState is plain integers, any bit pattern is a
        // value of it.
        unsafe { core::slice::from_raw_parts_mut(self.state as *mut u64, words) }
    }

    /// The state page (valid between runs).
    pub fn state(&self) -> &'static mut VcpuState {
        // SAFETY: the kernel mapped the state page at `state` when it created the
        // vCPU; only this vCPU's handler thread uses it, between runs.
        unsafe { &mut *(self.state as *mut VcpuState) }
    }
}

pub fn recall(vcpu: u64) -> Result<(), Status> {
    syscall::ec_ctrl(vcpu, EcOp::Recall)
}

/// Maps boot module `name` read-only; its bytes.
pub fn boot_module(name: &str) -> Result<&'static [u8], Status> {
    static NEXT: AtomicU64 = AtomicU64::new(ROM_VA);
    let va = NEXT.load(Ordering::Relaxed);
    let u = native::utcb();
    u.words[0] = native::parent::OP_ROM;
    u.words[1..5].copy_from_slice(&native::parent::name_words(name));
    u.words[5] = va;
    u.untyped = 6;
    u.typed = 0;
    syscall::call(native::PARENT)?;
    if u.words[0] != 0 {
        return Err(Status::BadParameter);
    }
    let (size, offset) = (u.words[1], u.words[2]);
    NEXT.store(
        (va + offset + size).next_multiple_of(0x20_0000) + 0x20_0000,
        Ordering::Relaxed,
    );
    // SAFETY: the roottask mapped the module's pages read-only at `va` for the
    // program's lifetime; the bytes start `offset` into the first page.
    Ok(unsafe { core::slice::from_raw_parts((va + offset) as *const u8, size as usize) })
}

/// Identifies the calling thread (the 1 MiB slot of its stack pointer).
pub fn thread_id() -> u64 {
    let rsp: u64;
    // SAFETY: reading the stack pointer has no side effects.
    unsafe { core::arch::asm!("mov {}, rsp", out(reg) rsp, options(nomem, nostack)) };
    rsp >> 20
}

/// The UTCB of the calling thread.
pub fn my_utcb() -> u64 {
    let id = thread_id();
    let base = STACK_REGION >> 20;
    if (base..base + MAX_THREADS as u64).contains(&id) {
        UTCB_REGION + (id - base) * 4096
    } else {
        native::UTCB
    }
}

/// Prints a line through the calling thread's own UTCB.
pub fn print_line(line: &str) {
    native::print_at(my_utcb(), format_args!("{line}\n"));
}

type Job = Box<dyn FnOnce() + Send>;
static JOBS: [spin::Mutex<Option<Job>>; MAX_THREADS] =
    [const { spin::Mutex::new(None) }; MAX_THREADS];
static NEXT_THREAD: AtomicU64 = AtomicU64::new(0);

extern "C" fn thread_start() -> ! {
    let slot = (thread_id() - (STACK_REGION >> 20)) as usize;
    if let Some(job) = JOBS.get(slot).and_then(|j| j.lock().take()) {
        job();
    }
    loop {
        let _ = syscall::ec_ctrl(0, EcOp::Exit);
    }
}

/// Starts a thread on `cpu` with [`PRIORITY`] that runs `job` and then ends.
pub fn spawn(cpu: u32, job: Job) -> Result<(), Status> {
    let slot = NEXT_THREAD.fetch_add(1, Ordering::Relaxed) as usize;
    if slot >= MAX_THREADS {
        return Err(Status::OutOfMemory);
    }
    let stack = STACK_REGION + slot as u64 * 0x10_0000;
    map_memory(stack, STACK_PAGES_ORDER)?;
    *JOBS[slot].lock() = Some(job);
    let (ec, sc) = (alloc_sel(), alloc_sel());
    syscall::create_ec(
        ec,
        &syscall::EcParams {
            pd: hyper_abi::sel::PD_SELF,
            cpu: cpu as u16,
            kind: EcKind::Global,
            flags: 0,
            evt_base: native::cpu_portals(cpu) as u32,
            utcb: UTCB_REGION + slot as u64 * 4096,
            sp: stack + (4096 << STACK_PAGES_ORDER) - 8,
            ip: thread_start as *const () as u64,
        },
    )?;
    syscall::create_sc(sc, ec, PRIORITY, 1000)
}

/// A semaphore nobody ups: downs with a timeout are sleeps.
pub fn sleep_us(us: u64) {
    static SM: AtomicU64 = AtomicU64::new(0);
    let mut sm = SM.load(Ordering::Acquire);
    if sm == 0 {
        let s = alloc_sel();
        if syscall::create_sm(s, 0, None).is_ok() {
            SM.store(s, Ordering::Release);
            sm = s;
        }
    }
    let _ = syscall::sm_ctrl(sm, hyper_abi::SmOp::Down, us.max(1));
}

/// A counting semaphore for waiting on other threads.
pub struct Semaphore(u64);

impl Semaphore {
    pub fn new() -> Result<Self, Status> {
        let s = alloc_sel();
        syscall::create_sm(s, 0, None)?;
        Ok(Semaphore(s))
    }
    pub fn up(&self) {
        let _ = syscall::sm_ctrl(self.0, hyper_abi::SmOp::Up, 0);
    }
    pub fn down(&self) {
        let _ = syscall::sm_ctrl(self.0, hyper_abi::SmOp::Down, 0);
    }
}

/// A hypercall number the kernel does not know: the cost of entering and leaving it.
pub fn unknown_hypercall() {
    // SAFETY: an unknown hypercall changes nothing.
    let _ = unsafe { syscall::raw(99, 0, 0, 0, 0, 0, 0) };
}
