//! End to end in a real terminal (tmux): the wizard, from the example disk to an image
//! registered in the local test cloud (the real Keystone/Swift/Glance started by
//! scripts/with-openstack.sh), then the local copy it offers to keep. The image Glance
//! serves has the local copy's MD5.

mod common;

use std::process::Command;

use common::{example_disk, workdir_left, Tmux};
use image_creator::cloud::{AccountFinder, Cloud};
use image_creator::core::report::quiet;

fn env(k: &str) -> String {
    match std::env::var(k) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{k} is not set: this test needs the real Keystone/Swift/Glance; run it through \
             scripts/with-openstack.sh (e.g. scripts/with-openstack.sh cargo test -p snf-image-creator --test tmux_wizard)"
        ),
    }
}

fn curl(token: &str, method: &str, url: &str) -> String {
    common::require("curl");
    let out = Command::new("curl")
        .args([
            "-s",
            "-k",
            "-X",
            method,
            "-H",
            &format!("X-Auth-Token: {token}"),
            url,
        ])
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn wizard_registers_the_image_in_the_test_cloud() {
    env("OS_AUTH_URL");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    example_disk(d);
    let tmp = d.display().to_string();
    let name = format!(
        "snf-tui-wizard-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    );
    // The OS_* account only: no kamaki or clouds.yaml of the machine's user. The
    // admin's, which the test cloud's policy lets publish images.
    let admin = [
        ("OS_USERNAME", env("SNF_TEST_ADMIN_USERNAME")),
        ("OS_PASSWORD", env("SNF_TEST_ADMIN_PASSWORD")),
        ("OS_PROJECT_NAME", env("SNF_TEST_ADMIN_PROJECT")),
    ];
    let mut os_vars: std::collections::BTreeMap<String, String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("OS_"))
        .collect();
    for (k, v) in &admin {
        os_vars.insert(k.to_string(), v.clone());
    }
    let mut vars: Vec<(String, String)> = os_vars.clone().into_iter().collect();
    vars.push(("HOME".into(), tmp.clone()));
    vars.push(("XDG_CONFIG_HOME".into(), tmp.clone()));
    vars.push((
        "KAMAKI_CONFIG".into(),
        d.join("kamakirc").display().to_string(),
    ));
    vars.push(("TMPDIR".into(), tmp.clone()));
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let log = d.join("tui.log").display().to_string();
    let t = Tmux::start(d, &["-l", &log, "--tmpdir", &tmp, "ex.raw"], &vars, 80, 24);

    t.wait_for("Welcome");
    t.keys(&["Enter"]);
    let s = t.wait_for("(1/4) Clouds");
    assert!(s.contains("envvars"), "{s}");
    t.keys(&["e", "Enter"]);
    t.wait_for("(2/4) Image Name");
    t.keys(&["C-u"]);
    t.keys(&["Enter"]);
    t.wait_for("cannot be empty");
    t.keys(&["Enter"]);
    t.wait_for("(2/4) Image Name");
    t.type_text(&name);
    t.keys(&["Enter"]);
    let s = t.wait_for("(3/4) Image Description");
    assert!(
        s.contains("Debian GNU/Linux 12 (bookworm)"),
        "the default is the detected description:\n{s}"
    );
    t.keys(&["Enter"]);
    let s = t.wait_for("(4/4) Registration Type");
    assert!(s.contains("(*) Private"), "{s}");
    assert!(
        s.contains("Space: choose"),
        "the screen says what Space does:\n{s}"
    );
    // Enter on the highlighted entry chooses it: what is highlighted is what one gets.
    t.keys(&["Down", "Enter"]);
    let s = t.wait_for("Confirmation");
    assert!(
        s.contains("Cloud: envvars") && s.contains(&format!("Image Name: {name}")),
        "{s}"
    );
    assert!(s.contains("Registration Type: Public"), "{s}");
    t.keys(&["Enter"]);
    t.wait_for_within("Would you like to", std::time::Duration::from_secs(300));
    t.keys(&["Left", "Enter"]);
    t.wait_for("Save image as...");
    t.keys(&["C-u"]);
    t.type_text(&d.join("local.diskdump").display().to_string());
    t.keys(&["Enter"]);
    // The last screen: what was made, where, and what next.
    let s = t.wait_for("Image created");
    let md5sum = std::fs::read_to_string(d.join("local.diskdump.md5sum")).unwrap();
    let md5 = md5sum.split_whitespace().next().unwrap().to_string();
    for part in [
        "Image ID:",
        "Location:",
        "local.diskdump",
        md5.as_str(),
        "Size:",
        "Next:",
        "(public)",
    ] {
        assert!(s.contains(part), "the summary shows {part:?}:\n{s}");
    }
    t.keys(&["End", "Enter"]);
    assert_eq!(t.wait_exit(), 0, "{}", t.screen());
    assert!(!workdir_left(d), "the work directory was removed");
    // One dump for the upload and the local copy.
    let log_text = std::fs::read_to_string(d.join("tui.log")).unwrap();
    assert_eq!(
        log_text.matches("Dumping image file ... done").count(),
        1,
        "the image is dumped once:\n{log_text}"
    );
    let mut finder = AccountFinder::from_process();
    finder.env.extend(os_vars);
    let account = finder.find("envvars").unwrap();
    let cloud = Cloud::connect(&account, quiet().as_ref()).unwrap();
    let token = cloud.session().token.expose().to_string();
    let glance = cloud.session().endpoint("image", "public", None).unwrap();
    let list = curl(&token, "GET", &format!("{glance}/v2/images?name={name}"));
    let v: serde_json::Value =
        serde_json::from_str(&list).unwrap_or_else(|e| panic!("{e}: {list}"));
    let images = v["images"].as_array().unwrap();
    assert_eq!(images.len(), 1, "{list}");
    let image = &images[0];
    let id = image["id"].as_str().unwrap().to_string();
    curl(&token, "DELETE", &format!("{glance}/v2/images/{id}"));
    assert_eq!(image["status"], "active", "{image}");
    assert_eq!(image["visibility"], "public", "{image}");
    assert_eq!(
        image["checksum"],
        md5.as_str(),
        "Glance has the bytes of the local copy"
    );
    assert_eq!(image["OSFAMILY"], "linux", "{image}");
    assert_eq!(
        image["DESCRIPTION"], "Debian GNU/Linux 12 (bookworm)",
        "{image}"
    );
}

#[test]
fn upload_of_an_unprepared_image_asks_first() {
    env("OS_AUTH_URL");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    example_disk(d);
    let tmp = d.display().to_string();
    let mut vars: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("OS_"))
        .collect();
    for k in ["HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME", "TMPDIR"] {
        vars.push((k.into(), tmp.clone()));
    }
    vars.push((
        "KAMAKI_CONFIG".into(),
        d.join("kamakirc").display().to_string(),
    ));
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let t = Tmux::start(d, &["--tmpdir", &tmp, "ex.raw"], &vars, 80, 24);
    t.wait_for("Welcome");
    t.keys(&["Right", "Enter"]);
    t.wait_for("Image Creator for Synnefo");
    t.keys(&["r", "Enter"]);
    t.wait_for("Image Registration Menu");
    t.keys(&["c", "Enter"]);
    t.wait_for("Please select a cloud:");
    t.keys(&["Enter"]);
    t.wait_for("current: envvars");
    t.keys(&["u", "Enter"]);
    let s = t.wait_for("No system preparation");
    assert!(s.contains("Continue with the image as it is?"), "{s}");
    // No (the default) goes back without uploading.
    t.keys(&["Enter"]);
    t.wait_for("Image Registration Menu");
    t.keys(&["u", "Enter"]);
    t.wait_for("No system preparation");
    t.keys(&["Left", "Enter"]);
    t.wait_for("Upload Image");
    t.keys(&["Escape"]);
    t.wait_for("Image Registration Menu");
}
