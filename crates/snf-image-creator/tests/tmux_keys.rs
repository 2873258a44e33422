//! Keys in a real terminal (tmux): a paste is shown whole at once, a key after a resize
//! is handled when it arrives, Shift-Tab wraps like Tab, and what is checked in the
//! Sysprep list survives a visit to Help or Params.

mod common;

use std::time::Duration;

use common::{example_disk, Tmux};

/// Wait this long at most for a screen that needs no further key.
const AT_ONCE: Duration = Duration::from_secs(2);

/// The program on the example disk in `d`, in expert mode.
fn expert(d: &std::path::Path) -> Tmux {
    example_disk(d);
    let tmp = d.display().to_string();
    let t = Tmux::start(
        d,
        &["--tmpdir", &tmp, "ex.raw"],
        &[("TMPDIR", &tmp), ("XDG_STATE_HOME", &tmp)],
        80,
        24,
    );
    t.wait_for("Welcome");
    t.keys(&["Right", "Enter"]);
    t.wait_for("Image Creator for Synnefo");
    t
}

#[test]
fn a_pasted_name_is_shown_whole_without_another_key() {
    let dir = tempfile::tempdir().unwrap();
    let t = expert(dir.path());
    t.open_extract();
    t.keys(&["C-u"]);
    let name = "abcdefghij0123456789ABCDEFGHIJklmnopqrst";
    assert_eq!(name.len(), 40);
    // One write to the terminal, as a paste is.
    t.type_text(name);
    t.wait_for_within(name, AT_ONCE);

    // A key that arrives behind a resize is handled when it arrives.
    t.resize(100, 30);
    t.type_text("X");
    t.wait_for_within(&format!("{name}X"), AT_ONCE);
    t.resize(80, 24);
    t.keys(&["BSpace"]);
    let s = t.wait_for_within(&format!("{name} "), AT_ONCE);
    assert!(!s.contains(&format!("{name}X")), "{s}");
}

#[test]
fn shift_tab_wraps_round_the_buttons_like_tab() {
    let dir = tempfile::tempdir().unwrap();
    let t = expert(dir.path());
    // From the first button (OK) Shift-Tab goes round to the last one (Exit).
    t.keys(&["BTab", "Enter"]);
    t.wait_for_within("Do you want to exit?", AT_ONCE);
    t.keys(&["Enter"]);
    assert_eq!(t.wait_exit(), 0);
}

#[test]
fn sysprep_checks_survive_help_and_params() {
    let dir = tempfile::tempdir().unwrap();
    let t = expert(dir.path());
    t.keys(&["Enter"]);
    t.wait_for("Image Customization Menu");
    t.keys(&["Enter"]);
    let s = t.wait_for("Choose which system preparation tasks");
    assert!(s.contains("[*] Cleanup userdata"), "{s}");
    assert!(
        s.contains("Space: check/uncheck"),
        "the screen says what Space does:\n{s}"
    );
    // Uncheck the first task, check the second.
    t.keys(&["Space", "Down", "Space"]);
    let s = t.wait_for("[*] Remove user accounts");
    assert!(s.contains("[ ] Cleanup userdata"), "{s}");
    // Help (third button) and back.
    t.keys(&["Right", "Right", "Enter"]);
    t.wait_for("Cleanup userdata (cleanup-userdata)");
    t.keys(&["Enter"]);
    let s = t.wait_for("Choose which system preparation tasks");
    assert!(
        s.contains("[ ] Cleanup userdata") && s.contains("[*] Remove user accounts"),
        "the checks survived Help:\n{s}"
    );
    // Params (second button) and back.
    t.keys(&["Left", "Enter"]);
    t.wait_for("System Preparation Parameters");
    t.keys(&["Escape"]);
    let s = t.wait_for("Choose which system preparation tasks");
    assert!(
        s.contains("[ ] Cleanup userdata") && s.contains("[*] Remove user accounts"),
        "the checks survived Params:\n{s}"
    );
}

/// The last word of `text`.
fn last_word(text: &str) -> &str {
    text.split_whitespace().last().unwrap()
}

#[test]
fn every_help_screen_at_80x24_shows_its_last_line() {
    use image_creator::sysprep::{OsFamily, Registry};
    use snf_image_creator::screens;
    let dir = tempfile::tempdir().unwrap();
    let t = expert(dir.path());
    t.keys(&["Enter"]);
    t.wait_for("Image Customization Menu");
    let registry = Registry::for_family(OsFamily::Linux);
    let sysprep_end = registry.descriptors().last().unwrap().description;
    for (letter, screen, start, end) in [
        (
            "p",
            "Image Properties",
            "Image properties are key/value",
            screens::PROPERTIES_HELP,
        ),
        (
            "e",
            "Exclude Configuration Tasks",
            "When a virtual machine is created",
            screens::EXCLUDE_HELP,
        ),
        (
            "s",
            "Choose which system preparation tasks",
            "(cleanup-userdata):",
            sysprep_end,
        ),
    ] {
        t.keys(&[letter, "Enter"]);
        t.wait_for(screen);
        // Help is the third button everywhere.
        t.keys(&["Right", "Right", "Enter"]);
        t.wait_for(start);
        t.keys(&["End"]);
        let end_word = last_word(end);
        let s = t.wait_for_within(end_word, AT_ONCE);
        assert!(
            !s.contains("% ─┤") || s.contains("100% ─┤"),
            "the help of {screen} is at its end:\n{s}"
        );
        t.keys(&["Enter"]);
        t.wait_for(screen);
        t.keys(&["Escape"]);
        t.wait_for("Image Customization Menu");
    }
}

#[test]
fn extract_asks_about_an_unprepared_image_and_refuses_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let t = expert(d);
    let source_md5 = common::md5(&d.join("ex.raw"));
    // No system preparation ran: the question comes first; No goes back.
    t.keys(&["e", "Enter"]);
    let s = t.wait_for("No system preparation");
    assert!(s.contains("Continue with the image as it is?"), "{s}");
    t.keys(&["Enter"]);
    t.wait_for("Image Creator for Synnefo");
    t.open_extract();
    t.keys(&["C-u"]);
    t.type_text(&d.join("ex.raw").display().to_string());
    t.keys(&["Enter"]);
    let s = t.wait_for("Error");
    assert!(s.contains("source"), "the source is refused:\n{s}");
    assert!(
        !s.contains("Confirm Overwrite"),
        "before any question about overwriting:\n{s}"
    );
    t.keys(&["Enter"]);
    t.wait_for("Save image as...");
    t.keys(&["Escape"]);
    t.wait_for("Image Creator for Synnefo");
    assert_eq!(
        common::md5(&d.join("ex.raw")),
        source_md5,
        "the source is untouched"
    );
}

#[test]
fn a_refused_cloud_shows_its_retries_can_be_cancelled_and_is_logged() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    example_disk(d);
    let tmp = d.display().to_string();
    let log = d.join("tui.log");
    let kamakirc = d.join("kamakirc").display().to_string();
    let t = Tmux::start(
        d,
        &["-l", &log.display().to_string(), "--tmpdir", &tmp, "ex.raw"],
        &[
            ("TMPDIR", &tmp),
            ("XDG_STATE_HOME", &tmp),
            ("HOME", &tmp),
            ("XDG_CONFIG_HOME", &tmp),
            ("KAMAKI_CONFIG", &kamakirc),
        ],
        80,
        24,
    );
    t.wait_for("Welcome");
    t.keys(&["Right", "Enter"]);
    t.wait_for("Image Creator for Synnefo");
    t.keys(&["r", "Enter"]);
    t.wait_for("Image Registration Menu");
    t.keys(&["Enter"]);
    t.wait_for("Add Cloud");
    // Nothing listens on port 1: every connection is refused.
    let typed = "http://127.0.0.1:1/identity/";
    t.type_text("refused");
    t.keys(&["Tab", "Tab"]);
    t.type_text(typed);
    t.keys(&["Tab"]);
    t.type_text("secret-token");
    t.keys(&["Enter"]);
    let s = t.wait_for("retrying 2/5");
    assert!(s.contains("Authentication"), "the retries are shown:\n{s}");
    let s = t.wait_for("could not be verified");
    assert!(
        s.contains(&format!("(as given): {typed}")),
        "the URL as typed:\n{s}"
    );
    assert!(
        s.contains("at http://127.0.0.1:1/identity/v2.0"),
        "the URL tried:\n{s}"
    );
    t.keys(&["Enter"]);
    t.wait_for("Add Cloud");
    // Again, and Cancel while it retries.
    t.keys(&["Enter"]);
    t.wait_for("retrying 2/5");
    let start = std::time::Instant::now();
    t.keys(&["Enter"]);
    let s = t.wait_for("was cancelled");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "Cancel stops the retries at once:\n{s}"
    );
    t.keys(&["Enter"]);
    t.wait_for("Add Cloud");
    t.keys(&["Escape"]);
    t.wait_for("Image Registration Menu");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("retrying 2/5") && text.contains("could not connect"),
        "the cause is in the log:\n{text}"
    );
}
