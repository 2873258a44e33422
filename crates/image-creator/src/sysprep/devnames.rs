//! Block device names in guest boot and mount configuration: which ones depend on the
//! disk bus (`/dev/vda1` exists only while the disk is virtio-blk; the same disk is
//! `/dev/sda1` on virtio-scsi or SATA and `/dev/nvme0n1p1` on NVMe), and what persistent
//! name (`UUID=`) replaces them, for `use-persistent-block-device-names`.

use snf_guestfs::assemble::ProbedPartition;

/// Whether `dev` is a kernel name that can change between machines: `/dev/hdX`,
/// `/dev/sdX`, `/dev/vdX` (a letter after the prefix, as the original matched) and
/// `/dev/nvmeNnM[pK]`. `/dev/xvd*` counts as persistent, as in the original.
pub fn is_non_persistent(dev: &str) -> bool {
    let b = dev.as_bytes();
    let classic = dev.starts_with("/dev/")
        && b.len() >= 8
        && matches!(b[5], b'h' | b's' | b'v')
        && b[6] == b'd'
        && b[7].is_ascii_lowercase();
    classic || nvme_partition(dev).is_some()
}

/// `/dev/nvmeNnM` (`Some(None)`) or `/dev/nvmeNnMpK` (`Some(Some(K))`).
fn nvme_partition(dev: &str) -> Option<Option<u32>> {
    let rest = dev.strip_prefix("/dev/nvme")?;
    let (ctrl, rest) = split_digits(rest)?;
    let _ = ctrl;
    let rest = rest.strip_prefix('n')?;
    let (_ns, rest) = split_digits(rest)?;
    if rest.is_empty() {
        return Some(None);
    }
    let (part, rest) = split_digits(rest.strip_prefix('p')?)?;
    rest.is_empty().then_some(Some(part))
}

/// A leading run of ASCII digits as a number (bounded: a guest file may hold anything)
/// and the rest.
fn split_digits(s: &str) -> Option<(u32, &str)> {
    let n = s.bytes().take_while(u8::is_ascii_digit).count();
    if n == 0 || n > 6 {
        return None;
    }
    Some((s[..n].parse().ok()?, &s[n..]))
}

/// The partition number a non-persistent name gives for the first disk (`/dev/sda2`,
/// `/dev/vda2`, `/dev/hda2`, `/dev/nvme0n1p2` -> 2). Other disks (`/dev/sdb1`) are not
/// part of the image; whole disks have no number.
pub fn first_disk_partition(dev: &str) -> Option<u32> {
    if let Some(p) = nvme_partition(dev) {
        return if dev.starts_with("/dev/nvme0n1") {
            p
        } else {
            None
        };
    }
    let rest = dev.strip_prefix("/dev/")?;
    let b = rest.as_bytes();
    if b.len() < 4 || !matches!(b[0], b'h' | b's' | b'v') || &b[1..3] != b"da" {
        return None;
    }
    let (n, tail) = split_digits(&rest[3..])?;
    tail.is_empty().then_some(n)
}

/// What replaces non-persistent names: the root filesystem's persistent name and the
/// image's probed partitions.
#[derive(Debug, Clone, Default)]
pub struct Names {
    /// `UUID=<uuid>` (or another persistent spec) of the root filesystem.
    pub root: Option<String>,
    /// Partition number -> its filesystem (or LUKS/swap) UUID.
    pub partitions: Vec<(u32, String)>,
}

impl Names {
    /// From the root's persistent spec and the probed partitions (logical volumes are
    /// skipped: their names are persistent already).
    pub fn new(root: Option<String>, parts: &[ProbedPartition]) -> Names {
        let partitions = parts
            .iter()
            .filter(|p| p.desc.lv.is_none())
            .filter_map(|p| Some((p.desc.number, p.probe.uuid.clone()?)))
            .collect();
        Names { root, partitions }
    }

    /// `UUID=<uuid>` of the partition a non-persistent name points at, if known.
    pub fn by_partition(&self, dev: &str) -> Option<String> {
        let n = first_disk_partition(dev)?;
        self.partitions
            .iter()
            .find(|(num, _)| *num == n)
            .map(|(_, u)| format!("UUID={u}"))
    }
}

/// What [`rewrite_cmdline`] did and could not do.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CmdlineOutcome {
    /// Parameters left non-persistent (`root=/dev/sda1` with no root UUID known).
    pub unresolved: Vec<String>,
    /// Parameters dropped (`resume=/dev/sda2` naming no partition of the image).
    pub dropped: Vec<String>,
}

/// Rewrite the `root=` and `resume=` parameters of a kernel command line (a whole line
/// of a boot loader config, or a shell value with its quotes) that name non-persistent
/// devices: `root=` becomes [`Names::root`], `resume=` the UUID of the partition it
/// names, or is dropped when it names none (the initramfs would wait for a device the
/// deployed disk does not have). Spacing, quotes and every other word stay.
pub fn rewrite_cmdline(line: &str, names: &Names, out: &mut CmdlineOutcome) -> String {
    let mut result = String::with_capacity(line.len());
    let mut dropped_ws = false;
    for piece in line.split_inclusive(char::is_whitespace) {
        let word = piece.trim_end();
        let ws = &piece[word.len()..];
        // Quotes around a shell value stay where they are.
        let core = word.trim_start_matches(['"', '\'']);
        let lead = &word[..word.len() - core.len()];
        let core_t = core.trim_end_matches(['"', '\'']);
        let trail = &core[core_t.len()..];
        let replaced = if let Some(dev) = core_t.strip_prefix("root=") {
            if is_non_persistent(dev) {
                match &names.root {
                    Some(r) => Some(Some(format!("root={r}"))),
                    None => {
                        out.unresolved.push(core_t.to_string());
                        None
                    }
                }
            } else {
                None
            }
        } else if let Some(dev) = core_t.strip_prefix("resume=") {
            if is_non_persistent(dev) {
                match names.by_partition(dev) {
                    Some(u) => Some(Some(format!("resume={u}"))),
                    None => {
                        out.dropped.push(core_t.to_string());
                        Some(None)
                    }
                }
            } else {
                None
            }
        } else {
            None
        };
        match replaced {
            None => {
                result.push_str(piece);
                dropped_ws = false;
            }
            Some(Some(new)) => {
                result.push_str(lead);
                result.push_str(&new);
                result.push_str(trail);
                result.push_str(ws);
                dropped_ws = false;
            }
            Some(None) => {
                // Drop the word and its following space; quotes it carried stay.
                result.push_str(lead);
                if !trail.is_empty() {
                    let kept = result.trim_end_matches([' ', '\t']).len();
                    result.truncate(kept);
                    result.push_str(trail);
                }
                if !lead.is_empty() || !trail.is_empty() {
                    result.push_str(ws);
                }
                dropped_ws = true;
            }
        }
    }
    if dropped_ws {
        // A dropped last word leaves the space before it at the end of the line.
        let kept = result.trim_end_matches([' ', '\t']).len();
        result.truncate(kept);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persistence_follows_the_original_pattern_plus_nvme() {
        for d in [
            "/dev/sda1",
            "/dev/vdb",
            "/dev/hda3",
            "/dev/sdaa1",
            "/dev/nvme0n1p1",
            "/dev/nvme0n1",
        ] {
            assert!(is_non_persistent(d), "{d}");
        }
        for d in [
            "/dev/xvda1",
            "UUID=x",
            "LABEL=root",
            "/dev/disk/by-uuid/x",
            "/dev/sd",
            "/dev/nvme0",
            "/dev/nvme0n1p",
            "/dev/nvme0n1q1",
            "/dev/nvme99999999n1",
            "/dev/mapper/vg-root",
        ] {
            assert!(!is_non_persistent(d), "{d}");
        }
    }

    #[test]
    fn partition_numbers_of_the_first_disk() {
        assert_eq!(first_disk_partition("/dev/vda2"), Some(2));
        assert_eq!(first_disk_partition("/dev/sda12"), Some(12));
        assert_eq!(first_disk_partition("/dev/nvme0n1p3"), Some(3));
        for d in [
            "/dev/sdb1",
            "/dev/sda",
            "/dev/nvme1n1p1",
            "/dev/sda1x",
            "/dev/vda99999999",
        ] {
            assert_eq!(first_disk_partition(d), None, "{d}");
        }
    }

    fn names() -> Names {
        Names {
            root: Some("UUID=r".into()),
            partitions: vec![(2, "s".into())],
        }
    }

    #[test]
    fn root_and_resume_are_rewritten_in_place() {
        let mut out = CmdlineOutcome::default();
        assert_eq!(
            rewrite_cmdline(
                "\tlinux /vmlinuz root=/dev/vda1 ro  resume=/dev/sda2 quiet",
                &names(),
                &mut out
            ),
            "\tlinux /vmlinuz root=UUID=r ro  resume=UUID=s quiet"
        );
        assert_eq!(out, CmdlineOutcome::default());
        assert_eq!(
            rewrite_cmdline("\"root=/dev/sda1 quiet\"", &names(), &mut out),
            "\"root=UUID=r quiet\""
        );
        assert_eq!(
            rewrite_cmdline("root=UUID=x root=/dev/mapper/vg-root", &names(), &mut out),
            "root=UUID=x root=/dev/mapper/vg-root"
        );
    }

    #[test]
    fn unknown_resume_is_dropped_and_unknown_root_reported() {
        let mut out = CmdlineOutcome::default();
        assert_eq!(
            rewrite_cmdline("ro resume=/dev/sda5 quiet", &names(), &mut out),
            "ro quiet"
        );
        assert_eq!(
            rewrite_cmdline("\"ro resume=/dev/sda5\"", &names(), &mut out),
            "\"ro\""
        );
        assert_eq!(
            rewrite_cmdline("ro resume=/dev/sdb1", &names(), &mut out),
            "ro"
        );
        assert_eq!(out.dropped.len(), 3);
        let none = Names::default();
        assert_eq!(
            rewrite_cmdline("root=/dev/sda1 ro", &none, &mut out),
            "root=/dev/sda1 ro"
        );
        assert_eq!(out.unresolved, ["root=/dev/sda1"]);
        // Multi-byte text around the words is kept as is.
        assert_eq!(
            rewrite_cmdline("é root=/dev/sda1 ü", &names(), &mut out),
            "é root=UUID=r ü"
        );
    }
}
