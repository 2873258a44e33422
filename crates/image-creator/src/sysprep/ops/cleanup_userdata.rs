use std::path::{Path, PathBuf};

use super::super::context::show;
use super::super::registry::{Descriptor, Scope};
use super::super::{Changes, Result, SysprepContext};

pub static OP: Descriptor = Descriptor {
    name: "cleanup-userdata",
    heading: "Removing sensitive user data",
    display: "Cleanup userdata",
    description: "Delete sensitive user data: shell histories, SSH and GnuPG keys and kamaki \
                  files in the home directories, overwriting their data first.",
    effect: "For /root and every entry of /home, and for each name in the \
             `sensitive_userdata` parameter (default .history, .sh_history, .bash_history, \
             .zsh_history, .gnupg, .ssh, .kamakirc, .kamaki.history, .kamaki.log): a \
             regular file is scrubbed (its data overwritten with zeros on disk, then \
             unlinked); a directory has every regular file below it scrubbed (directories \
             and symlinks inside are kept). A symlink in place of a name is left alone. A \
             file with other hard links is only unlinked, with a warning, because zeroing \
             it would destroy the other names' data.",
    default_enabled: true,
    order: 10,
    families: super::UNIX,
    scope: Scope::Files,
    run,
};

fn run(ctx: &mut SysprepContext<'_>) -> Result<Changes> {
    let mut homes = vec![PathBuf::from("/root")];
    for (name, _) in ctx.read_dir(Path::new("/home"))? {
        homes.push(Path::new("/home").join(name));
    }
    let names = ctx.params().get_list("sensitive_userdata").to_vec();
    for home in homes {
        for name in &names {
            snf_core::cancel::check()?;
            let path = home.join(name.trim_start_matches('/'));
            let Some(meta) = ctx.lstat(&path)? else {
                continue;
            };
            if meta.is_file() {
                ctx.scrub(&path)?;
            } else if meta.is_dir() {
                for e in ctx.walk(&path)? {
                    if e.metadata.is_file() {
                        ctx.scrub(&e.path)?;
                    }
                }
            } else if meta.is_symlink() {
                ctx.note(format!("{} is a symlink: left alone", show(&path)));
            }
        }
    }
    Ok(ctx.finish())
}
