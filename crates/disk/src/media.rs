//! Examining the source media: what it is, its format and its size.
//!
//! * A regular file is a disk image in any format `qemu-img` reads (raw, qcow2, vmdk,
//!   vpc, vdi, vhdx, ...). The format is probed with `qemu-img info`, except that a
//!   *fixed* VHD is recognised here by its `conectix` footer in the last 512 bytes
//!   (qemu-img probes it as raw). Non-raw images are checked for damage (`qemu-img
//!   check`, and `qemu-img map` for data lying beyond the end of a truncated file),
//!   because qemu-img otherwise converts a truncated image silently, reading zeros.
//! * A block device is raw; its size comes from seeking to its end and its logical
//!   sector size from sysfs.
//! * The directory `/` means the running host (bundling it is the caller's business);
//!   other directories and other file types are refused.
//!
//! Every later `qemu-img` call must pass `-f` [`Source::format`] explicitly.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;
use snf_core::command::{self, CommandError};

/// What kind of thing the source is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// A regular file holding a disk image.
    ImageFile,
    /// A block device (read as raw).
    BlockDevice,
    /// The running system (`/`).
    Host,
}

/// What is wrong with a source; every message names it.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// `stat` failed (missing file, no permission on a parent directory ...).
    #[error("cannot examine {}: {source}", .path.display())]
    Stat {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A directory other than `/`.
    #[error("{}: Invalid media source. Only the root directory can be bundled, not other directories.", .path.display())]
    Directory { path: PathBuf },
    /// A socket, FIFO, character device ...
    #[error("{}: Invalid media source. Only block devices, regular files and the root directory are supported.", .path.display())]
    InvalidType { path: PathBuf },
    /// The source cannot be opened or read.
    #[error("cannot read {}: {source}", .path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Zero bytes long.
    #[error("{} is empty", .path.display())]
    Empty { path: PathBuf },
    /// Not something qemu-img can read as a disk.
    #[error("{} is not a usable disk image: {reason}", .path.display())]
    NotAnImage { path: PathBuf, reason: String },
    /// A known format, but damaged or truncated.
    #[error("{} is a damaged {format} image: {reason}", .path.display())]
    Damaged {
        path: PathBuf,
        format: String,
        reason: String,
    },
    /// qemu-img could not be run at all, or was interrupted.
    #[error("cannot examine {}: {source}", .path.display())]
    Command {
        path: PathBuf,
        #[source]
        source: Box<CommandError>,
    },
}

impl MediaError {
    /// Whether the examination stopped because the user cancelled.
    pub fn is_cancelled(&self) -> bool {
        matches!(
            self,
            MediaError::Command { source, .. } if matches!(**source, CommandError::Cancelled { .. })
        )
    }
}

/// An examined source medium.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    given: PathBuf,
    path: PathBuf,
    kind: SourceKind,
    format: String,
    size: u64,
    sector_size: u32,
    allocated: u64,
}

impl Source {
    /// Examine `path`: what it is, its format, virtual size and sector size.
    ///
    /// Errors are one line naming `path` and the problem: missing or unreadable,
    /// empty, a directory other than `/`, an unsupported file type, not a disk image
    /// (qemu-img's own reason), a damaged or truncated image.
    pub fn examine(path: impl AsRef<Path>) -> Result<Source, MediaError> {
        let given = path.as_ref();
        let meta = std::fs::metadata(given).map_err(|source| MediaError::Stat {
            path: given.to_path_buf(),
            source,
        })?;
        let resolved = std::fs::canonicalize(given).map_err(|source| MediaError::Stat {
            path: given.to_path_buf(),
            source,
        })?;
        let ft = meta.file_type();
        if ft.is_dir() {
            if resolved == Path::new("/") {
                return Ok(Source {
                    given: given.to_path_buf(),
                    path: resolved,
                    kind: SourceKind::Host,
                    format: "host".into(),
                    size: 0,
                    sector_size: 512,
                    allocated: 0,
                });
            }
            return Err(MediaError::Directory {
                path: given.to_path_buf(),
            });
        }
        if ft.is_block_device() {
            return examine_block(given, resolved, &meta);
        }
        if ft.is_file() {
            return examine_file(given, resolved, &meta);
        }
        Err(MediaError::InvalidType {
            path: given.to_path_buf(),
        })
    }

    /// The path as the user gave it (for messages).
    pub fn given(&self) -> &Path {
        &self.given
    }

    /// The absolute path with symlinks resolved; use this for every tool invocation
    /// (an absolute path cannot be mistaken by qemu-img for a `protocol:` name).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Image file, block device or host.
    pub fn kind(&self) -> SourceKind {
        self.kind
    }

    /// The qemu-img format name (`raw`, `qcow2`, `vmdk`, `vpc`, `vdi`, `vhdx` ...);
    /// `raw` for block devices, `host` for the host. Pass it as `-f` to qemu-img.
    pub fn format(&self) -> &str {
        &self.format
    }

    /// Whether the bytes of the source are the disk itself (raw file or block device).
    pub fn is_raw(&self) -> bool {
        self.kind != SourceKind::Host && self.format == "raw"
    }

    /// Whether the source is the running host (`/`).
    pub fn is_host(&self) -> bool {
        self.kind == SourceKind::Host
    }

    /// The size of the disk the source holds (qemu-img's virtual size), in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Logical sector size: the device's for block devices, 512 for image files (a
    /// partition table may still reveal 4096-byte sectors).
    pub fn sector_size(&self) -> u32 {
        self.sector_size
    }

    /// Bytes the source occupies on the host (`st_blocks * 512`; the full size for a
    /// block device). An estimate of what a private copy needs.
    pub fn allocated(&self) -> u64 {
        self.allocated
    }
}

fn examine_block(
    given: &Path,
    resolved: PathBuf,
    meta: &std::fs::Metadata,
) -> Result<Source, MediaError> {
    let unreadable = |source| MediaError::Unreadable {
        path: given.to_path_buf(),
        source,
    };
    let mut file = File::open(&resolved).map_err(unreadable)?;
    let size = file.seek(SeekFrom::End(0)).map_err(unreadable)?;
    if size == 0 {
        return Err(MediaError::Empty {
            path: given.to_path_buf(),
        });
    }
    // Prove the device can actually be read (a removed medium fails here, not later).
    let mut first = [0u8; 512];
    file.read_at(&mut first, 0).map_err(unreadable)?;
    let sector_size = logical_sector_size(meta.rdev(), &file);
    Ok(Source {
        given: given.to_path_buf(),
        path: resolved,
        kind: SourceKind::BlockDevice,
        format: "raw".into(),
        size,
        sector_size,
        allocated: size,
    })
}

/// From `/sys/dev/block/MAJ:MIN/queue` (or the parent disk's for a partition), else the
/// `BLKSSZGET` ioctl, else 512.
fn logical_sector_size(rdev: u64, file: &File) -> u32 {
    let (major, minor) = (rustix::fs::major(rdev), rustix::fs::minor(rdev));
    let base = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    for p in [
        base.join("queue/logical_block_size"),
        base.join("../queue/logical_block_size"),
    ] {
        if let Some(n) = std::fs::read_to_string(&p)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .filter(|n| n.is_power_of_two() && *n >= 512)
        {
            return n;
        }
    }
    rustix::fs::ioctl_blksszget(file).unwrap_or(512)
}

#[derive(Deserialize)]
struct Info {
    format: String,
    #[serde(rename = "virtual-size")]
    virtual_size: u64,
    #[serde(default)]
    encrypted: bool,
}

/// The last stderr line of a failed qemu-img, without the `qemu-img: ` prefix.
fn reason(err: &CommandError) -> Option<String> {
    match err {
        CommandError::Failed { stderr, .. } => stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(|l| strip_qemu_prefixes(l.trim())),
        _ => None,
    }
}

/// `qemu-img: Could not open '/x': Could not open '/x': Invalid argument` ->
/// `Invalid argument`: the caller's message already names the file.
fn strip_qemu_prefixes(line: &str) -> String {
    let mut s = line.trim_start_matches("qemu-img: ");
    while let Some(rest) = s.strip_prefix("Could not open '") {
        match rest.split_once("': ") {
            Some((_, tail)) => s = tail,
            None => break,
        }
    }
    s.to_string()
}

/// Whether the last 512 bytes are a valid VHD footer of a *fixed* disk.
pub(crate) fn is_fixed_vhd_footer(footer: &[u8; 512]) -> bool {
    if &footer[..8] != b"conectix" {
        return false;
    }
    let disk_type = u32::from_be_bytes([footer[60], footer[61], footer[62], footer[63]]);
    let stored = u32::from_be_bytes([footer[64], footer[65], footer[66], footer[67]]);
    let sum: u32 = footer
        .iter()
        .enumerate()
        .filter(|(i, _)| !(64..68).contains(i))
        .map(|(_, &b)| b as u32)
        .sum();
    disk_type == 2 && !sum == stored
}

fn examine_file(
    given: &Path,
    resolved: PathBuf,
    meta: &std::fs::Metadata,
) -> Result<Source, MediaError> {
    let path_buf = || given.to_path_buf();
    let file = File::open(&resolved).map_err(|source| MediaError::Unreadable {
        path: path_buf(),
        source,
    })?;
    let len = meta.len();
    if len == 0 {
        return Err(MediaError::Empty { path: path_buf() });
    }
    let mut head = [0u8; 1];
    file.read_at(&mut head, 0)
        .map_err(|source| MediaError::Unreadable {
            path: path_buf(),
            source,
        })?;
    let mut fixed_vhd = false;
    if len >= 1024 {
        let mut footer = [0u8; 512];
        file.read_exact_at(&mut footer, len - 512)
            .map_err(|source| MediaError::Unreadable {
                path: path_buf(),
                source,
            })?;
        fixed_vhd = is_fixed_vhd_footer(&footer);
    }
    let mut cmd = Command::new("qemu-img");
    cmd.args(["info", "--output=json"]);
    if fixed_vhd {
        cmd.args(["-f", "vpc"]);
    }
    cmd.arg(&resolved);
    let out = command::run(&mut cmd).map_err(|e| match reason(&e) {
        Some(reason) => MediaError::NotAnImage {
            path: path_buf(),
            reason,
        },
        None => MediaError::Command {
            path: path_buf(),
            source: Box::new(e),
        },
    })?;
    let info: Info = serde_json::from_str(&out.stdout).map_err(|e| MediaError::NotAnImage {
        path: path_buf(),
        reason: format!("cannot parse the output of qemu-img info: {e}"),
    })?;
    if info.encrypted || info.format == "luks" {
        return Err(MediaError::NotAnImage {
            path: path_buf(),
            reason: format!("encrypted {} images are not supported", info.format),
        });
    }
    if info.virtual_size == 0 {
        return Err(MediaError::NotAnImage {
            path: path_buf(),
            reason: format!("the {} image has a virtual size of 0 bytes", info.format),
        });
    }
    if info.format == "raw" && !len.is_multiple_of(512) {
        return Err(MediaError::NotAnImage {
            path: path_buf(),
            reason: format!(
                "not a known image format, and its size ({len} bytes) is not a multiple of 512 as a raw disk's would be"
            ),
        });
    }
    if info.format != "raw" {
        check_integrity(given, &resolved, &info.format, len)?;
    }
    Ok(Source {
        given: given.to_path_buf(),
        path: resolved,
        kind: SourceKind::ImageFile,
        format: info.format,
        size: info.virtual_size,
        sector_size: 512,
        allocated: (meta.blocks() * 512).min(len.max(info.virtual_size)),
    })
}

#[derive(Deserialize)]
struct CheckOut {
    #[serde(default)]
    corruptions: u64,
}

#[derive(Deserialize)]
struct MapEntry {
    start: u64,
    length: u64,
    depth: u64,
    data: bool,
    offset: Option<u64>,
}

/// Catch damaged and truncated images now: qemu-img would convert them silently,
/// reading zeros where the data is missing.
fn check_integrity(
    given: &Path,
    resolved: &Path,
    format: &str,
    len: u64,
) -> Result<(), MediaError> {
    let damaged = |reason: String| MediaError::Damaged {
        path: given.to_path_buf(),
        format: format.to_string(),
        reason,
    };
    let command_error = |source| MediaError::Command {
        path: given.to_path_buf(),
        source: Box::new(source),
    };
    let out = command::run_unchecked(
        Command::new("qemu-img")
            .args(["check", "--output=json", "-f", format])
            .arg(resolved),
    )
    .map_err(command_error)?;
    // 0: clean; 3: only leaked clusters (harmless for reading); 63: no check for format.
    match out.status.code() {
        Some(0) | Some(3) | Some(63) => {}
        Some(2) => {
            let n = serde_json::from_str::<CheckOut>(&out.stdout)
                .map(|c| c.corruptions)
                .unwrap_or(0);
            let last = out.stderr.lines().rev().find(|l| !l.trim().is_empty());
            return Err(damaged(match last {
                Some(l) => format!(
                    "qemu-img check found {n} corruptions, e.g. {}",
                    l.trim().trim_start_matches("ERROR: ")
                ),
                None => format!("qemu-img check found {n} corruptions"),
            }));
        }
        _ => {
            let last = out
                .stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no message")
                .trim()
                .trim_start_matches("qemu-img: ");
            return Err(damaged(format!("qemu-img check failed: {last}")));
        }
    }
    map_within_file(given, resolved, format, len, &damaged)
}

/// Stream `qemu-img map` and fail on the first data extent lying past the end of the
/// file. Streamed so that an image with many extents costs no memory.
fn map_within_file(
    given: &Path,
    resolved: &Path,
    format: &str,
    len: u64,
    damaged: &dyn Fn(String) -> MediaError,
) -> Result<(), MediaError> {
    let program = "qemu-img";
    let command_error = |source| MediaError::Command {
        path: given.to_path_buf(),
        source: Box::new(source),
    };
    let mut child = Command::new(program)
        .args(["map", "--output=json", "-f", format])
        .arg(resolved)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| {
            command_error(CommandError::Spawn {
                program: program.into(),
                source,
            })
        })?;
    let stderr = child.stderr.take();
    let stderr_thread = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut e) = stderr {
            let _ = e.read_to_string(&mut s);
        }
        s
    });
    let mut beyond: Option<MapEntry> = None;
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if snf_core::cancel::is_requested() {
                break;
            }
            let obj = line
                .trim()
                .trim_matches(|c| c == '[' || c == ']' || c == ',');
            let Ok(e) = serde_json::from_str::<MapEntry>(obj) else {
                continue;
            };
            if e.depth == 0 && e.data {
                if let Some(off) = e.offset {
                    if off.saturating_add(e.length) > len {
                        beyond = Some(e);
                        break;
                    }
                }
            }
        }
    }
    if beyond.is_some() {
        let _ = child.kill();
    }
    let status = command::wait(&mut child, program).map_err(command_error)?;
    let stderr = stderr_thread.join().unwrap_or_default();
    if let Some(e) = beyond {
        return Err(damaged(format!(
            "the data for bytes {}..{} lies beyond the end of the file ({len} bytes); the image looks truncated",
            e.start,
            e.start + e.length
        )));
    }
    if !status.success() {
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no message")
            .trim()
            .trim_start_matches("qemu-img: ")
            .to_string();
        return Err(damaged(format!("qemu-img map failed: {last}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_prefixes_are_stripped() {
        assert_eq!(
            strip_qemu_prefixes(
                "qemu-img: Could not open '/a b': Could not open '/a b': Invalid argument"
            ),
            "Invalid argument"
        );
        assert_eq!(strip_qemu_prefixes("qemu-img: Unknown"), "Unknown");
    }

    #[test]
    fn footer_checksum_and_type_are_checked() {
        let mut f = [0u8; 512];
        f[..8].copy_from_slice(b"conectix");
        f[60..64].copy_from_slice(&2u32.to_be_bytes());
        let sum: u32 = f.iter().map(|&b| b as u32).sum();
        f[64..68].copy_from_slice(&(!sum).to_be_bytes());
        assert!(is_fixed_vhd_footer(&f));
        let mut dynamic = f;
        dynamic[63] = 3;
        assert!(!is_fixed_vhd_footer(&dynamic), "dynamic disk type");
        let mut bad = f;
        bad[100] = 1;
        assert!(!is_fixed_vhd_footer(&bad), "checksum mismatch");
    }

    #[test]
    fn root_is_host_and_other_directories_are_refused() {
        let s = Source::examine("/").unwrap();
        assert_eq!(s.kind(), SourceKind::Host);
        assert!(s.is_host() && !s.is_raw());
        let d = tempfile::tempdir().unwrap();
        let err = Source::examine(d.path()).unwrap_err();
        assert!(matches!(err, MediaError::Directory { .. }), "{err}");
        assert!(err.to_string().contains(&d.path().display().to_string()));
    }
}
