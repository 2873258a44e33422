//! Shrinking btrfs as the last partition: the kernel's resize in the libguestfs
//! appliance (one launch for this binary), then the partition. Checked with `btrfs
//! check --readonly`, `btrfs inspect-internal dump-super` and `btrfs restore` on the
//! partition cut out of the result, and `sfdisk --verify`. A filesystem spanning two
//! devices is left alone, with the reason. Needs root (loop mounts in the fixtures).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use image_creator::shrink::{self, Method, ShrinkOptions};
use snf_disk::partition::{Layout, MIB};
use snf_disk::WorkDir;
use snf_testkit::fixture::{
    assert_sfdisk_verifies, copy_into, pseudo_random, require, run, sparse_file, write_file, Disk,
    Mke2fs,
};
use snf_testkit::report::Recorder;

const UUID: &str = "6c3c5a2e-0b4e-4c47-9d7e-3f1f6a0b2c11";

fn cut(img: &Path, off: u64, size: u64, dest: &Path) -> PathBuf {
    run(Command::new("dd")
        .arg(format!("if={}", img.display()))
        .arg(format!("of={}", dest.display()))
        .args([
            "bs=1M",
            "iflag=skip_bytes,count_bytes",
            "conv=sparse",
            "status=none",
        ])
        .arg(format!("skip={off}"))
        .arg(format!("count={size}")));
    dest.to_path_buf()
}

fn super_field(dump: &str, key: &str) -> u64 {
    dump.lines()
        .find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next()? == key).then(|| w.next()?.parse().ok())?
        })
        .unwrap_or_else(|| panic!("dump-super printed no {key}: {dump}"))
}

fn qemu_on(dir: &Path) -> Vec<String> {
    let out = Command::new("pgrep")
        .args(["-a", "qemu-system"])
        .output()
        .unwrap();
    let d = dir.display().to_string();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&d))
        .map(String::from)
        .collect()
}

fn shrink_disk(dir: &Path, img: &Path) -> (Layout, shrink::ShrinkOutcome, Recorder) {
    let mut layout = Layout::read_file(img, 512).unwrap();
    let workdir = WorkDir::create(Some(dir)).unwrap();
    let rec = Recorder::default();
    let opts = ShrinkOptions {
        workdir: &workdir,
        method: None,
    };
    let done = shrink::shrink(img, &mut layout, &opts, &rec).unwrap();
    (layout, done, rec)
}

#[test]
fn btrfs_last_partition_is_shrunk_in_the_appliance() {
    require("mkfs.btrfs");
    require("btrfs");
    let dir = tempfile::tempdir().unwrap();
    let boot = dir.path().join("boot");
    write_file(&boot, "/grub/grub.cfg", "set default=0\n");
    let tree = dir.path().join("tree");
    write_file(&tree, "/etc/hostname", "btrfs-guest\n");
    let big = pseudo_random(24 << 20, 3);
    write_file(&tree, "/var/big.bin", &big);
    let disk = Disk::create(
        dir.path().join("disk.img"),
        700 * MIB,
        "label: dos\nstart=2048, size=32M, type=83\nsize=600M, type=83\n",
    );
    disk.ext(1, &Mke2fs::ext4().tree(&boot))
        .btrfs(2, UUID, &tree, &[]);
    let img = disk.into_path();
    let before = Layout::read_file(&img, 512).unwrap();

    let (layout, done, rec) = shrink_disk(dir.path(), &img);
    assert!(
        qemu_on(dir.path()).is_empty(),
        "the appliance is still running"
    );
    let fs = done
        .shrunk
        .as_ref()
        .unwrap_or_else(|| panic!("not shrunk: {:?}", rec.warnings()));
    assert_eq!(
        (fs.partition, fs.fs, fs.method),
        (2, "btrfs", Method::Appliance)
    );
    let p2 = layout.partition(2).unwrap();
    assert!(
        p2.size() < before.partition(2).unwrap().size() / 2,
        "{} bytes left",
        p2.size()
    );
    assert_eq!(p2.offset(), before.partition(2).unwrap().offset());
    assert_eq!(done.new_size, p2.end_offset() + MIB);
    fs::OpenOptions::new()
        .write(true)
        .open(&img)
        .unwrap()
        .set_len(done.new_size)
        .unwrap();
    assert_sfdisk_verifies(img.to_str().unwrap());

    let part = cut(&img, p2.offset(), p2.size(), &dir.path().join("p2.btrfs"));
    let sup = run(Command::new("btrfs")
        .args(["inspect-internal", "dump-super"])
        .arg(&part));
    assert_eq!(super_field(&sup, "dev_item.total_bytes"), p2.size());
    assert_eq!(super_field(&sup, "total_bytes"), p2.size());
    run(Command::new("btrfs")
        .args(["check", "--readonly"])
        .arg(&part));
    let out = dir.path().join("restored");
    fs::create_dir_all(&out).unwrap();
    run(Command::new("btrfs").args(["restore"]).arg(&part).arg(&out));
    assert!(
        fs::read(out.join("var/big.bin")).unwrap() == big,
        "big.bin changed"
    );
    assert_eq!(
        fs::read_to_string(out.join("etc/hostname")).unwrap(),
        "btrfs-guest\n"
    );
}

#[test]
fn multi_device_btrfs_is_not_shrunk_and_the_run_says_why() {
    require("mkfs.btrfs");
    let dir = tempfile::tempdir().unwrap();
    let disk = Disk::create(
        dir.path().join("disk.img"),
        400 * MIB,
        "label: dos\nstart=2048, size=300M, type=83\n",
    );
    let (d1, d2) = (dir.path().join("d1"), dir.path().join("d2"));
    sparse_file(&d1, 300 * MIB);
    sparse_file(&d2, 300 * MIB);
    run(Command::new("mkfs.btrfs")
        .args(["-q", "-f", "-d", "single", "-m", "single"])
        .arg(&d1)
        .arg(&d2));
    copy_into(&d1, disk.path(), disk.offset(1));
    let img = disk.into_path();
    let (_, done, rec) = shrink_disk(dir.path(), &img);
    assert!(done.shrunk.is_none());
    assert!(
        rec.warned("Unable to shrink partition 1: its btrfs filesystem cannot be shrunk: it spans 2 devices"),
        "{:?}",
        rec.warnings()
    );
    assert!(qemu_on(dir.path()).is_empty());
}
