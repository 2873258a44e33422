//! Where the library's messages go in the UI: the log file (timestamped), syslog when
//! asked, the in-memory log the Log screen shows, and the progress screen's gauge.

use std::fs::File;
use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use image_creator::core::report::{Reporter, Task, Unit};

use crate::widgets::Gauge;

/// The log file: `-l FILE`, or a temporary `fatal-XXXX` file in the state directory
/// ([`state_dir`]) that is removed on a normal exit or a hang-up and kept (and pointed
/// to) after a fatal error or a crash.
pub struct LogFile {
    path: PathBuf,
    file: Mutex<File>,
    temp: Mutex<Option<tempfile::TempPath>>,
}

impl LogFile {
    /// Open `path` for writing (truncated), or create the temporary log.
    pub fn open(path: Option<&Path>) -> std::io::Result<LogFile> {
        match path {
            Some(p) => Ok(LogFile {
                path: std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()),
                file: Mutex::new(File::create(p)?),
                temp: Mutex::new(None),
            }),
            None => {
                let dir = state_dir();
                std::fs::create_dir_all(&dir)?;
                let named = tempfile::Builder::new()
                    .prefix("fatal-")
                    .tempfile_in(&dir)?;
                let (file, temp) = named.into_parts();
                Ok(LogFile {
                    path: temp.to_path_buf(),
                    file: Mutex::new(file),
                    temp: Mutex::new(Some(temp)),
                })
            }
        }
    }

    /// Where the log is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Keep a temporary log after exit (fatal error or crash).
    pub fn keep(&self) {
        if let Some(t) = self
            .temp
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            let _ = t.keep();
        }
    }

    /// Remove a temporary log now (normal exit); a `-l` log stays.
    pub fn discard(&self) {
        drop(
            self.temp
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
    }

    /// Append one timestamped line.
    pub fn write_line(&self, line: &str) {
        let mut f = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = writeln!(f, "{} {line}", timestamp());
        let _ = f.flush();
    }
}

/// Where the program keeps what must outlive a run (the log of a failed run):
/// `$XDG_STATE_HOME/snf-image-creator`, else `~/.local/state/snf-image-creator`. Not
/// the shared temporary directory, which other users can read and which is cleaned
/// behind one's back.
pub fn state_dir() -> PathBuf {
    let absolute = |v: std::ffi::OsString| {
        let p = PathBuf::from(v);
        p.is_absolute().then_some(p)
    };
    let base = std::env::var_os("XDG_STATE_HOME")
        .and_then(absolute)
        .or_else(|| {
            std::env::var_os("HOME")
                .and_then(absolute)
                .map(|h| h.join(".local/state"))
        })
        .unwrap_or_else(|| PathBuf::from("/var/tmp"));
    base.join("snf-image-creator")
}

/// `YYYY-MM-DD HH:MM:SS` in UTC.
pub fn timestamp() -> String {
    let (y, mo, d, h, mi, s) = image_creator::interactive::utc_date_time(unix_now());
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")
}

/// Seconds since the Unix epoch now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Messages to the local syslog daemon (`/dev/log`), prefixed like the original's.
pub struct Syslog {
    sock: UnixDatagram,
}

impl Syslog {
    /// Connect to `/dev/log`.
    pub fn connect() -> std::io::Result<Syslog> {
        let sock = UnixDatagram::unbound()?;
        sock.connect("/dev/log")?;
        Ok(Syslog { sock })
    }

    fn send(&self, severity: u8, prefix: &str, msg: &str) {
        // facility user (1)
        let pri = 8 + severity;
        let _ = self
            .sock
            .send(format!("<{pri}>snf-image-creator: {prefix} {msg}").as_bytes());
    }
}

struct TaskState {
    title: String,
    total: u64,
    position: AtomicU64,
    done: AtomicBool,
    bytes: bool,
}

#[derive(Default)]
struct Shared {
    lines: Vec<String>,
    tasks: Vec<Arc<TaskState>>,
}

/// The UI's [`Reporter`]. Cheap to share; the progress screen polls it.
pub struct UiReporter {
    log: Arc<LogFile>,
    syslog: Option<Syslog>,
    shared: Mutex<Shared>,
}

struct UiTask {
    state: Arc<TaskState>,
    log: Arc<LogFile>,
}

impl Task for UiTask {
    fn inc(&self, n: u64) {
        self.state.position.fetch_add(n, Ordering::Relaxed);
    }
    fn set_position(&self, pos: u64) {
        self.state.position.store(pos, Ordering::Relaxed);
    }
    fn finish(&self, result: &str) {
        self.state
            .position
            .store(self.state.total, Ordering::Relaxed);
        self.state.done.store(true, Ordering::Relaxed);
        self.log
            .write_line(&format!("{} ... {result}", self.state.title));
    }
}

impl Drop for UiTask {
    fn drop(&mut self) {
        self.state.done.store(true, Ordering::Relaxed);
    }
}

impl UiReporter {
    /// A reporter writing to `log` (and to syslog when given).
    pub fn new(log: Arc<LogFile>, syslog: Option<Syslog>) -> Self {
        UiReporter {
            log,
            syslog,
            shared: Mutex::new(Shared::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, line: String, severity: u8, prefix: &str, raw: &str) {
        self.log.write_line(&line);
        if let Some(s) = &self.syslog {
            s.send(severity, prefix, raw);
        }
        self.lock().lines.push(line);
    }

    /// An error line (fatal errors and failed actions).
    pub fn error(&self, msg: &str) {
        self.push(format!("Error: {msg}"), 3, "[ERROR]", msg);
    }

    /// The log file.
    pub fn log(&self) -> &Arc<LogFile> {
        &self.log
    }

    /// Every line logged so far.
    pub fn lines(&self) -> Vec<String> {
        self.lock().lines.clone()
    }

    /// How many lines were logged so far.
    pub fn line_count(&self) -> usize {
        self.lock().lines.len()
    }

    /// The lines logged since line `from`.
    pub fn lines_since(&self, from: usize) -> Vec<String> {
        let s = self.lock();
        s.lines
            .get(from..)
            .map(<[String]>::to_vec)
            .unwrap_or_default()
    }

    /// The counter the progress screen shows: the newest one still running.
    pub fn current_gauge(&self) -> Option<Gauge> {
        let mut s = self.lock();
        s.tasks.retain(|t| !t.done.load(Ordering::Relaxed));
        s.tasks.last().map(|t| Gauge {
            title: t.title.clone(),
            position: t.position.load(Ordering::Relaxed),
            total: t.total,
            bytes: t.bytes,
        })
    }
}

impl Reporter for UiReporter {
    fn info(&self, msg: &str) {
        self.push(msg.to_string(), 6, "[INFO]", msg);
    }
    fn detail(&self, msg: &str) {
        // Details go to the log file only, like a verbose CLI run.
        self.log.write_line(&format!("  {msg}"));
    }
    fn warn(&self, msg: &str) {
        self.push(format!("Warning: {msg}"), 4, "[WARNING]", msg);
    }
    fn task(&self, title: &str, total: u64, unit: Unit) -> Box<dyn Task> {
        self.log.write_line(&format!("{title} ..."));
        let state = Arc::new(TaskState {
            title: title.to_string(),
            total,
            position: AtomicU64::new(0),
            done: AtomicBool::new(false),
            bytes: unit == Unit::Bytes,
        });
        self.lock().tasks.push(Arc::clone(&state));
        Box::new(UiTask {
            state,
            log: Arc::clone(&self.log),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_log_is_removed_unless_kept() {
        let log = LogFile::open(None).unwrap();
        let path = log.path().to_path_buf();
        assert!(path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("fatal-"));
        log.write_line("hello");
        assert!(std::fs::read_to_string(&path)
            .unwrap()
            .ends_with(" hello\n"));
        drop(log);
        assert!(!path.exists());
        let log = LogFile::open(None).unwrap();
        let path = log.path().to_path_buf();
        log.keep();
        drop(log);
        assert!(path.exists());
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn gauge_follows_the_newest_running_task() {
        let log = Arc::new(LogFile::open(None).unwrap());
        let r = UiReporter::new(log, None);
        let a = r.task("A", 10, Unit::Items);
        a.inc(3);
        assert_eq!(r.current_gauge().unwrap().position, 3);
        let b = r.task("B", 4 << 20, Unit::Bytes);
        b.set_position(1 << 20);
        assert_eq!(r.current_gauge().unwrap().title, "B");
        b.finish("done");
        assert_eq!(r.current_gauge().unwrap().title, "A");
        drop(a);
        assert!(r.current_gauge().is_none());
        r.info("one");
        r.warn("two");
        assert_eq!(r.lines(), vec!["one", "Warning: two"]);
    }
}
