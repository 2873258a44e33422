//! `--host-run`: user scripts run on the host against the guest tree.
//!
//! After the metadata is final and before system preparation, the guest tree is mounted
//! read-write through FUSE ([`snf_guestfs::GuestMount`]) on a fresh directory of the
//! system temp dir, and every script runs in turn:
//! * with its working directory at the guest root (scripts must use relative paths:
//!   an absolute path, or an absolute symlink target, reaches the *host*);
//! * with `SNF_IMAGE_CREATOR_METADATA_<KEY>=<value>` for every image property;
//! * with no arguments and no standard input; what it prints is passed on as chatter.
//!
//! A script that exits non-zero stops the run, naming the script and its code. Whatever
//! happens, including cancellation (the script and everything it started are killed),
//! the guest tree is unmounted and the mount directory removed before this returns.
//! Once a script ends, anything it left running in the background is killed too, since
//! it would keep the mount busy.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::Duration;

use snf_core::cancel::{self, Cancelled};
use snf_core::Reporter;
use snf_guestfs::fuse::MountError;
use snf_guestfs::{GuestFs, GuestMount};

use crate::metadata::Metadata;

/// Prefix of the environment variables that carry the image properties.
pub const ENV_PREFIX: &str = "SNF_IMAGE_CREATOR_METADATA_";

/// How many times a busy mount is retried, a second apart, before it is detached.
const UNMOUNT_ATTEMPTS: u32 = 30;

/// Why the scripts could not run, or one of them failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostRunError {
    /// Missing, not a regular file, or without execute permission.
    #[error("Script `{}' is not an executable file", .0.display())]
    NotExecutable(PathBuf),
    /// The script exited with a non-zero code.
    #[error("Script: `{}' failed (rc={code})", .script.display())]
    Failed { script: PathBuf, code: i32 },
    /// The script was killed by a signal.
    #[error("Script: `{}' failed (killed by signal {signal})", .script.display())]
    Killed { script: PathBuf, signal: i32 },
    /// The script could not be started (bad interpreter line, for example).
    #[error("cannot run script `{}': {source}", .script.display())]
    Spawn {
        script: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The directory to mount the guest tree on could not be made.
    #[error("cannot create a mount point in {}: {source}", .dir.display())]
    MountDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Mounting or unmounting the guest tree failed.
    #[error(transparent)]
    Mount(#[from] MountError),
    /// The user interrupted the run (the running script was killed).
    #[error(transparent)]
    Cancelled(#[from] Cancelled),
}

/// Check every script up front, as the original does before touching the media: it must
/// exist, be a regular file (symlinks followed) and be executable. Returns the scripts
/// as absolute paths, in order.
pub fn check_scripts(scripts: &[PathBuf]) -> Result<Vec<PathBuf>, HostRunError> {
    scripts
        .iter()
        .map(|s| {
            let abs = std::path::absolute(s).unwrap_or_else(|_| s.clone());
            let is_file = std::fs::metadata(&abs)
                .map(|m| m.is_file())
                .unwrap_or(false);
            let executable = rustix::fs::access(&abs, rustix::fs::Access::EXEC_OK).is_ok();
            if is_file && executable {
                Ok(abs)
            } else {
                Err(HostRunError::NotExecutable(s.clone()))
            }
        })
        .collect()
}

/// The environment the scripts get on top of ours: one variable per property.
pub fn script_env(metadata: &Metadata) -> Vec<(OsString, OsString)> {
    metadata
        .iter()
        .map(|(k, v)| (format!("{ENV_PREFIX}{k}").into(), v.into()))
        .collect()
}

/// Mount `guest` on a fresh temporary directory, run `scripts` there one after the
/// other (see the module documentation), unmount, and give the tree back.
///
/// On error the tree is dropped (its filesystems flushed as they close): a failed script
/// stops the run. The mount and its directory are gone either way.
pub fn run_scripts(
    guest: GuestFs,
    scripts: &[PathBuf],
    metadata: &Metadata,
    reporter: &dyn Reporter,
) -> Result<GuestFs, HostRunError> {
    let scripts = check_scripts(scripts)?;
    if scripts.is_empty() {
        return Ok(guest);
    }
    cancel::check()?;
    // Declared first so that it goes last: the directory is removed only once empty,
    // that is once nothing is mounted on it.
    let dir = MountDir::new()?;
    let mount = GuestMount::mount(guest, dir.path()).map_err(|(e, _guest)| e)?;
    reporter.info("Running scripts on the input media:");
    let env = script_env(metadata);
    let total = scripts.len();
    let mut result = Ok(());
    for (i, script) in scripts.iter().enumerate() {
        let tag = format!("({}/{total})", i + 1);
        reporter.info(&format!("{tag:<6} Running `{}'", script.display()));
        result = run_one(script, dir.path(), &env, reporter);
        if result.is_err() {
            break;
        }
    }
    let guest = unmount(mount, reporter);
    match (result, guest) {
        (Ok(()), Ok(guest)) => Ok(guest),
        (Err(e), _) | (Ok(()), Err(e)) => Err(e),
    }
}

/// Unmount and take the tree back, retrying a second apart while the mount is busy
/// (someone's shell may sit in it), then detaching it as a last resort.
fn unmount(mut mount: GuestMount, reporter: &dyn Reporter) -> Result<GuestFs, HostRunError> {
    for attempt in 1..=UNMOUNT_ATTEMPTS {
        match mount.try_unmount() {
            Ok(()) => return Ok(mount.unmount()?),
            Err(e) if e.is_busy() && attempt < UNMOUNT_ATTEMPTS && !cancel::is_requested() => {
                reporter.warn("Unable to umount the media. Retrying ...");
                thread::sleep(Duration::from_secs(1));
            }
            Err(e) => {
                reporter.warn(&format!("{e}; detaching it"));
                break;
            }
        }
    }
    Ok(mount.force_unmount()?)
}

/// Run one script to its end (or until cancelled) and kill whatever it left behind.
fn run_one(
    script: &Path,
    cwd: &Path,
    env: &[(OsString, OsString)],
    reporter: &dyn Reporter,
) -> Result<(), HostRunError> {
    let mut cmd = Command::new(script);
    cmd.current_dir(cwd)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so that it and everything it starts can be killed
        // at once (and a terminal's Ctrl-C reaches us, not it, first).
        .process_group(0);
    let mut child = cmd.spawn().map_err(|source| HostRunError::Spawn {
        script: script.to_path_buf(),
        source,
    })?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let status = thread::scope(|s| {
        s.spawn(|| forward(stdout, reporter));
        s.spawn(|| forward(stderr, reporter));
        let status = wait(&mut child, script);
        // Stragglers would keep the mount busy and the pipes open.
        kill_group(&child);
        status
    })?;
    match (status.code(), status.signal()) {
        (Some(0), _) => Ok(()),
        (Some(code), _) => Err(HostRunError::Failed {
            script: script.to_path_buf(),
            code,
        }),
        (None, signal) => Err(HostRunError::Killed {
            script: script.to_path_buf(),
            signal: signal.unwrap_or(0),
        }),
    }
}

/// Wait for `child`; on cancellation kill its whole group and report it.
fn wait(child: &mut Child, script: &Path) -> Result<ExitStatus, HostRunError> {
    let mut delay = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait().map_err(|source| HostRunError::Spawn {
            script: script.to_path_buf(),
            source,
        })? {
            return Ok(status);
        }
        if cancel::is_requested() {
            kill_group(child);
            let _ = child.wait();
            return Err(Cancelled.into());
        }
        thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(50));
    }
}

fn kill_group(child: &Child) {
    if let Some(pid) = i32::try_from(child.id())
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        // ESRCH (nothing left) is the usual answer.
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

/// Pass what a script prints on as chatter, line by line.
fn forward(pipe: Option<impl Read>, reporter: &dyn Reporter) {
    let Some(pipe) = pipe else { return };
    let mut reader = BufReader::new(pipe);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let text = String::from_utf8_lossy(&line);
                reporter.info(text.trim_end_matches(['\n', '\r']));
            }
        }
    }
}

/// The mount point: a private directory in the system temp dir, removed when dropped
/// but never recursively, so that a mount still on it can never be emptied by accident.
struct MountDir(PathBuf);

impl MountDir {
    fn new() -> Result<Self, HostRunError> {
        let base = std::env::temp_dir();
        tempfile::Builder::new()
            .prefix("snf-image-creator-mnt.")
            .tempdir_in(&base)
            .map(|d| MountDir(d.keep()))
            .map_err(|source| HostRunError::MountDir { dir: base, source })
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for MountDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}
