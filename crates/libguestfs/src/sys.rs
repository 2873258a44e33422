//! The libguestfs C declarations this crate uses, written by hand from
//! /usr/include/guestfs.h (libguestfs 1.48). Only what `lib.rs` calls.

use std::ffi::{c_char, c_int, c_void};

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

#[link(name = "guestfs")]
extern "C" {
    pub fn guestfs_create() -> *mut GuestfsH;
    pub fn guestfs_close(g: *mut GuestfsH);
    pub fn guestfs_last_error(g: *mut GuestfsH) -> *const c_char;
    pub fn guestfs_last_errno(g: *mut GuestfsH) -> c_int;
    pub fn guestfs_set_error_handler(g: *mut GuestfsH, cb: ErrorHandler, opaque: *mut c_void);
    pub fn guestfs_set_backend(g: *mut GuestfsH, backend: *const c_char) -> c_int;
    pub fn guestfs_set_backend_setting(
        g: *mut GuestfsH,
        name: *const c_char,
        val: *const c_char,
    ) -> c_int;
    pub fn guestfs_set_memsize(g: *mut GuestfsH, memsize: c_int) -> c_int;
    pub fn guestfs_add_drive_opts(g: *mut GuestfsH, filename: *const c_char, ...) -> c_int;
    pub fn guestfs_launch(g: *mut GuestfsH) -> c_int;
    pub fn guestfs_shutdown(g: *mut GuestfsH) -> c_int;
    pub fn guestfs_part_list(g: *mut GuestfsH, device: *const c_char) -> *mut PartitionList;
    pub fn guestfs_free_partition_list(l: *mut PartitionList);
    pub fn guestfs_btrfs_subvolume_list(
        g: *mut GuestfsH,
        fs: *const c_char,
    ) -> *mut BtrfsSubvolumeList;
    pub fn guestfs_free_btrfssubvolume_list(l: *mut BtrfsSubvolumeList);
    pub fn guestfs_mkmountpoint(g: *mut GuestfsH, path: *const c_char) -> c_int;
    pub fn guestfs_mount_options(
        g: *mut GuestfsH,
        options: *const c_char,
        mountable: *const c_char,
        mountpoint: *const c_char,
    ) -> c_int;
    pub fn guestfs_umount(g: *mut GuestfsH, pathordevice: *const c_char) -> c_int;
    pub fn guestfs_umount_all(g: *mut GuestfsH) -> c_int;
    pub fn guestfs_fstrim(g: *mut GuestfsH, mountpoint: *const c_char, ...) -> c_int;
    pub fn guestfs_sync(g: *mut GuestfsH) -> c_int;
    pub fn guestfs_readdir(g: *mut GuestfsH, dir: *const c_char) -> *mut DirentList;
    pub fn guestfs_free_dirent_list(l: *mut DirentList);
    pub fn guestfs_lstatns(g: *mut GuestfsH, path: *const c_char) -> *mut Statns;
    pub fn guestfs_free_statns(s: *mut Statns);
    pub fn guestfs_readlink(g: *mut GuestfsH, path: *const c_char) -> *mut c_char;
    pub fn guestfs_pread(
        g: *mut GuestfsH,
        path: *const c_char,
        count: c_int,
        offset: i64,
        size_r: *mut usize,
    ) -> *mut c_char;
    pub fn guestfs_pwrite(
        g: *mut GuestfsH,
        path: *const c_char,
        content: *const c_char,
        content_size: usize,
        offset: i64,
    ) -> c_int;
    pub fn guestfs_truncate_size(g: *mut GuestfsH, path: *const c_char, size: i64) -> c_int;
    pub fn guestfs_touch(g: *mut GuestfsH, path: *const c_char) -> c_int;
    pub fn guestfs_mkdir_mode(g: *mut GuestfsH, path: *const c_char, mode: c_int) -> c_int;
    pub fn guestfs_ln_s(g: *mut GuestfsH, target: *const c_char, linkname: *const c_char) -> c_int;
    pub fn guestfs_ln(g: *mut GuestfsH, target: *const c_char, linkname: *const c_char) -> c_int;
    pub fn guestfs_rm(g: *mut GuestfsH, path: *const c_char) -> c_int;
    pub fn guestfs_rmdir(g: *mut GuestfsH, path: *const c_char) -> c_int;
    pub fn guestfs_rename(
        g: *mut GuestfsH,
        oldpath: *const c_char,
        newpath: *const c_char,
    ) -> c_int;
    pub fn guestfs_chmod(g: *mut GuestfsH, mode: c_int, path: *const c_char) -> c_int;
    pub fn guestfs_lchown(
        g: *mut GuestfsH,
        owner: c_int,
        group: c_int,
        path: *const c_char,
    ) -> c_int;
    pub fn guestfs_utimens(
        g: *mut GuestfsH,
        path: *const c_char,
        atsecs: i64,
        atnsecs: i64,
        mtsecs: i64,
        mtnsecs: i64,
    ) -> c_int;
}

extern "C" {
    /// Strings and buffers libguestfs returns are the caller's, freed with `free(3)`.
    pub fn free(p: *mut c_void);
}
