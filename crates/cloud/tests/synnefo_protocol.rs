//! The Synnefo client against the protocol server of `support/synnefo.rs`, on the
//! points where a lenient server would hide a bug: Pithos' block size and hash taken
//! from the container, the Merkle ETag, Astakos' project that is not the account,
//! Plankton's image id and updates, faults on every kind of request, and a refused
//! registration that leaves nothing behind.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use snf_cloud::{
    Account, Cloud, CloudError, CloudOptions, HttpOptions, ImageSpec, Publication, Secret,
};
use support::synnefo::{hash_block_with, merkle, Fault, Kind, Synnefo, DEFAULT_BLOCK_SIZE};
use support::{image_file, pseudo_random, Recorder};

const TOKEN: &str = "synnefo-token-Proto42";

fn fast_opts() -> CloudOptions {
    CloudOptions {
        http: HttpOptions {
            backoff: Duration::from_millis(10),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn connect(server: &Synnefo) -> Cloud {
    let account = Account::from_url_token(&server.auth_url(), Secret::new(TOKEN));
    Cloud::connect_with(&account, fast_opts(), &Recorder::default()).unwrap()
}

fn props() -> BTreeMap<String, String> {
    [("OSFAMILY", "linux"), ("ROOT_PARTITION", "1")]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .into()
}

/// The block hashes of `data` as the server must have them.
fn hashes(algo: &str, bs: usize, data: &[u8]) -> Vec<String> {
    data.chunks(bs).map(|b| hash_block_with(algo, b)).collect()
}

#[test]
fn default_block_size_and_the_merkle_etag() {
    let server = Synnefo::start(TOKEN, DEFAULT_BLOCK_SIZE);
    let cloud = connect(&server);
    let dir = tempfile::tempdir().unwrap();
    let data = pseudo_random(5 << 20, 101);
    let image = image_file(&dir.path().join("img"), &data);
    let stats = cloud
        .store()
        .upload("images", "img", &image, &Recorder::default())
        .unwrap();
    assert_eq!(stats.pieces_total, 2, "4 MiB blocks");
    let obj = server.object("images", "img").unwrap();
    let expected = hashes("sha256", DEFAULT_BLOCK_SIZE as usize, &data);
    assert_eq!(obj.hashes, expected);
    assert_eq!(obj.hash, merkle("sha256", &expected));
    assert_eq!(server.object_data("images", "img").unwrap(), data);
}

#[test]
fn block_size_and_hash_algorithm_come_from_the_container() {
    let bs = 256 << 10;
    let server = Synnefo::start_with(TOKEN, bs, "sha512");
    let cloud = connect(&server);
    let dir = tempfile::tempdir().unwrap();
    // 5 blocks and a bit, one of them all zeros, one ending in zeros
    let mut data = pseudo_random(5 * bs as usize + 77, 102);
    data[bs as usize..2 * bs as usize].fill(0);
    data[4 * bs as usize - 9..4 * bs as usize].fill(0);
    let image = image_file(&dir.path().join("img"), &data);
    let stats = cloud
        .store()
        .upload("c", "img", &image, &Recorder::default())
        .unwrap();
    assert_eq!(stats.pieces_total, 6);
    let obj = server.object("c", "img").unwrap();
    let expected = hashes("sha512", bs as usize, &data);
    assert_eq!(obj.hashes, expected);
    assert!(obj.hashes.iter().all(|h| h.len() == 128), "sha512 hashes");
    assert_eq!(obj.hash, merkle("sha512", &expected));
    assert_eq!(server.object_data("c", "img").unwrap(), data);
}

#[test]
fn the_default_project_is_not_the_pithos_account() {
    let server = Synnefo::start(TOKEN, 1 << 20);
    let cloud = connect(&server);
    let (uuid, project) = {
        let st = server.state.lock().unwrap();
        (st.uuid.clone(), st.project.clone())
    };
    assert_ne!(uuid, project);
    assert_eq!(cloud.session().user_id, uuid);
    assert_eq!(
        cloud.session().project_id.as_deref(),
        Some(project.as_str())
    );
    // Pithos answers 403 under any other account: the upload shows which one is used
    let dir = tempfile::tempdir().unwrap();
    let image = image_file(&dir.path().join("img"), &pseudo_random(1000, 103));
    cloud
        .store()
        .upload("images", "x", &image, &Recorder::default())
        .unwrap();
}

#[test]
fn registering_the_same_location_again_updates_that_image() {
    let server = Synnefo::start(TOKEN, 1 << 20);
    let cloud = connect(&server);
    let dir = tempfile::tempdir().unwrap();
    let image = image_file(&dir.path().join("img"), &pseudo_random(3 << 20, 104));
    let p = props();
    let first = Publication {
        container: "images",
        object: "deb.diskdump",
        register: Some(ImageSpec {
            name: "Debian",
            properties: &p,
            public: false,
        }),
        force: false,
    };
    let a = cloud.publish(&first, &image, &Recorder::default()).unwrap();
    let a = a.answer.unwrap();
    let uuid = server.object("images", "deb.diskdump").unwrap().uuid;
    assert_eq!(a["id"], uuid.as_str());
    assert_eq!(a["status"], "AVAILABLE");
    assert_eq!(a["is-public"], "False");
    let again = Publication {
        register: Some(ImageSpec {
            name: "Debian, again",
            properties: &p,
            public: true,
        }),
        force: true,
        ..first
    };
    let b = cloud.publish(&again, &image, &Recorder::default()).unwrap();
    let b = b.answer.unwrap();
    assert_eq!(b["id"], uuid.as_str(), "the same image, updated");
    assert_eq!(b["name"], "Debian, again");
    assert_eq!(b["is-public"], "True");
}

#[test]
fn failures_on_every_kind_of_request_are_retried() {
    let kinds = [
        Kind::Auth,
        Kind::ContainerPut,
        Kind::ContainerHead,
        Kind::BlockPost,
        Kind::HashmapPut,
        Kind::ObjectRead,
        Kind::ObjectPost,
        Kind::Register,
        Kind::Quotas,
    ];
    for fault in [Fault::Unavailable, Fault::Drop] {
        for kind in kinds {
            let server = Synnefo::start(TOKEN, 1 << 20);
            server.set_fault_on(kind, fault, 1);
            let cloud = connect(&server);
            let dir = tempfile::tempdir().unwrap();
            let data = pseudo_random((2 << 20) + 5, 105);
            let image = image_file(&dir.path().join("img"), &data);
            let p = props();
            let publication = Publication {
                container: "images",
                object: "img",
                register: Some(ImageSpec {
                    name: "img",
                    properties: &p,
                    public: true,
                }),
                force: false,
            };
            cloud.preflight("images", "img", true, false).unwrap();
            cloud
                .publish(&publication, &image, &Recorder::default())
                .unwrap_or_else(|e| panic!("{fault:?} on {kind:?}: {e}"));
            assert_eq!(server.object_data("images", "img").unwrap(), data);
            let st = server.state.lock().unwrap();
            assert!(
                st.requests
                    .iter()
                    .any(|r| r == &format!("{kind:?} -> fault {fault:?}")),
                "{kind:?} was not exercised: {:?}",
                st.requests
            );
        }
    }
}

#[test]
fn a_refused_registration_leaves_nothing_of_the_run() {
    let server = Synnefo::start(TOKEN, 1 << 20);
    let cloud = connect(&server);
    let dir = tempfile::tempdir().unwrap();
    let image = image_file(&dir.path().join("img"), &pseudo_random(3 << 20, 106));
    let p = props();
    let publication = Publication {
        container: "images",
        object: "img",
        register: Some(ImageSpec {
            name: "img",
            properties: &p,
            public: true,
        }),
        force: false,
    };
    server.set_fault_on(Kind::Register, Fault::Status(403), 1);
    let e = cloud
        .publish(&publication, &image, &Recorder::default())
        .unwrap_err();
    assert!(matches!(e, CloudError::Http { status: 403, .. }), "{e}");
    assert!(
        server.objects("images").is_empty(),
        "{:?}",
        server.objects("images")
    );
    // a rerun needs no -f
    cloud.preflight("images", "img", true, false).unwrap();
    cloud
        .publish(&publication, &image, &Recorder::default())
        .unwrap();
}

#[test]
fn a_diskspace_quota_is_checked_before_any_block_is_sent() {
    let server = Synnefo::start(TOKEN, 1 << 20);
    let cloud = connect(&server);
    let dir = tempfile::tempdir().unwrap();
    let first = image_file(&dir.path().join("a"), &pseudo_random(3 << 20, 108));
    cloud
        .store()
        .upload("images", "a", &first, &Recorder::default())
        .unwrap();
    server.set_diskspace_quota((5 << 20) + 100);
    let second = image_file(&dir.path().join("b"), &pseudo_random(3 << 20, 109));
    let publication = Publication {
        container: "images",
        object: "b",
        register: None,
        force: false,
    };
    let posts = server.block_posts();
    let e = cloud
        .publish(&publication, &second, &Recorder::default())
        .unwrap_err();
    assert!(matches!(e, CloudError::Quota { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("(3145728 bytes needed, 2097252 available)"),
        "{e}"
    );
    assert_eq!(server.block_posts(), posts, "no block was sent");
    assert_eq!(server.objects("images"), ["a"]);
    // replacing `a' frees its own bytes: that fits
    let again = Publication {
        object: "a",
        force: true,
        ..publication
    };
    cloud
        .publish(&again, &second, &Recorder::default())
        .unwrap();
}

/// Raw request to the server; status, headers, body.
fn raw(
    server: &Synnefo,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, ureq::http::HeaderMap, Vec<u8>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut b = ureq::http::Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", server.addr));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let mut r = agent.run(b.body(body.to_vec()).unwrap()).unwrap();
    let status = r.status().as_u16();
    let h = r.headers().clone();
    let body = if method == "HEAD" {
        Vec::new()
    } else {
        r.body_mut().read_to_vec().unwrap()
    };
    (status, h, body)
}

#[test]
fn the_server_follows_the_pithos_and_astakos_protocol() {
    let bs = 64 << 10;
    let server = Synnefo::start(TOKEN, bs);
    let uuid = server.state.lock().unwrap().uuid.clone();
    // Astakos: an empty body is the public catalog, without a token or a user
    let (st, _, body) = raw(&server, "POST", "/identity/v2.0/tokens", &[], b"");
    assert_eq!(st, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(v["access"]["serviceCatalog"].is_array() && v["access"]["token"].is_null());
    let image_url = v["access"]["serviceCatalog"][2]["endpoints"][0]["publicURL"]
        .as_str()
        .unwrap();
    assert!(image_url.ends_with("/image"), "no version: {image_url}");

    let auth = [("X-Auth-Token", TOKEN)];
    let c = format!("/object-store/v1/{uuid}/c");
    assert_eq!(raw(&server, "PUT", &c, &auth, b"").0, 201);
    // a block POST of 2.5 blocks is cut into blocks: three hashes
    let data = pseudo_random(2 * bs as usize + bs as usize / 2, 107);
    let (st, _, body) = raw(
        &server,
        "POST",
        &format!("{c}?update&format=json"),
        &[
            ("X-Auth-Token", TOKEN),
            ("Content-Type", "application/octet-stream"),
        ],
        &data,
    );
    assert_eq!(st, 202);
    let got: Vec<String> = serde_json::from_slice(&body).unwrap();
    assert_eq!(got, hashes("sha256", bs as usize, &data));
    let map = serde_json::json!({"bytes": data.len(), "hashes": got}).to_string();
    let obj = format!("{c}/o?hashmap&format=json");
    // the hashmap PUT needs a Content-Type (411, as the API says)
    assert_eq!(raw(&server, "PUT", &obj, &auth, map.as_bytes()).0, 411);
    // a bad X-Object-Sharing is refused
    let (st, _, _) = raw(
        &server,
        "PUT",
        &obj,
        &[
            ("X-Auth-Token", TOKEN),
            ("Content-Type", "application/octet-stream"),
            ("X-Object-Sharing", "everyone"),
        ],
        map.as_bytes(),
    );
    assert_eq!(st, 400);
    let (st, h, _) = raw(
        &server,
        "PUT",
        &obj,
        &[
            ("X-Auth-Token", TOKEN),
            ("Content-Type", "application/octet-stream"),
            ("X-Object-Sharing", "read=*, bob"),
        ],
        map.as_bytes(),
    );
    assert_eq!(st, 201);
    assert_eq!(h["etag"].to_str().unwrap(), merkle("sha256", &got));
    assert!(h.contains_key("x-object-version"));
    assert_eq!(
        server.object("c", "o").unwrap().sharing.as_deref(),
        Some("read=*")
    );
    assert_eq!(server.object_data("c", "o").unwrap(), data);
}
