//! The safe handle on one open filesystem.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::ptr::{self, NonNull};
use std::sync::Mutex;

use crate::error::{Error, ErrorKind, Result};
use crate::info::{Features, SuperInfo};
use crate::sys;

/// An inode number.
pub type Ino = u32;

/// The root directory's inode number.
pub const ROOT_INO: Ino = 2;

/// Longest directory entry name ext2/3/4 can store.
pub const NAME_MAX: usize = 255;

/// Most bytes one FFI read or write moves; larger buffers are split.
const CHUNK: usize = 1 << 30;

/// The type of an inode, from its mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileType {
    Regular,
    Directory,
    Symlink,
    CharDevice,
    BlockDevice,
    Fifo,
    Socket,
    Unknown,
}

impl FileType {
    /// From the `S_IFMT` bits of a mode.
    pub fn from_mode(mode: u32) -> FileType {
        match mode & 0o170000 {
            0o100000 => FileType::Regular,
            0o040000 => FileType::Directory,
            0o120000 => FileType::Symlink,
            0o020000 => FileType::CharDevice,
            0o060000 => FileType::BlockDevice,
            0o010000 => FileType::Fifo,
            0o140000 => FileType::Socket,
            _ => FileType::Unknown,
        }
    }

    /// From the file type byte of a directory entry (`EXT2_FT_*`).
    pub fn from_dirent(ft: u8) -> FileType {
        match ft {
            1 => FileType::Regular,
            2 => FileType::Directory,
            3 => FileType::CharDevice,
            4 => FileType::BlockDevice,
            5 => FileType::Fifo,
            6 => FileType::Socket,
            7 => FileType::Symlink,
            _ => FileType::Unknown,
        }
    }

    fn mode_bits(self) -> Option<u32> {
        Some(match self {
            FileType::Regular => 0o100000,
            FileType::Directory => 0o040000,
            FileType::Symlink => 0o120000,
            FileType::CharDevice => 0o020000,
            FileType::BlockDevice => 0o060000,
            FileType::Fifo => 0o010000,
            FileType::Socket => 0o140000,
            FileType::Unknown => return None,
        })
    }
}

/// The attributes of one inode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inode {
    pub ino: Ino,
    /// Full mode: type bits and permission bits.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub links: u32,
    /// Seconds since the epoch (ext4's extra epoch bits included).
    pub atime: i64,
    pub mtime: i64,
    pub ctime: i64,
    /// Creation time where the inode records one, else 0.
    pub crtime: i64,
    /// Deletion time (non-zero only for freed inodes).
    pub dtime: u32,
    /// Bytes allocated on disk, the xattr block included.
    pub allocated: u64,
    /// `i_flags` (`EXT4_EXTENTS_FL`, `EXT4_INLINE_DATA_FL` ...).
    pub flags: u32,
    pub generation: u32,
    /// Device numbers of character and block devices, else 0.
    pub rdev_major: u32,
    pub rdev_minor: u32,
    /// Block holding this inode's extended attributes (0: none).
    pub xattr_block: u64,
}

impl Inode {
    /// The type of this inode.
    pub fn file_type(&self) -> FileType {
        FileType::from_mode(self.mode)
    }
    /// Permission bits including set-uid, set-gid and sticky.
    pub fn permissions(&self) -> u32 {
        self.mode & 0o7777
    }
    pub fn is_dir(&self) -> bool {
        self.file_type() == FileType::Directory
    }
    /// Whether its data lives in the inode itself (`inline_data`).
    pub fn is_inline(&self) -> bool {
        self.flags & 0x1000_0000 != 0
    }
}

/// One directory entry (never `.` or `..`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: Vec<u8>,
    pub ino: Ino,
    /// From the entry's file type byte; `Unknown` on filesystems without `filetype`.
    pub file_type: FileType,
}

/// Permission bits and owner of an inode being created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewInode {
    /// Permission bits (`0o7777` is kept, type bits are ignored).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// Attributes to change; `None` keeps the current value. The change time is always
/// set to now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub atime: Option<i64>,
    pub mtime: Option<i64>,
}

/// How to open a filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpenOptions {
    /// Open for writing. A journal that needs recovery is replayed first (with
    /// `e2fsck -E journal_only`); read-only opens refuse such a filesystem instead.
    pub writable: bool,
    /// Open even if the superblock records errors (normally refused).
    pub allow_errors: bool,
    /// Never `fsync`: libext2fs' unix I/O manager syncs the file when it opens it and
    /// on every flush; this uses plain `pread`/`pwrite` instead, so writes reach the
    /// kernel at once (other readers see them) but nothing forces them to disk. For scratch copies only, such as the
    /// private working copy this process reads back itself; a disk changed in place
    /// must stay durable. [`Ext2Fs::open`] sets it for files under the
    /// [`set_scratch_dir`] directory.
    pub no_sync: bool,
}

/// The directory (if any) whose files [`Ext2Fs::open`] writes without `fsync`.
static SCRATCH_DIR: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Declare `dir` (or nothing) as scratch space: filesystems in files below it are
/// temporary copies, so [`Ext2Fs::open`] opens them with [`OpenOptions::no_sync`].
/// Everything else (a source disk changed in place) keeps `fsync` on flush and close.
pub fn set_scratch_dir(dir: Option<&Path>) {
    let dir = dir.map(|d| std::fs::canonicalize(d).unwrap_or_else(|_| d.to_path_buf()));
    *SCRATCH_DIR.lock().unwrap_or_else(|e| e.into_inner()) = dir;
}

/// Whether `path` lies under the scratch directory.
fn is_scratch(path: &Path) -> bool {
    let guard = SCRATCH_DIR.lock().unwrap_or_else(|e| e.into_inner());
    let Some(dir) = guard.as_ref() else {
        return false;
    };
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    path.starts_with(dir)
}

/// An open ext2/3/4 filesystem inside an image file or block device.
///
/// Not `Sync`: libext2fs handles are not re-entrant, so every method takes `&mut self`.
/// Writers end with [`Ext2Fs::close`], which reports errors of the final write-back
/// (`ext2fs_close`: bitmaps, descriptors, superblock, the block cache). Dropping an
/// open handle also closes it, but only as the fallback of error paths: its errors are
/// lost.
pub struct Ext2Fs {
    raw: NonNull<sys::RawFs>,
    path: PathBuf,
    offset: u64,
    writable: bool,
    /// False once [`Ext2Fs::close`] has closed the handle.
    open: bool,
}

// SAFETY: the handle is owned exclusively by this value and only used through
// `&mut self`; libext2fs keeps no per-thread state for it (errors are returned, and the
// global error table is registered once under pthread_once in the shim).
unsafe impl Send for Ext2Fs {}

fn message(code: sys::Errcode) -> String {
    // SAFETY: snf_error_message returns a pointer to a static NUL-terminated string
    // (com_err's message table or a static buffer for unknown codes), never NULL.
    let ptr = unsafe { sys::snf_error_message(code) };
    if ptr.is_null() {
        return format!("error {code}");
    }
    // SAFETY: non-NULL and NUL-terminated as above; copied before any other call.
    unsafe { CStr::from_ptr(ptr) }
        .to_string_lossy()
        .into_owned()
}

/// The features of the superblock at `offset` in `path` that the linked libext2fs
/// lacks, read from the superblock itself (libext2fs' error does not say which);
/// `None` if it cannot be read or lacks nothing after all.
fn unsupported_features(path: &Path, offset: u64) -> Option<Error> {
    use std::os::unix::fs::FileExt;
    let mut sb = [0u8; 1024];
    let file = std::fs::File::open(path).ok()?;
    file.read_exact_at(&mut sb, offset.checked_add(1024)?)
        .ok()?;
    let features = Features::from_superblock(&sb)?;
    let mut supported = Features::default();
    // SAFETY: three valid out-pointers to u32.
    unsafe {
        sys::snf_lib_features(
            &mut supported.compat,
            &mut supported.incompat,
            &mut supported.ro_compat,
        )
    };
    // Unknown compat features never stop an open; naming them would mislead.
    supported.compat = u32::MAX;
    let missing = features.missing_from(&supported);
    if missing.is_empty() {
        return None;
    }
    Some(Error::UnsupportedFeatures {
        path: path.to_path_buf(),
        offset,
        fs_kind: features.kind(),
        features: missing,
        version: library_version(),
    })
}

/// The version of the libext2fs linked at run time (`1.47.0`).
pub fn library_version() -> String {
    // SAFETY: snf_lib_version returns a static NUL-terminated string, never NULL.
    unsafe { CStr::from_ptr(sys::snf_lib_version()) }
        .to_string_lossy()
        .into_owned()
}

/// `errcode_t` (a C `long`) widened for [`Error`]; a no-op on 64-bit targets.
#[allow(clippy::useless_conversion)]
fn code_i64(code: sys::Errcode) -> i64 {
    i64::from(code)
}

fn kind_of(code: sys::Errcode) -> ErrorKind {
    // SAFETY: a pure function of an integer.
    match unsafe { sys::snf_error_kind(code) } {
        sys::KIND_NOT_FOUND => ErrorKind::NotFound,
        sys::KIND_EXISTS => ErrorKind::AlreadyExists,
        sys::KIND_NO_SPACE => ErrorKind::NoSpace,
        sys::KIND_NOT_EMPTY => ErrorKind::NotEmpty,
        sys::KIND_NOT_DIR => ErrorKind::NotADirectory,
        sys::KIND_IS_DIR => ErrorKind::IsADirectory,
        sys::KIND_READ_ONLY => ErrorKind::ReadOnly,
        sys::KIND_UNSUPPORTED => ErrorKind::Unsupported,
        sys::KIND_CORRUPT => ErrorKind::Corrupt,
        sys::KIND_INVALID => ErrorKind::InvalidArgument,
        sys::KIND_TOO_MANY_LINKS => ErrorKind::TooManyLinks,
        sys::KIND_IO => ErrorKind::Io,
        _ => ErrorKind::Other,
    }
}

fn check(code: sys::Errcode, op: &'static str, ino: Ino) -> Result<()> {
    if code == 0 {
        Ok(())
    } else {
        Err(Error::Op {
            op,
            ino,
            kind: kind_of(code),
            code: code_i64(code),
            msg: message(code),
        })
    }
}

fn name_error(name: &[u8], why: &'static str) -> Error {
    Error::InvalidName {
        name: String::from_utf8_lossy(name).into_owned(),
        why,
    }
}

/// A name usable for lookups: no NUL or `/`, 1 to 255 bytes.
fn lookup_name(name: &[u8]) -> Result<CString> {
    if name.is_empty() {
        return Err(name_error(name, "empty"));
    }
    if name.len() > NAME_MAX {
        return Err(name_error(name, "longer than 255 bytes"));
    }
    if name.contains(&b'/') {
        return Err(name_error(name, "contains '/'"));
    }
    CString::new(name).map_err(|_| name_error(name, "contains a NUL byte"))
}

/// A name for a new entry: a lookup name that is not `.` or `..`.
fn entry_name(name: &[u8]) -> Result<CString> {
    if name == b"." || name == b".." {
        return Err(name_error(name, "reserved"));
    }
    lookup_name(name)
}

struct RecoveryCheck {
    needs_recovery: bool,
    has_errors: bool,
}

impl Ext2Fs {
    /// Open the filesystem that starts `offset` bytes into `path`.
    ///
    /// Writable opens replay a journal that needs recovery; read-only opens fail with
    /// [`Error::NeedsRecovery`]. A filesystem whose superblock records errors is
    /// refused with [`Error::HasErrors`] (see [`OpenOptions::allow_errors`]).
    pub fn open(path: &Path, offset: u64, writable: bool) -> Result<Ext2Fs> {
        Ext2Fs::open_with(
            path,
            offset,
            OpenOptions {
                writable,
                allow_errors: false,
                no_sync: is_scratch(path),
            },
        )
    }

    /// [`Ext2Fs::open`] with all options.
    pub fn open_with(path: &Path, offset: u64, options: OpenOptions) -> Result<Ext2Fs> {
        let ro = Ext2Fs::open_raw(path, offset, false, options.no_sync)?;
        let state = ro.recovery_check();
        if state.needs_recovery {
            drop(ro);
            if !options.writable {
                return Err(Error::NeedsRecovery {
                    path: path.to_path_buf(),
                    offset,
                });
            }
            replay_journal(path, offset)?;
            let again = Ext2Fs::open_raw(path, offset, false, options.no_sync)?;
            if again.recovery_check().needs_recovery {
                return Err(Error::NeedsRecovery {
                    path: path.to_path_buf(),
                    offset,
                });
            }
            return Ext2Fs::finish_open(again, options);
        }
        if state.has_errors && !options.allow_errors {
            return Err(Error::HasErrors {
                path: path.to_path_buf(),
                offset,
            });
        }
        Ext2Fs::finish_open(ro, options)
    }

    fn finish_open(ro: Ext2Fs, options: OpenOptions) -> Result<Ext2Fs> {
        if ro.recovery_check().has_errors && !options.allow_errors {
            return Err(Error::HasErrors {
                path: ro.path.clone(),
                offset: ro.offset,
            });
        }
        if !options.writable {
            return Ok(ro);
        }
        let (path, offset) = (ro.path.clone(), ro.offset);
        drop(ro);
        Ext2Fs::open_raw(&path, offset, true, options.no_sync)
    }

    fn recovery_check(&self) -> RecoveryCheck {
        let info = self.info();
        RecoveryCheck {
            needs_recovery: info.needs_recovery(),
            has_errors: info.has_errors(),
        }
    }

    fn open_raw(path: &Path, offset: u64, writable: bool, no_sync: bool) -> Result<Ext2Fs> {
        let open_err = |kind: ErrorKind, code: i64, msg: String| Error::Open {
            path: path.to_path_buf(),
            offset,
            kind,
            code,
            msg,
        };
        let cpath = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| {
            open_err(
                ErrorKind::InvalidArgument,
                0,
                "the path contains a NUL byte".into(),
            )
        })?;
        let options = CString::new(format!("offset={offset}")).expect("digits have no NUL");
        let mut raw: *mut sys::RawFs = ptr::null_mut();
        // SAFETY: both strings are valid NUL-terminated C strings that outlive the
        // call; `raw` is a valid out-pointer. On failure the shim leaves it NULL.
        let code = unsafe {
            sys::snf_open(
                cpath.as_ptr(),
                options.as_ptr(),
                c_int::from(writable),
                c_int::from(!no_sync),
                &mut raw,
            )
        };
        if code == sys::ET_UNSUPP_FEATURE || code == sys::ET_RO_UNSUPP_FEATURE {
            if let Some(e) = unsupported_features(path, offset) {
                return Err(e);
            }
        }
        if code != 0 {
            return Err(open_err(kind_of(code), code_i64(code), message(code)));
        }
        let raw = NonNull::new(raw)
            .ok_or_else(|| open_err(ErrorKind::Other, 0, "libext2fs returned no handle".into()))?;
        Ok(Ext2Fs {
            raw,
            path: path.to_path_buf(),
            offset,
            writable,
            open: true,
        })
    }

    /// The image file or device this filesystem lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the filesystem starts in [`Ext2Fs::path`], in bytes.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Whether it was opened for writing.
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    fn fs(&self) -> *mut sys::RawFs {
        self.raw.as_ptr()
    }

    fn require_writable(&self, op: &'static str) -> Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(Error::ReadOnly { op })
        }
    }

    /// The superblock as it is now (free counts follow every allocation).
    pub fn info(&self) -> SuperInfo {
        let mut raw = std::mem::MaybeUninit::<sys::SnfSuper>::uninit();
        // SAFETY: the handle is open; snf_super_info fully initializes `*out`
        // (memset, then every field).
        let raw = unsafe {
            sys::snf_super_info(self.fs(), raw.as_mut_ptr());
            raw.assume_init()
        };
        SuperInfo::from_raw(&raw)
    }

    /// The attributes of inode `ino`.
    pub fn inode(&mut self, ino: Ino) -> Result<Inode> {
        let mut raw = sys::SnfInode::default();
        // SAFETY: open handle, valid out-pointer to an initialized struct.
        let code = unsafe { sys::snf_read_inode(self.fs(), ino, &mut raw) };
        check(code, "read inode", ino)?;
        Ok(Inode {
            ino,
            mode: raw.mode,
            uid: raw.uid,
            gid: raw.gid,
            size: raw.size,
            links: raw.links,
            atime: raw.atime,
            mtime: raw.mtime,
            ctime: raw.ctime,
            crtime: raw.crtime,
            dtime: raw.dtime,
            allocated: raw.blocks512.saturating_mul(512),
            flags: raw.flags,
            generation: raw.generation,
            rdev_major: raw.rdev_major,
            rdev_minor: raw.rdev_minor,
            xattr_block: raw.file_acl,
        })
    }

    /// Find `name` in directory `dir`.
    pub fn lookup(&mut self, dir: Ino, name: &[u8]) -> Result<Option<Ino>> {
        let cname = lookup_name(name)?;
        let mut ino: u32 = 0;
        // SAFETY: open handle; `cname` holds name.len() (<= 255) valid bytes;
        // valid out-pointer.
        let code = unsafe {
            sys::snf_lookup(
                self.fs(),
                dir,
                cname.as_ptr(),
                name.len() as c_int,
                &mut ino,
            )
        };
        match check(code, "look up in directory", dir) {
            Ok(()) => Ok(Some(ino)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The entries of directory `dir` in on-disk order, without `.` and `..`.
    /// Entries whose names could not be path components (corrupt) are left out.
    pub fn read_dir(&mut self, dir: Ino) -> Result<Vec<DirEntry>> {
        extern "C" fn collect(
            ctx: *mut c_void,
            name: *const c_char,
            len: c_int,
            ino: u32,
            file_type: c_int,
        ) -> c_int {
            // SAFETY: `ctx` is the `&mut Vec<DirEntry>` passed below, alive and not
            // otherwise borrowed for the duration of snf_dir_iterate.
            let out = unsafe { &mut *(ctx as *mut Vec<DirEntry>) };
            let len = usize::try_from(len).unwrap_or(0).min(NAME_MAX);
            // SAFETY: the shim passes the entry's name bytes, `len` (<= 255) of them
            // inside the directory block buffer, valid during this call.
            let name = unsafe { std::slice::from_raw_parts(name as *const u8, len) };
            if !name.is_empty() && !name.contains(&b'/') && !name.contains(&0) {
                out.push(DirEntry {
                    name: name.to_vec(),
                    ino,
                    file_type: FileType::from_dirent(file_type as u8),
                });
            }
            0
        }
        let mut out: Vec<DirEntry> = Vec::new();
        // SAFETY: open handle; the callback only touches `out` through `ctx`, which
        // outlives the call.
        let code = unsafe {
            sys::snf_dir_iterate(
                self.fs(),
                dir,
                collect,
                &mut out as *mut Vec<DirEntry> as *mut c_void,
            )
        };
        check(code, "read directory", dir)?;
        Ok(out)
    }

    /// The target of symlink `ino`.
    pub fn read_link(&mut self, ino: Ino) -> Result<Vec<u8>> {
        let cap = self.info().block_size;
        let mut buf = vec![0u8; cap as usize];
        let mut len: u32 = 0;
        // SAFETY: open handle; `buf` has `cap` writable bytes; valid out-pointer.
        let code = unsafe {
            sys::snf_read_link(
                self.fs(),
                ino,
                buf.as_mut_ptr() as *mut c_char,
                cap,
                &mut len,
            )
        };
        check(code, "read symlink", ino)?;
        buf.truncate((len as usize).min(buf.len()));
        Ok(buf)
    }

    /// Read up to `buf.len()` bytes at `offset` of inode `ino`; returns the count
    /// (0 at end of file). Holes and unwritten extents read as zeros.
    pub fn read_at(&mut self, ino: Ino, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let len = buf.len().min(CHUNK);
        let mut got: u32 = 0;
        // SAFETY: open handle; `buf` has at least `len` writable bytes; valid
        // out-pointer. The shim never writes more than `len` bytes.
        let code = unsafe {
            sys::snf_read(
                self.fs(),
                ino,
                offset,
                buf.as_mut_ptr() as *mut c_void,
                len as u32,
                &mut got,
            )
        };
        check(code, "read", ino)?;
        Ok((got as usize).min(len))
    }

    /// Write all of `data` at `offset` of regular file `ino`, extending it if needed.
    /// Its xattrs are kept.
    pub fn write_at(&mut self, ino: Ino, offset: u64, data: &[u8]) -> Result<()> {
        self.require_writable("write")?;
        if data.is_empty() {
            // Nothing to write, but the same answer as a real write for non-files.
            return match self.inode(ino)?.file_type() {
                FileType::Regular => Ok(()),
                t => Err(Error::Op {
                    op: "write",
                    ino,
                    kind: if t == FileType::Directory {
                        ErrorKind::IsADirectory
                    } else {
                        ErrorKind::InvalidArgument
                    },
                    code: 0,
                    msg: format!("not a regular file ({t:?})"),
                }),
            };
        }
        let mut at = offset;
        for chunk in data.chunks(CHUNK) {
            // SAFETY: open handle; `chunk` is valid for `chunk.len()` (<= 1 GiB) bytes.
            let code = unsafe {
                sys::snf_write(
                    self.fs(),
                    ino,
                    at,
                    chunk.as_ptr() as *const c_void,
                    chunk.len() as u32,
                )
            };
            check(code, "write", ino)?;
            at += chunk.len() as u64;
        }
        Ok(())
    }

    /// Truncate or extend (with a hole) regular file `ino` to `size` bytes, freeing the
    /// blocks past the end.
    pub fn set_size(&mut self, ino: Ino, size: u64) -> Result<()> {
        self.require_writable("truncate")?;
        // SAFETY: open handle.
        let code = unsafe { sys::snf_set_size(self.fs(), ino, size) };
        check(code, "truncate", ino)
    }

    /// Create an empty regular file `name` in `dir`.
    pub fn create(&mut self, dir: Ino, name: &[u8], attr: NewInode) -> Result<Ino> {
        self.mknod(dir, name, FileType::Regular, attr, (0, 0))
    }

    /// Create a regular file, device, FIFO or socket `name` in `dir`; `rdev` is the
    /// (major, minor) pair of a device.
    pub fn mknod(
        &mut self,
        dir: Ino,
        name: &[u8],
        file_type: FileType,
        attr: NewInode,
        rdev: (u32, u32),
    ) -> Result<Ino> {
        self.require_writable("create")?;
        let cname = entry_name(name)?;
        let type_bits = match file_type {
            FileType::Directory | FileType::Symlink | FileType::Unknown => {
                return Err(Error::Op {
                    op: "create",
                    ino: dir,
                    kind: ErrorKind::InvalidArgument,
                    code: 0,
                    msg: format!("mknod cannot create a {file_type:?}"),
                })
            }
            t => t.mode_bits().unwrap_or(0o100000),
        };
        let mut ino: u32 = 0;
        // SAFETY: open handle; `cname` is a valid C string; valid out-pointer.
        let code = unsafe {
            sys::snf_create(
                self.fs(),
                dir,
                cname.as_ptr(),
                type_bits | (attr.mode & 0o7777),
                attr.uid,
                attr.gid,
                rdev.0,
                rdev.1,
                &mut ino,
            )
        };
        check(code, "create in directory", dir)?;
        Ok(ino)
    }

    /// Create directory `name` in `dir`.
    pub fn mkdir(&mut self, dir: Ino, name: &[u8], attr: NewInode) -> Result<Ino> {
        self.require_writable("mkdir")?;
        let cname = entry_name(name)?;
        let mut ino: u32 = 0;
        // SAFETY: open handle; valid C string; valid out-pointer.
        let code = unsafe {
            sys::snf_mkdir(
                self.fs(),
                dir,
                cname.as_ptr(),
                attr.mode & 0o7777,
                attr.uid,
                attr.gid,
                &mut ino,
            )
        };
        check(code, "mkdir in directory", dir)?;
        Ok(ino)
    }

    /// Create symlink `name` in `dir` pointing to `target` (mode 0777).
    pub fn symlink(
        &mut self,
        dir: Ino,
        name: &[u8],
        target: &[u8],
        uid: u32,
        gid: u32,
    ) -> Result<Ino> {
        self.require_writable("symlink")?;
        let cname = entry_name(name)?;
        if target.is_empty() {
            return Err(name_error(target, "empty symlink target"));
        }
        let ctarget = CString::new(target)
            .map_err(|_| name_error(target, "symlink target contains a NUL byte"))?;
        let mut ino: u32 = 0;
        // SAFETY: open handle; both C strings valid; valid out-pointer.
        let code = unsafe {
            sys::snf_symlink(
                self.fs(),
                dir,
                cname.as_ptr(),
                ctarget.as_ptr(),
                uid,
                gid,
                &mut ino,
            )
        };
        check(code, "symlink in directory", dir)?;
        Ok(ino)
    }

    /// Add a hard link `name` in `dir` to the non-directory `ino`.
    pub fn link(&mut self, ino: Ino, dir: Ino, name: &[u8]) -> Result<()> {
        self.require_writable("link")?;
        let cname = entry_name(name)?;
        // SAFETY: open handle; valid C string.
        let code = unsafe { sys::snf_link(self.fs(), ino, dir, cname.as_ptr()) };
        check(code, "link", ino)
    }

    /// Remove the non-directory entry `name` from `dir`; with its last link the inode,
    /// its blocks and its xattr block are freed.
    pub fn unlink(&mut self, dir: Ino, name: &[u8]) -> Result<()> {
        self.require_writable("unlink")?;
        let cname = entry_name(name)?;
        // SAFETY: open handle; valid C string.
        let code = unsafe { sys::snf_unlink(self.fs(), dir, cname.as_ptr()) };
        check(code, "unlink in directory", dir)
    }

    /// Remove the empty directory `name` from `dir`.
    pub fn rmdir(&mut self, dir: Ino, name: &[u8]) -> Result<()> {
        self.require_writable("rmdir")?;
        let cname = entry_name(name)?;
        // SAFETY: open handle; valid C string.
        let code = unsafe { sys::snf_rmdir(self.fs(), dir, cname.as_ptr()) };
        check(code, "rmdir in directory", dir)
    }

    /// Move `from_name` of `from_dir` to `to_name` of `to_dir` with `rename(2)`
    /// semantics: an existing non-directory target (or empty directory, for a
    /// directory source) is replaced; a directory cannot move below itself.
    pub fn rename(
        &mut self,
        from_dir: Ino,
        from_name: &[u8],
        to_dir: Ino,
        to_name: &[u8],
    ) -> Result<()> {
        self.require_writable("rename")?;
        let cfrom = entry_name(from_name)?;
        let cto = entry_name(to_name)?;
        // SAFETY: open handle; valid C strings.
        let code =
            unsafe { sys::snf_rename(self.fs(), from_dir, cfrom.as_ptr(), to_dir, cto.as_ptr()) };
        check(code, "rename from directory", from_dir)
    }

    /// Change mode bits, owner or times of `ino`.
    pub fn set_attr(&mut self, ino: Ino, attr: SetAttr) -> Result<()> {
        self.require_writable("set attributes")?;
        let mut which = 0;
        if attr.mode.is_some() {
            which |= sys::SET_MODE;
        }
        if attr.uid.is_some() {
            which |= sys::SET_UID;
        }
        if attr.gid.is_some() {
            which |= sys::SET_GID;
        }
        if attr.atime.is_some() {
            which |= sys::SET_ATIME;
        }
        if attr.mtime.is_some() {
            which |= sys::SET_MTIME;
        }
        // SAFETY: open handle; plain integer arguments.
        let code = unsafe {
            sys::snf_set_attr(
                self.fs(),
                ino,
                which,
                attr.mode.unwrap_or(0),
                attr.uid.unwrap_or(0),
                attr.gid.unwrap_or(0),
                attr.atime.unwrap_or(0),
                attr.mtime.unwrap_or(0),
            )
        };
        check(code, "set attributes", ino)
    }

    /// All extended attributes of `ino` as (full name, value), e.g. `user.foo`,
    /// `security.selinux`, `system.posix_acl_access` (in the `getxattr` format).
    pub fn xattrs(&mut self, ino: Ino) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        extern "C" fn collect(
            ctx: *mut c_void,
            name: *const c_char,
            value: *const c_void,
            len: usize,
        ) -> c_int {
            // SAFETY: `ctx` is the `&mut Vec` passed below, alive and unaliased during
            // snf_xattrs.
            let out = unsafe { &mut *(ctx as *mut Vec<(Vec<u8>, Vec<u8>)>) };
            // SAFETY: libext2fs passes a NUL-terminated name valid during this call.
            let name = unsafe { CStr::from_ptr(name) }.to_bytes().to_vec();
            let value = if len == 0 || value.is_null() {
                Vec::new()
            } else {
                // SAFETY: `value` points to `len` readable bytes during this call.
                unsafe { std::slice::from_raw_parts(value as *const u8, len) }.to_vec()
            };
            out.push((name, value));
            0
        }
        let mut out: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        // SAFETY: open handle; the callback only touches `out` through `ctx`.
        let code = unsafe {
            sys::snf_xattrs(
                self.fs(),
                ino,
                collect,
                &mut out as *mut Vec<(Vec<u8>, Vec<u8>)> as *mut c_void,
            )
        };
        check(code, "read extended attributes", ino)?;
        Ok(out)
    }

    /// Set extended attribute `name` (with its namespace prefix) of `ino`.
    pub fn set_xattr(&mut self, ino: Ino, name: &[u8], value: &[u8]) -> Result<()> {
        self.require_writable("set extended attribute")?;
        let cname = CString::new(name).map_err(|_| name_error(name, "contains a NUL byte"))?;
        // SAFETY: open handle; valid C string; `value` valid for its length.
        let code = unsafe {
            sys::snf_xattr_set(
                self.fs(),
                ino,
                cname.as_ptr(),
                value.as_ptr() as *const c_void,
                value.len(),
            )
        };
        check(code, "set extended attribute", ino)
    }

    /// Remove extended attribute `name` of `ino` (not found if it has none).
    pub fn remove_xattr(&mut self, ino: Ino, name: &[u8]) -> Result<()> {
        self.require_writable("remove extended attribute")?;
        let cname = CString::new(name).map_err(|_| name_error(name, "contains a NUL byte"))?;
        // SAFETY: open handle; valid C string.
        let code = unsafe { sys::snf_xattr_remove(self.fs(), ino, cname.as_ptr()) };
        check(code, "remove extended attribute", ino)
    }

    /// Runs of blocks in use according to the block bitmap, as (first block, count),
    /// in increasing order. Blocks before `first_data_block` (the boot block of 1 KiB
    /// filesystems) count as used. Everything else is free and may be written as a hole.
    pub fn used_block_ranges(&mut self) -> Result<Vec<(u64, u64)>> {
        extern "C" fn collect(ctx: *mut c_void, first: u64, count: u64) -> c_int {
            // SAFETY: `ctx` is the `&mut Vec` passed below, alive and unaliased during
            // snf_used_blocks.
            let out = unsafe { &mut *(ctx as *mut Vec<(u64, u64)>) };
            match out.last_mut() {
                Some(last) if last.0 + last.1 == first => last.1 += count,
                _ => out.push((first, count)),
            }
            0
        }
        let mut out: Vec<(u64, u64)> = Vec::new();
        // SAFETY: open handle; the callback only touches `out` through `ctx`.
        let code = unsafe {
            sys::snf_used_blocks(
                self.fs(),
                collect,
                &mut out as *mut Vec<(u64, u64)> as *mut c_void,
            )
        };
        check(code, "read block bitmap", 0)?;
        Ok(out)
    }

    /// Write bitmaps, group descriptors and superblock back and flush the device.
    /// The handle stays usable.
    pub fn flush(&mut self) -> Result<()> {
        // SAFETY: open handle.
        let code = unsafe { sys::snf_flush(self.fs()) };
        check(code, "flush", 0)
    }

    /// Close, writing everything back if writable, and report any error of that write.
    pub fn close(mut self) -> Result<()> {
        self.open = false;
        // SAFETY: the handle is open; clearing `open` first keeps Drop from closing it
        // a second time.
        let code = unsafe { sys::snf_close(self.fs()) };
        check(code, "close", 0)
    }
}

impl Drop for Ext2Fs {
    fn drop(&mut self) {
        if self.open {
            // SAFETY: the handle is open and this is the only place left that closes it.
            let _ = unsafe { sys::snf_close(self.fs()) };
        }
    }
}

impl std::fmt::Debug for Ext2Fs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ext2Fs")
            .field("path", &self.path)
            .field("offset", &self.offset)
            .field("writable", &self.writable)
            .finish()
    }
}

/// The `image?offset=N` form e2fsprogs' tools accept.
pub fn e2fsprogs_spec(path: &Path, offset: u64) -> std::ffi::OsString {
    let mut spec = path.as_os_str().to_owned();
    if offset != 0 {
        spec.push(format!("?offset={offset}"));
    }
    spec
}

/// Replay the journal with `e2fsck -E journal_only -y` (libext2fs has no journal
/// replay of its own).
///
/// e2fsprogs 1.47.0 replays the journal of an `image?offset=N` filesystem correctly
/// but then fails to re-open it (the offset is lost) before clearing the
/// `needs_recovery` flag, so its exit status cannot be trusted here. What is checked
/// instead is the result: once the jbd2 superblock says the journal is empty
/// (`s_start == 0`), the flag is cleared exactly as e2fsck would have done.
fn replay_journal(path: &Path, offset: u64) -> Result<()> {
    let mut cmd = Command::new("e2fsck");
    cmd.args(["-E", "journal_only", "-y"])
        .arg(e2fsprogs_spec(path, offset));
    let fail = |source| Error::Recovery {
        path: path.to_path_buf(),
        offset,
        source,
    };
    // A journal is at most a few GiB to replay.
    let out =
        snf_core::command::run_unchecked_with_limit(&mut cmd, std::time::Duration::from_secs(600))
            .map_err(fail)?;
    let mut fs = Ext2Fs::open_raw(path, offset, true, false)?;
    let mut empty: c_int = 0;
    // SAFETY: open handle; valid out-pointer.
    let code = unsafe { sys::snf_journal_is_empty(fs.fs(), &mut empty) };
    if code != 0 || empty == 0 {
        let detail = if code != 0 {
            message(code)
        } else {
            "the journal still holds transactions".to_string()
        };
        return Err(fail(snf_core::command::CommandError::Failed {
            program: "e2fsck".into(),
            status: out.status,
            stdout: out.stdout,
            stderr: format!("{}\n{detail}", out.stderr),
        }));
    }
    // SAFETY: open writable handle.
    unsafe { sys::snf_clear_needs_recovery(fs.fs()) };
    fs.flush()?;
    fs.close()
}
