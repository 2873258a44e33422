//! Time all default system preparation operations on an ext2/3/4 root filesystem.
//!
//! Usage: bench_sysprep IMAGE OFFSET [UUID]
//!
//! IMAGE is a raw disk (worked on in place: pass a copy), OFFSET the byte offset of the
//! root filesystem in it, UUID its filesystem UUID (for use-persistent-block-device-names).
//! Prints `sysprep: <seconds> s (<n> changes)` on stdout.

use std::path::{Path, PathBuf};
use std::time::Instant;

use image_creator::metadata::Metadata;
use image_creator::sysprep::{
    self, GuestOs, MountedFs, OsFamily, Params, Registry, SysprepContext,
};
use snf_guestfs::{ExtFs, GuestFs};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: bench_sysprep IMAGE OFFSET [UUID]");
        std::process::exit(2);
    }
    let image = Path::new(&args[1]);
    let offset: u64 = args[2].parse()?;
    let start = Instant::now();
    let mut fs = GuestFs::new(Box::new(ExtFs::open(image, offset, true)?), "root");
    let mut meta = Metadata::new();
    meta.insert("OSFAMILY", "linux")?;
    meta.insert("OS", "debian")?;
    let os = GuestOs::from_metadata(&meta);
    let params = Params::for_family(OsFamily::Linux);
    let mut registry = Registry::for_family(OsFamily::Linux);
    registry.disable("shrink")?;
    let reporter = snf_core::report::Quiet;
    let reports = {
        let mut ctx = SysprepContext::new(&mut fs, &os, &mut meta, &params, &reporter)
            .with_filesystems(vec![MountedFs {
                mountpoint: PathBuf::from("/"),
                uuid: args.get(3).cloned(),
            }]);
        sysprep::run_enabled(&mut registry, &mut ctx)?
    };
    drop(fs.into_filesystems()?);
    let n: usize = reports.iter().map(|r| r.changes.changes.len()).sum();
    println!(
        "sysprep: {:.3} s ({n} changes)",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
