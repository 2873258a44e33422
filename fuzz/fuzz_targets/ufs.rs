//! UFS: a small UFS1 or UFS2 image (seeds made by makefs) opened, walked (every
//! directory, metadata, link and the start of every file), then, when the flag asks,
//! edited (write, truncate down and up, unlink, create, rmdir), synced and walked again.
//! Whatever the bytes, the backend must return errors, never panic, hang or allocate
//! without bound.
//!
//! Input: `[flags: u8][image KiB: u16 LE]` then records `[sector: u16 LE][length: u16
//! LE][bytes]` placed on the image (see fuzz/make-corpus.sh). Flag bit 0: edit.
#![no_main]
use std::ffi::OsStr;

use libfuzzer_sys::fuzz_target;
use snf_guestfs::{FileType, Filesystem, NewNode, NodeId, UfsFs};

const MAX_KIB: u64 = 4 << 10;

/// Visit at most this many nodes, this deep: a directory cycle in a corrupt image is
/// the tree layer's to catch, not a reason to walk forever here.
fn walk(
    fs: &mut UfsFs,
    dir: NodeId,
    depth: u32,
    budget: &mut u32,
    files: &mut Vec<NodeId>,
    dirs: &mut Vec<(NodeId, std::ffi::OsString)>,
) {
    if depth > 6 {
        return;
    }
    let Ok(entries) = fs.read_dir(dir) else {
        return;
    };
    for e in entries {
        if *budget == 0 {
            return;
        }
        *budget -= 1;
        let _ = fs.lookup(dir, &e.name);
        let Ok(m) = fs.metadata(e.node) else {
            continue;
        };
        match m.file_type {
            FileType::Directory => {
                dirs.push((dir, e.name.clone()));
                walk(fs, e.node, depth + 1, budget, files, dirs);
            }
            FileType::Symlink => {
                let _ = fs.read_link(e.node);
            }
            FileType::Regular => {
                let mut buf = vec![0u8; 70_000];
                let _ = fs.read_at(e.node, 0, &mut buf);
                files.push(e.node);
            }
            _ => {}
        }
    }
}

fn walk_all(fs: &mut UfsFs) -> (Vec<NodeId>, Vec<(NodeId, std::ffi::OsString)>) {
    let (mut files, mut dirs) = (Vec::new(), Vec::new());
    let root = fs.root();
    walk(fs, root, 0, &mut 200, &mut files, &mut dirs);
    let _ = fs.free_ranges();
    (files, dirs)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let edit = data[0] & 1 != 0;
    let size = u64::from(u16::from_le_bytes([data[1], data[2]])).clamp(64, MAX_KIB) * 1024;
    let dir = snf_fuzz::scratch_dir();
    let path = snf_fuzz::sparse_image_file(dir.path(), "ufs.img", size, &data[3..]);

    let Ok(mut fs) = UfsFs::open(&path, 0, size, false) else {
        return;
    };
    walk_all(&mut fs);
    drop(fs);
    if !edit {
        return;
    }
    let Ok(mut fs) = UfsFs::open(&path, 0, size, true) else {
        return;
    };
    let (files, dirs) = walk_all(&mut fs);
    let root = fs.root();
    if let Some(&f) = files.first() {
        let _ = fs.write_at(f, 5000, &[7u8; 300]);
        let _ = fs.set_len(f, 10);
        let _ = fs.set_len(f, 70_000);
        let _ = fs.write_at(f, 60_000, &[1u8; 9000]);
    }
    for (parent, name) in dirs.iter().rev().take(2) {
        let _ = fs.rmdir(*parent, name);
    }
    if let Ok(new) = fs.create_file(root, OsStr::new("fuzz-new"), NewNode::root(0o644)) {
        let _ = fs.write_at(new, 0, &[3u8; 5000]);
    }
    if let Ok(entries) = fs.read_dir(root) {
        for e in entries.iter().take(3) {
            if e.file_type != FileType::Directory {
                let _ = fs.unlink(root, &e.name);
            }
        }
    }
    let _ = fs.sync();
    drop(fs);
    if let Ok(mut fs) = UfsFs::open(&path, 0, size, false) {
        walk_all(&mut fs);
    }
});
