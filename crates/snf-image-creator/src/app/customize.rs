//! Expert mode's Customize menu: system preparation and its parameters, image
//! properties, deployment task exclusions, Mount and VirtIO drivers.

use std::path::{Path, PathBuf};

use image_creator::core::report::Reporter;
use image_creator::guestfs::fuse::GuestMount;
use image_creator::interactive::{self};
use image_creator::metadata::keys;
use image_creator::sysprep::{ParamKind, ParamSpec, Params, SysprepError};
use ratatui::backend::Backend;

use crate::screens;
use crate::widgets::Outcome;

use super::{App, Res};

impl<B: Backend> App<B> {
    pub(super) fn customize(&mut self) -> Res<()> {
        let virtio = interactive::virtio_available(self.session());
        let mut menu = screens::customize_menu(self.can_mount(), virtio);
        loop {
            if self.ui.show(&mut menu)? != Outcome::Button(0) {
                return Ok(());
            }
            match menu.selected_tag().unwrap_or("") {
                "Sysprep" => self.sysprep()?,
                "Properties" => self.properties()?,
                "Exclude" => self.exclude()?,
                "Mount" => self.mount()?,
                "VirtIO" => self.virtio()?,
                _ => {}
            }
        }
    }

    pub(super) fn sysprep(&mut self) -> Res<()> {
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

    pub(super) fn sysprep_params(&mut self) -> Res<()> {
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
    pub(super) fn param_items(&self, name: &str) -> Vec<String> {
        self.session()
            .sysprep_params()
            .map(|p| p.get_list(name).to_vec())
            .unwrap_or_default()
    }

    /// Change the session's parameters with `change`; a refused value is shown as
    /// "Error: <reason>". Returns whether the change was made.
    pub(super) fn apply_param(
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
    pub(super) fn ask_param_value(
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
    pub(super) fn select_param_path(
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
    pub(super) fn update_param(&mut self, spec: &'static ParamSpec) -> Res<()> {
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
    pub(super) fn update_param_list(&mut self, spec: &'static ParamSpec) -> Res<()> {
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

    pub(super) fn properties(&mut self) -> Res<()> {
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

    pub(super) fn property_add(&mut self) -> Res<()> {
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

    pub(super) fn exclude(&mut self) -> Res<()> {
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

    /// The VirtIO page: pick a virtio-win directory (the `virtio` parameter's selector
    /// and check), see the drivers the library chose from it for this guest, and
    /// install them the way `--install-virtio` does.
    pub(super) fn virtio(&mut self) -> Res<()> {
        if !self.open_guest()? {
            return Ok(());
        }
        let spec = interactive::virtio_param();
        let mut current = self
            .session()
            .sysprep_params()
            .map(|p| p.get(spec.name).to_string())
            .unwrap_or_default();
        let dir = loop {
            let Some(value) = self.select_param_path(spec, &current)? else {
                return Ok(());
            };
            if self.apply_param(|p| p.set(spec.name, &value))? {
                break PathBuf::from(value);
            }
            current = value;
        };
        let plan = match self
            .session
            .as_mut()
            .expect("initialized")
            .virtio_plan(&dir)
        {
            Ok(plan) => plan,
            Err(e) => return self.failed("Choosing the VirtIO drivers", false, &e),
        };
        let text = interactive::virtio_plan_text(&plan);
        if self.ui.show(&mut screens::virtio_confirm(&dir, &text))? != Outcome::Button(0) {
            return Ok(());
        }
        let reporter = self.reporter.clone();
        let session = self.session.as_mut().expect("initialized");
        let result = self.ui.work("Installing VirtIO Drivers", &reporter, || {
            session.install_virtio_from(&dir)
        })?;
        // The guest changed: a prepared upload is stale.
        self.prepared = None;
        match result {
            Ok(_) => {
                let names: Vec<&str> = plan.drivers.iter().map(|d| d.name).collect();
                self.ui.msgbox(
                    "VirtIO",
                    &format!("The VirtIO drivers were installed: {}.", names.join(", ")),
                )
            }
            Err(e) => self.failed("Installing the VirtIO drivers", e.is_cancelled(), &e),
        }
    }

    pub(super) fn mount(&mut self) -> Res<()> {
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
}
