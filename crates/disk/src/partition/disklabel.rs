//! BSD disklabels nested in MBR partitions (FreeBSD 0xA5, OpenBSD 0xA6, NetBSD 0xA9).
//!
//! NetBSD and OpenBSD on a PC disk keep one MBR partition and divide it with a
//! disklabel 512 bytes into it (FreeBSD's bsdlabel sits there too): partitions
//! `a` .. `p`, `a` the root, `b` swap,
//! `c` (and NetBSD's `d`) the raw partition or disk. The slices are numbered here the
//! way the Linux kernel numbers them (`block/partitions/msdos.c`), because that is the
//! device the deploy side (snf-image, on Linux) mounts as `ROOT_PARTITION`: after the
//! primary and logical partitions, in MBR slot order then label order, leaving out
//! unused entries, entries that are the whole parent partition (that one keeps the
//! parent's number) and entries reaching outside the parent (the raw `c`/`d` that span
//! the disk).
//!
//! The label is untrusted input: the count of entries is bounded by what fits in its
//! sector, the checksum is verified, and every slice is checked against the parent.

use std::io::{Read, Seek};

use snf_core::bytes::{le16, le32};

use super::{read_at, Layout, Partition, PartitionKind};

/// The disklabel magic number (`d_magic` and `d_magic2`).
pub const DISKMAGIC: u32 = 0x8256_4557;
/// `p_fstype` of a swap partition.
pub const FS_SWAP: u8 = 1;
/// `p_fstype` of a 4.2BSD fast filesystem (UFS/FFS).
pub const FS_BSDFFS: u8 = 7;
/// `p_fstype` of an unused entry.
pub const FS_UNUSED: u8 = 0;

/// Where the partition entries start in the label.
const PARTITIONS_AT: usize = 148;
/// Bytes per partition entry.
const ENTRY_LEN: usize = 16;
/// The most entries that fit in a 512-byte label sector (NetBSD allows 22 on some ports).
pub const MAX_ENTRIES: usize = (512 - PARTITIONS_AT) / ENTRY_LEN;
/// The Linux kernel reads at most this many entries of a label.
const KERNEL_MAX_ENTRIES: usize = 16;

/// Which BSD wrote the label (from the MBR partition type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flavour {
    /// MBR type 0xA5.
    FreeBsd,
    /// MBR type 0xA6.
    OpenBsd,
    /// MBR type 0xA9.
    NetBsd,
}

impl Flavour {
    /// The flavour of an MBR partition type id, if it is a BSD one.
    pub fn from_mbr_type(t: u8) -> Option<Flavour> {
        match t {
            0xa5 => Some(Flavour::FreeBsd),
            0xa6 => Some(Flavour::OpenBsd),
            0xa9 => Some(Flavour::NetBsd),
            _ => None,
        }
    }

    /// `freebsd`, `openbsd` or `netbsd`.
    pub fn as_str(self) -> &'static str {
        match self {
            Flavour::FreeBsd => "freebsd",
            Flavour::OpenBsd => "openbsd",
            Flavour::NetBsd => "netbsd",
        }
    }
}

/// Why a disklabel could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DisklabelError {
    /// Reading the label sector failed.
    #[error("BSD disklabel of partition {parent}: {source}")]
    Io {
        /// The MBR partition holding the label.
        parent: u32,
        /// The read error.
        #[source]
        source: super::PartitionError,
    },
    /// No label magic where the label belongs.
    #[error("partition {parent} (MBR type 0x{mbr_type:02x}) holds no BSD disklabel")]
    Missing {
        /// The MBR partition.
        parent: u32,
        /// Its type id.
        mbr_type: u8,
    },
    /// The label holds something impossible.
    #[error("BSD disklabel of partition {parent} is invalid: {reason}")]
    Invalid {
        /// The MBR partition holding the label.
        parent: u32,
        /// What is wrong.
        reason: String,
    },
}

impl DisklabelError {
    /// The MBR partition the error is about.
    pub fn parent(&self) -> u32 {
        match self {
            DisklabelError::Io { parent, .. }
            | DisklabelError::Missing { parent, .. }
            | DisklabelError::Invalid { parent, .. } => *parent,
        }
    }

    /// What is wrong, without naming the partition (for messages that name it).
    pub fn reason(&self) -> String {
        match self {
            DisklabelError::Io { source, .. } => format!("its BSD disklabel: {source}"),
            DisklabelError::Missing { mbr_type, .. } => {
                format!("its MBR type 0x{mbr_type:02x} is a BSD one, but it holds no BSD disklabel")
            }
            DisklabelError::Invalid { reason, .. } => {
                format!("its BSD disklabel is invalid: {reason}")
            }
        }
    }
}

/// One partition of a disklabel as the Linux kernel exposes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slice {
    /// Its letter: `a` for entry 0 ...
    pub letter: char,
    /// The number Linux gives it (`/dev/sdaN`).
    pub number: u32,
    /// First sector (absolute, 512-byte sectors whatever the disk's sector size, as
    /// Linux reads labels).
    pub start: u64,
    /// Length in 512-byte sectors.
    pub sectors: u64,
    /// `p_fstype` ([`FS_BSDFFS`], [`FS_SWAP`] ...).
    pub fstype: u8,
}

/// A disklabel read from an MBR partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disklabel {
    /// The MBR partition holding it.
    pub parent: u32,
    /// Which BSD it belongs to.
    pub flavour: Flavour,
    /// OpenBSD's disklabel UID (`d_uid`, the DUID fstab names as `HEX.a`), as 16
    /// lower-case hex digits; `None` when unset (all zero) or not OpenBSD.
    pub duid: Option<String>,
    /// The slices Linux exposes, in label order.
    pub slices: Vec<Slice>,
}

/// Parse the label sector `sector` of `parent` (MBR partition of type `flavour`),
/// numbering the exposed slices from `next_number` on.
pub fn parse(
    sector: &[u8],
    parent: &Partition,
    flavour: Flavour,
    next_number: u32,
) -> Result<Disklabel, DisklabelError> {
    let invalid = |reason: String| DisklabelError::Invalid {
        parent: parent.number,
        reason,
    };
    if sector.len() < PARTITIONS_AT || le32(sector, 0) != DISKMAGIC {
        return Err(DisklabelError::Missing {
            parent: parent.number,
            mbr_type: parent.mbr_type,
        });
    }
    if le32(sector, 132) != DISKMAGIC {
        return Err(invalid("the second magic number is wrong".into()));
    }
    let count = usize::from(le16(sector, 138));
    let end = PARTITIONS_AT + count * ENTRY_LEN;
    if count > MAX_ENTRIES || end > sector.len() {
        return Err(invalid(format!(
            "it claims {count} partitions (at most {MAX_ENTRIES} fit in its sector)"
        )));
    }
    let sum = sector[..end]
        .chunks_exact(2)
        .fold(0u16, |acc, w| acc ^ u16::from_le_bytes([w[0], w[1]]));
    if sum != 0 {
        return Err(invalid(format!(
            "checksum 0x{:04x} does not match its contents",
            le16(sector, 136)
        )));
    }
    let duid = (flavour == Flavour::OpenBsd)
        .then(|| &sector[64..72])
        .filter(|u| u.iter().any(|&b| b != 0))
        .map(|u| u.iter().map(|b| format!("{b:02x}")).collect::<String>());

    let entry = |i: usize| &sector[PARTITIONS_AT + i * ENTRY_LEN..][..ENTRY_LEN];
    // FreeBSD labels may count from the slice start; the raw `c` at offset 0 says so.
    let relative = flavour == Flavour::FreeBsd && count > 2 && le32(entry(2), 4) == 0;
    let (p_start, p_len) = (parent.offset() / 512, parent.size() / 512);
    let mut slices = Vec::new();
    let mut number = next_number;
    for i in 0..count.min(KERNEL_MAX_ENTRIES) {
        let e = entry(i);
        let fstype = e[12];
        if fstype == FS_UNUSED {
            continue;
        }
        // Linux reads the low 32 bits only (OpenBSD keeps high parts beside them), so a
        // slice past 2 TiB is one Linux cannot show either: it is left out below.
        let mut start = u64::from(le32(e, 4));
        let mut sectors = u64::from(le32(e, 0));
        if flavour == Flavour::OpenBsd && le16(sector, 114) == 1 {
            start |= u64::from(le16(e, 8)) << 32;
            sectors |= u64::from(le16(e, 10)) << 32;
        }
        if relative {
            start += p_start;
        }
        let letter = char::from(b'a' + i as u8);
        if start == p_start && sectors == p_len {
            slices.push(Slice {
                letter,
                number: parent.number,
                start,
                sectors,
                fstype,
            });
            continue;
        }
        let inside = start >= p_start
            && start
                .checked_add(sectors)
                .is_some_and(|e| e <= p_start.saturating_add(p_len));
        if !inside || sectors == 0 || start >> 32 != 0 || sectors >> 32 != 0 {
            continue;
        }
        slices.push(Slice {
            letter,
            number,
            start,
            sectors,
            fstype,
        });
        number += 1;
    }
    Ok(Disklabel {
        parent: parent.number,
        flavour,
        duid,
        slices,
    })
}

/// The disklabels of every BSD partition of an MBR `layout` read from `dev`, in MBR
/// slot order, each slice numbered as Linux numbers it. A label that cannot be read
/// is its error, so that the caller can name the partition and go on.
pub fn read_labels<R: Read + Seek + ?Sized>(
    dev: &mut R,
    layout: &Layout,
) -> Vec<Result<Disklabel, DisklabelError>> {
    // Linux numbers BSD slices after every logical partition.
    let mut next = layout
        .logicals()
        .map(|p| p.number + 1)
        .max()
        .unwrap_or(5)
        .max(5);
    let mut out = Vec::new();
    for p in layout.partitions() {
        if p.kind != PartitionKind::Primary {
            continue;
        }
        let Some(flavour) = Flavour::from_mbr_type(p.mbr_type) else {
            continue;
        };
        let mut sector = vec![0u8; 512];
        // Linux reads the label 512 bytes into the partition, on any disk.
        let at = p.offset() + 512;
        let label = if p.size() < 1024 {
            Err(DisklabelError::Missing {
                parent: p.number,
                mbr_type: p.mbr_type,
            })
        } else {
            read_at(dev, at, &mut sector, layout.disk_size(), "a BSD disklabel")
                .map_err(|source| DisklabelError::Io {
                    parent: p.number,
                    source,
                })
                .and_then(|()| parse(&sector, p, flavour, next))
        };
        if let Ok(l) = &label {
            next += l.slices.iter().filter(|s| s.number != p.number).count() as u32;
        }
        out.push(label);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parent() -> Partition {
        Partition {
            number: 1,
            start: 2048,
            end: 2048 + 99_999,
            kind: PartitionKind::Primary,
            mbr_type: 0xa6,
            bootable: false,
            type_guid: None,
            unique_guid: None,
            name: String::new(),
            attributes: 0,
            sector_size: 512,
            ebr_lba: 0,
            mbr_raw: None,
        }
    }

    fn label(entries: &[(u32, u32, u8)]) -> Vec<u8> {
        let mut s = vec![0u8; 512];
        s[0..4].copy_from_slice(&DISKMAGIC.to_le_bytes());
        s[132..136].copy_from_slice(&DISKMAGIC.to_le_bytes());
        s[138..140].copy_from_slice(&(entries.len() as u16).to_le_bytes());
        for (i, (size, off, t)) in entries.iter().enumerate() {
            let e = PARTITIONS_AT + i * ENTRY_LEN;
            s[e..e + 4].copy_from_slice(&size.to_le_bytes());
            s[e + 4..e + 8].copy_from_slice(&off.to_le_bytes());
            s[e + 12] = *t;
        }
        let end = PARTITIONS_AT + entries.len() * ENTRY_LEN;
        let sum = s[..end]
            .chunks_exact(2)
            .fold(0u16, |a, w| a ^ u16::from_le_bytes([w[0], w[1]]));
        s[136..138].copy_from_slice(&sum.to_le_bytes());
        s
    }

    #[test]
    fn raw_and_outside_slices_are_left_out_and_numbering_follows_linux() {
        let s = label(&[
            (40_000, 2048, FS_BSDFFS),
            (8_000, 50_000, FS_SWAP),
            (100_000, 2048, FS_UNUSED),
            (200_000, 0, 0),
            (1_000, 99_000, 0),
            (1_000, 101_500, FS_BSDFFS),
        ]);
        let l = parse(&s, &parent(), Flavour::OpenBsd, 5).unwrap();
        let got: Vec<(char, u32)> = l.slices.iter().map(|s| (s.letter, s.number)).collect();
        assert_eq!(got, vec![('a', 5), ('b', 6)]);
    }

    #[test]
    fn a_slice_that_is_the_whole_parent_keeps_its_number() {
        let s = label(&[(100_000, 2048, FS_BSDFFS), (8, 4096, FS_SWAP)]);
        let l = parse(&s, &parent(), Flavour::NetBsd, 5).unwrap();
        assert_eq!(l.slices[0].number, 1);
        assert_eq!(l.slices[1].number, 5);
    }

    fn resum(s: &mut [u8]) {
        let count = usize::from(le16(s, 138));
        s[136..138].copy_from_slice(&[0, 0]);
        let sum = s[..PARTITIONS_AT + count * ENTRY_LEN]
            .chunks_exact(2)
            .fold(0u16, |a, w| a ^ u16::from_le_bytes([w[0], w[1]]));
        s[136..138].copy_from_slice(&sum.to_le_bytes());
    }

    #[test]
    fn freebsd_offsets_count_from_the_slice_when_c_starts_at_zero() {
        let s = label(&[(1_000, 16, FS_BSDFFS), (8, 2000, FS_SWAP), (100_000, 0, 0)]);
        let mut p = parent();
        p.mbr_type = 0xa5;
        let l = parse(&s, &p, Flavour::FreeBsd, 5).unwrap();
        let got: Vec<(u64, u32)> = l.slices.iter().map(|s| (s.start, s.number)).collect();
        assert_eq!(got, vec![(2048 + 16, 5), (2048 + 2000, 6)]);
        // The same label read as OpenBSD's: absolute offsets, outside the partition.
        assert!(parse(&s, &parent(), Flavour::OpenBsd, 5)
            .unwrap()
            .slices
            .is_empty());
    }

    #[test]
    fn openbsd_high_offset_bits_count_only_in_a_version_1_label() {
        let mut s = label(&[(40_000, 2048, FS_BSDFFS), (8_000, 50_000, FS_SWAP)]);
        // b's offset gets a high part: past 2 TiB, which Linux cannot show.
        s[PARTITIONS_AT + ENTRY_LEN + 8] = 1;
        resum(&mut s);
        let letters = |s: &[u8]| -> Vec<char> {
            let l = parse(s, &parent(), Flavour::OpenBsd, 5).unwrap();
            l.slices.iter().map(|s| s.letter).collect()
        };
        assert_eq!(
            letters(&s),
            vec!['a', 'b'],
            "version 0 ignores the high part"
        );
        s[114] = 1;
        resum(&mut s);
        assert_eq!(letters(&s), vec!['a']);
    }

    #[test]
    fn garbage_is_a_typed_error() {
        let mut s = label(&[(40_000, 2048, FS_BSDFFS)]);
        s[150] ^= 1;
        assert!(matches!(
            parse(&s, &parent(), Flavour::OpenBsd, 5),
            Err(DisklabelError::Invalid { .. })
        ));
        let mut s = label(&[]);
        s[138] = 200;
        assert!(matches!(
            parse(&s, &parent(), Flavour::OpenBsd, 5),
            Err(DisklabelError::Invalid { .. })
        ));
        assert!(matches!(
            parse(&[0u8; 512], &parent(), Flavour::OpenBsd, 5),
            Err(DisklabelError::Missing { .. })
        ));
        assert!(parse(&[0u8; 10], &parent(), Flavour::OpenBsd, 5).is_err());
    }
}
