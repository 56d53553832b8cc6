//! The per-process virtual file system, in the spirit of Genode 14.05.
//!
//! Owns: the tree the configuration describes ([`config`]), the writable
//! `ram` directories inside it, the open file descriptions, the descriptor
//! table ([`fd`]) and the working directory — and the Linux semantics of the
//! file system calls on them. Must not touch: user memory (calls take and
//! fill Rust slices; the caller copies), boot modules (read through
//! [`RomSource`]), the log and the console (written through [`LogSink`] and
//! [`Terminal`]), or blocking: a read from a terminal without input returns
//! `EAGAIN`; if the descriptor is blocking ([`Vfs::nonblocking`] is false) the
//! caller blocks the thread and retries when input arrives.
//!
//! Node kinds: directories (configured ones are read-only), `log` (writes
//! are line-buffered per open file and go to the [`LogSink`]; reads see end
//! of file), `null`, `zero`, `terminal`, `rom` (a boot module, read-only),
//! `inline` (configured text, read-only) and `ram` directories (files and
//! directories the program creates, within a size limit: file bytes plus
//! [`RAM_ENTRY_COST`] per entry).
//!
//! Standard streams: fds 0, 1 and 2 are opened from the `stdin`, `stdout`
//! and `stderr` settings, by default `/dev/null` (read-only) and `/dev/log`
//! (write-only). A default path that is not configured is created as a
//! `null` or `log` node. The working directory is `cwd` (default `/`).
//!
//! Paths are UTF-8 (the caller answers ENOENT for others). There are no
//! symbolic links, hard links, permissions (everything belongs to uid 0)
//! or time stamps (all zero).

pub mod abi;
pub mod config;
pub mod fd;
pub mod path;

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

pub use abi::*;
pub use config::{Problem, VfsConfigError, DEFAULT_RAM_SIZE};
pub use fd::{FdEntry, FdTable, MAX_FDS};

use crate::Errno;
use config::{Kind, Line, Setting};
use path::Path;

/// Where `log` nodes write.
pub trait LogSink {
    /// One line, with its `\n`, or a partial line when a file is closed or
    /// its line grows beyond [`LOG_LINE_MAX`].
    fn log(&mut self, text: &[u8]);
}

/// The boot modules, by name.
pub trait RomSource {
    fn rom(&self, name: &str) -> Option<&[u8]>;
    /// All module names, for `rom *`; none by default.
    fn names(&self) -> Vec<String> {
        Vec::new()
    }
}

/// The console connected to `terminal` nodes.
pub trait Terminal {
    /// Copies pending input into `buf`; 0 if there is none now.
    fn read(&mut self, buf: &mut [u8]) -> usize;
    fn write(&mut self, data: &[u8]);
    /// Whether input is pending (for `poll`). The default says no, so a
    /// terminal that does not override it is never reported readable.
    fn has_input(&self) -> bool {
        false
    }
}

/// The outside world of one file system.
pub struct Backends {
    pub roms: Box<dyn RomSource>,
    pub log: Box<dyn LogSink>,
    pub terminal: Option<Box<dyn Terminal>>,
}

/// Bytes one file or directory costs in a `ram` directory's limit, besides
/// its content.
pub const RAM_ENTRY_COST: u64 = 64;
/// A log line longer than this is passed on in pieces.
pub const LOG_LINE_MAX: usize = 1024;
/// Largest file a `ram` directory holds (bounded by its limit anyway).
const MAX_FILE_SIZE: u64 = 1 << 40;

type NodeId = usize;
const ROOT: NodeId = 0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Device {
    Null,
    Zero,
    Log,
    Terminal,
}

#[derive(Debug)]
enum Content {
    Dir(BTreeMap<String, NodeId>),
    /// A file in a ram directory.
    File(Vec<u8>),
    Rom(String),
    Inline(Vec<u8>),
    Device(Device),
}

#[derive(Debug)]
struct Node {
    content: Content,
    parent: NodeId,
    name: String,
    /// The ram file system holding it, if any.
    ram: Option<usize>,
    /// Made by the configuration: cannot be removed or renamed.
    configured: bool,
    /// Still has a name in the tree.
    linked: bool,
    /// Open file descriptions referring to it.
    opens: u32,
}

#[derive(Debug)]
struct RamFs {
    limit: u64,
    used: u64,
}

/// An open file description (shared by duplicated descriptors).
#[derive(Debug)]
struct OpenFile {
    node: NodeId,
    /// Access mode and the status flags `O_APPEND`, `O_NONBLOCK`.
    status: u32,
    offset: u64,
    refs: u32,
    /// Unfinished log line.
    line: Vec<u8>,
}

/// Status flags `F_SETFL` may change.
const SETFL_MASK: u32 = O_APPEND | O_NONBLOCK;

/// The file system of one process.
pub struct Vfs {
    nodes: Vec<Option<Node>>,
    free_nodes: Vec<NodeId>,
    rams: Vec<RamFs>,
    files: Vec<Option<OpenFile>>,
    fds: FdTable,
    cwd: NodeId,
    backends: Backends,
}

impl core::fmt::Debug for Vfs {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Vfs")
            .field("nodes", &self.nodes.len())
            .field("fds", &self.fds)
            .finish()
    }
}

impl Vfs {
    /// Builds the tree from `config` (see [`config`]) and opens fds 0, 1, 2.
    pub fn new(config: &str, backends: Backends) -> Result<Vfs, VfsConfigError> {
        let lines = config::parse(config)?;
        let mut vfs = Vfs {
            nodes: Vec::new(),
            free_nodes: Vec::new(),
            rams: Vec::new(),
            files: Vec::new(),
            fds: FdTable::new(),
            cwd: ROOT,
            backends,
        };
        vfs.nodes.push(Some(Node {
            content: Content::Dir(BTreeMap::new()),
            parent: ROOT,
            name: String::new(),
            ram: None,
            configured: true,
            linked: true,
            opens: 0,
        }));
        let mut settings: BTreeMap<&'static str, (usize, String)> = BTreeMap::new();
        for line in &lines {
            match line {
                Line::Node { line, path, kind } => vfs.configure(*line, path, kind)?,
                Line::Setting {
                    line,
                    setting,
                    path,
                } => {
                    settings.insert(setting.name(), (*line, path.clone()));
                }
            }
        }
        let streams = [
            (Setting::Stdin, "/dev/null", Kind::Null, O_RDONLY),
            (Setting::Stdout, "/dev/log", Kind::Log, O_WRONLY),
            (Setting::Stderr, "/dev/log", Kind::Log, O_WRONLY),
        ];
        for (setting, default, kind, mode) in streams {
            let (line, path) = match settings.get(setting.name()) {
                Some((line, path)) => (*line, path.clone()),
                None => (0, default.to_string()),
            };
            let err = |problem| VfsConfigError {
                line,
                text: alloc::format!("{} = {}", setting.name(), path),
                problem,
            };
            if line == 0 && vfs.lookup(AT_FDCWD, &path).is_err() {
                let comps: Vec<String> = default
                    .split('/')
                    .filter(|c| !c.is_empty())
                    .map(String::from)
                    .collect();
                vfs.configure(0, &comps, &kind)
                    .map_err(|e| err(e.problem))?;
            }
            match vfs.open(AT_FDCWD, &path, mode, 0) {
                Ok(_) => {}
                Err(Errno::ENOENT) => return Err(err(Problem::NoSuchPath(path.clone()))),
                Err(Errno::EISDIR) => return Err(err(Problem::IsADirectory(path.clone()))),
                Err(e) => return Err(err(Problem::CannotOpen(path.clone(), e))),
            }
        }
        if let Some((line, path)) = settings.get(Setting::Cwd.name()) {
            let err = |problem| VfsConfigError {
                line: *line,
                text: alloc::format!("cwd = {path}"),
                problem,
            };
            match vfs.chdir(path) {
                Ok(()) => {}
                Err(Errno::ENOTDIR) => return Err(err(Problem::NotADirectory(path.clone()))),
                Err(_) => return Err(err(Problem::NoSuchPath(path.clone()))),
            }
        }
        Ok(vfs)
    }

    /// Adds one configured node (and its implicit parents).
    fn configure(
        &mut self,
        line: usize,
        path: &[String],
        kind: &Kind,
    ) -> Result<(), VfsConfigError> {
        let text = || {
            let mut p = String::new();
            for c in path {
                p.push('/');
                p.push_str(c);
            }
            if p.is_empty() {
                p.push('/');
            }
            p
        };
        let err = |problem| VfsConfigError {
            line,
            text: text(),
            problem,
        };
        let mut dir = ROOT;
        for (i, comp) in path.iter().enumerate() {
            let node = self.node(dir);
            if node.ram.is_some() {
                return Err(err(Problem::InsideRam(text())));
            }
            let Content::Dir(children) = &node.content else {
                return Err(err(Problem::ParentNotDirectory(text())));
            };
            let last = i + 1 == path.len();
            match children.get(comp.as_str()).copied() {
                Some(existing) if last => {
                    let is_plain_dir = matches!(self.node(existing).content, Content::Dir(_))
                        && self.node(existing).ram.is_none();
                    if *kind == Kind::Dir && is_plain_dir {
                        return Ok(());
                    }
                    return Err(err(Problem::Duplicate(text())));
                }
                Some(existing) => dir = existing,
                None if last => {
                    return self.make_configured(dir, comp, kind).map_err(err);
                }
                None => {
                    dir = self.add_node(dir, comp, Content::Dir(BTreeMap::new()), None, true);
                }
            }
        }
        // The root itself.
        match kind {
            Kind::Dir => Ok(()),
            _ => Err(err(Problem::Duplicate(text()))),
        }
    }

    fn make_configured(&mut self, dir: NodeId, name: &str, kind: &Kind) -> Result<(), Problem> {
        let (content, ram) = match kind {
            Kind::Dir => (Content::Dir(BTreeMap::new()), None),
            Kind::Log => (Content::Device(Device::Log), None),
            Kind::Null => (Content::Device(Device::Null), None),
            Kind::Zero => (Content::Device(Device::Zero), None),
            Kind::Terminal => {
                if self.backends.terminal.is_none() {
                    return Err(Problem::NoTerminal);
                }
                (Content::Device(Device::Terminal), None)
            }
            Kind::Rom(module) => {
                if self.backends.roms.rom(module).is_none() {
                    return Err(Problem::NoSuchRom(module.clone()));
                }
                (Content::Rom(module.clone()), None)
            }
            Kind::Inline(text) => (Content::Inline(text.clone()), None),
            Kind::Ram(limit) => {
                self.rams.push(RamFs {
                    limit: *limit,
                    used: 0,
                });
                (Content::Dir(BTreeMap::new()), Some(self.rams.len() - 1))
            }
            Kind::AllRoms => {
                let id = self.add_node(dir, name, Content::Dir(BTreeMap::new()), None, true);
                for module in self.backends.roms.names() {
                    self.add_rom_by_name(id, &module);
                }
                return Ok(());
            }
        };
        self.add_node(dir, name, content, ram, true);
        Ok(())
    }

    /// Adds boot module `module` below `dir`; a name with `/` makes
    /// directories. Names that clash with what is there are skipped.
    fn add_rom_by_name(&mut self, dir: NodeId, module: &str) {
        let comps: Vec<&str> = module
            .split('/')
            .filter(|c| !c.is_empty() && *c != "." && *c != "..")
            .collect();
        let mut at = dir;
        for (i, comp) in comps.iter().enumerate() {
            let last = i + 1 == comps.len();
            match self.child(at, comp) {
                Some(existing)
                    if !last && matches!(self.node(existing).content, Content::Dir(_)) =>
                {
                    at = existing
                }
                Some(_) => return,
                None if last => {
                    self.add_node(at, comp, Content::Rom(module.to_string()), None, true);
                }
                None => at = self.add_node(at, comp, Content::Dir(BTreeMap::new()), None, true),
            }
        }
    }

    fn add_node(
        &mut self,
        parent: NodeId,
        name: &str,
        content: Content,
        ram: Option<usize>,
        configured: bool,
    ) -> NodeId {
        let node = Node {
            content,
            parent,
            name: name.to_string(),
            ram,
            configured,
            linked: true,
            opens: 0,
        };
        let id = match self.free_nodes.pop() {
            Some(id) => {
                self.nodes[id] = Some(node);
                id
            }
            None => {
                self.nodes.push(Some(node));
                self.nodes.len() - 1
            }
        };
        if let Content::Dir(children) = &mut self.node_mut(parent).content {
            children.insert(name.to_string(), id);
        }
        id
    }

    // ---- node access ----

    fn node(&self, id: NodeId) -> &Node {
        // Ids in the tree, in open files and the cwd always refer to live
        // nodes: a node is freed only when unlinked and no longer open.
        self.nodes[id].as_ref().expect("live node")
    }

    fn node_mut(&mut self, id: NodeId) -> &mut Node {
        self.nodes[id].as_mut().expect("live node")
    }

    fn child(&self, dir: NodeId, name: &str) -> Option<NodeId> {
        match &self.node(dir).content {
            Content::Dir(children) => children.get(name).copied(),
            _ => None,
        }
    }

    fn is_dir(&self, id: NodeId) -> bool {
        matches!(self.node(id).content, Content::Dir(_))
    }

    // ---- path resolution ----

    fn start(&self, dirfd: i32, path: &Path<'_>) -> Result<NodeId, Errno> {
        if path.absolute {
            return Ok(ROOT);
        }
        if dirfd == AT_FDCWD {
            return Ok(self.cwd);
        }
        let node = self.fd_node(dirfd)?;
        if !self.is_dir(node) {
            return Err(Errno::ENOTDIR);
        }
        Ok(node)
    }

    fn walk(&self, mut at: NodeId, components: &[&str]) -> Result<NodeId, Errno> {
        for &c in components {
            if !self.is_dir(at) {
                return Err(Errno::ENOTDIR);
            }
            if !self.node(at).linked {
                return Err(Errno::ENOENT);
            }
            at = match c {
                "." => at,
                ".." => self.node(at).parent,
                name => self.child(at, name).ok_or(Errno::ENOENT)?,
            };
        }
        Ok(at)
    }

    /// The node `path` names, relative to `dirfd` (or `AT_FDCWD`).
    fn lookup(&self, dirfd: i32, path: &str) -> Result<NodeId, Errno> {
        let p = Path::parse(path)?;
        let node = self.walk(self.start(dirfd, &p)?, &p.components)?;
        if p.trailing_slash && !self.is_dir(node) {
            return Err(Errno::ENOTDIR);
        }
        Ok(node)
    }

    /// The directory holding `path`'s last component, and that component
    /// (`None` for `.`, `..` or the root).
    fn lookup_parent<'p>(
        &self,
        dirfd: i32,
        path: &'p Path<'p>,
    ) -> Result<(NodeId, Option<&'p str>), Errno> {
        let start = self.start(dirfd, path)?;
        let (init, _) = path
            .components
            .split_at(path.components.len().saturating_sub(1));
        let dir = self.walk(start, init)?;
        if !self.is_dir(dir) {
            return Err(Errno::ENOTDIR);
        }
        Ok((dir, path.last_name()))
    }

    fn fd_file(&self, fd: i32) -> Result<usize, Errno> {
        Ok(self.fds.get(fd)?.file)
    }

    fn file(&self, fd: i32) -> Result<&OpenFile, Errno> {
        let index = self.fd_file(fd)?;
        Ok(self.files[index]
            .as_ref()
            .expect("open file of a descriptor"))
    }

    fn file_mut(&mut self, fd: i32) -> Result<&mut OpenFile, Errno> {
        let index = self.fd_file(fd)?;
        Ok(self.files[index]
            .as_mut()
            .expect("open file of a descriptor"))
    }

    fn fd_node(&self, fd: i32) -> Result<NodeId, Errno> {
        Ok(self.file(fd)?.node)
    }

    // ---- open and close ----

    /// `openat(dirfd, path, flags, mode)`: returns the new descriptor.
    /// Creation is possible only in ram directories (EROFS elsewhere).
    pub fn open(&mut self, dirfd: i32, path: &str, flags: u32, _mode: u32) -> Result<i32, Errno> {
        let access = flags & O_ACCMODE;
        if access == O_ACCMODE {
            return Err(Errno::EINVAL);
        }
        let writes = access != O_RDONLY && flags & O_PATH == 0;
        let p = Path::parse(path)?;
        let fd = self.fds.lowest_free(0)?;
        let node = if flags & O_CREAT != 0 {
            let (dir, last) = self.lookup_parent(dirfd, &p)?;
            match last {
                None => return Err(Errno::EISDIR),
                Some(name) => match self.child(dir, name) {
                    Some(_) if flags & O_EXCL != 0 => return Err(Errno::EEXIST),
                    Some(existing) => {
                        if self.is_dir(existing) {
                            return Err(Errno::EISDIR);
                        }
                        existing
                    }
                    None if p.trailing_slash => return Err(Errno::EISDIR),
                    None => self.create(dir, name, Content::File(Vec::new()))?,
                },
            }
        } else {
            self.lookup(dirfd, path)?
        };
        let is_dir = self.is_dir(node);
        if flags & O_DIRECTORY != 0 && !is_dir {
            return Err(Errno::ENOTDIR);
        }
        if is_dir && writes {
            return Err(Errno::EISDIR);
        }
        if writes && !self.writable(node) {
            return Err(Errno::EROFS);
        }
        if writes && flags & O_TRUNC != 0 {
            self.resize(node, 0)?;
        }
        let file = OpenFile {
            node,
            status: flags & (O_ACCMODE | O_APPEND | O_NONBLOCK | O_PATH),
            offset: 0,
            refs: 1,
            line: Vec::new(),
        };
        let index = match self.files.iter().position(Option::is_none) {
            Some(i) => {
                self.files[i] = Some(file);
                i
            }
            None => {
                self.files.push(Some(file));
                self.files.len() - 1
            }
        };
        self.node_mut(node).opens += 1;
        self.fds.set(
            fd,
            FdEntry {
                file: index,
                cloexec: flags & O_CLOEXEC != 0,
            },
        )?;
        Ok(fd)
    }

    /// Whether a node can be opened for writing.
    fn writable(&self, id: NodeId) -> bool {
        matches!(self.node(id).content, Content::File(_) | Content::Device(_))
    }

    /// Creates a node in ram directory `dir`.
    fn create(&mut self, dir: NodeId, name: &str, content: Content) -> Result<NodeId, Errno> {
        let ram = self.node(dir).ram.ok_or(Errno::EROFS)?;
        if !self.node(dir).linked {
            return Err(Errno::ENOENT);
        }
        self.charge(ram, RAM_ENTRY_COST)?;
        Ok(self.add_node(dir, name, content, Some(ram), false))
    }

    fn charge(&mut self, ram: usize, bytes: u64) -> Result<(), Errno> {
        let fs = &mut self.rams[ram];
        if fs.limit - fs.used < bytes {
            return Err(Errno::ENOSPC);
        }
        fs.used += bytes;
        Ok(())
    }

    /// `close(fd)`.
    pub fn close(&mut self, fd: i32) -> Result<(), Errno> {
        let entry = self.fds.remove(fd)?;
        self.drop_file(entry.file);
        Ok(())
    }

    /// Drops one reference to an open file description.
    fn drop_file(&mut self, index: usize) {
        let Some(file) = self.files[index].as_mut() else {
            return;
        };
        file.refs -= 1;
        if file.refs > 0 {
            return;
        }
        let Some(file) = self.files[index].take() else {
            return;
        };
        if !file.line.is_empty() {
            self.backends.log.log(&file.line);
        }
        self.node_mut(file.node).opens -= 1;
        self.free_if_unused(file.node);
    }

    fn free_if_unused(&mut self, id: NodeId) {
        let node = self.node(id);
        if node.linked || node.opens > 0 {
            return;
        }
        if let Some(ram) = node.ram {
            let size = match &node.content {
                Content::File(data) => data.len() as u64,
                _ => 0,
            };
            self.rams[ram].used -= size + RAM_ENTRY_COST;
        }
        self.nodes[id] = None;
        self.free_nodes.push(id);
    }

    /// Passes unfinished log lines of all open files on to the log (e.g.
    /// when the process exits).
    pub fn flush_logs(&mut self) {
        for file in self.files.iter_mut().flatten() {
            if !file.line.is_empty() {
                self.backends.log.log(&file.line);
                file.line.clear();
            }
        }
    }

    /// Closes every descriptor (the process exits).
    pub fn close_all(&mut self) {
        let fds: Vec<i32> = self.fds.fds().map(|(fd, _)| fd).collect();
        for fd in fds {
            let _ = self.close(fd);
        }
    }

    // ---- descriptors ----

    /// `dup(fd)`: the lowest free descriptor, sharing the open file.
    pub fn dup(&mut self, fd: i32) -> Result<i32, Errno> {
        self.dup_from(fd, 0, false)
    }

    fn dup_from(&mut self, fd: i32, min: i32, cloexec: bool) -> Result<i32, Errno> {
        let file = self.fd_file(fd)?;
        let new = self.fds.lowest_free(min)?;
        self.share(file, new, cloexec)?;
        Ok(new)
    }

    fn share(&mut self, file: usize, new: i32, cloexec: bool) -> Result<(), Errno> {
        let old = self.fds.set(new, FdEntry { file, cloexec })?;
        if let Some(f) = self.files[file].as_mut() {
            f.refs += 1;
        }
        if let Some(old) = old {
            self.drop_file(old.file);
        }
        Ok(())
    }

    /// `dup2(old, new)`: `new` (closed first if open) shares `old`'s file.
    pub fn dup2(&mut self, old: i32, new: i32) -> Result<i32, Errno> {
        let file = self.fd_file(old)?;
        if old == new {
            return Ok(new);
        }
        self.share(file, new, false)?;
        Ok(new)
    }

    /// `dup3(old, new, flags)`: as `dup2`, EINVAL if `old == new` or flags
    /// other than `O_CLOEXEC`.
    pub fn dup3(&mut self, old: i32, new: i32, flags: u32) -> Result<i32, Errno> {
        if flags & !O_CLOEXEC != 0 || old == new {
            return Err(Errno::EINVAL);
        }
        let file = self.fd_file(old)?;
        self.share(file, new, flags & O_CLOEXEC != 0)?;
        Ok(new)
    }

    /// `fcntl(fd, cmd, arg)` for descriptor and status flags, duplication
    /// and (no-op, single process) record locks.
    pub fn fcntl(&mut self, fd: i32, cmd: u32, arg: u64) -> Result<i64, Errno> {
        match cmd {
            F_DUPFD | F_DUPFD_CLOEXEC => {
                let min = i32::try_from(arg).map_err(|_| Errno::EINVAL)?;
                Ok(self.dup_from(fd, min, cmd == F_DUPFD_CLOEXEC)?.into())
            }
            F_GETFD => Ok(if self.fds.get(fd)?.cloexec {
                FD_CLOEXEC.into()
            } else {
                0
            }),
            F_SETFD => {
                self.fds.get_mut(fd)?.cloexec = arg & u64::from(FD_CLOEXEC) != 0;
                Ok(0)
            }
            F_GETFL => Ok(self.file(fd)?.status.into()),
            F_SETFL => {
                let file = self.file_mut(fd)?;
                file.status = (file.status & !SETFL_MASK) | (arg as u32 & SETFL_MASK);
                Ok(0)
            }
            F_GETLK | F_SETLK | F_SETLKW => {
                self.fds.get(fd)?;
                Ok(0)
            }
            _ => {
                self.fds.get(fd)?;
                Err(Errno::EINVAL)
            }
        }
    }

    /// Whether `fd` has `O_NONBLOCK`.
    pub fn nonblocking(&self, fd: i32) -> Result<bool, Errno> {
        Ok(self.file(fd)?.status & O_NONBLOCK != 0)
    }

    /// Whether `fd` is a terminal (for `ioctl(TCGETS)`; the caller answers
    /// ENOTTY when not).
    pub fn is_terminal(&self, fd: i32) -> Result<bool, Errno> {
        let node = self.fd_node(fd)?;
        Ok(matches!(
            self.node(node).content,
            Content::Device(Device::Terminal)
        ))
    }

    /// The `revents` of one `pollfd` (`poll`/`ppoll`): `POLLNVAL` for a
    /// descriptor that is not open, 0 for a negative one (poll ignores it),
    /// else the requested `POLLIN`/`POLLRDNORM`/`POLLOUT`/`POLLWRNORM` that
    /// are ready. Everything is always ready except a terminal without
    /// input; nothing here blocks.
    pub fn poll(&self, fd: i32, events: u16) -> u16 {
        if fd < 0 {
            return 0;
        }
        let Ok(node) = self.fd_node(fd) else {
            return POLLNVAL;
        };
        let readable = match self.node(node).content {
            Content::Device(Device::Terminal) => self
                .backends
                .terminal
                .as_ref()
                .is_some_and(|t| t.has_input()),
            _ => true,
        };
        let mut ready = POLLOUT | POLLWRNORM;
        if readable {
            ready |= POLLIN | POLLRDNORM;
        }
        events & ready
    }

    /// The descriptor table (for inspection).
    pub fn fds(&self) -> &FdTable {
        &self.fds
    }

    // ---- data ----

    /// `read(fd, buf)`.
    pub fn read(&mut self, fd: i32, buf: &mut [u8]) -> Result<usize, Errno> {
        let file = self.file(fd)?;
        if file.status & O_PATH != 0 || file.status & O_ACCMODE == O_WRONLY {
            return Err(Errno::EBADF);
        }
        let (node, offset) = (file.node, file.offset);
        let n = self.read_node(node, offset, buf)?;
        if self.seekable(node) {
            self.file_mut(fd)?.offset += n as u64;
        }
        Ok(n)
    }

    /// `pread64(fd, buf, offset)`: ESPIPE for log and terminal.
    pub fn pread(&mut self, fd: i32, buf: &mut [u8], offset: i64) -> Result<usize, Errno> {
        let file = self.file(fd)?;
        if file.status & O_PATH != 0 || file.status & O_ACCMODE == O_WRONLY {
            return Err(Errno::EBADF);
        }
        let node = file.node;
        let offset = u64::try_from(offset).map_err(|_| Errno::EINVAL)?;
        if self.is_stream(node) {
            return Err(Errno::ESPIPE);
        }
        self.read_node(node, offset, buf)
    }

    fn read_node(&mut self, node: NodeId, offset: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        let Vfs {
            nodes, backends, ..
        } = self;
        let node = nodes[node].as_ref().expect("live node");
        let data: &[u8] = match &node.content {
            Content::Dir(_) => return Err(Errno::EISDIR),
            Content::File(data) | Content::Inline(data) => data,
            Content::Rom(module) => backends.roms.rom(module).unwrap_or(&[]),
            Content::Device(Device::Null | Device::Log) => return Ok(0),
            Content::Device(Device::Zero) => {
                buf.fill(0);
                return Ok(buf.len());
            }
            Content::Device(Device::Terminal) => {
                if buf.is_empty() {
                    return Ok(0);
                }
                let terminal = backends.terminal.as_mut().ok_or(Errno::EIO)?;
                return match terminal.read(buf).min(buf.len()) {
                    0 => Err(Errno::EAGAIN),
                    n => Ok(n),
                };
            }
        };
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(data.len());
        let n = buf.len().min(data.len() - start);
        buf[..n].copy_from_slice(&data[start..start + n]);
        Ok(n)
    }

    /// `write(fd, data)`. A ram file that reaches its directory's limit takes
    /// what fits; ENOSPC if nothing does.
    pub fn write(&mut self, fd: i32, data: &[u8]) -> Result<usize, Errno> {
        let file = self.file(fd)?;
        if file.status & O_PATH != 0 || file.status & O_ACCMODE == O_RDONLY {
            return Err(Errno::EBADF);
        }
        let node = file.node;
        let append = file.status & O_APPEND != 0;
        match self.node(node).content {
            Content::Device(Device::Log) => {
                self.log_write(fd, data)?;
                Ok(data.len())
            }
            Content::File(ref contents) => {
                let offset = if append {
                    contents.len() as u64
                } else {
                    self.file(fd)?.offset
                };
                let n = self.write_node(node, offset, data)?;
                self.file_mut(fd)?.offset = offset + n as u64;
                Ok(n)
            }
            _ => self.write_node(node, 0, data),
        }
    }

    /// `pwrite64(fd, data, offset)`: ESPIPE for log and terminal; with
    /// `O_APPEND` the data goes to the end, as on Linux.
    pub fn pwrite(&mut self, fd: i32, data: &[u8], offset: i64) -> Result<usize, Errno> {
        let file = self.file(fd)?;
        if file.status & O_PATH != 0 || file.status & O_ACCMODE == O_RDONLY {
            return Err(Errno::EBADF);
        }
        let (node, append) = (file.node, file.status & O_APPEND != 0);
        let offset = u64::try_from(offset).map_err(|_| Errno::EINVAL)?;
        if self.is_stream(node) {
            return Err(Errno::ESPIPE);
        }
        let offset = match &self.node(node).content {
            Content::File(contents) if append => contents.len() as u64,
            _ => offset,
        };
        self.write_node(node, offset, data)
    }

    fn write_node(&mut self, node: NodeId, offset: u64, data: &[u8]) -> Result<usize, Errno> {
        let Vfs {
            nodes,
            backends,
            rams,
            ..
        } = self;
        let node = nodes[node].as_mut().expect("live node");
        match &mut node.content {
            Content::Dir(_) => Err(Errno::EISDIR),
            Content::Rom(_) | Content::Inline(_) => Err(Errno::EBADF),
            Content::Device(Device::Null | Device::Zero) => Ok(data.len()),
            Content::Device(Device::Log) => {
                backends.log.log(data);
                Ok(data.len())
            }
            Content::Device(Device::Terminal) => {
                backends.terminal.as_mut().ok_or(Errno::EIO)?.write(data);
                Ok(data.len())
            }
            Content::File(contents) => {
                if data.is_empty() {
                    return Ok(0);
                }
                let fs = &mut rams[node.ram.expect("ram file")];
                let old_len = contents.len() as u64;
                let max_len = (old_len + (fs.limit - fs.used)).min(MAX_FILE_SIZE);
                if offset >= max_len {
                    return Err(if offset >= MAX_FILE_SIZE {
                        Errno::EFBIG
                    } else {
                        Errno::ENOSPC
                    });
                }
                let n = (data.len() as u64).min(max_len - offset) as usize;
                let end = offset as usize + n;
                if end > contents.len() {
                    contents.resize(end, 0);
                }
                contents[offset as usize..end].copy_from_slice(&data[..n]);
                fs.used += contents.len() as u64 - old_len;
                Ok(n)
            }
        }
    }

    /// Line-buffers log output of one open file.
    fn log_write(&mut self, fd: i32, data: &[u8]) -> Result<(), Errno> {
        let index = self.fd_file(fd)?;
        let Vfs {
            files, backends, ..
        } = self;
        let file = files[index].as_mut().expect("open file of a descriptor");
        for &b in data {
            file.line.push(b);
            if b == b'\n' || file.line.len() >= LOG_LINE_MAX {
                backends.log.log(&file.line);
                file.line.clear();
            }
        }
        Ok(())
    }

    /// Log and terminal have no file position.
    fn is_stream(&self, node: NodeId) -> bool {
        matches!(
            self.node(node).content,
            Content::Device(Device::Log | Device::Terminal)
        )
    }

    /// Reads and writes move the file position.
    fn seekable(&self, node: NodeId) -> bool {
        matches!(
            self.node(node).content,
            Content::File(_) | Content::Rom(_) | Content::Inline(_)
        )
    }

    fn size(&self, node: NodeId) -> u64 {
        match &self.node(node).content {
            Content::File(data) | Content::Inline(data) => data.len() as u64,
            Content::Rom(module) => self.backends.roms.rom(module).map_or(0, |d| d.len() as u64),
            Content::Dir(_) | Content::Device(_) => 0,
        }
    }

    /// `lseek(fd, offset, whence)`: returns the new position. ESPIPE for
    /// log and terminal; directories only rewind (`SEEK_SET` to a position
    /// `getdents64` gave).
    pub fn lseek(&mut self, fd: i32, offset: i64, whence: u32) -> Result<u64, Errno> {
        let node = self.fd_node(fd)?;
        if self.is_stream(node) {
            return Err(Errno::ESPIPE);
        }
        let current = self.file(fd)?.offset;
        let base = match whence {
            SEEK_SET => 0,
            SEEK_CUR => current,
            SEEK_END if !self.is_dir(node) => self.size(node),
            _ => return Err(Errno::EINVAL),
        };
        let new = i64::try_from(base)
            .ok()
            .and_then(|b| b.checked_add(offset))
            .ok_or(Errno::EOVERFLOW)?;
        let new = u64::try_from(new).map_err(|_| Errno::EINVAL)?;
        if matches!(self.node(node).content, Content::Device(_)) {
            return Ok(0);
        }
        self.file_mut(fd)?.offset = new;
        Ok(new)
    }

    /// `ftruncate(fd, len)`: ram files open for writing only (EINVAL else).
    pub fn ftruncate(&mut self, fd: i32, len: i64) -> Result<(), Errno> {
        let file = self.file(fd)?;
        let len = u64::try_from(len).map_err(|_| Errno::EINVAL)?;
        if file.status & O_ACCMODE == O_RDONLY || file.status & O_PATH != 0 {
            return Err(Errno::EINVAL);
        }
        let node = file.node;
        if !matches!(self.node(node).content, Content::File(_)) {
            return Err(Errno::EINVAL);
        }
        self.resize(node, len)
    }

    /// `truncate(path, len)`.
    pub fn truncate(&mut self, path: &str, len: i64) -> Result<(), Errno> {
        let len = u64::try_from(len).map_err(|_| Errno::EINVAL)?;
        let node = self.lookup(AT_FDCWD, path)?;
        match self.node(node).content {
            Content::Dir(_) => Err(Errno::EISDIR),
            Content::File(_) => self.resize(node, len),
            Content::Rom(_) | Content::Inline(_) => Err(Errno::EROFS),
            Content::Device(_) => Err(Errno::EINVAL),
        }
    }

    /// Sets a ram file's length (no-op for other nodes).
    fn resize(&mut self, node: NodeId, len: u64) -> Result<(), Errno> {
        let Vfs { nodes, rams, .. } = self;
        let node = nodes[node].as_mut().expect("live node");
        let Content::File(data) = &mut node.content else {
            return Ok(());
        };
        let fs = &mut rams[node.ram.expect("ram file")];
        let old = data.len() as u64;
        if len > MAX_FILE_SIZE {
            return Err(Errno::EFBIG);
        }
        if len > old && len - old > fs.limit - fs.used {
            return Err(Errno::ENOSPC);
        }
        data.resize(len as usize, 0);
        if len < old {
            data.shrink_to(len as usize);
        }
        fs.used = fs.used + len - old;
        Ok(())
    }

    /// `fsync`/`fdatasync`: nothing to do, EBADF for a closed descriptor.
    pub fn fsync(&self, fd: i32) -> Result<(), Errno> {
        self.fds.get(fd).map(|_| ())
    }

    // ---- metadata ----

    fn stat_node(&self, id: NodeId) -> Stat {
        let node = self.node(id);
        let (mode, rdev, nlink) = match &node.content {
            Content::Dir(children) => {
                let subdirs = children.values().filter(|&&c| self.is_dir(c)).count() as u64;
                let perm = if node.ram.is_some() { 0o755 } else { 0o555 };
                (S_IFDIR | perm, 0, 2 + subdirs)
            }
            Content::File(_) => (S_IFREG | 0o644, 0, 1),
            Content::Rom(_) | Content::Inline(_) => (S_IFREG | 0o444, 0, 1),
            Content::Device(d) => {
                let (major, minor) = match d {
                    Device::Null => (1, 3),
                    Device::Zero => (1, 5),
                    Device::Log => (1, 11),
                    Device::Terminal => (5, 1),
                };
                (S_IFCHR | 0o666, makedev(major, minor), 1)
            }
        };
        let size = self.size(id);
        Stat {
            dev: makedev(0, node.ram.map_or(1, |r| r as u32 + 2)),
            ino: id as u64 + 1,
            nlink: if node.linked { nlink } else { 0 },
            mode,
            uid: 0,
            gid: 0,
            rdev,
            size,
            blksize: 4096,
            blocks: size.div_ceil(512),
        }
    }

    /// `fstat(fd)`.
    pub fn fstat(&self, fd: i32) -> Result<Stat, Errno> {
        Ok(self.stat_node(self.fd_node(fd)?))
    }

    /// `newfstatat(dirfd, path, flags)` and `statx`'s lookup: flags may hold
    /// `AT_SYMLINK_NOFOLLOW` (no links anyway), `AT_NO_AUTOMOUNT`,
    /// `AT_STATX_*` sync bits and `AT_EMPTY_PATH` (an empty path means
    /// `dirfd` itself).
    pub fn stat_at(&self, dirfd: i32, path: &str, flags: u32) -> Result<Stat, Errno> {
        const ALLOWED: u32 = AT_SYMLINK_NOFOLLOW | 0x800 | AT_EMPTY_PATH | 0x6000;
        if flags & !ALLOWED != 0 {
            return Err(Errno::EINVAL);
        }
        if path.is_empty() && flags & AT_EMPTY_PATH != 0 {
            if dirfd == AT_FDCWD {
                return Ok(self.stat_node(self.cwd));
            }
            return self.fstat(dirfd);
        }
        Ok(self.stat_node(self.lookup(dirfd, path)?))
    }

    /// `getdents64(fd, buf)`: fills `buf` with records from the directory's
    /// position on (`.` and `..` first, then names in byte order); 0 at the
    /// end, EINVAL if `buf` cannot hold the next record.
    pub fn getdents64(&mut self, fd: i32, buf: &mut [u8]) -> Result<usize, Errno> {
        let file = self.file(fd)?;
        let (dir, mut position) = (file.node, file.offset);
        let Content::Dir(children) = &self.node(dir).content else {
            return Err(Errno::ENOTDIR);
        };
        let parent = self.node(dir).parent;
        let parent_ino = if self.nodes[parent].is_some() {
            parent
        } else {
            dir
        } as u64
            + 1;
        let mut written = 0;
        let specials = [(".", dir as u64 + 1), ("..", parent_ino)];
        let skip = usize::try_from(position).unwrap_or(usize::MAX);
        let entries = specials
            .into_iter()
            .map(|(name, ino)| (name, ino, DT_DIR))
            .chain(children.iter().map(|(name, &id)| {
                let d_type = match self.node(id).content {
                    Content::Dir(_) => DT_DIR,
                    Content::Device(_) => DT_CHR,
                    _ => DT_REG,
                };
                (name.as_str(), id as u64 + 1, d_type)
            }))
            .skip(skip);
        for (name, ino, d_type) in entries {
            match write_dirent64(&mut buf[written..], ino, position + 1, d_type, name) {
                Some(n) => {
                    written += n;
                    position += 1;
                }
                None if written == 0 => return Err(Errno::EINVAL),
                None => break,
            }
        }
        self.file_mut(fd)?.offset = position;
        Ok(written)
    }

    /// The working directory's absolute path.
    pub fn getcwd(&self) -> String {
        self.path_of(self.cwd)
    }

    fn path_of(&self, mut id: NodeId) -> String {
        let mut names = Vec::new();
        while id != ROOT {
            let node = self.node(id);
            names.push(node.name.as_str());
            id = node.parent;
        }
        if names.is_empty() {
            return "/".to_string();
        }
        let mut path = String::new();
        for name in names.iter().rev() {
            path.push('/');
            path.push_str(name);
        }
        path
    }

    /// `chdir(path)`.
    pub fn chdir(&mut self, path: &str) -> Result<(), Errno> {
        let node = self.lookup(AT_FDCWD, path)?;
        if !self.is_dir(node) {
            return Err(Errno::ENOTDIR);
        }
        self.cwd = node;
        Ok(())
    }

    /// `fchdir(fd)`.
    pub fn fchdir(&mut self, fd: i32) -> Result<(), Errno> {
        let node = self.fd_node(fd)?;
        if !self.is_dir(node) {
            return Err(Errno::ENOTDIR);
        }
        self.cwd = node;
        Ok(())
    }

    /// `faccessat(dirfd, path, mode, flags)`: existence, EROFS for `W_OK` on
    /// read-only nodes, EACCES for `X_OK` on files.
    pub fn access(&self, dirfd: i32, path: &str, mode: u32, flags: u32) -> Result<(), Errno> {
        if mode & !(R_OK | W_OK | X_OK) != 0
            || flags & !(AT_EACCESS | AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH) != 0
        {
            return Err(Errno::EINVAL);
        }
        let node = if path.is_empty() && flags & AT_EMPTY_PATH != 0 {
            if dirfd == AT_FDCWD {
                self.cwd
            } else {
                self.fd_node(dirfd)?
            }
        } else {
            self.lookup(dirfd, path)?
        };
        let is_dir = self.is_dir(node);
        if mode & W_OK != 0 {
            let writable = self.writable(node) || (is_dir && self.node(node).ram.is_some());
            if !writable {
                return Err(Errno::EROFS);
            }
        }
        if mode & X_OK != 0 && !is_dir {
            return Err(Errno::EACCES);
        }
        Ok(())
    }

    /// `readlinkat`: there are no links, so EINVAL for anything that exists.
    pub fn readlink(&self, dirfd: i32, path: &str) -> Result<usize, Errno> {
        self.lookup(dirfd, path)?;
        Err(Errno::EINVAL)
    }

    // ---- changing the tree (ram directories only) ----

    /// `mkdirat(dirfd, path, mode)`.
    pub fn mkdir(&mut self, dirfd: i32, path: &str, _mode: u32) -> Result<(), Errno> {
        let p = Path::parse(path)?;
        let (dir, last) = self.lookup_parent(dirfd, &p)?;
        let name = last.ok_or(Errno::EEXIST)?;
        if self.child(dir, name).is_some() {
            return Err(Errno::EEXIST);
        }
        self.create(dir, name, Content::Dir(BTreeMap::new()))?;
        Ok(())
    }

    /// `unlinkat(dirfd, path, flags)`: `AT_REMOVEDIR` makes it `rmdir`.
    pub fn unlink_at(&mut self, dirfd: i32, path: &str, flags: u32) -> Result<(), Errno> {
        match flags {
            0 => self.remove(dirfd, path, false),
            AT_REMOVEDIR => self.remove(dirfd, path, true),
            _ => Err(Errno::EINVAL),
        }
    }

    /// `unlink(path)`.
    pub fn unlink(&mut self, path: &str) -> Result<(), Errno> {
        self.remove(AT_FDCWD, path, false)
    }

    /// `rmdir(path)`.
    pub fn rmdir(&mut self, path: &str) -> Result<(), Errno> {
        self.remove(AT_FDCWD, path, true)
    }

    fn remove(&mut self, dirfd: i32, path: &str, dir_wanted: bool) -> Result<(), Errno> {
        let p = Path::parse(path)?;
        let (dir, last) = self.lookup_parent(dirfd, &p)?;
        let Some(name) = last else {
            return Err(match (dir_wanted, p.components.last()) {
                (false, _) => Errno::EISDIR,
                (true, Some(&"..")) => Errno::ENOTEMPTY,
                (true, Some(_)) => Errno::EINVAL,
                (true, None) => Errno::EBUSY,
            });
        };
        let victim = self.child(dir, name).ok_or(Errno::ENOENT)?;
        match (&self.node(victim).content, dir_wanted) {
            (Content::Dir(_), false) => return Err(Errno::EISDIR),
            (Content::Dir(children), true) => {
                self.removable(victim)?;
                if !children.is_empty() {
                    return Err(Errno::ENOTEMPTY);
                }
                if victim == self.cwd {
                    return Err(Errno::EBUSY);
                }
            }
            (_, true) => return Err(Errno::ENOTDIR),
            (_, false) => {
                if p.trailing_slash {
                    return Err(Errno::ENOTDIR);
                }
                self.removable(victim)?;
            }
        }
        self.detach(dir, name, victim);
        Ok(())
    }

    /// Whether the program may remove or rename `id`: configured nodes
    /// cannot (EBUSY for a ram directory's mount point, EROFS else).
    fn removable(&self, id: NodeId) -> Result<(), Errno> {
        let node = self.node(id);
        match (node.configured, node.ram) {
            (false, _) => Ok(()),
            (true, Some(_)) => Err(Errno::EBUSY),
            (true, None) => Err(Errno::EROFS),
        }
    }

    /// Takes `victim` out of `dir` and frees it unless it is open.
    fn detach(&mut self, dir: NodeId, name: &str, victim: NodeId) {
        if let Content::Dir(children) = &mut self.node_mut(dir).content {
            children.remove(name);
        }
        self.node_mut(victim).linked = false;
        self.free_if_unused(victim);
    }

    /// `renameat2(olddirfd, old, newdirfd, new, flags)` inside one ram
    /// directory (EXDEV across, EROFS or EBUSY for configured nodes). Flags:
    /// `RENAME_NOREPLACE`; `RENAME_EXCHANGE` is EINVAL.
    pub fn rename(
        &mut self,
        olddirfd: i32,
        old: &str,
        newdirfd: i32,
        new: &str,
        flags: u32,
    ) -> Result<(), Errno> {
        if flags & !RENAME_NOREPLACE != 0 {
            return Err(Errno::EINVAL);
        }
        let op = Path::parse(old)?;
        let np = Path::parse(new)?;
        let (odir, oname) = self.lookup_parent(olddirfd, &op)?;
        let (ndir, nname) = self.lookup_parent(newdirfd, &np)?;
        let oname = oname.ok_or(Errno::EBUSY)?;
        let nname = nname.ok_or(Errno::EBUSY)?;
        let src = self.child(odir, oname).ok_or(Errno::ENOENT)?;
        let src_is_dir = self.is_dir(src);
        if (op.trailing_slash || np.trailing_slash) && !src_is_dir {
            return Err(Errno::ENOTDIR);
        }
        self.removable(src)?;
        let ram = self.node(ndir).ram.ok_or(Errno::EROFS)?;
        if self.node(src).ram != Some(ram) {
            return Err(Errno::EXDEV);
        }
        if src_is_dir {
            // Not into itself or its own subtree.
            let mut at = ndir;
            loop {
                if at == src {
                    return Err(Errno::EINVAL);
                }
                if at == ROOT {
                    break;
                }
                at = self.node(at).parent;
            }
        }
        if let Some(target) = self.child(ndir, nname) {
            if target == src {
                return Ok(());
            }
            if flags & RENAME_NOREPLACE != 0 {
                return Err(Errno::EEXIST);
            }
            match (&self.node(target).content, src_is_dir) {
                (Content::Dir(_), false) => return Err(Errno::EISDIR),
                (Content::Dir(children), true) if !children.is_empty() => {
                    return Err(Errno::ENOTEMPTY)
                }
                (Content::Dir(_), true) if target == self.cwd => return Err(Errno::EBUSY),
                (Content::Dir(_), true) => {}
                (_, true) => return Err(Errno::ENOTDIR),
                (_, false) => {}
            }
            self.detach(ndir, nname, target);
        }
        if let Content::Dir(children) = &mut self.node_mut(odir).content {
            children.remove(oname);
        }
        if let Content::Dir(children) = &mut self.node_mut(ndir).content {
            children.insert(nname.to_string(), src);
        }
        let node = self.node_mut(src);
        node.parent = ndir;
        node.name = nname.to_string();
        Ok(())
    }

    /// Bytes used and the limit of the ram directory holding `path`.
    pub fn ram_usage(&self, path: &str) -> Result<(u64, u64), Errno> {
        let node = self.lookup(AT_FDCWD, path)?;
        let ram = self.node(node).ram.ok_or(Errno::EINVAL)?;
        Ok((self.rams[ram].used, self.rams[ram].limit))
    }
}

#[cfg(test)]
mod tests;
