//! Native Tern IPC for Rust std programs that run as `kind = "linux"`
//! components: look up and call portals of other components, and offer a
//! portal as a service. On Linux the same program still runs: [`on_tern`] is
//! false and every call returns [`Error::NotOnTern`].
//!
//! Also what a VMM needs beyond IPC: memory it maps itself
//! ([`map_memory`], only inside `hyper_abi::posix::PROGRAM_MAPPED`), selectors
//! for the kernel objects it creates ([`alloc_sel`]), and threads started on a
//! chosen CPU ([`spawn_on_cpu`], [`spawn_placed`]; a vCPU runs only from a
//! thread on its CPU).
//!
//! Beyond plain calls: [`Semaphore`]s (block a thread until another
//! component signals it), services with badged portals ([`Service`]:
//! the kernel tells the handler which portal a call came through, so a
//! portal handed to one client names that client) whose replies delegate
//! capabilities ([`Grants`]), received by [`Portal::call_receiving`] into
//! [`ReceiveSlots`], and [`revoke_grants`] to take them back.
//!
//! Owns: the safe wrappers over the hypercalls a std program may make itself
//! (tagged with `NATIVE_TAG`, so the kernel does not reflect them to the
//! posix-server). Must not touch: selectors outside
//! `hyper_abi::posix::PROGRAM_SELS` and the receive window, or memory outside
//! `PROGRAM_MAPPED`, which are the posix-server's.

use hyper_abi::syscall::{self, EcParams};
use hyper_abi::{posix, sel, Crd, CrdKind, EcKind, SmOp, Utcb};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// Rights of object capabilities, for [`Grants::grant`].
pub use hyper_abi::obj_rights;
/// What the kernel answered ([`Error::Kernel`]).
pub use hyper_abi::Status;

/// Why a call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The program is not running on Tern (e.g. on Linux).
    NotOnTern,
    /// The roottask refused: the configuration does not let this component use
    /// or provide the service (check `uses`/`provides`).
    Refused,
    /// A message longer than a UTCB holds.
    TooLong,
    /// The component's memory quota is used up.
    Quota,
    /// The roottask has no free block of the size asked for.
    PoolEmpty,
    /// An address outside `PROGRAM_MAPPED`, or not aligned to its block, or
    /// memory that is mapped already.
    BadAddress,
    /// A CPU the component may not use (its `cpus` in the configuration).
    NoSuchCpu(u32),
    /// The kernel said no.
    Kernel(Status),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::NotOnTern => write!(f, "not running on Tern"),
            Error::Refused => write!(
                f,
                "the roottask refused (check `uses`/`provides` in the configuration)"
            ),
            Error::TooLong => write!(f, "message longer than a UTCB"),
            Error::Quota => write!(
                f,
                "the component's memory quota is used up (raise `memory` in the configuration)"
            ),
            Error::PoolEmpty => write!(
                f,
                "the roottask has no free memory block that large (use smaller blocks, or give the machine more memory)"
            ),
            Error::BadAddress => write!(
                f,
                "address outside the program's own range, misaligned, or already mapped"
            ),
            Error::NoSuchCpu(cpu) => write!(
                f,
                "CPU {cpu} is not one of the component's `cpus` in the configuration"
            ),
            Error::Kernel(s) => write!(f, "hypercall failed: {}", s.name()),
        }
    }
}

impl std::error::Error for Error {}

fn utcb_address() -> Option<u64> {
    let r: i64;
    // SAFETY: a plain system call that only returns a value; on Linux it fails
    // with ENOSYS.
    unsafe {
        std::arch::asm!("syscall", inlateout("rax") posix::SYSCALL_UTCB as i64 => r,
            lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    (r > 0).then_some(r as u64)
}

/// Whether the program runs on Tern.
pub fn on_tern() -> bool {
    utcb_address().is_some()
}

thread_local! {
    /// This thread's UTCB address (asked once per thread).
    static UTCB: Option<u64> = utcb_address();
}

/// The calling thread's UTCB.
fn utcb() -> Result<&'static mut Utcb, Error> {
    UTCB.with(|u| *u)
        .map(native::utcb_at)
        .ok_or(Error::NotOnTern)
}

/// The CPU the calling thread runs on (threads never move).
pub fn current_cpu() -> u32 {
    cpu()
}

fn cpu() -> u32 {
    let mut cpu = 0u32;
    // SAFETY: getcpu writes one u32 to the address we give.
    unsafe {
        std::arch::asm!("syscall", inlateout("rax") 309i64 => _, in("rdi") &mut cpu as *mut u32,
            in("rsi") 0u64, in("rdx") 0u64, lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    cpu
}

fn parent_portal() -> u64 {
    native::cpu_portals(cpu()) + native::CPU_PARENT
}

static NEXT_SEL: AtomicU64 = AtomicU64::new(posix::PROGRAM_SELS.0);
static NEXT_RECV: AtomicU64 = AtomicU64::new(0);

/// A free capability selector of the program's range, for kernel objects the
/// program creates itself (VMs, vCPUs). Never reused.
pub fn alloc_sel() -> Result<u64, Error> {
    new_sel()
}

fn new_sel() -> Result<u64, Error> {
    let s = NEXT_SEL.fetch_add(1, Ordering::Relaxed);
    if s >= posix::PROGRAM_SELS.1 {
        return Err(Error::Kernel(Status::OutOfMemory));
    }
    Ok(s)
}

fn name_words(u: &mut Utcb, name: &str) {
    u.words[1..5].copy_from_slice(&native::parent::name_words(name));
}

/// A portal of another component.
#[derive(Clone, Copy, Debug)]
pub struct Portal {
    sel: u64,
}

impl Portal {
    /// Asks the roottask for service `name` (which the configuration must list
    /// under `uses`).
    pub fn lookup(name: &str) -> Result<Portal, Error> {
        let u = utcb()?;
        // the capability lands at RECV_BASE + offset: each lookup its own slot
        let offset = ReceiveSlots::reserve(1)?.offset();
        u.words[0] = native::parent::OP_LOOKUP;
        name_words(u, name);
        u.recv_obj = Crd::new(CrdKind::Object, posix::RECV_BASE, posix::RECV_ORDER, 0);
        u.words[5] = offset;
        u.untyped = 6;
        u.typed = 0;
        syscall::call(parent_portal()).map_err(Error::Kernel)?;
        if u.words[0] != 0 || u.typed == 0 {
            return Err(Error::Refused);
        }
        let got = Crd(u.words[u.untyped as usize]);
        if got.kind() != CrdKind::Object {
            return Err(Error::Refused);
        }
        Ok(Portal { sel: got.base() })
    }

    /// Sends `request` (message words) and returns the reply's words.
    pub fn call(&self, request: &[u64]) -> Result<Vec<u64>, Error> {
        let u = request_in_utcb(request)?;
        syscall::call(self.sel).map_err(Error::Kernel)?;
        let n = (u.untyped as usize).min(u.words.len());
        Ok(u.words[..n].to_vec())
    }

    /// Like [`call`](Self::call), for a reply that delegates capabilities
    /// into `slots` (whose offset the request must tell the handler): the
    /// reply's words, and the capabilities it carried in order (`None`
    /// where the delegation failed: an offset outside `slots`, or taken).
    pub fn call_receiving(
        &self,
        request: &[u64],
        slots: &ReceiveSlots,
    ) -> Result<(Vec<u64>, Vec<Option<Capability>>), Error> {
        let u = request_in_utcb(request)?;
        u.recv_obj = Crd::new(CrdKind::Object, posix::RECV_BASE, posix::RECV_ORDER, 0);
        syscall::call(self.sel).map_err(Error::Kernel)?;
        let n = (u.untyped as usize).min(u.words.len());
        let typed = (u.typed as usize).min((u.words.len() - n) / 2);
        let in_slots =
            slots.offset + posix::RECV_BASE..slots.offset + posix::RECV_BASE + slots.count;
        let caps = (0..typed)
            .map(|i| Crd(u.words[n + 2 * i]))
            .map(|crd| {
                (crd.kind() == CrdKind::Object && in_slots.contains(&crd.base()))
                    .then_some(Capability { sel: crd.base() })
            })
            .collect();
        Ok((u.words[..n].to_vec(), caps))
    }
}

/// The calling thread's UTCB holding `request` as an untyped message.
fn request_in_utcb(request: &[u64]) -> Result<&'static mut Utcb, Error> {
    let u = utcb()?;
    if request.len() > u.words.len() {
        return Err(Error::TooLong);
    }
    u.words[..request.len()].copy_from_slice(request);
    u.untyped = request.len() as u32;
    u.typed = 0;
    Ok(u)
}

impl From<Capability> for Portal {
    /// A received capability used as a portal (calls fail with
    /// `bad-capability` if it is something else).
    fn from(cap: Capability) -> Portal {
        Portal { sel: cap.sel }
    }
}

/// A capability another component delegated to this program
/// ([`Portal::call_receiving`]); turn it into what it is ([`Portal`],
/// [`Semaphore`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capability {
    sel: u64,
}

impl Capability {
    /// Its selector in this program's capability space.
    pub fn sel(&self) -> u64 {
        self.sel
    }
}

/// Consecutive slots of this program's receive window, where capabilities
/// delegated to it land. Reserved slots are never reused: the window holds
/// 2^`RECV_ORDER` in all (lookups take one each).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReceiveSlots {
    offset: u64,
    count: u64,
}

impl ReceiveSlots {
    pub fn reserve(count: u64) -> Result<ReceiveSlots, Error> {
        let window = 1u64 << posix::RECV_ORDER;
        let offset = NEXT_RECV
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |next| {
                next.checked_add(count).filter(|&end| end <= window)
            })
            .map_err(|_| Error::Kernel(Status::OutOfMemory))?;
        Ok(ReceiveSlots { offset, count })
    }

    /// The first slot's offset in the window (what a request tells the
    /// handler that delegates into it).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    pub fn count(&self) -> u64 {
        self.count
    }
}

/// A counting semaphore (a kernel object): one this program made, or one
/// it received. `down` blocks the calling thread in the kernel until
/// someone calls `up`, in this or another component, on any CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Semaphore {
    sel: u64,
}

impl Semaphore {
    /// A new semaphore with count 0.
    pub fn create() -> Result<Semaphore, Error> {
        if !on_tern() {
            return Err(Error::NotOnTern);
        }
        let sel = new_sel()?;
        syscall::create_sm(sel, 0, None).map_err(Error::Kernel)?;
        Ok(Semaphore { sel })
    }

    /// Its selector, e.g. to hand it out with [`Grants`].
    pub fn sel(&self) -> u64 {
        self.sel
    }

    /// Counts up, or wakes the first waiter. Callable from a handler.
    pub fn up(&self) -> Result<(), Error> {
        syscall::sm_ctrl(self.sel, SmOp::Up, 0)
            .map(|_| ())
            .map_err(Error::Kernel)
    }

    /// Waits until the count is positive and counts down.
    pub fn down(&self) -> Result<(), Error> {
        syscall::sm_ctrl(self.sel, SmOp::Down, 0)
            .map(|_| ())
            .map_err(Error::Kernel)
    }
}

impl From<Capability> for Semaphore {
    /// A received capability used as a semaphore (`up` and `down` fail with
    /// `bad-capability` if it is something else).
    fn from(cap: Capability) -> Semaphore {
        Semaphore { sel: cap.sel }
    }
}

/// Most words a reply holds: a whole UTCB's.
pub const REPLY_WORDS: usize = hyper_abi::UTCB_WORDS;

/// A request handler: gets the request's words, writes the reply into
/// `reply` and returns how many words it wrote.
///
/// It runs on a thread of its own that has no thread-local storage: it must not
/// print, allocate, lock std mutexes or use other std facilities that need the
/// calling thread's state; plain computation and atomics are fine.
pub type Handler = fn(request: &[u64], reply: &mut [u64; REPLY_WORDS]) -> usize;

/// A handler of a service with badged portals ([`Service`]): like a
/// [`Handler`], and also told the badge of the portal it was called through
/// (0: the service's registered portal; otherwise what [`Service::portal`]
/// was given), and able to delegate capabilities to the caller with the
/// reply ([`Grants`]). The same rules apply: no printing, allocating or
/// std locks.
pub type BadgedHandler =
    fn(badge: u64, request: &[u64], reply: &mut [u64; REPLY_WORDS], grants: &mut Grants) -> usize;

/// Most capabilities one reply delegates.
pub const MAX_GRANTS: usize = 16;

/// Capabilities a [`BadgedHandler`] delegates to its caller with the reply:
/// each lands in the caller's receive window at the offset given (the
/// caller reserved it with [`ReceiveSlots`] and told the handler).
pub struct Grants {
    items: [(Crd, u64); MAX_GRANTS],
    len: usize,
}

impl Grants {
    fn new() -> Self {
        Grants {
            items: [(Crd::NULL, 0); MAX_GRANTS],
            len: 0,
        }
    }

    /// Delegates capability `sel` (of this program) with `rights`
    /// ([`obj_rights`]) to window offset `offset` of the caller;
    /// false if the reply carries [`MAX_GRANTS`] already. The caller finds
    /// a null capability there if the offset is outside its window or taken.
    pub fn grant(&mut self, sel: u64, rights: u8, offset: u64) -> bool {
        if self.len == MAX_GRANTS {
            return false;
        }
        self.items[self.len] = (Crd::obj(sel, rights), offset);
        self.len += 1;
        true
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Services offered so far (each has a slot in the tables below).
static SERVICES: Mutex<usize> = Mutex::new(0);
/// Most services one program offers; a portal's badge carries the slot in
/// its low bits ([`BADGE_SHIFT`]).
const MAX_SERVICES: usize = 16;
const BADGE_SHIFT: u32 = 4;
static HANDLERS: [AtomicU64; MAX_SERVICES] = [const { AtomicU64::new(0) }; MAX_SERVICES];
/// Whether the slot's handler is a [`BadgedHandler`] (else a [`Handler`]).
static BADGED: [AtomicBool; MAX_SERVICES] = [const { AtomicBool::new(false) }; MAX_SERVICES];
static UTCBS: [AtomicU64; MAX_SERVICES] = [const { AtomicU64::new(0) }; MAX_SERVICES];

extern "C" fn serve_entry(kernel_badge: u64) -> ! {
    let i = kernel_badge as usize % MAX_SERVICES;
    let badge = kernel_badge >> BADGE_SHIFT;
    let u = native::utcb_at(UTCBS[i].load(Ordering::Acquire));
    let handler_addr = HANDLERS[i].load(Ordering::Acquire);
    let n = (u.untyped as usize).min(u.words.len());
    let mut reply = [0u64; REPLY_WORDS];
    let mut grants = Grants::new();
    let len = if handler_addr == 0 {
        0
    } else if BADGED[i].load(Ordering::Acquire) {
        // SAFETY: the address was stored from a `BadgedHandler` by `create_service`.
        let handler = unsafe { std::mem::transmute::<u64, BadgedHandler>(handler_addr) };
        handler(badge, &u.words[..n], &mut reply, &mut grants)
    } else {
        // SAFETY: the address was stored from a `Handler` by `create_service`.
        let handler = unsafe { std::mem::transmute::<u64, Handler>(handler_addr) };
        handler(&u.words[..n], &mut reply)
    };
    // the typed items follow the untyped words in the same array
    let len = len.min(REPLY_WORDS - 2 * grants.len);
    u.words[..len].copy_from_slice(&reply[..len]);
    for (k, (crd, offset)) in grants.items[..grants.len].iter().enumerate() {
        u.words[len + 2 * k] = crd.0;
        u.words[len + 2 * k + 1] = *offset;
    }
    u.untyped = len as u32;
    u.typed = grants.len as u32;
    syscall::reply()
}

/// Offers `handler` as service `name` (the configuration must list it under
/// `provides`). Calls are served on the calling thread's CPU; clients must run
/// on that CPU too.
pub fn serve(name: &str, handler: Handler) -> Result<(), Error> {
    create_service(handler as usize as u64, false)?.register(name)
}

/// A service with badged portals: `handler` serves calls on the CPU of the
/// thread that made it. Its first portal (badge 0) is what
/// [`register`](Self::register) offers by name; [`portal`](Self::portal)
/// makes more portals with other badges, which the program hands out itself
/// ([`Grants`]). The kernel delivers the badge of the portal a call came
/// through, so a badge names its holder in a way no caller can forge.
#[derive(Clone, Copy, Debug)]
pub struct Service {
    slot: usize,
    /// The handler's local EC.
    ec: u64,
    /// The portal with badge 0.
    pt: u64,
}

/// Largest badge of a portal made by [`Service::portal`].
pub const MAX_BADGE: u64 = u64::MAX >> BADGE_SHIFT;

impl Service {
    /// A service of `handler` on the calling thread's CPU, not offered yet
    /// (make its portals first, then [`register`](Self::register) it).
    pub fn new(handler: BadgedHandler) -> Result<Service, Error> {
        create_service(handler as usize as u64, true)
    }

    /// Offers the badge-0 portal as service `name` (the configuration must
    /// list it under `provides`). Clients must run on the service's CPU.
    pub fn register(&self, name: &str) -> Result<(), Error> {
        let u = utcb()?;
        u.words[0] = native::parent::OP_REGISTER;
        name_words(u, name);
        u.words[5] = Crd::obj(self.pt, obj_rights::USE).0;
        u.words[6] = 0;
        u.untyped = 5;
        u.typed = 1;
        syscall::call(parent_portal()).map_err(Error::Kernel)?;
        if u.words[0] != 0 {
            return Err(Error::Refused);
        }
        Ok(())
    }

    /// A new portal to the service's handler (on the service's CPU) whose
    /// calls carry `badge` (1..=[`MAX_BADGE`]; 0 is the registered
    /// portal's). Returns its selector, to be handed out with [`Grants`].
    pub fn portal(&self, badge: u64) -> Result<u64, Error> {
        if badge == 0 || badge > MAX_BADGE {
            return Err(Error::Kernel(Status::BadParameter));
        }
        let pt = new_sel()?;
        syscall::create_pt(
            pt,
            self.ec,
            serve_entry as *const () as usize as u64,
            badge << BADGE_SHIFT | self.slot as u64,
        )
        .map_err(Error::Kernel)?;
        Ok(pt)
    }
}

fn create_service(handler_addr: u64, badged: bool) -> Result<Service, Error> {
    utcb()?;
    let mut services = SERVICES.lock().unwrap_or_else(|e| e.into_inner());
    let index = *services;
    if index >= MAX_SERVICES {
        return Err(Error::TooLong);
    }
    // a page for the handler's UTCB (the kernel maps it; we only reserve the
    // address) and a stack
    let page = reserve_page()?;
    let stack = Box::leak(vec![0u8; 64 * 1024].into_boxed_slice());
    // touch every page now: the handler has no posix-server behind it to page
    // in memory it touches first
    for page in stack.chunks_mut(4096) {
        // SAFETY: a write through a valid `&mut u8`; volatile so that it is not
        // optimised away (the allocation may be fresh, untouched zero pages).
        unsafe { std::ptr::write_volatile(&mut page[0], 0) };
    }
    let sp = (stack.as_ptr() as u64 + stack.len() as u64 - 64) & !0xf;
    UTCBS[index].store(page, Ordering::Release);
    BADGED[index].store(badged, Ordering::Release);
    HANDLERS[index].store(handler_addr, Ordering::Release);
    let ec = new_sel()?;
    let pt = new_sel()?;
    let p = EcParams {
        pd: sel::PD_SELF,
        cpu: cpu() as u16,
        kind: EcKind::Local,
        flags: 0,
        evt_base: native::cpu_portals(cpu()) as u32,
        utcb: page,
        sp,
        ip: 0,
    };
    syscall::create_ec(ec, &p).map_err(Error::Kernel)?;
    syscall::create_pt(
        pt,
        ec,
        serve_entry as *const () as usize as u64,
        index as u64,
    )
    .map_err(Error::Kernel)?;
    *services += 1;
    Ok(Service {
        slot: index,
        ec,
        pt,
    })
}

/// Takes back every copy of capability `sel` this program delegated (with
/// [`Grants`]); the program keeps its own. Callable from a handler.
pub fn revoke_grants(sel: u64) -> Result<(), Error> {
    syscall::revoke(Crd::obj(sel, obj_rights::ALL), false).map_err(Error::Kernel)
}

/// An address for a kernel-mapped page: a PROT_NONE mapping the posix-server
/// never backs, so the kernel may put the UTCB there.
fn reserve_page() -> Result<u64, Error> {
    let r: i64;
    // SAFETY: mmap of a fresh anonymous PROT_NONE page; it touches no memory we use.
    unsafe {
        std::arch::asm!("syscall", inlateout("rax") 9i64 => r, in("rdi") 0u64, in("rsi") 4096u64,
            in("rdx") 0u64, in("r10") 0x22u64, in("r8") -1i64, in("r9") 0u64,
            lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    if r < 0 {
        return Err(Error::Kernel(Status::OutOfMemory));
    }
    Ok(r as u64)
}

/// A raw Linux system call with two arguments: its return value (`-errno` on
/// failure). For the posix-server's own numbers (`hyper_abi::posix`).
fn syscall2(nr: u64, a0: u64, a1: u64) -> i64 {
    let r: i64;
    // SAFETY: the posix-server's system calls read only their register
    // arguments; on Linux the number is unknown and answers -ENOSYS.
    unsafe {
        std::arch::asm!("syscall", inlateout("rax") nr as i64 => r, in("rdi") a0, in("rsi") a1,
            lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    r
}

/// The CPUs the component may run threads on (its `cpus`), ascending.
pub fn cpus() -> Result<Vec<u32>, Error> {
    if !on_tern() {
        return Err(Error::NotOnTern);
    }
    let mut mask = 0u64;
    let r: i64;
    // SAFETY: sched_getaffinity(0, 8, &mask) writes at most 8 bytes to `mask`.
    unsafe {
        std::arch::asm!("syscall", inlateout("rax") 204i64 => r, in("rdi") 0u64, in("rsi") 8u64,
            in("rdx") &mut mask as *mut u64, lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    if r < 0 {
        return Err(Error::Kernel(Status::BadParameter));
    }
    Ok((0..64).filter(|i| mask & (1 << i) != 0).collect())
}

/// Where a new thread runs ([`spawn_placed`]). Tern threads never move.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Placement {
    /// Its CPU, one of the component's `cpus`; `None`: round robin.
    pub cpu: Option<u32>,
    /// One priority below the component's other threads, so any of them
    /// that becomes ready on the same CPU preempts it (equal priorities only
    /// take turns every 10 ms): for threads that compute for long stretches,
    /// such as the handler threads of vCPUs.
    pub background: bool,
}

/// Starts `f` on a new thread (made by `builder`) that runs on `cpu`, one of
/// the component's `cpus`, at the component's priority ([`spawn_placed`]).
pub fn spawn_on_cpu<F, T>(
    cpu: u32,
    builder: std::thread::Builder,
    f: F,
) -> std::io::Result<std::thread::JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let place = Placement {
        cpu: Some(cpu),
        background: false,
    };
    spawn_placed(place, builder, f)
}

/// Starts `f` on a new thread (made by `builder`) placed as `place` says; its
/// posix-server handler lives on the same CPU.
pub fn spawn_placed<F, T>(
    place: Placement,
    builder: std::thread::Builder,
    f: F,
) -> std::io::Result<std::thread::JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let cpu = place.cpu.map_or(u64::MAX, u64::from);
    let r = syscall2(posix::SYSCALL_NEXT_THREAD, cpu, place.background as u64);
    if r == -38 {
        return Err(std::io::Error::other(Error::NotOnTern));
    }
    if r < 0 {
        return Err(std::io::Error::other(Error::NoSuchCpu(cpu as u32)));
    }
    let spawned = builder.spawn(f);
    if spawned.is_err() {
        // the request was not used: the next thread is an ordinary one again
        syscall2(posix::SYSCALL_NEXT_THREAD, u64::MAX, u64::MAX);
    }
    spawned
}

/// Backs `[va, va + 4096 << order)` with zeroed memory from the component's
/// quota (the roottask's `OP_MAP`, readable, writable and executable). `va`
/// lies in `hyper_abi::posix::PROGRAM_MAPPED`, aligned to the block; orders go
/// up to 18 (1 GiB). The memory stays until [`unmap_memory`] or the end of the
/// component.
pub fn map_memory(va: u64, order: u8) -> Result<(), Error> {
    let (lo, hi) = posix::PROGRAM_MAPPED;
    let len = 4096u64.checked_shl(order as u32).ok_or(Error::BadAddress)?;
    if va < lo || va.checked_add(len).is_none_or(|end| end > hi) || !va.is_multiple_of(len) {
        return Err(Error::BadAddress);
    }
    let u = utcb()?;
    u.words[0] = native::parent::OP_MAP;
    u.words[1] = va;
    u.words[2] = order as u64;
    u.words[3] = hyper_abi::mem_rights::RWX as u64;
    u.untyped = 4;
    u.typed = 0;
    syscall::call(parent_portal()).map_err(Error::Kernel)?;
    match u.words[0] {
        0 => Ok(()),
        2 => Err(Error::Quota),
        3 => Err(Error::PoolEmpty),
        _ => Err(Error::BadAddress),
    }
}

/// Gives the memory behind `[va, va + pages * 4096)` (mapped with
/// [`map_memory`]) back to the roottask.
pub fn unmap_memory(va: u64, pages: u64) -> Result<(), Error> {
    let (lo, hi) = posix::PROGRAM_MAPPED;
    let end = pages
        .checked_mul(4096)
        .and_then(|l| va.checked_add(l))
        .ok_or(Error::BadAddress)?;
    if va < lo || end > hi {
        return Err(Error::BadAddress);
    }
    let u = utcb()?;
    u.words[0] = native::parent::OP_UNMAP;
    u.words[1] = va;
    u.words[2] = pages;
    u.untyped = 3;
    u.typed = 0;
    syscall::call(parent_portal()).map_err(Error::Kernel)?;
    match u.words[0] {
        0 => Ok(()),
        _ => Err(Error::BadAddress),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receive_slots_are_handed_out_once_until_the_window_is_full() {
        let a = ReceiveSlots::reserve(3).unwrap();
        let b = ReceiveSlots::reserve(1).unwrap();
        assert!(b.offset() >= a.offset() + a.count() || a.offset() > b.offset());
        let window = 1u64 << posix::RECV_ORDER;
        assert_eq!(
            ReceiveSlots::reserve(window),
            Err(Error::Kernel(Status::OutOfMemory))
        );
        // a refused reservation takes nothing
        assert!(ReceiveSlots::reserve(1).is_ok());
    }

    #[test]
    fn grants_hold_at_most_max_grants() {
        let mut g = Grants::new();
        for i in 0..MAX_GRANTS as u64 {
            assert!(g.grant(300 + i, obj_rights::USE, i));
        }
        assert!(!g.grant(400, obj_rights::USE, 0));
        assert_eq!(g.len(), MAX_GRANTS);
        assert_eq!(g.items[2], (Crd::obj(302, obj_rights::USE), 2));
    }

    #[test]
    fn off_tern_semaphores_say_so() {
        if !on_tern() {
            assert_eq!(Semaphore::create(), Err(Error::NotOnTern));
        }
    }
}
