//! Shrinking end to end through the binary: as an unprivileged user (the filesystem
//! is resized in an extracted copy), with each method forced, and on the real Debian
//! guest: clean filesystems, right metadata, a small image that boots, and that deploys
//! to a bigger disk as snf-image does it and boots again.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::*;
use image_creator::disk::partition::{Layout, MIB};
use snf_testkit::fixture::{
    assert_ext_clean, assert_sfdisk_verifies, run as run_tool, write_file, Disk, Mke2fs,
};
use snf_testkit::{debian_guest_info, deploy, partitions, Table};

/// An MBR disk: p1 (63 MiB) ext4 holding a minimal Debian root and 2 MiB of data, p2
/// (16 MiB) swap.
fn root_and_swap(dir: &Path, name: &str) -> PathBuf {
    let tree = dir.join(format!("{name}.tree"));
    fs::create_dir_all(tree.join("tmp")).unwrap();
    write_file(
        &tree,
        "/etc/os-release",
        "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n",
    );
    write_file(&tree, "/etc/debian_version", "12.5\n");
    write_file(&tree, "/etc/fstab", "/dev/sda1 / ext4 defaults 0 1\n");
    write_file(
        &tree,
        "/etc/shadow",
        "root:$6$salt$hash:19000:0:99999:7:::\nuser:$6$salt$hash2:19000:0:99999:7:::\n",
    );
    write_file(&tree, "/data.bin", pseudo_random(2 << 20, 3));
    let disk = Disk::create(
        dir.join(name),
        80 * MIB,
        "label: dos\nstart=2048, size=63M, type=83\nsize=16M, type=82\n",
    );
    disk.ext(1, &Mke2fs::ext4().tree(&tree)).swap(2, None);
    fs::remove_dir_all(&tree).unwrap();
    disk.into_path()
}

fn meta_of(out: &Path) -> serde_json::Value {
    let text = fs::read_to_string(format!("{}.meta", out.display())).unwrap();
    serde_json::from_str::<serde_json::Value>(&text).unwrap()["properties"].clone()
}

fn assert_shrunk(out: &Path, swap: &str) {
    let layout = Layout::read_file(out, 512).unwrap();
    assert_eq!(layout.partitions().len(), 1);
    let p1 = layout.partition(1).unwrap();
    assert_eq!(fs::metadata(out).unwrap().len(), p1.end_offset() + MIB);
    assert!(
        p1.size() < 63 * MIB,
        "partition 1 not shrunk: {} bytes",
        p1.size()
    );
    assert_ext_clean(out, p1.offset(), "partition 1");
    let meta = meta_of(out);
    assert_eq!(meta["SWAP"], swap);
    assert_eq!(meta["OSFAMILY"], "linux");
    assert_sfdisk_verifies(out.to_str().unwrap());
}

/// Copy the binary where uid 65534 can run it whatever the target dir's permissions.
fn binary_copy(dir: &Path) -> PathBuf {
    let copy = dir.join("snf-mkimage");
    fs::copy(bin(), &copy).unwrap();
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).unwrap();
    copy
}

#[test]
fn an_unprivileged_user_gets_a_shrunk_image_through_an_extracted_copy() {
    require("setpriv");
    let dir = tempdir();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let exe = binary_copy(dir.path());
    let img = root_and_swap(dir.path(), "disk.raw");
    let work = dir.path().join("work");
    fs::create_dir(&work).unwrap();
    for p in [&img, &work] {
        run_tool(Command::new("chown").arg("65534:65534").arg(p));
    }
    let out = dir.path().join("out.raw");
    let run = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&exe)
        .args(["-v", "--tmpdir"])
        .arg(&work)
        .arg("-o")
        .arg(&out)
        .arg(&img)
        .env("HOME", "/nonexistent")
        .env_remove("SNF_SHRINK_METHOD")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = stderr(&run);
    assert!(run.status.success(), "{err}");
    assert!(err.contains("(extract"), "{err}");
    assert_eq!(fs::metadata(&out).unwrap().uid(), 65534);
    assert_shrunk(&out, "2:16");
    assert!(
        fs::read_dir(&work).unwrap().next().is_none(),
        "work dir not cleaned"
    );
}

fn forced(method: &str) -> (Output, tempfile::TempDir, PathBuf) {
    let dir = tempdir();
    let img = root_and_swap(dir.path(), "disk.raw");
    let out = dir.path().join("out.raw");
    let run = Command::new(bin())
        .args(["-v", "--tmpdir"])
        .arg(dir.path())
        .arg("-o")
        .arg(&out)
        .arg(&img)
        .env("SNF_SHRINK_METHOD", method)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (run, dir, out)
}

#[test]
fn each_shrink_method_can_be_forced_and_gives_the_same_layout() {
    let mut layouts = Vec::new();
    for method in ["loop", "extract"] {
        let (run, _dir, out) = forced(method);
        let err = stderr(&run);
        assert!(run.status.success(), "{method}: {err}");
        assert!(err.contains(&format!("({method}")), "{err}");
        assert_shrunk(&out, "2:16");
        layouts.push(Layout::read_file(&out, 512).unwrap().partitions().to_vec());
    }
    assert_eq!(layouts[0], layouts[1]);
}

/// The default: a private copy (just written) is extracted and resized without syncs
/// when eatmydata is there; the user's own disk (--no-snapshot) goes through a loop
/// device as root.
#[test]
fn the_default_method_depends_on_whether_the_disk_is_a_private_copy() {
    require("eatmydata");
    let dir = tempdir();
    let img = root_and_swap(dir.path(), "disk.raw");
    let run = |extra: &[&str], out: &Path| {
        Command::new(bin())
            .args(["-v", "--tmpdir"])
            .arg(dir.path())
            .args(extra)
            .arg("-o")
            .arg(out)
            .arg(&img)
            .env_remove("SNF_SHRINK_METHOD")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let copy_out = dir.path().join("copy.raw");
    let copy = run(&[], &copy_out);
    let err = stderr(&copy);
    assert!(copy.status.success(), "{err}");
    assert!(err.contains("(extract, without syncs: eatmydata)"), "{err}");
    assert_shrunk(&copy_out, "2:16");

    let own_out = dir.path().join("own.raw");
    let own = run(&["--no-snapshot"], &own_out);
    let err = stderr(&own);
    assert!(own.status.success(), "{err}");
    assert!(err.contains("(loop)"), "{err}");
    assert_shrunk(&own_out, "2:16");
}

#[test]
fn an_unknown_shrink_method_is_an_error() {
    let (run, _dir, out) = forced("magic");
    assert_eq!(run.status.code(), Some(1));
    assert!(
        stderr(&run).contains("SNF_SHRINK_METHOD=magic"),
        "{}",
        stderr(&run)
    );
    assert!(!out.exists());
}

// ---- the real Debian guest ----------------------------------------------------------------

/// `snf-mkimage -o out.raw` with the defaults on the guest image `table`.
fn image_guest(dir: &Path, table: Table) -> PathBuf {
    let guest = debian_guest_info();
    let out = dir.join("out.raw");
    let run = Command::new(bin())
        .args(["--tmpdir"])
        .arg(dir)
        .arg("-o")
        .arg(&out)
        .arg(guest.image(table))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", stderr(&run));

    let lay = guest.layout(table);
    let meta = meta_of(&out);
    assert_eq!(meta["OSFAMILY"], "linux");
    assert_eq!(meta["OS"], "debian");
    assert_eq!(meta["ROOT_PARTITION"], lay.root_partition.to_string());
    assert_eq!(meta["USERS"], "root user");
    if table == Table::Gpt {
        // snf-image cannot re-create swap on GPT: not recorded, and said so (README).
        assert!(meta.get("SWAP").is_none(), "SWAP set on GPT: {meta}");
        assert!(
            stderr(&run).contains(&format!(
                "SWAP={}:{} is not recorded",
                lay.swap_partition, guest.info.swap_mib
            )),
            "{}",
            stderr(&run)
        );
    } else {
        assert_eq!(
            meta["SWAP"],
            format!("{}:{}", lay.swap_partition, guest.info.swap_mib)
        );
    }
    // Every filesystem clean, the swap gone, the image cut after the root.
    let (label, parts) = partitions(&out).unwrap();
    assert!(parts.iter().all(|p| p.number != lay.swap_partition));
    let root = parts
        .iter()
        .find(|p| p.number == lay.root_partition)
        .unwrap();
    assert_ext_clean(&out, root.start * 512, "the root partition");
    let tail = if label == "gpt" {
        MIB.max(33 * 512)
    } else {
        MIB
    };
    assert_eq!(
        fs::metadata(&out).unwrap().len(),
        (root.start + root.size) * 512 + tail
    );
    if label == "gpt" {
        let v = run_tool(Command::new("sgdisk").arg("-v").arg(&out));
        assert!(v.contains("No problems found"), "{v}");
    }
    // A fraction of what the source allocates.
    let src_alloc = fs::metadata(guest.image(table)).unwrap().blocks() * 512;
    let out_alloc = fs::metadata(&out).unwrap().blocks() * 512;
    assert!(
        out_alloc * 10 < src_alloc * 9,
        "output allocates {out_alloc} bytes, the source {src_alloc}"
    );
    out
}

#[test]
fn the_debian_mbr_guest_is_shrunk_clean_and_boots() {
    let dir = tempfile::tempdir_in(snf_testkit::target_dir()).unwrap();
    let out = image_guest(dir.path(), Table::Mbr);
    assert_boots(&out);
}

#[test]
fn the_debian_gpt_guest_is_shrunk_deploys_to_a_bigger_disk_without_swap_and_boots() {
    let guest = debian_guest_info();
    let lay = guest.layout(Table::Gpt);
    let dir = tempfile::tempdir_in(snf_testkit::target_dir()).unwrap();
    let out = image_guest(dir.path(), Table::Gpt);
    let (_, parts) = partitions(&out).unwrap();
    let root = parts
        .iter()
        .find(|p| p.number == lay.root_partition)
        .unwrap();
    assert_eq!(root.name.as_deref(), Some("root"), "the GPT name was lost");

    let vm = dir.path().join("vm.raw");
    let size = 4096 * MIB;
    deploy(
        &out,
        Path::new(&format!("{}.meta", out.display())),
        &vm,
        size,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let (_, parts) = partitions(&vm).unwrap();
    let grown = parts
        .iter()
        .find(|p| p.number == lay.root_partition)
        .unwrap();
    // No SWAP on GPT (snf-image cannot re-create it): the root takes the whole disk.
    assert!(parts.iter().all(|p| p.number != lay.swap_partition));
    // deploy.sh (as snf-image) ends the grown partition 2048 sectors before the disk end.
    assert_eq!(grown.start + grown.size, size / 512 - 2048, "{grown:?}");
    assert_eq!(grown.uuid, root.uuid, "PARTUUID changed");
    assert_boots(&vm);
}
