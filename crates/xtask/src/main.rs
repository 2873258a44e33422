//! `cargo run -p xtask -- assets DIR`: write the man pages (from the clap definitions,
//! with `clap_mangen`) and the bash, zsh and fish completions (`clap_complete`) of both
//! programs under DIR, as `scripts/package.sh` installs them:
//!
//! ```text
//! DIR/man/snf-mkimage.1             DIR/man/snf-image-creator.1
//! DIR/completions/bash/NAME         DIR/completions/zsh/_NAME
//! DIR/completions/fish/NAME.fish
//! ```

#![forbid(unsafe_code)]

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::CommandFactory;
use clap_complete::Shell;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [task, dir] if task == "assets" => assets(Path::new(dir)),
        _ => bail!("usage: cargo run -p xtask -- assets DIR"),
    }
}

/// The programs' command definitions, as their binaries parse them.
fn commands() -> Vec<clap::Command> {
    vec![
        snf_mkimage::cli::Cli::command(),
        snf_image_creator::cli::Cli::command(),
    ]
}

fn assets(dir: &Path) -> Result<()> {
    for cmd in commands() {
        let name = cmd.get_name().to_owned();
        let mut page = Vec::new();
        clap_mangen::Man::new(cmd.clone())
            .render(&mut page)
            .with_context(|| format!("rendering the man page of {name}"))?;
        write(&dir.join("man").join(format!("{name}.1")), &page)?;
        for (shell, file) in [
            (Shell::Bash, PathBuf::from("bash").join(&name)),
            (Shell::Zsh, PathBuf::from("zsh").join(format!("_{name}"))),
            (
                Shell::Fish,
                PathBuf::from("fish").join(format!("{name}.fish")),
            ),
        ] {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut cmd.clone(), &name, &mut out);
            write(&dir.join("completions").join(file), &out)?;
        }
    }
    Ok(())
}

fn write(path: &Path, data: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    fs::write(path, data).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn man_pages_and_completions_name_every_option() {
        let dir = tempfile_dir();
        assets(&dir).unwrap();
        let man = fs::read_to_string(dir.join("man/snf-mkimage.1")).unwrap();
        assert!(
            man.starts_with(".ie") || man.contains(".TH snf-mkimage"),
            "{man}"
        );
        for opt in [
            "\\-\\-upload",
            "\\-\\-register",
            "\\-\\-cloud",
            "\\-\\-public",
        ] {
            assert!(man.contains(opt), "{opt} missing from the man page");
        }
        let tui = fs::read_to_string(dir.join("man/snf-image-creator.1")).unwrap();
        assert!(tui.contains("\\-\\-logfile"), "{tui}");
        let bash = fs::read_to_string(dir.join("completions/bash/snf-mkimage")).unwrap();
        assert!(bash.contains("--sysprep-param"), "{bash}");
        assert!(dir.join("completions/zsh/_snf-image-creator").is_file());
        assert!(dir.join("completions/fish/snf-mkimage.fish").is_file());
        fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("xtask-assets-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }
}
