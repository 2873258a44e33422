use std::path::Path;

use serde_yaml::{Mapping, Value};

use super::super::cloudinit;
use super::super::registry::{Descriptor, Scope};
use super::super::{Changes, Result, SysprepContext};

/// The drop-in this operation writes.
pub const DROP_IN: &str = "/etc/cloud/cloud.cfg.d/60_snf-image-creator-EnableRoot.cfg";

pub static OP: Descriptor = Descriptor {
    name: "enable-root-in-cloud-init",
    heading: "Enabling root login in cloud-init",
    display: "Enable root in cloud-init",
    description: "Let cloud-init set up the root account too: root login is not disabled \
                  and root is added to the users cloud-init manages.",
    effect: "cloud-init images only (otherwise a warning). Writes \
             /etc/cloud/cloud.cfg.d/60_snf-image-creator-EnableRoot.cfg with \
             `disable_root: false` (unless the configuration already has it false) and \
             `users:` set to the configured list (cloud-init's own default [default] when \
             none is configured) plus root; puts root first in the USERS property.",
    default_enabled: false,
    order: 40,
    families: super::LINUX,
    scope: Scope::Files,
    run,
};

fn run(ctx: &mut SysprepContext<'_>) -> Result<Changes> {
    if !ctx.os().cloud_init {
        ctx.warn("Not a cloud-init enabled image");
        return Ok(ctx.finish());
    }
    let cfg = cloudinit::merged(ctx)?;
    let mut out = Mapping::new();
    if cfg.get("disable_root") != Some(&Value::Bool(false)) {
        out.insert("disable_root".into(), Value::Bool(false));
    }
    let mut users = match cfg.get("users") {
        Some(Value::Sequence(s)) => s.clone(),
        _ => vec![Value::from("default")],
    };
    if !users.iter().any(|u| u.as_str() == Some("root")) {
        users.push(Value::from("root"));
    }
    out.insert("users".into(), Value::Sequence(users));
    let text = cloudinit::dump(Path::new(DROP_IN), &Value::Mapping(out))?;
    ctx.write(
        Path::new(DROP_IN),
        text.as_bytes(),
        snf_guestfs::NewNode::root(0o644),
    )?;
    let users = ctx.meta().get("USERS").unwrap_or("").to_string();
    if !users.split_whitespace().any(|u| u == "root") {
        let value = if users.trim().is_empty() {
            "root".to_string()
        } else {
            format!("root {}", users.trim())
        };
        ctx.set_meta("USERS", Some(value));
    }
    Ok(ctx.finish())
}
