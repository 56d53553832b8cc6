//! Tests of the file system through its system-call-shaped interface.

use alloc::collections::BTreeMap;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;

use super::*;

struct Roms(Vec<(&'static str, Vec<u8>)>);

impl RomSource for Roms {
    fn rom(&self, name: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, d)| d.as_slice())
    }
    fn names(&self) -> Vec<String> {
        self.0.iter().map(|(n, _)| String::from(*n)).collect()
    }
}

#[derive(Clone, Default)]
struct Log(Rc<RefCell<Vec<Vec<u8>>>>);

impl LogSink for Log {
    fn log(&mut self, text: &[u8]) {
        self.0.borrow_mut().push(text.to_vec());
    }
}

impl Log {
    fn lines(&self) -> Vec<String> {
        self.0
            .borrow()
            .iter()
            .map(|l| String::from_utf8(l.clone()).unwrap())
            .collect()
    }
}

#[derive(Clone, Default)]
struct Console {
    input: Rc<RefCell<Vec<u8>>>,
    output: Rc<RefCell<Vec<u8>>>,
}

impl Terminal for Console {
    fn read(&mut self, buf: &mut [u8]) -> usize {
        let mut input = self.input.borrow_mut();
        let n = buf.len().min(input.len());
        buf[..n].copy_from_slice(&input[..n]);
        input.drain(..n);
        n
    }
    fn write(&mut self, data: &[u8]) {
        self.output.borrow_mut().extend_from_slice(data);
    }
    fn has_input(&self) -> bool {
        !self.input.borrow().is_empty()
    }
}

fn backends(log: &Log, console: Option<&Console>) -> Backends {
    Backends {
        roms: Box::new(Roms(vec![
            ("bzImage", b"kernel image".to_vec()),
            ("disk.img", vec![7u8; 10_000]),
            ("cfg/net", b"eth0".to_vec()),
        ])),
        log: Box::new(log.clone()),
        terminal: console.map(|c| Box::new(c.clone()) as Box<dyn Terminal>),
    }
}

const CONFIG: &str = "
/dev/log = log
/dev/null = null
/dev/zero = zero
/boot/linux = rom bzImage
/rom = rom *
/etc/motd = inline Hello,\\nworld\\n
/tmp = ram 8K
";

fn vfs() -> (Vfs, Log) {
    let log = Log::default();
    let vfs = Vfs::new(CONFIG, backends(&log, None)).unwrap();
    (vfs, log)
}

fn config_error(text: &str) -> VfsConfigError {
    Vfs::new(text, backends(&Log::default(), None)).unwrap_err()
}

fn read_all(v: &mut Vfs, fd: i32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 7];
    loop {
        let n = v.read(fd, &mut buf).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n]);
    }
}

fn read_file(v: &mut Vfs, path: &str) -> Vec<u8> {
    let fd = v.open(AT_FDCWD, path, O_RDONLY, 0).unwrap();
    let data = read_all(v, fd);
    v.close(fd).unwrap();
    data
}

fn write_file(v: &mut Vfs, path: &str, data: &[u8]) -> Result<usize, Errno> {
    let fd = v.open(AT_FDCWD, path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)?;
    let n = v.write(fd, data);
    v.close(fd).unwrap();
    n
}

fn names(v: &mut Vfs, path: &str) -> Vec<String> {
    let fd = v.open(AT_FDCWD, path, O_RDONLY | O_DIRECTORY, 0).unwrap();
    let mut names = Vec::new();
    let mut buf = [0u8; 64];
    loop {
        let n = v.getdents64(fd, &mut buf).unwrap();
        if n == 0 {
            break;
        }
        let mut at = 0;
        while at < n {
            let reclen = u16::from_le_bytes([buf[at + 16], buf[at + 17]]) as usize;
            let name = &buf[at + 19..at + reclen];
            let len = name.iter().position(|&b| b == 0).unwrap();
            names.push(String::from_utf8(name[..len].to_vec()).unwrap());
            at += reclen;
        }
    }
    v.close(fd).unwrap();
    names
}

#[test]
fn standard_streams_default_to_null_and_log() {
    let (mut v, log) = vfs();
    assert_eq!(
        v.fds().fds().map(|(fd, _)| fd).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    assert_eq!(v.read(0, &mut [0u8; 4]), Ok(0));
    assert_eq!(v.write(0, b"x"), Err(Errno::EBADF));
    v.write(1, b"hello ").unwrap();
    v.write(2, b"err: ").unwrap();
    v.write(1, b"world\nsecond").unwrap();
    assert_eq!(log.lines(), ["hello world\n"]);
    v.write(2, b"bad\n").unwrap();
    assert_eq!(log.lines(), ["hello world\n", "err: bad\n"]);
    // The unfinished line comes out when the file is closed.
    v.close(1).unwrap();
    assert_eq!(log.lines().last().unwrap(), "second");
    assert_eq!(v.fstat(2).unwrap().mode & S_IFMT, S_IFCHR);
}

#[test]
fn defaults_are_created_when_not_configured() {
    let log = Log::default();
    let mut v = Vfs::new("", backends(&log, None)).unwrap();
    v.write(1, b"x\n").unwrap();
    assert_eq!(log.lines(), ["x\n"]);
    assert_eq!(names(&mut v, "/dev"), [".", "..", "log", "null"]);
}

#[test]
fn stdio_settings_and_terminal() {
    let log = Log::default();
    let console = Console::default();
    let config = "/dev/console = terminal\n/tmp = ram\nstdin = /dev/console\nstdout = /dev/console\ncwd = /tmp";
    let mut v = Vfs::new(config, backends(&log, Some(&console))).unwrap();
    assert_eq!(v.getcwd(), "/tmp");
    v.write(1, b"prompt> ").unwrap();
    assert_eq!(&*console.output.borrow(), b"prompt> ");
    // No input yet: EAGAIN, the caller blocks (the descriptor is blocking).
    let mut buf = [0u8; 16];
    assert_eq!(v.read(0, &mut buf), Err(Errno::EAGAIN));
    assert_eq!(v.nonblocking(0), Ok(false));
    assert_eq!(v.poll(0, POLLIN | POLLOUT), POLLOUT);
    console.input.borrow_mut().extend_from_slice(b"ls\n");
    assert_eq!(v.poll(0, POLLIN | POLLOUT), POLLIN | POLLOUT);
    assert_eq!(v.poll(0, POLLIN), POLLIN);
    assert_eq!(v.read(0, &mut buf), Ok(3));
    assert_eq!(&buf[..3], b"ls\n");
    assert_eq!(v.is_terminal(0), Ok(true));
    assert_eq!(v.is_terminal(2), Ok(false));
    assert_eq!(v.lseek(0, 0, SEEK_CUR), Err(Errno::ESPIPE));
    assert_eq!(v.pread(0, &mut buf, 0), Err(Errno::ESPIPE));
    // stderr still goes to the implicit /dev/log.
    v.write(2, b"e\n").unwrap();
    assert_eq!(log.lines(), ["e\n"]);
}

#[test]
fn config_errors_name_line_and_problem() {
    let e = config_error("/a = log\n/a = null");
    assert_eq!((e.line, e.problem), (2, Problem::Duplicate("/a".into())));
    let e = config_error("/a = log\n/a/b = null");
    assert_eq!(
        (e.line, e.problem),
        (2, Problem::ParentNotDirectory("/a/b".into()))
    );
    let e = config_error("/t = ram\n/t/x = null");
    assert_eq!((e.line, e.problem), (2, Problem::InsideRam("/t/x".into())));
    let e = config_error("/k = rom vmlinux");
    assert_eq!(
        (e.line, e.problem),
        (1, Problem::NoSuchRom("vmlinux".into()))
    );
    let e = config_error("/c = terminal");
    assert_eq!((e.line, e.problem), (1, Problem::NoTerminal));
    let e = config_error("stdout = /nowhere");
    assert_eq!(
        (e.line, e.problem),
        (1, Problem::NoSuchPath("/nowhere".into()))
    );
    let e = config_error("/k = rom bzImage\nstdout = /k");
    assert_eq!(
        (e.line, e.problem),
        (2, Problem::CannotOpen("/k".into(), Errno::EROFS))
    );
    let e = config_error("/d = dir\nstderr = /d");
    assert_eq!((e.line, e.problem), (2, Problem::IsADirectory("/d".into())));
    let e = config_error("/f = null\ncwd = /f");
    assert_eq!(
        (e.line, e.problem),
        (2, Problem::NotADirectory("/f".into()))
    );
    let e = config_error("/dev = null");
    assert_eq!(e.line, 0, "the default /dev/null cannot be made: {e}");
    let text = alloc::format!("{}", config_error("\n\n/x = rom nope"));
    assert!(
        text.contains("line 3") && text.contains("no boot module named `nope`"),
        "{text}"
    );
    // An explicit dir line for an implicit parent is fine.
    let log = Log::default();
    assert!(Vfs::new("/a/b = null\n/a = dir\n/ = dir", backends(&log, None)).is_ok());
}

#[test]
fn rom_inline_and_devices_read() {
    let (mut v, _) = vfs();
    assert_eq!(read_file(&mut v, "/boot/linux"), b"kernel image");
    assert_eq!(read_file(&mut v, "/rom/bzImage"), b"kernel image");
    assert_eq!(read_file(&mut v, "/rom/cfg/net"), b"eth0");
    assert_eq!(read_file(&mut v, "/rom/disk.img").len(), 10_000);
    assert_eq!(read_file(&mut v, "/etc/motd"), b"Hello,\nworld\n");
    assert_eq!(
        v.stat_at(AT_FDCWD, "/rom/disk.img", 0).unwrap().size,
        10_000
    );
    assert_eq!(
        v.stat_at(AT_FDCWD, "/etc/motd", 0).unwrap().mode,
        S_IFREG | 0o444
    );
    let z = v.open(AT_FDCWD, "/dev/zero", O_RDWR, 0).unwrap();
    let mut buf = [1u8; 8];
    assert_eq!(v.read(z, &mut buf), Ok(8));
    assert_eq!(buf, [0; 8]);
    assert_eq!(v.write(z, b"gone"), Ok(4));
    let n = v.open(AT_FDCWD, "/dev/null", O_WRONLY, 0).unwrap();
    assert_eq!(v.write(n, b"gone"), Ok(4));
    // Read-only nodes refuse writers.
    assert_eq!(
        v.open(AT_FDCWD, "/boot/linux", O_RDWR, 0),
        Err(Errno::EROFS)
    );
    assert_eq!(
        v.open(AT_FDCWD, "/etc/motd", O_WRONLY | O_TRUNC, 0),
        Err(Errno::EROFS)
    );
    assert_eq!(
        v.open(AT_FDCWD, "/etc/new", O_WRONLY | O_CREAT, 0),
        Err(Errno::EROFS)
    );
    assert_eq!(v.mkdir(AT_FDCWD, "/etc/d", 0o755), Err(Errno::EROFS));
    assert_eq!(v.unlink("/etc/motd"), Err(Errno::EROFS));
    assert_eq!(v.truncate("/boot/linux", 0), Err(Errno::EROFS));
    assert_eq!(
        v.access(AT_FDCWD, "/boot/linux", W_OK, 0),
        Err(Errno::EROFS)
    );
    assert_eq!(v.access(AT_FDCWD, "/boot/linux", R_OK, 0), Ok(()));
    assert_eq!(v.access(AT_FDCWD, "/tmp", W_OK | X_OK, 0), Ok(()));
    assert_eq!(
        v.access(AT_FDCWD, "/boot/linux", X_OK, 0),
        Err(Errno::EACCES)
    );
    assert_eq!(
        v.access(AT_FDCWD, "/boot/nothing", F_OK, 0),
        Err(Errno::ENOENT)
    );
    assert_eq!(v.readlink(AT_FDCWD, "/boot/linux"), Err(Errno::EINVAL));
    assert_eq!(v.readlink(AT_FDCWD, "/boot/nothing"), Err(Errno::ENOENT));
}

#[test]
fn path_resolution() {
    let (mut v, _) = vfs();
    assert_eq!(read_file(&mut v, "/boot/../etc/./motd"), b"Hello,\nworld\n");
    assert_eq!(read_file(&mut v, "/../../boot//linux"), b"kernel image");
    v.chdir("/etc").unwrap();
    assert_eq!(v.getcwd(), "/etc");
    assert_eq!(read_file(&mut v, "motd"), b"Hello,\nworld\n");
    assert_eq!(read_file(&mut v, "../boot/linux"), b"kernel image");
    v.chdir("..").unwrap();
    assert_eq!(v.getcwd(), "/");
    assert_eq!(v.chdir("/etc/motd"), Err(Errno::ENOTDIR));
    assert_eq!(v.chdir("/nothing"), Err(Errno::ENOENT));
    // Through a file: ENOTDIR; trailing slash on a file: ENOTDIR.
    assert_eq!(
        v.open(AT_FDCWD, "/etc/motd/x", O_RDONLY, 0),
        Err(Errno::ENOTDIR)
    );
    assert_eq!(
        v.open(AT_FDCWD, "/etc/motd/", O_RDONLY, 0),
        Err(Errno::ENOTDIR)
    );
    assert_eq!(v.open(AT_FDCWD, "", O_RDONLY, 0), Err(Errno::ENOENT));
    assert_eq!(
        v.open(AT_FDCWD, "/etc", O_RDONLY | O_DIRECTORY, 0)
            .map(|_| ()),
        Ok(())
    );
    assert_eq!(
        v.open(AT_FDCWD, "/etc/motd", O_RDONLY | O_DIRECTORY, 0),
        Err(Errno::ENOTDIR)
    );
    assert_eq!(v.open(AT_FDCWD, "/etc", O_WRONLY, 0), Err(Errno::EISDIR));
    // Relative to a directory descriptor.
    let etc = v.open(AT_FDCWD, "/etc", O_RDONLY | O_DIRECTORY, 0).unwrap();
    let motd = v.open(etc, "motd", O_RDONLY, 0).unwrap();
    assert_eq!(read_all(&mut v, motd), b"Hello,\nworld\n");
    assert_eq!(v.open(motd, "x", O_RDONLY, 0), Err(Errno::ENOTDIR));
    assert_eq!(v.open(99, "x", O_RDONLY, 0), Err(Errno::EBADF));
    // Absolute paths ignore the descriptor.
    assert!(v.open(99, "/etc/motd", O_RDONLY, 0).is_ok());
    v.fchdir(etc).unwrap();
    assert_eq!(v.getcwd(), "/etc");
    assert_eq!(
        v.stat_at(etc, "", AT_EMPTY_PATH).unwrap().mode & S_IFMT,
        S_IFDIR
    );
    assert_eq!(v.stat_at(AT_FDCWD, "", 0), Err(Errno::ENOENT));
    assert_eq!(v.stat_at(AT_FDCWD, "motd", 0x8000_0000), Err(Errno::EINVAL));
    let long = "a/".repeat(3000);
    assert_eq!(
        v.open(AT_FDCWD, &long, O_RDONLY, 0),
        Err(Errno::ENAMETOOLONG)
    );
}

#[test]
fn ram_files_create_write_read_truncate() {
    let (mut v, _) = vfs();
    let fd = v
        .open(AT_FDCWD, "/tmp/a", O_RDWR | O_CREAT | O_EXCL, 0o644)
        .unwrap();
    assert_eq!(v.write(fd, b"hello world"), Ok(11));
    assert_eq!(v.lseek(fd, 0, SEEK_SET), Ok(0));
    let mut buf = [0u8; 5];
    assert_eq!(v.read(fd, &mut buf), Ok(5));
    assert_eq!(&buf, b"hello");
    assert_eq!(v.lseek(fd, -5, SEEK_END), Ok(6));
    assert_eq!(v.read(fd, &mut buf), Ok(5));
    assert_eq!(&buf, b"world");
    assert_eq!(v.read(fd, &mut buf), Ok(0));
    // pread/pwrite do not move the position.
    assert_eq!(v.pwrite(fd, b"J", 6), Ok(1));
    assert_eq!(v.pread(fd, &mut buf, 6), Ok(5));
    assert_eq!(&buf, b"Jorld");
    assert_eq!(v.lseek(fd, 0, SEEK_CUR), Ok(11));
    assert_eq!(v.pread(fd, &mut buf, -1), Err(Errno::EINVAL));
    assert_eq!(v.lseek(fd, -12, SEEK_END), Err(Errno::EINVAL));
    assert_eq!(v.lseek(fd, 0, 7), Err(Errno::EINVAL));
    // Writing past the end leaves a zero-filled gap.
    assert_eq!(v.lseek(fd, 13, SEEK_SET), Ok(13));
    assert_eq!(v.write(fd, b"!"), Ok(1));
    assert_eq!(read_file(&mut v, "/tmp/a"), b"hello Jorld\0\0!");
    assert_eq!(v.fstat(fd).unwrap().size, 14);
    v.ftruncate(fd, 5).unwrap();
    assert_eq!(read_file(&mut v, "/tmp/a"), b"hello");
    v.truncate("/tmp/a", 7).unwrap();
    assert_eq!(read_file(&mut v, "/tmp/a"), b"hello\0\0");
    assert_eq!(v.ftruncate(fd, -1), Err(Errno::EINVAL));
    v.close(fd).unwrap();
    // O_EXCL on an existing file, O_TRUNC empties, O_APPEND appends.
    assert_eq!(
        v.open(AT_FDCWD, "/tmp/a", O_RDWR | O_CREAT | O_EXCL, 0),
        Err(Errno::EEXIST)
    );
    let fd = v.open(AT_FDCWD, "/tmp/a", O_WRONLY | O_TRUNC, 0).unwrap();
    assert_eq!(v.fstat(fd).unwrap().size, 0);
    v.write(fd, b"one").unwrap();
    let ap = v.open(AT_FDCWD, "/tmp/a", O_WRONLY | O_APPEND, 0).unwrap();
    v.write(ap, b"two").unwrap();
    v.write(fd, b"ONE").unwrap();
    assert_eq!(read_file(&mut v, "/tmp/a"), b"oneONE");
    v.write(ap, b"two").unwrap();
    assert_eq!(read_file(&mut v, "/tmp/a"), b"oneONEtwo");
    // A read-only descriptor cannot write or truncate, a write-only one cannot read.
    let ro = v.open(AT_FDCWD, "/tmp/a", O_RDONLY, 0).unwrap();
    assert_eq!(v.write(ro, b"x"), Err(Errno::EBADF));
    assert_eq!(v.ftruncate(ro, 0), Err(Errno::EINVAL));
    assert_eq!(v.read(fd, &mut buf), Err(Errno::EBADF));
    assert_eq!(v.open(AT_FDCWD, "/tmp/b", O_ACCMODE, 0), Err(Errno::EINVAL));
    assert_eq!(
        v.open(AT_FDCWD, "/tmp/missing", O_RDONLY, 0),
        Err(Errno::ENOENT)
    );
    assert_eq!(
        v.open(AT_FDCWD, "/tmp/new/", O_RDWR | O_CREAT, 0),
        Err(Errno::EISDIR)
    );
    assert_eq!(
        v.open(AT_FDCWD, "/tmp", O_RDONLY | O_CREAT, 0),
        Err(Errno::EISDIR)
    );
}

#[test]
fn ram_directories_mkdir_unlink_rmdir_rename() {
    let (mut v, _) = vfs();
    v.mkdir(AT_FDCWD, "/tmp/d", 0o755).unwrap();
    assert_eq!(v.mkdir(AT_FDCWD, "/tmp/d", 0o755), Err(Errno::EEXIST));
    assert_eq!(v.mkdir(AT_FDCWD, "/tmp/x/y", 0o755), Err(Errno::ENOENT));
    assert_eq!(v.mkdir(AT_FDCWD, "/tmp/..", 0o755), Err(Errno::EEXIST));
    write_file(&mut v, "/tmp/d/f", b"data").unwrap();
    write_file(&mut v, "/tmp/g", b"other").unwrap();
    assert_eq!(names(&mut v, "/tmp"), [".", "..", "d", "g"]);
    assert_eq!(names(&mut v, "/tmp/d"), [".", "..", "f"]);
    assert_eq!(v.stat_at(AT_FDCWD, "/tmp", 0).unwrap().nlink, 3);
    // rmdir only empty directories; unlink only files.
    assert_eq!(v.rmdir("/tmp/d"), Err(Errno::ENOTEMPTY));
    assert_eq!(v.unlink("/tmp/d"), Err(Errno::EISDIR));
    assert_eq!(v.rmdir("/tmp/g"), Err(Errno::ENOTDIR));
    assert_eq!(v.unlink("/tmp/g/"), Err(Errno::ENOTDIR));
    assert_eq!(v.rmdir("/tmp/d/."), Err(Errno::EINVAL));
    assert_eq!(v.rmdir("/tmp/d/.."), Err(Errno::ENOTEMPTY));
    assert_eq!(v.rmdir("/tmp"), Err(Errno::EBUSY));
    assert_eq!(v.rmdir("/etc"), Err(Errno::EROFS));
    assert_eq!(v.unlink("/tmp/none"), Err(Errno::ENOENT));
    // Rename: file into a directory, over a file, directories.
    v.rename(AT_FDCWD, "/tmp/g", AT_FDCWD, "/tmp/d/g", 0)
        .unwrap();
    assert_eq!(read_file(&mut v, "/tmp/d/g"), b"other");
    v.rename(AT_FDCWD, "/tmp/d/g", AT_FDCWD, "/tmp/d/f", 0)
        .unwrap();
    assert_eq!(read_file(&mut v, "/tmp/d/f"), b"other");
    assert_eq!(names(&mut v, "/tmp/d"), [".", "..", "f"]);
    v.mkdir(AT_FDCWD, "/tmp/e", 0).unwrap();
    v.rename(AT_FDCWD, "/tmp/d", AT_FDCWD, "/tmp/e/d2", 0)
        .unwrap();
    assert_eq!(read_file(&mut v, "/tmp/e/d2/f"), b"other");
    assert_eq!(
        v.rename(AT_FDCWD, "/tmp/e", AT_FDCWD, "/tmp/e/d2/x", 0),
        Err(Errno::EINVAL)
    );
    write_file(&mut v, "/tmp/h", b"h").unwrap();
    assert_eq!(
        v.rename(AT_FDCWD, "/tmp/h", AT_FDCWD, "/tmp/e", 0),
        Err(Errno::EISDIR)
    );
    assert_eq!(
        v.rename(AT_FDCWD, "/tmp/e", AT_FDCWD, "/tmp/h", 0),
        Err(Errno::ENOTDIR)
    );
    assert_eq!(
        v.rename(
            AT_FDCWD,
            "/tmp/h",
            AT_FDCWD,
            "/tmp/e/d2/f",
            RENAME_NOREPLACE
        ),
        Err(Errno::EEXIST)
    );
    assert_eq!(
        v.rename(AT_FDCWD, "/tmp/h", AT_FDCWD, "/tmp/i", RENAME_EXCHANGE),
        Err(Errno::EINVAL)
    );
    v.mkdir(AT_FDCWD, "/tmp/empty", 0).unwrap();
    assert_eq!(
        v.rename(AT_FDCWD, "/tmp/empty", AT_FDCWD, "/tmp/e", 0),
        Err(Errno::ENOTEMPTY)
    );
    // `..` in the middle of a path works for removal too.
    v.rmdir("/tmp/e/d2/../../empty").unwrap();
    assert_eq!(v.stat_at(AT_FDCWD, "/tmp/empty", 0), Err(Errno::ENOENT));
    v.mkdir(AT_FDCWD, "/tmp/empty", 0).unwrap();
    v.rename(AT_FDCWD, "/tmp/e/d2", AT_FDCWD, "/tmp/empty", 0)
        .unwrap();
    assert_eq!(read_file(&mut v, "/tmp/empty/f"), b"other");
    v.rename(AT_FDCWD, "/tmp/h", AT_FDCWD, "/tmp/h", 0).unwrap();
    // Across file systems or of configured nodes.
    assert_eq!(
        v.rename(AT_FDCWD, "/tmp/h", AT_FDCWD, "/etc/h", 0),
        Err(Errno::EROFS)
    );
    assert_eq!(
        v.rename(AT_FDCWD, "/etc/motd", AT_FDCWD, "/tmp/m", 0),
        Err(Errno::EROFS)
    );
    assert_eq!(
        v.rename(AT_FDCWD, "/tmp", AT_FDCWD, "/tmp2", 0),
        Err(Errno::EBUSY)
    );
    // unlinkat with and without AT_REMOVEDIR.
    let tmp = v.open(AT_FDCWD, "/tmp", O_RDONLY | O_DIRECTORY, 0).unwrap();
    v.unlink_at(tmp, "h", 0).unwrap();
    v.unlink_at(tmp, "empty/f", 0).unwrap();
    v.unlink_at(tmp, "empty", AT_REMOVEDIR).unwrap();
    assert_eq!(v.unlink_at(tmp, "e", 0x1), Err(Errno::EINVAL));
    assert_eq!(names(&mut v, "/tmp"), [".", "..", "e"]);
}

#[test]
fn ram_limit_and_accounting() {
    let (mut v, _) = vfs();
    assert_eq!(v.ram_usage("/tmp"), Ok((0, 8192)));
    let fd = v.open(AT_FDCWD, "/tmp/big", O_RDWR | O_CREAT, 0).unwrap();
    assert_eq!(v.ram_usage("/tmp"), Ok((RAM_ENTRY_COST, 8192)));
    // A write beyond the limit takes what fits, then ENOSPC.
    let room = (8192 - RAM_ENTRY_COST) as usize;
    assert_eq!(v.write(fd, &vec![1u8; 10_000]), Ok(room));
    assert_eq!(v.write(fd, b"x"), Err(Errno::ENOSPC));
    assert_eq!(
        v.open(AT_FDCWD, "/tmp/more", O_RDWR | O_CREAT, 0),
        Err(Errno::ENOSPC)
    );
    assert_eq!(v.mkdir(AT_FDCWD, "/tmp/dir", 0), Err(Errno::ENOSPC));
    assert_eq!(v.ftruncate(fd, room as i64 + 1), Err(Errno::ENOSPC));
    assert_eq!(v.write(fd, b""), Ok(0));
    // Truncating frees room.
    v.ftruncate(fd, 1000).unwrap();
    assert_eq!(v.ram_usage("/tmp"), Ok((RAM_ENTRY_COST + 1000, 8192)));
    // An unlinked file keeps its data until closed.
    v.unlink("/tmp/big").unwrap();
    assert_eq!(v.lseek(fd, 0, SEEK_SET), Ok(0));
    assert_eq!(read_all(&mut v, fd).len(), 1000);
    assert_eq!(v.fstat(fd).unwrap().nlink, 0);
    assert_eq!(v.ram_usage("/tmp"), Ok((RAM_ENTRY_COST + 1000, 8192)));
    v.close(fd).unwrap();
    assert_eq!(v.ram_usage("/tmp"), Ok((0, 8192)));
    // Replacing a file by rename frees the old one.
    write_file(&mut v, "/tmp/a", &[0; 100]).unwrap();
    write_file(&mut v, "/tmp/b", &[0; 200]).unwrap();
    v.rename(AT_FDCWD, "/tmp/a", AT_FDCWD, "/tmp/b", 0).unwrap();
    assert_eq!(v.ram_usage("/tmp"), Ok((RAM_ENTRY_COST + 100, 8192)));
    assert_eq!(v.ram_usage("/etc"), Err(Errno::EINVAL));
}

#[test]
fn descriptors_dup_fcntl_close() {
    let (mut v, _) = vfs();
    let fd = v
        .open(AT_FDCWD, "/tmp/f", O_RDWR | O_CREAT | O_CLOEXEC, 0)
        .unwrap();
    assert_eq!(fd, 3);
    assert_eq!(v.fcntl(fd, F_GETFD, 0), Ok(FD_CLOEXEC as i64));
    assert_eq!(v.fcntl(fd, F_GETFL, 0), Ok(O_RDWR as i64));
    // A duplicate shares the position and status flags, not FD_CLOEXEC.
    let d = v.dup(fd).unwrap();
    assert_eq!(d, 4);
    assert_eq!(v.fcntl(d, F_GETFD, 0), Ok(0));
    v.write(fd, b"abc").unwrap();
    assert_eq!(v.lseek(d, 0, SEEK_CUR), Ok(3));
    v.fcntl(d, F_SETFL, u64::from(O_APPEND | O_NONBLOCK | O_WRONLY))
        .unwrap();
    assert_eq!(
        v.fcntl(fd, F_GETFL, 0),
        Ok((O_RDWR | O_APPEND | O_NONBLOCK) as i64)
    );
    assert_eq!(v.nonblocking(fd), Ok(true));
    v.fcntl(fd, F_SETFD, 0).unwrap();
    assert_eq!(v.fcntl(fd, F_GETFD, 0), Ok(0));
    // Closing one keeps the other working.
    v.close(fd).unwrap();
    assert_eq!(v.close(fd), Err(Errno::EBADF));
    v.write(d, b"def").unwrap();
    assert_eq!(read_file(&mut v, "/tmp/f"), b"abcdef");
    // dup2 onto an open descriptor closes it first; dup2 to itself is a no-op.
    let motd = v.open(AT_FDCWD, "/etc/motd", O_RDONLY, 0).unwrap();
    assert_eq!(motd, 3);
    assert_eq!(v.dup2(d, motd), Ok(motd));
    assert_eq!(v.fstat(motd).unwrap().ino, v.fstat(d).unwrap().ino);
    assert_eq!(v.dup2(d, d), Ok(d));
    assert_eq!(v.dup2(99, 5), Err(Errno::EBADF));
    assert_eq!(v.dup2(d, MAX_FDS), Err(Errno::EBADF));
    assert_eq!(v.dup3(d, d, 0), Err(Errno::EINVAL));
    assert_eq!(v.dup3(d, 9, O_APPEND), Err(Errno::EINVAL));
    assert_eq!(v.dup3(d, 9, O_CLOEXEC), Ok(9));
    assert_eq!(v.fcntl(9, F_GETFD, 0), Ok(FD_CLOEXEC as i64));
    assert_eq!(v.fcntl(d, F_DUPFD, 7), Ok(7));
    assert_eq!(v.fcntl(d, F_DUPFD_CLOEXEC, 7), Ok(8));
    assert_eq!(v.fcntl(8, F_GETFD, 0), Ok(FD_CLOEXEC as i64));
    assert_eq!(v.fcntl(d, F_DUPFD, MAX_FDS as u64), Err(Errno::EINVAL));
    assert_eq!(v.fcntl(d, 12345, 0), Err(Errno::EINVAL));
    assert_eq!(v.fcntl(50, F_GETFD, 0), Err(Errno::EBADF));
    assert_eq!(v.fsync(d), Ok(()));
    assert_eq!(v.fsync(50), Err(Errno::EBADF));
    // Descriptors run out at MAX_FDS.
    let mut last = Ok(0);
    for _ in 0..MAX_FDS {
        last = v.dup(0);
        if last.is_err() {
            break;
        }
    }
    assert_eq!(last, Err(Errno::EMFILE));
    assert_eq!(
        v.open(AT_FDCWD, "/etc/motd", O_RDONLY, 0),
        Err(Errno::EMFILE)
    );
    v.close_all();
    assert_eq!(v.fds().fds().count(), 0);
}

#[test]
fn getdents_resumes_and_rewinds() {
    let (mut v, _) = vfs();
    for name in ["a", "bb", "ccc", "dddd"] {
        write_file(&mut v, &alloc::format!("/tmp/{name}"), b"").unwrap();
    }
    let fd = v.open(AT_FDCWD, "/tmp", O_RDONLY | O_DIRECTORY, 0).unwrap();
    // Too small for even one record.
    assert_eq!(v.getdents64(fd, &mut [0u8; 16]), Err(Errno::EINVAL));
    let mut buf = [0u8; 48];
    let n = v.getdents64(fd, &mut buf).unwrap();
    assert_eq!(n, 48, "two 24-byte records: . and ..");
    assert_eq!(buf[18], DT_DIR);
    let position = v.lseek(fd, 0, SEEK_CUR).unwrap();
    assert_eq!(position, 2);
    assert_eq!(
        u64::from_le_bytes(buf[32..40].try_into().unwrap()),
        2,
        "d_off of .."
    );
    assert_eq!(names(&mut v, "/tmp"), [".", "..", "a", "bb", "ccc", "dddd"]);
    let mut big = [0u8; 512];
    let n = v.getdents64(fd, &mut big).unwrap();
    assert_eq!(n, 4 * 24);
    assert_eq!(big[18], DT_REG);
    assert_eq!(v.getdents64(fd, &mut big), Ok(0));
    assert_eq!(v.lseek(fd, 0, SEEK_SET), Ok(0));
    assert_eq!(v.getdents64(fd, &mut big).unwrap(), 6 * 24);
    assert_eq!(v.lseek(fd, 0, SEEK_END), Err(Errno::EINVAL));
    let f = v.open(AT_FDCWD, "/tmp/a", O_RDONLY, 0).unwrap();
    assert_eq!(v.getdents64(f, &mut big), Err(Errno::ENOTDIR));
    let mut one = [0u8; 1];
    assert_eq!(v.read(fd, &mut one), Err(Errno::EISDIR));
    assert_eq!(names(&mut v, "/dev"), [".", "..", "log", "null", "zero"]);
}

#[test]
fn stat_fields() {
    let (mut v, _) = vfs();
    write_file(&mut v, "/tmp/s", &[1; 1000]).unwrap();
    let s = v.stat_at(AT_FDCWD, "/tmp/s", AT_SYMLINK_NOFOLLOW).unwrap();
    assert_eq!(s.mode, S_IFREG | 0o644);
    assert_eq!((s.size, s.blocks, s.blksize, s.nlink), (1000, 2, 4096, 1));
    let t = v.stat_at(AT_FDCWD, "/tmp", 0).unwrap();
    assert_eq!(t.mode, S_IFDIR | 0o755);
    assert_ne!(t.ino, s.ino);
    assert_eq!(t.dev, s.dev);
    let root = v.stat_at(AT_FDCWD, "/", 0).unwrap();
    assert_eq!(root.mode, S_IFDIR | 0o555);
    assert_ne!(root.dev, t.dev, "a ram directory is its own file system");
    let null = v.stat_at(AT_FDCWD, "/dev/null", 0).unwrap();
    assert_eq!((null.mode, null.rdev), (S_IFCHR | 0o666, makedev(1, 3)));
    let mut buf = [0u8; STAT_SIZE];
    s.write_stat(&mut buf).unwrap();
    assert_eq!(u64::from_le_bytes(buf[48..56].try_into().unwrap()), 1000);
}

#[test]
fn removed_directory_and_cwd() {
    let (mut v, _) = vfs();
    v.mkdir(AT_FDCWD, "/tmp/w", 0).unwrap();
    v.chdir("/tmp/w").unwrap();
    assert_eq!(v.rmdir("/tmp/w"), Err(Errno::EBUSY));
    write_file(&mut v, "f", b"in w").unwrap();
    assert_eq!(read_file(&mut v, "/tmp/w/f"), b"in w");
    v.rename(AT_FDCWD, "/tmp/w", AT_FDCWD, "/tmp/renamed", 0)
        .unwrap();
    assert_eq!(v.getcwd(), "/tmp/renamed");
    v.chdir("/").unwrap();
    // An open directory that is removed can be listed but not entered.
    v.unlink("/tmp/renamed/f").unwrap();
    let fd = v
        .open(AT_FDCWD, "/tmp/renamed", O_RDONLY | O_DIRECTORY, 0)
        .unwrap();
    v.rmdir("/tmp/renamed").unwrap();
    assert_eq!(v.open(fd, "x", O_RDWR | O_CREAT, 0), Err(Errno::ENOENT));
    assert_eq!(v.fstat(fd).unwrap().nlink, 0);
    let mut buf = [0u8; 128];
    assert_eq!(v.getdents64(fd, &mut buf), Ok(48));
    v.close(fd).unwrap();
    assert_eq!(v.ram_usage("/tmp"), Ok((0, 8192)));
}

#[test]
fn poll_reports_closed_descriptors() {
    // Rust's std polls fds 0..3 at start and aborts on unexpected errors.
    let (mut v, _) = vfs();
    for fd in 0..3 {
        assert_eq!(v.poll(fd, POLLIN), POLLIN);
    }
    v.close(1).unwrap();
    assert_eq!(v.poll(1, POLLIN), POLLNVAL);
    assert_eq!(v.poll(-1, POLLIN), 0);
    assert_eq!(v.poll(2, 0), 0);
}

#[test]
fn log_lines_are_split_when_too_long() {
    let (mut v, log) = vfs();
    let fd = v.open(AT_FDCWD, "/dev/log", O_WRONLY, 0).unwrap();
    v.write(fd, &vec![b'x'; LOG_LINE_MAX + 10]).unwrap();
    assert_eq!(log.lines().len(), 1);
    assert_eq!(log.lines()[0].len(), LOG_LINE_MAX);
    v.flush_logs();
    assert_eq!(log.lines()[1].len(), 10);
    assert_eq!(v.pwrite(fd, b"x", 0), Err(Errno::ESPIPE));
    assert_eq!(v.lseek(fd, 0, SEEK_SET), Err(Errno::ESPIPE));
}

/// Random file operations in a ram directory against a model of names and
/// contents: data, listings and the limit's accounting must agree.
#[test]
fn random_ram_operations_match_a_model() {
    const LIMIT: u64 = 8192;
    let (mut v, _) = vfs();
    let mut model: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let names_pool = ["a", "b", "c", "d", "e"];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rand = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let used = |model: &BTreeMap<String, Vec<u8>>| {
        model
            .values()
            .map(|d| d.len() as u64 + RAM_ENTRY_COST)
            .sum::<u64>()
    };
    for step in 0..2000 {
        let name = names_pool[rand(names_pool.len())];
        let path = alloc::format!("/tmp/{name}");
        match rand(5) {
            0 => {
                // Write at a random offset, creating the file if needed.
                let offset = rand(3000);
                let data: Vec<u8> = (0..rand(2000)).map(|i| (i + step) as u8).collect();
                let existed = model.contains_key(name);
                let fd = v.open(AT_FDCWD, &path, O_WRONLY | O_CREAT, 0);
                if !existed && LIMIT - used(&model) < RAM_ENTRY_COST {
                    assert_eq!(fd, Err(Errno::ENOSPC), "step {step}");
                    continue;
                }
                let fd = fd.unwrap();
                model.entry(name.into()).or_default();
                // The file may grow by what the limit leaves.
                let max_len = model[name].len() + (LIMIT - used(&model)) as usize;
                v.lseek(fd, offset as i64, SEEK_SET).unwrap();
                let got = v.write(fd, &data);
                v.close(fd).unwrap();
                let expected = if data.is_empty() {
                    Ok(0)
                } else if offset >= max_len {
                    Err(Errno::ENOSPC)
                } else {
                    Ok(data.len().min(max_len - offset))
                };
                assert_eq!(got, expected, "step {step}");
                if let Ok(n @ 1..) = got {
                    let file = model.get_mut(name).unwrap();
                    if offset + n > file.len() {
                        file.resize(offset + n, 0);
                    }
                    file[offset..offset + n].copy_from_slice(&data[..n]);
                }
            }
            1 => {
                let got = v.unlink(&path);
                match model.remove(name) {
                    Some(_) => assert_eq!(got, Ok(()), "step {step}"),
                    None => assert_eq!(got, Err(Errno::ENOENT), "step {step}"),
                }
            }
            2 => {
                let to = names_pool[rand(names_pool.len())];
                let got = v.rename(AT_FDCWD, &path, AT_FDCWD, &alloc::format!("/tmp/{to}"), 0);
                match model.remove(name) {
                    Some(data) => {
                        assert_eq!(got, Ok(()), "step {step}");
                        model.insert(to.into(), data);
                    }
                    None => assert_eq!(got, Err(Errno::ENOENT), "step {step}"),
                }
            }
            3 => {
                let len = rand(4000);
                let got = v.truncate(&path, len as i64);
                match model.get_mut(name) {
                    None => assert_eq!(got, Err(Errno::ENOENT), "step {step}"),
                    Some(data) => {
                        let grow = (len as u64).saturating_sub(data.len() as u64);
                        let free = LIMIT - used(&model);
                        if grow > free {
                            assert_eq!(got, Err(Errno::ENOSPC), "step {step}");
                        } else {
                            assert_eq!(got, Ok(()), "step {step}");
                            model.get_mut(name).unwrap().resize(len, 0);
                        }
                    }
                }
            }
            _ => {
                let got = v.open(AT_FDCWD, &path, O_RDONLY, 0);
                match model.get(name) {
                    None => assert_eq!(got, Err(Errno::ENOENT), "step {step}"),
                    Some(data) => {
                        let fd = got.unwrap();
                        assert_eq!(&read_all(&mut v, fd), data, "step {step}");
                        v.close(fd).unwrap();
                    }
                }
            }
        }
        assert_eq!(
            v.ram_usage("/tmp"),
            Ok((used(&model), LIMIT)),
            "step {step}"
        );
        let mut listed = names(&mut v, "/tmp");
        listed.drain(..2);
        assert_eq!(
            listed,
            model.keys().cloned().collect::<Vec<_>>(),
            "step {step}"
        );
    }
}
