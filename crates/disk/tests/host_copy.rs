//! The host-bundling copier on a tree with every kind of file, between two real ext4
//! filesystems, checked with independent tools (find, getfattr, getfacl, cmp, e2fsck).
//! Needs root (device nodes, owners, loop mounts).

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use snf_disk::host::copy::{copy_tree, file_id, CopyError, CopyOptions};
use snf_testkit::fixture::{require, run};
use snf_testkit::report::Recorder;

/// A loop-mounted filesystem, unmounted when dropped.
struct Mounted {
    dir: std::path::PathBuf,
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

fn mount(args: &[&str], dir: &Path) -> Mounted {
    fs::create_dir_all(dir).unwrap();
    run(Command::new("mount").args(args).arg(dir));
    Mounted {
        dir: dir.to_path_buf(),
    }
}

fn ext4(img: &Path, dir: &Path) -> Mounted {
    run(Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4"])
        .arg(img)
        .arg("64M"));
    mount(&["-o", "loop", img.to_str().unwrap()], dir)
}

fn sh(dir: &Path, script: &str) {
    run(Command::new("sh").arg("-ec").arg(script).current_dir(dir));
}

/// Type, mode, owner, size (files only), mtime and link target of every entry, from
/// `find`, without the paths `drop` names.
fn listing(root: &Path, drop: &[&str]) -> Vec<String> {
    let out = run(Command::new("find")
        .arg(".")
        .args(["-xdev", "-printf", "%P|%y|%m|%U|%G|%s|%T@|%l\\n"])
        .current_dir(root));
    let mut lines: Vec<String> = out
        .lines()
        .filter(|l| !drop.iter().any(|d| l.starts_with(d)))
        .map(|l| {
            let mut f: Vec<&str> = l.split('|').collect();
            if f[1] == "d" {
                f[5] = "-"; // directory sizes depend on the filesystem's history
            }
            if f[0].is_empty() {
                f[6] = "-"; // the root changed during the copy: the test removed a file
            }
            f.join("|")
        })
        .collect();
    lines.sort();
    lines
}

fn xattrs(root: &Path, paths: &[&str]) -> String {
    run(Command::new("getfattr")
        .args(["-h", "-d", "-m", "-"])
        .args(paths)
        .current_dir(root))
}

fn acls(root: &Path, paths: &[&str]) -> String {
    run(Command::new("getfacl")
        .arg("-n")
        .args(paths)
        .current_dir(root))
}

#[test]
fn copies_every_kind_of_file_and_leaves_mounts_and_tmp_empty() {
    for tool in [
        "mke2fs", "setfattr", "getfattr", "setfacl", "getfacl", "e2fsck",
    ] {
        require(tool);
    }
    assert!(rustix::process::geteuid().is_root(), "this test needs root");
    let work = tempfile::tempdir().unwrap();
    let (src, dst) = (work.path().join("src"), work.path().join("dst"));
    let _s = ext4(&work.path().join("src.img"), &src);
    let d = ext4(&work.path().join("dst.img"), &dst);
    sh(
        &src,
        r#"
        mkdir -m 0750 a b tmp mnt; chown 1000:1001 a
        printf 'hello' > a/f; chown 1000:1000 a/f; chmod 0640 a/f
        ln a/f a/h; ln a/f b/h2
        truncate -s 10M sparse; printf 'data' | dd of=sparse bs=1 seek=5M conv=notrunc 2>/dev/null
        head -c 300000 /dev/urandom > big
        setfattr -n user.x -v hello a/f
        setfattr -n trusted.t -v secret b
        setfacl -m u:1234:rwx a/f; setfacl -d -m g:55:rx a
        mknod null c 1 3; mknod blk b 7 0; mkfifo fifo
        python3 -c 'import socket; s=socket.socket(socket.AF_UNIX); s.bind("sock")'
        ln -s ../x/y dangling; ln -s a/f link; ln -s b dirlink
        printf x > suid; chmod 4755 suid; chmod 2755 b
        printf x > tmp/junk; printf x > output.diskdump; printf x > zz-vanishes
        touch -d '2001-02-03 04:05:06.789' a/f b
        "#,
    );
    let _t = mount(
        &["-t", "tmpfs", "-o", "mode=1777", "tmpfs"],
        &src.join("mnt"),
    );
    fs::write(src.join("mnt/inside"), "x").unwrap();

    let rec = Recorder::new();
    let vanish = src.join("zz-vanishes");
    let hook = |rel: &Path| {
        if rel == Path::new("zz-vanishes") {
            fs::remove_file(&vanish).unwrap();
        }
    };
    let opts = CopyOptions {
        skip: HashSet::from([file_id(&src.join("output.diskdump")).unwrap()]),
        empty: vec!["tmp".into()],
        task: None,
        reporter: &rec,
        before_entry: Some(&hook),
    };
    let stats = copy_tree(&src, &dst, &opts).unwrap();

    assert_eq!(stats.changed, [Path::new("zz-vanishes")]);
    assert!(
        rec.warned("zz-vanishes disappeared during the copy"),
        "{:?}",
        rec.lines()
    );
    assert_eq!(
        listing(&dst, &[]),
        listing(&src, &["tmp/", "output.diskdump"]),
        "find listings differ"
    );
    assert!(!dst.join("output.diskdump").exists());
    assert_eq!(fs::read_dir(dst.join("tmp")).unwrap().count(), 0);
    assert_eq!(fs::read_dir(dst.join("mnt")).unwrap().count(), 0);
    assert_eq!(
        fs::metadata(dst.join("mnt")).unwrap().mode() & 0o7777,
        0o1777,
        "a mount point keeps the mounted root's mode"
    );
    let x = ["a/f", "b", "a"];
    assert_eq!(xattrs(&dst, &x), xattrs(&src, &x));
    assert!(xattrs(&dst, &x).contains("trusted.t=\"secret\""));
    assert_eq!(acls(&dst, &["a/f", "a"]), acls(&src, &["a/f", "a"]));
    assert!(acls(&dst, &["a/f"]).contains("user:1234:rwx"));
    for f in ["a/f", "sparse", "big", "suid"] {
        run(Command::new("cmp").arg(src.join(f)).arg(dst.join(f)));
    }
    let ino = |p: &str| fs::symlink_metadata(dst.join(p)).unwrap().ino();
    assert_eq!(ino("a/f"), ino("a/h"));
    assert_eq!(ino("a/f"), ino("b/h2"));
    assert_eq!(fs::metadata(dst.join("a/f")).unwrap().nlink(), 3);
    assert!(
        fs::metadata(dst.join("sparse")).unwrap().blocks() * 512 < 1 << 20,
        "the hole stays a hole"
    );
    // The data block around 5 MiB of the sparse file is copied whole (block size).
    assert!(
        (300_010..=300_006 + 4096).contains(&stats.bytes),
        "{stats:?}"
    );

    // Ctrl-C in the middle: the copy stops with Cancelled.
    let again = dst.join("again");
    fs::create_dir(&again).unwrap();
    let cancel = |rel: &Path| {
        if rel == Path::new("b") {
            snf_core::cancel::request();
        }
    };
    let opts = CopyOptions {
        skip: HashSet::new(),
        empty: Vec::new(),
        task: None,
        reporter: &rec,
        before_entry: Some(&cancel),
    };
    let err = copy_tree(&src, &again, &opts).unwrap_err();
    snf_core::cancel::reset();
    assert!(matches!(err, CopyError::Cancelled(_)), "{err}");
    fs::remove_dir_all(&again).unwrap();

    drop(d);
    let out = Command::new("e2fsck")
        .args(["-fn"])
        .arg(work.path().join("dst.img"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
