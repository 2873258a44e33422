//! `snf-image-creator`: create a cloud image from a disk, interactively.
//!
//! This binary parses the options, sets up the log, the terminal and the signal
//! handlers, and runs [`App`]. The terminal is restored on every way out: a normal
//! exit, a fatal error (exit 1, the log is kept and named), Ctrl-C or a signal (exit
//! 130/143 after cleanup), a hang-up (the terminal's window closed: exit 129 after
//! cleanup, no log kept, nothing written to the dead terminal) and a crash (exit 3, the
//! log is kept and named). A kept log is in the state directory, not in `/tmp`.

#![forbid(unsafe_code)]

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use clap::Parser;
use image_creator::core::cancel;
use image_creator::VERSION;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::{execute, terminal};
use ratatui::Terminal;
use snf_image_creator::app::{App, Exit, Settings};
use snf_image_creator::cli::Cli;
use snf_image_creator::report::{LogFile, Syslog, UiReporter};
use snf_image_creator::ui::{TerminalEvents, TtyOut, Ui, UiError};

const EXIT_FATAL: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_CRASH: u8 = 3;
/// 128 + SIGHUP, as a shell reports a program ended by a hang-up.
const EXIT_HANGUP: u8 = 129;

/// The log, reachable from the panic hook.
static LOG: OnceLock<Arc<LogFile>> = OnceLock::new();
/// The panic message, for the crash report printed after the terminal is restored.
static CRASH: Mutex<Option<String>> = Mutex::new(None);

/// A line on standard error that may be a terminal already gone: nothing to do then.
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

fn restore_terminal() {
    let _ = terminal::disable_raw_mode();
    let _ = execute!(
        std::io::stdout(),
        terminal::LeaveAlternateScreen,
        ratatui::crossterm::cursor::Show
    );
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    if let Some(dir) = &cli.tmpdir {
        if !dir.is_dir() {
            say!(
                "Error: The directory `{}' specified with --tmpdir is not valid",
                dir.display()
            );
            return ExitCode::from(EXIT_USAGE);
        }
    }
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        say!("Error: snf-image-creator needs a terminal; use snf-mkimage for scripts");
        return ExitCode::from(EXIT_USAGE);
    }
    let log = match LogFile::open(cli.logfile.as_deref()) {
        Ok(l) => Arc::new(l),
        Err(e) => {
            let what = cli
                .logfile
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "a temporary log file".into());
            say!("Error: cannot create {what}: {e}");
            return ExitCode::from(EXIT_FATAL);
        }
    };
    let _ = LOG.set(Arc::clone(&log));
    log.write_line(&format!("snf-image-creator {VERSION} started"));

    // Signals quit the UI in order (the work is cancelled, the session dropped).
    let quit = Arc::new(AtomicBool::new(false));
    let sigterm = Arc::new(AtomicBool::new(false));
    let sighup = Arc::new(AtomicBool::new(false));
    {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        for sig in [SIGINT, SIGTERM, SIGHUP] {
            if let Err(e) = signal_hook::flag::register(sig, Arc::clone(&quit))
                .and_then(|_| signal_hook::flag::register(sig, cancel::flag()))
            {
                say!("Error: cannot install the signal handlers: {e}");
                return ExitCode::from(EXIT_FATAL);
            }
        }
        let _ = signal_hook::flag::register(SIGTERM, Arc::clone(&sigterm));
        let _ = signal_hook::flag::register(SIGHUP, Arc::clone(&sighup));
    }

    let syslog = if cli.syslog {
        match Syslog::connect() {
            Ok(s) => Some(s),
            Err(e) => {
                log.write_line(&format!("Warning: not logging to syslog: /dev/log: {e}"));
                None
            }
        }
    } else {
        None
    };
    let reporter = Arc::new(UiReporter::new(Arc::clone(&log), syslog));

    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore_terminal();
        let msg = info.to_string();
        if let Some(log) = LOG.get() {
            log.write_line(&format!("CRASH: {msg}"));
            log.write_line(&format!("{}", std::backtrace::Backtrace::force_capture()));
            log.keep();
        }
        *CRASH.lock().unwrap_or_else(|e| e.into_inner()) = Some(msg);
        let _ = &default_hook;
    }));

    if let Err(e) = terminal::enable_raw_mode()
        .and_then(|()| execute!(std::io::stdout(), terminal::EnterAlternateScreen))
    {
        restore_terminal();
        say!("Error: cannot set up the terminal: {e}");
        return ExitCode::from(EXIT_FATAL);
    }
    let term = match Terminal::new(CrosstermBackend::new(TtyOut::new())) {
        Ok(t) => t,
        Err(e) => {
            restore_terminal();
            say!("Error: cannot set up the terminal: {e}");
            return ExitCode::from(EXIT_FATAL);
        }
    };
    let settings = Settings {
        source: cli.source.clone(),
        no_snapshot: cli.no_snapshot,
        tmpdir: cli.tmpdir.clone(),
    };
    let ui = Ui::new(term, Box::new(TerminalEvents::start()), Arc::clone(&quit));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut app = App::new(ui, Arc::clone(&reporter), settings);
        let result = app.run();
        if let Ok(Exit::Fatal(msg)) = &result {
            reporter.error(msg);
            log.keep();
            let _ = app_fatal_box(&mut app, msg, log.path());
        }
        // Cleanup (work directory, private copy) before the terminal is given back.
        app.close();
        result
    }));
    let hung_up = matches!(outcome, Ok(Err(UiError::HangUp)))
        || (matches!(outcome, Ok(Err(UiError::Quit))) && sighup.load(Ordering::SeqCst))
        || TtyOut::gone();
    if hung_up && matches!(outcome, Ok(Err(_))) {
        // A closed window is a normal way to end a session: the clean-up is done,
        // nothing went wrong, and there is no terminal to restore or to tell.
        log.write_line("the terminal hung up");
        log.discard();
        return ExitCode::from(EXIT_HANGUP);
    }
    restore_terminal();
    match outcome {
        Ok(Ok(Exit::Done)) => {
            log.write_line("snf-image-creator exited without errors");
            log.discard();
            ExitCode::SUCCESS
        }
        Ok(Ok(Exit::Fatal(msg))) => {
            say!(
                "Error: {msg}\nA fatal error occurred. See {} for a full log.",
                log.path().display()
            );
            ExitCode::from(EXIT_FATAL)
        }
        Ok(Err(UiError::Quit | UiError::HangUp)) => {
            log.write_line("interrupted by the user");
            log.discard();
            say!("snf-image-creator: interrupted by the user");
            ExitCode::from(if sigterm.load(Ordering::SeqCst) {
                143
            } else {
                130
            })
        }
        Ok(Err(UiError::Io(e))) => {
            log.write_line(&format!("Error: terminal: {e}"));
            log.keep();
            say!(
                "Error: terminal: {e}\nA fatal error occurred. See {} for a full log.",
                log.path().display()
            );
            ExitCode::from(EXIT_FATAL)
        }
        Err(_) => {
            let msg = CRASH
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .unwrap_or_else(|| "unknown error".into());
            log.keep();
            let mut err = std::io::stderr();
            let _ = writeln!(
                err,
                "snf-image-creator crashed: {msg}\nSee {} for a full log.",
                log.path().display()
            );
            ExitCode::from(EXIT_CRASH)
        }
    }
}

fn app_fatal_box<B: ratatui::backend::Backend>(
    app: &mut App<B>,
    msg: &str,
    log: &std::path::Path,
) -> Result<(), UiError> {
    app.fatal_box(&format!(
        "A fatal error occurred:\n\n{msg}\n\nSee {} for a full log.",
        log.display()
    ))
}
