//! One bad-input case: a private directory, a `--tmpdir` inside it, the files the run must
//! not change, and the checks every case makes after the run.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common;

/// How long any bad-input run may take before the test calls it a hang.
pub const HANG_LIMIT: Duration = Duration::from_secs(120);

/// A case's private directory and what the run must leave as it was.
pub struct Case {
    dir: tempfile::TempDir,
    tmpdir: PathBuf,
    watched: BTreeMap<PathBuf, String>,
}

impl Case {
    pub fn new() -> Case {
        let dir = common::tempdir();
        let tmpdir = dir.path().join("tmp");
        fs::create_dir(&tmpdir).unwrap();
        Case {
            dir,
            tmpdir,
            watched: BTreeMap::new(),
        }
    }

    /// The case's directory: fixtures go here.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A path inside the case's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The `--tmpdir` every run gets; it must be empty afterwards.
    pub fn tmpdir(&self) -> &Path {
        &self.tmpdir
    }

    /// Remember `path`'s checksum: the run must not change it (the source, its backing
    /// files, an existing output the run must not overwrite).
    pub fn watch(&mut self, path: impl AsRef<Path>) -> &mut Case {
        let path = path.as_ref().to_path_buf();
        let sum = checksum(&path);
        self.watched.insert(path, sum);
        self
    }

    /// Run snf-mkimage with `args` plus `--tmpdir`, under the hang limit, and check that
    /// it cleaned up after itself whatever the outcome.
    pub fn run(&self, args: &[&str]) -> Outcome {
        self.run_with(Command::new(common::bin()).args(args))
    }

    /// Like [`Case::run`] for a command prepared by the caller (environment, user).
    pub fn run_with(&self, cmd: &mut Command) -> Outcome {
        cmd.arg("--tmpdir")
            .arg(&self.tmpdir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let output = wait_bounded(cmd.spawn().expect("cannot run snf-mkimage"));
        let outcome = Outcome { output };
        self.check_clean(&outcome);
        outcome
    }

    /// The checks every run makes, whatever it exited with.
    pub fn check_clean(&self, outcome: &Outcome) {
        for (path, before) in &self.watched {
            assert_eq!(
                &checksum(path),
                before,
                "{} was changed by the run\n{}",
                path.display(),
                outcome.stderr()
            );
        }
        let stderr = outcome.stderr();
        assert!(
            !stderr.contains(".snf_image_creator."),
            "a message shows the work directory's internal file names\n{stderr}"
        );
        let left = common::entries(&self.tmpdir);
        assert!(
            left.is_empty(),
            "the run left {left:?} in --tmpdir\n{}",
            outcome.stderr()
        );
        let here = self.dir.path().to_string_lossy().into_owned();
        let loops = loop_devices_on(&here);
        assert!(loops.is_empty(), "loop devices left behind: {loops:?}");
        let mounts: Vec<_> = snf_testkit::fixture::mounts()
            .into_iter()
            .filter(|m| format!("{m:?}").contains(&here))
            .collect();
        assert!(mounts.is_empty(), "mounts left behind: {mounts:?}");
        let procs = processes_mentioning(&here);
        assert!(procs.is_empty(), "processes left behind: {procs:?}");
    }
}

/// The result of one run.
pub struct Outcome {
    pub output: Output,
}

impl Outcome {
    pub fn code(&self) -> Option<i32> {
        self.output.status.code()
    }

    pub fn stderr(&self) -> String {
        common::stderr(&self.output)
    }

    pub fn stdout(&self) -> String {
        common::stdout(&self.output)
    }

    /// The error line(s): stderr lines that start with `Error:`.
    pub fn error_lines(&self) -> Vec<String> {
        self.stderr()
            .lines()
            .filter(|l| l.trim_start().starts_with("Error:"))
            .map(str::to_string)
            .collect()
    }

    /// The run failed with `code` and exactly one error line that holds every one of
    /// `names` (the object and what is wrong with it). Returns that line.
    pub fn fails(&self, code: i32, names: &[&str]) -> String {
        let stderr = self.stderr();
        assert_eq!(self.code(), Some(code), "exit status\n{stderr}");
        let errors = self.error_lines();
        assert_eq!(errors.len(), 1, "want one error line\n{stderr}");
        let line = errors[0].clone();
        for name in names {
            assert!(
                line.contains(name),
                "the error line does not name {name:?}: {line}"
            );
        }
        assert!(
            !line.contains(".snf_image_creator.") && !line.contains("/tmp/tmp"),
            "the error line shows internal file names: {line}"
        );
        line
    }

    /// A usage error (exit 2) naming every one of `names`.
    pub fn usage_error(&self, names: &[&str]) -> String {
        self.fails(2, names)
    }

    /// A failed run (exit 1) naming every one of `names`.
    pub fn failure(&self, names: &[&str]) -> String {
        self.fails(1, names)
    }

    pub fn succeeded(&self) {
        assert_eq!(self.code(), Some(0), "run failed\n{}", self.stderr());
    }
}

/// Wait for `child`, killing it (and failing the test) past [`HANG_LIMIT`].
fn wait_bounded(mut child: std::process::Child) -> Output {
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("collect output");
        }
        if start.elapsed() > HANG_LIMIT {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collect output");
            panic!(
                "snf-mkimage hung for {HANG_LIMIT:?}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SHA-256 of a file, or a description of what it is when it is not a regular file
/// (a FIFO must not be opened just to check it).
pub fn checksum(path: &Path) -> String {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_file() => common::sha256(path),
        Ok(m) if m.file_type().is_dir() => format!("dir {:?}", common::entries(path)),
        Ok(m) => format!("{:?} len {}", m.file_type(), m.len()),
        Err(e) => format!("missing: {}", e.kind()),
    }
}

/// Loop devices whose backing file lies under `dir`.
pub fn loop_devices_on(dir: &str) -> Vec<String> {
    let out = Command::new("losetup")
        .args(["-n", "-O", "NAME,BACK-FILE", "-l"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    out.lines()
        .filter(|l| l.contains(dir))
        .map(str::to_string)
        .collect()
}

/// Live processes (other than this test) whose command line mentions `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<String> {
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return found;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) || name == me {
            continue;
        }
        let Ok(cmdline) = fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) {
            found.push(format!("{name}: {cmdline}"));
        }
    }
    found
}

impl Case {
    /// Give the runs `dir` as `--tmpdir` instead of the case's own (a small filesystem
    /// the test mounted outside the case's directory, so that its mount is not taken
    /// for one the run left behind); it must be empty after each run all the same.
    pub fn use_tmpdir(&mut self, dir: &Path) -> &mut Case {
        self.tmpdir = dir.to_path_buf();
        self
    }
}
