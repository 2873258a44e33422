//! The suite's Debian guest with its root on LVM (`debian12-lvm.raw`: p1 ext4 `/boot`,
//! p2 the last partition, an LVM PV holding VG `snfvg` with LV `root` then LV `swap`)
//! through the binary, checked with independent tools only: the LVM tools on a
//! read-only loop device (metadata only: this kernel has no device-mapper), e2fsprogs
//! at the LVs' byte offsets, and qemu booting the result before and after snf-image-style
//! growth of the last partition.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use snf_testkit::fixture::{assert_ext_clean, assert_sfdisk_verifies, run as run_tool};
use snf_testkit::{debian_guest_info, partitions, LvmGuestImage, PartitionEntry};

const MIB: u64 = 1 << 20;

fn props_of(out: &Path) -> serde_json::Value {
    let text = fs::read_to_string(format!("{}.meta", out.display())).unwrap();
    serde_json::from_str::<serde_json::Value>(&text).unwrap()["properties"].clone()
}

/// What every run on the LVM guest must report: the root is the LV `snfvg/root`, found
/// on the PV's partition; the swap LV is kept (it is not a partition snf-image could
/// re-create), so there is no `SWAP`.
fn assert_lvm_props(props: &serde_json::Value, lay: &LvmGuestImage) {
    assert_eq!(props["OSFAMILY"], "linux", "{props}");
    assert_eq!(props["OS"], "debian", "{props}");
    assert_eq!(
        props["ROOT_PARTITION"],
        lay.pv_partition.to_string(),
        "{props}"
    );
    assert_eq!(props["ROOT_LV"], lay.root_vg_lv(), "{props}");
    assert!(props.get("SWAP").is_none(), "SWAP set: {props}");
}

fn partition(disk: &Path, number: u32) -> PartitionEntry {
    let (label, parts) = partitions(disk).unwrap();
    assert_eq!(label, "dos", "{}", disk.display());
    parts
        .into_iter()
        .find(|p| p.number == number)
        .unwrap_or_else(|| panic!("{}: no partition {number}", disk.display()))
}

/// A partition holding an LVM PV, attached to a loop device of its own (read-only unless
/// asked) that the LVM tools, under a private configuration, are the only device they
/// see. The tools never activate anything (`--driverloaded n`).
struct Pv {
    dev: String,
    /// Holds `lvm.conf`: a filter accepting only [`Pv::dev`], no backups, no devices file.
    conf: tempfile::TempDir,
    /// Byte offset of the partition in its disk.
    offset: u64,
}

impl Pv {
    fn attach(disk: &Path, number: u32, writable: bool) -> Pv {
        let p = partition(disk, number);
        let offset = p.start * 512;
        let mut cmd = Command::new("losetup");
        if !writable {
            cmd.arg("-r");
        }
        require("losetup");
        let dev = run_tool(
            cmd.args(["-f", "--show", "-o"])
                .arg(offset.to_string())
                .arg("--sizelimit")
                .arg((p.size * 512).to_string())
                .arg(disk),
        )
        .trim()
        .to_string();
        let conf = tempfile::tempdir().unwrap();
        fs::write(
            conf.path().join("lvm.conf"),
            format!(
                "devices {{ filter = [ \"a|^{dev}$|\", \"r|.*|\" ] \
                 obtain_device_list_from_udev = 0 use_devicesfile = 0 }}\n\
                 activation {{ udev_sync = 0 udev_rules = 0 }}\n\
                 backup {{ backup = 0 archive = 0 }}\n"
            ),
        )
        .unwrap();
        Pv { dev, conf, offset }
    }

    /// Run LVM tool `tool` (`lvs`, `vgck`, ...) and return its standard output; panic
    /// with its output unless it exits 0.
    fn lvm(&self, tool: &str, args: &[&str]) -> String {
        require(tool);
        run_tool(
            Command::new(tool)
                .args(args)
                .arg("--driverloaded")
                .arg("n")
                .env("LVM_SYSTEM_DIR", self.conf.path())
                .env("LVM_SUPPRESS_FD_WARNINGS", "1")
                .stdin(Stdio::null()),
        )
    }

    /// One field of a `--noheadings --units b --nosuffix` report, as a number.
    fn number(&self, tool: &str, field: &str, target: &str) -> u64 {
        let out = self.lvm(
            tool,
            &[
                "--noheadings",
                "--units",
                "b",
                "--nosuffix",
                "-o",
                field,
                target,
            ],
        );
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{tool} -o {field} {target}: {out:?}"))
    }

    /// `vgck` and `pvck` accept the VG and the PV.
    fn assert_clean(&self, vg: &str) {
        self.lvm("vgck", &[vg]);
        self.lvm("pvck", &[&self.dev]);
    }

    /// The LVs of `vg`: name -> their segments' `(first PE, PE count)` on this PV.
    fn lvs(&self, vg: &str) -> Vec<(String, Vec<(u64, u64)>)> {
        let out = self.lvm(
            "lvs",
            &[
                "--noheadings",
                "--segments",
                "-o",
                "lv_name,seg_pe_ranges",
                vg,
            ],
        );
        let mut lvs: Vec<(String, Vec<(u64, u64)>)> = Vec::new();
        for line in out.lines().filter(|l| !l.trim().is_empty()) {
            let mut f = line.split_whitespace();
            let name = f.next().unwrap().to_string();
            let ranges = f.next().unwrap_or_else(|| panic!("lvs: {line:?}"));
            let mut segs = Vec::new();
            for range in ranges.split(' ') {
                let (dev, pes) = range.rsplit_once(':').unwrap();
                assert_eq!(dev, self.dev, "LV {name} is on another PV: {line}");
                let (a, b) = pes.split_once('-').unwrap();
                let (a, b): (u64, u64) = (a.parse().unwrap(), b.parse().unwrap());
                segs.push((a, b - a + 1));
            }
            match lvs.iter_mut().find(|(n, _)| *n == name) {
                Some((_, s)) => s.extend(segs),
                None => lvs.push((name, segs)),
            }
        }
        lvs
    }
}

impl Drop for Pv {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
    }
}

/// An LV's bytes as e2fsprogs and blkid can read them: in place in the disk when the LV
/// is one segment, else copied segment by segment into a file.
struct LvData {
    path: PathBuf,
    offset: u64,
    size: u64,
    _copy: Option<tempfile::TempDir>,
}

impl LvData {
    fn new(disk: &Path, pv: &Pv, vg: &str, segs: &[(u64, u64)]) -> LvData {
        let extent = pv.number("vgs", "vg_extent_size", vg);
        let pe_start = pv.number("pvs", "pe_start", &pv.dev);
        let at = |pe: u64| pv.offset + pe_start + pe * extent;
        let size = segs.iter().map(|s| s.1).sum::<u64>() * extent;
        if let [(first, _)] = segs {
            return LvData {
                path: disk.to_path_buf(),
                offset: at(*first),
                size,
                _copy: None,
            };
        }
        let dir = tempfile::tempdir_in(snf_testkit::target_dir()).unwrap();
        let path = dir.path().join("lv");
        let mut done = 0;
        for &(first, count) in segs {
            run_tool(
                Command::new("dd")
                    .arg(format!("if={}", disk.display()))
                    .arg(format!("of={}", path.display()))
                    .args(["bs=1M", "conv=notrunc,sparse", "status=none"])
                    .args(["iflag=skip_bytes,count_bytes", "oflag=seek_bytes"])
                    .arg(format!("skip={}", at(first)))
                    .arg(format!("count={}", count * extent))
                    .arg(format!("seek={done}")),
            );
            done += count * extent;
        }
        LvData {
            path,
            offset: 0,
            size,
            _copy: Some(dir),
        }
    }

    /// A file of the ext filesystem in the LV: `None` when it does not exist.
    fn file(&self, guest_path: &str) -> Option<Vec<u8>> {
        require("debugfs");
        let spec = format!("{}?offset={}", self.path.display(), self.offset);
        let out = Command::new("debugfs")
            .arg("-R")
            .arg(format!("cat \"{guest_path}\""))
            .arg(&spec)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("File not found") {
            return None;
        }
        assert!(
            out.status.success() && !err.contains("Bad magic number"),
            "debugfs {spec}: {err}"
        );
        Some(out.stdout)
    }

    /// `blkid -p` of the LV's content: TYPE, UUID ...
    fn probe(&self) -> String {
        sh(
            "blkid",
            &[
                "-p",
                "-o",
                "export",
                "-O",
                &self.offset.to_string(),
                "-S",
                &self.size.to_string(),
                self.path.to_str().unwrap(),
            ],
        )
    }
}

fn lv<'a>(lvs: &'a [(String, Vec<(u64, u64)>)], name: &str) -> &'a [(u64, u64)] {
    &lvs.iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no LV {name} in {lvs:?}"))
        .1
}

fn extents(segs: &[(u64, u64)]) -> u64 {
    segs.iter().map(|s| s.1).sum()
}

/// The checks on an image made from the LVM guest, with independent tools: the table,
/// the LVM metadata, both LVs, the root filesystem and the system preparation's effects.
fn assert_lvm_output(out: &Path) {
    let guest = debian_guest_info();
    let lay = guest.lvm();
    assert_sfdisk_verifies(out.to_str().unwrap());
    let pv = Pv::attach(out, lay.pv_partition, false);
    pv.assert_clean(&lay.vg);
    let lvs = pv.lvs(&lay.vg);
    let mut names: Vec<&str> = lvs.iter().map(|(n, _)| n.as_str()).collect();
    names.sort();
    assert_eq!(names, [lay.root_lv.as_str(), lay.swap_lv.as_str()]);
    assert_eq!(
        extents(lv(&lvs, &lay.swap_lv)),
        lay.swap_extents,
        "the swap LV changed size"
    );
    assert!(extents(lv(&lvs, &lay.root_lv)) <= lay.root_extents);
    assert_eq!(
        pv.lvm("pvs", &["--noheadings", "-o", "pv_uuid", &pv.dev])
            .trim(),
        lay.pv_uuid.as_str()
    );

    let root = LvData::new(out, &pv, &lay.vg, lv(&lvs, &lay.root_lv));
    assert_ext_clean(&root.path, root.offset, "the root LV");
    let swap = LvData::new(out, &pv, &lay.vg, lv(&lvs, &lay.swap_lv));
    let probe = swap.probe();
    assert!(probe.contains("TYPE=swap"), "swap LV: {probe}");

    // fstab still names the LVs (they are persistent names) and keeps the kept swap.
    let fstab = String::from_utf8(root.file("/etc/fstab").expect("no /etc/fstab")).unwrap();
    let spec_of = |mnt: &str| {
        fstab
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|f| f.len() >= 3 && !f[0].starts_with('#') && f[1] == mnt)
            .map(|f| f[0].to_string())
    };
    assert_eq!(
        spec_of("/").as_deref(),
        Some(format!("/dev/mapper/{}-{}", lay.vg, lay.root_lv).as_str()),
        "{fstab}"
    );
    assert_eq!(
        spec_of("none").as_deref(),
        Some(format!("/dev/{}/{}", lay.vg, lay.swap_lv).as_str()),
        "{fstab}"
    );
    assert_eq!(
        spec_of("/boot").as_deref(),
        Some(format!("UUID={}", lay.boot_uuid).as_str()),
        "{fstab}"
    );

    // The default system preparation went through the LV.
    assert_eq!(
        root.file("/etc/machine-id").as_deref(),
        Some(&b""[..]),
        "/etc/machine-id not emptied"
    );
    for f in ["/root/.bash_history", "/home/user/.bash_history"] {
        let content = root.file(f);
        assert!(
            content.as_ref().is_none_or(|c| c.is_empty()),
            "{f} survived: {content:?}"
        );
    }
    assert!(
        root.file("/etc/ssh/ssh_host_ed25519_key").is_none(),
        "SSH host key survived"
    );
    // /boot (p1) is a plain partition the system preparation may have written.
    let boot = partition(out, lay.boot_partition);
    assert_ext_clean(out, boot.start * 512, "/boot");
}

/// `snf-mkimage -o out.raw` with the defaults on the LVM guest, in `dir`.
fn image_lvm_guest(dir: &Path) -> PathBuf {
    let guest = debian_guest_info();
    let src = guest.lvm_image();
    let before = fs::metadata(&src).unwrap();
    let out = dir.join("out.raw");
    let run = Command::new(bin())
        .arg("--tmpdir")
        .arg(dir)
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", stderr(&run));
    let after = fs::metadata(&src).unwrap();
    assert_eq!(
        (before.mtime(), before.mtime_nsec(), before.len()),
        (after.mtime(), after.mtime_nsec(), after.len()),
        "the source was written"
    );
    assert_lvm_props(&props_of(&out), guest.lvm());
    out
}

/// Copy `img` to the start of a new sparse 4 GiB disk `vm` and grow partition `number`
/// (the last) to end 2048 sectors before the disk's end, as snf-image does at deployment.
fn grow_like_snf_image(img: &Path, vm: &Path, number: u32) {
    run_tool(Command::new("cp").arg("--sparse=always").arg(img).arg(vm));
    let size = 4096 * MIB;
    fs::OpenOptions::new()
        .write(true)
        .open(vm)
        .unwrap()
        .set_len(size)
        .unwrap();
    let start = partition(vm, number).start;
    let end = size / 512 - 2049;
    snf_testkit::fixture::run_stdin(
        Command::new("sfdisk")
            .args(["-q", "--no-reread", "--no-tell-kernel", "-N"])
            .arg(number.to_string())
            .arg(vm),
        &format!("{start},{}\n", end - start + 1),
    );
    let grown = partition(vm, number);
    assert_eq!((grown.start, grown.start + grown.size - 1), (start, end));
}

/// The default run prepares and shrinks the guest: the PV and its partition end much
/// earlier, the metadata and every filesystem are clean, and the result boots. Then, as
/// snf-image deploys it to a bigger disk, the file and the last partition grow: the PV
/// stays as it is (nothing in the guest runs `pvresize` without cloud-init) and the
/// guest boots again; `pvresize` then grows it, as a user would.
#[test]
fn the_lvm_guest_is_prepared_shrunk_and_boots_before_and_after_growth() {
    let guest = debian_guest_info();
    let lay = guest.lvm();
    let dir = tempfile::tempdir_in(snf_testkit::target_dir()).unwrap();
    let out = image_lvm_guest(dir.path());
    assert_lvm_output(&out);

    // Smaller: the file, the PV's partition, the PV; and it allocates less.
    let src = guest.lvm_image();
    let src_p2 = partition(&src, lay.pv_partition);
    let out_p2 = partition(&out, lay.pv_partition);
    assert_eq!(out_p2.start, src_p2.start, "the PV's partition moved");
    assert!(
        out_p2.size < src_p2.size,
        "the PV's partition was not shrunk: {} sectors",
        out_p2.size
    );
    let out_len = fs::metadata(&out).unwrap().len();
    assert!(out_len <= (out_p2.start + out_p2.size) * 512 + MIB);
    assert!(out_len < fs::metadata(&src).unwrap().len());
    let src_alloc = fs::metadata(&src).unwrap().blocks() * 512;
    let out_alloc = fs::metadata(&out).unwrap().blocks() * 512;
    assert!(
        out_alloc < src_alloc,
        "output allocates {out_alloc} bytes, the source {src_alloc}"
    );
    let pv_extents = {
        let pv = Pv::attach(&out, lay.pv_partition, false);
        let n = pv.number("pvs", "pv_pe_count", &pv.dev);
        let pe_start = pv.number("pvs", "pe_start", &pv.dev);
        let extent = pv.number("vgs", "vg_extent_size", &lay.vg);
        assert!(
            n < lay.root_extents + lay.swap_extents,
            "the PV was not shrunk: {n} extents"
        );
        assert!(
            pe_start + n * extent <= out_p2.size * 512,
            "the PV ends after its partition"
        );
        n
    };

    assert_boots(&out);

    // Deployed: only the partition grows, the PV inside keeps its size.
    let vm = dir.path().join("vm.raw");
    grow_like_snf_image(&out, &vm, lay.pv_partition);
    fs::remove_file(&out).unwrap();
    {
        let pv = Pv::attach(&vm, lay.pv_partition, false);
        pv.assert_clean(&lay.vg);
        assert_eq!(pv.number("pvs", "pv_pe_count", &pv.dev), pv_extents);
    }

    assert_boots(&vm);

    // What a user does next: pvresize takes the PV to the partition's end.
    let pv = Pv::attach(&vm, lay.pv_partition, true);
    pv.lvm("pvresize", &[&pv.dev]);
    pv.assert_clean(&lay.vg);
    assert!(pv.number("pvs", "pv_pe_count", &pv.dev) > pv_extents);
}

/// Inspection alone (no output) names the root LV.
#[test]
fn inspecting_the_lvm_guest_reports_its_root_lv() {
    let guest = debian_guest_info();
    let dir = tempdir();
    let run = Command::new(bin())
        .args(["--print-metadata", "--json", "--tmpdir"])
        .arg(dir.path())
        .arg(guest.lvm_image())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", stderr(&run));
    let props: serde_json::Value = serde_json::from_str(&stdout(&run)).unwrap();
    assert_lvm_props(&props, guest.lvm());
    assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
}

/// Copy the binary where uid 65534 can run it whatever the target dir's permissions.
fn binary_copy(dir: &Path) -> PathBuf {
    let copy = dir.join("snf-mkimage");
    fs::copy(bin(), &copy).unwrap();
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).unwrap();
    copy
}

/// An unprivileged user gets the same image from their own copy of the LVM guest: no
/// device-mapper, loop device or root needed.
#[test]
fn an_unprivileged_user_images_a_copy_of_the_lvm_guest() {
    require("setpriv");
    let guest = debian_guest_info();
    let dir = tempfile::tempdir_in(snf_testkit::target_dir()).unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let exe = binary_copy(dir.path());
    let img = dir.path().join("lvm.raw");
    run_tool(
        Command::new("cp")
            .arg("--sparse=always")
            .arg(guest.lvm_image())
            .arg(&img),
    );
    let work = dir.path().join("work");
    fs::create_dir(&work).unwrap();
    for p in [&img, &work] {
        run_tool(Command::new("chown").arg("65534:65534").arg(p));
    }
    let out = dir.path().join("out.raw");
    let run = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&exe)
        .arg("--tmpdir")
        .arg(&work)
        .arg("-o")
        .arg(&out)
        .arg(&img)
        .env("HOME", "/nonexistent")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(fs::metadata(&out).unwrap().uid(), 65534);
    assert_lvm_props(&props_of(&out), guest.lvm());
    fs::remove_file(&img).unwrap();
    assert_lvm_output(&out);
    assert!(
        fs::read_dir(&work).unwrap().next().is_none(),
        "work dir not cleaned"
    );
}
