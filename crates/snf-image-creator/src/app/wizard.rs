//! The wizard: four questions, then one run that prepares, dumps, uploads and
//! registers the image, keeps a local copy of the same dump and sums up.

use std::path::PathBuf;

use image_creator::core::report::Reporter;
use image_creator::interactive::{self, InteractiveError};
use image_creator::metadata::keys;
use ratatui::backend::Backend;

use crate::report::unix_now;
use crate::screens;
use crate::widgets::Outcome;

use super::{App, Flow, Res};

impl<B: Backend> App<B> {
    pub(super) fn wizard(&mut self) -> Res<Flow> {
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
                            if self.confirm_publish()? {
                                return self.wizard_create(
                                    &cloud_name,
                                    &name,
                                    &description,
                                    public,
                                );
                            }
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

    pub(super) fn wizard_create(
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
                // Uploaded and registered in one go: the data crosses the network once.
                let (uploaded, answer) = interactive::publish(
                    session,
                    cloud,
                    container,
                    &object,
                    &image,
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
    pub(super) fn wizard_keep_copy(&mut self) -> Res<Option<PathBuf>> {
        let Some(path) = self.ask_output_path()? else {
            return Ok(None);
        };
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
            Ok(written) => Ok(Some(written.path)),
            Err(e) => {
                self.failed("Image extraction", e.is_cancelled(), &e)?;
                Ok(None)
            }
        }
    }
}
