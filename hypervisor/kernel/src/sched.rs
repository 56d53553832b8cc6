//! Scheduling: per-CPU run queues of scheduling contexts (strict priority,
//! round robin with a time quantum inside a priority), timeouts of semaphore
//! downs, and the switch to the execution context that runs next.
//!
//! An SC runs its EC, or — while that EC waits in a portal call — the handler
//! serving it (the caller's time is donated along the call chain).

use crate::arch::{apic, cpu, entry::Frame};
use crate::object::{EcId, EcState, Kernel, PdId, ScId};
use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::vec::Vec;

pub struct CpuSched {
    queues: BTreeMap<u8, VecDeque<ScId>>,
    /// The EC whose registers are live on this CPU (saved on kernel entry).
    pub running: Option<EcId>,
    running_sc: Option<ScId>,
    slice_start: u64,
    timeouts: BTreeSet<(u64, EcId)>,
    fpu_owner: Option<EcId>,
    io_loaded: Option<PdId>,
    /// The PD whose page table this CPU has loaded (it may still cache its
    /// translations, even while idle) and the TLB generation it flushed for.
    tlb: Option<(PdId, u64)>,
    /// The FS base MSR as last written on this CPU (anything that changes the MSR
    /// behind the scheduler's back must reset this to `None`).
    pub fs_base: Option<u64>,
}

pub struct Scheduler {
    pub cpus: Vec<CpuSched>,
    pub apic_ids: Vec<u32>,
}

pub enum Next {
    User(Frame),
    Idle,
}

impl Scheduler {
    pub fn new(n: usize) -> Self {
        let cpus = (0..n)
            .map(|_| CpuSched {
                queues: BTreeMap::new(),
                running: None,
                running_sc: None,
                slice_start: 0,
                timeouts: BTreeSet::new(),
                fpu_owner: None,
                io_loaded: None,
                tlb: None,
                fs_base: Some(0),
            })
            .collect();
        Scheduler {
            cpus,
            apic_ids: alloc::vec![0; n],
        }
    }

    pub fn dequeue(&mut self, sc: ScId) {
        for c in &mut self.cpus {
            for q in c.queues.values_mut() {
                q.retain(|&s| s != sc);
            }
            if c.running_sc == Some(sc) {
                c.running_sc = None;
            }
        }
    }

    pub fn forget_ec(&mut self, ec: EcId) {
        for c in &mut self.cpus {
            if c.running == Some(ec) {
                c.running = None;
            }
            if c.fpu_owner == Some(ec) {
                c.fpu_owner = None;
            }
            c.timeouts.retain(|&(_, e)| e != ec);
        }
    }

    pub fn forget_pd(&mut self, pd: PdId) {
        for c in &mut self.cpus {
            if c.io_loaded == Some(pd) {
                c.io_loaded = None;
            }
            if c.tlb.is_some_and(|(p, _)| p == pd) {
                c.tlb = None;
            }
        }
    }

    /// The CPUs (bit n: CPU n) that have `pd`'s page table loaded.
    pub fn cpus_with_space(&self, pd: PdId) -> u64 {
        self.cpus
            .iter()
            .enumerate()
            .filter(|(_, c)| c.tlb.is_some_and(|(p, _)| p == pd))
            .fold(0, |mask, (i, _)| mask | 1 << i)
    }

    /// The CPUs (bit n: CPU n) whose TSS holds `pd`'s I/O permission bitmap.
    pub fn cpus_with_ports(&self, pd: PdId) -> u64 {
        self.cpus
            .iter()
            .enumerate()
            .filter(|(_, c)| c.io_loaded == Some(pd))
            .fold(0, |mask, (i, _)| mask | 1 << i)
    }

    /// The CPUs of `mask` acknowledged a shootdown: they now run on the kernel's
    /// page table (see `shootdown`).
    pub fn spaces_dropped(&mut self, mask: u64) {
        for (i, c) in self.cpus.iter_mut().enumerate() {
            if mask & (1 << i) != 0 {
                c.tlb = None;
            }
        }
    }

    pub fn reload_io_bitmaps(&mut self) {
        for c in &mut self.cpus {
            c.io_loaded = None;
        }
    }

    pub fn add_timeout(&mut self, cpu: usize, deadline: u64, ec: EcId) {
        self.cpus[cpu].timeouts.insert((deadline, ec));
    }

    pub fn remove_timeout(&mut self, cpu: usize, deadline: u64, ec: EcId) {
        self.cpus[cpu].timeouts.remove(&(deadline, ec));
    }

    /// Removes and returns the ECs whose timeout expired on `cpu`.
    pub fn expired(&mut self, cpu: usize, now: u64) -> Vec<EcId> {
        let c = &mut self.cpus[cpu];
        let mut out = Vec::new();
        while let Some(&(d, ec)) = c.timeouts.first() {
            if d > now {
                break;
            }
            c.timeouts.pop_first();
            out.push(ec);
        }
        out
    }
}

/// Makes `sc` runnable on its CPU (pokes that CPU if it is another one).
pub fn enqueue(k: &mut Kernel, sc: ScId) {
    let Some(s) = k.scs.get(sc) else { return };
    let (cpu, prio) = (s.cpu, s.priority);
    let q = k.sched.cpus[cpu].queues.entry(prio).or_default();
    if !q.contains(&sc) {
        q.push_back(sc);
    }
    if cpu != crate::arch::smp::cpu_id() {
        apic::send_fixed(k.sched.apic_ids[cpu], apic::VECTOR_RESCHEDULE);
    }
}

/// The SC whose time an EC runs on: that of the global EC at the start of its call chain.
pub fn sc_of(k: &Kernel, mut ec: EcId) -> Option<ScId> {
    for _ in 0..64 {
        let e = k.ecs.get(ec)?;
        match e.caller {
            Some(c) => ec = c,
            None => return e.sc,
        }
    }
    None
}

/// The EC an SC would run now: follow the call chain to the handler at its end.
fn head_ec(k: &Kernel, sc: ScId) -> Option<EcId> {
    let mut ec = k.scs.get(sc)?.ec;
    for _ in 0..64 {
        let e = k.ecs.get(ec)?;
        match (e.state, e.callee) {
            (EcState::Ready, _) => return Some(ec),
            // a dead caller's handler still finishes the call it serves
            (EcState::Calling | EcState::Dead, Some(h))
                if k.ecs.get(h).is_some_and(|h| h.caller == Some(ec)) =>
            {
                ec = h
            }
            _ => return None,
        }
    }
    None
}

/// Charges the time since the last dispatch to the SC that ran; rotates it to the
/// end of its queue when its quantum is used up.
pub fn account(k: &mut Kernel, cpu: usize) {
    let now = cpu::rdtsc();
    let c = &mut k.sched.cpus[cpu];
    let Some(sc) = c.running_sc else { return };
    let used = now.saturating_sub(c.slice_start);
    c.slice_start = now;
    let Some(s) = k.scs.get_mut(sc) else { return };
    s.consumed += used;
    s.left = s.left.saturating_sub(used);
    if s.left == 0 {
        s.left = s.quantum_us * apic::tsc_per_us();
        if let Some(q) = k.sched.cpus[cpu].queues.get_mut(&s.priority) {
            if let Some(pos) = q.iter().position(|&x| x == sc) {
                q.remove(pos);
                q.push_back(sc);
            }
        }
    }
}

/// Chooses what this CPU runs next and prepares the hardware for it.
pub fn dispatch(k: &mut Kernel, cpu: usize) -> Next {
    let now = cpu::rdtsc();
    for ec in k.sched.expired(cpu, now) {
        crate::ipc::timeout(k, ec);
    }
    let chosen = loop {
        let mut found = None;
        let mut stale = Vec::new();
        'outer: for (_, q) in k.sched.cpus[cpu].queues.iter().rev() {
            for &sc in q.iter() {
                match head_ec(k, sc) {
                    Some(ec) => {
                        found = Some((sc, ec));
                        break 'outer;
                    }
                    None => stale.push(sc),
                }
            }
        }
        for sc in &stale {
            for q in k.sched.cpus[cpu].queues.values_mut() {
                q.retain(|s| s != sc);
            }
        }
        if found.is_some() || stale.is_empty() {
            break found;
        }
    };
    let c = &mut k.sched.cpus[cpu];
    c.slice_start = now;
    let next_timeout = c.timeouts.first().map(|&(d, _)| d);
    let Some((sc, ec)) = chosen else {
        c.running = None;
        c.running_sc = None;
        arm(now, next_timeout, None);
        return Next::Idle;
    };
    c.running_sc = Some(sc);
    c.running = Some(ec);
    let left = k.scs.get(sc).map(|s| s.left).unwrap_or(0);
    arm(now, next_timeout, Some(now + left.max(1)));
    switch_to(k, cpu, ec)
}

/// Lets `ec`, which entered the kernel on this CPU and was not blocked, go on
/// without a scheduling decision (the return of `vcpu_run` after a guest exit): what
/// could call for one arrives as an interrupt (another CPU's wakeup or recall, a
/// timeout, the end of the quantum), which `ec` takes as soon as it is back in user
/// mode. Its time since the last dispatch is charged at its next kernel entry.
pub fn resume(k: &mut Kernel, cpu: usize, ec: EcId) -> Next {
    if k.sched.cpus[cpu].running != Some(ec)
        || k.ecs.get(ec).is_none_or(|e| e.state != EcState::Ready)
    {
        account(k, cpu);
        return dispatch(k, cpu);
    }
    switch_to(k, cpu, ec)
}

fn arm(now: u64, a: Option<u64>, b: Option<u64>) {
    let deadline = match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (x, y) => x.or(y),
    };
    match deadline {
        Some(d) => apic::arm_timer((d.saturating_sub(now) / apic::tsc_per_us().max(1)).max(1)),
        None => apic::arm_timer(0),
    }
}

/// Makes the FPU state of `ec` (a thread or a vCPU) the live one on `cpu`.
pub fn load_fpu(k: &mut Kernel, cpu: usize, ec: EcId) {
    if k.sched.cpus[cpu].fpu_owner != Some(ec) {
        if let Some(old) = k.sched.cpus[cpu].fpu_owner.and_then(|o| k.ecs.get_mut(o)) {
            old.fpu.save();
        }
        if let Some(e) = k.ecs.get(ec) {
            e.fpu.restore();
            k.sched.cpus[cpu].fpu_owner = Some(ec);
        }
    }
}

/// Loads address space, I/O bitmap and FPU state of `ec`; returns its registers.
fn switch_to(k: &mut Kernel, cpu: usize, ec: EcId) -> Next {
    let e = k.ecs.get(ec).expect("dispatching a missing EC");
    let pd_id = e.pd;
    let Some(pd) = k.pds.get(pd_id) else {
        return Next::Idle;
    };
    let c = &mut k.sched.cpus[cpu];
    let root = pd.space.root();
    // a shootdown or a guest run (VMX) may have left the kernel's table loaded
    if c.tlb != Some((pd_id, pd.tlb_gen)) || cpu::read_cr3() != root {
        cpu::load_cr3(root);
        c.tlb = Some((pd_id, pd.tlb_gen));
    }
    let fs_base = e.fs_base;
    if c.fs_base != Some(fs_base) {
        cpu::wrmsr(cpu::MSR_FS_BASE, fs_base);
        c.fs_base = Some(fs_base);
    }
    if c.io_loaded != Some(pd_id) {
        crate::arch::smp::load_io_bitmap(&pd.io_bitmap);
        c.io_loaded = Some(pd_id);
    }
    load_fpu(k, cpu, ec);
    Next::User(k.ecs.get(ec).expect("EC vanished").regs)
}
