use hivex::RegValue;

use super::super::registry::{Descriptor, Scope};
use super::super::{Changes, Result, SysprepContext};
use super::WINDOWS;
use crate::inspect::windows::HiveName;

pub static OP: Descriptor = Descriptor {
    name: "utc",
    heading: "Setting the hardware clock to UTC",
    display: "UTC",
    description: "Make Windows keep the hardware clock in UTC, as the hypervisor does.",
    effect: "Sets SYSTEM <current control set>\\Control\\TimeZoneInformation, value \
             RealTimeIsUniversal = 1 (REG_DWORD).",
    default_enabled: true,
    order: 340,
    families: WINDOWS,
    scope: Scope::Files,
    run,
};

fn run(ctx: &mut SysprepContext<'_>) -> Result<Changes> {
    super::windows::set_value(
        ctx,
        HiveName::System,
        "{cs}\\Control\\TimeZoneInformation",
        "RealTimeIsUniversal",
        RegValue::Dword(1),
        "1",
    )?;
    Ok(ctx.finish())
}
