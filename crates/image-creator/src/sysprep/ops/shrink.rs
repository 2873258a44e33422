use super::super::registry::{Descriptor, Scope};
use super::super::{Changes, Result, SysprepContext};

/// The warning printed until shrinking is implemented.
pub const NOT_IMPLEMENTED: &str = "shrinking is not implemented yet; the image keeps its full size";

pub static OP: Descriptor = Descriptor {
    name: "shrink",
    heading: "Shrinking image (may take a while)",
    display: "Shrink",
    description: "Shrink the last file system and update the partition table.",
    effect: "Runs after every other operation, on the whole disk with the guest unmounted: \
             the last ext2/3/4 filesystem is shrunk to its minimum plus a margin, its \
             partition ends there, a trailing swap partition is removed (property SWAP), and \
             the image ends 1 MiB after the last partition. Not implemented yet: the run \
             says so and the image keeps its full size.",
    default_enabled: true,
    order: 1000,
    families: super::ALL_OS,
    scope: Scope::Disk,
    run,
};

fn run(ctx: &mut SysprepContext<'_>) -> Result<Changes> {
    ctx.warn(NOT_IMPLEMENTED);
    Ok(ctx.finish())
}
