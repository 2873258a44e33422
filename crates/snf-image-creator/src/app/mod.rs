//! The program's flow: media selection, initialization, the wizard and expert mode.
//! Screens come from [`crate::screens`]; every decision about the image is the
//! library's ([`image_creator::interactive`], [`Session`], the cloud layer).
//!
//! One `App` holds the state; its methods live with their screen family: the start
//! (this module), `wizard`, `expert` (main menu, Extract, Log), `customize`
//! (Sysprep, Properties, Exclude, Mount) and `clouds` (accounts, Upload, Register).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use image_creator::cloud::{Cloud, ImageSource};
use image_creator::core::cancel;
use image_creator::core::report::{Reporter, SharedReporter};
use image_creator::interactive::{self, Exclusions, Uploaded};
use image_creator::options::RunOptions;
use image_creator::session::{Session, SessionError};
use image_creator::sysprep::OsFamily;
use ratatui::backend::Backend;

use crate::report::UiReporter;
use crate::screens;
use crate::ui::{Ui, UiError};
use crate::widgets::Outcome;

mod clouds;
mod customize;
mod expert;
mod wizard;

/// What the user asked for on the command line.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// The source, if given.
    pub source: Option<PathBuf>,
    /// `--no-snapshot`.
    pub no_snapshot: bool,
    /// `--tmpdir`.
    pub tmpdir: Option<PathBuf>,
}

/// How the program ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// The user is done.
    Done,
    /// A fatal error (the message; the log has the rest).
    Fatal(String),
}

/// The whole program state.
pub struct App<B: Backend> {
    ui: Ui<B>,
    reporter: Arc<UiReporter>,
    settings: Settings,
    session: Option<Session>,
    exclusions: Exclusions,
    /// The image dumped for upload, with its MD5 (cleared whenever the guest changes).
    prepared: Option<ImageSource>,
    /// Authenticated clouds, by account name.
    clouds: HashMap<String, Cloud>,
    /// The cloud Register uses.
    current_cloud: Option<String>,
    /// What was uploaded to each cloud.
    uploads: HashMap<String, Uploaded>,
    /// The registration answer of each cloud.
    registrations: HashMap<String, serde_json::Value>,
}

type Res<T> = Result<T, UiError>;

enum Flow {
    Back,
    Exit,
    Reset,
}

impl<B: Backend> App<B> {
    /// Tell the user that `what` failed with `err` (or was cancelled), after logging it;
    /// the cancellation request is cleared for what comes next.
    fn failed(&mut self, what: &str, cancelled: bool, err: &dyn std::fmt::Display) -> Res<()> {
        cancel::reset();
        self.reporter.error(&err.to_string());
        let text = if cancelled {
            format!("{what} was cancelled.")
        } else {
            format!("{what} failed:\n\n{err}")
        };
        self.ui.msgbox("Error", &text)
    }

    /// The app on `ui`, logging through `reporter`.
    pub fn new(ui: Ui<B>, reporter: Arc<UiReporter>, settings: Settings) -> Self {
        App {
            ui,
            reporter,
            settings,
            session: None,
            exclusions: Exclusions::default(),
            prepared: None,
            clouds: HashMap::new(),
            current_cloud: None,
            uploads: HashMap::new(),
            registrations: HashMap::new(),
        }
    }

    /// The UI (tests read its screen).
    pub fn ui(&self) -> &Ui<B> {
        &self.ui
    }

    /// The session, once the media is initialized (tests read what the screens changed).
    pub fn current_session(&self) -> Option<&Session> {
        self.session.as_ref()
    }

    /// Tell the user about a fatal error.
    pub fn fatal_box(&mut self, text: &str) -> Res<()> {
        self.ui.msgbox("Fatal error", text)
    }

    /// Drop the session now (its temporary files go with it).
    pub fn close(&mut self) {
        self.session = None;
    }

    fn shared(&self) -> SharedReporter {
        self.reporter.clone()
    }

    /// Run the program until the user is done.
    pub fn run(&mut self) -> Res<Exit> {
        let Some(source) = self.choose_source()? else {
            return Ok(Exit::Done);
        };
        loop {
            if let Some(fatal) = self.initialize(&source)? {
                return Ok(Exit::Fatal(fatal));
            }
            let flow = if let Some(reason) = self
                .session
                .as_ref()
                .and_then(|s| interactive::unsupported_reason(s).map(str::to_string))
            {
                if !self
                    .ui
                    .show(&mut screens::unsupported_warning(&reason))?
                    .eq(&Outcome::Button(0))
                {
                    return Ok(Exit::Done);
                }
                self.exclusions.all = true;
                self.expert()?
            } else {
                self.welcome()?
            };
            match flow {
                Flow::Reset => {
                    self.reporter.info("Resetting everything ...");
                    self.reset_state();
                }
                Flow::Exit | Flow::Back => return Ok(Exit::Done),
            }
        }
    }

    fn reset_state(&mut self) {
        self.session = None;
        self.exclusions = Exclusions::default();
        self.prepared = None;
        self.uploads.clear();
        self.registrations.clear();
    }

    /// The given source if usable, else the media selector's choice.
    fn choose_source(&mut self) -> Res<Option<PathBuf>> {
        if let Some(s) = &self.settings.source {
            if interactive::is_valid_source(s) || image_creator::options::is_host_root(s) {
                return Ok(Some(s.clone()));
            }
        }
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
        let mut dialog = screens::media_selector(&cwd);
        loop {
            match self.ui.show(&mut dialog)? {
                Outcome::Button(0) => {
                    let value = dialog.value();
                    let path = PathBuf::from(value.trim());
                    if path.is_dir() {
                        let shown = format!("{}/", path.display()).replace("//", "/");
                        dialog.chdir(&path, &shown);
                        continue;
                    }
                    if interactive::is_valid_source(&path) {
                        return Ok(Some(path));
                    }
                    self.ui.msgbox(
                        "Error",
                        &format!(
                            "`{}' is not a regular file or a block device.",
                            path.display()
                        ),
                    )?;
                }
                Outcome::Button(1) => {
                    // The session bundles `/` like `snf-mkimage /`; only root can read
                    // every file and mount the new filesystems.
                    if rustix::process::geteuid().is_root() {
                        return Ok(Some(PathBuf::from("/")));
                    }
                    self.ui.msgbox(
                        "Bundle Host",
                        "Creating an image of the running host (host bundling) needs root. \
                         Please select a disk image file or a block device, or run this \
                         program as root.",
                    )?;
                }
                _ => {
                    if self.ui.show(&mut screens::media_cancelled())? == Outcome::Button(0) {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Examine, snapshot, inspect. `Some(message)` on a fatal error.
    fn initialize(&mut self, source: &Path) -> Res<Option<String>> {
        let mut opts = RunOptions::new(source);
        opts.snapshot = !self.settings.no_snapshot;
        opts.tmpdir = self.settings.tmpdir.clone();
        opts.allow_unsupported = true;
        opts.sysprep = true;
        self.ui.backtitle = format!(
            "Source: {}",
            std::path::absolute(source)
                .unwrap_or_else(|_| source.to_path_buf())
                .display()
        );
        let mut session = match Session::new(opts, self.shared()) {
            Ok(s) => s,
            Err(e) => return Ok(Some(e.to_string())),
        };
        let result = self.ui.work("Initialization", &self.reporter.clone(), || {
            interactive::initialize(&mut session)
        })?;
        if let Err(e) = result {
            if e.is_cancelled() {
                return Ok(Some("Initialization was cancelled".into()));
            }
            return Ok(Some(e.to_string()));
        }
        self.session = Some(session);
        self.refresh_title();
        Ok(None)
    }

    fn refresh_title(&mut self) {
        if let Some(s) = &self.session {
            self.ui.backtitle = interactive::summary(s).title();
        }
    }

    fn session(&self) -> &Session {
        self.session
            .as_ref()
            .expect("initialized before any screen uses it")
    }

    fn welcome(&mut self) -> Res<Flow> {
        loop {
            let os_text = interactive::summary(self.session()).os_text();
            match self.ui.show(&mut screens::welcome(&os_text))? {
                Outcome::Button(0) => match self.wizard()? {
                    Flow::Back => continue,
                    other => return Ok(other),
                },
                Outcome::Button(_) => return self.expert(),
                Outcome::Esc => {
                    if self.ui.show(&mut screens::confirm_exit())? == Outcome::Button(0) {
                        return Ok(Flow::Exit);
                    }
                }
            }
        }
    }
}

/// Whether the session's OS family has a given name (used by tests).
pub fn family_name(session: &Session) -> &'static str {
    match interactive::os_family(session) {
        OsFamily::Unsupported => "unsupported",
        f => f.name(),
    }
}

#[allow(dead_code)]
fn assert_send() {
    fn is_send<T: Send>() {}
    is_send::<Session>();
    is_send::<SessionError>();
}
