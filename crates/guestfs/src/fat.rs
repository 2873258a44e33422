//! FAT12/16/32 (the EFI system partition, old `/boot`s) through the `fatfs` crate.
//!
//! FAT has no inodes, owners or permissions. Node ids are handed out per path and
//! remembered, and every object looks the way Linux shows a vfat mount with default
//! options: owned by root, directories 0755, files 0644 (0555/0444 when the read-only
//! attribute is set). Names are matched case-insensitively, as FAT does.
//!
//! `fatfs` trusts what it reads: it follows a cluster chain that loops forever (a
//! directory listing never ends, freeing a file never returns) and panics on some
//! corrupt values. So the boot sector's geometry and the whole FAT are checked here
//! before `fatfs` sees the filesystem (every chain ends, every link points into the
//! data area), and every call into `fatfs` runs under `catch_unwind`: a panic becomes
//! an error and the filesystem is not touched again.

use std::cell::Cell;
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use fatfs::{Date, DateTime, FileSystem, FsOptions, Time, TimeProvider};
use snf_core::bytes;

use crate::backend::{Filesystem, FsKind};
use crate::error::{Error, Result};
use crate::node::{readable_len, DirEntry, FileType, Metadata, NewNode, NodeId, SetAttr};

/// A byte range of the image file, seen as a whole device by `fatfs`.
struct PartitionSlice {
    file: File,
    start: u64,
    len: u64,
    pos: u64,
    writable: bool,
}

impl Read for PartitionSlice {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.len.saturating_sub(self.pos);
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        if n == 0 {
            return Ok(0);
        }
        let got = self.file.read_at(&mut buf[..n], self.start + self.pos)?;
        self.pos += got as u64;
        Ok(got)
    }
}

impl Write for PartitionSlice {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.writable {
            return Err(io::Error::new(
                io::ErrorKind::ReadOnlyFilesystem,
                "the FAT filesystem was opened read-only",
            ));
        }
        let left = self.len.saturating_sub(self.pos);
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        if n == 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "write past the end of the partition",
            ));
        }
        let put = self.file.write_at(&buf[..n], self.start + self.pos)?;
        self.pos += put as u64;
        Ok(put)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for PartitionSlice {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let new = match pos {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match new {
            Some(p) => {
                self.pos = p;
                Ok(p)
            }
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the partition",
            )),
        }
    }
}

/// Gives `fatfs` the current time (UTC) for the times of written entries.
#[derive(Debug)]
struct Clock;

static CLOCK: Clock = Clock;

impl TimeProvider for Clock {
    fn get_current_date(&self) -> Date {
        self.get_current_date_time().date
    }

    fn get_current_date_time(&self) -> DateTime {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        dos_from_epoch(secs)
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// DOS times count from 1980 to 2107; times outside are clamped to the range.
fn dos_from_epoch(secs: i64) -> DateTime {
    const MIN: i64 = 315_532_800; // 1980-01-01
    const MAX: i64 = 4_354_819_199; // 2107-12-31 23:59:59
    let secs = secs.clamp(MIN, MAX);
    let (y, m, d) = civil_from_days(secs.div_euclid(86400));
    let rem = secs.rem_euclid(86400);
    DateTime {
        date: Date {
            year: y as u16,
            month: m as u16,
            day: d as u16,
        },
        time: Time {
            hour: (rem / 3600) as u16,
            min: (rem / 60 % 60) as u16,
            sec: (rem % 60) as u16,
            millis: 0,
        },
    }
}

fn epoch_from_dos(dt: DateTime) -> i64 {
    let days = days_from_civil(
        i64::from(dt.date.year),
        i64::from(dt.date.month.clamp(1, 12)),
        i64::from(dt.date.day.clamp(1, 31)),
    );
    days * 86400
        + i64::from(dt.time.hour) * 3600
        + i64::from(dt.time.min) * 60
        + i64::from(dt.time.sec)
}

fn map_io(e: io::Error) -> Error {
    match e.kind() {
        io::ErrorKind::NotFound => Error::NotFound(PathBuf::new()),
        io::ErrorKind::AlreadyExists => Error::AlreadyExists(PathBuf::new()),
        io::ErrorKind::ReadOnlyFilesystem => Error::ReadOnly(PathBuf::new()),
        io::ErrorKind::StorageFull | io::ErrorKind::UnexpectedEof => Error::NoSpace(PathBuf::new()),
        _ if e.to_string().contains("not empty") => Error::NotEmpty(PathBuf::new()),
        _ => Error::backend(format!("FAT: {e}")),
    }
}

/// What one FAT directory entry says about an object.
struct EntryInfo {
    name: String,
    is_dir: bool,
    read_only: bool,
    size: u64,
    mtime: i64,
    atime: i64,
    ctime: i64,
}

type Fat = FileSystem<PartitionSlice>;

/// A FAT filesystem inside an image file.
pub struct FatFs {
    image: PathBuf,
    offset: u64,
    size: u64,
    writable: bool,
    cluster: u64,
    /// Path (components joined by `/`, root = "") of every node handed out; index = id - 1.
    paths: Vec<Option<String>>,
    ids: HashMap<String, NodeId>,
    /// Set when `fatfs` panicked: its view of the filesystem cannot be trusted, and a
    /// half-done write must not be continued.
    broken: Cell<bool>,
}

/// The largest FAT checked (and so opened): 16 Mi clusters of FAT32, a filesystem of
/// 64 GiB with 4 KiB clusters, far beyond any EFI system partition or `/boot`.
const MAX_FAT_BYTES: u64 = 64 << 20;

/// The layout a FAT boot sector describes, checked against the partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Geometry {
    bits: u32,
    /// Byte offset of the first FAT inside the partition, and its length.
    fat_start: u64,
    fat_bytes: u64,
    /// Data clusters: valid cluster numbers are 2 ..= clusters + 1.
    clusters: u32,
}

fn corrupt(offset: u64, msg: impl Into<String>) -> Error {
    Error::Corrupt {
        path: PathBuf::from(format!("the FAT filesystem at byte {offset}")),
        msg: msg.into(),
    }
}

/// A boot sector field, widened for the layout arithmetic.
fn le16(b: &[u8], at: usize) -> u64 {
    u64::from(bytes::le16(b, at))
}

fn le32(b: &[u8], at: usize) -> u64 {
    u64::from(bytes::le32(b, at))
}

/// Check the boot sector `bs` of a FAT filesystem of `size` bytes, the way the FAT
/// specification computes the layout (and `fatfs` after it).
fn geometry(bs: &[u8; 512], size: u64) -> std::result::Result<Geometry, String> {
    if bs[510] != 0x55 || bs[511] != 0xAA {
        return Err("no boot sector signature".into());
    }
    let bps = le16(bs, 11);
    let spc = u64::from(bs[13]);
    let reserved = le16(bs, 14);
    let fats = u64::from(bs[16]);
    let root_entries = le16(bs, 17);
    let total = match le16(bs, 19) {
        0 => le32(bs, 32),
        n => n,
    };
    let spf = match le16(bs, 22) {
        0 => le32(bs, 36),
        n => n,
    };
    if !matches!(bps, 512 | 1024 | 2048 | 4096) {
        return Err(format!("{bps} bytes per sector"));
    }
    if !spc.is_power_of_two() || spc > 128 {
        return Err(format!("{spc} sectors per cluster"));
    }
    if reserved == 0 || fats == 0 || spf == 0 {
        return Err("no reserved sectors, no FAT or an empty FAT".into());
    }
    if total * bps > size {
        return Err(format!(
            "{} bytes long, larger than its partition of {size} bytes",
            total * bps
        ));
    }
    let root_sectors = (root_entries * 32).div_ceil(bps);
    let data_start = reserved + fats * spf + root_sectors;
    if data_start >= total {
        return Err("no room for data after the FATs".into());
    }
    let clusters = (total - data_start) / spc;
    let bits = match clusters {
        0 => return Err("no data clusters".into()),
        1..4085 => 12,
        4085..65525 => 16,
        _ => 32,
    };
    if (bits == 32) != (root_entries == 0) {
        return Err(format!(
            "FAT{bits} with {root_entries} root directory entries"
        ));
    }
    if bits == 32 {
        let root = le32(bs, 44);
        if !(2..clusters + 2).contains(&root) {
            return Err(format!("root directory at cluster {root}"));
        }
    }
    let fat_bytes = spf * bps;
    if (clusters + 2) * u64::from(bits) / 8 > fat_bytes {
        return Err(format!(
            "a FAT of {fat_bytes} bytes for {clusters} clusters"
        ));
    }
    Ok(Geometry {
        bits,
        fat_start: reserved * bps,
        fat_bytes,
        clusters: u32::try_from(clusters).map_err(|_| format!("{clusters} clusters"))?,
    })
}

/// Check that every cluster chain of `fat` ends: no chain loops and no link leaves the
/// data area. Linear in the number of clusters: each cluster is followed once.
fn check_chains(fat: &[u8], g: Geometry) -> std::result::Result<(), String> {
    let last = g.clusters + 1;
    let next = |c: u32| -> u32 {
        let c = c as usize;
        match g.bits {
            12 => {
                let v = u16::from_le_bytes([fat[c + c / 2], fat[c + c / 2 + 1]]);
                u32::from(if c % 2 == 1 { v >> 4 } else { v & 0xFFF })
            }
            16 => u32::from(u16::from_le_bytes([fat[2 * c], fat[2 * c + 1]])),
            _ => {
                u32::from_le_bytes([fat[4 * c], fat[4 * c + 1], fat[4 * c + 2], fat[4 * c + 3]])
                    & 0x0FFF_FFFF
            }
        }
    };
    // Values at or above this one are bad-cluster or end-of-chain marks.
    let marks = match g.bits {
        12 => 0xFF7,
        16 => 0xFFF7,
        _ => 0x0FFF_FFF7,
    };
    // 0: not seen; w: on walk number w; a walk meeting its own mark has looped.
    let mut seen = vec![0u32; last as usize + 1];
    let mut walk = 0u32;
    for start in 2..=last {
        if seen[start as usize] != 0 {
            continue;
        }
        walk += 1;
        let mut c = start;
        loop {
            match seen[c as usize] {
                0 => seen[c as usize] = walk,
                w if w == walk => {
                    return Err(format!("the cluster chain through cluster {c} loops"))
                }
                _ => break, // joins a chain already known to end
            }
            let n = next(c);
            if n == 0 || n >= marks {
                break;
            }
            if !(2..=last).contains(&n) {
                return Err(format!(
                    "cluster {c} links to cluster {n}, outside the filesystem"
                ));
            }
            c = n;
        }
    }
    Ok(())
}

/// Check the FAT filesystem of `size` bytes at `offset` of `file` before `fatfs` reads it.
fn check_fat(file: &File, offset: u64, size: u64) -> Result<()> {
    let mut bs = [0u8; 512];
    file.read_exact_at(&mut bs, offset)
        .map_err(|_| corrupt(offset, "no boot sector: the partition is too small"))?;
    let g = geometry(&bs, size).map_err(|m| corrupt(offset, format!("boot sector: {m}")))?;
    if g.fat_bytes > MAX_FAT_BYTES {
        return Err(corrupt(
            offset,
            format!(
                "a FAT of {} bytes is larger than this tool handles",
                g.fat_bytes
            ),
        ));
    }
    let mut fat = vec![0u8; g.fat_bytes as usize];
    file.read_exact_at(&mut fat, offset + g.fat_start)
        .map_err(|e| corrupt(offset, format!("cannot read the FAT: {e}")))?;
    check_chains(&fat, g).map_err(|m| corrupt(offset, m))
}

fn open_fat(image: &Path, offset: u64, size: u64, writable: bool) -> Result<Fat> {
    let file = OpenOptions::new()
        .read(true)
        .write(writable)
        .open(image)
        .map_err(|e| Error::io(e).at(image))?;
    let slice = PartitionSlice {
        file,
        start: offset,
        len: size,
        pos: 0,
        writable,
    };
    let options = FsOptions::new()
        .update_accessed_date(false)
        .time_provider(&CLOCK);
    match catch_unwind(AssertUnwindSafe(|| FileSystem::new(slice, options))) {
        Ok(Ok(fs)) => Ok(fs),
        Ok(Err(e)) => Err(corrupt(offset, format!("not usable: {e}"))),
        Err(_) => Err(corrupt(offset, "not usable: the FAT library failed on it")),
    }
}

fn name_str(name: &OsStr) -> Result<&str> {
    let s = name
        .to_str()
        .ok_or_else(|| Error::InvalidPath(PathBuf::from(name)))?;
    if s.is_empty() || s == "." || s == ".." || s.contains('/') || s.contains('\0') {
        return Err(Error::InvalidPath(PathBuf::from(name)));
    }
    Ok(s)
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

fn split(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("", path),
    }
}

impl FatFs {
    /// Open the FAT filesystem in the `size` bytes at byte `offset` of image file
    /// `image`; writes are refused unless `writable`.
    pub fn open(image: &Path, offset: u64, size: u64, writable: bool) -> Result<FatFs> {
        // Once: later changes are made by `fatfs`, which keeps every chain ending.
        let file = File::open(image).map_err(|e| Error::io(e).at(image))?;
        check_fat(&file, offset, size)?;
        drop(file);
        let fs = open_fat(image, offset, size, writable)?;
        let cluster = u64::from(fs.cluster_size()).max(1);
        drop(fs);
        let mut ids = HashMap::new();
        ids.insert(String::new(), 1);
        Ok(FatFs {
            image: image.to_path_buf(),
            offset,
            size,
            writable,
            cluster,
            paths: vec![Some(String::new())],
            ids,
            broken: Cell::new(false),
        })
    }

    /// Run `f` on the filesystem, mounted for this call only. `fatfs` keeps no state
    /// between calls that matters (its handle is not `Send`, so it cannot be kept in a
    /// backend anyway), and unmounting after each call writes FSInfo and clears the
    /// dirty flag, so the filesystem is consistent between any two calls.
    ///
    /// A panic inside `fatfs` becomes an error, and every later call fails at once.
    fn with_fs<R>(&self, f: impl FnOnce(&Fat) -> Result<R>) -> Result<R> {
        if self.broken.get() {
            return Err(Error::corrupt(
                "the FAT library failed on this filesystem before",
            ));
        }
        let fs = open_fat(&self.image, self.offset, self.size, self.writable)?;
        let run = || {
            let r = f(&fs)?;
            if self.writable {
                fs.unmount().map_err(map_io)?;
            }
            Ok(r)
        };
        match catch_unwind(AssertUnwindSafe(run)) {
            Ok(r) => r,
            Err(_) => {
                self.broken.set(true);
                Err(Error::corrupt("the FAT library failed on this filesystem"))
            }
        }
    }

    fn path_of(&self, node: NodeId) -> Result<String> {
        usize::try_from(node)
            .ok()
            .and_then(|i| i.checked_sub(1))
            .and_then(|i| self.paths.get(i))
            .and_then(|p| p.clone())
            .ok_or_else(|| Error::NotFound(PathBuf::new()))
    }

    fn id_for(&mut self, path: String) -> NodeId {
        if let Some(&id) = self.ids.get(&path) {
            return id;
        }
        self.paths.push(Some(path.clone()));
        let id = self.paths.len() as NodeId;
        self.ids.insert(path, id);
        id
    }

    fn forget(&mut self, path: &str) {
        let prefix = format!("{path}/");
        let gone: Vec<String> = self
            .ids
            .keys()
            .filter(|p| *p == path || p.starts_with(&prefix))
            .cloned()
            .collect();
        for p in gone {
            if let Some(id) = self.ids.remove(&p) {
                self.paths[(id - 1) as usize] = None;
            }
        }
    }

    fn check_writable(&self) -> Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(Error::ReadOnly(PathBuf::new()))
        }
    }

    /// The entries of directory `path`, without `.` and `..`.
    fn entries(&self, path: &str) -> Result<Vec<EntryInfo>> {
        self.with_fs(|fs| {
            let root = fs.root_dir();
            let dir = if path.is_empty() {
                root
            } else {
                root.open_dir(path).map_err(map_io)?
            };
            let mut out = Vec::new();
            for e in dir.iter() {
                snf_core::cancel::check()?;
                let e = e.map_err(map_io)?;
                let name = e.file_name();
                if name == "." || name == ".." {
                    continue;
                }
                let accessed = e.accessed();
                out.push(EntryInfo {
                    name,
                    is_dir: e.is_dir(),
                    read_only: e.attributes().contains(fatfs::FileAttributes::READ_ONLY),
                    size: if e.is_dir() { 0 } else { e.len() },
                    mtime: epoch_from_dos(e.modified()),
                    atime: epoch_from_dos(DateTime {
                        date: accessed,
                        time: Time {
                            hour: 0,
                            min: 0,
                            sec: 0,
                            millis: 0,
                        },
                    }),
                    ctime: epoch_from_dos(e.created()),
                });
            }
            Ok(out)
        })
    }

    fn entry(&self, path: &str) -> Result<EntryInfo> {
        let (dir, name) = split(path);
        self.entries(dir)?
            .into_iter()
            .find(|e| e.name.to_lowercase() == name.to_lowercase())
            .ok_or_else(|| Error::NotFound(PathBuf::new()))
    }

    fn dir_path(&self, dir: NodeId) -> Result<String> {
        let p = self.path_of(dir)?;
        if !p.is_empty() && !self.entry(&p)?.is_dir {
            return Err(Error::NotADirectory(PathBuf::new()));
        }
        Ok(p)
    }

    fn file_path(&self, node: NodeId) -> Result<String> {
        let p = self.path_of(node)?;
        if p.is_empty() || self.entry(&p)?.is_dir {
            return Err(Error::IsADirectory(PathBuf::new()));
        }
        Ok(p)
    }

    fn file_len(&self, path: &str) -> Result<u64> {
        Ok(self.entry(path)?.size)
    }
}

impl Filesystem for FatFs {
    fn kind(&self) -> FsKind {
        FsKind::Vfat
    }

    fn is_writable(&self) -> bool {
        self.writable
    }

    fn root(&self) -> NodeId {
        1
    }

    fn lookup(&mut self, dir: NodeId, name: &OsStr) -> Result<Option<NodeId>> {
        let dir = self.dir_path(dir)?;
        let Some(wanted) = name.to_str() else {
            return Ok(None);
        };
        let wanted = wanted.to_lowercase();
        let found = self
            .entries(&dir)?
            .into_iter()
            .find(|e| e.name.to_lowercase() == wanted);
        Ok(found.map(|e| self.id_for(join(&dir, &e.name))))
    }

    fn metadata(&mut self, node: NodeId) -> Result<Metadata> {
        let path = self.path_of(node)?;
        if path.is_empty() {
            return Ok(Metadata {
                node,
                file_type: FileType::Directory,
                mode: 0o755,
                uid: 0,
                gid: 0,
                size: 0,
                nlink: 2,
                mtime: 0,
                atime: 0,
                ctime: 0,
                rdev: 0,
                allocated: 0,
            });
        }
        let e = self.entry(&path)?;
        let mut mode = if e.is_dir { 0o755 } else { 0o644 };
        if e.read_only {
            mode &= !0o222;
        }
        Ok(Metadata {
            node,
            file_type: if e.is_dir {
                FileType::Directory
            } else {
                FileType::Regular
            },
            mode,
            uid: 0,
            gid: 0,
            size: e.size,
            nlink: if e.is_dir { 2 } else { 1 },
            mtime: e.mtime,
            atime: e.atime,
            ctime: e.ctime,
            rdev: 0,
            allocated: e.size.div_ceil(self.cluster) * self.cluster,
        })
    }

    fn read_dir(&mut self, dir: NodeId) -> Result<Vec<DirEntry>> {
        let dir = self.dir_path(dir)?;
        let entries = self.entries(&dir)?;
        Ok(entries
            .into_iter()
            .map(|e| DirEntry {
                node: self.id_for(join(&dir, &e.name)),
                file_type: if e.is_dir {
                    FileType::Directory
                } else {
                    FileType::Regular
                },
                name: OsString::from(e.name),
            })
            .collect())
    }

    fn read_link(&mut self, _node: NodeId) -> Result<OsString> {
        Err(Error::NotASymlink(PathBuf::new()))
    }

    fn read_at(&mut self, node: NodeId, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let path = self.file_path(node)?;
        let len = self.file_len(&path)?;
        let want = readable_len(len, offset, buf.len());
        if want == 0 {
            return Ok(0);
        }
        self.with_fs(|fs| {
            let mut f = fs.root_dir().open_file(&path).map_err(map_io)?;
            f.seek(SeekFrom::Start(offset)).map_err(map_io)?;
            let mut done = 0;
            while done < want {
                let n = f.read(&mut buf[done..want]).map_err(map_io)?;
                if n == 0 {
                    break;
                }
                done += n;
            }
            Ok(done)
        })
    }

    fn write_at(&mut self, node: NodeId, offset: u64, data: &[u8]) -> Result<()> {
        self.check_writable()?;
        let path = self.file_path(node)?;
        let len = self.file_len(&path)?;
        if offset.saturating_add(data.len() as u64) > u64::from(u32::MAX) {
            return Err(Error::Unsupported {
                path: PathBuf::new(),
                what: "files of 4 GiB or more".into(),
            });
        }
        self.with_fs(|fs| {
            let mut f = fs.root_dir().open_file(&path).map_err(map_io)?;
            if offset > len {
                // fatfs cannot seek past the end: fill the gap with zeros (FAT has no holes).
                f.seek(SeekFrom::End(0)).map_err(map_io)?;
                let zeros = vec![0u8; 64 * 1024];
                let mut gap = offset - len;
                while gap > 0 {
                    let n = gap.min(zeros.len() as u64) as usize;
                    f.write_all(&zeros[..n]).map_err(map_io)?;
                    gap -= n as u64;
                }
            } else {
                f.seek(SeekFrom::Start(offset)).map_err(map_io)?;
            }
            f.write_all(data).map_err(map_io)?;
            f.flush().map_err(map_io)
        })
    }

    fn set_len(&mut self, node: NodeId, size: u64) -> Result<()> {
        self.check_writable()?;
        let path = self.file_path(node)?;
        let len = self.file_len(&path)?;
        if size > len {
            return self.write_at(node, size, &[]);
        }
        self.with_fs(|fs| {
            let mut f = fs.root_dir().open_file(&path).map_err(map_io)?;
            f.seek(SeekFrom::Start(size)).map_err(map_io)?;
            f.truncate().map_err(map_io)?;
            f.flush().map_err(map_io)
        })
    }

    fn create_file(&mut self, dir: NodeId, name: &OsStr, _attr: NewNode) -> Result<NodeId> {
        self.check_writable()?;
        let dir = self.dir_path(dir)?;
        let name = name_str(name)?;
        if self.lookup_existing(&dir, name)? {
            return Err(Error::AlreadyExists(PathBuf::new()));
        }
        let path = join(&dir, name);
        self.with_fs(|fs| {
            let mut f = fs.root_dir().create_file(&path).map_err(map_io)?;
            f.flush().map_err(map_io)
        })?;
        Ok(self.id_for(path))
    }

    fn mkdir(&mut self, _dir: NodeId, _name: &OsStr, _attr: NewNode) -> Result<NodeId> {
        // fatfs 0.3 writes long-name entries before the `.` and `..` of a new directory
        // and points `..` at the FAT32 root cluster; fsck.fat rejects both. No system
        // preparation step needs a new directory on an EFI partition, so refuse rather
        // than corrupt.
        self.check_writable()?;
        Err(Error::Unsupported {
            path: PathBuf::new(),
            what: "creating directories".into(),
        })
    }

    fn symlink(
        &mut self,
        _dir: NodeId,
        _name: &OsStr,
        _target: &OsStr,
        _attr: NewNode,
    ) -> Result<NodeId> {
        Err(Error::Unsupported {
            path: PathBuf::new(),
            what: "symbolic links".into(),
        })
    }

    fn unlink(&mut self, dir: NodeId, name: &OsStr) -> Result<()> {
        self.check_writable()?;
        let dir = self.dir_path(dir)?;
        let name = name_str(name)?;
        let e = self.entry(&join(&dir, name))?;
        if e.is_dir {
            return Err(Error::IsADirectory(PathBuf::new()));
        }
        let path = join(&dir, &e.name);
        self.with_fs(|fs| fs.root_dir().remove(&path).map_err(map_io))?;
        self.forget(&path);
        Ok(())
    }

    fn rmdir(&mut self, dir: NodeId, name: &OsStr) -> Result<()> {
        self.check_writable()?;
        let dir = self.dir_path(dir)?;
        let name = name_str(name)?;
        let e = self.entry(&join(&dir, name))?;
        if !e.is_dir {
            return Err(Error::NotADirectory(PathBuf::new()));
        }
        let path = join(&dir, &e.name);
        if !self.entries(&path)?.is_empty() {
            return Err(Error::NotEmpty(PathBuf::new()));
        }
        self.with_fs(|fs| fs.root_dir().remove(&path).map_err(map_io))?;
        self.forget(&path);
        Ok(())
    }

    fn rename(
        &mut self,
        from_dir: NodeId,
        from_name: &OsStr,
        to_dir: NodeId,
        to_name: &OsStr,
    ) -> Result<()> {
        self.check_writable()?;
        let from_dir = self.dir_path(from_dir)?;
        let to_dir = self.dir_path(to_dir)?;
        let from_name = name_str(from_name)?;
        let to_name = name_str(to_name)?;
        let src = self.entry(&join(&from_dir, from_name))?;
        let src_path = join(&from_dir, &src.name);
        let dst_path = join(&to_dir, to_name);
        if src.is_dir && (dst_path == src_path || dst_path.starts_with(&format!("{src_path}/"))) {
            return Err(Error::InvalidPath(PathBuf::new()));
        }
        // rename(2) semantics: a file or empty directory at the target is replaced.
        if let Ok(dst) = self.entry(&dst_path) {
            if dst.name.to_lowercase() == src.name.to_lowercase() && from_dir == to_dir {
                // Same entry, only the case changes: fatfs renames it in place below.
            } else if dst.is_dir != src.is_dir {
                return Err(if dst.is_dir {
                    Error::IsADirectory(PathBuf::new())
                } else {
                    Error::NotADirectory(PathBuf::new())
                });
            } else {
                let real = join(&to_dir, &dst.name);
                if dst.is_dir && !self.entries(&real)?.is_empty() {
                    return Err(Error::NotEmpty(PathBuf::new()));
                }
                self.with_fs(|fs| fs.root_dir().remove(&real).map_err(map_io))?;
                self.forget(&real);
            }
        }
        self.with_fs(|fs| {
            let root = fs.root_dir();
            let src_parent = if from_dir.is_empty() {
                fs.root_dir()
            } else {
                root.open_dir(&from_dir).map_err(map_io)?
            };
            let dst_parent = if to_dir.is_empty() {
                fs.root_dir()
            } else {
                root.open_dir(&to_dir).map_err(map_io)?
            };
            src_parent
                .rename(&src.name, &dst_parent, to_name)
                .map_err(map_io)
        })?;
        // Keep the ids of the moved object and everything below it.
        let prefix = format!("{src_path}/");
        let moved: Vec<(String, NodeId)> = self
            .ids
            .iter()
            .filter(|(p, _)| **p == src_path || p.starts_with(&prefix))
            .map(|(p, id)| (p.clone(), *id))
            .collect();
        for (old, id) in moved {
            self.ids.remove(&old);
            let new = format!("{dst_path}{}", &old[src_path.len()..]);
            self.paths[(id - 1) as usize] = Some(new.clone());
            self.ids.insert(new, id);
        }
        Ok(())
    }

    fn set_attr(&mut self, node: NodeId, attr: SetAttr) -> Result<()> {
        self.check_writable()?;
        let meta = self.metadata(node)?;
        let same_owner = attr.uid.is_none_or(|u| u == 0) && attr.gid.is_none_or(|g| g == 0);
        let same_mode = attr.mode.is_none_or(|m| m & 0o7777 == meta.mode);
        if !same_owner || !same_mode {
            return Err(Error::Unsupported {
                path: PathBuf::new(),
                what: "owners and permissions".into(),
            });
        }
        if let Some(mtime) = attr.mtime {
            let path = self.path_of(node)?;
            if path.is_empty() || meta.is_dir() {
                // fatfs can only change times through an open file.
                return Ok(());
            }
            self.with_fs(|fs| {
                let mut f = fs.root_dir().open_file(&path).map_err(map_io)?;
                #[allow(deprecated)]
                f.set_modified(dos_from_epoch(mtime));
                f.flush().map_err(map_io)
            })?;
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<()> {
        // Every call unmounts when it is done (see `with_fs`): nothing is cached here.
        Ok(())
    }
}

impl FatFs {
    fn lookup_existing(&self, dir: &str, name: &str) -> Result<bool> {
        let wanted = name.to_lowercase();
        Ok(self
            .entries(dir)?
            .iter()
            .any(|e| e.name.to_lowercase() == wanted))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_conversions_round_trip() {
        for secs in [315_532_800i64, 1_000_000_000, 1_700_000_000, 4_354_819_198] {
            let even = secs - secs % 2;
            assert_eq!(epoch_from_dos(dos_from_epoch(even)), even);
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
    }
}
