//! Test support for the end-to-end tests that need a real guest.
//!
//! * [`debian_guest`] / [`debian_guest_info`]: real, bootable Debian 12 disk images (MBR,
//!   GPT, GPT booted by UEFI: [`DebianGuest::uefi_image`], and root on LVM:
//!   [`DebianGuest::lvm_image`]) made by `scripts/guest/build-debian.sh`, built once per machine into
//!   `target/test-guest/` (cached by the script's hash) and at most once per test run:
//!   a file lock makes parallel test binaries wait for the one that builds.
//! * [`boot_check`] / [`boot_check_with`]: boots an image under qemu (TCG; BIOS or UEFI,
//!   its disk on virtio-blk, virtio-scsi, SATA, NVMe or IDE) without writing to it and
//!   waits for a login prompt on the serial console (`scripts/guest/boot-check.sh`).
//! * [`deploy`]: does to an image what snf-image does when it deploys one to a bigger VM
//!   disk (`scripts/guest/deploy.sh`).
//! * [`partitions`], [`guest_file`]: read a disk's partition table and a file in one of
//!   its ext filesystems without mounting anything.
//! * [`fixture`]: the plumbing of every crate's fixtures: running tools, guest trees,
//!   partitioned disks with ext and swap filesystems made by the real tools.
//! * [`report::Recorder`]: a `Reporter` that keeps the messages for assertions.
//!
//! Building the guest, booting and deploying need root (loop devices, mount, debootstrap)
//! and `qemu-system-x86_64` (`scripts/guest/install-qemu-system.sh`).

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::Deserialize;
use snf_core::command::{self, CommandError};

pub mod bsdlabel;
pub mod fixture;
pub mod lvm;
pub mod ntfs;
pub mod report;
pub mod ufs;
pub mod windows;

/// What went wrong preparing or running a real-guest step.
#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    /// A script or tool ran and failed; `output` is everything it printed on stderr
    /// (for boot checks, the tail of the serial console).
    #[error("{program} failed ({status}):\n{output}")]
    Failed {
        program: String,
        status: String,
        output: String,
    },
    /// A script or tool could not be run at all.
    #[error(transparent)]
    Command(CommandError),
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a guest description: {source}", .path.display())]
    Info {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{what}: unexpected output: {detail}")]
    Parse { what: String, detail: String },
    #[error("{0} needs root (loop devices, mount); run the tests as root")]
    NotRoot(&'static str),
}

impl From<CommandError> for TestkitError {
    fn from(err: CommandError) -> Self {
        match err {
            CommandError::Failed {
                program,
                status,
                stderr,
                ..
            } => TestkitError::Failed {
                program,
                status: status.to_string(),
                output: stderr,
            },
            other => TestkitError::Command(other),
        }
    }
}

type Result<T> = std::result::Result<T, TestkitError>;

/// The workspace's root directory (where the top-level `Cargo.toml` is).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = here.join("../..");
    root.canonicalize().unwrap_or(root)
}

/// `scripts/guest/` of the workspace.
pub fn scripts_dir() -> PathBuf {
    workspace_root().join("scripts/guest")
}

/// Cargo's target directory: `$CARGO_TARGET_DIR` when set, else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    }
}

/// Where the Debian guest is built: `$SNF_TEST_GUEST_DIR`, else `<target>/test-guest`.
pub fn guest_dir() -> PathBuf {
    match std::env::var_os("SNF_TEST_GUEST_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => target_dir().join("test-guest"),
    }
}

fn require_root(what: &'static str) -> Result<()> {
    if rustix::process::geteuid().is_root() {
        Ok(())
    } else {
        Err(TestkitError::NotRoot(what))
    }
}

/// Which of the two guest images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// `debian12-mbr.raw`: p1 ext4 root (bootable), p2 swap.
    Mbr,
    /// `debian12-gpt.raw`: p1 BIOS boot, p2 ext4 root, p3 swap.
    Gpt,
}

/// One image's layout, as `guest.json` describes it.
#[derive(Debug, Clone, Deserialize)]
pub struct GuestImage {
    /// File name inside [`DebianGuest::dir`].
    pub file: String,
    pub root_partition: u32,
    /// The last partition.
    pub swap_partition: u32,
    /// GPT only: the EF02 partition GRUB's core image lives in.
    pub bios_boot_partition: Option<u32>,
    /// UEFI image only: the EFI system partition (FAT, mounted at `/boot/efi`).
    #[serde(default)]
    pub esp_partition: Option<u32>,
    /// UEFI image only: the ESP's FAT volume id as fstab names it (`XXXX-XXXX`).
    #[serde(default)]
    pub esp_uuid: Option<String>,
    pub root_uuid: String,
    pub swap_uuid: String,
}

/// The image whose root is on LVM (`debian12-lvm.raw`), as `guest.json` describes it:
/// MBR, p1 ext4 `/boot` (bootable), p2 (last) an LVM PV holding VG [`LvmGuestImage::vg`]
/// with LV [`LvmGuestImage::root_lv`] (ext4 `/`, first) and LV [`LvmGuestImage::swap_lv`]
/// (swap, [`GuestInfo::swap_mib`], after it). fstab names them `/dev/mapper/VG-root`,
/// `UUID=<boot_uuid>` and `/dev/VG/swap`; the kernel boots `root=/dev/mapper/VG-root`.
#[derive(Debug, Clone, Deserialize)]
pub struct LvmGuestImage {
    /// File name inside [`DebianGuest::dir`].
    pub file: String,
    pub boot_partition: u32,
    /// The partition holding the PV, the last one.
    pub pv_partition: u32,
    pub vg: String,
    pub root_lv: String,
    pub swap_lv: String,
    /// The VG's extent size, bytes.
    pub extent_size: u64,
    /// Where the PV's first extent starts, bytes from the start of the PV.
    pub pe_start: u64,
    pub root_extents: u64,
    pub swap_extents: u64,
    /// Filesystem UUIDs of `/boot`, the root LV and the swap LV.
    pub boot_uuid: String,
    pub root_uuid: String,
    pub swap_uuid: String,
    /// LVM's own UUIDs (dashed form, as `pvs`/`vgs`/`lvs` print them).
    pub pv_uuid: String,
    pub vg_uuid: String,
    pub root_lv_uuid: String,
    pub swap_lv_uuid: String,
    /// The guest's kernel release (`/boot/vmlinuz-<kernel>`).
    pub kernel: String,
}

impl LvmGuestImage {
    /// `vg/lv` of the root LV, as the `ROOT_LV` metadata names it.
    pub fn root_vg_lv(&self) -> String {
        format!("{}/{}", self.vg, self.root_lv)
    }
}

/// All images' layouts.
#[derive(Debug, Clone, Deserialize)]
pub struct GuestImages {
    pub mbr: GuestImage,
    pub gpt: GuestImage,
    /// GPT booted by UEFI: p1 ESP, p2 root, p3 swap (`debian12-uefi.raw`).
    pub uefi: GuestImage,
    pub lvm: LvmGuestImage,
}

/// The facts about the built guest that tests may rely on (`guest.json`).
#[derive(Debug, Clone, Deserialize)]
pub struct GuestInfo {
    pub hostname: String,
    /// Login name -> clear-text password; stored as SHA-512 crypt hashes in the guest.
    pub users: BTreeMap<String, String>,
    /// uid of the unprivileged user `user`.
    pub user_uid: u32,
    /// A root-only file (`/root/secret`) holding [`GuestInfo::secret_marker`].
    pub secret_path: String,
    pub secret_marker: String,
    /// Content of `/etc/machine-id` in the images.
    pub machine_id: String,
    /// Size of the trailing swap partition (of the swap LV on the LVM image).
    pub swap_mib: u64,
    pub images: GuestImages,
}

/// The built Debian guest: its directory and description.
#[derive(Debug, Clone)]
pub struct DebianGuest {
    /// The directory holding the images, `guest.json` and `id_ed25519` (the private key
    /// whose public half is in root's and user's `authorized_keys`).
    pub dir: PathBuf,
    pub info: GuestInfo,
}

impl DebianGuest {
    /// Layout of one of the images.
    pub fn layout(&self, table: Table) -> &GuestImage {
        match table {
            Table::Mbr => &self.info.images.mbr,
            Table::Gpt => &self.info.images.gpt,
        }
    }

    /// Path of one of the images. Tests must not modify it: copy it first
    /// (`cp --sparse=always`) or open it read-only.
    pub fn image(&self, table: Table) -> PathBuf {
        self.dir.join(&self.layout(table).file)
    }

    /// Layout of the UEFI image: GPT, p1 the EFI system partition (GRUB x86_64-efi at
    /// `EFI/BOOT/BOOTX64.EFI`, `/boot/efi` in fstab), p2 ext4 root, p3 swap.
    pub fn uefi(&self) -> &GuestImage {
        &self.info.images.uefi
    }

    /// Path of the UEFI image; as [`DebianGuest::image`], not to be modified.
    pub fn uefi_image(&self) -> PathBuf {
        self.dir.join(&self.uefi().file)
    }

    /// Layout of the image whose root is on LVM.
    pub fn lvm(&self) -> &LvmGuestImage {
        &self.info.images.lvm
    }

    /// Path of the image whose root is on LVM; as [`DebianGuest::image`], not to be
    /// modified.
    pub fn lvm_image(&self) -> PathBuf {
        self.dir.join(&self.lvm().file)
    }
}

static GUEST: OnceLock<DebianGuest> = OnceLock::new();

/// The directory holding the Debian 12 guest images, built on first use.
///
/// # Panics
/// When the guest cannot be built (not root, debootstrap or network failure): the
/// test cannot do anything meaningful without it, and the message says why.
pub fn debian_guest() -> &'static Path {
    &debian_guest_info().dir
}

/// The Debian 12 guest (images and description), built on first use.
///
/// # Panics
/// As [`debian_guest`].
pub fn debian_guest_info() -> &'static DebianGuest {
    GUEST.get_or_init(|| match build_debian_guest(&guest_dir()) {
        Ok(guest) => guest,
        Err(err) => panic!("cannot build the Debian test guest: {err}"),
    })
}

/// Run `build-debian.sh` into `dir` (a no-op when it is up to date) under an exclusive
/// file lock, so concurrent test processes build it once, and read its description.
pub fn build_debian_guest(dir: &Path) -> Result<DebianGuest> {
    require_root("building the Debian test guest")?;
    let parent = dir.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(parent).map_err(|source| TestkitError::Io {
        path: parent.to_path_buf(),
        source,
    })?;
    let lock_path = dir.with_extension("lock");
    let lock = lock_file(&lock_path)?;
    let script = scripts_dir().join("build-debian.sh");
    let res = command::run(Command::new("bash").arg(&script).arg(dir));
    drop(lock);
    res?;
    let info_path = dir.join("guest.json");
    let text = std::fs::read_to_string(&info_path).map_err(|source| TestkitError::Io {
        path: info_path.clone(),
        source,
    })?;
    let info = serde_json::from_str(&text).map_err(|source| TestkitError::Info {
        path: info_path,
        source,
    })?;
    Ok(DebianGuest {
        dir: dir.to_path_buf(),
        info,
    })
}

/// An open file holding an exclusive `flock`; the lock goes with the descriptor.
struct FileLock(#[allow(dead_code)] File);

fn lock_file(path: &Path) -> Result<FileLock> {
    let io = |source| TestkitError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io)?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| io(e.into()))?;
    Ok(FileLock(file))
}

/// What a successful boot check saw.
#[derive(Debug, Clone)]
pub struct BootReport {
    /// Wall time from starting qemu to the login prompt.
    pub elapsed: Duration,
    /// The serial console output (GRUB, kernel, systemd), escape sequences included.
    pub console: String,
}

/// The bus a boot check attaches the disk to (what clouds use: virtio-blk by default,
/// virtio-scsi with OpenStack's `hw_disk_bus=scsi`, SATA, NVMe).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DiskBus {
    /// virtio-blk: the guest sees `/dev/vda`.
    #[default]
    VirtioBlk,
    /// virtio-scsi: `/dev/sda`.
    VirtioScsi,
    /// SATA through an AHCI controller: `/dev/sda`.
    Sata,
    /// NVMe: `/dev/nvme0n1`.
    Nvme,
    /// Legacy IDE: `/dev/sda` (libata).
    Ide,
}

impl DiskBus {
    /// `SNF_BOOT_DISK_IF` of `boot-check.sh`.
    fn script_name(self) -> &'static str {
        match self {
            DiskBus::VirtioBlk => "virtio",
            DiskBus::VirtioScsi => "scsi",
            DiskBus::Sata => "sata",
            DiskBus::Nvme => "nvme",
            DiskBus::Ide => "ide",
        }
    }
}

/// The firmware a boot check starts the machine with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Firmware {
    /// SeaBIOS (legacy BIOS boot from the MBR / BIOS boot partition).
    #[default]
    Bios,
    /// OVMF (Debian's `ovmf` package): UEFI boot from the EFI system partition.
    Uefi,
}

/// How a boot check attaches the disk and which firmware boots it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BootOptions {
    pub bus: DiskBus,
    pub firmware: Firmware,
}

/// Boot `image` (raw) under qemu/TCG with snapshot=on, so the image is not written,
/// and wait up to `timeout` for a `login:` prompt on the serial console.
///
/// On failure the error carries the tail of the console log.
pub fn boot_check(image: &Path, timeout: Duration) -> Result<BootReport> {
    boot_check_with(image, timeout, BootOptions::default())
}

/// [`boot_check`] with the disk on `opts.bus` and booted by `opts.firmware`.
pub fn boot_check_with(image: &Path, timeout: Duration, opts: BootOptions) -> Result<BootReport> {
    let firmware = match opts.firmware {
        Firmware::Bios => "bios",
        Firmware::Uefi => "uefi",
    };
    let log = tempfile::NamedTempFile::new().map_err(|source| TestkitError::Io {
        path: std::env::temp_dir(),
        source,
    })?;
    let start = Instant::now();
    command::run(
        Command::new("bash")
            .arg(scripts_dir().join("boot-check.sh"))
            .arg(image)
            .arg(timeout.as_secs().max(1).to_string())
            .env("SNF_BOOT_LOG", log.path())
            .env("SNF_BOOT_DISK_IF", opts.bus.script_name())
            .env("SNF_BOOT_FIRMWARE", firmware),
    )?;
    let elapsed = start.elapsed();
    let console = std::fs::read(log.path()).map_err(|source| TestkitError::Io {
        path: log.path().to_path_buf(),
        source,
    })?;
    Ok(BootReport {
        elapsed,
        console: String::from_utf8_lossy(&console).into_owned(),
    })
}

/// Deploy the diskdump `image` with its `.meta` file `meta` to a new sparse VM disk
/// `out` of `size` bytes, as snf-image does: grow the last partition and its ext
/// filesystem, re-create the swap partition from `SWAP=<num>:<MiB>` and add it to
/// `/etc/fstab`. Fails (with the script's message) where snf-image would.
pub fn deploy(image: &Path, meta: &Path, out: &Path, size: u64) -> Result<()> {
    require_root("deploying an image")?;
    command::run(
        Command::new("bash")
            .arg(scripts_dir().join("deploy.sh"))
            .arg(image)
            .arg(meta)
            .arg(out)
            .arg(size.to_string()),
    )?;
    Ok(())
}

/// One entry of a disk's partition table, as `sfdisk -J` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionEntry {
    /// Partition number (1-based; logical partitions start at 5 on MBR).
    pub number: u32,
    /// First sector (512 bytes).
    pub start: u64,
    /// Length in sectors.
    pub size: u64,
    /// MBR type in hex (`83`, `82`, `5`) or GPT type GUID (upper case).
    pub kind: String,
    /// GPT partition name.
    pub name: Option<String>,
    /// GPT unique partition GUID.
    pub uuid: Option<String>,
    /// MBR boot flag.
    pub bootable: bool,
}

#[derive(Deserialize)]
struct SfdiskDump {
    partitiontable: SfdiskTable,
}

#[derive(Deserialize)]
struct SfdiskTable {
    label: String,
    #[serde(default = "default_sector_size")]
    sectorsize: u64,
    #[serde(default)]
    partitions: Vec<SfdiskPart>,
}

fn default_sector_size() -> u64 {
    512
}

#[derive(Deserialize)]
struct SfdiskPart {
    node: String,
    start: u64,
    size: u64,
    #[serde(rename = "type")]
    kind: String,
    name: Option<String>,
    uuid: Option<String>,
    #[serde(default)]
    bootable: bool,
}

/// The partition table type (`dos` or `gpt`) and entries of `disk`, sorted by number.
pub fn partitions(disk: &Path) -> Result<(String, Vec<PartitionEntry>)> {
    let (label, _, parts) = read_table(disk)?;
    Ok((label, parts))
}

/// `sfdisk -J` of `target`: the table type, the sector size the entries count in (the
/// target's logical sector size) and the entries sorted by number.
fn read_table(target: &Path) -> Result<(String, u64, Vec<PartitionEntry>)> {
    let out = command::run(Command::new("sfdisk").arg("-J").arg(target))?;
    let what = || format!("sfdisk -J {}", target.display());
    let dump: SfdiskDump = serde_json::from_str(&out.stdout).map_err(|e| TestkitError::Parse {
        what: what(),
        detail: e.to_string(),
    })?;
    let mut parts = Vec::new();
    for p in dump.partitiontable.partitions {
        // Nodes are "<disk>N", or "<disk>pN" when the disk's name ends in a digit.
        let digits: String = p
            .node
            .chars()
            .rev()
            .take_while(char::is_ascii_digit)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let number = digits.parse().map_err(|_| TestkitError::Parse {
            what: what(),
            detail: format!("partition node {} has no number", p.node),
        })?;
        parts.push(PartitionEntry {
            number,
            start: p.start,
            size: p.size,
            kind: p.kind.to_uppercase(),
            name: p.name,
            uuid: p.uuid,
            bootable: p.bootable,
        });
    }
    parts.sort_by_key(|p| p.number);
    Ok((
        dump.partitiontable.label,
        dump.partitiontable.sectorsize,
        parts,
    ))
}

/// Read `guest_path` from the ext2/3/4 filesystem on partition `number` of `disk`
/// with debugfs (no mount, no root needed). `Ok(None)` when the file does not exist.
pub fn guest_file(disk: &Path, number: u32, guest_path: &str) -> Result<Option<Vec<u8>>> {
    // debugfs opens "file?offset=N" through unix_io (read-only here: no -w).
    let spec = format!(
        "{}?offset={}",
        disk.display(),
        partition_offset(disk, number)?
    );
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(format!("cat \"{guest_path}\""))
        .arg(&spec)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|source| {
            TestkitError::Command(CommandError::Spawn {
                program: "debugfs".into(),
                source,
            })
        })?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("File not found") {
        return Ok(None);
    }
    if !out.status.success() || stderr.contains("Bad magic number") {
        return Err(TestkitError::Failed {
            program: format!("debugfs {spec}"),
            status: out.status.to_string(),
            output: stderr.into_owned(),
        });
    }
    Ok(Some(out.stdout))
}

fn partition_offset(disk: &Path, number: u32) -> Result<u64> {
    let (_, parts) = partitions(disk)?;
    parts
        .iter()
        .find(|p| p.number == number)
        .map(|p| p.start * 512)
        .ok_or_else(|| TestkitError::Parse {
            what: format!("partition table of {}", disk.display()),
            detail: format!("no partition {number}"),
        })
}

/// Names in directory `guest_dir` of the ext filesystem on partition `number` of
/// `disk` (debugfs `ls -p`; `.` and `..` left out). `Ok(None)` when it does not exist.
pub fn guest_ls(disk: &Path, number: u32, guest_dir: &str) -> Result<Option<Vec<String>>> {
    let spec = format!(
        "{}?offset={}",
        disk.display(),
        partition_offset(disk, number)?
    );
    let out = command::run(
        Command::new("debugfs")
            .arg("-R")
            .arg(format!("ls -p \"{guest_dir}\""))
            .arg(&spec),
    )?;
    if out.stderr.contains("File not found") {
        return Ok(None);
    }
    // Lines look like "/inode/mode/uid/gid/name/size/".
    let names = out
        .stdout
        .lines()
        .filter_map(|l| l.split('/').nth(5).map(str::to_string))
        .filter(|n| n != "." && n != ".." && !n.is_empty())
        .collect();
    Ok(Some(names))
}

/// The superblock fields (`dumpe2fs -h`) of the ext filesystem on partition `number`
/// of `disk`, e.g. `"Filesystem state"` -> `"clean"`, `"Block count"` -> `"720640"`.
pub fn ext_superblock(disk: &Path, number: u32) -> Result<BTreeMap<String, String>> {
    let spec = format!(
        "{}?offset={}",
        disk.display(),
        partition_offset(disk, number)?
    );
    let out = command::run(Command::new("dumpe2fs").arg("-h").arg(&spec))?;
    Ok(out
        .stdout
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect())
}

/// The filesystem UUID and type (`blkid -p`) on partition `number` of `disk`.
pub fn probe_partition(disk: &Path, number: u32) -> Result<(String, String)> {
    let offset = partition_offset(disk, number)?;
    let out = command::run(
        Command::new("blkid")
            .args(["-p", "-o", "export", "-O"])
            .arg(offset.to_string())
            .arg(disk),
    )?;
    let field = |key: &str| {
        out.stdout
            .lines()
            .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
            .unwrap_or_default()
            .to_string()
    };
    Ok((field("UUID"), field("TYPE")))
}
