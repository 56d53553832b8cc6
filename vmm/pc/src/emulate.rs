//! halifax-emu over the machine: MMIO (nested page faults on device pages)
//! and string port I/O are emulated instruction by instruction.
//!
//! Owns: the emulator's [`Cpu`] view of a `VcpuState` (every register it
//! sets is charged) and its [`Memory`] view of the machine (RAM, the local
//! APIC page, the MMIO bus, the ports). Must not touch: exit policy (what
//! a test-device command does is the exit loop's).

use halifax_emu::{Cpu, Memory, MemoryError, SegReg, Segment};
use vcpu_api::VcpuState;
use vm_memory::{Bytes, GuestAddress};
use vmm_core::devices::PortEffect;

use crate::machine::Machine;

/// `halifax_emu::Cpu` over a `VcpuState`.
pub struct StateCpu<'a>(pub &'a mut VcpuState);

const XMM_OFFSET: usize = 160;
const YMM_HIGH_OFFSET: usize = 576;

fn lane(bytes: &[u8], at: usize) -> u128 {
    let mut b = [0; 16];
    b.copy_from_slice(&bytes[at..at + 16]);
    u128::from_le_bytes(b)
}

/// vcpu-api's 12-bit SVM attribute form to the VMX layout halifax uses.
fn vmx_attributes(svm: u16) -> u16 {
    (svm & 0xff) | (svm & 0xf00) << 4
}

impl Cpu for StateCpu<'_> {
    fn gpr(&mut self, index: usize) -> u64 {
        self.0.gpr(index as u8 & 15).unwrap_or(0)
    }
    fn set_gpr(&mut self, index: usize, value: u64) {
        self.0.set_gpr(index as u8 & 15, value);
    }
    fn rip(&mut self) -> u64 {
        self.0.ip.value()
    }
    fn set_rip(&mut self, value: u64) {
        self.0.ip.charge(value);
    }
    fn rflags(&mut self) -> u64 {
        self.0.flags.value()
    }
    fn set_rflags(&mut self, value: u64) {
        self.0.flags.charge(value);
    }
    fn segment(&mut self, seg: SegReg) -> Segment {
        let s = match seg {
            SegReg::Es => self.0.es.value(),
            SegReg::Cs => self.0.cs.value(),
            SegReg::Ss => self.0.ss.value(),
            SegReg::Ds => self.0.ds.value(),
            SegReg::Fs => self.0.fs.value(),
            SegReg::Gs => self.0.gs.value(),
        };
        Segment {
            selector: s.selector,
            base: s.base,
            limit: s.limit,
            attributes: vmx_attributes(s.attributes),
        }
    }
    fn cr0(&mut self) -> u64 {
        self.0.cr0.value()
    }
    fn cr3(&mut self) -> u64 {
        self.0.cr3.value()
    }
    fn cr4(&mut self) -> u64 {
        self.0.cr4.value()
    }
    fn efer(&mut self) -> u64 {
        self.0.efer.value()
    }
    fn xmm(&mut self, index: usize) -> u128 {
        lane(self.0.fpu.get().bytes(), XMM_OFFSET + (index & 15) * 16)
    }
    fn set_xmm(&mut self, index: usize, value: u128) {
        let at = XMM_OFFSET + (index & 15) * 16;
        self.0
            .fpu
            .update(|f| f.bytes_mut()[at..at + 16].copy_from_slice(&value.to_le_bytes()));
    }
    fn ymm_high(&mut self, index: usize) -> u128 {
        lane(
            self.0.fpu.get().bytes(),
            YMM_HIGH_OFFSET + (index & 15) * 16,
        )
    }
    fn set_ymm_high(&mut self, index: usize, value: u128) {
        let at = YMM_HIGH_OFFSET + (index & 15) * 16;
        self.0
            .fpu
            .update(|f| f.bytes_mut()[at..at + 16].copy_from_slice(&value.to_le_bytes()));
    }
}

/// `halifax_emu::Memory` over the machine, for vCPU `vcpu` emulating the
/// instruction at `rip`; test-device arguments and commands are collected
/// in `effects` for the exit loop.
pub struct MachineMemory<'a> {
    pub machine: &'a Machine,
    pub vcpu: u32,
    pub rip: u64,
    pub effects: Vec<PortEffect>,
}

impl Memory for MachineMemory<'_> {
    fn read(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        if self.machine.ram.read_slice(buf, GuestAddress(gpa)).is_err() {
            self.machine.mmio_read(self.vcpu, self.rip, gpa, buf);
        }
        Ok(())
    }

    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), MemoryError> {
        if self
            .machine
            .ram
            .write_slice(data, GuestAddress(gpa))
            .is_err()
        {
            self.machine.mmio_write(self.vcpu, self.rip, gpa, data);
        }
        Ok(())
    }

    /// Not atomic against other vCPUs on RAM; the emulator only runs for
    /// instructions that touch MMIO, where no other agent races.
    fn compare_and_write(
        &mut self,
        gpa: u64,
        expected: &[u8],
        new: &[u8],
    ) -> Result<bool, MemoryError> {
        let mut current = [0u8; 16];
        let current = current
            .get_mut(..expected.len())
            .ok_or(MemoryError::Unmapped { gpa })?;
        self.read(gpa, current)?;
        if current != expected {
            return Ok(false);
        }
        self.write(gpa, new)?;
        Ok(true)
    }

    fn io_read(&mut self, port: u16, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.machine.port_read(self.vcpu, port, buf);
        Ok(())
    }

    fn io_write(&mut self, port: u16, data: &[u8]) -> Result<(), MemoryError> {
        match self.machine.port_write(port, data) {
            PortEffect::None => {}
            effect => self.effects.push(effect),
        }
        Ok(())
    }
}
