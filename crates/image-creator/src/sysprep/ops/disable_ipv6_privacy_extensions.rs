use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use snf_guestfs::{FileType, NewNode};

use super::super::registry::{Descriptor, Scope};
use super::super::text::{is_backup_name, join_lines, sysctl_value};
use super::super::{Changes, OsFamily, Result, SysprepContext};

const KEYS: [&str; 2] = [
    "net.ipv6.conf.default.use_tempaddr",
    "net.ipv6.conf.all.use_tempaddr",
];

pub static OP: Descriptor = Descriptor {
    name: "disable-ipv6-privacy-extensions",
    heading: "Disabling IPv6 privacy extensions",
    display: "Disable IPv6 privacy enxtensions",
    description: "Disable IPv6 privacy extensions.",
    effect: "Linux: sets net.ipv6.conf.default.use_tempaddr and net.ipv6.conf.all.use_tempaddr to \
             0: every existing assignment of each key in /etc/sysctl.conf and in the files \
             of /etc/sysctl.d (backup files skipped, a symlinked file edited once) gets the \
             value 0, spacing kept; a key assigned nowhere is appended to /etc/sysctl.conf \
             as `KEY = 0` (the file is created if missing). Windows (where the setting \
             has no documented registry form): `netsh interface ipv6 set global \
             randomizeidentifiers=disabled store=persistent` is appended to \
             Windows\\Setup\\Scripts\\SetupComplete.cmd (created if missing), which \
             Windows runs once at the end of the first boot of every deployed VM.",
    default_enabled: true,
    order: 150,
    families: &[OsFamily::Linux, OsFamily::Windows],
    scope: Scope::Files,
    run,
};

fn run(ctx: &mut SysprepContext<'_>) -> Result<Changes> {
    if ctx.os().family == OsFamily::Windows {
        return super::windows_ipv6_privacy::run(ctx);
    }
    let mut files = vec![PathBuf::from("/etc/sysctl.conf")];
    let d = Path::new("/etc/sysctl.d");
    for (name, ty) in ctx.read_dir(d)? {
        if matches!(ty, FileType::Regular | FileType::Symlink)
            && !is_backup_name(&name.to_string_lossy())
        {
            files.push(d.join(name));
        }
    }
    let mut seen = BTreeSet::new();
    let mut found = [false; 2];
    for f in files {
        if !ctx.is_file(&f)? {
            continue;
        }
        let key = ctx_canonical(ctx, &f);
        if !seen.insert(key) {
            continue;
        }
        let text = ctx.read_string(&f)?.unwrap_or_default();
        let lines: Vec<String> = text
            .lines()
            .map(|l| {
                for (i, k) in KEYS.iter().enumerate() {
                    if let Some((a, b)) = sysctl_value(l, k) {
                        found[i] = true;
                        return format!("{}0{}", &l[..a], &l[b..]);
                    }
                }
                l.to_string()
            })
            .collect();
        ctx.edit(&f, &join_lines(&lines), false)?;
    }
    let missing: Vec<&str> = KEYS
        .iter()
        .zip(found)
        .filter(|(_, f)| !f)
        .map(|(k, _)| *k)
        .collect();
    if !missing.is_empty() {
        let p = Path::new("/etc/sysctl.conf");
        let mut text = ctx.read_string(p)?.unwrap_or_default();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        for k in missing {
            text.push_str(&format!("{k} = 0\n"));
        }
        ctx.write(p, text.as_bytes(), NewNode::root(0o644))?;
    }
    Ok(ctx.finish())
}

fn ctx_canonical(ctx: &mut SysprepContext<'_>, p: &Path) -> PathBuf {
    ctx.canonical(p)
}
