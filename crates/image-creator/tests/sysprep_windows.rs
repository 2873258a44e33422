//! The offline Windows operations on a Windows-shaped guest (hives made from text by
//! the test kit, NTFS volumes made by mkntfs): each change is checked on the image
//! afterwards with hivexget and ntfs-3g's ntfscat, tools independent of the code under test.

mod common;

use std::path::{Path, PathBuf};

use common::partitions;
use image_creator::inspect::inspect;
use image_creator::metadata::Metadata;
use image_creator::sysprep::{self, GuestOs, OpReport, OsFamily, Params, Registry, SysprepContext};
use snf_testkit::ntfs::ntfsls;
use snf_testkit::report::Recorder;
use snf_testkit::windows::{
    copy_out, hivexget, try_copy_out, windows10_disk, windows_disk, Firmware, WindowsSpec,
};

/// Inspect `img` for writing and run the enabled operations of `registry` on it; the
/// guest is closed before the result is returned.
fn run_ops(
    img: &Path,
    registry: &mut Registry,
    dry_run: bool,
) -> (sysprep::Result<Vec<OpReport>>, OsFamily, Recorder) {
    let (parts, table) = partitions(img);
    let rec = Recorder::new();
    let mut found = inspect(img, &parts, &table, !dry_run, &rec).expect("inspection");
    let mut meta: Metadata = found.metadata.clone();
    let os = GuestOs::from_metadata(&meta);
    let params = Params::for_family(os.family);
    let mut guest = found.guest.take().expect("a supported guest");
    let reports = {
        let mut ctx =
            SysprepContext::new(&mut guest, &os, &mut meta, &params, &rec).with_dry_run(dry_run);
        sysprep::run_enabled(registry, &mut ctx)
    };
    guest.close().unwrap();
    (reports, os.family, rec)
}

/// [`run_ops`] on a Windows guest, every operation succeeding.
fn prepare(img: &Path, registry: &mut Registry, dry_run: bool) -> (Vec<OpReport>, Recorder) {
    let (reports, family, rec) = run_ops(img, registry, dry_run);
    assert_eq!(family, OsFamily::Windows);
    (reports.unwrap(), rec)
}

/// The C: volume's offset in the BIOS layout (partition 2).
fn c_offset(img: &Path) -> u64 {
    let (parts, _) = partitions(img);
    parts.iter().find(|p| p.number == 2).unwrap().offset
}

fn hive(img: &Path, dir: &Path, name: &str) -> PathBuf {
    let dest = dir.join(format!("out-{name}"));
    let _ = std::fs::remove_file(&dest);
    copy_out(
        img,
        c_offset(img),
        &format!("/Windows/System32/config/{name}"),
        &dest,
    );
    dest
}

fn setup_complete(img: &Path, dir: &Path) -> Option<String> {
    let dest = dir.join("out-SetupComplete.cmd");
    let _ = std::fs::remove_file(&dest);
    try_copy_out(
        img,
        c_offset(img),
        "/Windows/Setup/Scripts/SetupComplete.cmd",
        &dest,
    )
    .then(|| std::fs::read_to_string(&dest).unwrap())
}

const TCPIP: &str = "\\Policies\\Microsoft\\Windows\\TCPIP\\v6Transition";
const RULES: &str =
    "\\ControlSet001\\Services\\SharedAccess\\Parameters\\FirewallPolicy\\FirewallRules";
const TZ: &str = "\\ControlSet001\\Control\\TimeZoneInformation";

#[test]
fn the_offline_windows_operations_edit_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    // Windows makes Setup\Scripts only when something is put there.
    let spec = WindowsSpec {
        setup_scripts: false,
        ..WindowsSpec::windows10()
    };
    let img = windows_disk(dir.path(), "win", &spec, Firmware::Bios, 64);
    let mut registry = Registry::for_family(OsFamily::Windows);
    let names: Vec<&str> = registry.enabled().iter().map(|d| d.name).collect();
    assert_eq!(
        names,
        [
            "disable-ipv6-privacy-extensions",
            "disable-teredo",
            "disable-isatap",
            "enable-pings",
            "utc",
            "clear-logs",
            "remove-paging-files",
            "shrink"
        ]
    );
    registry.disable("shrink").unwrap();

    // A dry run lists the changes and writes nothing.
    let (reports, _) = prepare(&img, &mut registry.clone(), true);
    let changed: usize = reports.iter().map(|r| r.changes.changes.len()).sum();
    assert!(changed >= 5, "{reports:?}");
    let software = hive(&img, dir.path(), "SOFTWARE");
    let out = std::process::Command::new("hivexget")
        .arg(&software)
        .arg(TCPIP)
        .arg("Teredo_State")
        .output()
        .unwrap();
    assert!(!out.status.success(), "the dry run wrote the key");
    assert_eq!(setup_complete(&img, dir.path()), None);
    let vol = dir.path().join("c.ntfs");
    snf_testkit::windows::extract_volume(&img, c_offset(&img), &vol);
    assert_eq!(
        ntfsls(&vol, "/Windows/System32/winevt/Logs").len(),
        snf_testkit::windows::EVENT_LOGS.len()
    );
    assert!(ntfsls(&vol, "/").contains(&"pagefile.sys".to_string()));
    std::fs::remove_file(&vol).unwrap();

    let (reports, rec) = prepare(&img, &mut registry, false);
    assert!(rec.warnings().is_empty(), "{:?}", rec.warnings());
    let software = hive(&img, dir.path(), "SOFTWARE");
    assert_eq!(hivexget(&software, TCPIP, "Teredo_State"), "Disabled");
    assert_eq!(hivexget(&software, TCPIP, "ISATAP_State"), "Disabled");
    let system = hive(&img, dir.path(), "SYSTEM");
    assert_eq!(hivexget(&system, TZ, "RealTimeIsUniversal"), "1");
    // What was there stays.
    assert_eq!(hivexget(&system, TZ, "TimeZoneKeyName"), "UTC");
    let rule = hivexget(&system, RULES, "SNF-ICMP4-ECHO-IN");
    assert!(
        rule.starts_with("v2.10|Action=Allow|Active=TRUE|Dir=In|Protocol=1|ICMP4=8:*|"),
        "{rule}"
    );
    let cmd = setup_complete(&img, dir.path()).expect("SetupComplete.cmd");
    assert_eq!(
        cmd,
        "netsh interface ipv6 set global randomizeidentifiers=disabled store=persistent\r\n"
    );
    let utc = reports.iter().find(|r| r.name == "utc").unwrap();
    assert_eq!(utc.changes.changes.len(), 1);
    assert!(utc.changes.changes[0]
        .path
        .eq_ignore_ascii_case("/Windows/System32/config/SYSTEM"));

    // The event logs and the paging files are gone, nothing else; the volume is
    // still consistent.
    let vol = dir.path().join("c.ntfs");
    snf_testkit::windows::extract_volume(&img, c_offset(&img), &vol);
    assert!(ntfsls(&vol, "/Windows/System32/winevt/Logs").is_empty());
    assert_eq!(
        ntfsls(&vol, "/"),
        ["Program Files", "Users", "Windows"],
        "the root of C:"
    );
    assert_eq!(
        ntfsls(&vol, "/Windows/Setup/Scripts"),
        ["SetupComplete.cmd"]
    );
    snf_testkit::ntfs::assert_ntfsfix_clean(&vol, "C: after the operations");
    std::fs::remove_file(&vol).unwrap();

    // A second run has nothing left to do.
    let mut again = Registry::for_family(OsFamily::Windows);
    again.disable("shrink").unwrap();
    let (reports, _) = prepare(&img, &mut again, false);
    for r in &reports {
        assert!(r.changes.is_empty(), "{}: {:?}", r.name, r.changes);
    }
}

#[test]
fn operations_that_need_the_running_guest_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let img = windows10_disk(dir.path(), "win", Firmware::Uefi);
    let mut registry = Registry::for_family(OsFamily::Windows);
    assert!(!registry.is_enabled("microsoft-sysprep"));
    assert!(!registry.is_enabled("kms-client-setup"));
    registry.disable_all();
    registry.enable("microsoft-sysprep").unwrap();
    let (reports, _, _) = run_ops(&img, &mut registry, false);
    assert_eq!(
        reports.unwrap_err().to_string(),
        "System preparation operation `microsoft-sysprep' failed: needs the guest running: not supported"
    );
}
