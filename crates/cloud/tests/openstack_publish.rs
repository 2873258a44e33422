//! `Cloud::publish` against the real Keystone v3 / Swift / Glance v2 started by
//! scripts/with-openstack.sh: the image crosses the network once, every refusal comes
//! before the first data byte, a failure leaves nothing of the run behind, and the same
//! image name twice is named in a warning or replaced with `force`.

mod support;

use std::collections::BTreeMap;

use serde_json::Value;
use snf_cloud::{Cloud, CloudError, ImageSpec, Publication};
use support::openstack::{
    call, call_with, connect, delete_image, glance_url, swift_url, tester, unique,
};
use support::{image_file, pseudo_random, Recorder};

/// Side files and JSON requests: what may travel beside the image's bytes.
const OVERHEAD: u64 = 64 << 10;

fn props() -> BTreeMap<String, String> {
    [("OSFAMILY", "linux"), ("ROOT_PARTITION", "1")]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .into()
}

fn objects(cloud: &Cloud, c: &str) -> Vec<String> {
    let (st, body) = call(
        Some(cloud),
        "GET",
        &format!("{}/{c}?format=json", swift_url(cloud)),
    );
    if st == 404 {
        return Vec::new();
    }
    let v: Vec<Value> = serde_json::from_slice(&body).unwrap_or_default();
    v.iter()
        .map(|o| o["name"].as_str().unwrap().to_owned())
        .collect()
}

fn images_named(cloud: &Cloud, name: &str) -> Vec<String> {
    let (st, body) = call(
        Some(cloud),
        "GET",
        &format!("{}/v2/images?name={name}", glance_url(cloud)),
    );
    assert_eq!(st, 200);
    let v: Value = serde_json::from_slice(&body).unwrap();
    v["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn registered_image_crosses_the_network_once() {
    let cloud = connect(&tester());
    let (c, name) = (unique("once"), "once.diskdump");
    let dir = tempfile::tempdir().unwrap();
    let data = pseudo_random(5 << 20, 61);
    let image = image_file(&dir.path().join("img"), &data);
    let p = props();
    let publication = Publication {
        container: &c,
        object: name,
        register: Some(ImageSpec {
            name: &c,
            properties: &p,
            public: false,
        }),
        force: false,
    };
    let rep = Recorder::default();
    let before = cloud.bytes_sent();
    let done = cloud.publish(&publication, &image, &rep).unwrap();
    let sent = cloud.bytes_sent() - before;
    println!(
        "bytes sent per image byte: {:.4}",
        sent as f64 / image.size as f64
    );
    assert!(
        (image.size..image.size + OVERHEAD).contains(&sent),
        "{sent} bytes sent for an image of {}",
        image.size
    );
    assert!(done.data_in_registry);
    let answer = done.answer.unwrap();
    let id = answer["id"].as_str().unwrap().to_owned();
    assert_eq!(answer["status"], "active");
    assert_eq!(answer["checksum"], image.md5.as_str());
    let (st, body) = call(
        Some(&cloud),
        "GET",
        &format!("{}/v2/images/{id}/file", glance_url(&cloud)),
    );
    assert_eq!(st, 200);
    assert!(body == data, "Glance holds the image, byte for byte");
    // the container keeps the side files, not a second copy of the image
    let mut listed = objects(&cloud, &c);
    listed.sort();
    assert_eq!(listed, [format!("{name}.md5sum"), format!("{name}.meta")]);
    let base = format!("{}/{c}", swift_url(&cloud));
    let md5sum = call(Some(&cloud), "GET", &format!("{base}/{name}.md5sum")).1;
    assert_eq!(
        String::from_utf8(md5sum).unwrap(),
        format!("{}  {name}\n", image.md5),
        "the same form as the local FILE.md5sum"
    );
    let meta: Value =
        serde_json::from_slice(&call(Some(&cloud), "GET", &format!("{base}/{name}.meta")).1)
            .unwrap();
    assert_eq!(meta["id"], id.as_str());
    delete_image(&cloud, &id);
}

#[test]
fn public_refused_to_a_member_before_any_data_and_nothing_left() {
    let cloud = connect(&tester());
    let (c, name) = (unique("pubref"), "img");
    let dir = tempfile::tempdir().unwrap();
    let image = image_file(&dir.path().join("img"), &pseudo_random(4 << 20, 71));
    let p = props();
    let publication = Publication {
        container: &c,
        object: name,
        register: Some(ImageSpec {
            name: &c,
            properties: &p,
            public: true,
        }),
        force: false,
    };
    let before = cloud.bytes_sent();
    let e = cloud
        .publish(&publication, &image, &Recorder::default())
        .unwrap_err();
    assert!(matches!(e, CloudError::PublicRefused { .. }), "{e}");
    let sent = cloud.bytes_sent() - before;
    assert!(sent < OVERHEAD, "{sent} bytes were sent before the refusal");
    assert!(images_named(&cloud, &c).is_empty(), "no image is left");
    assert!(objects(&cloud, &c).is_empty(), "no object is left");
    // a rerun without --public needs no -f
    let mut private = publication;
    private.register = Some(ImageSpec {
        name: &c,
        properties: &p,
        public: false,
    });
    let done = cloud
        .publish(&private, &image, &Recorder::default())
        .unwrap();
    delete_image(&cloud, done.answer.unwrap()["id"].as_str().unwrap());
}

#[test]
fn container_quota_refused_before_any_data_and_nothing_left() {
    let cloud = connect(&tester());
    let (c, name) = (unique("quota"), "img");
    let url = format!("{}/{c}", swift_url(&cloud));
    assert_eq!(call(Some(&cloud), "PUT", &url).0 / 100, 2);
    let (st, _) = call_with(
        Some(&cloud),
        "POST",
        &url,
        &[("X-Container-Meta-Quota-Bytes", "1048576")],
    );
    assert_eq!(st / 100, 2);
    let dir = tempfile::tempdir().unwrap();
    let image = image_file(&dir.path().join("img"), &pseudo_random(2 << 20, 81));
    let publication = Publication {
        container: &c,
        object: name,
        register: None,
        force: false,
    };
    let before = cloud.bytes_sent();
    let e = cloud
        .publish(&publication, &image, &Recorder::default())
        .unwrap_err();
    assert!(matches!(e, CloudError::Quota { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("container `{c}'")) && msg.contains("1048576 available"),
        "{msg}"
    );
    assert!(cloud.bytes_sent() - before < OVERHEAD);
    assert!(objects(&cloud, &c).is_empty());
}

#[test]
fn same_image_name_twice_warns_with_both_ids_and_force_replaces() {
    let cloud = connect(&tester());
    let (c, image_name) = (unique("twice"), unique("twice-image"));
    let dir = tempfile::tempdir().unwrap();
    let image = image_file(&dir.path().join("img"), &pseudo_random(1 << 20, 91));
    let p = props();
    let spec = ImageSpec {
        name: &image_name,
        properties: &p,
        public: false,
    };
    let first = Publication {
        container: &c,
        object: "a",
        register: Some(spec),
        force: false,
    };
    let id1 = cloud.publish(&first, &image, &Recorder::default()).unwrap();
    let id1 = id1.answer.unwrap()["id"].as_str().unwrap().to_owned();

    // another object, the same image name: a second image, and a warning naming both
    let second = Publication {
        object: "b",
        ..first
    };
    let rep = Recorder::default();
    let done = cloud.publish(&second, &image, &rep).unwrap();
    let id2 = done.answer.unwrap()["id"].as_str().unwrap().to_owned();
    assert_eq!(done.same_name, std::slice::from_ref(&id1));
    let text = rep.text();
    assert!(
        text.contains("Warning:") && text.contains(&id1) && text.contains(&id2),
        "{text}"
    );
    let mut both = images_named(&cloud, &image_name);
    both.sort();
    let mut expected = vec![id1.clone(), id2.clone()];
    expected.sort();
    assert_eq!(both, expected);

    // -f replaces every earlier image of that name
    let forced = Publication {
        force: true,
        ..second
    };
    let rep = Recorder::default();
    let done = cloud.publish(&forced, &image, &rep).unwrap();
    let id3 = done.answer.unwrap()["id"].as_str().unwrap().to_owned();
    assert_eq!(
        images_named(&cloud, &image_name),
        std::slice::from_ref(&id3)
    );
    assert!(
        rep.text().contains(&format!("Replaced Glance image {id1}")),
        "{}",
        rep.text()
    );
    let meta: Value = serde_json::from_slice(
        &call(
            Some(&cloud),
            "GET",
            &format!("{}/{c}/b.meta", swift_url(&cloud)),
        )
        .1,
    )
    .unwrap();
    assert_eq!(meta["id"], id3.as_str(), "b.meta names the new image");
    delete_image(&cloud, &id3);
}
