//! The inode table: FUSE inode numbers and the guest name each stands for.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

use super::ROOT;

struct Node {
    /// 0 once the name is gone (unlinked, or replaced by a rename).
    parent: u64,
    name: OsString,
    /// Lookups the kernel has not forgotten yet.
    lookups: u64,
}

/// FUSE inode numbers and the guest name each stands for.
pub(super) struct Nodes {
    nodes: HashMap<u64, Node>,
    children: HashMap<(u64, OsString), u64>,
    next: u64,
}

impl Nodes {
    pub(super) fn new() -> Self {
        let mut nodes = HashMap::new();
        nodes.insert(
            ROOT,
            Node {
                parent: ROOT,
                name: OsString::new(),
                lookups: 1,
            },
        );
        Nodes {
            nodes,
            children: HashMap::new(),
            next: ROOT + 1,
        }
    }

    /// The guest path of `ino`; `None` for an unknown or removed node.
    pub(super) fn path(&self, ino: u64) -> Option<PathBuf> {
        let mut path = PathBuf::from("/");
        path.extend(self.names(ino)?);
        Some(path)
    }

    /// The names leading from the root to `ino`, one per directory level the kernel sees
    /// above it; `None` for an unknown or removed node.
    pub(super) fn names(&self, ino: u64) -> Option<Vec<OsString>> {
        let mut names = Vec::new();
        let mut cur = ino;
        while cur != ROOT {
            let node = self.nodes.get(&cur)?;
            if node.parent == 0 || names.len() > 4096 {
                return None;
            }
            names.push(node.name.clone());
            cur = node.parent;
        }
        names.reverse();
        Some(names)
    }

    pub(super) fn parent(&self, ino: u64) -> u64 {
        self.nodes.get(&ino).map_or(ROOT, |n| n.parent.max(ROOT))
    }

    /// The inode for `name` in `parent`, made up if new.
    pub(super) fn child(&mut self, parent: u64, name: &OsStr) -> u64 {
        let key = (parent, name.to_os_string());
        if let Some(&ino) = self.children.get(&key) {
            return ino;
        }
        let ino = self.next;
        self.next += 1;
        self.nodes.insert(
            ino,
            Node {
                parent,
                name: name.to_os_string(),
                lookups: 0,
            },
        );
        self.children.insert(key, ino);
        ino
    }

    /// The inode for `name` in `parent`, counting one lookup the kernel will forget.
    pub(super) fn looked_up(&mut self, parent: u64, name: &OsStr) -> u64 {
        let ino = self.child(parent, name);
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.lookups += 1;
        }
        ino
    }

    /// The name `name` in `parent` is gone.
    pub(super) fn remove(&mut self, parent: u64, name: &OsStr) {
        if let Some(ino) = self.children.remove(&(parent, name.to_os_string())) {
            match self.nodes.get_mut(&ino) {
                Some(node) if node.lookups == 0 => {
                    self.nodes.remove(&ino);
                }
                Some(node) => node.parent = 0,
                None => {}
            }
        }
    }

    /// `name` in `parent` now lives as `new_name` in `new_parent` (whatever was there
    /// before is gone).
    pub(super) fn rename(&mut self, parent: u64, name: &OsStr, new_parent: u64, new_name: &OsStr) {
        self.remove(new_parent, new_name);
        if let Some(ino) = self.children.remove(&(parent, name.to_os_string())) {
            if let Some(node) = self.nodes.get_mut(&ino) {
                node.parent = new_parent;
                node.name = new_name.to_os_string();
            }
            self.children
                .insert((new_parent, new_name.to_os_string()), ino);
        }
    }

    pub(super) fn forget(&mut self, ino: u64, n: u64) {
        if ino == ROOT {
            return;
        }
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.lookups = node.lookups.saturating_sub(n);
            // Live names stay: their inode number must not change while the name
            // exists. Removed ones are dropped once the kernel forgets them.
            if node.lookups == 0 && node.parent == 0 {
                self.nodes.remove(&ino);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn node_table_follows_renames_and_removals() {
        let mut n = Nodes::new();
        let etc = n.looked_up(ROOT, OsStr::new("etc"));
        let conf = n.looked_up(etc, OsStr::new("a.conf"));
        assert_eq!(n.path(conf).unwrap(), Path::new("/etc/a.conf"));
        let usr = n.looked_up(ROOT, OsStr::new("usr"));
        n.rename(ROOT, OsStr::new("etc"), usr, OsStr::new("etc2"));
        assert_eq!(n.path(conf).unwrap(), Path::new("/usr/etc2/a.conf"));
        // Same name, same inode; a removed name gets a fresh one.
        assert_eq!(n.child(usr, OsStr::new("etc2")), etc);
        n.remove(usr, OsStr::new("etc2"));
        assert!(n.path(conf).is_none());
        assert_ne!(n.child(usr, OsStr::new("etc2")), etc);
        // Forgotten removed nodes go away.
        n.forget(etc, 1);
        assert!(!n.nodes.contains_key(&etc));
    }

    #[test]
    fn rename_over_an_existing_name_drops_the_old_inode() {
        let mut n = Nodes::new();
        let a = n.looked_up(ROOT, OsStr::new("a"));
        let b = n.looked_up(ROOT, OsStr::new("b"));
        n.rename(ROOT, OsStr::new("a"), ROOT, OsStr::new("b"));
        assert_eq!(n.path(a).unwrap(), Path::new("/b"));
        assert!(n.path(b).is_none());
        assert_eq!(n.child(ROOT, OsStr::new("b")), a);
    }
}
