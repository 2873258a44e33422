//! `/etc/fstab`: parsing, the disk names it implies, and mapping every source to a
//! partition of a disk with ext4, FAT, swap and GPT-named partitions.
#![no_main]
use libfuzzer_sys::fuzz_target;
use snf_guestfs::assemble::{
    disk_bases_for, match_source, parse_fstab, PartitionDesc, ProbedPartition,
};
use snf_guestfs::probe::{FsType, Probe};

fn part(number: u32, fs_type: FsType, uuid: &str, label: &str, gpt: bool) -> ProbedPartition {
    ProbedPartition {
        desc: PartitionDesc {
            number,
            offset: u64::from(number) << 20,
            size: 1 << 20,
            gpt_guid: gpt.then(|| format!("0f3c9e2a-6b1d-4c55-9a7e-2d1f00c0ff{number:02x}")),
            gpt_name: gpt.then(|| format!("part{number}")),
            mbr_signature: (!gpt).then_some(0x1234_abcd),
            ..PartitionDesc::default()
        },
        probe: Probe {
            fs_type,
            uuid: Some(uuid.into()),
            label: Some(label.into()),
        },
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let entries = parse_fstab(&text);
    let bases = disk_bases_for(&entries);
    let parts = [
        part(1, FsType::Vfat, "ABCD-1234", "EFI", true),
        part(
            2,
            FsType::Ext4,
            "0f3c9e2a-6b1d-4c55-9a7e-2d1f00c0ffee",
            "root",
            true,
        ),
        part(
            5,
            FsType::Swap,
            "11111111-2222-3333-4444-555555555555",
            "swap",
            false,
        ),
    ];
    for e in &entries {
        let _ = match_source(&e.spec, &parts, &bases);
    }
});
