//! Every system preparation operation on guest trees made here, through the real ext4
//! backend (mke2fs -d, libext2fs), with e2fsck -fn clean afterwards.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use image_creator::metadata::Metadata;
use image_creator::sysprep::{
    self, Action, GuestOs, MountedFs, OpReport, OsFamily, Params, Registry, SysprepContext,
};
use snf_guestfs::{ExtFs, GuestFs};
use snf_testkit::fixture::{assert_e2fsck_clean, write_file, write_symlink, Mke2fs};
use snf_testkit::report::Recorder;

const ROOT_UUID: &str = "0f3c9e2a-6b1d-4c55-9a7e-2d1f00c0ffee";
const HISTORY_MARKER: &str = "SECRET-HISTORY-4f1d2c";
const KEY_MARKER: &str = "SECRET-PRIVATE-KEY-9a8b7c";
const HASH_MARKER: &str = "$6$saltsalt$HASHMARKER0123456789";
const CACHE_MARKER: &str = "CACHED-DEB-CONTENT-77e1";

/// A Debian-like guest with every awkward case the operations must survive.
fn make_tree(root: &Path) {
    write_file(root, "/etc/passwd", "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\nalice:x:1000:1000:Alice:/home/alice:/bin/bash\nbob:x:1001:1001:Bob:/home/bob:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n");
    write_file(root, "/etc/shadow", format!("root:{HASH_MARKER}:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\nalice:$6$a$b:19000:0:99999:7:::\nbob:!:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n"));
    write_file(
        root,
        "/etc/shadow-",
        format!("root:{HASH_MARKER}:18000:0:99999:7:::\n"),
    );
    write_file(root, "/etc/passwd-", "root:x:0:0:root:/root:/bin/bash\n");
    write_file(
        root,
        "/etc/group",
        "root:x:0:\nsudo:x:27:alice,bob\nalice:x:1000:\nbob:x:1001:\n",
    );
    write_file(
        root,
        "/etc/gshadow",
        "root:*::\nsudo:*::alice,bob\nalice:!::\nbob:!::\n",
    );
    write_file(
        root,
        "/etc/login.defs",
        "# login.defs\nUID_MIN\t\t\t 1000\nUID_MAX\t\t\t60000\n",
    );
    // user data
    write_file(
        root,
        "/root/.bash_history",
        format!("ls\n{HISTORY_MARKER}\n"),
    );
    write_file(
        root,
        "/root/.ssh/authorized_keys",
        "ssh-ed25519 AAAA root@host\n",
    );
    fs::create_dir_all(root.join("home/alice/.ssh")).unwrap();
    // A sparse private key: a hole, then the secret.
    let key = fs::File::create(root.join("home/alice/.ssh/id_rsa")).unwrap();
    key.set_len(1 << 20).unwrap();
    drop(key);
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = fs::OpenOptions::new()
            .write(true)
            .open(root.join("home/alice/.ssh/id_rsa"))
            .unwrap();
        f.seek(SeekFrom::Start(1 << 20)).unwrap();
        f.write_all(KEY_MARKER.as_bytes()).unwrap();
    }
    write_file(root, "/home/alice/.bash_history", "alice history\n");
    fs::hard_link(
        root.join("home/alice/.bash_history"),
        root.join("home/alice/notes.txt"),
    )
    .unwrap();
    write_file(
        root,
        "/home/bob/.gnupg/private-keys-v1.d/sec ret\nkey",
        "gpg secret\n",
    );
    write_file(root, "/home/bob/.gnupg/pubring.kbx", "pub\n");
    let ro = root.join("home/bob/.gnupg/pubring.kbx");
    fs::set_permissions(&ro, fs::Permissions::from_mode(0o400)).unwrap();
    write_symlink(root, "/home/bob/.bash_history", "/etc/passwd"); // must not be followed
    write_symlink(root, "/root/.zsh_history", "../../../../etc/hostname"); // points outside the guest
    write_file(root, "/etc/hostname", "template\n");
    // caches, tmp, logs, mail
    write_file(root, "/var/cache/apt/archives/foo.deb", CACHE_MARKER);
    write_file(root, "/var/cache/man/index.db", "db");
    write_symlink(root, "/var/cache/shadow-link", "/etc/shadow");
    for i in 0..3000 {
        write_file(root, &format!("/var/cache/many/entry-{i:05}"), "x");
    }
    write_file(root, "/tmp/a", "a");
    write_file(root, "/tmp/.hidden", "h");
    write_file(root, "/tmp/dir with space/sub/file", "f");
    write_file(root, "/var/tmp/x", "x");
    write_file(root, "/var/log/syslog", "log line\n");
    write_file(root, "/var/log/apt/history.log", "apt\n");
    write_file(root, "/var/log/ro.log", "read only log\n");
    fs::set_permissions(
        root.join("var/log/ro.log"),
        fs::Permissions::from_mode(0o444),
    )
    .unwrap();
    write_symlink(root, "/var/log/passwd-link", "/etc/passwd");
    write_file(root, "/var/mail/alice", "mail\n");
    // network and boot configuration
    write_file(
        root,
        "/etc/acpi/events/powerbtn",
        "# power button\nevent=button[ /]power\naction=/etc/acpi/powerbtn.sh\n",
    );
    write_file(
        root,
        "/etc/udev/rules.d/70-persistent-net.rules",
        "SUBSYSTEM==\"net\"\n",
    );
    write_file(
        root,
        "/etc/NetworkManager/system-connections/Wired.nmconnection",
        "[connection]\n",
    );
    write_file(root, "/var/lib/dhcp/dhclient.eth0.leases", "lease {}\n");
    write_file(
        root,
        "/etc/sysctl.conf",
        "# sysctl\n#net.ipv6.conf.all.forwarding=1\n",
    );
    write_symlink(root, "/etc/sysctl.d/99-sysctl.conf", "../sysctl.conf");
    write_file(
        root,
        "/etc/sysctl.d/10-ipv6.conf",
        "net.ipv6.conf.all.use_tempaddr  =   2\n",
    );
    write_file(root, "/etc/fstab", "# /etc/fstab: static file system information.\n/dev/sda1   /      ext4   errors=remount-ro 0 1   # root\n\nUUID=abcd /boot ext4 defaults 0 2\n/dev/sda5\tnone\tswap\tsw\t0\t0\n  /dev/sdb1 /data ext4 defaults 0 2\nproc /proc proc defaults 0 0\n");
    write_file(root, "/etc/default/grub", "GRUB_DEFAULT=0\nGRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\nGRUB_CMDLINE_LINUX=\"console=tty0 console=ttyS0,115200n8\"\n");
    write_file(root, "/boot/grub/grub.cfg", "set timeout=5\nmenuentry 'Debian' {\n\tlinux\t/boot/vmlinuz root=UUID=x ro console=ttyS0,115200 quiet\n\tinitrd\t/boot/initrd.img\n}\n");
    write_file(
        root,
        "/boot/extlinux/extlinux.conf",
        "TIMEOUT 50\nLABEL linux\n  KERNEL /vmlinuz\n  append root=/dev/sda1 console=ttyS0 ro\n",
    );
    // identity and state
    write_file(root, "/var/lib/cloud/instance/obj.pkl", "state");
    write_file(
        root,
        "/var/lib/cloud/seed/nocloud/user-data",
        "#cloud-config\n",
    );
    write_file(root, "/etc/ssh/ssh_host_ed25519_key", "PRIVATE HOST KEY\n");
    write_file(
        root,
        "/etc/ssh/ssh_host_ed25519_key.pub",
        "ssh-ed25519 AAAA\n",
    );
    write_file(root, "/etc/ssh/sshd_config", "Port 22\n");
    write_file(root, "/var/lib/systemd/random-seed", "seed");
    write_file(
        root,
        "/etc/lvm/devices/system.devices",
        "VERSION=1.1.1\nIDTYPE=sys_wwid IDNAME=naa.1 DEVNAME=/dev/sda2 PVID=x\n",
    );
    write_file(
        root,
        "/etc/machine-id",
        "0123456789abcdef0123456789abcdef\n",
    );
    write_symlink(root, "/var/lib/dbus/machine-id", "/etc/machine-id");
    write_file(
        root,
        "/etc/selinux/config",
        "SELINUX=enforcing\nSELINUXTYPE=targeted\n",
    );
}

fn mkfs(tree: &Path, image: &Path) {
    Mke2fs::ext4()
        .uuid(ROOT_UUID)
        .tree(tree)
        .make(image, 0, "64M");
}

fn open(image: &Path, writable: bool) -> GuestFs {
    GuestFs::new(
        Box::new(ExtFs::open(image, 0, writable).unwrap()),
        "test image",
    )
}

fn linux_meta() -> Metadata {
    let mut m = Metadata::new();
    m.insert("OSFAMILY", "linux").unwrap();
    m.insert("OS", "debian").unwrap();
    m.insert("USERS", "root alice").unwrap();
    m
}

struct Run {
    reports: Vec<OpReport>,
    meta: Metadata,
    rec: Recorder,
}

fn run(
    image: &Path,
    registry: &mut Registry,
    params: &Params,
    mut meta: Metadata,
    dry_run: bool,
) -> Run {
    let rec = Recorder::default();
    let os = GuestOs::from_metadata(&meta);
    // Unsupported media are never opened for writing (nothing may change at all).
    let mut fs = open(image, !dry_run && os.family != OsFamily::Unsupported);
    let reports = {
        let mut ctx = SysprepContext::new(&mut fs, &os, &mut meta, params, &rec)
            .with_dry_run(dry_run)
            .with_filesystems(vec![MountedFs {
                mountpoint: PathBuf::from("/"),
                uuid: Some(ROOT_UUID.to_string()),
            }]);
        sysprep::run_enabled(registry, &mut ctx).unwrap()
    };
    drop(fs.into_filesystems().unwrap());
    Run { reports, meta, rec }
}

fn fixture() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    make_tree(&tree);
    let image = dir.path().join("disk.img");
    mkfs(&tree, &image);
    (dir, image)
}

fn read(g: &mut GuestFs, p: &str) -> String {
    g.read_to_string(Path::new(p)).unwrap()
}

fn changed(r: &Run, op: &str) -> Vec<String> {
    r.reports
        .iter()
        .find(|x| x.name == op)
        .map(|x| x.changes.changes.iter().map(|c| c.to_string()).collect())
        .unwrap_or_default()
}

#[test]
fn defaults_clean_the_guest_as_promised() {
    let (_dir, image) = fixture();
    let params = Params::for_family(OsFamily::Linux);
    let mut reg = Registry::for_family(OsFamily::Linux);
    let r = run(&image, &mut reg, &params, linux_meta(), false);
    assert_e2fsck_clean(&image, 0, "the image");

    // Progress lines; shrink itself runs later, in the session's shrink stage.
    let infos = r.rec.infos();
    assert_eq!(infos[0], "Preparing system for image creation:");
    assert!(infos[1].starts_with("(1/"), "{infos:?}");
    assert!(
        infos
            .iter()
            .any(|i| i.ends_with("Shrinking image (may take a while)")),
        "{infos:?}"
    );
    let warnings = r.rec.warnings();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("home/alice/.bash_history has 1 other hard links")),
        "{warnings:?}"
    );
    // Every change was shown as a detail.
    let details = r.rec.details();
    assert!(
        details
            .iter()
            .any(|d| d == "cleanup-log: emptied /var/log/syslog"),
        "{details:?}"
    );
    // Executed operations cannot run again.
    assert!(reg.enabled().is_empty());

    let mut g = open(&image, false);
    // cleanup-userdata
    for p in [
        "/root/.bash_history",
        "/root/.ssh/authorized_keys",
        "/home/alice/.ssh/id_rsa",
        "/home/alice/.bash_history",
        "/home/bob/.gnupg/private-keys-v1.d/sec ret\nkey",
        "/home/bob/.gnupg/pubring.kbx",
    ] {
        assert!(!g.lexists(Path::new(p)), "{p} removed");
    }
    assert!(
        g.is_dir(Path::new("/root/.ssh"))
            && g.is_dir(Path::new("/home/bob/.gnupg/private-keys-v1.d"))
    );
    assert_eq!(
        read(&mut g, "/home/alice/notes.txt"),
        "alice history\n",
        "other hard link intact"
    );
    assert!(g
        .lstat(Path::new("/home/bob/.bash_history"))
        .unwrap()
        .is_symlink());
    assert!(g
        .lstat(Path::new("/root/.zsh_history"))
        .unwrap()
        .is_symlink());
    assert_eq!(read(&mut g, "/etc/hostname"), "template\n");
    assert!(changed(&r, "cleanup-userdata").contains(&"scrubbed /root/.bash_history".to_string()));
    assert!(changed(&r, "cleanup-userdata")
        .contains(&"scrubbed /home/bob/.gnupg/private-keys-v1.d/sec ret\\nkey".to_string()));
    // cleanup-passwords (USERS computed before is kept)
    assert_eq!(
        read(&mut g, "/etc/shadow"),
        "root:!:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\nalice:!:19000:0:99999:7:::\nbob:!:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n"
    );
    assert_eq!(r.meta.get("USERS"), Some("root alice"));
    assert!(!g.lexists(Path::new("/etc/shadow-")) && !g.lexists(Path::new("/etc/passwd-")));
    assert!(
        g.lexists(Path::new("/etc/passwd")),
        "remove-user-accounts is off by default"
    );
    // cleanup-cache
    assert!(!g.lexists(Path::new("/var/cache/apt/archives/foo.deb")));
    assert!(g.read_dir(Path::new("/var/cache/many")).unwrap().is_empty());
    assert!(g.is_dir(Path::new("/var/cache/apt/archives")));
    assert!(g
        .lstat(Path::new("/var/cache/shadow-link"))
        .unwrap()
        .is_symlink());
    // cleanup-tmp
    assert!(g.read_dir(Path::new("/tmp")).unwrap().is_empty());
    assert!(g.read_dir(Path::new("/var/tmp")).unwrap().is_empty());
    assert!(changed(&r, "cleanup-tmp")
        .iter()
        .any(|c| c == "removed /tmp/dir with space (and 2 objects below it)"));
    // cleanup-log
    for p in [
        "/var/log/syslog",
        "/var/log/apt/history.log",
        "/var/log/ro.log",
    ] {
        assert_eq!(g.lstat(Path::new(p)).unwrap().size, 0, "{p} emptied");
    }
    assert_eq!(
        g.lstat(Path::new("/var/log/ro.log")).unwrap().mode & 0o777,
        0o444
    );
    assert!(g
        .lstat(Path::new("/var/log/passwd-link"))
        .unwrap()
        .is_symlink());
    assert!(
        read(&mut g, "/etc/passwd").starts_with("root:x:0:0"),
        "symlink target untouched"
    );
    // cleanup-mail is off by default
    assert_eq!(read(&mut g, "/var/mail/alice"), "mail\n");
    // fix-acpid
    assert_eq!(
        read(&mut g, "/etc/acpi/events/powerbtn"),
        "# power button\nevent=button[ /]power\naction=/sbin/shutdown -h now\n\n### Edited by snf-image-creator ###\n"
    );
    // network
    assert!(!g.lexists(Path::new("/etc/udev/rules.d/70-persistent-net.rules")));
    assert!(g
        .read_dir(Path::new("/etc/NetworkManager/system-connections"))
        .unwrap()
        .is_empty());
    assert!(g.read_dir(Path::new("/var/lib/dhcp")).unwrap().is_empty());
    assert_eq!(
        read(&mut g, "/etc/sysctl.d/10-ipv6.conf"),
        "net.ipv6.conf.all.use_tempaddr  =   0\n"
    );
    assert_eq!(
        read(&mut g, "/etc/sysctl.conf"),
        "# sysctl\n#net.ipv6.conf.all.forwarding=1\nnet.ipv6.conf.default.use_tempaddr = 0\n"
    );
    assert!(g
        .lstat(Path::new("/etc/sysctl.d/99-sysctl.conf"))
        .unwrap()
        .is_symlink());
    // fstab: swap gone, root by UUID with its spacing and comment, unmounted /data commented out
    assert_eq!(
        read(&mut g, "/etc/fstab"),
        format!("# /etc/fstab: static file system information.\nUUID={ROOT_UUID}   /      ext4   errors=remount-ro 0 1   # root\n\nUUID=abcd /boot ext4 defaults 0 2\n  #/dev/sdb1 /data ext4 defaults 0 2\nproc /proc proc defaults 0 0\n")
    );
    // boot configuration
    assert_eq!(
        read(&mut g, "/etc/default/grub"),
        "GRUB_DEFAULT=0\nGRUB_TIMEOUT=10\nGRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\nGRUB_CMDLINE_LINUX=\"console=tty0 net.ifnames=0\"\n"
    );
    assert_eq!(
        read(&mut g, "/boot/grub/grub.cfg"),
        "set timeout=10\nmenuentry 'Debian' {\n\tlinux\t/boot/vmlinuz root=UUID=x ro quiet net.ifnames=0\n\tinitrd\t/boot/initrd.img\n}\n"
    );
    assert_eq!(
        read(&mut g, "/boot/extlinux/extlinux.conf"),
        format!("TIMEOUT 100\nLABEL linux\n  KERNEL /vmlinuz\n  append root=UUID={ROOT_UUID} ro net.ifnames=0\n")
    );
    // identity and state
    assert_eq!(g.read_dir(Path::new("/var/lib/cloud")).unwrap().len(), 1);
    assert!(g.is_file(Path::new("/var/lib/cloud/seed/nocloud/user-data")));
    assert!(
        !g.lexists(Path::new("/etc/ssh/ssh_host_ed25519_key"))
            && !g.lexists(Path::new("/etc/ssh/ssh_host_ed25519_key.pub"))
    );
    assert!(g.is_file(Path::new("/etc/ssh/sshd_config")));
    assert!(!g.lexists(Path::new("/var/lib/systemd/random-seed")));
    // remove-lvm-system-devices
    assert!(!g.lexists(Path::new("/etc/lvm/devices/system.devices")));
    assert!(g.is_dir(Path::new("/etc/lvm/devices")));
    assert_eq!(g.lstat(Path::new("/etc/machine-id")).unwrap().size, 0);
    assert!(g
        .lstat(Path::new("/var/lib/dbus/machine-id"))
        .unwrap()
        .is_symlink());
    assert!(g.is_file(Path::new("/.autorelabel")));
    drop(g);

    // Scrubbed data is gone from the whole image; merely deleted data is not (which is
    // what makes this check meaningful).
    let raw = fs::read(&image).unwrap();
    let has = |m: &str| raw.windows(m.len()).any(|w| w == m.as_bytes());
    assert!(!has(HISTORY_MARKER), "shell history scrubbed");
    assert!(!has(KEY_MARKER), "private key scrubbed");
    assert!(
        !has(HASH_MARKER),
        "password hashes scrubbed from shadow and shadow-"
    );
    assert!(
        has(CACHE_MARKER),
        "a removed cache file's data stays (not scrubbed)"
    );
}

#[test]
fn dry_run_writes_nothing_and_lists_what_a_real_run_does() {
    let (_dir, image) = fixture();
    let params = Params::for_family(OsFamily::Linux);
    let before = fs::read(&image).unwrap();
    let mut reg = Registry::for_family(OsFamily::Linux);
    reg.enable("remove-user-accounts").unwrap();
    reg.enable("cleanup-mail").unwrap();
    let dry = run(&image, &mut reg.clone(), &params, linux_meta(), true);
    assert!(
        fs::read(&image).unwrap() == before,
        "a dry run leaves the image byte for byte"
    );
    assert!(dry
        .rec
        .details()
        .iter()
        .any(|d| d.contains("would have removed")));
    let real = run(&image, &mut reg, &params, linux_meta(), false);
    assert_e2fsck_clean(&image, 0, "the image");
    let list = |r: &Run| -> Vec<(String, Vec<_>)> {
        r.reports
            .iter()
            .map(|x| (x.name.to_string(), x.changes.changes.clone()))
            .collect()
    };
    let (d, r) = (list(&dry), list(&real));
    assert_eq!(d.len(), r.len());
    for (a, b) in d.iter().zip(&r) {
        assert!(
            a == b,
            "dry run of {} differs:\n{:?}\n{:?}",
            a.0,
            a.1.iter().take(20).collect::<Vec<_>>(),
            b.1.iter().take(20).collect::<Vec<_>>()
        );
    }
    assert!(list(&real).iter().map(|(_, c)| c.len()).sum::<usize>() > 3000);
}

#[test]
fn remove_user_accounts_uses_the_guest_uid_range() {
    let (_dir, image) = fixture();
    let params = Params::for_family(OsFamily::Linux);
    let mut reg = Registry::for_family(OsFamily::Linux);
    reg.disable_all();
    reg.enable("remove-user-accounts").unwrap();
    let r = run(&image, &mut reg, &params, linux_meta(), false);
    assert_e2fsck_clean(&image, 0, "the image");
    let mut g = open(&image, false);
    assert_eq!(
        read(&mut g, "/etc/passwd"),
        "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
    );
    assert!(
        !read(&mut g, "/etc/shadow").contains("alice")
            && read(&mut g, "/etc/shadow").contains("nobody")
    );
    assert_eq!(read(&mut g, "/etc/group"), "root:x:0:\nsudo:x:27:\n");
    assert_eq!(read(&mut g, "/etc/gshadow"), "root:*::\nsudo:*::\n");
    assert!(!g.lexists(Path::new("/home/alice")) && !g.lexists(Path::new("/home/bob")));
    assert_eq!(r.meta.get("USERS"), Some("root"));
    assert!(changed(&r, "remove-user-accounts").contains(&"metadata USERS=root".to_string()));
}

#[test]
fn missing_files_are_notes_not_errors() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    fs::create_dir_all(tree.join("etc")).unwrap();
    write_file(&tree, "/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n");
    write_symlink(&tree, "/tmp", "/etc"); // a /tmp that is a symlink must not empty /etc
    let image = dir.path().join("disk.img");
    mkfs(&tree, &image);
    let params = Params::for_family(OsFamily::Linux);
    let mut reg = Registry::for_family(OsFamily::Linux);
    reg.enable("remove-user-accounts").unwrap();
    let r = run(&image, &mut reg, &params, linux_meta(), false);
    assert_e2fsck_clean(&image, 0, "the image");
    let notes: Vec<String> = r
        .reports
        .iter()
        .flat_map(|x| x.changes.notes.clone())
        .collect();
    assert!(
        notes.iter().any(|n| n == "File: `/etc/shadow' is missing"),
        "{notes:?}"
    );
    assert!(
        notes.iter().any(|n| n.contains("/tmp is not a directory")),
        "{notes:?}"
    );
    let mut g = open(&image, false);
    assert!(g.is_file(Path::new("/etc/passwd")));
    // Only the sysctl settings were created; nothing else was invented.
    let all: Vec<_> = r
        .reports
        .iter()
        .flat_map(|x| x.changes.changes.clone())
        .collect();
    assert!(
        all.iter()
            .all(|c| c.action == Action::Created && c.path == "/etc/sysctl.conf"),
        "{all:?}"
    );
}

#[test]
fn unsupported_media_run_nothing() {
    let (_dir, image) = fixture();
    let before = fs::read(&image).unwrap();
    let mut meta = linux_meta();
    meta.insert("UNSUPPORTED", "The media contains logical volumes")
        .unwrap();
    let params = Params::for_family(OsFamily::Unsupported);
    let mut reg = Registry::for_family(OsFamily::Unsupported);
    let r = run(&image, &mut reg, &params, meta, false);
    assert!(r.reports.is_empty());
    assert!(r
        .rec
        .warnings()
        .iter()
        .any(|w| w == sysprep::UNSUPPORTED_MESSAGE));
    assert!(fs::read(&image).unwrap() == before);
    let mut m = Metadata::new();
    sysprep::mark_unsupported(&mut m);
    assert_eq!(m.get("EXCLUDE_ALL_TASKS"), Some("yes"));
}

#[test]
fn cloud_init_users_are_renamed_and_root_enabled() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    write_file(&tree, "/etc/cloud/cloud.cfg", "users:\n  - default\ndisable_root: true\nsystem_info:\n  default_user:\n    name: debian\n    groups: [sudo]\n");
    write_file(
        &tree,
        "/etc/cloud/cloud.cfg.d/90_dpkg.cfg",
        "datasource_list: [ NoCloud, None ]\n",
    );
    let image = dir.path().join("disk.img");
    mkfs(&tree, &image);
    let mut meta = linux_meta();
    meta.insert("CLOUD_INIT", "yes").unwrap();
    meta.insert("USERS", "debian").unwrap();
    let mut params = Params::for_family(OsFamily::Linux);
    params.set_assignment("DEFAULT_USER=synnefo").unwrap();
    let mut reg = Registry::for_family(OsFamily::Linux);
    reg.disable_all();
    reg.select(
        &[],
        &[
            "rename-default-cloud-init-user".into(),
            "enable-root-in-cloud-init".into(),
        ],
    )
    .unwrap();
    let r = run(&image, &mut reg, &params, meta, false);
    assert_e2fsck_clean(&image, 0, "the image");
    let mut g = open(&image, false);
    let cfg: serde_yaml::Value =
        serde_yaml::from_str(&read(&mut g, "/etc/cloud/cloud.cfg")).unwrap();
    assert_eq!(cfg["system_info"]["default_user"]["name"], "synnefo");
    assert_eq!(cfg["system_info"]["default_user"]["groups"][0], "sudo");
    assert!(read(&mut g, "/etc/cloud/cloud.cfg.bak").contains("name: debian"));
    let drop_in: serde_yaml::Value = serde_yaml::from_str(&read(
        &mut g,
        "/etc/cloud/cloud.cfg.d/60_snf-image-creator-EnableRoot.cfg",
    ))
    .unwrap();
    assert_eq!(drop_in["disable_root"], false);
    assert_eq!(
        drop_in["users"],
        serde_yaml::from_str::<serde_yaml::Value>("[default, root]").unwrap()
    );
    assert_eq!(r.meta.get("CLOUD_INIT_DEFAULT_USER"), Some("synnefo"));
    assert_eq!(r.meta.get("USERS"), Some("root synnefo"));
}
