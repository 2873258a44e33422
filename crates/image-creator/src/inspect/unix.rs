//! The facts the Unix metadata keys are made of: passworded users, kernels, desktops,
//! services enabled at boot, sshd settings, cloud-init, password hashes.
//!
//! Everything here reads the guest through [`GuestFs`] (symlinks resolved inside the
//! guest) and treats missing or unreadable files as absent: a broken guest gives fewer
//! keys, never an error.

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

use serde_yaml::Value;
use snf_core::Reporter;
use snf_guestfs::{FileType, GuestFs};

fn read(g: &mut GuestFs, path: &str) -> Option<String> {
    let p = Path::new(path);
    if !g.is_file(p) {
        return None;
    }
    g.read_to_string(p).ok()
}

fn list(g: &mut GuestFs, dir: &str) -> Vec<(String, FileType)> {
    g.read_dir(Path::new(dir))
        .map(|v| {
            v.into_iter()
                .map(|(n, t)| (n.to_string_lossy().into_owned(), t))
                .collect()
        })
        .unwrap_or_default()
}

/// Users of `/etc/shadow` with a usable password: the password field is empty or starts
/// with neither `!` nor `*` (and is longer than one character). Locked accounts (`!...`)
/// are reported and skipped, as the original does.
pub fn shadow_users(g: &mut GuestFs, reporter: &dyn Reporter) -> Vec<String> {
    let Some(text) = read(g, "/etc/shadow") else {
        reporter.warn("Unable to collect user info. File: `/etc/shadow' is missing!");
        return Vec::new();
    };
    let mut users = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(':').collect();
        // user:password: then six more colon-terminated fields.
        if f.len() < 9 || f[0].is_empty() || f[..8].iter().any(|x| x.contains(char::is_whitespace))
        {
            continue;
        }
        let (user, pw) = (f[0], f[1]);
        if pw.starts_with('!') {
            if pw.len() > 1 {
                reporter.warn(&format!("Ignoring locked {user} account."));
            }
        } else if pw.is_empty() || (!pw.starts_with('*') && pw.len() > 1) {
            users.push(user.to_string());
        }
    }
    users
}

/// Users of a BSD `/etc/master.passwd` (10 fields) with a usable password, `root` first.
pub fn master_passwd_users(g: &mut GuestFs, reporter: &dyn Reporter) -> Vec<String> {
    let Some(text) = read(g, "/etc/master.passwd") else {
        reporter.warn("Unable to collect user info. File: `/etc/master.passwd' is missing!");
        return Vec::new();
    };
    let mut users = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 10 || f[0].is_empty() {
            continue;
        }
        let (user, pw) = (f[0], f[1]);
        if pw.starts_with('!') {
            if pw.len() > 1 {
                reporter.warn(&format!("Ignoring locked {user} account."));
            }
        } else if pw.is_empty() || (!pw.starts_with('*') && pw.len() > 1) {
            if user == "root" {
                users.insert(0, user.to_string());
            } else {
                users.push(user.to_string());
            }
        }
    }
    users
}

/// Compare version strings the way Python's `pkg_resources.parse_version` orders kernel
/// versions in practice: runs of digits compare as numbers, other runs as text, and a
/// number is newer than text at the same place.
pub fn version_cmp(a: &str, b: &str) -> Ordering {
    fn tokens(s: &str) -> Vec<Result<u64, String>> {
        let mut out = Vec::new();
        let mut cur = String::new();
        let mut digits = false;
        for c in s.chars() {
            let is_digit = c.is_ascii_digit();
            if !c.is_ascii_alphanumeric() {
                if !cur.is_empty() {
                    out.push(flush(&cur, digits));
                    cur.clear();
                }
                continue;
            }
            if !cur.is_empty() && is_digit != digits {
                out.push(flush(&cur, digits));
                cur.clear();
            }
            digits = is_digit;
            cur.push(c);
        }
        if !cur.is_empty() {
            out.push(flush(&cur, digits));
        }
        out
    }
    fn flush(s: &str, digits: bool) -> Result<u64, String> {
        if digits {
            s.parse().map_err(|_| s.to_string())
        } else {
            Err(s.to_ascii_lowercase())
        }
    }
    let (ta, tb) = (tokens(a), tokens(b));
    for (x, y) in ta.iter().zip(tb.iter()) {
        let o = match (x, y) {
            (Ok(x), Ok(y)) => x.cmp(y),
            (Ok(_), Err(_)) => Ordering::Greater,
            (Err(_), Ok(_)) => Ordering::Less,
            (Err(x), Err(y)) => x.cmp(y),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    ta.len().cmp(&tb.len())
}

/// The newest kernel with a `/boot/config-<version>`.
pub fn linux_kernel(g: &mut GuestFs) -> Option<String> {
    list(g, "/boot")
        .into_iter()
        .filter_map(|(n, _)| n.strip_prefix("config-").map(str::to_string))
        .filter(|v| !v.is_empty())
        .max_by(|a, b| version_cmp(a, b))
}

/// Arch Linux: the newest `linux` or `linux-lts` package in the pacman database
/// (`linux-6.6.7.arch1-1` → `6.6.7.arch1-1`, `linux-lts-6.1.68-1` → `6.1.68-1 LTS`).
pub fn arch_kernel(g: &mut GuestFs, reporter: &dyn Reporter) -> Option<String> {
    let dir = "/var/lib/pacman/local";
    if !g.is_dir(Path::new(dir)) {
        reporter.warn(&format!("Directory: `{dir}' does not exist!"));
        return None;
    }
    let mut best: Option<(String, bool)> = None;
    for (name, _) in list(g, dir) {
        let Some(rest) = name.strip_prefix("linux-") else {
            continue;
        };
        let (lts, ver) = match rest.strip_prefix("lts-") {
            Some(v) => (true, v),
            None => (false, rest),
        };
        // <version>-<release>, the version starting with a digit.
        let Some((v, rel)) = ver.rsplit_once('-') else {
            continue;
        };
        if !v.starts_with(|c: char| c.is_ascii_digit())
            || rel.is_empty()
            || !rel.chars().all(|c| c.is_ascii_digit())
            || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '.')
        {
            continue;
        }
        if best
            .as_ref()
            .is_none_or(|(b, _)| version_cmp(ver, b) == Ordering::Greater)
        {
            best = Some((ver.to_string(), lts));
        }
    }
    best.map(|(v, lts)| if lts { format!("{v} LTS") } else { v })
}

/// Executables that name a desktop (credits to Wmconfig), most popular first.
const DESKTOPS: &[(&[&str], &str)] = &[
    (&["startkde"], "KDE"),
    (&["gnome-session", "gnomesession"], "GNOME"),
    (&["unity"], "Unity"),
    (&["xfce4-session", "startxfce4", "xfwm4"], "Xfce"),
    (&["startlxde", "lxsession"], "LXDE"),
    (&["mate-session"], "MATE"),
    (
        &["cinnamon", "gnome-session-cinnamon", "cinnamon-session"],
        "Cinnamon",
    ),
    (&["enlightenment"], "Enlightenment"),
    (&["aewm"], "aewm"),
    (&["afterstep"], "AfterStep"),
    (&["amiwm"], "amiwm"),
    (&["awesome"], "awesome"),
    (&["blackbox"], "Blackbox"),
    (&["ctwm"], "CTWM"),
    (&["dwm"], "dwm"),
    (&["epiwm"], "EPIwm"),
    (&["fluxbox", "startfluxbox"], "Fluxbox"),
    (&["flwm"], "flvm"),
    (&["fvwm", "fvwm2"], "FVWM"),
    (&["fvwm95"], "FVWM95"),
    (&["golem"], "Golem"),
    (&["i3"], "i3"),
    (&["icewm", "icewm-session"], "IceVM"),
    (&["ion", "ion2", "ion3"], "Ion"),
    (&["jwm"], "JWM"),
    (&["kahakai"], "Kahakai"),
    (&["larswm"], "larswm"),
    (&["mlvwm"], "MLVWM"),
    (&["mwm"], "Motif Window Manager"),
    (&["olvwm"], "OLVWM"),
    (&["olwm"], "OLWM"),
    (&["openbox", "openbox-session"], "Openbox"),
    (&["particleman"], "ParticleMan"),
    (&["pekwm"], "PeKWM"),
    (&["pwm", "pwm2", "pwm3"], "PWM"),
    (&["qvwm"], "qvwm"),
    (&["rasor-session"], "Razor-qt"),
    (&["ratpoison"], "Ratpoison"),
    (&["sapphire"], "Sapphire"),
    (&["sawfish"], "Sawfish"),
    (&["sithwm"], "SithWM"),
    (&["startede"], "EDE"),
    (&["startstump"], "StumpWM"),
    (&["starttrinity"], "TDE"),
    (&["twm"], "twm"),
    (&["uwm"], "UDE"),
    (&["w9wm"], "w9wm"),
    (&["wmaker"], "WindowMaker"),
    (&["wmx"], "wmx"),
    (&["wmi", "wmii"], "wmii"),
    (&["windowlab"], "WindowLab"),
    (&["xmonad"], "xmonad"),
];

const BIN_DIRS: &[&str] = &["/bin", "/usr/bin", "/usr/local/bin"];

fn has_executable(g: &mut GuestFs, name: &str) -> bool {
    BIN_DIRS.iter().any(|d| g.is_file(&Path::new(d).join(name)))
}

/// The `GUI` value: `No GUI` without `startx`; else the desktops found, or `Unknown`.
pub fn gui(g: &mut GuestFs) -> String {
    if !has_executable(g, "startx") {
        return "No GUI".into();
    }
    let found: Vec<&str> = DESKTOPS
        .iter()
        .filter(|(exes, _)| exes.iter().any(|e| has_executable(g, e)))
        .map(|(_, name)| *name)
        .collect();
    if found.is_empty() {
        "Unknown".into()
    } else {
        found.join(" | ")
    }
}

/// The x2go desktop sessions and the executables that mean they are installed.
const X2GO_SESSIONS: &[(&str, &str)] = &[
    ("CINNAMON", "cinnamon"),
    ("KDE", "startkde"),
    ("GNOME", "gnome-session"),
    ("MATE", "mate-session"),
    ("XFCE", "xfce4-session"),
    ("LXDE", "startlxde"),
    ("TRINITY", "starttrinity"),
    ("UNITY", "unity"),
];

/// `x2go` entries for `REMOTE_CONNECTION` when the x2go server is installed.
pub fn x2go(g: &mut GuestFs) -> Option<String> {
    if !has_executable(g, "x2goruncommand") {
        return None;
    }
    let sessions: Vec<String> = X2GO_SESSIONS
        .iter()
        .filter(|(_, exe)| has_executable(g, exe))
        .map(|(name, _)| format!("x2go:session={name}"))
        .collect();
    Some(if sessions.is_empty() {
        "x2go".into()
    } else {
        sessions.join(" ")
    })
}

/// Whether `line` runs the program `service` (`.../bin/<service>` then a blank or end).
fn exec_start_runs(line: &str, service: &str) -> bool {
    let Some(cmd) = line.trim_start().strip_prefix("ExecStart=") else {
        return false;
    };
    let needle = format!("bin/{service}");
    let mut from = 0;
    while let Some(i) = cmd[from..].find(&needle) {
        let at = from + i;
        let end = at + needle.len();
        let before_ok = at > 0;
        let after_ok = cmd[end..].chars().next().is_none_or(char::is_whitespace);
        if before_ok && after_ok {
            return true;
        }
        from = end;
    }
    false
}

/// Whether a script line names `service` as a word (`/usr/sbin/sshd -D`, `DAEMON=sshd`).
fn script_mentions(line: &str, service: &str) -> bool {
    let line = line.split('#').next().unwrap_or("").trim();
    let mut from = 0;
    while let Some(i) = line[from..].find(service) {
        let at = from + i;
        let end = at + service.len();
        let before = line[..at].chars().next_back();
        let after = line[end..].chars().next();
        let before_ok =
            before.is_some_and(|c| matches!(c, '/' | '=' | '\'' | '"') || c.is_whitespace());
        let after_ok = after.is_none_or(|c| matches!(c, '\'' | '"' | ';') || c.is_whitespace());
        if before_ok && after_ok {
            return true;
        }
        from = end;
    }
    false
}

/// Whether `service` is started at boot on a Linux guest: a systemd unit in any
/// `/etc/systemd/system/*.wants` directory (a symlink or a regular file, followed inside
/// the guest) whose `ExecStart` runs `.../bin/<service>`; an upstart job in `/etc/init`;
/// or a SysV start link (`S*`) in `/etc/rc[1-5].d` or `/etc/rc.d/rc[1-5].d`. Broken
/// links are reported and skipped.
pub fn is_enabled(g: &mut GuestFs, service: &str, reporter: &dyn Reporter) -> bool {
    let systemd = "/etc/systemd/system";
    for (dir, t) in list(g, systemd) {
        if !dir.ends_with(".wants") || !matches!(t, FileType::Directory | FileType::Symlink) {
            continue;
        }
        let dir = format!("{systemd}/{dir}");
        for (name, t) in list(g, &dir) {
            if !matches!(t, FileType::Symlink | FileType::Regular) {
                continue;
            }
            let path = format!("{dir}/{name}");
            match read(g, &path) {
                Some(text) => {
                    if text.lines().any(|l| exec_start_runs(l, service)) {
                        return true;
                    }
                }
                None => reporter.detail(&format!("Unable to open file: {path}")),
            }
        }
    }

    for (name, t) in list(g, "/etc/init") {
        if !name.ends_with(".conf") || !matches!(t, FileType::Regular | FileType::Symlink) {
            continue;
        }
        if let Some(text) = read(g, &format!("/etc/init/{name}")) {
            if text.lines().any(|l| script_mentions(l, service)) {
                return true;
            }
        }
    }

    for base in ["/etc", "/etc/rc.d"] {
        for level in 1..=5 {
            let dir = format!("{base}/rc{level}.d");
            for (name, t) in list(g, &dir) {
                // K links stop the service in that runlevel; only S links start it.
                if !name.starts_with('S') || !matches!(t, FileType::Regular | FileType::Symlink) {
                    continue;
                }
                if let Some(text) = read(g, &format!("{dir}/{name}")) {
                    if text.lines().any(|l| script_mentions(l, service)) {
                        return true;
                    }
                }
            }
        }
    }
    false
}

/// Slackware starts `/etc/rc.d/rc.<service>` at boot when it is executable.
pub fn slackware_is_enabled(g: &mut GuestFs, script: &str, reporter: &dyn Reporter) -> bool {
    let path = PathBuf::from(format!("/etc/rc.d/rc.{script}"));
    match g.stat(&path) {
        Ok(m) if m.is_file() => m.mode & 0o100 != 0,
        _ => {
            reporter.warn(&format!("Service {script} not found on the media"));
            false
        }
    }
}

/// `rc.conf`-style variables of a BSD, later files and later lines winning.
pub fn rc_conf(g: &mut GuestFs, files: &[&str]) -> Vec<(String, String)> {
    let mut all = Vec::new();
    for f in files {
        if let Some(t) = read(g, f) {
            all.extend(super::detect::parse_assignments(&t));
        }
    }
    all
}

/// The value of `key` in `rc_conf` output (last assignment wins).
pub fn rc_get<'a>(kv: &'a [(String, String)], key: &str) -> Option<&'a str> {
    kv.iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Whether an rc.conf value means "yes".
pub fn rc_yes(v: Option<&str>) -> bool {
    v.is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "yes" | "true" | "on" | "1"))
}

/// What sshd is configured with: the port (first `Port`, default 22) and whether
/// `PermitRootLogin no` shuts root out. `Include`d files are read where they appear and
/// the first value of a keyword wins, as sshd does; `Match` blocks are not applied.
pub fn sshd_config(g: &mut GuestFs) -> (u16, bool) {
    let mut lines = Vec::new();
    collect_sshd_lines(g, "/etc/ssh/sshd_config", &mut lines, 0);
    let mut port = None;
    let mut root_login = None;
    for l in lines {
        let l = l.split('#').next().unwrap_or("").trim().to_string();
        let mut words = l
            .split(|c: char| c.is_whitespace() || c == '=')
            .filter(|w| !w.is_empty());
        let (Some(key), Some(value)) = (words.next(), words.next()) else {
            continue;
        };
        if key.eq_ignore_ascii_case("Match") {
            break;
        }
        if key.eq_ignore_ascii_case("Port") && port.is_none() {
            port = value.parse::<u16>().ok();
        }
        if key.eq_ignore_ascii_case("PermitRootLogin") && root_login.is_none() {
            root_login = Some(value.to_ascii_lowercase());
        }
    }
    (port.unwrap_or(22), root_login.as_deref() == Some("no"))
}

fn collect_sshd_lines(g: &mut GuestFs, path: &str, out: &mut Vec<String>, depth: u32) {
    if depth > 8 {
        return;
    }
    let Some(text) = read(g, path) else {
        return;
    };
    for line in text.lines() {
        let t = line.trim();
        let mut w = t.split_whitespace();
        if w.next().is_some_and(|k| k.eq_ignore_ascii_case("Include")) {
            for pattern in w {
                let pattern = if pattern.starts_with('/') {
                    pattern.to_string()
                } else {
                    format!("/etc/ssh/{pattern}")
                };
                for file in glob(g, &pattern) {
                    collect_sshd_lines(g, &file, out, depth + 1);
                }
            }
            continue;
        }
        out.push(line.to_string());
    }
}

/// Expand a `*` in the last component of `pattern` (enough for `sshd_config.d/*.conf`).
fn glob(g: &mut GuestFs, pattern: &str) -> Vec<String> {
    let (dir, name) = pattern.rsplit_once('/').unwrap_or(("", pattern));
    if !name.contains('*') {
        return vec![pattern.to_string()];
    }
    let (pre, post) = name.split_once('*').unwrap_or((name, ""));
    let mut files: Vec<String> = list(g, if dir.is_empty() { "/" } else { dir })
        .into_iter()
        .filter(|(n, _)| {
            n.starts_with(pre) && n.ends_with(post) && n.len() >= pre.len() + post.len()
        })
        .map(|(n, _)| format!("{dir}/{n}"))
        .collect();
    files.sort();
    files
}

/// The `ssh:` entries of `REMOTE_CONNECTION` for `users` (root left out when sshd
/// refuses it).
pub fn ssh_entries(g: &mut GuestFs, users: &[String]) -> String {
    let (port, no_root) = sshd_config(g);
    let users: Vec<&String> = users
        .iter()
        .filter(|u| !(no_root && u.as_str() == "root"))
        .collect();
    if users.is_empty() {
        format!("ssh:port={port}")
    } else {
        users
            .iter()
            .map(|u| format!("ssh:port={port},user={u}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// cloud-init as inspection sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CloudInit {
    /// The users of the merged `users:` list (`default` resolved).
    pub users: Vec<String>,
    /// `system_info.default_user.name`.
    pub default_user: Option<String>,
}

/// Whether cloud-init runs at boot: its service is enabled, or its systemd generator is
/// installed and `/etc/cloud/cloud-init.disabled` is absent.
pub fn cloud_init_enabled(g: &mut GuestFs, reporter: &dyn Reporter) -> bool {
    if is_enabled(g, "cloud-init", reporter) {
        return true;
    }
    let generator = ["/run", "/etc", "/usr/local/lib", "/usr/lib", "/lib"]
        .iter()
        .any(|d| g.is_file(&Path::new(d).join("systemd/system-generators/cloud-init-generator")));
    generator && !g.exists(Path::new("/etc/cloud/cloud-init.disabled"))
}

/// Read `/etc/cloud/cloud.cfg` and `/etc/cloud/cloud.cfg.d/*.cfg` (sorted; top-level
/// keys of later files replace earlier ones) and extract the users and default user.
pub fn cloud_init(g: &mut GuestFs, reporter: &dyn Reporter) -> CloudInit {
    let warn = |m: &str| reporter.warn(&format!("Cloud-init: {m}"));
    let mut files = Vec::new();
    if g.is_file(Path::new("/etc/cloud/cloud.cfg")) {
        files.push("/etc/cloud/cloud.cfg".to_string());
    }
    let mut extra: Vec<String> = list(g, "/etc/cloud/cloud.cfg.d")
        .into_iter()
        .filter(|(n, t)| *t == FileType::Regular && n.ends_with(".cfg"))
        .map(|(n, _)| format!("/etc/cloud/cloud.cfg.d/{n}"))
        .collect();
    extra.sort();
    files.extend(extra);

    let mut cfg = serde_yaml::Mapping::new();
    for f in &files {
        let Some(text) = read(g, f) else { continue };
        match serde_yaml::from_str::<Value>(&text) {
            Ok(Value::Mapping(m)) => cfg.extend(m),
            Ok(_) => {}
            Err(e) => warn(&format!("ignoring {f}, which is not valid YAML: {e}")),
        }
    }
    let cfg = Value::Mapping(cfg);
    let default_user = cfg
        .get("system_info")
        .and_then(|s| s.get("default_user"))
        .and_then(|d| d.get("name"))
        .and_then(Value::as_str)
        .map(str::to_string);
    if default_user.is_none() {
        warn("No default user defined");
    }
    let mut users = Vec::new();
    let entries: Vec<Value> = match cfg.get("users") {
        Some(Value::Sequence(s)) => s.clone(),
        Some(Value::String(s)) => s
            .split(',')
            .map(|u| Value::String(u.trim().to_string()))
            .collect(),
        _ => Vec::new(),
    };
    for u in entries {
        match &u {
            Value::String(name) if name == "default" => match &default_user {
                Some(d) => users.push(d.clone()),
                None => warn("Ignoring undefined default user"),
            },
            Value::String(name) if !name.is_empty() => users.push(name.clone()),
            Value::Mapping(_) => {
                let name = u.get("name").and_then(Value::as_str);
                if let Some(s) = u.get("snapuser").and_then(Value::as_str) {
                    warn(&format!("Ignoring snapuser: {s}"));
                } else if u.get("inactive").and_then(Value::as_bool) == Some(true) {
                    warn(&format!("Ignoring inactive user: {}", name.unwrap_or("?")));
                } else if u.get("system").and_then(Value::as_bool) == Some(true) {
                    warn(&format!("Ignoring system user: {}", name.unwrap_or("?")));
                } else if let Some(n) = name {
                    // The original drops these too; they are ordinary users that
                    // deployment should give a password, so they are kept.
                    users.push(n.to_string());
                }
            }
            _ => {}
        }
    }
    CloudInit {
        users,
        default_user,
    }
}

/// The password hashing methods snf-image can use, strongest first.
const METHODS: &[&str] = &["sha512", "sha256", "blowfish", "sha1", "md5"];

/// The snf-image method a crypt(3) hash was made with; `Some("")` for a modern hash
/// snf-image cannot make (yescrypt, scrypt, gost-yescrypt), `None` for no hash.
fn hash_method(hash: &str) -> Option<&'static str> {
    let h = hash.trim_start_matches('!');
    if h.is_empty() || h.starts_with('*') || h == "x" {
        return None;
    }
    Some(if h.starts_with("$6$") {
        "sha512"
    } else if h.starts_with("$5$") {
        "sha256"
    } else if h.starts_with("$2a$") || h.starts_with("$2b$") || h.starts_with("$2y$") {
        "blowfish"
    } else if h.starts_with("$sha1$") {
        "sha1"
    } else if h.starts_with("$1$") {
        "md5"
    } else if h.starts_with("$y$") || h.starts_with("$7$") || h.starts_with("$gy$") {
        ""
    } else {
        return None;
    })
}

/// `PASSWD_HASHING_METHOD`: the strongest method snf-image supports among the hashes
/// the guest already holds (so its libc can verify it). A guest that only has hashes
/// snf-image cannot make (yescrypt ...) has libxcrypt, which verifies sha512. Without
/// hashes, the guest's `ENCRYPT_METHOD` (login.defs) or the family default decides.
pub fn passwd_hashing_method(g: &mut GuestFs, family: &str) -> String {
    let (file, field) = match family {
        "linux" | "hurd" => ("/etc/shadow", 1),
        _ => ("/etc/master.passwd", 1),
    };
    let mut seen = Vec::new();
    let mut modern = false;
    if let Some(text) = read(g, file) {
        for line in text.lines() {
            let Some(hash) = line.split(':').nth(field) else {
                continue;
            };
            match hash_method(hash) {
                Some("") => modern = true,
                Some(m) => seen.push(m),
                None => {}
            }
        }
    }
    if let Some(m) = METHODS.iter().find(|m| seen.contains(m)) {
        // A guest that verifies yescrypt also verifies sha512.
        if modern && *m != "sha512" && family == "linux" {
            return "sha512".into();
        }
        return m.to_string();
    }
    if modern {
        return "sha512".into();
    }
    if family == "linux" {
        if let Some(defs) = read(g, "/etc/login.defs") {
            let method = defs.lines().find_map(|l| {
                let mut w = l.split_whitespace();
                (w.next() == Some("ENCRYPT_METHOD"))
                    .then(|| w.next().unwrap_or("").to_ascii_uppercase())
            });
            match method.as_deref() {
                Some("SHA256") => return "sha256".into(),
                Some("MD5") => return "md5".into(),
                Some("BCRYPT") | Some("BLOWFISH") => return "blowfish".into(),
                _ => {}
            }
        }
    }
    match family {
        "openbsd" => "blowfish",
        "netbsd" => "sha1",
        _ => "sha512",
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions_order_like_pkg_resources() {
        let mut v = [
            "5.10.0-28-amd64",
            "6.1.0-9-amd64",
            "6.1.0-18-amd64",
            "4.19.0-1-amd64",
        ];
        v.sort_by(|a, b| version_cmp(a, b));
        assert_eq!(v.last(), Some(&"6.1.0-18-amd64"));
        assert_eq!(
            version_cmp("3.10.0-1160.el7.x86_64", "3.10.0-957.el7.x86_64"),
            Ordering::Greater
        );
    }

    #[test]
    fn exec_start_needs_the_program_itself() {
        assert!(exec_start_runs(
            "ExecStart=/usr/sbin/sshd -D $SSHD_OPTS",
            "sshd"
        ));
        assert!(exec_start_runs("ExecStart=-/usr/sbin/sshd", "sshd"));
        assert!(!exec_start_runs("ExecStart=/usr/sbin/sshd-keygen", "sshd"));
        assert!(!exec_start_runs("#ExecStart=/usr/sbin/sshd", "sshd"));
        assert!(exec_start_runs(
            "ExecStart=/usr/bin/cloud-init init --local",
            "cloud-init"
        ));
    }

    #[test]
    fn script_mentions_words_only() {
        assert!(script_mentions("  exec /usr/sbin/sshd -D", "sshd"));
        assert!(script_mentions("DAEMON=sshd", "sshd"));
        assert!(script_mentions(
            "start-stop-daemon --exec /usr/sbin/sshd -- $OPTS",
            "sshd"
        ));
        assert!(!script_mentions("# /usr/sbin/sshd", "sshd"));
        assert!(!script_mentions("/usr/sbin/sshd-keygen", "sshd"));
    }

    #[test]
    fn hash_methods() {
        assert_eq!(hash_method("$6$salt$x"), Some("sha512"));
        assert_eq!(hash_method("!$5$salt$x"), Some("sha256"));
        assert_eq!(hash_method("$y$j9T$x$y"), Some(""));
        assert_eq!(hash_method("$2b$10$x"), Some("blowfish"));
        assert_eq!(hash_method("*"), None);
        assert_eq!(hash_method("!"), None);
    }
}
