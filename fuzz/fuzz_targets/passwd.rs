//! Linux accounts: /etc/passwd, shadow, group, gshadow, login.defs and sshd_config, as
//! inspection (users with passwords, hashing method, ssh port and root login) and
//! system preparation (account and password cleanup) read and rewrite them.
#![no_main]
use image_creator::inspect::unix;
use image_creator::metadata::Metadata;
use image_creator::sysprep::OsFamily;
use libfuzzer_sys::fuzz_target;
use snf_fuzz::guest;

const FILES: &[&str] = &[
    "/etc/shadow",
    "/etc/passwd",
    "/etc/group",
    "/etc/gshadow",
    "/etc/login.defs",
    "/etc/subuid",
    "/etc/shadow-",
    "/etc/ssh/sshd_config",
    "/etc/ssh/sshd_config.d/50-cloud.conf",
];

fuzz_target!(|data: &[u8]| {
    let mut g = guest::tree_from(FILES, data);
    let quiet = snf_core::report::Quiet;
    let users = unix::shadow_users(&mut g, &quiet);
    let _ = unix::passwd_hashing_method(&mut g, "linux");
    let _ = unix::sshd_config(&mut g);
    let _ = unix::ssh_entries(&mut g, &users);
    guest::sysprep(&mut g, OsFamily::Linux, &mut Metadata::new());
});
