//! `--syslog`: RFC 3164 datagrams on the local syslog socket.
//!
//! The message has no TIMESTAMP or HOSTNAME field: the local daemon (rsyslog,
//! systemd-journald) stamps what arrives on `/dev/log` with its own reception time and
//! host name, which spares us a local-time conversion we could only get wrong (the
//! process has no time-zone database binding).

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::Path;

/// The socket the local syslog daemon listens on.
pub const DEV_LOG: &str = "/dev/log";

/// The ident every message carries, as in the original tool.
pub const IDENT: &str = "snf-image-creator";

/// The syslog facility `user`.
const FACILITY_USER: u8 = 1;

/// How important a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl Severity {
    fn code(self) -> u8 {
        match self {
            Severity::Error => 3,
            Severity::Warning => 4,
            Severity::Info => 6,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Severity::Error => "[ERROR]",
            Severity::Warning => "[WARNING]",
            Severity::Info => "[INFO]",
        }
    }
}

/// A connection to the syslog socket.
pub struct Syslog {
    socket: UnixDatagram,
    pid: u32,
}

impl Syslog {
    /// Connect to the datagram socket at `path`.
    pub fn connect(path: &Path) -> io::Result<Self> {
        let socket = UnixDatagram::unbound()?;
        socket.connect(path)?;
        Ok(Syslog {
            socket,
            pid: std::process::id(),
        })
    }

    /// The datagram for one line.
    pub fn format(&self, severity: Severity, msg: &str) -> String {
        let pri = FACILITY_USER * 8 + severity.code();
        format!("<{pri}>{IDENT}[{}]: {} {msg}", self.pid, severity.label())
    }

    /// Send `msg`, one datagram per line; a syslog that went away is not worth failing
    /// the run for, so send errors are dropped.
    pub fn send(&self, severity: Severity, msg: &str) {
        for line in msg.lines().filter(|l| !l.trim().is_empty()) {
            let _ = self.socket.send(self.format(severity, line).as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_carry_priority_ident_pid_and_level() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let server = UnixDatagram::bind(&path).unwrap();
        let log = Syslog::connect(&path).unwrap();
        log.send(Severity::Warning, "disk is small\nsecond line");
        log.send(Severity::Info, "");
        log.send(Severity::Error, "boom");
        let mut buf = [0u8; 512];
        let pid = std::process::id();
        let mut got = Vec::new();
        for _ in 0..3 {
            let n = server.recv(&mut buf).unwrap();
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        assert_eq!(
            got,
            vec![
                format!("<12>snf-image-creator[{pid}]: [WARNING] disk is small"),
                format!("<12>snf-image-creator[{pid}]: [WARNING] second line"),
                format!("<11>snf-image-creator[{pid}]: [ERROR] boom"),
            ]
        );
    }
}
