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
    assert!(err.to_string().contains("No such file"), "{err}");
    assert_one_line_naming(&err, &missing);

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
