//! Windows inspection on Windows-shaped guests: the registry hives are made from text by
//! the test kit (hivexregedit into a minimal hive), the volumes are FAT32 for now
//! (`snf_testkit::windows::windows_volume`, the one place that becomes NTFS), laid out as
//! Windows installs them for BIOS (System Reserved + C:) and UEFI (ESP + MSR + C:).

mod common;

use std::path::Path;

use common::{assert_meta, partitions};
use image_creator::core::report::quiet;
use image_creator::inspect::windows::RemoteDesktop;
use image_creator::inspect::{inspect, Inspection};
use image_creator::options::RunOptions;
use image_creator::session::{Session, SessionError, Stage};
use snf_testkit::report::Recorder;
use snf_testkit::windows::{windows10_disk, windows_disk, Account, Firmware, Version, WindowsSpec};

fn inspect_with_log(img: &Path) -> (Inspection, Recorder) {
    let (parts, table) = partitions(img);
    let rec = Recorder::new();
    let found = inspect(img, &parts, &table, false, &rec).expect("inspection");
    (found, rec)
}

/// Inspect a [`windows_disk`] made for `spec` (named `name`, booted by `firmware`,
/// a 64 MiB C:) in a new temporary directory, returned to be kept as long as the
/// inspection.
fn inspect_spec(
    name: &str,
    spec: &WindowsSpec,
    firmware: Firmware,
) -> (tempfile::TempDir, Inspection, Recorder) {
    let dir = tempfile::tempdir().unwrap();
    let img = windows_disk(dir.path(), name, spec, firmware, 64);
    let (found, rec) = inspect_with_log(&img);
    (dir, found, rec)
}

#[test]
fn windows10_on_bios_with_system_reserved() {
    let (_dir, found, rec) = inspect_spec("win10", &WindowsSpec::windows10(), Firmware::Bios);
    assert_eq!(found.unsupported, None);
    assert_meta(
        &found.metadata,
        &[
            ("OSFAMILY", "windows"),
            ("OS", "windows"),
            ("DESCRIPTION", "Windows 10 Pro"),
            ("KERNEL", "Windows NT 10.0"),
            ("SORTORDER", "8100000"),
            ("GUI", "Windows"),
            ("USERS", "Administrator"),
            ("REMOTE_CONNECTION", "rdp:port=3389,user=Administrator"),
            ("PARTITION_TABLE", "msdos"),
            ("BOOTSTRAP", "Windows"),
            ("ROOT_PARTITION", "2"),
        ],
    );
    let w = found.windows.expect("Windows details");
    assert_eq!(w.system_partition, Some(1));
    assert_eq!(w.boot_partition, Some(2));
    assert_eq!(w.control_set.as_deref(), Some("ControlSet001"));
    assert_eq!(w.remote_desktop, RemoteDesktop::Allowed(3389));
    assert_eq!(w.version.build.as_deref(), Some("19045"));
    assert_eq!(w.version.installation_type.as_deref(), Some("Client"));
    assert!(w.version.generalized());
    assert_eq!(w.publish_warning(), None);
    assert!(rec.warnings().is_empty(), "{:?}", rec.warnings());
}

#[test]
fn windows7_on_uefi_with_esp_and_msr() {
    let spec = WindowsSpec {
        accounts: vec![
            Account::new("Administrator", 500, true),
            Account::new("Guest", 501, true),
            Account::new("user", 1000, false),
        ],
        ..WindowsSpec::windows7()
    };
    let (_dir, found, _) = inspect_spec("win7", &spec, Firmware::Uefi);
    assert_eq!(found.unsupported, None);
    assert_meta(
        &found.metadata,
        &[
            ("OSFAMILY", "windows"),
            ("OS", "windows"),
            ("DESCRIPTION", "Windows 7 Professional"),
            ("KERNEL", "Windows NT 6.1"),
            ("SORTORDER", "8060100"),
            ("GUI", "Windows"),
            ("USERS", "user"),
            ("REMOTE_CONNECTION", "rdp:port=3389,user=user"),
            ("PARTITION_TABLE", "gpt"),
            ("BOOTSTRAP", "none"),
            ("ROOT_PARTITION", "3"),
        ],
    );
    let w = found.windows.unwrap();
    assert_eq!(w.system_partition, Some(1));
    assert_eq!(w.boot_partition, Some(3));
    let rids: Vec<(String, u32, bool)> = w
        .accounts
        .iter()
        .map(|a| (a.name.clone(), a.rid, a.disabled))
        .collect();
    assert_eq!(
        rids,
        vec![
            ("Administrator".into(), 500, true),
            ("Guest".into(), 501, true),
            ("user".into(), 1000, false),
        ]
    );
}

#[test]
fn windows11_with_two_users_on_another_rdp_port() {
    let spec = WindowsSpec {
        product_name: "Windows 11 Enterprise".into(),
        build: "22631".into(),
        rdp_port: 3390,
        accounts: vec![
            Account::new("Administrator", 500, false),
            Account::new("Guest", 501, true),
            Account::new("alice", 1001, false),
            Account::new("WDAGUtilityAccount", 504, true),
        ],
        ..WindowsSpec::windows10()
    };
    let (_dir, found, _) = inspect_spec("win11", &spec, Firmware::Uefi);
    assert_eq!(found.metadata.get("KERNEL"), Some("Windows NT 10.0"));
    assert_eq!(found.metadata.get("USERS"), Some("Administrator alice"));
    assert_eq!(
        found.metadata.get("REMOTE_CONNECTION"),
        Some("rdp:port=3390,user=Administrator rdp:port=3390,user=alice")
    );
    assert_eq!(
        found.windows.unwrap().version.build.as_deref(),
        Some("22631")
    );
}

#[test]
fn server2022_with_rdp_denied_not_generalized() {
    // Version 10.0, RDP on 3389, setup scripts and nothing malformed, as Windows 10.
    let spec = WindowsSpec {
        product_name: "Windows Server 2022 Datacenter".into(),
        build: "20348".into(),
        installation_type: "Server".into(),
        image_state: Some("IMAGE_STATE_COMPLETE".into()),
        deny_rdp: true,
        accounts: vec![
            Account::new("Administrator", 500, false),
            Account::new("svc", 1002, true),
        ],
        ..WindowsSpec::windows10()
    };
    let (_dir, found, rec) = inspect_spec("srv2022", &spec, Firmware::Bios);
    assert_eq!(found.unsupported, None);
    assert_meta(
        &found.metadata,
        &[
            ("OSFAMILY", "windows"),
            ("OS", "windows"),
            ("DESCRIPTION", "Windows Server 2022 Datacenter"),
            ("KERNEL", "Windows NT 10.0"),
            ("SORTORDER", "8100000"),
            ("GUI", "Windows"),
            ("USERS", "Administrator"),
            ("PARTITION_TABLE", "msdos"),
            ("BOOTSTRAP", "Windows"),
            ("ROOT_PARTITION", "2"),
        ],
    );
    assert!(rec.warned("Remote Desktop Connections are disabled"));
    assert!(rec.warned("IMAGE_STATE_COMPLETE"), "{:?}", rec.warnings());
    assert!(rec.warned("needs -f"), "{:?}", rec.warnings());
    let w = found.windows.unwrap();
    assert_eq!(w.remote_desktop, RemoteDesktop::Denied);
    assert!(!w.version.generalized());
    assert_eq!(w.version.installation_type.as_deref(), Some("Server"));
    assert!(w
        .publish_warning()
        .unwrap()
        .contains("IMAGE_STATE_COMPLETE"));
}

#[test]
fn windows_older_than_7_is_unsupported_with_the_original_message() {
    let spec = WindowsSpec {
        product_name: "Windows Vista (TM) Business".into(),
        version: Version::Legacy(6, 0),
        build: "6002".into(),
        ..WindowsSpec::windows10()
    };
    let (_dir, found, _) = inspect_spec("vista", &spec, Firmware::Bios);
    let reason =
        "Windows Vista (TM) Business is too old. Versions prior to Windows 7 are not supported.";
    assert_eq!(found.unsupported.as_deref(), Some(reason));
    assert_eq!(found.metadata.get("UNSUPPORTED"), Some(reason));
    assert!(found.guest.is_none());
}

/// A session on `img` with an upload asked for, run stage by stage up to the metadata
/// merge, skipping the cloud connection (no cloud here: the refusal comes before it is
/// needed).
fn merge_with_upload(dir: &Path, img: &Path, force: bool) -> (Session, Result<(), SessionError>) {
    let mut opts = RunOptions::new(img);
    opts.tmpdir = Some(dir.to_path_buf());
    opts.sysprep = false;
    opts.force = force;
    opts.cloud.cloud = Some("nowhere".into());
    opts.cloud.upload = Some("win.diskdump".into());
    let mut session = Session::new(opts, quiet()).unwrap();
    for stage in [
        Stage::ExamineSource,
        Stage::CreateWorkDir,
        Stage::OpenWorkingDisk,
        Stage::ReadPartitionTable,
        Stage::Inspect,
    ] {
        session.run_stage(stage).unwrap();
    }
    let merged = session.run_stage(Stage::MergeMetadata);
    (session, merged)
}

#[test]
fn publishing_an_image_that_is_not_generalized_needs_force() {
    let dir = tempfile::tempdir().unwrap();
    let spec = WindowsSpec {
        image_state: Some("IMAGE_STATE_COMPLETE".into()),
        ..WindowsSpec::windows10()
    };
    let img = windows_disk(dir.path(), "complete", &spec, Firmware::Uefi, 64);
    let (session, merged) = merge_with_upload(dir.path(), &img, false);
    let err = merged.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, SessionError::NotGeneralized { .. }), "{text}");
    assert!(
        text.contains("IMAGE_STATE_COMPLETE") && text.contains("-f"),
        "{text}"
    );
    assert!(!text.contains('\n'));
    assert!(session.publish_warning().is_some());
    drop(session);

    let (session, merged) = merge_with_upload(dir.path(), &img, true);
    merged.unwrap();
    assert!(
        session.publish_warning().is_some(),
        "the front-ends still say it"
    );
    drop(session);

    // A generalized image goes through without -f.
    let img = windows10_disk(dir.path(), "generalized", Firmware::Uefi);
    let (session, merged) = merge_with_upload(dir.path(), &img, false);
    merged.unwrap();
    assert_eq!(session.publish_warning(), None);
    assert_eq!(session.metadata().get("OSFAMILY"), Some("windows"));
    // No hive copy is left behind in the work directory.
    let workdir = session.work_dir().unwrap().to_path_buf();
    let left: Vec<_> = std::fs::read_dir(&workdir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("hive-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn malformed_registry_values_are_skipped_not_trusted() {
    let users = "HKEY_LOCAL_MACHINE\\SAM\\SAM\\Domains\\Account\\Users";
    let spec = WindowsSpec {
        extra: vec![
            (
                "SAM",
                // An account whose F is cut short, and one with no RID at all.
                format!(
                    "[{users}\\000003EA]\n\"F\"=hex:02,00,00\n\n\
                     [{users}\\Names\\short]\n@=hex(3ea):\n\n\
                     [{users}\\Names\\norid]\n\"x\"=dword:00000001\n\n"
                ),
            ),
            (
                "SYSTEM",
                // A port out of range falls back to 3389.
                "[HKEY_LOCAL_MACHINE\\SYSTEM\\ControlSet001\\Control\\Terminal Server\\WinStations\\RDP-Tcp]\n\
                 \"PortNumber\"=dword:00100000\n\n"
                    .into(),
            ),
            (
                "SOFTWARE",
                // A product name of the wrong type.
                "[HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion]\n\
                 \"ProductName\"=dword:00000007\n\n"
                    .into(),
            ),
        ],
        ..WindowsSpec::windows10()
    };
    let (_dir, found, rec) = inspect_spec("odd", &spec, Firmware::Bios);
    assert_eq!(found.unsupported, None);
    assert_eq!(found.metadata.get("DESCRIPTION"), Some("Windows"));
    assert_eq!(found.metadata.get("USERS"), Some("Administrator"));
    assert_eq!(
        found.metadata.get("REMOTE_CONNECTION"),
        Some("rdp:port=3389,user=Administrator")
    );
    assert!(rec.warned("\"short\""), "{:?}", rec.warnings());
    assert!(rec.warned("\"norid\""), "{:?}", rec.warnings());
}

#[test]
fn hives_that_are_not_hives_are_reported() {
    // A broken SYSTEM and SAM: inspection goes on without their parts.
    let spec = WindowsSpec {
        garbage: vec!["SYSTEM", "SAM"],
        ..WindowsSpec::windows10()
    };
    let (_dir, found, rec) = inspect_spec("broken", &spec, Firmware::Bios);
    assert_eq!(found.unsupported, None);
    assert_eq!(found.metadata.get("USERS"), None);
    assert_eq!(found.metadata.get("REMOTE_CONNECTION"), None);
    assert!(
        rec.warned("/Windows/System32/config/SYSTEM: not a valid hive"),
        "{:?}",
        rec.warnings()
    );
    assert!(rec.warned("No passworded users found!"));
    assert!(!rec.warned("Remote Desktop Connections are disabled"));

    // A broken SOFTWARE: the media are unsupported, saying why in one line.
    let spec = WindowsSpec {
        garbage: vec!["SOFTWARE"],
        ..WindowsSpec::windows10()
    };
    let (_dir, found, _) = inspect_spec("nosoftware", &spec, Firmware::Bios);
    let reason = found.unsupported.expect("unsupported");
    assert!(
        reason.starts_with(
            "The Windows registry cannot be read: Windows registry \
             /Windows/System32/config/SOFTWARE: not a valid hive: "
        ),
        "{reason}"
    );
    assert!(!reason.contains('\n'));
}
