//! The boot loader in a Master Boot Record, from the signatures of its first bytes
//! (those of the Boot Info Script, as the original uses them).

/// The `BOOTSTRAP` value for the first 512 bytes of a disk: `none` when the boot code
/// starts with two zero bytes, the loader name when a signature matches, else `unknown`.
pub fn mbr_bootinfo(mbr: &[u8]) -> &'static str {
    if mbr.len() < 2 {
        return "unknown";
    }
    if mbr[..2] == [0, 0] {
        return "none";
    }
    const SIG2: &[([u8; 2], &str)] = &[
        ([0x3b, 0x48], "grub1"),
        ([0xeb, 0x4c], "grub2"),
        ([0xeb, 0x63], "grub2"),
        ([0xeb, 0x04], "solaris"),
        ([0x0e, 0xbe], "thinkpad"),
        ([0x33, 0xed], "isohybrid"),
        ([0x33, 0xff], "hp"),
        ([0xb8, 0x00], "plop"),
        ([0xea, 0x1e], "truecrypt"),
        ([0xeb, 0x31], "paragon"),
        ([0xfa, 0x33], "msdos"),
        ([0xfa, 0xeb], "lilo"),
        ([0xfa, 0xfc], "reactos"),
        ([0xfc, 0x31], "testdisk"),
        ([0xfc, 0x33], "gag"),
        ([0xfc, 0xeb], "bootit"),
    ];
    const SIG3: &[([u8; 3], &str)] = &[
        ([0x33, 0xc0, 0x8e], "Windows"),
        ([0x33, 0xc0, 0x90], "diskcryptor"),
        ([0x33, 0xc0, 0xfa], "syslinux"),
        ([0xea, 0x05, 0x00], "openbsd"),
        ([0xea, 0x05, 0x01], "xosl"),
        ([0xeb, 0x5e, 0x00], "fbinst"),
        ([0xeb, 0x5e, 0x80], "grub4dos"),
        ([0xeb, 0x5e, 0x90], "wee"),
        ([0xfa, 0x31, 0xc0], "syslinux"),
        ([0xfa, 0x31, 0xc9], "mbldr"),
        ([0xfa, 0x31, 0xed], "isohybrid"),
    ];
    const SIG4: &[([u8; 4], &str)] = &[
        ([0xfa, 0xb8, 0x00, 0x00], "freedos"),
        ([0xfa, 0xb8, 0x00, 0x10], "libparted"),
    ];
    const SIG8: &[([u8; 8], &str)] = &[
        ([0x31, 0xc0, 0x8e, 0xd0, 0xbc, 0x00, 0x7c, 0x8e], "netbsd"),
        (
            [0x31, 0xc0, 0x8e, 0xd0, 0xbc, 0x00, 0x7c, 0xfb],
            "pqservice",
        ),
    ];
    if let Some((_, n)) = SIG2.iter().find(|(s, _)| mbr.starts_with(s)) {
        return n;
    }
    if let Some((_, n)) = SIG3.iter().find(|(s, _)| mbr.starts_with(s)) {
        return n;
    }
    if let Some((_, n)) = SIG4.iter().find(|(s, _)| mbr.starts_with(s)) {
        return n;
    }
    if let Some((_, n)) = SIG8.iter().find(|(s, _)| mbr.starts_with(s)) {
        return n;
    }
    "unknown"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures() {
        assert_eq!(mbr_bootinfo(&[0u8; 512]), "none");
        assert_eq!(mbr_bootinfo(&[0xeb, 0x63, 0x90]), "grub2");
        assert_eq!(mbr_bootinfo(&[0xfa, 0x31, 0xc0, 1]), "syslinux");
        assert_eq!(mbr_bootinfo(&[0x33, 0xc0, 0x8e, 0xd0]), "Windows");
        assert_eq!(mbr_bootinfo(&[0xfa, 0xb8, 0x00, 0x10]), "libparted");
        assert_eq!(
            mbr_bootinfo(&[0x31, 0xc0, 0x8e, 0xd0, 0xbc, 0x00, 0x7c, 0x8e]),
            "netbsd"
        );
        assert_eq!(mbr_bootinfo(&[0x12, 0x34, 0x56]), "unknown");
        assert_eq!(mbr_bootinfo(&[]), "unknown");
    }
}
