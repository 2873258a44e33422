//! A [`Reporter`] that keeps what the library said, for tests to assert on.

use std::sync::Mutex;

use snf_core::report::{Reporter, Task, Unit};

/// Which [`Reporter`] method a message came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// `info` and `success`.
    Info,
    /// `detail`.
    Detail,
    /// `warn`.
    Warn,
}

/// Records every info, detail and warning message in order; progress tasks are
/// accepted and ignored.
#[derive(Debug, Default)]
pub struct Recorder {
    messages: Mutex<Vec<(Level, String)>>,
}

impl Recorder {
    /// An empty recorder.
    pub fn new() -> Recorder {
        Recorder::default()
    }

    fn push(&self, level: Level, msg: &str) {
        self.lock().push((level, msg.to_string()));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Level, String)>> {
        // A test that panicked while holding the lock has failed already; its
        // messages are still worth showing.
        self.messages.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The messages that came through `level`, in order.
    pub fn messages(&self, level: Level) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(l, _)| *l == level)
            .map(|(_, m)| m.clone())
            .collect()
    }

    /// The info (and success) messages, in order.
    pub fn infos(&self) -> Vec<String> {
        self.messages(Level::Info)
    }

    /// The detail messages, in order.
    pub fn details(&self) -> Vec<String> {
        self.messages(Level::Detail)
    }

    /// The warnings, in order.
    pub fn warnings(&self) -> Vec<String> {
        self.messages(Level::Warn)
    }

    /// Info and warning messages interleaved as they came, warnings prefixed with
    /// `warning: ` (details left out): what a user of the CLI would see.
    pub fn lines(&self) -> Vec<String> {
        self.lock()
            .iter()
            .filter_map(|(l, m)| match l {
                Level::Info => Some(m.clone()),
                Level::Warn => Some(format!("warning: {m}")),
                Level::Detail => None,
            })
            .collect()
    }

    /// Whether an info message contains `needle`.
    pub fn said(&self, needle: &str) -> bool {
        self.infos().iter().any(|m| m.contains(needle))
    }

    /// Whether a warning contains `needle`.
    pub fn warned(&self, needle: &str) -> bool {
        self.warnings().iter().any(|m| m.contains(needle))
    }
}

struct IgnoredTask;

impl Task for IgnoredTask {
    fn inc(&self, _n: u64) {}
    fn set_position(&self, _pos: u64) {}
    fn finish(&self, _result: &str) {}
}

impl Reporter for Recorder {
    fn info(&self, msg: &str) {
        self.push(Level::Info, msg);
    }
    fn detail(&self, msg: &str) {
        self.push(Level::Detail, msg);
    }
    fn warn(&self, msg: &str) {
        self.push(Level::Warn, msg);
    }
    fn task(&self, _title: &str, _total: u64, _unit: Unit) -> Box<dyn Task> {
        Box::new(IgnoredTask)
    }
}
