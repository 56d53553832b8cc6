//! `--smoke`: the smallest proof that the kernel's vCPUs work, without vmm-core.
//! A VM with 2 MiB of RAM runs three real-mode instructions (`mov al, 0x41;
//! out 0x80, al; hlt`); the VMM checks the STARTUP, port-I/O, HLT and RECALL exits
//! and a nested page fault on unmapped guest memory. Then hostile guests and VMMs:
//! guest XSETBVs and MXCSR garbage against the kernel's XCR0 and FPU switching
//! (`guest_fpu`), and random state in every charged group (`fuzz`).

use crate::fpu;
use crate::sys::{self, Vm};
use hyper_abi::vcpu::{exit_kind, field, gpr, vendor, VcpuState};
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

/// The FPU check's guests (real mode): at 0x1000 `xsetbv; hlt; xgetbv; hlt`, at
/// 0x1100 `ldmxcsr [0x2000]; hlt; hlt`.
const XCR0_PROGRAM: [u8; 8] = [0x0f, 0x01, 0xd1, 0xf4, 0x0f, 0x01, 0xd0, 0xf4];
const MXCSR_PROGRAM: [u8; 7] = [0x0f, 0xae, 0x16, 0x00, 0x20, 0xf4, 0xf4];

fn is_xsetbv(s: &VcpuState) -> bool {
    match s.exit.vendor {
        vendor::SVM => s.exit.raw == 0x8d,
        _ => s.exit.raw & 0xffff == 55,
    }
}

/// Whether XSETBV takes `xcr0` on a CPU that supports the components in `supported`.
fn xcr0_allowed(xcr0: u64, supported: u64) -> bool {
    const AVX512: u64 = 0xe0;
    xcr0 & 1 != 0
        && xcr0 & !supported == 0
        && (xcr0 & 4 == 0 || xcr0 & 2 != 0)
        && (xcr0 & AVX512 == 0 || (xcr0 & AVX512 == AVX512 && xcr0 & 4 != 0))
}

/// What [`guest_fpu`] saw: guest XSETBVs run, whether the CPU intercepted them,
/// and whether it let the guest set MXCSR's reserved bits.
pub struct FpuReport {
    pub host: u64,
    pub runs: u32,
    pub intercepted: bool,
    pub mxcsr_taken: bool,
}

/// A guest sets XCR0 itself while the VMM charged another value: every x87/SSE/
/// AVX/AVX-512/PKRU combination the CPU takes, against charged XCR0 1, 3 and the
/// host's. Where the CPU does not intercept XSETBV (QEMU's TCG under SVM) the value
/// reaches the real XCR0. After each exit the VMM's XCR0 must be the host's again,
/// the FPU state of the VMM and of a second thread on this CPU (a marker in XMM0,
/// switched by the kernel in between) intact, and at the next entry the guest must
/// run with the XCR0 the VMM charged. Then the guest loads MXCSR with every bit
/// set (a #GP in the guest on CPUs that check, taken by QEMU's TCG) and the same
/// thread switches and re-entry follow. `None` without XSAVE.
pub fn guest_fpu() -> Result<Option<FpuReport>, &'static str> {
    use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    static STOP: AtomicBool = AtomicBool::new(false);
    static BUDDY_ERRORS: AtomicU32 = AtomicU32::new(0);
    const BUDDY_MARK: u64 = 0xb0dd_1e5e_0f00_0001;
    if !fpu::os_xsave() {
        return Ok(None);
    }
    let host = fpu::xcr0();
    let supported = fpu::supported_xcr0();
    let vm = Vm::create(2 << 20).map_err(|_| "cannot create the VM")?;
    let mem = vm.ram();
    mem[0x1000..0x1000 + XCR0_PROGRAM.len()].copy_from_slice(&XCR0_PROGRAM);
    mem[0x1100..0x1100 + MXCSR_PROGRAM.len()].copy_from_slice(&MXCSR_PROGRAM);
    mem[0x2000..0x2004].copy_from_slice(&u32::MAX.to_le_bytes());
    // an exception in the guest (real mode: every IVT entry is 0:0) ends at a HLT
    mem[0] = 0xf4;
    let cpu = native::StartInfo::get().cpu;
    let vcpu = vm.vcpu(cpu).map_err(|_| "cannot create the vCPU")?;
    let go: &'static sys::Semaphore = alloc::boxed::Box::leak(alloc::boxed::Box::new(
        sys::Semaphore::new().map_err(|_| "no semaphore")?,
    ));
    let back: &'static sys::Semaphore = alloc::boxed::Box::leak(alloc::boxed::Box::new(
        sys::Semaphore::new().map_err(|_| "no semaphore")?,
    ));
    sys::spawn(
        cpu,
        alloc::boxed::Box::new(move || {
            fpu::set_xmm0(BUDDY_MARK);
            loop {
                go.down();
                if STOP.load(Ordering::Acquire) {
                    break;
                }
                if fpu::xmm0() != BUDDY_MARK {
                    BUDDY_ERRORS.fetch_add(1, Ordering::Relaxed);
                    fpu::set_xmm0(BUDDY_MARK);
                }
                back.up();
            }
            back.up();
        }),
    )
    .map_err(|_| "cannot start the second thread")?;
    let mut report = FpuReport {
        host,
        runs: 0,
        intercepted: false,
        mxcsr_taken: false,
    };
    let result = (|| {
        vcpu.run(0).map_err(|_| "first run failed")?;
        let mut charged_values = [1, 3, host];
        charged_values.sort_unstable();
        for (i, &charged) in charged_values.iter().enumerate() {
            if charged_values[..i].contains(&charged) || !xcr0_allowed(charged, host) {
                continue;
            }
            for wanted in [1, 3, 7, 0xe7, 0x203, 0x207, 0x2e7] {
                if !xcr0_allowed(wanted, supported) {
                    continue;
                }
                let mark = 0x5eed_0000_0000_0000 | (charged << 16) | wanted;
                let s = vcpu.state();
                s.cs.selector = 0;
                s.cs.base = 0;
                s.rip = 0x1000;
                s.cr4 |= 1 << 18; // OSXSAVE
                s.xcr0 = charged;
                s.gpr[gpr::RAX] = wanted & 0xffff_ffff;
                s.gpr[gpr::RCX] = 0;
                s.gpr[gpr::RDX] = wanted >> 32;
                fpu::set_xmm0(mark);
                vcpu.run(field::SEG | field::RIP | field::CR | field::XCR0 | field::GPR)
                    .map_err(|_| "run failed")?;
                let s = vcpu.state();
                if s.exit.kind == exit_kind::HARDWARE && is_xsetbv(s) {
                    // the CPU intercepts XSETBV: the VMM refuses it by skipping it
                    report.intercepted = true;
                    s.rip = 0x1003;
                    vcpu.run(field::RIP).map_err(|_| "run failed")?;
                }
                let s = vcpu.state();
                if !is_hlt(s) || s.rip != 0x1003 {
                    println!(
                        "vmm-native: smoke: XCR0 {wanted:#x} (charged {charged:#x}): exit {:x?} rip {:#x}",
                        s.exit, s.rip
                    );
                    return Err("expected HLT after the guest's XSETBV");
                }
                if fpu::xcr0() != host {
                    println!(
                        "vmm-native: smoke: XCR0 in the VMM is {:#x} after the guest set {wanted:#x}, not {host:#x}",
                        fpu::xcr0()
                    );
                    return Err("a guest's XSETBV reached the VMM's XCR0");
                }
                go.up();
                back.down();
                if fpu::xmm0() != mark {
                    return Err(
                        "the VMM's FPU state changed across a guest run and a thread switch",
                    );
                }
                s.rip = 0x1004;
                vcpu.run(field::RIP).map_err(|_| "run failed")?;
                let s = vcpu.state();
                let seen = s.gpr[gpr::RAX] & 0xffff_ffff | s.gpr[gpr::RDX] << 32;
                if !is_hlt(s) || s.rip != 0x1007 || seen != charged {
                    println!(
                        "vmm-native: smoke: XCR0 {wanted:#x} (charged {charged:#x}): exit {:x?} rip {:#x}, guest XCR0 {seen:#x}",
                        s.exit, s.rip
                    );
                    return Err("the guest did not run with the XCR0 the VMM charged");
                }
                report.runs += 1;
            }
        }
        let s = vcpu.state();
        s.rip = 0x1100;
        s.cr4 |= 1 << 9; // OSFXSR
        vcpu.run(field::RIP | field::CR).map_err(|_| "run failed")?;
        let s = vcpu.state();
        // HLT after LDMXCSR, or at 0 after a #GP through the real-mode IVT
        report.mxcsr_taken = s.rip == 0x1105;
        if !is_hlt(s) || !(report.mxcsr_taken || s.rip == 0) {
            println!(
                "vmm-native: smoke: LDMXCSR: exit {:x?} rip {:#x}",
                s.exit, s.rip
            );
            return Err("expected HLT after the guest's LDMXCSR");
        }
        fpu::set_xmm0(BUDDY_MARK ^ 1);
        go.up();
        back.down();
        s.rip = 0x1106;
        vcpu.run(field::RIP).map_err(|_| "run failed")?;
        let s = vcpu.state();
        if !is_hlt(s) || s.rip != 0x1106 || fpu::xmm0() != BUDDY_MARK ^ 1 {
            println!(
                "vmm-native: smoke: after LDMXCSR: exit {:x?} rip {:#x}",
                s.exit, s.rip
            );
            return Err("the guest with MXCSR garbage did not run again");
        }
        Ok(())
    })();
    STOP.store(true, Ordering::Release);
    go.up();
    back.down();
    vm.destroy();
    result?;
    if BUDDY_ERRORS.load(Ordering::Relaxed) != 0 {
        return Err("the second thread's FPU state changed while the guest ran");
    }
    Ok(Some(report))
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
