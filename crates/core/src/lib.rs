//! Shared plumbing used by every layer of snf-image-creator.
//!
//! * [`report`]: how the library tells a front-end what it is doing (messages and
//!   progress), without knowing whether that front-end is a terminal, a log file or a UI.
//! * [`cancel`]: the process-wide cancellation flag set by SIGINT/SIGTERM handlers and
//!   polled by long-running work, so that every stage can stop cleanly and let its
//!   `Drop` guards remove temporary state.
//! * [`command`]: running external programs (qemu-img, e2fsck, resize2fs ...) with
//!   typed errors that name the program and its stderr, and that honour cancellation.
//! * [`bytes`]: integer fields of on-disk structures, in either byte order.
//! * [`md5`]: the checksum of the diskdump format and of Swift's ETags.

#![forbid(unsafe_code)]

pub mod bytes;
pub mod cancel;
pub mod command;
pub mod md5;
pub mod report;

pub use cancel::Cancelled;
pub use report::{Reporter, Task, Unit};
