//! The roottask: receives all memory, I/O ports and interrupts the kernel does not
//! use (described by the Hypervisor Information Page), reads the boot configuration
//! module `config`, and starts each component in its own protection domain with
//! the memory, ports, interrupts and services the configuration grants. It then
//! serves the components' parent requests (services, memory, boot modules, exit)
//! and exceptions (as their pager and crash reporter), and takes every page back
//! when a component ends.
//!
//! Linux components (`kind = "linux"`) start the `posix-server` boot module in
//! their protection domain; it loads the Linux program and serves its system calls
//! with the memory requests below (see docs/components.md).
#![no_std]
#![no_main]

extern crate alloc;

mod memory;
mod pool;
mod rtc;

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use boot_config::{BootConfig, Kind};
use hyper_abi::syscall::{self, EcParams};
use hyper_abi::{exc, mem_rights, obj_rights, sel, Crd, CrdKind, EcKind, Hip, SmOp, Status};
use memory::Memory;
use native::{parent, StartInfo};
use pool::Pool;

native::global_heap!();

/// Selector allocation in the roottask's own capability space.
static NEXT_SEL: spin::Mutex<u64> = spin::Mutex::new(sel::ROOT_FREE + 1);
fn new_sel() -> u64 {
    let mut n = NEXT_SEL.lock();
    *n += 1;
    *n - 1
}

/// UTCBs of the roottask's portal handlers (one per CPU).
const HANDLER_UTCB: u64 = 0x0000_7fff_ff00_0000;
/// The boot module that runs Linux programs.
const POSIX_SERVER: &str = "posix-server";

struct Component {
    name: String,
    pd: u64,
    uses: Vec<String>,
    provides: Vec<String>,
    alive: bool,
    /// Waiting for the reaper to end it.
    doomed: bool,
    faults: u64,
    memory: Memory,
    /// Free pages of the pool just before it started.
    free_before: u64,
}

struct Service {
    name: String,
    portal: u64,
}

struct State {
    hip: &'static Hip,
    config: BootConfig,
    components: Vec<Component>,
    /// Configuration indices of components waiting for another to end.
    waiting: Vec<usize>,
    services: Vec<Service>,
    pool: Pool,
    handlers: Vec<u64>,
    /// The component that gets the console's input, its semaphore, and input
    /// it has not read yet.
    terminal: Option<(usize, u64)>,
    input: VecDeque<u8>,
    /// Components to end (by the reaper: a handler must not end the component
    /// whose call it serves, it runs on that component's time).
    doomed: Vec<usize>,
    boot_epoch_s: u64,
    boot_tsc: u64,
}

static STATE: native::sync::Mutex<Option<State>> = native::sync::Mutex::new(None);

/// Prints a roottask line through the UTCB at `at` (the printing EC's own).
fn say(at: u64, args: core::fmt::Arguments) {
    native::print_at(at, format_args!("roottask: {args}\n"));
}

#[no_mangle]
extern "C" fn _start(hip: u64, utcb: u64) -> ! {
    native::set_utcb(utcb);
    native::heap::init();
    // SAFETY: the kernel maps the HIP read-only at this address before we start
    // and never changes or unmaps it.
    let hip: &'static Hip = unsafe { &*(hip as *const Hip) };
    let _ = syscall::create_sm(REAPER, 0, None);
    STATE.init(new_sel());
    main(hip, utcb);
    // from now on this thread ends the components the handlers doomed
    loop {
        let _ = syscall::sm_ctrl(REAPER, SmOp::Down, 0);
        with_state(|s| {
            for ci in core::mem::take(&mut s.doomed) {
                end(s, ci, utcb);
            }
        });
    }
}

/// The semaphore that wakes the reaper (the roottask's main thread).
const REAPER: u64 = sel::ROOT_FREE;

/// Has the reaper end component `ci` soon; it gets no more service meanwhile.
fn doom(s: &mut State, ci: usize) {
    if let Some(c) = s.components.get_mut(ci) {
        if c.alive && !c.doomed {
            c.doomed = true;
            s.doomed.push(ci);
            let _ = syscall::sm_ctrl(REAPER, SmOp::Up, 0);
        }
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    native::println!("roottask: PANIC: {info}");
    loop {
        core::hint::spin_loop();
    }
}

/// Boot module `name`: its physical address and bytes.
fn module(hip: &Hip, name: &str) -> Option<(u64, &'static [u8])> {
    hip.modules[..hip.module_count as usize]
        .iter()
        .find_map(|m| {
            let cmd = native::cstr(&m.cmdline);
            (cmd.split(' ').next() == Some(name)).then(|| {
                // SAFETY: the kernel maps every boot module at PHYS_WINDOW + its
                // address; the roottask never writes to module memory.
                let bytes = unsafe {
                    core::slice::from_raw_parts(
                        (sel::PHYS_WINDOW + m.base) as *const u8,
                        m.size as usize,
                    )
                };
                (m.base, bytes)
            })
        })
}

fn main(hip: &'static Hip, at: u64) {
    let ram: u64 = hip.mem[..hip.mem_count as usize]
        .iter()
        .map(|m| m.size)
        .sum();
    say(
        at,
        format_args!(
            "started on {} CPUs with {} MiB of RAM and {} boot modules",
            hip.cpu_count,
            ram >> 20,
            hip.module_count
        ),
    );
    let Some(pool) = Pool::new(&hip.mem[..hip.mem_count as usize]) else {
        say(at, format_args!("no RAM block can hold the frame bitmap"));
        return;
    };
    let Some((_, text)) = module(hip, "config") else {
        say(
            at,
            format_args!("no boot module named \"config\": nothing to start"),
        );
        return;
    };
    let config = match boot_config::parse_bytes(text) {
        Ok(c) => c,
        Err(e) => {
            say(at, format_args!("boot configuration rejected: {e}"));
            return;
        }
    };
    let boot_epoch_s = rtc::read_epoch_seconds().unwrap_or(0);
    let boot_tsc = native::rdtsc();
    let mut st = State {
        hip,
        config,
        components: Vec::new(),
        waiting: Vec::new(),
        services: Vec::new(),
        pool,
        handlers: Vec::new(),
        doomed: Vec::new(),
        terminal: None,
        input: VecDeque::new(),
        boot_epoch_s,
        boot_tsc,
    };
    // one handler EC per CPU serves parent requests and exceptions
    for cpu in 0..hip.cpu_count {
        let h = make_handler(&mut st, cpu);
        st.handlers.push(h);
    }
    for index in 0..st.config.components.len() {
        if st.config.components[index].after.is_some() {
            st.waiting.push(index);
        }
    }
    let wants_terminal = st.config.terminal.is_some();
    // serve requests from now on (components start calling while we start others)
    *STATE.lock() = Some(st);
    if wants_terminal {
        with_state(start_terminal);
    }
    let n = with_state(|s| s.config.components.len());
    for index in 0..n {
        with_state(|s| {
            if !s.waiting.contains(&index) {
                launch(s, index, at);
            }
        });
    }
    with_state(|s| {
        say(
            at,
            format_args!(
                "all components started; free memory {} KiB",
                s.pool.free_pages() * 4
            ),
        )
    });
}

fn make_handler(s: &mut State, cpu: u32) -> u64 {
    let stack = s.pool.alloc(4, |_| {}).expect("memory for handler stacks");
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

/// UTCB of the thread that reads the console's input.
const TERMINAL_UTCB: u64 = HANDLER_UTCB + 0x80 * 0x1000;

/// Starts the thread that moves console input to the terminal component.
fn start_terminal(s: &mut State) {
    let Some(stack) = s.pool.alloc(2, |_| {}) else {
        return;
    };
    let ec = new_sel();
    let p = EcParams {
        pd: sel::PD_SELF,
        cpu: 0,
        kind: EcKind::Global,
        flags: 0,
        evt_base: 0,
        utcb: TERMINAL_UTCB,
        sp: sel::PHYS_WINDOW + stack + 4 * 4096 - 8,
        ip: terminal_main as *const () as usize as u64,
    };
    if syscall::create_ec(ec, &p).is_ok() {
        let _ = syscall::create_sc(new_sel(), ec, 100, 10_000);
    }
}

/// The console's input: ISA IRQ 4 (the kernel's UART) wakes this thread, which
/// fetches the bytes and tells the terminal component.
extern "C" fn terminal_main() -> ! {
    let irq = sel::GSI_BASE + 4;
    let _ = syscall::assign_gsi(irq, 0);
    let u = native::utcb_at(TERMINAL_UTCB);
    loop {
        let n = syscall::console_read(256).unwrap_or(0);
        if n == 0 {
            let _ = syscall::sm_ctrl(irq, SmOp::Down, 0);
            continue;
        }
        let bytes: Vec<u8> = u
            .words
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .take(n)
            .collect();
        with_state(|s| {
            if s.input.len() < 64 * 1024 {
                s.input.extend(bytes);
            }
            if let Some((_, sm)) = s.terminal {
                let _ = syscall::sm_ctrl(sm, SmOp::Up, 0);
            }
        });
    }
}

fn with_state<T>(f: impl FnOnce(&mut State) -> T) -> T {
    f(STATE.lock().as_mut().expect("state"))
}

/// Starts configured component `index` and reports the outcome.
fn launch(s: &mut State, index: usize, at: u64) {
    let name = s.config.components[index].name.clone();
    let cpu = s.config.components[index].cpu;
    match start(s, index) {
        Ok(()) => say(at, format_args!("started {name} on CPU {cpu}")),
        Err(e) => {
            say(at, format_args!("cannot start {name}: {e}"));
            if let Some(ci) = s.components.iter().position(|c| c.name == name && c.alive) {
                end(s, ci, at);
            }
        }
    }
}

/// Component-side addresses.
const STACK_PAGES: u64 = 16;

fn start(s: &mut State, index: usize) -> Result<(), String> {
    use alloc::format;
    let c = s.config.components[index].clone();
    let hip = s.hip;
    let program = match c.kind {
        Kind::Native => c.binary.as_str(),
        Kind::Linux => POSIX_SERVER,
    };
    let (_, image) =
        module(hip, program).ok_or_else(|| format!("no boot module named \"{program}\""))?;
    let elf = elf_loader::Elf::parse(image)
        .map_err(|e| format!("{program} is not a loadable program: {e}"))?;
    if let Some(cpu) = c.cpus.iter().find(|&&cpu| cpu >= hip.cpu_count) {
        return Err(format!("CPU {cpu} does not exist ({} CPUs)", hip.cpu_count));
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
    syscall::create_pd(pd, 1024 * 1024).map_err(hs)?;
    let ci = s.components.len();
    s.components.push(Component {
        name: c.name.clone(),
        pd,
        uses: c.uses.clone(),
        provides: c.provides.clone(),
        alive: true,
        doomed: false,
        faults: 0,
        memory: Memory::new(pd, c.memory / 4096),
        free_before: s.pool.free_pages(),
    });
    let give = |s: &mut State, page: u64, rights: u8, fill: &dyn Fn(&mut [u8])| {
        let State {
            components, pool, ..
        } = s;
        components[ci]
            .memory
            .give(pool, page << 12, 0, rights, |b| fill(b))
            .map_err(|e| format!("{e}"))
    };
    for seg in elf.segments() {
        let rights = mem_rights::R
            | if seg.flags.write { mem_rights::W } else { 0 }
            | if seg.flags.execute { mem_rights::X } else { 0 };
        for page in (seg.vaddr >> 12)..((seg.vaddr + seg.mem_size + 0xfff) >> 12) {
            let va = page << 12;
            give(s, page, rights, &|bytes: &mut [u8]| {
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
            s,
            (native::STACK_TOP >> 12) - i,
            mem_rights::R | mem_rights::W,
            &|_| {},
        )?;
    }
    let (epoch, tsc) = (s.boot_epoch_s, s.boot_tsc);
    give(
        s,
        native::START_INFO >> 12,
        mem_rights::R,
        &|bytes: &mut [u8]| {
            // SAFETY: the page is zeroed, page-aligned and large enough for a
            // StartInfo, which is plain old data.
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
            info.boot_epoch_s = epoch;
            info.boot_tsc = tsc;
        },
    )?;
    // exception portals and a parent portal for every CPU, each served by the
    // roottask's handler on that CPU; the component's own CPU's also at the
    // classic selectors
    for cpu in 0..hip.cpu_count {
        let handler = s.handlers[cpu as usize];
        let badge = (cpu as u64) << 32 | ci as u64;
        let block = native::cpu_portals(cpu);
        let portal = |entry: extern "C" fn(u64) -> !, dst: u64, classic: Option<u64>| {
            let pt = new_sel();
            syscall::create_pt(pt, handler, entry as *const () as usize as u64, badge)
                .map_err(hs)?;
            for dst in core::iter::once(dst).chain(classic) {
                syscall::delegate(pd, Crd::obj(pt, obj_rights::USE), dst).map_err(hs)?;
            }
            Ok::<(), String>(())
        };
        let own = cpu == c.cpu;
        for v in 0..exc::PORTALS {
            portal(
                exception_entry,
                block + v,
                own.then_some(native::EVT_BASE + v),
            )?;
        }
        let parent = block + native::CPU_PARENT;
        portal(parent_entry, parent, own.then_some(native::PARENT))?;
    }
    if s.config.terminal.as_deref() == Some(c.name.as_str()) {
        let sm = new_sel();
        syscall::create_sm(sm, 0, None).map_err(hs)?;
        syscall::delegate(pd, Crd::obj(sm, obj_rights::USE), native::TERMINAL_SM).map_err(hs)?;
        s.terminal = Some((ci, sm));
    }
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

fn handler_at(badge: u64) -> u64 {
    HANDLER_UTCB + (badge >> 32) * 0x1000
}

use syscall::reply;

/// Ends a component for good: its PD (and with it all its threads and
/// everything delegated to it) is revoked, its memory returns to the pool, and
/// components waiting for its end start.
fn end(s: &mut State, ci: usize, at: u64) {
    let Some(c) = s.components.get_mut(ci) else {
        return;
    };
    if !c.alive {
        return;
    }
    c.alive = false;
    let _ = syscall::revoke(Crd::obj(c.pd, obj_rights::ALL), true);
    let pages = c.memory.reclaim(&mut s.pool);
    let (name, before, free) = (c.name.clone(), c.free_before, s.pool.free_pages());
    if free == before {
        say(
            at,
            format_args!(
                "{name} ended: reclaimed {} KiB; free memory is back to what it was before {name} started ({} KiB)",
                pages * 4,
                free * 4
            ),
        );
    } else {
        say(
            at,
            format_args!(
                "{name} ended: reclaimed {} KiB; free memory {} KiB ({} KiB before it started)",
                pages * 4,
                free * 4,
                before * 4
            ),
        );
    }
    s.services
        .retain(|svc| !s.components[ci].provides.contains(&svc.name));
    let ready: Vec<usize> = s
        .waiting
        .iter()
        .copied()
        .filter(|&w| s.config.components[w].after.as_deref() == Some(name.as_str()))
        .collect();
    s.waiting.retain(|w| !ready.contains(w));
    for w in ready {
        launch(s, w, at);
    }
}

extern "C" fn exception_entry(badge: u64) -> ! {
    let at = handler_at(badge);
    let u = native::utcb_at(at);
    let ci = (badge & 0xffff_ffff) as usize;
    let (vector, error, addr, rip) = (
        u.words[exc::VECTOR],
        u.words[exc::ERROR],
        u.words[exc::ADDR],
        u.words[exc::RIP],
    );
    let mut st = STATE.lock();
    let s = st.as_mut().expect("state");
    let lazy = native::LAZY_BASE..native::LAZY_BASE + native::LAZY_SIZE;
    let in_lazy = u.untyped as usize == exc::WORDS && vector == 14 && lazy.contains(&addr);
    if in_lazy {
        let State {
            components, pool, ..
        } = s;
        if let Some(c) = components.get_mut(ci) {
            let rw = mem_rights::R | mem_rights::W;
            if c.memory.give(pool, addr & !0xfff, 0, rw, |_| {}).is_ok() {
                c.faults += 1;
                if c.faults == 1 {
                    say(
                        at,
                        format_args!("pager: mapped a page at {addr:#x} for {}", c.name),
                    );
                }
                u.words[0] = exc::RESUME;
                u.untyped = 1;
                u.typed = 0;
                drop(st);
                reply();
            }
        }
    }
    let name = s
        .components
        .get(ci)
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
    say(
        at,
        format_args!("component {name} crashed: {reason} (vector {vector}, error {error:#x}) at rip {rip:#x}, address {addr:#x}"),
    );
    u.words[0] = exc::KILL;
    u.untyped = 1;
    u.typed = 0;
    doom(s, ci);
    drop(st);
    reply()
}

fn text_of(words: &[u64], len: usize) -> String {
    let bytes: Vec<u8> = words
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .take(len)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

extern "C" fn parent_entry(badge: u64) -> ! {
    let at = handler_at(badge);
    let u = native::utcb_at(at);
    let ci = (badge & 0xffff_ffff) as usize;
    let op = if u.untyped > 0 { u.words[0] } else { 0 };
    let name_of = |w: &[u64]| -> String {
        let n = w.iter().take(4).flat_map(|x| x.to_le_bytes());
        String::from_utf8(n.filter(|&c| c != 0).collect()).unwrap_or_default()
    };
    let mut st = STATE.lock();
    let s = st.as_mut().expect("state");
    let who = s
        .components
        .get(ci)
        .map(|c| c.name.clone())
        .unwrap_or_default();
    let mut status = 1u64;
    let mut typed = 0;
    let mut untyped_out = 1;
    let untyped_in = u.untyped as usize;
    match op {
        parent::OP_REGISTER if untyped_in >= 5 && u.typed == 1 => {
            let name = name_of(&u.words[1..5]);
            let got = Crd(u.words[untyped_in]);
            let allowed = s
                .components
                .get(ci)
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
                say(at, format_args!("{who} registered service \"{name}\""));
                status = 0;
            } else {
                say(
                    at,
                    format_args!("{who} may not register service \"{name}\""),
                );
            }
        }
        parent::OP_LOOKUP if untyped_in >= 6 => {
            let name = name_of(&u.words[1..5]);
            let offset = u.words[5];
            let allowed = s.components.get(ci).is_some_and(|c| c.uses.contains(&name));
            match s.services.iter().find(|x| x.name == name) {
                Some(svc) if allowed => {
                    u.words[1] = Crd::obj(svc.portal, obj_rights::USE).0;
                    u.words[2] = offset;
                    typed = 1;
                    status = 0;
                }
                _ => say(
                    at,
                    format_args!("{who} asked for service \"{name}\": refused"),
                ),
            }
        }
        parent::OP_EXIT if untyped_in >= 2 => {
            let code = u.words[1] as i64 as i32;
            say(at, format_args!("component {who} exited with code {code}"));
            doom(s, ci);
            status = 0;
        }
        parent::OP_CRASH if untyped_in >= 2 => {
            let len = (u.words[1] as usize).min((untyped_in - 2) * 8);
            let why = text_of(&u.words[2..untyped_in], len);
            say(at, format_args!("component {who} crashed: {why}"));
            doom(s, ci);
            status = 0;
        }
        parent::OP_MAP if untyped_in >= 4 => {
            let (va, order, rights) = (u.words[1], u.words[2], u.words[3] as u8);
            let State {
                components, pool, ..
            } = s;
            if let (Some(c), Ok(order)) = (components.get_mut(ci), u8::try_from(order)) {
                status = match c.memory.give(pool, va, order, rights, |_| {}) {
                    Ok(()) => 0,
                    Err(memory::Error::Quota) => 2,
                    Err(memory::Error::PoolEmpty) => 3,
                    Err(_) => 1,
                };
            }
        }
        parent::OP_UNMAP if untyped_in >= 3 => {
            let (va, pages) = (u.words[1], u.words[2]);
            let State {
                components, pool, ..
            } = s;
            if let Some(c) = components.get_mut(ci) {
                status = match c.memory.take_back(pool, va, pages) {
                    Ok(()) => 0,
                    Err(_) => 1,
                };
            }
        }
        parent::OP_ROM if untyped_in >= 6 => {
            let name = name_of(&u.words[1..5]);
            let va = u.words[5];
            let hip = s.hip;
            if let (Some((pa, bytes)), Some(c)) = (module(hip, &name), s.components.get_mut(ci)) {
                if c.memory.lend(pa, bytes.len() as u64, va).is_ok() {
                    u.words[1] = bytes.len() as u64;
                    u.words[2] = pa & 0xfff;
                    untyped_out = 3;
                    status = 0;
                }
            }
        }
        parent::OP_TERMINAL_READ if untyped_in >= 2 && s.terminal.is_some_and(|(t, _)| t == ci) => {
            let max = (u.words[1] as usize).min(8 * 400);
            let n = max.min(s.input.len());
            let bytes: Vec<u8> = s.input.drain(..n).collect();
            for (w, chunk) in u.words[2..].iter_mut().zip(bytes.chunks(8)) {
                let mut b = [0u8; 8];
                b[..chunk.len()].copy_from_slice(chunk);
                *w = u64::from_le_bytes(b);
            }
            u.words[1] = n as u64;
            untyped_out = 2 + n.div_ceil(8) as u32;
            status = 0;
        }
        parent::OP_MEMINFO => {
            if let Some(c) = s.components.get(ci) {
                u.words[1] = c.memory.quota_pages();
                u.words[2] = c.memory.used_pages();
                untyped_out = 3;
                status = 0;
            }
        }
        _ => {}
    }
    u.words[0] = status;
    u.untyped = if typed == 1 { 1 } else { untyped_out };
    u.typed = typed;
    drop(st);
    reply()
}
