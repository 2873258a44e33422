//! Fixtures for the inspection tests: guest trees written as files in a tempdir, made
//! into real filesystems (mke2fs -d, mkfs.fat + mcopy, mkswap, mkfs.xfs) inside a real
//! partitioned image (sfdisk), and read back through the real backends.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use image_creator::inspect::{inspect, Inspection};
use image_creator::metadata::Metadata;
use snf_guestfs::assemble::PartitionDesc;
use snf_testkit::fixture::{
    copy_into, host_path, mkswap_at, run, sfdisk, sparse_file, write_at, write_file, write_symlink,
    Mke2fs, MIB,
};

/// A guest tree being written on the host.
pub struct Tree {
    pub root: PathBuf,
}

impl Tree {
    pub fn new(base: &Path, name: &str) -> Tree {
        let root = base.join(name);
        fs::create_dir_all(&root).unwrap();
        Tree { root }
    }

    fn host(&self, path: &str) -> PathBuf {
        host_path(&self.root, path)
    }

    pub fn file(&self, path: &str, content: &str) -> &Self {
        write_file(&self.root, path, content);
        self
    }

    pub fn exe(&self, path: &str) -> &Self {
        self.file(path, "#!/bin/sh\n");
        self.mode(path, 0o755)
    }

    pub fn mode(&self, path: &str, mode: u32) -> &Self {
        fs::set_permissions(self.host(path), fs::Permissions::from_mode(mode)).unwrap();
        self
    }

    pub fn dir(&self, path: &str) -> &Self {
        fs::create_dir_all(self.host(path)).unwrap();
        self
    }

    pub fn link(&self, path: &str, target: &str) -> &Self {
        write_symlink(&self.root, path, target);
        self
    }

    /// A minimal Linux root: shadow with root and a user, fstab for `/`.
    pub fn linux_base(&self, fstab: &str) -> &Self {
        self.file("/etc/fstab", fstab)
            .file(
                "/etc/shadow",
                "root:$6$salt$hash:19000:0:99999:7:::\n\
                 daemon:*:19000:0:99999:7:::\n\
                 user:$6$salt2$hash2:19000:0:99999:7:::\n\
                 locked:!$6$x$y:19000:0:99999:7:::\n",
            )
            .mode("/etc/shadow", 0o640)
            .dir("/boot")
            .dir("/home")
            .dir("/var")
            .dir("/tmp")
    }

    /// sshd enabled the systemd way: a symlink in multi-user.target.wants.
    pub fn systemd_sshd(&self) -> &Self {
        self.file(
            "/lib/systemd/system/ssh.service",
            "[Service]\nExecStart=/usr/sbin/sshd -D $SSHD_OPTS\n",
        )
        .link(
            "/etc/systemd/system/multi-user.target.wants/ssh.service",
            "/lib/systemd/system/ssh.service",
        )
    }
}

/// What goes into one partition of a test disk.
pub enum Content<'a> {
    Ext4 {
        tree: &'a Tree,
        uuid: &'a str,
        label: Option<&'a str>,
    },
    Fat {
        tree: Option<&'a Tree>,
        id: &'a str,
        label: &'a str,
    },
    Swap {
        uuid: &'a str,
    },
    Xfs,
    /// A UFS made by makefs from the tree (FreeBSD's partition types on GPT).
    Ufs {
        tree: &'a Tree,
        layout: snf_testkit::ufs::Layout,
    },
    /// FreeBSD swap: the BSDs write no signature in it.
    FreebsdSwap,
    /// FreeBSD's gptboot partition.
    FreebsdBoot,
    LvmLabel,
    Empty,
}

pub struct Part<'a> {
    pub size_mib: u64,
    pub name: &'a str,
    pub content: Content<'a>,
}

/// Make a disk image with `parts` (GPT when `gpt`, else MBR), 1 MiB aligned.
pub fn make_disk(dir: &Path, gpt: bool, parts: &[Part<'_>]) -> PathBuf {
    let total: u64 = parts.iter().map(|p| p.size_mib).sum::<u64>() + 2;
    let mut script = String::from(if gpt {
        "label: gpt\n"
    } else {
        "label: dos\nlabel-id: 0x1234abcd\n"
    });
    let mut start = MIB;
    let mut starts = Vec::new();
    for (idx, p) in parts.iter().enumerate() {
        let t = match (&p.content, gpt) {
            (Content::Fat { .. }, true) => "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
            (Content::Fat { .. }, false) => "ef",
            (Content::Swap { .. }, true) => "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F",
            (Content::Swap { .. }, false) => "82",
            (Content::LvmLabel, true) => "E6D6D379-F507-44C2-A23C-238F2A3DF928",
            (Content::LvmLabel, false) => "8e",
            (Content::Ufs { .. }, true) => "516E7CB6-6ECF-11D6-8FF8-00022D09712B",
            (Content::FreebsdSwap, true) => "516E7CB5-6ECF-11D6-8FF8-00022D09712B",
            (Content::FreebsdBoot, true) => "83BD6B9D-7F41-11DC-BE0B-001560B84F0F",
            (Content::Ufs { .. } | Content::FreebsdSwap | Content::FreebsdBoot, false) => "a5",
            (_, true) => "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
            (_, false) => "83",
        };
        let name = if gpt {
            format!(", name=\"{}\", uuid={}", p.name, part_guid(idx as u32 + 1))
        } else {
            String::new()
        };
        script.push_str(&format!(
            "start={}, size={}, type={t}{name}\n",
            start / 512,
            p.size_mib * MIB / 512
        ));
        starts.push(start);
        start += p.size_mib * MIB;
    }
    let img = dir.join("disk.img");
    sparse_file(&img, total * MIB);
    sfdisk(&img, &script);
    let img = img.as_path();

    // sfdisk leaves out an MBR partition past the fourth; its content is still written
    // where it would have been.

    for (p, &off) in parts.iter().zip(&starts) {
        let size = p.size_mib * MIB;
        match &p.content {
            Content::Ext4 { tree, uuid, label } => {
                let mut mkfs = Mke2fs::ext4().uuid(uuid).tree(&tree.root);
                if let Some(l) = label {
                    mkfs = mkfs.label(l);
                }
                mkfs.make(img, off, &format!("{}k", size / 1024));
            }
            Content::Fat { tree, id, label } => {
                run(Command::new("mkfs.fat")
                    .args(["-F", "16", "-i", id, "-n", label, "--offset"])
                    .arg((off / 512).to_string())
                    .arg(img)
                    .arg((size / 1024).to_string()));
                if let Some(t) = tree {
                    let entries: Vec<PathBuf> = fs::read_dir(&t.root)
                        .unwrap()
                        .map(|e| e.unwrap().path())
                        .collect();
                    if !entries.is_empty() {
                        run(Command::new("mcopy")
                            .args(["-s", "-i", &format!("{}@@{off}", img.display())])
                            .args(&entries)
                            .arg("::/")
                            .env("MTOOLS_SKIP_CHECK", "1"));
                    }
                }
            }
            Content::Swap { uuid } => {
                mkswap_at(img, off, size, Some(uuid));
            }
            Content::Xfs => {
                let f = dir.join("xfs.tmp");
                sparse_file(&f, size);
                run(Command::new("mkfs.xfs").args(["-q", "-f"]).arg(&f));
                copy_into(&f, img, off);
                fs::remove_file(f).unwrap();
            }
            Content::Ufs { tree, layout } => {
                let f = dir.join("ufs.tmp");
                snf_testkit::ufs::make_image(&f, &tree.root, *layout, p.size_mib);
                copy_into(&f, img, off);
                fs::remove_file(f).unwrap();
            }
            Content::LvmLabel => {
                // The LVM2 label as pvcreate writes it in sector 1 (no loop device needed).
                let mut s = vec![0u8; 512];
                s[..8].copy_from_slice(b"LABELONE");
                s[8..16].copy_from_slice(&1u64.to_le_bytes());
                s[20..24].copy_from_slice(&32u32.to_le_bytes());
                s[24..32].copy_from_slice(b"LVM2 001");
                s[32..64].copy_from_slice(b"Ab12Cd34Ef56Gh78Ij90Kl12Mn34Op56");
                write_at(img, off + 512, &s);
            }
            Content::Empty | Content::FreebsdSwap | Content::FreebsdBoot => {}
        }
    }
    img.to_path_buf()
}

/// The unique GUID `make_disk` gives GPT partition `n`.
pub fn part_guid(n: u32) -> String {
    format!("{n:08X}-AAAA-4BBB-8CCC-0000000000{n:02X}")
}

/// The volumes of `img` (partitions and LVM logical volumes) as the session would pass
/// them, read by snf-disk.
pub fn partitions(img: &Path) -> (Vec<PartitionDesc>, String) {
    let layout = snf_disk::partition::Layout::read_file(img, 512).expect("partition table");
    (
        image_creator::volumes::list(img, &layout, &snf_core::report::Quiet).descs,
        layout.kind().as_str().to_string(),
    )
}

/// Inspect `img` read-only through the real backends.
pub fn inspect_disk(img: &Path) -> Inspection {
    let (parts, table) = partitions(img);
    inspect(img, &parts, &table, false, &snf_core::report::Quiet).expect("inspection")
}

/// Assert that the metadata is exactly `want` (every key, nothing more).
pub fn assert_meta(meta: &Metadata, want: &[(&str, &str)]) {
    let got: BTreeMap<String, String> = meta
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let want: BTreeMap<String, String> = want
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(got, want);
}

/// A single-partition disk holding `tree` as ext4, inspected.
pub fn single(dir: &Path, tree: &Tree) -> Inspection {
    let img = make_disk(
        dir,
        false,
        &[Part {
            size_mib: 24,
            name: "root",
            content: Content::Ext4 {
                tree,
                uuid: "11111111-2222-3333-4444-555555555555",
                label: None,
            },
        }],
    );
    inspect_disk(&img)
}

/// The fstab line for the single-partition disk.
pub const ROOT_FSTAB: &str =
    "UUID=11111111-2222-3333-4444-555555555555 / ext4 errors=remount-ro 0 1\n";

/// The keys every Linux guest with the base tree and no GUI gets from `single`.
pub fn base_keys() -> Vec<(&'static str, &'static str)> {
    vec![
        ("BOOTSTRAP", "none"),
        ("GUI", "No GUI"),
        ("OSFAMILY", "linux"),
        ("PARTITION_TABLE", "msdos"),
        ("PASSWD_HASHING_METHOD", "sha512"),
        ("ROOT_PARTITION", "1"),
        ("USERS", "root user"),
    ]
}

/// `base_keys` plus `extra` (replacing keys of the same name).
pub fn keys(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut m: BTreeMap<&str, &str> = base_keys().into_iter().collect();
    for (k, v) in extra {
        m.insert(k, v);
    }
    m.into_iter().collect()
}
