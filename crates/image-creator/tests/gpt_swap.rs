//! `SWAP` on GPT images (issue 18): snf-image cannot re-create a swap partition on GPT,
//! so a whole run removes the trailing swap partition but does not record `SWAP`
//! (warning why), unless `-m SWAP=` asks for it.

mod common;

use std::sync::Arc;

use common::*;
use image_creator::options::RunOptions;
use image_creator::session::Session;
use snf_testkit::report::Recorder;

const ROOT_UUID: &str = "11111111-2222-3333-4444-555555555555";

fn gpt_root_and_swap(dir: &std::path::Path) -> std::path::PathBuf {
    let tree = Tree::new(dir, "tree");
    tree.linux_base(&format!("UUID={ROOT_UUID} / ext4 defaults 0 1\n"))
        .file("/etc/os-release", "ID=debian\nVERSION_ID=\"12\"\n")
        .file("/etc/debian_version", "12.5\n");
    make_disk(
        dir,
        true,
        &[
            Part {
                size_mib: 40,
                name: "root",
                content: Content::Ext4 {
                    tree: &tree,
                    uuid: ROOT_UUID,
                    label: None,
                },
            },
            Part {
                size_mib: 8,
                name: "swap",
                content: Content::Swap {
                    uuid: "22222222-2222-3333-4444-555555555555",
                },
            },
        ],
    )
}

fn whole_run(swap_given: Option<&str>) -> (Session, Arc<Recorder>) {
    let dir = tempfile::tempdir().unwrap();
    let img = gpt_root_and_swap(dir.path());
    let mut opts = RunOptions::new(&img);
    opts.tmpdir = Some(dir.path().to_path_buf());
    opts.outfile = Some(dir.path().join("out.raw"));
    if let Some(v) = swap_given {
        opts.metadata.insert("SWAP", v).unwrap();
    }
    let rec = Arc::new(Recorder::default());
    let mut session = Session::new(opts, rec.clone()).unwrap();
    session
        .finish()
        .unwrap_or_else(|e| panic!("run failed: {e}"));
    (session, rec)
}

#[test]
fn a_removed_gpt_swap_partition_is_not_recorded_and_the_run_says_why() {
    let (session, rec) = whole_run(None);
    assert_eq!(session.metadata().get("SWAP"), None);
    assert!(
        rec.warned("SWAP=2:8 is not recorded for this GPT image"),
        "{:?}",
        rec.warnings()
    );
    assert!(rec.warned("pass -m SWAP=2:8"), "{:?}", rec.warnings());
}

#[test]
fn swap_asked_for_with_m_is_kept_with_a_warning() {
    let (session, rec) = whole_run(Some("2:8"));
    assert_eq!(session.metadata().get("SWAP"), Some("2:8"));
    assert!(
        rec.warned("GPT image with SWAP=2:8 (asked for with -m)"),
        "{:?}",
        rec.warnings()
    );
}
