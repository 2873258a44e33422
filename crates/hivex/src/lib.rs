//! A safe binding to libhivex: Windows registry hive files read and written in-process.
//!
//! A [`Hive`] owns one open hive file; [`Node`] and [`Value`] are handles into it (hive
//! offsets, checked by libhivex on every call, so a stale or foreign handle gives an
//! error, never undefined behaviour). A hive comes from a guest image and is hostile:
//! libhivex validates the cells it follows, and this wrapper bounds what it copies out
//! (children and values per key, value sizes, path depth) and turns every failure into
//! a one-line [`Error`] naming the hive and the object. All of the crate's unsafe code is
//! here and in [`sys`].

mod sys;

use std::ffi::{c_char, CStr, CString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

/// Most subkeys or values one key may list: far above any real key (the largest in a
/// Windows SOFTWARE hive hold a few tens of thousands), low enough to bound memory.
pub const MAX_ENTRIES: usize = 1 << 20;
/// Most bytes one value may hold when copied out (real values are rarely above 1 MiB).
pub const MAX_VALUE_LEN: usize = 64 << 20;
/// Most key names a path lookup follows.
pub const MAX_DEPTH: usize = 512;

/// A failed hive operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("registry hive {}: cannot open: {source}", .path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("registry hive {}: {op} {what}: {source}", .path.display())]
    Call {
        path: PathBuf,
        op: &'static str,
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("registry hive {}: {what} has {count} {kind}, more than the {limit} allowed", .path.display())]
    TooMany {
        path: PathBuf,
        what: String,
        kind: &'static str,
        count: usize,
        limit: usize,
    },
    #[error("registry hive {}: value {what} has the wrong type: {found}, expected {expected}", .path.display())]
    Type {
        path: PathBuf,
        what: String,
        found: ValueType,
        expected: &'static str,
    },
    #[error("registry hive {}: value {what} is malformed: {why}", .path.display())]
    Malformed {
        path: PathBuf,
        what: String,
        why: String,
    },
    #[error("registry hive {}: name {name:?} contains a NUL character", .path.display())]
    Nul { path: PathBuf, name: String },
    #[error("registry hive {}: opened read-only, cannot {op}", .path.display())]
    ReadOnly { path: PathBuf, op: &'static str },
}

/// Result of hive operations.
pub type Result<T> = std::result::Result<T, Error>;

/// A key (node) of a hive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Node(sys::Handle);

/// A value of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Value(sys::Handle);

/// The registry value types (`REG_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    None,
    Sz,
    ExpandSz,
    Binary,
    Dword,
    DwordBigEndian,
    Link,
    MultiSz,
    ResourceList,
    FullResourceDescriptor,
    ResourceRequirementsList,
    Qword,
    /// Any other number: SAM keeps data (the RID) in the type of a value.
    Other(u32),
}

impl ValueType {
    /// The type of number `t`.
    pub fn from_raw(t: u32) -> ValueType {
        match t {
            0 => ValueType::None,
            1 => ValueType::Sz,
            2 => ValueType::ExpandSz,
            3 => ValueType::Binary,
            4 => ValueType::Dword,
            5 => ValueType::DwordBigEndian,
            6 => ValueType::Link,
            7 => ValueType::MultiSz,
            8 => ValueType::ResourceList,
            9 => ValueType::FullResourceDescriptor,
            10 => ValueType::ResourceRequirementsList,
            11 => ValueType::Qword,
            n => ValueType::Other(n),
        }
    }

    /// The type's number as stored in the hive.
    pub fn raw(self) -> u32 {
        match self {
            ValueType::None => 0,
            ValueType::Sz => 1,
            ValueType::ExpandSz => 2,
            ValueType::Binary => 3,
            ValueType::Dword => 4,
            ValueType::DwordBigEndian => 5,
            ValueType::Link => 6,
            ValueType::MultiSz => 7,
            ValueType::ResourceList => 8,
            ValueType::FullResourceDescriptor => 9,
            ValueType::ResourceRequirementsList => 10,
            ValueType::Qword => 11,
            ValueType::Other(n) => n,
        }
    }
}

impl std::fmt::Display for ValueType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ValueType::None => f.write_str("REG_NONE"),
            ValueType::Sz => f.write_str("REG_SZ"),
            ValueType::ExpandSz => f.write_str("REG_EXPAND_SZ"),
            ValueType::Binary => f.write_str("REG_BINARY"),
            ValueType::Dword => f.write_str("REG_DWORD"),
            ValueType::DwordBigEndian => f.write_str("REG_DWORD_BIG_ENDIAN"),
            ValueType::Link => f.write_str("REG_LINK"),
            ValueType::MultiSz => f.write_str("REG_MULTI_SZ"),
            ValueType::ResourceList => f.write_str("REG_RESOURCE_LIST"),
            ValueType::FullResourceDescriptor => f.write_str("REG_FULL_RESOURCE_DESCRIPTOR"),
            ValueType::ResourceRequirementsList => f.write_str("REG_RESOURCE_REQUIREMENTS_LIST"),
            ValueType::Qword => f.write_str("REG_QWORD"),
            ValueType::Other(n) => write!(f, "type {n:#x}"),
        }
    }
}

/// Data to store in a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegValue {
    /// `REG_SZ`, stored as NUL-terminated UTF-16LE.
    Sz(String),
    /// `REG_EXPAND_SZ`, stored as NUL-terminated UTF-16LE.
    ExpandSz(String),
    /// `REG_DWORD`, little-endian.
    Dword(u32),
    /// `REG_QWORD`, little-endian.
    Qword(u64),
    /// `REG_BINARY`.
    Binary(Vec<u8>),
    /// `REG_MULTI_SZ`: each string NUL-terminated, then an empty one.
    MultiSz(Vec<String>),
    /// Any type number with its bytes as they are.
    Raw(u32, Vec<u8>),
}

impl RegValue {
    /// The type number and bytes stored in the hive for this value.
    pub fn encode(&self) -> (u32, Vec<u8>) {
        fn utf16z(s: &str, out: &mut Vec<u8>) {
            for u in s.encode_utf16().chain([0]) {
                out.extend_from_slice(&u.to_le_bytes());
            }
        }
        match self {
            RegValue::Sz(s) | RegValue::ExpandSz(s) => {
                let mut b = Vec::new();
                utf16z(s, &mut b);
                let t = if matches!(self, RegValue::Sz(_)) {
                    1
                } else {
                    2
                };
                (t, b)
            }
            RegValue::Dword(v) => (4, v.to_le_bytes().to_vec()),
            RegValue::Qword(v) => (11, v.to_le_bytes().to_vec()),
            RegValue::Binary(b) => (3, b.clone()),
            RegValue::MultiSz(list) => {
                let mut b = Vec::new();
                for s in list {
                    utf16z(s, &mut b);
                }
                b.extend_from_slice(&[0, 0]);
                (7, b)
            }
            RegValue::Raw(t, b) => (*t, b.clone()),
        }
    }
}

/// Decode UTF-16LE up to the first NUL (registry strings are often stored with one, and
/// sometimes with garbage after it). An odd trailing byte is ignored.
pub fn decode_utf16le(bytes: &[u8]) -> std::result::Result<String, String> {
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0)
        .collect();
    String::from_utf16(&units).map_err(|_| "invalid UTF-16".to_string())
}

fn errno() -> io::Error {
    io::Error::last_os_error()
}

fn clear_errno() {
    // SAFETY: __errno_location returns the calling thread's errno slot, always valid.
    unsafe { *sys::__errno_location() = 0 };
}

/// Copy a malloc'd C string from libhivex and free it.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string allocated by malloc and owned by the caller.
unsafe fn take_string(p: *mut c_char) -> Option<String> {
    if p.is_null() {
        return None;
    }
    // SAFETY: by the function's contract `p` is a valid NUL-terminated string.
    let s = unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
    // SAFETY: the caller owns `p`, allocated by malloc; it is not used after this.
    unsafe { sys::free(p.cast()) };
    Some(s)
}

/// Copy a malloc'd, 0-terminated handle array from libhivex (at most `limit` entries,
/// which the caller checked against the count libhivex reported) and free it.
///
/// # Safety
/// `p` is NULL or a 0-terminated array of handles allocated by malloc and owned by the
/// caller, holding at most `limit` non-zero entries.
unsafe fn take_handles(p: *mut sys::Handle, limit: usize) -> Option<Vec<sys::Handle>> {
    let p = NonNull::new(p)?;
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        // SAFETY: the array is 0-terminated and holds at most `limit` entries before
        // the terminator, so index `i <= limit` is within it.
        let h = unsafe { *p.as_ptr().add(i) };
        if h == 0 || i >= limit {
            break;
        }
        out.push(h);
        i += 1;
    }
    // SAFETY: the caller owns the malloc'd array; it is not used after this.
    unsafe { sys::free(p.as_ptr().cast()) };
    Some(out)
}

/// One open hive file.
pub struct Hive {
    h: NonNull<sys::HiveH>,
    path: PathBuf,
    /// The name errors give the hive (the file's path unless [`Hive::set_shown_name`]).
    shown: PathBuf,
    writable: bool,
}

// SAFETY: a hive handle may move between threads; calls never overlap because every
// method takes `&self` on a type that is not `Sync`, or `&mut self`.
unsafe impl Send for Hive {}

impl std::fmt::Debug for Hive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hive")
            .field("path", &self.path)
            .field("writable", &self.writable)
            .finish()
    }
}

impl Drop for Hive {
    fn drop(&mut self) {
        // SAFETY: `h` is the live handle from hivex_open, closed exactly once here.
        unsafe { sys::hivex_close(self.h.as_ptr()) };
    }
}

impl Hive {
    /// Open `path` read-only.
    pub fn open(path: &Path) -> Result<Hive> {
        Self::open_flags(path, false)
    }

    /// Open `path` for reading and writing; changes reach the file on [`Hive::commit`].
    pub fn open_writable(path: &Path) -> Result<Hive> {
        Self::open_flags(path, true)
    }

    fn open_flags(path: &Path, writable: bool) -> Result<Hive> {
        let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| Error::Nul {
            path: path.to_path_buf(),
            name: path.display().to_string(),
        })?;
        let flags = if writable { sys::OPEN_WRITE } else { 0 };
        // SAFETY: `c` is a NUL-terminated path; hivex_open returns a new handle or NULL.
        let h = unsafe { sys::hivex_open(c.as_ptr(), flags) };
        let h = NonNull::new(h).ok_or_else(|| Error::Open {
            path: path.to_path_buf(),
            source: errno(),
        })?;
        Ok(Hive {
            h,
            path: path.to_path_buf(),
            shown: path.to_path_buf(),
            writable,
        })
    }

    /// Name the hive `name` in errors (a working copy named by what it is a copy of).
    pub fn set_shown_name(&mut self, name: impl Into<PathBuf>) {
        self.shown = name.into();
    }

    /// The file the hive was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn call_err(&self, op: &'static str, what: impl Into<String>) -> Error {
        Error::Call {
            path: self.shown.clone(),
            op,
            what: what.into(),
            source: errno(),
        }
    }

    fn cname(&self, name: &str) -> Result<CString> {
        CString::new(name).map_err(|_| Error::Nul {
            path: self.shown.clone(),
            name: name.to_string(),
        })
    }

    fn hp(&self) -> *mut sys::HiveH {
        self.h.as_ptr()
    }

    /// The root key.
    pub fn root(&self) -> Result<Node> {
        clear_errno();
        // SAFETY: live handle.
        let n = unsafe { sys::hivex_root(self.hp()) };
        if n == 0 {
            return Err(self.call_err("root", "key"));
        }
        Ok(Node(n))
    }

    /// The name of `node` (the root's is whatever the hive's creator chose).
    pub fn node_name(&self, node: Node) -> Result<String> {
        self.name_of(
            "key",
            node.0,
            sys::hivex_node_name_len,
            sys::hivex_node_name,
        )
    }

    /// The parent of `node` (an error for the root).
    pub fn parent(&self, node: Node) -> Result<Node> {
        clear_errno();
        // SAFETY: live handle; the node offset is validated by hivex.
        let p = unsafe { sys::hivex_node_parent(self.hp(), node.0) };
        if p == 0 {
            return Err(self.call_err("parent of", format!("key {:#x}", node.0)));
        }
        Ok(Node(p))
    }

    /// The subkey of `node` named `name`, compared without regard to case as Windows does.
    pub fn child(&self, node: Node, name: &str) -> Result<Option<Node>> {
        Ok(self
            .lookup(node, name, "subkey", sys::hivex_node_get_child)?
            .map(Node))
    }

    /// A subkey or value of `node` by name through hivex's call for it (`get`, a hivex
    /// function taking the handle, a key offset hivex validates and a NUL-terminated
    /// name): 0 with errno clear means there is none.
    fn lookup(
        &self,
        node: Node,
        name: &str,
        op: &'static str,
        get: unsafe extern "C" fn(*mut sys::HiveH, sys::Handle, *const c_char) -> sys::Handle,
    ) -> Result<Option<sys::Handle>> {
        let c = self.cname(name)?;
        clear_errno();
        // SAFETY: live handle, NUL-terminated name that outlives the call.
        let h = unsafe { get(self.hp(), node.0, c.as_ptr()) };
        if h != 0 {
            return Ok(Some(h));
        }
        match errno().raw_os_error() {
            None | Some(0) => Ok(None),
            Some(_) => Err(self.call_err(op, name)),
        }
    }

    /// The key at `path` below `from` (names separated by `\`, case-insensitive); `None`
    /// when some component is missing.
    pub fn find(&self, from: Node, path: &str) -> Result<Option<Node>> {
        let mut node = from;
        for part in self.components(path)? {
            match self.child(node, part)? {
                Some(n) => node = n,
                None => return Ok(None),
            }
        }
        Ok(Some(node))
    }

    /// The components of a `\`-separated key path, at most [`MAX_DEPTH`] of them.
    fn components<'p>(&self, path: &'p str) -> Result<Vec<&'p str>> {
        let parts: Vec<&str> = path.split('\\').filter(|p| !p.is_empty()).collect();
        if parts.len() > MAX_DEPTH {
            return Err(Error::TooMany {
                path: self.shown.clone(),
                what: format!("path {path:?}"),
                kind: "components",
                count: parts.len(),
                limit: MAX_DEPTH,
            });
        }
        Ok(parts)
    }

    /// The key at `path` from the root (see [`Hive::find`]).
    pub fn find_path(&self, path: &str) -> Result<Option<Node>> {
        self.find(self.root()?, path)
    }

    /// The subkeys of `node`.
    pub fn children(&self, node: Node) -> Result<Vec<Node>> {
        let list = self.handles_of(
            node,
            ("subkeys", "subkeys of"),
            sys::hivex_node_nr_children,
            sys::hivex_node_children,
        )?;
        Ok(list.into_iter().map(Node).collect())
    }

    /// A key's subkeys or values through hivex's pair of calls for them (`count`
    /// and `list`, hivex functions taking the handle and a key offset hivex
    /// validates; `list` returns a malloc'd 0-terminated array): the count first,
    /// so that a corrupt hive cannot make us hold millions of entries.
    fn handles_of(
        &self,
        node: Node,
        (kind, op): (&'static str, &'static str),
        count: unsafe extern "C" fn(*mut sys::HiveH, sys::Handle) -> usize,
        list: unsafe extern "C" fn(*mut sys::HiveH, sys::Handle) -> *mut sys::Handle,
    ) -> Result<Vec<sys::Handle>> {
        clear_errno();
        // SAFETY: live handle; the node offset is validated by hivex.
        let n = unsafe { count(self.hp(), node.0) };
        self.check_count(node, n, kind)?;
        clear_errno();
        // SAFETY: live handle; the result is a malloc'd 0-terminated array we own.
        let p = unsafe { list(self.hp(), node.0) };
        // SAFETY: NULL or the array just returned, holding `n` entries.
        unsafe { take_handles(p, n) }.ok_or_else(|| self.call_err(op, format!("key {:#x}", node.0)))
    }

    fn check_count(&self, node: Node, count: usize, kind: &'static str) -> Result<()> {
        if count > MAX_ENTRIES {
            return Err(Error::TooMany {
                path: self.shown.clone(),
                what: self
                    .node_name(node)
                    .unwrap_or_else(|_| format!("key {:#x}", node.0)),
                kind,
                count,
                limit: MAX_ENTRIES,
            });
        }
        Ok(())
    }

    /// The values of `node`.
    pub fn values(&self, node: Node) -> Result<Vec<Value>> {
        let list = self.handles_of(
            node,
            ("values", "values of"),
            sys::hivex_node_nr_values,
            sys::hivex_node_values,
        )?;
        Ok(list.into_iter().map(Value).collect())
    }

    /// The value of `node` named `name` (case-insensitive; `""` is the default value).
    pub fn value(&self, node: Node, name: &str) -> Result<Option<Value>> {
        Ok(self
            .lookup(node, name, "value", sys::hivex_node_get_value)?
            .map(Value))
    }

    /// The name of `value` (empty for the default value).
    pub fn value_name(&self, value: Value) -> Result<String> {
        self.name_of(
            "value",
            value.0,
            sys::hivex_value_key_len,
            sys::hivex_value_key,
        )
    }

    /// A key's or value's name through hivex's pair of calls for it (`len` and
    /// `name`, both hivex functions taking the handle and an offset hivex
    /// validates): the length first, so that a corrupt length field is refused
    /// before hivex allocates it.
    fn name_of(
        &self,
        kind: &str,
        handle: sys::Handle,
        len: unsafe extern "C" fn(*mut sys::HiveH, sys::Handle) -> usize,
        name: unsafe extern "C" fn(*mut sys::HiveH, sys::Handle) -> *mut c_char,
    ) -> Result<String> {
        let err = || self.call_err("name of", format!("{kind} {handle:#x}"));
        // SAFETY: live handle; the offset is validated by hivex.
        if unsafe { len(self.hp(), handle) } > u16::MAX as usize * 4 {
            return Err(err());
        }
        clear_errno();
        // SAFETY: live handle; the returned string is malloc'd and ours.
        let p = unsafe { name(self.hp(), handle) };
        // SAFETY: NULL or a malloc'd NUL-terminated string we own.
        unsafe { take_string(p) }.ok_or_else(err)
    }

    fn value_label(&self, value: Value) -> String {
        match self.value_name(value) {
            Ok(n) if n.is_empty() => "(default)".to_string(),
            Ok(n) => format!("{n:?}"),
            Err(_) => format!("{:#x}", value.0),
        }
    }

    /// The type and length in bytes of `value`.
    pub fn value_type(&self, value: Value) -> Result<(ValueType, usize)> {
        let mut t = 0u32;
        let mut len = 0usize;
        clear_errno();
        // SAFETY: live handle, valid out-pointers.
        let rc = unsafe { sys::hivex_value_type(self.hp(), value.0, &mut t, &mut len) };
        if rc != 0 {
            return Err(self.call_err("type of", self.value_label(value)));
        }
        Ok((ValueType::from_raw(t), len))
    }

    /// The type and bytes of `value` (at most [`MAX_VALUE_LEN`] bytes).
    pub fn value_data(&self, value: Value) -> Result<(ValueType, Vec<u8>)> {
        let (_, len) = self.value_type(value)?;
        if len > MAX_VALUE_LEN {
            return Err(Error::TooMany {
                path: self.shown.clone(),
                what: format!("value {}", self.value_label(value)),
                kind: "bytes",
                count: len,
                limit: MAX_VALUE_LEN,
            });
        }
        let mut t = 0u32;
        let mut len = 0usize;
        clear_errno();
        // SAFETY: live handle, valid out-pointers; the result is malloc'd and ours.
        let p = unsafe { sys::hivex_value_value(self.hp(), value.0, &mut t, &mut len) };
        if p.is_null() {
            return Err(self.call_err("data of", self.value_label(value)));
        }
        if len > MAX_VALUE_LEN {
            // SAFETY: `p` is the malloc'd buffer just returned, not used after this.
            unsafe { sys::free(p.cast()) };
            return Err(Error::TooMany {
                path: self.shown.clone(),
                what: format!("value {}", self.value_label(value)),
                kind: "bytes",
                count: len,
                limit: MAX_VALUE_LEN,
            });
        }
        // SAFETY: libhivex returned a buffer of `len` bytes at `p`.
        let data = unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len) }.to_vec();
        // SAFETY: `p` is the malloc'd buffer just copied, not used after this.
        unsafe { sys::free(p.cast()) };
        Ok((ValueType::from_raw(t), data))
    }

    fn wrong_type(&self, value: Value, found: ValueType, expected: &'static str) -> Error {
        Error::Type {
            path: self.shown.clone(),
            what: self.value_label(value),
            found,
            expected,
        }
    }

    fn malformed(&self, value: Value, why: impl Into<String>) -> Error {
        Error::Malformed {
            path: self.shown.clone(),
            what: self.value_label(value),
            why: why.into(),
        }
    }

    /// A `REG_SZ`/`REG_EXPAND_SZ` (or `REG_LINK`) value as text, up to its first NUL.
    pub fn value_string(&self, value: Value) -> Result<String> {
        let (t, data) = self.value_data(value)?;
        if !matches!(t, ValueType::Sz | ValueType::ExpandSz | ValueType::Link) {
            return Err(self.wrong_type(value, t, "a string"));
        }
        decode_utf16le(&data).map_err(|why| self.malformed(value, why))
    }

    /// A `REG_MULTI_SZ` value's strings.
    pub fn value_multi_sz(&self, value: Value) -> Result<Vec<String>> {
        let (t, data) = self.value_data(value)?;
        if t != ValueType::MultiSz {
            return Err(self.wrong_type(value, t, "REG_MULTI_SZ"));
        }
        let units: Vec<u16> = data
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        let mut out = Vec::new();
        for s in units.split(|&u| u == 0) {
            if s.is_empty() {
                break;
            }
            out.push(String::from_utf16(s).map_err(|_| self.malformed(value, "invalid UTF-16"))?);
        }
        Ok(out)
    }

    /// A `REG_DWORD` (or `REG_DWORD_BIG_ENDIAN`) value.
    pub fn value_dword(&self, value: Value) -> Result<u32> {
        let (t, data) = self.value_data(value)?;
        let bytes: [u8; 4] = data
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| self.malformed(value, format!("{} bytes for a DWORD", data.len())))?;
        match t {
            ValueType::Dword => Ok(u32::from_le_bytes(bytes)),
            ValueType::DwordBigEndian => Ok(u32::from_be_bytes(bytes)),
            _ => Err(self.wrong_type(value, t, "REG_DWORD")),
        }
    }

    /// A `REG_QWORD` value.
    pub fn value_qword(&self, value: Value) -> Result<u64> {
        let (t, data) = self.value_data(value)?;
        if t != ValueType::Qword {
            return Err(self.wrong_type(value, t, "REG_QWORD"));
        }
        let bytes: [u8; 8] = data
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| self.malformed(value, format!("{} bytes for a QWORD", data.len())))?;
        Ok(u64::from_le_bytes(bytes))
    }

    /// A value's bytes whatever its type (`REG_BINARY` and the SAM's typed blobs).
    pub fn value_binary(&self, value: Value) -> Result<Vec<u8>> {
        Ok(self.value_data(value)?.1)
    }

    fn check_writable(&self, op: &'static str) -> Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(Error::ReadOnly {
                path: self.shown.clone(),
                op,
            })
        }
    }

    /// Set (add or replace) the value `name` of `node`. Value handles of `node` taken
    /// before become invalid.
    pub fn set_value(&mut self, node: Node, name: &str, value: &RegValue) -> Result<()> {
        self.check_writable("set a value")?;
        let key = self.cname(name)?;
        let (t, mut data) = value.encode();
        let sv = sys::SetValue {
            key: key.as_ptr().cast_mut(),
            t,
            len: data.len(),
            value: data.as_mut_ptr().cast(),
        };
        clear_errno();
        // SAFETY: live handle; `sv` points at `key` and `data`, alive for the call;
        // hivex copies both and writes neither.
        let rc = unsafe { sys::hivex_node_set_value(self.hp(), node.0, &sv, 0) };
        if rc != 0 {
            return Err(self.call_err("set value", name));
        }
        Ok(())
    }

    /// Add the subkey `name` to `node` (which must not have one of that name).
    pub fn add_child(&mut self, node: Node, name: &str) -> Result<Node> {
        self.check_writable("add a key")?;
        let c = self.cname(name)?;
        clear_errno();
        // SAFETY: live handle, NUL-terminated name.
        let n = unsafe { sys::hivex_node_add_child(self.hp(), node.0, c.as_ptr()) };
        if n == 0 {
            return Err(self.call_err("add subkey", name));
        }
        Ok(Node(n))
    }

    /// The subkey `name` of `node`, added when missing.
    pub fn ensure_child(&mut self, node: Node, name: &str) -> Result<Node> {
        match self.child(node, name)? {
            Some(n) => Ok(n),
            None => self.add_child(node, name),
        }
    }

    /// The key at `path` (`\`-separated) below the root, each missing key added.
    pub fn ensure_path(&mut self, path: &str) -> Result<Node> {
        let mut node = self.root()?;
        for part in self.components(path)? {
            node = self.ensure_child(node, part)?;
        }
        Ok(node)
    }

    /// Delete `node` and everything below it.
    pub fn delete_child(&mut self, node: Node) -> Result<()> {
        self.check_writable("delete a key")?;
        clear_errno();
        // SAFETY: live handle; the node offset is validated by hivex.
        let rc = unsafe { sys::hivex_node_delete_child(self.hp(), node.0) };
        if rc != 0 {
            return Err(self.call_err("delete", format!("key {:#x}", node.0)));
        }
        Ok(())
    }

    /// Write the changes back to the file the hive was opened from.
    pub fn commit(&mut self) -> Result<()> {
        self.check_writable("commit")?;
        clear_errno();
        // SAFETY: live handle; NULL means "the file it was opened from".
        let rc = unsafe { sys::hivex_commit(self.hp(), std::ptr::null(), 0) };
        if rc != 0 {
            return Err(self.call_err("commit", "changes"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf16_stops_at_the_first_nul() {
        let mut b: Vec<u8> = "Windows 10 Pro"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        b.extend_from_slice(&[0, 0, b'x', 0, 7]);
        assert_eq!(decode_utf16le(&b).unwrap(), "Windows 10 Pro");
        assert!(decode_utf16le(&[0x00, 0xd8, 0x41, 0x00]).is_err());
    }

    #[test]
    fn encoded_values_carry_their_type_numbers() {
        assert_eq!(RegValue::Dword(1).encode(), (4, vec![1, 0, 0, 0]));
        assert_eq!(RegValue::Sz("A".into()).encode(), (1, vec![b'A', 0, 0, 0]));
        assert_eq!(
            RegValue::MultiSz(vec!["a".into()]).encode(),
            (7, vec![b'a', 0, 0, 0, 0, 0])
        );
        assert_eq!(ValueType::from_raw(0x1f4), ValueType::Other(0x1f4));
        assert_eq!(ValueType::Qword.raw(), 11);
    }
}
