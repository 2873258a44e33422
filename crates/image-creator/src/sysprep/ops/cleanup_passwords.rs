use std::path::Path;

use super::super::registry::{Descriptor, Scope};
use super::super::text::join_lines;
use super::super::{Changes, Result, SysprepContext};

pub static OP: Descriptor = Descriptor {
    name: "cleanup-passwords",
    heading: "Cleaning up password & locking all user accounts",
    display: "Cleanup passwords",
    description: "Remove all passwords and lock all user accounts.",
    effect: "In /etc/shadow every password field that is not exactly `*` or `!` becomes \
             `!` (other fields and malformed lines kept); the old content is overwritten \
             on disk before the new one is written. /etc/shadow- is scrubbed and removed. \
             The USERS property was computed before (at inspection), so deployment still \
             sets new passwords for those users. A missing /etc/shadow is a note.",
    default_enabled: true,
    order: 50,
    families: super::LINUX,
    scope: Scope::Files,
    run,
};

/// Lock every password field of a shadow-style file (`field` is the password's index).
pub(crate) fn lock(text: &str, field: usize, keep_comments: bool) -> String {
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            if keep_comments && (line.trim().is_empty() || line.trim_start().starts_with('#')) {
                return line.to_string();
            }
            let mut f: Vec<&str> = line.split(':').collect();
            if f.len() > field && f[field] != "*" && f[field] != "!" {
                f[field] = "!";
            }
            f.join(":")
        })
        .collect();
    join_lines(&lines)
}

fn run(ctx: &mut SysprepContext<'_>) -> Result<Changes> {
    match ctx.read_string(Path::new("/etc/shadow"))? {
        Some(text) => {
            ctx.edit(Path::new("/etc/shadow"), &lock(&text, 1, false), true)?;
        }
        None => ctx.note("File: `/etc/shadow' is missing"),
    }
    if ctx.lstat(Path::new("/etc/shadow-"))?.is_some() {
        ctx.scrub(Path::new("/etc/shadow-"))?;
    }
    Ok(ctx.finish())
}
