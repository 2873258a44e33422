//! Integer fields of on-disk structures: partition tables, disklabels, superblocks,
//! B-tree nodes.
//!
//! The plain readers are for buffers whose size the caller has already checked against
//! the structure it parses: a field outside the buffer is a bug there, and they panic.
//! The [`checked`] readers give `None` instead, for offsets that come from the data
//! itself.

/// `N` bytes at `at`, or `None` when they do not all lie inside `b`.
fn field<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    b.get(at..at.checked_add(N)?)?.try_into().ok()
}

fn inside<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    field(b, at).unwrap_or_else(|| {
        panic!(
            "field of {N} bytes at {at} outside a {}-byte buffer",
            b.len()
        )
    })
}

/// Little-endian `u16` at `at` (panics outside `b`).
pub fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(inside(b, at))
}

/// Little-endian `u32` at `at` (panics outside `b`).
pub fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(inside(b, at))
}

/// Little-endian `u64` at `at` (panics outside `b`).
pub fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(inside(b, at))
}

/// Big-endian `u16` at `at` (panics outside `b`).
pub fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes(inside(b, at))
}

/// Big-endian `u32` at `at` (panics outside `b`).
pub fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(inside(b, at))
}

/// Big-endian `u64` at `at` (panics outside `b`).
pub fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(inside(b, at))
}

/// Store `v` little-endian at `at` (panics outside `b`).
pub fn put_le16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

/// Store `v` little-endian at `at` (panics outside `b`).
pub fn put_le32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// Store `v` little-endian at `at` (panics outside `b`).
pub fn put_le64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Readers that give `None` for a field not wholly inside the buffer.
pub mod checked {
    use super::field;

    /// Little-endian `u16` at `at`.
    pub fn le16(b: &[u8], at: usize) -> Option<u16> {
        field(b, at).map(u16::from_le_bytes)
    }

    /// Little-endian `u32` at `at`.
    pub fn le32(b: &[u8], at: usize) -> Option<u32> {
        field(b, at).map(u32::from_le_bytes)
    }

    /// Little-endian `u64` at `at`.
    pub fn le64(b: &[u8], at: usize) -> Option<u64> {
        field(b, at).map(u64::from_le_bytes)
    }

    /// Big-endian `u16` at `at`.
    pub fn be16(b: &[u8], at: usize) -> Option<u16> {
        field(b, at).map(u16::from_be_bytes)
    }

    /// Big-endian `u32` at `at`.
    pub fn be32(b: &[u8], at: usize) -> Option<u32> {
        field(b, at).map(u32::from_be_bytes)
    }

    /// Big-endian `u64` at `at`.
    pub fn be64(b: &[u8], at: usize) -> Option<u64> {
        field(b, at).map(u64::from_be_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_read_and_write_both_byte_orders() {
        let mut b = [0u8; 10];
        put_le32(&mut b, 1, 0x0403_0201);
        assert_eq!(&b[1..5], &[1, 2, 3, 4]);
        assert_eq!(le32(&b, 1), 0x0403_0201);
        assert_eq!(be32(&b, 1), 0x0102_0304);
        put_le64(&mut b, 2, u64::MAX - 1);
        assert_eq!(le64(&b, 2), u64::MAX - 1);
        put_le16(&mut b, 8, 0xBEEF);
        assert_eq!(le16(&b, 8), 0xBEEF);
        assert_eq!(be16(&b, 8), 0xEFBE);
        assert_eq!(checked::le16(&b, 8), Some(0xBEEF));
        assert_eq!(checked::le16(&b, 9), None);
        assert_eq!(checked::be64(&b, 2), Some(be64(&b, 2)));
        assert_eq!(checked::le32(&b, usize::MAX), None);
    }

    #[test]
    #[should_panic(expected = "outside a 3-byte buffer")]
    fn plain_readers_panic_outside_the_buffer() {
        le32(&[0u8; 3], 0);
    }
}
