//! Fixture helpers shared by the partition-table tests: real tables made by sfdisk,
//! sgdisk and fdisk, checked with the same tools.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The Debian package that provides a tool, for the "missing tool" message.
fn package_of(tool: &str) -> &'static str {
    match tool {
        "sfdisk" | "fdisk" => "fdisk",
        "sgdisk" => "gdisk",
        "losetup" => "mount",
        "setpriv" => "util-linux",
        "mke2fs" => "e2fsprogs",
        "mkfs.fat" => "dosfstools",
        _ => "(unknown)",
    }
}

/// Runs a command (with `input` on stdin), failing the test loudly when the tool is
/// missing or fails.
pub fn run_with_input(cmd: &mut Command, input: &str) -> Output {
    let tool = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {tool}: {e} (install the Debian package {}; scripts/setup.sh does)",
                package_of(&tool)
            )
        });
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input.as_bytes())
        .expect("write to the tool's stdin");
    let out = child.wait_with_output().expect("wait for the tool");
    if !out.status.success() {
        panic!(
            "{cmd:?} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

pub fn run(cmd: &mut Command) -> Output {
    run_with_input(cmd, "")
}

pub fn stdout(cmd: &mut Command) -> String {
    String::from_utf8(run(cmd).stdout).expect("tool output is UTF-8")
}

/// A sparse file of `size` bytes.
pub fn blank_image(dir: &Path, name: &str, size: u64) -> PathBuf {
    let path = dir.join(name);
    let f = File::create(&path).expect("create image");
    f.set_len(size).expect("size image");
    path
}

// Not every test binary uses every check.
#[allow(unused_imports)]
pub use snf_testkit::fixture::{assert_sfdisk_verifies, assert_sgdisk_verifies, sgdisk_info, Loop};

pub fn sfdisk_script(target: &str, script: &str) {
    run_with_input(
        Command::new("sfdisk").args(["--no-reread", "--no-tell-kernel", target]),
        script,
    );
}

/// The MBR layout most tests use, for any sector size (sizes in MiB are converted by
/// sfdisk): two primaries, an extended one, three logicals (the last is swap).
pub const MBR_SCRIPT: &str =
    "label: dos\nlabel-id: 0x12345678\n,8M,83,*\n,8M,7\n,,E\n,8M,83\n,8M,83\n,,82\n";

/// The GPT layout most tests use (partition 3 is swap and fills the rest).
pub fn sgdisk_args(first: u64) -> Vec<String> {
    [
        "-U",
        "11111111-2222-3333-4444-555555555555",
        &format!("-n 1:{first}:+8M"),
        "-t 1:ef00",
        "-c 1:EFI",
        "-u 1:AAAAAAAA-0000-0000-0000-000000000001",
        "-A 1:set:2",
        "-n 2:0:+32M",
        "-t 2:8300",
        "-c 2:root fs",
        "-u 2:AAAAAAAA-0000-0000-0000-000000000002",
        "-A 2:set:63",
        "-n 3:0:0",
        "-t 3:8200",
        "-c 3:swap",
        "-u 3:AAAAAAAA-0000-0000-0000-000000000003",
    ]
    .iter()
    .flat_map(|a| match a.split_once(' ') {
        // sgdisk takes "-n 1:..." as two arguments.
        Some((flag, val)) if a.starts_with('-') => vec![flag.to_string(), val.to_string()],
        _ => vec![a.to_string()],
    })
    .collect()
}

/// A 64 MiB image with [`MBR_SCRIPT`] on 512-byte sectors.
pub fn mbr_image(dir: &Path) -> PathBuf {
    let img = blank_image(dir, "mbr.img", 64 << 20);
    sfdisk_script(img.to_str().unwrap(), MBR_SCRIPT);
    img
}

/// A 64 MiB image with the [`sgdisk_args`] GPT on 512-byte sectors.
pub fn gpt_image(dir: &Path) -> PathBuf {
    let img = blank_image(dir, "gpt.img", 64 << 20);
    run(Command::new("sgdisk").args(sgdisk_args(2048)).arg(&img));
    img
}

/// A 64 MiB image with the [`sgdisk_args`] GPT written through a 4096-byte-sector
/// loop device.
pub fn gpt_image_4k(dir: &Path) -> PathBuf {
    let img = blank_image(dir, "gpt4k.img", 64 << 20);
    let lo = Loop::attach(&img, 4096, false);
    run(Command::new("sgdisk").args(sgdisk_args(256)).arg(&lo.dev));
    img
}

/// A 64 MiB image with [`MBR_SCRIPT`] written through a 4096-byte-sector loop device.
pub fn mbr_image_4k(dir: &Path) -> PathBuf {
    let img = blank_image(dir, "mbr4k.img", 64 << 20);
    let lo = Loop::attach(&img, 4096, false);
    sfdisk_script(&lo.dev, MBR_SCRIPT);
    img
}

/// One `sfdisk --json` partition: (number, start, size, type, bootable).
pub type SfdiskRow = (u32, u64, u64, String, bool);

/// `sfdisk --json` of a device or image: the label id and one row per partition.
pub fn sfdisk_json(target: &str) -> (String, Vec<SfdiskRow>) {
    let text = stdout(Command::new("sfdisk").args(["--json", target]));
    let v: serde_json::Value = serde_json::from_str(&text).expect("sfdisk --json output");
    let pt = &v["partitiontable"];
    let id = pt["id"].as_str().unwrap_or_default().to_string();
    let mut rows = Vec::new();
    for p in pt["partitions"].as_array().cloned().unwrap_or_default() {
        let node = p["node"].as_str().unwrap();
        let digits: String = node
            .chars()
            .rev()
            .take_while(|c| c.is_ascii_digit())
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        rows.push((
            digits.parse().unwrap(),
            p["start"].as_u64().unwrap(),
            p["size"].as_u64().unwrap(),
            p["type"].as_str().unwrap().to_string(),
            p["bootable"].as_bool().unwrap_or(false),
        ));
    }
    (id, rows)
}

/// The first whitespace-separated word of an `sgdisk -i` value.
pub fn word(map: &BTreeMap<String, String>, key: &str) -> String {
    map.get(key)
        .unwrap_or_else(|| panic!("sgdisk -i has no {key:?}: {map:?}"))
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// `sgdisk -p`: (first usable, last usable) sectors.
pub fn sgdisk_usable(target: &str) -> (u64, u64) {
    let out = stdout(Command::new("sgdisk").args(["-p", target]));
    let line = out
        .lines()
        .find(|l| l.starts_with("First usable sector is"))
        .unwrap_or_else(|| panic!("no usable-sector line in sgdisk -p:\n{out}"));
    let nums: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    (nums[0], nums[1])
}

pub fn read_bytes(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    let mut f = File::open(path).expect("open image");
    f.seek(SeekFrom::Start(offset)).unwrap();
    let mut buf = vec![0u8; len];
    f.read_exact(&mut buf).expect("read image");
    buf
}

pub fn write_bytes(path: &Path, offset: u64, bytes: &[u8]) {
    let mut f = OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open image");
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(bytes).expect("write image");
}

pub fn flip_byte(path: &Path, offset: u64) {
    let b = read_bytes(path, offset, 1)[0];
    write_bytes(path, offset, &[b ^ 0xff]);
}

pub fn u64_le(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

pub fn u32_le(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}

/// Changes the GPT entry arrays (primary and backup) with `edit` and fixes every CRC,
/// so the result is a well-formed GPT describing whatever `edit` made.
pub fn patch_gpt_entries(path: &Path, ss: u64, edit: impl Fn(&mut [u8])) {
    let size = std::fs::metadata(path).unwrap().len();
    for header_lba in [1, size / ss - 1] {
        let mut h = read_bytes(path, header_lba * ss, 92);
        let entries_lba = u64_le(&h, 72);
        let len = u32_le(&h, 80) as usize * u32_le(&h, 84) as usize;
        let mut entries = read_bytes(path, entries_lba * ss, len);
        edit(&mut entries);
        write_bytes(path, entries_lba * ss, &entries);
        h[88..92].copy_from_slice(&crc32fast::hash(&entries).to_le_bytes());
        h[16..20].fill(0);
        let crc = crc32fast::hash(&h);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        write_bytes(path, header_lba * ss, &h);
    }
}

/// The sectors of the EBR chain of an MBR image whose extended partition starts at
/// `ext_start`.
pub fn ebr_chain(path: &Path, ss: u64, ext_start: u64) -> Vec<u64> {
    let mut chain = vec![ext_start];
    loop {
        let ebr = read_bytes(path, chain.last().unwrap() * ss, 512);
        let link = &ebr[446 + 16..446 + 32];
        if link[4] == 0 {
            return chain;
        }
        chain.push(ext_start + u64::from(u32_le(link, 8)));
    }
}
