//! Kernel entry and exit: the 256 interrupt stubs, the SYSCALL entry and the return
//! to user mode. Every entry saves the interrupted user registers as a `Frame` at the
//! top of the CPU's kernel stack and calls into Rust, which never returns: it leaves
//! through `return_to_user` (the kernel keeps no per-thread kernel stacks; a blocked
//! thread is just its saved `Frame`, NOVA-style).

use core::arch::global_asm;

/// The user register state as saved on kernel entry (field order = push order reversed).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct Frame {
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
    pub error: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

/// The vector number the SYSCALL entry stores in `Frame::vector`.
pub const SYSCALL_VECTOR: u64 = 0x100;

extern "C" {
    static interrupt_stubs: u8;
    pub fn syscall_entry();
    fn return_to_user_asm(frame: *const Frame) -> !;
    fn idle_on_stack_asm(stack_top: u64, f: extern "C" fn() -> !) -> !;
}

pub fn stub_base() -> u64 {
    core::ptr::addr_of!(interrupt_stubs) as u64
}

/// Leaves the kernel into user mode with the given register state.
pub fn return_to_user(frame: &Frame) -> ! {
    // SAFETY: `frame` holds a user state sanitised by the caller (`cs`/`ss` are the
    // user selectors, RFLAGS has IF set and IOPL 0), so IRETQ enters ring 3.
    unsafe { return_to_user_asm(frame) }
}

/// Abandons the current kernel stack and runs `f` on a fresh one.
pub fn run_on_fresh_stack(stack_top: u64, f: extern "C" fn() -> !) -> ! {
    // SAFETY: `stack_top` is this CPU's kernel stack; nothing on it is live anymore.
    unsafe { idle_on_stack_asm(stack_top, f) }
}

global_asm!(
    r#"
    .section .text.entry, "ax"
    /* the general registers in `Frame` order (last pushed = first field) */
    .macro push_gprs
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
    .endm

    .balign 16
    .global interrupt_stubs
interrupt_stubs:
    .set vec, 0
    .rept 256
    .balign 16
    .if (vec == 8) || ((vec >= 10) && (vec <= 14)) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
    .else
    pushq $0
    .endif
    pushq $vec
    jmp interrupt_common
    .set vec, vec + 1
    .endr

interrupt_common:
    testb $3, 24(%rsp)
    jz 1f
    swapgs
1:
    push_gprs
    cld
    movq %rsp, %rdi
    call trap_entry
    ud2

    .global syscall_entry
syscall_entry:
    swapgs
    movq %rsp, %gs:8
    movq %gs:0, %rsp
    pushq $0x23
    pushq %gs:8
    pushq %r11
    pushq $0x2b
    pushq %rcx
    pushq $0
    pushq $0x100
    push_gprs
    cld
    movq %rsp, %rdi
    call syscall_handler
    ud2

    .global return_to_user_asm
return_to_user_asm:
    movq %rdi, %rsp
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
    swapgs
    iretq

    .global idle_on_stack_asm
idle_on_stack_asm:
    movq %rdi, %rsp
    xorl %ebp, %ebp
    call *%rsi
    ud2
"#,
    options(att_syntax)
);
