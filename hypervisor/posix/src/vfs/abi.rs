//! Linux's x86_64 binary layouts of file metadata: `struct stat`,
//! `struct statx` and `struct linux_dirent64`, plus the flag values of the
//! file system calls.
//!
//! Owns: byte layouts and constants. Must not touch: the tree — [`Stat`] is
//! filled by the file system, serialised here.

use crate::Errno;

// open(2) flags.
pub const O_ACCMODE: u32 = 0o3;
pub const O_RDONLY: u32 = 0o0;
pub const O_WRONLY: u32 = 0o1;
pub const O_RDWR: u32 = 0o2;
pub const O_CREAT: u32 = 0o100;
pub const O_EXCL: u32 = 0o200;
pub const O_NOCTTY: u32 = 0o400;
pub const O_TRUNC: u32 = 0o1000;
pub const O_APPEND: u32 = 0o2000;
pub const O_NONBLOCK: u32 = 0o4000;
pub const O_LARGEFILE: u32 = 0o100000;
pub const O_DIRECTORY: u32 = 0o200000;
pub const O_NOFOLLOW: u32 = 0o400000;
pub const O_CLOEXEC: u32 = 0o2000000;
pub const O_PATH: u32 = 0o10000000;

// *at(2) arguments.
pub const AT_FDCWD: i32 = -100;
pub const AT_SYMLINK_NOFOLLOW: u32 = 0x100;
pub const AT_REMOVEDIR: u32 = 0x200;
pub const AT_EACCESS: u32 = 0x200;
pub const AT_EMPTY_PATH: u32 = 0x1000;
pub const RENAME_NOREPLACE: u32 = 1;
pub const RENAME_EXCHANGE: u32 = 2;

// fcntl(2) commands and descriptor flags.
pub const F_DUPFD: u32 = 0;
pub const F_GETFD: u32 = 1;
pub const F_SETFD: u32 = 2;
pub const F_GETFL: u32 = 3;
pub const F_SETFL: u32 = 4;
pub const F_GETLK: u32 = 5;
pub const F_SETLK: u32 = 6;
pub const F_SETLKW: u32 = 7;
pub const F_DUPFD_CLOEXEC: u32 = 1030;
pub const FD_CLOEXEC: u32 = 1;

// lseek(2) whence.
pub const SEEK_SET: u32 = 0;
pub const SEEK_CUR: u32 = 1;
pub const SEEK_END: u32 = 2;

// access(2) modes.
pub const F_OK: u32 = 0;
pub const X_OK: u32 = 1;
pub const W_OK: u32 = 2;
pub const R_OK: u32 = 4;

// poll(2) events.
pub const POLLIN: u16 = 0x1;
pub const POLLPRI: u16 = 0x2;
pub const POLLOUT: u16 = 0x4;
pub const POLLERR: u16 = 0x8;
pub const POLLHUP: u16 = 0x10;
pub const POLLNVAL: u16 = 0x20;
pub const POLLRDNORM: u16 = 0x40;
pub const POLLWRNORM: u16 = 0x100;

// File types in st_mode.
pub const S_IFMT: u32 = 0o170000;
pub const S_IFDIR: u32 = 0o040000;
pub const S_IFCHR: u32 = 0o020000;
pub const S_IFREG: u32 = 0o100000;

// d_type values of getdents64.
pub const DT_CHR: u8 = 2;
pub const DT_DIR: u8 = 4;
pub const DT_REG: u8 = 8;

/// Size of `struct stat` on x86_64.
pub const STAT_SIZE: usize = 144;
/// Size of `struct statx`.
pub const STATX_SIZE: usize = 256;
/// `STATX_BASIC_STATS`: the fields [`Stat::write_statx`] fills.
pub const STATX_BASIC_STATS: u32 = 0x7ff;

/// File metadata, independent of layout. Times are all zero: the file
/// system has no clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stat {
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
    /// File type and permission bits.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Device number of a character device (`makedev(major, minor)` encoding).
    pub rdev: u64,
    pub size: u64,
    pub blksize: u64,
    /// Size in 512-byte units.
    pub blocks: u64,
}

/// Linux's `makedev` encoding of a device number.
pub fn makedev(major: u32, minor: u32) -> u64 {
    let (ma, mi) = (u64::from(major), u64::from(minor));
    ((ma & 0xffff_f000) << 32) | ((ma & 0xfff) << 8) | ((mi & 0xffff_ff00) << 12) | (mi & 0xff)
}

fn put_u16(buf: &mut [u8], off: usize, v: u16) {
    buf[off..off + 2].copy_from_slice(&v.to_le_bytes());
}
fn put_u32(buf: &mut [u8], off: usize, v: u32) {
    buf[off..off + 4].copy_from_slice(&v.to_le_bytes());
}
fn put_u64(buf: &mut [u8], off: usize, v: u64) {
    buf[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

impl Stat {
    /// Writes `struct stat` (x86_64 layout, [`STAT_SIZE`] bytes) to the start
    /// of `buf`. EFAULT if `buf` is shorter.
    pub fn write_stat(&self, buf: &mut [u8]) -> Result<(), Errno> {
        let buf = buf.get_mut(..STAT_SIZE).ok_or(Errno::EFAULT)?;
        buf.fill(0);
        put_u64(buf, 0, self.dev);
        put_u64(buf, 8, self.ino);
        put_u64(buf, 16, self.nlink);
        put_u32(buf, 24, self.mode);
        put_u32(buf, 28, self.uid);
        put_u32(buf, 32, self.gid);
        put_u64(buf, 40, self.rdev);
        put_u64(buf, 48, self.size);
        put_u64(buf, 56, self.blksize);
        put_u64(buf, 64, self.blocks);
        // st_atim, st_mtim, st_ctim (72..120) and padding stay zero.
        Ok(())
    }

    /// Writes `struct statx` ([`STATX_SIZE`] bytes) to the start of `buf`,
    /// with `stx_mask` = [`STATX_BASIC_STATS`]. EFAULT if `buf` is shorter.
    pub fn write_statx(&self, buf: &mut [u8]) -> Result<(), Errno> {
        let buf = buf.get_mut(..STATX_SIZE).ok_or(Errno::EFAULT)?;
        buf.fill(0);
        put_u32(buf, 0, STATX_BASIC_STATS);
        put_u32(buf, 4, self.blksize as u32);
        put_u32(buf, 16, self.nlink as u32);
        put_u32(buf, 20, self.uid);
        put_u32(buf, 24, self.gid);
        put_u16(buf, 28, self.mode as u16);
        put_u64(buf, 32, self.ino);
        put_u64(buf, 40, self.size);
        put_u64(buf, 48, self.blocks);
        // Timestamps (64..128) stay zero.
        let (rmaj, rmin) = split_dev(self.rdev);
        let (dmaj, dmin) = split_dev(self.dev);
        put_u32(buf, 128, rmaj);
        put_u32(buf, 132, rmin);
        put_u32(buf, 136, dmaj);
        put_u32(buf, 140, dmin);
        Ok(())
    }
}

fn split_dev(dev: u64) -> (u32, u32) {
    let major = ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff);
    let minor = ((dev >> 12) & 0xffff_ff00) | (dev & 0xff);
    (major as u32, minor as u32)
}

/// Writes one `struct linux_dirent64` record at the start of `buf`: inode,
/// offset of the next record, type and NUL-terminated name, padded to 8
/// bytes. Returns its length, or `None` if it does not fit.
pub fn write_dirent64(
    buf: &mut [u8],
    ino: u64,
    next_off: u64,
    d_type: u8,
    name: &str,
) -> Option<usize> {
    let reclen = (19 + name.len() + 1).next_multiple_of(8);
    let rec = buf.get_mut(..reclen)?;
    rec.fill(0);
    put_u64(rec, 0, ino);
    put_u64(rec, 8, next_off);
    put_u16(rec, 16, reclen as u16);
    rec[18] = d_type;
    rec[19..19 + name.len()].copy_from_slice(name.as_bytes());
    Some(reclen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    fn u64_at(b: &[u8], off: usize) -> u64 {
        u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
    }
    fn u32_at(b: &[u8], off: usize) -> u32 {
        u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
    }

    fn sample() -> Stat {
        Stat {
            dev: makedev(0, 7),
            ino: 42,
            nlink: 3,
            mode: S_IFREG | 0o644,
            uid: 1000,
            gid: 100,
            rdev: makedev(136, 300),
            size: 123_456,
            blksize: 4096,
            blocks: 248,
        }
    }

    #[test]
    fn stat_layout_matches_libc() {
        assert_eq!(size_of::<libc::stat>(), STAT_SIZE);
        let mut b = [0xffu8; STAT_SIZE + 8];
        sample().write_stat(&mut b).unwrap();
        assert_eq!(u64_at(&b, offset_of!(libc::stat, st_dev)), makedev(0, 7));
        assert_eq!(u64_at(&b, offset_of!(libc::stat, st_ino)), 42);
        assert_eq!(u64_at(&b, offset_of!(libc::stat, st_nlink)), 3);
        assert_eq!(u32_at(&b, offset_of!(libc::stat, st_mode)), S_IFREG | 0o644);
        assert_eq!(u32_at(&b, offset_of!(libc::stat, st_uid)), 1000);
        assert_eq!(u32_at(&b, offset_of!(libc::stat, st_gid)), 100);
        assert_eq!(
            u64_at(&b, offset_of!(libc::stat, st_rdev)),
            makedev(136, 300)
        );
        assert_eq!(u64_at(&b, offset_of!(libc::stat, st_size)), 123_456);
        assert_eq!(u64_at(&b, offset_of!(libc::stat, st_blksize)), 4096);
        assert_eq!(u64_at(&b, offset_of!(libc::stat, st_blocks)), 248);
        assert_eq!(u64_at(&b, offset_of!(libc::stat, st_mtime)), 0);
        // Nothing past the structure is written.
        assert_eq!(&b[STAT_SIZE..], &[0xff; 8]);
        assert_eq!(
            sample().write_stat(&mut [0u8; STAT_SIZE - 1]),
            Err(Errno::EFAULT)
        );
    }

    #[test]
    fn statx_layout_matches_libc() {
        assert_eq!(size_of::<libc::statx>(), STATX_SIZE);
        let mut b = [0u8; STATX_SIZE];
        sample().write_statx(&mut b).unwrap();
        assert_eq!(
            u32_at(&b, offset_of!(libc::statx, stx_mask)),
            STATX_BASIC_STATS
        );
        assert_eq!(u32_at(&b, offset_of!(libc::statx, stx_blksize)), 4096);
        assert_eq!(u32_at(&b, offset_of!(libc::statx, stx_nlink)), 3);
        assert_eq!(u32_at(&b, offset_of!(libc::statx, stx_uid)), 1000);
        let mode_off = offset_of!(libc::statx, stx_mode);
        assert_eq!(
            u16::from_le_bytes([b[mode_off], b[mode_off + 1]]),
            (S_IFREG | 0o644) as u16
        );
        assert_eq!(u64_at(&b, offset_of!(libc::statx, stx_ino)), 42);
        assert_eq!(u64_at(&b, offset_of!(libc::statx, stx_size)), 123_456);
        assert_eq!(u64_at(&b, offset_of!(libc::statx, stx_blocks)), 248);
        assert_eq!(u32_at(&b, offset_of!(libc::statx, stx_rdev_major)), 136);
        assert_eq!(u32_at(&b, offset_of!(libc::statx, stx_rdev_minor)), 300);
        assert_eq!(u32_at(&b, offset_of!(libc::statx, stx_dev_major)), 0);
        assert_eq!(u32_at(&b, offset_of!(libc::statx, stx_dev_minor)), 7);
    }

    #[test]
    fn makedev_matches_libc() {
        for (ma, mi) in [(1, 3), (136, 300), (4095, 255), (0x12345, 0x6789a)] {
            assert_eq!(makedev(ma, mi), libc::makedev(ma, mi));
            assert_eq!(split_dev(makedev(ma, mi)), (ma, mi));
        }
    }

    #[test]
    fn dirent_record() {
        let mut b = [0u8; 64];
        let n = write_dirent64(&mut b, 9, 2, DT_REG, "hello").unwrap();
        assert_eq!(n, 32); // 19 + 6 = 25, rounded to 8
        assert_eq!(u64_at(&b, 0), 9);
        assert_eq!(u64_at(&b, 8), 2);
        assert_eq!(u16::from_le_bytes([b[16], b[17]]), 32);
        assert_eq!(b[18], DT_REG);
        assert_eq!(&b[19..25], b"hello\0");
        assert_eq!(write_dirent64(&mut b[..31], 9, 2, DT_REG, "hello"), None);
    }
}
