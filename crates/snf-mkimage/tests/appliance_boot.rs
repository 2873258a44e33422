//! The suite's Debian guest with its root on xfs (`debian12-xfs.raw`) and in a btrfs
//! subvolume (`debian12-btrfs.raw`, `@rootfs` as Debian's installer makes it), prepared by
//! the binary with the default operations (through the libguestfs appliance), then read
//! back with independent tools only (the host kernel's read-only mount, `xfs_repair -n`,
//! `btrfs check --readonly`, sfdisk) and booted under qemu/TCG to a login prompt. TCG
//! is slow: one xfs and one btrfs boot, no more.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use snf_testkit::fixture::run as run_tool;
use snf_testkit::{debian_guest_info, partitions};

/// One image of `guest.json`'s `images` (the testkit knows the older ones by type; the
/// xfs and btrfs entries are read here).
struct Layout {
    file: String,
    root_partition: u32,
    swap_partition: u32,
    label_id: String,
    root_uuid: String,
    swap_uuid: String,
    subvolume: Option<String>,
}

fn layout(kind: &str) -> Layout {
    let guest = debian_guest_info();
    let text = fs::read_to_string(guest.dir.join("guest.json")).unwrap();
    let info: serde_json::Value = serde_json::from_str(&text).unwrap();
    let img = &info["images"][kind];
    let s = |k: &str| {
        img[k]
            .as_str()
            .unwrap_or_else(|| panic!("guest.json: images.{kind}.{k} missing"))
            .to_string()
    };
    let n = |k: &str| {
        img[k]
            .as_u64()
            .unwrap_or_else(|| panic!("guest.json: images.{kind}.{k} missing")) as u32
    };
    Layout {
        file: s("file"),
        root_partition: n("root_partition"),
        swap_partition: n("swap_partition"),
        label_id: s("label_id"),
        root_uuid: s("root_uuid"),
        swap_uuid: s("swap_uuid"),
        subvolume: img["root_subvolume"].as_str().map(String::from),
    }
}

/// `snf-mkimage` with the defaults; returns the output and the run's stderr.
fn prepare(src: &Path, dir: &Path) -> (PathBuf, String) {
    let out = dir.join("out.raw");
    let run = Command::new(bin())
        .arg("--tmpdir")
        .arg(dir)
        .arg("-o")
        .arg(&out)
        .arg(src)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = stderr(&run);
    assert!(run.status.success(), "{err}");
    (out, err)
}

/// The image properties of `out`'s `.meta`, as strings.
fn props(out: &Path) -> BTreeMap<String, String> {
    let text = fs::read_to_string(format!("{}.meta", out.display())).unwrap();
    let meta: serde_json::Value = serde_json::from_str(&text).unwrap();
    meta["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("no properties: {text}"))
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_str().unwrap_or_else(|| panic!("{k}: {v}")).into(),
            )
        })
        .collect()
}

/// What both images' metadata must be, key for key: the source is Debian 12 with root
/// and user (the passwords still set when it was examined), sshd, GRUB 2, the cloud
/// kernel, and the trailing swap partition removed and recorded.
fn expected_props(lay: &Layout) -> BTreeMap<String, String> {
    let guest = debian_guest_info();
    [
        ("OSFAMILY", "linux".to_string()),
        ("OS", "debian".into()),
        ("DESCRIPTION", "Debian GNU/Linux 12 (bookworm)".into()),
        ("BOOTSTRAP", "grub2".into()),
        ("PARTITION_TABLE", "msdos".into()),
        ("ROOT_PARTITION", lay.root_partition.to_string()),
        ("USERS", "root user".into()),
        ("SORTORDER", "7701215".into()),
        ("GUI", "No GUI".into()),
        ("KERNEL", kernel()),
        (
            "REMOTE_CONNECTION",
            "ssh:port=22,user=root ssh:port=22,user=user".into(),
        ),
        ("PASSWD_HASHING_METHOD", "sha512".into()),
        (
            "SWAP",
            format!("{}:{}", lay.swap_partition, guest.info.swap_mib),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The guest's kernel release, as the LVM image (same tree) records it.
fn kernel() -> String {
    debian_guest_info().lvm().kernel.clone()
}

/// A read-only loop mount of partition `number` of `img` by the host kernel, unmounted
/// on drop.
struct HostMount(tempfile::TempDir);

impl HostMount {
    fn new(img: &Path, number: u32, opts: &str) -> HostMount {
        let (_, parts) = partitions(img).unwrap();
        let p = parts.iter().find(|p| p.number == number).unwrap();
        let dir = tempfile::tempdir().unwrap();
        require("mount");
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
        HostMount(dir)
    }

    fn read(&self, guest: &str) -> String {
        let path = self.0.path().join(guest.trim_start_matches('/'));
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("{guest}: {e}"))
    }

    fn exists(&self, guest: &str) -> bool {
        self.0
            .path()
            .join(guest.trim_start_matches('/'))
            .symlink_metadata()
            .is_ok()
    }
}

impl Drop for HostMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

/// A read-only loop device over partition `number` of `img`, detached on drop.
struct PartLoop(String);

impl PartLoop {
    fn new(img: &Path, number: u32) -> PartLoop {
        let (_, parts) = partitions(img).unwrap();
        let p = parts.iter().find(|p| p.number == number).unwrap();
        require("losetup");
        let dev = run_tool(
            Command::new("losetup")
                .args(["-r", "-f", "--show", "-o"])
                .arg((p.start * 512).to_string())
                .arg("--sizelimit")
                .arg((p.size * 512).to_string())
                .arg(img),
        );
        PartLoop(dev.trim().to_string())
    }
}

impl Drop for PartLoop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

/// Everything both outputs must show, read without our code: one partition left (the
/// swap is gone, the table otherwise kept), the default operations' effects on the
/// files, and the image booting to its login prompt.
fn check_output(out: &Path, lay: &Layout, mount_opts: &str) {
    let guest = debian_guest_info();
    let (label, parts) = partitions(out).unwrap();
    assert_eq!(label, "dos");
    assert_eq!(
        parts.iter().map(|p| p.number).collect::<Vec<_>>(),
        [lay.root_partition],
        "{parts:?}"
    );
    let dump = run_tool(Command::new("sfdisk").arg("-d").arg(out));
    assert!(
        dump.contains(&format!("label-id: {}", lay.label_id)),
        "{dump}"
    );
    assert!(dump.contains("bootable"), "{dump}");

    let m = HostMount::new(out, lay.root_partition, mount_opts);
    let fstab = m.read("/etc/fstab");
    assert!(
        fstab.contains(&format!("UUID={} /", lay.root_uuid)),
        "{fstab}"
    );
    assert!(!fstab.contains(&lay.swap_uuid), "swap entry kept: {fstab}");
    let shadow = m.read("/etc/shadow");
    for line in shadow.lines() {
        let hash = line.split(':').nth(1).unwrap_or("");
        assert!(!hash.starts_with("$6$"), "a password kept: {line}");
    }
    assert_eq!(m.read("/etc/machine-id"), "");
    assert!(!m.exists("/etc/ssh/ssh_host_ed25519_key"));
    assert!(!m.exists("/etc/udev/rules.d/70-persistent-net.rules"));
    assert!(
        !m.exists("/root/.bash_history")
            || !m
                .read("/root/.bash_history")
                .contains("secret-command-line"),
        "root's history kept"
    );
    let debs = fs::read_dir(m.0.path().join("var/cache/apt/archives"))
        .map(|d| {
            d.filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".deb"))
            })
            .count()
        })
        .unwrap_or(0);
    assert_eq!(debs, 0, "the apt cache kept");
    let grub = m.read("/boot/grub/grub.cfg");
    assert!(
        grub.contains(&format!("root=UUID={}", lay.root_uuid)),
        "{grub}"
    );
    if let Some(subvol) = &lay.subvolume {
        assert!(
            grub.contains(&format!("rootflags=subvol={subvol}")),
            "{grub}"
        );
    }
    // The secret's file is the guest's, kept: only its deleted copies must not leak.
    assert!(m
        .read(&guest.info.secret_path)
        .contains(&guest.info.secret_marker));
    drop(m);
    assert_boots(out);
}

#[test]
fn the_debian_xfs_guest_is_prepared_with_the_defaults_and_boots() {
    let guest = debian_guest_info();
    let lay = layout("xfs");
    let src = guest.dir.join(&lay.file);
    let dir = tempfile::tempdir_in(snf_testkit::target_dir()).unwrap();
    let (out, err) = prepare(&src, dir.path());
    assert!(
        err.contains("xfs"),
        "the run does not say xfs is not shrunk:\n{err}"
    );
    assert_eq!(props(&out), expected_props(&lay), "{err}");
    {
        let dev = PartLoop::new(&out, lay.root_partition);
        require("xfs_repair");
        run_tool(Command::new("xfs_repair").arg("-n").arg(&dev.0));
    }
    check_output(&out, &lay, ",norecovery");
}

#[test]
fn the_debian_btrfs_subvolume_guest_is_prepared_with_the_defaults_and_boots() {
    let guest = debian_guest_info();
    let lay = layout("btrfs");
    let subvol = lay
        .subvolume
        .clone()
        .expect("guest.json: no root_subvolume");
    let src = guest.dir.join(&lay.file);
    let dir = tempfile::tempdir_in(snf_testkit::target_dir()).unwrap();
    let (out, err) = prepare(&src, dir.path());
    assert_eq!(props(&out), expected_props(&lay), "{err}");
    {
        let dev = PartLoop::new(&out, lay.root_partition);
        require("btrfs");
        run_tool(
            Command::new("btrfs")
                .args(["check", "--readonly"])
                .arg(&dev.0),
        );
    }
    check_output(&out, &lay, &format!(",subvol={subvol}"));
}
