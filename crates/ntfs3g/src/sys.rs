//! Hand-written declarations of the C shim (csrc/shim.c).
//!
//! No libntfs-3g structure crosses the boundary except the volume, as an opaque
//! pointer. The two `#[repr(C)]` structs mirror the shim's field for field (fixed-width
//! integers only); their sizes are asserted on both sides.

use std::ffi::{c_int, c_uint, c_void};

/// Opaque `ntfs_volume`.
#[repr(C)]
pub struct RawVolume {
    _private: [u8; 0],
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct VolInfo {
    pub cluster_size: u64,
    pub nr_clusters: u64,
    pub free_clusters: u64,
    pub flags: u32,
    pub major_ver: u8,
    pub minor_ver: u8,
    pub read_only: u8,
    pub pad: u8,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct Stat {
    pub data_size: u64,
    pub allocated: u64,
    pub creation_time: i64,
    pub mtime: i64,
    pub ctime: i64,
    pub atime: i64,
    pub attributes: u32,
    pub is_dir: u32,
    pub links: u32,
    pub has_data: u32,
}

const _: () = assert!(std::mem::size_of::<VolInfo>() == 32);
const _: () = assert!(std::mem::size_of::<Stat>() == 64);

/// Called once per directory entry; a non-zero return stops the listing.
pub type Filldir = extern "C" fn(
    ctx: *mut c_void,
    name: *const u16,
    name_len: c_int,
    name_type: c_int,
    mref: u64,
    dt_type: c_uint,
) -> c_int;

extern "C" {
    pub fn snf_ntfs_mount(
        fd: c_int,
        base: u64,
        size: u64,
        read_only: c_int,
        out: *mut *mut RawVolume,
    ) -> c_int;
    pub fn snf_ntfs_umount(vol: *mut RawVolume) -> c_int;
    pub fn snf_ntfs_volinfo(vol: *mut RawVolume, out: *mut VolInfo) -> c_int;
    pub fn snf_ntfs_check_hiberfile(vol: *mut RawVolume) -> c_int;
    pub fn snf_ntfs_read_bitmap(vol: *mut RawVolume, buf: *mut u8, len: u64) -> c_int;
    pub fn snf_ntfs_lookup(
        vol: *mut RawVolume,
        dir: u64,
        name: *const u16,
        len: c_int,
        out: *mut u64,
    ) -> c_int;
    pub fn snf_ntfs_stat(vol: *mut RawVolume, ino: u64, out: *mut Stat) -> c_int;
    pub fn snf_ntfs_readdir(vol: *mut RawVolume, dir: u64, cb: Filldir, ctx: *mut c_void) -> c_int;
    pub fn snf_ntfs_read(
        vol: *mut RawVolume,
        ino: u64,
        offset: u64,
        buf: *mut c_void,
        len: u64,
        got: *mut u64,
    ) -> c_int;
    pub fn snf_ntfs_write(
        vol: *mut RawVolume,
        ino: u64,
        offset: u64,
        buf: *const c_void,
        len: u64,
    ) -> c_int;
    pub fn snf_ntfs_truncate(vol: *mut RawVolume, ino: u64, size: u64) -> c_int;
    pub fn snf_ntfs_create(
        vol: *mut RawVolume,
        dir: u64,
        name: *const u16,
        len: c_int,
        is_dir: c_int,
        out: *mut u64,
    ) -> c_int;
    pub fn snf_ntfs_unlink(
        vol: *mut RawVolume,
        dir: u64,
        name: *const u16,
        len: c_int,
        want_dir: c_int,
    ) -> c_int;
    pub fn snf_ntfs_link(
        vol: *mut RawVolume,
        ino: u64,
        dir: u64,
        name: *const u16,
        len: c_int,
    ) -> c_int;
    pub fn snf_ntfs_parent(vol: *mut RawVolume, ino: u64, parent: *mut u64) -> c_int;
    pub fn snf_ntfs_get_reparse(
        vol: *mut RawVolume,
        ino: u64,
        buf: *mut c_void,
        cap: u64,
        size: *mut u64,
    ) -> c_int;
    pub fn snf_ntfs_set_reparse(
        vol: *mut RawVolume,
        ino: u64,
        buf: *const c_void,
        size: u64,
    ) -> c_int;
    pub fn snf_ntfs_set_times(vol: *mut RawVolume, ino: u64, atime: i64, mtime: i64) -> c_int;
    pub fn snf_ntfs_sync(vol: *mut RawVolume) -> c_int;
}
