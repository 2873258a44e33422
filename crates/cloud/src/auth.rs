//! Authentication: Keystone v3 (password, token, application credential) and
//! Astakos / Keystone v2 tokens (`POST /tokens`), and the service catalog.

use serde_json::{json, Value};

use crate::account::{Account, AuthMethod, Scope};
use crate::error::{CloudError, Result};
use crate::http::{Http, Request};
use crate::secret::Secret;

/// Which identity API answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityApi {
    /// Astakos, or Keystone v2.0.
    V2,
    /// Keystone v3.
    V3,
}

/// One endpoint of a catalog service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// public, internal or admin.
    pub interface: String,
    /// Region id, if the catalog names one.
    pub region: Option<String>,
    /// The URL.
    pub url: String,
}

/// One service of the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogService {
    /// Service type ("object-store", "image", ...).
    pub service_type: String,
    /// Service name ("swift", "pithos_object-store", ...).
    pub name: String,
    /// Its endpoints.
    pub endpoints: Vec<Endpoint>,
}

/// An authenticated session: the token and what it gives access to.
#[derive(Debug, Clone)]
pub struct Session {
    /// The token to send as `X-Auth-Token`.
    pub token: Secret,
    /// The identity API used.
    pub api: IdentityApi,
    /// The identity URL, with its version.
    pub identity_url: String,
    /// The user's id (for Synnefo, the UUID that names the Pithos account).
    pub user_id: String,
    /// The user's name, if the answer gave one.
    pub user_name: Option<String>,
    /// The project (tenant) the token is scoped to.
    pub project_id: Option<String>,
    /// The service catalog.
    pub catalog: Vec<CatalogService>,
}

impl Session {
    /// The URL of the `service_type` endpoint for `interface` (and `region` if given;
    /// otherwise the first endpoint with that interface).
    pub fn endpoint(
        &self,
        service_type: &str,
        interface: &str,
        region: Option<&str>,
    ) -> Result<String> {
        let found = self
            .catalog
            .iter()
            .filter(|s| s.service_type == service_type)
            .flat_map(|s| s.endpoints.iter())
            .find(|e| {
                e.interface == interface && region.is_none_or(|r| e.region.as_deref() == Some(r))
            });
        match found {
            Some(e) => Ok(e.url.trim_end_matches('/').to_owned()),
            None => Err(CloudError::NoEndpoint {
                service_type: service_type.into(),
                interface: interface.into(),
                region: region.map(str::to_owned),
                available: self.describe_catalog(),
            }),
        }
    }

    fn describe_catalog(&self) -> String {
        let parts: Vec<String> = self
            .catalog
            .iter()
            .map(|s| {
                let mut ifs: Vec<String> = s
                    .endpoints
                    .iter()
                    .map(|e| match &e.region {
                        Some(r) => format!("{}@{r}", e.interface),
                        None => e.interface.clone(),
                    })
                    .collect();
                ifs.dedup();
                format!("{} ({})", s.service_type, ifs.join(" "))
            })
            .collect();
        if parts.is_empty() {
            "nothing".into()
        } else {
            parts.join(", ")
        }
    }
}

/// The identity API and versioned URL to use for `account`.
fn resolve_identity(http: &Http, account: &Account) -> Result<(IdentityApi, String)> {
    let url = account.auth_url.trim().trim_end_matches('/').to_owned();
    let last = url.rsplit('/').next().unwrap_or("");
    if last == "v3" || last.starts_with("v3.") {
        return Ok((IdentityApi::V3, url));
    }
    if last == "v2.0" || last == "v2" {
        return Ok((IdentityApi::V2, url));
    }
    match account
        .identity_api_version
        .as_deref()
        .map(|v| v.trim_start_matches('v'))
    {
        Some("3") => return Ok((IdentityApi::V3, format!("{url}/v3"))),
        Some("2") | Some("2.0") => return Ok((IdentityApi::V2, format!("{url}/v2.0"))),
        _ => {}
    }
    if !matches!(account.auth, AuthMethod::Token(_)) {
        return Ok((IdentityApi::V3, format!("{url}/v3")));
    }
    // A bare URL with a token: ask the server which versions it speaks (Keystone
    // answers 300 with a list); Astakos-style URLs get kamaki's `/v2.0`.
    let resp = http.send(Request::new(
        "identity",
        "GET",
        url.clone(),
        format!("discovering the identity API versions at {url}"),
    ));
    if let Ok(r) = resp {
        if let Ok(v) = serde_json::from_slice::<Value>(&r.body) {
            let versions = v
                .pointer("/versions/values")
                .or_else(|| v.get("versions"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for ver in versions {
                if ver
                    .get("id")
                    .and_then(Value::as_str)
                    .is_some_and(|id| id.starts_with("v3"))
                {
                    let href = ver
                        .get("links")
                        .and_then(Value::as_array)
                        .and_then(|l| {
                            l.iter()
                                .find(|x| x.get("rel").and_then(Value::as_str) == Some("self"))
                        })
                        .and_then(|x| x.get("href"))
                        .and_then(Value::as_str)
                        .map(|h| h.trim_end_matches('/').to_owned())
                        .unwrap_or_else(|| format!("{url}/v3"));
                    return Ok((IdentityApi::V3, href));
                }
            }
        }
    }
    Ok((IdentityApi::V2, format!("{url}/v2.0")))
}

/// Authenticate `account` and read its service catalog.
pub fn authenticate(http: &Http, account: &Account) -> Result<Session> {
    let (api, url) = resolve_identity(http, account)?;
    match api {
        IdentityApi::V2 => authenticate_v2(http, account, &url),
        IdentityApi::V3 => authenticate_v3(http, account, &url),
    }
}

fn authenticate_v2(http: &Http, account: &Account, url: &str) -> Result<Session> {
    let AuthMethod::Token(token) = &account.auth else {
        return Err(CloudError::Unsupported(format!(
            "cloud `{}': {url} is a version 2 identity service, which this tool uses with a token only",
            account.name
        )));
    };
    let service = "Astakos";
    let action = format!("authenticating at {url}");
    let mut auth = json!({"token": {"id": token.expose()}});
    if let Some(p) = &account.scope.project_id {
        auth["tenantId"] = json!(p);
    } else if let Some(p) = &account.scope.project_name {
        auth["tenantName"] = json!(p);
    }
    let body = json!({ "auth": auth });
    let resp = http
        .send_json(
            Request::new(service, "POST", format!("{url}/tokens"), action.clone())
                .token(token)
                .json(&body),
        )?
        .ok(service, &action)?;
    let v: Value = resp.json(service, &action)?;
    let access = v
        .get("access")
        .ok_or_else(|| protocol(service, &action, "no `access' in the answer"))?;
    let tok = access
        .pointer("/token/id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| token.expose().to_owned());
    // The Pithos account is the user's uuid; `token.tenant.id` is the user's default
    // project (Astakos), which need not be the same.
    let user_id = access
        .pointer("/user/id")
        .and_then(Value::as_str)
        .ok_or_else(|| protocol(service, &action, "no user id in the answer"))?
        .to_owned();
    let mut catalog = Vec::new();
    for s in access
        .get("serviceCatalog")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let mut endpoints = Vec::new();
        for e in s
            .get("endpoints")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            for iface in ["public", "internal", "admin"] {
                if let Some(u) = e.get(format!("{iface}URL")).and_then(Value::as_str) {
                    endpoints.push(Endpoint {
                        interface: iface.into(),
                        region: e.get("region").and_then(Value::as_str).map(str::to_owned),
                        url: u.to_owned(),
                    });
                }
            }
        }
        catalog.push(CatalogService {
            service_type: s
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            name: s
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            endpoints,
        });
    }
    Ok(Session {
        token: Secret::new(tok),
        api: IdentityApi::V2,
        identity_url: url.to_owned(),
        user_id,
        user_name: access
            .pointer("/user/name")
            .and_then(Value::as_str)
            .map(str::to_owned),
        project_id: access
            .pointer("/token/tenant/id")
            .and_then(Value::as_str)
            .map(str::to_owned),
        catalog,
    })
}

fn domain(id: &Option<String>, name: &Option<String>) -> Value {
    match (id, name) {
        (Some(i), _) => json!({ "id": i }),
        (None, Some(n)) => json!({ "name": n }),
        (None, None) => json!({ "id": "default" }),
    }
}

fn scope_json(s: &Scope) -> Option<Value> {
    if let Some(id) = &s.project_id {
        return Some(json!({"project": {"id": id}}));
    }
    let name = s.project_name.as_ref()?;
    let (did, dname) = if s.project_domain_id.is_some() || s.project_domain_name.is_some() {
        (&s.project_domain_id, &s.project_domain_name)
    } else {
        (&s.user_domain_id, &s.user_domain_name)
    };
    Some(json!({"project": {"name": name, "domain": domain(did, dname)}}))
}

fn user_json(username: &Option<String>, user_id: &Option<String>, s: &Scope) -> Value {
    match (user_id, username) {
        (Some(id), _) => json!({ "id": id }),
        (None, name) => {
            json!({ "name": name, "domain": domain(&s.user_domain_id, &s.user_domain_name) })
        }
    }
}

/// What Keystone is asked: a token for this identity, or to validate a token.
enum Ask<'a> {
    /// POST this identity, with the account's scope when `scoped` (an application
    /// credential carries its own: Keystone refuses one with a scope).
    Post {
        identity: Value,
        scoped: bool,
    },
    Validate(&'a Secret),
}

fn authenticate_v3(http: &Http, account: &Account, url: &str) -> Result<Session> {
    let service = "Keystone";
    let tokens_url = format!("{url}/auth/tokens");
    let scope = scope_json(&account.scope);
    // What to send: the identity (and scope) to POST, or, for an unscoped token, nothing:
    // validating it returns its own catalog without re-scoping it.
    let (who, ask) = match &account.auth {
        AuthMethod::Password {
            username,
            user_id,
            password,
        } => {
            let mut user = user_json(username, user_id, &account.scope);
            user["password"] = json!(password.expose());
            let who = format!(
                "user `{}'",
                username.as_deref().or(user_id.as_deref()).unwrap_or("?")
            );
            (
                who,
                Ask::Post {
                    identity: json!({"methods": ["password"], "password": {"user": user}}),
                    scoped: true,
                },
            )
        }
        AuthMethod::ApplicationCredential {
            id,
            name,
            secret,
            username,
            user_id,
        } => {
            let mut cred = json!({ "secret": secret.expose() });
            match (id, name) {
                (Some(i), _) => cred["id"] = json!(i),
                (None, n) => {
                    cred["name"] = json!(n);
                    cred["user"] = user_json(username, user_id, &account.scope);
                }
            }
            let who = format!(
                "application credential `{}'",
                id.as_deref().or(name.as_deref()).unwrap_or("?")
            );
            (
                who,
                Ask::Post {
                    identity: json!({"methods": ["application_credential"], "application_credential": cred}),
                    scoped: false,
                },
            )
        }
        AuthMethod::Token(token) => (
            "the token".to_owned(),
            match scope {
                Some(_) => Ask::Post {
                    identity: json!({"methods": ["token"], "token": {"id": token.expose()}}),
                    scoped: true,
                },
                None => Ask::Validate(token),
            },
        ),
    };
    let resp = match ask {
        Ask::Post { identity, scoped } => {
            let mut auth = json!({ "identity": identity });
            if let (true, Some(s)) = (scoped, scope) {
                auth["scope"] = s;
            }
            let action = format!("authenticating {who} at {url}");
            http.send_json(
                Request::new(service, "POST", tokens_url, action).json(&json!({ "auth": auth })),
            )?
        }
        Ask::Validate(token) => {
            let action = format!("validating the token at {url}");
            http.send(
                Request::new(service, "GET", tokens_url, action)
                    .token(token)
                    .header("X-Subject-Token", token.expose().to_owned()),
            )?
        }
    };
    let action = format!("authenticating {who} at {url}");
    let resp = resp.ok(service, &action)?;
    let token = match (&account.auth, resp.header("x-subject-token")) {
        (_, Some(t)) => Secret::new(t),
        (AuthMethod::Token(t), None) => t.clone(),
        _ => return Err(protocol(service, &action, "no X-Subject-Token header")),
    };
    let v: Value = resp.json(service, &action)?;
    let t = v
        .get("token")
        .ok_or_else(|| protocol(service, &action, "no `token' in the answer"))?;
    let Some(cat) = t.get("catalog").and_then(Value::as_array) else {
        return Err(CloudError::InvalidCloud {
            name: account.name.clone(),
            reason: "the token is not scoped to a project, so it has no service catalog: set project_name or project_id".into(),
        });
    };
    let catalog = cat
        .iter()
        .map(|s| CatalogService {
            service_type: s
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            name: s
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            endpoints: s
                .get("endpoints")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|e| {
                    Some(Endpoint {
                        interface: e.get("interface")?.as_str()?.to_owned(),
                        region: e
                            .get("region_id")
                            .or_else(|| e.get("region"))
                            .and_then(Value::as_str)
                            .map(str::to_owned),
                        url: e.get("url")?.as_str()?.to_owned(),
                    })
                })
                .collect(),
        })
        .collect();
    Ok(Session {
        token,
        api: IdentityApi::V3,
        identity_url: url.to_owned(),
        user_id: t
            .pointer("/user/id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        user_name: t
            .pointer("/user/name")
            .and_then(Value::as_str)
            .map(str::to_owned),
        project_id: t
            .pointer("/project/id")
            .and_then(Value::as_str)
            .map(str::to_owned),
        catalog,
    })
}

fn protocol(service: &'static str, action: &str, detail: &str) -> CloudError {
    CloudError::Protocol {
        service,
        action: action.to_owned(),
        detail: detail.to_owned(),
    }
}
