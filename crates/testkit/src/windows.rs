//! Windows-shaped guests for tests: registry hives made from `.reg` text, the
//! `Windows\System32\config` tree, and disks laid out as Windows installs them (BIOS:
//! a 100 MiB System Reserved partition before `C:`; UEFI: ESP, MSR, `C:`).
//!
//! No tool makes an empty hive, so [`empty_hive`] writes the smallest valid one by the
//! documented regf layout (base block, one hbin with the root key and its security
//! cell); `hivexregedit --merge` then fills it from text, so the hives carry exactly
//! what a test says.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::fixture::{require, run, sfdisk, sparse_file, MIB};

const BASE_BLOCK: usize = 0x1000;
const HBIN: usize = 0x1000;

fn put_u16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_le_bytes());
}

fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_i32(b: &mut [u8], off: usize, v: i32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

/// The bytes of a minimal valid hive whose root key is named `root_name` (ASCII).
pub fn empty_hive_bytes(root_name: &str) -> Vec<u8> {
    assert!(root_name.is_ascii() && root_name.len() < 256);
    let mut f = vec![0u8; BASE_BLOCK + HBIN];
    // Cells of the first hbin, offsets relative to its start (hive offsets).
    let nk = 0x20usize;
    let nk_len = (0x50 + root_name.len() + 7) & !7;
    let sk = nk + nk_len;
    // A self-relative security descriptor with no owner, group or ACLs.
    let sd_len = 20usize;
    let sk_len = (0x18 + sd_len + 7) & !7;
    let free = sk + sk_len;

    let b = &mut f[..BASE_BLOCK];
    b[0..4].copy_from_slice(b"regf");
    put_u32(b, 0x04, 1); // primary sequence number
    put_u32(b, 0x08, 1); // secondary: equal, so the hive is clean
    put_u32(b, 0x14, 1); // major version
    put_u32(b, 0x18, 3); // minor version
    put_u32(b, 0x1c, 0); // primary file
    put_u32(b, 0x20, 1); // direct memory load format
    put_u32(b, 0x24, nk as u32); // root cell offset
    put_u32(b, 0x28, HBIN as u32); // hive bins data size
    put_u32(b, 0x2c, 1); // clustering factor
    let sum = (0..0x1fc).step_by(4).fold(0u32, |acc, o| {
        acc ^ u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
    });
    let sum = match sum {
        0xffff_ffff => 0xffff_fffe,
        0 => 1,
        s => s,
    };
    put_u32(b, 0x1fc, sum);

    let h = &mut f[BASE_BLOCK..];
    h[0..4].copy_from_slice(b"hbin");
    put_u32(h, 0x04, 0); // offset of this hbin
    put_u32(h, 0x08, HBIN as u32);

    put_i32(h, nk, -(nk_len as i32));
    let k = nk + 4;
    h[k..k + 2].copy_from_slice(b"nk");
    put_u16(h, k + 0x02, 0x2c); // hive entry | no delete | compressed (ASCII) name
    put_u32(h, k + 0x10, 0xffff_ffff); // parent
    put_u32(h, k + 0x1c, 0xffff_ffff); // subkey list
    put_u32(h, k + 0x20, 0xffff_ffff); // volatile subkey list
    put_u32(h, k + 0x28, 0xffff_ffff); // value list
    put_u32(h, k + 0x2c, sk as u32); // security cell
    put_u32(h, k + 0x30, 0xffff_ffff); // class name
    put_u16(h, k + 0x48, root_name.len() as u16);
    h[k + 0x4c..k + 0x4c + root_name.len()].copy_from_slice(root_name.as_bytes());

    put_i32(h, sk, -(sk_len as i32));
    let s = sk + 4;
    h[s..s + 2].copy_from_slice(b"sk");
    put_u32(h, s + 0x04, sk as u32); // the only sk: its own next and previous
    put_u32(h, s + 0x08, sk as u32);
    put_u32(h, s + 0x0c, 1); // referenced by the root
    put_u32(h, s + 0x10, sd_len as u32);
    h[s + 0x14] = 1; // revision
    put_u16(h, s + 0x16, 0x8000); // self-relative

    put_i32(h, free, (HBIN - free) as i32);
    f
}

/// Write a minimal valid hive with root key `root_name` to `path`.
pub fn empty_hive(path: &Path, root_name: &str) {
    std::fs::write(path, empty_hive_bytes(root_name))
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Merge the `.reg` text `reg` (keys written below `prefix`, e.g.
/// `HKEY_LOCAL_MACHINE\SOFTWARE`) into the hive file `hive` with `hivexregedit`.
pub fn merge_reg(hive: &Path, prefix: &str, reg: &str) {
    require("hivexregedit");
    let file = hive.with_extension("reg");
    let text = format!(
        "Windows Registry Editor Version 5.00\n\n{}",
        with_parents(prefix, reg)
    );
    std::fs::write(&file, text).unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
    run(Command::new("hivexregedit")
        .args(["--merge", "--prefix", prefix])
        .arg(hive)
        .arg(&file));
    let _ = std::fs::remove_file(&file);
}

/// `reg` with an empty section added before each key for every missing ancestor below
/// `prefix` (hivexregedit creates a key only when its parent exists).
fn with_parents(prefix: &str, reg: &str) -> String {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = String::new();
    for line in reg.lines() {
        if let Some(key) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let rel = key.strip_prefix(prefix).unwrap_or(key);
            let parts: Vec<&str> = rel.split('\\').filter(|p| !p.is_empty()).collect();
            for n in 1..parts.len() {
                let parent = format!("{prefix}\\{}", parts[..n].join("\\"));
                if seen.insert(parent.to_ascii_lowercase()) {
                    writeln!(out, "[{parent}]\n").unwrap();
                }
            }
            seen.insert(key.to_ascii_lowercase());
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// A hive at `path` made from nothing and `reg` (see [`merge_reg`]).
pub fn hive_from_reg(path: &Path, prefix: &str, reg: &str) {
    empty_hive(path, "ROOT");
    merge_reg(path, prefix, reg);
}

/// The value of `name` of `key` in `hive` as `hivexget` prints it.
pub fn hivexget(hive: &Path, key: &str, name: &str) -> String {
    require("hivexget");
    run(Command::new("hivexget").arg(hive).arg(key).arg(name))
        .trim_end_matches('\n')
        .to_string()
}

/// `hivexregedit --export` of `key` in `hive`, with `prefix` (the .reg text).
pub fn export(hive: &Path, prefix: &str, key: &str) -> String {
    require("hivexregedit");
    run(Command::new("hivexregedit")
        .args(["--export", "--prefix", prefix])
        .arg(hive)
        .arg(key))
}

/// How the version of a guest is recorded in SOFTWARE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// Only `CurrentVersion` `"major.minor"` (Windows 7 / 2008 R2 and older).
    Legacy(u32, u32),
    /// `CurrentMajorVersionNumber`/`CurrentMinorVersionNumber` DWORDs (Windows 10 and
    /// later), with `CurrentVersion` "6.3" beside them as Windows keeps it.
    Modern(u32, u32),
}

/// One SAM account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub rid: u32,
    pub disabled: bool,
}

impl Account {
    pub fn new(name: &str, rid: u32, disabled: bool) -> Account {
        Account {
            name: name.into(),
            rid,
            disabled,
        }
    }
}

/// What the registry of a Windows-shaped guest says.
#[derive(Debug, Clone)]
pub struct WindowsSpec {
    pub product_name: String,
    pub version: Version,
    pub build: String,
    pub installation_type: String,
    /// `ImageState`, `None` for no Setup\State key at all.
    pub image_state: Option<String>,
    pub deny_rdp: bool,
    pub rdp_port: u32,
    pub accounts: Vec<Account>,
    /// More `.reg` text merged after the above, per hive file name (`SOFTWARE`, `SYSTEM`,
    /// `SAM`): keys and values a test wants malformed.
    pub extra: Vec<(&'static str, String)>,
    /// Hive files replaced by bytes that are not a hive.
    pub garbage: Vec<&'static str>,
    /// Whether `Windows\Setup\Scripts` exists (Windows makes it only when a script is
    /// put there).
    pub setup_scripts: bool,
    /// More files of `C:`, `/`-separated paths from its root, with their contents
    /// (written after the defaults, so they replace them).
    pub files: Vec<(&'static str, Vec<u8>)>,
}

impl WindowsSpec {
    /// A generalized Windows 10 Pro with RDP allowed on 3389, an enabled Administrator
    /// and a disabled Guest.
    pub fn windows10() -> WindowsSpec {
        WindowsSpec {
            product_name: "Windows 10 Pro".into(),
            version: Version::Modern(10, 0),
            build: "19045".into(),
            installation_type: "Client".into(),
            image_state: Some("IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE".into()),
            deny_rdp: false,
            rdp_port: 3389,
            accounts: vec![
                Account::new("Administrator", 500, false),
                Account::new("Guest", 501, true),
            ],
            extra: Vec::new(),
            garbage: Vec::new(),
            setup_scripts: true,
            files: Vec::new(),
        }
    }

    /// [`WindowsSpec::windows10`] as Windows 7 Professional SP1 (build 7601) records
    /// itself: version 6.1 in `CurrentVersion` only.
    pub fn windows7() -> WindowsSpec {
        WindowsSpec {
            product_name: "Windows 7 Professional".into(),
            version: Version::Legacy(6, 1),
            build: "7601".into(),
            ..WindowsSpec::windows10()
        }
    }
}

fn hex_bytes(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// SOFTWARE's `.reg` text for `spec` (prefix `HKEY_LOCAL_MACHINE\SOFTWARE`).
pub fn software_reg(spec: &WindowsSpec) -> String {
    let mut r = String::new();
    let cv = "[HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion]";
    writeln!(r, "{cv}").unwrap();
    writeln!(r, "\"ProductName\"=\"{}\"", spec.product_name).unwrap();
    writeln!(r, "\"CurrentBuild\"=\"{}\"", spec.build).unwrap();
    writeln!(r, "\"CurrentBuildNumber\"=\"{}\"", spec.build).unwrap();
    writeln!(r, "\"InstallationType\"=\"{}\"", spec.installation_type).unwrap();
    writeln!(r, "\"SystemRoot\"=\"C:\\\\Windows\"").unwrap();
    match spec.version {
        Version::Legacy(major, minor) => {
            writeln!(r, "\"CurrentVersion\"=\"{major}.{minor}\"").unwrap();
        }
        Version::Modern(major, minor) => {
            writeln!(r, "\"CurrentVersion\"=\"6.3\"").unwrap();
            writeln!(r, "\"CurrentMajorVersionNumber\"=dword:{major:08x}").unwrap();
            writeln!(r, "\"CurrentMinorVersionNumber\"=dword:{minor:08x}").unwrap();
        }
    }
    r.push('\n');
    if let Some(state) = &spec.image_state {
        writeln!(
            r,
            "[HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Setup\\State]"
        )
        .unwrap();
        writeln!(r, "\"ImageState\"=\"{state}\"\n").unwrap();
    }
    r
}

/// SYSTEM's `.reg` text for `spec` (prefix `HKEY_LOCAL_MACHINE\SYSTEM`).
pub fn system_reg(spec: &WindowsSpec) -> String {
    let mut r = String::new();
    let p = "HKEY_LOCAL_MACHINE\\SYSTEM";
    writeln!(r, "[{p}\\Select]").unwrap();
    writeln!(
        r,
        "\"Current\"=dword:00000001\n\"Default\"=dword:00000001\n"
    )
    .unwrap();
    let ts = format!("{p}\\ControlSet001\\Control\\Terminal Server");
    writeln!(r, "[{ts}]").unwrap();
    writeln!(
        r,
        "\"fDenyTSConnections\"=dword:{:08x}\n",
        u32::from(spec.deny_rdp)
    )
    .unwrap();
    writeln!(r, "[{ts}\\WinStations\\RDP-Tcp]").unwrap();
    writeln!(r, "\"PortNumber\"=dword:{:08x}\n", spec.rdp_port).unwrap();
    writeln!(r, "[{p}\\ControlSet001\\Control\\TimeZoneInformation]").unwrap();
    writeln!(r, "\"TimeZoneKeyName\"=\"UTC\"\n").unwrap();
    writeln!(r, "[{p}\\ControlSet001\\Services\\Tcpip6\\Parameters]").unwrap();
    writeln!(r, "\"Dhcpv6DUID\"=hex:00,01,00,01\n").unwrap();
    writeln!(r, "[{p}\\Setup]").unwrap();
    writeln!(r, "\"SystemSetupInProgress\"=dword:00000000\n").unwrap();
    r
}

/// The `F` value of a SAM account: 0x50 bytes, the ACB flags (bit 0: disabled) at 0x38.
pub fn sam_f(rid: u32, disabled: bool) -> Vec<u8> {
    let mut f = vec![0u8; 0x50];
    f[0] = 2; // revision
    put_u32(&mut f, 0x30, rid);
    let acb: u16 = 0x0010 | u16::from(disabled); // normal account (+ disabled)
    put_u16(&mut f, 0x38, acb);
    f
}

/// The `V` value of a SAM account: the 0xCC-byte offset table, then the name (UTF-16LE)
/// whose offset (from 0xCC) and length are at 0x0C and 0x10.
pub fn sam_v(name: &str) -> Vec<u8> {
    let name16: Vec<u8> = name.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let mut v = vec![0u8; 0xcc];
    put_u32(&mut v, 0x0c, 0);
    put_u32(&mut v, 0x10, name16.len() as u32);
    v.extend_from_slice(&name16);
    while !v.len().is_multiple_of(4) {
        v.push(0);
    }
    v
}

/// SAM's `.reg` text for `spec` (prefix `HKEY_LOCAL_MACHINE\SAM`).
pub fn sam_reg(spec: &WindowsSpec) -> String {
    let mut r = String::new();
    let users = "HKEY_LOCAL_MACHINE\\SAM\\SAM\\Domains\\Account\\Users";
    writeln!(r, "[{users}]\n").unwrap();
    for a in &spec.accounts {
        writeln!(r, "[{users}\\{:08X}]", a.rid).unwrap();
        writeln!(r, "\"F\"=hex:{}", hex_bytes(&sam_f(a.rid, a.disabled))).unwrap();
        writeln!(r, "\"V\"=hex:{}\n", hex_bytes(&sam_v(&a.name))).unwrap();
        // The account's RID is the type of the default value of its Names key.
        writeln!(r, "[{users}\\Names\\{}]", a.name).unwrap();
        writeln!(r, "@=hex({:x}):\n", a.rid).unwrap();
    }
    r
}

/// The names of the event logs of [`windows_tree`] (in `Windows\System32\winevt\Logs`).
pub const EVENT_LOGS: &[&str] = &[
    "Application.evtx",
    "Security.evtx",
    "System.evtx",
    "Microsoft-Windows-TerminalServices-LocalSessionManager%4Operational.evtx",
];

/// The first bytes of an event log file: the `ElfFile` header signature.
pub fn evtx_bytes(seed: u64) -> Vec<u8> {
    let mut b = crate::fixture::pseudo_random(68 * 1024, seed);
    b[..8].copy_from_slice(b"ElfFile\0");
    b
}

/// Write `Windows\System32\config\{SOFTWARE,SYSTEM,SAM}` for `spec`, the usual
/// top-level directories, the event logs ([`EVENT_LOGS`]) and, at the root, a
/// `pagefile.sys`, a `swapfile.sys` and a `hiberfil.sys` of zeros (Windows shut down
/// fully) into the host directory `tree`.
pub fn windows_tree(tree: &Path, spec: &WindowsSpec) {
    let config = tree.join("Windows/System32/config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::create_dir_all(tree.join("Users/Public")).unwrap();
    // Setup's state, and the (empty) directory of the first-boot scripts.
    if spec.setup_scripts {
        std::fs::create_dir_all(tree.join("Windows/Setup/Scripts")).unwrap();
    }
    std::fs::create_dir_all(tree.join("Windows/Setup/State")).unwrap();
    let logs = tree.join("Windows/System32/winevt/Logs");
    std::fs::create_dir_all(&logs).unwrap();
    for (i, name) in EVENT_LOGS.iter().enumerate() {
        std::fs::write(logs.join(name), evtx_bytes(i as u64)).unwrap();
    }
    for name in ["pagefile.sys", "swapfile.sys", "hiberfil.sys"] {
        std::fs::write(tree.join(name), vec![0u8; 256 * 1024]).unwrap();
    }
    std::fs::write(
        tree.join("Windows/Setup/State/State.ini"),
        format!(
            "[State]\r\nImageState={}\r\n",
            spec.image_state
                .as_deref()
                .unwrap_or("IMAGE_STATE_COMPLETE")
        ),
    )
    .unwrap();
    std::fs::create_dir_all(tree.join("Program Files")).unwrap();
    hive_from_reg(
        &config.join("SOFTWARE"),
        "HKEY_LOCAL_MACHINE\\SOFTWARE",
        &software_reg(spec),
    );
    hive_from_reg(
        &config.join("SYSTEM"),
        "HKEY_LOCAL_MACHINE\\SYSTEM",
        &system_reg(spec),
    );
    hive_from_reg(
        &config.join("SAM"),
        "HKEY_LOCAL_MACHINE\\SAM",
        &sam_reg(spec),
    );
    for (name, reg) in &spec.extra {
        merge_reg(
            &config.join(name),
            &format!("HKEY_LOCAL_MACHINE\\{name}"),
            reg,
        );
    }
    for (path, data) in &spec.files {
        let p = tree.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, data).unwrap();
    }
    for name in &spec.garbage {
        let mut junk = crate::fixture::pseudo_random(0x3000, 7);
        junk[..4].copy_from_slice(b"regf");
        std::fs::write(config.join(name), junk).unwrap();
    }
}

/// How the disk boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    /// MBR: partition 1 the active 100 MiB System Reserved (`bootmgr`, `Boot\BCD`),
    /// partition 2 `C:`.
    Bios,
    /// GPT: partition 1 the ESP (`EFI\Microsoft\Boot\bootmgfw.efi`), 2 the MSR,
    /// 3 `C:`.
    Uefi,
}

/// Make an NTFS volume (mkntfs, as Windows formats `C:` and System Reserved) of `size`
/// bytes at `offset` in `img`, holding the host directory `tree`: made on a scratch
/// file beside `img`, filled through a FUSE ntfs-3g mount, then copied in sparse.
pub fn windows_volume(img: &Path, offset: u64, size: u64, label: &str, tree: &Path) {
    let scratch = img.with_extension(format!("vol{offset}"));
    crate::ntfs::mkntfs(&scratch, size, label);
    let mnt = img.with_extension(format!("mnt{offset}"));
    std::fs::create_dir_all(&mnt).unwrap();
    {
        let m = crate::ntfs::FuseMount::new(&scratch, &mnt);
        run(Command::new("cp")
            .arg("-r")
            .arg(format!("{}/.", tree.display()))
            .arg(m.path()));
    }
    crate::fixture::copy_into(&scratch, img, offset);
    let _ = std::fs::remove_file(&scratch);
    let _ = std::fs::remove_dir(&mnt);
}

/// Make a FAT32 volume (the ESP) of `size` bytes at `offset` in `img`, holding the host
/// directory `tree` (mkfs.fat + mcopy).
pub fn fat_volume(img: &Path, offset: u64, size: u64, label: &str, tree: &Path) {
    require("mkfs.fat");
    require("mcopy");
    run(Command::new("mkfs.fat")
        .args(["-F", "32", "-s", "1", "-n", label])
        .arg("--offset")
        .arg((offset / 512).to_string())
        .arg(img)
        .arg((size / 1024).to_string()));
    let entries: Vec<PathBuf> = std::fs::read_dir(tree)
        .unwrap_or_else(|e| panic!("read {}: {e}", tree.display()))
        .map(|e| e.unwrap().path())
        .collect();
    if entries.is_empty() {
        return;
    }
    let target = format!("{}@@{}", img.display(), offset);
    run(Command::new("mcopy")
        .args(["-s", "-i", &target])
        .args(&entries)
        .arg("::/")
        .env("MTOOLS_SKIP_CHECK", "1"));
}

/// The NTFS volume at `offset` of `img` (its size read from the partition table)
/// extracted to the whole-file volume `dest`, which ntfs-3g's tools take.
pub fn extract_volume(img: &Path, offset: u64, dest: &Path) {
    let (_, unit, parts) = crate::read_table(img).expect("the image's partition table");
    let p = parts
        .iter()
        .find(|p| p.start * unit == offset)
        .unwrap_or_else(|| panic!("no partition at {offset} in {}", img.display()));
    crate::ntfs::extract(img, offset, p.size * unit, dest);
}

/// Copy the file `path` (`/`-separated, from the volume's root) of the NTFS volume at
/// `offset` in `img` to the host file `dest` with `ntfscat`, a tool independent of the
/// code under test; false when the file is not there.
pub fn try_copy_out(img: &Path, offset: u64, path: &str, dest: &Path) -> bool {
    require("ntfscat");
    let vol = dest.with_extension("vol");
    extract_volume(img, offset, &vol);
    let out = Command::new("ntfscat")
        .arg("-f")
        .arg(&vol)
        .arg(path)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&vol);
    if !out.status.success() {
        return false;
    }
    std::fs::write(dest, out.stdout).unwrap_or_else(|e| panic!("write {}: {e}", dest.display()));
    true
}

/// Like [`try_copy_out`], the file must be there.
pub fn copy_out(img: &Path, offset: u64, path: &str, dest: &Path) {
    assert!(
        try_copy_out(img, offset, path, dest),
        "ntfscat {path} from {}",
        img.display()
    );
}

/// A Windows-shaped disk at `dir/name.img` for `spec`, booted by `firmware`; the size of
/// `C:` is `c_mib` MiB. Returns the image path.
pub fn windows_disk(
    dir: &Path,
    name: &str,
    spec: &WindowsSpec,
    firmware: Firmware,
    c_mib: u64,
) -> PathBuf {
    let img = dir.join(format!("{name}.img"));
    let trees = dir.join(format!("{name}.trees"));
    let c_tree = trees.join("c");
    let sys_tree = trees.join("system");
    std::fs::create_dir_all(&c_tree).unwrap();
    std::fs::create_dir_all(&sys_tree).unwrap();
    windows_tree(&c_tree, spec);
    let (script, sys_part, c_part, size) = match firmware {
        Firmware::Bios => {
            std::fs::write(sys_tree.join("bootmgr"), b"BOOTMGR").unwrap();
            std::fs::create_dir_all(sys_tree.join("Boot")).unwrap();
            std::fs::write(sys_tree.join("Boot/BCD"), b"regf").unwrap();
            (
                format!(
                    "label: dos\nstart=2048, size=100M, type=7, bootable\nsize={c_mib}M, type=7\n"
                ),
                1,
                2,
                (102 + c_mib) * MIB,
            )
        }
        Firmware::Uefi => {
            std::fs::create_dir_all(sys_tree.join("EFI/Microsoft/Boot")).unwrap();
            std::fs::create_dir_all(sys_tree.join("EFI/Boot")).unwrap();
            std::fs::write(sys_tree.join("EFI/Microsoft/Boot/bootmgfw.efi"), b"MZ").unwrap();
            std::fs::write(sys_tree.join("EFI/Boot/bootx64.efi"), b"MZ").unwrap();
            (
                format!(
                    "label: gpt\n\
                     start=2048, size=100M, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=\"EFI system partition\"\n\
                     size=16M, type=E3C9E316-0B5C-4DB8-817D-F92DF00215AE, name=\"Microsoft reserved partition\"\n\
                     size={c_mib}M, type=EBD0A0A2-B9E5-4433-87C0-68B9B6877BA7, name=\"Basic data partition\"\n"
                ),
                1,
                3,
                (120 + c_mib) * MIB,
            )
        }
    };
    sparse_file(&img, size);
    sfdisk(&img, &script);
    if firmware == Firmware::Bios {
        // The first bytes of the Windows 7+ MBR boot code (xor ax,ax; mov ss,ax; mov sp,7c00).
        crate::fixture::write_at(&img, 0, &[0x33, 0xc0, 0x8e, 0xd0, 0xbc, 0x00, 0x7c]);
    }
    let (_, unit, parts) = crate::read_table(&img).expect("the fixture's partition table");
    let at = |n: u32| {
        let p = parts.iter().find(|p| p.number == n).expect("partition");
        (p.start * unit, p.size * unit)
    };
    let (o, s) = at(sys_part);
    if firmware == Firmware::Bios {
        windows_volume(&img, o, s, "System Reserved", &sys_tree);
    } else {
        fat_volume(&img, o, s, "SYSTEM", &sys_tree);
    }
    let (o, s) = at(c_part);
    windows_volume(&img, o, s, "WINDOWS", &c_tree);
    let _ = std::fs::remove_dir_all(&trees);
    img
}

/// A [`WindowsSpec::windows10`] disk at `dir/name.img` booted by `firmware`, with a
/// 64 MiB `C:` (see [`windows_disk`]). Returns the image path.
pub fn windows10_disk(dir: &Path, name: &str, firmware: Firmware) -> PathBuf {
    windows_disk(dir, name, &WindowsSpec::windows10(), firmware, 64)
}

/// A virtio-win-shaped tree at `dir/virtio-win`: for the Windows version directory `os`
/// (`w10`, `w7`), every driver (viostor, vioscsi, NetKVM, Balloon, vioserial) for amd64
/// and x86, each a small fake `NAME.sys` (`MZ NAME ARCH`), `NAME.cat` when `catalogs`,
/// and `NAME.inf` text whose `[Manufacturer]` section names the architecture, as
/// virtio-win's do. Returns the tree's root.
pub fn virtio_win(dir: &Path, os: &str, catalogs: bool) -> PathBuf {
    let root = dir.join("virtio-win");
    for (driver, file) in [
        ("viostor", "viostor"),
        ("vioscsi", "vioscsi"),
        ("NetKVM", "netkvm"),
        ("Balloon", "balloon"),
        ("vioserial", "vioser"),
    ] {
        for (arch, deco) in [("amd64", "NTamd64"), ("x86", "NTx86")] {
            let d = root.join(driver).join(os).join(arch);
            std::fs::create_dir_all(&d).unwrap();
            let inf = format!(
                "; {file}.inf\r\n[Version]\r\nSignature=\"$WINDOWS NT$\"\r\nClass=SCSIAdapter\r\n\
                 CatalogFile={file}.cat\r\n\r\n[Manufacturer]\r\n%RHEL%=RHEL,{deco}.10.0\r\n\r\n\
                 [RHEL.{deco}.10.0]\r\n%DevDesc%={file}_Inst, PCI\\VEN_1AF4&DEV_1001\r\n\r\n\
                 [Strings]\r\nRHEL=\"Red Hat, Inc.\"\r\nDevDesc=\"{driver}\"\r\n"
            );
            std::fs::write(d.join(format!("{file}.inf")), inf).unwrap();
            std::fs::write(d.join(format!("{file}.sys")), format!("MZ {file} {arch}")).unwrap();
            if catalogs {
                std::fs::write(d.join(format!("{file}.cat")), b"0\x82cat").unwrap();
            }
        }
    }
    root
}
