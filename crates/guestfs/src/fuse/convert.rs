//! Guest-tree values in FUSE's terms: errors as errno, metadata as attributes, times.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{Errno, FileAttr, INodeNo, TimeOrNow};

use crate::error::Error;
use crate::node::{FileType, Metadata};

/// The errno a guest-tree error stands for.
pub(super) fn errno(e: &Error) -> Errno {
    match e {
        Error::NotFound(_) => Errno::ENOENT,
        Error::NotADirectory(_) => Errno::ENOTDIR,
        Error::IsADirectory(_) => Errno::EISDIR,
        Error::NotEmpty(_) => Errno::ENOTEMPTY,
        Error::AlreadyExists(_) => Errno::EEXIST,
        Error::NotASymlink(_) | Error::InvalidPath(_) => Errno::EINVAL,
        Error::TooManySymlinks(_) => Errno::ELOOP,
        Error::ReadOnly(_) => Errno::EROFS,
        Error::CrossDevice(_) => Errno::EXDEV,
        Error::Unsupported { .. } => Errno::EOPNOTSUPP,
        Error::NoSpace(_) => Errno::ENOSPC,
        Error::Io { source, .. } => source.raw_os_error().map_or(Errno::EIO, Errno::from_i32),
        Error::Cancelled(_) => Errno::EINTR,
        _ => Errno::EIO,
    }
}

pub(super) fn system_time(secs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
    } else {
        UNIX_EPOCH
            .checked_sub(Duration::from_secs(secs.unsigned_abs()))
            .unwrap_or(UNIX_EPOCH)
    }
}

pub(super) fn epoch_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

pub(super) fn time_or_now(t: TimeOrNow) -> i64 {
    match t {
        TimeOrNow::SpecificTime(t) => epoch_secs(t),
        TimeOrNow::Now => epoch_secs(SystemTime::now()),
    }
}

pub(super) fn kind(t: FileType) -> fuser::FileType {
    match t {
        FileType::Directory => fuser::FileType::Directory,
        FileType::Symlink => fuser::FileType::Symlink,
        FileType::CharDevice => fuser::FileType::CharDevice,
        FileType::BlockDevice => fuser::FileType::BlockDevice,
        FileType::Fifo => fuser::FileType::NamedPipe,
        FileType::Socket => fuser::FileType::Socket,
        FileType::Regular | FileType::Unknown => fuser::FileType::RegularFile,
    }
}

pub(super) fn attr(ino: u64, m: &Metadata) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size: m.size,
        blocks: m.allocated.div_ceil(512),
        atime: system_time(m.atime),
        mtime: system_time(m.mtime),
        ctime: system_time(m.ctime),
        crtime: system_time(m.ctime),
        kind: kind(m.file_type),
        perm: (m.mode & 0o7777) as u16,
        nlink: m.nlink,
        uid: m.uid,
        gid: m.gid,
        // Linux's "new" device encoding, which glibc's makedev agrees with below 2^32.
        rdev: u32::try_from(m.rdev).unwrap_or(0),
        blksize: 4096,
        flags: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::path::PathBuf;

    #[test]
    fn errors_map_to_errno() {
        assert_eq!(errno(&Error::NotFound(PathBuf::new())), Errno::ENOENT);
        assert_eq!(errno(&Error::NotEmpty(PathBuf::new())), Errno::ENOTEMPTY);
        assert_eq!(errno(&Error::CrossDevice(PathBuf::new())), Errno::EXDEV);
        assert_eq!(errno(&Error::ReadOnly(PathBuf::new())), Errno::EROFS);
        assert_eq!(errno(&Error::NoSpace(PathBuf::new())), Errno::ENOSPC);
        let io = Error::io(io::Error::from_raw_os_error(libc_eacces()));
        assert_eq!(errno(&io), Errno::EACCES);
        assert_eq!(errno(&Error::backend("boom")), Errno::EIO);
    }

    fn libc_eacces() -> i32 {
        rustix::io::Errno::ACCESS.raw_os_error()
    }

    #[test]
    fn negative_times_convert_both_ways() {
        assert_eq!(epoch_secs(system_time(-5)), -5);
        assert_eq!(epoch_secs(system_time(1_700_000_000)), 1_700_000_000);
    }
}
