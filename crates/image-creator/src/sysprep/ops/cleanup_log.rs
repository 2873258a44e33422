use std::path::Path;

use super::super::registry::{Descriptor, Scope};
use super::super::{Changes, Result, SysprepContext};

pub static OP: Descriptor = Descriptor {
    name: "cleanup-log",
    heading: "Emptying all files under /var/log",
    display: "Cleanup log",
    description: "Empty all files under /var/log.",
    effect: "Truncates to zero bytes every regular file below /var/log, recursively \
             (rotated logs are emptied, not deleted, so ownership and modes stay for the \
             daemons that write them); symlinks are not followed. On Slackware, \
             /var/log/packages (the package database) is skipped.",
    default_enabled: true,
    order: 90,
    families: super::UNIX,
    scope: Scope::Files,
    run,
};

fn run(ctx: &mut SysprepContext<'_>) -> Result<Changes> {
    let dir = Path::new("/var/log");
    if !ctx.is_real_dir(dir)? {
        ctx.note("Directory: `/var/log' does not exist");
        return Ok(ctx.finish());
    }
    let slackware = ctx.os().distro == "slackware";
    for e in ctx.walk(dir)? {
        if slackware && e.path.starts_with("/var/log/packages") {
            continue;
        }
        if e.metadata.is_file() && e.metadata.size > 0 {
            ctx.empty_file(&e.path)?;
        }
    }
    Ok(ctx.finish())
}
