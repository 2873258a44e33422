//! Synnefo Plankton (Glance-v1-style registration with `X-Image-Meta-*` headers).

use serde_json::{Map, Value};
use snf_core::report::Reporter;

use crate::error::Result;
use crate::http::{quote, unquote, Http, Request};
use crate::registry::{ImageRegistry, Registration};
use crate::secret::Secret;

const SERVICE: &str = "Plankton";

/// The Plankton image service at `url`.
pub struct Plankton {
    http: Http,
    url: String,
    token: Secret,
}

impl std::fmt::Debug for Plankton {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plankton").field("url", &self.url).finish()
    }
}

impl Plankton {
    /// The service at endpoint `url` (kamaki's rule: `/v1.0` is appended when the URL
    /// names no version).
    pub fn new(http: Http, url: &str, token: Secret) -> Self {
        let mut url = url.trim_end_matches('/').to_owned();
        let last = url.rsplit('/').next().unwrap_or("");
        if !(last.starts_with('v') && last[1..].starts_with(|c: char| c.is_ascii_digit())) {
            url.push_str("/v1.0");
        }
        Plankton { http, url, token }
    }
}

/// kamaki's reading of the answer headers: `X-Image-Meta-Property-K` into
/// `properties` (lower case, `-` as `_`), other `X-Image-Meta-K` as `k`; values unquoted.
fn answer_to_json(headers: &ureq::http::HeaderMap) -> Value {
    let mut top = Map::new();
    let mut props = Map::new();
    for (k, v) in headers {
        let key = k.as_str().to_ascii_lowercase();
        let val = unquote(&String::from_utf8_lossy(v.as_bytes()));
        if let Some(p) = key.strip_prefix("x-image-meta-property-") {
            props.insert(p.replace('-', "_"), Value::String(val));
        } else if let Some(m) = key.strip_prefix("x-image-meta-") {
            top.insert(m.to_owned(), Value::String(val));
        }
    }
    top.insert("properties".into(), Value::Object(props));
    Value::Object(top)
}

impl ImageRegistry for Plankton {
    fn name(&self) -> &'static str {
        SERVICE
    }

    fn register(&self, reg: &Registration<'_>, _reporter: &dyn Reporter) -> Result<Value> {
        let action = format!("registering image `{}'", reg.name);
        let mut req = Request::new(
            SERVICE,
            "POST",
            format!("{}/images/", self.url),
            action.clone(),
        )
        .token(&self.token)
        .header("X-Image-Meta-Name", quote(reg.name, false))
        .header("X-Image-Meta-Location", reg.location.clone())
        .header("X-Image-Meta-Disk-Format", "diskdump")
        .header(
            "X-Image-Meta-Is-Public",
            if reg.public { "true" } else { "false" },
        );
        for (k, v) in reg.properties {
            req = req.header(format!("X-Image-Meta-Property-{k}"), quote(v, false));
        }
        let r = self.http.send(req)?.ok(SERVICE, &action)?;
        Ok(answer_to_json(&r.headers))
    }
}
