//! Guest filesystems, read and written in-process with no helper VM.
//!
//! Layers, bottom up:
//! * [`Filesystem`] (module [`backend`]): one filesystem, addressed by node ids. Each kind
//!   of filesystem is a backend: ext2/3/4 through libext2fs, FAT through `fatfs`, a host
//!   directory. New kinds (xfs, btrfs, UFS, NTFS, LVM) plug in here.
//! * [`GuestFs`] (module [`tree`]): several filesystems mounted into one guest tree,
//!   addressed by guest paths. It resolves symlinks itself, inside the guest: an absolute
//!   link target starts again at the guest root and `..` never climbs above it, so no
//!   guest path can ever reach a host file.
//!
//! Inspection, system preparation and `--host-run` are written once against [`GuestFs`].

#![forbid(unsafe_code)]

pub mod assemble;
pub mod backend;
pub mod dir;
pub mod error;
pub mod ext;
pub mod fat;
pub mod fuse;
pub mod node;
pub mod probe;
pub mod tree;

pub use backend::{Filesystem, FsKind};
pub use dir::DirFs;
pub use error::{Error, Result};
pub use ext::ExtFs;
pub use fuse::GuestMount;
pub use node::{DirEntry, FileType, Metadata, NewNode, NodeId, SetAttr};
pub use tree::{GuestFs, MountInfo, WalkEntry};
