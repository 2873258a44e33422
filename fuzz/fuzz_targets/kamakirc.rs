//! kamaki's configuration file: loading, the clouds and default it names, looking an
//! account up, and writing it back.
#![no_main]
use std::collections::BTreeMap;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use snf_cloud::account::{AccountFinder, KamakiConfig};

fn dir() -> &'static std::path::Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(snf_fuzz::scratch_dir).path()
}

fuzz_target!(|data: &[u8]| {
    let path = dir().join("kamakirc");
    std::fs::write(&path, data).expect("write the kamakirc");
    let Ok(mut cfg) = KamakiConfig::load(&path) else {
        return;
    };
    let clouds = cfg.clouds();
    let _ = cfg.default_cloud();
    let finder = AccountFinder {
        env: BTreeMap::from([
            ("KAMAKI_CONFIG".to_string(), path.display().to_string()),
            ("HOME".to_string(), dir().display().to_string()),
        ]),
        cwd: dir().to_path_buf(),
    };
    let _ = finder.names();
    let _ = finder.default_account();
    for c in &clouds {
        let _ = finder.find(&c.name);
    }
    if let Some(c) = clouds.first() {
        let _ = cfg.set_cloud(c);
        let _ = cfg.remove_cloud(&c.name);
        let _ = cfg.save();
    }
});
