//! MBR with its EBR chain: `Layout::read` on a sparse disk, the write-back round trip,
//! and the boot loader guess made from sector 0.
#![no_main]
use libfuzzer_sys::fuzz_target;
use snf_fuzz::disk;

fuzz_target!(|data: &[u8]| {
    let Some((mut d, ss)) = disk::decode(data) else {
        return;
    };
    // Always a signed MBR, so no input is spent on the "no table" path.
    d.put(510, &[0x55, 0xaa]);
    let mut sector0 = [0u8; 512];
    let _ = std::io::Read::read(&mut d.clone(), &mut sector0);
    let _ = image_creator::inspect::bootloader::mbr_bootinfo(&sector0);
    disk::check_layout(d, ss);
});
