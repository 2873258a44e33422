//! The files an image is made of: the image itself, the layers of its backing chain, the
//! extents of a VMDK and the external data file of a qcow2.
//!
//! The chain is walked here, one `qemu-img info` per layer (which opens neither the
//! backing file nor the data file), because every qemu-img command that does open them
//! follows a looping chain, or blocks on a FIFO, for ever. Each file is checked before
//! qemu-img opens it: a regular file that exists and can be read. Anything else (a FIFO,
//! a device, a `protocol:` name that would make qemu-img reach the network) is refused,
//! naming the file: an image is hostile input, and the files it names are the user's.
//!
//! VMDK extents are opened by `qemu-img info` itself, so they are read from the
//! descriptor (a text file; a sparse extent is read from itself, whatever the text it
//! embeds names) before it runs.
//!
//! A relative qcow2 data file name is resolved against the current directory, because
//! that is where qemu-img opens it (unlike backing files and extents, which are relative
//! to the image that names them).

use std::collections::HashSet;
use std::fs::File;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde::Deserialize;
use snf_core::command;

use super::{io_reason, reason, MediaError};

/// How many images a backing chain may hold (the image included). qemu-img has no bound
/// of its own; real chains are a few snapshots deep.
pub const MAX_CHAIN: usize = 16;

/// `qemu-img info` reads headers only.
pub const INFO_LIMIT: Duration = Duration::from_secs(60);

/// A VMDK descriptor larger than this is not one (qemu caps it the same way).
const MAX_DESCRIPTOR: u64 = 1 << 20;

/// One file of an image, identified by device and inode so that any spelling of its
/// path (symlinks, `..`, hard links) is recognised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRef {
    pub path: PathBuf,
    pub len: u64,
    pub dev: u64,
    pub ino: u64,
}

impl FileRef {
    fn of(path: PathBuf, meta: &std::fs::Metadata) -> FileRef {
        FileRef {
            path,
            len: meta.len(),
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }

    pub fn same(&self, other: &FileRef) -> bool {
        self.dev == other.dev && self.ino == other.ino
    }
}

/// One image of the chain and the files its data lives in.
#[derive(Debug, Clone)]
pub struct Layer {
    pub file: FileRef,
    pub format: String,
    pub virtual_size: u64,
    pub encrypted: bool,
    /// VMDK extents: the virtual byte range each covers and its file (`None` for a
    /// `ZERO` extent, which has no file).
    pub extents: Vec<(u64, u64, Option<FileRef>)>,
    pub data_file: Option<FileRef>,
}

impl Layer {
    /// The file holding the data qemu-img maps at virtual byte `start` of this layer.
    pub fn file_at(&self, start: u64) -> &FileRef {
        if let Some((_, _, Some(f))) = self
            .extents
            .iter()
            .find(|(s, e, _)| (*s..*e).contains(&start))
        {
            return f;
        }
        self.data_file.as_ref().unwrap_or(&self.file)
    }

    /// Whether some of its data lives in another file than its own.
    pub fn has_external_files(&self) -> bool {
        self.data_file.is_some()
            || self
                .extents
                .iter()
                .any(|(_, _, f)| f.as_ref().is_some_and(|f| !f.same(&self.file)))
    }

    /// Every file of this layer.
    pub fn files(&self) -> impl Iterator<Item = &FileRef> {
        std::iter::once(&self.file)
            .chain(self.extents.iter().filter_map(|(_, _, f)| f.as_ref()))
            .chain(self.data_file.iter())
    }
}

#[derive(Deserialize)]
struct Info {
    format: String,
    #[serde(rename = "virtual-size")]
    virtual_size: u64,
    #[serde(default)]
    encrypted: bool,
    #[serde(rename = "full-backing-filename")]
    full_backing_filename: Option<String>,
    #[serde(rename = "backing-filename")]
    backing_filename: Option<String>,
    #[serde(rename = "backing-filename-format")]
    backing_format: Option<String>,
    #[serde(rename = "format-specific")]
    specific: Option<Specific>,
}

#[derive(Deserialize)]
struct Specific {
    #[serde(default)]
    data: SpecificData,
}

#[derive(Deserialize, Default)]
struct SpecificData {
    #[serde(rename = "data-file")]
    data_file: Option<String>,
    #[serde(default)]
    extents: Vec<InfoExtent>,
}

#[derive(Deserialize)]
struct InfoExtent {
    #[serde(rename = "virtual-size")]
    virtual_size: u64,
    filename: Option<String>,
}

/// What refers to a file: for messages.
#[derive(Clone, Copy)]
enum Role {
    Backing,
    Extent,
    DataFile,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Backing => "backing file",
            Role::Extent => "extent",
            Role::DataFile => "data file",
        }
    }
}

/// Walk the chain from the image `top` (already checked by the caller: a regular,
/// readable file) and return its layers, top first. `top_format` forces the format of
/// the top image (a fixed VHD, which qemu-img would probe as raw).
pub fn walk(
    given: &Path,
    top: &Path,
    top_meta: &std::fs::Metadata,
    top_format: Option<&str>,
) -> Result<Vec<Layer>, MediaError> {
    let mut layers: Vec<Layer> = Vec::new();
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    let mut next = Some((
        FileRef::of(top.to_path_buf(), top_meta),
        top_format.map(str::to_string),
    ));
    while let Some((file, format)) = next.take() {
        if !seen.insert((file.dev, file.ino)) {
            return Err(MediaError::ChainLoops {
                path: given.to_path_buf(),
                at: file.path,
            });
        }
        if layers.len() == MAX_CHAIN {
            return Err(MediaError::ChainTooLong {
                path: given.to_path_buf(),
                max: MAX_CHAIN,
            });
        }
        let owner = owner_name(given, &layers);
        check_vmdk_extents(&owner, &file)?;
        let info = info(given, &owner, &layers, &file, format.as_deref())?;
        let mut layer = Layer {
            virtual_size: info.virtual_size,
            encrypted: info.encrypted,
            format: info.format,
            extents: Vec::new(),
            data_file: None,
            file,
        };
        if let Some(specific) = info.specific {
            if let Some(name) = specific.data.data_file {
                let path = resolve(&owner, Role::DataFile, &name, None)?;
                layer.data_file = Some(check_file(&owner, Role::DataFile, path)?);
            }
            if layer.format == "vmdk" {
                // Where qemu-img reads each extent from, as it parsed the descriptor
                // (which may differ from a plain reading of it: it skips `ZERO`
                // extents, and reads some odd layouts of lines twice). The names are
                // those it opened: relative to the current directory. Each was
                // checked above, before qemu-img opened it.
                let mut start = 0u64;
                for e in specific.data.extents {
                    let end = start.saturating_add(e.virtual_size);
                    let f = match e.filename {
                        Some(name) => {
                            let path = resolve(&owner, Role::Extent, &name, None)?;
                            Some(check_file(&owner, Role::Extent, path)?)
                        }
                        None => None,
                    };
                    layer.extents.push((start, end, f));
                    start = end;
                }
            }
        }
        if let Some(name) = info.full_backing_filename.or(info.backing_filename) {
            let path = resolve(&owner, Role::Backing, &name, layer.file.path.parent())?;
            let backing = check_file(&owner, Role::Backing, path)?;
            next = Some((backing, info.backing_format));
        }
        layers.push(layer);
    }
    Ok(layers)
}

/// The image that names the next file: the source as given, or the backing file.
fn owner_name(given: &Path, layers: &[Layer]) -> PathBuf {
    match layers.last() {
        Some(l) => l.file.path.clone(),
        None => given.to_path_buf(),
    }
}

fn info(
    given: &Path,
    owner: &Path,
    layers: &[Layer],
    file: &FileRef,
    format: Option<&str>,
) -> Result<Info, MediaError> {
    let mut cmd = Command::new("qemu-img");
    cmd.args(["info", "--output=json"]);
    if let Some(f) = format {
        cmd.args(["-f", f]);
    }
    cmd.arg(&file.path);
    let not_an_image = |reason: String| {
        if layers.is_empty() {
            MediaError::NotAnImage {
                path: given.to_path_buf(),
                reason,
            }
        } else {
            MediaError::Dependency {
                owner: owner.to_path_buf(),
                role: Role::Backing.name(),
                file: file.path.clone(),
                problem: format!("is not a usable disk image: {reason}"),
            }
        }
    };
    let out = command::run_with_limit(&mut cmd, INFO_LIMIT).map_err(|e| match reason(&e) {
        Some(reason) => not_an_image(reason),
        None => MediaError::Command {
            path: given.to_path_buf(),
            source: Box::new(e),
        },
    })?;
    serde_json::from_str(&out.stdout)
        .map_err(|e| not_an_image(format!("cannot parse the output of qemu-img info: {e}")))
}

/// The path qemu-img will open for `name`: relative to `base` (the naming image's
/// directory), or to the current directory when `base` is `None`. Protocol names
/// (`nbd://`, `json:{...}`) are refused: they are not files.
fn resolve(
    owner: &Path,
    role: Role,
    name: &str,
    base: Option<&Path>,
) -> Result<PathBuf, MediaError> {
    let first_slash = name.find('/').unwrap_or(name.len());
    if name.is_empty() || name[..first_slash].contains(':') {
        return Err(MediaError::Dependency {
            owner: owner.to_path_buf(),
            role: role.name(),
            file: PathBuf::from(name),
            problem: "is not a local file (only files can be read)".into(),
        });
    }
    let path = Path::new(name);
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    match base {
        Some(b) => Ok(b.join(path)),
        None => Ok(std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())),
    }
}

/// `path` must be a regular file that can be read.
fn check_file(owner: &Path, role: Role, path: PathBuf) -> Result<FileRef, MediaError> {
    let problem = |problem: String| MediaError::Dependency {
        owner: owner.to_path_buf(),
        role: role.name(),
        file: path.clone(),
        problem,
    };
    let meta = std::fs::metadata(&path).map_err(|e| problem(super::stat_problem(&path, &e)))?;
    let ft = meta.file_type();
    if !ft.is_file() {
        let what = if ft.is_dir() {
            "a directory"
        } else if ft.is_fifo() {
            "a FIFO"
        } else if ft.is_block_device() {
            "a block device"
        } else if ft.is_char_device() {
            "a character device"
        } else if ft.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        };
        return Err(problem(format!(
            "is {what}; only regular files are accepted"
        )));
    }
    let file =
        File::open(&path).map_err(|e| problem(format!("cannot be read: {}", io_reason(&e))))?;
    if let Some(fs) = pseudo_filesystem(&file) {
        return Err(problem(format!(
            "is on {fs}, a kernel pseudo-filesystem: the host's state, not an image"
        )));
    }
    Ok(FileRef::of(path, &meta))
}

/// The name of the kernel pseudo-filesystem `file` is on, if any. A hostile image that
/// names `/proc/self/environ` or a sysfs attribute as its backing file would otherwise
/// copy the host's state into the image (and the cloud).
fn pseudo_filesystem(file: &File) -> Option<&'static str> {
    const PSEUDO: [(i64, &str); 10] = [
        (0x9fa0, "procfs"),
        (0x6265_6572, "sysfs"),
        (0x6462_6720, "debugfs"),
        (0x7472_6163, "tracefs"),
        (0x7363_6673, "securityfs"),
        (0x6367_7270, "cgroup2"),
        (0x0027_e0eb, "cgroupfs"),
        (0x6265_6570, "configfs"),
        (0xde5e_81e4, "efivarfs"),
        (0x6165_676c, "pstore"),
    ];
    let kind = rustix::fs::fstatfs(file).ok()?.f_type as i64;
    PSEUDO
        .iter()
        .find(|(magic, _)| *magic == kind)
        .map(|(_, name)| *name)
}

/// Check every file a VMDK descriptor in `file` names, before qemu-img opens them (a
/// FIFO would block it, a device is not the user's image).
fn check_vmdk_extents(owner: &Path, file: &FileRef) -> Result<(), MediaError> {
    let Some(text) = vmdk_descriptor(&file.path, file.len) else {
        return Ok(());
    };
    let base = file.path.parent();
    for (kind, name) in descriptor_extents(&text) {
        if kind != "ZERO" {
            let path = resolve(owner, Role::Extent, &name, base)?;
            check_file(owner, Role::Extent, path)?;
        }
    }
    Ok(())
}

/// The descriptor text of a VMDK whose data lives in the files it names: a text
/// descriptor. The text a sparse extent embeds (`KDMV` header) is not one: qemu-img
/// reads such an image from the file itself whatever its embedded extent line says
/// (the name it was created under, or a hostile one), so it names no other file.
fn vmdk_descriptor(path: &Path, len: u64) -> Option<String> {
    let f = File::open(path).ok()?;
    let mut head = [0u8; 21];
    let n = f.read_at(&mut head, 0).ok()?;
    if !head[..n].starts_with(b"# Disk DescriptorFile") || len > MAX_DESCRIPTOR {
        return None;
    }
    let mut buf = vec![0u8; len as usize];
    let n = f.read_at(&mut buf, 0).ok()?;
    buf.truncate(n);
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Some(String::from_utf8_lossy(&buf[..end]).into_owned())
}

/// `RW 131072 SPARSE "name.vmdk" [offset]` lines: (type, file name).
fn descriptor_extents(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let mut words = line.split_whitespace();
        if !matches!(words.next(), Some("RW" | "RDONLY" | "NOACCESS")) {
            continue;
        }
        if words.next().and_then(|s| s.parse::<u64>().ok()).is_none() {
            continue;
        }
        let Some(kind) = words.next() else { continue };
        let name = match (line.find('"'), line.rfind('"')) {
            (Some(a), Some(b)) if b > a => line[a + 1..b].to_string(),
            _ => String::new(),
        };
        if kind != "ZERO" && name.is_empty() {
            continue;
        }
        out.push((kind.to_string(), name));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_extent_lines() {
        let text = "# Disk DescriptorFile\nversion=1\n\n# Extent description\n\
                    RW 131072 SPARSE \"a b-s001.vmdk\"\nRDONLY 64 FLAT \"/abs/f.raw\" 8\n\
                    RW 10 ZERO\nnot an extent\nRW x SPARSE \"bad\"\n";
        assert_eq!(
            descriptor_extents(text),
            vec![
                ("SPARSE".into(), "a b-s001.vmdk".into()),
                ("FLAT".into(), "/abs/f.raw".into()),
                ("ZERO".into(), String::new()),
            ]
        );
    }

    #[test]
    fn protocols_are_not_files() {
        let owner = Path::new("/img");
        for name in ["nbd://host/x", "json:{\"driver\":\"file\"}", "ssh:h:/x", ""] {
            assert!(
                resolve(owner, Role::Backing, name, Some(Path::new("/d"))).is_err(),
                "{name}"
            );
        }
        assert_eq!(
            resolve(owner, Role::Backing, "sub/a:b", Some(Path::new("/d"))).unwrap(),
            Path::new("/d/sub/a:b")
        );
        assert_eq!(
            resolve(owner, Role::Extent, "/x/y", Some(Path::new("/d"))).unwrap(),
            Path::new("/x/y")
        );
    }
}
