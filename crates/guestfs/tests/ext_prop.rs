//! Property test: random sequences of create/write/truncate/unlink/mkdir/rmdir/rename
//! applied to the ext backend and to a host directory must succeed or fail alike, end
//! in the same tree, and leave a filesystem e2fsck finds nothing to fix in.

mod ext_common;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::Path;

use ext_common::*;
use proptest::prelude::*;
use snf_guestfs::{ExtFs, Filesystem, NewNode, NodeId};

/// The paths operations pick from: enough overlap for collisions, moves between
/// directories, non-empty directories and renames into a subtree.
const PATHS: &[&str] = &[
    "x", "y", "z", "d", "e", "d/x", "d/y", "d/e", "e/x", "e/d", "d/e/x", "d/e/y",
];

#[derive(Debug, Clone)]
enum Op {
    Create(usize),
    Write {
        path: usize,
        offset: u64,
        len: usize,
        seed: u8,
    },
    Truncate {
        path: usize,
        size: u64,
    },
    Unlink(usize),
    Mkdir(usize),
    Rmdir(usize),
    Rename(usize, usize),
}

fn op() -> impl Strategy<Value = Op> {
    let p = 0..PATHS.len();
    prop_oneof![
        2 => p.clone().prop_map(Op::Create),
        3 => (p.clone(), 0u64..40_000, 0usize..9_000, any::<u8>())
            .prop_map(|(path, offset, len, seed)| Op::Write { path, offset, len, seed }),
        1 => (p.clone(), 0u64..50_000).prop_map(|(path, size)| Op::Truncate { path, size }),
        1 => p.clone().prop_map(Op::Unlink),
        2 => p.clone().prop_map(Op::Mkdir),
        1 => p.clone().prop_map(Op::Rmdir),
        2 => (p.clone(), p).prop_map(|(a, b)| Op::Rename(a, b)),
    ]
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13) ^ seed)
        .collect()
}

fn split(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("", path),
    }
}

fn resolve(fs: &mut ExtFs, path: &str) -> Option<NodeId> {
    let mut node = fs.root();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        node = fs.lookup(node, OsStr::new(part)).ok()??;
    }
    Some(node)
}

fn apply_ext(fs: &mut ExtFs, op: &Op) -> bool {
    let parent_and_name = |fs: &mut ExtFs, i: usize| {
        let (parent, name) = split(PATHS[i]);
        resolve(fs, parent).map(|p| (p, name))
    };
    match *op {
        Op::Create(i) => parent_and_name(fs, i)
            .map(|(p, n)| {
                fs.create_file(p, OsStr::new(n), NewNode::root(0o644))
                    .is_ok()
            })
            .unwrap_or(false),
        Op::Write {
            path,
            offset,
            len,
            seed,
        } => match resolve(fs, PATHS[path]) {
            Some(node) => fs.write_at(node, offset, &data(len, seed)).is_ok(),
            None => false,
        },
        Op::Truncate { path, size } => match resolve(fs, PATHS[path]) {
            Some(node) => fs.set_len(node, size).is_ok(),
            None => false,
        },
        Op::Unlink(i) => parent_and_name(fs, i)
            .map(|(p, n)| fs.unlink(p, OsStr::new(n)).is_ok())
            .unwrap_or(false),
        Op::Mkdir(i) => parent_and_name(fs, i)
            .map(|(p, n)| fs.mkdir(p, OsStr::new(n), NewNode::root(0o755)).is_ok())
            .unwrap_or(false),
        Op::Rmdir(i) => parent_and_name(fs, i)
            .map(|(p, n)| fs.rmdir(p, OsStr::new(n)).is_ok())
            .unwrap_or(false),
        Op::Rename(a, b) => {
            let (Some((pa, na)), Some((pb, nb))) = (parent_and_name(fs, a), parent_and_name(fs, b))
            else {
                return false;
            };
            fs.rename(pa, OsStr::new(na), pb, OsStr::new(nb)).is_ok()
        }
    }
}

fn apply_host(root: &Path, op: &Op) -> bool {
    let p = |i: usize| root.join(PATHS[i]);
    match *op {
        Op::Create(i) => fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(p(i))
            .and_then(|_| fs::set_permissions(p(i), fs::Permissions::from_mode(0o644)))
            .is_ok(),
        Op::Write {
            path,
            offset,
            len,
            seed,
        } => {
            let target = p(path);
            if !target.is_file() {
                return false;
            }
            fs::OpenOptions::new()
                .write(true)
                .open(target)
                .and_then(|f| f.write_all_at(&data(len, seed), offset))
                .is_ok()
        }
        Op::Truncate { path, size } => {
            let target = p(path);
            if !target.is_file() {
                return false;
            }
            fs::OpenOptions::new()
                .write(true)
                .open(target)
                .and_then(|f| f.set_len(size))
                .is_ok()
        }
        Op::Unlink(i) => fs::remove_file(p(i)).is_ok(),
        Op::Mkdir(i) => fs::create_dir(p(i))
            .and_then(|_| fs::set_permissions(p(i), fs::Permissions::from_mode(0o755)))
            .is_ok(),
        Op::Rmdir(i) => fs::remove_dir(p(i)).is_ok(),
        Op::Rename(a, b) => fs::rename(p(a), p(b)).is_ok(),
    }
}

fn run_case(cfg: Config, ops: &[Op]) -> Result<(), TestCaseError> {
    let host = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let img = mkfs(empty.path(), cfg, "16M", 4096);
    let pristine = img.free_counts();
    {
        let mut ext = img.open(true);
        for (i, op) in ops.iter().enumerate() {
            let on_ext = apply_ext(&mut ext, op);
            let on_host = apply_host(host.path(), op);
            prop_assert_eq!(
                on_ext,
                on_host,
                "{}: step {} {:?}: ext succeeded = {}, host succeeded = {}",
                cfg.name,
                i,
                op,
                on_ext,
                on_host
            );
        }
        let expected = host_tree(host.path());
        let actual = fs_tree(&mut ext);
        assert_same_tree(&expected, &actual, cfg.name, false);
        ext.close().unwrap();
    }
    img.assert_clean(&format!("{}: {} random operations", cfg.name, ops.len()));
    // Removing everything gives all inodes back.
    {
        let mut ext = img.open(true);
        let root = ext.root();
        remove_all(&mut ext, root);
        ext.close().unwrap();
    }
    img.assert_clean(&format!("{}: removing everything", cfg.name));
    let (_, inodes) = img.free_counts();
    prop_assert_eq!(inodes, pristine.1, "{}: inodes given back", cfg.name);
    Ok(())
}

fn remove_all(fs: &mut ExtFs, dir: NodeId) {
    for e in fs.read_dir(dir).unwrap() {
        if e.name == "lost+found" {
            continue;
        }
        if e.file_type == snf_guestfs::FileType::Directory {
            remove_all(fs, e.node);
            fs.rmdir(dir, &e.name).unwrap();
        } else {
            fs.unlink(dir, &e.name).unwrap();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 10,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn ext4_behaves_like_a_host_directory(ops in proptest::collection::vec(op(), 1..60)) {
        run_case(EXT4, &ops)?;
    }

    #[test]
    fn ext4_inline_csum_behaves_like_a_host_directory(ops in proptest::collection::vec(op(), 1..60)) {
        run_case(EXT4_FULL, &ops)?;
    }

    #[test]
    fn ext2_behaves_like_a_host_directory(ops in proptest::collection::vec(op(), 1..60)) {
        run_case(EXT2, &ops)?;
    }
}
