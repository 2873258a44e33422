//! The default system preparation on the real Debian 12 guest (MBR image), through the
//! binary, checked file by file against what docs/syspreps.md promises:
//!
//! * the directories the operations work in (/etc, /root, /home, /boot, /var/log,
//!   /var/cache, /tmp, /var/tmp) are extracted from the source and from the output with
//!   debugfs (no mount) and compared: exactly the promised files are gone, exactly the
//!   promised files changed, and each changed file changed only where promised;
//! * the secrets that are scrubbed (histories, authorized_keys, SSH host keys, password
//!   hashes) appear nowhere in the output image, nor, after a `--no-snapshot` run, on
//!   the disk itself (the output alone cannot show scrubbing: free blocks are not dumped);
//! * a `--dry-run` lists exactly the changes the real run made and writes nothing, and
//!   the source is never written.
//!
//! Shrinking stays enabled (the defaults): the root partition keeps its number, the swap
//! partition may be gone, and nothing here depends on which.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{bin, require, stderr, workdir_left};
use memchr::memmem;
use sha2::{Digest, Sha256};
use snf_testkit::{debian_guest_info, guest_file, guest_ls, partitions, Table};

/// The guest directories the default operations change, extracted for comparison.
const DUMPED: &[&str] = &[
    "/etc",
    "/root",
    "/home",
    "/boot",
    "/var/log",
    "/var/cache",
    "/tmp",
    "/var/tmp",
];

/// The `sensitive_userdata` parameter's default.
const SENSITIVE: &[&str] = &[
    ".history",
    ".sh_history",
    ".bash_history",
    ".zsh_history",
    ".gnupg",
    ".ssh",
    ".kamakirc",
    ".kamaki.history",
    ".kamaki.log",
];

/// The words a change line (`<op>: <verb> PATH`) starts with.
const VERBS: &[&str] = &[
    "removed", "scrubbed", "emptied", "edited", "created", "renamed", "metadata",
];

// ---- running things -------------------------------------------------------------------------

fn scratch() -> tempfile::TempDir {
    // The work copy and the output are hundreds of MiB: keep them off a small /tmp.
    tempfile::Builder::new()
        .prefix("debian-sysprep.")
        .tempdir_in(snf_testkit::target_dir())
        .unwrap()
}

fn mkimage(args: &[&str], source: &Path) -> Output {
    Command::new(bin())
        .args(args)
        .arg(source)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run snf-mkimage")
}

fn ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {:?} (scripts/setup.sh): {e}", cmd.get_program()));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `DISK?offset=N` for the root filesystem (partition `number`), as e2fsprogs takes it.
fn fs_spec(disk: &Path, number: u32) -> String {
    let (_, parts) = partitions(disk).unwrap();
    let part = parts
        .iter()
        .find(|p| p.number == number)
        .unwrap_or_else(|| panic!("{}: no partition {number}: {parts:?}", disk.display()));
    format!("{}?offset={}", disk.display(), part.start * 512)
}

// ---- reading whole disks --------------------------------------------------------------------

/// Feed every data extent of `path` (holes skipped with SEEK_DATA/SEEK_HOLE) to `f`.
fn for_each_data(path: &Path, mut f: impl FnMut(u64, &[u8])) {
    use rustix::fs::SeekFrom;
    use std::io::{Read, Seek};
    let mut file = fs::File::open(path).unwrap();
    let len = file.metadata().unwrap().len();
    let mut buf = vec![0u8; 8 << 20];
    let mut pos = 0;
    while pos < len {
        let start = match rustix::fs::seek(&file, SeekFrom::Data(pos)) {
            Ok(s) => s,
            Err(rustix::io::Errno::NXIO) => break,
            Err(e) => panic!("{}: SEEK_DATA: {e}", path.display()),
        };
        let end = match rustix::fs::seek(&file, SeekFrom::Hole(start)) {
            Ok(e) => e,
            Err(rustix::io::Errno::NXIO) => len,
            Err(e) => panic!("{}: SEEK_HOLE: {e}", path.display()),
        };
        file.seek(std::io::SeekFrom::Start(start)).unwrap();
        let mut at = start;
        while at < end {
            let n = (end - at).min(buf.len() as u64) as usize;
            file.read_exact(&mut buf[..n]).unwrap();
            f(at, &buf[..n]);
            at += n as u64;
        }
        pos = end;
    }
}

/// Counts the occurrences of several byte strings across the chunks of a disk,
/// matches straddling two contiguous chunks included.
struct Scanner {
    finders: Vec<memmem::Finder<'static>>,
    counts: Vec<usize>,
    carry: Vec<u8>,
    next: u64,
}

impl Scanner {
    fn new(needles: &[Vec<u8>]) -> Scanner {
        Scanner {
            finders: needles
                .iter()
                .map(|n| memmem::Finder::new(n).into_owned())
                .collect(),
            counts: vec![0; needles.len()],
            carry: Vec::new(),
            next: 0,
        }
    }

    fn feed(&mut self, offset: u64, chunk: &[u8]) {
        if offset != self.next {
            self.carry.clear();
        }
        let carried = self.carry.len();
        let mut buf = std::mem::take(&mut self.carry);
        buf.extend_from_slice(chunk);
        for (finder, count) in self.finders.iter().zip(&mut self.counts) {
            let len = finder.needle().len();
            // A match that ends inside the carried tail was counted with the last chunk.
            *count += finder.find_iter(&buf).filter(|p| p + len > carried).count();
        }
        let longest = self
            .finders
            .iter()
            .map(|f| f.needle().len())
            .max()
            .unwrap_or(1);
        let keep = (longest - 1).min(buf.len());
        self.carry = buf[buf.len() - keep..].to_vec();
        self.next = offset + chunk.len() as u64;
    }
}

/// What a disk holds: size, mtime and a hash of its data extents (at their offsets),
/// plus how often each of `needles` occurs in it.
fn survey(path: &Path, needles: &[Vec<u8>]) -> (String, Vec<usize>) {
    let meta = fs::metadata(path).unwrap();
    let mut hash = Sha256::new();
    let mut scan = Scanner::new(needles);
    for_each_data(path, |offset, chunk| {
        hash.update(offset.to_le_bytes());
        hash.update(chunk);
        scan.feed(offset, chunk);
    });
    let fingerprint = format!(
        "size {} mtime {}.{} sha256 {:x}",
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec(),
        hash.finalize()
    );
    (fingerprint, scan.counts)
}

/// Distinctive pieces of every secret the default operations scrub in the source:
/// lines (20 bytes or more, PEM armour left out) of the shell histories,
/// authorized_keys and SSH host keys, and the password hashes of /etc/shadow.
fn scrubbed_secrets(source: &Path, root: u32) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<String> = Vec::new();
    for home in ["/root", "/home/user"] {
        files.push(format!("{home}/.bash_history"));
        files.push(format!("{home}/.ssh/authorized_keys"));
    }
    let ssh = guest_ls(source, root, "/etc/ssh").unwrap().unwrap();
    files.extend(
        ssh.iter()
            .filter(|n| n.contains("_host_"))
            .map(|n| format!("/etc/ssh/{n}")),
    );
    let mut secrets = BTreeMap::new();
    for f in files {
        let data = guest_file(source, root, &f)
            .unwrap()
            .unwrap_or_else(|| panic!("the guest has no {f}: was it built by build-debian.sh?"));
        for line in String::from_utf8_lossy(&data).lines() {
            let line = line.trim();
            if line.len() >= 20 && !line.starts_with("-----") {
                secrets
                    .entry(line.as_bytes().to_vec())
                    .or_insert_with(|| f.clone());
            }
        }
    }
    let shadow = guest_file(source, root, "/etc/shadow").unwrap().unwrap();
    for line in String::from_utf8_lossy(&shadow).lines() {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() > 1 && fields[1].starts_with('$') {
            secrets
                .entry(fields[1].as_bytes().to_vec())
                .or_insert_with(|| format!("the password hash of {}", fields[0]));
        }
    }
    assert!(
        secrets
            .values()
            .any(|w| w.contains("password hash of root")),
        "the guest's root has no password hash"
    );
    secrets.into_iter().map(|(n, w)| (w, n)).collect()
}

// ---- the guest's files ----------------------------------------------------------------------

/// One object of an extracted guest tree.
#[derive(Clone, PartialEq, Eq)]
enum Kind {
    Dir,
    File(Vec<u8>),
    Link(PathBuf),
    Other,
}

impl std::fmt::Debug for Kind {
    // Contents can be megabytes: failures show their size only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Kind::Dir => f.write_str("directory"),
            Kind::File(d) => write!(f, "file of {} bytes", d.len()),
            Kind::Link(t) => write!(f, "symlink to {}", t.display()),
            Kind::Other => f.write_str("special file"),
        }
    }
}

#[derive(Clone, PartialEq, Eq)]
struct Node {
    kind: Kind,
    /// Permission bits as debugfs rdump restores them, owner and group.
    perm: (u32, u32, u32),
}

impl Node {
    fn text(&self) -> String {
        match &self.kind {
            Kind::File(data) => String::from_utf8_lossy(data).into_owned(),
            _ => panic!("not a regular file"),
        }
    }
    fn is_file(&self) -> bool {
        matches!(self.kind, Kind::File(_))
    }
}

/// Guest path -> object, for everything below [`DUMPED`].
type Tree = BTreeMap<String, Node>;

/// Extract [`DUMPED`] from the ext filesystem on partition `number` of `disk` into
/// `dest` (debugfs rdump, nothing mounted) and read it back.
fn extract(disk: &Path, number: u32, dest: &Path) -> Tree {
    require("debugfs");
    let mut script = String::new();
    for dir in DUMPED {
        let parent = dest.join(Path::new(dir).parent().unwrap().strip_prefix("/").unwrap());
        fs::create_dir_all(&parent).unwrap();
        script.push_str(&format!("rdump \"{dir}\" \"{}\"\n", parent.display()));
    }
    let cmds = dest.with_extension("cmds");
    fs::write(&cmds, script).unwrap();
    let out = ok(Command::new("debugfs")
        .arg("-f")
        .arg(&cmds)
        .arg(fs_spec(disk, number)));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.lines().all(|l| l.starts_with("debugfs ")),
        "debugfs rdump of {}: {err}",
        disk.display()
    );
    let mut tree = Tree::new();
    for dir in DUMPED {
        let host = dest.join(dir.trim_start_matches('/'));
        assert!(host.is_dir(), "{}: no {dir} in the guest", disk.display());
        read_tree(&host, dir, &mut tree);
    }
    tree
}

fn read_tree(host: &Path, guest: &str, tree: &mut Tree) {
    let meta = fs::symlink_metadata(host).unwrap();
    let kind = if meta.is_dir() {
        Kind::Dir
    } else if meta.is_file() {
        Kind::File(fs::read(host).unwrap())
    } else if meta.file_type().is_symlink() {
        Kind::Link(fs::read_link(host).unwrap())
    } else {
        Kind::Other
    };
    let is_dir = kind == Kind::Dir;
    tree.insert(
        guest.to_string(),
        Node {
            kind,
            perm: (meta.mode() & 0o777, meta.uid(), meta.gid()),
        },
    );
    if is_dir {
        for entry in fs::read_dir(host).unwrap() {
            let name = entry.unwrap().file_name();
            let name = name.to_str().expect("a non-UTF-8 name in the guest");
            read_tree(&host.join(name), &format!("{guest}/{name}"), tree);
        }
    }
}

fn below<'t>(tree: &'t Tree, dir: &str) -> impl Iterator<Item = (&'t String, &'t Node)> {
    let prefix = format!("{dir}/");
    tree.iter().filter(move |(p, _)| p.starts_with(&prefix))
}

fn children<'t>(tree: &'t Tree, dir: &str) -> impl Iterator<Item = (&'t String, &'t Node)> {
    let prefix = format!("{dir}/");
    below(tree, dir).filter(move |(p, _)| !p[prefix.len()..].contains('/'))
}

#[derive(Default)]
struct Diff {
    removed: BTreeSet<String>,
    added: BTreeSet<String>,
    changed: BTreeSet<String>,
}

fn diff(before: &Tree, after: &Tree) -> Diff {
    let mut d = Diff::default();
    for (path, node) in before {
        match after.get(path) {
            None => {
                d.removed.insert(path.clone());
            }
            Some(n) if n != node => {
                d.changed.insert(path.clone());
            }
            Some(_) => {}
        }
    }
    d.added = after
        .keys()
        .filter(|p| !before.contains_key(*p))
        .cloned()
        .collect();
    d
}

/// What the default operations promise to remove, given the source tree.
fn promised_removals(src: &Tree) -> BTreeSet<String> {
    let mut gone = BTreeSet::new();
    // cleanup-userdata: files named in sensitive_userdata, regular files below such
    // directories (the directories stay).
    let mut homes = vec!["/root".to_string()];
    homes.extend(children(src, "/home").map(|(p, _)| p.clone()));
    for home in &homes {
        for name in SENSITIVE {
            let p = format!("{home}/{name}");
            match src.get(&p).map(|n| &n.kind) {
                Some(Kind::File(_)) => {
                    gone.insert(p);
                }
                Some(Kind::Dir) => gone.extend(
                    below(src, &p)
                        .filter(|(_, n)| n.is_file())
                        .map(|(q, _)| q.clone()),
                ),
                _ => {}
            }
        }
    }
    // cleanup-passwords and remove-password-backups.
    for p in [
        "/etc/shadow-",
        "/etc/gshadow-",
        "/etc/passwd-",
        "/etc/group-",
        "/etc/subuid-",
        "/etc/subgid-",
    ] {
        if src.get(p).is_some_and(|n| n.kind != Kind::Dir) {
            gone.insert(p.to_string());
        }
    }
    // cleanup-cache: regular files only.
    gone.extend(
        below(src, "/var/cache")
            .filter(|(_, n)| n.is_file())
            .map(|(p, _)| p.clone()),
    );
    // cleanup-tmp: everything below, the directories themselves stay.
    for dir in ["/tmp", "/var/tmp"] {
        gone.extend(below(src, dir).map(|(p, _)| p.clone()));
    }
    // remove-persistent-net-rules.
    let rules = "/etc/udev/rules.d/70-persistent-net.rules";
    if src.contains_key(rules) {
        gone.insert(rules.to_string());
    }
    // remove-networkmanager-system-connections.
    gone.extend(
        children(src, "/etc/NetworkManager/system-connections")
            .filter(|(_, n)| n.is_file())
            .map(|(p, _)| p.clone()),
    );
    // remove-ssh-host-keys.
    gone.extend(
        children(src, "/etc/ssh")
            .filter(|(p, n)| p.contains("_host_") && n.kind != Kind::Dir)
            .map(|(p, _)| p.clone()),
    );
    gone
}

/// What the default operations promise to change (in place) on this guest.
fn promised_edits(src: &Tree) -> BTreeSet<String> {
    let mut edited: BTreeSet<String> = [
        "/etc/shadow",         // cleanup-passwords
        "/etc/sysctl.conf",    // disable-ipv6-privacy-extensions
        "/etc/fstab",          // remove-swap-entry
        "/etc/default/grub",   // timeout, ifnames, serial console
        "/boot/grub/grub.cfg", // timeout, ifnames, serial console
        "/etc/machine-id",     // clear-local-machine-id-configuration-file
    ]
    .into_iter()
    .map(String::from)
    .collect();
    // cleanup-log: every non-empty regular file is emptied.
    edited.extend(
        below(src, "/var/log")
            .filter(|(_, n)| matches!(&n.kind, Kind::File(d) if !d.is_empty()))
            .map(|(p, _)| p.clone()),
    );
    edited
}

// ---- the change lines of -v -------------------------------------------------------------------

/// The change lines (`<op>: <verb> PATH ...`) of a `-v` run, `would have ` removed from
/// a dry run's; shrink's lines left out (it only runs for real).
fn change_lines(err: &str, dry_run: bool) -> BTreeSet<String> {
    let mut lines = BTreeSet::new();
    for line in err.lines() {
        let Some((op, rest)) = line.split_once(": ") else {
            continue;
        };
        if op.is_empty()
            || op == "shrink"
            || !op
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            continue;
        }
        let (would, rest) = match rest.strip_prefix("would have ") {
            Some(r) => (true, r),
            None => (false, rest),
        };
        if !VERBS.iter().any(|v| rest.starts_with(&format!("{v} "))) {
            continue;
        }
        assert_eq!(would, dry_run, "{line}");
        lines.insert(format!("{op}: {rest}"));
    }
    lines
}

/// (verb, guest path) of a change line.
fn verb_and_path(line: &str) -> (&str, &str) {
    let rest = line.split_once(": ").unwrap().1;
    let (verb, target) = rest.split_once(' ').unwrap();
    let path = target.split(" (").next().unwrap();
    (verb, path)
}

// ---- checks of the edited files -------------------------------------------------------------

fn assert_shadow_locked(src: &str, out: &str) {
    let (s, o): (Vec<&str>, Vec<&str>) = (src.lines().collect(), out.lines().collect());
    assert_eq!(s.len(), o.len(), "/etc/shadow lost or gained lines:\n{out}");
    for (s, o) in s.iter().zip(&o) {
        let (mut sf, mut of): (Vec<&str>, Vec<&str>) =
            (s.split(':').collect(), o.split(':').collect());
        assert_eq!(sf.len(), of.len(), "{o}");
        assert!(
            of[1] == "!" || of[1] == "*",
            "/etc/shadow: {}'s password field is {:?}, not locked",
            of[0],
            of[1]
        );
        if sf[1] == "*" {
            assert_eq!(of[1], "*", "{o}");
        }
        sf[1] = "";
        of[1] = "";
        assert_eq!(sf, of, "/etc/shadow: more than the password field changed");
    }
    for user in ["root", "user"] {
        assert!(
            o.iter().any(|l| l.starts_with(&format!("{user}:!:"))),
            "{user} is not locked:\n{out}"
        );
    }
}

fn fstab_fields(line: &str) -> Vec<&str> {
    line.split('#').next().unwrap().split_whitespace().collect()
}

fn assert_fstab(src: &str, out: &str) {
    let is_swap = |l: &&str| fstab_fields(l).get(2) == Some(&"swap");
    assert!(
        src.lines().any(|l| is_swap(&l)),
        "the source fstab has no swap line:\n{src}"
    );
    assert!(
        !out.lines().any(|l| is_swap(&l)),
        "a swap line is left:\n{out}"
    );
    // Only the swap line went: every other line is kept byte for byte.
    let kept: Vec<&str> = src.lines().filter(|l| !is_swap(l)).collect();
    assert_eq!(out.lines().collect::<Vec<_>>(), kept);
    for line in out.lines() {
        let f = fstab_fields(line);
        if let Some(dev) = f.first() {
            assert!(
                ["UUID=", "LABEL=", "PARTUUID=", "PARTLABEL="]
                    .iter()
                    .any(|p| dev.starts_with(p))
                    || ["proc", "tmpfs", "sysfs", "devpts", "none"].contains(dev),
                "/etc/fstab: {dev} is not a persistent device name"
            );
        }
    }
}

fn sysctl_assignment(line: &str) -> Option<(&str, &str)> {
    let t = line.trim();
    if t.starts_with('#') || t.starts_with(';') {
        return None;
    }
    let (k, v) = t.split_once('=')?;
    Some((k.trim(), v.trim()))
}

fn assert_ipv6_privacy_off(src: &Tree, out: &Tree) {
    const KEYS: [&str; 2] = [
        "net.ipv6.conf.default.use_tempaddr",
        "net.ipv6.conf.all.use_tempaddr",
    ];
    let mut files = vec!["/etc/sysctl.conf".to_string()];
    files.extend(
        children(out, "/etc/sysctl.d")
            .filter(|(_, n)| n.is_file())
            .map(|(p, _)| p.clone()),
    );
    for key in KEYS {
        let values: Vec<String> = files
            .iter()
            .flat_map(|f| out[f].text().lines().map(String::from).collect::<Vec<_>>())
            .filter_map(|l| {
                sysctl_assignment(&l)
                    .filter(|(k, _)| *k == key)
                    .map(|(_, v)| v.to_string())
            })
            .collect();
        assert!(!values.is_empty(), "{key} is set nowhere");
        assert!(values.iter().all(|v| v == "0"), "{key} = {values:?}");
    }
    // Apart from those assignments, /etc/sysctl.conf is what it was.
    let others = |text: String| -> Vec<String> {
        text.lines()
            .filter(|l| !sysctl_assignment(l).is_some_and(|(k, _)| KEYS.contains(&k)))
            .map(String::from)
            .collect()
    };
    assert_eq!(
        others(out["/etc/sysctl.conf"].text()),
        others(src["/etc/sysctl.conf"].text())
    );
}

/// The unquoted value of `VAR=...` on `line`, if it assigns VAR.
fn shell_value<'l>(line: &'l str, var: &str) -> Option<&'l str> {
    let v = line.trim_start().strip_prefix(var)?.strip_prefix('=')?;
    Some(v.trim().trim_matches('"'))
}

fn assert_default_grub(src: &str, out: &str) {
    let cmdline_vars = ["GRUB_CMDLINE_LINUX", "GRUB_CMDLINE_LINUX_DEFAULT"];
    let serial = |v: &str| v.split_whitespace().any(|w| w.starts_with("console=ttyS"));
    assert!(
        src.lines().any(|l| cmdline_vars
            .iter()
            .any(|v| shell_value(l, v).is_some_and(serial))),
        "the source's /etc/default/grub has no serial console to remove:\n{src}"
    );
    let (s, o): (Vec<&str>, Vec<&str>) = (src.lines().collect(), out.lines().collect());
    assert_eq!(s.len(), o.len(), "/etc/default/grub:\n{out}");
    let mut timeouts = 0;
    for (s, o) in s.iter().zip(&o) {
        if shell_value(s, "GRUB_TIMEOUT").is_some() {
            assert_eq!(shell_value(o, "GRUB_TIMEOUT"), Some("10"), "{o}");
            timeouts += 1;
        } else if let Some(var) = cmdline_vars.iter().find(|v| shell_value(s, v).is_some()) {
            let (sv, ov) = (shell_value(s, var).unwrap(), shell_value(o, var).unwrap());
            assert!(!serial(ov), "/etc/default/grub: serial console left: {o}");
            let mut expect: Vec<&str> = sv
                .split_whitespace()
                .filter(|w| !w.starts_with("console=ttyS") && !w.starts_with("net.ifnames="))
                .collect();
            if *var == "GRUB_CMDLINE_LINUX" {
                expect.push("net.ifnames=0");
            }
            assert_eq!(
                ov.split_whitespace().collect::<Vec<_>>(),
                expect,
                "/etc/default/grub: {o}"
            );
        } else {
            assert_eq!(o, s);
        }
    }
    assert!(timeouts > 0, "no GRUB_TIMEOUT in /etc/default/grub");
}

fn is_linux_line(l: &str) -> bool {
    let t = l.trim_start();
    ["linux", "linux16"].iter().any(|k| {
        t.strip_prefix(k)
            .is_some_and(|r| r.starts_with(char::is_whitespace))
    })
}

fn assert_grub_cfg(src: &str, out: &str) {
    let (s, o): (Vec<&str>, Vec<&str>) = (src.lines().collect(), out.lines().collect());
    assert_eq!(s.len(), o.len(), "/boot/grub/grub.cfg gained or lost lines");
    assert!(
        s.iter()
            .any(|l| is_linux_line(l) && l.contains("console=ttyS")),
        "the source's grub.cfg boots no serial console"
    );
    let (mut kernels, mut timeouts) = (0, 0);
    for (s, o) in s.iter().zip(&o) {
        if is_linux_line(s) {
            kernels += 1;
            let words: Vec<&str> = o.split_whitespace().collect();
            assert!(
                !words.iter().any(|w| w.starts_with("console=ttyS")),
                "grub.cfg: serial console left: {o}"
            );
            assert_eq!(
                words
                    .iter()
                    .filter(|w| w.starts_with("net.ifnames="))
                    .collect::<Vec<_>>(),
                [&"net.ifnames=0"],
                "{o}"
            );
            let rest = |l: &str| -> Vec<String> {
                l.split_whitespace()
                    .filter(|w| !w.starts_with("console=ttyS") && !w.starts_with("net.ifnames="))
                    .map(String::from)
                    .collect()
            };
            // root=UUID=..., console=tty0, quiet ... are kept.
            assert_eq!(rest(o), rest(s), "{o}");
        } else if s.trim_start().starts_with("set timeout=") {
            timeouts += 1;
            let indent = &s[..s.len() - s.trim_start().len()];
            assert_eq!(*o, format!("{indent}set timeout=10"));
        } else {
            assert_eq!(o, s);
        }
    }
    assert!(
        kernels > 0 && timeouts > 0,
        "grub.cfg: {kernels} linux lines, {timeouts} timeouts"
    );
}

/// Checks of the guest outside the extracted directories (debugfs, one path at a time).
fn assert_rest_of_guest(out: &Path, root: u32) {
    let absent_or_empty = |dir: &str| {
        let names = guest_ls(out, root, dir).unwrap().unwrap_or_default();
        assert!(names.is_empty(), "{dir} holds {names:?}");
    };
    // remove-dhcp-leases, remove-random-seed (nothing of it on this guest: it never booted).
    absent_or_empty("/var/lib/dhcp");
    absent_or_empty("/var/lib/dhclient");
    for seed in [
        "/var/lib/systemd/random-seed",
        "/var/lib/urandom/random-seed",
        "/var/lib/random-seed",
    ] {
        assert!(
            guest_file(out, root, seed).unwrap().is_none(),
            "{seed} is left"
        );
    }
    // cleanup-cloud-init-state keeps only seed/.
    let cloud = guest_ls(out, root, "/var/lib/cloud")
        .unwrap()
        .unwrap_or_default();
    assert!(
        cloud.iter().all(|n| n == "seed"),
        "/var/lib/cloud: {cloud:?}"
    );
    // clear-local-machine-id-configuration-file, D-Bus's copy.
    if let Some(id) = guest_file(out, root, "/var/lib/dbus/machine-id").unwrap() {
        assert!(id.is_empty(), "/var/lib/dbus/machine-id is not empty");
    }
    // selinux-relabel leaves a guest without SELinux alone.
    assert!(guest_file(out, root, "/.autorelabel").unwrap().is_none());
    // cleanup-tmp keeps /tmp and /var/tmp themselves, sticky bit and all.
    for dir in ["/tmp", "/var/tmp"] {
        let stat = ok(Command::new("debugfs")
            .arg("-R")
            .arg(format!("stat {dir}"))
            .arg(fs_spec(out, root)));
        let text = String::from_utf8_lossy(&stat.stdout);
        assert!(text.contains("Mode:  01777"), "{dir}: {text}");
    }
}

// ---- the tests --------------------------------------------------------------------------------

#[test]
fn the_defaults_clean_the_debian_guest_as_promised_and_a_dry_run_lists_the_same_changes() {
    let guest = debian_guest_info();
    let source = guest.image(Table::Mbr);
    let root = guest.layout(Table::Mbr).root_partition;
    let dir = scratch();
    let secrets = scrubbed_secrets(&source, root);
    let mut needles: Vec<Vec<u8>> = secrets.iter().map(|(_, n)| n.clone()).collect();
    needles.push(guest.info.secret_marker.as_bytes().to_vec());
    let (before, in_source) = survey(&source, &needles);
    for ((what, _), n) in secrets.iter().zip(&in_source) {
        assert!(*n > 0, "{what} is not on the source disk: nothing to scrub");
    }

    // 1. The real run, defaults and -v.
    let out = dir.path().join("out.raw");
    let run = mkimage(
        &[
            "-v",
            "--tmpdir",
            dir.path().to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ],
        &source,
    );
    let real_err = stderr(&run);
    assert!(run.status.success(), "{real_err}");
    assert!(
        !workdir_left(dir.path()),
        "the work directory was left behind"
    );

    // 2. The dry run.
    let dry_out = dir.path().join("dry.raw");
    let dry = mkimage(
        &[
            "-v",
            "--dry-run",
            "--tmpdir",
            dir.path().to_str().unwrap(),
            "-o",
            dry_out.to_str().unwrap(),
        ],
        &source,
    );
    let dry_err = stderr(&dry);
    assert!(dry.status.success(), "{dry_err}");
    for suffix in ["", ".meta", ".md5sum", ".variant"] {
        let p = PathBuf::from(format!("{}{suffix}", dry_out.display()));
        assert!(!p.exists(), "a dry run wrote {}", p.display());
    }
    assert!(
        !workdir_left(dir.path()),
        "the dry run left its work directory"
    );

    // Neither run wrote the source.
    let (after, _) = survey(&source, &[]);
    assert_eq!(before, after, "the source image changed");

    // The dry run lists exactly what the real run did.
    let real = change_lines(&real_err, false);
    let listed = change_lines(&dry_err, true);
    assert_eq!(
        listed.iter().collect::<Vec<_>>(),
        real.iter().collect::<Vec<_>>(),
        "dry run and real run list different changes"
    );
    for line in [
        "cleanup-userdata: scrubbed /root/.bash_history",
        "cleanup-userdata: scrubbed /root/.ssh/authorized_keys",
        "cleanup-userdata: scrubbed /home/user/.bash_history",
        "cleanup-userdata: scrubbed /home/user/.ssh/authorized_keys",
        "cleanup-passwords: edited /etc/shadow",
        "cleanup-passwords: scrubbed /etc/shadow-",
        "remove-password-backups: scrubbed /etc/gshadow-",
        "cleanup-tmp: removed /tmp/snf-test-tmpfile",
        "cleanup-tmp: removed /var/tmp/snf-test-vartmp",
        "cleanup-log: emptied /var/log/auth.log",
        "remove-persistent-net-rules: removed /etc/udev/rules.d/70-persistent-net.rules",
        "disable-ipv6-privacy-extensions: edited /etc/sysctl.conf",
        "remove-swap-entry: edited /etc/fstab",
        "change-bootmenu-timeout: edited /etc/default/grub",
        "change-bootmenu-timeout: edited /boot/grub/grub.cfg",
        "disable-predictable-network-interface-naming: edited /boot/grub/grub.cfg",
        "disable-predictable-network-interface-naming: edited /etc/default/grub",
        "disable-serial-console: edited /boot/grub/grub.cfg",
        "disable-serial-console: edited /etc/default/grub",
        "remove-ssh-host-keys: scrubbed /etc/ssh/ssh_host_ed25519_key",
        "clear-local-machine-id-configuration-file: emptied /etc/machine-id",
    ] {
        assert!(
            real.contains(line),
            "`{line}' not reported; the run said:\n{real_err}"
        );
    }

    // The output: a clean root filesystem, the right metadata.
    let meta: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(format!("{}.meta", out.display())).unwrap())
            .unwrap();
    let props = &meta["properties"];
    assert_eq!(props["OSFAMILY"], "linux");
    assert_eq!(props["OS"], "debian");
    // Computed before cleanup-passwords locked them: deployment still sets their passwords.
    assert_eq!(props["USERS"], "root user");
    require("e2fsck");
    ok(Command::new("e2fsck").arg("-fn").arg(fs_spec(&out, root)));

    // File by file.
    let src_tree = extract(&source, root, &dir.path().join("src"));
    let out_tree = extract(&out, root, &dir.path().join("out"));
    let d = diff(&src_tree, &out_tree);
    let removals = promised_removals(&src_tree);
    for planted in [
        "/root/.bash_history",
        "/home/user/.ssh/authorized_keys",
        "/etc/shadow-",
        "/etc/ssh/ssh_host_ed25519_key",
        "/etc/udev/rules.d/70-persistent-net.rules",
        "/tmp/snf-test-dir/file",
        "/var/tmp/snf-test-vartmp",
    ] {
        assert!(removals.contains(planted), "the source has no {planted}");
    }
    assert!(
        removals
            .iter()
            .any(|p| p.starts_with("/var/cache/apt/archives/")),
        "the source has no apt cache"
    );
    assert!(d.added.is_empty(), "objects appeared: {:?}", d.added);
    assert_eq!(
        d.removed.iter().collect::<Vec<_>>(),
        removals.iter().collect::<Vec<_>>(),
        "removed objects differ from the promised ones"
    );
    assert_eq!(
        d.changed.iter().collect::<Vec<_>>(),
        promised_edits(&src_tree).iter().collect::<Vec<_>>(),
        "changed objects differ from the promised ones"
    );
    // Every change on disk was reported, and every reported change is on disk.
    let reported: Vec<(&str, &str)> = real.iter().map(|l| verb_and_path(l)).collect();
    for (verb, path) in &reported {
        assert!(
            DUMPED.iter().any(|d| path.starts_with(&format!("{d}/"))),
            "a change outside the checked directories: {verb} {path}"
        );
        match *verb {
            "removed" | "scrubbed" => assert!(d.removed.contains(*path), "{verb} {path}"),
            "edited" | "emptied" => assert!(d.changed.contains(*path), "{verb} {path}"),
            other => panic!("unexpected change on this guest: {other} {path}"),
        }
    }
    for p in &d.removed {
        assert!(
            reported.iter().any(|(v, q)| {
                matches!(*v, "removed" | "scrubbed") && (p == q || p.starts_with(&format!("{q}/")))
            }),
            "{p} was removed silently"
        );
    }
    for p in &d.changed {
        assert!(
            reported
                .iter()
                .any(|(v, q)| matches!(*v, "edited" | "emptied") && p == q),
            "{p} was changed silently"
        );
    }

    // What each changed file now holds.
    assert_shadow_locked(
        &src_tree["/etc/shadow"].text(),
        &out_tree["/etc/shadow"].text(),
    );
    assert_fstab(
        &src_tree["/etc/fstab"].text(),
        &out_tree["/etc/fstab"].text(),
    );
    assert_ipv6_privacy_off(&src_tree, &out_tree);
    assert_default_grub(
        &src_tree["/etc/default/grub"].text(),
        &out_tree["/etc/default/grub"].text(),
    );
    assert_grub_cfg(
        &src_tree["/boot/grub/grub.cfg"].text(),
        &out_tree["/boot/grub/grub.cfg"].text(),
    );
    assert_eq!(
        src_tree["/etc/machine-id"].text().trim(),
        guest.info.machine_id
    );
    assert_eq!(out_tree["/etc/machine-id"].kind, Kind::File(Vec::new()));
    for (p, n) in below(&out_tree, "/var/log") {
        if let Kind::File(data) = &n.kind {
            assert!(data.is_empty(), "{p} is not empty");
        }
    }
    assert!(!below(&out_tree, "/var/cache").any(|(_, n)| n.is_file()));
    assert_eq!(
        below(&out_tree, "/tmp").count() + below(&out_tree, "/var/tmp").count(),
        0
    );
    for home in ["/root", "/home/user"] {
        // The .ssh directories stay, empty.
        assert_eq!(out_tree[&format!("{home}/.ssh")].kind, Kind::Dir);
        assert_eq!(below(&out_tree, &format!("{home}/.ssh")).count(), 0);
    }
    assert!(!children(&out_tree, "/etc/ssh").any(|(p, _)| p.contains("_host_")));

    // What must not change (the diff already says nothing else did; these are the
    // files a careless operation would hurt).
    let passwd = out_tree["/etc/passwd"].text();
    for user in ["root", "user"] {
        assert!(passwd.lines().any(|l| l.starts_with(&format!("{user}:"))));
    }
    assert_eq!(out_tree["/etc/hostname"].text().trim(), guest.info.hostname);
    assert!(out_tree[&guest.info.secret_path]
        .text()
        .contains(&guest.info.secret_marker));
    let boot: Vec<&String> = children(&src_tree, "/boot")
        .filter(|(p, _)| p.starts_with("/boot/vmlinuz-") || p.starts_with("/boot/initrd.img-"))
        .map(|(p, _)| p)
        .collect();
    assert_eq!(boot.len(), 2, "kernel and initrd: {boot:?}");
    for p in boot {
        assert!(out_tree.get(p) == Some(&src_tree[p]), "{p} changed");
    }
    assert_rest_of_guest(&out, root);

    // No scrubbed secret is anywhere in the output image; the kept secret file is.
    let (_, in_output) = survey(&out, &needles);
    for ((what, _), n) in secrets.iter().zip(&in_output) {
        assert_eq!(*n, 0, "{what}: found {n} time(s) in the output image");
    }
    assert_eq!(in_output.last(), Some(&1), "/root/secret's marker");
}

#[test]
fn scrubbed_secrets_leave_no_bytes_on_the_disk() {
    // The output leaves free blocks out, so it cannot show that scrubbing zeroed the
    // data: work on a copy with --no-snapshot and scan all of it.
    let guest = debian_guest_info();
    let root = guest.layout(Table::Mbr).root_partition;
    let dir = scratch();
    let disk = dir.path().join("disk.raw");
    require("cp");
    ok(Command::new("cp")
        .arg("--sparse=always")
        .arg(guest.image(Table::Mbr))
        .arg(&disk));
    let secrets = scrubbed_secrets(&disk, root);
    let mut needles: Vec<Vec<u8>> = secrets.iter().map(|(_, n)| n.clone()).collect();
    needles.push(guest.info.secret_marker.as_bytes().to_vec());
    let (_, before) = survey(&disk, &needles);
    for ((what, _), n) in secrets.iter().zip(&before) {
        assert!(*n > 0, "{what} is not on the disk to begin with");
    }

    let run = mkimage(
        &[
            "--no-snapshot",
            "--disable-sysprep",
            "shrink",
            "-o",
            "/dev/null",
        ],
        &disk,
    );
    assert!(run.status.success(), "{}", stderr(&run));

    let (_, after) = survey(&disk, &needles);
    for ((what, _), n) in secrets.iter().zip(&after) {
        assert_eq!(
            *n, 0,
            "{what}: {n} copy(ies) left on the disk after scrubbing"
        );
    }
    // The scan sees files that stay.
    assert_eq!(after.last(), Some(&1), "/root/secret's marker");
    ok(Command::new("e2fsck").arg("-fn").arg(fs_spec(&disk, root)));
}
