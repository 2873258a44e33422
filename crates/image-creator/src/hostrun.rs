//! `--host-run`: user scripts run on the host against the guest tree.
//!
//! After the metadata is final and before system preparation, the guest tree is mounted
//! read-write through FUSE ([`snf_guestfs::GuestMount`]) on a fresh directory of the
//! system temp dir, and every script runs in turn:
//! * with its working directory at the guest root. Scripts use relative paths
//!   (`etc/hostname`): an absolute path is a *host* path, as in the original. The guest's
//!   symlinks cannot lead out of the guest: the view shows each as a relative path to
//!   where it leads inside the guest (`readlink etc/passwd` may read `../usr/x`), while
//!   the guest keeps its own text. A `..` that the script itself writes after a guest
//!   link to a directory climbs from wherever that link led, as on any host path, so it
//!   can leave the guest from its root: scripts should not climb with `..`;
//! * with `SNF_IMAGE_CREATOR_METADATA_<KEY>=<value>` for every image property;
//! * with no arguments and no standard input; what it prints is passed on as chatter;
//! * for at most `--host-run-timeout` seconds when given, then it is killed and the run
//!   fails.
//!
//! A script's `#!` interpreter must be an absolute path: a relative one would be looked
//! up from the working directory, that is in the guest, and run on the host.
//!
//! A script that exits non-zero stops the run, naming the script and its code. Whatever
//! happens, including cancellation (the script and everything it started are killed),
//! the guest tree is unmounted and the mount directory removed before this returns.
//! Once a script ends, anything it left running in its process group is killed too,
//! since it would keep the mount busy; output still coming from a process that left the
//! group is not waited for.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

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
    /// The interpreter on the script's `#!` line cannot run it.
    #[error("Script `{}': interpreter `{}' {problem}", .script.display(), .interpreter.display())]
    Interpreter {
        script: PathBuf,
        interpreter: PathBuf,
        problem: &'static str,
    },
    /// The script ran longer than `--host-run-timeout` and was killed.
    #[error(
        "Script: `{}' did not finish within {} seconds (--host-run-timeout) and was killed",
        .script.display(), .limit.as_secs()
    )]
    TimedOut { script: PathBuf, limit: Duration },
    /// The script could not be started.
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
/// exist, be a regular file (symlinks followed) and be executable, and so must the
/// interpreter its `#!` line names, by an absolute path. Returns the scripts as
/// absolute paths, in order.
pub fn check_scripts(scripts: &[PathBuf]) -> Result<Vec<PathBuf>, HostRunError> {
    scripts
        .iter()
        .map(|s| {
            let abs = std::path::absolute(s).unwrap_or_else(|_| s.clone());
            if !is_executable_file(&abs) {
                return Err(HostRunError::NotExecutable(s.clone()));
            }
            if let Some((interpreter, problem)) = interpreter_problem(&abs) {
                return Err(HostRunError::Interpreter {
                    script: s.clone(),
                    interpreter,
                    problem,
                });
            }
            Ok(abs)
        })
        .collect()
}

fn is_executable_file(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file())
        && rustix::fs::access(path, rustix::fs::Access::EXEC_OK).is_ok()
}

/// The interpreter on `script`'s `#!` line and why it cannot run the script, if it
/// cannot. The kernel's own error would only say ENOENT, as if the script were missing.
fn interpreter_problem(script: &Path) -> Option<(PathBuf, &'static str)> {
    // The kernel reads no more of the line than this either.
    let mut head = [0u8; 256];
    let n = File::open(script)
        .and_then(|mut f| f.read(&mut head))
        .ok()?;
    let line = head[..n].strip_prefix(b"#!")?;
    let line = line.split(|&b| b == b'\n').next().unwrap_or(line);
    let word = line
        .split(|&b| b == b' ' || b == b'\t')
        .find(|w| !w.is_empty())?;
    let interpreter = PathBuf::from(OsStr::from_bytes(word));
    let problem = if !interpreter.is_absolute() {
        "is not an absolute path (it would be looked up in the guest)"
    } else if !interpreter.exists() {
        "does not exist"
    } else if !is_executable_file(&interpreter) {
        "is not an executable file"
    } else {
        return None;
    };
    Some((interpreter, problem))
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
    limit: Option<Duration>,
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
        result = run_one(script, dir.path(), &env, limit, reporter);
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

/// Run one script to its end (or until cancelled, or past `limit`) and kill whatever
/// it left behind.
fn run_one(
    script: &Path,
    cwd: &Path,
    env: &[(OsString, OsString)],
    limit: Option<Duration>,
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
    let mut child = cmd
        .spawn()
        .map_err(|source| match interpreter_problem(script) {
            Some((interpreter, problem)) => HostRunError::Interpreter {
                script: script.to_path_buf(),
                interpreter,
                problem,
            },
            None => HostRunError::Spawn {
                script: script.to_path_buf(),
                source,
            },
        })?;
    let mut output = Output::new(&mut child);
    let ended = wait(&mut child, &mut output, script, limit, reporter);
    // Stragglers would keep the mount busy and the pipes open.
    kill_group(&child);
    if ended.is_err() {
        let _ = child.wait();
    }
    output.finish(reporter);
    let status = ended?;
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

/// Wait for `child`, passing its output on; on cancellation or past `limit`, kill its
/// whole group and say why.
fn wait(
    child: &mut Child,
    output: &mut Output,
    script: &Path,
    limit: Option<Duration>,
    reporter: &dyn Reporter,
) -> Result<std::process::ExitStatus, HostRunError> {
    let start = Instant::now();
    let mut delay = Duration::from_millis(1);
    loop {
        output.pump(delay, reporter);
        if let Some(status) = child.try_wait().map_err(|source| HostRunError::Spawn {
            script: script.to_path_buf(),
            source,
        })? {
            return Ok(status);
        }
        if cancel::is_requested() {
            kill_group(child);
            return Err(Cancelled.into());
        }
        if let Some(limit) = limit.filter(|l| start.elapsed() >= *l) {
            kill_group(child);
            return Err(HostRunError::TimedOut {
                script: script.to_path_buf(),
                limit,
            });
        }
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

/// A script's standard output and error, passed on as chatter line by line. Read without
/// blocking, in the thread that waits for the script: a process that escaped the
/// script's group may keep the pipes open forever, and must not hold the run.
struct Output {
    pipes: Vec<Pipe>,
}

struct Pipe {
    /// `None` once at its end.
    reader: Option<Box<dyn ReadFd>>,
    /// The start of a line not ended yet.
    partial: Vec<u8>,
}

trait ReadFd: Read + AsFd + Send {}
impl<T: Read + AsFd + Send> ReadFd for T {}

impl Output {
    fn new(child: &mut Child) -> Output {
        let mut pipes = Vec::new();
        let readers: [Option<Box<dyn ReadFd>>; 2] = [
            child.stdout.take().map(|p| Box::new(p) as Box<dyn ReadFd>),
            child.stderr.take().map(|p| Box::new(p) as Box<dyn ReadFd>),
        ];
        for reader in readers.into_iter().flatten() {
            let nonblocking = rustix::fs::fcntl_getfl(&reader).and_then(|flags| {
                rustix::fs::fcntl_setfl(&reader, flags | rustix::fs::OFlags::NONBLOCK)
            });
            // A pipe that would block is not read at all rather than risk a hang.
            if nonblocking.is_ok() {
                pipes.push(Pipe {
                    reader: Some(reader),
                    partial: Vec::new(),
                });
            }
        }
        Output { pipes }
    }

    /// Wait up to `timeout` for output and pass on what came.
    fn pump(&mut self, timeout: Duration, reporter: &dyn Reporter) {
        let open: Vec<_> = self
            .pipes
            .iter()
            .filter_map(|p| p.reader.as_ref())
            .collect();
        if open.is_empty() {
            thread::sleep(timeout);
            return;
        }
        let mut fds: Vec<_> = open
            .iter()
            .map(|r| rustix::event::PollFd::new(r, rustix::event::PollFlags::IN))
            .collect();
        let timeout = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        let _ = rustix::event::poll(&mut fds, Some(&timeout));
        self.drain(reporter);
    }

    /// Pass on what is in the pipes now, without waiting for more.
    fn drain(&mut self, reporter: &dyn Reporter) {
        for pipe in &mut self.pipes {
            pipe.read_available(reporter);
        }
    }

    /// Pass on what is left once the script is gone, an unfinished last line included.
    fn finish(&mut self, reporter: &dyn Reporter) {
        self.drain(reporter);
        for pipe in &mut self.pipes {
            if !pipe.partial.is_empty() {
                report_line(&std::mem::take(&mut pipe.partial), reporter);
            }
        }
    }
}

impl Pipe {
    fn read_available(&mut self, reporter: &dyn Reporter) {
        let Some(reader) = self.reader.as_mut() else {
            return;
        };
        let mut buf = [0u8; 8192];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => {
                    self.reader = None;
                    break;
                }
                Ok(n) => self.partial.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.reader = None;
                    break;
                }
            }
        }
        while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            report_line(&line, reporter);
        }
        // At the end, or when the line grows past any reason, pass on what there is.
        if (self.reader.is_none() && !self.partial.is_empty()) || self.partial.len() > 1 << 16 {
            report_line(&std::mem::take(&mut self.partial), reporter);
        }
    }
}

fn report_line(line: &[u8], reporter: &dyn Reporter) {
    let text = String::from_utf8_lossy(line);
    reporter.info(text.trim_end_matches(['\n', '\r']));
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
            .map_err(|source| HostRunError::MountDir {
                dir: base,
                source: snf_disk::workdir::without_path(source),
            })
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
