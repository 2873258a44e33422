//! GUIDs as GPT stores them.

use std::fmt;
use std::str::FromStr;

/// A GUID (type GUID, unique partition GUID, disk GUID).
///
/// Stored in GPT's on-disk byte order: the first three fields are little-endian, the
/// last eight bytes are stored as they are written. [`fmt::Display`] gives the usual
/// lower-case text form (`0fc63daf-8483-4772-8e79-3d69d8477de4`), the same that Linux
/// shows as `PARTUUID` and in `/dev/disk/by-partuuid`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Guid([u8; 16]);

/// The text given to [`Guid::from_str`] is not a GUID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a GUID (expected xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)")]
pub struct GuidParseError(pub String);

impl Guid {
    /// The all-zero GUID, which marks an unused GPT entry.
    pub const NIL: Guid = Guid([0; 16]);

    /// Linux swap partition type (`0657fd6d-a4ab-43c4-84e5-0933c84b4f4f`).
    pub const LINUX_SWAP: Guid = Guid([
        0x6d, 0xfd, 0x57, 0x06, 0xab, 0xa4, 0xc4, 0x43, 0x84, 0xe5, 0x09, 0x33, 0xc8, 0x4b, 0x4f,
        0x4f,
    ]);

    /// A GUID from its 16 on-disk (mixed-endian) bytes.
    pub const fn from_disk_bytes(bytes: [u8; 16]) -> Guid {
        Guid(bytes)
    }

    /// The 16 on-disk (mixed-endian) bytes.
    pub const fn to_disk_bytes(self) -> [u8; 16] {
        self.0
    }

    /// Whether this is the all-zero GUID.
    pub fn is_nil(&self) -> bool {
        self.0 == [0; 16]
    }

    /// The GUID in the big-endian order its text form is written in.
    fn text_order(&self) -> [u8; 16] {
        let b = &self.0;
        [
            b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13],
            b[14], b[15],
        ]
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.text_order();
        for (i, byte) in t.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guid({self})")
    }
}

impl FromStr for Guid {
    type Err = GuidParseError;

    /// Parses the text form, in either case, with or without surrounding braces.
    fn from_str(s: &str) -> Result<Guid, GuidParseError> {
        let err = || GuidParseError(s.to_string());
        let inner = s.trim();
        let inner = inner
            .strip_prefix('{')
            .and_then(|x| x.strip_suffix('}'))
            .unwrap_or(inner);
        let groups: Vec<&str> = inner.split('-').collect();
        let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
        if lens != [8, 4, 4, 4, 12] {
            return Err(err());
        }
        let hex: String = groups.concat();
        // from_str_radix alone would accept a '+' sign.
        if !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(err());
        }
        let mut t = [0u8; 16];
        for (i, byte) in t.iter_mut().enumerate() {
            let pair = hex.get(2 * i..2 * i + 2).ok_or_else(err)?;
            *byte = u8::from_str_radix(pair, 16).map_err(|_| err())?;
        }
        Ok(Guid([
            t[3], t[2], t[1], t[0], t[5], t[4], t[7], t[6], t[8], t[9], t[10], t[11], t[12], t[13],
            t[14], t[15],
        ]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trip_and_disk_order() {
        let g: Guid = "0FC63DAF-8483-4772-8E79-3D69D8477DE4".parse().unwrap();
        assert_eq!(g.to_string(), "0fc63daf-8483-4772-8e79-3d69d8477de4");
        // The on-disk form of the Linux filesystem type GUID, as sgdisk writes it.
        assert_eq!(
            g.to_disk_bytes(),
            [
                0xaf, 0x3d, 0xc6, 0x0f, 0x83, 0x84, 0x72, 0x47, 0x8e, 0x79, 0x3d, 0x69, 0xd8, 0x47,
                0x7d, 0xe4
            ]
        );
        assert_eq!(
            Guid::LINUX_SWAP.to_string(),
            "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f"
        );
        assert_eq!(
            "{0657FD6D-A4AB-43C4-84E5-0933C84B4F4F}"
                .parse::<Guid>()
                .unwrap(),
            Guid::LINUX_SWAP
        );
    }

    #[test]
    fn rejects_malformed_text() {
        for bad in [
            "",
            "0fc63daf84834772-8e79-3d69d8477de4",
            "0fc63daf-8483-4772-8e79-3d69d8477de",
            "0fc63daf-8483-4772-8e79-3d69d8477dzz",
            "+fc63daf-8483-4772-8e79-3d69d8477de4",
            "é0c63da-8483-4772-8e79-3d69d8477de4",
        ] {
            assert!(bad.parse::<Guid>().is_err(), "{bad:?} was accepted");
        }
    }
}
