//! Compiles the C shim and links it with the system's libext2fs and libcom_err
//! (Debian: libext2fs-dev, comerr-dev). No bindgen: the Rust side declares the
//! shim's few functions by hand in src/sys.rs.

fn main() {
    println!("cargo:rerun-if-changed=csrc/shim.c");
    cc::Build::new()
        .file("csrc/shim.c")
        .warnings(true)
        .extra_warnings(true)
        .flag_if_supported("-Wno-unused-parameter")
        .compile("snf_ext2fs_shim");
    println!("cargo:rustc-link-lib=ext2fs");
    println!("cargo:rustc-link-lib=com_err");
}
