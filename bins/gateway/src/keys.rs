//! Secrets on disk: the log signing key and the generated admin token, each created once
//! with mode 0600 and refused if anyone else can read it.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::SigningKey;
use rand::Rng;

/// Errors loading or creating a secret file.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file could not be read or written.
    #[error("`{path}`: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file exists but does not hold what it should.
    #[error("`{path}`: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Create `dir` (and parents) with mode 0700 if missing.
pub fn ensure_private_dir(dir: &Path) -> Result<(), KeyError> {
    if !dir.exists() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
    }
    Ok(())
}

/// Write `contents` to a new file at `path` with mode 0600, durably: temp file, fsync,
/// rename, fsync the directory.
pub fn write_secret(path: &Path, contents: &[u8]) -> Result<(), KeyError> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io(&tmp))?;
        f.write_all(contents).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
    }
    std::fs::rename(&tmp, path).map_err(io(path))?;
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Read a secret file, refusing one that group or others can read.
pub fn read_secret(path: &Path) -> Result<String, KeyError> {
    let meta = std::fs::metadata(path).map_err(io(path))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(KeyError::Invalid {
            path: path.to_owned(),
            reason: format!(
                "mode {:o} lets others read a secret; run `chmod 600` on it",
                meta.permissions().mode() & 0o777
            ),
        });
    }
    Ok(std::fs::read_to_string(path)
        .map_err(io(path))?
        .trim()
        .to_owned())
}

/// Load the log signing key from `path`, generating it (and returning `true`) if absent.
pub fn load_or_create_signing_key(path: &Path) -> Result<(SigningKey, bool), KeyError> {
    if path.exists() {
        let text = read_secret(path)?;
        let bytes = STANDARD
            .decode(text.as_bytes())
            .map_err(|e| KeyError::Invalid {
                path: path.to_owned(),
                reason: format!("not base64: {e}"),
            })?;
        let seed: [u8; 32] = bytes.try_into().map_err(|_| KeyError::Invalid {
            path: path.to_owned(),
            reason: "an ed25519 key seed is 32 bytes".into(),
        })?;
        return Ok((SigningKey::from_bytes(&seed), false));
    }
    let mut seed = [0u8; 32];
    rand::rng().fill_bytes(&mut seed);
    let key = SigningKey::from_bytes(&seed);
    write_secret(path, format!("{}\n", STANDARD.encode(seed)).as_bytes())?;
    Ok((key, true))
}

/// Load the admin token from `path`, generating a random one if absent.
pub fn load_or_create_token(path: &Path) -> Result<String, KeyError> {
    if path.exists() {
        return read_secret(path);
    }
    let token = random_token();
    write_secret(path, format!("{token}\n").as_bytes())?;
    Ok(token)
}

/// A random bearer token: 32 bytes from the OS CSPRNG, URL-safe base64.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    #[test]
    fn key_is_created_once_private_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.key");
        let (k1, created) = load_or_create_signing_key(&path).unwrap();
        assert!(created);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (k2, created) = load_or_create_signing_key(&path).unwrap();
        assert!(!created);
        assert_eq!(k1.to_bytes(), k2.to_bytes());
    }

    #[test]
    fn readable_secret_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.token");
        std::fs::write(&path, "t").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_secret(&path).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }
}
