//! Catching damaged and truncated images before the copy: qemu-img would convert them
//! silently, reading zeros where the data is missing.
//!
//! Every layer of the chain gets `qemu-img check`; then one `qemu-img map` of the whole
//! chain must place every data extent inside the file it lives in: the layer's own file,
//! its data file, or the VMDK extent covering it ([`Layer::file_at`]). qemu-img never
//! merges map entries of different files, so each entry lies in one file.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde::Deserialize;
use snf_core::command::{self, CommandError};

use super::chain::Layer;
use super::MediaError;

/// A limit for a command that reads an image's metadata, which grows with its size:
/// one minute, plus one second per 16 GiB.
pub fn metadata_limit(virtual_size: u64) -> Duration {
    Duration::from_secs(60 + virtual_size / (16 << 30))
}

#[derive(Deserialize)]
struct CheckOut {
    #[serde(default)]
    corruptions: u64,
}

#[derive(Deserialize)]
struct MapEntry {
    start: u64,
    length: u64,
    depth: u64,
    data: bool,
    offset: Option<u64>,
}

fn last_line(s: &str) -> &str {
    s.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no message")
        .trim()
        .trim_start_matches("qemu-img: ")
}

/// Check every layer, then map the chain.
pub fn check(given: &Path, layers: &[Layer]) -> Result<(), MediaError> {
    let Some(top) = layers.first() else {
        return Ok(());
    };
    let limit = metadata_limit(top.virtual_size);
    for (depth, layer) in layers.iter().enumerate() {
        if layer.format == "raw" {
            continue;
        }
        if let Err(e) = check_layer(given, depth, layer, limit) {
            // A short extent or data file makes check fail with a message about
            // clusters; the map names the file instead.
            if layer.has_external_files() {
                map_within_files(given, layers, limit)?;
            }
            return Err(e);
        }
    }
    if top.format == "raw" {
        return Ok(());
    }
    map_within_files(given, layers, limit)
}

fn damaged(given: &Path, depth: usize, layer: &Layer, reason: String) -> MediaError {
    if depth == 0 {
        MediaError::Damaged {
            path: given.to_path_buf(),
            format: layer.format.clone(),
            reason,
        }
    } else {
        MediaError::Dependency {
            owner: given.to_path_buf(),
            role: "backing file",
            file: layer.file.path.clone(),
            problem: format!("is a damaged {} image: {reason}", layer.format),
        }
    }
}

fn check_layer(
    given: &Path,
    depth: usize,
    layer: &Layer,
    limit: Duration,
) -> Result<(), MediaError> {
    let out = command::run_unchecked_with_limit(
        Command::new("qemu-img")
            .args(["check", "--output=json", "-f", &layer.format])
            .arg(&layer.file.path),
        limit,
    )
    .map_err(|source| MediaError::Command {
        path: given.to_path_buf(),
        source: Box::new(source),
    })?;
    // 0: clean; 3: only leaked clusters (harmless for reading); 63: no check for format.
    match out.status.code() {
        Some(0) | Some(3) | Some(63) => Ok(()),
        Some(2) => {
            let n = serde_json::from_str::<CheckOut>(&out.stdout)
                .map(|c| c.corruptions)
                .unwrap_or(0);
            let last = out.stderr.lines().rev().find(|l| !l.trim().is_empty());
            Err(damaged(
                given,
                depth,
                layer,
                match last {
                    Some(l) => format!(
                        "qemu-img check found {n} corruptions, e.g. {}",
                        l.trim().trim_start_matches("ERROR: ")
                    ),
                    None => format!("qemu-img check found {n} corruptions"),
                },
            ))
        }
        _ => Err(damaged(
            given,
            depth,
            layer,
            format!("qemu-img check failed: {}", last_line(&out.stderr)),
        )),
    }
}

/// Stream `qemu-img map` of the whole chain and fail on the first data extent lying past
/// the end of its file. Streamed so that an image with many extents costs no memory.
fn map_within_files(given: &Path, layers: &[Layer], limit: Duration) -> Result<(), MediaError> {
    let top = &layers[0];
    let mut beyond: Option<(usize, MapEntry, u64)> = None;
    let out = command::stream_lines(
        Command::new("qemu-img")
            .args(["map", "--output=json", "-f", &top.format])
            .arg(&top.file.path),
        Some(limit),
        |line| {
            let obj = line
                .trim()
                .trim_matches(|c| c == '[' || c == ']' || c == ',');
            let Ok(e) = serde_json::from_str::<MapEntry>(obj) else {
                return true;
            };
            let (Some(off), true) = (e.offset, e.data) else {
                return true;
            };
            let Some(layer) = layers.get(e.depth as usize) else {
                return true;
            };
            if off.saturating_add(e.length) > layer.file_at(e.start).len {
                beyond = Some((e.depth as usize, e, off));
                return false;
            }
            true
        },
    )
    .map_err(|source: CommandError| MediaError::Command {
        path: given.to_path_buf(),
        source: Box::new(source),
    })?;
    if let Some((depth, e, off)) = beyond {
        let layer = &layers[depth];
        let file = layer.file_at(e.start);
        let range = format!("{}..{}", e.start, e.start + e.length);
        if file.same(&layer.file) {
            return Err(damaged(
                given,
                depth,
                layer,
                format!(
                    "the data for bytes {range} lies beyond the end of the file ({} bytes); the image looks truncated",
                    file.len
                ),
            ));
        }
        let role = if layer.data_file.as_ref() == Some(file) {
            "data file"
        } else {
            "extent"
        };
        return Err(MediaError::Dependency {
            owner: if depth == 0 {
                given.to_path_buf()
            } else {
                layer.file.path.clone()
            },
            role,
            file: file.path.clone(),
            problem: format!(
                "is shorter than it should be ({} bytes): the data for bytes {range} of the disk lies at {}..{} in it",
                file.len,
                off,
                off + e.length
            ),
        });
    }
    if !out.status.success() {
        return Err(damaged(
            given,
            0,
            top,
            format!("qemu-img map failed: {}", last_line(&out.stderr)),
        ));
    }
    Ok(())
}
