//! `disable-ipv6-privacy-extensions` on Windows (the descriptor is shared with Linux,
//! in `disable_ipv6_privacy_extensions`).
//!
//! Windows keeps this setting in a binary blob of its network store that has no
//! documented registry form, so the original's command is queued for the first boot.

use super::super::{Changes, Result, SysprepContext};

/// The command Windows runs at first boot.
pub const COMMAND: &str =
    "netsh interface ipv6 set global randomizeidentifiers=disabled store=persistent";

pub(super) fn run(ctx: &mut SysprepContext<'_>) -> Result<Changes> {
    super::windows::run_at_first_boot(ctx, COMMAND)?;
    Ok(ctx.finish())
}
