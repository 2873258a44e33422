use std::path::Path;

use snf_guestfs::NewNode;

use super::super::registry::{Descriptor, Scope};
use super::super::{Changes, Result, SysprepContext};

pub static OP: Descriptor = Descriptor {
    name: "selinux-relabel",
    heading: "Scheduling an SELinux relabel",
    display: "SELinux relabel",
    description: "On SELinux guests, have the file labels fixed at the next boot, since the \
                  files written while preparing the image carry no label.",
    effect: "If /etc/selinux/config sets SELINUX=enforcing or SELINUX=permissive, creates \
             the empty file /.autorelabel (root, mode 0644) unless it exists. Other guests \
             are left alone.",
    default_enabled: true,
    order: 250,
    families: super::LINUX,
    scope: Scope::Files,
    run,
};

fn run(ctx: &mut SysprepContext<'_>) -> Result<Changes> {
    let Some(cfg) = ctx.read_string(Path::new("/etc/selinux/config"))? else {
        ctx.note("Not an SELinux guest (no /etc/selinux/config)");
        return Ok(ctx.finish());
    };
    let active = cfg.lines().any(|l| {
        let l = l.trim();
        l.strip_prefix("SELINUX=")
            .map(|v| v.trim().trim_matches('"').to_ascii_lowercase())
            .is_some_and(|v| v == "enforcing" || v == "permissive")
    });
    if !active {
        ctx.note("SELinux is disabled in the guest");
    } else if ctx.lstat(Path::new("/.autorelabel"))?.is_none() {
        ctx.write(Path::new("/.autorelabel"), b"", NewNode::root(0o644))?;
    }
    Ok(ctx.finish())
}
