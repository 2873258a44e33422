//! OpenStack Swift: plain objects up to the cluster's size limit, Static Large Objects
//! above it (segments sent in parallel, each checked against its ETag, resumable).

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use serde_json::{json, Value};
use snf_core::md5::Md5;
use snf_core::report::{Reporter, Unit};

use crate::error::{CloudError, Result};
use crate::http::{quote, Body, Http, Progress, Request};
use crate::parallel;
use crate::secret::Secret;
use crate::store::{md5_hex, ImageSource, ObjectStore, UploadStats};

const SERVICE: &str = "Swift";
/// Segment size used when the cluster allows it: big enough for few requests, small
/// enough that a resumed upload loses little.
pub const DEFAULT_SEGMENT_SIZE: u64 = 128 << 20;

/// Tuning of the Swift client.
#[derive(Debug, Clone)]
pub struct SwiftOptions {
    /// Segments sent at the same time.
    pub workers: usize,
    /// Segment size (default [`DEFAULT_SEGMENT_SIZE`], never above the cluster's limit).
    pub segment_size: Option<u64>,
    /// Objects larger than this go up as SLOs (default and maximum: the cluster's
    /// `max_file_size`).
    pub slo_threshold: Option<u64>,
}

impl Default for SwiftOptions {
    fn default() -> Self {
        SwiftOptions {
            workers: 4,
            segment_size: None,
            slo_threshold: None,
        }
    }
}

/// The cluster's limits, from `GET /info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwiftLimits {
    /// Largest plain object.
    pub max_file_size: u64,
    /// Most segments in one SLO manifest.
    pub max_manifest_segments: u64,
    /// Smallest segment but the last (older Swift: 1 MiB).
    pub min_segment_size: u64,
}

impl Default for SwiftLimits {
    fn default() -> Self {
        SwiftLimits {
            max_file_size: 5 << 30,
            max_manifest_segments: 1000,
            min_segment_size: 1,
        }
    }
}

/// A Swift account.
pub struct Swift {
    http: Http,
    url: String,
    token: Secret,
    opts: SwiftOptions,
    limits: OnceLock<SwiftLimits>,
    created: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for Swift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Swift").field("url", &self.url).finish()
    }
}

#[derive(Debug, serde::Deserialize)]
struct Listed {
    name: String,
    hash: String,
    bytes: u64,
}

fn trim_etag(e: &str) -> &str {
    e.trim().trim_matches('"')
}

impl Swift {
    /// The account at storage URL `url` (`…/v1/AUTH_<project>`).
    pub fn new(http: Http, url: &str, token: Secret, opts: SwiftOptions) -> Self {
        Swift {
            http,
            url: url.trim_end_matches('/').to_owned(),
            token,
            opts,
            limits: OnceLock::new(),
            created: Mutex::new(HashSet::new()),
        }
    }

    fn obj_url(&self, c: &str, o: &str) -> String {
        format!("{}/{}/{}", self.url, quote(c, false), quote(o, true))
    }

    fn req(&self, method: &'static str, url: String, action: String) -> Request<'_> {
        Request::new(SERVICE, method, url, action).token(&self.token)
    }

    /// The cluster's limits (`/info`; Swift's defaults when it does not answer).
    pub fn limits(&self) -> SwiftLimits {
        *self.limits.get_or_init(|| {
            let info_url = match self.url.find("/v1/") {
                Some(i) => format!("{}/info", &self.url[..i]),
                None => {
                    let after_scheme = self.url.find("://").map(|i| i + 3).unwrap_or(0);
                    let host_end = self.url[after_scheme..]
                        .find('/')
                        .map(|i| i + after_scheme)
                        .unwrap_or(self.url.len());
                    format!("{}/info", &self.url[..host_end])
                }
            };
            let mut l = SwiftLimits::default();
            if let Ok(r) = self.http.send(Request::new(
                SERVICE,
                "GET",
                info_url,
                "reading the cluster's limits (/info)",
            )) {
                if let Ok(v) = serde_json::from_slice::<Value>(&r.body) {
                    if let Some(n) = v.pointer("/swift/max_file_size").and_then(Value::as_u64) {
                        l.max_file_size = n;
                    }
                    if let Some(n) = v
                        .pointer("/slo/max_manifest_segments")
                        .and_then(Value::as_u64)
                    {
                        l.max_manifest_segments = n;
                    }
                    if let Some(n) = v.pointer("/slo/min_segment_size").and_then(Value::as_u64) {
                        l.min_segment_size = n;
                    }
                }
            }
            l
        })
    }

    fn head(&self, c: &str, o: &str) -> Result<Option<crate::http::Response>> {
        let action = format!("checking object `{c}/{o}'");
        let r = self
            .http
            .send(self.req("HEAD", self.obj_url(c, o), action.clone()))?;
        match r.status {
            404 => Ok(None),
            _ => r.ok(SERVICE, &action).map(Some),
        }
    }

    /// Segments an existing SLO is made of (`/container/object` paths).
    fn old_segments(&self, c: &str, o: &str) -> Result<Vec<String>> {
        let Some(h) = self.head(c, o)? else {
            return Ok(Vec::new());
        };
        if !h
            .header("x-static-large-object")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        {
            return Ok(Vec::new());
        }
        let action = format!("reading the manifest of `{c}/{o}'");
        let r = self
            .http
            .send(self.req(
                "GET",
                format!("{}?multipart-manifest=get", self.obj_url(c, o)),
                action.clone(),
            ))?
            .ok(SERVICE, &action)?;
        let v: Vec<Value> = r.json(SERVICE, &action)?;
        Ok(v.iter()
            .filter_map(|s| s.get("name").and_then(Value::as_str).map(str::to_owned))
            .collect())
    }

    fn delete_path(&self, path: &str) -> Result<()> {
        // `path` is `/container/object` as Swift lists it (not quoted)
        let trimmed = path.trim_start_matches('/');
        let (c, o) = trimmed.split_once('/').unwrap_or((trimmed, ""));
        let action = format!("deleting `{c}/{o}'");
        let r = self
            .http
            .send(self.req("DELETE", self.obj_url(c, o), action.clone()))?;
        if r.status == 404 {
            return Ok(());
        }
        r.ok(SERVICE, &action).map(|_| ())
    }

    fn list(&self, c: &str, prefix: &str) -> Result<Vec<Listed>> {
        let mut out: Vec<Listed> = Vec::new();
        loop {
            let mut url = format!(
                "{}/{}?format=json&prefix={}",
                self.url,
                quote(c, false),
                quote(prefix, false)
            );
            if let Some(last) = out.last() {
                url.push_str(&format!("&marker={}", quote(&last.name, false)));
            }
            let action = format!("listing container `{c}'");
            let r = self.http.send(self.req("GET", url, action.clone()))?;
            if r.status == 404 {
                return Ok(out);
            }
            let r = r.ok(SERVICE, &action)?;
            let page: Vec<Listed> = if r.body.is_empty() {
                Vec::new()
            } else {
                r.json(SERVICE, &action)?
            };
            if page.is_empty() {
                return Ok(out);
            }
            out.extend(page);
        }
    }

    fn put_plain(&self, c: &str, o: &str, image: &ImageSource, progress: &Progress) -> Result<()> {
        let action = format!("uploading `{c}/{o}'");
        let r = self.http.send(
            self.req("PUT", self.obj_url(c, o), action.clone())
                .header("Content-Type", "application/octet-stream")
                // Swift checks the data against it and refuses (422) a damaged upload
                .header("ETag", image.md5.clone())
                .body(Body::File {
                    path: &image.path,
                    offset: 0,
                    len: image.size,
                })
                .progress(progress),
        )?;
        let r = r.ok(SERVICE, &action)?;
        let etag = r
            .header("etag")
            .map(trim_etag)
            .unwrap_or_default()
            .to_owned();
        if etag != image.md5 {
            return Err(CloudError::Integrity {
                what: format!("`{c}/{o}'"),
                expected: image.md5.clone(),
                actual: etag,
            });
        }
        Ok(())
    }

    fn segment_size(&self, size: u64) -> Result<u64> {
        let l = self.limits();
        let mut seg = self
            .opts
            .segment_size
            .unwrap_or(DEFAULT_SEGMENT_SIZE)
            .min(l.max_file_size)
            .max(l.min_segment_size)
            .max(1);
        let max_segs = l.max_manifest_segments.max(1);
        if size.div_ceil(seg) > max_segs {
            seg = size.div_ceil(max_segs);
        }
        if seg > l.max_file_size {
            return Err(CloudError::Unsupported(format!(
                "an image of {size} bytes does not fit in {max_segs} segments of at most {} bytes, the limits of this Swift cluster",
                l.max_file_size
            )));
        }
        Ok(seg)
    }

    fn put_slo(
        &self,
        c: &str,
        o: &str,
        image: &ImageSource,
        progress: &Progress,
        stats: &Mutex<UploadStats>,
    ) -> Result<()> {
        let seg = self.segment_size(image.size)?;
        let segc = format!("{c}_segments");
        self.ensure_container(&segc)?;
        let prefix = format!("{o}/slo/{}/{}/{seg}/", image.md5, image.size);
        let existing: BTreeMap<String, (String, u64)> = self
            .list(&segc, &prefix)?
            .into_iter()
            .map(|l| (l.name, (l.hash, l.bytes)))
            .collect();
        let count = image.size.div_ceil(seg) as usize;
        stats.lock().unwrap_or_else(|p| p.into_inner()).pieces_total = count as u64;
        let etags: Vec<Mutex<String>> = (0..count).map(|_| Mutex::new(String::new())).collect();
        parallel::run(count, self.opts.workers, |i| {
            let offset = i as u64 * seg;
            let len = seg.min(image.size - offset);
            let name = format!("{prefix}{i:08}");
            if let Some((hash, bytes)) = existing.get(&name) {
                if *bytes == len && md5_of_range(&image.path, offset, len)? == *hash {
                    progress.add(len);
                    *etags[i].lock().unwrap_or_else(|p| p.into_inner()) = hash.clone();
                    stats
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .pieces_skipped += 1;
                    return Ok(());
                }
            }
            let action = format!("uploading segment {} of {count} of `{c}/{o}'", i + 1);
            let r = self.http.send(
                self.req("PUT", self.obj_url(&segc, &name), action.clone())
                    .header("Content-Type", "application/octet-stream")
                    .body(Body::File {
                        path: &image.path,
                        offset,
                        len,
                    })
                    .progress(progress)
                    .md5(),
            )?;
            let r = r.ok(SERVICE, &action)?;
            let sent = r.sent_md5.clone().unwrap_or_default();
            let got = r
                .header("etag")
                .map(trim_etag)
                .unwrap_or_default()
                .to_owned();
            if got != sent {
                return Err(CloudError::Integrity {
                    what: format!("segment `{segc}/{name}'"),
                    expected: sent,
                    actual: got,
                });
            }
            *etags[i].lock().unwrap_or_else(|p| p.into_inner()) = sent;
            let mut s = stats.lock().unwrap_or_else(|p| p.into_inner());
            s.pieces_sent += 1;
            s.bytes_sent += len;
            Ok(())
        })?;
        let etags: Vec<String> = etags
            .into_iter()
            .map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()))
            .collect();
        let manifest: Vec<Value> = etags
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let len = seg.min(image.size - i as u64 * seg);
                json!({"path": format!("/{segc}/{prefix}{i:08}"), "etag": e, "size_bytes": len})
            })
            .collect();
        let action = format!("writing the manifest of `{c}/{o}'");
        let body = Value::Array(manifest).to_string();
        let r = self.http.send(
            self.req(
                "PUT",
                format!("{}?multipart-manifest=put", self.obj_url(c, o)),
                action.clone(),
            )
            .header("Content-Type", "application/octet-stream")
            .body(Body::Bytes(body.as_bytes())),
        )?;
        let r = r.ok(SERVICE, &action)?;
        let expected = md5_hex(etags.concat().as_bytes());
        let got = r
            .header("etag")
            .map(trim_etag)
            .unwrap_or_default()
            .to_owned();
        if got != expected {
            return Err(CloudError::Integrity {
                what: format!("manifest of `{c}/{o}'"),
                expected,
                actual: got,
            });
        }
        Ok(())
    }
}

/// MD5 of `len` bytes of `path` from `offset`.
fn md5_of_range(path: &Path, offset: u64, len: u64) -> Result<String> {
    let io = |source| CloudError::Io {
        path: path.to_path_buf(),
        source,
    };
    let f = File::open(path).map_err(io)?;
    let mut h = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    while done < len {
        snf_core::cancel::check()?;
        let want = (len - done).min(buf.len() as u64) as usize;
        f.read_exact_at(&mut buf[..want], offset + done)
            .map_err(io)?;
        h.update(&buf[..want]);
        done += want as u64;
    }
    Ok(h.finalize_hex())
}

/// Bytes left under a quota that `quota_header` announces beside `used_header`
/// (`None`: no quota, or an unreadable one, which Swift would not enforce either).
fn room(h: &crate::http::Response, quota_header: &str, used_header: &str) -> Option<u64> {
    let quota: u64 = h.header(quota_header)?.trim().parse().ok()?;
    let used: u64 = h
        .header(used_header)
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    Some(quota.saturating_sub(used))
}

impl ObjectStore for Swift {
    fn name(&self) -> &'static str {
        SERVICE
    }

    fn check_space(&self, container: &str, _object: &str, size: u64) -> Result<()> {
        let action = "reading the account's quota".to_owned();
        let r = self
            .http
            .send(self.req("HEAD", self.url.clone(), action.clone()))?
            .ok(SERVICE, &action)?;
        let quota = |what: String, available: u64| CloudError::Quota {
            service: SERVICE,
            what,
            needed: size,
            available,
        };
        if let Some(left) = room(&r, "x-account-meta-quota-bytes", "x-account-bytes-used") {
            if left < size {
                return Err(quota("the account".into(), left));
            }
        }
        // The data lands in the segments container when it goes up as an SLO.
        let threshold = self
            .opts
            .slo_threshold
            .unwrap_or(u64::MAX)
            .min(self.limits().max_file_size);
        let target = if size > threshold {
            format!("{container}_segments")
        } else {
            container.to_owned()
        };
        let action = format!("reading the quota of container `{target}'");
        let r = self.http.send(self.req(
            "HEAD",
            format!("{}/{}", self.url, quote(&target, false)),
            action.clone(),
        ))?;
        if r.status == 404 {
            return Ok(());
        }
        let r = r.ok(SERVICE, &action)?;
        if let Some(left) = room(&r, "x-container-meta-quota-bytes", "x-container-bytes-used") {
            // an object replaced in place frees its own bytes, but only once it is
            // replaced: Swift counts the old ones while the new ones arrive
            if left < size {
                return Err(quota(format!("container `{target}'"), left));
            }
        }
        Ok(())
    }

    fn ensure_container(&self, container: &str) -> Result<()> {
        if self
            .created
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(container)
        {
            return Ok(());
        }
        let url = format!("{}/{}", self.url, quote(container, false));
        let action = format!("checking container `{container}'");
        let r = self
            .http
            .send(self.req("HEAD", url.clone(), action.clone()))?;
        if r.status == 404 {
            let action = format!("creating container `{container}'");
            self.http
                .send(self.req("PUT", url, action.clone()))?
                .ok(SERVICE, &action)?;
        } else {
            r.ok(SERVICE, &action)?;
        }
        self.created
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(container.to_owned());
        Ok(())
    }

    fn exists(&self, container: &str, object: &str) -> Result<bool> {
        Ok(self.head(container, object)?.is_some())
    }

    fn put_bytes(
        &self,
        container: &str,
        object: &str,
        data: &[u8],
        content_type: &str,
    ) -> Result<()> {
        self.ensure_container(container)?;
        let md5 = md5_hex(data);
        let action = format!("uploading `{container}/{object}'");
        let r = self.http.send(
            self.req("PUT", self.obj_url(container, object), action.clone())
                .header("Content-Type", content_type)
                .header("ETag", md5.clone())
                .body(Body::Bytes(data)),
        )?;
        r.ok(SERVICE, &action)?;
        Ok(())
    }

    fn upload(
        &self,
        container: &str,
        object: &str,
        image: &ImageSource,
        reporter: &dyn Reporter,
    ) -> Result<UploadStats> {
        self.ensure_container(container)?;
        let old = self.old_segments(container, object)?;
        let threshold = self
            .opts
            .slo_threshold
            .unwrap_or(u64::MAX)
            .min(self.limits().max_file_size);
        let stats = Mutex::new(UploadStats::default());
        let progress = Progress::new(
            reporter,
            &format!("Uploading {object}"),
            image.size,
            Unit::Bytes,
        );
        if image.size <= threshold {
            self.put_plain(container, object, image, &progress)?;
            let mut s = stats.lock().unwrap_or_else(|p| p.into_inner());
            *s = UploadStats {
                bytes_sent: image.size,
                pieces_sent: 1,
                pieces_skipped: 0,
                pieces_total: 1,
                large_object: false,
            };
        } else {
            stats.lock().unwrap_or_else(|p| p.into_inner()).large_object = true;
            self.put_slo(container, object, image, &progress, &stats)?;
        }
        progress.finish("done");
        // segments of the object this one replaced are garbage now
        let keep: HashSet<String> = if stats.lock().unwrap_or_else(|p| p.into_inner()).large_object
        {
            let seg = self.segment_size(image.size)?;
            let prefix = format!(
                "/{container}_segments/{object}/slo/{}/{}/{seg}/",
                image.md5, image.size
            );
            old.iter()
                .filter(|p| p.starts_with(&prefix))
                .cloned()
                .collect()
        } else {
            HashSet::new()
        };
        for p in old.iter().filter(|p| !keep.contains(*p)) {
            if let Err(e) = self.delete_path(p) {
                reporter.warn(&format!("could not delete the old segment {p}: {e}"));
            }
        }
        Ok(stats.into_inner().unwrap_or_else(|p| p.into_inner()))
    }

    fn make_public(
        &self,
        container: &str,
        objects: &[&str],
        reporter: &dyn Reporter,
    ) -> Result<()> {
        // Swift grants read access per container, not per object.
        let url = format!("{}/{}", self.url, quote(container, false));
        let action = format!("reading the access list of container `{container}'");
        let r = self
            .http
            .send(self.req("HEAD", url.clone(), action.clone()))?
            .ok(SERVICE, &action)?;
        let current = r.header("x-container-read").unwrap_or_default().to_owned();
        if current.split(',').any(|x| x.trim() == ".r:*") {
            return Ok(());
        }
        let acl = if current.trim().is_empty() {
            ".r:*".to_owned()
        } else {
            format!("{current},.r:*")
        };
        let action = format!("making container `{container}' readable by everyone");
        self.http
            .send(
                self.req("POST", url, action.clone())
                    .header("X-Container-Read", acl),
            )?
            .ok(SERVICE, &action)?;
        reporter.warn(&format!(
            "Swift shares whole containers, not single objects: to make {} public, every object in container `{container}' is now readable by anyone who knows its name",
            objects.join(" and ")
        ));
        Ok(())
    }

    fn delete(&self, container: &str, object: &str) -> Result<()> {
        let Some(h) = self.head(container, object)? else {
            return Ok(());
        };
        let slo = h
            .header("x-static-large-object")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let mut url = self.obj_url(container, object);
        if slo {
            url.push_str("?multipart-manifest=delete");
        }
        let action = format!("deleting `{container}/{object}'");
        let r = self.http.send(self.req("DELETE", url, action.clone()))?;
        if r.status == 404 {
            return Ok(());
        }
        r.ok(SERVICE, &action).map(|_| ())
    }

    fn location(&self, container: &str, object: &str) -> String {
        self.obj_url(container, object)
    }
}
