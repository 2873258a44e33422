//! LVM2's binary structures: the label (one of sectors 0-3 of a PV, "LABELONE") with the
//! PV header after it, and the header of a metadata area (the start of a circular
//! buffer of text metadata). All little-endian, all checksummed with LVM's CRC.
//!
//! Every offset and size read here is checked against the bounds the caller gives (the
//! device size, the metadata area size) before anything else uses it.

use snf_core::bytes::{le32, le64};

/// LVM's sector.
pub const SECTOR: u64 = 512;

/// Bytes of sectors 0-3, where a label may be.
pub const LABEL_SCAN: usize = 4 * SECTOR as usize;

/// The metadata area header's size; the circular buffer follows it.
pub const MDA_HEADER_SIZE: u64 = 512;

const INITIAL_CRC: u32 = 0xf597a6cf;
const LABEL_ID: &[u8; 8] = b"LABELONE";
const LABEL_TYPE: &[u8; 8] = b"LVM2 001";
const MDA_MAGIC: &[u8; 16] = b" LVM2 x[5A%r0N*>";
/// `raw_locn.flags`: this metadata area is ignored (`pvchange --metadataignore`).
pub const RAW_LOCN_IGNORED: u32 = 1;

/// LVM's CRC-32: the reflected IEEE polynomial with its own initial value and no final
/// inversion (crc32fast's inverts on the way in and out, so undo both).
pub fn crc(data: &[u8]) -> u32 {
    crc_continue(INITIAL_CRC, data)
}

/// Continue an LVM CRC over more bytes (the metadata text may wrap around the buffer).
pub fn crc_continue(crc: u32, data: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new_with_initial(!crc);
    h.update(data);
    !h.finalize()
}

/// A byte range of the device (`size` 0 in a data area: up to the device's end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locn {
    pub offset: u64,
    pub size: u64,
}

/// A PV label with its PV header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    /// Sector (0-3) the label is in.
    pub sector: u64,
    /// The PV's UUID, 32 characters without dashes.
    pub uuid: String,
    /// The device size the PV was made for, in bytes.
    pub device_size: u64,
    pub data_areas: Vec<Locn>,
    pub mdas: Vec<Locn>,
    /// The header extension (version 2): version, flags, bootloader areas.
    pub extension: Option<(u32, u32, Vec<Locn>)>,
}

/// Where the PV header sits after the label header, as LVM writes it.
const PV_HEADER_AT: usize = 32;

/// Find and check the label in `sectors` (sectors 0-3 of the device). `Ok(None)`: there
/// is no label (not a PV); `Err`: there is one, but it is damaged.
pub fn read_label(sectors: &[u8]) -> Result<Option<Label>, String> {
    for (n, sector) in sectors.chunks_exact(SECTOR as usize).take(4).enumerate() {
        if &sector[..8] != LABEL_ID {
            continue;
        }
        let n = n as u64;
        if le64(sector, 8) != n {
            return Err(format!(
                "label in sector {n} names sector {}",
                le64(sector, 8)
            ));
        }
        if crc(&sector[20..]) != le32(sector, 16) {
            return Err(format!("label in sector {n} has a bad checksum"));
        }
        if &sector[24..32] != LABEL_TYPE {
            return Err(format!(
                "label in sector {n} is of unknown type {:?}",
                String::from_utf8_lossy(&sector[24..32])
            ));
        }
        let at = le32(sector, 20) as usize;
        if !(PV_HEADER_AT..=SECTOR as usize - 40).contains(&at) {
            return Err(format!(
                "label in sector {n}: PV header at {at} is out of the sector"
            ));
        }
        return parse_pv_header(&sector[at..], n).map(Some);
    }
    Ok(None)
}

fn parse_pv_header(b: &[u8], sector: u64) -> Result<Label, String> {
    let uuid = &b[..32];
    if !uuid.iter().all(|c| c.is_ascii_alphanumeric()) {
        return Err("PV header: the PV UUID is not text".into());
    }
    let device_size = le64(b, 32);
    let mut pos = 40;
    let list = |pos: &mut usize| -> Result<Vec<Locn>, String> {
        let mut out = Vec::new();
        loop {
            if *pos + 16 > b.len() {
                return Err("PV header: an area list runs past the sector".into());
            }
            let l = Locn {
                offset: le64(b, *pos),
                size: le64(b, *pos + 8),
            };
            *pos += 16;
            if l.offset == 0 {
                return Ok(out);
            }
            out.push(l);
        }
    };
    let data_areas = list(&mut pos)?;
    let mdas = list(&mut pos)?;
    let mut extension = None;
    if pos + 8 <= b.len() {
        let version = le32(b, pos);
        let flags = le32(b, pos + 4);
        if version != 0 {
            pos += 8;
            extension = Some((version, flags, list(&mut pos)?));
        }
    }
    for m in &mdas {
        if m.offset < SECTOR
            || m.size <= MDA_HEADER_SIZE
            || m.offset.checked_add(m.size).is_none_or(|e| e > device_size)
        {
            return Err(format!(
                "PV header: metadata area at {} of {} bytes is outside the device of {device_size} bytes",
                m.offset, m.size
            ));
        }
    }
    Ok(Label {
        sector,
        uuid: String::from_utf8_lossy(uuid).into_owned(),
        device_size,
        data_areas,
        mdas,
        extension,
    })
}

/// The label sector for `label`, checksummed.
pub fn label_sector(label: &Label) -> Vec<u8> {
    let mut s = vec![0u8; SECTOR as usize];
    s[..8].copy_from_slice(LABEL_ID);
    s[8..16].copy_from_slice(&label.sector.to_le_bytes());
    s[20..24].copy_from_slice(&(PV_HEADER_AT as u32).to_le_bytes());
    s[24..32].copy_from_slice(LABEL_TYPE);
    let mut body = Vec::new();
    body.extend_from_slice(label.uuid.as_bytes());
    body.extend_from_slice(&label.device_size.to_le_bytes());
    let put = |list: &[Locn], body: &mut Vec<u8>| {
        for l in list {
            body.extend_from_slice(&l.offset.to_le_bytes());
            body.extend_from_slice(&l.size.to_le_bytes());
        }
        body.extend_from_slice(&[0u8; 16]);
    };
    put(&label.data_areas, &mut body);
    put(&label.mdas, &mut body);
    if let Some((version, flags, boot)) = &label.extension {
        body.extend_from_slice(&version.to_le_bytes());
        body.extend_from_slice(&flags.to_le_bytes());
        put(boot, &mut body);
    }
    let n = body.len().min(SECTOR as usize - PV_HEADER_AT);
    s[PV_HEADER_AT..PV_HEADER_AT + n].copy_from_slice(&body[..n]);
    let c = crc(&s[20..]);
    s[16..20].copy_from_slice(&c.to_le_bytes());
    s
}

/// One metadata copy in a metadata area: `size` bytes of text at `offset` from the
/// area's start (wrapping to just after the header at the area's end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawLocn {
    pub offset: u64,
    pub size: u64,
    pub checksum: u32,
    pub flags: u32,
}

/// A metadata area header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MdaHeader {
    /// The area's offset on the device.
    pub start: u64,
    pub size: u64,
    /// The committed copy first; LVM keeps a second slot for a precommitted one.
    pub locns: Vec<RawLocn>,
}

/// Check the header of the metadata area `area` (`b`: its first 512 bytes).
pub fn read_mda_header(b: &[u8], area: Locn) -> Result<MdaHeader, String> {
    if b.len() < MDA_HEADER_SIZE as usize {
        return Err("metadata area header is truncated".into());
    }
    if &b[4..20] != MDA_MAGIC {
        return Err("metadata area header has no LVM2 magic".into());
    }
    if crc(&b[4..MDA_HEADER_SIZE as usize]) != le32(b, 0) {
        return Err("metadata area header has a bad checksum".into());
    }
    let version = le32(b, 20);
    if version != 1 {
        return Err(format!(
            "metadata area header has unknown version {version}"
        ));
    }
    let start = le64(b, 24);
    let size = le64(b, 32);
    if start != area.offset || size != area.size {
        return Err(format!(
            "metadata area header says {size} bytes at {start}, the PV header {} at {}",
            area.size, area.offset
        ));
    }
    let mut locns = Vec::new();
    let mut pos = 40;
    while pos + 24 <= MDA_HEADER_SIZE as usize {
        let l = RawLocn {
            offset: le64(b, pos),
            size: le64(b, pos + 8),
            checksum: le32(b, pos + 16),
            flags: le32(b, pos + 20),
        };
        if l.offset == 0 {
            break;
        }
        locns.push(l);
        pos += 24;
    }
    Ok(MdaHeader { start, size, locns })
}

/// The 512-byte header for `h`, checksummed.
pub fn mda_header_bytes(h: &MdaHeader) -> Vec<u8> {
    let mut b = vec![0u8; MDA_HEADER_SIZE as usize];
    b[4..20].copy_from_slice(MDA_MAGIC);
    b[20..24].copy_from_slice(&1u32.to_le_bytes());
    b[24..32].copy_from_slice(&h.start.to_le_bytes());
    b[32..40].copy_from_slice(&h.size.to_le_bytes());
    for (i, l) in h.locns.iter().take(19).enumerate() {
        let p = 40 + 24 * i;
        b[p..p + 8].copy_from_slice(&l.offset.to_le_bytes());
        b[p + 8..p + 16].copy_from_slice(&l.size.to_le_bytes());
        b[p + 16..p + 20].copy_from_slice(&l.checksum.to_le_bytes());
        b[p + 20..p + 24].copy_from_slice(&l.flags.to_le_bytes());
    }
    let c = crc(&b[4..]);
    b[..4].copy_from_slice(&c.to_le_bytes());
    b
}

/// Where `size` bytes of text at `offset` in an area of `area_size` bytes are: one or
/// two (offset, length) pieces relative to the area's start, or why that is impossible.
pub fn text_pieces(offset: u64, size: u64, area_size: u64) -> Result<Vec<(u64, u64)>, String> {
    let buf = area_size.saturating_sub(MDA_HEADER_SIZE);
    if offset < MDA_HEADER_SIZE || offset >= area_size || size == 0 || size > buf {
        return Err(format!(
            "metadata copy of {size} bytes at {offset} does not fit the area of {area_size} bytes"
        ));
    }
    let first = size.min(area_size - offset);
    let mut v = vec![(offset, first)];
    if first < size {
        v.push((MDA_HEADER_SIZE, size - first));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// LVM's own table-driven `calc_crc`, to check the crc32fast shortcut against.
    fn lvm_calc_crc(initial: u32, buf: &[u8]) -> u32 {
        const TAB: [u32; 16] = [
            0x00000000, 0x1db71064, 0x3b6e20c8, 0x26d930ac, 0x76dc4190, 0x6b6b51f4, 0x4db26158,
            0x5005713c, 0xedb88320, 0xf00f9344, 0xd6d6a3e8, 0xcb61b38c, 0x9b64c2b0, 0x86d3d2d4,
            0xa00ae278, 0xbdbdf21c,
        ];
        let mut crc = initial;
        for &b in buf {
            crc ^= b as u32;
            crc = (crc >> 4) ^ TAB[(crc & 0xf) as usize];
            crc = (crc >> 4) ^ TAB[(crc & 0xf) as usize];
        }
        crc
    }

    #[test]
    fn crc_is_lvms() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
        assert_eq!(crc(&data), lvm_calc_crc(INITIAL_CRC, &data));
        assert_eq!(crc_continue(crc(&data[..300]), &data[300..]), crc(&data));
    }

    #[test]
    fn label_round_trip() {
        let label = Label {
            sector: 1,
            uuid: "S0W14JM7j9d75XqMVmpxX5di8qqdwbmt".into(),
            device_size: 31457280,
            data_areas: vec![Locn {
                offset: 1 << 20,
                size: 0,
            }],
            mdas: vec![Locn {
                offset: 4096,
                size: 1044480,
            }],
            extension: Some((2, 1, vec![])),
        };
        let s = label_sector(&label);
        let mut sectors = vec![0u8; LABEL_SCAN];
        sectors[512..1024].copy_from_slice(&s);
        assert_eq!(read_label(&sectors).unwrap(), Some(label));
        sectors[600] ^= 1;
        assert!(read_label(&sectors).is_err());
        assert_eq!(read_label(&vec![0u8; LABEL_SCAN]).unwrap(), None);
    }

    #[test]
    fn mda_header_round_trip_and_wrap() {
        let area = Locn {
            offset: 4096,
            size: 1 << 20,
        };
        let h = MdaHeader {
            start: 4096,
            size: 1 << 20,
            locns: vec![RawLocn {
                offset: 512,
                size: 100,
                checksum: 5,
                flags: 0,
            }],
        };
        let b = mda_header_bytes(&h);
        assert_eq!(read_mda_header(&b, area).unwrap(), h);
        assert!(read_mda_header(
            &b,
            Locn {
                offset: 0,
                size: 1 << 20
            }
        )
        .is_err());
        assert_eq!(
            text_pieces((1 << 20) - 10, 30, 1 << 20).unwrap(),
            vec![((1 << 20) - 10, 10), (512, 20)]
        );
        assert!(text_pieces(100, 30, 1 << 20).is_err());
        assert!(text_pieces(512, 1 << 20, 1 << 20).is_err());
    }
}
