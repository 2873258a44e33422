//! Links the system's libguestfs (Debian: libguestfs-dev). No bindgen: src/sys.rs
//! declares the few functions used by hand, checked against /usr/include/guestfs.h.

fn main() {
    if pkg_config::Config::new()
        .atleast_version("1.40")
        .probe("libguestfs")
        .is_err()
    {
        panic!("libguestfs not found by pkg-config: install the Debian package libguestfs-dev");
    }
}
