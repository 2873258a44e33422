//! Helpers shared by the end-to-end tests: fixtures made with the real tools
//! (sfdisk, mke2fs -d -E offset=, qemu-img) and runs of the real binary.

#![allow(dead_code)]

use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use snf_testkit::fixture::{run as run_tool, write_file, Disk, Mke2fs};

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_snf-mkimage")
}

pub use snf_testkit::fixture::{pseudo_random, require};

/// Run a tool, insist it succeeds, and return its standard output.
pub fn sh(program: &str, args: &[&str]) -> String {
    require(program);
    run_tool(Command::new(program).args(args))
}

/// Run snf-mkimage with `args` (stdin closed, output captured, not a terminal).
pub fn run(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run snf-mkimage")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A disk image with an MBR, one Linux partition from 1 MiB to the end, and an ext4
/// filesystem holding a minimal Debian root (enough for inspection to recognise it) and
/// `data_kib` KiB of pseudo-random data, so the image has real content to copy.
pub fn partitioned_raw(dir: &Path, name: &str, size_mib: u64, data_kib: usize) -> PathBuf {
    let tree = dir.join(format!("{name}.tree"));
    debian_root(&tree, "/dev/sda1 / ext4 errors=remount-ro 0 1\n");
    write_file(
        &tree,
        "/etc/shadow",
        "root:$6$salt$hash:19000:0:99999:7:::\nuser:$6$salt$hash2:19000:0:99999:7:::\n",
    );
    write_file(&tree, "/data.bin", pseudo_random(data_kib * 1024, 7));
    let disk = Disk::create(
        dir.join(name),
        size_mib << 20,
        "label: dos\nstart=2048, type=83\n",
    );
    disk.ext(1, &Mke2fs::ext4().tree(&tree));
    fs::remove_dir_all(&tree).unwrap();
    disk.into_path()
}

/// The files inspection recognises a Debian 12 root by (with a hostname), written into
/// `tree`; `fstab` is its `/etc/fstab`, which each fixture points at its own root.
pub fn debian_root(tree: &Path, fstab: &str) {
    write_file(tree, "/etc/hostname", "fixture\n");
    write_file(
        tree,
        "/etc/os-release",
        "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\n\
         VERSION_ID=\"12\"\nID=debian\n",
    );
    write_file(tree, "/etc/debian_version", "12.5\n");
    write_file(tree, "/etc/fstab", fstab);
}

/// `qemu-img convert -f raw -O fmt [-o opts] src dst`.
pub fn convert(src: &Path, fmt: &str, opts: Option<&str>, dst: &Path) {
    require("qemu-img");
    let mut args = vec!["convert", "-f", "raw", "-O", fmt];
    if let Some(o) = opts {
        args.extend(["-o", o]);
    }
    args.extend([src.to_str().unwrap(), dst.to_str().unwrap()]);
    sh("qemu-img", &args);
}

/// `qemu-img convert -f fmt -O raw src dst`: the reference result of a dump.
pub fn to_raw(src: &Path, fmt: &str, dst: &Path) {
    require("qemu-img");
    sh(
        "qemu-img",
        &[
            "convert",
            "-f",
            fmt,
            "-O",
            "raw",
            src.to_str().unwrap(),
            dst.to_str().unwrap(),
        ],
    );
}

/// SHA-256 of a file or block device, hex.
pub fn sha256(path: &Path) -> String {
    sh("sha256sum", &[path.to_str().unwrap()])
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Whether two files (or devices) hold exactly the same bytes.
pub fn same_bytes(a: &Path, b: &Path) -> bool {
    let (mut fa, mut fb) = (File::open(a).unwrap(), File::open(b).unwrap());
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let na = read_full(&mut fa, &mut ba);
        let nb = read_full(&mut fb, &mut bb);
        if na != nb || ba[..na] != bb[..nb] {
            return false;
        }
        if na == 0 {
            return true;
        }
    }
}

fn read_full(f: &mut File, buf: &mut [u8]) -> usize {
    let mut got = 0;
    while got < buf.len() {
        match f.read(&mut buf[got..]).unwrap() {
            0 => break,
            n => got += n,
        }
    }
    got
}

/// Names in `dir` (sorted), to check what a run left behind.
pub fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Whether a work directory (`.snf_image_creator.*`) was left in `dir`.
pub fn workdir_left(dir: &Path) -> bool {
    entries(dir)
        .iter()
        .any(|n| n.starts_with(".snf_image_creator."))
}

/// Check the four output files of a successful run to `out`, made from a source whose
/// raw bytes are in `reference`.
pub fn check_outputs(out: &Path, reference: &Path) {
    assert!(
        same_bytes(out, reference),
        "{} differs from the reference raw conversion",
        out.display()
    );
    let dir = out.parent().unwrap();
    let name = out.file_name().unwrap().to_str().unwrap();
    require("md5sum");
    run_tool(
        Command::new("md5sum")
            .args(["-c", &format!("{name}.md5sum")])
            .current_dir(dir),
    );
    let meta: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.join(format!("{name}.meta"))).unwrap())
            .unwrap();
    assert_eq!(meta["disk-format"], "diskdump");
    assert_eq!(meta["properties"]["PARTITION_TABLE"], "msdos");
    let variant = Command::new("sh")
        .args([
            "-c",
            &format!(". ./{name}.variant && printf '%s\\n%s\\n%s' \"$IMG_FORMAT\" \"$IMG_ID\" \"$IMG_PROPERTIES\""),
        ])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        variant.status.success(),
        "the .variant file does not source"
    );
    let text = String::from_utf8_lossy(&variant.stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "diskdump");
    assert_eq!(lines[1], out.to_str().unwrap());
    let props: serde_json::Value = serde_json::from_str(lines[2]).unwrap();
    assert_eq!(props, meta["properties"]);
}

/// A fresh temporary directory that the unprivileged test user can use too.
pub fn tempdir() -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix("snf-mkimage-test.")
        .tempdir()
        .unwrap();
    fs::set_permissions(d.path(), fs::Permissions::from_mode(0o755)).unwrap();
    d
}

/// Unmounts a small tmpfs when dropped.
pub struct SmallFs(pub PathBuf);

impl SmallFs {
    /// A tmpfs of `kib` KiB mounted on `dir` (created).
    pub fn mount(dir: &Path, kib: u64) -> SmallFs {
        fs::create_dir_all(dir).unwrap();
        sh(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={kib}k,mode=0755"),
                "tmpfs",
                dir.to_str().unwrap(),
            ],
        );
        SmallFs(dir.to_path_buf())
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Boot `img` under qemu (the suite's Debian guest, or an image made from it) and insist
/// that it reaches its login prompt.
pub fn assert_boots(img: &Path) {
    let guest = snf_testkit::debian_guest_info();
    let report = snf_testkit::boot_check(img, std::time::Duration::from_secs(600))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        report
            .console
            .contains(&format!("{} login:", guest.info.hostname)),
        "{}",
        report.console
    );
    eprintln!("{} booted in {:.1?}", img.display(), report.elapsed);
}
