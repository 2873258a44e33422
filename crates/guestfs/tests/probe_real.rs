//! The probe against superblocks made by the real tools.

use std::path::Path;
use std::process::Command;

use snf_guestfs::probe::{probe_file, FsType};
use snf_testkit::fixture::{run, sparse_file};

fn blkid(path: &Path, tag: &str) -> String {
    run(Command::new("blkid")
        .args(["-p", "-o", "value", "-s", tag])
        .arg(path))
    .trim()
    .to_string()
}

const MIB: u64 = 1024 * 1024;

#[test]
fn ext4_at_an_offset_with_uuid_and_label() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    sparse_file(&img, 64 * MIB);
    run(Command::new("mke2fs")
        .args([
            "-q",
            "-F",
            "-t",
            "ext4",
            "-L",
            "rootfs",
            "-U",
            "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
        ])
        .args(["-E", "offset=1048576"])
        .arg(&img)
        .arg("32M"));
    let p = probe_file(&img, MIB, 32 * MIB).unwrap();
    assert_eq!(p.fs_type, FsType::Ext4);
    assert_eq!(
        p.uuid.as_deref(),
        Some("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0")
    );
    assert_eq!(p.label.as_deref(), Some("rootfs"));
    // Nothing at offset 0 of the disk.
    assert_eq!(probe_file(&img, 0, MIB).unwrap().fs_type, FsType::Unknown);
}

#[test]
fn ext2_and_ext3_are_told_apart() {
    let dir = tempfile::tempdir().unwrap();
    for (t, want) in [("ext2", FsType::Ext2), ("ext3", FsType::Ext3)] {
        let img = dir.path().join(t);
        sparse_file(&img, 16 * MIB);
        run(Command::new("mke2fs").args(["-q", "-F", "-t", t]).arg(&img));
        let p = probe_file(&img, 0, 16 * MIB).unwrap();
        assert_eq!(p.fs_type, want, "{t}");
        assert_eq!(p.uuid.unwrap(), blkid(&img, "UUID"));
    }
}

#[test]
fn fat_volume_id_and_label() {
    let dir = tempfile::tempdir().unwrap();
    for (bits, size) in [("12", 4 * MIB), ("16", 32 * MIB), ("32", 64 * MIB)] {
        let img = dir.path().join(format!("fat{bits}"));
        sparse_file(&img, size);
        run(Command::new("mkfs.fat")
            .args(["-F", bits, "-i", "1234ABCD", "-n", "EFI-SYS"])
            .arg(&img));
        let p = probe_file(&img, 0, size).unwrap();
        assert_eq!(p.fs_type, FsType::Vfat, "FAT{bits}");
        assert_eq!(p.uuid.as_deref(), Some("1234-ABCD"), "FAT{bits}");
        assert_eq!(p.uuid.unwrap(), blkid(&img, "UUID"));
        assert_eq!(p.label.as_deref(), Some("EFI-SYS"));
    }
}

#[test]
fn swap_with_uuid_and_label() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("swap");
    sparse_file(&img, 16 * MIB);
    run(Command::new("mkswap")
        .args(["-L", "myswap", "-U", "11111111-2222-3333-4444-555555555555"])
        .arg(&img));
    let p = probe_file(&img, 0, 16 * MIB).unwrap();
    assert_eq!(p.fs_type, FsType::Swap);
    assert_eq!(
        p.uuid.as_deref(),
        Some("11111111-2222-3333-4444-555555555555")
    );
    assert_eq!(p.label.as_deref(), Some("myswap"));
    assert!(p.fs_type.why_unchangeable().is_some());
}

#[test]
fn xfs_and_btrfs() {
    let dir = tempfile::tempdir().unwrap();
    let xfs = dir.path().join("xfs");
    sparse_file(&xfs, 320 * MIB);
    run(Command::new("mkfs.xfs")
        .args(["-q", "-f", "-L", "xroot"])
        .arg(&xfs));
    let p = probe_file(&xfs, 0, 320 * MIB).unwrap();
    assert_eq!(p.fs_type, FsType::Xfs);
    assert_eq!(p.label.as_deref(), Some("xroot"));
    assert_eq!(p.uuid.unwrap(), blkid(&xfs, "UUID"));

    let btrfs = dir.path().join("btrfs");
    sparse_file(&btrfs, 128 * MIB);
    run(Command::new("mkfs.btrfs")
        .args(["-q", "-f", "-L", "broot"])
        .arg(&btrfs));
    let p = probe_file(&btrfs, 0, 128 * MIB).unwrap();
    assert_eq!(p.fs_type, FsType::Btrfs);
    assert_eq!(p.label.as_deref(), Some("broot"));
    assert_eq!(p.uuid.unwrap(), blkid(&btrfs, "UUID"));
    // Both are read and written through the libguestfs appliance.
    assert!(p.fs_type.needs_appliance() && p.fs_type.why_unchangeable().is_none());
}

#[test]
fn luks2_on_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("luks");
    let key = dir.path().join("key");
    std::fs::write(&key, b"secret passphrase").unwrap();
    sparse_file(&img, 32 * MIB);
    run(Command::new("cryptsetup")
        .args([
            "luksFormat",
            "--batch-mode",
            "--type",
            "luks2",
            "--pbkdf",
            "pbkdf2",
        ])
        .args([
            "--pbkdf-force-iterations",
            "1000",
            "--label",
            "vault",
            "--key-file",
        ])
        .arg(&key)
        .arg(&img));
    let p = probe_file(&img, 0, 32 * MIB).unwrap();
    assert_eq!(p.fs_type, FsType::Luks2);
    assert_eq!(p.uuid.unwrap(), blkid(&img, "UUID"));
    assert_eq!(p.label.as_deref(), Some("vault"));
    assert!(p.fs_type.why_unchangeable().unwrap().contains("encrypted"));
}

#[test]
fn garbage_partition_is_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("garbage");
    let data: Vec<u8> = (0..(128 * 1024u32))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&img, &data).unwrap();
    let p = probe_file(&img, 0, data.len() as u64).unwrap();
    assert_eq!(p.fs_type, FsType::Unknown);
    // A partition shorter than any superblock offset is not an error either.
    assert_eq!(probe_file(&img, 5, 100).unwrap().fs_type, FsType::Unknown);
}

/// Detaches a loop device when dropped.
struct Loop(String);

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

#[test]
fn lvm_physical_volume_made_by_pvcreate() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("pv");
    sparse_file(&img, 16 * MIB);
    let dev = Loop(
        run(Command::new("losetup").args(["-f", "--show"]).arg(&img))
            .trim()
            .to_string(),
    );
    run(Command::new("pvcreate")
        .args(["-ff", "-y", &dev.0])
        .env("LVM_SUPPRESS_FD_WARNINGS", "1"));
    drop(dev);
    let p = probe_file(&img, 0, 16 * MIB).unwrap();
    assert_eq!(p.fs_type, FsType::LvmPv);
    assert_eq!(p.uuid.unwrap(), blkid(&img, "UUID"));
    assert!(p.fs_type.why_unchangeable().unwrap().contains("LVM"));
}

/// UFS1 and UFS2 made by makefs: the id FreeBSD names `/dev/ufsid/HEX` is blkid's UUID.
#[test]
fn ufs_id_is_what_blkid_reports() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    std::fs::write(tree.join("f"), "x").unwrap();
    for (version, want) in [("1", FsType::Ufs1), ("2", FsType::Ufs2)] {
        let img = dir.path().join(format!("ufs{version}.img"));
        snf_testkit::fixture::require("makefs");
        run(Command::new("makefs")
            .args([
                "-t",
                "ffs",
                "-o",
                &format!("version={version}"),
                "-s",
                "16m",
            ])
            .arg(&img)
            .arg(&tree));
        let p = probe_file(&img, 0, 16 * MIB).unwrap();
        assert_eq!(p.fs_type, want, "UFS{version}");
        let id = blkid(&img, "UUID");
        assert_eq!(id.len(), 16, "blkid UUID {id}");
        assert_eq!(p.uuid.as_deref(), Some(id.as_str()), "UFS{version}");
        if want == FsType::Ufs2 {
            // makefs cannot set fs_volname; put one where FreeBSD's tunefs -L does
            // (makefs writes the superblock at 8 KiB) and let blkid read it too.
            snf_testkit::fixture::write_at(&img, 8192 + 680, b"rootfs\0");
            let p = probe_file(&img, 0, 16 * MIB).unwrap();
            assert_eq!(blkid(&img, "LABEL"), "rootfs");
            assert_eq!(p.label.as_deref(), Some("rootfs"));
        }
    }
}
