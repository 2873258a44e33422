//! The work directory: private scratch space for one run (the raw working copy of the
//! source lives here).
//!
//! Without `--tmpdir` it goes under the writable one of `/var/tmp`, `$HOME` and `/mnt`
//! with the most free space (the first wins ties); `/tmp` is avoided on purpose because
//! it is often a small tmpfs. The directory is `.snf_image_creator.XXXXXX`, mode 0700,
//! and is removed recursively when the last [`WorkDir`] handle is dropped, also after an
//! error or a cancelled run.

use std::fmt;
use std::fs::Permissions;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::Access;

/// Directories tried, in order, when no `--tmpdir` is given (`$HOME` is the second).
const CANDIDATES: [&str; 2] = ["/var/tmp", "/mnt"];

/// What can go wrong choosing or using the work directory.
#[derive(Debug, thiserror::Error)]
pub enum WorkDirError {
    /// `--tmpdir` names something unusable.
    #[error("temporary directory {}: {reason}", .path.display())]
    BadTmpDir { path: PathBuf, reason: String },
    /// None of `/var/tmp`, `$HOME`, `/mnt` is a writable directory.
    #[error(
        "no writable directory for temporary files among /var/tmp, $HOME and /mnt; use --tmpdir"
    )]
    NoCandidate,
    /// The directory could not be created.
    #[error("cannot create a work directory under {}: {source}", .parent.display())]
    Create {
        parent: PathBuf,
        #[source]
        source: io::Error,
    },
    /// `statvfs` failed.
    #[error("cannot find out the free space under {}: {source}", .dir.display())]
    FreeSpace {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Checked up front: the work would not fit.
    #[error(
        "No space left under {}: need {need_mib} MiB for {what}, {free_mib} MiB free",
        .dir.display()
    )]
    NoSpace {
        dir: PathBuf,
        what: String,
        need_mib: u64,
        free_mib: u64,
    },
}

/// A write that failed; `ENOSPC` and `EDQUOT` are told apart so the user learns which
/// directory filled up instead of a bare "No space left on device".
#[derive(Debug, thiserror::Error)]
pub struct WriteError {
    /// The directory written into.
    pub dir: PathBuf,
    /// What was being written ("the working copy of X", "image file Y").
    pub what: String,
    /// The error from the kernel.
    #[source]
    pub source: io::Error,
}

impl WriteError {
    /// Wrap `source`, met while writing `what` under `dir`.
    pub fn new(dir: &Path, what: impl Into<String>, source: io::Error) -> Self {
        WriteError {
            dir: dir.to_path_buf(),
            what: what.into(),
            source,
        }
    }

    /// Whether the file system (or the user's quota) is full.
    pub fn is_out_of_space(&self) -> bool {
        matches!(
            self.source.raw_os_error(),
            Some(e) if e == rustix::io::Errno::NOSPC.raw_os_error()
                || e == rustix::io::Errno::DQUOT.raw_os_error()
        )
    }
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dir = self.dir.display();
        if self.is_out_of_space() {
            let free = free_bytes(&self.dir)
                .map(|b| format!(" ({} MiB free)", b >> 20))
                .unwrap_or_default();
            write!(
                f,
                "No space left under {dir} while writing {}{free}: {}",
                self.what, self.source
            )
        } else {
            write!(f, "cannot write {} under {dir}: {}", self.what, self.source)
        }
    }
}

/// Free bytes for an unprivileged writer under `dir` (`f_bavail * f_frsize`).
pub fn free_bytes(dir: &Path) -> io::Result<u64> {
    let st = rustix::fs::statvfs(dir)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

fn usable(dir: &Path) -> bool {
    dir.is_dir() && rustix::fs::access(dir, Access::WRITE_OK | Access::EXEC_OK).is_ok()
}

/// Pick the parent of the work directory when `--tmpdir` was not given.
fn choose_parent() -> Result<PathBuf, WorkDirError> {
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty());
    let mut candidates: Vec<PathBuf> = vec![PathBuf::from(CANDIDATES[0])];
    candidates.extend(home.map(PathBuf::from));
    candidates.push(PathBuf::from(CANDIDATES[1]));
    let mut best: Option<(u64, PathBuf)> = None;
    for dir in candidates {
        if !usable(&dir) {
            continue;
        }
        let Ok(free) = free_bytes(&dir) else { continue };
        // Strictly greater: the first candidate wins ties.
        if best.as_ref().is_none_or(|(b, _)| free > *b) {
            best = Some((free, dir));
        }
    }
    best.map(|(_, d)| d).ok_or(WorkDirError::NoCandidate)
}

/// `e` without the path `tempfile` adds to it (`... at path "DIR/.snf_image_creator.X"`):
/// the caller names the directory, and the name it tried means nothing to the user.
pub fn without_path(e: io::Error) -> io::Error {
    if e.raw_os_error().is_some() {
        return e;
    }
    let text = e.to_string();
    match text.rfind(" at path ") {
        Some(i) => io::Error::new(e.kind(), &text[..i]),
        None => e,
    }
}

struct Inner {
    dir: tempfile::TempDir,
    parent: PathBuf,
}

/// The run's private work directory. Cloning gives another handle to the same
/// directory (the working disk keeps one); it is removed with everything in it when
/// the last handle is dropped.
#[derive(Clone)]
pub struct WorkDir {
    inner: Arc<Inner>,
}

impl fmt::Debug for WorkDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("WorkDir").field(&self.path()).finish()
    }
}

impl WorkDir {
    /// Create `.snf_image_creator.XXXXXX` (mode 0700) under `tmpdir` if given (it must
    /// be an existing directory), else under the writable one of `/var/tmp`, `$HOME`,
    /// `/mnt` with the most free space.
    pub fn create(tmpdir: Option<&Path>) -> Result<WorkDir, WorkDirError> {
        let parent = match tmpdir {
            Some(dir) => {
                let meta = std::fs::metadata(dir).map_err(|e| WorkDirError::BadTmpDir {
                    path: dir.to_path_buf(),
                    reason: e.to_string(),
                })?;
                if !meta.is_dir() {
                    return Err(WorkDirError::BadTmpDir {
                        path: dir.to_path_buf(),
                        reason: "not a directory".into(),
                    });
                }
                dir.to_path_buf()
            }
            None => choose_parent()?,
        };
        let dir = tempfile::Builder::new()
            .prefix(".snf_image_creator.")
            .rand_bytes(6)
            .permissions(Permissions::from_mode(0o700))
            .tempdir_in(&parent)
            .map_err(|source| WorkDirError::Create {
                parent: parent.clone(),
                source: without_path(source),
            })?;
        Ok(WorkDir {
            inner: Arc::new(Inner { dir, parent }),
        })
    }

    /// The work directory itself.
    pub fn path(&self) -> &Path {
        self.inner.dir.path()
    }

    /// The directory the work directory was created in.
    pub fn parent(&self) -> &Path {
        &self.inner.parent
    }

    /// Free bytes in the work directory's file system.
    pub fn free_space(&self) -> Result<u64, WorkDirError> {
        free_bytes(self.path()).map_err(|source| WorkDirError::FreeSpace {
            // The user knows the directory they gave, not our private one inside it.
            dir: self.parent().to_path_buf(),
            source,
        })
    }

    /// Fail up front, with a message naming the directory, unless `bytes` more fit;
    /// `what` says what needs them ("a private copy of /x/disk.img").
    pub fn ensure_space(&self, bytes: u64, what: &str) -> Result<(), WorkDirError> {
        let free = self.free_space()?;
        if free < bytes {
            return Err(WorkDirError::NoSpace {
                dir: self.parent().to_path_buf(),
                what: what.to_string(),
                need_mib: bytes.div_ceil(1 << 20),
                free_mib: free >> 20,
            });
        }
        Ok(())
    }

    /// Wrap an I/O error met while writing `what` in the work directory.
    pub fn write_error(&self, what: impl Into<String>, source: io::Error) -> WriteError {
        WriteError::new(self.parent(), what, source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn created_private_and_removed_on_last_drop() {
        let parent = tempfile::tempdir().unwrap();
        let wd = WorkDir::create(Some(parent.path())).unwrap();
        let path = wd.path().to_path_buf();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        assert!(name.starts_with(".snf_image_creator."), "{name}");
        assert_eq!(name.len(), ".snf_image_creator.".len() + 6);
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o700);
        assert_eq!(wd.parent(), parent.path());
        std::fs::write(path.join("x"), b"data").unwrap();
        let other = wd.clone();
        drop(wd);
        assert!(path.exists(), "a clone keeps the directory");
        drop(other);
        assert!(!path.exists());
    }

    #[test]
    fn tmpdir_must_be_an_existing_directory() {
        let parent = tempfile::tempdir().unwrap();
        let missing = parent.path().join("nope");
        let err = WorkDir::create(Some(&missing)).unwrap_err().to_string();
        assert!(
            err.contains("nope") && err.contains("No such file"),
            "{err}"
        );
        let file = parent.path().join("file");
        std::fs::write(&file, b"").unwrap();
        let err = WorkDir::create(Some(&file)).unwrap_err().to_string();
        assert!(err.ends_with("not a directory"), "{err}");
    }

    #[test]
    fn default_parent_is_a_candidate_with_most_space() {
        let wd = WorkDir::create(None).unwrap();
        let parent = wd.parent().to_path_buf();
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let mut all = vec![PathBuf::from("/var/tmp"), PathBuf::from("/mnt")];
        all.extend(home);
        assert!(all.contains(&parent), "{}", parent.display());
        let chosen = free_bytes(&parent).unwrap();
        for c in all.iter().filter(|c| usable(c)) {
            // Free space moves while other tests write; allow 64 MiB of slack.
            assert!(
                free_bytes(c).unwrap() <= chosen + (64 << 20),
                "{}",
                c.display()
            );
        }
    }

    #[test]
    fn ensure_space_names_directory_and_sizes() {
        let parent = tempfile::tempdir().unwrap();
        let wd = WorkDir::create(Some(parent.path())).unwrap();
        wd.ensure_space(1 << 20, "a test").unwrap();
        let err = wd.ensure_space(u64::MAX / 2, "a huge copy").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!(
                "No space left under {}: need ",
                parent.path().display()
            )),
            "{msg}"
        );
        assert!(
            msg.contains("MiB for a huge copy, ") && msg.ends_with(" MiB free"),
            "{msg}"
        );
    }

    #[test]
    fn enospc_message_names_directory() {
        let e = WriteError::new(
            Path::new("/var/tmp"),
            "the working copy",
            io::Error::from_raw_os_error(rustix::io::Errno::NOSPC.raw_os_error()),
        );
        assert!(e.is_out_of_space());
        let msg = e.to_string();
        assert!(
            msg.starts_with("No space left under /var/tmp while writing the working copy"),
            "{msg}"
        );
    }
}
