//! The errors of the cloud layer. Each names the object or the service and says what
//! went wrong in one line; none ever contains a token or a password.

use std::path::PathBuf;

/// Everything that can go wrong while talking to a cloud.
#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    /// `-c NAME` names no saved account.
    #[error("cloud `{name}' does not exist; available clouds: {}", list_or_none(.available))]
    UnknownCloud {
        /// The name asked for.
        name: String,
        /// Every account name that exists (kamaki config, clouds.yaml, environment).
        available: Vec<String>,
    },
    /// A saved account lacks something it needs.
    #[error("cloud `{name}' exists but is not valid: {reason}")]
    InvalidCloud {
        /// The account's name.
        name: String,
        /// What is missing or wrong.
        reason: String,
    },
    /// A configuration file could not be parsed.
    #[error("{}: {reason}", .path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A local file could not be read or written.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The system error.
        source: std::io::Error,
    },
    /// A server answered with an error status.
    #[error("{service}: {action} failed: {}", status_hint(*.status, .detail))]
    Http {
        /// The service ("Keystone", "Swift", "Glance", "Pithos", "Plankton", "Astakos").
        service: &'static str,
        /// What was being done ("creating container `images'").
        action: String,
        /// The HTTP status.
        status: u16,
        /// The server's own message, shortened (never contains a credential).
        detail: String,
    },
    /// The server could not be reached, or the connection broke or timed out, even
    /// after retrying.
    #[error("{service}: {action} failed after {attempts} attempt(s): {reason}")]
    Transport {
        /// The service.
        service: &'static str,
        /// What was being done.
        action: String,
        /// How many times it was tried.
        attempts: u32,
        /// The last transport error (connection refused, timed out, reset ...).
        reason: String,
    },
    /// The remote object exists and `--force` was not given.
    #[error("remote object `{container}/{object}' exists (use --force to overwrite it)")]
    Exists {
        /// The container.
        container: String,
        /// The object.
        object: String,
    },
    /// What the server stored is not what we sent.
    #[error("{what}: checksum mismatch (ours {expected}, the server's {actual})")]
    Integrity {
        /// The object or image.
        what: String,
        /// Our checksum.
        expected: String,
        /// The server's.
        actual: String,
    },
    /// The cloud's policy refuses public images to this user; no image was created.
    #[error("{service} refused to register a public image (403 Forbidden{}): this cloud's policy does not let this user publish images; nothing was registered. Register it without --public, or ask the cloud's operators", if .detail.is_empty() { String::new() } else { format!(": {}", .detail) })]
    PublicRefused {
        /// The image service.
        service: &'static str,
        /// The server's message.
        detail: String,
    },
    /// The server answered something we cannot use.
    #[error("{service}: unexpected answer to {action}: {detail}")]
    Protocol {
        /// The service.
        service: &'static str,
        /// What was being done.
        action: String,
        /// What was wrong with the answer.
        detail: String,
    },
    /// The service catalog has no endpoint of the type we need.
    #[error("the service catalog has no {interface} `{service_type}' endpoint{}; it lists: {available}", .region.as_deref().map(|r| format!(" in region `{r}'")).unwrap_or_default())]
    NoEndpoint {
        /// The service type ("object-store", "image").
        service_type: String,
        /// The interface asked for.
        interface: String,
        /// The region asked for.
        region: Option<String>,
        /// What the catalog holds (types and regions).
        available: String,
    },
    /// The image service did not finish the image.
    #[error("{service}: image {id} ended in status `{status}'{}", if .detail.is_empty() { String::new() } else { format!(": {}", .detail) })]
    ImageFailed {
        /// The image service.
        service: &'static str,
        /// The image id.
        id: String,
        /// Its last status.
        status: String,
        /// Anything the service said about it.
        detail: String,
    },
    /// Something this cloud does not offer or this tool does not support.
    /// The upload would exceed a quota the service announces; nothing was sent.
    #[error("{service}: {what} would exceed its quota ({needed} bytes needed, {available} available); nothing was uploaded")]
    Quota {
        /// The service whose quota it is.
        service: &'static str,
        /// The account, container or project the quota is on.
        what: String,
        /// Bytes (or images) the upload needs.
        needed: u64,
        /// Bytes (or images) left under the quota.
        available: u64,
    },
    #[error("{0}")]
    Unsupported(String),
    /// The user interrupted the work.
    #[error(transparent)]
    Cancelled(#[from] snf_core::Cancelled),
}

/// Shorthand for results of this crate.
pub type Result<T, E = CloudError> = std::result::Result<T, E>;

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "(none)".to_owned()
    } else {
        names.join(", ")
    }
}

/// "403 Forbidden: <what it usually means>: <server detail>"
fn status_hint(status: u16, detail: &str) -> String {
    let meaning = match status {
        400 => "400 Bad Request: the server refused the request as malformed",
        401 => "401 Unauthorized: the credentials or the token were rejected (wrong, or the token expired)",
        403 => "403 Forbidden: this user is not allowed to do that here",
        404 => "404 Not Found",
        408 => "408 Request Timeout: the server gave up waiting for the data",
        409 => "409 Conflict: the object or image is in a state that does not allow this",
        411 => "411 Length Required",
        413 => "413 Request Entity Too Large: more than the server accepts (object size limit or quota)",
        415 => "415 Unsupported Media Type",
        422 => "422 Unprocessable Entity: the data arrived damaged (checksum mismatch)",
        429 => "429 Too Many Requests: the server is rate-limiting this client",
        500 => "500 Internal Server Error",
        502 => "502 Bad Gateway",
        503 => "503 Service Unavailable",
        504 => "504 Gateway Timeout",
        s => return with_detail(&format!("HTTP status {s}"), detail),
    };
    with_detail(meaning, detail)
}

fn with_detail(head: &str, detail: &str) -> String {
    if detail.is_empty() {
        head.to_owned()
    } else {
        format!("{head} ({detail})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_line_and_explain_the_status() {
        let e = CloudError::Http {
            service: "Swift",
            action: "creating container `images'".into(),
            status: 401,
            detail: String::new(),
        };
        let m = e.to_string();
        assert!(
            m.starts_with("Swift: creating container `images' failed: 401 Unauthorized"),
            "{m}"
        );
        assert!(!m.contains('\n'));
        let e = CloudError::UnknownCloud {
            name: "x".into(),
            available: vec!["a".into(), "b".into()],
        };
        assert_eq!(
            e.to_string(),
            "cloud `x' does not exist; available clouds: a, b"
        );
    }
}
