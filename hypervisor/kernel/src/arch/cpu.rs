//! Per-CPU processor state: GDT with TSS, IDT, SYSCALL MSRs, control registers,
//! the FPU, and the per-CPU data block reached through GS.
//!
//! Segment layout (the order SYSCALL/SYSRET require):
//! 0x08 kernel code, 0x10 kernel data, 0x18 user code32 (unused), 0x20 user data,
//! 0x28 user code64, 0x30 TSS.

use core::arch::asm;

pub const KERNEL_CS: u16 = 0x08;
pub const KERNEL_DS: u16 = 0x10;
pub const USER_DS: u16 = 0x20 | 3;
pub const USER_CS: u16 = 0x28 | 3;
pub const TSS_SEL: u16 = 0x30;

pub const MSR_EFER: u32 = 0xc000_0080;
pub const MSR_STAR: u32 = 0xc000_0081;
pub const MSR_LSTAR: u32 = 0xc000_0082;
pub const MSR_FMASK: u32 = 0xc000_0084;
pub const MSR_FS_BASE: u32 = 0xc000_0100;
pub const MSR_GS_BASE: u32 = 0xc000_0101;
pub const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;
pub const MSR_TSC_AUX: u32 = 0xc000_0103;

/// Whether the CPU has RDTSCP (and so the TSC_AUX MSR).
pub fn has_rdtscp() -> bool {
    cpuid(0x8000_0001, 0)[3] & (1 << 27) != 0
}

pub fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: the kernel reads only MSRs that exist on the CPUs it supports.
    unsafe { asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack)) };
    (hi as u64) << 32 | lo as u64
}

pub fn wrmsr(msr: u32, value: u64) {
    // SAFETY: the kernel writes only architectural MSRs with valid values.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32, options(nostack))
    };
}

pub fn cpuid(leaf: u32, sub: u32) -> [u32; 4] {
    let r = core::arch::x86_64::__cpuid_count(leaf, sub);
    [r.eax, r.ebx, r.ecx, r.edx]
}

pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effects.
    unsafe { core::arch::x86_64::_rdtsc() }
}

pub fn read_cr2() -> u64 {
    let v: u64;
    // SAFETY: reading CR2 has no side effects.
    unsafe { asm!("mov {}, cr2", out(reg) v, options(nomem, nostack)) };
    v
}

pub fn read_cr3() -> u64 {
    let v: u64;
    // SAFETY: reading CR3 has no side effects.
    unsafe { asm!("mov {}, cr3", out(reg) v, options(nomem, nostack)) };
    v
}

/// Switches address space. The caller passes the root of a page table that maps
/// the kernel half identically to every other one.
pub fn write_cr3(pml4: u64) {
    if read_cr3() != pml4 {
        // SAFETY: every address space shares the kernel half, so the kernel keeps running.
        unsafe { asm!("mov cr3, {}", in(reg) pml4, options(nostack)) };
    }
}

/// Loads `pml4` into CR3 even if it is already there: every non-global TLB entry
/// and paging-structure cache entry is dropped.
pub fn load_cr3(pml4: u64) {
    // SAFETY: as for `write_cr3`: `pml4` maps the kernel half like every other table.
    unsafe { asm!("mov cr3, {}", in(reg) pml4, options(nostack)) };
}

pub fn flush_tlb() {
    // SAFETY: rewriting CR3 with its own value flushes non-global TLB entries.
    unsafe { asm!("mov {0}, cr3", "mov cr3, {0}", out(reg) _, options(nostack)) };
}

pub fn halt_forever() -> ! {
    loop {
        // SAFETY: stops the CPU with interrupts off.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) };
    }
}

/// Waits for an interrupt with interrupts enabled; returns after it was handled
/// only if the handler returns (kernel-mode interrupt handlers that reschedule never do).
pub fn enable_and_halt() {
    // SAFETY: STI takes effect after HLT, so no wakeup is lost.
    unsafe { asm!("sti", "hlt", "cli", options(nomem, nostack)) };
}

#[repr(C, packed)]
struct DescriptorPointer {
    limit: u16,
    base: u64,
}

#[repr(C, packed)]
#[derive(Default)]
pub struct Tss {
    _reserved0: u32,
    pub rsp: [u64; 3],
    _reserved1: u64,
    pub ist: [u64; 7],
    _reserved2: u64,
    _reserved3: u16,
    iomap_base: u16,
}

#[repr(C, align(16))]
#[derive(Clone, Copy, Default)]
pub struct IdtEntry {
    offset_lo: u16,
    selector: u16,
    ist: u8,
    flags: u8,
    offset_mid: u16,
    offset_hi: u32,
    _reserved: u32,
}

/// The IDT is identical on every CPU; it is filled once by the BSP.
static mut IDT: [IdtEntry; 256] = [IdtEntry {
    offset_lo: 0,
    selector: 0,
    ist: 0,
    flags: 0,
    offset_mid: 0,
    offset_hi: 0,
    _reserved: 0,
}; 256];

/// Per-CPU descriptor tables, allocated once per CPU and never freed.
#[repr(C, align(16))]
pub struct Tables {
    pub gdt: [u64; 8],
    pub tss: Tss,
    /// The I/O permission bitmap of the PD running here (set bit: port denied),
    /// followed by the terminating 0xff byte the CPU requires.
    pub io_bitmap: [u8; 8192 + 1],
}

pub fn init_idt(stub_base: u64) {
    for v in 0..256usize {
        let addr = stub_base + 16 * v as u64;
        let entry = IdtEntry {
            offset_lo: addr as u16,
            selector: KERNEL_CS,
            // double fault, NMI and machine check run on their own stack
            ist: if matches!(v, 2 | 8 | 18) { 1 } else { 0 },
            flags: 0x8e,
            offset_mid: (addr >> 16) as u16,
            offset_hi: (addr >> 32) as u32,
            _reserved: 0,
        };
        // SAFETY: called once on the BSP before any other CPU runs or loads the IDT.
        unsafe { (*core::ptr::addr_of_mut!(IDT))[v] = entry };
    }
}

/// The address of the IDT (the same on every CPU).
pub fn idt_base() -> u64 {
    core::ptr::addr_of!(IDT) as u64
}

/// Loads GDT, TSS and IDT for this CPU. `tables` must live forever.
pub fn load_tables(tables: &'static mut Tables, kstack_top: u64, ist_top: u64) {
    tables.tss.rsp[0] = kstack_top;
    tables.tss.ist[0] = ist_top;
    tables.tss.iomap_base = core::mem::size_of::<Tss>() as u16;
    let tss_addr = &tables.tss as *const Tss as u64;
    tables.io_bitmap = [0xff; 8192 + 1];
    let tss_limit = core::mem::size_of::<Tss>() as u64 + 8192;
    tables.gdt = [
        0,
        0x00af_9a00_0000_ffff, // kernel code64
        0x00cf_9200_0000_ffff, // kernel data
        0x00cf_fa00_0000_ffff, // user code32 (unused)
        0x00cf_f200_0000_ffff, // user data
        0x00af_fa00_0000_ffff, // user code64
        (tss_limit & 0xffff)
            | (tss_addr & 0xff_ffff) << 16
            | 0x89 << 40
            | ((tss_limit >> 16) & 0xf) << 48
            | ((tss_addr >> 24) & 0xff) << 56,
        tss_addr >> 32,
    ];
    let gdtp = DescriptorPointer {
        limit: (8 * 8 - 1) as u16,
        base: tables.gdt.as_ptr() as u64,
    };
    let idtp = DescriptorPointer {
        limit: (256 * 16 - 1) as u16,
        base: core::ptr::addr_of!(IDT) as u64,
    };
    // SAFETY: the GDT keeps the kernel selectors the CPU already uses; reloading CS
    // through a far return and the data segments keeps execution going; the TSS
    // descriptor is valid and not busy; the IDT is fully initialised.
    unsafe {
        asm!(
            "lgdt [{gdtp}]",
            "push {cs}",
            "lea {tmp}, [rip + 2f]",
            "push {tmp}",
            "retfq",
            "2:",
            "mov ds, {ds:e}",
            "mov es, {ds:e}",
            "mov ss, {ds:e}",
            "ltr {tss:x}",
            "lidt [{idtp}]",
            gdtp = in(reg) &gdtp,
            idtp = in(reg) &idtp,
            cs = in(reg) KERNEL_CS as u64,
            ds = in(reg) KERNEL_DS as u32,
            tss = in(reg) TSS_SEL,
            tmp = out(reg) _,
        );
    }
}

/// Control registers and MSRs every CPU needs: caches on, FPU/SSE for user code,
/// NX, SYSCALL entry, and GS pointing at the per-CPU block.
pub fn init_features(syscall_entry: u64, percpu: u64) {
    // SAFETY: CR0/CR4 bits are set to values valid for long mode on every CPU we
    // support (SSE is architectural on x86_64).
    unsafe {
        let mut cr0: u64;
        asm!("mov {}, cr0", out(reg) cr0);
        cr0 &= !((1 << 2) | (1 << 30) | (1 << 29)); // EM, CD, NW off
        cr0 |= (1 << 1) | (1 << 5) | (1 << 16); // MP, NE, WP
        asm!("mov cr0, {}", in(reg) cr0);
        let mut cr4: u64;
        asm!("mov {}, cr4", out(reg) cr4);
        cr4 |= (1 << 9) | (1 << 10); // OSFXSR, OSXMMEXCPT
        if cpuid(7, 0)[1] & (1 << 7) != 0 {
            cr4 |= 1 << 20; // SMEP
        }
        asm!("mov cr4, {}", in(reg) cr4);
        asm!("fninit");
    }
    enable_xsave();
    wrmsr(MSR_EFER, rdmsr(MSR_EFER) | 1); // SCE
    wrmsr(
        MSR_STAR,
        (KERNEL_CS as u64) << 32 | ((0x18 | 3) as u64) << 48,
    );
    wrmsr(MSR_LSTAR, syscall_entry);
    // clear IF, TF, DF, AC, NT on entry
    wrmsr(
        MSR_FMASK,
        (1 << 9) | (1 << 8) | (1 << 10) | (1 << 18) | (1 << 14),
    );
    wrmsr(MSR_GS_BASE, percpu);
    wrmsr(MSR_KERNEL_GS_BASE, 0);
}

/// XCR0 the kernel runs with (0: no XSAVE, the FPU is switched with FXSAVE).
static HOST_XCR0: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Room for the state of every component the kernel enables (x87, SSE, AVX, AVX-512).
const FPU_AREA: usize = 4096;

/// The XCR0 the kernel runs with; 0 without XSAVE.
pub fn host_xcr0() -> u64 {
    HOST_XCR0.load(core::sync::atomic::Ordering::Relaxed)
}

/// Turns XSAVE on (CR4.OSXSAVE) with every user state component the CPU has that
/// fits the save area: x87, SSE, AVX and the three AVX-512 components.
fn enable_xsave() {
    if cpuid(1, 0)[2] & (1 << 26) == 0 {
        return;
    }
    // SAFETY: CPUID says XSAVE exists, so CR4.OSXSAVE may be set.
    unsafe {
        let mut cr4: u64;
        asm!("mov {}, cr4", out(reg) cr4);
        asm!("mov cr4, {}", in(reg) cr4 | (1 << 18));
    }
    let d = cpuid(0xd, 0);
    let supported = d[0] as u64 | (d[3] as u64) << 32;
    let mut xcr0 = supported & 0b1110_0111;
    if xcr0 & 0xe0 != 0xe0 {
        xcr0 &= 0b111;
    }
    xsetbv(xcr0);
    if cpuid(0xd, 0)[1] as usize > FPU_AREA {
        xcr0 &= 0b111;
        xsetbv(xcr0);
    }
    HOST_XCR0.store(xcr0, core::sync::atomic::Ordering::Relaxed);
}

/// Whether `xcr0` is a value XSETBV accepts on this CPU (and the kernel can save).
pub fn xcr0_valid(xcr0: u64) -> bool {
    let host = host_xcr0();
    xcr0 & 1 != 0
        && xcr0 & !host == 0
        && (xcr0 & 4 == 0 || xcr0 & 2 != 0)
        && (xcr0 & 0xe0 == 0 || (xcr0 & 0xe0 == 0xe0 && xcr0 & 4 != 0))
}

/// XCR0 now (callers check [`host_xcr0`] first: XGETBV needs CR4.OSXSAVE).
pub fn xgetbv() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: CR4.OSXSAVE is set (the caller checked that XSAVE is on), so XGETBV of
    // XCR0 does not fault; it only reads the register.
    unsafe { asm!("xgetbv", in("ecx") 0, out("eax") lo, out("edx") hi, options(nomem, nostack)) };
    (hi as u64) << 32 | lo as u64
}

/// Loads XCR0. Callers pass the host value or one checked by [`xcr0_valid`].
pub fn xsetbv(xcr0: u64) {
    // SAFETY: CR4.OSXSAVE is set before the first call; values are host-supported
    // combinations (see `xcr0_valid`), so XSETBV does not fault.
    unsafe {
        asm!("xsetbv", in("ecx") 0, in("eax") xcr0 as u32, in("edx") (xcr0 >> 32) as u32, options(nomem, nostack))
    };
}

/// The FPU/SSE/AVX state of an execution context (XSAVE area, or FXSAVE without XSAVE).
#[repr(C, align(64))]
#[derive(Clone)]
pub struct FpuState(pub [u8; FPU_AREA]);

impl FpuState {
    /// The state after FNINIT with default MXCSR (XSAVE header zero: all components init).
    pub fn initial() -> Self {
        let mut s = FpuState([0; FPU_AREA]);
        s.0[0..2].copy_from_slice(&0x037fu16.to_le_bytes()); // FCW
        s.0[24..28].copy_from_slice(&0x1f80u32.to_le_bytes()); // MXCSR
        s
    }
    pub fn save(&mut self) {
        if host_xcr0() != 0 {
            // SAFETY: the area is 64-byte aligned and larger than the XSAVE size of the
            // host XCR0 (checked at boot); the current XCR0 is the host's.
            unsafe {
                asm!("xsave64 [{}]", in(reg) self.0.as_mut_ptr(), in("eax") u32::MAX, in("edx") u32::MAX, options(nostack))
            };
        } else {
            // SAFETY: the area is 512+ bytes, 16-byte aligned, owned by us.
            unsafe { asm!("fxsave64 [{}]", in(reg) self.0.as_mut_ptr(), options(nostack)) };
        }
    }
    pub fn restore(&self) {
        if host_xcr0() != 0 {
            // SAFETY: the area holds a state XSAVE wrote with the host XCR0 or the one
            // `initial` builds (zero header, valid MXCSR), so XRSTOR does not fault.
            unsafe {
                asm!("xrstor64 [{}]", in(reg) self.0.as_ptr(), in("eax") u32::MAX, in("edx") u32::MAX, options(nostack))
            };
        } else {
            // SAFETY: the area holds a state saved by FXSAVE or built by `initial`
            // (reserved bits zero, MXCSR valid).
            unsafe { asm!("fxrstor64 [{}]", in(reg) self.0.as_ptr(), options(nostack)) };
        }
    }
}
