//! The real Debian 12 guest: what it contains, that it boots, and that a copy shrunk
//! the way snf-mkimage shrinks (trailing swap removed, cut to last partition + 1 MiB)
//! deploys the way snf-image deploys and boots again. Needs root and qemu-system-x86_64.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use snf_testkit::fixture::{run, MIB};
use snf_testkit::{
    boot_check, debian_guest, debian_guest_info, deploy, ext_superblock, guest_file, guest_ls,
    partitions, probe_partition, Table,
};

/// Generous: TCG on two cores shared with parallel builds and tests.
const BOOT_TIMEOUT: Duration = Duration::from_secs(600);

const GPT_BIOS_BOOT: &str = "21686148-6449-6E6F-744E-656564454649";
const GPT_LINUX: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";
const GPT_SWAP: &str = "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F";

fn text(disk: &Path, part: u32, path: &str) -> String {
    let bytes = guest_file(disk, part, path)
        .unwrap()
        .unwrap_or_else(|| panic!("{path} missing from partition {part} of {}", disk.display()));
    String::from_utf8(bytes).unwrap()
}

fn ls(disk: &Path, part: u32, dir: &str) -> Vec<String> {
    guest_ls(disk, part, dir)
        .unwrap()
        .unwrap_or_else(|| panic!("{dir} missing from partition {part}"))
}

#[test]
fn guest_images_match_their_description() {
    let guest = debian_guest_info();
    assert_eq!(debian_guest(), guest.dir);
    let info = &guest.info;
    for table in [Table::Mbr, Table::Gpt] {
        let img = guest.image(table);
        let lay = guest.layout(table);
        let meta = std::fs::metadata(&img).unwrap();
        assert_eq!(meta.len(), 3 * 1024 * MIB, "{table:?} virtual size");
        assert!(
            meta.blocks() * 512 < meta.len() / 3,
            "{table:?} image is not sparse"
        );

        let (label, parts) = partitions(&img).unwrap();
        let last = parts.last().unwrap();
        assert_eq!(last.number, lay.swap_partition);
        assert_eq!(last.size, info.swap_mib * 2048);
        let root = parts
            .iter()
            .find(|p| p.number == lay.root_partition)
            .unwrap();
        match table {
            Table::Mbr => {
                assert_eq!(label, "dos");
                assert_eq!((root.kind.as_str(), root.bootable), ("83", true));
                assert_eq!(last.kind, "82");
            }
            Table::Gpt => {
                assert_eq!(label, "gpt");
                let bios = &parts[0];
                assert_eq!((bios.kind.as_str(), bios.size), (GPT_BIOS_BOOT, 2048));
                assert_eq!(bios.name.as_deref(), Some("bios"));
                assert_eq!(root.kind, GPT_LINUX);
                assert_eq!(root.name.as_deref(), Some("root"));
                assert_eq!(last.kind, GPT_SWAP);
                assert_eq!(last.name.as_deref(), Some("swap"));
            }
        }
        let r = lay.root_partition;
        assert_eq!(
            probe_partition(&img, r).unwrap(),
            (lay.root_uuid.clone(), "ext4".into())
        );
        assert_eq!(
            probe_partition(&img, lay.swap_partition).unwrap(),
            (lay.swap_uuid.clone(), "swap".into())
        );
        assert_eq!(
            ext_superblock(&img, r).unwrap()["Filesystem state"],
            "clean"
        );

        let fstab = text(&img, r, "/etc/fstab");
        assert!(
            fstab.contains(&format!("UUID={} / ext4", lay.root_uuid)),
            "{fstab}"
        );
        assert!(
            fstab.contains(&format!("UUID={} none swap", lay.swap_uuid)),
            "{fstab}"
        );
        let grub = text(&img, r, "/boot/grub/grub.cfg");
        assert!(grub.contains(&format!("root=UUID={}", lay.root_uuid)));
        assert!(grub.contains("console=ttyS0,115200n8"));
        assert!(grub.contains("terminal_output serial console"));

        // Accounts: root and user (uid 1000) with SHA-512 crypt passwords.
        let shadow = text(&img, r, "/etc/shadow");
        for user in info.users.keys() {
            assert!(
                shadow.contains(&format!("{user}:$6$")),
                "{user} has no password"
            );
        }
        assert!(text(&img, r, "/etc/passwd").contains("user:x:1000:1000:"));
        assert_eq!(text(&img, r, "/etc/hostname").trim(), info.hostname);
        assert_eq!(text(&img, r, "/etc/machine-id").trim(), info.machine_id);
        assert_eq!(text(&img, r, &info.secret_path).trim(), info.secret_marker);

        // The dirt the system preparation cleans.
        assert!(!text(&img, r, "/var/log/auth.log").is_empty());
        assert!(ls(&img, r, "/var/cache/apt/archives")
            .iter()
            .any(|n| n.ends_with(".deb")));
        assert!(ls(&img, r, "/tmp").contains(&"snf-test-tmpfile".to_string()));
        assert!(ls(&img, r, "/etc/ssh").contains(&"ssh_host_ed25519_key".to_string()));
        for home in ["/root", "/home/user"] {
            assert!(!text(&img, r, &format!("{home}/.bash_history")).is_empty());
            assert!(text(&img, r, &format!("{home}/.ssh/authorized_keys")).contains("snf-test-key"));
        }
        assert!(text(&img, r, "/etc/udev/rules.d/70-persistent-net.rules").contains("eth0"));
    }
}

fn assert_boots(img: &Path, hostname: &str) {
    let before = std::fs::metadata(img).unwrap().modified().unwrap();
    let report = boot_check(img, BOOT_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        report.console.contains(&format!("{hostname} login:")),
        "{}",
        report.console
    );
    assert!(
        report.console.contains("GNU GRUB"),
        "not booted through GRUB"
    );
    let after = std::fs::metadata(img).unwrap().modified().unwrap();
    assert_eq!(before, after, "boot_check wrote to {}", img.display());
    eprintln!("{} booted in {:.1?}", img.display(), report.elapsed);
}

#[test]
fn mbr_guest_boots() {
    let guest = debian_guest_info();
    assert_boots(&guest.image(Table::Mbr), &guest.info.hostname);
}

#[test]
fn gpt_guest_boots() {
    let guest = debian_guest_info();
    assert_boots(&guest.image(Table::Gpt), &guest.info.hostname);
}

#[test]
fn boot_check_fails_on_an_unbootable_disk() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("blank.raw");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(16 * MIB)
        .unwrap();
    let err = boot_check(&img, Duration::from_secs(5))
        .unwrap_err()
        .to_string();
    assert!(err.contains("no login prompt within 5 s"), "{err}");
}

/// Copy `table`'s image and shrink it the way snf-mkimage does: drop the swap line
/// from fstab (remove-swap-entry), delete the trailing swap partition, cut the image to
/// the root partition's end + 1 MiB (the GPT backup header is not moved: snf-image's
/// `sgdisk --move-second-header` copes). Returns the image and the SWAP property.
fn shrink_like_snf_mkimage(dir: &Path, table: Table) -> (PathBuf, String) {
    let guest = debian_guest_info();
    let lay = guest.layout(table);
    let img = dir.join("image.raw");
    run(Command::new("cp")
        .arg("--sparse=always")
        .arg(guest.image(table))
        .arg(&img));
    let fstab = text(&img, lay.root_partition, "/etc/fstab");
    let kept: String = fstab
        .lines()
        .filter(|l| !l.contains(" swap "))
        .map(|l| format!("{l}\n"))
        .collect();
    let new_fstab = dir.join("fstab");
    std::fs::write(&new_fstab, kept).unwrap();
    let (_, parts) = partitions(&img).unwrap();
    let root = parts
        .iter()
        .find(|p| p.number == lay.root_partition)
        .unwrap();
    let cmds = dir.join("debugfs.cmds");
    std::fs::write(
        &cmds,
        format!("rm /etc/fstab\nwrite {} /etc/fstab\n", new_fstab.display()),
    )
    .unwrap();
    run(Command::new("debugfs")
        .arg("-w")
        .arg("-f")
        .arg(&cmds)
        .arg(format!("{}?offset={}", img.display(), root.start * 512)));
    let swap = lay.swap_partition;
    match table {
        Table::Mbr => run(Command::new("sfdisk")
            .args(["-q", "--delete"])
            .arg(&img)
            .arg(swap.to_string())),
        Table::Gpt => run(Command::new("sgdisk")
            .arg(format!("--delete={swap}"))
            .arg(&img)),
    };
    let end = (root.start + root.size) * 512 + MIB;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&img)
        .unwrap()
        .set_len(end)
        .unwrap();
    (img, format!("{swap}:{}", guest.info.swap_mib))
}

fn deploy_and_boot(table: Table) {
    let guest = debian_guest_info();
    let lay = guest.layout(table);
    let dir = tempfile::tempdir_in(snf_testkit::target_dir()).unwrap();
    let (img, swap) = shrink_like_snf_mkimage(dir.path(), table);
    let meta = dir.path().join("image.raw.meta");
    std::fs::write(
        &meta,
        format!(
            r#"{{"properties":{{"OSFAMILY":"linux","ROOT_PARTITION":"{}","SWAP":"{swap}"}},"disk-format":"diskdump"}}"#,
            lay.root_partition
        ),
    )
    .unwrap();
    let vm = dir.path().join("vm.raw");
    let size = 4 * 1024 * MIB;
    deploy(&img, &meta, &vm, size).unwrap_or_else(|e| panic!("{e}"));

    // Root grown up to the swap, swap re-created at the disk end (2048 sectors free).
    let n = size / 512;
    let swap_end = n - 2049;
    let swap_start = swap_end - guest.info.swap_mib * 2048 + 1;
    let (_, parts) = partitions(&vm).unwrap();
    let root = parts
        .iter()
        .find(|p| p.number == lay.root_partition)
        .unwrap();
    let last = parts.last().unwrap();
    assert_eq!(root.start + root.size, swap_start);
    assert_eq!(
        (last.number, last.start, last.start + last.size - 1),
        (lay.swap_partition, swap_start, swap_end)
    );
    if table == Table::Gpt {
        assert_eq!(
            root.name.as_deref(),
            Some("root"),
            "resize lost the GPT name"
        );
        assert_eq!(last.kind, GPT_SWAP);
    }
    let sb = ext_superblock(&vm, lay.root_partition).unwrap();
    let fs_bytes: u64 =
        sb["Block count"].parse::<u64>().unwrap() * sb["Block size"].parse::<u64>().unwrap();
    assert_eq!(
        fs_bytes,
        root.size * 512,
        "filesystem not grown to its partition"
    );
    let (swap_uuid, kind) = probe_partition(&vm, lay.swap_partition).unwrap();
    assert_eq!(kind, "swap");
    assert_ne!(swap_uuid, lay.swap_uuid);
    let fstab = text(&vm, lay.root_partition, "/etc/fstab");
    let swaps: Vec<_> = fstab.lines().filter(|l| l.contains("swap")).collect();
    assert_eq!(
        swaps,
        vec![format!("UUID={swap_uuid}\tnone\tswap\tsw\t0\t0")]
    );

    assert_boots(&vm, &guest.info.hostname);
}

#[test]
fn shrunk_mbr_guest_deploys_and_boots() {
    deploy_and_boot(Table::Mbr);
}

#[test]
fn shrunk_gpt_guest_deploys_and_boots() {
    deploy_and_boot(Table::Gpt);
}

/// The UEFI image: GPT with the EFI system partition first (FAT, GRUB at the removable
/// path), the root and the trailing swap as `guest.json` says; fstab mounts the ESP.
#[test]
fn the_uefi_image_matches_its_description() {
    const GPT_ESP: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
    let guest = debian_guest_info();
    let img = guest.uefi_image();
    let lay = guest.uefi();
    let esp = lay.esp_partition.unwrap();
    let (label, parts) = partitions(&img).unwrap();
    assert_eq!(label, "gpt");
    let p = |n: u32| parts.iter().find(|p| p.number == n).unwrap();
    assert_eq!(p(esp).kind, GPT_ESP);
    assert_eq!(p(lay.root_partition).kind, GPT_LINUX);
    assert_eq!(parts.last().unwrap().number, lay.swap_partition);
    assert_eq!(parts.last().unwrap().kind, GPT_SWAP);
    let esp_uuid = lay.esp_uuid.clone().unwrap();
    assert_eq!(
        probe_partition(&img, esp).unwrap(),
        (esp_uuid.clone(), "vfat".into())
    );
    assert_eq!(
        probe_partition(&img, lay.root_partition).unwrap(),
        (lay.root_uuid.clone(), "ext4".into())
    );
    let listing = run(Command::new("mdir")
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-i")
        .arg(format!("{}@@{}", img.display(), p(esp).start * 512))
        .arg("::/EFI/BOOT"));
    assert!(listing.contains("BOOTX64"), "{listing}");
    let fstab = text(&img, lay.root_partition, "/etc/fstab");
    assert!(
        fstab.contains(&format!("UUID={esp_uuid} /boot/efi vfat")),
        "{fstab}"
    );
    let cfg = text(&img, lay.root_partition, "/boot/grub/grub.cfg");
    assert!(
        cfg.contains(&format!("root=UUID={}", lay.root_uuid)),
        "{cfg}"
    );
    assert!(
        ls(&img, lay.root_partition, "/boot/grub/x86_64-efi").contains(&"normal.mod".to_string())
    );
}
