//! The binding on hives made from nothing (the test kit's minimal hive) and filled by
//! `hivexregedit --merge`; what it writes is checked with `hivexget` and
//! `hivexregedit --export`, tools independent of this crate.

use hivex::{Error, Hive, RegValue, ValueType};
use snf_testkit::windows::{empty_hive, export, hive_from_reg, hivexget, sam_f};

const PREFIX: &str = "HKEY_LOCAL_MACHINE\\SOFTWARE";

const REG: &str = r#"[HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Windows NT\CurrentVersion]
"ProductName"="Windows Server 2022 Datacenter"
"CurrentMajorVersionNumber"=dword:0000000a
"CurrentMinorVersionNumber"=dword:00000000
"CurrentBuild"="20348"
"InstallDate"=hex(b):00,01,02,03,04,05,06,07
"PathName"=hex(2):43,00,3a,00,5c,00,57,00,00,00
"Blob"=hex:de,ad,be,ef
"Multi"=hex(7):61,00,00,00,62,00,63,00,00,00,00,00
@=hex(1f4):

[HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Windows NT\CurrentVersion\Winlogon]
"Shell"="explorer.exe"
"#;

fn fixture(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("SOFTWARE");
    hive_from_reg(&path, PREFIX, REG);
    path
}

#[test]
fn typed_values_are_read_with_case_insensitive_lookups() {
    let dir = tempfile::tempdir().unwrap();
    let path = fixture(dir.path());
    let hive = Hive::open(&path).unwrap();
    let root = hive.root().unwrap();
    assert_eq!(hive.node_name(root).unwrap(), "ROOT");
    let cv = hive
        .find_path("microsoft\\WINDOWS NT\\currentversion")
        .unwrap()
        .expect("CurrentVersion");
    assert_eq!(hive.node_name(cv).unwrap(), "CurrentVersion");
    let get = |name: &str| hive.value(cv, name).unwrap().expect(name);
    assert_eq!(
        hive.value_string(get("productname")).unwrap(),
        "Windows Server 2022 Datacenter"
    );
    assert_eq!(
        hive.value_dword(get("CurrentMajorVersionNumber")).unwrap(),
        10
    );
    assert_eq!(
        hive.value_dword(get("CurrentMinorVersionNumber")).unwrap(),
        0
    );
    assert_eq!(hive.value_string(get("CurrentBuild")).unwrap(), "20348");
    assert_eq!(
        hive.value_qword(get("InstallDate")).unwrap(),
        0x0706_0504_0302_0100
    );
    assert_eq!(hive.value_string(get("PathName")).unwrap(), "C:\\W");
    assert_eq!(
        hive.value_binary(get("Blob")).unwrap(),
        vec![0xde, 0xad, 0xbe, 0xef]
    );
    assert_eq!(
        hive.value_multi_sz(get("Multi")).unwrap(),
        vec!["a".to_string(), "bc".to_string()]
    );
    // SAM keeps a RID in the type of a default value.
    let (t, len) = hive.value_type(get("")).unwrap();
    assert_eq!((t, len), (ValueType::Other(0x1f4), 0));

    assert!(hive.value(cv, "Missing").unwrap().is_none());
    assert!(hive
        .find_path("Microsoft\\Nothing\\Here")
        .unwrap()
        .is_none());
    let names: Vec<String> = hive
        .children(cv)
        .unwrap()
        .into_iter()
        .map(|n| hive.node_name(n).unwrap())
        .collect();
    assert_eq!(names, vec!["Winlogon".to_string()]);
    let mut values: Vec<String> = hive
        .values(cv)
        .unwrap()
        .into_iter()
        .map(|v| hive.value_name(v).unwrap())
        .collect();
    values.sort();
    assert_eq!(values.len(), 9);
    assert!(values.contains(&String::new()));

    // A typed getter refuses another type, naming the value.
    let err = hive.value_dword(get("ProductName")).unwrap_err();
    assert!(matches!(err, Error::Type { .. }), "{err}");
    assert!(err.to_string().contains("\"ProductName\""), "{err}");
}

#[test]
fn changes_are_committed_to_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = fixture(dir.path());
    {
        let mut hive = Hive::open_writable(&path).unwrap();
        let tz = hive
            .ensure_path("ControlSet001\\Control\\TimeZoneInformation")
            .unwrap();
        hive.set_value(tz, "RealTimeIsUniversal", &RegValue::Dword(1))
            .unwrap();
        hive.set_value(tz, "Name", &RegValue::Sz("Ünïcode zone".into()))
            .unwrap();
        hive.set_value(tz, "Big", &RegValue::Qword(1 << 40))
            .unwrap();
        hive.set_value(tz, "Flags", &RegValue::Binary(sam_f(500, true)))
            .unwrap();
        hive.set_value(
            tz,
            "List",
            &RegValue::MultiSz(vec!["one".into(), "two".into()]),
        )
        .unwrap();
        let cv = hive
            .find_path("Microsoft\\Windows NT\\CurrentVersion")
            .unwrap()
            .unwrap();
        // Replacing keeps one value of that name, whatever the case used.
        hive.set_value(cv, "productNAME", &RegValue::Sz("Changed".into()))
            .unwrap();
        let winlogon = hive.child(cv, "winlogon").unwrap().unwrap();
        hive.delete_child(winlogon).unwrap();
        hive.commit().unwrap();
    }
    let key = "\\ControlSet001\\Control\\TimeZoneInformation";
    assert_eq!(hivexget(&path, key, "RealTimeIsUniversal"), "1");
    assert_eq!(hivexget(&path, key, "Name"), "Ünïcode zone");
    let exported = export(&path, PREFIX, key);
    assert!(
        exported.contains("\"Big\"=hex(b):00,00,00,00,00,01,00,00"),
        "{exported}"
    );
    assert!(
        exported.contains("\"List\"=hex(7):6f,00,6e,00,65,00,00,00,74,00,77,00,6f,00,00,00,00,00"),
        "{exported}"
    );
    assert!(exported.contains("\"Flags\"=hex(3):02,00"), "{exported}");
    let cv = "\\Microsoft\\Windows NT\\CurrentVersion";
    assert_eq!(hivexget(&path, cv, "ProductName"), "Changed");
    let all = export(&path, PREFIX, "\\");
    assert!(!all.contains("Winlogon"), "{all}");
    assert_eq!(
        all.to_ascii_lowercase().matches("\"productname\"").count(),
        1,
        "{all}"
    );

    // Read back through the binding too.
    let hive = Hive::open(&path).unwrap();
    let tz = hive.find_path(key).unwrap().unwrap();
    let v = hive.value(tz, "List").unwrap().unwrap();
    assert_eq!(hive.value_multi_sz(v).unwrap(), vec!["one", "two"]);
}

#[test]
fn the_minimal_hive_opens_and_takes_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("EMPTY");
    empty_hive(&path, "CMI-CreateHive{test}");
    let mut hive = Hive::open_writable(&path).unwrap();
    let root = hive.root().unwrap();
    assert!(hive.children(root).unwrap().is_empty());
    assert!(hive.values(root).unwrap().is_empty());
    let k = hive.add_child(root, "Select").unwrap();
    hive.set_value(k, "Current", &RegValue::Dword(2)).unwrap();
    hive.commit().unwrap();
    drop(hive);
    assert_eq!(hivexget(&path, "\\Select", "Current"), "2");
}

#[test]
fn a_read_only_hive_refuses_writes_and_garbage_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = fixture(dir.path());
    let mut hive = Hive::open(&path).unwrap();
    let root = hive.root().unwrap();
    let err = hive.add_child(root, "X").unwrap_err();
    assert!(matches!(err, Error::ReadOnly { .. }), "{err}");
    assert!(matches!(hive.commit(), Err(Error::ReadOnly { .. })));
    hive.set_shown_name("/Windows/System32/config/SOFTWARE");
    let err = hive.add_child(root, "X").unwrap_err().to_string();
    assert_eq!(
        err,
        "registry hive /Windows/System32/config/SOFTWARE: opened read-only, cannot add a key"
    );
    assert!(matches!(hive.child(root, "a\0b"), Err(Error::Nul { .. })));

    // Not a hive; a hive whose header checksum is wrong; one cut short.
    let junk = dir.path().join("junk");
    std::fs::write(&junk, vec![0x41u8; 0x3000]).unwrap();
    let err = Hive::open(&junk).unwrap_err();
    assert!(matches!(err, Error::Open { .. }), "{err}");
    assert!(!err.to_string().contains('\n'));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[0x30] ^= 0xff;
    let bad = dir.path().join("bad");
    std::fs::write(&bad, &bytes).unwrap();
    assert!(matches!(Hive::open(&bad), Err(Error::Open { .. })));
    let short = dir.path().join("short");
    std::fs::write(&short, &std::fs::read(&path).unwrap()[..0x1800]).unwrap();
    assert!(Hive::open(&short).is_err());

    // A root cell pointing at garbage inside the bin.
    let mut bytes = std::fs::read(&path).unwrap();
    for b in &mut bytes[0x1020..0x1040] {
        *b = 0xff;
    }
    let broken = dir.path().join("broken");
    std::fs::write(&broken, &bytes).unwrap();
    match Hive::open(&broken) {
        Err(e) => assert!(!e.to_string().is_empty()),
        Ok(h) => {
            // libhivex may accept the header: every walk must still end in an error
            // or an answer, never a crash.
            if let Ok(r) = h.root() {
                let _ = h.children(r);
                let _ = h.values(r);
            }
        }
    }
}

/// The seeds of the `hive` fuzz target (fuzz/corpus/hive): with `SNF_FUZZ_SEEDS=DIR`
/// (fuzz/make-corpus.sh sets it) they are written there; otherwise the committed ones
/// must still be hives.
#[test]
fn fuzz_seeds() {
    let committed = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/hive");
    let dir = match std::env::var_os("SNF_FUZZ_SEEDS") {
        Some(d) => std::path::PathBuf::from(d),
        None => {
            let mut n = 0;
            for e in std::fs::read_dir(&committed).expect("fuzz/corpus/hive") {
                let p = e.unwrap().path();
                Hive::open(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                n += 1;
            }
            assert!(n >= 3, "fuzz/corpus/hive holds {n} seeds");
            return;
        }
    };
    std::fs::create_dir_all(&dir).unwrap();
    empty_hive(&dir.join("empty"), "ROOT");
    let spec = snf_testkit::windows::WindowsSpec::windows10();
    use snf_testkit::windows::{sam_reg, software_reg, system_reg};
    for (name, reg) in [
        ("SOFTWARE", software_reg(&spec)),
        ("SYSTEM", system_reg(&spec)),
        ("SAM", sam_reg(&spec)),
    ] {
        hive_from_reg(
            &dir.join(name),
            &format!("HKEY_LOCAL_MACHINE\\{name}"),
            &reg,
        );
    }
}
