//! Whether the libguestfs appliance can use KVM on this host.
//!
//! `/dev/kvm` opening is not enough. Nested KVM fails in two ways seen on the hosts we
//! run on (ecosystem §A.1.4): qemu aborts while it sets up the vCPU, or qemu runs the
//! firmware and then the guest kernel stops in its first instructions, the vCPU
//! spinning at 100% host system time, and libguestfs waits for the appliance forever.
//! A failed launch costs seconds and a hung one never returns, so both are probed
//! before the first launch, each bounded: a paused qemu, then the appliance's own
//! kernel booted without a root filesystem, which must reach its "cannot mount root"
//! panic within five seconds (about one under a working KVM). The answer is kept for
//! the process.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// How long the kernel may take to reach its panic under KVM. A working KVM needs about
/// one second; emulation (TCG) needs about five on the 2-core hosts we measured, so a
/// KVM slower than that gains nothing, and a host whose KVM hangs pays only this once
/// per process.
const KERNEL_LIMIT: Duration = Duration::from_secs(5);

/// Whether KVM works for the appliance (see the module documentation).
pub fn usable() -> bool {
    static USABLE: OnceLock<bool> = OnceLock::new();
    *USABLE.get_or_init(|| {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .is_ok()
            && qemu_starts()
            && appliance_kernel().is_none_or(|k| kernel_boots(&k))
    })
}

/// Start qemu paused with KVM and a vCPU like the appliance's, then quit it through its
/// monitor: a zero exit means qemu can create a KVM vCPU. No qemu or a hang counts as
/// not working.
fn qemu_starts() -> bool {
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args([
        "-accel",
        "kvm",
        "-cpu",
        "host",
        "-machine",
        "q35",
        "-m",
        "64",
        "-nodefaults",
        "-display",
        "none",
        "-S",
        "-monitor",
        "stdio",
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let Ok(mut child) = snf_core::command::prepare(&mut cmd).spawn() else {
        return false;
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(b"quit\n");
    }
    matches!(
        snf_core::command::wait_with_limit(&mut child, "qemu-system-x86_64 (KVM probe)", Duration::from_secs(20)),
        Ok(status) if status.success()
    )
}

/// The kernel supermin builds the appliance with: `SUPERMIN_KERNEL`, else the one in
/// libguestfs's cached appliance, else the newest in /boot (supermin's own choice).
fn appliance_kernel() -> Option<PathBuf> {
    if let Some(k) = std::env::var_os("SUPERMIN_KERNEL") {
        return Some(PathBuf::from(k));
    }
    let cache = std::env::var_os("LIBGUESTFS_CACHEDIR")
        .or_else(|| std::env::var_os("TMPDIR"))
        .map_or_else(|| PathBuf::from("/var/tmp"), PathBuf::from);
    let cached = cache
        .join(format!(".guestfs-{}", rustix::process::getuid().as_raw()))
        .join("appliance.d/kernel");
    if cached.is_file() {
        return Some(cached);
    }
    let mut kernels: Vec<PathBuf> = std::fs::read_dir("/boot")
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("vmlinuz-"))
        .map(|e| e.path())
        .collect();
    kernels.sort_by_key(|k| std::fs::metadata(k).and_then(|m| m.modified()).ok());
    kernels.pop()
}

/// Boot `kernel` under KVM with no root filesystem and wait, at most [`KERNEL_LIMIT`],
/// for its panic at mounting root: the kernel ran to the end of its boot.
fn kernel_boots(kernel: &std::path::Path) -> bool {
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args([
        "-accel",
        "kvm",
        "-cpu",
        "max",
        "-m",
        "256",
        "-nodefaults",
        "-display",
        "none",
        "-no-reboot",
        "-serial",
        "stdio",
        "-append",
        "console=ttyS0 panic=-1 edd=off quiet",
        "-kernel",
    ])
    .arg(kernel)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    let Ok(mut child) = snf_core::command::prepare(&mut cmd).spawn() else {
        return false;
    };
    let (tx, rx) = std::sync::mpsc::channel();
    if let Some(out) = child.stdout.take() {
        std::thread::spawn(move || {
            let panicked = BufReader::new(out)
                .split(b'\n')
                .map_while(|l| l.ok())
                .any(|l| l.windows(12).any(|w| w == b"Kernel panic"));
            let _ = tx.send(panicked);
        });
    }
    let booted = rx.recv_timeout(KERNEL_LIMIT).unwrap_or(false);
    let _ = child.kill();
    let _ = child.wait();
    booted
}
