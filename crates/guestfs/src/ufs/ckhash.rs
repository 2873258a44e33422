//! The CRC-32C check-hashes FreeBSD keeps over UFS metadata (`fs_metackhash`).
//!
//! FreeBSD computes them with `calculate_crc32c(~0, buf, len)`, which starts from all
//! ones and does not invert the result: not the usual finalised CRC-32C.

/// `fs_metackhash` bit: the superblock carries `fs_ckhash`.
pub const CK_SUPERBLK: u32 = 0x01;
/// `fs_metackhash` bit: every cylinder group carries `cg_ckhash`.
pub const CK_CYLGRP: u32 = 0x02;
/// `fs_metackhash` bit: every UFS2 inode carries `di_ckhash`.
pub const CK_INODE: u32 = 0x04;

const fn table() -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0x82F6_3B78 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

static TABLE: [u32; 256] = table();

/// The hash of `data` where the 4 bytes at `hole` (the stored hash) count as zeros.
pub fn hash_with_hole(data: &[u8], hole: usize) -> u32 {
    let mut crc = !0u32;
    for (i, &b) in data.iter().enumerate() {
        let b = if (hole..hole + 4).contains(&i) { 0 } else { b };
        crc = TABLE[((crc ^ u32::from(b)) & 0xFF) as usize] ^ (crc >> 8);
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_crc32c_check_value_before_inversion() {
        // The standard CRC-32C of "123456789" is 0xE3069283 after the final inversion.
        assert_eq!(!hash_with_hole(b"123456789", 100), 0xE306_9283);
        assert_eq!(
            hash_with_hole(b"1234\xff\xff\xff\xff9", 4),
            hash_with_hole(b"1234\0\0\0\09", 100)
        );
    }
}
