//! Bundling a "host" made of a real GPT disk image attached as a partitioned loop
//! device and mounted like a running system (root, /boot, a tmpfs on /run), with
//! `Roots::root` pointing at it. Needs root.

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use snf_disk::host::{bundle, HostError, Roots};
use snf_disk::WorkDir;
use snf_testkit::fixture::{assert_e2fsck_clean, mkswap_at, require, run, Mke2fs, MIB};
use snf_testkit::report::Recorder;
use snf_testkit::{ext_superblock, guest_file, guest_ls, partitions};

const ROOT_UUID: &str = "6f0c7d5e-1b2a-4c3d-8e9f-0a1b2c3d4e5f";
const BOOT_UUID: &str = "11111111-2222-4333-8444-555555555555";

/// Detaches the loop device and unmounts, in reverse order, when dropped.
struct Host {
    dev: String,
    mounts: Vec<PathBuf>,
}

impl Drop for Host {
    fn drop(&mut self) {
        for m in self.mounts.iter().rev() {
            let _ = Command::new("umount").arg(m).status();
        }
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
    }
}

/// GPT: 1 BIOS boot (1 MiB, marker bytes), 2 EFI system (8 MiB, marker bytes),
/// 3 /boot ext2, 4 / ext4, 5 swap.
fn host_disk(img: &Path, tree: &Path) {
    fs::create_dir_all(tree.join("etc")).unwrap();
    fs::create_dir_all(tree.join("tmp")).unwrap();
    fs::create_dir_all(tree.join("boot")).unwrap();
    fs::create_dir_all(tree.join("run")).unwrap();
    fs::write(tree.join("etc/hostname"), "bundled\n").unwrap();
    fs::write(tree.join("tmp/junk"), "junk").unwrap();
    fs::write(
        tree.join("big"),
        snf_testkit::fixture::pseudo_random(3 << 20, 7),
    )
    .unwrap();
    fs::write(tree.join("out.diskdump"), "the output").unwrap();
    run(Command::new("truncate").arg("-s").arg("400M").arg(img));
    run(Command::new("sgdisk")
        .args(["-n1:2048:+1M", "-t1:EF02", "-c1:bios"])
        .args(["-n2:0:+8M", "-t2:EF00", "-c2:esp"])
        .args(["-n3:0:+64M", "-t3:8300", "-c3:boot"])
        .args(["-n4:0:+200M", "-t4:8304", "-c4:root"])
        .args(["-n5:0:+32M", "-t5:8200", "-c5:swap"])
        .arg(img));
    let (_, parts) = partitions(img).unwrap();
    let off = |n: u32| parts.iter().find(|p| p.number == n).unwrap().start * 512;
    let f = fs::OpenOptions::new().write(true).open(img).unwrap();
    f.write_all_at(&[0xeb; 440], 0).unwrap(); // "boot code"
    f.write_all_at(b"GRUB core image", 34 * 512).unwrap();
    f.write_all_at(&[0x42; 4096], off(1)).unwrap();
    f.write_all_at(&[0x43; 4096], off(2) + MIB).unwrap();
    Mke2fs::new("ext2")
        .uuid(BOOT_UUID)
        .label("boot")
        .make(img, off(3), "64M");
    Mke2fs::ext4()
        .uuid(ROOT_UUID)
        .label("root")
        .tree(tree)
        .make(img, off(4), "200M");
    mkswap_at(img, off(5), 32 * MIB, None);
}

fn attach(img: &Path, root: &Path) -> Host {
    let dev = run(Command::new("losetup")
        .args(["-P", "-f", "--show"])
        .arg(img))
    .trim()
    .to_string();
    let mut host = Host {
        dev: dev.clone(),
        mounts: Vec::new(),
    };
    // This kernel's losetup -P makes no partition devices: ask for them.
    run(Command::new("partx").arg("-a").arg(&dev));
    fs::create_dir_all(root).unwrap();
    run(Command::new("mount").arg(format!("{dev}p4")).arg(root));
    host.mounts.push(root.to_path_buf());
    run(Command::new("mount")
        .arg(format!("{dev}p3"))
        .arg(root.join("boot")));
    host.mounts.push(root.join("boot"));
    fs::write(root.join("boot/vmlinuz"), "kernel").unwrap();
    run(Command::new("mount")
        .args(["-t", "tmpfs", "tmpfs"])
        .arg(root.join("run")));
    host.mounts.push(root.join("run"));
    fs::write(root.join("run/pid"), "1").unwrap();
    host
}

fn read_at(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    fs::File::open(path)
        .unwrap()
        .read_exact_at(&mut buf, offset)
        .unwrap();
    buf
}

#[test]
fn bundles_a_mounted_gpt_host_disk() {
    for tool in [
        "sgdisk", "sfdisk", "mke2fs", "mkswap", "partx", "debugfs", "e2fsck",
    ] {
        require(tool);
    }
    assert!(rustix::process::geteuid().is_root(), "this test needs root");
    let work = tempfile::tempdir().unwrap();
    let img = work.path().join("host.img");
    host_disk(&img, &work.path().join("tree"));
    let root = work.path().join("root");
    let host = attach(&img, &root);
    fs::create_dir(work.path().join("tmpdir")).unwrap();
    let workdir = WorkDir::create(Some(&work.path().join("tmpdir"))).unwrap();
    let roots = Roots {
        root: root.clone(),
        ..Roots::default()
    };
    let rec = Recorder::new();
    let out = bundle(&workdir, &roots, &[root.join("out.diskdump")], &rec).unwrap();
    let image: &Path = &out.image;

    assert_eq!(out.swap.as_deref(), Some("5:32"));
    let (label, host_parts) = partitions(&img).unwrap();
    let (new_label, new_parts) = partitions(image).unwrap();
    assert_eq!((label.as_str(), new_label.as_str()), ("gpt", "gpt"));
    assert_eq!(new_parts.len(), 4, "{new_parts:?}");
    for (h, n) in host_parts.iter().zip(&new_parts) {
        assert_eq!(
            (h.number, h.start, &h.kind, &h.name, &h.uuid),
            (n.number, n.start, &n.kind, &n.name, &n.uuid)
        );
    }
    assert!(
        new_parts[3].size < host_parts[3].size,
        "the root is made smaller"
    );
    assert!(out.size < fs::metadata(&img).unwrap().len());
    assert_eq!(read_at(image, 0, 440), read_at(&img, 0, 440), "boot code");
    assert_eq!(read_at(image, 34 * 512, 15), b"GRUB core image");
    for n in [1, 2] {
        let p = &host_parts[n - 1];
        let len = (p.size * 512) as usize;
        assert!(read_at(image, p.start * 512, len) == read_at(&img, p.start * 512, len));
    }
    for (n, uuid, label) in [(3, BOOT_UUID, "boot"), (4, ROOT_UUID, "root")] {
        let sb = ext_superblock(image, n).unwrap();
        assert_eq!(sb["Filesystem UUID"], uuid);
        assert_eq!(sb["Filesystem volume name"], label);
        let start = new_parts[n as usize - 1].start * 512;
        assert_e2fsck_clean(image, start, "a bundled filesystem");
    }
    assert_eq!(
        guest_file(image, 4, "/etc/hostname").unwrap().unwrap(),
        b"bundled\n"
    );
    assert_eq!(
        guest_file(image, 4, "/big").unwrap().unwrap(),
        fs::read(root.join("big")).unwrap()
    );
    assert_eq!(guest_file(image, 4, "/out.diskdump").unwrap(), None);
    assert_eq!(
        guest_ls(image, 4, "/tmp").unwrap().unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        guest_ls(image, 4, "/run").unwrap().unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        guest_ls(image, 4, "/boot").unwrap().unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        guest_file(image, 3, "/vmlinuz").unwrap().unwrap(),
        b"kernel"
    );
    assert!(
        fs::read_dir(workdir.path()).unwrap().count() == 1,
        "only the image is left"
    );

    // Too little room in --tmpdir: refused before anything is copied, naming the dir.
    let small = work.path().join("small");
    fs::create_dir(&small).unwrap();
    run(Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1M", "tmpfs"])
        .arg(&small));
    let small_wd = WorkDir::create(Some(&small)).unwrap();
    let err = bundle(&small_wd, &roots, &[], &rec).unwrap_err();
    drop(small_wd);
    run(Command::new("umount").arg(&small));
    let msg = err.to_string();
    assert!(matches!(err, HostError::WorkDir(_)), "{msg}");
    assert!(
        msg.contains(small.to_str().unwrap()) && msg.contains("MiB"),
        "{msg}"
    );
    drop(host);
}

#[test]
fn refuses_without_root() {
    // The check comes first, so it needs no host at all; run as nobody in a child.
    if std::env::var_os("SNF_BUNDLE_AS_NOBODY").is_some() {
        let wd = WorkDir::create(None).unwrap();
        let err = bundle(&wd, &Roots::default(), &[], &Recorder::new()).unwrap_err();
        assert_eq!(err.to_string(), "host bundling needs root");
        return;
    }
    require("setpriv");
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "refuses_without_root", "--nocapture"])
        .env("SNF_BUNDLE_AS_NOBODY", "1")
        .env("TMPDIR", "/tmp")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
