//! cloud-init configuration as the cloud-init operations need it: the files, the merged
//! configuration (later files override earlier ones key by key, as the original reads
//! it) and the metadata derived from it.

use std::path::{Path, PathBuf};

use serde_yaml::Value;
use snf_guestfs::FileType;

use super::context::SysprepContext;
use super::{Result, SysprepError};

/// `/etc/cloud/cloud.cfg` and `/etc/cloud/cloud.cfg.d/*.cfg` (regular files), sorted.
pub fn config_files(ctx: &mut SysprepContext<'_>) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    if ctx.is_file(Path::new("/etc/cloud/cloud.cfg"))? {
        files.push(PathBuf::from("/etc/cloud/cloud.cfg"));
    }
    let dir = Path::new("/etc/cloud/cloud.cfg.d");
    for (name, ty) in ctx.read_dir(dir)? {
        if ty == FileType::Regular && name.to_string_lossy().ends_with(".cfg") {
            files.push(dir.join(name));
        }
    }
    files.sort();
    Ok(files)
}

/// Parse one config file (an empty file is an empty mapping).
pub fn parse(ctx: &mut SysprepContext<'_>, path: &Path) -> Result<Value> {
    let text = ctx.read_string(path)?.unwrap_or_default();
    if text.trim().is_empty() {
        return Ok(Value::Mapping(Default::default()));
    }
    serde_yaml::from_str(&text).map_err(|e| SysprepError::BadFile {
        path: path.display().to_string(),
        msg: format!("not valid YAML: {e}"),
    })
}

/// The merged configuration (top-level keys of later files replace earlier ones).
pub fn merged(ctx: &mut SysprepContext<'_>) -> Result<serde_yaml::Mapping> {
    let mut cfg = serde_yaml::Mapping::new();
    for f in config_files(ctx)? {
        if let Value::Mapping(m) = parse(ctx, &f)? {
            for (k, v) in m {
                cfg.insert(k, v);
            }
        }
    }
    Ok(cfg)
}

/// `system_info.default_user.name`, if set.
pub fn default_user(cfg: &Value) -> Option<String> {
    cfg.get("system_info")?
        .get("default_user")?
        .get("name")?
        .as_str()
        .map(str::to_string)
}

/// The users cloud-init creates, as the original computes `USERS` for cloud-init
/// images: names in `users:`, `default` resolved to the default user; dictionary entries
/// are skipped (with a note for snap, inactive and system users).
pub fn users(ctx: &mut SysprepContext<'_>, cfg: &serde_yaml::Mapping) -> Vec<String> {
    let default = default_user(&Value::Mapping(cfg.clone()));
    let mut users = Vec::new();
    let Some(Value::Sequence(list)) = cfg.get("users") else {
        return users;
    };
    for u in list {
        match u {
            Value::String(s) if s == "default" => match &default {
                Some(d) => users.push(d.clone()),
                None => ctx.note("Cloud-init: Ignoring undefined default user"),
            },
            Value::String(s) => users.push(s.clone()),
            Value::Mapping(m) => {
                let name = m.get("name").and_then(Value::as_str).unwrap_or("?");
                if let Some(s) = m.get("snapuser").and_then(Value::as_str) {
                    ctx.note(format!("Cloud-init: Ignoring snapuser: {s}"));
                } else if m.get("inactive") == Some(&Value::Bool(true)) {
                    ctx.note(format!("Cloud-init: Ignoring inactive user: {name}"));
                } else if m.get("system") == Some(&Value::Bool(true)) {
                    ctx.note(format!("Cloud-init: Ignoring system user: {name}"));
                }
            }
            _ => {}
        }
    }
    users
}

/// Recompute `USERS` and `CLOUD_INIT_DEFAULT_USER` from the (changed) configuration.
pub fn refresh_metadata(ctx: &mut SysprepContext<'_>) -> Result<()> {
    let cfg = merged(ctx)?;
    let users = users(ctx, &cfg);
    if !users.is_empty() {
        ctx.set_meta("USERS", Some(users.join(" ")));
    }
    if let Some(d) = default_user(&Value::Mapping(cfg)) {
        ctx.set_meta("CLOUD_INIT_DEFAULT_USER", Some(d));
    }
    Ok(())
}

/// Serialise YAML for a guest config file.
pub fn dump(path: &Path, v: &Value) -> Result<String> {
    serde_yaml::to_string(v).map_err(|e| SysprepError::BadFile {
        path: path.display().to_string(),
        msg: format!("cannot write YAML: {e}"),
    })
}
