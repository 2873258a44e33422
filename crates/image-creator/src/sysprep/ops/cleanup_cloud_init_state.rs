use super::super::registry::{Descriptor, Scope};
use super::super::{Changes, Result, SysprepContext};

pub static OP: Descriptor = Descriptor {
    name: "cleanup-cloud-init-state",
    heading: "Removing cloud-init instance state",
    display: "Cleanup cloud-init state",
    description: "Remove the state cloud-init kept about the instance the image was made \
                  from, so that it runs its first-boot modules again on every clone (what \
                  `cloud-init clean` does).",
    effect: "Removes (rm -rf) every entry of /var/lib/cloud except `seed` (data sources \
             shipped with the image), as `cloud-init clean` without options does. Its logs \
             are emptied by cleanup-log. A guest without /var/lib/cloud is left alone.",
    default_enabled: true,
    order: 210,
    families: super::LINUX,
    scope: Scope::Files,
    run,
};

fn run(ctx: &mut SysprepContext<'_>) -> Result<Changes> {
    if ctx.lstat(std::path::Path::new("/var/lib/cloud"))?.is_some() {
        super::empty_dir(ctx, "/var/lib/cloud", &["seed"])?;
    }
    Ok(ctx.finish())
}
