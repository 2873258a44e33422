use std::path::Path;

use super::super::registry::{Descriptor, Scope};
use super::super::{Changes, Result, SysprepContext};

pub static OP: Descriptor = Descriptor {
    name: "clear-local-machine-id-configuration-file",
    heading: "Clearing local machine ID configuration file",
    display: "Clear local machine ID configuration file",
    description: "Clear the /etc/machine-id file if present. This file is used by systemd \
                  to uniquely identify systems and will be automatically populated on the \
                  next boot if empty.",
    effect: "Truncates /etc/machine-id and /var/lib/dbus/machine-id to zero bytes where they \
             are files (a symlink is followed inside the guest: Debian's \
             /var/lib/dbus/machine-id -> /etc/machine-id empties the same file).",
    default_enabled: true,
    order: 240,
    families: super::LINUX,
    scope: Scope::Files,
    run,
};

fn run(ctx: &mut SysprepContext<'_>) -> Result<Changes> {
    for f in ["/etc/machine-id", "/var/lib/dbus/machine-id"] {
        if ctx.is_file(Path::new(f))? {
            ctx.empty_file(Path::new(f))?;
        }
    }
    Ok(ctx.finish())
}
