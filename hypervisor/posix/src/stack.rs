//! The initial stack of a static x86_64 Linux program.
//!
//! Owns: the bytes a program finds at RSP when it starts, as the System V
//! x86_64 ABI and Linux lay them out:
//!
//! ```text
//! RSP ->  argc
//!         argv[0] ... argv[argc-1], 0
//!         envp[0] ... envp[n-1], 0
//!         auxv pairs (type, value) ..., (AT_NULL, 0)
//!         padding
//!         AT_RANDOM bytes, "x86_64" (AT_PLATFORM), argument and environment
//!         strings, the AT_EXECFN string            <- top of the buffer
//! ```
//!
//! RSP is 16-byte aligned. Must not touch: memory other than the caller's
//! buffer; the caller maps the buffer at `buffer_va` in the program's address
//! space.

use core::fmt;

/// Auxiliary vector entry types (Linux `AT_*`).
pub const AT_NULL: u64 = 0;
pub const AT_PHDR: u64 = 3;
pub const AT_PHENT: u64 = 4;
pub const AT_PHNUM: u64 = 5;
pub const AT_PAGESZ: u64 = 6;
pub const AT_BASE: u64 = 7;
pub const AT_FLAGS: u64 = 8;
pub const AT_ENTRY: u64 = 9;
pub const AT_UID: u64 = 11;
pub const AT_EUID: u64 = 12;
pub const AT_GID: u64 = 13;
pub const AT_EGID: u64 = 14;
pub const AT_PLATFORM: u64 = 15;
pub const AT_HWCAP: u64 = 16;
pub const AT_CLKTCK: u64 = 17;
pub const AT_SECURE: u64 = 23;
pub const AT_RANDOM: u64 = 25;
pub const AT_HWCAP2: u64 = 26;
pub const AT_EXECFN: u64 = 31;

/// What the program is told about itself and its start.
#[derive(Debug, Clone)]
pub struct InitialProcess<'a> {
    /// Program arguments; `args[0]` is the program's name by convention.
    pub args: &'a [&'a str],
    /// Environment entries, each `NAME=value`.
    pub env: &'a [&'a str],
    /// Where the program headers are in the program's memory (AT_PHDR).
    pub phdr: u64,
    /// Size of one program header (AT_PHENT, 56 for ELF64).
    pub phent: u64,
    /// Number of program headers (AT_PHNUM).
    pub phnum: u64,
    /// Entry point (AT_ENTRY).
    pub entry: u64,
    /// 16 random bytes (AT_RANDOM: stack protector and pointer guard seeds).
    pub random: [u8; 16],
    /// CPUID.1:EDX (AT_HWCAP).
    pub hwcap: u64,
    /// The path the program was started as (AT_EXECFN).
    pub execfn: &'a str,
    /// User and group ids (AT_UID, AT_EUID, AT_GID, AT_EGID).
    pub uid: u32,
    pub gid: u32,
}

/// Clock ticks per second reported in AT_CLKTCK (Linux's USER_HZ).
pub const CLOCK_TICKS: u64 = 100;
/// The page size reported in AT_PAGESZ.
pub const PAGE_SIZE: u64 = 4096;

/// Why the stack could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StackError {
    /// The buffer is too small: it needs at least this many bytes.
    TooSmall { needed: usize },
    /// A string contains a NUL byte, which would cut it short.
    NulInString,
    /// `buffer_va + buffer.len()` overflows.
    BadAddress,
}

impl fmt::Display for StackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StackError::TooSmall { needed } => write!(
                f,
                "the initial stack needs {needed} bytes for arguments and environment: give the stack buffer more room or shorten them"
            ),
            StackError::NulInString => {
                write!(f, "an argument or environment entry contains a NUL byte: remove it")
            }
            StackError::BadAddress => write!(
                f,
                "the stack buffer must end below 2^64"
            ),
        }
    }
}

const PLATFORM: &str = "x86_64";

/// Writes the initial stack into the top of `buffer`, which the program will
/// see at virtual address `buffer_va`. Returns the initial RSP (a virtual
/// address inside the buffer, 16-byte aligned, pointing at argc). Bytes of
/// the buffer below RSP are left as they were.
pub fn build(buffer: &mut [u8], buffer_va: u64, p: &InitialProcess<'_>) -> Result<u64, StackError> {
    if buffer_va.checked_add(buffer.len() as u64).is_none() {
        return Err(StackError::BadAddress);
    }
    let strings = p.args.iter().chain(p.env.iter()).chain([&p.execfn]);
    let mut string_bytes = PLATFORM.len() + 1 + p.random.len();
    for s in strings {
        if s.as_bytes().contains(&0) {
            return Err(StackError::NulInString);
        }
        string_bytes += s.len() + 1;
    }
    let auxv = auxv_entries(p, 0, 0, 0);
    let words = 1 + p.args.len() + 1 + p.env.len() + 1 + 2 * auxv.len();
    let vectors = words * 8;
    let needed = string_bytes + vectors + 15;
    let too_small = StackError::TooSmall { needed };
    let lowest = buffer
        .len()
        .checked_sub(string_bytes + vectors)
        .ok_or(too_small)?;
    let rsp_va = (buffer_va + lowest as u64) & !15;
    if rsp_va < buffer_va {
        return Err(too_small);
    }
    let rsp_off = (rsp_va - buffer_va) as usize;
    let strings_start = buffer.len() - string_bytes;

    // Strings, from the top down: execfn last (highest), as Linux does.
    let mut cursor = buffer.len();
    let mut put = |buffer: &mut [u8], bytes: &[u8], nul: bool| -> u64 {
        let len = bytes.len() + usize::from(nul);
        cursor -= len;
        buffer[cursor..cursor + bytes.len()].copy_from_slice(bytes);
        if nul {
            buffer[cursor + bytes.len()] = 0;
        }
        buffer_va + cursor as u64
    };
    let execfn_va = put(buffer, p.execfn.as_bytes(), true);
    let mut env_va = alloc::vec::Vec::with_capacity(p.env.len());
    for e in p.env.iter().rev() {
        env_va.push(put(buffer, e.as_bytes(), true));
    }
    env_va.reverse();
    let mut arg_va = alloc::vec::Vec::with_capacity(p.args.len());
    for a in p.args.iter().rev() {
        arg_va.push(put(buffer, a.as_bytes(), true));
    }
    arg_va.reverse();
    let platform_va = put(buffer, PLATFORM.as_bytes(), true);
    let random_va = put(buffer, &p.random, false);

    let mut w = rsp_off;
    let mut word = |buffer: &mut [u8], v: u64| {
        buffer[w..w + 8].copy_from_slice(&v.to_le_bytes());
        w += 8;
    };
    word(buffer, p.args.len() as u64);
    for &a in &arg_va {
        word(buffer, a);
    }
    word(buffer, 0);
    for &e in &env_va {
        word(buffer, e);
    }
    word(buffer, 0);
    for (t, v) in auxv_entries(p, random_va, execfn_va, platform_va) {
        word(buffer, t);
        word(buffer, v);
    }
    // Zero the padding between the vectors and the strings.
    buffer[w..strings_start].fill(0);
    Ok(buffer_va + rsp_off as u64)
}

fn auxv_entries(
    p: &InitialProcess<'_>,
    random: u64,
    execfn: u64,
    platform: u64,
) -> [(u64, u64); 18] {
    [
        (AT_PHDR, p.phdr),
        (AT_PHENT, p.phent),
        (AT_PHNUM, p.phnum),
        (AT_PAGESZ, PAGE_SIZE),
        (AT_BASE, 0),
        (AT_FLAGS, 0),
        (AT_ENTRY, p.entry),
        (AT_UID, p.uid.into()),
        (AT_EUID, p.uid.into()),
        (AT_GID, p.gid.into()),
        (AT_EGID, p.gid.into()),
        (AT_SECURE, 0),
        (AT_HWCAP, p.hwcap),
        (AT_CLKTCK, CLOCK_TICKS),
        (AT_RANDOM, random),
        (AT_EXECFN, execfn),
        (AT_PLATFORM, platform),
        (AT_NULL, 0),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;
    use alloc::vec::Vec;

    /// What a program's start code reads back from its stack.
    struct Parsed {
        args: Vec<String>,
        env: Vec<String>,
        auxv: Vec<(u64, u64)>,
    }

    struct Reader<'a> {
        buf: &'a [u8],
        va: u64,
    }

    impl Reader<'_> {
        fn word(&self, addr: u64) -> u64 {
            let o = (addr - self.va) as usize;
            u64::from_le_bytes(self.buf[o..o + 8].try_into().unwrap())
        }
        fn string(&self, addr: u64) -> String {
            let o = (addr - self.va) as usize;
            let len = self.buf[o..].iter().position(|&b| b == 0).unwrap();
            String::from_utf8(self.buf[o..o + len].to_vec()).unwrap()
        }
        fn bytes(&self, addr: u64, n: usize) -> &[u8] {
            let o = (addr - self.va) as usize;
            &self.buf[o..o + n]
        }
        fn parse(&self, rsp: u64) -> Parsed {
            let argc = self.word(rsp);
            let mut at = rsp + 8;
            let mut args = Vec::new();
            for _ in 0..argc {
                args.push(self.string(self.word(at)));
                at += 8;
            }
            assert_eq!(self.word(at), 0, "argv ends with NULL");
            at += 8;
            let mut env = Vec::new();
            while self.word(at) != 0 {
                env.push(self.string(self.word(at)));
                at += 8;
            }
            at += 8;
            let mut auxv = Vec::new();
            loop {
                let (t, v) = (self.word(at), self.word(at + 8));
                auxv.push((t, v));
                at += 16;
                if t == AT_NULL {
                    break;
                }
            }
            Parsed { args, env, auxv }
        }
    }

    fn process<'a>(args: &'a [&'a str], env: &'a [&'a str]) -> InitialProcess<'a> {
        InitialProcess {
            args,
            env,
            phdr: 0x40_0040,
            phent: 56,
            phnum: 7,
            entry: 0x40_1000,
            random: *b"0123456789abcdef",
            hwcap: 0x178b_fbff,
            execfn: "/bin/test",
            uid: 0,
            gid: 0,
        }
    }

    fn aux(p: &Parsed, t: u64) -> u64 {
        p.auxv.iter().find(|(k, _)| *k == t).unwrap().1
    }

    #[test]
    fn layout_reads_back() {
        let mut buf = alloc::vec![0xaau8; 4096];
        let va = 0x7fff_0000_0000 - 4096;
        let args = ["test", "--flag", ""];
        let env = ["HOME=/", "RUST_BACKTRACE=1"];
        let rsp = build(&mut buf, va, &process(&args, &env)).unwrap();
        assert_eq!(rsp % 16, 0);
        assert!(rsp >= va && rsp < va + 4096);
        let r = Reader { buf: &buf, va };
        let p = r.parse(rsp);
        assert_eq!(p.args, ["test", "--flag", ""]);
        assert_eq!(p.env, ["HOME=/", "RUST_BACKTRACE=1"]);
        assert_eq!(aux(&p, AT_PHDR), 0x40_0040);
        assert_eq!(aux(&p, AT_PHENT), 56);
        assert_eq!(aux(&p, AT_PHNUM), 7);
        assert_eq!(aux(&p, AT_PAGESZ), 4096);
        assert_eq!(aux(&p, AT_ENTRY), 0x40_1000);
        assert_eq!(aux(&p, AT_HWCAP), 0x178b_fbff);
        assert_eq!(aux(&p, AT_CLKTCK), 100);
        assert_eq!(aux(&p, AT_SECURE), 0);
        assert_eq!(aux(&p, AT_UID), 0);
        assert_eq!(r.bytes(aux(&p, AT_RANDOM), 16), b"0123456789abcdef");
        assert_eq!(r.string(aux(&p, AT_EXECFN)), "/bin/test");
        assert_eq!(r.string(aux(&p, AT_PLATFORM)), "x86_64");
        assert_eq!(p.auxv.last(), Some(&(AT_NULL, 0)));
        // The strings sit at the top: the last byte is execfn's NUL.
        assert_eq!(buf[4095], 0);
        assert_eq!(buf[4095 - 9..4095], *b"/bin/test");
    }

    #[test]
    fn alignment_holds_for_every_shape() {
        for nargs in 0..4 {
            for extra in 0..17 {
                let arg = "x".repeat(extra);
                let args: Vec<&str> = (0..nargs).map(|_| arg.as_str()).collect();
                let mut buf = alloc::vec![0u8; 1024 + extra];
                let va = 0x1000_0000 + extra as u64;
                let rsp = build(&mut buf, va, &process(&args, &[])).unwrap();
                assert_eq!(rsp % 16, 0);
                let p = Reader { buf: &buf, va }.parse(rsp);
                assert_eq!(p.args.len(), nargs);
                assert!(p.env.is_empty());
            }
        }
    }

    #[test]
    fn errors() {
        let mut small = [0u8; 64];
        assert!(matches!(
            build(&mut small, 0x1000, &process(&["a"], &[])),
            Err(StackError::TooSmall { needed }) if needed > 64
        ));
        let mut buf = [0u8; 1024];
        assert_eq!(
            build(&mut buf, 0x1000, &process(&["a\0b"], &[])),
            Err(StackError::NulInString)
        );
        assert_eq!(
            build(&mut buf, u64::MAX - 100, &process(&["a"], &[])),
            Err(StackError::BadAddress)
        );
        // The reported need is enough.
        let Err(StackError::TooSmall { needed }) = build(&mut small, 0x1000, &process(&["a"], &[]))
        else {
            panic!("expected TooSmall");
        };
        let mut exact = alloc::vec![0u8; needed];
        assert!(build(&mut exact, 0x1000, &process(&["a"], &[])).is_ok());
    }
}
