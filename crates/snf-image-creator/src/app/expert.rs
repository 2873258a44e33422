//! Expert mode: the main menu, Extract, the log and what they share.

use std::path::{Path, PathBuf};

use image_creator::core::cancel;
use image_creator::core::report::Reporter;
use image_creator::interactive::{self};
use ratatui::backend::Backend;

use crate::screens;
use crate::widgets::Outcome;

use super::{App, Flow, Res};

impl<B: Backend> App<B> {
    pub(super) fn expert(&mut self) -> Res<Flow> {
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
    pub(super) fn can_mount(&self) -> bool {
        Path::new("/dev/fuse").exists()
            && self.session.as_ref().is_some_and(|s| {
                s.inspection().is_some() && interactive::unsupported_reason(s).is_none()
            })
    }

    /// Make sure the guest's files are open for changing (shrinking closes them);
    /// tells the user when they cannot be.
    pub(super) fn open_guest(&mut self) -> Res<bool> {
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

    /// Before writing or uploading an image on which no system preparation ran: ask.
    pub(super) fn confirm_unprepared(&mut self) -> Res<bool> {
        if !interactive::syspreps_never_ran(self.session()) {
            return Ok(true);
        }
        Ok(self.ui.show(&mut screens::confirm_unprepared())? == Outcome::Button(0))
    }

    /// Whether the user agrees to publish an image the library says needs `-f` (a
    /// Windows image not generalized with Sysprep); true when nothing stands in the way.
    pub(super) fn confirm_publish(&mut self) -> Res<bool> {
        let Some(why) = self.session().publish_warning() else {
            return Ok(true);
        };
        Ok(self.ui.show(&mut screens::confirm_not_generalized(&why))? == Outcome::Button(0))
    }

    /// Ask where to write the image: a file that is not one of the source's, confirmed
    /// when it or its side files exist. `None` when the user cancels.
    pub(super) fn ask_output_path(&mut self) -> Res<Option<PathBuf>> {
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
            return Ok(Some(path));
        }
    }

    pub(super) fn extract(&mut self) -> Res<()> {
        if !self.confirm_unprepared()? {
            return Ok(());
        }
        let Some(path) = self.ask_output_path()? else {
            return Ok(());
        };
        let reporter = self.reporter.clone();
        let exclusions = self.exclusions.clone();
        let session = self.session.as_mut().expect("initialized");
        let result = self.ui.work("Image Extraction", &reporter, || {
            interactive::extract(session, &path, &exclusions, reporter.as_ref())
        })?;
        match result {
            Ok(written) => self.ui.msgbox(
                "Image Extraction",
                &format!(
                    "Image file {} was successfully created.\n\nmd5sum: {}\n\nThe \
                     .meta, .md5sum and .variant files were written beside it.",
                    written.path.display(),
                    written.md5_hex
                ),
            ),
            Err(e) => self.failed("Image extraction", e.is_cancelled(), &e),
        }
    }

    pub(super) fn show_log(&mut self) -> Res<()> {
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

    pub(super) fn save_text(&mut self, title: &str, text: &str) -> Res<()> {
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
}
