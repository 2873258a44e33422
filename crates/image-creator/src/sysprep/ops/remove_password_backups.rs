use std::path::Path;

use super::super::registry::{Descriptor, Scope};
use super::super::{Changes, Result, SysprepContext};

const FILES: [&str; 6] = [
    "/etc/passwd-",
    "/etc/shadow-",
    "/etc/group-",
    "/etc/gshadow-",
    "/etc/subuid-",
    "/etc/subgid-",
];

pub static OP: Descriptor = Descriptor {
    name: "remove-password-backups",
    heading: "Removing backups of the password and group files",
    display: "Remove password backups",
    description: "Remove the backup copies of the user and group databases that shadow \
                  tools leave behind.",
    effect: "Scrubs (overwrites, then unlinks) /etc/shadow- and /etc/gshadow-, which hold \
             password hashes, and removes /etc/passwd-, /etc/group-, /etc/subuid- and \
             /etc/subgid-. Missing files are skipped.",
    default_enabled: true,
    order: 60,
    families: super::LINUX,
    scope: Scope::Files,
    run,
};

fn run(ctx: &mut SysprepContext<'_>) -> Result<Changes> {
    for f in FILES {
        let p = Path::new(f);
        match ctx.lstat(p)? {
            Some(m) if m.is_file() && (f == "/etc/shadow-" || f == "/etc/gshadow-") => {
                ctx.scrub(p)?
            }
            Some(m) if !m.is_dir() => ctx.remove_file(p)?,
            _ => {}
        }
    }
    Ok(ctx.finish())
}
