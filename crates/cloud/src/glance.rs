//! OpenStack Glance v2: create the image with its properties, send the data (direct
//! upload, or the interoperable `glance-direct` import when direct upload is refused),
//! wait until it is active and check Glance's checksum against ours.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use snf_core::report::{Reporter, Unit};

use crate::error::{CloudError, Result};
use crate::http::{quote, sleep_cancellable, Body, Http, Progress, Request};
use crate::registry::{ImageRegistry, Registration};
use crate::secret::Secret;

const SERVICE: &str = "Glance";
/// Glance's own attributes: a property with one of these names would be refused or
/// would change the image's meaning.
const RESERVED: &[&str] = &[
    "checksum",
    "container_format",
    "created_at",
    "direct_url",
    "disk_format",
    "file",
    "id",
    "locations",
    "min_disk",
    "min_ram",
    "name",
    "os_hash_algo",
    "os_hash_value",
    "os_hidden",
    "owner",
    "protected",
    "schema",
    "self",
    "size",
    "status",
    "stores",
    "tags",
    "updated_at",
    "virtual_size",
    "visibility",
];
/// Glance stores property values of at most this many characters.
const MAX_PROPERTY_LEN: usize = 255;
/// How long to wait for an image to become active after its data was sent.
const ACTIVE_TIMEOUT: Duration = Duration::from_secs(3600);

/// The Glance v2 service at `url`.
pub struct Glance {
    http: Http,
    url: String,
    token: Secret,
    /// The project the token is scoped to: "the same name" means among its images.
    owner: Option<String>,
}

impl std::fmt::Debug for Glance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Glance").field("url", &self.url).finish()
    }
}

/// Deletes the image unless disarmed: an image whose data did not make it is never left.
struct ImageGuard<'a> {
    glance: &'a Glance,
    id: String,
    armed: bool,
}

impl Drop for ImageGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            let url = format!("{}/v2/images/{}", self.glance.url, self.id);
            let action = format!("deleting the unfinished image {}", self.id);
            // best effort: the error that brought us here is the one to report
            let _ = self
                .glance
                .http
                .send(Request::new(SERVICE, "DELETE", url, action).token(&self.glance.token));
        }
    }
}

impl Glance {
    /// The service at endpoint `url` (with or without `/v2`).
    pub fn new(http: Http, url: &str, token: Secret) -> Self {
        let url = url.trim_end_matches('/');
        let url = url.strip_suffix("/v2").unwrap_or(url).to_owned();
        Glance {
            http,
            url,
            token,
            owner: None,
        }
    }

    /// Look for images of the same name among `project`'s only.
    pub fn with_owner(mut self, project: Option<String>) -> Self {
        self.owner = project;
        self
    }

    fn req(&self, method: &'static str, path: &str, action: String) -> Request<'_> {
        Request::new(SERVICE, method, format!("{}{path}", self.url), action).token(&self.token)
    }

    fn get_image(&self, id: &str) -> Result<Value> {
        let action = format!("reading image {id}");
        let r = self
            .http
            .send(self.req("GET", &format!("/v2/images/{id}"), action.clone()))?
            .ok(SERVICE, &action)?;
        r.json(SERVICE, &action)
    }

    fn validate(reg: &Registration<'_>) -> Result<()> {
        for (k, v) in reg.properties {
            if RESERVED.contains(&k.to_ascii_lowercase().as_str()) {
                return Err(CloudError::Unsupported(format!(
                    "image property `{k}' is one of Glance's own attributes; rename it"
                )));
            }
            if v.chars().count() > MAX_PROPERTY_LEN {
                return Err(CloudError::Unsupported(format!(
                    "image property `{k}' is {} characters long; Glance keeps at most {MAX_PROPERTY_LEN}",
                    v.chars().count()
                )));
            }
        }
        Ok(())
    }

    fn send_data(
        &self,
        id: &str,
        import_methods: &str,
        reg: &Registration<'_>,
        reporter: &dyn Reporter,
    ) -> Result<()> {
        let image = reg.image;
        let progress = Progress::new(
            reporter,
            &format!("Uploading image data to {SERVICE}"),
            image.size,
            Unit::Bytes,
        );
        let action = format!("uploading the data of image `{}'", reg.name);
        let r = self.http.send(
            self.req("PUT", &format!("/v2/images/{id}/file"), action.clone())
                .header("Content-Type", "application/octet-stream")
                .body(Body::File {
                    path: &image.path,
                    offset: 0,
                    len: image.size,
                })
                .progress(&progress),
        )?;
        if r.is_success() {
            progress.finish("done");
            return Ok(());
        }
        // Operators may keep direct upload for admins; the interoperable import is
        // then the way in.
        let refused = matches!(r.status, 403 | 405 | 415);
        if !(refused
            && import_methods
                .split(',')
                .any(|m| m.trim() == "glance-direct"))
        {
            return Err(r.error(SERVICE, &action));
        }
        reporter.info(&format!(
            "{SERVICE} refuses direct uploads here; using its glance-direct import"
        ));
        let progress = Progress::new(
            reporter,
            &format!("Staging image data in {SERVICE}"),
            image.size,
            Unit::Bytes,
        );
        let action = format!("staging the data of image `{}'", reg.name);
        self.http
            .send(
                self.req("PUT", &format!("/v2/images/{id}/stage"), action.clone())
                    .header("Content-Type", "application/octet-stream")
                    .body(Body::File {
                        path: &image.path,
                        offset: 0,
                        len: image.size,
                    })
                    .progress(&progress),
            )?
            .ok(SERVICE, &action)?;
        progress.finish("done");
        let action = format!("importing image `{}'", reg.name);
        self.http
            .send_json(
                self.req("POST", &format!("/v2/images/{id}/import"), action.clone())
                    .json(&json!({"method": {"name": "glance-direct"}})),
            )?
            .ok(SERVICE, &action)?;
        Ok(())
    }

    fn wait_active(&self, id: &str) -> Result<Value> {
        let start = Instant::now();
        let mut wait = Duration::from_millis(200);
        loop {
            let v = self.get_image(id)?;
            let status = v
                .get("status")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            match status.as_str() {
                "active" => return Ok(v),
                "killed" | "deleted" | "pending_delete" | "deactivated" => {
                    let detail = v
                        .get("os_glance_failed_import")
                        .and_then(Value::as_str)
                        .map(|s| format!("import failed in store(s) {s}"))
                        .unwrap_or_default();
                    return Err(CloudError::ImageFailed {
                        service: SERVICE,
                        id: id.into(),
                        status,
                        detail,
                    });
                }
                _ => {}
            }
            if start.elapsed() > ACTIVE_TIMEOUT {
                return Err(CloudError::ImageFailed {
                    service: SERVICE,
                    id: id.into(),
                    status,
                    detail: "not active after an hour".into(),
                });
            }
            sleep_cancellable(wait)?;
            wait = (wait * 2).min(Duration::from_secs(5));
        }
    }
}

/// The quota refusal Glance's `/v2/info/usage` answer predicts for one more image of
/// `size` bytes: `image_size_total` (MiB) and `image_count_total`, when they are
/// limited (a negative or absent limit is none).
fn quota_refusal(usage: &Value, size: u64, project: &str) -> Option<CloudError> {
    let entry = |k: &str| {
        let e = usage.pointer(&format!("/usage/{k}"))?;
        let limit = e.get("limit")?.as_i64()?;
        let used = e.get("usage").and_then(Value::as_i64).unwrap_or(0).max(0);
        (limit >= 0).then_some((limit as u64, used as u64))
    };
    if let Some((limit, used)) = entry("image_size_total") {
        let (limit, used) = (limit.saturating_mul(1 << 20), used.saturating_mul(1 << 20));
        if used.saturating_add(size) > limit {
            return Some(CloudError::Quota {
                service: SERVICE,
                what: format!("the images of project {project}"),
                needed: size,
                available: limit.saturating_sub(used),
            });
        }
    }
    if let Some((limit, used)) = entry("image_count_total") {
        if used >= limit {
            return Some(CloudError::Quota {
                service: SERVICE,
                what: format!("the image count of project {project} (images, not bytes)"),
                needed: 1,
                available: 0,
            });
        }
    }
    None
}

impl ImageRegistry for Glance {
    fn name(&self) -> &'static str {
        SERVICE
    }

    fn holds_data(&self) -> bool {
        true
    }

    fn check(&self, reg: &Registration<'_>) -> Result<()> {
        Self::validate(reg)?;
        // Glance announces the unified-limits quotas since Yoga; older ones answer 404.
        let action = "reading the image quotas (/v2/info/usage)".to_owned();
        let r = self
            .http
            .send(self.req("GET", "/v2/info/usage", action.clone()))?;
        if !r.is_success() {
            return Ok(());
        }
        let usage: Value = r.json(SERVICE, &action)?;
        let project = self.owner.as_deref().unwrap_or("(this project)");
        match quota_refusal(&usage, reg.image.size, project) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn named(&self, name: &str) -> Result<Vec<String>> {
        // Without a project, "the same name" would take in other projects' public
        // images, which are not this user's to replace.
        let Some(owner) = &self.owner else {
            return Ok(Vec::new());
        };
        let mut path = format!(
            "/v2/images?limit=100&name={}&owner={}",
            quote(name, false),
            quote(owner, false)
        );
        let mut ids = Vec::new();
        // Glance pages with `next`; a project with more than a few pages of images of
        // one name is not worth more requests.
        for _ in 0..10 {
            let action = format!("looking for images named `{name}'");
            let r = self
                .http
                .send(self.req("GET", &path, action.clone()))?
                .ok(SERVICE, &action)?;
            let v: Value = r.json(SERVICE, &action)?;
            for im in v
                .get("images")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let same = im.get("name").and_then(Value::as_str) == Some(name);
                if let (true, Some(id)) = (same, im.get("id").and_then(Value::as_str)) {
                    ids.push(id.to_owned());
                }
            }
            match v.get("next").and_then(Value::as_str) {
                Some(next) if next.starts_with("/v2/") => path = next.to_owned(),
                _ => break,
            }
        }
        Ok(ids)
    }

    fn delete(&self, id: &str) -> Result<()> {
        let action = format!("deleting image {id}");
        let r = self.http.send(self.req(
            "DELETE",
            &format!("/v2/images/{}", quote(id, false)),
            action.clone(),
        ))?;
        if r.status == 404 {
            return Ok(());
        }
        r.ok(SERVICE, &action).map(|_| ())
    }

    /// Creates the image record first (so that a refused `--public` or property is
    /// known before any data is sent), then sends the data to Glance.
    fn register(&self, reg: &Registration<'_>, reporter: &dyn Reporter) -> Result<Value> {
        Self::validate(reg)?;
        let mut body = json!({
            "name": reg.name,
            "disk_format": "raw",
            "container_format": "bare",
            "visibility": if reg.public { "public" } else { "private" },
        });
        for (k, v) in reg.properties {
            body[k] = json!(v);
        }
        let action = format!("creating image `{}'", reg.name);
        let r = self
            .http
            .send_json(self.req("POST", "/v2/images", action.clone()).json(&body))?;
        if r.status == 403 && reg.public {
            return Err(CloudError::PublicRefused {
                service: SERVICE,
                detail: crate::http::server_message(&r.body),
            });
        }
        let r = r.ok(SERVICE, &action)?;
        let created: Value = r.json(SERVICE, &action)?;
        let id = created
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| CloudError::Protocol {
                service: SERVICE,
                action: action.clone(),
                detail: "no image id in the answer".into(),
            })?;
        let mut guard = ImageGuard {
            glance: self,
            id: id.to_owned(),
            armed: true,
        };
        reporter.detail(&format!("{SERVICE} image {id} created"));
        let methods = r
            .header("openstack-image-import-methods")
            .unwrap_or_default()
            .to_owned();
        self.send_data(id, &methods, reg, reporter)?;
        let v = self.wait_active(id)?;
        let checksum = v
            .get("checksum")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if checksum != reg.image.md5 {
            return Err(CloudError::Integrity {
                what: format!("image `{}' ({id})", reg.name),
                expected: reg.image.md5.clone(),
                actual: checksum.into(),
            });
        }
        let size = v.get("size").and_then(Value::as_u64);
        if size != Some(reg.image.size) {
            return Err(CloudError::Integrity {
                what: format!("size of image `{}' ({id})", reg.name),
                expected: reg.image.size.to_string(),
                actual: size.map_or("none".into(), |s| s.to_string()),
            });
        }
        guard.armed = false;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_refusals_from_the_usage_answer() {
        let usage = json!({"usage": {
            "image_size_total": {"limit": 10, "usage": 4},
            "image_count_total": {"limit": 5, "usage": 1},
        }});
        assert!(quota_refusal(&usage, 6 << 20, "p").is_none());
        let e = quota_refusal(&usage, (6 << 20) + 1, "p")
            .unwrap()
            .to_string();
        assert!(
            e.contains("6291456 available") && e.contains("project p"),
            "{e}"
        );
        let full = json!({"usage": {"image_count_total": {"limit": 1, "usage": 1}}});
        assert!(quota_refusal(&full, 1, "p").is_some());
        let unlimited = json!({"usage": {"image_size_total": {"limit": -1, "usage": 9}}});
        assert!(quota_refusal(&unlimited, u64::MAX, "p").is_none());
        assert!(quota_refusal(&json!({"usage": {}}), u64::MAX, "p").is_none());
    }
}
