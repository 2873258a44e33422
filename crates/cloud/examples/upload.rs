//! Upload (and optionally register) a raw image file, as `snf-mkimage -u/-r` does.
//!
//! ```text
//! upload [-c CLOUD | -a URL -t TOKEN] [--container C] [-f] [-r IMAGENAME] [--public]
//!        [-m KEY=VALUE]... [--workers N] FILE [REMOTE_NAME]
//! ```
//! Without `-c`/`-a`, the account comes from `OS_CLOUD` or the `OS_*` variables.
//! Prints the registration JSON on stdout and `upload-seconds N` / statistics (with the
//! bytes sent per image byte) on stderr.

use std::collections::BTreeMap;
use std::io::Read;
use std::process::ExitCode;
use std::time::Instant;

use snf_cloud::{
    pretty_json, Account, AccountFinder, Cloud, CloudOptions, ImageSource, ImageSpec, Publication,
    Secret,
};
use snf_core::md5::Md5;
use snf_core::report::{Reporter, Task, Unit};

struct Stderr;
struct NoBar;
impl Task for NoBar {
    fn inc(&self, _n: u64) {}
    fn set_position(&self, _pos: u64) {}
    fn finish(&self, _result: &str) {}
}
impl Reporter for Stderr {
    fn info(&self, msg: &str) {
        eprintln!("{msg}");
    }
    fn detail(&self, msg: &str) {
        eprintln!("  {msg}");
    }
    fn warn(&self, msg: &str) {
        eprintln!("Warning: {msg}");
    }
    fn task(&self, title: &str, _total: u64, _unit: Unit) -> Box<dyn Task> {
        eprintln!("{title} ...");
        Box::new(NoBar)
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (mut cloud, mut url, mut token, mut container) = (None, None, None, "images".to_owned());
    let (mut force, mut register, mut public, mut workers) = (false, None, false, 4usize);
    let mut props = BTreeMap::new();
    let mut pos = Vec::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "-c" => cloud = args.next(),
            "-a" => url = args.next(),
            "-t" => token = args.next(),
            "--container" => container = args.next().ok_or("--container needs a value")?,
            "-f" => force = true,
            "-r" => register = args.next(),
            "--public" => public = true,
            "--workers" => workers = args.next().ok_or("--workers needs a value")?.parse()?,
            "-m" => {
                let kv = args.next().ok_or("-m needs KEY=VALUE")?;
                let (k, v) = kv.split_once('=').ok_or("-m needs KEY=VALUE")?;
                props.insert(k.to_ascii_uppercase(), v.to_owned());
            }
            _ => pos.push(a),
        }
    }
    let file = pos
        .first()
        .ok_or("usage: upload [options] FILE [REMOTE_NAME]")?
        .clone();
    let remote = pos.get(1).cloned().unwrap_or_else(|| {
        std::path::Path::new(&file)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    let account = match (cloud, url, token) {
        (_, Some(u), Some(t)) => Account::from_url_token(&u, Secret::new(t)),
        (Some(c), _, _) => Account::find(&c)?,
        _ => AccountFinder::from_process()
            .default_account()?
            .ok_or("no account: use -c, -a/-t, OS_CLOUD or OS_*")?,
    };
    let rep = Stderr;
    // timed: everything but the local MD5 pass (the dump stage computes it in the tool)
    let t_connect = Instant::now();
    let opts = CloudOptions {
        workers,
        ..Default::default()
    };
    let cloud = Cloud::connect_with(&account, opts, &rep)?;
    cloud.preflight(&container, &remote, register.is_some(), force)?;
    let connect_secs = t_connect.elapsed().as_secs_f64();

    let size = std::fs::metadata(&file)?.len();
    let mut h = Md5::new();
    let mut f = std::fs::File::open(&file)?;
    let mut buf = vec![0u8; 4 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let image = ImageSource {
        path: file.into(),
        size,
        md5: h.finalize_hex(),
    };

    let t = Instant::now();
    let before = cloud.bytes_sent();
    let publication = Publication {
        container: &container,
        object: &remote,
        register: register.as_deref().map(|name| ImageSpec {
            name,
            properties: &props,
            public,
        }),
        force,
    };
    let done = cloud.publish(&publication, &image, &rep)?;
    let upload_secs = t.elapsed().as_secs_f64();
    let sent = cloud.bytes_sent() - before;
    eprintln!("upload-seconds {upload_secs:.3}");
    eprintln!(
        "connect-and-upload-seconds {:.3}",
        connect_secs + upload_secs
    );
    let stats = &done.stats;
    eprintln!(
        "pieces-sent {} pieces-skipped {} pieces-total {} bytes-sent {} large-object {}",
        stats.pieces_sent,
        stats.pieces_skipped,
        stats.pieces_total,
        stats.bytes_sent,
        stats.large_object
    );
    // every request body, side files and retries included, per byte of the image
    eprintln!(
        "network-bytes {sent} per-image-byte {:.4}",
        sent as f64 / image.size.max(1) as f64
    );
    if let Some(answer) = &done.answer {
        println!("{}", pretty_json(answer));
    }
    Ok(())
}
