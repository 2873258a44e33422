use super::super::registry::{Descriptor, Scope};
use super::super::text::{append_to_shell_value, set_ifnames};
use super::super::{Changes, Result, SysprepContext};

pub static OP: Descriptor = Descriptor {
    name: "disable-predictable-network-interface-naming",
    heading: "Disabling predictable network interface naming",
    display: "Disable predictable network interface naming",
    description: "Disable predictable network interface naming, so that the first network \
                  card is eth0 whatever the hardware of the machine the image runs on.",
    effect: "On the `linux`/`linux16` lines of /boot/grub/grub.cfg and /boot/grub2/grub.cfg \
             and the lower-case `append` lines of the syslinux configs, every \
             `net.ifnames=N` becomes `net.ifnames=0`, or ` net.ifnames=0` is appended if \
             there is none. In /etc/default/grub, an existing `net.ifnames=N` in \
             GRUB_CMDLINE_LINUX or GRUB_CMDLINE_LINUX_DEFAULT becomes `net.ifnames=0`; if \
             neither has one, `net.ifnames=0` is added inside the quotes of \
             GRUB_CMDLINE_LINUX (the line `GRUB_CMDLINE_LINUX=\"net.ifnames=0\"` is appended \
             if the variable is missing).",
    default_enabled: true,
    order: 190,
    families: super::LINUX,
    scope: Scope::Files,
    run,
};

fn run(ctx: &mut SysprepContext<'_>) -> Result<Changes> {
    super::edit_kernel_lines(ctx, &|l| {
        let (new, found) = set_ifnames(l);
        if found {
            new
        } else {
            format!("{l} net.ifnames=0")
        }
    })?;
    let p = std::path::Path::new("/etc/default/grub");
    let Some(text) = ctx.read_string(p)? else {
        return Ok(ctx.finish());
    };
    let has = text.lines().any(|l| {
        ["GRUB_CMDLINE_LINUX", "GRUB_CMDLINE_LINUX_DEFAULT"]
            .iter()
            .any(|v| {
                super::super::text::shell_var_value(l, v)
                    .is_some_and(|(a, b)| set_ifnames(&l[a..b]).1)
            })
    });
    if has {
        super::edit_default_grub(ctx, &|_, v| set_ifnames(v).0)?;
    } else {
        let defined = text
            .lines()
            .any(|l| super::super::text::shell_var_value(l, "GRUB_CMDLINE_LINUX").is_some());
        if defined {
            super::edit_default_grub(ctx, &|var, v| {
                if var == "GRUB_CMDLINE_LINUX" {
                    append_to_shell_value(v, "net.ifnames=0")
                } else {
                    v.to_string()
                }
            })?;
        } else {
            let mut new = text.clone();
            if !new.is_empty() && !new.ends_with('\n') {
                new.push('\n');
            }
            new.push_str("GRUB_CMDLINE_LINUX=\"net.ifnames=0\"\n");
            ctx.edit(p, &new, false)?;
        }
    }
    Ok(ctx.finish())
}
