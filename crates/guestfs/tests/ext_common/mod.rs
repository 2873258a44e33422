//! Shared fixtures of the ext backend tests: real filesystems made by mke2fs from a
//! source directory, e2fsck/dumpe2fs checks, and tree snapshots to compare a host
//! directory with what the backend reads.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use snf_guestfs::{ExtFs, FileType, Filesystem, NodeId};
use snf_testkit::fixture::{assert_e2fsck_clean, Mke2fs};

/// One mke2fs configuration under test.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    pub name: &'static str,
    pub args: &'static [&'static str],
}

pub const EXT2: Config = Config {
    name: "ext2-1k",
    args: &["-t", "ext2", "-b", "1024"],
};
pub const EXT3: Config = Config {
    name: "ext3",
    args: &["-t", "ext3"],
};
pub const EXT4: Config = Config {
    name: "ext4",
    args: &["-t", "ext4"],
};
/// Everything modern guests use at once, with small blocks.
pub const EXT4_FULL: Config = Config {
    name: "ext4-csum-64bit-inline-1k",
    args: &[
        "-t",
        "ext4",
        "-b",
        "1024",
        "-O",
        "metadata_csum,64bit,inline_data,flex_bg,dir_index",
    ],
};

pub const ALL: &[Config] = &[EXT2, EXT3, EXT4, EXT4_FULL];

pub use snf_testkit::fixture::{require, run};

/// An image file holding one filesystem at `offset`.
pub struct Image {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    pub offset: u64,
}

impl Image {
    /// `img?offset=N`, the form e2fsprogs tools take.
    pub fn spec(&self) -> OsString {
        ext2fs::e2fsprogs_spec(&self.path, self.offset)
    }

    pub fn open(&self, writable: bool) -> ExtFs {
        ExtFs::open(&self.path, self.offset, writable)
            .unwrap_or_else(|e| panic!("open {}: {e}", self.path.display()))
    }

    /// Assert `e2fsck -fn` finds nothing to fix.
    pub fn assert_clean(&self, when: &str) {
        assert_e2fsck_clean(&self.path, self.offset, &format!("after {when}"));
    }

    /// (free blocks, free inodes) as dumpe2fs reads them from the superblock.
    pub fn free_counts(&self) -> (u64, u64) {
        require("dumpe2fs");
        let out = run(Command::new("dumpe2fs").arg("-h").arg(self.spec()));
        let field = |name: &str| -> u64 {
            out.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(|| panic!("no {name:?} in dumpe2fs output:\n{out}"))
        };
        (field("Free blocks:"), field("Free inodes:"))
    }
}

/// Make a filesystem of `size` (mke2fs syntax) from `src` at byte `offset` of a new
/// image file, with bytes before the offset set to a marker.
pub fn mkfs(src: &Path, cfg: Config, size: &str, offset: u64) -> Image {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("disk.img");
    if offset > 0 {
        std::fs::write(&path, vec![0x5a; offset as usize]).expect("write marker");
    }
    Mke2fs::with_args(cfg.args)
        .label("guestroot")
        .tree(src)
        .make(&path, offset, size);
    Image { dir, path, offset }
}

/// What the comparison looks at for one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Dir,
    /// Whole content of files up to 16 MiB.
    File(Vec<u8>),
    /// Size and the first and last 64 KiB of bigger files.
    Big {
        size: u64,
        head: Vec<u8>,
        tail: Vec<u8>,
    },
    Symlink(Vec<u8>),
    Fifo,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub content: Content,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    /// `user.*` attributes (the ones tests set; the host may add `security.*`).
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

const WHOLE: u64 = 16 << 20;
const SAMPLE: u64 = 64 << 10;

/// Snapshot of a host directory (paths relative to it, `lost+found` skipped).
pub fn host_tree(root: &Path) -> BTreeMap<PathBuf, Node> {
    let mut out = BTreeMap::new();
    host_walk(root, Path::new(""), &mut out);
    out
}

fn host_xattrs(path: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut names = vec![0u8; 65536];
    let n = rustix::fs::llistxattr(path, &mut names).unwrap_or(0);
    let mut out = BTreeMap::new();
    for name in names[..n]
        .split(|&b| b == 0)
        .filter(|n| n.starts_with(b"user."))
    {
        let mut value = vec![0u8; 65536];
        let cname = std::ffi::CString::new(name).unwrap();
        if let Ok(len) = rustix::fs::lgetxattr(path, cname.as_c_str(), &mut value) {
            value.truncate(len);
            out.insert(name.to_vec(), value);
        }
    }
    out
}

fn read_sampled(size: u64, mut read: impl FnMut(u64, &mut [u8]) -> usize) -> Content {
    let mut get = |off: u64, len: u64| {
        let mut buf = vec![0u8; len as usize];
        let mut done = 0;
        while done < buf.len() {
            let n = read(off + done as u64, &mut buf[done..]);
            if n == 0 {
                break;
            }
            done += n;
        }
        buf.truncate(done);
        buf
    };
    if size <= WHOLE {
        Content::File(get(0, size))
    } else {
        Content::Big {
            size,
            head: get(0, SAMPLE),
            tail: get(size - SAMPLE, SAMPLE),
        }
    }
}

fn host_walk(root: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, Node>) {
    let mut names: Vec<_> = std::fs::read_dir(root.join(rel))
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    names.sort();
    for name in names {
        let rel = rel.join(&name);
        if rel == Path::new("lost+found") {
            continue;
        }
        let path = root.join(&rel);
        let md = std::fs::symlink_metadata(&path).expect("lstat");
        let ft = md.file_type();
        let content = if ft.is_dir() {
            Content::Dir
        } else if ft.is_symlink() {
            Content::Symlink(
                std::fs::read_link(&path)
                    .expect("readlink")
                    .as_os_str()
                    .as_bytes()
                    .to_vec(),
            )
        } else if ft.is_file() {
            use std::os::unix::fs::FileExt;
            let f = std::fs::File::open(&path).expect("open");
            read_sampled(md.len(), |off, buf| f.read_at(buf, off).expect("read"))
        } else if std::os::unix::fs::FileTypeExt::is_fifo(&ft) {
            Content::Fifo
        } else {
            Content::Other
        };
        out.insert(
            rel.clone(),
            Node {
                content,
                mode: md.permissions().mode() & 0o7777,
                uid: md.uid(),
                gid: md.gid(),
                mtime: md.mtime(),
                xattrs: if ft.is_symlink() {
                    BTreeMap::new()
                } else {
                    host_xattrs(&path)
                },
            },
        );
        if ft.is_dir() {
            host_walk(root, &rel, out);
        }
    }
}

/// Snapshot of a backend's tree, read only through the `Filesystem` trait.
pub fn fs_tree(fs: &mut dyn Filesystem) -> BTreeMap<PathBuf, Node> {
    let mut out = BTreeMap::new();
    let root = fs.root();
    fs_walk(fs, root, Path::new(""), &mut out);
    out
}

fn fs_walk(fs: &mut dyn Filesystem, dir: NodeId, rel: &Path, out: &mut BTreeMap<PathBuf, Node>) {
    let mut entries = fs.read_dir(dir).expect("read_dir");
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    for e in entries {
        let rel = rel.join(&e.name);
        if rel == Path::new("lost+found") {
            continue;
        }
        let md = fs.metadata(e.node).expect("metadata");
        assert_eq!(md.file_type, e.file_type, "{}: entry type", rel.display());
        let content = match md.file_type {
            FileType::Directory => Content::Dir,
            FileType::Symlink => {
                Content::Symlink(fs.read_link(e.node).expect("read_link").as_bytes().to_vec())
            }
            FileType::Regular => read_sampled(md.size, |off, buf| {
                fs.read_at(e.node, off, buf).expect("read_at")
            }),
            FileType::Fifo => Content::Fifo,
            _ => Content::Other,
        };
        let xattrs = fs
            .xattrs(e.node)
            .expect("xattrs")
            .into_iter()
            .filter(|(n, _)| n.as_bytes().starts_with(b"user."))
            .map(|(n, v)| (n.as_bytes().to_vec(), v))
            .collect();
        out.insert(
            rel.clone(),
            Node {
                content,
                mode: md.mode,
                uid: md.uid,
                gid: md.gid,
                mtime: md.mtime,
                xattrs,
            },
        );
        if md.file_type == FileType::Directory {
            fs_walk(fs, e.node, &rel, out);
        }
    }
}

/// Compare two snapshots and panic naming the first differences.
pub fn assert_same_tree(
    expected: &BTreeMap<PathBuf, Node>,
    actual: &BTreeMap<PathBuf, Node>,
    what: &str,
    compare_mtime: bool,
) {
    let mut problems = Vec::new();
    for (path, want) in expected {
        match actual.get(path) {
            None => problems.push(format!("{}: missing", path.display())),
            Some(got) => {
                let mut got = got.clone();
                if !compare_mtime {
                    got.mtime = want.mtime;
                }
                if &got != want {
                    problems.push(format!("{}: {}", path.display(), describe(want, &got)));
                }
            }
        }
    }
    for path in actual.keys() {
        if !expected.contains_key(path) {
            problems.push(format!("{}: unexpected", path.display()));
        }
    }
    assert!(
        problems.is_empty(),
        "{what}: {} differences, first ones:\n{}",
        problems.len(),
        problems
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Which fields of two nodes differ, in a few words.
fn describe(want: &Node, got: &Node) -> String {
    let mut d = Vec::new();
    if want.content != got.content {
        let summary = |c: &Content| match c {
            Content::File(v) => format!("file of {} bytes", v.len()),
            Content::Big { size, .. } => format!("big file of {size} bytes"),
            other => format!("{other:?}"),
        };
        let (a, b) = (summary(&want.content), summary(&got.content));
        if a == b {
            d.push(format!("content differs ({a})"));
        } else {
            d.push(format!("content: expected {a}, got {b}"));
        }
    }
    if want.mode != got.mode {
        d.push(format!(
            "mode: expected {:o}, got {:o}",
            want.mode, got.mode
        ));
    }
    if (want.uid, want.gid) != (got.uid, got.gid) {
        d.push(format!(
            "owner: expected {}:{}, got {}:{}",
            want.uid, want.gid, got.uid, got.gid
        ));
    }
    if want.mtime != got.mtime {
        d.push(format!("mtime: expected {}, got {}", want.mtime, got.mtime));
    }
    if want.xattrs != got.xattrs {
        d.push(format!(
            "xattrs: expected {:?}, got {:?}",
            want.xattrs, got.xattrs
        ));
    }
    d.join("; ")
}
