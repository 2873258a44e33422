//! Whole runs on every kind of source: the source is never written, the image is the
//! source's disk byte for byte, the side files are right; failed runs leave nothing.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::*;
use snf_testkit::fixture::Loop;

/// Run `--no-sysprep -o out.raw` on `src` (format `fmt`) and check everything.
fn image_and_check(dir: &Path, src: &Path, fmt: &str) {
    let before = sha256(src);
    let tmp = dir.join(format!("tmp-{fmt}"));
    fs::create_dir(&tmp).unwrap();
    let out_path = dir.join(format!("out-{fmt}.raw"));
    let out = run(&[
        "--no-sysprep",
        "--tmpdir",
        tmp.to_str().unwrap(),
        "-o",
        out_path.to_str().unwrap(),
        src.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{fmt}: {}", stderr(&out));
    assert_eq!(sha256(src), before, "{fmt}: the source was changed");
    let reference = dir.join(format!("ref-{fmt}.raw"));
    to_raw(src, fmt, &reference);
    check_outputs(&out_path, &reference);
    assert!(entries(&tmp).is_empty(), "{fmt}: work dir left in {tmp:?}");
}

#[test]
fn every_image_format_is_dumped_exactly_and_left_untouched() {
    let dir = tempdir();
    let d = dir.path();
    let raw = partitioned_raw(d, "disk.raw", 32, 512);
    image_and_check(d, &raw, "raw");
    for (fmt, opts, name) in [
        ("qcow2", None, "disk.qcow2"),
        ("vmdk", None, "disk.vmdk"),
        (
            "vpc",
            Some("subformat=dynamic,force_size=on"),
            "dynamic.vhd",
        ),
        ("vpc", Some("subformat=fixed,force_size=on"), "fixed.vhd"),
        ("vdi", None, "disk.vdi"),
        ("vhdx", None, "disk.vhdx"),
    ] {
        let src = d.join(name);
        convert(&raw, fmt, opts, &src);
        let sub = d.join(format!("run-{name}"));
        fs::create_dir(&sub).unwrap();
        image_and_check(&sub, &src, fmt);
    }
}

#[test]
fn a_block_device_is_dumped_exactly_and_left_untouched() {
    let dir = tempdir();
    let d = dir.path();
    let raw = partitioned_raw(d, "disk.raw", 16, 256);
    let dev = Loop::attach(&raw, 512, false);
    image_and_check(d, dev.path(), "raw");
}

#[test]
fn a_full_output_filesystem_leaves_nothing_behind() {
    let dir = tempdir();
    let d = dir.path();
    let src = partitioned_raw(d, "disk.raw", 16, 4096);
    let before = sha256(&src);
    let outdir = d.join("small");
    let _fs = SmallFs::mount(&outdir, 1024);
    let tmp = d.join("tmp");
    fs::create_dir(&tmp).unwrap();
    let out = run(&[
        "--no-sysprep",
        "--tmpdir",
        tmp.to_str().unwrap(),
        "-o",
        outdir.join("out.raw").to_str().unwrap(),
        src.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    let last = err.lines().last().unwrap();
    assert!(
        last.starts_with("Error: No space left under ") && last.contains("out.raw"),
        "{err}"
    );
    assert!(entries(&outdir).is_empty(), "left {:?}", entries(&outdir));
    assert!(entries(&tmp).is_empty());
    assert_eq!(sha256(&src), before);
}

#[test]
fn a_garbage_partition_table_fails_cleanly() {
    let dir = tempdir();
    let d = dir.path();
    let src = partitioned_raw(d, "disk.raw", 8, 16);
    // Partition 1 claims far more sectors than the disk has.
    let mut bytes = fs::read(&src).unwrap();
    bytes[446 + 12..446 + 16].copy_from_slice(&0x00ff_ffffu32.to_le_bytes());
    fs::write(&src, &bytes).unwrap();
    let before = sha256(&src);
    let tmp = d.join("tmp");
    fs::create_dir(&tmp).unwrap();
    let out_path = d.join("out.raw");
    let out = run(&[
        "--no-sysprep",
        "--tmpdir",
        tmp.to_str().unwrap(),
        "-o",
        out_path.to_str().unwrap(),
        src.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.lines().last().unwrap().starts_with(&format!(
            "Error: cannot read the partition table of {}: partition 1 ",
            src.display()
        )),
        "{err}"
    );
    assert_eq!(entries(d), vec!["disk.raw", "tmp"]);
    assert!(entries(&tmp).is_empty());
    assert_eq!(sha256(&src), before);
}

#[test]
fn not_enough_room_in_tmpdir_is_reported_up_front() {
    let dir = tempdir();
    let d = dir.path();
    let raw = partitioned_raw(d, "disk.raw", 16, 4096);
    let src = d.join("disk.qcow2");
    convert(&raw, "qcow2", None, &src);
    let before = sha256(&src);
    let tmp = d.join("small");
    let _fs = SmallFs::mount(&tmp, 1024);
    let out_path = d.join("out.raw");
    let out = run(&[
        "--no-sysprep",
        "--tmpdir",
        tmp.to_str().unwrap(),
        "-o",
        out_path.to_str().unwrap(),
        src.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    let last = err.lines().last().unwrap();
    assert!(
        last.starts_with(&format!(
            "Error: No space left under {}: need ",
            tmp.display()
        )),
        "{err}"
    );
    assert!(entries(&tmp).is_empty(), "left {:?}", entries(&tmp));
    assert!(!out_path.exists());
    assert_eq!(sha256(&src), before);
}

#[test]
fn an_unprivileged_user_can_image_a_file() {
    require("setpriv");
    let dir = tempdir();
    let d = dir.path();
    let raw = partitioned_raw(d, "disk.raw", 16, 256);
    let src = d.join("disk.qcow2");
    convert(&raw, "qcow2", None, &src);
    let work = d.join("work");
    fs::create_dir(&work).unwrap();
    sh("chown", &["65534:65534", work.to_str().unwrap()]);
    let out_path = work.join("out.raw");
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", bin()])
        .args(["--no-sysprep", "--tmpdir", work.to_str().unwrap(), "-o"])
        .arg(&out_path)
        .arg(&src)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    check_outputs(&out_path, &raw);
    assert!(!workdir_left(&work));
}

#[test]
fn multi_file_images_are_dumped_exactly_and_left_untouched() {
    let dir = tempdir();
    let d = dir.path();
    let raw = partitioned_raw(d, "disk.raw", 32, 512);
    for img in snf_testkit::fixture::multi_file_images(&raw, d) {
        let before: Vec<String> = img.others.iter().map(|p| sha256(p)).collect();
        let sub = d.join(format!("run-{}", img.label));
        fs::create_dir(&sub).unwrap();
        image_and_check(&sub, &img.top, img.format);
        // The image is the disk qemu-img sees, and that is the original disk.
        assert!(
            same_bytes(&sub.join(format!("out-{}.raw", img.format)), &raw),
            "{}: the image is not the original disk",
            img.label
        );
        let after: Vec<String> = img.others.iter().map(|p| sha256(p)).collect();
        assert_eq!(before, after, "{}: a file of the source changed", img.label);
    }
}

#[test]
fn programs_run_in_the_c_locale_whatever_the_users_locale() {
    let dir = tempdir();
    let d = dir.path();
    let raw = partitioned_raw(d, "disk.raw", 32, 512);
    let src = d.join("disk.qcow2");
    convert(&raw, "qcow2", None, &src);
    let tmp = d.join("tmp");
    fs::create_dir(&tmp).unwrap();
    let out_path = d.join("out.raw");
    let out = Command::new(bin())
        .env("LANG", "de_DE.UTF-8")
        .env("LC_ALL", "de_DE.UTF-8")
        .env("LANGUAGE", "de")
        .args(["--tmpdir", tmp.to_str().unwrap(), "-o"])
        .arg(&out_path)
        .arg(&src)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // Shrinking parses resize2fs's English output: it happened.
    assert!(
        fs::metadata(&out_path).unwrap().len() < fs::metadata(&raw).unwrap().len(),
        "not shrunk\n{}",
        stderr(&out)
    );
}
