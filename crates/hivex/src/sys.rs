//! The libhivex C declarations this crate uses, written by hand from
//! /usr/include/hivex.h (hivex 1.3). Only what `lib.rs` calls.

use std::ffi::{c_char, c_int, c_void};

/// The opaque `hive_h`.
#[repr(C)]
pub struct HiveH {
    _private: [u8; 0],
}

/// `hive_node_h` and `hive_value_h`: offsets into the hive, 0 meaning none.
pub type Handle = usize;

pub const OPEN_WRITE: c_int = 4;

/// `hive_set_value`.
#[repr(C)]
pub struct SetValue {
    pub key: *mut c_char,
    pub t: u32,
    pub len: usize,
    pub value: *mut c_char,
}

#[link(name = "hivex")]
extern "C" {
    pub fn hivex_open(filename: *const c_char, flags: c_int) -> *mut HiveH;
    pub fn hivex_close(h: *mut HiveH) -> c_int;
    pub fn hivex_root(h: *mut HiveH) -> Handle;
    pub fn hivex_node_name(h: *mut HiveH, node: Handle) -> *mut c_char;
    pub fn hivex_node_name_len(h: *mut HiveH, node: Handle) -> usize;
    pub fn hivex_node_children(h: *mut HiveH, node: Handle) -> *mut Handle;
    pub fn hivex_node_get_child(h: *mut HiveH, node: Handle, name: *const c_char) -> Handle;
    pub fn hivex_node_nr_children(h: *mut HiveH, node: Handle) -> usize;
    pub fn hivex_node_parent(h: *mut HiveH, node: Handle) -> Handle;
    pub fn hivex_node_values(h: *mut HiveH, node: Handle) -> *mut Handle;
    pub fn hivex_node_get_value(h: *mut HiveH, node: Handle, key: *const c_char) -> Handle;
    pub fn hivex_node_nr_values(h: *mut HiveH, node: Handle) -> usize;
    pub fn hivex_value_key_len(h: *mut HiveH, val: Handle) -> usize;
    pub fn hivex_value_key(h: *mut HiveH, val: Handle) -> *mut c_char;
    pub fn hivex_value_type(h: *mut HiveH, val: Handle, t: *mut u32, len: *mut usize) -> c_int;
    pub fn hivex_value_value(
        h: *mut HiveH,
        val: Handle,
        t: *mut u32,
        len: *mut usize,
    ) -> *mut c_char;
    pub fn hivex_commit(h: *mut HiveH, filename: *const c_char, flags: c_int) -> c_int;
    pub fn hivex_node_add_child(h: *mut HiveH, parent: Handle, name: *const c_char) -> Handle;
    pub fn hivex_node_delete_child(h: *mut HiveH, node: Handle) -> c_int;
    pub fn hivex_node_set_value(
        h: *mut HiveH,
        node: Handle,
        val: *const SetValue,
        flags: c_int,
    ) -> c_int;
}

extern "C" {
    /// glibc's thread-local errno; hivex reports "not found" as 0 without touching
    /// errno, so errno is cleared before those calls.
    pub fn __errno_location() -> *mut c_int;
    pub fn free(p: *mut c_void);
}
