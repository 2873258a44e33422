//! GPT (headers, entries, backup): `Layout::read` behind a fixed protective MBR, and the
//! write-back round trip.
#![no_main]
use libfuzzer_sys::fuzz_target;
use snf_fuzz::disk;

fuzz_target!(|data: &[u8]| {
    let Some((mut d, ss)) = disk::decode(data) else {
        return;
    };
    // The protective MBR is fixed, so every input goes to the GPT reader.
    let mut pmbr = [0u8; 512];
    pmbr[446 + 4] = 0xee;
    pmbr[446 + 8..446 + 12].copy_from_slice(&1u32.to_le_bytes());
    pmbr[446 + 12..446 + 16].copy_from_slice(&u32::MAX.to_le_bytes());
    pmbr[510] = 0x55;
    pmbr[511] = 0xaa;
    d.put(0, &pmbr);
    disk::check_layout(d, ss);
});
