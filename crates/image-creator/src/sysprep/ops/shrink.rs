use super::super::registry::{Descriptor, Scope};
use super::super::{Changes, Result, SysprepContext};

pub static OP: Descriptor = Descriptor {
    name: "shrink",
    heading: "Shrinking image (may take a while)",
    display: "Shrink",
    description: "Shrink the last file system and update the partition table.",
    effect: "Runs after every other operation, on the whole disk once the guest filesystems \
             are closed: trailing swap partitions are removed (property SWAP=<number>:<MiB>) \
             and so is an emptied extended partition; the last ext2/3/4 filesystem is \
             checked (e2fsck -fy), shrunk to its minimum plus 8 MiB and its partition ends \
             there (GPT type GUID, PARTUUID and name kept); the image ends 1 MiB after the \
             last partition (plus the GPT backup). When the last partition is an LVM \
             physical volume, the ext filesystem of the logical volume that ends last on it \
             is shrunk the same way and the volume with it (swap volumes are kept), the \
             group's extents are moved to the start of the physical volume, and the volume \
             and its partition end after the last one (metadata rewritten, checksums \
             valid). Other filesystems are not shrunk (a warning says why) but the image \
             is still cut after the last partition.",
    default_enabled: true,
    order: 1000,
    families: super::ALL_OS,
    scope: Scope::Disk,
    run,
};

/// The work is whole-disk and needs the guest closed, so the session's shrink stage
/// does it when this operation ran (see `session::Stage::Shrink`); here it only says so.
fn run(ctx: &mut SysprepContext<'_>) -> Result<Changes> {
    if ctx.is_dry_run() {
        ctx.note("the image would be shrunk once the guest filesystems are closed");
    }
    Ok(ctx.finish())
}
