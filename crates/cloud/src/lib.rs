//! Cloud accounts, upload and registration, for OpenStack (Keystone v3, Swift,
//! Glance v2) and Synnefo (Astakos, Pithos, Plankton).
//!
//! The front-ends use [`Cloud`] in this order:
//!
//! 1. [`Cloud::connect`] with an [`Account`] ([`Account::find`] for `-c NAME`,
//!    [`Account::from_url_token`] for `-a URL -t TOKEN`), then [`Cloud::preflight`]:
//!    both before any local work, so a bad token or an existing remote object stops
//!    the run at once;
//! 2. [`Cloud::upload_image`] once the image is dumped and its MD5 known (uploads the
//!    image and `NAME.md5sum`);
//! 3. [`Cloud::register`] (registers, uploads `NAME.meta`, shares the side files when
//!    public) and print the JSON it returns on stdout.
//!
//! Nothing here prints: chatter and progress go through [`snf_core::Reporter`], and no
//! message or `Debug` output ever holds a token or a password ([`Secret`]).

#![forbid(unsafe_code)]

pub mod account;
pub mod auth;
pub mod error;
pub mod glance;
pub mod http;
mod parallel;
pub mod pithos;
pub mod plankton;
pub mod registry;
pub mod secret;
pub mod store;
pub mod swift;

use std::collections::BTreeMap;

use snf_core::report::Reporter;

pub use account::{Account, AccountFinder, AccountSource, AuthMethod, KamakiCloud, KamakiConfig};
pub use auth::Session;
pub use error::{CloudError, Result};
pub use http::{Http, HttpOptions, RetryNotice};
pub use registry::{ImageRegistry, Registration};
pub use secret::Secret;
pub use store::{ImageSource, ObjectStore, UploadStats};

/// The default container, as in the original.
pub const DEFAULT_CONTAINER: &str = "images";

/// Which family of APIs the cloud speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// Keystone, Swift, Glance v2.
    OpenStack,
    /// Astakos, Pithos, Plankton.
    Synnefo,
}

/// Tuning of a connection.
#[derive(Debug, Clone)]
pub struct CloudOptions {
    /// Transport options (TLS, retries). `verify_tls`/`ca_file` are taken from the
    /// account when it sets them.
    pub http: HttpOptions,
    /// Parallel uploads of segments or blocks (2-4 is right for most links).
    pub workers: usize,
    /// Swift tuning (segment size, SLO threshold).
    pub swift: swift::SwiftOptions,
}

impl Default for CloudOptions {
    fn default() -> Self {
        CloudOptions {
            http: HttpOptions::default(),
            workers: 4,
            swift: swift::SwiftOptions::default(),
        }
    }
}

/// What to register beside the upload.
#[derive(Debug, Clone, Copy)]
pub struct ImageSpec<'a> {
    /// The image's name in the image service.
    pub name: &'a str,
    /// Its properties (the image metadata).
    pub properties: &'a BTreeMap<String, String>,
    /// Visible to every user of the cloud.
    pub public: bool,
}

/// One upload: where the image goes and whether it is registered.
#[derive(Debug, Clone, Copy)]
pub struct Publication<'a> {
    /// The container of the image (Swift, Pithos) and of its side files.
    pub container: &'a str,
    /// The object name (`-u`); the side files are `OBJECT.md5sum` and `OBJECT.meta`.
    pub object: &'a str,
    /// Register the image too (`-r`).
    pub register: Option<ImageSpec<'a>>,
    /// Overwrite existing objects, and replace this project's images of the same name.
    pub force: bool,
}

/// What [`Cloud::publish`] did.
#[derive(Debug, Clone, Default)]
pub struct Published {
    /// What the image upload sent.
    pub stats: UploadStats,
    /// The image service's answer, when registered (print it with [`pretty_json`]).
    pub answer: Option<serde_json::Value>,
    /// This project's images of the same name that were there before: deleted with
    /// `force`, else left beside the new one (and named in a warning).
    pub same_name: Vec<String>,
    /// The image data went to the image service (Glance keeps it), not to the object
    /// store, which holds only the side files then.
    pub data_in_registry: bool,
}

/// Deletes, unless disarmed, what this run put on the cloud: a failed run leaves
/// nothing of its own behind (and a rerun needs no `-f`).
struct Undo<'a> {
    cloud: &'a Cloud,
    container: &'a str,
    objects: Vec<String>,
    image: Option<String>,
    armed: bool,
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        // best effort: the error that brought us here is the one to report
        if let (Some(id), Some(r)) = (&self.image, &self.cloud.registry) {
            let _ = r.delete(id);
        }
        for o in self.objects.iter().rev() {
            let _ = self.cloud.store.delete(self.container, o);
        }
    }
}

/// A connected cloud: an authenticated session, its object store and image service.
pub struct Cloud {
    http: Http,
    account: Account,
    session: Session,
    flavor: Flavor,
    store: Box<dyn ObjectStore>,
    registry: Option<Box<dyn ImageRegistry>>,
    registry_error: Option<String>,
}

impl std::fmt::Debug for Cloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cloud")
            .field("account", &self.account.name)
            .field("flavor", &self.flavor)
            .finish()
    }
}

/// The `.md5sum` text, as `md5sum` writes it and as the local `FILE.md5sum` has it:
/// `<md5>  <name>\n` (two spaces; a name with a backslash or a newline is escaped and
/// the line starts with a backslash), so that `md5sum -c` reads both alike.
pub fn md5sum_text(md5: &str, name: &str) -> String {
    if name.contains(['\\', '\n']) {
        let escaped = name.replace('\\', "\\\\").replace('\n', "\\n");
        format!("\\{md5}  {escaped}\n")
    } else {
        format!("{md5}  {name}\n")
    }
}

/// JSON with four-space indentation, as the original prints and uploads it.
pub fn pretty_json(v: &serde_json::Value) -> String {
    use serde::Serialize;
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(
        &mut out,
        serde_json::ser::PrettyFormatter::with_indent(b"    "),
    );
    // writing a Value into a Vec cannot fail
    let _ = v.serialize(&mut ser);
    String::from_utf8(out).unwrap_or_default()
}

impl Cloud {
    /// Authenticate and find the object store and image service in the catalog.
    pub fn connect(account: &Account, reporter: &dyn Reporter) -> Result<Cloud> {
        Self::connect_with(account, CloudOptions::default(), reporter)
    }

    /// [`Cloud::connect`] with explicit options.
    pub fn connect_with(
        account: &Account,
        mut opts: CloudOptions,
        reporter: &dyn Reporter,
    ) -> Result<Cloud> {
        if !account.verify_tls {
            opts.http.verify_tls = false;
        }
        if account.ca_file.is_some() {
            opts.http.ca_file = account.ca_file.clone();
        }
        let http = Http::new(opts.http.clone())?;
        reporter.info(&format!("Authenticating to cloud `{}' ...", account.name));
        let session = auth::authenticate(&http, account)?;
        let region = account.region.as_deref();
        let iface = account.interface.as_str();
        let store_url = match &account.object_store_url {
            Some(u) => u.clone(),
            None => session.endpoint("object-store", iface, region)?,
        };
        let image_url = match &account.image_url {
            Some(u) => Ok(u.clone()),
            None => session.endpoint("image", iface, region),
        };
        let synnefo = session.api == auth::IdentityApi::V2 && !store_url.contains("/AUTH_");
        let flavor = if synnefo {
            Flavor::Synnefo
        } else {
            Flavor::OpenStack
        };
        let token = session.token.clone();
        let store: Box<dyn ObjectStore> = match flavor {
            Flavor::Synnefo => Box::new(
                pithos::Pithos::new(
                    http.clone(),
                    &store_url,
                    &session.user_id,
                    token.clone(),
                    opts.workers,
                )
                .with_quotas(session.endpoint("account", iface, region).ok()),
            ),
            Flavor::OpenStack => {
                let mut so = opts.swift.clone();
                so.workers = opts.workers;
                Box::new(swift::Swift::new(
                    http.clone(),
                    &store_url,
                    token.clone(),
                    so,
                ))
            }
        };
        let (registry, registry_error): (Option<Box<dyn ImageRegistry>>, _) = match image_url {
            Ok(u) => (
                Some(match flavor {
                    Flavor::Synnefo => Box::new(plankton::Plankton::new(http.clone(), &u, token)),
                    Flavor::OpenStack => Box::new(
                        glance::Glance::new(http.clone(), &u, token)
                            .with_owner(session.project_id.clone()),
                    ),
                }),
                None,
            ),
            Err(e) => (None, Some(e.to_string())),
        };
        reporter.success(&format!(
            "Authenticated to cloud `{}' ({} and {})",
            account.name,
            store.name(),
            registry.as_ref().map_or("no image service", |r| r.name())
        ));
        Ok(Cloud {
            http,
            account: account.clone(),
            session,
            flavor,
            store,
            registry,
            registry_error,
        })
    }

    /// Request body bytes this connection has sent so far, retries included.
    pub fn bytes_sent(&self) -> u64 {
        self.http.bytes_sent()
    }

    /// The account this connection uses.
    pub fn account(&self) -> &Account {
        &self.account
    }

    /// The authenticated session (token, user, catalog).
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// OpenStack or Synnefo.
    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    /// The object store.
    pub fn store(&self) -> &dyn ObjectStore {
        self.store.as_ref()
    }

    fn registry(&self) -> Result<&dyn ImageRegistry> {
        match &self.registry {
            Some(r) => Ok(r.as_ref()),
            None => Err(CloudError::Unsupported(format!(
                "cloud `{}' has no image service: {}",
                self.account.name,
                self.registry_error
                    .as_deref()
                    .unwrap_or("none in the catalog")
            ))),
        }
    }

    /// The remote checks done before any local work: unless `force`, fail if
    /// `container/name` or `name.md5sum` exist (and `name.meta` when `register`);
    /// with `register`, fail now if the cloud has no image service. Changes nothing.
    pub fn preflight(
        &self,
        container: &str,
        name: &str,
        register: bool,
        force: bool,
    ) -> Result<()> {
        if register {
            self.registry()?;
        }
        if force {
            return Ok(());
        }
        let mut objects = vec![name.to_owned(), format!("{name}.md5sum")];
        if register {
            objects.push(format!("{name}.meta"));
        }
        for o in objects {
            if self.store.exists(container, &o)? {
                return Err(CloudError::Exists {
                    container: container.into(),
                    object: o,
                });
            }
        }
        Ok(())
    }

    /// Upload and (with `p.register`) register the image, sending its data once:
    ///
    /// - with Glance (OpenStack), the image record is created first and the data goes
    ///   to Glance only; the container keeps `OBJECT.md5sum` and `OBJECT.meta` (whose
    ///   `id` names the Glance image), as the original keeps them beside the image;
    /// - otherwise the data goes to the object store (Swift, or Pithos, which Plankton
    ///   points at) with `OBJECT.md5sum`, then the registration and `OBJECT.meta`.
    ///
    /// Every refusal that can be known is checked before the first data byte: existing
    /// objects without `force`, the image properties, quotas the services announce,
    /// and (Glance) a `--public` the policy refuses, which the record's creation
    /// answers. A failure after that deletes what this run uploaded. Images of the
    /// same name in this project are replaced with `force`, else named in a warning.
    pub fn publish(
        &self,
        p: &Publication<'_>,
        image: &ImageSource,
        reporter: &dyn Reporter,
    ) -> Result<Published> {
        let store = self.store.as_ref();
        let (container, object) = (p.container, p.object);
        // the names may have appeared while the image was made
        self.preflight(container, object, p.register.is_some(), p.force)?;
        let registry = match p.register {
            Some(_) => Some(self.registry()?),
            None => None,
        };
        let reg = p.register.map(|spec| Registration {
            name: spec.name,
            location: store.location(container, object),
            image,
            properties: spec.properties,
            public: spec.public,
        });
        let mut same_name = Vec::new();
        if let (Some(r), Some(reg)) = (registry, &reg) {
            r.check(reg)?;
            same_name = r.named(reg.name)?;
        }
        let data_in_registry = registry.is_some_and(|r| r.holds_data());
        if !data_in_registry {
            store.check_space(container, object, image.size)?;
        }
        store.ensure_container(container)?;
        let mut undo = Undo {
            cloud: self,
            container,
            objects: Vec::new(),
            image: None,
            armed: true,
        };
        let mut answer = None;
        let stats = match (registry, &reg) {
            (Some(r), Some(reg)) if data_in_registry => {
                reporter.info(&format!(
                    "Registering {} image `{}' with {}, which receives the image data ...",
                    if reg.public { "public" } else { "private" },
                    reg.name,
                    r.name()
                ));
                let a = r.register(reg, reporter)?;
                undo.image = a.get("id").and_then(|v| v.as_str()).map(str::to_owned);
                answer = Some(a);
                UploadStats {
                    bytes_sent: image.size,
                    pieces_sent: 1,
                    pieces_skipped: 0,
                    pieces_total: 1,
                    large_object: false,
                }
            }
            _ => {
                reporter.info(&format!(
                    "Uploading image to {} as `{container}/{object}' ...",
                    store.name()
                ));
                let stats = store.upload(container, object, image, reporter)?;
                undo.objects.push(object.to_owned());
                if stats.pieces_skipped > 0 {
                    reporter.detail(&format!(
                        "{} of {} pieces were already there and were not sent again",
                        stats.pieces_skipped, stats.pieces_total
                    ));
                }
                if let (Some(r), Some(reg)) = (registry, &reg) {
                    reporter.info(&format!(
                        "Registering {} image `{}' with {} ...",
                        if reg.public { "public" } else { "private" },
                        reg.name,
                        r.name()
                    ));
                    answer = Some(r.register(reg, reporter)?);
                }
                stats
            }
        };
        let md5 = format!("{object}.md5sum");
        store.put_bytes(
            container,
            &md5,
            md5sum_text(&image.md5, object).as_bytes(),
            "text/plain",
        )?;
        undo.objects.push(md5.clone());
        if let Some(a) = &answer {
            let meta = format!("{object}.meta");
            store.put_bytes(
                container,
                &meta,
                pretty_json(a).as_bytes(),
                "application/json",
            )?;
            undo.objects.push(meta.clone());
            if p.register.is_some_and(|s| s.public) {
                store.make_public(container, &[md5.as_str(), meta.as_str()], reporter)?;
            }
        }
        undo.armed = false;
        let new_id = answer
            .as_ref()
            .and_then(|a| a.get("id"))
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned();
        if data_in_registry && p.force {
            // an image object of an earlier upload-only run: the image is in Glance now
            if let Err(e) = store.delete(container, object) {
                reporter.warn(&format!(
                    "could not delete the earlier `{container}/{object}': {e}"
                ));
            }
        }
        if let (Some(r), Some(reg)) = (registry, &reg) {
            let old: Vec<&String> = same_name.iter().filter(|id| **id != new_id).collect();
            if !old.is_empty() && p.force {
                for id in &old {
                    match r.delete(id) {
                        Ok(()) => reporter.info(&format!(
                            "Replaced {} image {id} named `{}' by {new_id}",
                            r.name(),
                            reg.name
                        )),
                        Err(e) => reporter.warn(&format!(
                            "could not delete the earlier image {id} named `{}': {e}",
                            reg.name
                        )),
                    }
                }
            } else if !old.is_empty() {
                reporter.warn(&format!(
                    "{} already had image(s) named `{}': {}; the new one, {new_id}, has the same name (-f replaces them)",
                    r.name(),
                    reg.name,
                    old.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                ));
            }
        }
        match &reg {
            Some(reg) => reporter.success(&format!(
                "Image `{}' registered with {}",
                reg.name,
                registry.map_or("", |r| r.name())
            )),
            None => reporter.success(&format!(
                "Image uploaded to {}",
                store.location(container, object)
            )),
        }
        Ok(Published {
            stats,
            answer,
            same_name,
            data_in_registry,
        })
    }

    /// Upload the image as `container/name` and its checksum as `name.md5sum`.
    pub fn upload_image(
        &self,
        container: &str,
        name: &str,
        image: &ImageSource,
        reporter: &dyn Reporter,
    ) -> Result<UploadStats> {
        let store = self.store.as_ref();
        reporter.info(&format!(
            "Uploading image to {} as `{container}/{name}' ...",
            store.name()
        ));
        let stats = store.upload(container, name, image, reporter)?;
        if stats.pieces_skipped > 0 {
            reporter.detail(&format!(
                "{} of {} pieces were already there and were not sent again",
                stats.pieces_skipped, stats.pieces_total
            ));
        }
        store.put_bytes(
            container,
            &format!("{name}.md5sum"),
            md5sum_text(&image.md5, name).as_bytes(),
            "text/plain",
        )?;
        reporter.success(&format!(
            "Image uploaded to {}",
            store.location(container, name)
        ));
        Ok(stats)
    }

    /// Register the uploaded `container/object` as image `image_name` with
    /// `properties`, upload `object.meta` (the registration answer), make
    /// `object.md5sum` and `object.meta` readable by everyone when `public`, and return
    /// the answer (print it on stdout with [`pretty_json`]).
    ///
    /// Glance receives the data from `image` (it must be what was uploaded); Plankton
    /// points at the Pithos object.
    #[allow(clippy::too_many_arguments)]
    pub fn register(
        &self,
        container: &str,
        object: &str,
        image_name: &str,
        image: &ImageSource,
        properties: &BTreeMap<String, String>,
        public: bool,
        reporter: &dyn Reporter,
    ) -> Result<serde_json::Value> {
        let registry = self.registry()?;
        reporter.info(&format!(
            "Registering {} image `{image_name}' with {} ...",
            if public { "public" } else { "private" },
            registry.name()
        ));
        let reg = Registration {
            name: image_name,
            location: self.store.location(container, object),
            image,
            properties,
            public,
        };
        let answer = registry.register(&reg, reporter)?;
        let meta = format!("{object}.meta");
        self.store.put_bytes(
            container,
            &meta,
            pretty_json(&answer).as_bytes(),
            "application/json",
        )?;
        if public {
            let md5 = format!("{object}.md5sum");
            self.store
                .make_public(container, &[md5.as_str(), meta.as_str()], reporter)?;
        }
        reporter.success(&format!(
            "Image `{image_name}' registered with {}",
            registry.name()
        ));
        Ok(answer)
    }
}
