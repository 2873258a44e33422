use super::super::registry::{Descriptor, Scope};
use super::super::{Changes, Result, SysprepContext};

pub static OP: Descriptor = Descriptor {
    name: "cleanup-mail",
    heading: "Removing files under /var/mail & /var/spool/mail",
    display: "Cleanup mail",
    description: "Remove all files under /var/mail and /var/spool/mail.",
    effect: "Removes (rm -rf) every entry directly in /var/spool/mail and in /var/mail. A \
             directory that is a symlink (Debian's /var/spool/mail -> ../mail) is left \
             alone; its target is emptied through its own name.",
    default_enabled: false,
    order: 100,
    families: super::UNIX,
    scope: Scope::Files,
    run,
};

fn run(ctx: &mut SysprepContext<'_>) -> Result<Changes> {
    super::empty_dir(ctx, "/var/spool/mail", &[])?;
    super::empty_dir(ctx, "/var/mail", &[])?;
    Ok(ctx.finish())
}
