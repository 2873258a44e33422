//! LVM2 in-process: reading, editing and writing back the metadata of the physical
//! volumes in an image file, without device-mapper, loop devices or root.
//!
//! * [`scan`] reads the labels and metadata areas of the given devices (partitions or
//!   the whole disk) and returns each volume group with its newest valid metadata.
//! * [`VolumeGroup::lv_extents`] says where an LV's bytes are in the image, so the
//!   filesystem backends can read and write inside it like inside a partition.
//! * The editing methods (`reduce_lv`, `remove_lv`, `compact`, `resize_pv`) change the
//!   VG in memory; [`VolumeGroup::write`] writes it back to every metadata area of its
//!   PVs (seqno + 1) and [`apply_moves`] copies the data that `compact` moved.
//!
//! Only linear LVs (LVM's "striped" segments with one stripe) map to bytes; everything
//! else (striped, mirror, raid, thin, cache, snapshot) is kept as it is and reported as
//! unsupported when asked for its bytes.

mod edit;
mod moves;
pub mod ondisk;
pub mod text;
mod write;

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub use moves::apply_moves;
use ondisk::{Label, Locn, MdaHeader, SECTOR};
use text::{Item, Value};

/// A device that may be an LVM physical volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PvDevice {
    /// Partition number; 0 is the whole disk.
    pub id: u32,
    /// Bytes into the image.
    pub offset: u64,
    /// Bytes.
    pub size: u64,
}

/// What [`scan`] found.
#[derive(Debug, Clone)]
pub struct Scan {
    pub vgs: Vec<VolumeGroup>,
    /// Things that were wrong but did not stop the scan, one line each (a bad metadata
    /// copy, an older copy, a damaged label).
    pub warnings: Vec<String>,
}

/// A volume group, as its newest valid metadata describes it.
#[derive(Debug, Clone)]
pub struct VolumeGroup {
    pub name: String,
    pub uuid: String,
    pub seqno: u64,
    /// Bytes.
    pub extent_size: u64,
    pub pvs: Vec<PhysicalVolume>,
    pub lvs: Vec<LogicalVolume>,
    /// The VG section's items, for write-back of what we do not model.
    body: Vec<Item>,
    /// The top-level items after the VG section (contents, version, description ...).
    top: Vec<Item>,
    /// The label and metadata areas of each PV found on a device.
    disks: Vec<PvDisk>,
}

/// A PV's on-disk label and metadata areas.
#[derive(Debug, Clone)]
struct PvDisk {
    key: String,
    label: Label,
    /// The header of each of `label.mdas` (in the same order), `None` when damaged.
    headers: Vec<Option<MdaHeader>>,
}

/// A physical volume of a VG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhysicalVolume {
    /// Its name in the metadata ("pv0").
    pub key: String,
    pub uuid: String,
    /// The [`PvDevice::id`] it is on; `None` when it is not among the scanned devices.
    pub device: Option<u32>,
    /// The device's byte offset in the image (0 when `device` is `None`).
    pub offset: u64,
    /// Bytes.
    pub dev_size: u64,
    /// Bytes from the device's start to the first extent.
    pub pe_start: u64,
    pub pe_count: u64,
    /// Where the device ends in the image: no extent may reach past it.
    device_end: u64,
}

/// A logical volume.
#[derive(Debug, Clone, PartialEq)]
pub struct LogicalVolume {
    pub name: String,
    pub uuid: String,
    pub extent_count: u64,
    /// Hidden LVs are parts of others (thin pool data, mirror images ...).
    pub visible: bool,
    pub segments: Vec<Segment>,
    /// The LV section's items other than its segments.
    items: Vec<Item>,
}

/// A run of an LV's logical extents.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub start_extent: u64,
    pub extent_count: u64,
    pub kind: SegmentKind,
    /// The segment section's items, for write-back.
    items: Vec<Item>,
}

/// What a segment maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmentKind {
    /// Consecutive extents of one PV (`pv`: its key), from `start_pe`.
    Linear { pv: String, start_pe: u64 },
    /// Anything else (striped over several PVs, mirror, raid*, thin, thin-pool, cache,
    /// snapshot ...): kept, never mapped.
    Other { seg_type: String },
}

/// One contiguous piece of an LV in the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// The [`PvDevice::id`] it is on.
    pub device: u32,
    pub image_offset: u64,
    pub len: u64,
}

/// `count` extents of PV `pv` that move from `from_pe` to `to_pe`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtentMove {
    pub pv: String,
    pub from_pe: u64,
    pub to_pe: u64,
    pub count: u64,
}

/// What went wrong reading, editing or writing LVM2 metadata.
#[derive(Debug, thiserror::Error)]
pub enum LvmError {
    #[error("{}: {}", .path.display(), crate::media::io_reason(.source))]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// No metadata copy of a PV could be used and no other PV describes its VG.
    #[error("{device}: no valid LVM metadata ({reason})")]
    NoValidMetadata { device: String, reason: String },
    /// The metadata parsed but makes no sense.
    #[error("VG {vg}: bad metadata: {reason}")]
    BadMetadata { vg: String, reason: String },
    #[error("LV {vg}/{lv}: unsupported LV type {seg_type}")]
    UnsupportedLvType {
        vg: String,
        lv: String,
        seg_type: String,
    },
    #[error("LV {vg}/{lv}: its PV {pv_uuid} is not on this disk")]
    MissingPv {
        vg: String,
        lv: String,
        pv_uuid: String,
    },
    #[error("VG {vg}: no LV named {lv}")]
    NoSuchLv { vg: String, lv: String },
    #[error("VG {vg}: no PV {pv}")]
    NoSuchPv { vg: String, pv: String },
    /// An edit that would break the LV.
    #[error("LV {vg}/{lv}: {reason}")]
    LvEdit {
        vg: String,
        lv: String,
        reason: String,
    },
    /// An edit that would break the PV.
    #[error("PV {pv} of VG {vg}: {reason}")]
    PvEdit {
        vg: String,
        pv: String,
        reason: String,
    },
    #[error("{device}: the metadata of VG {vg} ({size} bytes) does not fit in its metadata area of {space} bytes")]
    MetadataTooBig {
        device: String,
        vg: String,
        size: u64,
        space: u64,
    },
    #[error(transparent)]
    Cancelled(#[from] snf_core::Cancelled),
}

/// How messages name a device.
pub fn device_name(id: u32) -> String {
    if id == 0 {
        "PV on the whole disk".into()
    } else {
        format!("PV on partition {id}")
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LvmError + '_ {
    move |source| LvmError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Read `len` bytes at `offset` of `file`.
fn read_at(file: &File, path: &Path, offset: u64, len: u64) -> Result<Vec<u8>, LvmError> {
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, offset).map_err(io_err(path))?;
    Ok(buf)
}

/// One metadata copy found on a device.
struct Copy {
    device: u32,
    seqno: u64,
    vg_uuid: String,
    vg_name: String,
    items: Vec<Item>,
}

/// A device with a valid label.
struct Labelled {
    dev: PvDevice,
    label: Label,
    headers: Vec<Option<MdaHeader>>,
    /// Why each unusable copy could not be used (for the error when none is).
    problems: Vec<String>,
    has_copy: bool,
}

/// Read the LVM2 labels and metadata of `devices` in `image`. Devices without an LVM
/// label are skipped. Returns every VG found; a VG whose PVs are not all among
/// `devices` is returned with those PVs' `device` `None`.
pub fn scan(image: &Path, devices: &[PvDevice]) -> Result<Scan, LvmError> {
    let file = File::open(image).map_err(io_err(image))?;
    let mut warnings = Vec::new();
    let mut copies: Vec<Copy> = Vec::new();
    let mut labelled: Vec<Labelled> = Vec::new();
    for dev in devices {
        if dev.size < ondisk::LABEL_SCAN as u64 {
            continue;
        }
        let sectors = read_at(&file, image, dev.offset, ondisk::LABEL_SCAN as u64)?;
        let label = match ondisk::read_label(&sectors) {
            Ok(Some(l)) => l,
            Ok(None) => continue,
            Err(reason) => {
                warnings.push(format!("{}: {reason}; ignored", device_name(dev.id)));
                continue;
            }
        };
        let mut l = Labelled {
            dev: *dev,
            headers: Vec::new(),
            problems: Vec::new(),
            has_copy: false,
            label,
        };
        read_copies(&file, image, &mut l, &mut copies)?;
        labelled.push(l);
    }

    // The newest copy of each VG, by seqno.
    let mut best: BTreeMap<String, usize> = BTreeMap::new();
    for (i, c) in copies.iter().enumerate() {
        match best.get(&c.vg_uuid) {
            Some(&j) if copies[j].seqno >= c.seqno => {}
            _ => {
                best.insert(c.vg_uuid.clone(), i);
            }
        }
    }
    for l in &labelled {
        for p in &l.problems {
            warnings.push(format!("{}: {p}", device_name(l.dev.id)));
        }
    }
    for c in &copies {
        let newest = &copies[best[&c.vg_uuid]];
        if c.seqno < newest.seqno {
            warnings.push(format!(
                "{}: metadata of VG {} is older (seqno {}) than on {} (seqno {}); using the newer",
                device_name(c.device),
                c.vg_name,
                c.seqno,
                device_name(newest.device),
                newest.seqno
            ));
        }
    }

    let mut vgs = Vec::new();
    for &i in best.values() {
        vgs.push(build(&copies[i], &labelled)?);
    }
    // A PV with metadata areas but no usable copy, which no VG claims: its VG is lost.
    for l in &labelled {
        let claimed = vgs
            .iter()
            .any(|vg: &VolumeGroup| vg.pvs.iter().any(|p| p.device == Some(l.dev.id)));
        if !claimed && !l.has_copy && !l.problems.is_empty() {
            return Err(LvmError::NoValidMetadata {
                device: device_name(l.dev.id),
                reason: l.problems.join("; "),
            });
        }
    }
    vgs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Scan { vgs, warnings })
}

/// Read every metadata area of a labelled device, keeping the valid copies.
fn read_copies(
    file: &File,
    image: &Path,
    l: &mut Labelled,
    copies: &mut Vec<Copy>,
) -> Result<(), LvmError> {
    let mut first_good: Option<usize> = None;
    let mut bad: Vec<(usize, String)> = Vec::new();
    for (n, area) in l.label.mdas.clone().into_iter().enumerate() {
        let (header, copy) = read_area(file, image, l.dev, area);
        l.headers.push(header);
        match copy {
            Ok(Some(c)) => {
                copies.push(c);
                l.has_copy = true;
                first_good.get_or_insert(n);
            }
            Ok(None) => {}
            Err(reason) => bad.push((n, reason)),
        }
    }
    for (n, reason) in bad {
        let using = match first_good {
            Some(g) => format!("; using copy {}", g + 1),
            None => String::new(),
        };
        l.problems
            .push(format!("metadata copy {}: {reason}{using}", n + 1));
    }
    Ok(())
}

/// The header and the committed copy of one metadata area. `Ok(None)`: the area holds
/// no metadata (a PV in no VG) or is ignored.
#[allow(clippy::type_complexity)]
fn read_area(
    file: &File,
    image: &Path,
    dev: PvDevice,
    area: Locn,
) -> (Option<MdaHeader>, Result<Option<Copy>, String>) {
    if area
        .offset
        .checked_add(area.size)
        .is_none_or(|e| e > dev.size)
    {
        return (
            None,
            Err("metadata area lies past the end of the device".into()),
        );
    }
    let raw = match read_at(
        file,
        image,
        dev.offset + area.offset,
        ondisk::MDA_HEADER_SIZE,
    ) {
        Ok(b) => b,
        Err(e) => return (None, Err(e.to_string())),
    };
    let header = match ondisk::read_mda_header(&raw, area) {
        Ok(h) => h,
        Err(e) => return (None, Err(e)),
    };
    let copy = read_text(file, image, dev, &header);
    (Some(header), copy)
}

fn read_text(
    file: &File,
    image: &Path,
    dev: PvDevice,
    header: &MdaHeader,
) -> Result<Option<Copy>, String> {
    let Some(rl) = header.locns.first() else {
        return Ok(None);
    };
    if rl.flags & ondisk::RAW_LOCN_IGNORED != 0 || rl.size == 0 {
        return Ok(None);
    }
    if rl.size > text::MAX_TEXT as u64 {
        return Err(format!("metadata of {} bytes is too large", rl.size));
    }
    let mut textbuf = Vec::with_capacity(rl.size as usize);
    for (off, len) in ondisk::text_pieces(rl.offset, rl.size, header.size)? {
        let piece = read_at(file, image, dev.offset + header.start + off, len)
            .map_err(|e| e.to_string())?;
        textbuf.extend_from_slice(&piece);
    }
    if ondisk::crc(&textbuf) != rl.checksum {
        return Err("the metadata text has a bad checksum".into());
    }
    let items = text::parse(&textbuf).map_err(|e| format!("metadata text: {e}"))?;
    let Some((vg_name, body)) = vg_section(&items) else {
        return Err("metadata text holds no volume group".into());
    };
    let vg_uuid = text::string(body, "id")
        .ok_or("metadata text: the VG has no id")?
        .to_string();
    let seqno = text::int(body, "seqno")
        .and_then(|s| u64::try_from(s).ok())
        .ok_or("metadata text: the VG has no seqno")?;
    Ok(Some(Copy {
        device: dev.id,
        seqno,
        vg_uuid,
        vg_name: vg_name.to_string(),
        items,
    }))
}

/// The first top-level section: the VG (the rest are plain pairs).
fn vg_section(items: &[Item]) -> Option<(&str, &[Item])> {
    items.iter().find_map(|i| match i {
        Item::Section(k, v) => Some((k.as_str(), v.as_slice())),
        _ => None,
    })
}

/// Largest extent size accepted, in bytes (LVM's limit is far below).
const MAX_EXTENT: u64 = 1 << 40;

fn num(items: &[Item], key: &str, what: &str) -> Result<u64, String> {
    text::int(items, key)
        .and_then(|v| u64::try_from(v).ok())
        .ok_or_else(|| format!("{what} has no valid {key}"))
}

/// The model of the VG in `copy`, its PVs matched with the labelled devices.
fn build(copy: &Copy, labelled: &[Labelled]) -> Result<VolumeGroup, LvmError> {
    let (name, body) = vg_section(&copy.items).expect("checked when read");
    let bad = |reason: String| LvmError::BadMetadata {
        vg: name.to_string(),
        reason,
    };
    let extent_sectors = num(body, "extent_size", "the VG").map_err(bad)?;
    let extent_size = extent_sectors
        .checked_mul(SECTOR)
        .filter(|&e| e > 0 && e <= MAX_EXTENT)
        .ok_or_else(|| bad(format!("extent size of {extent_sectors} sectors")))?;

    let mut pvs = Vec::new();
    let mut disks = Vec::new();
    for item in text::section(body, "physical_volumes").unwrap_or(&[]) {
        let Item::Section(key, p) = item else {
            continue;
        };
        let what = format!("PV {key}");
        let uuid = text::string(p, "id")
            .ok_or_else(|| bad(format!("{what} has no id")))?
            .to_string();
        let sectors = |k| {
            num(p, k, &what).and_then(|v| {
                v.checked_mul(SECTOR)
                    .ok_or_else(|| format!("{what}: {k} is too large"))
            })
        };
        let dev_size = sectors("dev_size").map_err(bad)?;
        let pe_start = sectors("pe_start").map_err(bad)?;
        let pe_count = num(p, "pe_count", &what).map_err(bad)?;
        let end = pe_count
            .checked_mul(extent_size)
            .and_then(|b| b.checked_add(pe_start));
        if end.is_none_or(|e| e > dev_size) {
            return Err(bad(format!(
                "{what}: {pe_count} extents from {pe_start} do not fit its {dev_size} bytes"
            )));
        }
        let bare: String = uuid.chars().filter(|&c| c != '-').collect();
        let found = labelled.iter().find(|l| l.label.uuid == bare);
        // Every byte offset computed below stays under the device's offset plus this.
        if found.is_some_and(|l| l.dev.offset.checked_add(dev_size).is_none()) {
            return Err(bad(format!("{what}: size of {dev_size} bytes")));
        }
        if let Some(l) = found {
            disks.push(PvDisk {
                key: key.clone(),
                label: l.label.clone(),
                headers: l.headers.clone(),
            });
        }
        pvs.push(PhysicalVolume {
            key: key.clone(),
            uuid,
            device: found.map(|l| l.dev.id),
            offset: found.map_or(0, |l| l.dev.offset),
            dev_size,
            pe_start,
            pe_count,
            device_end: found.map_or(0, |l| l.dev.offset + l.dev.size),
        });
    }

    let mut lvs = Vec::new();
    for item in text::section(body, "logical_volumes").unwrap_or(&[]) {
        let Item::Section(lv_name, l) = item else {
            continue;
        };
        lvs.push(build_lv(name, lv_name, l, &pvs)?);
    }

    let top = copy
        .items
        .iter()
        .filter(|i| !matches!(i, Item::Section(..)))
        .cloned()
        .collect();
    Ok(VolumeGroup {
        name: name.to_string(),
        uuid: copy.vg_uuid.clone(),
        seqno: copy.seqno,
        extent_size,
        pvs,
        lvs,
        body: body.to_vec(),
        top,
        disks,
    })
}

fn build_lv(
    vg: &str,
    name: &str,
    l: &[Item],
    pvs: &[PhysicalVolume],
) -> Result<LogicalVolume, LvmError> {
    let bad = |reason: String| LvmError::BadMetadata {
        vg: vg.to_string(),
        reason: format!("LV {name}: {reason}"),
    };
    let uuid = text::string(l, "id")
        .ok_or_else(|| bad("no id".into()))?
        .to_string();
    let mut segments = Vec::new();
    let mut items = Vec::new();
    for item in l {
        match item {
            Item::Section(k, s) if k.starts_with("segment") => {
                segments.push(build_segment(k, s, pvs).map_err(bad)?);
            }
            other => items.push(other.clone()),
        }
    }
    segments.sort_by_key(|s| s.start_extent);
    let mut next = 0u64;
    for s in &segments {
        if s.start_extent != next {
            return Err(bad(format!(
                "segments are not contiguous at extent {}",
                s.start_extent
            )));
        }
        next = next
            .checked_add(s.extent_count)
            .ok_or_else(|| bad("too many extents".into()))?;
    }
    Ok(LogicalVolume {
        name: name.to_string(),
        uuid,
        extent_count: next,
        visible: text::has_flag(l, "status", "VISIBLE"),
        segments,
        items,
    })
}

fn build_segment(key: &str, s: &[Item], pvs: &[PhysicalVolume]) -> Result<Segment, String> {
    let what = format!("segment {key}");
    let start_extent = num(s, "start_extent", &what)?;
    let extent_count = num(s, "extent_count", &what)?;
    if extent_count == 0 {
        return Err(format!("{what} has no extents"));
    }
    let seg_type = text::string(s, "type")
        .ok_or_else(|| format!("{what} has no type"))?
        .to_string();
    let kind = match (
        seg_type.as_str(),
        text::int(s, "stripe_count"),
        text::get(s, "stripes"),
    ) {
        ("striped", Some(1), Some(Value::Array(a))) => match a.as_slice() {
            [Value::Str(pv), Value::Int(start)] => {
                let start_pe =
                    u64::try_from(*start).map_err(|_| format!("{what}: negative start"))?;
                let p = pvs
                    .iter()
                    .find(|p| &p.key == pv)
                    .ok_or_else(|| format!("{what} is on unknown PV {pv}"))?;
                if start_pe
                    .checked_add(extent_count)
                    .is_none_or(|e| e > p.pe_count)
                {
                    return Err(format!(
                        "{what}: extents {start_pe}+{extent_count} are past the end of PV {pv}"
                    ));
                }
                SegmentKind::Linear {
                    pv: pv.clone(),
                    start_pe,
                }
            }
            _ => return Err(format!("{what}: bad stripes")),
        },
        _ => SegmentKind::Other { seg_type },
    };
    Ok(Segment {
        start_extent,
        extent_count,
        kind,
        items: s.to_vec(),
    })
}

impl VolumeGroup {
    /// The LV named `name`.
    pub fn lv(&self, name: &str) -> Option<&LogicalVolume> {
        self.lvs.iter().find(|l| l.name == name)
    }

    /// The PV with key `key` ("pv0").
    pub fn pv(&self, key: &str) -> Option<&PhysicalVolume> {
        self.pvs.iter().find(|p| p.key == key)
    }

    /// Where the LV's bytes are, in LV order (adjacent pieces merged).
    pub fn lv_extents(&self, lv: &str) -> Result<Vec<Extent>, LvmError> {
        let l = self.lv(lv).ok_or_else(|| LvmError::NoSuchLv {
            vg: self.name.clone(),
            lv: lv.to_string(),
        })?;
        let mut out: Vec<Extent> = Vec::new();
        for s in &l.segments {
            let SegmentKind::Linear { pv, start_pe } = &s.kind else {
                let SegmentKind::Other { seg_type } = &s.kind else {
                    unreachable!()
                };
                return Err(LvmError::UnsupportedLvType {
                    vg: self.name.clone(),
                    lv: lv.to_string(),
                    seg_type: seg_type.clone(),
                });
            };
            let p = self
                .pv(pv)
                .expect("segments name known PVs (checked when read)");
            let Some(device) = p.device else {
                return Err(LvmError::MissingPv {
                    vg: self.name.clone(),
                    lv: lv.to_string(),
                    pv_uuid: p.uuid.clone(),
                });
            };
            // In range: start_pe + count <= pe_count and pe_start + pe_count * extent
            // <= dev_size were checked when the metadata was read.
            let image_offset = p.offset + p.pe_start + start_pe * self.extent_size;
            let len = s.extent_count * self.extent_size;
            if image_offset + len > p.device_end {
                return Err(LvmError::BadMetadata {
                    vg: self.name.clone(),
                    reason: format!(
                        "LV {lv}: its extents on {} reach past the end of the device",
                        device_name(device)
                    ),
                });
            }
            match out.last_mut() {
                Some(last)
                    if last.device == device && last.image_offset + last.len == image_offset =>
                {
                    last.len += len
                }
                _ => out.push(Extent {
                    device,
                    image_offset,
                    len,
                }),
            }
        }
        Ok(out)
    }

    /// The `/dev/mapper/` name of LV `lv` (dashes doubled: vg "my-vg", lv "root" give
    /// "my--vg-root").
    pub fn mapper_name(&self, lv: &str) -> String {
        format!("{}-{}", self.name.replace('-', "--"), lv.replace('-', "--"))
    }
}
