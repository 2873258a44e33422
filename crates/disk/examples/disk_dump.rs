//! Examine a source, open its working disk and write a diskdump with side files.
//!
//! Used by the unprivileged test (it runs this as uid 65534) and to measure the dump
//! without the CLI:
//!
//! ```text
//! disk_dump SOURCE OUT [--tmpdir DIR] [--write] [--no-snapshot] [--free START-END]...
//! ```
//!
//! `--write` makes the working disk writable and writes one byte at offset 0 of the
//! copy (to exercise the snapshot path). Prints `md5 <hex>`, `bytes <n>` and
//! `copy <yes|no>` on stdout.

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::process::ExitCode;

use snf_core::report::Quiet;
use snf_disk::{dump, write_side_files, SnapshotMode, Source, WorkDir, WorkingDisk};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("disk_dump: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut positional = Vec::new();
    let mut tmpdir: Option<PathBuf> = None;
    let mut write = false;
    let mut mode = SnapshotMode::Snapshot;
    let mut free = Vec::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--tmpdir" => tmpdir = Some(args.next().ok_or("--tmpdir needs a value")?.into()),
            "--write" => write = true,
            "--no-snapshot" => mode = SnapshotMode::NoSnapshot,
            "--free" => {
                let v = args.next().ok_or("--free needs START-END")?;
                let (s, e) = v.split_once('-').ok_or("--free needs START-END")?;
                free.push(s.parse::<u64>()?..e.parse::<u64>()?);
            }
            _ => positional.push(a),
        }
    }
    let [source, out] = <[String; 2]>::try_from(positional).map_err(|_| {
        "usage: disk_dump SOURCE OUT [--tmpdir DIR] [--write] [--no-snapshot] [--free A-B]"
    })?;
    let reporter = Quiet;
    let source = Source::examine(&source)?;
    let workdir = WorkDir::create(tmpdir.as_deref())?;
    let mut disk = WorkingDisk::open(&source, &workdir, mode, &reporter)?;
    if write {
        disk.make_writable(&reporter)?;
        let mut b = [0u8; 1];
        disk.file().read_exact_at(&mut b, 0)?;
        disk.file().write_all_at(&[b[0] ^ 0xff], 0)?;
    }
    let out_path = PathBuf::from(&out);
    let summary = dump(&disk, disk.size(), &free, &out_path, &reporter)?;
    let mut props = BTreeMap::new();
    props.insert("OSFAMILY".to_string(), "linux".to_string());
    props.insert("DESCRIPTION".to_string(), "made by disk_dump".to_string());
    write_side_files(&out_path, &out, &summary.md5_hex, &props)?;
    println!("md5 {}", summary.md5_hex);
    println!("bytes {}", summary.bytes);
    println!("copy {}", if disk.is_copy() { "yes" } else { "no" });
    Ok(())
}
