//! Helpers shared by the integration tests.

#![allow(dead_code)]

pub mod openstack;
pub mod synnefo;

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use snf_cloud::ImageSource;
use snf_core::md5::{to_hex, Md5};
use snf_core::report::{Reporter, Task, Unit};

/// Called with a progress title and position.
pub type Hook = Arc<dyn Fn(&str, u64) + Send + Sync>;

/// A reporter that keeps every line, and can run a hook on progress positions.
#[derive(Default, Clone)]
pub struct Recorder {
    pub lines: Arc<Mutex<Vec<String>>>,
    pub on_position: Option<Hook>,
}

struct RecTask {
    title: String,
    hook: Option<Hook>,
}

impl Task for RecTask {
    fn inc(&self, _n: u64) {}
    fn set_position(&self, pos: u64) {
        if let Some(h) = &self.hook {
            h(&self.title, pos);
        }
    }
    fn finish(&self, _result: &str) {}
}

impl Reporter for Recorder {
    fn info(&self, msg: &str) {
        self.lines.lock().unwrap().push(msg.to_owned());
    }
    fn detail(&self, msg: &str) {
        self.lines.lock().unwrap().push(msg.to_owned());
    }
    fn warn(&self, msg: &str) {
        self.lines.lock().unwrap().push(format!("Warning: {msg}"));
    }
    fn task(&self, title: &str, _total: u64, _unit: Unit) -> Box<dyn Task> {
        self.lines.lock().unwrap().push(title.to_owned());
        Box::new(RecTask {
            title: title.to_owned(),
            hook: self.on_position.clone(),
        })
    }
}

impl Recorder {
    pub fn text(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }
}

pub use snf_testkit::fixture::pseudo_random;

/// Write `data` to `path` and describe it as an image.
pub fn image_file(path: &Path, data: &[u8]) -> ImageSource {
    let mut f = std::fs::File::create(path).unwrap();
    f.write_all(data).unwrap();
    ImageSource {
        path: path.to_path_buf(),
        size: data.len() as u64,
        md5: to_hex(&Md5::digest(data)),
    }
}

pub fn md5_hex(data: &[u8]) -> String {
    to_hex(&Md5::digest(data))
}
