//! Source examination against real images made by qemu-img, loop devices and bad input.

mod disk_support;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

use disk_support::*;
use snf_disk::{MediaError, Source, SourceKind};

/// Every error is one line that names the file.
fn assert_one_line_naming(err: &MediaError, path: &Path) {
    let msg = err.to_string();
    assert!(!msg.contains('\n'), "not one line: {msg:?}");
    assert!(
        msg.contains(&path.display().to_string()),
        "does not name {}: {msg}",
        path.display()
    );
}

#[test]
fn every_format_is_recognised_with_its_virtual_size() {
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_fixture(dir.path(), "disk.raw");
    for (label, fmt, opts, expected) in FORMATS {
        let img = convert_to(&raw, dir.path(), label, fmt, opts);
        let s = Source::examine(&img).unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_eq!(s.kind(), SourceKind::ImageFile, "{label}");
        assert_eq!(s.format(), expected, "{label}");
        assert_eq!(s.size(), DISK, "{label}: virtual size");
        assert_eq!(s.sector_size(), 512, "{label}");
        assert_eq!(s.is_raw(), expected == "raw", "{label}");
        assert!(s.path().is_absolute(), "{label}");
        assert_eq!(s.given(), img.as_path());
    }
}

#[test]
fn fixed_vhd_is_vpc_although_qemu_img_probes_raw() {
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_fixture(dir.path(), "disk.raw");
    let vhd = convert_to(
        &raw,
        dir.path(),
        "fixed",
        "vpc",
        "subformat=fixed,force_size=on",
    );
    // The trap this guards against is real: qemu-img alone says raw.
    let probed = run(Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(&vhd));
    assert!(probed.contains("\"format\": \"raw\""), "{probed}");
    let s = Source::examine(&vhd).unwrap();
    assert_eq!(s.format(), "vpc");
    assert_eq!(s.size(), DISK, "the footer is not part of the disk");
}

#[test]
fn block_device_size_and_logical_sector_size() {
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_fixture(dir.path(), "disk.raw");
    for sector in [512u32, 4096] {
        let lo = Loop::attach(&raw, sector, false);
        let s = Source::examine(lo.path()).unwrap();
        assert_eq!(s.kind(), SourceKind::BlockDevice);
        assert_eq!(s.format(), "raw");
        assert!(s.is_raw());
        assert_eq!(s.size(), DISK);
        assert_eq!(s.sector_size(), sector, "{}", lo.path().display());
    }
}

#[test]
fn root_is_the_host_and_other_directories_are_refused() {
    let s = Source::examine("/").unwrap();
    assert_eq!(s.kind(), SourceKind::Host);
    let s = Source::examine("/usr/..").unwrap();
    assert_eq!(s.kind(), SourceKind::Host, "/usr/.. is the root too");
    let dir = tempfile::tempdir().unwrap();
    let err = Source::examine(dir.path()).unwrap_err();
    assert!(matches!(err, MediaError::Directory { .. }), "{err}");
    assert_one_line_naming(&err, dir.path());
}

#[test]
fn other_file_types_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    run(Command::new("mkfifo").arg(&fifo));
    let err = Source::examine(&fifo).unwrap_err();
    assert!(matches!(err, MediaError::InvalidType { .. }), "{err}");
    assert!(
        err.to_string().ends_with(
            "Invalid media source. Only block devices, regular files and the root directory are supported."
        ),
        "{err}"
    );
    assert_one_line_naming(&err, &fifo);
    let err = Source::examine("/dev/null").unwrap_err();
    assert!(matches!(err, MediaError::InvalidType { .. }), "{err}");
}

#[test]
fn missing_and_empty_files() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.img");
    let err = Source::examine(&missing).unwrap_err();
    assert!(matches!(err, MediaError::Stat { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!("{} does not exist", missing.display())
    );
    let dangling = dir.path().join("dangling.img");
    std::os::unix::fs::symlink(&missing, &dangling).unwrap();
    let err = Source::examine(&dangling).unwrap_err();
    assert!(
        err.to_string().contains("is a dangling symbolic link"),
        "{err}"
    );
    let (a, b) = (dir.path().join("a.img"), dir.path().join("b.img"));
    std::os::unix::fs::symlink(&b, &a).unwrap();
    std::os::unix::fs::symlink(&a, &b).unwrap();
    let err = Source::examine(&a).unwrap_err();
    assert!(
        err.to_string().ends_with("is a symbolic link that loops"),
        "{err}"
    );
    assert_one_line_naming(&err, &a);

    let empty = dir.path().join("empty.img");
    File::create(&empty).unwrap();
    let err = Source::examine(&empty).unwrap_err();
    assert!(matches!(err, MediaError::Empty { .. }), "{err}");
    assert_eq!(err.to_string(), format!("{} is empty", empty.display()));
}

#[test]
fn garbage_is_not_an_image() {
    let dir = tempfile::tempdir().unwrap();
    // A qcow2 magic followed by garbage: qemu-img's own reason is reported.
    let fake = dir.path().join("fake.qcow2");
    let mut bytes = b"QFI\xfb".to_vec();
    bytes.extend(pseudo_random(65536, 7));
    std::fs::write(&fake, &bytes).unwrap();
    let err = Source::examine(&fake).unwrap_err();
    assert!(matches!(err, MediaError::NotAnImage { .. }), "{err}");
    assert_one_line_naming(&err, &fake);

    // Random bytes that are not even whole sectors.
    let junk = dir.path().join("junk.bin");
    std::fs::write(&junk, pseudo_random(1000, 9)).unwrap();
    let err = Source::examine(&junk).unwrap_err();
    assert!(matches!(err, MediaError::NotAnImage { .. }), "{err}");
    assert!(err.to_string().contains("not a multiple of 512"), "{err}");
    assert_one_line_naming(&err, &junk);
}

/// Cut `img` in half into `dir/name`.
fn truncated_copy(img: &Path, dir: &Path, name: &str) -> std::path::PathBuf {
    let data = read_all(img);
    let out = dir.join(name);
    std::fs::write(&out, &data[..data.len() / 2]).unwrap();
    out
}

#[test]
fn truncated_images_are_reported_as_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_fixture(dir.path(), "disk.raw");
    // qcow2 (qemu-img check), vdi (only qemu-img map shows it), vhdx and dynamic vpc
    // (qemu-img itself refuses to open them).
    for (label, fmt, opts) in [
        ("qcow2", "qcow2", ""),
        ("vdi", "vdi", ""),
        ("vhdx", "vhdx", ""),
        ("vpc", "vpc", "subformat=dynamic,force_size=on"),
        ("vmdk", "vmdk", ""),
    ] {
        let img = convert_to(&raw, dir.path(), label, fmt, opts);
        let cut = truncated_copy(&img, dir.path(), &format!("cut.{label}"));
        let err = Source::examine(&cut).unwrap_err();
        assert!(
            matches!(
                err,
                MediaError::Damaged { .. } | MediaError::NotAnImage { .. }
            ),
            "{label}: {err}"
        );
        assert_one_line_naming(&err, &cut);
        // The qemu-img convert this guards against would have succeeded silently for
        // qcow2 and vdi.
    }
    let qcow = convert_to(&raw, dir.path(), "again", "qcow2", "");
    let cut = truncated_copy(&qcow, dir.path(), "cut-again.qcow2");
    let err = Source::examine(&cut).unwrap_err();
    assert!(
        matches!(err, MediaError::Damaged { ref format, .. } if format == "qcow2"),
        "{err}"
    );
    assert!(err.to_string().contains("corruptions"), "{err}");
}

#[test]
fn image_size_comes_from_the_format_not_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_fixture(dir.path(), "disk.raw");
    let qcow = convert_to(&raw, dir.path(), "q", "qcow2", "");
    let s = Source::examine(&qcow).unwrap();
    assert!(std::fs::metadata(&qcow).unwrap().len() < DISK);
    assert_eq!(s.size(), DISK);
    // The raw fixture is sparse: its allocation is far below its size.
    let r = Source::examine(&raw).unwrap();
    assert!(r.allocated() < DISK / 4, "allocated {}", r.allocated());
    let f = File::open(&raw).unwrap();
    let mut b = [0u8; 4];
    f.read_exact_at(&mut b, 0).unwrap();
}

fn qemu_img(args: &[&str], files: &[&Path]) {
    run(Command::new("qemu-img").args(args).args(files));
}

#[test]
fn multi_file_images_are_accepted_with_every_file_known() {
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_fixture(dir.path(), "disk.raw");
    let images = snf_testkit::fixture::multi_file_images(&raw, dir.path());
    assert_eq!(images.len(), 7);
    for img in &images {
        let s = Source::examine(&img.top).unwrap_or_else(|e| panic!("{}: {e}", img.label));
        assert_eq!(s.format(), img.format, "{}", img.label);
        assert_eq!(s.size(), DISK, "{}", img.label);
        let files: Vec<_> = s.files().map(Path::to_path_buf).collect();
        assert!(!img.others.is_empty(), "{}", img.label);
        for other in &img.others {
            assert!(
                files.contains(other),
                "{}: {other:?} not in {files:?}",
                img.label
            );
            // Whatever the spelling: a symlink, `..`, a hard link.
            let link = dir.path().join(format!("{}.link", img.label));
            std::os::unix::fs::symlink(other, &link).unwrap();
            assert_eq!(
                s.file_named_by(&link),
                Some(other.as_path()),
                "{}",
                img.label
            );
            let dotted = other
                .parent()
                .unwrap()
                .join("..")
                .join(other.parent().unwrap().file_name().unwrap())
                .join(other.file_name().unwrap());
            assert_eq!(s.file_named_by(&dotted), Some(other.as_path()));
            let hard = dir.path().join(format!("{}.hard", img.label));
            std::fs::hard_link(other, &hard).unwrap();
            assert_eq!(s.file_named_by(&hard), Some(other.as_path()));
            std::fs::remove_file(&link).unwrap();
            std::fs::remove_file(&hard).unwrap();
        }
        assert_eq!(s.file_named_by(&img.top), Some(s.path()));
        assert_eq!(s.file_named_by(&raw), None, "{}", img.label);
    }
}

#[test]
fn a_missing_or_short_extent_or_data_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_fixture(dir.path(), "disk.raw");
    for img in snf_testkit::fixture::multi_file_images(&raw, dir.path()) {
        let other = &img.others[0];
        let keep = other.with_extension("kept");
        std::fs::rename(other, &keep).unwrap();
        let err = Source::examine(&img.top).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, MediaError::Dependency { .. }),
            "{}: {msg}",
            img.label
        );
        assert!(
            msg.contains(&other.display().to_string()),
            "{}: {msg}",
            img.label
        );
        assert!(msg.ends_with("does not exist"), "{}: {msg}", img.label);
        assert!(
            msg.contains(&img.top.display().to_string()),
            "{}: {msg}",
            img.label
        );
        std::fs::rename(&keep, other).unwrap();
        if img.label.contains("over") {
            continue;
        }
        // Cut the data file or extent short of its last data.
        let f = std::fs::OpenOptions::new().write(true).open(other).unwrap();
        let len = f.metadata().unwrap().len();
        f.set_len(len.min(DISK - (16 << 10)) / 2).unwrap();
        let err = Source::examine(&img.top).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&other.display().to_string()),
            "{}: {msg}",
            img.label
        );
        assert!(
            msg.contains("is shorter than it should be"),
            "{}: {msg}",
            img.label
        );
        assert_one_line_naming(&err, &img.top);
    }
}

#[test]
fn backing_chains_that_loop_or_lead_to_non_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (a, b) = (d.join("a.qcow2"), d.join("b.qcow2"));
    qemu_img(&["create", "-f", "qcow2"], &[&a, Path::new("64M")]);
    qemu_img(&["create", "-f", "qcow2", "-F", "qcow2", "-b"], &[&a, &b]);
    qemu_img(&["rebase", "-u", "-F", "qcow2", "-b"], &[&b, &a]);
    let err = Source::examine(&b).unwrap_err();
    assert!(matches!(err, MediaError::ChainLoops { .. }), "{err}");
    assert_one_line_naming(&err, &b);

    // An image backed by itself.
    let selfish = d.join("self.qcow2");
    qemu_img(&["create", "-f", "qcow2"], &[&selfish, Path::new("64M")]);
    qemu_img(
        &["rebase", "-u", "-F", "qcow2", "-b"],
        &[&selfish, &selfish],
    );
    let err = Source::examine(&selfish).unwrap_err();
    assert!(matches!(err, MediaError::ChainLoops { .. }), "{err}");

    let fifo = d.join("fifo");
    run(Command::new("mkfifo").arg(&fifo));
    for (backing, what) in [
        (fifo.as_path(), "is a FIFO"),
        (Path::new("/dev/zero"), "is a character device"),
        (d, "is a directory"),
    ] {
        let img = d.join("over-special.qcow2");
        qemu_img(&["create", "-f", "qcow2"], &[&img, Path::new("64M")]);
        qemu_img(&["rebase", "-u", "-F", "raw", "-b"], &[backing, &img]);
        let err = Source::examine(&img).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&backing.display().to_string()), "{msg}");
        assert!(msg.contains(what), "{msg}");
        assert!(msg.contains("the backing file of"), "{msg}");
    }
    let img = d.join("over-nbd.qcow2");
    qemu_img(&["create", "-f", "qcow2"], &[&img, Path::new("64M")]);
    qemu_img(
        &["rebase", "-u", "-F", "raw", "-b", "nbd://127.0.0.1:1/x"],
        &[&img],
    );
    let err = Source::examine(&img).unwrap_err();
    assert!(err.to_string().contains("is not a local file"), "{err}");

    // A chain deeper than the bound.
    let mut below = d.join("layer0.qcow2");
    qemu_img(&["create", "-f", "qcow2"], &[&below, Path::new("1M")]);
    for i in 1..=snf_disk::media::MAX_CHAIN {
        let above = d.join(format!("layer{i}.qcow2"));
        qemu_img(
            &["create", "-f", "qcow2", "-F", "qcow2", "-b"],
            &[&below, &above],
        );
        below = above;
    }
    let err = Source::examine(&below).unwrap_err();
    assert!(matches!(err, MediaError::ChainTooLong { .. }), "{err}");
}

#[test]
fn an_absurd_virtual_size_is_refused_before_any_check() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("huge.qcow2");
    qemu_img(&["create", "-f", "qcow2"], &[&img, Path::new("1P")]);
    let err = Source::examine(&img).unwrap_err();
    assert!(matches!(err, MediaError::TooLarge { .. }), "{err}");
    assert!(err.to_string().contains("64 TiB"), "{err}");
    assert_one_line_naming(&err, &img);
}
