//! Every screen of the program, as data: each function builds the [`Dialog`] the user
//! sees (the app reads the answers back). Kept apart from the flow so that tests can
//! render each screen and compare it with its stored snapshot.

use std::path::Path;

use image_creator::interactive::{deploy_tasks_for, Exclusions};
use image_creator::metadata::Metadata;
use image_creator::sysprep::{registry::wrap as wrap_text, ParamKind, ParamSpec, Params, Registry};
use image_creator::VERSION;

use crate::widgets::{Dialog, Field};

/// Where the documentation is.
pub const DOCS_URL: &str = "http://www.synnefo.org/docs/snf-image-creator/latest/";

/// Buttons of the media selector.
pub const MEDIA_BUTTONS: [&str; 3] = ["OK", "Bundle Host", "Cancel"];

/// The file selector asking for the source.
pub fn media_selector(dir: &Path) -> Dialog {
    Dialog::fselect(
        "Please select an input media.",
        dir,
        &format!("{}/", dir.display()).replace("//", "/"),
        &MEDIA_BUTTONS,
    )
}

/// After Cancel in the media selector.
pub fn media_cancelled() -> Dialog {
    Dialog::yesno(
        "Confirm Exit",
        "You canceled the media selection dialog box. Do you want to exit?",
        false,
    )
}

/// Exit or not.
pub fn confirm_exit() -> Dialog {
    Dialog::yesno("Confirm Exit", "Do you want to exit?", false)
}

/// The media is not supported: go on (expert mode, no deployment configuration)?
pub fn unsupported_warning(reason: &str) -> Dialog {
    Dialog::yesno(
        "Unsupported media",
        &format!(
            "The system on the input media is not supported.\n\nReason: {reason}\n\n\
             We highly recommend not to create an image out of this, since the image won't \
             be cleaned up and you will not be able to configure it during the deployment. \
             Press <Yes> if you still want to continue with the image creation process."
        ),
        true,
    )
}

/// Buttons of the welcome question.
pub const WELCOME_BUTTONS: [&str; 2] = ["Wizard", "Expert"];

/// Wizard or expert mode.
pub fn welcome(os_text: &str) -> Dialog {
    Dialog::message(
        "Welcome",
        &format!(
            "snf-image-creator detected a {os_text} system on the input media. Would you like \
             to run a wizard to assist you through the image creation process?\n\n\
             Choose <Wizard> to run the wizard, <Expert> to run snf-image-creator in expert \
             mode or press ESC to quit the program."
        ),
        &WELCOME_BUTTONS,
    )
}

/// The number of wizard pages before the confirmation.
pub const WIZARD_PAGES: usize = 4;

fn page_title(i: usize, name: &str) -> String {
    format!("({}/{WIZARD_PAGES}) {name}", i + 1)
}

/// A saved cloud account, as the screens list it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudItem {
    /// Its name.
    pub name: String,
    /// Its description (or where it comes from).
    pub description: String,
}

/// Buttons of the wizard's cloud page.
pub const WIZARD_CLOUD_BUTTONS: [&str; 3] = ["Next", "Add", "Back"];

/// Wizard page 1: which cloud.
pub fn wizard_clouds(clouds: &[CloudItem], selected: Option<&str>) -> Dialog {
    let items = clouds
        .iter()
        .map(|c| (c.name.clone(), c.description.clone()))
        .collect();
    let mut d = Dialog::menu(
        &page_title(0, "Clouds"),
        "Please select a cloud account or press <Add> to add a new one:",
        items,
        &WIZARD_CLOUD_BUTTONS,
    );
    if let Some(i) = selected.and_then(|s| clouds.iter().position(|c| c.name == s)) {
        d.select(i);
    }
    d
}

/// No cloud saved yet.
pub fn no_clouds() -> Dialog {
    Dialog::yesno(
        "No clouds",
        "No available clouds found. Would you like to add one now?",
        false,
    )
}

/// Wizard page 2.
pub fn wizard_name(value: &str) -> Dialog {
    Dialog::inputbox(
        &page_title(1, "Image Name"),
        "Please provide a name for the image:",
        value,
        &["Next", "Back"],
    )
}

/// Wizard page 3.
pub fn wizard_description(value: &str) -> Dialog {
    Dialog::inputbox(
        &page_title(2, "Image Description"),
        "Please provide a description for the image:",
        value,
        &["Next", "Back"],
    )
}

/// Wizard page 4.
pub fn wizard_registration(public: bool) -> Dialog {
    Dialog::radiolist(
        &page_title(3, "Registration Type"),
        "Please provide a registration type:",
        vec![
            (
                "Private".into(),
                "Image is accessible only by this user".into(),
                !public,
            ),
            (
                "Public".into(),
                "Everyone can create VMs from this image".into(),
                public,
            ),
        ],
        &["Next", "Back"],
    )
}

/// Buttons of the wizard's confirmation.
pub const CONFIRM_BUTTONS: [&str; 3] = ["Yes", "Back", "Quit"];

/// The wizard's answers, to confirm.
pub fn wizard_confirm(answers: &[(&str, String)]) -> Dialog {
    let mut text = String::from("Please review the following:\n\n");
    for (page, answer) in answers {
        text.push_str(&format!("  * {page}: {answer}\n"));
    }
    text.push_str("\nHit <Yes> to create and register the image.");
    Dialog::message("Confirmation", &text, &CONFIRM_BUTTONS)
}

/// Keep a local copy after the wizard registered the image?
pub fn keep_local_copy(name: &str) -> Dialog {
    Dialog::yesno(
        "Image registered",
        &format!(
            "The image `{name}' was successfully uploaded and registered. Would you like to \
             keep a local copy?"
        ),
        true,
    )
}

/// What the wizard made, for its last screen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WizardSummary {
    /// The cloud account.
    pub cloud: String,
    /// The registered name.
    pub name: String,
    /// Whether the image is public.
    pub public: bool,
    /// The image service's id of the image.
    pub image_id: String,
    /// Where the image file is in the cloud's storage.
    pub location: String,
    /// The local copy, if one was kept.
    pub local: Option<std::path::PathBuf>,
    /// The image's MD5.
    pub md5: String,
    /// The image's size in bytes.
    pub size: u64,
}

/// The wizard's last screen: what was made, where it is, and what to do next.
pub fn wizard_summary(s: &WizardSummary) -> Dialog {
    let local = s
        .local
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "not kept".into());
    let id = if s.image_id.is_empty() {
        "(not given by the cloud)"
    } else {
        &s.image_id
    };
    let text = format!(
        "The image was uploaded and registered.\n\n\
         Image name:  {name} ({visibility})\n\
         Image ID:    {id}\n\
         Cloud:       {cloud}\n\
         Location:    {location}\n\
         Local copy:  {local}\n\
         MD5:         {md5}\n\
         Size:        {size} MiB ({bytes} bytes)\n\n\
         Next: create a virtual machine from image {id} with the cloud's web interface \
         or its command-line client (e.g. `openstack server create --image {id}' or \
         `kamaki server create --image-id {id}'). The image's properties tell \
         snf-image how to configure it at deployment.",
        name = s.name,
        visibility = if s.public { "public" } else { "private" },
        cloud = s.cloud,
        location = s.location,
        md5 = s.md5,
        size = s.size.div_ceil(1 << 20),
        bytes = s.size,
    );
    Dialog::msgbox("Image created", &text)
}

/// Write or upload an image on which no system preparation ran?
pub fn confirm_unprepared() -> Dialog {
    Dialog::yesno(
        "No system preparation",
        "No system preparation task has run on this image: it still holds the logs, \
         caches, SSH host keys, password hashes and user secrets of the source. Use \
         Customize > Sysprep to clean it up first.\n\nContinue with the image as it is?",
        true,
    )
}

/// The cloud account form (add or edit).
pub fn cloud_form(title: &str, name: &str, description: &str, url: &str, token: &str) -> Dialog {
    Dialog::form(
        title,
        "Please provide the following information about the cloud account:",
        vec![
            Field::new("Name", name),
            Field::new("Description (optional)", description),
            Field::new("Authentication URL", url),
            Field::new("Token", token).secret(),
        ],
        &["OK", "Cancel"],
    )
}

/// Items of the expert main menu.
pub const EXPERT_ITEMS: [(&str, &str); 6] = [
    ("Customize", "Customize image & cloud deployment options"),
    ("Register", "Register image to a cloud"),
    ("Extract", "Dump image to a local file"),
    ("Log", "View the log"),
    ("Reset", "Reset everything and start over"),
    ("Help", "Get help for using snf-image-creator"),
];

fn items(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// The expert main menu.
pub fn expert_menu() -> Dialog {
    Dialog::menu(
        &format!("Image Creator for Synnefo (snf-image-creator v{VERSION})"),
        "Choose one of the following or press <Exit> to exit.",
        items(&EXPERT_ITEMS),
        &["OK", "Exit"],
    )
}

/// The customization menu (Mount only where the guest can be mounted).
pub fn customize_menu(mount: bool, virtio: bool) -> Dialog {
    let mut list = vec![
        ("Sysprep", "Run various image preparation tasks"),
        ("Properties", "View & Modify image properties"),
        ("Exclude", "Exclude various deployment tasks from running"),
    ];
    if mount {
        list.push(("Mount", "Mount the image and access it from the host"));
    }
    if virtio {
        list.push(("VirtIO", "Install VirtIO drivers into the Windows image"));
    }
    Dialog::menu(
        "Image Customization Menu",
        "Choose one of the following or press <Back> to go back.",
        items(&list),
        &["Select", "Back"],
    )
}

/// Buttons of the sysprep checklist.
pub const SYSPREP_BUTTONS: [&str; 4] = ["Run", "Params", "Help", "Cancel"];

/// The system preparation operations not yet run, checked when enabled.
pub fn sysprep_checklist(registry: &Registry) -> Dialog {
    let items = registry
        .descriptors()
        .iter()
        .map(|d| {
            (
                d.display.to_string(),
                String::new(),
                registry.is_enabled(d.name),
            )
        })
        .collect();
    Dialog::checklist(
        "System Preparation",
        "Choose which system preparation tasks you would like to run on the image. Press \
         <Help> to see details about the system preparation tasks.",
        items,
        &SYSPREP_BUTTONS,
    )
}

/// Every operation not yet run, with what it does.
pub fn sysprep_help(registry: &Registry) -> Dialog {
    let mut text = String::new();
    for d in registry.descriptors() {
        text.push_str(&format!("{} ({}):\n", d.display, d.name));
        for line in wrap_text(d.description, 66) {
            text.push_str(&format!("    {line}\n"));
        }
        text.push('\n');
    }
    Dialog::textbox("System Preparation Tasks", &text, &["OK"])
}

/// The shown value of a parameter: list items joined by `|` (as the original shows
/// them), `<not_set>` when empty.
pub fn param_value(params: &Params, name: &str) -> String {
    let v = params.get_list(name);
    if v.iter().all(String::is_empty) {
        "<not_set>".into()
    } else {
        v.join("|")
    }
}

/// Buttons of the parameters menu.
pub const PARAMS_BUTTONS: [&str; 3] = ["Update", "Details", "Back"];

/// The visible parameters and their values.
pub fn params_menu(params: &Params) -> Dialog {
    let items = params
        .specs()
        .into_iter()
        .filter(|s| !s.hidden)
        .map(|s| (s.name.to_string(), param_value(params, s.name)))
        .collect();
    Dialog::menu(
        "System Preparation Parameters",
        "These parameters are used by the system preparation tasks. Choose one and press \
         <Update> to change its value or <Details> to read about it. Press <Back> when done.",
        items,
        &PARAMS_BUTTONS,
    )
}

/// A new value for a parameter holding one value.
pub fn param_input(spec: &ParamSpec, value: &str) -> Dialog {
    Dialog::inputbox(
        spec.name,
        &format!(
            "Please provide a new value for the `{}' parameter ({}):",
            spec.name,
            spec.type_name()
        ),
        value,
        &["OK", "Cancel"],
    )
}

/// Buttons of a list parameter's menu.
pub const PARAM_LIST_BUTTONS: [&str; 4] = ["Edit", "Add", "Delete", "Back"];

/// The items of a list parameter, numbered from 1.
pub fn param_list_menu(spec: &ParamSpec, items: &[String]) -> Dialog {
    let entries = items
        .iter()
        .enumerate()
        .map(|(i, v)| ((i + 1).to_string(), v.clone()))
        .collect();
    Dialog::menu(
        spec.name,
        &format!(
            "The `{}' parameter is a list ({}). Press <Edit> to change the highlighted \
             item, <Add> to add a new one or <Delete> to remove the highlighted one. Press \
             <Back> when done.",
            spec.name,
            spec.type_name()
        ),
        entries,
        &PARAM_LIST_BUTTONS,
    )
}

/// One item of a list parameter: item `index` (from 1) changed, or a new one (`None`).
pub fn param_item_input(spec: &ParamSpec, index: Option<usize>, value: &str) -> Dialog {
    let text = match index {
        Some(i) => format!(
            "Please provide a new value for item {i} of the `{}' parameter ({}):",
            spec.name,
            spec.kind.name()
        ),
        None => format!(
            "Please provide a new item for the `{}' parameter ({}):",
            spec.name,
            spec.kind.name()
        ),
    };
    Dialog::inputbox(spec.name, &text, value, &["OK", "Cancel"])
}

/// The file selector for a `file` or `dir` parameter (or list item), listing `dir`.
pub fn param_selector(spec: &ParamSpec, dir: &Path, path: &str) -> Dialog {
    let what = if spec.kind == ParamKind::Dir {
        "directory"
    } else {
        "file"
    };
    Dialog::fselect(
        &format!(
            "Please select a {what} to use for the `{}' parameter",
            spec.name
        ),
        dir,
        path,
        &["OK", "Cancel"],
    )
}

/// Run system preparation on an image that was shrunk?
pub fn sysprep_after_shrink() -> Dialog {
    Dialog::yesno(
        "System Preparation",
        "The image has been shrunk. Running system preparation tasks on a shrunk image is \
         dangerous: its last file system has no free space left, so a task that writes \
         files may fail.\n\nDo you really want to continue?",
        true,
    )
}

/// Confirm installing the VirtIO drivers `plan` (the library's description) from
/// `dir`.
pub fn virtio_confirm(dir: &Path, plan: &str) -> Dialog {
    Dialog::message(
        "Install VirtIO Drivers",
        &format!(
            "Drivers from {}:\n\n{plan}\nStorage drivers are made boot-critical; the rest are \
             installed by pnputil at the first boot. Install them?",
            dir.display()
        ),
        &["Install", "Cancel"],
    )
}

/// The guest is mounted under `dir`.
pub fn mounted(dir: &Path) -> Dialog {
    Dialog::msgbox(
        "Mount Image",
        &format!(
            "The image was mounted successfully. You may access it under {} . Press <OK> \
             when you have finished accessing it.",
            dir.display()
        ),
    )
}

/// Unmounting `dir` failed (`why`: the error when it is not that the mount is busy).
pub fn umount_failed(dir: &Path, why: Option<&str>) -> Dialog {
    let why = why.map(|w| format!("{w}\n\n")).unwrap_or_default();
    Dialog::msgbox(
        "Mount Image",
        &format!(
            "{why}Umount failed. Make sure no process is using any files under {} and press \
             <OK>.",
            dir.display()
        ),
    )
}

/// Buttons of the properties menu.
pub const PROPERTIES_BUTTONS: [&str; 4] = ["Edit/Del", "Add", "Help", "Back"];

/// The image properties.
pub fn properties_menu(meta: &Metadata) -> Dialog {
    let items = meta
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Dialog::menu(
        "Image Properties",
        "View and modify the properties of the image. Press <Add> to add a new one.",
        items,
        &PROPERTIES_BUTTONS,
    )
}

/// Change or delete one property.
pub fn property_edit(key: &str, value: &str) -> Dialog {
    Dialog::inputbox(
        "Edit Property",
        &format!("Please provide a new value for property `{key}' or press <Delete> to delete it:"),
        value,
        &["OK", "Delete", "Cancel"],
    )
}

/// A new property.
pub fn property_add() -> Dialog {
    Dialog::form(
        "Add Property",
        "Please provide the name and the value of the new property:",
        vec![Field::new("Name", ""), Field::new("Value", "")],
        &["OK", "Cancel"],
    )
}

/// What the image properties are.
pub const PROPERTIES_HELP: &str = "Image properties are key/value pairs stored with the \
image. The deployment tool (snf-image) reads some of them to configure the new virtual \
machine, and the cloud's web interface shows others.\n\n\
Keys may hold only letters, digits and underscores, and are stored upper-case.\n\n\
Properties read at deployment:\n\
\x20 OSFAMILY        linux, windows, freebsd, netbsd, openbsd\n\
\x20 ROOT_PARTITION  the number of the root partition\n\
\x20 ROOT_LV         vg/lv of a root on LVM (with ROOT_PARTITION its PV)\n\
\x20 USERS           the users whose password is set\n\
\x20 SWAP            <partition>:<MiB> swap partition to create\n\
\x20 PASSWD_HASHING_METHOD  md5, sha1, blowfish, sha256, sha512\n\
\x20 CLOUD_INIT, NM_NETWORKING  configuration methods (yes/no)\n\
\x20 EXCLUDE_TASK_<Task>, EXCLUDE_ALL_TASKS  deployment tasks to skip\n\n\
Informational: OS, DESCRIPTION, GUI, KERNEL, SORTORDER, REMOTE_CONNECTION, \
PARTITION_TABLE, OSVERSION.";

/// What the exclusions are.
pub const EXCLUDE_HELP: &str = "When a virtual machine is created from the image, the \
deployment tool (snf-image) runs configuration tasks on it: it resizes the partition \
table and the file system to fill the disk, adds swap, removes the SSH host keys, \
assigns the host name, sets the password, configures the network and injects files.\n\n\
Check a task to keep it from running on machines created from this image: the image \
gets the property EXCLUDE_TASK_<Task>=yes.\n\n\
<No Config> excludes every task (EXCLUDE_ALL_TASKS=yes): the image is deployed exactly \
as it is, without any configuration.";

/// The Help of the Properties menu.
pub fn properties_help() -> Dialog {
    Dialog::textbox("Image Properties", PROPERTIES_HELP, &["OK"])
}

/// The Help of the Exclude checklist.
pub fn exclude_help() -> Dialog {
    Dialog::textbox("Configuration Tasks", EXCLUDE_HELP, &["OK"])
}

/// Buttons of the exclusions checklist.
pub const EXCLUDE_BUTTONS: [&str; 4] = ["OK", "No Config", "Help", "Cancel"];

/// The deployment tasks of this OS family, checked when excluded.
pub fn exclude_checklist(osfamily: &str, exclusions: &Exclusions) -> Dialog {
    let items = deploy_tasks_for(osfamily)
        .into_iter()
        .map(|t| {
            (
                t.label.to_string(),
                String::new(),
                exclusions.tasks.contains(t.label),
            )
        })
        .collect();
    let state = if exclusions.all {
        "\n\nCurrently: No Config (every deployment task is excluded)."
    } else {
        ""
    };
    Dialog::checklist(
        "Exclude Configuration Tasks",
        &format!(
            "Choose which configuration tasks should not run during the deployment, or \
             press <No Config> to exclude them all.{state}"
        ),
        items,
        &EXCLUDE_BUTTONS,
    )
}

/// The file selector asking where to write the image.
pub fn extract_selector(dir: &Path, path: &str) -> Dialog {
    Dialog::fselect("Save image as...", dir, path, &["OK", "Cancel"])
}

/// Publish an image that is not generalized? (`why` from the library, as one sentence.)
pub fn confirm_not_generalized(why: &str) -> Dialog {
    let mut c = why.chars();
    let why = match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    };
    Dialog::yesno(
        "Not generalized",
        &format!("{why}.\n\nUpload it anyway?"),
        true,
    )
}

/// Overwrite these files?
pub fn confirm_overwrite(files: &[String]) -> Dialog {
    Dialog::yesno(
        "Confirm Overwrite",
        &format!(
            "The following file(s) exist:\n{}\nDo you want to overwrite them?",
            files.iter().map(|f| format!("  {f}\n")).collect::<String>()
        ),
        true,
    )
}

/// Buttons of the log viewer.
pub const LOG_BUTTONS: [&str; 2] = ["OK", "Save"];

/// The log.
pub fn log_viewer(path: &Path, text: &str) -> Dialog {
    Dialog::textbox(&format!("Log: {}", path.display()), text, &LOG_BUTTONS)
}

/// Where to save a copy of something.
pub fn save_as(title: &str, value: &str) -> Dialog {
    Dialog::inputbox(
        title,
        "Please provide a file name:",
        value,
        &["OK", "Cancel"],
    )
}

/// Items of the registration menu.
pub fn register_menu(current: Option<&str>) -> Dialog {
    let cloud = format!(
        "Select cloud account (current: {})",
        current.unwrap_or("<none>")
    );
    Dialog::menu(
        "Image Registration Menu",
        "Choose one of the following or press <Back> to go back.",
        vec![
            ("Add".into(), "Add a new cloud account".into()),
            ("Edit".into(), "Edit a cloud account".into()),
            ("Delete".into(), "Delete cloud accounts".into()),
            ("Cloud".into(), cloud),
            ("Upload".into(), "Upload the image to the cloud".into()),
            (
                "Register".into(),
                "Register the image with the cloud".into(),
            ),
            ("Info".into(), "Show registration information".into()),
        ],
        &["Select", "Back"],
    )
}

/// Choose the cloud to use.
pub fn cloud_radiolist(clouds: &[CloudItem], current: Option<&str>) -> Dialog {
    Dialog::radiolist(
        "Clouds",
        "Please select a cloud:",
        clouds
            .iter()
            .map(|c| {
                (
                    c.name.clone(),
                    c.description.clone(),
                    Some(c.name.as_str()) == current,
                )
            })
            .collect(),
        &["OK", "Cancel"],
    )
}

/// Choose the cloud account to edit.
pub fn cloud_edit_menu(clouds: &[CloudItem]) -> Dialog {
    Dialog::menu(
        "Edit Cloud",
        "Please select the cloud account to edit:",
        clouds
            .iter()
            .map(|c| (c.name.clone(), c.description.clone()))
            .collect(),
        &["Edit", "Cancel"],
    )
}

/// Choose cloud accounts to delete.
pub fn cloud_delete_checklist(clouds: &[CloudItem]) -> Dialog {
    Dialog::checklist(
        "Delete Clouds",
        "Please select the cloud accounts to delete:",
        clouds
            .iter()
            .map(|c| (c.name.clone(), c.description.clone(), false))
            .collect(),
        &["Delete", "Cancel"],
    )
}

/// Where to upload the image.
pub fn upload_form(name: &str, container: &str) -> Dialog {
    Dialog::form(
        "Upload Image",
        "Please provide the name of the uploaded image and its container:",
        vec![
            Field::new("Remote Name", name),
            Field::new("Container", container),
        ],
        &["OK", "Cancel"],
    )
}

/// How to register the image.
pub fn register_form(name: &str, description: &str) -> Dialog {
    Dialog::form(
        "Register Image",
        "Please provide the registration name and a description:",
        vec![
            Field::new("Registration name", name),
            Field::new("Description (optional)", description),
        ],
        &["OK", "Cancel"],
    )
}

/// The registration answer.
pub fn registration_info(json: &str) -> Dialog {
    Dialog::textbox("Registration Info", json, &["OK", "Save"])
}

/// Where the documentation is.
pub fn help() -> Dialog {
    Dialog::msgbox(
        "Help",
        &format!("For help, check the online documentation:\n\n{DOCS_URL}"),
    )
}

/// Reset everything?
pub fn confirm_reset() -> Dialog {
    Dialog::yesno(
        "Confirm Reset",
        "Are you sure you want to reset everything? All changes will be lost.",
        true,
    )
}

/// How the properties changed after system preparation.
pub fn property_changes(changes: &image_creator::interactive::MetadataChanges) -> Dialog {
    let mut text = String::new();
    if !changes.added.is_empty() {
        text.push_str("New image properties:\n");
        for (k, v) in &changes.added {
            text.push_str(&format!("    {k}: {v}\n"));
        }
        text.push('\n');
    }
    if !changes.changed.is_empty() {
        text.push_str("Updated image properties:\n");
        for (k, old, new) in &changes.changed {
            text.push_str(&format!("    {k}: {old} -> {new}\n"));
        }
        text.push('\n');
    }
    if !changes.removed.is_empty() {
        text.push_str("Removed image properties:\n");
        for k in &changes.removed {
            text.push_str(&format!("    {k}\n"));
        }
    }
    Dialog::textbox("Image Property Changes", &text, &["OK"])
}
