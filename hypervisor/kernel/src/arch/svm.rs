//! AMD SVM: detection, per-CPU enablement, the VMCB of a vCPU and the guest entry.
//!
//! Owns the VMCB layout and the VMRUN path; knows nothing of capabilities or the
//! scheduler (that is `vcpu.rs`). The VMCB lives in a kernel page reached through
//! `phys`; every field is written only with values the VMM may choose freely (the
//! CPU checks the guest state at VMRUN and reports `VMEXIT_INVALID`) or that the
//! kernel fixes (intercepts, ASID, nested paging).

use super::cpu::{cpuid, rdmsr, wrmsr, MSR_EFER};
use super::phys;
use hyper_abi::vcpu::{control, exit_kind, field, vendor, DescTable, ExitInfo, Segment, VcpuState};

const MSR_VM_HSAVE_PA: u32 = 0xc001_0117;
const EFER_SVME: u64 = 1 << 12;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
const CR0_PG: u64 = 1 << 31;

// control area
const INTERCEPT_CR: u64 = 0x000;
const INTERCEPT_MISC1: u64 = 0x00c;
const INTERCEPT_MISC2: u64 = 0x010;
const IOPM_BASE: u64 = 0x040;
const MSRPM_BASE: u64 = 0x048;
const TSC_OFFSET: u64 = 0x050;
const ASID: u64 = 0x058;
const TLB_CONTROL: u64 = 0x05c;
const INT_CTL: u64 = 0x060;
const INT_VECTOR: u64 = 0x064;
const INT_SHADOW: u64 = 0x068;
const EXITCODE: u64 = 0x070;
const EXITINFO1: u64 = 0x078;
const EXITINFO2: u64 = 0x080;
const EXITINTINFO: u64 = 0x088;
const NP_ENABLE: u64 = 0x090;
const EVENTINJ: u64 = 0x0a8;
const N_CR3: u64 = 0x0b0;
const CLEAN: u64 = 0x0c0;
const NEXT_RIP: u64 = 0x0c8;
// state save area
const ES: u64 = 0x400;
const CS: u64 = 0x410;
const SS: u64 = 0x420;
const DS: u64 = 0x430;
const FS: u64 = 0x440;
const GS: u64 = 0x450;
const GDTR: u64 = 0x460;
const LDTR: u64 = 0x470;
const IDTR: u64 = 0x480;
const TR: u64 = 0x490;
const CPL: u64 = 0x4cb;
const EFER: u64 = 0x4d0;
const CR4: u64 = 0x548;
const CR3: u64 = 0x550;
const CR0: u64 = 0x558;
const DR7: u64 = 0x560;
const DR6: u64 = 0x568;
const RFLAGS: u64 = 0x570;
const RIP: u64 = 0x578;
const RSP: u64 = 0x5d8;
const RAX: u64 = 0x5f8;
const STAR: u64 = 0x600;
const LSTAR: u64 = 0x608;
const CSTAR: u64 = 0x610;
const SFMASK: u64 = 0x618;
const KERNEL_GS_BASE: u64 = 0x620;
const SYSENTER_CS: u64 = 0x628;
const SYSENTER_ESP: u64 = 0x630;
const SYSENTER_EIP: u64 = 0x638;
const CR2: u64 = 0x640;
const G_PAT: u64 = 0x668;

// intercept bits (MISC1)
const I_INTR: u32 = 1 << 0;
const I_NMI: u32 = 1 << 1;
const I_SMI: u32 = 1 << 2;
const I_INIT: u32 = 1 << 3;
const I_VINTR: u32 = 1 << 4;
const I_CPUID: u32 = 1 << 18;
const I_IRET: u32 = 1 << 20;
const I_INVD: u32 = 1 << 22;
const I_PAUSE: u32 = 1 << 23;
const I_HLT: u32 = 1 << 24;
const I_INVLPG: u32 = 1 << 25;
const I_INVLPGA: u32 = 1 << 26;
const I_IOIO: u32 = 1 << 27;
const I_MSR: u32 = 1 << 28;
const I_TASK_SWITCH: u32 = 1 << 29;
const I_FERR_FREEZE: u32 = 1 << 30;
const I_SHUTDOWN: u32 = 1 << 31;
// MISC2: VMRUN VMMCALL VMLOAD VMSAVE STGI CLGI SKINIT, ICEBP(8) no, WBINVD, MONITOR, MWAIT, XSETBV
const I2_DEFAULT: u32 = 0x7f | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 12) | (1 << 13);
const I1_DEFAULT: u32 = I_INTR
    | I_NMI
    | I_SMI
    | I_INIT
    | I_CPUID
    | I_INVD
    | I_HLT
    | I_INVLPGA
    | I_IOIO
    | I_MSR
    | I_TASK_SWITCH
    | I_FERR_FREEZE
    | I_SHUTDOWN;

// INT_CTL bits: the virtual interrupt (V_IRQ) with its priority, ignoring the guest's TPR
const V_IRQ: u32 = 1 << 8;
const V_INTR_PRIO_MAX: u32 = 0xf << 16;
const V_IGN_TPR: u32 = 1 << 20;
const V_INTR_MASKING: u32 = 1 << 24;

// EVENTINJ: valid bit and event type (0: external interrupt)
const EVENT_VALID: u64 = 1 << 31;
const EVENT_TYPE: u64 = 7 << 8;

/// Exit codes the kernel handles itself (a host interrupt arrived).
const EXIT_INTR: u64 = 0x60;
const EXIT_NMI: u64 = 0x61;
const EXIT_SMI: u64 = 0x62;
const EXIT_INVALID: u64 = u64::MAX;

/// What SVM offers on this CPU.
pub struct Features {
    pub asids: u32,
    pub nrip: bool,
}

/// SVM with nested paging, or why not.
pub fn detect() -> Result<Features, &'static str> {
    if cpuid(0x8000_0000, 0)[0] < 0x8000_000a || cpuid(0x8000_0001, 0)[2] & (1 << 2) == 0 {
        return Err("no SVM");
    }
    // VM_CR.SVMDIS: disabled by the firmware
    if rdmsr(0xc001_0114) & (1 << 4) != 0 {
        return Err("SVM disabled by the firmware");
    }
    let a = cpuid(0x8000_000a, 0);
    if a[3] & 1 == 0 {
        return Err("SVM without nested paging");
    }
    Ok(Features {
        asids: a[1].max(1),
        nrip: a[3] & (1 << 3) != 0,
    })
}

/// Per-CPU SVM data: the host save area and the page host state is VMSAVEd to.
#[derive(Clone, Copy)]
pub struct CpuArea {
    host_vmsave: u64,
}

/// Enables SVM on this CPU. `alloc` gives zeroed kernel pages.
pub fn init_cpu(alloc: impl Fn() -> Option<u64>) -> Option<CpuArea> {
    let hsave = alloc()?;
    let host_vmsave = alloc()?;
    wrmsr(MSR_EFER, rdmsr(MSR_EFER) | EFER_SVME);
    wrmsr(MSR_VM_HSAVE_PA, hsave);
    Some(CpuArea { host_vmsave })
}

/// Pages shared by all vCPUs: the I/O and MSR permission maps (all accesses exit,
/// except the FS/GS base MSRs, which live in the VMCB).
pub struct Shared {
    iopm: u64,
    msrpm: u64,
}

/// Allocates the permission maps; `alloc_contig(pages)` gives contiguous zeroed pages.
pub fn init_shared(alloc_contig: impl Fn(usize) -> Option<u64>) -> Option<Shared> {
    let iopm = alloc_contig(3)?;
    let msrpm = alloc_contig(2)?;
    phys::slice_mut(iopm, 3 * 4096).fill(0xff);
    let m = phys::slice_mut(msrpm, 2 * 4096);
    m.fill(0xff);
    // MSRs 0xc000_0000.. at byte 0x800, two bits (read, write) each
    for msr in [0xc000_0100u32, 0xc000_0101, 0xc000_0102] {
        let bit = (msr - 0xc000_0000) as usize * 2;
        m[0x800 + bit / 8] &= !(3 << (bit % 8));
    }
    Some(Shared { iopm, msrpm })
}

/// A vCPU's hardware state: its VMCB page and the guest registers the VMCB lacks.
#[derive(Clone, Copy)]
pub struct Vmcb {
    pub pa: u64,
    /// Guest general registers (rax and rsp are in the VMCB and unused here).
    pub gprs: u64,
}

/// A kernel page of a vCPU (its VMCB or register page) as bytes. Only the vCPU's
/// CPU touches these pages, and never while its guest runs.
type Page = [u8; 4096];

fn page(pa: u64) -> &'static mut Page {
    phys::slice_mut(pa, 4096)
        .try_into()
        .expect("a page is 4096 bytes")
}

fn r64(v: &Page, off: u64) -> u64 {
    let o = off as usize;
    u64::from_le_bytes(v[o..o + 8].try_into().expect("8 bytes"))
}
fn w64(v: &mut Page, off: u64, x: u64) {
    let o = off as usize;
    v[o..o + 8].copy_from_slice(&x.to_le_bytes());
}
fn r32(v: &Page, off: u64) -> u32 {
    let o = off as usize;
    u32::from_le_bytes(v[o..o + 4].try_into().expect("4 bytes"))
}
fn w32(v: &mut Page, off: u64, x: u32) {
    let o = off as usize;
    v[o..o + 4].copy_from_slice(&x.to_le_bytes());
}
fn r16(v: &Page, off: u64) -> u16 {
    let o = off as usize;
    u16::from_le_bytes(v[o..o + 2].try_into().expect("2 bytes"))
}
fn w16(v: &mut Page, off: u64, x: u16) {
    let o = off as usize;
    v[o..o + 2].copy_from_slice(&x.to_le_bytes());
}

fn seg_read(v: &Page, off: u64) -> Segment {
    Segment {
        selector: r16(v, off),
        ar: r16(v, off + 2),
        limit: r32(v, off + 4),
        base: r64(v, off + 8),
    }
}

/// Sign-extends bit 47: VMRUN/VMLOAD canonicalize segment and table bases and the
/// MSR addresses; doing it here keeps emulators that fault instead (QEMU's TCG) on
/// the same path as the hardware.
fn canonical(a: u64) -> u64 {
    ((a << 16) as i64 >> 16) as u64
}

fn seg_write(v: &mut Page, off: u64, s: &Segment) {
    w16(v, off, s.selector);
    w16(v, off + 2, s.ar & 0xfff);
    w32(v, off + 4, s.limit);
    w64(v, off + 8, canonical(s.base));
}
fn dt_read(v: &Page, off: u64) -> DescTable {
    DescTable {
        limit: r32(v, off + 4) & 0xffff,
        _pad: 0,
        base: r64(v, off + 8),
    }
}
fn dt_write(v: &mut Page, off: u64, d: &DescTable) {
    w32(v, off + 4, d.limit & 0xffff);
    w64(v, off + 8, canonical(d.base));
}

impl Vmcb {
    /// Sets up a VMCB (`pa`, zeroed page) for a guest with ASID `asid` and nested
    /// page table `ncr3`; the guest state is `reset`.
    pub fn new(
        pa: u64,
        gprs: u64,
        shared: &Shared,
        asid: u32,
        ncr3: u64,
        reset: &VcpuState,
    ) -> Self {
        let vmcb = Vmcb { pa, gprs };
        let v = page(pa);
        w32(v, INTERCEPT_MISC1, I1_DEFAULT);
        w32(v, INTERCEPT_MISC2, I2_DEFAULT);
        w64(v, IOPM_BASE, shared.iopm);
        w64(v, MSRPM_BASE, shared.msrpm);
        w32(v, ASID, asid);
        // V_INTR_MASKING: the guest's IF masks only virtual interrupts
        w64(v, INT_CTL, V_INTR_MASKING as u64);
        w64(v, NP_ENABLE, 1);
        w64(v, N_CR3, ncr3);
        w64(v, DR6, 0xffff_0ff0);
        vmcb.load(reset, field::ALL);
        vmcb
    }

    /// Writes the `charged` groups of `s` into the VMCB. Values the kernel must
    /// police were checked by the caller; the CPU checks the rest at VMRUN.
    pub fn load(&self, s: &VcpuState, charged: u64) {
        let v = page(self.pa);
        if charged & field::GPR != 0 {
            w64(v, RAX, s.gpr[0]);
            w64(v, RSP, s.gpr[4]);
            let g = page(self.gprs);
            for (i, &x) in s.gpr.iter().enumerate() {
                w64(g, 8 * i as u64, x);
            }
        }
        if charged & field::RIP != 0 {
            w64(v, RIP, s.rip);
            w64(v, RFLAGS, s.rflags);
        }
        if charged & field::CR != 0 {
            w64(v, CR0, s.cr0);
            w64(v, CR2, s.cr2);
            w64(v, CR3, s.cr3);
            w64(v, CR4, s.cr4);
        }
        if charged & field::EFER != 0 {
            w64(v, EFER, s.efer | EFER_SVME);
        }
        if charged & (field::CR | field::EFER) != 0 {
            // EFER.LMA is the CPU's: long mode is active iff LME and paging are on
            let efer = r64(v, EFER) & !EFER_LMA;
            let lma = efer & EFER_LME != 0 && r64(v, CR0) & CR0_PG != 0;
            w64(v, EFER, efer | if lma { EFER_LMA } else { 0 });
        }
        if charged & field::DR7 != 0 {
            w64(v, DR7, s.dr7);
        }
        if charged & field::SEG != 0 {
            seg_write(v, ES, &s.es);
            seg_write(v, CS, &s.cs);
            seg_write(v, SS, &s.ss);
            seg_write(v, DS, &s.ds);
        }
        if charged & (field::SEG | field::CR) != 0 {
            // CPL follows SS.DPL in protected mode, 0 in real mode
            let cpl = if r64(v, CR0) & 1 != 0 {
                ((r16(v, SS + 2) >> 5) & 3) as u8
            } else {
                0
            };
            v[CPL as usize] = cpl;
        }
        if charged & field::FS_GS != 0 {
            seg_write(v, FS, &s.fs);
            seg_write(v, GS, &s.gs);
        }
        if charged & field::TR_LDTR != 0 {
            seg_write(v, TR, &s.tr);
            seg_write(v, LDTR, &s.ldtr);
        }
        if charged & field::DESC != 0 {
            dt_write(v, GDTR, &s.gdtr);
            dt_write(v, IDTR, &s.idtr);
        }
        if charged & field::SYSENTER != 0 {
            w64(v, SYSENTER_CS, s.sysenter_cs);
            w64(v, SYSENTER_ESP, canonical(s.sysenter_esp));
            w64(v, SYSENTER_EIP, canonical(s.sysenter_eip));
        }
        if charged & field::SYSCALL != 0 {
            w64(v, STAR, s.star);
            w64(v, LSTAR, canonical(s.lstar));
            w64(v, CSTAR, canonical(s.cstar));
            w64(v, SFMASK, s.fmask & 0xffff_ffff);
            w64(v, KERNEL_GS_BASE, canonical(s.kernel_gs_base));
        }
        if charged & field::PAT != 0 {
            w64(v, G_PAT, s.pat);
        }
        if charged & field::TSC_OFFSET != 0 {
            w64(v, TSC_OFFSET, s.tsc_offset);
        }
        if charged & field::INJECT != 0 {
            w64(v, EVENTINJ, s.inject as u64 | (s.inject_error as u64) << 32);
        }
        if charged & field::INTR_STATE != 0 {
            w64(v, INT_SHADOW, (s.interruptibility & 3 != 0) as u64);
        }
        if charged & field::CONTROLS != 0 {
            let c = s.controls;
            let mut m1 = I1_DEFAULT;
            let mut int_ctl = V_INTR_MASKING;
            if c & control::INTR_WINDOW != 0 {
                // a virtual interrupt that ignores the TPR: its delivery exits (VINTR)
                m1 |= I_VINTR;
                int_ctl |= V_IRQ | V_IGN_TPR | V_INTR_PRIO_MAX;
            }
            if c & control::NMI_WINDOW != 0 {
                m1 |= I_IRET;
            }
            if c & control::INVLPG_EXITS != 0 {
                m1 |= I_INVLPG;
            }
            if c & control::PAUSE_EXITS != 0 {
                m1 |= I_PAUSE;
            }
            w32(v, INTERCEPT_MISC1, m1);
            w64(v, INT_CTL, int_ctl as u64);
            // CR0, CR3, CR4 writes (the write intercepts are bits 16..31)
            let cr = if c & control::CR_EXITS != 0 {
                (1 | 1 << 3 | 1 << 4) << 16
            } else {
                0
            };
            w32(v, INTERCEPT_CR, cr);
        }
    }

    /// Copies the `groups` of the guest state out of the VMCB (into the state page).
    pub fn store(&self, s: &mut VcpuState, groups: u64, controls: u64, xcr0: u64) {
        let v = page(self.pa);
        if groups & field::GPR != 0 {
            let g = page(self.gprs);
            for (i, x) in s.gpr.iter_mut().enumerate() {
                *x = r64(g, 8 * i as u64);
            }
            s.gpr[0] = r64(v, RAX);
            s.gpr[4] = r64(v, RSP);
        }
        if groups & field::RIP != 0 {
            s.rip = r64(v, RIP);
            s.rflags = r64(v, RFLAGS);
        }
        if groups & field::CR != 0 {
            s.cr0 = r64(v, CR0);
            s.cr2 = r64(v, CR2);
            s.cr3 = r64(v, CR3);
            s.cr4 = r64(v, CR4);
        }
        if groups & field::EFER != 0 {
            s.efer = r64(v, EFER) & !EFER_SVME;
        }
        if groups & field::DR7 != 0 {
            s.dr7 = r64(v, DR7);
        }
        if groups & field::SEG != 0 {
            s.es = seg_read(v, ES);
            s.cs = seg_read(v, CS);
            s.ss = seg_read(v, SS);
            s.ds = seg_read(v, DS);
        }
        if groups & field::FS_GS != 0 {
            s.fs = seg_read(v, FS);
            s.gs = seg_read(v, GS);
        }
        if groups & field::TR_LDTR != 0 {
            s.tr = seg_read(v, TR);
            s.ldtr = seg_read(v, LDTR);
        }
        if groups & field::DESC != 0 {
            s.gdtr = dt_read(v, GDTR);
            s.idtr = dt_read(v, IDTR);
        }
        if groups & field::SYSENTER != 0 {
            s.sysenter_cs = r64(v, SYSENTER_CS);
            s.sysenter_esp = r64(v, SYSENTER_ESP);
            s.sysenter_eip = r64(v, SYSENTER_EIP);
        }
        if groups & field::SYSCALL != 0 {
            s.star = r64(v, STAR);
            s.lstar = r64(v, LSTAR);
            s.cstar = r64(v, CSTAR);
            s.fmask = r64(v, SFMASK);
            s.kernel_gs_base = r64(v, KERNEL_GS_BASE);
        }
        if groups & field::PAT != 0 {
            s.pat = r64(v, G_PAT);
        }
        if groups & field::XCR0 != 0 {
            s.xcr0 = xcr0;
        }
        if groups & field::TSC_OFFSET != 0 {
            s.tsc_offset = r64(v, TSC_OFFSET);
        }
        if groups & field::INJECT != 0 {
            let inj = r64(v, EVENTINJ);
            s.inject = inj as u32;
            s.inject_error = (inj >> 32) as u32;
            s.inject_len = 0;
        }
        if groups & field::INTR_STATE != 0 {
            s.interruptibility = (r64(v, INT_SHADOW) & 1) as u32;
            s.activity = 0;
        }
        if groups & field::CONTROLS != 0 {
            s.controls = controls;
        }
    }

    /// The exit the last VMRUN ended with, or `None` for a host interrupt (the
    /// kernel takes it and runs the guest again).
    pub fn exit(&self, nrip: bool) -> Option<ExitInfo> {
        let v = page(self.pa);
        let mut code = r64(v, EXITCODE);
        if code as u32 == u32::MAX {
            code = EXIT_INVALID; // -1, which some CPUs store as 32 bits
        }
        if matches!(code, EXIT_INTR | EXIT_NMI | EXIT_SMI) {
            return None;
        }
        let info1 = r64(v, EXITINFO1);
        let info2 = r64(v, EXITINFO2);
        let next = r64(v, NEXT_RIP);
        let rip = r64(v, RIP);
        let instr_len = if nrip && next > rip && next - rip <= 15 {
            next - rip
        } else {
            0
        };
        Some(ExitInfo {
            kind: if code == EXIT_INVALID {
                exit_kind::INVALID_STATE
            } else {
                exit_kind::HARDWARE
            },
            vendor: vendor::SVM,
            raw: code,
            qual: info1,
            info2,
            gpa: if code == 0x400 { info2 } else { 0 },
            gla: 0,
            instr_len,
            intr_info: 0,
            vectoring: r64(v, EXITINTINFO),
        })
    }

    /// Enters the guest; returns at its next exit. `flush` empties the guest's TLB
    /// first (its nested page table lost mappings).
    pub fn run(&self, cpu: &CpuArea, flush: bool) {
        let v = page(self.pa);
        w32(v, TLB_CONTROL, if flush { 1 } else { 0 });
        let as_virq = interrupt_to_virq(v);
        w32(v, CLEAN, 0);
        // SAFETY: the VMCB is a valid, page-aligned VMCB owned by this vCPU, whose
        // intercepts keep every host resource (interrupts, I/O, MSRs, shutdown) with
        // the kernel; `gprs` is a page holding 16 registers; the host save areas were
        // set up by `init_cpu` on this CPU. The assembly restores all host state.
        unsafe { svm_enter(self.pa, phys::to_virt(self.gprs), cpu.host_vmsave) };
        let v = page(self.pa);
        if let Some(event) = as_virq {
            untaken_virq_to_interrupt(v, event);
        }
    }
}

/// Moves an external interrupt the VMM injects (EVENTINJ type 0) into the virtual
/// interrupt (V_IRQ, TPR ignored) and returns the event; `None` leaves EVENTINJ as
/// it is (no event, another type, or an interrupt-window request that needs V_IRQ).
///
/// The VMM injects only when the guest can take an interrupt, so the CPU delivers
/// V_IRQ at once, as it would EVENTINJ. The reason is QEMU's TCG: for EVENTINJ it
/// leaves the vector in `exception_index`, and a kick of that CPU before its next
/// exception delivers the interrupt a second time, ignoring IF (issue 6); V_IRQ goes
/// through its ordinary interrupt path.
fn interrupt_to_virq(v: &mut Page) -> Option<u64> {
    let event = r64(v, EVENTINJ);
    let window = r32(v, INTERCEPT_MISC1) & I_VINTR != 0;
    if event & EVENT_VALID == 0 || event & EVENT_TYPE != 0 || window {
        return None;
    }
    w64(v, EVENTINJ, 0);
    let int_ctl = r32(v, INT_CTL);
    w32(v, INT_CTL, int_ctl | V_IRQ | V_IGN_TPR | V_INTR_PRIO_MAX);
    w32(v, INT_VECTOR, event as u8 as u32);
    Some(event)
}

/// After the exit: a V_IRQ the guest has not taken goes back to EVENTINJ, where the
/// VMM sees it as an injection still pending. A taken one whose delivery an exit
/// interrupted is in EXITINTINFO, as an injected event would be.
fn untaken_virq_to_interrupt(v: &mut Page, event: u64) {
    let int_ctl = r32(v, INT_CTL);
    w32(v, INT_CTL, int_ctl & !(V_IRQ | V_IGN_TPR | V_INTR_PRIO_MAX));
    w32(v, INT_VECTOR, 0);
    if int_ctl & V_IRQ != 0 {
        w64(v, EVENTINJ, event);
    }
}

extern "C" {
    /// `vmcb` and `host_vmsave` are physical addresses, `gprs` a kernel pointer.
    fn svm_enter(vmcb: u64, gprs: u64, host_vmsave: u64);
}

core::arch::global_asm!(
    r#"
    .section .text
    .global svm_enter
svm_enter:
    push rbp
    push rbx
    push r12
    push r13
    push r14
    push r15
    push rdx
    push rdi
    push rsi
    clgi
    sti
    mov rax, rdx
    vmsave rax
    mov rax, rdi
    vmload rax
    mov rcx, [rsi + 8]
    mov rdx, [rsi + 16]
    mov rbx, [rsi + 24]
    mov rbp, [rsi + 40]
    mov rdi, [rsi + 56]
    mov r8, [rsi + 64]
    mov r9, [rsi + 72]
    mov r10, [rsi + 80]
    mov r11, [rsi + 88]
    mov r12, [rsi + 96]
    mov r13, [rsi + 104]
    mov r14, [rsi + 112]
    mov r15, [rsi + 120]
    mov rsi, [rsi + 48]
    vmrun rax
    push rsi
    mov rsi, [rsp + 8]
    mov [rsi + 8], rcx
    mov [rsi + 16], rdx
    mov [rsi + 24], rbx
    mov [rsi + 40], rbp
    mov [rsi + 56], rdi
    mov [rsi + 64], r8
    mov [rsi + 72], r9
    mov [rsi + 80], r10
    mov [rsi + 88], r11
    mov [rsi + 96], r12
    mov [rsi + 104], r13
    mov [rsi + 112], r14
    mov [rsi + 120], r15
    pop rax
    mov [rsi + 48], rax
    mov rax, [rsp + 8]
    vmsave rax
    mov rax, [rsp + 16]
    vmload rax
    cli
    stgi
    add rsp, 24
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbx
    pop rbp
    ret
"#
);
