//! Copy one filesystem's tree to another directory, file by file, the way a bundle needs
//! it: nothing followed (every name opened with `O_NOFOLLOW` from its directory's
//! handle), no other mount entered (its mount point stays an empty directory), and
//! everything kept: owners, modes, timestamps, hard links, symlinks, device nodes,
//! FIFOs, sockets, holes of sparse files, extended attributes and ACLs (ACLs are the
//! `system.posix_acl_*` attributes).
//!
//! The host keeps running while it is copied: a name that disappears or changes type
//! between the listing and the copy is a warning naming it, not a failure.

use std::collections::{HashMap, HashSet};
use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rustix::fs::{
    AtFlags, Dir, FileType, Mode, OFlags, SeekFrom, Statx, StatxFlags, Timespec, Timestamps,
    XattrFlags, CWD,
};
use rustix::io::Errno;
use snf_core::{Cancelled, Reporter, Task};

/// A file's identity: device (major, minor) and inode.
pub type FileId = (u32, u32, u64);

/// The identity of `path` itself (a symlink is not followed).
pub fn file_id(path: &Path) -> io::Result<FileId> {
    let st = statx_at(CWD, path)?;
    Ok((st.stx_dev_major, st.stx_dev_minor, st.stx_ino))
}

/// What to leave out, and whom to tell.
pub struct CopyOptions<'a> {
    /// Files and directories never copied at all (the work directory, the output file
    /// and its side files), by identity so that no spelling of their path matters.
    pub skip: HashSet<FileId>,
    /// Directories, relative to the source root, copied without their contents
    /// (`tmp`, `var/tmp`).
    pub empty: Vec<PathBuf>,
    /// Advanced by the bytes of file data copied.
    pub task: Option<&'a dyn Task>,
    pub reporter: &'a dyn Reporter,
    /// Called with each entry's path (relative to the source root) just before it is
    /// examined: lets a test change the tree at a precise moment of the walk.
    #[doc(hidden)]
    pub before_entry: Option<&'a dyn Fn(&Path)>,
}

/// What a copy did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CopyStats {
    /// Entries created (directories included).
    pub entries: u64,
    /// Bytes of file data copied (holes excluded).
    pub bytes: u64,
    /// Paths (relative) that disappeared or changed type during the copy.
    pub changed: Vec<PathBuf>,
}

/// What stopped a copy.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("cannot read {}: {source}", .path.display())]
    Source {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write {}: {source}", .path.display())]
    Target {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Cancelled(#[from] Cancelled),
}

/// Deepest directory nesting followed (a real tree is far shallower; a deeper one is
/// refused rather than exhausting file descriptors).
const MAX_DEPTH: usize = 256;

fn statx_at<Fd: AsFd, P: rustix::path::Arg>(dir: Fd, name: P) -> io::Result<Statx> {
    Ok(rustix::fs::statx(
        dir,
        name,
        AtFlags::SYMLINK_NOFOLLOW,
        StatxFlags::BASIC_STATS | StatxFlags::MNT_ID,
    )?)
}

/// The attributes of an open file or directory.
fn statx_fd<Fd: AsFd>(fd: Fd) -> io::Result<Statx> {
    Ok(rustix::fs::statx(
        fd,
        "",
        AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW,
        StatxFlags::BASIC_STATS | StatxFlags::MNT_ID,
    )?)
}

fn timestamps(st: &Statx) -> Timestamps {
    let ts = |t: rustix::fs::StatxTimestamp| Timespec {
        tv_sec: t.tv_sec,
        tv_nsec: t.tv_nsec.into(),
    };
    Timestamps {
        last_access: ts(st.stx_atime),
        last_modification: ts(st.stx_mtime),
    }
}

fn mode_of(st: &Statx) -> Mode {
    Mode::from_raw_mode(rustix::fs::RawMode::from(st.stx_mode) & 0o7777)
}

fn type_of(st: &Statx) -> FileType {
    FileType::from_raw_mode(rustix::fs::RawMode::from(st.stx_mode))
}

/// A directory being copied: both handles and the names still to copy.
struct Frame {
    src: OwnedFd,
    dst: OwnedFd,
    rel: PathBuf,
    stat: Statx,
    names: std::vec::IntoIter<CString>,
    /// Whether the extended attributes are read from the source (not for a mount point,
    /// whose own directory is hidden under the mount).
    xattrs: bool,
}

struct Copier<'a> {
    src_root: PathBuf,
    dst_root: PathBuf,
    dst_root_fd: OwnedFd,
    mnt_id: u64,
    dev: (u32, u32),
    opts: &'a CopyOptions<'a>,
    links: HashMap<FileId, PathBuf>,
    stats: CopyStats,
    kernel_copy: bool,
    buf: Vec<u8>,
}

/// Copy the tree of the filesystem mounted at `src` into the existing directory `dst`
/// (the root of a new, empty filesystem: entries already there, such as `lost+found`,
/// are reused when they are directories).
pub fn copy_tree(src: &Path, dst: &Path, opts: &CopyOptions<'_>) -> Result<CopyStats, CopyError> {
    let source_err = |path: &Path| {
        let path = path.to_path_buf();
        move |e: Errno| CopyError::Source {
            path,
            source: e.into(),
        }
    };
    let target_err = |path: &Path| {
        let path = path.to_path_buf();
        move |e: Errno| CopyError::Target {
            path,
            source: e.into(),
        }
    };
    let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let src_fd = rustix::fs::open(src, dir_flags, Mode::empty()).map_err(source_err(src))?;
    let dst_fd = rustix::fs::open(dst, dir_flags, Mode::empty()).map_err(target_err(dst))?;
    let dst_root_fd = rustix::fs::open(dst, dir_flags, Mode::empty()).map_err(target_err(dst))?;
    let stat = statx_fd(&src_fd).map_err(|source| CopyError::Source {
        path: src.to_path_buf(),
        source,
    })?;
    let mut c = Copier {
        src_root: src.to_path_buf(),
        dst_root: dst.to_path_buf(),
        dst_root_fd,
        mnt_id: stat.stx_mnt_id,
        dev: (stat.stx_dev_major, stat.stx_dev_minor),
        opts,
        links: HashMap::new(),
        stats: CopyStats::default(),
        kernel_copy: true,
        buf: Vec::new(),
    };
    let names = c.list(&src_fd, Path::new(""))?;
    let mut stack = vec![Frame {
        src: src_fd,
        dst: dst_fd,
        rel: PathBuf::new(),
        stat,
        names: names.into_iter(),
        xattrs: true,
    }];
    loop {
        snf_core::cancel::check()?;
        let Some(top) = stack.last_mut() else { break };
        match top.names.next() {
            None => {
                let done = stack.pop().expect("the stack has a top");
                c.finish_dir(&done)?;
            }
            Some(name) => {
                let rel = top.rel.join(OsStr::from_bytes(name.as_bytes()));
                if let Some(hook) = opts.before_entry {
                    hook(&rel);
                }
                let child = c.entry(top, &name, rel)?;
                if let Some(child) = child {
                    if stack.len() >= MAX_DEPTH {
                        return Err(CopyError::Source {
                            path: c.src_root.join(&child.rel),
                            source: io::Error::other(format!(
                                "directories nested more than {MAX_DEPTH} deep"
                            )),
                        });
                    }
                    stack.push(child);
                }
            }
        }
    }
    Ok(c.stats)
}

impl Copier<'_> {
    fn src_path(&self, rel: &Path) -> PathBuf {
        self.src_root.join(rel)
    }

    fn dst_path(&self, rel: &Path) -> PathBuf {
        self.dst_root.join(rel)
    }

    fn src_err(&self, rel: &Path) -> impl FnOnce(Errno) -> CopyError + '_ {
        let path = self.src_path(rel);
        move |e| CopyError::Source {
            path,
            source: e.into(),
        }
    }

    fn dst_err(&self, rel: &Path) -> impl FnOnce(Errno) -> CopyError + '_ {
        let path = self.dst_path(rel);
        move |e| CopyError::Target {
            path,
            source: e.into(),
        }
    }

    /// The names in a directory, sorted (so that runs are reproducible).
    fn list(&self, dir: &OwnedFd, rel: &Path) -> Result<Vec<CString>, CopyError> {
        let mut names = Vec::new();
        for entry in Dir::read_from(dir).map_err(self.src_err(rel))? {
            let entry = entry.map_err(self.src_err(rel))?;
            let name = entry.file_name();
            if name != c"." && name != c".." {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    /// A name that vanished or became something else since it was listed.
    fn changed(&mut self, rel: PathBuf, what: &str) {
        self.opts.reporter.warn(&format!(
            "{} {what} during the copy; the image does not have it",
            self.src_path(&rel).display()
        ));
        self.stats.changed.push(rel);
    }

    /// Copy one entry of `dir`; a directory to descend into is returned as a frame.
    fn entry(
        &mut self,
        dir: &Frame,
        name: &CString,
        rel: PathBuf,
    ) -> Result<Option<Frame>, CopyError> {
        let st = match statx_at(&dir.src, name.as_c_str()) {
            Ok(st) => st,
            Err(e) if e.raw_os_error() == Some(Errno::NOENT.raw_os_error()) => {
                self.changed(rel, "disappeared");
                return Ok(None);
            }
            Err(source) => {
                return Err(CopyError::Source {
                    path: self.src_path(&rel),
                    source,
                })
            }
        };
        let id = (st.stx_dev_major, st.stx_dev_minor, st.stx_ino);
        if self.opts.skip.contains(&id) {
            self.opts
                .reporter
                .detail(&format!("not copied: {}", self.src_path(&rel).display()));
            return Ok(None);
        }
        let ft = type_of(&st);
        // Another mount (a bind mount of this very filesystem too, which has the same
        // device): its mount point is kept, empty, with the mounted root's owner and mode.
        let mount_point =
            st.stx_mnt_id != self.mnt_id || (st.stx_dev_major, st.stx_dev_minor) != self.dev;
        self.stats.entries += 1;
        if ft == FileType::Directory {
            let empty = mount_point || self.opts.empty.contains(&rel);
            match rustix::fs::mkdirat(&dir.dst, name.as_c_str(), Mode::from_raw_mode(0o700)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(self.dst_err(&rel)(e)),
            }
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let dst = rustix::fs::openat(&dir.dst, name.as_c_str(), flags, Mode::empty())
                .map_err(self.dst_err(&rel))?;
            let src = if empty {
                // Nothing is listed; the handle only carries the attributes.
                dir.src.try_clone().map_err(|source| CopyError::Source {
                    path: self.src_path(&rel),
                    source,
                })?
            } else {
                match rustix::fs::openat(&dir.src, name.as_c_str(), flags, Mode::empty()) {
                    Ok(fd) => fd,
                    Err(Errno::NOENT) => {
                        self.changed(rel, "disappeared");
                        return Ok(None);
                    }
                    Err(Errno::NOTDIR | Errno::LOOP) => {
                        self.changed(rel, "stopped being a directory");
                        return Ok(None);
                    }
                    Err(e) => return Err(self.src_err(&rel)(e)),
                }
            };
            let names = if empty {
                Vec::new()
            } else {
                self.list(&src, &rel)?
            };
            return Ok(Some(Frame {
                src,
                dst,
                rel,
                stat: st,
                names: names.into_iter(),
                xattrs: !mount_point && !empty,
            }));
        }
        if mount_point {
            // A file bind-mounted over another: keep an empty file in its place.
            let fd = rustix::fs::openat(
                &dir.dst,
                name.as_c_str(),
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
                mode_of(&st),
            )
            .map_err(self.dst_err(&rel))?;
            self.set_attrs_fd(&fd, &st, &rel, None)?;
            return Ok(None);
        }
        if st.stx_nlink > 1 {
            if let Some(first) = self.links.get(&id) {
                rustix::fs::linkat(
                    &self.dst_root_fd,
                    first.as_path(),
                    &dir.dst,
                    name.as_c_str(),
                    AtFlags::empty(),
                )
                .map_err(self.dst_err(&rel))?;
                return Ok(None);
            }
        }
        match ft {
            FileType::RegularFile => {
                if !self.copy_file(dir, name, &rel, &st)? {
                    return Ok(None);
                }
            }
            FileType::Symlink => {
                let target = match rustix::fs::readlinkat(&dir.src, name.as_c_str(), Vec::new()) {
                    Ok(t) => t,
                    Err(Errno::NOENT | Errno::INVAL) => {
                        self.changed(rel, "disappeared or stopped being a symlink");
                        return Ok(None);
                    }
                    Err(e) => return Err(self.src_err(&rel)(e)),
                };
                rustix::fs::symlinkat(target.as_c_str(), &dir.dst, name.as_c_str())
                    .map_err(self.dst_err(&rel))?;
                self.set_attrs_at(dir, name, &st, &rel)?;
            }
            _ => {
                let dev = rustix::fs::makedev(st.stx_rdev_major, st.stx_rdev_minor);
                rustix::fs::mknodat(&dir.dst, name.as_c_str(), ft, mode_of(&st), dev)
                    .map_err(self.dst_err(&rel))?;
                self.set_attrs_at(dir, name, &st, &rel)?;
            }
        }
        if st.stx_nlink > 1 {
            self.links.insert(id, rel);
        }
        Ok(None)
    }

    /// Copy a regular file's data, holes kept; `false` when it vanished or changed.
    fn copy_file(
        &mut self,
        dir: &Frame,
        name: &CString,
        rel: &Path,
        st: &Statx,
    ) -> Result<bool, CopyError> {
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        // O_NOATIME: reading the whole system must not touch every file's access time.
        let src = match rustix::fs::openat(
            &dir.src,
            name.as_c_str(),
            flags | OFlags::NOATIME,
            Mode::empty(),
        )
        .or_else(|e| match e {
            Errno::PERM => rustix::fs::openat(&dir.src, name.as_c_str(), flags, Mode::empty()),
            e => Err(e),
        }) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => {
                self.changed(rel.to_path_buf(), "disappeared");
                return Ok(false);
            }
            Err(Errno::LOOP) => {
                self.changed(rel.to_path_buf(), "stopped being a file");
                return Ok(false);
            }
            Err(e) => return Err(self.src_err(rel)(e)),
        };
        let now = statx_fd(&src).map_err(|source| CopyError::Source {
            path: self.src_path(rel),
            source,
        })?;
        if now.stx_ino != st.stx_ino || type_of(&now) != FileType::RegularFile {
            self.changed(rel.to_path_buf(), "was replaced");
            return Ok(false);
        }
        let dst = rustix::fs::openat(
            &dir.dst,
            name.as_c_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(self.dst_err(rel))?;
        let src = File::from(src);
        let dst = File::from(dst);
        let size = self.copy_data(&src, &dst, rel)?;
        rustix::fs::ftruncate(&dst, size).map_err(self.dst_err(rel))?;
        self.set_attrs_fd(dst.as_fd(), st, rel, Some(src.as_fd()))?;
        Ok(true)
    }

    /// Copy the data extents of `src` (holes stay holes); returns the size copied.
    fn copy_data(&mut self, src: &File, dst: &File, rel: &Path) -> Result<u64, CopyError> {
        let size = src
            .metadata()
            .map_err(|source| CopyError::Source {
                path: self.src_path(rel),
                source,
            })?
            .len();
        let mut pos = 0;
        while pos < size {
            snf_core::cancel::check()?;
            let data = match rustix::fs::seek(src, SeekFrom::Data(pos)) {
                Ok(d) => d,
                Err(Errno::NXIO) => break,
                // A filesystem without SEEK_DATA: all of it is data.
                Err(_) => pos,
            };
            let hole = rustix::fs::seek(src, SeekFrom::Hole(data))
                .unwrap_or(size)
                .min(size);
            if hole <= data {
                break;
            }
            self.copy_range(src, dst, data, hole, rel)?;
            pos = hole;
        }
        Ok(size)
    }

    fn copy_range(
        &mut self,
        src: &File,
        dst: &File,
        start: u64,
        end: u64,
        rel: &Path,
    ) -> Result<(), CopyError> {
        let mut off = start;
        while self.kernel_copy && off < end {
            let (mut a, mut b) = (off, off);
            let want = (end - off).min(1 << 30) as usize;
            match rustix::fs::copy_file_range(src, Some(&mut a), dst, Some(&mut b), want) {
                Ok(0) => return Ok(()),
                Ok(n) => {
                    off += n as u64;
                    self.progress(n as u64);
                }
                Err(Errno::INTR) => {}
                // Between two filesystems the kernel often cannot: copy by hand from
                // now on.
                Err(Errno::XDEV | Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => {
                    self.kernel_copy = false
                }
                Err(e) => return Err(self.src_err(rel)(e)),
            }
        }
        if self.buf.is_empty() {
            self.buf = vec![0; 1 << 20];
        }
        while off < end {
            let want = ((end - off) as usize).min(self.buf.len());
            let n = match src.read_at(&mut self.buf[..want], off) {
                Ok(0) => return Ok(()), // the file shrank meanwhile
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(CopyError::Source {
                        path: self.src_path(rel),
                        source,
                    })
                }
            };
            dst.write_all_at(&self.buf[..n], off)
                .map_err(|source| CopyError::Target {
                    path: self.dst_path(rel),
                    source,
                })?;
            off += n as u64;
            self.progress(n as u64);
        }
        Ok(())
    }

    fn progress(&mut self, n: u64) {
        self.stats.bytes += n;
        if let Some(t) = self.opts.task {
            t.inc(n);
        }
    }

    /// Owner, mode, xattrs and times of an open file or directory. The owner goes
    /// first: chown clears set-user-ID bits that chmod then restores.
    fn set_attrs_fd(
        &self,
        dst: impl AsFd,
        st: &Statx,
        rel: &Path,
        src: Option<std::os::fd::BorrowedFd<'_>>,
    ) -> Result<(), CopyError> {
        let dst = dst.as_fd();
        let owner = (
            Some(rustix::fs::Uid::from_raw(st.stx_uid)),
            Some(rustix::fs::Gid::from_raw(st.stx_gid)),
        );
        rustix::fs::fchown(dst, owner.0, owner.1).map_err(self.dst_err(rel))?;
        rustix::fs::fchmod(dst, mode_of(st)).map_err(self.dst_err(rel))?;
        if let Some(src) = src {
            let mut names = vec![0u8; 1 << 16];
            let n = match rustix::fs::flistxattr(src, &mut names[..]) {
                Ok(n) => n,
                Err(Errno::OPNOTSUPP) => 0,
                Err(e) => return Err(self.src_err(rel)(e)),
            };
            let mut value = vec![0u8; 1 << 16];
            for attr in names[..n].split(|b| *b == 0).filter(|a| !a.is_empty()) {
                let attr = OsStr::from_bytes(attr);
                let len = match rustix::fs::fgetxattr(src, attr, &mut value[..]) {
                    Ok(len) => len,
                    Err(Errno::NODATA) => continue,
                    Err(e) => return Err(self.src_err(rel)(e)),
                };
                if let Err(e) = rustix::fs::fsetxattr(dst, attr, &value[..len], XattrFlags::empty())
                {
                    self.xattr_warning(rel, attr, e);
                }
            }
        }
        rustix::fs::futimens(dst, &timestamps(st)).map_err(self.dst_err(rel))?;
        Ok(())
    }

    /// The same for a symlink or special file, which is never opened (opening a device
    /// or a FIFO has effects): by path, inside the directories being walked.
    fn set_attrs_at(
        &self,
        dir: &Frame,
        name: &CString,
        st: &Statx,
        rel: &Path,
    ) -> Result<(), CopyError> {
        let name = name.as_c_str();
        rustix::fs::chownat(
            &dir.dst,
            name,
            Some(rustix::fs::Uid::from_raw(st.stx_uid)),
            Some(rustix::fs::Gid::from_raw(st.stx_gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(self.dst_err(rel))?;
        if type_of(st) != FileType::Symlink {
            rustix::fs::chmodat(&dir.dst, name, mode_of(st), AtFlags::empty())
                .map_err(self.dst_err(rel))?;
        }
        // The l*xattr calls take a path, not a directory handle: these paths are the
        // ones just walked, and the last component is never followed.
        let (src, dst) = (self.src_path(rel), self.dst_path(rel));
        let mut names = vec![0u8; 1 << 16];
        let n = match rustix::fs::llistxattr(&src, &mut names[..]) {
            Ok(n) => n,
            Err(Errno::OPNOTSUPP | Errno::NOENT) => 0,
            Err(e) => return Err(self.src_err(rel)(e)),
        };
        let mut value = vec![0u8; 1 << 16];
        for attr in names[..n].split(|b| *b == 0).filter(|a| !a.is_empty()) {
            let attr = OsStr::from_bytes(attr);
            let Ok(len) = rustix::fs::lgetxattr(&src, attr, &mut value[..]) else {
                continue;
            };
            if let Err(e) = rustix::fs::lsetxattr(&dst, attr, &value[..len], XattrFlags::empty()) {
                self.xattr_warning(rel, attr, e);
            }
        }
        rustix::fs::utimensat(&dir.dst, name, &timestamps(st), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(self.dst_err(rel))?;
        Ok(())
    }

    fn xattr_warning(&self, rel: &Path, attr: &OsStr, e: Errno) {
        self.opts.reporter.warn(&format!(
            "{}: extended attribute {} not kept: {}",
            self.src_path(rel).display(),
            attr.to_string_lossy(),
            io::Error::from(e)
        ));
    }

    /// A directory's own attributes, set after its contents (which change its times).
    fn finish_dir(&mut self, f: &Frame) -> Result<(), CopyError> {
        let src = f.xattrs.then(|| f.src.as_fd());
        self.set_attrs_fd(&f.dst, &f.stat, &f.rel, src)
    }
}
