//! The snf-image-creator pipeline, shared by `snf-mkimage` and `snf-image-creator`.
//!
//! media → snapshot → partition table → guest filesystems → inspection/metadata →
//! system preparation → shrink → diskdump → cloud.

#![forbid(unsafe_code)]

pub mod hostrun;
pub mod inspect;
pub mod interactive;
pub mod metadata;
pub mod options;
mod private_names;
pub mod session;
pub mod shrink;
pub mod sysprep;
pub mod virtio;
pub mod volumes;

pub use snf_cloud as cloud;
pub use snf_core as core;
pub use snf_disk as disk;
pub use snf_guestfs as guestfs;

/// The version printed by `--version` and in the header line.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
