//! `snf-image-creator`: the dialog-style terminal UI over the image-creator library.
//!
//! * [`widgets`]: the dialog widgets (menus, checklists, input boxes, file selector,
//!   text box, progress gauge) every screen is made of;
//! * [`screens`]: every screen as data;
//! * [`ui`]: the terminal driver (modal dialogs, work on a worker thread with a
//!   cancellable progress screen);
//! * [`report`]: the library's messages to the log file, syslog and the screen;
//! * [`app`]: the flow (media selection, wizard, expert mode).

#![forbid(unsafe_code)]

pub mod app;
pub mod cli;
pub mod report;
pub mod screens;
pub mod ui;
pub mod widgets;
