//! Filesystems no userspace library writes safely (xfs, btrfs), served by a libguestfs
//! appliance: a small VM whose Linux kernel mounts them.
//!
//! One appliance per image, launched at the first open of such a filesystem and shared
//! by every filesystem of that image opened while it runs ([`Appliance::for_image`]);
//! each [`ApplianceFs`] is one partition mounted side by side at its own mount point in
//! the appliance. The appliance is stopped when the last of them (and the last
//! [`Hold`]) goes, on every exit path: `libguestfs::Handle`'s Drop kills qemu.
//!
//! The appliance is given the image it is asked to open, which is always the run's
//! private copy, never the user's source.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use libguestfs::Handle;

use crate::backend::{Filesystem, FsKind};
use crate::error::{Error, Result};
use crate::node::{DirEntry, FileType, Metadata, NewNode, NodeId, SetAttr};

/// The Debian packages the appliance needs, named when it cannot start.
const PACKAGES: &str = "libguestfs0, supermin and linux-image-amd64 (scripts/setup.sh)";

/// Memory of the appliance in MiB: enough for the kernel to mount and walk a root
/// filesystem, small beside the other jobs of a shared machine.
const MEMSIZE_MIB: u32 = 768;

/// How the appliance's qemu runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    /// Emulated CPU: no usable `/dev/kvm` (or KVM failed to start, as nested KVM does on
    /// some hosts).
    Tcg,
}

/// One running appliance with one image as its only drive (`/dev/sda`).
pub struct Appliance {
    state: Mutex<State>,
    image: PathBuf,
    accel: Accel,
    launch_time: Duration,
}

struct State {
    handle: Handle,
    /// `/dev/sdaN` by byte offset, from the appliance's own view of the partitions.
    parts: Vec<libguestfs::PartInfo>,
    next_mount: u32,
}

impl std::fmt::Debug for Appliance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Appliance")
            .field("image", &self.image)
            .field("accel", &self.accel)
            .finish()
    }
}

/// The appliances running, by image, and the holds keeping them up between opens.
struct Registry {
    running: HashMap<PathBuf, Weak<Appliance>>,
    /// Images with a [`Hold`]: their appliance is kept here while the hold lasts.
    held: HashMap<PathBuf, (usize, Option<Arc<Appliance>>)>,
}

static REGISTRY: Mutex<Option<Registry>> = Mutex::new(None);

fn registry() -> MutexGuard<'static, Option<Registry>> {
    // A panic while holding the lock leaves nothing half-updated worth refusing.
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Keeps the appliance of an image (once one is launched) running while it lives, so
/// that closing a filesystem and opening it again (read-only for the root search, then
/// read-write) does not pay a second launch. Assembly holds one.
pub struct Hold {
    image: PathBuf,
}

impl Hold {
    /// Hold the appliance of `image`, launched or to be launched.
    pub fn new(image: &Path) -> Hold {
        let image = key(image);
        let mut r = registry();
        let r = r.get_or_insert_with(|| Registry {
            running: HashMap::new(),
            held: HashMap::new(),
        });
        let running = r.running.get(&image).and_then(Weak::upgrade);
        let e = r.held.entry(image.clone()).or_insert((0, None));
        e.0 += 1;
        if e.1.is_none() {
            e.1 = running;
        }
        Hold { image }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let released = {
            let mut r = registry();
            let Some(r) = r.as_mut() else { return };
            match r.held.get_mut(&self.image) {
                Some(e) if e.0 > 1 => {
                    e.0 -= 1;
                    None
                }
                Some(_) => r.held.remove(&self.image).and_then(|e| e.1),
                None => None,
            }
        };
        // Dropped outside the registry lock: the shutdown takes seconds.
        drop(released);
    }
}

fn key(image: &Path) -> PathBuf {
    std::fs::canonicalize(image).unwrap_or_else(|_| image.to_path_buf())
}

/// Set once a launch with KVM failed: later launches of the process go straight to TCG.
static KVM_FAILED: AtomicBool = AtomicBool::new(false);

fn launch_error(image: &Path, e: libguestfs::Error) -> Error {
    Error::Backend {
        path: image.to_path_buf(),
        msg: format!("the libguestfs appliance could not start (it needs {PACKAGES}): {e}"),
    }
}

impl Appliance {
    /// The running appliance of `image`, or a new one (KVM when `/dev/kvm` works, TCG
    /// otherwise).
    pub fn for_image(image: &Path) -> Result<Arc<Appliance>> {
        let k = key(image);
        if let Some(a) = registry()
            .as_ref()
            .and_then(|r| r.running.get(&k))
            .and_then(Weak::upgrade)
        {
            return Ok(a);
        }
        snf_core::cancel::check()?;
        let a = Arc::new(Appliance::launch(&k)?);
        let mut r = registry();
        let r = r.get_or_insert_with(|| Registry {
            running: HashMap::new(),
            held: HashMap::new(),
        });
        r.running.retain(|_, w| w.strong_count() > 0);
        r.running.insert(k.clone(), Arc::downgrade(&a));
        if let Some(e) = r.held.get_mut(&k) {
            e.1 = Some(a.clone());
        }
        Ok(a)
    }

    fn launch(image: &Path) -> Result<Appliance> {
        let start = Instant::now();
        let attempt = |tcg: bool| -> libguestfs::Result<Handle> {
            let mut h = Handle::new()?;
            h.set_memsize(MEMSIZE_MIB)?;
            if tcg {
                h.set_backend_setting("force_tcg", "1")?;
            }
            h.add_drive_raw(image, false)?;
            h.launch()?;
            Ok(h)
        };
        let (mut handle, accel) = if crate::kvm::usable() && !KVM_FAILED.load(Ordering::Relaxed) {
            match attempt(false) {
                Ok(h) => (h, Accel::Kvm),
                // Nested KVM can abort qemu at start (ecosystem §A.1.4): emulate instead,
                // and from now on.
                Err(_) => {
                    KVM_FAILED.store(true, Ordering::Relaxed);
                    (
                        attempt(true).map_err(|e| launch_error(image, e))?,
                        Accel::Tcg,
                    )
                }
            }
        } else {
            (
                attempt(true).map_err(|e| launch_error(image, e))?,
                Accel::Tcg,
            )
        };
        // A disk with no partition table has none: the whole disk is then the volume.
        let parts = handle.part_list("/dev/sda").unwrap_or_default();
        Ok(Appliance {
            state: Mutex::new(State {
                handle,
                parts,
                next_mount: 0,
            }),
            image: image.to_path_buf(),
            accel,
            launch_time: start.elapsed(),
        })
    }

    /// How the appliance runs.
    pub fn accel(&self) -> Accel {
        self.accel
    }

    /// How long the launch took.
    pub fn launch_time(&self) -> Duration {
        self.launch_time
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The appliance's device for the volume at `offset` (`size` bytes) of the image.
    fn device(&self, offset: u64, size: u64) -> Option<String> {
        // Nothing at byte 0 is a partition (the table is there): a filesystem on the
        // whole disk, which parted reports as one "loop" partition.
        if offset == 0 {
            return Some("/dev/sda".to_string());
        }
        let s = self.lock();
        s.parts
            .iter()
            .find(|p| p.start == offset && p.size == size)
            .map(|p| format!("/dev/sda{}", p.number))
    }
}

impl Drop for Appliance {
    fn drop(&mut self) {
        // The handle's own Drop kills qemu; an orderly shutdown first syncs the disks.
        let _ = self.lock().handle.shutdown();
    }
}

/// One filesystem of the image, mounted in a shared appliance.
pub struct ApplianceFs {
    app: Arc<Appliance>,
    kind: FsKind,
    /// Where it is mounted in the appliance (`/snf3`).
    mountpoint: String,
    writable: bool,
    /// Node ids are indexes in `paths` (paths relative to the filesystem's root; the
    /// root is the empty path, id 1 at index 0).
    paths: Vec<PathBuf>,
    ids: HashMap<PathBuf, NodeId>,
    /// Data written since the last sync. The kernel drops an unlinked file's dirty pages
    /// unwritten, so zeros written over a secret (scrubbing) before an unlink would never
    /// reach the disk: unlink and rename sync first when this is set.
    dirty: bool,
    closed: bool,
}

impl std::fmt::Debug for ApplianceFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApplianceFs")
            .field("kind", &self.kind)
            .field("mountpoint", &self.mountpoint)
            .finish()
    }
}

/// Guest errors for appliance errors, by the errno the appliance reports.
fn map_err(e: libguestfs::Error) -> Error {
    let p = PathBuf::new();
    match e.errno {
        2 => Error::NotFound(p),
        20 => Error::NotADirectory(p),
        21 => Error::IsADirectory(p),
        39 => Error::NotEmpty(p),
        17 => Error::AlreadyExists(p),
        30 => Error::ReadOnly(p),
        18 => Error::CrossDevice(p),
        28 | 122 => Error::NoSpace(p),
        _ => Error::backend(e.to_string()),
    }
}

fn dirent_type(kind: u8) -> FileType {
    match kind {
        b'r' => FileType::Regular,
        b'd' => FileType::Directory,
        b'l' => FileType::Symlink,
        b'c' => FileType::CharDevice,
        b'b' => FileType::BlockDevice,
        b'f' => FileType::Fifo,
        b's' => FileType::Socket,
        _ => FileType::Unknown,
    }
}

impl ApplianceFs {
    /// Mount the `kind` filesystem at `offset` (`size` bytes) of `image` in the image's
    /// appliance, launching it if needed. `options` are extra mount options
    /// (`subvol=root`).
    pub fn open(
        image: &Path,
        offset: u64,
        size: u64,
        kind: FsKind,
        options: &str,
        writable: bool,
    ) -> Result<ApplianceFs> {
        Self::open_volume(image, offset, size, None, kind, options, writable)
    }

    /// [`ApplianceFs::open`] for a partition, or for the LVM logical volume `lv`
    /// (`(vg, lv)`), which the appliance activated at launch.
    pub fn open_volume(
        image: &Path,
        offset: u64,
        size: u64,
        lv: Option<(&str, &str)>,
        kind: FsKind,
        options: &str,
        writable: bool,
    ) -> Result<ApplianceFs> {
        let app = Appliance::for_image(image)?;
        let device = match lv {
            Some((vg, lv)) => {
                let ok = |s: &str| !s.is_empty() && !s.contains('/') && !s.starts_with('.');
                if !ok(vg) || !ok(lv) {
                    return Err(Error::InvalidPath(PathBuf::from(format!("{vg}/{lv}"))));
                }
                format!("/dev/{vg}/{lv}")
            }
            None => app.device(offset, size).ok_or_else(|| Error::Unsupported {
                path: image.to_path_buf(),
                what: format!(
                    "a volume at byte {offset} that is not a partition the appliance sees"
                ),
            })?,
        };
        let mountpoint = {
            let mut s = app.lock();
            s.next_mount += 1;
            let mp = format!("/snf{}", s.next_mount);
            s.handle.mkmountpoint(&mp).map_err(map_err)?;
            let mut opts: Vec<&str> = Vec::new();
            if !writable {
                // norecovery: a read-only look must not replay a journal either.
                opts.push("ro");
                if kind == FsKind::Xfs {
                    opts.push("norecovery");
                }
            }
            if !options.is_empty() {
                opts.push(options);
            }
            s.handle
                .mount_options(&opts.join(","), &device, &mp)
                .map_err(|e| Error::Backend {
                    path: PathBuf::from(&device),
                    msg: format!("cannot mount {}: {e}", kind.name()),
                })?;
            mp
        };
        Ok(ApplianceFs {
            app,
            kind,
            mountpoint,
            writable,
            paths: vec![PathBuf::new()],
            ids: HashMap::from([(PathBuf::new(), 1)]),
            dirty: false,
            closed: false,
        })
    }

    /// The appliance this filesystem is mounted in.
    pub fn appliance(&self) -> &Arc<Appliance> {
        &self.app
    }

    /// Resize this btrfs filesystem (opened writable, on one device) to `size` bytes.
    /// Shrinking moves what lies past the new end; [`Error::NoSpace`] when it does not
    /// fit.
    pub fn btrfs_resize(&mut self, size: u64) -> Result<()> {
        self.check_writable()?;
        if self.kind != FsKind::Btrfs {
            return Err(Error::backend(format!(
                "cannot resize {} as btrfs",
                self.kind.name()
            )));
        }
        let mp = self.mountpoint.clone();
        self.with(|h| h.btrfs_filesystem_resize(&mp, size))
    }

    fn rel(&self, node: NodeId) -> Result<&Path> {
        usize::try_from(node)
            .ok()
            .and_then(|n| n.checked_sub(1))
            .and_then(|i| self.paths.get(i))
            .map(PathBuf::as_path)
            .ok_or_else(|| Error::backend(format!("unknown node {node}")))
    }

    /// The appliance path of `node`.
    fn full(&self, node: NodeId) -> Result<PathBuf> {
        Ok(Path::new(&self.mountpoint).join(self.rel(node)?))
    }

    fn child(&self, dir: NodeId, name: &OsStr) -> Result<(PathBuf, PathBuf)> {
        let b = name.as_bytes();
        if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') || b.contains(&0) {
            return Err(Error::InvalidPath(PathBuf::from(name)));
        }
        let rel = self.rel(dir)?.join(name);
        Ok((Path::new(&self.mountpoint).join(&rel), rel))
    }

    fn id_for(&mut self, rel: PathBuf) -> NodeId {
        if let Some(&id) = self.ids.get(&rel) {
            return id;
        }
        self.paths.push(rel.clone());
        let id = self.paths.len() as NodeId;
        self.ids.insert(rel, id);
        id
    }

    fn forget(&mut self, rel: &Path) {
        self.ids.retain(|p, _| !p.starts_with(rel));
    }

    /// Write dirty data out before an object loses its last name (see `dirty`).
    fn flush_before_removal(&mut self) -> Result<()> {
        if self.dirty {
            self.with(|h| h.sync())?;
            self.dirty = false;
        }
        Ok(())
    }

    fn check_writable(&self) -> Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(Error::ReadOnly(PathBuf::new()))
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Handle) -> libguestfs::Result<T>) -> Result<T> {
        snf_core::cancel::check()?;
        let mut s = self.app.lock();
        f(&mut s.handle).map_err(map_err)
    }

    fn set_owner_mode(&self, full: &Path, attr: NewNode, symlink: bool) -> Result<()> {
        self.with(|h| {
            h.lchown(full, attr.uid as i32, attr.gid as i32)?;
            // chmod follows symlinks; a symlink's own mode means nothing on Linux.
            if !symlink {
                h.chmod(full, attr.mode)?;
            }
            Ok(())
        })
    }

    fn finish(&mut self) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        let mp = self.mountpoint.clone();
        let writable = self.writable;
        let mut s = self.app.lock();
        if writable {
            // Free space discarded: with the drive's discard passed through, qemu
            // punches holes in the image, so deleted data never reaches the output.
            // Not every filesystem or kernel supports it: that is not an error.
            let _ = s.handle.fstrim(&mp);
        }
        s.handle.umount(&mp).map_err(map_err)?;
        s.handle.sync().map_err(map_err)
    }
}

impl Drop for ApplianceFs {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

impl Filesystem for ApplianceFs {
    fn kind(&self) -> FsKind {
        self.kind
    }

    fn is_writable(&self) -> bool {
        self.writable
    }

    fn root(&self) -> NodeId {
        1
    }

    fn lookup(&mut self, dir: NodeId, name: &OsStr) -> Result<Option<NodeId>> {
        let (full, rel) = self.child(dir, name)?;
        match self.with(|h| h.lstat(&full)) {
            Ok(_) => Ok(Some(self.id_for(rel))),
            Err(Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn metadata(&mut self, node: NodeId) -> Result<Metadata> {
        let full = self.full(node)?;
        let st = self.with(|h| h.lstat(&full))?;
        let file_type = FileType::from_mode(st.mode);
        Ok(Metadata {
            node,
            file_type,
            mode: st.mode & 0o7777,
            uid: st.uid,
            gid: st.gid,
            size: st.size,
            nlink: u32::try_from(st.nlink).unwrap_or(u32::MAX),
            mtime: st.mtime,
            atime: st.atime,
            ctime: st.ctime,
            rdev: if matches!(file_type, FileType::CharDevice | FileType::BlockDevice) {
                st.rdev
            } else {
                0
            },
            allocated: st.blocks.saturating_mul(512),
        })
    }

    fn read_dir(&mut self, dir: NodeId) -> Result<Vec<DirEntry>> {
        let full = self.full(dir)?;
        let rel = self.rel(dir)?.to_path_buf();
        let entries = self.with(|h| h.readdir(&full))?;
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            let b = e.name.as_bytes();
            if b == b"." || b == b".." || b.is_empty() || b.contains(&b'/') {
                continue;
            }
            let node = self.id_for(rel.join(&e.name));
            out.push(DirEntry {
                name: e.name,
                node,
                file_type: dirent_type(e.kind),
            });
        }
        Ok(out)
    }

    fn read_link(&mut self, node: NodeId) -> Result<OsString> {
        let full = self.full(node)?;
        self.with(|h| h.readlink(&full)).map_err(|e| match e {
            Error::Backend { .. } => Error::NotASymlink(PathBuf::new()),
            e => e,
        })
    }

    fn read_at(&mut self, node: NodeId, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let full = self.full(node)?;
        if buf.is_empty() {
            return Ok(0);
        }
        self.with(|h| h.pread(&full, offset, buf))
    }

    fn write_at(&mut self, node: NodeId, offset: u64, data: &[u8]) -> Result<()> {
        self.check_writable()?;
        let full = self.full(node)?;
        self.dirty = true;
        for (i, chunk) in data.chunks(libguestfs::MAX_CHUNK).enumerate() {
            let at = offset + (i * libguestfs::MAX_CHUNK) as u64;
            self.with(|h| h.pwrite_all(&full, at, chunk))?;
        }
        Ok(())
    }

    fn set_len(&mut self, node: NodeId, size: u64) -> Result<()> {
        self.check_writable()?;
        let full = self.full(node)?;
        self.with(|h| h.truncate(&full, size))
    }

    fn create_file(&mut self, dir: NodeId, name: &OsStr, attr: NewNode) -> Result<NodeId> {
        self.check_writable()?;
        let (full, rel) = self.child(dir, name)?;
        if self.with(|h| h.lstat(&full)).is_ok() {
            return Err(Error::AlreadyExists(PathBuf::new()));
        }
        self.with(|h| h.touch(&full))?;
        self.set_owner_mode(&full, attr, false)?;
        Ok(self.id_for(rel))
    }

    fn mkdir(&mut self, dir: NodeId, name: &OsStr, attr: NewNode) -> Result<NodeId> {
        self.check_writable()?;
        let (full, rel) = self.child(dir, name)?;
        self.with(|h| h.mkdir(&full, attr.mode))?;
        self.set_owner_mode(&full, attr, false)?;
        Ok(self.id_for(rel))
    }

    fn symlink(
        &mut self,
        dir: NodeId,
        name: &OsStr,
        target: &OsStr,
        attr: NewNode,
    ) -> Result<NodeId> {
        self.check_writable()?;
        let (full, rel) = self.child(dir, name)?;
        self.with(|h| h.symlink(target, &full))?;
        self.set_owner_mode(&full, attr, true)?;
        Ok(self.id_for(rel))
    }

    fn hard_link(&mut self, node: NodeId, dir: NodeId, name: &OsStr) -> Result<()> {
        self.check_writable()?;
        let existing = self.full(node)?;
        let (full, _) = self.child(dir, name)?;
        self.with(|h| h.hard_link(&existing, &full))
    }

    fn unlink(&mut self, dir: NodeId, name: &OsStr) -> Result<()> {
        self.check_writable()?;
        let (full, rel) = self.child(dir, name)?;
        self.flush_before_removal()?;
        self.with(|h| h.rm(&full))?;
        self.forget(&rel);
        Ok(())
    }

    fn rmdir(&mut self, dir: NodeId, name: &OsStr) -> Result<()> {
        self.check_writable()?;
        let (full, rel) = self.child(dir, name)?;
        self.with(|h| h.rmdir(&full))?;
        self.forget(&rel);
        Ok(())
    }

    fn rename(
        &mut self,
        from_dir: NodeId,
        from_name: &OsStr,
        to_dir: NodeId,
        to_name: &OsStr,
    ) -> Result<()> {
        self.check_writable()?;
        let (from, from_rel) = self.child(from_dir, from_name)?;
        let (to, to_rel) = self.child(to_dir, to_name)?;
        // The target may be replaced.
        self.flush_before_removal()?;
        self.with(|h| h.rename(&from, &to))?;
        // Ids keep naming the same objects: every path under the old name moves.
        self.forget(&to_rel);
        let moved: Vec<(PathBuf, NodeId)> = self
            .ids
            .iter()
            .filter(|(p, _)| p.starts_with(&from_rel))
            .map(|(p, &id)| (p.clone(), id))
            .collect();
        for (old, id) in moved {
            self.ids.remove(&old);
            let suffix = old.strip_prefix(&from_rel).unwrap_or(Path::new(""));
            let new = if suffix.as_os_str().is_empty() {
                to_rel.clone()
            } else {
                to_rel.join(suffix)
            };
            if let Some(slot) = usize::try_from(id)
                .ok()
                .and_then(|n| n.checked_sub(1))
                .and_then(|i| self.paths.get_mut(i))
            {
                *slot = new.clone();
            }
            self.ids.insert(new, id);
        }
        Ok(())
    }

    fn set_attr(&mut self, node: NodeId, attr: SetAttr) -> Result<()> {
        self.check_writable()?;
        let full = self.full(node)?;
        let st = self.with(|h| h.lstat(&full))?;
        let symlink = FileType::from_mode(st.mode) == FileType::Symlink;
        self.with(|h| {
            if attr.uid.is_some() || attr.gid.is_some() {
                let uid = attr.uid.map_or(-1, |u| u as i32);
                let gid = attr.gid.map_or(-1, |g| g as i32);
                h.lchown(&full, uid, gid)?;
            }
            if let (Some(mode), false) = (attr.mode, symlink) {
                h.chmod(&full, mode)?;
            }
            if attr.atime.is_some() || attr.mtime.is_some() {
                h.utimens(
                    &full,
                    attr.atime.unwrap_or(st.atime),
                    attr.mtime.unwrap_or(st.mtime),
                )?;
            }
            Ok(())
        })
    }

    fn sync(&mut self) -> Result<()> {
        if !self.writable {
            return Ok(());
        }
        self.with(|h| h.sync())?;
        self.dirty = false;
        Ok(())
    }

    fn close(mut self: Box<Self>) -> Result<()> {
        self.finish()
    }
}
