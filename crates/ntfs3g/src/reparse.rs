//! Reparse points that are links: parsing (hostile input, every length checked) and
//! building.
//!
//! Windows has three link kinds the guest tree can follow: junctions (mount points to a
//! directory, always absolute), symbolic links (absolute or relative) and the WSL
//! symlinks (a UTF-8 POSIX target). Interix symlinks, which ntfs-3g itself creates
//! when asked for a symlink, are a plain file marked "system" whose data starts with
//! `IntxLNK\x01`; they are parsed here too.

use crate::error::{Error, Result};

/// `IO_REPARSE_TAG_MOUNT_POINT`: a junction.
pub const TAG_MOUNT_POINT: u32 = 0xA000_0003;
/// `IO_REPARSE_TAG_SYMLINK`.
pub const TAG_SYMLINK: u32 = 0xA000_000C;
/// `IO_REPARSE_TAG_LX_SYMLINK`: a symlink made by WSL.
pub const TAG_LX_SYMLINK: u32 = 0xA000_001D;
/// `IO_REPARSE_TAG_WOF`: a file compressed by Windows (CompactOS, `compact /exe`); its
/// unnamed $DATA is an empty sparse stream, the data is in a named stream.
pub const TAG_WOF: u32 = 0x8000_0017;
/// `IO_REPARSE_TAG_DEDUP`: a file whose data Windows Server deduplication moved to its
/// chunk store.
pub const TAG_DEDUP: u32 = 0x8000_0013;
const SYMLINK_FLAG_RELATIVE: u32 = 1;
/// The magic of an Interix symlink's data.
pub const INTERIX_MAGIC: &[u8; 8] = b"IntxLNK\x01";

/// Whether reparse points with `tag` are links the guest tree follows.
pub fn is_link_tag(tag: u32) -> bool {
    matches!(tag, TAG_MOUNT_POINT | TAG_SYMLINK | TAG_LX_SYMLINK)
}

/// Whether the unnamed $DATA of a file with `tag` does not hold its content (reading it
/// would give zeros).
pub fn hides_data(tag: u32) -> bool {
    matches!(tag, TAG_WOF | TAG_DEDUP)
}

/// The tag of raw reparse data, if it has one.
pub fn tag_of(data: &[u8]) -> Option<u32> {
    data.get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn u16_at(data: &[u8], at: usize) -> Option<u16> {
    data.get(at..at + 2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
}

fn utf16_at(data: &[u8], start: usize, len: usize) -> Option<String> {
    if !len.is_multiple_of(2) {
        return None;
    }
    let bytes = data.get(start..start.checked_add(len)?)?;
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16(&units).ok()
}

/// The POSIX form of a Windows path: a drive-letter path (`C:\x`, after the NT prefix
/// `\??\` is removed) becomes absolute from the guest root, whatever the letter (the
/// guest's system volume is its root); relative paths keep their `..`.
fn posix_target(win: &str, ino: u64) -> Result<String> {
    let bad = |why| Error::BadReparse { ino, why };
    let p = win.strip_prefix("\\??\\").unwrap_or(win);
    let b = p.as_bytes();
    let p = if b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':' {
        let rest = &p[2..];
        if !rest.is_empty() && !rest.starts_with('\\') {
            return Err(bad("a drive-relative target"));
        }
        if rest.is_empty() {
            "\\".to_string()
        } else {
            rest.to_string()
        }
    } else if p.starts_with("UNC\\") || p.starts_with("Volume{") || p.starts_with("\\\\") {
        return Err(bad("a target on another machine or volume"));
    } else {
        p.to_string()
    };
    if p.is_empty() {
        return Err(bad("an empty target"));
    }
    if p.contains('\0') {
        return Err(bad("a NUL in the target"));
    }
    Ok(p.replace('\\', "/"))
}

/// The link target of reparse data, as a POSIX path (absolute from the guest root, or
/// relative to the link's directory); `None` for reparse points that are not links.
pub fn parse_link(data: &[u8], ino: u64) -> Result<Option<String>> {
    let bad = |why| Error::BadReparse { ino, why };
    let Some(tag) = tag_of(data) else {
        return Err(bad("shorter than its header"));
    };
    let declared = usize::from(u16_at(data, 4).ok_or(bad("shorter than its header"))?);
    let body = data
        .get(8..8 + declared)
        .ok_or(bad("its length field runs past its data"))?;
    match tag {
        TAG_MOUNT_POINT | TAG_SYMLINK => {
            let sub_off = usize::from(u16_at(body, 0).ok_or(bad("truncated name fields"))?);
            let sub_len = usize::from(u16_at(body, 2).ok_or(bad("truncated name fields"))?);
            let (flags, names) = if tag == TAG_SYMLINK {
                let f = body.get(8..12).ok_or(bad("truncated symlink flags"))?;
                (u32::from_le_bytes([f[0], f[1], f[2], f[3]]), 12)
            } else {
                (0, 8)
            };
            let name = utf16_at(body, names + sub_off, sub_len)
                .ok_or(bad("its target name is outside its data or not UTF-16"))?;
            if tag == TAG_SYMLINK && flags & SYMLINK_FLAG_RELATIVE != 0 {
                if name.is_empty() || name.contains('\0') {
                    return Err(bad("an empty or NUL-bearing relative target"));
                }
                Ok(Some(name.replace('\\', "/")))
            } else {
                posix_target(&name, ino).map(Some)
            }
        }
        TAG_LX_SYMLINK => {
            let target = body.get(4..).ok_or(bad("truncated WSL symlink"))?;
            if target.is_empty() || target.contains(&0) {
                return Err(bad("an empty or NUL-bearing WSL target"));
            }
            String::from_utf8(target.to_vec())
                .map(Some)
                .map_err(|_| bad("a WSL target that is not UTF-8"))
        }
        _ => Ok(None),
    }
}

/// The target of an Interix symlink's data, `None` if the data is not one.
pub fn parse_interix(data: &[u8]) -> Option<String> {
    let rest = data.strip_prefix(INTERIX_MAGIC.as_slice())?;
    let units: Vec<u16> = rest
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    let s = String::from_utf16(&units).ok()?;
    (!s.is_empty() && !s.contains('\0')).then_some(s)
}

/// Reparse data of a Windows symbolic link to `target` (a POSIX path). An absolute
/// target is written as `C:\...`: the guest root is the system volume.
pub fn build_symlink(target: &str) -> Result<Vec<u8>> {
    let invalid = |why| Error::InvalidName {
        name: target.to_string(),
        why,
    };
    if target.is_empty() || target.contains('\0') {
        return Err(invalid(
            "a symlink target must be non-empty and without NUL",
        ));
    }
    let win = target.replace('/', "\\");
    let (sub, print, flags) = if target.starts_with('/') {
        (format!("\\??\\C:{win}"), format!("C:{win}"), 0u32)
    } else {
        (win.clone(), win, SYMLINK_FLAG_RELATIVE)
    };
    let sub: Vec<u8> = sub.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let print: Vec<u8> = print.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let body_len = 12 + sub.len() + print.len();
    let too_long = || invalid("a symlink target too long for a reparse point");
    let field = |n: usize| u16::try_from(n).map_err(|_| too_long());
    if body_len > 16 * 1024 - 8 {
        return Err(too_long());
    }
    let mut out = Vec::with_capacity(8 + body_len);
    out.extend_from_slice(&TAG_SYMLINK.to_le_bytes());
    out.extend_from_slice(&field(body_len)?.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&field(sub.len())?.to_le_bytes());
    out.extend_from_slice(&field(sub.len())?.to_le_bytes());
    out.extend_from_slice(&field(print.len())?.to_le_bytes());
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&sub);
    out.extend_from_slice(&print);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_symlinks_parse_back() {
        for t in ["/Users/Public", "..\\x/y", "a"] {
            let data = build_symlink(t).unwrap();
            assert_eq!(parse_link(&data, 1).unwrap().unwrap(), t.replace('\\', "/"));
        }
    }

    #[test]
    fn junction_to_a_drive_path_is_absolute() {
        let sub: Vec<u8> = "\\??\\C:\\Users\\Default"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let mut d = TAG_MOUNT_POINT.to_le_bytes().to_vec();
        d.extend_from_slice(&((8 + sub.len() + 2) as u16).to_le_bytes());
        d.extend_from_slice(&[0, 0]);
        d.extend_from_slice(&0u16.to_le_bytes());
        d.extend_from_slice(&(sub.len() as u16).to_le_bytes());
        d.extend_from_slice(&((sub.len() + 2) as u16).to_le_bytes());
        d.extend_from_slice(&0u16.to_le_bytes());
        d.extend_from_slice(&sub);
        d.extend_from_slice(&[0, 0]);
        assert_eq!(parse_link(&d, 1).unwrap().unwrap(), "/Users/Default");
    }

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        let good = build_symlink("/a/b").unwrap();
        for cut in 0..good.len() {
            let _ = parse_link(&good[..cut], 1);
        }
        for i in 0..good.len() {
            let mut d = good.clone();
            d[i] = 0xff;
            let _ = parse_link(&d, 1);
        }
        assert!(parse_link(&[1, 2], 1).is_err());
        assert_eq!(parse_link(&[1, 0, 0, 0, 0, 0, 0, 0], 1).unwrap(), None);
    }

    #[test]
    fn interix_links_parse() {
        let mut d = INTERIX_MAGIC.to_vec();
        d.extend("../t".encode_utf16().flat_map(u16::to_le_bytes));
        assert_eq!(parse_interix(&d).unwrap(), "../t");
        assert_eq!(parse_interix(b"IntxLNK"), None);
    }
}
