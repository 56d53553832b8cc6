//! Creates the roottask: its protection domain with all free RAM, the boot
//! modules and the I/O ports the kernel does not use, the semaphores of all
//! interrupt lines, its image loaded from boot module 0, and its first thread.

use crate::arch::{apic, paging, phys};
use crate::memory::RootMemory;
use crate::multiboot::BootInfo;
use crate::object::*;
use alloc::boxed::Box;
use hyper_abi::{
    mem_rights, obj_rights, sel, Hip, HipMem, HipModule, HIP_MAGIC, HIP_MEM_MAX, HIP_MODULES_MAX,
    HIP_MODULE_CMDLINE,
};

const ROOT_STACK_TOP: u64 = 0x0000_7fff_fff0_0000;
const ROOT_STACK_PAGES: u64 = 32;
const ROOT_UTCB: u64 = 0x0000_7fff_fffe_0000;
/// Ports the kernel keeps: its serial console.
const KERNEL_PORTS: core::ops::Range<u64> = 0x3f8..0x400;

/// Maps a fresh kernel page into the roottask as a root memory capability.
fn map_new_page(k: &mut Kernel, pd: PdId, va: u64, rights: u8) -> Result<u64, &'static str> {
    let pa = crate::trap::alloc_page().ok_or("out of kernel memory")?;
    k.mem
        .insert_root(pd, va >> 12, 0, rights, pa >> 12)
        .map_err(|_| "overlapping roottask segments")?;
    let p = k.pds.get_mut(pd).expect("root PD");
    p.space
        .map(va, pa, 0, crate::ipc::page_flags(rights))
        .map_err(|_| "out of kernel memory")?;
    Ok(pa)
}

/// Aligned blocks covering [start, end).
fn blocks(mut start: u64, end: u64) -> impl Iterator<Item = (u64, u8)> {
    core::iter::from_fn(move || {
        if start >= end {
            return None;
        }
        let mut order = if start == 0 {
            63
        } else {
            start.trailing_zeros() as u8
        };
        while order > 0 && start + (1u64 << order) > end {
            order -= 1;
        }
        let b = (start, order);
        start += 1 << order;
        Some(b)
    })
}

pub fn create(
    k: &mut Kernel,
    bi: &BootInfo,
    mem: &RootMemory,
    kmem_quota: u64,
) -> Result<(), &'static str> {
    let module = bi
        .modules()
        .first()
        .ok_or("no boot modules: the roottask must be module 0")?;
    let image = phys::slice(module.start, (module.end - module.start) as usize);
    let elf = elf_loader::Elf::parse(image)
        .map_err(|_| "the roottask module is not a valid ELF executable")?;
    if elf.is_position_independent() {
        return Err("the roottask must be linked at a fixed address (not PIE)");
    }

    let space = paging::AddressSpace::new().map_err(|_| "out of kernel memory")?;
    let pd = k.pds.insert(Pd {
        space,
        io_bitmap: Box::new([0xff; 8192]),
        kmem_quota,
        kmem_used: KMEM_PD,
        parent: None,
        root_cap: (Id { index: 0, gen: 0 }, sel::PD_SELF),
        tlb_gen: 0,
        vm: None,
    });
    k.pds.get_mut(pd).expect("root").root_cap = (pd, sel::PD_SELF);
    k.install_root(pd, sel::PD_SELF, ObjRef::Pd(pd))
        .map_err(|_| "cap space")?;

    // all free RAM and the boot modules, at PHYS_WINDOW + physical
    let window = sel::PHYS_WINDOW >> 12;
    let mut hip = Box::new(Hip {
        magic: HIP_MAGIC,
        cpu_count: k.sched.cpus.len() as u32,
        mem_count: 0,
        module_count: 0,
        _pad: 0,
        tsc_per_us: apic::tsc_per_us(),
        kmem_quota: kmem_quota / 2,
        mem: [HipMem::default(); HIP_MEM_MAX],
        modules: [HipModule {
            base: 0,
            size: 0,
            cmdline: [0; HIP_MODULE_CMDLINE],
        }; HIP_MODULES_MAX],
    });
    for &(base, order) in &mem.blocks {
        let pfn = base >> 12;
        k.mem
            .insert_root(pd, window + pfn, order, mem_rights::RWX, pfn)
            .map_err(|_| "RAM overlaps")?;
        let p = k.pds.get_mut(pd).expect("root");
        p.space
            .map(sel::PHYS_WINDOW + base, base, order, paging::W)
            .map_err(|_| "out of kernel memory")?;
        let n = hip.mem_count as usize;
        // adjacent blocks are merged in the HIP
        if n > 0 && hip.mem[n - 1].base + hip.mem[n - 1].size == base {
            hip.mem[n - 1].size += 4096 << order;
        } else if n < HIP_MEM_MAX {
            hip.mem[n] = HipMem {
                base,
                size: 4096 << order,
            };
            hip.mem_count += 1;
        }
    }
    for m in bi.modules() {
        let first = m.start >> 12;
        let end = (m.end + 0xfff) >> 12;
        for (pfn, order) in blocks(first, end) {
            if k.mem
                .insert_root(pd, window + pfn, order, mem_rights::R | mem_rights::W, pfn)
                .is_ok()
            {
                let p = k.pds.get_mut(pd).expect("root");
                p.space
                    .map(
                        sel::PHYS_WINDOW + (pfn << 12),
                        pfn << 12,
                        order,
                        paging::W | paging::NX,
                    )
                    .map_err(|_| "out of kernel memory")?;
            }
        }
        let n = hip.module_count as usize;
        if n < HIP_MODULES_MAX {
            let mut cmdline = [0u8; HIP_MODULE_CMDLINE];
            let text = m.cmdline().as_bytes();
            // the name first: basename of the first word
            let name = m.name().as_bytes();
            let rest = text
                .split(|&b| b == b' ')
                .skip(1)
                .flat_map(|w| core::iter::once(b' ').chain(w.iter().copied()));
            for (dst, src) in cmdline
                .iter_mut()
                .take(HIP_MODULE_CMDLINE - 1)
                .zip(name.iter().copied().chain(rest))
            {
                *dst = src;
            }
            hip.modules[n] = HipModule {
                base: m.start,
                size: m.end - m.start,
                cmdline,
            };
            hip.module_count += 1;
        }
    }

    // I/O ports except the kernel's own
    for (base, order) in blocks(0, KERNEL_PORTS.start).chain(blocks(KERNEL_PORTS.end, 0x10000)) {
        k.io.insert_root(pd, base, order, 1, base)
            .map_err(|_| "ports")?;
        let p = k.pds.get_mut(pd).expect("root");
        for port in base..base + (1 << order) {
            p.io_bitmap[(port / 8) as usize] &= !(1 << (port % 8));
        }
    }

    // interrupt semaphores
    k.gsi_sms = alloc::vec![None; apic::MAX_GSI as usize];
    for line in 0..sel::GSI_COUNT as u32 {
        let Some((gsi, _, _)) = crate::trap::line_to_gsi(line) else {
            continue;
        };
        if gsi >= apic::MAX_GSI || k.gsi_sms[gsi as usize].is_some() {
            continue;
        }
        let s = sel::GSI_BASE + line as u64;
        let id = k.sms.insert(Sm {
            count: 0,
            waiters: Default::default(),
            chain: None,
            fired: Default::default(),
            chain_badge: s,
            gsi: Some(gsi),
            root_cap: (pd, s),
        });
        k.install_root(pd, s, ObjRef::Sm(id))
            .map_err(|_| "cap space")?;
        k.gsi_sms[gsi as usize] = Some(id);
    }

    // the image
    for seg in elf.segments() {
        let rights = mem_rights::R
            | if seg.flags.write { mem_rights::W } else { 0 }
            | if seg.flags.execute { mem_rights::X } else { 0 };
        let start = seg.vaddr & !0xfff;
        let end = (seg.vaddr + seg.mem_size + 0xfff) & !0xfff;
        for va in (start..end).step_by(4096) {
            let pa = map_new_page(k, pd, va, rights)?;
            // copy the part of the file data that falls into this page
            let page_off = va.max(seg.vaddr) - seg.vaddr;
            if page_off < seg.data.len() as u64 {
                let dst = pa + (va.max(seg.vaddr) - va);
                let n = (seg.data.len() as u64 - page_off).min(4096 - (dst - pa));
                phys::copy(dst, &seg.data[page_off as usize..(page_off + n) as usize]);
            }
        }
    }
    for i in 0..ROOT_STACK_PAGES {
        map_new_page(
            k,
            pd,
            ROOT_STACK_TOP - (i + 1) * 4096,
            mem_rights::R | mem_rights::W,
        )?;
    }
    let hip_pa = map_new_page(k, pd, sel::HIP_ADDR, mem_rights::R)?;
    // SAFETY: `Hip` is plain old data of at most one page (checked at compile time).
    let bytes = unsafe {
        core::slice::from_raw_parts(
            &*hip as *const Hip as *const u8,
            core::mem::size_of::<Hip>(),
        )
    };
    phys::copy(hip_pa, bytes);
    let utcb_pa = map_new_page(k, pd, ROOT_UTCB, mem_rights::R | mem_rights::W)?;

    let ec = k.ecs.insert(Ec {
        pd,
        cpu: 0,
        kind: EcKind::Global,
        evt_base: 0,
        utcb: Some((ROOT_UTCB, utcb_pa)),
        regs: Ec::new_regs(elf.entry(), ROOT_STACK_TOP - 8),
        fpu: Box::new(crate::arch::cpu::FpuState::initial()),
        state: EcState::Ready,
        stack: ROOT_STACK_TOP,
        caller: None,
        callee: None,
        waiters: Default::default(),
        serving_exception: false,
        sc: None,
        recall: false,
        root_cap: (pd, sel::ROOT_EC),
        deadline: None,
        fault_addr: 0,
        reflect_syscalls: false,
        fs_base: 0,
        zombie: false,
        vcpu: None,
    });
    k.install_root(pd, sel::ROOT_EC, ObjRef::Ec(ec))
        .map_err(|_| "cap space")?;
    // rdi: the HIP, rsi: the UTCB
    let e = k.ecs.get_mut(ec).expect("root EC");
    e.regs.rdi = sel::HIP_ADDR;
    e.regs.rsi = ROOT_UTCB;
    let sc = k.scs.insert(Sc {
        ec,
        cpu: 0,
        priority: 100,
        quantum_us: 10_000,
        left: 10_000 * apic::tsc_per_us(),
        consumed: 0,
        zombie: false,
        root_cap: (pd, sel::ROOT_SC),
    });
    k.install_root(pd, sel::ROOT_SC, ObjRef::Sc(sc))
        .map_err(|_| "cap space")?;
    k.ecs.get_mut(ec).expect("root EC").sc = Some(sc);
    crate::sched::enqueue(k, sc);
    let _ = obj_rights::ALL;
    Ok(())
}
