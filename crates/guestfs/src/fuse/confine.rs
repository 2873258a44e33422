//! Symlink targets kept inside the guest.
//!
//! The host kernel follows the links it reads through the view, starting from the
//! directory where it found them. A guest's own text (`/etc/passwd`, `../../../../tmp/x`)
//! would lead it out of the mount and onto host files, which a script running as root
//! would then read or overwrite. So the view shows every link as the path from the link's
//! directory to where the link leads *inside the guest*, by the guest tree's rules: an
//! absolute target starts at the guest root, `..` at the guest root stays there, and the
//! symlinks met on the way are followed inside the guest. The last component is kept as
//! it is, so a chain reads one link at a time, each confined the same way; a part that
//! does not exist is taken as written.
//!
//! What comes out is some `..` (never more than the link's directory is deep) and then
//! plain names, so the kernel cannot climb above the mount: every name it meets is an
//! object of the view, and every link among them is confined again. The kernel must
//! not cache link text ([`fuser`] does not ask for `FUSE_CACHE_SYMLINKS`): the relative
//! form depends on where the link is, and a rename moves it.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::tree::GuestFs;

/// How many symlinks met on the way one target may follow, as Linux allows.
const MAX_SYMLINKS: usize = 40;

/// The text the view shows for a link in directory `dir` (the names from the guest root
/// to it) whose guest text is `target`: a relative path that stays inside the guest.
pub(super) fn confined_target(guest: &mut GuestFs, dir: &[OsString], target: &OsStr) -> PathBuf {
    relative(dir, &resolve(guest, dir, target))
}

/// Where `target`, read in directory `dir`, leads inside the guest: the names from the
/// guest root, with the symlinks met on the way followed but not a final one.
fn resolve(guest: &mut GuestFs, dir: &[OsString], target: &OsStr) -> Vec<OsString> {
    let mut at: Vec<OsString> = if target.as_bytes().starts_with(b"/") {
        Vec::new()
    } else {
        dir.to_vec()
    };
    let mut pending = components(target);
    pending.reverse(); // pop() yields the next component
    let mut followed = 0;
    // Once something is missing (or cannot be read) the rest is taken as written: the
    // kernel will stop there too.
    let mut resolving = true;
    while let Some(name) = pending.pop() {
        if name == ".." {
            at.pop();
            continue;
        }
        at.push(name);
        if !resolving || pending.is_empty() {
            continue;
        }
        let here = to_path(&at);
        match guest.lstat(&here) {
            Ok(meta) if meta.is_symlink() => {
                followed += 1;
                let Ok(text) = guest.read_link(&here) else {
                    resolving = false;
                    continue;
                };
                if followed > MAX_SYMLINKS || text.is_empty() {
                    // Shown up to the offending link: following it, the kernel meets
                    // the loop (or the empty link) itself.
                    pending.clear();
                    continue;
                }
                at.pop();
                if text.as_bytes().starts_with(b"/") {
                    at.clear();
                }
                let mut more = components(&text);
                more.reverse();
                pending.extend(more);
            }
            Ok(_) => {}
            Err(_) => resolving = false,
        }
    }
    at
}

/// `to` (names from the guest root) as seen from directory `dir`.
fn relative(dir: &[OsString], to: &[OsString]) -> PathBuf {
    let common = dir.iter().zip(to).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..dir.len() {
        out.push("..");
    }
    for name in &to[common..] {
        out.push(name);
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// The components of a link's text: names and `..` (`.` and empty ones dropped).
fn components(text: &OsStr) -> Vec<OsString> {
    Path::new(text)
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

fn to_path(names: &[OsString]) -> PathBuf {
    let mut p = PathBuf::from("/");
    p.extend(names);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(s: &str) -> Vec<OsString> {
        components(OsStr::new(s))
    }

    #[test]
    fn relative_paths_climb_only_to_the_common_directory() {
        let rel = |d: &str, t: &str| relative(&names(d), &names(t));
        assert_eq!(rel("usr/lib", "etc/passwd"), Path::new("../../etc/passwd"));
        assert_eq!(rel("usr/lib", "usr/lib/x"), Path::new("x"));
        assert_eq!(rel("usr/lib", "usr"), Path::new(".."));
        assert_eq!(rel("", ""), Path::new("."));
        assert_eq!(rel("a", ""), Path::new(".."));
        assert_eq!(rel("", "a/b"), Path::new("a/b"));
    }

    /// A guest tree in a host directory: `etc/passwd`, `usr/lib/`, `d -> /`,
    /// `usr/up -> ../../../..`, `loop1 <-> loop2`, `usr/etc -> /etc`.
    fn guest() -> (tempfile::TempDir, GuestFs) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(root.join("usr/lib")).unwrap();
        std::fs::write(root.join("etc/passwd"), "guest\n").unwrap();
        for (link, text) in [
            ("d", "/"),
            ("usr/up", "../../../.."),
            ("loop1", "loop2"),
            ("loop2", "/loop1"),
            ("usr/etc", "/etc"),
        ] {
            std::os::unix::fs::symlink(text, root.join(link)).unwrap();
        }
        let fs = crate::dir::DirFs::open(root, false).unwrap();
        (dir, GuestFs::new(Box::new(fs), "tree"))
    }

    #[test]
    fn targets_resolve_inside_the_guest() {
        let (_dir, mut g) = guest();
        let mut shown =
            |dir: &str, text: &str| confined_target(&mut g, &names(dir), OsStr::new(text));
        assert_eq!(
            shown("usr/lib", "/etc/passwd"),
            Path::new("../../etc/passwd")
        );
        assert_eq!(
            shown("usr/lib", "../../../../../etc/passwd"),
            Path::new("../../etc/passwd")
        );
        // Directory links on the way are followed inside the guest.
        assert_eq!(
            shown("usr/lib", "/d/d/etc/passwd"),
            Path::new("../../etc/passwd")
        );
        assert_eq!(
            shown("usr/lib", "../up/etc/passwd"),
            Path::new("../../etc/passwd")
        );
        assert_eq!(shown("", "usr/etc/../usr"), Path::new("usr"));
        // The last component is not followed: a chain reads one link at a time.
        assert_eq!(shown("usr/lib", "/d"), Path::new("../../d"));
        assert_eq!(shown("", "loop1"), Path::new("loop1"));
        // A loop on the way stops at the link where it was met.
        assert_eq!(shown("usr", "/loop1/x"), Path::new("../loop1"));
        // What does not exist is taken as written, still clamped at the root.
        assert_eq!(
            shown("usr/lib", "/no/such/../../../../x"),
            Path::new("../../x")
        );
        assert_eq!(shown("usr/lib", "/"), Path::new("../.."));
        assert_eq!(shown("", "/"), Path::new("."));
    }

    #[test]
    fn link_text_never_climbs_above_the_link_directory() {
        let (_dir, mut g) = guest();
        for dir in ["", "usr", "usr/lib", "etc/passwd/x", "no/such/dir"] {
            for text in [
                "/",
                "/..",
                "../../../../../../x",
                "/../../etc/passwd",
                "d/../../..",
                "usr/up/../../..",
                "..",
                ".",
                "./x/./../y",
                "loop1/../..",
            ] {
                let d = names(dir);
                let shown = confined_target(&mut g, &d, OsStr::new(text));
                let ups = shown
                    .components()
                    .take_while(|c| *c == Component::ParentDir)
                    .count();
                assert!(ups <= d.len(), "{dir} {text} -> {}", shown.display());
                let rest: Vec<_> = shown.components().skip(ups).collect();
                assert!(
                    rest.iter().all(|c| matches!(c, Component::Normal(_)))
                        || rest == [Component::CurDir],
                    "{dir} {text} -> {}",
                    shown.display()
                );
            }
        }
    }
}
