//! The HTTP transport shared by every service client: one `ureq` agent (connection
//! pool, rustls), bodies that can be re-sent (so that transient failures are retried
//! with backoff), upload progress, and server error texts cut down to one line.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use snf_core::md5::Md5;
use snf_core::report::{Reporter, Task, Unit};
use ureq::http::HeaderMap;

use crate::error::{CloudError, Result};
use crate::secret::Secret;

/// How the transport treats TLS and failures.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Verify server certificates (default). kamaki disabled this; we do not, unless
    /// the account says `verify: false` (clouds.yaml) or `OS_INSECURE` is set.
    pub verify_tls: bool,
    /// PEM file with the certificate authorities to trust instead of the built-in ones.
    pub ca_file: Option<std::path::PathBuf>,
    /// How many times a request that failed transiently (connection refused, reset,
    /// timeout, 408/429/5xx) is tried in all.
    pub attempts: u32,
    /// The first wait between attempts; it doubles each time.
    pub backoff: Duration,
    /// Told before every retry, so that a front-end can show why the program waits.
    pub on_retry: Option<RetryNotice>,
}

/// A one-line note before a retry: what failed and why, and which attempt comes
/// next ("... (connection refused); retrying 2/5 in 0.5 s").
#[derive(Clone)]
pub struct RetryNotice(pub Arc<dyn Fn(&str) + Send + Sync>);

impl std::fmt::Debug for RetryNotice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RetryNotice")
    }
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            verify_tls: true,
            ca_file: None,
            attempts: 5,
            backoff: Duration::from_millis(500),
            on_retry: None,
        }
    }
}

/// The body of a request, in a form that can be produced again for a retry.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Body<'a> {
    Empty,
    Bytes(&'a [u8]),
    /// `len` bytes of the file at `path` from `offset`.
    File {
        path: &'a Path,
        offset: u64,
        len: u64,
    },
}

impl Body<'_> {
    fn len(&self) -> u64 {
        match self {
            Body::Empty => 0,
            Body::Bytes(b) => b.len() as u64,
            Body::File { len, .. } => *len,
        }
    }
}

/// A shared byte counter feeding one progress bar from several threads; a failed
/// attempt takes back what it had counted.
pub(crate) struct Progress {
    task: Box<dyn Task>,
    done: AtomicU64,
}

impl Progress {
    pub(crate) fn new(reporter: &dyn Reporter, title: &str, total: u64, unit: Unit) -> Arc<Self> {
        Arc::new(Progress {
            task: reporter.task(title, total, unit),
            done: AtomicU64::new(0),
        })
    }

    pub(crate) fn add(&self, n: u64) {
        let v = self.done.fetch_add(n, Ordering::Relaxed) + n;
        self.task.set_position(v);
    }

    fn sub(&self, n: u64) {
        let v = self.done.fetch_sub(n, Ordering::Relaxed).saturating_sub(n);
        self.task.set_position(v);
    }

    pub(crate) fn finish(&self, result: &str) {
        self.task.finish(result);
    }
}

/// One request to send.
pub(crate) struct Request<'a> {
    pub service: &'static str,
    pub action: String,
    pub method: &'static str,
    pub url: String,
    pub token: Option<&'a Secret>,
    pub headers: Vec<(String, String)>,
    pub body: Body<'a>,
    /// Compute the MD5 of what was sent (Swift segments are checked against it).
    pub md5: bool,
    pub progress: Option<&'a Progress>,
}

impl<'a> Request<'a> {
    pub(crate) fn new(
        service: &'static str,
        method: &'static str,
        url: impl Into<String>,
        action: impl Into<String>,
    ) -> Self {
        Request {
            service,
            action: action.into(),
            method,
            url: url.into(),
            token: None,
            headers: Vec::new(),
            body: Body::Empty,
            md5: false,
            progress: None,
        }
    }

    pub(crate) fn token(mut self, token: &'a Secret) -> Self {
        self.token = Some(token);
        self
    }

    pub(crate) fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub(crate) fn body(mut self, body: Body<'a>) -> Self {
        self.body = body;
        self
    }

    pub(crate) fn json(self, value: &serde_json::Value) -> JsonRequest<'a> {
        JsonRequest {
            req: self.header("Content-Type", "application/json"),
            data: value.to_string().into_bytes(),
        }
    }

    pub(crate) fn progress(mut self, p: &'a Progress) -> Self {
        self.progress = Some(p);
        self
    }

    pub(crate) fn md5(mut self) -> Self {
        self.md5 = true;
        self
    }
}

/// A request whose body is a JSON document it owns.
pub(crate) struct JsonRequest<'a> {
    req: Request<'a>,
    data: Vec<u8>,
}

/// A server's answer, body read completely.
#[derive(Debug)]
pub(crate) struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// MD5 (hex) of the request body as sent, when asked for.
    pub sent_md5: Option<String>,
}

impl Response {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub(crate) fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub(crate) fn json<T: serde::de::DeserializeOwned>(
        &self,
        service: &'static str,
        action: &str,
    ) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|e| CloudError::Protocol {
            service,
            action: action.to_owned(),
            detail: format!("invalid JSON ({e})"),
        })
    }

    /// The error for this (unsuccessful) answer.
    pub(crate) fn error(&self, service: &'static str, action: &str) -> CloudError {
        CloudError::Http {
            service,
            action: action.to_owned(),
            status: self.status,
            detail: server_message(&self.body),
        }
    }

    /// `Ok(self)` for a 2xx answer, the error otherwise.
    pub(crate) fn ok(self, service: &'static str, action: &str) -> Result<Self> {
        if self.is_success() {
            Ok(self)
        } else {
            Err(self.error(service, action))
        }
    }
}

/// The shared HTTP client.
#[derive(Clone)]
pub struct Http {
    agent: ureq::Agent,
    opts: HttpOptions,
    /// Request body bytes handed to the network by this client and its clones, retries
    /// included: what the upload really cost (`bench-upload.sh` reports it).
    sent: Arc<AtomicU64>,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http").field("opts", &self.opts).finish()
    }
}

const MAX_BODY: u64 = 64 << 20;

impl Http {
    /// A client with these options.
    pub fn new(opts: HttpOptions) -> Result<Self> {
        let mut tls = ureq::tls::TlsConfig::builder().disable_verification(!opts.verify_tls);
        if let Some(ca) = &opts.ca_file {
            let pem = std::fs::read(ca).map_err(|source| CloudError::Io {
                path: ca.clone(),
                source,
            })?;
            let mut certs = Vec::new();
            for item in ureq::tls::parse_pem(&pem) {
                match item {
                    Ok(ureq::tls::PemItem::Certificate(c)) => certs.push(c),
                    Ok(_) => {}
                    Err(e) => {
                        return Err(CloudError::Config {
                            path: ca.clone(),
                            reason: format!("not a PEM certificate file ({e})"),
                        })
                    }
                }
            }
            if certs.is_empty() {
                return Err(CloudError::Config {
                    path: ca.clone(),
                    reason: "holds no certificate".into(),
                });
            }
            tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&certs));
        }
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            // a redirect would carry X-Auth-Token to wherever it points
            .max_redirects(0)
            .user_agent(concat!("snf-image-creator/", env!("CARGO_PKG_VERSION")))
            .accept_encoding("identity")
            .tls_config(tls.build())
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_send_request(Some(Duration::from_secs(60)))
            .timeout_per_write(Some(Duration::from_secs(300)))
            // Glance answers a file upload only after it has stored and hashed it
            .timeout_recv_response(Some(Duration::from_secs(1800)))
            .timeout_recv_body(Some(Duration::from_secs(600)))
            .max_idle_connections_per_host(8)
            .output_buffer_size(256 * 1024)
            .build();
        Ok(Http {
            agent: config.new_agent(),
            opts,
            sent: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Request body bytes sent so far by this client and its clones (retries included).
    pub fn bytes_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// The options this client was made with.
    pub fn options(&self) -> &HttpOptions {
        &self.opts
    }

    pub(crate) fn send_json(&self, jr: JsonRequest<'_>) -> Result<Response> {
        let JsonRequest { req, data } = jr;
        self.send(req.body(Body::Bytes(&data)))
    }

    /// Send, retrying transient failures with exponential backoff.
    pub(crate) fn send(&self, req: Request<'_>) -> Result<Response> {
        let mut wait = self.opts.backoff;
        let attempts = self.opts.attempts.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            snf_core::cancel::check()?;
            let mut counted = 0u64;
            let outcome = self.send_once(&req, &mut counted);
            self.sent.fetch_add(counted, Ordering::Relaxed);
            let transient = match &outcome {
                Ok(r) => matches!(r.status, 408 | 429 | 500 | 502 | 503 | 504),
                Err(Attempt::Transport(_)) => true,
                Err(Attempt::Fatal(_)) => false,
            };
            if !transient || attempt >= attempts {
                return match outcome {
                    Ok(r) => Ok(r),
                    Err(Attempt::Fatal(e)) => Err(e),
                    Err(Attempt::Transport(reason)) => Err(CloudError::Transport {
                        service: req.service,
                        action: req.action.clone(),
                        attempts: attempt,
                        reason,
                    }),
                };
            }
            if let Some(p) = req.progress {
                p.sub(counted);
            }
            if let Some(RetryNotice(notify)) = &self.opts.on_retry {
                let why = match &outcome {
                    Ok(r) => format!("HTTP {}", r.status),
                    Err(Attempt::Transport(reason)) => reason.clone(),
                    Err(Attempt::Fatal(e)) => e.to_string(),
                };
                notify(&format!(
                    "{}: {} failed ({why}); retrying {}/{attempts} in {:.1} s",
                    req.service,
                    req.action,
                    attempt + 1,
                    wait.as_secs_f64()
                ));
            }
            sleep_cancellable(wait)?;
            wait = (wait * 2).min(Duration::from_secs(30));
        }
    }

    fn send_once(
        &self,
        req: &Request<'_>,
        counted: &mut u64,
    ) -> std::result::Result<Response, Attempt> {
        let mut b = ureq::http::Request::builder()
            .method(req.method)
            .uri(&req.url);
        if let Some(t) = req.token {
            b = b.header("X-Auth-Token", t.expose());
        }
        for (k, v) in &req.headers {
            b = b.header(k.as_str(), v.as_str());
        }
        let has_body =
            !matches!(req.body, Body::Empty) || matches!(req.method, "PUT" | "POST" | "PATCH");
        if has_body {
            b = b.header("Content-Length", req.body.len().to_string());
        }
        let mut hasher = req.md5.then(Md5::new);
        let result = {
            let reader: Box<dyn Read + '_> = match req.body {
                Body::Empty => Box::new(io::empty()),
                Body::Bytes(data) => Box::new(data),
                Body::File { path, offset, len } => {
                    let mut f = File::open(path).map_err(|source| {
                        Attempt::Fatal(CloudError::Io {
                            path: path.to_path_buf(),
                            source,
                        })
                    })?;
                    f.seek(SeekFrom::Start(offset)).map_err(|source| {
                        Attempt::Fatal(CloudError::Io {
                            path: path.to_path_buf(),
                            source,
                        })
                    })?;
                    Box::new(f.take(len))
                }
            };
            let mut counting = Counting {
                inner: reader,
                hasher: hasher.as_mut(),
                progress: req.progress,
                counted,
            };
            let http_req = b
                .body(ureq::SendBody::from_reader(&mut counting))
                .map_err(|e| {
                    Attempt::Fatal(CloudError::Unsupported(format!(
                        "invalid request to {}: {e}",
                        req.service
                    )))
                })?;
            self.agent.run(http_req)
        };
        let mut resp = result.map_err(|e| match e {
            _ if snf_core::cancel::is_requested() => {
                Attempt::Fatal(CloudError::Cancelled(snf_core::Cancelled))
            }
            ureq::Error::BadUri(u) => Attempt::Fatal(CloudError::Unsupported(format!(
                "{}: invalid URL {u}",
                req.service
            ))),
            other => Attempt::Transport(describe(&other)),
        })?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = if req.method == "HEAD" {
            Vec::new()
        } else {
            resp.body_mut()
                .with_config()
                .limit(MAX_BODY)
                .read_to_vec()
                .map_err(|e| Attempt::Transport(describe(&e)))?
        };
        Ok(Response {
            status,
            headers,
            body,
            sent_md5: hasher.map(Md5::finalize_hex),
        })
    }
}

enum Attempt {
    Transport(String),
    Fatal(CloudError),
}

/// Reads the body through, hashing, counting progress and honouring cancellation.
struct Counting<'a, 'b> {
    inner: Box<dyn Read + 'a>,
    hasher: Option<&'b mut Md5>,
    progress: Option<&'b Progress>,
    counted: &'b mut u64,
}

impl Read for Counting<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if snf_core::cancel::is_requested() {
            return Err(io::Error::other("cancelled by the user"));
        }
        let n = self.inner.read(buf)?;
        if let Some(h) = self.hasher.as_mut() {
            h.update(&buf[..n]);
        }
        if let Some(p) = self.progress {
            p.add(n as u64);
        }
        *self.counted += n as u64;
        Ok(n)
    }
}

fn describe(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(t) => format!("timed out ({t})"),
        ureq::Error::ConnectionFailed => {
            "could not connect (connection refused or host unreachable)".into()
        }
        ureq::Error::HostNotFound => "host not found".into(),
        ureq::Error::Io(io) => match io.kind() {
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => {
                format!("the connection was dropped ({io})")
            }
            io::ErrorKind::UnexpectedEof => "the server closed the connection early".into(),
            io::ErrorKind::ConnectionRefused => "could not connect (connection refused)".into(),
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => "timed out".into(),
            _ => io.to_string(),
        },
        other => other.to_string(),
    }
}

/// Wait, waking up to notice a cancellation request.
pub(crate) fn sleep_cancellable(d: Duration) -> Result<()> {
    let step = Duration::from_millis(100);
    let mut left = d;
    while !left.is_zero() {
        snf_core::cancel::check()?;
        let s = left.min(step);
        std::thread::sleep(s);
        left -= s;
    }
    snf_core::cancel::check()?;
    Ok(())
}

/// The server's error text, one line, at most 300 characters: the `message` of a JSON
/// error document, else the text with HTML tags removed.
pub(crate) fn server_message(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
        let found = [
            "/error/message",
            "/message",
            "/badRequest/message",
            "/itemNotFound/message",
            "/forbidden/message",
            "/unauthorized/message",
            "/conflict/message",
        ]
        .iter()
        .find_map(|p| v.pointer(p).and_then(|m| m.as_str()).map(str::to_owned))
        .or_else(|| {
            v.as_object().and_then(|o| {
                o.values()
                    .find_map(|x| x.get("message")?.as_str().map(str::to_owned))
            })
        });
        if let Some(m) = found {
            return shorten(&m);
        }
    }
    // HTML error pages repeat the status in <title> and <h1>; the status is reported anyway
    let mut text = text.into_owned();
    for tag in ["title", "h1"] {
        while let (Some(a), Some(b)) = (
            text.find(&format!("<{tag}>")),
            text.find(&format!("</{tag}>")),
        ) {
            if b < a {
                break;
            }
            text.replace_range(a..b + tag.len() + 3, " ");
        }
    }
    let mut out = String::new();
    let mut in_tag = false;
    for c in text.chars() {
        match c {
            '<' => {
                in_tag = true;
                out.push(' ');
            }
            '>' => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    shorten(&out)
}

fn shorten(s: &str) -> String {
    let one: Vec<&str> = s.split_whitespace().collect();
    let mut line = one.join(" ");
    if line.chars().count() > 300 {
        line = line.chars().take(297).collect::<String>() + "...";
    }
    line
}

/// Percent-encode a path component (or, with `keep_slash`, an object name whose `/`
/// are part of the path), as Python's `urllib.quote` does.
pub(crate) fn quote(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Undo percent-encoding (invalid escapes are kept as they are).
pub(crate) fn unquote(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex_val(bytes[i + 1]), hex_val(bytes[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_round_trips() {
        assert_eq!(quote("a b/ü", true), "a%20b/%C3%BC");
        assert_eq!(quote("a b/ü", false), "a%20b%2F%C3%BC");
        assert_eq!(unquote("a%20b/%C3%BC"), "a b/ü");
        assert_eq!(unquote("100%"), "100%");
        assert_eq!(unquote("%4"), "%4");
    }

    #[test]
    fn server_messages_are_cut_to_one_line() {
        assert_eq!(
            server_message(b"<html><body><h1>403 Forbidden</h1>\n You are not authorized to publicize image\n</body></html>"),
            "You are not authorized to publicize image"
        );
        assert_eq!(
            server_message(br#"{"error": {"code": 401, "message": "The request you have made requires authentication.", "title": "Unauthorized"}}"#),
            "The request you have made requires authentication."
        );
    }
}
