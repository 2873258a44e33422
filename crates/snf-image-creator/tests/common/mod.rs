//! Driving the real `snf-image-creator` binary in a real terminal (tmux): keys in with
//! `send-keys`, the screen out with `capture-pane`. Every wait is bounded.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// How long to wait for a screen.
pub const TIMEOUT: Duration = Duration::from_secs(60);

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_snf-image-creator")
}

pub use snf_testkit::fixture::require;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `snf-mkimage`, built now if needed (it is another package of the workspace).
pub fn snf_mkimage() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let st = Command::new(cargo)
        .args(["build", "-q", "-p", "snf-mkimage", "--bin", "snf-mkimage"])
        .current_dir(root())
        .status()
        .expect("cannot run cargo to build snf-mkimage");
    assert!(st.success(), "building snf-mkimage failed");
    // target/debug/deps/<test> -> target/debug/snf-mkimage
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().parent().unwrap().join("snf-mkimage");
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

/// The example Debian-like disk of scripts/make-example.sh, as `dir/ex.raw`.
pub fn example_disk(dir: &Path) -> PathBuf {
    let out = dir.join("ex.raw");
    snf_testkit::fixture::example_disk(&out);
    out
}

/// MD5 of a file, with md5sum.
pub fn md5(path: &Path) -> String {
    let out = Command::new("md5sum").arg(path).output().expect("md5sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Whether a work directory of the tool is left in `dir`.
pub fn workdir_left(dir: &Path) -> bool {
    std::fs::read_dir(dir).unwrap().flatten().any(|e| {
        e.file_name()
            .to_string_lossy()
            .starts_with(".snf_image_creator.")
    })
}

/// Whether two files hold the same bytes.
pub fn same_bytes(a: &Path, b: &Path) -> bool {
    std::fs::read(a).unwrap() == std::fs::read(b).unwrap()
}

/// One tmux session running the program; killed on drop.
pub struct Tmux {
    pub name: String,
    /// The program's exit status is written here when it ends.
    pub status_file: PathBuf,
    /// The program's pid, once [`Tmux::pid`] looked it up.
    pid: std::cell::Cell<Option<u32>>,
}

fn tmux(args: &[&str]) -> std::process::Output {
    Command::new("tmux")
        .args(args)
        .output()
        .expect("cannot run tmux")
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl Tmux {
    /// Run `snf-image-creator ARGS` in a `width`x`height` terminal, in `cwd`, with `env`.
    pub fn start(cwd: &Path, args: &[&str], env: &[(&str, &str)], width: u16, height: u16) -> Tmux {
        Self::start_with(&[], cwd, args, env, width, height)
    }

    /// [`Tmux::start`] through `runner` (e.g. `setpriv ...` to drop root).
    pub fn start_with(
        runner: &[&str],
        cwd: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        width: u16,
        height: u16,
    ) -> Tmux {
        Self::start_full(runner, cwd, args, env, width, height, false)
    }

    /// [`Tmux::start`] for a test that closes the terminal ([`Tmux::hang_up`]): the
    /// shell around the program outlives the hang-up, to write the exit status.
    pub fn start_for_hang_up(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Tmux {
        Self::start_full(&[], cwd, args, env, 80, 24, true)
    }

    fn start_full(
        runner: &[&str],
        cwd: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        width: u16,
        height: u16,
        outlive_hang_up: bool,
    ) -> Tmux {
        require("tmux");
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let name = format!(
            "snf-tui-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        );
        let status_file = cwd.join("exit-status");
        let _ = std::fs::remove_file(&status_file);
        let mut cmd = String::new();
        if outlive_hang_up {
            // The program gets its own handlers (and the hang-up on its input).
            cmd.push_str("trap '' HUP; ");
        }
        for (k, v) in env {
            cmd.push_str(&format!("export {k}={}; ", quote(v)));
        }
        cmd.push_str(&format!("cd {}; ", quote(&cwd.display().to_string())));
        for r in runner {
            cmd.push_str(&quote(r));
            cmd.push(' ');
        }
        cmd.push_str(&quote(bin()));
        for a in args {
            cmd.push(' ');
            cmd.push_str(&quote(a));
        }
        cmd.push_str(&format!(
            "; echo $? > {}",
            quote(&status_file.display().to_string())
        ));
        if !outlive_hang_up {
            // Keep the pane (and the program's last words) until the test reads it.
            cmd.push_str("; sleep 600");
        }
        let out = tmux(&[
            "new-session",
            "-d",
            "-s",
            &name,
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
            "sh",
            "-c",
            &cmd,
        ]);
        assert!(
            out.status.success(),
            "tmux new-session: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmux {
            name,
            status_file,
            pid: Default::default(),
        }
    }

    /// The screen as text.
    pub fn screen(&self) -> String {
        String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-t", &self.name]).stdout)
            .into_owned()
    }

    /// Press keys (tmux key names: Enter, Down, Escape, C-u ...).
    pub fn keys(&self, keys: &[&str]) {
        for k in keys {
            let out = tmux(&["send-keys", "-t", &self.name, k]);
            assert!(out.status.success(), "tmux send-keys {k}");
            std::thread::sleep(Duration::from_millis(60));
        }
    }

    /// Resize the terminal (the program gets SIGWINCH).
    pub fn resize(&self, width: u16, height: u16) {
        let out = tmux(&[
            "resize-window",
            "-t",
            &self.name,
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
        ]);
        assert!(
            out.status.success(),
            "tmux resize-window: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    /// Type text literally.
    pub fn type_text(&self, text: &str) {
        let out = tmux(&["send-keys", "-t", &self.name, "-l", text]);
        assert!(out.status.success(), "tmux send-keys -l");
        std::thread::sleep(Duration::from_millis(60));
    }

    /// Wait until the screen shows `text`; returns the screen.
    pub fn wait_for(&self, text: &str) -> String {
        self.wait_for_within(text, TIMEOUT)
    }

    /// [`Tmux::wait_for`] with another timeout.
    pub fn wait_for_within(&self, text: &str, timeout: Duration) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if s.contains(text) {
                // Let the rest of the frame arrive.
                std::thread::sleep(Duration::from_millis(100));
                return self.screen();
            }
            if let Ok(code) = std::fs::read_to_string(&self.status_file) {
                panic!(
                    "the program exited ({}) while waiting for {text:?}; screen:\n{s}",
                    code.trim()
                );
            }
            assert!(
                start.elapsed() < timeout,
                "timed out waiting for {text:?}; screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Wait for the program to exit; its status.
    pub fn wait_exit(&self) -> i32 {
        let start = Instant::now();
        loop {
            if let Ok(code) = std::fs::read_to_string(&self.status_file) {
                if code.ends_with('\n') {
                    return code.trim().parse().expect("exit status");
                }
            }
            assert!(
                start.elapsed() < TIMEOUT,
                "the program did not exit; screen:\n{}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Tmux {
    /// Wait until the screen shows one of `texts`; which one, and the screen.
    pub fn wait_for_any(&self, texts: &[&str]) -> (usize, String) {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if let Some(i) = texts.iter().position(|t| s.contains(t)) {
                std::thread::sleep(Duration::from_millis(100));
                return (i, self.screen());
            }
            assert!(
                start.elapsed() < TIMEOUT,
                "timed out waiting for one of {texts:?}; screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// From the main menu: Extract, saying Yes to the question about an image on which
    /// no system preparation ran; at the file selector.
    pub fn open_extract(&self) {
        // The letter, wherever the highlight is.
        self.keys(&["e", "Enter"]);
        let (i, _) = self.wait_for_any(&["Save image as...", "No system preparation"]);
        if i == 1 {
            self.keys(&["Left", "Enter"]);
            self.wait_for("Save image as...");
        }
    }

    /// From the main menu: save the image as `img` (Extract), then quit; the exit status.
    pub fn save_image_and_quit(&self, img: &Path) -> i32 {
        self.open_extract();
        self.keys(&["C-u"]);
        self.type_text(&img.display().to_string());
        self.keys(&["Enter"]);
        self.wait_for("was successfully created");
        self.keys(&["Enter"]);
        self.wait_for("Image Creator for Synnefo");
        self.keys(&["Escape"]);
        self.wait_for("Do you want to exit?");
        self.keys(&["Enter"]);
        self.wait_exit()
    }

    /// The program's process id (the child of the pane's shell), once it runs.
    pub fn pid(&self) -> u32 {
        let start = Instant::now();
        loop {
            let out = tmux(&["list-panes", "-t", &self.name, "-F", "#{pane_pid}"]);
            let shell = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if let Ok(children) =
                std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children"))
            {
                if let Some(pid) = children.split_whitespace().next() {
                    let pid = pid.parse().expect("pid");
                    self.pid.set(Some(pid));
                    return pid;
                }
            }
            assert!(start.elapsed() < TIMEOUT, "the program did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Close the terminal as a closed window does (the pane's tty hangs up).
    pub fn hang_up(&self) {
        let _ = tmux(&["kill-session", "-t", &self.name]);
    }
}

/// Whether process `pid` has ended (gone, or a zombie waiting for its parent).
pub fn process_ended(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

/// Wait (bounded) for process `pid` to end; whether it did.
pub fn wait_ended(pid: u32, timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if process_ended(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

impl Drop for Tmux {
    fn drop(&mut self) {
        // A program that outlives its terminal must not run on after the test.
        let out = tmux(&["list-panes", "-t", &self.name, "-F", "#{pane_pid}"]);
        let shell = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let children = std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children"))
            .unwrap_or_default();
        let _ = tmux(&["kill-session", "-t", &self.name]);
        let pids = children
            .split_whitespace()
            .filter_map(|p| p.parse::<u32>().ok())
            .chain(self.pid.get());
        for pid in pids {
            if !wait_ended(pid, Duration::from_secs(10)) {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
    }
}
