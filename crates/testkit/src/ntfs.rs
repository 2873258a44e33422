//! Windows-shaped NTFS fixtures, made and checked with ntfs-3g's own tools.
//!
//! A volume is made by `mkntfs -F -Q` on a scratch file, filled through a FUSE
//! `ntfs-3g` mount (root), then copied (sparse) to its partition's offset. The checks
//! read an extracted copy of a partition with `ntfsls`, `ntfscat`, `ntfsinfo` and
//! `ntfsfix -n`, which share no code with the binding under test but the library.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use snf_core::bytes;

use crate::fixture::{copy_into, pseudo_random, require, run, sparse_file, Disk};

/// Size of the big file of [`windows_tree`].
pub const BIG_FILE_SIZE: usize = 12 * 1024 * 1024 + 4321;
/// Seed of the big file's pseudo-random content.
pub const BIG_FILE_SEED: u64 = 15;

/// A FUSE `ntfs-3g` mount of an NTFS image file, unmounted on drop.
#[derive(Debug)]
pub struct FuseMount {
    dir: PathBuf,
}

impl FuseMount {
    /// Mount `image` (a whole-file NTFS volume) on the existing directory `dir`.
    pub fn new(image: &Path, dir: &Path) -> FuseMount {
        require("ntfs-3g");
        run(Command::new("ntfs-3g").arg(image).arg(dir));
        FuseMount {
            dir: dir.to_path_buf(),
        }
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for FuseMount {
    fn drop(&mut self) {
        // A plain umount waits for ntfs-3g to write everything back.
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

/// Make an NTFS volume of `size` bytes in the new file `image` with `mkntfs -F -Q`.
pub fn mkntfs(image: &Path, size: u64, label: &str) {
    require("mkntfs");
    sparse_file(image, size);
    run(Command::new("mkntfs")
        .args(["-F", "-Q", "-q", "-c", "4096", "-L", label])
        .arg(image));
}

/// Reparse data of a junction to the drive path `target` (`C:\Users`).
pub fn junction_data(target: &str) -> Vec<u8> {
    let utf16 = |s: &str| -> Vec<u8> { s.encode_utf16().flat_map(u16::to_le_bytes).collect() };
    let sub = utf16(&format!("\\??\\{target}"));
    let print = utf16(target);
    let mut body = Vec::new();
    for v in [0, sub.len(), sub.len() + 2, print.len()] {
        body.extend_from_slice(&(v as u16).to_le_bytes());
    }
    body.extend_from_slice(&sub);
    body.extend_from_slice(&[0, 0]);
    body.extend_from_slice(&print);
    body.extend_from_slice(&[0, 0]);
    let mut d = 0xA000_0003u32.to_le_bytes().to_vec();
    d.extend_from_slice(&(body.len() as u16).to_le_bytes());
    d.extend_from_slice(&[0, 0]);
    d.extend_from_slice(&body);
    d
}

/// Fill a mounted volume with a Windows-shaped tree:
/// `Windows/System32/config/{SYSTEM,SOFTWARE,SAM}` (text `hive NAME`),
/// `Windows/System32/drivers/etc/hosts`, `Users/Default/NTUSER.DAT`,
/// `Users/Public/Documents/A long file name with spaces.txt`,
/// `Program Files/Big/big.bin` ([`BIG_FILE_SIZE`] pseudo-random bytes), an Interix
/// symlink `Windows/hosts-link` -> `System32/drivers/etc/hosts` (what ntfs-3g makes for
/// `ln -s`), a hidden system `pagefile.sys`, a WOF-compressed `Windows/System32/compact.dll` and a junction `Documents and Settings` -> `C:\Users`.
pub fn windows_tree(root: &Path) {
    let write = |p: &str, data: &[u8]| {
        let path = root.join(p);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, data).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    };
    for hive in ["SYSTEM", "SOFTWARE", "SAM"] {
        write(
            &format!("Windows/System32/config/{hive}"),
            format!("hive {hive}").as_bytes(),
        );
    }
    write(
        "Windows/System32/drivers/etc/hosts",
        b"127.0.0.1 localhost\r\n",
    );
    write("Users/Default/NTUSER.DAT", b"regf");
    write(
        "Users/Public/Documents/A long file name with spaces.txt",
        "long name, non-ASCII: \u{e9}\u{3b1}".as_bytes(),
    );
    write(
        "Program Files/Big/big.bin",
        &pseudo_random(BIG_FILE_SIZE, BIG_FILE_SEED),
    );
    std::os::unix::fs::symlink(
        "System32/drivers/etc/hosts",
        root.join("Windows/hosts-link"),
    )
    .unwrap();
    // Hidden and system, as Windows makes it.
    let pagefile = root.join("pagefile.sys");
    fs::write(&pagefile, vec![0u8; 64 * 1024]).unwrap();
    run(Command::new("setfattr")
        .args(["-n", "system.ntfs_attrib_be", "-v", "0x00000026"])
        .arg(&pagefile));
    // A CompactOS file: the WOF tag (provider: file, XPRESS4K); its $DATA stays empty.
    let wof = root.join("Windows/System32/compact.dll");
    fs::write(&wof, b"").unwrap();
    set_reparse(
        &wof,
        &[
            0x17, 0, 0, 0x80, 16, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0,
        ],
    );
    let junction = root.join("Documents and Settings");
    fs::create_dir(&junction).unwrap();
    set_reparse(&junction, &junction_data("C:\\Users"));
}

/// Give the object at `path` of a FUSE ntfs-3g mount the raw reparse point `data`.
pub fn set_reparse(path: &Path, data: &[u8]) {
    require("setfattr");
    let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
    run(Command::new("setfattr")
        .args(["-h", "-n", "system.ntfs_reparse_data", "-v"])
        .arg(format!("0x{hex}"))
        .arg(path));
}

/// A disk with a partition table (GPT or MBR), a small "System Reserved" NTFS
/// partition 1 and an NTFS `C:` partition 2 holding [`windows_tree`] (plus, when
/// `hibernated`, a `hiberfil.sys` whose header says `hibr`).
#[derive(Debug)]
pub struct WindowsDisk {
    pub disk: Disk,
}

impl WindowsDisk {
    /// Build it at `path`, using `scratch` (an existing directory) for the volumes
    /// before they are copied in.
    pub fn create(path: &Path, scratch: &Path, gpt: bool, hibernated: bool) -> WindowsDisk {
        let script = if gpt {
            "label: gpt\nsize=8MiB, type=E3C9E316-0B5C-4DB8-817D-F92DF00215AE\n\
             type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7\n"
        } else {
            "label: dos\nsize=8MiB, type=7, bootable\ntype=7\n"
        };
        let disk = Disk::create(path, 64 * 1024 * 1024, script);
        let reserved = scratch.join("reserved.ntfs");
        mkntfs(&reserved, disk.size(1), "System Reserved");
        copy_into(&reserved, path, disk.offset(1));
        fs::remove_file(&reserved).unwrap();
        let c = scratch.join("c.ntfs");
        mkntfs(&c, disk.size(2), "Windows");
        let mnt = scratch.join("mnt");
        fs::create_dir_all(&mnt).unwrap();
        {
            let m = FuseMount::new(&c, &mnt);
            windows_tree(m.path());
            if hibernated {
                let mut data = vec![0u8; 8192];
                data[..4].copy_from_slice(b"hibr");
                fs::write(m.path().join("hiberfil.sys"), data).unwrap();
            }
        }
        copy_into(&c, path, disk.offset(2));
        fs::remove_file(&c).unwrap();
        WindowsDisk { disk }
    }

    /// The image file.
    pub fn path(&self) -> &Path {
        self.disk.path()
    }

    /// Byte offset and size of the `C:` partition.
    pub fn c(&self) -> (u64, u64) {
        (self.disk.offset(2), self.disk.size(2))
    }
}

/// Copy bytes `offset..offset + size` of `img` to the new file `to` (sparse), for the
/// ntfs-3g tools, which take whole-file volumes.
pub fn extract(img: &Path, offset: u64, size: u64, to: &Path) {
    const CHUNK: u64 = 1024 * 1024;
    let src = File::open(img).unwrap_or_else(|e| panic!("open {}: {e}", img.display()));
    let dst = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(to)
        .unwrap_or_else(|e| panic!("create {}: {e}", to.display()));
    dst.set_len(size).unwrap();
    let mut buf = vec![0u8; CHUNK as usize];
    let mut at = 0;
    while at < size {
        let n = CHUNK.min(size - at) as usize;
        src.read_exact_at(&mut buf[..n], offset + at).unwrap();
        if buf[..n].iter().any(|&b| b != 0) {
            dst.write_all_at(&buf[..n], at).unwrap();
        }
        at += n as u64;
    }
}

/// `ntfsls` of directory `dir` of the whole-file volume `vol`: the names (without `.`
/// and `..`), sorted.
pub fn ntfsls(vol: &Path, dir: &str) -> Vec<String> {
    require("ntfsls");
    let out = run(Command::new("ntfsls").args(["-f", "-p", dir]).arg(vol));
    let mut names: Vec<String> = out
        .lines()
        .filter(|l| *l != "." && *l != "..")
        .map(str::to_string)
        .collect();
    names.sort();
    names
}

/// `ntfscat` of `path` in the whole-file volume `vol`.
pub fn ntfscat(vol: &Path, path: &str) -> Vec<u8> {
    require("ntfscat");
    let out = Command::new("ntfscat")
        .arg("-f")
        .arg(vol)
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ntfscat {path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Whether `ntfsinfo -F path` finds `path` in the whole-file volume `vol` (it exits 0
/// either way: its output tells).
pub fn ntfs_exists(vol: &Path, path: &str) -> bool {
    require("ntfsinfo");
    let out = Command::new("ntfsinfo")
        .args(["-f", "-F", path])
        .arg(vol)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).starts_with("Dumping Inode")
}

/// Assert `ntfsfix -n` finds the whole-file volume `vol` consistent.
pub fn assert_ntfsfix_clean(vol: &Path, what: &str) {
    require("ntfsfix");
    let out = Command::new("ntfsfix").arg("-n").arg(vol).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("was processed successfully"),
        "{what}: ntfsfix -n: {text}"
    );
}

/// Set `VOLUME_IS_DIRTY` in the $Volume flags of the NTFS volume at `offset` of `img`,
/// as Windows leaves it when it crashes (no ntfs-3g tool sets it): the boot sector
/// locates the MFT, record 3 is $Volume, its $VOLUME_INFORMATION (0x70) value holds the
/// flags at byte 10.
pub fn set_dirty(img: &Path, offset: u64) {
    let f = OpenOptions::new().read(true).write(true).open(img).unwrap();
    let mut boot = [0u8; 512];
    f.read_exact_at(&mut boot, offset).unwrap();
    let sector = u64::from(bytes::le16(&boot, 0x0b));
    let cluster = sector * u64::from(boot[0x0d]);
    let mft_lcn = bytes::le64(&boot, 0x30);
    let per = boot[0x40] as i8;
    let record = if per > 0 {
        per as u64 * cluster
    } else {
        1u64 << (-per)
    };
    let mirr_lcn = bytes::le64(&boot, 0x38);
    // $MFTMirr holds a copy of records 0-3, which must match.
    for lcn in [mft_lcn, mirr_lcn] {
        set_dirty_in_record(&f, offset + lcn * cluster + 3 * record, record);
    }
}

fn set_dirty_in_record(f: &File, at: u64, record: u64) {
    let mut rec = vec![0u8; record as usize];
    f.read_exact_at(&mut rec, at).unwrap();
    assert_eq!(&rec[..4], b"FILE", "MFT record 3");
    let mut a = usize::from(bytes::le16(&rec, 0x14));
    loop {
        let ty = bytes::le32(&rec, a);
        assert_ne!(ty, 0xffff_ffff, "no $VOLUME_INFORMATION in $Volume");
        let len = bytes::le32(&rec, a + 4) as usize;
        if ty == 0x70 {
            let value = a + usize::from(bytes::le16(&rec, a + 0x14));
            rec[value + 10] |= 1;
            break;
        }
        a += len;
    }
    // The flags are never in the last two bytes of a sector (the update sequence).
    f.write_all_at(&rec, at).unwrap();
}
