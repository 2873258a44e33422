//! Build the raw image of the running host: the host disk's partition table (same type,
//! sector size, starts, GPT GUIDs and names, boot code and the gap before the first
//! partition), each mounted ext filesystem re-created as large as its data plus headroom
//! (same UUID, label and features) and filled by [`copy_tree`], small unmounted boot
//! partitions (BIOS boot, EFI system) and a mounted vfat ESP copied block by block, and a
//! trailing swap partition turned into the `SWAP` property.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use snf_core::command;
use snf_core::{Reporter, Unit};

use super::copy::{copy_tree, file_id, CopyOptions, FileId};
use super::discover::{discover, FsCopy, HostFs, Roots};
use super::HostError;
use crate::loopdev::LoopDevice;
use crate::partition::{Layout, Partition};
use crate::workdir::WorkDir;

const MIB: u64 = 1 << 20;

/// Unmounted partitions up to this size are copied raw (boot partitions, an ESP); larger
/// ones are left out of the image with a warning.
const RAW_COPY_MAX: u64 = 1 << 30;

/// mount, umount, tune2fs only ask the kernel or read a superblock.
const QUICK: Duration = Duration::from_secs(120);

/// The bundled image, removed when dropped.
#[derive(Debug)]
pub struct Bundle {
    pub image: tempfile::TempPath,
    pub size: u64,
    pub sector_size: u32,
    /// `SWAP` (`<number>:<MiB>`) when the host disk ends with a swap partition.
    pub swap: Option<String>,
}

/// The host's ext filesystem parameters that the new one keeps.
#[derive(Debug, Default)]
struct ExtParams {
    uuid: Option<String>,
    label: Option<String>,
    features: Option<String>,
    block_size: Option<u64>,
    inode_size: u64,
}

fn ext_params(device: &Path) -> Result<ExtParams, HostError> {
    let out = command::run_with_limit(Command::new("tune2fs").arg("-l").arg(device), QUICK)
        .map_err(|e| HostError::tool(device, e))?;
    let mut p = ExtParams {
        inode_size: 256,
        ..ExtParams::default()
    };
    for line in out.stdout.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key.trim() {
            "Filesystem UUID" => p.uuid = Some(value.to_string()),
            "Filesystem volume name" if value != "<none>" => p.label = Some(value.to_string()),
            "Filesystem features" => {
                // States of a live filesystem, not features to create it with.
                let keep: Vec<&str> = value
                    .split_whitespace()
                    .filter(|f| !matches!(*f, "needs_recovery" | "orphan_present" | "mmp"))
                    .collect();
                p.features = Some(format!("none,{}", keep.join(",")));
            }
            "Block size" => p.block_size = value.parse().ok(),
            "Inode size" => p.inode_size = value.parse().unwrap_or(256),
            _ => {}
        }
    }
    Ok(p)
}

/// One filesystem to re-create and fill.
struct Planned<'a> {
    fs: &'a HostFs,
    params: ExtParams,
    fstype: &'static str,
    used: u64,
    inodes: u64,
    /// The partition's new size.
    size: u64,
}

/// How big the new filesystem for `fs` is made: used data and inode tables plus 10%
/// and 64 MiB (journal, metadata, room for the syspreps), in whole MiB.
fn estimate(fs: &HostFs, params: &ExtParams) -> Result<(u64, u64, u64), HostError> {
    let st = rustix::fs::statvfs(&fs.path).map_err(|e| HostError::Read {
        path: fs.path.clone(),
        source: e.into(),
    })?;
    let used = st.f_blocks.saturating_sub(st.f_bfree) * st.f_frsize;
    let inodes = st.f_files.saturating_sub(st.f_ffree);
    let inodes = inodes + inodes / 10 + 4096;
    let bytes = used + inodes * params.inode_size;
    let size = (bytes + bytes / 10 + 64 * MIB).div_ceil(MIB) * MIB;
    Ok((used, inodes, size))
}

/// A filesystem mounted in the work directory, unmounted when dropped.
struct Mounted {
    dir: PathBuf,
}

impl Drop for Mounted {
    fn drop(&mut self) {
        for attempt in 0..10 {
            if command::run_with_limit(Command::new("umount").arg(&self.dir), QUICK).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100 * (attempt + 1)));
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Bundle the running host (described by `roots`) into a raw image in `workdir`. The
/// files in `outputs` (the output file and its side files), the work directory and the
/// contents of `/tmp` and `/var/tmp` are left out.
pub fn bundle(
    workdir: &WorkDir,
    roots: &Roots,
    outputs: &[PathBuf],
    reporter: &dyn Reporter,
) -> Result<Bundle, HostError> {
    if !rustix::process::geteuid().is_root() {
        return Err(HostError::NotRoot);
    }
    let layout = discover(roots)?;
    for e in &layout.excluded {
        reporter.detail(&format!(
            "not copied: {} ({})",
            e.mount_point.display(),
            e.reason
        ));
    }
    let mut planned = Vec::new();
    for fs in layout
        .filesystems
        .iter()
        .filter(|f| f.copy == FsCopy::Files)
    {
        let (params, fstype) = match fs.fstype.as_str() {
            "ext2" => (ext_params(&fs.device)?, "ext2"),
            "ext3" => (ext_params(&fs.device)?, "ext3"),
            "ext4" => (ext_params(&fs.device)?, "ext4"),
            // The standard layout for an overlay or container root.
            _ => (
                ExtParams {
                    inode_size: 256,
                    ..ExtParams::default()
                },
                "ext4",
            ),
        };
        let (used, inodes, size) = estimate(fs, &params)?;
        planned.push(Planned {
            fs,
            params,
            fstype,
            used,
            inodes,
            size,
        });
    }

    let what = "the image of the running host";
    let temp = tempfile::Builder::new()
        .prefix("host-")
        .suffix(".raw")
        .tempfile_in(workdir.path())
        .map_err(|e| HostError::Write(workdir.write_error(what, e)))?
        .into_temp_path();
    let image = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&temp)
        .map_err(|e| HostError::Write(workdir.write_error(what, e)))?;

    let mut swap = None;
    let mut raw: Vec<(PathBuf, u64, u64)> = Vec::new(); // (device, offset, length)
    let (table, sector_size) = match &layout.disk {
        Some(disk) => {
            let mut table = Layout::read_file(&disk.device, disk.sector_size)
                .map_err(|e| HostError::Table(disk.device.clone(), e.to_string()))?;
            let ss = u64::from(disk.sector_size);
            let parts: Vec<Partition> = table
                .partitions_in_disk_order()
                .into_iter()
                .cloned()
                .collect();
            let last = parts.iter().rfind(|p| !p.is_extended()).map(|p| p.number);
            for p in &parts {
                if p.is_extended() {
                    continue;
                }
                let mounted = layout
                    .filesystems
                    .iter()
                    .find(|f| f.partition == Some(p.number));
                match mounted {
                    Some(fs) if fs.copy == FsCopy::Files => {
                        let plan = planned
                            .iter_mut()
                            .find(|x| x.fs.partition == Some(p.number))
                            .expect("every Files filesystem is planned");
                        plan.size = plan.size.min(p.size());
                        let end = p.start + plan.size / ss - 1;
                        table
                            .set_end(p.number, end)
                            .map_err(|e| HostError::Table(disk.device.clone(), e.to_string()))?;
                    }
                    Some(_) => raw.push((disk.device.clone(), p.offset(), p.size())),
                    None if p.type_is_swap() && Some(p.number) == last => {
                        swap = Some(format!("{}:{}", p.number, p.size().div_ceil(MIB)));
                        table
                            .delete(p.number)
                            .map_err(|e| HostError::Table(disk.device.clone(), e.to_string()))?;
                    }
                    None if p.size() <= RAW_COPY_MAX => {
                        raw.push((disk.device.clone(), p.offset(), p.size()))
                    }
                    None => {
                        reporter.warn(&format!(
                            "partition {} of {} ({} MiB) is not mounted: the image leaves it out",
                            p.number,
                            disk.device.display(),
                            p.size() >> 20
                        ));
                        table
                            .delete(p.number)
                            .map_err(|e| HostError::Table(disk.device.clone(), e.to_string()))?;
                    }
                }
            }
            // An extended partition left without logical ones goes too.
            if let Some(ext) = table.extended().map(|e| e.number) {
                if table.logicals().next().is_none() {
                    let _ = table.delete(ext);
                }
            }
            // The boot code and the gap before the first partition (GRUB's core image,
            // the GPT header and entries, which the table write then replaces).
            let first = parts.iter().map(|p| p.start).min().unwrap_or(1);
            raw.push((disk.device.clone(), 0, first * ss));
            (table, disk.sector_size)
        }
        None => {
            reporter.warn(
                "/ is not on a partitioned disk: the image gets one partition and no bootloader",
            );
            let size = planned.first().map(|p| p.size).unwrap_or(64 * MIB);
            write_standard_mbr(&image, size)
                .map_err(|e| HostError::Write(workdir.write_error(what, e)))?;
            let table = Layout::read(&mut &image, MIB + size, 512)
                .map_err(|e| HostError::Table(temp.to_path_buf(), e.to_string()))?;
            (table, 512)
        }
    };

    let needed: u64 = planned
        .iter()
        .map(|p| p.used + p.inodes * p.params.inode_size)
        .sum::<u64>()
        + raw.iter().map(|r| r.2).sum::<u64>();
    workdir
        .ensure_space(needed, what)
        .map_err(HostError::WorkDir)?;

    let mut table = table;
    let size = table.min_disk_size().div_ceil(MIB) * MIB;
    image
        .set_len(size)
        .map_err(|e| HostError::Write(workdir.write_error(what, e)))?;
    for (device, offset, len) in &raw {
        copy_raw(device, *offset, *len, &image).map_err(|e| HostError::Read {
            path: device.clone(),
            source: e,
        })?;
    }
    table
        .write_file(&temp, size)
        .map_err(|e| HostError::Table(temp.to_path_buf(), e.to_string()))?;
    drop(image);

    let mut skip: HashSet<FileId> = outputs.iter().filter_map(|p| file_id(p).ok()).collect();
    skip.extend(file_id(workdir.path()).ok());
    let total = planned.iter().map(|p| p.used).sum();
    let task = reporter.task("Copying the host's files", total, Unit::Bytes);
    for (i, plan) in planned.iter().enumerate() {
        let part = match plan.fs.partition {
            Some(n) => table.partition(n),
            None => table.partitions().first(),
        }
        .expect("the planned partition is in the table")
        .clone();
        let lo = LoopDevice::attach(&temp, part.offset(), part.size())
            .map_err(|e| HostError::tool(&temp, e))?;
        let mut mkfs = Command::new("mke2fs");
        mkfs.args([
            "-F",
            "-q",
            "-t",
            plan.fstype,
            "-N",
            &plan.inodes.to_string(),
        ]);
        mkfs.args(["-I", &plan.params.inode_size.to_string()]);
        if let Some(u) = &plan.params.uuid {
            mkfs.args(["-U", u]);
        }
        if let Some(l) = &plan.params.label {
            mkfs.args(["-L", l]);
        }
        if let Some(f) = &plan.params.features {
            mkfs.args(["-O", f]);
        }
        if let Some(b) = plan.params.block_size {
            mkfs.args(["-b", &b.to_string()]);
        }
        command::run_with_limit(mkfs.arg(lo.path()), command::data_limit(plan.size))
            .map_err(|e| HostError::tool(&plan.fs.mount_point, e))?;
        let dir = workdir.path().join(format!("fs{i}"));
        std::fs::create_dir(&dir).map_err(|e| HostError::Write(workdir.write_error(what, e)))?;
        command::run_with_limit(
            Command::new("mount")
                .args(["-t", plan.fstype])
                .arg(lo.path())
                .arg(&dir),
            QUICK,
        )
        .map_err(|e| HostError::tool(&plan.fs.mount_point, e))?;
        let mounted = Mounted { dir };
        let empty = ["/tmp", "/var/tmp"]
            .iter()
            .filter_map(|t| Path::new(t).strip_prefix(&plan.fs.mount_point).ok())
            .map(Path::to_path_buf)
            .collect();
        let opts = CopyOptions {
            skip: skip.clone(),
            empty,
            task: Some(task.as_ref()),
            reporter,
            before_entry: None,
        };
        copy_tree(&plan.fs.path, &mounted.dir, &opts)?;
        drop(mounted);
        drop(lo);
    }
    task.finish("done");
    Ok(Bundle {
        image: temp,
        size,
        sector_size,
        swap,
    })
}

/// Copy `len` bytes of `device` at `offset` to the same offset of `image`; all-zero
/// blocks stay holes.
fn copy_raw(device: &Path, offset: u64, len: u64, image: &File) -> io::Result<()> {
    let src = File::open(device)?;
    let mut buf = vec![0u8; MIB as usize];
    let mut done = 0;
    while done < len {
        snf_core::cancel::check().map_err(io::Error::other)?;
        let want = (len - done).min(MIB) as usize;
        let n = src.read_at(&mut buf[..want], offset + done)?;
        if n == 0 {
            break;
        }
        if !crate::sparse::is_zero(&buf[..n]) {
            image.write_all_at(&buf[..n], offset + done)?;
        }
        done += n as u64;
    }
    Ok(())
}

/// Sector 0 of the standard layout: MBR, one Linux partition from 1 MiB, no boot code.
fn write_standard_mbr(image: &File, size: u64) -> io::Result<()> {
    let mut s0 = [0u8; 512];
    let e = &mut s0[446..462];
    e[1..4].copy_from_slice(&[0xfe, 0xff, 0xff]);
    e[4] = 0x83;
    e[5..8].copy_from_slice(&[0xfe, 0xff, 0xff]);
    e[8..12].copy_from_slice(&2048u32.to_le_bytes());
    e[12..16].copy_from_slice(&((size / 512) as u32).to_le_bytes());
    let sig: u32 = rand_signature();
    s0[440..444].copy_from_slice(&sig.to_le_bytes());
    s0[510] = 0x55;
    s0[511] = 0xaa;
    image.set_len(MIB + size + MIB)?;
    image.write_all_at(&s0, 0)
}

/// A disk signature that differs between runs (from the clock and the process id).
fn rand_signature() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ d.as_secs() as u32)
        .unwrap_or(0);
    t ^ std::process::id().rotate_left(16)
}
