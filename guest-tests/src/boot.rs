//! Boot path shared by every guest: the Multiboot v1 header (with the a.out-kludge
//! addresses QEMU needs for an ELF64), the 32-bit entry for every vCPU, the GDT, the
//! static identity map of the first 4 GiB (2 MiB pages), the per-vCPU stacks, and the
//! switch to long mode. It ends in `guest_entry` (lib.rs) with the vCPU number. The
//! boot vCPU keeps EBX (the Multiboot information) for [`multiboot_info`].
//!
//! Owns: the GDT layout (selectors below), the boot page tables, the stacks.
//! Must not touch: anything after long mode is on (that is lib.rs and trap.rs).

/// Flat 32-bit code segment.
pub const SEL_CODE32: u16 = 0x08;
/// Flat data segment (32-bit and 64-bit).
pub const SEL_DATA: u16 = 0x10;
/// 64-bit code segment.
pub const SEL_CODE64: u16 = 0x18;
/// 16-bit code segment, base 0, limit 64 KiB (the way down to real mode).
pub const SEL_CODE16: u16 = 0x20;
/// 16-bit data segment, base 0, limit 64 KiB.
pub const SEL_DATA16: u16 = 0x28;

/// Most vCPUs a guest supports (one stack each).
pub const MAX_VCPUS: u32 = 4;
/// Bytes of stack per vCPU.
pub const STACK_SIZE: u32 = 32 * 1024;

pub use guest_protocol::{BOOT_MAGIC, SECONDARY_MAGIC};

core::arch::global_asm!(
    r#"
    .section .multiboot, "a"
    .balign 4
multiboot_header:
    .long 0x1BADB002
    .long 0x00010000
    .long -(0x1BADB002 + 0x00010000)
    .long multiboot_header
    .long __image_start
    .long __load_end
    .long __bss_end
    .long _start

    .section .text._start, "ax"
    .code32
    .global _start
_start:
    cli
    cld
    cmpl ${boot_magic}, %eax
    je 1f
    cmpl ${secondary_magic}, %eax
    jne park32
    cmpl ${max_vcpus}, %esi
    jae park32
    movl %esi, %edi
    jmp 2f
1:  movl %ebx, multiboot_info_address
    xorl %edi, %edi
2:  lgdt guest_gdt_ptr
    ljmp ${code32}, $3f
3:  movw ${data}, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw %ax, %fs
    movw %ax, %gs
    /* esp = top of the stack of vCPU edi */
    leal 1(%edi), %eax
    imull ${stack_size}, %eax
    addl $guest_stacks, %eax
    movl %eax, %esp
    /* long mode: PAE, the static identity map, EFER.LME, then paging */
    movl %cr4, %eax
    orl $0x20, %eax
    movl %eax, %cr4
    movl $guest_pml4, %eax
    movl %eax, %cr3
    movl $0xC0000080, %ecx
    rdmsr
    orl $0x100, %eax
    wrmsr
    movl %cr0, %eax
    orl $0x80000001, %eax
    movl %eax, %cr0
    ljmp ${code64}, $long_mode_entry

park32:
    cli
    hlt
    jmp park32

    .code64
long_mode_entry:
    movw ${data}, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movl %edi, %edi
    andq $-16, %rsp
    call guest_entry
4:  cli
    hlt
    jmp 4b

    .section .data.guest_gdt, "aw"
    .balign 16
    .global guest_gdt
guest_gdt:
    .quad 0
    .quad 0x00CF9A000000FFFF   /* 0x08 code32 */
    .quad 0x00CF92000000FFFF   /* 0x10 data */
    .quad 0x00AF9A000000FFFF   /* 0x18 code64 */
    .quad 0x00009A000000FFFF   /* 0x20 code16 */
    .quad 0x000092000000FFFF   /* 0x28 data16 */
guest_gdt_end:
    .balign 8
    .global guest_gdt_ptr
guest_gdt_ptr:
    .word guest_gdt_end - guest_gdt - 1
    .quad guest_gdt

    .section .data.multiboot_info, "aw"
    .balign 4
    .global multiboot_info_address
multiboot_info_address:
    .long 0

    .section .data.guest_page_tables, "aw"
    .balign 4096
    .global guest_pml4
guest_pml4:
    .quad guest_pdpt + 0x3
    .fill 511, 8, 0
guest_pdpt:
    .quad guest_pd + 0x3
    .quad guest_pd + 0x1003
    .quad guest_pd + 0x2003
    .quad guest_pd + 0x3003
    .fill 508, 8, 0
    .global guest_pd
guest_pd:
    .set page, 0
    .rept 2048
    .quad page + 0x83
    .set page, page + 0x200000
    .endr

    .section .bss.guest_stacks, "aw", @nobits
    .balign 16
guest_stacks:
    .skip {stacks_bytes}
"#,
    boot_magic = const BOOT_MAGIC,
    secondary_magic = const SECONDARY_MAGIC,
    max_vcpus = const MAX_VCPUS,
    stack_size = const STACK_SIZE,
    stacks_bytes = const STACK_SIZE * MAX_VCPUS,
    code32 = const SEL_CODE32,
    code64 = const SEL_CODE64,
    data = const SEL_DATA,
    options(att_syntax)
);

extern "C" {
    /// EBX of the boot vCPU at entry: the Multiboot information's address (0: none).
    static multiboot_info_address: u32;
    /// The page directories of the identity map: 4 x 512 entries of 2 MiB pages,
    /// entry `i` maps `[i * 2 MiB, (i + 1) * 2 MiB)`.
    static mut guest_pd: [u64; 2048];
}

/// The guest-physical address of the Multiboot information the boot loader passed
/// in EBX (0 when there is none).
pub fn multiboot_info() -> u32 {
    // SAFETY: written once by the boot vCPU's entry code before any Rust code runs.
    unsafe { core::ptr::addr_of!(multiboot_info_address).read_volatile() }
}

/// The guest image's extent in guest-physical memory (header, code, data, bss).
pub fn image_range() -> core::ops::Range<u64> {
    extern "C" {
        static __image_start: u8;
        static __bss_end: u8;
    }
    // Only the addresses of the linker symbols are taken (no read).
    core::ptr::addr_of!(__image_start) as u64..core::ptr::addr_of!(__bss_end) as u64
}

/// The page-directory entry that maps the 2 MiB region containing `addr` (< 4 GiB).
pub fn pd_entry(addr: u64) -> *mut u64 {
    assert!(
        addr < 1 << 32,
        "the identity map covers only the first 4 GiB"
    );
    // SAFETY: only the address of the static is taken (no reference is created); the
    // index is below 2048 by the assert above.
    unsafe {
        core::ptr::addr_of_mut!(guest_pd)
            .cast::<u64>()
            .add((addr >> 21) as usize)
    }
}
