//! The roottask: receives all memory, I/O ports and interrupts the kernel does not
//! use (described by the Hypervisor Information Page), reads the boot configuration
//! module `config`, and starts each component in its own protection domain with
//! the memory, ports, interrupts and services the configuration grants. It then
//! serves the components' parent requests and exceptions (as their pager).
#![no_std]
#![no_main]

extern crate alloc;

mod pool;

use alloc::string::String;
use alloc::vec::Vec;
use hyper_abi::syscall::{self, EcParams};
use hyper_abi::{exc, mem_rights, obj_rights, sel, Crd, CrdKind, EcKind, Hip, SmOp, Status};
use native::{parent, StartInfo};
use pool::Pool;

/// Selector allocation in the roottask's own capability space.
static NEXT_SEL: spin::Mutex<u64> = spin::Mutex::new(sel::ROOT_FREE);
fn new_sel() -> u64 {
    let mut n = NEXT_SEL.lock();
    *n += 1;
    *n - 1
}

/// UTCBs of the roottask's portal handlers (one per CPU).
const HANDLER_UTCB: u64 = 0x0000_7fff_ff00_0000;

struct Component {
    name: String,
    pd: u64,
    uses: Vec<String>,
    provides: Vec<String>,
    alive: bool,
    faults: u64,
    /// Pages of its memory quota not yet used (the pager takes lazy pages from it).
    pages_left: u64,
}

struct Service {
    name: String,
    portal: u64,
}

struct State {
    components: Vec<Component>,
    services: Vec<Service>,
    pool: Pool,
}

static STATE: spin::Mutex<Option<State>> = spin::Mutex::new(None);

macro_rules! rprintln {
    ($($arg:tt)*) => { native::println!("roottask: {}", format_args!($($arg)*)) };
}

#[no_mangle]
extern "C" fn _start(hip: u64, utcb: u64) -> ! {
    native::set_utcb(utcb);
    native::heap::init();
    // SAFETY: the kernel maps the HIP read-only at this address before we start.
    let hip = unsafe { &*(hip as *const Hip) };
    main(hip);
    // nothing left to do on this thread: block for good (handlers keep serving)
    let idle = new_sel();
    let _ = syscall::create_sm(idle, 0, None);
    loop {
        let _ = syscall::sm_ctrl(idle, SmOp::Down, 0);
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    native::println!("roottask: PANIC: {info}");
    loop {
        core::hint::spin_loop();
    }
}

fn module(hip: &Hip, name: &str) -> Option<&'static [u8]> {
    hip.modules[..hip.module_count as usize]
        .iter()
        .find_map(|m| {
            let cmd = native::cstr(&m.cmdline);
            (cmd.split(' ').next() == Some(name)).then(|| {
                // SAFETY: the kernel maps every boot module at PHYS_WINDOW + its address.
                unsafe {
                    core::slice::from_raw_parts(
                        (sel::PHYS_WINDOW + m.base) as *const u8,
                        m.size as usize,
                    )
                }
            })
        })
}

fn main(hip: &Hip) {
    let ram: u64 = hip.mem[..hip.mem_count as usize]
        .iter()
        .map(|m| m.size)
        .sum();
    rprintln!(
        "started on {} CPUs with {} MiB of RAM and {} boot modules",
        hip.cpu_count,
        ram >> 20,
        hip.module_count
    );
    let pool = Pool::new(&hip.mem[..hip.mem_count as usize]);
    *STATE.lock() = Some(State {
        components: Vec::new(),
        services: Vec::new(),
        pool,
    });

    let Some(text) = module(hip, "config") else {
        rprintln!("no boot module named \"config\": nothing to start");
        return;
    };
    let config = match boot_config::parse_bytes(text) {
        Ok(c) => c,
        Err(e) => {
            rprintln!("boot configuration rejected: {e}");
            return;
        }
    };
    // one handler EC per CPU serves parent requests and exceptions
    let mut handlers = Vec::new();
    for cpu in 0..hip.cpu_count {
        handlers.push(make_handler(cpu));
    }
    for (index, c) in config.components.iter().enumerate() {
        match start(hip, &config, index, c, &handlers) {
            Ok(()) => rprintln!("started {} on CPU {}", c.name, c.cpu),
            Err(e) => rprintln!("cannot start {}: {e}", c.name),
        }
    }
}

fn make_handler(cpu: u32) -> u64 {
    let stack = with_state(|s| s.pool.alloc(16)).expect("memory for handler stacks");
    let ec = new_sel();
    let utcb = HANDLER_UTCB + cpu as u64 * 0x1000;
    let p = EcParams {
        pd: sel::PD_SELF,
        cpu: cpu as u16,
        kind: EcKind::Local,
        flags: 0,
        evt_base: 0,
        utcb,
        sp: sel::PHYS_WINDOW + stack + 16 * 4096 - 8,
        ip: 0,
    };
    syscall::create_ec(ec, &p).expect("handler EC");
    let u = native::utcb_at(utcb);
    u.recv_obj = Crd::new(CrdKind::Object, new_sel(), 0, 0);
    ec
}

fn with_state<T>(f: impl FnOnce(&mut State) -> T) -> T {
    f(STATE.lock().as_mut().expect("state"))
}

/// Component-side addresses.
const STACK_PAGES: u64 = 16;

fn start(
    hip: &Hip,
    cfg: &boot_config::BootConfig,
    index: usize,
    c: &boot_config::Component,
    handlers: &[u64],
) -> Result<(), String> {
    use alloc::format;
    let image =
        module(hip, &c.binary).ok_or_else(|| format!("no boot module named \"{}\"", c.binary))?;
    let elf = elf_loader::Elf::parse(image)
        .map_err(|e| format!("{} is not a loadable program: {e}", c.binary))?;
    if c.cpu >= hip.cpu_count {
        return Err(format!(
            "CPU {} does not exist ({} CPUs)",
            c.cpu, hip.cpu_count
        ));
    }
    let pages_needed = elf
        .segments()
        .map(|s| ((s.vaddr + s.mem_size + 0xfff) >> 12) - (s.vaddr >> 12))
        .sum::<u64>()
        + STACK_PAGES
        + 1;
    if pages_needed * 4096 > c.memory {
        return Err(format!(
            "needs at least {} KiB but its memory quota is {} KiB",
            pages_needed * 4,
            c.memory / 1024
        ));
    }
    let hs = |e: Status| format!("hypercall failed: {}", e.name());
    let pd = new_sel();
    syscall::create_pd(pd, 256 * 1024).map_err(hs)?;
    let give = |dst_page: u64, rights: u8, fill: &dyn Fn(&mut [u8])| -> Result<(), String> {
        let pa = with_state(|s| s.pool.alloc(1)).ok_or("roottask out of memory")?;
        // SAFETY: the page was just taken from our pool and is mapped in the physical window.
        let bytes =
            unsafe { core::slice::from_raw_parts_mut((sel::PHYS_WINDOW + pa) as *mut u8, 4096) };
        bytes.fill(0);
        fill(bytes);
        syscall::delegate(
            pd,
            Crd::mem((sel::PHYS_WINDOW + pa) >> 12, 0, rights),
            dst_page,
        )
        .map(|_| ())
        .map_err(hs)
    };
    for seg in elf.segments() {
        let rights = mem_rights::R
            | if seg.flags.write { mem_rights::W } else { 0 }
            | if seg.flags.execute { mem_rights::X } else { 0 };
        for page in (seg.vaddr >> 12)..((seg.vaddr + seg.mem_size + 0xfff) >> 12) {
            let va = page << 12;
            give(page, rights, &|bytes: &mut [u8]| {
                let start = va.max(seg.vaddr);
                let off = start - seg.vaddr;
                if off < seg.data.len() as u64 {
                    let n = (seg.data.len() as u64 - off).min(va + 4096 - start) as usize;
                    let d = (start - va) as usize;
                    bytes[d..d + n].copy_from_slice(&seg.data[off as usize..off as usize + n]);
                }
            })?;
        }
    }
    for i in 1..=STACK_PAGES {
        give(
            (native::STACK_TOP >> 12) - i,
            mem_rights::R | mem_rights::W,
            &|_| {},
        )?;
    }
    give(
        native::START_INFO >> 12,
        mem_rights::R,
        &|bytes: &mut [u8]| {
            // SAFETY: the page is zeroed and large enough for a StartInfo.
            let info = unsafe { &mut *(bytes.as_mut_ptr() as *mut StartInfo) };
            for (d, s) in info.name.iter_mut().zip(c.name.bytes()) {
                *d = s;
            }
            let args = c.args.join(" ");
            for (d, s) in info.args.iter_mut().take(255).zip(args.bytes()) {
                *d = s;
            }
            info.cpu = c.cpu;
            info.irq_count = c.irqs.len() as u32;
            info.cpu_count = hip.cpu_count;
            info.tsc_per_us = hip.tsc_per_us;
        },
    )?;
    // exception portals and the parent portal, all served by the handler of its CPU
    let handler = handlers[c.cpu as usize];
    let badge = (c.cpu as u64) << 32 | index as u64;
    for v in 0..exc::PORTALS {
        let pt = new_sel();
        syscall::create_pt(
            pt,
            handler,
            exception_entry as *const () as usize as u64,
            badge,
        )
        .map_err(hs)?;
        syscall::delegate(pd, Crd::obj(pt, obj_rights::USE), native::EVT_BASE + v).map_err(hs)?;
    }
    let pt = new_sel();
    syscall::create_pt(
        pt,
        handler,
        parent_entry as *const () as usize as u64,
        badge,
    )
    .map_err(hs)?;
    syscall::delegate(pd, Crd::obj(pt, obj_rights::USE), native::PARENT).map_err(hs)?;
    for (i, &irq) in c.irqs.iter().enumerate() {
        let sm = sel::GSI_BASE + irq as u64;
        syscall::assign_gsi(sm, c.cpu)
            .map_err(|e| format!("interrupt line {irq}: {}", e.name()))?;
        syscall::delegate(
            pd,
            Crd::obj(sm, obj_rights::USE),
            native::IRQ_BASE + i as u64,
        )
        .map_err(hs)?;
    }
    for r in &c.ioports {
        let (mut p, end) = (r.first as u64, r.last as u64 + 1);
        while p < end {
            let mut order = if p == 0 {
                16
            } else {
                p.trailing_zeros().min(16) as u8
            };
            while p + (1 << order) > end {
                order -= 1;
            }
            syscall::delegate(pd, Crd::io(p, order), p).map_err(hs)?;
            p += 1 << order;
        }
    }
    with_state(|s| {
        s.components.push(Component {
            name: c.name.clone(),
            pd,
            uses: c.uses.clone(),
            provides: c.provides.clone(),
            alive: true,
            faults: 0,
            pages_left: (c.memory / 4096).saturating_sub(pages_needed),
        })
    });
    let _ = cfg;
    let ec = new_sel();
    let p = EcParams {
        pd,
        cpu: c.cpu as u16,
        kind: EcKind::Global,
        flags: 0,
        evt_base: native::EVT_BASE as u32,
        utcb: native::UTCB,
        sp: native::STACK_TOP - 8,
        ip: elf.entry(),
    };
    syscall::create_ec(ec, &p).map_err(hs)?;
    syscall::create_sc(new_sel(), ec, c.priority, 10_000).map_err(hs)?;
    Ok(())
}

fn handler_utcb(badge: u64) -> &'static mut hyper_abi::Utcb {
    native::utcb_at(HANDLER_UTCB + (badge >> 32) * 0x1000)
}

fn reply() -> ! {
    loop {
        // SAFETY: reply never touches our memory.
        unsafe { syscall::raw(hyper_abi::Hypercall::Reply as u64, 0, 0, 0, 0, 0, 0) };
    }
}

/// Removes a component for good: its PD (and with it all its threads and
/// everything delegated to it) is revoked.
fn destroy(s: &mut State, index: usize) {
    if let Some(c) = s.components.get_mut(index) {
        if c.alive {
            c.alive = false;
            let _ = syscall::revoke(Crd::obj(c.pd, obj_rights::ALL), true);
        }
    }
}

extern "C" fn exception_entry(badge: u64) -> ! {
    let u = handler_utcb(badge);
    let index = (badge & 0xffff_ffff) as usize;
    let (vector, error, addr, rip) = (
        u.words[exc::VECTOR],
        u.words[exc::ERROR],
        u.words[exc::ADDR],
        u.words[exc::RIP],
    );
    let at = HANDLER_UTCB + (badge >> 32) * 0x1000;
    let mut st = STATE.lock();
    let s = st.as_mut().expect("state");
    let lazy = native::LAZY_BASE..native::LAZY_BASE + native::LAZY_SIZE;
    let in_lazy = u.untyped as usize == exc::WORDS && vector == 14 && lazy.contains(&addr);
    let quota_left = s.components.get(index).is_some_and(|c| c.pages_left > 0);
    if in_lazy && quota_left {
        if let Some(pa) = s.pool.alloc(1) {
            // SAFETY: fresh page from our pool, mapped in the physical window.
            unsafe { core::ptr::write_bytes((sel::PHYS_WINDOW + pa) as *mut u8, 0, 4096) };
            let name = s.components.get_mut(index).map(|c| {
                c.faults += 1;
                c.pages_left -= 1;
                (c.name.clone(), c.faults)
            });
            if let Some((name, 1)) = name {
                native::print_at(
                    at,
                    format_args!("roottask: pager: mapped a page at {addr:#x} for {name}\n"),
                );
            }
            u.words[0] = exc::RESUME;
            u.words[1] = Crd::mem(
                (sel::PHYS_WINDOW + pa) >> 12,
                0,
                mem_rights::R | mem_rights::W,
            )
            .0;
            u.words[2] = addr >> 12;
            u.untyped = 1;
            u.typed = 1;
            drop(st);
            reply();
        }
    }
    let name = s
        .components
        .get(index)
        .map(|c| c.name.clone())
        .unwrap_or_default();
    let reason = match vector {
        14 if in_lazy => "page fault beyond its memory quota",
        0 => "divide error",
        3 => "breakpoint",
        6 => "invalid opcode",
        13 => "general protection fault",
        14 => "page fault",
        _ => "exception",
    };
    native::print_at(
        at,
        format_args!("roottask: component {name} crashed: {reason} (vector {vector}, error {error:#x}) at rip {rip:#x}, address {addr:#x}\n"),
    );
    u.words[0] = exc::KILL;
    u.untyped = 1;
    u.typed = 0;
    destroy(s, index);
    drop(st);
    reply()
}

extern "C" fn parent_entry(badge: u64) -> ! {
    let u = handler_utcb(badge);
    let at = HANDLER_UTCB + (badge >> 32) * 0x1000;
    let index = (badge & 0xffff_ffff) as usize;
    let op = if u.untyped > 0 { u.words[0] } else { 0 };
    let name_of = |w: &[u64]| -> String {
        let mut b = Vec::new();
        for x in w.iter().take(4) {
            for i in 0..8 {
                let c = (x >> (8 * i)) as u8;
                if c != 0 {
                    b.push(c);
                }
            }
        }
        String::from_utf8(b).unwrap_or_default()
    };
    let mut st = STATE.lock();
    let s = st.as_mut().expect("state");
    let who = s
        .components
        .get(index)
        .map(|c| c.name.clone())
        .unwrap_or_default();
    let mut status = 1u64;
    let mut typed = 0;
    let untyped_in = u.untyped as usize;
    match op {
        parent::OP_REGISTER if untyped_in >= 5 && u.typed == 1 => {
            let name = name_of(&u.words[1..5]);
            let got = Crd(u.words[untyped_in]);
            let allowed = s
                .components
                .get(index)
                .is_some_and(|c| c.provides.contains(&name));
            if got.kind() == CrdKind::Object
                && allowed
                && !s.services.iter().any(|x| x.name == name)
            {
                s.services.push(Service {
                    name: name.clone(),
                    portal: got.base(),
                });
                // the next capability lands in a fresh slot
                u.recv_obj = Crd::new(CrdKind::Object, new_sel(), 0, 0);
                native::print_at(
                    at,
                    format_args!("roottask: {who} registered service \"{name}\"\n"),
                );
                status = 0;
            } else {
                native::print_at(
                    at,
                    format_args!("roottask: {who} may not register service \"{name}\"\n"),
                );
            }
        }
        parent::OP_LOOKUP if untyped_in >= 6 => {
            let name = name_of(&u.words[1..5]);
            let offset = u.words[5];
            let allowed = s
                .components
                .get(index)
                .is_some_and(|c| c.uses.contains(&name));
            match s.services.iter().find(|x| x.name == name) {
                Some(svc) if allowed => {
                    u.words[1] = Crd::obj(svc.portal, obj_rights::USE).0;
                    u.words[2] = offset;
                    typed = 1;
                    status = 0;
                }
                _ => native::print_at(
                    at,
                    format_args!("roottask: {who} asked for service \"{name}\": refused\n"),
                ),
            }
        }
        parent::OP_EXIT if untyped_in >= 2 => {
            let code = u.words[1] as i64 as i32;
            native::print_at(
                at,
                format_args!("roottask: component {who} exited with code {code}\n"),
            );
            destroy(s, index);
            status = 0;
        }
        _ => {}
    }
    u.words[0] = status;
    u.untyped = 1;
    u.typed = typed;
    drop(st);
    reply()
}

#[allow(dead_code)]
fn unused(_: Status) {}
