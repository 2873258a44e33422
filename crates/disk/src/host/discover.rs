//! What the running system is made of: which disk holds `/`, which filesystems of that
//! disk are mounted under it, and which mounts are left out (virtual, network, FUSE,
//! other disks, second views of a filesystem already included).
//!
//! Everything is read from `/proc/self/mountinfo` and sysfs, whose roots are parameters
//! so that tests can describe any machine (NVMe, Xen, LVM ...) in a temporary directory.

use std::fs;
use std::path::{Path, PathBuf};

use super::HostError;

/// Where the kernel's views are: `/proc` and `/sys` on a real host.
#[derive(Debug, Clone)]
pub struct Roots {
    pub proc: PathBuf,
    pub sys: PathBuf,
    /// The directory taken as the host's `/`: only mounts at or below it count, and
    /// their mount points are named relative to it. `/` on a real host; another
    /// directory only in tests ([`ROOT_ENV`], or a mounted guest described directly).
    pub root: PathBuf,
}

/// A test hook, not a user feature: names a directory that discovery takes as `/`.
/// Tests run as root point it at a directory with nothing mounted on it, so that a run
/// reaching the bundle fails at once instead of bundling the real machine
/// (crates/disk/tests/snapshot.rs, the cli and TUI tests); scripts/bench-bundle.sh
/// points it at a mounted guest. The end-to-end test runs `snf-mkimage /` for real,
/// inside a mount namespace whose root is the guest
/// (crates/snf-mkimage/tests/host_bundle.rs).
pub const ROOT_ENV: &str = "SNF_HOST_ROOT";

impl Roots {
    /// The real host, or (in tests) the root named by [`ROOT_ENV`].
    pub fn from_env() -> Roots {
        let mut r = Roots::default();
        if let Some(root) = std::env::var_os(ROOT_ENV).filter(|v| !v.is_empty()) {
            r.root = PathBuf::from(root);
        }
        r
    }
}

impl Default for Roots {
    fn default() -> Self {
        Roots {
            proc: PathBuf::from("/proc"),
            sys: PathBuf::from("/sys"),
            root: PathBuf::from("/"),
        }
    }
}

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub major: u32,
    pub minor: u32,
    /// The directory of the filesystem that is mounted (not `/` for a bind mount).
    pub root: PathBuf,
    pub mount_point: PathBuf,
    pub fstype: String,
    /// The mount source (`/dev/sda2`, `tmpfs`, `server:/export` ...).
    pub source: String,
}

/// Parse mountinfo text; malformed lines are skipped (the kernel writes none).
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Mount> {
    let (left, right) = line.split_once(" - ")?;
    let mut l = left.split(' ');
    let _id = l.next()?;
    let _parent = l.next()?;
    let (major, minor) = l.next()?.split_once(':')?;
    let root = unescape(l.next()?);
    let mount_point = unescape(l.next()?);
    let mut r = right.split(' ');
    let fstype = r.next()?.to_string();
    let source = unescape(r.next()?);
    Some(Mount {
        major: major.parse().ok()?,
        minor: minor.parse().ok()?,
        root: PathBuf::from(root),
        mount_point: PathBuf::from(mount_point),
        fstype,
        source,
    })
}

/// mountinfo writes space, tab, newline and backslash as `\ooo` octal escapes.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        if let (b'\\', Some(d)) = (b[i], octal) {
            out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Local filesystems that live on a block device. Anything else (proc, sysfs, tmpfs,
/// overlay, nfs, cifs, fuse.*, ...) is not copied.
const BLOCK_FS: &[&str] = &[
    "ext2", "ext3", "ext4", "xfs", "btrfs", "reiserfs", "jfs", "f2fs", "vfat", "msdos", "exfat",
    "ntfs", "ntfs3", "minix", "hfsplus",
];

/// How a filesystem of the host disk gets into the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsCopy {
    /// Re-created at the size of its data (mke2fs with the host's UUID, label and
    /// features) and filled file by file.
    Files,
    /// Copied block by block (a small vfat ESP: this kernel may not mount vfat, and the
    /// firmware reads it block by block anyway).
    Raw,
}

/// A filesystem of the host disk that goes into the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFs {
    /// Where the host mounts it (`/boot`).
    pub mount_point: PathBuf,
    /// Where it is read from: `mount_point` under [`Roots::root`].
    pub path: PathBuf,
    pub fstype: String,
    /// The device node (`/dev/nvme0n1p2`).
    pub device: PathBuf,
    /// Its partition number on the host disk; `None` in the standard layout.
    pub partition: Option<u32>,
    pub copy: FsCopy,
}

/// The disk behind `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostDisk {
    /// Kernel name (`sda`, `nvme0n1`, `xvda`).
    pub name: String,
    /// Its device node.
    pub device: PathBuf,
    /// Logical sector size.
    pub sector_size: u32,
}

/// A mount point that is not copied (it stays an empty directory), and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Excluded {
    pub mount_point: PathBuf,
    pub reason: String,
}

/// What [`discover`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostLayout {
    /// The partitioned disk holding `/`; `None` when there is none (a whole-disk
    /// filesystem, an overlay, a container): the image then gets a standard layout.
    pub disk: Option<HostDisk>,
    /// `/` first, then the other filesystems of the same disk in mount point order.
    pub filesystems: Vec<HostFs>,
    pub excluded: Vec<Excluded>,
}

/// Where a block device sits: its whole disk and partition number.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BlockPlace {
    /// The device's own kernel name.
    name: String,
    /// The whole disk's kernel name and sysfs directory, and the partition number, when
    /// the device is a partition.
    disk: Option<(String, PathBuf, u32)>,
}

fn read_trim(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// Find the device `major:minor` (or, for filesystems such as btrfs that report an
/// anonymous device number, the source's device name) in sysfs.
fn locate(sys: &Path, m: &Mount) -> Option<(BlockPlace, PathBuf)> {
    let link = if m.major != 0 {
        sys.join("dev/block")
            .join(format!("{}:{}", m.major, m.minor))
    } else {
        let name = Path::new(&m.source).file_name()?;
        sys.join("class/block").join(name)
    };
    let dir = fs::canonicalize(link).ok()?;
    let name = dir.file_name()?.to_string_lossy().into_owned();
    let disk = match read_trim(&dir.join("partition")).and_then(|n| n.parse().ok()) {
        Some(number) => {
            let parent = dir.parent()?.to_path_buf();
            let disk_name = parent.file_name()?.to_string_lossy().into_owned();
            Some((disk_name, parent, number))
        }
        None => None,
    };
    Some((BlockPlace { name, disk }, dir))
}

/// `Some("LVM")`, `Some("device-mapper")` or `Some("md")` for a stacked device.
fn stacked_kind(dir: &Path, name: &str) -> Option<&'static str> {
    if dir.join("dm").is_dir() || name.starts_with("dm-") {
        let uuid = read_trim(&dir.join("dm/uuid")).unwrap_or_default();
        return Some(if uuid.starts_with("LVM-") {
            "LVM"
        } else {
            "device-mapper"
        });
    }
    if dir.join("md").is_dir() || name.starts_with("md") {
        return Some("md");
    }
    None
}

/// The mounts visible now: for a mount point mounted over several times, the last one.
fn visible(mounts: Vec<Mount>) -> Vec<Mount> {
    let mut out: Vec<Mount> = Vec::new();
    for m in mounts {
        // A mount over a directory hides every mount below it, too.
        out.retain(|o| !o.mount_point.starts_with(&m.mount_point));
        out.push(m);
    }
    out
}

/// Read the running system's layout from `roots`.
pub fn discover(roots: &Roots) -> Result<HostLayout, HostError> {
    let info_path = roots.proc.join("self/mountinfo");
    let text = fs::read_to_string(&info_path).map_err(|source| HostError::Read {
        path: info_path.clone(),
        source,
    })?;
    // Only what is at or below the root, named relative to it.
    let mounts: Vec<Mount> = visible(parse_mountinfo(&text))
        .into_iter()
        .filter_map(|mut m| {
            let rel = m.mount_point.strip_prefix(&roots.root).ok()?;
            m.mount_point = Path::new("/").join(rel);
            Some(m)
        })
        .collect();
    let root = mounts
        .iter()
        .find(|m| m.mount_point == Path::new("/"))
        .cloned()
        .ok_or_else(|| HostError::NoRootMount {
            root: roots.root.clone(),
            path: info_path,
        })?;

    let block_backed =
        |m: &Mount| BLOCK_FS.contains(&m.fstype.as_str()) && m.source.starts_with('/');
    let root_place = if block_backed(&root) && root.root == Path::new("/") {
        locate(&roots.sys, &root)
    } else {
        None
    };
    if let Some((place, dir)) = &root_place {
        let (name, dir) = match &place.disk {
            Some((disk, disk_dir, _)) => (disk.as_str(), disk_dir.as_path()),
            None => (place.name.as_str(), dir.as_path()),
        };
        if let Some(kind) = stacked_kind(dir, name) {
            return Err(HostError::Stacked {
                kind,
                device: root.source.clone(),
            });
        }
    }
    let disk = root_place.as_ref().and_then(|(place, _)| {
        place.disk.as_ref().map(|(name, dir, _)| HostDisk {
            name: name.clone(),
            device: Path::new("/dev").join(name),
            sector_size: read_trim(&dir.join("queue/logical_block_size"))
                .and_then(|s| s.parse().ok())
                .unwrap_or(512),
        })
    });

    let real = |mp: &Path| match mp.strip_prefix("/").unwrap_or(mp) {
        rel if rel.as_os_str().is_empty() => roots.root.clone(),
        rel => roots.root.join(rel),
    };
    let mut filesystems = Vec::new();
    let mut excluded = Vec::new();
    let mut seen_devices = Vec::new();
    let mut sorted = mounts.clone();
    // `/` first, then parents before children.
    sorted.sort_by(|a, b| a.mount_point.cmp(&b.mount_point));
    for m in &sorted {
        let exclude = |reason: String| Excluded {
            mount_point: m.mount_point.clone(),
            reason,
        };
        let is_root = m.mount_point == Path::new("/");
        // A root that is a directory of a disk filesystem (a container's bind mount)
        // has no partition of its own: like an overlay, it gets the standard layout.
        let subdir_root = is_root && m.root != Path::new("/");
        if !block_backed(m) || subdir_root {
            if is_root {
                // An overlay or a container's root: the standard layout, one filesystem.
                filesystems.push(HostFs {
                    path: real(&m.mount_point),
                    mount_point: m.mount_point.clone(),
                    fstype: m.fstype.clone(),
                    device: PathBuf::from(&m.source),
                    partition: None,
                    copy: FsCopy::Files,
                });
            } else {
                excluded.push(exclude(format!(
                    "{} is not a local disk filesystem",
                    m.fstype
                )));
            }
            continue;
        }
        let key = (m.major, m.minor, m.source.clone());
        if seen_devices.contains(&key) || m.root != Path::new("/") {
            excluded.push(exclude(format!(
                "another view (bind mount) of {}, copied once",
                m.source
            )));
            continue;
        }
        let place = locate(&roots.sys, m);
        let partition = match (&disk, place.as_ref().and_then(|(p, _)| p.disk.as_ref())) {
            (Some(d), Some((name, _, number))) if *name == d.name => Some(*number),
            _ if is_root => None,
            _ => {
                excluded.push(exclude(format!("{} is on another disk", m.source)));
                continue;
            }
        };
        let copy = match m.fstype.as_str() {
            "ext2" | "ext3" | "ext4" => FsCopy::Files,
            "vfat" | "msdos" if partition.is_some() => FsCopy::Raw,
            other => {
                return Err(HostError::UnsupportedFs {
                    fstype: other.to_string(),
                    device: m.source.clone(),
                })
            }
        };
        seen_devices.push(key);
        filesystems.push(HostFs {
            path: real(&m.mount_point),
            mount_point: m.mount_point.clone(),
            fstype: m.fstype.clone(),
            device: PathBuf::from(&m.source),
            partition,
            copy,
        });
    }
    Ok(HostLayout {
        disk,
        filesystems,
        excluded,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A fake machine: mountinfo lines and block devices `(name, major:minor, parent
    /// disk, partition)`.
    struct Machine {
        dir: tempfile::TempDir,
    }

    impl Machine {
        fn new(mountinfo: &str) -> Machine {
            let dir = tempfile::tempdir().unwrap();
            fs::create_dir_all(dir.path().join("proc/self")).unwrap();
            fs::write(dir.path().join("proc/self/mountinfo"), mountinfo).unwrap();
            for d in ["sys/dev/block", "sys/class/block", "sys/devices"] {
                fs::create_dir_all(dir.path().join(d)).unwrap();
            }
            Machine { dir }
        }

        fn disk(&self, name: &str, devno: &str, sector: u32) -> PathBuf {
            let d = self.dir.path().join("sys/devices/pci0/block").join(name);
            fs::create_dir_all(d.join("queue")).unwrap();
            fs::write(d.join("queue/logical_block_size"), format!("{sector}\n")).unwrap();
            self.link(name, devno, &d);
            d
        }

        fn part(&self, disk: &Path, name: &str, devno: &str, number: u32) {
            let d = disk.join(name);
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("partition"), format!("{number}\n")).unwrap();
            self.link(name, devno, &d);
        }

        fn link(&self, name: &str, devno: &str, target: &Path) {
            let sys = self.dir.path().join("sys");
            symlink(target, sys.join("dev/block").join(devno)).unwrap();
            symlink(target, sys.join("class/block").join(name)).unwrap();
        }

        fn roots(&self) -> Roots {
            Roots {
                proc: self.dir.path().join("proc"),
                sys: self.dir.path().join("sys"),
                root: PathBuf::from("/"),
            }
        }
    }

    fn line(id: u32, devno: &str, root: &str, mp: &str, fstype: &str, source: &str) -> String {
        format!("{id} 1 {devno} {root} {mp} rw,relatime shared:1 - {fstype} {source} rw\n")
    }

    fn common_virtual() -> String {
        [
            line(30, "0:22", "/", "/proc", "proc", "proc"),
            line(31, "0:23", "/", "/sys", "sysfs", "sysfs"),
            line(32, "0:5", "/", "/dev", "devtmpfs", "udev"),
            line(33, "0:25", "/", "/run", "tmpfs", "tmpfs"),
            line(34, "0:40", "/", "/home/u/net", "fuse.sshfs", "u@h:/x"),
            line(35, "0:41", "/", "/mnt/nfs", "nfs4", "server:/export"),
        ]
        .concat()
    }

    #[test]
    fn nvme_root_with_boot_and_esp_and_other_disk() {
        let info = [
            line(20, "259:2", "/", "/", "ext4", "/dev/nvme0n1p2"),
            common_virtual(),
            line(40, "259:3", "/", "/boot", "ext2", "/dev/nvme0n1p3"),
            line(41, "259:1", "/", "/boot/efi", "vfat", "/dev/nvme0n1p1"),
            line(42, "8:1", "/", "/data", "xfs", "/dev/sda1"),
            line(43, "259:2", "/srv", "/var/www", "ext4", "/dev/nvme0n1p2"),
        ]
        .concat();
        let m = Machine::new(&info);
        let nvme = m.disk("nvme0n1", "259:0", 4096);
        m.part(&nvme, "nvme0n1p1", "259:1", 1);
        m.part(&nvme, "nvme0n1p2", "259:2", 2);
        m.part(&nvme, "nvme0n1p3", "259:3", 3);
        let sda = m.disk("sda", "8:0", 512);
        m.part(&sda, "sda1", "8:1", 1);

        let l = discover(&m.roots()).unwrap();
        assert_eq!(
            l.disk,
            Some(HostDisk {
                name: "nvme0n1".into(),
                device: "/dev/nvme0n1".into(),
                sector_size: 4096
            })
        );
        let got: Vec<_> = l
            .filesystems
            .iter()
            .map(|f| (f.mount_point.to_str().unwrap(), f.partition, f.copy))
            .collect();
        assert_eq!(
            got,
            [
                ("/", Some(2), FsCopy::Files),
                ("/boot", Some(3), FsCopy::Files),
                ("/boot/efi", Some(1), FsCopy::Raw)
            ]
        );
        let ex: Vec<_> = l
            .excluded
            .iter()
            .map(|e| e.mount_point.to_str().unwrap())
            .collect();
        for p in [
            "/proc",
            "/sys",
            "/dev",
            "/run",
            "/home/u/net",
            "/mnt/nfs",
            "/data",
            "/var/www",
        ] {
            assert!(ex.contains(&p), "{p} not excluded: {ex:?}");
        }
    }

    #[test]
    fn sda_vda_xvda_mmc_and_loop_partitions() {
        for (disk, part) in [
            ("sda", "sda1"),
            ("vda", "vda1"),
            ("xvda", "xvda1"),
            ("mmcblk0", "mmcblk0p1"),
            ("loop0", "loop0p1"),
        ] {
            let m = Machine::new(&line(20, "8:1", "/", "/", "ext4", &format!("/dev/{part}")));
            let d = m.disk(disk, "8:0", 512);
            m.part(&d, part, "8:1", 1);
            let l = discover(&m.roots()).unwrap();
            assert_eq!(l.disk.unwrap().device, Path::new("/dev").join(disk));
            assert_eq!(l.filesystems[0].partition, Some(1));
        }
    }

    #[test]
    fn lvm_dm_and_md_roots_are_refused_clearly() {
        for (name, uuid, kind) in [
            ("dm-0", Some("LVM-abcdef"), "LVM"),
            ("dm-1", Some("CRYPT-LUKS2-xyz"), "device-mapper"),
            ("md0", None, "md"),
        ] {
            let m = Machine::new(&line(20, "253:0", "/", "/", "ext4", "/dev/mapper/vg-root"));
            let d = m.disk(name, "253:0", 512);
            if let Some(uuid) = uuid {
                fs::create_dir_all(d.join("dm")).unwrap();
                fs::write(d.join("dm/uuid"), uuid).unwrap();
            }
            let err = discover(&m.roots()).unwrap_err().to_string();
            assert!(
                err.contains(kind) && err.contains("/dev/mapper/vg-root"),
                "{err}"
            );
            assert!(err.contains("not supported for host bundling"), "{err}");
        }
    }

    #[test]
    fn whole_disk_and_overlay_roots_get_the_standard_layout() {
        let m = Machine::new(&line(20, "8:16", "/", "/", "ext3", "/dev/sdb"));
        m.disk("sdb", "8:16", 512);
        let l = discover(&m.roots()).unwrap();
        assert_eq!(l.disk, None);
        assert_eq!(l.filesystems.len(), 1);
        assert_eq!(l.filesystems[0].fstype, "ext3");

        let m = Machine::new(&line(20, "8:1", "/containers/c1", "/", "ext4", "/dev/sda1"));
        let d = m.disk("sda", "8:0", 512);
        m.part(&d, "sda1", "8:1", 1);
        let l = discover(&m.roots()).unwrap();
        assert_eq!(l.disk, None, "a container's bind-mounted root");
        assert_eq!(l.filesystems[0].fstype, "ext4");

        let m = Machine::new(&line(20, "0:50", "/", "/", "overlay", "overlay"));
        let l = discover(&m.roots()).unwrap();
        assert_eq!(l.disk, None);
        assert_eq!(l.filesystems[0].fstype, "overlay");
    }

    #[test]
    fn xfs_on_the_root_disk_is_named_as_unsupported() {
        let info = [
            line(20, "8:2", "/", "/", "ext4", "/dev/sda2"),
            line(21, "8:3", "/", "/var", "xfs", "/dev/sda3"),
        ]
        .concat();
        let m = Machine::new(&info);
        let d = m.disk("sda", "8:0", 512);
        m.part(&d, "sda2", "8:2", 2);
        m.part(&d, "sda3", "8:3", 3);
        let err = discover(&m.roots()).unwrap_err().to_string();
        assert_eq!(
            err,
            "host filesystem xfs on /dev/sda3 is not supported for bundling yet"
        );
    }

    #[test]
    fn a_root_directory_narrows_and_renames_the_mounts() {
        let info = [
            line(20, "8:1", "/", "/", "ext4", "/dev/sda1"),
            line(21, "7:1", "/", "/mnt/guest", "ext4", "/dev/loop0p2"),
            line(22, "7:2", "/", "/mnt/guest/boot", "ext2", "/dev/loop0p1"),
            line(23, "0:30", "/", "/mnt/guest/run", "tmpfs", "tmpfs"),
        ]
        .concat();
        let m = Machine::new(&info);
        let sda = m.disk("sda", "8:0", 512);
        m.part(&sda, "sda1", "8:1", 1);
        let lo = m.disk("loop0", "7:0", 512);
        m.part(&lo, "loop0p1", "7:2", 1);
        m.part(&lo, "loop0p2", "7:1", 2);
        let roots = Roots {
            root: PathBuf::from("/mnt/guest"),
            ..m.roots()
        };
        let l = discover(&roots).unwrap();
        assert_eq!(l.disk.unwrap().name, "loop0");
        let got: Vec<_> = l
            .filesystems
            .iter()
            .map(|f| {
                (
                    f.mount_point.to_str().unwrap(),
                    f.path.to_str().unwrap(),
                    f.partition,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("/", "/mnt/guest", Some(2)),
                ("/boot", "/mnt/guest/boot", Some(1))
            ]
        );
        assert_eq!(l.excluded.len(), 1);
        assert_eq!(l.excluded[0].mount_point, Path::new("/run"));
    }

    #[test]
    fn mountinfo_escapes_and_overmounts() {
        let info = [
            line(20, "8:1", "/", "/", "ext4", "/dev/sda1"),
            line(21, "0:30", "/", "/mnt/a\\040b", "tmpfs", "tmpfs"),
            line(22, "0:31", "/", "/mnt", "tmpfs", "tmpfs"),
        ]
        .concat();
        let mounts = parse_mountinfo(&info);
        assert_eq!(mounts[1].mount_point, Path::new("/mnt/a b"));
        let v = visible(mounts);
        assert_eq!(v.len(), 2, "{v:?}");
    }
}
