//! The guest tree served on the host through FUSE, read-write.
//!
//! `--host-run` scripts and the dialog's "Mount" entry work on the guest with ordinary
//! host tools. [`GuestMount::mount`] serves a [`GuestFs`] at a host directory from a
//! background thread; [`GuestMount::unmount`] gives the tree back once the kernel has let
//! go of it. Dropping a [`GuestMount`] always unmounts, lazily as a last resort.
//!
//! FUSE addresses objects by inode number and the guest tree by path, so the server keeps
//! a table of (parent inode, name) for every inode it has handed out, updated on rename
//! and unlink ([`nodes`]). Consequences, inherent to this design and shared with libfuse's
//! high-level API:
//! * every name of a hard-linked file is its own FUSE inode (the link count is right);
//! * a file unlinked while open can no longer be read or written through the open
//!   descriptor.
//!
//! The guest is hostile, and the host kernel follows the symlinks it finds in the view.
//! So the view never shows a guest's link text: reading a link gives a *relative* path
//! from the link's directory to its target as resolved inside the guest ([`confine`]),
//! which never climbs above the mount. A link to `/etc/passwd` in `/usr/lib/x` reads as
//! `../../etc/passwd`; the guest keeps the text it stores. The mount is `nosuid,nodev`,
//! so neither a guest's set-uid file nor its device nodes mean anything on the host.
//! It does not use `default_permissions`: scripts run as root and get root's semantics;
//! the only user allowed in is the one who mounted.
//!
//! Modules: [`mount`] (mounting, unmounting, the [`GuestMount`] handle), [`nodes`] (the
//! inode table), [`ops`] (each operation on the guest tree), [`server`] (the kernel's
//! requests and their replies), [`confine`] (link targets kept inside the guest),
//! [`convert`] (errors, attributes and times in FUSE's terms).

use std::collections::HashMap;
use std::ffi::OsString;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::tree::GuestFs;

mod confine;
mod convert;
mod mount;
mod nodes;
mod ops;
mod server;

pub use mount::{GuestMount, MountError};

/// The name shown as the mount's source in `/proc/self/mountinfo`.
pub const FS_NAME: &str = "snf-image-creator";

/// Inode number of the FUSE root.
const ROOT: u64 = 1;

/// State shared between the server thread and the [`GuestMount`].
struct Served {
    /// `None` only once the mount has taken the tree back.
    guest: Option<GuestFs>,
    nodes: nodes::Nodes,
    /// Directory listings taken at `opendir`, so that entries removed while a reader
    /// goes through the directory (`rm -rf`) do not shift the offsets.
    dirs: HashMap<u64, Vec<(u64, fuser::FileType, OsString)>>,
    next_fh: u64,
}

impl Served {
    fn new(guest: GuestFs) -> Self {
        Served {
            guest: Some(guest),
            nodes: nodes::Nodes::new(),
            dirs: HashMap::new(),
            next_fh: 1,
        }
    }
}

fn lock(shared: &Mutex<Served>) -> MutexGuard<'_, Served> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}
