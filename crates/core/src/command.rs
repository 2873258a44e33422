//! Running the external programs the pipeline relies on (qemu-img, e2fsck, resize2fs ...).
//!
//! Every failure names the program and carries the last line of what it printed, so a
//! front-end can show one clear line. Waiting honours [`crate::cancel`]: on cancellation
//! the child is killed and reaped before [`CommandError::Cancelled`] is returned, so no
//! child outlives the run.
//!
//! Every program runs with `LC_ALL=C` (and no `LANGUAGE`): its output is parsed and its
//! messages are matched in English, whatever the user's locale. It runs in a process
//! group of its own, so that a time limit or a cancellation kills whatever it started
//! too (a wrapper's child, a helper qemu-img forks), not just the program itself.

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// What went wrong running a program.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} failed ({status}){}", stderr_suffix(.stderr))]
    Failed {
        program: String,
        status: ExitStatus,
        stdout: String,
        stderr: String,
    },
    #[error("{program}: {source}")]
    Io {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} was interrupted by the user")]
    Cancelled { program: String },
    /// The program ran past its time limit and was killed.
    #[error("{program} did not finish within {}", seconds(.limit))]
    TimedOut { program: String, limit: Duration },
}

fn seconds(limit: &Duration) -> String {
    if limit.as_secs() >= 1 {
        format!("{} s", limit.as_secs())
    } else {
        format!("{} ms", limit.as_millis())
    }
}

fn stderr_suffix(stderr: &str) -> String {
    match stderr.lines().rev().find(|l| !l.trim().is_empty()) {
        Some(line) => format!(": {}", line.trim()),
        None => String::new(),
    }
}

impl CommandError {
    /// The exit code of a program that ran and failed.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            CommandError::Failed { status, .. } => status.code(),
            _ => None,
        }
    }
}

/// The captured result of a program that ran to completion.
#[derive(Debug, Clone)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// The program a command runs; for a wrapper that runs another (`eatmydata resize2fs`),
/// the program wrapped, which is the one whose failure matters.
fn program_name(cmd: &Command) -> String {
    let program = cmd.get_program();
    if Path::new(program).file_name() == Some(OsStr::new("eatmydata")) {
        if let Some(wrapped) = cmd.get_args().next() {
            return wrapped.to_string_lossy().into_owned();
        }
    }
    program.to_string_lossy().into_owned()
}

/// The program and, when it has one, its subcommand (`qemu-img info`): what a time-limit
/// message names, since one program's subcommands get different limits.
fn program_and_subcommand(cmd: &Command) -> String {
    let program = program_name(cmd);
    let mut args = cmd.get_args();
    if Path::new(cmd.get_program()).file_name() == Some(OsStr::new("eatmydata")) {
        args.next();
    }
    match args.next().and_then(OsStr::to_str) {
        Some(sub) if !sub.is_empty() && sub.bytes().all(|b| b.is_ascii_lowercase()) => {
            format!("{program} {sub}")
        }
        _ => program,
    }
}

/// The time limit for a program whose work grows with `bytes` of data (a copy, a
/// filesystem check or resize): ten minutes plus two per GiB, which a disk as slow as
/// 8 MiB/s still meets, while a program looping on hostile input is still stopped.
pub fn data_limit(bytes: u64) -> Duration {
    const GIB: u64 = 1 << 30;
    Duration::from_secs(600 + 120 * bytes.div_ceil(GIB))
}

/// Set up `cmd` the way every external program runs: `LC_ALL=C` without `LANGUAGE`, in a
/// process group of its own. For callers that spawn and wait themselves (streaming the
/// output); [`run`] and friends do it already.
pub fn prepare(cmd: &mut Command) -> &mut Command {
    cmd.env("LC_ALL", "C")
        .env_remove("LANGUAGE")
        .process_group(0)
}

/// Run `cmd` to completion, capturing stdout and stderr, and fail unless it exits 0.
pub fn run(cmd: &mut Command) -> Result<Output, CommandError> {
    let out = run_unchecked(cmd)?;
    check(cmd, out)
}

/// [`run`], killing the program (and everything it started) once `limit` has passed.
pub fn run_with_limit(cmd: &mut Command, limit: Duration) -> Result<Output, CommandError> {
    let out = run_unchecked_with_limit(cmd, limit)?;
    check(cmd, out)
}

fn check(cmd: &Command, out: Output) -> Result<Output, CommandError> {
    if out.status.success() {
        Ok(out)
    } else {
        Err(CommandError::Failed {
            program: program_name(cmd),
            status: out.status,
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }
}

/// Run `cmd` to completion and return whatever it exited with.
pub fn run_unchecked(cmd: &mut Command) -> Result<Output, CommandError> {
    run_limited(cmd, None)
}

/// [`run_unchecked`], killing the program (and everything it started) once `limit` has
/// passed.
pub fn run_unchecked_with_limit(
    cmd: &mut Command,
    limit: Duration,
) -> Result<Output, CommandError> {
    run_limited(cmd, Some(limit))
}

/// Starts `cmd` as [`prepare`] sets it up, with no input and both outputs piped back.
fn spawn_piped(cmd: &mut Command, program: &str) -> Result<Child, CommandError> {
    prepare(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| CommandError::Spawn {
            program: program.to_owned(),
            source,
        })
}

fn run_limited(cmd: &mut Command, limit: Option<Duration>) -> Result<Output, CommandError> {
    let program = program_name(cmd);
    let what = program_and_subcommand(cmd);
    let mut child = spawn_piped(cmd, &program)?;
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let status = wait_limited(&mut child, &program, &what, limit)?;
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Wait for `child`, killing it if cancellation is requested meanwhile.
pub fn wait(child: &mut Child, program: &str) -> Result<ExitStatus, CommandError> {
    wait_limited(child, program, program, None)
}

/// [`wait`], killing `child` past `limit` with [`CommandError::TimedOut`] naming `what`
/// (the program and its subcommand, `qemu-img map`).
pub fn wait_with_limit(
    child: &mut Child,
    what: &str,
    limit: Duration,
) -> Result<ExitStatus, CommandError> {
    let program = what.split(' ').next().unwrap_or(what);
    wait_limited(child, program, what, Some(limit))
}

/// Kill `child` and whatever it started ([`prepare`] made it a process group leader; a
/// child spawned otherwise has no group of its own and only it is killed), then reap it.
pub fn kill(child: &mut Child) {
    kill_group(child.id());
    let _ = child.kill();
    let _ = child.wait();
}

fn wait_limited(
    child: &mut Child,
    program: &str,
    what: &str,
    limit: Option<Duration>,
) -> Result<ExitStatus, CommandError> {
    let deadline = limit.map(|l| (Instant::now() + l, l));
    let mut delay = Duration::from_millis(1);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) => {}
            Err(source) => {
                return Err(CommandError::Io {
                    program: program.to_string(),
                    source,
                })
            }
        }
        if crate::cancel::is_requested() {
            kill(child);
            return Err(CommandError::Cancelled {
                program: program.to_string(),
            });
        }
        if let Some((deadline, limit)) = deadline {
            if Instant::now() >= deadline {
                kill(child);
                return Err(CommandError::TimedOut {
                    program: what.to_string(),
                    limit,
                });
            }
        }
        thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(50));
    }
}

/// Run `cmd`, handing each line of its stdout to `each` as it comes (for output too large
/// to hold), and return its status and stderr (`stdout` is left empty). `each` returns
/// `false` to stop early: the program is then killed. Past `limit`, or on cancellation,
/// the program is killed even while it prints nothing.
pub fn stream_lines(
    cmd: &mut Command,
    limit: Option<Duration>,
    mut each: impl FnMut(&str) -> bool,
) -> Result<Output, CommandError> {
    use std::io::BufRead;
    use std::sync::mpsc;

    #[derive(Clone, Copy)]
    enum Stop {
        Cancelled,
        TimedOut,
    }
    let program = program_name(cmd);
    let what = program_and_subcommand(cmd);
    let start = Instant::now();
    let mut child = spawn_piped(cmd, &program)?;
    let stderr = drain(child.stderr.take());
    let stdout = child.stdout.take();
    let pid = child.id();
    // The reads below block; this thread enforces the limit and cancellation meanwhile.
    // The child is reaped only after it is joined, so the pid it kills is still ours.
    let (done, done_rx) = mpsc::channel::<()>();
    let watchdog = thread::spawn(move || loop {
        match done_rx.recv_timeout(Duration::from_millis(50)) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            _ => return None,
        }
        let stop = if crate::cancel::is_requested() {
            Some(Stop::Cancelled)
        } else if limit.is_some_and(|l| start.elapsed() >= l) {
            Some(Stop::TimedOut)
        } else {
            None
        };
        if stop.is_some() {
            kill_group(pid);
            return stop;
        }
    });
    let mut stopped = false;
    if let Some(out) = stdout {
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if !each(&line) {
                stopped = true;
                break;
            }
        }
    }
    if stopped {
        kill_group(pid);
    }
    let _ = done.send(());
    let stop = watchdog.join().unwrap_or(None);
    let remaining = limit.map(|l| l.saturating_sub(start.elapsed()));
    let status = match stop {
        Some(_) => child.wait().map_err(|source| CommandError::Io {
            program: program.clone(),
            source,
        })?,
        None => wait_limited(&mut child, &program, &what, remaining)?,
    };
    let stderr = stderr.join().unwrap_or_default();
    match stop {
        Some(Stop::Cancelled) => Err(CommandError::Cancelled { program }),
        Some(Stop::TimedOut) => Err(CommandError::TimedOut {
            program: what,
            limit: limit.unwrap_or_default(),
        }),
        None => Ok(Output {
            status,
            stdout: String::new(),
            stderr,
        }),
    }
}

fn kill_group(pid: u32) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

/// Whether `program` can be found on `PATH`.
pub fn exists(program: impl AsRef<OsStr>) -> bool {
    let program = program.as_ref();
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_names_program_and_last_stderr_line() {
        let err =
            run(Command::new("sh").args(["-c", "echo one >&2; echo two >&2; exit 3"])).unwrap_err();
        assert_eq!(err.exit_code(), Some(3));
        let msg = err.to_string();
        assert!(msg.starts_with("sh failed"), "{msg}");
        assert!(msg.ends_with(": two"), "{msg}");
    }

    #[test]
    fn captures_stdout() {
        let out = run(Command::new("sh").args(["-c", "printf hello"])).unwrap();
        assert_eq!(out.stdout, "hello");
    }

    #[test]
    fn data_limits_grow_with_the_data() {
        assert_eq!(data_limit(0), Duration::from_secs(600));
        assert_eq!(data_limit(1), Duration::from_secs(720));
        assert_eq!(data_limit(10 << 30), Duration::from_secs(1800));
    }

    #[test]
    fn programs_run_in_the_c_locale() {
        let out = run(Command::new("sh")
            .args(["-c", "printf '%s|%s' \"$LC_ALL\" \"${LANGUAGE-unset}\""])
            .env("LC_ALL", "de_DE.UTF-8")
            .env("LANG", "de_DE.UTF-8")
            .env("LANGUAGE", "de"))
        .unwrap();
        assert_eq!(out.stdout, "C|unset");
    }

    #[test]
    fn a_program_past_its_limit_is_killed_with_what_it_started() {
        let dir = std::env::temp_dir().join(format!("snf-core-limit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pidfile = dir.join("pid");
        let err = run_with_limit(
            Command::new("sh").arg("-c").arg(format!(
                "sleep 1000 & echo $! > '{}'; wait",
                pidfile.display()
            )),
            Duration::from_millis(300),
        )
        .unwrap_err();
        assert!(matches!(err, CommandError::TimedOut { .. }), "{err}");
        assert_eq!(err.to_string(), "sh did not finish within 300 ms");
        let pid = std::fs::read_to_string(&pidfile).unwrap();
        // SIGKILL is delivered asynchronously: the grandchild may still be running for a
        // moment. It must end (gone, or a zombie waiting for init) well within seconds.
        let state = |pid: &str| {
            std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()))
                .map(|s| s.rsplit(')').next().unwrap_or("").trim().chars().next())
                .unwrap_or(None)
        };
        let mut last = state(&pid);
        for _ in 0..500 {
            if matches!(last, None | Some('Z') | Some('X')) {
                break;
            }
            thread::sleep(Duration::from_millis(10));
            last = state(&pid);
        }
        assert!(matches!(last, None | Some('Z') | Some('X')), "{last:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn streamed_output_is_cut_short_or_limited() {
        let mut seen = Vec::new();
        let out = stream_lines(
            Command::new("sh").args(["-c", "echo a; echo b; echo c; exit 4"]),
            None,
            |l| {
                seen.push(l.to_string());
                true
            },
        )
        .unwrap();
        assert_eq!(seen, ["a", "b", "c"]);
        assert_eq!(out.status.code(), Some(4));
        let mut first = None;
        stream_lines(
            Command::new("sh").args(["-c", "while :; do echo y; done"]),
            None,
            |l| {
                first = Some(l.to_string());
                false
            },
        )
        .unwrap();
        assert_eq!(first.as_deref(), Some("y"));
        let err = stream_lines(
            Command::new("sleep").arg("1000"),
            Some(Duration::from_millis(200)),
            |_| true,
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "sleep did not finish within 200 ms");
    }

    #[test]
    fn a_time_limit_names_the_subcommand() {
        let mut cmd = Command::new("qemu-img");
        cmd.args(["info", "--output=json", "x"]);
        assert_eq!(program_and_subcommand(&cmd), "qemu-img info");
        let mut cmd = Command::new("eatmydata");
        cmd.args(["e2fsck", "-fy", "x"]);
        assert_eq!(program_and_subcommand(&cmd), "e2fsck");
        assert_eq!(
            CommandError::TimedOut {
                program: "qemu-img info".into(),
                limit: Duration::from_secs(60)
            }
            .to_string(),
            "qemu-img info did not finish within 60 s"
        );
    }

    #[test]
    fn missing_program_is_a_spawn_error() {
        let err = run(&mut Command::new("/nonexistent/program")).unwrap_err();
        assert!(matches!(err, CommandError::Spawn { .. }));
    }
}
