//! Getting the guest started: loading what the configuration names into
//! guest RAM and the first state of each vCPU.
//!
//! Owns: the Linux loader ([`linux`]), the Multiboot v1 path
//! ([`multiboot`]: vmm-core's loader and entry state, every vCPU starts at
//! the entry as the guest tests expect, EBX of the boot vCPU points to the
//! Multiboot information) and the real-mode state an AP starts in after a
//! SIPI.
//! Must not touch: devices or the exit loop.

pub mod linux;
pub mod multiboot;

use std::path::{Path, PathBuf};

use vcpu_api::{EventInfo, Segment, TableRegister, VcpuState};
use vm_memory::GuestMemoryMmap;
use vmm_platform::config::Boot;
use vmm_platform::layout::MemoryLayout;

#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("cannot read {}: {source}; check the path in the VM configuration", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a bootable kernel: {problem}", path.display())]
    BadKernel { path: PathBuf, problem: String },
    #[error(
        "guest memory too small for {what} (needs RAM up to {needed:#x}); give the VM more memory"
    )]
    TooSmall { what: &'static str, needed: u64 },
    #[error(
        "the kernel command line is {len} bytes; this kernel takes at most {max} (without NULs)"
    )]
    Cmdline { len: usize, max: usize },
    #[error("the Multiboot information (command lines, module strings, memory map) takes {needed} bytes; at most {room} fit: shorten the command lines")]
    MultibootInfo { needed: usize, room: usize },
}

/// Where the guest starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// The BSP enters the kernel in long mode; APs wait for INIT/SIPI.
    Linux(linux::LinuxImage),
    /// Every vCPU enters at the kernel's entry in 32-bit protected mode
    /// (vmm-core's guest-test protocol); the boot vCPU's EBX points to the
    /// Multiboot information.
    Multiboot(multiboot::MultibootImage),
}

impl Entry {
    /// Whether vCPU `index` starts at once (else it waits for a SIPI).
    pub fn starts_at_once(&self, index: u32) -> bool {
        index == 0 || matches!(self, Entry::Multiboot { .. })
    }

    /// Charges the first state of vCPU `index`.
    pub fn start_state(&self, s: &mut VcpuState, index: u32) {
        match self {
            Entry::Linux(image) => linux::entry_state(s, image),
            Entry::Multiboot(image) => {
                vmm_core::initial_state(s, image.entry, index as usize);
                if index == 0 {
                    s.rbx.charge(image.info);
                }
            }
        }
    }
}

/// Loads the configured guest into `ram`.
pub fn load(
    ram: &GuestMemoryMmap,
    layout: &MemoryLayout,
    boot: &Boot,
    rsdp: Option<u64>,
) -> Result<Entry, BootError> {
    match boot {
        Boot::Linux {
            kernel,
            initrd,
            cmdline,
        } => linux::load(ram, layout, kernel, initrd.as_deref(), cmdline, rsdp).map(Entry::Linux),
        Boot::Multiboot {
            kernel,
            cmdline,
            modules,
        } => multiboot::load(ram, layout, kernel, cmdline, modules).map(Entry::Multiboot),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, BootError> {
    std::fs::read(path).map_err(|source| BootError::Read {
        path: path.to_owned(),
        source,
    })
}

/// The state an AP starts in after INIT and a SIPI with `vector`: real
/// mode at `vector << 12`, everything else at its INIT value.
pub fn sipi_state(s: &mut VcpuState, vector: u8) {
    let code = Segment {
        selector: (vector as u16) << 8,
        attributes: Segment::attributes(0xb, true, 0, true, false, false, false),
        limit: 0xffff,
        base: (vector as u64) << 12,
    };
    let data = Segment {
        selector: 0,
        attributes: Segment::attributes(0x3, true, 0, true, false, false, false),
        limit: 0xffff,
        base: 0,
    };
    s.cs.charge(code);
    for seg in [&mut s.ds, &mut s.es, &mut s.fs, &mut s.gs, &mut s.ss] {
        seg.charge(data);
    }
    s.tr.charge(Segment {
        selector: 0,
        attributes: Segment::attributes(0xb, false, 0, true, false, false, false),
        limit: 0xffff,
        base: 0,
    });
    s.ldtr.charge(Segment {
        selector: 0,
        attributes: Segment::attributes(0x2, false, 0, true, false, false, false),
        limit: 0xffff,
        base: 0,
    });
    s.gdtr.charge(TableRegister {
        limit: 0xffff,
        base: 0,
    });
    s.idtr.charge(TableRegister {
        limit: 0xffff,
        base: 0,
    });
    s.cr0.charge(0x10); // ET
    s.cr2.charge(0);
    s.cr3.charge(0);
    s.cr4.charge(0);
    s.efer.charge(0);
    s.dr7.charge(0x400);
    s.xcr0.charge(1);
    s.flags.charge(2);
    for gpr in 0..16 {
        s.set_gpr(gpr, 0);
    }
    s.ip.charge(0);
    s.inj_info.charge(EventInfo::NONE);
    s.intr_state.charge(0);
    s.actv_state.charge(vcpu_api::activity::ACTIVE);
    reset_fpu(s);
}

/// FPU and SSE at their reset values (FCW 0x37f, MXCSR 0x1f80).
pub fn reset_fpu(s: &mut VcpuState) {
    s.fpu.update(|f| {
        let bytes = f.bytes_mut();
        bytes.fill(0);
        bytes[0..2].copy_from_slice(&0x037fu16.to_le_bytes());
        bytes[24..28].copy_from_slice(&0x1f80u32.to_le_bytes());
    });
}
