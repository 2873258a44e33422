//! LVM2 fixtures made by the real tools on an image file, without device-mapper.
//!
//! This kernel has no device-mapper driver, so LVs can never be activated; the LVM tools
//! still write and check metadata when told not to try (`--driverloaded n`, `lvcreate
//! -an -Zn`). The recipe (lvm2 2.03.16):
//!
//! * Each PV partition is attached as its own loop device (`losetup -o OFFSET
//!   --sizelimit SIZE`): `losetup -P` makes no partition nodes here and there is no
//!   partprobe.
//! * Every command gets `--config` with a device filter that accepts exactly those loop
//!   devices (the host's own disks stay invisible), no udev, no devices file, no backup
//!   or archive under /etc/lvm, and `--driverloaded n`.
//! * A thin pool cannot be made (`lvconvert --type thin-pool` wants the dm target), so
//!   [`Lvm::thin`] writes one with `vgcfgbackup`, an edit, and `vgcfgrestore --force`.
//! * The loop devices are detached when the [`Lvm`] is dropped; drop it before anything
//!   else writes the image (the loop device's cache would go stale) and attach again to
//!   check the result.
//!
//! Filesystems go into the LVs at their byte offsets in the image (`mke2fs -E offset=`),
//! found by [`Lvm::lv_ranges`].
//!
//! ```no_run
//! use snf_testkit::fixture::{Disk, MIB};
//! use snf_testkit::lvm::Lvm;
//! let dir = tempfile::tempdir().unwrap();
//! let disk = Disk::create(dir.path().join("d.img"), 100 * MIB, "label: dos\nstart=2048, type=8e\n");
//! let lvm = Lvm::attach(disk.path(), &[(disk.offset(1), disk.size(1))]);
//! lvm.pvcreate(&[0], &[]);
//! lvm.vgcreate("vg0", &[0], &[]);
//! lvm.lvcreate("vg0", "root", "40M", &[]);
//! let ranges = lvm.lv_ranges("vg0", "root"); // (image offset, length) pieces
//! lvm.vgck("vg0");
//! drop(lvm); // detach before writing into the image
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::fixture::{require, run};

/// Loop devices over PV partitions of an image, with the LVM configuration that sees
/// only them. Detached when dropped.
#[derive(Debug)]
pub struct Lvm {
    image: PathBuf,
    /// (loop device, byte offset of the partition in the image).
    devs: Vec<(String, u64)>,
    config: String,
}

/// One segment of an LV as `lvs` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LvsRow {
    pub lv: String,
    /// Bytes.
    pub size: u64,
    pub segtype: String,
    /// `seg_pe_ranges` with the loop devices replaced by the index of the attached
    /// partition: "0:0-1".
    pub pe_ranges: String,
}

impl Lvm {
    /// Attach each (offset, size) byte range of `image` as a loop device.
    pub fn attach(image: &Path, parts: &[(u64, u64)]) -> Lvm {
        require("losetup");
        require("lvm");
        let mut lvm = Lvm {
            image: image.to_path_buf(),
            devs: Vec::new(),
            config: String::new(),
        };
        for &(offset, size) in parts {
            let dev = run(Command::new("losetup")
                .args(["--find", "--show", "--offset"])
                .arg(offset.to_string())
                .arg("--sizelimit")
                .arg(size.to_string())
                .arg(image))
            .trim()
            .to_string();
            assert!(
                dev.starts_with("/dev/loop"),
                "losetup gave no device (LVM fixtures need root): {dev:?}"
            );
            lvm.devs.push((dev, offset));
        }
        let accept: Vec<String> = lvm
            .devs
            .iter()
            .map(|(d, _)| format!("\"a|^{d}$|\""))
            .collect();
        lvm.config = format!(
            "devices {{ filter=[{},\"r|.*|\"] global_filter=[{},\"r|.*|\"] scan=[\"/dev\"] \
             obtain_device_list_from_udev=0 use_devicesfile=0 }} \
             activation {{ udev_sync=0 udev_rules=0 monitoring=0 }} \
             backup {{ backup=0 archive=0 }}",
            accept.join(","),
            accept.join(",")
        );
        lvm
    }

    /// The loop device of partition index `i` (in the order given to `attach`).
    pub fn dev(&self, i: usize) -> &str {
        &self.devs[i].0
    }

    /// Run `lvm COMMAND ARGS...` with the fixture configuration; its standard output.
    pub fn run(&self, command: &str, args: &[&str]) -> String {
        run(Command::new("lvm")
            .arg(command)
            .arg("--config")
            .arg(&self.config)
            .arg("--driverloaded")
            .arg("n")
            .args(args)
            .env("LVM_SUPPRESS_FD_WARNINGS", "1"))
    }

    /// Run as [`Lvm::run`]; whether it exited 0, and its standard output and error.
    pub fn try_run(&self, command: &str, args: &[&str]) -> (bool, String) {
        let out = Command::new("lvm")
            .arg(command)
            .arg("--config")
            .arg(&self.config)
            .arg("--driverloaded")
            .arg("n")
            .args(args)
            .env("LVM_SUPPRESS_FD_WARNINGS", "1")
            .output()
            .expect("running lvm");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    fn devs_of(&self, idx: &[usize]) -> Vec<&str> {
        idx.iter().map(|&i| self.dev(i)).collect()
    }

    /// `pvcreate EXTRA... DEVS` on the partitions with indexes `idx`.
    pub fn pvcreate(&self, idx: &[usize], extra: &[&str]) {
        let mut args = extra.to_vec();
        args.extend(self.devs_of(idx));
        self.run("pvcreate", &args);
    }

    /// `vgcreate EXTRA... VG DEVS`.
    pub fn vgcreate(&self, vg: &str, idx: &[usize], extra: &[&str]) {
        let mut args = extra.to_vec();
        args.push(vg);
        args.extend(self.devs_of(idx));
        self.run("vgcreate", &args);
    }

    /// A linear LV of `size` (lvcreate -L syntax: "40M") in `vg`, on the PVs of `idx`
    /// when not empty.
    pub fn lvcreate(&self, vg: &str, lv: &str, size: &str, idx: &[usize]) {
        let mut args = vec!["-an", "-Zn", "-y", "-L", size, "-n", lv, vg];
        args.extend(self.devs_of(idx));
        self.run("lvcreate", &args);
    }

    /// Grow LV `vg/lv` by `size` ("+8M"), on the PVs of `idx` when not empty: a second
    /// segment when something was allocated after it.
    pub fn lvextend(&self, vg: &str, lv: &str, size: &str, idx: &[usize]) {
        let name = format!("{vg}/{lv}");
        let mut args = vec!["-L", size, name.as_str()];
        args.extend(self.devs_of(idx));
        self.run("lvextend", &args);
    }

    /// A thin pool `pool` of `pool_size` with a thin LV `thin` of `thin_size` (both
    /// lvcreate syntax) in `vg`, written as metadata (the dm thin target cannot be used).
    pub fn thin(&self, vg: &str, pool: &str, pool_size: &str, thin: &str, thin_size: &str) {
        let meta = format!("{pool}_fixture_meta");
        let data = format!("{pool}_fixture_data");
        self.lvcreate(vg, &meta, "4M", &[]);
        self.lvcreate(vg, &data, pool_size, &[]);
        let dir = tempfile::tempdir().expect("a temporary directory");
        let backup = dir.path().join("vg.txt");
        let backup_s = backup.to_str().expect("a UTF-8 temporary path");
        self.run("vgcfgbackup", &["-f", backup_s, vg]);
        let text = std::fs::read_to_string(&backup).expect("reading the VG backup");
        let text = text
            .replace(&format!("\t\t{meta} {{"), &format!("\t\t{pool}_tmeta {{"))
            .replace(&format!("\t\t{data} {{"), &format!("\t\t{pool}_tdata {{"));
        // The two become hidden sub-LVs: drop VISIBLE from their status lines.
        let mut out = String::new();
        let mut in_sub = false;
        for line in text.lines() {
            if line == format!("\t\t{pool}_tmeta {{") || line == format!("\t\t{pool}_tdata {{") {
                in_sub = true;
            } else if line == "\t\t}" {
                in_sub = false;
            }
            if in_sub && line.trim_start().starts_with("status = ") {
                out.push_str(&line.replace(", \"VISIBLE\"", ""));
            } else {
                out.push_str(line);
            }
            out.push('\n');
        }
        let data_extents = self.extents(vg, &data);
        let thin_extents = self.extents_of_size(vg, thin_size);
        let sections = format!(
            "\t\t{pool} {{\n\t\t\tid = \"Thin00-pool-0000-0000-0000-0000-{:06}\"\n\
             \t\t\tstatus = [\"READ\", \"WRITE\", \"VISIBLE\"]\n\t\t\tflags = []\n\
             \t\t\tsegment_count = 1\n\t\t\tsegment1 {{\n\t\t\t\tstart_extent = 0\n\
             \t\t\t\textent_count = {data_extents}\n\t\t\t\ttype = \"thin-pool\"\n\
             \t\t\t\tmetadata = \"{pool}_tmeta\"\n\t\t\t\tpool = \"{pool}_tdata\"\n\
             \t\t\t\ttransaction_id = 1\n\t\t\t\tchunk_size = 128\n\
             \t\t\t\tdiscards = \"passdown\"\n\t\t\t\tzero_new_blocks = 0\n\t\t\t}}\n\t\t}}\n\
             \t\t{thin} {{\n\t\t\tid = \"Thin00-thin-0000-0000-0000-0000-{:06}\"\n\
             \t\t\tstatus = [\"READ\", \"WRITE\", \"VISIBLE\"]\n\t\t\tflags = []\n\
             \t\t\tsegment_count = 1\n\t\t\tsegment1 {{\n\t\t\t\tstart_extent = 0\n\
             \t\t\t\textent_count = {thin_extents}\n\t\t\t\ttype = \"thin\"\n\
             \t\t\t\tthin_pool = \"{pool}\"\n\t\t\t\ttransaction_id = 0\n\
             \t\t\t\tdevice_id = 1\n\t\t\t}}\n\t\t}}\n",
            std::process::id() % 1_000_000,
            std::process::id() % 1_000_000,
        );
        // Before the end of logical_volumes: the last "\t}" line.
        let at = out.rfind("\n\t}\n").expect("a logical_volumes section") + 1;
        out.insert_str(at, &sections);
        std::fs::write(&backup, out).expect("writing the VG text");
        self.run("vgcfgrestore", &["--force", "-f", backup_s, vg]);
    }

    fn extents(&self, vg: &str, lv: &str) -> u64 {
        let name = format!("{vg}/{lv}");
        self.run("lvs", &["--noheadings", "-o", "seg_size_pe", name.as_str()])
            .lines()
            .map(|l| l.trim().parse::<u64>().expect("an extent count"))
            .sum()
    }

    fn extents_of_size(&self, vg: &str, size: &str) -> u64 {
        let out = self.run(
            "vgs",
            &[
                "--noheadings",
                "--units",
                "b",
                "--nosuffix",
                "-o",
                "vg_extent_size",
                vg,
            ],
        );
        let extent: u64 = out.trim().parse().expect("an extent size");
        let (num, unit) = size.split_at(size.len() - 1);
        let mult = match unit {
            "M" | "m" => 1 << 20,
            "G" | "g" => 1 << 30,
            "K" | "k" => 1 << 10,
            _ => panic!("size {size}: use K, M or G"),
        };
        (num.parse::<u64>().expect("a size") * mult).div_ceil(extent)
    }

    /// Each segment of the LVs of `vg` (hidden ones too), as `lvs` reports them.
    pub fn lvs(&self, vg: &str) -> Vec<LvsRow> {
        let out = self.run(
            "lvs",
            &[
                "-a",
                "--noheadings",
                "--units",
                "b",
                "--nosuffix",
                "--separator",
                ";",
                "-o",
                "lv_name,lv_size,segtype,seg_pe_ranges",
                vg,
            ],
        );
        out.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let f: Vec<&str> = l.trim().split(';').collect();
                let mut ranges = f.get(3).unwrap_or(&"").to_string();
                for (i, (d, _)) in self.devs.iter().enumerate() {
                    ranges = ranges.replace(&format!("{d}:"), &format!("{i}:"));
                }
                LvsRow {
                    lv: f[0].trim_matches(|c| c == '[' || c == ']').to_string(),
                    size: f[1].parse().expect("an LV size"),
                    segtype: f[2].to_string(),
                    pe_ranges: ranges,
                }
            })
            .collect()
    }

    /// (PV size, PE count) of partition index `i` as `pvs` reports them (bytes).
    pub fn pv_size(&self, i: usize) -> (u64, u64) {
        let out = self.run(
            "pvs",
            &[
                "--noheadings",
                "--units",
                "b",
                "--nosuffix",
                "-o",
                "dev_size,pv_pe_count",
                self.dev(i),
            ],
        );
        let f: Vec<u64> = out
            .split_whitespace()
            .map(|v| v.parse().expect("a number"))
            .collect();
        (f[0], f[1])
    }

    /// (image offset, length) of each piece of LV `vg/lv`, in LV order, from `lvs`'
    /// segment PE ranges.
    pub fn lv_ranges(&self, vg: &str, lv: &str) -> Vec<(u64, u64)> {
        let name = format!("{vg}/{lv}");
        let extent: u64 = self
            .run(
                "vgs",
                &[
                    "--noheadings",
                    "--units",
                    "b",
                    "--nosuffix",
                    "-o",
                    "vg_extent_size",
                    vg,
                ],
            )
            .trim()
            .parse()
            .expect("an extent size");
        let out = self.run(
            "lvs",
            &[
                "--noheadings",
                "--units",
                "b",
                "--nosuffix",
                "--separator",
                ";",
                "-o",
                "seg_start_pe,seg_pe_ranges",
                name.as_str(),
            ],
        );
        let mut rows: Vec<(u64, String)> = out
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let (s, r) = l.trim().split_once(';').expect("two fields");
                (s.parse().expect("a start extent"), r.to_string())
            })
            .collect();
        rows.sort();
        rows.iter()
            .map(|(_, r)| {
                let (dev, range) = r.rsplit_once(':').expect("dev:first-last");
                let (a, b) = range.split_once('-').expect("first-last");
                let (a, b): (u64, u64) = (a.parse().unwrap(), b.parse().unwrap());
                let (_, part) = self
                    .devs
                    .iter()
                    .find(|(d, _)| d == dev)
                    .expect("an attached device");
                let pe_start = self.pe_start(dev);
                (part + pe_start + a * extent, (b - a + 1) * extent)
            })
            .collect()
    }

    fn pe_start(&self, dev: &str) -> u64 {
        self.run(
            "pvs",
            &[
                "--noheadings",
                "--units",
                "b",
                "--nosuffix",
                "-o",
                "pe_start",
                dev,
            ],
        )
        .trim()
        .parse()
        .expect("a PE start")
    }

    /// Panic unless `vgck` finds VG `vg` clean.
    pub fn vgck(&self, vg: &str) {
        let (ok, out) = self.try_run("vgck", &[vg]);
        assert!(
            ok && !out.contains("WARNING: Inconsistent") && !out.contains("Checksum"),
            "vgck {vg}: {out}"
        );
    }

    /// Panic unless `pvck` finds the PV on partition index `i` clean, its headers and
    /// metadata included (`--dump` says "CHECK:" for each problem it sees).
    pub fn pvck(&self, i: usize) {
        for args in [
            &[][..],
            &["--dump", "headers"][..],
            &["--dump", "metadata"][..],
        ] {
            let mut all = args.to_vec();
            all.push(self.dev(i));
            let (ok, out) = self.try_run("pvck", &all);
            assert!(
                ok && !out.contains("CHECK"),
                "pvck {}: {out}",
                all.join(" ")
            );
        }
    }

    /// The image file.
    pub fn image(&self) -> &Path {
        &self.image
    }
}

impl Drop for Lvm {
    fn drop(&mut self) {
        for (dev, _) in &self.devs {
            let _ = Command::new("losetup").arg("-d").arg(dev).status();
        }
    }
}
