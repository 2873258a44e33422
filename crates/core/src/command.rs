//! Running the external programs the pipeline relies on (qemu-img, e2fsck, resize2fs ...).
//!
//! Every failure names the program and carries the last line of what it printed, so a
//! front-end can show one clear line. Waiting honours [`crate::cancel`]: on cancellation
//! the child is killed and reaped before [`CommandError::Cancelled`] is returned, so no
//! child outlives the run.

use std::ffi::OsStr;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::Duration;

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

/// Run `cmd` to completion, capturing stdout and stderr, and fail unless it exits 0.
pub fn run(cmd: &mut Command) -> Result<Output, CommandError> {
    let out = run_unchecked(cmd)?;
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
    let program = program_name(cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| CommandError::Spawn {
            program: program.clone(),
            source,
        })?;
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let status = wait(&mut child, &program)?;
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
            let _ = child.kill();
            let _ = child.wait();
            return Err(CommandError::Cancelled {
                program: program.to_string(),
            });
        }
        thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(50));
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
    fn missing_program_is_a_spawn_error() {
        let err = run(&mut Command::new("/nonexistent/program")).unwrap_err();
        assert!(matches!(err, CommandError::Spawn { .. }));
    }
}
