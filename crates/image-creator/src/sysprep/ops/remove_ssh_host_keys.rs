use std::path::Path;

use snf_guestfs::FileType;

use super::super::registry::{Descriptor, Scope};
use super::super::{Changes, Result, SysprepContext};

pub static OP: Descriptor = Descriptor {
    name: "remove-ssh-host-keys",
    heading: "Removing SSH host keys",
    display: "Remove SSH host keys",
    description: "Remove the SSH host keys, so that every machine made from the image gets \
                  keys of its own (snf-image, cloud-init or the distribution's sshd-keygen \
                  create new ones at first boot).",
    effect: "Scrubs (overwrites, then unlinks) every regular file in /etc/ssh whose name \
             contains `_host_` (ssh_host_*_key and .pub); symlinks with such names are \
             unlinked.",
    default_enabled: true,
    order: 220,
    families: super::UNIX,
    scope: Scope::Files,
    run,
};

fn run(ctx: &mut SysprepContext<'_>) -> Result<Changes> {
    let dir = Path::new("/etc/ssh");
    for (name, ty) in ctx.read_dir(dir)? {
        if !name.to_string_lossy().contains("_host_") {
            continue;
        }
        match ty {
            FileType::Regular => ctx.scrub(&dir.join(&name))?,
            FileType::Directory => {}
            _ => ctx.remove_file(&dir.join(&name))?,
        }
    }
    Ok(ctx.finish())
}
