//! What an interactive front-end does with a [`Session`] beyond the linear run of
//! `snf-mkimage`: the user inspects the image, changes properties, chooses and runs system
//! preparation operations, excludes deployment tasks, writes the image and uploads it,
//! in any order and as often as they like.
//!
//! Every decision stays in the library: this module only sequences the session's own
//! stages ([`Session::run_stage`]) and the disk and cloud layers' functions, so the
//! files an interactive run writes are those `snf-mkimage` writes for the same choices.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use snf_cloud::{Cloud, CloudError, ImageSource};
use snf_core::report::Reporter;
use snf_disk::DumpError;

use crate::metadata::{keys, Metadata};
use crate::session::{Session, SessionError, Stage, WrittenImage};
use crate::sysprep::OsFamily;

/// What can go wrong in an interactive action.
#[derive(Debug, thiserror::Error)]
pub enum InteractiveError {
    /// A session stage failed.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// Writing or hashing the image failed.
    #[error(transparent)]
    Dump(#[from] DumpError),
    /// Talking to the cloud failed.
    #[error(transparent)]
    Cloud(#[from] CloudError),
    /// The chosen output path cannot be used.
    #[error("{0}")]
    BadOutput(String),
    /// The session has not been initialized (no working disk yet).
    #[error("the media has not been initialized yet")]
    NotReady,
}

impl InteractiveError {
    /// Whether the action stopped because the user cancelled.
    pub fn is_cancelled(&self) -> bool {
        match self {
            InteractiveError::Session(e) => e.is_cancelled(),
            InteractiveError::Dump(e) => e.is_cancelled(),
            InteractiveError::Cloud(CloudError::Cancelled(_)) => true,
            _ => snf_core::cancel::is_requested(),
        }
    }
}

/// Everything before the first question: examine the source, create the work
/// directory, open the working disk *writable* (the user may prepare the guest later),
/// read the partition table, inspect and merge the metadata.
///
/// Unsupported media are not an error here: the front-end shows
/// [`Session::metadata`]'s `UNSUPPORTED` reason and lets the user decide, so the
/// session must be created with `allow_unsupported`.
pub fn initialize(session: &mut Session) -> Result<(), SessionError> {
    session.run_until(Stage::OpenWorkingDisk)?;
    session.make_writable()?;
    session.run_until(Stage::LAST_PREPARE)
}

/// Why the media cannot be prepared, if it cannot.
pub fn unsupported_reason(session: &Session) -> Option<&str> {
    session.metadata().get(keys::UNSUPPORTED)
}

/// Whether `path` can be the source of a session: a regular file or a block device
/// (the running host, `/`, is chosen otherwise, by the user).
pub fn is_valid_source(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() || m.file_type().is_block_device())
}

/// Whether no system preparation operation has run on the image yet: writing or
/// uploading it then copies the guest as it is, with its logs, keys and passwords, and
/// a front-end asks first. Never for media that cannot be prepared.
pub fn syspreps_never_ran(session: &Session) -> bool {
    session.syspreps().is_some_and(|r| {
        r.descriptors().len()
            == crate::sysprep::Registry::for_family(r.family())
                .descriptors()
                .len()
    })
}

/// The object name the image is uploaded as when the user gave none: the OS.
pub fn default_object_name(session: &Session) -> String {
    format!("{}.diskdump", summary(session).os)
}

/// The object name a one-step upload (the wizard's) gives an image registered as
/// `image_name` at Unix time `unix_secs`: unique per minute, so that an earlier image
/// of the same name is not overwritten.
pub fn timestamped_object_name(image_name: &str, unix_secs: u64) -> String {
    let (y, mo, d, h, mi, _) = utc_date_time(unix_secs);
    format!("{image_name}-{y:04}{mo:02}{d:02}{h:02}{mi:02}.diskdump")
}

/// Calendar date and time (year, month, day, hour, minute, second) of a Unix time, in
/// UTC (Howard Hinnant's days-to-civil).
pub fn utc_date_time(secs: u64) -> (i64, u32, u32, u32, u32, u32) {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        (rem / 60 % 60) as u32,
        (rem % 60) as u32,
    )
}

/// What the front-end shows of the image at all times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// `OSFAMILY` (or `unsupported`).
    pub os: String,
    /// The distribution (`OS`), `unknown` if none.
    pub distro: String,
    /// Size of the image in MiB (rounded up).
    pub size_mib: u64,
    /// Whether shrinking made the image smaller than the source.
    pub shrunk: bool,
    /// The source, as an absolute path.
    pub source: PathBuf,
}

impl Summary {
    /// The original's background title:
    /// `OS: <os>, Distro: <distro>, Size: <N>MB[ (shrunk)], Source: <path>`.
    pub fn title(&self) -> String {
        format!(
            "OS: {}, Distro: {}, Size: {}MB{}, Source: {}",
            self.os,
            self.distro,
            self.size_mib,
            if self.shrunk { " (shrunk)" } else { "" },
            self.source.display()
        )
    }

    /// `Ostype` or `Ostype (Distro)`, as the welcome question names the system.
    pub fn os_text(&self) -> String {
        if self.distro.is_empty() || self.distro == "unknown" || self.distro == self.os {
            self.os.clone()
        } else {
            format!("{} ({})", self.os, self.distro)
        }
    }
}

/// The summary of an initialized session.
pub fn summary(session: &Session) -> Summary {
    let meta = session.metadata();
    let unsupported = meta.contains(keys::UNSUPPORTED);
    let (os, distro) = match session.inspection() {
        Some(i) if !i.os.is_unknown() => (i.os.family.clone(), i.os.distro.clone()),
        _ => (
            meta.get(keys::OSFAMILY)
                .unwrap_or(if unsupported {
                    "unsupported"
                } else {
                    "unknown"
                })
                .to_string(),
            meta.get(keys::OS).unwrap_or("unknown").to_string(),
        ),
    };
    let source_size = session.source().map(|s| s.size());
    let size = session.image_size().or(source_size).unwrap_or(0);
    let given = &session.options().source;
    Summary {
        os,
        distro,
        size_mib: size.div_ceil(1 << 20),
        shrunk: source_size.is_some_and(|s| size < s),
        source: std::path::absolute(given).unwrap_or_else(|_| given.clone()),
    }
}

/// Whether shrinking already made the image smaller (running system preparation on a
/// shrunk image is dangerous).
pub fn is_shrunk(session: &Session) -> bool {
    summary(session).shrunk
}

/// Whether the guest's files are open for changing (system preparation, Mount): not
/// for unsupported media, and not after shrinking until [`open_guest`] opens them again.
pub fn guest_is_open(session: &Session) -> bool {
    session.inspection().is_some_and(|i| i.guest.is_some())
}

/// Whether the shrink operation already ran. The last filesystem then has no free
/// space left, so running more system preparation on it is dangerous (the original
/// warned and let the user go on).
pub fn shrink_ran(session: &Session) -> bool {
    session.syspreps().is_some_and(|r| {
        r.get("shrink").is_err()
            && crate::sysprep::Registry::for_family(r.family())
                .get("shrink")
                .is_ok()
    })
}

/// Make sure the guest's files are open for changing: open them again if shrinking
/// closed them (the metadata is kept). Returns whether they are open; never for
/// unsupported media.
pub fn open_guest(session: &mut Session) -> Result<bool, SessionError> {
    if guest_is_open(session) {
        return Ok(true);
    }
    session.reopen_guest()
}

/// The default image name: the distribution, or the OS family when it is unknown.
pub fn default_image_name(session: &Session) -> String {
    let s = summary(session);
    if s.distro.is_empty() || s.distro == "unknown" {
        s.os
    } else {
        s.distro
    }
}

/// One snf-image deployment task the user may exclude.
#[derive(Debug)]
pub struct DeployTask {
    /// What the user sees.
    pub label: &'static str,
    /// The properties set to `yes` when it is excluded.
    pub properties: &'static [&'static str],
    /// The `OSFAMILY` values it applies to (`None`: every family).
    pub families: Option<&'static [&'static str]>,
    /// Families it never applies to.
    pub except: &'static [&'static str],
}

impl DeployTask {
    /// Whether the task applies to an image of `osfamily`.
    pub fn applies_to(&self, osfamily: &str) -> bool {
        let f = osfamily.to_ascii_lowercase();
        self.families.is_none_or(|fams| fams.contains(&f.as_str()))
            && !self.except.contains(&f.as_str())
    }
}

/// The deployment tasks of snf-image that can be excluded, in the original's order.
pub static DEPLOY_TASKS: &[DeployTask] = &[
    DeployTask {
        label: "Partition table manipulation",
        properties: &["EXCLUDE_TASK_FixPartitionTable"],
        families: None,
        except: &[],
    },
    DeployTask {
        label: "File system resize",
        properties: &[
            "EXCLUDE_TASK_FilesystemResizeUnmounted",
            "EXCLUDE_TASK_FilesystemResizeMounted",
        ],
        families: None,
        except: &[],
    },
    DeployTask {
        label: "Swap partition configuration",
        properties: &["EXCLUDE_TASK_AddSwap"],
        families: Some(&["linux"]),
        except: &[],
    },
    DeployTask {
        label: "SSH keys removal",
        properties: &["EXCLUDE_TASK_DeleteSSHKeys"],
        families: None,
        except: &["windows"],
    },
    DeployTask {
        label: "Temporal RDP disabling",
        properties: &["EXCLUDE_TASK_DisableRemoteDesktopConnections"],
        families: Some(&["windows"]),
        except: &[],
    },
    DeployTask {
        label: "SELinux relabeling at next boot",
        properties: &["EXCLUDE_TASK_SELinuxAutorelabel"],
        families: Some(&["linux"]),
        except: &[],
    },
    DeployTask {
        label: "Hostname/Computer Name assignment",
        properties: &["EXCLUDE_TASK_AssignHostname"],
        families: None,
        except: &[],
    },
    DeployTask {
        label: "Password change",
        properties: &["EXCLUDE_TASK_ChangePassword"],
        families: None,
        except: &[],
    },
    DeployTask {
        label: "Network configuration",
        properties: &["EXCLUDE_TASK_ConfigureNetwork"],
        families: None,
        except: &["windows"],
    },
    DeployTask {
        label: "File injection",
        properties: &["EXCLUDE_TASK_EnforcePersonality"],
        families: None,
        except: &[],
    },
];

/// The tasks that apply to an image of `osfamily`.
pub fn deploy_tasks_for(osfamily: &str) -> Vec<&'static DeployTask> {
    DEPLOY_TASKS
        .iter()
        .filter(|t| t.applies_to(osfamily))
        .collect()
}

/// The deployment tasks the user excluded. Kept apart from the properties (the user
/// does not edit them as properties) and added when the image is written or registered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exclusions {
    /// Labels of the excluded tasks (see [`DEPLOY_TASKS`]).
    pub tasks: BTreeSet<&'static str>,
    /// "No Config": exclude every task (`EXCLUDE_ALL_TASKS`).
    pub all: bool,
}

impl Exclusions {
    /// The properties these exclusions add.
    pub fn properties(&self) -> Metadata {
        let mut meta = Metadata::new();
        if self.all {
            // Constant, valid keys.
            let _ = meta.insert("EXCLUDE_ALL_TASKS", "yes");
        }
        for task in DEPLOY_TASKS.iter().filter(|t| self.tasks.contains(t.label)) {
            for key in task.properties {
                let _ = meta.insert(key, "yes");
            }
        }
        meta
    }
}

/// The properties written to `.meta`/`.variant` and sent to the image service: the
/// session's, plus the excluded deployment tasks.
pub fn export_metadata(session: &Session, exclusions: &Exclusions) -> Metadata {
    let mut meta = session.metadata().clone();
    meta.merge(&exclusions.properties());
    meta
}

/// How the properties changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetadataChanges {
    /// Keys that appeared, with their values.
    pub added: Vec<(String, String)>,
    /// Keys whose value changed: key, old value, new value.
    pub changed: Vec<(String, String, String)>,
    /// Keys that disappeared.
    pub removed: Vec<String>,
}

impl MetadataChanges {
    /// The changes from `before` to `after`.
    pub fn between(before: &Metadata, after: &Metadata) -> Self {
        let mut c = MetadataChanges::default();
        for (k, v) in after.iter() {
            match before.get(k) {
                None => c.added.push((k.to_string(), v.to_string())),
                Some(old) if old != v => {
                    c.changed
                        .push((k.to_string(), old.to_string(), v.to_string()))
                }
                Some(_) => {}
            }
        }
        c.removed = before
            .iter()
            .filter(|(k, _)| !after.contains(k))
            .map(|(k, _)| k.to_string())
            .collect();
        c
    }

    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

/// Run exactly the operations named in `selected` (the others are disabled) through
/// the session's own [`Stage::Sysprep`], then, when `shrink` was among them,
/// [`Stage::Shrink`] (which closes the guest tree: nothing can change the files after
/// it). Operations that ran are not offered again. Returns how the properties changed.
pub fn run_syspreps(
    session: &mut Session,
    selected: &[&str],
) -> Result<MetadataChanges, SessionError> {
    let before = session.metadata().clone();
    if let Some(registry) = session.syspreps_mut() {
        let names: Vec<&'static str> = registry.descriptors().iter().map(|d| d.name).collect();
        for name in names {
            if selected.contains(&name) {
                registry.enable(name)?;
            } else {
                registry.disable(name)?;
            }
        }
    }
    session.run_stage(Stage::Sysprep)?;
    if selected.contains(&"shrink") {
        session.run_stage(Stage::Shrink)?;
    }
    Ok(MetadataChanges::between(&before, session.metadata()))
}

/// Whether the VirtIO page is offered: a supported Windows guest, as the original.
pub fn virtio_available(session: &Session) -> bool {
    unsupported_reason(session).is_none()
        && session.metadata().get(crate::metadata::keys::OSFAMILY) == Some("windows")
}

/// The `virtio` parameter (a directory), whose file selector and check the VirtIO
/// page shares.
pub fn virtio_param() -> &'static crate::sysprep::ParamSpec {
    crate::sysprep::params::SPECS
        .iter()
        .find(|s| s.name == "virtio")
        .expect("the virtio parameter is declared")
}

/// What installing the drivers of `plan` would put in the guest, one driver a line,
/// after the drivers the guest has now.
pub fn virtio_plan_text(plan: &crate::virtio::Plan) -> String {
    let now = if plan.present.is_empty() {
        "none".to_string()
    } else {
        plan.present.join(", ")
    };
    let mut out = format!("VirtIO drivers in the image now: {now}\n");
    out += &format!("To install, for {} ({}):\n", plan.os, plan.decoration);
    for d in &plan.drivers {
        let files: Vec<String> = d
            .files
            .iter()
            .filter_map(|f| f.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        out.push_str(&format!("  {}: {}\n", d.name, files.join(", ")));
    }
    out
}

/// The names of the operations enabled by default that have not run yet (what the
/// wizard runs).
pub fn default_syspreps(session: &Session) -> Vec<&'static str> {
    session
        .syspreps()
        .map(|r| r.enabled().iter().map(|d| d.name).collect())
        .unwrap_or_default()
}

/// The files an extraction to `out` writes, that exist already.
pub fn existing_outputs(out: &Path) -> Vec<PathBuf> {
    snf_disk::output_files(out)
        .into_iter()
        .filter(|p| p.symlink_metadata().is_ok())
        .collect()
}

/// Check a path chosen for extraction: its directory exists, it is not a directory,
/// and none of its side files is a directory.
pub fn check_extract_path(out: &Path) -> Result<(), InteractiveError> {
    let bad = |msg: String| Err(InteractiveError::BadOutput(msg));
    if out.as_os_str().is_empty() || out.is_dir() || out.file_name().is_none() {
        return bad(format!("`{}' is not a valid file name", out.display()));
    }
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return bad(format!("`{}' is not an existing directory", dir.display()));
    }
    for side in snf_disk::output_files(out).iter().skip(1) {
        if side.is_dir() {
            return bad(format!("`{}' is a directory", side.display()));
        }
    }
    Ok(())
}

/// Check a path chosen for extraction against everything that makes it unusable,
/// before the user is asked anything about it: [`check_extract_path`], and none of the
/// files written may be one the source is made of (the source is never overwritten).
pub fn check_extract_target(session: &Session, out: &Path) -> Result<(), InteractiveError> {
    check_extract_path(out)?;
    if let Some(source) = session.source() {
        crate::options::check_outfile_against_source(out, source)
            .map_err(|e| InteractiveError::BadOutput(e.to_string()))?;
    }
    Ok(())
}

/// Keep the image prepared for upload ([`prepare_upload`]) as the local image `out`,
/// with its `.meta`, `.md5sum` and `.variant` files, without dumping the disk again:
/// the file is moved there when `out` is on the work directory's filesystem, else
/// copied (its holes stay holes). The files are those [`extract`] writes. `image` is
/// updated to the new place (it stays good for uploads).
pub fn keep_prepared(
    session: &Session,
    image: &mut ImageSource,
    out: &Path,
    exclusions: &Exclusions,
    reporter: &dyn Reporter,
) -> Result<WrittenImage, InteractiveError> {
    check_extract_target(session, out)?;
    let bad = |what: &str, e: std::io::Error| {
        InteractiveError::BadOutput(format!("cannot {what} {}: {e}", out.display()))
    };
    if let Ok(m) = std::fs::symlink_metadata(out) {
        if !m.is_file() {
            return Err(InteractiveError::BadOutput(format!(
                "`{}' exists and is not a regular file",
                out.display()
            )));
        }
    }
    match std::fs::rename(&image.path, out) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::XDEV.raw_os_error()) => {
            copy_sparse(&image.path, out, image.size, reporter).map_err(|e| bad("write", e))?;
        }
        Err(e) => return Err(bad("write", e)),
    }
    image.path = out.to_path_buf();
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let meta = export_metadata(session, exclusions);
    snf_disk::write_side_files(out, &name, &image.md5, meta.as_map())?;
    reporter.success(&format!(
        "Image file {} was successfully created (md5sum {})",
        out.display(),
        image.md5
    ));
    Ok(WrittenImage {
        path: out.to_path_buf(),
        md5_hex: image.md5.clone(),
        size: image.size,
    })
}

/// Copy the `size` bytes of `from` to `to` (through a temporary file beside it),
/// leaving its holes as holes; cancellable.
fn copy_sparse(from: &Path, to: &Path, size: u64, reporter: &dyn Reporter) -> std::io::Result<()> {
    use rustix::fs::SeekFrom;
    use std::os::unix::fs::FileExt;
    let src = std::fs::File::open(from)?;
    let dir = match to.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".snf-image-creator.")
        .tempfile_in(dir)?;
    let task = reporter.task("Copying image file", size, snf_core::report::Unit::Bytes);
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0u64;
    while pos < size {
        let data = match rustix::fs::seek(&src, SeekFrom::Data(pos)) {
            Ok(d) => d,
            Err(rustix::io::Errno::NXIO) => break,
            Err(e) => return Err(e.into()),
        };
        let hole = rustix::fs::seek(&src, SeekFrom::Hole(data))?.min(size);
        let mut at = data;
        while at < hole {
            snf_core::cancel::check().map_err(std::io::Error::other)?;
            let n = ((hole - at) as usize).min(buf.len());
            src.read_exact_at(&mut buf[..n], at)?;
            tmp.as_file().write_all_at(&buf[..n], at)?;
            at += n as u64;
            task.set_position(at);
        }
        pos = hole.max(data + 1);
    }
    tmp.as_file().set_len(size)?;
    tmp.persist(to).map_err(|e| e.error)?;
    task.finish("done");
    Ok(())
}

/// Write the image to `out` with its `.meta`, `.md5sum` and `.variant` files (the
/// properties include the exclusions). The variant's `IMG_ID` is the file's name, as
/// the original dialog wrote it; the files are those `snf-mkimage -o NAME` writes when
/// run in `out`'s directory. Free filesystem blocks are written as zeros, as the
/// session's own dump does.
pub fn extract(
    session: &mut Session,
    out: &Path,
    exclusions: &Exclusions,
    reporter: &dyn Reporter,
) -> Result<WrittenImage, InteractiveError> {
    check_extract_target(session, out)?;
    session.update_free_ranges()?;
    let (Some(disk), Some(size)) = (session.working_disk(), session.image_size()) else {
        return Err(InteractiveError::NotReady);
    };
    let summary = snf_disk::dump(disk, size, session.free_ranges(), out, reporter)?;
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let meta = export_metadata(session, exclusions);
    snf_disk::write_side_files(out, &name, &summary.md5_hex, meta.as_map())?;
    reporter.success(&format!(
        "Image file {} was successfully created (md5sum {})",
        out.display(),
        summary.md5_hex
    ));
    Ok(WrittenImage {
        path: out.to_path_buf(),
        md5_hex: summary.md5_hex,
        size,
    })
}

/// The image as it is now, ready to upload: dumped (free blocks as zeros, so that they
/// never travel) into the work directory, with its MD5. The file goes with the session.
pub fn prepare_upload(
    session: &mut Session,
    reporter: &dyn Reporter,
) -> Result<ImageSource, InteractiveError> {
    session.update_free_ranges()?;
    let (Some(disk), Some(size), Some(dir)) = (
        session.working_disk(),
        session.image_size(),
        session.work_dir(),
    ) else {
        return Err(InteractiveError::NotReady);
    };
    let path = dir.join("upload.diskdump");
    // The file is private to the work directory: errors name what it is for.
    let summary = snf_disk::dump_named(
        disk,
        size,
        session.free_ranges(),
        &path,
        "the image to upload",
        reporter,
    )?;
    Ok(ImageSource {
        path,
        size,
        md5: summary.md5_hex,
    })
}

/// An image uploaded to one cloud (kept per cloud by the front-end, for registering).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    /// The container.
    pub container: String,
    /// The object name.
    pub object: String,
    /// What was uploaded.
    pub image: ImageSource,
}

/// Upload `image` (from [`prepare_upload`]) as `container/object` with its `.md5sum`.
pub fn upload(
    cloud: &Cloud,
    container: &str,
    object: &str,
    image: &ImageSource,
    reporter: &dyn Reporter,
) -> Result<Uploaded, InteractiveError> {
    cloud.store().ensure_container(container)?;
    cloud.upload_image(container, object, image, reporter)?;
    Ok(Uploaded {
        container: container.to_string(),
        object: object.to_string(),
        image: image.clone(),
    })
}

/// The remote objects an upload of `object` (and a registration, with `register`)
/// would overwrite.
pub fn existing_remote(
    cloud: &Cloud,
    container: &str,
    object: &str,
    register: bool,
) -> Result<Vec<String>, InteractiveError> {
    let mut names = vec![object.to_string(), format!("{object}.md5sum")];
    if register {
        names.push(format!("{object}.meta"));
    }
    let mut found = Vec::new();
    for n in names {
        if cloud.store().exists(container, &n)? {
            found.push(n);
        }
    }
    Ok(found)
}

/// Register an uploaded image as `name` (private unless `public`), with the session's
/// properties plus the exclusions; returns the image service's answer.
pub fn register(
    session: &Session,
    cloud: &Cloud,
    uploaded: &Uploaded,
    name: &str,
    public: bool,
    exclusions: &Exclusions,
    reporter: &dyn Reporter,
) -> Result<serde_json::Value, InteractiveError> {
    let meta = export_metadata(session, exclusions);
    Ok(cloud.register(
        &uploaded.container,
        &uploaded.object,
        name,
        &uploaded.image,
        meta.as_map(),
        public,
        reporter,
    )?)
}

/// Upload `image` as `container/object` and register it as `name` in one go, as
/// `snf-mkimage -u -r` does: the data crosses the network once (Glance receives it
/// directly; Plankton points at the Pithos object), and every refusal that can be known
/// comes before the first data byte. Returns what the front-end keeps for the cloud,
/// and the image service's answer.
#[allow(clippy::too_many_arguments)]
pub fn publish(
    session: &Session,
    cloud: &Cloud,
    container: &str,
    object: &str,
    image: &ImageSource,
    name: &str,
    public: bool,
    exclusions: &Exclusions,
    reporter: &dyn Reporter,
) -> Result<(Uploaded, serde_json::Value), InteractiveError> {
    let meta = export_metadata(session, exclusions);
    let publication = snf_cloud::Publication {
        container,
        object,
        register: Some(snf_cloud::ImageSpec {
            name,
            properties: meta.as_map(),
            public,
        }),
        force: false,
    };
    let done = cloud.publish(&publication, image, reporter)?;
    let uploaded = Uploaded {
        container: container.to_string(),
        object: object.to_string(),
        image: image.clone(),
    };
    Ok((uploaded, done.answer.unwrap_or(serde_json::Value::Null)))
}

/// The OS family system preparation uses for this session.
pub fn os_family(session: &Session) -> OsFamily {
    crate::sysprep::GuestOs::from_metadata(session.metadata()).family
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_keeps_the_data_and_the_holes() {
        use std::os::unix::fs::{FileExt, MetadataExt};
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("a"), dir.path().join("b"));
        let f = std::fs::File::create(&from).unwrap();
        let size = 64u64 << 20;
        f.set_len(size).unwrap();
        f.write_all_at(&[7u8; 4096], 1 << 20).unwrap();
        f.write_all_at(&[9u8; 100], size - 100).unwrap();
        drop(f);
        copy_sparse(&from, &to, size, snf_core::report::quiet().as_ref()).unwrap();
        assert_eq!(std::fs::read(&from).unwrap(), std::fs::read(&to).unwrap());
        let blocks = std::fs::metadata(&to).unwrap().blocks() * 512;
        assert!(
            blocks < 1 << 20,
            "holes stay holes: {blocks} bytes allocated"
        );
    }

    #[test]
    fn utc_dates_and_object_names() {
        assert_eq!(utc_date_time(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(utc_date_time(951_782_400 + 3661), (2000, 2, 29, 1, 1, 1));
        assert_eq!(utc_date_time(1_767_225_599), (2025, 12, 31, 23, 59, 59));
        assert_eq!(
            timestamped_object_name("debian", 1_767_225_599),
            "debian-202512312359.diskdump"
        );
    }

    #[test]
    fn deploy_tasks_are_filtered_by_family() {
        let linux: Vec<_> = deploy_tasks_for("linux").iter().map(|t| t.label).collect();
        assert_eq!(linux.len(), 9);
        assert!(!linux.contains(&"Temporal RDP disabling"));
        let windows: Vec<_> = deploy_tasks_for("windows")
            .iter()
            .map(|t| t.label)
            .collect();
        assert_eq!(
            windows,
            vec![
                "Partition table manipulation",
                "File system resize",
                "Temporal RDP disabling",
                "Hostname/Computer Name assignment",
                "Password change",
                "File injection"
            ]
        );
        assert_eq!(deploy_tasks_for("freebsd").len(), 7);
    }

    #[test]
    fn exclusions_become_properties() {
        let mut e = Exclusions::default();
        e.tasks.insert("File system resize");
        let p = e.properties();
        let keys: Vec<_> = p.iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            vec![
                "EXCLUDE_TASK_FILESYSTEMRESIZEMOUNTED",
                "EXCLUDE_TASK_FILESYSTEMRESIZEUNMOUNTED"
            ]
        );
        e.all = true;
        assert_eq!(e.properties().get("EXCLUDE_ALL_TASKS"), Some("yes"));
    }

    #[test]
    fn metadata_changes_list_added_changed_removed() {
        let mut a = Metadata::new();
        a.insert("OS", "debian").unwrap();
        a.insert("USERS", "root user").unwrap();
        let mut b = a.clone();
        b.insert("USERS", "root").unwrap();
        b.insert("SWAP", "2:72").unwrap();
        b.remove("OS");
        let c = MetadataChanges::between(&a, &b);
        assert_eq!(c.added, vec![("SWAP".into(), "2:72".into())]);
        assert_eq!(
            c.changed,
            vec![("USERS".into(), "root user".into(), "root".into())]
        );
        assert_eq!(c.removed, vec!["OS".to_string()]);
    }
}
