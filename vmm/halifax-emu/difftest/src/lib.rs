//! Differential testing of halifax-emu against the host CPU.
//!
//! Each case runs twice from identical registers, flags and memory: once
//! natively ([`native`]) on a scratch buffer, once through
//! [`halifax_emu::Emulator::step`] in 64-bit mode with 4-level paging that
//! identity-maps the code page and the scratch buffer ([`World`]). All
//! general registers, RIP, the vector registers, the scratch bytes and the
//! architecturally defined flags (undefined ones per the SDM masked out,
//! [`gen::undefined_flags`]) must match.
//!
//! The campaign runs as `tests/differential.rs` of halifax-emu: a quick one
//! in every `cargo test`, and
//! `HALIFAX_DIFF_CASES=1000000 cargo test --release -p halifax-emu --test differential -- --nocapture`
//! for the full one (`HALIFAX_DIFF_SEED` picks the seed).

pub mod gen;
pub mod native;

use halifax_emu::{Cpu, CpuState, Emulator, Memory, MemoryError, StepOutcome};
use native::NativeRunner;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Physical base of the emulator's page tables (outside every mapped range).
const PT_BASE: u64 = 0x100_0000_0000;

/// The emulator's view of the guest: identity-mapped code page and scratch
/// buffer plus the page tables that map them.
pub struct World {
    tables: Vec<[u64; 512]>,
    /// (base address, bytes) of each mapped range.
    pub ranges: Vec<(u64, Vec<u8>)>,
}

impl World {
    /// Builds page tables identity-mapping `ranges` (4 KiB aligned).
    pub fn new(ranges: Vec<(u64, Vec<u8>)>) -> World {
        let mut w = World {
            tables: vec![[0; 512]],
            ranges,
        };
        let pages: Vec<u64> = w
            .ranges
            .iter()
            .flat_map(|(base, bytes)| (0..bytes.len() as u64 / 4096).map(move |i| base + i * 4096))
            .collect();
        for va in pages {
            let mut table = 0usize;
            for level in (1..=4).rev() {
                let idx = ((va >> (12 + 9 * (level - 1))) & 0x1ff) as usize;
                if level == 1 {
                    w.tables[table][idx] = va | 0x3;
                    break;
                }
                let e = w.tables[table][idx];
                table = if e & 1 == 0 {
                    w.tables.push([0; 512]);
                    let n = w.tables.len() - 1;
                    w.tables[table][idx] = (PT_BASE + n as u64 * 4096) | 0x7;
                    n
                } else {
                    ((e & !0xfff) - PT_BASE) as usize / 4096
                };
            }
        }
        w
    }

    /// CR3 for the tables.
    pub fn cr3(&self) -> u64 {
        PT_BASE
    }

    fn locate(&mut self, gpa: u64, len: usize) -> Result<&mut [u8], MemoryError> {
        for (base, bytes) in self.ranges.iter_mut() {
            if gpa >= *base && gpa + len as u64 <= *base + bytes.len() as u64 {
                let o = (gpa - *base) as usize;
                return Ok(&mut bytes[o..o + len]);
            }
        }
        Err(MemoryError::Unmapped { gpa })
    }

    fn table_entry(&mut self, gpa: u64) -> Option<&mut u64> {
        if gpa < PT_BASE || !gpa.is_multiple_of(8) {
            return None;
        }
        let t = ((gpa - PT_BASE) / 4096) as usize;
        self.tables
            .get_mut(t)
            .map(|table| &mut table[(gpa % 4096) as usize / 8])
    }
}

impl Memory for World {
    fn read(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        if buf.len() == 8 {
            if let Some(e) = self.table_entry(gpa) {
                buf.copy_from_slice(&e.to_le_bytes());
                return Ok(());
            }
        }
        let src = self.locate(gpa, buf.len())?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), MemoryError> {
        let dst = self.locate(gpa, data.len())?;
        dst.copy_from_slice(data);
        Ok(())
    }
    fn compare_and_write(
        &mut self,
        gpa: u64,
        expected: &[u8],
        new: &[u8],
    ) -> Result<bool, MemoryError> {
        if expected.len() == 8 {
            if let Some(e) = self.table_entry(gpa) {
                if e.to_le_bytes() != expected {
                    return Ok(false);
                }
                *e = u64::from_le_bytes(new.try_into().unwrap());
                return Ok(true);
            }
        }
        let dst = self.locate(gpa, expected.len())?;
        if dst != expected {
            return Ok(false);
        }
        dst.copy_from_slice(new);
        Ok(true)
    }
    fn io_read(&mut self, _port: u16, _buf: &mut [u8]) -> Result<(), MemoryError> {
        Err(MemoryError::Unmapped { gpa: 0 })
    }
    fn io_write(&mut self, _port: u16, _data: &[u8]) -> Result<(), MemoryError> {
        Err(MemoryError::Unmapped { gpa: 0 })
    }
}

/// A scratch buffer mapped below 4 GiB (for 32-bit address-size cases).
pub struct Scratch {
    ptr: *mut u8,
    len: usize,
}

impl Scratch {
    /// Maps `len` bytes read/write below 4 GiB.
    pub fn new(len: usize) -> std::io::Result<Scratch> {
        // SAFETY: fresh anonymous mapping; failure checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_32BIT,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Scratch {
            ptr: p as *mut u8,
            len,
        })
    }
    /// Address of the buffer.
    pub fn addr(&self) -> u64 {
        self.ptr as u64
    }
    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: mapped for `len` bytes for our lifetime; native code only
        // writes it while no Rust reference is alive (during `run`).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
    /// The bytes, mutably.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above, with unique access through &mut self.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping.
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len) };
    }
}

/// Outcome of a campaign.
#[derive(Debug, Default)]
pub struct Report {
    /// Cases run on both sides.
    pub cases: u64,
    /// Cases whose results differed.
    pub mismatches: u64,
    /// Cases the emulator refused (unsupported / exception).
    pub emulator_errors: u64,
    /// Instruction forms (iced codes and string encodings) drawn from.
    pub templates: usize,
    /// Per-mnemonic case counts.
    pub per_mnemonic: BTreeMap<String, u64>,
    /// Descriptions of the first mismatches.
    pub first_failures: Vec<String>,
}

/// Runs `cases` random cases from `seed`.
pub fn run_campaign(seed: u64, cases: u64) -> std::io::Result<Report> {
    let mut runner = NativeRunner::new()?;
    let mut scratch = Scratch::new(gen::SCRATCH_LEN as usize)?;
    let templates = gen::templates();
    let mut rng = gen::Rng::new(seed);
    let mut report = Report {
        templates: templates.len(),
        ..Report::default()
    };
    let emu = Emulator::default();
    let (page_addr, page) = runner.page_copy();
    let mut world = World::new(vec![
        (page_addr, page),
        (scratch.addr(), vec![0; gen::SCRATCH_LEN as usize]),
    ]);
    let slot = runner.slot_address();
    let avx = runner.avx();
    let mut decoder_buf = iced_x86::Instruction::default();
    let trace = std::env::var_os("HALIFAX_DIFF_TRACE").is_some();
    while report.cases < cases {
        let t = templates[rng.below(templates.len() as u64) as usize];
        let Some(case) = gen::generate(&mut rng, &t, scratch.addr(), runner.slot_address()) else {
            continue;
        };
        // Fresh random scratch contents.
        for chunk in scratch.bytes_mut().chunks_mut(8) {
            let v = rng.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        world.ranges[1].1.copy_from_slice(scratch.bytes());
        // Emulator side.
        let mut cpu = CpuState::long_mode(world.cr3());
        cpu.gpr = case.state.gpr;
        cpu.rflags = case.state.rflags;
        cpu.rip = slot;
        for i in 0..16 {
            let y = case.state.ymm[i];
            cpu.xmm[i] = y[0] as u128 | (y[1] as u128) << 64;
            cpu.ymm_high[i] = y[2] as u128 | (y[3] as u128) << 64;
        }
        // Put the bytes into the emulator's copy of the code page too, and
        // alternate between fetching and being handed the bytes.
        let slot_off = (slot - page_addr) as usize;
        let code = &mut world.ranges[0].1;
        code[slot_off..slot_off + native::SLOT_LEN].fill(0x90);
        code[slot_off..slot_off + case.bytes.len()].copy_from_slice(&case.bytes);
        let given = if rng.chance(1, 2) {
            Some(&case.bytes[..])
        } else {
            None
        };
        let emu_result = emu.step(&mut cpu, &mut world, given);

        // Native side.
        if trace {
            eprintln!(
                "case {}: {:02x?} gpr {:x?}",
                report.cases, case.bytes, case.state.gpr
            );
        }
        let mut native = case.state;
        runner.run(&case.bytes, &mut native);
        report.cases += 1;

        let mut d =
            iced_x86::Decoder::with_ip(64, &case.bytes, slot, iced_x86::DecoderOptions::NONE);
        d.decode_out(&mut decoder_buf);
        let name = format!("{:?}", decoder_buf.mnemonic());
        *report.per_mnemonic.entry(name.clone()).or_default() += 1;

        let mut diff = String::new();
        match emu_result {
            Ok(StepOutcome::Completed) => {}
            other => {
                report.emulator_errors += 1;
                let _ = write!(diff, " emulator returned {other:?};");
            }
        }
        if diff.is_empty() {
            let undefined = gen::undefined_flags(&case.bytes, &case.state);
            let mask = 0x8d5 | 0x400;
            let defined = mask & !undefined;
            if cpu.rflags & defined != native.rflags & defined {
                let _ = write!(
                    diff,
                    " rflags emu {:#x} native {:#x} (defined mask {defined:#x});",
                    cpu.rflags, native.rflags
                );
            }
            for i in 0..16 {
                if cpu.gpr(i) != native.gpr[i] {
                    let _ = write!(
                        diff,
                        " gpr{i} emu {:#x} native {:#x};",
                        cpu.gpr[i], native.gpr[i]
                    );
                }
                let y = native.ymm[i];
                let lo = y[0] as u128 | (y[1] as u128) << 64;
                let hi = y[2] as u128 | (y[3] as u128) << 64;
                if cpu.xmm[i] != lo || (avx && cpu.ymm_high[i] != hi) {
                    let _ = write!(diff, " ymm{i} differs;");
                }
            }
            if cpu.rip != slot + decoder_buf.len() as u64 {
                let _ = write!(
                    diff,
                    " rip {:#x} expected {:#x};",
                    cpu.rip,
                    slot + decoder_buf.len() as u64
                );
            }
            if world.ranges[1].1 != scratch.bytes() {
                let first = world.ranges[1]
                    .1
                    .iter()
                    .zip(scratch.bytes())
                    .position(|(a, b)| a != b)
                    .unwrap_or(0);
                let _ = write!(diff, " memory differs at scratch+{first:#x};");
            }
        }
        if !diff.is_empty() {
            report.mismatches += 1;
            if report.first_failures.len() < 20 {
                report.first_failures.push(format!(
                    "{:?} bytes {:02x?} in {:x?} flags {:#x}:{diff}",
                    decoder_buf.code(),
                    case.bytes,
                    &case.state.gpr,
                    case.state.rflags
                ));
            }
        }
    }
    Ok(report)
}
