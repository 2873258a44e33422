//! The FAT backend on filesystems made by mkfs.fat inside a partitioned image, populated
//! with mtools, read and changed through the guest tree, then checked by fsck.fat and
//! read back with mtools.

use std::path::Path;
use std::process::Command;

use snf_guestfs::fat::FatFs;
use snf_guestfs::{FileType, GuestFs, NewNode};
use snf_testkit::fixture::{run, sfdisk, sparse_file};

const MIB: u64 = 1024 * 1024;
const OFFSET: u64 = MIB;
const PART: u64 = 64 * MIB;

/// A 48 MiB disk with a 32 MiB FAT filesystem at 1 MiB holding EFI/debian/grub.cfg and
/// a long-named file.
fn make_disk(dir: &Path, fat_bits: &str) -> std::path::PathBuf {
    let img = dir.join("disk.img");
    sparse_file(&img, 80 * MIB);
    sfdisk(
        &img,
        "label: gpt\nstart=2048, size=131072, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\n",
    );
    // Enough clusters for FAT32, not too many for FAT16.
    let per_cluster = if fat_bits == "32" { "1" } else { "4" };
    run(Command::new("mkfs.fat")
        .args([
            "-F",
            fat_bits,
            "-s",
            per_cluster,
            "--offset",
            "2048",
            "-n",
            "ESP",
        ])
        .arg(&img)
        .arg((PART / 1024).to_string()));
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("EFI/debian")).unwrap();
    std::fs::write(src.join("EFI/debian/grub.cfg"), "search.fs_uuid x root\n").unwrap();
    std::fs::write(src.join("A long file name.txt"), "long").unwrap();
    let target = format!("{}@@{}", img.display(), OFFSET);
    run(Command::new("mcopy")
        .args(["-s", "-i", &target])
        .arg(src.join("EFI"))
        .arg(src.join("A long file name.txt"))
        .arg("::/")
        .env("MTOOLS_SKIP_CHECK", "1"));
    img
}

fn fsck_clean(img: &Path) {
    // fsck.fat has no offset option: check a copy of the partition.
    let part = img.with_extension("part");
    let data = std::fs::read(img).unwrap();
    std::fs::write(&part, &data[OFFSET as usize..(OFFSET + PART) as usize]).unwrap();
    run(Command::new("fsck.fat").arg("-n").arg(&part));
}

fn mtype(img: &Path, path: &str) -> Vec<u8> {
    let target = format!("{}@@{}", img.display(), OFFSET);
    let out = Command::new("mtype")
        .args(["-i", &target, path])
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .expect("cannot run mtype (install mtools with scripts/setup.sh)");
    assert!(out.status.success(), "mtype {path} failed");
    out.stdout
}

#[test]
fn reads_what_mtools_wrote() {
    for bits in ["16", "32"] {
        let dir = tempfile::tempdir().unwrap();
        let img = make_disk(dir.path(), bits);
        let fs = FatFs::open(&img, OFFSET, PART, false).unwrap();
        let mut g = GuestFs::new(Box::new(fs), "partition 1");
        assert_eq!(
            g.read_to_string(Path::new("/EFI/debian/grub.cfg")).unwrap(),
            "search.fs_uuid x root\n"
        );
        // FAT names are matched without regard to case.
        assert!(g.is_file(Path::new("/efi/DEBIAN/Grub.cfg")));
        let names: Vec<_> = g
            .read_dir(Path::new("/"))
            .unwrap()
            .into_iter()
            .map(|(n, t)| (n.to_string_lossy().into_owned(), t))
            .collect();
        assert!(names.contains(&("A long file name.txt".into(), FileType::Regular)));
        assert!(names.contains(&("EFI".into(), FileType::Directory)));
        let m = g.stat(Path::new("/EFI/debian/grub.cfg")).unwrap();
        assert_eq!((m.mode, m.uid, m.gid, m.size), (0o644, 0, 0, 22));
        assert_eq!(g.stat(Path::new("/EFI")).unwrap().mode, 0o755);
        assert!(!g.is_writable(Path::new("/")).unwrap());
        assert!(g
            .write(Path::new("/x"), b"no", NewNode::root(0o644))
            .is_err());
    }
}

#[test]
fn writes_are_seen_by_mtools_and_fsck_is_clean() {
    let dir = tempfile::tempdir().unwrap();
    let img = make_disk(dir.path(), "32");
    {
        let fs = FatFs::open(&img, OFFSET, PART, true).unwrap();
        let mut g = GuestFs::new(Box::new(fs), "partition 1");
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        g.write(Path::new("/EFI/debian/big.bin"), &big, NewNode::root(0o644))
            .unwrap();
        g.write(
            Path::new("/EFI/debian/grub.cfg"),
            b"set timeout=10\n",
            NewNode::root(0o644),
        )
        .unwrap();
        // fatfs 0.3 cannot make valid directories: refused, nothing written.
        assert!(g
            .mkdir(Path::new("/EFI/BOOT"), NewNode::root(0o755))
            .is_err());
        g.rename(
            Path::new("/A long file name.txt"),
            Path::new("/EFI/moved.txt"),
        )
        .unwrap();
        g.truncate(Path::new("/EFI/debian/big.bin"), 5000).unwrap();
        g.write(Path::new("/gone"), b"x", NewNode::root(0o644))
            .unwrap();
        g.unlink(Path::new("/gone")).unwrap();
        assert!(g
            .symlink("x".as_ref(), Path::new("/l"), NewNode::root(0o777))
            .is_err());
        assert_eq!(
            g.read(Path::new("/EFI/debian/big.bin")).unwrap(),
            big[..5000]
        );
        g.sync().unwrap();
    }
    fsck_clean(&img);
    assert_eq!(mtype(&img, "::/EFI/debian/grub.cfg"), b"set timeout=10\n");
    assert_eq!(mtype(&img, "::/EFI/moved.txt"), b"long");
    let big: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(mtype(&img, "::/EFI/debian/big.bin"), big);
    // The bytes outside the partition are untouched: the GPT is still valid.
    run(Command::new("sfdisk").arg("--verify").arg(&img));
}

/// The first cluster of `path` in the FAT filesystem of `img`, as mshowfat shows it.
fn first_cluster(img: &Path, path: &str) -> u64 {
    let target = format!("{}@@{}", img.display(), OFFSET);
    let out = run(Command::new("mshowfat")
        .args(["-i", &target, path])
        .env("MTOOLS_SKIP_CHECK", "1"));
    let start = out.find('<').expect("mshowfat shows clusters") + 1;
    let digits: String = out[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().unwrap()
}

/// Point FAT16 entry `cluster` at `next`, in every copy of the FAT.
fn set_fat16(img: &Path, cluster: u64, next: u16) {
    let bs = std::fs::read(img).unwrap()[OFFSET as usize..OFFSET as usize + 512].to_vec();
    let bps = u64::from(u16::from_le_bytes([bs[11], bs[12]]));
    let reserved = u64::from(u16::from_le_bytes([bs[14], bs[15]]));
    let spf = u64::from(u16::from_le_bytes([bs[22], bs[23]]));
    for copy in 0..u64::from(bs[16]) {
        let at = OFFSET + (reserved + copy * spf) * bps + 2 * cluster;
        snf_testkit::fixture::write_at(img, at, &next.to_le_bytes());
    }
}

fn open_err(img: &Path) -> String {
    match FatFs::open(img, OFFSET, PART, false) {
        Ok(_) => panic!("a corrupt FAT filesystem was opened"),
        Err(e) => {
            assert!(matches!(e, snf_guestfs::Error::Corrupt { .. }), "{e}");
            e.to_string()
        }
    }
}

#[test]
fn a_looping_file_chain_is_an_error_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let img = make_disk(dir.path(), "16");
    let c = first_cluster(&img, "::/EFI/debian/grub.cfg");
    set_fat16(&img, c, c as u16);
    let msg = open_err(&img);
    assert_eq!(
        msg,
        format!(
            "the FAT filesystem at byte {OFFSET}: filesystem corrupt: \
             the cluster chain through cluster {c} loops"
        )
    );
}

#[test]
fn a_looping_directory_chain_is_an_error_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let img = make_disk(dir.path(), "16");
    let efi = first_cluster(&img, "::/EFI");
    let debian = first_cluster(&img, "::/EFI/debian");
    // EFI -> debian -> EFI: listing either would never end.
    set_fat16(&img, efi, debian as u16);
    set_fat16(&img, debian, efi as u16);
    assert!(open_err(&img).contains("loops"));
}

#[test]
fn a_link_out_of_the_filesystem_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let img = make_disk(dir.path(), "16");
    let c = first_cluster(&img, "::/EFI/debian/grub.cfg");
    set_fat16(&img, c, 0xFFF0);
    assert!(open_err(&img).contains("outside the filesystem"));
}

#[test]
fn a_corrupt_boot_sector_is_an_error() {
    let cases: [(&str, usize, &[u8]); 5] = [
        ("bytes per sector", 11, &[0, 0]),
        ("sectors per cluster", 13, &[3]),
        ("larger than its partition", 32, &[0xff, 0xff, 0xff, 0x7f]),
        ("no reserved sectors", 14, &[0, 0]),
        ("signature", 510, &[0, 0]),
    ];
    let dir = tempfile::tempdir().unwrap();
    let clean = make_disk(dir.path(), "16");
    for (what, at, bytes) in cases {
        let img = dir.path().join("case.img");
        std::fs::copy(&clean, &img).unwrap();
        // FAT16 of this size keeps its sector count in the 32-bit field.
        snf_testkit::fixture::write_at(&img, OFFSET + at as u64, bytes);
        let msg = open_err(&img);
        assert!(
            msg.contains("boot sector") && msg.contains(what),
            "{what}: {msg}"
        );
    }
}

/// Random damage to the first sectors (boot sector, FATs, root directory) never makes a
/// read panic or hang: it opens and reads, or it is an error.
#[test]
fn damaged_filesystems_give_errors_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    for bits in ["16", "32"] {
        let clean = make_disk(dir.path(), bits);
        let noise = snf_testkit::fixture::pseudo_random(4 * 300, 11);
        for round in 0..60usize {
            let img = dir.path().join("damaged.img");
            std::fs::copy(&clean, &img).unwrap();
            for k in 0..4 {
                let r = &noise[(round * 4 + k) * 2..(round * 4 + k) * 2 + 2];
                // Mostly the boot sector and the start of the FATs.
                let at = (u64::from(r[0]) * 256 + u64::from(r[1])) % (64 * 1024);
                snf_testkit::fixture::write_at(&img, OFFSET + at, &[r[1] ^ r[0]]);
            }
            let Ok(fs) = FatFs::open(&img, OFFSET, PART, false) else {
                continue;
            };
            let mut g = GuestFs::new(Box::new(fs), "partition 1");
            if let Ok(entries) = g.walk(Path::new("/")) {
                for e in entries.iter().filter(|e| e.metadata.is_file()) {
                    let _ = g.read(&e.path);
                }
            }
        }
    }
}
