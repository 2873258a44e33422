//! An interrupted Swift SLO upload resumes: segments already there with the right
//! checksum are not sent again, and nothing is left pointing at partial data. Alone in
//! its test binary because it uses the process-wide cancellation flag (Ctrl-C's path).

mod support;

use std::sync::Arc;

use snf_cloud::{Cloud, CloudError, CloudOptions};
use support::openstack::{call, swift_url, tester, unique};
use support::{image_file, pseudo_random, Recorder};

#[test]
fn interrupted_upload_resumes() {
    let account = tester();
    let plain = Cloud::connect(&account, &Recorder::default()).unwrap();
    let seg = 8u64 << 20;
    let (c, name) = (unique("resume"), "img");
    let dir = tempfile::tempdir().unwrap();
    let data = pseudo_random(3 * seg as usize - 1000, 61);
    let image = image_file(&dir.path().join("img"), &data);

    // one worker, interrupted as soon as the second segment has started
    let one = Cloud::connect_with(
        &account,
        CloudOptions {
            workers: 1,
            ..Default::default()
        },
        &Recorder::default(),
    )
    .unwrap();
    let rep = Recorder {
        on_position: Some(Arc::new(move |title: &str, pos: u64| {
            if title.starts_with("Uploading") && pos > seg + (1 << 20) {
                snf_core::cancel::request();
            }
        })),
        ..Default::default()
    };
    let e = one.upload_image(&c, name, &image, &rep).unwrap_err();
    snf_core::cancel::reset();
    assert!(matches!(e, CloudError::Cancelled(_)), "{e}");
    let url = format!("{}/{c}/{name}", swift_url(&plain));
    assert_eq!(
        call(Some(&plain), "HEAD", &url).0,
        404,
        "no object exists after an interrupted upload"
    );

    let stats = plain
        .upload_image(&c, name, &image, &Recorder::default())
        .unwrap();
    assert!(stats.large_object);
    assert_eq!(stats.pieces_total, 3);
    assert_eq!(
        stats.pieces_skipped, 1,
        "the finished segment is not sent again: {stats:?}"
    );
    assert_eq!(stats.pieces_sent, 2);
    assert_eq!(call(Some(&plain), "GET", &url).1, data);
}
