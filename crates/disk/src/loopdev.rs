//! A loop device over part of a file, detached when dropped: shared by the shrink (a
//! filesystem resized in place) and host bundling (new filesystems made and mounted).

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use snf_core::command::{self, CommandError};

/// losetup only asks the kernel: a fixed limit, not one that grows with the data.
const LOSETUP_LIMIT: Duration = Duration::from_secs(60);

/// A loop device over `size` bytes of a file from `offset`, detached when dropped.
#[derive(Debug)]
pub struct LoopDevice {
    dev: PathBuf,
}

impl LoopDevice {
    /// `losetup -f --show -o OFFSET --sizelimit SIZE IMAGE` (needs root).
    pub fn attach(image: &Path, offset: u64, size: u64) -> Result<LoopDevice, CommandError> {
        let out = command::run_with_limit(
            Command::new("losetup")
                .args(["-f", "--show", "-o", &offset.to_string(), "--sizelimit"])
                .arg(size.to_string())
                .arg(image),
            LOSETUP_LIMIT,
        )?;
        let dev = out.stdout.trim();
        if dev.is_empty() {
            return Err(CommandError::Io {
                program: "losetup".into(),
                source: io::Error::other("it printed no device name"),
            });
        }
        Ok(LoopDevice {
            dev: PathBuf::from(dev),
        })
    }

    /// The device node (`/dev/loopN`).
    pub fn path(&self) -> &Path {
        &self.dev
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        // udev or a prober may still hold the device for a moment after a tool closed it.
        for attempt in 0..20 {
            if command::run_with_limit(
                Command::new("losetup").arg("-d").arg(&self.dev),
                LOSETUP_LIMIT,
            )
            .is_ok()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50 * (attempt + 1)));
        }
    }
}
