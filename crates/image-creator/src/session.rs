//! One run of the pipeline: the stages in order, progress through the front-end's
//! [`Reporter`], cancellation, cleanup.
//!
//! A front-end creates a [`Session`] from [`RunOptions`] and a reporter, then drives it:
//! the CLI calls [`Session::prepare`], prints what was asked for, then
//! [`Session::finish`]; the UI may call [`Session::run_next`] one stage at a time.
//!
//! The session owns all temporary state (the work directory, the working disk and its
//! private copy). Dropping it, after success, an error or a cancellation, removes all
//! of it; the image files are written under temporary names and renamed into place
//! only when complete, so a failed run leaves no output behind either.
//!
//! Stages not written yet are seams, each marked `SEAM` below: inspection, VirtIO
//! installation, `--host-run`, system preparation, shrink and the cloud upload.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use snf_core::cancel::{self, Cancelled};
use snf_core::report::SharedReporter;
use snf_disk::partition::{self, Layout, PartitionError};
use snf_disk::{
    DumpError, MediaError, SnapshotError, SnapshotMode, Source, SourceKind, WorkDir, WorkDirError,
    WorkingDisk,
};

use crate::inspect::{self, InspectError, Inspection};
use crate::metadata::Metadata;
use crate::options::{self, OptionsError, RunOptions};
use crate::private_names::PrivateNames;
use crate::shrink::{self, ShrinkError, ShrinkOptions};
use crate::sysprep::{
    self, GuestOs, MountedFs, OpReport, Params, Registry, SysprepContext, SysprepError,
};
use crate::volumes::{self, GatheringOpener, Volumes};

/// One step of a run, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// Authenticate to the cloud and check the remote objects (only with `-u`), before
    /// any local work, so a bad account or an existing object stops the run at once.
    ConnectCloud,
    /// What the source is: format, size.
    ExamineSource,
    /// The private scratch directory.
    CreateWorkDir,
    /// The raw disk every later stage uses (the source is never written).
    OpenWorkingDisk,
    /// MBR/GPT: sets `PARTITION_TABLE`.
    ReadPartitionTable,
    /// Operating system detection and the metadata it computes.
    Inspect,
    /// `-m` values override detected ones; unsupported media are refused here.
    MergeMetadata,
    /// `--install-virtio` (Windows only).
    InstallVirtio,
    /// `--host-run` scripts.
    HostRun,
    /// System preparation operations.
    Sysprep,
    /// Shrinking the last filesystem and the disk.
    Shrink,
    /// Writing `-o FILE` and its side files, with the MD5.
    Dump,
    /// Upload to a cloud and registration.
    Upload,
}

impl Stage {
    /// Every stage, in order.
    pub const ALL: [Stage; 13] = [
        Stage::ConnectCloud,
        Stage::ExamineSource,
        Stage::CreateWorkDir,
        Stage::OpenWorkingDisk,
        Stage::ReadPartitionTable,
        Stage::Inspect,
        Stage::MergeMetadata,
        Stage::InstallVirtio,
        Stage::HostRun,
        Stage::Sysprep,
        Stage::Shrink,
        Stage::Dump,
        Stage::Upload,
    ];

    /// The last stage of [`Session::prepare`]: after it, the metadata is final and the
    /// front-end prints what was asked for.
    pub const LAST_PREPARE: Stage = Stage::MergeMetadata;

    fn index(self) -> usize {
        Stage::ALL.iter().position(|s| *s == self).unwrap_or(0)
    }

    /// A short name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Stage::ConnectCloud => "connecting to the cloud",
            Stage::ExamineSource => "examining the source",
            Stage::CreateWorkDir => "creating the work directory",
            Stage::OpenWorkingDisk => "opening the working disk",
            Stage::ReadPartitionTable => "reading the partition table",
            Stage::Inspect => "inspecting the operating system",
            Stage::MergeMetadata => "merging the metadata",
            Stage::InstallVirtio => "installing VirtIO drivers",
            Stage::HostRun => "running the --host-run scripts",
            Stage::Sysprep => "system preparation",
            Stage::Shrink => "shrinking",
            Stage::Dump => "writing the image",
            Stage::Upload => "uploading",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Bad run options, or a feature that is not available yet.
    #[error(transparent)]
    Options(#[from] OptionsError),
    /// The source cannot be used.
    #[error(transparent)]
    Media(#[from] MediaError),
    /// The work directory cannot be created or is too small.
    #[error(transparent)]
    WorkDir(#[from] WorkDirError),
    /// The working disk cannot be opened or copied.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// The partition table is unreadable or corrupt.
    #[error("cannot read the partition table of {}: {source}", .path.display())]
    PartitionTable {
        /// The source, as given.
        path: PathBuf,
        /// What is wrong with the table.
        #[source]
        source: PartitionError,
    },
    /// The media is not supported and `allow_unsupported` was not set.
    #[error("{}: the media is not supported: {reason} (use --allow-unsupported to create an image anyway)", .path.display())]
    Unsupported {
        /// The source, as given.
        path: PathBuf,
        /// Why (the `UNSUPPORTED` property).
        reason: String,
    },
    /// Inspection could not read the image.
    #[error(transparent)]
    Inspect(#[from] InspectError),
    /// Writing the image or its side files failed.
    #[error(transparent)]
    Dump(#[from] DumpError),
    /// A system preparation operation (or its selection or parameters) failed.
    #[error(transparent)]
    Sysprep(#[from] SysprepError),
    /// Shrinking the image failed.
    #[error(transparent)]
    Shrink(#[from] ShrinkError),
    /// Replaying the journal of an uncleanly unmounted filesystem failed.
    /// (The volume is named as messages name it: `partition N` or `LV vg/lv`.)
    #[error("cannot recover the journal of {0}: {1}")]
    Recovery(String, #[source] snf_guestfs::Error),
    /// A `--host-run` script failed, or the guest could not be mounted for it.
    #[error(transparent)]
    HostRun(#[from] crate::hostrun::HostRunError),

    #[error(transparent)]
    Virtio(#[from] crate::virtio::VirtioError),
    /// Authentication, upload or registration failed.
    #[error(transparent)]
    Cloud(#[from] snf_cloud::CloudError),
    /// The user cancelled.
    #[error(transparent)]
    Cancelled(#[from] Cancelled),
    /// An error whose message named a private file of the work directory (the working
    /// copy as a library saw it): the same message with those files named by what they
    /// are. See [`Session::run_stage`].
    #[error("{message}")]
    Private {
        /// The message as shown.
        message: String,
        /// The error as it was.
        #[source]
        source: Box<SessionError>,
    },
    /// Uploading or registering a Windows image that was not generalized, without
    /// `force`.
    #[error("{}: {reason}; use -f (--force) to upload it anyway", .path.display())]
    NotGeneralized {
        /// The source, as given.
        path: PathBuf,
        /// Why (see [`crate::inspect::windows::WindowsInfo::publish_warning`]).
        reason: String,
    },
    /// A front-end called a stage before the one it depends on.
    #[error("internal error: {stage} needs {needs} first")]
    OutOfOrder {
        /// The stage called.
        stage: Stage,
        /// What it needs.
        needs: &'static str,
    },
}

impl SessionError {
    /// Whether the error is about the options themselves (a bad command line: the CLI
    /// exits 2), found by [`check_options`] or later by a stage.
    pub fn is_usage(&self) -> bool {
        match self {
            SessionError::Options(e) => e.is_usage(),
            SessionError::Media(e) => e.is_usage(),
            SessionError::Sysprep(e) => e.is_usage(),
            SessionError::Private { source, .. } => source.is_usage(),
            _ => false,
        }
    }

    /// Whether the run stopped because the user cancelled.
    pub fn is_cancelled(&self) -> bool {
        match self {
            SessionError::Cancelled(_) => true,
            SessionError::Media(e) => e.is_cancelled(),
            SessionError::Snapshot(e) => e.is_cancelled(),
            SessionError::Dump(e) => e.is_cancelled(),
            SessionError::Sysprep(e) => matches!(e, SysprepError::Cancelled(_)),
            SessionError::HostRun(e) => matches!(e, crate::hostrun::HostRunError::Cancelled(_)),
            SessionError::Shrink(e) => e.is_cancelled(),
            SessionError::Private { source, .. } => source.is_cancelled(),
            _ => false,
        }
    }
}

/// The image file a run wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenImage {
    /// The image path (side files are beside it).
    pub path: PathBuf,
    /// MD5 of the image, lowercase hex.
    pub md5_hex: String,
    /// Size of the image in bytes.
    pub size: u64,
}

/// One run. See the module documentation.
pub struct Session {
    // Fields drop in declaration order: the guest tree (open filesystems on the working
    // disk) first, then the working disk (and its private copy), then the work
    // directory holding it.
    inspection: Option<Inspection>,
    disk: Option<WorkingDisk>,
    layout: Option<Layout>,
    /// The partitions and logical volumes, once [`Stage::Inspect`] ran.
    volumes: Option<Volumes>,
    workdir: Option<WorkDir>,
    source: Option<Source>,
    opts: RunOptions,
    /// The front-end's reporter behind [`PrivateNames`].
    reporter: SharedReporter,
    /// What the work directory's files are called in messages.
    names: PrivateNames,
    metadata: Metadata,
    /// The system preparation operations for the detected OS, with the run's selection
    /// applied (set by [`Stage::MergeMetadata`]).
    syspreps: Option<Registry>,
    /// Their parameters, with the run's values applied.
    sysprep_params: Option<Params>,
    /// What each operation changed, once [`Stage::Sysprep`] ran.
    sysprep_reports: Vec<OpReport>,
    /// Bytes `[0, image_size)` of the working disk make the image (smaller after shrink).
    image_size: Option<u64>,
    /// Byte ranges of the working disk known to be free (never read by the dump).
    free: Vec<Range<u64>>,
    written: Option<WrittenImage>,
    /// The authenticated cloud, once [`Stage::ConnectCloud`] ran with `-u`.
    cloud: Option<snf_cloud::Cloud>,
    /// The image service's answer, once the image is registered.
    registration: Option<serde_json::Value>,
    next: usize,
    /// Set by [`Session::make_writable`]: a front-end may change the guest at any time.
    interactive: bool,
}

impl Session {
    /// A session for `opts`, reporting through `reporter`.
    ///
    /// Fails at once for options asking for features that are not available yet, and
    /// for an output path that cannot be used (missing directory, existing files
    /// without `force`).
    pub fn new(opts: RunOptions, reporter: SharedReporter) -> Result<Session, SessionError> {
        check_options(&opts)?;
        opts.check_supported()?;
        if let Some(out) = &opts.outfile {
            options::check_outfile(out, opts.force)?;
        }
        if let Some(dir) = &opts.tmpdir {
            options::check_tmpdir(dir)?;
        }
        for unused in opts.ineffective() {
            reporter.warn(unused);
        }
        // Bad scripts are refused before any work, not after a long copy.
        let mut opts = opts;
        opts.host_run = crate::hostrun::check_scripts(&opts.host_run)?;
        let names = PrivateNames::default();
        let reporter = names.reporter(reporter);
        Ok(Session {
            inspection: None,
            disk: None,
            layout: None,
            volumes: None,
            workdir: None,
            source: None,
            opts,
            reporter,
            names,
            metadata: Metadata::new(),
            syspreps: None,
            sysprep_params: None,
            sysprep_reports: Vec::new(),
            image_size: None,
            free: Vec::new(),
            written: None,
            cloud: None,
            registration: None,
            next: 0,
            interactive: false,
        })
    }

    /// The options of this run.
    pub fn options(&self) -> &RunOptions {
        &self.opts
    }

    /// The image properties collected so far (final after [`Stage::MergeMetadata`]).
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// Why publishing (uploading or registering) this image needs `-f` or the user's
    /// confirmation: a Windows image not generalized with Microsoft Sysprep. `None` when
    /// nothing stands in the way (or before inspection).
    pub fn publish_warning(&self) -> Option<String> {
        self.inspection
            .as_ref()
            .and_then(|i| i.windows.as_ref())
            .and_then(|w| w.publish_warning())
    }

    /// The examined source, once [`Stage::ExamineSource`] ran.
    pub fn source(&self) -> Option<&Source> {
        self.source.as_ref()
    }

    /// The partition layout, once [`Stage::ReadPartitionTable`] ran and found one.
    pub fn layout(&self) -> Option<&Layout> {
        self.layout.as_ref()
    }

    /// The partitions and logical volumes, once [`Stage::Inspect`] ran.
    pub fn volumes(&self) -> Option<&Volumes> {
        self.volumes.as_ref()
    }

    /// The working disk, once [`Stage::OpenWorkingDisk`] ran.
    pub fn working_disk(&self) -> Option<&WorkingDisk> {
        self.disk.as_ref()
    }

    /// What inspection found, once [`Stage::Inspect`] ran on a partitioned disk.
    pub fn inspection(&self) -> Option<&Inspection> {
        self.inspection.as_ref()
    }

    /// The system preparation operations, once [`Stage::MergeMetadata`] ran.
    pub fn syspreps(&self) -> Option<&Registry> {
        self.syspreps.as_ref()
    }

    /// The system preparation parameters, once [`Stage::MergeMetadata`] ran.
    pub fn sysprep_params(&self) -> Option<&Params> {
        self.sysprep_params.as_ref()
    }

    /// What each system preparation operation changed, once [`Stage::Sysprep`] ran.
    pub fn sysprep_reports(&self) -> &[OpReport] {
        &self.sysprep_reports
    }

    /// Whether this run will change the guest (so the working disk must be a private,
    /// writable copy before the guest is opened).
    fn changes_guest(&self) -> bool {
        self.interactive
            || self.opts.produces_image()
                && !self.opts.dry_run
                && (self.opts.sysprep
                    || !self.opts.host_run.is_empty()
                    || self.opts.install_virtio.is_some())
    }

    /// The registration answer of the image service (printed by the CLI on stdout),
    /// once the image is registered.
    pub fn registration(&self) -> Option<&serde_json::Value> {
        self.registration.as_ref()
    }

    /// The image written by [`Stage::Dump`], if any.
    pub fn written_image(&self) -> Option<&WrittenImage> {
        self.written.as_ref()
    }

    /// The stage [`run_next`](Self::run_next) would run, `None` when the run is over.
    pub fn next_stage(&self) -> Option<Stage> {
        Stage::ALL.get(self.next).copied()
    }

    /// Run the next stage; returns the stage that ran, `None` if all have run.
    pub fn run_next(&mut self) -> Result<Option<Stage>, SessionError> {
        let Some(stage) = self.next_stage() else {
            return Ok(None);
        };
        self.run_stage(stage)?;
        self.next = stage.index() + 1;
        Ok(Some(stage))
    }

    /// Run `stage` now, whatever ran before, without moving [`next_stage`](Self::next_stage).
    /// The interactive UI runs [`Stage::Sysprep`] and [`Stage::Shrink`] on demand, as
    /// often as the user asks (operations that ran are not offered again); each stage's
    /// own checks apply.
    ///
    /// Errors never show the private files of the work directory: libraries that worked
    /// on the private copy name it by its path, which is replaced by what it is ("the
    /// private copy of SOURCE").
    pub fn run_stage(&mut self, stage: Stage) -> Result<(), SessionError> {
        let result = self.run_stage_inner(stage);
        // The working disk may have become a private copy during the stage.
        if let Some(disk) = &self.disk {
            self.names.set_disk(disk.path(), disk.name());
        }
        result.map_err(|e| self.hide_private(e))
    }

    fn hide_private(&self, err: SessionError) -> SessionError {
        if let Some(disk) = &self.disk {
            self.names.set_disk(disk.path(), disk.name());
        }
        let message = err.to_string();
        match self.names.hide(&message) {
            Cow::Borrowed(_) => err,
            Cow::Owned(shown) => SessionError::Private {
                message: shown,
                source: Box::new(err),
            },
        }
    }

    fn run_stage_inner(&mut self, stage: Stage) -> Result<(), SessionError> {
        // Without an upload the run is complete once the image files are in place: a
        // signal that comes after them must not fail it (exit 130 with the outputs
        // written would be a failed run that left files behind).
        if stage != Stage::Upload || self.opts.cloud.upload.is_some() {
            cancel::check()?;
        }
        match stage {
            Stage::ConnectCloud => self.connect_cloud()?,
            Stage::ExamineSource => self.examine_source()?,
            Stage::CreateWorkDir => self.create_workdir()?,
            Stage::OpenWorkingDisk => self.open_working_disk()?,
            Stage::ReadPartitionTable => self.read_partition_table()?,
            Stage::Inspect => self.inspect()?,
            Stage::MergeMetadata => self.merge_metadata()?,
            Stage::InstallVirtio => self.install_virtio()?,
            Stage::HostRun => self.host_run()?,
            Stage::Sysprep => self.sysprep()?,
            Stage::Shrink => self.shrink()?,
            Stage::Dump => self.dump()?,
            Stage::Upload => self.upload()?,
        }
        Ok(())
    }

    /// Run every stage up to and including `last`.
    pub fn run_until(&mut self, last: Stage) -> Result<(), SessionError> {
        while self.next_stage().is_some_and(|s| s <= last) {
            self.run_next()?;
        }
        Ok(())
    }

    /// Everything before the reports: examine, snapshot, read the table, inspect and
    /// merge the metadata.
    pub fn prepare(&mut self) -> Result<(), SessionError> {
        self.run_until(Stage::LAST_PREPARE)
    }

    /// Everything after the reports. A run that only prints (no `-o`, no upload) stops
    /// here without doing anything.
    pub fn finish(&mut self) -> Result<(), SessionError> {
        self.prepare()?;
        if !self.opts.produces_image() {
            self.next = Stage::ALL.len();
            return Ok(());
        }
        self.run_until(Stage::Upload)
    }

    fn given(&self) -> &Path {
        &self.opts.source
    }

    /// With `-u`: authenticate (`-a`/`-t` win over `-c`, as in the original) and, unless
    /// `--force`, refuse remote objects that already exist.
    fn connect_cloud(&mut self) -> Result<(), SessionError> {
        let opts = &self.opts.cloud;
        let Some(upload) = &opts.upload else {
            return Ok(());
        };
        let account = match (&opts.auth_url, &opts.token, &opts.cloud) {
            (Some(url), Some(token), _) => {
                snf_cloud::Account::from_url_token(url, snf_cloud::Secret::new(token.clone()))
            }
            (_, _, Some(name)) => snf_cloud::Account::find(name)?,
            _ => {
                return Err(not_supported(
                    "uploading needs an authentication URL and token pair (-a, -t) or a cloud name (-c)",
                ))
            }
        };
        let cloud = snf_cloud::Cloud::connect(&account, self.reporter.as_ref())?;
        cloud.preflight(
            opts.container(),
            upload,
            opts.register.is_some(),
            self.opts.force,
        )?;
        self.cloud = Some(cloud);
        Ok(())
    }

    fn examine_source(&mut self) -> Result<(), SessionError> {
        let source = Source::examine(&self.opts.source)?;
        // Only now are the files the source is made of known (backing files, extents).
        if let Some(out) = &self.opts.outfile {
            options::check_outfile_against_source(out, &source)?;
        }
        // The host's image has no size until it is bundled.
        let what = match source.kind() {
            SourceKind::ImageFile => format!(
                "a {} image file of {}",
                source.format(),
                human_size(source.size())
            ),
            SourceKind::BlockDevice => format!("a block device of {}", human_size(source.size())),
            SourceKind::Host => "the running host".to_string(),
        };
        self.reporter.info(&format!(
            "Examining source media `{}' ... {what}",
            self.given().display(),
        ));
        self.source = Some(source);
        Ok(())
    }

    fn create_workdir(&mut self) -> Result<(), SessionError> {
        let workdir = WorkDir::create(self.opts.tmpdir.as_deref())?;
        self.reporter.detail(&format!(
            "Work directory: under {}",
            workdir.parent().display()
        ));
        // The private copy lives here and is read back by this process: its guest
        // filesystems need no fsync. A disk changed in place (--no-snapshot) is elsewhere.
        snf_guestfs::ext::set_scratch_dir(Some(workdir.path()));
        // Registry hives are copied out of a Windows guest for libhivex: here too.
        crate::inspect::windows::set_scratch_dir(Some(workdir.path()));
        self.names.set_workdir(workdir.path(), workdir.parent());
        self.workdir = Some(workdir);
        Ok(())
    }

    fn open_working_disk(&mut self) -> Result<(), SessionError> {
        let (Some(source), Some(workdir)) = (&self.source, &self.workdir) else {
            return Err(SessionError::OutOfOrder {
                stage: Stage::OpenWorkingDisk,
                needs: "the source and the work directory",
            });
        };
        let mode = if self.opts.snapshot {
            SnapshotMode::Snapshot
        } else if source.is_host() {
            // The running system is never written: its bundle is a private image anyway.
            self.reporter
                .info("--no-snapshot: ignored for host bundling (the bundle is a new image)");
            SnapshotMode::Snapshot
        } else {
            self.reporter.warn(&format!(
                "--no-snapshot: {} itself will be changed",
                source.given().display()
            ));
            SnapshotMode::NoSnapshot
        };
        // A bundled host leaves out the files this run writes.
        let outputs = match &self.opts.outfile {
            Some(out) if source.is_host() => snf_disk::output_files(out).to_vec(),
            _ => Vec::new(),
        };
        let mut disk =
            WorkingDisk::open_excluding(source, workdir, mode, &outputs, self.reporter.as_ref())?;
        if let Some(swap) = disk.bundled_swap().map(str::to_string) {
            self.set_detected("SWAP", &swap);
        }
        if self.changes_guest() {
            make_private_copy(&mut disk, self.reporter.as_ref())?;
        }
        self.image_size = Some(disk.size());
        self.disk = Some(disk);
        Ok(())
    }

    fn read_partition_table(&mut self) -> Result<(), SessionError> {
        let Some(disk) = &self.disk else {
            return Err(SessionError::OutOfOrder {
                stage: Stage::ReadPartitionTable,
                needs: "the working disk",
            });
        };
        match read_layout(disk) {
            Ok(layout) => {
                for warning in layout.warnings() {
                    self.reporter.warn(&format!("partition table: {warning}"));
                }
                self.reporter.info(&format!(
                    "Reading the partition table ... {}, {} partition(s)",
                    layout.kind(),
                    layout.partitions().len()
                ));
                self.set_detected("PARTITION_TABLE", layout.kind().as_str());
                self.layout = Some(layout);
                Ok(())
            }
            // Not partitioned: there is nothing to inspect, prepare or shrink, but the
            // disk can still be imaged as it is with --allow-unsupported.
            Err(e @ PartitionError::NoPartitionTable { .. }) => {
                self.set_detected("UNSUPPORTED", &format!("The media has {e}"));
                Ok(())
            }
            Err(e @ PartitionError::UnsupportedSectorSize(_)) => {
                self.set_detected("UNSUPPORTED", &format!("The media has an {e}"));
                Ok(())
            }
            Err(source) => Err(SessionError::PartitionTable {
                path: self.opts.source.clone(),
                source,
            }),
        }
    }

    /// On a GPT image, `SWAP` (from a removed swap partition, or a bundled host's) is
    /// dropped unless `-m SWAP=` asked for it, with a warning: snf-image cannot
    /// re-create swap on GPT (its `sgdisk -n N:-SIZE:-2049 -t N:swap` overlaps the
    /// grown root and `swap` is no type code), so every deployment of such an image
    /// would fail. See the README.
    fn gpt_swap(&mut self) {
        let gpt = self
            .layout
            .as_ref()
            .is_some_and(|l| l.kind() == partition::TableKind::Gpt);
        let Some(swap) = self
            .metadata
            .get("SWAP")
            .filter(|_| gpt)
            .map(str::to_string)
        else {
            return;
        };
        let why = "snf-image cannot re-create a swap partition on GPT disks (its `sgdisk \
                   -n N:-SIZE:-2049 -t N:swap' overlaps the grown root partition), so a \
                   deployment of a GPT image with SWAP fails";
        match self.opts.metadata.get("SWAP") {
            // `-m SWAP=`: dropped on purpose, nothing to say.
            Some("") => {
                self.metadata.remove("SWAP");
            }
            Some(_) => self.reporter.warn(&format!(
                "GPT image with SWAP={swap} (asked for with -m): {why}; use it only with a \
                 deployment tool that handles swap on GPT"
            )),
            None => {
                self.metadata.remove("SWAP");
                self.reporter.warn(&format!(
                    "SWAP={swap} is not recorded for this GPT image: {why}. Deployed VMs get \
                     no swap partition. To record it anyway (for a deployment tool that \
                     handles swap on GPT), pass -m SWAP={swap}"
                ));
            }
        }
    }

    fn set_detected(&mut self, key: &'static str, value: &str) {
        // Keys set here are constants made of valid characters.
        let _ = self.metadata.insert(key, value);
    }

    /// Detect the operating system and add its properties to the metadata (with
    /// `UNSUPPORTED` for media that cannot be prepared). An unpartitioned disk was
    /// already flagged unsupported and has nothing to inspect.
    ///
    /// The guest tree is opened writable only when the working disk already is: system
    /// preparation (SEAM below) must call `WorkingDisk::make_writable` before this stage.
    fn inspect(&mut self) -> Result<(), SessionError> {
        let (Some(disk), Some(layout)) = (&self.disk, &self.layout) else {
            return Ok(());
        };
        let volumes = volumes::list(disk.path(), layout, self.reporter.as_ref());
        let partitions = volumes.descs.clone();
        self.volumes = Some(volumes);
        let recover = self.recover_journals(&partitions)?;
        let (Some(disk), Some(layout)) = (&self.disk, &self.layout) else {
            return Ok(());
        };
        // Opened writable only when this run changes the guest: even a clean open and
        // close for writing rewrites the superblock, and a run that only dumps must give
        // back the disk as it is.
        let found = inspect::inspect_with(
            disk.path(),
            &partitions,
            layout.kind().as_str(),
            disk.is_writable() && (self.changes_guest() || recover),
            &self.opener()?,
            self.reporter.as_ref(),
        )?;
        self.metadata.merge(&found.metadata);
        self.inspection = Some(found);
        Ok(())
    }

    /// A filesystem whose journal needs recovery (the guest was not shut down cleanly)
    /// can only be read after replaying its journal, which writes to it. Make sure that
    /// happens on the private copy (or, with `--no-snapshot`, say that the source itself
    /// is written). Returns whether any journal must be replayed.
    fn recover_journals(
        &mut self,
        partitions: &[snf_guestfs::assemble::PartitionDesc],
    ) -> Result<bool, SessionError> {
        let Some(disk) = &mut self.disk else {
            return Ok(false);
        };
        let pending: Vec<&snf_guestfs::assemble::PartitionDesc> = partitions
            .iter()
            .filter(|p| {
                p.unusable.is_none()
                    && snf_guestfs::probe::ext_needs_recovery(disk.path(), p.offset)
                        .unwrap_or(false)
            })
            .collect();
        if pending.is_empty() {
            return Ok(false);
        }
        let list = pending
            .iter()
            .map(|p| p.name())
            .collect::<Vec<_>>()
            .join(", ");
        if !self.opts.snapshot {
            self.reporter.warn(&format!(
                "the journal of {list} needs recovery: replaying it on {} itself (--no-snapshot)",
                self.opts.source.display()
            ));
        } else {
            self.reporter.info(&format!(
                "The journal of {list} needs recovery (the guest was not shut down cleanly): \
                 replaying it on the private working copy"
            ));
        }
        if !disk.is_writable() {
            disk.make_writable(self.reporter.as_ref())?;
        }
        // A volume in pieces is replayed when inspection opens it gathered, for writing.
        for p in pending.into_iter().filter(|p| p.pieces.is_empty()) {
            // Opening for writing replays the journal; closing writes the result back.
            let fs = snf_guestfs::ExtFs::open(disk.path(), p.offset, true)
                .map_err(|e| SessionError::Recovery(p.name(), e))?;
            fs.close()
                .map_err(|e| SessionError::Recovery(p.name(), e))?;
        }
        Ok(true)
    }

    fn merge_metadata(&mut self) -> Result<(), SessionError> {
        if let Some(reason) = self.metadata.get("UNSUPPORTED").map(str::to_string) {
            if !self.opts.allow_unsupported {
                return Err(SessionError::Unsupported {
                    path: self.opts.source.clone(),
                    reason,
                });
            }
            self.reporter.warn(&format!(
                "the media is not supported ({reason}); going on because unsupported media \
                 are allowed: no system preparation, no shrinking"
            ));
            self.set_detected("EXCLUDE_ALL_TASKS", "yes");
        }
        self.metadata.merge(&self.opts.metadata);
        if self.opts.cloud.upload.is_some() && !self.opts.force {
            if let Some(reason) = self.publish_warning() {
                return Err(SessionError::NotGeneralized {
                    path: self.opts.source.clone(),
                    reason,
                });
            }
        }
        self.warn_undeployable();
        let os = GuestOs::from_metadata(&self.metadata);
        let mut registry = Registry::for_family(os.family);
        let family = os.family.name();
        for name in
            registry.select_applicable(&self.opts.disable_syspreps, &self.opts.enable_syspreps)
        {
            self.reporter.warn(&format!(
                "sysprep `{name}' does not apply to this {family} image: ignored"
            ));
        }
        let mut params = Params::for_family(os.family);
        for (key, value) in &self.opts.sysprep_params {
            if params.has(key) {
                params.set(key, value)?;
            } else {
                self.reporter.warn(&format!(
                    "sysprep parameter `{key}' does not apply to this {family} image: ignored"
                ));
            }
        }
        self.syspreps = Some(registry);
        self.sysprep_params = Some(params);
        Ok(())
    }

    /// How the guest's filesystems are opened: split logical volumes are gathered into
    /// the work directory.
    fn opener(&self) -> Result<GatheringOpener, SessionError> {
        match &self.workdir {
            Some(w) => Ok(GatheringOpener {
                dir: w.path().to_path_buf(),
            }),
            None => Err(SessionError::OutOfOrder {
                stage: Stage::Inspect,
                needs: "the work directory",
            }),
        }
    }

    /// Say, before the long work, what the cloud's deployment tool will not do with
    /// this image: snf-image (Synnefo's) mounts the root partition itself and knows
    /// nothing of LVM, so it cannot deploy a root on a logical volume.
    fn warn_undeployable(&self) {
        let synnefo = self
            .cloud
            .as_ref()
            .is_some_and(|c| c.flavor() == snf_cloud::Flavor::Synnefo);
        if let (true, Some(lv)) = (synnefo, self.metadata.get(crate::metadata::keys::ROOT_LV)) {
            self.reporter.warn(&format!(
                "the root filesystem is on the logical volume {lv}: snf-image, Synnefo's \
                 deployment tool, mounts the root partition and cannot deploy an LVM root"
            ));
        }
    }

    /// Install the VirtIO drivers of `opts.install_virtio` into a Windows guest
    /// (see [`crate::virtio`]); with `opts.dry_run`, only report what would change.
    fn install_virtio(&mut self) -> Result<(), SessionError> {
        let Some(dir) = self.opts.install_virtio.clone() else {
            return Ok(());
        };
        self.install_virtio_from(&dir).map(|_| ())
    }

    /// Install the VirtIO drivers of the virtio-win directory `dir` into the Windows
    /// guest now (what `--install-virtio` does, for the dialogs' VirtIO page); with
    /// `opts.dry_run`, only report what would change.
    pub fn install_virtio_from(
        &mut self,
        dir: &Path,
    ) -> Result<crate::sysprep::Changes, SessionError> {
        let dry_run = self.opts.dry_run;
        let changes = self.with_windows_guest(dry_run, |ctx, version| {
            ctx.begin("install-virtio");
            crate::virtio::install(ctx, dir, version)
        })?;
        for note in &changes.notes {
            self.reporter.info(note);
        }
        for c in &changes.changes {
            self.reporter.info(&format!("{c}"));
        }
        Ok(changes)
    }

    /// The VirtIO drivers of the virtio-win directory `dir` that would be installed
    /// into this Windows guest, without writing anything.
    pub fn virtio_plan(&mut self, dir: &Path) -> Result<crate::virtio::Plan, SessionError> {
        self.with_windows_guest(true, |ctx, version| crate::virtio::plan(ctx, dir, version))
    }

    /// Run `f` on a system preparation context over the open Windows guest.
    fn with_windows_guest<R>(
        &mut self,
        dry_run: bool,
        f: impl FnOnce(
            &mut SysprepContext<'_>,
            &crate::inspect::windows::Version,
        ) -> Result<R, crate::virtio::VirtioError>,
    ) -> Result<R, SessionError> {
        let Some(inspection) = &mut self.inspection else {
            return Err(not_supported(
                "VirtIO drivers need a Windows guest, and this media is not supported",
            ));
        };
        let (Some(info), Some(guest)) = (inspection.windows.clone(), inspection.guest.as_mut())
        else {
            return Err(not_supported(
                "VirtIO drivers (Windows images only): this is not a Windows image",
            ));
        };
        let os = GuestOs::from_metadata(&self.metadata);
        let params = sysprep::Params::for_family(os.family);
        let mut ctx = SysprepContext::new(
            guest,
            &os,
            &mut self.metadata,
            &params,
            self.reporter.as_ref(),
        )
        .with_dry_run(dry_run);
        Ok(f(&mut ctx, &info.version)?)
    }

    /// Run the `--host-run` scripts with the guest tree mounted read-write (through
    /// FUSE) as their working directory and every property in the environment.
    fn host_run(&mut self) -> Result<(), SessionError> {
        if self.opts.host_run.is_empty() {
            return Ok(());
        }
        if self.opts.dry_run {
            self.reporter
                .info("Dry run: not running the --host-run scripts");
            return Ok(());
        }
        let guest = self.inspection.as_mut().and_then(|i| i.guest.take());
        let Some(guest) = guest else {
            return Err(not_supported(
                "--host-run needs a guest that can be mounted, and this media is not supported",
            ));
        };
        let guest = crate::hostrun::run_scripts(
            guest,
            &self.opts.host_run,
            &self.metadata,
            self.opts.host_run_timeout,
            self.reporter.as_ref(),
        )?;
        if let Some(inspection) = self.inspection.as_mut() {
            inspection.guest = Some(guest);
        }
        Ok(())
    }

    /// Run the enabled system preparation operations on the guest tree (with
    /// `opts.dry_run`, only report what each would change). Skipped with
    /// `--no-sysprep`; unsupported media run nothing.
    fn sysprep(&mut self) -> Result<(), SessionError> {
        if !self.opts.sysprep {
            return Ok(());
        }
        if self.metadata.contains("UNSUPPORTED") {
            self.reporter.warn(sysprep::UNSUPPORTED_MESSAGE);
            return Ok(());
        }
        let (Some(registry), Some(params)) = (&mut self.syspreps, &self.sysprep_params) else {
            return Err(SessionError::OutOfOrder {
                stage: Stage::Sysprep,
                needs: "the merged metadata",
            });
        };
        let Some(inspection) = &mut self.inspection else {
            return Ok(());
        };
        let filesystems = inspection
            .mounts
            .iter()
            .map(|m| MountedFs {
                mountpoint: m.mountpoint.clone(),
                uuid: m.uuid.clone(),
            })
            .collect();
        let kept_swap = inspection
            .partitions
            .iter()
            .filter(|p| p.desc.lv.is_some() && p.probe.fs_type == snf_guestfs::probe::FsType::Swap)
            .cloned()
            .collect();
        let partitions = inspection.partitions.clone();
        let Some(guest) = &mut inspection.guest else {
            return Ok(());
        };
        let os = GuestOs::from_metadata(&self.metadata);
        let mut ctx = SysprepContext::new(
            guest,
            &os,
            &mut self.metadata,
            params,
            self.reporter.as_ref(),
        )
        .with_dry_run(self.opts.dry_run)
        .with_filesystems(filesystems)
        .with_kept_swap(kept_swap)
        .with_partitions(partitions);
        self.sysprep_reports = sysprep::run_enabled(registry, &mut ctx)?;
        Ok(())
    }

    /// Shrink (part of system preparation, as in the original: it runs when the
    /// `shrink` operation ran in [`Stage::Sysprep`], so not with `--no-sysprep`, when
    /// disabled, or for unsupported media), then list the bytes no filesystem uses so
    /// that the dump writes them as holes. The guest tree is closed (flushed) first:
    /// e2fsck and resize2fs must be alone on the disk.
    fn shrink(&mut self) -> Result<(), SessionError> {
        if let Some(guest) = self.inspection.as_mut().and_then(|i| i.guest.take()) {
            guest.close().map_err(SysprepError::from)?;
        }
        let asked = self.sysprep_reports.iter().any(|r| r.name == "shrink");
        if self.opts.sysprep && self.metadata.contains("UNSUPPORTED") {
            self.reporter
                .warn("Shrinking is disabled for unsupported images");
        } else if asked && !self.opts.dry_run {
            let (Some(disk), Some(layout), Some(workdir)) =
                (&mut self.disk, &mut self.layout, &self.workdir)
            else {
                return Err(SessionError::OutOfOrder {
                    stage: Stage::Shrink,
                    needs: "the working disk and its partition table",
                });
            };
            if !disk.is_writable() {
                return Err(SessionError::OutOfOrder {
                    stage: Stage::Shrink,
                    needs: "a writable working disk",
                });
            }
            let opts = ShrinkOptions {
                workdir,
                method: shrink::Method::from_env()?,
            };
            let done = shrink::shrink(disk.path(), layout, &opts, self.reporter.as_ref())?;
            if disk.is_copy() {
                disk.set_size(done.new_size)?;
            }
            self.image_size = Some(done.new_size);
            if let Some(swap) = &done.swap {
                self.set_detected("SWAP", swap);
            }
        }
        self.gpt_swap();
        if self.opts.produces_image() && !self.opts.dry_run {
            if let (Some(disk), Some(layout)) = (&self.disk, &self.layout) {
                self.free = shrink::free_ranges(disk.path(), layout, self.reporter.as_ref());
            }
        }
        Ok(())
    }

    fn dump(&mut self) -> Result<(), SessionError> {
        let Some(out) = self.opts.outfile.clone() else {
            return Ok(());
        };
        let (Some(_), Some(size)) = (&self.disk, self.image_size) else {
            return Err(SessionError::OutOfOrder {
                stage: Stage::Dump,
                needs: "the working disk",
            });
        };
        if snf_disk::dump::is_dev_null(&out) {
            self.reporter.warn("Not dumping file to /dev/null");
            return Ok(());
        }
        if self.opts.dry_run {
            self.reporter.info(&format!(
                "Dry run: not writing {} ({})",
                out.display(),
                human_size(size)
            ));
            return Ok(());
        }
        let what = format!("image file {}", out.display());
        let summary = self.write_image(size, &out, &what)?;
        snf_disk::write_side_files(
            &out,
            &out.to_string_lossy(),
            &summary.md5_hex,
            self.metadata.as_map(),
        )?;
        self.reporter.success(&format!(
            "Image file {} was successfully created (md5sum {})",
            out.display(),
            summary.md5_hex
        ));
        self.reporter
            .info("Metadata, md5sum and variant files were written beside it");
        self.written = Some(WrittenImage {
            path: out,
            md5_hex: summary.md5_hex,
            size,
        });
        Ok(())
    }

    /// Write the image (bytes `[0, size)` of the working disk) to `out`. A run that is not
    /// interactive uses the working disk for nothing else afterwards, so a private copy
    /// on the same filesystem as `out` becomes the image itself (no second write of the
    /// data); otherwise the disk is dumped.
    fn write_image(
        &mut self,
        size: u64,
        out: &Path,
        what: &str,
    ) -> Result<snf_disk::DumpSummary, SessionError> {
        let Some(disk) = self.disk.take() else {
            return Err(SessionError::OutOfOrder {
                stage: Stage::Dump,
                needs: "the working disk",
            });
        };
        let reporter = self.reporter.as_ref();
        if !self.interactive {
            // Becomes the image where it can, else is dumped; either way it is done.
            return Ok(snf_disk::finish_in_place_named(
                disk, size, &self.free, out, what, reporter,
            )?);
        }
        let done = snf_disk::dump_named(&disk, size, &self.free, out, what, reporter);
        self.disk = Some(disk);
        Ok(done?)
    }

    /// With `-u`: upload the image and `NAME.md5sum`; with `-r`, register it, upload
    /// `NAME.meta` and (with `--public`) share the side files ([`snf_cloud::Cloud::publish`]:
    /// the data crosses the network once). The data sent is the
    /// written image, or, without `-o`, a dump made in the work directory (so that free
    /// space never travels).
    fn upload(&mut self) -> Result<(), SessionError> {
        let Some(upload) = self.opts.cloud.upload.clone() else {
            return Ok(());
        };
        if self.cloud.is_none() {
            return Err(SessionError::OutOfOrder {
                stage: Stage::Upload,
                needs: "the cloud connection",
            });
        }
        if self.opts.dry_run {
            self.reporter
                .info(&format!("Dry run: not uploading `{upload}'"));
            return Ok(());
        }
        let image = match &self.written {
            Some(w) => snf_cloud::ImageSource {
                path: w.path.clone(),
                size: w.size,
                md5: w.md5_hex.clone(),
            },
            None => {
                let (Some(_), Some(workdir), Some(size)) =
                    (&self.disk, &self.workdir, self.image_size)
                else {
                    return Err(SessionError::OutOfOrder {
                        stage: Stage::Upload,
                        needs: "the working disk",
                    });
                };
                let path = workdir.path().join("upload.diskdump");
                let what = format!("the image to upload as `{upload}'");
                let summary = self.write_image(size, &path, &what)?;
                snf_cloud::ImageSource {
                    path,
                    size,
                    md5: summary.md5_hex,
                }
            }
        };
        let container = self.opts.cloud.container().to_string();
        let Some(cloud) = &self.cloud else {
            return Err(SessionError::OutOfOrder {
                stage: Stage::Upload,
                needs: "the cloud connection",
            });
        };
        let register = self
            .opts
            .cloud
            .register
            .as_deref()
            .map(|name| snf_cloud::ImageSpec {
                name,
                properties: self.metadata.as_map(),
                public: self.opts.cloud.public,
            });
        let publication = snf_cloud::Publication {
            container: &container,
            object: &upload,
            register,
            force: self.opts.force,
        };
        let done = cloud.publish(&publication, &image, self.reporter.as_ref())?;
        self.registration = done.answer;
        Ok(())
    }
}

/// Access for a front-end that changes the run between stages (the interactive UI,
/// through [`crate::interactive`]): the user edits properties, chooses and runs system
/// preparation operations and writes the image whenever they like.
impl Session {
    /// Make the working disk writable now (a private copy unless `--no-snapshot`), as
    /// [`Stage::OpenWorkingDisk`] does for runs that change the guest. Call it before
    /// [`Stage::Inspect`], so that the guest tree opens writable.
    pub fn make_writable(&mut self) -> Result<(), SessionError> {
        self.interactive = true;
        if let Some(disk) = &mut self.disk {
            make_private_copy(disk, self.reporter.as_ref())?;
            self.names.set_disk(disk.path(), disk.name());
        }
        Ok(())
    }

    /// The image properties, for a front-end that edits them (the key rules apply
    /// through [`Metadata`]'s own methods).
    pub fn metadata_mut(&mut self) -> &mut Metadata {
        &mut self.metadata
    }

    /// The system preparation selection, to change before running [`Stage::Sysprep`].
    pub fn syspreps_mut(&mut self) -> Option<&mut Registry> {
        self.syspreps.as_mut()
    }

    /// The system preparation parameters, to change before running [`Stage::Sysprep`].
    pub fn sysprep_params_mut(&mut self) -> Option<&mut Params> {
        self.sysprep_params.as_mut()
    }

    /// The image is bytes `[0, image_size)` of the working disk (smaller after shrink).
    pub fn image_size(&self) -> Option<u64> {
        self.image_size
    }

    /// Byte ranges of the working disk known to be free (the dump writes them as
    /// holes without reading them).
    pub fn free_ranges(&self) -> &[Range<u64>] {
        &self.free
    }

    /// Find the free byte ranges again (after the guest changed), as [`Stage::Shrink`]
    /// does before a dump. The guest tree is flushed first.
    pub fn update_free_ranges(&mut self) -> Result<(), SessionError> {
        if let Some(guest) = self.inspection.as_mut().and_then(|i| i.guest.as_mut()) {
            guest.sync().map_err(SysprepError::from)?;
        }
        if let (Some(disk), Some(layout)) = (&self.disk, &self.layout) {
            self.free = shrink::free_ranges(disk.path(), layout, self.reporter.as_ref());
        }
        Ok(())
    }

    /// The private work directory, once [`Stage::CreateWorkDir`] ran (removed with the
    /// session, with everything in it).
    pub fn work_dir(&self) -> Option<&Path> {
        self.workdir.as_ref().map(|w| w.path())
    }

    /// The guest tree's slot, so that a front-end can lend the tree out (a FUSE mount
    /// takes it by value) and put it back. `None` before inspection.
    pub fn guest_slot(&mut self) -> Option<&mut Option<snf_guestfs::GuestFs>> {
        self.inspection.as_mut().map(|i| &mut i.guest)
    }

    /// Open the guest tree again on the working disk after [`Stage::Shrink`] closed it,
    /// so that a front-end can change the files once more. Only the filesystems are
    /// assembled again (the guest tree, its mounts and the partitions as they are now):
    /// the metadata and the detected system stay as they are.
    /// Returns whether the guest tree is open (never for unsupported media, nor before
    /// inspection or on a read-only working disk).
    pub fn reopen_guest(&mut self) -> Result<bool, SessionError> {
        if self.metadata.contains("UNSUPPORTED") {
            return Ok(false);
        }
        let (Some(disk), Some(layout), Some(inspection)) =
            (&self.disk, &self.layout, &self.inspection)
        else {
            return Ok(false);
        };
        if inspection.guest.is_some() {
            return Ok(true);
        }
        if !disk.is_writable() {
            return Ok(false);
        }
        // Shrinking may have changed the partitions and logical volumes since inspection.
        let volumes = volumes::list(disk.path(), layout, self.reporter.as_ref());
        let opener = self.opener()?;
        let asm = snf_guestfs::assemble::assemble_with(
            disk.path(),
            &volumes.descs,
            true,
            &opener,
            self.reporter.as_ref(),
        )
        .map_err(InspectError::from)?;
        self.volumes = Some(volumes);
        let inspection = self.inspection.as_mut().expect("checked above");
        inspection.mounts = asm.mounts;
        inspection.partitions = asm.partitions;
        inspection.guest = asm.guest;
        Ok(inspection.guest.is_some())
    }
}

/// Every check on `opts` that needs no work, so that a bad command line is refused
/// before anything is examined or copied: options that contradict each other, and
/// system preparation names and parameter values that no OS has or accepts (whether
/// they apply to the guest's OS is known only after inspection, and is a warning).
/// Every error here is a usage error ([`SessionError::is_usage`]).
pub fn check_options(opts: &RunOptions) -> Result<(), SessionError> {
    opts.check_combination()?;
    sysprep::registry::check_names(opts.disable_syspreps.iter().chain(&opts.enable_syspreps))?;
    for (key, value) in &opts.sysprep_params {
        sysprep::params::check(key, value)?;
    }
    Ok(())
}

/// Make `disk` a writable private copy (unless it is writable already); the copy need
/// not hold what no filesystem uses.
fn make_private_copy(
    disk: &mut WorkingDisk,
    reporter: &dyn snf_core::Reporter,
) -> Result<(), SessionError> {
    if disk.is_writable() {
        return Ok(());
    }
    let free = read_layout(disk)
        .map(|l| shrink::free_ranges(disk.path(), &l, reporter))
        .unwrap_or_default();
    disk.make_writable_skipping(&free, reporter)?;
    Ok(())
}

/// The partition table of the working disk (sector size from the device for block
/// devices, detected for image files).
fn read_layout(disk: &WorkingDisk) -> Result<Layout, PartitionError> {
    let mut file = disk.file();
    let sector_size = if disk.source().kind() == SourceKind::BlockDevice {
        disk.sector_size()
    } else {
        partition::detect_sector_size_of(&mut file)?
    };
    Layout::read(&mut file, disk.size(), sector_size)
}

fn not_supported(what: &'static str) -> SessionError {
    SessionError::Options(OptionsError::NotSupported(vec![what]))
}

/// `1.5 GiB`-style sizes for messages.
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_are_in_pipeline_order() {
        for pair in Stage::ALL.windows(2) {
            assert!(pair[0] < pair[1]);
        }
        assert_eq!(
            Stage::ALL[Stage::LAST_PREPARE.index()],
            Stage::MergeMetadata
        );
    }

    #[test]
    fn errors_never_show_private_files_of_the_work_directory() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.raw");
        std::fs::write(&src, vec![0u8; 1 << 20]).unwrap();
        let mut opts = RunOptions::new(&src);
        opts.tmpdir = Some(dir.path().to_path_buf());
        opts.print.metadata = true;
        let reporter: SharedReporter = std::sync::Arc::new(snf_core::report::Quiet);
        let mut session = Session::new(opts, reporter).unwrap();
        session.run_until(Stage::OpenWorkingDisk).unwrap();
        session.make_writable().unwrap();
        let work = session.work_dir().unwrap().to_path_buf();
        let disk = session.working_disk().unwrap().path().to_path_buf();
        let err = SessionError::Recovery(
            "partition 1".into(),
            snf_guestfs::Error::Corrupt {
                path: work.join("part1-x.ext"),
                msg: format!("bad block in `{}'", disk.display()),
            },
        );
        let shown = session.hide_private(err);
        let msg = shown.to_string();
        assert!(!msg.contains(".snf_image_creator."), "{msg}");
        assert!(
            msg.contains(&format!("a scratch file under {}", dir.path().display())),
            "{msg}"
        );
        assert!(
            msg.contains(&format!("the private copy of {}", src.display())),
            "{msg}"
        );
        assert!(!shown.is_usage() && !shown.is_cancelled());
        // Errors without private paths keep their type.
        let plain = session.hide_private(SessionError::Cancelled(Cancelled));
        assert!(matches!(plain, SessionError::Cancelled(_)));
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_size(512), "512 bytes");
        assert_eq!(human_size(3 << 29), "1.5 GiB");
    }
}
