//! The posix-server: runs one static x86_64 Linux program (for example a Rust
//! std program built for `x86_64-unknown-linux-musl`) as a Tern component.
//!
//! The roottask starts the server in the component's protection domain (see
//! `kind = "linux"` in the boot configuration). The server reads its component's
//! configuration, loads the program from its boot module, builds the program's
//! file system and initial stack, and starts the main thread. From then on it only
//! answers: the kernel reflects every system call, page fault and exception of the
//! program's threads to the thread's handler here (see `thread`), which serves it
//! with the `posix` crate's logic and the memory the roottask gives.
//!
//! Module map: `layout` (addresses), `heap` (the server's allocator), `roottask`
//! (requests to the parent), `process` (the process state and its lock),
//! `thread` (threads, handlers, faults), `syscall` (the system calls), `time`,
//! `cpu` (random numbers), `usermem` (the only access to program memory).
#![no_std]
#![no_main]

extern crate alloc;

mod cpu;
mod heap;
mod layout;
mod process;
mod roottask;
mod syscall;
mod thread;
mod time;
mod usermem;

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use hyper_abi::SmOp;
use native::StartInfo;
use posix::memmap::{MemoryMap, Prot, RegionKind};
use posix::vfs::{Backends, LogSink, RomSource, Vfs};
use process::Process;
use roottask::Caller;

#[no_mangle]
extern "C" fn _start() -> ! {
    heap::init();
    heap::sleep_on(layout::HEAP_LOCK_SEL);
    let info = StartInfo::get();
    let c = Caller {
        utcb: native::UTCB,
        cpu: info.cpu,
    };
    if let Err(why) = start(c) {
        c.print(format_args!("posix-server: {}: {why}", info.name()));
        roottask::crash(c, &format!("cannot start the program: {why}"));
    }
    // the program runs; this thread has nothing more to do
    let idle = layout::IDLE_SEL;
    let _ = hyper_abi::syscall::create_sm(idle, 0, None);
    loop {
        let _ = hyper_abi::syscall::sm_ctrl(idle, SmOp::Down, 0);
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    let c = Caller {
        utcb: process::console_utcb(),
        cpu: StartInfo::get().cpu,
    };
    roottask::crash(c, &format!("posix-server panicked: {info}"));
    loop {
        core::hint::spin_loop();
    }
}

/// Boot modules lent to us, mapped one after the other from `ROM_BASE`.
struct Roms {
    next: u64,
    mapped: BTreeMap<String, &'static [u8]>,
}

impl Roms {
    fn map(&mut self, c: Caller, name: &str) -> Result<&'static [u8], String> {
        if let Some(b) = self.mapped.get(name) {
            return Ok(b);
        }
        let (size, offset) = roottask::rom(c, name, self.next)
            .ok_or_else(|| format!("there is no boot module named \"{name}\""))?;
        let at = self.next + offset;
        // SAFETY: the roottask just mapped the module read-only at `self.next`
        // for the component's lifetime; nothing in this PD writes or unmaps it.
        let bytes: &'static [u8] =
            unsafe { core::slice::from_raw_parts(at as *const u8, size as usize) };
        self.next = (at + size).next_multiple_of(4096) + 4096;
        if self.next >= layout::ROM_END {
            return Err("boot modules exceed the address range for them".to_string());
        }
        self.mapped.insert(name.to_string(), bytes);
        Ok(bytes)
    }
}

struct ModuleSource(BTreeMap<String, &'static [u8]>);

impl RomSource for ModuleSource {
    fn rom(&self, name: &str) -> Option<&[u8]> {
        self.0.get(name).copied()
    }
    fn names(&self) -> Vec<String> {
        self.0.keys().cloned().collect()
    }
}

/// `log` nodes print on the console through the lock holder's UTCB.
struct ConsoleLog;

impl LogSink for ConsoleLog {
    fn log(&mut self, text: &[u8]) {
        let s = String::from_utf8_lossy(text);
        native::print_at(process::console_utcb(), format_args!("{s}"));
    }
}

/// The console, for the component the configuration names as `terminal`.
struct ConsoleTerminal;

impl posix::vfs::Terminal for ConsoleTerminal {
    fn read(&mut self, buf: &mut [u8]) -> usize {
        roottask::terminal_read(process::lock_holder(), buf)
    }
    fn write(&mut self, data: &[u8]) {
        let s = String::from_utf8_lossy(data);
        native::print_at(process::console_utcb(), format_args!("{s}"));
    }
}

/// Program headers as the program sees them (AT_PHDR, AT_PHENT, AT_PHNUM).
fn program_headers(image: &[u8], base: u64) -> Option<(u64, u64, u64)> {
    let u16_at = |o: usize| Some(u16::from_le_bytes(image.get(o..o + 2)?.try_into().ok()?) as u64);
    let u64_at = |o: usize| Some(u64::from_le_bytes(image.get(o..o + 8)?.try_into().ok()?));
    let (phoff, phent, phnum) = (u64_at(32)?, u16_at(54)?, u16_at(56)?);
    // the segment whose file range holds the headers tells where they are loaded
    (0..phnum).find_map(|i| {
        let h = (phoff + i * phent) as usize;
        let p_type = u32::from_le_bytes(image.get(h..h + 4)?.try_into().ok()?);
        let (off, vaddr, filesz) = (u64_at(h + 8)?, u64_at(h + 16)?, u64_at(h + 32)?);
        (p_type == 1 && off <= phoff && phoff + phnum * phent <= off + filesz).then_some((
            base + vaddr + (phoff - off),
            phent,
            phnum,
        ))
    })
}

fn start(c: Caller) -> Result<(), String> {
    let info = StartInfo::get();
    let me = info.name();
    let mut roms = Roms {
        next: layout::ROM_BASE,
        mapped: BTreeMap::new(),
    };
    let config_text = roms.map(c, "config")?;
    let config =
        boot_config::parse_bytes(config_text).map_err(|e| format!("configuration: {e}"))?;
    let comp = config
        .components
        .iter()
        .find(|x| x.name == me)
        .ok_or_else(|| format!("no component named {me} in the configuration"))?;
    let image = roms.map(c, &comp.binary)?;
    let elf = elf_loader::Elf::parse(image).map_err(|e| format!("{}: {e}", comp.binary))?;
    if elf.interpreter().is_some() {
        return Err(format!(
            "{} is dynamically linked; build it static (target x86_64-unknown-linux-musl)",
            comp.binary
        ));
    }
    let base = if elf.is_position_independent() {
        layout::PIE_BASE
    } else {
        0
    };

    // the file system: the roms it names are mapped now
    let mut vfs_text = String::new();
    // the standard devices, unless the configuration places something there
    for (path, kind) in [
        ("/dev/null", "null"),
        ("/dev/zero", "zero"),
        ("/dev/log", "log"),
    ] {
        let taken = comp
            .vfs
            .iter()
            .any(|l| l.split('=').next().map(str::trim) == Some(path));
        if !taken {
            vfs_text.push_str(&format!("{path} = {kind}\n"));
        }
    }
    for (setting, path) in ["stdin", "stdout", "stderr"].iter().zip(&comp.stdio) {
        vfs_text.push_str(&format!("{setting} = {path}\n"));
    }
    for line in &comp.vfs {
        vfs_text.push_str(line);
        vfs_text.push('\n');
    }
    let lines = posix::vfs::config::parse(&vfs_text).map_err(|e| format!("vfs: {e}"))?;
    for line in &lines {
        if let posix::vfs::config::Line::Node {
            kind: posix::vfs::config::Kind::Rom(name),
            ..
        } = line
        {
            roms.map(c, name)?;
        }
    }
    let backends = Backends {
        roms: Box::new(ModuleSource(roms.mapped.clone())),
        log: Box::new(ConsoleLog),
        terminal: (config.terminal.as_deref() == Some(me))
            .then(|| Box::new(ConsoleTerminal) as Box<dyn posix::vfs::Terminal>),
    };
    let vfs = Vfs::new(&vfs_text, backends).map_err(|e| format!("vfs: {e}"))?;

    // the address space
    let bad = |what: &str, e: posix::Errno| format!("{what}: {e}");
    let mut mem =
        MemoryMap::new(layout::MMAP_LO, layout::MMAP_HI).map_err(|e| bad("memory map", e))?;
    mem.reserve(native::LAZY_BASE, native::LAZY_SIZE)
        .and_then(|_| mem.reserve(layout::ROM_BASE, layout::ROM_END - layout::ROM_BASE))
        .and_then(|_| {
            let (lo, hi) = hyper_abi::posix::PROGRAM_MAPPED;
            mem.reserve(lo, hi - lo)
        })
        .and_then(|_| {
            mem.reserve(
                layout::SERVER_BASE,
                posix::memmap::USER_END - layout::SERVER_BASE,
            )
        })
        .map_err(|e| bad("reserving the server's memory", e))?;
    // program segments, merged where they share pages
    let mut regions: Vec<(u64, u64, Prot)> = Vec::new();
    for s in elf.segments() {
        let prot = Prot::READ
            | if s.flags.write {
                Prot::WRITE
            } else {
                Prot::NONE
            }
            | if s.flags.execute {
                Prot::EXEC
            } else {
                Prot::NONE
            };
        let start = (base + s.vaddr) & !0xfff;
        let end = (base + s.vaddr + s.mem_size).next_multiple_of(4096);
        match regions.last_mut() {
            Some(last) if start < last.1 => {
                last.1 = last.1.max(end);
                last.2 = last.2 | prot;
            }
            _ => regions.push((start, end, prot)),
        }
    }
    let mut p = Process::new(me.to_string(), mem, vfs, comp.cpus.clone(), comp.priority);
    let mut program_end = 0;
    for &(start, end, prot) in &regions {
        p.mem
            .map_region(start, end - start, prot, RegionKind::Program)
            .map_err(|e| bad("program segment", e))?;
        for b in p
            .mem
            .ensure(start, end - start, false)
            .map_err(|e| bad("program segment", e))?
        {
            p.back(c, b).map_err(|e| bad("memory for the program", e))?;
        }
        program_end = program_end.max(end);
    }
    for s in elf.segments() {
        usermem::write(base + s.vaddr, s.data);
    }
    p.mem.set_brk_base(program_end).map_err(|e| bad("brk", e))?;

    // the main thread's stack, with a guard below it
    let stack_lo = layout::STACK_TOP - layout::STACK_SIZE;
    p.mem
        .map_region(
            stack_lo - layout::GUARD_SIZE,
            layout::GUARD_SIZE,
            Prot::NONE,
            RegionKind::Guard,
        )
        .and_then(|_| {
            p.mem.map_region(
                stack_lo,
                layout::STACK_SIZE,
                Prot::READ_WRITE,
                RegionKind::Stack,
            )
        })
        .map(|_| ())
        .map_err(|e| bad("stack", e))?;
    let (phdr, phent, phnum) =
        program_headers(image, base).ok_or("the program headers are not in a loaded segment")?;
    let mut args: Vec<&str> = vec![comp.binary.as_str()];
    args.extend(comp.args.iter().map(|s| s.as_str()));
    let env: Vec<&str> = comp.env.iter().map(|s| s.as_str()).collect();
    let mut random = [0u8; 16];
    random[..8].copy_from_slice(&cpu::random_u64().to_le_bytes());
    random[8..].copy_from_slice(&cpu::random_u64().to_le_bytes());
    let hwcap = core::arch::x86_64::__cpuid(1).edx as u64;
    let initial = posix::stack::InitialProcess {
        args: &args,
        env: &env,
        phdr,
        phent,
        phnum,
        entry: base + elf.entry(),
        random,
        hwcap,
        execfn: &comp.binary,
        uid: 0,
        gid: 0,
    };
    let mut top = vec![0u8; 64 * 1024];
    let top_va = layout::STACK_TOP - top.len() as u64;
    let sp = posix::stack::build(&mut top, top_va, &initial).map_err(|e| format!("{e}"))?;
    let used = (sp - top_va) as usize;
    p.copy_out(c, sp, &top[used..])
        .map_err(|e| bad("initial stack", e))?;

    let regs = thread::initial_regs(base + elf.entry(), sp);
    let cpu = comp.cpu;
    // install first: the thread's first system call needs the process
    process::install(p, layout::PROCESS_LOCK_SEL);
    process::with(c, |p| {
        let place = process::Placement {
            cpu,
            priority: p.priority,
        };
        thread::spawn(p, c, &regs, place)
    })
    .map(|_| ())
    .map_err(|e| bad("main thread", e))
}
