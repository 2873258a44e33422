//! Bad-input cases: filesystems. A corrupt or hostile guest filesystem (a FAT whose
//! cluster chains loop, a directory entry pointing to an ancestor, a configuration file
//! claiming a huge size) gives an error naming it, never a hang, a crash or a memory
//! blow-up.

use std::path::{Path, PathBuf};
use std::process::Command;

use snf_testkit::fixture::{require, run, write_file, Disk, Mke2fs};

use crate::common::debian_root;
use crate::harness::Case;

const MIB: u64 = 1 << 20;

/// A Debian root (enough for inspection) on partition 1 of a 96 MiB disk; `fstab` is its
/// `/etc/fstab`, `more` adds to the tree. With `esp`, partition 2 is a FAT16 EFI system
/// partition holding `EFI/debian/grub.cfg`.
fn debian_disk(case: &Case, fstab: &str, esp: bool, more: impl FnOnce(&Path)) -> PathBuf {
    let tree = case.path("tree");
    debian_root(&tree, fstab);
    write_file(&tree, "/tmp/scratch", "tmp\n");
    std::fs::create_dir_all(tree.join("boot/efi")).unwrap();
    more(&tree);
    let script = if esp {
        "label: dos\nstart=2048, size=32M, type=83\nstart=67584, type=ef\n"
    } else {
        "label: dos\nstart=2048, type=83\n"
    };
    let disk = Disk::create(case.path("disk.raw"), 96 * MIB, script);
    disk.ext(1, &Mke2fs::ext4().tree(&tree));
    if esp {
        require("mkfs.fat");
        let (offset, size) = (disk.offset(2), disk.size(2));
        run(Command::new("mkfs.fat")
            .args(["-F", "16", "-s", "4", "--offset"])
            .arg((offset / 512).to_string())
            .arg(disk.path())
            .arg((size / 1024).to_string()));
        let src = case.path("esp");
        write_file(&src, "/EFI/debian/grub.cfg", "search.fs_uuid x root\n");
        run(Command::new("mcopy")
            .args(["-s", "-i", &format!("{}@@{offset}", disk.path().display())])
            .arg(src.join("EFI"))
            .arg("::/")
            .env("MTOOLS_SKIP_CHECK", "1"));
    }
    std::fs::remove_dir_all(&tree).unwrap();
    disk.into_path()
}

#[test]
fn a_fat_partition_whose_cluster_chain_loops() {
    let mut case = Case::new();
    let disk = debian_disk(
        &case,
        "/dev/sda1 / ext4 errors=remount-ro 0 1\n/dev/sda2 /boot/efi vfat umask=0077 0 1\n",
        true,
        |_| {},
    );
    // The ESP's first FAT entries: point EFI's cluster (the first one, 2) at itself.
    let esp = 67584 * 512;
    let bs = std::fs::read(&disk).unwrap()[esp..esp + 512].to_vec();
    let bps = u64::from(u16::from_le_bytes([bs[11], bs[12]]));
    let reserved = u64::from(u16::from_le_bytes([bs[14], bs[15]]));
    snf_testkit::fixture::write_at(&disk, esp as u64 + reserved * bps + 4, &2u16.to_le_bytes());
    case.watch(&disk);
    let out = case.run(&[
        "-o",
        case.path("out").to_str().unwrap(),
        disk.to_str().unwrap(),
    ]);
    // A filesystem fstab names but that cannot be opened is left out with a warning, as
    // any unmountable non-root entry is: the run goes on without it.
    out.succeeded();
    let stderr = out.stderr();
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("Warning:") && l.contains("/boot/efi") && l.contains("loops")),
        "no warning names the looping FAT\n{stderr}"
    );
}

#[test]
fn an_ext4_directory_that_contains_its_ancestor() {
    let mut case = Case::new();
    let disk = debian_disk(
        &case,
        "/dev/sda1 / ext4 errors=remount-ro 0 1\n",
        false,
        |t| {
            std::fs::create_dir_all(t.join("tmp/a/b/c")).unwrap();
        },
    );
    // Partition 1 starts at 1 MiB: debugfs edits a copy of it, written back in place.
    let part = case.path("part1");
    run(Command::new("dd")
        .arg(format!("if={}", disk.display()))
        .arg(format!("of={}", part.display()))
        .args(["bs=1M", "skip=1", "count=95", "status=none"]));
    require("debugfs");
    run(Command::new("debugfs")
        .args(["-w", "-R", "link /tmp/a /tmp/a/b/c/loop"])
        .arg(&part));
    snf_testkit::fixture::copy_into(&part, &disk, MIB);
    std::fs::remove_file(&part).unwrap();
    case.watch(&disk);
    let out = case.run(&[
        "-o",
        case.path("out").to_str().unwrap(),
        disk.to_str().unwrap(),
    ]);
    out.failure(&["/tmp/a/b/c/loop", "directory loop"]);
}

#[test]
fn an_etc_fstab_claiming_a_gigabyte() {
    let mut case = Case::new();
    let disk = debian_disk(&case, "", false, |t| {
        // Sparse: 1 GiB of size and no data, so the filesystem stays small.
        std::fs::File::create(t.join("etc/fstab"))
            .unwrap()
            .set_len(1 << 30)
            .unwrap();
    });
    case.watch(&disk);
    let out = case.run(&[
        "-o",
        case.path("out").to_str().unwrap(),
        disk.to_str().unwrap(),
    ]);
    out.failure(&["/etc/fstab", "1073741824 bytes", "64 MiB"]);
}

/// A second ext4 filesystem whose superblock is corrupt cannot be opened: the
/// run goes on with a warning that names the partition, and no message (warning or
/// error) shows the work directory's files that libext2fs was given.
#[test]
fn a_damaged_second_ext4_filesystem_is_named_by_its_partition() {
    let mut c = Case::new();
    let tree = c.path("tree");
    write_file(
        &tree,
        "/etc/os-release",
        "NAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n",
    );
    write_file(&tree, "/etc/debian_version", "12.5\n");
    write_file(
        &tree,
        "/etc/fstab",
        "/dev/sda1 / ext4 defaults 0 1\n/dev/sda2 /srv ext4 defaults 0 2\n",
    );
    std::fs::create_dir_all(tree.join("srv")).unwrap();
    let disk = Disk::create(
        c.path("disk.raw"),
        96 * MIB,
        "label: dos\nstart=2048, size=48M, type=83\nstart=100352, type=83\n",
    );
    disk.ext(1, &Mke2fs::ext4().tree(&tree));
    // Without metadata_csum, so that a changed superblock field is not a checksum error.
    disk.ext(
        2,
        &Mke2fs::with_args(&["-t", "ext4", "-O", "^metadata_csum"]),
    );
    // s_inodes_per_group = 0: the signature still says ext4, libext2fs refuses it.
    snf_testkit::fixture::write_at(disk.path(), disk.offset(2) + 1024 + 40, &[0; 4]);
    let src = disk.into_path();
    c.watch(&src);
    let out = c.path("out.diskdump");
    let outcome = c.run(&["-o", out.to_str().unwrap(), src.to_str().unwrap()]);
    let stderr = outcome.stderr();
    assert!(
        stderr.contains("partition 2"),
        "the damaged filesystem is not named by its partition\n{stderr}"
    );
}
