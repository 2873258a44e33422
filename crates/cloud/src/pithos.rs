//! Synnefo Pithos+: the deduplicating hashmap upload of the reference (kamaki's
//! `upload_object`), with the missing blocks sent in parallel.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Mutex;

use serde_json::json;
use sha2::Digest;
use snf_core::report::{Reporter, Unit};

use crate::error::{CloudError, Result};
use crate::http::{quote, Body, Http, Progress, Request};
use crate::parallel;
use crate::secret::Secret;
use crate::store::{ImageSource, ObjectStore, UploadStats};

const SERVICE: &str = "Pithos";
/// kamaki gives up after this many rounds that stored no new block.
const MAX_ROUNDS_WITHOUT_PROGRESS: u32 = 7;

/// A container's block parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockInfo {
    /// `X-Container-Block-Size`.
    pub size: u64,
    /// `X-Container-Block-Hash` (sha256 on every deployment).
    pub hash: String,
}

/// Hash of one block as Pithos computes it: trailing NUL bytes are not hashed.
pub fn block_hash(algorithm: &str, block: &[u8]) -> Result<String> {
    let end = block.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
    let data = &block[..end];
    Ok(match algorithm.to_ascii_lowercase().as_str() {
        "sha256" => hex::encode(sha2::Sha256::digest(data)),
        "sha512" => hex::encode(sha2::Sha512::digest(data)),
        "sha384" => hex::encode(sha2::Sha384::digest(data)),
        "sha224" => hex::encode(sha2::Sha224::digest(data)),
        other => {
            return Err(CloudError::Unsupported(format!(
                "Pithos block hash `{other}' is not supported (sha224/256/384/512 are)"
            )))
        }
    })
}

/// Where the bytes of an upload come from.
#[derive(Clone, Copy)]
enum Data<'a> {
    File(&'a Path, u64),
    Mem(&'a [u8]),
}

impl Data<'_> {
    fn size(&self) -> u64 {
        match self {
            Data::File(_, s) => *s,
            Data::Mem(m) => m.len() as u64,
        }
    }

    fn body(&self, offset: u64, len: u64) -> Body<'_> {
        match *self {
            Data::File(path, _) => Body::File { path, offset, len },
            Data::Mem(m) => Body::Bytes(&m[offset as usize..(offset + len) as usize]),
        }
    }
}

/// A Pithos account (`<pithos URL>/<user uuid>`).
pub struct Pithos {
    http: Http,
    base: String,
    uuid: String,
    token: Secret,
    workers: usize,
    blocks: Mutex<HashMap<String, BlockInfo>>,
    /// Astakos' account API (`…/account/v1.0`), where the quotas are read.
    quotas_url: Option<String>,
}

impl std::fmt::Debug for Pithos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pithos")
            .field("base", &self.base)
            .field("uuid", &self.uuid)
            .finish()
    }
}

impl Pithos {
    /// The account of user `uuid` at the Pithos endpoint `url` (kamaki's rule: `/v1`
    /// is appended when the URL names no version).
    pub fn new(http: Http, url: &str, uuid: &str, token: Secret, workers: usize) -> Self {
        let mut base = url.trim_end_matches('/').to_owned();
        let last = base.rsplit('/').next().unwrap_or("");
        if !(last.starts_with('v') && last[1..].starts_with(|c: char| c.is_ascii_digit())) {
            base.push_str("/v1");
        }
        Pithos {
            http,
            base,
            uuid: uuid.to_owned(),
            token,
            workers,
            blocks: Mutex::new(HashMap::new()),
            quotas_url: None,
        }
    }

    /// Read the quotas from Astakos' account API at `url` (the catalog's `account`
    /// endpoint) before an upload.
    pub fn with_quotas(mut self, url: Option<String>) -> Self {
        self.quotas_url = url.map(|u| u.trim_end_matches('/').to_owned());
        self
    }

    fn account_url(&self) -> String {
        format!("{}/{}", self.base, quote(&self.uuid, false))
    }

    fn container_url(&self, c: &str) -> String {
        format!("{}/{}", self.account_url(), quote(c, false))
    }

    fn obj_url(&self, c: &str, o: &str) -> String {
        format!("{}/{}", self.container_url(c), quote(o, true))
    }

    fn req(&self, method: &'static str, url: String, action: String) -> Request<'_> {
        Request::new(SERVICE, method, url, action).token(&self.token)
    }

    /// The container's block size and hash (creating the container if needed).
    pub fn block_info(&self, c: &str) -> Result<BlockInfo> {
        if let Some(b) = self.blocks.lock().unwrap_or_else(|p| p.into_inner()).get(c) {
            return Ok(b.clone());
        }
        let action = format!("creating container `{c}'");
        self.http
            .send(self.req("PUT", self.container_url(c), action.clone()))?
            .ok(SERVICE, &action)?;
        let action = format!("reading the block size of container `{c}'");
        let r = self
            .http
            .send(self.req("HEAD", self.container_url(c), action.clone()))?
            .ok(SERVICE, &action)?;
        let size = r
            .header("x-container-block-size")
            .and_then(|s| s.trim().parse::<u64>().ok())
            .filter(|&s| s > 0);
        let hash = r
            .header("x-container-block-hash")
            .map(|s| s.trim().to_owned());
        let (Some(size), Some(hash)) = (size, hash) else {
            return Err(CloudError::Protocol {
                service: SERVICE,
                action,
                detail: "no X-Container-Block-Size / X-Container-Block-Hash headers".into(),
            });
        };
        let info = BlockInfo { size, hash };
        self.blocks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(c.to_owned(), info.clone());
        Ok(info)
    }

    fn hashes(
        &self,
        data: Data<'_>,
        info: &BlockInfo,
        reporter: &dyn Reporter,
        title: &str,
    ) -> Result<Vec<String>> {
        let count = data.size().div_ceil(info.size) as usize;
        let out: Vec<Mutex<String>> = (0..count).map(|_| Mutex::new(String::new())).collect();
        let progress = Progress::new(reporter, title, data.size(), Unit::Bytes);
        let file = match data {
            Data::File(p, _) => Some(File::open(p).map_err(|source| CloudError::Io {
                path: p.to_path_buf(),
                source,
            })?),
            Data::Mem(_) => None,
        };
        let workers = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .min(4);
        parallel::run(count, workers, |i| {
            let offset = i as u64 * info.size;
            let len = info.size.min(data.size() - offset);
            let h = match (data, &file) {
                (Data::File(p, _), Some(f)) => {
                    let mut buf = vec![0u8; len as usize];
                    f.read_exact_at(&mut buf, offset)
                        .map_err(|source| CloudError::Io {
                            path: p.to_path_buf(),
                            source,
                        })?;
                    block_hash(&info.hash, &buf)?
                }
                (Data::Mem(m), _) => {
                    block_hash(&info.hash, &m[offset as usize..(offset + len) as usize])?
                }
                _ => unreachable!("a file source always has its file open"),
            };
            *out[i].lock().unwrap_or_else(|p| p.into_inner()) = h;
            progress.add(len);
            Ok(())
        })?;
        progress.finish("done");
        Ok(out
            .into_iter()
            .map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()))
            .collect())
    }

    /// `PUT …?hashmap`: `None` when the object is complete, else the missing hashes.
    fn put_hashmap(
        &self,
        c: &str,
        o: &str,
        size: u64,
        hashes: &[String],
        content_type: &str,
    ) -> Result<Option<Vec<String>>> {
        let action = format!("writing the hashmap of `{c}/{o}'");
        let body = json!({"bytes": size, "hashes": hashes}).to_string();
        let r = self.http.send(
            self.req(
                "PUT",
                format!("{}?format=json&hashmap=True", self.obj_url(c, o)),
                action.clone(),
            )
            .header("Content-Type", content_type)
            .body(Body::Bytes(body.as_bytes())),
        )?;
        match r.status {
            201 => Ok(None),
            409 => {
                let missing: Vec<String> = r.json(SERVICE, &action)?;
                Ok(Some(missing))
            }
            _ => Err(r.error(SERVICE, &action)),
        }
    }

    fn upload_data(
        &self,
        c: &str,
        o: &str,
        data: Data<'_>,
        content_type: &str,
        reporter: &dyn Reporter,
    ) -> Result<UploadStats> {
        let info = self.block_info(c)?;
        let hashes = self.hashes(
            data,
            &info,
            reporter,
            &format!("Calculating block hashes of {o}"),
        )?;
        let mut stats = UploadStats {
            pieces_total: hashes.len() as u64,
            ..Default::default()
        };
        let first_index: HashMap<&str, usize> = hashes
            .iter()
            .enumerate()
            .rev()
            .map(|(i, h)| (h.as_str(), i))
            .collect();
        let mut missing = match self.put_hashmap(c, o, data.size(), &hashes, content_type)? {
            None => {
                stats.pieces_skipped = stats.pieces_total;
                return Ok(stats);
            }
            Some(m) => m,
        };
        let progress = Progress::new(
            reporter,
            &format!("Uploading missing blocks of {o}"),
            data.size(),
            Unit::Bytes,
        );
        let unique_missing: HashSet<&str> = missing.iter().map(String::as_str).collect();
        let present: u64 = hashes
            .iter()
            .enumerate()
            .filter(|(_, h)| !unique_missing.contains(h.as_str()))
            .map(|(i, _)| info.size.min(data.size() - i as u64 * info.size))
            .sum();
        progress.add(present);
        let skipped = hashes
            .iter()
            .filter(|h| !unique_missing.contains(h.as_str()))
            .count() as u64;
        let mut idle_rounds = 0;
        let sent = Mutex::new((0u64, 0u64));
        loop {
            let todo: Vec<(String, usize)> = {
                let mut seen = HashSet::new();
                missing
                    .iter()
                    .filter(|h| seen.insert(h.as_str()))
                    .map(|h| {
                        let i =
                            *first_index
                                .get(h.as_str())
                                .ok_or_else(|| CloudError::Protocol {
                                    service: SERVICE,
                                    action: format!("writing the hashmap of `{c}/{o}'"),
                                    detail: format!(
                                        "the server asks for a block we did not send ({h})"
                                    ),
                                })?;
                        Ok((h.clone(), i))
                    })
                    .collect::<Result<_>>()?
            };
            let before = sent.lock().unwrap_or_else(|p| p.into_inner()).0;
            let result = parallel::run(todo.len(), self.workers, |j| {
                let (hash, i) = &todo[j];
                let offset = *i as u64 * info.size;
                let len = info.size.min(data.size() - offset);
                let action = format!("uploading block {} of `{c}/{o}'", i + 1);
                let r = self.http.send(
                    self.req(
                        "POST",
                        format!("{}?update=&format=json", self.container_url(c)),
                        action.clone(),
                    )
                    .header("Content-Type", "application/octet-stream")
                    .body(data.body(offset, len))
                    .progress(&progress),
                )?;
                let r = r.ok(SERVICE, &action)?;
                let stored: Vec<String> = r.json(SERVICE, &action)?;
                match stored.first() {
                    Some(h) if h == hash => {
                        let mut s = sent.lock().unwrap_or_else(|p| p.into_inner());
                        s.0 += 1;
                        s.1 += len;
                        Ok(())
                    }
                    other => Err(CloudError::Integrity {
                        what: format!("block {} of `{c}/{o}'", i + 1),
                        expected: hash.clone(),
                        actual: other.cloned().unwrap_or_else(|| "nothing".into()),
                    }),
                }
            });
            if let Err(e) = result {
                if matches!(e, CloudError::Cancelled(_))
                    || idle_rounds + 1 >= MAX_ROUNDS_WITHOUT_PROGRESS
                {
                    return Err(e);
                }
                reporter.detail(&format!("{e}; trying the missing blocks again"));
            }
            let (blocks, bytes) = *sent.lock().unwrap_or_else(|p| p.into_inner());
            if blocks == before {
                idle_rounds += 1;
            } else {
                idle_rounds = 0;
            }
            match self.put_hashmap(c, o, data.size(), &hashes, content_type)? {
                None => {
                    progress.finish("done");
                    stats.pieces_sent = blocks;
                    stats.bytes_sent = bytes;
                    stats.pieces_skipped = skipped;
                    return Ok(stats);
                }
                Some(m) => {
                    if idle_rounds >= MAX_ROUNDS_WITHOUT_PROGRESS {
                        return Err(CloudError::Protocol {
                            service: SERVICE,
                            action: format!("uploading `{c}/{o}'"),
                            detail: format!("{} block(s) still missing after {idle_rounds} rounds without progress", m.len()),
                        });
                    }
                    missing = m;
                }
            }
        }
    }
}

/// Bytes left of `pithos.diskspace` in `project`, from Astakos' `GET /quotas` answer
/// (`{project: {resource: {limit, usage, project_limit, project_usage}}}`): the
/// user's share and the project's, whichever is smaller; `None` without an entry.
fn diskspace_left(quotas: &serde_json::Value, project: &str) -> Option<u64> {
    let q = quotas.get(project)?.get("pithos.diskspace")?;
    let left = |limit: &str, usage: &str| {
        let l = q.get(limit)?.as_i64()?;
        let u = q
            .get(usage)
            .and_then(serde_json::Value::as_i64)
            .unwrap_or(0);
        Some(l.saturating_sub(u).max(0) as u64)
    };
    match (
        left("limit", "usage"),
        left("project_limit", "project_usage"),
    ) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl ObjectStore for Pithos {
    fn name(&self) -> &'static str {
        SERVICE
    }

    fn check_space(&self, container: &str, object: &str, size: u64) -> Result<()> {
        let Some(url) = &self.quotas_url else {
            return Ok(());
        };
        // The container's project pays (its policy), by default the user's own.
        let action = format!("reading the policy of container `{container}'");
        let r = self
            .http
            .send(self.req("HEAD", self.container_url(container), action.clone()))?;
        let project = match r.status {
            404 => self.uuid.clone(),
            _ => r
                .ok(SERVICE, &action)?
                .header("x-container-policy-project")
                .map(|p| p.trim().to_owned())
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| self.uuid.clone()),
        };
        // An object replaced in place gives its own bytes back.
        let action = format!("checking object `{container}/{object}'");
        let r =
            self.http
                .send(self.req("HEAD", self.obj_url(container, object), action.clone()))?;
        let old = match r.status {
            404 => 0,
            _ => r
                .ok(SERVICE, &action)?
                .header("content-length")
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0),
        };
        let action = "reading the quotas (Astakos)".to_owned();
        let r = self.http.send(
            Request::new("Astakos", "GET", format!("{url}/quotas"), action.clone())
                .token(&self.token),
        )?;
        if !r.is_success() {
            // a deployment without the quotas API: Pithos still refuses with 413
            return Ok(());
        }
        let quotas: serde_json::Value = r.json("Astakos", &action)?;
        let needed = size.saturating_sub(old);
        match diskspace_left(&quotas, &project) {
            Some(left) if left < needed => Err(CloudError::Quota {
                service: SERVICE,
                what: format!("the disk space of project {project}"),
                needed,
                available: left,
            }),
            _ => Ok(()),
        }
    }

    fn ensure_container(&self, container: &str) -> Result<()> {
        self.block_info(container).map(|_| ())
    }

    fn exists(&self, container: &str, object: &str) -> Result<bool> {
        let action = format!("checking object `{container}/{object}'");
        let r =
            self.http
                .send(self.req("HEAD", self.obj_url(container, object), action.clone()))?;
        match r.status {
            404 => Ok(false),
            _ => r.ok(SERVICE, &action).map(|_| true),
        }
    }

    fn put_bytes(
        &self,
        container: &str,
        object: &str,
        data: &[u8],
        content_type: &str,
    ) -> Result<()> {
        self.upload_data(
            container,
            object,
            Data::Mem(data),
            content_type,
            &snf_core::report::Quiet,
        )
        .map(|_| ())
    }

    fn upload(
        &self,
        container: &str,
        object: &str,
        image: &ImageSource,
        reporter: &dyn Reporter,
    ) -> Result<UploadStats> {
        self.upload_data(
            container,
            object,
            Data::File(&image.path, image.size),
            "application/octet-stream",
            reporter,
        )
    }

    fn make_public(
        &self,
        container: &str,
        objects: &[&str],
        _reporter: &dyn Reporter,
    ) -> Result<()> {
        for o in objects {
            let action = format!("sharing `{container}/{o}' with everyone");
            self.http
                .send(
                    self.req(
                        "POST",
                        format!("{}?update=&format=json", self.obj_url(container, o)),
                        action.clone(),
                    )
                    .header("X-Object-Sharing", "read=*"),
                )?
                .ok(SERVICE, &action)?;
        }
        Ok(())
    }

    fn delete(&self, container: &str, object: &str) -> Result<()> {
        let action = format!("deleting `{container}/{object}'");
        let r =
            self.http
                .send(self.req("DELETE", self.obj_url(container, object), action.clone()))?;
        if r.status == 404 {
            return Ok(());
        }
        r.ok(SERVICE, &action).map(|_| ())
    }

    fn location(&self, container: &str, object: &str) -> String {
        format!(
            "pithos://{}/{}/{}",
            quote(&self.uuid, false),
            quote(container, false),
            quote(object, true)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_zeros_are_not_hashed() {
        let empty = hex::encode(sha2::Sha256::digest(b""));
        assert_eq!(block_hash("sha256", &[0u8; 4096]).unwrap(), empty);
        assert_eq!(
            block_hash("sha256", b"ab\0\0").unwrap(),
            block_hash("sha256", b"ab").unwrap()
        );
        assert_ne!(
            block_hash("sha256", b"a\0b").unwrap(),
            block_hash("sha256", b"ab").unwrap()
        );
        assert!(block_hash("md4", b"x").is_err());
    }
}
