//! Windows registry hives: libhivex through our binding, and what inspection reads from
//! them (version, control set, Remote Desktop, SAM accounts), then a write (a key and a
//! value added, committed) and a read back. Every walk is bounded: a hostile hive must
//! end in an answer or an error, never a panic, hang or huge allocation.
//!
//! Input: the hive file's bytes (seeds: fuzz/corpus/hive, written by the hivex crate's
//! tests).
#![no_main]
use hivex::{Hive, RegValue};
use image_creator::inspect::windows;
use libfuzzer_sys::fuzz_target;

/// Most keys one input visits.
const MAX_NODES: usize = 4096;

fn walk(h: &Hive) {
    let Ok(root) = h.root() else {
        return;
    };
    let mut stack = vec![(root, 0usize)];
    let mut seen = 0;
    while let Some((node, depth)) = stack.pop() {
        seen += 1;
        if seen > MAX_NODES {
            break;
        }
        let _ = h.node_name(node);
        if let Ok(values) = h.values(node) {
            for v in values {
                let _ = h.value_name(v);
                let _ = h.value_type(v);
                let _ = h.value_string(v);
                let _ = h.value_dword(v);
                let _ = h.value_qword(v);
                let _ = h.value_multi_sz(v);
                let _ = h.value_binary(v);
            }
        }
        if depth < 64 {
            if let Ok(children) = h.children(node) {
                stack.extend(children.into_iter().map(|c| (c, depth + 1)));
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let dir = snf_fuzz::scratch_dir();
    let path = dir.path().join("hive");
    std::fs::write(&path, data).unwrap();
    if let Ok(h) = Hive::open(&path) {
        walk(&h);
        let _ = windows::read_version(&h);
        if let Ok(cs) = windows::control_set_or_default(&h) {
            let _ = windows::remote_desktop(&h, &cs);
        }
        let _ = windows::sam_accounts(&h, &snf_core::report::Quiet);
    }
    if let Ok(mut h) = Hive::open_writable(&path) {
        let value = RegValue::Dword(1);
        if windows::set_value_if_changed(&mut h, "Fuzz\\Key", "Value", &value).is_ok()
            && h.commit().is_ok()
        {
            drop(h);
            if let Ok(h) = Hive::open(&path) {
                walk(&h);
            }
        }
    }
});
