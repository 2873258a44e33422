//! A Synnefo server for the tests, following the reference protocol (section 9 of
//! snf-image-creator.md): Astakos `POST /tokens` with a catalog, Pithos containers with
//! block size/hash, the hashmap `PUT` (201, or 409 with the missing hashes), block
//! `POST ?update`, sharing, and Plankton registration with `X-Image-Meta-*` headers.
//! Plain HTTP/1.1 with keep-alive on 127.0.0.1, one thread per connection.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

/// A stored object.
#[derive(Debug, Clone)]
pub struct Object {
    pub bytes: u64,
    pub hashes: Vec<String>,
    pub content_type: String,
    pub sharing: Option<String>,
}

/// A registration received by Plankton.
#[derive(Debug, Clone)]
pub struct Registered {
    /// Request headers, names lower-cased, values as sent.
    pub headers: BTreeMap<String, String>,
}

/// How the server misbehaves for the next block uploads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    /// Answer 503.
    Unavailable,
    /// Close the connection without answering.
    Drop,
}

#[derive(Default)]
pub struct State {
    pub token: String,
    pub uuid: String,
    pub block_size: u64,
    pub containers: BTreeMap<String, BTreeMap<String, Object>>,
    pub blocks: HashMap<String, Vec<u8>>,
    /// Block POSTs that stored data.
    pub block_posts: usize,
    pub registrations: Vec<Registered>,
    pub fault: Option<(Fault, usize)>,
    pub requests: Vec<String>,
}

pub struct Synnefo {
    pub addr: String,
    pub state: Arc<Mutex<State>>,
}

pub fn hash_block(b: &[u8]) -> String {
    let end = b.iter().rposition(|&x| x != 0).map_or(0, |p| p + 1);
    hex::encode(Sha256::digest(&b[..end]))
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

impl Synnefo {
    pub fn start(token: &str, block_size: u64) -> Synnefo {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap().to_string();
        let state = Arc::new(Mutex::new(State {
            token: token.into(),
            uuid: "0a1b2c3d-user-uuid".into(),
            block_size,
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

    pub fn block_posts(&self) -> usize {
        self.state.lock().unwrap().block_posts
    }

    pub fn set_fault(&self, f: Fault, times: usize) {
        self.state.lock().unwrap().fault = Some((f, times));
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
        let is_block_post = req.method == "POST"
            && req.query.contains("update")
            && !req.headers.contains_key("x-object-sharing");
        if is_block_post {
            let mut s = st.lock().unwrap();
            if let Some((f, n)) = s.fault {
                if n > 0 && f != Fault::None {
                    s.fault = Some((f, n - 1));
                    drop(s);
                    match f {
                        Fault::Drop => return,
                        _ => {
                            let _ = write_resp(&mut w, &req, resp(503));
                            continue;
                        }
                    }
                }
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
        409 => "Conflict",
        503 => "Service Unavailable",
        _ => "Other",
    };
    let mut head = format!("HTTP/1.1 {} {reason}\r\n", out.status);
    for (k, v) in &out.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if out.status != 204 && !(100..200).contains(&out.status) {
        head.push_str(&format!("Content-Length: {}\r\n", out.body.len()));
    }
    head.push_str("\r\n");
    w.write_all(head.as_bytes())?;
    if req.method != "HEAD" {
        w.write_all(&out.body)?;
    }
    w.flush()
}

fn handle(req: &Req, st: &Arc<Mutex<State>>, addr: &str) -> Resp {
    let mut s = st.lock().unwrap();
    let token_ok = req.headers.get("x-auth-token") == Some(&s.token);
    // Astakos
    if req.path == "/identity/v2.0/tokens" && req.method == "POST" {
        let v: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
        let sent = v
            .pointer("/auth/token/id")
            .and_then(|x| x.as_str())
            .unwrap_or("");
        if !token_ok || sent != s.token {
            return json_resp(
                401,
                &serde_json::json!({"unauthorized": {"code": 401, "message": "Invalid token"}}),
            );
        }
        return json_resp(
            200,
            &serde_json::json!({"access": {
                "token": {"id": s.token, "expires": "2030-01-01T00:00:00Z", "tenant": {"id": s.uuid, "name": "Test User"}},
                "user": {"id": s.uuid, "name": "Test User", "roles": [], "roles_links": []},
                "serviceCatalog": [
                    {"type": "identity", "name": "astakos_identity", "endpoints": [{"publicURL": format!("http://{addr}/identity/v2.0"), "versionId": "v2.0", "region": "default"}]},
                    {"type": "object-store", "name": "pithos_object-store", "endpoints": [{"publicURL": format!("http://{addr}/object-store/v1"), "versionId": "v1", "region": "default"}]},
                    {"type": "image", "name": "cyclades_plankton", "endpoints": [{"publicURL": format!("http://{addr}/image/v1.0"), "versionId": "v1.0", "region": "default"}]}
                ]
            }}),
        );
    }
    if !token_ok {
        return resp(401);
    }
    // Plankton
    if req.path == "/image/v1.0/images/" && req.method == "POST" {
        let h = &req.headers;
        let loc = h.get("x-image-meta-location").cloned().unwrap_or_default();
        let Some(rest) = loc.strip_prefix("pithos://") else {
            return resp(400);
        };
        let mut it = rest.splitn(3, '/');
        let (u, c, o) = (
            it.next().unwrap_or(""),
            unquote(it.next().unwrap_or("")),
            unquote(it.next().unwrap_or("")),
        );
        let Some(obj) = (if u == s.uuid {
            s.containers.get(&c).and_then(|m| m.get(&o)).cloned()
        } else {
            None
        }) else {
            return resp(400);
        };
        s.registrations.push(Registered { headers: h.clone() });
        let id = format!("image-{}", s.registrations.len());
        let mut headers = vec![
            ("X-Image-Meta-Id".to_owned(), id),
            (
                "X-Image-Meta-Name".into(),
                h.get("x-image-meta-name").cloned().unwrap_or_default(),
            ),
            ("X-Image-Meta-Location".into(), loc.clone()),
            ("X-Image-Meta-Status".into(), "available".into()),
            (
                "X-Image-Meta-Disk-Format".into(),
                h.get("x-image-meta-disk-format")
                    .cloned()
                    .unwrap_or_default(),
            ),
            ("X-Image-Meta-Container-Format".into(), "bare".into()),
            ("X-Image-Meta-Size".into(), obj.bytes.to_string()),
            (
                "X-Image-Meta-Is-Public".into(),
                h.get("x-image-meta-is-public")
                    .map_or("False", |v| {
                        if v.eq_ignore_ascii_case("true") {
                            "True"
                        } else {
                            "False"
                        }
                    })
                    .into(),
            ),
            ("X-Image-Meta-Owner".into(), s.uuid.clone()),
        ];
        for (k, v) in h {
            if let Some(p) = k.strip_prefix("x-image-meta-property-") {
                // Plankton lower-cases property names and maps punctuation to `_`
                let name: String = p
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                    .collect();
                headers.push((format!("X-Image-Meta-Property-{name}"), v.clone()));
            }
        }
        return Resp {
            status: 200,
            headers,
            body: Vec::new(),
        };
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
    let object = parts.get(2).map(|o| unquote(o));
    let bs = s.block_size;
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
                        ("X-Container-Block-Hash".into(), "sha256".into()),
                    ],
                    body: Vec::new(),
                }
            } else {
                resp(404)
            }
        }
        ("POST", None) if req.query.contains("update") => {
            if !s.containers.contains_key(&container) {
                return resp(404);
            }
            if req.headers.get("content-type").map(String::as_str)
                != Some("application/octet-stream")
                || req.body.len() as u64 > bs
            {
                return resp(400);
            }
            let h = hash_block(&req.body);
            s.blocks.insert(h.clone(), req.body.clone());
            s.block_posts += 1;
            json_resp(202, &serde_json::json!([h]))
        }
        ("HEAD", Some(o)) | ("GET", Some(o)) => {
            match s.containers.get(&container).and_then(|m| m.get(&o)) {
                Some(obj) => {
                    let headers = vec![("Content-Type".to_owned(), obj.content_type.clone())];
                    if req.method == "HEAD" {
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
        ("PUT", Some(o)) if req.query.contains("hashmap") => {
            if !s.containers.contains_key(&container) {
                return resp(404);
            }
            let v: serde_json::Value = match serde_json::from_slice(&req.body) {
                Ok(v) => v,
                Err(_) => return resp(400),
            };
            let bytes = v.get("bytes").and_then(|b| b.as_u64()).unwrap_or(0);
            let hashes: Vec<String> = v
                .get("hashes")
                .and_then(|h| h.as_array())
                .into_iter()
                .flatten()
                .filter_map(|h| h.as_str().map(str::to_owned))
                .collect();
            if hashes.len() as u64 != bytes.div_ceil(bs) {
                return resp(400);
            }
            let missing: Vec<&String> = hashes
                .iter()
                .filter(|h| !s.blocks.contains_key(*h))
                .collect();
            if !missing.is_empty() {
                return json_resp(409, &serde_json::json!(missing));
            }
            let content_type = req.headers.get("content-type").cloned().unwrap_or_default();
            s.containers.get_mut(&container).unwrap().insert(
                o,
                Object {
                    bytes,
                    hashes,
                    content_type,
                    sharing: None,
                },
            );
            resp(201)
        }
        ("POST", Some(o)) if req.query.contains("update") => {
            match s.containers.get_mut(&container).and_then(|m| m.get_mut(&o)) {
                Some(obj) => {
                    if let Some(sh) = req.headers.get("x-object-sharing") {
                        obj.sharing = Some(sh.clone());
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
