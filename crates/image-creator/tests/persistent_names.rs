//! `use-persistent-block-device-names` on every boot and mount configuration it covers
//! (issue 18: images that boot on any disk bus), run on a guest tree served by the
//! directory backend.

use std::path::{Path, PathBuf};

use image_creator::metadata::Metadata;
use image_creator::sysprep::{
    self, GuestOs, MountedFs, OsFamily, Params, Registry, SysprepContext,
};
use snf_guestfs::assemble::{PartitionDesc, ProbedPartition};
use snf_guestfs::probe::{FsType, Probe};
use snf_guestfs::{DirFs, GuestFs};
use snf_testkit::fixture::write_file;
use snf_testkit::report::Recorder;

const ROOT_UUID: &str = "0f3c9e2a-6b1d-4c55-9a7e-2d1f00c0ffee";
const SWAP_UUID: &str = "5a4e1d2c-0000-4c55-9a7e-2d1f00c0aaaa";
const LUKS_UUID: &str = "7b7b7b7b-1111-4c55-9a7e-2d1f00c0bbbb";
const ESP_UUID: &str = "5A0F-0E51";

fn part(number: u32, fs_type: FsType, uuid: &str) -> ProbedPartition {
    ProbedPartition {
        desc: PartitionDesc {
            number,
            ..PartitionDesc::default()
        },
        probe: Probe {
            fs_type,
            uuid: Some(uuid.into()),
            label: None,
        },
    }
}

/// Runs the operation alone on the tree at `root`: the root filesystem (partition 2)
/// and the ESP (partition 1) mounted; partition 3 swap, partition 4 LUKS.
fn run_op(root: &Path, root_uuid: Option<&str>) -> Recorder {
    let mut g = GuestFs::new(Box::new(DirFs::open(root, true).unwrap()), "tree");
    let mut meta = Metadata::new();
    meta.insert("OSFAMILY", "linux").unwrap();
    let os = GuestOs::from_metadata(&meta);
    let params = Params::for_family(OsFamily::Linux);
    let mut registry = Registry::for_family(OsFamily::Linux);
    registry.disable_all();
    registry
        .enable("use-persistent-block-device-names")
        .unwrap();
    let rec = Recorder::default();
    let mut ctx = SysprepContext::new(&mut g, &os, &mut meta, &params, &rec)
        .with_filesystems(vec![
            MountedFs {
                mountpoint: PathBuf::from("/"),
                uuid: root_uuid.map(String::from),
            },
            MountedFs {
                mountpoint: PathBuf::from("/boot/efi"),
                uuid: Some(ESP_UUID.into()),
            },
        ])
        .with_partitions(vec![
            part(1, FsType::Vfat, ESP_UUID),
            part(2, FsType::Ext4, root_uuid.unwrap_or("x")),
            part(3, FsType::Swap, SWAP_UUID),
            part(4, FsType::Luks1, LUKS_UUID),
        ]);
    sysprep::run_enabled(&mut registry, &mut ctx).unwrap();
    rec
}

fn read(root: &Path, p: &str) -> String {
    std::fs::read_to_string(root.join(p.trim_start_matches('/'))).unwrap()
}

#[test]
fn every_kernel_command_line_names_the_root_by_uuid() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_file(
        root,
        "/etc/fstab",
        "/dev/vda2 / ext4 defaults 0 1\n/dev/vda1 /boot/efi vfat umask=0077 0 1\n\
         /dev/vda3 none swap sw 0 0\n/dev/sdb1 /data ext4 defaults 0 2\n",
    );
    let grub_cfg = "menuentry 'Debian' {\n\tlinux /vmlinuz root=/dev/vda2 ro resume=/dev/vda3 quiet\n\
                    \tinitrd /initrd.img\n}\nmenuentry 'old' {\n\tlinux16 /vmlinuz root=/dev/sda2\n}\n";
    write_file(root, "/boot/grub/grub.cfg", grub_cfg);
    write_file(
        root,
        "/boot/grub2/grub.cfg",
        "menuentry 'RHEL' {\n  linuxefi /vmlinuz root=/dev/nvme0n1p2 ro\n}\n",
    );
    // The ESP: a real config with kernel lines, and a stub without.
    write_file(
        root,
        "/boot/efi/EFI/fedora/grub.cfg",
        "menuentry 'F' {\n linuxefi /vmlinuz root=/dev/sda2\n}\n",
    );
    let stub =
        "search.fs_uuid x root\nset prefix=($root)'/boot/grub'\nconfigfile $prefix/grub.cfg\n";
    write_file(root, "/boot/efi/EFI/debian/grub.cfg", stub);
    write_file(
        root,
        "/boot/loader/entries/abc-6.1.conf",
        "title Fedora\nlinux /vmlinuz\noptions root=/dev/sda2 ro rhgb\n",
    );
    let mut env = String::from("# GRUB Environment Block\nkernelopts=root=/dev/sda2 ro\n");
    env.push_str(&"#".repeat(1024 - env.len()));
    write_file(root, "/boot/grub2/grubenv", &env);
    write_file(root, "/etc/kernel/cmdline", "root=/dev/sda2 ro\n");
    write_file(
        root,
        "/boot/grub/menu.lst",
        "default 0\ntitle Debian\nroot (hd0,1)\nkernel /vmlinuz root=/dev/hda2 ro\n",
    );
    write_file(
        root,
        "/boot/extlinux/extlinux.conf",
        "LABEL l\n  APPEND root=/dev/sda2 resume=/dev/sdc1\n",
    );
    write_file(
        root,
        "/etc/default/grub",
        "GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX=\"console=ttyS0 root=/dev/vda2\"\n\
         GRUB_CMDLINE_LINUX_DEFAULT=\"quiet resume=/dev/vda3\"\nGRUB_DISABLE_LINUX_UUID=true\n\
         GRUB_DEVICE=/dev/vda2\nexport GRUB_DEVICE_BOOT=/dev/vda1\n",
    );
    write_file(
        root,
        "/etc/crypttab",
        "# <target> <source> <key> <options>\nhome /dev/vda4 none luks\nother /dev/sdb2 none luks\n",
    );
    write_file(
        root,
        "/etc/initramfs-tools/conf.d/resume",
        "RESUME=/dev/vda3\n",
    );

    let rec = run_op(root, Some(ROOT_UUID));
    let r = format!("root=UUID={ROOT_UUID}");
    let s = format!("resume=UUID={SWAP_UUID}");

    assert_eq!(
        read(root, "/etc/fstab"),
        format!(
            "UUID={ROOT_UUID} / ext4 defaults 0 1\nUUID={ESP_UUID} /boot/efi vfat umask=0077 0 1\n\
             UUID={SWAP_UUID} none swap sw 0 0\n#/dev/sdb1 /data ext4 defaults 0 2\n"
        )
    );
    assert_eq!(
        read(root, "/boot/grub/grub.cfg"),
        format!(
            "menuentry 'Debian' {{\n\tlinux /vmlinuz {r} ro {s} quiet\n\tinitrd /initrd.img\n}}\n\
             menuentry 'old' {{\n\tlinux16 /vmlinuz {r}\n}}\n"
        )
    );
    assert_eq!(
        read(root, "/boot/grub2/grub.cfg"),
        format!("menuentry 'RHEL' {{\n  linuxefi /vmlinuz {r} ro\n}}\n")
    );
    assert_eq!(
        read(root, "/boot/efi/EFI/fedora/grub.cfg"),
        format!("menuentry 'F' {{\n linuxefi /vmlinuz {r}\n}}\n")
    );
    assert_eq!(read(root, "/boot/efi/EFI/debian/grub.cfg"), stub);
    assert_eq!(
        read(root, "/boot/loader/entries/abc-6.1.conf"),
        format!("title Fedora\nlinux /vmlinuz\noptions {r} ro rhgb\n")
    );
    let env = read(root, "/boot/grub2/grubenv");
    assert_eq!(env.len(), 1024);
    assert!(env.starts_with(&format!("# GRUB Environment Block\nkernelopts={r} ro\n###")));
    assert_eq!(read(root, "/etc/kernel/cmdline"), format!("{r} ro\n"));
    assert_eq!(
        read(root, "/boot/grub/menu.lst"),
        format!("default 0\ntitle Debian\nroot (hd0,1)\nkernel /vmlinuz {r} ro\n")
    );
    // /dev/sdc1 is no partition of the image: dropped.
    assert_eq!(
        read(root, "/boot/extlinux/extlinux.conf"),
        format!("LABEL l\n  APPEND {r}\n")
    );
    assert_eq!(
        read(root, "/etc/default/grub"),
        format!(
            "GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX=\"console=ttyS0 {r}\"\n\
             GRUB_CMDLINE_LINUX_DEFAULT=\"quiet {s}\"\n#GRUB_DISABLE_LINUX_UUID=true\n\
             #GRUB_DEVICE=/dev/vda2\n#export GRUB_DEVICE_BOOT=/dev/vda1\n"
        )
    );
    assert_eq!(
        read(root, "/etc/crypttab"),
        format!(
            "# <target> <source> <key> <options>\nhome UUID={LUKS_UUID} none luks\n\
             other /dev/sdb2 none luks\n"
        )
    );
    assert!(
        rec.warned("/etc/crypttab: `/dev/sdb2'"),
        "{:?}",
        rec.warnings()
    );
    assert!(
        rec.warned("/etc/initramfs-tools/conf.d/resume: names `/dev/vda3'"),
        "{:?}",
        rec.warnings()
    );
    assert_eq!(rec.warnings().len(), 2, "{:?}", rec.warnings());
}

#[test]
fn a_root_without_uuid_and_an_unknown_loader_are_warnings_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_file(root, "/etc/fstab", "/dev/sda1 / ext4 defaults 0 1\n");
    write_file(
        root,
        "/boot/grub/grub.cfg",
        "menuentry 'x' {\n\tlinux /vmlinuz root=/dev/sda1 ro\n}\n",
    );
    let rec = run_op(root, None);
    assert!(
        rec.warned("/boot/grub/grub.cfg: `root=/dev/sda1' left as is"),
        "{:?}",
        rec.warnings()
    );
    assert!(read(root, "/boot/grub/grub.cfg").contains("root=/dev/sda1"));

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_file(root, "/etc/fstab", "UUID=x / ext4 defaults 0 1\n");
    let rec = run_op(root, Some(ROOT_UUID));
    assert!(
        rec.warned("No known boot loader configuration"),
        "{:?}",
        rec.warnings()
    );
}

#[test]
fn persistent_names_and_lvm_roots_are_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let fstab = "/dev/mapper/vg-root / ext4 defaults 0 1\nUUID=b /boot ext4 defaults 0 2\n";
    let cfg = "menuentry 'x' {\n\tlinux /vmlinuz root=/dev/mapper/vg-root ro resume=UUID=s\n}\n";
    let dflt = "GRUB_CMDLINE_LINUX=\"\"\nGRUB_DISABLE_LINUX_UUID=false\n";
    write_file(root, "/etc/fstab", fstab);
    write_file(root, "/boot/grub/grub.cfg", cfg);
    write_file(root, "/etc/default/grub", dflt);
    let rec = run_op(root, Some(ROOT_UUID));
    assert_eq!(read(root, "/etc/fstab"), fstab);
    assert_eq!(read(root, "/boot/grub/grub.cfg"), cfg);
    assert_eq!(read(root, "/etc/default/grub"), dflt);
    assert!(rec.warnings().is_empty(), "{:?}", rec.warnings());
}
