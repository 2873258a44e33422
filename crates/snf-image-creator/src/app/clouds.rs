//! Cloud accounts: listing, adding, editing and deleting them, authenticating, and
//! the Register menu (upload, registration, its answer).

use std::sync::Arc;

use image_creator::cloud::{
    Account, AccountFinder, AccountSource, Cloud, CloudOptions, KamakiCloud, KamakiConfig,
    RetryNotice, Secret,
};
use image_creator::core::cancel;
use image_creator::core::report::Reporter;
use image_creator::interactive::{self, InteractiveError};
use image_creator::metadata::keys;
use ratatui::backend::Backend;

use crate::screens::{self, CloudItem};
use crate::widgets::Outcome;

use super::{App, Res};

impl<B: Backend> App<B> {
    pub(super) fn cloud_items(&mut self) -> Vec<CloudItem> {
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
    pub(super) fn cloud_options(&self) -> CloudOptions {
        let reporter = Arc::clone(&self.reporter);
        let mut opts = CloudOptions::default();
        opts.http.on_retry = Some(RetryNotice(Arc::new(move |note: &str| reporter.warn(note))));
        opts
    }

    /// Authenticate to `account`, behind the progress screen (Cancel stops the retries).
    /// A failure is logged and explained with the URL as the user gave it (the error
    /// names the one tried).
    pub(super) fn authenticate(&mut self, account: &Account) -> Res<Result<Cloud, String>> {
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
    pub(super) fn connect(&mut self, name: &str) -> Res<Result<(), String>> {
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
    pub(super) fn cloud_form(&mut self, existing: Option<&str>) -> Res<Option<String>> {
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

    pub(super) fn is_kamaki(name: &str) -> bool {
        let finder = AccountFinder::from_process();
        KamakiConfig::load(&finder.kamaki_path()).is_ok_and(|k| k.cloud(name).is_some())
    }

    pub(super) fn register_menu(&mut self) -> Res<()> {
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
                    let mut d = screens::cloud_edit_menu(&clouds);
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

    pub(super) fn delete_clouds(&mut self) -> Res<()> {
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
    pub(super) fn current(&mut self) -> Res<Option<String>> {
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

    pub(super) fn upload(&mut self) -> Res<()> {
        let Some(name) = self.current()? else {
            return Ok(());
        };
        if !self.confirm_unprepared()? || !self.confirm_publish()? {
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

    pub(super) fn register(&mut self) -> Res<()> {
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

    pub(super) fn info(&mut self) -> Res<()> {
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
