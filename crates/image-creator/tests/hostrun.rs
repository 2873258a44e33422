//! `--host-run`: scripts run with their working directory at the guest root of a real
//! ext4 image mounted through FUSE, see the image properties in their environment, and
//! their changes land in the image (which `e2fsck -fn` finds clean). A failing script
//! stops the run with its name and code, and the mount never outlives the call.
//!
//! Needs `/dev/fuse` and root (or `fusermount3`, package fuse3).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use image_creator::hostrun::{self, HostRunError};
use image_creator::metadata::Metadata;
use snf_guestfs::{ExtFs, GuestFs};
use snf_testkit::fixture::{assert_e2fsck_clean, is_mounted, process_ended, write_file, Mke2fs};
use snf_testkit::report::Recorder;

fn p(s: &str) -> &Path {
    Path::new(s)
}

/// An ext4 image of a small Linux-like tree, opened writable as a guest tree.
fn ext_guest(dir: &Path) -> (PathBuf, GuestFs) {
    let tree = dir.join("tree");
    fs::create_dir_all(tree.join("root")).unwrap();
    write_file(&tree, "/etc/hostname", "builder\n");
    for i in 0..20 {
        write_file(
            &tree,
            &format!("/var/cache/apt/archives/p{i}.deb"),
            [i; 2000],
        );
    }
    let img = dir.join("disk.img");
    Mke2fs::ext4().tree(&tree).make(&img, 0, "64M");
    let guest = GuestFs::new(Box::new(ExtFs::open(&img, 0, true).unwrap()), "disk");
    (img, guest)
}

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, format!("#!/bin/sh\nset -e\n{body}\n")).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn metadata() -> Metadata {
    let mut m = Metadata::new();
    m.insert("OSFAMILY", "linux").unwrap();
    m.insert("OS", "debian").unwrap();
    m.insert("DESCRIPTION", "Debian 12 with spaces & symbols $HOME")
        .unwrap();
    m
}

#[test]
fn scripts_change_the_guest_with_metadata_in_their_environment() {
    let dir = tempfile::tempdir().unwrap();
    let (img, guest) = ext_guest(dir.path());
    let cwd_file = dir.path().join("cwd");
    let first = script(
        dir.path(),
        "first.sh",
        &format!(
            r#"pwd > {cwd}
test -f etc/hostname
printf '%s\n' "$SNF_IMAGE_CREATOR_METADATA_OSFAMILY" > etc/osfamily
printf '%s\n' "$SNF_IMAGE_CREATOR_METADATA_DESCRIPTION" > root/description
echo "$#" > root/argc
sed -i 's/builder/golden-image/' etc/hostname
rm -rf var/cache/apt
echo "first done""#,
            cwd = cwd_file.display()
        ),
    );
    let second = script(
        dir.path(),
        "second.sh",
        "test ! -e var/cache/apt\necho appended >> etc/hostname\necho oops >&2",
    );
    let rec = Recorder::default();
    let mut guest = hostrun::run_scripts(
        guest,
        &[first.clone(), second.clone()],
        &metadata(),
        None,
        &rec,
    )
    .unwrap();
    assert_eq!(guest.read(p("/etc/osfamily")).unwrap(), b"linux\n");
    assert_eq!(
        guest.read(p("/root/description")).unwrap(),
        b"Debian 12 with spaces & symbols $HOME\n"
    );
    assert_eq!(guest.read(p("/root/argc")).unwrap(), b"0\n");
    assert_eq!(
        guest.read(p("/etc/hostname")).unwrap(),
        b"golden-image\nappended\n"
    );
    assert!(!guest.lexists(p("/var/cache/apt")));
    assert!(guest.is_dir(p("/var/cache")));
    // Progress in the original's words, and the scripts' output passed on.
    let lines = rec.lines();
    assert!(
        lines.contains(&format!("(1/2)  Running `{}'", first.display())),
        "{lines:?}"
    );
    assert!(
        lines.contains(&format!("(2/2)  Running `{}'", second.display())),
        "{lines:?}"
    );
    assert!(lines.contains(&"first done".to_string()), "{lines:?}");
    assert!(lines.contains(&"oops".to_string()), "{lines:?}");
    // The mount point was a fresh directory of the temp dir, and is gone.
    let mnt = PathBuf::from(fs::read_to_string(&cwd_file).unwrap().trim());
    assert!(mnt.starts_with(std::env::temp_dir()), "{}", mnt.display());
    assert!(!is_mounted(&mnt));
    assert!(!mnt.exists(), "{} was left behind", mnt.display());
    drop(guest.into_filesystems().unwrap());
    assert_e2fsck_clean(&img, 0, "the guest image");
}

#[test]
fn a_failing_script_stops_the_run_and_unmounts() {
    let dir = tempfile::tempdir().unwrap();
    let (img, guest) = ext_guest(dir.path());
    let cwd_file = dir.path().join("cwd");
    let marker = dir.path().join("second-ran");
    let fail = script(
        dir.path(),
        "fail.sh",
        &format!(
            "pwd > {}\necho partial > etc/partial\n# a background job must not keep the \
             mount busy\nsleep 60 &\nexit 3",
            cwd_file.display()
        ),
    );
    let second = script(
        dir.path(),
        "second.sh",
        &format!("touch {}", marker.display()),
    );
    let rec = Recorder::default();
    let err = hostrun::run_scripts(guest, &[fail.clone(), second], &metadata(), None, &rec)
        .map(|_| ())
        .unwrap_err();
    assert!(
        matches!(err, HostRunError::Failed { code: 3, .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!("Script: `{}' failed (rc=3)", fail.display())
    );
    assert!(!marker.exists(), "the script after the failing one ran");
    let mnt = PathBuf::from(fs::read_to_string(&cwd_file).unwrap().trim());
    assert!(!is_mounted(&mnt));
    assert!(!mnt.exists(), "{} was left behind", mnt.display());
    // What the script did before failing was written consistently.
    assert_e2fsck_clean(&img, 0, "the guest image");
}

#[test]
fn scripts_are_checked_before_anything_is_mounted() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain.sh");
    fs::write(&plain, "#!/bin/sh\n").unwrap();
    fs::set_permissions(&plain, fs::Permissions::from_mode(0o644)).unwrap();
    let missing = dir.path().join("missing.sh");
    let good = script(dir.path(), "good.sh", "true");
    for bad in [&plain, &missing, &dir.path().to_path_buf()] {
        let err = hostrun::check_scripts(&[good.clone(), bad.clone()]).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("Script `{}' is not an executable file", bad.display())
        );
    }
    // Relative names are made absolute (the scripts run from the mount point).
    let depth = std::env::current_dir().unwrap().components().count();
    let mut rel = PathBuf::new();
    for _ in 0..depth {
        rel.push("..");
    }
    rel.push(good.strip_prefix("/").unwrap());
    let checked = hostrun::check_scripts(&[rel.clone()]).unwrap();
    assert!(checked[0].is_absolute(), "{}", checked[0].display());
    assert_eq!(
        fs::canonicalize(&checked[0]).unwrap(),
        fs::canonicalize(&good).unwrap()
    );
    // A bad script fails the run without mounting the tree.
    let (_img, guest) = ext_guest(dir.path());
    let rec = Recorder::default();
    let err = hostrun::run_scripts(guest, std::slice::from_ref(&plain), &metadata(), None, &rec)
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(err, HostRunError::NotExecutable(_)), "{err:?}");
    assert!(rec.lines().is_empty(), "{:?}", rec.lines());
}

#[test]
fn no_scripts_give_the_tree_back_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let (_img, guest) = ext_guest(dir.path());
    let rec = Recorder::default();
    let mut guest = hostrun::run_scripts(guest, &[], &metadata(), None, &rec).unwrap();
    assert_eq!(guest.read(p("/etc/hostname")).unwrap(), b"builder\n");
    assert!(rec.lines().is_empty());
}

#[test]
fn every_property_becomes_one_variable() {
    let env = hostrun::script_env(&metadata());
    let names: Vec<_> = env.iter().map(|(k, _)| k.to_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "SNF_IMAGE_CREATOR_METADATA_DESCRIPTION",
            "SNF_IMAGE_CREATOR_METADATA_OS",
            "SNF_IMAGE_CREATOR_METADATA_OSFAMILY"
        ]
    );
}

#[test]
fn a_script_past_the_time_limit_is_killed_with_all_it_started() {
    let dir = tempfile::tempdir().unwrap();
    let (img, guest) = ext_guest(dir.path());
    let cwd_file = dir.path().join("cwd");
    let pid_file = dir.path().join("sleep.pid");
    let hang = script(
        dir.path(),
        "hang.sh",
        &format!(
            "pwd > {cwd}\necho before > etc/before\nsleep 600 &\necho $! > {pid}\nwait\n\
             echo after > etc/after",
            cwd = cwd_file.display(),
            pid = pid_file.display()
        ),
    );
    let rec = Recorder::default();
    let limit = std::time::Duration::from_secs(1);
    let err = hostrun::run_scripts(
        guest,
        std::slice::from_ref(&hang),
        &metadata(),
        Some(limit),
        &rec,
    )
    .map(|_| ())
    .unwrap_err();
    assert!(matches!(err, HostRunError::TimedOut { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "Script: `{}' did not finish within 1 seconds (--host-run-timeout) and was killed",
            hang.display()
        )
    );
    let pid = fs::read_to_string(&pid_file).unwrap();
    assert!(process_ended(&pid), "the script's child {pid} still runs");
    let mnt = PathBuf::from(fs::read_to_string(&cwd_file).unwrap().trim());
    assert!(!is_mounted(&mnt));
    assert!(!mnt.exists(), "{} was left behind", mnt.display());
    assert_e2fsck_clean(&img, 0, "the guest image");
}

#[test]
fn a_script_within_the_time_limit_runs_as_usual() {
    let dir = tempfile::tempdir().unwrap();
    let (_img, guest) = ext_guest(dir.path());
    let quick = script(dir.path(), "quick.sh", "echo quick > etc/quick");
    let rec = Recorder::default();
    let limit = Some(std::time::Duration::from_secs(600));
    let mut guest = hostrun::run_scripts(guest, &[quick], &metadata(), limit, &rec).unwrap();
    assert_eq!(guest.read(p("/etc/quick")).unwrap(), b"quick\n");
}

#[test]
fn a_bad_interpreter_is_named_before_anything_is_mounted() {
    let dir = tempfile::tempdir().unwrap();
    let not_exec = dir.path().join("interp-not-executable");
    fs::write(&not_exec, "").unwrap();
    for (line, interpreter, problem) in [
        (
            "#!/nonexistent/interp -e",
            "/nonexistent/interp",
            "does not exist",
        ),
        (
            &format!("#! {}", not_exec.display()) as &str,
            not_exec.to_str().unwrap(),
            "is not an executable file",
        ),
        ("#!/", "/", "is not an executable file"),
        (
            "#!bin/sh",
            "bin/sh",
            "is not an absolute path (it would be looked up in the guest)",
        ),
    ] {
        let path = dir.path().join("bad.sh");
        fs::write(&path, format!("{line}\ntrue\n")).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        let (_img, guest) = ext_guest(dir.path());
        let rec = Recorder::default();
        let err = hostrun::run_scripts(guest, std::slice::from_ref(&path), &metadata(), None, &rec)
            .map(|_| ())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "Script `{}': interpreter `{interpreter}' {problem}",
                path.display()
            )
        );
        assert!(rec.lines().is_empty(), "{:?}", rec.lines());
    }
}

#[test]
fn guest_links_never_lead_a_script_to_a_host_file() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("host-marker");
    fs::write(&marker, "host secret\n").unwrap();
    let mirrored = marker
        .strip_prefix("/")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let tree = dir.path().join("tree");
    write_file(&tree, &mirrored, "guest copy\n");
    snf_testkit::fixture::write_symlink(&tree, "/etc/passwd", &marker);
    snf_testkit::fixture::write_symlink(&tree, "/d", "/");
    snf_testkit::fixture::write_symlink(&tree, "/var/lib/up", "../../../../../../../../../..");
    let img = dir.path().join("disk.img");
    Mke2fs::ext4().tree(&tree).make(&img, 0, "64M");
    let guest = GuestFs::new(Box::new(ExtFs::open(&img, 0, true).unwrap()), "disk");
    let evil = script(
        dir.path(),
        "evil.sh",
        &format!(
            "cat etc/passwd d/{m} var/lib/up/{m} > seen\n\
             echo one > etc/passwd\necho two >> d/{m}\necho three >> var/lib/up/{m}",
            m = mirrored
        ),
    );
    let rec = Recorder::default();
    let mut guest = hostrun::run_scripts(guest, &[evil], &metadata(), None, &rec).unwrap();
    assert_eq!(fs::read(&marker).unwrap(), b"host secret\n");
    assert_eq!(
        guest.read(p("/seen")).unwrap(),
        b"guest copy\nguest copy\nguest copy\n"
    );
    assert_eq!(
        guest.read(&Path::new("/").join(&mirrored)).unwrap(),
        b"one\ntwo\nthree\n"
    );
    drop(guest.into_filesystems().unwrap());
    assert_e2fsck_clean(&img, 0, "the guest image");
}

#[test]
fn a_process_that_leaves_the_script_group_does_not_hold_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let (_img, guest) = ext_guest(dir.path());
    let pid_file = dir.path().join("escaped.pid");
    // It keeps the script's output pipes open, but not the mount.
    let leaver = script(
        dir.path(),
        "leaver.sh",
        &format!(
            "(cd / && exec setsid sh -c 'echo $$ > {pid}; exec sleep 600') &\n\
             while [ ! -s {pid} ]; do sleep 0.01; done\nprintf 'no newline at the end'",
            pid = pid_file.display()
        ),
    );
    let rec = Recorder::default();
    let result = hostrun::run_scripts(guest, &[leaver], &metadata(), None, &rec);
    let pid = fs::read_to_string(&pid_file).unwrap();
    let _ = Command::new("kill").args(["-9", pid.trim()]).status();
    result.unwrap();
    assert!(
        rec.lines().contains(&"no newline at the end".to_string()),
        "{:?}",
        rec.lines()
    );
}
