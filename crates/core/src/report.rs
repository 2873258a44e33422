//! Messages and progress from the library to whichever front-end runs it.

use std::sync::Arc;

/// What a progress counter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Bytes,
    Items,
}

/// One long-running piece of work with a known total.
pub trait Task: Send + Sync {
    /// Advance the counter by `n` units.
    fn inc(&self, n: u64);
    /// Set the counter to `pos` units.
    fn set_position(&self, pos: u64);
    /// The work is over; `result` is a short word or phrase ("done", "skipped", a checksum).
    fn finish(&self, result: &str);
}

/// The front-end's side of the conversation. All methods must be cheap and must not fail.
pub trait Reporter: Send + Sync {
    /// A line of ordinary chatter ("Examining source media ...").
    fn info(&self, msg: &str);
    /// A detail shown only in verbose mode or in the log (for example each file a
    /// system-preparation operation removed).
    fn detail(&self, msg: &str) {
        let _ = msg;
    }
    /// Something the user should know about, but that does not stop the run.
    fn warn(&self, msg: &str);
    /// A line announcing success of a step.
    fn success(&self, msg: &str) {
        self.info(msg)
    }
    /// Start a progress counter titled `title` with `total` units.
    fn task(&self, title: &str, total: u64, unit: Unit) -> Box<dyn Task>;
}

/// A reporter that drops everything; for tests and library callers that do not care.
#[derive(Debug, Default, Clone, Copy)]
pub struct Quiet;

struct QuietTask;

impl Task for QuietTask {
    fn inc(&self, _n: u64) {}
    fn set_position(&self, _pos: u64) {}
    fn finish(&self, _result: &str) {}
}

impl Reporter for Quiet {
    fn info(&self, _msg: &str) {}
    fn warn(&self, _msg: &str) {}
    fn task(&self, _title: &str, _total: u64, _unit: Unit) -> Box<dyn Task> {
        Box::new(QuietTask)
    }
}

/// A reporter that can be shared between threads and stages.
pub type SharedReporter = Arc<dyn Reporter>;

/// A `SharedReporter` that drops everything.
pub fn quiet() -> SharedReporter {
    Arc::new(Quiet)
}
