//! `snf-mkimage /` end to end on the real Debian 12 guest (GPT image: BIOS boot, ext4
//! root, swap), run truly as `/` of a running system: the guest, attached read-only as
//! a partitioned loop device, is the root of a private mount namespace (`unshare`,
//! `pivot_root`) with its own /proc and /sys, the host's /dev bind-mounted, a tmpfs on
//! /run, and a host directory bind-mounted on /tmp that carries the binary in and the
//! image out. The binary runs with the guest's own libraries and tools (Debian 12 like
//! the build machine: glibc, libext2fs, e2fsprogs, mount, losetup; bundling a host
//! needs neither qemu-img nor sfdisk nor eatmydata). The image then boots under qemu to
//! a login prompt. Needs root.

mod common;

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{bin, require, stderr};
use sha2::{Digest, Sha256};
use snf_testkit::{debian_guest_info, partitions, Table};

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
/// of the filesystem mounted at `root`, and the SHA-256 of every regular file; without
/// the contents of the directories `emptied` nor the directories `mount_points`
/// themselves (whose attributes are the mounted filesystem's root's) and their contents.
fn listing(root: &Path, emptied: &[&str], mount_points: &[&str]) -> Vec<String> {
    let out = sh(Command::new("find")
        .arg(".")
        .args(["-xdev", "-printf", "%P|%y|%m|%U|%G|%s|%T@|%l\\n"])
        .current_dir(root));
    let mut lines: Vec<String> = out
        .lines()
        .filter(|l| {
            let path = l.split('|').next().unwrap_or_default();
            !emptied
                .iter()
                .chain(mount_points)
                .any(|d| path.starts_with(&format!("{d}/")))
                && !mount_points.contains(&path)
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

/// Run in a private mount namespace (`sh -c SCRIPT sh ROOT PART HOST_TMP`): the guest's
/// root partition mounted read-only on ROOT becomes `/` (`pivot_root . .` stacks the old
/// root on the new one, so nothing has to be created in the read-only guest, and the
/// lazy unmount drops it), with its own /proc and /sys, the host's /dev (the loop
/// devices), a tmpfs on /run holding a file, and HOST_TMP bind-mounted on /tmp. Every
/// mount goes with the namespace when `unshare` exits.
const IN_NAMESPACE: &str = r#"set -eu
m=$1
mount -o ro,noload "$2" "$m"
mount --bind "$3" "$m/tmp"
mount -t tmpfs tmpfs "$m/run"
echo 'not copied' >"$m/run/marker"
mount -t proc proc "$m/proc"
mount -t sysfs sysfs "$m/sys"
mount --bind /dev "$m/dev"
cd "$m"
pivot_root . .
umount -l .
cd /
exec /tmp/snf-mkimage --no-sysprep --tmpdir /tmp/work -o /tmp/host.diskdump /
"#;

#[test]
fn bundles_the_running_debian_guest() {
    for tool in [
        "losetup",
        "partx",
        "unshare",
        "pivot_root",
        "e2fsck",
        "sfdisk",
        "getfattr",
    ] {
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
    let part = format!("{dev}p{}", layout.root_partition);

    // The namespace's /tmp: the binary goes in, the image comes out (a mount of its
    // own, so not part of the bundle).
    let host_tmp = w.join("tmp");
    fs::create_dir(&host_tmp).unwrap();
    fs::set_permissions(&host_tmp, fs::Permissions::from_mode(0o1777)).unwrap();
    let tmpdir = host_tmp.join("work");
    fs::create_dir(&tmpdir).unwrap();
    fs::copy(bin(), host_tmp.join("snf-mkimage")).unwrap();
    let ns_root = w.join("ns-root");
    fs::create_dir(&ns_root).unwrap();
    let run = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--fork", "--"])
        .args(["sh", "-c", IN_NAMESPACE, "sh"])
        .arg(&ns_root)
        .arg(&part)
        .arg(&host_tmp)
        // The guest's own tools (mke2fs, tune2fs, mount, losetup) are found there.
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(
        fs::read_dir(&tmpdir).unwrap().count(),
        0,
        "the work dir is gone"
    );
    let out = host_tmp.join("host.diskdump");

    let meta = fs::read_to_string(host_tmp.join("host.diskdump.meta")).unwrap();
    // GPT: snf-image cannot re-create the swap partition, so SWAP is not recorded and
    // the run says why (README, "Disk buses, UEFI and swap").
    assert!(!meta.contains("\"SWAP\""), "{meta}");
    assert!(
        stderr(&run).contains(&format!(
            "SWAP={}:{} is not recorded for this GPT image",
            layout.swap_partition, guest.info.swap_mib
        )),
        "{}",
        stderr(&run)
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

    // Files: the guest's, with /tmp, /var/tmp and the namespace's mount points empty.
    let root = w.join("root");
    mount(&mut c, &["-o", "ro,noload", &part], &root);
    let new_dev = attach(&mut c, &out, Some(root_part.start * 512));
    let new_root = w.join("new");
    mount(&mut c, &["-o", "ro,noload", &new_dev], &new_root);
    let mount_points = ["tmp", "run", "proc", "sys", "dev"];
    assert_eq!(
        listing(&new_root, &[], &mount_points),
        listing(&root, &["var/tmp"], &mount_points)
    );
    for d in mount_points.iter().chain(&["var/tmp"]) {
        assert!(new_root.join(d).is_dir(), "{d}");
        assert_eq!(fs::read_dir(new_root.join(d)).unwrap().count(), 0, "{d}");
    }
    assert!(
        fs::read_dir(root.join("dev")).unwrap().count() > 0,
        "the guest's /dev, hidden by the namespace's, is not copied"
    );
    let tmp_mode = fs::metadata(new_root.join("tmp"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        tmp_mode & 0o7777,
        0o1777,
        "a mount point keeps its root's mode"
    );
    let xattrs = |r: &Path| {
        sh(Command::new("getfattr")
            .args(["-R", "-h", "-d", "-m", "-", "."])
            .current_dir(r))
    };
    assert_eq!(xattrs(&new_root), xattrs(&root));
    drop(c);

    // The bootloader came along: GRUB (MBR boot code, core image in the BIOS boot
    // partition) finds the re-created root by its UUID.
    common::assert_boots(&out);
}
