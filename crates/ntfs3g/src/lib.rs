//! Safe binding to libntfs-3g, the NTFS driver behind ntfs-3g.
//!
//! A volume is opened in-process on a byte range of an image file: no loop device, no
//! FUSE mount, no root. A small C shim (`csrc/shim.c`) supplies the device operations
//! that read and write that range and wraps the library calls so that only the volume
//! pointer crosses to Rust; `sys` declares it by hand, [`Volume`] is the safe API.
//!
//! A volume Windows did not shut down fully (hibernated, fast startup, marked dirty, an
//! unfinished $LogFile) is refused for writing with [`Error::Hibernated`] or
//! [`Error::Unclean`]; it can still be opened read-only for inspection.

mod error;
pub mod reparse;
mod sys;
mod volume;

pub use error::{libc_errno, Error, Result};
pub use volume::{DirEntry, EntryKind, Inode, Volume, VolumeInfo, FIRST_USER_INO, ROOT_INO};
