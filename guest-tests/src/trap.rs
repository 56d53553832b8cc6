//! The guest's IDT: one stub per vector (all interrupt gates, ring 0), a common path
//! that saves every general register into a [`TrapFrame`], and a per-vector handler
//! table. A vector without a handler ends the test with FAIL.
//!
//! Owns: the IDT and IDTR. Must not touch: the GDT or page tables (boot.rs).
//! Injected external interrupts need no EOI: there is no (virtual) APIC in the protocol.

use crate::{boot, fail};
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

core::arch::global_asm!(
    r#"
    .section .text.guest_traps, "ax"
    .balign 16
    .global guest_trap_stubs
guest_trap_stubs:
    .set vec, 0
    .rept 256
    .balign 16
    .if (vec == 8) || ((vec >= 10) && (vec <= 14)) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
    .else
    pushq $0
    .endif
    pushq $vec
    jmp guest_trap_common
    .set vec, vec + 1
    .endr

guest_trap_common:
    pushq %rax
    pushq %rbx
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %rbp
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, %rdi
    cld
    call guest_trap
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rbp
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rbx
    popq %rax
    addq $16, %rsp
    iretq
"#,
    options(att_syntax)
);

/// Bytes between two consecutive stubs.
const STUB_SIZE: u64 = 16;

/// The state saved on an exception or interrupt; a handler may change it (RIP to
/// resume elsewhere, registers) and the trap returns to it with IRETQ.
#[repr(C)]
#[derive(Debug)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    /// The CPU's error code, 0 for vectors without one.
    pub error: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

pub type Handler = fn(&mut TrapFrame);

static HANDLERS: [AtomicUsize; 256] = [const { AtomicUsize::new(0) }; 256];

#[repr(C, align(16))]
struct Idt([[u64; 2]; 256]);

static mut IDT: Idt = Idt([[0; 2]; 256]);

extern "C" {
    static guest_trap_stubs: u8;
}

/// Fills the IDT and loads it (vCPU 0, once, before anything can trap).
pub fn init() {
    let stubs = core::ptr::addr_of!(guest_trap_stubs) as u64;
    for v in 0..256u64 {
        let at = stubs + v * STUB_SIZE;
        let low = (at & 0xffff)
            | (u64::from(boot::SEL_CODE64) << 16)
            | (0x8e << 40) // present, DPL 0, 64-bit interrupt gate
            | ((at >> 16) & 0xffff) << 48;
        // SAFETY: vCPU 0 writes the IDT before any other vCPU loads it (lib.rs waits
        // for IDT_READY) and before interrupts are enabled; no reference escapes.
        unsafe { (*core::ptr::addr_of_mut!(IDT)).0[v as usize] = [low, at >> 32] };
    }
    load();
}

/// Loads the IDT on the calling vCPU.
pub fn load() {
    let mut idtr = [0u16; 5];
    idtr[0] = 256 * 16 - 1;
    let base = core::ptr::addr_of!(IDT) as u64;
    for (i, w) in idtr[1..].iter_mut().enumerate() {
        *w = (base >> (16 * i)) as u16;
    }
    // SAFETY: the IDT is static, filled by `init`, and its stubs stay mapped.
    unsafe {
        core::arch::asm!("lidt [{}]", in(reg) idtr.as_ptr(), options(readonly, nostack, preserves_flags))
    };
}

/// Installs (`Some`) or removes (`None`) the handler of `vector`.
pub fn set_handler(vector: u8, handler: Option<Handler>) {
    let raw = handler.map_or(0, |h| h as usize);
    HANDLERS[usize::from(vector)].store(raw, Ordering::Release);
}

#[no_mangle]
extern "C" fn guest_trap(frame: &mut TrapFrame) {
    let raw = HANDLERS[(frame.vector & 0xff) as usize].load(Ordering::Acquire);
    if raw == 0 {
        fail!(
            "unexpected exception {} at RIP={:#x} error={:#x} CR2={:#x}",
            frame.vector,
            frame.rip,
            frame.error,
            crate::cpu::cr2()
        );
    }
    // SAFETY: non-zero entries are only ever stored from a `Handler` by `set_handler`.
    let handler: Handler = unsafe { core::mem::transmute::<usize, Handler>(raw) };
    handler(frame);
}

/// Where a caught exception resumes: tests store the address of the label after the
/// faulting instruction here (see [`arm`]).
pub static RESUME: AtomicU64 = AtomicU64::new(0);

/// What [`arm`]'s catcher saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caught {
    pub vector: u8,
    pub error: u64,
    /// RIP the CPU pushed (the faulting instruction, or the next one for traps).
    pub rip: u64,
    /// CR2 at the time of the exception.
    pub cr2: u64,
}

static CAUGHT_VECTOR: AtomicU64 = AtomicU64::new(u64::MAX);
static CAUGHT_ERROR: AtomicU64 = AtomicU64::new(0);
static CAUGHT_RIP: AtomicU64 = AtomicU64::new(0);
static CAUGHT_CR2: AtomicU64 = AtomicU64::new(0);

/// Arms a one-shot catcher for `vector`: the next such exception is recorded and
/// resumes at [`RESUME`] (which the test sets with `lea reg, [rip + 2f]` right before
/// the instruction). Read the record with [`take_caught`].
pub fn arm(vector: u8) {
    CAUGHT_VECTOR.store(u64::MAX, Ordering::Relaxed);
    set_handler(vector, Some(catch));
}

fn catch(frame: &mut TrapFrame) {
    CAUGHT_ERROR.store(frame.error, Ordering::Relaxed);
    CAUGHT_RIP.store(frame.rip, Ordering::Relaxed);
    CAUGHT_CR2.store(crate::cpu::cr2(), Ordering::Relaxed);
    CAUGHT_VECTOR.store(frame.vector, Ordering::Release);
    set_handler(frame.vector as u8, None);
    frame.rip = RESUME.load(Ordering::Relaxed);
}

/// The exception the armed catcher saw, if any; disarms it.
pub fn take_caught() -> Option<Caught> {
    let vector = CAUGHT_VECTOR.swap(u64::MAX, Ordering::Acquire);
    if vector == u64::MAX {
        return None;
    }
    set_handler(vector as u8, None);
    Some(Caught {
        vector: vector as u8,
        error: CAUGHT_ERROR.load(Ordering::Relaxed),
        rip: CAUGHT_RIP.load(Ordering::Relaxed),
        cr2: CAUGHT_CR2.load(Ordering::Relaxed),
    })
}
