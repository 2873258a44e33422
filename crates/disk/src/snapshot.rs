//! The working disk: the raw disk every later stage reads, and writes only after
//! [`WorkingDisk::make_writable`]. The source is never written unless the run asked
//! for [`SnapshotMode::NoSnapshot`].
//!
//! No device-mapper snapshot, overlay or root is involved:
//!
//! * raw image file or block device: the working disk starts as a read-only view of
//!   the source itself, so a run that never writes never copies anything.
//!   `make_writable` then makes a private copy in the work directory: a reflink clone
//!   (free where the file system supports it), else a sparse copy that reads only
//!   allocated data and leaves all-zero blocks as holes.
//! * any other format: one `qemu-img convert -O raw -S 4k` into the work directory at
//!   open time; the result is writable at once.
//! * `NoSnapshot`: a raw file or block device is opened read-write in place; other
//!   formats are refused.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;
use snf_core::command::{self, CommandError};
use snf_core::{Cancelled, Reporter, Task, Unit};

use crate::media::{Source, SourceKind};
use crate::sparse::{self, EngineError};
use crate::workdir::{WorkDir, WorkDirError, WriteError};

/// Whether the source may be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SnapshotMode {
    /// Never write the source: writes go to a private copy in the work directory.
    #[default]
    Snapshot,
    /// `--no-snapshot`: a raw source is modified in place.
    NoSnapshot,
}

/// What went wrong opening or copying the working disk.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Bundling the running host failed.
    #[error(transparent)]
    Host(#[from] crate::host::HostError),
    /// `--no-snapshot` with a non-raw source.
    #[error("--no-snapshot works only on raw images and block devices: {} is {format}", .path.display())]
    NoSnapshotFormat { path: PathBuf, format: String },
    /// Opening the source or the copy failed.
    #[error("cannot open {}{}: {source}", .path.display(), if *.write { " for writing" } else { "" })]
    Open {
        path: PathBuf,
        write: bool,
        #[source]
        source: io::Error,
    },
    /// Reading the source failed while copying it.
    #[error("cannot read {} at byte {offset}: {source}", .path.display())]
    Read {
        path: PathBuf,
        offset: u64,
        #[source]
        source: io::Error,
    },
    /// Writing the private copy failed (names the directory; says so if it is full).
    #[error(transparent)]
    Write(#[from] WriteError),
    /// Creating the copy in the work directory, or not enough space for it.
    #[error(transparent)]
    WorkDir(#[from] WorkDirError),
    /// `qemu-img convert` failed.
    #[error("cannot convert {} ({format}) to raw: {source}", .path.display())]
    Convert {
        path: PathBuf,
        format: String,
        #[source]
        source: Box<CommandError>,
    },
    /// `set_size` on something that is not a private copy.
    #[error("cannot resize {}: only a private working copy can be resized, not the source", .path.display())]
    NotACopy { path: PathBuf },
    /// The user cancelled.
    #[error(transparent)]
    Cancelled(#[from] Cancelled),
}

impl SnapshotError {
    /// Whether the work stopped because the user cancelled.
    pub fn is_cancelled(&self) -> bool {
        match self {
            SnapshotError::Host(e) => e.is_cancelled(),
            other => matches!(other, SnapshotError::Cancelled(_)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The source itself, opened read-only.
    SourceView,
    /// A private raw copy in the work directory.
    Copy,
    /// The source itself, opened read-write (`NoSnapshot`).
    InPlace,
}

/// The raw disk the pipeline works on. See the module documentation.
///
/// Holds a handle to the work directory, so the directory (and the copy in it) lives
/// at least as long as the working disk.
#[derive(Debug)]
pub struct WorkingDisk {
    source: Source,
    workdir: WorkDir,
    file: File,
    path: PathBuf,
    size: u64,
    state: State,
    /// Removes the private copy when the working disk is dropped.
    copy: Option<tempfile::TempPath>,
    sector_size: u32,
    /// `SWAP` of a bundled host whose disk ends with a swap partition.
    bundled_swap: Option<String>,
}

fn open_error(path: &Path, write: bool) -> impl FnOnce(io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Open {
        path: path.to_path_buf(),
        write,
        source,
    }
}

impl WorkingDisk {
    /// Open the working disk for `source`.
    ///
    /// * raw/block device, `Snapshot`: a read-only view of the source (no copy yet).
    /// * other formats, `Snapshot`: converted to a raw copy in `workdir` now, with
    ///   progress through `reporter`; cancellation kills qemu-img.
    /// * raw/block device, `NoSnapshot`: the source opened read-write.
    /// * other formats, `NoSnapshot`: refused ([`SnapshotError::NoSnapshotFormat`]).
    /// * the host: bundled into a private raw image ([`crate::host::bundle`]; the mode
    ///   does not matter, the running system is never written).
    pub fn open(
        source: &Source,
        workdir: &WorkDir,
        mode: SnapshotMode,
        reporter: &dyn Reporter,
    ) -> Result<WorkingDisk, SnapshotError> {
        Self::open_excluding(source, workdir, mode, &[], reporter)
    }

    /// [`open`](Self::open), leaving `outputs` (the output file and its side files) out
    /// of a bundled host.
    pub fn open_excluding(
        source: &Source,
        workdir: &WorkDir,
        mode: SnapshotMode,
        outputs: &[PathBuf],
        reporter: &dyn Reporter,
    ) -> Result<WorkingDisk, SnapshotError> {
        if source.kind() == SourceKind::Host {
            let roots = crate::host::Roots::from_env();
            let b = crate::host::bundle(workdir, &roots, outputs, reporter)?;
            // The bundle is already private: it is the working copy, no second copy.
            let path = b.image.to_path_buf();
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(open_error(&path, true))?;
            return Ok(WorkingDisk {
                source: source.clone(),
                workdir: workdir.clone(),
                file,
                path,
                size: b.size,
                state: State::Copy,
                copy: Some(b.image),
                sector_size: b.sector_size,
                bundled_swap: b.swap,
            });
        }
        let path = source.path();
        match (source.is_raw(), mode) {
            (true, SnapshotMode::Snapshot) => {
                let file = File::open(path).map_err(open_error(path, false))?;
                Ok(Self::new(
                    source,
                    workdir,
                    file,
                    path.to_path_buf(),
                    State::SourceView,
                ))
            }
            (true, SnapshotMode::NoSnapshot) => {
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(path)
                    .map_err(open_error(path, true))?;
                Ok(Self::new(
                    source,
                    workdir,
                    file,
                    path.to_path_buf(),
                    State::InPlace,
                ))
            }
            (false, SnapshotMode::NoSnapshot) => Err(SnapshotError::NoSnapshotFormat {
                path: source.given().to_path_buf(),
                format: source.format().to_string(),
            }),
            (false, SnapshotMode::Snapshot) => convert(source, workdir, reporter),
        }
    }

    fn new(source: &Source, workdir: &WorkDir, file: File, path: PathBuf, state: State) -> Self {
        WorkingDisk {
            source: source.clone(),
            workdir: workdir.clone(),
            file,
            path,
            size: source.size(),
            state,
            copy: None,
            sector_size: source.sector_size(),
            bundled_swap: None,
        }
    }

    /// The source this disk was made from.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// The path of the raw data: the source itself (read-only view or `NoSnapshot`)
    /// or the private copy. Tools (e2fsck, resize2fs, libext2fs) may open it; they may
    /// write it only when [`is_writable`](Self::is_writable).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How messages name this disk: the source as given, or its private copy (whose own
    /// file name is internal to the work directory).
    pub fn name(&self) -> String {
        match self.state {
            State::Copy => format!("the private copy of {}", self.source.given().display()),
            State::SourceView | State::InPlace => self.source.given().display().to_string(),
        }
    }

    /// The work directory this disk's private copy lives in.
    pub fn work_dir(&self) -> &WorkDir {
        &self.workdir
    }

    /// The disk's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The logical sector size of the source.
    pub fn sector_size(&self) -> u32 {
        self.sector_size
    }

    /// The `SWAP` property of a bundled host whose disk ends with a swap partition
    /// (which the image leaves out).
    pub fn bundled_swap(&self) -> Option<&str> {
        self.bundled_swap.as_deref()
    }

    /// Whether writing is allowed (a private copy, or `NoSnapshot`).
    pub fn is_writable(&self) -> bool {
        self.state != State::SourceView
    }

    /// Whether the data is a private copy in the work directory.
    pub fn is_copy(&self) -> bool {
        self.state == State::Copy
    }

    /// The open raw data, for `pread` (and `pwrite` when writable). Do not keep it
    /// across [`make_writable`](Self::make_writable), which swaps the file.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Make the disk writable. For a read-only view of a raw source, materialise a
    /// private copy in the work directory: a reflink clone if the file system can,
    /// else a sparse copy (holes and all-zero blocks are not written) after checking
    /// the space up front. No-op when already writable.
    pub fn make_writable(&mut self, reporter: &dyn Reporter) -> Result<(), SnapshotError> {
        self.make_writable_skipping(&[], reporter)
    }

    /// [`make_writable`](Self::make_writable), treating the byte ranges `free` of the
    /// source as zeros: they are never read and stay holes in the private copy (free
    /// blocks of the guest's filesystems, so deleted data is not even copied). A reflink
    /// clone ignores `free` (it costs nothing and copies no data).
    pub fn make_writable_skipping(
        &mut self,
        free: &[std::ops::Range<u64>],
        reporter: &dyn Reporter,
    ) -> Result<(), SnapshotError> {
        if self.is_writable() {
            return Ok(());
        }
        let what = format!("a private copy of {}", self.source.given().display());
        let temp = new_copy_path(&self.workdir, &what)?;
        let dst = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&temp)
            .map_err(|e| self.workdir.write_error(what.clone(), e))?;

        let cloned = self.source.kind() == SourceKind::ImageFile
            && rustix::fs::ioctl_ficlone(&dst, &self.file).is_ok();
        if cloned {
            reporter.detail(&format!("{what}: cloned with a reflink"));
        } else {
            let block = self.source.kind() == SourceKind::BlockDevice;
            let allocated = self
                .file
                .metadata()
                .map(|m| m.blocks() * 512)
                .unwrap_or(self.size)
                .min(self.size);
            // A sparse image file was written by something that leaves zeros out (qemu-img,
            // cp --sparse, a hypervisor): its data extents hold data and are copied inside
            // the kernel. A device or a fully allocated file is read, so that its zero
            // blocks stay holes of the copy.
            let sparse_file = !block && allocated < self.size;
            if block {
                // A device's allocation is unknowable without reading it all; zero
                // blocks will be skipped, so the copy is often much smaller.
                let free = self.workdir.free_space()?;
                if free < self.size {
                    reporter.warn(&format!(
                        "{} may need up to {} MiB for {what}; {} MiB free",
                        self.workdir.parent().display(),
                        self.size.div_ceil(1 << 20),
                        free >> 20
                    ));
                }
            } else {
                self.workdir.ensure_space(allocated, &what)?;
            }
            let task = reporter.task(
                &format!(
                    "Copying {} to a private working copy",
                    self.source.given().display()
                ),
                self.size,
                Unit::Bytes,
            );
            let job = sparse::Job {
                src: &self.file,
                size: self.size,
                free,
                dst: Some(&dst),
                md5: false,
                punch_zeros: false,
                kernel_copy: sparse_file,
                task: task.as_ref(),
            };
            sparse::run(&job).map_err(|e| match e {
                EngineError::Read { offset, source } => SnapshotError::Read {
                    path: self.source.given().to_path_buf(),
                    offset,
                    source,
                },
                EngineError::Write(source) => self.workdir.write_error(what.clone(), source).into(),
                EngineError::Cancelled => Cancelled.into(),
            })?;
            task.finish("done");
        }
        dst.set_len(self.size)
            .map_err(|source| self.workdir.write_error(what.clone(), source))?;
        self.file = dst;
        self.path = temp.to_path_buf();
        self.copy = Some(temp);
        self.state = State::Copy;
        Ok(())
    }

    /// Give up the private copy so that it can become the image itself: its open file
    /// and its path (dropping the [`tempfile::TempPath`] removes it; `persist` renames
    /// it). The disk back (`Err`) when it is not a private copy.
    pub fn into_private_copy(self) -> Result<(File, tempfile::TempPath), Box<WorkingDisk>> {
        match self {
            WorkingDisk {
                state: State::Copy,
                copy: Some(copy),
                file,
                ..
            } => Ok((file, copy)),
            other => Err(Box::new(other)),
        }
    }

    /// Change the size of the private copy (shrink truncates the disk after the last
    /// partition). Refused unless the disk is a private copy: the source is never
    /// truncated. With `NoSnapshot`, pass the smaller size to the dump instead.
    pub fn set_size(&mut self, new_size: u64) -> Result<(), SnapshotError> {
        if self.state != State::Copy {
            return Err(SnapshotError::NotACopy {
                path: self.source.given().to_path_buf(),
            });
        }
        let what = format!("the private copy of {}", self.source.given().display());
        self.file
            .set_len(new_size)
            .map_err(|source| self.workdir.write_error(what, source))?;
        self.size = new_size;
        Ok(())
    }
}

/// A new empty file in the work directory for `what`, removed when the returned path is
/// dropped. Errors name `what` and the directory the user chose, not the file.
fn new_copy_path(workdir: &WorkDir, what: &str) -> Result<tempfile::TempPath, SnapshotError> {
    let f = tempfile::Builder::new()
        .prefix("disk-")
        .suffix(".raw")
        .tempfile_in(workdir.path())
        .map_err(|source| workdir.write_error(what, source))?;
    Ok(f.into_temp_path())
}

#[derive(Deserialize)]
struct Measure {
    required: u64,
}

/// Bytes a raw conversion will allocate: qemu-img's estimate for a qcow2 target (which,
/// like a sparse raw file, stores only allocated, non-zero clusters), else the source's
/// own allocation.
fn conversion_estimate(source: &Source) -> u64 {
    command::run_with_limit(
        Command::new("qemu-img")
            .args([
                "measure",
                "--output=json",
                "-f",
                source.format(),
                "-O",
                "qcow2",
            ])
            .arg(source.path()),
        crate::media::metadata_limit(source.size()),
    )
    .ok()
    .and_then(|o| serde_json::from_str::<Measure>(&o.stdout).ok())
    .map(|m| m.required.min(source.size()))
    .unwrap_or_else(|| source.allocated().min(source.size()))
}

/// `qemu-img convert -p -f FMT -O raw -S 4k SRC COPY`, progress parsed from `-p`.
fn convert(
    source: &Source,
    workdir: &WorkDir,
    reporter: &dyn Reporter,
) -> Result<WorkingDisk, SnapshotError> {
    let what = format!("the raw copy of {}", source.given().display());
    workdir.ensure_space(conversion_estimate(source), &what)?;
    let temp = new_copy_path(workdir, &what)?;
    let program = "qemu-img";
    let convert_error = |e: CommandError| match e {
        CommandError::Cancelled { .. } => SnapshotError::Cancelled(Cancelled),
        e => SnapshotError::Convert {
            path: source.given().to_path_buf(),
            format: source.format().to_string(),
            source: Box::new(e),
        },
    };
    // The copy takes as long as the data does: a limit that only a loop reaches.
    let mut child = command::prepare(&mut Command::new(program))
        .args([
            "convert",
            "-p",
            "-f",
            source.format(),
            "-O",
            "raw",
            "-S",
            "4k",
        ])
        .arg(source.path())
        .arg(&*temp)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            convert_error(CommandError::Spawn {
                program: program.into(),
                source: e,
            })
        })?;
    let task = reporter.task(
        &format!(
            "Converting {} ({}) to raw",
            source.given().display(),
            source.format()
        ),
        source.size(),
        Unit::Bytes,
    );
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let (status, stderr) = std::thread::scope(|scope| {
        let task: &dyn Task = task.as_ref();
        let size = source.size();
        scope.spawn(move || {
            if let Some(out) = stdout {
                follow_progress(out, |pct| {
                    task.set_position((size as f64 * pct / 100.0) as u64)
                });
            }
        });
        let err = scope.spawn(move || {
            let mut s = String::new();
            if let Some(mut e) = stderr {
                let _ = e.read_to_string(&mut s);
            }
            s
        });
        let status =
            command::wait_with_limit(&mut child, "qemu-img convert", command::data_limit(size));
        (status, err.join().unwrap_or_default())
    });
    let status = status.map_err(convert_error)?;
    // A request that came as qemu-img was finishing still cancels the run.
    snf_core::cancel::check()?;
    if !status.success() {
        // qemu-img reports ENOSPC as a plain message; name the directory instead.
        if stderr.contains("No space left on device") || free_space_exhausted(workdir) {
            return Err(workdir
                .write_error(
                    what,
                    io::Error::from_raw_os_error(rustix::io::Errno::NOSPC.raw_os_error()),
                )
                .into());
        }
        return Err(convert_error(CommandError::Failed {
            program: program.into(),
            status,
            stdout: String::new(),
            // qemu-img names its output file: the user knows it as the raw copy.
            stderr: stderr.replace(&temp.display().to_string(), &what),
        }));
    }
    task.finish("done");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&temp)
        .map_err(|e| workdir.write_error(what.clone(), e))?;
    let size = file
        .metadata()
        .map_err(|e| workdir.write_error(what.clone(), e))?
        .len();
    let mut disk = WorkingDisk::new(source, workdir, file, temp.to_path_buf(), State::Copy);
    disk.size = size;
    disk.copy = Some(temp);
    Ok(disk)
}

fn free_space_exhausted(workdir: &WorkDir) -> bool {
    workdir.free_space().map(|f| f < (1 << 20)).unwrap_or(false)
}

/// Parse qemu-img's `-p` output (`    (12.34/100%)\r` repeated) and report each value.
fn follow_progress(mut out: impl Read, mut report: impl FnMut(f64)) {
    let mut buf = [0u8; 4096];
    let mut pending = Vec::new();
    loop {
        let n = match out.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        while let Some(i) = pending.iter().position(|&b| b == b'\r' || b == b'\n') {
            let piece: Vec<u8> = pending.drain(..=i).collect();
            if let Some(pct) = parse_percent(&piece) {
                report(pct);
            }
        }
    }
}

fn parse_percent(piece: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(piece).ok()?.trim();
    let inner = s.strip_prefix('(')?.strip_suffix(')')?;
    let (num, _) = inner.split_once('/')?;
    num.parse::<f64>()
        .ok()
        .filter(|p| (0.0..=100.0).contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_parsed() {
        let data = b"    (0.00/100%)\r    (16.67/100%)\r    (100.00/100%)\r\n";
        let mut seen = Vec::new();
        follow_progress(&data[..], |p| seen.push(p));
        assert_eq!(seen, vec![0.0, 16.67, 100.0]);
        assert_eq!(parse_percent(b"garbage"), None);
    }
}
