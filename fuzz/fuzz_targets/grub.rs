//! Boot configuration and fstab as system preparation edits them: GRUB 2
//! (/etc/default/grub, grub.cfg, the ESP's grub.cfg, grubenv), BLS entries,
//! /etc/kernel/cmdline, GRUB legacy (menu.lst), syslinux/extlinux, crypttab, the
//! initramfs resume file, and the fstab entries rewritten to persistent names or
//! dropped for swap.
#![no_main]
use image_creator::metadata::Metadata;
use image_creator::sysprep::OsFamily;
use libfuzzer_sys::fuzz_target;
use snf_fuzz::guest;

const FILES: &[&str] = &[
    "/etc/default/grub",
    "/boot/grub/grub.cfg",
    "/boot/grub/menu.lst",
    "/boot/grub2/grub.cfg",
    "/boot/syslinux/syslinux.cfg",
    "/boot/extlinux/extlinux.conf",
    "/etc/fstab",
    "/etc/sysctl.conf",
    "/etc/selinux/config",
    "/boot/loader/entries/x.conf",
    "/boot/grub2/grubenv",
    "/boot/efi/EFI/debian/grub.cfg",
    "/etc/kernel/cmdline",
    "/etc/crypttab",
    "/etc/initramfs-tools/conf.d/resume",
];

fuzz_target!(|data: &[u8]| {
    let mut g = guest::tree_from(FILES, data);
    guest::sysprep(&mut g, OsFamily::Linux, &mut Metadata::new());
});
