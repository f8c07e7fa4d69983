//! Tokens: the admin token of the hub, and each run's write and read tokens.
//!
//! Run tokens are 32 random bytes, shown to the creator once and stored only as their
//! SHA-256; a presented token is hashed and compared in constant time. The token's
//! scope is in its prefix (`hw_` write, `hr_` read) only for people's benefit: the
//! hub trusts the stored record, not the prefix.

use axum::http::HeaderMap;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What a run token allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Append events (and read them).
    Write,
    /// Read state, poll, stream.
    Read,
}

impl Scope {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Scope::Write => "write",
            Scope::Read => "read",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Scope> {
        match s {
            "write" => Some(Scope::Write),
            "read" => Some(Scope::Read),
            _ => None,
        }
    }
}

/// A fresh random token with a prefix telling its scope.
pub(crate) fn generate(scope: Scope) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let prefix = match scope {
        Scope::Write => "hw_",
        Scope::Read => "hr_",
    };
    format!("{prefix}{}", hex::encode(bytes))
}

/// The stored form of a token.
pub(crate) fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Compares two secrets in time independent of where they differ.
pub(crate) fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The token of a request: `Authorization: Bearer`, or (for EventSource, which cannot
/// set headers) the `token` query parameter.
pub(crate) fn presented(headers: &HeaderMap, query_token: Option<&str>) -> Option<String> {
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty());
    header
        .or(query_token.filter(|t| !t.is_empty()))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hash_stably() {
        let a = generate(Scope::Write);
        let b = generate(Scope::Write);
        assert_ne!(a, b);
        assert!(a.starts_with("hw_") && a.len() == 67);
        assert!(generate(Scope::Read).starts_with("hr_"));
        assert_eq!(hash(&a), hash(&a));
        assert_ne!(hash(&a), hash(&b));
        assert!(same(&hash(&a), &hash(&a)));
        assert!(!same(&hash(&a), &hash(&b)));
        assert!(!same("abc", "abcd"));
    }
}
