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
    /// The terminal hung up (its window was closed): quit now (after cleanup), quietly.
    #[error("the terminal hung up")]
    HangUp,
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

    /// An event that is already there, without waiting (typed ahead, pasted).
    fn pending(&mut self) -> io::Result<Option<Event>> {
        Ok(None)
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

/// Set once writing to the terminal failed: it hung up.
static TTY_GONE: AtomicBool = AtomicBool::new(false);

/// Whether an I/O error of the terminal means that it hung up.
fn is_hang_up(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::BrokenPipe
        || e.raw_os_error().is_some_and(|n| {
            n == rustix::io::Errno::IO.raw_os_error() || n == rustix::io::Errno::NXIO.raw_os_error()
        })
}

/// A terminal error as the UI reports it: a hang-up is not a failure.
fn terminal_error(e: io::Error) -> UiError {
    if is_hang_up(&e) || TTY_GONE.load(Ordering::SeqCst) {
        UiError::HangUp
    } else {
        UiError::Io(e)
    }
}

/// Standard output as the terminal backend writes it. Once the terminal has hung up,
/// writes are dropped: nobody can see them, and the clean-up after a hang-up (ratatui
/// shows the cursor again when its terminal is dropped, and panics when it cannot even
/// report that it failed) must not fail on them. The UI notices the hang-up through
/// [`Ui`]'s checks and quits in order.
pub struct TtyOut {
    out: io::Stdout,
}

impl TtyOut {
    /// Standard output.
    pub fn new() -> Self {
        TtyOut { out: io::stdout() }
    }

    /// Whether the terminal has hung up.
    pub fn gone() -> bool {
        TTY_GONE.load(Ordering::SeqCst)
    }

    fn failed(&self, e: io::Error) -> io::Result<()> {
        if is_hang_up(&e) {
            TTY_GONE.store(true, Ordering::SeqCst);
            Ok(())
        } else {
            Err(e)
        }
    }
}

impl Default for TtyOut {
    fn default() -> Self {
        Self::new()
    }
}

impl io::Write for TtyOut {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if TTY_GONE.load(Ordering::SeqCst) {
            return Ok(buf.len());
        }
        match self.out.write(buf) {
            Ok(n) => Ok(n),
            Err(e) => self.failed(e).map(|()| buf.len()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        if TTY_GONE.load(Ordering::SeqCst) {
            return Ok(());
        }
        match self.out.flush() {
            Ok(()) => Ok(()),
            Err(e) => self.failed(e),
        }
    }
}

/// The reader thread: every event, as soon as it is there, until the terminal fails.
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
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => {
                let _ = tx.send(Err(e.into()));
                return;
            }
        }
        if fds[0].revents().intersects(gone) {
            let _ = tx.send(Err(terminal_gone()));
            return;
        }
        // crossterm parses everything one read brings (a paste, a key behind a
        // resize) into a queue of its own, which the terminal poll above no longer
        // sees, and notices a resize only when asked: hand over its whole queue on
        // every round (input or tick), or the rest would wait for the next key.
        // A zero timeout never blocks, even on a partial escape sequence.
        loop {
            let event = match event::poll(Duration::ZERO) {
                Ok(true) => event::read(),
                Ok(false) => break,
                Err(e) => Err(e),
            };
            let failed = event.is_err();
            if tx.send(event).is_err() || failed {
                return;
            }
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

    fn pending(&mut self) -> io::Result<Option<Event>> {
        match self.events.try_recv() {
            Ok(Ok(e)) => Ok(Some(e)),
            Ok(Err(e)) => Err(e),
            Err(mpsc::TryRecvError::Empty) => Ok(None),
            Err(mpsc::TryRecvError::Disconnected) => Err(terminal_gone()),
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
        if TTY_GONE.load(Ordering::SeqCst) {
            Err(UiError::HangUp)
        } else if self.quit.load(Ordering::SeqCst) {
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
            .map_err(|e| terminal_error(io_err(e)))?;
        Ok(())
    }

    /// Show `dialog` until a button or Esc ends it.
    pub fn show(&mut self, dialog: &mut Dialog) -> Result<Outcome, UiError> {
        loop {
            self.check_quit()?;
            self.draw(dialog)?;
            // Everything already typed (a paste) is handled before the next frame.
            let mut next = self
                .events
                .next(Duration::from_millis(200))
                .map_err(terminal_error)?;
            while let Some(event) = next {
                match event {
                    Event::Key(key) if key.kind != KeyEventKind::Release => {
                        if is_ctrl_c(&key) {
                            return Err(UiError::Quit);
                        }
                        if let Some(outcome) = dialog.handle(key) {
                            return Ok(outcome);
                        }
                    }
                    Event::Resize(..) => self
                        .terminal
                        .autoresize()
                        .map_err(|e| terminal_error(io_err(e)))?,
                    _ => {}
                }
                next = self.events.pending().map_err(terminal_error)?;
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
                    return Err(terminal_error(io_err(e)));
                }
                if TTY_GONE.load(Ordering::SeqCst) && !quitting {
                    // Nobody can see the result: stop the work.
                    quitting = true;
                    cancel::request();
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
                        return Err(terminal_error(e));
                    }
                }
            }
            match handle.join() {
                Ok(v) => Ok(v),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        });
        let value = result?;
        if TTY_GONE.load(Ordering::SeqCst) {
            return Err(UiError::HangUp);
        }
        if quitting {
            return Err(UiError::Quit);
        }
        Ok(value)
    }
}
