//! Requests to the roottask (the component's parent): memory, boot modules,
//! exit and crash reports. Every request goes through the parent portal of
//! the calling thread's CPU, with the calling thread's UTCB.

use hyper_abi::{syscall, Status, Utcb};
use native::parent;

/// Who is asking: the calling EC's UTCB and CPU.
#[derive(Clone, Copy)]
pub struct Caller {
    pub utcb: u64,
    pub cpu: u32,
}

impl Caller {
    fn utcb(&self) -> &'static mut Utcb {
        native::utcb_at(self.utcb)
    }

    fn call(&self, words: &[u64]) -> Result<&'static mut Utcb, Status> {
        let u = self.utcb();
        u.words[..words.len()].copy_from_slice(words);
        u.untyped = words.len() as u32;
        u.typed = 0;
        syscall::call(native::cpu_portals(self.cpu) + native::CPU_PARENT)?;
        Ok(u)
    }

    /// Prints a line on the console.
    pub fn print(&self, args: core::fmt::Arguments) {
        native::print_at(self.utcb, format_args!("{args}\n"));
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    Quota,
    /// The roottask has no free block that large.
    PoolEmpty,
    Refused,
}

/// Backs `[va, va + 4096 << order)` with zeroed memory of our quota.
pub fn map(c: Caller, va: u64, order: u32, rights: u8) -> Result<(), MapError> {
    let u = c
        .call(&[parent::OP_MAP, va, order as u64, rights as u64])
        .map_err(|_| MapError::Refused)?;
    match u.words[0] {
        0 => Ok(()),
        2 => Err(MapError::Quota),
        3 => Err(MapError::PoolEmpty),
        _ => Err(MapError::Refused),
    }
}

/// Gives the memory behind `[va, va + pages * 4096)` back.
pub fn unmap(c: Caller, va: u64, pages: u64) {
    let _ = c.call(&[parent::OP_UNMAP, va, pages]);
}

/// Maps boot module `name` read-only at `va`: (size, offset of its first byte).
pub fn rom(c: Caller, name: &str, va: u64) -> Option<(u64, u64)> {
    let n = parent::name_words(name);
    let u = c.call(&[parent::OP_ROM, n[0], n[1], n[2], n[3], va]).ok()?;
    (u.words[0] == 0).then(|| (u.words[1], u.words[2]))
}

/// (quota pages, used pages).
pub fn meminfo(c: Caller) -> (u64, u64) {
    match c.call(&[parent::OP_MEMINFO]) {
        Ok(u) if u.words[0] == 0 => (u.words[1], u.words[2]),
        _ => (0, 0),
    }
}

/// Ends the component with an exit code; does not return when it worked.
pub fn exit(c: Caller, code: i32) {
    let _ = c.call(&[parent::OP_EXIT, code as u32 as u64]);
}

/// Ends the component as crashed, for `why`.
pub fn crash(c: Caller, why: &str) {
    let bytes = why.as_bytes();
    let len = bytes.len().min(8 * 60);
    let mut words = [0u64; 62];
    words[0] = parent::OP_CRASH;
    words[1] = len as u64;
    for (i, chunk) in bytes[..len].chunks(8).enumerate() {
        let mut b = [0u8; 8];
        b[..chunk.len()].copy_from_slice(chunk);
        words[2 + i] = u64::from_le_bytes(b);
    }
    let _ = c.call(&words[..2 + len.div_ceil(8)]);
}

/// Console input for the terminal component: copies what arrived into `buf`.
pub fn terminal_read(c: Caller, buf: &mut [u8]) -> usize {
    let max = buf.len().min(8 * 400);
    match c.call(&[parent::OP_TERMINAL_READ, max as u64]) {
        Ok(u) if u.words[0] == 0 => {
            let n = (u.words[1] as usize).min(max);
            let bytes = u.words[2..].iter().flat_map(|w| w.to_le_bytes());
            for (d, b) in buf[..n].iter_mut().zip(bytes) {
                *d = b;
            }
            n
        }
        _ => 0,
    }
}
