//! The image service: OpenStack Glance v2 and Synnefo Plankton.

use std::collections::BTreeMap;

use snf_core::report::Reporter;

use crate::error::Result;
use crate::store::ImageSource;

/// What to register.
#[derive(Debug, Clone)]
pub struct Registration<'a> {
    /// The image's name in the image service.
    pub name: &'a str,
    /// The uploaded object's location (`pithos://…` or the Swift URL).
    pub location: String,
    /// The image data (Glance receives it directly).
    pub image: &'a ImageSource,
    /// Image properties (the image's metadata).
    pub properties: &'a BTreeMap<String, String>,
    /// Visible to every user of the cloud.
    pub public: bool,
}

/// An image service.
pub trait ImageRegistry: Send + Sync {
    /// "Glance" or "Plankton".
    fn name(&self) -> &'static str;
    /// Whether the service keeps the image data itself (Glance: the data is sent to it
    /// and to nowhere else) rather than pointing at the uploaded object (Plankton).
    fn holds_data(&self) -> bool {
        false
    }
    /// Refuse now what the service would refuse later (bad properties, a quota the
    /// service announces), before any data is sent. Changes nothing.
    fn check(&self, _reg: &Registration<'_>) -> Result<()> {
        Ok(())
    }
    /// Ids of this project's images named `name` (only services where names are not
    /// tied to a location: Plankton updates the image registered at the same location).
    fn named(&self, _name: &str) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
    /// Delete image `id` (absent is fine).
    fn delete(&self, id: &str) -> Result<()> {
        Err(crate::error::CloudError::Unsupported(format!(
            "{} cannot delete image {id}",
            self.name()
        )))
    }
    /// Register the image; the answer is the service's description of it. No image is
    /// left registered when this fails.
    fn register(
        &self,
        reg: &Registration<'_>,
        reporter: &dyn Reporter,
    ) -> Result<serde_json::Value>;
}
