use std::path::Path;

use super::super::registry::{Descriptor, Scope};
use super::super::text::{fstab_fields, join_lines, replace_first_field};
use super::super::{Changes, Result, SysprepContext};

pub static OP: Descriptor = Descriptor {
    name: "use-persistent-block-device-names",
    heading: "Replacing fstab & grub non-persistent device references",
    display: "Use persistent block device names",
    description: "Scan fstab & grub configuration files and replace all non-persistent \
                  device references with UUIDs.",
    effect: "In /etc/fstab, a device field starting like /dev/hdX, /dev/sdX or /dev/vdX (a \
             letter after the prefix; /dev/xvd* counts as persistent) becomes UUID=<uuid> of \
             the filesystem mounted at that line's mount point; if nothing is mounted there \
             (swap, a disk that is not part of the image) the device is commented out with \
             a leading `#`. Only the device field changes: spacing, options and trailing \
             comments stay. The root line's new device is then written as `root=` of the \
             `kernel` lines of every `title` in /boot/grub/menu.lst (or /etc/grub.conf) and \
             of the `APPEND ... root=/dev/...` lines (any case) of the syslinux configs. \
             GRUB 2 configs are not touched.",
    default_enabled: true,
    order: 170,
    families: super::LINUX,
    scope: Scope::Files,
    run,
};

/// Whether `dev` is a kernel name that can change between machines (`/dev/sda1`).
pub fn is_non_persistent(dev: &str) -> bool {
    let b = dev.as_bytes();
    dev.starts_with("/dev/")
        && b.len() >= 8
        && matches!(b[5], b'h' | b's' | b'v')
        && b[6] == b'd'
        && b[7].is_ascii_lowercase()
}

fn replace_root_words(line: &str, new_root: &str) -> String {
    line.split_inclusive(char::is_whitespace)
        .map(|w| {
            let word = w.trim_end();
            match word.strip_prefix("root=") {
                Some(dev) if is_non_persistent(dev) => {
                    format!("root={new_root}{}", &w[word.len()..])
                }
                _ => w.to_string(),
            }
        })
        .collect()
}

fn run(ctx: &mut SysprepContext<'_>) -> Result<Changes> {
    let fstab = Path::new("/etc/fstab");
    let Some(text) = ctx.read_string(fstab)? else {
        ctx.warn("Omitted! File: `/etc/fstab' does not exist");
        return Ok(ctx.finish());
    };
    let mounted = ctx.filesystems().to_vec();
    let mut root_dev = None;
    let mut lines = Vec::new();
    for line in text.lines() {
        let f = fstab_fields(line);
        if f.is_empty() {
            lines.push(line.to_string());
            continue;
        }
        if f.len() < 2 || f.len() > 6 {
            ctx.warn(format!("Detected abnormal entry in fstab: {line}"));
            lines.push(line.to_string());
            continue;
        }
        let (dev, mp) = (f[0], f[1]);
        let mut new_dev = dev.to_string();
        let mut new_line = line.to_string();
        if is_non_persistent(dev) {
            match mounted.iter().find(|m| m.mountpoint == Path::new(mp)) {
                Some(m) => match &m.uuid {
                    Some(uuid) => {
                        new_dev = format!("UUID={uuid}");
                        new_line = replace_first_field(line, &new_dev);
                    }
                    None => ctx.warn(format!(
                        "The filesystem mounted at {mp} has no UUID: `{dev}' left in /etc/fstab"
                    )),
                },
                None => new_line = replace_first_field(line, &format!("#{dev}")),
            }
        }
        if mp == "/" {
            root_dev = Some(new_dev);
        }
        lines.push(new_line);
    }
    ctx.edit(fstab, &join_lines(&lines), false)?;

    let Some(root) = root_dev else {
        ctx.note("No root entry in /etc/fstab: boot loader configs left alone");
        return Ok(ctx.finish());
    };
    // GRUB legacy: `kernel` lines inside `title` stanzas.
    for grub1 in ["/boot/grub/menu.lst", "/etc/grub.conf"] {
        let p = Path::new(grub1);
        if !ctx.is_file(p)? {
            continue;
        }
        let text = ctx.read_string(p)?.unwrap_or_default();
        let mut in_title = false;
        let lines: Vec<String> = text
            .lines()
            .map(|l| {
                let first = l.split_whitespace().next().unwrap_or("");
                if first == "title" {
                    in_title = true;
                }
                if in_title && first == "kernel" {
                    replace_root_words(l, &root)
                } else {
                    l.to_string()
                }
            })
            .collect();
        ctx.edit(p, &join_lines(&lines), false)?;
        break;
    }
    for cfg in super::syslinux_configs() {
        let p = Path::new(&cfg);
        if !ctx.is_file(p)? {
            continue;
        }
        let text = ctx.read_string(p)?.unwrap_or_default();
        let lines: Vec<String> = text
            .lines()
            .map(|l| {
                let t = l.trim_start();
                // `get`: a guest's config may hold a multi-byte character there.
                let is_append = t.get(..6).is_some_and(|w| w.eq_ignore_ascii_case("append"))
                    && t[6..].starts_with(char::is_whitespace);
                if is_append {
                    replace_root_words(l, &root)
                } else {
                    l.to_string()
                }
            })
            .collect();
        ctx.edit(p, &join_lines(&lines), false)?;
    }
    Ok(ctx.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persistence_follows_the_original_pattern() {
        for d in ["/dev/sda1", "/dev/vdb", "/dev/hda3", "/dev/sdaa1"] {
            assert!(is_non_persistent(d), "{d}");
        }
        for d in [
            "/dev/xvda1",
            "UUID=x",
            "LABEL=root",
            "/dev/disk/by-uuid/x",
            "/dev/sd",
            "/dev/nvme0n1p1",
            "/dev/mapper/vg-root",
        ] {
            assert!(!is_non_persistent(d), "{d}");
        }
        assert_eq!(
            replace_root_words("\tkernel /vmlinuz root=/dev/sda1 ro  quiet", "UUID=u"),
            "\tkernel /vmlinuz root=UUID=u ro  quiet"
        );
    }
}
