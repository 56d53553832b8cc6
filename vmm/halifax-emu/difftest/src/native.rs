//! Runs one instruction natively on the host CPU, in user mode.
//!
//! This is the only module with `unsafe`: it maps one executable page and
//! jumps into a trampoline generated with iced's assembler. The trampoline
//! saves the host's callee-saved registers, loads every general register,
//! RFLAGS and all vector registers from a [`NativeState`], runs the
//! 16-byte instruction slot (the instruction padded with NOPs), stores
//! everything back and returns.

use iced_x86::code_asm::*;
use iced_x86::BlockEncoderOptions;
use std::io;

/// Register image exchanged with the trampoline (layout fixed by offsets below).
#[repr(C, align(32))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NativeState {
    /// RAX..R15 in encoding order.
    pub gpr: [u64; 16],
    /// RFLAGS.
    pub rflags: u64,
    /// Host RSP save slot (trampoline private).
    host_rsp: u64,
    _pad: [u64; 2],
    /// YMM0..15 as 4 little-endian quadwords each (XMM is the low half).
    pub ymm: [[u64; 4]; 16],
}

const OFF_RFLAGS: i32 = 128;
const OFF_HOST_RSP: i32 = 136;
const OFF_YMM: i32 = 160;

impl Default for NativeState {
    fn default() -> Self {
        NativeState {
            gpr: [0; 16],
            rflags: 2,
            host_rsp: 0,
            _pad: [0; 2],
            ymm: [[0; 4]; 16],
        }
    }
}

/// Size of the instruction slot.
pub const SLOT_LEN: usize = 16;

/// An executable page holding the trampoline.
pub struct NativeRunner {
    page: *mut u8,
    slot_offset: usize,
    avx: bool,
}

impl NativeRunner {
    /// Maps the page (below 4 GiB, so 32-bit address-size tests can reach
    /// RIP-relative data) and assembles the trampoline into it.
    pub fn new() -> io::Result<NativeRunner> {
        let avx = std::arch::is_x86_feature_detected!("avx");
        // SAFETY: anonymous private mapping, no existing memory is affected;
        // the result is checked for MAP_FAILED.
        let page = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_32BIT,
                -1,
                0,
            )
        };
        if page == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let page = page as *mut u8;
        let (code, slot_offset) =
            assemble(page as u64, avx).map_err(|e| io::Error::other(e.to_string()))?;
        assert!(code.len() <= 4096);
        // SAFETY: `page` is a fresh 4096-byte writable mapping; code fits.
        unsafe { std::ptr::copy_nonoverlapping(code.as_ptr(), page, code.len()) };
        Ok(NativeRunner {
            page,
            slot_offset,
            avx,
        })
    }

    /// Guest-visible address of the instruction slot.
    pub fn slot_address(&self) -> u64 {
        self.page as u64 + self.slot_offset as u64
    }

    /// Whether YMM upper halves are loaded and stored.
    pub fn avx(&self) -> bool {
        self.avx
    }

    /// A copy of the whole code page (the emulator fetches from it).
    pub fn page_copy(&self) -> (u64, Vec<u8>) {
        let mut v = vec![0u8; 4096];
        // SAFETY: the page is mapped readable for the runner's lifetime.
        unsafe { std::ptr::copy_nonoverlapping(self.page, v.as_mut_ptr(), 4096) };
        (self.page as u64, v)
    }

    /// Runs `bytes` (at most 15) with `state` loaded; returns the state after.
    ///
    /// The caller guarantees the instruction only touches memory it owns
    /// (the scratch buffer), is unprivileged and does not transfer control.
    pub fn run(&mut self, bytes: &[u8], state: &mut NativeState) {
        assert!(bytes.len() < SLOT_LEN);
        let mut slot = [0x90u8; SLOT_LEN];
        slot[..bytes.len()].copy_from_slice(bytes);
        // SAFETY: the slot lies inside our mapping; we are its only writer
        // and no other thread executes this page (one runner per thread).
        unsafe {
            std::ptr::copy_nonoverlapping(slot.as_ptr(), self.page.add(self.slot_offset), SLOT_LEN);
            let entry: extern "sysv64" fn(*mut NativeState) = std::mem::transmute(self.page);
            entry(state as *mut NativeState);
        }
        // The ABI wants DF clear on return; the trampoline executes CLD.
    }
}

impl Drop for NativeRunner {
    fn drop(&mut self) {
        // SAFETY: unmapping the page we mapped in `new`.
        unsafe { libc::munmap(self.page as *mut libc::c_void, 4096) };
    }
}

fn gprs() -> [AsmRegister64; 16] {
    [
        rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15,
    ]
}

fn assemble(ip: u64, avx: bool) -> Result<(Vec<u8>, usize), IcedError> {
    let mut a = CodeAssembler::new(64)?;
    let mut ctx_slot = a.create_label();
    let mut insn = a.create_label();
    let xmms = [
        xmm0, xmm1, xmm2, xmm3, xmm4, xmm5, xmm6, xmm7, xmm8, xmm9, xmm10, xmm11, xmm12, xmm13,
        xmm14, xmm15,
    ];
    let ymms = [
        ymm0, ymm1, ymm2, ymm3, ymm4, ymm5, ymm6, ymm7, ymm8, ymm9, ymm10, ymm11, ymm12, ymm13,
        ymm14, ymm15,
    ];
    for r in [rbx, rbp, r12, r13, r14, r15] {
        a.push(r)?;
    }
    a.mov(qword_ptr(ctx_slot), rdi)?;
    a.mov(qword_ptr(rdi + OFF_HOST_RSP), rsp)?;
    for i in 0..16 {
        let m = rdi + (OFF_YMM + 32 * i as i32);
        if avx {
            a.vmovdqu(ymms[i], ymmword_ptr(m))?;
        } else {
            a.movdqu(xmms[i], xmmword_ptr(m))?;
        }
    }
    a.push(qword_ptr(rdi + OFF_RFLAGS))?;
    a.popfq()?;
    for (i, r) in gprs().iter().enumerate() {
        if i != 7 {
            a.mov(*r, qword_ptr(rdi + 8 * i as i32))?;
        }
    }
    a.mov(rdi, qword_ptr(rdi + 56))?;
    a.set_label(&mut insn)?;
    for _ in 0..SLOT_LEN {
        a.nop()?;
    }
    a.xchg(qword_ptr(ctx_slot), rdi)?;
    for (i, r) in gprs().iter().enumerate() {
        if i != 7 {
            a.mov(qword_ptr(rdi + 8 * i as i32), *r)?;
        }
    }
    a.mov(rax, qword_ptr(ctx_slot))?;
    a.mov(qword_ptr(rdi + 56), rax)?;
    a.mov(rsp, qword_ptr(rdi + OFF_HOST_RSP))?;
    a.pushfq()?;
    a.pop(qword_ptr(rdi + OFF_RFLAGS))?;
    for i in 0..16 {
        let m = rdi + (OFF_YMM + 32 * i as i32);
        if avx {
            a.vmovdqu(ymmword_ptr(m), ymms[i])?;
        } else {
            a.movdqu(xmmword_ptr(m), xmms[i])?;
        }
    }
    if avx {
        a.vzeroupper()?;
    }
    a.cld()?;
    for r in [r15, r14, r13, r12, rbp, rbx] {
        a.pop(r)?;
    }
    a.ret()?;
    a.set_label(&mut ctx_slot)?;
    a.dq(&[0])?;
    let result = a.assemble_options(ip, BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS)?;
    let slot = result.label_ip(&insn)? - ip;
    Ok((result.inner.code_buffer, slot as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trampoline_round_trips_registers_and_flags() {
        let mut r = NativeRunner::new().unwrap();
        let mut s = NativeState::default();
        for (i, g) in s.gpr.iter_mut().enumerate() {
            *g = 0x1111 * (i as u64 + 1);
        }
        let stack = vec![0u64; 64];
        s.gpr[4] = stack.as_ptr() as u64 + 256;
        s.rflags = 2 | 1;
        // add rax, rbx
        r.run(&[0x48, 0x01, 0xd8], &mut s);
        assert_eq!(s.gpr[0], 0x1111 + 0x4444);
        assert_eq!(s.gpr[7], 0x8888);
        assert_eq!(s.gpr[4], stack.as_ptr() as u64 + 256);
        assert_eq!(s.rflags & 0x8d5, 0x4);
    }
}
