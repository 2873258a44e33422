//! OpenStack clouds.yaml merged with secure.yaml: every cloud they name is looked up
//! and turned into an account.
#![no_main]
use std::collections::BTreeMap;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use snf_cloud::account::AccountFinder;
use snf_fuzz::sections;

fn dir() -> &'static std::path::Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(snf_fuzz::scratch_dir).path()
}

fuzz_target!(|data: &[u8]| {
    let parts = sections(data, 2);
    let clouds = dir().join("clouds.yaml");
    let secure = dir().join("secure.yaml");
    std::fs::write(&clouds, parts[0]).expect("write clouds.yaml");
    std::fs::write(&secure, parts.get(1).copied().unwrap_or_default()).expect("write secure.yaml");
    let finder = AccountFinder {
        env: BTreeMap::from([
            (
                "OS_CLIENT_CONFIG_FILE".to_string(),
                clouds.display().to_string(),
            ),
            (
                "OS_CLIENT_SECURE_FILE".to_string(),
                secure.display().to_string(),
            ),
            (
                "KAMAKI_CONFIG".to_string(),
                dir().join("none").display().to_string(),
            ),
            ("HOME".to_string(), dir().display().to_string()),
        ]),
        cwd: dir().to_path_buf(),
    };
    let Ok(names) = finder.names() else {
        return;
    };
    for n in &names {
        let _ = finder.find(n);
    }
});
