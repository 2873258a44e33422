//! The diskdump: byte-identical, sparse, MD5 in the same pass, atomic, side files.

mod disk_support;

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

use disk_support::*;
use snf_core::report::Quiet;
use snf_disk::{
    dump, md5_of, output_files, write_side_files, DumpError, SnapshotMode, Source, WorkDir,
    WorkingDisk,
};

fn open(src: &Path, wd: &WorkDir) -> WorkingDisk {
    WorkingDisk::open(
        &Source::examine(src).unwrap(),
        wd,
        SnapshotMode::Snapshot,
        &Quiet,
    )
    .unwrap()
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn dump_is_byte_identical_sparse_and_its_md5_matches_md5sum() {
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_fixture(dir.path(), "disk.raw");
    let wd = WorkDir::create(Some(dir.path())).unwrap();
    let disk = open(&raw, &wd);
    let outdir = tempfile::tempdir().unwrap();
    let out = outdir.path().join("image.diskdump");
    let s = dump(&disk, DISK, &[], &out, &Quiet).unwrap();
    assert_eq!(s.bytes, DISK);
    assert_eq!(std::fs::metadata(&out).unwrap().len(), DISK);
    assert_same_bytes(
        &File::open(&out).unwrap(),
        &File::open(&raw).unwrap(),
        DISK,
        "dump",
    );
    assert_eq!(s.md5_hex, md5sum(&out));
    assert_eq!(s.md5_hex, md5sum(&raw));
    let data: u64 = EXTENTS.iter().map(|e| e.1).sum();
    assert!(
        allocated(&out) <= data + (256 << 10),
        "output allocates {} for {data} bytes of data",
        allocated(&out)
    );
    assert_eq!(
        names(outdir.path()),
        ["image.diskdump"],
        "no partial file left"
    );
    // The MD5-only pass agrees.
    assert_eq!(md5_of(&disk, DISK, &Quiet).unwrap().md5_hex, s.md5_hex);
}

#[test]
fn dump_of_a_prefix_and_of_a_converted_image() {
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_fixture(dir.path(), "disk.raw");
    let vmdk = convert_to(&raw, dir.path(), "v", "vmdk", "");
    let wd = WorkDir::create(Some(dir.path())).unwrap();
    let disk = open(&vmdk, &wd);
    let out = dir.path().join("prefix.img");
    let size = (21 << 20) + 4096;
    let s = dump(&disk, size, &[], &out, &Quiet).unwrap();
    assert_eq!(std::fs::metadata(&out).unwrap().len(), size);
    assert_same_bytes(
        &File::open(&out).unwrap(),
        &File::open(&raw).unwrap(),
        size,
        "prefix",
    );
    assert_eq!(s.md5_hex, md5sum(&out));
    // A size past the end of the disk is refused, and creates nothing.
    let too_big = dir.path().join("too-big.img");
    let err = dump(&disk, DISK + 512, &[], &too_big, &Quiet).unwrap_err();
    assert!(matches!(err, DumpError::TooLarge { .. }), "{err}");
    assert!(!too_big.exists());
}

#[test]
fn free_ranges_are_written_as_zeros_without_reading() {
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_fixture(dir.path(), "disk.raw");
    let wd = WorkDir::create(Some(dir.path())).unwrap();
    let disk = open(&raw, &wd);
    let out = dir.path().join("freed.img");
    let free = [(20 << 20) + 4096..(21 << 20), (40 << 20)..(41 << 20)];
    let s = dump(&disk, DISK, &free, &out, &Quiet).unwrap();
    let got = read_all(&out);
    let mut expected = read_all(&raw);
    for r in &free {
        expected[r.start as usize..r.end as usize].fill(0);
    }
    assert!(
        got == expected,
        "free ranges must read back as zeros, the rest unchanged"
    );
    assert_eq!(s.md5_hex, md5sum(&out));
}

#[test]
fn dev_null_writes_nothing_but_computes_the_md5() {
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_fixture(dir.path(), "disk.raw");
    let wd = WorkDir::create(Some(dir.path())).unwrap();
    let disk = open(&raw, &wd);
    let link = dir.path().join("null-link");
    std::os::unix::fs::symlink("/dev/null", &link).unwrap();
    for out in [Path::new("/dev/null"), link.as_path()] {
        let s = dump(&disk, DISK, &[], out, &Quiet).unwrap();
        assert_eq!(s.md5_hex, md5sum(&raw));
        write_side_files(out, "/dev/null", &s.md5_hex, &BTreeMap::new()).unwrap();
    }
    assert!(!Path::new("/dev/null.meta").exists());
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(!dir.path().join(".null-link.partial").exists());
}

#[test]
fn failure_midway_leaves_no_file_and_keeps_an_existing_one() {
    require("mount");
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("big.raw");
    let f = File::create(&raw).unwrap();
    f.write_all_at(&pseudo_random(16 << 20, 6), 0).unwrap();
    f.set_len(DISK).unwrap();
    drop(f);
    let wd = WorkDir::create(Some(dir.path())).unwrap();
    let disk = open(&raw, &wd);
    let small = SmallFs::new(8);
    let out = small.path().join("image.img");
    let err = dump(&disk, DISK, &[], &out, &Quiet).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "No space left under {} while writing image file {}",
            small.path().display(),
            out.display()
        )),
        "{msg}"
    );
    assert!(
        small.entries().is_empty(),
        "left behind: {:?}",
        small.entries()
    );

    // With an older image in place (-f), the failed run leaves it as it was.
    std::fs::write(&out, b"previous image").unwrap();
    dump(&disk, DISK, &[], &out, &Quiet).unwrap_err();
    assert_eq!(std::fs::read(&out).unwrap(), b"previous image");
    assert_eq!(small.entries(), ["image.img"]);
}

#[test]
fn output_that_is_not_a_regular_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_fixture(dir.path(), "disk.raw");
    let wd = WorkDir::create(Some(dir.path())).unwrap();
    let disk = open(&raw, &wd);
    let sub = dir.path().join("a-directory");
    std::fs::create_dir(&sub).unwrap();
    let err = dump(&disk, DISK, &[], &sub, &Quiet).unwrap_err();
    assert!(matches!(err, DumpError::NotRegular { .. }), "{err}");
    // -o naming the source itself (with -f) must not replace the source.
    let before = sha256(&raw);
    let err = dump(&disk, DISK, &[], &raw, &Quiet).unwrap_err();
    assert!(matches!(err, DumpError::SameAsSource { .. }), "{err}");
    assert_eq!(sha256(&raw), before);
}

fn tricky_properties() -> BTreeMap<String, String> {
    let mut p = BTreeMap::new();
    p.insert("OSFAMILY".into(), "linux".into());
    p.insert(
        "DESCRIPTION".into(),
        "Debian 12 'bookworm' \"stable\"".into(),
    );
    p.insert("USERS".into(), "root user with space".into());
    p.insert("NOTE".into(), "line one\nline two\t$HOME `x` \\n".into());
    p.insert("GREEK".into(), "Ελληνικά ünïcödé €".into());
    p
}

#[test]
fn side_files_are_exact_and_usable() {
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_fixture(dir.path(), "disk.raw");
    let wd = WorkDir::create(Some(dir.path())).unwrap();
    let disk = open(&raw, &wd);
    let outdir = dir.path().join("out dir");
    std::fs::create_dir(&outdir).unwrap();
    let out = outdir.join("my image.diskdump");
    let given = "out dir/my image.diskdump";
    let s = dump(&disk, DISK, &[], &out, &Quiet).unwrap();
    let props = tricky_properties();
    write_side_files(&out, given, &s.md5_hex, &props).unwrap();
    let [image, meta, md5sum_file, variant] = output_files(&out);
    assert_eq!(image, out);
    assert_eq!(
        names(&outdir),
        [
            "my image.diskdump",
            "my image.diskdump.md5sum",
            "my image.diskdump.meta",
            "my image.diskdump.variant"
        ]
    );

    // .meta: compact JSON, exact shape, every value a string, non-ASCII kept.
    let meta_text = std::fs::read_to_string(&meta).unwrap();
    let props_json = serde_json::to_string(&props).unwrap();
    assert_eq!(
        meta_text,
        format!("{{\"properties\":{props_json},\"disk-format\":\"diskdump\"}}")
    );
    assert!(meta_text.contains("Ελληνικά"));
    let v: serde_json::Value = serde_json::from_str(&meta_text).unwrap();
    assert_eq!(v["disk-format"], "diskdump");
    for (k, val) in &props {
        assert_eq!(v["properties"][k], serde_json::Value::String(val.clone()));
    }

    // .md5sum: GNU form, `md5sum -c` passes in the image's directory.
    assert_eq!(
        std::fs::read_to_string(&md5sum_file).unwrap(),
        format!("{}  my image.diskdump\n", s.md5_hex)
    );
    run(Command::new("md5sum")
        .args(["-c", "my image.diskdump.md5sum"])
        .current_dir(&outdir));

    // .variant: sourcing it gives the exact values back.
    for (var, expected) in [
        ("IMG_FORMAT", "diskdump".to_string()),
        ("IMG_ID", given.to_string()),
        ("IMG_PROPERTIES", props_json.clone()),
    ] {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(". \"$1\"; printf %s \"${var}\""))
            .arg("sh")
            .arg(&variant)
            .output()
            .unwrap();
        assert!(out.status.success());
        assert_eq!(String::from_utf8(out.stdout).unwrap(), expected, "{var}");
    }
    let text = std::fs::read_to_string(&variant).unwrap();
    let keys: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, _)| k)
        .collect();
    assert_eq!(&keys[..3], ["IMG_FORMAT", "IMG_ID", "IMG_PROPERTIES"]);
    assert!(text.starts_with("IMG_FORMAT='diskdump'\nIMG_ID='out dir/my image.diskdump'\n"));
}

#[test]
fn failed_side_files_remove_everything_this_run_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_fixture(dir.path(), "disk.raw");
    let wd = WorkDir::create(Some(dir.path())).unwrap();
    let disk = open(&raw, &wd);
    let outdir = tempfile::tempdir().unwrap();
    let out = outdir.path().join("image.img");
    let s = dump(&disk, DISK, &[], &out, &Quiet).unwrap();
    // A directory where FILE.md5sum goes makes its rename fail after .meta is in place.
    std::fs::create_dir(outdir.path().join("image.img.md5sum")).unwrap();
    let err = write_side_files(&out, "image.img", &s.md5_hex, &tricky_properties()).unwrap_err();
    assert!(err.to_string().contains("image.img.md5sum"), "{err}");
    assert_eq!(
        names(outdir.path()),
        ["image.img.md5sum"],
        "only the obstacle remains"
    );
}

/// The process's umask (from /proc, without changing it).
fn umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .map(|v| u32::from_str_radix(v.trim(), 8).unwrap())
        .unwrap()
}

#[test]
fn finishing_in_place_makes_the_private_copy_the_image() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_fixture(dir.path(), "disk.raw");
    // An allocated all-zero MiB inside the data: the image must not allocate it.
    open_rw(&raw)
        .write_all_at(&vec![0u8; 1 << 20], 21 << 20)
        .unwrap();
    let wd = WorkDir::create(Some(dir.path())).unwrap();
    let mut disk = open(&raw, &wd);
    disk.make_writable(&Quiet).unwrap();
    let copy = disk.path().to_path_buf();
    assert!(snf_disk::dump::can_finish_in_place(
        &disk,
        &dir.path().join("x")
    ));
    let out = dir.path().join("image.diskdump");
    std::fs::write(&out, b"an older image (-f)").unwrap();
    let free = [
        (20 << 20) + 4096..(20 << 20) + 65536,
        (40 << 20)..(41 << 20),
    ];
    let size = DISK - (4 << 20);
    let s = snf_disk::finish_in_place(disk, size, &free, &out, &Quiet).unwrap();

    assert!(!copy.exists(), "the copy became the image");
    assert!(names(wd.path()).is_empty(), "nothing left in the work dir");
    assert_eq!(std::fs::metadata(&out).unwrap().len(), size);
    let mut expected = read_all(&raw);
    expected.truncate(size as usize);
    for r in &free {
        expected[r.start as usize..r.end as usize].fill(0);
    }
    assert!(read_all(&out) == expected, "bytes differ from the dump's");
    assert_eq!(s.md5_hex, md5sum(&out));
    let data: u64 = EXTENTS.iter().map(|e| e.1).sum::<u64>() - (1 << 20) - (60 << 10);
    assert!(
        allocated(&out) <= data,
        "output allocates {} for {data} bytes of data",
        allocated(&out)
    );
    let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o666 & !umask(), "a new file's permissions");
}

#[test]
fn an_output_elsewhere_is_dumped_and_the_copy_removed() {
    // /dev/shm is a tmpfs: another filesystem than the work directory's.
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_fixture(dir.path(), "disk.raw");
    let wd = WorkDir::create(Some(dir.path())).unwrap();
    let mut disk = open(&raw, &wd);
    disk.make_writable(&Quiet).unwrap();
    let copy = disk.path().to_path_buf();
    let elsewhere = tempfile::tempdir_in("/dev/shm").unwrap();
    let out = elsewhere.path().join("image.diskdump");
    assert!(!snf_disk::dump::can_finish_in_place(&disk, &out));
    let s = snf_disk::finish_in_place(disk, DISK, &[], &out, &Quiet).unwrap();
    assert_eq!(s.md5_hex, md5sum(&raw));
    assert_eq!(md5sum(&out), md5sum(&raw));
    assert!(!copy.exists());
    // Neither a source view nor /dev/null qualifies.
    let view = open(&raw, &wd);
    assert!(!snf_disk::dump::can_finish_in_place(
        &view,
        &dir.path().join("y")
    ));
    let mut own = open(&raw, &wd);
    own.make_writable(&Quiet).unwrap();
    assert!(!snf_disk::dump::can_finish_in_place(
        &own,
        Path::new("/dev/null")
    ));
}

#[test]
fn finishing_in_place_refuses_the_source_as_output() {
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_fixture(dir.path(), "disk.raw");
    let before = md5sum(&raw);
    let wd = WorkDir::create(Some(dir.path())).unwrap();
    let mut disk = open(&raw, &wd);
    disk.make_writable(&Quiet).unwrap();
    let err = snf_disk::finish_in_place(disk, DISK, &[], &raw, &Quiet).unwrap_err();
    assert!(matches!(err, DumpError::SameAsSource { .. }), "{err}");
    assert_eq!(md5sum(&raw), before);
    assert!(names(wd.path()).is_empty());
}

/// Unmounts a bind mount when dropped.
struct BindMount(std::path::PathBuf);

impl Drop for BindMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_bind_mount_of_the_same_filesystem_is_dumped_not_renamed_into() {
    // Same device number, yet rename(2) across the mount points fails (EXDEV).
    require("mount");
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_fixture(dir.path(), "disk.raw");
    let (real, bound) = (dir.path().join("real"), dir.path().join("bound"));
    std::fs::create_dir(&real).unwrap();
    std::fs::create_dir(&bound).unwrap();
    let st = Command::new("mount")
        .arg("--bind")
        .arg(&real)
        .arg(&bound)
        .status()
        .unwrap();
    assert!(st.success(), "mount --bind (the tests run as root)");
    let _unmount = BindMount(bound.clone());
    let wd = WorkDir::create(Some(dir.path())).unwrap();
    let mut disk = open(&raw, &wd);
    disk.make_writable(&Quiet).unwrap();
    let out = bound.join("image.diskdump");
    assert!(!snf_disk::dump::can_finish_in_place(&disk, &out));
    let s = snf_disk::finish_in_place(disk, DISK, &[], &out, &Quiet).unwrap();
    assert_eq!(s.md5_hex, md5sum(&raw));
    assert_eq!(md5sum(&real.join("image.diskdump")), md5sum(&raw));
    assert!(names(wd.path()).is_empty());
    assert_eq!(names(&bound), ["image.diskdump"], "no probe left behind");
}
