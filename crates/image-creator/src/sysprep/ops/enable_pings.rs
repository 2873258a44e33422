use hivex::RegValue;

use super::super::registry::{Descriptor, Scope};
use super::super::{Changes, Result, SysprepContext};
use super::WINDOWS;
use crate::inspect::windows::HiveName;

pub static OP: Descriptor = Descriptor {
    name: "enable-pings",
    heading: "Enabling pings",
    display: "Enable pings",
    description: "Allow incoming ICMPv4 echo requests (pings) through the Windows \
                  firewall.",
    effect: "Adds a Windows Firewall rule in SYSTEM \
             <current control set>\\Services\\SharedAccess\\Parameters\\FirewallPolicy\\FirewallRules: \
             value SNF-ICMP4-ECHO-IN, the rule string (MS-GPFAS format, version 2.10, \
             understood from Windows 7 on) allowing inbound ICMPv4 type 8 on every profile.",
    default_enabled: true,
    order: 330,
    families: WINDOWS,
    scope: Scope::Files,
    run,
};

/// The rule's value name.
pub const NAME: &str = "SNF-ICMP4-ECHO-IN";

/// The rule.
pub const RULE: &str = "v2.10|Action=Allow|Active=TRUE|Dir=In|Protocol=1|ICMP4=8:*|\
                        Name=Allow ICMPv4 echo requests|Desc=Added by snf-image-creator|";

fn run(ctx: &mut SysprepContext<'_>) -> Result<Changes> {
    super::windows::set_value(
        ctx,
        HiveName::System,
        "{cs}\\Services\\SharedAccess\\Parameters\\FirewallPolicy\\FirewallRules",
        NAME,
        RegValue::Sz(RULE.into()),
        &format!("\"{RULE}\""),
    )?;
    Ok(ctx.finish())
}
