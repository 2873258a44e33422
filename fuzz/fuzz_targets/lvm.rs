//! LVM2: the text metadata parser (with its write-back round trip), then a PV read from
//! a small sparse device: label, metadata areas, the VG model, every LV's extents, the
//! edits, the data moves and the write-back, which must read back as the next seqno.
//!
//! Input: `[device KiB: u16 LE]` then records `[sector: u16 LE][length: u16 LE][bytes]`
//! placed on the device (see fuzz/make-corpus.sh). The parser also sees the whole
//! input as text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use snf_disk::lvm::{self, text, PvDevice};

/// Largest device: a metadata area of 1 MiB after the label fits easily.
const MAX_KIB: u64 = 16 << 10;

fuzz_target!(|data: &[u8]| {
    if let Ok(items) = text::parse(data) {
        let out = text::format(&items);
        let again = text::parse(out.as_bytes()).expect("our own text parses");
        assert_eq!(items, again, "the write-back round trip changed the tree");
    }
    if data.len() < 2 {
        return;
    }
    let size = u64::from(u16::from_le_bytes([data[0], data[1]])).clamp(4, MAX_KIB) * 1024;
    let dir = snf_fuzz::scratch_dir();
    let path = snf_fuzz::sparse_image_file(dir.path(), "pv.img", size, &data[2..]);
    let dev = PvDevice {
        id: 1,
        offset: 0,
        size,
    };
    let Ok(scan) = lvm::scan(&path, &[dev]) else {
        return;
    };
    for vg in scan.vgs {
        for lv in &vg.lvs {
            let _ = vg.lv_extents(&lv.name);
            let _ = vg.mapper_name(&lv.name);
            let _ = vg.users(&lv.name);
            let mut v = vg.clone();
            let _ = v.reduce_lv(&lv.name, lv.extent_count / 2);
            let mut v = vg.clone();
            let _ = v.remove_lv(&lv.name);
        }
        let mut v = vg.clone();
        if let Some(l) = vg.lvs.first() {
            let _ = v.remove_lv(&l.name);
        }
        for pv in vg.pvs.clone() {
            let moves = v.compact(&pv.key);
            let used = v.used_pe_end(&pv.key);
            let _ = v.free_ranges();
            let _ = lvm::apply_moves(&path, &v, &moves);
            let size = pv
                .pe_start
                .saturating_add(used.saturating_mul(v.extent_size))
                .saturating_add(1 << 20);
            let _ = v.resize_pv(&pv.key, size);
            if let Some(min) = v.min_pv_size(&pv.key) {
                let _ = v.resize_pv(&pv.key, min);
            }
        }
        if v.write(&path).is_ok() {
            let again = lvm::scan(&path, &[dev]).expect("our own write reads back");
            assert!(
                again
                    .vgs
                    .iter()
                    .any(|g| g.uuid == v.uuid && g.seqno == v.seqno),
                "our own write is not the newest metadata"
            );
        }
    }
});
