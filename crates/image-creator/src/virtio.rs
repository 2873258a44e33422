//! `--install-virtio DIR`: VirtIO drivers from a virtio-win tree installed into a Windows
//! guest offline, the way virt-v2v does it, so that the image boots on virtio disks.
//!
//! The tree is `DIR/<driver>/<os>/<arch>/*.{inf,sys,cat}` (virtio-win's layout). For the
//! guest's version the `<os>` directory is chosen (`w7` ... `w11`, `2k8R2` ... `2k22`) and,
//! for its architecture, the `<arch>` directory whose `.inf` declares models for it
//! (`[Manufacturer]` decorated `NTamd64`/`NTx86`/`NTarm64`). Every file of the chosen
//! drivers is staged in `Windows\Drivers\VirtIO` for pnputil; the storage drivers
//! (viostor, vioscsi), which Windows needs before it can read its own disk, are also put
//! in `System32\drivers`, get their service keys (boot start) and, on Windows 7 and
//! older, critical device database entries for their PCI ids. The rest are installed by
//! `pnputil` at the first boot.

use std::path::{Path, PathBuf};

use hivex::RegValue;

use crate::inspect::windows::{control_set_or_default, HiveName, Version};
use crate::sysprep::{Changes, SysprepContext, SysprepError};

/// What is wrong with the virtio-win directory.
#[derive(Debug, thiserror::Error)]
pub enum VirtioError {
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: a driver file of {size} bytes is too big for a driver", .path.display())]
    TooBig { path: PathBuf, size: u64 },
    #[error("no VirtIO drivers for this guest ({what}) in {}", .dir.display())]
    NoDrivers { dir: PathBuf, what: String },
    #[error("no virtio-win directory matches {product} (Windows NT {major}.{minor})")]
    UnknownVersion {
        product: String,
        major: u32,
        minor: u32,
    },
    #[error(transparent)]
    Guest(#[from] SysprepError),
}

/// The drivers installed, in virtio-win's directory names.
pub const DRIVERS: &[&str] = &["viostor", "vioscsi", "NetKVM", "Balloon", "vioserial"];

/// The boot-critical storage drivers and the PCI device ids they drive (legacy and
/// modern virtio).
const STORAGE: &[(&str, &[&str])] = &[
    ("viostor", &["1001", "1042"]),
    ("vioscsi", &["1004", "1048"]),
];

/// The SCSI adapter device class.
const SCSI_ADAPTER_CLASS: &str = "{4D36E97B-E325-11CE-BFC1-08002BE10318}";

/// The largest driver file accepted (virtio-win's biggest are a few MiB).
const MAX_FILE: u64 = 64 << 20;

/// The first-boot command that installs the staged drivers.
pub const PNPUTIL: &str = "pnputil -i -a %SystemRoot%\\Drivers\\VirtIO\\*.inf";

/// virtio-win's directory for a Windows version.
pub fn os_dir(v: &Version) -> Option<&'static str> {
    let server = v
        .installation_type
        .as_deref()
        .is_some_and(|t| t.to_ascii_lowercase().starts_with("server"))
        || v.product_name.to_ascii_lowercase().contains("server");
    let build: u32 = v.build.as_deref().and_then(|b| b.parse().ok()).unwrap_or(0);
    Some(match ((v.major, v.minor), server) {
        ((6, 1), false) => "w7",
        ((6, 1), true) => "2k8R2",
        ((6, 2), false) => "w8",
        ((6, 2), true) => "2k12",
        ((6, 3), false) => "w8.1",
        ((6, 3), true) => "2k12R2",
        ((10, 0), false) if build >= 22000 => "w11",
        ((10, 0), false) => "w10",
        ((10, 0), true) if build >= 26100 => "2k25",
        ((10, 0), true) if build >= 20348 => "2k22",
        ((10, 0), true) if build >= 17763 => "2k19",
        ((10, 0), true) => "2k16",
        _ => return None,
    })
}

/// The entry of `dir` named `name` without regard to case.
fn entry_nocase(dir: &Path, name: &str) -> Result<Option<PathBuf>, VirtioError> {
    let read = std::fs::read_dir(dir).map_err(|source| VirtioError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    for e in read.flatten() {
        if e.file_name().to_string_lossy().eq_ignore_ascii_case(name) {
            return Ok(Some(e.path()));
        }
    }
    Ok(None)
}

/// Whether `dir` is laid out as a virtio-win tree: it has a directory of one of the
/// drivers installed.
pub fn has_driver_dirs(dir: &Path) -> bool {
    DRIVERS.iter().any(|d| {
        entry_nocase(dir, d)
            .ok()
            .flatten()
            .is_some_and(|p| p.is_dir())
    })
}

/// The regular files of `dir`, sorted.
fn files(dir: &Path) -> Result<Vec<PathBuf>, VirtioError> {
    let read = std::fs::read_dir(dir).map_err(|source| VirtioError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut out: Vec<PathBuf> = read
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path())
        .collect();
    out.sort();
    Ok(out)
}

fn has_ext(p: &Path, ext: &str) -> bool {
    p.extension()
        .is_some_and(|e| e.to_string_lossy().eq_ignore_ascii_case(ext))
}

/// Whether the `.inf` text declares models for `decoration` (`NTamd64`): a line of its
/// `[Manufacturer]` section names it.
pub fn inf_targets(inf: &str, decoration: &str) -> bool {
    let mut in_manufacturer = false;
    for line in inf.lines() {
        let line = line.split(';').next().unwrap_or("").trim();
        if line.starts_with('[') {
            in_manufacturer = line.eq_ignore_ascii_case("[Manufacturer]");
            continue;
        }
        if in_manufacturer
            && line.split([',', '=']).any(|t| {
                t.trim()
                    .to_ascii_lowercase()
                    .starts_with(&decoration.to_ascii_lowercase())
            })
        {
            return true;
        }
    }
    false
}

/// The text of an `.inf` file: UTF-16LE after its byte order mark (as many are
/// shipped), else UTF-8 (ANSI text read as UTF-8: the section names are ASCII).
pub fn inf_text(bytes: &[u8]) -> String {
    match bytes {
        [0xff, 0xfe, rest @ ..] => {
            let units: Vec<u16> = rest
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16_lossy(&units)
        }
        _ => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// One driver chosen for the guest: its name and the host files to install.
#[derive(Debug, Clone)]
pub struct Driver {
    pub name: &'static str,
    pub files: Vec<PathBuf>,
}

/// The drivers of `dir` for virtio-win's `os` directory and the architecture whose
/// `.inf` decoration is `decoration` (`NTamd64`).
pub fn choose(dir: &Path, os: &str, decoration: &str) -> Result<Vec<Driver>, VirtioError> {
    let arch = match decoration.to_ascii_lowercase().as_str() {
        "ntx86" => "x86",
        "ntarm64" => "ARM64",
        _ => "amd64",
    };
    let mut out = Vec::new();
    for &name in DRIVERS {
        let Some(d) = entry_nocase(dir, name)? else {
            continue;
        };
        let Some(d) = entry_nocase(&d, os)? else {
            continue;
        };
        let Some(d) = entry_nocase(&d, arch)? else {
            continue;
        };
        let files = files(&d)?;
        let mut targets = false;
        for inf in files.iter().filter(|f| has_ext(f, "inf")) {
            let bytes = read_limited(inf)?;
            targets |= inf_targets(&inf_text(&bytes), decoration);
        }
        if targets {
            out.push(Driver { name, files });
        }
    }
    Ok(out)
}

fn read_limited(path: &Path) -> Result<Vec<u8>, VirtioError> {
    let err = |source| VirtioError::Read {
        path: path.to_path_buf(),
        source,
    };
    let size = std::fs::metadata(path).map_err(err)?.len();
    if size > MAX_FILE {
        return Err(VirtioError::TooBig {
            path: path.to_path_buf(),
            size,
        });
    }
    std::fs::read(path).map_err(err)
}

/// The drivers of a virtio-win directory chosen for one guest, before anything is
/// written.
#[derive(Debug, Clone)]
pub struct Plan {
    /// virtio-win's directory for the guest's version (`w10`).
    pub os: &'static str,
    /// The `.inf` decoration of the guest's architecture (`NTamd64`).
    pub decoration: &'static str,
    /// The drivers to install, never empty.
    pub drivers: Vec<Driver>,
    /// The drivers of [`DRIVERS`] whose `.sys` file the guest has already (in
    /// `System32\drivers` or staged for pnputil).
    pub present: Vec<&'static str>,
}

/// The `.sys` file of each of [`DRIVERS`].
const SYS_FILES: &[(&str, &str)] = &[
    ("viostor", "viostor.sys"),
    ("vioscsi", "vioscsi.sys"),
    ("NetKVM", "netkvm.sys"),
    ("Balloon", "balloon.sys"),
    ("vioserial", "vioser.sys"),
];

/// The drivers of [`DRIVERS`] the guest of `ctx` has already, by their `.sys` files.
fn present(ctx: &mut SysprepContext<'_>) -> Result<Vec<&'static str>, SysprepError> {
    let Some(root) = ctx.windows_root() else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (name, sys) in SYS_FILES {
        if ctx.is_file(&root.join("System32/drivers").join(sys))?
            || ctx.is_file(&root.join("Drivers/VirtIO").join(sys))?
        {
            out.push(*name);
        }
    }
    Ok(out)
}

/// Choose the drivers of `dir` for the guest of `ctx` (its `version` and the
/// architecture its registry names), writing nothing.
pub fn plan(
    ctx: &mut SysprepContext<'_>,
    dir: &Path,
    version: &Version,
) -> Result<Plan, VirtioError> {
    let os = os_dir(version).ok_or_else(|| VirtioError::UnknownVersion {
        product: version.product_name.clone(),
        major: version.major,
        minor: version.minor,
    })?;
    let decoration = match guest_arch(ctx)?.as_deref() {
        None => {
            ctx.note("no PROCESSOR_ARCHITECTURE in the registry: taking amd64");
            "NTamd64"
        }
        Some(a) if a.eq_ignore_ascii_case("AMD64") => "NTamd64",
        Some(a) if a.eq_ignore_ascii_case("x86") => "NTx86",
        Some(a) if a.eq_ignore_ascii_case("ARM64") => "NTarm64",
        Some(a) => {
            return Err(VirtioError::NoDrivers {
                dir: dir.to_path_buf(),
                what: format!("{os}, processor architecture {a:?}"),
            })
        }
    };
    let drivers = choose(dir, os, decoration)?;
    if drivers.is_empty() {
        return Err(VirtioError::NoDrivers {
            dir: dir.to_path_buf(),
            what: format!("{os}, {decoration}"),
        });
    }
    let present = present(ctx)?;
    Ok(Plan {
        os,
        decoration,
        drivers,
        present,
    })
}

/// Install the drivers of `dir` fitting `version` into the guest of `ctx`.
pub fn install(
    ctx: &mut SysprepContext<'_>,
    dir: &Path,
    version: &Version,
) -> Result<Changes, VirtioError> {
    let Plan {
        os,
        decoration,
        drivers,
        ..
    } = plan(ctx, dir, version)?;
    let Some(root) = ctx.windows_root() else {
        return Err(VirtioError::NoDrivers {
            dir: dir.to_path_buf(),
            what: "no Windows system root in the guest".into(),
        });
    };
    let staging = root.join("Drivers/VirtIO");
    ctx.mkdir_all(&staging)?;
    let sys_drivers = root.join("System32/drivers");
    ctx.mkdir_all(&sys_drivers)?;
    let mut rest = false;
    for d in &drivers {
        snf_core::cancel::check().map_err(SysprepError::from)?;
        let storage = STORAGE.iter().find(|(n, _)| *n == d.name);
        for f in &d.files {
            let data = read_limited(f)?;
            let name = f.file_name().unwrap_or_default();
            let attr = || snf_guestfs::NewNode::root(0o644);
            ctx.write(&staging.join(name), &data, attr())?;
            if storage.is_some() && has_ext(f, "sys") {
                ctx.write(&sys_drivers.join(name), &data, attr())?;
            }
        }
        match storage {
            Some((service, ids)) => storage_keys(ctx, service, ids, version)?,
            None => rest = true,
        }
    }
    if rest {
        crate::sysprep::ops::windows::run_at_first_boot(ctx, PNPUTIL)?;
    }
    let names: Vec<&str> = drivers.iter().map(|d| d.name).collect();
    ctx.note(format!(
        "VirtIO drivers for {os} ({decoration}): {}",
        names.join(", ")
    ));
    Ok(ctx.finish())
}

/// The guest's `PROCESSOR_ARCHITECTURE` (`AMD64`, `x86`, `ARM64`), from the system
/// environment of its current control set.
fn guest_arch(ctx: &mut SysprepContext<'_>) -> Result<Option<String>, SysprepError> {
    let mut arch = None;
    ctx.edit_registry(HiveName::System, |h, _| {
        let cs = control_set_or_default(h)?;
        let env = format!("{cs}\\Control\\Session Manager\\Environment");
        if let Some(key) = h.find_path(&env)? {
            if let Some(v) = h.value(key, "PROCESSOR_ARCHITECTURE")? {
                arch = h.value_string(v).ok();
            }
        }
        Ok(())
    })?;
    Ok(arch)
}

/// The service key of a boot-critical storage driver and, where Windows still has a
/// critical device database (7 and older), its PCI ids bound to it.
fn storage_keys(
    ctx: &mut SysprepContext<'_>,
    service: &str,
    ids: &[&str],
    version: &Version,
) -> Result<(), SysprepError> {
    let key = format!("{{cs}}\\Services\\{service}");
    let values = [
        ("Type", RegValue::Dword(1)),
        ("Start", RegValue::Dword(0)),
        ("ErrorControl", RegValue::Dword(1)),
        (
            "ImagePath",
            RegValue::ExpandSz(format!("system32\\drivers\\{service}.sys")),
        ),
        ("Group", RegValue::Sz("SCSI miniport".into())),
    ];
    for (name, value) in values {
        let shown = format!("{value:?}");
        crate::sysprep::ops::windows::set_value(ctx, HiveName::System, &key, name, value, &shown)?;
    }
    if (version.major, version.minor) <= (6, 1) {
        for id in ids {
            let key = format!("{{cs}}\\Control\\CriticalDeviceDatabase\\pci#ven_1af4&dev_{id}");
            for (name, value) in [
                ("Service", RegValue::Sz(service.into())),
                ("ClassGUID", RegValue::Sz(SCSI_ADAPTER_CLASS.into())),
            ] {
                let shown = format!("{value:?}");
                crate::sysprep::ops::windows::set_value(
                    ctx,
                    HiveName::System,
                    &key,
                    name,
                    value,
                    &shown,
                )?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(major: u32, minor: u32, build: &str, kind: &str) -> Version {
        Version {
            product_name: "Windows".into(),
            major,
            minor,
            build: Some(build.into()),
            installation_type: Some(kind.into()),
            image_state: None,
        }
    }

    #[test]
    fn os_dirs_follow_version_and_edition() {
        assert_eq!(os_dir(&v(6, 1, "7601", "Client")), Some("w7"));
        assert_eq!(os_dir(&v(6, 3, "9600", "Server")), Some("2k12R2"));
        assert_eq!(os_dir(&v(10, 0, "19045", "Client")), Some("w10"));
        assert_eq!(os_dir(&v(10, 0, "22631", "Client")), Some("w11"));
        assert_eq!(os_dir(&v(10, 0, "14393", "Server")), Some("2k16"));
        assert_eq!(os_dir(&v(10, 0, "17763", "Server Core")), Some("2k19"));
        assert_eq!(os_dir(&v(10, 0, "20348", "Server")), Some("2k22"));
        assert_eq!(os_dir(&v(6, 0, "6002", "Client")), None);
    }

    #[test]
    fn the_manufacturer_section_tells_the_architecture() {
        let inf = "[Version]\nSignature=\"$WINDOWS NT$\"\n\n[Manufacturer]\n\
                   %RHEL% = RHEL, NTamd64.10.0 ; comment\n\n[RHEL.NTamd64.10.0]\n";
        assert!(inf_targets(inf, "NTamd64"));
        assert!(!inf_targets(inf, "NTx86"));
        assert!(!inf_targets("[Strings]\nNTamd64 = x\n", "NTamd64"));
        let mut utf16 = vec![0xff, 0xfe];
        utf16.extend(inf.encode_utf16().flat_map(u16::to_le_bytes));
        assert!(inf_targets(&inf_text(&utf16), "NTamd64"));
    }
}
