//! Editing a VG in memory: reducing and removing LVs, compacting a PV's allocation and
//! resizing a PV. Nothing is written until [`VolumeGroup::write`].
//!
//! Only linear LVs are edited. Segments of any other kind, and the PV extents they
//! hold, stay exactly where they are.

use super::ondisk::{Locn, MdaHeader, MDA_HEADER_SIZE, SECTOR};
use super::text::{Item, Value};
use super::{ExtentMove, LvmError, Segment, SegmentKind, VolumeGroup};

/// Most PV areas `compact` plans for (its planning is quadratic); beyond, it plans no
/// moves at all.
const MAX_AREAS: usize = 10_000;

/// LVM's default `devices/pv_min_size` (2 MiB): smaller devices are not scanned.
const PV_MIN_SIZE: u64 = 2 << 20;

/// Alignment of a metadata area at the end of a PV, as `pvcreate` places it.
const TAIL_MDA_ALIGN: u64 = 4096;

/// (LV index, segment index).
type SegId = (usize, usize);

/// A run of extents of a PV held by one segment.
#[derive(Debug, Clone, Copy)]
struct Area {
    start: u64,
    count: u64,
    /// (LV index, segment index) of a linear segment that may move; `None`: fixed.
    owner: Option<SegId>,
}

impl VolumeGroup {
    fn lv_index(&self, lv: &str) -> Result<usize, LvmError> {
        self.lvs
            .iter()
            .position(|l| l.name == lv)
            .ok_or_else(|| LvmError::NoSuchLv {
                vg: self.name.clone(),
                lv: lv.to_string(),
            })
    }

    fn lv_err(&self, lv: &str, reason: impl Into<String>) -> LvmError {
        LvmError::LvEdit {
            vg: self.name.clone(),
            lv: lv.to_string(),
            reason: reason.into(),
        }
    }

    fn pv_err(&self, pv: &str, reason: impl Into<String>) -> LvmError {
        LvmError::PvEdit {
            vg: self.name.clone(),
            pv: pv.to_string(),
            reason: reason.into(),
        }
    }

    /// An LV we may edit: linear all through, and no other LV names it (a snapshot's
    /// origin, a pool's data ...).
    fn editable(&self, lv: &str) -> Result<usize, LvmError> {
        let i = self.lv_index(lv)?;
        if let Some(s) = self.lvs[i]
            .segments
            .iter()
            .find(|s| !matches!(s.kind, SegmentKind::Linear { .. }))
        {
            let SegmentKind::Other { seg_type } = &s.kind else {
                unreachable!("found by not being linear")
            };
            return Err(LvmError::UnsupportedLvType {
                vg: self.name.clone(),
                lv: lv.to_string(),
                seg_type: seg_type.clone(),
            });
        }
        if let Some(user) = self.users(lv).first() {
            return Err(self.lv_err(lv, format!("LV {user} uses it")));
        }
        Ok(i)
    }

    /// The other LVs whose segments name LV `lv` (a snapshot of its origin, a pool of
    /// its data and metadata, a mirror of its images ...): its blocks are theirs too.
    pub fn users(&self, lv: &str) -> Vec<&str> {
        self.lvs
            .iter()
            .filter(|other| {
                other.name != lv
                    && other
                        .segments
                        .iter()
                        .any(|s| s.items.iter().any(|it| names(it, lv)))
            })
            .map(|other| other.name.as_str())
            .collect()
    }

    /// Reduce LV `lv` to `new_extent_count` extents, dropping or trimming its last
    /// segments.
    pub fn reduce_lv(&mut self, lv: &str, new_extent_count: u64) -> Result<(), LvmError> {
        let i = self.editable(lv)?;
        let l = &self.lvs[i];
        if new_extent_count == 0 {
            return Err(self.lv_err(lv, "cannot be reduced to no extents (remove it instead)"));
        }
        if new_extent_count > l.extent_count {
            return Err(self.lv_err(
                lv,
                format!(
                    "cannot be reduced to {new_extent_count} extents: it has {}",
                    l.extent_count
                ),
            ));
        }
        let l = &mut self.lvs[i];
        l.segments.retain(|s| s.start_extent < new_extent_count);
        if let Some(last) = l.segments.last_mut() {
            last.extent_count = new_extent_count - last.start_extent;
        }
        l.extent_count = new_extent_count;
        Ok(())
    }

    /// Remove LV `lv`.
    pub fn remove_lv(&mut self, lv: &str) -> Result<(), LvmError> {
        let i = self.editable(lv)?;
        self.lvs.remove(i);
        Ok(())
    }

    /// Every area of PV `pv_key`, sorted by start.
    fn areas(&self, pv_key: &str) -> Vec<Area> {
        let mut out = Vec::new();
        for (li, l) in self.lvs.iter().enumerate() {
            for (si, s) in l.segments.iter().enumerate() {
                match &s.kind {
                    SegmentKind::Linear { pv, start_pe } => {
                        if pv == pv_key {
                            out.push(Area {
                                start: *start_pe,
                                count: s.extent_count,
                                owner: Some((li, si)),
                            });
                        }
                    }
                    SegmentKind::Other { seg_type } => {
                        // Not validated when read (their layout is the segment type's):
                        // kept inside the PV, so the arithmetic on them cannot overflow.
                        let pe_count = self.pv(pv_key).map_or(0, |p| p.pe_count);
                        for (start, count) in fixed_areas(s, seg_type, pv_key) {
                            let start = start.min(pe_count);
                            out.push(Area {
                                start,
                                count: count.min(pe_count - start),
                                owner: None,
                            });
                        }
                    }
                }
            }
        }
        out.sort_by_key(|a| a.start);
        out
    }

    /// The first PE after the last allocated PE of PV `pv_key` (0 when none is).
    pub fn used_pe_end(&self, pv_key: &str) -> u64 {
        self.areas(pv_key)
            .iter()
            .map(|a| a.start.saturating_add(a.count))
            .max()
            .unwrap_or(0)
    }

    /// The image byte ranges of the extents no segment holds, on every PV on the disk
    /// (free space of the VG: its content is garbage nobody reads, so a dump may leave
    /// it out).
    pub fn free_ranges(&self) -> Vec<std::ops::Range<u64>> {
        let mut out = Vec::new();
        for pv in &self.pvs {
            if pv.device.is_none() {
                continue;
            }
            let base = pv.offset + pv.pe_start;
            let mut next = 0u64;
            // Never past the device: metadata may claim a larger PV than its partition.
            let end = pv.device_end;
            let mut push = |from: u64, to: u64| {
                let (a, b) = (
                    (base + from * self.extent_size).min(end),
                    (base + to * self.extent_size).min(end),
                );
                if b > a {
                    out.push(a..b);
                }
            };
            for a in self.areas(&pv.key) {
                push(next, a.start.min(pv.pe_count));
                next = next.max(a.start.saturating_add(a.count));
            }
            push(next, pv.pe_count);
        }
        out
    }

    /// Plan moving the allocated extents of PV `pv_key` down so they end as early as
    /// possible, and change the segments accordingly. Extents of segments that are not
    /// linear stay where they are; a linear segment may be split around them. The moves
    /// are returned in the order they must be copied: each one's target is below its
    /// source and holds nothing that is still to be copied.
    pub fn compact(&mut self, pv_key: &str) -> Vec<ExtentMove> {
        let areas = self.areas(pv_key);
        if areas.len() > MAX_AREAS {
            return Vec::new();
        }
        // Occupied runs that are not the area being placed: fixed areas, areas already
        // placed (at their new place), areas not yet placed (at their old place).
        let mut placed: Vec<(u64, u64)> = Vec::new();
        let mut moves = Vec::new();
        // (LV, segment) -> its pieces (PE, count), in logical order.
        let mut pieces: Vec<(SegId, Vec<(u64, u64)>)> = Vec::new();
        for (ai, a) in areas.iter().enumerate() {
            let Some(owner) = a.owner else { continue };
            let mut occupied: Vec<(u64, u64)> = placed.clone();
            for (bi, b) in areas.iter().enumerate() {
                if bi != ai && (b.owner.is_none() || bi > ai) {
                    occupied.push((b.start, b.count));
                }
            }
            occupied.sort();
            let mut remaining = a.count;
            let mut src = a.start;
            let mut mine = Vec::new();
            while remaining > 0 {
                let (p, run) = lowest_free(&occupied);
                let len = remaining.min(run);
                if p != src {
                    moves.push(ExtentMove {
                        pv: pv_key.to_string(),
                        from_pe: src,
                        to_pe: p,
                        count: len,
                    });
                }
                occupied.push((p, len));
                occupied.sort();
                placed.push((p, len));
                mine.push((p, len));
                src += len;
                remaining -= len;
            }
            pieces.push((owner, mine));
        }

        // Rewrite the segments: each moved one becomes its pieces; then merge neighbours.
        for (li, l) in self.lvs.iter_mut().enumerate() {
            let mut segs: Vec<Segment> = Vec::new();
            for (si, s) in l.segments.iter().enumerate() {
                match pieces.iter().find(|(o, _)| *o == (li, si)) {
                    Some((_, ps)) => {
                        let mut logical = s.start_extent;
                        for &(pe, count) in ps {
                            segs.push(Segment {
                                start_extent: logical,
                                extent_count: count,
                                kind: SegmentKind::Linear {
                                    pv: pv_key.to_string(),
                                    start_pe: pe,
                                },
                                items: s.items.clone(),
                            });
                            logical += count;
                        }
                    }
                    None => segs.push(s.clone()),
                }
            }
            l.segments = merge(segs);
        }
        moves
    }

    /// The smallest size, in bytes, to resize PV `pv_key` to: up to its last used extent
    /// (at least one, and at least the 2 MiB under which the LVM tools ignore a device),
    /// plus a metadata area at its end moved right after them. `None` for a PV not on
    /// the disk.
    pub fn min_pv_size(&self, pv_key: &str) -> Option<u64> {
        let pv = self.pv(pv_key)?;
        let disk = self.disks.iter().find(|d| d.key == pv_key)?;
        // At least one extent, and at least LVM's default `pv_min_size`: the tools
        // ignore a smaller device, and the VG would miss a PV.
        // Saturating: hostile metadata can make these as large as it likes.
        let used = self.used_pe_end(pv_key).max(1);
        let used_end = pv
            .pe_start
            .saturating_add(used.saturating_mul(self.extent_size))
            .max(PV_MIN_SIZE);
        let tail = disk
            .label
            .mdas
            .iter()
            .filter(|m| m.offset >= pv.pe_start)
            .fold(0u64, |t, m| t.saturating_add(m.size));
        let align = if tail == 0 { SECTOR } else { TAIL_MDA_ALIGN };
        Some(
            used_end
                .div_ceil(align)
                .saturating_mul(align)
                .saturating_add(tail),
        )
    }

    /// Shrink (or grow) PV `pv_key` to `new_dev_size` bytes: its extents must all lie
    /// below the new end, and a metadata area at the PV's end moves to the new end.
    pub fn resize_pv(&mut self, pv_key: &str, new_dev_size: u64) -> Result<(), LvmError> {
        let extent = self.extent_size;
        let used = self.used_pe_end(pv_key);
        let pi = self
            .pvs
            .iter()
            .position(|p| p.key == pv_key)
            .ok_or_else(|| LvmError::NoSuchPv {
                vg: self.name.clone(),
                pv: pv_key.to_string(),
            })?;
        let pv = &self.pvs[pi];
        let Some(di) = self.disks.iter().position(|d| d.key == pv_key) else {
            return Err(self.pv_err(pv_key, "is not on this disk"));
        };
        if !new_dev_size.is_multiple_of(SECTOR) {
            return Err(self.pv_err(
                pv_key,
                format!("{new_dev_size} bytes is not a whole number of sectors"),
            ));
        }
        let device_size = pv.device_end - pv.offset;
        if new_dev_size > device_size {
            return Err(self.pv_err(
                pv_key,
                format!("cannot be resized to {new_dev_size} bytes: its device has {device_size}"),
            ));
        }
        let pe_start = pv.pe_start;
        let used_end = pe_start + used * extent;
        // Metadata areas after the first extent sit at the PV's end and move with it.
        let label = &self.disks[di].label;
        let mut mdas = label.mdas.clone();
        let mut data_end = new_dev_size;
        let mut moved = Vec::new();
        for (i, m) in mdas.iter_mut().enumerate() {
            if m.offset < pe_start {
                continue;
            }
            let Some(start) = new_dev_size.checked_sub(m.size) else {
                return Err(self.pv_err(pv_key, "its metadata area does not fit the new size"));
            };
            let start = start / TAIL_MDA_ALIGN * TAIL_MDA_ALIGN;
            *m = Locn {
                offset: start,
                size: new_dev_size - start,
            };
            data_end = data_end.min(start);
            moved.push(i);
        }
        if data_end < used_end.max(pe_start) {
            return Err(self.pv_err(
                pv_key,
                format!(
                    "cannot be resized to {new_dev_size} bytes: its extents end at byte {used_end}"
                ),
            ));
        }
        let pe_count = (data_end - pe_start) / extent;
        if pe_count < used {
            return Err(self.pv_err(
                pv_key,
                format!("cannot be resized to {new_dev_size} bytes: {used} extents are in use"),
            ));
        }
        let disk = &mut self.disks[di];
        for i in moved {
            disk.headers[i] = Some(MdaHeader {
                start: mdas[i].offset,
                size: mdas[i].size,
                locns: Vec::new(),
            });
            debug_assert!(mdas[i].size > MDA_HEADER_SIZE);
        }
        disk.label.mdas = mdas;
        disk.label.device_size = new_dev_size;
        let pv = &mut self.pvs[pi];
        pv.dev_size = new_dev_size;
        pv.pe_count = pe_count;
        Ok(())
    }
}

/// Whether `item` (a segment's) names `lv` in a string value.
fn names(item: &Item, lv: &str) -> bool {
    fn value(v: &Value, lv: &str) -> bool {
        match v {
            Value::Str(s) => s == lv,
            Value::Array(a) => a.iter().any(|v| value(v, lv)),
            _ => false,
        }
    }
    match item {
        Item::Pair(_, v) => value(v, lv),
        Item::Section(_, items) => items.iter().any(|i| names(i, lv)),
    }
}

/// The (start, count) areas of PV `pv_key` a segment of another kind holds: its
/// `stripes`/`mirrors`-style arrays of ("pvN", start) pairs.
fn fixed_areas(s: &Segment, seg_type: &str, pv_key: &str) -> Vec<(u64, u64)> {
    let per_area = if seg_type == "striped" {
        let stripes = super::text::int(&s.items, "stripe_count")
            .and_then(|c| u64::try_from(c).ok())
            .filter(|&c| c > 0)
            .unwrap_or(1);
        s.extent_count / stripes
    } else {
        s.extent_count
    };
    let mut out = Vec::new();
    for item in &s.items {
        let Item::Pair(_, Value::Array(a)) = item else {
            continue;
        };
        for w in a.windows(2) {
            if let [Value::Str(pv), Value::Int(start)] = w {
                if pv == pv_key {
                    if let Ok(start) = u64::try_from(*start) {
                        out.push((start, per_area));
                    }
                }
            }
        }
    }
    out
}

/// The lowest PE no run of `occupied` (sorted) holds, and how many free PEs follow it
/// (`u64::MAX - p` when nothing is above).
fn lowest_free(occupied: &[(u64, u64)]) -> (u64, u64) {
    let mut p = 0u64;
    for &(s, c) in occupied {
        if s > p {
            return (p, s - p);
        }
        p = p.max(s.saturating_add(c));
    }
    (p, u64::MAX - p)
}

/// Join neighbouring linear segments that continue each other on the same PV.
fn merge(segs: Vec<Segment>) -> Vec<Segment> {
    let mut out: Vec<Segment> = Vec::new();
    for s in segs {
        if let Some(last) = out.last_mut() {
            if let (
                SegmentKind::Linear {
                    pv: a,
                    start_pe: sa,
                },
                SegmentKind::Linear {
                    pv: b,
                    start_pe: sb,
                },
            ) = (&last.kind, &s.kind)
            {
                if a == b && sa + last.extent_count == *sb {
                    last.extent_count += s.extent_count;
                    continue;
                }
            }
        }
        out.push(s);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_free_runs() {
        assert_eq!(lowest_free(&[]), (0, u64::MAX));
        assert_eq!(lowest_free(&[(0, 2), (5, 1)]), (2, 3));
        assert_eq!(lowest_free(&[(0, 2), (1, 3), (4, 1)]), (5, u64::MAX - 5));
    }
}
