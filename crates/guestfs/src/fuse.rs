//! The guest tree served on the host through FUSE, read-write.
//!
//! `--host-run` scripts and the dialog's "Mount" entry work on the guest with ordinary
//! host tools. [`GuestMount::mount`] serves a [`GuestFs`] at a host directory from a
//! background thread; [`GuestMount::unmount`] gives the tree back once the kernel has let
//! go of it. Dropping a [`GuestMount`] always unmounts, lazily as a last resort.
//!
//! FUSE addresses objects by inode number and the guest tree by path, so the server keeps
//! a table of (parent inode, name) for every inode it has handed out, updated on rename
//! and unlink. Consequences, inherent to this design and shared with libfuse's high-level
//! API:
//! * every name of a hard-linked file is its own FUSE inode (the link count is right);
//! * a file unlinked while open can no longer be read or written through the open
//!   descriptor;
//! * symlinks are resolved by the host kernel: an absolute target read through the
//!   mount points into the *host*. Scripts must use relative paths (`etc/hostname`, not
//!   `/etc/hostname`), as the original's documentation says.
//!
//! The mount is `nosuid,nodev` and does not use `default_permissions`: scripts run as
//! root and get root's semantics; the only user allowed in is the one who mounted.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fuser::{
    BackgroundSession, Errno, FileAttr, FileHandle, FopenFlags, Generation, INodeNo, OpenFlags,
    RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};

use crate::error::Error;
use crate::node::{FileType, Metadata, NewNode, SetAttr};
use crate::tree::GuestFs;

/// How long the kernel may cache attributes and names. Every change goes through this
/// server, so caching is safe; it is short because hard links are separate inodes.
const TTL: Duration = Duration::from_secs(1);

/// The name shown as the mount's source in `/proc/self/mountinfo`.
pub const FS_NAME: &str = "snf-image-creator";

/// Inode number of the FUSE root.
const ROOT: u64 = 1;

/// What can go wrong mounting or unmounting the guest tree.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MountError {
    #[error("cannot mount the guest tree on {}: {source}", .mountpoint.display())]
    Mount {
        mountpoint: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot unmount {}: it is busy (a process is using files under it)", .mountpoint.display())]
    Busy { mountpoint: PathBuf },
    #[error("cannot unmount {}: {msg}", .mountpoint.display())]
    Unmount { mountpoint: PathBuf, msg: String },
    #[error("the FUSE server of {} failed: {msg}", .mountpoint.display())]
    Server { mountpoint: PathBuf, msg: String },
    /// Writing the guest tree back after unmounting failed.
    #[error("after unmounting {}: {source}", .mountpoint.display())]
    Flush {
        mountpoint: PathBuf,
        #[source]
        source: Error,
    },
}

impl MountError {
    /// Whether unmounting failed only because something still uses the mount (the
    /// caller may ask the user to close it and retry).
    pub fn is_busy(&self) -> bool {
        matches!(self, MountError::Busy { .. })
    }
}

/// A guest tree mounted on the host. Unmount with [`GuestMount::unmount`] to get the
/// tree back; dropping it unmounts too (and drops the tree).
pub struct GuestMount {
    mountpoint: PathBuf,
    shared: Arc<Mutex<Served>>,
    session: Option<BackgroundSession>,
    /// The FUSE connection number (minor of the mount's device), for aborting it.
    connection: Option<u32>,
}

impl std::fmt::Debug for GuestMount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestMount")
            .field("mountpoint", &self.mountpoint)
            .field("mounted", &self.session.is_some())
            .finish()
    }
}

impl GuestMount {
    /// Serve `guest` read-write (as far as its filesystems allow) at the existing host
    /// directory `mountpoint`, from a background thread. On failure the tree is given
    /// back with the error.
    ///
    /// Needs `/dev/fuse` and either root or the `fusermount3` helper (package fuse3).
    pub fn mount(guest: GuestFs, mountpoint: &Path) -> Result<GuestMount, (MountError, GuestFs)> {
        let shared = Arc::new(Mutex::new(Served {
            guest: Some(guest),
            nodes: Nodes::new(),
            dirs: HashMap::new(),
            next_fh: 1,
        }));
        let mut config = fuser::Config::default();
        config.mount_options = vec![
            fuser::MountOption::FSName(FS_NAME.into()),
            fuser::MountOption::Subtype(FS_NAME.into()),
            fuser::MountOption::RW,
            fuser::MountOption::NoSuid,
            fuser::MountOption::NoDev,
        ];
        let server = GuestFuse {
            shared: Arc::clone(&shared),
        };
        match fuser::spawn_mount(server, mountpoint, &config) {
            Ok(session) => {
                let connection = rustix::fs::stat(mountpoint)
                    .ok()
                    .map(|st| rustix::fs::minor(st.st_dev));
                Ok(GuestMount {
                    mountpoint: mountpoint.to_path_buf(),
                    shared,
                    session: Some(session),
                    connection,
                })
            }
            Err(source) => {
                let error = MountError::Mount {
                    mountpoint: mountpoint.to_path_buf(),
                    source,
                };
                // Only a GuestMount takes the tree out, and none was made.
                let guest = lock(&shared)
                    .guest
                    .take()
                    .expect("the tree is still served");
                Err((error, guest))
            }
        }
    }

    /// The host directory the tree is mounted on.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Ask the kernel to unmount, and wait for the server to stop. Fails with
    /// [`MountError::Busy`] while a process uses the mount; the mount then stays usable
    /// and this may be called again. Calling it after success does nothing.
    pub fn try_unmount(&mut self) -> Result<(), MountError> {
        if self.session.is_none() {
            return Ok(());
        }
        // A file closed a moment ago may still be held: the kernel releases it after
        // close() returns, and a child forked meanwhile by any thread of the process
        // holds a copy until it execs. Only a use that lasts is "busy".
        let mut pause = Duration::from_millis(10);
        loop {
            match unmount_path(&self.mountpoint, false) {
                Err(MountError::Busy { .. }) if pause <= Duration::from_millis(160) => {
                    std::thread::sleep(pause);
                    pause *= 2;
                }
                other => break other?,
            }
        }
        self.wait_server(None)
    }

    /// Unmount (see [`GuestMount::try_unmount`]) and give the tree back, with everything
    /// written through the mount flushed to its filesystems.
    pub fn unmount(mut self) -> Result<GuestFs, MountError> {
        self.try_unmount()?;
        self.synced_guest()
    }

    /// Unmount whatever uses the mount: a normal unmount, else a lazy one and an abort
    /// of the FUSE connection, so that no process can reach the tree any more; then give
    /// the tree back (flushed).
    pub fn force_unmount(mut self) -> Result<GuestFs, MountError> {
        self.force()?;
        self.synced_guest()
    }

    /// The tree back from the stopped server, with what was written through the mount
    /// flushed to its filesystems.
    fn synced_guest(&mut self) -> Result<GuestFs, MountError> {
        let mut guest = self.take_guest()?;
        guest.sync().map_err(|source| MountError::Flush {
            mountpoint: self.mountpoint.clone(),
            source,
        })?;
        Ok(guest)
    }

    fn force(&mut self) -> Result<(), MountError> {
        if self.session.is_none() {
            return Ok(());
        }
        if unmount_path(&self.mountpoint, false).is_ok() {
            return self.wait_server(None);
        }
        let lazy = unmount_path(&self.mountpoint, true);
        // Lazily detached, the server keeps answering whoever still has files open;
        // aborting the connection makes those calls fail and lets the server stop.
        if let Some(conn) = self.connection {
            abort_connection(conn);
        }
        lazy?;
        self.wait_server(Some(Duration::from_secs(5)))
    }

    /// Wait for the server thread to stop (it does once the kernel has released the
    /// connection); with a limit, leave it running past the limit.
    fn wait_server(&mut self, limit: Option<Duration>) -> Result<(), MountError> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        if let Some(limit) = limit {
            let start = Instant::now();
            while !session.guard.is_finished() {
                if start.elapsed() > limit {
                    // Dropping the handle detaches the thread; the tree stays with it.
                    return Err(MountError::Server {
                        mountpoint: self.mountpoint.clone(),
                        msg: "still serving processes that use the lazily unmounted tree".into(),
                    });
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
        session.join().map_err(|e| MountError::Server {
            mountpoint: self.mountpoint.clone(),
            msg: e.to_string(),
        })
    }

    fn take_guest(&mut self) -> Result<GuestFs, MountError> {
        lock(&self.shared)
            .guest
            .take()
            .ok_or_else(|| MountError::Server {
                mountpoint: self.mountpoint.clone(),
                msg: "the guest tree was lost".into(),
            })
    }
}

impl Drop for GuestMount {
    fn drop(&mut self) {
        let _ = self.force();
    }
}

/// Abort FUSE connection `conn` through the FUSE control filesystem, mounting it at its
/// standard place first if the system has not (systemd does at boot; minimal systems
/// may not). Only root can; failures leave the connection as it is.
fn abort_connection(conn: u32) {
    let dir = Path::new("/sys/fs/fuse/connections");
    let abort = dir.join(conn.to_string()).join("abort");
    if !abort.exists() && dir.is_dir() {
        let _ = rustix::mount::mount(
            "fusectl",
            dir,
            "fusectl",
            rustix::mount::MountFlags::empty(),
            None,
        );
    }
    let _ = std::fs::write(abort, b"1");
}

/// Unmount `mountpoint`: `umount2(2)` as root, `fusermount3 -u` otherwise.
fn unmount_path(mountpoint: &Path, lazy: bool) -> Result<(), MountError> {
    use rustix::mount::UnmountFlags;
    let flags = if lazy {
        UnmountFlags::DETACH
    } else {
        UnmountFlags::empty()
    };
    match rustix::mount::unmount(mountpoint, flags) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::BUSY) => Err(MountError::Busy {
            mountpoint: mountpoint.to_path_buf(),
        }),
        Err(rustix::io::Errno::PERM) => fusermount_unmount(mountpoint, lazy),
        // Not a mount point any more: someone unmounted it already.
        Err(rustix::io::Errno::INVAL) => Ok(()),
        Err(e) => Err(MountError::Unmount {
            mountpoint: mountpoint.to_path_buf(),
            msg: e.to_string(),
        }),
    }
}

fn fusermount_unmount(mountpoint: &Path, lazy: bool) -> Result<(), MountError> {
    let program = if snf_core::command::exists("fusermount3") {
        "fusermount3"
    } else {
        "fusermount"
    };
    let mut cmd = Command::new(program);
    cmd.arg("-u").arg("-q");
    if lazy {
        cmd.arg("-z");
    }
    cmd.arg("--").arg(mountpoint);
    // Unmounting waits on nothing but the kernel.
    match snf_core::command::run_with_limit(&mut cmd, std::time::Duration::from_secs(60)) {
        Ok(_) => Ok(()),
        Err(snf_core::command::CommandError::Failed { stderr, .. }) if stderr.contains("busy") => {
            Err(MountError::Busy {
                mountpoint: mountpoint.to_path_buf(),
            })
        }
        Err(e) => Err(MountError::Unmount {
            mountpoint: mountpoint.to_path_buf(),
            msg: e.to_string(),
        }),
    }
}

// ---- the server -------------------------------------------------------------------

/// State shared between the server thread and the [`GuestMount`].
struct Served {
    /// `None` only once the mount has taken the tree back.
    guest: Option<GuestFs>,
    nodes: Nodes,
    /// Directory listings taken at `opendir`, so that entries removed while a reader
    /// goes through the directory (`rm -rf`) do not shift the offsets.
    dirs: HashMap<u64, Vec<(u64, fuser::FileType, OsString)>>,
    next_fh: u64,
}

fn lock(shared: &Mutex<Served>) -> MutexGuard<'_, Served> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Node {
    /// 0 once the name is gone (unlinked, or replaced by a rename).
    parent: u64,
    name: OsString,
    /// Lookups the kernel has not forgotten yet.
    lookups: u64,
}

/// FUSE inode numbers and the guest name each stands for.
struct Nodes {
    nodes: HashMap<u64, Node>,
    children: HashMap<(u64, OsString), u64>,
    next: u64,
}

impl Nodes {
    fn new() -> Self {
        let mut nodes = HashMap::new();
        nodes.insert(
            ROOT,
            Node {
                parent: ROOT,
                name: OsString::new(),
                lookups: 1,
            },
        );
        Nodes {
            nodes,
            children: HashMap::new(),
            next: ROOT + 1,
        }
    }

    /// The guest path of `ino`; `None` for an unknown or removed node.
    fn path(&self, ino: u64) -> Option<PathBuf> {
        let mut names = Vec::new();
        let mut cur = ino;
        while cur != ROOT {
            let node = self.nodes.get(&cur)?;
            if node.parent == 0 || names.len() > 4096 {
                return None;
            }
            names.push(node.name.as_os_str());
            cur = node.parent;
        }
        let mut path = PathBuf::from("/");
        for name in names.iter().rev() {
            path.push(name);
        }
        Some(path)
    }

    fn parent(&self, ino: u64) -> u64 {
        self.nodes.get(&ino).map_or(ROOT, |n| n.parent.max(ROOT))
    }

    /// The inode for `name` in `parent`, made up if new.
    fn child(&mut self, parent: u64, name: &OsStr) -> u64 {
        let key = (parent, name.to_os_string());
        if let Some(&ino) = self.children.get(&key) {
            return ino;
        }
        let ino = self.next;
        self.next += 1;
        self.nodes.insert(
            ino,
            Node {
                parent,
                name: name.to_os_string(),
                lookups: 0,
            },
        );
        self.children.insert(key, ino);
        ino
    }

    /// The inode for `name` in `parent`, counting one lookup the kernel will forget.
    fn looked_up(&mut self, parent: u64, name: &OsStr) -> u64 {
        let ino = self.child(parent, name);
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.lookups += 1;
        }
        ino
    }

    /// The name `name` in `parent` is gone.
    fn remove(&mut self, parent: u64, name: &OsStr) {
        if let Some(ino) = self.children.remove(&(parent, name.to_os_string())) {
            match self.nodes.get_mut(&ino) {
                Some(node) if node.lookups == 0 => {
                    self.nodes.remove(&ino);
                }
                Some(node) => node.parent = 0,
                None => {}
            }
        }
    }

    /// `name` in `parent` now lives as `new_name` in `new_parent` (whatever was there
    /// before is gone).
    fn rename(&mut self, parent: u64, name: &OsStr, new_parent: u64, new_name: &OsStr) {
        self.remove(new_parent, new_name);
        if let Some(ino) = self.children.remove(&(parent, name.to_os_string())) {
            if let Some(node) = self.nodes.get_mut(&ino) {
                node.parent = new_parent;
                node.name = new_name.to_os_string();
            }
            self.children
                .insert((new_parent, new_name.to_os_string()), ino);
        }
    }

    fn forget(&mut self, ino: u64, n: u64) {
        if ino == ROOT {
            return;
        }
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.lookups = node.lookups.saturating_sub(n);
            // Live names stay: their inode number must not change while the name
            // exists. Removed ones are dropped once the kernel forgets them.
            if node.lookups == 0 && node.parent == 0 {
                self.nodes.remove(&ino);
            }
        }
    }
}

/// The errno a guest-tree error stands for.
fn errno(e: &Error) -> Errno {
    match e {
        Error::NotFound(_) => Errno::ENOENT,
        Error::NotADirectory(_) => Errno::ENOTDIR,
        Error::IsADirectory(_) => Errno::EISDIR,
        Error::NotEmpty(_) => Errno::ENOTEMPTY,
        Error::AlreadyExists(_) => Errno::EEXIST,
        Error::NotASymlink(_) | Error::InvalidPath(_) => Errno::EINVAL,
        Error::TooManySymlinks(_) => Errno::ELOOP,
        Error::ReadOnly(_) => Errno::EROFS,
        Error::CrossDevice(_) => Errno::EXDEV,
        Error::Unsupported { .. } => Errno::EOPNOTSUPP,
        Error::NoSpace(_) => Errno::ENOSPC,
        Error::Io { source, .. } => source.raw_os_error().map_or(Errno::EIO, Errno::from_i32),
        Error::Cancelled(_) => Errno::EINTR,
        _ => Errno::EIO,
    }
}

fn system_time(secs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
    } else {
        UNIX_EPOCH
            .checked_sub(Duration::from_secs(secs.unsigned_abs()))
            .unwrap_or(UNIX_EPOCH)
    }
}

fn epoch_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

fn time_or_now(t: TimeOrNow) -> i64 {
    match t {
        TimeOrNow::SpecificTime(t) => epoch_secs(t),
        TimeOrNow::Now => epoch_secs(SystemTime::now()),
    }
}

fn kind(t: FileType) -> fuser::FileType {
    match t {
        FileType::Directory => fuser::FileType::Directory,
        FileType::Symlink => fuser::FileType::Symlink,
        FileType::CharDevice => fuser::FileType::CharDevice,
        FileType::BlockDevice => fuser::FileType::BlockDevice,
        FileType::Fifo => fuser::FileType::NamedPipe,
        FileType::Socket => fuser::FileType::Socket,
        FileType::Regular | FileType::Unknown => fuser::FileType::RegularFile,
    }
}

fn attr(ino: u64, m: &Metadata) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size: m.size,
        blocks: m.allocated.div_ceil(512),
        atime: system_time(m.atime),
        mtime: system_time(m.mtime),
        ctime: system_time(m.ctime),
        crtime: system_time(m.ctime),
        kind: kind(m.file_type),
        perm: (m.mode & 0o7777) as u16,
        nlink: m.nlink,
        uid: m.uid,
        gid: m.gid,
        // Linux's "new" device encoding, which glibc's makedev agrees with below 2^32.
        rdev: u32::try_from(m.rdev).unwrap_or(0),
        blksize: 4096,
        flags: 0,
    }
}

/// A name the kernel sent, checked: one component, not `.` or `..`.
fn check_name(name: &OsStr) -> Result<(), Errno> {
    let b = name.as_bytes();
    if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') {
        return Err(Errno::EINVAL);
    }
    if b.len() > 255 {
        return Err(Errno::ENAMETOOLONG);
    }
    Ok(())
}

impl Served {
    fn guest(&mut self) -> Result<&mut GuestFs, Errno> {
        self.guest.as_mut().ok_or(Errno::EIO)
    }

    fn path(&self, ino: u64) -> Result<PathBuf, Errno> {
        self.nodes.path(ino).ok_or(Errno::ENOENT)
    }

    fn child_path(&self, parent: u64, name: &OsStr) -> Result<PathBuf, Errno> {
        check_name(name)?;
        Ok(self.path(parent)?.join(name))
    }

    fn lstat(&mut self, path: &Path) -> Result<Metadata, Errno> {
        self.guest()?.lstat(path).map_err(|e| errno(&e))
    }

    /// Whether `path` is where a filesystem of the guest is mounted (it cannot be
    /// removed or moved, as on a real system).
    fn is_mount_point(&mut self, path: &Path) -> Result<bool, Errno> {
        Ok(self.guest()?.mounts().iter().any(|m| m.mountpoint == path))
    }

    /// Owner and mode of a new object in directory `parent_path`: the caller's ids, or
    /// the directory's group when it is set-gid (directories inherit the bit).
    fn new_node(
        &mut self,
        req: &Request,
        parent_path: &Path,
        mode: u32,
        is_dir: bool,
    ) -> Result<NewNode, Errno> {
        let dir = self.lstat(parent_path)?;
        let mut node = NewNode {
            mode: mode & 0o7777,
            uid: req.uid(),
            gid: req.gid(),
        };
        if dir.mode & 0o2000 != 0 {
            node.gid = dir.gid;
            if is_dir {
                node.mode |= 0o2000;
            }
        }
        Ok(node)
    }

    /// Reply data for a name that now exists: its attributes and inode (one lookup).
    fn entry(&mut self, parent: u64, name: &OsStr, path: &Path) -> Result<FileAttr, Errno> {
        let meta = self.lstat(path)?;
        let ino = self.nodes.looked_up(parent, name);
        Ok(attr(ino, &meta))
    }

    fn lookup(&mut self, parent: u64, name: &OsStr) -> Result<FileAttr, Errno> {
        let path = self.child_path(parent, name)?;
        self.entry(parent, name, &path)
    }

    fn getattr(&mut self, ino: u64) -> Result<FileAttr, Errno> {
        let path = self.path(ino)?;
        let meta = self.lstat(&path)?;
        Ok(attr(ino, &meta))
    }

    fn setattr(&mut self, ino: u64, change: SetAttr, size: Option<u64>) -> Result<FileAttr, Errno> {
        let path = self.path(ino)?;
        let guest = self.guest()?;
        if change != SetAttr::default() {
            guest.set_attr(&path, change).map_err(|e| errno(&e))?;
        }
        if let Some(size) = size {
            guest.truncate(&path, size).map_err(|e| errno(&e))?;
        }
        self.getattr(ino)
    }

    fn create(
        &mut self,
        req: &Request,
        parent: u64,
        name: &OsStr,
        mode: u32,
        flags: i32,
    ) -> Result<FileAttr, Errno> {
        let path = self.child_path(parent, name)?;
        let exists = match self.lstat(&path) {
            Ok(meta) => Some(meta),
            Err(e) if e == Errno::ENOENT => None,
            Err(e) => return Err(e),
        };
        match exists {
            None => {
                let parent_path = self.path(parent)?;
                let node = self.new_node(req, &parent_path, mode, false)?;
                self.guest()?
                    .create_file(&path, node)
                    .map_err(|e| errno(&e))?;
            }
            // The kernel may skip the lookup and ask to create a name that exists:
            // then this is a plain open (or fails with O_EXCL), as open(2) does.
            Some(_) if flags & rustix::fs::OFlags::EXCL.bits() as i32 != 0 => {
                return Err(Errno::EEXIST)
            }
            Some(meta) if meta.is_dir() => return Err(Errno::EISDIR),
            Some(meta) => {
                if meta.is_file() && flags & rustix::fs::OFlags::TRUNC.bits() as i32 != 0 {
                    self.guest()?.truncate(&path, 0).map_err(|e| errno(&e))?;
                }
            }
        }
        self.entry(parent, name, &path)
    }

    fn mkdir(
        &mut self,
        req: &Request,
        parent: u64,
        name: &OsStr,
        mode: u32,
    ) -> Result<FileAttr, Errno> {
        let path = self.child_path(parent, name)?;
        let parent_path = self.path(parent)?;
        let node = self.new_node(req, &parent_path, mode, true)?;
        self.guest()?.mkdir(&path, node).map_err(|e| errno(&e))?;
        self.entry(parent, name, &path)
    }

    fn symlink(
        &mut self,
        req: &Request,
        parent: u64,
        name: &OsStr,
        target: &Path,
    ) -> Result<FileAttr, Errno> {
        let path = self.child_path(parent, name)?;
        let parent_path = self.path(parent)?;
        let node = self.new_node(req, &parent_path, 0o777, false)?;
        self.guest()?
            .symlink(target.as_os_str(), &path, node)
            .map_err(|e| errno(&e))?;
        self.entry(parent, name, &path)
    }

    fn link(&mut self, ino: u64, parent: u64, name: &OsStr) -> Result<FileAttr, Errno> {
        let existing = self.path(ino)?;
        let path = self.child_path(parent, name)?;
        self.guest()?
            .hard_link(&existing, &path)
            .map_err(|e| errno(&e))?;
        self.entry(parent, name, &path)
    }

    fn remove(&mut self, parent: u64, name: &OsStr, dir: bool) -> Result<(), Errno> {
        let path = self.child_path(parent, name)?;
        if self.is_mount_point(&path)? {
            return Err(Errno::EBUSY);
        }
        let guest = self.guest()?;
        if dir {
            guest.rmdir(&path)
        } else {
            guest.unlink(&path)
        }
        .map_err(|e| errno(&e))?;
        self.nodes.remove(parent, name);
        Ok(())
    }

    fn rename(
        &mut self,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
        flags: RenameFlags,
    ) -> Result<(), Errno> {
        let from = self.child_path(parent, name)?;
        let to = self.child_path(new_parent, new_name)?;
        if from == to {
            return Ok(());
        }
        if flags.intersects(RenameFlags::RENAME_EXCHANGE | RenameFlags::RENAME_WHITEOUT) {
            return Err(Errno::EINVAL);
        }
        if self.is_mount_point(&from)? || self.is_mount_point(&to)? {
            return Err(Errno::EBUSY);
        }
        let guest = self.guest()?;
        if flags.contains(RenameFlags::RENAME_NOREPLACE) && guest.lexists(&to) {
            return Err(Errno::EEXIST);
        }
        guest.rename(&from, &to).map_err(|e| errno(&e))?;
        self.nodes.rename(parent, name, new_parent, new_name);
        Ok(())
    }

    fn open(&mut self, ino: u64, flags: OpenFlags) -> Result<(), Errno> {
        let path = self.path(ino)?;
        let guest = self.guest()?;
        if flags.acc_mode() != fuser::OpenAccMode::O_RDONLY
            && !guest.is_writable(&path).map_err(|e| errno(&e))?
        {
            return Err(Errno::EROFS);
        }
        Ok(())
    }

    fn read(&mut self, ino: u64, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
        let path = self.path(ino)?;
        let guest = self.guest()?;
        let mut buf = vec![0u8; size as usize];
        let mut done = 0;
        while done < buf.len() {
            let n = guest
                .read_at(&path, offset + done as u64, &mut buf[done..])
                .map_err(|e| errno(&e))?;
            if n == 0 {
                break;
            }
            done += n;
        }
        buf.truncate(done);
        Ok(buf)
    }

    fn write(&mut self, ino: u64, offset: u64, data: &[u8]) -> Result<u32, Errno> {
        let path = self.path(ino)?;
        self.guest()?
            .write_at(&path, offset, data)
            .map_err(|e| errno(&e))?;
        u32::try_from(data.len()).map_err(|_| Errno::EINVAL)
    }

    fn opendir(&mut self, ino: u64) -> Result<u64, Errno> {
        let path = self.path(ino)?;
        let names = self.guest()?.read_dir(&path).map_err(|e| errno(&e))?;
        let mut entries = Vec::with_capacity(names.len() + 2);
        entries.push((ino, fuser::FileType::Directory, OsString::from(".")));
        entries.push((
            self.nodes.parent(ino),
            fuser::FileType::Directory,
            OsString::from(".."),
        ));
        for (name, t) in names {
            let child = self.nodes.child(ino, &name);
            entries.push((child, kind(t), name));
        }
        let fh = self.next_fh;
        self.next_fh += 1;
        self.dirs.insert(fh, entries);
        Ok(fh)
    }
}

/// The FUSE server: every request locks the shared state and works on the guest tree.
struct GuestFuse {
    shared: Arc<Mutex<Served>>,
}

impl GuestFuse {
    fn state(&self) -> MutexGuard<'_, Served> {
        lock(&self.shared)
    }
}

fn reply_entry(reply: ReplyEntry, r: Result<FileAttr, Errno>) {
    match r {
        Ok(a) => reply.entry(&TTL, &a, Generation(0)),
        Err(e) => reply.error(e),
    }
}

fn reply_empty(reply: ReplyEmpty, r: Result<(), Errno>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

impl fuser::Filesystem for GuestFuse {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        reply_entry(reply, self.state().lookup(parent.0, name));
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.state().nodes.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.state().getattr(ino.0) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let change = SetAttr {
            mode: mode.map(|m| m & 0o7777),
            uid,
            gid,
            atime: atime.map(time_or_now),
            mtime: mtime.map(time_or_now),
        };
        match self.state().setattr(ino.0, change, size) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let mut st = self.state();
        let r = st
            .path(ino.0)
            .and_then(|path| st.guest()?.read_link(&path).map_err(|e| errno(&e)));
        match r {
            Ok(target) => reply.data(target.as_bytes()),
            Err(e) => reply.error(e),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        // Only regular files: the guest-tree interface has no way to make device nodes,
        // fifos or sockets.
        const S_IFMT: u32 = 0o170000;
        const S_IFREG: u32 = 0o100000;
        if mode & S_IFMT != S_IFREG {
            reply.error(Errno::EOPNOTSUPP);
            return;
        }
        let flags = rustix::fs::OFlags::EXCL.bits() as i32;
        reply_entry(
            reply,
            self.state()
                .create(req, parent.0, name, mode & !umask, flags),
        );
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        reply_entry(
            reply,
            self.state().mkdir(req, parent.0, name, mode & !umask),
        );
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(reply, self.state().remove(parent.0, name, false));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(reply, self.state().remove(parent.0, name, true));
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        reply_entry(
            reply,
            self.state().symlink(req, parent.0, link_name, target),
        );
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply_empty(
            reply,
            self.state()
                .rename(parent.0, name, newparent.0, newname, flags),
        );
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        reply_entry(reply, self.state().link(ino.0, newparent.0, newname));
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.state().open(ino.0, flags) {
            Ok(()) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        match self.state().read(ino.0, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.state().write(ino.0, offset, data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: fuser::LockOwner,
        reply: ReplyEmpty,
    ) {
        // Writes reach the guest filesystem as they come: nothing is buffered here.
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let r = self
            .state()
            .guest()
            .and_then(|g| g.sync().map_err(|e| errno(&e)));
        reply_empty(reply, r);
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.state().opendir(ino.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let st = self.state();
        let Some(entries) = st.dirs.get(&fh.0) else {
            reply.error(Errno::EBADF);
            return;
        };
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        for (i, (ino, t, name)) in entries.iter().enumerate().skip(start) {
            // The offset given with an entry is where the next call resumes.
            if reply.add(INodeNo(*ino), i as u64 + 1, *t, name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.state().dirs.remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.fsync(req, ino, fh, datasync, reply);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // The guest-tree interface has no free-space query yet: report a large, mostly
        // free filesystem so that tools checking for space go ahead; a real shortage
        // still fails the write with ENOSPC.
        const BLOCKS: u64 = 1 << 28; // 1 TiB of 4 KiB blocks
        reply.statfs(
            BLOCKS,
            BLOCKS / 2,
            BLOCKS / 2,
            1 << 24,
            1 << 23,
            4096,
            255,
            4096,
        );
    }

    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: ReplyXattr,
    ) {
        reply.error(Errno::NO_XATTR);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, size: u32, reply: ReplyXattr) {
        if size == 0 {
            reply.size(0);
        } else {
            reply.data(&[]);
        }
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EOPNOTSUPP);
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::NO_XATTR);
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        // Root semantics: whatever exists may be accessed.
        let r = self.state().getattr(ino.0).map(|_| ());
        reply_empty(reply, r);
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        match self
            .state()
            .create(req, parent.0, name, mode & !umask, flags)
        {
            Ok(a) => reply.created(&TTL, &a, Generation(0), FileHandle(0), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_table_follows_renames_and_removals() {
        let mut n = Nodes::new();
        let etc = n.looked_up(ROOT, OsStr::new("etc"));
        let conf = n.looked_up(etc, OsStr::new("a.conf"));
        assert_eq!(n.path(conf).unwrap(), Path::new("/etc/a.conf"));
        let usr = n.looked_up(ROOT, OsStr::new("usr"));
        n.rename(ROOT, OsStr::new("etc"), usr, OsStr::new("etc2"));
        assert_eq!(n.path(conf).unwrap(), Path::new("/usr/etc2/a.conf"));
        // Same name, same inode; a removed name gets a fresh one.
        assert_eq!(n.child(usr, OsStr::new("etc2")), etc);
        n.remove(usr, OsStr::new("etc2"));
        assert!(n.path(conf).is_none());
        assert_ne!(n.child(usr, OsStr::new("etc2")), etc);
        // Forgotten removed nodes go away.
        n.forget(etc, 1);
        assert!(!n.nodes.contains_key(&etc));
    }

    #[test]
    fn rename_over_an_existing_name_drops_the_old_inode() {
        let mut n = Nodes::new();
        let a = n.looked_up(ROOT, OsStr::new("a"));
        let b = n.looked_up(ROOT, OsStr::new("b"));
        n.rename(ROOT, OsStr::new("a"), ROOT, OsStr::new("b"));
        assert_eq!(n.path(a).unwrap(), Path::new("/b"));
        assert!(n.path(b).is_none());
        assert_eq!(n.child(ROOT, OsStr::new("b")), a);
    }

    #[test]
    fn a_mount_can_move_between_threads() {
        fn send<T: Send>() {}
        send::<GuestMount>();
    }

    #[test]
    fn errors_map_to_errno() {
        assert_eq!(errno(&Error::NotFound(PathBuf::new())), Errno::ENOENT);
        assert_eq!(errno(&Error::NotEmpty(PathBuf::new())), Errno::ENOTEMPTY);
        assert_eq!(errno(&Error::CrossDevice(PathBuf::new())), Errno::EXDEV);
        assert_eq!(errno(&Error::ReadOnly(PathBuf::new())), Errno::EROFS);
        assert_eq!(errno(&Error::NoSpace(PathBuf::new())), Errno::ENOSPC);
        let io = Error::io(io::Error::from_raw_os_error(libc_eacces()));
        assert_eq!(errno(&io), Errno::EACCES);
        assert_eq!(errno(&Error::backend("boom")), Errno::EIO);
    }

    fn libc_eacces() -> i32 {
        rustix::io::Errno::ACCESS.raw_os_error()
    }

    #[test]
    fn negative_times_convert_both_ways() {
        assert_eq!(epoch_secs(system_time(-5)), -5);
        assert_eq!(epoch_secs(system_time(1_700_000_000)), 1_700_000_000);
    }
}
