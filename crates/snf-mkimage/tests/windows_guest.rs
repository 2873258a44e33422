//! The binary on Windows-shaped NTFS guests (BIOS: System Reserved + `C:`, both made by
//! mkntfs): `--print-syspreps`/`--print-metadata`, a whole run to a shrunk image whose
//! volume is read back with ntfs-3g's tools and hivexget, and the refusal of a volume
//! Windows did not shut down fully, before any change.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use image_creator::virtio;
use snf_testkit::ntfs::{assert_ntfsfix_clean, ntfscat, ntfsls, set_dirty};
use snf_testkit::windows::{
    extract_volume, virtio_win, windows10_disk, windows_disk, Firmware, WindowsSpec,
};

fn mkimage(dir: &Path, args: &[&str], img: &Path) -> std::process::Output {
    Command::new(bin())
        .arg("--tmpdir")
        .arg(dir)
        .args(args)
        .arg(img)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The byte offset and size of partition `n` of `img`.
fn part(img: &Path, n: u32) -> (u64, u64) {
    let (_, parts) = snf_testkit::partitions(img).unwrap();
    let p = parts.iter().find(|p| p.number == n).unwrap();
    (p.start * 512, p.size * 512)
}

/// What `ntfsresize --info` says of the whole-file volume `vol`.
fn ntfsresize_info(vol: &Path) -> String {
    sh(
        "ntfsresize",
        &[
            "--info",
            "--force",
            "--no-progress-bar",
            vol.to_str().unwrap(),
        ],
    )
}

const TCPIP: &str = "\\Policies\\Microsoft\\Windows\\TCPIP\\v6Transition";

#[test]
fn a_windows_guest_is_prepared_offline_and_shrunk() {
    let dir = tempdir();
    let spec = WindowsSpec {
        files: vec![("Users/Public/data.bin", pseudo_random(24 << 20, 9))],
        ..WindowsSpec::windows10()
    };
    let img = windows_disk(dir.path(), "win", &spec, Firmware::Bios, 256);
    let before = sha256(&img);

    let out = mkimage(
        dir.path(),
        &["--print-syspreps", "--print-metadata", "--json"],
        &img,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // Pretty-printed JSON documents: compare without the blanks.
    let all: String = stdout(&out).split_whitespace().collect();
    for want in [
        "\"OSFAMILY\":\"windows\"",
        "\"OS\":\"windows\"",
        "\"DESCRIPTION\":\"Windows10Pro\"",
        "\"KERNEL\":\"WindowsNT10.0\"",
        "\"USERS\":\"Administrator\"",
        "\"REMOTE_CONNECTION\":\"rdp:port=3389,user=Administrator\"",
        "\"name\":\"clear-logs\"",
        "\"name\":\"remove-paging-files\"",
        "\"name\":\"disable-teredo\"",
    ] {
        assert!(all.contains(want), "{want} in {all}");
    }

    let image = dir.path().join("win.diskdump");
    let out = mkimage(dir.path(), &["-o", image.to_str().unwrap()], &img);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert_eq!(sha256(&img), before, "the source changed");
    let meta = std::fs::read_to_string(format!("{}.meta", image.display())).unwrap();
    assert!(meta.contains("\"OSFAMILY\":\"windows\""), "{meta}");

    // C: (partition 2) is shrunk, consistent, and prepared.
    let (_, c_before) = part(&img, 2);
    let (offset, size) = part(&image, 2);
    assert!(size < c_before, "C: not shrunk: {size} of {c_before} bytes");
    let vol = dir.path().join("c.ntfs");
    extract_volume(&image, offset, &vol);
    assert_ntfsfix_clean(&vol, "C: of the image");
    let info = ntfsresize_info(&vol);
    let vol_size: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("Current volume size: "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("ntfsresize --info: {info}"));
    assert!(vol_size <= size, "{info}");
    assert!(vol_size < c_before / 2, "the volume was not shrunk: {info}");
    assert_eq!(
        ntfscat(&vol, "/Users/Public/data.bin"),
        pseudo_random(24 << 20, 9)
    );
    assert!(ntfsls(&vol, "/Windows/System32/winevt/Logs").is_empty());
    assert_eq!(ntfsls(&vol, "/"), ["Program Files", "Users", "Windows"]);
    assert_eq!(
        String::from_utf8(ntfscat(&vol, "/Windows/Setup/Scripts/SetupComplete.cmd")).unwrap(),
        "netsh interface ipv6 set global randomizeidentifiers=disabled store=persistent\r\n"
    );
    let software = dir.path().join("SOFTWARE");
    std::fs::write(
        &software,
        ntfscat(&vol, "/Windows/System32/config/SOFTWARE"),
    )
    .unwrap();
    assert_eq!(
        snf_testkit::windows::hivexget(&software, TCPIP, "Teredo_State"),
        "Disabled"
    );
    // System Reserved (partition 1) is left as it was.
    let (o1, s1) = part(&image, 1);
    let reserved = dir.path().join("reserved.ntfs");
    extract_volume(&image, o1, &reserved);
    assert_ntfsfix_clean(&reserved, "System Reserved of the image");
    assert_eq!(ntfscat(&reserved, "/bootmgr"), b"BOOTMGR");
    assert_eq!((o1, s1), part(&img, 1));
}

/// Run the binary on `img` and insist it fails, before changing anything, with the
/// message that asks for a full shutdown.
fn refused(dir: &Path, img: &Path, why: &str) {
    let before = sha256(img);
    let image = dir.join("out.diskdump");
    let out = mkimage(dir, &["-o", image.to_str().unwrap()], img);
    let err = stderr(&out);
    assert!(!out.status.success(), "{why}: the run succeeded: {err}");
    assert!(err.contains("shut it down fully"), "{why}: {err}");
    assert!(err.contains(why), "{why}: {err}");
    assert_eq!(sha256(img), before, "{why}: the source changed");
    assert!(!image.exists(), "{why}: an image was written");
}

#[test]
fn a_hibernated_windows_is_refused_before_any_change() {
    let dir = tempdir();
    let mut hiberfil = vec![0u8; 64 * 1024];
    hiberfil[..4].copy_from_slice(b"HIBR");
    let spec = WindowsSpec {
        files: vec![("hiberfil.sys", hiberfil)],
        ..WindowsSpec::windows10()
    };
    let img = windows_disk(dir.path(), "hibr", &spec, Firmware::Bios, 64);
    refused(dir.path(), &img, "hibernated");
}

#[test]
fn a_dirty_windows_is_refused_before_any_change() {
    let dir = tempdir();
    let img = windows10_disk(dir.path(), "dirty", Firmware::Uefi);
    set_dirty(&img, part(&img, 3).0);
    refused(dir.path(), &img, "shut down cleanly");
}

/// Run the binary on `img` with `--install-virtio tree`, writing `dir/out.raw`; it
/// must succeed. Returns the output's C: (partition 2) extracted to `dir/c.ntfs`.
fn install_virtio(dir: &Path, tree: &Path, img: &Path) -> std::path::PathBuf {
    let image = dir.join("out.raw");
    let out = mkimage(
        dir,
        &[
            "--install-virtio",
            tree.to_str().unwrap(),
            "-o",
            image.to_str().unwrap(),
        ],
        img,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let vol = dir.join("c.ntfs");
    extract_volume(&image, part(&image, 2).0, &vol);
    vol
}

/// SYSTEM of the C: volume `vol`, copied out with ntfscat.
fn system_hive(dir: &Path, vol: &Path) -> std::path::PathBuf {
    let hive = dir.join("SYSTEM");
    std::fs::write(&hive, ntfscat(vol, "/Windows/System32/config/SYSTEM")).unwrap();
    hive
}

#[test]
fn virtio_drivers_are_installed_offline() {
    use snf_testkit::windows::hivexget;
    let dir = tempdir();
    let img = windows10_disk(dir.path(), "win10", Firmware::Bios);
    let tree = virtio_win(dir.path(), "w10", true);
    // Another version's drivers are never taken.
    let other = virtio_win(&dir.path().join("other"), "w11", true);
    std::fs::rename(other.join("viostor/w11"), tree.join("viostor/w11")).unwrap();
    let image = dir.path().join("out.raw");
    // A dry run says what it would write, and writes nothing.
    let before = sha256(&img);
    let out = mkimage(
        dir.path(),
        &[
            "--dry-run",
            "-v",
            "--install-virtio",
            tree.to_str().unwrap(),
            "-o",
            image.to_str().unwrap(),
        ],
        &img,
    );
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("viostor.sys"), "{err}");
    assert!(!image.exists());
    assert_eq!(sha256(&img), before);
    let vol = install_virtio(dir.path(), &tree, &img);
    assert_ntfsfix_clean(&vol, "C: with the drivers");
    assert_eq!(
        ntfscat(&vol, "/Windows/System32/drivers/viostor.sys"),
        b"MZ viostor amd64"
    );
    assert_eq!(
        ntfscat(&vol, "/Windows/System32/drivers/vioscsi.sys"),
        b"MZ vioscsi amd64"
    );
    let staged = ntfsls(&vol, "/Windows/Drivers/VirtIO");
    assert_eq!(staged.len(), 15, "{staged:?}");
    assert!(staged.contains(&"netkvm.inf".to_string()), "{staged:?}");
    let setup =
        String::from_utf8(ntfscat(&vol, "/Windows/Setup/Scripts/SetupComplete.cmd")).unwrap();
    assert!(setup.lines().any(|l| l == virtio::PNPUTIL), "{setup:?}");
    let system = system_hive(dir.path(), &vol);
    for service in ["viostor", "vioscsi"] {
        let key = format!("\\ControlSet001\\Services\\{service}");
        assert_eq!(hivexget(&system, &key, "Type"), "1");
        assert_eq!(hivexget(&system, &key, "Start"), "0");
        assert_eq!(hivexget(&system, &key, "ErrorControl"), "1");
        assert_eq!(hivexget(&system, &key, "Group"), "SCSI miniport");
        assert_eq!(
            hivexget(&system, &key, "ImagePath"),
            format!("system32\\drivers\\{service}.sys")
        );
    }
    // Windows 10 has no critical device database.
    let cdd = Command::new("hivexget")
        .arg(&system)
        .arg("\\ControlSet001\\Control\\CriticalDeviceDatabase")
        .output()
        .unwrap();
    assert!(
        !cdd.status.success(),
        "a critical device database on Windows 10"
    );
}

#[test]
fn virtio_storage_is_in_the_critical_device_database_on_windows7() {
    use snf_testkit::windows::hivexget;
    let dir = tempdir();
    let spec = WindowsSpec {
        // A 32-bit Windows 7: the x86 drivers are taken.
        extra: vec![(
            "SYSTEM",
            "[HKEY_LOCAL_MACHINE\\SYSTEM\\ControlSet001\\Control\\Session Manager\\Environment]\n\
             \"PROCESSOR_ARCHITECTURE\"=\"x86\"\n"
                .into(),
        )],
        ..WindowsSpec::windows7()
    };
    let img = windows_disk(dir.path(), "win7", &spec, Firmware::Bios, 64);
    let tree = virtio_win(dir.path(), "w7", true);
    let vol = install_virtio(dir.path(), &tree, &img);
    assert_eq!(
        ntfscat(&vol, "/Windows/System32/drivers/viostor.sys"),
        b"MZ viostor x86"
    );
    let system = system_hive(dir.path(), &vol);
    for (service, ids) in [("viostor", ["1001", "1042"]), ("vioscsi", ["1004", "1048"])] {
        for id in ids {
            let key =
                format!("\\ControlSet001\\Control\\CriticalDeviceDatabase\\pci#ven_1af4&dev_{id}");
            assert_eq!(hivexget(&system, &key, "Service"), service);
            assert_eq!(
                hivexget(&system, &key, "ClassGUID"),
                "{4D36E97B-E325-11CE-BFC1-08002BE10318}"
            );
        }
    }
}
