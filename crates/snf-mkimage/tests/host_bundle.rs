//! `snf-mkimage /` end to end on the real Debian 12 guest (GPT image: BIOS boot, ext4
//! root, swap) attached read-only as a partitioned loop device and mounted like a
//! running system, with a tmpfs on /run.
//!
//! Discovery is pointed at the mounted guest with `SNF_HOST_ROOT` rather than running
//! the binary inside a pivot_root'ed namespace: there the binary would need the host's
//! /usr (libext2fs, e2fsprogs, qemu-img) bind-mounted over the guest's, and a bind
//! mount is another mount, so the guest's own /usr would be left out of the image.
//! Everything but reading `/proc/self/mountinfo` relative to `/` runs exactly as it
//! does on a host. The image then boots under qemu to a login prompt. Needs root.

mod common;

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{bin, require, stderr};
use sha2::{Digest, Sha256};
use snf_testkit::{boot_check, debian_guest_info, partitions, Table};

/// Unmounts (in reverse order) and detaches when dropped.
#[derive(Default)]
struct Cleanup {
    mounts: Vec<PathBuf>,
    loops: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for m in self.mounts.iter().rev() {
            let _ = Command::new("umount").arg(m).status();
        }
        for l in &self.loops {
            let _ = Command::new("losetup").arg("-d").arg(l).status();
        }
    }
}

fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().expect("cannot run a tool");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn mount(c: &mut Cleanup, args: &[&str], dir: &Path) {
    fs::create_dir_all(dir).ok();
    sh(Command::new("mount").args(args).arg(dir));
    c.mounts.push(dir.to_path_buf());
}

/// A read-only loop device over `img` with its partitions (this kernel's `losetup -P`
/// makes no partition devices: `partx -a` does).
fn attach(c: &mut Cleanup, img: &Path, offset: Option<u64>) -> String {
    let mut cmd = Command::new("losetup");
    cmd.args(["-r", "-f", "--show"]);
    match offset {
        Some(o) => cmd.args(["-o", &o.to_string()]),
        None => cmd.arg("-P"),
    };
    let dev = sh(cmd.arg(img)).trim().to_string();
    c.loops.push(dev.clone());
    if offset.is_none() {
        sh(Command::new("partx").arg("-a").arg(&dev));
    }
    dev
}

/// Type, mode, owner, size (not of directories), mtime and link target of every entry
/// of the filesystem mounted at `root`, and the SHA-256 of every regular file.
fn listing(root: &Path, skip_contents: &[&str]) -> Vec<String> {
    let out = sh(Command::new("find")
        .arg(".")
        .args(["-xdev", "-printf", "%P|%y|%m|%U|%G|%s|%T@|%l\\n"])
        .current_dir(root));
    let mut lines: Vec<String> = out
        .lines()
        .filter(|l| {
            !skip_contents
                .iter()
                .any(|d| l.starts_with(&format!("{d}/")))
        })
        .map(|l| {
            let mut f: Vec<String> = l.split('|').map(str::to_string).collect();
            if f[1] == "d" {
                f[5] = "-".into();
            }
            if f[1] == "f" {
                let mut h = Sha256::new();
                let mut file = fs::File::open(root.join(&f[0])).unwrap();
                let mut buf = vec![0; 1 << 20];
                loop {
                    let n = file.read(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                }
                f.push(format!("{:x}", h.finalize()));
            }
            f.join("|")
        })
        .collect();
    lines.sort();
    lines
}

#[test]
fn bundles_the_running_debian_guest() {
    for tool in ["losetup", "partx", "e2fsck", "sfdisk", "getfattr"] {
        require(tool);
    }
    assert!(rustix::process::geteuid().is_root(), "this test needs root");
    let guest = debian_guest_info();
    let img = guest.image(Table::Gpt);
    let layout = guest.layout(Table::Gpt).clone();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let mut c = Cleanup::default();

    let dev = attach(&mut c, &img, None);
    let root = w.join("root");
    mount(
        &mut c,
        &[
            "-o",
            "ro,noload",
            &format!("{dev}p{}", layout.root_partition),
        ],
        &root,
    );
    mount(&mut c, &["-t", "tmpfs", "tmpfs"], &root.join("run"));
    fs::write(root.join("run/marker"), "not copied").unwrap();

    let tmpdir = w.join("tmp");
    fs::create_dir(&tmpdir).unwrap();
    let out = w.join("host.diskdump");
    let run = Command::new(bin())
        .args(["--no-sysprep", "--tmpdir"])
        .arg(&tmpdir)
        .arg("-o")
        .arg(&out)
        .arg("/")
        .env("SNF_HOST_ROOT", &root)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(
        fs::read_dir(&tmpdir).unwrap().count(),
        0,
        "the work dir is gone"
    );

    let meta = fs::read_to_string(w.join("host.diskdump.meta")).unwrap();
    assert!(
        meta.contains(&format!(
            "\"SWAP\":\"{}:{}\"",
            layout.swap_partition, guest.info.swap_mib
        )),
        "{meta}"
    );
    for key in [
        "\"OSFAMILY\":\"linux\"",
        "\"OS\":\"debian\"",
        "\"ROOT_PARTITION\":\"2\"",
    ] {
        assert!(meta.contains(key), "{key} not in {meta}");
    }

    // The table: same type, starts, type and unique GUIDs, names; swap gone.
    let (_, host_parts) = partitions(&img).unwrap();
    let (label, parts) = partitions(&out).unwrap();
    assert_eq!(label, "gpt");
    assert_eq!(parts.len(), 2, "{parts:?}");
    for (h, n) in host_parts.iter().zip(&parts) {
        assert_eq!(
            (h.number, h.start, &h.kind, &h.name, &h.uuid),
            (n.number, n.start, &n.kind, &n.name, &n.uuid)
        );
    }
    let bios = &host_parts[0];
    assert_eq!(
        sh(Command::new("cmp")
            .args(["-n", &(bios.size * 512).to_string()])
            .args(["-i", &format!("{0}:{0}", bios.start * 512)])
            .arg(&img)
            .arg(&out)),
        "",
        "GRUB's core image in the BIOS boot partition"
    );
    let root_part = &parts[1];
    let spec = format!("{}?offset={}", out.display(), root_part.start * 512);
    let sb = sh(Command::new("dumpe2fs").arg("-h").arg(&spec));
    assert!(sb.contains(&layout.root_uuid), "the root keeps its UUID");
    let fsck = Command::new("e2fsck")
        .args(["-fn"])
        .arg(&spec)
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "{}",
        String::from_utf8_lossy(&fsck.stdout)
    );

    // Files: the guest's, with /tmp, /var/tmp and the /run mount point empty.
    let new_dev = attach(&mut c, &out, Some(root_part.start * 512));
    let new_root = w.join("new");
    mount(&mut c, &["-o", "ro,noload", &new_dev], &new_root);
    let skip = ["tmp", "var/tmp"];
    assert_eq!(listing(&new_root, &[]), listing(&root, &skip));
    for d in ["tmp", "var/tmp", "run"] {
        assert_eq!(fs::read_dir(new_root.join(d)).unwrap().count(), 0, "{d}");
    }
    let xattrs = |r: &Path| {
        sh(Command::new("getfattr")
            .args(["-R", "-h", "-d", "-m", "-", "."])
            .current_dir(r))
    };
    assert_eq!(xattrs(&new_root), xattrs(&root));
    drop(c);

    // The bootloader came along: GRUB (MBR boot code, core image in the BIOS boot
    // partition) finds the re-created root by its UUID.
    let report = boot_check(&out, Duration::from_secs(600)).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        report
            .console
            .contains(&format!("{} login:", guest.info.hostname)),
        "{}",
        report.console
    );
    eprintln!("the bundled guest booted in {:.1?}", report.elapsed);
}
