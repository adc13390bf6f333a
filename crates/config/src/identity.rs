//! identity.json, byte-compatible with upstream: `{"id": "<peer id>", "private_key":
//! "<standard base64 of the libp2p protobuf-encoded private key>"}`. New identities are
//! Ed25519; any key type libp2p can decode is accepted on load. The file is written 0600
//! because it holds the peer's private key.

use std::{fs, io::Write, path::Path};

use base64::Engine;
use libp2p::{identity::Keypair, PeerId};
use serde::{Deserialize, Serialize};

use crate::ConfigError;

#[derive(Clone)]
pub struct Identity {
    pub peer_id: PeerId,
    pub keypair: Keypair,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("peer_id", &self.peer_id)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
struct IdentityJson {
    #[serde(default)]
    id: String,
    #[serde(default)]
    private_key: String,
}

impl Identity {
    pub fn generate() -> Self {
        Self::from_keypair(Keypair::generate_ed25519())
    }

    pub fn from_keypair(keypair: Keypair) -> Self {
        Identity {
            peer_id: keypair.public().to_peer_id(),
            keypair,
        }
    }

    /// Builds an identity from the two strings of identity.json, checking that the id
    /// matches the key. `what` names the source in errors (a path, or an env var).
    pub fn from_strings(id: &str, private_key: &str, what: &Path) -> Result<Self, ConfigError> {
        let err = |msg: String| ConfigError::Identity {
            path: what.to_path_buf(),
            msg,
        };
        let ident = Self::from_private_key_base64(private_key, what)?;
        if id.is_empty() {
            return Err(err(format!(
                "id is empty (the private_key gives {})",
                ident.peer_id
            )));
        }
        let parsed: PeerId = id
            .parse()
            .map_err(|e| err(format!("id {id:?} is not a valid peer ID: {e}")))?;
        if parsed != ident.peer_id {
            return Err(err(format!(
                "id {id} does not match private_key (which gives {})",
                ident.peer_id
            )));
        }
        Ok(ident)
    }

    /// An identity from the base64 private_key alone (the id is derived).
    pub fn from_private_key_base64(private_key: &str, what: &Path) -> Result<Self, ConfigError> {
        let err = |msg: String| ConfigError::Identity {
            path: what.to_path_buf(),
            msg,
        };
        if private_key.is_empty() {
            return Err(err(
                "private_key is empty (run `ipfs-cluster-service init` to create an identity)"
                    .into(),
            ));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(private_key.trim())
            .map_err(|e| err(format!("private_key is not valid base64: {e}")))?;
        let keypair = Keypair::from_protobuf_encoding(&bytes).map_err(|e| {
            err(format!(
                "private_key is not a libp2p protobuf-encoded private key: {e}"
            ))
        })?;
        Ok(Self::from_keypair(keypair))
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let j: IdentityJson = serde_json::from_str(&text).map_err(|source| ConfigError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_strings(&j.id, &j.private_key, path)
    }

    /// The base64 private_key string of identity.json.
    pub fn private_key_base64(&self) -> String {
        let bytes = self
            .keypair
            .to_protobuf_encoding()
            .expect("every key type we can decode can be encoded");
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    pub fn to_json_pretty(&self) -> String {
        let j = IdentityJson {
            id: self.peer_id.to_string(),
            private_key: self.private_key_base64(),
        };
        serde_json::to_string_pretty(&j).expect("plain strings serialize")
    }

    /// Writes identity.json with mode 0600 (replacing an existing file).
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        write_private(path, self.to_json_pretty().as_bytes())
    }
}

/// Writes a new file readable only by its owner (replacing any old one), followed by a
/// newline: identity.json, service.json and the internal token.
pub fn write_private(path: &Path, data: &[u8]) -> Result<(), ConfigError> {
    let err = |source| ConfigError::Write {
        path: path.to_path_buf(),
        source,
    };
    let _ = fs::remove_file(path);
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(err)?;
    f.write_all(data).map_err(err)?;
    f.write_all(b"\n").map_err(err)?;
    f.sync_all().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_save_load_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("identity.json");
        let id = Identity::generate();
        id.save(&p).unwrap();
        let back = Identity::load(&p).unwrap();
        assert_eq!(back.peer_id, id.peer_id);
        assert_eq!(back.keypair.public(), id.keypair.public());
        assert!(id.peer_id.to_string().starts_with("12D3KooW"));
        // Upstream layout: Ed25519 protobuf (type 1, 64 bytes) => "CAESQ..." in base64.
        assert!(
            id.private_key_base64().starts_with("CAESQ"),
            "{}",
            id.private_key_base64()
        );
        let v: serde_json::Value = serde_json::from_str(&fs::read_to_string(&p).unwrap()).unwrap();
        assert_eq!(v["id"], id.peer_id.to_string());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
    }

    #[test]
    fn id_mismatch_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("identity.json");
        let a = Identity::generate();
        let b = Identity::generate();
        let text = format!(
            r#"{{"id": "{}", "private_key": "{}"}}"#,
            b.peer_id,
            a.private_key_base64()
        );
        fs::write(&p, text).unwrap();
        let e = Identity::load(&p).unwrap_err().to_string();
        assert!(
            e.contains(&format!(
                "id {} does not match private_key (which gives {})",
                b.peer_id, a.peer_id
            )),
            "{e}"
        );
        assert!(e.starts_with(&p.display().to_string()), "{e}");
    }

    #[test]
    fn bad_base64_and_bad_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("identity.json");
        let a = Identity::generate();
        fs::write(
            &p,
            format!(
                r#"{{"id": "{}", "private_key": "not base64!!"}}"#,
                a.peer_id
            ),
        )
        .unwrap();
        let e = Identity::load(&p).unwrap_err().to_string();
        assert!(e.contains("private_key is not valid base64"), "{e}");
        fs::write(
            &p,
            format!(r#"{{"id": "{}", "private_key": "aGVsbG8="}}"#, a.peer_id),
        )
        .unwrap();
        let e = Identity::load(&p).unwrap_err().to_string();
        assert!(
            e.contains("not a libp2p protobuf-encoded private key"),
            "{e}"
        );
        fs::write(&p, "{").unwrap();
        assert!(Identity::load(&p)
            .unwrap_err()
            .to_string()
            .contains("invalid JSON"));
        let missing = dir.path().join("nope.json");
        assert!(Identity::load(&missing)
            .unwrap_err()
            .to_string()
            .contains("ipfs-cluster-service init"));
    }
}
