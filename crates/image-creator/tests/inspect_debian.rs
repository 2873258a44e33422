//! End to end: inspection of the real Debian 12 guest (debootstrap, kernel,
//! openssh-server, a user with a password), MBR and GPT, read-only.

use image_creator::inspect::{inspect, partitions_from_layout};
use snf_disk::partition::Layout;
use snf_testkit::{debian_guest_info, Table};

fn check(table: Table, root: &str, kind: &str) {
    let guest = debian_guest_info();
    let img = guest.image(table);
    let layout = Layout::read_file(&img, 512).unwrap();
    let parts = partitions_from_layout(&layout);
    let i = inspect(
        &img,
        &parts,
        layout.kind().as_str(),
        false,
        &snf_core::report::Quiet,
    )
    .unwrap();
    assert_eq!(i.unsupported, None, "{kind}");
    let m = &i.metadata;
    assert_eq!(m.get("OSFAMILY"), Some("linux"));
    assert_eq!(m.get("OS"), Some("debian"));
    let descr = m.get("DESCRIPTION").unwrap();
    assert!(descr.contains("Debian") && descr.contains("12"), "{descr}");
    assert_eq!(m.get("ROOT_PARTITION"), Some(root));
    assert_eq!(m.get("PARTITION_TABLE"), Some(kind));
    let users: Vec<&str> = m.get("USERS").unwrap().split(' ').collect();
    assert!(
        users.contains(&"root") && users.contains(&"user"),
        "{users:?}"
    );
    let kernel = m.get("KERNEL").unwrap();
    assert!(
        kernel.starts_with("6.1.") && kernel.ends_with("-cloud-amd64"),
        "{kernel}"
    );
    // Debian 12.x: 7 (linux) 70 (debian) 12 (major) and the point release.
    let sort: u64 = m.get("SORTORDER").unwrap().parse().unwrap();
    assert!((7_701_200..7_701_300).contains(&sort), "{sort}");
    assert_eq!(i.os.major, 12);
    assert_eq!(
        m.get("REMOTE_CONNECTION"),
        Some("ssh:port=22,user=root ssh:port=22,user=user")
    );
    assert_eq!(m.get("BOOTSTRAP"), Some("grub2"));
    // The guest's hashes are SHA-512 crypt.
    assert_eq!(m.get("PASSWD_HASHING_METHOD"), Some("sha512"));
    assert_eq!(m.get("GUI"), Some("No GUI"));
    assert_eq!(m.get("CLOUD_INIT"), None);
    assert_eq!(m.get("UNSUPPORTED"), None);
    let swap = guest.layout(table).swap_partition;
    let p = i.partitions.iter().find(|p| p.desc.number == swap).unwrap();
    assert_eq!(p.probe.fs_type, snf_guestfs::probe::FsType::Swap);
    assert_eq!(
        p.probe.uuid.as_deref(),
        Some(guest.layout(table).swap_uuid.as_str())
    );
    let mut g = i.guest.unwrap();
    assert!(g.is_file(std::path::Path::new("/etc/ssh/sshd_config")));
}

#[test]
fn debian12_mbr() {
    check(Table::Mbr, "1", "msdos");
}

#[test]
fn debian12_gpt() {
    check(Table::Gpt, "2", "gpt");
}
