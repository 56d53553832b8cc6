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

/// A value a hostile VMM might write: random, or one of the edge values.
fn nasty(rng: &mut native::Rng) -> u64 {
    match rng.next_u64() % 8 {
        0 => 0,
        1 => u64::MAX,
        2 => 1 << (rng.next_u64() % 64),
        3 => rng.next_u64() & 0xffff,
        4 => 0x8000_0000_0000_0000 | rng.next_u64() & 0xfff,
        _ => rng.next_u64(),
    }
}

/// Hostile VMM: `rounds` runs of the vCPU with random state in every charged group
/// (on SVM except CR and EFER, see below).
/// Every run must come back (a recaller thread bounds guests that never exit) with
/// an exit; the kernel must survive. Returns the count of each exit kind.
pub fn fuzz(rounds: u32) -> Result<([u32; 4], bool), &'static str> {
    use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    static VCPU: AtomicU64 = AtomicU64::new(0);
    static DONE: AtomicBool = AtomicBool::new(false);
    let vm = Vm::create(2 << 20).map_err(|_| "cannot create the VM")?;
    let vcpu = vm
        .vcpu(native::StartInfo::get().cpu)
        .map_err(|_| "cannot create the vCPU")?;
    VCPU.store(vcpu.sel, Ordering::Release);
    sys::spawn(
        native::StartInfo::get().cpu,
        alloc::boxed::Box::new(|| {
            while !DONE.load(Ordering::Acquire) {
                let _ = sys::recall(VCPU.load(Ordering::Acquire));
                sys::sleep_us(2000);
            }
        }),
    )
    .map_err(|_| "cannot start the recaller")?;
    let mut rng = native::Rng(0x7e57_5eed);
    let mut kinds = [0u32; 4];
    vcpu.run(0).map_err(|_| "first run failed")?;
    kinds[exit_kind::STARTUP as usize] += 1;
    // QEMU's TCG emulation of VMRUN hangs the emulated CPU on some random control
    // register/EFER combinations (it stops half-way through loading the guest, in
    // host mode with the guest's CR0); on SVM these two groups keep their values.
    let spared = if vcpu.state().exit.vendor == vendor::SVM {
        field::CR | field::EFER
    } else {
        0
    };
    for _ in 0..rounds {
        for w in vcpu.state_words().iter_mut() {
            if rng.next_u64().is_multiple_of(4) {
                *w = nasty(&mut rng);
            }
        }
        let mask = rng.next_u64() & field::ALL & !spared;
        vcpu.run(mask)
            .map_err(|_| "vcpu_run failed on a hostile state")?;
        let kind = vcpu.state().exit.kind as usize;
        *kinds.get_mut(kind).ok_or("unknown exit kind")? += 1;
    }
    DONE.store(true, Ordering::Release);
    vm.destroy();

    Ok((kinds, spared != 0))
}

/// `--raw-bench`: the kernel's share of an exit round trip. A real-mode guest loops
/// on `out 0x80, al`; the VMM only advances RIP and runs it again (no vcpu-api, no
/// vmm-core). Prints the TSC cycles per round trip measured in the VMM.
pub fn raw_bench(ram: u64, rounds: u64) -> Result<u64, &'static str> {
    let vm = Vm::create(ram).map_err(|_| "cannot create the VM")?;
    vm.ram()[0x1000..0x1004].copy_from_slice(&[0xe6, 0x80, 0xeb, 0xfc]); // out 0x80, al; jmp -4
    let vcpu = vm
        .vcpu(native::StartInfo::get().cpu)
        .map_err(|_| "cannot create the vCPU")?;
    vcpu.run(0).map_err(|_| "first run failed")?;
    let s = vcpu.state();
    s.cs.selector = 0;
    s.cs.base = 0;
    s.rip = 0x1000;
    vcpu.run(field::SEG | field::RIP)
        .map_err(|_| "run failed")?;
    let start = native::rdtsc();
    for _ in 0..rounds {
        let s = vcpu.state();
        if is_io(s).is_none() {
            return Err("expected port-I/O exits");
        }
        s.rip = 0x1002;
        vcpu.run(field::RIP).map_err(|_| "run failed")?;
    }
    let cycles = native::rdtsc() - start;
    let t0 = native::rdtsc();
    for _ in 0..rounds {
        let _ = hyper_abi::syscall::lookup(hyper_abi::Crd::obj(vcpu.sel, 0));
    }
    native::println!(
        "vmm-native: raw-bench: a lookup hypercall costs {} cycles",
        (native::rdtsc() - t0) / rounds
    );
    let t0 = native::rdtsc();
    for _ in 0..rounds {
        sys::unknown_hypercall();
    }
    native::println!(
        "vmm-native: raw-bench: an unknown hypercall costs {} cycles",
        (native::rdtsc() - t0) / rounds
    );
    vm.destroy();
    Ok(cycles / rounds)
}
