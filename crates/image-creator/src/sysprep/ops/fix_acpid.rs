use std::path::Path;

use snf_guestfs::FileType;

use super::super::registry::{Descriptor, Scope};
use super::super::{Changes, Result, SysprepContext};

pub static OP: Descriptor = Descriptor {
    name: "fix-acpid",
    heading: "Fixing acpid powerdown action",
    display: "Fix acpid",
    description: "Replace acpid powerdown action scripts to immediately shutdown the system \
                  without checking if a GUI is running.",
    effect: "Looks at the regular files directly in /etc/acpi/events, by name. In the first \
             one whose (last) `event=` line is `button[ /]power` or `button/power.*`, the \
             (last) `action=` line becomes `action=<powerbtn_action>` and the line `### \
             Edited by snf-image-creator ###` is appended after a blank line. A file with \
             an event but no action is skipped with a warning; an `event=.*` file stops the \
             search with a warning asking for a manual edit; no match gives the warning \
             \"No acpi power button event found!\". No /etc/acpi/events is a note.",
    default_enabled: true,
    order: 110,
    families: super::LINUX,
    scope: Scope::Files,
    run,
};

fn key_value<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let head = line.get(..key.len())?;
    if head.eq_ignore_ascii_case(key) && line.len() > key.len() {
        Some(&line[key.len()..])
    } else {
        None
    }
}

fn run(ctx: &mut SysprepContext<'_>) -> Result<Changes> {
    let dir = Path::new("/etc/acpi/events");
    if !ctx.is_dir(dir)? {
        ctx.note("No acpid event directory found");
        return Ok(ctx.finish());
    }
    let action_text = ctx.params().get("powerbtn_action").to_string();
    for (name, ty) in ctx.read_dir(dir)? {
        if ty != FileType::Regular {
            continue;
        }
        let path = dir.join(&name);
        let text = ctx.read_string(&path)?.unwrap_or_default();
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        let (mut event, mut action) = (None, None);
        for (i, l) in lines.iter().enumerate() {
            if key_value(l, "event=").is_some() {
                event = Some(i);
            } else if key_value(l, "action=").is_some() {
                action = Some(i);
            }
        }
        let Some(event) = event else { continue };
        let Some(action) = action else {
            ctx.warn(format!("Corrupted acpid event file: `{}'", path.display()));
            continue;
        };
        let entry = lines[event]
            .split('=')
            .nth(1)
            .unwrap_or("")
            .trim()
            .to_string();
        if entry == "button[ /]power" || entry == "button/power.*" {
            lines[action] = format!("action={action_text}");
            let mut new = lines.join("\n");
            new.push_str("\n\n### Edited by snf-image-creator ###\n");
            ctx.edit(&path, &new, false)?;
            return Ok(ctx.finish());
        } else if entry == ".*" {
            let act = lines[action]
                .split('=')
                .nth(1)
                .unwrap_or("")
                .trim()
                .to_string();
            ctx.warn(format!(
                "Found action `.*'. Don't know how to handle this. Please edit `{act}' image \
                 file manually to make the system immediately shutdown when an power button \
                 ACPI event occurs."
            ));
            return Ok(ctx.finish());
        }
    }
    ctx.warn("No acpi power button event found!");
    Ok(ctx.finish())
}
