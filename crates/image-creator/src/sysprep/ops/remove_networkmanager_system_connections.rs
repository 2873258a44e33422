use std::path::Path;

use snf_guestfs::FileType;

use super::super::registry::{Descriptor, Scope};
use super::super::{Changes, Result, SysprepContext};

pub static OP: Descriptor = Descriptor {
    name: "remove-networkmanager-system-connections",
    heading: "Removing NetworkManager system connections",
    display: "Remove NetworkManager system connections",
    description: "Remove the NetworkManager connection profiles of the machine the image \
                  was made on (they name its interfaces, addresses and Wi-Fi secrets).",
    effect: "Removes every regular file directly in /etc/NetworkManager/system-connections.",
    default_enabled: true,
    order: 130,
    families: super::LINUX,
    scope: Scope::Files,
    run,
};

fn run(ctx: &mut SysprepContext<'_>) -> Result<Changes> {
    let dir = Path::new("/etc/NetworkManager/system-connections");
    for (name, ty) in ctx.read_dir(dir)? {
        if ty == FileType::Regular {
            ctx.remove_file(&dir.join(name))?;
        }
    }
    Ok(ctx.finish())
}
