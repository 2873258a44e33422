//! cloud-init configuration (YAML): the users and default user inspection reports, and
//! the cloud-init operations of system preparation.
#![no_main]
use image_creator::inspect::unix;
use image_creator::metadata::Metadata;
use image_creator::sysprep::OsFamily;
use libfuzzer_sys::fuzz_target;
use snf_fuzz::guest;

const FILES: &[&str] = &[
    "/etc/cloud/cloud.cfg",
    "/etc/cloud/cloud.cfg.d/50_a.cfg",
    "/etc/cloud/cloud.cfg.d/90_b.cfg",
    "/etc/passwd",
];

fuzz_target!(|data: &[u8]| {
    let mut g = guest::tree_from(FILES, data);
    let quiet = snf_core::report::Quiet;
    let _ = unix::cloud_init(&mut g, &quiet);
    let mut meta = Metadata::new();
    let _ = meta.insert("CLOUD_INIT", "yes");
    guest::sysprep(&mut g, OsFamily::Linux, &mut meta);
});
