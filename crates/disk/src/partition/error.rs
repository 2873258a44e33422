//! Errors and warnings of the partition-table layer.

use std::fmt;

/// Why a partition table could not be read, changed or written.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    /// Reading or writing the disk failed.
    #[error("cannot {what}: {source}")]
    Io {
        /// What was being done, e.g. "read sector 1 of the disk".
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Neither an MBR nor a GPT was found: the disk is not partitioned (or holds a
    /// filesystem directly), which the caller reports as unsupported.
    #[error("no partition table found: {reason}")]
    NoPartitionTable {
        /// What was found instead.
        reason: String,
    },
    /// The sector size is not one this layer handles.
    #[error("unsupported sector size {0} (expected 512, 1024, 2048 or 4096 bytes)")]
    UnsupportedSectorSize(u64),
    /// The disk is too small to hold the structures the table needs.
    #[error("the disk ({size} bytes) is too small: {reason}")]
    DiskTooSmall {
        /// Disk size in bytes.
        size: u64,
        /// What does not fit.
        reason: String,
    },
    /// An extended boot record lacks the 0x55AA boot signature.
    #[error("bad MBR/EBR signature 0x{found:04x} at sector {lba} (expected 0xaa55)")]
    BadMbrSignature {
        /// The sector holding the record.
        lba: u64,
        /// The two signature bytes read (little-endian).
        found: u16,
    },
    /// The MBR or an EBR holds something impossible.
    #[error("invalid MBR at sector {lba}: {reason}")]
    InvalidMbr {
        /// The sector holding the record.
        lba: u64,
        /// What is wrong.
        reason: String,
    },
    /// The chain of extended boot records comes back to a record already visited.
    #[error("the chain of logical partitions loops back to the EBR at sector {lba}")]
    EbrLoop {
        /// The EBR visited twice.
        lba: u64,
    },
    /// An EBR link points outside the extended partition or the disk.
    #[error("EBR link to sector {lba} is out of range: {reason}")]
    EbrOutOfRange {
        /// The sector the link points to.
        lba: u64,
        /// Why it is out of range.
        reason: String,
    },
    /// A GPT header is missing or holds absurd values.
    #[error("invalid GPT header at sector {lba}: {reason}")]
    InvalidGptHeader {
        /// The header's sector.
        lba: u64,
        /// What is wrong.
        reason: String,
    },
    /// A GPT header's CRC32 does not match its contents.
    #[error("GPT header at sector {lba} is corrupt: CRC32 0x{stored:08x} stored, 0x{computed:08x} computed")]
    BadGptHeaderCrc {
        /// The header's sector.
        lba: u64,
        /// The checksum in the header.
        stored: u32,
        /// The checksum of the header as read.
        computed: u32,
    },
    /// A GPT partition-entry array's CRC32 does not match the one in its header.
    #[error("GPT partition entries at sector {lba} are corrupt: CRC32 0x{stored:08x} stored, 0x{computed:08x} computed")]
    BadGptEntriesCrc {
        /// First sector of the entry array.
        lba: u64,
        /// The checksum in the header.
        stored: u32,
        /// The checksum of the entries as read.
        computed: u32,
    },
    /// A GPT entry is malformed (first sector after last sector).
    #[error("GPT partition {number} is invalid: {reason}")]
    InvalidGptEntry {
        /// The partition number (entry index + 1).
        number: u32,
        /// What is wrong.
        reason: String,
    },
    /// A partition ends past the end of the disk (or of the table's usable area).
    #[error("partition {number} ends at sector {end}, past {limit_what} (sector {limit})")]
    PartitionPastEnd {
        /// The partition number.
        number: u32,
        /// Its last sector.
        end: u64,
        /// The last sector it may use.
        limit: u64,
        /// What the limit is ("the end of the disk", "the last usable sector", ...).
        limit_what: &'static str,
    },
    /// A partition starts before the table's first usable sector (or on sector 0).
    #[error("partition {number} starts at sector {start}, before the first usable sector {first}")]
    PartitionBeforeStart {
        /// The partition number.
        number: u32,
        /// Its first sector.
        start: u64,
        /// The first sector it may use.
        first: u64,
    },
    /// Two partitions (or a partition and an EBR) share sectors.
    #[error("{a} and {b} overlap")]
    Overlap {
        /// The first object, e.g. "partition 2 (sectors 2048-4095)".
        a: String,
        /// The second object.
        b: String,
    },
    /// A logical partition or an EBR lies outside its extended partition.
    #[error("{what} lies outside the extended partition {extended}")]
    OutsideExtended {
        /// The logical partition or EBR.
        what: String,
        /// The extended partition's number.
        extended: u32,
    },
    /// A value does not fit the 32-bit sector fields of an MBR.
    #[error("partition {number} does not fit an MBR: {reason}")]
    TooLargeForMbr {
        /// The partition number.
        number: u32,
        /// Which value overflows.
        reason: String,
    },
    /// There is no partition with this number.
    #[error("there is no partition {0}")]
    NoSuchPartition(u32),
    /// The extended partition still holds logical partitions.
    #[error("extended partition {number} still holds {logicals} logical partition(s); delete them first")]
    ExtendedNotEmpty {
        /// The extended partition's number.
        number: u32,
        /// How many logical partitions it holds.
        logicals: usize,
    },
    /// A requested change is impossible.
    #[error("cannot change partition {number}: {reason}")]
    InvalidChange {
        /// The partition number.
        number: u32,
        /// Why.
        reason: String,
    },
    /// The size to write the table for is not a whole number of sectors.
    #[error("disk size {size} is not a multiple of the sector size {sector_size}")]
    UnalignedDiskSize {
        /// The requested size in bytes.
        size: u64,
        /// The sector size.
        sector_size: u32,
    },
}

impl PartitionError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> PartitionError {
        PartitionError::Io {
            what: what.into(),
            source,
        }
    }

    /// Whether the error means "this disk is not partitioned" rather than "this table is
    /// broken": the caller reports the disk as unsupported instead of failing.
    pub fn is_no_partition_table(&self) -> bool {
        matches!(self, PartitionError::NoPartitionTable { .. })
    }
}

/// Something odd but usable found while reading a table. Writing the table back
/// ([`super::Layout::write`]) repairs all of these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayoutWarning {
    /// The GPT backup header lies past the end of the disk: a truncated image. The
    /// primary header is used.
    GptBackupMissing {
        /// Where the primary header says the backup is.
        expected_lba: u64,
    },
    /// The GPT backup header or its entries are corrupt. The primary is used.
    GptBackupInvalid {
        /// Where the backup was looked for.
        lba: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The GPT backup is valid but describes a different table than the primary.
    GptBackupMismatch {
        /// The backup header's sector.
        lba: u64,
    },
    /// The GPT backup is valid but not on the disk's last sector (the disk was grown,
    /// or the image was cut).
    GptBackupNotAtEnd {
        /// The backup header's sector.
        lba: u64,
    },
    /// The primary GPT header or its entries are corrupt; the backup was used.
    GptPrimaryInvalid {
        /// What is wrong with the primary.
        reason: String,
    },
    /// A GPT was found without a protective MBR in sector 0.
    GptNoProtectiveMbr,
}

impl fmt::Display for LayoutWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayoutWarning::GptBackupMissing { expected_lba } => write!(
                f,
                "the backup GPT header (sector {expected_lba}) is past the end of the disk; using the primary"
            ),
            LayoutWarning::GptBackupInvalid { lba, reason } => write!(
                f,
                "the backup GPT at sector {lba} is unusable ({reason}); using the primary"
            ),
            LayoutWarning::GptBackupMismatch { lba } => write!(
                f,
                "the backup GPT at sector {lba} differs from the primary; using the primary"
            ),
            LayoutWarning::GptBackupNotAtEnd { lba } => write!(
                f,
                "the backup GPT header is at sector {lba}, not at the end of the disk"
            ),
            LayoutWarning::GptPrimaryInvalid { reason } => write!(
                f,
                "the primary GPT is corrupt ({reason}); using the backup"
            ),
            LayoutWarning::GptNoProtectiveMbr => {
                f.write_str("the GPT disk has no protective MBR")
            }
        }
    }
}
