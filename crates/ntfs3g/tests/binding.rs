//! The binding against volumes made and checked by ntfs-3g's own tools.

use std::fs::File;
use std::path::Path;
use std::process::Command;

use ntfs3g::{EntryKind, Error, Volume, ROOT_INO};
use snf_testkit::fixture::pseudo_random;
use snf_testkit::ntfs::{self, WindowsDisk, BIG_FILE_SEED, BIG_FILE_SIZE};

fn path_ino(v: &mut Volume, path: &str) -> u64 {
    let mut ino = ROOT_INO;
    for c in path.split('/').filter(|c| !c.is_empty()) {
        ino = v
            .lookup(ino, c)
            .unwrap()
            .unwrap_or_else(|| panic!("{path}: no {c}"));
    }
    ino
}

fn read(v: &mut Volume, path: &str) -> Vec<u8> {
    let ino = path_ino(v, path);
    v.read_all(ino, 1 << 30).unwrap()
}

fn disk(dir: &Path, gpt: bool, hibernated: bool) -> WindowsDisk {
    WindowsDisk::create(&dir.join("disk.img"), dir, gpt, hibernated)
}

#[test]
fn reads_the_windows_tree_case_insensitively() {
    let dir = tempfile::tempdir().unwrap();
    let d = disk(dir.path(), true, false);
    let (offset, size) = d.c();
    let mut v = Volume::open(d.path(), offset, size, false).unwrap();
    assert!(!v.is_writable());
    assert_eq!(
        read(&mut v, "/windows/system32/CONFIG/software"),
        b"hive SOFTWARE"
    );
    assert_eq!(
        read(&mut v, "/Windows/System32/config/SYSTEM"),
        b"hive SYSTEM"
    );
    assert_eq!(
        read(
            &mut v,
            "/users/public/documents/a LONG file name with spaces.TXT"
        ),
        "long name, non-ASCII: \u{e9}\u{3b1}".as_bytes()
    );
    let big = read(&mut v, "/Program Files/Big/big.bin");
    assert_eq!(big.len(), BIG_FILE_SIZE);
    assert!(big == pseudo_random(BIG_FILE_SIZE, BIG_FILE_SEED));

    let mut root: Vec<String> = v
        .read_dir(ROOT_INO)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    root.sort();
    assert_eq!(
        root,
        [
            "Documents and Settings",
            "Program Files",
            "Users",
            "Windows",
            "pagefile.sys"
        ]
    );
    let pf = path_ino(&mut v, "/Program Files");
    let entries = v.read_dir(pf).unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}: DOS names must be skipped");
    assert_eq!(entries[0].kind, EntryKind::Directory);

    let junction = path_ino(&mut v, "/documents and settings");
    assert!(v.stat(junction).unwrap().is_reparse_point());
    assert_eq!(v.read_link(junction).unwrap().as_deref(), Some("/Users"));
    let link = path_ino(&mut v, "/Windows/hosts-link");
    assert_eq!(
        v.read_link(link).unwrap().as_deref(),
        Some("System32/drivers/etc/hosts")
    );
    let sys = path_ino(&mut v, "/Windows/System32");
    assert_eq!(v.read_link(sys).unwrap(), None);
    let big_ino = path_ino(&mut v, "/Program Files/Big/big.bin");
    let st = v.stat(big_ino).unwrap();
    assert!(!st.is_dir && st.size == BIG_FILE_SIZE as u64 && st.allocated >= st.size);
    assert!(st.mtime > 1_600_000_000, "{st:?}");

    let e = v.create_file(ROOT_INO, "x").unwrap_err();
    assert!(matches!(e, Error::ReadOnly { .. }), "{e}");
    let info = v.info().unwrap();
    assert_eq!(info.version, (3, 1));
    // mkntfs leaves the backup boot sector after the last cluster.
    let bytes = info.clusters * info.cluster_size;
    assert!(
        bytes <= size && bytes + 2 * info.cluster_size > size,
        "{info:?}"
    );
    assert!(!info.is_dirty());
    let bitmap = v.cluster_bitmap().unwrap();
    let used: u64 = bitmap.iter().map(|b| u64::from(b.count_ones())).sum();
    assert_eq!(used, info.clusters - info.free_clusters);
}

#[test]
fn writes_are_seen_by_the_ntfs_tools() {
    let dir = tempfile::tempdir().unwrap();
    let d = disk(dir.path(), false, false);
    let (offset, size) = d.c();
    let mut v = Volume::open(d.path(), offset, size, true).unwrap();
    let win = path_ino(&mut v, "/WINDOWS");
    let new_dir = v.mkdir(win, "Setup Scripts").unwrap();
    let f = v.create_file(new_dir, "SetupComplete.cmd").unwrap();
    v.write_at(f, 0, b"@echo off\r\n").unwrap();
    v.write_at(f, 11, b"exit /b 0\r\n").unwrap();
    let data = pseudo_random(3 * 1024 * 1024 + 7, 3);
    let g = v.create_file(new_dir, "data.bin").unwrap();
    v.write_at(g, 0, &data).unwrap();
    v.truncate(g, 100_000).unwrap();
    assert!(matches!(v.create_file(new_dir, "DATA.BIN"), Err(e) if e.errno() == Some(17)));
    // Delete a hive, rename another across directories, replace a file by rename.
    let config = path_ino(&mut v, "/Windows/System32/config");
    v.unlink(config, "sam").unwrap();
    v.rename(config, "SOFTWARE", new_dir, "software.old")
        .unwrap();
    v.rename(new_dir, "data.bin", win, "moved.bin").unwrap();
    let users = path_ino(&mut v, "/Users");
    v.rename(users, "Public", new_dir, "Public").unwrap();
    v.rename(win, "moved.bin", win, "MOVED.bin").unwrap();
    let names: Vec<String> = v
        .read_dir(win)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert!(names.contains(&"MOVED.bin".to_string()), "{names:?}");
    assert!(!names
        .iter()
        .any(|n| n == "moved.bin" || n.starts_with(".snf")));
    v.rename(win, "MOVED.bin", win, "moved.bin").unwrap();
    v.symlink(new_dir, "hosts", "/Windows/System32/drivers/etc/hosts")
        .unwrap();
    assert!(matches!(v.rmdir(ROOT_INO, "Program Files"), Err(e) if e.errno() == Some(39)));
    let inner = v.mkdir(new_dir, "inner").unwrap();
    assert_eq!(v.parent(inner).unwrap(), new_dir);
    assert_eq!(v.parent(ROOT_INO).unwrap(), ROOT_INO);
    let e = v.rename(win, "Setup Scripts", inner, "loop").unwrap_err();
    assert_eq!(e.errno(), Some(22), "{e}");
    v.rmdir(new_dir, "inner").unwrap();
    let empty = v.mkdir(ROOT_INO, "Empty").unwrap();
    assert!(empty > 0);
    v.rmdir(ROOT_INO, "empty").unwrap();
    let hosts_ino = path_ino(&mut v, "/Windows/Setup Scripts/hosts");
    v.set_times(f, None, Some(1_700_000_000)).unwrap();
    assert_eq!(v.stat(f).unwrap().mtime, 1_700_000_000);
    assert_eq!(
        v.read_link(hosts_ino).unwrap().as_deref(),
        Some("/Windows/System32/drivers/etc/hosts")
    );
    v.close().unwrap();

    let part = dir.path().join("c.ntfs");
    ntfs::extract(d.path(), offset, size, &part);
    ntfs::assert_ntfsfix_clean(&part, "after the writes");
    assert_eq!(
        ntfs::ntfscat(&part, "/Windows/Setup Scripts/SetupComplete.cmd"),
        b"@echo off\r\nexit /b 0\r\n"
    );
    assert_eq!(ntfs::ntfscat(&part, "/Windows/moved.bin"), &data[..100_000]);
    assert_eq!(
        ntfs::ntfscat(&part, "/Windows/Setup Scripts/software.old"),
        b"hive SOFTWARE"
    );
    assert_eq!(ntfs::ntfsls(&part, "/Windows/System32/config"), ["SYSTEM"]);
    assert_eq!(
        ntfs::ntfsls(&part, "/Windows/Setup Scripts"),
        ["Public", "SetupComplete.cmd", "hosts", "software.old"]
    );
    assert_eq!(ntfs::ntfsls(&part, "/Users"), ["Default"]);
    assert!(ntfs::ntfs_exists(
        &part,
        "/Windows/Setup Scripts/Public/Documents/A long file name with spaces.txt"
    ));
    assert!(!ntfs::ntfs_exists(&part, "/Empty"));
}

#[test]
fn hibernated_and_dirty_volumes_are_refused_for_writing_only() {
    let dir = tempfile::tempdir().unwrap();
    let d = disk(dir.path(), true, true);
    let (offset, size) = d.c();
    let e = Volume::open(d.path(), offset, size, true).unwrap_err();
    assert!(matches!(e, Error::Hibernated { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("hibernated") && msg.contains("disable fast startup"),
        "{msg}"
    );
    assert!(!msg.contains('\n'));
    let mut v = Volume::open(d.path(), offset, size, false).unwrap();
    assert_eq!(read(&mut v, "/hiberfil.sys")[..4], *b"hibr");
    drop(v);

    let d2 = WindowsDisk::create(&dir.path().join("dirty.img"), dir.path(), false, false);
    let (offset, size) = d2.c();
    ntfs::set_dirty(d2.path(), offset);
    let e = Volume::open(d2.path(), offset, size, true).unwrap_err();
    assert!(matches!(e, Error::Unclean { .. }), "{e}");
    assert!(e.to_string().contains("marked dirty"), "{e}");
    assert!(e.to_string().contains("shut it down fully"), "{e}");
    let mut v = Volume::open(d2.path(), offset, size, false).unwrap();
    assert!(v.info().unwrap().is_dirty());
    assert_eq!(read(&mut v, "/Windows/System32/config/SAM"), b"hive SAM");
}

/// Run by `opens_without_root` as `nobody`: open the image named in the environment.
#[test]
fn child_as_nobody() {
    let Ok(spec) = std::env::var("SNF_NTFS_CHILD") else {
        return;
    };
    let (img, rest) = spec.split_once('@').unwrap();
    let (offset, size) = rest.split_once('+').unwrap();
    let mut v = Volume::open(
        Path::new(img),
        offset.parse().unwrap(),
        size.parse().unwrap(),
        true,
    )
    .unwrap();
    let f = v.create_file(ROOT_INO, "written-by-nobody.txt").unwrap();
    v.write_at(f, 0, b"no root").unwrap();
    v.close().unwrap();
}

#[test]
fn opens_without_root() {
    let dir = tempfile::tempdir().unwrap();
    let d = disk(dir.path(), true, false);
    let (offset, size) = d.c();
    let (nobody, nogroup) = (65534u32, 65534u32);
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::os::unix::fs::chown(d.path(), Some(nobody), Some(nogroup)).unwrap();
    snf_testkit::fixture::require("setpriv");
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_as_nobody",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(
            "SNF_NTFS_CHILD",
            format!("{}@{offset}+{size}", d.path().display()),
        )
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.contains("1 passed"), "{text}");
    let part = dir.path().join("c.ntfs");
    ntfs::extract(d.path(), offset, size, &part);
    assert_eq!(ntfs::ntfscat(&part, "/written-by-nobody.txt"), b"no root");
    ntfs::assert_ntfsfix_clean(&part, "after the unprivileged write");
}

/// Every directory and file under `dir`, read whole; errors are fine, panics and
/// crashes are not.
fn walk(v: &mut Volume, dir: u64, depth: usize) -> usize {
    let Ok(entries) = v.read_dir(dir) else {
        return 0;
    };
    let mut n = entries.len();
    for e in entries {
        let _ = v.read_link(e.ino);
        match v.stat(e.ino) {
            Ok(st) if st.is_dir && depth < 8 => n += walk(v, e.ino, depth + 1),
            Ok(_) => {
                let _ = v.read_all(e.ino, 64 << 20);
            }
            Err(_) => {}
        }
    }
    n
}

#[test]
fn damaged_volumes_give_errors_not_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let d = disk(dir.path(), true, false);
    let (offset, size) = d.c();
    let img = d.path();
    let pristine = std::fs::read(img).unwrap();
    let restore = || std::fs::write(img, &pristine).unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(img).unwrap();
    let put = |at: u64, data: &[u8]| {
        use std::os::unix::fs::FileExt;
        file.write_all_at(data, offset + at).unwrap();
    };

    // A range shorter than the volume, and one too short for a boot sector.
    assert!(Volume::open(img, offset, size / 2, false).is_err());
    assert!(Volume::open(img, offset, 100, false).is_err());
    assert!(Volume::open(img, offset, 0, false).is_err());
    // Boot sector fields out of range: sectors per cluster, total sectors, MFT LCN.
    for (at, bytes) in [
        (0x0du64, vec![0xffu8]),
        (0x28, vec![0xff; 8]),
        (0x30, vec![0xff; 8]),
        (0x40, vec![0x7f]),
    ] {
        put(at, &bytes);
        assert!(
            Volume::open(img, offset, size, false).is_err(),
            "field {at:#x}"
        );
        restore();
    }
    // Garbage over the MFT records after the system ones (the tree's files and
    // directories) and over the root's index: every read fails cleanly or succeeds.
    let mut boot = [0u8; 512];
    {
        use std::os::unix::fs::FileExt;
        File::open(img)
            .unwrap()
            .read_exact_at(&mut boot, offset)
            .unwrap();
    }
    let cluster = u64::from(u16::from_le_bytes([boot[0x0b], boot[0x0c]])) * u64::from(boot[0x0d]);
    let mft = u64::from_le_bytes(boot[0x30..0x38].try_into().unwrap()) * cluster;
    for (seed, first_record) in [(1u64, 16u64), (2, 5), (3, 64), (4, 70)] {
        for r in first_record..first_record + 12 {
            let mut junk = pseudo_random(1024, seed * 1000 + r);
            // Keep the "FILE" magic so the library parses further into the garbage.
            junk[..4].copy_from_slice(b"FILE");
            put(mft + r * 1024, &junk);
        }
        if let Ok(mut v) = Volume::open(img, offset, size, false) {
            walk(&mut v, ROOT_INO, 0);
        }
        restore();
    }
    let mut v = Volume::open(img, offset, size, false).unwrap();
    assert!(walk(&mut v, ROOT_INO, 0) > 10);
}
