//! Safe binding to libext2fs (e2fsprogs), the proven writer of ext2/3/4.
//!
//! Guest filesystems are read and written in-process, on image files at any byte
//! offset, with no helper VM, no mount and no root. All of the project's `unsafe` code
//! lives in this crate: a small C shim (`csrc/shim.c`, compiled by `build.rs`) builds
//! the compound operations e2fsprogs keeps outside the library (delete a file and free
//! everything it owns, create and link inodes, rename with link-count bookkeeping) from
//! libext2fs primitives, and exposes them with plain C types. `sys` declares the shim by
//! hand (no bindgen, no libclang); [`Ext2Fs`] is the safe API over it.
//!
//! Journals are not written through: a filesystem whose journal needs recovery is
//! replayed with `e2fsck -E journal_only` before a writable open, and refused by a
//! read-only open ([`Error::NeedsRecovery`]).

mod error;
mod fs;
mod info;
mod sys;

pub use error::{Error, ErrorKind, Result};
pub use fs::{
    e2fsprogs_spec, library_version, set_scratch_dir, DirEntry, Ext2Fs, FileType, Ino, Inode,
    NewInode, OpenOptions, SetAttr, NAME_MAX, ROOT_INO,
};
pub use info::{feature, ExtKind, Features, SuperInfo};
