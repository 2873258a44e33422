//! The operation descriptors, which of them apply to an OS and which are enabled.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::context::{OsFamily, SysprepContext};
use super::params::Params;
use super::{Changes, Result, SysprepError};

/// What an operation works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Files of the mounted guest tree.
    Files,
    /// The whole disk, after the guest tree is unmounted (`shrink`).
    Disk,
}

/// One system preparation operation.
pub struct Descriptor {
    /// The name users type (`cleanup-log`).
    pub name: &'static str,
    /// The progress line printed when it runs; `{param}` is replaced by the value of
    /// sysprep parameter `param`.
    pub heading: &'static str,
    /// The name shown in the dialog UI.
    pub display: &'static str,
    /// What `--print-syspreps` prints: one or two sentences, ending with a period.
    pub description: &'static str,
    /// The exact effect on guest files (documentation and the UI's Help).
    pub effect: &'static str,
    /// Whether it runs unless disabled.
    pub default_enabled: bool,
    /// Position in the run order (unique; smaller runs first).
    pub order: u32,
    /// The OS families that have it.
    pub families: &'static [OsFamily],
    pub scope: Scope,
    /// Does the work; records every change through the context.
    pub run: fn(&mut SysprepContext<'_>) -> Result<Changes>,
}

impl std::fmt::Debug for Descriptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Descriptor")
            .field("name", &self.name)
            .field("order", &self.order)
            .finish_non_exhaustive()
    }
}

impl Descriptor {
    /// The progress line, parameters filled in.
    pub fn message(&self, params: &Params) -> String {
        let mut out = String::new();
        let mut rest = self.heading;
        while let Some(start) = rest.find('{') {
            let Some(len) = rest[start..].find('}') else {
                break;
            };
            out.push_str(&rest[..start]);
            out.push_str(params.get(&rest[start + 1..start + len]));
            rest = &rest[start + len + 1..];
        }
        out.push_str(rest);
        out
    }

    /// Whether `family` has this operation.
    pub fn applies_to(&self, family: OsFamily) -> bool {
        self.families.contains(&family)
    }
}

/// Greedy word wrap to `width` columns (Python `textwrap` style: words never split
/// unless longer than a line).
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// The operations of one OS family, in run order, with their enabled state.
#[derive(Debug, Clone)]
pub struct Registry {
    family: OsFamily,
    ops: Vec<&'static Descriptor>,
    enabled: BTreeSet<&'static str>,
    executed: BTreeSet<&'static str>,
}

/// Every descriptor of every family, sorted by order.
pub fn all() -> Vec<&'static Descriptor> {
    let mut v: Vec<_> = super::ops::ALL.to_vec();
    v.sort_by_key(|d| d.order);
    v
}

impl Registry {
    /// The operations of `family`, each enabled or not by default.
    pub fn for_family(family: OsFamily) -> Registry {
        let ops: Vec<_> = all().into_iter().filter(|d| d.applies_to(family)).collect();
        let enabled = ops
            .iter()
            .filter(|d| d.default_enabled)
            .map(|d| d.name)
            .collect();
        Registry {
            family,
            ops,
            enabled,
            executed: BTreeSet::new(),
        }
    }

    pub fn family(&self) -> OsFamily {
        self.family
    }

    /// The operations not yet executed, in run order.
    pub fn descriptors(&self) -> Vec<&'static Descriptor> {
        self.ops
            .iter()
            .copied()
            .filter(|d| !self.executed.contains(d.name))
            .collect()
    }

    /// The enabled operations not yet executed, in run order.
    pub fn enabled(&self) -> Vec<&'static Descriptor> {
        self.descriptors()
            .into_iter()
            .filter(|d| self.enabled.contains(d.name))
            .collect()
    }

    /// The disabled operations not yet executed, in run order.
    pub fn disabled(&self) -> Vec<&'static Descriptor> {
        self.descriptors()
            .into_iter()
            .filter(|d| !self.enabled.contains(d.name))
            .collect()
    }

    /// Find an operation by name (case-insensitive; `_` taken as `-`).
    pub fn get(&self, name: &str) -> Result<&'static Descriptor> {
        let wanted = name.trim().to_ascii_lowercase().replace('_', "-");
        self.descriptors()
            .into_iter()
            .find(|d| d.name == wanted)
            .ok_or_else(|| SysprepError::UnknownSysprep {
                name: name.to_string(),
                family: self.family.name().to_string(),
                valid: {
                    let names: Vec<_> = self.descriptors().iter().map(|d| d.name).collect();
                    if names.is_empty() {
                        "(none)".into()
                    } else {
                        names.join(", ")
                    }
                },
            })
    }

    /// Whether operation `name` is enabled.
    pub fn is_enabled(&self, name: &str) -> bool {
        self.get(name).is_ok_and(|d| self.enabled.contains(d.name))
    }

    /// Enable operation `name`.
    pub fn enable(&mut self, name: &str) -> Result<()> {
        let d = self.get(name)?;
        self.enabled.insert(d.name);
        Ok(())
    }

    /// Disable operation `name`.
    pub fn disable(&mut self, name: &str) -> Result<()> {
        let d = self.get(name)?;
        self.enabled.remove(d.name);
        Ok(())
    }

    /// Apply `--disable-sysprep` names, then `--enable-sysprep` names (the original's
    /// order). Every name is checked before anything changes.
    pub fn select(&mut self, disable: &[String], enable: &[String]) -> Result<()> {
        for n in disable.iter().chain(enable) {
            self.get(n)?;
        }
        for n in disable {
            self.disable(n)?;
        }
        for n in enable {
            self.enable(n)?;
        }
        Ok(())
    }

    /// [`Registry::select`] for names already checked with [`check_names`]: a name that
    /// exists but not for this OS family is skipped (the same command line may serve
    /// guests of several families). Returns the skipped names, for a warning.
    pub fn select_applicable(&mut self, disable: &[String], enable: &[String]) -> Vec<String> {
        let (disable, mut skipped): (Vec<String>, Vec<String>) =
            disable.iter().cloned().partition(|n| self.get(n).is_ok());
        let (enable, skipped_enable): (Vec<String>, Vec<String>) =
            enable.iter().cloned().partition(|n| self.get(n).is_ok());
        skipped.extend(skipped_enable);
        // Every remaining name resolves, so this cannot fail.
        let _ = self.select(&disable, &enable);
        skipped
    }

    /// Disable everything (`--no-sysprep`).
    pub fn disable_all(&mut self) {
        self.enabled.clear();
    }

    /// Record that `name` ran; it is no longer listed and cannot run again.
    pub fn mark_executed(&mut self, name: &str) {
        if let Ok(d) = self.get(name) {
            self.executed.insert(d.name);
        }
    }

    /// The original's `--print-syspreps` text.
    pub fn print(&self) -> String {
        let mut out = String::new();
        for (title, list) in [
            ("Enabled system preparation operations:", self.enabled()),
            ("Disabled system preparation operations:", self.disabled()),
        ] {
            out.push_str(title);
            out.push('\n');
            if list.is_empty() {
                out.push_str("(none)\n");
            }
            for d in list {
                let _ = writeln!(out, "    {}:", d.name);
                // Python's textwrap counts the tab indent as one column of 72.
                for line in wrap(d.description, 71) {
                    let _ = writeln!(out, "\t{line}");
                }
                out.push('\n');
            }
        }
        out
    }

    /// The operations as JSON (`--json`), in run order.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Array(
            self.descriptors()
                .into_iter()
                .map(|d| {
                    serde_json::json!({
                        "name": d.name,
                        "display": d.display,
                        "description": d.description,
                        "effect": d.effect,
                        "enabled": self.enabled.contains(d.name),
                        "default": d.default_enabled,
                        "order": d.order,
                        "scope": d.scope,
                    })
                })
                .collect(),
        )
    }
}

/// Check `--disable-sysprep`/`--enable-sysprep` names before the OS is known: each must
/// name an operation of some OS family (case-insensitive; `_` taken as `-`).
pub fn check_names<'a>(names: impl IntoIterator<Item = &'a String>) -> Result<()> {
    let ops = all();
    for name in names {
        let wanted = name.trim().to_ascii_lowercase().replace('_', "-");
        if !ops.iter().any(|d| d.name == wanted) {
            let mut valid: Vec<_> = ops.iter().map(|d| d.name).collect();
            valid.sort_unstable();
            valid.dedup();
            return Err(SysprepError::NoSuchSysprep {
                name: name.clone(),
                valid: valid.join(", "),
            });
        }
    }
    Ok(())
}

/// The generated reference of every operation and parameter (`docs/syspreps.md`).
pub fn markdown() -> String {
    let mut out = String::from(
        "# System preparation operations\n\n\
         <!-- Generated from crates/image-creator/src/sysprep (registry::markdown); do not edit. \
         Regenerate with: SNF_UPDATE_DOCS=1 cargo test -p image-creator syspreps_doc -->\n\n\
         Operations run in the order below (smaller order first): user data and accounts, \
         passwords, caches, temporary files and logs, network and boot configuration, \
         machine identity, and the whole-disk `shrink` last. Select them with \
         `--disable-sysprep NAME` and `--enable-sysprep NAME` (repeatable; disables are \
         applied first), or skip all with `--no-sysprep`. A name that does not exist is an \
         error. `--dry-run` lists what would change without writing; `-v` shows each file \
         changed.\n\n\
         | Order | Name | Default | OS families | Description |\n\
         |---|---|---|---|---|\n",
    );
    let ops = all();
    for d in &ops {
        let fams: Vec<_> = d.families.iter().map(|f| f.name()).collect();
        let _ = writeln!(
            out,
            "| {} | `{}` | {} | {} | {} |",
            d.order,
            d.name,
            if d.default_enabled { "on" } else { "off" },
            fams.join(", "),
            d.description
        );
    }
    for d in &ops {
        let _ = write!(
            out,
            "\n## `{}` — {}\n\n{}\n\n**Effect:** {}\n\nDefault: {}. Order: {}. Works on: {}. \
             Progress line: \"{}\".\n",
            d.name,
            d.display,
            d.description,
            d.effect,
            if d.default_enabled { "on" } else { "off" },
            d.order,
            match d.scope {
                Scope::Files => "the files of the guest",
                Scope::Disk => "the whole disk",
            },
            d.heading
        );
    }
    out.push_str(
        "\n# System preparation parameters\n\n\
         Set with `--sysprep-param KEY=VALUE` (names case-insensitive; an unknown name or a \
         bad value is an error). Types: `posint` (integer > 0), `string`, `file` (existing \
         host file or block device, empty allowed), `dir` (existing host directory, empty \
         allowed), `list:<type>` (comma-separated, `\\,` for a literal comma).\n\n\
         | Name | Type | Default | OS families | Description |\n|---|---|---|---|---|\n",
    );
    for s in super::params::SPECS {
        let fams: Vec<_> = s.families.iter().map(|f| f.name()).collect();
        let default: Vec<_> = s.default.iter().map(|d| format!("`{d}`")).collect();
        let _ = writeln!(
            out,
            "| `{}`{} | {} | {} | {} | {} |",
            s.name,
            if s.hidden { " (hidden)" } else { "" },
            s.type_name(),
            if default.iter().all(|d| d == "``") {
                "(empty)".to_string()
            } else {
                default.join(", ")
            },
            fams.join(", "),
            s.description
        );
    }
    out
}
