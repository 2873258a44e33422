use hivex::RegValue;

use super::super::registry::{Descriptor, Scope};
use super::super::{Changes, Result, SysprepContext};
use super::WINDOWS;
use crate::inspect::windows::HiveName;

pub static OP: Descriptor = Descriptor {
    name: "disable-isatap",
    heading: "Disabling ISATAP",
    display: "Disable ISATAP",
    description: "Disable the ISATAP IPv6 tunnel.",
    effect: "Sets the \"Set ISATAP State\" group policy: SOFTWARE \
             Policies\\Microsoft\\Windows\\TCPIP\\v6Transition, value ISATAP_State = \
             \"Disabled\" (REG_SZ; the keys are created if missing).",
    default_enabled: true,
    order: 320,
    families: WINDOWS,
    scope: Scope::Files,
    run,
};

fn run(ctx: &mut SysprepContext<'_>) -> Result<Changes> {
    super::windows::set_value(
        ctx,
        HiveName::Software,
        super::disable_teredo::KEY,
        "ISATAP_State",
        RegValue::Sz("Disabled".into()),
        "\"Disabled\"",
    )?;
    Ok(ctx.finish())
}
