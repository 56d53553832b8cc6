//! Boot entry: the Multiboot v1/v2 headers, the 32-bit entry point, the switch to
//! long mode with boot page tables, and the jump to the higher-half Rust code.
//!
//! Boot page tables (in `.boot.bss`, below 4 GiB) map, with 2 MiB pages:
//! - the first 4 GiB identity (only needed until we run in the higher half),
//! - the first 4 GiB at the direct map (`DIRECT_MAP_BASE`),
//! - the first 1 GiB at `KERNEL_VMA` (the kernel image lives there).
//!
//! Everything here runs before Rust; it must not touch anything else.

use core::arch::global_asm;

global_asm!(
    r#"
    .section .multiboot1, "a"
    .balign 4
multiboot1_header:
    .long 0x1BADB002
    .long 0x00000003
    .long -(0x1BADB002 + 0x00000003)

    .section .multiboot2, "a"
    .balign 8
multiboot2_header:
    .long 0xE85250D6
    .long 0
    .long multiboot2_header_end - multiboot2_header
    .long -(0xE85250D6 + (multiboot2_header_end - multiboot2_header))
    /* module alignment tag */
    .short 6
    .short 0
    .long 8
    /* end tag */
    .short 0
    .short 0
    .long 8
multiboot2_header_end:

    .section .boot.text, "ax"
    .code32
    .global _start32
_start32:
    cli
    cld
    mov edi, eax                       /* multiboot magic */
    mov esi, ebx                       /* multiboot info (physical) */
    mov esp, offset boot_stack32_top

    /* zero the boot page tables */
    push edi
    mov edi, offset boot_pml4
    mov ecx, (7 * 4096) / 4
    xor eax, eax
    rep stosd
    /* zero the kernel's .bss (physical range) */
    mov edi, offset __bss_phys_start
    mov ecx, offset __bss_phys_end
    sub ecx, edi
    shr ecx, 2
    rep stosd
    pop edi

    /* PD[0..4]: 2048 x 2 MiB pages covering 0..4 GiB; the top 32 MiB uncached (LAPIC, IOAPIC, HPET) */
    mov ebx, offset boot_pd
    xor ecx, ecx
1:
    mov eax, ecx
    shl eax, 21
    or eax, 0x83
    cmp ecx, 2032
    jb 2f
    or eax, 0x18
2:
    mov [ebx + ecx * 8], eax
    inc ecx
    cmp ecx, 2048
    jb 1b

    /* PDPT (low and direct map share one): 4 entries -> the 4 PDs */
    mov ebx, offset boot_pdpt
    mov eax, offset boot_pd
    or eax, 0x3
    mov [ebx], eax
    add eax, 4096
    mov [ebx + 8], eax
    add eax, 4096
    mov [ebx + 16], eax
    add eax, 4096
    mov [ebx + 24], eax
    /* high PDPT: entry 510 -> first PD (phys 0..1 GiB at -2 GiB) */
    mov ebx, offset boot_pdpt_high
    mov eax, offset boot_pd
    or eax, 0x3
    mov [ebx + 510 * 8], eax
    /* PML4: [0] identity, [256] direct map, [511] kernel */
    mov ebx, offset boot_pml4
    mov eax, offset boot_pdpt
    or eax, 0x3
    mov [ebx], eax
    mov [ebx + 256 * 8], eax
    mov eax, offset boot_pdpt_high
    or eax, 0x3
    mov [ebx + 511 * 8], eax

    jmp boot_enter_long_mode

/* Shared by the BSP and the APs (the AP trampoline jumps here in 32-bit mode with
 * a valid stack and EDI/ESI preserved). */
    .global boot_enter_long_mode
boot_enter_long_mode:
    mov eax, cr4
    or eax, 0x20                       /* PAE */
    mov cr4, eax
    mov eax, offset boot_pml4
    mov cr3, eax
    /* EFER: LME, and NXE if the CPU has NX */
    push edi
    push esi
    mov eax, 0x80000001
    cpuid
    xor ebx, ebx
    bt edx, 20
    jnc 3f
    mov ebx, 0x800
3:
    mov ecx, 0xC0000080
    rdmsr
    or eax, 0x100
    or eax, ebx
    wrmsr
    pop esi
    pop edi
    mov eax, cr0
    or eax, 0x80010001                 /* PG | WP | PE */
    mov cr0, eax
    lgdt [boot_gdt_ptr]
    mov eax, offset boot_long_mode
    push 0x08
    push eax
    retf

    .code64
boot_long_mode:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    xor eax, eax
    mov fs, ax
    mov gs, ax
    mov rax, [boot_ap_entry]
    test rax, rax
    jnz 4f
    movabs rax, offset kernel_start64
    jmp rax
4:
    mov rsp, [boot_ap_stack]
    jmp rax

    .section .boot.data, "aw"
    .balign 16
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff           /* 0x08: 64-bit code */
    .quad 0x00cf92000000ffff           /* 0x10: data */
boot_gdt_ptr:
    .short 3 * 8 - 1
    .long boot_gdt
    .global boot_ap_entry, boot_ap_stack
    .balign 8
boot_ap_entry: .quad 0                 /* 0: BSP; else the AP's 64-bit entry */
boot_ap_stack: .quad 0

    .section .boot.bss, "aw", @nobits
    .balign 4096
    .global boot_pml4
boot_pml4: .skip 4096
boot_pdpt: .skip 4096
boot_pdpt_high: .skip 4096
boot_pd: .skip 4 * 4096
boot_stack32: .skip 4096
boot_stack32_top:

    .section .bss.bsp_stack, "aw", @nobits
    .balign 4096
bsp_stack: .skip 65536
bsp_stack_top:

    .section .text.boot64, "ax"
    .code64
kernel_start64:
    movabs rsp, offset bsp_stack_top
    /* EDI = magic, ESI = info (zero-extended by the 32-bit moves) */
    mov edi, edi
    mov esi, esi
    xor ebp, ebp
    call kernel_main
5:
    hlt
    jmp 5b
"#
);
