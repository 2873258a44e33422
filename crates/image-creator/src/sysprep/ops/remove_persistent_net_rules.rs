use std::path::Path;

use super::super::registry::{Descriptor, Scope};
use super::super::{Changes, Result, SysprepContext};

const RULES: &str = "/etc/udev/rules.d/70-persistent-net.rules";

pub static OP: Descriptor = Descriptor {
    name: "remove-persistent-net-rules",
    heading: "Removing persistent network interface names",
    display: "Remove persistent net rules",
    description: "Remove udev rules that will keep network interface names persistent after \
                  hardware changes and reboots. Those rules will be created again the next \
                  time the image runs.",
    effect: "Removes /etc/udev/rules.d/70-persistent-net.rules if it is a file (a symlink \
             to a file is removed itself, its target kept).",
    default_enabled: true,
    order: 120,
    families: super::LINUX,
    scope: Scope::Files,
    run,
};

fn run(ctx: &mut SysprepContext<'_>) -> Result<Changes> {
    if ctx.is_file(Path::new(RULES))? {
        ctx.remove_file(Path::new(RULES))?;
    }
    Ok(ctx.finish())
}
