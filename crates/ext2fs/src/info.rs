//! What the superblock says about a filesystem.

use crate::sys::SnfSuper;

/// Which of ext2, ext3 and ext4 a filesystem is, decided by its features the way
/// `blkid` does: ext4 if it uses anything ext3 does not know, else ext3 if it has a
/// journal, else ext2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExtKind {
    Ext2,
    Ext3,
    Ext4,
}

impl ExtKind {
    /// `ext2`, `ext3` or `ext4`.
    pub fn name(self) -> &'static str {
        match self {
            ExtKind::Ext2 => "ext2",
            ExtKind::Ext3 => "ext3",
            ExtKind::Ext4 => "ext4",
        }
    }
}

/// The three feature words of the superblock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Features {
    pub compat: u32,
    pub incompat: u32,
    pub ro_compat: u32,
}

/// Feature bits, as in `ext2_fs.h`.
pub mod feature {
    pub const COMPAT_DIR_PREALLOC: u32 = 0x0001;
    pub const COMPAT_IMAGIC_INODES: u32 = 0x0002;
    pub const COMPAT_HAS_JOURNAL: u32 = 0x0004;
    pub const COMPAT_EXT_ATTR: u32 = 0x0008;
    pub const COMPAT_RESIZE_INODE: u32 = 0x0010;
    pub const COMPAT_DIR_INDEX: u32 = 0x0020;
    pub const COMPAT_SPARSE_SUPER2: u32 = 0x0200;
    pub const COMPAT_FAST_COMMIT: u32 = 0x0400;
    pub const COMPAT_STABLE_INODES: u32 = 0x0800;
    pub const COMPAT_ORPHAN_FILE: u32 = 0x1000;

    pub const RO_COMPAT_SPARSE_SUPER: u32 = 0x0001;
    pub const RO_COMPAT_LARGE_FILE: u32 = 0x0002;
    pub const RO_COMPAT_BTREE_DIR: u32 = 0x0004;
    pub const RO_COMPAT_HUGE_FILE: u32 = 0x0008;
    pub const RO_COMPAT_GDT_CSUM: u32 = 0x0010;
    pub const RO_COMPAT_DIR_NLINK: u32 = 0x0020;
    pub const RO_COMPAT_EXTRA_ISIZE: u32 = 0x0040;
    pub const RO_COMPAT_QUOTA: u32 = 0x0100;
    pub const RO_COMPAT_BIGALLOC: u32 = 0x0200;
    pub const RO_COMPAT_METADATA_CSUM: u32 = 0x0400;
    pub const RO_COMPAT_READONLY: u32 = 0x1000;
    pub const RO_COMPAT_PROJECT: u32 = 0x2000;
    pub const RO_COMPAT_SHARED_BLOCKS: u32 = 0x4000;
    pub const RO_COMPAT_VERITY: u32 = 0x8000;
    pub const RO_COMPAT_ORPHAN_PRESENT: u32 = 0x10000;

    pub const INCOMPAT_COMPRESSION: u32 = 0x0001;
    pub const INCOMPAT_FILETYPE: u32 = 0x0002;
    pub const INCOMPAT_RECOVER: u32 = 0x0004;
    pub const INCOMPAT_JOURNAL_DEV: u32 = 0x0008;
    pub const INCOMPAT_META_BG: u32 = 0x0010;
    pub const INCOMPAT_EXTENTS: u32 = 0x0040;
    pub const INCOMPAT_64BIT: u32 = 0x0080;
    pub const INCOMPAT_MMP: u32 = 0x0100;
    pub const INCOMPAT_FLEX_BG: u32 = 0x0200;
    pub const INCOMPAT_EA_INODE: u32 = 0x0400;
    pub const INCOMPAT_DIRDATA: u32 = 0x1000;
    pub const INCOMPAT_CSUM_SEED: u32 = 0x2000;
    pub const INCOMPAT_LARGEDIR: u32 = 0x4000;
    pub const INCOMPAT_INLINE_DATA: u32 = 0x8000;
    pub const INCOMPAT_ENCRYPT: u32 = 0x10000;
    pub const INCOMPAT_CASEFOLD: u32 = 0x20000;
}

use feature::*;

const COMPAT_NAMES: &[(u32, &str)] = &[
    (COMPAT_DIR_PREALLOC, "dir_prealloc"),
    (COMPAT_IMAGIC_INODES, "imagic_inodes"),
    (COMPAT_HAS_JOURNAL, "has_journal"),
    (COMPAT_EXT_ATTR, "ext_attr"),
    (COMPAT_RESIZE_INODE, "resize_inode"),
    (COMPAT_DIR_INDEX, "dir_index"),
    (COMPAT_SPARSE_SUPER2, "sparse_super2"),
    (COMPAT_FAST_COMMIT, "fast_commit"),
    (COMPAT_STABLE_INODES, "stable_inodes"),
    (COMPAT_ORPHAN_FILE, "orphan_file"),
];
const INCOMPAT_NAMES: &[(u32, &str)] = &[
    (INCOMPAT_COMPRESSION, "compression"),
    (INCOMPAT_FILETYPE, "filetype"),
    (INCOMPAT_RECOVER, "needs_recovery"),
    (INCOMPAT_JOURNAL_DEV, "journal_dev"),
    (INCOMPAT_META_BG, "meta_bg"),
    (INCOMPAT_EXTENTS, "extent"),
    (INCOMPAT_64BIT, "64bit"),
    (INCOMPAT_MMP, "mmp"),
    (INCOMPAT_FLEX_BG, "flex_bg"),
    (INCOMPAT_EA_INODE, "ea_inode"),
    (INCOMPAT_DIRDATA, "dirdata"),
    (INCOMPAT_CSUM_SEED, "metadata_csum_seed"),
    (INCOMPAT_LARGEDIR, "large_dir"),
    (INCOMPAT_INLINE_DATA, "inline_data"),
    (INCOMPAT_ENCRYPT, "encrypt"),
    (INCOMPAT_CASEFOLD, "casefold"),
];
const RO_COMPAT_NAMES: &[(u32, &str)] = &[
    (RO_COMPAT_SPARSE_SUPER, "sparse_super"),
    (RO_COMPAT_LARGE_FILE, "large_file"),
    (RO_COMPAT_BTREE_DIR, "btree_dir"),
    (RO_COMPAT_HUGE_FILE, "huge_file"),
    (RO_COMPAT_GDT_CSUM, "uninit_bg"),
    (RO_COMPAT_DIR_NLINK, "dir_nlink"),
    (RO_COMPAT_EXTRA_ISIZE, "extra_isize"),
    (RO_COMPAT_QUOTA, "quota"),
    (RO_COMPAT_BIGALLOC, "bigalloc"),
    (RO_COMPAT_METADATA_CSUM, "metadata_csum"),
    (RO_COMPAT_READONLY, "read-only"),
    (RO_COMPAT_PROJECT, "project"),
    (RO_COMPAT_SHARED_BLOCKS, "shared_blocks"),
    (RO_COMPAT_VERITY, "verity"),
    (RO_COMPAT_ORPHAN_PRESENT, "orphan_present"),
];

/// What ext3 understands; anything else makes a filesystem ext4 (as in blkid).
const EXT3_INCOMPAT: u32 = INCOMPAT_FILETYPE | INCOMPAT_RECOVER | INCOMPAT_META_BG;
const EXT3_RO_COMPAT: u32 = RO_COMPAT_SPARSE_SUPER | RO_COMPAT_LARGE_FILE | RO_COMPAT_BTREE_DIR;

impl Features {
    /// The feature names `dumpe2fs`/`tune2fs -l` would print, unknown bits as
    /// `FEATURE_<word><bit>`.
    pub fn names(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (word, value, table) in [
            ("C", self.compat, COMPAT_NAMES),
            ("I", self.incompat, INCOMPAT_NAMES),
            ("R", self.ro_compat, RO_COMPAT_NAMES),
        ] {
            for bit in 0..32 {
                let mask = 1u32 << bit;
                if value & mask == 0 {
                    continue;
                }
                match table.iter().find(|(m, _)| *m == mask) {
                    Some((_, name)) => out.push((*name).to_string()),
                    None => out.push(format!("FEATURE_{word}{bit}")),
                }
            }
        }
        out
    }

    /// The feature words of a raw superblock (the 1024 bytes at byte 1024 of the
    /// filesystem), or `None` without the ext2 magic number.
    pub fn from_superblock(sb: &[u8]) -> Option<Features> {
        let word = |at: usize| -> Option<u32> {
            Some(u32::from_le_bytes(sb.get(at..at + 4)?.try_into().ok()?))
        };
        let magic = u16::from_le_bytes(sb.get(0x38..0x3a)?.try_into().ok()?);
        if magic != 0xef53 {
            return None;
        }
        Some(Features {
            compat: word(0x5c)?,
            incompat: word(0x60)?,
            ro_compat: word(0x64)?,
        })
    }

    /// The features set here and missing from `supported`, each as its name
    /// (`compression`) or, for bits with no name, as its word and value
    /// (`incompat 0x80000`).
    pub fn missing_from(&self, supported: &Features) -> Vec<String> {
        let mut out = Vec::new();
        for (word, value, known, table) in [
            ("compat", self.compat, supported.compat, COMPAT_NAMES),
            (
                "incompat",
                self.incompat,
                supported.incompat,
                INCOMPAT_NAMES,
            ),
            (
                "ro_compat",
                self.ro_compat,
                supported.ro_compat,
                RO_COMPAT_NAMES,
            ),
        ] {
            let missing = value & !known;
            for bit in 0..32 {
                let mask = 1u32 << bit;
                if missing & mask == 0 {
                    continue;
                }
                match table.iter().find(|(m, _)| *m == mask) {
                    Some((_, name)) => out.push((*name).to_string()),
                    None => out.push(format!("{word} {mask:#x}")),
                }
            }
        }
        out
    }

    /// ext2, ext3 or ext4, as blkid decides it.
    pub fn kind(&self) -> ExtKind {
        if self.incompat & !EXT3_INCOMPAT != 0 || self.ro_compat & !EXT3_RO_COMPAT != 0 {
            ExtKind::Ext4
        } else if self.compat & COMPAT_HAS_JOURNAL != 0 {
            ExtKind::Ext3
        } else {
            ExtKind::Ext2
        }
    }

    /// Whether the feature called `name` (as in [`Features::names`]) is set.
    pub fn has(&self, name: &str) -> bool {
        let find = |table: &[(u32, &str)], value: u32| {
            table
                .iter()
                .any(|(mask, n)| *n == name && value & mask != 0)
        };
        find(COMPAT_NAMES, self.compat)
            || find(INCOMPAT_NAMES, self.incompat)
            || find(RO_COMPAT_NAMES, self.ro_compat)
    }
}

/// Superblock facts about one filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuperInfo {
    pub uuid: [u8; 16],
    /// Volume label (up to 16 bytes, lossily decoded).
    pub label: String,
    /// Where it was last mounted (`s_last_mounted`), empty if never recorded.
    pub last_mounted: String,
    pub block_size: u32,
    pub cluster_size: u32,
    pub inode_size: u32,
    pub blocks_count: u64,
    pub free_blocks: u64,
    pub reserved_blocks: u64,
    pub inodes_count: u64,
    pub free_inodes: u64,
    /// First block the block bitmap covers (1 for 1 KiB blocks, else 0).
    pub first_data_block: u32,
    pub blocks_per_group: u32,
    pub inodes_per_group: u32,
    pub features: Features,
    /// `s_state`: bit 0 = cleanly unmounted, bit 1 = errors detected.
    pub state: u32,
    pub mount_count: u32,
    /// Mounts before a check is forced (-1: never).
    pub max_mount_count: i32,
    /// Seconds since the epoch.
    pub mount_time: i64,
    pub write_time: i64,
    pub mkfs_time: i64,
    pub last_check: i64,
    /// Head of the orphan-inode list (0: empty).
    pub last_orphan: u32,
    pub journal_inode: u32,
}

fn c_text(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

impl SuperInfo {
    pub(crate) fn from_raw(s: &SnfSuper) -> SuperInfo {
        SuperInfo {
            uuid: s.uuid,
            label: c_text(&s.label),
            last_mounted: c_text(&s.last_mounted),
            block_size: s.block_size,
            cluster_size: s.cluster_size,
            inode_size: s.inode_size,
            blocks_count: s.blocks_count,
            free_blocks: s.free_blocks,
            reserved_blocks: s.reserved_blocks,
            inodes_count: s.inodes_count,
            free_inodes: s.free_inodes,
            first_data_block: s.first_data_block,
            blocks_per_group: s.blocks_per_group,
            inodes_per_group: s.inodes_per_group,
            features: Features {
                compat: s.feature_compat,
                incompat: s.feature_incompat,
                ro_compat: s.feature_ro_compat,
            },
            state: s.state,
            mount_count: s.mount_count,
            max_mount_count: s.max_mount_count as i32,
            mount_time: s.mount_time,
            write_time: s.write_time,
            mkfs_time: s.mkfs_time,
            last_check: s.last_check,
            last_orphan: s.last_orphan,
            journal_inode: s.journal_inum,
        }
    }

    /// ext2, ext3 or ext4.
    pub fn kind(&self) -> ExtKind {
        self.features.kind()
    }

    /// The UUID in its usual text form (`8-4-4-4-12` lowercase hex).
    pub fn uuid_string(&self) -> String {
        let u = &self.uuid;
        let hex =
            |r: std::ops::Range<usize>| u[r].iter().map(|b| format!("{b:02x}")).collect::<String>();
        format!(
            "{}-{}-{}-{}-{}",
            hex(0..4),
            hex(4..6),
            hex(6..8),
            hex(8..10),
            hex(10..16)
        )
    }

    /// Size of the filesystem in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.blocks_count * u64::from(self.block_size)
    }

    /// Whether it was cleanly unmounted (`EXT2_VALID_FS`).
    pub fn is_clean(&self) -> bool {
        self.state & 0x0001 != 0
    }

    /// Whether errors were recorded (`EXT2_ERROR_FS`).
    pub fn has_errors(&self) -> bool {
        self.state & 0x0002 != 0
    }

    /// Whether the journal holds transactions not yet written to the filesystem.
    pub fn needs_recovery(&self) -> bool {
        self.features.incompat & INCOMPAT_RECOVER != 0
    }

    /// Whether it has a journal (ext3/ext4).
    pub fn has_journal(&self) -> bool {
        self.features.compat & COMPAT_HAS_JOURNAL != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(compat: u32, incompat: u32, ro_compat: u32) -> SuperInfo {
        let mut raw: SnfSuper = SnfSuper {
            blocks_count: 0,
            free_blocks: 0,
            reserved_blocks: 0,
            inodes_count: 0,
            free_inodes: 0,
            mount_time: 0,
            write_time: 0,
            mkfs_time: 0,
            last_check: 0,
            block_size: 4096,
            cluster_size: 4096,
            inode_size: 256,
            first_data_block: 0,
            blocks_per_group: 0,
            inodes_per_group: 0,
            feature_compat: compat,
            feature_incompat: incompat,
            feature_ro_compat: ro_compat,
            state: 1,
            rev_level: 1,
            mount_count: 0,
            max_mount_count: u32::MAX,
            creator_os: 0,
            last_orphan: 0,
            journal_inum: 0,
            uuid: [0; 16],
            label: [0; 16],
            last_mounted: [0; 64],
        };
        raw.label[..4].copy_from_slice(b"root");
        raw.uuid = [
            0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab,
            0xcd, 0xef,
        ];
        SuperInfo::from_raw(&raw)
    }

    #[test]
    fn kind_follows_features_like_blkid() {
        assert_eq!(
            info(0, INCOMPAT_FILETYPE, RO_COMPAT_SPARSE_SUPER).kind(),
            ExtKind::Ext2
        );
        assert_eq!(
            info(COMPAT_HAS_JOURNAL, INCOMPAT_FILETYPE, RO_COMPAT_LARGE_FILE).kind(),
            ExtKind::Ext3
        );
        assert_eq!(
            info(COMPAT_HAS_JOURNAL, INCOMPAT_FILETYPE | INCOMPAT_EXTENTS, 0).kind(),
            ExtKind::Ext4
        );
        assert_eq!(info(0, 0, RO_COMPAT_HUGE_FILE).kind(), ExtKind::Ext4);
    }

    #[test]
    fn text_fields_and_names() {
        let i = info(COMPAT_HAS_JOURNAL | 0x8000_0000, INCOMPAT_RECOVER, 0);
        assert_eq!(i.label, "root");
        assert_eq!(i.uuid_string(), "12345678-9abc-def0-0123-456789abcdef");
        assert_eq!(i.max_mount_count, -1);
        assert!(i.needs_recovery() && i.has_journal() && i.is_clean() && !i.has_errors());
        assert_eq!(
            i.features.names(),
            vec!["has_journal", "FEATURE_C31", "needs_recovery"]
        );
        assert!(i.features.has("needs_recovery") && !i.features.has("extent"));
    }
}
