//! The terminal driver: shows one dialog at a time over the background title, runs
//! long work on a worker thread behind the progress screen, and turns Ctrl-C or a
//! termination signal into an orderly quit.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
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

/// The real terminal's events, read on a thread of their own.
///
/// crossterm's reader loops forever, at full speed, once the terminal hangs up (a read
/// that fails with EIO or returns 0 is neither "would block" nor "interrupted" to it),
/// and then never returns to check the quit flag. So the reader thread waits for the
/// terminal itself and hands over to crossterm only input that is really there; a
/// hang-up ends the thread and reaches the UI as an error, which cancels the work and
/// quits in order. The UI thread never blocks in crossterm, so even if a hang-up lands
/// inside crossterm's read, the UI still notices it (and the signal) and exits.
pub struct TerminalEvents {
    events: mpsc::Receiver<io::Result<Event>>,
}

impl TerminalEvents {
    /// Start reading the terminal (standard input).
    pub fn start() -> Self {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || read_terminal(&tx));
        TerminalEvents { events: rx }
    }
}

fn terminal_gone() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the terminal went away")
}

/// The reader thread: one event per message until the terminal fails.
fn read_terminal(tx: &mpsc::Sender<io::Result<Event>>) {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let stdin = rustix::stdio::stdin();
    let gone = PollFlags::HUP | PollFlags::ERR | PollFlags::NVAL;
    let tick = Timespec {
        tv_sec: 0,
        tv_nsec: 200_000_000,
    };
    loop {
        let mut fds = [PollFd::new(&stdin, PollFlags::IN)];
        match poll(&mut fds, Some(&tick)) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => {
                let _ = tx.send(Err(e.into()));
                return;
            }
        }
        let ready = fds[0].revents();
        let message = if ready.intersects(gone) {
            Err(terminal_gone())
        } else if ready.contains(PollFlags::IN) {
            // Only what is buffered now: a partial escape sequence waits for the
            // next round instead of blocking inside crossterm.
            match event::poll(Duration::ZERO) {
                Ok(true) => event::read(),
                Ok(false) => continue,
                Err(e) => Err(e),
            }
        } else {
            continue;
        };
        let failed = message.is_err();
        if tx.send(message).is_err() || failed {
            return;
        }
    }
}

impl Events for TerminalEvents {
    fn next(&mut self, timeout: Duration) -> io::Result<Option<Event>> {
        match self.events.recv_timeout(timeout) {
            Ok(Ok(e)) => Ok(Some(e)),
            Ok(Err(e)) => Err(e),
            Err(mpsc::RecvTimeoutError::Timeout) => Ok(None),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(terminal_gone()),
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
                    // The terminal is gone: nobody can see the result, stop the work.
                    Err(e) => {
                        cancel::request();
                        let _ = handle.join();
                        return Err(UiError::Io(e));
                    }
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
