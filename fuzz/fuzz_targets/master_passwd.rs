//! BSD accounts and settings: /etc/master.passwd, rc.conf and friends, as inspection
//! and the BSD system preparation read them.
#![no_main]
use image_creator::inspect::unix;
use image_creator::metadata::Metadata;
use image_creator::sysprep::OsFamily;
use libfuzzer_sys::fuzz_target;
use snf_fuzz::guest;

const FILES: &[&str] = &[
    "/etc/master.passwd",
    "/etc/passwd",
    "/etc/rc.conf",
    "/etc/defaults/rc.conf",
    "/etc/rc.conf.local",
    "/etc/ssh/sshd_config",
];

fuzz_target!(|data: &[u8]| {
    let Some((&which, data)) = data.split_first() else {
        return;
    };
    let (family, name) = match which % 3 {
        0 => (OsFamily::FreeBsd, "freebsd"),
        1 => (OsFamily::OpenBsd, "openbsd"),
        _ => (OsFamily::NetBsd, "netbsd"),
    };
    let mut g = guest::tree_from(FILES, data);
    let quiet = snf_core::report::Quiet;
    let users = unix::master_passwd_users(&mut g, &quiet);
    let _ = unix::passwd_hashing_method(&mut g, name);
    let kv = unix::rc_conf(
        &mut g,
        &[
            "/etc/defaults/rc.conf",
            "/etc/rc.conf",
            "/etc/rc.conf.local",
        ],
    );
    let _ = unix::rc_yes(unix::rc_get(&kv, "sshd_enable"));
    let _ = unix::sshd_config(&mut g);
    let _ = unix::ssh_entries(&mut g, &users);
    guest::sysprep(&mut g, family, &mut Metadata::new());
});
