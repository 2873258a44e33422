//! Inspection: assemble the guest from the disk's partitions, recognise its operating
//! system and compute every metadata key the original computes (plus
//! `PASSWD_HASHING_METHOD`, which the deploy side reads).
//!
//! Media that cannot be prepared are not errors: [`Inspection::unsupported`] says why in
//! one sentence and the metadata carries it as `UNSUPPORTED`. Errors are kept for
//! failures to read the image itself.

pub mod bootloader;
pub mod detect;
pub mod unix;
pub mod windows;

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use snf_core::Reporter;
use snf_disk::partition::{Layout, TableKind};
use snf_guestfs::assemble::{
    self, AssembledMount, Backends, Opener, PartitionDesc, ProbedPartition,
};
use snf_guestfs::GuestFs;

pub use detect::OsInfo;

use crate::metadata::{keys, Metadata};

/// What can stop inspection (as opposed to media it merely cannot handle).
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("{}: cannot read the boot sector: {source}", .path.display())]
    BootSector {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Guest(#[from] snf_guestfs::Error),
}

/// The outcome of [`inspect`].
pub struct Inspection {
    /// The guest tree, mounted as asked (read-write or read-only); `None` for
    /// unsupported media, which must not be changed.
    pub guest: Option<GuestFs>,
    /// The operating system (family `unknown` when none was found).
    pub os: OsInfo,
    /// Every detected property (`UNSUPPORTED` included when set).
    pub metadata: Metadata,
    /// Why the media cannot be prepared, as one sentence.
    pub unsupported: Option<String>,
    /// Every partition and what is on it.
    pub partitions: Vec<ProbedPartition>,
    /// What is mounted where in the guest tree, root first (with UUIDs, for
    /// `use-persistent-block-device-names`).
    pub mounts: Vec<AssembledMount>,
    /// The number of the root partition (for a root on a logical volume: the partition
    /// of the volume's first extent).
    pub root_partition: Option<u32>,
    /// The root's logical volume (`vg/lv`), when the root is on one.
    pub root_lv: Option<String>,
    /// For a Windows guest: its version, accounts, Remote Desktop and boot partitions.
    pub windows: Option<windows::WindowsInfo>,
}

/// The partitions of `layout` as assembly needs them (the extended container left out).
pub fn partitions_from_layout(layout: &Layout) -> Vec<PartitionDesc> {
    let gpt = layout.kind() == TableKind::Gpt;
    layout
        .partitions()
        .iter()
        .filter(|p| !p.is_extended())
        .map(|p| PartitionDesc {
            number: p.number,
            offset: p.offset(),
            size: p.size(),
            gpt_guid: if gpt {
                p.unique_guid.map(|g| g.to_string())
            } else {
                None
            },
            gpt_name: (gpt && !p.name.is_empty()).then(|| p.name.clone()),
            mbr_signature: if gpt {
                None
            } else {
                layout.mbr_disk_signature()
            },
            ..Default::default()
        })
        .collect()
}

/// Inspect the disk image `image` (raw) whose partitions are `partitions`;
/// `partition_table` is `msdos` or `gpt`. With `writable`, the guest tree is opened for
/// writing (system preparation follows).
pub fn inspect(
    image: &Path,
    partitions: &[PartitionDesc],
    partition_table: &str,
    writable: bool,
    reporter: &dyn Reporter,
) -> Result<Inspection, InspectError> {
    inspect_with(
        image,
        partitions,
        partition_table,
        writable,
        &Backends,
        reporter,
    )
}

/// [`inspect`] with the filesystems opened by `opener`.
pub fn inspect_with(
    image: &Path,
    partitions: &[PartitionDesc],
    partition_table: &str,
    writable: bool,
    opener: &dyn Opener,
    reporter: &dyn Reporter,
) -> Result<Inspection, InspectError> {
    let asm = assemble::assemble_with(image, partitions, writable, opener, reporter)?;
    let mut metadata = Metadata::new();
    let mut unsupported = asm.unsupported.clone();

    let Some(mut guest) = asm.guest else {
        let reason = unsupported
            .unwrap_or_else(|| "Unable to detect any operating system on the media.".into());
        reporter.warn(&reason);
        set(&mut metadata, "UNSUPPORTED", &reason);
        return Ok(Inspection {
            guest: None,
            os: OsInfo {
                family: "unsupported".into(),
                distro: "unsupported".into(),
                os: "unsupported".into(),
                ..Default::default()
            },
            metadata,
            unsupported: Some(reason),
            partitions: asm.partitions,
            mounts: asm.mounts,
            root_partition: asm.root,
            root_lv: asm.root_lv,
            windows: None,
        });
    };

    reporter.info("Inspecting Operating System ...");
    let mut os = detect::detect(&mut guest);
    // Windows: the registry names the product and version (read once, here).
    let mut win = None;
    let mut registry_error = None;
    if os.family == "windows" {
        match windows::inspect(&mut guest, reporter) {
            Ok(info) => {
                os.major = info.version.major;
                os.minor = info.version.minor;
                os.product_name = info.version.product_name.clone();
                win = Some(info);
            }
            Err(e) => registry_error = Some(e),
        }
    }
    if os.is_unknown() {
        reporter.info("found an unknown system");
    } else {
        reporter.info(&format!("found {} ({})", os.product_name, os.distro));
    }

    let mbr = read_mbr(image)?;
    let root = match (&asm.root_lv, asm.root) {
        (Some(lv), _) => format!("LV {lv}"),
        (None, r) => format!("partition {}", r.unwrap_or(0)),
    };
    match os.family.as_str() {
        "unknown" => {
            unsupported.get_or_insert_with(|| {
                format!(
                    "Unknown Operating System: nothing on the root filesystem ({root}) identifies it."
                )
            });
        }
        // As the original: its deploy side (snf-image) grows and mounts FreeBSD on GPT only.
        "freebsd" if partition_table != "gpt" => {
            unsupported.get_or_insert_with(|| {
                "On FreeBSD only GUID partition tables are supported".into()
            });
        }
        "windows" => match (win.as_mut(), registry_error) {
            (Some(info), _) => {
                reporter.info("Checking if this version of Windows is supported ...");
                if (info.version.major, info.version.minor) < windows::OLDEST {
                    unsupported.get_or_insert_with(|| {
                        format!(
                            "{} is too old. Versions prior to Windows 7 are not supported.",
                            info.version.product_name
                        )
                    });
                }
                info.boot_partition = asm.root;
                info.system_partition =
                    windows::system_partition(image, &asm.partitions, asm.root, &mut guest, opener);
            }
            (None, e) => {
                let why = e.map_or_else(|| "no SOFTWARE hive".to_string(), |e| e.to_string());
                unsupported
                    .get_or_insert_with(|| format!("The Windows registry cannot be read: {why}"));
            }
        },
        _ => {}
    }

    if !os.is_unknown() {
        reporter.info("Collecting image metadata ...");
        set(&mut metadata, "PARTITION_TABLE", partition_table);
        set(&mut metadata, "BOOTSTRAP", bootloader::mbr_bootinfo(&mbr));
        if let Some(r) = asm.root {
            set(&mut metadata, keys::ROOT_PARTITION, &r.to_string());
        }
        if let Some(lv) = &asm.root_lv {
            set(&mut metadata, keys::ROOT_LV, lv);
        }
        collect(&mut guest, &mut os, win.as_ref(), &mut metadata, reporter);
    }

    if let Some(reason) = &unsupported {
        reporter.warn(reason);
        set(&mut metadata, "UNSUPPORTED", reason);
    }
    Ok(Inspection {
        guest: if unsupported.is_some() {
            None
        } else {
            Some(guest)
        },
        os,
        metadata,
        unsupported,
        partitions: asm.partitions,
        mounts: asm.mounts,
        root_partition: asm.root,
        root_lv: asm.root_lv,
        windows: win,
    })
}

fn read_mbr(image: &Path) -> Result<Vec<u8>, InspectError> {
    let err = |source| InspectError::BootSector {
        path: image.to_path_buf(),
        source,
    };
    let f = File::open(image).map_err(err)?;
    let mut buf = vec![0u8; 512];
    let mut done = 0;
    while done < buf.len() {
        let n = f.read_at(&mut buf[done..], done as u64).map_err(err)?;
        if n == 0 {
            break;
        }
        done += n;
    }
    buf.truncate(done);
    Ok(buf)
}

fn set(meta: &mut Metadata, key: &str, value: &str) {
    // Keys passed here are constants made of valid characters.
    let _ = meta.insert(key, value);
}

/// `SORTORDER` rank of each OS family.
fn family_rank(family: &str) -> u64 {
    match family {
        "windows" => 8,
        "linux" => 7,
        "freebsd" => 6,
        "netbsd" => 5,
        "openbsd" => 4,
        "hurd" => 3,
        "dos" => 2,
        "minix" => 1,
        _ => 0,
    }
}

/// `SORTORDER` rank of each Linux distribution.
fn distro_rank(distro: &str) -> Option<u64> {
    Some(match distro {
        "ubuntu" => 80,
        "linuxmint" => 75,
        "debian" => 70,
        "rhel" => 60,
        "fedora" => 58,
        "centos" => 55,
        "scientificlinux" => 50,
        "sles" => 45,
        "opensuse" => 44,
        "archlinux" => 40,
        "gentoo" => 35,
        "slackware" => 30,
        "oraclelinux" => 28,
        "mageia" => 20,
        "mandriva" => 19,
        "cirros" => 15,
        "pardus" => 10,
        _ => return None,
    })
}

/// The `SORTORDER` value of a system.
pub fn sort_order(os: &OsInfo) -> u64 {
    let mut order = 1_000_000 * family_rank(&os.family);
    let (major, minor) = (u64::from(os.major), u64::from(os.minor));
    match os.family.as_str() {
        "linux" => {
            if let Some(rank) = distro_rank(&os.distro) {
                order += 10_000 * rank + 100 * major.min(99) + minor.min(99);
            }
        }
        "freebsd" | "netbsd" | "openbsd" => order += 100 * major + minor,
        "windows" => order += 100 * (100 * major + minor),
        _ => {}
    }
    order
}

/// Compute the OS-dependent keys into `meta` (and the `OS` override into `os`).
fn collect(
    g: &mut GuestFs,
    os: &mut OsInfo,
    win: Option<&windows::WindowsInfo>,
    meta: &mut Metadata,
    reporter: &dyn Reporter,
) {
    set(meta, "OSFAMILY", &os.family);
    let mut description = os.product_name.clone();
    set(meta, "SORTORDER", &sort_order(os).to_string());

    match os.family.as_str() {
        "linux" | "hurd" => collect_linux(g, os, &mut description, meta, reporter),
        "freebsd" | "netbsd" | "openbsd" => collect_bsd(g, os, &mut description, meta, reporter),
        "windows" => {
            set(meta, "GUI", "Windows");
            if let Some(w) = win {
                collect_windows(w, meta, reporter);
            }
        }
        _ => {}
    }
    set(meta, "OS", &os.os);
    set(meta, "DESCRIPTION", &description);
}

fn set_users(meta: &mut Metadata, users: &[String], reporter: &dyn Reporter) {
    if users.is_empty() {
        reporter.warn("No passworded users found!");
        meta.remove("USERS");
    } else {
        set(meta, "USERS", &users.join(" "));
    }
}

fn collect_linux(
    g: &mut GuestFs,
    os: &mut OsInfo,
    description: &mut String,
    meta: &mut Metadata,
    reporter: &dyn Reporter,
) {
    set(meta, "GUI", &unix::gui(g));
    let users = unix::shadow_users(g, reporter);
    set_users(meta, &users, reporter);

    let kernel = if os.distro == "archlinux" {
        unix::arch_kernel(g, reporter).or_else(|| unix::linux_kernel(g))
    } else {
        unix::linux_kernel(g)
    };
    if let Some(k) = kernel {
        set(meta, "KERNEL", &k);
    }

    let slackware = os.distro == "slackware";
    let enabled = |g: &mut GuestFs, service: &str, slack: &str| {
        if slackware {
            unix::slackware_is_enabled(g, slack, reporter)
        } else {
            unix::is_enabled(g, service, reporter)
        }
    };

    if enabled(g, "sshd", "sshd") {
        let mut remote = unix::ssh_entries(g, &users);
        if let Some(x) = unix::x2go(g) {
            remote.push(' ');
            remote.push_str(&x);
        }
        set(meta, "REMOTE_CONNECTION", &remote);
    } else {
        reporter.warn("OpenSSH Daemon is not configured to run on boot");
    }

    if enabled(g, "NetworkManager", "networkmanager") {
        set(meta, "NM_NETWORKING", "yes");
    }

    if !slackware && unix::cloud_init_enabled(g, reporter) {
        set(meta, "CLOUD_INIT", "yes");
        let ci = unix::cloud_init(g, reporter);
        if !ci.users.is_empty() {
            set(meta, "USERS", &ci.users.join(" "));
        }
        if let Some(d) = &ci.default_user {
            set(meta, "CLOUD_INIT_DEFAULT_USER", d);
        }
    }

    set(
        meta,
        "PASSWD_HASHING_METHOD",
        &unix::passwd_hashing_method(g, &os.family),
    );

    // Distribution overrides of OS and DESCRIPTION.
    if os.distro == "ubuntu" {
        if let Some(variant) = ubuntu_variant(g) {
            *description = description.replace("Ubuntu", &capitalize(&variant));
            os.os = variant;
        }
        if g.is_dir(Path::new("/opt/bitnami")) {
            os.os = "bitnami".into();
            if let Ok(text) = g.read_to_string(Path::new("/opt/bitnami/README.txt")) {
                if let Some(first) = text.lines().next() {
                    set(meta, "OSVERSION", description);
                    *description = first.trim().to_string();
                }
            }
        }
    }
    if matches!(os.distro.as_str(), "rhel" | "oraclelinux") {
        if let Ok(text) = g.read_to_string(Path::new("/etc/oracle-release")) {
            os.os = "oraclelinux".into();
            if let Some(first) = text.lines().next() {
                *description = first.trim().to_string();
            }
        }
    }
}

/// The Windows keys: `KERNEL`, `USERS` (enabled SAM accounts) and `REMOTE_CONNECTION`
/// (unless Remote Desktop is denied). No `PASSWD_HASHING_METHOD`: snf-image sets Windows
/// passwords itself and calls a hashing method "not applicable" there.
fn collect_windows(w: &windows::WindowsInfo, meta: &mut Metadata, reporter: &dyn Reporter) {
    set(meta, "KERNEL", &w.version.kernel());
    let users = w.enabled_users();
    set_users(meta, &users, reporter);
    match w.remote_desktop {
        windows::RemoteDesktop::Allowed(port) => set(
            meta,
            "REMOTE_CONNECTION",
            &windows::remote_connection(port, &users),
        ),
        windows::RemoteDesktop::Denied => {
            reporter.warn("Remote Desktop Connections are disabled on this image")
        }
        // Unreadable SYSTEM: already warned about.
        windows::RemoteDesktop::Unknown => {}
    }
    if let Some(why) = w.publish_warning() {
        reporter.warn(&format!(
            "{why}; uploading or registering it needs -f (--force)"
        ));
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

/// `kubuntu`, `lubuntu` or `xubuntu` when its desktop meta-package is installed (dpkg
/// status says `install ok installed`).
fn ubuntu_variant(g: &mut GuestFs) -> Option<String> {
    let status = g.read_to_string(Path::new("/var/lib/dpkg/status")).ok()?;
    for para in status.split("\n\n") {
        let mut package = None;
        let mut installed = false;
        for line in para.lines() {
            if let Some(p) = line.strip_prefix("Package: ") {
                package = Some(p.trim());
            } else if let Some(s) = line.strip_prefix("Status: ") {
                installed = s.trim().ends_with(" installed") && s.contains("install ok");
            }
        }
        if let Some(p) = package {
            if installed {
                for v in ["k", "l", "x"] {
                    if p == format!("{v}ubuntu-desktop") {
                        return Some(format!("{v}ubuntu"));
                    }
                }
            }
        }
    }
    None
}

fn collect_bsd(
    g: &mut GuestFs,
    os: &mut OsInfo,
    description: &mut String,
    meta: &mut Metadata,
    reporter: &dyn Reporter,
) {
    set(meta, "GUI", &unix::gui(g));
    let users = unix::master_passwd_users(g, reporter);
    set_users(meta, &users, reporter);
    *description = description
        .split('#')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    let name = match os.family.as_str() {
        "freebsd" => "FreeBSD",
        "netbsd" => "NetBSD",
        _ => "OpenBSD",
    };
    set(meta, "KERNEL", &format!("{name} {}.{}", os.major, os.minor));

    let sshd = match os.family.as_str() {
        "freebsd" => unix::rc_yes(unix::rc_get(
            &unix::rc_conf(g, &["/etc/rc.conf", "/etc/rc.conf.local"]),
            "sshd_enable",
        )),
        "netbsd" => unix::rc_yes(unix::rc_get(
            &unix::rc_conf(g, &["/etc/defaults/rc.conf", "/etc/rc.conf"]),
            "sshd",
        )),
        _ => !unix::rc_get(
            &unix::rc_conf(g, &["/etc/rc.conf", "/etc/rc.conf.local"]),
            "sshd_flags",
        )
        .is_some_and(|v| v.eq_ignore_ascii_case("NO")),
    };
    if sshd {
        set(meta, "REMOTE_CONNECTION", &unix::ssh_entries(g, &users));
    } else {
        reporter.warn("OpenSSH Daemon is not configured to run on boot");
    }
    set(
        meta,
        "PASSWD_HASHING_METHOD",
        &unix::passwd_hashing_method(g, &os.family),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(family: &str, distro: &str, major: u32, minor: u32) -> OsInfo {
        OsInfo {
            family: family.into(),
            distro: distro.into(),
            major,
            minor,
            ..Default::default()
        }
    }

    #[test]
    fn sort_order_matches_the_original_examples() {
        assert_eq!(sort_order(&os("linux", "ubuntu", 16, 4)), 7_801_604);
        assert_eq!(sort_order(&os("windows", "windows", 6, 1)), 8_060_100);
        assert_eq!(sort_order(&os("linux", "voidlinux", 3, 1)), 7_000_000);
        assert_eq!(sort_order(&os("linux", "debian", 150, 200)), 7_709_999);
        assert_eq!(sort_order(&os("freebsd", "freebsd", 13, 2)), 6_001_302);
        assert_eq!(sort_order(&os("hurd", "debian", 0, 0)), 3_000_000);
    }
}
