//! Grant identifiers and the agent's own credential pair.
//!
//! Each grant gets an AWS-shaped access key id (`AKCU` + 16 upper-case alphanumerics, so a
//! Custody key is recognisable in logs and by secret scanners) and a 40-character secret from
//! the operating system's CSPRNG. The secret is shown once, at issue, and afterwards kept only
//! to verify request signatures; [`AgentSecret`] never prints it.

use std::fmt;

use rand::TryRng;
use rand::rngs::SysRng;
use serde::{Deserialize, Serialize};

/// Prefix of every Custody access key id.
pub const ACCESS_KEY_PREFIX: &str = "AKCU";

const KEY_ALPHABET: &[u8; 36] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const SECRET_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const ID_ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const KEY_LEN: usize = 20;
const SECRET_LEN: usize = 40;

/// A grant's id, e.g. `grant-4k2m…`; also the STS `RoleSessionName`, so it keeps to that
/// alphabet (`[A-Za-z0-9+=,.@_-]`, 2–64 characters).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct GrantId(String);

/// A grant's access key id: `AKCU` followed by 16 of `A-Z0-9`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AccessKeyId(String);

/// A grant's secret access key. `Debug` redacts it, there is no `Display` and no `Serialize`:
/// the only way to the text is [`AgentSecret::expose_secret`].
#[derive(Clone)]
pub struct AgentSecret(String);

/// Errors from credential generation and parsing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    /// The operating system's random source failed.
    #[error("cannot read the system random source: {0}")]
    Random(String),
    /// An access key id without the Custody shape.
    #[error("malformed access key id `{0}`: expected `AKCU` and 16 of A-Z0-9")]
    MalformedAccessKeyId(String),
    /// A grant id outside the allowed alphabet or length.
    #[error("malformed grant id `{0}`: expected 2-64 of A-Za-z0-9+=,.@_-")]
    MalformedGrantId(String),
    /// A stored secret of the wrong shape (its value is not shown).
    #[error("malformed agent secret: expected 40 characters of A-Za-z0-9+/")]
    MalformedSecret,
}

/// `n` characters drawn uniformly from `alphabet` (at most 256 symbols) with the OS CSPRNG.
fn random_string(alphabet: &[u8], n: usize) -> Result<String, CredentialError> {
    // Rejection sampling keeps the draw uniform when 256 is not a multiple of the alphabet.
    let len = alphabet.len();
    let cutoff = 256 - 256 % len;
    let mut out = String::with_capacity(n);
    let mut buf = [0u8; 64];
    while out.len() < n {
        SysRng
            .try_fill_bytes(&mut buf)
            .map_err(|e| CredentialError::Random(e.to_string()))?;
        for &b in &buf {
            if out.len() == n {
                break;
            }
            if usize::from(b) < cutoff
                && let Some(&c) = alphabet.get(usize::from(b) % len)
            {
                out.push(char::from(c));
            }
        }
    }
    Ok(out)
}

/// A fresh credential pair for a new grant.
pub fn generate_credentials() -> Result<(AccessKeyId, AgentSecret), CredentialError> {
    let key = format!(
        "{ACCESS_KEY_PREFIX}{}",
        random_string(KEY_ALPHABET, KEY_LEN - ACCESS_KEY_PREFIX.len())?
    );
    let secret = random_string(SECRET_ALPHABET, SECRET_LEN)?;
    Ok((AccessKeyId(key), AgentSecret(secret)))
}

// === impl GrantId ===

impl GrantId {
    /// A fresh random id: `grant-` and 20 of `a-z0-9`.
    pub fn generate() -> Result<Self, CredentialError> {
        Ok(Self(format!("grant-{}", random_string(ID_ALPHABET, 20)?)))
    }

    /// Parse an id.
    pub fn parse(text: &str) -> Result<Self, CredentialError> {
        let ok = (2..=64).contains(&text.len())
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b));
        if ok {
            Ok(Self(text.to_owned()))
        } else {
            Err(CredentialError::MalformedGrantId(text.to_owned()))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for GrantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for GrantId {
    type Error = CredentialError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<GrantId> for String {
    fn from(value: GrantId) -> Self {
        value.0
    }
}

// === impl AccessKeyId ===

impl AccessKeyId {
    /// Parse an access key id, e.g. from a SigV4 `Credential=` field.
    pub fn parse(text: &str) -> Result<Self, CredentialError> {
        let ok = text.len() == KEY_LEN
            && text.starts_with(ACCESS_KEY_PREFIX)
            && text.bytes().all(|b| KEY_ALPHABET.contains(&b));
        if ok {
            Ok(Self(text.to_owned()))
        } else {
            Err(CredentialError::MalformedAccessKeyId(text.to_owned()))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AccessKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for AccessKeyId {
    type Error = CredentialError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<AccessKeyId> for String {
    fn from(value: AccessKeyId) -> Self {
        value.0
    }
}

// === impl AgentSecret ===

impl AgentSecret {
    /// Rebuild a secret from its stored text (the file store uses this).
    pub fn from_exposed(text: String) -> Result<Self, CredentialError> {
        if text.len() == SECRET_LEN && text.bytes().all(|b| SECRET_ALPHABET.contains(&b)) {
            Ok(Self(text))
        } else {
            Err(CredentialError::MalformedSecret)
        }
    }

    /// The secret's text: for deriving the SigV4 signing key, and for showing it to the
    /// requester once at issue. Never log it.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AgentSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AgentSecret(<redacted>)")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let (key, secret) = generate_credentials().unwrap();
        assert_eq!(key.as_str().len(), 20);
        assert!(key.as_str().starts_with("AKCU"));
        assert_eq!(AccessKeyId::parse(key.as_str()).unwrap(), key);
        assert_eq!(secret.expose_secret().len(), 40);
        assert!(!format!("{secret:?}").contains(secret.expose_secret()));
        let id = GrantId::generate().unwrap();
        assert_eq!(GrantId::parse(id.as_str()).unwrap(), id);
        let (key2, secret2) = generate_credentials().unwrap();
        assert_ne!(key, key2);
        assert_ne!(secret.expose_secret(), secret2.expose_secret());
    }

    #[test]
    fn refuses_bad_shapes() {
        for bad in [
            "",
            "AKIAABCDEFGHIJKLMNOP",
            "AKCUabcdefghijklmnop",
            "AKCU123",
        ] {
            assert!(AccessKeyId::parse(bad).is_err(), "{bad}");
        }
        assert!(GrantId::parse("a b").is_err());
        assert!(AgentSecret::from_exposed("short".to_owned()).is_err());
    }
}
