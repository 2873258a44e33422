//! Compiles the C shim and links it with the system's libntfs-3g (Debian: ntfs-3g-dev).
//! No bindgen: src/sys.rs declares the shim's few functions by hand.

fn main() {
    println!("cargo:rerun-if-changed=csrc/shim.c");
    cc::Build::new()
        .file("csrc/shim.c")
        .warnings(true)
        .extra_warnings(true)
        .flag_if_supported("-Wno-unused-parameter")
        .compile("snf_ntfs3g_shim");
    println!("cargo:rustc-link-lib=ntfs-3g");
}
