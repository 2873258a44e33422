//! Operating system detection: os-release, lsb-release and the distributions' own
//! release files, through the real detection on a guest tree.
#![no_main]
use image_creator::inspect::{detect, sort_order, unix};
use libfuzzer_sys::fuzz_target;
use snf_fuzz::{guest, sections};

const FILES: &[&str] = &[
    "/etc/os-release",
    "/etc/lsb-release",
    "/usr/lib/os-release",
    "/etc/redhat-release",
    "/etc/SuSE-release",
    "/etc/debian_version",
    "/etc/slackware-version",
    "/etc/alpine-release",
    "/etc/release",
    "/bin/freebsd-version",
];

fuzz_target!(|data: &[u8]| {
    let parts = sections(data, FILES.len());
    // Kernel versions are ordered by the same kind of loose version text.
    if let [a, b, ..] = parts.as_slice() {
        let _ = unix::version_cmp(&String::from_utf8_lossy(a), &String::from_utf8_lossy(b));
    }
    let files: Vec<(&str, &[u8])> = FILES.iter().copied().zip(parts).collect();
    let mut g = guest::tree(&files);
    let os = detect::detect(&mut g);
    let _ = sort_order(&os);
});
