//! Links the system's libhivex (Debian: libhivex-dev at build time, libhivex0 at run
//! time). No bindgen: src/sys.rs declares the few functions used by hand.

fn main() {
    println!("cargo:rustc-link-lib=hivex");
}
