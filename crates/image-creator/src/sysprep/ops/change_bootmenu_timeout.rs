use std::path::Path;

use super::super::registry::{Descriptor, Scope};
use super::super::text::{join_lines, shell_var_value};
use super::super::{Changes, Result, SysprepContext};

pub static OP: Descriptor = Descriptor {
    name: "change-bootmenu-timeout",
    heading: "Change boot menu timeout to {bootmenu_timeout} seconds",
    display: "Change boot menu timeout",
    description: "Change the boot menu timeout to the one specified by the namesake system \
                  preparation parameter.",
    effect: "With N = bootmenu_timeout: in /etc/default/grub every GRUB_TIMEOUT assignment \
             gets the value N (the line `GRUB_TIMEOUT=N` is appended if there is none); in \
             /boot/grub/menu.lst every `timeout <n>` line becomes `timeout N`; in \
             /boot/grub/grub.cfg and /boot/grub2/grub.cfg every `set timeout=<n>` line gets \
             N (the file is edited in place, not regenerated); in every syslinux config \
             (extlinux.conf or syslinux.cfg in /boot/extlinux, /boot/syslinux, /boot, \
             /extlinux, /syslinux, /) every `TIMEOUT <n>` line (any case) gets N × 10, \
             syslinux counting tenths of a second.",
    default_enabled: true,
    order: 180,
    families: super::LINUX,
    scope: Scope::Files,
    run,
};

/// Replace the digit runs of `line` by `n` if the line, split into words, matches
/// `words` (the last word holding the number after `prefix`).
fn set_number(line: &str, n: u64) -> String {
    let mut out = String::with_capacity(line.len());
    let mut in_digits = false;
    for c in line.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push_str(&n.to_string());
            }
            in_digits = true;
        } else {
            in_digits = false;
            out.push(c);
        }
    }
    out
}

fn is_number(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn grub1_timeout(line: &str) -> bool {
    let w: Vec<&str> = line.split_whitespace().collect();
    w.len() == 2 && w[0] == "timeout" && is_number(w[1])
}

fn grub2_timeout(line: &str) -> bool {
    let w: Vec<&str> = line.split_whitespace().collect();
    w.len() == 2 && w[0] == "set" && w[1].strip_prefix("timeout=").is_some_and(is_number)
}

fn syslinux_timeout(line: &str) -> bool {
    let w: Vec<&str> = line.split_whitespace().collect();
    w.len() == 2 && w[0].eq_ignore_ascii_case("timeout") && is_number(w[1])
}

fn edit_lines(
    ctx: &mut SysprepContext<'_>,
    path: &str,
    matches: fn(&str) -> bool,
    n: u64,
) -> Result<()> {
    let p = Path::new(path);
    if !ctx.is_file(p)? {
        return Ok(());
    }
    let text = ctx.read_string(p)?.unwrap_or_default();
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            if matches(l) {
                set_number(l, n)
            } else {
                l.to_string()
            }
        })
        .collect();
    ctx.edit(p, &join_lines(&lines), false)?;
    Ok(())
}

fn run(ctx: &mut SysprepContext<'_>) -> Result<Changes> {
    let n = ctx.params().get_u64("bootmenu_timeout");
    let p = Path::new("/etc/default/grub");
    if let Some(text) = ctx.read_string(p)? {
        let mut found = false;
        let mut lines: Vec<String> = text
            .lines()
            .map(|l| match shell_var_value(l, "GRUB_TIMEOUT") {
                Some((a, b)) => {
                    found = true;
                    format!("{}{n}{}", &l[..a], &l[b..])
                }
                None => l.to_string(),
            })
            .collect();
        if !found {
            lines.push(format!("GRUB_TIMEOUT={n}"));
        }
        ctx.edit(p, &join_lines(&lines), false)?;
    }
    edit_lines(ctx, "/boot/grub/menu.lst", grub1_timeout, n)?;
    for cfg in super::GRUB2_CONFIGS {
        edit_lines(ctx, cfg, grub2_timeout, n)?;
    }
    for cfg in super::syslinux_configs() {
        edit_lines(ctx, &cfg, syslinux_timeout, n * 10)?;
    }
    Ok(ctx.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_lines_are_recognised() {
        assert!(grub2_timeout("    set timeout=5"));
        assert!(!grub2_timeout("set timeout_style=menu"));
        assert!(!grub2_timeout("set timeout=${x}"));
        assert!(grub1_timeout("timeout 5"));
        assert!(syslinux_timeout("TIMEOUT 50"));
        assert!(syslinux_timeout("timeout 50"));
        assert_eq!(set_number("  set timeout=30", 10), "  set timeout=10");
    }
}
