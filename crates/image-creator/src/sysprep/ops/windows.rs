//! Helpers of the offline Windows operations: registry values set through the context,
//! and commands queued for the first boot of each deployed VM.

use std::path::{Path, PathBuf};

use hivex::RegValue;

use super::super::{Result, SysprepContext};
use crate::inspect::windows::{control_set_or_default, set_value_if_changed, HiveName};

/// Set `name` of `key` (below the hive's root; `{cs}` stands for the current control
/// set of SYSTEM) to `value` in hive `hive`, recording the change. Returns whether
/// anything changed.
pub(crate) fn set_value(
    ctx: &mut SysprepContext<'_>,
    hive: HiveName,
    key: &str,
    name: &str,
    value: RegValue,
    shown: &str,
) -> Result<bool> {
    ctx.edit_registry(hive, |h, done| {
        let key = if key.contains("{cs}") {
            key.replace("{cs}", &control_set_or_default(h)?)
        } else {
            key.to_string()
        };
        if set_value_if_changed(h, &key, name, &value)? {
            done.push(format!("{key}\\{name} = {shown}"));
        }
        Ok(())
    })
}

/// The real name of `name` in directory `dir` (matched without regard to case, as
/// Windows does), or `dir/name` when it is missing.
fn child_nocase(ctx: &mut SysprepContext<'_>, dir: &Path, name: &str) -> Result<PathBuf> {
    for (entry, _) in ctx.read_dir(dir)? {
        if entry.to_string_lossy().eq_ignore_ascii_case(name) {
            return Ok(dir.join(entry));
        }
    }
    Ok(dir.join(name))
}

/// Append `line` to `Windows\Setup\Scripts\SetupComplete.cmd`, which Windows Setup runs
/// once, as the local system account, at the end of the first boot of a generalized
/// image (snf-image appends its own commands to the same file). Nothing is written when
/// the line is there already. Returns whether anything changed.
pub(crate) fn run_at_first_boot(ctx: &mut SysprepContext<'_>, line: &str) -> Result<bool> {
    let Some(root) = ctx.windows_root() else {
        ctx.note("no Windows system root: nothing to do");
        return Ok(false);
    };
    let setup = child_nocase(ctx, &root, "Setup")?;
    let scripts = child_nocase(ctx, &setup, "Scripts")?;
    ctx.mkdir_all(&scripts)?;
    let file = child_nocase(ctx, &scripts, "SetupComplete.cmd")?;
    let old = ctx.read_string(&file)?.unwrap_or_default();
    if old.lines().any(|l| l.trim().eq_ignore_ascii_case(line)) {
        return Ok(false);
    }
    let mut new = old;
    if !new.is_empty() && !new.ends_with('\n') {
        new.push_str("\r\n");
    }
    new.push_str(line);
    new.push_str("\r\n");
    ctx.write(&file, new.as_bytes(), snf_guestfs::NewNode::root(0o644))
}
