//! Messages never show the private files of the work directory.
//!
//! Libraries below the session (libext2fs, e2fsprogs, qemu-img, the guest backends) name
//! the files they were given, and in a run those are the private copy and scratch files
//! in a work directory whose name means nothing to the user. Every message that leaves
//! the session, error or chatter, goes through [`PrivateNames::hide`]: the private copy
//! is named by what it is ("the private copy of SOURCE"), anything else in the work
//! directory by the directory the user chose.

use std::borrow::Cow;
use std::path::Path;
use std::sync::{Arc, RwLock};

use snf_core::report::{Reporter, SharedReporter, Task, Unit};

/// What the work directory's private paths stand for, shared between the session (which
/// learns them as the run goes) and the reporter it hands to the libraries.
#[derive(Clone, Default)]
pub(crate) struct PrivateNames(Arc<RwLock<Names>>);

#[derive(Default)]
struct Names {
    /// The work directory, as libraries print it.
    dir: Option<String>,
    /// How files in it other than the private copy are called.
    scratch: String,
    /// The private copy's path and what it is called.
    copy: Option<(String, String)>,
}

impl PrivateNames {
    /// The run's work directory is `dir`, made under `parent` (the user's --tmpdir or
    /// the system's).
    pub(crate) fn set_workdir(&self, dir: &Path, parent: &Path) {
        let mut names = self.0.write().unwrap_or_else(|p| p.into_inner());
        names.dir = Some(dir.display().to_string());
        names.scratch = format!("a scratch file under {}", parent.display());
    }

    /// The working disk is at `path` and is called `name` in messages.
    pub(crate) fn set_disk(&self, path: &Path, name: String) {
        let mut names = self.0.write().unwrap_or_else(|p| p.into_inner());
        names.copy = Some((path.display().to_string(), name));
    }

    /// `msg` with every path of the work directory replaced by what it stands for.
    pub(crate) fn hide<'a>(&self, msg: &'a str) -> Cow<'a, str> {
        let names = self.0.read().unwrap_or_else(|p| p.into_inner());
        let Some(dir) = names.dir.as_deref().filter(|d| msg.contains(d)) else {
            return Cow::Borrowed(msg);
        };
        let mut shown = msg.to_string();
        if let Some((path, name)) = &names.copy {
            shown = shown.replace(path.as_str(), name);
        }
        while let Some(start) = shown.find(dir) {
            let rest = &shown[start + dir.len()..];
            let end = rest
                .find(|c: char| c.is_whitespace() || "'`\":,;)".contains(c))
                .unwrap_or(rest.len());
            shown.replace_range(start..start + dir.len() + end, &names.scratch);
        }
        Cow::Owned(shown)
    }

    /// A reporter that passes everything on to `inner` through [`PrivateNames::hide`].
    pub(crate) fn reporter(&self, inner: SharedReporter) -> SharedReporter {
        Arc::new(HidingReporter {
            inner,
            names: self.clone(),
        })
    }
}

struct HidingReporter {
    inner: SharedReporter,
    names: PrivateNames,
}

impl Reporter for HidingReporter {
    fn info(&self, msg: &str) {
        self.inner.info(&self.names.hide(msg));
    }

    fn detail(&self, msg: &str) {
        self.inner.detail(&self.names.hide(msg));
    }

    fn warn(&self, msg: &str) {
        self.inner.warn(&self.names.hide(msg));
    }

    fn success(&self, msg: &str) {
        self.inner.success(&self.names.hide(msg));
    }

    fn task(&self, title: &str, total: u64, unit: Unit) -> Box<dyn Task> {
        self.inner.task(&self.names.hide(title), total, unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_paths_are_named_by_what_they_are() {
        let names = PrivateNames::default();
        assert_eq!(
            names.hide("/w/.snf.1/disk.raw: bad"),
            "/w/.snf.1/disk.raw: bad"
        );
        names.set_workdir(Path::new("/w/.snf.1"), Path::new("/w"));
        names.set_disk(
            Path::new("/w/.snf.1/disk.raw"),
            "the private copy of a.qcow2".into(),
        );
        assert_eq!(
            names.hide("open /w/.snf.1/disk.raw: bad; `/w/.snf.1/part2.ext' too"),
            "open the private copy of a.qcow2: bad; `a scratch file under /w' too"
        );
        assert!(matches!(names.hide("nothing private"), Cow::Borrowed(_)));
    }
}
