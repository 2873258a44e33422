//! Finding the logical sector size a table was written with.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use super::{gpt, PartitionError};

/// The logical sector size of a disk.
///
/// Block devices: the kernel's `queue/logical_block_size` in sysfs (found through the
/// device number, `/sys/dev/block/MAJ:MIN`, the same directory as
/// `/sys/class/block/<name>`, so links such as `/dev/disk/by-id/...` work too).
/// Image files: see [`detect_sector_size_of`].
pub fn detect_sector_size(path: &Path) -> Result<u32, PartitionError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| PartitionError::io(format!("stat {}", path.display()), e))?;
    if meta.file_type().is_block_device() {
        return block_device_sector_size(meta.rdev());
    }
    let mut file =
        File::open(path).map_err(|e| PartitionError::io(format!("open {}", path.display()), e))?;
    detect_sector_size_of(&mut file)
}

/// The sector size of an image: 512 if a GPT header signature (`EFI PART`) is at byte
/// 512, else 4096 if one is at byte 4096, else 512. An MBR does not record its
/// sector size, so for a 4096-byte-sector MBR image the caller has to say so.
pub fn detect_sector_size_of<R: Read + Seek + ?Sized>(dev: &mut R) -> Result<u32, PartitionError> {
    for size in [512u32, 4096] {
        dev.seek(SeekFrom::Start(u64::from(size)))
            .map_err(|e| PartitionError::io(format!("seek to byte {size} of the disk"), e))?;
        let mut sig = [0u8; 8];
        let mut got = 0;
        // A short image simply has no header there.
        while got < sig.len() {
            match dev.read(&mut sig[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(PartitionError::io(
                        format!("read byte {size} of the disk"),
                        e,
                    ))
                }
            }
        }
        if got == sig.len() && &sig == gpt::SIGNATURE {
            return Ok(size);
        }
    }
    Ok(512)
}

fn block_device_sector_size(rdev: u64) -> Result<u32, PartitionError> {
    let (major, minor) = (rustix::fs::major(rdev), rustix::fs::minor(rdev));
    let dev_dir = format!("/sys/dev/block/{major}:{minor}");
    // A partition has no queue directory of its own; its disk's is one level up.
    let own = format!("{dev_dir}/queue/logical_block_size");
    let parent = format!("{dev_dir}/../queue/logical_block_size");
    let (path, text) = match std::fs::read_to_string(&own) {
        Ok(text) => (own, text),
        Err(_) => {
            let text = std::fs::read_to_string(&parent)
                .map_err(|e| PartitionError::io(format!("read {parent}"), e))?;
            (parent, text)
        }
    };
    text.trim().parse::<u32>().map_err(|e| {
        PartitionError::io(
            format!("read the sector size from {path}"),
            std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        )
    })
}
