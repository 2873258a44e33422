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

/// A connected cloud: an authenticated session, its object store and image service.
pub struct Cloud {
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

/// The `.md5sum` text: `<md5> <name>\n` (one space, as the original writes it).
pub fn md5sum_text(md5: &str, name: &str) -> String {
    format!("{md5} {name}\n")
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
            Flavor::Synnefo => Box::new(pithos::Pithos::new(
                http.clone(),
                &store_url,
                &session.user_id,
                token.clone(),
                opts.workers,
            )),
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
                    Flavor::OpenStack => Box::new(glance::Glance::new(http.clone(), &u, token)),
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
            account: account.clone(),
            session,
            flavor,
            store,
            registry,
            registry_error,
        })
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
