//! The bad-input suite: every kind of bad input the tool can meet (images, partition
//! tables, filesystems, arguments, environments, hostile guests, signals), each run through
//! the real binary and checked the same way by [`harness`]: the exit status, one error line
//! naming the object, the source unchanged, nothing left in `--tmpdir`, and no loop
//! device, mount or process left behind.
//!
//! One module per kind of input; cases are written for the kind, not for one fixture.

#[path = "../common/mod.rs"]
mod common;

mod harness;

mod arguments;
mod environment;
mod filesystems;
mod guests;
mod images;
mod outputs;
mod redteam;
