//! The xfs and btrfs free-space readers (superblock, AGF/AGFL, free-space btree and
//! log head; btrfs superblock, system chunk array and chunk tree) on a sparse volume.
//!
//! Input: `[kind: u8 (even xfs, odd btrfs)][volume MiB: u8]` then records
//! `[512-byte sector: u32 LE][length: u16 LE][bytes]` placed on a volume that reads as
//! zeros elsewhere (see fuzz/make-corpus.sh). Whatever the bytes, the readers return a
//! result; free ranges are sorted, disjoint and inside the volume.
#![no_main]
use std::io;

use libfuzzer_sys::fuzz_target;
use snf_guestfs::freespace::{btrfs, xfs, Volume};

struct Sparse {
    size: u64,
    records: Vec<(u64, Vec<u8>)>,
}

impl Volume for Sparse {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= self.size)
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.fill(0);
        for (at, bytes) in &self.records {
            let (s, e) = (*at.max(&offset), (at + bytes.len() as u64).min(end));
            if s < e {
                buf[(s - offset) as usize..(e - offset) as usize]
                    .copy_from_slice(&bytes[(s - at) as usize..(e - at) as usize]);
            }
        }
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let [kind, mib, rest @ ..] = data else {
        return;
    };
    // Small volumes keep every input fast; the structures fit in a few MiB.
    let size = u64::from(*mib).clamp(1, 128) << 20;
    let mut records = Vec::new();
    let mut rest = rest;
    while let [a, b, c, d, l0, l1, tail @ ..] = rest {
        let at = u64::from(u32::from_le_bytes([*a, *b, *c, *d])) * 512;
        let len = usize::from(u16::from_le_bytes([*l0, *l1])).min(tail.len());
        records.push((at, tail[..len].to_vec()));
        rest = &tail[len..];
    }
    let vol = Sparse { size, records };
    let found = if kind % 2 == 0 {
        xfs::free_ranges(&vol)
    } else {
        btrfs::free_ranges(&vol)
    };
    if let Ok(free) = found {
        let mut end = 0;
        for r in free {
            assert!(
                r.start >= end && r.start < r.end && r.end <= size,
                "bad range {r:?}"
            );
            end = r.end;
        }
    }
});
