//! Who may do what: API keys and contact tokens.
//!
//! A *write key* may post; a *secret key* may do everything; a *contact token* may read
//! one contact's events until it expires. Keys are compared in constant time, as SHA-256
//! digests (so that not even their length shows in the timing).
//!
//! A contact token is `elt1.<claims>.<signature>`: `claims` is the base64url (no padding)
//! of the JSON `{"contact_id":"…","exp":<Unix seconds>}`, and `signature` the base64url
//! (no padding) of HMAC-SHA256(token secret, `elt1.<claims>`). `docs/access.md` has a worked
//! example.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What a request's credential allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// A secret key: post, read, export, stream, stats, erase.
    Secret,
    /// A write key: post only.
    Write,
    /// A contact token: read this contact's events only.
    Contact(String),
}

/// Why a presented credential grants nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("the key is not one of this server's keys")]
    UnknownKey,
    #[error(
        "the contact token's signature does not match; it was altered or signed with another secret"
    )]
    BadSignature,
    #[error("the contact token is malformed: {0}")]
    MalformedToken(&'static str),
    #[error("the contact token expired at {0} (Unix seconds)")]
    Expired(i64),
    #[error("this server has no token secret, so it accepts no contact tokens")]
    TokensDisabled,
}

/// The prefix of contact tokens, which is also their format version.
pub const TOKEN_PREFIX: &str = "elt1.";

/// Secrets our own documentation shows as examples; a server refuses to start with one.
pub const EXAMPLE_SECRETS: &[&str] = &[
    "change-me-to-a-long-random-string",
    "sk_live_replace_with_your_own_secret",
    "my-token-secret-0123456789",
];

/// The shortest secret key or token secret a server accepts.
pub const SECRET_LEN_MIN: usize = 16;

/// Why a configured secret is refused at start.
pub fn weak_secret(secret: &str) -> Option<&'static str> {
    if secret.trim().is_empty() {
        Some("it is empty")
    } else if secret.chars().count() < SECRET_LEN_MIN {
        Some("it is shorter than 16 characters")
    } else if EXAMPLE_SECRETS.contains(&secret) {
        Some("it is an example from Eventline's documentation")
    } else {
        None
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenClaims {
    pub contact_id: String,
    /// Expiry, Unix seconds.
    pub exp: i64,
}

/// The keys and token secret of a server, ready to check credentials against.
#[derive(Clone, Default)]
pub struct Keys {
    write: Vec<[u8; 32]>,
    secret: Vec<[u8; 32]>,
    token_secret: Option<Vec<u8>>,
}

impl std::fmt::Debug for Keys {
    // Never print a key, not even in a debug dump.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("write", &self.write.len())
            .field("secret", &self.secret.len())
            .field("token_secret", &self.token_secret.is_some())
            .finish()
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

impl Keys {
    pub fn new(write_keys: &[String], secret_keys: &[String], token_secret: Option<&str>) -> Keys {
        Keys {
            write: write_keys.iter().map(|key| digest(key)).collect(),
            secret: secret_keys.iter().map(|key| digest(key)).collect(),
            token_secret: token_secret.map(|secret| secret.as_bytes().to_vec()),
        }
    }

    /// Whether posting needs a key.
    pub fn has_write_keys(&self) -> bool {
        !self.write.is_empty()
    }

    /// Whether reading needs a key. Without secret keys the server is in open mode,
    /// which it allows only on a loopback address.
    pub fn has_secret_keys(&self) -> bool {
        !self.secret.is_empty()
    }

    /// What `credential` (a key or a contact token) grants at `now_s` (Unix seconds).
    pub fn check(&self, credential: &str, now_s: i64) -> Result<Grant, CredentialError> {
        if credential.starts_with(TOKEN_PREFIX) {
            let secret = self
                .token_secret
                .as_deref()
                .ok_or(CredentialError::TokensDisabled)?;
            let claims = verify_token(secret, credential)?;
            if claims.exp <= now_s {
                return Err(CredentialError::Expired(claims.exp));
            }
            return Ok(Grant::Contact(claims.contact_id));
        }
        let presented = digest(credential);
        // Every configured key is compared, matched or not: the time taken says nothing
        // about which key, if any, matched.
        let matches = |keys: &[[u8; 32]]| {
            keys.iter().fold(subtle::Choice::from(0), |found, key| {
                found | key.ct_eq(&presented)
            })
        };
        let secret: bool = matches(&self.secret).into();
        let write: bool = matches(&self.write).into();
        if secret {
            Ok(Grant::Secret)
        } else if write {
            Ok(Grant::Write)
        } else {
            Err(CredentialError::UnknownKey)
        }
    }
}

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8]) -> HmacSha256 {
    // HMAC takes a key of any length.
    HmacSha256::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
}

/// A signed contact token for `claims`.
pub fn mint_token(secret: &[u8], claims: &TokenClaims) -> String {
    let claims = serde_json::to_vec(claims).unwrap_or_default();
    let signed = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(claims));
    let mut mac = mac(secret);
    mac.update(signed.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signed}.{signature}")
}

/// The claims of a token whose signature is right (expiry not checked here).
pub fn verify_token(secret: &[u8], token: &str) -> Result<TokenClaims, CredentialError> {
    let (signed, signature) = token
        .rsplit_once('.')
        .ok_or(CredentialError::MalformedToken("no signature"))?;
    let claims = signed
        .strip_prefix(TOKEN_PREFIX)
        .ok_or(CredentialError::MalformedToken("not an elt1 token"))?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| CredentialError::MalformedToken("the signature is not base64url"))?;
    let mut mac = mac(secret);
    mac.update(signed.as_bytes());
    // `verify_slice` compares in constant time.
    mac.verify_slice(&signature)
        .map_err(|_| CredentialError::BadSignature)?;
    let claims = URL_SAFE_NO_PAD
        .decode(claims)
        .map_err(|_| CredentialError::MalformedToken("the claims are not base64url"))?;
    serde_json::from_slice(&claims)
        .map_err(|_| CredentialError::MalformedToken("the claims are not {contact_id, exp}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"a-token-secret-for-tests";

    fn keys() -> Keys {
        Keys::new(
            &["write-key-0123456789".to_owned()],
            &["secret-key-0123456789".to_owned()],
            Some("a-token-secret-for-tests"),
        )
    }

    #[test]
    fn keys_grant_by_kind() {
        let keys = keys();
        assert_eq!(keys.check("secret-key-0123456789", 0), Ok(Grant::Secret));
        assert_eq!(keys.check("write-key-0123456789", 0), Ok(Grant::Write));
        assert_eq!(
            keys.check("secret-key-012345678", 0),
            Err(CredentialError::UnknownKey)
        );
        assert_eq!(keys.check("", 0), Err(CredentialError::UnknownKey));
    }

    #[test]
    fn tokens_grant_one_contact_until_they_expire() {
        let keys = keys();
        let claims = TokenClaims {
            contact_id: "c-1".to_owned(),
            exp: 100,
        };
        let token = mint_token(SECRET, &claims);
        assert_eq!(keys.check(&token, 99), Ok(Grant::Contact("c-1".to_owned())));
        assert_eq!(keys.check(&token, 100), Err(CredentialError::Expired(100)));
        // Altered claims: another contact, same signature.
        let (_, signature) = token.rsplit_once('.').expect("signature");
        let forged_claims = URL_SAFE_NO_PAD.encode(br#"{"contact_id":"c-2","exp":100}"#);
        let forged = format!("{TOKEN_PREFIX}{forged_claims}.{signature}");
        assert_eq!(keys.check(&forged, 0), Err(CredentialError::BadSignature));
        // Signed with another secret.
        let other = mint_token(b"another-secret-entirely", &claims);
        assert_eq!(keys.check(&other, 0), Err(CredentialError::BadSignature));
        assert!(matches!(
            keys.check("elt1.nonsense", 0),
            Err(CredentialError::MalformedToken(_) | CredentialError::BadSignature)
        ));
        let without_secret = Keys::new(&[], &[], None);
        assert_eq!(
            without_secret.check(&token, 0),
            Err(CredentialError::TokensDisabled)
        );
    }

    /// The worked example of docs/access.md, byte for byte.
    #[test]
    fn the_documented_example_token() {
        let claims = TokenClaims {
            contact_id: "123e4567-e89b-12d3-a456-426655440000".to_owned(),
            exp: 1_900_000_000,
        };
        let token = mint_token(b"my-token-secret-0123456789", &claims);
        assert_eq!(token, DOCUMENTED_TOKEN);
    }

    const DOCUMENTED_TOKEN: &str = "elt1.eyJjb250YWN0X2lkIjoiMTIzZTQ1NjctZTg5Yi0xMmQzLWE0NTYtNDI2NjU1NDQwMDAwIiwiZXhwIjoxOTAwMDAwMDAwfQ.AfkIss4v6Befl1pojyPihzZOnRhlUJKFnKB1K8vqEng";

    #[test]
    fn weak_secrets_are_named() {
        assert!(weak_secret("").is_some());
        assert!(weak_secret("short").is_some());
        assert!(weak_secret("change-me-to-a-long-random-string").is_some());
        assert!(weak_secret("k7Gq2vX9pL4mN8rT1wY6").is_none());
    }
}
