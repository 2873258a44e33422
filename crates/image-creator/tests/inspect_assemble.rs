//! Multi-partition guests assembled from their fstab (every source form), and the media
//! inspection refuses with one-sentence reasons.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use image_creator::inspect::inspect;
use snf_guestfs::NewNode;

const EFI_ID: &str = "ABCD1234";
const EFI_UUID: &str = "ABCD-1234";
const BOOT_UUID: &str = "b0000000-0000-4000-8000-000000000002";
const ROOT_UUID: &str = "70000000-0000-4000-8000-000000000003";
const HOME_UUID: &str = "40000000-0000-4000-8000-000000000004";
const SWAP_UUID: &str = "50000000-0000-4000-8000-000000000005";

/// A GPT (or MBR) disk: 1 EFI (FAT), 2 /boot, 3 root, 4 /home, 5 swap, with the root's
/// fstab naming the others by `boot`, `efi`, `home` (and the root by `root`).
fn four_mounts(dir: &Path, gpt: bool, root: &str, boot: &str, efi: &str, home: &str) -> PathBuf {
    let fstab = format!(
        "# /etc/fstab\n{root} / ext4 errors=remount-ro 0 1\n{efi} /boot/efi vfat umask=0077 0 1\n\
         {boot} /boot ext4 defaults 0 2\n{home} /home/ ext4 defaults 0 2\n\
         UUID={SWAP_UUID} none swap sw 0 0\nproc /proc proc defaults 0 0\n\
         /dev/sdb1 /data ext4 defaults,nofail 0 2\n"
    );
    let r = Tree::new(dir, "root");
    r.linux_base(&fstab)
        .file(
            "/etc/os-release",
            "ID=debian\nVERSION_ID=\"12\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n",
        )
        .dir("/data");
    let b = Tree::new(dir, "boot");
    b.file("/grub/grub.cfg", "set timeout=5\n")
        .file("/config-6.1.0-18-amd64", "")
        .dir("/efi");
    let e = Tree::new(dir, "efi");
    e.file("/EFI/debian/grubx64.efi", "MZ");
    let h = Tree::new(dir, "home");
    h.file("/user/.profile", "# profile\n");
    make_disk(
        dir,
        gpt,
        &[
            Part {
                size_mib: 16,
                name: "EFI system",
                content: Content::Fat {
                    tree: Some(&e),
                    id: EFI_ID,
                    label: "ESP",
                },
            },
            Part {
                size_mib: 16,
                name: "boot",
                content: Content::Ext4 {
                    tree: &b,
                    uuid: BOOT_UUID,
                    label: Some("BOOT"),
                },
            },
            Part {
                size_mib: 24,
                name: "root",
                content: Content::Ext4 {
                    tree: &r,
                    uuid: ROOT_UUID,
                    label: Some("root"),
                },
            },
            Part {
                size_mib: 16,
                name: "home",
                content: Content::Ext4 {
                    tree: &h,
                    uuid: HOME_UUID,
                    label: Some("my home"),
                },
            },
            Part {
                size_mib: 8,
                name: "swap",
                content: Content::Swap { uuid: SWAP_UUID },
            },
        ],
    )
}

fn check_tree(img: &Path, table: &str) {
    let i = inspect_disk(img);
    assert_eq!(i.unsupported, None);
    assert_eq!(i.root_partition, Some(3));
    let mounts: Vec<(String, u32)> = i
        .mounts
        .iter()
        .map(|m| (m.mountpoint.display().to_string(), m.partition))
        .collect();
    assert_eq!(
        mounts,
        vec![
            ("/".into(), 3),
            ("/boot".into(), 2),
            ("/home".into(), 4),
            ("/boot/efi".into(), 1)
        ]
    );
    assert_eq!(i.mounts[3].uuid.as_deref(), Some(EFI_UUID));
    let mut g = i.guest.expect("guest tree");
    assert_eq!(
        g.read_to_string(Path::new("/boot/grub/grub.cfg")).unwrap(),
        "set timeout=5\n"
    );
    assert_eq!(
        g.read(Path::new("/boot/efi/EFI/debian/grubx64.efi"))
            .unwrap(),
        b"MZ"
    );
    assert!(g.is_file(Path::new("/home/user/.profile")));
    assert_meta(
        &i.metadata,
        &[
            ("BOOTSTRAP", "none"),
            ("DESCRIPTION", "Debian GNU/Linux 12 (bookworm)"),
            ("GUI", "No GUI"),
            ("KERNEL", "6.1.0-18-amd64"),
            ("OS", "debian"),
            ("OSFAMILY", "linux"),
            ("PARTITION_TABLE", table),
            ("PASSWD_HASHING_METHOD", "sha512"),
            ("ROOT_PARTITION", "3"),
            ("SORTORDER", "7701200"),
            ("USERS", "root user"),
        ],
    );
}

#[test]
fn fstab_by_uuid_and_label() {
    let d = tempfile::tempdir().unwrap();
    let img = four_mounts(
        d.path(),
        true,
        &format!("UUID={ROOT_UUID}"),
        "LABEL=BOOT",
        &format!("UUID={EFI_UUID}"),
        &format!("UUID=\"{HOME_UUID}\""),
    );
    check_tree(&img, "gpt");
}

#[test]
fn fstab_by_partuuid_partlabel_and_disk_by_paths() {
    let d = tempfile::tempdir().unwrap();
    let img = four_mounts(
        d.path(),
        true,
        &format!("PARTUUID={}", part_guid(3).to_lowercase()),
        "PARTLABEL=boot",
        &format!("/dev/disk/by-uuid/{EFI_UUID}"),
        "/dev/disk/by-label/my\\x20home",
    );
    check_tree(&img, "gpt");
    let d = tempfile::tempdir().unwrap();
    let img = four_mounts(
        d.path(),
        true,
        "/dev/disk/by-partlabel/root",
        &format!("/dev/disk/by-partuuid/{}", part_guid(2)),
        "/dev/disk/by-label/ESP",
        &format!("PARTUUID={}", part_guid(4)),
    );
    check_tree(&img, "gpt");
}

#[test]
fn fstab_by_device_names() {
    for base in [
        "/dev/sda",
        "/dev/vda",
        "/dev/hda",
        "/dev/xvda",
        "/dev/nvme0n1p",
        "/dev/mmcblk0p",
    ] {
        let d = tempfile::tempdir().unwrap();
        let img = four_mounts(
            d.path(),
            true,
            &format!("{base}3"),
            &format!("{base}2"),
            &format!("{base}1"),
            &format!("{base}4"),
        );
        check_tree(&img, "gpt");
    }
}

#[test]
fn mbr_partuuid_and_writable_tree() {
    let d = tempfile::tempdir().unwrap();
    let img = four_mounts(
        d.path(),
        false,
        "PARTUUID=1234abcd-03",
        "PARTUUID=1234ABCD-02",
        &format!("UUID={EFI_UUID}"),
        &format!("UUID={HOME_UUID}"),
    );
    check_tree(&img, "msdos");

    // Opened read-write, each mount takes writes that survive a fresh inspection.
    let (parts, table) = partitions(&img);
    let i = inspect(&img, &parts, &table, true, &snf_core::report::Quiet).unwrap();
    let mut g = i.guest.unwrap();
    assert!(g.is_writable(Path::new("/boot/efi")).unwrap());
    g.write(
        Path::new("/boot/efi/EFI/debian/grub.cfg"),
        b"configfile x\n",
        NewNode::root(0o644),
    )
    .unwrap();
    g.write(Path::new("/home/user/new"), b"hi", NewNode::root(0o600))
        .unwrap();
    g.remove_all(Path::new("/tmp/nothing")).unwrap();
    drop(g.into_filesystems().unwrap());
    let mut g = inspect_disk(&img).guest.unwrap();
    assert_eq!(
        g.read(Path::new("/boot/efi/EFI/debian/grub.cfg")).unwrap(),
        b"configfile x\n"
    );
    assert_eq!(g.read(Path::new("/home/user/new")).unwrap(), b"hi");
}

#[test]
fn a_critical_mount_that_cannot_be_found_is_unsupported() {
    let d = tempfile::tempdir().unwrap();
    let img = four_mounts(
        d.path(),
        true,
        &format!("UUID={ROOT_UUID}"),
        "LABEL=BOOT",
        &format!("UUID={EFI_UUID}"),
        "UUID=99999999-0000-0000-0000-000000000000",
    );
    let i = inspect_disk(&img);
    assert_eq!(
        i.unsupported.as_deref(),
        Some("Unable to mount /home from UUID=99999999-0000-0000-0000-000000000000: no partition has UUID 99999999-0000-0000-0000-000000000000.")
    );
    assert!(i.guest.is_none());
    assert_eq!(i.metadata.get("UNSUPPORTED"), i.unsupported.as_deref());
    assert_eq!(i.metadata.get("OS"), Some("debian"));
}

fn unsupported(parts: &[Part<'_>], dir: &Path, reason: &str) {
    let img = make_disk(dir, true, parts);
    let i = inspect_disk(&img);
    assert_eq!(i.unsupported.as_deref(), Some(reason));
    assert!(i.guest.is_none());
    assert_meta(&i.metadata, &[("UNSUPPORTED", reason)]);
}

const NO_OS: &str = "Unable to detect any operating system on the media.";

#[test]
fn empty_disk_and_swap_only() {
    let d = tempfile::tempdir().unwrap();
    unsupported(
        &[Part {
            size_mib: 8,
            name: "p",
            content: Content::Empty,
        }],
        d.path(),
        NO_OS,
    );
    let d = tempfile::tempdir().unwrap();
    unsupported(
        &[Part {
            size_mib: 8,
            name: "swap",
            content: Content::Swap { uuid: SWAP_UUID },
        }],
        d.path(),
        NO_OS,
    );
}

#[test]
fn filesystem_without_an_os() {
    let d = tempfile::tempdir().unwrap();
    let t = Tree::new(d.path(), "data");
    t.file("/music/a.ogg", "x").file("/etc/motd", "hello\n");
    unsupported(
        &[Part {
            size_mib: 16,
            name: "data",
            content: Content::Ext4 {
                tree: &t,
                uuid: ROOT_UUID,
                label: None,
            },
        }],
        d.path(),
        NO_OS,
    );
}

#[test]
fn unknown_os() {
    let d = tempfile::tempdir().unwrap();
    let t = Tree::new(d.path(), "r");
    t.file("/etc/fstab", "/dev/sda1 / ext4 defaults 0 1\n");
    unsupported(
        &[Part {
            size_mib: 16,
            name: "r",
            content: Content::Ext4 {
                tree: &t,
                uuid: ROOT_UUID,
                label: None,
            },
        }],
        d.path(),
        "Unknown Operating System: nothing on the root filesystem (partition 1) identifies it.",
    );
}

#[test]
fn two_roots() {
    let d = tempfile::tempdir().unwrap();
    let a = Tree::new(d.path(), "a");
    a.linux_base(ROOT_FSTAB)
        .file("/etc/debian_version", "12.1\n");
    let b = Tree::new(d.path(), "b");
    b.linux_base(ROOT_FSTAB)
        .file("/etc/alpine-release", "3.18.0\n");
    unsupported(
        &[
            Part {
                size_mib: 16,
                name: "a",
                content: Content::Ext4 {
                    tree: &a,
                    uuid: ROOT_UUID,
                    label: None,
                },
            },
            Part {
                size_mib: 16,
                name: "b",
                content: Content::Ext4 {
                    tree: &b,
                    uuid: HOME_UUID,
                    label: None,
                },
            },
        ],
        d.path(),
        "Multiple operating systems found on the media.",
    );
}

#[test]
fn lvm_physical_volume() {
    let d = tempfile::tempdir().unwrap();
    let b = Tree::new(d.path(), "boot");
    b.file("/grub/grub.cfg", "");
    unsupported(
        &[
            Part {
                size_mib: 16,
                name: "boot",
                content: Content::Ext4 {
                    tree: &b,
                    uuid: BOOT_UUID,
                    label: None,
                },
            },
            Part {
                size_mib: 8,
                name: "pv",
                content: Content::LvmLabel,
            },
        ],
        d.path(),
        "Unable to detect any operating system on the media: partition 2 (an LVM physical \
         volume: label in sector 1 has a bad checksum; ignored) cannot be read.",
    );
}

/// An empty xfs filesystem is opened (through the appliance) and holds no system.
#[test]
fn xfs_root() {
    let d = tempfile::tempdir().unwrap();
    unsupported(
        &[Part {
            size_mib: 320,
            name: "root",
            content: Content::Xfs,
        }],
        d.path(),
        "Unable to detect any operating system on the media.",
    );
}

/// Inspecting an image file needs no privileges: the multi-partition guest is inspected
/// again by this test binary re-run as uid/gid 65534.
#[test]
fn inspection_works_unprivileged() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    let img = four_mounts(
        d.path(),
        true,
        &format!("UUID={ROOT_UUID}"),
        "LABEL=BOOT",
        &format!("UUID={EFI_UUID}"),
        &format!("UUID={HOME_UUID}"),
    );
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&img, std::fs::Permissions::from_mode(0o644)).unwrap();
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&exe)
        .args(["--exact", "unprivileged_half", "--ignored", "--nocapture"])
        .env("SNF_UNPRIVILEGED_IMAGE", &img)
        .output()
        .expect("cannot run setpriv (util-linux)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("1 passed"),
        "unprivileged inspection failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "run by inspection_works_unprivileged as an unprivileged user"]
fn unprivileged_half() {
    let img = std::env::var_os("SNF_UNPRIVILEGED_IMAGE").expect("SNF_UNPRIVILEGED_IMAGE");
    assert!(!rustix::process::geteuid().is_root());
    check_tree(Path::new(&img), "gpt");
}
