//! Fuzzes `Emulator::step` with random instruction bytes and random CPU
//! state (every mode, paging mode, segment and control bits) over a guest
//! memory made of the input itself. Goal: no panic, no hang.

#![no_main]

use halifax_emu::{CpuState, Emulator, Memory, MemoryError, SegReg, Segment};
use libfuzzer_sys::fuzz_target;

/// Memory backed by a small buffer repeated over the whole physical space;
/// one address range answers "unmapped" to exercise that path.
struct FuzzMem {
    bytes: Vec<u8>,
}

impl FuzzMem {
    fn at(&mut self, gpa: u64) -> Result<usize, MemoryError> {
        if gpa >> 40 == 0xff {
            return Err(MemoryError::Unmapped { gpa });
        }
        Ok((gpa % self.bytes.len() as u64) as usize)
    }
}

impl Memory for FuzzMem {
    fn read(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        for (i, b) in buf.iter_mut().enumerate() {
            let o = self.at(gpa + i as u64)?;
            *b = self.bytes[o];
        }
        Ok(())
    }
    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), MemoryError> {
        for (i, b) in data.iter().enumerate() {
            let o = self.at(gpa + i as u64)?;
            self.bytes[o] = *b;
        }
        Ok(())
    }
    fn compare_and_write(&mut self, gpa: u64, expected: &[u8], new: &[u8]) -> Result<bool, MemoryError> {
        let mut cur = vec![0; expected.len()];
        self.read(gpa, &mut cur)?;
        if cur != expected {
            return Ok(false);
        }
        self.write(gpa, new)?;
        Ok(true)
    }
    fn io_read(&mut self, port: u16, buf: &mut [u8]) -> Result<(), MemoryError> {
        buf.fill(port as u8);
        Ok(())
    }
    fn io_write(&mut self, _port: u16, _data: &[u8]) -> Result<(), MemoryError> {
        Ok(())
    }
}

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u64(&mut self) -> u64 {
        let n = self.0.len().min(8);
        let mut b = [0u8; 8];
        b[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        u64::from_le_bytes(b)
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 16 {
        return;
    }
    let (code, rest) = data.split_at(15);
    let mut inp = Input(rest);
    let sel = inp.u64();
    let mut cpu = match sel & 3 {
        0 => CpuState::real_mode(),
        1 => CpuState::protected_mode(),
        _ => CpuState::long_mode(inp.u64() & 0x000f_ffff_ffff_f000),
    };
    for r in cpu.gpr.iter_mut() {
        *r = inp.u64();
    }
    cpu.rflags = (inp.u64() & 0x25_4fd5) | 2;
    cpu.rip = inp.u64();
    if sel & 4 != 0 {
        // Random control bits (paging mode, WP, SMEP/SMAP, NXE, TS, EM…).
        cpu.cr0 ^= inp.u64() & 0x8005_000e;
        cpu.cr4 ^= inp.u64() & 0x0034_12b0;
        cpu.efer ^= inp.u64() & 0xd00;
        cpu.cr3 = inp.u64();
    }
    if sel & 8 != 0 {
        for s in [SegReg::Es, SegReg::Cs, SegReg::Ss, SegReg::Ds, SegReg::Fs, SegReg::Gs] {
            let v = inp.u64();
            cpu.segs[s as usize] = Segment {
                selector: v as u16,
                base: inp.u64(),
                limit: (v >> 16) as u32,
                attributes: (v >> 48) as u16,
            };
        }
    }
    for x in cpu.xmm.iter_mut() {
        *x = inp.u64() as u128;
    }
    let mut mem = FuzzMem { bytes: if rest.is_empty() { vec![0] } else { rest.to_vec() } };
    let emu = Emulator { phys_bits: 36 + (sel >> 8) as u8 % 17, max_rep_iterations: 64 };
    let given = if sel & 16 != 0 { Some(code) } else { None };
    let _ = emu.step(&mut cpu, &mut mem, given);
});
