//! Fixture plumbing shared by the crates' tests: running the real tools, writing guest
//! trees on the host, and making partitioned disk images with real filesystems in them
//! (sfdisk tables, `mke2fs -d` at an offset, mkswap) without mounting anything.
//!
//! Every helper panics with a message naming the tool and what it printed: a fixture
//! that cannot be made is a broken test machine, and the test must fail loudly, never
//! skip.
//!
//! ```no_run
//! use snf_testkit::fixture::{write_file, Disk, Mke2fs, MIB};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let tree = dir.path().join("tree");
//! write_file(&tree, "/etc/hostname", "fixture\n");
//! let disk = Disk::create(
//!     dir.path().join("disk.img"),
//!     80 * MIB,
//!     "label: dos\nstart=2048, size=63M, type=83\nsize=16M, type=82\n",
//! );
//! disk.ext(1, &Mke2fs::ext4().tree(&tree)).swap(2, None);
//! ```

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// One mebibyte.
pub const MIB: u64 = 1 << 20;

/// Fail the test (never skip it) when `tool` is not on `PATH`.
pub fn require(tool: &str) {
    assert!(
        snf_core::command::exists(tool),
        "{tool} is not installed; run scripts/setup.sh (packages in scripts/apt-packages.txt)"
    );
}

/// Run `cmd` and return its standard output; panic with its output unless it exits 0.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output();
    checked(cmd, out)
}

/// Run `cmd` with `input` on its standard input and return its standard output; panic
/// with its output unless it exits 0.
pub fn run_stdin(cmd: &mut Command, input: &str) -> String {
    let child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let out = child.and_then(|mut child| {
        let mut stdin = child.stdin.take().expect("stdin is piped");
        // A tool that exits before reading everything reports why on stderr.
        let _ = stdin.write_all(input.as_bytes());
        drop(stdin);
        child.wait_with_output()
    });
    checked(cmd, out)
}

fn checked(cmd: &Command, out: std::io::Result<Output>) -> String {
    let out = out.unwrap_or_else(|e| {
        panic!(
            "cannot run {:?}: {e} (scripts/setup.sh installs the test tools)",
            cmd.get_program()
        )
    });
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Where the guest path `guest_path` (`/etc/fstab`, leading slash optional) of the tree
/// rooted at `root` is on the host.
pub fn host_path(root: &Path, guest_path: &str) -> PathBuf {
    root.join(guest_path.trim_start_matches('/'))
}

/// Write `data` to `guest_path` of the tree at `root`, creating the directories on the
/// way; returns the host path.
pub fn write_file(root: &Path, guest_path: &str, data: impl AsRef<[u8]>) -> PathBuf {
    let path = host_path(root, guest_path);
    make_parent(&path);
    fs::write(&path, data).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

/// Make `guest_path` of the tree at `root` a symbolic link to `target` (stored as
/// given, so an absolute target is absolute inside the guest); returns the host path.
pub fn write_symlink(root: &Path, guest_path: &str, target: impl AsRef<Path>) -> PathBuf {
    let path = host_path(root, guest_path);
    make_parent(&path);
    std::os::unix::fs::symlink(target.as_ref(), &path)
        .unwrap_or_else(|e| panic!("symlink {}: {e}", path.display()));
    path
}

fn make_parent(path: &Path) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir {}: {e}", parent.display()));
    }
}

/// `len` deterministic, incompressible bytes (xorshift64 from `seed`): file content
/// that compression and zero detection cannot shortcut, the same on every run.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// A new sparse file of `size` bytes at `path` (an existing one is truncated first).
pub fn sparse_file(path: &Path, size: u64) {
    File::create(path)
        .and_then(|f| f.set_len(size))
        .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
}

/// Overwrite `data.len()` bytes of the existing file `file` at byte `offset`.
pub fn write_at(file: &Path, offset: u64, data: &[u8]) {
    OpenOptions::new()
        .write(true)
        .open(file)
        .and_then(|f| f.write_all_at(data, offset))
        .unwrap_or_else(|e| panic!("write {} at {offset}: {e}", file.display()));
}

/// OR `bits` into the superblock feature word at `word` (0x5c compat, 0x60 incompat,
/// 0x64 ro_compat) of the ext filesystem at byte `offset` of `img`, keeping a
/// metadata_csum superblock's checksum valid so that only the feature can be what
/// libext2fs refuses.
pub fn set_ext_feature_bits(img: &Path, offset: u64, word: usize, bits: u32) {
    const RO_COMPAT_METADATA_CSUM: u32 = 0x400;
    let mut sb = [0u8; 1024];
    File::open(img)
        .and_then(|f| f.read_exact_at(&mut sb, offset + 1024))
        .unwrap_or_else(|e| panic!("read the superblock of {}: {e}", img.display()));
    let le = |sb: &[u8], at: usize| u32::from_le_bytes(sb[at..at + 4].try_into().unwrap());
    let csum = le(&sb, 0x64) & RO_COMPAT_METADATA_CSUM != 0;
    if csum {
        assert_eq!(
            crc32c(&sb[..0x3fc]),
            le(&sb, 0x3fc),
            "the checksum as the test computes it"
        );
    }
    let value = le(&sb, word) | bits;
    sb[word..word + 4].copy_from_slice(&value.to_le_bytes());
    if csum {
        let sum = crc32c(&sb[..0x3fc]);
        sb[0x3fc..].copy_from_slice(&sum.to_le_bytes());
    }
    write_at(img, offset + 1024, &sb);
}

/// CRC32C (Castagnoli) as ext4's metadata checksums use it: seeded with all ones, no
/// final inversion.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    crc
}

/// Copy the file `src` into `img` at byte `offset`, leaving out its all-zero 64 KiB
/// chunks so a sparse image stays sparse: the area in `img` must hold zeros already.
pub fn copy_into(src: &Path, img: &Path, offset: u64) {
    const CHUNK: usize = 64 * 1024;
    let data = fs::read(src).unwrap_or_else(|e| panic!("read {}: {e}", src.display()));
    let out = OpenOptions::new()
        .write(true)
        .open(img)
        .unwrap_or_else(|e| panic!("open {}: {e}", img.display()));
    for (i, chunk) in data.chunks(CHUNK).enumerate() {
        if chunk.iter().any(|&b| b != 0) {
            out.write_all_at(chunk, offset + (i * CHUNK) as u64)
                .unwrap_or_else(|e| panic!("write {}: {e}", img.display()));
        }
    }
}

/// `img?offset=N`, the name e2fsprogs tools take for a filesystem inside an image
/// (just `img` at offset 0).
pub fn ext_spec(img: &Path, offset: u64) -> OsString {
    let mut spec = img.as_os_str().to_owned();
    if offset != 0 {
        spec.push(format!("?offset={offset}"));
    }
    spec
}

/// Assert that `e2fsck -fn` finds nothing to fix in the filesystem at byte `offset` of
/// `img`; `what` says in the panic message which filesystem or moment it was.
pub fn assert_e2fsck_clean(img: &Path, offset: u64, what: &str) {
    require("e2fsck");
    let spec = ext_spec(img, offset);
    let out = Command::new("e2fsck")
        .arg("-fn")
        .arg(&spec)
        .output()
        .unwrap_or_else(|e| panic!("cannot run e2fsck: {e}"));
    assert!(
        out.status.success(),
        "{what}: e2fsck -fn {} found problems ({}):\n{}{}",
        spec.to_string_lossy(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Assert that the ext filesystem at byte `offset` of `img` is consistent (`e2fsck
/// -fn`) and marked clean in its superblock (`tune2fs -l`), as a cleanly unmounted
/// filesystem is; `what` names it in the panic message.
pub fn assert_ext_clean(img: &Path, offset: u64, what: &str) {
    assert_e2fsck_clean(img, offset, what);
    require("tune2fs");
    let tune = run(Command::new("tune2fs").arg("-l").arg(ext_spec(img, offset)));
    assert!(
        tune.lines()
            .any(|l| l.starts_with("Filesystem state:") && l.ends_with(" clean")),
        "{what}: the superblock does not say clean:\n{tune}"
    );
}

/// Assert that `sfdisk --verify` finds no errors in the table of `target` (an image
/// file or a block device).
pub fn assert_sfdisk_verifies(target: &str) {
    require("sfdisk");
    let out = run(Command::new("sfdisk").args(["--verify", target]));
    assert!(
        out.contains("No errors detected"),
        "sfdisk --verify {target}:\n{out}"
    );
}

/// Assert that `sgdisk -v` finds no problems in the GPT of `target`.
pub fn assert_sgdisk_verifies(target: &str) {
    require("sgdisk");
    let out = run(Command::new("sgdisk").args(["-v", target]));
    assert!(
        out.contains("No problems found") && !out.contains("Problem:"),
        "sgdisk -v {target}:\n{out}"
    );
}

/// `sgdisk -i N` of `target` as a map ("Partition unique GUID" -> "AAAA...").
pub fn sgdisk_info(target: &str, number: u32) -> BTreeMap<String, String> {
    require("sgdisk");
    run(Command::new("sgdisk").args(["-i", &number.to_string(), target]))
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// An `mke2fs` command being put together: `mke2fs -q -F <options> [-d TREE]
/// -E offset=N IMG SIZE`.
#[derive(Debug, Clone)]
pub struct Mke2fs {
    args: Vec<OsString>,
    tree: Option<PathBuf>,
}

impl Mke2fs {
    /// A filesystem of type `fs_type` (`ext2`, `ext3`, `ext4`), mke2fs's defaults
    /// otherwise.
    pub fn new(fs_type: &str) -> Mke2fs {
        Mke2fs::with_args(&["-t", fs_type])
    }

    /// An ext4 filesystem.
    pub fn ext4() -> Mke2fs {
        Mke2fs::new("ext4")
    }

    /// A filesystem made with exactly the mke2fs options `args` (which should
    /// include `-t TYPE`).
    pub fn with_args<S: AsRef<OsStr>>(args: &[S]) -> Mke2fs {
        Mke2fs {
            args: args.iter().map(|a| a.as_ref().to_owned()).collect(),
            tree: None,
        }
    }

    /// One more mke2fs option (or option value).
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Mke2fs {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// The filesystem UUID (`-U`).
    pub fn uuid(self, uuid: &str) -> Mke2fs {
        self.arg("-U").arg(uuid)
    }

    /// The volume label (`-L`).
    pub fn label(self, label: &str) -> Mke2fs {
        self.arg("-L").arg(label)
    }

    /// The block size in bytes (`-b`).
    pub fn block_size(self, bytes: u32) -> Mke2fs {
        self.arg("-b").arg(bytes.to_string())
    }

    /// Populate the filesystem from the host directory `tree` (`-d`).
    pub fn tree(mut self, tree: impl Into<PathBuf>) -> Mke2fs {
        self.tree = Some(tree.into());
        self
    }

    /// Make the filesystem in `img` (created when missing) at byte `offset`, `size`
    /// long in mke2fs's syntax (`16M`, `15360k`); the rest of `img` is left alone.
    pub fn make(&self, img: &Path, offset: u64, size: &str) {
        require("mke2fs");
        let mut cmd = Command::new("mke2fs");
        cmd.args(["-q", "-F"]).args(&self.args);
        if let Some(tree) = &self.tree {
            cmd.arg("-d").arg(tree);
        }
        cmd.arg("-E")
            .arg(format!("offset={offset}"))
            .arg(img)
            .arg(size);
        run(&mut cmd);
    }
}

/// A swap area of `size` bytes at byte `offset` of `img` (with the swap UUID `uuid`,
/// random when `None`). mkswap works on whole files only: the area is made in a
/// temporary file next to `img` and copied in by [`copy_into`], so it must hold zeros.
pub fn mkswap_at(img: &Path, offset: u64, size: u64, uuid: Option<&str>) {
    require("mkswap");
    let dir = img.parent().filter(|d| !d.as_os_str().is_empty());
    let tmp = tempfile::Builder::new()
        .prefix(".swap.")
        .tempfile_in(dir.unwrap_or(Path::new(".")))
        .unwrap_or_else(|e| panic!("temporary swap file next to {}: {e}", img.display()));
    tmp.as_file()
        .set_len(size)
        .unwrap_or_else(|e| panic!("size {}: {e}", tmp.path().display()));
    let mut cmd = Command::new("mkswap");
    if let Some(uuid) = uuid {
        cmd.args(["-U", uuid]);
    }
    run(cmd.arg(tmp.path()));
    copy_into(tmp.path(), img, offset);
}

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// The mount point, as the kernel spells it (absolute, no symbolic links).
    pub point: String,
    /// The filesystem type (`ext4`, `fuse.snf-image-creator` ...).
    pub fs_type: String,
    /// The mount source (the device, or the name a FUSE filesystem gave).
    pub source: String,
}

/// Everything mounted, from `/proc/self/mountinfo`.
pub fn mounts() -> Vec<MountEntry> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_else(|e| panic!("read /proc/self/mountinfo: {e}"))
        .lines()
        .filter_map(|l| {
            let (before, after) = l.split_once(" - ")?;
            let mut tail = after.split(' ');
            Some(MountEntry {
                point: before.split(' ').nth(4)?.to_owned(),
                fs_type: tail.next()?.to_owned(),
                source: tail.next()?.to_owned(),
            })
        })
        .collect()
}

/// Whether something is mounted at `dir`.
pub fn is_mounted(dir: &Path) -> bool {
    let want = dir.to_string_lossy();
    mounts().iter().any(|m| m.point == want)
}

/// The mounts at or under `dir` (tests that run at the same time each look at their own
/// directory, never at the whole system).
pub fn mounts_under(dir: &Path) -> Vec<MountEntry> {
    let prefix = dir.to_string_lossy();
    mounts()
        .into_iter()
        .filter(|m| m.point.starts_with(prefix.as_ref()))
        .collect()
}

/// Make the example disk of `scripts/make-example.sh` (MBR, a Debian-like ext4 root
/// with things for system preparation to clean, swap last) at `img`; no root needed.
pub fn example_disk(img: &Path) {
    run(Command::new(crate::workspace_root().join("scripts/make-example.sh")).arg(img));
}

/// A loop device over a file, detached when dropped. Needs root and the loop driver.
#[derive(Debug)]
pub struct Loop {
    /// The device, `/dev/loopN`.
    pub dev: String,
}

impl Loop {
    /// Attach `file` with `sector_size`-byte logical sectors (read-only when
    /// `read_only`).
    pub fn attach(file: &Path, sector_size: u32, read_only: bool) -> Loop {
        require("losetup");
        let mut cmd = Command::new("losetup");
        cmd.args([
            "--find",
            "--show",
            "--sector-size",
            &sector_size.to_string(),
        ]);
        if read_only {
            cmd.arg("--read-only");
        }
        let dev = run(cmd.arg(file)).trim().to_string();
        assert!(
            dev.starts_with("/dev/loop"),
            "losetup gave no device (loop-device fixtures need root): {dev:?}"
        );
        Loop { dev }
    }

    /// The device as a path.
    pub fn path(&self) -> &Path {
        Path::new(&self.dev)
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
    }
}

/// Write the partition table described by the sfdisk `script` to `target` (an image
/// file or a block device), without asking the kernel to re-read it.
pub fn sfdisk(target: &Path, script: &str) {
    require("sfdisk");
    run_stdin(
        Command::new("sfdisk")
            .args(["-q", "--no-reread", "--no-tell-kernel"])
            .arg(target),
        script,
    );
}

/// A disk image file with a partition table written by sfdisk, whose partitions the
/// methods fill with filesystems.
#[derive(Debug)]
pub struct Disk {
    path: PathBuf,
    /// (number, byte offset, byte size), as sfdisk reads the table back.
    parts: Vec<(u32, u64, u64)>,
}

impl Disk {
    /// A sparse image of `size` bytes at `path` with 512-byte sectors, partitioned by
    /// the sfdisk `script`.
    pub fn create(path: impl Into<PathBuf>, size: u64, script: &str) -> Disk {
        Disk::create_with_sectors(path, size, 512, script)
    }

    /// As [`Disk::create`], with the table written for `sector_size`-byte sectors
    /// (through a loop device, so root is needed, when that is not 512).
    pub fn create_with_sectors(
        path: impl Into<PathBuf>,
        size: u64,
        sector_size: u32,
        script: &str,
    ) -> Disk {
        let path = path.into();
        sparse_file(&path, size);
        let read = |target: &Path| {
            sfdisk(target, script);
            let (_, unit, entries) = crate::read_table(target)
                .unwrap_or_else(|e| panic!("reading back the fixture's table: {e}"));
            entries
                .iter()
                .map(|p| (p.number, p.start * unit, p.size * unit))
                .collect()
        };
        let parts = if sector_size == 512 {
            read(&path)
        } else {
            let lo = Loop::attach(&path, sector_size, false);
            read(lo.path())
        };
        Disk { path, parts }
    }

    /// The image file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The image file, for the test to keep.
    pub fn into_path(self) -> PathBuf {
        self.path
    }

    fn partition(&self, number: u32) -> (u64, u64) {
        self.parts
            .iter()
            .find(|p| p.0 == number)
            .map(|p| (p.1, p.2))
            .unwrap_or_else(|| panic!("the fixture's table has no partition {number}"))
    }

    /// Byte offset of partition `number`.
    pub fn offset(&self, number: u32) -> u64 {
        self.partition(number).0
    }

    /// Size in bytes of partition `number`.
    pub fn size(&self, number: u32) -> u64 {
        self.partition(number).1
    }

    /// Make the filesystem `mkfs` describes in partition `number`, filling it.
    pub fn ext(&self, number: u32, mkfs: &Mke2fs) -> &Disk {
        let (offset, size) = self.partition(number);
        mkfs.make(&self.path, offset, &format!("{}k", size / 1024));
        self
    }

    /// Make partition `number` an xfs filesystem with UUID `uuid`, holding a copy of the
    /// host directory `tree` (see [`xfs_at`]).
    pub fn xfs(&self, number: u32, uuid: &str, tree: &Path) -> &Disk {
        let (offset, size) = self.partition(number);
        xfs_at(&self.path, offset, size, uuid, tree);
        self
    }

    /// Make partition `number` a btrfs filesystem with UUID `uuid` holding the host
    /// directory `tree` (`mkfs.btrfs --rootdir`), with each of `subvolumes` (top-level
    /// directories of the tree) then made a subvolume holding the same files, as
    /// Fedora's installer lays out `root` and `home` (this btrfs-progs has no
    /// `--subvol`: done on a loop mount with `btrfs subvolume create` and `cp -a`).
    pub fn btrfs(&self, number: u32, uuid: &str, tree: &Path, subvolumes: &[&str]) -> &Disk {
        require("mkfs.btrfs");
        let (offset, size) = self.partition(number);
        let dir = tempfile_dir(&self.path);
        let fs = dir.join("btrfs.fs");
        sparse_file(&fs, size);
        run(Command::new("mkfs.btrfs")
            .args(["-q", "-f", "-U", uuid, "--rootdir"])
            .arg(tree)
            .arg(&fs));
        if !subvolumes.is_empty() {
            require("btrfs");
            let m = dir.join("m");
            std::fs::create_dir_all(&m).unwrap();
            run(Command::new("mount").args(["-o", "loop"]).arg(&fs).arg(&m));
            for s in subvolumes {
                let new = m.join(format!("{s}.subvol"));
                run(Command::new("btrfs")
                    .args(["-q", "subvolume", "create"])
                    .arg(&new));
                run(Command::new("cp")
                    .arg("-a")
                    .arg(m.join(s).join("."))
                    .arg(&new));
                std::fs::remove_dir_all(m.join(s)).unwrap();
                std::fs::rename(&new, m.join(s)).unwrap();
            }
            run(Command::new("umount").arg(&m));
        }
        copy_into(&fs, &self.path, offset);
        std::fs::remove_dir_all(&dir).unwrap();
        self
    }

    /// Make partition `number` a swap area (swap UUID `uuid`, random when `None`).
    pub fn swap(&self, number: u32, uuid: Option<&str>) -> &Disk {
        let (offset, size) = self.partition(number);
        mkswap_at(&self.path, offset, size, uuid);
        self
    }
}

/// Whether process `pid` (as a script wrote it, maybe with a newline) has ended, or is
/// a zombie waiting for its parent. A kill is delivered asynchronously, so a process
/// just killed gets a few seconds to go.
pub fn process_ended(pid: &str) -> bool {
    let running = || match fs::read_to_string(format!("/proc/{}/stat", pid.trim())) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    };
    for _ in 0..500 {
        if !running() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    false
}

/// An image qemu-img made of several files.
pub struct MultiFileImage {
    /// What layout it is (`vmdk-split-sparse`, `qcow2-over-raw` ...).
    pub label: &'static str,
    /// Its qemu-img format.
    pub format: &'static str,
    /// The file to give as the source.
    pub top: PathBuf,
    /// The other files it reads: extents, data file, backing files.
    pub others: Vec<PathBuf>,
}

/// Every multi-file layout qemu-img creates, each holding the disk `raw` byte for byte,
/// each in its own directory under `dir`: split sparse, split flat and monolithic flat
/// VMDK, qcow2 with an external data file (plain and `data_file_raw`), and qcow2 over a
/// raw and over a qcow2 backing file. The overlays hold data of their own (the first
/// 64 KiB, zeroed in their backing file), so reading only the backing file would show.
pub fn multi_file_images(raw: &Path, dir: &Path) -> Vec<MultiFileImage> {
    require("qemu-img");
    // `qemu-img convert -f raw -O format [-o opts] src dst`
    let convert = |format: &str, opts: Option<&str>, src: &Path, dst: &Path| {
        let mut cmd = Command::new("qemu-img");
        cmd.args(["convert", "-f", "raw", "-O", format]);
        if let Some(opts) = opts {
            cmd.args(["-o", opts]);
        }
        run(cmd.arg(src).arg(dst));
    };
    let mut images = Vec::new();
    for (label, subformat) in [
        ("vmdk-split-sparse", "twoGbMaxExtentSparse"),
        ("vmdk-split-flat", "twoGbMaxExtentFlat"),
        ("vmdk-flat", "monolithicFlat"),
    ] {
        let sub = dir.join(label);
        fs::create_dir_all(&sub).unwrap();
        let top = sub.join("disk.vmdk");
        let opts = format!("subformat={subformat}");
        convert("vmdk", Some(&opts), raw, &top);
        images.push(MultiFileImage {
            label,
            format: "vmdk",
            others: others_in(&sub, &top),
            top,
        });
    }
    for (label, raw_data) in [("qcow2-data-file", false), ("qcow2-data-file-raw", true)] {
        let sub = dir.join(label);
        fs::create_dir_all(&sub).unwrap();
        let top = sub.join("disk.qcow2");
        let data = sub.join("data.bin");
        let mut opts = format!("data_file={}", data.display());
        if raw_data {
            opts.push_str(",data_file_raw=on");
        }
        convert("qcow2", Some(&opts), raw, &top);
        images.push(MultiFileImage {
            label,
            format: "qcow2",
            others: vec![data],
            top,
        });
    }
    for (label, base_format) in [("qcow2-over-raw", "raw"), ("qcow2-over-qcow2", "qcow2")] {
        let sub = dir.join(label);
        fs::create_dir_all(&sub).unwrap();
        // The overlay starts over an exact copy, then a safe rebase onto a base that
        // lacks the first 64 KiB writes them into the overlay.
        let copy = sub.join("copy.raw");
        fs::copy(raw, &copy).unwrap();
        let holed = sub.join("holed.raw");
        fs::copy(raw, &holed).unwrap();
        write_at(&holed, 0, &[0u8; 64 << 10]);
        let base = sub.join(format!("base.{base_format}"));
        if base_format == "raw" {
            fs::rename(&holed, &base).unwrap();
        } else {
            convert("qcow2", None, &holed, &base);
            fs::remove_file(&holed).unwrap();
        }
        let top = sub.join("disk.qcow2");
        run(Command::new("qemu-img")
            .args(["create", "-f", "qcow2", "-F", "raw", "-b"])
            .arg(&copy)
            .arg(&top));
        run(Command::new("qemu-img")
            .args(["rebase", "-f", "qcow2", "-F", base_format, "-b"])
            .arg(&base)
            .arg(&top));
        fs::remove_file(&copy).unwrap();
        images.push(MultiFileImage {
            label,
            format: "qcow2",
            others: vec![base],
            top,
        });
    }
    images
}

fn others_in(dir: &Path, top: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p != top)
        .collect();
    v.sort();
    v
}

/// An xfs filesystem of `size` bytes with UUID `uuid` at byte `offset` of `img`, holding
/// a copy of the host directory `tree` (modes, owners, symlinks): `mkfs.xfs -p` with a
/// prototype file written from the tree, in a scratch file copied in.
pub fn xfs_at(img: &Path, offset: u64, size: u64, uuid: &str, tree: &Path) {
    require("mkfs.xfs");
    let dir = tempfile_dir(img);
    let proto = dir.join("xfs.proto");
    let mut text = String::from("/dev/null\n0 0\n");
    proto_dir(tree, &mut text, "d--755 0 0\n");
    std::fs::write(&proto, text).unwrap();
    let fs = dir.join("xfs.fs");
    sparse_file(&fs, size);
    run(Command::new("mkfs.xfs")
        .args(["-q", "-f", "-m"])
        .arg(format!("uuid={uuid}"))
        .arg("-p")
        .arg(&proto)
        .arg(&fs));
    copy_into(&fs, img, offset);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A scratch directory next to `img` (fixtures are large: not in a small /tmp).
fn tempfile_dir(img: &Path) -> PathBuf {
    let parent = img
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let dir = parent.join(format!(
        ".{}.scratch",
        img.file_name().unwrap().to_string_lossy()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The `mkfs.xfs -p` prototype lines for the host directory `dir` (whose own line is
/// `head`), recursively: regular files, directories and symlinks with their modes and
/// owners.
fn proto_dir(dir: &Path, out: &mut String, head: &str) {
    use std::os::unix::fs::MetadataExt;
    out.push_str(head);
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        let m = std::fs::symlink_metadata(&p).unwrap();
        let name = p
            .file_name()
            .unwrap()
            .to_str()
            .expect("UTF-8 fixture names");
        assert!(
            !name.contains(char::is_whitespace),
            "mkfs.xfs prototypes cannot name {name:?}"
        );
        let perm = m.mode() & 0o777;
        let suid = if m.mode() & 0o4000 != 0 { 'u' } else { '-' };
        let sgid = if m.mode() & 0o2000 != 0 { 'g' } else { '-' };
        let own = format!("{perm:03o} {} {}", m.uid(), m.gid());
        if m.file_type().is_symlink() {
            let t = std::fs::read_link(&p).unwrap();
            out.push_str(&format!("{name} l{suid}{sgid}{own} {}\n", t.display()));
        } else if m.is_dir() {
            proto_dir(&p, out, &format!("{name} d{suid}{sgid}{own}\n"));
        } else {
            out.push_str(&format!("{name} -{suid}{sgid}{own} {}\n", p.display()));
        }
    }
    out.push_str("$\n");
}
