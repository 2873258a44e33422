//! What the cloud client makes of the answers of the servers it talks to: Keystone
//! (versions, token, catalog), Astakos, Swift (info, HEAD, listings), Pithos (container
//! block info, hashmap answers), Glance (image JSON) and Plankton (headers).
//!
//! A local HTTP server answers the client's requests, in order, with the responses the
//! input holds (`STATUS`, header lines, a blank line, the body; responses separated by
//! NUL); once they run out, every request gets 404. The client then runs what a real
//! upload does: connect, preflight, upload, register.
#![no_main]
use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use snf_cloud::{Account, Cloud, CloudOptions, ImageSource, Secret};
use snf_fuzz::sections;

static QUEUE: Mutex<VecDeque<Vec<u8>>> = Mutex::new(VecDeque::new());
/// Glance is polled until the image is active, sleeping in between: one poll answer
/// per input keeps every input fast.
static POLLS: Mutex<u32> = Mutex::new(0);

fn server() -> u16 {
    static PORT: OnceLock<u16> = OnceLock::new();
    *PORT.get_or_init(|| {
        let l = TcpListener::bind("127.0.0.1:0").expect("a local port");
        let port = l.local_addr().expect("its address").port();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let _ = serve(s);
            }
        });
        port
    })
}

fn serve(s: TcpStream) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut r = BufReader::new(s.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let request = line.clone();
    let (mut len, mut chunked) = (0usize, false);
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        let l = line.to_ascii_lowercase();
        if let Some(v) = l.strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
        chunked |= l.starts_with("transfer-encoding:") && l.contains("chunked");
    }
    if chunked {
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let n = usize::from_str_radix(line.trim(), 16).unwrap_or(0);
            let mut skip = vec![0; n + 2];
            r.read_exact(&mut skip)?;
            if n == 0 {
                break;
            }
        }
    } else {
        std::io::copy(&mut r.by_ref().take(len as u64), &mut std::io::sink())?;
    }
    let poll = request.starts_with("GET ") && request.contains("/v2/images/");
    let answer = {
        let mut polls = POLLS.lock().unwrap();
        if poll && *polls > 0 {
            None
        } else {
            *polls += u32::from(poll);
            QUEUE.lock().unwrap().pop_front()
        }
    };
    let mut s = s;
    s.write_all(&response(answer.as_deref()))?;
    s.flush()
}

/// A well-formed HTTP/1.1 response carrying the input's status, headers and body
/// (the framing is the server's, so the client always sees the whole answer).
fn response(raw: Option<&[u8]>) -> Vec<u8> {
    let Some(raw) = raw else {
        return b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            .to_vec();
    };
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .filter(|s| (200..600).contains(s))
        .unwrap_or(200);
    let mut out = format!("HTTP/1.1 {status} X\r\n");
    for l in lines {
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        let k = k.trim();
        let ok_name = !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        let framing = ["content-length", "transfer-encoding", "connection"]
            .iter()
            .any(|f| k.eq_ignore_ascii_case(f));
        if ok_name && !framing && v.bytes().all(|b| (0x20..0x7f).contains(&b) || b == b'\t') {
            out.push_str(&format!("{k}: {}\r\n", v.trim()));
        }
    }
    out.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let mut out = out.into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

fn image() -> &'static ImageSource {
    static IMAGE: OnceLock<(tempfile::TempDir, ImageSource)> = OnceLock::new();
    &IMAGE
        .get_or_init(|| {
            let dir = snf_fuzz::scratch_dir();
            let path = dir.path().join("image.raw");
            let data = vec![0x5a; 8192];
            std::fs::write(&path, &data).expect("the image");
            let md5 = snf_core::md5::to_hex(&snf_core::md5::Md5::digest(&data));
            let src = ImageSource {
                path,
                size: data.len() as u64,
                md5,
            };
            (dir, src)
        })
        .1
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, data)) = data.split_first() else {
        return;
    };
    let port = server();
    {
        let mut q = QUEUE.lock().unwrap();
        q.clear();
        q.extend(sections(data, 16).into_iter().map(<[u8]>::to_vec));
        *POLLS.lock().unwrap() = 0;
    }
    let version = ["/v2.0", "/v3", ""][usize::from(which % 3)];
    let account = Account::from_url_token(
        &format!("http://127.0.0.1:{port}/identity{version}"),
        Secret::new("token"),
    );
    let mut opts = CloudOptions::default();
    opts.http.attempts = 1;
    opts.http.backoff = Duration::ZERO;
    opts.workers = 1;
    let quiet = snf_core::report::Quiet;
    let Ok(cloud) = Cloud::connect_with(&account, opts, &quiet) else {
        return;
    };
    if cloud.preflight("images", "img", true, false).is_err() {
        return;
    }
    if cloud
        .upload_image("images", "img", image(), &quiet)
        .is_err()
    {
        return;
    }
    let props = BTreeMap::from([("OSFAMILY".to_string(), "linux".to_string())]);
    let _ = cloud.register(
        "images",
        "img",
        "img",
        image(),
        &props,
        which & 4 != 0,
        &quiet,
    );
});
