//! BSD disklabels written and read back by util-linux `fdisk` (its nested-disklabel
//! mode, the `b` command), for fixtures of NetBSD/OpenBSD/FreeBSD-on-MBR disks.

use std::path::Path;
use std::process::Command;

use std::os::unix::fs::FileExt;

use snf_core::bytes;

use crate::fixture::{require, run_stdin, sfdisk, sparse_file, write_at, MIB};

/// One slice of a label to write: its letter, first sector (absolute), length in
/// sectors and `p_fstype` (7 = 4.2BSD, 1 = swap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BsdSlice {
    pub letter: char,
    pub start: u64,
    pub sectors: u64,
    pub fstype: u8,
}

impl BsdSlice {
    /// A slice `mib` MiB long (in 512-byte sectors) starting at sector `start`.
    pub fn mib(letter: char, start: u64, mib: u64, fstype: u8) -> BsdSlice {
        BsdSlice {
            letter,
            start,
            sectors: mib * 2048,
            fstype,
        }
    }
}

/// A new sparse MBR disk at `img` (disk id `0x5eed5eed`) with one bootable partition of
/// type `mbr_type` (a5 FreeBSD, a6 OpenBSD, a9 NetBSD) from sector `part_start`,
/// `part_sectors` long, and 1 MiB to spare after it: the place for
/// [`fdisk_bsd_label`]'s label.
pub fn bsd_mbr_disk(img: &Path, part_start: u64, part_sectors: u64, mbr_type: &str) {
    sparse_file(img, (part_start + part_sectors) * 512 + MIB);
    sfdisk(
        img,
        &format!("label: dos\nlabel-id: 0x5eed5eed\nstart={part_start}, size={part_sectors}, type={mbr_type}, bootable\n"),
    );
}

/// Write a disklabel with `slices` into the only BSD partition (type a5/a6/a9) of the
/// MBR disk `img`, through fdisk. fdisk adds its own `c` (the BSD partition) and `d`
/// (the whole disk), both unused.
pub fn fdisk_bsd_label(img: &Path, slices: &[BsdSlice]) {
    require("fdisk");
    let mut script = String::from("b\ny\n");
    for s in slices {
        script.push_str(&format!(
            "n\n{}\n{}\n{}\nt\n{}\n{:x}\n",
            s.letter,
            s.start,
            s.start + s.sectors - 1,
            s.letter,
            s.fstype
        ));
    }
    script.push_str("w\n");
    run_stdin(Command::new("fdisk").arg(img), &script);
}

/// The slices of the BSD label of `img` as fdisk prints them: (letter, start, sectors,
/// type name), unused ones included.
pub fn fdisk_bsd_slices(img: &Path) -> Vec<(char, u64, u64, String)> {
    require("fdisk");
    let out = run_stdin(Command::new("fdisk").arg(img), "b\np\nq\n");
    out.lines()
        .skip_while(|l| !l.starts_with("Slice"))
        .skip(1)
        .map_while(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let letter = f
                .first()?
                .chars()
                .next()
                .filter(|c| c.is_ascii_lowercase())?;
            if f.first()?.len() != 1 {
                return None;
            }
            Some((
                letter,
                f.get(1)?.parse().ok()?,
                f.get(3)?.parse().ok()?,
                f.get(5)?.to_string(),
            ))
        })
        .collect()
}

/// Byte offset of the label of the BSD partition starting at sector `parent_start`.
pub fn label_offset(parent_start: u64) -> u64 {
    (parent_start + 1) * 512
}

/// Set OpenBSD's disklabel UID (`d_uid`, 8 bytes at byte 64) of the label at byte
/// `label_at` of `img`, and fix the label's checksum as OpenBSD's disklabel(8) does.
pub fn set_duid(img: &Path, label_at: u64, duid: [u8; 8]) {
    let mut sector = vec![0u8; 512];
    std::fs::File::open(img)
        .and_then(|f| f.read_exact_at(&mut sector, label_at))
        .unwrap_or_else(|e| panic!("read {} at {label_at}: {e}", img.display()));
    sector[64..72].copy_from_slice(&duid);
    let count = usize::from(bytes::le16(&sector, 138));
    sector[136] = 0;
    sector[137] = 0;
    let sum = sector[..148 + 16 * count]
        .chunks_exact(2)
        .fold(0u16, |a, w| a ^ u16::from_le_bytes([w[0], w[1]]));
    sector[136..138].copy_from_slice(&sum.to_le_bytes());
    write_at(img, label_at, &sector);
}
