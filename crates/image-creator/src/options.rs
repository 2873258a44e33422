//! What one run should do: the options both front-ends fill in (the CLI from its
//! arguments, the UI from its screens) and the checks on them that do not depend on
//! the front-end.

use std::path::{Path, PathBuf};

use crate::metadata::Metadata;

/// The object-store container used when none is given.
pub const DEFAULT_CONTAINER: &str = "images";

/// A run option that is wrong (bad path, existing output ...), or a feature that is not
/// available yet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    /// The source does not exist, is a dangling or looping symlink, or cannot be read;
    /// `problem` says which.
    #[error("Input media `{path}' {problem}")]
    SourceNotAccessible { path: String, problem: String },
    /// `--tmpdir` is not an existing directory.
    #[error("The directory `{0}' specified with --tmpdir is not valid")]
    BadTmpdir(String),
    /// `--tmpdir` cannot be written to (permissions, a read-only filesystem).
    #[error("The directory `{0}' specified with --tmpdir is not writable")]
    TmpdirNotWritable(String),
    /// The directory part of the output path does not exist.
    #[error("`{0}' is not an existing directory")]
    OutputDirMissing(String),
    /// The directory part of the output path cannot be written to.
    #[error("The directory `{0}' is not writable")]
    OutputDirNotWritable(String),
    /// The output path has no file name (`dir/`, `.`, `..`).
    #[error("`{0}' is not a valid file name")]
    OutputNotAFileName(String),
    /// The output path names an existing directory.
    #[error("Output file `{0}' is an existing directory")]
    OutputIsDirectory(String),
    /// An output file (the image or a side file) is the source or one of the files it
    /// is made of, under whatever name: writing it would destroy the user's image.
    #[error("{}", output_is_source(.output, .file, .source_path))]
    OutputIsSource {
        output: String,
        file: String,
        source_path: String,
    },
    /// An output file exists and `--force` was not given.
    #[error("Output file `{0}' exists (use --force to overwrite it).")]
    OutputExists(String),
    /// Features that were asked for but are not implemented yet.
    #[error("{}", .0.join("; "))]
    NotSupported(Vec<&'static str>),
    /// Options that contradict each other or are incomplete (see
    /// [`RunOptions::check_combination`]).
    #[error("{0}")]
    Conflict(String),
}

impl OptionsError {
    /// Whether the error is about the command line itself (front-ends exit 2), as
    /// opposed to a feature that is not available (exit 1).
    pub fn is_usage(&self) -> bool {
        !matches!(self, OptionsError::NotSupported(_))
    }
}

/// Which `--print-*` reports were asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrintRequest {
    /// `--print-metadata`
    pub metadata: bool,
    /// `--print-syspreps`
    pub syspreps: bool,
    /// `--print-sysprep-params`
    pub sysprep_params: bool,
}

impl PrintRequest {
    /// Whether any report was asked for.
    pub fn any(&self) -> bool {
        self.metadata || self.syspreps || self.sysprep_params
    }
}

/// Cloud account, upload and registration options, as given (not yet resolved).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CloudOptions {
    /// `-a URL`: authentication (Astakos/Keystone) URL.
    pub auth_url: Option<String>,
    /// `-t TOKEN`: authentication token.
    pub token: Option<String>,
    /// `-c NAME`: a saved cloud account.
    pub cloud: Option<String>,
    /// `--container NAME`: container for the uploaded objects ([`DEFAULT_CONTAINER`] if
    /// `None`).
    pub container: Option<String>,
    /// `-u NAME`: upload the image as this object.
    pub upload: Option<String>,
    /// `-r NAME`: register the uploaded image under this name.
    pub register: Option<String>,
    /// `--public`: register the image as public.
    pub public: bool,
}

impl CloudOptions {
    /// Whether any cloud option at all was given.
    pub fn any(&self) -> bool {
        self.auth_url.is_some()
            || self.token.is_some()
            || self.cloud.is_some()
            || self.container.is_some()
            || self.upload.is_some()
            || self.register.is_some()
            || self.public
    }

    /// The container to upload into.
    pub fn container(&self) -> &str {
        self.container.as_deref().unwrap_or(DEFAULT_CONTAINER)
    }
}

/// Everything one run should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOptions {
    /// The source medium: image file, block device, or `/`.
    pub source: PathBuf,
    /// `-o FILE`: where to write the image (side files go beside it).
    pub outfile: Option<PathBuf>,
    /// `-f`: overwrite existing output files (and remote objects).
    pub force: bool,
    /// `--tmpdir DIR`: where the work directory is created.
    pub tmpdir: Option<PathBuf>,
    /// `false` with `--no-snapshot`: work on the source itself.
    pub snapshot: bool,
    /// `false` with `--no-sysprep`: no system preparation (and no shrink).
    pub sysprep: bool,
    /// `--allow-unsupported`: go on with media inspection flags as unsupported.
    pub allow_unsupported: bool,
    /// `-m KEY=VALUE`: properties that override the detected ones.
    pub metadata: Metadata,
    /// `--enable-sysprep NAME` (applied after the disables).
    pub enable_syspreps: Vec<String>,
    /// `--disable-sysprep NAME`.
    pub disable_syspreps: Vec<String>,
    /// `--sysprep-param KEY=VALUE`, in the order given.
    pub sysprep_params: Vec<(String, String)>,
    /// `--host-run SCRIPT`, in the order given.
    pub host_run: Vec<PathBuf>,
    /// `--host-run-timeout SECONDS`: how long one `--host-run` script may run before it
    /// is killed and the run fails; `None` waits as long as it takes.
    pub host_run_timeout: Option<std::time::Duration>,
    /// `--install-virtio DIR` (Windows only).
    pub install_virtio: Option<PathBuf>,
    /// `--print-*`.
    pub print: PrintRequest,
    /// Cloud options.
    pub cloud: CloudOptions,
    /// `--dry-run`: report what would change, write nothing.
    pub dry_run: bool,
}

impl RunOptions {
    /// Options for a run on `source` with everything else at its default.
    pub fn new(source: impl Into<PathBuf>) -> Self {
        RunOptions {
            source: source.into(),
            outfile: None,
            force: false,
            tmpdir: None,
            snapshot: true,
            sysprep: true,
            allow_unsupported: false,
            metadata: Metadata::new(),
            enable_syspreps: Vec::new(),
            disable_syspreps: Vec::new(),
            sysprep_params: Vec::new(),
            host_run: Vec::new(),
            host_run_timeout: None,
            install_virtio: None,
            print: PrintRequest::default(),
            cloud: CloudOptions::default(),
            dry_run: false,
        }
    }

    /// Whether the run produces an image (a file or an upload), as opposed to only
    /// printing information about the source.
    pub fn produces_image(&self) -> bool {
        self.outfile.is_some() || self.cloud.upload.is_some()
    }

    /// The features this run asks for that are not implemented yet, one phrase each.
    ///
    /// Nothing is ever silently ignored: each feature has one check here, to be removed
    /// when the feature lands.
    pub fn unsupported(&self) -> Vec<&'static str> {
        Vec::new()
    }

    /// Options that were given but have no effect in this run, one sentence each (the
    /// session reports them as warnings: nothing is silently ignored).
    pub fn ineffective(&self) -> Vec<&'static str> {
        let mut unused = Vec::new();
        let c = &self.cloud;
        if c.upload.is_none()
            && (c.auth_url.is_some()
                || c.token.is_some()
                || c.cloud.is_some()
                || c.container.is_some())
        {
            unused.push("-a, -t, -c and --container have no effect without -u");
        }
        if c.upload.is_some() && c.auth_url.is_some() && c.token.is_some() && c.cloud.is_some() {
            unused.push("-c is not used: -a and -t are given, and they win");
        }
        if !self.sysprep && !self.disable_syspreps.is_empty() {
            unused.push("--disable-sysprep has no effect with --no-sysprep");
        }
        if !self.sysprep && !self.sysprep_params.is_empty() && !self.print.sysprep_params {
            unused.push("--sysprep-param has no effect with --no-sysprep");
        }
        if self.host_run_timeout.is_some() && self.host_run.is_empty() {
            unused.push("--host-run-timeout has no effect without --host-run");
        }
        if self.force && !self.produces_image() {
            unused.push("-f has no effect without -o or -u");
        }
        unused
    }

    /// Refuse options that contradict each other or are incomplete; the decisions are
    /// the table in README.md (snf-mkimage section). Options that are merely useless
    /// are warnings instead ([`RunOptions::ineffective`]): the original accepted them
    /// and scripts may pass them.
    pub fn check_combination(&self) -> Result<(), OptionsError> {
        let conflict = |msg: String| Err(OptionsError::Conflict(msg));
        let c = &self.cloud;
        for (value, option) in [
            (&c.upload, "-u/--upload"),
            (&c.register, "-r/--register"),
            (&c.cloud, "-c/--cloud"),
            (&c.container, "--container"),
            (&c.auth_url, "-a/--authentication-url"),
            (&c.token, "-t/--token"),
        ] {
            if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                return conflict(format!("{option} needs a value, not an empty one"));
            }
        }
        if c.register.is_some() && c.upload.is_none() {
            return conflict("You also need to set -u when -r option is set".into());
        }
        if c.upload.is_some() && (c.token.is_none() || c.auth_url.is_none()) && c.cloud.is_none() {
            return conflict(
                "Image uploading cannot be performed. You need to either specify an \
                 authentication URL and token pair or an available cloud name."
                    .into(),
            );
        }
        if c.auth_url.is_some() != c.token.is_some() {
            return conflict(
                "-a/--authentication-url and -t/--token go together: give both, or -c instead"
                    .into(),
            );
        }
        if c.public && c.register.is_none() {
            return conflict("--public only makes sense with -r (registering the image)".into());
        }
        if !self.sysprep {
            if let Some(name) = self.enable_syspreps.first() {
                return conflict(format!(
                    "--enable-sysprep `{name}' contradicts --no-sysprep"
                ));
            }
        }
        let key = |n: &String| n.trim().to_ascii_lowercase().replace('_', "-");
        if let Some(name) = self
            .enable_syspreps
            .iter()
            .find(|e| self.disable_syspreps.iter().any(|d| key(d) == key(e)))
        {
            return conflict(format!(
                "sysprep `{name}' is given to both --disable-sysprep and --enable-sysprep"
            ));
        }
        if !self.snapshot && self.dry_run {
            return conflict(
                "--no-snapshot (change the source itself) contradicts --dry-run (write nothing)"
                    .into(),
            );
        }
        Ok(())
    }

    /// `Err(OptionsError::NotSupported)` listing every unimplemented feature asked for.
    pub fn check_supported(&self) -> Result<(), OptionsError> {
        let missing = self.unsupported();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(OptionsError::NotSupported(missing))
        }
    }
}

/// Whether `path` names the running system's `/` (host bundling).
pub fn is_host_root(path: &Path) -> bool {
    std::fs::canonicalize(path)
        .map(|p| p == Path::new("/"))
        .unwrap_or(false)
}

/// The source must exist (a file, a block device, or `/`) and a file or device must be
/// readable. The error says which of missing, dangling symlink, symlink loop or
/// unreadable it is.
pub fn check_source(source: &Path) -> Result<(), OptionsError> {
    let not_accessible = |problem: String| OptionsError::SourceNotAccessible {
        path: display(source),
        problem,
    };
    let meta = std::fs::metadata(source)
        .map_err(|e| not_accessible(snf_disk::media::stat_problem(source, &e)))?;
    let ft = meta.file_type();
    // Only these are opened: opening a FIFO would block (the examination refuses it).
    if ft.is_file() || std::os::unix::fs::FileTypeExt::is_block_device(&ft) {
        if let Err(e) = std::fs::File::open(source) {
            return Err(not_accessible(format!(
                "cannot be read: {}",
                snf_disk::media::io_reason(&e).to_lowercase()
            )));
        }
    }
    Ok(())
}

/// The message of [`OptionsError::OutputIsSource`]: the same file may be spelled three
/// ways, and the message only shows the spellings that differ.
fn output_is_source(output: &str, file: &str, source: &str) -> String {
    let what = if file == source {
        format!("the source `{source}'")
    } else {
        format!("`{file}', a file the source `{source}' is made of")
    };
    if output == file {
        format!("Output file `{output}' is {what}: refusing to overwrite it")
    } else {
        format!("Output file `{output}' is {what}, under another name: refusing to overwrite it")
    }
}

/// No output file (the image or a side file) may be the source or a file it is made of
/// (backing file, VMDK extent, qcow2 data file), whatever the path's spelling: files are
/// compared by device and inode.
pub fn check_outfile_against_source(
    path: &Path,
    source: &snf_disk::Source,
) -> Result<(), OptionsError> {
    if snf_disk::dump::is_dev_null(path) {
        return Ok(());
    }
    for name in snf_disk::output_files(path) {
        if let Some(file) = source.file_named_by(&name) {
            return Err(OptionsError::OutputIsSource {
                output: display(&name),
                file: display(file),
                source_path: display(source.given()),
            });
        }
    }
    Ok(())
}

/// `--tmpdir` must be an existing directory the user can create files in.
pub fn check_tmpdir(dir: &Path) -> Result<(), OptionsError> {
    if !dir.is_dir() {
        return Err(OptionsError::BadTmpdir(display(dir)));
    }
    let access = rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK;
    if rustix::fs::access(dir, access).is_err() {
        return Err(OptionsError::TmpdirNotWritable(display(dir)));
    }
    Ok(())
}

/// Where the image goes, once the output path has been checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputTarget {
    /// A regular file (and its side files), path as given.
    File(PathBuf),
    /// The path resolves to `/dev/null`: nothing is written.
    Null,
}

/// Check an `-o FILE` path: its directory exists and is writable, it has a file name,
/// and unless `force`, neither it nor any of its side files exists.
pub fn check_outfile(path: &Path, force: bool) -> Result<OutputTarget, OptionsError> {
    if snf_disk::dump::is_dev_null(path) {
        return Ok(OutputTarget::Null);
    }
    let text = path.as_os_str().as_encoded_bytes();
    if path.is_dir() {
        return Err(OptionsError::OutputIsDirectory(display(path)));
    }
    if text.is_empty() || text.ends_with(b"/") || path.file_name().is_none() {
        return Err(OptionsError::OutputNotAFileName(display(path)));
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(OptionsError::OutputDirMissing(display(dir)));
    }
    if rustix::fs::access(dir, rustix::fs::Access::WRITE_OK).is_err() {
        return Err(OptionsError::OutputDirNotWritable(display(dir)));
    }
    if !force {
        for name in snf_disk::output_files(path) {
            if name.symlink_metadata().is_ok() {
                return Err(OptionsError::OutputExists(display(&name)));
            }
        }
    }
    Ok(OutputTarget::File(path.to_path_buf()))
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outfile_checks() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("img.raw");
        assert_eq!(
            check_outfile(&out, false).unwrap(),
            OutputTarget::File(out.clone())
        );
        std::fs::write(dir.path().join("img.raw.variant"), "x").unwrap();
        let err = check_outfile(&out, false).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "Output file `{}.variant' exists (use --force to overwrite it).",
                out.display()
            )
        );
        assert!(check_outfile(&out, true).is_ok());
        assert!(matches!(
            check_outfile(&dir.path().join("nodir/img"), false),
            Err(OptionsError::OutputDirMissing(_))
        ));
        let slash = PathBuf::from(format!("{}/", dir.path().display()));
        assert!(matches!(
            check_outfile(&slash, false),
            Err(OptionsError::OutputIsDirectory(_))
        ));
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        assert_eq!(
            check_outfile(&sub, true).unwrap_err().to_string(),
            format!("Output file `{}' is an existing directory", sub.display())
        );
        assert!(matches!(
            check_outfile(&dir.path().join("nosuch/"), false),
            Err(OptionsError::OutputDirMissing(_) | OptionsError::OutputNotAFileName(_))
        ));
        assert_eq!(
            check_outfile(Path::new("/dev/null"), false).unwrap(),
            OutputTarget::Null
        );
    }

    #[test]
    fn source_problems_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let msg = |p: &Path| check_source(p).unwrap_err().to_string();
        let missing = dir.path().join("missing.img");
        assert_eq!(
            msg(&missing),
            format!("Input media `{}' does not exist", missing.display())
        );
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink(&missing, &dangling).unwrap();
        assert!(
            msg(&dangling).contains("is a dangling symbolic link"),
            "{}",
            msg(&dangling)
        );
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::os::unix::fs::symlink(&b, &a).unwrap();
        std::os::unix::fs::symlink(&a, &b).unwrap();
        assert!(
            msg(&a).ends_with("is a symbolic link that loops"),
            "{}",
            msg(&a)
        );
        let file = dir.path().join("disk.img");
        std::fs::write(&file, [0u8; 512]).unwrap();
        assert!(check_source(&file).is_ok());
    }

    #[test]
    fn unsupported_features_are_listed() {
        let mut o = RunOptions::new("/nonexistent");
        o.outfile = Some("x".into());
        o.cloud.token = Some("t".into());
        o.host_run.push("s".into());
        o.install_virtio = Some("/tmp".into());
        assert!(o.check_supported().is_ok(), "{:?}", o.unsupported());
    }

    #[test]
    fn contradictions_are_usage_errors_and_useless_options_warnings() {
        let base = || {
            let mut o = RunOptions::new("/nonexistent");
            o.outfile = Some("x".into());
            o
        };
        let refused = |o: RunOptions, needle: &str| {
            let e = o.check_combination().unwrap_err();
            assert!(e.is_usage(), "{e}");
            assert!(e.to_string().contains(needle), "{needle}: {e}");
        };
        assert!(base().check_combination().is_ok());
        let mut o = base();
        o.sysprep = false;
        o.enable_syspreps.push("cleanup-log".into());
        refused(o, "`cleanup-log' contradicts --no-sysprep");
        let mut o = base();
        o.disable_syspreps.push("Cleanup_Log".into());
        o.enable_syspreps.push("cleanup-log".into());
        refused(o, "both --disable-sysprep and --enable-sysprep");
        let mut o = base();
        o.snapshot = false;
        o.dry_run = true;
        refused(o, "--dry-run");
        let mut o = base();
        o.cloud.register = Some("n".into());
        refused(o, "-u when -r");
        let mut o = base();
        o.cloud.token = Some("t".into());
        refused(o, "go together");
        let mut o = base();
        o.cloud.public = true;
        refused(o, "--public");
        let mut o = base();
        o.cloud.upload = Some(" ".into());
        o.cloud.cloud = Some("c".into());
        refused(o, "-u/--upload needs a value");

        let mut o = base();
        o.sysprep = false;
        o.disable_syspreps.push("cleanup-log".into());
        o.sysprep_params.push(("default_user".into(), "x".into()));
        o.host_run_timeout = Some(std::time::Duration::from_secs(1));
        assert!(o.check_combination().is_ok());
        let warned = o.ineffective();
        assert_eq!(warned.len(), 3, "{warned:?}");
        o.print.sysprep_params = true;
        assert_eq!(o.ineffective().len(), 2);
        assert!(!OptionsError::NotSupported(vec!["x"]).is_usage());
    }
}
