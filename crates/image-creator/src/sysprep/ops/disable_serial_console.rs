use super::super::registry::{Descriptor, Scope};
use super::super::text::{is_serial_console, remove_words};
use super::super::{Changes, Result, SysprepContext};

pub static OP: Descriptor = Descriptor {
    name: "disable-serial-console",
    heading: "Disable serial console",
    display: "Disable serial console",
    description: "Disable outputting to the serial console.",
    effect: "Removes every kernel parameter starting with console=ttyS, console=ttyU, \
             earlyprintk=serial or earlyprintk=ttyS (with the space before it) from the \
             `linux`/`linux16` lines of /boot/grub/grub.cfg and /boot/grub2/grub.cfg, the \
             lower-case `append` lines of the syslinux configs, and the values of \
             GRUB_CMDLINE_LINUX and GRUB_CMDLINE_LINUX_DEFAULT in /etc/default/grub.",
    default_enabled: true,
    order: 200,
    families: super::LINUX,
    scope: Scope::Files,
    run,
};

fn run(ctx: &mut SysprepContext<'_>) -> Result<Changes> {
    super::edit_kernel_lines(ctx, &|l| remove_words(l, is_serial_console))?;
    super::edit_default_grub(ctx, &|_, v| remove_words(v, is_serial_console))?;
    Ok(ctx.finish())
}
