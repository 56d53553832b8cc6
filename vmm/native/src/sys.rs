//! The Tern resources a VMM needs: selectors, guest RAM (memory from the roottask,
//! delegated into the VM's guest-physical space), VMs and vCPUs with their state
//! pages. Everything here is a thin layer over the hypercalls in `hyper_abi`.

use core::sync::atomic::{AtomicU64, Ordering};
use hyper_abi::vcpu::VcpuState;
use hyper_abi::{mem_rights, syscall, Crd, EcKind, EcOp, Status};

/// Where guest RAM is mapped in the VMM (aligned for any order up to 2^35 pages).
const RAM_VA: u64 = 0x0000_2000_0000_0000;
/// Where vCPU state pages are mapped in the VMM.
const STATE_VA: u64 = 0x0000_3000_0000_0000;
/// Kernel memory given to each VM (its PD object).
const VM_KMEM: u64 = 16 * 1024;

static NEXT_SEL: AtomicU64 = AtomicU64::new(native::FREE_SEL_HIGH);
static NEXT_STATE: AtomicU64 = AtomicU64::new(0);

pub fn alloc_sel() -> u64 {
    NEXT_SEL.fetch_add(1, Ordering::Relaxed)
}

/// Asks the roottask to back `2^order` pages at `va` with zeroed memory.
fn map_memory(va: u64, order: u8) -> Result<(), Status> {
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

/// A virtual machine with RAM at guest-physical `[0, ram_size)`.
pub struct Vm {
    pub sel: u64,
    ram_size: u64,
}

impl Vm {
    /// Creates a VM with `ram_size` bytes of RAM (rounded up to a power of two pages).
    pub fn create(ram_size: u64) -> Result<Vm, Status> {
        let pages = ram_size.div_ceil(4096).next_power_of_two();
        let order = pages.trailing_zeros() as u8;
        let sel = alloc_sel();
        syscall::create_vm(sel, VM_KMEM)?;
        map_memory(RAM_VA, order)?;
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
