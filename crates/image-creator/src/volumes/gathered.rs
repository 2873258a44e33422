//! Logical volumes whose data is in several pieces on the disk (a volume extended after
//! another was made, or one spanning two physical volumes). The backends read and write
//! one contiguous byte range, so such a volume is gathered into a scratch file of the
//! work directory, opened there, and scattered back into its pieces whenever the
//! filesystem is synced or closed.

use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use snf_guestfs::assemble::{Backends, Opener, PartitionDesc};

use crate::shrink::copy::{copy_range, fill_zeros, CopyError, Zeros};
use snf_guestfs::probe::Probe;
use snf_guestfs::{
    DirEntry, Error as FsError, Filesystem, FsKind, Metadata, NewNode, NodeId, Result as FsResult,
    SetAttr,
};

/// Opens volumes with the real backends, gathering split logical volumes into scratch
/// files under `dir` first.
pub struct GatheringOpener {
    /// Where the scratch files go (the run's work directory).
    pub dir: PathBuf,
}

impl Opener for GatheringOpener {
    fn open(
        &self,
        image: &Path,
        part: &PartitionDesc,
        probe: &Probe,
        writable: bool,
    ) -> FsResult<Box<dyn Filesystem>> {
        if part.pieces.is_empty() {
            return Backends.open(image, part, probe, writable);
        }
        let io_err = |source: io::Error| FsError::Io {
            path: PathBuf::from(part.name()),
            source,
        };
        let scratch = tempfile::Builder::new()
            .prefix("lv-")
            .suffix(".gathered")
            .tempfile_in(&self.dir)
            .map_err(io_err)?;
        let (file, path) = scratch.into_parts();
        let disk = File::open(image).map_err(io_err)?;
        let mut at = 0;
        for piece in &part.pieces {
            snf_core::cancel::check()?;
            copy_data(&disk, piece.start, &file, at, piece.end - piece.start).map_err(io_err)?;
            at += piece.end - piece.start;
        }
        file.set_len(at).map_err(io_err)?;
        let whole = PartitionDesc {
            offset: 0,
            size: at,
            pieces: Vec::new(),
            ..part.clone()
        };
        let inner = Backends.open(&path, &whole, probe, writable)?;
        Ok(Box::new(GatheredFs {
            inner,
            home: Home {
                scratch: path,
                image: image.to_path_buf(),
                pieces: part.pieces.clone(),
                name: part.name(),
                writable,
            },
        }))
    }
}

/// A filesystem opened on a gathered copy of a split volume.
struct GatheredFs {
    inner: Box<dyn Filesystem>,
    home: Home,
}

/// Where a gathered copy came from, and goes back to.
struct Home {
    /// The gathered copy; removed when dropped.
    scratch: tempfile::TempPath,
    image: PathBuf,
    pieces: Vec<Range<u64>>,
    /// How messages name the volume.
    name: String,
    writable: bool,
}

impl Home {
    /// Copy the gathered volume back into its pieces.
    fn scatter(&self) -> FsResult<()> {
        if !self.writable {
            return Ok(());
        }
        let io_err = |source: io::Error| FsError::Io {
            path: PathBuf::from(&self.name),
            source,
        };
        let src = File::open(&self.scratch).map_err(io_err)?;
        let disk = OpenOptions::new()
            .write(true)
            .open(&self.image)
            .map_err(io_err)?;
        let mut at = 0;
        for piece in &self.pieces {
            let len = piece.end - piece.start;
            copy_all(&src, at, &disk, piece.start, len).map_err(io_err)?;
            at += len;
        }
        Ok(())
    }
}

/// Copy the data segments of `len` bytes of `src` at `from` to `dst` at `to`; the holes
/// of `src` are not written (`dst` is a new sparse file).
fn copy_data(src: &File, from: u64, dst: &File, to: u64, len: u64) -> io::Result<()> {
    for seg in snf_disk::data_ranges(src, from..from + len)? {
        let at = to + (seg.start - from);
        copy_range(
            src,
            seg.start,
            dst,
            at,
            seg.end - seg.start,
            Zeros::Skip,
            |_| {},
        )
        .map_err(CopyError::into_io)?;
    }
    Ok(())
}

/// Copy `len` bytes of `src` at `from` over `dst` at `to`, holes of `src` included (as
/// zeros): what was in `dst` must be replaced entirely.
fn copy_all(src: &File, from: u64, dst: &File, to: u64, len: u64) -> io::Result<()> {
    let mut pos = from;
    for seg in snf_disk::data_ranges(src, from..from + len)? {
        let at = to + (pos - from);
        fill_zeros(dst, at..at + (seg.start - pos))?;
        let at = to + (seg.start - from);
        copy_range(
            src,
            seg.start,
            dst,
            at,
            seg.end - seg.start,
            Zeros::Write,
            |_| {},
        )
        .map_err(CopyError::into_io)?;
        pos = seg.end;
    }
    let at = to + (pos - from);
    fill_zeros(dst, at..at + (from + len - pos))
}

impl Filesystem for GatheredFs {
    fn kind(&self) -> FsKind {
        self.inner.kind()
    }
    fn is_writable(&self) -> bool {
        self.inner.is_writable()
    }
    fn root(&self) -> NodeId {
        self.inner.root()
    }
    fn lookup(&mut self, dir: NodeId, name: &OsStr) -> FsResult<Option<NodeId>> {
        self.inner.lookup(dir, name)
    }
    fn metadata(&mut self, node: NodeId) -> FsResult<Metadata> {
        self.inner.metadata(node)
    }
    fn read_dir(&mut self, dir: NodeId) -> FsResult<Vec<DirEntry>> {
        self.inner.read_dir(dir)
    }
    fn read_link(&mut self, node: NodeId) -> FsResult<OsString> {
        self.inner.read_link(node)
    }
    fn read_at(&mut self, node: NodeId, offset: u64, buf: &mut [u8]) -> FsResult<usize> {
        self.inner.read_at(node, offset, buf)
    }
    fn write_at(&mut self, node: NodeId, offset: u64, data: &[u8]) -> FsResult<()> {
        self.inner.write_at(node, offset, data)
    }
    fn set_len(&mut self, node: NodeId, size: u64) -> FsResult<()> {
        self.inner.set_len(node, size)
    }
    fn create_file(&mut self, dir: NodeId, name: &OsStr, attr: NewNode) -> FsResult<NodeId> {
        self.inner.create_file(dir, name, attr)
    }
    fn mkdir(&mut self, dir: NodeId, name: &OsStr, attr: NewNode) -> FsResult<NodeId> {
        self.inner.mkdir(dir, name, attr)
    }
    fn symlink(
        &mut self,
        dir: NodeId,
        name: &OsStr,
        target: &OsStr,
        attr: NewNode,
    ) -> FsResult<NodeId> {
        self.inner.symlink(dir, name, target, attr)
    }
    fn hard_link(&mut self, node: NodeId, dir: NodeId, name: &OsStr) -> FsResult<()> {
        self.inner.hard_link(node, dir, name)
    }
    fn unlink(&mut self, dir: NodeId, name: &OsStr) -> FsResult<()> {
        self.inner.unlink(dir, name)
    }
    fn rmdir(&mut self, dir: NodeId, name: &OsStr) -> FsResult<()> {
        self.inner.rmdir(dir, name)
    }
    fn rename(
        &mut self,
        from_dir: NodeId,
        from_name: &OsStr,
        to_dir: NodeId,
        to_name: &OsStr,
    ) -> FsResult<()> {
        self.inner.rename(from_dir, from_name, to_dir, to_name)
    }
    fn set_attr(&mut self, node: NodeId, attr: SetAttr) -> FsResult<()> {
        self.inner.set_attr(node, attr)
    }
    fn xattrs(&mut self, node: NodeId) -> FsResult<Vec<(OsString, Vec<u8>)>> {
        self.inner.xattrs(node)
    }
    fn sync(&mut self) -> FsResult<()> {
        self.inner.sync()?;
        self.home.scatter()
    }
    fn close(self: Box<Self>) -> FsResult<()> {
        let GatheredFs { inner, home } = *self;
        inner.close()?;
        home.scatter()
    }
}
