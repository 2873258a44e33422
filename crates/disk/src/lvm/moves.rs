//! Copying the data of extents that [`VolumeGroup::compact`] moved, inside the image.
//!
//! A move may overlap itself (an LV slid down by less than its length), so it is copied
//! in chunks from the end that is safe: upwards when the target is below the source.
//! Holes of the source stay holes (the target range is punched, never written with
//! zeros), which keeps the private copy as sparse as the guest left it, and the range a
//! move vacated is punched.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

use rustix::fs::SeekFrom;

use super::{device_name, io_err, ExtentMove, LvmError, VolumeGroup};
use crate::sparse::{is_zero, punch_hole};

/// Largest piece read and written at once.
const CHUNK: u64 = 1 << 20;

/// Granularity at which zeros inside data become holes (a filesystem block).
const ZERO_GRAIN: u64 = 4096;

/// Copy the data of `moves` (in their order) inside `image`, for VG `vg` (the extent
/// size and where its PVs are).
pub fn apply_moves(image: &Path, vg: &VolumeGroup, moves: &[ExtentMove]) -> Result<(), LvmError> {
    // Check every move before copying anything.
    let mut ranges = Vec::with_capacity(moves.len());
    for m in moves {
        let pv = vg.pv(&m.pv).ok_or_else(|| LvmError::NoSuchPv {
            vg: vg.name.clone(),
            pv: m.pv.clone(),
        })?;
        let bad = |reason: String| LvmError::PvEdit {
            vg: vg.name.clone(),
            pv: m.pv.clone(),
            reason,
        };
        let Some(dev) = pv.device else {
            return Err(bad("is not on this disk".into()));
        };
        // Checked against the device, not `pe_count`: the PV may already be resized
        // to end right after the moved extents.
        let at = |pe: u64| {
            pe.checked_add(m.count)
                .and_then(|e| e.checked_mul(vg.extent_size))
                .and_then(|e| e.checked_add(pv.offset + pv.pe_start))
                .filter(|&e| e <= pv.device_end)
                .map(|_| pv.offset + pv.pe_start + pe * vg.extent_size)
        };
        let (Some(from), Some(to)) = (at(m.from_pe), at(m.to_pe)) else {
            return Err(bad(format!(
                "cannot move {} extents from {} to {}: past the end of the {}",
                m.count,
                m.from_pe,
                m.to_pe,
                device_name(dev)
            )));
        };
        let len = m.count * vg.extent_size;
        ranges.push((from, to, len));
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(image)
        .map_err(io_err(image))?;
    let mut buf = vec![0u8; CHUNK as usize];
    for (from, to, len) in ranges {
        copy(&file, image, from, to, len, &mut buf)?;
        // What the move vacated is free PV space now: leave nothing of it in the
        // image. No later move reads it (each area is moved once, in order).
        let vacated = if to < from {
            (to + len).max(from)..from + len
        } else {
            from..to.min(from + len)
        };
        if !vacated.is_empty() {
            punch_hole(&file, vacated).map_err(io_err(image))?;
        }
    }
    Ok(())
}

/// Copy `len` bytes at `from` to `to` in `file`, overlap-safe and sparse.
fn copy(
    file: &File,
    image: &Path,
    from: u64,
    to: u64,
    len: u64,
    buf: &mut [u8],
) -> Result<(), LvmError> {
    if from == to || len == 0 {
        return Ok(());
    }
    let chunks = len.div_ceil(CHUNK);
    for k in 0..chunks {
        snf_core::cancel::check()?;
        // Upwards when moving down, downwards when moving up: never overwrite what is
        // still to be read.
        let i = if to < from { k } else { chunks - 1 - k };
        let off = i * CHUNK;
        let n = (len - off).min(CHUNK);
        let (src, dst) = (from + off, to + off);
        if is_hole(file, src, n).map_err(io_err(image))? {
            punch_hole(file, dst..dst + n).map_err(io_err(image))?;
            continue;
        }
        let b = &mut buf[..n as usize];
        file.read_exact_at(b, src).map_err(io_err(image))?;
        let mut pos = 0u64;
        while pos < n {
            let g = (n - pos).min(ZERO_GRAIN);
            let piece = &b[pos as usize..(pos + g) as usize];
            if is_zero(piece) {
                punch_hole(file, dst + pos..dst + pos + g).map_err(io_err(image))?;
            } else {
                // Write the whole run of non-zero grains at once.
                let mut end = pos + g;
                while end < n {
                    let g2 = (n - end).min(ZERO_GRAIN);
                    if is_zero(&b[end as usize..(end + g2) as usize]) {
                        break;
                    }
                    end += g2;
                }
                file.write_all_at(&b[pos as usize..end as usize], dst + pos)
                    .map_err(io_err(image))?;
                pos = end;
                continue;
            }
            pos += g;
        }
    }
    Ok(())
}

/// Whether `[at, at + len)` of `file` is all hole.
fn is_hole(file: &File, at: u64, len: u64) -> std::io::Result<bool> {
    match rustix::fs::seek(file, SeekFrom::Data(at)) {
        Ok(data) => Ok(data >= at + len),
        // No data at or after `at`.
        Err(rustix::io::Errno::NXIO) => Ok(true),
        // A filesystem without SEEK_DATA: read it.
        Err(_) => Ok(false),
    }
}
