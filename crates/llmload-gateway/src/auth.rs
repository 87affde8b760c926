//! API keys: read once, kept only as SHA-256 digests, compared in constant time.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::GatewayError;

/// The set of accepted keys, as SHA-256 digests. The plain keys are dropped after hashing.
#[derive(Clone)]
pub struct ApiKeys {
    digests: Vec<[u8; 32]>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKeys({} keys, redacted)", self.digests.len())
    }
}

fn digest(key: &[u8]) -> [u8; 32] {
    Sha256::digest(key).into()
}

impl ApiKeys {
    /// Reads a file with one key per line; blank lines and lines starting with `#` are skipped.
    pub fn from_file(path: &Path) -> Result<Self, GatewayError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            GatewayError::Config(format!(
                "cannot read --api-keys-file {}: {e}",
                path.display()
            ))
        })?;
        let keys = Self::from_lines(&text);
        if keys.digests.is_empty() {
            return Err(GatewayError::Config(format!(
                "--api-keys-file {} holds no key (one key per line expected)",
                path.display()
            )));
        }
        Ok(keys)
    }

    pub fn from_lines(text: &str) -> Self {
        let digests = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| digest(l.as_bytes()))
            .collect();
        Self { digests }
    }

    pub fn len(&self) -> usize {
        self.digests.len()
    }

    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// Checks a presented key. The work done does not depend on which key (if any) matches or
    /// on how many leading bytes match: every digest is compared in full.
    pub fn verify(&self, presented: &[u8]) -> bool {
        let d = digest(presented);
        let mut found = 0u8;
        for k in &self.digests {
            let mut diff = 0u8;
            for (a, b) in k.iter().zip(d.iter()) {
                diff |= a ^ b;
            }
            found |= u8::from(diff == 0);
        }
        std::hint::black_box(found) == 1
    }

    /// Extracts the key from `Authorization: Bearer <key>` (or an `x-api-key` header).
    pub fn verify_headers(&self, headers: &http::HeaderMap) -> bool {
        if let Some(v) = headers.get(http::header::AUTHORIZATION) {
            let b = v.as_bytes();
            let key = b
                .strip_prefix(b"Bearer ")
                .or_else(|| b.strip_prefix(b"bearer "));
            return key.is_some_and(|k| self.verify(trim_ascii(k)));
        }
        if let Some(v) = headers.get("x-api-key") {
            return self.verify(trim_ascii(v.as_bytes()));
        }
        false
    }
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    b.trim_ascii()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        let k = ApiKeys::from_lines("# comment\n\n sk-one \nsk-two\n");
        assert_eq!(k.len(), 2);
        assert!(k.verify(b"sk-one"));
        assert!(k.verify(b"sk-two"));
        assert!(!k.verify(b"sk-on"));
        assert!(!k.verify(b""));
        assert!(!k.verify(b"# comment"));
        let mut h = http::HeaderMap::new();
        assert!(!k.verify_headers(&h));
        h.insert("authorization", "Bearer sk-two".parse().unwrap());
        assert!(k.verify_headers(&h));
        h.insert("authorization", "Basic sk-two".parse().unwrap());
        assert!(!k.verify_headers(&h));
        let mut h = http::HeaderMap::new();
        h.insert("x-api-key", "sk-one".parse().unwrap());
        assert!(k.verify_headers(&h));
        assert!(!format!("{k:?}").contains("sk-"));
    }
}
