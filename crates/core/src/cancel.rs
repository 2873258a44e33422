//! Process-wide cancellation.
//!
//! The binaries register SIGINT/SIGTERM with [`flag`]; library code calls [`check`] in
//! its loops. Cancelling is cooperative so that cleanup (work directory, loop devices,
//! FUSE mounts) always runs through ordinary `Drop` guards.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// The error returned by work that stopped because cancellation was requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("interrupted by the user")]
pub struct Cancelled;

fn cell() -> &'static Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

/// The shared flag, for registering with a signal handler (`signal_hook::flag::register`).
pub fn flag() -> Arc<AtomicBool> {
    Arc::clone(cell())
}

/// Ask all running work to stop.
pub fn request() {
    cell().store(true, Ordering::SeqCst);
}

/// Whether cancellation has been requested.
pub fn is_requested() -> bool {
    cell().load(Ordering::SeqCst)
}

/// `Err(Cancelled)` once cancellation has been requested.
pub fn check() -> Result<(), Cancelled> {
    if is_requested() {
        Err(Cancelled)
    } else {
        Ok(())
    }
}

/// Clear the flag (used by the interactive UI after a cancelled operation).
pub fn reset() {
    cell().store(false, Ordering::SeqCst);
}
