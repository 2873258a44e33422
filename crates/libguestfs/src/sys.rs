//! The libguestfs C declarations this crate uses, written by hand from
//! /usr/include/guestfs.h (libguestfs 1.48). Only what `lib.rs` calls.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::OnceLock;

/// The opaque `guestfs_h`.
#[repr(C)]
pub struct GuestfsH {
    _private: [u8; 0],
}

pub const ADD_DRIVE_OPTS_READONLY: c_int = 0;
pub const ADD_DRIVE_OPTS_FORMAT: c_int = 1;
pub const ADD_DRIVE_OPTS_CACHEMODE: c_int = 9;
pub const ADD_DRIVE_OPTS_DISCARD: c_int = 10;
/// Ends the optional-argument list of the variadic calls.
pub const OPTARGS_END: c_int = -1;
/// `GUESTFS_BTRFS_FILESYSTEM_RESIZE_SIZE`: the new size follows, an `int64_t`.
pub const BTRFS_FILESYSTEM_RESIZE_SIZE: c_int = 0;

#[repr(C)]
pub struct Dirent {
    pub ino: i64,
    pub ftyp: c_char,
    pub name: *mut c_char,
}

#[repr(C)]
pub struct DirentList {
    pub len: u32,
    pub val: *mut Dirent,
}

#[repr(C)]
pub struct Partition {
    pub part_num: i32,
    pub part_start: u64,
    pub part_end: u64,
    pub part_size: u64,
}

#[repr(C)]
pub struct PartitionList {
    pub len: u32,
    pub val: *mut Partition,
}

#[repr(C)]
pub struct BtrfsSubvolume {
    pub id: u64,
    pub top_level_id: u64,
    pub path: *mut c_char,
}

#[repr(C)]
pub struct BtrfsSubvolumeList {
    pub len: u32,
    pub val: *mut BtrfsSubvolume,
}

#[repr(C)]
pub struct Statns {
    pub st_dev: i64,
    pub st_ino: i64,
    pub st_mode: i64,
    pub st_nlink: i64,
    pub st_uid: i64,
    pub st_gid: i64,
    pub st_rdev: i64,
    pub st_size: i64,
    pub st_blksize: i64,
    pub st_blocks: i64,
    pub st_atime_sec: i64,
    pub st_atime_nsec: i64,
    pub st_mtime_sec: i64,
    pub st_mtime_nsec: i64,
    pub st_ctime_sec: i64,
    pub st_ctime_nsec: i64,
    pub st_spare1: i64,
    pub st_spare2: i64,
    pub st_spare3: i64,
    pub st_spare4: i64,
    pub st_spare5: i64,
    pub st_spare6: i64,
}

pub type ErrorHandler = Option<unsafe extern "C" fn(*mut GuestfsH, *mut c_void, *const c_char)>;

/// Where the library is looked for: the soname of Debian's libguestfs0.
const SONAME: &CStr = c"libguestfs.so.0";

/// The functions of libguestfs this crate calls, found in the library at run time
/// (`dlopen`): the programs start, and work on every other filesystem, on a machine
/// without libguestfs; only a guest that needs the appliance asks for it.
pub struct Api {
    pub guestfs_create: unsafe extern "C" fn() -> *mut GuestfsH,
    pub guestfs_close: unsafe extern "C" fn(*mut GuestfsH),
    pub guestfs_last_error: unsafe extern "C" fn(*mut GuestfsH) -> *const c_char,
    pub guestfs_last_errno: unsafe extern "C" fn(*mut GuestfsH) -> c_int,
    pub guestfs_set_error_handler: unsafe extern "C" fn(*mut GuestfsH, ErrorHandler, *mut c_void),
    pub guestfs_set_backend: unsafe extern "C" fn(*mut GuestfsH, *const c_char) -> c_int,
    pub guestfs_set_backend_setting:
        unsafe extern "C" fn(*mut GuestfsH, *const c_char, *const c_char) -> c_int,
    pub guestfs_set_memsize: unsafe extern "C" fn(*mut GuestfsH, c_int) -> c_int,
    pub guestfs_add_drive_opts: unsafe extern "C" fn(*mut GuestfsH, *const c_char, ...) -> c_int,
    pub guestfs_launch: unsafe extern "C" fn(*mut GuestfsH) -> c_int,
    pub guestfs_shutdown: unsafe extern "C" fn(*mut GuestfsH) -> c_int,
    pub guestfs_part_list: unsafe extern "C" fn(*mut GuestfsH, *const c_char) -> *mut PartitionList,
    pub guestfs_free_partition_list: unsafe extern "C" fn(*mut PartitionList),
    pub guestfs_btrfs_subvolume_list:
        unsafe extern "C" fn(*mut GuestfsH, *const c_char) -> *mut BtrfsSubvolumeList,
    pub guestfs_free_btrfssubvolume_list: unsafe extern "C" fn(*mut BtrfsSubvolumeList),
    pub guestfs_mkmountpoint: unsafe extern "C" fn(*mut GuestfsH, *const c_char) -> c_int,
    pub guestfs_mount_options:
        unsafe extern "C" fn(*mut GuestfsH, *const c_char, *const c_char, *const c_char) -> c_int,
    pub guestfs_umount: unsafe extern "C" fn(*mut GuestfsH, *const c_char) -> c_int,
    pub guestfs_umount_all: unsafe extern "C" fn(*mut GuestfsH) -> c_int,
    pub guestfs_fstrim: unsafe extern "C" fn(*mut GuestfsH, *const c_char, ...) -> c_int,
    pub guestfs_sync: unsafe extern "C" fn(*mut GuestfsH) -> c_int,
    pub guestfs_btrfs_filesystem_resize:
        unsafe extern "C" fn(*mut GuestfsH, *const c_char, ...) -> c_int,
    pub guestfs_readdir: unsafe extern "C" fn(*mut GuestfsH, *const c_char) -> *mut DirentList,
    pub guestfs_free_dirent_list: unsafe extern "C" fn(*mut DirentList),
    pub guestfs_lstatns: unsafe extern "C" fn(*mut GuestfsH, *const c_char) -> *mut Statns,
    pub guestfs_free_statns: unsafe extern "C" fn(*mut Statns),
    pub guestfs_readlink: unsafe extern "C" fn(*mut GuestfsH, *const c_char) -> *mut c_char,
    pub guestfs_pread:
        unsafe extern "C" fn(*mut GuestfsH, *const c_char, c_int, i64, *mut usize) -> *mut c_char,
    pub guestfs_pwrite:
        unsafe extern "C" fn(*mut GuestfsH, *const c_char, *const c_char, usize, i64) -> c_int,
    pub guestfs_truncate_size: unsafe extern "C" fn(*mut GuestfsH, *const c_char, i64) -> c_int,
    pub guestfs_touch: unsafe extern "C" fn(*mut GuestfsH, *const c_char) -> c_int,
    pub guestfs_mkdir_mode: unsafe extern "C" fn(*mut GuestfsH, *const c_char, c_int) -> c_int,
    pub guestfs_ln_s: unsafe extern "C" fn(*mut GuestfsH, *const c_char, *const c_char) -> c_int,
    pub guestfs_ln: unsafe extern "C" fn(*mut GuestfsH, *const c_char, *const c_char) -> c_int,
    pub guestfs_rm: unsafe extern "C" fn(*mut GuestfsH, *const c_char) -> c_int,
    pub guestfs_rmdir: unsafe extern "C" fn(*mut GuestfsH, *const c_char) -> c_int,
    pub guestfs_rename: unsafe extern "C" fn(*mut GuestfsH, *const c_char, *const c_char) -> c_int,
    pub guestfs_chmod: unsafe extern "C" fn(*mut GuestfsH, c_int, *const c_char) -> c_int,
    pub guestfs_lchown: unsafe extern "C" fn(*mut GuestfsH, c_int, c_int, *const c_char) -> c_int,
    pub guestfs_utimens:
        unsafe extern "C" fn(*mut GuestfsH, *const c_char, i64, i64, i64, i64) -> c_int,
}

static API: OnceLock<std::result::Result<Api, String>> = OnceLock::new();

/// The library's functions, loaded on first use; the error says what is missing.
pub fn api() -> std::result::Result<&'static Api, &'static str> {
    API.get_or_init(load).as_ref().map_err(String::as_str)
}

fn load() -> std::result::Result<Api, String> {
    // SAFETY: dlopen with a NUL-terminated soname; the handle is never closed, so the
    // function pointers taken from it stay valid for the life of the process.
    let lib = unsafe { dlopen(SONAME.as_ptr(), RTLD_NOW | RTLD_LOCAL) };
    if lib.is_null() {
        return Err(format!(
            "libguestfs is not installed ({}): install the Debian package libguestfs0",
            dl_error()
        ));
    }
    /// Each symbol, as the type of its field: the declarations above are written from
    /// guestfs.h, so the transmute gives each function its real signature.
    macro_rules! sym {
        ($name:ident, $t:ty) => {{
            let name = concat!(stringify!($name), "\0");
            // SAFETY: `lib` is a live handle and `name` NUL-terminated.
            let p = unsafe { dlsym(lib, name.as_ptr().cast()) };
            if p.is_null() {
                return Err(format!(
                    "the installed libguestfs lacks {} (libguestfs 1.40 or later is needed)",
                    stringify!($name)
                ));
            }
            // SAFETY: `p` is the address of the C function `$name`, whose signature is
            // the field's type (from guestfs.h); function and data pointers have the
            // same size and representation on the platforms Linux runs on.
            unsafe { std::mem::transmute::<*mut c_void, $t>(p) }
        }};
    }
    Ok(Api {
        guestfs_create: sym!(guestfs_create, unsafe extern "C" fn() -> *mut GuestfsH),
        guestfs_close: sym!(guestfs_close, unsafe extern "C" fn(*mut GuestfsH)),
        guestfs_last_error: sym!(
            guestfs_last_error,
            unsafe extern "C" fn(*mut GuestfsH) -> *const c_char
        ),
        guestfs_last_errno: sym!(
            guestfs_last_errno,
            unsafe extern "C" fn(*mut GuestfsH) -> c_int
        ),
        guestfs_set_error_handler: sym!(
            guestfs_set_error_handler,
            unsafe extern "C" fn(*mut GuestfsH, ErrorHandler, *mut c_void)
        ),
        guestfs_set_backend: sym!(
            guestfs_set_backend,
            unsafe extern "C" fn(*mut GuestfsH, *const c_char) -> c_int
        ),
        guestfs_set_backend_setting: sym!(
            guestfs_set_backend_setting,
            unsafe extern "C" fn(*mut GuestfsH, *const c_char, *const c_char) -> c_int
        ),
        guestfs_set_memsize: sym!(
            guestfs_set_memsize,
            unsafe extern "C" fn(*mut GuestfsH, c_int) -> c_int
        ),
        guestfs_add_drive_opts: sym!(
            guestfs_add_drive_opts,
            unsafe extern "C" fn(*mut GuestfsH, *const c_char, ...) -> c_int
        ),
        guestfs_launch: sym!(guestfs_launch, unsafe extern "C" fn(*mut GuestfsH) -> c_int),
        guestfs_shutdown: sym!(
            guestfs_shutdown,
            unsafe extern "C" fn(*mut GuestfsH) -> c_int
        ),
        guestfs_part_list: sym!(
            guestfs_part_list,
            unsafe extern "C" fn(*mut GuestfsH, *const c_char) -> *mut PartitionList
        ),
        guestfs_free_partition_list: sym!(
            guestfs_free_partition_list,
            unsafe extern "C" fn(*mut PartitionList)
        ),
        guestfs_btrfs_subvolume_list: sym!(
            guestfs_btrfs_subvolume_list,
            unsafe extern "C" fn(*mut GuestfsH, *const c_char) -> *mut BtrfsSubvolumeList
        ),
        guestfs_free_btrfssubvolume_list: sym!(
            guestfs_free_btrfssubvolume_list,
            unsafe extern "C" fn(*mut BtrfsSubvolumeList)
        ),
        guestfs_mkmountpoint: sym!(
            guestfs_mkmountpoint,
            unsafe extern "C" fn(*mut GuestfsH, *const c_char) -> c_int
        ),
        guestfs_mount_options: sym!(
            guestfs_mount_options,
            unsafe extern "C" fn(
                *mut GuestfsH,
                *const c_char,
                *const c_char,
                *const c_char,
            ) -> c_int
        ),
        guestfs_umount: sym!(
            guestfs_umount,
            unsafe extern "C" fn(*mut GuestfsH, *const c_char) -> c_int
        ),
        guestfs_umount_all: sym!(
            guestfs_umount_all,
            unsafe extern "C" fn(*mut GuestfsH) -> c_int
        ),
        guestfs_fstrim: sym!(
            guestfs_fstrim,
            unsafe extern "C" fn(*mut GuestfsH, *const c_char, ...) -> c_int
        ),
        guestfs_sync: sym!(guestfs_sync, unsafe extern "C" fn(*mut GuestfsH) -> c_int),
        guestfs_btrfs_filesystem_resize: sym!(
            guestfs_btrfs_filesystem_resize,
            unsafe extern "C" fn(*mut GuestfsH, *const c_char, ...) -> c_int
        ),
        guestfs_readdir: sym!(
            guestfs_readdir,
            unsafe extern "C" fn(*mut GuestfsH, *const c_char) -> *mut DirentList
        ),
        guestfs_free_dirent_list: sym!(
            guestfs_free_dirent_list,
            unsafe extern "C" fn(*mut DirentList)
        ),
        guestfs_lstatns: sym!(
            guestfs_lstatns,
            unsafe extern "C" fn(*mut GuestfsH, *const c_char) -> *mut Statns
        ),
        guestfs_free_statns: sym!(guestfs_free_statns, unsafe extern "C" fn(*mut Statns)),
        guestfs_readlink: sym!(
            guestfs_readlink,
            unsafe extern "C" fn(*mut GuestfsH, *const c_char) -> *mut c_char
        ),
        guestfs_pread: sym!(
            guestfs_pread,
            unsafe extern "C" fn(
                *mut GuestfsH,
                *const c_char,
                c_int,
                i64,
                *mut usize,
            ) -> *mut c_char
        ),
        guestfs_pwrite: sym!(
            guestfs_pwrite,
            unsafe extern "C" fn(*mut GuestfsH, *const c_char, *const c_char, usize, i64) -> c_int
        ),
        guestfs_truncate_size: sym!(
            guestfs_truncate_size,
            unsafe extern "C" fn(*mut GuestfsH, *const c_char, i64) -> c_int
        ),
        guestfs_touch: sym!(
            guestfs_touch,
            unsafe extern "C" fn(*mut GuestfsH, *const c_char) -> c_int
        ),
        guestfs_mkdir_mode: sym!(
            guestfs_mkdir_mode,
            unsafe extern "C" fn(*mut GuestfsH, *const c_char, c_int) -> c_int
        ),
        guestfs_ln_s: sym!(
            guestfs_ln_s,
            unsafe extern "C" fn(*mut GuestfsH, *const c_char, *const c_char) -> c_int
        ),
        guestfs_ln: sym!(
            guestfs_ln,
            unsafe extern "C" fn(*mut GuestfsH, *const c_char, *const c_char) -> c_int
        ),
        guestfs_rm: sym!(
            guestfs_rm,
            unsafe extern "C" fn(*mut GuestfsH, *const c_char) -> c_int
        ),
        guestfs_rmdir: sym!(
            guestfs_rmdir,
            unsafe extern "C" fn(*mut GuestfsH, *const c_char) -> c_int
        ),
        guestfs_rename: sym!(
            guestfs_rename,
            unsafe extern "C" fn(*mut GuestfsH, *const c_char, *const c_char) -> c_int
        ),
        guestfs_chmod: sym!(
            guestfs_chmod,
            unsafe extern "C" fn(*mut GuestfsH, c_int, *const c_char) -> c_int
        ),
        guestfs_lchown: sym!(
            guestfs_lchown,
            unsafe extern "C" fn(*mut GuestfsH, c_int, c_int, *const c_char) -> c_int
        ),
        guestfs_utimens: sym!(
            guestfs_utimens,
            unsafe extern "C" fn(*mut GuestfsH, *const c_char, i64, i64, i64, i64) -> c_int
        ),
    })
}

fn dl_error() -> String {
    // SAFETY: dlerror returns NULL or a NUL-terminated message valid until the next
    // dl* call on this thread; it is copied at once.
    let e = unsafe { dlerror() };
    if e.is_null() {
        return "unknown error".into();
    }
    // SAFETY: non-NULL, NUL-terminated (above).
    unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned()
}

const RTLD_NOW: c_int = 2;
const RTLD_LOCAL: c_int = 0;

extern "C" {
    fn dlopen(filename: *const c_char, flags: c_int) -> *mut c_void;
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
    fn dlerror() -> *mut c_char;
}

extern "C" {
    /// Strings and buffers libguestfs returns are the caller's, freed with `free(3)`.
    pub fn free(p: *mut c_void);
}
