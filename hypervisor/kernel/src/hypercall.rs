//! Hypercall dispatch: decodes the registers of a `syscall`, checks every
//! argument and performs the operation on the kernel state. User input never
//! panics the kernel: every failure is a `Status`.

use crate::arch::entry::Frame;
use crate::arch::{apic, paging, phys};
use crate::object::*;
use hyper_abi::{obj_rights, sel, Crd, CrdKind, EcOp, Hypercall, SmOp, Status};

/// What the caller sees after the hypercall.
pub enum Outcome {
    /// Completed: status and the two result registers.
    Done(Status, u64, u64),
    /// The caller blocked; whoever wakes it sets its result.
    Blocked,
    /// `vcpu_run`: enter the guest (without the kernel lock); the caller's result
    /// is set when the guest exits.
    Guest(crate::vcpu::Entry),
}

fn done(r: KResult<()>) -> Outcome {
    match r {
        Ok(()) => Outcome::Done(Status::Success, 0, 0),
        Err(s) => Outcome::Done(s, 0, 0),
    }
}

pub fn handle(k: &mut Kernel, ec: EcId, f: &Frame) -> Outcome {
    let Some(e) = k.ecs.get(ec) else {
        return Outcome::Blocked;
    };
    let pd = e.pd;
    let (a, b, c, d, e5, f6) = (f.rdi, f.rsi, f.rdx, f.r10, f.r8, f.r9);
    let Some(hc) = Hypercall::from_raw(f.rax) else {
        return Outcome::Done(Status::BadHypercall, 0, 0);
    };
    match hc {
        Hypercall::Call => match crate::ipc::call(k, ec, a) {
            Ok(()) => Outcome::Blocked,
            Err(s) => {
                if let Some(e) = k.ecs.get_mut(ec) {
                    e.state = EcState::Ready;
                    e.callee = None;
                }
                Outcome::Done(s, 0, 0)
            }
        },
        Hypercall::Reply => match crate::ipc::reply(k, ec) {
            Ok(()) => Outcome::Blocked,
            Err(s) => Outcome::Done(s, 0, 0),
        },
        Hypercall::CreatePd => done(create_pd(k, pd, a, b, c)),
        Hypercall::CreateEc => done(create_ec(k, pd, a, b, c, d, e5, f6)),
        Hypercall::CreateSc => done(create_sc(k, pd, a, b, c, d)),
        Hypercall::CreatePt => done(create_pt(k, pd, a, b, c, d)),
        Hypercall::CreateSm => done(create_sm(k, pd, a, b, c)),
        Hypercall::Revoke => done(revoke(k, pd, Crd(a), b)),
        Hypercall::Lookup => Outcome::Done(Status::Success, crate::ipc::lookup(k, pd, Crd(a)).0, 0),
        Hypercall::EcCtrl => done(ec_ctrl(k, ec, pd, a, b)),
        Hypercall::ScCtrl => match k.cap_sc(pd, a, obj_rights::CTRL) {
            Ok(sc) => {
                let t = k.scs.get(sc).map(|s| s.consumed).unwrap_or(0);
                Outcome::Done(Status::Success, t / apic::tsc_per_us().max(1), 0)
            }
            Err(s) => Outcome::Done(s, 0, 0),
        },
        Hypercall::SmCtrl => sm_ctrl(k, ec, pd, a, b, c),
        Hypercall::AssignGsi => done(assign_gsi(k, pd, a, b)),
        Hypercall::Delegate => match k.cap_pd(pd, a, obj_rights::USE) {
            Ok(dst) => match crate::ipc::delegate(k, pd, dst, Crd(b), c) {
                Ok(crd) => Outcome::Done(Status::Success, crd.0, 0),
                Err(s) => Outcome::Done(s, 0, 0),
            },
            Err(s) => Outcome::Done(s, 0, 0),
        },
        Hypercall::ConsoleWrite => done(console_write(k, ec, a)),
        Hypercall::VcpuRun => crate::vcpu::run(k, pd, a, b),
        Hypercall::ConsoleRead => match console_read(k, ec, pd, a) {
            Ok(n) => Outcome::Done(Status::Success, n, 0),
            Err(s) => Outcome::Done(s, 0, 0),
        },
    }
}

fn create_pd(k: &mut Kernel, pd: PdId, dst: u64, quota: u64, flags: u64) -> KResult<()> {
    k.sel_free(pd, dst)?;
    if flags & !hyper_abi::PD_VM != 0 {
        return Err(Status::BadParameter);
    }
    let vm_format = if flags & hyper_abi::PD_VM != 0 {
        Some(crate::vcpu::vm_format()?)
    } else {
        None
    };
    let quota = quota.max(KMEM_PD);
    k.charge(pd, quota)?;
    let vm = match vm_format.map(|_| k.virt.alloc_tag()).transpose() {
        Ok(vm) => vm,
        Err(s) => {
            k.uncharge(pd, quota);
            return Err(s);
        }
    };
    let space = match vm_format {
        Some(f) => paging::AddressSpace::new_guest(f),
        None => paging::AddressSpace::new(),
    };
    let space = match space {
        Ok(s) => s,
        Err(_) => {
            if let Some(vm) = &vm {
                k.virt.free_tag(vm);
            }
            k.uncharge(pd, quota);
            return Err(Status::OutOfMemory);
        }
    };
    let id = k.pds.insert(Pd {
        space,
        io_bitmap: alloc::boxed::Box::new([0xff; 8192]),
        kmem_quota: quota,
        kmem_used: KMEM_PD,
        parent: Some(pd),
        root_cap: (pd, dst),
        tlb_gen: 0,
        vm,
    });
    k.install_root(pd, dst, ObjRef::Pd(id))
        .expect("selector checked free");
    // the new PD's capability to itself, derived from the creator's
    k.obj
        .delegate(pd, dst, 0, id, sel::PD_SELF, obj_rights::ALL)
        .expect("fresh space");
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn create_ec(
    k: &mut Kernel,
    pd: PdId,
    dst: u64,
    pd_sel: u64,
    packed: u64,
    utcb: u64,
    sp: u64,
    ip: u64,
) -> KResult<()> {
    k.sel_free(pd, dst)?;
    let target = k.cap_pd(pd, pd_sel, obj_rights::CTRL)?;
    let cpu = (packed & 0xffff) as usize;
    let kind = match (packed >> 16) & 0xff {
        0 => EcKind::Global,
        1 => EcKind::Local,
        2 => {
            if packed >> 24 != 0 {
                return Err(Status::BadParameter);
            }
            return crate::vcpu::create(k, pd, dst, pd_sel, cpu, utcb);
        }
        _ => return Err(Status::BadParameter),
    };
    if k.pds.get(target).is_some_and(|p| p.vm.is_some()) {
        return Err(Status::BadParameter); // a VM runs only vCPUs
    }
    let flags = (packed >> 24 & 0xff) as u8;
    if flags & !hyper_abi::ec_flags::REFLECT_SYSCALLS != 0 {
        return Err(Status::BadParameter);
    }
    let evt_base = packed >> 32;
    if cpu >= k.sched.cpus.len() || !crate::trap::cpu_online(cpu) {
        return Err(Status::BadCpu);
    }
    if utcb != 0 && (utcb & 0xfff != 0 || utcb >= paging::USER_END) {
        return Err(Status::BadParameter);
    }
    if sp >= paging::USER_END || ip >= paging::USER_END {
        return Err(Status::BadParameter);
    }
    if utcb != 0 && k.mem.lookup(target, utcb >> 12).is_some() {
        return Err(Status::Occupied);
    }
    k.charge(pd, KMEM_EC)?;
    let mut utcb_pair = None;
    if utcb != 0 {
        let Some(pa) = crate::trap::alloc_page() else {
            k.uncharge(pd, KMEM_EC);
            return Err(Status::OutOfMemory);
        };
        let mapped = k.mem.insert_root(
            target,
            utcb >> 12,
            0,
            hyper_abi::mem_rights::R | hyper_abi::mem_rights::W,
            pa >> 12,
        );
        let t = k.pds.get_mut(target).expect("checked");
        if mapped.is_err() || t.space.map(utcb, pa, 0, paging::W | paging::NX).is_err() {
            if mapped.is_ok() {
                let _ = k.mem.revoke(target, utcb >> 12, 0, true);
            }
            crate::trap::free_page(pa);
            k.uncharge(pd, KMEM_EC);
            return Err(Status::OutOfMemory);
        }
        utcb_pair = Some((utcb, pa));
    }
    let regs = Ec::new_regs(ip, sp);
    let id = k.ecs.insert(Ec {
        pd: target,
        cpu,
        kind,
        evt_base,
        utcb: utcb_pair,
        regs,
        fpu: alloc::boxed::Box::new(crate::arch::cpu::FpuState::initial()),
        state: if kind == EcKind::Local {
            EcState::Idle
        } else {
            EcState::Ready
        },
        stack: sp,
        caller: None,
        callee: None,
        waiters: Default::default(),
        serving_exception: false,
        sc: None,
        recall: false,
        root_cap: (pd, dst),
        deadline: None,
        fault_addr: 0,
        reflect_syscalls: flags & hyper_abi::ec_flags::REFLECT_SYSCALLS != 0,
        fs_base: 0,
        zombie: false,
        vcpu: None,
    });
    k.install_root(pd, dst, ObjRef::Ec(id))
        .expect("selector checked free");
    Ok(())
}

fn create_sc(
    k: &mut Kernel,
    pd: PdId,
    dst: u64,
    ec_sel: u64,
    prio: u64,
    quantum_us: u64,
) -> KResult<()> {
    k.sel_free(pd, dst)?;
    let ec = k.cap_ec(pd, ec_sel, obj_rights::CTRL)?;
    if prio == 0 || prio > 255 || quantum_us == 0 || quantum_us > 1_000_000 {
        return Err(Status::BadParameter);
    }
    let e = k.ecs.get(ec).expect("checked");
    if e.kind != EcKind::Global || e.sc.is_some() || e.state == EcState::Dead {
        return Err(Status::BadParameter);
    }
    let cpu = e.cpu;
    k.charge(pd, KMEM_SMALL)?;
    let id = k.scs.insert(Sc {
        ec,
        cpu,
        priority: prio as u8,
        quantum_us,
        left: quantum_us * apic::tsc_per_us(),
        consumed: 0,
        zombie: false,
        root_cap: (pd, dst),
    });
    k.install_root(pd, dst, ObjRef::Sc(id))
        .expect("selector checked free");
    k.ecs.get_mut(ec).expect("checked").sc = Some(id);
    crate::sched::enqueue(k, id);
    Ok(())
}

fn create_pt(k: &mut Kernel, pd: PdId, dst: u64, ec_sel: u64, ip: u64, badge: u64) -> KResult<()> {
    k.sel_free(pd, dst)?;
    let ec = k.cap_ec(pd, ec_sel, obj_rights::CTRL)?;
    if k.ecs.get(ec).expect("checked").kind != EcKind::Local || ip >= paging::USER_END {
        return Err(Status::BadParameter);
    }
    k.charge(pd, KMEM_SMALL)?;
    let id = k.pts.insert(Pt {
        ec,
        ip,
        badge,
        root_cap: (pd, dst),
    });
    k.install_root(pd, dst, ObjRef::Pt(id))
        .expect("selector checked free");
    Ok(())
}

fn create_sm(k: &mut Kernel, pd: PdId, dst: u64, count: u64, chain: u64) -> KResult<()> {
    k.sel_free(pd, dst)?;
    let chain = if chain == u64::MAX {
        None
    } else {
        Some(k.cap_sm(pd, chain, obj_rights::USE)?)
    };
    if let Some(t) = chain {
        if k.sms.get(t).is_some_and(|t| t.chain.is_some()) {
            return Err(Status::BadParameter); // chains are one level deep
        }
    }
    k.charge(pd, KMEM_SMALL)?;
    let id = k.sms.insert(Sm {
        count,
        waiters: Default::default(),
        chain,
        fired: Default::default(),
        chain_badge: dst,
        gsi: None,
        root_cap: (pd, dst),
    });
    k.install_root(pd, dst, ObjRef::Sm(id))
        .expect("selector checked free");
    Ok(())
}

fn revoke(k: &mut Kernel, pd: PdId, crd: Crd, include_self: u64) -> KResult<()> {
    if include_self > 1 || crd.order() > 35 {
        return Err(Status::BadParameter);
    }
    let me = include_self == 1;
    match crd.kind() {
        CrdKind::Memory => {
            let r = k.mem.revoke(pd, crd.base(), crd.order(), me);
            k.removed_memory(r);
        }
        CrdKind::Io => {
            let r = k.io.revoke(pd, crd.base(), crd.order(), me);
            k.removed_ports(r);
        }
        CrdKind::Object => {
            // a PD cannot revoke its own self capability's root (it has none)
            let r = k.obj.revoke(pd, crd.base(), crd.order(), me);
            k.removed_objects(r);
        }
        CrdKind::Null => return Err(Status::BadParameter),
    }
    Ok(())
}

fn ec_ctrl(k: &mut Kernel, me: EcId, pd: PdId, ec_sel: u64, op: u64) -> KResult<()> {
    match op {
        x if x == EcOp::Recall as u64 => {
            let ec = k.cap_ec(pd, ec_sel, obj_rights::CTRL)?;
            let e = k.ecs.get_mut(ec).expect("checked");
            e.recall = true;
            let cpu = e.cpu;
            if cpu != crate::arch::smp::cpu_id() {
                apic::send_fixed(k.sched.apic_ids[cpu], apic::VECTOR_RESCHEDULE);
            }
            Ok(())
        }
        x if x == EcOp::Exit as u64 => {
            let _ = ec_sel;
            k.kill_ec(me, "exited");
            Ok(())
        }
        x if x == EcOp::SetState as u64 => {
            let ec = k.cap_ec(pd, ec_sel, obj_rights::CTRL)?;
            let t = k.ecs.get(ec).expect("checked");
            if t.kind != EcKind::Global || t.sc.is_some() || t.state != EcState::Ready {
                return Err(Status::BadParameter);
            }
            let src = crate::ipc::utcb_pa(k, me).ok_or(Status::BadParameter)?;
            if crate::ipc::load_state(k, ec, src) {
                Ok(())
            } else {
                Err(Status::BadParameter)
            }
        }
        _ => Err(Status::BadParameter),
    }
}

fn sm_ctrl(k: &mut Kernel, ec: EcId, pd: PdId, sm_sel: u64, op: u64, timeout_us: u64) -> Outcome {
    let want = obj_rights::USE;
    let sm = match k.cap_sm(pd, sm_sel, want) {
        Ok(s) => s,
        Err(s) => return Outcome::Done(s, 0, 0),
    };
    match op {
        x if x == SmOp::Up as u64 => {
            if k.sms.get(sm).is_some_and(|s| s.gsi.is_some()) {
                return Outcome::Done(Status::BadParameter, 0, 0); // only the interrupt ups a GSI semaphore
            }
            crate::ipc::sm_up(k, sm);
            Outcome::Done(Status::Success, 0, 0)
        }
        x if x == SmOp::Down as u64 || x == SmOp::DownZero as u64 => {
            match crate::ipc::sm_down(k, ec, sm, x == SmOp::DownZero as u64, timeout_us) {
                Ok(Some(v)) => Outcome::Done(Status::Success, v, 0),
                Ok(None) => Outcome::Blocked,
                Err(s) => Outcome::Done(s, 0, 0),
            }
        }
        _ => Outcome::Done(Status::BadParameter, 0, 0),
    }
}

fn assign_gsi(k: &mut Kernel, pd: PdId, sm_sel: u64, cpu: u64) -> KResult<()> {
    let sm = k.cap_sm(pd, sm_sel, obj_rights::CTRL)?;
    let gsi = k
        .sms
        .get(sm)
        .and_then(|s| s.gsi)
        .ok_or(Status::BadParameter)?;
    if cpu as usize >= k.sched.cpus.len() || !crate::trap::cpu_online(cpu as usize) {
        return Err(Status::BadCpu);
    }
    crate::trap::route_gsi(gsi, k.sched.apic_ids[cpu as usize]);
    Ok(())
}

fn console_write(k: &mut Kernel, ec: EcId, len: u64) -> KResult<()> {
    let pa = crate::ipc::utcb_pa(k, ec).ok_or(Status::BadParameter)?;
    if len > (hyper_abi::UTCB_WORDS * 8) as u64 {
        return Err(Status::BadParameter);
    }
    crate::console::write_bytes(phys::slice(pa + crate::ipc::HDR, len as usize));
    Ok(())
}

/// The console's input belongs to the roottask (the PD without a parent), which
/// passes it on to the component the boot configuration names.
fn console_read(k: &mut Kernel, ec: EcId, pd: PdId, max: u64) -> KResult<u64> {
    if k.pds.get(pd).is_none_or(|p| p.parent.is_some()) {
        return Err(Status::BadCapability);
    }
    let pa = crate::ipc::utcb_pa(k, ec).ok_or(Status::BadParameter)?;
    let len = (max as usize).min(256);
    let n = crate::console::read_bytes(phys::slice_mut(pa + crate::ipc::HDR, len));
    Ok(n as u64)
}
