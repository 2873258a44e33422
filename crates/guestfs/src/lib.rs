//! Guest filesystems, read and written in-process where a library can, through a
//! libguestfs appliance where none can.
//!
//! Layers, bottom up:
//! * [`Filesystem`] (module [`backend`]): one filesystem, addressed by node ids. Each kind
//!   of filesystem is a backend: ext2/3/4 through libext2fs, FAT through `fatfs`, UFS
//!   natively (module [`ufs`]: the appliance's kernel cannot write it), a host
//!   directory; xfs and btrfs through a libguestfs appliance (module [`appliance`]), a
//!   VM started only when a guest has one; NTFS through libntfs-3g. New kinds plug in
//!   here.
//! * [`GuestFs`] (module [`tree`]): several filesystems mounted into one guest tree,
//!   addressed by guest paths. It resolves symlinks itself, inside the guest: an absolute
//!   link target starts again at the guest root and `..` never climbs above it, so no
//!   guest path can ever reach a host file.
//!
//! Inspection, system preparation and `--host-run` are written once against [`GuestFs`].

#![forbid(unsafe_code)]

pub mod appliance;
pub mod assemble;
pub mod backend;
pub mod dir;
pub mod error;
pub mod ext;
pub mod fat;
pub mod freespace;
pub mod fuse;
pub mod kvm;
pub mod node;
pub mod ntfs;
pub mod probe;
pub mod tree;
pub mod ufs;

pub use backend::{Filesystem, FsKind};
pub use dir::DirFs;
pub use error::{Error, Result};
pub use ext::ExtFs;
pub use fuse::GuestMount;
pub use node::{DirEntry, FileType, Metadata, NewNode, NodeId, SetAttr};
pub use ntfs::NtfsFs;
pub use tree::{GuestFs, MountInfo, WalkEntry};
pub use ufs::UfsFs;
