//! The guest tree through FUSE: ordinary host tools change the guest (directory and
//! ext4 backends), the results are seen through the guest-tree interface afterwards, the
//! ext4 image stays consistent (`e2fsck -fn`), and no mount is ever left behind.
//!
//! Needs `/dev/fuse` and root (or `fusermount3`, package fuse3).

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use snf_guestfs::fuse::MountError;
use snf_guestfs::{DirFs, ExtFs, GuestFs, GuestMount};
use snf_testkit::fixture::{
    assert_e2fsck_clean, is_mounted, run_stdin, write_file, write_symlink, Mke2fs,
};

fn p(s: &str) -> &Path {
    Path::new(s)
}

/// Run `script` with `sh -e` in `dir`; panics with its stderr on failure.
fn sh(dir: &Path, script: &str) -> String {
    let out = Command::new("sh")
        .args(["-e", "-c", script])
        .current_dir(dir)
        .output()
        .expect("sh runs");
    assert!(
        out.status.success(),
        "script failed ({}): {script}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn populate(tree: &Path) {
    write_file(tree, "/etc/hostname", "old-name\n");
    write_file(tree, "/etc/app.conf", "a=1\nb=2\n");
    write_file(tree, "/data/log", "first\n");
    for i in 0..50 {
        write_file(
            tree,
            &format!("/var/cache/apt/archives/pkg{i}.deb"),
            vec![i as u8; 3000],
        );
    }
    write_file(tree, "/home/user/notes", "keep me\n");
}

/// A scratch directory holding the populated guest tree `tree/` and an empty mount
/// point `mnt/`: (directory, tree, mount point).
fn scratch() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let host = tempfile::tempdir().unwrap();
    let tree = host.path().join("tree");
    let mnt = host.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    populate(&tree);
    (host, tree, mnt)
}

/// The tree as a writable directory-backed guest.
fn dir_guest(tree: &Path) -> GuestFs {
    GuestFs::new(Box::new(DirFs::open(tree, true).unwrap()), "tree")
}

/// The tree made into the ext4 image `disk.img` next to it.
fn ext_image(tree: &Path) -> PathBuf {
    let img = tree.with_file_name("disk.img");
    Mke2fs::ext4().tree(tree).make(&img, 0, "64M");
    img
}

fn ext_guest(img: &Path, writable: bool) -> GuestFs {
    GuestFs::new(Box::new(ExtFs::open(img, 0, writable).unwrap()), "disk")
}

fn mount(guest: GuestFs, dir: &Path) -> GuestMount {
    match GuestMount::mount(guest, dir) {
        Ok(m) => m,
        Err((e, _)) => panic!("{e} (FUSE needs /dev/fuse and root or fusermount3)"),
    }
}

/// What a `--host-run` script typically does, through the shell.
const EDITS: &str = r#"
echo new-name > etc/hostname
echo second >> data/log
sed -i 's/a=1/a=9/' etc/app.conf
mkdir -p opt/deep/dir
mv data/log opt/deep/dir/log
rm -rf var/cache/apt
ln -s ../../etc/hostname opt/deep/hostname-link
chmod 0640 etc/app.conf
chown 123:456 etc/app.conf
printf 'abcdefghij' > etc/trunc
truncate -s 4 etc/trunc
cat opt/deep/hostname-link
"#;

/// The guest tree after [`EDITS`].
fn check_edits(g: &mut GuestFs) {
    assert_eq!(g.read(p("/etc/hostname")).unwrap(), b"new-name\n");
    assert_eq!(g.read(p("/etc/app.conf")).unwrap(), b"a=9\nb=2\n");
    let conf = g.lstat(p("/etc/app.conf")).unwrap();
    assert_eq!((conf.mode, conf.uid, conf.gid), (0o640, 123, 456));
    assert_eq!(g.read(p("/opt/deep/dir/log")).unwrap(), b"first\nsecond\n");
    assert!(!g.lexists(p("/data/log")));
    assert!(!g.lexists(p("/var/cache/apt")));
    assert!(g.is_dir(p("/var/cache")));
    assert_eq!(
        g.read_link(p("/opt/deep/hostname-link")).unwrap(),
        "../../etc/hostname"
    );
    assert_eq!(g.read(p("/etc/trunc")).unwrap(), b"abcd");
    assert_eq!(g.read(p("/home/user/notes")).unwrap(), b"keep me\n");
    // sed -i leaves no temporary file behind.
    let etc: Vec<_> = g
        .read_dir(p("/etc"))
        .unwrap()
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(etc, ["app.conf", "hostname", "trunc"]);
}

#[test]
fn shell_edits_reach_a_directory_backed_guest() {
    let (_host, tree, mnt) = scratch();
    let guest = dir_guest(&tree);
    let m = mount(guest, &mnt);
    assert!(is_mounted(&mnt));
    let out = sh(&mnt, EDITS);
    assert_eq!(out, "new-name\n");
    // Ordinary std::fs calls see the same.
    let meta = fs::metadata(mnt.join("etc/app.conf")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
    assert_eq!((meta.uid(), meta.gid()), (123, 456));
    assert_eq!(
        fs::read_link(mnt.join("opt/deep/hostname-link")).unwrap(),
        p("../../etc/hostname")
    );
    let mut g = m.unmount().unwrap();
    assert!(!is_mounted(&mnt));
    check_edits(&mut g);
    // The backing directory holds the changes too.
    assert_eq!(fs::read(tree.join("etc/hostname")).unwrap(), b"new-name\n");
}

#[test]
fn shell_edits_reach_an_ext4_guest_and_leave_it_consistent() {
    let (_host, tree, mnt) = scratch();
    let img = ext_image(&tree);
    let guest = ext_guest(&img, true);
    let m = mount(guest, &mnt);
    sh(&mnt, EDITS);
    // Hard links, renames over existing files, deep trees removed at once.
    sh(
        &mnt,
        "ln etc/hostname etc/hostname.hard
         echo replaced > new; mv -f new etc/app.conf.bak
         echo x > etc/app.conf.bak2; mv -f etc/app.conf.bak etc/app.conf.bak2
         test \"$(cat etc/app.conf.bak2)\" = replaced; test ! -e etc/app.conf.bak
         rm etc/app.conf.bak2
         mkdir -p t/a/b/c t/d; for i in 1 2 3 4 5 6 7 8; do echo $i > t/a/b/c/f$i; done
         rm -rf t
         rm etc/hostname.hard",
    );
    let mut g = m.unmount().unwrap();
    check_edits(&mut g);
    assert!(!g.lexists(p("/t")));
    assert_eq!(g.lstat(p("/etc/hostname")).unwrap().nlink, 1);
    drop(g.into_filesystems().unwrap());
    assert_e2fsck_clean(&img, 0, "the guest image");
}

#[test]
fn large_files_are_written_and_read_at_every_offset() {
    let (_host, tree, mnt) = scratch();
    let img = ext_image(&tree);
    let data: Vec<u8> = (0..5_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let m = mount(ext_guest(&img, true), &mnt);
    fs::write(mnt.join("big"), &data).unwrap();
    // Overwrite a range in the middle through a seek, as editors and databases do.
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(mnt.join("big"))
        .unwrap();
    f.seek(SeekFrom::Start(1_234_567)).unwrap();
    f.write_all(b"MIDDLE").unwrap();
    f.seek(SeekFrom::Start(4_999_990)).unwrap();
    let mut tail = Vec::new();
    f.read_to_end(&mut tail).unwrap();
    assert_eq!(tail, data[4_999_990..]);
    drop(f);
    let mut expect = data.clone();
    expect[1_234_567..1_234_573].copy_from_slice(b"MIDDLE");
    assert_eq!(fs::read(mnt.join("big")).unwrap(), expect);
    let mut g = m.unmount().unwrap();
    assert_eq!(g.read(p("/big")).unwrap(), expect);
    drop(g.into_filesystems().unwrap());
    assert_e2fsck_clean(&img, 0, "the guest image");
}

/// The guest path of host file `host` ("tmp/.tmpXYZ/marker"): the guest holds a file
/// there too, so that a link resolved inside the guest finds the guest's copy and one
/// resolved on the host finds the host's.
fn mirrored(host: &Path) -> String {
    host.strip_prefix("/").unwrap().to_str().unwrap().to_owned()
}

/// An ext4 guest whose links all name host file `marker`, in every way a link can:
/// absolute, relative climbing above the root, chained, through directory links
/// (absolute and climbing), plus a dangling one into a directory both have. Returns the
/// image and the paths (relative to the guest root) that lead to the marker.
fn hostile_links(tree: &Path, marker: &Path) -> (PathBuf, Vec<String>) {
    let m = mirrored(marker);
    let climb = "../".repeat(12);
    write_file(tree, &m, "guest copy\n");
    write_symlink(tree, "/etc/passwd", marker);
    write_symlink(tree, "/a/b/c/rel", format!("{climb}{m}"));
    write_symlink(tree, "/chain1", "a/../chain2");
    write_symlink(tree, "/chain2", "/a/b/c/rel");
    write_symlink(tree, "/d", "/");
    write_symlink(tree, "/a/b/updir", &climb);
    write_symlink(tree, "/a/b/dchain", "../../d/a/b/updir");
    write_symlink(
        tree,
        "/a/dangling",
        marker.with_file_name("created-through-a-link"),
    );
    let img = ext_image(tree);
    let paths = vec![
        "etc/passwd".to_owned(),
        "a/b/c/rel".to_owned(),
        "chain1".to_owned(),
        format!("d/{m}"),
        format!("d/d/a/b/updir/{m}"),
        format!("a/b/updir/{m}"),
        format!("a/b/dchain/{m}"),
    ];
    (img, paths)
}

#[test]
fn no_guest_symlink_reaches_a_host_file() {
    let (host, tree, mnt) = scratch();
    let marker = host.path().join("marker");
    fs::write(&marker, "host secret\n").unwrap();
    let created = marker.with_file_name("created-through-a-link");
    let (img, paths) = hostile_links(&tree, &marker);
    let m = mount(ext_guest(&img, true), &mnt);
    let real_mnt = fs::canonicalize(&mnt).unwrap();
    for path in &paths {
        let through = mnt.join(path);
        assert_eq!(fs::read(&through).unwrap(), b"guest copy\n", "{path}");
        assert!(
            fs::canonicalize(&through).unwrap().starts_with(&real_mnt),
            "{path} resolves outside the mount"
        );
    }
    // Writes, appends and in-place edits through every link land in the guest.
    for path in &paths {
        fs::write(mnt.join(path), format!("written through {path}\n")).unwrap();
        assert_eq!(fs::read(&marker).unwrap(), b"host secret\n", "{path}");
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(mnt.join(path))
            .unwrap();
        f.write_all(b"appended\n").unwrap();
        drop(f);
        assert_eq!(fs::read(&marker).unwrap(), b"host secret\n", "{path}");
    }
    // Tools that resolve links themselves see the same confined text.
    sh(
        &mnt,
        "sed -i --follow-symlinks 's/appended/edited by sed/' chain1
         cp etc/passwd a/copied
         echo through-dangling > a/dangling",
    );
    assert_eq!(fs::read(&marker).unwrap(), b"host secret\n");
    assert!(!created.exists(), "a dangling link created a host file");
    // Reading a link gives its guest-confined relative form.
    let m_rel = mirrored(&marker);
    assert_eq!(
        fs::read_link(mnt.join("etc/passwd")).unwrap(),
        Path::new("..").join(&m_rel)
    );
    assert_eq!(
        fs::read_link(mnt.join("a/b/c/rel")).unwrap(),
        Path::new("../../..").join(&m_rel)
    );
    assert_eq!(fs::read_link(mnt.join("d")).unwrap(), p("."));
    assert_eq!(fs::read_link(mnt.join("a/b/updir")).unwrap(), p("../.."));
    assert_eq!(fs::read_link(mnt.join("chain1")).unwrap(), p("chain2"));
    // ... and its size is that of the text shown (tools read exactly st_size bytes).
    let shown = fs::read_link(mnt.join("a/b/c/rel")).unwrap();
    assert_eq!(
        fs::symlink_metadata(mnt.join("a/b/c/rel")).unwrap().len(),
        shown.as_os_str().len() as u64
    );
    let mut g = m.unmount().unwrap();
    // The last write went to the guest's copy; the links keep their own text.
    let last = paths.last().unwrap();
    assert_eq!(
        g.read_to_string(Path::new(&m_rel)).unwrap(),
        format!("written through {last}\nedited by sed\n")
    );
    assert_eq!(
        g.read(p("/a/copied")).unwrap(),
        g.read(Path::new(&m_rel)).unwrap()
    );
    assert_eq!(
        g.read(&Path::new("/").join(mirrored(&created))).unwrap(),
        b"through-dangling\n"
    );
    assert_eq!(g.read_link(p("/etc/passwd")).unwrap(), marker.as_os_str());
    assert_eq!(g.read_link(p("/d")).unwrap(), "/");
    drop(g.into_filesystems().unwrap());
    assert_e2fsck_clean(&img, 0, "the guest image");
}

/// The options of the mount at `dir`, from `/proc/self/mountinfo` (per-mount ones, then
/// the superblock's).
fn mount_options(dir: &Path) -> String {
    let want = fs::canonicalize(dir).unwrap();
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = info
        .lines()
        .find(|l| l.split(' ').nth(4) == want.to_str())
        .unwrap_or_else(|| panic!("{} is not mounted", want.display()));
    let (before, after) = line.split_once(" - ").unwrap();
    format!(
        "{},{}",
        before.split(' ').nth(5).unwrap(),
        after.split(' ').nth(2).unwrap_or("")
    )
}

#[test]
fn guest_device_nodes_and_set_uid_files_mean_nothing_on_the_host() {
    let (_host, tree, mnt) = scratch();
    write_file(&tree, "/bin/su", "#!/bin/sh\nid -u\n");
    fs::create_dir(tree.join("dev")).unwrap();
    let img = ext_image(&tree);
    // Device nodes as a guest's /dev holds them: the host's /dev/zero and first disk.
    run_stdin(
        Command::new("debugfs").args(["-w", "-f", "-"]).arg(&img),
        "cd /dev\nmknod zero c 1 5\nsif zero mode 020666\nmknod sda b 8 0\n\
         sif sda mode 060660\nmknod loop0 b 7 0\nsif loop0 mode 060660\n\
         sif /bin/su mode 0104755\nmknod ../../escape c 1 5\n",
    );
    let m = mount(ext_guest(&img, true), &mnt);
    let options = mount_options(&mnt);
    let opts: Vec<_> = options.split(',').collect();
    assert!(opts.contains(&"nosuid"), "{options}");
    assert!(opts.contains(&"nodev"), "{options}");
    // A name no directory can hold (debugfs stores the slashes) is not listed.
    let mut names: Vec<_> = fs::read_dir(mnt.join("dev"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["loop0", "sda", "zero"]);
    let zero = fs::symlink_metadata(mnt.join("dev/zero")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(
        &zero.file_type()
    ));
    assert_eq!(zero.rdev(), 0x0105);
    for dev in ["dev/zero", "dev/sda", "dev/loop0"] {
        let err = fs::File::open(mnt.join(dev)).unwrap_err();
        assert_eq!(
            err.raw_os_error(),
            Some(13),
            "{dev}: EACCES expected: {err}"
        );
        let err = fs::OpenOptions::new()
            .write(true)
            .open(mnt.join(dev))
            .unwrap_err();
        assert_eq!(
            err.raw_os_error(),
            Some(13),
            "{dev}: EACCES expected: {err}"
        );
    }
    // The set-uid bit is kept in the guest and ignored on the host.
    let su = fs::metadata(mnt.join("bin/su")).unwrap();
    assert_eq!(su.permissions().mode() & 0o7777, 0o4755);
    drop(m.unmount().unwrap());
}

#[test]
fn a_busy_mount_is_reported_and_can_be_retried() {
    let (_host, tree, mnt) = scratch();
    let mut m = mount(dir_guest(&tree), &mnt);
    let open = fs::File::open(mnt.join("etc/hostname")).unwrap();
    let err = m.try_unmount().unwrap_err();
    assert!(err.is_busy(), "{err}");
    assert!(err.to_string().contains("busy"), "{err}");
    assert!(is_mounted(&mnt));
    // Still served while busy.
    assert_eq!(fs::read(mnt.join("etc/hostname")).unwrap(), b"old-name\n");
    drop(open);
    m.try_unmount().unwrap();
    assert!(!is_mounted(&mnt));
    let mut g = m.unmount().unwrap();
    assert_eq!(g.read(p("/etc/hostname")).unwrap(), b"old-name\n");
}

#[test]
fn dropping_a_busy_mount_still_unmounts() {
    let (_host, tree, mnt) = scratch();
    let m = mount(dir_guest(&tree), &mnt);
    let mut open = fs::File::open(mnt.join("etc/hostname")).unwrap();
    drop(m);
    assert!(!is_mounted(&mnt));
    // The descriptor opened before is cut off (the connection is aborted) rather than
    // left reaching the tree.
    let mut s = String::new();
    let err = open.read_to_string(&mut s).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(107), "ENOTCONN expected: {err}");
}

#[test]
fn a_read_only_guest_refuses_writes() {
    let (_host, tree, mnt) = scratch();
    let img = ext_image(&tree);
    let before = fs::read(&img).unwrap();
    let m = mount(ext_guest(&img, false), &mnt);
    assert_eq!(fs::read(mnt.join("etc/hostname")).unwrap(), b"old-name\n");
    let err = fs::write(mnt.join("etc/hostname"), "x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(30), "EROFS expected: {err}");
    let err = fs::create_dir(mnt.join("newdir")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(30), "EROFS expected: {err}");
    drop(m.unmount().unwrap());
    assert!(
        fs::read(&img).unwrap() == before,
        "a read-only guest was changed"
    );
}

#[test]
fn mounting_on_a_missing_directory_gives_the_tree_back() {
    let (host, tree, _mnt) = scratch();
    let missing: PathBuf = host.path().join("no-such-dir");
    let guest = dir_guest(&tree);
    let (err, mut guest) = GuestMount::mount(guest, &missing).unwrap_err();
    assert!(matches!(err, MountError::Mount { .. }));
    assert!(err.to_string().contains("no-such-dir"), "{err}");
    assert_eq!(guest.read(p("/etc/hostname")).unwrap(), b"old-name\n");
}

#[test]
fn guest_mount_points_are_crossed_and_cannot_be_removed() {
    let (host, tree, mnt) = scratch();
    let boot = host.path().join("boot");
    fs::create_dir(tree.join("boot")).unwrap();
    fs::create_dir_all(boot.join("grub")).unwrap();
    fs::write(boot.join("grub/grub.cfg"), "timeout=5\n").unwrap();
    let mut guest = dir_guest(&tree);
    guest
        .mount(
            p("/boot"),
            Box::new(DirFs::open(&boot, true).unwrap()),
            "boot",
        )
        .unwrap();
    let m = mount(guest, &mnt);
    sh(&mnt, "sed -i 's/5/1/' boot/grub/grub.cfg");
    // Moving across guest filesystems is EXDEV, which mv turns into copy and delete.
    let err = fs::rename(mnt.join("boot/grub/grub.cfg"), mnt.join("etc/grub.cfg")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(18), "EXDEV expected: {err}");
    sh(&mnt, "mv boot/grub/grub.cfg etc/grub.cfg");
    let err = fs::remove_dir(mnt.join("boot")).unwrap_err();
    assert!(
        matches!(err.raw_os_error(), Some(16) | Some(39)),
        "EBUSY or ENOTEMPTY expected: {err}"
    );
    let err = fs::rename(mnt.join("boot"), mnt.join("boot2")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(16), "EBUSY expected: {err}");
    let mut g = m.unmount().unwrap();
    assert_eq!(g.read(p("/etc/grub.cfg")).unwrap(), b"timeout=1\n");
    assert!(!g.lexists(p("/boot/grub/grub.cfg")));
    assert!(boot.join("grub").is_dir());
    assert!(!boot.join("grub/grub.cfg").exists());
}

/// Set by [`an_unprivileged_user_mounts_through_fusermount`] for its child.
const UNPRIV_DIR: &str = "SNF_TEST_FUSE_UNPRIV_DIR";

#[test]
fn an_unprivileged_user_mounts_through_fusermount() {
    let (host, tree, mnt) = scratch();
    fs::set_permissions(host.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let chown = Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(&tree)
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(chown.success());
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "unprivileged_child", "--ignored", "--nocapture"])
        .env(UNPRIV_DIR, host.path())
        .output()
        .expect("setpriv (package util-linux) must be installed");
    assert!(
        out.status.success(),
        "the unprivileged child failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"));
    assert_eq!(
        fs::read(tree.join("etc/hostname")).unwrap(),
        b"set-by-nobody\n"
    );
    assert!(!is_mounted(&mnt));
}

/// The unprivileged half of the test above: mounts with `fusermount3`, writes, unmounts.
#[test]
#[ignore = "run as an unprivileged user by an_unprivileged_user_mounts_through_fusermount"]
fn unprivileged_child() {
    let dir = PathBuf::from(std::env::var_os(UNPRIV_DIR).expect("run by the parent test"));
    assert_ne!(
        rustix::process::geteuid().as_raw(),
        0,
        "must run unprivileged"
    );
    let guest = GuestFs::new(
        Box::new(DirFs::open(&dir.join("tree"), true).unwrap()),
        "tree",
    );
    let mnt = dir.join("mnt");
    let m = mount(guest, &mnt);
    assert!(is_mounted(&mnt));
    sh(&mnt, "echo set-by-nobody > etc/hostname; rm -rf var/cache");
    let mut g = m.unmount().unwrap();
    assert!(!is_mounted(&mnt));
    assert!(!g.lexists(p("/var/cache")));
}
