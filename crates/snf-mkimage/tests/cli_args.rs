//! The command line: validation (exit 2, one line), --version, --help, the features
//! that are refused until they exist (exit 1, nothing written), and the output modes.

mod common;

use std::fs;
use std::path::Path;

use common::*;

/// Runs `args` with `env` set and `OS_CLOUD`/`OS_AUTH_URL` removed (a bare `-u` takes
/// its cloud from them, as OpenStack clients do).
fn run_env(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut c = std::process::Command::new(bin());
    c.args(args)
        .stdin(std::process::Stdio::null())
        .env_remove("OS_CLOUD")
        .env_remove("OS_AUTH_URL");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("cannot run snf-mkimage")
}

/// Runs `args` and checks exit status 2 and exactly one stderr line `Error: <msg>`.
fn usage_error(args: &[&str], msg: &str) {
    let out = run_env(args, &[]);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    assert_eq!(stderr(&out), format!("Error: {msg}\n"), "{args:?}");
    assert!(out.stdout.is_empty());
}

#[test]
fn every_validation_rule_exits_2_with_one_line() {
    let dir = tempdir();
    let d = dir.path();
    let src = d.join("src.raw");
    fs::write(&src, vec![0u8; 4096]).unwrap();
    let src = src.to_str().unwrap();
    let out = d.join("out.raw");
    let out_s = out.to_str().unwrap();

    usage_error(
        &[],
        "the following required arguments were not provided: <SOURCE>",
    );
    usage_error(&["--bogus", src], "unexpected argument '--bogus' found");
    usage_error(
        &[src],
        "At least one of `-o', `-u', `--print-metadata', `--print-syspreps' or \
         `--print-sysprep-params' must be set",
    );
    usage_error(
        &["-r", "name", "-o", out_s, src],
        "You also need to set -u when -r option is set",
    );
    let no_auth = "Image uploading cannot be performed. You need to either specify an \
                   authentication URL and token pair or an available cloud name.";
    usage_error(&["-u", "obj", src], no_auth);
    usage_error(&["-u", "obj", "-t", "tok", src], no_auth);
    usage_error(&["-u", "obj", "-a", "http://x", src], no_auth);
    usage_error(
        &["-u", "obj", "-c", "--", src],
        "-c without a cloud name needs OS_CLOUD, or the OS_* variables (OS_AUTH_URL, ...), in the environment",
    );
    // -u alone, or -c without a name, takes the cloud from OS_CLOUD, as OpenStack
    // clients do: here one that does not exist, named in the error (exit 1)
    let kamaki = d.join("kamakirc");
    for args in [&["-u", "obj", src][..], &["-u", "obj", "-c", "--", src][..]] {
        let o = run_env(
            args,
            &[
                ("OS_CLOUD", "no-such-os-cloud"),
                ("KAMAKI_CONFIG", kamaki.to_str().unwrap()),
            ],
        );
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("cloud `no-such-os-cloud' does not exist"),
            "{args:?}: {}",
            stderr(&o)
        );
    }
    usage_error(
        &["--public", "-o", out_s, src],
        "--public only makes sense with -r (registering the image)",
    );
    usage_error(
        &["-m", "novalue", "-o", out_s, src],
        "`novalue' is not in KEY=VALUE format.",
    );
    usage_error(
        &["-m", "bad-key=1", "-o", out_s, src],
        "Metadata key: `bad-key' is not valid. Allowed characters for key: [a-zA-Z0-9_].",
    );
    usage_error(
        &["--sysprep-param", "x", "-o", out_s, src],
        "`x' is not in KEY=VALUE format.",
    );
    usage_error(
        &["--tmpdir", "/nonexistent/dir", "-o", out_s, src],
        "The directory `/nonexistent/dir' specified with --tmpdir is not valid",
    );
    usage_error(
        &["--tmpdir", src, "-o", out_s, src],
        &format!("The directory `{src}' specified with --tmpdir is not valid"),
    );
    usage_error(
        &["-o", "/nonexistent/dir/out.raw", src],
        "`/nonexistent/dir' is not an existing directory",
    );
    let slash = format!("{}/", d.display());
    usage_error(
        &["-o", &slash, src],
        &format!("Output file `{slash}' is an existing directory"),
    );
    usage_error(
        &["-o", out_s, "/nonexistent/disk.img"],
        "Input media `/nonexistent/disk.img' does not exist",
    );
    usage_error(
        &["-o", out_s, "-o", out_s, src],
        "the argument '--outfile <FILE>' cannot be used multiple times",
    );
    usage_error(
        &["-s", "-v", "-o", out_s, src],
        "the argument '--silent' cannot be used with '--verbose'",
    );
    for suffix in ["", ".meta", ".md5sum", ".variant"] {
        let existing = format!("{out_s}{suffix}");
        fs::write(&existing, "old").unwrap();
        usage_error(
            &["-o", out_s, src],
            &format!("Output file `{existing}' exists (use --force to overwrite it)."),
        );
        fs::remove_file(&existing).unwrap();
    }
}

#[test]
fn an_unwritable_output_directory_is_refused_for_an_unprivileged_user() {
    let dir = tempdir();
    let src = dir.path().join("src.raw");
    fs::write(&src, vec![0u8; 4096]).unwrap();
    require("setpriv");
    // The test directory is root's, mode 0755: not writable for nobody.
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", bin()])
        .args(["-o", &format!("{}/out.raw", dir.path().display())])
        .arg(&src)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        format!(
            "Error: The directory `{}' is not writable\n",
            dir.path().display()
        )
    );
}

#[test]
fn version_and_help() {
    let out = run(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        stdout(&out),
        format!("snf-mkimage {}\n", env!("CARGO_PKG_VERSION"))
    );

    let out = run(&["--help"]);
    assert!(out.status.success());
    let help = stdout(&out);
    for opt in [
        "<SOURCE>",
        "-a, --authentication-url <URL>",
        "--add-timestamp",
        "--allow-unsupported",
        "-c, --cloud [<CLOUD>]",
        "--container <CONTAINER>",
        "--disable-sysprep <SYSPREP>",
        "--enable-sysprep <SYSPREP>",
        "-f, --force",
        "--host-run <SCRIPT>",
        "--install-virtio <DIR>",
        "-m, --metadata <KEY=VALUE>",
        "--no-snapshot",
        "--no-sysprep",
        "-o, --outfile <FILE>",
        "--print-metadata",
        "--print-syspreps",
        "--print-sysprep-params",
        "--public",
        "-r, --register <IMAGENAME>",
        "-s, --silent",
        "--syslog",
        "--sysprep-param <KEY=VALUE>",
        "-t, --token <TOKEN>",
        "--tmpdir <DIR>",
        "-u, --upload <FILENAME>",
        "--json",
        "-v, --verbose",
        "--dry-run",
        "-V, --version",
        "-h, --help",
    ] {
        assert!(help.contains(opt), "--help does not list {opt}:\n{help}");
    }
}

#[test]
fn refused_features_fail_with_exit_1_and_write_nothing() {
    let dir = tempdir();
    let d = dir.path();
    let src = partitioned_raw(d, "src.raw", 8, 16);
    let before = sha256(&src);
    let src = src.to_str().unwrap();
    let tmp = d.join("tmp");
    fs::create_dir(&tmp).unwrap();
    let tmp_s = tmp.to_str().unwrap();
    let out = d.join("out.raw");
    let out_s = out.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![(
        vec!["--install-virtio", "/tmp"],
        "VirtIO drivers (Windows images only): this is not a Windows image",
    )];
    for (extra, msg) in cases {
        let mut args = vec!["--no-sysprep", "--tmpdir", tmp_s, "-o", out_s, src];
        args.splice(0..0, extra.iter().copied());
        let run_out = run(&args);
        assert_eq!(
            run_out.status.code(),
            Some(1),
            "{args:?}: {}",
            stderr(&run_out)
        );
        let err = stderr(&run_out);
        assert!(
            err.ends_with(&format!("Error: {msg}\n")),
            "{args:?}: wrong message:\n{err}"
        );
        assert_eq!(err.matches("Error:").count(), 1, "{err}");
        assert!(!out.exists());
        assert!(
            entries(&tmp).is_empty(),
            "{args:?} left {:?}",
            entries(&tmp)
        );
    }

    // Host bundling is no longer refused up front: pointed at a root with nothing
    // mounted on it (crates/disk/tests/host_bundle.rs bundles a real one), the run fails
    // with one line and leaves nothing.
    let run_out = std::process::Command::new(bin())
        .args(["--no-sysprep", "--tmpdir", tmp_s, "-o", out_s, "/"])
        .env("SNF_HOST_ROOT", d.join("no-such-root"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(run_out.status.code(), Some(1), "{}", stderr(&run_out));
    let err = stderr(&run_out);
    assert!(
        err.ends_with("Error: host bundling needs root\n")
            || (err.contains("Error: no filesystem is mounted on")
                && err.matches("Error:").count() == 1),
        "{err}"
    );

    assert!(!out.exists());
    assert!(entries(&tmp).is_empty());
    assert_eq!(sha256(Path::new(src)), before);
}

#[test]
fn print_metadata_merges_user_values_and_writes_nothing() {
    let dir = tempdir();
    let d = dir.path();
    let src = partitioned_raw(d, "src.raw", 8, 16);
    let tmp = d.join("tmp");
    fs::create_dir(&tmp).unwrap();
    let tmp_s = tmp.to_str().unwrap();
    let src_s = src.to_str().unwrap();

    // A print-only run needs no --no-sysprep: nothing would be prepared.
    let out = run(&[
        "--print-metadata",
        "-m",
        "os=custom",
        "-m",
        "PARTITION_TABLE=mine",
        "-m",
        "Sort_Order=1=2",
        "--tmpdir",
        tmp_s,
        src_s,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("Detected image metadata:"));
    // The report ends with a blank line, as the original's did.
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.last(), Some(&""));
    let rows = &rows[..rows.len() - 1];
    let keys: Vec<&str> = rows.iter().map(|r| r.split(' ').next().unwrap()).collect();
    // The original: "%s %s" % (key.ljust(longest + 2), value).
    let width = keys.iter().map(|k| k.len()).max().unwrap() + 3;
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "keys are sorted");
    for row in rows {
        assert_eq!(row.as_bytes()[width - 1], b' ', "{row:?}");
        assert_ne!(
            row.as_bytes()[width],
            b' ',
            "{row:?} is not padded to {width}"
        );
    }
    let value = |key: &str| {
        rows.iter()
            .find(|r| r.split(' ').next() == Some(key))
            .map(|r| r[width..].to_string())
    };
    // -m values override detected ones; keys are upper-cased.
    assert_eq!(value("OS").as_deref(), Some("custom"));
    assert_eq!(value("PARTITION_TABLE").as_deref(), Some("mine"));
    assert_eq!(value("SORT_ORDER").as_deref(), Some("1=2"));
    // Detected by inspection.
    assert_eq!(value("OSFAMILY").as_deref(), Some("linux"));
    assert_eq!(value("ROOT_PARTITION").as_deref(), Some("1"));
    assert!(stderr(&out).ends_with("snf-image-creator exited without errors\n"));

    let out = run(&[
        "--print-metadata",
        "--json",
        "-m",
        "description=Ünïcode",
        "--tmpdir",
        tmp_s,
        src_s,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["DESCRIPTION"], "Ünïcode");
    assert_eq!(v["PARTITION_TABLE"], "msdos");
    assert_eq!(v["OS"], "debian");
    assert!(v.as_object().unwrap().values().all(|x| x.is_string()));
    assert!(entries(&tmp).is_empty());
    assert_eq!(entries(d), vec!["src.raw", "tmp"]);
}

#[test]
fn silent_timestamps_and_plain_output() {
    let dir = tempdir();
    let d = dir.path();
    let src = partitioned_raw(d, "src.raw", 8, 64);
    let src_s = src.to_str().unwrap();
    let tmp_s = d.to_str().unwrap();

    let out_a = d.join("a.raw");
    let out = run(&[
        "-s",
        "--no-sysprep",
        "--tmpdir",
        tmp_s,
        "-o",
        out_a.to_str().unwrap(),
        src_s,
    ]);
    assert!(out.status.success());
    assert_eq!(stderr(&out), "", "-s must print nothing on success");
    assert!(out_a.exists());

    let out_b = d.join("b.raw");
    let out = run(&[
        "--add-timestamp",
        "--no-sysprep",
        "--tmpdir",
        tmp_s,
        "-o",
        out_b.to_str().unwrap(),
        src_s,
    ]);
    assert!(out.status.success());
    let err = stderr(&out);
    assert!(err.lines().count() >= 5, "{err}");
    for line in err.lines() {
        let rest = line
            .strip_prefix('[')
            .and_then(|l| l.split_once("s] "))
            .unwrap_or_else(|| panic!("line without a timestamp: {line:?}"));
        assert!(
            !rest.0.is_empty() && rest.0.bytes().all(|b| b.is_ascii_digit()),
            "{line:?}"
        );
    }

    let out_c = d.join("c.raw");
    let out = run(&[
        "-v",
        "--no-sysprep",
        "--tmpdir",
        tmp_s,
        "-o",
        out_c.to_str().unwrap(),
        src_s,
    ]);
    assert!(out.status.success());
    let err = stderr(&out);
    assert!(
        !err.bytes().any(|b| b == 0x1b || b == b'\r'),
        "control characters in non-terminal output: {err:?}"
    );
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines[0],
        format!("snf-image-creator {}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(lines[1], "=".repeat(lines[0].len()));
    assert!(lines.contains(&"Dumping image file ..."), "{err}");
    assert!(lines.contains(&"Dumping image file ... done"), "{err}");
    assert!(err.contains("Work directory: "), "-v shows details: {err}");
    assert_eq!(
        lines.last(),
        Some(&"snf-image-creator exited without errors")
    );
    assert!(!workdir_left(d));
}

#[test]
fn dev_null_and_dry_run_write_nothing() {
    let dir = tempdir();
    let d = dir.path();
    let src = partitioned_raw(d, "src.raw", 8, 16);
    let src_s = src.to_str().unwrap();
    let tmp_s = d.to_str().unwrap();

    let out = run(&["--no-sysprep", "--tmpdir", tmp_s, "-o", "/dev/null", src_s]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("Warning: Not dumping file to /dev/null\n"));

    let target = d.join("out.raw");
    let out = run(&[
        "--dry-run",
        "--no-sysprep",
        "--tmpdir",
        tmp_s,
        "-o",
        target.to_str().unwrap(),
        src_s,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains(&format!("Dry run: not writing {}", target.display())));
    assert_eq!(entries(d), vec!["src.raw"]);
}

#[test]
fn unpartitioned_media_need_allow_unsupported() {
    let dir = tempdir();
    let d = dir.path();
    // A bare filesystem, no partition table.
    let src = d.join("fs.raw");
    fs::File::create(&src).unwrap().set_len(4 << 20).unwrap();
    sh("mke2fs", &["-q", "-F", "-t", "ext4", src.to_str().unwrap()]);
    let before = sha256(&src);
    let out_path = d.join("out.raw");
    let args = [
        "--no-sysprep",
        "--tmpdir",
        d.to_str().unwrap(),
        "-o",
        out_path.to_str().unwrap(),
        src.to_str().unwrap(),
    ];
    let out = run(&args);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("the media is not supported: The media has no partition table")
            && err
                .trim_end()
                .ends_with("(use --allow-unsupported to create an image anyway)"),
        "{err}"
    );
    assert_eq!(entries(d), vec!["fs.raw"]);

    let mut allowed = vec!["--allow-unsupported"];
    allowed.extend(args);
    let out = run(&allowed);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(same_bytes(&out_path, &src));
    let meta: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(d.join("out.raw.meta")).unwrap()).unwrap();
    assert_eq!(meta["properties"]["EXCLUDE_ALL_TASKS"], "yes");
    assert!(meta["properties"]["UNSUPPORTED"]
        .as_str()
        .unwrap()
        .starts_with("The media has no partition table"));
    assert_eq!(sha256(&src), before);
}

#[test]
fn syslog_without_a_syslog_daemon_warns_once_and_goes_on() {
    let dir = tempdir();
    let d = dir.path();
    let src = partitioned_raw(d, "src.raw", 8, 16);
    let out = run(&[
        "--syslog",
        "--print-metadata",
        "--tmpdir",
        d.to_str().unwrap(),
        src.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let warnings = stderr(&out)
        .matches("Warning: not logging to syslog")
        .count();
    if Path::new("/dev/log").exists() {
        assert_eq!(warnings, 0, "{}", stderr(&out));
    } else {
        assert_eq!(warnings, 1, "{}", stderr(&out));
    }
    assert!(stdout(&out).starts_with("Detected image metadata:\n"));
}

#[test]
fn sysprep_selection_printing_and_typos() {
    let dir = tempdir();
    let d = dir.path();
    let src = partitioned_raw(d, "src.raw", 8, 16);
    let src = src.to_str().unwrap();
    // The printed lists follow --disable/--enable, disables first.
    let out = run(&[
        "--disable-sysprep",
        "cleanup-log",
        "--enable-sysprep",
        "cleanup-mail",
        "--print-syspreps",
        "--print-sysprep-params",
        "--sysprep-param",
        "BOOTMENU_TIMEOUT=3",
        src,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let enabled = text
        .split("Disabled system preparation operations:")
        .next()
        .unwrap();
    assert!(
        text.starts_with("Enabled system preparation operations:\n"),
        "{text}"
    );
    assert!(enabled.contains("    cleanup-mail:\n"), "{text}");
    assert!(!enabled.contains("    cleanup-log:\n"), "{text}");
    assert!(text.contains("System preparation parameters:"), "{text}");
    // Parameter names match whatever their case (the original upper-cased and ignored them).
    assert!(text.contains("bootmenu_timeout"), "{text}");
    let value_line = text
        .lines()
        .skip_while(|l| !l.contains("bootmenu_timeout"))
        .find(|l| l.trim_start().starts_with("VALUE:"))
        .unwrap();
    assert!(value_line.trim_end().ends_with('3'), "{value_line}");

    // A typo must not silently leave an image unprepared: a bad command line, refused
    // before the header is printed or anything is examined.
    for (args, name) in [
        (
            vec!["--disable-sysprep", "cleanup-logs", "--print-syspreps", src],
            "`cleanup-logs'",
        ),
        (
            vec![
                "--sysprep-param",
                "bootmenu_timeot=3",
                "--print-syspreps",
                src,
            ],
            "`bootmenu_timeot'",
        ),
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.starts_with("Error: ") && err.contains(name), "{err}");
        assert!(
            err.contains("cleanup-log,") || err.contains("bootmenu_timeout,"),
            "lists the valid names: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

#[test]
fn cloud_options_without_upload_are_reported() {
    let dir = tempdir();
    let src = partitioned_raw(dir.path(), "src.raw", 8, 16);
    let out = run(&[
        "-c",
        "somecloud",
        "--container",
        "c",
        "--print-metadata",
        src.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Warning: -a, -t, -c and --container have no effect without -u"),
        "{}",
        stderr(&out)
    );
}
