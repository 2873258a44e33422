use std::collections::BTreeMap;
use std::path::Path;

use super::super::registry::{Descriptor, Scope};
use super::super::text::join_lines;
use super::super::{Changes, Result, SysprepContext};

pub static OP: Descriptor = Descriptor {
    name: "remove-user-accounts",
    heading: "Removing the accounts of regular users",
    display: "Remove user accounts",
    description: "Remove the accounts of regular users: those whose user ID is in the \
                  UID_MIN..UID_MAX range of the guest's /etc/login.defs (1000..60000 if not \
                  set), with their home directories.",
    effect: "Drops the /etc/passwd lines of those users and their /etc/shadow lines, the \
             /etc/group and /etc/gshadow lines named after them, their names from the member \
             lists of the remaining groups, and their /etc/subuid and /etc/subgid lines; \
             removes (rm -rf) each such user's home directory if it is under /home/; removes \
             them from the USERS property. Unlike the original, which removed every ID \
             above 1000 (keeping 1000, removing nobody), it uses the guest's own range.",
    default_enabled: false,
    order: 20,
    families: super::LINUX,
    scope: Scope::Files,
    run,
};

/// The regular-user UID range of the guest.
fn uid_range(ctx: &mut SysprepContext<'_>) -> Result<(u64, u64)> {
    let (mut min, mut max) = (1000, 60000);
    if let Some(text) = ctx.read_string(Path::new("/etc/login.defs"))? {
        for line in text.lines() {
            let mut it = line.split_whitespace();
            match (it.next(), it.next().and_then(|v| v.parse().ok())) {
                (Some("UID_MIN"), Some(v)) => min = v,
                (Some("UID_MAX"), Some(v)) => max = v,
                _ => {}
            }
        }
    }
    Ok((min, max))
}

fn filter_file(
    ctx: &mut SysprepContext<'_>,
    path: &str,
    mut keep: impl FnMut(&str) -> Option<String>,
    scrub_old: bool,
) -> Result<()> {
    let Some(text) = ctx.read_string(Path::new(path))? else {
        ctx.note(format!("File: `{path}' is missing"));
        return Ok(());
    };
    let lines: Vec<String> = text.lines().filter_map(&mut keep).collect();
    ctx.edit(Path::new(path), &join_lines(&lines), scrub_old)?;
    Ok(())
}

fn run(ctx: &mut SysprepContext<'_>) -> Result<Changes> {
    let Some(passwd) = ctx.read_string(Path::new("/etc/passwd"))? else {
        ctx.warn("File: `/etc/passwd' is missing. No users were deleted");
        return Ok(ctx.finish());
    };
    let (min, max) = uid_range(ctx)?;
    let mut removed: BTreeMap<String, String> = BTreeMap::new(); // name -> home
    let mut kept = Vec::new();
    for line in passwd.lines() {
        let f: Vec<&str> = line.split(':').collect();
        let uid = f.get(2).and_then(|u| u.parse::<u64>().ok());
        match uid {
            Some(uid) if f.len() >= 7 && (min..=max).contains(&uid) => {
                removed.insert(f[0].to_string(), f[5].to_string());
            }
            _ => kept.push(line.to_string()),
        }
    }
    if removed.is_empty() {
        ctx.note(format!("No user with an ID in {min}..{max}"));
        return Ok(ctx.finish());
    }
    ctx.edit(Path::new("/etc/passwd"), &join_lines(&kept), false)?;
    let gone = |name: &str| removed.contains_key(name);
    filter_file(
        ctx,
        "/etc/shadow",
        |l| (!gone(l.split(':').next().unwrap_or(""))).then(|| l.to_string()),
        true,
    )?;
    for (path, members_field) in [("/etc/group", 3), ("/etc/gshadow", 3)] {
        if path == "/etc/gshadow" && ctx.stat(Path::new(path))?.is_none() {
            continue;
        }
        filter_file(
            ctx,
            path,
            |l| {
                let mut f: Vec<String> = l.split(':').map(str::to_string).collect();
                if gone(&f[0]) {
                    return None;
                }
                // gshadow has admins in field 2 and members in field 3.
                let fields: &[usize] = if path == "/etc/gshadow" {
                    &[2, members_field]
                } else {
                    &[members_field]
                };
                for &i in fields {
                    if let Some(m) = f.get_mut(i) {
                        let list: Vec<&str> =
                            m.split(',').filter(|u| !u.is_empty() && !gone(u)).collect();
                        *m = list.join(",");
                    }
                }
                Some(f.join(":"))
            },
            path == "/etc/gshadow",
        )?;
    }
    for path in ["/etc/subuid", "/etc/subgid"] {
        if ctx.stat(Path::new(path))?.is_some() {
            filter_file(
                ctx,
                path,
                |l| (!gone(l.split(':').next().unwrap_or(""))).then(|| l.to_string()),
                false,
            )?;
        }
    }
    for home in removed.values() {
        if home.starts_with("/home/") && ctx.is_dir(Path::new(home))? {
            ctx.remove_tree(Path::new(home))?;
        }
    }
    if let Some(users) = ctx.meta().get("USERS").map(str::to_string) {
        let left: Vec<&str> = users.split_whitespace().filter(|u| !gone(u)).collect();
        let value = (!left.is_empty()).then(|| left.join(" "));
        ctx.set_meta("USERS", value);
    }
    Ok(ctx.finish())
}
