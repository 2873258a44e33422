//! The original's Windows operations that run programs inside the booted guest. This
//! rewrite prepares images offline, so they are listed, off by default, and refuse to
//! run with one sentence saying why.

use super::super::registry::{Descriptor, Scope};
use super::super::{Changes, Result, SysprepContext, SysprepError};
use super::WINDOWS;

pub static MICROSOFT_SYSPREP: Descriptor = Descriptor {
    name: "microsoft-sysprep",
    heading: "Executing Microsoft System Preparation Tool",
    display: "Microsoft Sysprep",
    description: "Run Microsoft's System Preparation Tool (sysprep /generalize /oobe) in \
                  the guest: needs the guest running: not supported. Generalize the image \
                  in Windows before making the image.",
    effect: "None: it needs the guest running, which this tool does not do.",
    default_enabled: false,
    order: 990,
    families: WINDOWS,
    scope: Scope::Files,
    run,
};

pub static KMS_CLIENT_SETUP: Descriptor = Descriptor {
    name: "kms-client-setup",
    heading: "Setting up the KMS client",
    display: "KMS client setup",
    description: "Install the Microsoft KMS client setup key of the product (slmgr /ipk): \
                  needs the guest running: not supported.",
    effect: "None: it needs the guest running, which this tool does not do.",
    default_enabled: false,
    order: 980,
    families: WINDOWS,
    scope: Scope::Files,
    run,
};

fn run(_ctx: &mut SysprepContext<'_>) -> Result<Changes> {
    Err(SysprepError::NeedsRunningGuest)
}
