use std::path::Path;

use super::super::registry::{Descriptor, Scope};
use super::super::{Changes, Result, SysprepContext};

pub static OP: Descriptor = Descriptor {
    name: "cleanup-cache",
    heading: "Removing files under /var/cache",
    display: "Cleanup cache",
    description: "Remove all regular files under /var/cache.",
    effect: "Unlinks every regular file below /var/cache, recursively; directories and \
             symlinks are kept. A /var/cache that is a symlink is left alone.",
    default_enabled: true,
    order: 70,
    families: super::UNIX,
    scope: Scope::Files,
    run,
};

fn run(ctx: &mut SysprepContext<'_>) -> Result<Changes> {
    let dir = Path::new("/var/cache");
    if !ctx.is_real_dir(dir)? {
        ctx.note("Directory: `/var/cache' does not exist");
        return Ok(ctx.finish());
    }
    for e in ctx.walk(dir)? {
        if e.metadata.is_file() {
            ctx.remove_file(&e.path)?;
        }
    }
    Ok(ctx.finish())
}
