//! Images that boot whatever bus the cloud attaches the disk to, under BIOS and UEFI
//! (issue 18). The Debian guest is first made bus-dependent the way real guests are
//! (GRUB's kernel line `root=/dev/vdaN`, `GRUB_DISABLE_LINUX_UUID=true`), prepared with
//! the default operations (the serial console kept for the check), and booted under
//! qemu/TCG to a login prompt. TCG is slow, so the matrix is the smallest that proves
//! each bus and each firmware once: BIOS on virtio-scsi and NVMe; UEFI (OVMF) on
//! virtio-blk and SATA (AHCI: the UEFI image has Debian's generic kernel, the cloud
//! kernel of the BIOS images has no AHCI driver).

mod common;

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use snf_testkit::fixture::run as run_tool;
use snf_testkit::{
    boot_check_with, debian_guest_info, guest_file, partitions, BootOptions, DiskBus, Firmware,
    GuestImage, Table,
};

/// Each boot is bounded: a guest stuck in its initramfs fails instead of stalling CI.
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);

/// Byte offset of partition `number` of `disk`.
fn offset(disk: &Path, number: u32) -> u64 {
    let (_, parts) = partitions(disk).unwrap();
    parts.iter().find(|p| p.number == number).unwrap().start * 512
}

/// Replace `guest_path` in the ext filesystem of partition `number` with `data`.
fn put_file(disk: &Path, number: u32, guest_path: &str, data: &str, scratch: &Path) {
    let spec = format!("{}?offset={}", disk.display(), offset(disk, number));
    let local = scratch.join("put-file");
    fs::write(&local, data).unwrap();
    run_tool(Command::new("debugfs").args(["-w", "-R", &format!("rm {guest_path}"), &spec]));
    run_tool(Command::new("debugfs").args([
        "-w",
        "-R",
        &format!("write {} {guest_path}", local.display()),
        &spec,
    ]));
    fs::remove_file(&local).unwrap();
}

fn read_guest(disk: &Path, number: u32, guest_path: &str) -> String {
    let bytes = guest_file(disk, number, guest_path)
        .unwrap()
        .unwrap_or_else(|| panic!("{guest_path} missing"));
    String::from_utf8(bytes).unwrap()
}

/// A copy of the guest image `src` whose boot configuration names the root the way a
/// guest installed on virtio-blk without UUIDs does: `root=<dev>`.
fn bus_dependent_copy(src: &Path, lay: &GuestImage, dev: &str, dir: &Path) -> PathBuf {
    let img = dir.join("source.raw");
    run_tool(Command::new("cp").arg("--sparse=always").arg(src).arg(&img));
    let root = lay.root_partition;
    let cfg = read_guest(&img, root, "/boot/grub/grub.cfg");
    let by_uuid = format!("root=UUID={}", lay.root_uuid);
    assert!(cfg.contains(&by_uuid), "{cfg}");
    put_file(
        &img,
        root,
        "/boot/grub/grub.cfg",
        &cfg.replace(&by_uuid, &format!("root={dev}")),
        dir,
    );
    let dflt = read_guest(&img, root, "/etc/default/grub");
    put_file(
        &img,
        root,
        "/etc/default/grub",
        &format!("{dflt}GRUB_DISABLE_LINUX_UUID=true\n"),
        dir,
    );
    img
}

/// `snf-mkimage` with the default operations but the serial console kept; returns the
/// output image and the run's stderr.
fn prepare(src: &Path, dir: &Path) -> (PathBuf, String) {
    let out = dir.join("out.raw");
    let run = Command::new(bin())
        .args(["--disable-sysprep", "disable-serial-console", "--tmpdir"])
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

/// The output boots root=UUID= on every kernel line, and the next update-grub keeps it.
fn assert_persistent(out: &Path, lay: &GuestImage, dev: &str) {
    let cfg = read_guest(out, lay.root_partition, "/boot/grub/grub.cfg");
    assert!(!cfg.contains(&format!("root={dev}")), "{cfg}");
    assert!(
        cfg.contains(&format!("root=UUID={}", lay.root_uuid)),
        "{cfg}"
    );
    let dflt = read_guest(out, lay.root_partition, "/etc/default/grub");
    assert!(dflt.contains("\n#GRUB_DISABLE_LINUX_UUID=true\n"), "{dflt}");
}

/// The image properties of `out`'s `.meta` file.
fn props(out: &Path) -> serde_json::Value {
    let text = fs::read_to_string(format!("{}.meta", out.display())).unwrap();
    serde_json::from_str::<serde_json::Value>(&text).unwrap()["properties"].clone()
}

fn boot(img: &Path, firmware: Firmware, bus: DiskBus) {
    let hostname = &debian_guest_info().info.hostname;
    let report = boot_check_with(img, BOOT_TIMEOUT, BootOptions { bus, firmware })
        .unwrap_or_else(|e| panic!("{firmware:?} on {bus:?}: {e}"));
    assert!(
        report.console.contains(&format!("{hostname} login:")),
        "{firmware:?} on {bus:?}:\n{}",
        report.console
    );
    eprintln!(
        "{firmware:?} on {bus:?}: login prompt in {:.1?}",
        report.elapsed
    );
}

#[test]
fn a_bios_guest_booting_root_dev_vda1_is_prepared_to_boot_on_virtio_scsi_and_nvme() {
    let guest = debian_guest_info();
    let lay = guest.layout(Table::Mbr);
    let dir = tempfile::tempdir_in(snf_testkit::target_dir()).unwrap();
    let src = bus_dependent_copy(&guest.image(Table::Mbr), lay, "/dev/vda1", dir.path());
    let (out, err) = prepare(&src, dir.path());
    fs::remove_file(&src).unwrap();
    assert!(!err.contains("GPT image"), "{err}");
    assert_eq!(props(&out)["BOOTSTRAP"], "grub2");
    assert_persistent(&out, lay, "/dev/vda1");
    for bus in [DiskBus::VirtioScsi, DiskBus::Nvme] {
        boot(&out, Firmware::Bios, bus);
    }
}

#[test]
fn a_uefi_guest_keeps_its_esp_and_is_prepared_to_boot_on_virtio_blk_and_sata() {
    let guest = debian_guest_info();
    let lay = guest.uefi();
    let esp = lay.esp_partition.expect("the UEFI image has an ESP");
    let dir = tempfile::tempdir_in(snf_testkit::target_dir()).unwrap();
    let src = bus_dependent_copy(&guest.uefi_image(), lay, "/dev/vda2", dir.path());
    let (out, err) = prepare(&src, dir.path());

    // The ESP is neither moved, resized nor changed, and its files are readable.
    let (_, before) = partitions(&src).unwrap();
    let (label, after) = partitions(&out).unwrap();
    assert_eq!(label, "gpt");
    let find = |parts: &[snf_testkit::PartitionEntry]| {
        parts.iter().find(|p| p.number == esp).cloned().unwrap()
    };
    let (b, a) = (find(&before), find(&after));
    assert_eq!((b.start, b.size, &b.uuid), (a.start, a.size, &a.uuid));
    let read_esp = |img: &Path| {
        let mut data = vec![0; usize::try_from(a.size * 512).unwrap()];
        fs::File::open(img)
            .unwrap()
            .read_exact_at(&mut data, a.start * 512)
            .unwrap();
        data
    };
    assert!(read_esp(&src) == read_esp(&out), "the ESP changed");
    let listing = run_tool(
        Command::new("mdir")
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-i")
            .arg(format!("{}@@{}", out.display(), a.start * 512))
            .arg("::/EFI/BOOT"),
    );
    assert!(listing.contains("BOOTX64"), "{listing}");
    fs::remove_file(&src).unwrap();

    // GPT with a removed swap partition: SWAP is not recorded, and the run says why.
    let meta = props(&out);
    assert!(meta.get("SWAP").is_none(), "{meta}");
    // BOOTSTRAP names the MBR's boot code: the protective MBR of a UEFI-only disk has
    // none (BIOS cannot boot it).
    assert_eq!(meta["BOOTSTRAP"], "none");
    assert!(err.contains("SWAP=3:"), "{err}");
    assert!(
        err.contains("snf-image cannot re-create a swap partition on GPT"),
        "{err}"
    );

    assert_persistent(&out, lay, "/dev/vda2");
    for bus in [DiskBus::VirtioBlk, DiskBus::Sata] {
        boot(&out, Firmware::Uefi, bus);
    }
}
