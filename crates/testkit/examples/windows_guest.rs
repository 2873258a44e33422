//! Build a Windows-shaped NTFS guest for the benchmark: BIOS layout (System Reserved +
//! `C:`), a generalized Windows 10 registry, and `FILES` files of 1 MiB of pseudo-random
//! data in `Users/Public/Data` (about `FILES` MiB used).
//!
//! Usage: windows_guest DIR C_MIB FILES — prints the image path (`DIR/win.img`).

use std::path::Path;

use snf_testkit::fixture::pseudo_random;
use snf_testkit::windows::{windows_disk, Firmware, WindowsSpec};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: windows_guest DIR C_MIB FILES");
        std::process::exit(2);
    }
    let c_mib: u64 = args[2].parse().expect("C_MIB");
    let files: u64 = args[3].parse().expect("FILES");
    let mut spec = WindowsSpec::windows10();
    for i in 0..files {
        // The paths of the spec live for the whole (short) program.
        let path: &'static str = Box::leak(format!("Users/Public/Data/file{i:05}.bin").into());
        spec.files.push((path, pseudo_random(1 << 20, 1000 + i)));
    }
    let img = windows_disk(Path::new(&args[1]), "win", &spec, Firmware::Bios, c_mib);
    println!("{}", img.display());
}
