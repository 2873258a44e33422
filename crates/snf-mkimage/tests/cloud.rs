//! `snf-mkimage -u/-r` against the real Keystone, Swift and Glance started by
//! scripts/with-openstack.sh (the OS_* variables form the `envvars` cloud).

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

fn require_openstack() {
    if std::env::var("OS_AUTH_URL").map_or(true, |v| v.is_empty()) {
        panic!(
            "OS_AUTH_URL is not set: these tests need the local OpenStack; run them through \
             scripts/with-openstack.sh (scripts/test.sh does)"
        );
    }
}

fn example(dir: &Path) -> std::path::PathBuf {
    let img = dir.join("example.raw");
    snf_testkit::fixture::example_disk(&img);
    img
}

#[test]
fn upload_and_register_in_one_command() {
    require_openstack();
    let dir = tempdir();
    let src = example(dir.path());
    let before = sha256(&src);
    let out = dir.path().join("out.diskdump");
    let name = format!("cli-{}.diskdump", std::process::id());
    // unique: -f below replaces this project's images of the same name
    let image_name = format!("CLI test image {}", std::process::id());
    let args = [
        "-c",
        "envvars",
        "--container",
        "cli-tests",
        "-u",
        &name,
        "-r",
        &image_name,
        "-m",
        "EXTRA=value",
        "-o",
        out.to_str().unwrap(),
        src.to_str().unwrap(),
    ];
    let run1 = run(&args);
    assert!(run1.status.success(), "{}", stderr(&run1));
    // The registration answer is the only thing on stdout, as JSON.
    let answer: serde_json::Value = serde_json::from_str(&stdout(&run1))
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", stdout(&run1)));
    let text = answer.to_string();
    assert!(text.contains(&image_name), "{text}");
    let first_id = answer["id"].as_str().unwrap().to_owned();
    assert!(text.contains("EXTRA"), "{text}");
    let md5 = std::fs::read_to_string(out.with_extension("diskdump.md5sum")).unwrap();
    let md5 = md5.split_whitespace().next().unwrap();
    assert!(
        text.contains(md5),
        "the registered checksum is ours: {text}"
    );
    assert!(!stderr(&run1).contains(&std::env::var("OS_PASSWORD").unwrap_or_default()));

    // The same names again without -f are refused before any local work.
    let out2 = dir.path().join("out2.diskdump");
    let mut again = args.to_vec();
    let o = again.iter().position(|a| *a == "-o").unwrap();
    again[o + 1] = out2.to_str().unwrap();
    let run2 = run(&again);
    assert_eq!(run2.status.code(), Some(1), "{}", stderr(&run2));
    assert!(stderr(&run2).contains("exists"), "{}", stderr(&run2));
    assert!(!out2.exists(), "nothing local was done");

    // With -f and without -o, the image goes up again (dumped in the work directory).
    let mut forced: Vec<&str> = again[..o].to_vec();
    forced.extend_from_slice(&again[o + 2..]);
    forced.insert(0, "-f");
    let run3 = run(&forced);
    assert!(run3.status.success(), "{}", stderr(&run3));
    // the image registered under the same name before is replaced, not duplicated
    assert!(
        stderr(&run3).contains(&format!("Replaced Glance image {first_id}")),
        "{}",
        stderr(&run3)
    );
    assert_eq!(sha256(&src), before, "the source is untouched");
}

#[test]
fn an_unknown_cloud_lists_the_known_ones() {
    let dir = tempdir();
    let src = example(dir.path());
    let out = Command::new(bin())
        .env("KAMAKI_CONFIG", dir.path().join("kamakirc"))
        .args(["-c", "no-such-cloud", "-u", "x", src.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("no-such-cloud"), "{err}");
    assert_eq!(err.matches("Error:").count(), 1, "{err}");
}
