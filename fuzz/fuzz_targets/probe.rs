//! Filesystem recognition from a partition's first bytes (superblocks, boot sectors,
//! LVM/LUKS/md headers).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let p = snf_guestfs::probe::probe(data);
    let _ = (p.fs_type.name(), p.fs_type.why_unchangeable());
});
