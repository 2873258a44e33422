//! Every Linux family recognised, with every metadata key asserted, from guest trees
//! written into real ext4 filesystems in real partitioned images.

mod common;

use common::*;

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn debian_with_systemd_sshd_and_point_release() {
    let d = tmp();
    let t = Tree::new(d.path(), "t");
    t.linux_base(ROOT_FSTAB)
        .file(
            "/usr/lib/os-release",
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n",
        )
        .link("/etc/os-release", "../usr/lib/os-release")
        .file("/etc/debian_version", "12.5\n")
        .file("/boot/config-6.1.0-9-amd64", "")
        .file("/boot/config-6.1.0-18-amd64", "")
        .file("/boot/config-5.10.0-28-amd64", "")
        .systemd_sshd();
    let i = single(d.path(), &t);
    assert_eq!(i.unsupported, None);
    assert_eq!(
        (i.os.distro.as_str(), i.os.major, i.os.minor),
        ("debian", 12, 5)
    );
    assert_meta(
        &i.metadata,
        &keys(&[
            ("OS", "debian"),
            ("DESCRIPTION", "Debian GNU/Linux 12 (bookworm)"),
            ("SORTORDER", "7701205"),
            ("KERNEL", "6.1.0-18-amd64"),
            (
                "REMOTE_CONNECTION",
                "ssh:port=22,user=root ssh:port=22,user=user",
            ),
        ]),
    );
    assert!(i.guest.is_some());
}

fn ubuntu(t: &Tree) {
    t.linux_base(ROOT_FSTAB)
        .file(
            "/etc/os-release",
            "NAME=\"Ubuntu\"\nVERSION_ID=\"16.04\"\nID=ubuntu\nPRETTY_NAME=\"Ubuntu 16.04.7 LTS\"\n",
        )
        .file("/etc/debian_version", "stretch/sid\n");
}

fn dpkg_status(pkgs: &[(&str, &str)]) -> String {
    pkgs.iter()
        .map(|(p, s)| format!("Package: {p}\nStatus: {s}\nVersion: 1\n"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn ubuntu_and_its_desktop_variants() {
    for (variant, os, descr) in [
        (None, "ubuntu", "Ubuntu 16.04.7 LTS"),
        (Some("kubuntu-desktop"), "kubuntu", "Kubuntu 16.04.7 LTS"),
        (Some("lubuntu-desktop"), "lubuntu", "Lubuntu 16.04.7 LTS"),
        (Some("xubuntu-desktop"), "xubuntu", "Xubuntu 16.04.7 LTS"),
    ] {
        let d = tmp();
        let t = Tree::new(d.path(), "t");
        ubuntu(&t);
        let mut pkgs = vec![
            ("bash", "install ok installed"),
            // Removed packages do not count.
            ("kubuntu-desktop", "deinstall ok config-files"),
        ];
        if let Some(v) = variant {
            pkgs.push((v, "install ok installed"));
        }
        t.file("/var/lib/dpkg/status", &dpkg_status(&pkgs));
        let i = single(d.path(), &t);
        assert_meta(
            &i.metadata,
            &keys(&[("OS", os), ("DESCRIPTION", descr), ("SORTORDER", "7801604")]),
        );
    }
}

#[test]
fn bitnami_on_ubuntu() {
    let d = tmp();
    let t = Tree::new(d.path(), "t");
    ubuntu(&t);
    t.file(
        "/opt/bitnami/README.txt",
        "Bitnami WordPress Stack 4.9\nmore\n",
    );
    let i = single(d.path(), &t);
    assert_meta(
        &i.metadata,
        &keys(&[
            ("OS", "bitnami"),
            ("DESCRIPTION", "Bitnami WordPress Stack 4.9"),
            ("OSVERSION", "Ubuntu 16.04.7 LTS"),
            ("SORTORDER", "7801604"),
        ]),
    );
}

#[test]
fn red_hat_family_from_release_files() {
    let cases: [(&str, &str, &str, &str, &str); 4] = [
        (
            "/etc/centos-release",
            "CentOS Linux release 7.9.2009 (Core)\n",
            "centos",
            "CentOS Linux release 7.9.2009 (Core)",
            "7550709",
        ),
        (
            "/etc/fedora-release",
            "Fedora release 20 (Heisenbug)\n",
            "fedora",
            "Fedora release 20 (Heisenbug)",
            "7582000",
        ),
        (
            "/etc/redhat-release",
            "Red Hat Enterprise Linux Server release 6.5 (Santiago)\n",
            "rhel",
            "Red Hat Enterprise Linux Server release 6.5 (Santiago)",
            "7600605",
        ),
        (
            "/etc/oracle-release",
            "Oracle Linux Server release 6.10\n",
            "oraclelinux",
            "Oracle Linux Server release 6.10",
            "7280610",
        ),
    ];
    for (file, content, os, descr, sort) in cases {
        let d = tmp();
        let t = Tree::new(d.path(), "t");
        t.linux_base(ROOT_FSTAB)
            .file(file, content)
            .file(
                "/etc/redhat-release",
                if file == "/etc/redhat-release" {
                    content
                } else {
                    "Red Hat Enterprise Linux release\n"
                },
            )
            .file("/boot/config-3.10.0-957.el7.x86_64", "")
            .file("/boot/config-3.10.0-1160.el7.x86_64", "");
        let i = single(d.path(), &t);
        assert_meta(
            &i.metadata,
            &keys(&[
                ("OS", os),
                ("DESCRIPTION", descr),
                ("SORTORDER", sort),
                ("KERNEL", "3.10.0-1160.el7.x86_64"),
            ]),
        );
    }
}

#[test]
fn oracle_linux_from_os_release_uses_the_oracle_release_line() {
    let d = tmp();
    let t = Tree::new(d.path(), "t");
    t.linux_base(ROOT_FSTAB)
        .file(
            "/etc/os-release",
            "ID=\"ol\"\nVERSION_ID=\"8.9\"\nPRETTY_NAME=\"Oracle Linux Server 8.9\"\n",
        )
        .file("/etc/oracle-release", "Oracle Linux Server release 8.9\n");
    let i = single(d.path(), &t);
    assert_meta(
        &i.metadata,
        &keys(&[
            ("OS", "oraclelinux"),
            ("DESCRIPTION", "Oracle Linux Server release 8.9"),
            ("SORTORDER", "7280809"),
        ]),
    );
}

#[test]
fn suse_family() {
    for (file, content, os, descr, sort) in [
        ("/etc/os-release", "NAME=\"openSUSE Leap\"\nVERSION_ID=\"15.5\"\nID=\"opensuse-leap\"\nPRETTY_NAME=\"openSUSE Leap 15.5\"\n", "opensuse", "openSUSE Leap 15.5", "7441505"),
        ("/etc/SuSE-release", "SUSE Linux Enterprise Server 11 (x86_64)\nVERSION = 11\nPATCHLEVEL = 4\n", "sles", "SUSE Linux Enterprise Server 11 (x86_64)", "7451104"),
    ] {
        let d = tmp();
        let t = Tree::new(d.path(), "t");
        t.linux_base(ROOT_FSTAB).file(file, content);
        let i = single(d.path(), &t);
        assert_meta(&i.metadata, &keys(&[("OS", os), ("DESCRIPTION", descr), ("SORTORDER", sort)]));
    }
}

#[test]
fn arch_kernel_comes_from_the_pacman_database() {
    let d = tmp();
    let t = Tree::new(d.path(), "t");
    t.linux_base(ROOT_FSTAB)
        .file(
            "/etc/os-release",
            "NAME=\"Arch Linux\"\nID=arch\nPRETTY_NAME=\"Arch Linux\"\n",
        )
        .file("/etc/arch-release", "")
        .file("/var/lib/pacman/local/linux-6.6.7.arch1-1/desc", "")
        .file(
            "/var/lib/pacman/local/linux-firmware-20231211.f2e52a1c-1/desc",
            "",
        )
        .file("/var/lib/pacman/local/linux-api-headers-6.4-1/desc", "")
        .file("/var/lib/pacman/local/bash-5.2-1/desc", "");
    let i = single(d.path(), &t);
    assert_meta(
        &i.metadata,
        &keys(&[
            ("OS", "archlinux"),
            ("DESCRIPTION", "Arch Linux"),
            ("SORTORDER", "7400000"),
            ("KERNEL", "6.6.7.arch1-1"),
        ]),
    );

    let d = tmp();
    let t = Tree::new(d.path(), "t");
    t.linux_base(ROOT_FSTAB)
        .file("/etc/arch-release", "")
        .file("/var/lib/pacman/local/linux-lts-4.9.8-1/desc", "");
    let i = single(d.path(), &t);
    assert_eq!(i.metadata.get("KERNEL"), Some("4.9.8-1 LTS"));
    assert_eq!(i.metadata.get("OS"), Some("archlinux"));
}

#[test]
fn gentoo_alpine_and_old_debian() {
    for (file, content, os, descr, sort) in [
        (
            "/etc/gentoo-release",
            "Gentoo Base System release 2.2\n",
            "gentoo",
            "Gentoo Base System release 2.2",
            "7350202",
        ),
        (
            "/etc/alpine-release",
            "3.18.4\n",
            "alpinelinux",
            "Alpine Linux 3.18.4",
            "7000000",
        ),
        (
            "/etc/debian_version",
            "7.11\n",
            "debian",
            "Debian GNU/Linux 7.11",
            "7700711",
        ),
    ] {
        let d = tmp();
        let t = Tree::new(d.path(), "t");
        t.linux_base(ROOT_FSTAB).file(file, content);
        let i = single(d.path(), &t);
        assert_meta(
            &i.metadata,
            &keys(&[("OS", os), ("DESCRIPTION", descr), ("SORTORDER", sort)]),
        );
    }
}

#[test]
fn lsb_release_only() {
    let d = tmp();
    let t = Tree::new(d.path(), "t");
    t.linux_base(ROOT_FSTAB).file(
        "/etc/lsb-release",
        "DISTRIB_ID=LinuxMint\nDISTRIB_RELEASE=17.3\nDISTRIB_DESCRIPTION=\"Linux Mint 17.3 Rosa\"\n",
    );
    let i = single(d.path(), &t);
    assert_meta(
        &i.metadata,
        &keys(&[
            ("OS", "linuxmint"),
            ("DESCRIPTION", "Linux Mint 17.3 Rosa"),
            ("SORTORDER", "7751703"),
        ]),
    );
}

#[test]
fn slackware_sshd_is_its_executable_rc_script() {
    for (mode, remote) in [(0o755, true), (0o644, false)] {
        let d = tmp();
        let t = Tree::new(d.path(), "t");
        t.linux_base(ROOT_FSTAB)
            .file("/etc/slackware-version", "Slackware 14.2\n")
            .file("/etc/rc.d/rc.sshd", "#!/bin/sh\n/usr/sbin/sshd\n")
            .mode("/etc/rc.d/rc.sshd", mode)
            .exe("/etc/rc.d/rc.networkmanager");
        let i = single(d.path(), &t);
        let mut want = vec![
            ("OS", "slackware"),
            ("DESCRIPTION", "Slackware 14.2"),
            ("SORTORDER", "7301402"),
            ("NM_NETWORKING", "yes"),
        ];
        if remote {
            want.push((
                "REMOTE_CONNECTION",
                "ssh:port=22,user=root ssh:port=22,user=user",
            ));
        }
        assert_meta(&i.metadata, &keys(&want));
    }
}

#[test]
fn sysv_start_links_enable_sshd_and_kill_links_do_not() {
    for (link, enabled) in [("/etc/rc2.d/S02ssh", true), ("/etc/rc2.d/K01ssh", false)] {
        let d = tmp();
        let t = Tree::new(d.path(), "t");
        t.linux_base(ROOT_FSTAB)
            .file("/etc/debian_version", "7.11\n")
            .file(
                "/etc/init.d/ssh",
                "#!/bin/sh\n# sshd\nstart-stop-daemon --start --exec /usr/sbin/sshd -- $SSHD_OPTS\n",
            )
            .link(link, "../init.d/ssh");
        let i = single(d.path(), &t);
        assert_eq!(
            i.metadata.get("REMOTE_CONNECTION").is_some(),
            enabled,
            "{link}"
        );
    }
}

#[test]
fn sshd_port_permit_root_login_and_x2go() {
    let d = tmp();
    let t = Tree::new(d.path(), "t");
    t.linux_base(ROOT_FSTAB)
        .file("/etc/debian_version", "9.13\n")
        .systemd_sshd()
        .file(
            "/etc/ssh/sshd_config",
            "Include /etc/ssh/sshd_config.d/*.conf\n# Port 1\nPort 2222\nPort 3333\n",
        )
        .file(
            "/etc/ssh/sshd_config.d/10-root.conf",
            "PermitRootLogin no\n",
        )
        .exe("/usr/bin/x2goruncommand")
        .exe("/usr/bin/startx")
        .exe("/usr/bin/startkde")
        .exe("/usr/bin/xfce4-session");
    let i = single(d.path(), &t);
    assert_meta(
        &i.metadata,
        &keys(&[
            ("OS", "debian"),
            ("DESCRIPTION", "Debian GNU/Linux 9.13"),
            ("SORTORDER", "7700913"),
            ("GUI", "KDE | Xfce"),
            (
                "REMOTE_CONNECTION",
                "ssh:port=2222,user=user x2go:session=KDE x2go:session=XFCE",
            ),
        ]),
    );
}

#[test]
fn gui_without_a_known_desktop_is_unknown() {
    let d = tmp();
    let t = Tree::new(d.path(), "t");
    t.linux_base(ROOT_FSTAB)
        .file("/etc/debian_version", "10.1\n")
        .exe("/bin/startx")
        .link("/usr/local/bin/cinnamon", "/bin/startx")
        .link("/usr/bin/mate-session", "/nonexistent");
    let i = single(d.path(), &t);
    // cinnamon is a symlink to an executable; the broken mate-session link is not MATE.
    assert_eq!(i.metadata.get("GUI"), Some("Cinnamon"));
}

#[test]
fn cloud_init_users_default_user_and_network_manager() {
    let d = tmp();
    let t = Tree::new(d.path(), "t");
    t.linux_base(ROOT_FSTAB)
        .file("/etc/os-release", "ID=ubuntu\nVERSION_ID=\"22.04\"\nPRETTY_NAME=\"Ubuntu 22.04.3 LTS\"\n")
        .systemd_sshd()
        .file("/usr/lib/systemd/system-generators/cloud-init-generator", "")
        .file(
            "/etc/cloud/cloud.cfg",
            "users:\n  - default\nsystem_info:\n  default_user:\n    name: ubuntu\n",
        )
        .file(
            "/etc/cloud/cloud.cfg.d/90-users.cfg",
            "users:\n  - default\n  - name: alice\n  - name: svc\n    system: true\n  - snapuser: joe@example.com\n  - bob\n",
        )
        .file("/etc/cloud/cloud.cfg.d/README", "not a cfg\n")
        // NetworkManager enabled through a regular unit file, not a symlink.
        .file(
            "/etc/systemd/system/multi-user.target.wants/NetworkManager.service",
            "[Service]\nExecStart=/usr/sbin/NetworkManager --no-daemon\n",
        )
        // A broken link must not stop inspection.
        .link(
            "/etc/systemd/system/multi-user.target.wants/gone.service",
            "/lib/systemd/system/gone.service",
        )
        // Nor a link loop.
        .link("/etc/systemd/system/multi-user.target.wants/loop.service", "loop.service");
    let i = single(d.path(), &t);
    assert_meta(
        &i.metadata,
        &keys(&[
            ("OS", "ubuntu"),
            ("DESCRIPTION", "Ubuntu 22.04.3 LTS"),
            ("SORTORDER", "7802204"),
            ("CLOUD_INIT", "yes"),
            ("CLOUD_INIT_DEFAULT_USER", "ubuntu"),
            ("USERS", "ubuntu alice bob"),
            ("NM_NETWORKING", "yes"),
            (
                "REMOTE_CONNECTION",
                "ssh:port=22,user=root ssh:port=22,user=user",
            ),
        ]),
    );

    // The generator does nothing when cloud-init is disabled.
    let d = tmp();
    let t = Tree::new(d.path(), "t");
    t.linux_base(ROOT_FSTAB)
        .file("/etc/debian_version", "11.8\n")
        .file("/lib/systemd/system-generators/cloud-init-generator", "")
        .file("/etc/cloud/cloud-init.disabled", "");
    let i = single(d.path(), &t);
    assert_eq!(i.metadata.get("CLOUD_INIT"), None);
}

#[test]
fn hashing_method_follows_the_hashes_in_use() {
    for (shadow, defs, want) in [
        ("root:$y$j9T$a$b:1:0:99999:7:::\n", None, "sha512"),
        (
            "root:$1$a$b:1:0:99999:7:::\nu:$5$a$b:1:0:99999:7:::\n",
            None,
            "sha256",
        ),
        ("root:$1$a$b:1:0:99999:7:::\n", None, "md5"),
        (
            "root:*:1:0:99999:7:::\n",
            Some("ENCRYPT_METHOD SHA256\n"),
            "sha256",
        ),
    ] {
        let d = tmp();
        let t = Tree::new(d.path(), "t");
        t.linux_base(ROOT_FSTAB)
            .file("/etc/debian_version", "12.1\n")
            .file("/etc/shadow", shadow);
        if let Some(defs) = defs {
            t.file("/etc/login.defs", defs);
        }
        let i = single(d.path(), &t);
        assert_eq!(
            i.metadata.get("PASSWD_HASHING_METHOD"),
            Some(want),
            "{shadow}"
        );
    }
}

#[test]
fn no_passworded_users_removes_users() {
    let d = tmp();
    let t = Tree::new(d.path(), "t");
    t.linux_base(ROOT_FSTAB)
        .file("/etc/debian_version", "12.1\n")
        .file("/etc/shadow", "root:*:1:0:99999:7:::\nx:!:1:0:99999:7:::\n");
    let i = single(d.path(), &t);
    assert_eq!(i.metadata.get("USERS"), None);
    assert_eq!(i.metadata.get("OS"), Some("debian"));
}

#[test]
fn windows_tree_is_recognised_and_unsupported() {
    let d = tmp();
    let t = Tree::new(d.path(), "t");
    t.file("/Windows/System32/config/SOFTWARE", "regf");
    let i = single(d.path(), &t);
    // Recognised by its tree; a SOFTWARE hive that is not one makes the media unsupported.
    let reason = i.unsupported.clone().expect("unsupported");
    assert!(
        reason.starts_with(
            "The Windows registry cannot be read: Windows registry \
             /Windows/System32/config/SOFTWARE: not a valid hive: "
        ),
        "{reason}"
    );
    assert!(!reason.contains('\n'));
    assert!(i.guest.is_none());
    assert_eq!(i.metadata.get("OSFAMILY"), Some("windows"));
    assert_eq!(i.metadata.get("UNSUPPORTED"), Some(reason.as_str()));
}
