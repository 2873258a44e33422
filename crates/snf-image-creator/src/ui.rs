//! The terminal driver: shows one dialog at a time over the background title, runs
//! long work on a worker thread behind the progress screen, and turns Ctrl-C or a
//! termination signal into an orderly quit.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use image_creator::core::cancel;
use ratatui::backend::Backend;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::Terminal;

use crate::report::UiReporter;
use crate::widgets::{render_progress, render_screen, Dialog, Outcome};

/// Why the UI stopped before the dialog ended.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    /// Ctrl-C, SIGINT, SIGTERM or SIGHUP: quit now (after cleanup).
    #[error("interrupted by the user")]
    Quit,
    /// The terminal failed.
    #[error("terminal error: {0}")]
    Io(#[from] io::Error),
}

/// Where key presses come from.
pub trait Events {
    /// The next event, waiting at most `timeout`; `None` when none came.
    fn next(&mut self, timeout: Duration) -> io::Result<Option<Event>>;

    /// The next event while work runs behind the progress screen (Esc or Enter cancel
    /// it); by default the same as [`Events::next`].
    fn next_during_work(&mut self, timeout: Duration) -> io::Result<Option<Event>> {
        self.next(timeout)
    }
}

/// The real terminal's events.
pub struct TerminalEvents;

impl Events for TerminalEvents {
    fn next(&mut self, timeout: Duration) -> io::Result<Option<Event>> {
        if event::poll(timeout)? {
            Ok(Some(event::read()?))
        } else {
            Ok(None)
        }
    }
}

/// Events from a list (tests); when the list runs out, the UI quits. The keys answer
/// dialogs only: work behind the progress screen runs to its end undisturbed, however
/// long it takes, so a script does not depend on timing.
#[derive(Default)]
pub struct ScriptedEvents {
    keys: VecDeque<Event>,
}

impl ScriptedEvents {
    /// These key presses, in order.
    pub fn new(keys: impl IntoIterator<Item = KeyEvent>) -> Self {
        ScriptedEvents {
            keys: keys.into_iter().map(Event::Key).collect(),
        }
    }
}

impl Events for ScriptedEvents {
    fn next(&mut self, _timeout: Duration) -> io::Result<Option<Event>> {
        match self.keys.pop_front() {
            Some(e) => Ok(Some(e)),
            None => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the scripted keys ran out",
            )),
        }
    }

    fn next_during_work(&mut self, timeout: Duration) -> io::Result<Option<Event>> {
        std::thread::sleep(timeout.min(Duration::from_millis(20)));
        Ok(None)
    }
}

fn is_ctrl_c(key: &KeyEvent) -> bool {
    key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c')
}

/// The screen.
pub struct Ui<B: Backend> {
    terminal: Terminal<B>,
    events: Box<dyn Events>,
    /// The line at the top of the screen (what is being imaged).
    pub backtitle: String,
    quit: Arc<AtomicBool>,
}

fn io_err<E: std::fmt::Display>(e: E) -> io::Error {
    io::Error::other(e.to_string())
}

impl<B: Backend> Ui<B> {
    /// A UI drawing on `terminal`, reading `events`; `quit` is set by signal handlers.
    pub fn new(terminal: Terminal<B>, events: Box<dyn Events>, quit: Arc<AtomicBool>) -> Self {
        Ui {
            terminal,
            events,
            backtitle: String::new(),
            quit,
        }
    }

    /// The terminal (tests read the test backend's buffer).
    pub fn terminal(&self) -> &Terminal<B> {
        &self.terminal
    }

    fn check_quit(&self) -> Result<(), UiError> {
        if self.quit.load(Ordering::SeqCst) {
            Err(UiError::Quit)
        } else {
            Ok(())
        }
    }

    /// Draw `dialog` once (tests and the first frame).
    pub fn draw(&mut self, dialog: &mut Dialog) -> Result<(), UiError> {
        let backtitle = self.backtitle.clone();
        self.terminal
            .draw(|f| {
                let area = f.area();
                let rest = render_screen(&backtitle, area, f.buffer_mut());
                dialog.render(rest, f.buffer_mut());
            })
            .map_err(io_err)?;
        Ok(())
    }

    /// Show `dialog` until a button or Esc ends it.
    pub fn show(&mut self, dialog: &mut Dialog) -> Result<Outcome, UiError> {
        loop {
            self.check_quit()?;
            self.draw(dialog)?;
            match self.events.next(Duration::from_millis(200))? {
                Some(Event::Key(key)) if key.kind != KeyEventKind::Release => {
                    if is_ctrl_c(&key) {
                        return Err(UiError::Quit);
                    }
                    if let Some(outcome) = dialog.handle(key) {
                        return Ok(outcome);
                    }
                }
                Some(Event::Resize(..)) => self.terminal.autoresize().map_err(io_err)?,
                _ => {}
            }
        }
    }

    /// A message box; waits for OK.
    pub fn msgbox(&mut self, title: &str, text: &str) -> Result<(), UiError> {
        self.show(&mut Dialog::msgbox(title, text)).map(|_| ())
    }

    /// A yes/no question; Esc is No.
    pub fn yesno(&mut self, title: &str, text: &str, default_no: bool) -> Result<bool, UiError> {
        Ok(self.show(&mut Dialog::yesno(title, text, default_no))? == Outcome::Button(0))
    }

    /// Run `work` on a worker thread behind the progress screen titled `title`, showing
    /// what `reporter` receives. Esc or Enter (the Cancel button) asks the work to stop;
    /// Ctrl-C or a signal asks it to stop and then quits. A panic in the work is
    /// re-raised here.
    pub fn work<T: Send>(
        &mut self,
        title: &str,
        reporter: &UiReporter,
        work: impl FnOnce() -> T + Send,
    ) -> Result<T, UiError> {
        let first = reporter.line_count();
        let mut quitting = false;
        let result = std::thread::scope(|s| -> Result<_, UiError> {
            let handle = s.spawn(work);
            loop {
                if self.quit.load(Ordering::SeqCst) && !quitting {
                    quitting = true;
                    cancel::request();
                }
                let log = reporter.lines_since(first);
                let gauge = reporter.current_gauge();
                let cancelling = cancel::is_requested();
                let backtitle = self.backtitle.clone();
                let drawn = self.terminal.draw(|f| {
                    let area = f.area();
                    let rest = render_screen(&backtitle, area, f.buffer_mut());
                    render_progress(
                        title,
                        &log,
                        gauge.as_ref(),
                        cancelling,
                        rest,
                        f.buffer_mut(),
                    );
                });
                if let Err(e) = drawn {
                    // The work must still end before the scope does.
                    cancel::request();
                    let _ = handle.join();
                    return Err(UiError::Io(io_err(e)));
                }
                if handle.is_finished() {
                    break;
                }
                match self.events.next_during_work(Duration::from_millis(100)) {
                    Ok(Some(Event::Key(key))) if key.kind != KeyEventKind::Release => {
                        if is_ctrl_c(&key) {
                            quitting = true;
                            cancel::request();
                        } else if matches!(key.code, KeyCode::Esc | KeyCode::Enter) {
                            cancel::request();
                        }
                    }
                    Ok(Some(Event::Resize(..))) => {
                        let _ = self.terminal.autoresize();
                    }
                    Ok(_) => {}
                    // Scripted events ran out: let the work finish undisturbed.
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
            match handle.join() {
                Ok(v) => Ok(v),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        });
        let value = result?;
        if quitting {
            return Err(UiError::Quit);
        }
        Ok(value)
    }
}
