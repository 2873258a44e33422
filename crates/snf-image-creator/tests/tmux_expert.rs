//! End to end in a real terminal (tmux): expert mode through System Preparation,
//! Properties and Extract, checked byte for byte against `snf-mkimage` on the same
//! source with the same operations and property; and Ctrl-C leaving nothing behind.

mod common;

use std::process::Command;

use common::{example_disk, md5, same_bytes, snf_mkimage, workdir_left, Tmux};
use snf_testkit::fixture::mounts_under;

/// libext2fs and e2fsck stamp the current time into the filesystem; fixed times make
/// two runs comparable byte for byte.
const FIXED_TIME: [(&str, &str); 2] = [
    ("E2FSPROGS_FAKE_TIME", "1767225600"),
    ("E2FSCK_TIME", "1767225600"),
];

#[test]
fn expert_sysprep_properties_extract_match_snf_mkimage() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let source = example_disk(d);
    let source_md5 = md5(&source);
    std::fs::create_dir(d.join("tui")).unwrap();
    std::fs::create_dir(d.join("cli")).unwrap();
    let tmp = d.display().to_string();
    let log = d.join("tui.log").display().to_string();
    let state = d.join("state").display().to_string();
    let mut env = FIXED_TIME.to_vec();
    env.push(("TMPDIR", &tmp));
    env.push(("XDG_STATE_HOME", &state));
    let t = Tmux::start(d, &["-l", &log, "--tmpdir", &tmp, "ex.raw"], &env, 80, 24);

    let s = t.wait_for("Welcome");
    assert!(
        s.contains("OS: linux, Distro: debian, Size: 320MB, Source: "),
        "{s}"
    );
    assert!(s.contains("detected a linux (debian) system"), "{s}");
    t.keys(&["Right", "Enter"]);
    t.wait_for("Image Creator for Synnefo");
    // Customize > Sysprep: run the default selection.
    t.keys(&["Enter"]);
    t.wait_for("Image Customization Menu");
    t.keys(&["Enter"]);
    let s = t.wait_for("System Preparation");
    assert!(
        s.contains("[*] Cleanup userdata") && s.contains("[ ] Remove user accounts"),
        "{s}"
    );
    t.keys(&["Enter"]);
    let s = t.wait_for("Image Property Changes");
    assert!(s.contains("SWAP: 2:71"), "{s}");
    assert!(
        s.contains("(shrunk)"),
        "the title tells the image was shrunk:\n{s}"
    );
    t.keys(&["Enter"]);
    // Customize > Properties > Add.
    t.wait_for("Image Customization Menu");
    t.keys(&["Down", "Enter"]);
    t.wait_for("Image Properties");
    t.keys(&["Right", "Enter"]);
    t.wait_for("Add Property");
    t.type_text("my-prop");
    t.keys(&["Tab"]);
    t.type_text("hello world");
    t.keys(&["Enter"]);
    let s = t.wait_for("Error");
    assert!(s.contains("is not valid"), "a bad key is refused:\n{s}");
    t.keys(&["Enter"]);
    t.wait_for("Add Property");
    t.keys(&["Up", "C-u"]);
    t.type_text("myprop");
    t.keys(&["Enter"]);
    let s = t.wait_for("MYPROP");
    assert!(s.contains("hello world"), "{s}");
    t.keys(&["Escape"]);
    t.wait_for("Image Customization Menu");
    t.keys(&["Escape"]);
    t.wait_for("Image Creator for Synnefo");
    // Extract.
    t.keys(&["Down", "Down", "Enter"]);
    t.wait_for("Save image as...");
    t.keys(&["C-u"]);
    t.type_text(&d.join("tui/img.diskdump").display().to_string());
    t.keys(&["Enter"]);
    let s = t.wait_for("was successfully created");
    assert!(s.contains("img.diskdump"), "{s}");
    t.keys(&["Enter"]);
    // Exit.
    t.wait_for("Image Creator for Synnefo");
    t.keys(&["Right", "Enter"]);
    t.wait_for("Do you want to exit?");
    t.keys(&["Enter"]);
    assert_eq!(t.wait_exit(), 0);
    assert!(!workdir_left(d), "the work directory was removed");
    assert_eq!(md5(&source), source_md5, "the source is untouched");
    assert_eq!(
        logs_left(d),
        Vec::<String>::new(),
        "no temporary log is left after a normal exit"
    );

    // The same with snf-mkimage, run in its output directory.
    let out = Command::new(snf_mkimage())
        .current_dir(d.join("cli"))
        .envs(FIXED_TIME)
        .args([
            "-m",
            "myprop=hello world",
            "--tmpdir",
            &tmp,
            "-o",
            "img.diskdump",
            "../ex.raw",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "snf-mkimage: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in [
        "img.diskdump",
        "img.diskdump.meta",
        "img.diskdump.md5sum",
        "img.diskdump.variant",
    ] {
        let (a, b) = (d.join("tui").join(name), d.join("cli").join(name));
        assert!(a.is_file(), "{name} was written by the UI");
        assert!(same_bytes(&a, &b), "{name} differs from snf-mkimage's");
    }
    let meta = std::fs::read_to_string(d.join("tui/img.diskdump.meta")).unwrap();
    assert!(
        meta.starts_with("{\"properties\":{") && meta.contains("\"MYPROP\":\"hello world\""),
        "{meta}"
    );
    let variant = std::fs::read_to_string(d.join("tui/img.diskdump.variant")).unwrap();
    assert!(variant.contains("IMG_ID='img.diskdump'"), "{variant}");
}

#[test]
fn ctrl_c_during_initialization_restores_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A qcow2 source takes a conversion at start-up: long enough to interrupt.
    let raw = example_disk(d);
    let qcow = d.join("ex.qcow2");
    let st = Command::new("qemu-img")
        .args(["convert", "-O", "qcow2"])
        .arg(&raw)
        .arg(&qcow)
        .status()
        .expect("qemu-img is missing (scripts/setup.sh)");
    assert!(st.success());
    let source_md5 = md5(&qcow);
    let tmp = d.display().to_string();
    let state = d.join("state").display().to_string();
    let t = Tmux::start(
        d,
        &["--tmpdir", &tmp, "ex.qcow2"],
        &[("TMPDIR", &tmp), ("XDG_STATE_HOME", &state)],
        100,
        30,
    );
    // Either the progress screen or the first question: Ctrl-C quits from both.
    let start = std::time::Instant::now();
    loop {
        let s = t.screen();
        if s.contains("Initialization") || s.contains("Welcome") {
            break;
        }
        assert!(start.elapsed() < common::TIMEOUT, "no screen:\n{s}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    t.keys(&["C-c"]);
    assert_eq!(t.wait_exit(), 130);
    let s = t.screen();
    assert!(
        s.contains("interrupted by the user"),
        "the message is printed on the restored terminal:\n{s}"
    );
    assert!(!s.contains("┌"), "the dialog screen is gone:\n{s}");
    assert!(!workdir_left(d), "the work directory was removed");
    assert_eq!(md5(&qcow), source_md5, "the source is untouched");
    assert_eq!(logs_left(d), Vec::<String>::new(), "temporary logs left");
}

/// The program on the example disk in `d` (work files in `d`), at its first question;
/// the disk's MD5.
fn welcome_on_the_example(d: &std::path::Path) -> (Tmux, String) {
    example_disk(d);
    let source_md5 = md5(&d.join("ex.raw"));
    let tmp = d.display().to_string();
    let t = Tmux::start(
        d,
        &["--tmpdir", &tmp, "ex.raw"],
        &[("TMPDIR", &tmp)],
        80,
        24,
    );
    t.wait_for("Welcome");
    (t, source_md5)
}

/// The files a run left in its state directory (under `d`) and in `d` itself.
fn logs_left(d: &std::path::Path) -> Vec<String> {
    let state = d.join("state/snf-image-creator");
    [d.to_path_buf(), state]
        .iter()
        .flat_map(|dir| std::fs::read_dir(dir).into_iter().flatten().flatten())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("fatal-"))
        .collect()
}

/// Close the terminal of a program on the example disk once `at` is on the screen
/// (after `keys`): it exits with the hang-up status (129), without a crash, after
/// cleaning up, and keeps no log.
fn hang_up_at(keys: &[&str], at: &str) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    example_disk(d);
    let source_md5 = md5(&d.join("ex.raw"));
    let tmp = d.display().to_string();
    let state = d.join("state").display().to_string();
    let t = Tmux::start_for_hang_up(
        d,
        &["--tmpdir", &tmp, "ex.raw"],
        &[("TMPDIR", &tmp), ("XDG_STATE_HOME", &state)],
    );
    t.wait_for("Welcome");
    t.keys(keys);
    t.wait_for(at);
    let pid = t.pid();
    t.hang_up();
    assert!(
        common::wait_ended(pid, common::TIMEOUT),
        "snf-image-creator (pid {pid}) kept running after its terminal closed"
    );
    assert_eq!(t.wait_exit(), 129, "the exit status of a hang-up");
    assert!(!workdir_left(d), "the work directory was removed");
    assert_eq!(
        md5(&d.join("ex.raw")),
        source_md5,
        "the source is untouched"
    );
    assert_eq!(logs_left(d), Vec::<String>::new(), "no crash log is kept");
}

#[test]
fn a_closed_terminal_ends_the_program_and_cleans_up() {
    hang_up_at(&[], "Welcome");
}

#[test]
fn a_closed_terminal_in_a_menu_ends_the_program_and_cleans_up() {
    hang_up_at(&["Right", "Enter", "Enter"], "Image Customization Menu");
}

#[test]
fn sigterm_in_a_dialog_exits_143_after_cleanup() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (t, _) = welcome_on_the_example(d);
    let st = Command::new("kill")
        .args(["-TERM", &t.pid().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(t.wait_exit(), 143);
    let s = t.screen();
    assert!(s.contains("interrupted by the user"), "{s}");
    assert!(!workdir_left(d), "the work directory was removed");
}

#[test]
fn runs_without_root_on_an_image_file() {
    common::require("setpriv");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    example_disk(d);
    // Everything the unprivileged user needs: the directory and the image, readable.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::set_permissions(d.join("ex.raw"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let source_md5 = md5(&d.join("ex.raw"));
    let tmp = d.display().to_string();
    let runner = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
    ];
    let env = [("TMPDIR", tmp.as_str()), ("HOME", tmp.as_str())];
    let t = Tmux::start_with(&runner, d, &["--tmpdir", &tmp, "ex.raw"], &env, 80, 24);
    let s = t.wait_for("Welcome");
    assert!(s.contains("detected a linux (debian) system"), "{s}");
    t.keys(&["Right", "Enter"]);
    t.wait_for("Image Creator for Synnefo");
    assert_eq!(t.save_image_and_quit(&d.join("nobody.diskdump")), 0);
    let meta = std::fs::metadata(d.join("nobody.diskdump")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(meta.uid(), 65534, "written by the unprivileged user");
    assert!(!workdir_left(d));
    assert_eq!(
        md5(&d.join("ex.raw")),
        source_md5,
        "the source is untouched"
    );
}

/// A process kept inside a directory (so that it cannot be unmounted); killed on drop.
struct Holder(std::process::Child);

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Customize > Mount: the guest is served read-write under the directory the message
/// names; changes made there by other processes land in the extracted image; a
/// process inside the directory makes the unmount fail with the original's message
/// until it is gone; nothing stays mounted.
#[test]
fn mount_serves_the_guest_and_waits_until_it_is_free() {
    assert!(
        std::path::Path::new("/dev/fuse").exists(),
        "/dev/fuse is missing: the Mount entry needs FUSE (modprobe fuse)"
    );
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let source = d.join("ex.raw");
    let (t, source_md5) = welcome_on_the_example(d);
    t.keys(&["Right", "Enter"]);
    t.wait_for("Image Creator for Synnefo");
    t.keys(&["Enter"]);
    let s = t.wait_for("Image Customization Menu");
    assert!(s.contains("Mount "), "{s}");
    t.keys(&["Down", "Down", "Down", "Enter"]);
    let s = t.wait_for("You may access it under");
    let mnt = s
        .split_whitespace()
        .find(|w| w.contains("snf-image-creator-mount."))
        .unwrap_or_else(|| panic!("no mount directory in the message:\n{s}"))
        .trim_matches('│')
        .to_string();
    let mnt = std::path::PathBuf::from(mnt);
    assert!(
        mnt.starts_with(d),
        "mounted under TMPDIR: {}",
        mnt.display()
    );
    let ours = mounts_under(d);
    assert!(
        ours.len() == 1
            && ours[0].point == mnt.display().to_string()
            && ours[0].source == "snf-image-creator"
            && ["fuse", "fuse.snf-image-creator"].contains(&ours[0].fs_type.as_str()),
        "one FUSE mount of ours at the named directory: {ours:?}"
    );

    // Work on the guest from outside, as a user would.
    assert_eq!(
        std::fs::read_to_string(mnt.join("etc/hostname")).unwrap(),
        "example\n"
    );
    std::fs::write(mnt.join("etc/hostname"), "mounted\n").unwrap();
    std::fs::write(mnt.join("root/made-on-the-host"), "hello from the host\n").unwrap();
    let holder = Holder(
        Command::new("sh")
            .args(["-c", "exec sleep 600"])
            .current_dir(&mnt)
            .spawn()
            .expect("cannot start a shell"),
    );
    t.keys(&["Enter"]);
    let s = t.wait_for("Umount failed.");
    assert!(
        s.contains("Make sure no process is using any files under")
            && s.contains(&mnt.display().to_string())
            && s.contains("and press <OK>."),
        "{s}"
    );
    assert_eq!(mounts_under(d).len(), 1, "still mounted while busy");
    drop(holder);
    t.keys(&["Enter"]);
    t.wait_for("Image Customization Menu");
    assert!(
        mounts_under(d).is_empty(),
        "unmounted: {:?}",
        mounts_under(d)
    );
    assert!(!mnt.exists(), "the mount directory was removed");

    // Extract and read the image back.
    t.keys(&["Escape"]);
    t.wait_for("Image Creator for Synnefo");
    let img = d.join("mounted.diskdump");
    assert_eq!(t.save_image_and_quit(&img), 0);

    assert_eq!(
        snf_testkit::guest_file(&img, 1, "/etc/hostname").unwrap(),
        Some(b"mounted\n".to_vec()),
        "the edit made through the mount is in the image"
    );
    assert_eq!(
        snf_testkit::guest_file(&img, 1, "/root/made-on-the-host").unwrap(),
        Some(b"hello from the host\n".to_vec()),
        "the file made through the mount is in the image"
    );
    fsck_clean(&img, 1);
    assert!(mounts_under(d).is_empty(), "nothing of ours stays mounted");
    assert!(!workdir_left(d), "the work directory was removed");
    assert_eq!(md5(&source), source_md5, "the source is untouched");
}

/// `e2fsck -fn` finds partition `number` of `disk` clean.
fn fsck_clean(disk: &std::path::Path, number: u32) {
    let (_, parts) = snf_testkit::partitions(disk).unwrap();
    let part = parts.iter().find(|p| p.number == number).unwrap();
    let out = Command::new("e2fsck")
        .arg("-fn")
        .arg(format!("{}?offset={}", disk.display(), part.start * 512))
        .output()
        .expect("e2fsck is missing (scripts/setup.sh)");
    assert!(
        out.status.success(),
        "e2fsck on partition {number}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// After Shrink, Sysprep warns as the original did ("dangerous"), No goes back, Yes
/// opens the guest's files again and runs the remaining operations on the shrunk
/// image, whose filesystem stays consistent.
#[test]
fn sysprep_after_shrink_warns_then_runs_on_the_reopened_guest() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (t, _) = welcome_on_the_example(d);
    let source = d.join("ex.raw");
    let source_len = std::fs::metadata(&source).unwrap().len();
    t.keys(&["Right", "Enter"]);
    t.wait_for("Image Creator for Synnefo");
    t.keys(&["Enter"]);
    t.wait_for("Image Customization Menu");
    // The default selection, Shrink included.
    t.keys(&["Enter"]);
    let s = t.wait_for("System Preparation");
    assert!(s.contains("[*] Shrink") || s.contains("(+)"), "{s}");
    t.keys(&["Enter"]);
    let s = t.wait_for("Image Property Changes");
    assert!(s.contains("(shrunk)"), "{s}");
    t.keys(&["Enter"]);
    t.wait_for("Image Customization Menu");
    // No (the default) changes nothing.
    t.keys(&["Enter"]);
    let s = t.wait_for("Do you really want to continue?");
    assert!(
        s.contains("The image has been shrunk. Running system preparation tasks on a shrunk"),
        "{s}"
    );
    t.keys(&["Enter"]);
    t.wait_for("Image Customization Menu");
    t.keys(&["Enter"]);
    t.wait_for("Do you really want to continue?");
    t.keys(&["Left", "Enter"]);
    let s = t.wait_for("Choose which system preparation tasks");
    assert!(
        s.contains("[ ] Remove user accounts")
            && !s.contains("Shrink")
            && !s.contains("Cleanup log"),
        "only the operations that did not run are offered:\n{s}"
    );
    t.keys(&["Space", "Enter"]);
    let s = t.wait_for("Image Property Changes");
    assert!(s.contains("USERS: root user -> root"), "{s}");
    t.keys(&["Enter"]);
    t.wait_for("Image Customization Menu");
    t.keys(&["Escape"]);
    t.wait_for("Image Creator for Synnefo");
    let img = d.join("again.diskdump");
    assert_eq!(t.save_image_and_quit(&img), 0);

    assert!(
        std::fs::metadata(&img).unwrap().len() < source_len,
        "the image is shrunk"
    );
    let passwd = snf_testkit::guest_file(&img, 1, "/etc/passwd")
        .unwrap()
        .expect("/etc/passwd");
    let passwd = String::from_utf8(passwd).unwrap();
    assert!(
        passwd.starts_with("root:") && !passwd.contains("\nuser:"),
        "the user account was removed after shrinking:\n{passwd}"
    );
    fsck_clean(&img, 1);
    assert!(!workdir_left(d), "the work directory was removed");
}

#[test]
fn a_fatal_error_keeps_its_log_in_the_state_directory() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // An empty file is no disk: initialization fails.
    std::fs::write(d.join("junk.raw"), b"").unwrap();
    let tmp = d.display().to_string();
    let state = d.join("state").display().to_string();
    let t = Tmux::start(
        d,
        &["--tmpdir", &tmp, "junk.raw"],
        &[("TMPDIR", &tmp), ("XDG_STATE_HOME", &state)],
        80,
        24,
    );
    t.wait_for("Fatal error");
    t.keys(&["Enter"]);
    assert_eq!(t.wait_exit(), 1);
    let logs = logs_left(d);
    assert_eq!(logs.len(), 1, "the log is kept: {logs:?}");
    let kept = d.join("state/snf-image-creator").join(&logs[0]);
    assert!(
        kept.is_file(),
        "the log is in the state directory: {logs:?}"
    );
    let s = t.screen();
    assert!(
        s.contains(&kept.display().to_string()),
        "the log is named:\n{s}"
    );
}

/// The byte offset of partition `n` of `img`, read with sfdisk.
fn partition_offset(img: &std::path::Path, n: u32) -> u64 {
    let out = Command::new("sfdisk").arg("-d").arg(img).output().unwrap();
    assert!(out.status.success(), "sfdisk -d {}", img.display());
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let name = format!("{}{n} :", img.display());
    let line = text
        .lines()
        .find(|l| l.starts_with(&name))
        .unwrap_or_else(|| panic!("no partition {n}:\n{text}"));
    let start = line
        .split("start=")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .unwrap()
        .trim()
        .parse::<u64>()
        .unwrap();
    start * 512
}

/// Customize > VirtIO on a Windows-shaped guest: a directory without drivers is
/// refused, the fixture directory's drivers are listed, and Install puts them in the
/// saved image (read back with ntfscat).
#[test]
fn virtio_page_installs_the_drivers_into_a_windows_guest() {
    use snf_testkit::windows::{copy_out, virtio_win, windows10_disk, Firmware};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let img = windows10_disk(d, "win", Firmware::Bios);
    // No catalogs: the page lists each driver's .inf and .sys.
    let tree = virtio_win(d, "w10", false);
    let tmp = d.display().to_string();
    let t = Tmux::start(
        d,
        &["--tmpdir", &tmp, img.to_str().unwrap()],
        &[("TMPDIR", &tmp)],
        80,
        24,
    );
    t.wait_for("Welcome");
    t.keys(&["Right", "Enter"]);
    t.wait_for("Image Creator for Synnefo");
    t.keys(&["Enter"]);
    t.wait_for("Image Customization Menu");
    t.keys(&["End", "Enter"]);
    t.wait_for("Please select a directory to use for the `virtio'");
    // A directory with no driver is refused by the parameter's check.
    t.keys(&["C-u"]);
    t.type_text(&tmp);
    t.keys(&["Enter"]);
    t.wait_for("Could not find any VirtIO driver");
    t.keys(&["Enter"]);
    t.wait_for("Please select a directory to use for the `virtio'");
    t.keys(&["C-u"]);
    t.type_text(&tree.display().to_string());
    t.keys(&["Enter"]);
    let s = t.wait_for("Install VirtIO Drivers");
    assert!(
        s.contains("VirtIO drivers in the image now: none")
            && s.contains("To install, for w10 (NTamd64):")
            && s.contains("viostor: viostor.inf, viostor.sys")
            && s.contains("NetKVM: netkvm.inf, netkvm.sys"),
        "{s}"
    );
    t.keys(&["Enter"]);
    let s = t.wait_for("The VirtIO drivers were installed:");
    assert!(s.contains("vioserial"), "{s}");
    t.keys(&["Enter"]);
    t.wait_for("Image Customization Menu");
    // Again: the page now tells the drivers the image has; Cancel changes nothing.
    t.keys(&["End", "Enter"]);
    t.wait_for("Please select a directory to use for the `virtio'");
    t.keys(&["C-u"]);
    t.type_text(&tree.display().to_string());
    t.keys(&["Enter"]);
    let s = t.wait_for("Install VirtIO Drivers");
    assert!(
        s.contains("in the image now: viostor, vioscsi, NetKVM, Balloon,")
            && s.contains("vioserial"),
        "{s}"
    );
    t.keys(&["Right", "Enter"]);
    t.wait_for("Image Customization Menu");
    t.keys(&["Escape"]);
    t.wait_for("Image Creator for Synnefo");
    let out = d.join("win.diskdump");
    assert_eq!(t.save_image_and_quit(&out), 0);

    let offset = partition_offset(&out, 2);
    let sys = d.join("viostor.sys");
    copy_out(&out, offset, "/Windows/System32/drivers/viostor.sys", &sys);
    assert_eq!(std::fs::read(&sys).unwrap(), b"MZ viostor amd64");
    let inf = d.join("netkvm.inf");
    copy_out(&out, offset, "/Windows/Drivers/VirtIO/netkvm.inf", &inf);
    assert!(std::fs::read_to_string(&inf).unwrap().contains("NTamd64"));
    assert!(!workdir_left(d), "the work directory was removed");
}
