//! One module per system preparation operation; [`ALL`] lists their descriptors.
//!
//! Each module holds a `pub static OP: Descriptor` and its `run` function. Order
//! numbers leave gaps so that new operations can slot in without renumbering.

use std::path::Path;

use super::context::{OsFamily, SysprepContext};
use super::registry::Descriptor;
use super::Result;

pub mod change_bootmenu_timeout;
pub mod cleanup_cache;
pub mod cleanup_cloud_init_state;
pub mod cleanup_log;
pub mod cleanup_mail;
pub mod cleanup_password_bsd;
pub mod cleanup_passwords;
pub mod cleanup_tmp;
pub mod cleanup_userdata;
pub mod clear_local_machine_id_configuration_file;
pub mod disable_ipv6_privacy_extensions;
pub mod disable_isatap;
pub mod disable_predictable_network_interface_naming;
pub mod disable_serial_console;
pub mod disable_teredo;
pub mod enable_pings;
pub mod enable_root_in_cloud_init;
pub mod fix_acpid;
pub mod remove_dhcp_leases;
pub mod remove_lvm_system_devices;
pub mod remove_networkmanager_system_connections;
pub mod remove_password_backups;
pub mod remove_persistent_net_rules;
pub mod remove_random_seed;
pub mod remove_ssh_host_keys;
pub mod remove_swap_entry;
pub mod remove_user_accounts;
pub mod rename_default_cloud_init_user;
pub mod selinux_relabel;
pub mod shrink;
pub mod use_persistent_block_device_names;
pub(crate) mod windows;
pub mod windows_files;
pub mod windows_ipv6_privacy;
pub mod windows_online;
pub mod windows_utc;

/// Every descriptor (any order; the registry sorts by `order`).
pub static ALL: &[&Descriptor] = &[
    &cleanup_userdata::OP,
    &remove_user_accounts::OP,
    &rename_default_cloud_init_user::OP,
    &enable_root_in_cloud_init::OP,
    &cleanup_passwords::OP,
    &cleanup_password_bsd::OP,
    &remove_password_backups::OP,
    &cleanup_cache::OP,
    &cleanup_tmp::OP,
    &cleanup_log::OP,
    &cleanup_mail::OP,
    &fix_acpid::OP,
    &remove_persistent_net_rules::OP,
    &remove_networkmanager_system_connections::OP,
    &remove_dhcp_leases::OP,
    &disable_ipv6_privacy_extensions::OP,
    &remove_swap_entry::OP,
    &use_persistent_block_device_names::OP,
    &change_bootmenu_timeout::OP,
    &disable_predictable_network_interface_naming::OP,
    &disable_serial_console::OP,
    &cleanup_cloud_init_state::OP,
    &remove_ssh_host_keys::OP,
    &remove_random_seed::OP,
    &remove_lvm_system_devices::OP,
    &clear_local_machine_id_configuration_file::OP,
    &selinux_relabel::OP,
    &disable_teredo::OP,
    &disable_isatap::OP,
    &enable_pings::OP,
    &windows_utc::OP,
    &windows_files::CLEAR_LOGS,
    &windows_files::REMOVE_PAGING_FILES,
    &windows_online::KMS_CLIENT_SETUP,
    &windows_online::MICROSOFT_SYSPREP,
    &shrink::OP,
];

/// Windows: the offline operations (registry edits, first-boot commands).
pub(crate) const WINDOWS: &[OsFamily] = &[OsFamily::Windows];

/// Linux, the BSDs and the Hurd.
pub(crate) const UNIX: &[OsFamily] = &[
    OsFamily::Linux,
    OsFamily::FreeBsd,
    OsFamily::NetBsd,
    OsFamily::OpenBsd,
    OsFamily::Hurd,
];
pub(crate) const LINUX: &[OsFamily] = &[OsFamily::Linux];
pub(crate) const BSD: &[OsFamily] = &[OsFamily::FreeBsd, OsFamily::NetBsd, OsFamily::OpenBsd];
/// Every family but unsupported media (which run nothing).
pub(crate) const ALL_OS: &[OsFamily] = &[
    OsFamily::Linux,
    OsFamily::FreeBsd,
    OsFamily::NetBsd,
    OsFamily::OpenBsd,
    OsFamily::Hurd,
    OsFamily::Windows,
];

/// `rm -rf` every entry directly in `dir` (dot files included). A missing `dir`, or one
/// that is a symlink, is a note (a guest's `/tmp -> /etc` link must not empty `/etc`).
pub(crate) fn empty_dir(ctx: &mut SysprepContext<'_>, dir: &str, keep: &[&str]) -> Result<()> {
    let d = Path::new(dir);
    if !ctx.is_real_dir(d)? {
        if ctx.lstat(d)?.is_some() {
            ctx.note(format!("{dir} is not a directory (a symlink?): left alone"));
        } else {
            ctx.note(format!("Directory: `{dir}' does not exist"));
        }
        return Ok(());
    }
    for (name, _) in ctx.read_dir(d)? {
        if keep.iter().any(|k| name == *k) {
            continue;
        }
        ctx.remove_tree(&d.join(&name))?;
    }
    Ok(())
}

/// Unlink each of `paths` that exists (symlinks included, never followed).
pub(crate) fn remove_if_present(ctx: &mut SysprepContext<'_>, paths: &[&str]) -> Result<()> {
    for p in paths {
        if ctx.lstat(Path::new(p))?.is_some_and(|m| !m.is_dir()) {
            ctx.remove_file(Path::new(p))?;
        }
    }
    Ok(())
}

/// The syslinux/extlinux configuration files, in SYSLINUX's own search order.
pub(crate) fn syslinux_configs() -> Vec<String> {
    let dirs = [
        "/boot/extlinux/",
        "/boot/syslinux/",
        "/boot/",
        "/extlinux/",
        "/syslinux/",
        "/",
    ];
    let files = ["extlinux.conf", "syslinux.cfg"];
    dirs.iter()
        .flat_map(|d| files.iter().map(move |f| format!("{d}{f}")))
        .collect()
}

/// Whether a config line is one to edit.
type LinePredicate = fn(&str) -> bool;

/// The GRUB 2 configuration files edited in place.
pub(crate) const GRUB2_CONFIGS: [&str; 2] = ["/boot/grub/grub.cfg", "/boot/grub2/grub.cfg"];

/// Apply `f` to every kernel command line the boot loaders pass: `linux`/`linux16` lines
/// of the GRUB 2 configs and lower-case `append` lines of the syslinux configs.
pub(crate) fn edit_kernel_lines(
    ctx: &mut SysprepContext<'_>,
    f: &dyn Fn(&str) -> String,
) -> Result<()> {
    let mut files: Vec<(String, LinePredicate)> = GRUB2_CONFIGS
        .iter()
        .map(|p| {
            (
                p.to_string(),
                super::text::is_grub_linux_line as fn(&str) -> bool,
            )
        })
        .collect();
    files.extend(
        syslinux_configs()
            .into_iter()
            .map(|p| (p, super::text::is_syslinux_append_line as LinePredicate)),
    );
    for (path, is_kernel_line) in files {
        let p = Path::new(&path);
        if !ctx.is_file(p)? {
            continue;
        }
        let text = ctx.read_string(p)?.unwrap_or_default();
        let lines: Vec<String> = text
            .lines()
            .map(|l| {
                if is_kernel_line(l) {
                    f(l)
                } else {
                    l.to_string()
                }
            })
            .collect();
        ctx.edit(p, &super::text::join_lines(&lines), false)?;
    }
    Ok(())
}

/// Apply `f` to the raw (quoted) values of `GRUB_CMDLINE_LINUX` and
/// `GRUB_CMDLINE_LINUX_DEFAULT` in /etc/default/grub; `f` gets the variable name too.
/// `missing` is called with the text when neither variable exists and may append to it.
pub(crate) fn edit_default_grub(
    ctx: &mut SysprepContext<'_>,
    f: &dyn Fn(&str, &str) -> String,
) -> Result<()> {
    let p = Path::new("/etc/default/grub");
    let Some(text) = ctx.read_string(p)? else {
        return Ok(());
    };
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            for var in ["GRUB_CMDLINE_LINUX", "GRUB_CMDLINE_LINUX_DEFAULT"] {
                if let Some((a, b)) = super::text::shell_var_value(l, var) {
                    return format!("{}{}{}", &l[..a], f(var, &l[a..b]), &l[b..]);
                }
            }
            l.to_string()
        })
        .collect();
    ctx.edit(p, &super::text::join_lines(&lines), false)?;
    Ok(())
}
