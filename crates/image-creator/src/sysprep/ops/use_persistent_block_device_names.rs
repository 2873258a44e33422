use std::path::{Path, PathBuf};

use super::super::devnames::{rewrite_cmdline, CmdlineOutcome, Names};
use super::super::registry::{Descriptor, Scope};
use super::super::text::{fstab_fields, join_lines, replace_first_field, shell_var_value};
use super::super::{Changes, Result, SysprepContext};

pub use super::super::devnames::is_non_persistent;

pub static OP: Descriptor = Descriptor {
    name: "use-persistent-block-device-names",
    heading: "Replacing fstab & grub non-persistent device references",
    display: "Use persistent block device names",
    description: "Scan fstab, crypttab and every boot loader configuration (GRUB 2 also on \
                  the EFI partition, BLS entries, GRUB legacy, syslinux) and replace all \
                  non-persistent device references (root=, resume=) with UUIDs, so the \
                  image boots whatever bus its disk is on.",
    effect: "Makes the image boot whatever bus its disk is attached to (virtio-blk, \
             virtio-scsi, SATA, NVMe). A device name is non-persistent when it starts like \
             /dev/hdX, /dev/sdX, /dev/vdX (a letter after the prefix; /dev/xvd* counts as \
             persistent) or is /dev/nvmeNnM[pK]. In /etc/fstab such a device field becomes \
             UUID=<uuid> of the filesystem mounted at that line's mount point, or of the \
             partition of the first disk it names (a swap partition); if neither is known \
             (a disk that is not part of the image) the device is commented out with a \
             leading `#`. Only the device field changes: spacing, options and trailing \
             comments stay. The source device of /etc/crypttab lines is replaced the same \
             way (UUID of the partition it names; a warning when unknown). On every kernel \
             command line the guest boots from, `root=<non-persistent>` becomes \
             `root=UUID=<uuid of the root filesystem>` and `resume=<non-persistent>` the \
             UUID of the swap partition it names (dropped when it names none): the \
             `linux`/`linux16`/`linuxefi` lines of /boot/grub/grub.cfg, \
             /boot/grub2/grub.cfg and every /boot/efi/EFI/*/grub.cfg, the `options` lines \
             of the Boot Loader Specification entries (/boot/loader/entries/*.conf, also \
             under /boot/efi and /efi), `kernelopts` in /boot/grub2/grubenv and \
             /boot/grub/grubenv (the 1024-byte block kept), /etc/kernel/cmdline, the \
             `kernel` lines of every `title` in /boot/grub/menu.lst (or /etc/grub.conf), \
             the `APPEND` lines (any case) of the syslinux/extlinux configs, and \
             GRUB_CMDLINE_LINUX/GRUB_CMDLINE_LINUX_DEFAULT of /etc/default/grub. In \
             /etc/default/grub, `GRUB_DISABLE_LINUX_UUID=true` and the GRUB_DEVICE / \
             GRUB_DEVICE_BOOT overrides are commented out so that the next update-grub in \
             the guest writes root=UUID= again. Warnings name every file whose boot \
             configuration stays bus-dependent: a kernel command line whose root cannot be \
             named persistently, an initramfs or dracut configuration naming a \
             non-persistent device (the built initramfs keeps it; it is not edited), or \
             no known boot loader configuration at all.",
    default_enabled: true,
    order: 170,
    families: super::LINUX,
    scope: Scope::Files,
    run,
};

/// Where the EFI system partition is mounted in Linux guests.
const ESP_MOUNTS: [&str; 2] = ["/boot/efi", "/efi"];

fn run(ctx: &mut SysprepContext<'_>) -> Result<Changes> {
    let fstab = Path::new("/etc/fstab");
    let Some(text) = ctx.read_string(fstab)? else {
        ctx.warn("Omitted! File: `/etc/fstab' does not exist");
        return Ok(ctx.finish());
    };
    let mounted = ctx.filesystems().to_vec();
    let mut names = Names::new(None, ctx.partitions());
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
                None => match names.by_partition(dev) {
                    Some(spec) => {
                        new_dev = spec;
                        new_line = replace_first_field(line, &new_dev);
                    }
                    None => new_line = replace_first_field(line, &format!("#{dev}")),
                },
            }
        }
        if mp == "/" {
            root_dev = Some(new_dev);
        }
        lines.push(new_line);
    }
    ctx.edit(fstab, &join_lines(&lines), false)?;

    // The kernel's root: the root filesystem's UUID, else fstab's name for it when that
    // is persistent (LABEL=, an LVM name).
    names.root = mounted
        .iter()
        .find(|m| m.mountpoint == Path::new("/"))
        .and_then(|m| m.uuid.as_ref())
        .map(|u| format!("UUID={u}"))
        .or(root_dev.filter(|d| !is_non_persistent(d) && !d.starts_with('#')));

    crypttab(ctx, &names)?;
    let mut found_loader = false;
    found_loader |= grub2(ctx, &names)?;
    found_loader |= bls(ctx, &names)?;
    found_loader |= grub_legacy(ctx, &names)?;
    found_loader |= syslinux(ctx, &names)?;
    default_grub(ctx, &names)?;
    if !found_loader {
        ctx.warn(
            "No known boot loader configuration (GRUB 2, BLS, GRUB legacy, syslinux): the \
             kernel command line was not checked and may name the root by a bus-dependent \
             device",
        );
    }
    initramfs_configs(ctx)?;
    Ok(ctx.finish())
}

/// Rewrite every line of `path` that `is_cmdline` picks; warn about what is left.
/// Returns whether the file exists.
fn edit_cmdlines(
    ctx: &mut SysprepContext<'_>,
    path: &Path,
    names: &Names,
    is_cmdline: &dyn Fn(&str) -> bool,
) -> Result<bool> {
    if !ctx.is_file(path)? {
        return Ok(false);
    }
    let text = ctx.read_string(path)?.unwrap_or_default();
    let mut out = CmdlineOutcome::default();
    let mut changed = false;
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            if is_cmdline(l) {
                let new = rewrite_cmdline(l, names, &mut out);
                changed |= new != l;
                new
            } else {
                l.to_string()
            }
        })
        .collect();
    // Only rewritten when a line changed: a file that is not UTF-8 stays byte for byte.
    if changed {
        ctx.edit(path, &join_lines(&lines), false)?;
    }
    report(ctx, path, &out);
    Ok(true)
}

fn report(ctx: &mut SysprepContext<'_>, path: &Path, out: &CmdlineOutcome) {
    let shown = path.display();
    for u in &out.unresolved {
        ctx.warn(format!(
            "{shown}: `{u}' left as is (the root filesystem has no UUID): the image boots \
             only where the disk has this name"
        ));
    }
    for d in &out.dropped {
        ctx.note(format!(
            "{shown}: `{d}' removed: it names no partition of the image"
        ));
    }
}

/// Whether `line`'s first word is one of `keys` followed by whitespace.
fn first_word_is(line: &str, keys: &[&str]) -> bool {
    let t = line.trim_start();
    keys.iter().any(|k| {
        t.strip_prefix(k)
            .is_some_and(|r| r.starts_with(char::is_whitespace))
    })
}

fn is_grub2_kernel_line(l: &str) -> bool {
    first_word_is(l, &["linux", "linux16", "linuxefi"])
}

/// GRUB 2: the two usual configs and the ESP's (`EFI/<vendor>/grub.cfg`).
fn grub2(ctx: &mut SysprepContext<'_>, names: &Names) -> Result<bool> {
    let mut cfgs: Vec<PathBuf> = super::GRUB2_CONFIGS.iter().map(PathBuf::from).collect();
    for esp in ESP_MOUNTS {
        let efi = Path::new(esp).join("EFI");
        for (name, _) in ctx.read_dir(&efi)? {
            cfgs.push(efi.join(name).join("grub.cfg"));
        }
    }
    let mut found = false;
    for cfg in cfgs {
        // An ESP stub that only loads the real config has no kernel lines: that is the
        // config that counts, not this one.
        found |= edit_cmdlines(ctx, &cfg, names, &is_grub2_kernel_line)?;
    }
    for env in ["/boot/grub2/grubenv", "/boot/grub/grubenv"] {
        grubenv(ctx, Path::new(env), names)?;
    }
    Ok(found)
}

/// grubenv is a block of exactly its size (1024 bytes) padded with `#`: `kernelopts`
/// (the BLS entries' `$kernelopts` on RHEL 8) is rewritten and the padding adjusted.
fn grubenv(ctx: &mut SysprepContext<'_>, path: &Path, names: &Names) -> Result<()> {
    let Some(text) = ctx.read_string(path)? else {
        return Ok(());
    };
    let mut out = CmdlineOutcome::default();
    let body_end = text.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let (body, padding) = text.split_at(body_end);
    if !padding.bytes().all(|b| b == b'#') {
        return Ok(());
    }
    let lines: Vec<String> = body
        .lines()
        .map(|l| match l.strip_prefix("kernelopts=") {
            Some(v) => format!("kernelopts={}", rewrite_cmdline(v, names, &mut out)),
            None => l.to_string(),
        })
        .collect();
    let new_body = join_lines(&lines);
    if new_body == body {
        return Ok(());
    }
    if new_body.len() > text.len() {
        ctx.warn(format!(
            "{}: the new kernelopts do not fit in the block: left as is",
            path.display()
        ));
        return Ok(());
    }
    let new = format!("{new_body}{}", "#".repeat(text.len() - new_body.len()));
    ctx.edit(path, &new, false)?;
    report(ctx, path, &out);
    Ok(())
}

/// Boot Loader Specification entries (Fedora/RHEL, systemd-boot) and the command line
/// kernel-install copies into new entries.
fn bls(ctx: &mut SysprepContext<'_>, names: &Names) -> Result<bool> {
    let mut found = false;
    for dir in [
        "/boot/loader/entries",
        "/boot/efi/loader/entries",
        "/efi/loader/entries",
    ] {
        for (name, _) in ctx.read_dir(Path::new(dir))? {
            if !name.to_string_lossy().ends_with(".conf") {
                continue;
            }
            let p = Path::new(dir).join(name);
            found |= edit_cmdlines(ctx, &p, names, &|l| first_word_is(l, &["options"]))?;
        }
    }
    edit_cmdlines(ctx, Path::new("/etc/kernel/cmdline"), names, &|_| true)?;
    Ok(found)
}

/// GRUB legacy: `kernel` lines inside `title` stanzas.
fn grub_legacy(ctx: &mut SysprepContext<'_>, names: &Names) -> Result<bool> {
    for grub1 in ["/boot/grub/menu.lst", "/etc/grub.conf"] {
        let p = Path::new(grub1);
        if !ctx.is_file(p)? {
            continue;
        }
        let text = ctx.read_string(p)?.unwrap_or_default();
        let mut in_title = false;
        let mut out = CmdlineOutcome::default();
        let lines: Vec<String> = text
            .lines()
            .map(|l| {
                let first = l.split_whitespace().next().unwrap_or("");
                if first == "title" {
                    in_title = true;
                }
                if in_title && first == "kernel" {
                    rewrite_cmdline(l, names, &mut out)
                } else {
                    l.to_string()
                }
            })
            .collect();
        ctx.edit(p, &join_lines(&lines), false)?;
        report(ctx, p, &out);
        return Ok(true);
    }
    Ok(false)
}

fn syslinux(ctx: &mut SysprepContext<'_>, names: &Names) -> Result<bool> {
    let mut found = false;
    for cfg in super::syslinux_configs() {
        found |= edit_cmdlines(ctx, Path::new(&cfg), names, &|l| {
            let t = l.trim_start();
            // `get`: a guest's config may hold a multi-byte character there.
            t.get(..6).is_some_and(|w| w.eq_ignore_ascii_case("append"))
                && t[6..].starts_with(char::is_whitespace)
        })?;
    }
    Ok(found)
}

/// Variables of /etc/default/grub that make update-grub name the root by its kernel
/// name; commented out.
const GRUB_DEVICE_OVERRIDES: [&str; 2] = ["GRUB_DEVICE", "GRUB_DEVICE_BOOT"];

/// /etc/default/grub: the command line variables, and what makes the next update-grub
/// in the guest write `root=/dev/...` again.
fn default_grub(ctx: &mut SysprepContext<'_>, names: &Names) -> Result<()> {
    let p = Path::new("/etc/default/grub");
    let Some(text) = ctx.read_string(p)? else {
        return Ok(());
    };
    let mut out = CmdlineOutcome::default();
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            for var in ["GRUB_CMDLINE_LINUX", "GRUB_CMDLINE_LINUX_DEFAULT"] {
                if let Some((a, b)) = shell_var_value(l, var) {
                    let v = rewrite_cmdline(&l[a..b], names, &mut out);
                    return format!("{}{v}{}", &l[..a], &l[b..]);
                }
            }
            if let Some((a, b)) = shell_var_value(l, "GRUB_DISABLE_LINUX_UUID") {
                if l[a..b].trim_matches(['"', '\'']) == "true" {
                    return format!("#{l}");
                }
            }
            if GRUB_DEVICE_OVERRIDES
                .iter()
                .any(|v| shell_var_value(l, v).is_some())
            {
                return format!("#{l}");
            }
            l.to_string()
        })
        .collect();
    ctx.edit(p, &join_lines(&lines), false)?;
    report(ctx, p, &out);
    Ok(())
}

/// /etc/crypttab: the source device (second field) of each line.
fn crypttab(ctx: &mut SysprepContext<'_>, names: &Names) -> Result<()> {
    let p = Path::new("/etc/crypttab");
    let Some(text) = ctx.read_string(p)? else {
        return Ok(());
    };
    let mut lines = Vec::new();
    for line in text.lines() {
        let f = fstab_fields(line);
        let dev = match f.get(1) {
            Some(d) if is_non_persistent(d) => *d,
            _ => {
                lines.push(line.to_string());
                continue;
            }
        };
        match names.by_partition(dev) {
            Some(spec) => lines.push(replace_second_field(line, &spec)),
            None => {
                ctx.warn(format!(
                    "/etc/crypttab: `{dev}' names no partition of the image: left as is"
                ));
                lines.push(line.to_string());
            }
        }
    }
    ctx.edit(p, &join_lines(&lines), false)?;
    Ok(())
}

/// `line` with its second whitespace-separated field replaced by `new`.
fn replace_second_field(line: &str, new: &str) -> String {
    let first_start = line.len() - line.trim_start().len();
    let first_end = line[first_start..]
        .find(char::is_whitespace)
        .map_or(line.len(), |i| first_start + i);
    let (head, rest) = line.split_at(first_end);
    format!("{head}{}", replace_first_field(rest, new))
}

/// Initramfs configurations are baked into the initramfs already built: a
/// non-persistent name there is only reported.
fn initramfs_configs(ctx: &mut SysprepContext<'_>) -> Result<()> {
    let mut files: Vec<PathBuf> = [
        "/etc/initramfs-tools/conf.d/resume",
        "/etc/initramfs-tools/initramfs.conf",
        "/etc/dracut.conf",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    for dir in ["/etc/initramfs-tools/conf.d", "/etc/dracut.conf.d"] {
        for (name, _) in ctx.read_dir(Path::new(dir))? {
            let p = Path::new(dir).join(name);
            if !files.contains(&p) {
                files.push(p);
            }
        }
    }
    for p in files {
        let Some(text) = ctx.read_string(&p)? else {
            continue;
        };
        let bad = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .flat_map(|l| l.split(|c: char| c.is_whitespace() || "=\"'".contains(c)))
            .find(|w| is_non_persistent(w));
        if let Some(dev) = bad {
            ctx.warn(format!(
                "{}: names `{dev}', which depends on the disk bus; the initramfs built \
                 from it keeps that name (not edited: change it in the guest and rebuild \
                 the initramfs)",
                p.display()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_field_replaced_keeping_spacing() {
        assert_eq!(
            replace_second_field("cryptroot\t/dev/sda2  none luks", "UUID=u"),
            "cryptroot\tUUID=u  none luks"
        );
        assert_eq!(replace_second_field("x /dev/sda2", "UUID=u"), "x UUID=u");
    }

    #[test]
    fn kernel_line_keywords() {
        assert!(is_grub2_kernel_line("\tlinuxefi /vmlinuz root=/dev/sda1"));
        assert!(is_grub2_kernel_line("  linux16 /vmlinuz"));
        assert!(!is_grub2_kernel_line("  linuxfoo /vmlinuz"));
        assert!(first_word_is("options root=/dev/sda1", &["options"]));
    }
}
