//! SIGINT and SIGTERM in the middle of a dump: the run stops, says so in one line,
//! and leaves no output file and no work directory.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use rustix::process::{kill_process, Pid, Signal};
use snf_testkit::fixture::{write_at, Disk};

/// A sparse 4 GiB disk with an MBR and `data_mib` MiB of real (non-zero) data in its
/// partition, so that dumping it takes a moment. There is no operating system on it,
/// hence `--allow-unsupported` below.
fn big_sparse_disk(dir: &Path, data_mib: u64) -> std::path::PathBuf {
    let disk = Disk::create(
        dir.join("big.raw"),
        4 << 30,
        "label: dos\nstart=2048, type=83\n",
    );
    let chunk = pseudo_random(8 << 20, 3);
    for i in 0..data_mib / 8 {
        write_at(disk.path(), (16 << 20) + i * (8 << 20), &chunk);
    }
    disk.into_path()
}

fn interrupt_mid_dump(signal: Signal, code: i32) {
    let dir = tempdir();
    let d = dir.path();
    let src = big_sparse_disk(d, 1024);
    let tmp = d.join("tmp");
    fs::create_dir(&tmp).unwrap();
    let out_path = d.join("out.raw");
    let mut child = Command::new(bin())
        .args(["--allow-unsupported", "--no-sysprep", "--tmpdir"])
        .arg(&tmp)
        .arg("-o")
        .arg(&out_path)
        .arg(&src)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let n = stderr.read_line(&mut line).unwrap();
        assert!(n > 0, "the run ended before dumping:\n{seen}");
        seen.push_str(&line);
        if line == "Dumping image file ...\n" {
            break;
        }
    }
    let pid = Pid::from_raw(child.id() as i32).unwrap();
    kill_process(pid, signal).unwrap();
    stderr.read_to_string(&mut seen).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(code), "{seen}");
    assert!(
        seen.ends_with("Error: interrupted by the user\n"),
        "wrong last line:\n{seen}"
    );
    assert_eq!(seen.matches("Error:").count(), 1, "{seen}");
    assert_eq!(entries(d), vec!["big.raw", "tmp"], "output left behind");
    assert!(
        entries(&tmp).is_empty(),
        "work dir left: {:?}",
        entries(&tmp)
    );
}

#[test]
fn sigint_mid_dump_cleans_up() {
    interrupt_mid_dump(Signal::INT, 130);
}

#[test]
fn sigterm_mid_dump_cleans_up() {
    interrupt_mid_dump(Signal::TERM, 143);
}
