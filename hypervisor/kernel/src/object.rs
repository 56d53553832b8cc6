//! Kernel objects and the capability spaces that name them.
//!
//! Objects (protection domains, execution contexts, scheduling contexts, portals,
//! semaphores) live in generation-checked slabs; a stale `Id` simply finds
//! nothing. Capabilities are nodes of three mapping databases (memory pages, I/O
//! ports, object selectors) keyed by the holding PD. An object lives exactly as
//! long as the capability it was created with (its *root* capability): revoking
//! that one destroys the object, and every capability derived from it goes too.
//!
//! All kernel state sits in one `Kernel` value behind the big kernel lock (see
//! `trap`); nothing here touches hardware except through `arch`.

use crate::arch::cpu::{FpuState, USER_CS, USER_DS};
use crate::arch::entry::Frame;
use crate::arch::paging::AddressSpace;
use crate::shootdown::Request;
use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use hyper_abi::Status;
use mapdb::{MapDb, Payload};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Id {
    pub index: u32,
    pub gen: u32,
}

pub struct Slab<T> {
    items: Vec<(u32, Option<T>)>,
    free: Vec<u32>,
}

impl<T> Slab<T> {
    pub const fn new() -> Self {
        Slab {
            items: Vec::new(),
            free: Vec::new(),
        }
    }
    pub fn insert(&mut self, t: T) -> Id {
        if let Some(index) = self.free.pop() {
            let slot = &mut self.items[index as usize];
            slot.0 = slot.0.wrapping_add(1);
            slot.1 = Some(t);
            Id { index, gen: slot.0 }
        } else {
            self.items.push((0, Some(t)));
            Id {
                index: self.items.len() as u32 - 1,
                gen: 0,
            }
        }
    }
    pub fn get(&self, id: Id) -> Option<&T> {
        match self.items.get(id.index as usize) {
            Some((gen, Some(t))) if *gen == id.gen => Some(t),
            _ => None,
        }
    }
    pub fn get_mut(&mut self, id: Id) -> Option<&mut T> {
        match self.items.get_mut(id.index as usize) {
            Some((gen, Some(t))) if *gen == id.gen => Some(t),
            _ => None,
        }
    }
    pub fn remove(&mut self, id: Id) -> Option<T> {
        match self.items.get_mut(id.index as usize) {
            Some((gen, slot @ Some(_))) if *gen == id.gen => {
                self.free.push(id.index);
                slot.take()
            }
            _ => None,
        }
    }
}

/// What an object capability refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjRef {
    Pd(Id),
    Ec(Id),
    Sc(Id),
    Pt(Id),
    Sm(Id),
}

impl Payload for ObjRef {
    fn offset(&self, _units: u64) -> Self {
        *self
    }
}

pub type PdId = Id;
pub type EcId = Id;
pub type ScId = Id;
pub type SmId = Id;

/// Bytes of kernel memory charged for each object kind (approximate footprint).
pub const KMEM_PD: u64 = 16 * 1024;
pub const KMEM_EC: u64 = 8 * 1024;
pub const KMEM_SMALL: u64 = 256;

pub struct Pd {
    pub space: AddressSpace,
    /// I/O permission bitmap (a set bit denies the port), loaded into the TSS.
    pub io_bitmap: Box<[u8; 8192]>,
    pub kmem_quota: u64,
    pub kmem_used: u64,
    /// The PD whose quota this one's was taken from.
    pub parent: Option<PdId>,
    /// Where the root capability of this PD lives.
    pub root_cap: (PdId, u64),
    /// Bumped whenever memory is unmapped (CPUs flush their TLB when it changes).
    pub tlb_gen: u64,
    /// A virtual machine: `space` is guest-physical (nested paging).
    pub vm: Option<crate::vcpu::Vm>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EcKind {
    Global,
    Local,
    /// A virtual CPU: never scheduled itself, run through `vcpu_run`.
    Vcpu,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EcState {
    /// Runnable (a global EC needs an SC to actually run).
    Ready,
    /// Waiting in a call: for a busy handler (queued) or for the reply.
    Calling,
    /// A local EC waiting to be called.
    Idle,
    /// Blocked in a semaphore down.
    Blocked(SmId),
    Dead,
}

pub struct Ec {
    pub pd: PdId,
    pub cpu: usize,
    pub kind: EcKind,
    pub evt_base: u64,
    /// User address and physical address of the UTCB page (kernel memory).
    pub utcb: Option<(u64, u64)>,
    pub regs: Frame,
    pub fpu: Box<FpuState>,
    pub state: EcState,
    /// Local ECs: the stack pointer every call starts with.
    pub stack: u64,
    /// Local ECs: the EC whose call is being served.
    pub caller: Option<EcId>,
    /// The local EC this one is calling (or queued on).
    pub callee: Option<EcId>,
    /// Local ECs: callers waiting for this handler, with their portal.
    pub waiters: VecDeque<(EcId, Id, bool)>,
    /// The call being served is an exception message, not a `call`.
    pub serving_exception: bool,
    pub sc: Option<ScId>,
    pub recall: bool,
    pub root_cap: (PdId, u64),
    /// Deadline (TSC) of a semaphore down with timeout.
    pub deadline: Option<u64>,
    /// CR2 of the last page fault.
    pub fault_addr: u64,
    /// `syscall` without the native tag is reflected as exception `exc::SYSCALL`.
    pub reflect_syscalls: bool,
    /// Destroyed while a handler served its call: freed when the handler is done.
    pub zombie: bool,
    /// The FS segment base (thread pointer of foreign binaries), set only by the
    /// kernel on behalf of a handler (`SET_STATE` replies, `ec_ctrl(SetState)`).
    pub fs_base: u64,
    /// The hardware state of a vCPU (kind `Vcpu` only).
    pub vcpu: Option<Box<crate::vcpu::Vcpu>>,
}

impl Ec {
    pub fn new_regs(ip: u64, sp: u64) -> Frame {
        Frame {
            rip: ip,
            rsp: sp,
            cs: USER_CS as u64,
            ss: USER_DS as u64,
            rflags: 0x202,
            ..Default::default()
        }
    }
}

pub struct Sc {
    pub ec: EcId,
    pub cpu: usize,
    pub priority: u8,
    pub quantum_us: u64,
    /// Time left in the current quantum (TSC ticks).
    pub left: u64,
    /// Time consumed (TSC ticks).
    pub consumed: u64,
    /// Destroyed, but a handler still runs on it (see `Kernel::reap_zombie`).
    pub zombie: bool,
    pub root_cap: (PdId, u64),
}

pub struct Pt {
    pub ec: EcId,
    pub ip: u64,
    pub badge: u64,
    pub root_cap: (PdId, u64),
}

pub struct Sm {
    pub count: u64,
    pub waiters: VecDeque<EcId>,
    /// Ups on this semaphore also up `chain`, telling which source fired.
    pub chain: Option<SmId>,
    /// Pending sources of a chain target (selector values from the waiter's view).
    pub fired: VecDeque<u64>,
    /// Badge reported to the chain target (the selector it was chained with).
    pub chain_badge: u64,
    pub gsi: Option<u32>,
    pub root_cap: (PdId, u64),
}

/// The whole kernel state.
pub struct Kernel {
    pub pds: Slab<Pd>,
    pub ecs: Slab<Ec>,
    pub scs: Slab<Sc>,
    pub pts: Slab<Pt>,
    pub sms: Slab<Sm>,
    pub mem: MapDb<PdId, u64>,
    pub io: MapDb<PdId, u64>,
    pub obj: MapDb<PdId, ObjRef>,
    pub sched: crate::sched::Scheduler,
    pub gsi_sms: Vec<Option<SmId>>,
    pub virt: crate::vcpu::VirtState,
}

pub type KResult<T> = Result<T, Status>;

impl Kernel {
    pub fn new(cpus: usize) -> Self {
        Kernel {
            pds: Slab::new(),
            ecs: Slab::new(),
            scs: Slab::new(),
            pts: Slab::new(),
            sms: Slab::new(),
            mem: MapDb::new(1 << 35),
            io: MapDb::new(1 << 16),
            obj: MapDb::new(hyper_abi::sel::LIMIT),
            sched: crate::sched::Scheduler::new(cpus),
            gsi_sms: Vec::new(),
            virt: Default::default(),
        }
    }

    /// The object behind selector `sel` of `pd`, with the rights of the capability.
    pub fn cap(&self, pd: PdId, sel: u64) -> KResult<(ObjRef, u8)> {
        if sel >= hyper_abi::sel::LIMIT {
            return Err(Status::BadCapability);
        }
        let m = self.obj.lookup(pd, sel).ok_or(Status::BadCapability)?;
        Ok((m.payload, m.rights))
    }

    fn need(rights: u8, want: u8) -> KResult<()> {
        if rights & want == want {
            Ok(())
        } else {
            Err(Status::BadCapability)
        }
    }

    pub fn cap_pd(&self, pd: PdId, sel: u64, want: u8) -> KResult<PdId> {
        match self.cap(pd, sel)? {
            (ObjRef::Pd(id), r) if self.pds.get(id).is_some() => Self::need(r, want).map(|_| id),
            _ => Err(Status::BadCapability),
        }
    }
    pub fn cap_ec(&self, pd: PdId, sel: u64, want: u8) -> KResult<EcId> {
        match self.cap(pd, sel)? {
            (ObjRef::Ec(id), r) if self.ecs.get(id).is_some() => Self::need(r, want).map(|_| id),
            _ => Err(Status::BadCapability),
        }
    }
    pub fn cap_sc(&self, pd: PdId, sel: u64, want: u8) -> KResult<ScId> {
        match self.cap(pd, sel)? {
            (ObjRef::Sc(id), r) if self.scs.get(id).is_some() => Self::need(r, want).map(|_| id),
            _ => Err(Status::BadCapability),
        }
    }
    pub fn cap_pt(&self, pd: PdId, sel: u64, want: u8) -> KResult<Id> {
        match self.cap(pd, sel)? {
            (ObjRef::Pt(id), r) if self.pts.get(id).is_some() => Self::need(r, want).map(|_| id),
            _ => Err(Status::BadCapability),
        }
    }
    pub fn cap_sm(&self, pd: PdId, sel: u64, want: u8) -> KResult<SmId> {
        match self.cap(pd, sel)? {
            (ObjRef::Sm(id), r) if self.sms.get(id).is_some() => Self::need(r, want).map(|_| id),
            _ => Err(Status::BadCapability),
        }
    }

    /// Charges `bytes` of kernel memory to `pd`.
    pub fn charge(&mut self, pd: PdId, bytes: u64) -> KResult<()> {
        let p = self.pds.get_mut(pd).ok_or(Status::BadCapability)?;
        if p.kmem_used.saturating_add(bytes) > p.kmem_quota {
            return Err(Status::OutOfMemory);
        }
        p.kmem_used += bytes;
        Ok(())
    }

    pub fn uncharge(&mut self, pd: PdId, bytes: u64) {
        if let Some(p) = self.pds.get_mut(pd) {
            p.kmem_used = p.kmem_used.saturating_sub(bytes);
        }
    }

    /// Installs the root capability of a new object at `sel` of `pd`.
    pub fn install_root(&mut self, pd: PdId, sel: u64, obj: ObjRef) -> KResult<()> {
        if sel == 0 || sel >= hyper_abi::sel::LIMIT {
            return Err(Status::BadParameter);
        }
        self.obj
            .insert_root(pd, sel, 0, hyper_abi::obj_rights::ALL, obj)
            .map_err(|e| match e {
                mapdb::Error::Overlap => Status::Occupied,
                _ => Status::BadParameter,
            })
    }

    /// Checks that `sel` of `pd` is free (before creating an object for it).
    pub fn sel_free(&self, pd: PdId, sel: u64) -> KResult<()> {
        if sel == 0 || sel >= hyper_abi::sel::LIMIT {
            return Err(Status::BadParameter);
        }
        if self.obj.lookup(pd, sel).is_some() {
            return Err(Status::Occupied);
        }
        Ok(())
    }

    /// Handles capabilities that revocation removed: objects whose root
    /// capability went are destroyed; removed memory and ports are unmapped.
    pub fn removed_objects(&mut self, removed: Vec<mapdb::Mapping<PdId, ObjRef>>) {
        if !removed.is_empty() {
            self.virt.capabilities_removed();
        }
        let mut work = removed;
        while let Some(m) = work.pop() {
            let at = (m.space, m.base);
            let more = match m.payload {
                ObjRef::Pd(id) if self.pds.get(id).is_some_and(|p| p.root_cap == at) => {
                    self.destroy_pd(id)
                }
                ObjRef::Ec(id) if self.ecs.get(id).is_some_and(|e| e.root_cap == at) => {
                    self.destroy_ec(id);
                    Vec::new()
                }
                ObjRef::Sc(id) if self.scs.get(id).is_some_and(|s| s.root_cap == at) => {
                    self.destroy_sc(id);
                    Vec::new()
                }
                ObjRef::Pt(id) if self.pts.get(id).is_some_and(|p| p.root_cap == at) => {
                    self.pts.remove(id);
                    self.uncharge(m.space, KMEM_SMALL);
                    Vec::new()
                }
                ObjRef::Sm(id) if self.sms.get(id).is_some_and(|s| s.root_cap == at) => {
                    self.destroy_sm(id);
                    Vec::new()
                }
                _ => Vec::new(),
            };
            work.extend(more);
        }
    }

    /// Unmaps memory that revocation removed; returns when no CPU can use the old
    /// translations any more.
    pub fn removed_memory(&mut self, removed: Vec<mapdb::Mapping<PdId, u64>>) {
        let request = self.unmap(removed);
        self.shoot(&request);
    }

    /// Removes `removed` from the page tables; the CPUs that may still hold the old
    /// translations are the request to send.
    fn unmap(&mut self, removed: Vec<mapdb::Mapping<PdId, u64>>) -> Request {
        let mut request = Request::default();
        for m in removed {
            if let Some(pd) = self.pds.get_mut(m.space) {
                pd.space.unmap(m.base << 12, m.order);
                pd.tlb_gen += 1;
                request.add(self.cpus_using(m.space));
            }
        }
        request
    }

    /// The CPUs (bit n: CPU n) that may use translations of `pd`: those with its
    /// page table loaded and, for a VM, those running one of its vCPUs. (A CPU
    /// that ran a vCPU before flushes at its next entry: `Vcpu::tlb_seen`.)
    fn cpus_using(&self, pd: PdId) -> u64 {
        let guests = self
            .pds
            .get(pd)
            .and_then(|p| p.vm.as_ref())
            .map_or(0, |vm| vm.running_on);
        guests | self.sched.cpus_with_space(pd)
    }

    /// Sends `request` and waits for it (see `shootdown`); false if a CPU did not
    /// answer, and what the caller meant to free must then be leaked.
    pub fn shoot(&mut self, request: &Request) -> bool {
        if request.is_empty() {
            return true;
        }
        let answered = request.send(&self.sched.apic_ids);
        self.sched.spaces_dropped(request.cpus());
        answered
    }

    /// Takes ports that revocation removed out of the I/O bitmaps; returns when no
    /// CPU lets a thread use them any more.
    pub fn removed_ports(&mut self, removed: Vec<mapdb::Mapping<PdId, u64>>) {
        let request = self.deny_ports(removed);
        self.shoot(&request);
    }

    /// Removes `removed` from the I/O bitmaps; the CPUs that still have one of
    /// those bitmaps loaded are the request to send.
    fn deny_ports(&mut self, removed: Vec<mapdb::Mapping<PdId, u64>>) -> Request {
        let mut request = Request::default();
        for m in removed {
            if let Some(pd) = self.pds.get_mut(m.space) {
                for port in m.base..(m.base + (1u64 << m.order)).min(65536) {
                    pd.io_bitmap[(port / 8) as usize] |= 1 << (port % 8);
                }
                request.deny_ports(self.sched.cpus_with_ports(m.space));
            }
        }
        self.sched.reload_io_bitmaps();
        request
    }

    fn destroy_pd(&mut self, id: PdId) -> Vec<mapdb::Mapping<PdId, ObjRef>> {
        let mem = self.mem.remove_space(id);
        let mut request = self.unmap(mem);
        let io = self.io.remove_space(id);
        request.merge(self.deny_ports(io));
        let objs = self.obj.remove_space(id);
        // ECs bound to this PD die with it
        let ecs: Vec<EcId> = self
            .ecs
            .items
            .iter()
            .enumerate()
            .filter_map(|(i, (g, e))| {
                e.as_ref().filter(|e| e.pd == id).map(|_| Id {
                    index: i as u32,
                    gen: *g,
                })
            })
            .collect();
        for ec in ecs {
            // ended on purpose with its PD: no log line per thread
            if self.ecs.get(ec).is_some_and(|e| e.state != EcState::Dead) {
                crate::ipc::abort_ec(self, ec);
            }
        }
        // no CPU may walk its tables or run its guests any more when they are freed
        request.add(self.cpus_using(id));
        let quiet = self.shoot(&request);
        if let Some(pd) = self.pds.remove(id) {
            self.sched.forget_pd(id);
            if let Some(parent) = pd.parent {
                self.uncharge(parent, pd.kmem_quota);
            }
            if let Some(vm) = &pd.vm {
                self.virt.free_tag(vm);
            }
            if !quiet {
                core::mem::forget(pd.space);
            }
        }
        objs
    }

    /// Stops an EC for good (it stays allocated until its root capability goes).
    pub fn kill_ec(&mut self, id: EcId, why: &str) {
        let Some(ec) = self.ecs.get(id) else { return };
        if ec.state == EcState::Dead {
            return;
        }
        if ec.kind == EcKind::Global || ec.caller.is_some() {
            crate::kprintln!(
                "kernel: EC {} of PD {} killed: {why}",
                id.index,
                crate::trap::pd_name(self, ec.pd)
            );
        }
        crate::ipc::abort_ec(self, id);
    }

    /// Whether a handler (of any PD) is in the middle of serving `ec`'s call.
    fn served(&self, ec: EcId) -> bool {
        self.ecs
            .get(ec)
            .and_then(|e| e.callee)
            .and_then(|h| self.ecs.get(h))
            .is_some_and(|h| h.caller == Some(ec))
    }

    /// The handler that served dead EC `id` is done: the call chain above it
    /// unwinds (the first live caller gets `Aborted`), and ECs and SCs that were
    /// destroyed meanwhile (zombies: the handler ran on their time) are freed.
    pub fn finish_dead(&mut self, id: EcId) {
        let mut next = Some(id);
        for _ in 0..64 {
            let Some(id) = next.take() else { return };
            if self.served(id) || self.ecs.get(id).is_none_or(|e| e.state != EcState::Dead) {
                return;
            }
            let e = self.ecs.get_mut(id).expect("checked");
            let caller = e.caller.take();
            e.callee = None;
            if e.zombie {
                if let Some(sc) = e.sc {
                    if self.scs.get(sc).is_some_and(|s| s.zombie) {
                        self.free_sc(sc);
                    }
                }
                self.free_ec(id);
            }
            if let Some(c) = caller {
                match self.ecs.get(c).map(|e| (e.state, e.callee)) {
                    Some((EcState::Dead, _)) => next = Some(c),
                    Some((EcState::Calling, Some(h))) if h == id => {
                        crate::ipc::wake(self, c, Status::Aborted, 0)
                    }
                    _ => {}
                }
            }
        }
    }

    fn destroy_ec(&mut self, id: EcId) {
        self.kill_ec(id, "destroyed");
        if self.served(id) {
            // a handler of another PD still works on its call, on its time
            if let Some(e) = self.ecs.get_mut(id) {
                e.zombie = true;
            }
            return;
        }
        self.free_ec(id);
    }

    fn free_ec(&mut self, id: EcId) {
        if let Some(mut ec) = self.ecs.remove(id) {
            self.sched.forget_ec(id);
            if let Some(v) = ec.vcpu.take() {
                crate::vcpu::destroy(self, ec.cpu, &v);
                return;
            }
            if let Some((va, _)) = ec.utcb {
                let removed = self.mem.revoke(ec.pd, va >> 12, 0, true);
                self.removed_memory(removed);
            }
            if let Some((_, pa)) = ec.utcb {
                crate::trap::free_page(pa);
            }
            self.uncharge(ec.root_cap.0, KMEM_EC);
        }
    }

    fn destroy_sc(&mut self, id: ScId) {
        let ec = self.scs.get(id).map(|s| s.ec);
        if ec.is_some_and(|ec| self.served(ec)) {
            // the handler serving its EC's call finishes on it first
            if let Some(s) = self.scs.get_mut(id) {
                s.zombie = true;
            }
            return;
        }
        self.free_sc(id);
    }

    fn free_sc(&mut self, id: ScId) {
        if let Some(sc) = self.scs.remove(id) {
            self.sched.dequeue(id);
            if let Some(ec) = self.ecs.get_mut(sc.ec) {
                if ec.sc == Some(id) {
                    ec.sc = None;
                }
            }
            self.uncharge(sc.root_cap.0, KMEM_SMALL);
        }
    }

    fn destroy_sm(&mut self, id: SmId) {
        if let Some(sm) = self.sms.remove(id) {
            for ec in sm.waiters {
                crate::ipc::wake(self, ec, Status::Aborted, 0);
            }
            if let Some(g) = sm.gsi {
                if let Some(slot) = self.gsi_sms.get_mut(g as usize) {
                    *slot = None;
                }
            }
            self.uncharge(sm.root_cap.0, KMEM_SMALL);
        }
    }
}
