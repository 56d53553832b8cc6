//! The Linux system calls of the program: decoded from the reflected register
//! state, answered with the process state and the `posix` crate's logic.
//!
//! Every call that is not served here answers ENOSYS and is reported once by
//! name; none hangs or answers wrongly in silence.

use crate::layout;
use crate::process::{self, Process};
use crate::roottask::{self, Caller};
use crate::thread::{self, After, Regs, Sels};
use crate::time;
use alloc::format;
use alloc::vec;
use alloc::vec::Vec;
use hyper_abi::{exc, syscall as hc, SmOp, Status};
use posix::futex;
use posix::memmap::Prot;
use posix::nr;
use posix::Errno;

type R = Result<u64, Errno>;

/// `struct utsname` field length.
const UTS_LEN: usize = 65;
/// Our tid/pid space: the process is pid 1.
const PID: u64 = 1;

const MAP_SHARED: u64 = 0x01;
const MAP_PRIVATE: u64 = 0x02;
const MAP_FIXED: u64 = 0x10;
const MAP_ANONYMOUS: u64 = 0x20;
const MAP_FIXED_NOREPLACE: u64 = 0x10_0000;

const CLONE_VM: u64 = 0x100;
const CLONE_THREAD: u64 = 0x10000;
const CLONE_SETTLS: u64 = 0x80000;
const CLONE_PARENT_SETTID: u64 = 0x100000;
const CLONE_CHILD_CLEARTID: u64 = 0x200000;
const CLONE_CHILD_SETTID: u64 = 0x1000000;

const PR_SET_NAME: u64 = 15;
const PR_GET_NAME: u64 = 16;

const ARCH_SET_FS: u64 = 0x1002;
const ARCH_GET_FS: u64 = 0x1003;

/// Handles system call `regs[RAX]` of the thread in `slot`; sets the result.
pub fn dispatch(c: Caller, slot: usize, regs: &mut Regs) -> After {
    let n = regs[exc::RAX];
    let a = [
        regs[exc::RDI],
        regs[exc::RSI],
        regs[exc::RDX],
        regs[exc::R8 + 2],
        regs[exc::R8],
        regs[exc::R8 + 1],
    ];
    let result = match n {
        nr::EXIT => return exit_thread(c, slot),
        nr::EXIT_GROUP => {
            exit_group(c, a[0] as i32);
            return After::End;
        }
        nr::CLONE => clone(c, slot, regs, a),
        nr::ARCH_PRCTL => match a[0] {
            ARCH_SET_FS if a[1] < posix::memmap::USER_END => {
                regs[exc::FS_BASE] = a[1];
                Ok(0)
            }
            ARCH_SET_FS => Err(Errno::EPERM),
            ARCH_GET_FS => {
                let fs = regs[exc::FS_BASE].to_le_bytes();
                process::with(c, |p| p.copy_out(c, a[1], &fs)).map(|_| 0)
            }
            _ => Err(Errno::EINVAL),
        },
        nr::FUTEX => futex(c, slot, a),
        nr::NANOSLEEP => {
            let req = process::with(c, |p| p.read_array::<16>(c, a[0]));
            match req.map(|r| time::from_timespec(&r)) {
                Ok(Some(ns)) => sleep(slot, ns),
                Ok(None) => Err(Errno::EINVAL),
                Err(e) => Err(e),
            }
        }
        nr::CLOCK_NANOSLEEP => clock_nanosleep(c, slot, a),
        nr::READ | nr::READV => loop {
            // a blocking read of the terminal waits for console input
            let (result, wait) = process::with(c, |p| {
                let fd = a[0] as i32;
                let r = serve(p, c, slot, n, a);
                let terminal = p.vfs.is_terminal(fd).unwrap_or(false)
                    && !p.vfs.nonblocking(fd).unwrap_or(true);
                (r, terminal && r == Err(Errno::EAGAIN))
            });
            if !wait || hc::sm_ctrl(native::TERMINAL_SM, SmOp::Down, 0).is_err() {
                break result;
            }
        },
        nr::SCHED_YIELD => Ok(0),
        hyper_abi::posix::SYSCALL_UTCB => Ok(layout::thread_utcb(slot)),
        hyper_abi::posix::SYSCALL_NEXT_THREAD => {
            process::with(c, |p| p.set_next_thread(slot, a[0], a[1]))
        }
        _ => process::with(c, |p| serve(p, c, slot, n, a)),
    };
    regs[exc::RAX] = match result {
        Ok(v) => v,
        Err(e) => e.to_return(),
    };
    After::Resume
}

/// The calls that run entirely under the process lock.
fn serve(p: &mut Process, c: Caller, slot: usize, n: u64, a: [u64; 6]) -> R {
    let fd = a[0] as i32;
    match n {
        nr::READ => read(p, c, fd, a[1], a[2], None),
        nr::PREAD64 => read(p, c, fd, a[1], a[2], Some(a[3] as i64)),
        nr::WRITE => write(p, c, fd, a[1], a[2], None),
        nr::PWRITE64 => write(p, c, fd, a[1], a[2], Some(a[3] as i64)),
        nr::READV | nr::WRITEV => vectored(p, c, n == nr::WRITEV, fd, a[1], a[2]),
        nr::OPEN => {
            let path = p.read_path(c, a[0])?;
            p.vfs
                .open(posix::vfs::AT_FDCWD, &path, a[1] as u32, a[2] as u32)
                .map(|f| f as u64)
        }
        nr::OPENAT => {
            let path = p.read_path(c, a[1])?;
            p.vfs
                .open(a[0] as i32, &path, a[2] as u32, a[3] as u32)
                .map(|f| f as u64)
        }
        nr::CLOSE => p.vfs.close(fd).map(|_| 0),
        nr::LSEEK => p.vfs.lseek(fd, a[1] as i64, a[2] as u32),
        nr::FSTAT => {
            let st = p.vfs.fstat(fd)?;
            put_stat(p, c, &st, a[1])
        }
        nr::STAT | nr::LSTAT => {
            let path = p.read_path(c, a[0])?;
            let st = p.vfs.stat_at(posix::vfs::AT_FDCWD, &path, 0)?;
            put_stat(p, c, &st, a[1])
        }
        nr::NEWFSTATAT => {
            let path = p.read_path(c, a[1])?;
            let st = p.vfs.stat_at(fd, &path, a[3] as u32)?;
            put_stat(p, c, &st, a[2])
        }
        nr::STATX => {
            let path = p.read_path(c, a[1])?;
            let st = p.vfs.stat_at(fd, &path, a[2] as u32 & !0x6000)?;
            let mut buf = vec![0u8; 256];
            st.write_statx(&mut buf)?;
            p.copy_out(c, a[4], &buf).map(|_| 0)
        }
        nr::GETDENTS64 => {
            let mut buf = vec![0u8; (a[2] as usize).min(1 << 16)];
            let n = p.vfs.getdents64(fd, &mut buf)?;
            p.copy_out(c, a[1], &buf[..n]).map(|_| n as u64)
        }
        nr::FCNTL => p.vfs.fcntl(fd, a[1] as u32, a[2]).map(|v| v as u64),
        nr::DUP => p.vfs.dup(fd).map(|f| f as u64),
        nr::DUP2 => p.vfs.dup2(fd, a[1] as i32).map(|f| f as u64),
        nr::DUP3 => p.vfs.dup3(fd, a[1] as i32, a[2] as u32).map(|f| f as u64),
        nr::FTRUNCATE => p.vfs.ftruncate(fd, a[1] as i64).map(|_| 0),
        nr::TRUNCATE => {
            let path = p.read_path(c, a[0])?;
            p.vfs.truncate(&path, a[1] as i64).map(|_| 0)
        }
        nr::FSYNC | nr::FDATASYNC => p.vfs.fsync(fd).map(|_| 0),
        nr::GETCWD => {
            let mut cwd = p.vfs.getcwd().into_bytes();
            cwd.push(0);
            if cwd.len() as u64 > a[1] {
                return Err(Errno::ERANGE);
            }
            p.copy_out(c, a[0], &cwd).map(|_| cwd.len() as u64)
        }
        nr::CHDIR => {
            let path = p.read_path(c, a[0])?;
            p.vfs.chdir(&path).map(|_| 0)
        }
        nr::FCHDIR => p.vfs.fchdir(fd).map(|_| 0),
        nr::ACCESS => {
            let path = p.read_path(c, a[0])?;
            p.vfs
                .access(posix::vfs::AT_FDCWD, &path, a[1] as u32, 0)
                .map(|_| 0)
        }
        nr::FACCESSAT | nr::FACCESSAT2 => {
            let path = p.read_path(c, a[1])?;
            let flags = if n == nr::FACCESSAT2 { a[3] as u32 } else { 0 };
            p.vfs.access(fd, &path, a[2] as u32, flags).map(|_| 0)
        }
        nr::READLINK => {
            let path = p.read_path(c, a[0])?;
            p.vfs
                .readlink(posix::vfs::AT_FDCWD, &path)
                .map(|n| n as u64)
        }
        nr::READLINKAT => {
            let path = p.read_path(c, a[1])?;
            p.vfs.readlink(fd, &path).map(|n| n as u64)
        }
        nr::MKDIR => {
            let path = p.read_path(c, a[0])?;
            p.vfs
                .mkdir(posix::vfs::AT_FDCWD, &path, a[1] as u32)
                .map(|_| 0)
        }
        nr::MKDIRAT => {
            let path = p.read_path(c, a[1])?;
            p.vfs.mkdir(fd, &path, a[2] as u32).map(|_| 0)
        }
        nr::UNLINK => {
            let path = p.read_path(c, a[0])?;
            p.vfs.unlink(&path).map(|_| 0)
        }
        nr::RMDIR => {
            let path = p.read_path(c, a[0])?;
            p.vfs.rmdir(&path).map(|_| 0)
        }
        nr::UNLINKAT => {
            let path = p.read_path(c, a[1])?;
            p.vfs.unlink_at(fd, &path, a[2] as u32).map(|_| 0)
        }
        nr::RENAME => {
            let from = p.read_path(c, a[0])?;
            let to = p.read_path(c, a[1])?;
            let cwd = posix::vfs::AT_FDCWD;
            p.vfs.rename(cwd, &from, cwd, &to, 0).map(|_| 0)
        }
        nr::RENAMEAT | nr::RENAMEAT2 => {
            let from = p.read_path(c, a[1])?;
            let to = p.read_path(c, a[3])?;
            let flags = if n == nr::RENAMEAT2 { a[4] as u32 } else { 0 };
            p.vfs.rename(fd, &from, a[2] as i32, &to, flags).map(|_| 0)
        }
        nr::IOCTL => {
            p.vfs.fstat(fd)?;
            Err(Errno::ENOTTY)
        }
        nr::POLL => poll(p, c, a[0], a[1]),
        nr::MMAP => mmap(p, c, a),
        nr::MUNMAP => {
            let released = p.mem.unmap(a[0], a[1])?;
            p.release(c, released);
            Ok(0)
        }
        nr::MPROTECT => {
            let prot = Prot::from_linux(a[2])?;
            let released = p.mem.protect(a[0], a[1], prot)?;
            p.release(c, released);
            Ok(0)
        }
        nr::MADVISE => match a[2] {
            // DONTNEED and FREE: the contents may go (they read as zero again)
            4 | 8 => {
                let released = p.mem.discard(a[0], a[1])?;
                p.release(c, released);
                Ok(0)
            }
            _ => Ok(0),
        },
        nr::BRK => {
            let b = p.mem.brk(a[0]);
            p.release(c, b.released);
            Ok(b.brk)
        }
        nr::RT_SIGACTION => {
            let sig = a[0] as usize;
            if sig == 0 || sig >= p.sigactions.len() || sig == 9 || sig == 19 {
                return Err(Errno::EINVAL);
            }
            let old = p.sigactions[sig];
            if a[1] != 0 {
                p.sigactions[sig] = p.read_array::<32>(c, a[1])?;
            }
            if a[2] != 0 {
                p.copy_out(c, a[2], &old)?;
            }
            Ok(0)
        }
        nr::RT_SIGPROCMASK => {
            let t = p.threads[slot].as_mut().ok_or(Errno::ESRCH)?;
            let old = t.sigmask;
            if a[1] != 0 {
                let set = u64::from_le_bytes(p.read_array::<8>(c, a[1])?);
                let t = p.threads[slot].as_mut().ok_or(Errno::ESRCH)?;
                t.sigmask = match a[0] {
                    0 => old | set,
                    1 => old & !set,
                    2 => set,
                    _ => return Err(Errno::EINVAL),
                };
            }
            if a[2] != 0 {
                p.copy_out(c, a[2], &old.to_le_bytes())?;
            }
            Ok(0)
        }
        nr::SIGALTSTACK => {
            if a[1] != 0 {
                // ss_sp = 0, ss_flags = SS_DISABLE, ss_size = 0
                let mut old = [0u8; 24];
                old[8] = 2;
                p.copy_out(c, a[1], &old)?;
            }
            Ok(0)
        }
        nr::KILL | nr::TKILL | nr::TGKILL => {
            let sig = if n == nr::TGKILL { a[2] } else { a[1] };
            signal(p, c, sig)
        }
        nr::GETPID | nr::GETPGRP | nr::GETSID | nr::GETPGID => Ok(PID),
        nr::GETPPID => Ok(0),
        nr::GETTID => p.threads[slot]
            .as_ref()
            .map(|t| t.tid as u64)
            .ok_or(Errno::ESRCH),
        nr::SET_TID_ADDRESS => {
            let t = p.threads[slot].as_mut().ok_or(Errno::ESRCH)?;
            t.clear_child_tid = a[0];
            Ok(t.tid as u64)
        }
        nr::SET_ROBUST_LIST => Ok(0),
        nr::GETUID | nr::GETEUID | nr::GETGID | nr::GETEGID => Ok(0),
        nr::UMASK => Ok(0o022),
        nr::UNAME => uname(p, c, a[0]),
        nr::SYSINFO => sysinfo(p, c, a[0]),
        nr::GETRLIMIT => rlimit(p, c, a[0], a[1]),
        nr::PRLIMIT64 => {
            if a[3] != 0 {
                rlimit(p, c, a[1], a[3])?;
            }
            Ok(0)
        }
        nr::CLOCK_GETTIME => {
            let ns = time::now_ns(a[0]).ok_or(Errno::EINVAL)?;
            p.copy_out(c, a[1], &time::timespec(ns)).map(|_| 0)
        }
        nr::CLOCK_GETRES => {
            time::now_ns(a[0]).ok_or(Errno::EINVAL)?;
            if a[1] != 0 {
                p.copy_out(c, a[1], &time::timespec(1))?;
            }
            Ok(0)
        }
        nr::GETTIMEOFDAY => {
            let ns = time::realtime_ns();
            let mut tv = [0u8; 16];
            tv[..8].copy_from_slice(&(ns / 1_000_000_000).to_le_bytes());
            tv[8..].copy_from_slice(&((ns % 1_000_000_000) / 1000).to_le_bytes());
            if a[0] != 0 {
                p.copy_out(c, a[0], &tv)?;
            }
            Ok(0)
        }
        nr::TIME => {
            let s = time::realtime_ns() / 1_000_000_000;
            if a[0] != 0 {
                p.copy_out(c, a[0], &s.to_le_bytes())?;
            }
            Ok(s)
        }
        nr::GETRANDOM => {
            let len = (a[1] as usize).min(1 << 20);
            let bytes = random_bytes(len);
            p.copy_out(c, a[0], &bytes).map(|_| len as u64)
        }
        nr::SCHED_GETAFFINITY => {
            let mut mask = 0u64;
            for &cpu in &p.cpus {
                mask |= 1 << cpu;
            }
            let size = (a[1] as usize).min(8);
            if size < 8 && mask >> (8 * size) != 0 {
                return Err(Errno::EINVAL);
            }
            p.copy_out(c, a[2], &mask.to_le_bytes()[..size])?;
            Ok(size as u64)
        }
        nr::SCHED_SETAFFINITY => {
            let size = (a[1] as usize).min(8);
            let mut m = [0u8; 8];
            m[..size].copy_from_slice(&p.copy_in(c, a[2], size)?);
            let mask = u64::from_le_bytes(m);
            let cpu = p.threads[slot].as_ref().map(|t| t.cpu).unwrap_or(0);
            if mask & (1 << cpu) != 0 {
                Ok(0)
            } else {
                p.unsupported(c, n, "EINVAL (threads stay on the CPU they started on)");
                Err(Errno::EINVAL)
            }
        }
        nr::PRCTL => match a[0] {
            PR_SET_NAME => {
                let mut name = [0u8; 16];
                for (i, d) in name.iter_mut().take(15).enumerate() {
                    *d = p.copy_in(c, a[1] + i as u64, 1)?[0];
                    if *d == 0 {
                        break;
                    }
                }
                let t = p.threads[slot].as_mut().ok_or(Errno::ESRCH)?;
                t.name = name;
                Ok(0)
            }
            PR_GET_NAME => {
                let name = p.threads[slot].as_ref().ok_or(Errno::ESRCH)?.name;
                p.copy_out(c, a[1], &name).map(|_| 0)
            }
            _ => {
                p.unsupported(c, n, "EINVAL (only PR_SET_NAME and PR_GET_NAME)");
                Err(Errno::EINVAL)
            }
        },
        nr::GETCPU => {
            let cpu = p.threads[slot].as_ref().map(|t| t.cpu).unwrap_or(0);
            for addr in [a[0], a[1]] {
                if addr != 0 {
                    p.copy_out(c, addr, &cpu.to_le_bytes())?;
                }
            }
            Ok(0)
        }
        nr::MREMAP => {
            p.unsupported(c, n, "ENOMEM (callers fall back to copying)");
            Err(Errno::ENOMEM)
        }
        _ => {
            p.unsupported(c, n, "ENOSYS");
            Err(Errno::ENOSYS)
        }
    }
}

fn put_stat(p: &mut Process, c: Caller, st: &posix::vfs::Stat, addr: u64) -> R {
    let mut buf = [0u8; 144];
    st.write_stat(&mut buf)?;
    p.copy_out(c, addr, &buf).map(|_| 0)
}

/// Largest single read or write we copy at once.
const IO_CHUNK: u64 = 1 << 20;

/// Most bytes one `read` or `write` moves, as on Linux.
const IO_MAX: u64 = 0x7fff_f000;

/// Reads in chunks of [`IO_CHUNK`] until `len` bytes or a short chunk (end of
/// file, a terminal with less input): a regular file gives all that was
/// asked for in one call, as on Linux (callers such as vm-memory rely on it).
fn read(p: &mut Process, c: Caller, fd: i32, addr: u64, len: u64, at: Option<i64>) -> R {
    let len = len.min(IO_MAX);
    let mut buf = vec![0u8; len.min(IO_CHUNK) as usize];
    let mut done = 0;
    while done < len {
        let chunk = (len - done).min(IO_CHUNK) as usize;
        p.touch(c, addr + done, chunk as u64, true)?;
        let got = match at {
            Some(off) => p.vfs.pread(fd, &mut buf[..chunk], off + done as i64),
            None => p.vfs.read(fd, &mut buf[..chunk]),
        };
        let n = match got {
            Ok(n) => n,
            Err(e) if done == 0 => return Err(e),
            Err(_) => break,
        };
        p.copy_out(c, addr + done, &buf[..n])?;
        done += n as u64;
        if n < chunk {
            break;
        }
    }
    Ok(done)
}

/// Writes in chunks of [`IO_CHUNK`] until `len` bytes or a short write.
fn write(p: &mut Process, c: Caller, fd: i32, addr: u64, len: u64, at: Option<i64>) -> R {
    let len = len.min(IO_MAX);
    let mut done = 0;
    while done < len {
        let chunk = (len - done).min(IO_CHUNK) as usize;
        let data = p.copy_in(c, addr + done, chunk)?;
        let put = match at {
            Some(off) => p.vfs.pwrite(fd, &data, off + done as i64),
            None => p.vfs.write(fd, &data),
        };
        let n = match put {
            Ok(n) => n,
            Err(e) if done == 0 => return Err(e),
            Err(_) => break,
        };
        done += n as u64;
        if n < chunk {
            break;
        }
    }
    Ok(done)
}

fn vectored(p: &mut Process, c: Caller, out: bool, fd: i32, iov: u64, count: u64) -> R {
    if count > 1024 {
        return Err(Errno::EINVAL);
    }
    let table = p.copy_in(c, iov, count as usize * 16)?;
    let mut total = 0u64;
    for e in table.chunks(16) {
        let base = u64::from_le_bytes(e[..8].try_into().expect("8 bytes"));
        let len = u64::from_le_bytes(e[8..].try_into().expect("8 bytes"));
        if len == 0 {
            continue;
        }
        let n = if out {
            write(p, c, fd, base, len, None)
        } else {
            read(p, c, fd, base, len, None)
        };
        match n {
            Ok(n) => {
                total += n;
                if n < len {
                    break;
                }
            }
            Err(e) if total == 0 => return Err(e),
            Err(_) => break,
        }
    }
    Ok(total)
}

fn poll(p: &mut Process, c: Caller, fds: u64, count: u64) -> R {
    if count > 1024 {
        return Err(Errno::EINVAL);
    }
    let mut table = p.copy_in(c, fds, count as usize * 8)?;
    let mut ready = 0;
    for e in table.chunks_mut(8) {
        let fd = i32::from_le_bytes(e[..4].try_into().expect("4 bytes"));
        let events = u16::from_le_bytes([e[4], e[5]]);
        let revents: u16 = if fd < 0 {
            0
        } else if p.vfs.fstat(fd).is_err() {
            0x20 // POLLNVAL
        } else {
            events & (0x1 | 0x4) // POLLIN, POLLOUT: files are always ready
        };
        e[6..8].copy_from_slice(&revents.to_le_bytes());
        ready += (revents != 0) as u64;
    }
    p.copy_out(c, fds, &table).map(|_| ready)
}

fn mmap(p: &mut Process, c: Caller, a: [u64; 6]) -> R {
    let (addr, len, prot, flags, fd, offset) = (a[0], a[1], a[2], a[3], a[4] as i32, a[5]);
    let prot = Prot::from_linux(prot)?;
    if flags & (MAP_SHARED | MAP_PRIVATE) == 0 || !offset.is_multiple_of(4096) {
        return Err(Errno::EINVAL);
    }
    let fixed = flags & (MAP_FIXED | MAP_FIXED_NOREPLACE) != 0;
    if flags & MAP_FIXED_NOREPLACE != 0 && p.mem.region_at(addr).is_some() {
        return Err(Errno::EEXIST);
    }
    let anonymous = flags & MAP_ANONYMOUS != 0;
    if !anonymous {
        // a private copy of the file's bytes: read them now
        if flags & MAP_SHARED != 0 && prot.contains(Prot::WRITE) {
            p.unsupported(c, nr::MMAP, "ENODEV for a shared writable file mapping");
            return Err(Errno::ENODEV);
        }
        p.vfs.fstat(fd)?;
    }
    let mapped = p.mem.map(addr, len, prot, fixed)?;
    p.release(c, mapped.released);
    if !anonymous {
        let writable = prot | Prot::WRITE;
        p.mem.protect(mapped.addr, len, writable)?;
        let mut done = 0;
        while done < len {
            let n = read(
                p,
                c,
                fd,
                mapped.addr + done,
                (len - done).min(IO_CHUNK),
                Some((offset + done) as i64),
            )?;
            if n == 0 {
                break;
            }
            done += n;
        }
        let released = p.mem.protect(mapped.addr, len, prot)?;
        p.release(c, released);
    }
    Ok(mapped.addr)
}

fn uname(p: &mut Process, c: Caller, addr: u64) -> R {
    let mut buf = vec![0u8; UTS_LEN * 6];
    let fields = [
        "Linux",
        p.name.as_str(),
        "6.1.0-tern",
        "#1 Tern",
        "x86_64",
        "(none)",
    ];
    for (i, f) in fields.iter().enumerate() {
        let n = f.len().min(UTS_LEN - 1);
        buf[i * UTS_LEN..i * UTS_LEN + n].copy_from_slice(&f.as_bytes()[..n]);
    }
    p.copy_out(c, addr, &buf).map(|_| 0)
}

fn sysinfo(p: &mut Process, c: Caller, addr: u64) -> R {
    let (quota, used) = roottask::meminfo(c);
    let mut b = [0u8; 112];
    let put = |b: &mut [u8], off: usize, v: u64| b[off..off + 8].copy_from_slice(&v.to_le_bytes());
    put(&mut b, 0, time::monotonic_ns() / 1_000_000_000);
    put(&mut b, 32, quota * 4096);
    put(&mut b, 40, quota.saturating_sub(used) * 4096);
    b[80..82].copy_from_slice(&(p.live_threads() as u16).to_le_bytes());
    b[104..108].copy_from_slice(&1u32.to_le_bytes());
    p.copy_out(c, addr, &b).map(|_| 0)
}

fn rlimit(p: &mut Process, c: Caller, resource: u64, addr: u64) -> R {
    const INFINITY: u64 = u64::MAX;
    let (cur, max) = match resource {
        3 => (layout::STACK_SIZE, layout::STACK_SIZE), // RLIMIT_STACK
        7 => (posix::vfs::MAX_FDS as u64, posix::vfs::MAX_FDS as u64), // RLIMIT_NOFILE
        0..=15 => (INFINITY, INFINITY),
        _ => return Err(Errno::EINVAL),
    };
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&cur.to_le_bytes());
    b[8..].copy_from_slice(&max.to_le_bytes());
    p.copy_out(c, addr, &b).map(|_| 0)
}

const SIGNAL_NAMES: [&str; 32] = [
    "0",
    "SIGHUP",
    "SIGINT",
    "SIGQUIT",
    "SIGILL",
    "SIGTRAP",
    "SIGABRT",
    "SIGBUS",
    "SIGFPE",
    "SIGKILL",
    "SIGUSR1",
    "SIGSEGV",
    "SIGUSR2",
    "SIGPIPE",
    "SIGALRM",
    "SIGTERM",
    "SIGSTKFLT",
    "SIGCHLD",
    "SIGCONT",
    "SIGSTOP",
    "SIGTSTP",
    "SIGTTIN",
    "SIGTTOU",
    "SIGURG",
    "SIGXCPU",
    "SIGXFSZ",
    "SIGVTALRM",
    "SIGPROF",
    "SIGWINCH",
    "SIGIO",
    "SIGPWR",
    "SIGSYS",
];

/// A signal sent to the process itself: signal handlers are not run, so a
/// signal whose default action ends the process ends it (reported as a crash).
fn signal(p: &mut Process, c: Caller, sig: u64) -> R {
    match sig {
        0 => Ok(0),
        // default action "ignore"
        17 | 18 | 23 | 28 => Ok(0),
        1..=64 => {
            let name = SIGNAL_NAMES
                .get(sig as usize)
                .copied()
                .unwrap_or("a real-time signal");
            p.vfs.flush_logs();
            let why = if sig == 6 {
                format!("killed by signal {name} (abort)")
            } else {
                format!("killed by signal {name}")
            };
            roottask::crash(c, &why);
            Ok(0)
        }
        _ => Err(Errno::EINVAL),
    }
}

/// Bytes from the CPU's random number generator (RDSEED, else RDRAND).
fn random_bytes(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&crate::cpu::random_u64().to_le_bytes());
    }
    out.truncate(len);
    out
}

fn sleep(slot: usize, ns: u64) -> R {
    if ns == 0 {
        return Ok(0);
    }
    let us = ns.div_ceil(1000);
    match hc::sm_ctrl(Sels::of(slot).sleep_sm(), SmOp::Down, us) {
        Ok(_) | Err(Status::Timeout) => Ok(0),
        Err(_) => Err(Errno::EINTR),
    }
}

fn clock_nanosleep(c: Caller, slot: usize, a: [u64; 6]) -> R {
    let req = process::with(c, |p| p.read_array::<16>(c, a[2]))?;
    let ns = time::from_timespec(&req).ok_or(Errno::EINVAL)?;
    let now = time::now_ns(a[0]).ok_or(Errno::EINVAL)?;
    let wait = if a[1] & 1 != 0 {
        ns.saturating_sub(now)
    } else {
        ns
    };
    sleep(slot, wait)
}

/// How long a futex wait that a wake released waits for that wake's up.
const ABSORB_UP_US: u64 = 100_000;

fn futex(c: Caller, slot: usize, a: [u64; 6]) -> R {
    let (addr, op, val) = (a[0], a[1] as u32, a[2] as u32);
    let cmd = op & futex::FUTEX_CMD_MASK;
    match cmd {
        futex::FUTEX_WAIT | futex::FUTEX_WAIT_BITSET => {
            let bitset = if cmd == futex::FUTEX_WAIT {
                futex::BITSET_MATCH_ANY
            } else {
                a[5] as u32
            };
            if bitset == 0 || addr % 4 != 0 {
                return Err(Errno::EINVAL);
            }
            // the wait's timeout, as a deadline in monotonic nanoseconds
            let deadline = process::with(c, |p| {
                if a[3] == 0 {
                    return Ok(None);
                }
                let ts = p.read_array::<16>(c, a[3])?;
                let ns = time::from_timespec(&ts).ok_or(Errno::EINVAL)?;
                Ok(Some(if cmd == futex::FUTEX_WAIT {
                    time::monotonic_ns().saturating_add(ns)
                } else if op & futex::FUTEX_CLOCK_REALTIME != 0 {
                    let now = time::realtime_ns();
                    time::monotonic_ns().saturating_add(ns.saturating_sub(now))
                } else {
                    ns
                }))
            })?;
            process::with(c, |p| {
                if p.read_u32(c, addr)? != val {
                    return Err(Errno::EAGAIN);
                }
                p.futex.wait(addr, slot, bitset)
            })?;
            let sm = Sels::of(slot).futex_sm();
            let how = match deadline.map(|d| d.saturating_sub(time::monotonic_ns())) {
                Some(0) => futex::Unblocked::TimedOut,
                left => match hc::sm_ctrl(sm, SmOp::Down, left.map_or(0, |ns| ns.div_ceil(1000))) {
                    Ok(_) => futex::Unblocked::Up,
                    Err(Status::Timeout) => futex::Unblocked::TimedOut,
                    Err(_) => futex::Unblocked::Interrupted,
                },
            };
            let end = process::with(c, |p| p.futex.end_wait(slot, how));
            if end.absorb_up {
                // The wake that released us ups the semaphore once it has
                // left the process lock: take that up now. Bounded, in case
                // the waker died in between; an up left behind costs one
                // spurious wakeup, since end_wait always leaves the queue.
                let _ = hc::sm_ctrl(sm, SmOp::Down, ABSORB_UP_US);
            }
            end.result.map(|()| 0)
        }
        futex::FUTEX_WAKE | futex::FUTEX_WAKE_BITSET => {
            let bitset = if cmd == futex::FUTEX_WAKE {
                futex::BITSET_MATCH_ANY
            } else {
                a[5] as u32
            };
            if bitset == 0 {
                return Err(Errno::EINVAL);
            }
            let woken = process::with(c, |p| p.futex.wake(addr, val as usize, bitset));
            for &w in &woken {
                let _ = hc::sm_ctrl(Sels::of(w).futex_sm(), SmOp::Up, 0);
            }
            Ok(woken.len() as u64)
        }
        futex::FUTEX_REQUEUE | futex::FUTEX_CMP_REQUEUE => {
            let (n_requeue, addr2, expected) = (a[3] as usize, a[4], a[5] as u32);
            let (woken, moved) = process::with(c, |p| {
                if cmd == futex::FUTEX_CMP_REQUEUE && p.read_u32(c, addr)? != expected {
                    return Err(Errno::EAGAIN);
                }
                Ok(p.futex.requeue(addr, addr2, val as usize, n_requeue))
            })?;
            for &w in &woken {
                let _ = hc::sm_ctrl(Sels::of(w).futex_sm(), SmOp::Up, 0);
            }
            Ok((woken.len() + moved) as u64)
        }
        _ => {
            process::with(c, |p| {
                p.unsupported(c, nr::FUTEX, "ENOSYS for this operation")
            });
            Err(Errno::ENOSYS)
        }
    }
}

fn clone(c: Caller, slot: usize, regs: &Regs, a: [u64; 6]) -> R {
    let (flags, stack, ptid, ctid, tls) = (a[0], a[1], a[2], a[3], a[4]);
    if flags & (CLONE_VM | CLONE_THREAD) != (CLONE_VM | CLONE_THREAD) {
        process::with(c, |p| {
            p.unsupported(c, nr::CLONE, "ENOSYS for new processes (only threads)")
        });
        return Err(Errno::ENOSYS);
    }
    let mut child = *regs;
    child[exc::RAX] = 0;
    if stack != 0 {
        child[exc::RSP] = stack;
    }
    if flags & CLONE_SETTLS != 0 {
        child[exc::FS_BASE] = tls;
    }
    process::with(c, |p| {
        let place = p.place_new_thread(slot);
        // the tid is written before the child can run: it starts only when
        // `spawn` gives it its scheduling context, after the state is set
        let (child_slot, tid) = thread::spawn(p, c, &child, place)?;
        if flags & CLONE_CHILD_CLEARTID != 0 {
            if let Some(t) = p.threads[child_slot].as_mut() {
                t.clear_child_tid = ctid;
            }
        }
        if flags & CLONE_PARENT_SETTID != 0 {
            p.copy_out(c, ptid, &(tid as u32).to_le_bytes())?;
        }
        if flags & CLONE_CHILD_SETTID != 0 {
            p.copy_out(c, ctid, &(tid as u32).to_le_bytes())?;
        }
        Ok(tid as u64)
    })
}

fn exit_thread(c: Caller, slot: usize) -> After {
    let last = process::with(c, |p| {
        let ctid = p.threads[slot]
            .as_ref()
            .map(|t| t.clear_child_tid)
            .unwrap_or(0);
        if ctid != 0 && p.copy_out(c, ctid, &0u32.to_le_bytes()).is_ok() {
            for w in p.futex.wake(ctid, 1, futex::BITSET_MATCH_ANY) {
                let _ = hc::sm_ctrl(Sels::of(w).futex_sm(), SmOp::Up, 0);
            }
        }
        if let Some(t) = p.threads[slot].as_mut() {
            t.alive = false;
        }
        p.live_threads() == 0
    });
    if last {
        exit_group(c, 0);
    }
    After::End
}

fn exit_group(c: Caller, code: i32) {
    process::with(c, |p| p.vfs.flush_logs());
    roottask::exit(c, code);
}
