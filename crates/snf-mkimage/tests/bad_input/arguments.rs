//! Bad-input cases: arguments. Every kind of bad command line exits 2 with one error
//! line naming the bad value, before anything is examined or copied; a `--tmpdir` too
//! small for the work exits 1 naming it. No message shows the work directory's
//! private file names.

use crate::common;
use crate::harness::Case;

/// Each command line (before the source) and what its one error line must name.
fn bad_command_lines(out: &str) -> Vec<(Vec<&str>, Vec<&str>)> {
    vec![
        // Names and values no OS has or accepts.
        (
            vec!["--enable-sysprep", "cleanup-logs", "-o", out],
            vec!["`cleanup-logs'", "does not exist", "cleanup-log,"],
        ),
        (
            vec!["--disable-sysprep", "", "--print-syspreps"],
            vec!["`'", "does not exist"],
        ),
        (
            vec!["--sysprep-param", "bootmenu_timout=3", "-o", out],
            vec!["`bootmenu_timout'", "bootmenu_timeout,"],
        ),
        (
            vec!["--sysprep-param", "bootmenu_timeout=-1", "-o", out],
            vec!["`bootmenu_timeout'", "negative or zero"],
        ),
        (
            vec!["--sysprep-param", "bootmenu_timeout=soon", "-o", out],
            vec!["`bootmenu_timeout'", "Invalid number"],
        ),
        (
            vec!["--sysprep-param", "sensitive_userdata=.ssh,,x", "-o", out],
            vec!["`sensitive_userdata'", "empty"],
        ),
        (
            vec!["--sysprep-param", "novalue", "-o", out],
            vec!["`novalue'", "KEY=VALUE"],
        ),
        (
            vec!["-m", "os-family=linux", "-o", out],
            vec!["`os-family'"],
        ),
        (vec!["-m", "NOVALUE", "-o", out], vec!["`NOVALUE'"]),
        // Options that contradict each other.
        (
            vec!["--no-sysprep", "--enable-sysprep", "cleanup-log", "-o", out],
            vec!["`cleanup-log'", "--no-sysprep"],
        ),
        (
            vec![
                "--disable-sysprep",
                "cleanup-log",
                "--enable-sysprep",
                "CLEANUP_LOG",
                "-o",
                out,
            ],
            vec!["`CLEANUP_LOG'", "--disable-sysprep", "--enable-sysprep"],
        ),
        (
            vec!["--no-snapshot", "--dry-run", "-o", out],
            vec!["--no-snapshot", "--dry-run"],
        ),
        (vec!["-s", "-v", "-o", out], vec!["--silent", "--verbose"]),
        // Incomplete cloud options.
        (vec!["-r", "img", "-o", out], vec!["-u", "-r"]),
        (vec!["--public", "-o", out], vec!["--public", "-r"]),
        (vec!["-u", "obj", "-t", "tok"], vec!["authentication URL"]),
        (
            vec!["-a", "http://127.0.0.1:1/", "--print-metadata"],
            vec!["-a/--authentication-url", "-t/--token"],
        ),
        (
            vec!["-u", "obj", "-c", "cloud", "-t", "tok"],
            vec!["-a/--authentication-url", "-t/--token"],
        ),
        (vec!["-u", "", "-c", "cloud"], vec!["-u/--upload", "empty"]),
        (
            vec!["-u", "obj", "-r", " ", "-c", "cloud"],
            vec!["-r/--register", "empty"],
        ),
        // Values of the wrong type, repeated single options, nothing to do.
        (
            vec!["--host-run-timeout", "soon", "-o", out],
            vec!["soon", "--host-run-timeout"],
        ),
        (vec!["-o", out, "-o", out], vec!["--outfile"]),
        (vec!["-o", ""], vec!["--outfile"]),
        (vec!["--container", "c"], vec!["At least one of"]),
    ]
}

#[test]
fn every_bad_command_line_exits_2_naming_the_bad_value() {
    let mut case = Case::new();
    let src = common::partitioned_raw(case.dir(), "src.raw", 8, 16);
    case.watch(&src);
    let out = case.path("out.raw");
    let out = out.to_str().unwrap();
    for (mut args, names) in bad_command_lines(out) {
        args.push(src.to_str().unwrap());
        let outcome = case.run(&args);
        let line = outcome.usage_error(&names);
        // Refused before the header is printed and before any work.
        assert_eq!(
            outcome.stderr().lines().count(),
            1,
            "{args:?}: {}",
            outcome.stderr()
        );
        assert!(outcome.stdout().is_empty(), "{args:?}: {line}");
        assert!(!case.path("out.raw").exists(), "{args:?}");
    }
}

#[test]
fn options_without_effect_are_warnings_not_errors() {
    let case = Case::new();
    let src = common::partitioned_raw(case.dir(), "src.raw", 8, 16);
    let src = src.to_str().unwrap();
    for (args, warning) in [
        (
            vec!["--no-sysprep", "--disable-sysprep", "cleanup-log"],
            "--disable-sysprep has no effect with --no-sysprep",
        ),
        (
            vec!["--no-sysprep", "--sysprep-param", "default_user=x"],
            "--sysprep-param has no effect with --no-sysprep",
        ),
        (
            vec!["--host-run-timeout", "5"],
            "--host-run-timeout has no effect without --host-run",
        ),
        (
            vec!["-f", "--print-metadata"],
            "-f has no effect without -o or -u",
        ),
        (
            vec!["--json"],
            "--json has no effect without --print-metadata",
        ),
        // A name or parameter that exists, but for another OS family.
        (
            vec!["--sysprep-param", "mem=2048"],
            "sysprep parameter `mem' does not apply to this linux image: ignored",
        ),
    ] {
        let mut all = args.clone();
        if !args.contains(&"--print-metadata") {
            all.extend(["-o", "/dev/null"]);
        }
        all.push(src);
        let outcome = case.run(&all);
        outcome.succeeded();
        assert!(
            outcome.stderr().contains(&format!("Warning: {warning}")),
            "{args:?}: {}",
            outcome.stderr()
        );
    }
}

#[test]
fn a_full_tmpdir_fails_naming_it_and_leaves_nothing() {
    let mut case = Case::new();
    // Enough data that the private copy cannot fit in the small tmpdir.
    let src = common::partitioned_raw(case.dir(), "src.raw", 16, 6 * 1024);
    case.watch(&src);
    let mounts = common::tempdir();
    let small = mounts.path().join("small");
    let _fs = common::SmallFs::mount(&small, 2048);
    case.use_tmpdir(&small);
    let out = case.path("out.raw");
    let outcome = case.run(&["-o", out.to_str().unwrap(), src.to_str().unwrap()]);
    let line = outcome.failure(&[small.to_str().unwrap(), "No space left", "src.raw"]);
    assert!(!out.exists(), "{line}");
    assert!(
        !outcome.stderr().contains(".snf_image_creator."),
        "{}",
        outcome.stderr()
    );
    assert!(common::entries(&small).is_empty());
}

#[test]
fn a_tmpdir_too_small_for_the_shrink_names_it_and_the_partition() {
    let mut case = Case::new();
    // The private copy fits; the extracted filesystem the shrink works on does not.
    let src = common::partitioned_raw(case.dir(), "src.raw", 32, 8 * 1024);
    case.watch(&src);
    let mounts = common::tempdir();
    let small = mounts.path().join("small");
    let _fs = common::SmallFs::mount(&small, 12 * 1024);
    case.use_tmpdir(&small);
    let out = case.path("out.raw");
    let outcome = case.run_with(
        std::process::Command::new(common::bin())
            .env("SNF_SHRINK_METHOD", "extract")
            .args(["-v", "-o", out.to_str().unwrap(), src.to_str().unwrap()]),
    );
    let line = outcome.failure(&[small.to_str().unwrap(), "No space left", "partition 1"]);
    assert!(!out.exists(), "{line}");
    let stderr = outcome.stderr();
    assert!(!stderr.contains(".snf_image_creator."), "{stderr}");
}
