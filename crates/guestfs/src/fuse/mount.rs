//! Mounting and unmounting: the [`GuestMount`] handle, `umount2(2)` or `fusermount3`,
//! and aborting a connection that a lazily detached mount keeps alive.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use fuser::BackgroundSession;

use super::server::GuestFuse;
use super::{lock, Served, FS_NAME};
use crate::error::Error;
use crate::tree::GuestFs;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MountError {
    #[error("cannot mount the guest tree on {}: {source}", .mountpoint.display())]
    Mount {
        mountpoint: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot unmount {}: it is busy (a process is using files under it)", .mountpoint.display())]
    Busy { mountpoint: PathBuf },
    #[error("cannot unmount {}: {msg}", .mountpoint.display())]
    Unmount { mountpoint: PathBuf, msg: String },
    #[error("the FUSE server of {} failed: {msg}", .mountpoint.display())]
    Server { mountpoint: PathBuf, msg: String },
    /// Writing the guest tree back after unmounting failed.
    #[error("after unmounting {}: {source}", .mountpoint.display())]
    Flush {
        mountpoint: PathBuf,
        #[source]
        source: Error,
    },
}

impl MountError {
    /// Whether unmounting failed only because something still uses the mount (the
    /// caller may ask the user to close it and retry).
    pub fn is_busy(&self) -> bool {
        matches!(self, MountError::Busy { .. })
    }
}

/// A guest tree mounted on the host. Unmount with [`GuestMount::unmount`] to get the
/// tree back; dropping it unmounts too (and drops the tree).
pub struct GuestMount {
    mountpoint: PathBuf,
    shared: Arc<Mutex<Served>>,
    session: Option<BackgroundSession>,
    /// The FUSE connection number (minor of the mount's device), for aborting it.
    connection: Option<u32>,
}

impl std::fmt::Debug for GuestMount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestMount")
            .field("mountpoint", &self.mountpoint)
            .field("mounted", &self.session.is_some())
            .finish()
    }
}

impl GuestMount {
    /// Serve `guest` read-write (as far as its filesystems allow) at the existing host
    /// directory `mountpoint`, from a background thread. On failure the tree is given
    /// back with the error.
    ///
    /// Needs `/dev/fuse` and either root or the `fusermount3` helper (package fuse3).
    pub fn mount(guest: GuestFs, mountpoint: &Path) -> Result<GuestMount, (MountError, GuestFs)> {
        let shared = Arc::new(Mutex::new(Served::new(guest)));
        let mut config = fuser::Config::default();
        config.mount_options = vec![
            fuser::MountOption::FSName(FS_NAME.into()),
            fuser::MountOption::Subtype(FS_NAME.into()),
            fuser::MountOption::RW,
            // The guest's set-uid files and device nodes must mean nothing on the host:
            // a node 8:0 would otherwise open the host's first disk.
            fuser::MountOption::NoSuid,
            fuser::MountOption::NoDev,
        ];
        let server = GuestFuse::new(Arc::clone(&shared));
        match fuser::spawn_mount(server, mountpoint, &config) {
            Ok(session) => {
                let connection = rustix::fs::stat(mountpoint)
                    .ok()
                    .map(|st| rustix::fs::minor(st.st_dev));
                Ok(GuestMount {
                    mountpoint: mountpoint.to_path_buf(),
                    shared,
                    session: Some(session),
                    connection,
                })
            }
            Err(source) => {
                let error = MountError::Mount {
                    mountpoint: mountpoint.to_path_buf(),
                    source,
                };
                // Only a GuestMount takes the tree out, and none was made.
                let guest = lock(&shared)
                    .guest
                    .take()
                    .expect("the tree is still served");
                Err((error, guest))
            }
        }
    }

    /// The host directory the tree is mounted on.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Ask the kernel to unmount, and wait for the server to stop. Fails with
    /// [`MountError::Busy`] while a process uses the mount; the mount then stays usable
    /// and this may be called again. Calling it after success does nothing.
    pub fn try_unmount(&mut self) -> Result<(), MountError> {
        if self.session.is_none() {
            return Ok(());
        }
        // A file closed a moment ago may still be held: the kernel releases it after
        // close() returns, and a child forked meanwhile by any thread of the process
        // holds a copy until it execs. Only a use that lasts is "busy".
        let mut pause = Duration::from_millis(10);
        loop {
            match unmount_path(&self.mountpoint, false) {
                Err(MountError::Busy { .. }) if pause <= Duration::from_millis(160) => {
                    std::thread::sleep(pause);
                    pause *= 2;
                }
                other => break other?,
            }
        }
        self.wait_server(None)
    }

    /// Unmount (see [`GuestMount::try_unmount`]) and give the tree back, with everything
    /// written through the mount flushed to its filesystems.
    pub fn unmount(mut self) -> Result<GuestFs, MountError> {
        self.try_unmount()?;
        self.synced_guest()
    }

    /// Unmount whatever uses the mount: a normal unmount, else a lazy one and an abort
    /// of the FUSE connection, so that no process can reach the tree any more; then give
    /// the tree back (flushed).
    pub fn force_unmount(mut self) -> Result<GuestFs, MountError> {
        self.force()?;
        self.synced_guest()
    }

    /// The tree back from the stopped server, with what was written through the mount
    /// flushed to its filesystems.
    fn synced_guest(&mut self) -> Result<GuestFs, MountError> {
        let mut guest = self.take_guest()?;
        guest.sync().map_err(|source| MountError::Flush {
            mountpoint: self.mountpoint.clone(),
            source,
        })?;
        Ok(guest)
    }

    fn force(&mut self) -> Result<(), MountError> {
        if self.session.is_none() {
            return Ok(());
        }
        if unmount_path(&self.mountpoint, false).is_ok() {
            return self.wait_server(None);
        }
        let lazy = unmount_path(&self.mountpoint, true);
        // Lazily detached, the server keeps answering whoever still has files open;
        // aborting the connection makes those calls fail and lets the server stop.
        if let Some(conn) = self.connection {
            abort_connection(conn);
        }
        lazy?;
        self.wait_server(Some(Duration::from_secs(5)))
    }

    /// Wait for the server thread to stop (it does once the kernel has released the
    /// connection); with a limit, leave it running past the limit.
    fn wait_server(&mut self, limit: Option<Duration>) -> Result<(), MountError> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        if let Some(limit) = limit {
            let start = Instant::now();
            while !session.guard.is_finished() {
                if start.elapsed() > limit {
                    // Dropping the handle detaches the thread; the tree stays with it.
                    return Err(MountError::Server {
                        mountpoint: self.mountpoint.clone(),
                        msg: "still serving processes that use the lazily unmounted tree".into(),
                    });
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
        session.join().map_err(|e| MountError::Server {
            mountpoint: self.mountpoint.clone(),
            msg: e.to_string(),
        })
    }

    fn take_guest(&mut self) -> Result<GuestFs, MountError> {
        lock(&self.shared)
            .guest
            .take()
            .ok_or_else(|| MountError::Server {
                mountpoint: self.mountpoint.clone(),
                msg: "the guest tree was lost".into(),
            })
    }
}

impl Drop for GuestMount {
    fn drop(&mut self) {
        let _ = self.force();
    }
}

/// Abort FUSE connection `conn` through the FUSE control filesystem, mounting it at its
/// standard place first if the system has not (systemd does at boot; minimal systems
/// may not). Only root can; failures leave the connection as it is.
fn abort_connection(conn: u32) {
    let dir = Path::new("/sys/fs/fuse/connections");
    let abort = dir.join(conn.to_string()).join("abort");
    if !abort.exists() && dir.is_dir() {
        let _ = rustix::mount::mount(
            "fusectl",
            dir,
            "fusectl",
            rustix::mount::MountFlags::empty(),
            None,
        );
    }
    let _ = std::fs::write(abort, b"1");
}

/// Unmount `mountpoint`: `umount2(2)` as root, `fusermount3 -u` otherwise.
fn unmount_path(mountpoint: &Path, lazy: bool) -> Result<(), MountError> {
    use rustix::mount::UnmountFlags;
    let flags = if lazy {
        UnmountFlags::DETACH
    } else {
        UnmountFlags::empty()
    };
    match rustix::mount::unmount(mountpoint, flags) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::BUSY) => Err(MountError::Busy {
            mountpoint: mountpoint.to_path_buf(),
        }),
        Err(rustix::io::Errno::PERM) => fusermount_unmount(mountpoint, lazy),
        // Not a mount point any more: someone unmounted it already.
        Err(rustix::io::Errno::INVAL) => Ok(()),
        Err(e) => Err(MountError::Unmount {
            mountpoint: mountpoint.to_path_buf(),
            msg: e.to_string(),
        }),
    }
}

fn fusermount_unmount(mountpoint: &Path, lazy: bool) -> Result<(), MountError> {
    let program = if snf_core::command::exists("fusermount3") {
        "fusermount3"
    } else {
        "fusermount"
    };
    let mut cmd = Command::new(program);
    cmd.arg("-u").arg("-q");
    if lazy {
        cmd.arg("-z");
    }
    cmd.arg("--").arg(mountpoint);
    // Unmounting waits on nothing but the kernel.
    match snf_core::command::run_with_limit(&mut cmd, std::time::Duration::from_secs(60)) {
        Ok(_) => Ok(()),
        Err(snf_core::command::CommandError::Failed { stderr, .. }) if stderr.contains("busy") => {
            Err(MountError::Busy {
                mountpoint: mountpoint.to_path_buf(),
            })
        }
        Err(e) => Err(MountError::Unmount {
            mountpoint: mountpoint.to_path_buf(),
            msg: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mount_can_move_between_threads() {
        fn send<T: Send>() {}
        send::<GuestMount>();
    }
}
