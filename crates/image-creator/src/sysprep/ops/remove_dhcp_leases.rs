use std::path::Path;

use snf_guestfs::FileType;

use super::super::registry::{Descriptor, Scope};
use super::super::{Changes, Result, SysprepContext};

pub static OP: Descriptor = Descriptor {
    name: "remove-dhcp-leases",
    heading: "Removing DHCP client leases",
    display: "Remove DHCP leases",
    description: "Remove the DHCP leases the image's machine obtained, so that clones do \
                  not ask for its addresses.",
    effect: "Removes (rm -rf) every entry of /var/lib/dhclient and /var/lib/dhcp (as \
             virt-sysprep's dhcp-client-state does), and the regular files named *.lease or \
             *.lease6 directly in /var/lib/NetworkManager and /var/lib/dhcpcd.",
    default_enabled: true,
    order: 140,
    families: super::LINUX,
    scope: Scope::Files,
    run,
};

fn run(ctx: &mut SysprepContext<'_>) -> Result<Changes> {
    for dir in ["/var/lib/dhclient", "/var/lib/dhcp"] {
        if ctx.is_real_dir(Path::new(dir))? {
            super::empty_dir(ctx, dir, &[])?;
        }
    }
    for dir in ["/var/lib/NetworkManager", "/var/lib/dhcpcd"] {
        let d = Path::new(dir);
        for (name, ty) in ctx.read_dir(d)? {
            let n = name.to_string_lossy();
            if ty == FileType::Regular && (n.ends_with(".lease") || n.ends_with(".lease6")) {
                ctx.remove_file(&d.join(&name))?;
            }
        }
    }
    Ok(ctx.finish())
}
