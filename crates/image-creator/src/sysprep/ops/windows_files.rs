//! The offline Windows operations that remove files: the event logs and the paging,
//! hibernation and swap files, all of which Windows makes again when it needs them.

use std::path::{Path, PathBuf};

use super::super::registry::{Descriptor, Scope};
use super::super::{Changes, Result, SysprepContext};
use super::WINDOWS;

pub static CLEAR_LOGS: Descriptor = Descriptor {
    name: "clear-logs",
    heading: "Clearing the event logs",
    display: "Clear logs",
    description: "Clear the Windows event logs.",
    effect: "Deletes every Windows\\System32\\winevt\\Logs\\*.evtx. An emptied .evtx \
             is a corrupt log to the Event Log service (a log file starts with an \
             ElfFile header), while a missing one is created anew, empty, when the \
             service opens its channel at boot.",
    default_enabled: true,
    order: 350,
    families: WINDOWS,
    scope: Scope::Files,
    run: clear_logs,
};

pub static REMOVE_PAGING_FILES: Descriptor = Descriptor {
    name: "remove-paging-files",
    heading: "Removing the paging and hibernation files",
    display: "Remove paging files",
    description: "Remove pagefile.sys, hiberfil.sys and swapfile.sys from the root of \
                  the Windows volume.",
    effect: "Deletes \\pagefile.sys, \\hiberfil.sys and \\swapfile.sys of the system \
             volume: their contents are memory of the machine the image was made on, \
             and Windows creates them again at boot as its settings say.",
    default_enabled: true,
    order: 355,
    families: WINDOWS,
    scope: Scope::Files,
    run: remove_paging_files,
};

/// The entries of `dir` named (without regard to case, as Windows names them) one of
/// `names`, or ending in `suffix` when it is not empty.
fn matching(
    ctx: &mut SysprepContext<'_>,
    dir: &Path,
    names: &[&str],
    suffix: &str,
) -> Result<Vec<PathBuf>> {
    if !ctx.is_real_dir(dir)? {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for (entry, kind) in ctx.read_dir(dir)? {
        if kind == snf_guestfs::FileType::Directory {
            continue;
        }
        let lower = entry.to_string_lossy().to_ascii_lowercase();
        let wanted = names.contains(&lower.as_str())
            || (!suffix.is_empty() && lower.len() > suffix.len() && lower.ends_with(suffix));
        if wanted {
            out.push(dir.join(entry));
        }
    }
    out.sort();
    Ok(out)
}

/// The real path of `rel` (`/`-separated components) below `root`, each component
/// matched without regard to case; `None` when one is missing.
fn find_nocase(ctx: &mut SysprepContext<'_>, root: &Path, rel: &str) -> Result<Option<PathBuf>> {
    let mut at = root.to_path_buf();
    for part in rel.split('/') {
        if !ctx.is_real_dir(&at)? {
            return Ok(None);
        }
        let found = ctx
            .read_dir(&at)?
            .into_iter()
            .find(|(e, _)| e.to_string_lossy().eq_ignore_ascii_case(part));
        match found {
            Some((e, _)) => at = at.join(e),
            None => return Ok(None),
        }
    }
    Ok(Some(at))
}

fn clear_logs(ctx: &mut SysprepContext<'_>) -> Result<Changes> {
    let Some(root) = ctx.windows_root() else {
        ctx.note("no Windows system root: nothing to do");
        return Ok(ctx.finish());
    };
    let Some(logs) = find_nocase(ctx, &root, "System32/winevt/Logs")? else {
        ctx.note("no System32\\winevt\\Logs directory: nothing to do");
        return Ok(ctx.finish());
    };
    for log in matching(ctx, &logs, &[], ".evtx")? {
        snf_core::cancel::check()?;
        ctx.remove_file(&log)?;
    }
    Ok(ctx.finish())
}

fn remove_paging_files(ctx: &mut SysprepContext<'_>) -> Result<Changes> {
    let root = Path::new("/");
    for file in matching(
        ctx,
        root,
        &["pagefile.sys", "hiberfil.sys", "swapfile.sys"],
        "",
    )? {
        ctx.remove_file(&file)?;
    }
    Ok(ctx.finish())
}
