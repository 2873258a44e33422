//! What is on a partition, recognised from its superblock bytes alone.
//!
//! Every kind the pipeline may meet is named here, including the ones no backend can read
//! or write (swap, xfs, btrfs, NTFS, UFS, LVM, LUKS ...), so that inspection can say what
//! a partition holds and, for those, why it cannot be changed. Nothing here trusts the
//! bytes: garbage gives [`FsType::Unknown`], never an error or a panic.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use snf_core::bytes::checked::{be32, le16, le32, le64};

/// The kinds of content a partition can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FsType {
    Ext2,
    Ext3,
    Ext4,
    /// An external ext3/ext4 journal device.
    ExtJournal,
    /// FAT12, FAT16 or FAT32.
    Vfat,
    Exfat,
    Swap,
    Xfs,
    Btrfs,
    Ntfs,
    Ufs1,
    Ufs2,
    /// A BSD disklabel (an MBR slice holding BSD partitions).
    BsdLabel,
    /// An LVM2 physical volume.
    LvmPv,
    Luks1,
    Luks2,
    /// A Linux software RAID member (md superblock 1.1 or 1.2).
    MdRaid,
    Iso9660,
    /// Nothing recognised.
    Unknown,
}

impl FsType {
    /// The name blkid and `/etc/fstab` use.
    pub fn name(self) -> &'static str {
        match self {
            FsType::Ext2 => "ext2",
            FsType::Ext3 => "ext3",
            FsType::Ext4 => "ext4",
            FsType::ExtJournal => "jbd",
            FsType::Vfat => "vfat",
            FsType::Exfat => "exfat",
            FsType::Swap => "swap",
            FsType::Xfs => "xfs",
            FsType::Btrfs => "btrfs",
            FsType::Ntfs => "ntfs",
            FsType::Ufs1 => "ufs1",
            FsType::Ufs2 => "ufs2",
            FsType::BsdLabel => "BSD disklabel",
            FsType::LvmPv => "LVM2_member",
            FsType::Luks1 => "crypto_LUKS (LUKS1)",
            FsType::Luks2 => "crypto_LUKS (LUKS2)",
            FsType::MdRaid => "linux_raid_member",
            FsType::Iso9660 => "iso9660",
            FsType::Unknown => "unknown",
        }
    }

    /// Whether a backend of this crate can open it (read and write): in-process, or
    /// through the libguestfs appliance ([`FsType::needs_appliance`]).
    pub fn has_backend(self) -> bool {
        matches!(
            self,
            FsType::Ext2
                | FsType::Ext3
                | FsType::Ext4
                | FsType::Vfat
                | FsType::Ntfs
                | FsType::Ufs1
                | FsType::Ufs2
        ) || self.needs_appliance()
    }

    /// Whether it is read and written through the libguestfs appliance.
    pub fn needs_appliance(self) -> bool {
        matches!(self, FsType::Xfs | FsType::Btrfs)
    }

    /// Whether this is an ext2/3/4 filesystem.
    pub fn is_ext(self) -> bool {
        matches!(self, FsType::Ext2 | FsType::Ext3 | FsType::Ext4)
    }

    /// For kinds no backend opens: one line saying why the content cannot be changed.
    /// `None` for kinds that have a backend.
    pub fn why_unchangeable(self) -> Option<&'static str> {
        Some(match self {
            FsType::Ext2
            | FsType::Ext3
            | FsType::Ext4
            | FsType::Vfat
            | FsType::Ntfs
            | FsType::Xfs
            | FsType::Btrfs
            | FsType::Ufs1
            | FsType::Ufs2 => return None,
            FsType::ExtJournal => "it is an external ext3/ext4 journal, not a filesystem",
            FsType::Exfat => "exFAT filesystems cannot be read or changed yet",
            FsType::Swap => "it is swap space and holds no files",
            FsType::BsdLabel => {
                "it holds a BSD disklabel, which is read only in an MBR partition of a BSD type"
            }
            FsType::LvmPv => "LVM logical volumes are not supported",
            FsType::Luks1 | FsType::Luks2 => "it is encrypted (LUKS) and cannot be opened",
            FsType::MdRaid => "software RAID members are not supported",
            FsType::Iso9660 => "ISO 9660 filesystems are read-only by design",
            FsType::Unknown => "its content was not recognised",
        })
    }
}

/// What [`probe`] found on a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub fs_type: FsType,
    /// The UUID in the form `/etc/fstab` uses for `UUID=` (lower-case with dashes for
    /// ext/xfs/btrfs/swap/LUKS, `XXXX-XXXX` for FAT, 16 hex digits for NTFS).
    pub uuid: Option<String>,
    /// The volume label, if any.
    pub label: Option<String>,
}

impl Probe {
    pub(crate) fn new(fs_type: FsType) -> Probe {
        Probe {
            fs_type,
            uuid: None,
            label: None,
        }
    }
}

/// How much of a partition the probe reads: enough for the btrfs superblock at 64 KiB,
/// UFS2 at 64 KiB + 1372 and a swap signature at the end of a 64 KiB page.
const PROBE_LEN: u64 = 72 * 1024;

/// Probe the `size` bytes at byte `offset` of the image file `image`.
pub fn probe_file(image: &Path, offset: u64, size: u64) -> io::Result<Probe> {
    let file = File::open(image)?;
    let len = size.min(PROBE_LEN);
    let mut buf = vec![0u8; usize::try_from(len).unwrap_or(0)];
    let mut done = 0usize;
    while done < buf.len() {
        let n = file.read_at(&mut buf[done..], offset + done as u64)?;
        if n == 0 {
            break;
        }
        done += n;
    }
    buf.truncate(done);
    Ok(probe(&buf))
}

/// Recognise the content of a partition from its first bytes (up to 72 KiB; fewer
/// bytes means fewer kinds can be recognised).
pub fn probe(data: &[u8]) -> Probe {
    // Order matters: kinds with a magic at a fixed early offset that another kind may
    // leave in place (an old FAT boot sector under a new ext4, for example) come after
    // the ones whose magic would be overwritten.
    if let Some(p) = probe_luks(data)
        .or_else(|| probe_lvm(data))
        .or_else(|| probe_md(data))
        .or_else(|| probe_xfs(data))
        .or_else(|| probe_ext(data))
        .or_else(|| probe_btrfs(data))
        .or_else(|| probe_swap(data))
        .or_else(|| probe_ntfs_exfat(data))
        .or_else(|| probe_ufs(data))
        .or_else(|| probe_fat(data))
        .or_else(|| probe_bsdlabel(data))
        .or_else(|| probe_iso9660(data))
    {
        return p;
    }
    Probe::new(FsType::Unknown)
}

fn bytes(data: &[u8], off: usize, len: usize) -> Option<&[u8]> {
    data.get(off..off.checked_add(len)?)
}

/// A 16-byte UUID in its usual text form, `None` when all zero.
fn uuid_text(b: &[u8]) -> Option<String> {
    if b.len() != 16 || b.iter().all(|&x| x == 0) {
        return None;
    }
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Some(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

/// A NUL- or space-padded label, `None` when empty.
fn label_text(b: &[u8]) -> Option<String> {
    let end = b.iter().position(|&x| x == 0).unwrap_or(b.len());
    let s = String::from_utf8_lossy(&b[..end]).trim_end().to_string();
    if s.is_empty() {
        None
    } else {
        Some(s)
    }
}

/// Whether the ext3/ext4 filesystem starting at `offset` of `image` has a journal that
/// needs recovery (it was not unmounted cleanly). Anything that is not ext: `false`.
pub fn ext_needs_recovery(image: &Path, offset: u64) -> io::Result<bool> {
    let file = File::open(image)?;
    let mut sb = [0u8; 2048];
    let mut done = 0usize;
    while done < sb.len() {
        let n = file.read_at(&mut sb[done..], offset + done as u64)?;
        if n == 0 {
            break;
        }
        done += n;
    }
    const SB: usize = 1024;
    const HAS_JOURNAL: u32 = 0x4;
    const RECOVER: u32 = 0x4;
    Ok(le16(&sb, SB + 56) == Some(0xEF53)
        && le32(&sb, SB + 92).is_some_and(|c| c & HAS_JOURNAL != 0)
        && le32(&sb, SB + 96).is_some_and(|i| i & RECOVER != 0))
}

fn probe_ext(data: &[u8]) -> Option<Probe> {
    const SB: usize = 1024;
    if le16(data, SB + 56)? != 0xEF53 {
        return None;
    }
    let compat = le32(data, SB + 92)?;
    let incompat = le32(data, SB + 96)?;
    let ro_compat = le32(data, SB + 100)?;
    const HAS_JOURNAL: u32 = 0x4;
    const JOURNAL_DEV: u32 = 0x8;
    // What ext3 understands; anything beyond needs ext4 (blkid's rule).
    const EXT3_INCOMPAT: u32 = 0x2 | 0x4 | 0x10; // filetype, recover, meta_bg
    const EXT3_RO_COMPAT: u32 = 0x1 | 0x2 | 0x4; // sparse_super, large_file, btree_dir
    let fs_type = if incompat & JOURNAL_DEV != 0 {
        FsType::ExtJournal
    } else if incompat & !EXT3_INCOMPAT != 0 || ro_compat & !EXT3_RO_COMPAT != 0 {
        FsType::Ext4
    } else if compat & HAS_JOURNAL != 0 {
        FsType::Ext3
    } else {
        FsType::Ext2
    };
    Some(Probe {
        fs_type,
        uuid: uuid_text(bytes(data, SB + 104, 16)?),
        label: label_text(bytes(data, SB + 120, 16)?),
    })
}

fn probe_fat(data: &[u8]) -> Option<Probe> {
    if bytes(data, 510, 2)? != [0x55, 0xAA] || !matches!(data.first()?, 0xEB | 0xE9) {
        return None;
    }
    let bps = le16(data, 11)?;
    let spc = *data.get(13)?;
    let reserved = le16(data, 14)?;
    let fats = *data.get(16)?;
    if !(512..=4096).contains(&bps) || !bps.is_power_of_two() || !spc.is_power_of_two() {
        return None;
    }
    if reserved == 0 || fats == 0 {
        return None;
    }
    // FAT32 keeps its extended boot record further in; both place the id then the label.
    let (id_off, label_off) = if bytes(data, 82, 5)? == b"FAT32" {
        (67, 71)
    } else if bytes(data, 54, 3)? == b"FAT" {
        (39, 43)
    } else if le16(data, 22)? == 0 {
        // No type string but zero sectors-per-FAT in the old field: FAT32 layout.
        (67, 71)
    } else {
        (39, 43)
    };
    let id = le32(data, id_off)?;
    let label = label_text(bytes(data, label_off, 11)?).filter(|l| l != "NO NAME");
    Some(Probe {
        fs_type: FsType::Vfat,
        uuid: Some(format!("{:04X}-{:04X}", id >> 16, id & 0xFFFF)),
        label,
    })
}

fn probe_swap(data: &[u8]) -> Option<Probe> {
    for page in [4096usize, 8192, 16384, 32768, 65536] {
        let Some(sig) = bytes(data, page - 10, 10) else {
            break;
        };
        if sig == b"SWAPSPACE2" {
            return Some(Probe {
                fs_type: FsType::Swap,
                uuid: uuid_text(bytes(data, 1024 + 12, 16)?),
                label: label_text(bytes(data, 1024 + 28, 16)?),
            });
        }
        if sig == b"SWAP-SPACE" {
            return Some(Probe::new(FsType::Swap));
        }
    }
    None
}

fn probe_xfs(data: &[u8]) -> Option<Probe> {
    if bytes(data, 0, 4)? != b"XFSB" {
        return None;
    }
    Some(Probe {
        fs_type: FsType::Xfs,
        uuid: uuid_text(bytes(data, 32, 16)?),
        label: label_text(bytes(data, 108, 12)?),
    })
}

fn probe_btrfs(data: &[u8]) -> Option<Probe> {
    const SB: usize = 0x10000;
    if bytes(data, SB + 0x40, 8)? != b"_BHRfS_M" {
        return None;
    }
    Some(Probe {
        fs_type: FsType::Btrfs,
        uuid: uuid_text(bytes(data, SB + 0x20, 16)?),
        label: label_text(bytes(data, SB + 0x12b, 256)?),
    })
}

fn probe_ntfs_exfat(data: &[u8]) -> Option<Probe> {
    let oem = bytes(data, 3, 8)?;
    if oem == b"NTFS    " {
        let serial = le64(data, 0x48)?;
        return Some(Probe {
            fs_type: FsType::Ntfs,
            uuid: (serial != 0).then(|| format!("{serial:016X}")),
            label: None,
        });
    }
    if oem == b"EXFAT   " {
        let serial = le32(data, 100)?;
        return Some(Probe {
            fs_type: FsType::Exfat,
            uuid: Some(format!("{:04X}-{:04X}", serial >> 16, serial & 0xFFFF)),
            label: None,
        });
    }
    None
}

fn probe_ufs(data: &[u8]) -> Option<Probe> {
    const MAGIC_OFF: usize = 1372;
    const UFS1: u32 = 0x0001_1954;
    const UFS2: u32 = 0x1954_0119;
    for sb in [65536usize, 8192, 0] {
        for big in [false, true] {
            let word = |off: usize| {
                if big {
                    be32(data, sb + off)
                } else {
                    le32(data, sb + off)
                }
            };
            let fs_type = match word(MAGIC_OFF) {
                Some(UFS2) => FsType::Ufs2,
                Some(UFS1) => FsType::Ufs1,
                _ => continue,
            };
            // FreeBSD names the filesystem /dev/ufsid/<fs_id[0]><fs_id[1]> and
            // /dev/ufs/<fs_volname>.
            let (id0, id1) = (word(144)?, word(148)?);
            let name = bytes(data, sb + 680, 32)?;
            let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
            return Some(Probe {
                fs_type,
                uuid: (id0 != 0 || id1 != 0).then(|| format!("{id0:08x}{id1:08x}")),
                label: (fs_type == FsType::Ufs2 && !name.is_empty())
                    .then(|| String::from_utf8_lossy(name).into_owned()),
            });
        }
    }
    None
}

fn probe_bsdlabel(data: &[u8]) -> Option<Probe> {
    const MAGIC: u32 = 0x8256_4557;
    for off in [512usize, 64] {
        if le32(data, off) == Some(MAGIC) && le32(data, off + 132) == Some(MAGIC) {
            return Some(Probe::new(FsType::BsdLabel));
        }
    }
    None
}

fn probe_lvm(data: &[u8]) -> Option<Probe> {
    for sector in 0..4usize {
        let off = sector * 512;
        if bytes(data, off, 8)? == b"LABELONE" && bytes(data, off + 24, 8)? == b"LVM2 001" {
            let raw = bytes(data, off + 32, 32)?;
            let s = String::from_utf8_lossy(raw).into_owned();
            // LVM prints its 32-character ids in groups of 6-4-4-4-4-4-6.
            let uuid = if s.len() == 32 && s.is_ascii() {
                Some(format!(
                    "{}-{}-{}-{}-{}-{}-{}",
                    &s[0..6],
                    &s[6..10],
                    &s[10..14],
                    &s[14..18],
                    &s[18..22],
                    &s[22..26],
                    &s[26..32]
                ))
            } else {
                None
            };
            return Some(Probe {
                fs_type: FsType::LvmPv,
                uuid,
                label: None,
            });
        }
    }
    None
}

fn probe_luks(data: &[u8]) -> Option<Probe> {
    if bytes(data, 0, 6)? != b"LUKS\xba\xbe" {
        return None;
    }
    let version = u16::from_be_bytes([*data.get(6)?, *data.get(7)?]);
    let uuid = label_text(bytes(data, 168, 40)?);
    let (fs_type, label) = match version {
        1 => (FsType::Luks1, None),
        _ => (FsType::Luks2, label_text(bytes(data, 24, 48)?)),
    };
    Some(Probe {
        fs_type,
        uuid,
        label,
    })
}

fn probe_md(data: &[u8]) -> Option<Probe> {
    const MAGIC: u32 = 0xa92b_4efc;
    for off in [0usize, 4096] {
        if le32(data, off) == Some(MAGIC) && le32(data, off + 4) == Some(1) {
            return Some(Probe {
                fs_type: FsType::MdRaid,
                uuid: uuid_text(bytes(data, off + 16, 16)?),
                label: label_text(bytes(data, off + 32, 32)?),
            });
        }
    }
    None
}

fn probe_iso9660(data: &[u8]) -> Option<Probe> {
    if bytes(data, 0x8001, 5)? != b"CD001" {
        return None;
    }
    Some(Probe {
        fs_type: FsType::Iso9660,
        uuid: None,
        label: label_text(bytes(data, 0x8028, 32)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_and_short_input_are_unknown() {
        assert_eq!(probe(&[]).fs_type, FsType::Unknown);
        assert_eq!(probe(&[0xEB; 100]).fs_type, FsType::Unknown);
        let noise: Vec<u8> = (0..PROBE_LEN as usize)
            .map(|i| (i.wrapping_mul(2654435761) >> 7) as u8)
            .collect();
        assert_eq!(probe(&noise).fs_type, FsType::Unknown);
    }

    #[test]
    fn uuid_text_formats_and_zero_is_none() {
        assert_eq!(uuid_text(&[0; 16]), None);
        let b: Vec<u8> = (0..16).collect();
        assert_eq!(
            uuid_text(&b).as_deref(),
            Some("00010203-0405-0607-0809-0a0b0c0d0e0f")
        );
    }

    #[test]
    fn every_kind_without_backend_says_why() {
        for t in [FsType::Swap, FsType::LvmPv, FsType::Luks2, FsType::Unknown] {
            assert!(!t.has_backend());
            assert!(t.why_unchangeable().is_some(), "{t:?}");
        }
        assert!(FsType::Ext4.why_unchangeable().is_none());
        assert!(FsType::Vfat.has_backend());
        for t in [FsType::Ufs1, FsType::Ufs2] {
            assert!(t.has_backend() && !t.needs_appliance(), "{t:?}");
            assert!(t.why_unchangeable().is_none(), "{t:?}");
        }
        assert!(FsType::Ntfs.has_backend() && !FsType::Ntfs.needs_appliance());
        for t in [FsType::Xfs, FsType::Btrfs] {
            assert!(t.has_backend() && t.needs_appliance(), "{t:?}");
            assert!(t.why_unchangeable().is_none(), "{t:?}");
        }
    }

    #[test]
    fn lvm_label_written_by_hand_is_recognised() {
        let mut d = vec![0u8; 4096];
        d[512..520].copy_from_slice(b"LABELONE");
        d[512 + 24..512 + 32].copy_from_slice(b"LVM2 001");
        d[512 + 32..512 + 64].copy_from_slice(b"abcdefghijklmnopqrstuvwxyz012345");
        let p = probe(&d);
        assert_eq!(p.fs_type, FsType::LvmPv);
        assert_eq!(
            p.uuid.as_deref(),
            Some("abcdef-ghij-klmn-opqr-stuv-wxyz-012345")
        );
    }
}
