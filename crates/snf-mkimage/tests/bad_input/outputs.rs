//! Bad-input cases: outputs. No output file (the image or a side file) may be the source
//! or a file it is made of, however it is spelled, even with `-f`; an output path that is
//! a directory says so.

use std::path::{Path, PathBuf};

use crate::common::partitioned_raw;
use crate::harness::Case;
use snf_testkit::fixture::multi_file_images;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The spellings of `target` an output path may take: itself, through a symlink, with
/// `..`, and a hard link (made in `dir`).
fn spellings(dir: &Path, target: &Path) -> Vec<PathBuf> {
    let name = target.file_name().unwrap().to_string_lossy().into_owned();
    let link = dir.join(format!("link-to-{name}"));
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(target, &link).unwrap();
    let hard = dir.join(format!("hard-{name}"));
    let _ = std::fs::remove_file(&hard);
    std::fs::hard_link(target, &hard).unwrap();
    let parent = target.parent().unwrap();
    let dotted = parent
        .join("..")
        .join(parent.file_name().unwrap())
        .join(&name);
    vec![target.to_path_buf(), link, dotted, hard]
}

#[test]
fn no_output_may_be_the_source_or_one_of_its_files() {
    let mut c = Case::new();
    let raw = partitioned_raw(c.dir(), "disk.raw", 16, 256);
    let images = multi_file_images(&raw, c.dir());
    let cases = [
        ("qcow2-over-raw", None),
        ("qcow2-over-raw", Some(0)),
        ("qcow2-over-qcow2", Some(0)),
        ("vmdk-split-sparse", Some(0)),
        ("vmdk-flat", Some(0)),
        ("qcow2-data-file", Some(0)),
    ];
    let links = c.path("links");
    std::fs::create_dir(&links).unwrap();
    for (label, which) in cases {
        let img = images.iter().find(|i| i.label == label).unwrap();
        let target = match which {
            None => img.top.clone(),
            Some(i) => img.others[i].clone(),
        };
        c.watch(&img.top);
        for other in &img.others {
            c.watch(other);
        }
        for out in spellings(&links, &target) {
            let line = c
                .run(&["-f", "--no-sysprep", "-o", s(&out), s(&img.top)])
                .usage_error(&[s(&out), "refusing to overwrite"]);
            let named = if which.is_none() {
                "the source"
            } else {
                "a file the source"
            };
            assert!(line.contains(named), "{label}: {line}");
        }
    }
}

#[test]
fn no_side_file_may_be_the_source() {
    let mut c = Case::new();
    let src = partitioned_raw(c.dir(), "img.meta", 16, 256);
    c.watch(&src);
    let out = c.path("img");
    c.run(&["-f", "--no-sysprep", "-o", s(&out), s(&src)])
        .usage_error(&[s(&src), "is the source"]);
    assert!(!out.exists(), "the image was written");
}

#[test]
fn an_output_that_is_a_directory_says_so() {
    let mut c = Case::new();
    let raw = partitioned_raw(c.dir(), "disk.raw", 16, 256);
    c.watch(&raw);
    let dir = c.path("outdir");
    std::fs::create_dir(&dir).unwrap();
    c.watch(&dir);
    for force in [false, true] {
        let mut args = vec!["--no-sysprep", "-o", s(&dir), s(&raw)];
        if force {
            args.insert(0, "-f");
        }
        c.run(&args)
            .usage_error(&[s(&dir), "is an existing directory"]);
    }
}
