//! Virtual machines and vCPUs, vendor-neutral: the VM tag (ASID/VPID) of a VM
//! PD, vCPU creation, the `vcpu_run` hypercall (Hedron-style: one blocking call per
//! exit, see `docs/vcpu.md`), recall, and freeing hardware state that a CPU may
//! still be using. The vendor code (`arch::svm`, `arch::vmx`) owns the VMCB/VMCS.
//!
//! The guest runs *without* the big kernel lock: `run` prepares an [`Entry`] under
//! the lock, `enter` runs the guest, and `finish` (under the lock again) writes the
//! exit into the state page. Everything `enter` touches is a copy or a kernel page
//! that cannot be freed meanwhile: destroying a vCPU, or its VM, first makes the
//! CPU that runs it leave the guest (and, on VMX, VMCLEAR the VMCS) through a
//! shootdown (`shootdown`), and waits for it.

use crate::arch::{cpu, paging, phys, smp, svm, vmx};
use crate::hypercall::Outcome;
use crate::object::{Ec, EcId, EcKind, EcState, KResult, Kernel, ObjRef, PdId};
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use hyper_abi::vcpu::{control, exit_kind, field, DescTable, ExitInfo, Segment, VcpuState};
use hyper_abi::{obj_rights, Status};

/// Kernel memory charged for a vCPU (VMCB/VMCS, register page, state page, EC).
pub const KMEM_VCPU: u64 = 32 * 1024;

/// The virtualization extension the kernel found at boot.
enum Vendor {
    Svm(svm::Features, svm::Shared),
    Vmx(vmx::Features, vmx::Shared),
}

static VENDOR: spin::Once<Option<Vendor>> = spin::Once::new();

/// Per-CPU state of the vendor code (only the owning CPU touches its slot).
#[derive(Clone, Copy)]
enum CpuArea {
    Svm(svm::CpuArea),
    Vmx(vmx::CpuArea),
}

/// The TSC_AUX value last written on each CPU.
static TSC_AUX_LOADED: [AtomicU64; crate::acpi::MAX_CPUS] =
    [const { AtomicU64::new(0) }; crate::acpi::MAX_CPUS];

static CPU_AREAS: [spin::Mutex<Option<CpuArea>>; crate::acpi::MAX_CPUS] =
    [const { spin::Mutex::new(None) }; crate::acpi::MAX_CPUS];

fn vendor() -> Option<&'static Vendor> {
    VENDOR.get().and_then(|v| v.as_ref())
}

/// Detects SVM+NPT or VMX+EPT+unrestricted guest (on the boot CPU) and says which.
pub fn detect() {
    VENDOR.call_once(|| {
        let svm = svm::detect();
        let vmx = vmx::detect();
        let found = match (svm, vmx) {
            (Ok(f), _) => svm::init_shared(alloc_pages).map(|s| Vendor::Svm(f, s)),
            (_, Ok(f)) => vmx::init_shared(crate::trap::alloc_page).map(|s| Vendor::Vmx(f, s)),
            (Err(a), Err(b)) => {
                crate::kprintln!(
                    "vcpu: no hardware virtualization ({a}; {b}): creating VMs fails with no-feature, everything else runs"
                );
                return None;
            }
        };
        match &found {
            Some(Vendor::Svm(f, _)) => crate::kprintln!(
                "vcpu: AMD SVM with nested paging, {} ASIDs{}",
                f.asids,
                if f.nrip { ", next-RIP saving" } else { "" }
            ),
            Some(Vendor::Vmx(f, _)) => crate::kprintln!(
                "vcpu: Intel VMX with EPT{}, unrestricted guest, VPID",
                if f.ept_large { " (2 MiB pages)" } else { "" }
            ),
            None => crate::kprintln!("vcpu: no memory for the permission bitmaps, no VMs"),
        }
        found
    });
}

/// Contiguous zeroed kernel pages (the heap is physically contiguous).
fn alloc_pages(n: usize) -> Option<u64> {
    let layout = core::alloc::Layout::from_size_align(4096 * n, 4096).ok()?;
    // SAFETY: the layout has a non-zero size.
    let p = unsafe { alloc::alloc::alloc_zeroed(layout) };
    (!p.is_null()).then(|| phys::to_phys(p as u64))
}

/// Turns the extension on for this CPU (every CPU calls this once at start).
pub fn init_cpu(cpu: usize) {
    let area = match vendor() {
        Some(Vendor::Svm(..)) => svm::init_cpu(crate::trap::alloc_page).map(CpuArea::Svm),
        Some(Vendor::Vmx(f, _)) => vmx::init_cpu(f, crate::trap::alloc_page).map(CpuArea::Vmx),
        None => return,
    };
    if area.is_none() {
        crate::kprintln!("vcpu: CPU {cpu} could not enable virtualization; no vCPUs there");
    }
    *CPU_AREAS[cpu].lock() = area;
}

/// The guest-physical space format a new VM gets, or no-feature.
pub fn vm_format() -> KResult<paging::Format> {
    match vendor() {
        Some(Vendor::Svm(..)) => Ok(paging::Format::Host),
        Some(Vendor::Vmx(f, _)) => Ok(paging::Format::Ept { large: f.ept_large }),
        None => Err(Status::NoFeature),
    }
}

/// What makes a PD a VM: its tag for tagged TLBs (SVM ASID / VMX VPID).
pub struct Vm {
    pub tag: u32,
    /// The CPUs (bit n: CPU n) running one of its vCPUs, from `prepare` to `finish`:
    /// those a revocation must make leave the guest.
    pub running_on: u64,
}

/// Allocator of VM tags, and the capability check of the last `vcpu_run` per CPU.
#[derive(Default)]
pub struct VirtState {
    tags: Vec<bool>,
    /// Per CPU: (caller PD, selector, vCPU) of the last `vcpu_run` whose capability
    /// check passed. Valid until an object capability is removed anywhere (rights
    /// only shrink by removal), so the mapping-database lookup is skipped on the
    /// round trips of a VMM that keeps running the same vCPU.
    checked: Vec<Option<(PdId, u64, EcId)>>,
    /// Per CPU: the vCPU that entered the guest there last. The guest TLB is
    /// tagged by VM (ASID, VPID), not by vCPU: a vCPU entering after another
    /// vCPU of its VM on the same CPU would use that one's translations (made
    /// with the other's CR3), so it flushes first.
    last_entered: Vec<Option<EcId>>,
}

impl VirtState {
    /// A free tag (1..limit), or out-of-memory when all are in use.
    pub fn alloc_tag(&mut self) -> KResult<Vm> {
        let limit = match vendor() {
            Some(Vendor::Svm(f, _)) => f.asids as usize,
            Some(Vendor::Vmx(..)) => 1 << 16,
            None => return Err(Status::NoFeature),
        };
        if let Some(i) = self.tags.iter().skip(1).position(|used| !used) {
            self.tags[i + 1] = true;
            return Ok(Vm {
                tag: i as u32 + 1,
                running_on: 0,
            });
        }
        let next = self.tags.len().max(1);
        if next >= limit {
            return Err(Status::OutOfMemory);
        }
        self.tags.resize(next + 1, false);
        self.tags[next] = true;
        Ok(Vm {
            tag: next as u32,
            running_on: 0,
        })
    }

    /// Records that `vcpu` enters on `cpu`; true if another vCPU entered
    /// there last (then the entry must flush the guest TLB).
    fn switch_to(&mut self, cpu: usize, vcpu: EcId) -> bool {
        if self.last_entered.len() <= cpu {
            self.last_entered.resize(cpu + 1, None);
        }
        self.last_entered[cpu].replace(vcpu) != Some(vcpu)
    }

    /// Object capabilities were removed: forget the checks made so far.
    pub fn capabilities_removed(&mut self) {
        self.checked.clear();
    }

    /// The vCPU behind `sel` of `pd` with the control right, using the per-CPU cache.
    fn vcpu_cap(k: &mut Kernel, cpu: usize, pd: PdId, sel: u64) -> KResult<EcId> {
        if let Some(Some((p, s, id))) = k.virt.checked.get(cpu) {
            if *p == pd && *s == sel {
                return Ok(*id);
            }
        }
        let id = k.cap_ec(pd, sel, obj_rights::CTRL)?;
        if k.virt.checked.len() <= cpu {
            k.virt.checked.resize(cpu + 1, None);
        }
        k.virt.checked[cpu] = Some((pd, sel, id));
        Ok(id)
    }

    pub fn free_tag(&mut self, vm: &Vm) {
        if let Some(t) = self.tags.get_mut(vm.tag as usize) {
            *t = false;
        }
    }
}

/// The vendor part of a vCPU: plain data (page addresses and a few flags), copied
/// out for the unlocked guest run and back afterwards.
#[derive(Clone, Copy)]
enum Hw {
    Svm(svm::Vmcb),
    Vmx(vmx::Vmcs),
}

/// The vCPU part of an EC.
pub struct Vcpu {
    hw: Hw,
    /// Kernel pages of `hw` (VMCB/VMCS and the register page).
    pages: [u64; 2],
    /// The state page: physical address, and where it is mapped in `owner`.
    state_pa: u64,
    state_va: u64,
    owner: PdId,
    startup: bool,
    running: bool,
    controls: u64,
    xcr0: u64,
    tsc_aux: u64,
    tlb_seen: u64,
    /// Groups loaded from the state page that no exit has written back yet (the
    /// kernel may have adjusted them: canonical bases, EFER.LMA).
    unpublished: u64,
}

/// A guest run prepared under the lock.
pub struct Entry {
    vcpu: EcId,
    hw: Hw,
    flush: bool,
    xcr0: u64,
    tsc_aux: u64,
}

/// The state of a CPU after INIT (real mode at f000:fff0).
fn reset_state() -> VcpuState {
    let seg = |ar: u16| Segment {
        selector: 0,
        ar,
        limit: 0xffff,
        base: 0,
    };
    let mut s = VcpuState {
        rip: 0xfff0,
        rflags: 2,
        cr0: 0x6000_0010,
        dr7: 0x400,
        es: seg(0x93),
        cs: Segment {
            selector: 0xf000,
            ar: 0x9b,
            limit: 0xffff,
            base: 0xffff_0000,
        },
        ss: seg(0x93),
        ds: seg(0x93),
        fs: seg(0x93),
        gs: seg(0x93),
        tr: seg(0x8b),
        ldtr: seg(0x82),
        gdtr: DescTable {
            limit: 0xffff,
            _pad: 0,
            base: 0,
        },
        idtr: DescTable {
            limit: 0xffff,
            _pad: 0,
            base: 0,
        },
        pat: 0x0007_0406_0007_0406,
        xcr0: 1,
        ..Default::default()
    };
    s.gpr[2] = 0x600; // rdx: a family-6 signature
    s
}

/// `create_ec` of kind Vcpu: a vCPU of VM `vm_sel` on `cpu`, its state page mapped
/// at `state_va` in the creating PD `pd`.
pub fn create(
    k: &mut Kernel,
    pd: PdId,
    dst: u64,
    vm_sel: u64,
    cpu: usize,
    state_va: u64,
) -> KResult<()> {
    let vendor = vendor().ok_or(Status::NoFeature)?;
    k.sel_free(pd, dst)?;
    let vm = k.cap_pd(pd, vm_sel, obj_rights::CTRL)?;
    let tag = match k.pds.get(vm).and_then(|p| p.vm.as_ref()) {
        Some(v) => v.tag,
        None => return Err(Status::BadParameter),
    };
    if cpu >= k.sched.cpus.len() || !crate::trap::cpu_online(cpu) {
        return Err(Status::BadCpu);
    }
    if CPU_AREAS[cpu].lock().is_none() {
        return Err(Status::NoFeature);
    }
    if state_va == 0 || state_va & 0xfff != 0 || state_va >= paging::USER_END {
        return Err(Status::BadParameter);
    }
    if k.mem.lookup(pd, state_va >> 12).is_some() {
        return Err(Status::Occupied);
    }
    k.charge(pd, KMEM_VCPU)?;
    let pages = [
        crate::trap::alloc_page(),
        crate::trap::alloc_page(),
        crate::trap::alloc_page(),
    ];
    let [Some(hw_pa), Some(gprs), Some(state_pa)] = pages else {
        pages.into_iter().flatten().for_each(crate::trap::free_page);
        k.uncharge(pd, KMEM_VCPU);
        return Err(Status::OutOfMemory);
    };
    let undo = |k: &mut Kernel| {
        for p in [hw_pa, gprs, state_pa] {
            crate::trap::free_page(p);
        }
        k.uncharge(pd, KMEM_VCPU);
    };
    let root = k.pds.get(vm).expect("checked").space.root();
    let reset = reset_state();
    let here = smp::cpu_id();
    let hw = {
        let mut area = CPU_AREAS[here].lock();
        match (vendor, area.as_mut()) {
            (Vendor::Svm(_, shared), _) => Some(Hw::Svm(svm::Vmcb::new(
                hw_pa, gprs, shared, tag, root, &reset,
            ))),
            (Vendor::Vmx(f, shared), Some(CpuArea::Vmx(a))) => {
                vmx::Vmcs::new(hw_pa, gprs, a, f, shared, tag as u16, root, &reset).map(Hw::Vmx)
            }
            _ => None,
        }
    };
    let Some(hw) = hw else {
        undo(k);
        return Err(Status::NoFeature);
    };
    let rw = hyper_abi::mem_rights::R | hyper_abi::mem_rights::W;
    let mapped = k.mem.insert_root(pd, state_va >> 12, 0, rw, state_pa >> 12);
    let owner = k.pds.get_mut(pd).expect("caller exists");
    if mapped.is_err()
        || owner
            .space
            .map(state_va, state_pa, 0, paging::W | paging::NX)
            .is_err()
    {
        if mapped.is_ok() {
            let _ = k.mem.revoke(pd, state_va >> 12, 0, true);
        }
        undo(k);
        return Err(Status::OutOfMemory);
    }
    phys::write(state_pa, reset);
    let mut regs = Ec::new_regs(0, 0);
    regs.rflags = 2;
    let id = k.ecs.insert(Ec {
        pd: vm,
        cpu,
        kind: EcKind::Vcpu,
        evt_base: 0,
        utcb: None,
        regs,
        fpu: Box::new(cpu::FpuState::initial()),
        state: EcState::Idle,
        stack: 0,
        caller: None,
        callee: None,
        waiters: Default::default(),
        serving_exception: false,
        sc: None,
        recall: false,
        root_cap: (pd, dst),
        deadline: None,
        fault_addr: 0,
        reflect_syscalls: false,
        fs_base: 0,
        zombie: false,
        vcpu: Some(Box::new(Vcpu {
            hw,
            pages: [hw_pa, gprs],
            state_pa,
            state_va,
            owner: pd,
            startup: true,
            running: false,
            controls: 0,
            xcr0: 1,
            tsc_aux: 0,
            // never a generation: the first entry flushes, as the VM's tag and the
            // root of its tables may have been a destroyed VM's, whose translations
            // this CPU may still cache
            tlb_seen: u64::MAX,
            unpublished: 0,
        })),
    });
    k.install_root(pd, dst, ObjRef::Ec(id))
        .expect("selector checked free");
    Ok(())
}

/// Writes `exit` and the `groups` of the guest state into the state page (the
/// other groups there are still what an earlier exit wrote).
fn publish(v: &mut Vcpu, exit: ExitInfo, groups: u64) {
    let s = phys::view_mut::<VcpuState>(v.state_pa);
    s.exit = exit;
    match &mut v.hw {
        Hw::Svm(h) => h.store(s, groups, v.controls, v.xcr0),
        Hw::Vmx(h) => {
            if let Some(CpuArea::Vmx(a)) = CPU_AREAS[smp::cpu_id()].lock().as_mut() {
                h.activate(a);
                h.store(s, groups, v.controls, v.xcr0);
            }
        }
    }
    if groups & field::TSC_AUX != 0 {
        s.tsc_aux = v.tsc_aux;
    }
    s.valid = groups;
    v.unpublished &= !groups;
}

fn synthetic(kind: u32, qual: u64) -> ExitInfo {
    ExitInfo {
        kind,
        vendor: match vendor() {
            Some(Vendor::Svm(..)) => hyper_abi::vcpu::vendor::SVM,
            _ => hyper_abi::vcpu::vendor::VMX,
        },
        qual,
        ..Default::default()
    }
}

/// `vcpu_run(sel, charged)` by `caller`: checks, loads the charged state and
/// prepares the guest entry, or answers at once (startup, recall, refused state).
pub fn run(k: &mut Kernel, pd: PdId, sel: u64, charged: u64) -> Outcome {
    match prepare(k, pd, sel, charged) {
        Ok(Some(entry)) => Outcome::Guest(entry),
        Ok(None) => Outcome::Done(Status::Success, 0, 0),
        Err(s) => Outcome::Done(s, 0, 0),
    }
}

fn prepare(k: &mut Kernel, pd: PdId, sel: u64, charged: u64) -> KResult<Option<Entry>> {
    let Some(vendor) = vendor() else {
        return Err(Status::NoFeature);
    };
    let here = smp::cpu_id();
    let id = VirtState::vcpu_cap(k, here, pd, sel)?;
    let Some(e) = k.ecs.get(id).filter(|e| e.vcpu.is_some()) else {
        return Err(Status::BadCapability);
    };
    if e.cpu != here {
        return Err(Status::BadCpu);
    }
    if e.state == EcState::Dead || k.pds.get(e.pd).is_none() {
        return Err(Status::Aborted);
    }
    if charged & !field::ALL != 0 {
        return Err(Status::BadParameter);
    }
    let gen = k.pds.get(e.pd).expect("checked").tlb_gen;
    let e = k.ecs.get_mut(id).expect("checked");
    let recall = core::mem::take(&mut e.recall);
    let v = e.vcpu.as_mut().expect("checked");
    if v.startup {
        v.startup = false;
        publish(v, synthetic(exit_kind::STARTUP, 0), field::ALL);
        // the first exit writes every group again: a VMM may charge its first
        // state without reading this page (as vcpu-api does)
        v.unpublished = field::ALL;
        return Ok(None);
    }
    // The VMM's other threads may write the page meanwhile: values the kernel
    // polices are checked and loaded from one copy; others are read once each.
    let page: &VcpuState = phys::view_mut(v.state_pa);
    let copy;
    let s = if charged & POLICED != 0 {
        copy = *page;
        &copy
    } else {
        page
    };
    let refused = if let Some(f) = architectural_violation(s, charged) {
        Some(f)
    } else if charged & field::XCR0 != 0 && !xcr0_ok(s.xcr0) {
        Some(field::XCR0)
    } else if charged & field::CONTROLS != 0 && s.controls & !control::ALL != 0 {
        Some(field::CONTROLS)
    } else if charged & field::TSC_AUX != 0 && (s.tsc_aux >> 32 != 0 || !cpu::has_rdtscp()) {
        Some(field::TSC_AUX)
    } else {
        None
    };
    if let Some(f) = refused {
        // nothing was loaded: the page gets the state back
        publish(v, synthetic(exit_kind::INVALID_STATE, f), field::ALL);
        return Ok(None);
    }
    if charged & field::XCR0 != 0 {
        v.xcr0 = s.xcr0;
    }
    if charged & field::CONTROLS != 0 {
        v.controls = s.controls;
    }
    if charged & field::TSC_AUX != 0 {
        v.tsc_aux = s.tsc_aux;
    }
    {
        let area = &mut *CPU_AREAS[here].lock();
        match (&mut v.hw, vendor, area) {
            (Hw::Svm(h), _, _) => h.load(s, charged),
            (Hw::Vmx(h), Vendor::Vmx(f, _), Some(CpuArea::Vmx(a))) => {
                h.activate(a);
                h.load(f, s, charged);
            }
            _ => return Err(Status::NoFeature),
        }
    }
    v.unpublished |= charged;
    if recall {
        publish(v, synthetic(exit_kind::RECALL, 0), v.unpublished);
        return Ok(None);
    }
    let switched = k.virt.switch_to(here, id);
    let e = k.ecs.get_mut(id).expect("checked");
    let v = e.vcpu.as_mut().expect("checked");
    let flush = v.tlb_seen != gen || switched;
    v.tlb_seen = gen;
    v.running = true;
    let vm = e.pd;
    let entry = Entry {
        vcpu: id,
        hw: v.hw,
        flush,
        xcr0: v.xcr0,
        tsc_aux: v.tsc_aux,
    };
    if let Some(vm) = k.pds.get_mut(vm).and_then(|p| p.vm.as_mut()) {
        vm.running_on |= 1 << here;
    }
    crate::sched::load_fpu(k, here, id);
    Ok(Some(entry))
}

/// Groups with values the kernel checks before it loads them (see `prepare`).
const POLICED: u64 = field::CR
    | field::EFER
    | field::DR7
    | field::SEG
    | field::XCR0
    | field::CONTROLS
    | field::TSC_AUX;

/// EFER bits a guest may set: SCE, LME, LMA, NXE, SVME (the kernel forces it on
/// SVM), LMSLE, FFXSR, TCE.
const EFER_KNOWN: u64 = 0xfd01;

/// The charged group holding a value that no CPU accepts at VM entry (both SVM and
/// VMX check these; refusing them here spares the entry path, and emulators that
/// check less, from states no hardware runs). Values of uncharged fields are taken
/// from the page (the last exit's, unless the VMM changed them without charging).
fn architectural_violation(s: &VcpuState, charged: u64) -> Option<u64> {
    let cr0 = s.cr0;
    if charged & field::CR != 0
        && (cr0 >> 32 != 0
            || (cr0 & (1 << 29) != 0 && cr0 & (1 << 30) == 0) // NW without CD
            || (cr0 & (1 << 31) != 0 && cr0 & 1 == 0) // PG without PE
            || s.cr3 >> 52 != 0
            || s.cr4 >> 25 != 0)
    {
        return Some(field::CR);
    }
    if charged & field::EFER != 0 && s.efer & !EFER_KNOWN != 0 {
        return Some(field::EFER);
    }
    if charged & field::DR7 != 0 && s.dr7 >> 32 != 0 {
        return Some(field::DR7);
    }
    // long mode needs PAE, and a code segment cannot be both 64-bit and 32-bit
    let long = cr0 & (1 << 31) != 0 && s.efer & (1 << 8) != 0;
    if charged & (field::CR | field::EFER | field::SEG) != 0 && long {
        if s.cr4 & (1 << 5) == 0 {
            return Some(field::CR);
        }
        if s.cs.ar & (1 << 9) != 0 && s.cs.ar & (1 << 10) != 0 {
            return Some(field::SEG);
        }
    }
    None
}

/// Whether the guest may run with `xcr0` (without XSAVE in the host only x87).
fn xcr0_ok(xcr0: u64) -> bool {
    if cpu::host_xcr0() == 0 {
        return xcr0 == 1;
    }
    cpu::xcr0_valid(xcr0)
}

/// Runs the guest of `entry` on this CPU (without the kernel lock) until it exits.
/// Returns the hardware state and the exit (`None`: a host interrupt).
pub fn enter(entry: &mut Entry) -> Option<ExitInfo> {
    let host = cpu::host_xcr0();
    if host != 0 && entry.xcr0 != host {
        cpu::xsetbv(entry.xcr0);
    }
    let here = smp::cpu_id();
    // RDTSCP in the guest reads the real TSC_AUX (the kernel does not use it)
    if cpu::has_rdtscp()
        && TSC_AUX_LOADED[here].swap(entry.tsc_aux, Ordering::Relaxed) != entry.tsc_aux
    {
        cpu::wrmsr(cpu::MSR_TSC_AUX, entry.tsc_aux);
    }
    let area = *CPU_AREAS[here].lock();
    let exit = match (&mut entry.hw, vendor(), area) {
        (Hw::Svm(h), Some(Vendor::Svm(f, _)), Some(CpuArea::Svm(a))) => {
            h.run(&a, entry.flush);
            h.exit(f.nrip)
        }
        (Hw::Vmx(h), Some(Vendor::Vmx(f, _)), Some(CpuArea::Vmx(_))) => h.run(f, entry.flush),
        _ => Some(synthetic(exit_kind::INVALID_STATE, 0)),
    };
    // Back to the host's XCR0 before any FPU switch (XSAVE/XRSTOR of threads needs
    // it). Read, not assumed: XSETBV exits on VMX and is intercepted on SVM, but
    // QEMU's TCG ignores that intercept, so a guest's XSETBV reaches the real XCR0
    // even when the VMM charged the host's value.
    if host != 0 && cpu::xgetbv() != host {
        cpu::xsetbv(host);
    }
    exit
}

/// After the guest left (under the lock again): the caller's `vcpu_run` returns the
/// exit (`true`), or, for a host interrupt, is restarted so that the interrupt is
/// taken first (`false`).
pub fn finish(
    k: &mut Kernel,
    cpu: usize,
    caller: EcId,
    entry: Entry,
    exit: Option<ExitInfo>,
) -> bool {
    let result = match k.ecs.get_mut(entry.vcpu) {
        Some(e) if e.vcpu.is_some() => {
            let recall = e.recall;
            let vm = e.pd;
            let v = e.vcpu.as_mut().expect("checked");
            v.running = false;
            v.hw = entry.hw;
            let groups = field::GUEST | v.unpublished;
            let answer = match exit {
                Some(info) => {
                    publish(v, info, groups);
                    Some(Status::Success)
                }
                None if recall => {
                    e.recall = false;
                    let v = e.vcpu.as_mut().expect("checked");
                    publish(v, synthetic(exit_kind::RECALL, 0), groups);
                    Some(Status::Success)
                }
                None => None,
            };
            if let Some(vm) = k.pds.get_mut(vm).and_then(|p| p.vm.as_mut()) {
                vm.running_on &= !(1 << cpu);
            }
            answer
        }
        _ => Some(Status::Aborted),
    };
    let Some(c) = k.ecs.get_mut(caller) else {
        return false;
    };
    match result {
        Some(s) => {
            c.regs.rax = s as u64;
            c.regs.rdi = 0;
            c.regs.rsi = 0;
            true
        }
        None => {
            // back to the `syscall` instruction with nothing charged: the pending
            // interrupt is taken in user mode, then the call runs the guest again
            c.regs.rip = c.regs.rip.wrapping_sub(2);
            c.regs.rsi = 0;
            false
        }
    }
}

/// VMCLEARs the VMCS at `vmcs` on this CPU (a shootdown asked for it: its vCPU,
/// bound to this CPU, is being destroyed).
pub fn vmclear_here(vmcs: u64) {
    if let Some(CpuArea::Vmx(a)) = CPU_AREAS[smp::cpu_id()].lock().as_mut() {
        vmx::clear(vmcs, a);
    }
}

/// Releases the vCPU part of a destroyed EC bound to `cpu`. Its hardware state is
/// freed once that CPU has left the guest and (VMX) VMCLEARed the VMCS.
pub fn destroy(k: &mut Kernel, cpu: usize, v: &Vcpu) {
    let removed = k.mem.revoke(v.owner, v.state_va >> 12, 0, true);
    k.removed_memory(removed);
    crate::trap::free_page(v.state_pa);
    k.uncharge(v.owner, KMEM_VCPU);
    let mut request = crate::shootdown::Request::default();
    match v.hw {
        // the VMCS may be active on its CPU even if it does not run it now
        Hw::Vmx(h) => request.vmclear(cpu, h.pa()),
        Hw::Svm(_) if v.running => request.add(1 << cpu),
        Hw::Svm(_) => {}
    }
    if k.shoot(&request) {
        v.pages.into_iter().for_each(crate::trap::free_page);
    }
}
