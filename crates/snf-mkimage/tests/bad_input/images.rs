//! Bad-input cases: images. Multi-file images are not bad input and are accepted; what
//! they can hide (a looping or special backing chain, a missing or short extent, an
//! absurd size) is refused naming the file, and a source that cannot be reached says why.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{convert, partitioned_raw, same_bytes};
use crate::harness::Case;
use snf_testkit::fixture::{multi_file_images, run};

fn qemu_img(args: &[&str], files: &[&Path]) {
    run(Command::new("qemu-img").args(args).args(files));
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// An empty qcow2 of 64 MiB at `path` whose backing file is then set to `backing`
/// without qemu-img opening it.
fn qcow2_backed_by(path: &Path, backing: &Path, backing_format: &str) -> PathBuf {
    qemu_img(&["create", "-f", "qcow2"], &[path, Path::new("64M")]);
    qemu_img(
        &["rebase", "-u", "-F", backing_format, "-b"],
        &[backing, path],
    );
    path.to_path_buf()
}

#[test]
fn every_multi_file_layout_is_accepted_and_read_whole() {
    let mut c = Case::new();
    let raw = partitioned_raw(c.dir(), "disk.raw", 16, 256);
    for img in multi_file_images(&raw, c.dir()) {
        c.watch(&img.top);
        for other in &img.others {
            c.watch(other);
        }
        let out = c.path(&format!("{}.raw", img.label));
        c.run(&["--no-sysprep", "-o", s(&out), s(&img.top)])
            .succeeded();
        assert!(same_bytes(&out, &raw), "{}: not the disk", img.label);
    }
}

#[test]
fn a_looping_backing_chain_is_refused_naming_it() {
    let mut c = Case::new();
    let (a, b) = (c.path("a.qcow2"), c.path("b.qcow2"));
    qemu_img(&["create", "-f", "qcow2"], &[&a, Path::new("64M")]);
    qcow2_backed_by(&b, &a, "qcow2");
    qemu_img(&["rebase", "-u", "-F", "qcow2", "-b"], &[&b, &a]);
    c.watch(&a).watch(&b);
    let out = c.path("out.raw");
    let line = c
        .run(&["--no-sysprep", "-o", s(&out), s(&b)])
        .failure(&[s(&b), "loops"]);
    assert!(line.contains("backing chain"), "{line}");
}

#[test]
fn a_backing_file_that_is_a_fifo_or_a_device_is_refused_naming_it() {
    let mut c = Case::new();
    let fifo = c.path("fifo");
    run(Command::new("mkfifo").arg(&fifo));
    c.watch(&fifo);
    for (backing, what) in [
        (fifo.clone(), "is a FIFO"),
        (PathBuf::from("/dev/zero"), "is a character device"),
    ] {
        let img = qcow2_backed_by(&c.path("over.qcow2"), &backing, "raw");
        let out = c.path("out.raw");
        c.run(&["--no-sysprep", "-o", s(&out), s(&img)]).failure(&[
            s(&backing),
            what,
            "backing file",
        ]);
    }
}

/// A hostile image whose backing file is the host's state (procfs, sysfs) would copy it
/// into the image and on to the cloud.
#[test]
fn a_backing_file_on_a_kernel_pseudo_filesystem_is_refused() {
    let c = Case::new();
    for (backing, fs) in [
        ("/proc/self/environ", "procfs"),
        ("/sys/kernel/uevent_seqnum", "sysfs"),
    ] {
        let backing = PathBuf::from(backing);
        let img = qcow2_backed_by(&c.path("over.qcow2"), &backing, "raw");
        let out = c.path("out.raw");
        c.run(&["--no-sysprep", "-o", s(&out), s(&img)]).failure(&[
            s(&backing),
            fs,
            "backing file",
        ]);
        assert!(!out.exists(), "an image was written");
    }
}

#[test]
fn an_absurd_virtual_size_is_refused_before_any_copy() {
    let mut c = Case::new();
    let img = c.path("huge.qcow2");
    qemu_img(&["create", "-f", "qcow2"], &[&img, Path::new("1P")]);
    c.watch(&img);
    let out = c.path("out.raw");
    c.run(&["--no-sysprep", "-o", s(&out), s(&img)])
        .failure(&[s(&img), "64 TiB"]);
}

#[test]
fn a_missing_or_short_extent_or_data_file_is_named() {
    let mut c = Case::new();
    let raw = partitioned_raw(c.dir(), "disk.raw", 16, 256);
    let images = multi_file_images(&raw, c.dir());
    for label in ["vmdk-split-sparse", "vmdk-flat", "qcow2-data-file"] {
        let img = images.iter().find(|i| i.label == label).unwrap();
        let other = &img.others[0];
        let out = c.path("out.raw");
        let kept = other.with_extension("kept");
        fs::rename(other, &kept).unwrap();
        c.watch(&img.top);
        c.run(&["--no-sysprep", "-o", s(&out), s(&img.top)])
            .failure(&[s(other), "does not exist"]);
        fs::rename(&kept, other).unwrap();
        let f = fs::OpenOptions::new().write(true).open(other).unwrap();
        f.set_len(f.metadata().unwrap().len() / 2).unwrap();
        c.watch(other);
        c.run(&["--no-sysprep", "-o", s(&out), s(&img.top)])
            .failure(&[s(other), "is shorter than it should be"]);
    }
}

#[test]
fn a_source_that_cannot_be_reached_says_why() {
    let c = Case::new();
    let out = c.path("out.raw");
    let missing = c.path("missing.img");
    c.run(&["-o", s(&out), s(&missing)])
        .usage_error(&[s(&missing), "does not exist"]);
    let dangling = c.path("dangling.img");
    std::os::unix::fs::symlink(&missing, &dangling).unwrap();
    c.run(&["-o", s(&out), s(&dangling)])
        .usage_error(&[s(&dangling), "dangling symbolic link"]);
    let (a, b) = (c.path("a.img"), c.path("b.img"));
    std::os::unix::fs::symlink(&b, &a).unwrap();
    std::os::unix::fs::symlink(&a, &b).unwrap();
    c.run(&["-o", s(&out), s(&a)])
        .usage_error(&[s(&a), "symbolic link that loops"]);
}

#[test]
fn an_unreadable_source_says_so_to_an_unprivileged_user() {
    snf_testkit::fixture::require("setpriv");
    let mut c = Case::new();
    let raw = partitioned_raw(c.dir(), "disk.raw", 16, 256);
    let src = c.path("private.qcow2");
    convert(&raw, "qcow2", None, &src);
    fs::set_permissions(&src, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    c.watch(&src);
    run(Command::new("chown").arg("65534:65534").arg(c.tmpdir()));
    let out = c.tmpdir().join("out.raw");
    let outcome = c.run_with(
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(crate::common::bin())
            .args(["--no-sysprep", "-o"])
            .arg(&out)
            .arg(&src)
            .env("HOME", "/nonexistent"),
    );
    outcome.usage_error(&[s(&src), "cannot be read", "permission denied"]);
}
