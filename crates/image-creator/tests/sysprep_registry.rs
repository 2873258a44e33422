//! The sysprep registry: descriptors, selection, print formats and the generated doc.

use std::collections::BTreeSet;

use image_creator::sysprep::{registry, OsFamily, Params, Registry, Scope, SysprepError};

#[test]
fn every_descriptor_is_well_formed() {
    let all = registry::all();
    let names: BTreeSet<_> = all.iter().map(|d| d.name).collect();
    let orders: BTreeSet<_> = all.iter().map(|d| d.order).collect();
    assert_eq!(names.len(), all.len(), "names are unique");
    assert_eq!(orders.len(), all.len(), "order numbers are unique");
    for d in &all {
        assert!(!d.heading.is_empty() && !d.display.is_empty(), "{}", d.name);
        assert!(
            d.description.trim().ends_with('.'),
            "{}: description ends with a period",
            d.name
        );
        assert!(
            d.effect.trim().ends_with('.'),
            "{}: effect ends with a period",
            d.name
        );
        assert!(
            d.name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            "{}",
            d.name
        );
        assert!(!d.families.is_empty(), "{}", d.name);
        assert!(!d.families.contains(&OsFamily::Unsupported), "{}", d.name);
    }
    let last = all.last().unwrap();
    assert_eq!(last.name, "shrink");
    assert_eq!(last.scope, Scope::Disk);
    assert!(all.iter().filter(|d| d.scope == Scope::Disk).count() == 1);
}

#[test]
fn defaults_are_those_of_the_reference() {
    let r = Registry::for_family(OsFamily::Linux);
    let on = [
        "cleanup-cache",
        "cleanup-tmp",
        "cleanup-log",
        "cleanup-userdata",
        "cleanup-passwords",
        "fix-acpid",
        "remove-persistent-net-rules",
        "remove-swap-entry",
        "change-bootmenu-timeout",
        "use-persistent-block-device-names",
        "disable-ipv6-privacy-extensions",
        "disable-predictable-network-interface-naming",
        "disable-serial-console",
        "clear-local-machine-id-configuration-file",
        "remove-networkmanager-system-connections",
        "shrink",
    ];
    let off = [
        "cleanup-mail",
        "remove-user-accounts",
        "rename-default-cloud-init-user",
        "enable-root-in-cloud-init",
    ];
    for n in on {
        assert!(r.is_enabled(n), "{n} is on by default");
    }
    for n in off {
        assert!(
            r.get(n).is_ok() && !r.is_enabled(n),
            "{n} is off by default"
        );
    }
    // Linux does not have the BSD operation, the BSDs have it and not the Linux one.
    assert!(r.get("cleanup-password").is_err());
    let bsd = Registry::for_family(OsFamily::FreeBsd);
    assert!(bsd.is_enabled("cleanup-password") && bsd.get("cleanup-passwords").is_err());
    assert!(bsd.is_enabled("cleanup-log") && bsd.is_enabled("shrink"));
    // Unsupported media have nothing at all.
    assert!(Registry::for_family(OsFamily::Unsupported)
        .descriptors()
        .is_empty());
}

#[test]
fn run_order_is_explicit() {
    let r = Registry::for_family(OsFamily::Linux);
    let names: Vec<_> = r.descriptors().iter().map(|d| d.name).collect();
    let pos = |n| names.iter().position(|x| *x == n).unwrap();
    assert!(pos("cleanup-userdata") < pos("remove-user-accounts"));
    assert!(pos("remove-user-accounts") < pos("cleanup-passwords"));
    assert!(pos("remove-swap-entry") < pos("use-persistent-block-device-names"));
    assert!(pos("cleanup-log") < pos("clear-local-machine-id-configuration-file"));
    assert_eq!(*names.last().unwrap(), "shrink");
}

#[test]
fn disables_apply_before_enables_and_typos_are_errors() {
    let mut r = Registry::for_family(OsFamily::Linux);
    r.select(
        &["cleanup-log".into(), "CLEANUP-MAIL".into()],
        &["cleanup_mail".into(), "cleanup-log".into()],
    )
    .unwrap();
    assert!(r.is_enabled("cleanup-log") && r.is_enabled("cleanup-mail"));
    let before = r.clone();
    let err = r.select(&["cleanup-logs".into()], &[]).unwrap_err();
    assert!(matches!(err, SysprepError::UnknownSysprep { .. }));
    let msg = err.to_string();
    assert!(msg.starts_with("Sysprep: `cleanup-logs' does not exist for this linux image. Valid names: cleanup-userdata, "), "{msg}");
    assert!(msg.contains("cleanup-log,"), "{msg}");
    // Nothing changed by a failing selection.
    assert_eq!(before.enabled().len(), r.enabled().len());
    r.disable_all();
    assert!(r.enabled().is_empty());
}

#[test]
fn print_syspreps_has_the_original_layout() {
    let mut r = Registry::for_family(OsFamily::Linux);
    r.disable("shrink").unwrap();
    let text = r.print();
    assert!(text.starts_with("Enabled system preparation operations:\n    cleanup-userdata:\n\tDelete sensitive user data: "), "{text}");
    assert!(
        text.contains("\nDisabled system preparation operations:\n    remove-user-accounts:\n\t"),
        "{text}"
    );
    assert!(
        text.contains(
            "    shrink:\n\tShrink the last file system and update the partition table.\n\n"
        ),
        "{text}"
    );
    for line in text.lines() {
        let width = line.replace('\t', " ").chars().count();
        assert!(width <= 72, "{line:?}");
    }
    let mut none = Registry::for_family(OsFamily::Linux);
    none.disable_all();
    assert!(none
        .print()
        .starts_with("Enabled system preparation operations:\n(none)\nDisabled"));
    let json = r.to_json();
    assert_eq!(json[0]["name"], "cleanup-userdata");
    assert_eq!(json.as_array().unwrap().last().unwrap()["enabled"], false);
}

#[test]
fn progress_messages_use_parameters() {
    let mut p = Params::for_family(OsFamily::Linux);
    p.set("bootmenu_timeout", "7").unwrap();
    let r = Registry::for_family(OsFamily::Linux);
    assert_eq!(
        r.get("change-bootmenu-timeout").unwrap().message(&p),
        "Change boot menu timeout to 7 seconds"
    );
    assert_eq!(
        r.get("rename-default-cloud-init-user").unwrap().message(&p),
        "Renaming default cloud-init user to \"user\""
    );
}

#[test]
fn syspreps_doc_is_in_sync() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/syspreps.md");
    let generated = registry::markdown();
    if std::env::var_os("SNF_UPDATE_DOCS").is_some() {
        std::fs::write(path, &generated).unwrap();
    }
    let on_disk = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "docs/syspreps.md is out of date: run SNF_UPDATE_DOCS=1 cargo test -p image-creator syspreps_doc"
    );
}
