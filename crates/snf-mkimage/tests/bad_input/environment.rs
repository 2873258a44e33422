//! Bad-input cases: environment.
//!
//! `--host-run` scripts that misbehave: one that never ends, one whose interpreter is
//! missing, one during which the user presses Ctrl-C (or the system sends SIGTERM). Each
//! run gets its own system temp dir (where the FUSE mount point goes) inside the case,
//! so that the harness's checks for mounts left behind cover it.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use snf_testkit::fixture::process_ended;

use crate::common;
use crate::harness::{Case, Outcome};

/// The example disk as the case's source (watched: the run must not change it).
fn source(case: &mut Case) -> PathBuf {
    let img = case.path("example.raw");
    snf_testkit::fixture::example_disk(&img);
    case.watch(&img);
    img
}

fn script(case: &Case, name: &str, text: &str) -> PathBuf {
    let path = case.path(name);
    fs::write(&path, text).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Run snf-mkimage on `src` with `--host-run SCRIPT` and `args`, with the system temp
/// dir inside the case; it must be empty again afterwards.
fn host_run(case: &Case, src: &Path, script: &Path, args: &[&str]) -> Outcome {
    let systmp = case.path("systmp");
    fs::create_dir_all(&systmp).unwrap();
    let out = case.path("out.raw");
    let outcome = case.run_with(
        Command::new(common::bin())
            .env("TMPDIR", &systmp)
            .arg("--host-run")
            .arg(script)
            .args(args)
            .arg("-o")
            .arg(&out)
            .arg(src),
    );
    assert!(
        common::entries(&systmp).is_empty(),
        "left in the system temp dir: {:?}\n{}",
        common::entries(&systmp),
        outcome.stderr()
    );
    assert!(!out.exists(), "an output was left after a failed run");
    outcome
}

/// A script that starts a child which would run for ten minutes, records its pid,
/// runs `then`, and waits for the child.
fn sleeper(case: &Case, then: &str) -> (PathBuf, PathBuf) {
    let pid = case.path("sleep.pid");
    let path = script(
        case,
        "sleeper.sh",
        &format!(
            "#!/bin/sh\necho before > etc/before\nsleep 600 &\necho $! > {pid}\n{then}\nwait\n",
            pid = pid.display()
        ),
    );
    (path, pid)
}

#[test]
fn a_script_past_host_run_timeout_is_killed_and_named() {
    let mut case = Case::new();
    let src = source(&mut case);
    let (hang, pid) = sleeper(&case, "");
    let outcome = host_run(&case, &src, &hang, &["--host-run-timeout", "1"]);
    outcome.failure(&[hang.to_str().unwrap(), "1 seconds", "--host-run-timeout"]);
    let pid = fs::read_to_string(pid).unwrap();
    assert!(process_ended(&pid), "the script's child {pid} still runs");
}

#[test]
fn a_script_whose_interpreter_is_missing_names_it() {
    let mut case = Case::new();
    let src = source(&mut case);
    let bad = script(&case, "bad.sh", "#!/nonexistent/interp\necho hi\n");
    let outcome = host_run(&case, &src, &bad, &[]);
    outcome.failure(&[
        bad.to_str().unwrap(),
        "/nonexistent/interp",
        "does not exist",
    ]);
}

/// The script signals snf-mkimage (its parent) itself, so the signal comes exactly
/// while it runs.
fn signalled_during_a_script(signal: &str, code: i32) {
    let mut case = Case::new();
    let src = source(&mut case);
    let (script, pid) = sleeper(&case, &format!("kill -{signal} $PPID"));
    let outcome = host_run(&case, &src, &script, &[]);
    outcome.fails(code, &["interrupted by the user"]);
    let pid = fs::read_to_string(pid).unwrap();
    assert!(process_ended(&pid), "the script's child {pid} still runs");
}

#[test]
fn ctrl_c_during_a_script_kills_it_and_cleans_up() {
    signalled_during_a_script("INT", 130);
}

#[test]
fn sigterm_during_a_script_kills_it_and_cleans_up() {
    signalled_during_a_script("TERM", 143);
}
