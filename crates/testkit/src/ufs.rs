//! UFS fixtures made by NetBSD's `makefs -t ffs` (Debian package `makefs`), and an
//! fsck-like consistency check of a UFS image written for the tests, independent of
//! the backend under test.
//!
//! Debian's makefs writes the UFS2 superblock at 8 KiB, where FreeBSD, and Linux's
//! `ufstype=ufs2`, look at 64 KiB. [`Layout::Ufs2FreeBsd`] moves it: with 4 KiB blocks
//! and 512-byte fragments, 64 KiB falls in group 0's inode table past the inodes makefs
//! initialised (`cg_initediblk`), which the fixture checks, so the result has the
//! superblock where FreeBSD puts it and nothing else changes.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

use snf_core::bytes::{le16, le32, le64};

use crate::fixture::{pseudo_random, require, run, write_file, write_symlink};

/// Which UFS a fixture is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// UFS1 (`-o version=1`), superblock at 8 KiB: NetBSD and OpenBSD.
    Ufs1,
    /// UFS2 as makefs writes it, superblock at 8 KiB (NetBSD style).
    Ufs2NetBsd,
    /// UFS2 with the superblock moved to 64 KiB, as FreeBSD has it.
    Ufs2FreeBsd,
}

/// Size of the big file of [`sample_tree`]: past the single indirect block of 4 KiB
/// blocks (12 + 512 UFS2 / 1024 UFS1 blocks), into the double indirect one.
pub const BIG: usize = 6 << 20;

/// A directory tree with what a UFS test needs: hard links, short and long symlinks, a
/// file reaching double indirect blocks, a file of zeros, small files of every fragment
/// count, a FIFO and a character device, and a directory of 100 entries spanning several
/// 512-byte chunks (few enough that makefs, which numbers inodes in order, leaves 64 KiB
/// of group 0 to [`Layout::Ufs2FreeBsd`]).
pub fn sample_tree(root: &Path) {
    write_file(root, "etc/motd", "welcome\n");
    write_file(
        root,
        "etc/master.passwd",
        "root:$6$x$y:0:0::0:0:Charlie &:/root:/bin/sh\n",
    );
    std::fs::hard_link(root.join("etc/motd"), root.join("etc/motd.hard")).unwrap();
    write_symlink(root, "etc/short", "motd");
    write_symlink(root, "etc/long", "a/".repeat(100) + "target");
    write_file(root, "var/big", pseudo_random(BIG, 7));
    write_file(root, "var/zeros", vec![0u8; 200_000]);
    for n in [1usize, 511, 512, 513, 3000, 4095, 4096, 4097, 40_000] {
        write_file(root, &format!("var/small/{n}"), pseudo_random(n, n as u64));
    }
    write_file(root, "var/empty", "");
    // Special files, kept as inodes only.
    run(Command::new("mkfifo").arg(root.join("var/fifo")));
    run(Command::new("mknod")
        .arg(root.join("var/null"))
        .args(["c", "1", "3"]));
    std::fs::create_dir_all(root.join("var/emptydir")).unwrap();
    for i in 0..100 {
        write_file(
            root,
            &format!("usr/many/entry-with-a-longish-name-{i:03}"),
            format!("{i}\n"),
        );
    }
}

/// Make a UFS image of `size_mib` MiB at `img` from the directory `tree`, with 4 KiB
/// blocks of 512-byte fragments (small, so files reach double indirect blocks).
pub fn make_image(img: &Path, tree: &Path, layout: Layout, size_mib: u64) {
    make_image_with(img, tree, layout, size_mib, 4096, 512);
}

/// [`make_image`] with another block and fragment size ([`Layout::Ufs2FreeBsd`] needs
/// 4096/512: only then is 64 KiB in the inode table).
pub fn make_image_with(
    img: &Path,
    tree: &Path,
    layout: Layout,
    size_mib: u64,
    bsize: u32,
    fsize: u32,
) {
    require("makefs");
    let version = if layout == Layout::Ufs1 { 1 } else { 2 };
    run(Command::new("makefs")
        .args(["-t", "ffs", "-s", &format!("{size_mib}m"), "-o"])
        .arg(format!(
            "version={version},bsize={bsize},fsize={fsize},density=8192"
        ))
        .arg(img)
        .arg(tree));
    if layout == Layout::Ufs2FreeBsd {
        relocate_superblock(img);
    }
}

fn relocate_superblock(img: &Path) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(img)
        .unwrap();
    let mut sb = vec![0u8; 8192];
    f.read_exact_at(&mut sb, 8192).unwrap();
    let g = Geometry::parse(&sb, 8192).expect("makefs wrote a UFS2 superblock at 8 KiB");
    // 64 KiB must be in group 0's inode table, on inodes nothing uses: they become
    // "never initialised" (past `cg_initediblk`), which FreeBSD leaves alone.
    let first = 65536 / g.fsize;
    let mut cg = g.read_cg(&f, 0, 0);
    let ino_at = (first - g.iblkno) * g.fsize / 256;
    let iused = le32(&cg, 92) as usize;
    let used_past = (ino_at..g.ipg).filter(|&i| bit(&cg[iused..], i)).count();
    assert!(
        first >= g.iblkno && ino_at + 32 <= g.ipg && used_past == 0,
        "64 KiB is not on free inodes of group 0 (inode {ino_at}, {used_past} in use past it)"
    );
    let inited = u64::from(le32(&cg, 120)).min(ino_at);
    cg[120..124].copy_from_slice(&(inited as u32).to_le_bytes());
    f.write_all_at(&cg, (g.cgstart(0) + g.cblkno) * g.fsize)
        .unwrap();
    sb[1000..1008].copy_from_slice(&65536u64.to_le_bytes());
    f.write_all_at(&sb, 65536).unwrap();
    f.write_all_at(&[0u8; 8192], 8192).unwrap();
}

/// The geometry the checker needs.
struct Geometry {
    ufs2: bool,
    loc: u64,
    bsize: u64,
    fsize: u64,
    frag: u64,
    ncg: u64,
    ipg: u64,
    fpg: u64,
    size: u64,
    sblkno: u64,
    cblkno: u64,
    iblkno: u64,
    dblkno: u64,
    cgoffset: u64,
    cgmask: u64,
    csaddr: u64,
    cssize: u64,
    cgsize: u64,
    maxsymlink: u64,
    totals: [i64; 4],
}

impl Geometry {
    fn parse(sb: &[u8], loc: u64) -> Option<Geometry> {
        let magic = le32(sb, 1372);
        let ufs2 = match magic {
            0x1954_0119 => true,
            0x0001_1954 => false,
            _ => return None,
        };
        let i = |o| u64::from(le32(sb, o));
        Some(Geometry {
            ufs2,
            loc,
            bsize: i(48),
            fsize: i(52),
            frag: i(56),
            ncg: i(44),
            ipg: i(184),
            fpg: i(188),
            size: if ufs2 { le64(sb, 1080) } else { i(36) },
            sblkno: i(8),
            cblkno: i(12),
            iblkno: i(16),
            dblkno: i(20),
            cgoffset: if ufs2 { 0 } else { i(24) },
            cgmask: if ufs2 { 0 } else { i(28) },
            csaddr: if ufs2 { le64(sb, 1096) } else { i(152) },
            cssize: i(156),
            cgsize: i(160),
            maxsymlink: i(1320),
            totals: if ufs2 {
                [0, 1, 2, 3].map(|k| le64(sb, 1008 + 8 * k) as i64)
            } else {
                [0, 1, 2, 3].map(|k| i64::from(le32(sb, 192 + 4 * k) as i32))
            },
        })
    }

    fn cgstart(&self, c: u64) -> u64 {
        self.fpg * c + self.cgoffset * (c & !self.cgmask)
    }

    fn read_cg(&self, f: &File, offset: u64, c: u64) -> Vec<u8> {
        let mut b = vec![0u8; self.cgsize as usize];
        f.read_exact_at(
            &mut b,
            offset + (self.cgstart(c) + self.cblkno) * self.fsize,
        )
        .unwrap();
        assert_eq!(le32(&b, 4), 0x0009_0255, "cylinder group {c}: bad magic");
        b
    }

    fn dinode_size(&self) -> u64 {
        if self.ufs2 {
            256
        } else {
            128
        }
    }

    fn inode_pos(&self, ino: u64) -> u64 {
        let c = ino / self.ipg;
        let i = ino % self.ipg;
        let inopb = self.bsize / self.dinode_size();
        (self.cgstart(c) + self.iblkno + i / inopb * self.frag) * self.fsize
            + i % inopb * self.dinode_size()
    }
}

fn bit(map: &[u8], i: u64) -> bool {
    map[(i / 8) as usize] & (1 << (i % 8)) != 0
}

/// What [`check`] counted.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub inodes_used: u64,
    pub frags_free: u64,
    /// Blocks all of whose fragments are free.
    pub blocks_free: u64,
    pub block_size: u64,
    pub dirs: u64,
}

/// Check the UFS filesystem at `offset` of `img` as `fsck_ffs -n` would, with code
/// independent of the backend: every in-use inode's blocks (direct, indirect, the tail
/// fragment run) against the fragment-free maps, no fragment claimed twice, the
/// inode-used maps against the inodes, link counts against the directory entries,
/// `di_blocks`, the group counts and fragment histograms, the summary area and the
/// superblock totals. `Err` lists every problem found.
pub fn check(img: &Path, offset: u64) -> Result<Summary, String> {
    let f = File::open(img).unwrap();
    let mut g = None;
    for loc in [65536u64, 8192] {
        let mut sb = vec![0u8; 8192];
        f.read_exact_at(&mut sb, offset + loc).unwrap();
        if let Some(x) = Geometry::parse(&sb, loc) {
            g = Some(x);
            break;
        }
    }
    let g = g.ok_or("no UFS superblock")?;
    let _ = g.loc;
    let read = |pos: u64, len: u64| {
        let mut b = vec![0u8; len as usize];
        f.read_exact_at(&mut b, offset + pos).unwrap();
        b
    };
    let mut problems = Vec::new();
    let mut owner: HashMap<u64, u64> = HashMap::new();
    let mut claim = |problems: &mut Vec<String>, who: u64, addr: u64, n: u64| {
        for a in addr..addr + n {
            if a >= g.size {
                problems.push(format!("inode {who}: fragment {a} past the end"));
            } else if let Some(o) = owner.insert(a, who) {
                problems.push(format!("fragment {a} claimed by {o} and {who}"));
            }
        }
    };
    // Metadata, as fsck_ffs pass 1 marks it (owner 0).
    for c in 0..g.ncg {
        let start = if c == 0 { 0 } else { g.cgstart(c) + g.sblkno };
        let end = g.cgstart(c) + g.dblkno;
        claim(&mut problems, 0, start, end - start);
    }
    claim(&mut problems, 0, g.csaddr, g.cssize.div_ceil(g.fsize));

    let cgs: Vec<Vec<u8>> = (0..g.ncg).map(|c| g.read_cg(&f, offset, c)).collect();
    let mut links: HashMap<u64, i64> = HashMap::new();
    let mut nlink: HashMap<u64, i64> = HashMap::new();
    let mut summary = Summary {
        block_size: g.bsize,
        ..Summary::default()
    };
    let mut dirs_per_cg = vec![0i64; g.ncg as usize];
    let ptr = if g.ufs2 { 8 } else { 4 };
    let nindir = g.bsize / ptr;
    for c in 0..g.ncg {
        let cg = &cgs[c as usize];
        let iused = &cg[le32(cg, 92) as usize..];
        let inited = if g.ufs2 {
            u64::from(le32(cg, 120))
        } else {
            g.ipg
        };
        for i in 0..g.ipg {
            let ino = c * g.ipg + i;
            let used = bit(iused, i);
            if i >= inited {
                if used {
                    problems.push(format!("inode {ino} in use but never initialised"));
                }
                continue;
            }
            let d = read(g.inode_pos(ino), g.dinode_size());
            let mode = le16(&d, 0);
            if !used {
                if mode != 0 && ino >= 2 {
                    problems.push(format!("inode {ino} free in the map but has mode {mode:o}"));
                }
                continue;
            }
            if ino < 2 {
                continue;
            }
            if mode == 0 {
                problems.push(format!("inode {ino} in use in the map but has mode 0"));
                continue;
            }
            summary.inodes_used += 1;
            nlink.insert(ino, i64::from(le16(&d, 2)));
            let (size, blocks) = if g.ufs2 {
                (le64(&d, 16), le64(&d, 24))
            } else {
                (le64(&d, 8), u64::from(le32(&d, 104)))
            };
            let ptr_at = |k: usize| {
                if g.ufs2 {
                    le64(&d, 112 + 8 * k)
                } else {
                    u64::from(le32(&d, 40 + 4 * k))
                }
            };
            let kind = mode & 0o170000;
            if kind == 0o040000 {
                dirs_per_cg[c as usize] += 1;
                summary.dirs += 1;
            }
            let has_blocks = kind == 0o100000
                || kind == 0o040000
                || (kind == 0o120000 && (size >= g.maxsymlink || blocks != 0));
            // UFS2's extended-attribute area: up to two blocks, the last one a fragment
            // run as long as the area needs (FreeBSD's ffs_balloc with IO_EXT).
            let mut frags = 0u64;
            if g.ufs2 {
                let extsize = u64::from(le32(&d, 92));
                if extsize > 2 * g.bsize {
                    problems.push(format!("inode {ino}: di_extsize {extsize}"));
                }
                for k in 0..2u64 {
                    let a = le64(&d, 96 + 8 * k as usize);
                    if a == 0 {
                        continue;
                    }
                    if extsize <= k * g.bsize {
                        problems.push(format!("inode {ino}: extattr block {k} past di_extsize"));
                        continue;
                    }
                    let n = (extsize - k * g.bsize).min(g.bsize).div_ceil(g.fsize);
                    claim(&mut problems, ino, a, n);
                    frags += n;
                }
            }
            if !has_blocks {
                continue;
            }
            let ndb = size.div_ceil(g.bsize);
            let mut data: Vec<(u64, u64)> = Vec::new();
            for lbn in 0..12u64 {
                let a = ptr_at(lbn as usize);
                if a == 0 {
                    continue;
                }
                if lbn >= ndb {
                    problems.push(format!("inode {ino}: block {lbn} past the end"));
                    continue;
                }
                let n = if lbn + 1 == ndb && size % g.bsize != 0 {
                    (size % g.bsize).div_ceil(g.fsize)
                } else {
                    g.frag
                };
                claim(&mut problems, ino, a, n);
                frags += n;
                data.push((lbn, a));
            }
            // Indirect trees: every block whole.
            let mut stack: Vec<(u64, u32)> = (0..3).map(|k| (ptr_at(12 + k), k as u32)).collect();
            while let Some((a, level)) = stack.pop() {
                if a == 0 {
                    continue;
                }
                claim(&mut problems, ino, a, g.frag);
                frags += g.frag;
                let b = read(a * g.fsize, g.bsize);
                for k in 0..nindir as usize {
                    let p = if g.ufs2 {
                        le64(&b, 8 * k)
                    } else {
                        u64::from(le32(&b, 4 * k))
                    };
                    if p == 0 {
                        continue;
                    }
                    if level == 0 {
                        claim(&mut problems, ino, p, g.frag);
                        frags += g.frag;
                    } else {
                        stack.push((p, level - 1));
                    }
                }
            }
            if blocks * 512 != frags * g.fsize {
                problems.push(format!(
                    "inode {ino}: di_blocks {blocks} but {frags} fragments allocated"
                ));
            }
            if kind == 0o040000 {
                if size % 512 != 0 || size > 12 * g.bsize {
                    problems.push(format!("directory {ino}: size {size}"));
                    continue;
                }
                for (lbn, a) in data {
                    let len = (size - lbn * g.bsize).min(g.bsize);
                    let b = read(a * g.fsize, len);
                    for chunk in b.chunks(512) {
                        let mut p = 0usize;
                        while p < 512 {
                            let e = u64::from(le32(chunk, p));
                            let rl = le16(chunk, p + 4) as usize;
                            if rl < 8 || p + rl > 512 {
                                problems.push(format!("directory {ino}: bad record length {rl}"));
                                break;
                            }
                            if e != 0 {
                                *links.entry(e).or_default() += 1;
                            }
                            p += rl;
                        }
                    }
                }
            }
        }
    }
    for (ino, n) in &nlink {
        let seen = links.get(ino).copied().unwrap_or(0);
        if seen != *n {
            problems.push(format!(
                "inode {ino}: link count {n}, {seen} directory entries"
            ));
        }
    }
    for ino in links.keys() {
        if !nlink.contains_key(ino) {
            problems.push(format!("directory entry for unused inode {ino}"));
        }
    }
    // The maps and counts.
    let area = read(g.csaddr * g.fsize, g.cssize);
    let mut total = [0i64; 4];
    for c in 0..g.ncg {
        let cg = &cgs[c as usize];
        let free = &cg[le32(cg, 96) as usize..];
        let ndblk = u64::from(le32(cg, 20));
        let base = g.fpg * c;
        let (mut nbfree, mut nffree) = (0i64, 0i64);
        let mut frsum = [0i32; 8];
        for b in 0..ndblk.div_ceil(g.frag) {
            let mut nfree = 0;
            let mut run = 0usize;
            for k in b * g.frag..(b + 1) * g.frag {
                let is_free = k < ndblk && bit(free, k);
                let used = owner.contains_key(&(base + k));
                if k < ndblk && is_free == used {
                    problems.push(format!(
                        "fragment {} is {} in the map but {} by the inodes",
                        base + k,
                        if is_free { "free" } else { "used" },
                        if used { "used" } else { "unclaimed" }
                    ));
                }
                if is_free {
                    nfree += 1;
                    run += 1;
                } else if run > 0 {
                    frsum[run] += 1;
                    run = 0;
                }
            }
            if nfree == g.frag {
                nbfree += 1;
            } else {
                nffree += nfree as i64;
                if run > 0 {
                    frsum[run] += 1;
                }
            }
        }
        summary.frags_free += (nbfree as u64) * g.frag + nffree as u64;
        summary.blocks_free += nbfree as u64;
        let iused = &cg[le32(cg, 92) as usize..];
        let nifree = (0..g.ipg).filter(|&i| !bit(iused, i)).count() as i64;
        let want = [dirs_per_cg[c as usize], nbfree, nifree, nffree];
        let stored: [i64; 4] = [0, 1, 2, 3].map(|k| i64::from(le32(cg, 24 + 4 * k) as i32));
        let in_area: [i64; 4] =
            [0, 1, 2, 3].map(|k| i64::from(le32(&area, 16 * c as usize + 4 * k) as i32));
        if stored != want {
            problems.push(format!("group {c}: counts {stored:?}, recounted {want:?}"));
        }
        if in_area != want {
            problems.push(format!(
                "group {c}: summary area {in_area:?}, recounted {want:?}"
            ));
        }
        let stored_frsum: Vec<i32> = (0..8).map(|k| le32(cg, 52 + 4 * k) as i32).collect();
        if stored_frsum[1..g.frag as usize] != frsum[1..g.frag as usize] {
            problems.push(format!(
                "group {c}: frsum {stored_frsum:?}, recounted {frsum:?}"
            ));
        }
        for k in 0..4 {
            total[k] += want[k];
        }
    }
    if total != g.totals {
        problems.push(format!(
            "superblock totals {:?}, recounted {total:?}",
            g.totals
        ));
    }
    if problems.is_empty() {
        Ok(summary)
    } else {
        Err(problems.join("\n"))
    }
}

/// FreeBSD's metadata check-hash: CRC-32C from all ones, not inverted at the end
/// (`calculate_crc32c(~0, ...)`), with the 4 bytes of the stored hash at `hole` as zeros.
fn crc32c_unfinished(data: &[u8], hole: usize) -> u32 {
    let mut crc = !0u32;
    for (i, &b) in data.iter().enumerate() {
        let b = if i >= hole && i < hole + 4 { 0 } else { b };
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    crc
}

/// Every check-hash location of a UFS2 image: (byte offset of the hashed area, its
/// length, offset of the hash inside it).
fn hash_areas(f: &File, g: &Geometry, sbsize: u64) -> Vec<(u64, u64, usize)> {
    let mut out = vec![(g.loc, sbsize, 1304)];
    for c in 0..g.ncg {
        let cg = g.read_cg(f, 0, c);
        out.push(((g.cgstart(c) + g.cblkno) * g.fsize, g.cgsize, 132));
        let inited = u64::from(le32(&cg, 120));
        for i in 0..inited {
            let pos = g.inode_pos(c * g.ipg + i);
            let mut mode = [0u8; 2];
            f.read_exact_at(&mut mode, pos).unwrap();
            if mode != [0, 0] {
                out.push((pos, 256, 244));
            }
        }
    }
    out
}

fn sb_of(f: &File) -> (Vec<u8>, Geometry) {
    let mut sb = vec![0u8; 8192];
    for loc in [65536u64, 8192] {
        f.read_exact_at(&mut sb, loc).unwrap();
        if let Some(g) = Geometry::parse(&sb, loc) {
            assert!(g.ufs2, "check-hashes are UFS2 only");
            return (sb, g);
        }
    }
    panic!("no UFS superblock");
}

/// Turn on FreeBSD's metadata check-hashes (superblock, cylinder groups, inodes) in the
/// UFS2 image `img` (at offset 0) and compute them all, as a FreeBSD 12+ newfs leaves
/// a filesystem.
pub fn enable_check_hashes(img: &Path) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(img)
        .unwrap();
    let (mut sb, g) = sb_of(&f);
    assert!(sb[211] & 0x80 != 0, "fs_flags not in use");
    let flags = le32(&sb, 1312) | 0x200;
    sb[1312..1316].copy_from_slice(&flags.to_le_bytes());
    sb[1308..1312].copy_from_slice(&7u32.to_le_bytes());
    f.write_all_at(&sb, g.loc).unwrap();
    let sbsize = u64::from(le32(&sb, 104));
    for (pos, len, hole) in hash_areas(&f, &g, sbsize) {
        let mut b = vec![0u8; len as usize];
        f.read_exact_at(&mut b, pos).unwrap();
        let h = crc32c_unfinished(&b, hole);
        f.write_all_at(&h.to_le_bytes(), pos + hole as u64).unwrap();
    }
}

/// Every check-hash of the UFS2 image `img` (at offset 0) matches its data; `Err`
/// names the ones that do not.
pub fn verify_check_hashes(img: &Path) -> Result<(), String> {
    let f = File::open(img).unwrap();
    let (sb, g) = sb_of(&f);
    let sbsize = u64::from(le32(&sb, 104));
    let mut bad = Vec::new();
    for (pos, len, hole) in hash_areas(&f, &g, sbsize) {
        let mut b = vec![0u8; len as usize];
        f.read_exact_at(&mut b, pos).unwrap();
        if le32(&b, hole) != crc32c_unfinished(&b, hole) {
            bad.push(format!("check-hash at byte {pos} ({len} bytes) is stale"));
        }
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(bad.join("\n"))
    }
}
