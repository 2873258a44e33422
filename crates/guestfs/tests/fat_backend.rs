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
