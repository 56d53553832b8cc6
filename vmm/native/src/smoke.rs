//! `--smoke`: the smallest proof that the kernel's vCPUs work, without vmm-core.
//! A VM with 2 MiB of RAM runs three real-mode instructions (`mov al, 0x41;
//! out 0x80, al; hlt`); the VMM checks the STARTUP, port-I/O, HLT and RECALL exits
//! and a nested page fault on unmapped guest memory.

use crate::sys::{self, Vm};
use hyper_abi::vcpu::{exit_kind, field, vendor, VcpuState};
use native::println;

/// The guest program at guest-physical 0x1000 (real mode).
const CODE: [u8; 5] = [0xb0, 0x41, 0xe6, 0x80, 0xf4];
/// The second program: `mov [0], al; hlt` with DS based at unmapped 0x30_0000.
const STORE: [u8; 5] = [0x88, 0x06, 0x00, 0x00, 0xf4];

fn is_io(s: &VcpuState) -> Option<(u16, bool)> {
    match s.exit.vendor {
        vendor::SVM if s.exit.raw == 0x7b => {
            Some(((s.exit.qual >> 16) as u16, s.exit.qual & 1 != 0))
        }
        vendor::VMX if s.exit.raw & 0xffff == 30 => {
            Some(((s.exit.qual >> 16) as u16, s.exit.qual & 8 != 0))
        }
        _ => None,
    }
}

fn is_hlt(s: &VcpuState) -> bool {
    match s.exit.vendor {
        vendor::SVM => s.exit.raw == 0x78,
        _ => s.exit.raw & 0xffff == 12,
    }
}

fn is_npf(s: &VcpuState) -> bool {
    match s.exit.vendor {
        vendor::SVM => s.exit.raw == 0x400,
        _ => s.exit.raw & 0xffff == 48,
    }
}

/// Length of the instruction that exited (SVM I/O: next RIP in EXITINFO2).
fn instr_len(s: &VcpuState) -> u64 {
    if s.exit.instr_len != 0 {
        s.exit.instr_len
    } else if s.exit.vendor == vendor::SVM && s.exit.raw == 0x7b {
        s.exit.info2.wrapping_sub(s.rip)
    } else {
        1
    }
}

pub fn run() -> Result<(), &'static str> {
    let vm = Vm::create(2 << 20).map_err(|_| "cannot create the VM")?;
    let mem = vm.ram();
    mem[0x1000..0x1000 + CODE.len()].copy_from_slice(&CODE);
    mem[0x2000..0x2000 + STORE.len()].copy_from_slice(&STORE);
    let vcpu = vm.vcpu(0).map_err(|_| "cannot create the vCPU")?;
    vcpu.run(0).map_err(|_| "first run failed")?;
    let s = vcpu.state();
    if s.exit.kind != exit_kind::STARTUP {
        return Err("first run did not return STARTUP");
    }
    let which = if s.exit.vendor == vendor::SVM {
        "SVM"
    } else {
        "VMX"
    };
    s.cs.selector = 0;
    s.cs.base = 0;
    s.rip = 0x1000;
    vcpu.run(field::SEG | field::RIP)
        .map_err(|_| "run failed")?;
    let s = vcpu.state();
    let Some((port, input)) = is_io(s) else {
        println!("vmm-native: smoke: unexpected exit {:x?}", s.exit);
        return Err("expected a port-I/O exit");
    };
    if port != 0x80 || input || s.gpr[0] & 0xff != 0x41 {
        return Err("wrong port-I/O exit");
    }
    s.rip += instr_len(s);
    vcpu.run(field::RIP).map_err(|_| "run failed")?;
    let s = vcpu.state();
    if !is_hlt(s) || s.rip != 0x1004 {
        println!(
            "vmm-native: smoke: unexpected exit {:x?} rip {:#x}",
            s.exit, s.rip
        );
        return Err("expected HLT");
    }
    sys::recall(vcpu.sel).map_err(|_| "recall failed")?;
    vcpu.run(0).map_err(|_| "run failed")?;
    if vcpu.state().exit.kind != exit_kind::RECALL {
        return Err("expected RECALL after ec_ctrl(recall)");
    }
    let s = vcpu.state();
    s.rip = 0x2000;
    s.ds.base = 0x30_0000;
    vcpu.run(field::RIP | field::SEG)
        .map_err(|_| "run failed")?;
    let s = vcpu.state();
    if !is_npf(s) || s.exit.gpa != 0x30_0000 {
        println!("vmm-native: smoke: unexpected exit {:x?}", s.exit);
        return Err("expected a nested page fault at 0x300000");
    }
    println!(
        "vmm-native: smoke: {which} vCPU: STARTUP, OUT 0x80 (0x41), HLT at {:#x}, RECALL, nested page fault at {:#x}",
        0x1004, s.exit.gpa
    );
    Ok(())
}
