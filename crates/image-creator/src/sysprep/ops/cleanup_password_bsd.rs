use std::path::Path;

use super::super::registry::{Descriptor, Scope};
use super::super::{Changes, Result, SysprepContext};

pub static OP: Descriptor = Descriptor {
    name: "cleanup-password",
    heading: "Cleaning up passwords & locking all user accounts",
    display: "Cleanup password",
    description: "Remove all passwords and lock all user accounts.",
    effect: "In /etc/master.passwd every password field that is not `*` or `!` becomes `!` \
             (comments and blank lines kept; old content overwritten on disk first); \
             /etc/spwd.db is scrubbed and removed.",
    default_enabled: true,
    order: 55,
    families: super::BSD,
    scope: Scope::Files,
    run,
};

fn run(ctx: &mut SysprepContext<'_>) -> Result<Changes> {
    match ctx.read_string(Path::new("/etc/master.passwd"))? {
        Some(text) => {
            let new = super::cleanup_passwords::lock(&text, 1, true);
            ctx.edit(Path::new("/etc/master.passwd"), &new, true)?;
        }
        None => ctx.note("File: `/etc/master.passwd' is missing"),
    }
    if ctx.lstat(Path::new("/etc/spwd.db"))?.is_some() {
        ctx.scrub(Path::new("/etc/spwd.db"))?;
    }
    Ok(ctx.finish())
}
