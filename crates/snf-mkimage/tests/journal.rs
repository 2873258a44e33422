//! A guest that was not shut down cleanly: its journal is replayed on the private copy,
//! never on the source; `--no-snapshot` says that it writes the source.

mod common;

use std::fs;
use std::process::Command;

use common::*;
use snf_testkit::fixture::assert_e2fsck_clean;

/// Commit a journal transaction (a new version of `/etc/hostname`'s block) without
/// checkpointing it, as a crash would leave it.
fn leave_pending_journal(img: &std::path::Path) {
    let spec = format!("{}?offset=1048576", img.display());
    let bmap = Command::new("debugfs")
        .args(["-R", "bmap /etc/hostname 0", &spec])
        .output()
        .unwrap();
    let block: u64 = String::from_utf8_lossy(&bmap.stdout)
        .trim()
        .parse()
        .unwrap();
    let dir = img.parent().unwrap();
    let newblk = dir.join("newblk");
    let mut data = b"replayed\n".to_vec();
    data.resize(4096, 0);
    fs::write(&newblk, data).unwrap();
    let cmds = dir.join("cmds");
    fs::write(
        &cmds,
        format!("jo\njw -b {block} {}\njc\n", newblk.display()),
    )
    .unwrap();
    let out = Command::new("debugfs")
        .args(["-w", "-f", cmds.to_str().unwrap(), &spec])
        .output()
        .unwrap();
    assert!(out.status.success());
    let dump = Command::new("dumpe2fs")
        .args(["-h", &spec])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&dump.stdout).contains("needs_recovery"));
}

#[test]
fn the_journal_is_replayed_on_the_copy_only() {
    require("debugfs");
    let dir = tempdir();
    let src = partitioned_raw(dir.path(), "src.raw", 16, 16);
    leave_pending_journal(&src);
    let before = sha256(&src);
    let out = dir.path().join("out.raw");
    let res = run(&[
        "--no-sysprep",
        "--print-metadata",
        "-o",
        out.to_str().unwrap(),
        src.to_str().unwrap(),
    ]);
    assert!(res.status.success(), "{}", stderr(&res));
    assert!(stderr(&res).contains("needs recovery"), "{}", stderr(&res));
    assert!(
        stdout(&res).contains("OSFAMILY"),
        "the guest was inspected: {}",
        stdout(&res)
    );
    assert_eq!(sha256(&src), before, "the source is untouched");
    let hostname = snf_testkit::guest_file(&out, 1, "/etc/hostname")
        .unwrap()
        .unwrap();
    // The file keeps its size (8 bytes): the replayed block holds the new text.
    assert_eq!(
        hostname,
        b"replayed",
        "{:?}",
        String::from_utf8_lossy(&hostname)
    );
    assert_e2fsck_clean(&out, 1048576, "the image's root filesystem");

    // --no-snapshot replays it on the source, and says so.
    let res = run(&[
        "--no-snapshot",
        "--no-sysprep",
        "--print-metadata",
        src.to_str().unwrap(),
    ]);
    assert!(res.status.success(), "{}", stderr(&res));
    assert!(
        stderr(&res).contains("itself (--no-snapshot)"),
        "{}",
        stderr(&res)
    );
    assert_ne!(sha256(&src), before);
}
