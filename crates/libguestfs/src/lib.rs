//! A safe binding to the few libguestfs calls the appliance backend needs.
//!
//! A [`Handle`] owns one libguestfs handle and, once [`Handle::launch`]ed, the appliance
//! (a qemu process) behind it: dropping the handle shuts the appliance down and closes
//! the handle, so no exit path leaves a qemu running. All of the crate's unsafe code is
//! here and in [`sys`]; every other crate keeps `#![forbid(unsafe_code)]`.

mod sys;

use std::ffi::{c_char, c_int, c_void, CStr, CString, OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

/// The library's functions. Every call but [`Handle::new`]'s own check happens through
/// a handle, which exists only once the library was loaded.
fn api() -> &'static sys::Api {
    sys::api().expect("libguestfs is loaded before any handle exists")
}

/// Whether libguestfs can be loaded here, and if not, one line saying what to install.
pub fn available() -> std::result::Result<(), String> {
    sys::api().map(|_| ()).map_err(str::to_string)
}

/// Most bytes one `pread`/`pwrite` round trip carries: well under the protocol's
/// 4 MiB message limit.
pub const MAX_CHUNK: usize = 1 << 20;

/// A failed libguestfs call.
#[derive(Debug, thiserror::Error)]
#[error("libguestfs {op}{}: {msg}", if .arg.is_empty() { String::new() } else { format!(" {}", .arg) })]
pub struct Error {
    /// The call (`mount`, `lstatns` ...).
    pub op: &'static str,
    /// What it was called on (a path or device), empty if nothing.
    pub arg: String,
    /// libguestfs' message.
    pub msg: String,
    /// The errno of the failure inside the appliance, 0 when there was none.
    pub errno: i32,
}

/// Result of libguestfs calls.
pub type Result<T> = std::result::Result<T, Error>;

/// One partition of a drive, as `part_list` gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartInfo {
    pub number: u32,
    /// Byte offset on the drive.
    pub start: u64,
    /// Size in bytes.
    pub size: u64,
}

/// One directory entry as `readdir` gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dirent {
    pub ino: u64,
    /// `b` block device, `c` char device, `d` directory, `f` FIFO, `l` symlink,
    /// `r` regular file, `s` socket, `u`/`?` unknown.
    pub kind: u8,
    pub name: OsString,
}

/// `lstat` of one object, as `lstatns` gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stat {
    pub ino: u64,
    pub mode: u32,
    pub nlink: u64,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u64,
    pub size: u64,
    /// 512-byte blocks allocated.
    pub blocks: u64,
    pub atime: i64,
    pub mtime: i64,
    pub ctime: i64,
}

/// One btrfs subvolume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subvolume {
    pub id: u64,
    pub top_level_id: u64,
    pub path: String,
}

/// A libguestfs handle, and the appliance once launched.
pub struct Handle {
    g: *mut sys::GuestfsH,
}

// SAFETY: a libguestfs handle may be used from any thread as long as calls do not
// overlap; every call takes `&mut self`, so Rust's borrow rules serialise them.
unsafe impl Send for Handle {}

fn cstring(op: &'static str, s: &[u8]) -> Result<CString> {
    CString::new(s).map_err(|_| Error {
        op,
        arg: String::from_utf8_lossy(s).into_owned(),
        msg: "contains a NUL byte".into(),
        errno: 0,
    })
}

fn path_c(op: &'static str, p: &Path) -> Result<CString> {
    cstring(op, p.as_os_str().as_bytes())
}

impl Handle {
    /// A new handle with the `direct` backend (qemu run by libguestfs itself, no
    /// libvirt), its error messages returned instead of printed.
    pub fn new() -> Result<Handle> {
        sys::api().map_err(|why| Error {
            op: "create",
            arg: String::new(),
            msg: why.to_string(),
            errno: 0,
        })?;
        // SAFETY: guestfs_create takes no arguments and returns a new handle or NULL.
        let g = unsafe { (api().guestfs_create)() };
        if g.is_null() {
            return Err(Error {
                op: "create",
                arg: String::new(),
                msg: "cannot create a libguestfs handle".into(),
                errno: 0,
            });
        }
        let mut h = Handle { g };
        // SAFETY: `h.g` is a live handle; a NULL callback disables printing errors.
        unsafe { (api().guestfs_set_error_handler)(h.g, None, std::ptr::null_mut()) };
        let direct = c"direct";
        // SAFETY: live handle, NUL-terminated static string.
        let rc = unsafe { (api().guestfs_set_backend)(h.g, direct.as_ptr()) };
        h.check(rc, "set_backend", "direct")?;
        Ok(h)
    }

    fn error(&mut self, op: &'static str, arg: impl Into<String>) -> Error {
        // SAFETY: live handle; the returned string (possibly NULL) is owned by the
        // handle and valid until the next call, so it is copied at once.
        let (msg, errno) = unsafe {
            let p = (api().guestfs_last_error)(self.g);
            let msg = if p.is_null() {
                "unknown error".to_string()
            } else {
                CStr::from_ptr(p).to_string_lossy().into_owned()
            };
            (msg, (api().guestfs_last_errno)(self.g))
        };
        Error {
            op,
            arg: arg.into(),
            msg: msg.lines().next().unwrap_or("").to_string(),
            errno,
        }
    }

    fn check(&mut self, rc: c_int, op: &'static str, arg: impl Into<String>) -> Result<()> {
        if rc == -1 {
            Err(self.error(op, arg))
        } else {
            Ok(())
        }
    }

    /// Set one setting of the backend (before launch): `force_tcg`/`1` makes qemu
    /// emulate the CPU instead of using KVM.
    pub fn set_backend_setting(&mut self, name: &str, value: &str) -> Result<()> {
        let n = cstring("set_backend_setting", name.as_bytes())?;
        let v = cstring("set_backend_setting", value.as_bytes())?;
        // SAFETY: live handle, NUL-terminated strings copied by the library.
        let rc = unsafe { (api().guestfs_set_backend_setting)(self.g, n.as_ptr(), v.as_ptr()) };
        self.check(rc, "set_backend_setting", format!("{name}={value}"))
    }

    /// Set the appliance's memory in MiB (before launch).
    pub fn set_memsize(&mut self, mib: u32) -> Result<()> {
        let mib = c_int::try_from(mib).unwrap_or(c_int::MAX);
        // SAFETY: live handle, plain integer argument.
        let rc = unsafe { (api().guestfs_set_memsize)(self.g, mib) };
        self.check(rc, "set_memsize", mib.to_string())
    }

    /// Add a raw image read-write, with discards passed through when the host can (so
    /// that `fstrim` punches holes in the image file), before launch.
    pub fn add_drive_raw(&mut self, image: &Path, readonly: bool) -> Result<()> {
        let file = path_c("add_drive", image)?;
        // SAFETY: live handle; the variadic list is (option, value) pairs of the types
        // guestfs.h documents (readonly: int, format: const char *, discard: const char *)
        // ended by -1; the strings outlive the call.
        let rc = unsafe {
            (api().guestfs_add_drive_opts)(
                self.g,
                file.as_ptr(),
                sys::ADD_DRIVE_OPTS_READONLY,
                c_int::from(readonly),
                sys::ADD_DRIVE_OPTS_FORMAT,
                c"raw".as_ptr(),
                sys::ADD_DRIVE_OPTS_CACHEMODE,
                c"unsafe".as_ptr(),
                sys::ADD_DRIVE_OPTS_DISCARD,
                c"besteffort".as_ptr(),
                sys::OPTARGS_END,
            )
        };
        self.check(rc, "add_drive", image.display().to_string())
    }

    /// Start the appliance.
    pub fn launch(&mut self) -> Result<()> {
        // SAFETY: live handle.
        let rc = unsafe { (api().guestfs_launch)(self.g) };
        self.check(rc, "launch", "")
    }

    /// Unmount everything, sync and stop the appliance, reporting a failure to write
    /// back (closing the handle after this is then only freeing memory).
    pub fn shutdown(&mut self) -> Result<()> {
        // SAFETY: live handle.
        let rc = unsafe { (api().guestfs_shutdown)(self.g) };
        self.check(rc, "shutdown", "")
    }

    /// The partitions of `device` (`/dev/sda`).
    pub fn part_list(&mut self, device: &str) -> Result<Vec<PartInfo>> {
        let d = cstring("part_list", device.as_bytes())?;
        // SAFETY: live handle, NUL-terminated string; the list returned is ours to free.
        let l = unsafe { (api().guestfs_part_list)(self.g, d.as_ptr()) };
        if l.is_null() {
            return Err(self.error("part_list", device));
        }
        // SAFETY: a non-NULL list holds `len` valid entries at `val`; it is read once
        // and freed once with its own free function.
        let out = unsafe {
            let list = &*l;
            let v = slice(list.val, list.len)
                .iter()
                .map(|p| PartInfo {
                    number: u32::try_from(p.part_num).unwrap_or(0),
                    start: p.part_start,
                    size: p.part_size,
                })
                .collect();
            (api().guestfs_free_partition_list)(l);
            v
        };
        Ok(out)
    }

    /// The subvolumes of the btrfs filesystem mounted at `mountpoint`.
    pub fn btrfs_subvolume_list(&mut self, mountpoint: &str) -> Result<Vec<Subvolume>> {
        let d = cstring("btrfs_subvolume_list", mountpoint.as_bytes())?;
        // SAFETY: live handle, NUL-terminated string; the list returned is ours to free.
        let l = unsafe { (api().guestfs_btrfs_subvolume_list)(self.g, d.as_ptr()) };
        if l.is_null() {
            return Err(self.error("btrfs_subvolume_list", mountpoint));
        }
        // SAFETY: as in part_list; each path is a NUL-terminated string of the list.
        let out = unsafe {
            let list = &*l;
            let v = slice(list.val, list.len)
                .iter()
                .map(|s| Subvolume {
                    id: s.id,
                    top_level_id: s.top_level_id,
                    path: if s.path.is_null() {
                        String::new()
                    } else {
                        CStr::from_ptr(s.path).to_string_lossy().into_owned()
                    },
                })
                .collect();
            (api().guestfs_free_btrfssubvolume_list)(l);
            v
        };
        Ok(out)
    }

    /// Create a mount point at `path` of the appliance's root, so that several
    /// filesystems can be mounted side by side.
    pub fn mkmountpoint(&mut self, path: &str) -> Result<()> {
        let p = cstring("mkmountpoint", path.as_bytes())?;
        // SAFETY: live handle, NUL-terminated string.
        let rc = unsafe { (api().guestfs_mkmountpoint)(self.g, p.as_ptr()) };
        self.check(rc, "mkmountpoint", path)
    }

    /// Mount `device` at `mountpoint` with mount(8) `options` (`ro`, `subvol=root` ...).
    pub fn mount_options(&mut self, options: &str, device: &str, mountpoint: &str) -> Result<()> {
        let o = cstring("mount", options.as_bytes())?;
        let d = cstring("mount", device.as_bytes())?;
        let m = cstring("mount", mountpoint.as_bytes())?;
        // SAFETY: live handle, NUL-terminated strings.
        let rc =
            unsafe { (api().guestfs_mount_options)(self.g, o.as_ptr(), d.as_ptr(), m.as_ptr()) };
        self.check(rc, "mount", format!("{device} on {mountpoint} ({options})"))
    }

    /// Unmount the filesystem at `mountpoint`.
    pub fn umount(&mut self, mountpoint: &str) -> Result<()> {
        let m = cstring("umount", mountpoint.as_bytes())?;
        // SAFETY: live handle, NUL-terminated string.
        let rc = unsafe { (api().guestfs_umount)(self.g, m.as_ptr()) };
        self.check(rc, "umount", mountpoint)
    }

    /// Unmount every filesystem.
    pub fn umount_all(&mut self) -> Result<()> {
        // SAFETY: live handle.
        let rc = unsafe { (api().guestfs_umount_all)(self.g) };
        self.check(rc, "umount_all", "")
    }

    /// Discard the free space of the filesystem mounted at `mountpoint`.
    pub fn fstrim(&mut self, mountpoint: &str) -> Result<()> {
        let m = cstring("fstrim", mountpoint.as_bytes())?;
        // SAFETY: live handle, NUL-terminated string, no optional arguments (-1 ends).
        let rc = unsafe { (api().guestfs_fstrim)(self.g, m.as_ptr(), sys::OPTARGS_END) };
        self.check(rc, "fstrim", mountpoint)
    }

    /// Resize the btrfs filesystem mounted at `mountpoint` (its one device) to `size`
    /// bytes; shrinking relocates what lies past the new end, and fails with ENOSPC
    /// (28) when it does not fit.
    pub fn btrfs_filesystem_resize(&mut self, mountpoint: &str, size: u64) -> Result<()> {
        let m = cstring("btrfs_filesystem_resize", mountpoint.as_bytes())?;
        let size = i64::try_from(size).map_err(|_| Error {
            op: "btrfs_filesystem_resize",
            arg: mountpoint.to_string(),
            msg: format!("size {size} out of range"),
            errno: 0,
        })?;
        // SAFETY: live handle, NUL-terminated string; the variadic list is the one
        // (option, value) pair guestfs.h documents (size: int64_t) ended by -1.
        let rc = unsafe {
            (api().guestfs_btrfs_filesystem_resize)(
                self.g,
                m.as_ptr(),
                sys::BTRFS_FILESYSTEM_RESIZE_SIZE,
                size,
                sys::OPTARGS_END,
            )
        };
        self.check(rc, "btrfs_filesystem_resize", mountpoint)
    }

    /// Write everything cached in the appliance to the drives.
    pub fn sync(&mut self) -> Result<()> {
        // SAFETY: live handle.
        let rc = unsafe { (api().guestfs_sync)(self.g) };
        self.check(rc, "sync", "")
    }

    /// The entries of directory `dir`, with `.` and `..`.
    pub fn readdir(&mut self, dir: &Path) -> Result<Vec<Dirent>> {
        let d = path_c("readdir", dir)?;
        // SAFETY: live handle, NUL-terminated string; the list returned is ours to free.
        let l = unsafe { (api().guestfs_readdir)(self.g, d.as_ptr()) };
        if l.is_null() {
            return Err(self.error("readdir", dir.display().to_string()));
        }
        // SAFETY: as in part_list; each name is a NUL-terminated string of the list.
        let out = unsafe {
            let list = &*l;
            let v = slice(list.val, list.len)
                .iter()
                .filter(|e| !e.name.is_null())
                .map(|e| Dirent {
                    ino: e.ino as u64,
                    kind: e.ftyp as u8,
                    name: OsString::from_vec(CStr::from_ptr(e.name).to_bytes().to_vec()),
                })
                .collect();
            (api().guestfs_free_dirent_list)(l);
            v
        };
        Ok(out)
    }

    /// `lstat(2)` of `path`.
    pub fn lstat(&mut self, path: &Path) -> Result<Stat> {
        let p = path_c("lstatns", path)?;
        // SAFETY: live handle, NUL-terminated string; the struct returned is ours to free.
        let s = unsafe { (api().guestfs_lstatns)(self.g, p.as_ptr()) };
        if s.is_null() {
            return Err(self.error("lstatns", path.display().to_string()));
        }
        // SAFETY: a non-NULL result points to one statns, read once then freed once.
        let out = unsafe {
            let st = &*s;
            let out = Stat {
                ino: st.st_ino as u64,
                mode: st.st_mode as u32,
                nlink: st.st_nlink.max(0) as u64,
                uid: st.st_uid as u32,
                gid: st.st_gid as u32,
                rdev: st.st_rdev as u64,
                size: st.st_size.max(0) as u64,
                blocks: st.st_blocks.max(0) as u64,
                atime: st.st_atime_sec,
                mtime: st.st_mtime_sec,
                ctime: st.st_ctime_sec,
            };
            (api().guestfs_free_statns)(s);
            out
        };
        Ok(out)
    }

    /// The target of symlink `path`.
    pub fn readlink(&mut self, path: &Path) -> Result<OsString> {
        let p = path_c("readlink", path)?;
        // SAFETY: live handle, NUL-terminated string; the string returned is ours.
        let s = unsafe { (api().guestfs_readlink)(self.g, p.as_ptr()) };
        if s.is_null() {
            return Err(self.error("readlink", path.display().to_string()));
        }
        // SAFETY: non-NULL, NUL-terminated, allocated with malloc: copied then freed.
        let out = unsafe {
            let v = CStr::from_ptr(s).to_bytes().to_vec();
            sys::free(s.cast::<c_void>());
            v
        };
        Ok(OsString::from_vec(out))
    }

    /// Read up to `buf.len()` (at most [`MAX_CHUNK`]) bytes of `path` at `offset`.
    pub fn pread(&mut self, path: &Path, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let p = path_c("pread", path)?;
        let count = buf.len().min(MAX_CHUNK);
        let off = i64::try_from(offset).map_err(|_| Error {
            op: "pread",
            arg: path.display().to_string(),
            msg: format!("offset {offset} out of range"),
            errno: libc_einval(),
        })?;
        let mut got: usize = 0;
        // SAFETY: live handle, NUL-terminated string, `got` a valid out pointer; the
        // buffer returned (NULL on error) holds `got` bytes and is ours to free.
        let r = unsafe { (api().guestfs_pread)(self.g, p.as_ptr(), count as c_int, off, &mut got) };
        if r.is_null() {
            return Err(self.error("pread", path.display().to_string()));
        }
        // A misbehaving appliance must not make us read past what we asked for.
        let n = got.min(count);
        // SAFETY: `r` holds at least `n` bytes (n <= got); copied, then freed once.
        unsafe {
            buf[..n].copy_from_slice(std::slice::from_raw_parts(r.cast::<u8>(), n));
            sys::free(r.cast::<c_void>());
        }
        Ok(n)
    }

    /// Write all of `data` into `path` at `offset` (the file must exist).
    pub fn pwrite_all(&mut self, path: &Path, mut offset: u64, mut data: &[u8]) -> Result<()> {
        let p = path_c("pwrite", path)?;
        while !data.is_empty() {
            let n = data.len().min(MAX_CHUNK);
            let off = i64::try_from(offset).map_err(|_| Error {
                op: "pwrite",
                arg: path.display().to_string(),
                msg: format!("offset {offset} out of range"),
                errno: libc_einval(),
            })?;
            // SAFETY: live handle; `data[..n]` is valid for `n` bytes during the call.
            let rc = unsafe {
                (api().guestfs_pwrite)(self.g, p.as_ptr(), data.as_ptr().cast::<c_char>(), n, off)
            };
            if rc <= 0 {
                return Err(self.error("pwrite", path.display().to_string()));
            }
            let w = (rc as usize).min(n);
            data = &data[w..];
            offset += w as u64;
        }
        Ok(())
    }

    /// Truncate or extend `path` to `size` bytes.
    pub fn truncate(&mut self, path: &Path, size: u64) -> Result<()> {
        let p = path_c("truncate", path)?;
        let size = i64::try_from(size).unwrap_or(i64::MAX);
        // SAFETY: live handle, NUL-terminated string.
        let rc = unsafe { (api().guestfs_truncate_size)(self.g, p.as_ptr(), size) };
        self.check(rc, "truncate", path.display().to_string())
    }

    /// Create an empty file (or update the times of an existing one).
    pub fn touch(&mut self, path: &Path) -> Result<()> {
        self.path_op("touch", path, |g, p| {
            // SAFETY: live handle, NUL-terminated string.
            unsafe { (api().guestfs_touch)(g, p) }
        })
    }

    /// Create directory `path` with permission bits `mode` (before the umask).
    pub fn mkdir(&mut self, path: &Path, mode: u32) -> Result<()> {
        let mode = (mode & 0o7777) as c_int;
        self.path_op("mkdir", path, |g, p| {
            // SAFETY: live handle, NUL-terminated string.
            unsafe { (api().guestfs_mkdir_mode)(g, p, mode) }
        })
    }

    /// Create symlink `link` pointing to `target`.
    pub fn symlink(&mut self, target: &OsStr, link: &Path) -> Result<()> {
        let t = cstring("ln_s", target.as_bytes())?;
        self.path_op("ln_s", link, |g, p| {
            // SAFETY: live handle, NUL-terminated strings.
            unsafe { (api().guestfs_ln_s)(g, t.as_ptr(), p) }
        })
    }

    /// Create hard link `link` to `existing`.
    pub fn hard_link(&mut self, existing: &Path, link: &Path) -> Result<()> {
        let t = path_c("ln", existing)?;
        self.path_op("ln", link, |g, p| {
            // SAFETY: live handle, NUL-terminated strings.
            unsafe { (api().guestfs_ln)(g, t.as_ptr(), p) }
        })
    }

    /// Remove the non-directory `path`.
    pub fn rm(&mut self, path: &Path) -> Result<()> {
        self.path_op("rm", path, |g, p| {
            // SAFETY: live handle, NUL-terminated string.
            unsafe { (api().guestfs_rm)(g, p) }
        })
    }

    /// Remove the empty directory `path`.
    pub fn rmdir(&mut self, path: &Path) -> Result<()> {
        self.path_op("rmdir", path, |g, p| {
            // SAFETY: live handle, NUL-terminated string.
            unsafe { (api().guestfs_rmdir)(g, p) }
        })
    }

    /// `rename(2)` `from` to `to`.
    pub fn rename(&mut self, from: &Path, to: &Path) -> Result<()> {
        let f = path_c("rename", from)?;
        self.path_op("rename", to, |g, p| {
            // SAFETY: live handle, NUL-terminated strings.
            unsafe { (api().guestfs_rename)(g, f.as_ptr(), p) }
        })
    }

    /// Set the permission bits of `path`.
    pub fn chmod(&mut self, path: &Path, mode: u32) -> Result<()> {
        let mode = (mode & 0o7777) as c_int;
        self.path_op("chmod", path, |g, p| {
            // SAFETY: live handle, NUL-terminated string.
            unsafe { (api().guestfs_chmod)(g, mode, p) }
        })
    }

    /// Set the owner of `path` (not following a symlink); -1 keeps one as it is.
    pub fn lchown(&mut self, path: &Path, uid: i32, gid: i32) -> Result<()> {
        self.path_op("lchown", path, |g, p| {
            // SAFETY: live handle, NUL-terminated string.
            unsafe { (api().guestfs_lchown)(g, uid, gid, p) }
        })
    }

    /// Set the access and modification times of `path` (seconds since the epoch).
    pub fn utimens(&mut self, path: &Path, atime: i64, mtime: i64) -> Result<()> {
        self.path_op("utimens", path, |g, p| {
            // SAFETY: live handle, NUL-terminated string.
            unsafe { (api().guestfs_utimens)(g, p, atime, 0, mtime, 0) }
        })
    }

    fn path_op(
        &mut self,
        op: &'static str,
        path: &Path,
        f: impl FnOnce(*mut sys::GuestfsH, *const c_char) -> c_int,
    ) -> Result<()> {
        let p = path_c(op, path)?;
        let rc = f(self.g, p.as_ptr());
        self.check(rc, op, path.display().to_string())
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: the handle is live and closed exactly once; guestfs_close kills the
        // appliance if it is still running and frees everything the handle owns.
        unsafe { (api().guestfs_close)(self.g) };
    }
}

/// `count` elements at `ptr` (none when NULL or empty).
///
/// # Safety
/// `ptr` must be NULL or point to `count` initialised elements that outlive the slice.
unsafe fn slice<'a, T>(ptr: *const T, count: u32) -> &'a [T] {
    if ptr.is_null() || count == 0 {
        &[]
    } else {
        // SAFETY: guaranteed by the caller.
        unsafe { std::slice::from_raw_parts(ptr, count as usize) }
    }
}

fn libc_einval() -> i32 {
    22
}
