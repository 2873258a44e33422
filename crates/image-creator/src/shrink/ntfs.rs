//! Shrinking the last NTFS volume with ntfsresize, on an extracted copy.
//!
//! ntfsresize works on a whole-file volume, so the partition's used clusters are
//! extracted to a scratch file (no loop device, no privileges). A volume Windows did not
//! shut down fully (dirty, hibernated, fast startup) is refused before anything is
//! touched: its free-cluster bitmap and its files are not final. ntfsresize leaves two
//! things for the partitioning step that follows a resize: the backup boot sector (the
//! last sector of the partition) is written here, and the volume, which it marks "to be
//! checked", is marked clean again with `ntfsfix -d` (ntfsresize checked it before
//! moving anything; a chkdsk at every deployed copy's first boot is what the mark
//! would cost).

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

use snf_core::bytes;
use snf_core::command;
use snf_core::Reporter;
use snf_disk::partition::{Layout, Partition, MIB};

use super::extract::Extracted;
use super::method::Method;
use super::{hide_dev, io_err, ShrinkError, ShrinkOptions, ShrunkFs, HEADROOM, NO_SYNC_WRAPPER};

/// Shrinks the NTFS volume on partition `p` to ntfsresize's minimum plus [`HEADROOM`];
/// returns its new container size, a whole number of sectors (`None` when that would
/// not make it smaller).
pub(super) fn shrink_ntfs(
    disk: &Path,
    layout: &Layout,
    p: &Partition,
    opts: &ShrinkOptions<'_>,
    reporter: &dyn Reporter,
) -> Result<Option<ShrunkFs>, ShrinkError> {
    let n = p.number;
    // The binding names the file it opened (the working copy, or the scratch file):
    // the partition is what the user knows.
    let ntfs_err = |e: ntfs3g::Error| {
        let text = e.to_string();
        let msg = [disk, opts.workdir.path()]
            .iter()
            .find_map(|p| text.strip_prefix(&format!("{}: ", p.display())))
            .unwrap_or(&text)
            .to_string();
        ShrinkError::Ntfs { partition: n, msg }
    };
    // Refused before anything is extracted or changed.
    {
        let vol = ntfs3g::Volume::open(disk, p.offset(), p.size(), false).map_err(ntfs_err)?;
        vol.check_shut_down().map_err(ntfs_err)?;
    }
    reporter.info(&format!(
        "Shrinking the ntfs filesystem on partition {n} ..."
    ));
    let x = Extracted::new(disk, p, opts.workdir, reporter)?;
    let dev = x.path().to_path_buf();
    let limit = command::data_limit(p.size());
    // The extracted file is scratch: its syncs would write it all to the disk for
    // nothing (as for e2fsprogs in ext.rs).
    let no_sync = command::exists(NO_SYNC_WRAPPER);
    let tool = |program: &str| {
        if no_sync {
            let mut c = Command::new(NO_SYNC_WRAPPER);
            c.arg(program);
            c
        } else {
            Command::new(program)
        }
    };
    let tool_err = |source| ShrinkError::Tool {
        partition: n,
        dev: dev.clone(),
        source,
    };
    let out = command::run_with_limit(
        tool("ntfsresize")
            .args(["--info", "--no-progress-bar"])
            .arg(&dev),
        limit,
    )
    .map_err(tool_err)?;
    let min = out
        .stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix("You might resize at ")
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
        })
        .ok_or_else(|| ShrinkError::Ntfs {
            partition: n,
            msg: format!(
                "unexpected output from ntfsresize --info: {}",
                hide_dev(out.stdout.lines().last().unwrap_or(""), &dev, n)
            ),
        })?;
    let ss = u64::from(layout.sector_size());
    let old_bytes = volume_bytes(&dev, n)?.0;
    let wanted = (min.saturating_add(HEADROOM)).div_ceil(MIB) * MIB;
    if wanted + MIB >= p.size() {
        return Ok(None);
    }
    // --force: no question asked (the volume was checked clean above).
    command::run_with_limit(
        tool("ntfsresize")
            .args(["--force", "--no-progress-bar", "--size"])
            .arg(wanted.to_string())
            .arg(&dev),
        limit,
    )
    .map_err(tool_err)?;
    let (new_bytes, sector) = volume_bytes(&dev, n)?;
    // The backup boot sector follows the volume's last sector; the partition ends there.
    let part_bytes = (new_bytes + sector).div_ceil(ss) * ss;
    if part_bytes > p.size() {
        return Err(ShrinkError::Ntfs {
            partition: n,
            msg: format!("ntfsresize left a volume of {new_bytes} bytes, too big to shrink"),
        });
    }
    {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&dev)
            .map_err(io_err(x.file_name().to_string()))?;
        let mut boot = vec![0u8; sector as usize];
        f.read_exact_at(&mut boot, 0)
            .and_then(|()| f.write_all_at(&boot, new_bytes))
            .and_then(|()| f.set_len(part_bytes))
            .map_err(io_err(format!(
                "write the backup boot sector of {}",
                x.file_name()
            )))?;
    }
    command::run_with_limit(tool("ntfsfix").arg("-d").arg(&dev), limit).map_err(tool_err)?;
    {
        let vol = ntfs3g::Volume::open(&dev, 0, part_bytes, false).map_err(ntfs_err)?;
        if vol.info().map_err(ntfs_err)?.is_dirty() {
            return Err(ShrinkError::Ntfs {
                partition: n,
                msg: "the volume is still marked dirty after resizing".into(),
            });
        }
    }
    x.copy_back(part_bytes)?;
    drop(x);
    reporter.info(&format!(
        "Partition {n}: ntfs filesystem shrunk from {} MiB to {} MiB",
        old_bytes.div_ceil(MIB),
        new_bytes.div_ceil(MIB)
    ));
    Ok(Some(ShrunkFs {
        partition: n,
        fs: "ntfs",
        old_bytes,
        new_bytes,
        partition_bytes: part_bytes,
        method: Method::Extract,
    }))
}

/// The volume's size in bytes (its sector count, without the backup boot sector) and
/// its sector size, from the boot sector of the whole-file volume `dev`.
fn volume_bytes(dev: &Path, n: u32) -> Result<(u64, u64), ShrinkError> {
    let f = std::fs::File::open(dev).map_err(io_err("read the extracted NTFS boot sector"))?;
    let mut boot = [0u8; 512];
    f.read_exact_at(&mut boot, 0)
        .map_err(io_err("read the extracted NTFS boot sector"))?;
    let sector = u64::from(bytes::le16(&boot, 0x0b));
    let sectors = bytes::le64(&boot, 0x28);
    if &boot[3..11] != b"NTFS    " || !matches!(sector, 512 | 1024 | 2048 | 4096) {
        return Err(ShrinkError::Ntfs {
            partition: n,
            msg: "the boot sector is not an NTFS one".into(),
        });
    }
    let bytes = sectors.checked_mul(sector).ok_or(ShrinkError::Ntfs {
        partition: n,
        msg: "the boot sector's sector count is impossible".into(),
    })?;
    Ok((bytes, sector))
}
