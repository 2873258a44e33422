//! LVM2's text configuration syntax, as its metadata areas hold it: sections
//! (`name { ... }`), `key = value` pairs whose values are integers, floats, strings (with
//! `\` escapes) or flat arrays of those, and `#` comments.
//!
//! The tree keeps every item in its order, unknown keys included, so that metadata read
//! from a guest can be written back with only the fields we changed. The input is
//! hostile: its size, the nesting depth and the item count are bounded.

use std::fmt::Write as _;

/// Deepest section nesting accepted (LVM's metadata uses 4-5 levels).
const MAX_DEPTH: usize = 32;

/// Most items (pairs, sections, array elements) accepted in one text.
const MAX_ITEMS: usize = 1 << 20;

/// Largest text accepted, in bytes.
pub const MAX_TEXT: usize = 64 << 20;

/// A value on the right of `key =`.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    /// Kept as written: LVM's metadata has none we interpret.
    Float(String),
    Str(String),
    Array(Vec<Value>),
}

/// One entry of a section.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Pair(String, Value),
    Section(String, Vec<Item>),
}

/// Why a text does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct SyntaxError {
    pub line: usize,
    pub reason: String,
}

/// Parse a whole text into its top-level items.
pub fn parse(text: &[u8]) -> Result<Vec<Item>, SyntaxError> {
    if text.len() > MAX_TEXT {
        return Err(SyntaxError {
            line: 1,
            reason: format!("text of {} bytes is too large", text.len()),
        });
    }
    let mut p = Parser {
        s: text,
        pos: 0,
        line: 1,
        items: 0,
    };
    let items = p.items(0)?;
    p.skip_blank();
    if p.pos < p.s.len() {
        return Err(p.err("unexpected '}'"));
    }
    Ok(items)
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    line: usize,
    items: usize,
}

impl Parser<'_> {
    fn err(&self, reason: impl Into<String>) -> SyntaxError {
        SyntaxError {
            line: self.line,
            reason: reason.into(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn bump(&mut self) {
        if self.peek() == Some(b'\n') {
            self.line += 1;
        }
        self.pos += 1;
    }

    /// Skip whitespace, comments and NULs (the metadata area pads the text with them).
    fn skip_blank(&mut self) {
        while let Some(c) = self.peek() {
            match c {
                b'#' => {
                    while let Some(c) = self.peek() {
                        if c == b'\n' {
                            break;
                        }
                        self.bump();
                    }
                }
                c if c.is_ascii_whitespace() || c == 0 => self.bump(),
                _ => break,
            }
        }
    }

    fn count(&mut self) -> Result<(), SyntaxError> {
        self.items += 1;
        if self.items > MAX_ITEMS {
            return Err(self.err("too many items"));
        }
        Ok(())
    }

    /// Items up to the end of the text (depth 0) or a closing `}` (left unread).
    fn items(&mut self, depth: usize) -> Result<Vec<Item>, SyntaxError> {
        let mut out = Vec::new();
        loop {
            self.skip_blank();
            match self.peek() {
                None => {
                    if depth > 0 {
                        return Err(self.err("unterminated section"));
                    }
                    return Ok(out);
                }
                // A stray one at depth 0 is reported by `parse`.
                Some(b'}') => return Ok(out),
                _ => {}
            }
            self.count()?;
            let key = self.ident()?;
            self.skip_blank();
            match self.peek() {
                Some(b'=') => {
                    self.bump();
                    self.skip_blank();
                    let v = self.value(true)?;
                    out.push(Item::Pair(key, v));
                }
                Some(b'{') => {
                    if depth + 1 > MAX_DEPTH {
                        return Err(self.err("sections nested too deeply"));
                    }
                    self.bump();
                    let inner = self.items(depth + 1)?;
                    self.skip_blank();
                    if self.peek() != Some(b'}') {
                        return Err(self.err(format!("section {key:?} is not closed")));
                    }
                    self.bump();
                    out.push(Item::Section(key, inner));
                }
                _ => return Err(self.err(format!("expected '=' or '{{' after {key:?}"))),
            }
        }
    }

    fn ident(&mut self) -> Result<String, SyntaxError> {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || b"_.-+/@:".contains(&c) {
                self.bump();
            } else {
                break;
            }
        }
        if start == self.pos {
            return Err(self.err("expected a name"));
        }
        // Only ASCII bytes were accepted.
        Ok(String::from_utf8_lossy(&self.s[start..self.pos]).into_owned())
    }

    fn value(&mut self, array_ok: bool) -> Result<Value, SyntaxError> {
        match self.peek() {
            Some(b'"') => self.string().map(Value::Str),
            Some(b'[') if array_ok => {
                self.bump();
                let mut v = Vec::new();
                loop {
                    self.skip_blank();
                    if self.peek() == Some(b']') {
                        self.bump();
                        return Ok(Value::Array(v));
                    }
                    if !v.is_empty() {
                        if self.peek() != Some(b',') {
                            return Err(self.err("expected ',' or ']' in an array"));
                        }
                        self.bump();
                        self.skip_blank();
                    }
                    self.count()?;
                    v.push(self.value(false)?);
                }
            }
            Some(c) if c == b'-' || c == b'+' || c.is_ascii_digit() => self.number(),
            _ => Err(self.err("expected a value")),
        }
    }

    fn number(&mut self) -> Result<Value, SyntaxError> {
        let start = self.pos;
        if matches!(self.peek(), Some(b'-' | b'+')) {
            self.bump();
        }
        let mut float = false;
        while let Some(c) = self.peek() {
            if c.is_ascii_digit() {
                self.bump();
            } else if c == b'.' && !float {
                float = true;
                self.bump();
            } else {
                break;
            }
        }
        let text = String::from_utf8_lossy(&self.s[start..self.pos]).into_owned();
        if float {
            return Ok(Value::Float(text));
        }
        text.parse::<i64>()
            .map(Value::Int)
            .map_err(|_| self.err(format!("bad integer {text:?}")))
    }

    fn string(&mut self) -> Result<String, SyntaxError> {
        self.bump(); // the opening quote
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err(self.err("unterminated string")),
                Some(b'"') => {
                    self.bump();
                    break;
                }
                Some(b'\\') => {
                    self.bump();
                    match self.peek() {
                        None => return Err(self.err("unterminated string")),
                        Some(c) => {
                            out.push(c);
                            self.bump();
                        }
                    }
                }
                Some(c) => {
                    out.push(c);
                    self.bump();
                }
            }
        }
        String::from_utf8(out).map_err(|_| self.err("string is not UTF-8"))
    }
}

/// Write `items` as LVM does (tab-indented), so the tools read it back unchanged.
pub fn format(items: &[Item]) -> String {
    let mut out = String::new();
    format_items(&mut out, items, 0);
    out
}

fn format_items(out: &mut String, items: &[Item], depth: usize) {
    for item in items {
        for _ in 0..depth {
            out.push('\t');
        }
        match item {
            Item::Pair(k, v) => {
                let _ = write!(out, "{k} = ");
                format_value(out, v);
                out.push('\n');
            }
            Item::Section(k, inner) => {
                let _ = writeln!(out, "{k} {{");
                format_items(out, inner, depth + 1);
                for _ in 0..depth {
                    out.push('\t');
                }
                out.push_str("}\n");
            }
        }
    }
}

fn format_value(out: &mut String, v: &Value) {
    match v {
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Float(f) => out.push_str(f),
        Value::Str(s) => {
            out.push('"');
            for c in s.chars() {
                if c == '"' || c == '\\' {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('"');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, e) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                format_value(out, e);
            }
            out.push(']');
        }
    }
}

/// The value of pair `key` among `items`.
pub fn get<'a>(items: &'a [Item], key: &str) -> Option<&'a Value> {
    items.iter().find_map(|i| match i {
        Item::Pair(k, v) if k == key => Some(v),
        _ => None,
    })
}

/// The items of section `key` among `items`.
pub fn section<'a>(items: &'a [Item], key: &str) -> Option<&'a [Item]> {
    items.iter().find_map(|i| match i {
        Item::Section(k, v) if k == key => Some(v.as_slice()),
        _ => None,
    })
}

/// Set pair `key` to `value`, replacing it in place or appending it.
pub fn set(items: &mut Vec<Item>, key: &str, value: Value) {
    for i in items.iter_mut() {
        if let Item::Pair(k, v) = i {
            if k == key {
                *v = value;
                return;
            }
        }
    }
    items.push(Item::Pair(key.to_string(), value));
}

/// The integer pair `key`, if it is one.
pub fn int(items: &[Item], key: &str) -> Option<i64> {
    match get(items, key) {
        Some(Value::Int(i)) => Some(*i),
        _ => None,
    }
}

/// The string pair `key`, if it is one.
pub fn string<'a>(items: &'a [Item], key: &str) -> Option<&'a str> {
    match get(items, key) {
        Some(Value::Str(s)) => Some(s),
        _ => None,
    }
}

/// Whether the string array `key` holds `flag`.
pub fn has_flag(items: &[Item], key: &str, flag: &str) -> bool {
    matches!(get(items, key), Some(Value::Array(a)) if a.iter().any(|v| matches!(v, Value::Str(s) if s == flag)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_everything() {
        let text = b"vg0 {\nid = \"a\\\"b\\\\c\"\nseqno = 7 # comment\nx = [\"A\", 1, -2]\nf = 1.5\ne = []\ns1 {\nk = 0\n}\n}\n# tail\ncontents = \"Text\"\n\0\0";
        let items = parse(text).unwrap();
        let out = format(&items);
        let again = parse(out.as_bytes()).unwrap();
        assert_eq!(items, again);
        let vg = section(&items, "vg0").unwrap();
        assert_eq!(string(vg, "id"), Some("a\"b\\c"));
        assert_eq!(int(vg, "seqno"), Some(7));
        assert_eq!(get(vg, "f"), Some(&Value::Float("1.5".into())));
        assert_eq!(string(&items, "contents"), Some("Text"));
    }

    #[test]
    fn garbage_is_an_error() {
        for bad in [
            &b"a {"[..],
            b"a = ",
            b"a = \"x",
            b"}",
            b"a = [1 2]",
            b"a = [[1]]",
            b"= 1",
            b"a = 99999999999999999999",
            b"a b",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let deep = "a {".repeat(100) + &"}".repeat(100);
        assert!(parse(deep.as_bytes()).is_err());
    }
}
