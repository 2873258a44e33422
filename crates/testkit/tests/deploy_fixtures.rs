//! deploy.sh on small handmade disks: the snf-image rules it enforces and the layouts
//! it produces, without the Debian guest (fast). Needs root (loop devices, mount).

use std::path::{Path, PathBuf};
use std::process::Command;

use snf_testkit::fixture::{run, write_file, Disk, Mke2fs, MIB};
use snf_testkit::{deploy, ext_superblock, guest_file, partitions, probe_partition, TestkitError};

/// A disk of `size_mib` laid out by the sfdisk `script`, with an ext4 filesystem
/// holding `etc/fstab` = `fstab` on each partition of `ext_parts`.
fn fixture(dir: &Path, size_mib: u64, script: &str, ext_parts: &[u32], fstab: &str) -> PathBuf {
    let tree = dir.join("tree");
    write_file(&tree, "/etc/fstab", fstab);
    let disk = Disk::create(dir.join("disk.raw"), size_mib * MIB, script);
    for n in ext_parts {
        disk.ext(*n, &Mke2fs::ext4().tree(&tree));
    }
    disk.into_path()
}

fn meta(dir: &Path, props: &str) -> PathBuf {
    let path = dir.join("disk.meta");
    std::fs::write(
        &path,
        format!(r#"{{"properties":{{{props}}},"disk-format":"diskdump"}}"#),
    )
    .unwrap();
    path
}

fn deploy_err(img: &Path, meta: &Path, out: &Path, size: u64) -> String {
    match deploy(img, meta, out, size) {
        Ok(()) => panic!("deploy of {} succeeded but should fail", img.display()),
        Err(TestkitError::Failed { output, .. }) => output,
        Err(e) => panic!("deploy failed to run: {e}"),
    }
}

/// A 40 MiB disk whose only partition (32 MiB at 1 MiB) is ext4 holding `fstab`.
fn single_root(dir: &Path, fstab: &str) -> PathBuf {
    fixture(dir, 40, "start=2048, size=32M, type=83\n", &[1], fstab)
}

const FSTAB: &str = "UUID=00000000-0000-0000-0000-000000000001 / ext4 defaults 0 1\n";

#[test]
fn deploy_refuses_a_filesystem_that_is_not_clean() {
    let dir = tempfile::tempdir().unwrap();
    let img = single_root(dir.path(), FSTAB);
    // Mark the filesystem as not cleanly unmounted, as a crashed guest leaves it.
    run(Command::new("debugfs")
        .args(["-w", "-R", "ssv state 0"])
        .arg(format!("{}?offset={}", img.display(), MIB)));
    let m = meta(dir.path(), r#""OSFAMILY":"linux","ROOT_PARTITION":"1""#);
    let msg = deploy_err(&img, &m, &dir.path().join("vm.raw"), 128 * MIB);
    assert!(msg.contains("is not clean"), "{msg}");
}

#[test]
fn deploy_refuses_non_persistent_fstab_names() {
    let dir = tempfile::tempdir().unwrap();
    let fstab = format!("{FSTAB}/dev/sda2 /home ext4 defaults 0 2\n");
    let img = single_root(dir.path(), &fstab);
    let m = meta(dir.path(), r#""OSFAMILY":"linux","ROOT_PARTITION":"1""#);
    let msg = deploy_err(&img, &m, &dir.path().join("vm.raw"), 128 * MIB);
    assert!(
        msg.contains("non-persistent block device names: /dev/sda2"),
        "{msg}"
    );
}

#[test]
fn deploy_refuses_bad_swap_property_and_missing_root_partition() {
    let dir = tempfile::tempdir().unwrap();
    let img = single_root(dir.path(), FSTAB);
    let out = dir.path().join("vm.raw");
    let m = meta(dir.path(), r#""ROOT_PARTITION":"1","SWAP":"2:0""#);
    assert!(deploy_err(&img, &m, &out, 128 * MIB).contains("SWAP property '2:0' is not valid"));
    let m = meta(dir.path(), r#""OSFAMILY":"linux""#);
    assert!(deploy_err(&img, &m, &out, 128 * MIB).contains("ROOT_PARTITION not defined"));
    let m = meta(dir.path(), r#""ROOT_PARTITION":"1","SWAP":"2:200""#);
    assert!(deploy_err(&img, &m, &out, 128 * MIB).contains("not enough space for swap"));
}

/// SWAP=5:<MiB> behind a primary root on msdos: a new extended partition holding a
/// logical swap at the disk end, the root grown up to 2048 sectors before it.
#[test]
fn deploy_puts_logical_swap_in_a_new_extended_partition() {
    let dir = tempfile::tempdir().unwrap();
    let img = single_root(dir.path(), FSTAB);
    let m = meta(
        dir.path(),
        r#""OSFAMILY":"linux","ROOT_PARTITION":"1","SWAP":"5:16""#,
    );
    let out = dir.path().join("vm.raw");
    deploy(&img, &m, &out, 256 * MIB).unwrap();

    let n = 256 * MIB / 512;
    let swap_end = n - 2049;
    let swap_start = swap_end - 16 * 2048 + 1;
    let (label, parts) = partitions(&out).unwrap();
    assert_eq!(label, "dos");
    let got: Vec<_> = parts
        .iter()
        .map(|p| (p.number, p.start, p.start + p.size - 1, p.kind.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            (1, 2048, swap_start - 2049, "83"),
            (2, swap_start - 2048, swap_end, "5"),
            (5, swap_start, swap_end, "82"),
        ]
    );
    let (uuid, kind) = probe_partition(&out, 5).unwrap();
    assert_eq!(kind, "swap");
    let fstab = String::from_utf8(guest_file(&out, 1, "/etc/fstab").unwrap().unwrap()).unwrap();
    assert!(fstab.starts_with(FSTAB), "{fstab}");
    assert!(
        fstab.ends_with(&format!("UUID={uuid}\tnone\tswap\tsw\t0\t0\n")),
        "{fstab}"
    );
    // resize2fs filled the grown partition.
    let sb = ext_superblock(&out, 1).unwrap();
    let blocks: u64 = sb["Block count"].parse().unwrap();
    let bsize: u64 = sb["Block size"].parse().unwrap();
    assert_eq!(
        blocks * bsize / MIB,
        (swap_start - 2049 - 2048 + 1) * 512 / MIB
    );
    assert_eq!(sb["Filesystem state"], "clean");
}

/// A root in the last logical partition: the extended partition and the logical are
/// both grown to end 2048 sectors before the disk end.
#[test]
fn deploy_grows_extended_and_last_logical_partition() {
    let dir = tempfile::tempdir().unwrap();
    let script = "start=2048, size=8M, type=83\n\
                  start=18432, type=5\n\
                  start=20480, size=24M, type=83\n";
    let img = fixture(dir.path(), 40, script, &[5], FSTAB);
    let m = meta(dir.path(), r#""OSFAMILY":"linux","ROOT_PARTITION":"5""#);
    let out = dir.path().join("vm.raw");
    deploy(&img, &m, &out, 200 * MIB).unwrap();
    let end = 200 * MIB / 512 - 2049;
    let (_, parts) = partitions(&out).unwrap();
    let got: Vec<_> = parts
        .iter()
        .map(|p| (p.number, p.start, p.start + p.size - 1))
        .collect();
    assert_eq!(
        got,
        vec![(1, 2048, 18431), (2, 18432, end), (5, 20480, end)]
    );
    let sb = ext_superblock(&out, 5).unwrap();
    let blocks: u64 = sb["Block count"].parse().unwrap();
    let bsize: u64 = sb["Block size"].parse().unwrap();
    let part_bytes = (end - 20480 + 1) * 512;
    assert_eq!(blocks * bsize, part_bytes - part_bytes % bsize);
    // No SWAP property: fstab is left alone.
    let fstab = guest_file(&out, 5, "/etc/fstab").unwrap().unwrap();
    assert_eq!(fstab, FSTAB.as_bytes());
}

/// The source image is read, never written.
#[test]
fn deploy_leaves_the_image_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let img = single_root(dir.path(), FSTAB);
    let before = std::fs::read(&img).unwrap();
    let m = meta(
        dir.path(),
        r#""OSFAMILY":"linux","ROOT_PARTITION":"1","SWAP":"2:8""#,
    );
    deploy(&img, &m, &dir.path().join("vm.raw"), 100 * MIB).unwrap();
    assert!(
        std::fs::read(&img).unwrap() == before,
        "deploy modified its input"
    );
}
