use super::super::registry::{Descriptor, Scope};
use super::super::{Changes, Result, SysprepContext};

pub static OP: Descriptor = Descriptor {
    name: "remove-random-seed",
    heading: "Removing the random seed",
    display: "Remove random seed",
    description: "Remove the saved random seed, so that clones do not start their random \
                  number generators from the same state.",
    effect: "Removes /var/lib/systemd/random-seed, /var/lib/urandom/random-seed and \
             /var/lib/random-seed where present; the boot scripts create a new one at the \
             next shutdown.",
    default_enabled: true,
    order: 230,
    families: super::UNIX,
    scope: Scope::Files,
    run,
};

fn run(ctx: &mut SysprepContext<'_>) -> Result<Changes> {
    super::remove_if_present(
        ctx,
        &[
            "/var/lib/systemd/random-seed",
            "/var/lib/urandom/random-seed",
            "/var/lib/random-seed",
        ],
    )?;
    Ok(ctx.finish())
}
