//! Upload and registration against the real Keystone v3 / Swift / Glance v2 started by
//! scripts/with-openstack.sh (the tests fail with that hint when it is not running).

mod support;

use std::collections::BTreeMap;

use snf_cloud::{CloudError, Flavor, ObjectStore};
use support::openstack::{
    admin, call, connect, delete_image, glance_url, other, swift_url, tester, unique,
};
use support::{image_file, md5_hex, pseudo_random, Recorder};

fn props() -> BTreeMap<String, String> {
    [
        ("OSFAMILY", "linux"),
        ("ROOT_PARTITION", "1"),
        ("USERS", "root"),
        ("DESCRIPTION", "Debian 12 (ünïcode)"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .into()
}

#[test]
fn upload_register_private_and_download_back() {
    let cloud = connect(&tester());
    assert_eq!(cloud.flavor(), Flavor::OpenStack);
    let (c, name) = (unique("priv"), "debian.diskdump");
    let dir = tempfile::tempdir().unwrap();
    let data = pseudo_random(3 << 20, 11);
    let image = image_file(&dir.path().join("img"), &data);
    cloud.preflight(&c, name, true, false).unwrap();
    let rep = Recorder::default();
    let stats = cloud.upload_image(&c, name, &image, &rep).unwrap();
    assert_eq!((stats.pieces_sent, stats.large_object), (1, false));
    let answer = cloud
        .register(&c, name, &c, &image, &props(), false, &rep)
        .unwrap();
    let id = answer["id"].as_str().unwrap().to_owned();
    assert_eq!(answer["status"], "active");
    assert_eq!(answer["checksum"], image.md5.as_str());
    assert_eq!(answer["disk_format"], "raw");
    assert_eq!(answer["container_format"], "bare");
    assert_eq!(answer["visibility"], "private");
    assert_eq!(answer["OSFAMILY"], "linux");
    assert_eq!(answer["DESCRIPTION"], "Debian 12 (ünïcode)");

    // the image downloaded back from Glance is the local dump, byte for byte
    let (st, body) = call(
        Some(&cloud),
        "GET",
        &format!("{}/v2/images/{id}/file", glance_url(&cloud)),
    );
    assert_eq!(st, 200);
    assert!(
        body == data,
        "Glance returned different bytes ({} bytes, md5 {})",
        body.len(),
        md5_hex(&body)
    );
    // Swift has the image, NAME.md5sum and NAME.meta (the registration answer)
    let base = format!("{}/{c}", swift_url(&cloud));
    assert_eq!(call(Some(&cloud), "GET", &format!("{base}/{name}")).1, data);
    assert_eq!(
        String::from_utf8(call(Some(&cloud), "GET", &format!("{base}/{name}.md5sum")).1).unwrap(),
        format!("{}  {name}\n", image.md5)
    );
    let meta: serde_json::Value =
        serde_json::from_slice(&call(Some(&cloud), "GET", &format!("{base}/{name}.meta")).1)
            .unwrap();
    assert_eq!(meta["id"], id.as_str());
    // private: another project sees neither the image nor the objects
    let o = connect(&other());
    assert_eq!(
        call(
            Some(&o),
            "GET",
            &format!("{}/v2/images/{id}", glance_url(&o))
        )
        .0,
        404
    );
    assert_eq!(call(None, "GET", &format!("{base}/{name}.md5sum")).0, 401);
    assert!(!rep.text().contains(cloud.session().token.expose()));
    delete_image(&cloud, &id);
}

#[test]
fn existing_objects_need_force_and_reupload_replaces_them() {
    let cloud = connect(&tester());
    let (c, name) = (unique("force"), "img");
    let dir = tempfile::tempdir().unwrap();
    let rep = Recorder::default();
    let first = image_file(&dir.path().join("a"), &pseudo_random(1 << 20, 21));
    cloud.upload_image(&c, name, &first, &rep).unwrap();
    let e = cloud.preflight(&c, name, false, false).unwrap_err();
    assert!(
        matches!(&e, CloudError::Exists { object, .. } if object == name),
        "{e}"
    );
    cloud.preflight(&c, name, true, true).unwrap();
    let data = pseudo_random(2 << 20, 22);
    let second = image_file(&dir.path().join("b"), &data);
    cloud.upload_image(&c, name, &second, &rep).unwrap();
    let base = format!("{}/{c}", swift_url(&cloud));
    assert_eq!(call(Some(&cloud), "GET", &format!("{base}/{name}")).1, data);
    assert!(
        String::from_utf8(call(Some(&cloud), "GET", &format!("{base}/{name}.md5sum")).1)
            .unwrap()
            .starts_with(&second.md5)
    );
}

#[test]
fn large_object_above_the_cluster_limit() {
    let cloud = connect(&tester());
    let swift = snf_cloud::swift::Swift::new(
        snf_cloud::Http::new(Default::default()).unwrap(),
        &swift_url(&cloud),
        cloud.session().token.clone(),
        Default::default(),
    );
    let limit = swift.limits().max_file_size;
    assert!(limit <= 16 << 20, "the test cluster's max_file_size is {limit}; start it with scripts/with-openstack.sh (it sets 8 MiB)");
    let (c, name) = (unique("slo"), "big.img");
    let dir = tempfile::tempdir().unwrap();
    let rep = Recorder::default();
    let data = pseudo_random(2 * limit as usize + limit as usize / 2 + 123, 31);
    let image = image_file(&dir.path().join("img"), &data);
    let stats = cloud.upload_image(&c, name, &image, &rep).unwrap();
    assert!(stats.large_object);
    assert_eq!(
        (stats.pieces_total, stats.pieces_sent, stats.pieces_skipped),
        (3, 3, 0)
    );
    let url = format!("{}/{c}/{name}", swift_url(&cloud));
    assert_eq!(call(Some(&cloud), "GET", &url).1, data);
    // a plain PUT of that size is refused by the cluster: the SLO was needed
    let e = swift
        .put_bytes(&c, "plain", &data, "application/octet-stream")
        .unwrap_err()
        .to_string();
    assert!(e.contains("413"), "{e}");

    // re-upload of changed content: the new segments replace the old ones
    let mut data2 = data.clone();
    data2[5] ^= 1;
    let image2 = image_file(&dir.path().join("img2"), &data2);
    let stats = cloud.upload_image(&c, name, &image2, &rep).unwrap();
    assert_eq!(stats.pieces_sent, 3);
    assert_eq!(call(Some(&cloud), "GET", &url).1, data2);
    let (_, listing) = call(
        Some(&cloud),
        "GET",
        &format!("{}/{c}_segments?format=json", swift_url(&cloud)),
    );
    let segs: Vec<serde_json::Value> = serde_json::from_slice(&listing).unwrap();
    assert_eq!(segs.len(), 3, "old segments are deleted: {segs:?}");
    assert!(segs
        .iter()
        .all(|s| s["name"].as_str().unwrap().contains(&image2.md5)));
    cloud.store().delete(&c, name).unwrap();
    assert_eq!(call(Some(&cloud), "HEAD", &url).0, 404);
}

#[test]
fn public_refused_to_a_member_leaves_no_image() {
    let cloud = connect(&tester());
    let (c, name) = (unique("refused"), "img");
    let dir = tempfile::tempdir().unwrap();
    let rep = Recorder::default();
    let image = image_file(&dir.path().join("img"), &pseudo_random(1 << 20, 41));
    cloud.upload_image(&c, name, &image, &rep).unwrap();
    let e = cloud
        .register(&c, name, &c, &image, &props(), true, &rep)
        .unwrap_err();
    assert!(matches!(e, CloudError::PublicRefused { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("refused to register a public image")
            && msg.contains("nothing was registered"),
        "{msg}"
    );
    let (st, body) = call(
        Some(&cloud),
        "GET",
        &format!("{}/v2/images?name={c}", glance_url(&cloud)),
    );
    assert_eq!(st, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        v["images"].as_array().unwrap().len(),
        0,
        "no image was left behind"
    );
    assert!(!cloud.store().exists(&c, &format!("{name}.meta")).unwrap());
}

#[test]
fn public_image_seen_from_a_second_project() {
    let cloud = connect(&admin());
    let (c, name) = (unique("pub"), "pub.img");
    let dir = tempfile::tempdir().unwrap();
    let rep = Recorder::default();
    let data = pseudo_random(1 << 20, 51);
    let image = image_file(&dir.path().join("img"), &data);
    cloud.upload_image(&c, name, &image, &rep).unwrap();
    let answer = cloud
        .register(&c, name, &c, &image, &props(), true, &rep)
        .unwrap();
    let id = answer["id"].as_str().unwrap().to_owned();
    assert_eq!(answer["visibility"], "public");
    let o = connect(&other());
    let (st, body) = call(
        Some(&o),
        "GET",
        &format!("{}/v2/images/{id}", glance_url(&o)),
    );
    assert_eq!(st, 200);
    let seen: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(seen["checksum"], image.md5.as_str());
    assert_eq!(
        call(
            Some(&o),
            "GET",
            &format!("{}/v2/images/{id}/file", glance_url(&o))
        )
        .1,
        data
    );
    // the md5sum and meta objects are readable by everyone, without a token
    let base = format!("{}/{c}", swift_url(&cloud));
    let (st, body) = call(None, "GET", &format!("{base}/{name}.md5sum"));
    assert_eq!(st, 200);
    assert!(String::from_utf8(body).unwrap().starts_with(&image.md5));
    assert_eq!(call(None, "GET", &format!("{base}/{name}.meta")).0, 200);
    assert!(
        rep.text().contains("Swift shares whole containers"),
        "the user is told what was opened: {}",
        rep.text()
    );
    delete_image(&cloud, &id);
}

/// POST `body` to Keystone with `cloud`'s token; the answer as JSON.
fn keystone_post(
    cloud: &snf_cloud::Cloud,
    path: &str,
    body: serde_json::Value,
) -> serde_json::Value {
    let url = format!("{}{path}", cloud.session().identity_url);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut r = agent
        .post(&url)
        .header("X-Auth-Token", cloud.session().token.expose())
        .header("Content-Type", "application/json")
        .send(serde_json::to_vec(&body).unwrap().as_slice())
        .unwrap();
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().unwrap();
    assert!((200..300).contains(&status), "POST {url}: {status} {text}");
    serde_json::from_str(&text).unwrap()
}

#[test]
fn application_credentials_and_tokens_authenticate_too() {
    use snf_cloud::{AuthMethod, Secret};
    let password = tester();
    let cloud = connect(&password);
    let user = cloud.session().user_id.clone();

    // An application credential, by id and by name + user: it carries its project, and
    // Keystone refuses a scope beside it, so the account's project must not be sent.
    let name = unique("appcred");
    let made = keystone_post(
        &cloud,
        &format!("/users/{user}/application_credentials"),
        serde_json::json!({"application_credential": {"name": name, "secret": "s3cret-Appcred"}}),
    );
    let id = made["application_credential"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for (by_id, by_name) in [(Some(id.clone()), None), (None, Some(name.clone()))] {
        let mut a = password.clone();
        a.auth = AuthMethod::ApplicationCredential {
            id: by_id,
            name: by_name,
            secret: Secret::new("s3cret-Appcred"),
            username: None,
            user_id: Some(user.clone()),
        };
        assert!(a.scope.project_name.is_some() || a.scope.project_id.is_some());
        let c = connect(&a);
        assert_eq!(c.session().user_id, user);
        assert!(c.session().endpoint("object-store", "public", None).is_ok());
    }

    // A token: re-scoped to the account's project, or (no project) validated as it is.
    let mut a = password.clone();
    a.auth = AuthMethod::Token(cloud.session().token.clone());
    let c = connect(&a);
    assert_eq!(c.session().user_id, user);
    a.scope = Default::default();
    let c = connect(&a);
    assert_eq!(c.session().token.expose(), cloud.session().token.expose());
    assert!(c.session().endpoint("image", "public", None).is_ok());
}
