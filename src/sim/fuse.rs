//! `sim mount`: the simulated kernel served over FUSE, so that `cat`, `echo >` and the agent's
//! real file I/O see sysfs semantics, errno included (testbed.md, "Simulated s390x hosts").

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use fuser::{
    BsdFileFlags, Config, Errno as FErrno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    LockOwner, MountOption, OpenAccMode, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplyOpen, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};

use super::{Node, SharedSim, lock};

/// Zero TTL: every `stat` and `cat` sees the current state.
const TTL: Duration = Duration::ZERO;

/// Path ↔ inode numbers (inodes are never reused while mounted).
#[derive(Default)]
struct Inodes {
    by_path: HashMap<String, u64>,
    paths: Vec<String>,
}

impl Inodes {
    fn new() -> Self {
        let mut i = Inodes::default();
        i.ino(""); // root = 1
        i
    }
    fn ino(&mut self, path: &str) -> u64 {
        if let Some(i) = self.by_path.get(path) {
            return *i;
        }
        self.paths.push(path.to_string());
        let i = self.paths.len() as u64;
        self.by_path.insert(path.to_string(), i);
        i
    }
    fn path(&self, ino: u64) -> Option<String> {
        self.paths.get(usize::try_from(ino).ok()?.checked_sub(1)?).cloned()
    }
}

pub struct SimFs {
    sim: SharedSim,
    inodes: Mutex<Inodes>,
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() { name.to_string() } else { format!("{parent}/{name}") }
}

fn attr(ino: u64, node: &Node) -> FileAttr {
    let (kind, perm, size, nlink) = match node {
        Node::Dir => (FileType::Directory, 0o755, 0, 2),
        // sysfs files report 4096 whatever their content
        Node::File(mode) => (FileType::RegularFile, *mode, 4096, 1),
        Node::Link(t) => (FileType::Symlink, 0o777, t.len() as u64, 1),
    };
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: 0,
        atime: t,
        mtime: t,
        ctime: t,
        crtime: t,
        kind,
        perm,
        nlink,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

impl SimFs {
    pub fn new(sim: SharedSim) -> SimFs {
        SimFs { sim, inodes: Mutex::new(Inodes::new()) }
    }
    fn inodes(&self) -> std::sync::MutexGuard<'_, Inodes> {
        self.inodes.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn path(&self, ino: INodeNo) -> Option<String> {
        self.inodes().path(ino.0)
    }
    fn node(&self, path: &str) -> Option<Node> {
        lock(&self.sim).kernel.node(path)
    }
}

impl Filesystem for SimFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let (Some(pp), Some(name)) = (self.path(parent), name.to_str()) else { return reply.error(FErrno::ENOENT) };
        let path = join(&pp, name);
        match self.node(&path) {
            Some(n) => {
                let ino = self.inodes().ino(&path);
                reply.entry(&TTL, &attr(ino, &n), Generation(0))
            }
            None => reply.error(FErrno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.path(ino).and_then(|p| self.node(&p)) {
            Some(n) => reply.attr(&TTL, &attr(ino.0, &n)),
            None => reply.error(FErrno::ENOENT),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        // `echo x > f` truncates first: sysfs ignores it, so a rejected write changes nothing.
        self.getattr(_req, ino, None, reply)
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.path(ino).and_then(|p| self.node(&p)) {
            Some(Node::Link(t)) => reply.data(t.as_bytes()),
            _ => reply.error(FErrno::EINVAL),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let Some(Node::File(mode)) = self.path(ino).and_then(|p| self.node(&p)) else {
            return reply.error(FErrno::ENOENT);
        };
        let (r, w) = match flags.acc_mode() {
            OpenAccMode::O_RDONLY => (true, false),
            OpenAccMode::O_WRONLY => (false, true),
            OpenAccMode::O_RDWR => (true, true),
        };
        // kernfs: opening for a direction the attribute lacks is EACCES, even for root
        if (r && mode & 0o444 == 0) || (w && mode & 0o222 == 0) {
            return reply.error(FErrno::EACCES);
        }
        reply.opened(FileHandle(0), FopenFlags::FOPEN_DIRECT_IO)
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let Some(path) = self.path(ino) else { return reply.error(FErrno::ENOENT) };
        match lock(&self.sim).read(&path) {
            Ok(v) => {
                let b = v.as_bytes();
                let start = (offset as usize).min(b.len());
                let end = (start + size as usize).min(b.len());
                reply.data(&b[start..end])
            }
            Err(e) => reply.error(FErrno::from_i32(e)),
        }
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let Some(path) = self.path(ino) else { return reply.error(FErrno::ENOENT) };
        let Ok(text) = std::str::from_utf8(data) else { return reply.error(FErrno::EINVAL) };
        let pid = req.pid();
        match lock(&self.sim).write(&path, text, Some(pid)) {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(FErrno::from_i32(e)),
        }
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        reply.ok()
    }

    fn getxattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, _size: u32, reply: ReplyXattr) {
        reply.error(FErrno::ENODATA)
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let Some(path) = self.path(ino) else { return reply.error(FErrno::ENOENT) };
        let Some(children) = lock(&self.sim).kernel.list(&path) else { return reply.error(FErrno::ENOTDIR) };
        let parent = path.rsplit_once('/').map(|(p, _)| p.to_string()).unwrap_or_default();
        let mut all: Vec<(u64, FileType, String)> = vec![
            (ino.0, FileType::Directory, ".".into()),
            (self.inodes().ino(&parent), FileType::Directory, "..".into()),
        ];
        for (name, node) in children {
            let kind = match node {
                Node::Dir => FileType::Directory,
                Node::File(_) => FileType::RegularFile,
                Node::Link(_) => FileType::Symlink,
            };
            all.push((self.inodes().ino(&join(&path, &name)), kind, name));
        }
        for (i, (ino, kind, name)) in all.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(ino), (i + 1) as u64, kind, name) {
                break;
            }
        }
        reply.ok()
    }
}

/// Mounts the simulator at `dir` in the background; dropping or `umount_and_join` unmounts.
pub fn mount(sim: SharedSim, dir: &Path) -> std::io::Result<fuser::BackgroundSession> {
    let mut cfg = Config::default();
    cfg.mount_options.extend([MountOption::FSName("cryptopass-sim".into()), MountOption::Subtype("sysfs".into())]);
    cfg.n_threads = Some(2);
    fuser::spawn_mount(SimFs::new(sim), dir, &cfg)
}

/// Unmounts a stale mount left by a killed run (ignores "not mounted").
pub fn unmount_stale(dir: &Path) {
    if let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) {
        // SAFETY: c is a valid NUL-terminated path for the duration of the call.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}
