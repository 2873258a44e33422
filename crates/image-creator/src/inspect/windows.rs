//! Windows guests: the system root, the registry hives (SOFTWARE, SYSTEM, SAM) read and
//! written through libhivex, and what inspection and the metadata take from them.
//!
//! libhivex needs a file, so each hive is copied from the guest into the scratch
//! directory (the run's work directory), opened there, and copied back only when it was
//! changed. Everything read from a hive is guest input: counts and sizes are bounded by
//! the binding, values of the wrong type or shape are treated as missing, with a
//! warning where the original warns.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use hivex::Hive;
use snf_core::Reporter;
use snf_guestfs::assemble::{find_nocase, Opener, ProbedPartition};
use snf_guestfs::GuestFs;

/// The largest hive copied out of a guest: real SOFTWARE hives reach a few hundred MiB.
pub const MAX_HIVE: u64 = 2 << 30;

/// `ImageState` values of a generalized image (what snf-image deploys).
const GENERALIZED: [&str; 2] = [
    "IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE",
    "IMAGE_STATE_GENERALIZE_RESEAL_TO_AUDIT",
];

/// The oldest Windows supported: NT 6.1 (Windows 7, Server 2008 R2).
pub const OLDEST: (u32, u32) = (6, 1);

static SCRATCH: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Where hive copies are made (the run's work directory); `None` for the system's
/// temporary directory.
pub fn set_scratch_dir(dir: Option<&Path>) {
    if let Ok(mut s) = SCRATCH.lock() {
        *s = dir.map(Path::to_path_buf);
    }
}

/// The scratch directory; the system's temporary directory once the one set is gone
/// (the setting is process-wide and outlives the session that made it).
fn scratch_dir() -> PathBuf {
    SCRATCH
        .lock()
        .ok()
        .and_then(|s| s.clone())
        .filter(|d| d.is_dir())
        .unwrap_or_else(std::env::temp_dir)
}

/// A failure to reach or use a hive of the guest.
#[derive(Debug, thiserror::Error)]
pub enum WindowsError {
    #[error("Windows registry {name}: not found under {}", .root.display())]
    NoHive { name: &'static str, root: PathBuf },
    #[error("Windows registry {}: {size} bytes, more than the {MAX_HIVE} allowed", .path.display())]
    HiveTooLarge { path: PathBuf, size: u64 },
    #[error("Windows registry {}: {source}", .path.display())]
    Guest {
        path: PathBuf,
        #[source]
        source: snf_guestfs::Error,
    },
    #[error("Windows registry {}: scratch copy: {source}", .path.display())]
    Scratch {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("Windows registry {}: not a valid hive: {source}", .path.display())]
    BadHive {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Hive(#[from] hivex::Error),
    #[error(transparent)]
    Cancelled(#[from] snf_core::cancel::Cancelled),
}

/// One of the three hives inspection reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HiveName {
    Software,
    System,
    Sam,
}

impl HiveName {
    /// The file name under `System32\config`.
    pub fn file(self) -> &'static str {
        match self {
            HiveName::Software => "SOFTWARE",
            HiveName::System => "SYSTEM",
            HiveName::Sam => "SAM",
        }
    }
}

/// A hive of the guest, copied into the scratch directory and open there. The copy is
/// deleted on drop; [`GuestHive::write_back`] commits the changes and copies it back.
pub struct GuestHive {
    hive: Hive,
    guest_path: PathBuf,
    // Declared after `hive`, so the file outlives the handle on drop.
    _copy: tempfile::NamedTempFile,
}

impl GuestHive {
    /// Copy hive `name` of the Windows system at `system_root` out of `g` and open it
    /// (for writing when `writable`).
    pub fn open(
        g: &mut GuestFs,
        system_root: &Path,
        name: HiveName,
        writable: bool,
    ) -> Result<GuestHive, WindowsError> {
        let rel = system_root
            .strip_prefix("/")
            .unwrap_or(system_root)
            .to_string_lossy()
            .into_owned();
        let mut parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
        parts.extend(["System32", "config", name.file()]);
        let guest_path = find_nocase(g, &parts).ok_or_else(|| WindowsError::NoHive {
            name: name.file(),
            root: system_root.to_path_buf(),
        })?;
        let gerr = |source| WindowsError::Guest {
            path: guest_path.clone(),
            source,
        };
        let size = g.stat(&guest_path).map_err(gerr)?.size;
        if size > MAX_HIVE {
            return Err(WindowsError::HiveTooLarge {
                path: guest_path,
                size,
            });
        }
        let serr = |source| WindowsError::Scratch {
            path: guest_path.clone(),
            source,
        };
        let prefix = format!("hive-{}-", name.file());
        let mut copy = tempfile::Builder::new()
            .prefix(&prefix)
            .tempfile_in(scratch_dir())
            .or_else(|_| {
                tempfile::Builder::new()
                    .prefix(&prefix)
                    .tempfile_in(std::env::temp_dir())
            })
            .map_err(serr)?;
        let mut buf = vec![0u8; 1 << 20];
        let mut offset = 0u64;
        while offset < size {
            snf_core::cancel::check()?;
            let want = usize::try_from((size - offset).min(buf.len() as u64)).unwrap_or(0);
            let n = g
                .read_at(&guest_path, offset, &mut buf[..want])
                .map_err(gerr)?;
            if n == 0 {
                break;
            }
            copy.write_all(&buf[..n]).map_err(serr)?;
            offset += n as u64;
        }
        copy.flush().map_err(serr)?;
        let hive = if writable {
            Hive::open_writable(copy.path())
        } else {
            Hive::open(copy.path())
        };
        // The scratch copy's name means nothing to the user: name the guest's file.
        let hive = hive.map_err(|e| match e {
            hivex::Error::Open { source, .. } => WindowsError::BadHive {
                path: guest_path.clone(),
                source,
            },
            other => WindowsError::Hive(other),
        })?;
        let mut hive = hive;
        hive.set_shown_name(&guest_path);
        Ok(GuestHive {
            hive,
            guest_path,
            _copy: copy,
        })
    }

    /// The open hive.
    pub fn hive(&self) -> &Hive {
        &self.hive
    }

    /// The open hive, for changes.
    pub fn hive_mut(&mut self) -> &mut Hive {
        &mut self.hive
    }

    /// The hive's path in the guest.
    pub fn guest_path(&self) -> &Path {
        &self.guest_path
    }

    /// Commit the changes to the copy and copy it back over the guest's hive.
    pub fn write_back(mut self, g: &mut GuestFs) -> Result<(), WindowsError> {
        self.hive.commit()?;
        let serr = |source| WindowsError::Scratch {
            path: self.guest_path.clone(),
            source,
        };
        let gerr = |source| WindowsError::Guest {
            path: self.guest_path.clone(),
            source,
        };
        let mut file = std::fs::File::open(self.hive.path()).map_err(serr)?;
        let mut buf = vec![0u8; 1 << 20];
        let mut offset = 0u64;
        loop {
            let n = file.read(&mut buf).map_err(serr)?;
            if n == 0 {
                break;
            }
            g.write_at(&self.guest_path, offset, &buf[..n])
                .map_err(gerr)?;
            offset += n as u64;
        }
        g.truncate(&self.guest_path, offset).map_err(gerr)?;
        Ok(())
    }
}

/// The Windows system root of the guest (`/Windows`, in the guest's own case), when it
/// holds `System32/config/SOFTWARE`.
pub fn system_root(g: &mut GuestFs) -> Option<PathBuf> {
    let software = find_nocase(g, &["Windows", "System32", "config", "SOFTWARE"])?;
    software.ancestors().nth(3).map(Path::to_path_buf)
}

/// What the SOFTWARE hive says about the system.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Version {
    pub product_name: String,
    pub major: u32,
    pub minor: u32,
    /// `CurrentBuild` (`CurrentBuildNumber` on older systems).
    pub build: Option<String>,
    /// `Client`, `Server`, `Server Core` ...
    pub installation_type: Option<String>,
    /// `Setup\State` `ImageState`, if recorded.
    pub image_state: Option<String>,
}

impl Version {
    /// The `KERNEL` property: `Windows NT major.minor`.
    pub fn kernel(&self) -> String {
        format!("Windows NT {}.{}", self.major, self.minor)
    }

    /// Whether Sysprep generalized the image (what snf-image requires to deploy it).
    pub fn generalized(&self) -> bool {
        self.image_state
            .as_deref()
            .is_some_and(|s| GENERALIZED.contains(&s))
    }
}

fn string_of(h: &Hive, node: hivex::Node, name: &str) -> Option<String> {
    let v = h.value(node, name).ok()??;
    h.value_string(v).ok()
}

fn dword_of(h: &Hive, node: hivex::Node, name: &str) -> Option<u32> {
    let v = h.value(node, name).ok()??;
    h.value_dword(v).ok()
}

/// Read the version keys of SOFTWARE.
pub fn read_version(software: &Hive) -> Result<Version, hivex::Error> {
    let mut out = Version::default();
    if let Some(cv) = software.find_path("Microsoft\\Windows NT\\CurrentVersion")? {
        out.product_name = string_of(software, cv, "ProductName").unwrap_or_default();
        let modern = dword_of(software, cv, "CurrentMajorVersionNumber")
            .map(|major| (major, dword_of(software, cv, "CurrentMinorVersionNumber")));
        match modern {
            Some((major, minor)) => {
                out.major = major;
                out.minor = minor.unwrap_or(0);
            }
            None => {
                if let Some((major, minor)) = string_of(software, cv, "CurrentVersion")
                    .as_deref()
                    .and_then(super::detect::parse_version)
                {
                    out.major = major;
                    out.minor = minor;
                }
            }
        }
        out.build = string_of(software, cv, "CurrentBuild")
            .or_else(|| string_of(software, cv, "CurrentBuildNumber"));
        out.installation_type = string_of(software, cv, "InstallationType");
    }
    if let Some(state) = software.find_path("Microsoft\\Windows\\CurrentVersion\\Setup\\State")? {
        out.image_state = string_of(software, state, "ImageState");
    }
    if out.product_name.is_empty() {
        out.product_name = "Windows".into();
    }
    Ok(out)
}

/// The current control set's key name (`ControlSet001` ...), from `Select\Current`.
pub fn current_control_set(system: &Hive) -> Result<Option<String>, hivex::Error> {
    let Some(select) = system.find_path("Select")? else {
        return Ok(None);
    };
    Ok(dword_of(system, select, "Current")
        .filter(|n| (1..=999).contains(n))
        .map(|n| format!("ControlSet{n:03}")))
}

/// Set value `name` of the key at `key_path` (from the root; missing keys are added) to
/// `value` unless it holds exactly that already. Returns whether anything changed.
pub fn set_value_if_changed(
    h: &mut Hive,
    key_path: &str,
    name: &str,
    value: &hivex::RegValue,
) -> Result<bool, hivex::Error> {
    let (t, data) = value.encode();
    if let Some(key) = h.find_path(key_path)? {
        if let Some(v) = h.value(key, name)? {
            let (old_t, old) = h.value_data(v)?;
            if old_t.raw() == t && old == data {
                return Ok(false);
            }
        }
    }
    let key = h.ensure_path(key_path)?;
    h.set_value(key, name, value)?;
    Ok(true)
}

/// The current control set of SYSTEM, `ControlSet001` when `Select` does not say.
pub fn control_set_or_default(system: &Hive) -> Result<String, hivex::Error> {
    Ok(current_control_set(system)?.unwrap_or_else(|| "ControlSet001".into()))
}

/// Whether and where Remote Desktop listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RemoteDesktop {
    /// SYSTEM could not be read.
    #[default]
    Unknown,
    /// `fDenyTSConnections` is not 0 (or missing: Windows' default denies).
    Denied,
    /// Allowed, on this port.
    Allowed(u32),
}

/// Remote Desktop as the Terminal Server keys of `control_set` say (a port out of range
/// or missing is the default 3389).
pub fn remote_desktop(system: &Hive, control_set: &str) -> Result<RemoteDesktop, hivex::Error> {
    let ts = format!("{control_set}\\Control\\Terminal Server");
    let Some(key) = system.find_path(&ts)? else {
        return Ok(RemoteDesktop::Denied);
    };
    if dword_of(system, key, "fDenyTSConnections").unwrap_or(1) != 0 {
        return Ok(RemoteDesktop::Denied);
    }
    let port = system
        .find(key, "WinStations\\RDP-Tcp")?
        .and_then(|k| dword_of(system, k, "PortNumber"))
        .filter(|p| (1..=65535).contains(p))
        .unwrap_or(3389);
    Ok(RemoteDesktop::Allowed(port))
}

/// One account of the SAM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SamAccount {
    pub name: String,
    pub rid: u32,
    pub disabled: bool,
}

/// Offset of the account control flags in a user's `F` value; bit 0 is "disabled".
const F_ACB: usize = 0x38;

/// The accounts of the SAM, in the hive's order (the name of each comes from
/// `Names\<name>`, whose default value's type is the RID; the flags from
/// `Users\<RID>` `F`). Accounts whose keys are malformed are named in a warning and
/// left out.
pub fn sam_accounts(sam: &Hive, reporter: &dyn Reporter) -> Result<Vec<SamAccount>, hivex::Error> {
    let Some(users) = sam.find_path("SAM\\Domains\\Account\\Users")? else {
        return Ok(Vec::new());
    };
    let Some(names) = sam.child(users, "Names")? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for node in sam.children(names)? {
        let name = sam.node_name(node)?;
        let Some(default) = sam.value(node, "")? else {
            reporter.warn(&format!("SAM account {name:?}: no RID, ignored"));
            continue;
        };
        let rid = sam.value_type(default)?.0.raw();
        let f = sam
            .child(users, &format!("{rid:08X}"))?
            .and_then(|k| sam.value(k, "F").ok().flatten())
            .and_then(|v| sam.value_binary(v).ok());
        let Some(flags) = f.as_deref().and_then(|f| f.get(F_ACB)) else {
            reporter.warn(&format!(
                "SAM account {name:?} (RID {rid}): no account flags, ignored"
            ));
            continue;
        };
        out.push(SamAccount {
            name,
            rid,
            disabled: flags & 1 != 0,
        });
    }
    Ok(out)
}

/// Everything inspection learnt about a Windows guest.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WindowsInfo {
    /// The system root in the guest (`/Windows`).
    pub system_root: PathBuf,
    pub version: Version,
    /// `ControlSet001` ...
    pub control_set: Option<String>,
    /// Every SAM account.
    pub accounts: Vec<SamAccount>,
    /// Remote Desktop.
    pub remote_desktop: RemoteDesktop,
    /// The partition holding the boot manager: BIOS, the System Reserved partition
    /// (`bootmgr`, `Boot\BCD`); UEFI, the ESP (`EFI\Microsoft\Boot\bootmgfw.efi`). The
    /// Windows partition itself when it holds them.
    pub system_partition: Option<u32>,
    /// The partition holding the system root (`C:`, the boot partition in Microsoft's
    /// terms).
    pub boot_partition: Option<u32>,
}

impl WindowsInfo {
    /// The names of the enabled accounts (the `USERS` property).
    pub fn enabled_users(&self) -> Vec<String> {
        self.accounts
            .iter()
            .filter(|a| !a.disabled)
            .map(|a| a.name.clone())
            .collect()
    }

    /// Why uploading or registering this image needs `-f` (or a confirmation): it was
    /// not generalized with Microsoft Sysprep, so every VM made from it would share one
    /// machine identity, and snf-image refuses to customize it. `None` when it was.
    pub fn publish_warning(&self) -> Option<String> {
        if self.version.generalized() {
            return None;
        }
        let state = self
            .version
            .image_state
            .as_deref()
            .unwrap_or("no ImageState recorded");
        Some(format!(
            "this Windows image was not generalized with Microsoft Sysprep ({state}): \
             every VM deployed from it would share one machine identity, and snf-image \
             refuses to customize it"
        ))
    }
}

/// Inspect the Windows system of `g`; unreadable SYSTEM or SAM hives are warned about
/// and leave their part empty.
pub fn inspect(g: &mut GuestFs, reporter: &dyn Reporter) -> Result<WindowsInfo, WindowsError> {
    let system_root = system_root(g).ok_or_else(|| WindowsError::NoHive {
        name: "SOFTWARE",
        root: PathBuf::from("/Windows"),
    })?;
    let software = GuestHive::open(g, &system_root, HiveName::Software, false)?;
    let version = read_version(software.hive())?;
    drop(software);
    let mut info = WindowsInfo {
        system_root: system_root.clone(),
        version,
        ..Default::default()
    };
    // A broken SYSTEM or SAM costs its part of the metadata, not the inspection.
    let system = GuestHive::open(g, &system_root, HiveName::System, false).and_then(|system| {
        let h = system.hive();
        let cs = control_set_or_default(h)?;
        Ok((cs.clone(), remote_desktop(h, &cs)?))
    });
    match system {
        Ok((cs, rdp)) => {
            info.control_set = Some(cs);
            info.remote_desktop = rdp;
        }
        Err(e) => reporter.warn(&format!("{e}: no Remote Desktop information")),
    }
    let sam = GuestHive::open(g, &system_root, HiveName::Sam, false)
        .and_then(|sam| Ok(sam_accounts(sam.hive(), reporter)?));
    match sam {
        Ok(accounts) => info.accounts = accounts,
        Err(e) => reporter.warn(&format!("{e}: no user accounts")),
    }
    Ok(info)
}

/// The partition holding the Windows boot manager, looked for on every partition that
/// has a filesystem the backends read (the root's own tree `root` first).
pub fn system_partition(
    image: &Path,
    partitions: &[ProbedPartition],
    root: Option<u32>,
    root_tree: &mut GuestFs,
    opener: &dyn Opener,
) -> Option<u32> {
    fn has_boot_manager(g: &mut GuestFs) -> bool {
        find_nocase(g, &["bootmgr"]).is_some()
            || find_nocase(g, &["EFI", "Microsoft", "Boot", "bootmgfw.efi"]).is_some()
    }
    if has_boot_manager(root_tree) {
        return root;
    }
    for p in partitions {
        if Some(p.desc.number) == root || p.desc.lv.is_some() || p.desc.unusable.is_some() {
            continue;
        }
        let Ok(fs) = opener.open(image, &p.desc, &p.probe, false) else {
            continue;
        };
        let mut g = GuestFs::new(fs, p.desc.name());
        let found = has_boot_manager(&mut g);
        let _ = g.close();
        if found {
            return Some(p.desc.number);
        }
    }
    None
}

/// The `REMOTE_CONNECTION` value for RDP on `port` and `users`.
pub fn remote_connection(port: u32, users: &[String]) -> String {
    if users.is_empty() {
        return format!("rdp:port={port}");
    }
    users
        .iter()
        .map(|u| format!("rdp:port={port},user={u}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_connection_lists_each_user() {
        assert_eq!(remote_connection(3389, &[]), "rdp:port=3389");
        assert_eq!(
            remote_connection(3390, &["Administrator".into(), "bob".into()]),
            "rdp:port=3390,user=Administrator rdp:port=3390,user=bob"
        );
    }

    #[test]
    fn only_generalized_states_deploy() {
        let mut v = Version::default();
        assert!(!v.generalized());
        v.image_state = Some("IMAGE_STATE_COMPLETE".into());
        assert!(!v.generalized());
        v.image_state = Some("IMAGE_STATE_SPECIALIZE_RESEAL_TO_OOBE".into());
        assert!(!v.generalized());
        v.image_state = Some("IMAGE_STATE_GENERALIZE_RESEAL_TO_AUDIT".into());
        assert!(v.generalized());
    }
}
