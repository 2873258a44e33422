//! How `snf-mkimage` shows what the library reports: everything goes to stderr.
//!
//! * on a terminal: colours for success/warnings/errors and `indicatif` progress bars;
//! * otherwise: plain lines without any control character; a task prints `Title ...`
//!   when it starts and `Title ... result` when it ends;
//! * `-s`: errors only;
//! * `--add-timestamp`: every line starts with `[<seconds since start>s] `;
//! * `--syslog`: every message is also sent to syslog;
//! * `-v`: details (for example each file a system preparation changed) are shown.
//!
//! Messages carry text from the guest (file names, `/etc/fstab` lines, os-release
//! values) and from the command line: [`printable`] escapes every control character in
//! them (a guest cannot move the cursor, recolour or clear the terminal, nor make a
//! line of its own such as a fake `Error:`) and shortens very long lines. Errors and
//! warnings are always one line.

use std::borrow::Cow;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use image_creator::core::report::{Reporter, Task, Unit};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::syslog::{Severity, Syslog};

/// How much is shown and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Errors only (`-s`).
    Silent,
    /// Plain lines, no control characters (stderr is not a terminal).
    Plain,
    /// Colours and progress bars (stderr is a terminal).
    Terminal,
}

/// The front-end settings of the console.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// What kind of output.
    pub style: Style,
    /// Colour errors even in silent mode (stderr is a terminal).
    pub color: bool,
    /// Prefix each line with the seconds since `start`.
    pub timestamps: bool,
    /// Show details.
    pub verbose: bool,
    /// When the program started.
    pub start: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Info,
    Detail,
    Success,
    Warning,
    Error,
}

impl Kind {
    fn severity(self) -> Severity {
        match self {
            Kind::Info | Kind::Detail | Kind::Success => Severity::Info,
            Kind::Warning => Severity::Warning,
            Kind::Error => Severity::Error,
        }
    }

    fn color(self) -> Option<&'static str> {
        match self {
            Kind::Success => Some("\x1b[32m"),
            Kind::Warning => Some("\x1b[33m"),
            Kind::Error => Some("\x1b[31m"),
            Kind::Info | Kind::Detail => None,
        }
    }
}

/// The [`Reporter`] of `snf-mkimage`.
pub struct Console {
    inner: Arc<Inner>,
}

struct Inner {
    settings: Settings,
    syslog: Option<Syslog>,
    bars: Option<MultiProgress>,
    // Serialises whole lines so that messages from several threads never interleave.
    lock: Mutex<()>,
}

impl Console {
    /// A console with these settings, logging to `syslog` too if given.
    pub fn new(settings: Settings, syslog: Option<Syslog>) -> Self {
        let bars = (settings.style == Style::Terminal)
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Console {
            inner: Arc::new(Inner {
                settings,
                syslog,
                bars,
                lock: Mutex::new(()),
            }),
        }
    }

    /// Print an error line (`Error: msg`, one line); shown in every mode.
    pub fn error(&self, msg: &str) {
        self.inner.emit(Kind::Error, &format!("Error: {msg}"));
    }
}

impl Inner {
    fn prefix(&self) -> String {
        if self.settings.timestamps {
            format!("[{}s] ", self.settings.start.elapsed().as_secs())
        } else {
            String::new()
        }
    }

    /// Keep a bar's timestamp prefix current.
    fn stamp(&self, bar: &ProgressBar) {
        if self.settings.timestamps {
            bar.set_prefix(self.prefix());
        }
    }

    fn shown(&self, kind: Kind) -> bool {
        match self.settings.style {
            Style::Silent => kind == Kind::Error,
            _ => kind != Kind::Detail || self.settings.verbose,
        }
    }

    fn emit(&self, kind: Kind, msg: &str) {
        if let Some(log) = &self.syslog {
            if kind != Kind::Detail || self.settings.verbose {
                log.send(kind.severity(), msg);
            }
        }
        if !self.shown(kind) {
            return;
        }
        let colored = self.settings.color;
        let prefix = self.prefix();
        let mut text = String::new();
        // Errors and warnings are one line; other messages may hold several.
        let one_line = matches!(kind, Kind::Error | Kind::Warning);
        let lines: Vec<Cow<str>> = if one_line {
            vec![printable(msg.trim_end_matches('\n'), false)]
        } else {
            msg.lines().map(|l| printable(l, true)).collect()
        };
        for line in lines {
            match kind.color().filter(|_| colored) {
                Some(c) => text.push_str(&format!("{prefix}{c}{line}\x1b[0m\n")),
                None => text.push_str(&format!("{prefix}{line}\n")),
            }
        }
        if msg.is_empty() {
            text.push_str(&format!("{}\n", prefix.trim_end()));
        }
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let write = || {
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(text.as_bytes());
            let _ = err.flush();
        };
        match &self.bars {
            Some(bars) => bars.suspend(write),
            None => write(),
        }
    }
}

impl Reporter for Console {
    fn info(&self, msg: &str) {
        self.inner.emit(Kind::Info, msg);
    }

    fn detail(&self, msg: &str) {
        self.inner.emit(Kind::Detail, msg);
    }

    fn warn(&self, msg: &str) {
        self.inner.emit(Kind::Warning, &format!("Warning: {msg}"));
    }

    fn success(&self, msg: &str) {
        self.inner.emit(Kind::Success, msg);
    }

    fn task(&self, title: &str, total: u64, unit: Unit) -> Box<dyn Task> {
        let inner = &self.inner;
        let bar = match (&inner.bars, inner.settings.style) {
            (Some(bars), Style::Terminal) => {
                let template = match unit {
                    Unit::Bytes => {
                        "{prefix}{msg} [{bar:30}] {decimal_bytes}/{decimal_total_bytes} ({eta})"
                    }
                    Unit::Items => "{prefix}{msg} [{bar:30}] {pos}/{len}",
                };
                let style = ProgressStyle::with_template(template)
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> ");
                let bar = bars.add(ProgressBar::new(total));
                bar.set_style(style);
                bar.set_prefix(inner.prefix());
                bar.set_message(printable(title, false).into_owned());
                bar.enable_steady_tick(Duration::from_millis(200));
                Some(bar)
            }
            _ => {
                inner.emit(Kind::Info, &format!("{title} ..."));
                None
            }
        };
        Box::new(ConsoleTask {
            title: title.to_string(),
            bar,
            console: Arc::clone(inner),
            finished: Mutex::new(false),
        })
    }
}

/// The longest line shown, in characters: past it, the middle is left out, saying how
/// much (a guest's one-line file can be 64 MiB long; an error ends with what is wrong).
const MAX_LINE: usize = 4096;

/// `text` as it can be shown on a terminal: every control character (a newline too,
/// unless `keep_newlines`; a tab is kept) written as an escape (`\n`, `\x1b`,
/// `\u{9b}`), and at most about [`MAX_LINE`] characters.
pub fn printable(text: &str, keep_newlines: bool) -> Cow<'_, str> {
    let clean = |c: char| !c.is_control() || c == '\t' || (keep_newlines && c == '\n');
    let count = text.chars().count();
    if count <= MAX_LINE && text.chars().all(clean) {
        return Cow::Borrowed(text);
    }
    let (head, tail) = (MAX_LINE * 3 / 4, MAX_LINE / 4);
    let mut out = String::with_capacity(text.len().min(4 * MAX_LINE));
    for (i, c) in text.chars().enumerate() {
        if count > MAX_LINE && i == head {
            out.push_str(&format!(" [... {} characters ...] ", count - head - tail));
        }
        if count > MAX_LINE && (head..count - tail).contains(&i) {
            continue;
        }
        match c {
            c if clean(c) => out.push(c),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if u32::from(c) < 0x80 => out.push_str(&format!("\\x{:02x}", u32::from(c))),
            c => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
        }
    }
    Cow::Owned(out)
}

struct ConsoleTask {
    title: String,
    bar: Option<ProgressBar>,
    console: Arc<Inner>,
    finished: Mutex<bool>,
}

impl Task for ConsoleTask {
    fn inc(&self, n: u64) {
        if let Some(bar) = &self.bar {
            self.console.stamp(bar);
            bar.inc(n);
        }
    }

    fn set_position(&self, pos: u64) {
        if let Some(bar) = &self.bar {
            self.console.stamp(bar);
            bar.set_position(pos);
        }
    }

    fn finish(&self, result: &str) {
        let mut finished = self.finished.lock().unwrap_or_else(|e| e.into_inner());
        if *finished {
            return;
        }
        *finished = true;
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        self.console
            .emit(Kind::Info, &format!("{} ... {result}", self.title));
    }
}

impl Drop for ConsoleTask {
    fn drop(&mut self) {
        // A task abandoned by an error leaves no half-drawn bar behind.
        if let Some(bar) = &self.bar {
            if !bar.is_finished() {
                bar.finish_and_clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_controls_and_shortens_the_middle() {
        assert!(matches!(printable("plain\ttext", false), Cow::Borrowed(_)));
        assert_eq!(
            printable("a\nb\x1b[2J\r\u{9b}", false),
            "a\\nb\\x1b[2J\\r\\u{9b}"
        );
        assert_eq!(printable("a\nb", true), "a\nb");
        let long = format!("{}does not exist", "x".repeat(10_000));
        let shown = printable(&long, false);
        assert!(shown.ends_with("does not exist"), "{shown}");
        assert!(shown.contains(" characters ...] "), "{shown}");
        assert!(shown.chars().count() < MAX_LINE + 40);
    }
}
