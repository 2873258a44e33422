//! The dialog-style terminal UI. Not built yet: it drives the same library as
//! `snf-mkimage` and will arrive with its own issue.

fn main() {
    if std::env::args().any(|a| a == "--version") {
        println!("snf-image-creator {}", image_creator::VERSION);
        return;
    }
    eprintln!(
        "snf-image-creator {}: the interactive UI is not built yet; use snf-mkimage",
        image_creator::VERSION
    );
    std::process::exit(1);
}
