//! The command line: every option of the original `snf-mkimage`, plus `--json`,
//! `-v/--verbose` and `--dry-run`, and the checks that make a bad command line exit 2.

use std::path::PathBuf;

use clap::Parser;
use image_creator::metadata::{self, Metadata};
use image_creator::options::{self, CloudOptions, PrintRequest, RunOptions};

/// Create a cloud image (a raw "diskdump" plus .meta, .md5sum and .variant files) from a
/// disk image file or a block device, without touching the source.
#[derive(Debug, Parser)]
#[command(
    name = "snf-mkimage",
    version,
    after_help = "Progress and messages go to stderr; results (--print-* output, the \
registration result) go to stdout.\n\nExit status: 0 on success, 1 on failure, 2 on a bad \
command line, 130 when interrupted by SIGINT and 143 by SIGTERM."
)]
pub struct Cli {
    /// The source media: an image file in any format qemu-img reads, a block device, or
    /// / (the running host)
    #[arg(value_name = "SOURCE")]
    pub source: PathBuf,

    /// Use this authentication URL when uploading/registering images
    #[arg(short = 'a', long = "authentication-url", value_name = "URL")]
    pub authentication_url: Option<String>,

    /// Prefix every output line with the seconds since the start ([<N>s] )
    #[arg(long)]
    pub add_timestamp: bool,

    /// Proceed with the image creation even if the media is not supported
    #[arg(long)]
    pub allow_unsupported: bool,

    /// Use this saved cloud account to authenticate when uploading/registering images
    /// (kamaki's config or clouds.yaml); without a name, OS_CLOUD, else the OS_*
    /// variables, as every OpenStack client does (also when -u has no -c, -a or -t)
    #[arg(short = 'c', long, value_name = "CLOUD", num_args = 0..=1)]
    pub cloud: Option<Option<String>>,

    /// Container of the storage service to upload into [default: images]
    #[arg(long, value_name = "CONTAINER")]
    pub container: Option<String>,

    /// Prevent SYSPREP operation from running on the input media (repeatable)
    #[arg(long = "disable-sysprep", value_name = "SYSPREP")]
    pub disable_sysprep: Vec<String>,

    /// Run SYSPREP operation on the input media (repeatable; applied after the disables)
    #[arg(long = "enable-sysprep", value_name = "SYSPREP")]
    pub enable_sysprep: Vec<String>,

    /// Overwrite output files if they exist
    #[arg(short = 'f', long)]
    pub force: bool,

    /// Mount the media on the host and run SCRIPT against it before system
    /// preparation, with the guest root as working directory (repeatable)
    #[arg(long = "host-run", value_name = "SCRIPT")]
    pub host_run: Vec<PathBuf>,

    /// Kill a --host-run script that runs longer than SECONDS and fail the run (0, the
    /// default: no limit)
    #[arg(long = "host-run-timeout", value_name = "SECONDS", default_value_t = 0)]
    pub host_run_timeout: u64,

    /// Install VirtIO drivers from DIR into the media (Windows only)
    #[arg(long = "install-virtio", value_name = "DIR")]
    pub install_virtio: Option<PathBuf>,

    /// Add custom KEY=VALUE metadata to the image; KEY is made of [A-Za-z0-9_] and is
    /// upper-cased; overrides detected values (repeatable)
    #[arg(short = 'm', long = "metadata", value_name = "KEY=VALUE")]
    pub metadata: Vec<String>,

    /// Don't snapshot the input media: work on the source itself (DANGEROUS: the
    /// source is changed)
    #[arg(long = "no-snapshot")]
    pub no_snapshot: bool,

    /// Don't perform any system preparation operation (nor shrink)
    #[arg(long = "no-sysprep")]
    pub no_sysprep: bool,

    /// Dump the image to FILE, with FILE.meta, FILE.md5sum and FILE.variant beside it
    #[arg(short = 'o', long = "outfile", value_name = "FILE")]
    pub outfile: Option<PathBuf>,

    /// Print the detected image metadata (after the -m values are merged)
    #[arg(long = "print-metadata")]
    pub print_metadata: bool,

    /// Print the enabled and disabled system preparation operations for this media
    #[arg(long = "print-syspreps")]
    pub print_syspreps: bool,

    /// Print the system preparation parameters for this media
    #[arg(long = "print-sysprep-params")]
    pub print_sysprep_params: bool,

    /// Register the image with the cloud as public (needs -r)
    #[arg(long)]
    pub public: bool,

    /// Register the image with the cloud as IMAGENAME (needs -u)
    #[arg(short = 'r', long, value_name = "IMAGENAME")]
    pub register: Option<String>,

    /// Output only errors (results still go to stdout)
    #[arg(short = 's', long, conflicts_with = "verbose")]
    pub silent: bool,

    /// Also log every message to syslog
    #[arg(long)]
    pub syslog: bool,

    /// Add a KEY=VALUE system preparation parameter (repeatable)
    #[arg(long = "sysprep-param", value_name = "KEY=VALUE")]
    pub sysprep_param: Vec<String>,

    /// Use this authentication token when uploading/registering images
    #[arg(short = 't', long, value_name = "TOKEN")]
    pub token: Option<String>,

    /// Create large temporary files (the working copy of the media) under DIR
    #[arg(long, value_name = "DIR")]
    pub tmpdir: Option<PathBuf>,

    /// Upload the image to the cloud's storage service with name FILENAME
    #[arg(short = 'u', long, value_name = "FILENAME")]
    pub upload: Option<String>,

    /// Print every --print-* report as JSON on stdout
    #[arg(long)]
    pub json: bool,

    /// Show details, such as each file a system preparation operation changed
    #[arg(short = 'v', long)]
    pub verbose: bool,

    /// Go through every stage but write nothing: system preparation lists what it
    /// would change and no output file is written
    #[arg(long = "dry-run")]
    pub dry_run: bool,
}

/// A command line that parses but makes no sense; printed as `Error: <msg>`, exit 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl Cli {
    /// Check the command line as a whole and turn it into the library's run options.
    pub fn to_run_options(&self) -> Result<RunOptions, UsageError> {
        let usage = |msg: &str| Err(UsageError(msg.to_string()));
        let mut meta = Metadata::new();
        for m in &self.metadata {
            meta.insert_assignment(m)
                .map_err(|e| UsageError(e.to_string()))?;
        }
        let mut sysprep_params = Vec::new();
        for p in &self.sysprep_param {
            let (k, v) = metadata::split_assignment(p).map_err(|e| UsageError(e.to_string()))?;
            sysprep_params.push((k.to_string(), v.to_string()));
        }
        let print = PrintRequest {
            metadata: self.print_metadata,
            syspreps: self.print_syspreps,
            sysprep_params: self.print_sysprep_params,
        };
        if self.outfile.is_none() && self.upload.is_none() && !print.any() {
            return usage(
                "At least one of `-o', `-u', `--print-metadata', `--print-syspreps' or \
                 `--print-sysprep-params' must be set",
            );
        }
        let lib = |e: options::OptionsError| UsageError(e.to_string());
        options::check_source(&self.source).map_err(lib)?;
        if let Some(dir) = &self.tmpdir {
            options::check_tmpdir(dir).map_err(lib)?;
        }
        if let Some(out) = &self.outfile {
            options::check_outfile(out, self.force).map_err(lib)?;
        }

        let mut opts = RunOptions::new(self.source.clone());
        opts.outfile = self.outfile.clone();
        opts.force = self.force;
        opts.tmpdir = self.tmpdir.clone();
        opts.snapshot = !self.no_snapshot;
        opts.sysprep = !self.no_sysprep;
        opts.allow_unsupported = self.allow_unsupported;
        opts.metadata = meta;
        opts.enable_syspreps = self.enable_sysprep.clone();
        opts.disable_syspreps = self.disable_sysprep.clone();
        opts.sysprep_params = sysprep_params;
        opts.host_run = self.host_run.clone();
        opts.host_run_timeout = (self.host_run_timeout > 0)
            .then(|| std::time::Duration::from_secs(self.host_run_timeout));
        opts.install_virtio = self.install_virtio.clone();
        opts.print = print;
        opts.cloud = CloudOptions {
            auth_url: self.authentication_url.clone(),
            token: self.token.clone(),
            cloud: self.cloud_name(|k| std::env::var(k).ok())?,
            container: self.container.clone(),
            upload: self.upload.clone(),
            register: self.register.clone(),
            public: self.public,
        };
        opts.dry_run = self.dry_run;
        // The library decides what makes sense, so that the UI refuses the same things.
        image_creator::session::check_options(&opts).map_err(|e| UsageError(e.to_string()))?;
        Ok(opts)
    }

    /// The cloud `-c` names. `-c` alone, or `-u` with none of `-c`, `-a` and `-t`,
    /// means the cloud every OpenStack client would use: `OS_CLOUD`, else the `OS_*`
    /// variables (the cloud `envvars`) when `OS_AUTH_URL` is set. Without them `-c`
    /// alone is refused, and `-u` alone keeps the original's refusal (the library's).
    pub fn cloud_name(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<String>, UsageError> {
        let from_env = || {
            let set = |k: &str| env(k).filter(|v| !v.trim().is_empty());
            set("OS_CLOUD").or_else(|| set("OS_AUTH_URL").map(|_| "envvars".to_owned()))
        };
        match &self.cloud {
            Some(Some(name)) => Ok(Some(name.clone())),
            Some(None) => from_env().map(Some).ok_or_else(|| {
                UsageError(
                    "-c without a cloud name needs OS_CLOUD, or the OS_* variables \
                     (OS_AUTH_URL, ...), in the environment"
                        .into(),
                )
            }),
            None if self.upload.is_some()
                && self.authentication_url.is_none()
                && self.token.is_none() =>
            {
                Ok(from_env())
            }
            None => Ok(None),
        }
    }

    /// Options of this front-end that have no effect in this run (the library reports
    /// its own through the session).
    pub fn ineffective(&self) -> Vec<&'static str> {
        let mut unused = Vec::new();
        if self.json && !(self.print_metadata || self.print_syspreps || self.print_sysprep_params) {
            unused.push("--json has no effect without --print-metadata, --print-syspreps or --print-sysprep-params");
        }
        unused
    }
}

/// clap's error text on one line: the message without the usage block and the tips.
pub fn one_line(err: &clap::Error) -> String {
    let text = err.to_string();
    let head = text.split("\n\n").next().unwrap_or(&text);
    let head = head.trim().strip_prefix("error:").unwrap_or(head).trim();
    head.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn cloud_name_from_the_openstack_environment() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from([&["snf-mkimage"], args, &["src"]].concat()).unwrap()
        };
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let both = env(&[("OS_CLOUD", "mine"), ("OS_AUTH_URL", "http://k/v3")]);
        let url = env(&[("OS_AUTH_URL", "http://k/v3"), ("OS_CLOUD", "")]);
        let none = env(&[]);
        let name = |args: &[&str], e: &dyn Fn(&str) -> Option<String>| {
            parse(args).cloud_name(e).map_err(|e| e.0)
        };
        assert_eq!(
            name(&["-u", "x", "-c", "named"], &both),
            Ok(Some("named".into()))
        );
        assert_eq!(name(&["-c", "-u", "x"], &both), Ok(Some("mine".into())));
        assert_eq!(name(&["-c", "-u", "x"], &url), Ok(Some("envvars".into())));
        assert_eq!(name(&["-u", "x"], &both), Ok(Some("mine".into())));
        assert_eq!(name(&["-u", "x"], &url), Ok(Some("envvars".into())));
        assert_eq!(name(&["-u", "x"], &none), Ok(None));
        assert!(name(&["-c", "-u", "x"], &none)
            .unwrap_err()
            .contains("OS_CLOUD"));
        // -a/-t given: the environment is not consulted (the library checks the pair)
        assert_eq!(name(&["-u", "x", "-t", "tok"], &both), Ok(None));
        // no -u: nothing to authenticate for
        assert_eq!(name(&["-o", "out"], &both), Ok(None));
    }

    #[test]
    fn clap_errors_become_one_line() {
        let err = Cli::try_parse_from(["snf-mkimage"]).unwrap_err();
        assert_eq!(
            one_line(&err),
            "the following required arguments were not provided: <SOURCE>"
        );
        let err = Cli::try_parse_from(["snf-mkimage", "--bogus", "x"]).unwrap_err();
        assert_eq!(one_line(&err), "unexpected argument '--bogus' found");
    }
}
