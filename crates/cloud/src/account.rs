//! Cloud accounts: kamaki's configuration file (Synnefo), OpenStack's clouds.yaml and
//! secure.yaml, the `OS_*` environment, or a URL and a token given on the command line.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{CloudError, Result};
use crate::secret::Secret;

/// Where an account was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountSource {
    /// A `[cloud "NAME"]` section of kamaki's configuration file.
    Kamaki(PathBuf),
    /// An entry of an OpenStack clouds.yaml (secure.yaml merged in).
    CloudsYaml(PathBuf),
    /// The `OS_*` environment variables (the cloud named `envvars`).
    Environment,
    /// `-a URL -t TOKEN` on the command line.
    CommandLine,
}

/// How to prove who we are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMethod {
    /// A token: Astakos / Keystone v2 (`POST /tokens`), or a Keystone v3 token
    /// (validated, or re-scoped when a project is given).
    Token(Secret),
    /// Keystone v3 password authentication.
    Password {
        /// User name (needs a user domain).
        username: Option<String>,
        /// User id (instead of name + domain).
        user_id: Option<String>,
        /// The password.
        password: Secret,
    },
    /// Keystone v3 application credential.
    ApplicationCredential {
        /// Credential id.
        id: Option<String>,
        /// Credential name (needs the user).
        name: Option<String>,
        /// The secret.
        secret: Secret,
        /// Owner's name, with a name.
        username: Option<String>,
        /// Owner's id, with a name.
        user_id: Option<String>,
    },
}

/// Domains and project: what the Keystone token is scoped to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// Project id.
    pub project_id: Option<String>,
    /// Project name (needs a project domain).
    pub project_name: Option<String>,
    /// Domain of the project, by id.
    pub project_domain_id: Option<String>,
    /// Domain of the project, by name.
    pub project_domain_name: Option<String>,
    /// Domain of the user, by id.
    pub user_domain_id: Option<String>,
    /// Domain of the user, by name.
    pub user_domain_name: Option<String>,
}

/// One account: everything needed to authenticate and to find the services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The account's name (`envvars` for the environment, `command line` for `-a/-t`).
    pub name: String,
    /// Where it came from.
    pub source: AccountSource,
    /// The identity service URL (Astakos, Keystone v2.0 or v3, with or without version).
    pub auth_url: String,
    /// The credentials.
    pub auth: AuthMethod,
    /// Keystone scope.
    pub scope: Scope,
    /// `identity_api_version` when configured ("2", "2.0", "3").
    pub identity_api_version: Option<String>,
    /// Region of the endpoints to use (none: the only one, or the first).
    pub region: Option<String>,
    /// Endpoint interface: public (default), internal or admin.
    pub interface: String,
    /// Verify TLS certificates.
    pub verify_tls: bool,
    /// CA bundle to trust.
    pub ca_file: Option<PathBuf>,
    /// Object-store endpoint to use instead of the catalog's.
    pub object_store_url: Option<String>,
    /// Image endpoint to use instead of the catalog's.
    pub image_url: Option<String>,
    /// Free text (kamaki accounts saved by the dialog UI carry one).
    pub description: Option<String>,
}

impl Account {
    /// The account for `-a URL -t TOKEN`.
    pub fn from_url_token(url: &str, token: Secret) -> Account {
        Account {
            name: "command line".into(),
            source: AccountSource::CommandLine,
            auth_url: url.trim().to_owned(),
            auth: AuthMethod::Token(token),
            scope: Scope::default(),
            identity_api_version: None,
            region: None,
            interface: "public".into(),
            verify_tls: true,
            ca_file: None,
            object_store_url: None,
            image_url: None,
            description: None,
        }
    }

    /// The account saved under `name` (kamaki config first, then clouds.yaml, then
    /// `envvars`), looked up in this process's environment and files.
    pub fn find(name: &str) -> Result<Account> {
        AccountFinder::from_process().find(name)
    }
}

/// Looks accounts up in a given environment (the process's, or a test's).
#[derive(Debug, Clone)]
pub struct AccountFinder {
    /// Environment variables.
    pub env: BTreeMap<String, String>,
    /// Working directory (clouds.yaml is searched there first).
    pub cwd: PathBuf,
}

impl AccountFinder {
    /// This process's environment and working directory.
    pub fn from_process() -> Self {
        AccountFinder {
            env: std::env::vars().collect(),
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
        }
    }

    fn var(&self, k: &str) -> Option<&str> {
        self.env
            .get(k)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    fn home(&self) -> Option<PathBuf> {
        self.var("HOME").map(PathBuf::from)
    }

    /// kamaki's configuration file: `$KAMAKI_CONFIG` or `~/.kamakirc`.
    pub fn kamaki_path(&self) -> PathBuf {
        match self.var("KAMAKI_CONFIG") {
            Some(p) => PathBuf::from(p),
            None => self
                .home()
                .unwrap_or_else(|| PathBuf::from("/root"))
                .join(".kamakirc"),
        }
    }

    fn config_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = vec![self.cwd.clone()];
        if let Some(x) = self.var("XDG_CONFIG_HOME") {
            dirs.push(Path::new(x).join("openstack"));
        }
        if let Some(h) = self.home() {
            dirs.push(h.join(".config/openstack"));
        }
        dirs.push(PathBuf::from("/etc/xdg/openstack"));
        dirs.push(PathBuf::from("/etc/openstack"));
        dirs
    }

    fn first_file(&self, env_var: &str, base: &str) -> Option<PathBuf> {
        if let Some(p) = self.var(env_var) {
            return Some(PathBuf::from(p)).filter(|p| p.is_file());
        }
        self.config_dirs()
            .into_iter()
            .flat_map(|d| ["yaml", "yml"].map(|ext| d.join(format!("{base}.{ext}"))))
            .find(|p| p.is_file())
    }

    /// The clouds.yaml in use (the first found in openstacksdk's search order).
    pub fn clouds_yaml_path(&self) -> Option<PathBuf> {
        self.first_file("OS_CLIENT_CONFIG_FILE", "clouds")
    }

    /// The secure.yaml in use.
    pub fn secure_yaml_path(&self) -> Option<PathBuf> {
        self.first_file("OS_CLIENT_SECURE_FILE", "secure")
    }

    fn clouds_yaml(&self) -> Result<Option<(PathBuf, serde_yaml_ng::Mapping)>> {
        let Some(path) = self.clouds_yaml_path() else {
            return Ok(None);
        };
        let mut clouds = load_clouds_section(&path)?;
        if let Some(sp) = self.secure_yaml_path() {
            let secure = load_clouds_section(&sp)?;
            for (k, v) in secure {
                match clouds.get_mut(&k) {
                    Some(existing) => merge_yaml(existing, v),
                    None => {
                        clouds.insert(k, v);
                    }
                }
            }
        }
        Ok(Some((path, clouds)))
    }

    /// Every account name that `find` can resolve, kamaki's first.
    pub fn names(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = Vec::new();
        let kamaki = KamakiConfig::load(&self.kamaki_path())?;
        names.extend(kamaki.clouds().into_iter().map(|c| c.name));
        if let Some((_, clouds)) = self.clouds_yaml()? {
            for k in clouds.keys() {
                if let Some(k) = k.as_str() {
                    if !names.iter().any(|n| n == k) {
                        names.push(k.to_owned());
                    }
                }
            }
        }
        if self.var("OS_AUTH_URL").is_some() && !names.iter().any(|n| n == "envvars") {
            names.push("envvars".into());
        }
        Ok(names)
    }

    /// The account called `name`.
    pub fn find(&self, name: &str) -> Result<Account> {
        let kpath = self.kamaki_path();
        let kamaki = KamakiConfig::load(&kpath)?;
        if let Some(c) = kamaki.cloud(name) {
            let url = c.url.filter(|u| !u.trim().is_empty());
            let token = c.token.filter(|t| !t.is_empty());
            let (Some(url), Some(token)) = (url, token) else {
                return Err(CloudError::InvalidCloud {
                    name: name.into(),
                    reason: format!("it needs both url and token in {}", kpath.display()),
                });
            };
            let mut a = Account::from_url_token(&url, token);
            a.name = name.into();
            a.source = AccountSource::Kamaki(kpath);
            a.description = c.description;
            return Ok(a);
        }
        if let Some((path, clouds)) = self.clouds_yaml()? {
            if let Some(entry) = clouds.get(name) {
                let mut flat = BTreeMap::new();
                flatten_cloud(entry, &mut flat);
                return account_from_map(name, AccountSource::CloudsYaml(path), &flat);
            }
        }
        if name == "envvars" && self.var("OS_AUTH_URL").is_some() {
            return self.env_vars_account();
        }
        Err(CloudError::UnknownCloud {
            name: name.into(),
            available: self.names()?,
        })
    }

    /// The account to use when none is named: `OS_CLOUD`, else the `OS_*` variables
    /// when `OS_AUTH_URL` is set, else kamaki's default cloud.
    pub fn default_account(&self) -> Result<Option<Account>> {
        if let Some(c) = self.var("OS_CLOUD") {
            return self.find(c).map(Some);
        }
        if self.var("OS_AUTH_URL").is_some() {
            return self.env_vars_account().map(Some);
        }
        let kamaki = KamakiConfig::load(&self.kamaki_path())?;
        match kamaki.default_cloud_with(self.var("KAMAKI_DEFAULT_CLOUD")) {
            Some(n) => self.find(&n).map(Some),
            None => Ok(None),
        }
    }

    fn env_vars_account(&self) -> Result<Account> {
        let flat: BTreeMap<String, String> = self
            .env
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix("OS_")
                    .map(|s| (s.to_ascii_lowercase(), v.clone()))
            })
            .filter(|(_, v)| !v.is_empty())
            .collect();
        account_from_map("envvars", AccountSource::Environment, &flat)
    }
}

fn load_clouds_section(path: &Path) -> Result<serde_yaml_ng::Mapping> {
    let text = fs::read_to_string(path).map_err(|source| CloudError::Io {
        path: path.into(),
        source,
    })?;
    let doc: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&text).map_err(|e| CloudError::Config {
            path: path.into(),
            reason: format!("invalid YAML ({e})"),
        })?;
    match doc.get("clouds") {
        Some(serde_yaml_ng::Value::Mapping(m)) => Ok(m.clone()),
        None | Some(serde_yaml_ng::Value::Null) => Ok(serde_yaml_ng::Mapping::new()),
        Some(_) => Err(CloudError::Config {
            path: path.into(),
            reason: "`clouds' is not a mapping".into(),
        }),
    }
}

fn merge_yaml(into: &mut serde_yaml_ng::Value, from: serde_yaml_ng::Value) {
    match (into, from) {
        (serde_yaml_ng::Value::Mapping(a), serde_yaml_ng::Value::Mapping(b)) => {
            for (k, v) in b {
                match a.get_mut(&k) {
                    Some(x) => merge_yaml(x, v),
                    None => {
                        a.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// clouds.yaml entry -> the flat `OS_*`-style keys (`auth.username` -> `username`).
fn flatten_cloud(entry: &serde_yaml_ng::Value, out: &mut BTreeMap<String, String>) {
    let Some(m) = entry.as_mapping() else { return };
    for (k, v) in m {
        let Some(k) = k.as_str() else { continue };
        match (k, v) {
            ("auth", serde_yaml_ng::Value::Mapping(_)) => flatten_cloud(v, out),
            ("regions", serde_yaml_ng::Value::Sequence(s)) => {
                if let Some(first) = s.first() {
                    let name = first.as_str().map(str::to_owned).or_else(|| {
                        first
                            .get("name")
                            .and_then(|n| n.as_str())
                            .map(str::to_owned)
                    });
                    if let Some(n) = name {
                        out.entry("region_name".into()).or_insert(n);
                    }
                }
            }
            (_, serde_yaml_ng::Value::String(s)) => {
                out.insert(k.to_owned(), s.clone());
            }
            (_, serde_yaml_ng::Value::Bool(b)) => {
                out.insert(k.to_owned(), b.to_string());
            }
            (_, serde_yaml_ng::Value::Number(n)) => {
                out.insert(k.to_owned(), n.to_string());
            }
            _ => {}
        }
    }
}

fn account_from_map(
    name: &str,
    source: AccountSource,
    m: &BTreeMap<String, String>,
) -> Result<Account> {
    let get = |k: &str| {
        m.get(k)
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    let invalid = |reason: String| CloudError::InvalidCloud {
        name: name.into(),
        reason,
    };
    let auth_url = get("auth_url").ok_or_else(|| invalid("no auth_url".into()))?;
    let auth_type = get("auth_type").unwrap_or_default().to_ascii_lowercase();
    let password = || -> Result<AuthMethod> {
        let password = get("password").ok_or_else(|| invalid("no password".into()))?;
        let (username, user_id) = (get("username"), get("user_id"));
        if username.is_none() && user_id.is_none() {
            return Err(invalid("no username or user_id".into()));
        }
        Ok(AuthMethod::Password {
            username,
            user_id,
            password: Secret::new(password),
        })
    };
    let token = || -> Result<AuthMethod> {
        Ok(AuthMethod::Token(Secret::new(
            get("token").ok_or_else(|| invalid("no token".into()))?,
        )))
    };
    let app_credential = || -> Result<AuthMethod> {
        let secret = get("application_credential_secret")
            .ok_or_else(|| invalid("no application_credential_secret".into()))?;
        let (id, cname) = (
            get("application_credential_id"),
            get("application_credential_name"),
        );
        if id.is_none() && cname.is_none() {
            return Err(invalid(
                "no application_credential_id or application_credential_name".into(),
            ));
        }
        Ok(AuthMethod::ApplicationCredential {
            id,
            name: cname,
            secret: Secret::new(secret),
            username: get("username"),
            user_id: get("user_id"),
        })
    };
    let auth = match auth_type.as_str() {
        "" if get("application_credential_id").is_some()
            || get("application_credential_name").is_some() =>
        {
            app_credential()?
        }
        "" if get("password").is_none() && get("token").is_some() => token()?,
        "" | "password" | "v3password" | "v2password" => password()?,
        "token" | "v3token" | "v2token" | "admin_token" => token()?,
        "v3applicationcredential" | "applicationcredential" | "application_credential" => {
            app_credential()?
        }
        other => {
            return Err(invalid(format!(
            "auth_type `{other}' is not supported (password, token, v3applicationcredential are)"
        )))
        }
    };
    let default_domain = get("default_domain");
    let scope = Scope {
        project_id: get("project_id").or_else(|| get("tenant_id")),
        project_name: get("project_name").or_else(|| get("tenant_name")),
        project_domain_id: get("project_domain_id").or_else(|| default_domain.clone()),
        project_domain_name: get("project_domain_name"),
        user_domain_id: get("user_domain_id").or(default_domain),
        user_domain_name: get("user_domain_name"),
    };
    let verify_tls =
        match get("verify").or_else(|| get("insecure").map(|v| (!truthy(&v)).to_string())) {
            Some(v) => truthy(&v),
            None => true,
        };
    Ok(Account {
        name: name.into(),
        source,
        auth_url,
        auth,
        scope,
        identity_api_version: get("identity_api_version"),
        region: get("region_name"),
        interface: get("interface")
            .or_else(|| get("endpoint_type"))
            .map(|i| i.trim_end_matches("URL").to_owned())
            .unwrap_or_else(|| "public".into()),
        verify_tls,
        ca_file: get("cacert").map(PathBuf::from),
        object_store_url: get("object_store_endpoint_override"),
        image_url: get("image_endpoint_override"),
        description: None,
    })
}

fn truthy(v: &str) -> bool {
    matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on")
}

/// One `[cloud "NAME"]` of kamaki's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KamakiCloud {
    /// The cloud's name.
    pub name: String,
    /// Astakos authentication URL.
    pub url: Option<String>,
    /// The token.
    pub token: Option<Secret>,
    /// Free text.
    pub description: Option<String>,
}

#[derive(Debug, Clone)]
struct IniSection {
    name: String,
    entries: Vec<(String, String)>,
}

/// kamaki's configuration file, read and written the way kamaki does (INI, sections
/// `[global]` and `[cloud "NAME"]`); written with mode 0600.
#[derive(Debug, Clone)]
pub struct KamakiConfig {
    path: PathBuf,
    sections: Vec<IniSection>,
}

/// Whether `name` is acceptable as a cloud name: kamaki's rule for `[cloud "NAME"]`
/// sections, `[~@#$.:\-\w]+`.
pub fn valid_cloud_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || "_~@#$.:-".contains(c))
}

/// A setting's value as kamaki (Python 2's `RawConfigParser`) reads it: the text after
/// the first `;` is a comment when that `;` follows white space (a `#` after a value is
/// kept, as there), the rest is trimmed, and `""` is the empty value.
fn ini_value(raw: &str) -> String {
    let mut v = raw.trim_start();
    if let Some(pos) = v.find(';') {
        // Python looks at `optval[pos-1]`: for a value that starts with `;` that is its
        // last character
        let before = if pos == 0 {
            v.chars().last()
        } else {
            v[..pos].chars().last()
        };
        if before.is_some_and(char::is_whitespace) {
            v = &v[..pos];
        }
    }
    let v = v.trim();
    if v == "\"\"" {
        String::new()
    } else {
        v.to_owned()
    }
}

impl KamakiConfig {
    /// Read the file (a missing file is an empty configuration).
    pub fn load(path: &Path) -> Result<Self> {
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(CloudError::Io {
                    path: path.into(),
                    source,
                })
            }
        };
        let mut sections: Vec<IniSection> = Vec::new();
        for (no, raw) in text.lines().enumerate() {
            let line = raw.trim_end();
            let t = line.trim_start();
            if t.is_empty() || t.starts_with('#') || t.starts_with(';') {
                continue;
            }
            // RawConfigParser's other comment form: `rem` at the start of the line
            let rem = line.starts_with(['r', 'R'])
                && line
                    .split_whitespace()
                    .next()
                    .is_some_and(|w| w.eq_ignore_ascii_case("rem"));
            if rem {
                continue;
            }
            if t.starts_with('[') {
                let Some(name) = t.strip_prefix('[').and_then(|s| s.strip_suffix(']')) else {
                    return Err(CloudError::Config {
                        path: path.into(),
                        reason: format!("line {}: bad section header", no + 1),
                    });
                };
                sections.push(IniSection {
                    name: name.trim().to_owned(),
                    entries: Vec::new(),
                });
                continue;
            }
            let Some(sec) = sections.last_mut() else {
                return Err(CloudError::Config {
                    path: path.into(),
                    reason: format!("line {}: a setting outside any section", no + 1),
                });
            };
            if line.starts_with([' ', '\t']) {
                if let Some(last) = sec.entries.last_mut() {
                    last.1.push('\n');
                    last.1.push_str(t);
                    continue;
                }
            }
            let Some(pos) = t.find(['=', ':']) else {
                return Err(CloudError::Config {
                    path: path.into(),
                    reason: format!("line {}: expected `key = value'", no + 1),
                });
            };
            sec.entries.push((
                t[..pos].trim().to_ascii_lowercase(),
                ini_value(&t[pos + 1..]),
            ));
        }
        Ok(KamakiConfig {
            path: path.into(),
            sections,
        })
    }

    /// The file this configuration is read from and written to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn cloud_section_name(s: &str) -> Option<String> {
        let rest = s.strip_prefix("cloud")?.trim_start();
        let inner = rest.strip_prefix('"')?.strip_suffix('"')?;
        Some(inner.to_owned())
    }

    /// Every cloud, in file order.
    pub fn clouds(&self) -> Vec<KamakiCloud> {
        self.sections
            .iter()
            .filter_map(|s| {
                let name = Self::cloud_section_name(&s.name)?;
                let get = |k: &str| {
                    s.entries
                        .iter()
                        .rev()
                        .find(|(x, _)| x == k)
                        .map(|(_, v)| v.clone())
                };
                Some(KamakiCloud {
                    name,
                    url: get("url"),
                    token: get("token").map(Secret::new),
                    description: get("description"),
                })
            })
            .collect()
    }

    /// The cloud called `name`.
    pub fn cloud(&self, name: &str) -> Option<KamakiCloud> {
        self.clouds().into_iter().find(|c| c.name == name)
    }

    fn global(&self, key: &str) -> Option<String> {
        self.sections
            .iter()
            .filter(|s| s.name == "global")
            .flat_map(|s| s.entries.iter())
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }

    /// The cloud kamaki uses when none is named: `global.default_cloud` if it names a
    /// cloud (one it does not name: none); when it is unset or empty, `env_default`
    /// (kamaki's `KAMAKI_DEFAULT_CLOUD`), else the only cloud, and none when there are
    /// several (kamaki refuses to choose).
    pub fn default_cloud_with(&self, env_default: Option<&str>) -> Option<String> {
        let clouds = self.clouds();
        let named = self
            .global("default_cloud")
            .filter(|d| !d.is_empty())
            .or_else(|| env_default.filter(|d| !d.is_empty()).map(str::to_owned));
        match named {
            Some(d) => clouds.iter().find(|c| c.name == d).map(|c| c.name.clone()),
            None if clouds.len() == 1 => Some(clouds[0].name.clone()),
            None => None,
        }
    }

    /// [`KamakiConfig::default_cloud_with`] without `KAMAKI_DEFAULT_CLOUD`.
    pub fn default_cloud(&self) -> Option<String> {
        self.default_cloud_with(None)
    }

    fn section_mut(&mut self, name: &str) -> &mut IniSection {
        if let Some(i) = self.sections.iter().position(|s| s.name == name) {
            return &mut self.sections[i];
        }
        self.sections.push(IniSection {
            name: name.to_owned(),
            entries: Vec::new(),
        });
        self.sections.last_mut().expect("just pushed")
    }

    fn set(&mut self, section: &str, key: &str, value: Option<&str>) {
        let s = self.section_mut(section);
        s.entries.retain(|(k, _)| k != key);
        if let Some(v) = value {
            s.entries.push((key.to_owned(), v.to_owned()));
        }
    }

    /// Add or replace a cloud (the name must satisfy [`valid_cloud_name`]).
    pub fn set_cloud(&mut self, cloud: &KamakiCloud) -> Result<()> {
        if !valid_cloud_name(&cloud.name) {
            return Err(CloudError::InvalidCloud {
                name: cloud.name.clone(),
                reason: "a name may only hold letters, digits and _~@#$.:-".into(),
            });
        }
        let sec = format!("cloud \"{}\"", cloud.name);
        self.set(&sec, "url", cloud.url.as_deref());
        self.set(&sec, "token", cloud.token.as_ref().map(Secret::expose));
        self.set(&sec, "description", cloud.description.as_deref());
        Ok(())
    }

    /// Remove a cloud; true if it was there.
    pub fn remove_cloud(&mut self, name: &str) -> bool {
        let sec = format!("cloud \"{name}\"");
        let before = self.sections.len();
        self.sections.retain(|s| s.name != sec);
        if self.global("default_cloud").as_deref() == Some(name) {
            self.set("global", "default_cloud", None);
        }
        self.sections.len() != before
    }

    /// Make `name` the default cloud.
    pub fn set_default(&mut self, name: &str) {
        self.set("global", "default_cloud", Some(name));
    }

    /// Write the file atomically, mode 0600 from its creation on.
    pub fn save(&self) -> Result<()> {
        let io = |source| CloudError::Io {
            path: self.path.clone(),
            source,
        };
        let mut text = String::from("# Kamaki configuration file v0.16\n");
        let mut order: Vec<&IniSection> = self
            .sections
            .iter()
            .filter(|s| s.name == "global")
            .collect();
        order.extend(self.sections.iter().filter(|s| s.name != "global"));
        for s in order {
            text.push_str(&format!("\n[{}]\n", s.name));
            for (k, v) in &s.entries {
                text.push_str(&format!("{k} = {}\n", v.replace('\n', "\n    ")));
            }
        }
        let dir = self
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let tmp = dir.join(format!(
            ".{}.tmp{}",
            self.path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("kamakirc"),
            std::process::id()
        ));
        let result = (|| {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.set_permissions(fs::Permissions::from_mode(0o600))?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            fs::rename(&tmp, &self.path)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finder(dir: &Path, env: &[(&str, &str)]) -> AccountFinder {
        let mut e: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        e.insert("HOME".into(), dir.join("home").display().to_string());
        AccountFinder {
            env: e,
            cwd: dir.join("cwd"),
        }
    }

    #[test]
    fn kamakirc_round_trip_keeps_other_settings_and_is_private() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("kamakirc");
        fs::write(&p, "# Kamaki configuration file v0.16\n[global]\ndefault_cloud = one\ncolors = off\n\n[cloud \"one\"]\nurl = https://accounts.example.org/identity/v2.0\ntoken = tok-1\n").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        let mut c = KamakiConfig::load(&p).unwrap();
        assert_eq!(c.default_cloud().as_deref(), Some("one"));
        c.set_cloud(&KamakiCloud {
            name: "two@x".into(),
            url: Some("https://b/identity/v2.0".into()),
            token: Some("tok-2".into()),
            description: Some("second".into()),
        })
        .unwrap();
        c.set_default("two@x");
        c.save().unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let again = KamakiConfig::load(&p).unwrap();
        assert_eq!(again.clouds().len(), 2);
        assert_eq!(again.default_cloud().as_deref(), Some("two@x"));
        assert_eq!(again.global("colors").as_deref(), Some("off"));
        assert_eq!(
            again.cloud("two@x").unwrap().token.unwrap().expose(),
            "tok-2"
        );
        let mut again = again;
        assert!(again.remove_cloud("two@x"));
        // the default named the removed cloud: the first one is the default again
        assert_eq!(again.default_cloud().as_deref(), Some("one"));
        assert_eq!(again.global("default_cloud"), None);
        assert!(again
            .set_cloud(&KamakiCloud {
                name: "bad name".into(),
                url: None,
                token: None,
                description: None
            })
            .is_err());
    }

    #[test]
    fn kamakirc_read_as_kamaki_reads_it() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("kamakirc");
        fs::write(
            &p,
            "[global]\ndefault_cloud =\nrem an old-style comment\ncolors = ; no comment: kamaki keeps it\n\n\
             [cloud \"grnet.okeanos\"]\nurl = https://accounts.example.org/identity/v2.0 ; the URL\n\
             token = tok;en-1\ndescription = one # two ; three\n",
        )
        .unwrap();
        let c = KamakiConfig::load(&p).unwrap();
        let cloud = c.cloud("grnet.okeanos").expect("a name with a dot");
        assert_eq!(
            cloud.url.as_deref(),
            Some("https://accounts.example.org/identity/v2.0")
        );
        assert_eq!(
            cloud.token.unwrap().expose(),
            "tok;en-1",
            "no space before `;'"
        );
        assert_eq!(cloud.description.as_deref(), Some("one # two"));
        // an empty default_cloud is no default: the only cloud is used
        assert_eq!(c.global("default_cloud").as_deref(), Some(""));
        assert_eq!(
            c.global("colors").as_deref(),
            Some("; no comment: kamaki keeps it")
        );
        assert_eq!(c.default_cloud().as_deref(), Some("grnet.okeanos"));
        assert!(valid_cloud_name("grnet.okeanos"));

        // several clouds and no default: kamaki refuses to choose, unless
        // KAMAKI_DEFAULT_CLOUD names one
        let mut c = c;
        c.set_cloud(&KamakiCloud {
            name: "other".into(),
            url: Some("https://b/identity/v2.0".into()),
            token: Some(Secret::new("t2")),
            description: None,
        })
        .unwrap();
        assert_eq!(c.default_cloud(), None);
        assert_eq!(
            c.default_cloud_with(Some("other")).as_deref(),
            Some("other")
        );
        assert_eq!(c.default_cloud_with(Some("nope")), None);
        c.save().unwrap();
        let f = finder(
            d.path(),
            &[
                ("KAMAKI_CONFIG", p.to_str().unwrap()),
                ("KAMAKI_DEFAULT_CLOUD", "other"),
            ],
        );
        assert_eq!(f.default_account().unwrap().unwrap().name, "other");
    }

    #[test]
    fn unknown_name_lists_what_exists() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("home/.config/openstack")).unwrap();
        fs::create_dir_all(d.path().join("cwd")).unwrap();
        fs::write(
            d.path().join("home/.kamakirc"),
            "[cloud \"synnefo\"]\nurl = https://a/identity/v2.0\ntoken = t\n",
        )
        .unwrap();
        fs::write(
            d.path().join("home/.config/openstack/clouds.yaml"),
            "clouds:\n  mycloud:\n    auth:\n      auth_url: http://k:5000/v3\n      username: u\n",
        )
        .unwrap();
        let f = finder(
            d.path(),
            &[("OS_AUTH_URL", "http://e:5000/v3"), ("OS_TOKEN", "x")],
        );
        let e = f.find("nope").unwrap_err();
        assert_eq!(
            e.to_string(),
            "cloud `nope' does not exist; available clouds: synnefo, mycloud, envvars"
        );
        // mycloud has no password: invalid, and the message does not leak anything
        let e = f.find("mycloud").unwrap_err().to_string();
        assert!(e.contains("exists but is not valid: no password"), "{e}");
        let a = f.find("synnefo").unwrap();
        assert_eq!(a.auth, AuthMethod::Token(Secret::new("t")));
        assert!(matches!(a.source, AccountSource::Kamaki(_)));
    }

    #[test]
    fn clouds_yaml_with_secure_yaml_and_search_order() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("cwd")).unwrap();
        fs::create_dir_all(d.path().join("home/.config/openstack")).unwrap();
        // the copy in the working directory wins over the one in ~/.config
        fs::write(
            d.path().join("home/.config/openstack/clouds.yaml"),
            "clouds:\n  c: {auth: {auth_url: http://wrong/v3}}\n",
        )
        .unwrap();
        fs::write(
            d.path().join("cwd/clouds.yaml"),
            "clouds:\n  c:\n    region_name: R2\n    interface: internal\n    identity_api_version: 3\n    auth:\n      auth_url: http://k:5000/v3\n      username: tester\n      project_name: test\n      user_domain_id: default\n      project_domain_name: Default\n  app:\n    auth_type: v3applicationcredential\n    auth:\n      auth_url: http://k:5000\n      application_credential_id: abc\n",
        )
        .unwrap();
        fs::write(d.path().join("home/.config/openstack/secure.yaml"), "clouds:\n  c:\n    auth:\n      password: pw\n  app:\n    auth:\n      application_credential_secret: s3\n").unwrap();
        let f = finder(d.path(), &[]);
        let a = f.find("c").unwrap();
        assert_eq!(a.auth_url, "http://k:5000/v3");
        assert_eq!(
            a.auth,
            AuthMethod::Password {
                username: Some("tester".into()),
                user_id: None,
                password: Secret::new("pw")
            }
        );
        assert_eq!(a.scope.project_name.as_deref(), Some("test"));
        assert_eq!(a.scope.project_domain_name.as_deref(), Some("Default"));
        assert_eq!(a.region.as_deref(), Some("R2"));
        assert_eq!(a.interface, "internal");
        let app = f.find("app").unwrap();
        assert!(
            matches!(app.auth, AuthMethod::ApplicationCredential { ref id, .. } if id.as_deref() == Some("abc"))
        );
        // OS_CLOUD picks the default account
        let f2 = finder(d.path(), &[("OS_CLOUD", "app")]);
        assert_eq!(f2.default_account().unwrap().unwrap().name, "app");
    }

    #[test]
    fn envvars_cloud() {
        let d = tempfile::tempdir().unwrap();
        let f = finder(
            d.path(),
            &[
                ("OS_AUTH_URL", "http://127.0.0.1:5000/v3"),
                ("OS_USERNAME", "tester"),
                ("OS_PASSWORD", "testing"),
                ("OS_PROJECT_NAME", "test"),
                ("OS_USER_DOMAIN_ID", "default"),
                ("OS_PROJECT_DOMAIN_ID", "default"),
                ("OS_REGION_NAME", "RegionOne"),
            ],
        );
        let a = f.default_account().unwrap().unwrap();
        assert_eq!(a.name, "envvars");
        assert_eq!(a.source, AccountSource::Environment);
        assert_eq!(f.find("envvars").unwrap(), a);
        let shown = format!("{a:?}");
        assert!(
            !shown.contains("testing"),
            "the password leaked into Debug: {shown}"
        );
    }
}
