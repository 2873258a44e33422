//! Access to the real OpenStack started by scripts/with-openstack.sh.

#![allow(dead_code)]

use std::io::Read;

use snf_cloud::{Account, AccountFinder, AuthMethod, Cloud, Secret};

use super::Recorder;

/// The value of `k`, or a failure telling how to run these tests.
pub fn env(k: &str) -> String {
    match std::env::var(k) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{k} is not set: these tests need the real Keystone/Swift/Glance; run them through \
             scripts/with-openstack.sh (e.g. scripts/with-openstack.sh cargo test -p snf-cloud)"
        ),
    }
}

/// The `tester` account of the openrc (the `envvars` cloud).
pub fn tester() -> Account {
    env("OS_AUTH_URL");
    AccountFinder::from_process()
        .find("envvars")
        .expect("the OS_* variables form an account")
}

fn with_user(user: &str, password: &str, project: &str) -> Account {
    let mut a = tester();
    a.auth = AuthMethod::Password {
        username: Some(user.into()),
        user_id: None,
        password: Secret::new(password),
    };
    a.scope.project_name = Some(project.into());
    a.scope.project_id = None;
    a.name = user.into();
    a
}

/// `tester2`, member of another project.
pub fn other() -> Account {
    with_user(
        &env("SNF_TEST_OTHER_USERNAME"),
        &env("SNF_TEST_OTHER_PASSWORD"),
        &env("SNF_TEST_OTHER_PROJECT"),
    )
}

/// The admin (may publish images).
pub fn admin() -> Account {
    with_user(
        &env("SNF_TEST_ADMIN_USERNAME"),
        &env("SNF_TEST_ADMIN_PASSWORD"),
        &env("SNF_TEST_ADMIN_PROJECT"),
    )
}

pub fn connect(a: &Account) -> Cloud {
    Cloud::connect(a, &Recorder::default())
        .unwrap_or_else(|e| panic!("connecting as {}: {e}", a.name))
}

/// A name no other test (or earlier run) uses.
pub fn unique(tag: &str) -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("snf-test-{tag}-{}-{t}", std::process::id())
}

/// Raw request with this cloud's token (or none); status and body.
pub fn call(cloud: Option<&Cloud>, method: &str, url: &str) -> (u16, Vec<u8>) {
    call_with(cloud, method, url, &[])
}

/// [`call`] with extra request headers.
pub fn call_with(
    cloud: Option<&Cloud>,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
) -> (u16, Vec<u8>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut b = ureq::http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    if let Some(c) = cloud {
        b = b.header("X-Auth-Token", c.session().token.expose());
    }
    let mut r = agent.run(b.body(()).unwrap()).unwrap();
    let mut body = Vec::new();
    if method != "HEAD" {
        r.body_mut()
            .with_config()
            .limit(1 << 30)
            .reader()
            .read_to_end(&mut body)
            .unwrap();
    }
    (r.status().as_u16(), body)
}

pub fn glance_url(c: &Cloud) -> String {
    c.session().endpoint("image", "public", None).unwrap()
}

pub fn swift_url(c: &Cloud) -> String {
    c.session()
        .endpoint("object-store", "public", None)
        .unwrap()
}

/// Delete an image (cleanup; errors ignored).
pub fn delete_image(c: &Cloud, id: &str) {
    let _ = call(
        Some(c),
        "DELETE",
        &format!("{}/v2/images/{id}", glance_url(c)),
    );
}
