//! Hand-written declarations of the C shim (csrc/shim.c).
//!
//! Only the shim's own functions are declared; no libext2fs structure crosses the
//! boundary except as an opaque pointer. The two `#[repr(C)]` structs mirror
//! `struct snf_super` and `struct snf_inode` field for field (all fixed-width integers,
//! so the layout is the same on both sides). Every size, offset and constant declared
//! here is asserted at compile time on both sides (`const` asserts below,
//! `_Static_assert`s in the shim), so a change made on one side only fails the build.

use std::ffi::{c_char, c_int, c_long, c_void};

/// `errcode_t`: 0, an errno value or a com_err code.
pub type Errcode = c_long;

/// Opaque `ext2_filsys` handle.
#[repr(C)]
pub struct RawFs {
    _private: [u8; 0],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct SnfSuper {
    pub blocks_count: u64,
    pub free_blocks: u64,
    pub reserved_blocks: u64,
    pub inodes_count: u64,
    pub free_inodes: u64,
    pub mount_time: i64,
    pub write_time: i64,
    pub mkfs_time: i64,
    pub last_check: i64,
    pub block_size: u32,
    pub cluster_size: u32,
    pub inode_size: u32,
    pub first_data_block: u32,
    pub blocks_per_group: u32,
    pub inodes_per_group: u32,
    pub feature_compat: u32,
    pub feature_incompat: u32,
    pub feature_ro_compat: u32,
    pub state: u32,
    pub rev_level: u32,
    pub mount_count: u32,
    pub max_mount_count: u32,
    pub creator_os: u32,
    pub last_orphan: u32,
    pub journal_inum: u32,
    pub uuid: [u8; 16],
    pub label: [u8; 16],
    pub last_mounted: [u8; 64],
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct SnfInode {
    pub size: u64,
    pub blocks512: u64,
    pub file_acl: u64,
    pub atime: i64,
    pub mtime: i64,
    pub ctime: i64,
    pub crtime: i64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub links: u32,
    pub flags: u32,
    pub generation: u32,
    pub rdev_major: u32,
    pub rdev_minor: u32,
    pub dtime: u32,
    pub pad: u32,
}

/// Layout checks, the same numbers as the shim's `_Static_assert`s.
macro_rules! at {
    ($t:ty, $field:ident, $off:expr) => {
        const _: () = assert!(std::mem::offset_of!($t, $field) == $off);
    };
}
const _: () = assert!(std::mem::size_of::<SnfSuper>() == 232);
at!(SnfSuper, blocks_count, 0);
at!(SnfSuper, free_blocks, 8);
at!(SnfSuper, reserved_blocks, 16);
at!(SnfSuper, inodes_count, 24);
at!(SnfSuper, free_inodes, 32);
at!(SnfSuper, mount_time, 40);
at!(SnfSuper, write_time, 48);
at!(SnfSuper, mkfs_time, 56);
at!(SnfSuper, last_check, 64);
at!(SnfSuper, block_size, 72);
at!(SnfSuper, cluster_size, 76);
at!(SnfSuper, inode_size, 80);
at!(SnfSuper, first_data_block, 84);
at!(SnfSuper, blocks_per_group, 88);
at!(SnfSuper, inodes_per_group, 92);
at!(SnfSuper, feature_compat, 96);
at!(SnfSuper, feature_incompat, 100);
at!(SnfSuper, feature_ro_compat, 104);
at!(SnfSuper, state, 108);
at!(SnfSuper, rev_level, 112);
at!(SnfSuper, mount_count, 116);
at!(SnfSuper, max_mount_count, 120);
at!(SnfSuper, creator_os, 124);
at!(SnfSuper, last_orphan, 128);
at!(SnfSuper, journal_inum, 132);
at!(SnfSuper, uuid, 136);
at!(SnfSuper, label, 152);
at!(SnfSuper, last_mounted, 168);
const _: () = assert!(std::mem::size_of::<SnfInode>() == 96);
at!(SnfInode, size, 0);
at!(SnfInode, blocks512, 8);
at!(SnfInode, file_acl, 16);
at!(SnfInode, atime, 24);
at!(SnfInode, mtime, 32);
at!(SnfInode, ctime, 40);
at!(SnfInode, crtime, 48);
at!(SnfInode, mode, 56);
at!(SnfInode, uid, 60);
at!(SnfInode, gid, 64);
at!(SnfInode, links, 68);
at!(SnfInode, flags, 72);
at!(SnfInode, generation, 76);
at!(SnfInode, rdev_major, 80);
at!(SnfInode, rdev_minor, 84);
at!(SnfInode, dtime, 88);
at!(SnfInode, pad, 92);
// The shim asserts `errcode_t` is a C long and `ext2_ino_t` a 32-bit integer.
const _: () = assert!(std::mem::size_of::<Errcode>() == std::mem::size_of::<c_long>());

/// `EXT2_ET_UNSUPP_FEATURE`: the superblock has an incompat feature this libext2fs
/// lacks (asserted in the shim).
pub const ET_UNSUPP_FEATURE: Errcode = 2133571395;
/// `EXT2_ET_RO_UNSUPP_FEATURE`: a ro_compat feature it lacks, for a writable open.
pub const ET_RO_UNSUPP_FEATURE: Errcode = 2133571396;

// Error classes of snf_error_kind().
pub const KIND_NOT_FOUND: c_int = 1;
pub const KIND_EXISTS: c_int = 2;
pub const KIND_NO_SPACE: c_int = 3;
pub const KIND_NOT_EMPTY: c_int = 4;
pub const KIND_NOT_DIR: c_int = 5;
pub const KIND_IS_DIR: c_int = 6;
pub const KIND_READ_ONLY: c_int = 7;
pub const KIND_UNSUPPORTED: c_int = 8;
pub const KIND_CORRUPT: c_int = 9;
pub const KIND_INVALID: c_int = 10;
pub const KIND_TOO_MANY_LINKS: c_int = 11;
pub const KIND_IO: c_int = 12;

// Selection bits of snf_set_attr().
pub const SET_MODE: u32 = 1;
pub const SET_UID: u32 = 2;
pub const SET_GID: u32 = 4;
pub const SET_ATIME: u32 = 8;
pub const SET_MTIME: u32 = 16;

/// Called once per directory entry (never `.`/`..`); non-zero stops the walk.
pub type DirentCb = extern "C" fn(
    ctx: *mut c_void,
    name: *const c_char,
    name_len: c_int,
    ino: u32,
    file_type: c_int,
) -> c_int;
/// Called once per extended attribute; non-zero stops the walk.
pub type XattrCb = extern "C" fn(
    ctx: *mut c_void,
    name: *const c_char,
    value: *const c_void,
    value_len: usize,
) -> c_int;
/// Called once per run of used blocks; non-zero stops the walk.
pub type RangeCb = extern "C" fn(ctx: *mut c_void, first: u64, count: u64) -> c_int;

extern "C" {
    pub fn snf_open(
        path: *const c_char,
        io_options: *const c_char,
        writable: c_int,
        durable: c_int,
        out: *mut *mut RawFs,
    ) -> Errcode;
    pub fn snf_close(fs: *mut RawFs) -> Errcode;
    pub fn snf_flush(fs: *mut RawFs) -> Errcode;
    pub fn snf_super_info(fs: *mut RawFs, out: *mut SnfSuper);
    pub fn snf_error_message(code: Errcode) -> *const c_char;
    pub fn snf_error_kind(code: Errcode) -> c_int;
    pub fn snf_lib_features(compat: *mut u32, incompat: *mut u32, ro_compat: *mut u32);
    pub fn snf_lib_version() -> *const c_char;
    pub fn snf_journal_is_empty(fs: *mut RawFs, empty: *mut c_int) -> Errcode;
    pub fn snf_clear_needs_recovery(fs: *mut RawFs);

    pub fn snf_read_inode(fs: *mut RawFs, ino: u32, out: *mut SnfInode) -> Errcode;
    pub fn snf_lookup(
        fs: *mut RawFs,
        dir: u32,
        name: *const c_char,
        name_len: c_int,
        ino: *mut u32,
    ) -> Errcode;
    pub fn snf_dir_iterate(fs: *mut RawFs, dir: u32, cb: DirentCb, ctx: *mut c_void) -> Errcode;
    pub fn snf_read(
        fs: *mut RawFs,
        ino: u32,
        offset: u64,
        buf: *mut c_void,
        len: u32,
        got: *mut u32,
    ) -> Errcode;
    pub fn snf_read_link(
        fs: *mut RawFs,
        ino: u32,
        buf: *mut c_char,
        cap: u32,
        len: *mut u32,
    ) -> Errcode;
    pub fn snf_xattrs(fs: *mut RawFs, ino: u32, cb: XattrCb, ctx: *mut c_void) -> Errcode;
    pub fn snf_used_blocks(fs: *mut RawFs, cb: RangeCb, ctx: *mut c_void) -> Errcode;

    pub fn snf_write(
        fs: *mut RawFs,
        ino: u32,
        offset: u64,
        buf: *const c_void,
        len: u32,
    ) -> Errcode;
    pub fn snf_set_size(fs: *mut RawFs, ino: u32, size: u64) -> Errcode;
    pub fn snf_create(
        fs: *mut RawFs,
        dir: u32,
        name: *const c_char,
        mode: u32,
        uid: u32,
        gid: u32,
        major: u32,
        minor: u32,
        out: *mut u32,
    ) -> Errcode;
    pub fn snf_mkdir(
        fs: *mut RawFs,
        dir: u32,
        name: *const c_char,
        mode: u32,
        uid: u32,
        gid: u32,
        out: *mut u32,
    ) -> Errcode;
    pub fn snf_symlink(
        fs: *mut RawFs,
        dir: u32,
        name: *const c_char,
        target: *const c_char,
        uid: u32,
        gid: u32,
        out: *mut u32,
    ) -> Errcode;
    pub fn snf_link(fs: *mut RawFs, ino: u32, dir: u32, name: *const c_char) -> Errcode;
    pub fn snf_unlink(fs: *mut RawFs, dir: u32, name: *const c_char) -> Errcode;
    pub fn snf_rmdir(fs: *mut RawFs, dir: u32, name: *const c_char) -> Errcode;
    pub fn snf_rename(
        fs: *mut RawFs,
        from_dir: u32,
        from_name: *const c_char,
        to_dir: u32,
        to_name: *const c_char,
    ) -> Errcode;
    pub fn snf_set_attr(
        fs: *mut RawFs,
        ino: u32,
        which: u32,
        mode: u32,
        uid: u32,
        gid: u32,
        atime: i64,
        mtime: i64,
    ) -> Errcode;
    pub fn snf_xattr_set(
        fs: *mut RawFs,
        ino: u32,
        name: *const c_char,
        value: *const c_void,
        len: usize,
    ) -> Errcode;
    pub fn snf_xattr_remove(fs: *mut RawFs, ino: u32, name: *const c_char) -> Errcode;
}
