use super::super::registry::{Descriptor, Scope};
use super::super::{Changes, Result, SysprepContext};

pub static OP: Descriptor = Descriptor {
    name: "remove-lvm-system-devices",
    heading: "Removing the LVM devices file",
    display: "Remove LVM devices file",
    description: "Remove the LVM devices file, which names the physical volumes by the IDs \
                  of the disks of the machine the image was made on: LVM ignores the \
                  physical volumes it does not list, so a deployed copy would not find its \
                  volume groups.",
    effect: "Removes /etc/lvm/devices/system.devices where present (RHEL 9 and Fedora \
             write it at installation); without it LVM scans every disk, as it always did.",
    default_enabled: true,
    order: 235,
    families: super::LINUX,
    scope: Scope::Files,
    run,
};

fn run(ctx: &mut SysprepContext<'_>) -> Result<Changes> {
    super::remove_if_present(ctx, &["/etc/lvm/devices/system.devices"])?;
    Ok(ctx.finish())
}
