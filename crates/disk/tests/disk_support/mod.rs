//! Fixtures shared by the media, snapshot and dump tests: raw disks with known content
//! made in temporary directories, converted with the real qemu-img; loop devices.
#![allow(dead_code)]

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Size of the standard fixture disk.
pub const DISK: u64 = 64 << 20;

/// Where the fixture has data: `(offset, length)`; everything else is a hole.
pub const EXTENTS: [(u64, u64); 4] = [
    (0, 1 << 20),
    (20 << 20, 3 << 20),
    (40 << 20, 64 << 10),
    (DISK - (8 << 10), 8 << 10),
];

// Not every test binary uses the loop device.
#[allow(unused_imports)]
pub use snf_testkit::fixture::{pseudo_random, require, run, Loop};

/// A sparse raw disk of [`DISK`] bytes with data at [`EXTENTS`].
pub fn raw_fixture(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    let f = File::create(&p).unwrap();
    f.set_len(DISK).unwrap();
    for (i, (off, len)) in EXTENTS.iter().enumerate() {
        f.write_all_at(&pseudo_random(*len as usize, i as u64 + 1), *off)
            .unwrap();
    }
    f.sync_all().unwrap();
    p
}

/// The formats the tests cover: (label, qemu-img -O format, -o options, expected probe).
pub const FORMATS: [(&str, &str, &str, &str); 7] = [
    ("raw", "raw", "", "raw"),
    ("qcow2", "qcow2", "", "qcow2"),
    ("vmdk", "vmdk", "", "vmdk"),
    (
        "vpc-dynamic",
        "vpc",
        "subformat=dynamic,force_size=on",
        "vpc",
    ),
    ("vpc-fixed", "vpc", "subformat=fixed,force_size=on", "vpc"),
    ("vdi", "vdi", "", "vdi"),
    ("vhdx", "vhdx", "", "vhdx"),
];

/// Convert `raw` to `fmt` with qemu-img (options `opts`), into `dir/label.img`.
pub fn convert_to(raw: &Path, dir: &Path, label: &str, fmt: &str, opts: &str) -> PathBuf {
    require("qemu-img");
    let out = dir.join(format!("{label}.img"));
    let mut cmd = Command::new("qemu-img");
    cmd.args(["convert", "-f", "raw", "-O", fmt]);
    if !opts.is_empty() {
        cmd.args(["-o", opts]);
    }
    cmd.arg(raw).arg(&out);
    run(&mut cmd);
    out
}

/// `qemu-img convert -f FMT -O raw` of `src`, the reference the working disk must equal.
pub fn reference_raw(src: &Path, fmt: &str, dir: &Path) -> PathBuf {
    let out = dir.join(format!(
        "{}.reference.raw",
        src.file_name().unwrap().to_string_lossy()
    ));
    run(Command::new("qemu-img")
        .args(["convert", "-f", fmt, "-O", "raw"])
        .arg(src)
        .arg(&out));
    out
}

/// Compare `len` bytes of two readers chunk by chunk; panic at the first difference.
pub fn assert_same_bytes(a: &File, b: &File, len: u64, what: &str) {
    let mut x = vec![0u8; 1 << 20];
    let mut y = vec![0u8; 1 << 20];
    let mut off = 0u64;
    while off < len {
        let n = (len - off).min(x.len() as u64) as usize;
        read_at_or_zero(a, &mut x[..n], off);
        read_at_or_zero(b, &mut y[..n], off);
        if x[..n] != y[..n] {
            let i = (0..n).find(|&i| x[i] != y[i]).unwrap();
            panic!("{what}: first difference at byte {}", off + i as u64);
        }
        off += n as u64;
    }
}

fn read_at_or_zero(f: &File, buf: &mut [u8], off: u64) {
    let mut done = 0;
    while done < buf.len() {
        let n = f.read_at(&mut buf[done..], off + done as u64).unwrap();
        if n == 0 {
            buf[done..].fill(0);
            return;
        }
        done += n;
    }
}

/// `sha256sum` of a file or device.
pub fn sha256(p: &Path) -> String {
    require("sha256sum");
    run(Command::new("sha256sum").arg(p))
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// `md5sum` of a file.
pub fn md5sum(p: &Path) -> String {
    run(Command::new("md5sum").arg(p))
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Bytes allocated on disk.
pub fn allocated(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().blocks() * 512
}

pub fn read_all(p: &Path) -> Vec<u8> {
    let mut v = Vec::new();
    File::open(p).unwrap().read_to_end(&mut v).unwrap();
    v
}

pub fn open_rw(p: &Path) -> File {
    OpenOptions::new().read(true).write(true).open(p).unwrap()
}

/// A tmpfs of `mib` MiB mounted on a fresh directory (needs root), unmounted on drop.
pub struct SmallFs {
    pub dir: tempfile::TempDir,
}

impl SmallFs {
    pub fn new(mib: u64) -> SmallFs {
        let dir = tempfile::tempdir().unwrap();
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path()));
        SmallFs { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn entries(&self) -> Vec<String> {
        std::fs::read_dir(self.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}
