//! A small pool of std threads working through numbered jobs.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::error::{CloudError, Result};

/// Run `job(0..count)` on up to `workers` threads. The first error stops the others
/// from taking new jobs and is returned; so is a cancellation request.
pub(crate) fn run<F>(count: usize, workers: usize, job: F) -> Result<()>
where
    F: Fn(usize) -> Result<()> + Sync,
{
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<CloudError>> = Mutex::new(None);
    let workers = workers.clamp(1, count.max(1));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                if failed.load(Ordering::SeqCst) {
                    return;
                }
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= count {
                    return;
                }
                let r = snf_core::cancel::check()
                    .map_err(CloudError::from)
                    .and_then(|()| job(i));
                if let Err(e) = r {
                    failed.store(true, Ordering::SeqCst);
                    let mut slot = first_error.lock().unwrap_or_else(|p| p.into_inner());
                    // a cancellation seen by one worker should not hide the real error of another
                    if slot.is_none() || matches!(*slot, Some(CloudError::Cancelled(_))) {
                        *slot = Some(e);
                    }
                    return;
                }
            });
        }
    });
    match first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
