//! The diskdump output: the raw bytes `[0, size)` of the working disk, written sparsely
//! with the MD5 computed in the same pass, and its side files.
//!
//! The image is written to `.FILE.partial` in the destination directory and renamed
//! into place only after success; on any error (or cancellation) the partial file is
//! removed, so an interrupted run never leaves a file that looks complete. If `FILE`
//! resolves to `/dev/null` nothing is written but the MD5 is still computed.
//!
//! The image is not `fsync`ed: like `cp`, it is left to the page cache.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::ops::Range;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use snf_core::{Cancelled, Reporter, Unit};

use crate::snapshot::WorkingDisk;
use crate::sparse::{self, EngineError};
use crate::workdir::WriteError;

/// The result of a dump or an MD5 pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpSummary {
    /// MD5 of bytes `[0, bytes)` of the disk, lowercase hex.
    pub md5_hex: String,
    /// How many bytes the image holds (the `size` asked for).
    pub bytes: u64,
}

/// What went wrong writing the image or its side files.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    /// `size` is larger than the working disk.
    #[error("cannot dump {size} bytes of {}: the disk holds only {disk_size}", .path.display())]
    TooLarge {
        path: PathBuf,
        size: u64,
        disk_size: u64,
    },
    /// Reading the working disk failed; `what` names it as the user knows it.
    #[error("cannot read {what} at byte {offset}: {source}")]
    Read {
        what: String,
        offset: u64,
        #[source]
        source: io::Error,
    },
    /// The output exists and is a directory, device or other non-regular file.
    #[error("output {} exists and is not a regular file", .path.display())]
    NotRegular { path: PathBuf },
    /// The output is the source (or the working disk) itself.
    #[error("output {} is the source disk itself", .path.display())]
    SameAsSource { path: PathBuf },
    /// Creating a file in the destination directory failed; `what` names the file as
    /// the user knows it (not its temporary name).
    #[error("cannot create {what}: {source}")]
    Create {
        what: String,
        #[source]
        source: io::Error,
    },
    /// Writing failed (names the directory; says so if it is full).
    #[error(transparent)]
    Write(#[from] WriteError),
    /// The final rename failed (`from` is a temporary name, not shown).
    #[error("cannot move the finished file into place as {}: {source}", .to.display())]
    Rename {
        from: PathBuf,
        to: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The user cancelled.
    #[error(transparent)]
    Cancelled(#[from] Cancelled),
}

impl DumpError {
    /// Whether the work stopped because the user cancelled.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, DumpError::Cancelled(_))
    }
}

/// Whether `out` is (a link to) `/dev/null`.
pub fn is_dev_null(out: &Path) -> bool {
    std::fs::canonicalize(out).is_ok_and(|p| p == Path::new("/dev/null"))
}

/// The directory `out` is in (`.` for a bare file name).
fn parent_dir(out: &Path) -> PathBuf {
    match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// `DIR/.NAME.partial` for `DIR/NAME` (+ `extra`, e.g. `.meta`).
fn partial_name(out: &Path, extra: &str) -> PathBuf {
    let mut name = OsString::from(".");
    name.push(out.file_name().unwrap_or_default());
    name.push(extra);
    name.push(".partial");
    parent_dir(out).join(name)
}

/// `FILE` + `suffix` (`disk.img` -> `disk.img.meta`).
fn with_suffix(out: &Path, suffix: &str) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// The files a dump to `out` creates: `FILE`, `FILE.meta`, `FILE.md5sum`,
/// `FILE.variant`. The CLI refuses to overwrite existing ones without `-f`.
pub fn output_files(out: &Path) -> [PathBuf; 4] {
    [
        out.to_path_buf(),
        with_suffix(out, ".meta"),
        with_suffix(out, ".md5sum"),
        with_suffix(out, ".variant"),
    ]
}

/// Removes a file when dropped unless disarmed.
struct RemoveOnDrop(Option<PathBuf>);

impl RemoveOnDrop {
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// The engine's error reading `src` (named for messages) or writing `what` in `dir`.
fn engine_error(src: &str, dir: &Path, what: &str, e: EngineError) -> DumpError {
    match e {
        EngineError::Read { offset, source } => DumpError::Read {
            what: src.to_owned(),
            offset,
            source,
        },
        EngineError::Write(source) => WriteError::new(dir, what.to_owned(), source).into(),
        EngineError::Cancelled => Cancelled.into(),
    }
}

/// Write bytes `[0, size)` of `disk` to `out` as a sparse raw image and return its MD5.
///
/// * Holes of the disk (found with `SEEK_DATA`/`SEEK_HOLE`, never read), the byte
///   ranges in `free` (known-free filesystem blocks; treated as zeros without being
///   read) and all-zero blocks become holes of the output; the output's length is
///   exactly `size`.
/// * The MD5 is computed in the same pass, on a second thread; memory stays at a few
///   MiB whatever the size.
/// * Progress "Dumping image file" (bytes) goes to `reporter`; cancellation is checked
///   for every chunk.
/// * `out` is written as `.FILE.partial` next to it and renamed into place at the end;
///   on error the partial file is removed and an existing `out` is left untouched.
/// * If `out` resolves to `/dev/null`, nothing is written (the caller should warn).
pub fn dump(
    disk: &WorkingDisk,
    size: u64,
    free: &[Range<u64>],
    out: &Path,
    reporter: &dyn Reporter,
) -> Result<DumpSummary, DumpError> {
    let what = format!("image file {}", out.display());
    dump_named(disk, size, free, out, &what, reporter)
}

/// [`dump`] to a file whose path means nothing to the user (one in the work
/// directory): errors name it `what` ("the image to upload as `x'").
pub fn dump_named(
    disk: &WorkingDisk,
    size: u64,
    free: &[Range<u64>],
    out: &Path,
    what: &str,
    reporter: &dyn Reporter,
) -> Result<DumpSummary, DumpError> {
    check_size(disk, size)?;
    if is_dev_null(out) {
        return hash_only(disk, size, free, reporter, "Calculating md5sum");
    }
    check_output(disk, out)?;
    let dir = parent_dir(out);
    let partial = partial_name(out, "");
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&partial)
        .map_err(|source| DumpError::Create {
            what: what.to_owned(),
            source,
        })?;
    let mut guard = RemoveOnDrop(Some(partial.clone()));
    let task = reporter.task("Dumping image file", size, Unit::Bytes);
    let job = sparse::Job {
        src: disk.file(),
        size,
        free,
        dst: Some(&file),
        md5: true,
        punch_zeros: false,
        kernel_copy: false,
        task: task.as_ref(),
    };
    let md5 = sparse::run(&job).map_err(|e| engine_error(&disk.name(), &dir, what, e))?;
    file.set_len(size)
        .map_err(|source| DumpError::from(WriteError::new(&dir, what, source)))?;
    drop(file);
    std::fs::rename(&partial, out).map_err(|source| DumpError::Rename {
        from: partial.clone(),
        to: out.to_path_buf(),
        source,
    })?;
    guard.disarm();
    task.finish("done");
    Ok(DumpSummary {
        md5_hex: md5.unwrap_or_default(),
        bytes: size,
    })
}

/// Refuses an output that exists but is not a regular file, or that is the source.
fn check_output(disk: &WorkingDisk, out: &Path) -> Result<(), DumpError> {
    if let Ok(meta) = std::fs::metadata(out) {
        if !meta.is_file() {
            return Err(DumpError::NotRegular {
                path: out.to_path_buf(),
            });
        }
        let same = |p: &Path| {
            std::fs::metadata(p).is_ok_and(|m| m.dev() == meta.dev() && m.ino() == meta.ino())
        };
        if same(disk.path()) || same(disk.source().path()) {
            return Err(DumpError::SameAsSource {
                path: out.to_path_buf(),
            });
        }
    }
    Ok(())
}

/// Whether [`finish_in_place`] can make `out` from `disk`: the disk is a private copy,
/// `out` is not `/dev/null` nor an existing non-regular file, the copy's filesystem can
/// punch holes, and a file can be renamed from the copy's directory into `out`'s.
pub fn can_finish_in_place(disk: &WorkingDisk, out: &Path) -> bool {
    if !disk.is_copy() || is_dev_null(out) {
        return false;
    }
    if std::fs::metadata(out).is_ok_and(|m| !m.is_file()) {
        return false;
    }
    // Punching past the end changes nothing, but says whether holes can be punched.
    sparse::punch_hole(disk.file(), disk.size()..disk.size() + 4096).is_ok()
        && can_rename(&parent_dir(disk.path()), &parent_dir(out))
}

/// Whether a file can be renamed from directory `from` into directory `to`: tried with
/// an empty file, since a bind mount of the same filesystem has the same device number
/// and still refuses (EXDEV), and the directory may not be writable.
fn can_rename(from: &Path, to: &Path) -> bool {
    let Ok(probe) = tempfile::Builder::new()
        .prefix(".rename-probe-")
        .tempfile_in(from)
    else {
        return false;
    };
    let target = to.join(
        probe
            .path()
            .file_name()
            .map(OsString::from)
            .unwrap_or_default(),
    );
    if std::fs::symlink_metadata(&target).is_ok() {
        return false;
    }
    match probe.persist_noclobber(&target) {
        Ok(_) => {
            let _ = std::fs::remove_file(&target);
            true
        }
        Err(_) => false,
    }
}

/// Make the private copy `disk` itself the image `out` (see [`can_finish_in_place`];
/// otherwise this is [`dump`]): the byte ranges in `free` are punched out so that they
/// read as zeros and hold nothing, the copy is cut to `size`, its MD5 is computed (holes
/// hashed without being read) and it is renamed to `out` with the permissions a new
/// file gets. The data is not written a second time and no copy is left to delete.
///
/// Progress "Dumping image file" (bytes). On error or cancellation the copy is removed
/// and an existing `out` is left untouched: `out` appears only complete.
pub fn finish_in_place(
    disk: WorkingDisk,
    size: u64,
    free: &[Range<u64>],
    out: &Path,
    reporter: &dyn Reporter,
) -> Result<DumpSummary, DumpError> {
    let what = format!("image file {}", out.display());
    finish_in_place_named(disk, size, free, out, &what, reporter)
}

/// [`finish_in_place`] to a file whose path means nothing to the user (one in the work
/// directory): errors name it `what`.
pub fn finish_in_place_named(
    disk: WorkingDisk,
    size: u64,
    free: &[Range<u64>],
    out: &Path,
    what: &str,
    reporter: &dyn Reporter,
) -> Result<DumpSummary, DumpError> {
    if !can_finish_in_place(&disk, out) {
        return dump_named(&disk, size, free, out, what, reporter);
    }
    check_size(&disk, size)?;
    check_output(&disk, out)?;
    let source_name = disk.name();
    // The directory the user chose for temporary files, not the private one in it.
    let copy_dir = disk.work_dir().parent().to_path_buf();
    let (file, copy) = match disk.into_private_copy() {
        Ok(parts) => parts,
        Err(disk) => return dump_named(&disk, size, free, out, what, reporter),
    };
    let what = format!("{what} (from the private copy)");
    let write_err = |source| DumpError::from(WriteError::new(&copy_dir, what.clone(), source));
    let task = reporter.task("Dumping image file", size, Unit::Bytes);
    for r in free {
        let (start, end) = (r.start.min(size), r.end.min(size));
        if start < end {
            snf_core::cancel::check()?;
            sparse::punch_hole(&file, start..end).map_err(write_err)?;
        }
    }
    file.set_len(size).map_err(write_err)?;
    let job = sparse::Job {
        src: &file,
        size,
        free: &[],
        dst: None,
        md5: true,
        punch_zeros: true,
        kernel_copy: false,
        task: task.as_ref(),
    };
    let md5 = sparse::run(&job)
        .map_err(|e| engine_error(&source_name, &copy_dir, &what, e))?
        .unwrap_or_default();
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(0o666 & !umask()))
        .map_err(write_err)?;
    drop(file);
    copy.persist(out).map_err(|e| DumpError::Rename {
        from: e.path.to_path_buf(),
        to: out.to_path_buf(),
        source: e.error,
    })?;
    task.finish("done");
    Ok(DumpSummary {
        md5_hex: md5,
        bytes: size,
    })
}

/// The process's file mode creation mask (from /proc: reading it with umask(2) would
/// change it for a moment under other threads); 022 when unknown.
fn umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o022)
}

/// MD5 of bytes `[0, size)` of `disk` without writing anything (for runs that upload
/// without `-o`); holes are hashed as zeros without being read. Progress
/// "Calculating md5sum".
pub fn md5_of(
    disk: &WorkingDisk,
    size: u64,
    reporter: &dyn Reporter,
) -> Result<DumpSummary, DumpError> {
    check_size(disk, size)?;
    hash_only(disk, size, &[], reporter, "Calculating md5sum")
}

fn check_size(disk: &WorkingDisk, size: u64) -> Result<(), DumpError> {
    if size > disk.size() {
        return Err(DumpError::TooLarge {
            path: disk.source().given().to_path_buf(),
            size,
            disk_size: disk.size(),
        });
    }
    Ok(())
}

fn hash_only(
    disk: &WorkingDisk,
    size: u64,
    free: &[Range<u64>],
    reporter: &dyn Reporter,
    title: &str,
) -> Result<DumpSummary, DumpError> {
    let task = reporter.task(title, size, Unit::Bytes);
    let job = sparse::Job {
        src: disk.file(),
        size,
        free,
        dst: None,
        md5: true,
        punch_zeros: false,
        kernel_copy: false,
        task: task.as_ref(),
    };
    let md5 = sparse::run(&job)
        .map_err(|e| engine_error(&disk.name(), Path::new("/dev"), "image file /dev/null", e))?
        .unwrap_or_default();
    task.finish(&md5);
    Ok(DumpSummary {
        md5_hex: md5,
        bytes: size,
    })
}

/// Quote `s` for `/bin/sh`: single quotes, each `'` written as `'\''`.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The `FILE.meta` text: `{"properties":{...},"disk-format":"diskdump"}`, compact,
/// keys sorted, non-ASCII kept.
pub fn meta_json(properties: &BTreeMap<String, String>) -> String {
    let props = serde_json::to_string(properties).unwrap_or_else(|_| "{}".into());
    format!("{{\"properties\":{props},\"disk-format\":\"diskdump\"}}")
}

/// The `FILE.md5sum` line in GNU form (`md5sum -c` accepts it in FILE's directory).
/// A name with a backslash or newline is escaped the way GNU md5sum does it.
pub fn md5sum_line(md5_hex: &str, out: &Path) -> Vec<u8> {
    let name = out.file_name().unwrap_or(out.as_os_str()).as_bytes();
    let escape = name.iter().any(|&b| b == b'\\' || b == b'\n');
    let mut line = Vec::with_capacity(name.len() + 40);
    if escape {
        line.push(b'\\');
    }
    line.extend_from_slice(md5_hex.as_bytes());
    line.extend_from_slice(b"  ");
    for &b in name {
        match b {
            b'\\' if escape => line.extend_from_slice(b"\\\\"),
            b'\n' if escape => line.extend_from_slice(b"\\n"),
            _ => line.push(b),
        }
    }
    line.push(b'\n');
    line
}

/// The `FILE.variant` text: shell-sourceable `IMG_FORMAT`, `IMG_ID` (`FILE` as given
/// on the command line), `IMG_PROPERTIES` (the properties JSON), sorted and quoted.
pub fn variant_text(out_as_given: &str, properties: &BTreeMap<String, String>) -> String {
    let props = serde_json::to_string(properties).unwrap_or_else(|_| "{}".into());
    format!(
        "IMG_FORMAT={}\nIMG_ID={}\nIMG_PROPERTIES={}\n",
        shell_quote("diskdump"),
        shell_quote(out_as_given),
        shell_quote(&props)
    )
}

/// Write `FILE.meta`, `FILE.md5sum` and `FILE.variant` next to `out`, each atomically
/// (a temporary name, then rename). If any of them fails, everything this call wrote
/// and the image `out` itself are removed, so nothing looks complete.
///
/// Nothing is written when `out` resolves to `/dev/null`.
pub fn write_side_files(
    out: &Path,
    out_as_given: &str,
    md5_hex: &str,
    properties: &BTreeMap<String, String>,
) -> Result<(), DumpError> {
    if is_dev_null(out) {
        return Ok(());
    }
    let [_, meta, md5sum, variant] = output_files(out);
    let contents: [(PathBuf, &str, Vec<u8>); 3] = [
        (meta, ".meta", meta_json(properties).into_bytes()),
        (md5sum, ".md5sum", md5sum_line(md5_hex, out)),
        (
            variant,
            ".variant",
            variant_text(out_as_given, properties).into_bytes(),
        ),
    ];
    let dir = parent_dir(out);
    let mut written: Vec<RemoveOnDrop> = Vec::new();
    let result = (|| {
        let mut temps = Vec::new();
        for (target, suffix, data) in &contents {
            let temp = partial_name(out, suffix);
            let mut guard = RemoveOnDrop(Some(temp.clone()));
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&temp)
                .map_err(|source| DumpError::Create {
                    what: target.display().to_string(),
                    source,
                })?;
            f.write_all(data)
                .and_then(|_| f.flush())
                .map_err(|source| WriteError::new(&dir, target.display().to_string(), source))?;
            guard.disarm();
            temps.push(RemoveOnDrop(Some(temp.clone())));
        }
        for ((target, _, _), mut temp) in contents.iter().zip(temps) {
            let from = temp.0.clone().unwrap_or_default();
            std::fs::rename(&from, target).map_err(|source| DumpError::Rename {
                from: from.clone(),
                to: target.clone(),
                source,
            })?;
            temp.disarm();
            written.push(RemoveOnDrop(Some(target.clone())));
        }
        Ok(())
    })();
    match result {
        Ok(()) => {
            for mut w in written {
                w.disarm();
            }
            Ok(())
        }
        Err(e) => {
            drop(written);
            if std::fs::symlink_metadata(out).is_ok_and(|m| m.is_file()) {
                let _ = std::fs::remove_file(out);
            }
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_round_trips_through_sh() {
        for s in ["plain", "it's", "a 'b' c", "new\nline", "ünï €", "", "'"] {
            let out = std::process::Command::new("sh")
                .args(["-c", &format!("printf %s {}", shell_quote(s))])
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), s);
        }
    }

    #[test]
    fn meta_is_compact_sorted_and_keeps_non_ascii() {
        let mut p = BTreeMap::new();
        p.insert("OS".to_string(), "debian".to_string());
        p.insert(
            "DESCRIPTION".to_string(),
            "Debian Ελληνικά \"x\"".to_string(),
        );
        assert_eq!(
            meta_json(&p),
            r#"{"properties":{"DESCRIPTION":"Debian Ελληνικά \"x\"","OS":"debian"},"disk-format":"diskdump"}"#
        );
    }

    #[test]
    fn md5sum_line_forms() {
        let md5 = "d41d8cd98f00b204e9800998ecf8427e";
        assert_eq!(
            md5sum_line(md5, Path::new("/x/y/disk.img")),
            format!("{md5}  disk.img\n").into_bytes()
        );
        assert_eq!(
            md5sum_line(md5, Path::new("a\\b")),
            format!("\\{md5}  a\\\\b\n").into_bytes()
        );
    }

    #[test]
    fn output_file_names() {
        let f = output_files(Path::new("out/disk.img"));
        let names: Vec<_> = f.iter().map(|p| p.display().to_string()).collect();
        assert_eq!(
            names,
            [
                "out/disk.img",
                "out/disk.img.meta",
                "out/disk.img.md5sum",
                "out/disk.img.variant"
            ]
        );
        assert_eq!(
            partial_name(Path::new("disk.img"), ""),
            Path::new("./.disk.img.partial")
        );
    }
}
