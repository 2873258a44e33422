//! The safe API over the shim: one mounted volume.

use std::ffi::{c_int, c_uint, c_void};
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

use crate::error::{libc_errno as e, Error, Result};
use crate::reparse;
use crate::sys;

/// MFT record number of the root directory.
pub const ROOT_INO: u64 = 5;
/// The first MFT record that is not a metadata file (`$MFT` ... `$Extend` are below).
pub const FIRST_USER_INO: u64 = 16;
/// `VOLUME_IS_DIRTY` in the $Volume flags.
const VOLUME_IS_DIRTY: u32 = 0x0001;
const FILE_ATTR_SYSTEM: u32 = 0x0004;
const FILE_ATTR_REPARSE_POINT: u32 = 0x0400;
/// `FILE_NAME_DOS`: the 8.3 alias of a long name.
const FILE_NAME_DOS: c_int = 2;
/// Windows' limit on a reparse point's data.
const MAX_REPARSE: usize = 16 * 1024;
/// Entries one directory may list: far above any real one (WinSxS has ~100k), low enough
/// that a looping or forged index cannot exhaust memory.
const MAX_DIR_ENTRIES: usize = 4 << 20;
/// 100 ns intervals between 1601-01-01 (NTFS) and 1970-01-01 (Unix).
const NTFS_EPOCH_OFFSET: i64 = 116_444_736_000_000_000;

/// Volume-wide facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VolumeInfo {
    pub cluster_size: u64,
    pub clusters: u64,
    pub free_clusters: u64,
    /// The $Volume flags (`VOLUME_IS_DIRTY` = 1 ...).
    pub flags: u32,
    /// NTFS version, `(3, 1)` for every Windows since XP.
    pub version: (u8, u8),
}

impl VolumeInfo {
    /// Whether the volume is marked dirty (Windows did not finish with it).
    pub fn is_dirty(&self) -> bool {
        self.flags & VOLUME_IS_DIRTY != 0
    }
}

/// The attributes of one MFT record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inode {
    pub ino: u64,
    pub is_dir: bool,
    /// Size of the unnamed $DATA stream (0 for directories).
    pub size: u64,
    /// Bytes allocated to it on the volume.
    pub allocated: u64,
    /// The Windows file attributes (`FILE_ATTRIBUTE_*`).
    pub attributes: u32,
    pub links: u32,
    /// Unix seconds.
    pub mtime: i64,
    pub atime: i64,
    pub ctime: i64,
    pub crtime: i64,
}

impl Inode {
    /// Whether it carries a reparse point (junction, symlink, dedup, ...).
    pub fn is_reparse_point(&self) -> bool {
        self.attributes & FILE_ATTR_REPARSE_POINT != 0
    }
    /// Whether Windows marks it as a system file.
    pub fn is_system(&self) -> bool {
        self.attributes & FILE_ATTR_SYSTEM != 0
    }
}

/// What a directory entry says its object is (from the index, without opening it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Directory,
    /// A link ntfs-3g recognised (Interix or reparse symlink).
    Symlink,
    /// Some reparse point: open it to know more.
    Reparse,
    Other,
}

/// One entry of a directory: its long (Win32 or POSIX) name only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: String,
    pub ino: u64,
    pub kind: EntryKind,
}

fn ntfs_to_unix(t: i64) -> i64 {
    (t.saturating_sub(NTFS_EPOCH_OFFSET)).div_euclid(10_000_000)
}

fn unix_to_ntfs(t: i64) -> i64 {
    t.saturating_mul(10_000_000)
        .saturating_add(NTFS_EPOCH_OFFSET)
}

/// A name as the UTF-16 units NTFS stores.
fn utf16_name(name: &str) -> Result<Vec<u16>> {
    let invalid = |why| Error::InvalidName {
        name: name.to_string(),
        why,
    };
    if name.is_empty() || name == "." || name == ".." {
        return Err(invalid("not a file name"));
    }
    if name.contains(['/', '\0']) {
        return Err(invalid("contains '/' or NUL"));
    }
    let units: Vec<u16> = name.encode_utf16().collect();
    if units.len() > 255 {
        return Err(invalid("longer than 255 UTF-16 units"));
    }
    Ok(units)
}

fn check(rc: c_int, op: &'static str, ino: u64) -> Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(Error::Op { op, ino, errno: rc })
    }
}

/// A mounted NTFS volume. Dropping it unmounts (losing errors: writers call
/// [`Volume::close`]).
pub struct Volume {
    raw: NonNull<sys::RawVolume>,
    // Read and written by the shim's device operations through its descriptor: must
    // outlive `raw`, which `Drop` unmounts first.
    file: File,
    path: PathBuf,
    offset: u64,
    writable: bool,
    /// False once unmounted (by `close`); `raw` is dangling then.
    mounted: bool,
}

// SAFETY: the volume is only ever used through `&mut self` (or `&self` for read-only
// fields), so one thread at a time; libntfs-3g keeps no thread-bound state for it.
unsafe impl Send for Volume {}

impl std::fmt::Debug for Volume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Volume")
            .field("path", &self.path)
            .field("offset", &self.offset)
            .field("writable", &self.writable)
            .finish()
    }
}

extern "C" fn collect_entry(
    ctx: *mut c_void,
    name: *const u16,
    name_len: c_int,
    name_type: c_int,
    mref: u64,
    dt_type: c_uint,
) -> c_int {
    if name_type == FILE_NAME_DOS || name.is_null() || name_len <= 0 {
        return 0;
    }
    let Ok(len) = usize::try_from(name_len) else {
        return 0;
    };
    // SAFETY: `ctx` is the `&mut Vec` that `read_dir` passed for this very call, alive
    // and not otherwise borrowed while `snf_ntfs_readdir` runs.
    let out = unsafe { &mut *ctx.cast::<Vec<(Vec<u16>, u64, c_uint)>>() };
    if out.len() >= MAX_DIR_ENTRIES {
        // Stops the listing; `read_dir` sees the full vector and fails.
        return -1;
    }
    // SAFETY: libntfs-3g passes `name_len` UTF-16 units at `name`, valid for the call.
    let units = unsafe { std::slice::from_raw_parts(name, len) };
    out.push((units.to_vec(), mref, dt_type));
    0
}

impl Volume {
    /// Open the NTFS volume in bytes `offset..offset + size` of `image`.
    ///
    /// A writable open first mounts read-only to check that Windows shut the volume
    /// down fully: not hibernated (fast startup included), not marked dirty, a clean
    /// $LogFile. A read-only open skips those checks.
    pub fn open(image: &Path, offset: u64, size: u64, writable: bool) -> Result<Volume> {
        let file = OpenOptions::new()
            .read(true)
            .write(writable)
            .open(image)
            .map_err(|source| Error::Image {
                path: image.to_path_buf(),
                source,
            })?;
        let path = image.to_path_buf();
        if writable {
            let ro = Volume::mount(
                file.try_clone().map_err(|source| Error::Image {
                    path: path.clone(),
                    source,
                })?,
                &path,
                offset,
                size,
                false,
            )?;
            ro.check_shut_down()?;
            ro.close()?;
        }
        match Volume::mount(file, &path, offset, size, writable) {
            // Only the $LogFile check is left to fail with EPERM once the read-only
            // checks passed.
            Err(Error::Open {
                errno: e::EPERM, ..
            }) if writable => Err(Error::Unclean {
                path,
                offset,
                why: "its $LogFile holds unfinished transactions",
            }),
            other => other,
        }
    }

    /// Refuse (with [`Error::Unclean`] or [`Error::Hibernated`]) a volume Windows did
    /// not shut down fully: marked dirty, or a hibernation file with a resume header.
    /// (An unfinished $LogFile shows only when mounting for writing.)
    pub fn check_shut_down(&self) -> Result<()> {
        let (path, offset) = (self.path.clone(), self.offset);
        if self.info()?.is_dirty() {
            return Err(Error::Unclean {
                path,
                offset,
                why: "the volume is marked dirty",
            });
        }
        // SAFETY: `self.raw` is a live mounted volume.
        match unsafe { sys::snf_ntfs_check_hiberfile(self.raw.as_ptr()) } {
            0 => Ok(()),
            e::EPERM => Err(Error::Hibernated { path, offset }),
            errno => Err(Error::Open {
                path,
                offset,
                errno,
            }),
        }
    }

    fn mount(file: File, path: &Path, offset: u64, size: u64, writable: bool) -> Result<Volume> {
        let mut raw = std::ptr::null_mut();
        // SAFETY: the descriptor is open and stays so as long as the returned volume
        // (it moves into it); `raw` is a valid out pointer.
        let rc = unsafe {
            sys::snf_ntfs_mount(
                file.as_raw_fd(),
                offset,
                size,
                c_int::from(!writable),
                &mut raw,
            )
        };
        match NonNull::new(raw) {
            Some(raw) if rc == 0 => {
                let vol = Volume {
                    raw,
                    file,
                    path: path.to_path_buf(),
                    offset,
                    writable,
                    mounted: true,
                };
                // libntfs-3g trusts the boot sector's size: a volume running past its
                // partition would read its neighbour (writes are stopped by the shim).
                let info = vol.info()?;
                let volume = info.clusters.saturating_mul(info.cluster_size);
                if volume > size {
                    return Err(Error::TooLarge {
                        path: path.to_path_buf(),
                        offset,
                        volume,
                        range: size,
                    });
                }
                Ok(vol)
            }
            _ => Err(Error::Open {
                path: path.to_path_buf(),
                offset,
                errno: if rc == 0 { e::EIO } else { rc },
            }),
        }
    }

    /// The image file this volume is in.
    pub fn image(&self) -> &Path {
        &self.path
    }

    /// Whether it was opened for writing.
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    fn writable(&self, op: &'static str) -> Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(Error::ReadOnly { op })
        }
    }

    /// Cluster size and counts (free ones counted now), flags, version.
    pub fn info(&self) -> Result<VolumeInfo> {
        let mut v = sys::VolInfo::default();
        // SAFETY: live volume, valid out pointer.
        check(
            unsafe { sys::snf_ntfs_volinfo(self.raw.as_ptr(), &mut v) },
            "read the volume information",
            3,
        )?;
        Ok(VolumeInfo {
            cluster_size: v.cluster_size,
            clusters: v.nr_clusters,
            free_clusters: v.free_clusters,
            flags: v.flags,
            version: (v.major_ver, v.minor_ver),
        })
    }

    /// The cluster allocation bitmap ($Bitmap): bit `n` (LSB first) set when cluster `n`
    /// is in use.
    pub fn cluster_bitmap(&self) -> Result<Vec<u8>> {
        let info = self.info()?;
        let len = info.clusters.div_ceil(8);
        // The volume was mounted, so its cluster count fits the partition; still,
        // never allocate from an unchecked guest number.
        let bad = Error::Op {
            op: "read the cluster bitmap",
            ino: 6,
            errno: e::EIO,
        };
        let fits = info
            .clusters
            .checked_mul(info.cluster_size)
            .is_some_and(|b| b <= self.file.metadata().map(|m| m.len()).unwrap_or(0));
        if !fits {
            return Err(bad);
        }
        let mut buf = vec![0u8; usize::try_from(len).map_err(|_| bad)?];
        // SAFETY: `buf` has `len` writable bytes.
        check(
            unsafe { sys::snf_ntfs_read_bitmap(self.raw.as_ptr(), buf.as_mut_ptr(), len) },
            "read the cluster bitmap",
            6,
        )?;
        // Bits past the last cluster are padding (mkntfs sets them): never "in use".
        let tail = info.clusters % 8;
        if let (Some(last), true) = (buf.last_mut(), tail != 0) {
            *last &= (1u8 << tail) - 1;
        }
        Ok(buf)
    }

    /// Find `name` in directory `dir`, ignoring case as Windows does.
    pub fn lookup(&mut self, dir: u64, name: &str) -> Result<Option<u64>> {
        let units = utf16_name(name)?;
        let mut out = 0;
        // SAFETY: `units` holds `len` UTF-16 units; valid out pointer.
        let rc = unsafe {
            sys::snf_ntfs_lookup(
                self.raw.as_ptr(),
                dir,
                units.as_ptr(),
                units.len() as c_int,
                &mut out,
            )
        };
        match rc {
            0 => Ok(Some(out)),
            e::ENOENT => Ok(None),
            errno => Err(Error::Op {
                op: "look up a name",
                ino: dir,
                errno,
            }),
        }
    }

    /// The attributes of MFT record `ino`.
    pub fn stat(&mut self, ino: u64) -> Result<Inode> {
        let mut s = sys::Stat::default();
        // SAFETY: live volume, valid out pointer.
        check(
            unsafe { sys::snf_ntfs_stat(self.raw.as_ptr(), ino, &mut s) },
            "read the attributes",
            ino,
        )?;
        Ok(Inode {
            ino,
            is_dir: s.is_dir != 0,
            size: s.data_size,
            allocated: s.allocated,
            attributes: s.attributes,
            links: s.links,
            mtime: ntfs_to_unix(s.mtime),
            atime: ntfs_to_unix(s.atime),
            ctime: ntfs_to_unix(s.ctime),
            crtime: ntfs_to_unix(s.creation_time),
        })
    }

    /// The entries of directory `dir` by their long names: no `.`/`..`, no DOS 8.3
    /// aliases, and at the root none of the `$` metadata files.
    pub fn read_dir(&mut self, dir: u64) -> Result<Vec<DirEntry>> {
        let mut raw: Vec<(Vec<u16>, u64, c_uint)> = Vec::new();
        // SAFETY: the callback only pushes onto `raw`, passed as its context and
        // alive for the whole call.
        check(
            unsafe {
                sys::snf_ntfs_readdir(
                    self.raw.as_ptr(),
                    dir,
                    collect_entry,
                    (&mut raw as *mut Vec<(Vec<u16>, u64, c_uint)>).cast(),
                )
            },
            "read the directory",
            dir,
        )?;
        if raw.len() >= MAX_DIR_ENTRIES {
            return Err(Error::Op {
                op: "read a directory of more than 4 Mi entries (a damaged index?)",
                ino: dir,
                errno: e::EFBIG,
            });
        }
        let mut out = Vec::with_capacity(raw.len());
        for (units, ino, dt) in raw {
            let name = String::from_utf16_lossy(&units);
            if name == "." || name == ".." || ino == dir {
                continue;
            }
            if dir == ROOT_INO && ino < FIRST_USER_INO && name.starts_with('$') {
                continue;
            }
            let kind = match dt {
                4 => EntryKind::Directory,
                8 => EntryKind::File,
                10 => EntryKind::Symlink,
                32 => EntryKind::Reparse,
                _ => EntryKind::Other,
            };
            out.push(DirEntry { name, ino, kind });
        }
        Ok(out)
    }

    /// Read up to `buf.len()` bytes of the unnamed $DATA at `offset`; 0 at its end.
    pub fn read_at(&mut self, ino: u64, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let mut got = 0u64;
        // SAFETY: `buf` has `buf.len()` writable bytes; valid out pointer.
        check(
            unsafe {
                sys::snf_ntfs_read(
                    self.raw.as_ptr(),
                    ino,
                    offset,
                    buf.as_mut_ptr().cast(),
                    buf.len() as u64,
                    &mut got,
                )
            },
            "read data",
            ino,
        )?;
        Ok(usize::try_from(got).unwrap_or(0).min(buf.len()))
    }

    /// The whole unnamed $DATA of `ino`, refused past `limit` bytes.
    pub fn read_all(&mut self, ino: u64, limit: u64) -> Result<Vec<u8>> {
        let size = self.stat(ino)?.size;
        if size > limit {
            return Err(Error::Op {
                op: "read a whole file",
                ino,
                errno: e::EFBIG,
            });
        }
        let mut buf = vec![0u8; size as usize];
        let mut done = 0;
        while done < buf.len() {
            let n = self.read_at(ino, done as u64, &mut buf[done..])?;
            if n == 0 {
                break;
            }
            done += n;
        }
        buf.truncate(done);
        Ok(buf)
    }

    /// Write all of `data` at `offset` of the unnamed $DATA, extending it if needed.
    pub fn write_at(&mut self, ino: u64, offset: u64, data: &[u8]) -> Result<()> {
        self.writable("write data")?;
        // SAFETY: `data` has `data.len()` readable bytes.
        check(
            unsafe {
                sys::snf_ntfs_write(
                    self.raw.as_ptr(),
                    ino,
                    offset,
                    data.as_ptr().cast(),
                    data.len() as u64,
                )
            },
            "write data",
            ino,
        )
    }

    /// Truncate or extend the unnamed $DATA to `size` bytes.
    pub fn truncate(&mut self, ino: u64, size: u64) -> Result<()> {
        self.writable("truncate")?;
        // SAFETY: live volume.
        check(
            unsafe { sys::snf_ntfs_truncate(self.raw.as_ptr(), ino, size) },
            "truncate",
            ino,
        )
    }

    fn create(&mut self, dir: u64, name: &str, is_dir: bool) -> Result<u64> {
        let op = if is_dir {
            "create a directory"
        } else {
            "create a file"
        };
        self.writable(op)?;
        let units = utf16_name(name)?;
        let mut out = 0;
        // SAFETY: `units` holds `len` units; valid out pointer.
        check(
            unsafe {
                sys::snf_ntfs_create(
                    self.raw.as_ptr(),
                    dir,
                    units.as_ptr(),
                    units.len() as c_int,
                    c_int::from(is_dir),
                    &mut out,
                )
            },
            op,
            dir,
        )?;
        Ok(out)
    }

    /// Create an empty file `name` in `dir`.
    pub fn create_file(&mut self, dir: u64, name: &str) -> Result<u64> {
        self.create(dir, name, false)
    }

    /// Create directory `name` in `dir`.
    pub fn mkdir(&mut self, dir: u64, name: &str) -> Result<u64> {
        self.create(dir, name, true)
    }

    fn remove(&mut self, dir: u64, name: &str, want_dir: bool) -> Result<()> {
        let op = if want_dir {
            "remove a directory"
        } else {
            "remove a file"
        };
        self.writable(op)?;
        let units = utf16_name(name)?;
        // SAFETY: `units` holds `len` units.
        check(
            unsafe {
                sys::snf_ntfs_unlink(
                    self.raw.as_ptr(),
                    dir,
                    units.as_ptr(),
                    units.len() as c_int,
                    c_int::from(want_dir),
                )
            },
            op,
            dir,
        )
    }

    /// Remove the non-directory `name` from `dir` (its data goes with its last name).
    pub fn unlink(&mut self, dir: u64, name: &str) -> Result<()> {
        self.remove(dir, name, false)
    }

    /// Remove the empty directory `name` from `dir`.
    pub fn rmdir(&mut self, dir: u64, name: &str) -> Result<()> {
        self.remove(dir, name, true)
    }

    /// Add the name `name` in `dir` for `ino`.
    pub fn link(&mut self, ino: u64, dir: u64, name: &str) -> Result<()> {
        self.writable("link")?;
        let units = utf16_name(name)?;
        // SAFETY: `units` holds `len` units.
        check(
            unsafe {
                sys::snf_ntfs_link(
                    self.raw.as_ptr(),
                    ino,
                    dir,
                    units.as_ptr(),
                    units.len() as c_int,
                )
            },
            "link",
            ino,
        )
    }

    /// Move `from_name` of `from_dir` to `to_name` in `to_dir`, replacing a file or an
    /// empty directory there: a new name is linked, then the old one removed.
    pub fn rename(
        &mut self,
        from_dir: u64,
        from_name: &str,
        to_dir: u64,
        to_name: &str,
    ) -> Result<()> {
        self.writable("rename")?;
        let not_found = |ino| Error::Op {
            op: "rename",
            ino,
            errno: e::ENOENT,
        };
        let ino = self
            .lookup(from_dir, from_name)?
            .ok_or_else(|| not_found(from_dir))?;
        let is_dir = self.stat(ino)?.is_dir;
        if let Some(existing) = self.lookup(to_dir, to_name)? {
            if existing == ino {
                // The same object (maybe another case of the same name): renaming
                // only the case would need the last name removed first.
                if from_dir == to_dir && from_name == to_name {
                    return Ok(());
                }
                if from_dir != to_dir || from_name.to_lowercase() != to_name.to_lowercase() {
                    // Two names of one file (hard links): rename(2) does nothing.
                    return Ok(());
                }
                // Only the case changes: the names collide ignoring case, so the object
                // goes through a temporary name and never has none.
                let tmp = format!(".snf-rename-{ino}");
                self.link(ino, from_dir, &tmp)?;
                self.remove(from_dir, from_name, is_dir)?;
                self.link(ino, to_dir, to_name)?;
                return self.remove(from_dir, &tmp, is_dir);
            }
            let target_dir = self.stat(existing)?.is_dir;
            match (is_dir, target_dir) {
                (false, true) => {
                    return Err(Error::Op {
                        op: "rename",
                        ino: existing,
                        errno: e::EISDIR,
                    })
                }
                (true, false) => {
                    return Err(Error::Op {
                        op: "rename",
                        ino: existing,
                        errno: e::ENOTDIR,
                    })
                }
                _ => self.remove(to_dir, to_name, target_dir)?,
            }
        }
        if is_dir && self.is_ancestor(ino, to_dir)? {
            return Err(Error::Op {
                op: "rename a directory into itself",
                ino,
                errno: e::EINVAL,
            });
        }
        self.link(ino, to_dir, to_name)?;
        self.remove(from_dir, from_name, is_dir)
    }

    /// The directory holding `ino` (by its first name); the root for the root.
    pub fn parent(&mut self, ino: u64) -> Result<u64> {
        let mut parent = 0;
        // SAFETY: live volume, valid out pointer.
        check(
            unsafe { sys::snf_ntfs_parent(self.raw.as_ptr(), ino, &mut parent) },
            "find the parent directory",
            ino,
        )?;
        Ok(parent)
    }

    /// Whether directory `ancestor` is `dir` or above it, following parents up to the
    /// root (a bounded walk: a corrupt volume may loop).
    fn is_ancestor(&mut self, ancestor: u64, dir: u64) -> Result<bool> {
        let mut at = dir;
        for _ in 0..4096 {
            if at == ancestor {
                return Ok(true);
            }
            if at == ROOT_INO {
                return Ok(false);
            }
            at = self.parent(at)?;
        }
        Err(Error::Op {
            op: "find the parent directories (too deep or a loop)",
            ino: dir,
            errno: e::EIO,
        })
    }

    /// The target of a link (junction, symlink, WSL or Interix symlink) as a POSIX
    /// path; `None` if `ino` is not a link.
    pub fn read_link(&mut self, ino: u64) -> Result<Option<String>> {
        let st = self.stat(ino)?;
        if st.is_reparse_point() {
            let data = self.reparse_data(ino)?;
            return reparse::parse_link(&data, ino);
        }
        // Interix symlinks: a small system file with the magic.
        if !st.is_dir && st.is_system() && (10..=8192).contains(&st.size) {
            let data = self.read_all(ino, 8192)?;
            return Ok(reparse::parse_interix(&data));
        }
        Ok(None)
    }

    /// The raw reparse data of `ino`.
    pub fn reparse_data(&mut self, ino: u64) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; MAX_REPARSE];
        let mut size = 0u64;
        // SAFETY: `buf` has `MAX_REPARSE` writable bytes; valid out pointer.
        check(
            unsafe {
                sys::snf_ntfs_get_reparse(
                    self.raw.as_ptr(),
                    ino,
                    buf.as_mut_ptr().cast(),
                    MAX_REPARSE as u64,
                    &mut size,
                )
            },
            "read the reparse point",
            ino,
        )?;
        if size > MAX_REPARSE as u64 {
            return Err(Error::BadReparse {
                ino,
                why: "larger than 16 KiB",
            });
        }
        buf.truncate(size as usize);
        Ok(buf)
    }

    /// Set the reparse point of `ino` to raw `data`.
    pub fn set_reparse_data(&mut self, ino: u64, data: &[u8]) -> Result<()> {
        self.writable("set a reparse point")?;
        // SAFETY: `data` has `data.len()` readable bytes.
        check(
            unsafe {
                sys::snf_ntfs_set_reparse(
                    self.raw.as_ptr(),
                    ino,
                    data.as_ptr().cast(),
                    data.len() as u64,
                )
            },
            "set a reparse point",
            ino,
        )
    }

    /// Create a Windows symbolic link `name` in `dir` pointing to `target` (a POSIX
    /// path; absolute ones are written as `C:\...`).
    pub fn symlink(&mut self, dir: u64, name: &str, target: &str) -> Result<u64> {
        let data = reparse::build_symlink(target)?;
        let ino = self.create_file(dir, name)?;
        if let Err(err) = self.set_reparse_data(ino, &data) {
            let _ = self.unlink(dir, name);
            return Err(err);
        }
        Ok(ino)
    }

    /// Set the access and/or modification time (Unix seconds).
    pub fn set_times(&mut self, ino: u64, atime: Option<i64>, mtime: Option<i64>) -> Result<()> {
        self.writable("set times")?;
        let t = |v: Option<i64>| v.map(unix_to_ntfs).unwrap_or(-1).max(-1);
        // SAFETY: live volume.
        check(
            unsafe { sys::snf_ntfs_set_times(self.raw.as_ptr(), ino, t(atime), t(mtime)) },
            "set times",
            ino,
        )
    }

    /// Write everything to the image file.
    pub fn sync(&mut self) -> Result<()> {
        // SAFETY: live volume.
        check(
            unsafe { sys::snf_ntfs_sync(self.raw.as_ptr()) },
            "sync the volume",
            3,
        )
    }

    /// Unmount, writing everything back, and report errors of that final write.
    pub fn close(mut self) -> Result<()> {
        let rc = self.unmount();
        check(rc, "unmount the volume", 3)
    }

    fn unmount(&mut self) -> c_int {
        if !self.mounted {
            return 0;
        }
        self.mounted = false;
        // SAFETY: the volume is live and, `mounted` now false, never used again.
        unsafe { sys::snf_ntfs_umount(self.raw.as_ptr()) }
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        // `file` is dropped after this, once the unmount no longer needs it.
        self.unmount();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_convert_both_ways() {
        assert_eq!(ntfs_to_unix(NTFS_EPOCH_OFFSET), 0);
        assert_eq!(ntfs_to_unix(unix_to_ntfs(1_700_000_000)), 1_700_000_000);
    }

    #[test]
    fn names_are_checked() {
        assert!(utf16_name("a/b").is_err());
        assert!(utf16_name("").is_err());
        assert!(utf16_name(&"x".repeat(256)).is_err());
        assert_eq!(utf16_name("é").unwrap(), vec![0xe9]);
    }
}
