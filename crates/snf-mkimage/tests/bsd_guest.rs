//! The binary on an OpenBSD disk (MBR + a disklabel written by util-linux fdisk, the
//! root a UFS1 filesystem made by makefs in slice `a`): what `--print-syspreps` and
//! `--print-metadata` say.

mod common;

use std::process::Command;

use common::*;
use snf_testkit::bsdlabel::{fdisk_bsd_label, BsdSlice};
use snf_testkit::fixture::{copy_into, mkswap_at, sfdisk, sparse_file, write_file};
use snf_testkit::ufs::{self, Layout};

#[test]
fn openbsd_guest_gets_the_bsd_operations_and_its_slice_as_root() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    write_file(&tree, "/bsd", "ELF");
    write_file(
        &tree,
        "/etc/motd",
        "OpenBSD 7.5 (GENERIC) #82: Wed Mar 20 15:48:40 MDT 2024\n",
    );
    write_file(
        &tree,
        "/etc/fstab",
        "/dev/sd0a / ffs rw 1 1\n/dev/sd0b none swap sw\n",
    );
    write_file(
        &tree,
        "/etc/master.passwd",
        "root:$2b$10$abcdefghijklmnopqrstuu:0:0:daemon:0:0:Charlie &:/root:/bin/ksh\n",
    );
    let img = dir.path().join("openbsd.raw");
    sparse_file(&img, 64 << 20);
    sfdisk(
        &img,
        "label: dos\nstart=2048, size=100000, type=a6, bootable\n",
    );
    let (a, b) = (
        BsdSlice {
            letter: 'a',
            start: 2048,
            sectors: 60_000,
            fstype: 7,
        },
        BsdSlice {
            letter: 'b',
            start: 62_048,
            sectors: 40_000,
            fstype: 1,
        },
    );
    let fsimg = dir.path().join("root.ufs");
    ufs::make_image(&fsimg, &tree, Layout::Ufs1, a.sectors / 2048);
    copy_into(&fsimg, &img, a.start * 512);
    mkswap_at(&img, b.start * 512, b.sectors * 512, None);
    fdisk_bsd_label(&img, &[a, b]);

    let out = Command::new(bin())
        .args(["--print-syspreps", "--print-metadata", "--json"])
        .arg(&img)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let json: Vec<serde_json::Value> = serde_json::Deserializer::from_str(&text)
        .into_iter()
        .map(|v| v.expect("JSON documents on stdout"))
        .collect();
    let all = serde_json::Value::Array(json).to_string();
    assert!(all.contains("\"ROOT_PARTITION\":\"5\""), "{all}");
    assert!(all.contains("\"OSFAMILY\":\"openbsd\""), "{all}");
    assert!(all.contains("\"name\":\"cleanup-password\""), "{all}");
    assert!(!all.contains("\"name\":\"cleanup-passwords\""), "{all}");
    assert!(
        !all.contains("\"name\":\"remove-persistent-net-rules\""),
        "{all}"
    );
}
