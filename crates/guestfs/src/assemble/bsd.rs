//! The names the BSDs give their filesystems in `/etc/fstab`.
//!
//! * FreeBSD: `/dev/ada0p2` (and `da`, `vtbd`, `nvd`, `nda` ...: GPT partition 2),
//!   `/dev/ada0s1a` (slice `a` of the disklabel in MBR partition 1), `/dev/ada0s1`,
//!   `/dev/gpt/NAME` (GPT partition name), `/dev/gptid/GUID` (GPT unique partition
//!   GUID), `/dev/ufsid/HEX` and `/dev/ufs/LABEL` (the UFS id and volume label),
//!   `/dev/label/NAME` (a GEOM label, `glabel(8)`, in the volume's last sector).
//! * NetBSD and OpenBSD: `/dev/wd0a`, `/dev/sd0a`, `/dev/ld0a` (slice `a` of the
//!   disklabel), NetBSD's `NAME=wedge` (a GPT partition name) and OpenBSD's DUIDs
//!   `3eb7f9da875cb9ee.a` (the disklabel's UID and a slice letter).

use super::{ProbedPartition, SourceMatch};
use crate::probe::FsType;

/// Disk drivers of FreeBSD, NetBSD and OpenBSD whose names fstab uses.
const DRIVERS: &[&str] = &[
    "ada", "ad", "da", "vtbd", "nvd", "nda", "mmcsd", "wd", "sd", "ld", "xbd", "vnd",
];

/// The first disk of every driver: what "this disk" means when the root's own fstab
/// entry does not say.
pub(super) fn default_disks() -> impl Iterator<Item = String> {
    DRIVERS.iter().map(|d| format!("/dev/{d}0"))
}

/// Where a BSD device name points on its disk.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    /// A partition of the partition table (`/dev/ada0p2`, `/dev/ada0s1`).
    Partition(u32),
    /// A disklabel slice, in the given MBR partition if named (`/dev/ada0s1a`).
    Slice(Option<u32>, char),
}

/// `/dev/ada0p2` → (`/dev/ada0`, partition 2); `None` for names of other forms.
fn parse_device(spec: &str) -> Option<(String, Target)> {
    let rest = spec.strip_prefix("/dev/")?;
    let drv_len = rest.find(|c: char| !c.is_ascii_lowercase())?;
    let (drv, rest) = rest.split_at(drv_len);
    if !DRIVERS.contains(&drv) {
        return None;
    }
    let unit_len = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    if unit_len == 0 {
        return None;
    }
    let (unit, rest) = rest.split_at(unit_len);
    let disk = format!("/dev/{drv}{unit}");
    let number = |s: &str| s.parse::<u32>().ok().filter(|n| *n > 0);
    let letter = |s: &str| {
        let mut c = s.chars();
        match (c.next(), c.next()) {
            (Some(l @ 'a'..='p'), None) => Some(l),
            _ => None,
        }
    };
    let target = if let Some(n) = rest.strip_prefix('p') {
        Target::Partition(number(n)?)
    } else if let Some(s) = rest.strip_prefix('s') {
        let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (n, l) = s.split_at(digits);
        let n = number(n)?;
        if l.is_empty() {
            Target::Partition(n)
        } else {
            Target::Slice(Some(n), letter(l)?)
        }
    } else {
        Target::Slice(None, letter(rest)?)
    };
    Some((disk, target))
}

/// The disk a BSD device name is on (`/dev/ada0` for `/dev/ada0p2`).
pub(super) fn disk_of(spec: &str) -> Option<String> {
    parse_device(spec).map(|(disk, _)| disk)
}

/// Map `spec` when it is one of the BSD forms; `None` otherwise.
pub(super) fn match_name(
    spec: &str,
    parts: &[ProbedPartition],
    disks: &[String],
) -> Option<SourceMatch> {
    let found = |hit: Option<usize>, what: String| {
        Some(match hit {
            Some(i) => SourceMatch::Partition(i),
            None => SourceMatch::NotFound(what),
        })
    };
    let is_ufs = |p: &ProbedPartition| matches!(p.probe.fs_type, FsType::Ufs1 | FsType::Ufs2);
    if let Some(name) = spec.strip_prefix("/dev/gpt/") {
        let hit = parts
            .iter()
            .position(|p| p.desc.gpt_name.as_deref() == Some(name));
        return found(hit, format!("no GPT partition is named {name}"));
    }
    if let Some(name) = spec.strip_prefix("NAME=") {
        let name = super::unquote(name);
        let hit = parts
            .iter()
            .position(|p| p.desc.gpt_name.as_deref() == Some(name));
        return found(hit, format!("no GPT partition (wedge) is named {name}"));
    }
    if let Some(guid) = spec.strip_prefix("/dev/gptid/") {
        let hit = parts.iter().position(|p| {
            p.desc.lv.is_none()
                && p.desc
                    .gpt_guid
                    .as_deref()
                    .is_some_and(|g| g.eq_ignore_ascii_case(guid))
        });
        return found(hit, format!("no GPT partition has the GUID {guid}"));
    }
    if let Some(id) = spec.strip_prefix("/dev/ufsid/") {
        let hit = parts.iter().position(|p| {
            is_ufs(p)
                && p.probe
                    .uuid
                    .as_deref()
                    .is_some_and(|u| u.eq_ignore_ascii_case(id))
        });
        return found(hit, format!("no UFS filesystem has the id {id}"));
    }
    if let Some(label) = spec.strip_prefix("/dev/ufs/") {
        let hit = parts
            .iter()
            .position(|p| is_ufs(p) && p.probe.label.as_deref() == Some(label));
        return found(hit, format!("no UFS filesystem has the label {label}"));
    }
    if let Some(name) = spec.strip_prefix("/dev/label/") {
        let hit = parts
            .iter()
            .position(|p| p.desc.geom_label.as_deref() == Some(name));
        return found(hit, format!("no volume has the GEOM label {name}"));
    }
    if spec.starts_with("/dev/diskid/") {
        return Some(SourceMatch::NotFound(format!(
            "{spec} names a whole disk by its serial number, which an image does not keep"
        )));
    }
    if let Some((duid, letter)) = spec.split_once('.') {
        let is_duid = duid.len() == 16 && duid.bytes().all(|b| b.is_ascii_hexdigit());
        let letter = match letter.as_bytes() {
            [l @ b'a'..=b'p'] => Some(char::from(*l)),
            _ => None,
        };
        if let (true, Some(letter)) = (is_duid, letter) {
            let hit = parts.iter().position(|p| {
                p.desc.bsd.as_ref().is_some_and(|b| {
                    b.letter == letter
                        && b.duid
                            .as_deref()
                            .is_some_and(|d| d.eq_ignore_ascii_case(duid))
                })
            });
            return found(
                hit,
                format!("no disklabel with the DUID {duid} has a slice {letter}"),
            );
        }
    }
    let (disk, target) = parse_device(spec)?;
    if !disks.contains(&disk) {
        return Some(SourceMatch::NotFound(format!("{spec} is on another disk")));
    }
    match target {
        Target::Partition(n) => found(
            parts
                .iter()
                .position(|p| p.desc.lv.is_none() && p.desc.bsd.is_none() && p.desc.number == n),
            format!("the disk has no partition {n}"),
        ),
        Target::Slice(parent, letter) => found(
            parts.iter().position(|p| {
                p.desc
                    .bsd
                    .as_ref()
                    .is_some_and(|b| b.letter == letter && parent.is_none_or(|n| b.parent == n))
            }),
            match parent {
                Some(n) => format!("partition {n} has no disklabel slice {letter}"),
                None => format!("the disk has no disklabel slice {letter}"),
            },
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assemble::{BsdSliceDesc, PartitionDesc};
    use crate::probe::Probe;

    fn part(number: u32, desc: PartitionDesc, probe: Probe) -> ProbedPartition {
        ProbedPartition {
            desc: PartitionDesc { number, ..desc },
            probe,
        }
    }

    fn ufs(uuid: &str, label: Option<&str>) -> Probe {
        Probe {
            fs_type: FsType::Ufs2,
            uuid: Some(uuid.into()),
            label: label.map(String::from),
        }
    }

    fn slice(parent: u32, letter: char, duid: Option<&str>) -> PartitionDesc {
        PartitionDesc {
            bsd: Some(BsdSliceDesc {
                parent,
                letter,
                duid: duid.map(String::from),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn names_map_to_their_volume() {
        let gpt = PartitionDesc {
            geom_label: Some("root".into()),
            gpt_name: Some("rootfs".into()),
            gpt_guid: Some("0A1B2C3D-AAAA-4BBB-8CCC-000000000002".into()),
            ..Default::default()
        };
        let parts = [
            part(1, PartitionDesc::default(), Probe::new(FsType::Vfat)),
            part(2, gpt, ufs("5f1e0a3b00c0ffee", Some("root"))),
            part(5, slice(3, 'a', Some("3eb7f9da875cb9ee")), ufs("1", None)),
            part(6, slice(3, 'e', Some("3eb7f9da875cb9ee")), ufs("2", None)),
        ];
        let disks: Vec<String> = default_disks().collect();
        let m = |spec: &str| match match_name(spec, &parts, &disks) {
            Some(SourceMatch::Partition(i)) => Some(parts[i].desc.number),
            _ => None,
        };
        assert_eq!(m("/dev/ada0p1"), Some(1));
        assert_eq!(m("/dev/vtbd0p2"), Some(2));
        assert_eq!(m("/dev/gpt/rootfs"), Some(2));
        assert_eq!(
            m("/dev/gptid/0a1b2c3d-aaaa-4bbb-8ccc-000000000002"),
            Some(2)
        );
        assert_eq!(m("/dev/ufsid/5F1E0A3B00C0FFEE"), Some(2));
        assert_eq!(m("/dev/ufs/root"), Some(2));
        assert_eq!(m("/dev/label/root"), Some(2));
        assert_eq!(m("NAME=rootfs"), Some(2));
        assert_eq!(m("/dev/wd0a"), Some(5));
        assert_eq!(m("/dev/sd0e"), Some(6));
        assert_eq!(m("/dev/ada0s3e"), Some(6));
        assert_eq!(m("3eb7f9da875cb9ee.e"), Some(6));
        for missing in [
            "/dev/wd1a",
            "/dev/wd0d",
            "/dev/ada0s1a",
            "/dev/gpt/swap",
            "/dev/label/home",
            "0000000000000000.a",
        ] {
            assert!(
                matches!(
                    match_name(missing, &parts, &disks),
                    Some(SourceMatch::NotFound(_))
                ),
                "{missing}"
            );
        }
        assert_eq!(match_name("/dev/sda1", &parts, &disks), None);
        assert_eq!(match_name("UUID=x", &parts, &disks), None);
    }

    #[test]
    fn device_names_of_the_three_bsds() {
        let p = |s| parse_device(s);
        assert_eq!(
            p("/dev/ada0p2"),
            Some(("/dev/ada0".into(), Target::Partition(2)))
        );
        assert_eq!(
            p("/dev/vtbd1p10"),
            Some(("/dev/vtbd1".into(), Target::Partition(10)))
        );
        assert_eq!(
            p("/dev/ada0s1a"),
            Some(("/dev/ada0".into(), Target::Slice(Some(1), 'a')))
        );
        assert_eq!(
            p("/dev/da0s2"),
            Some(("/dev/da0".into(), Target::Partition(2)))
        );
        assert_eq!(
            p("/dev/wd0a"),
            Some(("/dev/wd0".into(), Target::Slice(None, 'a')))
        );
        assert_eq!(
            p("/dev/sd1e"),
            Some(("/dev/sd1".into(), Target::Slice(None, 'e')))
        );
        for bad in [
            "/dev/sda1",
            "/dev/wd0",
            "/dev/wd0q",
            "/dev/ada0p0",
            "/dev/ada0s1ab",
            "/dev/vda2",
            "wd0a",
        ] {
            assert_eq!(p(bad), None, "{bad}");
        }
    }
}
