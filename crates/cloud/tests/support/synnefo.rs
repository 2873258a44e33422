//! A Synnefo server for the tests, written from Synnefo's own source (astakos
//! `api/tokens.py`, pithos `api/functions.py`, `api/util.py` and the backend's
//! `modular.py`/`hashfiler`, plankton `views.py`/`backend.py`), not from the client:
//!
//! - Astakos `POST /identity/v2.0/tokens`: the token is read from the JSON body (the
//!   header is not looked at); an empty body answers the catalog only; `tenantName`
//!   must be the user's uuid; `token.tenant.id` is the user's default project, which
//!   is not the user's uuid here, and `user.id` names the Pithos account;
//! - Pithos: one block size (4 MiB by default) and hash algorithm (sha256 by default)
//!   for the server, announced as `X-Container-Block-Size`/`X-Container-Block-Hash`;
//!   a block's hash is the algorithm over the block without its trailing zero bytes,
//!   an object's (its ETag) the Merkle root Pithos computes over the block hashes; a
//!   block `POST` is cut into blocks and answers every hash; the hashmap `PUT` wants a
//!   Content-Type (411), answers 409 with the missing hashes or 201 with ETag and
//!   X-Object-Version; `X-Object-Sharing` is parsed as Pithos parses it (400 if bad);
//! - Plankton: in the catalog without a version (`/image`), served under `/v1.0/` and
//!   `/v1/`; the image id is the object's uuid, so registering a location again updates
//!   that image; status `AVAILABLE`; the answer headers as `_create_image_response`
//!   writes them (names and values quoted, property names with `-`).
//!
//! Faults can be injected on every kind of request ([`Kind`]). Plain HTTP/1.1 with
//! keep-alive on 127.0.0.1, one thread per connection.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use sha2::Digest;

/// Pithos' default block size (`DEFAULT_BLOCK_SIZE` in the backend).
pub const DEFAULT_BLOCK_SIZE: u64 = 4 << 20;

/// A stored object.
#[derive(Debug, Clone)]
pub struct Object {
    pub bytes: u64,
    pub hashes: Vec<String>,
    pub content_type: String,
    pub sharing: Option<String>,
    /// The object's uuid (kept when the object is replaced; Plankton's image id).
    pub uuid: String,
    /// The Merkle root of the block hashes (the ETag), hex.
    pub hash: String,
    pub version: u64,
    /// Plankton's metadata on the object (`name`, `is_public`, properties ...).
    pub image: Option<BTreeMap<String, String>>,
}

/// A registration received by Plankton.
#[derive(Debug, Clone)]
pub struct Registered {
    /// Request headers, names lower-cased, values as sent.
    pub headers: BTreeMap<String, String>,
}

/// How the server misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    /// Answer 503.
    Unavailable,
    /// Close the connection without answering.
    Drop,
    /// Answer with this status (a refusal: 403, 413 ...).
    Status(u16),
}

/// The kinds of request a fault can be injected on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Astakos `POST /tokens`.
    Auth,
    /// `PUT` of a container.
    ContainerPut,
    /// `HEAD` of a container (its block size and hash).
    ContainerHead,
    /// A block `POST` (`?update` on a container, octet-stream data).
    BlockPost,
    /// The hashmap `PUT` of an object.
    HashmapPut,
    /// `HEAD`/`GET` of an object.
    ObjectRead,
    /// `POST` on an object (sharing).
    ObjectPost,
    /// `DELETE` of an object.
    ObjectDelete,
    /// Plankton's registration.
    Register,
    /// Astakos' `GET /quotas`.
    Quotas,
}

#[derive(Default)]
pub struct State {
    pub token: String,
    pub uuid: String,
    /// `token.tenant.id`: the user's default project.
    pub project: String,
    pub block_size: u64,
    pub hash_algorithm: String,
    pub containers: BTreeMap<String, BTreeMap<String, Object>>,
    pub blocks: HashMap<String, Vec<u8>>,
    /// Block POSTs that stored data.
    pub block_posts: usize,
    pub registrations: Vec<Registered>,
    pub faults: HashMap<Kind, (Fault, usize)>,
    /// `pithos.diskspace` limit of the user's project (`None`: a large one).
    pub diskspace: Option<u64>,
    pub requests: Vec<String>,
    next_id: u64,
}

pub struct Synnefo {
    pub addr: String,
    pub state: Arc<Mutex<State>>,
}

/// `algorithm` over `data` (the algorithms Pithos deployments use), hex.
fn digest(algorithm: &str, data: &[u8]) -> Vec<u8> {
    match algorithm {
        "sha256" => sha2::Sha256::digest(data).to_vec(),
        "sha512" => sha2::Sha512::digest(data).to_vec(),
        "sha384" => sha2::Sha384::digest(data).to_vec(),
        "sha224" => sha2::Sha224::digest(data).to_vec(),
        other => panic!("the test server has no hash `{other}'"),
    }
}

/// A block's hash as the Pithos blocker computes it: `data.rstrip('\x00')` hashed.
pub fn hash_block_with(algorithm: &str, b: &[u8]) -> String {
    let mut end = b.len();
    while end > 0 && b[end - 1] == 0 {
        end -= 1;
    }
    hex::encode(digest(algorithm, &b[..end]))
}

/// [`hash_block_with`] sha256, the default.
pub fn hash_block(b: &[u8]) -> String {
    hash_block_with("sha256", b)
}

/// The object hash as Pithos' `HashMap.hash()` computes it: no blocks, the hash of
/// nothing; one, its hash; more, the Merkle root over the raw hashes padded with
/// zero hashes to a power of two.
pub fn merkle(algorithm: &str, hex_hashes: &[String]) -> String {
    let mut h: Vec<Vec<u8>> = hex_hashes
        .iter()
        .map(|x| hex::decode(x).unwrap_or_default())
        .collect();
    match h.len() {
        0 => return hex::encode(digest(algorithm, b"")),
        1 => return hex::encode(&h[0]),
        _ => {}
    }
    let mut s = 2;
    while s < h.len() {
        s *= 2;
    }
    let zero = vec![0u8; h[0].len()];
    h.resize(s, zero);
    while h.len() > 1 {
        h = h
            .chunks(2)
            .map(|p| digest(algorithm, &[p[0].as_slice(), p[1].as_slice()].concat()))
            .collect();
    }
    hex::encode(&h[0])
}

struct Req {
    method: String,
    path: String,
    query: String,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn resp(status: u16) -> Resp {
    Resp {
        status,
        headers: Vec::new(),
        body: Vec::new(),
    }
}

fn json_resp(status: u16, v: &serde_json::Value) -> Resp {
    Resp {
        status,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: v.to_string().into_bytes(),
    }
}

fn unquote(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) =
                u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Python's `urllib.quote` (safe `/`), as Plankton quotes names and properties.
fn pyquote(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Plankton's `normalize`: lower case, punctuation as `_`.
fn normalize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_punctuation() {
                '_'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

/// Pithos' `get_sharing`: `Ok(None)` to clear, the normalized value, or 400.
fn parse_sharing(v: &str) -> Result<Option<String>, ()> {
    let v = v.replace(['~', ' '], "");
    if v.is_empty() {
        return Ok(None);
    }
    let mut parts = Vec::new();
    for perm in v.split(';') {
        let (kind, list) = if let Some(l) = perm.strip_prefix("read=") {
            ("read", l)
        } else if let Some(l) = perm.strip_prefix("write=") {
            ("write", l)
        } else {
            return Err(());
        };
        let mut who: Vec<String> = list
            .split(',')
            .map(str::to_lowercase)
            .filter(|x| !x.is_empty())
            .collect();
        who.sort();
        who.dedup();
        if who.iter().any(|x| x == "*") {
            who = vec!["*".into()];
        }
        if who.is_empty() {
            return Err(());
        }
        parts.push(format!("{kind}={}", who.join(",")));
    }
    Ok(Some(parts.join(";")))
}

impl Kind {
    fn of(req: &Req) -> Option<Kind> {
        let m = req.method.as_str();
        if req.path.ends_with("/tokens") {
            return Some(Kind::Auth);
        }
        if req.path.starts_with("/image/") {
            return (m == "POST").then_some(Kind::Register);
        }
        if req.path.starts_with("/account/") {
            return Some(Kind::Quotas);
        }
        let rest = req.path.strip_prefix("/object-store/v1/")?;
        let object = rest.splitn(3, '/').nth(2).is_some_and(|o| !o.is_empty());
        Some(match (m, object) {
            ("PUT", false) => Kind::ContainerPut,
            ("HEAD", false) => Kind::ContainerHead,
            ("POST", false) => Kind::BlockPost,
            ("PUT", true) => Kind::HashmapPut,
            ("HEAD" | "GET", true) => Kind::ObjectRead,
            ("POST", true) => Kind::ObjectPost,
            ("DELETE", true) => Kind::ObjectDelete,
            _ => return None,
        })
    }
}

impl Synnefo {
    /// A server with Pithos' defaults but this block size (sha256).
    pub fn start(token: &str, block_size: u64) -> Synnefo {
        Self::start_with(token, block_size, "sha256")
    }

    /// A server whose containers have this block size and hash algorithm.
    pub fn start_with(token: &str, block_size: u64, hash_algorithm: &str) -> Synnefo {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap().to_string();
        let state = Arc::new(Mutex::new(State {
            token: token.into(),
            uuid: "0a1b2c3d-user-uuid".into(),
            project: "9f8e7d6c-default-project".into(),
            block_size,
            hash_algorithm: hash_algorithm.into(),
            ..Default::default()
        }));
        let st = Arc::clone(&state);
        let a = addr.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let st = Arc::clone(&st);
                let a = a.clone();
                std::thread::spawn(move || serve(conn, &st, &a));
            }
        });
        Synnefo { addr, state }
    }

    pub fn auth_url(&self) -> String {
        format!("http://{}/identity/v2.0", self.addr)
    }

    /// The stored object's data, rebuilt from its hashmap.
    pub fn object_data(&self, container: &str, object: &str) -> Option<Vec<u8>> {
        let st = self.state.lock().unwrap();
        let o = st.containers.get(container)?.get(object)?;
        let mut out = Vec::new();
        for h in &o.hashes {
            let b = st.blocks.get(h)?;
            let mut b = b.clone();
            b.resize(st.block_size as usize, 0);
            out.extend_from_slice(&b);
        }
        out.truncate(o.bytes as usize);
        Some(out)
    }

    pub fn object(&self, container: &str, object: &str) -> Option<Object> {
        self.state
            .lock()
            .unwrap()
            .containers
            .get(container)?
            .get(object)
            .cloned()
    }

    /// Names of the objects in `container`.
    pub fn objects(&self, container: &str) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .containers
            .get(container)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    pub fn block_posts(&self) -> usize {
        self.state.lock().unwrap().block_posts
    }

    /// Limit the user's `pithos.diskspace` (Astakos quota) to `bytes`.
    pub fn set_diskspace_quota(&self, bytes: u64) {
        self.state.lock().unwrap().diskspace = Some(bytes);
    }

    /// Misbehave on the next `times` block uploads.
    pub fn set_fault(&self, f: Fault, times: usize) {
        self.set_fault_on(Kind::BlockPost, f, times);
    }

    /// Misbehave on the next `times` requests of `kind`.
    pub fn set_fault_on(&self, kind: Kind, f: Fault, times: usize) {
        self.state.lock().unwrap().faults.insert(kind, (f, times));
    }
}

fn read_req(r: &mut BufReader<TcpStream>) -> Option<Req> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let target = parts.next()?.to_owned();
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).ok()?;
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), q.to_owned()),
        None => (target, String::new()),
    };
    Some(Req {
        method,
        path,
        query,
        headers,
        body,
    })
}

fn serve(conn: TcpStream, st: &Arc<Mutex<State>>, addr: &str) {
    let mut w = conn.try_clone().expect("clone socket");
    let mut r = BufReader::new(conn);
    while let Some(req) = read_req(&mut r) {
        if let Some(kind) = Kind::of(&req) {
            let mut s = st.lock().unwrap();
            let fault = match s.faults.get_mut(&kind) {
                Some((f, n)) if *n > 0 && *f != Fault::None => {
                    *n -= 1;
                    Some(*f)
                }
                _ => None,
            };
            if let Some(f) = fault {
                s.requests.push(format!("{kind:?} -> fault {f:?}"));
                drop(s);
                let status = match f {
                    Fault::Drop => return,
                    Fault::Status(code) => code,
                    _ => 503,
                };
                if write_resp(&mut w, &req, resp(status)).is_err() {
                    return;
                }
                continue;
            }
        }
        let out = handle(&req, st, addr);
        st.lock().unwrap().requests.push(format!(
            "{} {}?{} -> {}",
            req.method, req.path, req.query, out.status
        ));
        if write_resp(&mut w, &req, out).is_err() {
            return;
        }
    }
}

fn write_resp(w: &mut TcpStream, req: &Req, out: Resp) -> std::io::Result<()> {
    let reason = match out.status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        401 => "Unauthorized",
        404 => "Not Found",
        400 => "Bad Request",
        403 => "Forbidden",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Request Entity Too Large",
        503 => "Service Unavailable",
        _ => "Other",
    };
    let mut head = format!("HTTP/1.1 {} {reason}\r\n", out.status);
    for (k, v) in &out.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    let has_length = out
        .headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-length"));
    if out.status != 204 && !(100..200).contains(&out.status) && !has_length {
        head.push_str(&format!("Content-Length: {}\r\n", out.body.len()));
    }
    head.push_str("\r\n");
    w.write_all(head.as_bytes())?;
    if req.method != "HEAD" {
        w.write_all(&out.body)?;
    }
    w.flush()
}

fn catalog(addr: &str) -> serde_json::Value {
    serde_json::json!([
        {"type": "identity", "name": "astakos_identity", "endpoints": [{"publicURL": format!("http://{addr}/identity/v2.0"), "versionId": "v2.0", "region": "default"}]},
        {"type": "object-store", "name": "pithos_object-store", "endpoints": [{"publicURL": format!("http://{addr}/object-store/v1"), "versionId": "v1", "region": "default"}]},
        // 'SNF:exposeVersion': False: the client adds the version
        {"type": "image", "name": "cyclades_plankton", "endpoints": [{"publicURL": format!("http://{addr}/image"), "versionId": "v1.0", "region": "default"}]},
        {"type": "account", "name": "astakos_account", "endpoints": [{"publicURL": format!("http://{addr}/account/v1.0"), "versionId": "v1.0", "region": "default"}]}
    ])
}

fn astakos(req: &Req, s: &State, addr: &str) -> Resp {
    if req.body.is_empty() {
        // "public mode": no credentials, the catalog only
        return json_resp(
            200,
            &serde_json::json!({"access": {"serviceCatalog": catalog(addr)}}),
        );
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&req.body) else {
        return json_resp(
            400,
            &serde_json::json!({"badRequest": {"code": 400, "message": "Invalid JSON"}}),
        );
    };
    let Some(sent) = v
        .pointer("/auth/token/id")
        .or_else(|| v.pointer("/auth/passwordCredentials/password"))
        .and_then(|x| x.as_str())
    else {
        return json_resp(
            400,
            &serde_json::json!({"badRequest": {"code": 400, "message": "Malformed request: missing credentials"}}),
        );
    };
    if sent != s.token {
        return json_resp(
            401,
            &serde_json::json!({"unauthorized": {"code": 401, "message": "Invalid token"}}),
        );
    }
    if let Some(t) = v.pointer("/auth/tenantName").and_then(|x| x.as_str()) {
        if !t.is_empty() && t != s.uuid {
            return json_resp(
                400,
                &serde_json::json!({"badRequest": {"code": 400, "message": "Not conforming tenantName"}}),
            );
        }
    }
    json_resp(
        200,
        &serde_json::json!({"access": {
            "token": {"id": s.token, "expires": "2030-01-01T00:00:00+00:00", "tenant": {"id": s.project, "name": "Test User"}},
            "user": {"id": s.uuid, "name": "Test User", "roles": [], "roles_links": [], "projects": [s.project]},
            "serviceCatalog": catalog(addr)
        }}),
    )
}

fn plankton(req: &Req, s: &mut State) -> Resp {
    let path = req.path.as_str();
    let is_images = [
        "/image/v1.0/images",
        "/image/v1.0/images/",
        "/image/v1/images",
        "/image/v1/images/",
    ]
    .contains(&path);
    if !(is_images && req.method == "POST") {
        return resp(404);
    }
    // headers_to_image_params: names normalized, name and properties unquoted
    let mut params = BTreeMap::new();
    let mut props = BTreeMap::new();
    for (k, v) in &req.headers {
        if let Some(p) = k.strip_prefix("x-image-meta-property-") {
            props.insert(normalize(&unquote(p)), unquote(v));
        } else if let Some(m) = k.strip_prefix("x-image-meta-") {
            let key = normalize(m);
            let val = if key == "name" { unquote(v) } else { v.clone() };
            params.insert(key, val);
        }
    }
    const ADD_FIELDS: &[&str] = &[
        "name",
        "id",
        "store",
        "disk_format",
        "container_format",
        "size",
        "checksum",
        "is_public",
        "owner",
        "properties",
        "location",
    ];
    if params.keys().any(|k| !ADD_FIELDS.contains(&k.as_str())) || params.contains_key("id") {
        return resp(400);
    }
    let Some(name) = params.get("name").filter(|n| !n.is_empty()).cloned() else {
        return resp(400);
    };
    let disk_format = params
        .get("disk_format")
        .cloned()
        .unwrap_or("diskdump".into());
    if !["diskdump", "extdump", "ntfsdump"].contains(&disk_format.as_str()) {
        return resp(400);
    }
    let container_format = params
        .get("container_format")
        .cloned()
        .unwrap_or("bare".into());
    let Some(loc) = params.get("location").cloned() else {
        return resp(400);
    };
    let Some(rest) = loc.strip_prefix("pithos://") else {
        return resp(400);
    };
    let mut it = rest.splitn(3, '/');
    let (account, c, o) = (
        it.next().unwrap_or("").to_owned(),
        it.next().unwrap_or("").to_owned(),
        it.next().unwrap_or("").to_owned(),
    );
    if account != s.uuid {
        return resp(403);
    }
    let public = params
        .get("is_public")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    s.registrations.push(Registered {
        headers: req.headers.clone(),
    });
    let uuid = s.uuid.clone();
    let Some(obj) = s.containers.get_mut(&c).and_then(|m| m.get_mut(&o)) else {
        return resp(404);
    };
    if params
        .get("size")
        .is_some_and(|v| *v != obj.bytes.to_string())
        || params.get("checksum").is_some_and(|v| *v != obj.hash)
    {
        return resp(400);
    }
    // register: the permissions, then the metadata merged into what is there
    obj.sharing = Some(if public {
        "read=*".into()
    } else {
        format!("read={uuid}")
    });
    let mut meta = obj.image.take().unwrap_or_default();
    meta.insert("name".into(), name);
    meta.insert("disk_format".into(), disk_format);
    meta.insert("container_format".into(), container_format);
    for (k, v) in props {
        meta.insert(format!("property:{k}"), v);
    }
    obj.image = Some(meta.clone());
    let mut headers = vec![];
    let mut add = |k: &str, v: String| headers.push((format!("x-image-meta-{k}"), v));
    add("name", pyquote(&meta["name"]));
    add("disk-format", meta["disk_format"].clone());
    add("container-format", meta["container_format"].clone());
    add("size", obj.bytes.to_string());
    add("checksum", obj.hash.clone());
    add("location", loc.clone());
    add("created-at", "2026-01-01 00:00:00".into());
    add("updated-at", "2026-01-01 00:00:00".into());
    add("deleted-at", String::new());
    add("status", "AVAILABLE".into());
    add("is-public", if public { "True" } else { "False" }.into());
    add("owner", uuid);
    add("id", obj.uuid.clone());
    add("is-snapshot", "False".into());
    add("description", String::new());
    for (k, v) in &meta {
        if let Some(p) = k.strip_prefix("property:") {
            headers.push((
                pyquote(&format!("x-image-meta-property-{}", p.replace('_', "-"))),
                pyquote(v),
            ));
        }
    }
    Resp {
        status: 200,
        headers,
        body: Vec::new(),
    }
}

fn handle(req: &Req, st: &Arc<Mutex<State>>, addr: &str) -> Resp {
    let mut guard = st.lock().unwrap();
    let s = &mut *guard;
    if req.path == "/identity/v2.0/tokens" && req.method == "POST" {
        return astakos(req, s, addr);
    }
    let token_ok = req.headers.get("x-auth-token") == Some(&s.token);
    if !token_ok {
        return resp(401);
    }
    if req.path.starts_with("/image/") {
        return plankton(req, s);
    }
    if req.path == "/account/v1.0/quotas" || req.path == "/account/v1.0/quotas/" {
        // astakos get_user_quotas: per project, per resource, the user's holding and
        // the project's (usage includes pending)
        let used = usage(s);
        let limit = s.diskspace.unwrap_or(1 << 40);
        return json_resp(
            200,
            &serde_json::json!({ s.uuid.clone(): {
                "pithos.diskspace": {
                    "limit": limit, "usage": used, "pending": 0,
                    "project_limit": limit, "project_usage": used, "project_pending": 0
                },
                "cyclades.vm": {"limit": 2, "usage": 0, "pending": 0,
                    "project_limit": 2, "project_usage": 0, "project_pending": 0}
            }}),
        );
    }
    // Pithos
    let Some(rest) = req.path.strip_prefix("/object-store/v1/") else {
        return resp(404);
    };
    let parts: Vec<&str> = rest.splitn(3, '/').collect();
    if parts.first().map(|u| unquote(u)) != Some(s.uuid.clone()) {
        return resp(403);
    }
    let container = parts.get(1).map(|c| unquote(c)).unwrap_or_default();
    let object = parts.get(2).map(|o| unquote(o)).filter(|o| !o.is_empty());
    let bs = s.block_size;
    let algo = s.hash_algorithm.clone();
    match (req.method.as_str(), object) {
        ("PUT", None) => {
            if let std::collections::btree_map::Entry::Vacant(e) = s.containers.entry(container) {
                e.insert(BTreeMap::new());
                resp(201)
            } else {
                resp(202)
            }
        }
        ("HEAD", None) => {
            if s.containers.contains_key(&container) {
                Resp {
                    status: 204,
                    headers: vec![
                        ("X-Container-Block-Size".into(), bs.to_string()),
                        ("X-Container-Block-Hash".into(), algo),
                        ("X-Container-Policy-Quota".into(), "0".into()),
                        ("X-Container-Policy-Versioning".into(), "auto".into()),
                        ("X-Container-Policy-Project".into(), s.uuid.clone()),
                    ],
                    body: Vec::new(),
                }
            } else {
                resp(404)
            }
        }
        ("POST", None) => {
            if !s.containers.contains_key(&container) {
                return resp(404);
            }
            // container_update: data only with an octet-stream Content-Type; else a
            // metadata update, answered without hashes
            let is_data = req.headers.get("content-type").map(String::as_str)
                == Some("application/octet-stream")
                && !req.body.is_empty();
            if !is_data {
                return resp(202);
            }
            let mut hashes = Vec::new();
            for block in req.body.chunks(bs as usize) {
                let h = hash_block_with(&algo, block);
                s.blocks.insert(h.clone(), block.to_vec());
                s.block_posts += 1;
                hashes.push(h);
            }
            json_resp(202, &serde_json::json!(hashes))
        }
        ("HEAD", Some(o)) | ("GET", Some(o)) => {
            match s.containers.get(&container).and_then(|m| m.get(&o)) {
                Some(obj) => {
                    let mut headers = vec![
                        ("Content-Type".to_owned(), obj.content_type.clone()),
                        ("ETag".to_owned(), obj.hash.clone()),
                        ("X-Object-UUID".to_owned(), obj.uuid.clone()),
                        ("X-Object-Version".to_owned(), obj.version.to_string()),
                    ];
                    if let Some(sh) = &obj.sharing {
                        headers.push(("X-Object-Sharing".into(), sh.clone()));
                    }
                    if req.method == "HEAD" {
                        headers.push(("Content-Length".into(), obj.bytes.to_string()));
                        Resp {
                            status: 200,
                            headers,
                            body: Vec::new(),
                        }
                    } else {
                        let mut out = Vec::new();
                        for h in &obj.hashes {
                            let mut b = s.blocks.get(h).cloned().unwrap_or_default();
                            b.resize(bs as usize, 0);
                            out.extend(b);
                        }
                        out.truncate(obj.bytes as usize);
                        Resp {
                            status: 200,
                            headers,
                            body: out,
                        }
                    }
                }
                None => resp(404),
            }
        }
        ("PUT", Some(o)) if req.query.split('&').any(|q| q.starts_with("hashmap")) => {
            if !s.containers.contains_key(&container) {
                return resp(404);
            }
            // "Should be BadRequest, but API says otherwise."
            let Some(content_type) = req.headers.get("content-type").cloned() else {
                return resp(411);
            };
            let sharing = match req
                .headers
                .get("x-object-sharing")
                .map(|v| parse_sharing(v))
            {
                Some(Err(())) => return resp(400),
                Some(Ok(v)) => v,
                None => None,
            };
            let v: serde_json::Value = match serde_json::from_slice(&req.body) {
                Ok(v) => v,
                Err(_) => return resp(400),
            };
            let (Some(bytes), Some(list)) = (
                v.get("bytes").and_then(|b| b.as_u64()),
                v.get("hashes").and_then(|h| h.as_array()),
            ) else {
                return resp(400);
            };
            let mut hashes: Vec<String> = list
                .iter()
                .filter_map(|h| h.as_str().map(str::to_lowercase))
                .collect();
            if bytes == 0 {
                // "No such thing as an empty hashmap."
                let h = hash_block_with(&algo, b"");
                s.blocks.insert(h.clone(), Vec::new());
                hashes = vec![h];
            }
            let missing: Vec<&String> = hashes
                .iter()
                .filter(|h| !s.blocks.contains_key(*h))
                .collect();
            if !missing.is_empty() {
                return json_resp(409, &serde_json::json!(missing));
            }
            // QuotaError: 413, charged by the change of the object's size
            let old_bytes = s.containers[&container].get(&o).map_or(0, |x| x.bytes);
            if let Some(limit) = s.diskspace {
                if usage(s) - old_bytes + bytes > limit {
                    return resp(413);
                }
            }
            s.next_id += 1;
            let version = s.next_id;
            let hash = merkle(&algo, &hashes);
            let objects = s.containers.get_mut(&container).unwrap();
            // the object keeps its uuid (and Plankton metadata) across versions
            let (uuid, image, old_sharing) = match objects.get(&o) {
                Some(old) => (old.uuid.clone(), old.image.clone(), old.sharing.clone()),
                None => (format!("object-uuid-{version:04}"), None, None),
            };
            objects.insert(
                o,
                Object {
                    bytes,
                    hashes,
                    content_type,
                    sharing: sharing.or(old_sharing),
                    uuid,
                    hash: hash.clone(),
                    version,
                    image,
                },
            );
            Resp {
                status: 201,
                headers: vec![
                    ("ETag".into(), hash),
                    ("X-Object-Version".into(), version.to_string()),
                ],
                body: Vec::new(),
            }
        }
        ("POST", Some(o)) => {
            let sharing = match req
                .headers
                .get("x-object-sharing")
                .map(|v| parse_sharing(v))
            {
                Some(Err(())) => return resp(400),
                other => other,
            };
            match s.containers.get_mut(&container).and_then(|m| m.get_mut(&o)) {
                Some(obj) => {
                    if let Some(Ok(sh)) = sharing {
                        obj.sharing = sh;
                    }
                    resp(202)
                }
                None => resp(404),
            }
        }
        ("DELETE", Some(o)) => match s.containers.get_mut(&container).and_then(|m| m.remove(&o)) {
            Some(_) => resp(204),
            None => resp(404),
        },
        _ => resp(400),
    }
}

/// Bytes of all objects: what `pithos.diskspace` counts.
fn usage(s: &State) -> u64 {
    s.containers
        .values()
        .flat_map(|m| m.values())
        .map(|o| o.bytes)
        .sum()
}
