//! `snf-mkimage`: create a cloud image from a disk, non-interactively.
//!
//! This binary only parses arguments, prints and handles signals; every decision about
//! the image is taken by the library's [`Session`].

#![forbid(unsafe_code)]

mod console;
mod syslog;

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::error::ErrorKind;
use clap::Parser;
use image_creator::core::cancel;
use image_creator::core::report::{Reporter, SharedReporter};
use image_creator::session::{Session, SessionError};
use image_creator::VERSION;

use crate::console::{printable, Console, Settings, Style};
use crate::syslog::Syslog;
use snf_mkimage::cli::{self, Cli, UsageError};

/// Exit status for a bad command line.
const EXIT_USAGE: u8 = 2;
/// Exit status for a failed run.
const EXIT_FAILURE: u8 = 1;

fn main() -> ExitCode {
    let start = Instant::now();
    // First of all, so that a signal never kills the process with the default action
    // while temporary state exists.
    let signals = match Signals::register() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("Error: cannot install the signal handlers: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            return match err.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                    let _ = err.print();
                    ExitCode::SUCCESS
                }
                _ => {
                    eprintln!("Error: {}", printable(&cli::one_line(&err), false));
                    ExitCode::from(EXIT_USAGE)
                }
            };
        }
    };
    let opts = match cli.to_run_options() {
        Ok(opts) => opts,
        Err(UsageError(msg)) => {
            eprintln!("Error: {}", printable(&msg, false));
            return ExitCode::from(EXIT_USAGE);
        }
    };

    let tty = std::io::stderr().is_terminal();
    let settings = Settings {
        style: if cli.silent {
            Style::Silent
        } else if tty {
            Style::Terminal
        } else {
            Style::Plain
        },
        color: tty,
        timestamps: cli.add_timestamp,
        verbose: cli.verbose,
        start,
    };
    let mut syslog_problem = None;
    let syslog = if cli.syslog {
        match Syslog::connect(Path::new(syslog::DEV_LOG)) {
            Ok(log) => Some(log),
            Err(e) => {
                syslog_problem = Some(format!(
                    "not logging to syslog: cannot reach {}: {e}",
                    syslog::DEV_LOG
                ));
                None
            }
        }
    } else {
        None
    };
    let console = Arc::new(Console::new(settings, syslog));
    let title = format!("snf-image-creator {VERSION}");
    console.info(&title);
    console.info(&"=".repeat(title.len()));
    if let Some(problem) = syslog_problem {
        console.warn(&problem);
    }
    for unused in cli.ineffective() {
        console.warn(unused);
    }

    match run(&cli, opts, &console) {
        Ok(()) => {
            console.success("snf-image-creator exited without errors");
            ExitCode::SUCCESS
        }
        Err(_) if cancel::is_requested() => {
            console.error(&cancel::Cancelled.to_string());
            ExitCode::from(signals.exit_code())
        }
        Err(err) => {
            console.error(&err.to_string());
            // A stage may still find the command line wrong (the library decides).
            let usage = err
                .downcast_ref::<SessionError>()
                .is_some_and(SessionError::is_usage);
            ExitCode::from(if usage { EXIT_USAGE } else { EXIT_FAILURE })
        }
    }
}

/// One run: the session's stages, the requested reports, then cleanup (by dropping the
/// session) before the caller prints the outcome.
fn run(
    cli: &Cli,
    opts: image_creator::options::RunOptions,
    console: &Arc<Console>,
) -> anyhow::Result<()> {
    let reporter: SharedReporter = console.clone();
    let mut session = Session::new(opts, reporter)?;
    let result = (|| -> anyhow::Result<()> {
        session.prepare()?;
        print_reports(cli, &session)?;
        session.finish()?;
        if let Some(answer) = session.registration() {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", image_creator::cloud::pretty_json(answer))
                .and_then(|()| out.flush())
                .context("cannot write the registration result to stdout")?;
        }
        Ok(())
    })();
    console.info("cleaning up ...");
    drop(session);
    result
}

/// The `--print-*` reports, on stdout, each followed by a blank line (JSON: one object
/// holding the reports asked for).
fn print_reports(cli: &Cli, session: &Session) -> anyhow::Result<()> {
    let mut text = String::new();
    if cli.json {
        let mut obj = serde_json::Map::new();
        if cli.print_metadata {
            obj.insert("metadata".into(), session.metadata().to_json());
        }
        if cli.print_syspreps {
            if let Some(r) = session.syspreps() {
                obj.insert("syspreps".into(), r.to_json());
            }
        }
        if cli.print_sysprep_params {
            if let Some(p) = session.sysprep_params() {
                obj.insert("sysprep_params".into(), p.to_json());
            }
        }
        if obj.is_empty() {
            return Ok(());
        }
        // A single report keeps its own shape; several are keyed by report name.
        let value = if obj.len() == 1 {
            obj.into_iter().next().map(|(_, v)| v).unwrap_or_default()
        } else {
            serde_json::Value::Object(obj)
        };
        text = serde_json::to_string_pretty(&value)?;
        text.push('\n');
    } else {
        if cli.print_syspreps {
            if let Some(r) = session.syspreps() {
                text.push_str(&r.print());
                text.push('\n');
            }
        }
        if cli.print_sysprep_params {
            if let Some(p) = session.sysprep_params() {
                text.push_str(&p.print());
                text.push('\n');
            }
        }
        if cli.print_metadata {
            text.push_str(&session.metadata().table().to_string());
            text.push('\n');
        }
    }
    if text.is_empty() {
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("cannot write the reports to stdout")?;
    Ok(())
}

/// The signals that end a run. Each requests cancellation, so that the run stops and
/// cleans up (work directory, loop devices, mounts, the unfinished output) like on
/// Ctrl-C, then exits with 128 + its number: SIGHUP when the terminal goes away, SIGQUIT
/// (which would dump core), SIGUSR1/2, SIGALRM and SIGXCPU (`ulimit -t`), whose default
/// action would kill the process with its temporary state still in place.
const STOPPING: [std::ffi::c_int; 8] = {
    use signal_hook::consts::*;
    [
        SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM, SIGXCPU,
    ]
};

/// The stopping signals request cancellation; the last one to arrive is remembered.
/// SIGXFSZ (a file grown past `ulimit -f`) is caught and dropped: the write fails with
/// "File too large", an ordinary error naming the file, instead of killing the process.
struct Signals {
    last: Arc<AtomicUsize>,
}

impl Signals {
    fn register() -> std::io::Result<Self> {
        let last = Arc::new(AtomicUsize::new(0));
        for sig in STOPPING {
            signal_hook::flag::register(sig, cancel::flag())?;
            signal_hook::flag::register_usize(sig, Arc::clone(&last), sig as usize)?;
        }
        signal_hook::flag::register(
            signal_hook::consts::SIGXFSZ,
            Arc::new(AtomicBool::new(false)),
        )?;
        Ok(Signals { last })
    }

    /// 128 + the signal number, as shells report it.
    fn exit_code(&self) -> u8 {
        match self.last.load(Ordering::SeqCst) {
            0 => 128 + 2,
            n => u8::try_from(128 + n).unwrap_or(128 + 2),
        }
    }
}
