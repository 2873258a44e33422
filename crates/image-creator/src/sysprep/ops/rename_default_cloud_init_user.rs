use std::path::PathBuf;

use serde_yaml::Value;

use super::super::cloudinit;
use super::super::registry::{Descriptor, Scope};
use super::super::{Changes, Result, SysprepContext};

pub static OP: Descriptor = Descriptor {
    name: "rename-default-cloud-init-user",
    heading: "Renaming default cloud-init user to \"{default_user}\"",
    display: "Rename default cloud-init user",
    description: "Rename the default cloud-init user to the value of the default_user \
                  sysprep parameter.",
    effect: "cloud-init images only (otherwise a warning \"Not a cloud-init enabled \
             image\"). Every cloud-init config file (/etc/cloud/cloud.cfg and \
             /etc/cloud/cloud.cfg.d/*.cfg) that sets system_info.default_user.name to \
             another name is renamed to <file>.bak and written again (as YAML, comments \
             not kept) with the new name. The USERS and CLOUD_INIT_DEFAULT_USER \
             properties are then computed again from the configuration.",
    default_enabled: false,
    order: 30,
    families: super::LINUX,
    scope: Scope::Files,
    run,
};

fn run(ctx: &mut SysprepContext<'_>) -> Result<Changes> {
    if !ctx.os().cloud_init {
        ctx.warn("Not a cloud-init enabled image");
        return Ok(ctx.finish());
    }
    let new_name = ctx.params().get("default_user").to_string();
    let mut found = false;
    for file in cloudinit::config_files(ctx)? {
        let mut cfg = cloudinit::parse(ctx, &file)?;
        let Some(old) = cloudinit::default_user(&cfg) else {
            continue;
        };
        found = true;
        if old == new_name {
            ctx.warn(format!(
                "The default cloud-init user is already named: \"{new_name}\""
            ));
            continue;
        }
        if let Some(user) = cfg
            .get_mut("system_info")
            .and_then(|s| s.get_mut("default_user"))
            .and_then(Value::as_mapping_mut)
        {
            user.insert(Value::from("name"), Value::from(new_name.clone()));
        }
        let text = cloudinit::dump(&file, &cfg)?;
        let mut bak = file.clone().into_os_string();
        bak.push(".bak");
        ctx.rename(&file, &PathBuf::from(bak))?;
        ctx.write(&file, text.as_bytes(), snf_guestfs::NewNode::root(0o644))?;
    }
    if found {
        cloudinit::refresh_metadata(ctx)?;
    } else {
        ctx.warn("No default cloud-init user was found!");
    }
    Ok(ctx.finish())
}
