//! What a system preparation operation works on, and the only way it changes the guest.
//!
//! Every write goes through a helper here ([`SysprepContext::remove_file`],
//! [`SysprepContext::edit`], [`SysprepContext::scrub`] ...). Each helper records the
//! change, reports it with [`Reporter::detail`], and in a dry run skips the write while
//! remembering its effect, so that later reads through the context (and later
//! operations) see the guest as a real run would have left it. That is what makes a dry
//! run list exactly what a real run changes.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use snf_core::Reporter;
use snf_guestfs::assemble::ProbedPartition;
use snf_guestfs::{FileType, GuestFs, Metadata as FileMeta, NewNode, WalkEntry};

use super::params::Params;
use super::Result;
use crate::inspect::windows::{self, GuestHive, HiveName, WindowsError};
use crate::metadata::Metadata;

/// The operating-system families system preparation knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OsFamily {
    Linux,
    FreeBsd,
    NetBsd,
    OpenBsd,
    Hurd,
    Windows,
    /// Unsupported media (no OS, several OSes, LVM ...): no operation runs.
    Unsupported,
}

impl OsFamily {
    /// Every family, in display order.
    pub const ALL: [OsFamily; 7] = [
        OsFamily::Linux,
        OsFamily::FreeBsd,
        OsFamily::NetBsd,
        OsFamily::OpenBsd,
        OsFamily::Hurd,
        OsFamily::Windows,
        OsFamily::Unsupported,
    ];

    /// The `OSFAMILY` metadata spelling.
    pub fn name(self) -> &'static str {
        match self {
            OsFamily::Linux => "linux",
            OsFamily::FreeBsd => "freebsd",
            OsFamily::NetBsd => "netbsd",
            OsFamily::OpenBsd => "openbsd",
            OsFamily::Hurd => "hurd",
            OsFamily::Windows => "windows",
            OsFamily::Unsupported => "unsupported",
        }
    }

    /// The family named by an `OSFAMILY` value; anything unknown is unsupported.
    pub fn from_name(name: &str) -> OsFamily {
        OsFamily::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(name.trim()))
            .unwrap_or(OsFamily::Unsupported)
    }

    /// Whether this is a Unix-like family (the generic Unix operations apply).
    pub fn is_unix(self) -> bool {
        matches!(
            self,
            OsFamily::Linux
                | OsFamily::FreeBsd
                | OsFamily::NetBsd
                | OsFamily::OpenBsd
                | OsFamily::Hurd
        )
    }
}

impl fmt::Display for OsFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What system preparation needs to know about the guest OS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestOs {
    pub family: OsFamily,
    /// The distribution (`debian`, `slackware` ...), lower-case; the family name if unknown.
    pub distro: String,
    /// Whether cloud-init is enabled in the guest (metadata `CLOUD_INIT=yes`).
    pub cloud_init: bool,
}

impl GuestOs {
    /// Read it from the inspection's metadata: `OSFAMILY`, `OS`, `CLOUD_INIT`, and
    /// `UNSUPPORTED` (whose presence makes the media unsupported).
    pub fn from_metadata(meta: &Metadata) -> GuestOs {
        let family = if meta.contains("UNSUPPORTED") {
            OsFamily::Unsupported
        } else {
            meta.get("OSFAMILY")
                .map(OsFamily::from_name)
                .unwrap_or(OsFamily::Unsupported)
        };
        GuestOs {
            family,
            distro: meta
                .get("OS")
                .map(|s| s.to_ascii_lowercase())
                .unwrap_or_else(|| family.name().to_string()),
            cloud_init: meta.get("CLOUD_INIT") == Some("yes"),
        }
    }
}

/// A filesystem mounted in the guest tree, as `use-persistent-block-device-names` needs
/// it: where it is mounted and its UUID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountedFs {
    /// Guest mount point (`/`, `/boot` ...).
    pub mountpoint: PathBuf,
    /// The filesystem UUID (`blkid` form: lower-case with dashes for ext; `XXXX-XXXX`
    /// for FAT); `None` if the filesystem has none.
    pub uuid: Option<String>,
}

/// The kind of change an operation made to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Unlinked (a directory: removed with everything below it).
    Removed,
    /// Data overwritten with zeros, then unlinked.
    Scrubbed,
    /// Truncated to zero bytes.
    Emptied,
    /// Content replaced.
    Edited,
    /// Newly written.
    Created,
    /// Moved to another name (`detail` holds the new name).
    Renamed,
    /// An image property changed (`path` holds the key, `detail` the new value or
    /// nothing when removed).
    Metadata,
}

/// One change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub action: Action,
    /// Guest path (or metadata key).
    pub path: String,
    /// Extra information (objects removed below a directory, new name, new value).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = match self.action {
            Action::Removed => "removed",
            Action::Scrubbed => "scrubbed",
            Action::Emptied => "emptied",
            Action::Edited => "edited",
            Action::Created => "created",
            Action::Renamed => "renamed",
            Action::Metadata => "metadata",
        };
        match (self.action, &self.detail) {
            (Action::Renamed, Some(to)) => write!(f, "renamed {} to {to}", self.path),
            (Action::Metadata, Some(v)) => write!(f, "metadata {}={v}", self.path),
            (Action::Metadata, None) => write!(f, "metadata {} removed", self.path),
            (_, Some(d)) => write!(f, "{verb} {} ({d})", self.path),
            (_, None) => write!(f, "{verb} {}", self.path),
        }
    }
}

/// What one operation changed, plus the notes it made (missing files, things skipped).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Changes {
    pub changes: Vec<Change>,
    pub notes: Vec<String>,
}

impl Changes {
    /// Whether nothing was changed.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// A guest path for messages: control characters (a newline in a file name) escaped.
pub fn show(path: &Path) -> String {
    let s = path.to_string_lossy();
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The dry-run view: what earlier (skipped) writes would have done.
#[derive(Default)]
struct Overlay {
    removed: BTreeSet<PathBuf>,
    contents: BTreeMap<PathBuf, Vec<u8>>,
}

impl Overlay {
    fn is_removed(&self, path: &Path) -> bool {
        path.ancestors().any(|a| self.removed.contains(a))
    }
}

/// What an operation works on. Built once per run and shared by all its operations.
pub struct SysprepContext<'a> {
    fs: &'a mut GuestFs,
    os: &'a GuestOs,
    meta: &'a mut Metadata,
    params: &'a Params,
    reporter: &'a dyn Reporter,
    filesystems: Vec<MountedFs>,
    /// Swap areas the image keeps (on logical volumes), as `remove-swap-entry` needs them.
    kept_swap: Vec<ProbedPartition>,
    /// The image's probed partitions, as `use-persistent-block-device-names` needs them.
    partitions: Vec<ProbedPartition>,
    dry_run: bool,
    current: &'static str,
    changes: Changes,
    overlay: Overlay,
}

/// Normalise a guest path: absolute, no `.`/`..`/double slashes (lexically).
fn norm(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            std::path::Component::Normal(n) => out.push(n),
            std::path::Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

impl<'a> SysprepContext<'a> {
    /// A context over the assembled guest tree `fs`.
    pub fn new(
        fs: &'a mut GuestFs,
        os: &'a GuestOs,
        meta: &'a mut Metadata,
        params: &'a Params,
        reporter: &'a dyn Reporter,
    ) -> Self {
        SysprepContext {
            fs,
            os,
            meta,
            params,
            reporter,
            filesystems: Vec::new(),
            kept_swap: Vec::new(),
            partitions: Vec::new(),
            dry_run: false,
            current: "",
            changes: Changes::default(),
            overlay: Overlay::default(),
        }
    }

    /// In a dry run nothing is written; every change is listed as if it had been made.
    pub fn with_dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// The mounted filesystems and their UUIDs (for `use-persistent-block-device-names`).
    pub fn with_filesystems(mut self, filesystems: Vec<MountedFs>) -> Self {
        self.filesystems = filesystems;
        self
    }

    /// The swap areas the image keeps: swap logical volumes, which shrinking leaves in
    /// place and the deploy side cannot re-create, so their fstab lines must stay.
    pub fn with_kept_swap(mut self, kept_swap: Vec<ProbedPartition>) -> Self {
        self.kept_swap = kept_swap;
        self
    }

    /// The image's probed partitions (and logical volumes), for naming what a
    /// non-persistent device name (`/dev/vda2`) points at.
    pub fn with_partitions(mut self, partitions: Vec<ProbedPartition>) -> Self {
        self.partitions = partitions;
        self
    }

    /// The partitions given by [`Self::with_partitions`].
    pub fn partitions(&self) -> &[ProbedPartition] {
        &self.partitions
    }

    /// Whether the fstab source `spec` names a swap area the image keeps.
    pub fn names_kept_swap(&self, spec: &str) -> bool {
        matches!(
            snf_guestfs::assemble::match_source(spec, &self.kept_swap, &[]),
            snf_guestfs::assemble::SourceMatch::Partition(_)
        )
    }

    pub fn os(&self) -> &'a GuestOs {
        self.os
    }
    pub fn params(&self) -> &'a Params {
        self.params
    }
    pub fn reporter(&self) -> &'a dyn Reporter {
        self.reporter
    }
    pub fn is_dry_run(&self) -> bool {
        self.dry_run
    }
    /// The image metadata (read-only; change it with [`Self::set_meta`]).
    pub fn meta(&self) -> &Metadata {
        self.meta
    }
    pub fn filesystems(&self) -> &[MountedFs] {
        &self.filesystems
    }

    /// Start recording for operation `name`.
    pub(crate) fn begin(&mut self, name: &'static str) {
        self.current = name;
        self.changes = Changes::default();
    }

    /// The changes recorded since [`Self::begin`]; operations end with `Ok(ctx.finish())`.
    pub fn finish(&mut self) -> Changes {
        std::mem::take(&mut self.changes)
    }

    /// Flush the guest filesystems (nothing to flush in a dry run).
    pub fn sync(&mut self) -> Result<()> {
        if !self.dry_run {
            self.fs.sync()?;
        }
        Ok(())
    }

    // ---- reading (through the dry-run view) ----

    fn not_found<T>(r: snf_guestfs::Result<T>) -> Result<Option<T>> {
        match r {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(snf_guestfs::Error::NotADirectory(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Attributes of `path` without following a final symlink; `None` if it is missing.
    pub fn lstat(&mut self, path: &Path) -> Result<Option<FileMeta>> {
        let p = norm(path);
        if self.overlay.is_removed(&p) {
            return Ok(None);
        }
        let meta = Self::not_found(self.fs.lstat(&p))?;
        Ok(meta.map(|mut m| {
            if let Some(c) = self.overlay.contents.get(&p) {
                m.size = c.len() as u64;
            }
            m
        }))
    }

    /// Attributes of `path` following symlinks inside the guest; `None` if missing.
    pub fn stat(&mut self, path: &Path) -> Result<Option<FileMeta>> {
        let p = norm(path);
        if self.overlay.is_removed(&p) {
            return Ok(None);
        }
        let Some(mut m) = Self::not_found(self.fs.stat(&p))? else {
            return Ok(None);
        };
        if !self.overlay.contents.is_empty() {
            let key = self.canonical(&p);
            if let Some(c) = self.overlay.contents.get(&key) {
                m.size = c.len() as u64;
            }
        }
        if !self.overlay.removed.is_empty() {
            // A symlink whose target was removed earlier in this dry run dangles now.
            if let Some(real) = Self::not_found(self.fs.canonicalize(&p))? {
                if self.overlay.is_removed(&real) {
                    return Ok(None);
                }
            }
        }
        Ok(Some(m))
    }

    /// Whether `path` is a regular file (following symlinks).
    pub fn is_file(&mut self, path: &Path) -> Result<bool> {
        Ok(self.stat(path)?.is_some_and(|m| m.is_file()))
    }

    /// Whether `path` is a directory (following symlinks).
    pub fn is_dir(&mut self, path: &Path) -> Result<bool> {
        Ok(self.stat(path)?.is_some_and(|m| m.is_dir()))
    }

    /// Whether `path` is a real directory, not a symlink to one. Operations that empty a
    /// directory use this so that a guest's `/tmp -> /etc` link never empties `/etc`.
    pub fn is_real_dir(&mut self, path: &Path) -> Result<bool> {
        Ok(self.lstat(path)?.is_some_and(|m| m.is_dir()))
    }

    /// The guest path `path` resolves to (itself if it cannot be resolved).
    pub fn canonical(&mut self, path: &Path) -> PathBuf {
        self.fs
            .canonicalize(&norm(path))
            .unwrap_or_else(|_| norm(path))
    }

    /// The content of `path` (following symlinks); `None` if it is missing.
    pub fn read(&mut self, path: &Path) -> Result<Option<Vec<u8>>> {
        if !self.overlay.contents.is_empty() {
            let key = self.canonical(path);
            if let Some(c) = self.overlay.contents.get(&key) {
                return Ok(Some(c.clone()));
            }
        }
        if self.stat(path)?.is_none() {
            return Ok(None);
        }
        Self::not_found(self.fs.read(&norm(path)))
    }

    /// The content of `path` as text (invalid UTF-8 replaced); `None` if missing.
    pub fn read_string(&mut self, path: &Path) -> Result<Option<String>> {
        Ok(self
            .read(path)?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    /// Entries of directory `path` (following symlinks), sorted by name; empty if the
    /// directory is missing.
    pub fn read_dir(&mut self, path: &Path) -> Result<Vec<(OsString, FileType)>> {
        let p = norm(path);
        if self.overlay.is_removed(&p) {
            return Ok(Vec::new());
        }
        let entries = Self::not_found(self.fs.read_dir(&p))?.unwrap_or_default();
        if self.overlay.removed.is_empty() {
            return Ok(entries);
        }
        Ok(entries
            .into_iter()
            .filter(|(n, _)| !self.overlay.is_removed(&p.join(n)))
            .collect())
    }

    /// Every object below directory `path`, parents first, symlinks not followed; empty if
    /// the directory is missing.
    pub fn walk(&mut self, path: &Path) -> Result<Vec<WalkEntry>> {
        let p = norm(path);
        if self.overlay.is_removed(&p) {
            return Ok(Vec::new());
        }
        let entries = Self::not_found(self.fs.walk(&p))?.unwrap_or_default();
        if self.overlay.removed.is_empty() {
            return Ok(entries);
        }
        Ok(entries
            .into_iter()
            .filter(|e| !self.overlay.is_removed(&e.path))
            .collect())
    }

    // ---- recording ----

    fn record(&mut self, action: Action, path: &Path, detail: Option<String>) {
        let change = Change {
            action,
            path: show(path),
            detail,
        };
        let prefix = if self.dry_run { "would have " } else { "" };
        self.reporter
            .detail(&format!("{}: {prefix}{change}", self.current));
        self.changes.changes.push(change);
    }

    /// A remark that needs no action (a missing file, a guest without the feature):
    /// shown in verbose mode and in the log.
    pub fn note(&mut self, msg: impl Into<String>) {
        let msg = msg.into();
        self.reporter.detail(&format!("{}: {msg}", self.current));
        self.changes.notes.push(msg);
    }

    /// Something the user should look at; shown as a warning.
    pub fn warn(&mut self, msg: impl Into<String>) {
        let msg = msg.into();
        self.reporter.warn(&msg);
        self.changes.notes.push(msg);
    }

    // ---- writing ----

    /// Unlink the non-directory `path` (a symlink itself, never its target).
    pub fn remove_file(&mut self, path: &Path) -> Result<()> {
        let p = norm(path);
        if !self.dry_run {
            self.fs.unlink(&p)?;
        } else {
            self.overlay.removed.insert(p.clone());
        }
        self.record(Action::Removed, &p, None);
        Ok(())
    }

    /// Remove `path` and everything below it (`rm -rf`, symlinks never followed).
    pub fn remove_tree(&mut self, path: &Path) -> Result<()> {
        let p = norm(path);
        let Some(meta) = self.lstat(&p)? else {
            return Ok(());
        };
        let detail = if meta.is_dir() {
            let n = self.walk(&p)?.len();
            (n > 0).then(|| format!("and {n} objects below it"))
        } else {
            None
        };
        if !self.dry_run {
            self.fs.remove_all(&p)?;
        } else {
            self.overlay.removed.insert(p.clone());
        }
        self.record(Action::Removed, &p, detail);
        Ok(())
    }

    /// Truncate regular file `path` to zero bytes; an empty file is left alone.
    pub fn empty_file(&mut self, path: &Path) -> Result<()> {
        let p = norm(path);
        let Some(meta) = self.stat(&p)? else {
            return Ok(());
        };
        if meta.size == 0 {
            return Ok(());
        }
        if !self.dry_run {
            self.fs.truncate(&p, 0)?;
        } else {
            let key = self.canonical(&p);
            self.overlay.contents.insert(key, Vec::new());
        }
        self.record(Action::Emptied, &p, None);
        Ok(())
    }

    /// Overwrite the data of regular file `path` with zeros, then unlink it. A file with
    /// other hard links is only unlinked (its data is still in use under the other
    /// names, and zeroing it would destroy those files) and a warning says so.
    pub fn scrub(&mut self, path: &Path) -> Result<()> {
        let p = norm(path);
        let Some(meta) = self.lstat(&p)? else {
            return Ok(());
        };
        if meta.nlink > 1 {
            self.warn(format!(
                "{} has {} other hard links: unlinked without overwriting its data",
                show(&p),
                meta.nlink - 1
            ));
            return self.remove_file(&p);
        }
        if !self.dry_run {
            if meta.is_file() {
                self.fs.scrub_data(&p)?;
            }
            self.fs.unlink(&p)?;
        } else {
            self.overlay.removed.insert(p.clone());
        }
        let action = if meta.is_file() {
            Action::Scrubbed
        } else {
            Action::Removed
        };
        self.record(action, &p, None);
        Ok(())
    }

    fn put(&mut self, path: &Path, data: &[u8], attr: NewNode, scrub_old: bool) -> Result<bool> {
        let p = norm(path);
        let existed = self.stat(&p)?;
        if !self.dry_run {
            if scrub_old
                && existed
                    .as_ref()
                    .is_some_and(|m| m.is_file() && m.nlink == 1)
            {
                self.fs.scrub_data(&p)?;
            }
            self.fs.write(&p, data, attr)?;
        } else {
            let key = self.canonical(&p);
            self.overlay.removed.remove(&key);
            self.overlay.contents.insert(key, data.to_vec());
        }
        Ok(existed.is_some())
    }

    /// Replace the content of `path` (following symlinks) with `data` if it differs; a
    /// missing file is created with `attr`. Returns whether anything changed.
    pub fn write(&mut self, path: &Path, data: &[u8], attr: NewNode) -> Result<bool> {
        if let Some(old) = self.read(path)? {
            if old == data {
                return Ok(false);
            }
        }
        let existed = self.put(path, data, attr, false)?;
        let action = if existed {
            Action::Edited
        } else {
            Action::Created
        };
        self.record(action, &norm(path), None);
        Ok(true)
    }

    /// Replace the text of existing file `path` with `new` if it differs. With
    /// `scrub_old`, the old data is zeroed on disk first (for files holding secrets,
    /// such as `/etc/shadow`). Returns whether anything changed.
    pub fn edit(&mut self, path: &Path, new: &str, scrub_old: bool) -> Result<bool> {
        match self.read(path)? {
            Some(old) if old == new.as_bytes() => Ok(false),
            Some(_) => {
                self.put(path, new.as_bytes(), NewNode::root(0o644), scrub_old)?;
                self.record(Action::Edited, &norm(path), None);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Rename `from` to `to` (same filesystem).
    pub fn rename(&mut self, from: &Path, to: &Path) -> Result<()> {
        let (f, t) = (norm(from), norm(to));
        if !self.dry_run {
            self.fs.rename(&f, &t)?;
        } else {
            let data = self.read(&f)?.unwrap_or_default();
            self.overlay.removed.insert(f.clone());
            self.overlay.removed.remove(&t);
            self.overlay.contents.insert(t.clone(), data);
        }
        self.record(Action::Renamed, &f, Some(show(&t)));
        Ok(())
    }

    /// Edit registry hive `name` of the Windows guest: `edit` changes the hive and
    /// describes each change it made (`KEY\VALUE = DATA`) in the list it is given. The
    /// hive is copied out, edited, and written back only when something changed and
    /// this is not a dry run. Returns whether anything changed.
    pub fn edit_registry(
        &mut self,
        name: HiveName,
        edit: impl FnOnce(&mut hivex::Hive, &mut Vec<String>) -> std::result::Result<(), hivex::Error>,
    ) -> Result<bool> {
        let root = windows::system_root(self.fs).ok_or_else(|| WindowsError::NoHive {
            name: name.file(),
            root: PathBuf::from("/Windows"),
        })?;
        let mut hive = GuestHive::open(self.fs, &root, name, true)?;
        let mut done = Vec::new();
        edit(hive.hive_mut(), &mut done).map_err(WindowsError::from)?;
        if done.is_empty() {
            return Ok(false);
        }
        let path = hive.guest_path().to_path_buf();
        if !self.dry_run {
            hive.write_back(self.fs)?;
        }
        self.record(Action::Edited, &path, Some(done.join("; ")));
        Ok(true)
    }

    /// The Windows system root (`/Windows`, in the guest's case), if the guest has one.
    pub fn windows_root(&mut self) -> Option<PathBuf> {
        windows::system_root(self.fs)
    }

    /// Create directory `path` and its missing parents (root-owned, 0755).
    pub fn mkdir_all(&mut self, path: &Path) -> Result<()> {
        let p = norm(path);
        if self.is_dir(&p)? {
            return Ok(());
        }
        if !self.dry_run {
            self.fs.mkdir_all(&p, NewNode::root(0o755))?;
        }
        self.record(Action::Created, &p, None);
        Ok(())
    }

    /// Set (`Some`) or remove (`None`) image property `key`. In a dry run the metadata is
    /// left alone.
    pub fn set_meta(&mut self, key: &str, value: Option<String>) {
        if self.meta.get(key) == value.as_deref() {
            return;
        }
        if !self.dry_run {
            match &value {
                Some(v) => {
                    let _ = self.meta.insert(key, v.clone());
                }
                None => {
                    self.meta.remove(key);
                }
            }
        }
        self.record(Action::Metadata, Path::new(key), value);
    }
}
