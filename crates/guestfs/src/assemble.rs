//! Assembling the guest: find the root filesystem among the partitions, read its
//! `/etc/fstab`, and mount `/boot`, `/boot/efi`, `/home`, `/var` ... from their own
//! partitions into one [`GuestFs`].
//!
//! Media the tool cannot handle are not errors here: they come back as
//! [`Assembly::unsupported`], one sentence saying why, so that the caller can still dump
//! the whole disk when the user allows unsupported media. Errors are kept for failures
//! to read the image itself.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use snf_core::Reporter;

use crate::appliance::{ApplianceFs, Hold};
use crate::backend::{Filesystem, FsKind};
use crate::error::{Error, Result};
use crate::ext::ExtFs;
use crate::fat::FatFs;
use crate::ntfs::NtfsFs;
use crate::probe::{probe_file, FsType, Probe};
use crate::tree::GuestFs;
use crate::ufs::UfsFs;

mod bsd;

/// One volume of the disk (a partition, or an LVM logical volume), as assembly needs
/// it. The caller builds these from its partition table model (data partitions only: no
/// MBR extended container) and its LVM scan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionDesc {
    /// The partition number (1-based, as in `/dev/sda<N>`; logical MBR partitions from 5).
    /// For a logical volume: the partition holding its first extent.
    pub number: u32,
    /// Byte offset of the volume in the image.
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
    /// Set when this is an LVM logical volume rather than a partition.
    pub lv: Option<LvDesc>,
    /// A logical volume whose data is not contiguous in the image: its pieces, in the
    /// volume's order (`offset` is then the first one's, `size` their sum). Empty for
    /// one contiguous range. Only an [`Opener`] that gathers the pieces can open it.
    pub pieces: Vec<std::ops::Range<u64>>,
    /// Why this volume cannot be read at all (an LV of an unsupported type ...): it is
    /// not probed, and the sentence is given when no root is found.
    pub unusable: Option<String>,
    /// GPT: the unique partition GUID (any case, with dashes).
    pub gpt_guid: Option<String>,
    /// GPT: the partition name.
    pub gpt_name: Option<String>,
    /// MBR: the 32-bit disk signature at byte 440.
    pub mbr_signature: Option<u32>,
    /// btrfs: the subvolume to mount (`subvol=` of `/etc/fstab`), `None` for the
    /// filesystem's default one.
    pub subvol: Option<String>,
    /// Set when this is a slice of a BSD disklabel (`number` is then the one Linux
    /// gives it).
    pub bsd: Option<BsdSliceDesc>,
    /// FreeBSD's GEOM label in the volume's last sector (`/dev/label/NAME`).
    pub geom_label: Option<String>,
}

/// What names a slice of a BSD disklabel in a BSD's configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BsdSliceDesc {
    /// The MBR partition holding the disklabel.
    pub parent: u32,
    /// The slice's letter (`a` the root, `b` swap ...).
    pub letter: char,
    /// OpenBSD's disklabel UID (16 hex digits), as fstab names it in `DUID.a`.
    pub duid: Option<String>,
}

/// What names an LVM logical volume in a guest's configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LvDesc {
    /// The volume group's name.
    pub vg: String,
    /// The logical volume's name.
    pub name: String,
    /// The name under `/dev/mapper/` (dashes in either name doubled).
    pub mapper_name: String,
    /// The device-mapper UUID: `LVM-` and the VG and LV UUIDs without dashes.
    pub dm_uuid: String,
}

impl LvDesc {
    /// `vg/lv`, as LVM's tools and the `ROOT_LV` property name it.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.vg, self.name)
    }
}

impl PartitionDesc {
    /// How messages name the volume: `partition N`, `partition N slice a` or `LV vg/lv`.
    pub fn name(&self) -> String {
        match (&self.lv, &self.bsd) {
            (Some(lv), _) => format!("LV {}", lv.full_name()),
            (None, Some(b)) => format!("partition {} slice {}", b.parent, b.letter),
            (None, None) => format!("partition {}", self.number),
        }
    }

    /// The `PARTUUID=` value Linux gives this partition: the GPT unique GUID in lower
    /// case, or for MBR `<disk signature as 8 hex digits>-<number as 2 hex digits>`.
    /// Logical volumes have none.
    pub fn partuuid(&self) -> Option<String> {
        if self.lv.is_some() {
            return None;
        }
        if let Some(g) = &self.gpt_guid {
            return Some(g.to_ascii_lowercase());
        }
        self.mbr_signature
            .map(|sig| format!("{sig:08x}-{:02x}", self.number))
    }
}

/// A partition and what the probe found on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbedPartition {
    pub desc: PartitionDesc,
    pub probe: Probe,
}

/// One filesystem mounted into the guest tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssembledMount {
    /// The guest path it is mounted at.
    pub mountpoint: PathBuf,
    /// The partition number it lives on (for a logical volume: the partition of its
    /// first extent).
    pub partition: u32,
    /// For a logical volume: `vg/lv`.
    pub lv: Option<String>,
    pub fs_type: FsType,
    /// Its filesystem UUID, as `UUID=` would name it.
    pub uuid: Option<String>,
    /// The `/etc/fstab` source text that named it (`None` for the root found by probing).
    pub fstab_spec: Option<String>,
}

/// The outcome of [`assemble`].
pub struct Assembly {
    /// Every partition with what is on it, in the order given.
    pub partitions: Vec<ProbedPartition>,
    /// The partition number of the root filesystem, when exactly one was found (for a
    /// root on a logical volume: the partition of the volume's first extent).
    pub root: Option<u32>,
    /// The root's logical volume (`vg/lv`), when the root is on one.
    pub root_lv: Option<String>,
    /// The guest tree; `None` when no single root was found.
    pub guest: Option<GuestFs>,
    /// What is mounted where, root first.
    pub mounts: Vec<AssembledMount>,
    /// The entries of the root's `/etc/fstab`.
    pub fstab: Vec<FstabEntry>,
    /// Why the media cannot be prepared, as one sentence; `None` when it can.
    pub unsupported: Option<String>,
}

/// Opens a partition's filesystem. [`Backends`] is the real one; tests may substitute.
pub trait Opener {
    /// Open the filesystem `probe` found on `part` of `image`.
    fn open(
        &self,
        image: &Path,
        part: &PartitionDesc,
        probe: &Probe,
        writable: bool,
    ) -> Result<Box<dyn Filesystem>>;
}

/// The backends of this crate: ext2/3/4 through libext2fs, FAT through `fatfs`, UFS
/// in-process ([`crate::ufs`]), NTFS through libntfs-3g, xfs and btrfs through the
/// libguestfs appliance.
#[derive(Debug, Default, Clone, Copy)]
pub struct Backends;

impl Opener for Backends {
    fn open(
        &self,
        image: &Path,
        part: &PartitionDesc,
        probe: &Probe,
        writable: bool,
    ) -> Result<Box<dyn Filesystem>> {
        if !part.pieces.is_empty() {
            return Err(Error::Unsupported {
                path: PathBuf::from(part.name()),
                what: format!(
                    "a volume in {} separate pieces (they must be gathered first)",
                    part.pieces.len()
                ),
            });
        }
        match probe.fs_type {
            FsType::Vfat => Ok(Box::new(FatFs::open(
                image,
                part.offset,
                part.size,
                writable,
            )?)),
            t if t.is_ext() => open_ext(image, part, writable),
            FsType::Ufs1 | FsType::Ufs2 => {
                match UfsFs::open(image, part.offset, part.size, writable) {
                    Ok(fs) => Ok(Box::new(fs)),
                    // The partition, not the working copy's file name, is what the user
                    // knows.
                    Err(e @ (Error::UnsupportedFeatures { .. } | Error::Corrupt { .. })) => {
                        Err(e.at(part.name()))
                    }
                    Err(e) => Err(e),
                }
            }
            FsType::Ntfs => match NtfsFs::open(image, part.offset, part.size, writable) {
                Ok(fs) => Ok(Box::new(fs)),
                // A hibernated or unclean volume: name the partition the user knows.
                Err(e @ Error::UnsupportedFeatures { .. }) => Err(e.at(part.name())),
                Err(e) => Err(e),
            },
            FsType::Xfs | FsType::Btrfs => {
                let kind = if probe.fs_type == FsType::Xfs {
                    FsKind::Xfs
                } else {
                    FsKind::Btrfs
                };
                let options = part
                    .subvol
                    .as_ref()
                    .map(|s| format!("subvol={s}"))
                    .unwrap_or_default();
                // The appliance activates the volume groups itself at launch.
                let lv = part
                    .lv
                    .as_ref()
                    .map(|lv| (lv.vg.as_str(), lv.name.as_str()));
                Ok(Box::new(ApplianceFs::open_volume(
                    image,
                    part.offset,
                    part.size,
                    lv,
                    kind,
                    &options,
                    writable,
                )?))
            }
            t => Err(Error::Unsupported {
                path: PathBuf::from(part.name()),
                what: format!(
                    "{} ({})",
                    t.name(),
                    t.why_unchangeable().unwrap_or("no backend")
                ),
            }),
        }
    }
}

fn open_ext(image: &Path, part: &PartitionDesc, writable: bool) -> Result<Box<dyn Filesystem>> {
    match ExtFs::open(image, part.offset, writable) {
        Ok(fs) => Ok(Box::new(fs)),
        // The partition, not the working copy's file name, is what the user knows.
        Err(e @ Error::UnsupportedFeatures { .. }) => Err(e.at(part.name())),
        Err(e) => Err(e),
    }
}

/// Mount points whose filesystem must be present for the guest to make sense: failing to
/// open one makes the media unsupported, failing any other is a warning.
pub const CRITICAL_MOUNTPOINTS: &[&str] = &["/", "/etc", "/root", "/home", "/var", "/usr"];

/// Files whose presence marks a filesystem as an operating system's root.
const ROOT_MARKERS: &[&str] = &[
    "etc/os-release",
    "usr/lib/os-release",
    "etc/lsb-release",
    "etc/debian_version",
    "etc/redhat-release",
    "etc/centos-release",
    "etc/fedora-release",
    "etc/oracle-release",
    "etc/SuSE-release",
    "etc/SUSE-brand",
    "etc/arch-release",
    "etc/gentoo-release",
    "etc/slackware-version",
    "etc/alpine-release",
    "etc/mageia-release",
    "etc/mandriva-release",
    "etc/altlinux-release",
    "etc/frugalware-release",
    "etc/pardus-release",
    "etc/meego-release",
    "etc/ttylinux-target",
    "etc/freebsd-update.conf",
    "bin/freebsd-version",
    "netbsd",
    "bsd",
    "hurd/console",
];

/// Whether the tree looks like the root of an installed operating system: a Unix root
/// (`/etc/fstab` or a release file under `/etc`) or a Windows system volume.
pub fn looks_like_root(g: &mut GuestFs) -> bool {
    if g.is_dir(Path::new("/etc"))
        && (g.is_file(Path::new("/etc/fstab"))
            || ROOT_MARKERS.iter().any(|m| g.is_file(Path::new(m))))
    {
        return true;
    }
    find_nocase(g, &["Windows", "System32", "config", "SOFTWARE"]).is_some()
}

/// Find `components` below the root, matching each name without regard to case (as
/// Windows does); returns the real guest path.
pub fn find_nocase(g: &mut GuestFs, components: &[&str]) -> Option<PathBuf> {
    let mut path = PathBuf::from("/");
    for c in components {
        let entries = g.read_dir(&path).ok()?;
        let (name, _) = entries
            .into_iter()
            .find(|(n, _)| n.to_string_lossy().eq_ignore_ascii_case(c))?;
        path.push(name);
    }
    g.exists(&path).then_some(path)
}

/// One line of `/etc/fstab`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FstabEntry {
    /// The source (`UUID=...`, `/dev/sda1` ...), octal escapes decoded.
    pub spec: String,
    /// The mount point, octal escapes decoded (`none` for swap).
    pub mountpoint: String,
    pub vfstype: String,
    pub options: String,
}

fn unescape_fstab(field: &str) -> String {
    // fstab writes space, tab, newline and backslash as \040, \011, \012, \134.
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            let oct = &b[i + 1..i + 4];
            if oct.iter().all(|c| (b'0'..=b'7').contains(c)) {
                let v = u32::from(oct[0] - b'0') * 64
                    + u32::from(oct[1] - b'0') * 8
                    + u32::from(oct[2] - b'0');
                if let Ok(byte) = u8::try_from(v) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parse `/etc/fstab` text: comments and blank lines skipped, fields decoded. Lines with
/// fewer than two fields are skipped; the type defaults to `auto`.
pub fn parse_fstab(text: &str) -> Vec<FstabEntry> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                return None;
            }
            let mut f = line.split_whitespace();
            let spec = unescape_fstab(f.next()?);
            let mountpoint = unescape_fstab(f.next()?);
            let vfstype = f.next().unwrap_or("auto").to_string();
            let options = f.next().unwrap_or("defaults").to_string();
            Some(FstabEntry {
                spec,
                mountpoint,
                vfstype,
                options,
            })
        })
        .collect()
}

/// Whether an fstab entry names a block-device filesystem that belongs in the tree
/// (swap, pseudo and network filesystems, and bind mounts do not).
fn is_disk_mount(e: &FstabEntry) -> bool {
    const NOT_ON_DISK: &[&str] = &[
        "swap",
        "none",
        "proc",
        "sysfs",
        "tmpfs",
        "devtmpfs",
        "devpts",
        "ramfs",
        "cgroup",
        "cgroup2",
        "securityfs",
        "debugfs",
        "tracefs",
        "configfs",
        "hugetlbfs",
        "mqueue",
        "pstore",
        "efivarfs",
        "bpf",
        "binfmt_misc",
        "fusectl",
        "autofs",
        "nfs",
        "nfs4",
        "cifs",
        "smbfs",
        "sshfs",
        "9p",
        "virtiofs",
        "overlay",
        "squashfs",
        "usbfs",
        "rpc_pipefs",
        "nfsd",
        // The BSDs' memory and kernel filesystems.
        "mfs",
        "procfs",
        "linprocfs",
        "linsysfs",
        "fdescfs",
        "devfs",
        "kernfs",
        "ptyfs",
        "nullfs",
        "null",
    ];
    if !e.mountpoint.starts_with('/') {
        return false;
    }
    let t = e.vfstype.as_str();
    if NOT_ON_DISK.contains(&t) || t.starts_with("fuse") {
        return false;
    }
    if e.options.split(',').any(|o| o == "bind" || o == "rbind") {
        return false;
    }
    !matches!(
        e.spec.as_str(),
        "none" | "proc" | "tmpfs" | "sysfs" | "devpts"
    )
}

/// The device-name base of a `/dev/...` partition name and its partition number:
/// `/dev/sda3` → (`/dev/sda`, 3), `/dev/nvme0n1p2` → (`/dev/nvme0n1p`, 2).
fn device_name(spec: &str) -> Option<(String, u32)> {
    let rest = spec.strip_prefix("/dev/")?;
    let digits_at = rest.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (base, num) = rest.split_at(digits_at);
    let num: u32 = num.parse().ok()?;
    let ok = if let Some(disk) = base
        .strip_prefix("xvd")
        .or_else(|| base.strip_prefix("sd"))
        .or_else(|| base.strip_prefix("hd"))
        .or_else(|| base.strip_prefix("vd"))
    {
        !disk.is_empty() && disk.chars().all(|c| c.is_ascii_lowercase())
    } else if let Some(p) = base.strip_prefix("nvme") {
        // nvme<ctrl>n<ns>p
        p.strip_suffix('p')
            .and_then(|p| p.split_once('n'))
            .is_some_and(|(c, n)| {
                !c.is_empty()
                    && !n.is_empty()
                    && c.chars().all(|x| x.is_ascii_digit())
                    && n.chars().all(|x| x.is_ascii_digit())
            })
    } else if let Some(p) = base.strip_prefix("mmcblk") {
        p.strip_suffix('p')
            .is_some_and(|d| !d.is_empty() && d.chars().all(|x| x.is_ascii_digit()))
    } else {
        false
    };
    ok.then(|| (format!("/dev/{base}"), num))
}

/// Decode udev's `\xNN` escapes in `/dev/disk/by-*` names.
fn unescape_udev(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && b.get(i + 1) == Some(&b'x') {
            if let Some(h) = s.get(i + 2..i + 4) {
                if let Ok(v) = u8::from_str_radix(h, 16) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn unquote(s: &str) -> &str {
    let s = s.trim();
    s.strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .or_else(|| s.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')))
        .unwrap_or(s)
}

/// How an fstab source maps onto the disk's partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceMatch {
    /// The index (into the partition list) of the partition it names.
    Partition(usize),
    /// It names something that is not a partition of this disk; the text says what.
    NotFound(String),
}

/// Map an fstab source to a partition. `disk_bases` are the `/dev/...` bases taken to
/// mean this disk (see [`disk_bases_for`]).
pub fn match_source(spec: &str, parts: &[ProbedPartition], disk_bases: &[String]) -> SourceMatch {
    let by = |what: &str, value: &str, f: &dyn Fn(&ProbedPartition) -> bool| match parts
        .iter()
        .position(f)
    {
        Some(i) => SourceMatch::Partition(i),
        None => SourceMatch::NotFound(format!("no partition has {what} {value}")),
    };
    let (kind, value) = if let Some(v) = spec.strip_prefix("UUID=") {
        ("UUID", unquote(v).to_string())
    } else if let Some(v) = spec.strip_prefix("LABEL=") {
        ("LABEL", unquote(v).to_string())
    } else if let Some(v) = spec.strip_prefix("PARTUUID=") {
        ("PARTUUID", unquote(v).to_string())
    } else if let Some(v) = spec.strip_prefix("PARTLABEL=") {
        ("PARTLABEL", unquote(v).to_string())
    } else if let Some(v) = spec.strip_prefix("/dev/disk/by-uuid/") {
        ("UUID", unescape_udev(v))
    } else if let Some(v) = spec.strip_prefix("/dev/disk/by-label/") {
        ("LABEL", unescape_udev(v))
    } else if let Some(v) = spec.strip_prefix("/dev/disk/by-partuuid/") {
        ("PARTUUID", unescape_udev(v))
    } else if let Some(v) = spec.strip_prefix("/dev/disk/by-partlabel/") {
        ("PARTLABEL", unescape_udev(v))
    } else if let Some(found) = match_lv_name(spec, parts) {
        return found;
    } else if let Some(found) = bsd::match_name(spec, parts, disk_bases) {
        return found;
    } else if let Some((base, num)) = device_name(spec) {
        if !disk_bases.contains(&base) {
            return SourceMatch::NotFound(format!("{spec} is on another disk"));
        }
        return match parts
            .iter()
            .position(|p| p.desc.lv.is_none() && p.desc.number == num)
        {
            Some(i) => SourceMatch::Partition(i),
            None => SourceMatch::NotFound(format!("the disk has no partition {num}")),
        };
    } else {
        return SourceMatch::NotFound(format!("{spec} cannot be mapped to a partition"));
    };
    match kind {
        "UUID" => by("UUID", &value, &|p| {
            p.probe
                .uuid
                .as_deref()
                .is_some_and(|u| u.eq_ignore_ascii_case(&value))
        }),
        "LABEL" => {
            let exact = parts
                .iter()
                .position(|p| p.probe.label.as_deref() == Some(value.as_str()));
            match exact {
                Some(i) => SourceMatch::Partition(i),
                // FAT labels are upper-cased by the tools that write them.
                None => by("LABEL", &value, &|p| {
                    p.probe.fs_type == FsType::Vfat
                        && p.probe
                            .label
                            .as_deref()
                            .is_some_and(|l| l.eq_ignore_ascii_case(&value))
                }),
            }
        }
        "PARTUUID" => by("PARTUUID", &value, &|p| {
            p.desc
                .partuuid()
                .is_some_and(|u| u.eq_ignore_ascii_case(&value))
        }),
        _ => by("PARTLABEL", &value, &|p| {
            p.desc.gpt_name.as_deref() == Some(value.as_str())
        }),
    }
}

/// Map the names device-mapper and udev give a logical volume: `/dev/mapper/VG-LV`,
/// `/dev/VG/LV`, `/dev/disk/by-id/dm-name-VG-LV` and `/dev/disk/by-id/dm-uuid-LVM-...`.
/// `None` when `spec` is none of these forms.
fn match_lv_name(spec: &str, parts: &[ProbedPartition]) -> Option<SourceMatch> {
    let lvs = || {
        parts
            .iter()
            .enumerate()
            .filter_map(|(i, p)| Some((i, p.desc.lv.as_ref()?)))
    };
    let found = |hit: Option<usize>, what: &str| {
        Some(match hit {
            Some(i) => SourceMatch::Partition(i),
            None => SourceMatch::NotFound(format!("no logical volume is {what}")),
        })
    };
    if let Some(name) = spec
        .strip_prefix("/dev/mapper/")
        .or_else(|| spec.strip_prefix("/dev/disk/by-id/dm-name-"))
    {
        let name = unescape_udev(name);
        return found(
            lvs().find(|(_, lv)| lv.mapper_name == name).map(|(i, _)| i),
            &format!("/dev/mapper/{name}"),
        );
    }
    if let Some(uuid) = spec.strip_prefix("/dev/disk/by-id/dm-uuid-") {
        return found(
            lvs().find(|(_, lv)| lv.dm_uuid == uuid).map(|(i, _)| i),
            &format!("device-mapper UUID {uuid}"),
        );
    }
    // `/dev/VG/LV`: two components, where the first is a volume group of this disk
    // (`/dev/disk/...`, `/dev/md/...` and the like are not).
    let rest = spec.strip_prefix("/dev/")?;
    let (vg, lv) = rest.split_once('/')?;
    if lv.contains('/') || !lvs().any(|(_, d)| d.vg == vg) {
        return None;
    }
    found(
        lvs()
            .find(|(_, d)| d.vg == vg && d.name == lv)
            .map(|(i, _)| i),
        &format!("{vg}/{lv}"),
    )
}

/// The `/dev/...` bases that mean "this disk" in the root's fstab: the base of the
/// root's own entry when it is a device name, else the first disk of every naming scheme.
pub fn disk_bases_for(fstab: &[FstabEntry]) -> Vec<String> {
    let root = fstab.iter().find(|e| e.mountpoint == "/");
    if let Some(base) = root.and_then(|e| {
        device_name(&e.spec)
            .map(|(base, _)| base)
            .or_else(|| bsd::disk_of(&e.spec))
    }) {
        return vec![base];
    }
    [
        "/dev/sda",
        "/dev/hda",
        "/dev/vda",
        "/dev/xvda",
        "/dev/nvme0n1p",
        "/dev/mmcblk0p",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(bsd::default_disks())
    .collect()
}

fn part_text(p: &ProbedPartition) -> String {
    format!("{} ({})", p.desc.name(), p.probe.fs_type.name())
}

/// Probe every partition, find the root, read its fstab and mount everything into one
/// guest tree, with the real backends.
pub fn assemble(
    image: &Path,
    partitions: &[PartitionDesc],
    writable: bool,
    reporter: &dyn Reporter,
) -> Result<Assembly> {
    assemble_with(image, partitions, writable, &Backends, reporter)
}

/// [`assemble`] with the filesystems opened by `opener`.
pub fn assemble_with(
    image: &Path,
    partitions: &[PartitionDesc],
    writable: bool,
    opener: &dyn Opener,
    reporter: &dyn Reporter,
) -> Result<Assembly> {
    // One appliance for the whole assembly (and the guest it returns), launched only if
    // a filesystem needs it.
    let _hold = Hold::new(image);
    let mut parts = Vec::with_capacity(partitions.len());
    for d in partitions {
        snf_core::cancel::check()?;
        if let Some(why) = &d.unusable {
            reporter.warn(&format!("{}: {why}", d.name()));
            parts.push(ProbedPartition {
                desc: d.clone(),
                probe: Probe::new(FsType::Unknown),
            });
            continue;
        }
        let probe = probe_file(image, d.offset, d.size).map_err(|e| Error::Io {
            path: image.to_path_buf(),
            source: e,
        })?;
        let name = d.name();
        reporter.detail(&format!(
            "{}{}: {}{}{}",
            name[..1].to_ascii_uppercase(),
            &name[1..],
            probe.fs_type.name(),
            probe
                .uuid
                .as_ref()
                .map(|u| format!(", UUID={u}"))
                .unwrap_or_default(),
            probe
                .label
                .as_ref()
                .map(|l| format!(", LABEL={l}"))
                .unwrap_or_default()
        ));
        parts.push(ProbedPartition {
            desc: d.clone(),
            probe,
        });
    }

    let mut out = Assembly {
        partitions: parts,
        root: None,
        guest: None,
        mounts: Vec::new(),
        fstab: Vec::new(),
        unsupported: None,
        root_lv: None,
    };

    // Find the roots among the filesystems a backend can open.
    let mut roots = Vec::new();
    // Filesystems refused for features the library lacks: named if no root is found.
    let mut refused = Vec::new();
    for (i, p) in out.partitions.iter().enumerate() {
        snf_core::cancel::check()?;
        if !p.probe.fs_type.has_backend() {
            continue;
        }
        match opener.open(image, &p.desc, &p.probe, false) {
            Ok(fs) => {
                let mut g = GuestFs::new(fs, p.desc.name());
                if looks_like_root(&mut g) {
                    roots.push((i, p.desc.subvol.clone()));
                } else if p.probe.fs_type == FsType::Btrfs {
                    if let Some(sv) = btrfs_root_subvolume(&mut g) {
                        roots.push((i, Some(sv)));
                    }
                }
            }
            Err(e) => {
                reporter.warn(&format!("Unable to open {}: {e}", part_text(p)));
                if matches!(e, Error::UnsupportedFeatures { .. }) {
                    refused.push(e.to_string());
                }
            }
        }
    }

    match roots.len() {
        0 => {
            // PVs are read through their logical volumes, which are listed themselves.
            let unreadable: Vec<String> = out
                .partitions
                .iter()
                .filter_map(|p| match &p.desc.unusable {
                    Some(why) => Some(format!("{} ({why})", p.desc.name())),
                    None => (!p.probe.fs_type.has_backend()
                        && !matches!(
                            p.probe.fs_type,
                            FsType::Swap | FsType::Unknown | FsType::LvmPv
                        ))
                    .then(|| part_text(p)),
                })
                .collect();
            out.unsupported = Some(if !refused.is_empty() {
                format!(
                    "Unable to detect any operating system on the media: {}.",
                    refused.join("; ")
                )
            } else if unreadable.is_empty() {
                "Unable to detect any operating system on the media.".to_string()
            } else {
                format!(
                    "Unable to detect any operating system on the media: {} cannot be read.",
                    unreadable.join(", ")
                )
            });
            return Ok(out);
        }
        1 => {}
        _ => {
            out.unsupported = Some("Multiple operating systems found on the media.".into());
            return Ok(out);
        }
    }

    let (root_idx, root_subvol) = roots[0].clone();
    if root_subvol.is_some() {
        out.partitions[root_idx].desc.subvol = root_subvol.clone();
    }
    let root = out.partitions[root_idx].clone();
    out.root = Some(root.desc.number);
    out.root_lv = root.desc.lv.as_ref().map(LvDesc::full_name);

    let root_fs = opener.open(image, &root.desc, &root.probe, writable)?;
    if writable && !root_fs.is_writable() {
        out.unsupported.get_or_insert_with(|| {
            format!(
                "The root filesystem ({}) cannot be written.",
                part_text(&root)
            )
        });
    }
    let mut guest = GuestFs::new(root_fs, root.desc.name());
    out.mounts.push(AssembledMount {
        mountpoint: PathBuf::from("/"),
        partition: root.desc.number,
        lv: out.root_lv.clone(),
        fs_type: root.probe.fs_type,
        uuid: root.probe.uuid.clone(),
        fstab_spec: None,
    });

    let fstab_text = if guest.is_file(Path::new("/etc/fstab")) {
        guest.read_to_string(Path::new("/etc/fstab"))?
    } else {
        String::new()
    };
    out.fstab = parse_fstab(&fstab_text);
    let bases = disk_bases_for(&out.fstab);

    let mut entries: Vec<FstabEntry> = out
        .fstab
        .iter()
        .filter(|e| is_disk_mount(e) && normalize_mountpoint(&e.mountpoint) != "/")
        .cloned()
        .collect();
    // Shorter mount points first, so /boot is there before /boot/efi.
    entries.sort_by_key(|e| e.mountpoint.len());

    // Volumes already in the tree, by index (an LV shares its partition number).
    // (and a btrfs subvolume shares its partition).
    let mut used: HashSet<(usize, Option<String>)> = HashSet::from([(root_idx, root_subvol)]);
    for e in entries {
        snf_core::cancel::check()?;
        let mp = normalize_mountpoint(&e.mountpoint);
        let critical = CRITICAL_MOUNTPOINTS.contains(&mp.as_str());
        let fail = |out: &mut Assembly, why: String| {
            if critical {
                out.unsupported
                    .get_or_insert_with(|| format!("Unable to mount {mp} from {}: {why}.", e.spec));
            } else {
                reporter.warn(&format!(
                    "Unable to mount {mp} from {}: {why} (ignored)",
                    e.spec
                ));
            }
        };
        let idx = match match_source(&e.spec, &out.partitions, &bases) {
            SourceMatch::Partition(i) => i,
            SourceMatch::NotFound(why) => {
                fail(&mut out, why);
                continue;
            }
        };
        let mut p = out.partitions[idx].clone();
        if p.probe.fs_type == FsType::Btrfs {
            p.desc.subvol = fstab_subvol(&e.options);
        }
        let key = (idx, p.desc.subvol.clone());
        if used.contains(&key) {
            reporter.warn(&format!(
                "Not mounting {} at {mp} again: it is already mounted",
                part_text(&p)
            ));
            continue;
        }
        if let Some(why) = p.probe.fs_type.why_unchangeable() {
            fail(
                &mut out,
                format!("{} holds {}, and {why}", p_name(&p), p.probe.fs_type.name()),
            );
            continue;
        }
        let fs = match opener.open(image, &p.desc, &p.probe, writable) {
            Ok(fs) => fs,
            Err(err) => {
                fail(&mut out, err.to_string());
                continue;
            }
        };
        if let Err(err) = guest.mount(Path::new(&mp), fs, p.desc.name()) {
            fail(&mut out, err.to_string());
            continue;
        }
        used.insert(key);
        out.mounts.push(AssembledMount {
            mountpoint: PathBuf::from(&mp),
            partition: p.desc.number,
            lv: p.desc.lv.as_ref().map(LvDesc::full_name),
            fs_type: p.probe.fs_type,
            uuid: p.probe.uuid.clone(),
            fstab_spec: Some(e.spec.clone()),
        });
    }

    out.guest = Some(guest);
    Ok(out)
}

/// The subvolume a `subvol=` mount option names, without a leading `/`.
fn fstab_subvol(options: &str) -> Option<String> {
    options
        .split(',')
        .find_map(|o| o.strip_prefix("subvol="))
        .map(|v| v.trim_start_matches('/').to_string())
        .filter(|v| !v.is_empty())
}

/// For a btrfs filesystem whose top level is not a root (Fedora installs the root in a
/// subvolume `root`, others in `@`): the one top-level subvolume (seen as a directory)
/// holding a Unix root, preferring the one its own `/etc/fstab` mounts at `/`.
fn btrfs_root_subvolume(g: &mut GuestFs) -> Option<String> {
    let entries = g.read_dir(Path::new("/")).ok()?;
    let mut candidates = Vec::new();
    for (name, _) in entries {
        let Some(name) = name.to_str().map(String::from) else {
            continue;
        };
        let fstab = PathBuf::from(format!("/{name}/etc/fstab"));
        if g.is_file(&fstab) {
            candidates.push((name, fstab));
        }
    }
    if candidates.len() > 1 {
        for (name, fstab) in &candidates {
            let text = g.read_to_string(fstab).unwrap_or_default();
            let names_itself = parse_fstab(&text).iter().any(|e| {
                normalize_mountpoint(&e.mountpoint) == "/"
                    && fstab_subvol(&e.options).as_deref() == Some(name.as_str())
            });
            if names_itself {
                return Some(name.clone());
            }
        }
        return None;
    }
    candidates.pop().map(|(name, _)| name)
}

fn p_name(p: &ProbedPartition) -> String {
    p.desc.name()
}

/// `/boot/` → `/boot`, `//var` → `/var`.
fn normalize_mountpoint(mp: &str) -> String {
    let parts: Vec<&str> = mp
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(number: u32, uuid: &str, label: Option<&str>, t: FsType) -> ProbedPartition {
        ProbedPartition {
            desc: PartitionDesc {
                number,
                offset: 0,
                size: 0,
                gpt_guid: Some(format!("0000000{number}-AAAA-BBBB-CCCC-DDDDDDDDDDDD")),
                gpt_name: Some(format!("part{number}")),
                mbr_signature: None,
                ..Default::default()
            },
            probe: Probe {
                fs_type: t,
                uuid: Some(uuid.into()),
                label: label.map(String::from),
            },
        }
    }

    #[test]
    fn subvol_option_is_found_without_its_slash() {
        assert_eq!(
            fstab_subvol("subvol=root,compress=zstd:1").as_deref(),
            Some("root")
        );
        assert_eq!(
            fstab_subvol("noatime,subvol=/@home").as_deref(),
            Some("@home")
        );
        assert_eq!(fstab_subvol("subvolid=256"), None);
        assert_eq!(fstab_subvol("subvol=/"), None);
        assert_eq!(fstab_subvol("defaults"), None);
    }

    #[test]
    fn fstab_is_parsed_with_escapes_and_defaults() {
        let e = parse_fstab(
            "# comment\n\nUUID=abc / ext4 errors=remount-ro 0 1\n\
             /dev/sda3\t/mnt/my\\040disk vfat\n  LABEL=x /x\nbroken\n",
        );
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].spec, "UUID=abc");
        assert_eq!(e[0].options, "errors=remount-ro");
        assert_eq!(e[1].mountpoint, "/mnt/my disk");
        assert_eq!(e[2].vfstype, "auto");
    }

    #[test]
    fn every_source_form_maps_to_its_partition() {
        let parts = vec![
            part(1, "1111-2222", Some("EFI"), FsType::Vfat),
            part(
                2,
                "aaaaaaaa-0000-0000-0000-000000000002",
                Some("root"),
                FsType::Ext4,
            ),
            part(
                3,
                "aaaaaaaa-0000-0000-0000-000000000003",
                Some("my home"),
                FsType::Ext4,
            ),
        ];
        let bases = disk_bases_for(&[]);
        let cases = [
            ("UUID=1111-2222", 0),
            ("UUID=\"AAAAAAAA-0000-0000-0000-000000000003\"", 2),
            ("LABEL=root", 1),
            ("LABEL=efi", 0),
            ("PARTUUID=00000002-aaaa-bbbb-cccc-dddddddddddd", 1),
            ("PARTLABEL=part3", 2),
            ("/dev/disk/by-uuid/1111-2222", 0),
            ("/dev/disk/by-label/my\\x20home", 2),
            (
                "/dev/disk/by-partuuid/00000003-AAAA-BBBB-CCCC-DDDDDDDDDDDD",
                2,
            ),
            ("/dev/disk/by-partlabel/part1", 0),
            ("/dev/sda1", 0),
            ("/dev/vda2", 1),
            ("/dev/hda3", 2),
            ("/dev/xvda3", 2),
            ("/dev/nvme0n1p2", 1),
            ("/dev/mmcblk0p1", 0),
        ];
        for (spec, want) in cases {
            assert_eq!(
                match_source(spec, &parts, &bases),
                SourceMatch::Partition(want),
                "{spec}"
            );
        }
        for spec in [
            "/dev/sdb1",
            "/dev/sda9",
            "/dev/mapper/vg-root",
            "UUID=nope",
            "/dev/disk/by-id/x",
        ] {
            assert!(
                matches!(match_source(spec, &parts, &bases), SourceMatch::NotFound(_)),
                "{spec}"
            );
        }
    }

    fn lv(number: u32, vg: &str, name: &str, mapper: &str) -> ProbedPartition {
        let mut p = part(number, &format!("uuid-{name}"), None, FsType::Ext4);
        p.desc.gpt_guid = None;
        p.desc.gpt_name = None;
        p.desc.lv = Some(LvDesc {
            vg: vg.into(),
            name: name.into(),
            mapper_name: mapper.into(),
            dm_uuid: format!("LVM-vguuid{name}"),
        });
        p
    }

    #[test]
    fn logical_volume_names_map_to_their_volume_and_never_to_the_pv_number() {
        let parts = vec![
            part(1, "boot", None, FsType::Ext4),
            part(2, "pv", None, FsType::LvmPv),
            lv(2, "my-vg", "root", "my--vg-root"),
            lv(2, "my-vg", "var", "my--vg-var"),
        ];
        let bases = disk_bases_for(&[]);
        let cases = [
            ("/dev/mapper/my--vg-root", 2),
            ("/dev/mapper/my--vg-var", 3),
            ("/dev/my-vg/var", 3),
            ("/dev/disk/by-id/dm-name-my--vg-root", 2),
            ("/dev/disk/by-id/dm-uuid-LVM-vguuidvar", 3),
            ("UUID=uuid-var", 3),
            // The PV's partition number names the PV, not an LV on it.
            ("/dev/sda2", 1),
        ];
        for (spec, want) in cases {
            assert_eq!(
                match_source(spec, &parts, &bases),
                SourceMatch::Partition(want),
                "{spec}"
            );
        }
        for spec in [
            "/dev/mapper/my--vg-home",
            "/dev/my-vg/home",
            "/dev/mapper/cryptroot",
        ] {
            assert!(
                matches!(match_source(spec, &parts, &bases), SourceMatch::NotFound(_)),
                "{spec}"
            );
        }
        assert_eq!(parts[2].desc.name(), "LV my-vg/root");
        assert_eq!(parts[2].desc.partuuid(), None);
    }

    #[test]
    fn root_device_name_decides_which_disk_is_ours() {
        let fstab = parse_fstab("/dev/vdb1 / ext4 defaults 0 1\n");
        let bases = disk_bases_for(&fstab);
        assert_eq!(bases, vec!["/dev/vdb".to_string()]);
        let parts = vec![
            part(1, "x", None, FsType::Ext4),
            part(2, "y", None, FsType::Ext4),
        ];
        assert_eq!(
            match_source("/dev/vdb2", &parts, &bases),
            SourceMatch::Partition(1)
        );
        assert!(matches!(
            match_source("/dev/vda2", &parts, &bases),
            SourceMatch::NotFound(_)
        ));
    }

    #[test]
    fn mbr_partuuid_is_signature_and_number() {
        let d = PartitionDesc {
            number: 5,
            mbr_signature: Some(0x00AB_CDEF),
            ..Default::default()
        };
        assert_eq!(d.partuuid().as_deref(), Some("00abcdef-05"));
    }

    #[test]
    fn pseudo_swap_and_bind_entries_are_not_disk_mounts() {
        let e = parse_fstab(
            "proc /proc proc defaults 0 0\nUUID=s none swap sw 0 0\n\
             tmpfs /tmp tmpfs defaults 0 0\n/srv /var/srv none bind 0 0\n\
             UUID=b /boot ext4 defaults 0 2\nserver:/x /mnt nfs defaults 0 0\n",
        );
        let disk: Vec<_> = e
            .iter()
            .filter(|e| is_disk_mount(e))
            .map(|e| e.mountpoint.as_str())
            .collect();
        assert_eq!(disk, vec!["/boot"]);
    }
}
