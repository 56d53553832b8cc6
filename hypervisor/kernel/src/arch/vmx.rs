//! Intel VMX: detection, VMXON per CPU, the VMCS of a vCPU and the guest entry.
//!
//! Owns the VMX instructions (`vmxon`, `vmptrld`, `vmread`, `vmwrite`, `vmlaunch`,
//! `vmresume`, `vmclear`, `invept`) and the VMCS field encodings; knows nothing of
//! capabilities or the scheduler (that is `vcpu.rs`). Requires EPT and unrestricted
//! guest. A VMCS is used only on the CPU its vCPU is bound to.

use super::cpu::{cpuid, rdmsr, wrmsr, MSR_EFER};
use super::phys;
use core::arch::asm;
use hyper_abi::vcpu::{control, exit_kind, field, vendor, DescTable, ExitInfo, Segment, VcpuState};

const MSR_FEATURE_CONTROL: u32 = 0x3a;
const MSR_BASIC: u32 = 0x480;
const MSR_CR0_FIXED0: u32 = 0x486;
const MSR_CR0_FIXED1: u32 = 0x487;
const MSR_CR4_FIXED0: u32 = 0x488;
const MSR_CR4_FIXED1: u32 = 0x489;
const MSR_PROCBASED2: u32 = 0x48b;
const MSR_EPT_VPID_CAP: u32 = 0x48c;
const MSR_PAT: u32 = 0x277;
const MSR_FS_BASE: u32 = 0xc000_0100;
const MSR_GS_BASE: u32 = 0xc000_0101;
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;
const MSR_STAR: u32 = 0xc000_0081;
const MSR_LSTAR: u32 = 0xc000_0082;
const MSR_CSTAR: u32 = 0xc000_0083;
const MSR_FMASK: u32 = 0xc000_0084;

mod f {
    pub const VPID: u64 = 0x0000;
    pub const MSR_BITMAP: u64 = 0x2004;
    pub const TSC_OFFSET: u64 = 0x2010;
    pub const EPT_POINTER: u64 = 0x201a;
    pub const GUEST_PHYSICAL: u64 = 0x2400;
    pub const LINK_POINTER: u64 = 0x2800;
    pub const GUEST_PAT: u64 = 0x2804;
    pub const GUEST_EFER: u64 = 0x2806;
    pub const HOST_PAT: u64 = 0x2c00;
    pub const HOST_EFER: u64 = 0x2c02;
    pub const PIN: u64 = 0x4000;
    pub const PROC: u64 = 0x4002;
    pub const EXCEPTIONS: u64 = 0x4004;
    pub const EXIT_CTLS: u64 = 0x400c;
    pub const ENTRY_CTLS: u64 = 0x4012;
    pub const ENTRY_INTR: u64 = 0x4016;
    pub const ENTRY_ERROR: u64 = 0x4018;
    pub const ENTRY_LEN: u64 = 0x401a;
    pub const PROC2: u64 = 0x401e;
    pub const INSTR_ERROR: u64 = 0x4400;
    pub const EXIT_REASON: u64 = 0x4402;
    pub const EXIT_INTR: u64 = 0x4404;
    pub const EXIT_INTR_ERROR: u64 = 0x4406;
    pub const VECTORING: u64 = 0x4408;
    pub const VECTORING_ERROR: u64 = 0x440a;
    pub const EXIT_LEN: u64 = 0x440c;
    pub const EXIT_INSTR_INFO: u64 = 0x440e;
    pub const GDTR_LIMIT: u64 = 0x4810;
    pub const IDTR_LIMIT: u64 = 0x4812;
    pub const INTERRUPTIBILITY: u64 = 0x4824;
    pub const ACTIVITY: u64 = 0x4826;
    pub const SYSENTER_CS: u64 = 0x482a;
    pub const HOST_SYSENTER_CS: u64 = 0x4c00;
    pub const CR0_MASK: u64 = 0x6000;
    pub const CR4_MASK: u64 = 0x6002;
    pub const CR0_SHADOW: u64 = 0x6004;
    pub const CR4_SHADOW: u64 = 0x6006;
    pub const QUALIFICATION: u64 = 0x6400;
    pub const GUEST_LINEAR: u64 = 0x640a;
    pub const CR0: u64 = 0x6800;
    pub const CR3: u64 = 0x6802;
    pub const CR4: u64 = 0x6804;
    pub const GDTR_BASE: u64 = 0x6816;
    pub const IDTR_BASE: u64 = 0x6818;
    pub const DR7: u64 = 0x681a;
    pub const RSP: u64 = 0x681c;
    pub const RIP: u64 = 0x681e;
    pub const RFLAGS: u64 = 0x6820;
    pub const SYSENTER_ESP: u64 = 0x6824;
    pub const SYSENTER_EIP: u64 = 0x6826;
    pub const HOST_CR0: u64 = 0x6c00;
    pub const HOST_CR3: u64 = 0x6c02;
    pub const HOST_CR4: u64 = 0x6c04;
    pub const HOST_FS_BASE: u64 = 0x6c06;
    pub const HOST_GS_BASE: u64 = 0x6c08;
    pub const HOST_TR_BASE: u64 = 0x6c0a;
    pub const HOST_GDTR_BASE: u64 = 0x6c0c;
    pub const HOST_IDTR_BASE: u64 = 0x6c0e;
    pub const HOST_SYSENTER_ESP: u64 = 0x6c10;
    pub const HOST_SYSENTER_EIP: u64 = 0x6c12;
    pub const HOST_CS: u64 = 0x0c02;
    pub const HOST_SS: u64 = 0x0c04;
    pub const HOST_DS: u64 = 0x0c06;
    pub const HOST_ES: u64 = 0x0c00;
    pub const HOST_FS: u64 = 0x0c08;
    pub const HOST_GS: u64 = 0x0c0a;
    pub const HOST_TR: u64 = 0x0c0c;
}

/// Segment registers in `VcpuState` order: (selector, limit, access rights, base).
const SEGS: [(u64, u64, u64, u64); 8] = [
    (0x800, 0x4800, 0x4814, 0x6806), // es
    (0x802, 0x4802, 0x4816, 0x6808), // cs
    (0x804, 0x4804, 0x4818, 0x680a), // ss
    (0x806, 0x4806, 0x481a, 0x680c), // ds
    (0x808, 0x4808, 0x481c, 0x680e), // fs
    (0x80a, 0x480a, 0x481e, 0x6810), // gs
    (0x80e, 0x480e, 0x4822, 0x6814), // tr
    (0x80c, 0x480c, 0x4820, 0x6812), // ldtr
];

/// The state page group of `SEGS[i]`.
fn seg_group(i: usize) -> u64 {
    match i {
        0..=3 => field::SEG,
        4 | 5 => field::FS_GS,
        _ => field::TR_LDTR,
    }
}

// controls
const PIN_EXT_INT: u32 = 1 << 0;
const PIN_NMI: u32 = 1 << 3;
const PIN_VIRTUAL_NMI: u32 = 1 << 5;
const P_INTR_WINDOW: u32 = 1 << 2;
const P_TSC_OFFSET: u32 = 1 << 3;
const P_HLT: u32 = 1 << 7;
const P_INVLPG: u32 = 1 << 9;
const P_MWAIT: u32 = 1 << 10;
const P_RDPMC: u32 = 1 << 11;
const P_CR3_LOAD: u32 = 1 << 15;
const P_CR8_LOAD: u32 = 1 << 19;
const P_CR8_STORE: u32 = 1 << 20;
const P_NMI_WINDOW: u32 = 1 << 22;
const P_MOV_DR: u32 = 1 << 23;
const P_IO: u32 = 1 << 24;
const P_MSR_BITMAP: u32 = 1 << 28;
const P_MONITOR: u32 = 1 << 29;
const P_PAUSE: u32 = 1 << 30;
const P_SECONDARY: u32 = 1 << 31;
const P2_EPT: u32 = 1 << 1;
const P2_RDTSCP: u32 = 1 << 3;
const P2_VPID: u32 = 1 << 5;
const P2_WBINVD: u32 = 1 << 6;
const P2_UNRESTRICTED: u32 = 1 << 7;
const P2_INVPCID: u32 = 1 << 12;
const X_HOST_64: u32 = 1 << 9;
const X_SAVE_PAT: u32 = 1 << 18;
const X_LOAD_PAT: u32 = 1 << 19;
const X_SAVE_EFER: u32 = 1 << 20;
const X_LOAD_EFER: u32 = 1 << 21;
const E_IA32E: u32 = 1 << 9;
const E_LOAD_PAT: u32 = 1 << 14;
const E_LOAD_EFER: u32 = 1 << 15;

const EFER_LMA: u64 = 1 << 10;
const EFER_LME: u64 = 1 << 8;
const CR0_PE: u64 = 1;
const CR0_PG: u64 = 1 << 31;

/// What VMX offers on this CPU (the control values the kernel uses).
#[derive(Clone, Copy)]
pub struct Features {
    revision: u32,
    pin: u32,
    proc: u32,
    proc2: u32,
    exit: u32,
    entry: u32,
    /// Bits that must be set / may be set in CR0 and CR4 during VMX operation.
    cr0_fixed: (u64, u64),
    cr4_fixed: (u64, u64),
    pub ept_large: bool,
    invept_single: bool,
    pause_exiting: bool,
}

/// `want` adjusted to what the capability MSR allows (low half: must be 1, high: may be 1).
fn adjust(msr: u32, want: u32) -> u32 {
    let v = rdmsr(msr);
    (want | v as u32) & (v >> 32) as u32
}

/// VMX with EPT and unrestricted guest, or why not.
pub fn detect() -> Result<Features, &'static str> {
    if cpuid(1, 0)[2] & (1 << 5) == 0 {
        return Err("no VMX");
    }
    let fc = rdmsr(MSR_FEATURE_CONTROL);
    if fc & 1 != 0 && fc & 4 == 0 {
        return Err("VMX disabled by the firmware");
    }
    let basic = rdmsr(MSR_BASIC);
    let true_ctls = basic & (1 << 55) != 0;
    let (pin_msr, proc_msr, exit_msr, entry_msr) = if true_ctls {
        (0x48d, 0x48e, 0x48f, 0x490)
    } else {
        (0x481, 0x482, 0x483, 0x484)
    };
    let proc_allowed = (rdmsr(proc_msr) >> 32) as u32;
    if proc_allowed & P_SECONDARY == 0 {
        return Err("VMX without secondary controls (no EPT)");
    }
    let p2_allowed = (rdmsr(MSR_PROCBASED2) >> 32) as u32;
    if p2_allowed & P2_EPT == 0 || p2_allowed & P2_UNRESTRICTED == 0 {
        return Err("VMX without EPT or unrestricted guest");
    }
    let cap = rdmsr(MSR_EPT_VPID_CAP);
    // 4-level walks, write-back memory type, INVEPT
    if cap & (1 << 6) == 0 || cap & (1 << 14) == 0 || cap & (1 << 20) == 0 {
        return Err("EPT without 4-level walks, write-back or INVEPT");
    }
    let pin = adjust(pin_msr, PIN_EXT_INT | PIN_NMI | PIN_VIRTUAL_NMI);
    let proc = adjust(
        proc_msr,
        P_TSC_OFFSET
            | P_HLT
            | P_MWAIT
            | P_RDPMC
            | P_CR8_LOAD
            | P_CR8_STORE
            | P_MOV_DR
            | P_IO
            | P_MSR_BITMAP
            | P_MONITOR
            | P_SECONDARY,
    ) & !(P_CR3_LOAD | 1 << 16); // CR3 accesses need no exit with EPT
    let proc2 = adjust(
        MSR_PROCBASED2,
        P2_EPT | P2_VPID | P2_UNRESTRICTED | P2_WBINVD | P2_RDTSCP | P2_INVPCID,
    );
    let exit = adjust(
        exit_msr,
        X_HOST_64 | X_SAVE_PAT | X_LOAD_PAT | X_SAVE_EFER | X_LOAD_EFER,
    );
    let entry = adjust(entry_msr, E_LOAD_PAT | E_LOAD_EFER) & !E_IA32E;
    if exit & X_LOAD_EFER == 0 || entry & E_LOAD_EFER == 0 || exit & X_HOST_64 == 0 {
        return Err("VMX cannot switch EFER");
    }
    Ok(Features {
        revision: basic as u32 & 0x7fff_ffff,
        pin,
        proc,
        proc2,
        exit,
        entry,
        cr0_fixed: (rdmsr(MSR_CR0_FIXED0), rdmsr(MSR_CR0_FIXED1)),
        cr4_fixed: (rdmsr(MSR_CR4_FIXED0), rdmsr(MSR_CR4_FIXED1)),
        ept_large: cap & (1 << 16) != 0,
        invept_single: cap & (1 << 25) != 0,
        pause_exiting: proc_allowed & P_PAUSE != 0,
    })
}

/// Per-CPU VMX data: which VMCS is current on this CPU.
#[derive(Clone, Copy)]
pub struct CpuArea {
    current: u64,
}

fn read_cr(n: u8) -> u64 {
    let v: u64;
    // SAFETY: reading CR0/CR4 has no side effects.
    unsafe {
        match n {
            0 => asm!("mov {}, cr0", out(reg) v, options(nomem, nostack)),
            _ => asm!("mov {}, cr4", out(reg) v, options(nomem, nostack)),
        }
    }
    v
}

/// Enters VMX operation on this CPU. `alloc` gives a zeroed kernel page.
pub fn init_cpu(feat: &Features, alloc: impl Fn() -> Option<u64>) -> Option<CpuArea> {
    let region = alloc()?;
    phys::write(region, feat.revision);
    let fc = rdmsr(MSR_FEATURE_CONTROL);
    if fc & 1 == 0 {
        wrmsr(MSR_FEATURE_CONTROL, fc | 1 | 4);
    }
    let cr0 = (read_cr(0) | feat.cr0_fixed.0) & feat.cr0_fixed.1;
    let cr4 = (read_cr(4) | feat.cr4_fixed.0 | (1 << 13)) & feat.cr4_fixed.1;
    let ok: u8;
    // SAFETY: CR0/CR4 get the bits VMX operation requires (the kernel already runs
    // with PE, PG, NE set); the VMXON region is a zeroed page holding the revision id.
    unsafe {
        asm!("mov cr0, {}", in(reg) cr0, options(nostack));
        asm!("mov cr4, {}", in(reg) cr4, options(nostack));
        asm!("vmxon [{}]", "setna {}", in(reg) &region, out(reg_byte) ok, options(nostack));
    }
    (ok == 0).then_some(CpuArea { current: 0 })
}

/// Takes the VMCS at `vmcs` off this CPU (before its page is freed): the CPU
/// writes back what it cached of it and never touches it again.
pub fn clear(vmcs: u64, cpu: &mut CpuArea) {
    // SAFETY: `vmcs` is a VMCS set up by `Vmcs::new`, active on no CPU but this one
    // (vCPUs are bound to one CPU); VMCLEAR of a VMCS that is not active here only
    // writes its launch state into the page, which is still allocated.
    unsafe { asm!("vmclear [{}]", in(reg) &vmcs, options(nostack)) };
    if cpu.current == vmcs {
        cpu.current = 0;
    }
}

fn vmread(field: u64) -> u64 {
    let v: u64;
    // SAFETY: called only with a current VMCS on this CPU (see `Vmcs::activate`);
    // reading an unsupported field fails without side effects (value 0 then).
    unsafe { asm!("vmread {}, {}", out(reg) v, in(reg) field, options(nostack)) };
    v
}

fn vmwrite(field: u64, v: u64) {
    // SAFETY: as for `vmread`; writes only change the current VMCS, whose guest
    // state the CPU checks at VM entry.
    unsafe { asm!("vmwrite {}, {}", in(reg) field, in(reg) v, options(nostack)) };
}

/// Shared by all vCPUs: the MSR bitmap (every access exits except FS/GS base).
pub struct Shared {
    msr_bitmap: u64,
}

pub fn init_shared(alloc: impl Fn() -> Option<u64>) -> Option<Shared> {
    let b = alloc()?;
    let m = phys::slice_mut(b, 4096);
    m.fill(0xff);
    // high MSRs: read bitmap at 0x400, write bitmap at 0xc00
    for msr in [MSR_FS_BASE, MSR_GS_BASE] {
        let bit = (msr - 0xc000_0000) as usize;
        m[0x400 + bit / 8] &= !(1 << (bit % 8));
        m[0xc00 + bit / 8] &= !(1 << (bit % 8));
    }
    Some(Shared { msr_bitmap: b })
}

/// A vCPU's VMCS and the state VMX does not keep in it.
#[derive(Clone, Copy)]
pub struct Vmcs {
    pub pa: u64,
    /// Guest general registers (rsp is in the VMCS).
    pub gprs: u64,
    launched: bool,
    /// Guest MSRs the CPU does not switch (loaded around each entry).
    syscall_msrs: [u64; 5],
    cr0_mask: u64,
    cr4_mask: u64,
    proc: u32,
}

fn seg_to_vmx(ar: u16) -> u64 {
    let ar = ar as u64;
    let v = (ar & 0xff) | (ar & 0xf00) << 4;
    if ar & 0x80 == 0 {
        v | 1 << 16
    } else {
        v
    }
}

fn seg_from_vmx(v: u64) -> u16 {
    let ar = (v & 0xff) | (v >> 4) & 0xf00;
    if v & (1 << 16) != 0 {
        (ar & !0x80) as u16
    } else {
        ar as u16
    }
}

impl Vmcs {
    /// Sets up a VMCS (`pa`, zeroed page) on this CPU for a guest with `vpid` and EPT
    /// root `ept_root`; the guest state is `reset`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        pa: u64,
        gprs: u64,
        cpu: &mut CpuArea,
        feat: &Features,
        shared: &Shared,
        vpid: u16,
        ept_root: u64,
        reset: &VcpuState,
    ) -> Option<Self> {
        phys::write(pa, feat.revision);
        let mut v = Vmcs {
            pa,
            gprs,
            launched: false,
            syscall_msrs: [0; 5],
            cr0_mask: 0,
            cr4_mask: 0,
            proc: feat.proc,
        };
        // SAFETY: `pa` is a zeroed page with the revision id: a valid VMCS to clear.
        unsafe { asm!("vmclear [{}]", in(reg) &pa, options(nostack)) };
        v.activate(cpu);
        vmwrite(f::PIN, feat.pin as u64);
        vmwrite(f::PROC, feat.proc as u64);
        let mut proc2 = feat.proc2;
        if vpid == 0 {
            proc2 &= !P2_VPID;
        }
        vmwrite(f::PROC2, proc2 as u64);
        vmwrite(f::EXIT_CTLS, feat.exit as u64);
        vmwrite(f::ENTRY_CTLS, feat.entry as u64);
        vmwrite(f::EXCEPTIONS, 0);
        vmwrite(f::VPID, vpid as u64);
        vmwrite(f::MSR_BITMAP, shared.msr_bitmap);
        vmwrite(f::EPT_POINTER, ept_root | 6 | 3 << 3);
        vmwrite(f::LINK_POINTER, u64::MAX);
        // host state that never changes
        vmwrite(f::HOST_CR0, read_cr(0));
        vmwrite(f::HOST_CR4, read_cr(4));
        vmwrite(f::HOST_CR3, super::paging::kernel_root());
        vmwrite(f::HOST_CS, super::cpu::KERNEL_CS as u64);
        vmwrite(f::HOST_SS, super::cpu::KERNEL_DS as u64);
        vmwrite(f::HOST_DS, super::cpu::KERNEL_DS as u64);
        vmwrite(f::HOST_ES, super::cpu::KERNEL_DS as u64);
        vmwrite(f::HOST_FS, 0);
        vmwrite(f::HOST_GS, 0);
        vmwrite(f::HOST_TR, super::cpu::TSS_SEL as u64);
        vmwrite(f::HOST_SYSENTER_CS, 0);
        vmwrite(f::HOST_SYSENTER_ESP, 0);
        vmwrite(f::HOST_SYSENTER_EIP, 0);
        vmwrite(f::HOST_EFER, rdmsr(MSR_EFER));
        vmwrite(f::HOST_PAT, rdmsr(MSR_PAT));
        v.load(feat, reset, field::ALL);
        // written back to memory: the vCPU's own CPU loads it at its first run
        v.clear(cpu);
        Some(v)
    }

    /// Makes this VMCS the current one on this CPU (with this CPU's host state).
    pub fn activate(&self, cpu: &mut CpuArea) {
        if cpu.current != self.pa {
            // SAFETY: the VMCS was initialised with the revision id and is active on
            // no other CPU (it was cleared after set-up; vCPUs are bound to one CPU).
            unsafe { asm!("vmptrld [{}]", in(reg) &self.pa, options(nostack)) };
            cpu.current = self.pa;
            let (gdt, idt, tss) = super::smp::descriptor_bases();
            vmwrite(f::HOST_GDTR_BASE, gdt);
            vmwrite(f::HOST_IDTR_BASE, idt);
            vmwrite(f::HOST_TR_BASE, tss);
            vmwrite(f::HOST_GS_BASE, rdmsr(MSR_GS_BASE));
        }
    }

    /// Takes the VMCS off this CPU.
    pub fn clear(&self, cpu: &mut CpuArea) {
        clear(self.pa, cpu);
    }

    /// The VMCS page.
    pub fn pa(&self) -> u64 {
        self.pa
    }

    /// Writes the `charged` groups of `s` into the VMCS (current on this CPU).
    pub fn load(&mut self, feat: &Features, s: &VcpuState, charged: u64) {
        if charged & field::GPR != 0 {
            for (i, &g) in s.gpr.iter().enumerate() {
                phys::write(self.gprs + 8 * i as u64, g);
            }
            vmwrite(f::RSP, s.gpr[4]);
        }
        if charged & field::RIP != 0 {
            vmwrite(f::RIP, s.rip);
            vmwrite(f::RFLAGS, s.rflags);
        }
        if charged & (field::CR | field::CONTROLS) != 0 {
            let all = s.controls & control::CR_EXITS != 0;
            // bits VMX forces (PE/PG are free with unrestricted guest) are owned by
            // the host: the guest reads the shadow, a change of them exits
            let (f0, f1) = feat.cr0_fixed;
            let forced0 = (f0 & !(CR0_PE | CR0_PG)) | !f1;
            self.cr0_mask = if all { u64::MAX } else { forced0 };
            let (g0, g1) = feat.cr4_fixed;
            let forced4 = g0 | !g1;
            self.cr4_mask = if all { u64::MAX } else { forced4 };
            vmwrite(f::CR0_MASK, self.cr0_mask);
            vmwrite(f::CR4_MASK, self.cr4_mask);
            let mut p =
                self.proc & !(P_CR3_LOAD | P_INVLPG | P_INTR_WINDOW | P_NMI_WINDOW | P_PAUSE);
            if all {
                p |= P_CR3_LOAD;
            }
            if s.controls & control::INVLPG_EXITS != 0 {
                p |= P_INVLPG;
            }
            if s.controls & control::PAUSE_EXITS != 0 && feat.pause_exiting {
                p |= P_PAUSE;
            }
            if s.controls & control::INTR_WINDOW != 0 {
                p |= P_INTR_WINDOW;
            }
            if s.controls & control::NMI_WINDOW != 0 {
                p |= P_NMI_WINDOW;
            }
            self.proc = p;
            vmwrite(f::PROC, p as u64);
        }
        if charged & field::CR != 0 {
            let (f0, f1) = feat.cr0_fixed;
            vmwrite(f::CR0, (s.cr0 | (f0 & !(CR0_PE | CR0_PG))) & f1);
            vmwrite(f::CR0_SHADOW, s.cr0);
            vmwrite(f::CR3, s.cr3);
            let (g0, g1) = feat.cr4_fixed;
            vmwrite(f::CR4, (s.cr4 | g0) & g1);
            vmwrite(f::CR4_SHADOW, s.cr4);
        }
        if charged & field::CR != 0 {
            // CR2 is not in the VMCS: the guest's value is kept with the registers
            phys::write(self.gprs + 8 * 16, s.cr2);
        }
        if charged & field::EFER != 0 {
            vmwrite(f::GUEST_EFER, s.efer);
        }
        if charged & (field::CR | field::EFER) != 0 {
            // EFER.LMA and the IA-32e entry control follow LME and CR0.PG
            let efer = vmread(f::GUEST_EFER) & !EFER_LMA;
            let lma = efer & EFER_LME != 0 && vmread(f::CR0) & CR0_PG != 0;
            vmwrite(f::GUEST_EFER, efer | if lma { EFER_LMA } else { 0 });
            let entry = vmread(f::ENTRY_CTLS) as u32;
            let entry = if lma {
                entry | E_IA32E
            } else {
                entry & !E_IA32E
            };
            vmwrite(f::ENTRY_CTLS, entry as u64);
        }
        if charged & field::DR7 != 0 {
            vmwrite(f::DR7, s.dr7);
        }
        let segs = [&s.es, &s.cs, &s.ss, &s.ds, &s.fs, &s.gs, &s.tr, &s.ldtr];
        for (i, (sel, lim, ar, base)) in SEGS.iter().enumerate() {
            if charged & seg_group(i) != 0 {
                vmwrite(*sel, segs[i].selector as u64);
                vmwrite(*lim, segs[i].limit as u64);
                vmwrite(*ar, seg_to_vmx(segs[i].ar));
                vmwrite(*base, segs[i].base);
            }
        }
        if charged & field::DESC != 0 {
            vmwrite(f::GDTR_LIMIT, s.gdtr.limit as u64 & 0xffff);
            vmwrite(f::GDTR_BASE, s.gdtr.base);
            vmwrite(f::IDTR_LIMIT, s.idtr.limit as u64 & 0xffff);
            vmwrite(f::IDTR_BASE, s.idtr.base);
        }
        if charged & field::SYSENTER != 0 {
            vmwrite(f::SYSENTER_CS, s.sysenter_cs);
            vmwrite(f::SYSENTER_ESP, s.sysenter_esp);
            vmwrite(f::SYSENTER_EIP, s.sysenter_eip);
        }
        if charged & field::SYSCALL != 0 {
            self.syscall_msrs = [s.star, s.lstar, s.cstar, s.fmask, s.kernel_gs_base];
        }
        if charged & field::PAT != 0 {
            vmwrite(f::GUEST_PAT, s.pat);
        }
        if charged & field::TSC_OFFSET != 0 {
            vmwrite(f::TSC_OFFSET, s.tsc_offset);
        }
        if charged & field::INJECT != 0 {
            vmwrite(f::ENTRY_INTR, s.inject as u64);
            vmwrite(f::ENTRY_ERROR, s.inject_error as u64);
            vmwrite(f::ENTRY_LEN, s.inject_len as u64);
        }
        if charged & field::INTR_STATE != 0 {
            vmwrite(f::INTERRUPTIBILITY, s.interruptibility as u64 & 0xf);
            vmwrite(f::ACTIVITY, (s.activity == 1) as u64);
        }
    }

    /// Copies the `groups` of the guest state out of the VMCS (into the state page).
    pub fn store(&self, s: &mut VcpuState, groups: u64, controls: u64, xcr0: u64) {
        if groups & field::GPR != 0 {
            for (i, g) in s.gpr.iter_mut().enumerate() {
                *g = phys::read(self.gprs + 8 * i as u64);
            }
            s.gpr[4] = vmread(f::RSP);
        }
        if groups & field::RIP != 0 {
            s.rip = vmread(f::RIP);
            s.rflags = vmread(f::RFLAGS);
        }
        if groups & field::CR != 0 {
            s.cr0 = (vmread(f::CR0) & !self.cr0_mask) | (vmread(f::CR0_SHADOW) & self.cr0_mask);
            s.cr2 = phys::read(self.gprs + 8 * 16);
            s.cr3 = vmread(f::CR3);
            s.cr4 = (vmread(f::CR4) & !self.cr4_mask) | (vmread(f::CR4_SHADOW) & self.cr4_mask);
        }
        if groups & field::EFER != 0 {
            s.efer = vmread(f::GUEST_EFER);
        }
        if groups & field::DR7 != 0 {
            s.dr7 = vmread(f::DR7);
        }
        let segs = [
            &mut s.es,
            &mut s.cs,
            &mut s.ss,
            &mut s.ds,
            &mut s.fs,
            &mut s.gs,
            &mut s.tr,
            &mut s.ldtr,
        ];
        for (i, (seg, (sel, lim, ar, base))) in segs.into_iter().zip(SEGS.iter()).enumerate() {
            if groups & seg_group(i) != 0 {
                *seg = Segment {
                    selector: vmread(*sel) as u16,
                    ar: seg_from_vmx(vmread(*ar)),
                    limit: vmread(*lim) as u32,
                    base: vmread(*base),
                };
            }
        }
        if groups & field::DESC != 0 {
            s.gdtr = DescTable {
                limit: vmread(f::GDTR_LIMIT) as u32,
                _pad: 0,
                base: vmread(f::GDTR_BASE),
            };
            s.idtr = DescTable {
                limit: vmread(f::IDTR_LIMIT) as u32,
                _pad: 0,
                base: vmread(f::IDTR_BASE),
            };
        }
        if groups & field::SYSENTER != 0 {
            s.sysenter_cs = vmread(f::SYSENTER_CS);
            s.sysenter_esp = vmread(f::SYSENTER_ESP);
            s.sysenter_eip = vmread(f::SYSENTER_EIP);
        }
        if groups & field::SYSCALL != 0 {
            [s.star, s.lstar, s.cstar, s.fmask, s.kernel_gs_base] = self.syscall_msrs;
        }
        if groups & field::PAT != 0 {
            s.pat = vmread(f::GUEST_PAT);
        }
        if groups & field::XCR0 != 0 {
            s.xcr0 = xcr0;
        }
        if groups & field::TSC_OFFSET != 0 {
            s.tsc_offset = vmread(f::TSC_OFFSET);
        }
        if groups & field::INJECT != 0 {
            s.inject = vmread(f::ENTRY_INTR) as u32;
            s.inject_error = vmread(f::ENTRY_ERROR) as u32;
            s.inject_len = vmread(f::ENTRY_LEN) as u32;
        }
        if groups & field::INTR_STATE != 0 {
            s.interruptibility = vmread(f::INTERRUPTIBILITY) as u32;
            s.activity = vmread(f::ACTIVITY) as u32;
        }
        if groups & field::CONTROLS != 0 {
            s.controls = controls;
        }
    }

    /// Enters the guest (this VMCS must be current); returns the exit, or `None`
    /// for a host interrupt (the kernel takes it and runs the guest again).
    /// `flush` invalidates the guest's EPT translations first.
    pub fn run(&mut self, feat: &Features, flush: bool) -> Option<ExitInfo> {
        if flush {
            let eptp = vmread(f::EPT_POINTER);
            let desc = [eptp, 0u64];
            let kind: u64 = if feat.invept_single { 1 } else { 2 };
            // SAFETY: INVEPT with a supported type and a valid descriptor only drops
            // cached translations.
            unsafe { asm!("invept {}, [{}]", in(reg) kind, in(reg) &desc, options(nostack)) };
        }
        vmwrite(f::HOST_FS_BASE, rdmsr(MSR_FS_BASE));
        // guest MSRs VMX does not switch; the host's are put back after the exit
        let host = [
            rdmsr(MSR_STAR),
            rdmsr(MSR_LSTAR),
            rdmsr(MSR_CSTAR),
            rdmsr(MSR_FMASK),
            rdmsr(MSR_KERNEL_GS_BASE),
        ];
        let msrs = [
            MSR_STAR,
            MSR_LSTAR,
            MSR_CSTAR,
            MSR_FMASK,
            MSR_KERNEL_GS_BASE,
        ];
        for (m, v) in msrs.iter().zip(self.syscall_msrs) {
            wrmsr_checked(*m, v);
        }
        let cr2_guest: u64 = phys::read(self.gprs + 8 * 16);
        // SAFETY: the VMCS is current and fully initialised (`new`); its host state
        // returns to `vmx_exit` in the assembly below with the kernel's CR3, GDT, IDT,
        // TSS and GS base; the guest cannot reach host resources (interrupts, I/O,
        // MSRs, CR8 exit). CR2 is loaded last because nothing in between faults.
        let status = unsafe {
            write_cr2(cr2_guest);
            vmx_enter(phys::to_virt(self.gprs), self.launched as u64)
        };
        phys::write(self.gprs + 8 * 16, super::cpu::read_cr2());
        self.syscall_msrs[4] = rdmsr(MSR_KERNEL_GS_BASE);
        for (m, v) in msrs.iter().zip(host) {
            wrmsr(*m, v);
        }
        super::smp::reload_tr();
        if status != 0 {
            return Some(ExitInfo {
                kind: exit_kind::INVALID_STATE,
                vendor: vendor::VMX,
                raw: exit_kind::VMX_ENTRY_ERROR,
                qual: if status == 2 {
                    vmread(f::INSTR_ERROR)
                } else {
                    0
                },
                ..Default::default()
            });
        }
        self.launched = true;
        let reason = vmread(f::EXIT_REASON);
        let intr = vmread(f::EXIT_INTR);
        // an external interrupt, or an NMI (exception exit of type 2)
        if reason & 0xffff == 1 || (reason & 0xffff == 0 && (intr >> 8) & 7 == 2) {
            return None;
        }
        let failed = reason & (1 << 31) != 0;
        if failed {
            self.launched = false;
        }
        Some(ExitInfo {
            kind: if failed {
                exit_kind::INVALID_STATE
            } else {
                exit_kind::HARDWARE
            },
            vendor: vendor::VMX,
            raw: reason,
            qual: vmread(f::QUALIFICATION),
            info2: vmread(f::EXIT_INSTR_INFO),
            gpa: if reason & 0xffff == 48 || reason & 0xffff == 49 {
                vmread(f::GUEST_PHYSICAL)
            } else {
                0
            },
            gla: vmread(f::GUEST_LINEAR),
            instr_len: vmread(f::EXIT_LEN),
            intr_info: intr | vmread(f::EXIT_INTR_ERROR) << 32,
            vectoring: vmread(f::VECTORING) | vmread(f::VECTORING_ERROR) << 32,
        })
    }
}

/// Writes an MSR the guest chose; a non-canonical address is made canonical
/// (WRMSR would fault), which the guest sees as the value it wrote being truncated.
fn wrmsr_checked(msr: u32, v: u64) {
    let v = if msr == MSR_FMASK || msr == MSR_STAR {
        v
    } else {
        ((v << 16) as i64 >> 16) as u64
    };
    wrmsr(msr, if msr == MSR_FMASK { v & 0xffff_ffff } else { v });
}

/// # Safety
/// Changes CR2, which only matters to the page-fault handler of whoever runs next.
unsafe fn write_cr2(v: u64) {
    // SAFETY: writing CR2 has no effect beyond the register.
    unsafe { asm!("mov cr2, {}", in(reg) v, options(nomem, nostack)) };
}

extern "C" {
    /// Returns 0 after a VM exit, 1 for VMfailInvalid, 2 for VMfailValid.
    fn vmx_enter(gprs: u64, launched: u64) -> u64;
}

core::arch::global_asm!(
    r#"
    .section .text
    .global vmx_enter
vmx_enter:
    push rbp
    push rbx
    push r12
    push r13
    push r14
    push r15
    push rdi
    mov rax, 0x6c14
    vmwrite rax, rsp
    lea rcx, [rip + 2f]
    mov rax, 0x6c16
    vmwrite rax, rcx
    cmp rsi, 0
    mov rax, [rdi + 0]
    mov rcx, [rdi + 8]
    mov rdx, [rdi + 16]
    mov rbx, [rdi + 24]
    mov rbp, [rdi + 40]
    mov rsi, [rdi + 48]
    mov r8, [rdi + 64]
    mov r9, [rdi + 72]
    mov r10, [rdi + 80]
    mov r11, [rdi + 88]
    mov r12, [rdi + 96]
    mov r13, [rdi + 104]
    mov r14, [rdi + 112]
    mov r15, [rdi + 120]
    mov rdi, [rdi + 56]
    je 3f
    vmresume
    jmp 4f
3:
    vmlaunch
4:
    mov eax, 2
    jnc 5f
    mov eax, 1
5:
    add rsp, 8
    jmp 6f
2:
    push rdi
    mov rdi, [rsp + 8]
    mov [rdi + 0], rax
    mov [rdi + 8], rcx
    mov [rdi + 16], rdx
    mov [rdi + 24], rbx
    mov [rdi + 40], rbp
    mov [rdi + 48], rsi
    mov [rdi + 64], r8
    mov [rdi + 72], r9
    mov [rdi + 80], r10
    mov [rdi + 88], r11
    mov [rdi + 96], r12
    mov [rdi + 104], r13
    mov [rdi + 112], r14
    mov [rdi + 120], r15
    pop rax
    mov [rdi + 56], rax
    add rsp, 8
    xor eax, eax
6:
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbx
    pop rbp
    ret
"#
);
