//! Mode transitions: from long mode down to 32-bit protected mode (paging and
//! EFER.LME off), 16-bit protected mode and real mode, then back up through protected
//! mode to long mode. Real-mode code runs from a copy at 0x8000 with its stack below
//! 0x9000 (README.md section 1). The boot path already did protected -> long once.
#![no_std]
#![no_main]

use guest_tests::{boot, check, cpu, guest, println};

guest!(main);

/// Where the real-mode part runs (copied there, it must sit below 64 KiB).
const TRAMPOLINE: u64 = 0x8000;

core::arch::global_asm!(
    r#"
    .section .text.modes, "ax"
    .code64
    .global modes_round_trip
modes_round_trip:
    pushq %rbx
    pushq %rbp
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, modes_saved_rsp(%rip)
    /* copy the real-mode part to its place below 64 KiB */
    leaq modes_trampoline(%rip), %rsi
    movl ${trampoline}, %edi
    movl $(modes_trampoline_end - modes_trampoline), %ecx
    rep movsb
    /* far return into 32-bit compatibility mode */
    pushq ${code32}
    leaq modes_compat32(%rip), %rax
    pushq %rax
    lretq

    .code32
modes_compat32:
    movw ${data}, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movl ${stack}, %esp
    /* paging off: the CPU leaves long mode (EFER.LMA = 0) */
    movl %cr0, %eax
    andl $0x7fffffff, %eax
    movl %eax, %cr0
    movl $0xC0000080, %ecx
    rdmsr
    movl %eax, modes_pm32_efer
    andl $~0x100, %eax
    wrmsr
    /* 16-bit protected mode, in the copy */
    ljmp ${code16}, ${trampoline}

    .code16
modes_trampoline:
    movw ${data16}, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw %ax, %fs
    movw %ax, %gs
    movl %cr0, %eax
    andl $~1, %eax
    movl %eax, %cr0
    ljmp $0, $({trampoline} + modes_real - modes_trampoline)
modes_real:
    xorw %ax, %ax
    movw %ax, %ds
    movw %ax, %ss
    movw ${stack}, %sp
    movl %cr0, %eax
    movl %eax, ({trampoline} + modes_rm_cr0 - modes_trampoline)
    /* segment arithmetic: 0x1000:0x0234 and 0x1023:0x0004 are both linear 0x10234 */
    movw $0x1000, %ax
    movw %ax, %es
    movw $0xbeef, %es:0x234
    movw $0x1023, %ax
    movw %ax, %es
    movw %es:0x4, %ax
    movw %ax, ({trampoline} + modes_rm_read - modes_trampoline)
    /* a near call through the real-mode stack, then serial output */
    movw $({trampoline} + modes_rm_message - modes_trampoline), %si
    call modes_rm_print
    /* back to protected mode */
    lgdtl ({trampoline} + modes_rm_gdt_ptr - modes_trampoline)
    movl %cr0, %eax
    orl $1, %eax
    movl %eax, %cr0
    ljmpl ${code32}, $modes_pm32_back

modes_rm_print:
    movw $0x3f8, %dx
2:  lodsb
    testb %al, %al
    jz 3f
    outb %al, %dx
    jmp 2b
3:  ret

    .balign 4
modes_rm_gdt_ptr:
    .word 0x2f
    .long guest_gdt
    .global modes_rm_cr0
modes_rm_cr0:
    .long 0xffffffff
    .global modes_rm_read
modes_rm_read:
    .word 0
modes_rm_message:
    .asciz "modes: hello from real mode\n"
    .global modes_trampoline_end
modes_trampoline_end:

    .code32
modes_pm32_back:
    movw ${data}, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw %ax, %fs
    movw %ax, %gs
    movl $0xC0000080, %ecx
    rdmsr
    orl $0x100, %eax
    wrmsr
    movl %cr0, %eax
    orl $0x80000001, %eax
    movl %eax, %cr0
    ljmp ${code64}, $modes_back64

    .code64
modes_back64:
    movw ${data}, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movq modes_saved_rsp(%rip), %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbp
    popq %rbx
    ret

    .section .data.modes, "aw"
    .balign 8
modes_saved_rsp:
    .quad 0
    .global modes_pm32_efer
modes_pm32_efer:
    .long 0
"#,
    trampoline = const TRAMPOLINE,
    stack = const 0x9000,
    code32 = const boot::SEL_CODE32,
    code16 = const boot::SEL_CODE16,
    code64 = const boot::SEL_CODE64,
    data = const boot::SEL_DATA,
    data16 = const boot::SEL_DATA16,
    options(att_syntax)
);

extern "C" {
    /// Long -> protected -> real -> protected -> long; returns in long mode.
    fn modes_round_trip();
    static modes_trampoline: u8;
    static modes_rm_cr0: u8;
    static modes_rm_read: u8;
    static modes_pm32_efer: u32;
}

/// Address of the copy of `symbol` (a label inside the real-mode part) at TRAMPOLINE.
fn in_copy(symbol: *const u8) -> u64 {
    TRAMPOLINE + (symbol as u64 - core::ptr::addr_of!(modes_trampoline) as u64)
}

fn main() {
    // SAFETY: the round trip saves and restores every callee-saved register and RSP,
    // runs with IF = 0, and only writes [0x7000, 0x9000), linear 0x10234 and its own
    // data, none of which the program uses.
    unsafe { modes_round_trip() };
    // SAFETY: plain reads of data the round trip wrote (identity mapped RAM).
    let (rm_cr0, rm_read, pm32_efer) = unsafe {
        (
            (in_copy(core::ptr::addr_of!(modes_rm_cr0)) as *const u32).read_volatile(),
            (in_copy(core::ptr::addr_of!(modes_rm_read)) as *const u16).read_volatile(),
            core::ptr::addr_of!(modes_pm32_efer).read_volatile(),
        )
    };
    check!(
        pm32_efer & 0x500 == 0x100,
        "after CR0.PG = 0: EFER {pm32_efer:#x}, expected LME (bit 8) set and LMA (bit 10) clear"
    );
    check!(
        rm_cr0 & 0x8000_0001 == 0,
        "CR0 {rm_cr0:#x} in real mode: PE or PG still set"
    );
    check!(
        rm_read == 0xbeef,
        "real mode read {rm_read:#x} at 1023:0004, wrote 0xbeef at 1000:0234"
    );
    let efer = cpu::rdmsr(0xC000_0080);
    check!(
        efer & 0x500 == 0x500,
        "back in long mode but EFER {efer:#x} lacks LME/LMA"
    );
    check!(
        cpu::cr0() & 0x8000_0001 == 0x8000_0001,
        "back in long mode but CR0 {:#x}",
        cpu::cr0()
    );
    println!("long -> protected -> real -> protected -> long mode and back");
}
