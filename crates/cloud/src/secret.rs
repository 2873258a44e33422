//! Secrets (tokens, passwords, application-credential secrets) that never print.

use std::fmt;

/// A secret string. `Debug` prints a placeholder and there is no `Display`, so a secret
/// cannot end up in a message, a log line or an error by accident; [`Secret::expose`]
/// is the one explicit way to read it (for an HTTP header or a request body).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for sending it to the server it belongs to.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_value() {
        let s = Secret::new("gAAAAAB-very-secret");
        let shown = format!("{s:?} {:?}", Some(&s));
        assert!(!shown.contains("very-secret"), "{shown}");
        assert_eq!(s.expose(), "gAAAAAB-very-secret");
    }
}
