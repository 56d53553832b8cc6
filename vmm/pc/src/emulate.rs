//! halifax-emu over the machine: MMIO (nested page faults on device pages)
//! and string port I/O are emulated instruction by instruction.
//!
//! Owns: the emulator's [`Memory`] view of the machine (RAM, the local
//! APIC page, the MMIO bus, the ports). Must not touch: exit policy (what
//! a test-device command does is the exit loop's). The emulator's view of
//! the vCPU's registers is vmm-core's [`vmm_core::StateCpu`].

use halifax_emu::paging::{trace, Access, PagingRegs, WalkTrace};
use halifax_emu::{Memory, MemoryError};
use vcpu_api::VcpuState;
use vm_memory::{Bytes, GuestAddress};
use vmm_core::devices::PortEffect;
use vmm_core::StateCpu;

use crate::machine::Machine;

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

/// Guest RAM only, read-only: what a crash report may look at without
/// touching a device or changing the dead guest.
struct RamReader<'a>(&'a Machine);

impl Memory for RamReader<'_> {
    fn read(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.0
            .ram
            .read_slice(buf, GuestAddress(gpa))
            .map_err(|_| MemoryError::Unmapped { gpa })
    }

    fn write(&mut self, gpa: u64, _data: &[u8]) -> Result<(), MemoryError> {
        Err(MemoryError::Unmapped { gpa })
    }

    fn compare_and_write(
        &mut self,
        gpa: u64,
        _expected: &[u8],
        _new: &[u8],
    ) -> Result<bool, MemoryError> {
        Err(MemoryError::Unmapped { gpa })
    }

    fn io_read(&mut self, _port: u16, buf: &mut [u8]) -> Result<(), MemoryError> {
        buf.fill(0xff);
        Ok(())
    }

    fn io_write(&mut self, _port: u16, _data: &[u8]) -> Result<(), MemoryError> {
        Ok(())
    }
}

/// The page walks of a vCPU that triple-faulted, read from the VMM's own
/// mapping of guest RAM: its code (RIP) and the gate of the double fault
/// (IDT entry 8). A walk that succeeds here although the CPU faulted points
/// at the mapping of guest memory (nested paging) rather than at the
/// guest's page tables.
pub fn crash_walks(machine: &Machine, s: &mut VcpuState) -> [WalkTrace; 2] {
    let regs = PagingRegs::of_cpu(&mut StateCpu(s), machine.emulator.phys_bits);
    let mut ram = RamReader(machine);
    let double_fault_gate = s.idtr.value().base.wrapping_add(8 * 16);
    [
        trace(&mut ram, &regs, s.ip.value(), Access::Execute),
        trace(&mut ram, &regs, double_fault_gate, Access::Read),
    ]
}
