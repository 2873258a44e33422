//! Garbage in, typed errors out: thousands of random, mutated and truncated disks from
//! a seeded generator must never make the partition layer panic, and whatever it
//! accepts it must be able to change and write back consistently.

mod common;

use std::io::Cursor;
use std::process::Command;

use common::*;
use snf_disk::partition::{Layout, TableKind};

/// xorshift64*: deterministic, so a failure is reproducible from its iteration number.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }

    fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }
}

struct Fixture {
    bytes: Vec<u8>,
    sector_size: u32,
}

/// Small real tables: MBR with logical partitions, GPT on 512- and 4096-byte sectors.
fn fixtures() -> Vec<Fixture> {
    let dir = tempfile::tempdir().unwrap();
    let mbr = blank_image(dir.path(), "mbr.img", 1 << 20);
    sfdisk_script(
        mbr.to_str().unwrap(),
        "label: dos\nlabel-id: 0xdeadbeef\nstart=8,size=200,type=83,bootable\n\
         start=208,size=200,type=7\nstart=408,size=1000,type=5\nstart=416,size=200,type=83\n\
         start=624,size=200,type=83\nstart=832,size=500,type=82\n",
    );
    let gpt = blank_image(dir.path(), "gpt.img", 1 << 20);
    run(Command::new("sgdisk")
        .args([
            "-a",
            "8",
            "-n",
            "1:40:+100K",
            "-c",
            "1:one",
            "-n",
            "2:0:+200K",
        ])
        .args(["-t", "2:8300", "-c", "2:two", "-n", "3:0:0", "-t", "3:8200"])
        .arg(&gpt));
    let gpt4k = blank_image(dir.path(), "gpt4k.img", 2 << 20);
    {
        let lo = Loop::attach(&gpt4k, 4096, false);
        run(Command::new("sgdisk")
            .args([
                "-a",
                "1",
                "-n",
                "1:6:+200K",
                "-c",
                "1:one",
                "-n",
                "2:0:+800K",
            ])
            .args(["-c", "2:two", "-n", "3:0:0", "-t", "3:8200"])
            .arg(&lo.dev));
    }
    let fixtures: Vec<Fixture> = [(mbr, 512), (gpt, 512), (gpt4k, 4096)]
        .into_iter()
        .map(|(path, sector_size)| Fixture {
            bytes: std::fs::read(path).unwrap(),
            sector_size,
        })
        .collect();
    for f in &fixtures {
        let layout = Layout::read(
            &mut Cursor::new(&f.bytes),
            f.bytes.len() as u64,
            f.sector_size,
        )
        .expect("fixture reads");
        assert!(layout.partitions().len() >= 3);
    }
    fixtures
}

/// Recomputes every GPT CRC where the headers are plausible enough to locate things,
/// so that mutations reach the checks behind the checksums.
fn fix_gpt_crcs(buf: &mut [u8], ss: usize) {
    let last = buf.len() / ss;
    for lba in [1, last.saturating_sub(1)] {
        let h = lba * ss;
        if lba == 0 || h + 92 > buf.len() {
            continue;
        }
        let entries_lba = u64_le(buf, h + 72);
        let len = u64::from(u32_le(buf, h + 80)) * u64::from(u32_le(buf, h + 84));
        let start = entries_lba.saturating_mul(ss as u64);
        if len <= 1 << 21 && start.saturating_add(len) <= buf.len() as u64 {
            let (start, len) = (start as usize, len as usize);
            let crc = crc32fast::hash(&buf[start..start + len]);
            buf[h + 88..h + 92].copy_from_slice(&crc.to_le_bytes());
        }
        let size = u32_le(buf, h + 12) as usize;
        if (92..=ss).contains(&size) && h + size <= buf.len() {
            buf[h + 16..h + 20].fill(0);
            let crc = crc32fast::hash(&buf[h..h + size]);
            buf[h + 16..h + 20].copy_from_slice(&crc.to_le_bytes());
        }
    }
}

/// Mutates a copy of a fixture where tables live: sector 0, the GPT headers and
/// entries, the EBRs, the disk's tail.
fn mutate(rng: &mut Rng, f: &Fixture) -> Vec<u8> {
    let mut buf = f.bytes.clone();
    let ss = f.sector_size as u64;
    let len = buf.len() as u64;
    for _ in 0..1 + rng.below(8) {
        let offset = match rng.below(5) {
            0 => 440 + rng.below(72),
            1 => ss + rng.below(92),
            2 => 2 * ss + rng.below(4 * 128),
            3 => len - 34 * ss.min(512) - rng.below(64 * 1024).min(len - 34 * 512),
            _ => rng.below(len),
        };
        let offset = offset.min(len - 1) as usize;
        if rng.chance(2) {
            buf[offset] ^= 1 << rng.below(8);
        } else {
            buf[offset] = rng.next() as u8;
        }
        if rng.chance(4) {
            // Plant plausible big numbers in an 8-byte field.
            let at = offset.min(buf.len() - 8);
            let v = match rng.below(4) {
                0 => u64::MAX,
                1 => len / ss + rng.below(8),
                2 => rng.below(len / ss),
                _ => rng.next(),
            };
            buf[at..at + 8].copy_from_slice(&v.to_le_bytes());
        }
    }
    if rng.chance(2) {
        fix_gpt_crcs(&mut buf, f.sector_size as usize);
    }
    buf
}

fn random_bytes(rng: &mut Rng) -> Vec<u8> {
    let len = rng.below(20_000) as usize;
    let mut buf: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
    if len >= 4096 + 8 && rng.chance(2) {
        // Signatures that lead the parser past its first checks.
        buf[510] = 0x55;
        buf[511] = 0xaa;
        if rng.chance(2) {
            buf[446 + 4] = 0xee;
        }
        let at = if rng.chance(2) { 512 } else { 4096 };
        buf[at..at + 8].copy_from_slice(b"EFI PART");
        for b in buf[446..446 + 16 * 4].iter_mut().step_by(16) {
            *b = 0;
        }
        if rng.chance(2) {
            fix_gpt_crcs(&mut buf, at);
        }
    }
    buf
}

#[derive(Default, Debug)]
struct Tally {
    read_ok: u32,
    read_err: u32,
    write_ok: u32,
}

/// Reads `buf`; when that works, queries, changes and writes the layout back.
fn exercise(rng: &mut Rng, buf: &[u8], claimed: u64, ss: u32, tally: &mut Tally) {
    let mut layout = match Layout::read(&mut Cursor::new(buf), claimed, ss) {
        Ok(l) => l,
        Err(e) => {
            // Every error has a one-line message.
            assert!(!e.to_string().contains('\n'), "{e}");
            tally.read_err += 1;
            return;
        }
    };
    tally.read_ok += 1;
    for p in layout.partitions() {
        assert!(p.start <= p.end);
        assert!(p.end_offset() <= claimed, "{p:?} past {claimed}");
        let _ = layout.partuuid(p);
    }
    let _ = layout.last_partition();
    let _ = layout.partition_at_offset(rng.below(claimed.max(1)));
    let _ = layout.shrunk_disk_size();
    for _ in 0..rng.below(3) {
        let n = 1 + rng.below(10) as u32;
        if rng.chance(2) {
            let _ = layout.delete(n);
        } else if let Some(p) = layout.partition(n) {
            let end = match rng.below(3) {
                0 => p.start + rng.below(p.sectors() + 10),
                1 => rng.next(),
                _ => p.end.saturating_sub(1),
            };
            let _ = layout.set_end(n, end);
        }
    }
    let size = match rng.below(3) {
        0 => layout.shrunk_disk_size(),
        1 => layout.min_disk_size(),
        _ => rng.below(claimed.saturating_mul(2).max(1)),
    };
    if size > 64 << 20 {
        return;
    }
    let before = layout.clone();
    let mut disk = Cursor::new(buf.to_vec());
    if layout.write(&mut disk, size).is_ok() {
        tally.write_ok += 1;
        // What was accepted and written reads back as the same partitions.
        assert!(
            layout.warnings().is_empty(),
            "{:?} (before: {:?}), sector 0 written: {:02x?}",
            layout.warnings(),
            before.warnings(),
            &disk.get_ref()[440..512]
        );
        assert_eq!(layout.kind(), before.kind());
        assert_eq!(layout.partitions(), before.partitions());
        assert_eq!(layout.disk_size(), size);
        if layout.kind() == TableKind::Gpt {
            let n = size / u64::from(ss);
            let last = u64::from(ss) * (n - 1);
            assert_eq!(
                &disk.get_ref()[last as usize..last as usize + 8],
                b"EFI PART"
            );
        }
    }
}

#[test]
fn garbage_mutated_and_truncated_disks_never_panic() {
    let fixtures = fixtures();
    // Longer or different runs by hand: SNF_FUZZ_SEED=... SNF_FUZZ_ITERATIONS=...
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let mut rng = Rng(env("SNF_FUZZ_SEED", 0x005e_ed0f_5eed) | 1);
    let iterations = env("SNF_FUZZ_ITERATIONS", 4000);
    let mut tally = Tally::default();
    for i in 0..iterations {
        let sizes = [512u32, 4096, 512, 4096, 1000];
        match i % 4 {
            0 => {
                let buf = random_bytes(&mut rng);
                let ss = sizes[rng.below(5) as usize];
                let claimed = if rng.chance(4) {
                    buf.len() as u64 + rng.below(1 << 20)
                } else {
                    buf.len() as u64
                };
                exercise(&mut rng, &buf, claimed, ss, &mut tally);
            }
            1 | 2 => {
                let f = &fixtures[rng.below(fixtures.len() as u64) as usize];
                let buf = mutate(&mut rng, f);
                exercise(&mut rng, &buf, buf.len() as u64, f.sector_size, &mut tally);
            }
            _ => {
                let f = &fixtures[rng.below(fixtures.len() as u64) as usize];
                let cut = rng.below(f.bytes.len() as u64 + 1) as usize;
                let buf = &f.bytes[..cut];
                // Either the truth about the size or the original size (short reads).
                let claimed = if rng.chance(2) {
                    cut as u64
                } else {
                    f.bytes.len() as u64
                };
                exercise(&mut rng, buf, claimed, f.sector_size, &mut tally);
            }
        }
    }
    println!("{tally:?}");
    // The run went past the first checks often enough to mean something.
    assert!(tally.read_ok >= 300, "{tally:?}");
    assert!(tally.write_ok >= 100, "{tally:?}");
    assert!(tally.read_err >= 1000, "{tally:?}");
}
