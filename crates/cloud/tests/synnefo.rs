//! The Synnefo side (Astakos, Pithos, Plankton) against the protocol server in
//! `support/synnefo.rs`.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use snf_cloud::{
    Account, AccountFinder, Cloud, CloudError, CloudOptions, Flavor, HttpOptions, Secret,
};
use support::synnefo::{hash_block, Fault, Synnefo};
use support::{image_file, pseudo_random, Recorder};

const TOKEN: &str = "synnefo-token-Xyz123";
const BS: u64 = 1 << 20;

fn fast_opts() -> CloudOptions {
    CloudOptions {
        http: HttpOptions {
            backoff: Duration::from_millis(10),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn kamaki_account(server: &Synnefo, dir: &std::path::Path) -> Account {
    let rc = dir.join("kamakirc");
    std::fs::write(
        &rc,
        format!(
            "[global]\ndefault_cloud = fake\n\n[cloud \"fake\"]\nurl = {}\ntoken = {TOKEN}\n",
            server.auth_url()
        ),
    )
    .unwrap();
    let finder = AccountFinder {
        env: [("KAMAKI_CONFIG".to_owned(), rc.display().to_string())].into(),
        cwd: dir.to_path_buf(),
    };
    finder.find("fake").unwrap()
}

#[test]
fn upload_register_public_in_a_custom_container() {
    let server = Synnefo::start(TOKEN, BS);
    let dir = tempfile::tempdir().unwrap();
    let account = kamaki_account(&server, dir.path());
    let rep = Recorder::default();
    let cloud = Cloud::connect_with(&account, fast_opts(), &rep).unwrap();
    assert_eq!(cloud.flavor(), Flavor::Synnefo);
    cloud
        .preflight("custom", "deb.diskdump", true, false)
        .unwrap();

    // 5 blocks and a bit: two identical blocks, one all-zero block, one with trailing zeros
    let mut data = pseudo_random(5 * BS as usize + 1000, 1);
    let (a, b) = data.split_at_mut(BS as usize);
    b[..BS as usize].copy_from_slice(a);
    data[2 * BS as usize..3 * BS as usize].fill(0);
    data[4 * BS as usize - 10..4 * BS as usize].fill(0);
    let image = image_file(&dir.path().join("img"), &data);
    let stats = cloud
        .upload_image("custom", "deb.diskdump", &image, &rep)
        .unwrap();
    assert_eq!(stats.pieces_total, 6);
    // block 1 repeats block 0: five distinct blocks, sent once each
    assert_eq!(stats.pieces_sent, 5, "{stats:?}");
    assert_eq!(
        server.block_posts(),
        5 + 1,
        "5 image blocks and the md5sum's one block"
    );
    assert_eq!(server.object_data("custom", "deb.diskdump").unwrap(), data);
    let obj = server.object("custom", "deb.diskdump").unwrap();
    assert_eq!(
        obj.hashes[2],
        hash_block(b""),
        "an all-zero block hashes as the empty string"
    );
    assert_eq!(obj.content_type, "application/octet-stream");
    let md5sum = server.object_data("custom", "deb.diskdump.md5sum").unwrap();
    assert_eq!(
        String::from_utf8(md5sum).unwrap(),
        format!("{}  deb.diskdump\n", image.md5)
    );
    assert_eq!(
        server
            .object("custom", "deb.diskdump.md5sum")
            .unwrap()
            .content_type,
        "text/plain"
    );

    let props: BTreeMap<String, String> = [
        ("OSFAMILY", "linux"),
        ("DESCRIPTION", "Debian 12 — ünïcode & spaces"),
        ("ROOT_PARTITION", "1"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .into();
    let answer = cloud
        .register(
            "custom",
            "deb.diskdump",
            "Debian Image",
            &image,
            &props,
            true,
            &rep,
        )
        .unwrap();
    assert_eq!(answer["name"], "Debian Image");
    assert_eq!(
        answer["location"],
        "pithos://0a1b2c3d-user-uuid/custom/deb.diskdump"
    );
    assert_eq!(answer["is-public"], "True");
    assert_eq!(answer["disk-format"], "diskdump");
    assert_eq!(answer["properties"]["osfamily"], "linux");
    assert_eq!(
        answer["properties"]["description"],
        "Debian 12 — ünïcode & spaces"
    );

    let st = server.state.lock().unwrap();
    let h = &st.registrations[0].headers;
    assert_eq!(h["x-image-meta-name"], "Debian%20Image");
    assert_eq!(h["x-image-meta-disk-format"], "diskdump");
    assert_eq!(h["x-image-meta-is-public"], "true");
    assert_eq!(h["x-image-meta-property-root_partition"], "1");
    assert!(
        !h.contains_key("x-image-meta-size") && !h.contains_key("x-image-meta-checksum"),
        "the reference sends neither"
    );
    drop(st);
    // the .meta object is the answer; public: md5sum and meta shared with everyone, in
    // the container given (the original shared them in `images')
    let meta: serde_json::Value =
        serde_json::from_slice(&server.object_data("custom", "deb.diskdump.meta").unwrap())
            .unwrap();
    assert_eq!(meta, answer);
    assert_eq!(
        server
            .object("custom", "deb.diskdump.meta")
            .unwrap()
            .content_type,
        "application/json"
    );
    assert_eq!(
        server
            .object("custom", "deb.diskdump.md5sum")
            .unwrap()
            .sharing
            .as_deref(),
        Some("read=*")
    );
    assert_eq!(
        server
            .object("custom", "deb.diskdump.meta")
            .unwrap()
            .sharing
            .as_deref(),
        Some("read=*")
    );
    // Plankton itself lets everyone read the image object of a public image
    let obj = server.object("custom", "deb.diskdump").unwrap();
    assert_eq!(obj.sharing.as_deref(), Some("read=*"));
    assert_eq!(
        answer["id"],
        obj.uuid.as_str(),
        "the image id is the object's uuid"
    );
    assert_eq!(answer["status"], "AVAILABLE");
    assert_eq!(answer["checksum"], obj.hash.as_str());
    assert_eq!(answer["properties"]["root_partition"], "1");
    assert!(!server
        .state
        .lock()
        .unwrap()
        .containers
        .contains_key("images"));
    assert!(!rep.text().contains(TOKEN));
}

#[test]
fn existing_objects_need_force() {
    let server = Synnefo::start(TOKEN, BS);
    let dir = tempfile::tempdir().unwrap();
    let account = Account::from_url_token(&server.auth_url(), Secret::new(TOKEN));
    let rep = Recorder::default();
    let cloud = Cloud::connect_with(&account, fast_opts(), &rep).unwrap();
    let image = image_file(&dir.path().join("img"), &pseudo_random(3 * BS as usize, 2));
    cloud.upload_image("images", "x", &image, &rep).unwrap();
    let e = cloud.preflight("images", "x", false, false).unwrap_err();
    assert_eq!(
        e.to_string(),
        "remote object `images/x' exists (use --force to overwrite it)"
    );
    // only the md5sum there: still refused; with -r the .meta is checked as well
    server
        .state
        .lock()
        .unwrap()
        .containers
        .get_mut("images")
        .unwrap()
        .remove("x");
    assert!(
        matches!(cloud.preflight("images", "x", false, false), Err(CloudError::Exists { object, .. }) if object == "x.md5sum")
    );
    server
        .state
        .lock()
        .unwrap()
        .containers
        .get_mut("images")
        .unwrap()
        .remove("x.md5sum");
    cloud.preflight("images", "x", false, false).unwrap();
    cloud
        .store()
        .put_bytes("images", "x.meta", b"{}", "application/json")
        .unwrap();
    cloud.preflight("images", "x", false, false).unwrap();
    assert!(
        matches!(cloud.preflight("images", "x", true, false), Err(CloudError::Exists { object, .. }) if object == "x.meta")
    );
    cloud.preflight("images", "x", true, true).unwrap();
}

#[test]
fn reupload_with_one_changed_block_sends_one_block() {
    let server = Synnefo::start(TOKEN, BS);
    let dir = tempfile::tempdir().unwrap();
    let account = Account::from_url_token(&server.auth_url(), Secret::new(TOKEN));
    let rep = Recorder::default();
    let cloud = Cloud::connect_with(&account, fast_opts(), &rep).unwrap();
    let mut data = pseudo_random(16 * BS as usize, 3);
    let image = image_file(&dir.path().join("img"), &data);
    let first = cloud.store().upload("images", "img", &image, &rep).unwrap();
    assert_eq!(first.pieces_sent, 16);
    data[7 * BS as usize + 12345] ^= 0xff;
    let image = image_file(&dir.path().join("img"), &data);
    let posts = server.block_posts();
    let second = cloud.store().upload("images", "img", &image, &rep).unwrap();
    println!(
        "blocks sent: {} of {}",
        second.pieces_sent, second.pieces_total
    );
    assert_eq!(second.pieces_sent, 1);
    assert_eq!(second.pieces_skipped, 15);
    assert_eq!(server.block_posts() - posts, 1);
    assert_eq!(server.object_data("images", "img").unwrap(), data);
}

#[test]
fn transient_failures_are_retried() {
    let server = Synnefo::start(TOKEN, BS);
    let dir = tempfile::tempdir().unwrap();
    let account = Account::from_url_token(&server.auth_url(), Secret::new(TOKEN));
    let rep = Recorder::default();
    let cloud = Cloud::connect_with(&account, fast_opts(), &rep).unwrap();
    let data = pseudo_random(4 * BS as usize, 4);
    let image = image_file(&dir.path().join("img"), &data);
    server.set_fault(Fault::Unavailable, 2);
    cloud.store().upload("images", "a", &image, &rep).unwrap();
    assert_eq!(server.object_data("images", "a").unwrap(), data);
    let data = pseudo_random(4 * BS as usize, 5);
    let image = image_file(&dir.path().join("img2"), &data);
    server.set_fault(Fault::Drop, 2);
    cloud.store().upload("images", "b", &image, &rep).unwrap();
    assert_eq!(server.object_data("images", "b").unwrap(), data);
    // a server that keeps failing: a clear error naming the block, after the retries
    server.set_fault(Fault::Unavailable, 10_000);
    let image = image_file(&dir.path().join("img3"), &pseudo_random(BS as usize, 6));
    let e = cloud
        .store()
        .upload("images", "c", &image, &rep)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("Pithos: uploading block 1 of `images/c' failed: 503 Service Unavailable"),
        "{e}"
    );
    assert!(
        server.object("images", "c").is_none(),
        "no object for a failed upload"
    );
}

#[test]
fn bad_token_and_unreachable_server() {
    let server = Synnefo::start(TOKEN, BS);
    let account = Account::from_url_token(&server.auth_url(), Secret::new("wrong-token-123"));
    let e = Cloud::connect_with(&account, fast_opts(), &Recorder::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("401 Unauthorized"), "{e}");
    assert!(!e.contains("wrong-token-123"), "{e}");
    // nothing listens there
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let account = Account::from_url_token(
        &format!("http://127.0.0.1:{port}/identity/v2.0"),
        Secret::new(TOKEN),
    );
    let notes = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = std::sync::Arc::clone(&notes);
    let opts = CloudOptions {
        http: HttpOptions {
            attempts: 2,
            backoff: Duration::from_millis(10),
            on_retry: Some(snf_cloud::RetryNotice(std::sync::Arc::new(
                move |n: &str| seen.lock().unwrap().push(n.to_string()),
            ))),
            ..Default::default()
        },
        ..Default::default()
    };
    let e = Cloud::connect_with(&account, opts, &Recorder::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("failed after 2 attempt(s)") && e.contains("could not connect"),
        "{e}"
    );
    // The retry was told, with its cause.
    let notes = notes.lock().unwrap().clone();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].contains("retrying 2/2") && notes[0].contains("could not connect"),
        "{notes:?}"
    );
}
