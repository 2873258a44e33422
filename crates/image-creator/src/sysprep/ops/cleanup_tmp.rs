use super::super::registry::{Descriptor, Scope};
use super::super::{Changes, Result, SysprepContext};

pub static OP: Descriptor = Descriptor {
    name: "cleanup-tmp",
    heading: "Removing files under /tmp and /var/tmp",
    display: "Cleanup tmp",
    description: "Remove all files under /tmp and /var/tmp.",
    effect: "Removes (rm -rf, symlinks never followed) every entry directly in /tmp and in \
             /var/tmp, dot files included; the two directories themselves are kept. A \
             /tmp or /var/tmp that is a symlink is left alone.",
    default_enabled: true,
    order: 80,
    families: super::UNIX,
    scope: Scope::Files,
    run,
};

fn run(ctx: &mut SysprepContext<'_>) -> Result<Changes> {
    super::empty_dir(ctx, "/tmp", &[])?;
    super::empty_dir(ctx, "/var/tmp", &[])?;
    Ok(ctx.finish())
}
