//! Line-level editing of guest configuration files (fstab, shell variable files, kernel
//! command lines, sysctl), keeping every untouched byte as it was.

/// Join lines back with a final newline (the original's `"\n".join(lines) + "\n"`).
pub fn join_lines<S: AsRef<str>>(lines: &[S]) -> String {
    let mut out = String::new();
    for l in lines {
        out.push_str(l.as_ref());
        out.push('\n');
    }
    out
}

/// The fields of an fstab line, comment (`#` to the end) removed.
pub fn fstab_fields(line: &str) -> Vec<&str> {
    line.split('#')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect()
}

/// `line` with its first whitespace-separated field replaced by `new` (spacing and the
/// rest of the line kept).
pub fn replace_first_field(line: &str, new: &str) -> String {
    let start = line.len() - line.trim_start().len();
    let end = line[start..]
        .find(char::is_whitespace)
        .map(|i| start + i)
        .unwrap_or(line.len());
    format!("{}{}{}", &line[..start], new, &line[end..])
}

/// Byte spans of the words of a kernel command line: runs of characters that are
/// neither whitespace nor quotes (quotes delimit words, as in the original's regexes).
fn words(s: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut start = None;
    for (i, c) in s.char_indices() {
        let sep = c.is_whitespace() || c == '"' || c == '\'';
        match (sep, start) {
            (true, Some(st)) => {
                spans.push((st, i));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(st) = start {
        spans.push((st, s.len()));
    }
    spans
}

/// Whether a kernel parameter sends the console to a serial port.
pub fn is_serial_console(word: &str) -> bool {
    [
        "console=ttyS",
        "console=ttyU",
        "earlyprintk=serial",
        "earlyprintk=ttyS",
    ]
    .iter()
    .any(|p| word.starts_with(p))
}

/// Remove the words matching `pred` together with the whitespace before them.
pub fn remove_words(s: &str, pred: impl Fn(&str) -> bool) -> String {
    let mut out = String::with_capacity(s.len());
    let mut pos = 0;
    for (a, b) in words(s) {
        if !pred(&s[a..b]) {
            continue;
        }
        let ws_start = s[..a].trim_end().len().max(pos);
        out.push_str(&s[pos..ws_start]);
        pos = b;
    }
    out.push_str(&s[pos..]);
    out
}

fn is_ifnames(word: &str) -> bool {
    word.strip_prefix("net.ifnames=")
        .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

/// Replace every `net.ifnames=N` word by `net.ifnames=0`; returns the new text and
/// whether there was one.
pub fn set_ifnames(s: &str) -> (String, bool) {
    let mut out = String::with_capacity(s.len() + 16);
    let mut pos = 0;
    let mut found = false;
    for (a, b) in words(s) {
        if is_ifnames(&s[a..b]) {
            found = true;
            out.push_str(&s[pos..a]);
            out.push_str("net.ifnames=0");
            pos = b;
        }
    }
    out.push_str(&s[pos..]);
    (out, found)
}

/// Whether `line` is a kernel line of a GRUB 2 config (`linux`/`linux16 ...`).
pub fn is_grub_linux_line(line: &str) -> bool {
    let t = line.trim_start();
    ["linux", "linux16"].iter().any(|k| {
        t.strip_prefix(k)
            .is_some_and(|r| r.starts_with(char::is_whitespace))
    })
}

/// Whether `line` is a (lower-case) `append` line of a syslinux config.
pub fn is_syslinux_append_line(line: &str) -> bool {
    line.trim_start()
        .strip_prefix("append")
        .is_some_and(|r| r.starts_with(char::is_whitespace))
}

/// Where the value of shell assignment `NAME=value` is on `line` (byte range, quotes
/// included), if the line assigns `name` (optionally after `export`).
pub fn shell_var_value(line: &str, name: &str) -> Option<(usize, usize)> {
    let indent = line.len() - line.trim_start().len();
    let mut rest = &line[indent..];
    let mut off = indent;
    if let Some(r) = rest.strip_prefix("export") {
        if r.starts_with(char::is_whitespace) {
            let skip = 6 + (r.len() - r.trim_start().len());
            off += skip;
            rest = &line[off..];
        }
    }
    let r = rest.strip_prefix(name)?.strip_prefix('=')?;
    let start = off + name.len() + 1;
    let mut quote = None;
    let mut end = line.len();
    for (i, c) in r.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c.is_whitespace() => {
                end = start + i;
                break;
            }
            None => {}
        }
    }
    Some((start, end))
}

/// Append word `w` to a shell value, inside its quotes if it has them.
pub fn append_to_shell_value(raw: &str, w: &str) -> String {
    let quoted = raw.len() >= 2
        && ((raw.starts_with('"') && raw.ends_with('"'))
            || (raw.starts_with('\'') && raw.ends_with('\'')));
    if quoted {
        let q = &raw[..1];
        let inner = raw[1..raw.len() - 1].trim_end();
        if inner.trim().is_empty() {
            format!("{q}{w}{q}")
        } else {
            format!("{q}{inner} {w}{q}")
        }
    } else if raw.trim().is_empty() {
        format!("\"{w}\"")
    } else {
        format!("\"{raw} {w}\"")
    }
}

/// Whether a file name in a `*.d` directory is a backup/package-manager leftover that
/// configuration loaders (and augeas) skip.
pub fn is_backup_name(name: &str) -> bool {
    name.ends_with('~')
        || name.starts_with(".#")
        || name.starts_with('#')
        || [
            ".bak", ".old", ".orig", ".rpmsave", ".rpmnew", ".rpmorig", ".augnew", ".augsave",
        ]
        .iter()
        .any(|s| name.ends_with(s))
        || name.contains(".dpkg-")
}

/// If `line` is a sysctl assignment of `key`, the byte range of its value.
pub fn sysctl_value(line: &str, key: &str) -> Option<(usize, usize)> {
    let indent = line.len() - line.trim_start().len();
    let rest = line[indent..].strip_prefix(key)?;
    let after_key = rest.trim_start();
    let eq = after_key.strip_prefix('=')?;
    let value_start = line.len() - eq.trim_start().len();
    let value_end = line.trim_end().len().max(value_start);
    Some((value_start, value_end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_console_words_are_removed_with_their_space() {
        assert_eq!(
            remove_words(
                "  linux /vmlinuz root=UUID=x ro console=tty0 console=ttyS0,115200n8 earlyprintk=ttyS0 quiet",
                is_serial_console
            ),
            "  linux /vmlinuz root=UUID=x ro console=tty0 quiet"
        );
        assert_eq!(
            remove_words("\"console=ttyS0 quiet\"", is_serial_console),
            "\" quiet\""
        );
    }

    #[test]
    fn ifnames_is_replaced_or_reported_missing() {
        assert_eq!(
            set_ifnames("linux /k net.ifnames=1 ro"),
            ("linux /k net.ifnames=0 ro".to_string(), true)
        );
        assert!(!set_ifnames("linux /k ro").1);
        assert_eq!(set_ifnames("\"net.ifnames=1\"").0, "\"net.ifnames=0\"");
    }

    #[test]
    fn shell_values_are_found_and_appended_inside_quotes() {
        let l = "GRUB_CMDLINE_LINUX=\"quiet splash\" # comment";
        let (a, b) = shell_var_value(l, "GRUB_CMDLINE_LINUX").unwrap();
        assert_eq!(&l[a..b], "\"quiet splash\"");
        assert!(shell_var_value(l, "GRUB_CMDLINE").is_none());
        assert!(shell_var_value("GRUB_CMDLINE_LINUX_DEFAULT=x", "GRUB_CMDLINE_LINUX").is_none());
        let l = "export GRUB_TIMEOUT=5";
        let (a, b) = shell_var_value(l, "GRUB_TIMEOUT").unwrap();
        assert_eq!(&l[a..b], "5");
        assert_eq!(append_to_shell_value("\"\"", "w"), "\"w\"");
        assert_eq!(append_to_shell_value("'a '", "w"), "'a w'");
        assert_eq!(append_to_shell_value("a", "w"), "\"a w\"");
    }

    #[test]
    fn first_field_replacement_keeps_spacing_and_comments() {
        assert_eq!(
            replace_first_field("  /dev/sda1\t/   ext4 defaults 0 1 # root", "UUID=u"),
            "  UUID=u\t/   ext4 defaults 0 1 # root"
        );
        assert_eq!(
            fstab_fields("/dev/sda2 none swap sw 0 0 # x y"),
            ["/dev/sda2", "none", "swap", "sw", "0", "0"]
        );
    }

    #[test]
    fn sysctl_values_are_located() {
        let l = "net.ipv6.conf.all.use_tempaddr = 2 ";
        let (a, b) = sysctl_value(l, "net.ipv6.conf.all.use_tempaddr").unwrap();
        assert_eq!(&l[a..b], "2");
        assert!(sysctl_value(
            "net.ipv6.conf.all.use_tempaddrx=1",
            "net.ipv6.conf.all.use_tempaddr"
        )
        .is_none());
        assert!(sysctl_value(
            "#net.ipv6.conf.all.use_tempaddr=1",
            "net.ipv6.conf.all.use_tempaddr"
        )
        .is_none());
    }
}
