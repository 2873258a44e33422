//! The xfs and btrfs free-space readers against the filesystems' own tools: `xfs_db
//! freesp` (which walks the same btrees, plus the free lists) and the btrfs device tree
//! (dev extents, a structure the reader never looks at), on filesystems made by
//! mkfs.xfs / mkfs.btrfs, mounted through a loop device, with files written and deleted.
//! Needs root (mount).

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::Command;

use snf_guestfs::freespace::{btrfs, xfs, FileVolume, FreeSpaceError};
use snf_testkit::fixture::{pseudo_random, require, run, MIB};

/// Unmounts the mount point when dropped, so a failed assertion leaves nothing mounted.
struct Mounted(PathBuf);

impl Mounted {
    fn new(img: &Path, dir: &Path) -> Mounted {
        std::fs::create_dir_all(dir).unwrap();
        run(Command::new("mount")
            .arg("-o")
            .arg("loop")
            .arg(img)
            .arg(dir));
        Mounted(dir.to_path_buf())
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Mounts `img` on `dir`, writes `count` files named `{prefix}{i}` (file `i` holds
/// `size(i)` pseudo-random bytes of seed `i`), syncs, deletes every other one (the
/// even ones), and unmounts.
fn write_then_delete_every_other(
    img: &Path,
    dir: &Path,
    prefix: &str,
    count: u64,
    size: impl Fn(u64) -> usize,
) {
    let m = Mounted::new(img, dir);
    for i in 0..count {
        std::fs::write(m.0.join(format!("{prefix}{i}")), pseudo_random(size(i), i)).unwrap();
    }
    run(&mut Command::new("sync"));
    for i in (0..count).step_by(2) {
        std::fs::remove_file(m.0.join(format!("{prefix}{i}"))).unwrap();
    }
}

/// Writes six files of 8 to 13 MiB, deletes every other one, and unmounts.
fn churn(img: &Path, dir: &Path) {
    write_then_delete_every_other(img, dir, "f", 6, |i| (8 + i as usize) << 20);
}

/// A new temporary directory holding `x.img`, a sparse 400 MiB file.
fn xfs_scratch() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("x.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(400 * MIB)
        .unwrap();
    (dir, img)
}

/// `mkfs -q -f ARGS img` with the mkfs program `mkfs` (mkfs.xfs, mkfs.btrfs).
fn mkfs(img: &Path, mkfs: &str, args: &[&str]) {
    run(Command::new(mkfs).args(["-q", "-f"]).args(args).arg(img));
}

fn merge(mut v: Vec<Range<u64>>) -> Vec<Range<u64>> {
    v.sort_by_key(|r| r.start);
    let mut out: Vec<Range<u64>> = Vec::new();
    for r in v {
        match out.last_mut() {
            Some(l) if r.start <= l.end => l.end = l.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

fn field(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(key)?
                .trim()
                .strip_prefix('=')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("xfs_db printed no {key}: {text}"))
}

/// The free extents `xfs_db -r -c 'freesp -d'` lists, as byte ranges.
fn xfs_db_free(img: &Path) -> Vec<Range<u64>> {
    let sb = run(Command::new("xfs_db")
        .args(["-r", "-c", "sb 0", "-c", "p agblocks blocksize"])
        .arg(img));
    let (agblocks, bs) = (field(&sb, "agblocks"), field(&sb, "blocksize"));
    let out = run(Command::new("xfs_db")
        .args(["-r", "-c", "freesp -d"])
        .arg(img));
    let mut v = Vec::new();
    for l in out.lines() {
        let n: Vec<u64> = l
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        if let [ag, bno, len] = n[..] {
            let start = (ag * agblocks + bno) * bs;
            v.push(start..start + len * bs);
        }
    }
    assert!(!v.is_empty(), "xfs_db listed no free extent: {out}");
    merge(v)
}

fn total(v: &[Range<u64>]) -> u64 {
    v.iter().map(|r| r.end - r.start).sum()
}

/// More than `min` bytes are free in `ranges`.
fn assert_free_over(ranges: &[Range<u64>], min: u64) {
    assert!(total(ranges) > min, "only {} MiB free", total(ranges) >> 20);
}

fn xfs_check(img: &Path, min_free: u64) {
    require("xfs_db");
    let vol = FileVolume::open(img, 0, 400 * MIB).unwrap();
    let ours = xfs::free_ranges(&vol).unwrap();
    assert_eq!(
        ours,
        xfs_db_free(img),
        "free ranges differ from xfs_db freesp"
    );
    assert_free_over(&ours, min_free);
}

#[test]
fn xfs_v5_free_ranges_are_what_xfs_db_lists() {
    require("mkfs.xfs");
    let (dir, img) = xfs_scratch();
    mkfs(&img, "mkfs.xfs", &[]);
    churn(&img, &dir.path().join("m"));
    // The three deleted files (8, 10 and 12 MiB) are free again.
    xfs_check(&img, 300 * MIB);
}

/// Thousands of small free extents: a by-block btree gets internal nodes.
#[test]
fn xfs_multi_level_free_space_btree_is_walked() {
    require("mkfs.xfs");
    let (dir, img) = xfs_scratch();
    mkfs(&img, "mkfs.xfs", &["-b", "size=1024", "-d", "agcount=2"]);
    write_then_delete_every_other(&img, &dir.path().join("m"), "s", 4000, |_| 2048);
    // `levels[0-2] = 0:2 1:2 2:0`: the first is the by-block btree's.
    let bno_levels = (0..2)
        .map(|ag| {
            let agf = run(Command::new("xfs_db")
                .args(["-r", "-c", &format!("agf {ag}"), "-c", "p levels"])
                .arg(&img));
            agf.split_once("= ")
                .and_then(|(_, v)| {
                    v.split_whitespace()
                        .next()?
                        .strip_prefix("0:")?
                        .parse::<u32>()
                        .ok()
                })
                .unwrap_or_else(|| panic!("xfs_db printed no levels: {agf}"))
        })
        .max()
        .unwrap();
    assert!(
        bno_levels >= 2,
        "the fixture's btree has {bno_levels} level(s)"
    );
    xfs_check(&img, 300 * MIB);
}

/// The kernel may not mount v4 filesystems any more: mkfs.xfs fills this one from a
/// prototype file, with small blocks so that the btree has several levels.
#[test]
fn xfs_v4_with_small_blocks_is_read_too() {
    require("mkfs.xfs");
    let (dir, img) = xfs_scratch();
    let mut proto = String::from("/dev/null\n0 0\nd--755 0 0\n");
    for i in 0..400u64 {
        let f = dir.path().join(format!("src{i}"));
        // Files of odd sizes, so that the free space between them is fragmented.
        std::fs::write(&f, pseudo_random(((i % 7) as usize + 1) * 3000, i)).unwrap();
        proto.push_str(&format!("f{i} ---644 0 0 {}\n", f.display()));
    }
    proto.push_str("$\n");
    let pf = dir.path().join("proto");
    std::fs::write(&pf, proto).unwrap();
    run(Command::new("mkfs.xfs")
        .args(["-q", "-f", "-m", "crc=0", "-b", "size=1024", "-p"])
        .arg(&pf)
        .arg(&img));
    xfs_check(&img, 300 * MIB);
}

#[test]
fn xfs_with_a_dirty_log_is_not_trusted() {
    require("xfs_io");
    let (dir, img) = xfs_scratch();
    mkfs(&img, "mkfs.xfs", &[]);
    {
        let m = Mounted::new(&img, &dir.path().join("m"));
        let f = m.0.join("f");
        std::fs::write(&f, pseudo_random(4 << 20, 1)).unwrap();
        // The allocation is committed to the log by the fsync; the shutdown leaves it
        // there unreplayed, as a crash would.
        run(Command::new("xfs_io").args(["-c", "fsync"]).arg(&f));
        run(Command::new("xfs_io")
            .args(["-x", "-c", "shutdown"])
            .arg(&m.0));
    }
    let vol = FileVolume::open(&img, 0, 400 * MIB).unwrap();
    let err = xfs::free_ranges(&vol).unwrap_err();
    assert!(matches!(err, FreeSpaceError::Untrusted { .. }), "{err}");
}

/// What `btrfs inspect-internal dump-tree` says about the device: each dev extent as
/// (physical start, length, chunk logical start).
fn dev_extents(img: &Path) -> Vec<(u64, u64, u64)> {
    let out = run(Command::new("btrfs")
        .args(["inspect-internal", "dump-tree", "-t", "dev"])
        .arg(img));
    let mut v = Vec::new();
    let mut start = None;
    for l in out.lines().map(str::trim) {
        if let Some((_, rest)) = l
            .strip_prefix("item ")
            .and_then(|r| r.split_once("DEV_EXTENT "))
        {
            start = rest
                .split(')')
                .next()
                .and_then(|s| s.trim().parse::<u64>().ok());
        } else if let (Some(s), Some(rest)) =
            (start, l.strip_prefix("chunk_objectid 256 chunk_offset "))
        {
            let w: Vec<u64> = rest
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            v.push((s, w[1], w[0]));
            start = None;
        }
    }
    assert!(!v.is_empty(), "dump-tree listed no dev extent: {out}");
    v
}

/// Block groups by logical start: (length, bytes used).
type Groups = std::collections::HashMap<u64, (u64, u64)>;

/// From the extent tree: block groups (logical start → (length, used)) and every
/// allocated extent (logical ranges; metadata items are one node long).
fn extent_tree(img: &Path, node: u64) -> (Groups, Vec<Range<u64>>) {
    let out = run(Command::new("btrfs")
        .args(["inspect-internal", "dump-tree", "-t", "extent"])
        .arg(img));
    let mut groups = std::collections::HashMap::new();
    let mut extents = Vec::new();
    let mut group = None;
    for l in out.lines().map(str::trim) {
        let key = l
            .strip_prefix("item ")
            .and_then(|r| r.split_once("key ("))
            .and_then(|(_, k)| k.split(')').next())
            .map(|k| k.split_whitespace().collect::<Vec<_>>());
        if let Some(k) = key {
            let (a, b): (u64, u64) = (k[0].parse().unwrap(), k[2].parse().unwrap());
            match k[1] {
                "BLOCK_GROUP_ITEM" => group = Some((a, b)),
                "EXTENT_ITEM" => extents.push(a..a + b),
                "METADATA_ITEM" => extents.push(a..a + node),
                _ => {}
            }
        } else if let (Some((a, len)), Some(rest)) = (group, l.strip_prefix("block group used ")) {
            let used: u64 = rest.split_whitespace().next().unwrap().parse().unwrap();
            groups.insert(a, (len, used));
            group = None;
        }
    }
    assert!(!groups.is_empty(), "dump-tree listed no block group: {out}");
    (groups, extents)
}

#[test]
fn btrfs_free_ranges_match_the_dev_and_extent_trees() {
    require("mkfs.btrfs");
    require("btrfs");
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("b.img");
    let size = 700 * MIB;
    std::fs::File::create(&img).unwrap().set_len(size).unwrap();
    mkfs(&img, "mkfs.btrfs", &[]);
    churn(&img, &dir.path().join("m"));
    let vol = FileVolume::open(&img, 0, size).unwrap();
    let ours = btrfs::free_ranges(&vol).unwrap();

    let devs = dev_extents(&img);
    let (groups, extents) = extent_tree(&img, 16384);
    // Outside the chunks: exactly what no dev extent covers, less the boot area and
    // the superblock mirror.
    let mut covered: Vec<Range<u64>> = vec![0..MIB, 64 * MIB..64 * MIB + 4096];
    covered.extend(devs.iter().map(|&(s, l, _)| s..s + l));
    let covered = merge(covered);
    let outside: Vec<Range<u64>> = ours
        .iter()
        .flat_map(|f| {
            let mut pieces = vec![f.clone()];
            for c in &covered {
                pieces = pieces
                    .into_iter()
                    .flat_map(|p| {
                        let mut v = Vec::new();
                        if p.start < c.start.min(p.end) {
                            v.push(p.start..c.start.min(p.end));
                        }
                        if c.end.max(p.start) < p.end {
                            v.push(c.end.max(p.start)..p.end);
                        }
                        v
                    })
                    .collect();
            }
            pieces
        })
        .collect();
    let mut expected_outside = Vec::new();
    let mut pos = 0;
    for c in &covered {
        if c.start > pos {
            expected_outside.push(pos..c.start);
        }
        pos = pos.max(c.end);
    }
    expected_outside.push(pos..size);
    assert_eq!(merge(outside), expected_outside);
    // Inside each chunk copy: as many free bytes as its block group does not use, and
    // none of them under an allocated extent.
    for &(phys, len, logical) in &devs {
        let inside: u64 = ours
            .iter()
            .map(|f| f.end.min(phys + len).saturating_sub(f.start.max(phys)))
            .sum();
        let (bg_len, used) = groups[&logical];
        assert_eq!(bg_len, len);
        let reserved = if phys <= 64 * MIB && 64 * MIB < phys + len {
            4096
        } else {
            0
        };
        assert!(
            inside + used + reserved >= len && inside + used <= len,
            "chunk {logical}: {inside} free bytes listed, {used} of {len} used"
        );
        for e in extents
            .iter()
            .filter(|e| e.start >= logical && e.end <= logical + len)
        {
            let (s, t) = (phys + e.start - logical, phys + e.end - logical);
            assert!(
                ours.iter().all(|f| f.end <= s || f.start >= t),
                "allocated extent {e:?} (device {s}..{t}) listed free"
            );
        }
    }
    // The three deleted files (8, 10 and 12 MiB) were in a data chunk: free again.
    assert_free_over(&ours, 600 * MIB);
}
