//! Typed system preparation parameters (`--sysprep-param KEY=VALUE`).
//!
//! Types are those of the original: `posint`, `string`, `file`, `dir`, and `list:<type>`
//! (comma-separated, `\,` for a literal comma). Names match case-insensitively (the
//! original upper-cased them and so ignored every one: fixed). An unknown name or a bad
//! value is an error, never a silent no-op.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use super::context::OsFamily;
use super::{Result, SysprepError};

/// The type of a parameter's value (of each item, for lists).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamKind {
    /// An integer greater than zero.
    PosInt,
    /// Any text.
    String,
    /// An existing regular file or block device on the host (empty allowed).
    File,
    /// An existing directory on the host (empty allowed).
    Dir,
}

impl ParamKind {
    /// The original's type name.
    pub fn name(self) -> &'static str {
        match self {
            ParamKind::PosInt => "posint",
            ParamKind::String => "string",
            ParamKind::File => "file",
            ParamKind::Dir => "dir",
        }
    }

    fn check(self, value: &str) -> std::result::Result<String, String> {
        match self {
            ParamKind::PosInt => {
                let n: i64 = value
                    .trim()
                    .parse()
                    .map_err(|_| "Invalid number".to_string())?;
                if n <= 0 {
                    return Err("Value is negative or zero".into());
                }
                Ok(n.to_string())
            }
            ParamKind::String => Ok(value.to_string()),
            ParamKind::File => {
                if value.is_empty() {
                    return Ok(String::new());
                }
                let ok = std::fs::metadata(value).is_ok_and(|m| {
                    use std::os::unix::fs::FileTypeExt;
                    m.is_file() || m.file_type().is_block_device()
                });
                if ok {
                    Ok(value.to_string())
                } else {
                    Err(format!("`{value}' is not an existing file or block device"))
                }
            }
            ParamKind::Dir => {
                if value.is_empty() || Path::new(value).is_dir() {
                    Ok(value.to_string())
                } else {
                    Err(format!("`{value}' is not an existing directory"))
                }
            }
        }
    }
}

/// An extra check on each (already typed) value; returns the reason when it fails.
pub type ParamCheck = fn(&str) -> std::result::Result<(), String>;

/// The definition of one parameter.
#[derive(Debug, Clone, Copy)]
pub struct ParamSpec {
    /// Lower-case name with underscores.
    pub name: &'static str,
    pub kind: ParamKind,
    /// Whether the value is a list of `kind`.
    pub list: bool,
    /// Default value (one item for non-lists).
    pub default: &'static [&'static str],
    pub description: &'static str,
    /// Hidden parameters are settable but not printed.
    pub hidden: bool,
    /// The OS families that have it.
    pub families: &'static [OsFamily],
    pub check: Option<ParamCheck>,
}

impl ParamSpec {
    /// `posint`, `list:string` ...
    pub fn type_name(&self) -> String {
        if self.list {
            format!("list:{}", self.kind.name())
        } else {
            self.kind.name().to_string()
        }
    }
}

const UNIX: &[OsFamily] = &[
    OsFamily::Linux,
    OsFamily::FreeBsd,
    OsFamily::NetBsd,
    OsFamily::OpenBsd,
    OsFamily::Hurd,
];
const LINUX: &[OsFamily] = &[OsFamily::Linux];
const WINDOWS: &[OsFamily] = &[OsFamily::Windows];

fn non_empty_filename(v: &str) -> std::result::Result<(), String> {
    if v.is_empty() {
        Err("Filename cannot be empty".into())
    } else {
        Ok(())
    }
}

fn virtio_dir(v: &str) -> std::result::Result<(), String> {
    if v.is_empty() {
        return Ok(());
    }
    let found = std::fs::read_dir(v)
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| {
            let name = e.file_name().to_string_lossy().to_ascii_lowercase();
            name.ends_with(".inf")
                && std::fs::read(e.path()).is_ok_and(|data| {
                    let text = String::from_utf8_lossy(&data).to_ascii_lowercase();
                    ["virtio", "viostor", "netkvm", "vioscsi"]
                        .iter()
                        .any(|k| text.contains(k))
                })
        });
    if found || crate::virtio::has_driver_dirs(std::path::Path::new(v)) {
        Ok(())
    } else {
        Err("Could not find any VirtIO driver in this directory".into())
    }
}

/// Every parameter of every family.
pub static SPECS: &[ParamSpec] = &[
    ParamSpec {
        name: "sensitive_userdata",
        kind: ParamKind::String,
        list: true,
        default: &[
            ".history",
            ".sh_history",
            ".bash_history",
            ".zsh_history",
            ".gnupg",
            ".ssh",
            ".kamakirc",
            ".kamaki.history",
            ".kamaki.log",
        ],
        description: "Files in the users' home directories (/root and every entry of /home) \
                      that cleanup-userdata scrubs; a directory has all its regular files \
                      scrubbed.",
        hidden: false,
        families: UNIX,
        check: Some(non_empty_filename),
    },
    ParamSpec {
        name: "bootmenu_timeout",
        kind: ParamKind::PosInt,
        list: false,
        default: &["10"],
        description: "Boot menu timeout in seconds.",
        hidden: false,
        families: LINUX,
        check: None,
    },
    ParamSpec {
        name: "powerbtn_action",
        kind: ParamKind::String,
        list: false,
        default: &["/sbin/shutdown -h now"],
        description: "The action that should be executed if the power button is pressed.",
        hidden: false,
        families: LINUX,
        check: None,
    },
    ParamSpec {
        name: "default_user",
        kind: ParamKind::String,
        list: false,
        default: &["user"],
        description: "Name of default cloud-init user.",
        hidden: false,
        families: LINUX,
        check: None,
    },
    ParamSpec {
        name: "mem",
        kind: ParamKind::PosInt,
        list: false,
        default: &["1024"],
        description: "Virtual RAM size in MiB for the VM that runs the Windows sysprep.",
        hidden: false,
        families: WINDOWS,
        check: None,
    },
    ParamSpec {
        name: "smp",
        kind: ParamKind::PosInt,
        list: false,
        default: &["1"],
        description: "Number of CPUs for the VM that runs the Windows sysprep.",
        hidden: false,
        families: WINDOWS,
        check: None,
    },
    ParamSpec {
        name: "connection_retries",
        kind: ParamKind::PosInt,
        list: false,
        default: &["5"],
        description: "Number of times to try to connect to the VM after it has booted.",
        hidden: false,
        families: WINDOWS,
        check: None,
    },
    ParamSpec {
        name: "shutdown_timeout",
        kind: ParamKind::PosInt,
        list: false,
        default: &["300"],
        description: "Seconds to wait for the VM to shut down.",
        hidden: false,
        families: WINDOWS,
        check: None,
    },
    ParamSpec {
        name: "boot_timeout",
        kind: ParamKind::PosInt,
        list: false,
        default: &["600"],
        description: "Seconds to wait for the VM to boot.",
        hidden: false,
        families: WINDOWS,
        check: None,
    },
    ParamSpec {
        name: "virtio",
        kind: ParamKind::Dir,
        list: false,
        default: &[""],
        description: "Directory with VirtIO drivers to install.",
        hidden: true,
        families: WINDOWS,
        check: Some(virtio_dir),
    },
    ParamSpec {
        name: "virtio_timeout",
        kind: ParamKind::PosInt,
        list: false,
        default: &["900"],
        description: "Seconds to wait for the VirtIO drivers to be installed.",
        hidden: false,
        families: WINDOWS,
        check: None,
    },
];

/// Check a `--sysprep-param` before the OS is known: the name must be a parameter of
/// some OS family and the value must suit it.
pub fn check(name: &str, value: &str) -> Result<()> {
    let wanted = name.trim().to_ascii_lowercase().replace('-', "_");
    let Some(spec) = SPECS.iter().find(|s| s.name == wanted) else {
        let mut valid: Vec<_> = SPECS.iter().filter(|s| !s.hidden).map(|s| s.name).collect();
        valid.sort_unstable();
        return Err(SysprepError::UnknownParam {
            name: name.to_string(),
            valid: valid.join(", "),
        });
    };
    let mut scratch = Params {
        family: spec.families[0],
        values: BTreeMap::new(),
    };
    scratch.set(spec.name, value)
}

/// Split a list value on commas; `\,` is a literal comma.
pub fn split_list(value: &str) -> Vec<String> {
    let mut items = vec![String::new()];
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&',') => {
                chars.next();
                items.last_mut().expect("never empty").push(',');
            }
            ',' => items.push(String::new()),
            c => items.last_mut().expect("never empty").push(c),
        }
    }
    items
}

/// The parameters of one OS family with their current values (defaults until set).
#[derive(Debug, Clone)]
pub struct Params {
    family: OsFamily,
    values: BTreeMap<&'static str, Vec<String>>,
}

impl Params {
    /// The parameters of `family`, at their defaults.
    pub fn for_family(family: OsFamily) -> Params {
        let values = Self::specs_of(family)
            .map(|s| (s.name, s.default.iter().map(|d| d.to_string()).collect()))
            .collect();
        Params { family, values }
    }

    fn specs_of(family: OsFamily) -> impl Iterator<Item = &'static ParamSpec> {
        SPECS.iter().filter(move |s| s.families.contains(&family))
    }

    /// The definitions of this family's parameters, sorted by name.
    pub fn specs(&self) -> Vec<&'static ParamSpec> {
        let mut v: Vec<_> = Self::specs_of(self.family).collect();
        v.sort_by_key(|s| s.name);
        v
    }

    fn spec(&self, name: &str) -> Result<&'static ParamSpec> {
        let wanted = name.trim().to_ascii_lowercase().replace('-', "_");
        Self::specs_of(self.family)
            .find(|s| s.name == wanted)
            .ok_or_else(|| SysprepError::UnknownParam {
                name: name.to_string(),
                valid: {
                    let names: Vec<_> = self.specs().iter().map(|s| s.name).collect();
                    if names.is_empty() {
                        "(none)".to_string()
                    } else {
                        names.join(", ")
                    }
                },
            })
    }

    /// Set parameter `name` (case-insensitive) from its text form, checking its type.
    pub fn set(&mut self, name: &str, value: &str) -> Result<()> {
        let spec = self.spec(name)?;
        let raw = if spec.list {
            split_list(value)
        } else {
            vec![value.to_string()]
        };
        self.store(spec, raw)
    }

    /// Set list parameter `name` (case-insensitive) to exactly `items` (no comma
    /// splitting, and an empty list is allowed), each checked as [`Params::set`] does.
    /// A front-end editing the list item by item uses this.
    pub fn set_list(&mut self, name: &str, items: &[String]) -> Result<()> {
        let spec = self.spec(name)?;
        if !spec.list {
            return Err(SysprepError::InvalidParamValue {
                name: spec.name.to_string(),
                reason: format!("it holds one {} value, not a list", spec.kind.name()),
            });
        }
        self.store(spec, items.to_vec())
    }

    /// Check every item of `raw` against `spec` and store them.
    fn store(&mut self, spec: &'static ParamSpec, raw: Vec<String>) -> Result<()> {
        let invalid = |reason: String| SysprepError::InvalidParamValue {
            name: spec.name.to_string(),
            reason,
        };
        let mut items = Vec::with_capacity(raw.len());
        for item in raw {
            let v = spec.kind.check(&item).map_err(invalid)?;
            if let Some(check) = spec.check {
                check(&v).map_err(invalid)?;
            }
            items.push(v);
        }
        self.values.insert(spec.name, items);
        Ok(())
    }

    /// Whether parameter `name` (case-insensitive) exists for this OS family.
    pub fn has(&self, name: &str) -> bool {
        self.spec(name).is_ok()
    }

    /// Apply a `KEY=VALUE` assignment (split on the first `=`).
    pub fn set_assignment(&mut self, text: &str) -> Result<()> {
        let (k, v) = text
            .split_once('=')
            .ok_or_else(|| SysprepError::NotAnAssignment(text.to_string()))?;
        self.set(k, v)
    }

    /// The single value of `name` (the first item of a list); empty if unknown.
    pub fn get(&self, name: &str) -> &str {
        self.values
            .get(name)
            .and_then(|v| v.first())
            .map(String::as_str)
            .unwrap_or("")
    }

    /// The value of a `posint` parameter.
    pub fn get_u64(&self, name: &str) -> u64 {
        self.get(name).parse().unwrap_or(0)
    }

    /// The items of a list parameter (the value, as one item, for others).
    pub fn get_list(&self, name: &str) -> &[String] {
        self.values.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The original's `--print-sysprep-params` text.
    pub fn print(&self) -> String {
        let mut out = String::from("System preparation parameters:\n\n");
        let shown: Vec<_> = self.specs().into_iter().filter(|s| !s.hidden).collect();
        if shown.is_empty() {
            out.push_str("(none)\n");
            return out;
        }
        let pad = " ".repeat(13);
        for s in shown {
            let _ = writeln!(out, "{:<13}{}", "NAME:", s.name);
            let descr = super::registry::wrap(s.description, 72 - 13);
            for (i, line) in descr.iter().enumerate() {
                let label = if i == 0 { "DESCRIPTION:" } else { "" };
                let _ = writeln!(out, "{label:<13}{line}");
            }
            let _ = writeln!(out, "{:<13}{}", "TYPE:", s.type_name());
            let values = self.get_list(s.name);
            if values.is_empty() {
                let _ = writeln!(out, "VALUE:");
            }
            for (i, v) in values.iter().enumerate() {
                if i == 0 {
                    let _ = writeln!(out, "{:<13}{v}", "VALUE:");
                } else {
                    let _ = writeln!(out, "{pad}{v}");
                }
            }
            out.push('\n');
        }
        out
    }

    /// The parameters as JSON (`--json`): name, type, description, value, hidden.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Array(
            self.specs()
                .into_iter()
                .map(|s| {
                    let value = if s.list {
                        serde_json::json!(self.get_list(s.name))
                    } else if s.kind == ParamKind::PosInt {
                        serde_json::json!(self.get_u64(s.name))
                    } else {
                        serde_json::json!(self.get(s.name))
                    };
                    serde_json::json!({
                        "name": s.name,
                        "type": s.type_name(),
                        "description": s.description,
                        "value": value,
                        "hidden": s.hidden,
                    })
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_case_insensitive_and_values_typed() {
        let mut p = Params::for_family(OsFamily::Linux);
        p.set("BOOTMENU_TIMEOUT", "3").unwrap();
        assert_eq!(p.get_u64("bootmenu_timeout"), 3);
        p.set_assignment("Default_User=alice").unwrap();
        assert_eq!(p.get("default_user"), "alice");
        let e = p.set("bootmenu_timeout", "0").unwrap_err().to_string();
        assert_eq!(
            e,
            "Invalid value for sysprep parameter: `bootmenu_timeout'. Reason: Value is negative or zero"
        );
        let e = p.set("bootmenu_timeout", "ten").unwrap_err().to_string();
        assert!(e.ends_with("Reason: Invalid number"), "{e}");
        assert_eq!(
            p.get_u64("bootmenu_timeout"),
            3,
            "a bad value changes nothing"
        );
    }

    #[test]
    fn unknown_names_list_the_valid_ones() {
        let mut p = Params::for_family(OsFamily::Linux);
        let e = p.set("bootmenu_timout", "3").unwrap_err().to_string();
        assert_eq!(
            e,
            "Invalid sysprep parameter: `bootmenu_timout'. Valid parameters: bootmenu_timeout, \
             default_user, powerbtn_action, sensitive_userdata"
        );
        // Windows parameters do not exist for Linux.
        assert!(p.set("mem", "2048").is_err());
        assert!(matches!(
            p.set_assignment("novalue"),
            Err(SysprepError::NotAnAssignment(_))
        ));
    }

    #[test]
    fn lists_split_on_unescaped_commas() {
        assert_eq!(split_list(r"a,b\,c,d"), vec!["a", "b,c", "d"]);
        assert_eq!(split_list(r"a\b"), vec![r"a\b"]);
        let mut p = Params::for_family(OsFamily::Linux);
        p.set("sensitive_userdata", r".ssh,.my\,file").unwrap();
        assert_eq!(p.get_list("sensitive_userdata"), [".ssh", ".my,file"]);
        let e = p
            .set("sensitive_userdata", ".ssh,,x")
            .unwrap_err()
            .to_string();
        assert!(e.ends_with("Reason: Filename cannot be empty"), "{e}");
    }

    #[test]
    fn set_list_takes_items_as_they_are() {
        let mut p = Params::for_family(OsFamily::Linux);
        let items = vec![r"a\".to_string(), "b,c".to_string()];
        p.set_list("Sensitive_Userdata", &items).unwrap();
        assert_eq!(p.get_list("sensitive_userdata"), items.as_slice());
        p.set_list("sensitive_userdata", &[]).unwrap();
        assert!(p.get_list("sensitive_userdata").is_empty());
        let e = p
            .set_list("sensitive_userdata", &["".to_string()])
            .unwrap_err()
            .to_string();
        assert!(e.ends_with("Reason: Filename cannot be empty"), "{e}");
        assert!(p.set_list("bootmenu_timeout", &["3".to_string()]).is_err());
    }

    #[test]
    fn file_and_dir_types_check_the_host() {
        let mut p = Params::for_family(OsFamily::Windows);
        p.set("virtio", "").unwrap();
        let e = p.set("virtio", "/nonexistent/dir").unwrap_err().to_string();
        assert!(e.contains("not an existing directory"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let e = p.set("virtio", dir.path().to_str().unwrap()).unwrap_err();
        assert!(e.to_string().contains("VirtIO"), "{e}");
        std::fs::write(dir.path().join("viostor.inf"), "[Version]\nviostor\n").unwrap();
        p.set("virtio", dir.path().to_str().unwrap()).unwrap();
        // A virtio-win tree (`NetKVM/w10/amd64/...`) is a VirtIO directory too.
        let tree = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tree.path().join("NetKVM/w10/amd64")).unwrap();
        p.set("virtio", tree.path().to_str().unwrap()).unwrap();
        assert!(ParamKind::File.check("/nonexistent").is_err());
        assert!(
            ParamKind::File.check("/etc/hostname").is_ok()
                || ParamKind::File.check("/etc/passwd").is_ok()
        );
    }

    #[test]
    fn print_layout_matches_the_original() {
        let mut p = Params::for_family(OsFamily::Linux);
        p.set("sensitive_userdata", ".ssh,.gnupg").unwrap();
        let text = p.print();
        assert!(text.starts_with("System preparation parameters:\n\nNAME:        bootmenu_timeout\nDESCRIPTION: Boot menu timeout in seconds.\nTYPE:        posint\nVALUE:       10\n\n"), "{text}");
        assert!(
            text.contains("TYPE:        list:string\nVALUE:       .ssh\n             .gnupg\n\n"),
            "{text}"
        );
        for line in text.lines() {
            assert!(line.chars().count() <= 72, "{line}");
        }
        assert_eq!(
            Params::for_family(OsFamily::Unsupported).print(),
            "System preparation parameters:\n\n(none)\n"
        );
        // Hidden parameters are not printed.
        assert!(!Params::for_family(OsFamily::Windows)
            .print()
            .contains("virtio\n"));
    }
}
