//! Bad-input cases from a red-team pass, one per kind of input that went wrong: VMDK
//! descriptors read differently from qemu-img, guest and command-line text with control
//! characters, a `--tmpdir` the user cannot write, signals other than SIGINT/SIGTERM, a
//! file size limit, and a signal that comes after the image is written.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use snf_testkit::fixture::{require, run, write_file, Disk, Mke2fs};

use crate::common::{self, convert, partitioned_raw, same_bytes};
use crate::harness::{Case, Outcome};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// qemu-img reads a sparse VMDK (`KDMV`) from the file itself; the extent line of the
/// descriptor it embeds holds the name the image was created under, which means nothing
/// once the file is renamed (nor when a hostile image puts a FIFO's name there).
#[test]
fn a_renamed_sparse_vmdk_is_read_from_itself() {
    let mut c = Case::new();
    let raw = partitioned_raw(c.dir(), "disk.raw", 16, 256);
    let made = c.path("made.vmdk");
    convert(&raw, "vmdk", None, &made);
    let renamed = c.path("renamed.vmdk");
    fs::rename(&made, &renamed).unwrap();
    c.watch(&renamed);
    let out = c.path("out.raw");
    c.run(&["--no-sysprep", "-o", s(&out), s(&renamed)])
        .succeeded();
    assert!(same_bytes(&out, &raw), "the renamed vmdk is not the disk");
    // The name it embeds is now a FIFO: not one of its files, so neither opened nor
    // refused.
    run(Command::new("mkfifo").arg(&made));
    c.watch(&made);
    fs::remove_file(&out).unwrap();
    for side in ["meta", "md5sum", "variant"] {
        fs::remove_file(out.with_extension(format!("raw.{side}"))).unwrap();
    }
    c.run(&["--no-sysprep", "-o", s(&out), s(&renamed)])
        .succeeded();
    assert!(same_bytes(&out, &raw), "the renamed vmdk is not the disk");
}

/// A flat VMDK descriptor as people write it by hand (blank lines around the extent
/// line, which qemu-img reads twice): each part of the disk is checked against the file
/// qemu-img reads it from, so the run works, and a short extent is named.
#[test]
fn a_hand_written_flat_vmdk_is_checked_as_qemu_img_reads_it() {
    let mut c = Case::new();
    let raw = partitioned_raw(c.dir(), "disk.raw", 16, 256);
    let sectors = fs::metadata(&raw).unwrap().len() / 512;
    let descriptor = |extent: &str| {
        format!(
            "# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\n\
             createType=\"monolithicFlat\"\n\nRW {sectors} FLAT \"{extent}\" 0\n\n\
             ddb.adapterType = \"ide\"\n"
        )
    };
    let vmdk = c.path("hand.vmdk");
    fs::write(&vmdk, descriptor("disk.raw")).unwrap();
    c.watch(&vmdk).watch(&raw);
    let out = c.path("out.raw");
    c.run(&["--no-sysprep", "-o", s(&out), s(&vmdk)])
        .succeeded();

    let short = c.path("short.raw");
    fs::write(&short, &fs::read(&raw).unwrap()[..8192]).unwrap();
    let bad = c.path("short.vmdk");
    fs::write(&bad, descriptor("short.raw")).unwrap();
    c.watch(&bad).watch(&short);
    let out = c.path("out2.raw");
    c.run(&["--no-sysprep", "-o", s(&out), s(&bad)]).failure(&[
        s(&short),
        "the extent of",
        "is shorter than it should be",
    ]);
}

/// Every byte of stderr a hostile guest or a strange argument can put there is printable:
/// no control character but the newline ending each line, no line past a few KiB, and no
/// line of its own (such as a fake `Error:`).
fn assert_printable(outcome: &Outcome) {
    let stderr = outcome.stderr();
    for line in stderr.lines() {
        assert!(
            !line.chars().any(|c| c.is_control() && c != '\t'),
            "a control character reached stderr: {line:?}"
        );
        assert!(
            line.chars().count() < 4200,
            "a line of {} characters",
            line.len()
        );
    }
}

#[test]
fn guest_text_with_control_characters_is_escaped_in_messages() {
    let mut c = Case::new();
    let tree = c.path("tree");
    // os-release values and /etc/fstab lines are shown to the user.
    write_file(
        &tree,
        "/etc/os-release",
        "PRETTY_NAME=\"\x1b[2J\x1b]0;owned\x07Debian\x00\"\nNAME=\"Debian\"\n\
         VERSION_ID=\"12\"\nID=debian\n",
    );
    write_file(&tree, "/etc/debian_version", "12.5\n");
    let garbage = format!("\x1b[31m\r{}\n", "x\u{9b}".repeat(20_000));
    write_file(
        &tree,
        "/etc/fstab",
        format!("/dev/sda1 / ext4 defaults 0 1\n{garbage}"),
    );
    // A file that a system preparation removes and names with -v.
    write_file(&tree, "/tmp/a\nError: fake\x1b[0m", "x");
    let disk = Disk::create(
        c.path("disk.raw"),
        64 << 20,
        "label: dos\nstart=2048, type=83\n",
    );
    disk.ext(1, &Mke2fs::ext4().tree(&tree));
    fs::remove_dir_all(&tree).unwrap();
    let src = disk.into_path();
    c.watch(&src);
    let out = c.path("out.raw");
    let outcome = c.run(&["-v", "-o", s(&out), s(&src)]);
    outcome.succeeded();
    assert_printable(&outcome);
    assert!(outcome.error_lines().is_empty(), "{}", outcome.stderr());
    assert!(
        outcome
            .stderr()
            .lines()
            .any(|l| l.contains("removed /tmp/a") && l.contains("Error: fake")),
        "the removed file is not shown on one line\n{}",
        outcome.stderr()
    );
}

#[test]
fn arguments_with_control_characters_give_one_printable_error_line() {
    let c = Case::new();
    let out = c.path("out.raw");
    let odd = c.path("no\nsuch\x1b[2J.img");
    let outcome = c.run(&["-o", s(&out), s(&odd)]);
    outcome.usage_error(&["no\\nsuch\\x1b[2J.img", "does not exist"]);
    assert_printable(&outcome);
    // A very long argument is shortened in the middle: what is wrong with it stays.
    let long = c.path(&"x".repeat(250)).join("y".repeat(7500));
    let outcome = c.run(&["-o", s(&out), s(&long)]);
    outcome.usage_error(&[&s(&long)[..100], "File name too long"]);
    assert_printable(&outcome);
}

/// A `--tmpdir` the user cannot create files in is a bad argument like an unwritable
/// output directory (exit 2, naming it), and the work directory's private name, which
/// the failed attempt to create it would show, never appears.
#[test]
fn a_tmpdir_the_user_cannot_write_is_a_usage_error_naming_it() {
    require("setpriv");
    let mut c = Case::new();
    let raw = partitioned_raw(c.dir(), "disk.raw", 16, 256);
    fs::set_permissions(c.dir(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(&raw, fs::Permissions::from_mode(0o644)).unwrap();
    c.watch(&raw);
    let outdir = c.path("outdir");
    fs::create_dir(&outdir).unwrap();
    run(Command::new("chown").arg("65534:65534").arg(&outdir));
    // The case's --tmpdir stays root's (0755).
    let outcome = c.run_with(
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(common::bin())
            .args(["--no-sysprep", "-o"])
            .arg(outdir.join("out.raw"))
            .arg(&raw)
            .env("HOME", "/nonexistent"),
    );
    outcome.usage_error(&[s(c.tmpdir()), "--tmpdir", "not writable"]);
    assert!(common::entries(&outdir).is_empty());
}

/// The example disk (a Debian guest) as the case's source, watched.
fn example(case: &mut Case) -> PathBuf {
    let img = case.path("example.raw");
    snf_testkit::fixture::example_disk(&img);
    case.watch(&img);
    img
}

/// SIGHUP (the terminal went away), SIGQUIT, SIGUSR1 ... stop the run like Ctrl-C: the
/// cleanup runs, and the exit status is 128 + the signal's number. The `--host-run`
/// script sends the signal to snf-mkimage (its parent), so it comes mid-run.
#[test]
fn other_terminating_signals_stop_the_run_and_clean_up() {
    for (signal, code) in [("HUP", 129), ("QUIT", 131), ("USR1", 138), ("ALRM", 142)] {
        let mut c = Case::new();
        let src = example(&mut c);
        let script = c.path("signal.sh");
        fs::write(
            &script,
            format!("#!/bin/sh\nkill -{signal} $PPID\nsleep 5\n"),
        )
        .unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        let systmp = c.path("systmp");
        fs::create_dir(&systmp).unwrap();
        let out = c.path("out.raw");
        let outcome = c.run_with(
            Command::new(common::bin())
                .env("TMPDIR", &systmp)
                .arg("--host-run")
                .arg(&script)
                .arg("-o")
                .arg(&out)
                .arg(&src),
        );
        outcome.fails(code, &["interrupted"]);
        assert!(
            common::entries(&systmp).is_empty(),
            "SIG{signal}: mount point left"
        );
        assert!(!out.exists(), "SIG{signal}: output left");
    }
}

/// A file size limit (`ulimit -f`) makes a write fail with an error naming what was
/// written, instead of SIGXFSZ killing the process with its work directory in place.
#[test]
fn a_file_size_limit_is_an_error_not_a_kill() {
    let mut c = Case::new();
    let raw = partitioned_raw(c.dir(), "disk.raw", 16, 256);
    c.watch(&raw);
    let out = c.path("out.raw");
    let outcome = c.run_with(
        Command::new("sh")
            .args(["-c", "ulimit -f 2048 && exec \"$0\" \"$@\""])
            .arg(common::bin())
            .args(["--no-sysprep", "-o"])
            .arg(&out)
            .arg(&raw),
    );
    outcome.failure(&["File too large"]);
    assert!(!out.exists(), "output left");
}

/// A signal at any moment of a run: either the run is interrupted (130) and leaves no
/// output, or it has written its image and succeeds; never "interrupted" with the image
/// in place.
#[test]
fn a_signal_at_any_moment_leaves_a_whole_run_or_nothing() {
    let mut c = Case::new();
    let raw = partitioned_raw(c.dir(), "disk.raw", 16, 256);
    c.watch(&raw);
    let out = c.path("out.raw");
    for ms in (0..40).map(|i| i * 15) {
        let child = Command::new(common::bin())
            .args(["--no-sysprep", "-o"])
            .arg(&out)
            .arg(&raw)
            .arg("--tmpdir")
            .arg(c.tmpdir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(ms));
        let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::INT);
        let output = child.wait_with_output().unwrap();
        let outcome = Outcome { output };
        c.check_clean(&outcome);
        let written = out.exists();
        match outcome.code() {
            Some(0) => assert!(written, "{ms} ms: success without the image"),
            Some(130) => assert!(
                !written,
                "{ms} ms: interrupted with the image in place\n{}",
                outcome.stderr()
            ),
            // Before the handlers are installed the default action ends it.
            None => assert!(!written, "{ms} ms: killed with the image in place"),
            Some(code) => panic!("{ms} ms: exit status {code}\n{}", outcome.stderr()),
        }
        if written {
            for f in ["", ".meta", ".md5sum", ".variant"] {
                fs::remove_file(format!("{}{f}", out.display())).unwrap();
            }
        }
    }
}

/// A source that is not something an image is made of (a directory other than `/`, a
/// FIFO, a character device) is a bad command line, like one that does not exist: exit
/// 2, naming it, and the FIFO is never opened.
#[test]
fn a_source_of_the_wrong_kind_is_a_usage_error() {
    let mut c = Case::new();
    let dir = c.path("a-directory");
    fs::create_dir(&dir).unwrap();
    let fifo = c.path("a-fifo");
    run(Command::new("mkfifo").arg(&fifo));
    c.watch(&fifo);
    let out = c.path("out.raw");
    for (src, what) in [
        (dir.as_path(), "Only the root directory can be bundled"),
        (fifo.as_path(), "Only block devices, regular files"),
        (Path::new("/dev/null"), "Only block devices, regular files"),
    ] {
        c.run(&["-o", s(&out), s(src)])
            .usage_error(&[s(src), "Invalid media source", what]);
    }
}

/// A disk that is one huge hole (4 TiB, sparse) takes long to hash; SIGTERM during the
/// dump still stops the run within moments (the hole is not hashed to its end first).
#[test]
fn sigterm_while_hashing_a_huge_hole_stops_at_once() {
    use std::io::{BufRead, BufReader, Read};
    let c = Case::new();
    let src = c.path("huge.raw");
    fs::File::create(&src).unwrap().set_len(4 << 40).unwrap();
    let out = c.path("out.raw");
    let mut child = Command::new(common::bin())
        .args(["--allow-unsupported", "--no-sysprep", "-o"])
        .arg(&out)
        .arg(&src)
        .arg("--tmpdir")
        .arg(c.tmpdir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("Dumping image file ...") {
        let n = stderr.read_line(&mut seen).unwrap();
        assert!(n > 0, "the run ended before dumping:\n{seen}");
    }
    std::thread::sleep(Duration::from_millis(500));
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("SIGTERM did not stop the dump of a huge hole within 20 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    stderr.read_to_string(&mut seen).unwrap();
    let output = child.wait_with_output().unwrap();
    let outcome = Outcome {
        output: std::process::Output {
            stderr: seen.into_bytes(),
            ..output
        },
    };
    c.check_clean(&outcome);
    outcome.fails(143, &["interrupted"]);
    assert!(!out.exists(), "output left");
}
