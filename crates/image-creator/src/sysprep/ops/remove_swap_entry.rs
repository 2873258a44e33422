use std::path::Path;

use super::super::registry::{Descriptor, Scope};
use super::super::text::{fstab_fields, join_lines};
use super::super::{Changes, Result, SysprepContext};

pub static OP: Descriptor = Descriptor {
    name: "remove-swap-entry",
    heading: "Removing swap entry from fstab",
    display: "Remove swap entry",
    description: "Remove swap entry from /etc/fstab. If swap is the last partition then the \
                  partition will be removed when shrinking is performed. If the swap \
                  partition is not the last partition in the disk or if you are not going \
                  to shrink the image you should probably disable this.",
    effect: "Drops every /etc/fstab line whose filesystem type (third field, after removing \
             a `#` comment) is `swap`; every other line is kept byte for byte. Lines with \
             3 to 6 fields count (fstab(5) makes the last ones optional; the original only \
             looked at 6-field lines). Lines naming a swap logical volume stay: shrinking \
             keeps those volumes (the deploy side cannot re-create them). A missing \
             /etc/fstab is a warning.",
    default_enabled: true,
    order: 160,
    families: super::LINUX,
    scope: Scope::Files,
    run,
};

fn run(ctx: &mut SysprepContext<'_>) -> Result<Changes> {
    let p = Path::new("/etc/fstab");
    let Some(text) = ctx.read_string(p)? else {
        ctx.warn("File: `/etc/fstab' is missing. No entry removed!");
        return Ok(ctx.finish());
    };
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| {
            let f = fstab_fields(l);
            !(f.len() >= 3 && f.len() <= 6 && f[2] == "swap" && !ctx.names_kept_swap(f[0]))
        })
        .collect();
    ctx.edit(p, &join_lines(&kept), false)?;
    Ok(ctx.finish())
}
