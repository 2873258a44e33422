//! The bytes of the disk one filesystem lives in: a partition or a logical volume.

use snf_disk::partition::Partition;

/// A filesystem's byte range on the disk, and how messages name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Region {
    /// `partition N` or `LV vg/lv`.
    pub name: String,
    /// Byte offset on the disk.
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
}

impl Region {
    pub(super) fn of_partition(p: &Partition) -> Region {
        Region {
            name: format!("partition {}", p.number),
            offset: p.offset(),
            size: p.size(),
        }
    }

    /// A file-name-safe form of the name, for scratch files (`partition-2`, `LV-vg-root`).
    pub(super) fn file_stem(&self) -> String {
        self.name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect()
    }
}
