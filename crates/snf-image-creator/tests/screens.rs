//! Every screen rendered with ratatui's test backend, at 80x24 and 120x40, compared with
//! the stored snapshots under tests/snapshots/ (regenerate with SNF_UPDATE_SNAPSHOTS=1
//! and review the diff). Also the screens' key handling, driven by scripted keys.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use image_creator::interactive::{Exclusions, MetadataChanges};
use image_creator::metadata::Metadata;
use image_creator::sysprep::{OsFamily, ParamSpec, Params, Registry};
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::layout::Rect;
use ratatui::Terminal;
use snf_image_creator::app::{App, Exit, Settings};
use snf_image_creator::report::{LogFile, UiReporter};
use snf_image_creator::screens::{self, CloudItem};
use snf_image_creator::ui::{ScriptedEvents, Ui};
use snf_image_creator::widgets::{render_progress, render_screen, Dialog, Gauge, Outcome};

const BACKTITLE: &str = "OS: linux, Distro: debian, Size: 320MB, Source: /srv/images/debian.raw";
const SIZES: [(u16, u16); 2] = [(80, 24), (120, 40)];

fn text_of(term: &Terminal<TestBackend>) -> String {
    let buf = term.backend().buffer();
    let mut out = String::new();
    for y in 0..buf.area.height {
        let mut line = String::new();
        for x in 0..buf.area.width {
            line.push_str(buf[(x, y)].symbol());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn snapshot(name: &str, text: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(format!("{name}.txt"));
    if std::env::var_os("SNF_UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        return;
    }
    let stored = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "no snapshot {} (create it with SNF_UPDATE_SNAPSHOTS=1); the screen:\n{text}",
            path.display()
        )
    });
    assert!(
        stored == text,
        "screen {name} differs from its snapshot {}:\n{text}",
        path.display()
    );
}

fn render(dialog: &Dialog, w: u16, h: u16) -> String {
    let term = Terminal::new(TestBackend::new(w, h)).unwrap();
    let mut ui = Ui::new(
        term,
        Box::new(ScriptedEvents::default()),
        Arc::new(AtomicBool::new(false)),
    );
    ui.backtitle = BACKTITLE.into();
    let mut d = dialog.clone();
    ui.draw(&mut d).unwrap();
    text_of(ui.terminal())
}

fn check(name: &str, dialog: Dialog) {
    for (w, h) in SIZES {
        let text = render(&dialog, w, h);
        // Every screen fits: the dialog's bottom border and its buttons are shown.
        assert!(text.contains('┘'), "{name} at {w}x{h} is cut:\n{text}");
        assert!(
            text.contains('<'),
            "{name} at {w}x{h} shows no button:\n{text}"
        );
        snapshot(&format!("{name}-{w}x{h}"), &text);
    }
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

/// A directory with fixed contents at a fixed path, for the file selectors.
fn fixed_dir() -> PathBuf {
    let d = PathBuf::from("/tmp/snf-image-creator-screens");
    std::fs::create_dir_all(d.join("images")).unwrap();
    std::fs::write(d.join("debian.raw"), b"").unwrap();
    std::fs::write(d.join("windows.qcow2"), b"").unwrap();
    d
}

fn debian_metadata() -> Metadata {
    let mut m = Metadata::new();
    for (k, v) in [
        ("DESCRIPTION", "Debian GNU/Linux 12 (bookworm)"),
        ("KERNEL", "6.1.0-28-amd64"),
        ("OS", "debian"),
        ("OSFAMILY", "linux"),
        ("PARTITION_TABLE", "msdos"),
        ("ROOT_PARTITION", "1"),
        ("SORTORDER", "7701208"),
        ("USERS", "root user"),
    ] {
        m.insert(k, v).unwrap();
    }
    m
}

#[test]
fn media_selector_and_its_exit_question() {
    check("media-selector", screens::media_selector(&fixed_dir()));
    check("media-cancelled", screens::media_cancelled());
}

#[test]
fn start_up_questions() {
    check(
        "unsupported",
        screens::unsupported_warning("Unable to detect any operating system on the media."),
    );
    check("welcome", screens::welcome("linux (debian)"));
    check("confirm-exit", screens::confirm_exit());
}

#[test]
fn wizard_pages_and_confirmation() {
    let clouds = vec![
        CloudItem {
            name: "envvars".into(),
            description: "OpenStack (OS_* environment variables)".into(),
        },
        CloudItem {
            name: "grnet".into(),
            description: "~okeanos".into(),
        },
    ];
    check(
        "wizard-clouds",
        screens::wizard_clouds(&clouds, Some("grnet")),
    );
    check("wizard-no-clouds", screens::no_clouds());
    check("wizard-name", screens::wizard_name("debian"));
    check(
        "wizard-description",
        screens::wizard_description("Debian GNU/Linux 12 (bookworm)"),
    );
    check("wizard-registration", screens::wizard_registration(false));
    check(
        "wizard-confirm",
        screens::wizard_confirm(&[
            ("Cloud", "grnet".into()),
            ("Image Name", "debian".into()),
            ("Image Description", "Debian GNU/Linux 12 (bookworm)".into()),
            ("Registration Type", "Private".into()),
        ]),
    );
    check("wizard-keep-copy", screens::keep_local_copy("debian"));
    let summary = screens::WizardSummary {
        cloud: "envvars".into(),
        name: "debian".into(),
        public: false,
        image_id: "0b3e0c0e-7e0b-4c53-a4b4-8d6e0f0c5c11".into(),
        location:
            "http://127.0.0.1:8080/v1/AUTH_0123456789abcdef/images/debian-202612050100.diskdump"
                .into(),
        local: Some("/srv/images/debian.diskdump".into()),
        md5: "4b7a2d0c5e8f1a3b6c9d0e2f4a6b8c0d".into(),
        size: 16 << 20,
    };
    check("wizard-summary", screens::wizard_summary(&summary));
    let shown = render_after(&screens::wizard_summary(&summary), &[KeyCode::End], 80, 24);
    assert!(shown.contains("deployment."), "the summary ends:\n{shown}");
    check("confirm-unprepared", screens::confirm_unprepared());
    check(
        "cloud-form",
        screens::cloud_form(
            "Add Cloud",
            "grnet",
            "",
            "https://accounts.example.org/identity/v2.0",
            "secret",
        ),
    );
}

#[test]
fn cloud_screens() {
    let clouds = vec![
        CloudItem {
            name: "envvars".into(),
            description: "OpenStack (OS_* environment variables)".into(),
        },
        CloudItem {
            name: "grnet".into(),
            description: "~okeanos".into(),
        },
    ];
    check("cloud-edit-menu", screens::cloud_edit_menu(&clouds));
    check(
        "cloud-radiolist",
        screens::cloud_radiolist(&clouds, Some("grnet")),
    );
    check("cloud-delete", screens::cloud_delete_checklist(&clouds));
    check(
        "upload-form",
        screens::upload_form("debian.diskdump", "images"),
    );
    check(
        "register-form",
        screens::register_form("debian", "Debian GNU/Linux 12 (bookworm)"),
    );
    let answer = serde_json::json!({
        "id": "0b3e0c0e-7e0b-4c53-a4b4-8d6e0f0c5c11",
        "name": "debian",
        "visibility": "private",
        "checksum": "4b7a2d0c5e8f1a3b6c9d0e2f4a6b8c0d",
        "OSFAMILY": "linux",
    });
    check(
        "registration-info",
        screens::registration_info(&image_creator::cloud::pretty_json(&answer)),
    );
    check("save-as", screens::save_as("Save Log", "/srv/images/"));
}

#[test]
fn expert_menus() {
    check("expert-menu", screens::expert_menu());
    check("customize-menu", screens::customize_menu(true, false));
    check(
        "customize-menu-windows",
        screens::customize_menu(true, true),
    );
    check(
        "virtio-confirm",
        screens::virtio_confirm(
            std::path::Path::new("/srv/virtio-win"),
            "VirtIO drivers in the image now: none\nTo install, for w10 (NTamd64):\n  viostor: viostor.inf, viostor.sys\n  \
             NetKVM: netkvm.inf, netkvm.sys\n",
        ),
    );
    check("register-menu", screens::register_menu(Some("grnet")));
    check("help", screens::help());
    check("confirm-reset", screens::confirm_reset());
}

#[test]
fn sysprep_screens() {
    let registry = Registry::for_family(OsFamily::Linux);
    check("sysprep-checklist", screens::sysprep_checklist(&registry));
    check("sysprep-help", screens::sysprep_help(&registry));
    check(
        "sysprep-params",
        screens::params_menu(&Params::for_family(OsFamily::Linux)),
    );
    let mut changes = MetadataChanges::default();
    changes.added.push(("SWAP".into(), "2:71".into()));
    changes
        .changed
        .push(("USERS".into(), "root user".into(), "root".into()));
    check("sysprep-changes", screens::property_changes(&changes));
    check("sysprep-after-shrink", screens::sysprep_after_shrink());
}

fn spec(family: OsFamily, name: &str) -> &'static ParamSpec {
    Params::for_family(family)
        .specs()
        .into_iter()
        .find(|s| s.name == name)
        .unwrap()
}

#[test]
fn sysprep_parameter_screens() {
    let list = spec(OsFamily::Linux, "sensitive_userdata");
    let params = Params::for_family(OsFamily::Linux);
    let menu = screens::param_list_menu(list, params.get_list(list.name));
    let shown = render(&menu, 80, 24);
    assert!(
        shown.contains("1  .history") && shown.contains("< Delete >"),
        "{shown}"
    );
    check("sysprep-param-list", menu);
    check(
        "sysprep-param-item",
        screens::param_item_input(list, Some(3), ".bash_history"),
    );
    check(
        "sysprep-param-new-item",
        screens::param_item_input(list, None, ""),
    );
    check(
        "sysprep-param-input",
        screens::param_input(spec(OsFamily::Linux, "bootmenu_timeout"), "10"),
    );
    let d = fixed_dir();
    let selector = screens::param_selector(
        spec(OsFamily::Windows, "virtio"),
        &d,
        "/tmp/snf-image-creator-screens/",
    );
    assert!(
        render(&selector, 80, 24).contains("Please select a directory to use for the `virtio'"),
        "file and dir parameters use the file selector"
    );
    check("sysprep-param-dir-selector", selector);
    // Lists are shown joined by `|`, as the original shows them.
    let mut p = Params::for_family(OsFamily::Linux);
    p.set_list("sensitive_userdata", &[".ssh".into(), ".gnupg".into()])
        .unwrap();
    assert_eq!(
        screens::param_value(&p, "sensitive_userdata"),
        ".ssh|.gnupg"
    );
    p.set_list("sensitive_userdata", &[]).unwrap();
    assert_eq!(screens::param_value(&p, "sensitive_userdata"), "<not_set>");
}

#[test]
fn mount_screens() {
    let dir = Path::new("/tmp/snf-image-creator-mount.AbC123");
    let shown = render(&screens::mounted(dir), 80, 24);
    assert!(
        shown.contains("/tmp/snf-image-creator-mount.AbC123 ."),
        "the directory is shown whole, apart from the full stop:\n{shown}"
    );
    check("mount-message", screens::mounted(dir));
    check("umount-busy", screens::umount_failed(dir, None));
}

#[test]
fn properties_screens() {
    check("properties", screens::properties_menu(&debian_metadata()));
    check("property-edit", screens::property_edit("OS", "debian"));
    check("property-add", screens::property_add());
}

#[test]
fn exclude_screens() {
    let mut e = Exclusions::default();
    e.tasks.insert("File system resize");
    check("exclude-linux", screens::exclude_checklist("linux", &e));
    e.all = true;
    check(
        "exclude-windows-noconfig",
        screens::exclude_checklist("windows", &e),
    );
}

#[test]
fn extract_screens() {
    let d = fixed_dir();
    check(
        "extract-selector",
        screens::extract_selector(&d, "/tmp/snf-image-creator-screens/debian.diskdump"),
    );
    check(
        "extract-overwrite",
        screens::confirm_overwrite(&[
            "/tmp/out/debian.diskdump".into(),
            "/tmp/out/debian.diskdump.meta".into(),
        ]),
    );
}

#[test]
fn log_viewer_shows_the_end_and_scrolls() {
    let text: String = (1..=60)
        .map(|i| format!("2026-11-25 10:00:{:02} line {i}\n", i % 60))
        .collect();
    let mut d = screens::log_viewer(Path::new("/tmp/fatal-abc123"), &text);
    check("log-viewer", d.clone());
    let shown = render(&d, 80, 24);
    assert!(
        shown.contains("line 1\n") || shown.contains("line 1 "),
        "{shown}"
    );
    for _ in 0..100 {
        d.handle(key(KeyCode::PageDown));
    }
    let end = render(&d, 80, 24);
    assert!(end.contains("line 60") && !end.contains("line 1 "), "{end}");
    assert!(end.contains("100%"), "{end}");
    assert_eq!(d.handle(key(KeyCode::Right)), None);
    assert_eq!(
        d.handle(key(KeyCode::Enter)),
        Some(Outcome::Button(1)),
        "Save"
    );
}

#[test]
fn progress_screen() {
    for (w, h) in SIZES {
        let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
        term.draw(|f| {
            let rest = render_screen(BACKTITLE, f.area(), f.buffer_mut());
            let log = vec![
                "Examining source media `debian.raw' ... a raw image file of 320.0 MiB".to_string(),
                "Reading the partition table ... msdos, 2 partition(s)".to_string(),
            ];
            let gauge = Gauge {
                title: "Dumping image file".into(),
                position: 96 << 20,
                total: 320 << 20,
                bytes: true,
            };
            render_progress(
                "Image Extraction",
                &log,
                Some(&gauge),
                false,
                rest,
                f.buffer_mut(),
            );
        })
        .unwrap();
        let text = text_of(&term);
        assert!(
            text.contains("30%") && text.contains("96/320 MiB"),
            "{text}"
        );
        snapshot(&format!("progress-{w}x{h}"), &text);
    }
}

/// `dialog` at `w`x`h` after `keys` (drawn before the keys, as the UI does).
fn render_after(dialog: &Dialog, keys: &[KeyCode], w: u16, h: u16) -> String {
    let term = Terminal::new(TestBackend::new(w, h)).unwrap();
    let mut ui = Ui::new(
        term,
        Box::new(ScriptedEvents::default()),
        Arc::new(AtomicBool::new(false)),
    );
    ui.backtitle = BACKTITLE.into();
    let mut d = dialog.clone();
    ui.draw(&mut d).unwrap();
    for k in keys {
        d.handle(key(*k));
        ui.draw(&mut d).unwrap();
    }
    text_of(ui.terminal())
}

/// The last few words of `text`, as they end one of its wrapped lines.
fn last_words(text: &str) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    words[words.len().saturating_sub(2)..].join(" ")
}

#[test]
fn every_help_screen_shows_its_last_line_at_80x24() {
    let mut helps = vec![
        (
            "properties",
            screens::properties_help(),
            screens::PROPERTIES_HELP.to_string(),
        ),
        (
            "exclude",
            screens::exclude_help(),
            screens::EXCLUDE_HELP.to_string(),
        ),
        ("help", screens::help(), screens::DOCS_URL.to_string()),
    ];
    for family in [OsFamily::Linux, OsFamily::Windows] {
        let registry = Registry::for_family(family);
        let last = registry
            .descriptors()
            .last()
            .unwrap()
            .description
            .to_string();
        helps.push(("sysprep", screens::sysprep_help(&registry), last));
    }
    for (name, d, text) in helps {
        for (w, h) in SIZES {
            let shown = render_after(&d, &[KeyCode::End], w, h);
            let end = last_words(&text);
            let flat = shown
                .lines()
                .map(|l| l.trim_matches(|c| c == '│' || c == ' '))
                .collect::<Vec<_>>()
                .join(" ");
            assert!(
                flat.contains(&end),
                "{name} at {w}x{h} does not show its end {end:?}:\n{shown}"
            );
        }
    }
    check("properties-help", screens::properties_help());
    check("exclude-help", screens::exclude_help());
}

#[test]
fn long_log_lines_wrap_whole() {
    let long = format!(
        "2026-11-25 10:00:00 Warning: {} END-OF-LINE",
        "a very long message about what happened ".repeat(4)
    );
    let text = format!("2026-11-25 10:00:00 first\n{long}\n");
    let mut d = screens::log_viewer(Path::new("/tmp/fatal-abc123"), &text);
    if let snf_image_creator::widgets::Body::Text { scroll, .. } = &mut d.body {
        *scroll = usize::MAX;
    }
    let shown = render_after(&d, &[], 80, 24);
    assert!(shown.contains("END-OF-LINE"), "{shown}");
}

#[test]
fn a_long_message_scrolls_to_its_end() {
    let text: String = (1..=40)
        .map(|i| format!("Line number {i} of the message.\n"))
        .collect();
    let d = Dialog::msgbox("Error", &text);
    let first = render_after(&d, &[], 80, 24);
    assert!(
        first.contains("Line number 1 ") && !first.contains("number 40 "),
        "{first}"
    );
    let end = render_after(&d, &[KeyCode::End], 80, 24);
    assert!(
        end.contains("Line number 40 ") && end.contains("100%"),
        "{end}"
    );
    assert!(end.contains("<   OK   >"), "{end}");
}

#[test]
fn long_values_end_with_an_ellipsis() {
    let mut m = debian_metadata();
    let long = "x".repeat(200);
    m.insert("DESCRIPTION", &long).unwrap();
    let shown = render(&screens::properties_menu(&m), 80, 24);
    let line = shown.lines().find(|l| l.contains("DESCRIPTION")).unwrap();
    assert!(line.contains("x…"), "{shown}");
    check("properties-long-value", screens::properties_menu(&m));
}

#[test]
fn progress_lines_keep_their_figures() {
    let mut term = Terminal::new(TestBackend::new(80, 24)).unwrap();
    term.draw(|f| {
        let rest = render_screen(BACKTITLE, f.area(), f.buffer_mut());
        let gauge = Gauge {
            title: "Copying the data of the source into the private working copy of the image"
                .into(),
            position: 117 << 20,
            total: 3072 << 20,
            bytes: true,
        };
        render_progress(
            "Initialization",
            &[],
            Some(&gauge),
            false,
            rest,
            f.buffer_mut(),
        );
    })
    .unwrap();
    let text = text_of(&term);
    assert!(
        text.contains("…(117/3072 MiB)") || text.contains("… (117/3072 MiB)"),
        "{text}"
    );
    snapshot("progress-long-label-80x24", &text);
}

#[test]
fn screens_fit_a_tiny_terminal_without_panicking() {
    let registry = Registry::for_family(OsFamily::Linux);
    for (w, h) in [(40, 12), (20, 6), (3, 3)] {
        for d in [
            screens::sysprep_checklist(&registry),
            screens::welcome("linux (debian)"),
            screens::property_add(),
            screens::media_selector(&fixed_dir()),
        ] {
            let _ = render(&d, w, h);
        }
        let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
        term.draw(|f| {
            render_progress(
                "x",
                &["y".into()],
                None,
                true,
                Rect::new(0, 0, w, h),
                f.buffer_mut(),
            )
        })
        .unwrap();
    }
}

#[test]
fn sysprep_checklist_keys_toggle_operations() {
    let registry = Registry::for_family(OsFamily::Linux);
    let mut d = screens::sysprep_checklist(&registry);
    let before = d.checked();
    assert!(before.contains(&"Cleanup userdata".to_string()));
    assert!(!before.contains(&"Remove user accounts".to_string()));
    d.handle(key(KeyCode::Char(' '))); // off: Cleanup userdata
    d.handle(key(KeyCode::Down));
    d.handle(key(KeyCode::Char(' '))); // on: Remove user accounts
    let after = d.checked();
    assert!(!after.contains(&"Cleanup userdata".to_string()));
    assert!(after.contains(&"Remove user accounts".to_string()));
    d.handle(key(KeyCode::Right));
    assert_eq!(
        d.handle(key(KeyCode::Enter)),
        Some(Outcome::Button(1)),
        "Params"
    );
}

#[test]
fn app_without_source_shows_the_selector_and_exits_on_request() {
    let log = Arc::new(LogFile::open(None).unwrap());
    let reporter = Arc::new(UiReporter::new(log, None));
    let term = Terminal::new(TestBackend::new(80, 24)).unwrap();
    let keys = ScriptedEvents::new([key(KeyCode::Esc), key(KeyCode::Enter)]);
    let ui = Ui::new(term, Box::new(keys), Arc::new(AtomicBool::new(false)));
    let settings = Settings {
        source: Some("/nonexistent/disk.raw".into()),
        ..Settings::default()
    };
    let mut app = App::new(ui, reporter, settings);
    assert_eq!(app.run().unwrap(), Exit::Done);
    let screen = text_of(app.ui().terminal());
    assert!(
        screen.contains("You canceled the media selection dialog box"),
        "{screen}"
    );
}

#[test]
fn app_bundle_host_starts_bundling_as_root_and_explains_otherwise() {
    // A root with nothing mounted on it: as root the bundle starts and fails at once
    // (crates/disk/tests/host_bundle.rs bundles a real one); without root the selector
    // says so and stays.
    std::env::set_var("SNF_HOST_ROOT", "/nonexistent-snf-test-host-root");
    let log = Arc::new(LogFile::open(None).unwrap());
    let reporter = Arc::new(UiReporter::new(log, None));
    let term = Terminal::new(TestBackend::new(80, 24)).unwrap();
    let mut keys = vec![key(KeyCode::Tab), key(KeyCode::Right), key(KeyCode::Enter)]; // Bundle Host
    let root = rustix::process::geteuid().is_root();
    if !root {
        keys.push(key(KeyCode::Enter)); // OK on the message
        keys.push(key(KeyCode::Esc)); // cancel the selector
    }
    let ui = Ui::new(
        term,
        Box::new(ScriptedEvents::new(keys)),
        Arc::new(AtomicBool::new(false)),
    );
    let mut app = App::new(ui, reporter, Settings::default());
    let result = app.run();
    std::env::remove_var("SNF_HOST_ROOT");
    if root {
        match result {
            Ok(Exit::Fatal(msg)) => assert!(
                msg.contains("no filesystem is mounted on /nonexistent-snf-test-host-root"),
                "{msg}"
            ),
            other => panic!("{other:?}"),
        }
    } else {
        // The scripted keys run out on the exit question: the UI reports it.
        let err = result.unwrap_err();
        assert!(err.to_string().contains("scripted keys ran out"), "{err}");
        let screen = text_of(app.ui().terminal());
        assert!(screen.contains("Do you want to exit?"), "{screen}");
    }
}

fn typed(text: &str) -> Vec<KeyEvent> {
    text.chars().map(|c| key(KeyCode::Char(c))).collect()
}

/// The real flow on the example disk, driven by scripted keys: Customize > Sysprep >
/// Params > sensitive_userdata, then Add, Delete and Edit items of the list and a
/// refused empty item; the session's parameters hold exactly the edited list.
#[test]
fn app_edits_a_list_parameter_item_by_item() {
    let dir = tempfile::tempdir().unwrap();
    let source = common::example_disk(dir.path());
    let log = Arc::new(LogFile::open(None).unwrap());
    let reporter = Arc::new(UiReporter::new(log, None));
    let term = Terminal::new(TestBackend::new(80, 24)).unwrap();
    let mut keys = vec![
        key(KeyCode::Right), // Welcome: Expert
        key(KeyCode::Enter),
        key(KeyCode::Enter), // Customize
        key(KeyCode::Enter), // Sysprep
        key(KeyCode::Right), // the checklist's Params
        key(KeyCode::Enter),
        key(KeyCode::End),   // sensitive_userdata, the last parameter
        key(KeyCode::Enter), // Update: the list's own menu
        key(KeyCode::Right), // Add
        key(KeyCode::Enter),
    ];
    keys.extend(typed(".myhistory"));
    keys.extend([
        key(KeyCode::Enter),
        key(KeyCode::Home), // item 1, `.history'
        key(KeyCode::Right),
        key(KeyCode::Right), // Delete
        key(KeyCode::Enter),
        key(KeyCode::Enter), // Edit item 1, now `.sh_history'
        KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL),
    ]);
    keys.extend(typed(".sh_hist"));
    keys.extend([
        key(KeyCode::Enter),
        key(KeyCode::Right), // Add an empty item: refused
        key(KeyCode::Enter),
        key(KeyCode::Enter),
    ]);
    // The keys run out on the error message.
    let ui = Ui::new(
        term,
        Box::new(ScriptedEvents::new(keys)),
        Arc::new(AtomicBool::new(false)),
    );
    let settings = Settings {
        source: Some(source),
        tmpdir: Some(dir.path().to_path_buf()),
        ..Settings::default()
    };
    let mut app = App::new(ui, reporter, settings);
    let err = app.run().unwrap_err();
    assert!(err.to_string().contains("scripted keys ran out"), "{err}");
    let screen = text_of(app.ui().terminal());
    assert!(
        screen.contains("Error: Filename cannot be empty"),
        "an invalid item is refused with the parameter's reason:\n{screen}"
    );
    let params = app
        .current_session()
        .and_then(|s| s.sysprep_params())
        .expect("initialized");
    assert_eq!(
        params.get_list("sensitive_userdata"),
        [
            ".sh_hist",
            ".bash_history",
            ".zsh_history",
            ".gnupg",
            ".ssh",
            ".kamakirc",
            ".kamaki.history",
            ".kamaki.log",
            ".myhistory",
        ]
    );
    app.close();
    assert!(
        !common::workdir_left(dir.path()),
        "the work directory went with the session"
    );
}
