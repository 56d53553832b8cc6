//! Instruction emulation for exits the hardware does not decode: MMIO
//! (nested page faults on the test device's page) and string port I/O.
//!
//! Owns: the glue between `halifax-emu` and the VMM: its [`Cpu`] view of a
//! [`VcpuState`] (every register it sets is charged) and its [`Memory`]
//! view of guest RAM, the MMIO page and the I/O ports. Must not touch: exit
//! policy; port writes with effects beyond the device registers are
//! collected for the exit loop.

use alloc::vec::Vec;

use halifax_emu::{Cpu, Memory, MemoryError, SegReg, Segment};
use spin::Mutex;
use vcpu_api::VcpuState;

use crate::devices::{Devices, PortEffect, MMIO_BASE, MMIO_SIZE};
use crate::memory::GuestMemory;

/// `halifax_emu::Cpu` over a `VcpuState`.
pub struct StateCpu<'a>(pub &'a mut VcpuState);

const XMM_OFFSET: usize = 160;
const YMM_HIGH_OFFSET: usize = 576;

fn lane(bytes: &[u8], at: usize) -> u128 {
    let mut b = [0; 16];
    b.copy_from_slice(&bytes[at..at + 16]);
    u128::from_le_bytes(b)
}

/// The 12-bit SVM attribute form of `vcpu-api` to the VMX layout halifax
/// uses (AVL/L/DB/G move from bits 8-11 to 12-15).
pub fn vmx_attributes(svm: u16) -> u16 {
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

/// `halifax_emu::Memory` over guest RAM, the MMIO page and the ports.
pub struct Bus<'a> {
    pub ram: &'a dyn GuestMemory,
    pub devices: &'a Mutex<Devices>,
    pub vcpu: usize,
    /// Port writes the exit loop must act on, in order.
    pub effects: Vec<PortEffect>,
}

impl Memory for Bus<'_> {
    fn read(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        if (MMIO_BASE..MMIO_BASE + MMIO_SIZE).contains(&gpa) {
            self.devices.lock().mmio_read(gpa - MMIO_BASE, buf);
            return Ok(());
        }
        self.ram
            .read(gpa, buf)
            .map_err(|_| MemoryError::Unmapped { gpa })
    }

    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), MemoryError> {
        if (MMIO_BASE..MMIO_BASE + MMIO_SIZE).contains(&gpa) {
            self.devices.lock().mmio_write(gpa - MMIO_BASE, data);
            return Ok(());
        }
        self.ram
            .write(gpa, data)
            .map_err(|_| MemoryError::Unmapped { gpa })
    }

    /// Not atomic against other vCPUs: the emulator uses it for page-table
    /// A/D bits and LOCKed instructions on MMIO, which the guest tests do
    /// not race.
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
        let value = self
            .devices
            .lock()
            .port_read(port, buf.len() as u8, self.vcpu);
        let bytes = value.to_le_bytes();
        let n = buf.len().min(4);
        buf[..n].copy_from_slice(&bytes[..n]);
        Ok(())
    }

    fn io_write(&mut self, port: u16, data: &[u8]) -> Result<(), MemoryError> {
        let mut bytes = [0u8; 4];
        let n = data.len().min(4);
        bytes[..n].copy_from_slice(&data[..n]);
        let effect = self
            .devices
            .lock()
            .port_write(port, n as u8, u32::from_le_bytes(bytes));
        if effect != PortEffect::None {
            self.effects.push(effect);
        }
        Ok(())
    }
}
