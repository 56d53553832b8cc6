//! Per-CPU data and the start of application processors (INIT/SIPI through a
//! real-mode trampoline that joins the BSP's boot path into long mode).

use super::{apic, phys};
use alloc::boxed::Box;
use core::arch::global_asm;
use core::sync::atomic::{AtomicU32, Ordering};

/// The page (below 1 MiB) the AP trampoline is copied to.
const TRAMPOLINE: u64 = 0x8000;
pub const KSTACK_SIZE: usize = 64 * 1024;

/// Reached through GS in kernel mode. The first two fields are used by the entry
/// code (`gs:0`, `gs:8`) and must stay first.
#[repr(C)]
pub struct PerCpu {
    pub kstack_top: u64,
    pub user_rsp_scratch: u64,
    pub cpu: u32,
    pub apic_id: u32,
    pub tables: *mut super::cpu::Tables,
}

/// Loads a PD's I/O permission bitmap into this CPU's TSS.
pub fn load_io_bitmap(bitmap: &[u8; 8192]) {
    let v: u64;
    // SAFETY: GS points at this CPU's `PerCpu`; `tables` (offset 24) is set once at
    // CPU init to this CPU's leaked descriptor tables, used only by this CPU.
    unsafe {
        core::arch::asm!("mov {}, gs:24", out(reg) v, options(nostack, readonly));
        let tables = &mut *(v as *mut super::cpu::Tables);
        tables.io_bitmap[..8192].copy_from_slice(bitmap);
    }
}

/// Denies every port in this CPU's TSS (until a PD's bitmap is loaded again).
pub fn deny_all_ports() {
    let t = tables();
    // SAFETY: this CPU's descriptor tables (set once at CPU init), used only by it.
    unsafe { (&mut (*t).io_bitmap)[..8192].fill(0xff) };
}

fn tables() -> *mut super::cpu::Tables {
    let v: u64;
    // SAFETY: GS points at this CPU's `PerCpu`; `tables` (offset 24) is set once.
    unsafe { core::arch::asm!("mov {}, gs:24", out(reg) v, options(nostack, readonly)) };
    v as *mut super::cpu::Tables
}

/// GDT, IDT and TSS addresses of this CPU (the host state of a VMCS).
pub fn descriptor_bases() -> (u64, u64, u64) {
    let t = tables();
    // SAFETY: only addresses inside this CPU's leaked tables are taken.
    let (gdt, tss) = unsafe {
        (
            core::ptr::addr_of!((*t).gdt) as u64,
            core::ptr::addr_of!((*t).tss) as u64,
        )
    };
    (gdt, super::cpu::idt_base(), tss)
}

/// Reloads the task register after a VM exit (VMX leaves its limit at 0x67, which
/// would cut off the I/O permission bitmap).
pub fn reload_tr() {
    let t = tables();
    // SAFETY: this CPU's GDT; clearing the busy bit of its own TSS descriptor lets LTR
    // load the same, valid descriptor again.
    unsafe {
        (*t).gdt[6] &= !(1 << 41);
        core::arch::asm!("ltr {:x}", in(reg) super::cpu::TSS_SEL, options(nostack));
    }
}

pub fn cpu_id() -> usize {
    let v: u32;
    // SAFETY: GS points at this CPU's `PerCpu` whenever the kernel runs.
    unsafe { core::arch::asm!("mov {:e}, gs:16", out(reg) v, options(nostack, readonly)) };
    v as usize
}

pub fn kstack_top() -> u64 {
    let v: u64;
    // SAFETY: as above.
    unsafe { core::arch::asm!("mov {}, gs:0", out(reg) v, options(nostack, readonly)) };
    v
}

/// Allocates the stacks, descriptor tables and per-CPU block of one CPU and loads them.
pub fn init_cpu(cpu: u32, apic_id: u32) {
    let stack = Box::leak(alloc::vec![0u8; KSTACK_SIZE].into_boxed_slice());
    let ist = Box::leak(alloc::vec![0u8; 16 * 1024].into_boxed_slice());
    let kstack_top = (stack.as_ptr() as u64 + KSTACK_SIZE as u64) & !0xf;
    let ist_top = (ist.as_ptr() as u64 + ist.len() as u64) & !0xf;
    let tables = Box::leak(Box::new(super::cpu::Tables {
        gdt: [0; 8],
        tss: Default::default(),
        io_bitmap: [0xff; 8192 + 1],
    }));
    let tables_ptr = tables as *mut super::cpu::Tables;
    super::cpu::load_tables(tables, kstack_top, ist_top);
    let percpu = Box::leak(Box::new(PerCpu {
        kstack_top,
        user_rsp_scratch: 0,
        cpu,
        apic_id,
        tables: tables_ptr,
    }));
    super::cpu::init_features(
        super::entry::syscall_entry as *const () as usize as u64,
        percpu as *mut PerCpu as u64,
    );
}

extern "C" {
    fn ap_entry_shim();
    static ap_trampoline_start: u8;
    static ap_trampoline_end: u8;
    static mut boot_ap_entry: u64;
    static mut boot_ap_stack: u64;
}

static STARTED: AtomicU32 = AtomicU32::new(0);

/// Starts the AP with `apic_id` as CPU `cpu`; returns whether it came up.
/// `entry` runs on the AP with its boot stack and receives the CPU number.
pub fn start_ap(cpu: u32, apic_id: u32, entry: extern "C" fn(u32) -> !) -> bool {
    // SAFETY: only symbol addresses are taken; the trampoline bytes are read-only.
    let code = unsafe {
        let start = core::ptr::addr_of!(ap_trampoline_start) as u64;
        let end = core::ptr::addr_of!(ap_trampoline_end) as u64;
        core::slice::from_raw_parts(start as *const u8, (end - start) as usize)
    };
    phys::copy(TRAMPOLINE, code);
    let stack = Box::leak(alloc::vec![0u8; 16 * 1024].into_boxed_slice());
    let top = (stack.as_ptr() as u64 + stack.len() as u64) & !0xf;
    // the boot stack carries the CPU number for the entry shim
    phys::write(phys::to_phys(top - 16), cpu as u64);
    // The symbols are in the low, identity-mapped .boot section; only the BSP
    // writes them, one AP at a time, before sending the SIPI.
    let (entry_pa, stack_pa) = (
        core::ptr::addr_of!(boot_ap_entry) as u64,
        core::ptr::addr_of!(boot_ap_stack) as u64,
    );
    phys::write(entry_pa, ap_entry_shim as *const () as usize as u64);
    phys::write(stack_pa, top - 16);
    // SAFETY: ENTRY is read by the shim on the AP after the SIPI.
    unsafe { AP_ENTRY = Some(entry) };
    let before = STARTED.load(Ordering::Acquire);
    apic::send_init(apic_id);
    apic::delay_us(10_000);
    for _ in 0..2 {
        apic::send_sipi(apic_id, (TRAMPOLINE >> 12) as u8);
        apic::delay_us(200);
    }
    for _ in 0..1_000 {
        if STARTED.load(Ordering::Acquire) != before {
            return true;
        }
        apic::delay_us(1_000);
    }
    false
}

static mut AP_ENTRY: Option<extern "C" fn(u32) -> !> = None;

extern "C" fn ap_entry_rust(cpu: u32) -> ! {
    STARTED.fetch_add(1, Ordering::AcqRel);
    // SAFETY: written by the BSP before the SIPI; the BSP waits for STARTED.
    let entry = unsafe { AP_ENTRY }.expect("AP entry not set");
    entry(cpu)
}

global_asm!(
    r#"
    .section .text.ap_shim, "ax"
    .global ap_entry_shim
ap_entry_shim:
    movq (%rsp), %rdi
    xorl %ebp, %ebp
    call {rust}
    ud2

    .section .rodata.trampoline, "a"
    .global ap_trampoline_start, ap_trampoline_end
    .code16
ap_trampoline_start:
    cli
    cld
    xorw %ax, %ax
    movw %ax, %ds
    lgdtl (0x8000 + tramp_gdt_ptr - ap_trampoline_start)
    movl %cr0, %eax
    orl $1, %eax
    movl %eax, %cr0
    ljmpl $0x08, $(0x8000 + tramp32 - ap_trampoline_start)
    .code32
tramp32:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movl $(0x8000 + 0xff0), %esp
    movl $boot_enter_long_mode, %eax
    jmp *%eax
    .balign 8
tramp_gdt:
    .quad 0
    .quad 0x00cf9a000000ffff
    .quad 0x00cf92000000ffff
tramp_gdt_ptr:
    .short 23
    .long 0x8000 + tramp_gdt - ap_trampoline_start
ap_trampoline_end:
    .code64
"#,
    rust = sym ap_entry_rust,
    options(att_syntax)
);
