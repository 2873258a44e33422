//! Which operating system a guest root holds: family, distribution, version and product
//! name, from the files each system keeps (os-release first, then the release files of
//! older guests), the way libguestfs inspection names them.

use std::path::Path;

use snf_guestfs::assemble::find_nocase;
use snf_guestfs::GuestFs;

/// What inspection knows about the guest operating system.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OsInfo {
    /// `linux`, `windows`, `freebsd`, `netbsd`, `openbsd`, `hurd`, or `unknown`.
    pub family: String,
    /// The distribution as libguestfs names it (`debian`, `ubuntu`, `rhel`, `centos`,
    /// `fedora`, `oraclelinux`, `opensuse`, `sles`, `archlinux`, `gentoo`, `slackware`,
    /// `alpinelinux` ...), or `unknown`.
    pub distro: String,
    pub major: u32,
    pub minor: u32,
    /// A human-readable name, for example `Debian GNU/Linux 12 (bookworm)`.
    pub product_name: String,
    /// The `OS` property: the distro (or family when unknown) after the overrides for
    /// Ubuntu variants, Bitnami and Oracle Linux.
    pub os: String,
}

impl OsInfo {
    /// Whether nothing identified the system.
    pub fn is_unknown(&self) -> bool {
        self.family == "unknown"
    }
}

fn read(g: &mut GuestFs, path: &str) -> Option<String> {
    let p = Path::new(path);
    if !g.is_file(p) {
        return None;
    }
    g.read_to_string(p).ok()
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or("").trim().to_string()
}

/// `KEY=value` shell-style assignments (os-release, lsb-release, rc.conf), quotes removed.
pub(crate) fn parse_assignments(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            if l.starts_with('#') {
                return None;
            }
            let (k, v) = l.split_once('=')?;
            let k = k.trim().trim_start_matches("export ").trim();
            if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return None;
            }
            let v = v.trim();
            // Drop a trailing comment after an unquoted value.
            let v = if v.starts_with('"') || v.starts_with('\'') {
                let q = v.chars().next().unwrap_or('"');
                v[1..].split(q).next().unwrap_or("")
            } else {
                v.split(" #").next().unwrap_or(v).trim()
            };
            Some((k.to_string(), v.to_string()))
        })
        .collect()
}

fn get<'a>(kv: &'a [(String, String)], key: &str) -> Option<&'a str> {
    kv.iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// The first `N.M` (or `N`) found in `text`: (major, minor).
pub(crate) fn parse_version(text: &str) -> Option<(u32, u32)> {
    let start = text.find(|c: char| c.is_ascii_digit())?;
    let rest = &text[start..];
    let mut parts = rest.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    // Only a `.` continues the version: "7 (Core)" has no minor.
    let after_major = &rest[rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len())..];
    let minor = if let Some(m) = after_major.strip_prefix('.') {
        m.split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    } else {
        0
    };
    Some((major, minor))
}

/// The libguestfs distro name of an os-release `ID`.
fn distro_of_os_release_id(id: &str) -> &'static str {
    match id {
        "alpine" => "alpinelinux",
        "altlinux" => "altlinux",
        "arch" | "archarm" => "archlinux",
        "centos" => "centos",
        "circle" => "circle",
        "clear-linux-os" => "clearlinux",
        "debian" => "debian",
        "fedora" => "fedora",
        "frugalware" => "frugalware",
        "gentoo" => "gentoo",
        "kali" => "kalilinux",
        "linuxmint" => "linuxmint",
        "mageia" => "mageia",
        "mandriva" => "mandriva",
        "neokylin" => "neokylin",
        "ol" => "oraclelinux",
        "opencloudos" => "opencloudos",
        "openmandriva" => "openmandriva",
        "opensuse" | "opensuse-leap" | "opensuse-tumbleweed" | "opensuse-microos" => "opensuse",
        "pardus" => "pardus",
        "pld" => "pldlinux",
        "rhel" => "rhel",
        "rocky" => "rocky",
        "almalinux" => "almalinux",
        "scientific" => "scientificlinux",
        "slackware" => "slackware",
        "sles" | "sled" | "sles_sap" => "sles",
        "ubuntu" => "ubuntu",
        "void" => "voidlinux",
        "cirros" => "cirros",
        _ => "unknown",
    }
}

fn linux(distro: &str, version: Option<(u32, u32)>, product: String) -> OsInfo {
    let (major, minor) = version.unwrap_or((0, 0));
    OsInfo {
        family: "linux".into(),
        distro: distro.into(),
        major,
        minor,
        product_name: product,
        os: String::new(),
    }
}

fn from_os_release(g: &mut GuestFs) -> Option<OsInfo> {
    let text = read(g, "/etc/os-release").or_else(|| read(g, "/usr/lib/os-release"))?;
    let kv = parse_assignments(&text);
    let id = get(&kv, "ID")?.to_ascii_lowercase();
    let distro = distro_of_os_release_id(&id);
    let mut version = get(&kv, "VERSION_ID").and_then(parse_version);
    let product = get(&kv, "PRETTY_NAME")
        .or_else(|| get(&kv, "NAME"))
        .unwrap_or(id.as_str())
        .to_string();
    if distro == "debian" {
        // os-release only says "12"; debian_version has the point release ("12.5").
        if let Some(dv) = read(g, "/etc/debian_version").and_then(|t| parse_version(&t)) {
            match version {
                Some((maj, _)) if maj == dv.0 => version = Some(dv),
                None => version = Some(dv),
                _ => {}
            }
        }
    }
    Some(linux(distro, version, product))
}

fn from_lsb_release(g: &mut GuestFs, generic: bool) -> Option<OsInfo> {
    let text = read(g, "/etc/lsb-release")?;
    let kv = parse_assignments(&text);
    let id = get(&kv, "DISTRIB_ID")?.to_string();
    let distro = match id.to_ascii_lowercase().as_str() {
        "ubuntu" => "ubuntu",
        "linuxmint" => "linuxmint",
        "mandrivalinux" | "mandriva" => "mandriva",
        "corel" => "corel",
        other if generic => distro_of_os_release_id(other),
        _ => return None,
    };
    let version = get(&kv, "DISTRIB_RELEASE").and_then(parse_version);
    let product = get(&kv, "DISTRIB_DESCRIPTION")
        .map(str::to_string)
        .unwrap_or_else(|| {
            format!("{id} {}", get(&kv, "DISTRIB_RELEASE").unwrap_or(""))
                .trim()
                .to_string()
        });
    Some(linux(distro, version, product))
}

/// Release files of older guests, most specific first (CentOS and Oracle keep a
/// redhat-release too; Ubuntu keeps a debian_version).
fn from_release_files(g: &mut GuestFs) -> Option<OsInfo> {
    if let Some(t) = read(g, "/etc/altlinux-release") {
        return Some(linux("altlinux", parse_version(&t), first_line(&t)));
    }
    if let Some(t) = read(g, "/etc/oracle-release") {
        return Some(linux("oraclelinux", parse_version(&t), first_line(&t)));
    }
    if let Some(t) = read(g, "/etc/fedora-release") {
        return Some(linux("fedora", parse_version(&t), first_line(&t)));
    }
    if let Some(t) = read(g, "/etc/centos-release") {
        return Some(linux("centos", parse_version(&t), first_line(&t)));
    }
    if let Some(t) = read(g, "/etc/redhat-release") {
        let line = first_line(&t);
        let distro = if line.starts_with("CentOS") {
            "centos"
        } else if line.starts_with("Fedora") {
            "fedora"
        } else if line.starts_with("Scientific Linux") {
            "scientificlinux"
        } else if line.starts_with("Rocky") {
            "rocky"
        } else if line.starts_with("AlmaLinux") {
            "almalinux"
        } else if line.starts_with("Red Hat Enterprise Linux") {
            "rhel"
        } else {
            "redhat-based"
        };
        return Some(linux(distro, parse_version(&line), line));
    }
    if let Some(t) = read(g, "/etc/SuSE-release") {
        let line = first_line(&t);
        let distro = if line.to_ascii_lowercase().contains("opensuse") {
            "opensuse"
        } else if line.starts_with("SUSE Linux Enterprise") {
            "sles"
        } else {
            "suse-based"
        };
        let kv: Vec<(String, String)> = t
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        let major = get(&kv, "VERSION").and_then(parse_version);
        let version = match (major, get(&kv, "PATCHLEVEL").and_then(|p| p.parse().ok())) {
            (Some((maj, _)), Some(patch)) => Some((maj, patch)),
            (Some(v), None) => Some(v),
            (None, _) => parse_version(&line),
        };
        return Some(linux(distro, version, line));
    }
    if let Some(t) = read(g, "/etc/debian_version") {
        let v = parse_version(&t);
        let ver = first_line(&t);
        return Some(linux("debian", v, format!("Debian GNU/Linux {ver}")));
    }
    if read(g, "/etc/arch-release").is_some() {
        return Some(linux("archlinux", None, "Arch Linux".into()));
    }
    if let Some(t) = read(g, "/etc/gentoo-release") {
        return Some(linux("gentoo", parse_version(&t), first_line(&t)));
    }
    if let Some(t) = read(g, "/etc/slackware-version") {
        return Some(linux("slackware", parse_version(&t), first_line(&t)));
    }
    if let Some(t) = read(g, "/etc/alpine-release") {
        let ver = first_line(&t);
        return Some(linux(
            "alpinelinux",
            parse_version(&ver),
            format!("Alpine Linux {ver}"),
        ));
    }
    for (file, distro) in [
        ("/etc/mageia-release", "mageia"),
        ("/etc/mandriva-release", "mandriva"),
        ("/etc/pardus-release", "pardus"),
        ("/etc/frugalware-release", "frugalware"),
        ("/etc/meego-release", "meego"),
        ("/etc/ttylinux-target", "ttylinux"),
    ] {
        if let Some(t) = read(g, file) {
            return Some(linux(distro, parse_version(&t), first_line(&t)));
        }
    }
    None
}

fn bsd(family: &str, product: String) -> OsInfo {
    let (major, minor) = parse_version(&product).unwrap_or((0, 0));
    OsInfo {
        family: family.into(),
        distro: family.into(),
        major,
        minor,
        product_name: product,
        os: String::new(),
    }
}

fn detect_other(g: &mut GuestFs) -> Option<OsInfo> {
    // FreeBSD: freebsd-version holds USERLAND_VERSION="13.2-RELEASE".
    if g.is_file(Path::new("/etc/freebsd-update.conf"))
        || g.is_file(Path::new("/bin/freebsd-version"))
    {
        let product = read(g, "/bin/freebsd-version")
            .and_then(|t| {
                get(&parse_assignments(&t), "USERLAND_VERSION").map(|v| format!("FreeBSD {v}"))
            })
            .or_else(|| {
                read(g, "/etc/motd")
                    .map(|t| first_line(&t))
                    .filter(|l| l.starts_with("FreeBSD"))
            })
            .unwrap_or_else(|| "FreeBSD".to_string());
        return Some(bsd("freebsd", product));
    }
    if g.is_file(Path::new("/netbsd"))
        || g.is_file(Path::new("/etc/release"))
            && read(g, "/etc/release").is_some_and(|t| t.starts_with("NetBSD"))
    {
        let product = read(g, "/etc/release")
            .map(|t| first_line(&t))
            .unwrap_or_else(|| "NetBSD".to_string());
        return Some(bsd("netbsd", product));
    }
    if g.is_file(Path::new("/bsd")) {
        let product = read(g, "/etc/motd")
            .map(|t| first_line(&t))
            .filter(|l| l.starts_with("OpenBSD"))
            .unwrap_or_else(|| "OpenBSD".to_string());
        return Some(bsd("openbsd", product));
    }
    if g.exists(Path::new("/hurd/console")) || g.exists(Path::new("/hurd/hello.static")) {
        let mut info =
            from_release_files(g).unwrap_or_else(|| linux("unknown", None, "GNU/Hurd".into()));
        info.family = "hurd".into();
        if info.product_name.starts_with("Debian GNU/Linux") {
            info.product_name = info.product_name.replacen("GNU/Linux", "GNU/Hurd", 1);
        }
        return Some(info);
    }
    if find_nocase(g, &["Windows", "System32", "config", "SOFTWARE"]).is_some() {
        // The product and version come from the registry: `inspect` reads it once.
        return Some(OsInfo {
            family: "windows".into(),
            distro: "windows".into(),
            major: 0,
            minor: 0,
            product_name: "Windows".into(),
            os: String::new(),
        });
    }
    None
}

/// Identify the system whose root is mounted at `/` of `g`. Never fails: a root that
/// nothing identifies is family and distro `unknown`.
pub fn detect(g: &mut GuestFs) -> OsInfo {
    let mut info = detect_other(g)
        .or_else(|| from_os_release(g))
        .or_else(|| from_lsb_release(g, false))
        .or_else(|| from_release_files(g))
        .or_else(|| from_lsb_release(g, true))
        .unwrap_or_else(|| OsInfo {
            family: "unknown".into(),
            distro: "unknown".into(),
            ..Default::default()
        });
    info.os = if info.distro == "unknown" {
        info.family.clone()
    } else {
        info.distro.clone()
    };
    info
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_free_text() {
        assert_eq!(
            parse_version("CentOS Linux release 7.9.2009 (Core)"),
            Some((7, 9))
        );
        assert_eq!(
            parse_version("Fedora release 20 (Heisenbug)"),
            Some((20, 0))
        );
        assert_eq!(parse_version("\"16.04\""), Some((16, 4)));
        assert_eq!(parse_version("wheezy/sid"), None);
        assert_eq!(parse_version("3.18.4\n"), Some((3, 18)));
    }

    #[test]
    fn assignments_drop_quotes_and_comments() {
        let kv = parse_assignments(
            "# c\nNAME=\"Debian GNU/Linux\"\nID=debian\nVERSION_ID='12'\nX=1 # note\nbad line\n",
        );
        assert_eq!(get(&kv, "NAME"), Some("Debian GNU/Linux"));
        assert_eq!(get(&kv, "VERSION_ID"), Some("12"));
        assert_eq!(get(&kv, "X"), Some("1"));
        assert_eq!(kv.len(), 4);
    }
}
