//! The command line of `snf-image-creator` (in the library so that the man page and the
//! shell completions are generated from it: `cargo run -p xtask`).

use std::path::PathBuf;

use clap::Parser;
use image_creator::VERSION;

/// Create a cloud image from a disk, interactively.
#[derive(Debug, Parser)]
#[command(name = "snf-image-creator", version = VERSION)]
pub struct Cli {
    /// Log all messages to FILE (truncated); without it, a temporary log is kept only
    /// after a fatal error
    #[arg(short = 'l', long = "logfile", value_name = "FILE")]
    pub logfile: Option<PathBuf>,
    /// Work on the source itself instead of a private copy (the source is changed)
    #[arg(long = "no-snapshot")]
    pub no_snapshot: bool,
    /// Also send the log to syslog
    #[arg(long)]
    pub syslog: bool,
    /// Create the large temporary files under DIR
    #[arg(long, value_name = "DIR")]
    pub tmpdir: Option<PathBuf>,
    /// The disk image file or block device (asked for when missing or unusable)
    #[arg(value_name = "SOURCE")]
    pub source: Option<PathBuf>,
}
