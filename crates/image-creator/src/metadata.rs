//! The image property map ("metadata"): what is written to `.meta`/`.variant` and sent
//! to an image registry.
//!
//! Rules (those of the original tool, which deployment relies on):
//! * keys are upper-cased and made only of `[A-Za-z0-9_]`;
//! * values are strings;
//! * iteration is sorted by key, so every output form is deterministic;
//! * values given by the user (`-m KEY=VALUE`) override detected ones.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A metadata key or assignment that breaks the rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    /// `KEY=VALUE` text without an `=`.
    #[error("`{0}' is not in KEY=VALUE format.")]
    NotAnAssignment(String),
    /// A key with characters outside `[A-Za-z0-9_]` (or an empty key).
    #[error("Metadata key: `{0}' is not valid. Allowed characters for key: [a-zA-Z0-9_].")]
    InvalidKey(String),
}

/// Whether `key` is made only of `[A-Za-z0-9_]` and is not empty.
pub fn is_valid_key(key: &str) -> bool {
    !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Split `KEY=VALUE` on the first `=`; the key is returned as given (not validated).
pub fn split_assignment(text: &str) -> Result<(&str, &str), MetadataError> {
    text.split_once('=')
        .ok_or_else(|| MetadataError::NotAnAssignment(text.to_string()))
}

/// Parse a user's `KEY=VALUE` metadata assignment: the key is validated and upper-cased.
pub fn parse_assignment(text: &str) -> Result<(String, String), MetadataError> {
    let (key, value) = split_assignment(text)?;
    if !is_valid_key(key) {
        return Err(MetadataError::InvalidKey(key.to_string()));
    }
    Ok((key.to_ascii_uppercase(), value.to_string()))
}

/// The image properties, sorted by key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    try_from = "BTreeMap<String, String>",
    into = "BTreeMap<String, String>"
)]
pub struct Metadata {
    map: BTreeMap<String, String>,
}

impl Metadata {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Set `key` (upper-cased) to `value`, replacing any previous value.
    pub fn insert(
        &mut self,
        key: &str,
        value: impl Into<String>,
    ) -> Result<Option<String>, MetadataError> {
        if !is_valid_key(key) {
            return Err(MetadataError::InvalidKey(key.to_string()));
        }
        Ok(self.map.insert(key.to_ascii_uppercase(), value.into()))
    }

    /// Parse and insert a user's `KEY=VALUE` assignment.
    pub fn insert_assignment(&mut self, text: &str) -> Result<(), MetadataError> {
        let (key, value) = parse_assignment(text)?;
        self.map.insert(key, value);
        Ok(())
    }

    /// The value of `key` (case-insensitive).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.map.get(&key.to_ascii_uppercase()).map(String::as_str)
    }

    /// Whether `key` (case-insensitive) is set.
    pub fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Remove `key` (case-insensitive) and return its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.map.remove(&key.to_ascii_uppercase())
    }

    /// Copy every entry of `overrides` into this map; its values win. This is how `-m`
    /// values override detected ones.
    pub fn merge(&mut self, overrides: &Metadata) {
        for (k, v) in &overrides.map {
            self.map.insert(k.clone(), v.clone());
        }
    }

    /// The entries, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.map.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the map has no entries.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The underlying sorted map (keys already upper-case and valid).
    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.map
    }

    /// The properties as a JSON object, keys sorted.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Object(
            self.map
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect(),
        )
    }

    /// The original's `--print-metadata` table: a title line, then one line per key,
    /// the key padded to the longest key + 2 columns, a space, then the value (the
    /// original's `"%s %s" % (key.ljust(longest + 2), value)`).
    pub fn table(&self) -> MetadataTable<'_> {
        MetadataTable(self)
    }
}

impl TryFrom<BTreeMap<String, String>> for Metadata {
    type Error = MetadataError;

    fn try_from(value: BTreeMap<String, String>) -> Result<Self, Self::Error> {
        let mut meta = Metadata::new();
        for (k, v) in value {
            meta.insert(&k, v)?;
        }
        Ok(meta)
    }
}

impl From<Metadata> for BTreeMap<String, String> {
    fn from(value: Metadata) -> Self {
        value.map
    }
}

impl<'a> IntoIterator for &'a Metadata {
    type Item = (&'a String, &'a String);
    type IntoIter = std::collections::btree_map::Iter<'a, String, String>;

    fn into_iter(self) -> Self::IntoIter {
        self.map.iter()
    }
}

/// Display form of [`Metadata::table`].
pub struct MetadataTable<'a>(&'a Metadata);

impl fmt::Display for MetadataTable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Detected image metadata:")?;
        let width = self.0.map.keys().map(|k| k.len()).max().unwrap_or(0) + 2;
        for (k, v) in self.0.iter() {
            writeln!(f, "{k:<width$} {v}")?;
        }
        Ok(())
    }
}

/// The names of the properties the front-ends read or set themselves, so that they
/// share one spelling with the library.
pub mod keys {
    /// Free text describing the image.
    pub const DESCRIPTION: &str = "DESCRIPTION";
    /// The OS family (`linux`, `windows`, ...).
    pub const OSFAMILY: &str = "OSFAMILY";
    /// The OS (distribution).
    pub const OS: &str = "OS";
    /// Why the media cannot be prepared, when it cannot.
    pub const UNSUPPORTED: &str = "UNSUPPORTED";
    /// The number of the root partition (for a root on LVM: the partition of its PV).
    pub const ROOT_PARTITION: &str = "ROOT_PARTITION";
    /// `vg/lv` of a root on an LVM logical volume.
    pub const ROOT_LV: &str = "ROOT_LV";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_upper_cased_and_lookup_is_case_insensitive() {
        let mut m = Metadata::new();
        m.insert("os", "debian").unwrap();
        assert_eq!(m.get("OS"), Some("debian"));
        assert_eq!(m.get("Os"), Some("debian"));
        assert_eq!(m.iter().next(), Some(("OS", "debian")));
    }

    #[test]
    fn invalid_keys_are_rejected_with_the_original_text() {
        let mut m = Metadata::new();
        let err = m.insert("a-b", "x").unwrap_err();
        assert_eq!(
            err.to_string(),
            "Metadata key: `a-b' is not valid. Allowed characters for key: [a-zA-Z0-9_]."
        );
        assert!(m.insert("", "x").is_err());
        assert!(m.insert("é", "x").is_err());
        assert!(m.is_empty());
    }

    #[test]
    fn assignment_splits_on_first_equal_sign() {
        assert_eq!(
            parse_assignment("swap=2:512=x").unwrap(),
            ("SWAP".to_string(), "2:512=x".to_string())
        );
        assert_eq!(
            parse_assignment("EMPTY=").unwrap(),
            ("EMPTY".to_string(), String::new())
        );
        assert_eq!(
            parse_assignment("novalue").unwrap_err().to_string(),
            "`novalue' is not in KEY=VALUE format."
        );
        assert!(matches!(
            parse_assignment("=v"),
            Err(MetadataError::InvalidKey(_))
        ));
    }

    #[test]
    fn user_values_override_detected_ones() {
        let mut detected = Metadata::new();
        detected.insert("OS", "debian").unwrap();
        detected.insert("PARTITION_TABLE", "msdos").unwrap();
        let mut user = Metadata::new();
        user.insert_assignment("os=custom").unwrap();
        user.insert_assignment("EXTRA=1").unwrap();
        detected.merge(&user);
        let all: Vec<_> = detected.iter().collect();
        assert_eq!(
            all,
            vec![
                ("EXTRA", "1"),
                ("OS", "custom"),
                ("PARTITION_TABLE", "msdos")
            ]
        );
    }

    #[test]
    fn table_pads_keys_to_longest_plus_two() {
        let mut m = Metadata::new();
        m.insert("OS", "debian").unwrap();
        m.insert("PARTITION_TABLE", "gpt").unwrap();
        assert_eq!(
            m.table().to_string(),
            "Detected image metadata:\nOS                debian\nPARTITION_TABLE   gpt\n"
        );
    }

    #[test]
    fn json_round_trip_keeps_strings_and_order() {
        let mut m = Metadata::new();
        m.insert("b", "2").unwrap();
        m.insert("A", "ü").unwrap();
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(text, r#"{"A":"ü","B":"2"}"#);
        let back: Metadata = serde_json::from_str(&text).unwrap();
        assert_eq!(back, m);
        assert!(serde_json::from_str::<Metadata>(r#"{"a b":"x"}"#).is_err());
    }
}
