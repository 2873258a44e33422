//! The program's flow: media selection, initialization, the wizard and expert mode.
//! Screens come from [`crate::screens`]; every decision about the image is the
//! library's ([`image_creator::interactive`], [`Session`], the cloud layer).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use image_creator::cloud::{
    Account, AccountFinder, AccountSource, Cloud, CloudOptions, ImageSource, KamakiCloud,
    KamakiConfig, RetryNotice, Secret,
};
use image_creator::core::cancel;
use image_creator::core::report::{Reporter, SharedReporter};
use image_creator::guestfs::fuse::GuestMount;
use image_creator::interactive::{self, Exclusions, InteractiveError, Uploaded};
use image_creator::metadata::keys;
use image_creator::options::RunOptions;
use image_creator::session::{Session, SessionError};
use image_creator::sysprep::{OsFamily, ParamKind, ParamSpec, Params, SysprepError};
use ratatui::backend::Backend;

use crate::report::{unix_now, UiReporter};
use crate::screens::{self, CloudItem};
use crate::ui::{Ui, UiError};
use crate::widgets::{Dialog, Outcome};

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

    // ------------------------------------------------------------------ clouds

    fn cloud_items(&mut self) -> Vec<CloudItem> {
        let finder = AccountFinder::from_process();
        let kamaki = KamakiConfig::load(&finder.kamaki_path()).ok();
        let names = match finder.names() {
            Ok(n) => n,
            Err(e) => {
                self.reporter
                    .warn(&format!("cannot list the cloud accounts: {e}"));
                return Vec::new();
            }
        };
        names
            .into_iter()
            .map(|name| {
                let description = kamaki
                    .as_ref()
                    .and_then(|k| k.cloud(&name))
                    .map(|c| c.description.unwrap_or_default())
                    .unwrap_or_else(|| match finder.find(&name).map(|a| a.source) {
                        Ok(AccountSource::CloudsYaml(p)) => format!("OpenStack ({})", p.display()),
                        Ok(AccountSource::Environment) => {
                            "OpenStack (OS_* environment variables)".into()
                        }
                        _ => String::new(),
                    });
                CloudItem { name, description }
            })
            .collect()
    }

    /// How the clouds are talked to: every retry is told on the progress screen and in
    /// the log (what failed, why, which attempt is next), so that a wait is never silent.
    fn cloud_options(&self) -> CloudOptions {
        let reporter = Arc::clone(&self.reporter);
        let mut opts = CloudOptions::default();
        opts.http.on_retry = Some(RetryNotice(Arc::new(move |note: &str| reporter.warn(note))));
        opts
    }

    /// Authenticate to `account`, behind the progress screen (Cancel stops the retries).
    /// A failure is logged and explained with the URL as the user gave it (the error
    /// names the one tried).
    fn authenticate(&mut self, account: &Account) -> Res<Result<Cloud, String>> {
        let reporter = self.reporter.clone();
        let opts = self.cloud_options();
        let result = self.ui.work("Authentication", &reporter, || {
            Cloud::connect_with(account, opts, reporter.as_ref())
        })?;
        let cancelled = cancel::is_requested();
        cancel::reset();
        Ok(result.map_err(|e| {
            self.reporter.error(&e.to_string());
            if cancelled {
                "The authentication was cancelled.".to_string()
            } else {
                format!("{e}\n\nAuthentication URL (as given): {}", account.auth_url)
            }
        }))
    }

    /// Authenticate to `name` (once per program run).
    fn connect(&mut self, name: &str) -> Res<Result<(), String>> {
        if self.clouds.contains_key(name) {
            return Ok(Ok(()));
        }
        let account = match Account::find(name) {
            Ok(a) => a,
            Err(e) => return Ok(Err(e.to_string())),
        };
        match self.authenticate(&account)? {
            Ok(cloud) => {
                self.clouds.insert(name.to_string(), cloud);
                Ok(Ok(()))
            }
            Err(e) => Ok(Err(e)),
        }
    }

    /// The account form; saves a kamaki account that authenticates. Returns its name.
    fn cloud_form(&mut self, existing: Option<&str>) -> Res<Option<String>> {
        let finder = AccountFinder::from_process();
        let path = finder.kamaki_path();
        let mut config = match KamakiConfig::load(&path) {
            Ok(c) => c,
            Err(e) => {
                self.ui.msgbox("Error", &e.to_string())?;
                return Ok(None);
            }
        };
        let old = existing.and_then(|n| config.cloud(n));
        let (title, name, desc, url, token) = match &old {
            Some(c) => (
                "Edit Cloud",
                c.name.clone(),
                c.description.clone().unwrap_or_default(),
                c.url.clone().unwrap_or_default(),
                c.token
                    .as_ref()
                    .map(|t| t.expose().to_string())
                    .unwrap_or_default(),
            ),
            None => (
                "Add Cloud",
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ),
        };
        let mut form = screens::cloud_form(title, &name, &desc, &url, &token);
        loop {
            if self.ui.show(&mut form)? != Outcome::Button(0) {
                return Ok(None);
            }
            let v = form.values();
            let (name, desc, url, token) = (v[0].trim(), v[1].trim(), v[2].trim(), v[3].trim());
            let problem = if !image_creator::cloud::account::valid_cloud_name(name) {
                Some(
                    "The cloud name may only hold letters, digits and the characters _~@#$:-"
                        .to_string(),
                )
            } else if url.is_empty() {
                Some("The authentication URL cannot be empty.".into())
            } else if token.is_empty() {
                Some("The token cannot be empty.".into())
            } else if existing != Some(name) && config.cloud(name).is_some() {
                Some(format!("A cloud with the name `{name}' already exists."))
            } else {
                None
            };
            if let Some(p) = problem {
                self.ui.msgbox("Error", &p)?;
                continue;
            }
            let account = {
                let mut a = Account::from_url_token(url, Secret::new(token));
                a.name = name.to_string();
                a
            };
            let cloud = match self.authenticate(&account)? {
                Ok(c) => c,
                Err(e) => {
                    self.ui.msgbox(
                        "Error",
                        &format!("The cloud account could not be verified:\n\n{e}"),
                    )?;
                    continue;
                }
            };
            if let Some(old) = existing.filter(|o| *o != name) {
                config.remove_cloud(old);
                self.clouds.remove(old);
            }
            let saved = config
                .set_cloud(&KamakiCloud {
                    name: name.to_string(),
                    url: Some(url.to_string()),
                    token: Some(Secret::new(token)),
                    description: (!desc.is_empty()).then(|| desc.to_string()),
                })
                .and_then(|()| {
                    config.set_default(name);
                    config.save()
                });
            if let Err(e) = saved {
                self.ui.msgbox("Error", &e.to_string())?;
                continue;
            }
            self.clouds.insert(name.to_string(), cloud);
            self.current_cloud = Some(name.to_string());
            return Ok(Some(name.to_string()));
        }
    }

    fn is_kamaki(name: &str) -> bool {
        let finder = AccountFinder::from_process();
        KamakiConfig::load(&finder.kamaki_path()).is_ok_and(|k| k.cloud(name).is_some())
    }

    // ------------------------------------------------------------------ wizard

    fn wizard(&mut self) -> Res<Flow> {
        let session = self.session();
        let mut name = interactive::default_image_name(session);
        let mut description = session
            .metadata()
            .get(keys::DESCRIPTION)
            .unwrap_or("")
            .to_string();
        let mut public = false;
        let mut cloud: Option<String> = self.current_cloud.clone();
        let mut page = 0;
        loop {
            match page {
                0 => {
                    let clouds = self.cloud_items();
                    if clouds.is_empty() {
                        if self.ui.show(&mut screens::no_clouds())? == Outcome::Button(0) {
                            self.cloud_form(None)?;
                            continue;
                        }
                        return Ok(Flow::Back);
                    }
                    let mut d = screens::wizard_clouds(&clouds, cloud.as_deref());
                    match self.ui.show(&mut d)? {
                        Outcome::Button(0) => {
                            let Some(chosen) = d.selected_tag().map(str::to_string) else {
                                continue;
                            };
                            match self.connect(&chosen)? {
                                Ok(()) => {
                                    cloud = Some(chosen);
                                    page = 1;
                                }
                                Err(e) => {
                                    let editable = Self::is_kamaki(&chosen);
                                    let text =
                                        format!("The cloud you have selected is not valid!\n\n{e}");
                                    if editable {
                                        if self.ui.yesno(
                                            "Invalid cloud",
                                            &format!("{text}\n\nWould you like to edit it now?"),
                                            false,
                                        )? {
                                            self.cloud_form(Some(&chosen))?;
                                        }
                                    } else {
                                        self.ui.msgbox("Invalid cloud", &text)?;
                                    }
                                }
                            }
                        }
                        Outcome::Button(1) => {
                            if let Some(n) = self.cloud_form(None)? {
                                cloud = Some(n);
                            }
                        }
                        _ => return Ok(Flow::Back),
                    }
                }
                1 => {
                    let mut d = screens::wizard_name(&name);
                    match self.ui.show(&mut d)? {
                        Outcome::Button(0) => {
                            name = d.value().trim().to_string();
                            if name.is_empty() {
                                self.ui.msgbox("Error", "The image name cannot be empty.")?;
                            } else {
                                page = 2;
                            }
                        }
                        _ => page = 0,
                    }
                }
                2 => {
                    let mut d = screens::wizard_description(&description);
                    match self.ui.show(&mut d)? {
                        Outcome::Button(0) => {
                            description = d.value().trim().to_string();
                            page = 3;
                        }
                        _ => page = 1,
                    }
                }
                3 => {
                    let mut d = screens::wizard_registration(public);
                    match self.ui.show(&mut d)? {
                        Outcome::Button(0) => {
                            public = d.checked().first().is_some_and(|c| c == "Public");
                            page = 4;
                        }
                        _ => page = 2,
                    }
                }
                _ => {
                    let cloud_name = cloud.clone().unwrap_or_default();
                    let answers = [
                        ("Cloud", cloud_name.clone()),
                        ("Image Name", name.clone()),
                        ("Image Description", description.clone()),
                        (
                            "Registration Type",
                            if public { "Public" } else { "Private" }.to_string(),
                        ),
                    ];
                    match self.ui.show(&mut screens::wizard_confirm(&answers))? {
                        Outcome::Button(0) => {
                            return self.wizard_create(&cloud_name, &name, &description, public);
                        }
                        Outcome::Button(1) => page = 3,
                        _ => {
                            if self.ui.show(&mut screens::confirm_exit())? == Outcome::Button(0) {
                                return Ok(Flow::Exit);
                            }
                        }
                    }
                }
            }
        }
    }

    fn wizard_create(
        &mut self,
        cloud_name: &str,
        name: &str,
        description: &str,
        public: bool,
    ) -> Res<Flow> {
        let reporter = self.reporter.clone();
        let object = interactive::timestamped_object_name(name, unix_now());
        let container = image_creator::cloud::DEFAULT_CONTAINER;
        let exclusions = self.exclusions.clone();
        let cached = self.prepared.clone();
        let (Some(session), Some(cloud)) = (self.session.as_mut(), self.clouds.get(cloud_name))
        else {
            return Ok(Flow::Back);
        };
        let result = self.ui.work(
            "Image creation",
            &reporter,
            || -> Result<_, InteractiveError> {
                let selected = interactive::default_syspreps(session);
                // An image dumped already (an upload in expert mode) is good while
                // nothing changes the guest.
                let cached = cached.filter(|_| selected.is_empty());
                interactive::run_syspreps(session, &selected)?;
                if let Err(e) = session
                    .metadata_mut()
                    .insert(keys::DESCRIPTION, description)
                {
                    reporter.warn(&e.to_string());
                }
                // The one dump of the wizard: uploaded, then kept as the local copy.
                let image = match cached {
                    Some(i) => i,
                    None => interactive::prepare_upload(session, reporter.as_ref())?,
                };
                let uploaded =
                    interactive::upload(cloud, container, &object, &image, reporter.as_ref())?;
                let answer = interactive::register(
                    session,
                    cloud,
                    &uploaded,
                    name,
                    public,
                    &exclusions,
                    reporter.as_ref(),
                )?;
                Ok((image, uploaded, answer))
            },
        )?;
        self.refresh_title();
        match result {
            Ok((image, uploaded, answer)) => {
                let location = self
                    .clouds
                    .get(cloud_name)
                    .map(|c| c.store().location(&uploaded.container, &uploaded.object))
                    .unwrap_or_default();
                let image_id = answer
                    .get("id")
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .to_string();
                self.prepared = Some(image);
                self.uploads.insert(cloud_name.to_string(), uploaded);
                self.registrations.insert(cloud_name.to_string(), answer);
                let local =
                    if self.ui.show(&mut screens::keep_local_copy(name))? == Outcome::Button(0) {
                        self.wizard_keep_copy()?
                    } else {
                        None
                    };
                let (md5, size) = self
                    .prepared
                    .as_ref()
                    .map(|i| (i.md5.clone(), i.size))
                    .unwrap_or_default();
                let summary = screens::WizardSummary {
                    cloud: cloud_name.to_string(),
                    name: name.to_string(),
                    public,
                    image_id,
                    location,
                    local,
                    md5,
                    size,
                };
                self.ui.show(&mut screens::wizard_summary(&summary))?;
                Ok(Flow::Exit)
            }
            Err(e) => {
                self.failed("Image creation", e.is_cancelled(), &e)?;
                Ok(Flow::Back)
            }
        }
    }

    /// Keep the wizard's image as a local file: the image uploaded, moved or copied
    /// there with its side files, not dumped again. The path, once written.
    fn wizard_keep_copy(&mut self) -> Res<Option<PathBuf>> {
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
        let mut d =
            screens::extract_selector(&cwd, &format!("{}/", cwd.display()).replace("//", "/"));
        loop {
            if self.ui.show(&mut d)? != Outcome::Button(0) {
                return Ok(None);
            }
            let path = PathBuf::from(d.value().trim());
            if path.is_dir() {
                let shown = format!("{}/", path.display()).replace("//", "/");
                d.chdir(&path, &shown);
                continue;
            }
            if let Err(e) = interactive::check_extract_target(self.session(), &path) {
                self.ui.msgbox("Error", &e.to_string())?;
                continue;
            }
            let existing: Vec<String> = interactive::existing_outputs(&path)
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            if !existing.is_empty()
                && self.ui.show(&mut screens::confirm_overwrite(&existing))? != Outcome::Button(0)
            {
                continue;
            }
            let Some(mut image) = self.prepared.clone() else {
                return Ok(None);
            };
            let reporter = self.reporter.clone();
            let exclusions = self.exclusions.clone();
            // `&mut`: a session is Send but not Sync.
            let session = self.session.as_mut().expect("initialized");
            let (rep, img, out, ex) = (&reporter, &mut image, &path, &exclusions);
            let result = self.ui.work("Image Extraction", &reporter, move || {
                interactive::keep_prepared(session, img, out, ex, rep.as_ref())
            })?;
            // Moved or not, `image` says where the uploaded image is now.
            self.prepared = Some(image);
            match result {
                Ok(written) => return Ok(Some(written.path)),
                Err(e) => {
                    self.failed("Image extraction", e.is_cancelled(), &e)?;
                    return Ok(None);
                }
            }
        }
    }

    // ------------------------------------------------------------------ expert

    fn expert(&mut self) -> Res<Flow> {
        let mut menu = screens::expert_menu();
        loop {
            self.refresh_title();
            match self.ui.show(&mut menu)? {
                Outcome::Button(0) => {}
                _ => {
                    if self.ui.show(&mut screens::confirm_exit())? == Outcome::Button(0) {
                        return Ok(Flow::Exit);
                    }
                    continue;
                }
            }
            match menu.selected_tag().unwrap_or("") {
                "Customize" => self.customize()?,
                "Register" => self.register_menu()?,
                "Extract" => self.extract()?,
                "Log" => self.show_log()?,
                "Reset" => {
                    if self.ui.show(&mut screens::confirm_reset())? == Outcome::Button(0) {
                        return Ok(Flow::Reset);
                    }
                }
                _ => self.ui.show(&mut screens::help()).map(|_| ())?,
            }
        }
    }

    /// Mount needs FUSE and a supported guest (whose files may have to be opened again
    /// after shrinking).
    fn can_mount(&self) -> bool {
        Path::new("/dev/fuse").exists()
            && self.session.as_ref().is_some_and(|s| {
                s.inspection().is_some() && interactive::unsupported_reason(s).is_none()
            })
    }

    /// Make sure the guest's files are open for changing (shrinking closes them);
    /// tells the user when they cannot be.
    fn open_guest(&mut self) -> Res<bool> {
        if interactive::guest_is_open(self.session()) {
            return Ok(true);
        }
        let reporter = self.reporter.clone();
        let session = self.session.as_mut().expect("initialized");
        let result = self.ui.work("Opening the image", &reporter, || {
            reporter.info("Opening the file systems of the image again ...");
            interactive::open_guest(session)
        })?;
        let problem = match result {
            Ok(true) => return Ok(true),
            Ok(false) => "The files of this image cannot be opened for changing.".to_string(),
            Err(e) => {
                cancel::reset();
                self.reporter.error(&e.to_string());
                format!("The files of the image could not be opened again:\n\n{e}")
            }
        };
        self.ui.msgbox("Error", &problem)?;
        Ok(false)
    }

    fn customize(&mut self) -> Res<()> {
        let mut menu = screens::customize_menu(self.can_mount());
        loop {
            if self.ui.show(&mut menu)? != Outcome::Button(0) {
                return Ok(());
            }
            match menu.selected_tag().unwrap_or("") {
                "Sysprep" => self.sysprep()?,
                "Properties" => self.properties()?,
                "Exclude" => self.exclude()?,
                "Mount" => self.mount()?,
                _ => {}
            }
        }
    }

    fn sysprep(&mut self) -> Res<()> {
        if interactive::unsupported_reason(self.session()).is_some() {
            return self.ui.msgbox(
                "System Preparation",
                "System preparation is disabled for unsupported media.",
            );
        }
        if interactive::shrink_ran(self.session())
            && self.ui.show(&mut screens::sysprep_after_shrink())? != Outcome::Button(0)
        {
            return Ok(());
        }
        if !self.open_guest()? {
            return Ok(());
        }
        let Some(registry) = self.session().syspreps().cloned() else {
            return Ok(());
        };
        if registry.descriptors().is_empty() {
            return self.ui.msgbox(
                "System Preparation",
                "No system preparation task is left to run.",
            );
        }
        // One dialog for the whole visit: what the user checked survives Help and Params.
        let mut d = screens::sysprep_checklist(&registry);
        loop {
            match self.ui.show(&mut d)? {
                Outcome::Button(0) => {
                    let checked = d.checked();
                    let names: Vec<&str> = registry
                        .descriptors()
                        .into_iter()
                        .filter(|op| checked.iter().any(|c| c == op.display))
                        .map(|op| op.name)
                        .collect();
                    if names.is_empty() {
                        self.ui.msgbox(
                            "System Preparation",
                            "No system preparation task is selected!",
                        )?;
                        continue;
                    }
                    let reporter = self.reporter.clone();
                    let session = self.session.as_mut().expect("initialized");
                    let result = self.ui.work("System Preparation", &reporter, || {
                        interactive::run_syspreps(session, &names)
                    })?;
                    self.prepared = None;
                    self.refresh_title();
                    match result {
                        Ok(changes) => {
                            if !changes.is_empty() {
                                self.ui.show(&mut screens::property_changes(&changes))?;
                            } else {
                                self.ui
                                    .msgbox("System Preparation", "System preparation finished.")?;
                            }
                        }
                        Err(e) => {
                            self.failed("System preparation", e.is_cancelled(), &e)?;
                        }
                    }
                    return Ok(());
                }
                Outcome::Button(1) => self.sysprep_params()?,
                Outcome::Button(2) => {
                    self.ui.show(&mut screens::sysprep_help(&registry))?;
                }
                _ => return Ok(()),
            }
        }
    }

    fn sysprep_params(&mut self) -> Res<()> {
        let mut selected = 0;
        loop {
            let Some(params) = self.session().sysprep_params().cloned() else {
                return Ok(());
            };
            let mut menu = screens::params_menu(&params);
            if menu.selected_tag().is_none() {
                return self.ui.msgbox(
                    "System Preparation Parameters",
                    "No customization parameters available.",
                );
            }
            menu.select(selected);
            let outcome = self.ui.show(&mut menu)?;
            selected = menu.selected();
            let Some(spec) = menu
                .selected_tag()
                .and_then(|name| params.specs().into_iter().find(|s| s.name == name))
            else {
                return Ok(());
            };
            match outcome {
                Outcome::Button(0) if spec.list => self.update_param_list(spec)?,
                Outcome::Button(0) => self.update_param(spec)?,
                Outcome::Button(1) => {
                    self.ui.msgbox(
                        spec.name,
                        &format!("{}\n\nType: {}", spec.description, spec.type_name()),
                    )?;
                }
                _ => return Ok(()),
            }
        }
    }

    /// The items of parameter `name` now.
    fn param_items(&self, name: &str) -> Vec<String> {
        self.session()
            .sysprep_params()
            .map(|p| p.get_list(name).to_vec())
            .unwrap_or_default()
    }

    /// Change the session's parameters with `change`; a refused value is shown as
    /// "Error: <reason>". Returns whether the change was made.
    fn apply_param(
        &mut self,
        change: impl FnOnce(&mut Params) -> Result<(), SysprepError>,
    ) -> Res<bool> {
        let Some(params) = self.session.as_mut().and_then(|s| s.sysprep_params_mut()) else {
            return Ok(false);
        };
        match change(params) {
            Ok(()) => Ok(true),
            Err(e) => {
                let reason = match e {
                    SysprepError::InvalidParamValue { reason, .. } => reason,
                    other => other.to_string(),
                };
                self.ui.msgbox("Error", &format!("Error: {reason}"))?;
                Ok(false)
            }
        }
    }

    /// Ask for a value of `spec` (of its item `index`, from 1, or a new item with
    /// `None`, for lists): `file` and `dir` values through the file selector, others
    /// through an input box. `None` when the user cancels.
    fn ask_param_value(
        &mut self,
        spec: &'static ParamSpec,
        index: Option<usize>,
        current: &str,
    ) -> Res<Option<String>> {
        if matches!(spec.kind, ParamKind::File | ParamKind::Dir) {
            return self.select_param_path(spec, current);
        }
        let mut d = if spec.list {
            screens::param_item_input(spec, index, current)
        } else {
            screens::param_input(spec, current)
        };
        if self.ui.show(&mut d)? != Outcome::Button(0) {
            return Ok(None);
        }
        Ok(Some(d.value().trim().to_string()))
    }

    /// The file selector for a `file` or `dir` value: directories navigate for files
    /// and are the answer for directories; the parameter's own check judges the rest.
    fn select_param_path(
        &mut self,
        spec: &'static ParamSpec,
        current: &str,
    ) -> Res<Option<String>> {
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
        let current = Path::new(current);
        let (dir, path) = if current.is_dir() {
            (current.to_path_buf(), current.display().to_string())
        } else {
            match current.parent().filter(|p| p.is_dir()) {
                Some(p) if !current.as_os_str().is_empty() => {
                    (p.to_path_buf(), current.display().to_string())
                }
                _ => (
                    cwd.clone(),
                    format!("{}/", cwd.display()).replace("//", "/"),
                ),
            }
        };
        let mut d = screens::param_selector(spec, &dir, &path);
        loop {
            if self.ui.show(&mut d)? != Outcome::Button(0) {
                return Ok(None);
            }
            let value = d.value().trim().to_string();
            let chosen = PathBuf::from(&value);
            if spec.kind == ParamKind::File && chosen.is_dir() {
                let shown = format!("{}/", chosen.display()).replace("//", "/");
                d.chdir(&chosen, &shown);
                continue;
            }
            // `dir/` and `dir` name the same directory; keep the value tidy.
            let tidy = if value.len() > 1 {
                value.trim_end_matches('/').to_string()
            } else {
                value
            };
            return Ok(Some(tidy));
        }
    }

    /// Update a parameter holding one value; asks again after a refused value.
    fn update_param(&mut self, spec: &'static ParamSpec) -> Res<()> {
        let mut current = self
            .session()
            .sysprep_params()
            .map(|p| p.get(spec.name).to_string())
            .unwrap_or_default();
        loop {
            let Some(value) = self.ask_param_value(spec, None, &current)? else {
                return Ok(());
            };
            if self.apply_param(|p| p.set(spec.name, &value))? {
                return Ok(());
            }
            current = value;
        }
    }

    /// The Edit/Add/Delete menu of a list parameter. An empty list goes straight to
    /// adding an item, as in the original.
    fn update_param_list(&mut self, spec: &'static ParamSpec) -> Res<()> {
        let mut selected = 0;
        let mut first = true;
        loop {
            let mut items = self.param_items(spec.name);
            if items.is_empty() {
                if !first {
                    return Ok(());
                }
                first = false;
                if let Some(v) = self.ask_param_value(spec, None, "")? {
                    self.apply_param(|p| p.set_list(spec.name, &[v]))?;
                    continue;
                }
                return Ok(());
            }
            first = false;
            let mut menu = screens::param_list_menu(spec, &items);
            menu.select(selected);
            let outcome = self.ui.show(&mut menu)?;
            selected = menu.selected().min(items.len() - 1);
            match outcome {
                Outcome::Button(0) => {
                    let current = items[selected].clone();
                    if let Some(v) = self.ask_param_value(spec, Some(selected + 1), &current)? {
                        items[selected] = v;
                        self.apply_param(|p| p.set_list(spec.name, &items))?;
                    }
                }
                Outcome::Button(1) => {
                    if let Some(v) = self.ask_param_value(spec, None, "")? {
                        items.push(v);
                        if self.apply_param(|p| p.set_list(spec.name, &items))? {
                            selected = items.len() - 1;
                        }
                    }
                }
                Outcome::Button(2) => {
                    items.remove(selected);
                    self.apply_param(|p| p.set_list(spec.name, &items))?;
                }
                _ => return Ok(()),
            }
        }
    }

    fn properties(&mut self) -> Res<()> {
        let mut selected = 0;
        loop {
            let mut menu = screens::properties_menu(self.session().metadata());
            menu.select(selected);
            let outcome = self.ui.show(&mut menu)?;
            selected = menu.selected();
            match outcome {
                Outcome::Button(0) => {
                    let Some(key) = menu.selected_tag().map(str::to_string) else {
                        continue;
                    };
                    let value = self
                        .session()
                        .metadata()
                        .get(&key)
                        .unwrap_or("")
                        .to_string();
                    let mut d = screens::property_edit(&key, &value);
                    loop {
                        match self.ui.show(&mut d)? {
                            Outcome::Button(0) => {
                                let v = d.value();
                                if v.is_empty() {
                                    self.ui.msgbox(
                                        "Error",
                                        "A property cannot have an empty value.",
                                    )?;
                                    continue;
                                }
                                let meta =
                                    self.session.as_mut().expect("initialized").metadata_mut();
                                let _ = meta.insert(&key, v);
                            }
                            Outcome::Button(1)
                                if self.ui.yesno(
                                    "Confirm Delete",
                                    &format!("Do you want to delete property `{key}'?"),
                                    true,
                                )? =>
                            {
                                self.session
                                    .as_mut()
                                    .expect("initialized")
                                    .metadata_mut()
                                    .remove(&key);
                            }
                            _ => {}
                        }
                        break;
                    }
                }
                Outcome::Button(1) => self.property_add()?,
                Outcome::Button(2) => {
                    self.ui.show(&mut screens::properties_help())?;
                }
                _ => return Ok(()),
            }
        }
    }

    fn property_add(&mut self) -> Res<()> {
        let mut d = screens::property_add();
        loop {
            if self.ui.show(&mut d)? != Outcome::Button(0) {
                return Ok(());
            }
            let v = d.values();
            let (key, value) = (v[0].trim().to_string(), v[1].clone());
            let problem = if !image_creator::metadata::is_valid_key(&key) {
                Some(format!(
                    "Property name `{key}' is not valid. Allowed characters: letters, digits and underscore."
                ))
            } else if self.session().metadata().contains(&key) {
                Some(format!(
                    "Property `{}' already exists.",
                    key.to_ascii_uppercase()
                ))
            } else if value.is_empty() {
                Some("A property cannot have an empty value.".into())
            } else {
                None
            };
            if let Some(p) = problem {
                self.ui.msgbox("Error", &p)?;
                continue;
            }
            let meta = self.session.as_mut().expect("initialized").metadata_mut();
            if let Err(e) = meta.insert(&key, value) {
                self.ui.msgbox("Error", &e.to_string())?;
                continue;
            }
            return Ok(());
        }
    }

    fn exclude(&mut self) -> Res<()> {
        if interactive::unsupported_reason(self.session()).is_some() {
            return self.ui.msgbox(
                "Exclude",
                "Excluding deployment tasks is disabled for unsupported media: every task is \
                 excluded (No Config).",
            );
        }
        let family = self
            .session()
            .metadata()
            .get(keys::OSFAMILY)
            .unwrap_or("")
            .to_string();
        // One dialog for the whole visit: what the user checked survives Help.
        let mut d = screens::exclude_checklist(&family, &self.exclusions);
        loop {
            match self.ui.show(&mut d)? {
                Outcome::Button(0) => {
                    let checked = d.checked();
                    self.exclusions.tasks = image_creator::interactive::DEPLOY_TASKS
                        .iter()
                        .filter(|t| checked.iter().any(|c| c == t.label))
                        .map(|t| t.label)
                        .collect();
                    self.exclusions.all = false;
                    return Ok(());
                }
                Outcome::Button(1) => {
                    self.exclusions.all = true;
                    self.exclusions.tasks.clear();
                    return self.ui.msgbox(
                        "No Config",
                        "Every deployment task is excluded: the image will be deployed without \
                         any configuration (EXCLUDE_ALL_TASKS=yes).",
                    );
                }
                Outcome::Button(2) => {
                    self.ui.show(&mut screens::exclude_help())?;
                }
                _ => return Ok(()),
            }
        }
    }

    fn mount(&mut self) -> Res<()> {
        if !self.open_guest()? {
            return Ok(());
        }
        let Some(slot) = self.session.as_mut().and_then(|s| s.guest_slot()) else {
            return Ok(());
        };
        let Some(guest) = slot.take() else {
            return Ok(());
        };
        let dir = match tempfile::Builder::new()
            .prefix("snf-image-creator-mount.")
            .tempdir()
        {
            Ok(d) => d,
            Err(e) => {
                *slot = Some(guest);
                return self
                    .ui
                    .msgbox("Error", &format!("cannot create a mount point: {e}"));
            }
        };
        let mut mounted = match GuestMount::mount(guest, dir.path()) {
            Ok(m) => m,
            Err((e, guest)) => {
                if let Some(slot) = self.session.as_mut().and_then(|s| s.guest_slot()) {
                    *slot = Some(guest);
                }
                return self
                    .ui
                    .msgbox("Error", &format!("The image could not be mounted:\n\n{e}"));
            }
        };
        // From here on the files may change: the prepared upload is stale.
        self.prepared = None;
        self.reporter
            .info(&format!("Image mounted under {}", dir.path().display()));
        let mut dialog = screens::mounted(dir.path());
        // As the original: ask again until the kernel lets go of the mount.
        let outcome = loop {
            if let Err(e) = self.ui.show(&mut dialog) {
                break Err(e);
            }
            match mounted.try_unmount() {
                Ok(()) => break Ok(()),
                Err(e) => {
                    self.reporter.warn(&e.to_string());
                    let why = (!e.is_busy()).then(|| e.to_string());
                    dialog = screens::umount_failed(dir.path(), why.as_deref());
                }
            }
        };
        // A quit (Ctrl-C, a signal) while mounted must still leave nothing mounted.
        let guest = match outcome {
            Ok(()) => mounted.unmount(),
            Err(_) => mounted.force_unmount(),
        };
        match guest {
            Ok(g) => {
                if let Some(slot) = self.session.as_mut().and_then(|s| s.guest_slot()) {
                    *slot = Some(g);
                }
                self.reporter
                    .info(&format!("Image unmounted from {}", dir.path().display()));
            }
            Err(e) => {
                self.reporter.error(&e.to_string());
                self.ui.msgbox(
                    "Error",
                    &format!("The image could not be given back after unmounting it: {e}"),
                )?;
            }
        }
        outcome
    }

    /// Before writing or uploading an image on which no system preparation ran: ask.
    fn confirm_unprepared(&mut self) -> Res<bool> {
        if !interactive::syspreps_never_ran(self.session()) {
            return Ok(true);
        }
        Ok(self.ui.show(&mut screens::confirm_unprepared())? == Outcome::Button(0))
    }

    fn extract(&mut self) -> Res<()> {
        if !self.confirm_unprepared()? {
            return Ok(());
        }
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
        let mut d =
            screens::extract_selector(&cwd, &format!("{}/", cwd.display()).replace("//", "/"));
        loop {
            if self.ui.show(&mut d)? != Outcome::Button(0) {
                return Ok(());
            }
            let path = PathBuf::from(d.value().trim());
            if path.is_dir() {
                let shown = format!("{}/", path.display()).replace("//", "/");
                d.chdir(&path, &shown);
                continue;
            }
            // Before any question about the file: the source is never overwritten.
            if let Err(e) = interactive::check_extract_target(self.session(), &path) {
                self.ui.msgbox("Error", &e.to_string())?;
                continue;
            }
            let existing: Vec<String> = interactive::existing_outputs(&path)
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            if !existing.is_empty()
                && self.ui.show(&mut screens::confirm_overwrite(&existing))? != Outcome::Button(0)
            {
                continue;
            }
            let reporter = self.reporter.clone();
            let exclusions = self.exclusions.clone();
            let session = self.session.as_mut().expect("initialized");
            let result = self.ui.work("Image Extraction", &reporter, || {
                interactive::extract(session, &path, &exclusions, reporter.as_ref())
            })?;
            match result {
                Ok(written) => {
                    return self.ui.msgbox(
                        "Image Extraction",
                        &format!(
                            "Image file {} was successfully created.\n\nmd5sum: {}\n\nThe \
                             .meta, .md5sum and .variant files were written beside it.",
                            written.path.display(),
                            written.md5_hex
                        ),
                    );
                }
                Err(e) => {
                    return self.failed("Image extraction", e.is_cancelled(), &e);
                }
            }
        }
    }

    fn show_log(&mut self) -> Res<()> {
        let path = self.reporter.log().path().to_path_buf();
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|_| self.reporter.lines().join("\n"));
        let mut d = screens::log_viewer(&path, &text);
        if let crate::widgets::Body::Text { scroll, .. } = &mut d.body {
            *scroll = usize::MAX;
        }
        if self.ui.show(&mut d)? == Outcome::Button(1) {
            self.save_text("Save Log", &text)?;
        }
        Ok(())
    }

    fn save_text(&mut self, title: &str, text: &str) -> Res<()> {
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
        let mut d = screens::save_as(title, &format!("{}/", cwd.display()).replace("//", "/"));
        loop {
            if self.ui.show(&mut d)? != Outcome::Button(0) {
                return Ok(());
            }
            let path = PathBuf::from(d.value().trim());
            if path.is_dir() || path.file_name().is_none() {
                self.ui.msgbox(
                    "Error",
                    &format!("`{}' is not a valid file name.", path.display()),
                )?;
                continue;
            }
            match std::fs::write(&path, text) {
                Ok(()) => {
                    return self
                        .ui
                        .msgbox(title, &format!("Saved to {}.", path.display()))
                }
                Err(e) => self
                    .ui
                    .msgbox("Error", &format!("cannot write {}: {e}", path.display()))?,
            }
        }
    }

    // ------------------------------------------------------------------ register

    fn register_menu(&mut self) -> Res<()> {
        if self.current_cloud.is_none() {
            let finder = AccountFinder::from_process();
            self.current_cloud = finder.default_account().ok().flatten().map(|a| a.name);
        }
        let mut selected = 0;
        loop {
            let mut menu = screens::register_menu(self.current_cloud.as_deref());
            menu.select(selected);
            if self.ui.show(&mut menu)? != Outcome::Button(0) {
                return Ok(());
            }
            selected = menu.selected();
            match menu.selected_tag().unwrap_or("") {
                "Add" => {
                    self.cloud_form(None)?;
                }
                "Edit" => {
                    let clouds: Vec<CloudItem> = self
                        .cloud_items()
                        .into_iter()
                        .filter(|c| Self::is_kamaki(&c.name))
                        .collect();
                    if clouds.is_empty() {
                        self.ui.msgbox("Edit", "No saved cloud account to edit.")?;
                        continue;
                    }
                    let mut d = Dialog::menu(
                        "Edit Cloud",
                        "Please select the cloud account to edit:",
                        clouds
                            .iter()
                            .map(|c| (c.name.clone(), c.description.clone()))
                            .collect(),
                        &["Edit", "Cancel"],
                    );
                    if self.ui.show(&mut d)? == Outcome::Button(0) {
                        if let Some(n) = d.selected_tag().map(str::to_string) {
                            self.cloud_form(Some(&n))?;
                        }
                    }
                }
                "Delete" => self.delete_clouds()?,
                "Cloud" => {
                    let clouds = self.cloud_items();
                    if clouds.is_empty() {
                        self.ui
                            .msgbox("Clouds", "No available clouds found. Use <Add> to add one.")?;
                        continue;
                    }
                    let mut d = screens::cloud_radiolist(&clouds, self.current_cloud.as_deref());
                    if self.ui.show(&mut d)? != Outcome::Button(0) {
                        continue;
                    }
                    let Some(name) = d.checked().into_iter().next() else {
                        continue;
                    };
                    match self.connect(&name)? {
                        Ok(()) => {
                            if Self::is_kamaki(&name) {
                                let finder = AccountFinder::from_process();
                                if let Ok(mut k) = KamakiConfig::load(&finder.kamaki_path()) {
                                    k.set_default(&name);
                                    let _ = k.save();
                                }
                            }
                            self.current_cloud = Some(name);
                        }
                        Err(e) => {
                            if Self::is_kamaki(&name)
                                && self.ui.yesno("Invalid cloud", &format!("The cloud you have selected is not valid!\n\n{e}\n\nWould you like to edit it now?"), false)?
                            {
                                self.cloud_form(Some(&name))?;
                            } else {
                                self.ui.msgbox("Invalid cloud", &format!("The cloud you have selected is not valid!\n\n{e}"))?;
                            }
                        }
                    }
                }
                "Upload" => self.upload()?,
                "Register" => self.register()?,
                _ => self.info()?,
            }
        }
    }

    fn delete_clouds(&mut self) -> Res<()> {
        let clouds: Vec<CloudItem> = self
            .cloud_items()
            .into_iter()
            .filter(|c| Self::is_kamaki(&c.name))
            .collect();
        if clouds.is_empty() {
            return self
                .ui
                .msgbox("Delete", "No saved cloud account to delete.");
        }
        let mut d = screens::cloud_delete_checklist(&clouds);
        if self.ui.show(&mut d)? != Outcome::Button(0) {
            return Ok(());
        }
        let names = d.checked();
        if names.is_empty()
            || !self.ui.yesno(
                "Confirm Delete",
                &format!("Delete the cloud account(s) {}?", names.join(", ")),
                true,
            )?
        {
            return Ok(());
        }
        let finder = AccountFinder::from_process();
        match KamakiConfig::load(&finder.kamaki_path()) {
            Ok(mut k) => {
                for n in &names {
                    k.remove_cloud(n);
                    self.clouds.remove(n);
                    if self.current_cloud.as_deref() == Some(n) {
                        self.current_cloud = None;
                    }
                }
                if let Err(e) = k.save() {
                    self.ui.msgbox("Error", &e.to_string())?;
                }
            }
            Err(e) => self.ui.msgbox("Error", &e.to_string())?,
        }
        Ok(())
    }

    /// The connected current cloud, or a message saying why there is none.
    fn current(&mut self) -> Res<Option<String>> {
        let Some(name) = self.current_cloud.clone() else {
            self.ui
                .msgbox("Error", "No cloud is selected: use <Cloud> or <Add> first.")?;
            return Ok(None);
        };
        match self.connect(&name)? {
            Ok(()) => Ok(Some(name)),
            Err(e) => {
                self.ui
                    .msgbox("Error", &format!("The cloud `{name}' is not valid:\n\n{e}"))?;
                Ok(None)
            }
        }
    }

    fn upload(&mut self) -> Res<()> {
        let Some(name) = self.current()? else {
            return Ok(());
        };
        if !self.confirm_unprepared()? {
            return Ok(());
        }
        let default_name = interactive::default_object_name(self.session());
        let mut d = screens::upload_form(&default_name, image_creator::cloud::DEFAULT_CONTAINER);
        loop {
            if self.ui.show(&mut d)? != Outcome::Button(0) {
                return Ok(());
            }
            let v = d.values();
            let (object, container) = (v[0].trim().to_string(), v[1].trim().to_string());
            if object.is_empty() || container.is_empty() {
                self.ui.msgbox(
                    "Error",
                    "The remote name and the container cannot be empty.",
                )?;
                continue;
            }
            let reporter = self.reporter.clone();
            let cloud = self.clouds.get(&name).expect("connected");
            let existing = self.ui.work("Upload", &reporter, || {
                interactive::existing_remote(cloud, &container, &object, true)
            })?;
            match existing {
                Ok(found) if !found.is_empty() => {
                    let shown: Vec<String> =
                        found.iter().map(|o| format!("{container}/{o}")).collect();
                    if self.ui.show(&mut screens::confirm_overwrite(&shown))? != Outcome::Button(0)
                    {
                        continue;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    cancel::reset();
                    self.ui.msgbox("Error", &e.to_string())?;
                    continue;
                }
            }
            let cached = self.prepared.clone();
            let session = self.session.as_mut().expect("initialized");
            let cloud = self.clouds.get(&name).expect("connected");
            let result = self
                .ui
                .work("Upload", &reporter, || -> Result<_, InteractiveError> {
                    let image = match cached {
                        Some(i) => i,
                        None => interactive::prepare_upload(session, reporter.as_ref())?,
                    };
                    let up =
                        interactive::upload(cloud, &container, &object, &image, reporter.as_ref())?;
                    Ok((image, up))
                })?;
            match result {
                Ok((image, up)) => {
                    self.prepared = Some(image);
                    let location = cloud.store().location(&container, &object);
                    self.uploads.insert(name.clone(), up);
                    self.registrations.remove(&name);
                    return self.ui.msgbox(
                        "Upload",
                        &format!("Image uploaded successfully to {location}."),
                    );
                }
                Err(e) => {
                    return self.failed("The upload", e.is_cancelled(), &e);
                }
            }
        }
    }

    fn register(&mut self) -> Res<()> {
        let Some(name) = self.current()? else {
            return Ok(());
        };
        let Some(uploaded) = self.uploads.get(&name).cloned() else {
            return self.ui.msgbox(
                "Error",
                "You need to upload the image to this cloud first (<Upload>).",
            );
        };
        let default_name = interactive::default_image_name(self.session());
        let desc = self
            .session()
            .metadata()
            .get(keys::DESCRIPTION)
            .unwrap_or("")
            .to_string();
        let mut d = screens::register_form(&default_name, &desc);
        loop {
            if self.ui.show(&mut d)? != Outcome::Button(0) {
                return Ok(());
            }
            let v = d.values();
            let (image_name, description) = (v[0].trim().to_string(), v[1].trim().to_string());
            if image_name.is_empty() {
                self.ui
                    .msgbox("Error", "The registration name cannot be empty.")?;
                continue;
            }
            let public = self
                .ui
                .yesno("Register Image", "Make the image public?", true)?;
            {
                let meta = self.session.as_mut().expect("initialized").metadata_mut();
                if description.is_empty() {
                    meta.remove(keys::DESCRIPTION);
                } else {
                    let _ = meta.insert(keys::DESCRIPTION, description.clone());
                }
            }
            let reporter = self.reporter.clone();
            let exclusions = self.exclusions.clone();
            // `&mut`: a session is Send but not Sync.
            let session = self.session.as_mut().expect("initialized");
            let cloud = self.clouds.get(&name).expect("connected");
            let (rep, img) = (&reporter, &image_name);
            let result = self.ui.work("Registration", &reporter, move || {
                let (reporter, image_name) = (rep, img);
                interactive::register(
                    &*session,
                    cloud,
                    &uploaded,
                    image_name,
                    public,
                    &exclusions,
                    reporter.as_ref(),
                )
            })?;
            match result {
                Ok(answer) => {
                    self.registrations.insert(name.clone(), answer);
                    return self.ui.msgbox(
                        "Register Image",
                        &format!(
                            "{} image `{image_name}' was registered successfully. Use <Info> to see the details.",
                            if public { "Public" } else { "Private" }
                        ),
                    );
                }
                Err(e) => {
                    return self.failed("The registration", e.is_cancelled(), &e);
                }
            }
        }
    }

    fn info(&mut self) -> Res<()> {
        let answer = self
            .current_cloud
            .as_ref()
            .and_then(|c| self.registrations.get(c))
            .cloned();
        let Some(answer) = answer else {
            return self.ui.msgbox(
                "Info",
                "The image has not been registered with the current cloud yet.",
            );
        };
        let text = image_creator::cloud::pretty_json(&answer);
        if self.ui.show(&mut screens::registration_info(&text))? == Outcome::Button(1) {
            self.save_text("Save Registration Info", &format!("{text}\n"))?;
        }
        Ok(())
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
