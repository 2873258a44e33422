//! A guest tree on the host, rebuilt for every input, served through the real
//! directory backend.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use image_creator::metadata::Metadata;
use image_creator::sysprep::{GuestOs, OsFamily, Params, Registry, SysprepContext};
use snf_guestfs::{DirFs, GuestFs};

/// A file whose content starts with this is made a symbolic link to the rest (guests
/// are full of them, and every read resolves them inside the guest).
pub const LINK: &[u8] = b"@link:";

fn scratch() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(crate::scratch_dir).path()
}

/// Makes a fresh tree holding `files` (guest path, content) and opens it writable.
pub fn tree(files: &[(&str, &[u8])]) -> GuestFs {
    let root: PathBuf = scratch().join("root");
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(&root).expect("the guest root");
    for (path, data) in files {
        let host = root.join(path.trim_start_matches('/'));
        if let Some(parent) = host.parent() {
            let _ = fs::create_dir_all(parent);
        }
        let _ = match data.strip_prefix(LINK) {
            Some(target) => std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(target), &host),
            None => fs::write(&host, data),
        };
    }
    GuestFs::new(
        Box::new(DirFs::open(&root, true).expect("the guest root")),
        "fuzz",
    )
}

/// Makes a fresh tree from one fuzz input: its NUL-separated sections become the
/// contents of `paths`, in order (paths past the last section are left out).
pub fn tree_from(paths: &[&str], data: &[u8]) -> GuestFs {
    let files: Vec<(&str, &[u8])> = paths
        .iter()
        .copied()
        .zip(crate::sections(data, paths.len()))
        .collect();
    tree(&files)
}

/// Runs every system preparation operation of `family` (all of them enabled) on `g`.
pub fn sysprep(g: &mut GuestFs, family: OsFamily, meta: &mut Metadata) {
    let _ = meta.insert("OSFAMILY", family.name());
    let os = GuestOs::from_metadata(meta);
    let params = Params::for_family(family);
    let mut registry = Registry::for_family(family);
    for d in registry.descriptors() {
        let _ = registry.enable(d.name);
    }
    let reporter = snf_core::report::Quiet;
    let mut ctx = SysprepContext::new(g, &os, meta, &params, &reporter);
    let _ = image_creator::sysprep::run_enabled(&mut registry, &mut ctx);
}
