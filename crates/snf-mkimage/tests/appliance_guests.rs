//! Guests whose root no in-process library can write (xfs, btrfs), prepared through the
//! libguestfs appliance by the real binary, and read back with independent tools only:
//! the host kernel (a read-only loop mount of the output), `xfs_repair -n`,
//! `btrfs check`. No appliance is left running after a run or after Ctrl-C.

mod common;

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use snf_testkit::fixture::{run as run_tool, write_file, Disk};

const MIB: u64 = 1 << 20;
const XFS_UUID: &str = "5b0c6a31-9f0e-4f8e-9d37-2a1c3e4f5a6b";
const ROOT_HASH: &str = "$6$rounds=5000$saltsalt$ROOTHASHMARKER";
const BTRFS_UUID: &str = "7d2e4f60-1a2b-4c3d-8e9f-0a1b2c3d4e5f";
const BOOT_UUID: &str = "0b0b0b0b-1111-4222-8333-444455556666";
const HISTORY_MARKER: &str = "SECRET-HISTORY-e81f";
/// In the SSH host key the syspreps delete: its freed block must not reach the output.
const HOST_KEY_MARKER: &str = "PRIVATE-HOST-KEY-3c9d71";
/// In a package cache the syspreps remove without overwriting: only discarding the
/// freed blocks (fstrim in the appliance) keeps it out of the output.
const CACHE_MARKER: &str = "CACHED-RPM-CONTENT-5e0a22";

fn scratch() -> tempfile::TempDir {
    // Images of a few hundred MiB: keep them off a small /tmp.
    tempfile::Builder::new()
        .prefix("appliance-guests.")
        .tempdir_in(snf_testkit::target_dir())
        .unwrap()
}

/// The files a RHEL-family or Fedora root has that inspection and the syspreps look
/// at.
fn redhat_tree(root: &Path, os_release: &str, release: &str, fstab: &str) {
    write_file(root, "/etc/os-release", os_release);
    write_file(root, "/etc/redhat-release", release);
    write_file(root, "/etc/fstab", fstab);
    write_file(root, "/etc/hostname", "fixture.example.org\n");
    write_file(
        root,
        "/etc/passwd",
        "root:x:0:0:root:/root:/bin/bash\nbin:x:1:1:bin:/bin:/sbin/nologin\nrocky:x:1000:1000::/home/rocky:/bin/bash\n",
    );
    write_file(
        root,
        "/etc/shadow",
        format!("root:{ROOT_HASH}:19000:0:99999:7:::\nbin:*:19000:0:99999:7:::\nrocky:$6$x$y:19000:0:99999:7:::\n"),
    );
    write_file(
        root,
        "/etc/group",
        "root:x:0:\nwheel:x:10:rocky\nrocky:x:1000:\n",
    );
    write_file(
        root,
        "/etc/login.defs",
        "UID_MIN 1000\nUID_MAX 60000\nENCRYPT_METHOD SHA512\n",
    );
    write_file(
        root,
        "/root/.bash_history",
        format!("ls\n{HISTORY_MARKER}\n"),
    );
    write_file(
        root,
        "/home/rocky/.bash_history",
        format!("{HISTORY_MARKER}\n"),
    );
    write_file(
        root,
        "/etc/ssh/ssh_host_ed25519_key",
        HOST_KEY_MARKER.repeat(4096 / HOST_KEY_MARKER.len()),
    );
    write_file(root, "/etc/ssh/sshd_config", "PermitRootLogin yes\n");
    write_file(root, "/var/log/messages", "boot log\n");
    write_file(
        root,
        "/var/cache/dnf/baseos/packages/bash.rpm",
        CACHE_MARKER.repeat(65536 / CACHE_MARKER.len()),
    );
    write_file(root, "/boot/config-5.14.0-362.8.1.el9_3.x86_64", "");
    fs::create_dir_all(root.join("lib/modules/5.14.0-362.8.1.el9_3.x86_64")).unwrap();
    fs::create_dir_all(root.join("tmp")).unwrap();
}

/// A RHEL-like guest on MBR at `dir/name`: one 320 MiB partition holding an xfs root
/// ([`XFS_UUID`], named so in fstab) of a [`redhat_tree`] with `os_release` and
/// `release`; the tree is made in `dir/tree` and removed.
fn xfs_disk(dir: &Path, name: &str, os_release: &str, release: &str) -> Disk {
    let tree = dir.join("tree");
    redhat_tree(
        &tree,
        os_release,
        release,
        &format!("UUID={XFS_UUID} / xfs defaults 0 0\n"),
    );
    let disk = Disk::create(
        dir.join(name),
        (2 + 320) * MIB,
        "label: dos\nstart=2048, size=655360, type=83\n",
    );
    disk.xfs(1, XFS_UUID, &tree);
    fs::remove_dir_all(&tree).unwrap();
    disk
}

fn qemu_pids() -> String {
    let out = Command::new("pgrep")
        .args(["-a", "qemu-system"])
        .output()
        .expect("pgrep (procps)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The qemu processes whose command line names `dir` (other engineers' may run too).
fn qemu_on(dir: &Path) -> Vec<String> {
    let d = dir.display().to_string();
    qemu_pids()
        .lines()
        .filter(|l| l.contains(&d))
        .map(String::from)
        .collect()
}

fn meta_of(out: &Path) -> serde_json::Value {
    let text = fs::read_to_string(format!("{}.meta", out.display())).unwrap();
    serde_json::from_str::<serde_json::Value>(&text).unwrap()["properties"].clone()
}

/// A read-only loop mount of partition `number` of `img` by the host kernel, unmounted
/// on drop.
struct HostMount {
    dir: tempfile::TempDir,
}

impl HostMount {
    fn new(img: &Path, number: u32, opts: &str) -> HostMount {
        let (_, parts) = snf_testkit::partitions(img).unwrap();
        let p = parts.iter().find(|p| p.number == number).unwrap();
        let dir = tempfile::tempdir().unwrap();
        run_tool(
            Command::new("mount")
                .arg("-o")
                .arg(format!(
                    "ro,loop,offset={},sizelimit={}{opts}",
                    p.start * 512,
                    p.size * 512
                ))
                .arg(img)
                .arg(dir.path()),
        );
        HostMount { dir }
    }
    fn path(&self, guest: &str) -> PathBuf {
        self.dir.path().join(guest.trim_start_matches('/'))
    }
}

impl Drop for HostMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Partition `number` of `img` cut out into `dest` (the btrfs and xfs checkers want the
/// filesystem alone).
fn cut(img: &Path, number: u32, dest: &Path) {
    let (_, parts) = snf_testkit::partitions(img).unwrap();
    let p = parts.iter().find(|p| p.number == number).unwrap();
    run_tool(
        Command::new("dd")
            .arg(format!("if={}", img.display()))
            .arg(format!("of={}", dest.display()))
            .args(["bs=512", "conv=sparse", "status=none"])
            .arg(format!("skip={}", p.start))
            .arg(format!("count={}", p.size)),
    );
}

/// Whether `needle` occurs anywhere in `img` (read whole: the images are small).
/// `btrfs check --readonly` on partition `number` of `img`, cut into `scratch`.
fn btrfs_check(img: &Path, number: u32, scratch: &Path) {
    let part = scratch.join(format!("p{number}.btrfs"));
    cut(img, number, &part);
    run_tool(
        Command::new("btrfs")
            .args(["check", "--readonly"])
            .arg(&part),
    );
    fs::remove_file(&part).unwrap();
}

fn contains(img: &Path, needle: &str) -> bool {
    let data = fs::read(img).unwrap();
    data.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// `snf-mkimage --tmpdir dir ARGS -o out src`.
fn mkimage(dir: &Path, args: &[&OsStr], src: &Path, out: &Path) -> std::process::Output {
    Command::new(bin())
        .arg("--tmpdir")
        .arg(dir)
        .args(args)
        .arg("-o")
        .arg(out)
        .arg(src)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// [`mkimage`], timed and logged as the `what` run; it must succeed and leave no
/// appliance running.
fn mkimage_ok(
    dir: &Path,
    args: &[&OsStr],
    src: &Path,
    out: &Path,
    what: &str,
) -> std::process::Output {
    let t = Instant::now();
    let run = mkimage(dir, args, src, out);
    eprintln!("{what} run: {:?}\n{}", t.elapsed(), stderr(&run));
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(
        qemu_on(dir).is_empty(),
        "appliance left: {:?}",
        qemu_on(dir)
    );
    run
}

/// `marker` is in the source `src` and not in the output `out` (the `what` was freed
/// and discarded).
fn assert_discarded(src: &Path, out: &Path, marker: &str, what: &str) {
    assert!(contains(src, marker));
    assert!(!contains(out, marker), "the {what} reached the output");
}

/// What the default syspreps promise on the RHEL-like tree, read by the host kernel.
fn assert_prepared(m: &HostMount) {
    let shadow = fs::read_to_string(m.path("/etc/shadow")).unwrap();
    assert!(!shadow.contains(ROOT_HASH), "root's hash kept: {shadow}");
    assert!(
        !m.path("/root/.bash_history").exists()
            || !fs::read_to_string(m.path("/root/.bash_history"))
                .unwrap()
                .contains(HISTORY_MARKER),
        "root's history kept"
    );
    assert!(
        !m.path("/etc/ssh/ssh_host_ed25519_key").exists(),
        "the host key kept"
    );
    // Untouched files stay.
    assert_eq!(
        fs::read_to_string(m.path("/etc/hostname")).unwrap(),
        "fixture.example.org\n"
    );
    assert!(m.path("/etc/redhat-release").is_file());
}

#[test]
fn rocky_on_xfs_is_inspected_and_prepared_then_interrupted() {
    require("mkfs.xfs");
    require("xfs_repair");
    let d = scratch();
    let src = xfs_disk(
        d.path(),
        "rocky.raw",
        "NAME=\"Rocky Linux\"\nVERSION=\"9.3 (Blue Onyx)\"\nID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"9.3\"\nPRETTY_NAME=\"Rocky Linux 9.3 (Blue Onyx)\"\n",
        "Rocky Linux release 9.3 (Blue Onyx)\n",
    )
    .into_path();
    let before = fs::read(&src).unwrap();

    let out = d.path().join("out.raw");
    let run = mkimage_ok(d.path(), &[], &src, &out, "xfs");
    assert_eq!(fs::read(&src).unwrap(), before, "the source was changed");

    let meta = meta_of(&out);
    assert_eq!(meta["OSFAMILY"], "linux", "{meta}");
    assert_eq!(meta["OS"], "rocky", "{meta}");
    assert_eq!(meta["ROOT_PARTITION"], "1", "{meta}");
    assert_eq!(meta["DESCRIPTION"], "Rocky Linux 9.3 (Blue Onyx)", "{meta}");
    assert_eq!(meta["USERS"], "root rocky", "{meta}");
    assert!(
        stderr(&run).contains("Unable to shrink partition 1: don't know how to shrink xfs"),
        "the run does not say why xfs is not shrunk"
    );
    // Deleted, then discarded by fstrim in the appliance: a hole in the output.
    assert_discarded(&src, &out, HOST_KEY_MARKER, "deleted host key");
    assert_discarded(&src, &out, CACHE_MARKER, "removed cache");

    // xfs_repair -n needs the filesystem alone.
    let part = d.path().join("p1.xfs");
    cut(&out, 1, &part);
    run_tool(Command::new("xfs_repair").arg("-n").arg(&part));
    fs::remove_file(&part).unwrap();
    {
        let m = HostMount::new(&out, 1, ",norecovery");
        assert_prepared(&m);
    }
    fs::remove_file(&out).unwrap();

    // Ctrl-C (SIGINT) or SIGTERM while the appliance runs: the run stops and takes
    // it down.
    for (signal, name) in [
        (rustix::process::Signal::INT, "SIGINT"),
        (rustix::process::Signal::TERM, "SIGTERM"),
    ] {
        interrupt_with_appliance_up(d.path(), &src, signal, name);
    }
}

/// Run on `src`, send `signal` once the appliance is up, and check that the run fails,
/// leaves no output and no qemu behind.
fn interrupt_with_appliance_up(
    dir: &Path,
    src: &Path,
    signal: rustix::process::Signal,
    name: &str,
) {
    let out = dir.join(format!("interrupted-{name}.raw"));
    let mut child = Command::new(bin())
        .arg("--tmpdir")
        .arg(dir)
        .arg("-o")
        .arg(&out)
        .arg(src)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while qemu_on(dir).is_empty() {
        assert!(Instant::now() < deadline, "no appliance started");
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            panic!("the run ended before the appliance: {}", stderr(&out));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    rustix::process::kill_process(rustix::process::Pid::from_child(&child), signal).unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "{name}: the run succeeded");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !qemu_on(dir).is_empty() {
        assert!(
            Instant::now() < deadline,
            "appliance left after {name}: {:?}",
            qemu_on(dir)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!out.exists(), "an output after {name}");
}

/// Fedora's layout: ext4 `/boot` in-process, the root and `/home` in the btrfs
/// subvolumes `root` and `home` of one filesystem (`subvol=` in fstab), through the
/// appliance.
#[test]
fn fedora_on_btrfs_subvolumes_with_ext4_boot() {
    require("mkfs.btrfs");
    let d = scratch();
    let top = d.path().join("top");
    let root = top.join("root");
    redhat_tree(
        &root,
        "NAME=\"Fedora Linux\"\nVERSION=\"39 (Cloud Edition)\"\nID=fedora\nVERSION_ID=39\nPRETTY_NAME=\"Fedora Linux 39 (Cloud Edition)\"\n",
        "Fedora release 39 (Thirty Nine)\n",
        &format!(
            "UUID={BTRFS_UUID} / btrfs subvol=root,compress=zstd:1 0 0\n\
             UUID={BOOT_UUID} /boot ext4 defaults 1 2\n\
             UUID={BTRFS_UUID} /home btrfs subvol=home,compress=zstd:1 0 0\n"
        ),
    );
    write_file(
        &root,
        "/etc/fedora-release",
        "Fedora release 39 (Thirty Nine)\n",
    );
    // /home's content lives in its own subvolume, /boot's in its own partition.
    fs::rename(root.join("home"), top.join("home")).unwrap();
    fs::create_dir_all(root.join("home")).unwrap();
    let boot = d.path().join("boot");
    fs::rename(root.join("boot"), &boot).unwrap();
    fs::create_dir_all(root.join("boot")).unwrap();

    let disk = Disk::create(
        d.path().join("fedora.raw"),
        (2 + 32 + 256) * MIB,
        "label: dos\nstart=2048, size=65536, type=83\nstart=67584, size=524288, type=83\n",
    );
    disk.ext(
        1,
        &snf_testkit::fixture::Mke2fs::ext4()
            .uuid(BOOT_UUID)
            .tree(&boot),
    );
    disk.btrfs(2, BTRFS_UUID, &top, &["root", "home"]);
    fs::remove_dir_all(&top).unwrap();
    fs::remove_dir_all(&boot).unwrap();
    let src = disk.into_path();

    let out = d.path().join("out.raw");
    let run = mkimage_ok(d.path(), &[], &src, &out, "btrfs");

    let meta = meta_of(&out);
    assert_eq!(meta["OSFAMILY"], "linux", "{meta}");
    assert_eq!(meta["OS"], "fedora", "{meta}");
    assert_eq!(meta["ROOT_PARTITION"], "2", "{meta}");
    assert_eq!(meta["USERS"], "root rocky", "{meta}");
    assert!(
        // 256 MiB is the kernel's floor for a btrfs resize: nothing to gain here
        // (tests/shrink_btrfs.rs shrinks a larger one).
        stderr(&run).contains(
            "Unable to shrink partition 2: the btrfs filesystem is already near its minimum size"
        ),
        "the run does not say why btrfs is not shrunk"
    );
    assert_discarded(&src, &out, HOST_KEY_MARKER, "deleted host key");
    assert_discarded(&src, &out, CACHE_MARKER, "removed cache");

    btrfs_check(&out, 2, d.path());
    {
        let m = HostMount::new(&out, 2, ",subvol=root");
        assert_prepared(&m);
        assert!(
            fs::read_dir(m.path("/home")).unwrap().next().is_none(),
            "/home's files went into the root subvolume"
        );
    }
    {
        let m = HostMount::new(&out, 2, ",subvol=home");
        assert!(
            m.path("/rocky").is_dir(),
            "the home subvolume lost its files"
        );
    }
}

/// RHEL's default layout: ext4 `/boot`, then an LVM PV with the xfs root in LV
/// `rl/root`, named `/dev/mapper/rl-root` in fstab.
#[test]
fn rocky_on_xfs_in_lvm() {
    require("mkfs.xfs");
    let d = scratch();
    let root = d.path().join("root");
    redhat_tree(
        &root,
        "NAME=\"Rocky Linux\"\nID=\"rocky\"\nVERSION_ID=\"9.3\"\nPRETTY_NAME=\"Rocky Linux 9.3 (Blue Onyx)\"\n",
        "Rocky Linux release 9.3 (Blue Onyx)\n",
        &format!(
            "/dev/mapper/rl-root / xfs defaults 0 0\nUUID={BOOT_UUID} /boot ext4 defaults 1 2\n"
        ),
    );
    let boot = d.path().join("boot");
    fs::rename(root.join("boot"), &boot).unwrap();
    fs::create_dir_all(root.join("boot")).unwrap();
    let disk = Disk::create(
        d.path().join("rocky-lvm.raw"),
        (2 + 32 + 400) * MIB,
        "label: dos\nstart=2048, size=65536, type=83\nstart=67584, size=819200, type=8e\n",
    );
    disk.ext(
        1,
        &snf_testkit::fixture::Mke2fs::ext4()
            .uuid(BOOT_UUID)
            .tree(&boot),
    );
    let lvm = snf_testkit::lvm::Lvm::attach(disk.path(), &[(disk.offset(2), disk.size(2))]);
    lvm.pvcreate(&[0], &[]);
    lvm.vgcreate("rl", &[0], &[]);
    lvm.lvcreate("rl", "root", "320M", &[]);
    let ranges = lvm.lv_ranges("rl", "root");
    drop(lvm);
    assert_eq!(ranges.len(), 1, "{ranges:?}");
    snf_testkit::fixture::xfs_at(disk.path(), ranges[0].0, ranges[0].1, XFS_UUID, &root);
    fs::remove_dir_all(&root).unwrap();
    fs::remove_dir_all(&boot).unwrap();
    let src = disk.into_path();

    let out = d.path().join("out.raw");
    mkimage_ok(d.path(), &[], &src, &out, "xfs-on-LVM");
    let meta = meta_of(&out);
    assert_eq!(meta["OS"], "rocky", "{meta}");
    assert_eq!(meta["ROOT_PARTITION"], "2", "{meta}");
    assert_eq!(meta["ROOT_LV"], "rl/root", "{meta}");
    assert!(
        !contains(&out, HOST_KEY_MARKER),
        "the deleted host key reached the output"
    );
    assert_discarded(&src, &out, CACHE_MARKER, "removed cache");
    // The LV's extents did not move (xfs is not shrunk): read it where it was.
    let lv = d.path().join("lv.xfs");
    run_tool(
        Command::new("dd")
            .arg(format!("if={}", out.display()))
            .arg(format!("of={}", lv.display()))
            .args([
                "bs=1M",
                "conv=sparse",
                "status=none",
                "iflag=skip_bytes,count_bytes",
            ])
            .arg(format!("skip={}", ranges[0].0))
            .arg(format!("count={}", ranges[0].1)),
    );
    run_tool(Command::new("xfs_repair").arg("-n").arg(&lv));
    let m = tempfile::tempdir().unwrap();
    run_tool(
        Command::new("mount")
            .args(["-o", "ro,loop,norecovery"])
            .arg(&lv)
            .arg(m.path()),
    );
    let shadow = fs::read_to_string(m.path().join("etc/shadow"));
    let key_gone = !m.path().join("etc/ssh/ssh_host_ed25519_key").exists();
    run_tool(Command::new("umount").arg(m.path()));
    assert!(!shadow.unwrap().contains(ROOT_HASH));
    assert!(key_gone);
}

const SUSE_UUID: &str = "3e5f7a91-2b4c-4d6e-8f01-23456789abcd";

/// The files of an openSUSE Leap root that inspection and the syspreps look at.
fn suse_tree(root: &Path) {
    write_file(
        root,
        "/etc/os-release",
        "NAME=\"openSUSE Leap\"\nVERSION=\"15.5\"\nID=\"opensuse-leap\"\nID_LIKE=\"suse opensuse\"\nVERSION_ID=\"15.5\"\nPRETTY_NAME=\"openSUSE Leap 15.5\"\n",
    );
    write_file(root, "/etc/SUSE-brand", "openSUSE\nVERSION = 15.5\n");
    // As the openSUSE installer writes it: `/` is the default subvolume, without
    // subvol=; the others are named from the top level.
    write_file(
        root,
        "/etc/fstab",
        format!(
            "UUID={SUSE_UUID}  /            btrfs  defaults                 0  0\n\
             UUID={SUSE_UUID}  /var         btrfs  subvol=/@/var            0  0\n\
             UUID={SUSE_UUID}  /home        btrfs  subvol=/@/home           0  0\n\
             UUID={SUSE_UUID}  /.snapshots  btrfs  subvol=/@/.snapshots     0  0\n"
        ),
    );
    write_file(root, "/etc/hostname", "leap.example.org\n");
    write_file(
        root,
        "/etc/passwd",
        "root:x:0:0:root:/root:/bin/bash\ngeeko:x:1000:100:Geeko:/home/geeko:/bin/bash\n",
    );
    write_file(
        root,
        "/etc/shadow",
        format!("root:{ROOT_HASH}:19000::::::\ngeeko:$6$x$y:19000:0:99999:7:::\n"),
    );
    write_file(root, "/etc/group", "root:x:0:\nusers:x:100:\n");
    write_file(
        root,
        "/etc/login.defs",
        "UID_MIN 1000\nUID_MAX 60000\nENCRYPT_METHOD SHA512\n",
    );
    write_file(
        root,
        "/etc/ssh/ssh_host_ed25519_key",
        HOST_KEY_MARKER.repeat(4096 / HOST_KEY_MARKER.len()),
    );
    write_file(root, "/etc/ssh/sshd_config", "PermitRootLogin yes\n");
    write_file(root, "/boot/vmlinuz-5.14.21-150500.55.19-default", "");
    fs::create_dir_all(root.join("lib/modules/5.14.21-150500.55.19-default")).unwrap();
    fs::create_dir_all(root.join("tmp")).unwrap();
    for mp in ["home", "var", ".snapshots"] {
        fs::create_dir_all(root.join(mp)).unwrap();
    }
}

/// openSUSE's btrfs layout, made on a loop mount: subvolumes `@`, `@/home`, `@/var`,
/// `@/.snapshots` and the root in `@/.snapshots/1/snapshot`, set as the default
/// subvolume; `/home` and `/var` content in their own subvolumes.
fn suse_btrfs(img: &Path, offset: u64, size: u64, root: &Path, home: &Path, var: &Path) {
    let dir = tempfile::tempdir_in(img.parent().unwrap()).unwrap();
    let fsimg = dir.path().join("fs");
    fs::File::create(&fsimg).unwrap().set_len(size).unwrap();
    run_tool(
        Command::new("mkfs.btrfs")
            .args(["-q", "-f", "-U", SUSE_UUID])
            .arg(&fsimg),
    );
    let m = dir.path().join("m");
    fs::create_dir_all(&m).unwrap();
    run_tool(
        Command::new("mount")
            .args(["-o", "loop"])
            .arg(&fsimg)
            .arg(&m),
    );
    struct Umount(PathBuf);
    impl Drop for Umount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _u = Umount(m.clone());
    let sv = |p: &str| {
        run_tool(
            Command::new("btrfs")
                .args(["-q", "subvolume", "create"])
                .arg(m.join(p)),
        );
    };
    sv("@");
    sv("@/home");
    sv("@/var");
    sv("@/.snapshots");
    fs::create_dir_all(m.join("@/.snapshots/1")).unwrap();
    sv("@/.snapshots/1/snapshot");
    for (from, to) in [
        (root, "@/.snapshots/1/snapshot"),
        (home, "@/home"),
        (var, "@/var"),
    ] {
        run_tool(
            Command::new("cp")
                .arg("-a")
                .arg(from.join("."))
                .arg(m.join(to)),
        );
    }
    run_tool(
        Command::new("btrfs")
            .args(["subvolume", "set-default"])
            .arg(m.join("@/.snapshots/1/snapshot")),
    );
    drop(_u);
    snf_testkit::fixture::copy_into(&fsimg, img, offset);
}

/// openSUSE on btrfs: the root is the default subvolume (fstab mounts `/` without
/// subvol=), `/home` and `/var` are `subvol=/@/...`; a --host-run script edits all
/// three through the FUSE view of the appliance's filesystems. Read back by the host
/// kernel and `btrfs check`.
#[test]
fn opensuse_default_subvolume_root_and_host_run() {
    require("mkfs.btrfs");
    require("btrfs");
    let d = scratch();
    let (root, home, var) = (
        d.path().join("root"),
        d.path().join("home"),
        d.path().join("var"),
    );
    suse_tree(&root);
    write_file(&home, "/geeko/.bash_history", format!("{HISTORY_MARKER}\n"));
    write_file(&home, "/geeko/notes.txt", "keep me\n");
    write_file(&var, "/log/messages", "boot log\n");
    write_file(&var, "/lib/misc/keep", "var data\n");
    let disk = Disk::create(
        d.path().join("suse.raw"),
        (2 + 300) * MIB,
        "label: dos\nstart=2048, type=83\n",
    );
    let (off, size) = (disk.offset(1), disk.size(1));
    let src = disk.into_path();
    suse_btrfs(&src, off, size, &root, &home, &var);
    for t in [&root, &home, &var] {
        fs::remove_dir_all(t).unwrap();
    }
    let script = d.path().join("edit.sh");
    fs::write(
        &script,
        "#!/bin/sh\nset -e\n\
         echo hostrun-root > etc/motd\n\
         echo hostrun-home >> home/geeko/notes.txt\n\
         echo hostrun-var > var/lib/misc/flag\n\
         rm var/lib/misc/keep\n",
    )
    .unwrap();
    run_tool(Command::new("chmod").arg("755").arg(&script));

    let out = d.path().join("out.raw");
    mkimage_ok(
        d.path(),
        &["--host-run".as_ref(), script.as_os_str()],
        &src,
        &out,
        "openSUSE",
    );

    let meta = meta_of(&out);
    assert_eq!(meta["OSFAMILY"], "linux", "{meta}");
    assert_eq!(meta["OS"], "opensuse", "{meta}");
    assert_eq!(meta["ROOT_PARTITION"], "1", "{meta}");
    // 1e6 × linux 7 + 1e4 × opensuse 44 + 100 × 15 + 5.
    assert_eq!(meta["SORTORDER"], "7441505", "{meta}");
    assert_eq!(meta["USERS"], "root geeko", "{meta}");
    assert!(
        !contains(&out, HOST_KEY_MARKER),
        "the deleted host key reached the output"
    );

    btrfs_check(&out, 1, d.path());
    {
        // No subvol=: the default subvolume, the root.
        let m = HostMount::new(&out, 1, "");
        assert_eq!(
            fs::read_to_string(m.path("/etc/motd")).unwrap(),
            "hostrun-root\n"
        );
        let shadow = fs::read_to_string(m.path("/etc/shadow")).unwrap();
        assert!(!shadow.contains(ROOT_HASH), "root's hash kept: {shadow}");
        assert!(!m.path("/etc/ssh/ssh_host_ed25519_key").exists());
        assert!(m.path("/etc/SUSE-brand").is_file());
        assert!(
            fs::read_dir(m.path("/home")).unwrap().next().is_none()
                && fs::read_dir(m.path("/var")).unwrap().next().is_none(),
            "/home or /var content went into the root subvolume"
        );
    }
    {
        let m = HostMount::new(&out, 1, ",subvol=/@/home");
        assert_eq!(
            fs::read_to_string(m.path("/geeko/notes.txt")).unwrap(),
            "keep me\nhostrun-home\n"
        );
    }
    {
        let m = HostMount::new(&out, 1, ",subvol=/@/var");
        assert_eq!(
            fs::read_to_string(m.path("/lib/misc/flag")).unwrap(),
            "hostrun-var\n"
        );
        assert!(!m.path("/lib/misc/keep").exists());
    }
}

/// A `--no-sysprep` run changes nothing, so the appliance only looks (read-only) and the
/// dump reads the source itself: a file deleted from the xfs root before imaging is
/// still on the source's blocks, and only the in-process free-space listing (the AG
/// btrees) keeps it out of the output.
#[test]
fn deleted_xfs_data_stays_out_of_a_no_sysprep_image() {
    require("mkfs.xfs");
    require("xfs_repair");
    let d = scratch();
    let disk = xfs_disk(
        d.path(),
        "alma.raw",
        "NAME=\"AlmaLinux\"\nVERSION=\"9.4\"\nID=\"almalinux\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"9.4\"\nPRETTY_NAME=\"AlmaLinux 9.4\"\n",
        "AlmaLinux release 9.4 (Seafoam Ocelot)\n",
    );
    const DELETED: &str = "DELETED-BEFORE-IMAGING-7f41c0";
    {
        let m = tempfile::tempdir().unwrap();
        run_tool(
            Command::new("mount")
                .arg("-o")
                .arg(format!(
                    "loop,offset={},sizelimit={}",
                    disk.offset(1),
                    disk.size(1)
                ))
                .arg(disk.path())
                .arg(m.path()),
        );
        let secret = DELETED.repeat((4 << 20) / DELETED.len());
        let w = fs::write(m.path().join("root/secret.txt"), &secret)
            .and_then(|_| fs::File::open(m.path().join("root/secret.txt"))?.sync_all())
            .and_then(|_| fs::remove_file(m.path().join("root/secret.txt")));
        run_tool(Command::new("umount").arg(m.path()));
        w.unwrap();
    }
    let src = disk.into_path();
    assert!(contains(&src, DELETED), "the fixture lost its deleted data");

    let out = d.path().join("out.raw");
    mkimage_ok(
        d.path(),
        &["--no-sysprep".as_ref()],
        &src,
        &out,
        "--no-sysprep",
    );
    assert_eq!(meta_of(&out)["OS"], "almalinux");
    assert!(
        !contains(&out, DELETED),
        "the deleted file's data reached the output"
    );
    let part = d.path().join("p1.xfs");
    cut(&out, 1, &part);
    run_tool(Command::new("xfs_repair").args(["-n", "-f"]).arg(&part));
}
