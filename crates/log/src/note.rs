//! C2SP signed notes (Ed25519), verifier/signer key strings, and C2SP
//! `tlog-checkpoint` v1.0.0 bodies.
//!
//! Written by hand rather than with the `signed_note` / `tlog_tiles` crates
//! (v0.2.0): both pull ed25519-dalek 2 and sha2 0.10 next to the workspace's
//! ed25519-dalek 3 and sha2 0.11, a second copy of the heaviest crypto trees.
//! The formats are small; the tests check them byte for byte against the Go
//! `golang.org/x/mod/sumdb/note` examples that those crates also test against.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::merkle::Hash;

/// Signature type byte for Ed25519 in C2SP signed-note keys.
const ALG_ED25519: u8 = 0x01;
/// Notes larger than this are rejected before parsing (C2SP allows
/// verifiers to cap note size).
pub const MAX_NOTE_BYTES: usize = 1 << 20;
const MAX_SIGNATURES: usize = 100;

/// Why a key string, note or checkpoint was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// The key string is malformed.
    #[error("malformed key: {0}")]
    BadKey(String),
    /// The note text is malformed.
    #[error("malformed note: {0}")]
    BadNote(String),
    /// No signature from the expected key verified.
    #[error("no valid signature by `{0}`")]
    Unverified(String),
    /// The checkpoint body is malformed.
    #[error("malformed checkpoint: {0}")]
    BadCheckpoint(String),
}

/// A public key with its signed-note name and key ID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteVerifier {
    /// Key name (for a log's key, the log origin).
    pub name: String,
    /// The 4-byte key ID.
    pub key_id: u32,
    /// The Ed25519 public key.
    pub key: VerifyingKey,
}

/// One signature line of a note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteSignature {
    /// Key name.
    pub name: String,
    /// Key ID.
    pub key_id: u32,
    /// Signature bytes (after the key ID).
    pub sig: Vec<u8>,
}

/// A parsed (not yet verified) signed note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// The signed text, ending in a newline.
    pub text: String,
    /// Its signature lines.
    pub signatures: Vec<NoteSignature>,
}

/// A C2SP `tlog-checkpoint` body: origin, tree size, root hash and extension
/// lines. Custody adds one extension line, `time <RFC 3339>`, so that
/// heartbeats over an idle log differ and a frozen log is visible.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin line.
    pub origin: String,
    /// Number of entries covered.
    pub size: u64,
    /// RFC 6962 root of those entries.
    pub root: Hash,
    /// Extension lines (without newlines).
    pub extensions: Vec<String>,
}

/// A checkpoint together with the signed note that carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedCheckpoint {
    /// The checkpoint body.
    pub checkpoint: Checkpoint,
    /// The full note text, body and signatures.
    pub note: String,
}

/// The 4-byte key ID of an Ed25519 key: the first four bytes of
/// `SHA-256(name || "\n" || 0x01 || key)`.
pub fn key_id(name: &str, key: &VerifyingKey) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ALG_ED25519]);
    h.update(key.as_bytes());
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// A key name is non-empty and has no `+` and no whitespace.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c == '+' || c.is_whitespace() || c.is_control())
}

/// Encodes a verifier key: `<name>+<hex key id>+<base64(0x01 || key)>`.
pub fn vkey(name: &str, key: &VerifyingKey) -> String {
    let mut raw = Vec::with_capacity(33);
    raw.push(ALG_ED25519);
    raw.extend_from_slice(key.as_bytes());
    format!("{name}+{:08x}+{}", key_id(name, key), B64.encode(raw))
}

/// Parses a verifier key string (see [`vkey`]).
pub fn parse_vkey(s: &str) -> Result<NoteVerifier, NoteError> {
    let s = s.trim_end_matches(['\n', '\r']);
    let mut parts = s.splitn(3, '+');
    let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(NoteError::BadKey("expected `<name>+<id>+<key>`".into()));
    };
    if !valid_name(name) {
        return Err(NoteError::BadKey(format!("invalid key name `{name}`")));
    }
    if id.len() != 8 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(NoteError::BadKey(format!("invalid key id `{id}`")));
    }
    let id = u32::from_str_radix(id, 16)
        .map_err(|_| NoteError::BadKey(format!("invalid key id `{id}`")))?;
    let raw = B64
        .decode(key)
        .map_err(|_| NoteError::BadKey("key is not base64".into()))?;
    let [alg, rest @ ..] = raw.as_slice() else {
        return Err(NoteError::BadKey("empty key".into()));
    };
    if *alg != ALG_ED25519 {
        return Err(NoteError::BadKey(format!("unsupported algorithm {alg}")));
    }
    let bytes: [u8; 32] = rest
        .try_into()
        .map_err(|_| NoteError::BadKey("ed25519 key is not 32 bytes".into()))?;
    let key = VerifyingKey::from_bytes(&bytes)
        .map_err(|_| NoteError::BadKey("invalid ed25519 key".into()))?;
    if key_id(name, &key) != id {
        return Err(NoteError::BadKey(format!(
            "key id `{id:08x}` does not match the key"
        )));
    }
    Ok(NoteVerifier {
        name: name.to_owned(),
        key_id: id,
        key,
    })
}

/// Encodes a signer key: `PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 || seed)>`.
pub fn skey(name: &str, key: &SigningKey) -> String {
    let mut raw = Vec::with_capacity(33);
    raw.push(ALG_ED25519);
    raw.extend_from_slice(&key.to_bytes());
    format!(
        "PRIVATE+KEY+{name}+{:08x}+{}",
        key_id(name, &key.verifying_key()),
        B64.encode(raw)
    )
}

/// Parses a signer key string (see [`skey`]); returns its name and key.
pub fn parse_skey(s: &str) -> Result<(String, SigningKey), NoteError> {
    let s = s.trim_end_matches(['\n', '\r']);
    let rest = s
        .strip_prefix("PRIVATE+KEY+")
        .ok_or_else(|| NoteError::BadKey("missing `PRIVATE+KEY+` prefix".into()))?;
    let mut parts = rest.splitn(3, '+');
    let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(NoteError::BadKey(
            "expected `PRIVATE+KEY+<name>+<id>+<key>`".into(),
        ));
    };
    if !valid_name(name) {
        return Err(NoteError::BadKey(format!("invalid key name `{name}`")));
    }
    let raw = B64
        .decode(key)
        .map_err(|_| NoteError::BadKey("key is not base64".into()))?;
    let [ALG_ED25519, seed @ ..] = raw.as_slice() else {
        return Err(NoteError::BadKey("not an ed25519 key".into()));
    };
    let seed: [u8; 32] = seed
        .try_into()
        .map_err(|_| NoteError::BadKey("ed25519 seed is not 32 bytes".into()))?;
    let sk = SigningKey::from_bytes(&seed);
    if format!("{:08x}", key_id(name, &sk.verifying_key())) != id {
        return Err(NoteError::BadKey(format!(
            "key id `{id}` does not match the key"
        )));
    }
    Ok((name.to_owned(), sk))
}

/// Signs `text` (which must end in a newline) and returns the full note.
pub fn sign_note(text: &str, name: &str, key: &SigningKey) -> Result<String, NoteError> {
    if !text.ends_with('\n') {
        return Err(NoteError::BadNote("text must end in a newline".into()));
    }
    if !valid_name(name) {
        return Err(NoteError::BadKey(format!("invalid key name `{name}`")));
    }
    let sig: Signature = key.sign(text.as_bytes());
    let mut raw = Vec::with_capacity(68);
    raw.extend_from_slice(&key_id(name, &key.verifying_key()).to_be_bytes());
    raw.extend_from_slice(&sig.to_bytes());
    Ok(format!("{text}\n\u{2014} {name} {}\n", B64.encode(raw)))
}

// === impl Note ===

impl Note {
    /// Parses a signed note. Never panics; rejects anything malformed.
    pub fn parse(msg: &str) -> Result<Note, NoteError> {
        let bad = |m: &str| NoteError::BadNote(m.to_owned());
        if msg.len() > MAX_NOTE_BYTES {
            return Err(bad("note too large"));
        }
        if msg.chars().any(|c| c.is_control() && c != '\n') {
            return Err(bad("control character in note"));
        }
        if !msg.ends_with('\n') {
            return Err(bad("note does not end in a newline"));
        }
        // The signature block starts after the last blank line.
        let split = msg
            .rfind("\n\n")
            .ok_or_else(|| bad("no blank line before the signatures"))?;
        let text = &msg[..split + 1];
        let sigs = &msg[split + 2..];
        let mut signatures = Vec::new();
        for line in sigs.split_terminator('\n') {
            if signatures.len() >= MAX_SIGNATURES {
                return Err(bad("too many signatures"));
            }
            let rest = line
                .strip_prefix("\u{2014} ")
                .ok_or_else(|| bad("signature line does not start with `— `"))?;
            let (name, b64) = rest
                .split_once(' ')
                .ok_or_else(|| bad("malformed signature line"))?;
            if !valid_name(name) {
                return Err(bad("invalid signer name"));
            }
            let raw = B64
                .decode(b64)
                .map_err(|_| bad("signature is not base64"))?;
            if raw.len() < 5 {
                return Err(bad("signature too short"));
            }
            let key_id = u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]);
            signatures.push(NoteSignature {
                name: name.to_owned(),
                key_id,
                sig: raw[4..].to_vec(),
            });
        }
        if signatures.is_empty() {
            return Err(bad("no signatures"));
        }
        Ok(Note {
            text: text.to_owned(),
            signatures,
        })
    }

    /// Returns `Ok` if some signature line verifies under `verifier`.
    pub fn verify(&self, verifier: &NoteVerifier) -> Result<(), NoteError> {
        for s in &self.signatures {
            if s.name != verifier.name || s.key_id != verifier.key_id {
                continue;
            }
            let Ok(bytes) = <[u8; 64]>::try_from(s.sig.as_slice()) else {
                continue;
            };
            let sig = Signature::from_bytes(&bytes);
            if verifier
                .key
                .verify_strict(self.text.as_bytes(), &sig)
                .is_ok()
            {
                return Ok(());
            }
        }
        Err(NoteError::Unverified(verifier.name.clone()))
    }
}

// === impl Checkpoint ===

impl Checkpoint {
    /// The body text: origin, size, base64 root, extension lines.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root.0)
        );
        for e in &self.extensions {
            s.push_str(e);
            s.push('\n');
        }
        s
    }

    /// Parses a checkpoint body (the text of a note).
    pub fn parse(text: &str) -> Result<Checkpoint, NoteError> {
        let bad = |m: &str| NoteError::BadCheckpoint(m.to_owned());
        let body = text
            .strip_suffix('\n')
            .ok_or_else(|| bad("missing final newline"))?;
        let mut lines = body.split('\n');
        let origin = lines
            .next()
            .filter(|o| !o.is_empty())
            .ok_or_else(|| bad("empty origin"))?;
        let size = lines.next().ok_or_else(|| bad("missing size"))?;
        if size.is_empty()
            || !size.bytes().all(|b| b.is_ascii_digit())
            || (size.len() > 1 && size.starts_with('0'))
        {
            return Err(bad("size is not a decimal number"));
        }
        let size: u64 = size.parse().map_err(|_| bad("size out of range"))?;
        let root = lines.next().ok_or_else(|| bad("missing root hash"))?;
        let root = B64
            .decode(root)
            .map_err(|_| bad("root hash is not base64"))?;
        let root: [u8; 32] = root
            .try_into()
            .map_err(|_| bad("root hash is not 32 bytes"))?;
        let extensions: Vec<String> = lines.map(str::to_owned).collect();
        if extensions.iter().any(String::is_empty) {
            return Err(bad("empty extension line"));
        }
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root: Hash(root),
            extensions,
        })
    }

    /// The `time` extension line's value, if present and well formed.
    pub fn time(&self) -> Option<OffsetDateTime> {
        self.extensions
            .iter()
            .find_map(|e| e.strip_prefix("time "))
            .and_then(|t| crate::entry::parse_time(t).ok())
    }

    /// Signs the checkpoint with `key` under the key name `name`.
    pub fn sign(&self, name: &str, key: &SigningKey) -> Result<SignedCheckpoint, NoteError> {
        Ok(SignedCheckpoint {
            checkpoint: self.clone(),
            note: sign_note(&self.to_text(), name, key)?,
        })
    }
}

// === impl SignedCheckpoint ===

impl SignedCheckpoint {
    /// Parses a note and its checkpoint body without checking signatures.
    pub fn parse(note: &str) -> Result<(SignedCheckpoint, Note), NoteError> {
        let parsed = Note::parse(note)?;
        let checkpoint = Checkpoint::parse(&parsed.text)?;
        Ok((
            SignedCheckpoint {
                checkpoint,
                note: note.to_owned(),
            },
            parsed,
        ))
    }

    /// Parses and verifies a signed checkpoint against `verifier`.
    pub fn open(note: &str, verifier: &NoteVerifier) -> Result<SignedCheckpoint, NoteError> {
        let (cp, parsed) = Self::parse(note)?;
        parsed.verify(verifier)?;
        Ok(cp)
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        reason = "tests fail loudly"
    )]
    use super::*;

    // golang.org/x/mod/sumdb/note examples (note_test.go / example_test.go),
    // also used by the C2SP signed-note spec and the `signed_note` crate.
    const VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const SKEY: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const TEXT: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
    const SIGNED: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n\n\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

    #[test]
    fn go_example_keys_round_trip() {
        let v = parse_vkey(VKEY).unwrap();
        assert_eq!(v.name, "PeterNeumann");
        assert_eq!(v.key_id, 0xc74f20a3);
        let (name, sk) = parse_skey(SKEY).unwrap();
        assert_eq!(name, "PeterNeumann");
        assert_eq!(sk.verifying_key(), v.key);
        assert_eq!(vkey(&name, &v.key), VKEY);
        assert_eq!(skey(&name, &sk), SKEY);
    }

    #[test]
    fn go_example_sign_matches_byte_for_byte() {
        let (name, sk) = parse_skey(SKEY).unwrap();
        assert_eq!(sign_note(TEXT, &name, &sk).unwrap(), SIGNED);
    }

    #[test]
    fn go_example_open() {
        let note = Note::parse(SIGNED).unwrap();
        assert_eq!(note.text, TEXT);
        assert_eq!(note.signatures.len(), 1);
        note.verify(&parse_vkey(VKEY).unwrap()).unwrap();
        // A changed text no longer verifies.
        let tampered = Note::parse(&SIGNED.replacen("problem,", "problem;", 1)).unwrap();
        assert!(tampered.verify(&parse_vkey(VKEY).unwrap()).is_err());
    }

    #[test]
    fn go_manglings_of_the_vkey_are_rejected() {
        // As in Go's TestNewVerifier: every proper substring and every
        // single-byte increment must be rejected.
        let b = VKEY.as_bytes();
        for i in 0..=b.len() {
            for j in i + 1..=b.len() {
                if (i != 0 || j != b.len())
                    && let Ok(s) = std::str::from_utf8(&b[i..j])
                {
                    assert!(parse_vkey(s).is_err(), "{s}");
                }
            }
        }
        for i in 0..b.len() {
            let mut m = b.to_vec();
            m[i] = m[i].wrapping_add(1);
            if let Ok(s) = std::str::from_utf8(&m) {
                assert!(parse_vkey(s).is_err(), "{s}");
            }
        }
        assert!(
            parse_vkey(
                "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY=="
            )
            .is_err()
        );
        assert!(
            parse_vkey("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")
                .is_err()
        );
    }

    #[test]
    fn checkpoint_round_trip_and_c2sp_example_body() {
        // The body of the C2SP tlog-checkpoint example.
        let text =
            "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        let cp = Checkpoint::parse(text).unwrap();
        assert_eq!(cp.origin, "example.com/behind-the-sofa");
        assert_eq!(cp.size, 20852163);
        assert_eq!(cp.to_text(), text);
        assert!(
            Checkpoint::parse("o\n01\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n").is_err()
        );
        assert!(Checkpoint::parse("o\n1\nAAAA\n").is_err());

        let (name, sk) = parse_skey(SKEY).unwrap();
        let signed = cp.sign(&name, &sk).unwrap();
        let v = parse_vkey(VKEY).unwrap();
        assert_eq!(
            SignedCheckpoint::open(&signed.note, &v).unwrap().checkpoint,
            cp
        );
        let other = SigningKey::from_bytes(&[7; 32]);
        let forged = cp.sign(&name, &other).unwrap();
        assert!(SignedCheckpoint::open(&forged.note, &v).is_err());
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(s in "\\PC*", b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = parse_vkey(&s);
            let _ = parse_skey(&s);
            let _ = Note::parse(&s);
            let _ = Checkpoint::parse(&s);
            let text = String::from_utf8_lossy(&b);
            let _ = Note::parse(&text);
            let _ = Checkpoint::parse(&text);
            let _ = SignedCheckpoint::parse(&format!("{text}\n\n\u{2014} x {s}\n"));
        }

        #[test]
        fn checkpoints_round_trip(size in proptest::prelude::any::<u64>(), root in proptest::prelude::any::<[u8; 32]>(), ext in "[a-z]{1,8}( [a-z0-9]{1,8})?") {
            let cp = Checkpoint { origin: "o.example/log".into(), size, root: Hash(root), extensions: vec![ext] };
            proptest::prop_assert_eq!(Checkpoint::parse(&cp.to_text()).unwrap(), cp);
        }
    }
}
