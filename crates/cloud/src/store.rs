//! The object store: what the image and its side files are uploaded to.

use std::path::PathBuf;

use snf_core::report::Reporter;

use crate::error::Result;

/// The image data: `size` bytes at the start of the file at `path`, with their MD5.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSource {
    /// A raw dump, or the working disk (only its first `size` bytes are sent).
    pub path: PathBuf,
    /// How many bytes the image has.
    pub size: u64,
    /// MD5 of those bytes, lower-case hex (computed by the dump stage).
    pub md5: String,
}

/// What an upload did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadStats {
    /// Bytes of data sent (not counting what was already there).
    pub bytes_sent: u64,
    /// Pieces (Swift segments, Pithos blocks, or 1 for a plain object) sent.
    pub pieces_sent: u64,
    /// Pieces already on the server with the right checksum, not sent again.
    pub pieces_skipped: u64,
    /// Pieces the object is made of.
    pub pieces_total: u64,
    /// The object is a Swift Static Large Object.
    pub large_object: bool,
}

/// An object store (OpenStack Swift or Synnefo Pithos).
pub trait ObjectStore: Send + Sync {
    /// "Swift" or "Pithos".
    fn name(&self) -> &'static str;
    /// Create the container unless it exists.
    fn ensure_container(&self, container: &str) -> Result<()>;
    /// Whether the object exists.
    fn exists(&self, container: &str, object: &str) -> Result<bool>;
    /// Upload a small object from memory.
    fn put_bytes(
        &self,
        container: &str,
        object: &str,
        data: &[u8],
        content_type: &str,
    ) -> Result<()>;
    /// Upload the image: parallel, verified, resumable / deduplicated; the object
    /// appears (or is replaced) only once all of its data is there and verified.
    fn upload(
        &self,
        container: &str,
        object: &str,
        image: &ImageSource,
        reporter: &dyn Reporter,
    ) -> Result<UploadStats>;
    /// Refuse now an upload of `size` bytes as `container/object` that a quota the
    /// store announces would refuse later. Changes nothing.
    fn check_space(&self, _container: &str, _object: &str, _size: u64) -> Result<()> {
        Ok(())
    }
    /// Make these objects readable by everyone.
    fn make_public(&self, container: &str, objects: &[&str], reporter: &dyn Reporter)
        -> Result<()>;
    /// Delete the object (and a large object's segments); absent is fine.
    fn delete(&self, container: &str, object: &str) -> Result<()>;
    /// How the object is named for an image service (`pithos://…` or the Swift URL).
    fn location(&self, container: &str, object: &str) -> String;
}

/// MD5 of `data`, lower-case hex.
pub(crate) fn md5_hex(data: &[u8]) -> String {
    snf_core::md5::to_hex(&snf_core::md5::Md5::digest(data))
}
