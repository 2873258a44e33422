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
    /// Register the image; the answer is the service's description of it. No image is
    /// left registered when this fails.
    fn register(
        &self,
        reg: &Registration<'_>,
        reporter: &dyn Reporter,
    ) -> Result<serde_json::Value>;
}
