//! A tiny command-line front-end to the binding, for poking at images by hand and for
//! the test that proves no root is needed:
//!
//! ```text
//! ext2fs-tool IMAGE OFFSET cat PATH        print a file
//! ext2fs-tool IMAGE OFFSET ls PATH         list a directory
//! ext2fs-tool IMAGE OFFSET put PATH TEXT   create or replace a file with TEXT
//! ext2fs-tool IMAGE OFFSET rm PATH         remove a file
//! ext2fs-tool IMAGE OFFSET info            superblock summary
//! ```
//!
//! Paths are resolved component by component from the root, without following symlinks.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use ext2fs::{Ext2Fs, Ino, NewInode, ROOT_INO};

fn resolve(fs: &mut Ext2Fs, path: &str) -> Result<Ino, String> {
    let mut ino = ROOT_INO;
    for part in path.split('/').filter(|p| !p.is_empty()) {
        ino = fs
            .lookup(ino, part.as_bytes())
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("{path}: no such file or directory"))?;
    }
    Ok(ino)
}

fn split_parent(path: &str) -> (&str, &str) {
    let path = path.trim_end_matches('/');
    match path.rfind('/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("", path),
    }
}

fn run(args: &[String]) -> Result<(), String> {
    let [image, offset, cmd, rest @ ..] = args else {
        return Err("usage: ext2fs-tool IMAGE OFFSET (cat|ls|put|rm|info) [ARGS]".into());
    };
    let offset: u64 = offset
        .parse()
        .map_err(|_| format!("bad offset {offset:?}"))?;
    let writable = matches!(cmd.as_str(), "put" | "rm");
    let mut fs = Ext2Fs::open(Path::new(image), offset, writable).map_err(|e| e.to_string())?;
    let mut out = std::io::stdout().lock();
    match (cmd.as_str(), rest) {
        ("info", []) => {
            let i = fs.info();
            writeln!(
                out,
                "{} uuid={} label={:?} blocks={} free={} block_size={}",
                i.kind().name(),
                i.uuid_string(),
                i.label,
                i.blocks_count,
                i.free_blocks,
                i.block_size
            )
            .map_err(|e| e.to_string())?;
        }
        ("cat", [path]) => {
            let ino = resolve(&mut fs, path)?;
            let mut buf = vec![0u8; 1 << 16];
            let mut off = 0u64;
            loop {
                let n = fs.read_at(ino, off, &mut buf).map_err(|e| e.to_string())?;
                if n == 0 {
                    break;
                }
                out.write_all(&buf[..n]).map_err(|e| e.to_string())?;
                off += n as u64;
            }
        }
        ("ls", [path]) => {
            let ino = resolve(&mut fs, path)?;
            for e in fs.read_dir(ino).map_err(|e| e.to_string())? {
                writeln!(out, "{}", String::from_utf8_lossy(&e.name)).map_err(|e| e.to_string())?;
            }
        }
        ("put", [path, text]) => {
            let (parent, name) = split_parent(path);
            let dir = resolve(&mut fs, parent)?;
            let ino = match fs.lookup(dir, name.as_bytes()).map_err(|e| e.to_string())? {
                Some(ino) => ino,
                None => fs
                    .create(
                        dir,
                        name.as_bytes(),
                        NewInode {
                            mode: 0o644,
                            uid: 0,
                            gid: 0,
                        },
                    )
                    .map_err(|e| e.to_string())?,
            };
            fs.set_size(ino, 0).map_err(|e| e.to_string())?;
            fs.write_at(ino, 0, text.as_bytes())
                .map_err(|e| e.to_string())?;
        }
        ("rm", [path]) => {
            let (parent, name) = split_parent(path);
            let dir = resolve(&mut fs, parent)?;
            fs.unlink(dir, name.as_bytes()).map_err(|e| e.to_string())?;
        }
        _ => return Err(format!("bad command {cmd:?} or arguments")),
    }
    fs.close().map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ext2fs-tool: {e}");
            ExitCode::FAILURE
        }
    }
}
