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
    let files: Vec<(&str, &[u8])> = FILES
        .iter()
        .copied()
        .zip(sections(data, FILES.len()))
        .collect();
    let mut g = guest::tree(&files);
    let os = detect::detect(&mut g);
    let _ = sort_order(&os);
});
