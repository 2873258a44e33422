//! Examining the source media: what it is, its format and its size.
//!
//! * A regular file is a disk image in any format `qemu-img` reads (raw, qcow2, vmdk,
//!   vpc, vdi, vhdx, ...). The format is probed with `qemu-img info`, except that a
//!   *fixed* VHD is recognised here by its `conectix` footer in the last 512 bytes
//!   (qemu-img probes it as raw). An image may be made of several files (a backing
//!   chain, VMDK extents, a qcow2 data file): [`chain`] finds and checks them before
//!   qemu-img opens them. Non-raw images are checked for damage ([`integrity`]),
//!   because qemu-img otherwise converts a truncated image silently, reading zeros.
//! * A virtual size above [`MAX_SIZE`] is refused before any work: a sparse copy of it
//!   would not fit in any filesystem the work directory can be on (ext4 files stop at
//!   16 TiB, XFS and btrfs go further, but no guest of that size is an image to upload).
//! * A block device is raw; its size comes from seeking to its end and its logical
//!   sector size from sysfs.
//! * The directory `/` means the running host (bundling it is the caller's business);
//!   other directories and other file types are refused.
//!
//! Every later `qemu-img` call must pass `-f` [`Source::format`] explicitly.

mod chain;
mod integrity;

use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use snf_core::bytes;
use snf_core::command::CommandError;

pub use chain::{INFO_LIMIT, MAX_CHAIN};
pub use integrity::metadata_limit;

/// The largest virtual size accepted: 64 TiB.
pub const MAX_SIZE: u64 = 64 << 40;

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
    /// `stat` failed: missing, a dangling or looping symlink, no permission on a parent
    /// directory ...
    #[error("{} {}", .path.display(), stat_problem(.path, .source))]
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
    /// A file the image depends on (backing file, VMDK extent, qcow2 data file) is
    /// missing, of the wrong type, unreadable or too short.
    #[error("{}, the {role} of {}, {problem}", .file.display(), .owner.display())]
    Dependency {
        owner: PathBuf,
        role: &'static str,
        file: PathBuf,
        problem: String,
    },
    /// The backing chain comes back to a file already in it.
    #[error("the backing chain of {} loops at {}", .path.display(), .at.display())]
    ChainLoops { path: PathBuf, at: PathBuf },
    /// The backing chain is deeper than [`MAX_CHAIN`].
    #[error("the backing chain of {} is longer than {max} images", .path.display())]
    ChainTooLong { path: PathBuf, max: usize },
    /// A virtual size above [`MAX_SIZE`].
    #[error("{} claims a virtual size of {size} bytes, more than the 64 TiB supported", .path.display())]
    TooLarge { path: PathBuf, size: u64 },
    /// qemu-img could not be run at all, was interrupted or ran past its time limit.
    #[error("cannot examine {}: {source}", .path.display())]
    Command {
        path: PathBuf,
        #[source]
        source: Box<CommandError>,
    },
}

impl MediaError {
    /// Whether the source given is not something an image can be made of (a directory
    /// other than `/`, a FIFO, a socket, a character device): a bad command line, like
    /// a source that does not exist.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            MediaError::Directory { .. } | MediaError::InvalidType { .. }
        )
    }

    /// Whether the examination stopped because the user cancelled.
    pub fn is_cancelled(&self) -> bool {
        matches!(
            self,
            MediaError::Command { source, .. } if matches!(**source, CommandError::Cancelled { .. })
        )
    }
}

/// What is wrong with `path`, given the error `stat` or `open` gave: which of missing,
/// dangling symlink or symlink loop it is (a bare "No such file" does not say).
pub fn stat_problem(path: &Path, err: &io::Error) -> String {
    if err.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
        return "is a symbolic link that loops".into();
    }
    match err.kind() {
        io::ErrorKind::NotFound => match std::fs::read_link(path) {
            Ok(target) => format!(
                "is a dangling symbolic link (to {}, which does not exist)",
                target.display()
            ),
            Err(_) => "does not exist".into(),
        },
        io::ErrorKind::PermissionDenied => {
            "cannot be reached: permission denied on a directory leading to it".into()
        }
        _ => format!("cannot be examined: {}", io_reason(err)),
    }
}

/// An I/O error's text without Rust's ` (os error N)` suffix, for one-line messages.
pub fn io_reason(err: &io::Error) -> String {
    let s = err.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// A file a source is made of, by identity.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SourceFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
    /// The device a block device source is, whatever node names it.
    rdev: Option<u64>,
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
    files: Vec<SourceFile>,
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
                    files: Vec::new(),
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

    /// Every file the source is made of: the image, its backing files, VMDK extents and
    /// qcow2 data file (the device for a block device; nothing for the host).
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(|f| f.path.as_path())
    }

    /// The file of the source that `path` is, under whatever name (symlinks, `..`, hard
    /// links, another node of the same block device); `None` when it is none of them
    /// or does not exist.
    pub fn file_named_by(&self, path: &Path) -> Option<&Path> {
        let meta = std::fs::metadata(path).ok()?;
        self.files
            .iter()
            .find(|f| {
                (f.dev == meta.dev() && f.ino == meta.ino())
                    || (f.rdev.is_some()
                        && meta.file_type().is_block_device()
                        && f.rdev == Some(meta.rdev()))
            })
            .map(|f| f.path.as_path())
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
    let resolved_copy = resolved.clone();
    Ok(Source {
        given: given.to_path_buf(),
        path: resolved,
        kind: SourceKind::BlockDevice,
        format: "raw".into(),
        size,
        sector_size,
        allocated: size,
        files: vec![SourceFile {
            path: resolved_copy,
            dev: meta.dev(),
            ino: meta.ino(),
            rdev: Some(meta.rdev()),
        }],
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
    let disk_type = bytes::be32(footer, 60);
    let stored = bytes::be32(footer, 64);
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
    let layers = chain::walk(given, &resolved, meta, fixed_vhd.then_some("vpc"))?;
    let top = &layers[0];
    if top.encrypted || top.format == "luks" {
        return Err(MediaError::NotAnImage {
            path: path_buf(),
            reason: format!("encrypted {} images are not supported", top.format),
        });
    }
    if top.virtual_size == 0 {
        return Err(MediaError::NotAnImage {
            path: path_buf(),
            reason: format!("the {} image has a virtual size of 0 bytes", top.format),
        });
    }
    if top.virtual_size > MAX_SIZE {
        return Err(MediaError::TooLarge {
            path: path_buf(),
            size: top.virtual_size,
        });
    }
    if top.format == "raw" && !len.is_multiple_of(512) {
        return Err(MediaError::NotAnImage {
            path: path_buf(),
            reason: format!(
                "not a known image format, and its size ({len} bytes) is not a multiple of 512 as a raw disk's would be"
            ),
        });
    }
    integrity::check(given, &layers)?;
    let files = layers
        .iter()
        .flat_map(|l| l.files())
        .map(|f| SourceFile {
            path: f.path.clone(),
            dev: f.dev,
            ino: f.ino,
            rdev: None,
        })
        .collect();
    let top = &layers[0];
    Ok(Source {
        given: given.to_path_buf(),
        path: resolved,
        kind: SourceKind::ImageFile,
        format: top.format.clone(),
        size: top.virtual_size,
        sector_size: 512,
        allocated: (meta.blocks() * 512).min(len.max(top.virtual_size)),
        files,
    })
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
