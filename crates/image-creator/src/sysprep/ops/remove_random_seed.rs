use super::super::registry::{Descriptor, Scope};
use super::super::{Changes, Result, SysprepContext};

pub static OP: Descriptor = Descriptor {
    name: "remove-random-seed",
    heading: "Removing the random seed",
    display: "Remove random seed",
    description: "Remove the saved random seed, so that clones do not start their random \
                  number generators from the same state.",
    effect: "Removes /var/lib/systemd/random-seed, /var/lib/urandom/random-seed and \
             /var/lib/random-seed (Linux), /entropy and /boot/entropy (FreeBSD), \
             /var/db/entropy-file (NetBSD), /etc/random.seed and /var/db/host.random \
             (OpenBSD) where present; the boot or shutdown scripts write a new one.",
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
            // The BSDs keep theirs elsewhere (rc.d/random, rc.d/random_seed, /etc/rc).
            "/entropy",
            "/boot/entropy",
            "/var/db/entropy-file",
            "/etc/random.seed",
            "/var/db/host.random",
        ],
    )?;
    Ok(ctx.finish())
}
