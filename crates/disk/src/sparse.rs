//! The sparse copy engine shared by the snapshot copy, the diskdump and the MD5 pass.
//!
//! It walks `[0, size)` of an input file as a sequence of segments: holes (found with
//! `SEEK_DATA`/`SEEK_HOLE`, never read) and ranges the caller declared free are zero
//! segments; everything else is read in chunks of at most [`CHUNK`] bytes. Chunks that
//! read back as all zeros are treated like holes on the output side (not written), so
//! the output stays sparse. The MD5, when asked for, is computed on a second thread fed
//! through a bounded channel, so reading/writing and hashing overlap while memory stays
//! bounded to a few buffers whatever the image size.

use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::sync::mpsc;

use rustix::fs::SeekFrom;
use snf_core::md5::Md5;
use snf_core::Task;

/// Largest data read, write or hash update.
pub(crate) const CHUNK: usize = 1 << 20;

/// Buffers in flight between the reader and the hasher (memory: `BUFFERS * CHUNK`).
const BUFFERS: usize = 4;

/// Largest run of zeros handed to the hasher in one message, so that the progress shown
/// (the reader's position) never runs far ahead of the hash.
const ZERO_MSG: u64 = 16 << 20;

/// Output blocks smaller than this are never left as holes (a filesystem block).
const ZERO_GRAIN: usize = 4096;

/// Why the engine stopped.
#[derive(Debug)]
pub(crate) enum EngineError {
    /// Reading the input failed at `offset`.
    Read { offset: u64, source: io::Error },
    /// Writing the output failed.
    Write(io::Error),
    /// Cancellation was requested.
    Cancelled,
}

/// One piece of the input.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// Reads as zeros: a hole of the input or a range the caller declared free.
    Zero(Range<u64>),
    /// Must be read (at most [`CHUNK`] bytes).
    Data(Range<u64>),
}

/// Walks the input, asking the kernel where data is so holes are never read.
struct Segments<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
    /// Sorted, merged, clipped free ranges still ahead of `pos`.
    free: Vec<Range<u64>>,
    free_idx: usize,
    /// The data extent at or after `pos` found by the last lookup: no data lies between
    /// the position of that lookup and its start.
    data: Option<Range<u64>>,
    /// Whether `SEEK_DATA`/`SEEK_HOLE` work on this file.
    seekable: bool,
}

/// Sort, merge and clip `free` to `[0, end)`.
fn normalise(free: &[Range<u64>], end: u64) -> Vec<Range<u64>> {
    let mut v: Vec<Range<u64>> = free
        .iter()
        .map(|r| r.start.min(end)..r.end.min(end))
        .filter(|r| r.start < r.end)
        .collect();
    v.sort_by_key(|r| r.start);
    let mut out: Vec<Range<u64>> = Vec::with_capacity(v.len());
    for r in v {
        match out.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

impl<'a> Segments<'a> {
    fn new(file: &'a File, end: u64, free: &[Range<u64>]) -> Self {
        Segments {
            file,
            pos: 0,
            end,
            free: normalise(free, end),
            free_idx: 0,
            data: None,
            seekable: true,
        }
    }

    /// Where the data at or after `pos` starts and ends (`None`: only a hole remains).
    fn locate(&mut self, pos: u64) -> io::Result<Option<Range<u64>>> {
        if !self.seekable {
            return Ok(Some(pos..self.end));
        }
        let start = match rustix::fs::seek(self.file, SeekFrom::Data(pos)) {
            Ok(s) => s,
            Err(rustix::io::Errno::NXIO) => return Ok(None),
            Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::OPNOTSUPP) => {
                // No hole support (e.g. some special files): everything is data.
                self.seekable = false;
                return Ok(Some(pos..self.end));
            }
            Err(e) => return Err(e.into()),
        };
        let end = match rustix::fs::seek(self.file, SeekFrom::Hole(start)) {
            Ok(e) => e,
            Err(rustix::io::Errno::NXIO) => self.end,
            Err(e) => return Err(e.into()),
        };
        Ok(Some(start..end.max(start + 1)))
    }

    fn next(&mut self) -> io::Result<Option<Segment>> {
        let pos = self.pos;
        if pos >= self.end {
            return Ok(None);
        }
        while self.free_idx < self.free.len() && self.free[self.free_idx].end <= pos {
            self.free_idx += 1;
        }
        let next_free = self.free.get(self.free_idx).cloned();
        if let Some(f) = &next_free {
            if f.start <= pos {
                self.pos = f.end;
                return Ok(Some(Segment::Zero(pos..f.end)));
            }
        }
        let limit = next_free.map_or(self.end, |f| f.start);
        let data = match &self.data {
            Some(r) if r.end > pos => r.clone(),
            _ => {
                // No data left: an empty range at the very end stands for "all hole".
                let r = self.locate(pos)?.unwrap_or(u64::MAX..u64::MAX);
                self.data = Some(r.clone());
                r
            }
        };
        if data.start > pos {
            let z = data.start.min(limit);
            self.pos = z;
            return Ok(Some(Segment::Zero(pos..z)));
        }
        let stop = data.end.min(limit).min(pos + CHUNK as u64);
        self.pos = stop;
        Ok(Some(Segment::Data(pos..stop)))
    }
}

/// Read `buf.len()` bytes at `offset`; bytes past the end of the file read as zeros.
fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => {
                buf[done..].fill(0);
                return Ok(());
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Whether `buf` holds only zero bytes. The OR-fold over fixed blocks vectorises well.
pub(crate) fn is_zero(buf: &[u8]) -> bool {
    buf.chunks(ZERO_GRAIN)
        .all(|c| c.iter().fold(0u8, |acc, &b| acc | b) == 0)
}

/// `buf` as maximal runs of 4 KiB grains (the last one may be shorter) that are all
/// zeros or all not: each a byte range of `buf` and whether it is zeros.
fn grain_runs(buf: &[u8]) -> impl Iterator<Item = (Range<usize>, bool)> + '_ {
    let grain_is_zero = |k: usize| is_zero(&buf[k..(k + ZERO_GRAIN).min(buf.len())]);
    let mut i = 0;
    std::iter::from_fn(move || {
        if i >= buf.len() {
            return None;
        }
        let start = i;
        let zero = grain_is_zero(i);
        while i < buf.len() && grain_is_zero(i) == zero {
            i += ZERO_GRAIN;
        }
        Some((start..i.min(buf.len()), zero))
    })
}

/// Write the non-zero 4 KiB blocks of `buf` at `offset`, leaving zero blocks as holes
/// (consecutive non-zero blocks in one write).
fn write_sparse(out: &File, buf: &[u8], offset: u64) -> io::Result<()> {
    if is_zero(buf) {
        return Ok(());
    }
    for (run, zero) in grain_runs(buf) {
        if !zero {
            out.write_all_at(&buf[run.clone()], offset + run.start as u64)?;
        }
    }
    Ok(())
}

/// Punch out the whole all-zero 4 KiB blocks of `buf`, which was read from `file` at
/// `offset` (block-aligned).
fn punch_zero_grains(file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
    if !offset.is_multiple_of(ZERO_GRAIN as u64) {
        return Ok(());
    }
    for (run, zero) in grain_runs(buf) {
        // A shorter last block is left as it is.
        let whole = (run.end - run.start) / ZERO_GRAIN * ZERO_GRAIN;
        if zero && whole > 0 {
            let start = offset + run.start as u64;
            punch_hole(file, start..start + whole as u64)?;
        }
    }
    Ok(())
}

/// The data extents of `range` of `file` (`SEEK_DATA`/`SEEK_HOLE`), clipped to it, in
/// order; all of `range` where the filesystem cannot tell.
pub fn data_ranges(file: &File, range: Range<u64>) -> io::Result<Vec<Range<u64>>> {
    let mut seg = Segments::new(file, range.end, &[]);
    seg.pos = range.start;
    let mut out: Vec<Range<u64>> = Vec::new();
    while let Some(s) = seg.next()? {
        if let Segment::Data(r) = s {
            match out.last_mut() {
                Some(last) if last.end == r.start => last.end = r.end,
                _ => out.push(r),
            }
        }
    }
    Ok(out)
}

/// Deallocate `range` of `file`, which then reads as zeros; its size stays. Fails
/// where the filesystem cannot punch holes.
pub fn punch_hole(file: &File, range: Range<u64>) -> io::Result<()> {
    rustix::fs::fallocate(
        file,
        rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE,
        range.start,
        range.end - range.start,
    )?;
    Ok(())
}

/// Copy `len` bytes of `src` at `from` to `dst` at `to` inside the kernel
/// (`copy_file_range`: no trip through user space, a reflink where the filesystem
/// can). `Ok(false)` when the kernel cannot copy between these files and nothing was
/// copied: the caller copies by hand. Bytes past the end of `src` are left as they are
/// in `dst`.
pub fn kernel_copy(src: &File, from: u64, dst: &File, to: u64, len: u64) -> io::Result<bool> {
    let (mut off_in, mut off_out) = (from, to);
    let end = from + len;
    while off_in < end {
        let want = (end - off_in).min(1 << 30) as usize;
        match rustix::fs::copy_file_range(src, Some(&mut off_in), dst, Some(&mut off_out), want) {
            Ok(0) => break,
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => {}
            Err(
                rustix::io::Errno::XDEV
                | rustix::io::Errno::INVAL
                | rustix::io::Errno::NOSYS
                | rustix::io::Errno::OPNOTSUPP
                | rustix::io::Errno::BADF,
            ) if off_in == from => return Ok(false),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(true)
}

/// What a run of the engine does.
pub(crate) struct Job<'a> {
    /// The input, read with `pread` (its file offset is used for `SEEK_DATA` only).
    pub src: &'a File,
    /// Bytes `[0, size)` of `src` are processed.
    pub size: u64,
    /// Byte ranges to treat as zeros without reading them.
    pub free: &'a [Range<u64>],
    /// Where to write (sparse, same offsets); the caller sets the final length.
    pub dst: Option<&'a File>,
    /// Compute the MD5 of `[0, size)`.
    pub md5: bool,
    /// Copy data segments inside the kernel (`copy_file_range`) instead of reading them:
    /// for an input whose data extents are known to hold data (a sparse file), so that
    /// no all-zero block needs finding. Without it, all-zero blocks are left as holes.
    pub kernel_copy: bool,
    /// Punch out the all-zero blocks of the input as they are read (the input is a
    /// private copy becoming the image: it stays as sparse as a dump would be).
    pub punch_zeros: bool,
    /// Progress, in bytes of input position.
    pub task: &'a dyn Task,
}

enum Msg {
    Data(Vec<u8>, usize),
    Zeros(u64),
}

/// Run `job`; returns the MD5 digest in hex when asked for.
pub(crate) fn run(job: &Job<'_>) -> Result<Option<String>, EngineError> {
    if !job.md5 {
        let mut buf = vec![0u8; CHUNK];
        let mut in_kernel = job.kernel_copy && job.dst.is_some();
        walk(job, |seg| match seg {
            Segment::Zero(_) => Ok(()),
            Segment::Data(r) => {
                if let (true, Some(dst)) = (in_kernel, job.dst) {
                    match kernel_copy(job.src, r.start, dst, r.start, r.end - r.start) {
                        Ok(true) => return Ok(()),
                        Ok(false) => in_kernel = false,
                        Err(e) => return Err(EngineError::Write(e)),
                    }
                }
                let len = (r.end - r.start) as usize;
                read_full_at(job.src, &mut buf[..len], r.start).map_err(|source| {
                    EngineError::Read {
                        offset: r.start,
                        source,
                    }
                })?;
                if let Some(dst) = job.dst {
                    write_sparse(dst, &buf[..len], r.start).map_err(EngineError::Write)?;
                }
                Ok(())
            }
        })?;
        return Ok(None);
    }

    let (work_tx, work_rx) = mpsc::sync_channel::<Msg>(BUFFERS);
    let (back_tx, back_rx) = mpsc::channel::<Vec<u8>>();
    std::thread::scope(|scope| {
        let hasher = scope.spawn(move || {
            let mut md5 = Md5::new();
            let zeros = vec![0u8; CHUNK];
            for msg in work_rx {
                match msg {
                    Msg::Data(buf, len) => {
                        md5.update(&buf[..len]);
                        // The reader may have finished and dropped its end; that is fine.
                        let _ = back_tx.send(buf);
                    }
                    Msg::Zeros(mut n) => {
                        while n > 0 {
                            let k = n.min(CHUNK as u64) as usize;
                            md5.update(&zeros[..k]);
                            n -= k as u64;
                        }
                    }
                }
            }
            md5.finalize_hex()
        });

        let mut pool: Vec<Vec<u8>> = (0..BUFFERS).map(|_| vec![0u8; CHUNK]).collect();
        let hasher_gone = || EngineError::Write(io::Error::other("the MD5 thread stopped"));
        let result = walk(job, |seg| {
            match seg {
                Segment::Zero(r) => {
                    let mut pos = r.start;
                    while pos < r.end {
                        // A hole can be terabytes long: hashing it takes a while, and a
                        // signal must still stop the run within moments.
                        if snf_core::cancel::is_requested() {
                            return Err(EngineError::Cancelled);
                        }
                        let n = (r.end - pos).min(ZERO_MSG);
                        work_tx.send(Msg::Zeros(n)).map_err(|_| hasher_gone())?;
                        pos += n;
                    }
                }
                Segment::Data(r) => {
                    let mut buf = match pool.pop() {
                        Some(b) => b,
                        None => back_rx.recv().map_err(|_| hasher_gone())?,
                    };
                    let len = (r.end - r.start) as usize;
                    read_full_at(job.src, &mut buf[..len], r.start).map_err(|source| {
                        EngineError::Read {
                            offset: r.start,
                            source,
                        }
                    })?;
                    if let Some(dst) = job.dst {
                        write_sparse(dst, &buf[..len], r.start).map_err(EngineError::Write)?;
                    }
                    if job.punch_zeros {
                        punch_zero_grains(job.src, &buf[..len], r.start)
                            .map_err(EngineError::Write)?;
                    }
                    work_tx
                        .send(Msg::Data(buf, len))
                        .map_err(|_| hasher_gone())?;
                }
            }
            Ok(())
        });
        drop(work_tx);
        let digest = hasher.join();
        match (result, digest) {
            (Err(e), _) => Err(e),
            (Ok(()), Ok(d)) => Ok(Some(d)),
            (Ok(()), Err(_)) => Err(hasher_gone()),
        }
    })
}

/// Visit the segments of `job`'s input in order, checking cancellation and reporting
/// progress after each.
fn walk(
    job: &Job<'_>,
    mut visit: impl FnMut(Segment) -> Result<(), EngineError>,
) -> Result<(), EngineError> {
    let mut segments = Segments::new(job.src, job.size, job.free);
    loop {
        if snf_core::cancel::is_requested() {
            return Err(EngineError::Cancelled);
        }
        let seg = segments.next().map_err(|source| EngineError::Read {
            offset: segments.pos,
            source,
        })?;
        let Some(seg) = seg else { break };
        let end = match &seg {
            Segment::Zero(r) | Segment::Data(r) => r.end,
        };
        visit(seg)?;
        job.task.set_position(end);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn normalise_merges_sorts_and_clips() {
        let v = normalise(&[50..60, 0..10, 5..20, 90..200, 30..30], 100);
        assert_eq!(v, vec![0..20, 50..60, 90..100]);
    }

    #[test]
    fn zero_detection() {
        let mut b = vec![0u8; 10_000];
        assert!(is_zero(&b));
        b[9_999] = 1;
        assert!(!is_zero(&b));
    }

    #[test]
    fn segments_skip_holes_and_free_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let f = File::create(&p).unwrap();
        f.set_len(16 << 20).unwrap();
        f.write_all_at(&[1u8; 8192], 4 << 20).unwrap();
        f.write_all_at(&[2u8; 8192], 12 << 20).unwrap();
        f.sync_all().unwrap();
        let f = File::open(&p).unwrap();
        let mut s = Segments::new(
            &f,
            16 << 20,
            std::slice::from_ref(&((12 << 20)..(13 << 20))),
        );
        let mut data = 0u64;
        let mut covered = 0u64;
        while let Some(seg) = s.next().unwrap() {
            match seg {
                Segment::Zero(r) => covered += r.end - r.start,
                Segment::Data(r) => {
                    assert!(r.end - r.start <= CHUNK as u64);
                    assert!(!(r.start >= 12 << 20 && r.end <= 13 << 20), "{r:?} is free");
                    data += r.end - r.start;
                    covered += r.end - r.start;
                }
            }
        }
        assert_eq!(covered, 16 << 20);
        // Only the extent around 4 MiB is read (file systems allocate a few blocks).
        assert!((8192..(1 << 20)).contains(&data), "read {data} bytes");
        assert!(f.metadata().unwrap().blocks() > 0);
    }
    #[test]
    #[allow(clippy::single_range_in_vec_init)]
    fn data_ranges_are_the_data_extents_clipped_to_the_range() {
        let dir = tempfile::tempdir().unwrap();
        let f = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("s"))
            .unwrap();
        f.set_len(8 << 20).unwrap();
        f.write_all_at(&[1u8; 4096], 1 << 20).unwrap();
        f.write_all_at(&[2u8; 8192], 4 << 20).unwrap();
        assert_eq!(
            data_ranges(&f, 0..8 << 20).unwrap(),
            vec![(1 << 20)..(1 << 20) + 4096, (4 << 20)..(4 << 20) + 8192]
        );
        assert_eq!(
            data_ranges(&f, (4 << 20) + 4096..6 << 20).unwrap(),
            vec![(4 << 20) + 4096..(4 << 20) + 8192]
        );
        assert!(data_ranges(&f, 2 << 20..4 << 20).unwrap().is_empty());
    }

    /// Segments are contiguous, cover `[0, end)` exactly, never read a free range and
    /// read every written byte outside the free ranges, for assorted layouts.
    #[test]
    #[allow(clippy::single_range_in_vec_init)]
    fn segments_cover_everything_once() {
        let dir = tempfile::tempdir().unwrap();
        let mib = 1u64 << 20;
        type Layout<'a> = (&'a [(u64, u64)], &'a [Range<u64>]);
        let layouts: [Layout; 4] = [
            (
                &[(0, 4096), (5 * mib, 3 * mib)],
                &[(mib)..(2 * mib), (6 * mib)..(6 * mib + 8192)],
            ),
            (&[(2 * mib, 4096)], &[0..(mib + 5)]),
            (&[], &[(3 * mib)..(4 * mib)]),
            (&[(7 * mib, mib)], &[(7 * mib - 4096)..(9 * mib)]),
        ];
        for (i, (written, free)) in layouts.iter().enumerate() {
            let p = dir.path().join(format!("f{i}"));
            let f = File::create(&p).unwrap();
            f.set_len(8 * mib).unwrap();
            for &(off, len) in written.iter() {
                f.write_all_at(&vec![0x5au8; len as usize], off).unwrap();
            }
            let end = 8 * mib + 512; // past the end of the file reads as zeros
            let mut s = Segments::new(&f, end, free);
            let mut pos = 0;
            let mut read = Vec::new();
            while let Some(seg) = s.next().unwrap() {
                let r = match seg {
                    Segment::Zero(r) => r,
                    Segment::Data(r) => {
                        assert!(
                            free.iter().all(|fr| r.end <= fr.start || r.start >= fr.end),
                            "{i}: {r:?} is free"
                        );
                        read.push(r.clone());
                        r
                    }
                };
                assert_eq!(r.start, pos, "{i}: gap or overlap");
                assert!(r.end > r.start, "{i}: empty segment");
                pos = r.end;
            }
            assert_eq!(pos, end, "{i}");
            for &(off, len) in written.iter() {
                for b in (off..off + len).step_by(4096) {
                    let is_free = free.iter().any(|fr| fr.contains(&b));
                    let is_read = read.iter().any(|r| r.contains(&b));
                    assert!(
                        is_free || is_read,
                        "{i}: written byte {b} neither free nor read"
                    );
                }
            }
        }
    }
}
