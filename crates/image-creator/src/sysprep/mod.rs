//! System preparation ("sysprep"): the operations that clean a guest of logs, caches,
//! temporary files, passwords, user secrets and machine identity before it becomes an
//! image deployed many times.
//!
//! * [`registry`]: the operation descriptors, per OS family, which of them are enabled,
//!   and the `--print-syspreps` / JSON / Markdown forms.
//! * [`params`]: the typed sysprep parameters (`--sysprep-param KEY=VALUE`).
//! * [`context`]: what an operation works on ([`SysprepContext`]): the guest tree, the
//!   metadata and the parameters, with write helpers that record every change and skip
//!   the write in a dry run.
//! * [`devnames`]: which block device names depend on the disk bus, and what replaces
//!   them.
//! * [`ops`]: one module per operation.
//!
//! Operations run in the explicit order of their descriptors (see
//! [`registry::Descriptor::order`] and `docs/syspreps.md`): user data and accounts
//! first, then passwords, caches/temporary files/logs, network and boot configuration,
//! machine identity last, and the whole-disk `shrink` at the very end.

pub mod cloudinit;
pub mod context;
pub mod devnames;
pub mod ops;
pub mod params;
pub mod registry;
mod text;

use snf_core::Cancelled;

pub use context::{Action, Change, Changes, GuestOs, MountedFs, OsFamily, SysprepContext};
pub use params::{ParamKind, ParamSpec, Params};
pub use registry::{Descriptor, Registry, Scope};

/// What can go wrong selecting, configuring or running system preparation operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SysprepError {
    /// `--enable-sysprep`/`--disable-sysprep` named an operation this OS does not have.
    #[error("Sysprep: `{name}' does not exist for this {family} image. Valid names: {valid}")]
    UnknownSysprep {
        name: String,
        family: String,
        valid: String,
    },
    /// `--enable-sysprep`/`--disable-sysprep` named an operation no OS has.
    #[error("Sysprep: `{name}' does not exist. Valid names: {valid}")]
    NoSuchSysprep { name: String, valid: String },
    /// `--sysprep-param` named a parameter this OS does not have (or, checked before
    /// the OS is known, that no OS has).
    #[error("Invalid sysprep parameter: `{name}'. Valid parameters: {valid}")]
    UnknownParam { name: String, valid: String },
    /// A parameter value failed its type or check.
    #[error("Invalid value for sysprep parameter: `{name}'. Reason: {reason}")]
    InvalidParamValue { name: String, reason: String },
    /// `--sysprep-param` text without `=`.
    #[error("`{0}' is not in KEY=VALUE format.")]
    NotAnAssignment(String),
    /// A guest filesystem operation failed.
    #[error(transparent)]
    Guest(#[from] snf_guestfs::Error),
    /// A guest file could not be understood or produced (for example bad YAML).
    #[error("{path}: {msg}")]
    BadFile { path: String, msg: String },
    /// An operation failed; names the operation.
    #[error("System preparation operation `{op}' failed: {source}")]
    Operation {
        op: &'static str,
        #[source]
        source: Box<SysprepError>,
    },
    /// An operation of the original that runs programs in the booted guest.
    #[error("needs the guest running: not supported")]
    NeedsRunningGuest,
    /// A Windows registry hive could not be read or written.
    #[error(transparent)]
    Registry(#[from] crate::inspect::windows::WindowsError),
    /// The user interrupted the run.
    #[error(transparent)]
    Cancelled(#[from] Cancelled),
}

impl SysprepError {
    /// Whether the error is about what the user asked for (a name or value given on
    /// the command line or in a form), not about the guest: front-ends exit 2.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            SysprepError::UnknownSysprep { .. }
                | SysprepError::NoSuchSysprep { .. }
                | SysprepError::UnknownParam { .. }
                | SysprepError::InvalidParamValue { .. }
                | SysprepError::NotAnAssignment(_)
        )
    }
}

/// Result of sysprep functions.
pub type Result<T, E = SysprepError> = std::result::Result<T, E>;

/// What one operation did in a run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OpReport {
    /// The operation's name (dash form).
    pub name: &'static str,
    /// What it changed (or, in a dry run, would change).
    pub changes: Changes,
}

/// The message printed when media is unsupported (no operation runs).
pub const UNSUPPORTED_MESSAGE: &str = "System preparation is disabled for unsupported media";

/// Mark unsupported media the way the original CLI does (`EXCLUDE_ALL_TASKS=yes`), so
/// that the deployment tool does not try to customise an image nothing was done to.
/// The session calls this whenever `os.family` is [`OsFamily::Unsupported`], with or
/// without `--no-sysprep`.
pub fn mark_unsupported(meta: &mut crate::metadata::Metadata) {
    // The key is constant and valid.
    let _ = meta.insert("EXCLUDE_ALL_TASKS", "yes");
}

/// Run every enabled operation of `registry`, in order, on `ctx`.
///
/// Prints "Preparing system for image creation:" and one `(i/N)  message` line per
/// operation; each change is reported with [`snf_core::Reporter::detail`]. Operations
/// that ran are marked executed in the registry (they cannot run twice). Unsupported
/// media run nothing (a warning says so). The first failing operation stops the run
/// with an error naming it.
pub fn run_enabled(registry: &mut Registry, ctx: &mut SysprepContext<'_>) -> Result<Vec<OpReport>> {
    let reporter = ctx.reporter();
    reporter.info("Preparing system for image creation:");
    if ctx.os().family == OsFamily::Unsupported {
        reporter.warn(UNSUPPORTED_MESSAGE);
        return Ok(Vec::new());
    }
    let enabled: Vec<&'static Descriptor> = registry.enabled();
    let total = enabled.len();
    let mut reports = Vec::with_capacity(total);
    for (i, op) in enabled.into_iter().enumerate() {
        snf_core::cancel::check()?;
        let counter = format!("({}/{})", i + 1, total);
        reporter.info(&format!("{counter}  {}", op.message(ctx.params())));
        ctx.begin(op.name);
        let changes = (op.run)(ctx).map_err(|e| match e {
            SysprepError::Cancelled(c) => SysprepError::Cancelled(c),
            other => SysprepError::Operation {
                op: op.name,
                source: Box::new(other),
            },
        })?;
        if !ctx.is_dry_run() {
            registry.mark_executed(op.name);
        }
        reports.push(OpReport {
            name: op.name,
            changes,
        });
    }
    ctx.sync()?;
    Ok(reports)
}
