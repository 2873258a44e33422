use hivex::RegValue;

use super::super::registry::{Descriptor, Scope};
use super::super::{Changes, Result, SysprepContext};
use super::WINDOWS;
use crate::inspect::windows::HiveName;

pub static OP: Descriptor = Descriptor {
    name: "disable-teredo",
    heading: "Disabling Teredo",
    display: "Disable Teredo",
    description: "Disable the Teredo IPv6 tunnel.",
    effect: "Sets the \"Set Teredo State\" group policy: SOFTWARE \
             Policies\\Microsoft\\Windows\\TCPIP\\v6Transition, value Teredo_State = \
             \"Disabled\" (REG_SZ; the keys are created if missing).",
    default_enabled: true,
    order: 310,
    families: WINDOWS,
    scope: Scope::Files,
    run,
};

/// The policy key, below the root of SOFTWARE.
pub const KEY: &str = "Policies\\Microsoft\\Windows\\TCPIP\\v6Transition";

fn run(ctx: &mut SysprepContext<'_>) -> Result<Changes> {
    super::windows::set_value(
        ctx,
        HiveName::Software,
        KEY,
        "Teredo_State",
        RegValue::Sz("Disabled".into()),
        "\"Disabled\"",
    )?;
    Ok(ctx.finish())
}
